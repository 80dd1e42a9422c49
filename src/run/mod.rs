//! plan -> run: executes stages in dependency order, then publishes.
//!
//! Invariants:
//! * A stage starts only after all its dependencies succeeded in this run (or were reused).
//! * A failed stage skips its dependents; independent stages still finish.
//! * Stages write only to `_staging/<run_id>/`; nothing is published unless every stage
//!   (including `check` stages) succeeded. Publishing goes through one commit point, the run
//!   manifest (`crate::publish`): before it nothing is visible, after it the run is finished
//!   even through signals and crashes.
//! * Every attempt is recorded in the state store before it starts and when it ends, so a
//!   crash or Ctrl-C leaves a history that `restock resume` can continue from.
pub mod cache;
mod inputs;
pub mod progress;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::errors::{ErrorClass, classify};
use crate::plan::Plan;
use crate::publish;
use crate::stage::{StageCx, StageProgress, StageReport};
use crate::state::{AttemptMetrics, AttemptStatus, RunInfo, RunStatus, StateStore};
use crate::storage::commit::{Manifest, TableOutcome};
pub use progress::Progress;

pub struct RunOptions {
    pub max_parallel: usize,
    pub cancel: CancellationToken,
    pub quiet: bool,
    /// Stages whose staged outputs from an earlier attempt of this run are reused (resume).
    pub reuse: HashSet<usize>,
    /// Shared with the signal handler: whether the run is past its commit point.
    pub commit: Arc<CommitGate>,
    /// Fingerprints and reusable outputs of unchanged stages (none: run every stage).
    pub cache: Option<cache::StageCache>,
    /// GPUs on this machine: stages' `resources: { gpu: N }` never add up to more at once (0
    /// counts as 1: GPU stages then run one at a time, on the CPU).
    pub gpus: usize,
}

/// The line between "a signal cancels the run" and "the run is committed, finish publishing".
/// The executor crosses it only if the run was not cancelled; a signal handler asks it whether
/// to cancel. Both happen under one lock, so a signal can never land between the check and the
/// commit point.
#[derive(Debug, Default)]
pub struct CommitGate {
    committed: Mutex<bool>,
}

/// What a signal did to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// Before the commit point: stages stop, nothing is published.
    Cancelled,
    /// Past the commit point: the publish is being finished.
    Finishing,
}

impl CommitGate {
    pub fn interrupt(&self, cancel: &CancellationToken) -> Interrupted {
        let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if *committed {
            Interrupted::Finishing
        } else {
            cancel.cancel();
            Interrupted::Cancelled
        }
    }

    /// Cross the commit point unless the run was cancelled.
    fn enter(&self, cancel: &CancellationToken) -> bool {
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if cancel.is_cancelled() {
            return false;
        }
        *committed = true;
        true
    }
}

/// A table a run made visible.
#[derive(Debug, Clone)]
pub struct Published {
    pub table: String,
    pub version: i64,
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
pub fn new_run_record(plan: &Plan, trigger: crate::state::Trigger) -> Result<RunInfo> {
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
        interval: Some(plan.interval),
        trigger,
        lake: plan.lake.root.to_string(),
    })
}

/// Record a new run and execute it.
pub async fn start(plan: Arc<Plan>, state: Arc<dyn StateStore>, opts: RunOptions) -> Result<RunOutcome> {
    state.create_run(&new_run_record(&plan, crate::state::Trigger::Manual)?)?;
    execute(plan, state, opts).await
}

/// Run a plan whose run record already exists in `state`. Never returns Err for stage
/// failures (those are in the outcome); Err means the state store itself failed.
pub async fn execute(plan: Arc<Plan>, state: Arc<dyn StateStore>, opts: RunOptions) -> Result<RunOutcome> {
    let run_id = plan.vars.run_id.clone();
    let progress = Progress::new(plan.stages.len(), opts.quiet);
    let mut schedule = Schedule::new(&plan, &opts, &progress);
    let mut running: JoinSet<(usize, StageOutcome)> = JoinSet::new();
    loop {
        while let Some(i) = schedule.next_ready(&opts.cancel) {
            let (plan, state, cancel, progress) = (plan.clone(), state.clone(), opts.cancel.clone(), progress.clone());
            let hit = opts.cache.as_ref().and_then(|c| c.hits[i].clone());
            running.spawn(async move {
                if let Some(outcome) = restore_stage(&plan, i, hit, &state, &progress).await {
                    return (i, outcome);
                }
                (i, run_stage(&plan, i, state, cancel, &progress).await)
            });
        }
        let Some(joined) = running.join_next().await else { break };
        match joined {
            Ok((i, outcome)) => schedule.done(i, outcome, &state, &progress)?,
            Err(e) => {
                // Panics inside a stage are caught per attempt; this is the executor itself.
                let msg = format!("stage task crashed: {e}");
                progress.finish();
                state.set_run_status(&run_id, RunStatus::Failed, Some(&msg))?;
                return Err(anyhow!(msg));
            }
        }
    }
    let stages = schedule.outcomes();
    let (status, error, published) = conclude(&plan, &state, &progress, &opts, &stages).await;
    progress.finish();
    state.set_run_status(&run_id, status, error.as_deref())?;
    Ok(RunOutcome { run_id, status, stages, published, error })
}

/// The executor's state: each stage's slot and outcome, and the slots and GPUs in use.
struct Schedule<'a> {
    plan: &'a Plan,
    slots: Vec<Slot>,
    outcomes: Vec<Option<StageOutcome>>,
    /// Running stages that hold a slot (sensors wait without one), at most `max_parallel`.
    busy: usize,
    max_parallel: usize,
    /// GPUs the running stages hold, at most `gpu_capacity`.
    gpus_busy: usize,
    gpu_capacity: usize,
}

impl<'a> Schedule<'a> {
    /// Every stage pending, except those `opts.reuse` takes from an earlier attempt.
    fn new(plan: &'a Plan, opts: &RunOptions, progress: &Progress) -> Self {
        let n = plan.stages.len();
        let mut schedule = Schedule {
            plan,
            slots: vec![Slot::Pending; n],
            outcomes: vec![None; n],
            busy: 0,
            max_parallel: opts.max_parallel.max(1),
            gpus_busy: 0,
            gpu_capacity: opts.gpus.max(1),
        };
        for &i in &opts.reuse {
            schedule.slots[i] = Slot::Done(AttemptStatus::Succeeded);
            schedule.outcomes[i] = Some(StageOutcome::not_run(&plan.stages[i].id, AttemptStatus::Succeeded, true, None));
            progress.not_run(format!("↺ {} reused from the earlier attempt", plan.stages[i].id));
        }
        schedule
    }

    fn gpus_of(&self, i: usize) -> usize {
        (self.plan.stages[i].gpus as usize).min(self.gpu_capacity)
    }

    /// The first pending stage whose dependencies all succeeded and that fits in the free slots
    /// and GPUs, marked running; none once the run is cancelled.
    fn next_ready(&mut self, cancel: &CancellationToken) -> Option<usize> {
        if cancel.is_cancelled() {
            return None;
        }
        let stages = &self.plan.stages;
        let i = (0..stages.len()).find(|&i| {
            let holds = stages[i].task.holds_slot();
            let fits = !(holds && self.busy >= self.max_parallel) && self.gpus_busy + self.gpus_of(i) <= self.gpu_capacity;
            fits && self.slots[i] == Slot::Pending && stages[i].deps.iter().all(|&d| self.slots[d] == Slot::Done(AttemptStatus::Succeeded))
        })?;
        self.busy += usize::from(stages[i].task.holds_slot());
        self.gpus_busy += self.gpus_of(i);
        self.slots[i] = Slot::Running;
        Some(i)
    }

    /// Stage `i` ended: free what it held; if it failed, skip (and record) everything downstream.
    fn done(&mut self, i: usize, outcome: StageOutcome, state: &Arc<dyn StateStore>, progress: &Progress) -> Result<()> {
        let stages = &self.plan.stages;
        self.busy -= usize::from(stages[i].task.holds_slot());
        self.gpus_busy -= self.gpus_of(i);
        self.slots[i] = Slot::Done(outcome.status);
        if outcome.status != AttemptStatus::Succeeded && outcome.status != AttemptStatus::Cancelled {
            for j in self.plan.downstream(i).into_iter().skip(1) {
                if self.slots[j] == Slot::Pending {
                    self.slots[j] = Slot::Done(AttemptStatus::Skipped);
                    let reason = format!("upstream stage `{}` {}", stages[i].id, outcome.status);
                    state.record_skip(&self.plan.vars.run_id, &stages[j].id, &reason)?;
                    progress.not_run(format!("- {} skipped: {reason}", stages[j].id));
                    self.outcomes[j] = Some(StageOutcome::not_run(&stages[j].id, AttemptStatus::Skipped, false, Some(reason)));
                }
            }
        }
        self.outcomes[i] = Some(outcome);
        Ok(())
    }

    /// Every stage's outcome; those never started (the run was cancelled) are cancelled.
    fn outcomes(self) -> Vec<StageOutcome> {
        let stages = &self.plan.stages;
        self.outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    debug_assert_eq!(self.slots[i], Slot::Pending, "only a stage never started has no outcome");
                    StageOutcome::not_run(&stages[i].id, AttemptStatus::Cancelled, false, Some("not started: run cancelled".into()))
                })
            })
            .collect()
    }
}

/// How the run ends once its stages have: cancelled, failed (nothing published), or published.
async fn conclude(
    plan: &Plan,
    state: &Arc<dyn StateStore>,
    progress: &Progress,
    opts: &RunOptions,
    stages: &[StageOutcome],
) -> (RunStatus, Option<String>, Vec<Published>) {
    if opts.cancel.is_cancelled() {
        return (RunStatus::Cancelled, Some(NOTHING_PUBLISHED_CANCELLED.to_string()), vec![]);
    }
    if stages.iter().any(|s| s.status != AttemptStatus::Succeeded) {
        let failed: Vec<&str> =
            stages.iter().filter(|s| matches!(s.status, AttemptStatus::Failed | AttemptStatus::TimedOut)).map(|s| s.id.as_str()).collect();
        return (RunStatus::Failed, Some(format!("stage(s) failed: {}; nothing was published", failed.join(", "))), vec![]);
    }
    progress.message("publishing");
    let ran: Vec<bool> = stages.iter().map(|s| !s.reused).collect();
    publish_run(plan, state, progress, opts, &ran).await
}

const NOTHING_PUBLISHED_CANCELLED: &str = "cancelled by signal; nothing was published";

/// Serve stage `i` from the cache when its fingerprint is unchanged; `None` (run it) on a miss
/// or when the cached outputs cannot be restored.
async fn restore_stage(
    plan: &Plan,
    i: usize,
    hit: Option<cache::Entry>,
    state: &Arc<dyn StateStore>,
    progress: &Progress,
) -> Option<StageOutcome> {
    let entry = hit?;
    let stage = &plan.stages[i];
    let started = Instant::now();
    if let Err(e) = cache::restore(plan, i, &entry).await {
        progress.line(format!("↻ {}: cannot reuse the outputs of run {} ({e:#}); running it", stage.id, entry.run_id));
        return None;
    }
    let reason = cache::reason(&entry);
    let recorded = state.start_attempt(&plan.vars.run_id, &stage.id).and_then(|a| {
        state.finish_attempt(&plan.vars.run_id, &stage.id, a, AttemptStatus::Unchanged, Some(&reason), &AttemptMetrics::default())
    });
    if let Err(e) = recorded {
        return Some(failed(stage.id.clone(), AttemptStatus::Failed, 1, format!("state store: {e:#}"), started));
    }
    progress.not_run(format!("↺ {} {reason}", stage.id));
    Some(StageOutcome { duration: started.elapsed(), ..StageOutcome::not_run(&stage.id, AttemptStatus::Succeeded, true, None) })
}

/// Prepare, cross the commit point, roll forward. Errors become the run's status and message.
async fn publish_run(
    plan: &Plan,
    state: &Arc<dyn StateStore>,
    progress: &Progress,
    opts: &RunOptions,
    ran: &[bool],
) -> (RunStatus, Option<String>, Vec<Published>) {
    let unchanged = match &opts.cache {
        Some(c) => cache::unchanged_tables(plan, c, ran).await,
        None => Default::default(),
    };
    for t in &unchanged {
        progress.line(format!("= {t} unchanged: its published version already holds this output"));
    }
    let manifest = match publish::prepare(plan, &unchanged).await {
        Ok(m) => m,
        Err(e) => return (RunStatus::Failed, Some(format!("publish refused: {e:#}; nothing was published")), vec![]),
    };
    if !opts.commit.enter(&opts.cancel) {
        return (RunStatus::Cancelled, Some(NOTHING_PUBLISHED_CANCELLED.to_string()), vec![]);
    }
    let manifest = match publish::commit(&plan.lake, &manifest).await {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("cannot write the run manifest (the commit point): {e:#}; nothing was published");
            return (RunStatus::Failed, Some(msg), vec![]);
        }
    };
    let ended = roll_forward(&plan.lake, Some(state), progress, &manifest).await;
    if ended.0 == RunStatus::Succeeded {
        if let Some(c) = &opts.cache {
            // The outputs of the stages that ran become their cache entries; a failure here
            // only costs the next run a recomputation.
            if let Err(e) = cache::save(plan, &c.fingerprints, ran).await {
                progress.line(format!("warning: cannot keep this run's outputs for unchanged stages of later runs: {e:#}"));
            }
        }
        let _ = plan.lake.delete_prefix(&plan.lake.run_staging_url(&manifest.run_id)).await;
    }
    ended
}

/// Roll a committed manifest forward, recording each table in `state` (when this history knows
/// the run), and say how the run ends. Also what `resume` and the recovery of a dead process's
/// publish do.
pub async fn finish_publish(
    lake: &crate::storage::Lake,
    state: Option<&Arc<dyn StateStore>>,
    progress: &Progress,
    manifest: &Manifest,
) -> (RunStatus, Option<String>, Vec<Published>) {
    let ended = roll_forward(lake, state, progress, manifest).await;
    if ended.0 == RunStatus::Succeeded {
        // Committed: keep the lake tidy.
        let _ = lake.delete_prefix(&lake.run_staging_url(&manifest.run_id)).await;
    }
    ended
}

/// [`finish_publish`] without deleting the run's staging.
async fn roll_forward(
    lake: &crate::storage::Lake,
    state: Option<&Arc<dyn StateStore>>,
    progress: &Progress,
    manifest: &Manifest,
) -> (RunStatus, Option<String>, Vec<Published>) {
    let run_id = &manifest.run_id;
    let mut recorded: Result<()> = Ok(());
    let mut on_table = |d: &publish::TableDone| match &d.outcome {
        TableOutcome { version: Some(v), .. } => {
            if let (Some(state), true) = (state, recorded.is_ok()) {
                recorded = state.record_publication(run_id, &d.table, *v);
            }
            progress.line(format!("⇪ committed {} v{}{}", d.table, v, if d.committed_now { "" } else { " (earlier attempt)" }));
        }
        TableOutcome { superseded_by: by, .. } => {
            progress.line(format!("⇪ {} left as it is: newer run {} published it", d.table, by.as_deref().unwrap_or("?")))
        }
    };
    let result = publish::roll_forward(lake, manifest, &mut on_table).await;
    let completion = match result.and_then(|c| recorded.map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "publish incomplete: {e:#}. The run is past its commit point: readers still see the previous version of \
                 every table of this run until it completes. Fix the cause, then `restock resume {run_id}` finishes it \
                 (the next run on this lake does too)"
            );
            return (RunStatus::PublishIncomplete, Some(msg), vec![]);
        }
    };
    let published =
        completion.tables.iter().filter_map(|(t, o)| o.version.map(|version| Published { table: t.clone(), version })).collect();
    (RunStatus::Succeeded, None, published)
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
        let label = if retry > 0 { format!("{} (attempt {})", stage.id, retry + 1) } else { stage.id.clone() };
        let result = attempt_once(plan, i, &stage_cancel, StageProgress::new(bar.clone(), &label)).await;
        let ended = Ended::of(result);
        if ended.status == AttemptStatus::TimedOut {
            // The stage's work may still be running on a blocking thread: tell it to stop.
            stage_cancel.cancel();
        }
        if let Err(e) = state.finish_attempt(run_id, &stage.id, attempt, ended.status, ended.error.as_deref(), &ended.metrics) {
            return failed(stage.id.clone(), AttemptStatus::Failed, retry + 1, format!("state store: {e:#}"), started);
        }
        let (status, attempts) = (ended.status, retry + 1);
        match status {
            AttemptStatus::Succeeded => {
                progress.stage_done(bar, succeeded_line(&stage.id, attempt_started.elapsed(), &ended.report));
                return StageOutcome {
                    attempts,
                    duration: started.elapsed(),
                    report: ended.report,
                    ..StageOutcome::not_run(&stage.id, status, false, None)
                };
            }
            AttemptStatus::Cancelled => {
                progress.stage_done(bar, format!("✖ {} cancelled", stage.id));
                return failed(stage.id.clone(), status, attempts, "cancelled".into(), started);
            }
            _ => {
                let msg = ended.error.clone().unwrap_or_default();
                let retries_left = retry < stage.retry.max_retries;
                if retries_left && !cancel.is_cancelled() && ended.class == ErrorClass::Transient {
                    retry += 1;
                    let delay = stage.retry.delay(retry);
                    let line = format!("↻ {} attempt {retry} {status}: {msg} — retrying in {:.1}s", stage.id, delay.as_secs_f64());
                    progress.stage_done(bar, line);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = cancel.cancelled() => return failed(stage.id.clone(), AttemptStatus::Cancelled, retry, "cancelled".into(), started),
                    }
                }
                let msg = if ended.class == ErrorClass::Deterministic && retries_left {
                    format!("{msg} (not retried: the same input fails the same way)")
                } else {
                    msg
                };
                progress.stage_done(bar, format!("✖ {} {status}: {msg}", stage.id));
                return failed(stage.id.clone(), status, attempts, msg, started);
            }
        }
    }
}

/// How one attempt ended, as run history records it.
struct Ended {
    status: AttemptStatus,
    /// Whether trying again may help (everything but a failure the same input repeats).
    class: ErrorClass,
    error: Option<String>,
    report: StageReport,
    metrics: AttemptMetrics,
}

impl Ended {
    fn of(result: Result<(StageReport, inputs::InputStats), AttemptError>) -> Self {
        let not_done = |status, error: String| Ended {
            status,
            class: ErrorClass::Transient,
            error: Some(error),
            report: StageReport::default(),
            metrics: AttemptMetrics::default(),
        };
        match result {
            Ok((report, inputs)) => {
                let metrics = AttemptMetrics {
                    rows_in: Some(inputs.rows),
                    rows_out: Some(report.rows_out),
                    bytes_in: Some(inputs.bytes),
                    bytes_out: Some(report.bytes_out),
                    details: report.details.as_ref().map(|d| d.to_string()),
                };
                Ended { status: AttemptStatus::Succeeded, class: ErrorClass::Transient, error: None, report, metrics }
            }
            Err(AttemptError::Cancelled) => not_done(AttemptStatus::Cancelled, "cancelled".into()),
            Err(AttemptError::TimedOut(d)) => {
                not_done(AttemptStatus::TimedOut, format!("timed out after {}", humantime::format_duration(d)))
            }
            Err(AttemptError::Failed(e)) => Ended { class: classify(&e), ..not_done(AttemptStatus::Failed, format!("{e:#}")) },
        }
    }
}

/// `✔ stage (1.2s, 340 rows out)` and the stage's warnings below it.
fn succeeded_line(stage: &str, took: Duration, report: &StageReport) -> String {
    let what = match report.details.as_ref().and_then(|d| d.get("tests")).and_then(|t| t.as_array()) {
        Some(tests) => format!("{} data tests", tests.len()),
        None => format!("{} rows out", report.rows_out),
    };
    let mut line = format!("✔ {stage} ({:.1}s, {what})", took.as_secs_f64());
    for w in &report.warnings {
        line.push_str(&format!("\n    warning: {w}"));
    }
    line
}

fn failed(id: String, status: AttemptStatus, attempts: u32, error: String, started: Instant) -> StageOutcome {
    StageOutcome { id, status, reused: false, attempts, error: Some(error), duration: started.elapsed(), report: StageReport::default() }
}

enum AttemptError {
    Cancelled,
    TimedOut(Duration),
    Failed(anyhow::Error),
}

async fn attempt_once(
    plan: &Plan,
    i: usize,
    cancel: &CancellationToken,
    progress: StageProgress,
) -> Result<(StageReport, inputs::InputStats), AttemptError> {
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
        let scratch = crate::stage::Scratch::new(plan.lake.clone(), plan.lake.scratch_url(run_id, &stage.id));
        let cx = StageCx { stage_id: stage.id.clone(), ctx, outputs, lake: plan.lake.clone(), cancel: cancel.clone(), progress, scratch };
        match stage.task.run(&cx).await {
            Ok(report) => Ok::<_, anyhow::Error>((report, stats)),
            Err(e) => Err(name_the_file(plan, &stats, e).await),
        }
    };
    // A stage that panics (libtorch raises C++ exceptions through tch as panics) is a failed
    // attempt with the panic's message, not a crashed executor.
    let work = async {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => Err(anyhow!("stage panicked: {}", panic_message(panic.as_ref()))),
        }
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// A query that failed decoding Parquet says nothing of which file: find it and say so.
async fn name_the_file(plan: &Plan, stats: &inputs::InputStats, e: anyhow::Error) -> anyhow::Error {
    if !crate::errors::is_decoding(&e) || stats.parquet.is_empty() {
        return e;
    }
    match crate::storage::inputs::find_corrupt_file(&plan.lake, &stats.parquet).await {
        Some(which) => e.context(which),
        None => e,
    }
}
