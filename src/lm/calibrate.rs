//! How wide a run's LM forecasts should be, learnt from the run's own series. The model's 80 %
//! intervals are too wide on some data (aus_retail, smooth hourly series) and about right on
//! other (PBS, daily unit counts), and each data set's best width is stable across forecast
//! origins (BENCHMARKS.md, "How wide the LM's intervals should be"). So every series' own last
//! `horizon` values are forecast from what precedes them (`forecast::holdout`'s sample), and the factor that scales each quantile's distance from the median best (WQL
//! pooled over them) is applied to the real forecasts. It only narrows: a factor above 1, learnt
//! from one earlier stretch of growing yearly series, cost them 6 % where it widened. On by
//! default (`LmOptions::calibrate`). The same pass chooses what `lm::forecast` leaves to it
//! (`LmOptions::trend`, `lag_seasons`: `Auto`) by the loss each candidate's forecasts have at
//! their best factor ([`best`], per series [`losses`], compared with `holdout::clearly_less`).
use crate::forecast::QuantileForecast;
use crate::forecast::holdout::{self, MIN_HELD};
use crate::forecast::metrics::pinball;

/// Factors tried: 0.5, 0.6, …, 1 (the model's own spread).
pub const FACTORS: [f64; 6] = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// One held-out forecast: the values held out and the forecast of them at `levels`.
pub struct Held<'a> {
    pub actual: &'a [f64],
    pub forecast: QuantileForecast,
}

/// The factor of [`FACTORS`] whose scaled quantiles (`levels`, whose `median` index is 0.5)
/// have the least pinball loss over every held-out value, and that loss; None with fewer than
/// [`MIN_HELD`] held-out values (too few to learn from: the caller keeps factor 1).
pub fn best(held: &[Held], levels: &[f64], median: usize) -> Option<(f64, f64)> {
    if holdout::observed(held.iter().map(|h| h.actual)) < MIN_HELD {
        return None;
    }
    FACTORS.into_iter().map(|k| (k, losses(held, levels, median, k).iter().sum::<f64>())).min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Each held-out forecast's pinball loss, summed over its observed values and `levels`, with
/// every quantile's distance from the median (quantile `median`) scaled by `k`.
pub fn losses(held: &[Held], levels: &[f64], median: usize, k: f64) -> Vec<f64> {
    let one = |h: &Held| -> f64 {
        let q = &h.forecast.quantiles;
        let observed = h.actual.iter().enumerate().filter(|(_, y)| y.is_finite());
        observed
            .map(|(t, y)| levels.iter().zip(q).map(|(l, qs)| pinball(*y, q[median][t] + k * (qs[t] - q[median][t]), *l)).sum::<f64>())
            .sum()
    };
    held.iter().map(one).collect()
}

/// Scales each quantile's, the point's and each path's distance from the median (quantile
/// `median`) by `k`, step by step.
pub fn scale(f: &mut QuantileForecast, paths: &mut [Vec<f64>], median: usize, k: f64) {
    if k == 1.0 {
        return; // exactly as sampled
    }
    let centre = f.quantiles[median].clone();
    let move_ = |v: &mut f64, c: f64| *v = c + k * (*v - c);
    f.point.iter_mut().zip(&centre).for_each(|(v, c)| move_(v, *c));
    for q in f.quantiles.iter_mut() {
        q.iter_mut().zip(&centre).for_each(|(v, c)| move_(v, *c));
    }
    for p in paths.iter_mut() {
        p.iter_mut().zip(&centre).for_each(|(v, c)| move_(v, *c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::metrics::LEVELS;

    /// A forecast whose quantiles are the median ± `spread` × the normal's z at each level.
    fn normal(median: f64, spread: f64, steps: usize) -> QuantileForecast {
        let z = |l: f64| crate::forecast::norm_ppf(l);
        QuantileForecast { point: vec![median; steps], quantiles: LEVELS.iter().map(|&l| vec![median + spread * z(l); steps]).collect() }
    }

    /// Actuals drawn from a spread of 1 (deterministic normal scores): a forecast twice too wide
    /// learns ½, one right learns 1, one too narrow is never widened; too few values learn nothing.
    #[test]
    fn the_factor_that_scores_best_on_held_out_values_is_learnt() {
        let actual: Vec<f64> = (1..=60).map(|i| crate::forecast::norm_ppf(i as f64 / 61.0)).collect();
        let factor = |held: &[Held]| best(held, &LEVELS, 4).map_or(1.0, |(k, _)| k);
        let learn = |spread: f64, n: usize| factor(&[Held { actual: &actual[..n], forecast: normal(0.0, spread, n) }]);
        assert_eq!(learn(2.0, 60), 0.5);
        assert_eq!(learn(1.0, 60), 1.0);
        assert_eq!(learn(1.6, 60), 0.6);
        assert_eq!(learn(0.75, 60), 1.0, "only narrowed");
        assert_eq!(learn(2.0, MIN_HELD - 1), 1.0, "too few held-out values");
        let mut missing = actual.clone();
        missing[..20].iter_mut().for_each(|v| *v = f64::NAN);
        let sparse = factor(&[Held { actual: &missing, forecast: normal(0.0, 2.0, 60) }]);
        assert_eq!(sparse, 1.0, "missing values are not counted");
    }

    /// The loss `best` reports is comparable across candidate forecasts of the same values
    /// (how `lm::forecast` picks a trend): a forecast off-centre loses more than a centred one
    /// at its own best factor; too few values give none.
    #[test]
    fn the_best_factors_loss_ranks_forecasts_of_the_same_values() {
        let actual: Vec<f64> = (1..=60).map(|i| crate::forecast::norm_ppf(i as f64 / 61.0)).collect();
        let score = |median: f64, n: usize| best(&[Held { actual: &actual[..n], forecast: normal(median, 1.0, n) }], &LEVELS, 4);
        let (centred, off) = (score(0.0, 60).unwrap(), score(1.5, 60).unwrap());
        assert_eq!(centred.0, 1.0);
        assert!(centred.1 > 0.0 && off.1 > 1.5 * centred.1, "{centred:?} {off:?}");
        assert_eq!(score(0.0, MIN_HELD - 1), None);
    }

    #[test]
    fn scaling_moves_everything_towards_the_median() {
        let mut f = normal(10.0, 2.0, 2);
        f.point = vec![11.0, 9.0];
        let mut paths = vec![vec![14.0, 6.0]];
        scale(&mut f, &mut paths, 4, 0.5);
        assert_eq!(f.point, [10.5, 9.5]);
        assert_eq!(paths, [vec![12.0, 8.0]]);
        let want = normal(10.0, 1.0, 2);
        for (a, b) in f.quantiles.iter().zip(&want.quantiles) {
            assert!(a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-12), "{a:?} {b:?}");
        }
    }
}
