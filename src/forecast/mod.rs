//! Forecasting methods as plain functions over one series. Stage kinds (and later `restock
//! evaluate`) call these; they know nothing about Arrow, stages or storage.
pub mod seasonal_naive;

pub use seasonal_naive::seasonal_naive;

/// A probabilistic forecast of one series: a point path and one path per quantile level.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileForecast {
    pub point: Vec<f64>,
    /// `quantiles[k][h]`: level `levels[k]` at step `h`.
    pub quantiles: Vec<Vec<f64>>,
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

/// Column name for a quantile level: 0.1 -> `p10`, 0.975 -> `p97_5`.
pub fn quantile_column(level: f64) -> String {
    let pct = level * 100.0;
    let s = format!("{pct:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", s.replace('.', "_"))
}
