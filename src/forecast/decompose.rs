//! Classical seasonal decomposition (centred moving average, as statsmodels' `seasonal_decompose`)
//! and the ACF seasonality test Theta uses to decide whether to deseasonalise.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Additive,
    Multiplicative,
}

/// Seasonal component, one value per observation (indices repeat with period `m`, normalised to
/// sum 0 or to mean 1). Needs `y.len() >= 2 * m`.
pub fn seasonal_component(y: &[f64], m: usize, form: Form) -> Vec<f64> {
    let n = y.len();
    let trend = centred_moving_average(y, m);
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in 0..n {
        if let Some(tr) = trend[t] {
            let d = match form {
                Form::Additive => y[t] - tr,
                Form::Multiplicative => y[t] / tr,
            };
            if d.is_finite() {
                sums[t % m] += d;
                counts[t % m] += 1;
            }
        }
    }
    let neutral = if form == Form::Additive { 0.0 } else { 1.0 };
    let mut idx: Vec<f64> = (0..m).map(|i| if counts[i] > 0 { sums[i] / counts[i] as f64 } else { neutral }).collect();
    let mean = idx.iter().sum::<f64>() / m as f64;
    for v in idx.iter_mut() {
        match form {
            Form::Additive => *v -= mean,
            Form::Multiplicative => *v /= mean,
        }
    }
    (0..n).map(|t| idx[t % m]).collect()
}

/// 2×m moving average for even m, m-term for odd m; `None` where the window does not fit.
fn centred_moving_average(y: &[f64], m: usize) -> Vec<Option<f64>> {
    let n = y.len();
    let weights: Vec<f64> = if m % 2 == 0 {
        let mut w = vec![1.0 / m as f64; m + 1];
        w[0] /= 2.0;
        w[m] /= 2.0;
        w
    } else {
        vec![1.0 / m as f64; m]
    };
    let half = weights.len() / 2;
    (0..n)
        .map(|t| {
            if t < half || t + half >= n {
                return None;
            }
            Some(weights.iter().enumerate().map(|(k, w)| w * y[t + k - half]).sum())
        })
        .collect()
}

/// A series' season taken out by classical decomposition — multiplicative for positive data,
/// additive otherwise (or where a multiplicative index nears zero) — and put back on a forecast
/// from its last season's indices. Theta works on the adjusted series, and so does ETS where
/// the season is too long to carry as states (R's `stlf` for such data).
#[derive(Debug, Clone, PartialEq)]
pub struct Deseasonalised {
    form: Form,
    m: usize,
    /// One index per observation.
    comp: Vec<f64>,
}

impl Deseasonalised {
    /// `None` where the ACF test ([`is_seasonal`]) finds no season of length `m` in `y`.
    pub fn of(y: &[f64], m: usize) -> Option<Self> {
        if !is_seasonal(y, m) {
            return None;
        }
        let form = if y.iter().all(|v| *v > 0.0) { Form::Multiplicative } else { Form::Additive };
        let comp = seasonal_component(y, m, form);
        if form == Form::Multiplicative && comp.iter().any(|c| *c < 0.01) {
            return Some(Self { form: Form::Additive, m, comp: seasonal_component(y, m, Form::Additive) });
        }
        Some(Self { form, m, comp })
    }

    /// `y` with the season taken out.
    pub fn adjust(&self, y: &[f64]) -> Vec<f64> {
        let out = y.iter().zip(&self.comp);
        match self.form {
            Form::Multiplicative => out.map(|(v, s)| v / s).collect(),
            Form::Additive => out.map(|(v, s)| v - s).collect(),
        }
    }

    /// The season put back on a forecast of the adjusted series (its point and quantiles).
    pub fn restore(&self, f: &mut super::QuantileForecast) {
        std::iter::once(&mut f.point).chain(f.quantiles.iter_mut()).for_each(|row| self.put_back(row));
    }

    /// The season put back on one row of forecast values, the steps after the series' end in
    /// order, from the last season's indices.
    pub fn put_back(&self, row: &mut [f64]) {
        let last = &self.comp[self.comp.len() - self.m..];
        for (h, v) in row.iter_mut().enumerate() {
            match self.form {
                Form::Multiplicative => *v *= last[h % self.m],
                Form::Additive => *v += last[h % self.m],
            }
        }
    }
}

/// Autocorrelations r_1..=r_max.
pub fn acf(y: &[f64], max_lag: usize) -> Vec<f64> {
    let n = y.len();
    let mean = y.iter().sum::<f64>() / n as f64;
    let denom: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    (1..=max_lag)
        .map(|k| {
            if denom == 0.0 || k >= n {
                return 0.0;
            }
            (0..n - k).map(|t| (y[t] - mean) * (y[t + k] - mean)).sum::<f64>() / denom
        })
        .collect()
}

/// The 90 % test on the lag-m autocorrelation (Assimakopoulos & Nikolopoulos; statsforecast's
/// AutoTheta): seasonal when |r_m| exceeds 1.645 times its Bartlett standard error.
pub fn is_seasonal(y: &[f64], m: usize) -> bool {
    if m < 4 || y.len() < 2 * m {
        return false;
    }
    let r = acf(y, m);
    let se = ((1.0 + 2.0 * r[..m - 1].iter().map(|v| v * v).sum::<f64>()) / y.len() as f64).sqrt();
    r[m - 1].abs() / se > super::norm_ppf(0.95)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_seasonal_pattern() {
        let pattern = [1.2, 0.8, 1.0, 1.0];
        let y: Vec<f64> = (0..40).map(|t| (100.0 + t as f64) * pattern[t % 4]).collect();
        let s = seasonal_component(&y, 4, Form::Multiplicative);
        for (t, v) in s.iter().take(4).enumerate() {
            assert!((v - pattern[t]).abs() < 0.01, "{t}: {v}");
        }
        assert!(is_seasonal(&y, 4));
        use rand::Rng;
        let mut rng = crate::forecast::rng();
        let flat: Vec<f64> = (0..40).map(|_| 100.0 + rng.random_range(0.0..10.0)).collect();
        assert!(!is_seasonal(&flat, 4));
    }
}
