//! Supplier allocation as a mixed-integer program, solved with HiGHS: pure maths, no Arrow.
//!
//! Each SKU's order (a [`Need`]) is split across the suppliers that offer it. For every offer,
//! each all-unit price tier is a binary switch `y` with a quantity `z` in [lo·y, hi·y] (lo = the
//! tier's break, at least the MOQ, so the MOQ switch is "0 or ≥ MOQ"); at most one tier per offer.
//! Minimise Σ (tier unit cost + expected shortage cost per unit) × z, where the expected
//! shortage cost of a unit from an offer is the SKU's shortage cost × (1 − reliability), plus a
//! cost per lead-time day. Subject to: each need covered (Σ z ≥ need), each offer's weekly
//! capacity, an optional total budget, and an optional maximum share of total spend per supplier.
//!
//! When that is infeasible, [`solve`] solves again with priced slack on each constraint family
//! (budget and share bend first, then capacity, and demand last) and reports each bend.
pub mod model;
mod start;

pub use model::{Bend, Family};

/// An all-unit price tier: from `min_qty` units on, every unit costs `unit_cost`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    pub min_qty: f64,
    pub unit_cost: f64,
}

/// One supplier's offer for one SKU.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Index into [`Problem::suppliers`].
    pub supplier: usize,
    /// Price tiers; a tier from 0 at the base cost is implied when none starts at or below the MOQ.
    pub unit_cost: f64,
    pub breaks: Vec<Tier>,
    pub capacity: f64,
    pub moq: f64,
    pub lead_time_days: f64,
    /// Share of orders delivered on time, in (0, 1].
    pub reliability: f64,
}

/// One SKU's order to place.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub quantity: f64,
    pub shortage_cost: f64,
    pub offers: Vec<Offer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub suppliers: Vec<String>,
    pub needs: Vec<Need>,
    pub budget: Option<f64>,
    /// Most of the plan's total spend any one supplier may get, in (0, 1].
    pub max_share: Option<f64>,
    /// Cost per unit per day of expected lead time (0: lead time is not priced).
    pub lead_time_cost: f64,
}

/// Solver limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub time_limit_s: f64,
    pub mip_rel_gap: f64,
    pub threads: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { time_limit_s: 60.0, mip_rel_gap: 0.005, threads: 1 }
    }
}

/// What was bought from one offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub need: usize,
    pub offer: usize,
    pub quantity: f64,
    pub unit_cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// HiGHS' model status, e.g. "Optimal" or "ReachedTimeLimit".
    pub status: String,
    pub objective: f64,
    pub bound: f64,
    pub gap: f64,
    pub purchase_cost: f64,
    pub lines: Vec<Line>,
    /// Empty unless the strict problem was infeasible and this is the relaxed plan.
    pub bends: Vec<Bend>,
    pub seconds: f64,
}

impl Solution {
    pub fn feasible(&self) -> bool {
        self.bends.is_empty()
    }
}

/// Solve strictly; if infeasible, solve with priced slack and say what bent.
pub fn solve(problem: &Problem, limits: Limits) -> anyhow::Result<Solution> {
    let started = std::time::Instant::now();
    let mut solution = match model::solve(problem, limits, false)? {
        Some(s) => s,
        None => model::solve(problem, limits, true)?.ok_or_else(|| anyhow::anyhow!("the relaxed allocation has no solution either"))?,
    };
    solution.seconds = started.elapsed().as_secs_f64();
    Ok(solution)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(supplier: usize, unit_cost: f64, breaks: &[(f64, f64)], capacity: f64, moq: f64) -> Offer {
        Offer {
            supplier,
            unit_cost,
            breaks: breaks.iter().map(|&(min_qty, unit_cost)| Tier { min_qty, unit_cost }).collect(),
            capacity,
            moq,
            lead_time_days: 7.0,
            reliability: 1.0,
        }
    }

    fn bought(s: &Solution, need: usize) -> Vec<(usize, f64, f64)> {
        let mut v: Vec<_> = s.lines.iter().filter(|l| l.need == need).map(|l| (l.offer, l.quantity, l.unit_cost)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Worked by hand:
    /// - A needs 150. S1: 10 each, 9 from 100 (all units), capacity 200. S2: 9.5, MOQ 60,
    ///   capacity 80. All from S1 at the break: 1350; S2's 80 + S1's 70 cost 760 + 700 = 1460.
    /// - B needs 30. S2 costs 5 but its MOQ is 50 (250); S1 at 6 costs 180: the MOQ switch stays off.
    /// - C needs 100. S1 at 4 has capacity 60 (binding): 240, then 40 from S2 at 5: 200.
    /// Optimum 1350 + 180 + 440 = 1970.
    #[test]
    fn hand_worked_instance() {
        let needs = vec![
            Need {
                quantity: 150.0,
                shortage_cost: 0.0,
                offers: vec![offer(0, 10.0, &[(100.0, 9.0)], 200.0, 1.0), offer(1, 9.5, &[], 80.0, 60.0)],
            },
            Need { quantity: 30.0, shortage_cost: 0.0, offers: vec![offer(0, 6.0, &[], 500.0, 1.0), offer(1, 5.0, &[], 500.0, 50.0)] },
            Need { quantity: 100.0, shortage_cost: 0.0, offers: vec![offer(0, 4.0, &[], 60.0, 1.0), offer(1, 5.0, &[], 500.0, 1.0)] },
        ];
        let p = Problem { suppliers: vec!["S1".into(), "S2".into()], needs, budget: None, max_share: None, lead_time_cost: 0.0 };
        let s = solve(&p, Limits::default()).unwrap();
        assert!(s.feasible());
        assert_eq!(s.status, "Optimal");
        assert!((s.objective - 1970.0).abs() < 1e-6, "{}", s.objective);
        assert_eq!(bought(&s, 0), vec![(0, 150.0, 9.0)]);
        assert_eq!(bought(&s, 1), vec![(0, 30.0, 6.0)]);
        assert_eq!(bought(&s, 2), vec![(0, 60.0, 4.0), (1, 40.0, 5.0)]);
    }

    #[test]
    fn reliability_prices_expected_shortage() {
        // Same price; S2 delivers late 40 % of the time and a unit short costs 5: 0.4 × 5 = 2 more.
        let mut late = offer(1, 3.0, &[], 100.0, 1.0);
        late.reliability = 0.6;
        let needs = vec![Need { quantity: 10.0, shortage_cost: 5.0, offers: vec![late, offer(0, 3.5, &[], 100.0, 1.0)] }];
        let p = Problem { suppliers: vec!["S1".into(), "S2".into()], needs, budget: None, max_share: None, lead_time_cost: 0.0 };
        let s = solve(&p, Limits::default()).unwrap();
        assert_eq!(bought(&s, 0), vec![(1, 10.0, 3.5)]);
    }

    #[test]
    fn infeasible_budget_and_capacity_are_explained() {
        let needs = vec![
            Need { quantity: 100.0, shortage_cost: 1.0, offers: vec![offer(0, 10.0, &[], 1000.0, 1.0)] },
            Need { quantity: 50.0, shortage_cost: 1.0, offers: vec![offer(1, 2.0, &[], 30.0, 1.0)] },
        ];
        let p = Problem { suppliers: vec!["S1".into(), "S2".into()], needs, budget: Some(900.0), max_share: None, lead_time_cost: 0.0 };
        let s = solve(&p, Limits::default()).unwrap();
        assert!(!s.feasible());
        let budget = s.bends.iter().find(|b| b.family == Family::Budget).expect("budget bent");
        // 100 × 10 + 30 × 2 (capacity) + 20 × 2 beyond capacity = 1100: 200 over.
        assert!((budget.amount - 200.0).abs() < 1e-6, "{budget:?}");
        let cap = s.bends.iter().find(|b| b.family == Family::Capacity).expect("capacity bent");
        assert_eq!((cap.need, cap.offer, cap.amount), (Some(1), Some(0), 20.0));
        assert!(s.bends.iter().all(|b| b.family != Family::Demand));
        assert!(budget.to_string().contains("budget short by 200"), "{budget}");
    }

    #[test]
    fn max_share_spreads_spend() {
        // S1 at 1.0, S2 at 1.5, 100 units, no supplier above 60 % of spend:
        // x1 ≤ 0.6 (x1 + 1.5 (100 − x1)) ⇔ x1 ≤ 69.2, so 69 units from S1 (69 / 115.5 = 59.7 %).
        let needs = vec![Need {
            quantity: 100.0,
            shortage_cost: 0.0,
            offers: vec![offer(0, 1.0, &[], 1000.0, 1.0), offer(1, 1.5, &[], 1000.0, 1.0)],
        }];
        let p = Problem { suppliers: vec!["S1".into(), "S2".into()], needs, budget: None, max_share: Some(0.6), lead_time_cost: 0.0 };
        let s = solve(&p, Limits { mip_rel_gap: 0.0, ..Limits::default() }).unwrap();
        assert!(s.feasible());
        assert_eq!(bought(&s, 0), vec![(0, 69.0, 1.0), (1, 31.0, 1.5)]);
    }
}
