//! A warm start for the MIP: each SKU's cheapest mix of tiers on its own, ignoring the budget
//! and share rows that couple SKUs. For each choice of at most one tier per offer, the units
//! are the tiers' minimums, topped up from the cheapest chosen tiers to cover the need; the
//! cheapest covering choice wins. In the relaxed model a choice may also go past an offer's
//! capacity at the capacity penalty, and every slack then takes the value that makes the start
//! feasible, so HiGHS starts from a feasible plan near the relaxed optimum.
use super::Problem;
use super::model::{Built, Family, TierCol, penalties};

/// Most tier combinations tried per SKU; beyond it the SKU starts empty (HiGHS finds its own).
const MAX_COMBINATIONS: usize = 4096;

/// Column values for HiGHS, or `None` when no SKU could be started.
pub(super) fn warm_start(problem: &Problem, built: &Built, relaxed: bool) -> Option<Vec<f64>> {
    let (_, capacity_pen, demand_pen) = penalties(problem);
    let pens = relaxed.then_some(Bending { capacity: capacity_pen, demand: demand_pen });
    let mut x = vec![0.0; built.n_cols];
    let mut covered = vec![0.0; problem.needs.len()];
    let mut any = false;
    let mut at = 0;
    while at < built.tiers.len() {
        let need = built.tiers[at].need;
        let end = at + built.tiers[at..].iter().take_while(|t| t.need == need).count();
        if let Some(units) = best_mix(&built.tiers[at..end], problem.needs[need].quantity, pens) {
            for (t, q) in built.tiers[at..end].iter().zip(units) {
                x[t.col.index()] = q;
                covered[need] += q;
            }
            any = true;
        }
        at = end;
    }
    if !any {
        return None;
    }
    fill_slacks(problem, built, &covered, &mut x);
    Some(x)
}

/// Units per tier (same order) of the cheapest covering choice, if any choice covers `need`.
fn best_mix(tiers: &[TierCol], need: f64, pens: Option<Bending>) -> Option<Vec<f64>> {
    // Offers in order, each with its tier indices; a choice picks one tier or none per offer.
    let mut offers: Vec<Vec<usize>> = vec![];
    for (i, t) in tiers.iter().enumerate() {
        match offers.last_mut() {
            Some(o) if tiers[o[0]].offer == t.offer => o.push(i),
            _ => offers.push(vec![i]),
        }
    }
    let combinations = offers.iter().try_fold(1usize, |acc, o| acc.checked_mul(o.len() + 1))?;
    if combinations > MAX_COMBINATIONS {
        return None;
    }
    let mut best: Option<(f64, Vec<f64>)> = None;
    for mut code in 0..combinations {
        let chosen: Vec<usize> = offers
            .iter()
            .filter_map(|o| {
                let pick = code % (o.len() + 1);
                code /= o.len() + 1;
                (pick > 0).then(|| o[pick - 1])
            })
            .collect();
        if let Some((cost, units)) = fill(tiers, &chosen, need, pens) {
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, units));
            }
        }
    }
    best.map(|b| b.1)
}

/// Penalties per unit of the relaxed model's bends.
#[derive(Clone, Copy)]
struct Bending {
    capacity: f64,
    demand: f64,
}

/// Minimums of the chosen tiers, then the rest of the need from the cheapest within capacity,
/// then (relaxed model only) past capacity, and what is still missing as unmet demand, each at
/// its penalty: cost and units.
fn fill(tiers: &[TierCol], chosen: &[usize], need: f64, pens: Option<Bending>) -> Option<(f64, Vec<f64>)> {
    let mut units = vec![0.0; tiers.len()];
    let mut got = 0.0;
    for &i in chosen {
        units[i] = tiers[i].lo;
        got += tiers[i].lo;
    }
    let mut by_cost = chosen.to_vec();
    by_cost.sort_by(|&a, &b| tiers[a].cost.total_cmp(&tiers[b].cost));
    let passes: &[bool] = if pens.is_some() { &[false, true] } else { &[false] };
    for &past_capacity in passes {
        for &i in &by_cost {
            let top = if past_capacity { tiers[i].hi } else { tiers[i].hi.min(tiers[i].cap) };
            let add = (need - got).max(0.0).min(top - units[i]).max(0.0);
            units[i] += add;
            got += add;
        }
    }
    let over: f64 = chosen.iter().map(|&i| (units[i] - tiers[i].cap).max(0.0)).sum();
    let short = (need - got).max(0.0);
    let bends = match pens {
        Some(p) => over * p.capacity + short * p.demand,
        None if over > 0.0 || short > 1e-9 => return None,
        None => 0.0,
    };
    Some((chosen.iter().map(|&i| units[i] * tiers[i].cost).sum::<f64>() + bends, units))
}

/// Slack values that make the start feasible in the relaxed model (none in the strict one).
fn fill_slacks(problem: &Problem, built: &Built, covered: &[f64], x: &mut [f64]) {
    let mut by_supplier = vec![0.0; problem.suppliers.len()];
    let mut by_offer: std::collections::HashMap<(usize, usize), (f64, f64)> = Default::default();
    for t in &built.tiers {
        by_supplier[problem.needs[t.need].offers[t.offer].supplier] += x[t.col.index()] * t.price;
        by_offer.entry((t.need, t.offer)).or_insert((0.0, t.cap)).0 += x[t.col.index()];
    }
    let total: f64 = by_supplier.iter().sum();
    for (bend, col) in &built.slacks {
        x[col.index()] = match bend.family {
            Family::Demand => bend.need.map_or(0.0, |n| (problem.needs[n].quantity - covered[n]).max(0.0)),
            Family::Capacity => match (bend.need, bend.offer) {
                (Some(n), Some(k)) => by_offer.get(&(n, k)).map_or(0.0, |(q, cap)| (q - cap).max(0.0)),
                _ => 0.0,
            },
            Family::Budget => problem.budget.map_or(0.0, |b| (total - b).max(0.0)),
            Family::Share => {
                let own =
                    bend.supplier.as_deref().and_then(|s| problem.suppliers.iter().position(|p| p == s)).map_or(0.0, |j| by_supplier[j]);
                (own - problem.max_share.unwrap_or(1.0) * total).max(0.0)
            }
        };
    }
}
