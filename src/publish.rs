//! Publishing a run: all of its tables become visible together, or none do.
//!
//! 1. **Prepare** ([`prepare`]): every published output's schema is checked against its table,
//!    and no table may already hold a version written by a newer run (no stale overwrite).
//!    Nothing is written.
//! 2. **Commit point**: the run manifest (`storage::commit`) is created, create-if-absent, in the
//!    lake. Before it, a failure or a signal publishes nothing; after it, the run *will* be
//!    published, whoever finishes it.
//! 3. **Roll forward** ([`roll_forward`]): one Delta commit per table, skipping those this run
//!    already committed (found in the table's log by run id), then the completion document.
//!    A process that dies here leaves a pending manifest; `resume` and the next run on the lake
//!    (`crate::jobs`) roll it forward. Readers that go through restock only ever see completed
//!    manifests' versions.
//!
//! Run ids sort by start time, so "newer run" means a run id that sorts after this one.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use url::Url;

use crate::errors::{ErrorClass, classify};
use crate::plan::Plan;
use crate::storage::Lake;
use crate::storage::commit::{self, Completion, Manifest, TableCommit, TableOutcome};
use crate::storage::delta::{self, PublishRequest};

/// A newer run already published some of this run's tables.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to publish run {run_id}: the newer run {newer} already published {}; publishing this older run would replace \
     that data with older results (start a new run instead)",
    tables.join(", ")
)]
pub struct Stale {
    pub run_id: String,
    pub newer: String,
    pub tables: Vec<String>,
}

/// (stage id, output) of every output the plan publishes.
fn published_outputs(plan: &Plan) -> impl Iterator<Item = (&str, &crate::spec::OutputSpec)> {
    plan.stages.iter().flat_map(|s| s.outputs.iter().filter(|o| o.publish).map(move |o| (s.id.as_str(), o)))
}

/// Each published table's latest version, refusing if any was written by a run newer than
/// `run_id`. Cheap (one small log read per table): `resume` calls it before running anything.
pub async fn table_heads(plan: &Plan, run_id: &str) -> Result<BTreeMap<String, Option<i64>>> {
    let mut heads = BTreeMap::new();
    let mut newer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, o) in published_outputs(plan) {
        let head = delta::head(&plan.lake, &o.name).await?;
        if let Some((_, Some(by))) = &head {
            if by.as_str() > run_id {
                newer.entry(by.clone()).or_default().push(o.name.clone());
            }
        }
        heads.insert(o.name.clone(), head.map(|(v, _)| v));
    }
    if let Some((newer, tables)) = newer.into_iter().next_back() {
        return Err(Stale { run_id: run_id.to_string(), newer, tables }.into());
    }
    Ok(heads)
}

/// Check everything that could refuse the publish and describe it as a manifest. Writes nothing.
/// Tables in `unchanged` (whose published version already holds exactly this run's output) are
/// left out.
pub async fn prepare(plan: &Plan, unchanged: &std::collections::BTreeSet<String>) -> Result<Manifest> {
    let run_id = &plan.vars.run_id;
    let ctx = crate::engine::session();
    plan.lake.register(&ctx);
    let publish = || published_outputs(plan).filter(|(_, o)| !unchanged.contains(&o.name));
    for (_, o) in publish() {
        delta::check_compatible(&ctx, &plan.lake, &o.name, &plan.lake.staging_url(run_id, &o.name), o.schema_mode).await?;
    }
    let heads = table_heads(plan, run_id).await?;
    let tables = publish()
        .map(|(stage, o)| TableCommit {
            table: o.name.clone(),
            stage: stage.to_string(),
            staged: plan.lake.staging_url(run_id, &o.name).to_string(),
            base_version: heads.get(&o.name).copied().flatten(),
            schema_mode: o.schema_mode,
            partition_by: o.partition_by.clone(),
        })
        .collect();
    Ok(Manifest { run_id: run_id.clone(), pipeline: plan.name.clone(), created_at: chrono::Utc::now().to_rfc3339(), tables })
}

/// One table committed (or found committed) while rolling forward.
#[derive(Debug, Clone)]
pub struct TableDone {
    pub table: String,
    pub outcome: TableOutcome,
    /// False when an earlier, interrupted attempt had already committed it.
    pub committed_now: bool,
}

/// Commit every table of a manifest that is not committed yet, then write its completion.
/// `on_table` hears of each table as it is settled (progress lines, run history).
pub async fn roll_forward(lake: &Lake, m: &Manifest, on_table: &mut (dyn FnMut(&TableDone) + Send)) -> Result<Completion> {
    let ctx = crate::engine::session();
    lake.register(&ctx);
    let mut tables = BTreeMap::new();
    for t in &m.tables {
        let done = retry_transient(&format!("committing `{}`", t.table), || commit_table(&ctx, lake, m, t)).await?;
        on_table(&done);
        tables.insert(done.table, done.outcome);
    }
    let completion =
        Completion { run_id: m.run_id.clone(), pipeline: m.pipeline.clone(), completed_at: chrono::Utc::now().to_rfc3339(), tables };
    retry_transient("writing the completion", || commit::write_completion(lake, &completion)).await?;
    Ok(completion)
}

/// Write the run manifest (the commit point), retrying transient store errors. Create-if-absent
/// makes a retry after a lost reply safe: the manifest already there is the one in force.
pub async fn commit(lake: &Lake, manifest: &Manifest) -> Result<Manifest> {
    retry_transient("writing the run manifest", || commit::write_manifest(lake, manifest)).await
}

/// Every step of the publish is idempotent (a table's log is searched for the run's commit
/// before committing; documents are create-if-absent), so a transient store error (a 503, a
/// dropped connection) is retried a few times before the publish is left incomplete.
async fn retry_transient<T, F, Fut>(what: &str, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    const ATTEMPTS: u32 = 4;
    let mut delay = std::time::Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match step().await {
            Err(e) if attempt < ATTEMPTS && classify(&e) == ErrorClass::Transient => {
                tracing::warn!("{what} failed (attempt {attempt} of {ATTEMPTS}), retrying in {delay:?}: {e:#}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn commit_table(ctx: &datafusion::prelude::SessionContext, lake: &Lake, m: &Manifest, t: &TableCommit) -> Result<TableDone> {
    let done = |version: Option<i64>, superseded_by: Option<String>, committed_now: bool| TableDone {
        table: t.table.clone(),
        outcome: TableOutcome { version, superseded_by },
        committed_now,
    };
    if let Some((latest, by)) = delta::head(lake, &t.table).await? {
        if let Some(v) = delta::version_of_run(lake, &t.table, &m.run_id, t.base_version, latest).await? {
            return Ok(done(Some(v), None, false));
        }
        // Another pipeline's newer run wrote this table after our commit point: its data stays.
        if let Some(by) = by.filter(|b| b.as_str() > m.run_id.as_str()) {
            tracing::warn!("table `{}`: run {by} published a newer version; run {} leaves it in place", t.table, m.run_id);
            return Ok(done(None, Some(by), false));
        }
    }
    let staged = Url::parse(&t.staged).with_context(|| format!("run manifest of {}: bad staged URL", m.run_id))?;
    let version = delta::publish(
        ctx,
        lake,
        PublishRequest {
            table: &t.table,
            staged: &staged,
            run_id: &m.run_id,
            pipeline: &m.pipeline,
            stage: &t.stage,
            schema_mode: t.schema_mode,
            partition_by: &t.partition_by,
        },
    )
    .await?;
    Ok(done(Some(version), None, true))
}
