//! Inventory policies from demand samples: pure maths, no Arrow, no stages.
//!
//! For one SKU × location: demand over the protection interval (review period R + lead time L)
//! as a sample ([`interval`]), then the order-up-to level S for a target (newsvendor critical
//! ratio, cycle service level or fill rate), safety stock, reorder point, EOQ, and the order
//! that brings the inventory position up to S, rounded to the case pack and MOQ.
//! [`classic`] holds the closed forms the sample answers are checked against.
pub mod classic;
pub mod interval;
pub mod simulate;

use crate::forecast::quantile_sorted;
pub use interval::{IntervalDemand, LeadTime, Paths};

/// What the order-up-to level S is set for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Newsvendor: S at the critical ratio Cu / (Cu + Co), with Cu the shortage cost per unit
    /// short and Co the holding cost per unit left over at the end of a cycle.
    Costs { shortage: f64, holding: f64 },
    /// P(no stockout in a cycle) = α.
    CycleService(f64),
    /// β = 1 − E[units short per cycle] / E[demand per cycle].
    FillRate(f64),
}

impl Target {
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Target::Costs { shortage, holding } if !(shortage > 0.0 && holding > 0.0) => {
                Err(format!("shortage and holding costs must be positive (got {shortage} and {holding})"))
            }
            Target::CycleService(a) | Target::FillRate(a) if !(a > 0.0 && a < 1.0) => {
                Err(format!("a service target must lie strictly between 0 and 1 (got {a})"))
            }
            _ => Ok(()),
        }
    }

    /// The quantile of protection-interval demand S sits at, where the target fixes it.
    pub fn ratio(&self) -> Option<f64> {
        match *self {
            Target::Costs { shortage, holding } => Some(shortage / (shortage + holding)),
            Target::CycleService(a) => Some(a),
            Target::FillRate(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Costs { .. } => "newsvendor",
            Target::CycleService(_) => "cycle_service_level",
            Target::FillRate(_) => "fill_rate",
        }
    }

    /// The target's number: the critical ratio, α or β.
    pub fn value(&self) -> f64 {
        match *self {
            Target::FillRate(b) => b,
            _ => self.ratio().expect("ratio targets"),
        }
    }
}

/// Ordering rules of one SKU × location's supply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ordering {
    pub inventory_position: f64,
    /// Orders are whole case packs (≥ 1)…
    pub case_pack: f64,
    /// …and at least the minimum order quantity.
    pub moq: f64,
    pub unit_cost: f64,
}

/// Costs that make an EOQ: a fixed cost per order and holding as a yearly fraction of unit cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EoqCosts {
    pub order_cost: f64,
    pub holding_rate_per_year: f64,
}

/// One SKU × location's policy, with what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub demand_mean: f64,
    pub demand_sd: f64,
    /// Protection-interval demand quantiles at 0.5, 0.9, 0.99.
    pub demand_quantiles: [f64; 3],
    pub order_up_to: f64,
    /// S − E[protection-interval demand].
    pub safety_stock: f64,
    /// Lead-time demand at the same service level as S: order when the position falls below it.
    pub reorder_point: f64,
    /// P(protection-interval demand ≤ S): the cycle service level S gives.
    pub cycle_service: f64,
    /// 1 − E[(D − S)+] / E[cycle demand]: the fill rate S gives.
    pub fill_rate: f64,
    pub eoq: Option<f64>,
    pub order_qty: f64,
}

/// S, safety stock, reorder point, EOQ and the order for one SKU × location.
pub fn compute(demand: &IntervalDemand, target: Target, ordering: &Ordering, eoq_costs: Option<EoqCosts>) -> Policy {
    let d = &demand.protection;
    let n = d.len().max(1) as f64;
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let order_up_to = match target.ratio() {
        Some(r) => quantile_sorted(d, r),
        None => fill_rate_level(d, target.value(), demand.cycle_mean),
    };
    let cycle_service = d.partition_point(|&x| x <= order_up_to) as f64 / n;
    let fill_rate = 1.0 - expected_shortage(d, order_up_to) / demand.cycle_mean.max(f64::MIN_POSITIVE);
    let service_ratio = target.ratio().unwrap_or(cycle_service);
    let eoq = eoq_costs
        .filter(|c| c.order_cost > 0.0 && c.holding_rate_per_year > 0.0 && ordering.unit_cost > 0.0)
        .map(|c| classic::eoq(c.order_cost, c.holding_rate_per_year * ordering.unit_cost, demand.daily_mean * 365.0));
    Policy {
        demand_mean: mean,
        demand_sd: sd,
        demand_quantiles: [0.5, 0.9, 0.99].map(|q| quantile_sorted(d, q)),
        order_up_to,
        safety_stock: order_up_to - mean,
        reorder_point: quantile_sorted(&demand.lead_time, service_ratio),
        cycle_service,
        fill_rate: fill_rate.clamp(0.0, 1.0),
        eoq,
        order_qty: order_quantity(order_up_to, ordering),
    }
}

/// max(0, S − position), rounded up to whole case packs and to at least the MOQ.
pub fn order_quantity(order_up_to: f64, o: &Ordering) -> f64 {
    let raw = order_up_to - o.inventory_position;
    if raw <= 1e-9 {
        return 0.0;
    }
    let pack = o.case_pack.max(1.0);
    let packs = |q: f64| (q / pack - 1e-9).ceil() * pack;
    packs(raw).max(packs(o.moq))
}

/// E[(D − S)+] over a sorted sample.
fn expected_shortage(sorted: &[f64], s: f64) -> f64 {
    let start = sorted.partition_point(|&x| x <= s);
    sorted[start..].iter().map(|x| x - s).sum::<f64>() / sorted.len().max(1) as f64
}

/// The smallest S with 1 − E[(D − S)+] / cycle ≥ β: E[(D − S)+] is convex and piecewise linear
/// in S with kinks at the sample points, so walk down the kinks from the top and solve the
/// linear piece that crosses the allowed shortage.
fn fill_rate_level(sorted: &[f64], beta: f64, cycle_mean: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let allowed = (1.0 - beta) * cycle_mean * n as f64; // in units of Σ (d − S)+
    let (mut above_sum, mut above) = (0.0, 0usize); // Σ and count of samples above the piece
    for i in (0..n).rev() {
        // On [sorted[i], sorted[i+1]], Σ (d − S)+ = above_sum − above × S.
        let lo = sorted[i];
        if above > 0 && above_sum - above as f64 * lo >= allowed {
            return (above_sum - allowed) / above as f64;
        }
        above_sum += lo;
        above += 1;
    }
    // Even S = min(D) keeps shortage within the allowance: go lower linearly (n samples above).
    ((above_sum - allowed) / n as f64).max(0.0).min(sorted[0])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    use super::*;

    fn normal_sample(mean: f64, sd: f64, n: usize) -> IntervalDemand {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut d: Vec<f64> = Normal::new(mean, sd).unwrap().sample_iter(&mut rng).take(n).collect();
        d.sort_by(f64::total_cmp);
        IntervalDemand { protection: d.clone(), lead_time: d, cycle_mean: 70.0, daily_mean: 10.0, extrapolated: false }
    }

    const NO_ROUNDING: Ordering = Ordering { inventory_position: 0.0, case_pack: 1.0, moq: 0.0, unit_cost: 2.0 };

    #[test]
    fn sample_newsvendor_and_service_level_match_the_normal_formulas() {
        let d = normal_sample(50.0, 8.0, 200_000);
        let p = compute(&d, Target::Costs { shortage: 0.70, holding: 0.18 }, &NO_ROUNDING, None);
        assert!((p.order_up_to - 56.604).abs() < 0.1, "{}", p.order_up_to);
        assert!((p.cycle_service - 0.70 / 0.88).abs() < 0.002);
        let p = compute(&d, Target::CycleService(0.95), &NO_ROUNDING, None);
        assert!((p.safety_stock - 8.0 * 1.644854).abs() < 0.1, "{}", p.safety_stock);
    }

    #[test]
    fn sample_fill_rate_matches_the_loss_function_formula() {
        let d = normal_sample(100.0, 20.0, 200_000);
        let p = compute(&d, Target::FillRate(0.98), &NO_ROUNDING, None);
        let exact = classic::fill_rate_normal(100.0, 20.0, 0.98, 70.0);
        assert!((p.order_up_to - exact).abs() < 0.3, "{} vs {exact}", p.order_up_to);
        assert!((p.fill_rate - 0.98).abs() < 1e-6, "{}", p.fill_rate);
    }

    #[test]
    fn fill_rate_level_solves_a_small_sample_exactly() {
        // D ∈ {0, 10, 20, 30}: with S = 25, E[(D − S)+] = 5/4 → β = 1 − 1.25/10 = 0.875.
        let d = [0.0, 10.0, 20.0, 30.0];
        assert!((fill_rate_level(&d, 0.875, 10.0) - 25.0).abs() < 1e-9);
        // With S = 15: (5 + 15)/4 = 5 → β = 0.5.
        assert!((fill_rate_level(&d, 0.5, 10.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn orders_round_up_to_packs_and_moq() {
        let o = Ordering { inventory_position: 40.0, case_pack: 12.0, moq: 48.0, unit_cost: 1.0 };
        assert_eq!(order_quantity(30.0, &o), 0.0);
        assert_eq!(order_quantity(50.0, &o), 48.0); // 10 → one pack → raised to the MOQ
        assert_eq!(order_quantity(100.0, &o), 60.0); // 60 is five packs exactly
        assert_eq!(order_quantity(101.0, &o), 72.0);
        let o = Ordering { moq: 50.0, ..o }; // an MOQ off the pack grid rounds up to packs
        assert_eq!(order_quantity(45.0, &o), 60.0);
    }

    #[test]
    fn eoq_uses_the_yearly_demand_rate() {
        let d = normal_sample(50.0, 8.0, 1000);
        let costs = EoqCosts { order_cost: 8.0, holding_rate_per_year: 0.1125 };
        let p = compute(&d, Target::CycleService(0.9), &NO_ROUNDING, Some(costs));
        // h = 0.1125 × 2 = 0.225 per unit-year, λ = 10 × 365 = 3650.
        assert!((p.eoq.unwrap() - classic::eoq(8.0, 0.225, 3650.0)).abs() < 1e-9);
    }
}
