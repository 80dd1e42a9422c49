//! Demand over the protection interval (review period R + lead time L) as a sample.
//!
//! Each sample is one demand path summed over R + L days, with L drawn per sample from the
//! supplier's lead-time distribution: the sum is taken along a path, so the serial dependence
//! the forecaster put into its paths is kept. Daily quantiles are never added up. Where a
//! forecast only has per-step quantiles, [`draw_paths`] first turns them into paths under a
//! stated dependence assumption (a Gaussian AR(1) copula across steps).
use rand::Rng;
use rand_distr::StandardNormal;

use crate::forecast::norm_ppf;

/// Sample paths of one series: `n` rows of `horizon` steps, row-major.
#[derive(Debug, Clone)]
pub struct Paths {
    pub values: Vec<f64>,
    pub horizon: usize,
}

impl Paths {
    pub fn len(&self) -> usize {
        self.values.len() / self.horizon.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn path(&self, i: usize) -> &[f64] {
        &self.values[i * self.horizon..(i + 1) * self.horizon]
    }
}

/// Per-step quantiles (levels ascending, strictly inside (0, 1)) → `n` paths. Step values follow
/// a Gaussian copula whose latent normals are AR(1) across steps with correlation `rho`
/// (0: independent steps, 1: one draw for the whole path, i.e. comonotone). Each step's inverse
/// distribution function is piecewise linear in the normal score Φ⁻¹(level) through the given
/// quantiles and extends its outer segments beyond them (exact for a normal forecast).
/// `quantiles[step][level]`.
pub fn draw_paths(levels: &[f64], quantiles: &[Vec<f64>], n: usize, rho: f64, nonnegative: bool, rng: &mut impl Rng) -> Paths {
    let z: Vec<f64> = levels.iter().map(|&l| norm_ppf(l)).collect();
    let horizon = quantiles.len();
    let mut values = Vec::with_capacity(n * horizon);
    let innovation = (1.0 - rho * rho).max(0.0).sqrt();
    for _ in 0..n {
        let mut latent: f64 = rng.sample(StandardNormal);
        for (t, q) in quantiles.iter().enumerate() {
            if t > 0 {
                latent = rho * latent + innovation * rng.sample::<f64, _>(StandardNormal);
            }
            let v = inverse_cdf(&z, q, latent);
            values.push(if nonnegative { v.max(0.0) } else { v });
        }
    }
    Paths { values, horizon }
}

/// The value at normal score `score`, linear between the known (zᵢ, qᵢ) and beyond the ends.
fn inverse_cdf(z: &[f64], q: &[f64], score: f64) -> f64 {
    let n = z.len();
    if n == 1 {
        return q[0];
    }
    let i = z.partition_point(|&zi| zi < score).clamp(1, n - 1);
    let (z0, z1, q0, q1) = (z[i - 1], z[i], q[i - 1], q[i]);
    q0 + (score - z0) * (q1 - q0) / (z1 - z0)
}

/// Lead time in days: mean and standard deviation (normal, truncated at zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeadTime {
    pub mean: f64,
    pub sd: f64,
}

impl LeadTime {
    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        if self.sd <= 0.0 {
            return self.mean.max(0.0);
        }
        (self.mean + self.sd * rng.sample::<f64, _>(StandardNormal)).max(0.0)
    }
}

/// Demand samples over the protection interval and over the lead time alone.
#[derive(Debug, Clone, Default)]
pub struct IntervalDemand {
    /// Demand over R + L, one value per sample, sorted ascending.
    pub protection: Vec<f64>,
    /// Demand over L alone (for the reorder point), sorted ascending.
    pub lead_time: Vec<f64>,
    /// Mean demand over one review period R (the cycle, for fill rates).
    pub cycle_mean: f64,
    /// Mean demand per day over the paths' horizon.
    pub daily_mean: f64,
    /// Some sampled interval ran past the paths' horizon and was extended (see [`cumulative`]).
    pub extrapolated: bool,
}

/// Sum `draws_per_path` lead-time draws along every path.
pub fn interval_demand(paths: &Paths, review_days: f64, lead: LeadTime, draws_per_path: usize, rng: &mut impl Rng) -> IntervalDemand {
    let n = paths.len() * draws_per_path.max(1);
    let mut out = IntervalDemand { protection: Vec::with_capacity(n), lead_time: Vec::with_capacity(n), ..Default::default() };
    let (mut cycle, mut total) = (0.0, 0.0);
    let mut prefix = vec![0.0; paths.horizon + 1];
    for i in 0..paths.len() {
        let path = paths.path(i);
        for (t, v) in path.iter().enumerate() {
            prefix[t + 1] = prefix[t] + v;
        }
        total += prefix[paths.horizon];
        cycle += cumulative(&prefix, path, review_days);
        for _ in 0..draws_per_path.max(1) {
            let l = lead.draw(rng);
            out.extrapolated |= review_days + l > paths.horizon as f64;
            out.protection.push(cumulative(&prefix, path, review_days + l));
            out.lead_time.push(cumulative(&prefix, path, l));
        }
    }
    out.protection.sort_by(f64::total_cmp);
    out.lead_time.sort_by(f64::total_cmp);
    out.cycle_mean = cycle / paths.len().max(1) as f64;
    out.daily_mean = total / (paths.len() * paths.horizon).max(1) as f64;
    out
}

/// Demand over the first `days` (fractional days count pro rata) of a path with prefix sums
/// `prefix`. Past the horizon the path's last week (or all of it, if shorter) repeats: a
/// stated extrapolation, flagged by [`IntervalDemand::extrapolated`].
pub fn cumulative(prefix: &[f64], path: &[f64], days: f64) -> f64 {
    let h = path.len();
    if h == 0 || days <= 0.0 {
        return 0.0;
    }
    let whole = days.floor() as usize;
    let frac = days - whole as f64;
    if whole < h {
        return prefix[whole] + frac * path[whole];
    }
    let week = h.min(7);
    let week_sum = prefix[h] - prefix[h - week];
    let beyond = whole - h;
    let (cycles, rest) = (beyond / week, beyond % week);
    let tail = &path[h - week..];
    let partial: f64 = tail[..rest].iter().sum();
    prefix[h] + cycles as f64 * week_sum + partial + frac * tail[rest]
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn cumulative_handles_fractions_and_extends_past_the_horizon() {
        let path = [1.0, 2.0, 3.0];
        let prefix = [0.0, 1.0, 3.0, 6.0];
        assert_eq!(cumulative(&prefix, &path, 1.5), 2.0);
        assert_eq!(cumulative(&prefix, &path, 3.0), 6.0);
        // Past the end the (short) path repeats: day 4 = 1, day 5 = 2, half of day 6 = 1.5.
        assert_eq!(cumulative(&prefix, &path, 5.5), 10.5);
    }

    #[test]
    fn copula_paths_keep_quantiles_and_their_dependence() {
        // A normal N(10, 2²) each step, three levels: the inverse cdf is exact.
        let levels = [0.1, 0.5, 0.9];
        let q: Vec<f64> = levels.iter().map(|&l| 10.0 + 2.0 * norm_ppf(l)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let sd_of_sum = |rho: f64, rng: &mut ChaCha8Rng| {
            let p = draw_paths(&levels, &vec![q.clone(); 2], 40_000, rho, false, rng);
            let sums: Vec<f64> = (0..p.len()).map(|i| p.path(i).iter().sum()).collect();
            let m = sums.iter().sum::<f64>() / sums.len() as f64;
            (m, (sums.iter().map(|s| (s - m).powi(2)).sum::<f64>() / sums.len() as f64).sqrt())
        };
        let (m0, sd0) = sd_of_sum(0.0, &mut rng);
        let (_, sd1) = sd_of_sum(1.0, &mut rng);
        let (_, sd5) = sd_of_sum(0.5, &mut rng);
        assert!((m0 - 20.0).abs() < 0.05, "{m0}");
        // Var of a sum of two N(·, 4) with correlation ρ: 8 (1 + ρ).
        assert!((sd0 - 8f64.sqrt()).abs() < 0.05, "{sd0}");
        assert!((sd1 - 4.0).abs() < 0.05, "{sd1}");
        assert!((sd5 - 12f64.sqrt()).abs() < 0.05, "{sd5}");
    }

    #[test]
    fn interval_demand_mixes_lead_time_uncertainty() {
        // Constant demand 10 a day: the interval's demand is 10 × (R + L), L ~ N(7, 2²).
        let paths = Paths { values: vec![10.0; 28], horizon: 28 };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = interval_demand(&paths, 7.0, LeadTime { mean: 7.0, sd: 2.0 }, 20_000, &mut rng);
        let mean = d.protection.iter().sum::<f64>() / d.protection.len() as f64;
        assert!((mean - 140.0).abs() < 0.5, "{mean}");
        let median = d.protection[d.protection.len() / 2];
        assert!((median - 140.0).abs() < 1.0);
        assert!((d.protection[(d.protection.len() as f64 * 0.8413) as usize] - 160.0).abs() < 1.5);
        assert_eq!(d.cycle_mean, 70.0);
        assert!(!d.extrapolated, "R + L never passes 28 days here");
    }
}
