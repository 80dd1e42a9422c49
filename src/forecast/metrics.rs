//! Forecast accuracy: the scaled quantile loss (WQL), MASE and interval coverage that
//! `restock evaluate` reports, as in the Chronos and M-competition papers.

/// The quantile levels WQL is scored on (`restock evaluate`, and the LM's sampled validation).
pub const LEVELS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Pinball loss of quantile level q.
pub fn pinball(y: f64, pred: f64, q: f64) -> f64 {
    if y >= pred { q * (y - pred) } else { (1.0 - q) * (pred - y) }
}

/// Sums to combine over series before dividing, so WQL weights series by their volume.
#[derive(Debug, Default, Clone, Copy)]
pub struct WqlSums {
    /// Σ over points and levels of 2·pinball, averaged over levels.
    pub loss: f64,
    pub abs_y: f64,
}

impl WqlSums {
    /// Add one series' held-out actuals and its quantile paths (`quantiles[k][h]` at `levels[k]`).
    pub fn add(&mut self, actual: &[f64], levels: &[f64], quantiles: &[Vec<f64>]) {
        for (h, y) in actual.iter().enumerate() {
            if !y.is_finite() {
                continue;
            }
            let per_level: f64 = levels.iter().zip(quantiles).map(|(q, path)| 2.0 * pinball(*y, path[h], *q)).sum();
            self.loss += per_level / levels.len() as f64;
            self.abs_y += y.abs();
        }
    }

    pub fn wql(&self) -> f64 {
        if self.abs_y > 0.0 { self.loss / self.abs_y } else { f64::NAN }
    }
}

/// Mean absolute error of the forecast scaled by the in-sample seasonal-naive MAE of the history
/// (lag m). `None` when the history cannot define the scale (too short or constant).
pub fn mase(history: &[f64], actual: &[f64], point: &[f64], m: usize) -> Option<f64> {
    let m = m.max(1);
    let diffs: Vec<f64> = (m..history.len()).map(|t| (history[t] - history[t - m]).abs()).filter(|d| d.is_finite()).collect();
    let scale = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let errs: Vec<f64> = actual.iter().zip(point).map(|(y, p)| (y - p).abs()).filter(|e| e.is_finite()).collect();
    if diffs.is_empty() || scale <= 0.0 || errs.is_empty() {
        return None;
    }
    Some(errs.iter().sum::<f64>() / errs.len() as f64 / scale)
}

/// Share of actuals inside [lo, hi].
pub fn coverage(actual: &[f64], lo: &[f64], hi: &[f64]) -> (usize, usize) {
    let inside = actual.iter().zip(lo.iter().zip(hi)).filter(|(y, (l, h))| y.is_finite() && **y >= **l && **y <= **h).count();
    (inside, actual.iter().filter(|y| y.is_finite()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wql_and_mase_by_hand() {
        let mut s = WqlSums::default();
        // y = 10, q0.5 = 8: 2 * 0.5 * 2 = 2; |y| = 10.
        s.add(&[10.0], &[0.5], &[vec![8.0]]);
        assert!((s.wql() - 0.2).abs() < 1e-12);
        // In-sample naive MAE of [1,2,4] is 1.5; forecast errors 3 → MASE 2.
        assert_eq!(mase(&[1.0, 2.0, 4.0], &[7.0], &[4.0], 1), Some(2.0));
        assert_eq!(coverage(&[1.0, 5.0, f64::NAN], &[0.0, 0.0, 0.0], &[2.0, 2.0, 2.0]), (1, 2));
    }
}
