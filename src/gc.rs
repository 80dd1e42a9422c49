//! Staging clean-up (`restock gc`): delete `_staging/<run_id>/` of runs that will not be resumed.
//!
//! A failed or cancelled run keeps its staged outputs so `restock resume` can reuse the stages
//! that succeeded; nothing else ever deletes them. `gc` removes those older than a cut-off, plus
//! staging no run history knows (another history store, or a deleted one), dated by the
//! timestamp in the run id. It never touches a run marked `running`, a run holding a live lease
//! on the lake (whatever history recorded it), a run past its commit point whose publish is not
//! finished (its staged data is what the roll-forward commits), nor a published table.
//! Resuming a collected run still works: stages whose staged outputs are gone run again.
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::plan::RUN_ID_TIME_FORMAT;
use crate::state::{RunStatus, StateStore};
use crate::storage::{Lake, commit, lease};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub lake: String,
    pub run_id: String,
    /// Run status from history; `None` for staging no history knows.
    pub status: Option<RunStatus>,
    pub bytes: u64,
    pub files: usize,
}

/// Find (and unless `dry_run`, delete) the staging of runs that started before `cutoff`.
/// `extra_lakes` are scanned as well as every lake a recorded run used.
pub async fn collect(
    state: &dyn StateStore,
    extra_lakes: &[String],
    cutoff: DateTime<Utc>,
    dry_run: bool,
    base_dir: &Path,
) -> Result<Vec<Collected>> {
    let runs: HashMap<String, _> = state.list_runs(usize::MAX, None)?.into_iter().map(|r| (r.info.run_id.clone(), r)).collect();
    let lakes: BTreeSet<String> = runs.values().map(|r| r.info.lake.clone()).chain(extra_lakes.iter().cloned()).collect();
    let mut collected = vec![];
    for location in lakes {
        let lake = match Lake::open(&location, base_dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("gc: skipping lake {location}: {e:#}");
                continue;
            }
        };
        // Runs holding a live lease, and publishes past their commit point: their staging stays.
        let keep: std::collections::HashSet<String> =
            lease::live_runs(&lake).await?.into_iter().chain(commit::pending_ids(&lake).await?).collect();
        for run_id in lake.subfolders(&lake.root.join("_staging/")?).await? {
            if keep.contains(&run_id) {
                continue;
            }
            let run = runs.get(&run_id);
            let started = match run {
                Some(r) => Some(r.started_at),
                None => started_from_id(&run_id),
            };
            let old_enough = started.is_some_and(|t| t < cutoff);
            let status = run.map(|r| r.status);
            if !old_enough || matches!(status, Some(RunStatus::Running | RunStatus::PublishIncomplete)) {
                continue;
            }
            let url = lake.run_staging_url(&run_id);
            let metas = lake.list_prefix(&url).await?;
            if !dry_run {
                lake.delete_listed(&url, &metas).await?;
            }
            collected.push(Collected {
                lake: lake.root.to_string(),
                run_id,
                status,
                bytes: metas.iter().map(|m| m.size).sum(),
                files: metas.len(),
            });
        }
    }
    Ok(collected)
}

/// Run ids start with their UTC start time (see `plan::new_run_id`).
fn started_from_id(run_id: &str) -> Option<DateTime<Utc>> {
    let stamp = run_id.get(..15)?;
    NaiveDateTime::parse_from_str(stamp, RUN_ID_TIME_FORMAT).ok().map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_carry_their_start_time() {
        let t = started_from_id("20261130-061820-ab12").expect("parses");
        assert_eq!(t.to_rfc3339(), "2026-11-30T06:18:20+00:00");
        assert_eq!(started_from_id("manual-run"), None);
        assert_eq!(started_from_id(&crate::plan::new_run_id()).map(|t| (Utc::now() - t).num_seconds() < 5), Some(true));
    }
}
