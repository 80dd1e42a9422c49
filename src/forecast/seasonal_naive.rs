//! Seasonal naive: tomorrow looks like the same day last season.
//!
//! Point forecast: y[T+h] = y[T+h-m*(k+1)] with k = (h-1) div m. Quantiles come from the
//! empirical distribution of in-sample seasonal errors e_t = y_t - y_{t-m}, widened by
//! sqrt(k+1) for steps more than one season ahead (the error of a seasonal random walk grows
//! that way). This is the baseline every learned model must beat. A history with fewer than
//! [`MIN_EMPIRICAL`] seasonal errors gets a normal interval around its point instead.
use super::{QuantileForecast, norm_ppf, quantile_sorted};

pub fn seasonal_naive(history: &[f64], season: usize, horizon: usize, levels: &[f64], nonnegative: bool) -> QuantileForecast {
    let season = season.max(1);
    let finite: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
    let fill = if finite.is_empty() { 0.0 } else { finite.iter().sum::<f64>() / finite.len() as f64 };
    let y: Vec<f64> = history.iter().map(|v| if v.is_finite() { *v } else { fill }).collect();
    let n = y.len();
    let clip = |v: f64| if nonnegative { v.max(0.0) } else { v };

    let point: Vec<f64> = (0..horizon)
        .map(|h| {
            if n >= season {
                y[n - season + (h % season)]
            } else if n > 0 {
                fill
            } else {
                0.0
            }
        })
        .collect();

    let spread = Spread::of(history, &y, season);
    let quantiles = levels
        .iter()
        .map(|&q| {
            let e = spread.at(q);
            point.iter().enumerate().map(|(h, p)| clip(p + e * (((h / season) + 1) as f64).sqrt())).collect()
        })
        .collect();
    QuantileForecast { point: point.into_iter().map(clip).collect(), quantiles }
}

/// Fewest in-sample seasonal errors whose own quantiles make the interval. Fewer (a short
/// history) give a normal interval around the point with their root mean square — or, where
/// no value has a full season behind it, the lag-1 differences' — so two errors that agree
/// (a drift) never make an interval of no width that leaves the point outside it.
pub const MIN_EMPIRICAL: usize = 8;

/// The error a forecast's quantile adds one season ahead.
enum Spread {
    /// The in-sample seasonal errors, sorted.
    Empirical(Vec<f64>),
    /// A normal error's standard deviation.
    Normal(f64),
}

impl Spread {
    fn of(history: &[f64], y: &[f64], season: usize) -> Spread {
        let errors = |lag: usize| -> Vec<f64> {
            (lag..y.len()).filter(|&t| history[t].is_finite() && history[t - lag].is_finite()).map(|t| y[t] - y[t - lag]).collect()
        };
        let mut seasonal = errors(season);
        if seasonal.len() >= MIN_EMPIRICAL {
            seasonal.sort_by(f64::total_cmp);
            return Spread::Empirical(seasonal);
        }
        let few = if seasonal.is_empty() { errors(1) } else { seasonal };
        let rms = if few.is_empty() { 0.0 } else { (few.iter().map(|e| e * e).sum::<f64>() / few.len() as f64).sqrt() };
        Spread::Normal(rms)
    }

    fn at(&self, q: f64) -> f64 {
        match self {
            Spread::Empirical(sorted) => quantile_sorted(sorted, q),
            Spread::Normal(sd) if *sd > 0.0 => sd * norm_ppf(q),
            Spread::Normal(_) => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_last_season() {
        let y = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let f = seasonal_naive(&y, 3, 7, &[], true);
        assert_eq!(f.point, vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0, 10.0]);
    }

    #[test]
    fn quantiles_bracket_point_and_widen_with_seasons() {
        let y: Vec<f64> = (0..70).map(|t| 10.0 + ((t * 7919) % 5) as f64).collect();
        let f = seasonal_naive(&y, 7, 14, &[0.1, 0.5, 0.9], true);
        for h in 0..14 {
            assert!(f.quantiles[0][h] <= f.quantiles[1][h] && f.quantiles[1][h] <= f.quantiles[2][h]);
        }
        let width = |h: usize| f.quantiles[2][h] - f.quantiles[0][h];
        assert!(width(7) > width(0), "second season must be wider: {} vs {}", width(7), width(0));
    }

    #[test]
    fn short_history_falls_back_to_mean_and_never_negative() {
        let f = seasonal_naive(&[4.0, f64::NAN, 2.0], 7, 3, &[0.05], true);
        assert_eq!(f.point, vec![3.0, 3.0, 3.0]);
        assert!(f.quantiles[0].iter().all(|v| *v >= 0.0));
    }

    /// Two seasonal errors that agree (a drift) used to be the whole interval: every quantile
    /// one step above the point. Now a short history's interval is normal around the point.
    #[test]
    fn a_short_history_gets_an_interval_around_its_point() {
        let f = seasonal_naive(&[4.0, 5.0, 6.0], 1, 2, &[0.1, 0.5, 0.9], false);
        assert_eq!(f.point, vec![6.0, 6.0]);
        let z = norm_ppf(0.9);
        assert!((f.quantiles[2][0] - (6.0 + z)).abs() < 1e-9 && (f.quantiles[0][0] - (6.0 - z)).abs() < 1e-9, "{:?}", f.quantiles);
        assert!((f.quantiles[1][0] - 6.0).abs() < 1e-9);
        assert!((f.quantiles[2][1] - (6.0 + z * 2f64.sqrt())).abs() < 1e-9, "wider a season further out");
        // Less than a season of history: the lag-1 differences set the spread around the mean.
        let g = seasonal_naive(&[4.0, 5.0, 6.0], 7, 1, &[0.1, 0.9], false);
        assert_eq!(g.point, vec![5.0]);
        assert!((g.quantiles[0][0] - (5.0 - z)).abs() < 1e-9 && (g.quantiles[1][0] - (5.0 + z)).abs() < 1e-9);
        // Enough errors: their own quantiles, as before.
        let y: Vec<f64> = (0..20).map(|t| t as f64).collect();
        let h = seasonal_naive(&y, 1, 1, &[0.1, 0.9], false);
        assert_eq!(h.quantiles, vec![vec![20.0], vec![20.0]], "19 errors of exactly 1");
    }
}
