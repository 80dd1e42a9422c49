//! Calendar covariates: known inputs a model reads without any user column, computed from each
//! step's date. A covariate named `calendar.<feature>` (in `covariates:` of `train` and
//! `forecast`, or `restock evaluate --covariates`) is one of these; its future is known, so the
//! horizon reads it with no `future:` input.
//!
//! Each step stands for a period — a day, a week, a month, a quarter, a year — found from the
//! series' usual spacing of dates; a feature describes that period:
//!
//! | name | kind | value |
//! |---|---|---|
//! | `calendar.weekend` | flag | share of the period's days on a Saturday or Sunday (daily: 1 or 0) |
//! | `calendar.month_start` | flag | share of its days among the first three of a month |
//! | `calendar.month_end` | flag | share of its days among the last three of a month |
//! | `calendar.days` | level | number of days in the period (months: 28–31) |
//! | `calendar.weekdays` | level | number of Monday–Friday days in it (trading days) |
//! | `calendar.year_cos` | flag | mean over its days of (1 + cos 2π·(day of year − 1)/365.25) / 2: 1 on 1 January, 0 in early July |
//! | `calendar.year_sin` | flag | the same with sin: 1 in early April, 0 in early October |
//!
//! The two `year_*` features together place a step in the year (any yearly wave is a mix of
//! them), so a model can learn how a category's season runs from what its text says.
//!
//! Pure: dates in, numbers out (no Arrow, no stages).
use chrono::{Datelike, Months, NaiveDate, Weekday};

/// The prefix that marks a covariate as a calendar feature rather than a column.
pub const PREFIX: &str = "calendar.";

/// One calendar feature (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Weekend,
    MonthStart,
    MonthEnd,
    Days,
    Weekdays,
    YearCos,
    YearSin,
}

const ALL: [(&str, Feature); 7] = [
    ("weekend", Feature::Weekend),
    ("month_start", Feature::MonthStart),
    ("month_end", Feature::MonthEnd),
    ("days", Feature::Days),
    ("weekdays", Feature::Weekdays),
    ("year_cos", Feature::YearCos),
    ("year_sin", Feature::YearSin),
];

/// Every calendar covariate's full name (`calendar.weekend`, …).
pub fn names() -> Vec<String> {
    ALL.iter().map(|(n, _)| format!("{PREFIX}{n}")).collect()
}

impl Feature {
    /// `None` for a name without the `calendar.` prefix (a column); an error in words for an
    /// unknown feature.
    pub fn parse(name: &str) -> Option<Result<Feature, String>> {
        let rest = name.strip_prefix(PREFIX)?;
        Some(
            ALL.iter()
                .find(|(n, _)| *n == rest)
                .map(|&(_, f)| f)
                .ok_or_else(|| format!("unknown calendar covariate `{name}` (known: {})", names().join(", "))),
        )
    }

    /// A flag (a share in 0..=1) rather than a level.
    pub fn is_flag(self) -> bool {
        !matches!(self, Feature::Days | Feature::Weekdays)
    }

    /// The feature of one day: what a flag averages and a level sums over a period.
    fn of_day(self, day: NaiveDate) -> f64 {
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let angle = 2.0 * std::f64::consts::PI * day.ordinal0() as f64 / 365.25;
        let yes = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            Feature::Weekend => yes(weekend),
            Feature::Weekdays => yes(!weekend),
            Feature::MonthStart => yes(day.day() <= 3),
            Feature::MonthEnd => yes(day.day() + 3 > last_day_of_month(day)),
            Feature::Days => 1.0,
            Feature::YearCos => (1.0 + angle.cos()) / 2.0,
            Feature::YearSin => (1.0 + angle.sin()) / 2.0,
        }
    }

    /// The feature at each of `dates` (days since 1970-01-01, ascending), each date standing
    /// for the period up to the next step of the series' spacing.
    pub fn values(self, dates: &[i32]) -> Vec<f64> {
        let spacing = Spacing::of(dates);
        dates
            .iter()
            .map(|&d| {
                let (start, end) = (from_days(d), spacing.next(from_days(d)));
                let days: Vec<NaiveDate> = start.iter_days().take_while(|&x| x < end).collect();
                let sum: f64 = days.iter().map(|&x| self.of_day(x)).sum();
                if self.is_flag() { sum / days.len().max(1) as f64 } else { sum }
            })
            .collect()
    }
}

/// How far apart a series' steps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spacing {
    Days(i64),
    Months(u32),
}

impl Spacing {
    /// From the median gap between consecutive dates: 28–31 days is a month, 89–92 a quarter,
    /// 365–366 a year; anything else that many days (one date alone: a day).
    fn of(dates: &[i32]) -> Spacing {
        let mut gaps: Vec<i64> = dates.windows(2).map(|w| (w[1] - w[0]) as i64).filter(|g| *g > 0).collect();
        gaps.sort_unstable();
        match gaps.get(gaps.len() / 2).copied().unwrap_or(1) {
            28..=31 => Spacing::Months(1),
            89..=92 => Spacing::Months(3),
            365..=366 => Spacing::Months(12),
            g => Spacing::Days(g),
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Spacing::Days(n) => d + chrono::Duration::days(n),
            Spacing::Months(n) => d.checked_add_months(Months::new(n)).unwrap_or(d + chrono::Duration::days(30 * n as i64)),
        }
    }
}

fn from_days(d: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + chrono::Duration::days(d as i64)
}

fn last_day_of_month(d: NaiveDate) -> u32 {
    let first = d.with_day(1).expect("day 1 exists");
    (first.checked_add_months(Months::new(1)).expect("in range") - first).num_days() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(dates: &[(i32, u32, u32)]) -> Vec<i32> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        dates.iter().map(|&(y, m, d)| (NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days() as i32).collect()
    }

    #[test]
    fn daily_flags_mark_weekends_and_month_edges() {
        // Fri 2026-01-30 … Tue 2026-02-03.
        let d = days(&[(2026, 1, 30), (2026, 1, 31), (2026, 2, 1), (2026, 2, 2), (2026, 2, 3)]);
        assert_eq!(Feature::Weekend.values(&d), [0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(Feature::MonthEnd.values(&d), [1.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(Feature::MonthStart.values(&d), [0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(Feature::Days.values(&d), [1.0; 5]);
    }

    #[test]
    fn monthly_levels_count_days_and_trading_days() {
        let d = days(&[(2026, 1, 1), (2026, 2, 1), (2026, 3, 1), (2024, 2, 1)]);
        assert_eq!(Feature::Days.values(&d), [31.0, 28.0, 31.0, 29.0]);
        // January 2026 has 22 weekdays, February 20, March 22; February 2024 has 21.
        assert_eq!(Feature::Weekdays.values(&d), [22.0, 20.0, 22.0, 21.0]);
        let weekend = Feature::Weekend.values(&d);
        assert!((weekend[1] - 8.0 / 28.0).abs() < 1e-12, "{weekend:?}");
        // The year's wave: high in winter and low in summer (cos), high in spring (sin).
        let months: Vec<i32> = (1..=12).map(|m| days(&[(2026, m, 1)])[0]).collect();
        let (cos, sin) = (Feature::YearCos.values(&months), Feature::YearSin.values(&months));
        assert!(cos[0] > 0.95 && cos[6] < 0.05 && sin[3] > 0.95 && sin[9] < 0.05, "{cos:?} {sin:?}");
        assert!(cos.iter().chain(&sin).all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn names_parse_with_the_prefix_only() {
        assert_eq!(Feature::parse("promo"), None);
        assert_eq!(Feature::parse("calendar.weekend"), Some(Ok(Feature::Weekend)));
        let err = Feature::parse("calendar.holiday").unwrap().unwrap_err();
        assert!(err.contains("calendar.weekdays"), "{err}");
        assert!(Feature::Weekend.is_flag() && !Feature::Days.is_flag());
    }
}
