//! Cron schedules as data intervals: pure time arithmetic for the scheduler and backfill (no
//! runs, no clock of its own: callers pass `now`).
//!
//! A run covers the data interval [start, end) and fires at `end`; `start` is the fire before
//! it. So a daily `0 2 * * *` in Europe/Berlin fires at 02:00 local time for the 24 hours that
//! ended then. Cron fields are read in the pipeline's time zone with Vixie-cron's rules for
//! daylight-saving changes (croner implements them):
//! - a fixed time that does not exist (spring forward, 02:30 on the last Sunday of March in
//!   Berlin) fires at the first valid time after the gap, that day (03:00);
//! - a fixed time that exists twice (fall back, 02:30 on the last Sunday of October) fires once,
//!   at its first occurrence (02:30 summer time);
//! - wildcard and step fields (`*/15 * * * *`) skip times in the gap, and in the repeated hour
//!   fire once per wall-clock time, in its first copy (tested: croner 3.0.1 does this, though its
//!   README says such jobs fire in both copies).
//!
//! Intervals are therefore not always 24 hours: the one ending on the spring-forward day is
//! 23 hours long, the one ending on the fall-back day 25.
use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// One data interval, [start, end), in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What a scheduler does with intervals that ended while it was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// Run every missed interval, oldest first.
    All,
    /// Run only the most recent one.
    #[default]
    Latest,
    /// Run none: wait for the next fire.
    None,
}

/// What a scheduler does when an interval is due while `max_active_runs` runs of the pipeline
/// are still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Do not start it (counted in `/metrics`; `restock backfill` can run it later).
    #[default]
    Skip,
    /// Start it when an active run ends, oldest interval first.
    Queue,
    /// Cancel the oldest active run (before its commit point: nothing of it is published), then
    /// start this one.
    CancelPrevious,
}

/// What a webhook is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Success,
    Failure,
    SlaMiss,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Success => "success",
            Event::Failure => "failure",
            Event::SlaMiss => "sla_miss",
        }
    }
}

/// The wall-clock time `t` reads in `tz`.
pub fn local(t: DateTime<Utc>, tz: Tz) -> chrono::NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// The instant a local wall-clock time names in `tz`: its first occurrence when it repeats, the
/// first valid time after the gap when it is skipped.
pub fn to_utc(local: chrono::NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let mut t = local;
    for _ in 0..=4 * 24 {
        if let Some(d) = tz.from_local_datetime(&t).earliest() {
            return d.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(15);
    }
    Utc.from_utc_datetime(&local)
}

/// The interval `[D 00:00, D+1 00:00)` in `tz`: what `restock run --date D` covers.
pub fn day(date: chrono::NaiveDate, tz: Tz) -> Interval {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    Interval { start: to_utc(midnight, tz), end: to_utc(midnight + chrono::Duration::days(1), tz) }
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: Tz,
}

impl Schedule {
    pub fn new(cron: &str, tz: Tz) -> Result<Self> {
        let cron = croner::parser::CronParser::new().parse(cron.trim()).map_err(|e| anyhow!("invalid cron expression `{cron}`: {e}"))?;
        Ok(Self { cron, tz })
    }

    /// The first fire strictly after `t`.
    pub fn next_fire(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        // croner keeps the sub-second part of its starting point; fires are on whole seconds.
        let local = chrono::SubsecRound::trunc_subsecs(t, 0).with_timezone(&self.tz);
        Ok(self.cron.find_next_occurrence(&local, false).context("no next fire time")?.with_timezone(&Utc))
    }

    /// The last fire strictly before `t`, found by walking forward from a point before it (the
    /// same walk as [`Schedule::next_fire`], so both agree on DST days; croner's backward search
    /// does not), looking further back until a fire turns up.
    pub fn previous_fire(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let mut back = chrono::Duration::days(1);
        while back <= chrono::Duration::days(366 * 8) {
            let mut last = None;
            let mut fire = self.next_fire(t - back)?;
            while fire < t {
                last = Some(fire);
                fire = self.next_fire(fire)?;
            }
            if let Some(last) = last {
                return Ok(last);
            }
            back = back * 2;
        }
        Err(anyhow!("no fire in the eight years before {t}"))
    }

    /// The interval a fire at `end` covers.
    pub fn interval_ending(&self, end: DateTime<Utc>) -> Result<Interval> {
        Ok(Interval { start: self.previous_fire(end)?, end })
    }

    /// Every interval whose end lies in (from, to], oldest first.
    pub fn intervals_ending_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Interval>> {
        let mut out = vec![];
        let mut end = self.next_fire(from)?;
        while end <= to {
            out.push(self.interval_ending(end)?);
            end = self.next_fire(end)?;
        }
        Ok(out)
    }

    /// Intervals to start at `now`, given the end of the last interval already run (from run
    /// history; `None` on a pipeline's first start) and the catch-up rule. The interval ending
    /// exactly at `now` counts as due; none is ever returned twice for the same `last_end`.
    pub fn due(&self, last_end: Option<DateTime<Utc>>, now: DateTime<Utc>, catchup: Catchup) -> Result<Vec<Interval>> {
        let Some(last_end) = last_end else {
            // First start: only an interval ending now fires; history before it is backfill's job.
            let end = self.previous_fire(now + chrono::Duration::seconds(1))?;
            return Ok(if end == now { vec![self.interval_ending(end)?] } else { vec![] });
        };
        let mut missed = self.intervals_ending_in(last_end, now)?;
        Ok(match catchup {
            Catchup::All => missed,
            Catchup::Latest => missed.pop().into_iter().collect(),
            Catchup::None => missed.into_iter().filter(|i| i.end == now).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn fires_fall_on_whole_seconds_whatever_the_starting_point() {
        let s = Schedule::new("*/2 * * * * *", chrono_tz::UTC).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 1, 51, 26).unwrap() + chrono::Duration::milliseconds(622);
        assert_eq!(s.next_fire(t).unwrap(), Utc.with_ymd_and_hms(2026, 12, 1, 1, 51, 28).unwrap());
        assert_eq!(s.previous_fire(t).unwrap(), Utc.with_ymd_and_hms(2026, 12, 1, 1, 51, 26).unwrap());
        assert!(s.due(None, t, Catchup::Latest).unwrap().is_empty(), "a first start between fires runs nothing");
    }

    #[test]
    fn a_daily_run_covers_the_day_that_ended_at_its_fire() {
        let s = Schedule::new("0 2 * * *", chrono_tz::Europe::Berlin).unwrap();
        // 2026-11-30 02:00 CET = 01:00 UTC.
        let i = s.interval_ending(utc(2026, 11, 30, 1, 0)).unwrap();
        assert_eq!(i, Interval { start: utc(2026, 11, 29, 1, 0), end: utc(2026, 11, 30, 1, 0) });
        assert_eq!(s.next_fire(utc(2026, 11, 30, 1, 0)).unwrap(), utc(2026, 12, 1, 1, 0));
    }

    #[test]
    fn berlin_spring_forward_and_fall_back() {
        let s = Schedule::new("30 2 * * *", chrono_tz::Europe::Berlin).unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST. 02:30 does not exist: it fires at 03:00
        // CEST = 01:00 UTC; the day before fired at 02:30 CET = 01:30 UTC (a 23.5-hour interval).
        let spring = s.next_fire(utc(2026, 3, 28, 12, 0)).unwrap();
        assert_eq!(spring, utc(2026, 3, 29, 1, 0));
        assert_eq!(s.interval_ending(spring).unwrap().start, utc(2026, 3, 28, 1, 30));
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 exists twice and fires once, at
        // its first occurrence (CEST, 00:30 UTC). The next day's fire is 02:30 CET = 01:30 UTC.
        let fall = s.next_fire(utc(2026, 10, 24, 12, 0)).unwrap();
        assert_eq!(fall, utc(2026, 10, 25, 0, 30));
        assert_eq!(s.next_fire(fall).unwrap(), utc(2026, 10, 26, 1, 30));
        // The interval ending after the fall-back day is 25 hours long.
        let after = s.interval_ending(utc(2026, 10, 26, 1, 30)).unwrap();
        assert_eq!((after.end - after.start).num_hours(), 25);
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        let s = Schedule::new("30 2 * * *", chrono_tz::America::New_York).unwrap();
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT: fires at 03:00 EDT = 07:00 UTC.
        assert_eq!(s.next_fire(utc(2026, 3, 7, 12, 0)).unwrap(), utc(2026, 3, 8, 7, 0));
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 02:30 happens once (EST) = 07:30 UTC.
        assert_eq!(s.next_fire(utc(2026, 10, 31, 12, 0)).unwrap(), utc(2026, 11, 1, 7, 30));
        // A 15-minute job in the repeated hour fires once per wall-clock time, in its first
        // (EDT) copy: 01:00–01:45 EDT = 05:00–05:45 UTC, nothing in the EST copy.
        let q = Schedule::new("*/15 1 * * *", chrono_tz::America::New_York).unwrap();
        let fires = q.intervals_ending_in(utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 7, 0)).unwrap();
        let ends: Vec<_> = fires.iter().map(|i| i.end).collect();
        assert_eq!(ends, vec![utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 45)]);
        // Intervals tile time: each starts where the previous ended.
        assert!(fires.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn catch_up_rules_never_repeat_an_interval() {
        let s = Schedule::new("0 6 * * 1", chrono_tz::UTC).unwrap(); // Mondays 06:00
        let last = utc(2026, 11, 9, 6, 0);
        let now = utc(2026, 11, 30, 6, 0); // three Mondays later, exactly at a fire
        let all = s.due(Some(last), now, Catchup::All).unwrap();
        assert_eq!(all.iter().map(|i| i.end).collect::<Vec<_>>(), vec![utc(2026, 11, 16, 6, 0), utc(2026, 11, 23, 6, 0), now]);
        assert_eq!(s.due(Some(last), now, Catchup::Latest).unwrap(), vec![all[2]]);
        assert_eq!(s.due(Some(last), now, Catchup::None).unwrap(), vec![all[2]]);
        // Once the latest has run, nothing is due until the next Monday.
        assert!(s.due(Some(now), now + chrono::Duration::days(3), Catchup::All).unwrap().is_empty());
        // A missed interval with `none` is dropped when `now` is not a fire time.
        assert!(s.due(Some(last), now + chrono::Duration::hours(1), Catchup::None).unwrap().is_empty());
        // First start: only an interval ending exactly now.
        assert_eq!(s.due(None, now, Catchup::All).unwrap(), vec![all[2]]);
        assert!(s.due(None, now + chrono::Duration::minutes(5), Catchup::All).unwrap().is_empty());
    }

    #[test]
    fn bad_cron_is_named() {
        let e = Schedule::new("61 * * * *", chrono_tz::UTC).unwrap_err().to_string();
        assert!(e.contains("invalid cron expression `61 * * * *`"), "{e}");
    }
}
