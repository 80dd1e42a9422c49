//! `restock serve`: runs every pipeline under a folder on its cron schedule.
//!
//! - **Fires.** Each scheduled pipeline has one tokio-cron-scheduler job, a one-shot armed a
//!   second before its next fire time (from [`crate::schedule`], which owns the time-zone and DST
//!   rules); the job then sleeps to the exact instant. tokio-cron-scheduler polls its jobs every
//!   500 ms, so firing through it directly would start runs 0–500 ms late.
//! - **Decisions** ([`core`]): which due intervals start, queue, are skipped or cancel an older
//!   run, from run history (catch-up) and the pipeline's overlap rules.
//! - **Runs** go through [`crate::jobs`], the same way in as `restock run`, recorded with
//!   trigger `scheduled`.
//! - **Housekeeping**, a repeated tokio-cron-scheduler job: rescan the folder (a changed file is
//!   reloaded; a broken one is reported with file:line:column and its last good version keeps its
//!   schedule), mark runs whose process died as interrupted and resume them, SLA misses.
//! - **Shutdown** (SIGTERM, Ctrl-C): no new runs; active runs get `--grace`, then are cancelled
//!   as Ctrl-C cancels `restock run`, and recorded as interrupted so the next start resumes them.
//!   A second signal exits at once.
pub mod catalog;
pub mod core;
pub mod http;
pub mod notify;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::catalog::{Catalog, Change, Loaded};
use self::core::{ActiveRun, Decision, History, Slots};
use self::http::{Health, PipelineHealth, Shared};
use self::notify::Summary;
use crate::jobs::{self, JobOptions, RunRequest, When};
use crate::run::RunOutcome;
use crate::schedule::{Event as Notice, Interval};
use crate::state::{RunRecord, RunStatus, StateStore, Trigger};

pub struct ServeOptions {
    /// The folder of pipeline files.
    pub dir: PathBuf,
    /// Relative lake paths and SQL files resolve against this.
    pub base_dir: PathBuf,
    pub lake: Option<String>,
    pub max_parallel: usize,
    /// How long active runs may go on after SIGTERM before they are cancelled.
    pub grace: Duration,
    /// Where `/metrics` and `/healthz` listen (none: no HTTP).
    pub listen: Option<SocketAddr>,
    pub state: Arc<dyn StateStore>,
    /// How often the folder is rescanned, dead runs looked for and SLAs checked.
    pub tick: Duration,
}

enum Event {
    Fire(PathBuf, DateTime<Utc>),
    Ended { file: PathBuf, pipeline: String, interval: Interval, outcome: Result<RunOutcome>, resumed: Option<String> },
    Tick,
    Shutdown,
    GraceOver,
}

/// One watched pipeline file.
#[derive(Default)]
struct Watched {
    /// Its last good version.
    loaded: Option<Loaded>,
    /// What is wrong with its current text.
    error: Option<String>,
    slots: Option<Slots>,
    armed: Option<(DateTime<Utc>, Uuid)>,
    /// Intervals started or queued whose SLA is not settled yet.
    sla_watch: Vec<Interval>,
}

struct Daemon {
    opts: ServeOptions,
    watched: BTreeMap<PathBuf, Watched>,
    catalog: Catalog,
    cron: JobScheduler,
    tx: UnboundedSender<Event>,
    shared: Shared,
    draining: bool,
    /// Runs started (or resumed) and not ended yet.
    running: usize,
    resuming: HashSet<String>,
}

/// Serve until SIGTERM / Ctrl-C, then drain.
pub async fn serve(opts: ServeOptions) -> Result<()> {
    if !opts.dir.is_dir() {
        anyhow::bail!("pipeline folder {} does not exist", opts.dir.display());
    }
    let (tx, mut rx) = unbounded_channel();
    let shared = Shared::default();
    let stop_http = CancellationToken::new();
    if let Some(addr) = opts.listen {
        let bound = http::serve(addr, shared.clone(), stop_http.clone()).await?;
        eprintln!("restock serve: /metrics and /healthz on http://{bound}");
    }
    let cron = JobScheduler::new().await.context("cannot start the scheduler")?;
    let tick_tx = tx.clone();
    let tick = Job::new_repeated_async(opts.tick, move |_, _| {
        let tx = tick_tx.clone();
        Box::pin(async move {
            let _ = tx.send(Event::Tick);
        })
    })?;
    cron.add(tick).await?;
    cron.start().await?;
    on_signals(tx.clone());
    let _ = tx.send(Event::Tick);
    let mut d = Daemon {
        opts,
        watched: BTreeMap::new(),
        catalog: Catalog::default(),
        cron,
        tx,
        shared,
        draining: false,
        running: 0,
        resuming: HashSet::new(),
    };
    while let Some(event) = rx.recv().await {
        if let Err(e) = d.handle(event).await {
            tracing::error!("{e:#}");
        }
        d.publish_health();
        if d.draining && d.running == 0 {
            break;
        }
    }
    let _ = d.cron.shutdown().await;
    stop_http.cancel();
    eprintln!("restock serve: stopped");
    Ok(())
}

/// SIGTERM / Ctrl-C: drain; a second one exits at once.
fn on_signals(tx: UnboundedSender<Event>) {
    tokio::spawn(async move {
        crate::process::interrupt_signal().await;
        let _ = tx.send(Event::Shutdown);
        crate::process::interrupt_signal().await;
        eprintln!("restock serve: second signal, exiting now (runs in progress are marked interrupted at the next start)");
        std::process::exit(130);
    });
}

impl Daemon {
    async fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Tick if !self.draining => self.housekeeping().await,
            Event::Tick => Ok(()),
            Event::Fire(file, at) => {
                // A job armed before a reload may still fire: only the armed one counts.
                if self.watched.get(&file).and_then(|w| w.armed).map(|(t, _)| t) != Some(at) {
                    return Ok(());
                }
                let decided = self.fire(file.clone(), at);
                let armed = self.arm(&file).await;
                decided.and(armed)
            }
            Event::Ended { file, pipeline, interval, outcome, resumed } => {
                self.ended(file, &pipeline, interval, outcome, resumed);
                Ok(())
            }
            Event::Shutdown => self.shutdown().await,
            Event::GraceOver => {
                let active: Vec<&ActiveRun> = self.watched.values().filter_map(|w| w.slots.as_ref()).flat_map(|s| &s.active).collect();
                tracing::info!("grace period over, cancelling {} run(s)", active.len());
                for run in active {
                    run.commit.interrupt(&run.cancel);
                }
                Ok(())
            }
        }
    }

    fn plan_options(&self) -> crate::plan::PlanOptions {
        crate::plan::PlanOptions {
            run_id: "serve".into(),
            run_date: Utc::now().date_naive(),
            interval: None,
            params: vec![],
            lake_override: self.opts.lake.clone(),
            base_dir: self.opts.base_dir.clone(),
        }
    }

    async fn housekeeping(&mut self) -> Result<()> {
        let changes = self.catalog.scan(&self.opts.dir, &self.plan_options());
        let mut loaded = vec![];
        for change in changes {
            if let Some(file) = self.apply_change(change).await? {
                loaded.push(file);
            }
        }
        // Resume first, so that catch-up sees the resumed runs' slots and intervals.
        self.resume_interrupted()?;
        for file in loaded {
            // Intervals missed while the daemon (or this file) was away.
            self.fire(file, Utc::now())?;
        }
        self.check_slas()
    }

    /// Apply one change of the folder; returns a file that was (re)loaded.
    async fn apply_change(&mut self, change: Change) -> Result<Option<PathBuf>> {
        match change {
            Change::Loaded(file, loaded) => {
                if let Some(clash) = self.name_clash(&file, &loaded.name) {
                    let why = format!("{}: pipeline name `{}` is already used by {}", file.display(), loaded.name, clash.display());
                    self.broken(file, why);
                    return Ok(None);
                }
                let w = self.watched.entry(file.clone()).or_default();
                let renamed = w.loaded.as_ref().is_some_and(|old| old.name != loaded.name);
                let verb = if w.loaded.is_some() { "reloaded" } else { "loaded" };
                match (&loaded.schedule, w.slots.as_mut()) {
                    (Some(s), Some(slots)) if !renamed => slots.schedule = s.clone(),
                    (Some(s), _) => w.slots = Some(Slots::new(s.clone())),
                    (None, _) => w.slots = None,
                }
                let when = loaded.schedule.as_ref().map_or("no schedule".to_string(), |s| format!("`{}` in {}", s.cron, s.timezone));
                let said = format!("{verb} {} (pipeline `{}`, {when})", file.display(), loaded.name);
                w.loaded = Some(*loaded);
                w.error = None;
                self.arm(&file).await?;
                // Health first, then the log line: whoever reads the line sees the new state.
                self.publish_health();
                tracing::info!("{said}");
                Ok(Some(file))
            }
            Change::Broken(file, why) => {
                self.broken(file, why);
                Ok(None)
            }
            Change::Removed(file) => {
                tracing::info!("{} was deleted; its schedule is removed (runs in progress go on)", file.display());
                self.disarm(&file).await;
                if let Some(w) = self.watched.get_mut(&file) {
                    w.loaded = None;
                    w.slots.take_if(|s| s.active.is_empty());
                }
                self.watched.retain(|_, w| w.slots.is_some());
                Ok(None)
            }
        }
    }

    fn name_clash(&self, file: &PathBuf, name: &str) -> Option<PathBuf> {
        self.watched.iter().find(|(f, w)| *f != file && w.loaded.as_ref().is_some_and(|l| l.name == name)).map(|(f, _)| f.clone())
    }

    fn broken(&mut self, file: PathBuf, why: String) {
        let w = self.watched.entry(file.clone()).or_default();
        let keeps = if w.loaded.is_some() { "its last good version keeps its schedule" } else { "it is not scheduled" };
        let said = format!("invalid pipeline; {keeps}:\n{why}");
        w.error = Some(why);
        self.publish_health();
        tracing::error!(file = %file.display(), "{said}");
    }

    /// Arm the one-shot job for the file's next fire.
    async fn arm(&mut self, file: &PathBuf) -> Result<()> {
        self.disarm(file).await;
        let Some(w) = self.watched.get_mut(file) else { return Ok(()) };
        let Some(slots) = &w.slots else { return Ok(()) };
        let at = slots.next_fire(Utc::now())?;
        let early = (at - Utc::now() - chrono::Duration::seconds(1)).to_std().unwrap_or_default();
        let (tx, f) = (self.tx.clone(), file.clone());
        let job = Job::new_one_shot_at_instant_async(std::time::Instant::now() + early, move |_, _| {
            let (tx, f) = (tx.clone(), f.clone());
            Box::pin(async move {
                // The scheduler polls every 500 ms: wake early, then wait for the exact instant.
                tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
                let _ = tx.send(Event::Fire(f, at));
            })
        })?;
        let id = self.cron.add(job).await?;
        w.armed = Some((at, id));
        Ok(())
    }

    async fn disarm(&mut self, file: &PathBuf) {
        if let Some((_, id)) = self.watched.get_mut(file).and_then(|w| w.armed.take()) {
            let _ = self.cron.remove(&id).await;
        }
    }

    /// Decide about the intervals due at `at` and carry the decisions out.
    fn fire(&mut self, file: PathBuf, at: DateTime<Utc>) -> Result<()> {
        let Some(w) = self.watched.get_mut(&file) else { return Ok(()) };
        let (Some(loaded), Some(slots)) = (&w.loaded, w.slots.as_mut()) else { return Ok(()) };
        let history = History::from_runs(&self.opts.state.interval_runs(&loaded.name)?);
        let decisions = slots.decide(at, &history).with_context(|| format!("pipeline `{}`", loaded.name))?;
        let name = loaded.name.clone();
        for d in decisions {
            self.carry_out(&file, &name, d);
        }
        Ok(())
    }

    fn carry_out(&mut self, file: &PathBuf, pipeline: &str, decision: Decision) {
        let show = |i: &Interval| format!("[{}, {})", i.start.format("%Y-%m-%d %H:%M:%S"), i.end.format("%Y-%m-%d %H:%M:%S UTC"));
        match decision {
            Decision::Start(run) => {
                if let Some(w) = self.watched.get_mut(file) {
                    w.sla_watch.push(run.interval);
                }
                self.start(file, pipeline, run, None);
            }
            Decision::Skip(i, why) => tracing::info!(pipeline, "interval {} not started: {why}", show(&i)),
            Decision::Dropped(i, why) => {
                tracing::info!("pipeline `{pipeline}` interval {} skipped: {why}", show(&i));
                *self.shared.metrics().skipped.entry(pipeline.to_string()).or_default() += 1;
            }
            Decision::Queued(i) => {
                if let Some(w) = self.watched.get_mut(file) {
                    w.sla_watch.push(i);
                }
                tracing::info!("pipeline `{pipeline}` interval {} queued behind the active run(s)", show(&i));
            }
            Decision::Cancelled(i) => {
                tracing::info!("pipeline `{pipeline}` cancelling the run for {} (overlap: cancel_previous)", show(&i))
            }
        }
    }

    /// Start a run (or resume `resume`) on a task of its own; its end comes back as an event.
    fn start(&mut self, file: &PathBuf, pipeline: &str, run: ActiveRun, resume: Option<RunRecord>) {
        let Some(loaded) = self.watched.get(file).and_then(|w| w.loaded.as_ref()) else { return };
        let req = RunRequest {
            file: file.clone(),
            when: When::Interval(run.interval),
            params: vec![],
            lake: self.opts.lake.clone(),
            trigger: Trigger::Scheduled,
            base_dir: self.opts.base_dir.clone(),
            text: Some(loaded.text.clone()),
        };
        let opts = JobOptions {
            max_parallel: self.opts.max_parallel,
            quiet: true,
            cancel: run.cancel.clone(),
            commit: run.commit.clone(),
            // Behind a manual run or a backfill run of the same pipeline, wait rather than skip.
            lease_wait: Duration::from_secs(24 * 3600),
            force: false,
        };
        let (tx, state, shared, base) = (self.tx.clone(), self.opts.state.clone(), self.shared.clone(), self.opts.base_dir.clone());
        let (file, pipeline, interval) = (file.clone(), pipeline.to_string(), run.interval);
        self.running += 1;
        tokio::spawn(async move {
            let resumed = resume.as_ref().map(|r| r.info.run_id.clone());
            let outcome = match &resume {
                Some(record) => jobs::resume(record, state, &opts, &base, |_| {}).await,
                None => {
                    let announce = |plan: &crate::plan::Plan| {
                        let late = (Utc::now() - interval.end).num_microseconds().unwrap_or(0) as f64 / 1e6;
                        let mut m = shared.metrics();
                        m.start_latency.0 += late.max(0.0);
                        m.start_latency.1 += 1;
                        tracing::info!("pipeline `{}` run {} started for {}", plan.name, plan.vars.run_id, plan.vars.interval_start);
                    };
                    jobs::run(&req, state, &opts, announce).await
                }
            };
            let _ = tx.send(Event::Ended { file, pipeline, interval, outcome, resumed });
        });
    }

    fn ended(&mut self, file: PathBuf, pipeline: &str, interval: Interval, outcome: Result<RunOutcome>, resumed: Option<String>) {
        self.running -= 1;
        if let Some(id) = &resumed {
            self.resuming.remove(id);
        }
        let hooks = self.watched.get(&file).and_then(|w| w.loaded.as_ref()).map(|l| l.notify.clone()).unwrap_or_default();
        let mut summary = Summary::new(Notice::Failure, pipeline, interval);
        let status = match &outcome {
            Ok(o) => {
                summary = summary.with_outcome(o);
                self.record_stages(pipeline, o);
                if self.draining && o.status == RunStatus::Cancelled {
                    let why = "interrupted: `restock serve` shut down before it finished; resumed when it starts again";
                    if let Err(e) = self.opts.state.set_run_status(&o.run_id, RunStatus::Interrupted, Some(why)) {
                        // Still free the slot below; the next start reaps the run anyway.
                        tracing::error!(pipeline, "{e:#}");
                    }
                }
                o.status
            }
            Err(e) => {
                summary.status = RunStatus::Failed.to_string();
                summary.error = Some(format!("{e:#}"));
                RunStatus::Failed
            }
        };
        let line = format!(
            "pipeline `{pipeline}` run {} {status}{}",
            summary.run_id.as_deref().unwrap_or("(not started)"),
            summary.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        *self.shared.metrics().runs.entry((pipeline.to_string(), status.to_string())).or_default() += 1;
        if status == RunStatus::Succeeded {
            tracing::info!(pipeline, "{line}");
            self.shared.metrics().last_success.insert(pipeline.to_string(), Utc::now().timestamp());
            summary.event = Notice::Success;
            if let Some(w) = self.watched.get_mut(&file) {
                w.sla_watch.retain(|i| *i != interval);
            }
        } else {
            tracing::warn!(pipeline, "{line}");
        }
        if !(self.draining && status == RunStatus::Cancelled) {
            notify::send(&hooks, summary);
        }
        self.free_slot(&file, pipeline, interval);
    }

    fn record_stages(&self, pipeline: &str, o: &RunOutcome) {
        let mut m = self.shared.metrics();
        for s in o.stages.iter().filter(|s| !s.reused && s.attempts > 0) {
            let e = m.stages.entry((pipeline.to_string(), s.id.clone())).or_default();
            e.0 += s.duration.as_secs_f64();
            e.1 += 1;
        }
    }

    fn free_slot(&mut self, file: &PathBuf, pipeline: &str, interval: Interval) {
        let Some(slots) = self.watched.get_mut(file).and_then(|w| w.slots.as_mut()) else { return };
        if self.draining {
            slots.queue.clear();
        }
        let next = slots.ended(interval);
        for d in next {
            self.carry_out(file, pipeline, d);
        }
        self.watched.retain(|_, w| w.loaded.is_some() || w.slots.as_ref().is_some_and(|s| !s.active.is_empty()));
    }

    /// Mark runs whose process died as interrupted; resume the scheduled ones whose pipeline says so.
    fn resume_interrupted(&mut self) -> Result<()> {
        jobs::reap_interrupted(&self.opts.state, true)?;
        // One query for all pipelines: this runs on every housekeeping tick.
        let interrupted: Vec<RunRecord> = self
            .opts
            .state
            .runs_with_status(RunStatus::Interrupted)?
            .into_iter()
            .filter(|r| r.info.trigger == Trigger::Scheduled && r.info.interval.is_some())
            .filter(|r| !self.resuming.contains(&r.info.run_id))
            .collect();
        let mut todo = vec![];
        for run in interrupted {
            let found = self.watched.iter().find(|(_, w)| {
                let wants = w.slots.as_ref().is_some_and(|s| s.schedule.resume_interrupted);
                wants && w.loaded.as_ref().is_some_and(|l| l.name == run.info.pipeline)
            });
            if let Some((file, _)) = found {
                todo.push((file.clone(), run.info.pipeline.clone(), run));
            }
        }
        for (file, pipeline, run) in todo {
            let Some(interval) = run.info.interval else { continue };
            tracing::info!("resuming interrupted run {} of pipeline `{pipeline}`", run.info.run_id);
            self.resuming.insert(run.info.run_id.clone());
            let Some(slots) = self.watched.get_mut(&file).and_then(|w| w.slots.as_mut()) else { continue };
            let active = slots.resumed(interval);
            self.start(&file, &pipeline, active, Some(run));
        }
        Ok(())
    }

    fn check_slas(&mut self) -> Result<()> {
        let now = Utc::now();
        for w in self.watched.values_mut() {
            let (Some(loaded), Some(sla)) = (&w.loaded, w.slots.as_ref().and_then(|s| s.schedule.sla)) else { continue };
            let sla = chrono::Duration::from_std(sla)?;
            let (late, keep): (Vec<Interval>, Vec<Interval>) = w.sla_watch.iter().partition(|i| i.end + sla <= now);
            w.sla_watch = keep;
            for i in late {
                tracing::warn!("pipeline `{}` missed its SLA for the interval ending {}", loaded.name, i.end);
                let mut s = Summary::new(Notice::SlaMiss, &loaded.name, i);
                s.status = "not succeeded within the SLA".into();
                notify::send(&loaded.notify, s);
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<()> {
        if self.draining {
            return Ok(());
        }
        self.draining = true;
        let files: Vec<PathBuf> = self.watched.keys().cloned().collect();
        for f in &files {
            self.disarm(f).await;
        }
        tracing::info!(
            "shutting down: no new runs; {} run(s) in progress get {} to finish",
            self.running,
            humantime::format_duration(self.opts.grace)
        );
        let (tx, grace) = (self.tx.clone(), self.opts.grace);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Event::GraceOver);
        });
        Ok(())
    }

    fn publish_health(&self) {
        let mut pipelines = vec![];
        let mut m = self.shared.metrics();
        for (file, w) in &self.watched {
            let name = w.loaded.as_ref().map(|l| l.name.clone());
            let (active, queued) = w.slots.as_ref().map_or((0, 0), |s| (s.active.len(), s.queue.len()));
            if let Some(n) = &name {
                m.active_runs.insert(n.clone(), active);
                m.queue_depth.insert(n.clone(), queued);
            }
            pipelines.push(PipelineHealth {
                file: file.display().to_string(),
                pipeline: name,
                next_fire: w.armed.map(|(t, _)| t.to_rfc3339()),
                error: w.error.clone(),
                active_runs: active,
                queued,
            });
        }
        drop(m);
        self.shared.set_health(Health { draining: self.draining, pipelines });
    }
}
