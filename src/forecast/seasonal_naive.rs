//! Seasonal naive: tomorrow looks like the same day last season.
//!
//! Point forecast: y[T+h] = y[T+h-m*(k+1)] with k = (h-1) div m. Quantiles come from the
//! empirical distribution of in-sample seasonal errors e_t = y_t - y_{t-m}, widened by
//! sqrt(k+1) for steps more than one season ahead (the error of a seasonal random walk grows
//! that way). This is the baseline every learned model must beat.
use super::{QuantileForecast, quantile_sorted};

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

    let mut errors: Vec<f64> =
        (season..n).filter(|&t| history[t].is_finite() && history[t - season].is_finite()).map(|t| y[t] - y[t - season]).collect();
    errors.sort_by(f64::total_cmp);

    let quantiles = levels
        .iter()
        .map(|&q| {
            let e = if errors.len() >= 2 { quantile_sorted(&errors, q) } else { 0.0 };
            point.iter().enumerate().map(|(h, p)| clip(p + e * (((h / season) + 1) as f64).sqrt())).collect()
        })
        .collect();
    QuantileForecast { point: point.into_iter().map(clip).collect(), quantiles }
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
}
