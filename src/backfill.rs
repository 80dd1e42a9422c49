//! `restock backfill`: one run per scheduled interval in a date range, for history the daemon
//! never ran (or should run again). What each interval needs is decided from run history, so
//! an interrupted backfill started again continues where it stopped.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::jobs::{self, JobOptions, RunRequest, When};
use crate::plan::Schedule;
use crate::run::{CommitGate, RunOutcome};
use crate::schedule::{Interval, local, to_utc};
use crate::state::{RunRecord, RunStatus, StateStore, Trigger};

/// Which intervals with a run already are run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reprocess {
    /// Only intervals no run finished (never run, cancelled or interrupted).
    Missing,
    /// Those and the ones whose last run failed.
    Failed,
    /// Every interval (except one running now).
    All,
}

/// One interval of the range and what backfill does about it.
#[derive(Debug, Clone)]
pub struct Item {
    pub interval: Interval,
    /// Its latest run: id and status.
    pub existing: Option<(String, RunStatus)>,
    pub run: bool,
    pub why: String,
}

/// The intervals whose start falls on a local day in [from, to] and that have ended by `now`,
/// with what to do about each. Errors name the flag at fault.
pub fn plan(
    schedule: &Schedule,
    runs: &[RunRecord],
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
    reprocess: Reprocess,
) -> Result<Vec<Item>> {
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    let tz = schedule.timezone;
    let start = to_utc(from.and_hms_opt(0, 0, 0).expect("midnight"), tz);
    let stop = to_utc((to + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight"), tz);
    if start > now {
        bail!("--from {from} is in the future: backfill runs intervals that have already ended");
    }
    let times = &schedule.times;
    let mut items = vec![];
    let mut begin = times.next_fire(start - chrono::Duration::seconds(1))?;
    loop {
        let end = times.next_fire(begin)?;
        if begin >= stop || end > now {
            break;
        }
        let interval = Interval { start: begin, end };
        items.push(decide(interval, runs, reprocess));
        begin = end;
    }
    if items.is_empty() {
        bail!("no interval of `{}` ({}) starts between {from} and {to} and has ended by now", schedule.cron, tz);
    }
    Ok(items)
}

fn decide(interval: Interval, runs: &[RunRecord], reprocess: Reprocess) -> Item {
    let latest = runs.iter().filter(|r| r.info.interval == Some(interval)).max_by_key(|r| r.started_at);
    let Some(r) = latest else { return Item { interval, existing: None, run: true, why: "no run yet".into() } };
    let id = r.info.run_id.clone();
    let (run, why) = match r.status {
        RunStatus::Running => (false, format!("run {id} is running it now")),
        RunStatus::PublishIncomplete => (false, format!("run {id} is past its commit point: `restock resume {id}` finishes it")),
        RunStatus::Succeeded if reprocess == Reprocess::All => (true, format!("succeeded in run {id}; --reprocess all")),
        RunStatus::Succeeded => (false, format!("succeeded in run {id}")),
        RunStatus::Failed if reprocess == Reprocess::Missing => (false, format!("failed in run {id} (--reprocess failed runs it again)")),
        RunStatus::Failed => (true, format!("failed in run {id}")),
        RunStatus::Cancelled | RunStatus::Interrupted => (true, format!("run {id} did not finish ({})", r.status)),
    };
    Item { interval, existing: Some((id, r.status)), run, why }
}

/// How a backfill runs its intervals.
pub struct Options {
    pub max_active: usize,
    /// Run every stage, even unchanged ones.
    pub force: bool,
    pub max_parallel: usize,
    pub quiet: bool,
    pub lake: Option<String>,
    pub base_dir: std::path::PathBuf,
}

/// Run the items marked `run`, oldest first, at most `max_active` at once, never while a
/// scheduled run of the pipeline is active (scheduled runs take precedence). The first Ctrl-C
/// stops starting new ones and cancels those in progress (nothing of theirs is published unless
/// past the commit point); a second exits at once.
pub async fn execute(
    file: &Path,
    pipeline: &str,
    items: &[Item],
    state: Arc<dyn StateStore>,
    opts: &Options,
) -> Result<Vec<(Interval, Result<RunOutcome>)>> {
    let active: Arc<Mutex<Vec<(CancellationToken, Arc<CommitGate>)>>> = Arc::default();
    let stop = on_signal(active.clone());
    let mut set: JoinSet<(Interval, Result<RunOutcome>)> = JoinSet::new();
    let mut done = vec![];
    for item in items.iter().filter(|i| i.run) {
        while set.len() >= opts.max_active.max(1) {
            done.push(set.join_next().await.expect("non-empty")?);
        }
        wait_for_scheduled_runs(&state, pipeline, &stop, opts.quiet).await?;
        if stop.is_cancelled() {
            break;
        }
        let (cancel, commit) = (CancellationToken::new(), Arc::new(CommitGate::default()));
        active.lock().unwrap_or_else(|p| p.into_inner()).push((cancel.clone(), commit.clone()));
        let req = RunRequest {
            file: file.to_path_buf(),
            when: When::Interval(item.interval),
            params: vec![],
            lake: opts.lake.clone(),
            trigger: Trigger::Backfill,
            base_dir: opts.base_dir.clone(),
            text: None,
        };
        let jopts = JobOptions {
            max_parallel: opts.max_parallel,
            quiet: true,
            cancel,
            commit,
            lease_wait: Duration::from_secs(24 * 3600),
            force: opts.force,
        };
        let (state, quiet, interval) = (state.clone(), opts.quiet, item.interval);
        set.spawn(async move {
            let announce = |p: &crate::plan::Plan| {
                if !quiet {
                    eprintln!("backfill: run {} for [{}, {})", p.vars.run_id, p.vars.interval_start, p.vars.interval_end);
                }
            };
            (interval, jobs::run(&req, state, &jopts, announce).await)
        });
    }
    while let Some(r) = set.join_next().await {
        done.push(r?);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done)
}

fn on_signal(active: Arc<Mutex<Vec<(CancellationToken, Arc<CommitGate>)>>>) -> CancellationToken {
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        crate::process::interrupt_signal().await;
        s.cancel();
        eprintln!("backfill: stopping; runs in progress are cancelled (run the same command again to continue)");
        for (cancel, commit) in active.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            commit.interrupt(cancel);
        }
        crate::process::interrupt_signal().await;
        std::process::exit(130);
    });
    stop
}

async fn wait_for_scheduled_runs(state: &Arc<dyn StateStore>, pipeline: &str, stop: &CancellationToken, quiet: bool) -> Result<()> {
    let mut told = false;
    loop {
        let busy = state
            .runs_with_status(RunStatus::Running)?
            .into_iter()
            .find(|r| r.info.pipeline == pipeline && r.info.trigger == Trigger::Scheduled);
        let Some(run) = busy else { return Ok(()) };
        if !quiet && !told {
            eprintln!("backfill: waiting for scheduled run {} of `{pipeline}` to finish (scheduled runs go first)", run.info.run_id);
            told = true;
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// `[2026-03-28 02:00, 2026-03-29 03:00)` in the schedule's time zone.
pub fn show(i: &Interval, tz: chrono_tz::Tz) -> String {
    format!("[{}, {})", local(i.start, tz).format("%Y-%m-%d %H:%M"), local(i.end, tz).format("%Y-%m-%d %H:%M"))
}
