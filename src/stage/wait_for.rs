//! `wait_for`: a sensor. Waits until an object, or a folder with objects in it, exists in the
//! lake (or at any object-store URL), typically the raw partition of the run's interval:
//! `path: raw/sales/date={{ run_date }}/`. It checks every `poke`, fails after `timeout` with
//! a message naming what was missing, and holds no `--max-parallel` slot while it waits. Stages
//! that need the data list it under `needs:`.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::{Cancelled, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::Diagnostics;

pub struct WaitForKind;

fn default_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_poke() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitConfig {
    /// Lake-relative path or URL; a trailing `/` means a folder with at least `min_objects`.
    path: String,
    #[serde(default = "default_timeout", deserialize_with = "crate::plan::deserialize_duration")]
    timeout: Duration,
    #[serde(default = "default_poke", deserialize_with = "crate::plan::deserialize_duration")]
    poke: Duration,
    #[serde(default)]
    min_objects: Option<usize>,
}

#[derive(Debug)]
struct WaitTask {
    cfg: WaitConfig,
}

impl StageKind for WaitForKind {
    fn name(&self) -> &'static str {
        "wait_for"
    }
    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: WaitConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_inputs("wait_for", 0)?;
        decl.expect_outputs("wait_for", 0)?;
        if cfg.poke.is_zero() {
            return Err(decl.error(decl.config.pos("poke"), "`poke` must be longer than 0s").into());
        }
        if cfg.min_objects == Some(0) || (cfg.min_objects.is_some() && !cfg.path.ends_with('/')) {
            return Err(decl
                .error(decl.config.pos("min_objects"), "`min_objects` is at least 1 and needs a folder `path` ending in `/`")
                .into());
        }
        Ok(Arc::new(WaitTask { cfg }))
    }
}

#[async_trait]
impl StageTask for WaitTask {
    async fn plan(&self, _inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        Ok(vec![])
    }

    fn holds_slot(&self) -> bool {
        false
    }

    fn cacheable(&self) -> bool {
        false
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let url = cx.lake.resolve(&self.cfg.path)?;
        let folder = self.cfg.path.ends_with('/');
        let want = self.cfg.min_objects.unwrap_or(1);
        let started = Instant::now();
        let mut pokes = 0u64;
        loop {
            pokes += 1;
            let found = if folder { cx.lake.list_prefix(&url).await?.len() } else { usize::from(cx.lake.exists(&url).await?) };
            if found >= want {
                let waited = started.elapsed().as_secs_f64();
                let details = serde_json::json!({ "path": url.to_string(), "objects": found, "waited_s": waited, "pokes": pokes });
                return Ok(StageReport { details: Some(details), ..Default::default() });
            }
            if started.elapsed() >= self.cfg.timeout {
                let what = if folder { format!("{want} object(s) under `{}`", self.cfg.path) } else { format!("`{}`", self.cfg.path) };
                bail!(
                    "waited {} for {what} ({url}): {} there after {pokes} checks",
                    humantime::format_duration(self.cfg.timeout),
                    if found == 0 { "nothing".to_string() } else { format!("only {found}") }
                );
            }
            cx.progress.set(format!("waiting for {} ({pokes} checks)", self.cfg.path));
            let left = self.cfg.timeout.saturating_sub(started.elapsed());
            tokio::select! {
                _ = cx.cancel.cancelled() => return Err(Cancelled.into()),
                _ = tokio::time::sleep(self.cfg.poke.min(left)) => {}
            }
        }
    }
}
