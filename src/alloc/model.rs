//! Building the MIP, calling HiGHS, reading the answer back.
//!
//! Each offer's price tiers are semi-integer columns: z = 0 or lo ≤ z ≤ hi, with lo the tier's
//! break (at least the MOQ) and hi the next break. Splitting an offer's units over tiers never
//! beats putting them all in the tier their total reaches (every unit gets that lower price and
//! the total still clears the MOQ), so no binary "one tier" switch is needed: the read-back
//! merges an offer's units and prices them at that tier.
use std::fmt;

use anyhow::{Result, bail};
use highs::{Col, HighsModelStatus, RowProblem, Sense};

use super::{Limits, Line, Need, Offer, Problem, Solution};

/// A constraint family the relaxed solve may bend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Budget,
    Share,
    Capacity,
    Demand,
}

/// One constraint that had to bend, by how much (currency for budget and share, units otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Bend {
    pub family: Family,
    pub need: Option<usize>,
    pub offer: Option<usize>,
    pub supplier: Option<String>,
    pub amount: f64,
}

impl fmt::Display for Bend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |f: &mut fmt::Formatter<'_>| match (&self.supplier, self.need) {
            (Some(s), Some(n)) => write!(f, " (need #{n}, supplier {s})"),
            (Some(s), None) => write!(f, " (supplier {s})"),
            (None, Some(n)) => write!(f, " (need #{n})"),
            (None, None) => Ok(()),
        };
        match self.family {
            Family::Budget => write!(f, "budget short by {:.0}", self.amount),
            Family::Share => write!(f, "max share exceeded by {:.0} of spend", self.amount).and_then(|_| at(f)),
            Family::Capacity => write!(f, "capacity exceeded by {:.0} units", self.amount).and_then(|_| at(f)),
            Family::Demand => write!(f, "demand left unmet: {:.0} units", self.amount).and_then(|_| at(f)),
        }
    }
}

/// A tier column of one offer.
pub(super) struct TierCol {
    pub need: usize,
    pub offer: usize,
    pub col: Col,
    /// z = 0 or lo ≤ z ≤ hi; `cap` is the offer's capacity (below `hi` when it may bend).
    pub lo: f64,
    pub hi: f64,
    pub cap: f64,
    /// Purchase price per unit, and the objective's cost per unit (price + expected shortage).
    pub price: f64,
    pub cost: f64,
}

/// The columns and rows that read-back needs.
pub(super) struct Built {
    pb: RowProblem,
    pub tiers: Vec<TierCol>,
    pub slacks: Vec<(Bend, Col)>,
    pub n_cols: usize,
}

/// Tiers of an offer as (lo, hi, unit cost): an implied base tier, then the breaks. No tier
/// needs more than max(need, lo) units (more only adds cost), which keeps the LP bound tight.
fn tiers(o: &Offer, top: f64, need: f64) -> Vec<(f64, f64, f64)> {
    let mut breaks = o.breaks.clone();
    breaks.sort_by(|a, b| a.min_qty.total_cmp(&b.min_qty));
    let mut all = vec![(0.0, o.unit_cost)];
    all.extend(breaks.iter().map(|t| (t.min_qty, t.unit_cost)));
    let mut out = vec![];
    for (i, &(min, cost)) in all.iter().enumerate() {
        let lo = min.max(o.moq).max(1.0);
        let hi = all.get(i + 1).map_or(top, |n| n.0.min(top)).min(need.max(lo));
        if lo <= hi {
            out.push((lo, hi, cost));
        }
    }
    out
}

/// Penalties per unit of bend: budget and share first, capacity next, unmet demand last.
pub(super) fn penalties(problem: &Problem) -> (f64, f64, f64) {
    let top = problem.needs.iter().flat_map(|n| n.offers.iter().map(|o| o.unit_cost)).fold(1.0_f64, f64::max);
    (10.0, 100.0 * top, 1000.0 * top)
}

fn build(problem: &Problem, relaxed: bool) -> Built {
    let (money_pen, cap_pen, demand_pen) = penalties(problem);
    let mut b = Built { pb: RowProblem::default(), tiers: vec![], slacks: vec![], n_cols: 0 };
    let mut spend: Vec<(Col, f64)> = vec![];
    let mut by_supplier: Vec<Vec<(Col, f64)>> = vec![vec![]; problem.suppliers.len()];
    for (i, need) in problem.needs.iter().enumerate() {
        let mut cover: Vec<(Col, f64)> = vec![];
        for (k, o) in need.offers.iter().enumerate() {
            let top = if relaxed { o.capacity.max(need.quantity).max(o.moq) } else { o.capacity };
            let extra = need.shortage_cost * (1.0 - o.reliability) + problem.lead_time_cost * o.lead_time_days;
            let mut cap_row: Vec<(Col, f64)> = vec![];
            for (lo, hi, cost) in tiers(o, top, need.quantity) {
                let col = b.pb.add_semi_integer_column(cost + extra, lo..=hi);
                b.tiers.push(TierCol { need: i, offer: k, col, lo, hi, cap: o.capacity, price: cost, cost: cost + extra });
                cover.push((col, 1.0));
                cap_row.push((col, 1.0));
                spend.push((col, cost));
                by_supplier[o.supplier].push((col, cost));
            }
            if relaxed {
                let v = b.pb.add_column(cap_pen, 0.0..);
                cap_row.push((v, -1.0));
                b.slacks.push((bend(Family::Capacity, Some(i), Some(k), Some(problem.suppliers[o.supplier].clone())), v));
            }
            b.pb.add_row(..=o.capacity, &cap_row);
        }
        if relaxed {
            let u = b.pb.add_column(demand_pen, 0.0..);
            cover.push((u, 1.0));
            b.slacks.push((bend(Family::Demand, Some(i), None, None), u));
        }
        b.pb.add_row(need.quantity.., &cover);
    }
    if let Some(budget) = problem.budget {
        let mut row = spend.clone();
        if relaxed {
            let w = b.pb.add_column(money_pen, 0.0..);
            row.push((w, -1.0));
            b.slacks.push((bend(Family::Budget, None, None, None), w));
        }
        b.pb.add_row(..=budget, &row);
    }
    if let Some(share) = problem.max_share {
        for (j, cols) in by_supplier.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
            // Σ_j spend − share × Σ spend ≤ 0: each column once, its own supplier's at (1 − share).
            let own: std::collections::HashSet<usize> = cols.iter().map(|(c, _)| c.index()).collect();
            let mut row: Vec<(Col, f64)> =
                spend.iter().map(|&(c, cost)| (c, if own.contains(&c.index()) { (1.0 - share) * cost } else { -share * cost })).collect();
            if relaxed {
                let s = b.pb.add_column(money_pen, 0.0..);
                row.push((s, -1.0));
                b.slacks.push((bend(Family::Share, None, None, Some(problem.suppliers[j].clone())), s));
            }
            b.pb.add_row(..=0.0, &row);
        }
    }
    b.n_cols = b.pb.num_cols();
    b
}

fn bend(family: Family, need: Option<usize>, offer: Option<usize>, supplier: Option<String>) -> Bend {
    Bend { family, need, offer, supplier, amount: 0.0 }
}

/// Solve once; `None` when the strict problem is infeasible.
pub(super) fn solve(problem: &Problem, limits: Limits, relaxed: bool) -> Result<Option<Solution>> {
    let built = build(problem, relaxed);
    let start = super::start::warm_start(problem, &built, relaxed);
    let mut model = built.pb.optimise(Sense::Minimise);
    // A near-optimal start (each SKU's cheapest tier mix on its own) spares HiGHS the search
    // for a first good solution, which is most of its time on large instances.
    if let Some(start) = &start {
        let _ = model.try_set_solution(Some(start), None, None, None);
        // With a near-optimal incumbent only the root bound is needed, and HiGHS' presolve of
        // the semi-integer columns costs far more than the root LP (33 s against 5 s for
        // 20,000 SKUs): skip it.
        model.set_option("presolve", "off");
    }
    // In the relaxed model the gap is on the penalised objective; the start already prices each
    // SKU's bends and purchases at their separate optimum, so purchases do not drift with it.
    model.set_option("mip_rel_gap", limits.mip_rel_gap);
    let solved = model.solve();
    let status = solved.status();
    match status {
        HighsModelStatus::Infeasible if !relaxed => return Ok(None),
        HighsModelStatus::Optimal | HighsModelStatus::ReachedTimeLimit | HighsModelStatus::ObjectiveBound => {}
        HighsModelStatus::ModelEmpty => {
            return Ok(Some(Solution {
                status: "Optimal".into(),
                objective: 0.0,
                bound: 0.0,
                gap: 0.0,
                purchase_cost: 0.0,
                lines: vec![],
                bends: vec![],
                seconds: 0.0,
            }));
        }
        other => bail!("HiGHS stopped with status {other:?}"),
    }
    let solution = solved.get_solution();
    let x = solution.columns();
    if x.is_empty() || (status == HighsModelStatus::ReachedTimeLimit && !x.iter().all(|v| v.is_finite())) {
        bail!("HiGHS found no feasible allocation within the time limit ({} s)", limits.time_limit_s);
    }
    let lines = read_lines(problem, &built.tiers, x);
    let bends = built
        .slacks
        .into_iter()
        .filter_map(|(mut b, col)| {
            b.amount = x[col_index(col)];
            (b.amount > 1e-6).then_some(b)
        })
        .collect();
    let objective = solved.objective_value();
    let bound = solved.double_info_value(c"mip_dual_bound").unwrap_or(objective);
    Ok(Some(Solution {
        status: format!("{status:?}"),
        objective,
        bound,
        gap: solved.mip_gap().max(0.0),
        purchase_cost: lines.iter().map(|l| l.quantity * l.unit_cost).sum(),
        lines,
        bends,
        seconds: 0.0,
    }))
}

fn col_index(col: Col) -> usize {
    col.index()
}

/// One line per offer bought from: its units merged and priced at the tier their total reaches.
fn read_lines(problem: &Problem, tiers: &[TierCol], x: &[f64]) -> Vec<Line> {
    let mut lines: Vec<Line> = vec![];
    for t in tiers {
        let q = x[col_index(t.col)].round();
        if q <= 0.0 {
            continue;
        }
        match lines.last_mut() {
            Some(l) if l.need == t.need && l.offer == t.offer => l.quantity += q,
            _ => lines.push(Line { need: t.need, offer: t.offer, quantity: q, unit_cost: 0.0 }),
        }
    }
    for l in &mut lines {
        l.unit_cost = price(&problem.needs[l.need], l.offer, l.quantity);
    }
    lines
}

/// All-unit price of `q` units from offer `k`.
fn price(need: &Need, k: usize, q: f64) -> f64 {
    let o = &need.offers[k];
    o.breaks.iter().filter(|t| t.min_qty <= q).map(|t| t.unit_cost).fold(o.unit_cost, f64::min)
}
