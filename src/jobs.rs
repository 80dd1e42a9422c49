//! One way into a run, for the CLI, the scheduler (`crate::daemon`) and backfill alike: load and
//! plan the pipeline, take the pipeline's lease on the lake, finish any publish a dead process
//! left past its commit point, mark runs whose process died as interrupted, record the run,
//! execute it with a heartbeat, give the lease back.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostics;
use crate::plan::{self, Plan, PlanOptions};
use crate::publish;
use crate::run::{self, CommitGate, Progress, RunOptions, RunOutcome};
use crate::schedule::Interval;
use crate::stage::Registry;
use crate::state::{RunRecord, RunStatus, StateStore, Trigger};
use crate::storage::lease::{self, Lease};
use crate::storage::{Lake, commit};

/// How a run is executed, whatever started it.
#[derive(Clone)]
pub struct JobOptions {
    pub max_parallel: usize,
    pub quiet: bool,
    pub cancel: CancellationToken,
    pub commit: Arc<CommitGate>,
    /// How long to wait for another live run of the same pipeline to finish (0: refuse at once).
    pub lease_wait: Duration,
    /// Run every stage, even those whose inputs and config are unchanged since their last
    /// successful run.
    pub force: bool,
}

/// A pipeline that failed validation (exit code 2) rather than a run that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub Diagnostics);

/// Load, build and schema-check a pipeline file.
pub async fn load_plan(file: &Path, opts: &PlanOptions) -> Result<(Plan, plan::SchemaReport)> {
    plan_spec(crate::spec::load(file).map_err(Invalid)?, opts).await
}

/// Build and schema-check a parsed pipeline.
async fn plan_spec(spec: crate::spec::SpecFile, opts: &PlanOptions) -> Result<(Plan, plan::SchemaReport)> {
    let plan = plan::build(&spec, opts, &Registry::builtin()).map_err(Invalid)?;
    let report = plan::check_schemas(&plan).await.map_err(Invalid)?;
    Ok((plan, report))
}

/// Which data interval a run covers.
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// A whole local day, [D 00:00, D+1 00:00) in the schedule's time zone (`restock run --date`).
    Day(NaiveDate),
    /// A scheduled interval (UTC).
    Interval(Interval),
}

/// A run to start: what every way into a run (CLI, daemon, backfill) describes.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub file: PathBuf,
    pub when: When,
    pub params: Vec<(String, String)>,
    pub lake: Option<String>,
    pub trigger: Trigger,
    /// Relative paths (lake, SQL files) resolve against this.
    pub base_dir: PathBuf,
    /// The pipeline text to run instead of the file's (the daemon's last good version of a file
    /// that has since been broken).
    pub text: Option<String>,
}

impl RunRequest {
    pub fn plan_options(&self, run_id: String) -> PlanOptions {
        let (run_date, interval) = match self.when {
            When::Day(d) => (d, None),
            When::Interval(i) => (i.start.date_naive(), Some(i)),
        };
        PlanOptions {
            run_id,
            run_date,
            interval,
            params: self.params.clone(),
            lake_override: self.lake.clone(),
            base_dir: self.base_dir.clone(),
        }
    }
}

/// Plan a request under a new run id and run it; `announce` sees the plan before it starts.
pub async fn run(req: &RunRequest, state: Arc<dyn StateStore>, opts: &JobOptions, announce: impl FnOnce(&Plan)) -> Result<RunOutcome> {
    let spec = match &req.text {
        Some(text) => crate::spec::parse(&req.file, text.clone()),
        None => crate::spec::load(&req.file),
    };
    let (plan, _) = plan_spec(spec.map_err(Invalid)?, &req.plan_options(plan::new_run_id())).await?;
    if opts.cancel.is_cancelled() {
        return Ok(RunOutcome {
            run_id: "(not started)".into(),
            status: RunStatus::Cancelled,
            stages: vec![],
            published: vec![],
            error: Some("cancelled before it started".into()),
        });
    }
    announce(&plan);
    start(plan, state, opts, req.trigger).await
}

/// Start a new run of a planned pipeline.
pub async fn start(plan: Plan, state: Arc<dyn StateStore>, opts: &JobOptions, trigger: Trigger) -> Result<RunOutcome> {
    let lease = Lease::acquire(&plan.lake, &plan.name, &plan.vars.run_id, opts.lease_wait).await?;
    reap_interrupted(&state, opts.quiet)?;
    recover_lake(&plan.lake, &lease, &state, opts.quiet).await?;
    state.create_run(&run::new_run_record(&plan, trigger)?)?;
    let cache = stage_cache(&plan, opts.force, opts.quiet).await;
    execute(plan, state, opts, HashSet::new(), lease, cache).await
}

/// Fingerprints and cache hits of a new run (`force`: no hits, but its outputs still become the
/// cache entries); a lake the cache cannot be read from runs every stage (with a warning)
/// rather than failing the run.
async fn stage_cache(plan: &Plan, force: bool, quiet: bool) -> Option<run::cache::StageCache> {
    let found = async {
        let fingerprints = run::cache::fingerprints(plan).await?;
        let hits = if force { vec![None; fingerprints.len()] } else { run::cache::lookup(plan, &fingerprints).await? };
        anyhow::Ok(run::cache::StageCache { fingerprints, hits })
    };
    match found.await {
        Ok(c) => Some(c),
        Err(e) => {
            if !quiet {
                eprintln!("warning: cannot compare stages with their last successful run, running them all: {e:#}");
            }
            None
        }
    }
}

/// Mark every `running` run whose process is gone (or whose heartbeat stopped) as interrupted,
/// returning them with the reason.
pub fn reap_interrupted(state: &Arc<dyn StateStore>, quiet: bool) -> Result<Vec<(RunRecord, String)>> {
    let now = chrono::Utc::now();
    let mut reaped = vec![];
    for run in state.runs_with_status(RunStatus::Running)? {
        let Some(why) = run.dead_because(now) else { continue };
        let id = &run.info.run_id;
        state.set_run_status(id, RunStatus::Interrupted, Some(&format!("interrupted: {why}; `restock resume {id}` continues it")))?;
        if !quiet {
            eprintln!("run {id} of pipeline `{}` was interrupted ({why}); `restock resume {id}` continues it", run.info.pipeline);
        }
        reaped.push((run, why));
    }
    Ok(reaped)
}

/// Record the heartbeat of a run every [`crate::state::heartbeat_every`] until aborted.
fn heartbeat(state: Arc<dyn StateStore>, run_id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let me = crate::process::Holder::current();
        loop {
            let (s, id, who) = (state.clone(), run_id.clone(), me.clone());
            match tokio::task::spawn_blocking(move || s.heartbeat(&id, &who)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("run {run_id}: cannot record its heartbeat: {e:#}"),
                Err(_) => return,
            }
            tokio::time::sleep(crate::state::heartbeat_every()).await;
        }
    })
}

/// Execute under a held lease; a lease lost to another process (this one presumed dead)
/// cancels the run if it has not reached its commit point.
async fn execute(
    plan: Plan,
    state: Arc<dyn StateStore>,
    opts: &JobOptions,
    reuse: HashSet<usize>,
    lease: Lease,
    cache: Option<run::cache::StageCache>,
) -> Result<RunOutcome> {
    let beat = heartbeat(state.clone(), plan.vars.run_id.clone());
    let watch = {
        let (lost, cancel, commit) = (lease.lost(), opts.cancel.clone(), opts.commit.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            eprintln!("the run lease was taken over by another process (this one was presumed dead): stopping");
            commit.interrupt(&cancel);
        })
    };
    let run_opts = RunOptions {
        max_parallel: opts.max_parallel,
        cancel: opts.cancel.clone(),
        quiet: opts.quiet,
        reuse,
        commit: opts.commit.clone(),
        cache,
        gpus: if plan.stages.iter().any(|s| s.gpus > 0) { crate::device::gpu_count() } else { 0 },
    };
    let outcome = run::execute(Arc::new(plan), state, run_opts).await;
    watch.abort();
    beat.abort();
    if let Err(e) = lease.release().await {
        tracing::warn!("could not release the run lease (it expires by itself): {e:#}");
    }
    outcome
}

/// Roll forward the publishes that processes died in the middle of (past their commit point),
/// recording the outcome where this run history knows the run. `held` covers its own pipeline's
/// manifests; for another pipeline's, that pipeline's lease is taken first, and a manifest whose
/// run still holds it (it is publishing right now) is left alone.
async fn recover_lake(lake: &Lake, held: &Lease, state: &Arc<dyn StateStore>, quiet: bool) -> Result<()> {
    for m in commit::pending(lake).await? {
        let other = if m.pipeline == held.info().pipeline {
            None
        } else {
            match Lease::acquire(lake, &m.pipeline, &m.run_id, Duration::ZERO).await {
                Ok(l) => Some(l),
                Err(e) if e.downcast_ref::<lease::Held>().is_some() => continue,
                Err(e) => return Err(e),
            }
        };
        let known = state.get_run(&m.run_id).is_ok();
        let (status, error, published) = run::finish_publish(lake, known.then_some(state), &Progress::new(0, true), &m).await;
        if known {
            state.set_run_status(&m.run_id, status, error.as_deref())?;
        }
        match status {
            RunStatus::Succeeded if !quiet => {
                let tables: Vec<String> = published.iter().map(|p| format!("{} v{}", p.table, p.version)).collect();
                eprintln!("finished the interrupted publish of run {} (pipeline `{}`): {}", m.run_id, m.pipeline, tables.join(", "));
            }
            RunStatus::Succeeded => {}
            _ => eprintln!("warning: run {} (pipeline `{}`): {}", m.run_id, m.pipeline, error.unwrap_or_default()),
        }
        if let Some(l) = other {
            l.release().await?;
        }
    }
    Ok(())
}

/// What `resume` will do.
pub enum ResumePlan {
    /// The run is past its commit point: only its publish is finished.
    PublishOnly,
    /// Re-run these stages (and publish); the others are reused.
    Stages { rerun: Vec<String>, reused: usize },
}

/// Continue a run: finish its publish if it got past its commit point, otherwise re-run its
/// failed or cancelled stages (and their dependents), reusing the staged outputs of the rest.
pub async fn resume(
    run: &RunRecord,
    state: Arc<dyn StateStore>,
    opts: &JobOptions,
    base_dir: &Path,
    announce: impl FnOnce(&ResumePlan),
) -> Result<RunOutcome> {
    let run_id = run.info.run_id.clone();
    if run.status == RunStatus::Succeeded {
        bail!("run {run_id} already succeeded; nothing to resume");
    }
    let plan = replan(run, base_dir).await?;
    let lease = Lease::acquire(&plan.lake, &plan.name, &run_id, opts.lease_wait).await?;
    // The lease is ours, so whatever process ran this run is gone.
    reap_interrupted(&state, true)?;
    if let Some(manifest) = crate::storage::commit::read_manifest(&plan.lake, &run_id).await? {
        announce(&ResumePlan::PublishOnly);
        state.set_run_status(&run_id, RunStatus::Running, None)?;
        let progress = Progress::new(0, opts.quiet);
        let (status, error, published) = run::finish_publish(&plan.lake, Some(&state), &progress, &manifest).await;
        progress.finish();
        state.set_run_status(&run_id, status, error.as_deref())?;
        lease.release().await?;
        return Ok(RunOutcome { run_id, status, stages: vec![], published, error });
    }
    recover_lake(&plan.lake, &lease, &state, opts.quiet).await?;
    // Refuse before re-running anything if a newer run has published these tables since.
    publish::table_heads(&plan, &run_id).await?;
    let reuse = reusable_stages(&plan, &state, &run_id, opts.quiet).await?;
    let rerun = plan.stages.iter().enumerate().filter(|(i, _)| !reuse.contains(i)).map(|(_, s)| s.id.clone()).collect();
    announce(&ResumePlan::Stages { rerun, reused: reuse.len() });
    state.set_run_status(&run_id, RunStatus::Running, None)?;
    execute(plan, state, opts, reuse, lease, None).await
}

/// The plan of a recorded run: its exact pipeline text and params (SQL files are re-read).
async fn replan(run: &RunRecord, base_dir: &Path) -> Result<Plan> {
    let spec = crate::spec::parse(Path::new(&run.info.pipeline_path), run.info.spec_text.clone()).map_err(Invalid)?;
    let params: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_str(&run.info.params_json)?;
    let opts = PlanOptions {
        run_id: run.info.run_id.clone(),
        run_date: NaiveDate::parse_from_str(&run.info.run_date, "%Y-%m-%d").context("run date in history")?,
        interval: run.info.interval,
        params: params.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect(),
        lake_override: Some(run.info.lake.clone()),
        base_dir: base_dir.to_path_buf(),
    };
    let plan = plan::build(&spec, &opts, &Registry::builtin()).map_err(Invalid)?;
    plan::check_schemas(&plan).await.map_err(Invalid)?;
    Ok(plan)
}

/// Stages whose last attempt succeeded and whose staged outputs are still there (not collected
/// by `restock gc`), and whose upstream stages are all reusable too.
async fn reusable_stages(plan: &Plan, state: &Arc<dyn StateStore>, run_id: &str, quiet: bool) -> Result<HashSet<usize>> {
    let attempts = state.attempts(run_id)?;
    let mut succeeded: HashSet<&str> = HashSet::new();
    for s in &plan.stages {
        if !attempts.iter().filter(|a| a.stage_id == s.id).last().is_some_and(|a| a.status.is_reusable()) {
            continue;
        }
        let mut staged = true;
        for o in &s.outputs {
            staged &= plan.lake.has_objects(&plan.lake.staging_url(run_id, &o.name)).await?;
        }
        if staged {
            succeeded.insert(s.id.as_str());
        } else if !quiet {
            eprintln!("stage {}: its staged outputs are gone (collected by `restock gc`?); running it again", s.id);
        }
    }
    let mut rerun: HashSet<usize> = HashSet::new();
    for (i, s) in plan.stages.iter().enumerate() {
        if !succeeded.contains(s.id.as_str()) {
            rerun.extend(plan.downstream(i));
        }
    }
    Ok((0..plan.stages.len()).filter(|i| !rerun.contains(i)).collect())
}
