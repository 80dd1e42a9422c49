//! How wide a run's LM forecasts should be, learnt from the run's own series. The model's 80 %
//! intervals are too wide on some data (aus_retail, smooth hourly series) and about right on
//! other (PBS, daily unit counts), and each data set's best width is stable across forecast
//! origins (BENCHMARKS.md, "How wide the LM's intervals should be"). So every series' own last
//! `horizon` values are forecast from what precedes them (at most [`MAX_SERIES`] series, evenly
//! spaced), and the factor that scales each quantile's distance from the median best (WQL
//! pooled over them) is applied to the real forecasts. It only narrows: a factor above 1, learnt
//! from one earlier stretch of growing yearly series, cost them 6 % where it widened. On by
//! default (`LmOptions::calibrate`). The same pass chooses what `lm::forecast` leaves to it
//! (`LmOptions::trend`, `lag_seasons`: `Auto`) by the loss each candidate's forecasts have at
//! their best factor ([`best`], per series [`losses`], compared with [`clearly_less`]).
use crate::forecast::QuantileForecast;
use crate::forecast::metrics::pinball;

/// Factors tried: 0.5, 0.6, …, 1 (the model's own spread).
pub const FACTORS: [f64; 6] = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Most series forecast for the factor: a nightly run of thousands pays a tenth more, not double.
pub const MAX_SERIES: usize = 512;

/// Fewest held-out values a factor is learnt from; fewer leave the forecasts as they are.
pub const MIN_HELD: usize = 50;

/// Fewest values a series keeps before its held-out ones to be forecast for the factor.
pub const MIN_CONTEXT: usize = 8;

/// One held-out forecast: the values held out and the forecast of them at `levels`.
pub struct Held<'a> {
    pub actual: &'a [f64],
    pub forecast: QuantileForecast,
}

/// The factor of [`FACTORS`] whose scaled quantiles (`levels`, whose `median` index is 0.5)
/// have the least pinball loss over every held-out value, and that loss; None with fewer than
/// [`MIN_HELD`] held-out values (too few to learn from: the caller keeps factor 1).
pub fn best(held: &[Held], levels: &[f64], median: usize) -> Option<(f64, f64)> {
    let observed: usize = held.iter().map(|h| h.actual.iter().filter(|y| y.is_finite()).count()).sum();
    if observed < MIN_HELD {
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

/// How far `b`'s losses are below `a`'s (the same forecasts' held-out values, in order): the
/// mean of their paired differences a − b over its standard error (NaN with fewer than two).
pub fn paired_t(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    let n = d.len() as f64;
    if d.len() < 2 {
        return f64::NAN;
    }
    let mean = d.iter().sum::<f64>() / n;
    let se = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    mean / se
}

/// Whether `b`'s losses are less than `a`'s by at least `z` standard errors of their paired
/// differences' mean ([`paired_t`]; z = 0: any less).
pub fn clearly_less(a: &[f64], b: &[f64], z: f64) -> bool {
    let t = paired_t(a, b);
    t > 0.0 && t >= z
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
    fn a_clear_difference_is_a_paired_one_beyond_its_noise() {
        let a = [10.0, 12.0, 9.0, 11.0, 10.5, 9.5];
        let better: Vec<f64> = a.iter().zip([1.0, 1.2, 0.9, 1.1, 0.8, 1.0]).map(|(a, d)| a - d).collect();
        assert!(clearly_less(&a, &better, 2.0), "every series a little better");
        let mixed: Vec<f64> = a.iter().zip([3.0, -2.5, 2.0, -1.5, 0.5, -0.5]).map(|(a, d)| a - d).collect();
        assert!(mixed.iter().sum::<f64>() < a.iter().sum::<f64>() && !clearly_less(&a, &mixed, 2.0), "less in total, within its noise");
        assert!(clearly_less(&a, &mixed, 0.0), "z = 0: any less");
        assert!(!clearly_less(&a, &a, 0.0) && !clearly_less(&a[..1], &better[..1], 2.0));
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
