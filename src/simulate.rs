//! `restock simulate`: replay the weekly policy over the last N weeks of a lake's published
//! `demand_daily` (weeks no forecast saw), once per forecast method, side by side: holding,
//! ordering, purchase and shortage cost, fill rate and cycle service level, per ABC class and
//! in total. The difference in cost between methods is the forecast's value added.
//!
//! Reads with DataFusion (the published `demand_daily`, the raw `supplier_offers`), then hands
//! plain series to `forecast/` and `policy::simulate`; no stages, no run history.
use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::evaluate::Candidate;
use crate::forecast::{Method, QuantileForecast, Request, ensemble};
use crate::lm::forecast::Input;
use crate::policy::LeadTime;
use crate::policy::simulate::{Outcome, SimConfig, SimItem, simulate};
use crate::storage::Lake;

/// Quantile levels each forecast gives the policy.
const LEVELS: [f64; 11] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98];

/// One SKU × location: its demand, start stock and cheapest offer.
#[derive(Debug, Clone)]
pub struct Series {
    pub sku: String,
    pub location: String,
    pub demand: Vec<f64>,
    pub start_stock: f64,
    pub lead: LeadTime,
    pub unit_cost: f64,
    pub moq: f64,
    /// A (top 80 % of history revenue), B (next 15 %), C (the rest).
    pub class: char,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub weeks: usize,
    /// At most this many series, spread evenly over the table (0: all).
    pub max_series: usize,
    pub season: usize,
    pub seed: u64,
}

/// One method's outcome per class and in total.
#[derive(Debug, Clone)]
pub struct MethodResult {
    pub method: String,
    pub by_class: Vec<(char, Outcome)>,
    pub total: Outcome,
    pub seconds: f64,
}

/// `fill_rate=0.98`, `cycle_service_level=0.95` or `newsvendor=SHORTAGE,HOLDING`.
pub fn parse_target(s: &str) -> Result<crate::policy::Target> {
    use crate::policy::Target;
    let (kind, value) = s.split_once('=').unwrap_or((s, ""));
    let num = |v: &str| v.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("--target {s}: `{v}` is not a number"));
    let target = match kind.trim() {
        "fill_rate" => Target::FillRate(num(value)?),
        "cycle_service_level" => Target::CycleService(num(value)?),
        "newsvendor" => {
            let (p, h) = value.split_once(',').ok_or_else(|| anyhow::anyhow!("--target newsvendor=SHORTAGE,HOLDING (costs per unit)"))?;
            Target::Costs { shortage: num(p)?, holding: num(h)? }
        }
        other => bail!("--target `{other}`: use fill_rate=β, cycle_service_level=α or newsvendor=SHORTAGE,HOLDING"),
    };
    target.check().map_err(|e| anyhow::anyhow!("--target {s}: {e}"))?;
    Ok(target)
}

/// Daily demand per SKU × location from the lake's published `demand_daily`, joined to each
/// SKU's cheapest offer in `raw/supplier_offers/`.
pub async fn load(lake: &Lake, opts: &Options) -> Result<Vec<Series>> {
    let (ctx, tables) = crate::query::session(lake).await?;
    if !tables.iter().any(|t| t == "demand_daily") {
        bail!("the lake has no published `demand_daily` table: run the nightly pipeline first (restock demo)");
    }
    let offers = lake.resolve("raw/supplier_offers/")?;
    lake.register_url(&ctx, &offers)?;
    ctx.register_parquet("offers", offers.as_str(), Default::default()).await?;
    let sql = "WITH o AS (SELECT sku_id, unit_cost, lead_time_mean_days, lead_time_sd_days, moq, \
                 ROW_NUMBER() OVER (PARTITION BY sku_id ORDER BY unit_cost, supplier_id) AS rn FROM offers) \
               SELECT CAST(d.sku_id AS VARCHAR), CAST(d.location_id AS VARCHAR), CAST(d.units AS DOUBLE), \
                 CAST(d.on_hand + d.on_order AS DOUBLE), CAST(o.unit_cost AS DOUBLE), CAST(o.lead_time_mean_days AS DOUBLE), \
                 CAST(o.lead_time_sd_days AS DOUBLE), CAST(o.moq AS DOUBLE) \
               FROM demand_daily d JOIN o ON d.sku_id = o.sku_id AND o.rn = 1 ORDER BY 1, 2, d.date";
    let batch = crate::engine::collect_plain(ctx.sql(sql).await?).await?;
    let mut series = group(&[batch], opts.weeks * 7)?;
    classify(&mut series, opts.weeks * 7);
    if opts.max_series > 0 && series.len() > opts.max_series {
        let step = series.len() as f64 / opts.max_series as f64;
        series = (0..opts.max_series).map(|i| series[(i as f64 * step) as usize].clone()).collect();
    }
    Ok(series)
}

/// Rows (sorted by key, date) into series; the start stock is the last snapshot before the replay.
fn group(batches: &[RecordBatch], replay_days: usize) -> Result<Vec<Series>> {
    // Each series with its daily stock snapshots, until the start stock is known.
    let mut raw: Vec<(Series, Vec<f64>)> = vec![];
    for b in batches {
        let (Some(sku), Some(loc)) = (b.column(0).as_string_opt::<i32>(), b.column(1).as_string_opt::<i32>()) else {
            bail!("demand_daily: sku_id and location_id must be strings");
        };
        let num = |i: usize, r: usize| {
            let c = b.column(i).as_primitive::<Float64Type>();
            if c.is_null(r) { 0.0 } else { c.value(r) }
        };
        for r in 0..b.num_rows() {
            let (s, l) = (sku.value(r), loc.value(r));
            if raw.last().is_none_or(|(x, _)| x.sku != s || x.location != l) {
                let series = Series {
                    sku: s.into(),
                    location: l.into(),
                    demand: vec![],
                    start_stock: 0.0,
                    lead: LeadTime { mean: num(5, r).max(0.0), sd: num(6, r).max(0.0) },
                    unit_cost: num(4, r),
                    moq: num(7, r),
                    class: 'C',
                };
                raw.push((series, vec![]));
            }
            let (series, stock) = raw.last_mut().expect("pushed");
            series.demand.push(num(2, r).max(0.0));
            stock.push(num(3, r));
        }
    }
    let out: Vec<Series> = raw
        .into_iter()
        .filter(|(s, _)| s.demand.len() > replay_days + 28)
        .map(|(mut s, stock)| {
            s.start_stock = stock[stock.len() - replay_days - 1].max(0.0);
            s
        })
        .collect();
    if out.is_empty() {
        bail!("no series in demand_daily is longer than the replay ({replay_days} days) plus 28 days of history");
    }
    Ok(out)
}

/// ABC classes by revenue over the history before the replay.
fn classify(series: &mut [Series], replay_days: usize) {
    let revenue: Vec<f64> = series.iter().map(|s| s.demand[..s.demand.len() - replay_days].iter().sum::<f64>() * s.unit_cost).collect();
    let total: f64 = revenue.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by(|&a, &b| revenue[b].total_cmp(&revenue[a]));
    let mut cumulative = 0.0;
    for i in order {
        let before = cumulative / total;
        cumulative += revenue[i];
        series[i].class = if before < 0.8 {
            'A'
        } else if before < 0.95 {
            'B'
        } else {
            'C'
        };
    }
}

/// The statistical methods a replay forecasts with: the method, or an ensemble's members (a
/// replay forecasts one series at a time, so its ensemble is always the members' median: there
/// is no run of series to choose a member on).
fn stat_members(method: &Candidate) -> Result<Vec<Method>> {
    let one = |c: &Candidate| match c {
        Candidate::Stat(m) => Ok(*m),
        _ => Err(anyhow!("`ensemble` in `restock simulate` takes statistical members only (not `{}`)", c.name())),
    };
    match method {
        Candidate::Ensemble(members) => members.iter().map(one).collect(),
        c => Ok(vec![one(c)?]),
    }
}

/// Replay every series under one forecast method: statistical methods in parallel over
/// series, the language model one series at a time (its forecasts batch over paths).
pub fn run_method(
    series: &[Series],
    method: &Candidate,
    cfg: &SimConfig,
    opts: &Options,
    bar: &indicatif::ProgressBar,
) -> Result<MethodResult> {
    let started = std::time::Instant::now();
    bar.set_length(series.len() as u64);
    bar.set_position(0);
    bar.set_message(method.name().to_string());
    let outcomes: Vec<(char, Outcome)> = match method {
        Candidate::Stat(_) | Candidate::Ensemble(_) => {
            let methods = stat_members(method)?;
            series
                .par_iter()
                .enumerate()
                .map(|(i, s)| {
                    let forecast = |history: &[f64], req: &Request| {
                        let each: Vec<QuantileForecast> =
                            methods.iter().map(|m| m.forecast(history, req).expect("history has observed values")).collect();
                        if each.len() == 1 {
                            each.into_iter().next().expect("one")
                        } else {
                            ensemble::median(&each.iter().collect::<Vec<_>>())
                        }
                    };
                    let r = replay(i, s, cfg, opts, &forecast);
                    bar.inc(1);
                    r
                })
                .collect()
        }
        Candidate::Lm { ck, opts: lm, .. } => {
            let longest = series.iter().map(|s| horizon(s, cfg)).max().unwrap_or(0);
            let most = crate::lm::forecast::max_horizon(ck);
            if longest > most {
                bail!(
                    "method lm: the replay needs forecasts {longest} days ahead (review + lead time), more than the model allows ({most})"
                );
            }
            series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let forecast = |history: &[f64], req: &Request| {
                        let input = [Input { history, text: None, ..Input::default() }];
                        let mut f = crate::lm::forecast::forecast(ck, &input, req, lm, |_| true).expect("the model forecasts");
                        f.remove(0)
                    };
                    replay(i, s, cfg, opts, &forecast)
                })
                .collect()
        }
    };
    let mut by: HashMap<char, Outcome> = HashMap::new();
    let mut total = Outcome::default();
    for (c, o) in &outcomes {
        by.entry(*c).or_default().add(o);
        total.add(o);
    }
    let mut by_class: Vec<(char, Outcome)> = by.into_iter().collect();
    by_class.sort_by_key(|c| c.0);
    Ok(MethodResult { method: method.name().into(), by_class, total, seconds: started.elapsed().as_secs_f64() })
}

/// Days each forecast covers: the review period plus a generous lead time, at least 28.
fn horizon(s: &Series, cfg: &SimConfig) -> usize {
    ((cfg.review_days as f64 + s.lead.mean + 3.0 * s.lead.sd).ceil() as usize).max(28)
}

/// One series' replay, its forecasts from `forecast(history, request)`.
fn replay(
    i: usize,
    s: &Series,
    cfg: &SimConfig,
    opts: &Options,
    forecast: &dyn Fn(&[f64], &Request) -> QuantileForecast,
) -> (char, Outcome) {
    let split = s.demand.len() - opts.weeks * 7;
    let horizon = horizon(s, cfg);
    let quantiles = |history: &[f64]| {
        let req = Request { horizon, season: opts.season, levels: &LEVELS, nonnegative: true };
        let f = forecast(history, &req);
        (0..horizon).map(|h| f.quantiles.iter().map(|q| q[h]).collect()).collect()
    };
    let item = SimItem {
        history: &s.demand[..split],
        actual: &s.demand[split..],
        lead: s.lead,
        unit_cost: s.unit_cost,
        moq: s.moq,
        start_stock: s.start_stock,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (s.class, simulate(&item, cfg, &LEVELS, &quantiles, &mut rng))
}

/// The side-by-side table: one row per method and class, then totals, with the cost relative
/// to the first method.
pub fn report(results: &[MethodResult]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "method",
        "class",
        "holding",
        "ordering",
        "shortage",
        "operating cost",
        "vs first",
        "purchase",
        "fill rate",
        "cycle service",
        "seconds",
    ]);
    let base = results.first().map(|r| r.total.operating_cost()).unwrap_or(1.0).max(f64::MIN_POSITIVE);
    for r in results {
        let rows = r.by_class.iter().map(|(c, o)| (c.to_string(), o)).chain([("all".to_string(), &r.total)]);
        for (class, o) in rows {
            let all = class == "all";
            t.add_row([
                r.method.clone(),
                class,
                format!("{:.0}", o.holding),
                format!("{:.0}", o.ordering),
                format!("{:.0}", o.shortage),
                format!("{:.0}", o.operating_cost()),
                if all { format!("×{:.3}", o.operating_cost() / base) } else { String::new() },
                format!("{:.0}", o.purchase),
                format!("{:.3}", o.fill_rate()),
                format!("{:.3}", o.cycle_service()),
                if all { format!("{:.1}", r.seconds) } else { String::new() },
            ]);
        }
    }
    t
}
