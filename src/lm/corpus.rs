//! Synthetic pretraining series, so the model forecasts series it has never seen at any
//! frequency: KernelSynth-style Gaussian-process draws (random sums and products of linear, RBF
//! and periodic kernels with daily/weekly/monthly/quarterly/yearly periods), random walks with
//! trend changes, steady linear or exponential trends, and intermittent counts (Bernoulli
//! occurrence × negative-binomial sizes, the Croston family), and exponential-smoothing
//! state-space simulations (level, damped trend, additive or multiplicative season and error:
//! the structure of most business series; a third of their seasons sharp — sawtooths that
//! reset, peak steps, blocks — not smooth harmonics), and
//! unit counts around any of those curves (negative binomial, as item-level sales are);
//! TSMixup mixes one to three of them with random weights; some change regime part-way (a
//! product launch: nothing before it; or a lasting shift of level); some demand series are a
//! launched product's from its launch, with a life cycle (a peak that fades, a build-up, steady)
//! that `describe` puts into words. Every series has a frequency, and its season length is what
//! the model's seasonal-lag input uses, as at forecast time. For a model with covariate slots,
//! half the series also have known covariates (event flags, runs, weekday-like phases, prices)
//! with random effects, which the model learns to read in context.
use rand::Rng;
use rand_distr::{Distribution, Gamma, Normal, Poisson, StandardNormal};

use super::describe::LifeCycle;
use super::tokens::{CovariateColumn, covariate_features};

/// A sampling frequency: its season length (what a user passes as `season_length`) and the
/// periods its cycles have.
#[derive(Debug, Clone, Copy)]
pub struct Frequency {
    pub season: usize,
    pub periods: &'static [f64],
    /// How often pretraining draws it.
    weight: f64,
}

/// Hourly, daily, weekly, monthly, quarterly and yearly (no season) data.
pub const FREQUENCIES: [Frequency; 6] = [
    Frequency { season: 24, periods: &[24.0, 168.0], weight: 0.08 },
    Frequency { season: 7, periods: &[7.0, 365.25, 30.44], weight: 0.32 },
    Frequency { season: 52, periods: &[52.18, 4.35], weight: 0.12 },
    Frequency { season: 12, periods: &[12.0, 6.0], weight: 0.28 },
    Frequency { season: 4, periods: &[4.0], weight: 0.12 },
    Frequency { season: 1, periods: &[], weight: 0.08 },
];

impl Frequency {
    fn random(rng: &mut impl Rng) -> Frequency {
        let mut u = rng.random_range(0.0..FREQUENCIES.iter().map(|f| f.weight).sum::<f64>());
        for f in FREQUENCIES {
            if u < f.weight {
                return f;
            }
            u -= f.weight;
        }
        FREQUENCIES[FREQUENCIES.len() - 1]
    }
}

#[derive(Debug, Clone, Copy)]
enum Kernel {
    Linear(f64),
    Rbf(f64),
    Periodic { period: f64, length: f64 },
    White(f64),
}

impl Kernel {
    fn random(len: usize, periods: &[f64], rng: &mut impl Rng) -> Kernel {
        match rng.random_range(0..5) {
            0 => Kernel::Linear(rng.random_range(0.0..1.0)),
            1 => Kernel::Rbf(rng.random_range(0.05..1.0) * len as f64),
            2 | 3 if !periods.is_empty() => {
                Kernel::Periodic { period: periods[rng.random_range(0..periods.len())], length: rng.random_range(0.5..3.0) }
            }
            _ => Kernel::White(rng.random_range(0.01..0.3)),
        }
    }

    fn k(&self, a: f64, b: f64, len: f64) -> f64 {
        match *self {
            Kernel::Linear(c) => (a / len - c) * (b / len - c),
            Kernel::Rbf(l) => (-(a - b).powi(2) / (2.0 * l * l)).exp(),
            Kernel::Periodic { period, length } => {
                (-2.0 * (std::f64::consts::PI * (a - b).abs() / period).sin().powi(2) / (length * length)).exp()
            }
            Kernel::White(s) => {
                if a == b {
                    s
                } else {
                    0.0
                }
            }
        }
    }
}

/// One GP draw from a random composite kernel (Cholesky of the covariance; series up to a few
/// hundred points, longer ones are generated at lower resolution and interpolated).
pub fn kernel_synth(len: usize, periods: &[f64], rng: &mut impl Rng) -> Vec<f64> {
    let n = len.min(256);
    let mut kernels = vec![Kernel::random(len, periods, rng)];
    let mut products = vec![false];
    for _ in 0..rng.random_range(0..4) {
        kernels.push(Kernel::random(len, periods, rng));
        products.push(rng.random_bool(0.5));
    }
    let stretch = len as f64 / n as f64;
    let cov = |i: usize, j: usize| {
        let (a, b) = (i as f64 * stretch, j as f64 * stretch);
        kernels
            .iter()
            .zip(&products)
            .fold(0.0, |acc, (k, prod)| if *prod { acc * k.k(a, b, len as f64) } else { acc + k.k(a, b, len as f64) })
    };
    let l = cholesky(n, |i, j| cov(i, j) + if i == j { 1e-6 } else { 0.0 });
    let z: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    let coarse: Vec<f64> = (0..n).map(|i| (0..=i).map(|j| l[i * n + j] * z[j]).sum()).collect();
    (0..len).map(|t| interpolate(&coarse, t as f64 / stretch)).collect()
}

fn cholesky(n: usize, a: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            l[i * n + j] = if i == j { (a(i, i) - s).max(1e-12).sqrt() } else { (a(i, j) - s) / l[j * n + j] };
        }
    }
    l
}

fn interpolate(v: &[f64], x: f64) -> f64 {
    let i = (x.floor() as usize).min(v.len() - 1);
    let j = (i + 1).min(v.len() - 1);
    v[i] + (x - i as f64) * (v[j] - v[i])
}

/// A random walk whose drift changes at random points.
pub fn trend_walk(len: usize, rng: &mut impl Rng) -> Vec<f64> {
    let (mut level, mut drift) = (0.0, rng.random_range(-0.05..0.05));
    let noise = Normal::new(0.0, rng.random_range(0.01..0.2)).expect("valid");
    (0..len)
        .map(|_| {
            if rng.random_bool(0.01) {
                drift = rng.random_range(-0.05..0.05);
            }
            level += drift + noise.sample(rng);
            level
        })
        .collect()
}

/// Intermittent non-negative counts: demand occurs with probability p, its size is
/// 1 + negative binomial (a gamma–Poisson mixture).
pub fn intermittent(len: usize, rng: &mut impl Rng) -> Vec<f64> {
    let p = rng.random_range(0.05..0.9);
    let mean = rng.random_range(0.5..20.0);
    let shape = rng.random_range(0.5..5.0);
    (0..len).map(|_| if rng.random_bool(p) { 1.0 + gamma_poisson(mean, shape, rng) } else { 0.0 }).collect()
}

/// One negative-binomial count: Poisson at a gamma-distributed rate of this mean and shape
/// (the smaller the shape, the more overdispersed).
fn gamma_poisson(mean: f64, shape: f64, rng: &mut impl Rng) -> f64 {
    let lambda: f64 = Gamma::new(shape, mean / shape).expect("valid").sample(rng);
    Poisson::new(lambda.max(1e-9)).map_or(0.0, |d| d.sample(rng))
}

/// A random seasonal profile of length m (mean 0): a few harmonics plus noise, so profiles are
/// smooth or jagged like real ones.
fn seasonal_profile(m: usize, rng: &mut impl Rng) -> Vec<f64> {
    let harmonics: Vec<(f64, f64)> = (1..=rng.random_range(1..=3usize))
        .map(|k| (rng.random_range(0.0..1.0) / k as f64, rng.random_range(0.0..std::f64::consts::TAU)))
        .collect();
    let jag = rng.random_range(0.0..0.5);
    let raw: Vec<f64> = (0..m)
        .map(|i| {
            let x = std::f64::consts::TAU * i as f64 / m as f64;
            let h: f64 = harmonics.iter().enumerate().map(|(k, (a, ph))| a * ((k + 1) as f64 * x + ph).cos()).sum();
            h + jag * Distribution::<f64>::sample(&StandardNormal, rng) * 0.3
        })
        .collect();
    let mean = raw.iter().sum::<f64>() / m as f64;
    raw.iter().map(|v| v - mean).collect()
}

/// A sharp seasonal shape at a random phase, mean 0 and range 2: a sawtooth (a quantity that
/// builds through the season and resets at a fixed point, as yearly allowances, budgets and
/// subscriptions do), one or two peak steps (a holiday month, a weekly market day), or a block
/// of on-season; one in five is flipped (a sawtooth that runs down, a dip, a closure). Shapes
/// seasonal naive repeats exactly and a smooth profile rounds off before the turn.
fn shaped_profile(m: usize, rng: &mut impl Rng) -> Vec<f64> {
    let phase = rng.random_range(0..m);
    let raw: Vec<f64> = match rng.random_range(0..3) {
        0 => {
            let climb = rng.random_range(m / 2..=m);
            (0..m).map(|i| ((i + phase) % m).min(climb - 1) as f64).collect()
        }
        1 => {
            let peaks = [phase, (phase + rng.random_range(1..m)) % m];
            let second = rng.random_bool(0.3);
            (0..m).map(|i| f64::from(i == peaks[0] || (second && i == peaks[1]))).collect()
        }
        _ => {
            let run = rng.random_range(2..=m / 2);
            (0..m).map(|i| f64::from((i + m - phase) % m < run)).collect()
        }
    };
    let sign = if rng.random_bool(0.2) { -1.0 } else { 1.0 };
    let (lo, hi) = raw.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let mean = raw.iter().sum::<f64>() / m as f64;
    raw.iter().map(|v| sign * 2.0 * (v - mean) / (hi - lo) + 0.02 * Distribution::<f64>::sample(&StandardNormal, rng)).collect()
}

/// A steady trend that lasts: linear or exponential growth (three in four) or decline, of 0.05 %
/// to 5 % of the start a step (log-uniform; an exponential one at most ×20 over the series, a
/// linear decline never below a tenth), with multiplicative noise from nearly none to 8 % and,
/// half the time, a multiplicative season. The shape of most yearly and quarterly business
/// series, which a walk whose drift changes and a damped trend do not teach the model to carry
/// on: without it, the model's forecast of a clean trend bent flat within a few steps.
pub fn trend_line(len: usize, season: usize, rng: &mut impl Rng) -> Vec<f64> {
    let slope = rng.random_range(0.0005f64.ln()..0.05f64.ln()).exp();
    let sign = if rng.random_bool(0.75) { 1.0 } else { -1.0 };
    let span = len.max(2) as f64;
    let exponential = rng.random_bool(0.5);
    let rate = slope.ln_1p().min(20f64.ln() / span);
    let slope = if sign > 0.0 { slope } else { slope.min(0.9 / span) };
    let curve = |t: f64| if exponential { (sign * rate * t).exp() } else { 1.0 + sign * slope * t };
    let sigma = rng.random_range(0.001f64.ln()..0.08f64.ln()).exp();
    let m = season.max(1);
    let amp = if m > 1 && rng.random_bool(0.5) { rng.random_range(0.05..0.5) } else { 0.0 };
    let profile = seasonal_profile(m, rng);
    (0..len)
        .map(|t| {
            let e: f64 = Distribution::<f64>::sample(&StandardNormal, rng);
            curve(t as f64) * (1.0 + amp * profile[t % m]) * (1.0 + sigma * e)
        })
        .collect()
}

/// An exponential-smoothing state-space path (Hyndman et al.): level, optionally damped trend,
/// additive or multiplicative season of length `season`, additive or multiplicative error.
pub fn ets_like(len: usize, season: usize, rng: &mut impl Rng) -> Vec<f64> {
    let alpha = rng.random_range(0.02..0.6);
    let beta = if rng.random_bool(0.6) { rng.random_range(0.0..0.2) * alpha } else { 0.0 };
    let phi = if rng.random_bool(0.5) { rng.random_range(0.8..0.98) } else { 1.0 };
    let gamma = rng.random_range(0.0..0.3) * (1.0 - alpha);
    let seasonal = season > 1 && rng.random_bool(0.8);
    let multiplicative = rng.random_bool(0.5);
    let sigma = rng.random_range(0.005..0.15);
    let (mut level, mut trend) = (1.0, if beta > 0.0 || rng.random_bool(0.3) { rng.random_range(-0.01..0.02) } else { 0.0 });
    let amp = rng.random_range(0.05..0.6);
    let mut s: Vec<f64> = match seasonal {
        false => vec![0.0; season],
        // A third of the seasons (m ≥ 4) are sharp shapes, which may swing further: a trough
        // down to 5 % of the level.
        true if season >= 4 && rng.random_bool(0.35) => {
            let p = shaped_profile(season, rng);
            let lowest = p.iter().copied().fold(f64::INFINITY, f64::min).abs();
            let amp = rng.random_range(0.05..0.95) / lowest.max(0.5);
            p.iter().map(|v| v * amp).collect()
        }
        true => seasonal_profile(season, rng).iter().map(|v| v * amp).collect(),
    };
    (0..len)
        .map(|t| {
            let i = t % season;
            let e: f64 = sigma * Distribution::<f64>::sample(&StandardNormal, rng);
            let base = level + phi * trend;
            let (y, err) = if multiplicative { (base * (1.0 + s[i]) * (1.0 + e), base * e) } else { (base + s[i] * level.abs() + e, e) };
            level = base + alpha * err;
            trend = phi * trend + beta * err;
            s[i] += gamma * e;
            y
        })
        .collect()
}

/// One pretraining series and its season length: a TSMixup of 1–3 generated series of one
/// frequency, each mean-scaled, mixed with Dirichlet-like weights; sometimes lifted by a level
/// (small relative variation, like most aggregate sales); demand-like (non-negative) half the
/// time, and of those 40 % as item-level unit counts around the curve ([`counts`]).
pub fn series(len: usize, rng: &mut impl Rng) -> (Vec<f64>, usize) {
    let s = with_covariates(len, 0, rng);
    (s.values, s.season)
}

/// A pretraining series with known covariates in a model's `slots` covariate inputs.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub values: Vec<f64>,
    pub season: usize,
    /// Row-major [values.len() × slots]: the features `tokens::covariate_features` would make
    /// (flags 0/1, levels as log ratios to their median); zero in unused slots.
    pub covariates: Vec<f32>,
    /// A launched product's life cycle: the series starts at its launch and follows it.
    pub life: Option<LifeCycle>,
}

/// [`series`] where half the series (when `slots` > 0) also have one to `slots` known
/// covariates, each in a random slot, that act on the series ([`Covariate`]): so a pretrained
/// model reads a promotion flag, a weekend or a price from the start, estimating its effect
/// from the context in which it is seen, instead of a fine-tune learning it from nothing.
pub fn with_covariates(len: usize, slots: usize, rng: &mut impl Rng) -> Synthetic {
    let freq = Frequency::random(rng);
    let k = rng.random_range(1..=3);
    let weights: Vec<f64> = (0..k).map(|_| -rng.random_range(1e-9f64..1.0).ln()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0; len];
    for w in weights {
        let s = match rng.random_range(0..6) {
            0 => kernel_synth(len, freq.periods, rng),
            1 => trend_walk(len, rng),
            2 => intermittent(len, rng),
            3 => trend_line(len, freq.season, rng),
            _ => ets_like(len, freq.season, rng),
        };
        let scale = s.iter().map(|v| v.abs()).sum::<f64>() / len as f64;
        let scale = if scale > 0.0 { scale } else { 1.0 };
        out.iter_mut().zip(&s).for_each(|(o, v)| *o += w / total * v / scale);
    }
    if rng.random_bool(0.25) {
        let lift = rng.random_range(0.0f64..3.0).exp();
        out.iter_mut().for_each(|v| *v += lift);
    }
    let demand = rng.random_bool(0.5);
    if demand {
        let min = out.iter().copied().fold(f64::INFINITY, f64::min);
        out.iter_mut().for_each(|v| *v = (*v - min.min(0.0)).max(0.0));
    }
    let mut covariates = vec![0.0f32; len * slots];
    if slots > 0 && rng.random_bool(0.5) {
        let mut free: Vec<usize> = (0..slots).collect();
        for _ in 0..rng.random_range(1..=slots) {
            let slot = free.swap_remove(rng.random_range(0..free.len()));
            let c = Covariate::random(len, freq.season, rng);
            c.apply(&mut out, demand);
            c.feature.iter().enumerate().for_each(|(t, f)| covariates[t * slots + slot] = *f as f32);
        }
    }
    // A launched product (demand only): the series starts at launch and follows a life cycle
    // its text may state (`describe`); else, sometimes, a change of regime part-way.
    let life = (demand && rng.random_bool(0.4)).then(|| LifeCycle::random(rng));
    match life {
        Some(l) => out.iter_mut().enumerate().for_each(|(t, v)| *v *= l.factor(t as f64)),
        None if rng.random_bool(0.12) => regime_change(&mut out, demand, rng),
        None => {}
    }
    if demand && rng.random_bool(0.4) {
        out = counts(&out, rng);
    }
    Synthetic { values: out, season: freq.season, covariates, life }
}

/// A known covariate of a synthetic series: its model input at each step and what one unit of
/// it does to the series.
#[derive(Debug, Clone)]
pub struct Covariate {
    /// Flags are 0/1; a level (a price) is its log ratio to its median, as
    /// `tokens::covariate_features` makes them from a table.
    pub feature: Vec<f64>,
    /// Per unit of the feature: a log-multiplier of demand-like series, a shift in units of its
    /// spread for others. Zero in some series: a covariate can also do nothing.
    pub effect: f64,
}

impl Covariate {
    /// A random covariate: sparse events (promotions), runs of days (campaigns, closures), a
    /// fixed set of phases of the season (weekends, month ends), or a price that changes now
    /// and then (its effect an elasticity, mostly negative).
    pub fn random(len: usize, season: usize, rng: &mut impl Rng) -> Covariate {
        let kind = rng.random_range(0..4);
        let feature: Vec<f64> = match kind {
            0 => {
                let p = rng.random_range(0.02..0.25);
                (0..len).map(|_| f64::from(u8::from(rng.random_bool(p)))).collect()
            }
            1 => {
                let (p, most) = (rng.random_range(0.01..0.08), rng.random_range(2..=14usize));
                let mut left = 0usize;
                (0..len)
                    .map(|_| {
                        if left == 0 && rng.random_bool(p) {
                            left = rng.random_range(1..=most);
                        }
                        let on = left > 0;
                        left = left.saturating_sub(1);
                        f64::from(u8::from(on))
                    })
                    .collect()
            }
            2 if season > 1 => {
                let phases: Vec<usize> = (0..rng.random_range(1..=(season / 3).max(1))).map(|_| rng.random_range(0..season)).collect();
                (0..len).map(|t| f64::from(u8::from(phases.contains(&(t % season))))).collect()
            }
            _ => return Self::price(len, rng),
        };
        let size = if rng.random_bool(0.75) { rng.random_range(0.1..1.5) } else { -rng.random_range(0.1..1.5) };
        Covariate { feature, effect: if rng.random_bool(0.15) { 0.0 } else { size } }
    }

    /// A price: steady, with changes (a discount, a new list price) at random steps; its
    /// feature is the log ratio to its median, its effect an elasticity.
    fn price(len: usize, rng: &mut impl Rng) -> Covariate {
        let change = rng.random_range(0.005..0.1);
        let mut log_price = 0.0;
        let path: Vec<f64> = (0..len)
            .map(|_| {
                if rng.random_bool(change) {
                    log_price = if rng.random_bool(0.4) { 0.0 } else { rng.random_range(-0.5..0.3) };
                }
                log_price
            })
            .collect();
        let effect = if rng.random_bool(0.15) { 0.0 } else { rng.random_range(-3.0..0.5) };
        // The feature a table's price column gives: ln(price / its median), clamped.
        let price: Vec<f64> = path.iter().map(|p| p.exp()).collect();
        let feature = covariate_features(&[CovariateColumn { flag: false, values: &price }]);
        Covariate { feature: feature.into_iter().map(f64::from).collect(), effect }
    }

    /// Act on `out`: multiply a demand-like (non-negative) series by e^(effect·feature), shift
    /// another by effect·feature times its spread (mean absolute deviation).
    pub fn apply(&self, out: &mut [f64], demand: bool) {
        let n = out.len().max(1) as f64;
        let mean = out.iter().sum::<f64>() / n;
        let spread = out.iter().map(|v| (v - mean).abs()).sum::<f64>() / n;
        for (v, f) in out.iter_mut().zip(&self.feature) {
            if demand {
                *v *= (self.effect * f).clamp(-4.0, 4.0).exp();
            } else {
                *v += self.effect * f * spread.max(1e-3);
            }
        }
    }
}

/// A change of regime at a random point, most often in the later part of the series, which
/// then lasts: for demand, a launch (nothing before it) half the time, else the earlier part
/// scaled by a factor from e^-2.5 to e^2.5; for other series, the earlier part shifted by up to
/// three times the series' scale. A forecaster must follow a new level once it has lasted, not
/// pull back to the series' long-run mean.
pub fn regime_change(out: &mut [f64], demand: bool, rng: &mut impl Rng) {
    let at = (rng.random_range(0.3..0.97) * out.len() as f64) as usize;
    let before = &mut out[..at];
    if demand {
        let factor = if rng.random_bool(0.5) { 0.0 } else { rng.random_range(-2.5f64..2.5).exp() };
        before.iter_mut().for_each(|v| *v *= factor);
    } else {
        let scale = before.iter().map(|v| v.abs()).sum::<f64>() / before.len().max(1) as f64;
        let shift = rng.random_range(-3.0..3.0) * scale.max(1e-3);
        before.iter_mut().for_each(|v| *v += shift);
    }
}

/// Unit sales of one item: counts drawn around a non-negative rate curve (its shape kept, its
/// mean set to a random level from 0.05 to 50 a step), gamma–Poisson (negative binomial) with a
/// random dispersion, sometimes with extra zeros (days without stock or listing). Most
/// item-level retail series look like this, not like the smooth curve under them.
pub fn counts(rate: &[f64], rng: &mut impl Rng) -> Vec<f64> {
    let mean = rate.iter().sum::<f64>() / rate.len().max(1) as f64;
    let level = rng.random_range(0.05f64.ln()..50f64.ln()).exp() / if mean > 0.0 { mean } else { 1.0 };
    let shape = rng.random_range(0.3f64.ln()..50f64.ln()).exp();
    let zeros = if rng.random_bool(0.3) { rng.random_range(0.0..0.4) } else { 0.0 };
    rate.iter()
        .map(|r| {
            let lambda = r * level;
            if lambda <= 0.0 || rng.random_bool(zeros) { 0.0 } else { gamma_poisson(lambda, shape, rng) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_series_are_finite_varied_and_reproducible() {
        let mut rng = crate::forecast::rng();
        let all: Vec<Vec<f64>> = (0..50).map(|i| series(100 + 10 * i, &mut rng).0).collect();
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.len(), 100 + 10 * i);
            assert!(s.iter().all(|v| v.is_finite()), "series {i}");
        }
        let sparse = all.iter().filter(|s| s.iter().filter(|v| **v == 0.0).count() * 3 > s.len()).count();
        assert!(sparse > 0 && sparse < 50, "some but not all series are intermittent: {sparse}");
        let seasons: std::collections::BTreeSet<usize> = (0..60).map(|_| series(50, &mut rng).1).collect();
        assert!(seasons.len() >= 4 && seasons.iter().all(|m| FREQUENCIES.iter().any(|f| f.season == *m)), "{seasons:?}");
        let e = ets_like(200, 12, &mut rng);
        assert!(e.iter().all(|v| v.is_finite()) && e.iter().any(|v| (v - e[0]).abs() > 1e-9));
        let rate: Vec<f64> = (0..2000).map(|t| 1.0 + (t % 7) as f64).collect();
        let c = counts(&rate, &mut rng);
        assert!(c.iter().all(|v| *v >= 0.0 && v.fract() == 0.0), "counts are whole and non-negative");
        let by_day = |d: usize| c.iter().skip(d).step_by(7).sum::<f64>();
        assert!(by_day(6) > by_day(0), "the counts follow the rate's shape: {} vs {}", by_day(6), by_day(0));
        let mut launch = vec![5.0; 1000];
        regime_change(&mut launch, true, &mut rng);
        let changed = launch.iter().position(|v| *v == 5.0).unwrap();
        assert!(
            (300..970).contains(&changed) && launch[changed..].iter().all(|v| *v == 5.0),
            "a change at {changed}, then the new regime lasts"
        );
        assert!(launch[..changed].iter().all(|v| *v == launch[0] && *v >= 0.0), "one earlier regime, non-negative for demand");
        let mut again = crate::forecast::rng();
        assert_eq!(series(100, &mut again).0, all[0]);
        let with: Vec<Synthetic> = (0..200).map(|_| with_covariates(120, 3, &mut again)).collect();
        assert!(with.iter().all(|s| s.covariates.len() == 120 * 3 && s.covariates.iter().all(|f| f.is_finite())));
        let used = with.iter().filter(|s| s.covariates.iter().any(|f| *f != 0.0)).count();
        assert!((60..140).contains(&used), "about half the series have covariates: {used}");
        let slot_used = |j: usize| with.iter().any(|s| s.covariates.iter().skip(j).step_by(3).any(|f| *f != 0.0));
        assert!((0..3).all(slot_used), "every slot is used");
        let p = kernel_synth(300, &[7.0], &mut again);
        assert!(p.iter().any(|v| (v - p[0]).abs() > 1e-6), "a GP draw varies");
    }

    /// A trend line keeps its direction over the whole series: the last quarter's mean is
    /// beyond the first quarter's in the trend's direction, growth mostly, declines too, and it
    /// stays positive.
    #[test]
    fn trend_lines_carry_on_up_or_down() {
        let mut rng = crate::forecast::rng();
        let quarter = |v: &[f64], q: usize| v[q * 64..(q + 1) * 64].iter().sum::<f64>() / 64.0;
        let (mut up, mut down) = (0, 0);
        for i in 0..200 {
            let v = trend_line(256, [1, 4, 12][i % 3], &mut rng);
            assert!(v.len() == 256 && v.iter().all(|x| x.is_finite() && *x > 0.0), "{v:?}");
            let (first, last) = (quarter(&v, 0), quarter(&v, 3));
            let mid = (quarter(&v, 1), quarter(&v, 2));
            match last > first {
                true if mid.0 <= mid.1 * 1.05 => up += 1,
                false if mid.0 * 1.05 >= mid.1 => down += 1,
                _ => panic!("a trend that turns: {first} {mid:?} {last}"),
            }
        }
        assert!((120..180).contains(&up) && down > 20, "three in four grow: {up} up, {down} down");
    }

    /// A sharp season has mean 0 and range 2 at any phase, and comes in its three kinds: a
    /// sawtooth (one drop a season), a peak and a block (a rise and a fall, or a fall and a rise).
    #[test]
    fn sharp_seasons_are_sawtooths_peaks_and_blocks() {
        let mut rng = crate::forecast::rng();
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let p = shaped_profile(12, &mut rng);
            let mean = p.iter().sum::<f64>() / 12.0;
            let (lo, hi) = p.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
            assert!(mean.abs() < 0.05 && (1.8..2.2).contains(&(hi - lo)), "{p:?}");
            let jumps = (0..12).map(|i| p[(i + 1) % 12] - p[i]).filter(|d| d.abs() > 0.5).count();
            let distinct = p.iter().filter(|v| (**v - lo).abs() > 0.1 && (**v - hi).abs() > 0.1).count();
            assert!(distinct < 3 || jumps == 1, "a sawtooth climbs in small steps and drops once: {p:?}");
            kinds.insert(if distinct >= 3 {
                "sawtooth"
            } else if jumps == 2 {
                "peak or block"
            } else {
                "two peaks"
            });
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    /// A covariate does what its effect says: a flag with effect ln 2 doubles a demand-like
    /// series where it is on, and shifts another by its effect times the spread.
    #[test]
    fn a_covariate_acts_on_the_series_where_it_is_on() {
        let c = Covariate { feature: vec![0.0, 1.0, 0.0, 1.0], effect: 2f64.ln() };
        let mut demand = vec![3.0; 4];
        c.apply(&mut demand, true);
        assert!(demand.iter().zip([3.0, 6.0, 3.0, 6.0]).all(|(a, b)| (a - b).abs() < 1e-9), "{demand:?}");
        let mut other = vec![-1.0, 1.0, -1.0, 1.0];
        Covariate { effect: 0.5, ..c }.apply(&mut other, false);
        assert_eq!(other, vec![-1.0, 1.5, -1.0, 1.5], "spread 1: +0.5 where on");
        let mut rng = crate::forecast::rng();
        for _ in 0..100 {
            let c = Covariate::random(60, 7, &mut rng);
            assert!(c.feature.iter().all(|f| f.is_finite() && f.abs() <= 4.0) && c.effect.abs() <= 3.0);
        }
    }
}
