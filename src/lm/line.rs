//! A straight line taken out of a forecast's context. Mean-scaled value tokens read a clean
//! trend poorly (a 1 % step is about one of the 0.0073-wide bins, and the model pulls a forecast
//! back towards the scaled level), so where a least-squares line describes a context to within
//! a small share of its level, the model reads what the line leaves — at that residual's own
//! scale — and the line carries the trend: its continuation is added back to the forecast, with
//! the line's own error (a regression's prediction interval) on the quantiles and paths.
//! A context with values below zero, which the model never saw in pretraining, is shifted up
//! instead ([`lift`]), and the shift taken off its forecast.
use rand::Rng;
use rand_distr::StandardNormal;

use super::sample::Sampled;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// The line's value at the context's last position.
    pub end: f64,
    pub slope: f64,
    /// The residuals' standard deviation (n − 2 degrees of freedom).
    pub spread: f64,
    /// Observed values it was fitted to.
    pub n: f64,
    /// Their mean position, in steps after the context's last one (≤ 0).
    pub centre: f64,
    /// Σ (t − mean t)² over them.
    pub sxx: f64,
}

impl Line {
    /// Fewest observed values a line is fitted to.
    pub const MIN_POINTS: usize = 6;

    /// The line through `values` (NaN = missing) when its residuals' mean |r| is at most
    /// `most` × the values' mean |x| (and `most` > 0, and enough values are observed).
    pub fn fit(values: &[f64], most: f64) -> Option<Line> {
        let last = values.len() as f64 - 1.0;
        let points: Vec<(f64, f64)> =
            values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(t, v)| (t as f64 - last, *v)).collect();
        if most <= 0.0 || points.len() < Self::MIN_POINTS {
            return None;
        }
        let n = points.len() as f64;
        let (centre, mean) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - centre).powi(2)).sum();
        let slope = points.iter().map(|p| (p.0 - centre) * (p.1 - mean)).sum::<f64>() / sxx;
        let mut line = Line { end: mean - slope * centre, slope, spread: 0.0, n, centre, sxx };
        let residuals: Vec<f64> = points.iter().map(|&(t, v)| v - line.at(t)).collect();
        line.spread = (residuals.iter().map(|r| r * r).sum::<f64>() / (n - 2.0)).sqrt();
        let residual = residuals.iter().map(|r| r.abs()).sum::<f64>() / n;
        let level = points.iter().map(|p| p.1.abs()).sum::<f64>() / n;
        (level > 0.0 && residual <= most * level).then_some(line)
    }

    /// The line `steps` after the context's last position (negative: inside the context).
    pub fn at(&self, steps: f64) -> f64 {
        self.end + self.slope * steps
    }

    /// Each value less the line (missing values stay missing).
    pub fn residuals(&self, values: &[f64]) -> Vec<f64> {
        let last = values.len() as f64 - 1.0;
        values.iter().enumerate().map(|(t, v)| v - self.at(t as f64 - last)).collect()
    }

    /// How much wider a forecast's spread around its mean is `steps` ahead once the line's own
    /// error is added to the residuals' noise: √(1 + 1/n + (x − x̄)²/Sxx), the regression's
    /// prediction-interval factor (exact where both are normal).
    pub fn widening(&self, steps: f64) -> f64 {
        (1.0 + 1.0 / self.n + (steps - self.centre).powi(2) / self.sxx).sqrt()
    }

    /// Puts the line's continuation back on a forecast of the residuals, step by step: the mean
    /// moves with it, the quantiles also spread by [`Line::widening`], and each path gets a line
    /// drawn from the fit's error (intercept and slope, independent at the mean position), so a
    /// path's error runs on across its steps as a wrong slope does.
    pub fn restore(&self, s: &mut Sampled, rng: &mut impl Rng) {
        let f = &mut s.forecast;
        for (h, point) in f.point.iter_mut().enumerate() {
            let x = (h + 1) as f64;
            let (centre, widen, at) = (*point, self.widening(x), self.at(x));
            f.quantiles.iter_mut().for_each(|q| q[h] = at + centre + (q[h] - centre) * widen);
            *point += at;
        }
        for path in &mut s.paths {
            let (a, b): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
            for (h, v) in path.iter_mut().enumerate() {
                let x = (h + 1) as f64;
                *v += self.at(x) + self.spread * (a / self.n.sqrt() + b * (x - self.centre) / self.sxx.sqrt());
            }
        }
    }
}

/// What a context has taken out before the model reads it, put back on the forecast after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Taken {
    /// A straight line ([`Line`]).
    Line(Line),
    /// A constant subtracted from a context with values below zero ([`lift`]).
    Shift(f64),
}

impl Taken {
    /// The line through `values` when it describes them within `detrend` ([`Line::fit`]),
    /// else (when `lifts`) the shift that lifts values below zero ([`lift`]), else nothing.
    pub fn of(values: &[f64], detrend: f64, lifts: bool) -> Option<Taken> {
        let shift = || lift(values).filter(|_| lifts).map(Taken::Shift);
        Line::fit(values, detrend).map(Taken::Line).or_else(shift)
    }

    /// What the model reads: each value less what is taken out (missing values stay missing).
    pub fn rest(&self, values: &[f64]) -> Vec<f64> {
        match self {
            Taken::Line(line) => line.residuals(values),
            Taken::Shift(c) => values.iter().map(|v| v - c).collect(),
        }
    }

    /// Puts it back on a forecast of the rest: the line's continuation ([`Line::restore`]), or
    /// the shift on the point, every quantile and every path.
    pub fn restore(&self, s: &mut Sampled, rng: &mut impl Rng) {
        match self {
            Taken::Line(line) => line.restore(s, rng),
            Taken::Shift(c) => {
                let f = &mut s.forecast;
                f.point.iter_mut().chain(f.quantiles.iter_mut().flatten()).chain(s.paths.iter_mut().flatten()).for_each(|v| *v += c);
            }
        }
    }
}

/// The shift that shows the model a context with values below zero as the positive series it
/// was pretrained on (demand is never negative, so a value below zero is out of its range and
/// its forecast is pulled towards zero): the smallest value is lifted to one range (max − min)
/// above zero, so the values span [range, 2 × range] and their mean scale puts the swings at
/// about a third of the level, as a seasonal series has (half or twice that range was 2–3 %
/// worse on quarterly series around zero: BENCHMARKS.md, "Values below zero"). None when no
/// value is below zero; a constant below zero is lifted to its own size.
pub fn lift(values: &[f64]) -> Option<f64> {
    let seen = values.iter().copied().filter(|v| v.is_finite());
    let (min, max) = seen.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !(min < 0.0) {
        return None;
    }
    let range = if max > min { max - min } else { -min };
    Some(min - range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::QuantileForecast;

    #[test]
    fn a_line_is_taken_out_only_where_it_describes_the_values() {
        let mut line: Vec<f64> = (0..20).map(|t| 100.0 + 2.0 * t as f64).collect();
        line[3] = f64::NAN;
        let fit = Line::fit(&line, 0.02).expect("a clean line");
        assert!((fit.slope - 2.0).abs() < 1e-9 && (fit.end - 138.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.at(2.0) - 142.0).abs() < 1e-9 && fit.spread < 1e-9 && fit.n == 19.0);
        let r = fit.residuals(&line);
        assert!(r[3].is_nan() && r.iter().filter(|v| v.is_finite()).all(|v| v.abs() < 1e-9), "missing stays missing: {r:?}");
        // A season of ±10 % around the line: the line does not describe it at 0.02, does at 0.2.
        let seasonal: Vec<f64> = (0..48).map(|t| (100.0 + t as f64) * (1.0 + 0.1 * (t as f64 * 0.5).sin())).collect();
        assert_eq!(Line::fit(&seasonal, 0.02), None);
        assert!(Line::fit(&seasonal, 0.2).is_some());
        assert_eq!(Line::fit(&line[..6], 0.02), None, "five observed values are too few");
        assert_eq!(Line::fit(&line, 0.0), None, "0 = never");
        assert_eq!(Line::fit(&[0.0; 12], 0.02), None, "nothing to scale by");
        let counts: Vec<f64> = (0..28).map(|t| [0.0, 3.0, 1.0, 0.0, 7.0][t % 5]).collect();
        assert_eq!(Line::fit(&counts, 0.02), None, "demand counts are the model's to read");
    }

    /// The regression's prediction error: the residual spread (n − 2 degrees of freedom), and
    /// a widening that grows with the distance from the fitted values' centre.
    #[test]
    fn the_lines_own_error_widens_the_forecast_further_out() {
        let wiggle = [0.5, -0.5, 0.0, 0.5, -0.5, 0.0, 0.5, -0.5, 0.0, 0.0];
        let values: Vec<f64> = (0..10).map(|t| 50.0 + t as f64 + wiggle[t]).collect();
        let line = Line::fit(&values, 0.02).unwrap();
        assert!((line.centre + 4.5).abs() < 1e-12 && (line.sxx - 82.5).abs() < 1e-9);
        let rss: f64 = line.residuals(&values).iter().map(|r| r * r).sum();
        assert!((line.spread - (rss / 8.0).sqrt()).abs() < 1e-12 && line.spread > 0.0);
        assert!((line.widening(1.0) - (1.0 + 0.1 + 5.5f64.powi(2) / 82.5).sqrt()).abs() < 1e-12);
        assert!(line.widening(6.0) > line.widening(1.0) && line.widening(1.0) > 1.0);
        // Restored: the mean moves with the line; each quantile's distance from it widens.
        let mut s = Sampled {
            paths: vec![vec![0.0; 3]; 400],
            forecast: QuantileForecast { point: vec![0.1; 3], quantiles: vec![vec![-1.0; 3], vec![1.2; 3]] },
        };
        line.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        for h in 0..3 {
            let (x, at) = ((h + 1) as f64, line.at((h + 1) as f64));
            assert!((s.forecast.point[h] - (at + 0.1)).abs() < 1e-12);
            assert!((s.forecast.quantiles[0][h] - (at + 0.1 - 1.1 * line.widening(x))).abs() < 1e-12);
            assert!((s.forecast.quantiles[1][h] - (at + 0.1 + 1.1 * line.widening(x))).abs() < 1e-12);
        }
        // Each path's error is a line (it runs on across steps), with the fit's variance.
        for p in &s.paths {
            let e: Vec<f64> = (0..3).map(|h| p[h] - line.at((h + 1) as f64)).collect();
            assert!((e[2] - 2.0 * e[1] + e[0]).abs() < 1e-9, "{e:?}");
        }
        let var = s.paths.iter().map(|p| (p[2] - line.at(3.0)).powi(2)).sum::<f64>() / 400.0;
        let expected = line.spread.powi(2) * (line.widening(3.0).powi(2) - 1.0);
        assert!((var / expected - 1.0).abs() < 0.25, "{var} against {expected}");
    }

    #[test]
    fn values_below_zero_are_lifted_to_one_range_above_it() {
        assert_eq!(lift(&[-5.0, f64::NAN, 0.0, 5.0]), Some(-15.0), "missing values are not read");
        assert_eq!(lift(&[-4.0, -4.0]), Some(-8.0), "a constant below zero is lifted to its own size");
        assert_eq!(lift(&[0.0, 3.0, 1.0]), None, "demand is read as it is");
        assert_eq!(lift(&[f64::NAN; 3]), None);
        let values = [-5.0, 0.0, 5.0, -5.0, f64::NAN, 5.0];
        let taken = Taken::of(&values, DETREND_FOR_TESTS, true).expect("values below zero");
        assert_eq!(taken, Taken::Shift(-15.0), "no line describes a saw-tooth");
        let rest = taken.rest(&values);
        assert_eq!(rest.iter().filter(|v| v.is_finite()).copied().collect::<Vec<_>>(), [10.0, 15.0, 20.0, 10.0, 20.0]);
        assert!(rest[4].is_nan());
        assert_eq!(Taken::of(&values, DETREND_FOR_TESTS, false), None, "not lifted when asked not to");
        let clean: Vec<f64> = (0..10).map(|t| -100.0 + t as f64).collect();
        assert!(matches!(Taken::of(&clean, DETREND_FOR_TESTS, true), Some(Taken::Line(_))), "a line is taken before a lift");
        let mut s = Sampled {
            paths: vec![vec![1.0, 2.0]; 3],
            forecast: QuantileForecast { point: vec![12.0, 14.0], quantiles: vec![vec![10.0, 11.0], vec![15.0, 18.0]] },
        };
        taken.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        assert_eq!(s.forecast.point, [-3.0, -1.0]);
        assert_eq!(s.forecast.quantiles, [vec![-5.0, -4.0], vec![0.0, 3.0]]);
        assert!(s.paths.iter().all(|p| p == &[-14.0, -13.0]));
    }

    const DETREND_FOR_TESTS: f64 = crate::lm::forecast::DETREND;
}
