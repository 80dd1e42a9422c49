//! The scheduler's decisions for one pipeline, with the clock passed in: which intervals are
//! due, which of them start now, queue, are skipped, or cancel an active run. No timers, no
//! runs, no I/O: `restock serve` (`super`) carries the decisions out, tests drive it with any
//! `now` they like.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::plan::Schedule;
use crate::run::CommitGate;
use crate::schedule::{Interval, Overlap};
use crate::state::{RunRecord, RunStatus, Trigger};

/// What run history says about a pipeline's intervals.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// End of the latest interval a scheduled run was started for: catch-up counts from here.
    pub last_scheduled_end: Option<DateTime<Utc>>,
    /// Intervals a run already covers, and why they must not start again (succeeded, running,
    /// interrupted and to be resumed, publish pending).
    pub taken: BTreeMap<Interval, String>,
}

impl History {
    pub fn from_runs(runs: &[RunRecord]) -> Self {
        let mut h = History::default();
        for r in runs {
            let Some(i) = r.info.interval else { continue };
            if r.info.trigger == Trigger::Scheduled {
                h.last_scheduled_end = h.last_scheduled_end.max(Some(i.end));
            }
            let why = match r.status {
                RunStatus::Succeeded => format!("run {} already succeeded for it", r.info.run_id),
                RunStatus::Running => format!("run {} is running it", r.info.run_id),
                RunStatus::Interrupted => format!("run {} was interrupted and is resumed instead", r.info.run_id),
                RunStatus::PublishIncomplete => format!("run {} is past its commit point (its publish is finished instead)", r.info.run_id),
                RunStatus::Failed | RunStatus::Cancelled => continue,
            };
            h.taken.insert(i, why);
        }
        h
    }
}

/// A run the daemon started, with what cancels it.
#[derive(Debug, Clone)]
pub struct ActiveRun {
    pub interval: Interval,
    pub cancel: CancellationToken,
    pub commit: Arc<CommitGate>,
    /// Asked to stop (overlap `cancel_previous`, or shutdown).
    pub cancelling: bool,
}

impl ActiveRun {
    fn new(interval: Interval) -> Self {
        Self { interval, cancel: CancellationToken::new(), commit: Arc::new(CommitGate::default()), cancelling: false }
    }
}

/// What to do about one interval.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Start a run for it now, with these tokens.
    Start(ActiveRun),
    /// Not run: a run already covers it; why.
    Skip(Interval, String),
    /// Not run: `overlap: skip` and every slot is busy.
    Dropped(Interval, String),
    /// Waits for a free slot.
    Queued(Interval),
    /// The active run for this interval was told to stop so that a newer one can start.
    Cancelled(Interval),
}

/// The scheduler's state for one pipeline.
#[derive(Debug)]
pub struct Slots {
    pub schedule: Schedule,
    /// End of the last interval decided on (started, queued or skipped) since the daemon started.
    pub considered_until: Option<DateTime<Utc>>,
    pub active: Vec<ActiveRun>,
    pub queue: VecDeque<Interval>,
}

impl Slots {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, considered_until: None, active: vec![], queue: VecDeque::new() }
    }

    /// Decide about every interval due at `now`, oldest first.
    pub fn decide(&mut self, now: DateTime<Utc>, history: &History) -> Result<Vec<Decision>> {
        let last = self.considered_until.max(history.last_scheduled_end);
        let due = self.schedule.times.due(last, now, self.schedule.catchup)?;
        if let Some(i) = due.last() {
            self.considered_until = Some(i.end);
        }
        let mut out = vec![];
        for i in due {
            match self.taken(&i, history) {
                Some(why) => out.push(Decision::Skip(i, why)),
                None => out.push(self.admit(i)),
            }
        }
        Ok(out)
    }

    fn taken(&self, i: &Interval, history: &History) -> Option<String> {
        if self.active.iter().any(|a| a.interval == *i) {
            return Some("a run of it is active".into());
        }
        if self.queue.contains(i) {
            return Some("it is already queued".into());
        }
        history.taken.get(i).cloned()
    }

    fn live(&self) -> usize {
        self.active.iter().filter(|a| !a.cancelling).count()
    }

    fn admit(&mut self, i: Interval) -> Decision {
        if self.live() < self.schedule.max_active_runs && self.active.len() < self.schedule.max_active_runs {
            let run = ActiveRun::new(i);
            self.active.push(run.clone());
            return Decision::Start(run);
        }
        match self.schedule.overlap {
            Overlap::Skip => Decision::Dropped(i, format!("{} run(s) still active (overlap: skip)", self.active.len())),
            Overlap::Queue => {
                self.queue.push_back(i);
                Decision::Queued(i)
            }
            Overlap::CancelPrevious => {
                self.queue.push_front(i);
                match self.active.iter_mut().find(|a| !a.cancelling) {
                    Some(oldest) => {
                        oldest.cancelling = true;
                        oldest.commit.interrupt(&oldest.cancel);
                        Decision::Cancelled(oldest.interval)
                    }
                    None => Decision::Queued(i),
                }
            }
        }
    }

    /// A run ended: free its slot and start what the queue holds, while slots are free.
    pub fn ended(&mut self, interval: Interval) -> Vec<Decision> {
        self.active.retain(|a| a.interval != interval);
        let mut out = vec![];
        while self.active.len() < self.schedule.max_active_runs {
            let Some(i) = self.queue.pop_front() else { break };
            let run = ActiveRun::new(i);
            self.active.push(run.clone());
            out.push(Decision::Start(run));
        }
        out
    }

    /// A run the daemon resumes (interrupted earlier) holds a slot like any other.
    pub fn resumed(&mut self, interval: Interval) -> ActiveRun {
        let run = ActiveRun::new(interval);
        self.active.push(run.clone());
        run
    }

    /// The next fire strictly after `now`.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        self.schedule.times.next_fire(now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::schedule::Catchup;

    fn schedule(cron: &str, catchup: Catchup, overlap: Overlap, max_active_runs: usize) -> Schedule {
        let tz = chrono_tz::UTC;
        Schedule {
            cron: cron.into(),
            timezone: tz,
            times: crate::schedule::Schedule::new(cron, tz).unwrap(),
            catchup,
            overlap,
            max_active_runs,
            resume_interrupted: true,
            sla: None,
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    fn started(d: &[Decision]) -> Vec<Interval> {
        d.iter().filter_map(|d| if let Decision::Start(r) = d { Some(r.interval) } else { None }).collect()
    }

    #[test]
    fn a_restart_neither_skips_nor_repeats_an_interval() {
        // Hourly; the last scheduled run covered the interval ending 03:00; the daemon comes back
        // at 06:10 with catchup all: 04:00, 05:00 and 06:00 are due, once.
        let mut s = Slots::new(schedule("0 * * * *", Catchup::All, Overlap::Queue, 5));
        let history = History { last_scheduled_end: Some(at(3, 0)), ..Default::default() };
        let ends: Vec<_> = started(&s.decide(at(6, 10), &history).unwrap()).iter().map(|i| i.end).collect();
        assert_eq!(ends, vec![at(4, 0), at(5, 0), at(6, 0)]);
        assert!(s.decide(at(6, 30), &history).unwrap().is_empty(), "nothing is due twice");
        let next = started(&s.decide(at(7, 0), &history).unwrap());
        assert_eq!(next, vec![Interval { start: at(6, 0), end: at(7, 0) }]);
    }

    #[test]
    fn catchup_latest_runs_only_the_newest_missed_interval() {
        let mut s = Slots::new(schedule("0 * * * *", Catchup::Latest, Overlap::Skip, 1));
        let history = History { last_scheduled_end: Some(at(3, 0)), ..Default::default() };
        assert_eq!(started(&s.decide(at(6, 10), &history).unwrap()), vec![Interval { start: at(5, 0), end: at(6, 0) }]);
    }

    #[test]
    fn an_interval_that_already_succeeded_is_never_started_again() {
        let mut s = Slots::new(schedule("0 * * * *", Catchup::All, Overlap::Queue, 5));
        let done = Interval { start: at(4, 0), end: at(5, 0) };
        let mut history = History { last_scheduled_end: Some(at(3, 0)), ..Default::default() };
        history.taken.insert(done, "run R already succeeded for it".into());
        let d = s.decide(at(5, 30), &history).unwrap();
        assert_eq!(started(&d), vec![Interval { start: at(3, 0), end: at(4, 0) }]);
        assert!(matches!(&d[1], Decision::Skip(i, why) if *i == done && why.contains("already succeeded")));
    }

    #[test]
    fn overlap_skip_queue_and_cancel_previous() {
        let first = Interval { start: at(1, 0), end: at(2, 0) };
        let second = Interval { start: at(2, 0), end: at(3, 0) };
        let history = History { last_scheduled_end: Some(at(1, 0)), ..Default::default() };
        for overlap in [Overlap::Skip, Overlap::Queue, Overlap::CancelPrevious] {
            let mut s = Slots::new(schedule("0 * * * *", Catchup::All, overlap, 1));
            let d = s.decide(at(2, 0), &history).unwrap();
            let Decision::Start(run) = &d[0] else { panic!("first starts") };
            let d = s.decide(at(3, 0), &history).unwrap();
            match overlap {
                Overlap::Skip => {
                    assert!(matches!(&d[0], Decision::Dropped(i, why) if *i == second && why.contains("overlap: skip")));
                    assert!(s.ended(first).is_empty());
                }
                Overlap::Queue => {
                    assert!(matches!(&d[0], Decision::Queued(i) if *i == second));
                    assert!(!run.cancel.is_cancelled());
                    assert_eq!(started(&s.ended(first)), vec![second]);
                }
                Overlap::CancelPrevious => {
                    assert!(matches!(&d[0], Decision::Cancelled(i) if *i == first));
                    assert!(run.cancel.is_cancelled(), "the older run is told to stop");
                    assert_eq!(started(&s.ended(first)), vec![second], "the newer starts once the older has stopped");
                }
            }
        }
    }

    #[test]
    fn max_active_runs_caps_concurrent_starts() {
        let mut s = Slots::new(schedule("0 * * * *", Catchup::All, Overlap::Queue, 2));
        let history = History { last_scheduled_end: Some(at(0, 0)), ..Default::default() };
        let d = s.decide(at(4, 0), &history).unwrap();
        assert_eq!(started(&d).len(), 2);
        assert_eq!(d.iter().filter(|d| matches!(d, Decision::Queued(_))).count(), 2);
        assert_eq!(s.active.len(), 2);
    }

    #[test]
    fn history_counts_scheduled_runs_for_catchup_and_any_success_as_taken() {
        use crate::state::{RunInfo, RunRecord};
        let run = |id: &str, end: u32, trigger, status| RunRecord {
            info: RunInfo {
                run_id: id.into(),
                pipeline: "p".into(),
                pipeline_path: "p.yaml".into(),
                spec_text: String::new(),
                spec_hash: String::new(),
                params_json: "{}".into(),
                run_date: String::new(),
                interval_start: String::new(),
                interval_end: String::new(),
                interval: Some(Interval { start: at(end - 1, 0), end: at(end, 0) }),
                trigger,
                lake: String::new(),
            },
            status,
            error: None,
            started_at: at(0, 0),
            finished_at: None,
            heartbeat: None,
        };
        let h = History::from_runs(&[
            run("a", 2, Trigger::Scheduled, RunStatus::Failed),
            run("b", 5, Trigger::Backfill, RunStatus::Succeeded),
            run("c", 3, Trigger::Scheduled, RunStatus::Succeeded),
        ]);
        assert_eq!(h.last_scheduled_end, Some(at(3, 0)));
        assert_eq!(h.taken.len(), 2, "a failed run does not hold its interval");
    }
}
