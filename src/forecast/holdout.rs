//! Held-out tails: a run's own series' last `horizon` values, forecast from what precedes them,
//! so that a run chooses what it cannot know in advance by how each choice would have done on
//! its own data — the LM's spread (`lm::calibrate`), trend and seasonal lag (`lm::forecast`),
//! and which of an ensemble's forecasts to keep ([`super::ensemble`]). Which series are held
//! out, how many values are enough, and when one choice is clearly better than another live
//! here, so that every such choice is made the same way. Pure maths.
use super::{Method, QuantileForecast, Request};

/// Most series held out: a nightly run of thousands pays a tenth more, not double.
pub const MAX_SERIES: usize = 512;

/// Fewest values a series keeps before its held-out ones to be held out at all.
pub const MIN_CONTEXT: usize = 8;

/// Fewest observed held-out values a choice is learnt from; with fewer, each caller keeps its
/// default.
pub const MIN_HELD: usize = 50;

/// The series held out, by index, from their lengths: every k-th (at most [`MAX_SERIES`],
/// evenly spaced) with at least [`MIN_CONTEXT`] values before its last `horizon`.
pub fn sample(lengths: &[usize], horizon: usize) -> Vec<usize> {
    let every = lengths.len().div_ceil(MAX_SERIES).max(1);
    (0..lengths.len()).step_by(every).filter(|&i| lengths[i] >= horizon + MIN_CONTEXT).collect()
}

/// Each sampled history's held-out values: its last `horizon`.
pub fn tails<'a>(histories: &[&'a [f64]], horizon: usize) -> Vec<&'a [f64]> {
    histories.iter().map(|h| &h[h.len() - horizon..]).collect()
}

/// `method`'s forecasts of each sampled history's last `req.horizon` values from what precedes
/// them, across the cores (None where no observed value precedes them).
pub fn forecast_tails(method: Method, histories: &[&[f64]], req: &Request) -> Vec<Option<QuantileForecast>> {
    use rayon::prelude::*;
    histories.par_iter().map(|h| method.forecast(&h[..h.len() - req.horizon], req).ok()).collect()
}

/// Observed (finite) values among the held-out ones.
pub fn observed<'a>(actual: impl IntoIterator<Item = &'a [f64]>) -> usize {
    actual.into_iter().map(|a| a.iter().filter(|y| y.is_finite()).count()).sum()
}

/// How far `b`'s losses are below `a`'s (the same held-out series, in order): the mean of their
/// paired differences a − b over its standard error (NaN with fewer than two).
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Every k-th series, evenly spread over a large run; short ones are skipped, not replaced.
    #[test]
    fn the_sample_is_evenly_spaced_and_long_enough() {
        let lengths: Vec<usize> = (0..2000).map(|i| if i % 8 == 0 { 5 } else { 40 }).collect();
        let s = sample(&lengths, 12);
        assert!(s.len() <= MAX_SERIES && s.iter().all(|&i| i % 4 == 0 && lengths[i] >= 12 + MIN_CONTEXT), "{:?}", &s[..8]);
        assert_eq!(s.len(), 250, "every 4th of 2,000 (500), less the short half");
        assert_eq!(sample(&[20, 19, 30], 12), [0, 2]);
        assert_eq!(observed([&[1.0, f64::NAN][..], &[2.0][..]]), 2);
        assert_eq!(tails(&[&[1.0, 2.0, 3.0][..]], 2), [&[2.0, 3.0][..]]);
    }
}
