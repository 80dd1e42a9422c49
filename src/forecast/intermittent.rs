//! Intermittent demand: Croston (1972), its bias-corrected SBA (Syntetos & Boylan 2005) and TSB
//! (Teunter, Syntetos & Babai 2011), with the smoothing constant 0.1 statsforecast defaults to.
//!
//! The point forecast is the method's demand rate. Quantiles come from the distribution each
//! method implies for one period: no demand with probability 1 − p, else a demand size drawn
//! from the series' own non-zero sizes rescaled to the smoothed size. So a low quantile of a
//! sparse series is 0 and a high one is a plausible order size, never a fraction of a unit
//! smeared over every day.
use super::{QuantileForecast, Request, quantile_sorted};

pub const ALPHA: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Croston,
    Sba,
    Tsb,
}

pub fn forecast(y: &[f64], variant: Variant, req: &Request) -> QuantileForecast {
    let mut sizes: Vec<f64> = y.iter().copied().filter(|v| *v != 0.0).collect();
    let (size, prob) = if sizes.is_empty() {
        (0.0, 0.0)
    } else {
        match variant {
            Variant::Croston | Variant::Sba => {
                let intervals = intervals(y);
                (ses(&sizes), (1.0 / ses(&intervals)).min(1.0))
            }
            Variant::Tsb => tsb(y),
        }
    };
    let rate = size * prob * if variant == Variant::Sba { 1.0 - ALPHA / 2.0 } else { 1.0 };
    sizes.sort_by(f64::total_cmp);
    let mean_size = sizes.iter().sum::<f64>() / sizes.len().max(1) as f64;
    let scale = if mean_size != 0.0 && prob > 0.0 { rate / prob / mean_size } else { 0.0 };
    let quantile = |q: f64| {
        if prob <= 0.0 || q <= 1.0 - prob { 0.0 } else { scale * quantile_sorted(&sizes, (q - (1.0 - prob)) / prob) }
    };
    QuantileForecast { point: vec![rate; req.horizon], quantiles: req.levels.iter().map(|&q| vec![quantile(q); req.horizon]).collect() }
}

/// Simple exponential smoothing started at the first value; returns the final level.
fn ses(x: &[f64]) -> f64 {
    x.iter().skip(1).fold(x[0], |level, v| ALPHA * v + (1.0 - ALPHA) * level)
}

/// Periods between successive demands, the first counted from the series start.
fn intervals(y: &[f64]) -> Vec<f64> {
    let mut last = -1i64;
    let mut out = vec![];
    for (t, v) in y.iter().enumerate() {
        if *v != 0.0 {
            out.push((t as i64 - last) as f64);
            last = t as i64;
        }
    }
    out
}

/// TSB: the demand probability is smoothed every period, the size only when demand occurs.
fn tsb(y: &[f64]) -> (f64, f64) {
    let first = y.iter().position(|v| *v != 0.0).expect("has a non-zero demand");
    let mut size = y[first];
    let mut prob = 1.0 / (first as f64 + 1.0);
    for v in &y[first + 1..] {
        let hit = *v != 0.0;
        prob += ALPHA * (f64::from(u8::from(hit)) - prob);
        if hit {
            size += ALPHA * (v - size);
        }
    }
    (size, prob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn croston_sba_tsb_by_hand() {
        // Demands 4 at t=1 and 2 at t=4: sizes [4, 2] -> 3.8; intervals [2, 3] -> 2.1.
        let y = [0.0, 4.0, 0.0, 0.0, 2.0];
        let req = Request { horizon: 2, season: 1, levels: &[0.1, 0.9], nonnegative: true };
        let c = forecast(&y, Variant::Croston, &req);
        assert!((c.point[0] - 3.8 / 2.1).abs() < 1e-12);
        let s = forecast(&y, Variant::Sba, &req);
        assert!((s.point[0] - 0.95 * 3.8 / 2.1).abs() < 1e-12);
        // TSB: p starts 1/2, smoothed on [0, 0, 1] -> 0.45, 0.405, 0.4645; size 4 -> 3.8.
        let t = forecast(&y, Variant::Tsb, &req);
        assert!((t.point[0] - 3.8 * 0.4645).abs() < 1e-12, "{}", t.point[0]);
        assert_eq!(c.quantiles[0][0], 0.0, "10 % of a sparse series is no demand");
        assert!(c.quantiles[1][0] > c.point[0], "90 % is a whole order, above the rate");
    }
}
