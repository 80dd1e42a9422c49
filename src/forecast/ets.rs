//! Exponential smoothing in state-space form (Hyndman et al. 2008), with the automatic choice
//! among error / trend / damped / season forms by AICc that R's `ets()` and statsforecast's
//! AutoETS make.
//!
//! Candidates: error A or M, trend N, A or damped A, season N, A or M; multiplicative forms only
//! for strictly positive data, additive error never with multiplicative season (unstable), no
//! season beyond 24 steps or with under two seasons of data. Each is fitted by Nelder–Mead on
//! its likelihood over smoothing parameters and initial states together. Point forecasts are the
//! model's mean path; intervals come from simulating its own error process.
use rand_distr::{Distribution, Normal};

use super::decompose::{Form, seasonal_component};
use super::optim::nelder_mead;
use super::{QuantileForecast, Request, SIM_PATHS, rng, seasonal_naive};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    None,
    Additive,
    Multiplicative,
}

/// One member of the ETS family, e.g. M,Ad,M.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form3 {
    pub multiplicative_error: bool,
    pub trend: bool,
    pub damped: bool,
    pub season: Season,
}

#[derive(Debug, Clone, Copy)]
struct Params {
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
}

#[derive(Debug, Clone)]
struct State {
    level: f64,
    slope: f64,
    /// `seasonal[t % m]`: the seasonal state that applies at time t.
    seasonal: Vec<f64>,
}

/// A fitted model: everything needed to forecast and to compare by AICc.
#[derive(Debug, Clone)]
pub struct Fit {
    pub form: Form3,
    params: Params,
    /// State after the last observation.
    last: State,
    pub aicc: f64,
    pub sigma: f64,
    n: usize,
}

impl Form3 {
    pub fn name(&self) -> String {
        let e = if self.multiplicative_error { "M" } else { "A" };
        let t = match (self.trend, self.damped) {
            (false, _) => "N",
            (true, false) => "A",
            (true, true) => "Ad",
        };
        let s = match self.season {
            Season::None => "N",
            Season::Additive => "A",
            Season::Multiplicative => "M",
        };
        format!("{e},{t},{s}")
    }

    fn m(&self, m: usize) -> usize {
        if self.season == Season::None { 1 } else { m }
    }

    /// One-step forecast at time t: (level + damped slope, seasonal state, forecast).
    fn predict(&self, p: &Params, st: &State, t: usize) -> (f64, f64, f64) {
        let lp = st.level + if self.trend { p.phi * st.slope } else { 0.0 };
        let s = st.seasonal[t % st.seasonal.len()];
        let yhat = match self.season {
            Season::None => lp,
            Season::Additive => lp + s,
            Season::Multiplicative => lp * s,
        };
        (lp, s, yhat)
    }

    /// State update after seeing absolute error `q = y - yhat` at time t. The error-correction
    /// form is the same for additive and multiplicative errors once written in q.
    fn update(&self, p: &Params, st: &mut State, t: usize, q: f64) {
        let (lp, s, _) = self.predict(p, st, t);
        let k = st.seasonal.len();
        let (dl, ds) = match self.season {
            Season::Multiplicative => (q / s, q / lp),
            _ => (q, q),
        };
        st.level = lp + p.alpha * dl;
        st.slope = if self.trend { p.phi * st.slope + p.beta * dl } else { 0.0 };
        if self.season != Season::None {
            st.seasonal[t % k] = s + p.gamma * ds;
        }
    }
}

/// The chosen model's forecast (AICc over all admissible forms); naive when nothing fits.
pub fn auto_ets(y: &[f64], req: &Request) -> QuantileForecast {
    match select(y, req.season) {
        Some(fit) => fit.forecast(req),
        None => seasonal_naive(y, 1, req.horizon, req.levels, false),
    }
}

/// Fit every candidate form and keep the lowest AICc.
pub fn select(y: &[f64], m: usize) -> Option<Fit> {
    candidates(y, m).into_iter().filter_map(|f| fit(y, m, f)).filter(|f| f.aicc.is_finite()).min_by(|a, b| a.aicc.total_cmp(&b.aicc))
}

fn candidates(y: &[f64], m: usize) -> Vec<Form3> {
    let positive = y.iter().all(|v| *v > 0.0);
    let seasonal_ok = m > 1 && m <= 24 && y.len() >= 2 * m;
    let mut out = vec![];
    for multiplicative_error in [false, true] {
        for (trend, damped) in [(false, false), (true, false), (true, true)] {
            for season in [Season::None, Season::Additive, Season::Multiplicative] {
                let needs_positive = multiplicative_error || season == Season::Multiplicative;
                if (needs_positive && !positive)
                    || (season != Season::None && !seasonal_ok)
                    || (!multiplicative_error && season == Season::Multiplicative)
                {
                    continue;
                }
                out.push(Form3 { multiplicative_error, trend, damped, season });
            }
        }
    }
    out
}

/// Fit one form: Nelder–Mead over [alpha, beta?, gamma?, phi?, l0, b0?, s_0..s_{m-2}].
pub fn fit(y: &[f64], m: usize, form: Form3) -> Option<Fit> {
    let n = y.len();
    let k = form.m(m);
    let init = initial_state(y, k, form)?;
    let alpha = 1e-4 + 0.2 * (0.9999 - 1e-4) / m.max(1) as f64;
    let mut x0 = vec![alpha];
    let (mut lo, mut hi) = (vec![1e-4], vec![0.9999]);
    let mut push = |v: f64, l: f64, h: f64| {
        x0.push(v);
        lo.push(l);
        hi.push(h);
    };
    if form.trend {
        push(1e-4 + 0.1 * (alpha - 1e-4), 1e-4, 0.9999);
    }
    if form.season != Season::None {
        push(1e-4 + 0.05 * (1.0 - alpha - 1e-4), 1e-4, 0.9999);
    }
    if form.damped {
        push(0.8 + 0.99 * 0.18, 0.8, 0.98);
    }
    push(init.level, -1e10, 1e10);
    if form.trend {
        push(init.slope, -1e10, 1e10);
    }
    for s in &init.seasonal[..k - 1] {
        push(*s, -1e10, 1e10);
    }
    let n_par = x0.len() + 1;
    if n <= n_par + 1 {
        return None;
    }
    let objective = |x: &[f64]| decode(form, x, k).map_or(f64::INFINITY, |(p, st)| likelihood(form, &p, st, y).0);
    let best = nelder_mead(objective, &x0, &lo, &hi, 2000);
    let (params, st) = decode(form, &best.x, k)?;
    let (lik, sse, last) = likelihood(form, &params, st, y);
    if !lik.is_finite() {
        return None;
    }
    let np = n_par as f64;
    let aicc = lik + 2.0 * np + 2.0 * np * (np + 1.0) / (n as f64 - np - 1.0);
    let sigma = (sse / (n as f64 - np).max(1.0)).sqrt();
    Some(Fit { form, params, last, aicc, sigma, n })
}

/// Parameter vector → (params, initial state); `None` outside the usual region
/// (beta < alpha, gamma < 1 - alpha, and a multiplicative season that stays positive).
fn decode(form: Form3, x: &[f64], k: usize) -> Option<(Params, State)> {
    let mut it = x.iter().copied();
    let alpha = it.next()?;
    let beta = if form.trend { it.next()? } else { 0.0 };
    let gamma = if form.season != Season::None { it.next()? } else { 0.0 };
    let phi = if form.damped { it.next()? } else { 1.0 };
    if beta > alpha || gamma > 1.0 - alpha {
        return None;
    }
    let level = it.next()?;
    let slope = if form.trend { it.next()? } else { 0.0 };
    let mut seasonal: Vec<f64> = it.take(k - 1).collect();
    let sum: f64 = seasonal.iter().sum();
    match form.season {
        Season::None => seasonal = vec![0.0],
        Season::Additive => seasonal.push(-sum),
        Season::Multiplicative => {
            seasonal.push(k as f64 - sum);
            if seasonal.iter().any(|s| *s <= 1e-3) {
                return None;
            }
        }
    }
    Some((Params { alpha, beta, gamma, phi }, State { level, slope, seasonal }))
}

/// (−2 log-likelihood up to a constant, sum of squared model errors, state after the data).
fn likelihood(form: Form3, p: &Params, mut st: State, y: &[f64]) -> (f64, f64, State) {
    let (mut sse, mut log_yhat) = (0.0, 0.0);
    for (t, &obs) in y.iter().enumerate() {
        let (_, _, yhat) = form.predict(p, &st, t);
        let q = obs - yhat;
        if form.multiplicative_error {
            if yhat.abs() < 1e-10 {
                return (f64::INFINITY, f64::INFINITY, st);
            }
            sse += (q / yhat).powi(2);
            log_yhat += yhat.abs().ln();
        } else {
            sse += q * q;
        }
        form.update(p, &mut st, t, q);
    }
    let n = y.len() as f64;
    let lik = n * sse.max(1e-300).ln() + 2.0 * log_yhat;
    (if lik.is_nan() { f64::INFINITY } else { lik }, sse, st)
}

/// Starting states the way R's `ets` finds them: seasonal indices from a classical decomposition,
/// level and slope from a regression on the first (up to) ten deseasonalised points.
fn initial_state(y: &[f64], k: usize, form: Form3) -> Option<State> {
    let n = y.len();
    let (seasonal, adjusted) = match form.season {
        Season::None => (vec![0.0], y.to_vec()),
        s => {
            let f = if s == Season::Additive { Form::Additive } else { Form::Multiplicative };
            let comp = seasonal_component(y, k, f);
            let adj = y.iter().zip(&comp).map(|(v, c)| if f == Form::Additive { v - c } else { v / c.max(1e-2) }).collect();
            (comp[..k].to_vec(), adj)
        }
    };
    let take = n.min(10.max(2 * k));
    let head = &adjusted[..take];
    let (level, slope) = if form.trend && take >= 2 {
        let tm = (take as f64 + 1.0) / 2.0;
        let ym = head.iter().sum::<f64>() / take as f64;
        let sxy: f64 = head.iter().enumerate().map(|(i, v)| (i as f64 + 1.0 - tm) * (v - ym)).sum();
        let sxx: f64 = (0..take).map(|i| (i as f64 + 1.0 - tm).powi(2)).sum();
        let b = sxy / sxx;
        (ym - b * tm, b)
    } else {
        (head.iter().sum::<f64>() / take.max(1) as f64, 0.0)
    };
    level.is_finite().then_some(State { level, slope, seasonal })
}

impl Fit {
    /// Mean path, and quantiles from simulating the fitted error process.
    pub fn forecast(&self, req: &Request) -> QuantileForecast {
        let h = req.horizon;
        let mut st = self.last.clone();
        let mut point = Vec::with_capacity(h);
        for j in 0..h {
            let t = self.n + j;
            let (_, _, yhat) = self.form.predict(&self.params, &st, t);
            point.push(yhat);
            self.form.update(&self.params, &mut st, t, 0.0);
        }
        if req.levels.is_empty() {
            return QuantileForecast { point, quantiles: vec![] };
        }
        let mut rng = rng();
        let normal = Normal::new(0.0, self.sigma.max(1e-12)).expect("finite sigma");
        let paths: Vec<Vec<f64>> = (0..SIM_PATHS)
            .map(|_| {
                let mut st = self.last.clone();
                (0..h)
                    .map(|j| {
                        let t = self.n + j;
                        let (_, _, yhat) = self.form.predict(&self.params, &st, t);
                        let e = normal.sample(&mut rng);
                        let q = if self.form.multiplicative_error { yhat * e } else { e };
                        self.form.update(&self.params, &mut st, t, q);
                        yhat + q
                    })
                    .collect()
            })
            .collect();
        QuantileForecast::from_paths(point, &paths, req.levels)
    }

    /// Fitted smoothing parameters (alpha, beta, gamma, phi) for reports and tests.
    pub fn params(&self) -> [f64; 4] {
        [self.params.alpha, self.params.beta, self.params.gamma, self.params.phi]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::AIR_PASSENGERS;

    #[test]
    fn air_passengers_matches_statsforecast() {
        let fit = select(&AIR_PASSENGERS, 12).expect("fits");
        let req = Request { horizon: 12, season: 12, levels: &[0.1, 0.9], nonnegative: true };
        let f = fit.forecast(&req);
        eprintln!(
            "{} aicc {} params {:?}\n{:?}\n{:?}\n{:?}",
            fit.form.name(),
            fit.aicc,
            fit.params(),
            f.point,
            f.quantiles[0],
            f.quantiles[1]
        );
        // statsforecast 2.1.1 AutoETS(season_length=12): ETS(M,N,M), AICc 1458.10.
        let reference = [442.357, 428.267, 492.975, 477.37, 477.603, 535.858, 600.832, 594.768, 513.703, 448.223, 390.316, 435.738];
        assert_eq!(fit.form.name(), "M,N,M");
        for (a, b) in f.point.iter().zip(reference) {
            assert!((a - b).abs() / b < 0.01, "{:?}", f.point);
        }
    }
}
