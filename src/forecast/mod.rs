//! Forecasting methods as plain functions over one series. Stage kinds and `restock evaluate`
//! call these; they know nothing about Arrow, stages or storage.
//!
//! Every method returns quantiles, not only a point: the inventory policy needs the spread.
pub mod decompose;
pub mod ensemble;
pub mod ets;
pub mod grid;
pub mod holdout;
pub mod intermittent;
pub mod metrics;
pub mod optim;
pub mod seasonal_naive;
pub mod theta;
pub mod wrmsse;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
pub use seasonal_naive::seasonal_naive;

/// A probabilistic forecast of one series: a point path and one path per quantile level.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantileForecast {
    pub point: Vec<f64>,
    /// `quantiles[k][h]`: level `levels[k]` at step `h`.
    pub quantiles: Vec<Vec<f64>>,
}

/// What every method is asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub horizon: usize,
    /// Season length in steps (7 for daily data with a weekly cycle, 12 for monthly); 1 = none.
    pub season: usize,
    pub levels: &'a [f64],
    /// Demand cannot be negative: clip point and quantiles at zero.
    pub nonnegative: bool,
}

/// The statistical methods. `lm` is not here: it needs a model, so the stage calls `crate::lm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Naive,
    SeasonalNaive,
    Ets,
    Theta,
    Croston,
    Sba,
    Tsb,
}

impl Method {
    pub const ALL: [Method; 7] =
        [Method::Naive, Method::SeasonalNaive, Method::Ets, Method::Theta, Method::Croston, Method::Sba, Method::Tsb];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Naive => "naive",
            Method::SeasonalNaive => "seasonal_naive",
            Method::Ets => "ets",
            Method::Theta => "theta",
            Method::Croston => "croston",
            Method::Sba => "sba",
            Method::Tsb => "tsb",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Forecast one series. `history` may hold NaN for missing observations.
    pub fn forecast(self, history: &[f64], req: &Request) -> Result<QuantileForecast, NoData> {
        if !history.iter().any(|v| v.is_finite()) {
            return Err(NoData);
        }
        let variant = |v| intermittent::forecast(&fill_gaps(history), v, req);
        let f = match self {
            Method::Naive => seasonal_naive(history, 1, req.horizon, req.levels, false),
            Method::SeasonalNaive => seasonal_naive(history, req.season, req.horizon, req.levels, false),
            Method::Ets => ets::auto_ets(&fill_gaps(history), req),
            Method::Theta => theta::auto_theta(&fill_gaps(history), req),
            Method::Croston => variant(intermittent::Variant::Croston),
            Method::Sba => variant(intermittent::Variant::Sba),
            Method::Tsb => variant(intermittent::Variant::Tsb),
        };
        Ok(if req.nonnegative { f.clipped() } else { f })
    }
}

/// Every method name a user may write, for error messages: the statistical [`Method`]s,
/// `ensemble` (pooled over a run's series: [`ensemble`]) and `lm` (the language model, which
/// needs a checkpoint: callers handle both before [`Method::parse`]).
pub fn method_names() -> impl Iterator<Item = &'static str> + Clone {
    Method::ALL.into_iter().map(Method::as_str).chain(["ensemble", "lm"])
}

/// An unknown `method` name's message, listing the known ones.
pub fn unknown_method(name: &str) -> String {
    format!("unknown forecast method `{name}` (methods: {})", method_names().collect::<Vec<_>>().join(", "))
}

/// Members an `ensemble` gets when none are named: the statistical ones (callers add the
/// language model where one is given).
pub const ENSEMBLE_MEMBERS: [Method; 3] = [Method::Ets, Method::Theta, Method::SeasonalNaive];

/// A series without a single observed value: nothing to forecast from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoData;

impl QuantileForecast {
    pub fn clipped(mut self) -> Self {
        self.point.iter_mut().for_each(|v| *v = v.max(0.0));
        self.quantiles.iter_mut().flatten().for_each(|v| *v = v.max(0.0));
        self
    }

    /// Quantiles from simulated paths (`paths[p][h]`), point = the model's own mean path.
    pub fn from_paths(point: Vec<f64>, paths: &[Vec<f64>], levels: &[f64]) -> Self {
        let h = point.len();
        let mut by_step: Vec<Vec<f64>> = (0..h).map(|s| paths.iter().map(|p| p[s]).collect()).collect();
        by_step.iter_mut().for_each(|v| v.sort_by(f64::total_cmp));
        let quantiles = levels.iter().map(|&q| by_step.iter().map(|v| quantile_sorted(v, q)).collect()).collect();
        QuantileForecast { point, quantiles }
    }
}

/// Fixed-seed RNG for simulated intervals: the same series gives the same quantiles every run.
pub fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(0x5eed)
}

/// Paths the ETS and Theta intervals are simulated with.
pub const SIM_PATHS: usize = 400;

/// Leading gaps dropped, inner gaps linearly interpolated, trailing gaps carry the last value:
/// smoothing models need a complete series.
pub fn fill_gaps(history: &[f64]) -> Vec<f64> {
    let first = history.iter().position(|v| v.is_finite()).unwrap_or(history.len());
    let y = &history[first..];
    let mut out = Vec::with_capacity(y.len());
    let mut last: Option<(usize, f64)> = None;
    for (t, v) in y.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        if let Some((lt, lv)) = last {
            for g in lt + 1..t {
                out.push(lv + (v - lv) * (g - lt) as f64 / (t - lt) as f64);
            }
        }
        out.push(*v);
        last = Some((t, *v));
    }
    let lv = last.map_or(0.0, |l| l.1);
    out.resize(y.len(), lv);
    out
}

/// Quantile of sorted data with linear interpolation (Hyndman & Fan type 7, numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn norm_ppf(p: f64) -> f64 {
    const A: [f64; 6] =
        [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.383577518672690e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] =
        [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Column name for a quantile level: 0.1 -> `p10`, 0.975 -> `p97_5`.
pub fn quantile_column(level: f64) -> String {
    let pct = level * 100.0;
    let s = format!("{pct:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", s.replace('.', "_"))
}

/// Box & Jenkins' monthly airline passengers 1949–1960 (thousands): the textbook series the
/// ETS and Theta tests check against statsforecast's reference numbers.
#[cfg(test)]
pub(crate) const AIR_PASSENGERS: [f64; 144] = [
    112.0, 118.0, 132.0, 129.0, 121.0, 135.0, 148.0, 148.0, 136.0, 119.0, 104.0, 118.0, 115.0, 126.0, 141.0, 135.0, 125.0, 149.0, 170.0,
    170.0, 158.0, 133.0, 114.0, 140.0, 145.0, 150.0, 178.0, 163.0, 172.0, 178.0, 199.0, 199.0, 184.0, 162.0, 146.0, 166.0, 171.0, 180.0,
    193.0, 181.0, 183.0, 218.0, 230.0, 242.0, 209.0, 191.0, 172.0, 194.0, 196.0, 196.0, 236.0, 235.0, 229.0, 243.0, 264.0, 272.0, 237.0,
    211.0, 180.0, 201.0, 204.0, 188.0, 235.0, 227.0, 234.0, 264.0, 302.0, 293.0, 259.0, 229.0, 203.0, 229.0, 242.0, 233.0, 267.0, 269.0,
    270.0, 315.0, 364.0, 347.0, 312.0, 274.0, 237.0, 278.0, 284.0, 277.0, 317.0, 313.0, 318.0, 374.0, 413.0, 405.0, 355.0, 306.0, 271.0,
    306.0, 315.0, 301.0, 356.0, 348.0, 355.0, 422.0, 465.0, 467.0, 404.0, 347.0, 305.0, 336.0, 340.0, 318.0, 362.0, 348.0, 363.0, 435.0,
    491.0, 505.0, 404.0, 359.0, 310.0, 337.0, 360.0, 342.0, 406.0, 396.0, 420.0, 472.0, 548.0, 559.0, 463.0, 407.0, 362.0, 405.0, 417.0,
    391.0, 419.0, 461.0, 472.0, 535.0, 622.0, 606.0, 508.0, 461.0, 390.0, 432.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_and_gap_filling() {
        assert!((norm_ppf(0.975) - 1.959963985).abs() < 1e-8);
        assert!((norm_ppf(0.1) + 1.281551566).abs() < 1e-8);
        assert!((norm_ppf(0.001) + 3.090232306).abs() < 1e-7);
        assert_eq!(fill_gaps(&[f64::NAN, 1.0, f64::NAN, 3.0, f64::NAN]), vec![1.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn every_method_handles_short_constant_and_missing_series() {
        let levels = [0.1, 0.5, 0.9];
        let req = Request { horizon: 5, season: 7, levels: &levels, nonnegative: true };
        for m in Method::ALL {
            for y in [vec![3.0], vec![2.0; 30], vec![f64::NAN, 0.0, 0.0, 4.0, 0.0, f64::NAN, 1.0]] {
                let f = m.forecast(&y, &req).unwrap();
                assert_eq!(f.point.len(), 5, "{m:?}");
                for h in 0..5 {
                    assert!(f.point[h].is_finite() && f.point[h] >= 0.0, "{m:?} {y:?}: {:?}", f.point);
                    assert!(f.quantiles[0][h] <= f.quantiles[2][h] + 1e-9, "{m:?} {y:?}: {:?}", f.quantiles);
                }
            }
            assert_eq!(m.forecast(&[f64::NAN, f64::NAN], &req), Err(NoData));
        }
    }
}
