//! Replaying an inventory policy day by day over realised demand (pure: no tables).
//!
//! Every review (each `review_days`), the item's forecaster sees the demand up to that day,
//! its quantiles become paths, the policy sets S and orders up to it; the order arrives after a
//! lead time drawn from the supplier's distribution. Each day arrivals come in, realised demand
//! is served from stock, and what cannot be served is lost or backordered. Costs and service
//! accumulate in an [`Outcome`].
use rand::Rng;

use super::interval::{LeadTime, draw_paths, interval_demand};
use super::{Ordering, Target, compute};

/// What happens to demand that finds no stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    LostSales,
    Backorder,
}

#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    pub review_days: usize,
    pub target: Target,
    /// Holding cost per unit-year as a fraction of unit cost.
    pub holding_rate_per_year: f64,
    pub order_cost: f64,
    /// Cost per unit short (lost or backordered).
    pub shortage_cost: f64,
    pub case_pack: f64,
    pub shortage: Shortage,
    /// Paths drawn from each forecast's quantiles, their day-to-day dependence, lead-time draws per path.
    pub paths: usize,
    pub dependence: f64,
    pub draws_per_path: usize,
}

/// One SKU × location to replay.
#[derive(Debug, Clone)]
pub struct SimItem<'a> {
    /// Daily demand before the replay starts (what the first forecast sees).
    pub history: &'a [f64],
    /// Realised daily demand over the replay.
    pub actual: &'a [f64],
    pub lead: LeadTime,
    pub unit_cost: f64,
    pub moq: f64,
    /// Stock at the start (on hand + on order).
    pub start_stock: f64,
}

/// Costs and service of one replay (sums, so outcomes add up over items).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub holding: f64,
    pub ordering: f64,
    pub purchase: f64,
    pub shortage: f64,
    pub demand: f64,
    /// Demand served from stock on the day it occurred.
    pub served: f64,
    pub cycles: usize,
    /// Review cycles in which no demand went unserved.
    pub cycles_in_stock: usize,
    pub orders: usize,
}

impl Outcome {
    pub fn add(&mut self, o: &Outcome) {
        self.holding += o.holding;
        self.ordering += o.ordering;
        self.purchase += o.purchase;
        self.shortage += o.shortage;
        self.demand += o.demand;
        self.served += o.served;
        self.cycles += o.cycles;
        self.cycles_in_stock += o.cycles_in_stock;
        self.orders += o.orders;
    }

    /// Holding + ordering + shortage: what the policy controls (purchase follows demand).
    pub fn operating_cost(&self) -> f64 {
        self.holding + self.ordering + self.shortage
    }

    pub fn fill_rate(&self) -> f64 {
        if self.demand > 0.0 { self.served / self.demand } else { 1.0 }
    }

    pub fn cycle_service(&self) -> f64 {
        if self.cycles > 0 { self.cycles_in_stock as f64 / self.cycles as f64 } else { 1.0 }
    }
}

/// Stock on hand, backlog and orders in transit during a replay.
struct State {
    on_hand: f64,
    backlog: f64,
    /// (arrival day, units).
    pipeline: Vec<(usize, f64)>,
}

/// Replay one item. `forecast(history)` returns per-step quantiles at `levels`.
pub fn simulate(
    item: &SimItem<'_>,
    cfg: &SimConfig,
    levels: &[f64],
    forecast: &dyn Fn(&[f64]) -> Vec<Vec<f64>>,
    rng: &mut impl Rng,
) -> Outcome {
    let mut out = Outcome::default();
    let mut st = State { on_hand: item.start_stock.max(0.0), backlog: 0.0, pipeline: vec![] };
    let mut history = item.history.to_vec();
    let hold_per_day = cfg.holding_rate_per_year * item.unit_cost / 365.0;
    let days = item.actual.len();
    for start in (0..days).step_by(cfg.review_days.max(1)) {
        let quantiles = forecast(&history);
        let paths = draw_paths(levels, &quantiles, cfg.paths, cfg.dependence, true, rng);
        let demand = interval_demand(&paths, cfg.review_days as f64, item.lead, cfg.draws_per_path, rng);
        let position = st.on_hand + st.pipeline.iter().map(|p| p.1).sum::<f64>() - st.backlog;
        let ordering = Ordering { inventory_position: position, case_pack: cfg.case_pack, moq: item.moq, unit_cost: item.unit_cost };
        let q = compute(&demand, cfg.target, &ordering, None).order_qty;
        if q > 0.0 {
            let lead = item.lead.draw(rng).round().max(1.0) as usize;
            st.pipeline.push((start + lead, q));
            out.orders += 1;
            out.ordering += cfg.order_cost;
            out.purchase += q * item.unit_cost;
        }
        let end = (start + cfg.review_days).min(days);
        let mut in_stock = true;
        for t in start..end {
            in_stock &= day(&mut st, t, item.actual[t], cfg, &mut out);
            out.holding += hold_per_day * st.on_hand;
            history.push(item.actual[t]);
        }
        out.cycles += 1;
        out.cycles_in_stock += in_stock as usize;
    }
    out
}

/// One day: arrivals (clearing any backlog first), then demand. True when nothing went short.
fn day(st: &mut State, t: usize, demand: f64, cfg: &SimConfig, out: &mut Outcome) -> bool {
    let arrived: f64 = st.pipeline.iter().filter(|p| p.0 == t).map(|p| p.1).sum();
    st.pipeline.retain(|p| p.0 != t);
    st.on_hand += arrived;
    let cleared = st.backlog.min(st.on_hand);
    st.backlog -= cleared;
    st.on_hand -= cleared;
    let served = demand.min(st.on_hand);
    st.on_hand -= served;
    let short = demand - served;
    out.demand += demand;
    out.served += served;
    out.shortage += short * cfg.shortage_cost;
    if cfg.shortage == Shortage::Backorder {
        st.backlog += short;
    }
    short <= 1e-9
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn cfg(shortage: Shortage) -> SimConfig {
        SimConfig {
            review_days: 7,
            target: Target::CycleService(0.95),
            holding_rate_per_year: 0.365,
            order_cost: 10.0,
            shortage_cost: 2.0,
            case_pack: 1.0,
            shortage,
            paths: 50,
            dependence: 0.5,
            draws_per_path: 1,
        }
    }

    #[test]
    fn a_perfect_forecast_with_fixed_lead_time_never_runs_out() {
        // Demand 10 a day, known exactly; lead time 3 days exactly; start with 100 in stock.
        let actual = vec![10.0; 28];
        let item = SimItem {
            history: &[10.0; 14],
            actual: &actual,
            lead: LeadTime { mean: 3.0, sd: 0.0 },
            unit_cost: 1.0,
            moq: 0.0,
            start_stock: 100.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let o = simulate(&item, &cfg(Shortage::LostSales), &[0.1, 0.5, 0.9], &|_| vec![vec![10.0; 3]; 28], &mut rng);
        assert_eq!((o.demand, o.served, o.shortage), (280.0, 280.0, 0.0));
        assert_eq!((o.cycles, o.cycles_in_stock), (4, 4));
        // S = 10 × (7 + 3) = 100 at every review: the first review orders nothing.
        assert_eq!(o.orders, 3);
        assert!((o.purchase - 210.0).abs() < 1e-9, "{}", o.purchase);
        // Holding at 0.001 a unit-day (0.365 / 365 × unit cost 1) on the end-of-day stock.
        assert!(o.holding > 0.0 && o.holding < 0.001 * 100.0 * 28.0);
    }

    #[test]
    fn underforecasting_runs_out_and_backorders_carry_over() {
        // The forecaster says 1 a day; demand is 10: almost everything is short.
        let actual = vec![10.0; 14];
        let item = SimItem {
            history: &[1.0; 14],
            actual: &actual,
            lead: LeadTime { mean: 2.0, sd: 0.0 },
            unit_cost: 1.0,
            moq: 0.0,
            start_stock: 0.0,
        };
        let under = |_: &[f64]| vec![vec![1.0; 3]; 28];
        let lost = simulate(&item, &cfg(Shortage::LostSales), &[0.1, 0.5, 0.9], &under, &mut ChaCha8Rng::seed_from_u64(2));
        let back = simulate(&item, &cfg(Shortage::Backorder), &[0.1, 0.5, 0.9], &under, &mut ChaCha8Rng::seed_from_u64(2));
        assert!(lost.fill_rate() < 0.2, "{}", lost.fill_rate());
        assert_eq!(lost.cycles_in_stock, 0);
        // Backorders inflate the position deficit, so the second review orders more than with lost sales.
        assert!(back.purchase > lost.purchase, "{} vs {}", back.purchase, lost.purchase);
        assert_eq!(lost.shortage, (lost.demand - lost.served) * 2.0);
    }
}
