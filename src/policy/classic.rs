//! Textbook inventory models in closed form: the normal distribution's loss function, the
//! newsvendor, EOQ, safety stock with uncertain lead time, the fill-rate order-up-to level, and
//! the exact optimal (s, S) policy for Poisson demand (Zheng & Federgruen, 1991).
//!
//! The policy stage computes from sampled demand (`super::interval`); these formulas are what
//! its sample-based answers are checked against, and what a planner can reproduce by hand.
use crate::forecast::norm_ppf;

/// Standard normal density.
pub fn norm_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal distribution function.
pub fn norm_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// Standard normal first-order loss function L(z) = E[(Z − z)+] = φ(z) − z (1 − Φ(z)).
pub fn norm_loss(z: f64) -> f64 {
    norm_pdf(z) - z * (1.0 - norm_cdf(z))
}

/// Newsvendor order-up-to level for normal demand: S = μ + σ Φ⁻¹(p / (p + h)), with h the
/// holding (overage) and p the shortage (underage) cost per unit.
pub fn newsvendor_normal(mean: f64, sd: f64, holding: f64, shortage: f64) -> f64 {
    mean + sd * norm_ppf(shortage / (shortage + holding))
}

/// Economic order quantity: Q = √(2 K λ / h), with order cost K, demand rate λ and holding
/// cost h per unit per the same time unit as λ.
pub fn eoq(order_cost: f64, holding: f64, demand_rate: f64) -> f64 {
    (2.0 * order_cost * demand_rate / holding).sqrt()
}

/// Standard deviation of demand over an uncertain lead time L (independent periods):
/// √(E[L] σ_d² + μ_d² σ_L²).
pub fn lead_time_demand_sd(demand_mean: f64, demand_sd: f64, lead_mean: f64, lead_sd: f64) -> f64 {
    (lead_mean * demand_sd * demand_sd + demand_mean * demand_mean * lead_sd * lead_sd).sqrt()
}

/// Safety stock for a cycle service level: Φ⁻¹(α) × σ of lead-time demand.
pub fn safety_stock(cycle_service_level: f64, lead_time_demand_sd: f64) -> f64 {
    norm_ppf(cycle_service_level) * lead_time_demand_sd
}

/// Order-up-to level for a fill-rate target β with normal protection-interval demand N(μ, σ²):
/// the S where expected shortage per cycle σ L((S − μ)/σ) equals (1 − β) × demand per cycle.
pub fn fill_rate_normal(mean: f64, sd: f64, fill_rate: f64, cycle_demand: f64) -> f64 {
    let wanted = (1.0 - fill_rate) * cycle_demand / sd;
    // L is decreasing: bisect on z.
    let (mut lo, mut hi) = (-10.0_f64, 10.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm_loss(mid) > wanted { lo = mid } else { hi = mid }
    }
    mean + sd * 0.5 * (lo + hi)
}

/// The optimal periodic-review (s, S) policy and its long-run cost per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsPolicy {
    /// Order when the inventory position is at or below `s`…
    pub s: i64,
    /// …up to `S`.
    pub big_s: i64,
    pub cost: f64,
}

/// Exact optimal (s, S) for i.i.d. Poisson(λ) demand per period, zero lead time, backorders,
/// holding cost h and shortage cost p per unit per period, fixed order cost K: the algorithm of
/// Zheng & Federgruen (1991), "Finding optimal (s, S) policies is about as simple as evaluating
/// a single policy".
pub fn ss_poisson(lambda: f64, holding: f64, shortage: f64, order_cost: f64) -> SsPolicy {
    Zf::new(lambda, holding, shortage, order_cost).solve()
}

/// Zheng–Federgruen's renewal quantities for one demand distribution.
struct Zf {
    pmf: Vec<f64>,
    lambda: f64,
    h: f64,
    p: f64,
    k: f64,
    /// m(j): expected visits to state S − j before the next order; grows on demand.
    m: Vec<f64>,
}

impl Zf {
    fn new(lambda: f64, h: f64, p: f64, k: f64) -> Self {
        // Demand support up to where the tail is negligible.
        let top = (lambda + 12.0 * lambda.sqrt() + 30.0).ceil() as usize;
        let mut pmf = vec![(-lambda).exp()];
        for d in 1..=top {
            pmf.push(pmf[d - 1] * lambda / d as f64);
        }
        let m = vec![1.0 / (1.0 - pmf[0])];
        Self { pmf, lambda, h, p, k, m }
    }

    /// One-period expected cost at inventory position y: h E[(y−D)+] + p E[(D−y)+].
    fn g(&self, y: i64) -> f64 {
        let over: f64 = (0..y.max(0)).map(|d| (y - d) as f64 * self.pmf.get(d as usize).copied().unwrap_or(0.0)).sum();
        let under = self.lambda - y as f64 + over;
        self.h * over + self.p * under
    }

    fn m_at(&mut self, j: usize) -> f64 {
        while self.m.len() <= j {
            let n = self.m.len();
            let s: f64 = (1..=n).map(|l| self.pmf.get(l).copied().unwrap_or(0.0) * self.m[n - l]).sum();
            self.m.push(s / (1.0 - self.pmf[0]));
        }
        self.m[j]
    }

    /// Long-run average cost of (s, S): [K + Σ_{j<S−s} m(j) G(S−j)] / M(S−s).
    fn cost(&mut self, s: i64, big_s: i64) -> f64 {
        let (mut num, mut den) = (self.k, 0.0);
        for j in 0..(big_s - s) {
            let m = self.m_at(j as usize);
            num += m * self.g(big_s - j);
            den += m;
        }
        num / den
    }

    fn solve(&mut self) -> SsPolicy {
        // y*: the minimiser of the convex G.
        let mut y = 0;
        while self.g(y + 1) < self.g(y) {
            y += 1;
        }
        while self.g(y - 1) < self.g(y) {
            y -= 1;
        }
        let mut s = y;
        loop {
            s -= 1;
            if self.cost(s, y) <= self.g(s) {
                break;
            }
        }
        let (mut s0, mut c0) = (y, self.cost(s, y));
        let mut big_s = s0 + 1;
        while self.g(big_s) <= c0 {
            if self.cost(s, big_s) < c0 {
                s0 = big_s;
                while self.cost(s + 1, s0) <= self.g(s + 1) {
                    s += 1;
                }
                c0 = self.cost(s, s0);
            }
            big_s += 1;
        }
        SsPolicy { s, big_s: s0, cost: c0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newsvendor_eoq_and_safety_stock_match_the_textbook() {
        assert!((newsvendor_normal(50.0, 8.0, 0.18, 0.70) - 56.604).abs() < 5e-4);
        assert!((eoq(8.0, 0.225, 1300.0) - 304.047).abs() < 5e-4);
        let sd = lead_time_demand_sd(100.0, 20.0, 7.0, 2.0);
        assert!((sd - 206.9).abs() < 0.05, "{sd}");
        assert!((safety_stock(0.95, sd) - 340.3).abs() < 0.05);
    }

    #[test]
    fn loss_function_and_fill_rate() {
        // Tabulated: L(0) = 0.3989, L(1) = 0.0833, L(-1) = 1.0833.
        assert!((norm_loss(0.0) - 0.398942).abs() < 1e-6);
        assert!((norm_loss(1.0) - 0.083315).abs() < 1e-6);
        assert!((norm_loss(-1.0) - 1.083315).abs() < 1e-6);
        let s = fill_rate_normal(100.0, 20.0, 0.98, 70.0);
        let short = 20.0 * norm_loss((s - 100.0) / 20.0);
        assert!((1.0 - short / 70.0 - 0.98).abs() < 1e-9);
    }

    #[test]
    fn optimal_s_s_for_poisson_demand_is_zheng_federgruen() {
        let p = ss_poisson(6.0, 1.0, 4.0, 5.0);
        assert_eq!((p.s, p.big_s), (4, 10));
        assert!((p.cost - 8.03411).abs() < 5e-6, "{}", p.cost);
    }
}
