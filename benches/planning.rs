//! Weekly-planning benchmark (issue 7, point 5): prints numbers, asserts nothing.
//!
//! 1. Policies for 50,000 SKU-locations from 100 sample paths × 28 steps each (lead time drawn
//!    4 times per path), on all cores; and the same from 3 quantiles per step (paths drawn).
//! 2. Allocation of 20,000 SKUs × 3 suppliers with price breaks, MOQs, capacity and a budget,
//!    solved by HiGHS to a 0.5 % gap.
//! Peak RSS is the process's high-water mark after each part.
//!
//!     cargo bench --bench planning [-- --skus 20000 --locations 50000]
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use restock::alloc::{Limits, Need, Offer, Problem, Tier};
use restock::policy::interval::{draw_paths, interval_demand};
use restock::policy::{LeadTime, Ordering, Paths, Target, compute};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

/// One SKU-location's paths: a level with a weekly cycle and gamma-ish noise.
fn paths(i: usize, n: usize, horizon: usize) -> Paths {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let level = rng.random_range(0.5..50.0);
    let values = (0..n * horizon)
        .map(|k| {
            let week = [1.0, 0.9, 0.9, 1.0, 1.1, 1.4, 1.3][k % horizon % 7];
            (level * week * (1.0 + 0.4 * (rng.random::<f64>() - 0.5) * 2.0)).max(0.0)
        })
        .collect();
    Paths { values, horizon }
}

fn policies(locations: usize, from_quantiles: bool) -> (f64, f64) {
    let started = Instant::now();
    let total: f64 = (0..locations)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(7 ^ i as u64);
            let p = if from_quantiles {
                let level = 1.0 + (i % 50) as f64;
                let q: Vec<Vec<f64>> = (0..28).map(|_| vec![0.6 * level, level, 1.5 * level]).collect();
                draw_paths(&[0.1, 0.5, 0.9], &q, 100, 0.5, true, &mut rng)
            } else {
                paths(i, 100, 28)
            };
            let lead = LeadTime { mean: 5.0 + (i % 10) as f64, sd: 2.0 };
            let d = interval_demand(&p, 7.0, lead, 4, &mut rng);
            let o = Ordering { inventory_position: 20.0, case_pack: 6.0, moq: 12.0, unit_cost: 3.0 };
            compute(&d, Target::FillRate(0.98), &o, None).order_qty
        })
        .sum();
    (started.elapsed().as_secs_f64(), total)
}

fn allocation_problem(skus: usize, budget_factor: f64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let suppliers: Vec<String> = (0..25).map(|s| format!("SUP-{s:03}")).collect();
    let needs = (0..skus)
        .map(|_| {
            let quantity = rng.random_range(10..2000) as f64;
            let base = rng.random_range(1.0..80.0);
            let offers = (0..3)
                .map(|k| {
                    let unit_cost: f64 = base * rng.random_range(0.9..1.2);
                    let tiers = rng.random_range(0..=3);
                    Offer {
                        supplier: rng.random_range(0..suppliers.len()),
                        unit_cost,
                        breaks: (1..=tiers)
                            .map(|t| Tier { min_qty: (100 * t * t) as f64, unit_cost: unit_cost * (1.0 - 0.04 * t as f64) })
                            .collect(),
                        // The first offer alone could cover the order; the others cover part of it.
                        capacity: (quantity * if k == 0 { rng.random_range(1.0..1.5) } else { rng.random_range(0.3..1.5) })
                            .ceil()
                            .max(200.0),
                        moq: [1.0, 6.0, 12.0, 24.0, 48.0, 100.0][rng.random_range(0..6)],
                        lead_time_days: rng.random_range(3.0..30.0),
                        reliability: rng.random_range(0.75..0.99),
                    }
                })
                .collect();
            Need { quantity, shortage_cost: base * 0.5, offers }
        })
        .collect::<Vec<_>>();
    // A budget above the cheapest base-price cover (ignoring capacity): binding, yet feasible.
    let base_cost: f64 = needs.iter().map(|n: &Need| n.quantity * n.offers.iter().map(|o| o.unit_cost).fold(f64::MAX, f64::min)).sum();
    Problem { suppliers, needs, budget: (budget_factor > 0.0).then_some(base_cost * budget_factor), max_share: None, lead_time_cost: 0.0 }
}

/// The allocation instance as JSON, for the Python peer (benches/planning_vs_python.py).
fn dump(p: &Problem) -> serde_json::Value {
    let needs: Vec<serde_json::Value> = p
        .needs
        .iter()
        .map(|n| {
            let offers: Vec<serde_json::Value> = n
                .offers
                .iter()
                .map(|o| {
                    let breaks: Vec<[f64; 2]> = o.breaks.iter().map(|t| [t.min_qty, t.unit_cost]).collect();
                    serde_json::json!({ "supplier": o.supplier, "unit_cost": o.unit_cost, "breaks": breaks, "capacity": o.capacity,
                        "moq": o.moq, "reliability": o.reliability })
                })
                .collect();
            serde_json::json!({ "quantity": n.quantity, "shortage_cost": n.shortage_cost, "offers": offers })
        })
        .collect();
    serde_json::json!({ "suppliers": p.suppliers.len(), "budget": p.budget, "needs": needs })
}

fn main() {
    let locations = arg("--locations", 50_000);
    let skus = arg("--skus", 20_000);
    println!("threads: {}", rayon::current_num_threads());
    let (s, total) = policies(locations, false);
    println!(
        "policies from paths: {locations} SKU-locations × 100 paths × 28 steps: {s:.2} s (target < 10 s), Σ order {total:.0}, peak RSS {:.0} MiB",
        peak_rss_mib()
    );
    let (s, total) = policies(locations, true);
    println!(
        "policies from quantiles (100 paths drawn): {locations} SKU-locations: {s:.2} s, Σ order {total:.0}, peak RSS {:.0} MiB",
        peak_rss_mib()
    );
    let budget = arg("--budget-percent", 110) as f64 / 100.0;
    let problem = allocation_problem(skus, budget);
    if let Some(i) = std::env::args().position(|a| a == "--dump") {
        let path = std::env::args().nth(i + 1).expect("--dump FILE");
        std::fs::write(&path, dump(&problem).to_string()).expect("write the instance");
    }
    let started = Instant::now();
    let sol = restock::alloc::solve(&problem, Limits { time_limit_s: 120.0, mip_rel_gap: 0.005, threads: 2 }).expect("solves");
    println!(
        "allocation: {skus} SKUs × 3 offers: {:.2} s (target < 60 s), status {}, gap {:.3} %, objective {:.0}, bound {:.0}, {} lines, feasible {}, peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        sol.status,
        sol.gap * 100.0,
        sol.objective,
        sol.bound,
        sol.lines.len(),
        sol.feasible(),
        peak_rss_mib()
    );
}
