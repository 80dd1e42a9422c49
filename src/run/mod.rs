//! plan -> run: executes stages in dependency order, then publishes.
//!
//! Invariants:
//! * A stage starts only after all its dependencies succeeded in this run (or were reused).
//! * A failed stage skips its dependents; independent stages still finish.
//! * Stages write only to `_staging/<run_id>/`; nothing is published unless every stage
//!   (including `check` stages) succeeded. Publishing commits one Delta version per table.
//! * Every attempt is recorded in the state store before it starts and when it ends, so a
//!   crash or Ctrl-C leaves a history that `restock resume` can continue from.
mod inputs;
pub mod progress;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::plan::Plan;
use crate::stage::{StageCx, StageReport};
use crate::state::{AttemptMetrics, AttemptStatus, RunInfo, RunStatus, StateStore};
use crate::storage::delta::{self, PublishRequest, Published};
pub use progress::Progress;

pub struct RunOptions {
    pub max_parallel: usize,
    pub cancel: CancellationToken,
    pub quiet: bool,
    /// Stages whose staged outputs from an earlier attempt of this run are reused (resume).
    pub reuse: HashSet<usize>,
}

#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub id: String,
    pub status: AttemptStatus,
    pub reused: bool,
    pub attempts: u32,
    pub error: Option<String>,
    pub duration: Duration,
    pub report: StageReport,
}

impl StageOutcome {
    /// A stage that did not run in this execution (reused, skipped or never started).
    fn not_run(id: &str, status: AttemptStatus, reused: bool, error: Option<String>) -> Self {
        Self { id: id.to_string(), status, reused, attempts: 0, error, duration: Duration::ZERO, report: StageReport::default() }
    }
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub stages: Vec<StageOutcome>,
    pub published: Vec<Published>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    Running,
    Done(AttemptStatus),
}

/// The run-history record of a new run of `plan`.
pub fn new_run_record(plan: &Plan) -> Result<RunInfo> {
    Ok(RunInfo {
        run_id: plan.vars.run_id.clone(),
        pipeline: plan.name.clone(),
        pipeline_path: plan.path.display().to_string(),
        spec_text: plan.spec_text.clone(),
        spec_hash: plan.spec_hash.clone(),
        params_json: serde_json::to_string(&plan.vars.params)?,
        run_date: plan.vars.run_date.to_string(),
        interval_start: plan.vars.interval_start.to_string(),
        interval_end: plan.vars.interval_end.to_string(),
        lake: plan.lake.root.to_string(),
    })
}

/// Record a new run and execute it.
pub async fn start(plan: Arc<Plan>, state: Arc<dyn StateStore>, opts: RunOptions) -> Result<RunOutcome> {
    state.create_run(&new_run_record(&plan)?)?;
    execute(plan, state, opts).await
}

/// Run a plan whose run record already exists in `state`. Never returns Err for stage
/// failures (those are in the outcome); Err means the state store itself failed.
pub async fn execute(plan: Arc<Plan>, state: Arc<dyn StateStore>, opts: RunOptions) -> Result<RunOutcome> {
    let run_id = plan.vars.run_id.clone();
    let n = plan.stages.len();
    let progress = Progress::new(n, opts.quiet);
    let mut slots = vec![Slot::Pending; n];
    let mut outcomes: Vec<Option<StageOutcome>> = vec![None; n];
    for &i in &opts.reuse {
        slots[i] = Slot::Done(AttemptStatus::Succeeded);
        outcomes[i] = Some(StageOutcome::not_run(&plan.stages[i].id, AttemptStatus::Succeeded, true, None));
        progress.not_run(format!("↺ {} reused from the earlier attempt", plan.stages[i].id));
    }

    let mut running: JoinSet<(usize, StageOutcome)> = JoinSet::new();
    let max_parallel = opts.max_parallel.max(1);
    loop {
        if !opts.cancel.is_cancelled() {
            for i in 0..n {
                if running.len() >= max_parallel {
                    break;
                }
                let ready =
                    slots[i] == Slot::Pending && plan.stages[i].deps.iter().all(|&d| slots[d] == Slot::Done(AttemptStatus::Succeeded));
                if ready {
                    slots[i] = Slot::Running;
                    let (plan, state, cancel, progress) = (plan.clone(), state.clone(), opts.cancel.clone(), progress.clone());
                    running.spawn(async move { (i, run_stage(&plan, i, state, cancel, &progress).await) });
                }
            }
        }
        let Some(joined) = running.join_next().await else { break };
        let (i, outcome) = joined.map_err(|e| anyhow!("stage task crashed: {e}"))?;
        slots[i] = Slot::Done(outcome.status);
        if outcome.status != AttemptStatus::Succeeded && outcome.status != AttemptStatus::Cancelled {
            for j in plan.downstream(i).into_iter().skip(1) {
                if slots[j] == Slot::Pending {
                    slots[j] = Slot::Done(AttemptStatus::Skipped);
                    let reason = format!("upstream stage `{}` {}", plan.stages[i].id, outcome.status);
                    state.record_skip(&run_id, &plan.stages[j].id, &reason)?;
                    progress.not_run(format!("- {} skipped: {reason}", plan.stages[j].id));
                    outcomes[j] = Some(StageOutcome::not_run(&plan.stages[j].id, AttemptStatus::Skipped, false, Some(reason)));
                }
            }
        }
        outcomes[i] = Some(outcome);
    }

    // Stages never started because of cancellation.
    for (i, slot) in slots.iter().enumerate() {
        if *slot == Slot::Pending {
            outcomes[i] =
                Some(StageOutcome::not_run(&plan.stages[i].id, AttemptStatus::Cancelled, false, Some("not started: run cancelled".into())));
        }
    }
    let stages: Vec<StageOutcome> = outcomes.into_iter().map(|o| o.expect("every stage has an outcome")).collect();
    let all_ok = stages.iter().all(|s| s.status == AttemptStatus::Succeeded);

    let (status, error, published) = if opts.cancel.is_cancelled() {
        (RunStatus::Cancelled, Some("cancelled by signal; nothing was published".to_string()), vec![])
    } else if !all_ok {
        let failed: Vec<&str> =
            stages.iter().filter(|s| matches!(s.status, AttemptStatus::Failed | AttemptStatus::TimedOut)).map(|s| s.id.as_str()).collect();
        (RunStatus::Failed, Some(format!("stage(s) failed: {}; nothing was published", failed.join(", "))), vec![])
    } else {
        progress.message("publishing");
        match publish_all(&plan, &state, &progress).await {
            Ok(published) => {
                // Staged data has been committed; keep the lake tidy.
                let _ = plan.lake.delete_prefix(&plan.lake.run_staging_url(&run_id)).await;
                (RunStatus::Succeeded, None, published)
            }
            Err(e) => (RunStatus::Failed, Some(format!("publish failed: {e:#}")), vec![]),
        }
    };
    progress.finish();
    state.set_run_status(&run_id, status, error.as_deref())?;
    Ok(RunOutcome { run_id, status, stages, published, error })
}

async fn run_stage(plan: &Plan, i: usize, state: Arc<dyn StateStore>, cancel: CancellationToken, progress: &Progress) -> StageOutcome {
    let stage = &plan.stages[i];
    let run_id = &plan.vars.run_id;
    let started = Instant::now();
    let mut retry = 0u32;
    loop {
        let attempt = match state.start_attempt(run_id, &stage.id) {
            Ok(a) => a,
            Err(e) => return failed(stage.id.clone(), AttemptStatus::Failed, retry + 1, format!("state store: {e:#}"), started),
        };
        let bar = progress.stage_started(&stage.id, retry + 1);
        let attempt_started = Instant::now();
        let stage_cancel = cancel.child_token();
        let result = attempt_once(plan, i, &stage_cancel).await;
        let (status, err, report, metrics) = match result {
            Ok((report, inputs)) => {
                let metrics = AttemptMetrics {
                    rows_in: Some(inputs.rows),
                    rows_out: Some(report.rows_out),
                    bytes_in: Some(inputs.bytes),
                    bytes_out: Some(report.bytes_out),
                    details: report.details.as_ref().map(|d| d.to_string()),
                };
                (AttemptStatus::Succeeded, None, report, metrics)
            }
            Err(AttemptError::Cancelled) => {
                (AttemptStatus::Cancelled, Some("cancelled".to_string()), StageReport::default(), AttemptMetrics::default())
            }
            Err(AttemptError::TimedOut(d)) => {
                stage_cancel.cancel();
                (
                    AttemptStatus::TimedOut,
                    Some(format!("timed out after {}", humantime::format_duration(d))),
                    StageReport::default(),
                    AttemptMetrics::default(),
                )
            }
            Err(AttemptError::Failed(e)) => {
                (AttemptStatus::Failed, Some(format!("{e:#}")), StageReport::default(), AttemptMetrics::default())
            }
        };
        if let Err(e) = state.finish_attempt(run_id, &stage.id, attempt, status, err.as_deref(), &metrics) {
            return failed(stage.id.clone(), AttemptStatus::Failed, retry + 1, format!("state store: {e:#}"), started);
        }
        let took = attempt_started.elapsed();
        match status {
            AttemptStatus::Succeeded => {
                let what = match report.details.as_ref().and_then(|d| d.get("tests")).and_then(|t| t.as_array()) {
                    Some(tests) => format!("{} data tests", tests.len()),
                    None => format!("{} rows out", report.rows_out),
                };
                let mut line = format!("✔ {} ({:.1}s, {what})", stage.id, took.as_secs_f64());
                for w in &report.warnings {
                    line.push_str(&format!("\n    warning: {w}"));
                }
                progress.stage_done(bar, line);
                return StageOutcome {
                    id: stage.id.clone(),
                    status,
                    reused: false,
                    attempts: retry + 1,
                    error: None,
                    duration: started.elapsed(),
                    report,
                };
            }
            AttemptStatus::Cancelled => {
                progress.stage_done(bar, format!("✖ {} cancelled", stage.id));
                return failed(stage.id.clone(), status, retry + 1, "cancelled".into(), started);
            }
            _ => {
                let msg = err.unwrap_or_default();
                if retry < stage.retry.max_retries && !cancel.is_cancelled() {
                    retry += 1;
                    let delay = stage.retry.delay(retry);
                    progress.stage_done(
                        bar,
                        format!("↻ {} attempt {} {status}: {msg} — retrying in {:.1}s", stage.id, retry, delay.as_secs_f64()),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = cancel.cancelled() => return failed(stage.id.clone(), AttemptStatus::Cancelled, retry, "cancelled".into(), started),
                    }
                }
                progress.stage_done(bar, format!("✖ {} {status}: {msg}", stage.id));
                return failed(stage.id.clone(), status, retry + 1, msg, started);
            }
        }
    }
}

fn failed(id: String, status: AttemptStatus, attempts: u32, error: String, started: Instant) -> StageOutcome {
    StageOutcome { id, status, reused: false, attempts, error: Some(error), duration: started.elapsed(), report: StageReport::default() }
}

enum AttemptError {
    Cancelled,
    TimedOut(Duration),
    Failed(anyhow::Error),
}

async fn attempt_once(plan: &Plan, i: usize, cancel: &CancellationToken) -> Result<(StageReport, inputs::InputStats), AttemptError> {
    let stage = &plan.stages[i];
    let run_id = &plan.vars.run_id;
    let work = async {
        let ctx = crate::engine::session();
        plan.lake.register(&ctx);
        let stats = inputs::register(&ctx, plan, stage, run_id).await?;
        let mut outputs = vec![];
        for o in &stage.outputs {
            let url = plan.lake.staging_url(run_id, &o.name);
            // A previous failed attempt may have left partial files.
            plan.lake.delete_prefix(&url).await?;
            outputs.push((o.name.clone(), url));
        }
        let cx = StageCx { stage_id: stage.id.clone(), ctx, outputs, cancel: cancel.clone() };
        let report = stage.task.run(&cx).await?;
        Ok::<_, anyhow::Error>((report, stats))
    };
    let timeout = stage.timeout.unwrap_or(Duration::from_secs(60 * 60 * 24 * 365));
    tokio::select! {
        // A stage that notices cancellation returns an error at the same instant the token
        // fires; that is a cancellation, not a failure.
        r = work => r.map_err(|e| if cancel.is_cancelled() { AttemptError::Cancelled } else { AttemptError::Failed(e) }),
        _ = tokio::time::sleep(timeout) => Err(AttemptError::TimedOut(timeout)),
        _ = cancel.cancelled() => Err(AttemptError::Cancelled),
    }
}

/// Commit every published output. Schemas are checked for all tables before the first commit,
/// so a schema conflict in the last table cannot leave the first ones updated.
async fn publish_all(plan: &Plan, state: &Arc<dyn StateStore>, progress: &Progress) -> Result<Vec<Published>> {
    let run_id = &plan.vars.run_id;
    let ctx = crate::engine::session();
    plan.lake.register(&ctx);
    let outputs: Vec<_> = plan.stages.iter().flat_map(|s| s.outputs.iter().filter(|o| o.publish).map(move |o| (s, o))).collect();
    for (_, o) in &outputs {
        delta::check_compatible(&ctx, &plan.lake, &o.name, &plan.lake.staging_url(run_id, &o.name), o.schema_mode).await?;
    }
    let mut published = vec![];
    for (stage, o) in outputs {
        let staged = plan.lake.staging_url(run_id, &o.name);
        let p = delta::publish(
            &ctx,
            &plan.lake,
            PublishRequest {
                table: &o.name,
                staged: &staged,
                run_id,
                pipeline: &plan.name,
                stage: &stage.id,
                schema_mode: o.schema_mode,
                partition_by: &o.partition_by,
            },
        )
        .await?;
        state.record_publication(run_id, &p.table, p.version)?;
        progress.line(format!("⇪ published {} v{}", p.table, p.version));
        published.push(p);
    }
    Ok(published)
}
