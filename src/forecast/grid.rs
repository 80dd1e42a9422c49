//! A long table's times on a regular grid. A series whose rows skip times of the table's step
//! (an hour, a day, a week, a calendar month, quarter or year) would otherwise be read as if
//! its values were consecutive, every season after a gap out of phase; `restock evaluate` and
//! the `forecast` stage put the skipped times in as missing values, which every method masks
//! or fills. Rows that do not lie on one grid are read as they are.
use chrono::{Datelike, Months, NaiveDate};

/// Microseconds in a day.
pub const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

/// How far apart a table's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A fixed span: microseconds on dated times, periods on integer ones.
    Fixed(i64),
    /// Calendar months (3: a quarter, 12: a year), counted from a series' first date, so a
    /// month's last day steps to the next month's last day.
    Months(u32),
}

impl Step {
    /// The (lower) median positive gap between consecutive times of every series (`dated`: times in
    /// microseconds, where a gap of 28–31 whole days is a month, 89–92 a quarter and 365–366 a
    /// year); None where no series has two times.
    pub fn of<'a>(series: impl Iterator<Item = &'a [i64]>, dated: bool) -> Option<Step> {
        let mut gaps: Vec<i64> = series.flat_map(|ts| ts.windows(2).map(|w| w[1] - w[0])).filter(|g| *g > 0).collect();
        if gaps.is_empty() {
            return None;
        }
        let mid = (gaps.len() - 1) / 2; // the lower median: of two gaps, the shorter
        let g = *gaps.select_nth_unstable(mid).1;
        let months = match (dated && g % DAY == 0).then_some(g / DAY) {
            Some(28..=31) => Some(1),
            Some(89..=92) => Some(3),
            Some(365..=366) => Some(12),
            _ => None,
        };
        Some(months.map_or(Step::Fixed(g), Step::Months))
    }

    /// About how long a step is, in microseconds (a month as 30 days): for comparing steps.
    pub fn span(self) -> i64 {
        match self {
            Step::Fixed(g) => g,
            Step::Months(n) => n as i64 * 30 * DAY,
        }
    }

    /// The season a step conventionally has: a day's steps for a step of a minute or more that
    /// divides a day (24 hourly), 7 daily, 52 weekly, 12 monthly, 4 quarterly, 1 yearly; None for integer
    /// periods (`dated` false) or any other step.
    pub fn season(self, dated: bool) -> Option<usize> {
        match self {
            _ if !dated => None,
            Step::Fixed(g) if g == DAY => Some(7),
            Step::Fixed(g) if g == 7 * DAY => Some(52),
            Step::Fixed(g) if (MINUTE..DAY).contains(&g) && DAY % g == 0 => Some((DAY / g) as usize),
            Step::Months(n @ (1 | 3 | 12)) => Some(12 / n as usize),
            _ => None,
        }
    }

    /// The step in words: "7 days", "1 month", "3600000000 µs".
    pub fn describe(self) -> String {
        match self {
            Step::Fixed(g) if g % DAY == 0 => plural(g / DAY, "day"),
            Step::Fixed(g) if g % (DAY / 24) == 0 => plural(g / (DAY / 24), "hour"),
            Step::Fixed(g) if g % MINUTE == 0 => plural(g / MINUTE, "minute"),
            Step::Fixed(g) => format!("{g} µs"),
            Step::Months(n) => format!("{n} month{}", if n == 1 { "" } else { "s" }),
        }
    }

    /// The time `k` steps after `first`.
    fn nth(self, first: i64, k: i64) -> Option<i64> {
        match self {
            Step::Fixed(g) => first.checked_add(g.checked_mul(k)?),
            Step::Months(n) => {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
                let date = epoch.checked_add_signed(chrono::Duration::days(first.div_euclid(DAY)))?;
                let mut to = date.checked_add_months(Months::new(n.checked_mul(u32::try_from(k).ok()?)?))?;
                if date.succ_opt()?.month() != date.month() {
                    to = to.checked_add_months(Months::new(1))?.with_day(1)?.pred_opt()?;
                }
                Some((to - epoch).num_days() * DAY + first.rem_euclid(DAY))
            }
        }
    }

    /// The grid of `ts` (sorted, distinct) from its first time to its last, where it misses
    /// some: None where it misses none, or where a time is off the grid (read as it is).
    pub fn fill(self, ts: &[i64]) -> Option<Vec<i64>> {
        let (&first, &last) = (ts.first()?, ts.last()?);
        let mut grid = Vec::with_capacity(ts.len());
        let mut rows = ts.iter().peekable();
        for k in 0.. {
            let t = self.nth(first, k)?;
            if t > last {
                break;
            }
            if rows.next_if(|&&r| r < t).is_some() {
                return None; // a row between two grid times
            }
            rows.next_if(|&&r| r == t);
            grid.push(t);
        }
        (grid.len() > ts.len() && rows.next().is_none()).then_some(grid)
    }
}

/// Missing times put in: how many, over how many series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    pub times: usize,
    pub series: usize,
}

/// `values` (one per time of `ts`) spread over `grid`, NaN where the grid has a time `ts` lacks.
pub fn spread(ts: &[i64], grid: &[i64], values: &[f64]) -> Vec<f64> {
    let mut at = ts.iter().zip(values).peekable();
    grid.iter().map(|t| at.next_if(|(r, _)| *r == t).map_or(f64::NAN, |(_, v)| *v)).collect()
}

fn plural(n: i64, unit: &str) -> String {
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_has_its_conventional_season() {
        let hour = DAY / 24;
        let steps = [Step::Fixed(hour), Step::Fixed(hour / 4), Step::Fixed(DAY), Step::Fixed(7 * DAY), Step::Months(1), Step::Months(3)];
        let seasons: Vec<Option<usize>> = steps.iter().map(|s| s.season(true)).collect();
        assert_eq!(seasons, [Some(24), Some(96), Some(7), Some(52), Some(12), Some(4)]);
        assert_eq!(Step::Months(12).season(true), Some(1));
        // Two days, seven hours, a microsecond, and integer periods have none.
        assert_eq!([Step::Fixed(2 * DAY), Step::Fixed(7 * hour), Step::Fixed(1)].map(|s| s.season(true)), [None; 3]);
        assert_eq!(Step::Fixed(1).season(false), None);
    }

    fn day(y: i32, m: u32, d: u32) -> i64 {
        (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() * DAY
    }

    #[test]
    fn the_step_is_the_tables_median_gap_with_calendar_months() {
        let daily: Vec<i64> = (0..10).map(|d| d * DAY).collect();
        assert_eq!(Step::of([&daily[..]].into_iter(), true), Some(Step::Fixed(DAY)));
        let monthly = [day(2024, 1, 31), day(2024, 2, 29), day(2024, 3, 31), day(2024, 4, 30)];
        assert_eq!(Step::of([&monthly[..]].into_iter(), true), Some(Step::Months(1)));
        let quarterly = [day(2024, 1, 1), day(2024, 4, 1), day(2024, 7, 1)];
        assert_eq!(Step::of([&quarterly[..]].into_iter(), true), Some(Step::Months(3)));
        assert_eq!(Step::of([&[3, 5, 7][..]].into_iter(), false), Some(Step::Fixed(2)), "integer periods");
        assert_eq!(Step::of([&[30, 60][..]].into_iter(), false), Some(Step::Fixed(30)), "no calendar for periods");
        assert_eq!(Step::of([&[day(2024, 1, 1)][..]].into_iter(), true), None);
        // A sparse series alone would set a step of its own; the table's step is its many rows'.
        let sparse = [0, 9 * DAY, 20 * DAY];
        assert_eq!(Step::of([&daily[..], &sparse[..]].into_iter(), true), Some(Step::Fixed(DAY)));
    }

    #[test]
    fn missing_times_are_filled_and_rows_off_the_grid_left_alone() {
        let hour = 3_600_000_000;
        let ts = [0, hour, 4 * hour, 5 * hour];
        let grid = Step::Fixed(hour).fill(&ts).expect("two hours missing");
        assert_eq!(grid, (0..6).map(|h| h * hour).collect::<Vec<_>>());
        let v = spread(&ts, &grid, &[1.0, 2.0, 5.0, 6.0]);
        assert_eq!(v.iter().map(|x| if x.is_nan() { -1.0 } else { *x }).collect::<Vec<_>>(), [1.0, 2.0, -1.0, -1.0, 5.0, 6.0]);
        assert_eq!(Step::Fixed(hour).fill(&grid), None, "nothing missing");
        assert_eq!(Step::Fixed(hour).fill(&[0, hour, 2 * hour + 60_000_000, 4 * hour]), None, "a row off the grid");
        // Month ends step to month ends; a missing March is filled.
        let ends = [day(2023, 1, 31), day(2023, 2, 28), day(2023, 4, 30)];
        assert_eq!(Step::Months(1).fill(&ends), Some(vec![day(2023, 1, 31), day(2023, 2, 28), day(2023, 3, 31), day(2023, 4, 30)]));
        let firsts = [day(2023, 1, 1), day(2023, 7, 1)];
        assert_eq!(Step::Months(3).fill(&firsts), Some(vec![day(2023, 1, 1), day(2023, 4, 1), day(2023, 7, 1)]));
    }
}
