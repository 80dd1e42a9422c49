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
use crate::forecast::decompose::Deseasonalised;

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

    /// The drift of `values`, seasonal period `m`: the mean of the differences x_t − x_{t−m}
    /// (both observed), per step, as a line through 0 at the context's last position (so what
    /// it leaves keeps the last level), when the mean's t-statistic (differences taken as
    /// independent) is at least `least` (> 0) and at least [`Line::MIN_POINTS`] differences
    /// are seen. Its error is the slope's alone (the level is the model's to read): the
    /// spread is the differences' deviation / √2, one value's noise where the noise is white.
    pub fn drift(values: &[f64], m: usize, least: f64) -> Option<Line> {
        let d = mean_difference(values, m, least)?;
        // sxx makes the slope's error spread / √sxx = the mean difference's standard error.
        let sxx = d.lag * d.lag * d.count / 2.0;
        Some(Line { end: 0.0, slope: d.per_step, spread: d.sd / std::f64::consts::SQRT_2, n: f64::INFINITY, centre: 0.0, sxx })
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

/// A positive context's growth: the mean of its seasonal log-differences log x_t − log x_{t−m}
/// per step, taken out as a factor e^{−rate·(t − T)} that keeps the last level, and put back
/// as e^{rate·h} — a drift in ratios, which a series growing by a share a step has (a straight
/// line drawn through such a series leaves a bowl the model reads as a level to return to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Per step, in logs.
    pub rate: f64,
    /// The rate's standard error.
    pub se: f64,
    /// One value's noise in logs: the log-differences' deviation / √2.
    pub spread: f64,
}

impl Growth {
    /// The growth of `values` (NaN = missing; every observed value > 0), seasonal period `m`,
    /// when its mean log-difference is at least `least` (> 0) standard errors from zero and at
    /// least [`Line::MIN_POINTS`] differences are seen.
    pub fn fit(values: &[f64], m: usize, least: f64) -> Option<Growth> {
        if values.iter().any(|v| v.is_finite() && *v <= 0.0) {
            return None;
        }
        let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
        let d = mean_difference(&logs, m, least)?;
        Some(Growth { rate: d.per_step, se: d.se, spread: d.sd / std::f64::consts::SQRT_2 })
    }

    /// Each value with the growth since the context's last position taken out.
    pub fn rest(&self, values: &[f64]) -> Vec<f64> {
        let last = values.len() as f64 - 1.0;
        values.iter().enumerate().map(|(t, v)| v * (-self.rate * (t as f64 - last)).exp()).collect()
    }

    /// How much wider a forecast's spread around its mean is `steps` ahead once the rate's
    /// error is added to one value's noise.
    pub fn widening(&self, steps: f64) -> f64 {
        if self.se == 0.0 { 1.0 } else { (1.0 + (steps * self.se / self.spread).powi(2)).sqrt() }
    }

    /// Puts the growth back on a forecast of the rest: step h's mean and quantiles × e^{rate·h},
    /// each quantile's distance from the mean also × [`Growth::widening`], and each path × its
    /// own e^{(rate + se·z)·h} (one z a path, so a wrong rate runs on across its steps).
    pub fn restore(&self, s: &mut Sampled, rng: &mut impl Rng) {
        let f = &mut s.forecast;
        for (h, point) in f.point.iter_mut().enumerate() {
            let x = (h + 1) as f64;
            let (g, widen, centre) = ((self.rate * x).exp(), self.widening(x), *point);
            f.quantiles.iter_mut().for_each(|q| q[h] = (centre + (q[h] - centre) * widen) * g);
            *point *= g;
        }
        for path in &mut s.paths {
            let z: f64 = rng.sample(StandardNormal);
            for (h, v) in path.iter_mut().enumerate() {
                *v *= ((self.rate + self.se * z) * (h + 1) as f64).exp();
            }
        }
    }
}

/// The mean per step of a series' differences at its seasonal lag ([`mean_difference`]).
struct Difference {
    per_step: f64,
    /// The per-step mean's standard error (the differences taken as independent).
    se: f64,
    /// The differences' standard deviation.
    sd: f64,
    /// Differences seen.
    count: f64,
    lag: f64,
}

/// The mean of `values`' differences at lag `m` (both observed), when it is at least `least`
/// (> 0) standard errors from zero (or every difference is the same and not zero) over at
/// least [`Line::MIN_POINTS`] of them.
fn mean_difference(values: &[f64], m: usize, least: f64) -> Option<Difference> {
    let m = m.max(1);
    let d: Vec<f64> = (m..values.len()).map(|t| values[t] - values[t - m]).filter(|v| v.is_finite()).collect();
    if least <= 0.0 || d.len() < Line::MIN_POINTS {
        return None;
    }
    let k = d.len() as f64;
    let mean = d.iter().sum::<f64>() / k;
    let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
    let (lag, se) = (m as f64, sd / k.sqrt());
    (mean != 0.0 && mean.abs() >= least * se).then_some(Difference { per_step: mean / lag, se: se / lag, sd, count: k, lag })
}

/// What a context has taken out before the model reads it, put back on the forecast after: a
/// season ([`Season`]), a trend ([`TrendOut`]), then a lift of what is left above zero ([`lift`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The season, taken out first (`Trend::Season`).
    pub season: Option<Season>,
    pub trend: Option<TrendOut>,
    /// A constant subtracted (after the trend) from a context with values below zero.
    pub shift: Option<f64>,
}

/// The trend a context has taken out: a straight line or a drift ([`Line`]), a positive
/// context's growth ([`Growth`]), or everything but its steps ([`Differences`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrendOut {
    Line(Line),
    Growth(Growth),
    Differences(Differences),
}

/// A context read as its steps x_t − x_{t−1}, and forecast by walking them on from its last
/// value: for a series whose level wanders with no pull back to a mean (exchange rates,
/// prices, stock levels), which the model, pretrained on demand, reads as a level to return
/// to. The steps are stationary where the level is not, so the model reads them as it was
/// trained to, and their forecast is summed back up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Differences {
    /// The context's last value, where the walk starts.
    pub last: f64,
}

impl Differences {
    /// A context whose last value is observed and that has at least [`Line::MIN_POINTS`]
    /// observed steps.
    pub fn fit(values: &[f64]) -> Option<Differences> {
        let last = *values.last()?;
        let steps = values.windows(2).filter(|w| w[0].is_finite() && w[1].is_finite()).count();
        (last.is_finite() && steps >= Line::MIN_POINTS).then_some(Differences { last })
    }

    /// Each value's step from the one before (missing where either is; the first is missing).
    pub fn rest(&self, values: &[f64]) -> Vec<f64> {
        std::iter::once(f64::NAN).chain(values.windows(2).map(|w| w[1] - w[0])).take(values.len()).collect()
    }

    /// Sums a forecast of the steps back into levels from [`Differences::last`], once each step's
    /// forecast is centred on zero (the model, pretrained on levels, pulls a step's mean
    /// towards the steps' lifted level, and a bias that small summed over a horizon moves the
    /// whole forecast; a walk with a drift is [`Line::drift`]'s): each path and the mean by
    /// running sums; each quantile's distance from the mean as the square root of the running
    /// sum of the steps' squared distances (steps taken as independent, exact where they are
    /// normal: a random walk's √h widening), on its side of the mean. What the model adds is
    /// the steps' spread and shape, as their history shows them.
    pub fn restore(&self, s: &mut Sampled) {
        let f = &mut s.forecast;
        for (h, point) in f.point.iter_mut().enumerate() {
            let centre = std::mem::replace(point, self.last);
            f.quantiles.iter_mut().chain(s.paths.iter_mut()).for_each(|q| q[h] -= centre);
        }
        for path in &mut s.paths {
            let mut level = self.last;
            path.iter_mut().for_each(|v| {
                level += *v;
                *v = level;
            });
        }
        for q in &mut f.quantiles {
            let (mut sum, mut squares) = (0.0, 0.0);
            for v in q.iter_mut() {
                (sum, squares) = (sum + *v, squares + *v * *v);
                *v = self.last + squares.sqrt().copysign(sum);
            }
        }
    }
}

/// A context's season taken out by classical decomposition (`forecast::decompose`'s
/// [`Deseasonalised`]: multiplicative for a positive context, else additive) so the model
/// reads the adjusted values, and the last season's indices put back on every forecast value,
/// path and quantile alike. Where each season is read through heavy noise the model flattens
/// its shape towards the level (daily series with a weekly season and 10–30 % noise: its median
/// had two thirds of the weekly swing); ETS and Theta carry a season this way too.
#[derive(Debug, Clone, PartialEq)]
pub struct Season(Deseasonalised);

impl Season {
    /// The shortest season the seasonality test reads.
    pub const SHORTEST: usize = 4;

    /// The season of `values` (NaN = missing), period `m`, where the seasonality test finds one
    /// ([`crate::forecast::decompose::is_seasonal`]) in at least two observed seasons. Missing
    /// values are filled for the fit only: each from a season before, else the observed mean
    /// (not `forecast::fill_gaps`, which drops leading gaps and so would move every phase).
    pub fn fit(values: &[f64], m: usize) -> Option<Season> {
        let seen: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if m < Self::SHORTEST || seen.len() < 2 * m {
            return None;
        }
        let mean = seen.iter().sum::<f64>() / seen.len() as f64;
        let mut filled = values.to_vec();
        for t in 0..filled.len() {
            if !filled[t].is_finite() {
                filled[t] = if t >= m { filled[t - m] } else { f64::NAN };
            }
        }
        filled.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = mean);
        Deseasonalised::of(&filled, m).map(Season)
    }

    /// Each value with the season taken out (missing values stay missing).
    pub fn rest(&self, values: &[f64]) -> Vec<f64> {
        self.0.adjust(values)
    }

    /// The season put back on the forecast of the adjusted values: step by step on the mean,
    /// each quantile and each path (an index is positive where it multiplies, so the
    /// quantiles stay in order).
    pub fn restore(&self, s: &mut Sampled) {
        let f = &mut s.forecast;
        let rows = std::iter::once(&mut f.point).chain(f.quantiles.iter_mut()).chain(s.paths.iter_mut());
        rows.for_each(|row| self.0.put_back(row));
    }
}

/// Which trend a context has taken out when no clean line describes it: none, a drift
/// ([`Line::drift`]), a positive context's growth ([`Growth`], a drift elsewhere), or its
/// steps ([`Differences`], for a level that wanders), its season ([`Season`], for a season
/// read through noise); `Auto`
/// is the one that forecasts the run's own held-out values best (`lm::forecast`), and reads as
/// `Drift` where nothing chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    Off,
    Drift,
    Growth,
    /// The context's steps ([`Differences`]).
    Differences,
    /// The context's season ([`Season`]), then a drift of what it leaves.
    Season,
    Auto,
}

impl Trend {
    pub const NAMES: [&str; 6] = ["auto", "off", "drift", "growth", "differences", "season"];
    /// What `Auto` chooses among.
    pub const CANDIDATES: [Trend; 5] = [Trend::Off, Trend::Drift, Trend::Growth, Trend::Differences, Trend::Season];

    pub fn parse(s: &str) -> Option<Trend> {
        match s {
            "auto" => Some(Trend::Auto),
            "off" => Some(Trend::Off),
            "drift" => Some(Trend::Drift),
            "growth" => Some(Trend::Growth),
            "differences" => Some(Trend::Differences),
            "season" => Some(Trend::Season),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Auto => "auto",
            Trend::Off => "off",
            Trend::Drift => "drift",
            Trend::Growth => "growth",
            Trend::Differences => "differences",
            Trend::Season => "season",
        }
    }
}

/// What may be taken out of a context ([`Taken::of`]): `LmOptions`' `detrend`, `trend`, `drift`
/// and `lift`, and the request's season (the differences' lag).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub detrend: f64,
    pub trend: Trend,
    /// Standard errors a drift or growth must be from zero to be taken out.
    pub drift: f64,
    pub season: usize,
    pub lift: bool,
}

impl Taken {
    /// The line through `values` when it describes them within `rules.detrend` ([`Line::fit`]),
    /// else their trend (`rules.trend`) when it is clear at `rules.drift` (their steps, for
    /// `Differences`, when [`Differences::fit`] takes them, else a drift as for `Drift`, for
    /// `Season` once its season is out where [`Season::fit`] finds one); then (when
    /// `rules.lift`) the shift that lifts what is left above zero ([`lift`]) — except after a
    /// clean line, whose residuals the model reads around zero. None when nothing is taken.
    pub fn of(values: &[f64], rules: &Rules) -> Option<Taken> {
        if let Some(line) = Line::fit(values, rules.detrend) {
            return Some(Taken { season: None, trend: Some(TrendOut::Line(line)), shift: None });
        }
        if rules.trend == Trend::Growth
            && let Some(growth) = Growth::fit(values, rules.season, rules.drift)
        {
            return Some(Taken { season: None, trend: Some(TrendOut::Growth(growth)), shift: None });
        }
        if rules.trend == Trend::Differences
            && let Some(d) = Differences::fit(values)
        {
            let shift = if rules.lift { lift(&d.rest(values)) } else { None };
            return Some(Taken { season: None, trend: Some(TrendOut::Differences(d)), shift });
        }
        let season = if rules.trend == Trend::Season { Season::fit(values, rules.season) } else { None };
        let adjusted = season.as_ref().map(|s| s.rest(values));
        let values = adjusted.as_deref().unwrap_or(values);
        let drift = if rules.trend == Trend::Off { 0.0 } else { rules.drift };
        let line = Line::drift(values, rules.season, drift);
        let rest = line.map(|l| l.residuals(values));
        let shift = if rules.lift { lift(rest.as_deref().unwrap_or(values)) } else { None };
        (season.is_some() || line.is_some() || shift.is_some()).then_some(Taken { season, trend: line.map(TrendOut::Line), shift })
    }

    /// What the model reads: each value less what is taken out (missing values stay missing).
    pub fn rest(&self, values: &[f64]) -> Vec<f64> {
        let adjusted = self.season.as_ref().map(|s| s.rest(values));
        let values = adjusted.as_deref().unwrap_or(values);
        let rest = match &self.trend {
            Some(TrendOut::Line(l)) => l.residuals(values),
            Some(TrendOut::Growth(g)) => g.rest(values),
            Some(TrendOut::Differences(d)) => d.rest(values),
            None => values.to_vec(),
        };
        let c = self.shift.unwrap_or(0.0);
        rest.into_iter().map(|v| v - c).collect()
    }

    /// Puts it back on a forecast of the rest: the shift on the point, every quantile and every
    /// path, then the trend ([`Line::restore`], [`Growth::restore`]), then the season.
    pub fn restore(&self, s: &mut Sampled, rng: &mut impl Rng) {
        if let Some(c) = self.shift {
            let f = &mut s.forecast;
            f.point.iter_mut().chain(f.quantiles.iter_mut().flatten()).chain(s.paths.iter_mut().flatten()).for_each(|v| *v += c);
        }
        match &self.trend {
            Some(TrendOut::Line(line)) => line.restore(s, rng),
            Some(TrendOut::Growth(growth)) => growth.restore(s, rng),
            Some(TrendOut::Differences(d)) => d.restore(s),
            None => {}
        }
        if let Some(season) = &self.season {
            season.restore(s);
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
        let taken = Taken::of(&values, &rules(true)).expect("values below zero");
        assert_eq!(taken, Taken { season: None, trend: None, shift: Some(-15.0) }, "no line describes a saw-tooth");
        let rest = taken.rest(&values);
        assert_eq!(rest.iter().filter(|v| v.is_finite()).copied().collect::<Vec<_>>(), [10.0, 15.0, 20.0, 10.0, 20.0]);
        assert!(rest[4].is_nan());
        assert_eq!(Taken::of(&values, &rules(false)), None, "not lifted when asked not to");
        let clean: Vec<f64> = (0..10).map(|t| -100.0 + t as f64).collect();
        let lined = Taken::of(&clean, &rules(true)).unwrap();
        assert!(
            matches!(lined.trend, Some(TrendOut::Line(_))) && lined.shift.is_none(),
            "a line is taken before a lift, and its residuals are not lifted"
        );
        let mut s = Sampled {
            paths: vec![vec![1.0, 2.0]; 3],
            forecast: QuantileForecast { point: vec![12.0, 14.0], quantiles: vec![vec![10.0, 11.0], vec![15.0, 18.0]] },
        };
        taken.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        assert_eq!(s.forecast.point, [-3.0, -1.0]);
        assert_eq!(s.forecast.quantiles, [vec![-5.0, -4.0], vec![0.0, 3.0]]);
        assert!(s.paths.iter().all(|p| p == &[-14.0, -13.0]));
    }

    /// A season of ±10 around a slope of ½ a step, with a little noise that repeats every 5.
    fn seasonal(slope: f64, noise: f64, n: usize) -> Vec<f64> {
        let wobble = |t: usize| ((t * 7) % 5) as f64 - 2.0;
        (0..n).map(|t| 100.0 + slope * t as f64 + 10.0 * (std::f64::consts::TAU * t as f64 / 12.0).sin() + noise * wobble(t)).collect()
    }

    #[test]
    fn a_drift_is_the_mean_seasonal_difference_through_the_last_value() {
        let values = seasonal(0.5, 0.5, 60);
        let drift = Line::drift(&values, 12, 2.0).expect("a clear drift");
        assert!((drift.slope - 0.5).abs() < 0.02 && drift.end == 0.0 && drift.n.is_infinite(), "{drift:?}");
        let rest = drift.residuals(&values);
        assert_eq!(rest[59], values[59], "what it leaves keeps the last level");
        assert!((rest[0] - (values[0] + 59.0 * drift.slope)).abs() < 1e-9);
        // Its error is the mean difference's: spread / √sxx = sd / (12 √48).
        let d: Vec<f64> = (12..60).map(|t| values[t] - values[t - 12]).collect();
        let mean = d.iter().sum::<f64>() / 48.0;
        let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 47.0).sqrt();
        assert!((drift.spread / drift.sxx.sqrt() - sd / (12.0 * 48f64.sqrt())).abs() < 1e-12);
        let exact = Line::drift(&seasonal(0.5, 0.0, 60), 12, 2.0).expect("noise-free: every difference the same");
        assert!((exact.slope - 0.5).abs() < 1e-9 && exact.spread < 1e-9, "{exact:?}");
        assert_eq!(Line::drift(&seasonal(0.0, 0.5, 60), 12, 2.0), None, "no drift beyond the noise");
        assert_eq!(Line::drift(&seasonal(0.0, 0.0, 60), 12, 2.0), None, "a season alone");
        assert_eq!(Line::drift(&values[..17], 12, 2.0), None, "five differences are too few");
        assert_eq!(Line::drift(&values, 12, 0.0), None, "0 = never");
        let mut gappy = values.clone();
        gappy.iter_mut().step_by(2).for_each(|v| *v = f64::NAN);
        assert!((Line::drift(&gappy, 12, 2.0).unwrap().slope - 0.5).abs() < 0.05, "differences need both ends");
    }

    #[test]
    fn growth_is_a_drift_in_logs_put_back_as_a_factor() {
        let wobble = |t: usize| 1.0 + 0.01 * (((t * 7) % 5) as f64 - 2.0);
        let values: Vec<f64> = (0..40).map(|t| 50.0 * 1.03f64.powi(t as i32) * (1.0 + 0.2 * (t % 4) as f64) * wobble(t)).collect();
        let g = Growth::fit(&values, 4, 2.0).expect("a clear growth");
        assert!((g.rate - 1.03f64.ln()).abs() < 0.002 && g.se > 0.0 && g.spread > 0.0, "{g:?}");
        let rest = g.rest(&values);
        assert!((rest[39] - values[39]).abs() < 1e-9, "the last level is kept");
        let first_season = rest[0..4].iter().sum::<f64>();
        let last_season = rest[36..40].iter().sum::<f64>();
        assert!((first_season / last_season - 1.0).abs() < 0.05, "the growth is out: {first_season} {last_season}");
        let mut negative = values.clone();
        negative[5] = -1.0;
        assert_eq!(Growth::fit(&negative, 4, 2.0), None, "logs need positive values");
        negative[5] = f64::NAN;
        assert!(Growth::fit(&negative, 4, 2.0).is_some(), "missing values are skipped");
        // Restored: mean and quantiles × e^{rate h}, quantiles' distance also widened; each path
        // grows at its own rate (a constant ratio between steps).
        let mut s = Sampled {
            paths: vec![vec![10.0; 3]; 200],
            forecast: QuantileForecast { point: vec![10.0; 3], quantiles: vec![vec![8.0; 3], vec![12.0; 3]] },
        };
        g.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3));
        for h in 0..3 {
            let (x, f) = ((h + 1) as f64, (g.rate * (h + 1) as f64).exp());
            assert!((s.forecast.point[h] - 10.0 * f).abs() < 1e-9);
            assert!((s.forecast.quantiles[1][h] - (10.0 + 2.0 * g.widening(x)) * f).abs() < 1e-9);
        }
        assert!(g.widening(3.0) > g.widening(1.0) && g.widening(1.0) > 1.0);
        for p in &s.paths {
            assert!((p[1] / p[0] - p[2] / p[1]).abs() < 1e-9 && (p[0] / 10.0).ln() > g.rate - 4.0 * g.se);
        }
    }

    #[test]
    fn the_trend_taken_is_the_one_asked_for() {
        let values = seasonal(0.5, 0.5, 60);
        let of = |trend: Trend, values: &[f64]| Taken::of(values, &Rules { trend, season: 12, ..rules(true) });
        assert_eq!(of(Trend::Off, &values), None, "positive: nothing to lift");
        let drift = of(Trend::Drift, &values).unwrap();
        assert!(matches!(drift.trend, Some(TrendOut::Line(l)) if (l.slope - 0.5).abs() < 0.02) && drift.shift.is_none());
        assert_eq!(of(Trend::Auto, &values), Some(drift), "auto reads as drift where nothing chose");
        let growth = of(Trend::Growth, &values).unwrap();
        assert!(matches!(growth.trend, Some(TrendOut::Growth(_))) && growth.shift.is_none());
        let below: Vec<f64> = values.iter().map(|v| v - 120.0).collect();
        let fallback = of(Trend::Growth, &below).unwrap();
        assert!(matches!(fallback.trend, Some(TrendOut::Line(_))) && fallback.shift.is_some(), "below zero: a drift, then a lift");
        let rest = fallback.rest(&below);
        assert!(rest.iter().all(|v| *v > 0.0) && (rest[59] - (below[59] - fallback.shift.unwrap())).abs() < 1e-9);
    }

    /// A wandering level is read as its steps (lifted above zero: they are below it half the
    /// time) and forecast as a walk from its last value: paths and the mean summed up, each
    /// quantile's distance from the mean growing as the root of the summed squares.
    #[test]
    fn differences_are_read_as_steps_and_walked_on_from_the_last_value() {
        let values = [10.0, 12.0, 11.0, f64::NAN, 13.0, 14.0, 12.0, 15.0, 16.0, 15.0];
        let rules = Rules { trend: Trend::Differences, ..rules(true) };
        let taken = Taken::of(&values, &rules).expect("enough observed steps");
        let Some(TrendOut::Differences(d)) = taken.trend else { panic!("{taken:?}") };
        assert_eq!(d.last, 15.0);
        let steps = d.rest(&values);
        assert!(steps[0].is_nan() && steps[3].is_nan() && steps[4].is_nan(), "a step needs both ends: {steps:?}");
        assert_eq!(steps[1..3], [2.0, -1.0]);
        assert_eq!(steps[5..], [1.0, -2.0, 3.0, 1.0, -1.0]);
        assert_eq!(taken.shift, Some(-7.0), "steps from -2 to 3, lifted to span [5, 10]");
        assert_eq!(taken.rest(&values)[5..], [8.0, 5.0, 10.0, 8.0, 6.0]);
        let mut s = Sampled {
            paths: vec![vec![8.5, 6.0, 7.0]],
            forecast: QuantileForecast { point: vec![7.5, 7.0, 7.0], quantiles: vec![vec![4.5, 6.0, 7.0], vec![10.5, 8.0, 7.0]] },
        };
        taken.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        assert_eq!(s.paths, [vec![16.0, 15.0, 15.0]], "each step centred on zero (the lift is off with it), then summed from 15");
        assert_eq!(s.forecast.point, [15.0, 15.0, 15.0]);
        let root = 10f64.sqrt();
        for (q, side) in s.forecast.quantiles.iter().zip([-1.0, 1.0]) {
            let expected = [15.0 + 3.0 * side, 15.0 + root * side, 15.0 + root * side];
            assert!(q.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{q:?} against {expected:?}");
        }
        let short = [1.0, 2.0, f64::NAN, 3.0, 4.0, 5.0, 6.0, 7.0];
        assert!(Differences::fit(&short).is_none(), "five observed steps are too few");
        assert!(Differences::fit(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f64::NAN]).is_none(), "no last value to walk from");
        assert_eq!(Trend::parse("differences"), Some(Trend::Differences));
    }

    /// A season read through noise is taken out by decomposition (a missing value filled for the
    /// fit only) and its last season's indices are put back on the mean, quantiles and paths
    /// at the phases that follow the context.
    #[test]
    fn a_season_is_taken_out_and_its_indices_put_back_at_the_following_phases() {
        let week = [1.4, 1.2, 1.0, 1.0, 0.9, 0.8, 0.7];
        let mut values: Vec<f64> = (0..40).map(|t| 20.0 * week[t % 7]).collect();
        values[17] = f64::NAN;
        let rules = Rules { trend: Trend::Season, season: 7, ..rules(true) };
        let taken = Taken::of(&values, &rules).expect("a clear weekly season");
        assert!(taken.season.is_some() && taken.trend.is_none() && taken.shift.is_none(), "no drift once the season is out: {taken:?}");
        let rest = taken.rest(&values);
        assert!(rest[17].is_nan(), "missing stays missing");
        let seen: Vec<f64> = rest.iter().copied().filter(|v| v.is_finite()).collect();
        assert!(seen.iter().all(|v| (v - seen[0]).abs() < 1e-9), "the adjusted values are flat: {seen:?}");
        let mut s = Sampled {
            paths: vec![vec![seen[0]; 3]],
            forecast: QuantileForecast { point: vec![seen[0]; 3], quantiles: vec![vec![seen[0] - 1.0; 3], vec![seen[0] + 1.0; 3]] },
        };
        taken.restore(&mut s, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        // The context's 40 values end on phase 4 (39 % 7): the forecast goes on at 5, 6, 0.
        for (h, phase) in [5, 6, 0].into_iter().enumerate() {
            assert!((s.forecast.point[h] - 20.0 * week[phase]).abs() < 1e-9, "{h}: {:?}", s.forecast.point);
            assert!((s.paths[0][h] - 20.0 * week[phase]).abs() < 1e-9);
            assert!(s.forecast.quantiles[0][h] < s.forecast.point[h] && s.forecast.point[h] < s.forecast.quantiles[1][h]);
        }
        let mut rng = crate::forecast::rng();
        let flat: Vec<f64> = (0..40).map(|_| 20.0 + rng.random_range(0.0..5.0)).collect();
        let no_season = Taken::of(&flat, &rules);
        assert!(no_season.is_none_or(|t| t.season.is_none()), "no season to take out");
        let trending: Vec<f64> = (0..56).map(|t| (100.0 + 0.5 * t as f64) * week[t % 7]).collect();
        let both = Taken::of(&trending, &rules).expect("a season and a drift");
        assert!(both.season.is_some(), "{both:?}");
        assert!(
            matches!(both.trend, Some(TrendOut::Line(l)) if (l.slope - 0.5).abs() < 0.05),
            "then the drift of what it leaves: {both:?}"
        );
        assert_eq!(Season::fit(&values, 3), None, "too short a season to test");
        assert_eq!(Season::fit(&values[..13], 7), None, "under two seasons observed");
        assert_eq!(Trend::parse("season"), Some(Trend::Season));
    }

    fn rules(lift: bool) -> Rules {
        Rules { detrend: crate::lm::forecast::DETREND, trend: Trend::Drift, drift: 3.0, season: 1, lift }
    }
}
