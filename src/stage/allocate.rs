//! `allocate`: split each SKU's recommended order across its suppliers with the MIP of
//! [`crate::alloc`] (HiGHS), then hand each supplier's units to the SKU's locations.
//!
//! Inputs, by name: `orders` (keys, an order-quantity column: the `policy` table) and `offers`
//! (`supplier_id`, the SKU key, `unit_cost`, `lead_time_mean_days`, `capacity_per_week`, `moq`,
//! `price_breaks` (list of {min_qty, unit_cost}), `reliability`). Outputs: the allocations
//! (keys, supplier, quantity, unit cost, expected arrival) and a one-row summary (solver status,
//! objective, bound, gap, and what had to bend when the strict problem was infeasible).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use serde::Deserialize;

use super::quote_ident as quote;
use super::{Cancelled, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::alloc::{Bend, Family, Limits, Need, Offer, Problem, Solution, Tier};
use crate::diag::{Diagnostics, Pos};

pub struct AllocateKind;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum OnInfeasible {
    /// Publish the relaxed plan, say in the summary and a warning what bent.
    #[default]
    Relax,
    /// Fail the stage with the explanation; nothing is published.
    Fail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocateConfig {
    /// Key columns of a SKU × location in `orders`.
    series: Vec<String>,
    /// The key that names the SKU in `offers` (default: the first of `series`).
    sku: Option<String>,
    /// The order-quantity column of `orders`.
    #[serde(default = "default_quantity")]
    quantity: String,
    /// Cost of a unit short: prices each supplier's unreliability (a unit from a supplier
    /// with reliability r is expected short (1 − r) of the time).
    #[serde(default)]
    shortage_cost: f64,
    #[serde(default)]
    lead_time_cost_per_day: f64,
    budget: Option<f64>,
    max_share: Option<f64>,
    #[serde(default = "default_time_limit", deserialize_with = "crate::plan::deserialize_duration")]
    time_limit: Duration,
    #[serde(default = "default_gap")]
    mip_gap: f64,
    #[serde(default)]
    on_infeasible: OnInfeasible,
}

fn default_quantity() -> String {
    "order_qty".into()
}
fn default_time_limit() -> Duration {
    Duration::from_secs(60)
}
fn default_gap() -> f64 {
    0.005
}

const OFFER_COLUMNS: [&str; 7] =
    ["supplier_id", "unit_cost", "lead_time_mean_days", "capacity_per_week", "moq", "price_breaks", "reliability"];

#[derive(Debug)]
struct AllocateTask {
    stage: String,
    pos: Pos,
    cfg: AllocateConfig,
    order_date: NaiveDate,
}

impl StageKind for AllocateKind {
    fn name(&self) -> &'static str {
        "allocate"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: AllocateConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("allocate", 2)?;
        let mut diags = Diagnostics::default();
        for name in ["orders", "offers"] {
            if !decl.inputs.iter().any(|i| i == name) {
                diags.push(
                    decl.error(decl.pos.clone(), format!("an `allocate` stage needs an input named `{name}` (inputs: orders, offers)")),
                );
            }
        }
        if decl.inputs.len() != 2 {
            diags.push(decl.error(decl.pos.clone(), "an `allocate` stage reads exactly the inputs `orders` and `offers`"));
        }
        if cfg.series.is_empty() {
            diags.push(decl.error(decl.config.pos("series"), "`series` needs at least one key column"));
        }
        if let Some(s) = cfg.max_share.filter(|s| !(*s > 0.0 && *s <= 1.0)) {
            diags.push(decl.error(decl.config.pos("max_share"), format!("`max_share` must lie in (0, 1], got {s}")));
        }
        if let Some(b) = cfg.budget.filter(|b| *b < 0.0) {
            diags.push(decl.error(decl.config.pos("budget"), format!("`budget` cannot be negative, got {b}")));
        }
        if !(cfg.mip_gap >= 0.0 && cfg.mip_gap < 1.0) || cfg.shortage_cost < 0.0 || cfg.lead_time_cost_per_day < 0.0 {
            diags.push(decl.error(decl.pos.clone(), "`mip_gap` must lie in [0, 1) and costs cannot be negative"));
        }
        if cfg.time_limit.is_zero() {
            diags.push(decl.error(decl.config.pos("time_limit"), "`time_limit` must be positive"));
        }
        diags.into_result(())?;
        Ok(Arc::new(AllocateTask { stage: decl.id.into(), pos: decl.pos.clone(), cfg, order_date: decl.vars.run_date }))
    }
}

impl AllocateTask {
    fn sku(&self) -> &str {
        self.cfg.sku.as_deref().unwrap_or(&self.cfg.series[0])
    }

    fn check_inputs(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut need = |input: &str, cols: Vec<&str>| {
            for d in super::missing_columns(&self.stage, &self.pos, inputs, input, &cols) {
                diags.push(d);
            }
        };
        let mut order_cols: Vec<&str> = self.cfg.series.iter().map(String::as_str).collect();
        order_cols.push(&self.cfg.quantity);
        need("orders", order_cols);
        need("offers", [vec![self.sku()], OFFER_COLUMNS.to_vec()].concat());
        diags.into_result(())
    }
}

fn allocation_schema(series: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = series.iter().map(|s| Field::new(s, DataType::Utf8, false)).collect();
    fields.extend([
        Field::new("supplier_id", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("unit_cost", DataType::Float64, false),
        Field::new("line_cost", DataType::Float64, false),
        Field::new("order_date", DataType::Date32, false),
        Field::new("expected_arrival", DataType::Date32, false),
    ]);
    Arc::new(Schema::new(fields))
}

fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_date", DataType::Date32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("feasible", DataType::Boolean, false),
        Field::new("objective", DataType::Float64, false),
        Field::new("bound", DataType::Float64, false),
        Field::new("gap", DataType::Float64, false),
        Field::new("purchase_cost", DataType::Float64, false),
        Field::new("skus", DataType::Int64, false),
        Field::new("lines", DataType::Int64, false),
        Field::new("units", DataType::Int64, false),
        Field::new("unsupplied_skus", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
        Field::new("explanation", DataType::Utf8, true),
    ]))
}

/// One SKU's order as read: its locations' quantities, in key order.
struct SkuOrder {
    sku: String,
    locations: Vec<(Vec<String>, f64)>,
}

/// Offers as read, with the supplier ids and each SKU's offers.
struct Offers {
    suppliers: Vec<String>,
    by_sku: HashMap<String, Vec<Offer>>,
}

impl AllocateTask {
    async fn read_orders(&self, cx: &StageCx) -> Result<Vec<SkuOrder>> {
        let n = self.cfg.series.len();
        let sku_at = self.cfg.series.iter().position(|s| s == self.sku()).unwrap_or(0);
        let keys: Vec<String> = self.cfg.series.iter().map(|k| format!("CAST({} AS VARCHAR)", quote(k))).collect();
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {}, CAST({q} AS DOUBLE) FROM orders WHERE {q} > 0 ORDER BY {}",
            keys.join(", "),
            order.join(", "),
            q = quote(&self.cfg.quantity)
        );
        let b = cx.sql_batch(&sql).await?;
        let mut out: Vec<SkuOrder> = vec![];
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..n).map(|i| b.column(i).as_string::<i32>().value(r).to_string()).collect();
            let q = b.column(n).as_primitive::<Float64Type>().value(r).ceil();
            let at = *index.entry(key[sku_at].clone()).or_insert_with(|| {
                out.push(SkuOrder { sku: key[sku_at].clone(), locations: vec![] });
                out.len() - 1
            });
            out[at].locations.push((key, q));
        }
        Ok(out)
    }

    async fn read_offers(&self, cx: &StageCx) -> Result<Offers> {
        let sql = format!(
            "SELECT CAST({} AS VARCHAR) AS sku, CAST(supplier_id AS VARCHAR) AS supplier, CAST(unit_cost AS DOUBLE) AS unit_cost, CAST(lead_time_mean_days AS DOUBLE) AS lead, CAST(capacity_per_week AS DOUBLE) AS capacity, CAST(moq AS DOUBLE) AS moq, CAST(reliability AS DOUBLE) AS reliability, price_breaks FROM offers ORDER BY 1, 2",
            quote(self.sku())
        );
        let b = cx.sql_batch(&sql).await?;
        let text = |i: usize, r: usize| b.column(i).as_string::<i32>().value(r).to_string();
        let mut offers = Offers { suppliers: vec![], by_sku: HashMap::new() };
        let mut supplier_index: HashMap<String, usize> = HashMap::new();
        for r in 0..b.num_rows() {
            let (sku, supplier) = (text(0, r), text(1, r));
            let value = |i: usize, col: &str, ok: fn(f64) -> bool, rule: &str| -> Result<f64> {
                let c = b.column(i).as_primitive::<Float64Type>();
                match (!c.is_null(r)).then(|| c.value(r)) {
                    Some(v) if ok(v) => Ok(v),
                    v => bail!(
                        "input `offers`: SKU {sku} from supplier {supplier}: `{col}` is {}, it must be {rule}",
                        v.map_or("missing".into(), |v| v.to_string())
                    ),
                }
            };
            let unit_cost = value(2, "unit_cost", |v| v >= 0.0, "≥ 0")?;
            let lead = value(3, "lead_time_mean_days", |v| v >= 0.0, "≥ 0")?;
            let capacity = value(4, "capacity_per_week", |v| v >= 0.0, "≥ 0")?;
            let moq = value(5, "moq", |v| v >= 0.0, "≥ 0")?;
            let reliability = value(6, "reliability", |v| v > 0.0 && v <= 1.0, "in (0, 1]")?;
            let breaks = price_breaks(b.column(7), r).map_err(|e| anyhow!("input `offers`: SKU {sku} from supplier {supplier}: {e}"))?;
            let n = supplier_index.len();
            let at = *supplier_index.entry(supplier.clone()).or_insert(n);
            if at == offers.suppliers.len() {
                offers.suppliers.push(supplier);
            }
            offers.by_sku.entry(sku).or_default().push(Offer {
                supplier: at,
                unit_cost,
                breaks,
                capacity,
                moq,
                lead_time_days: lead,
                reliability,
            });
        }
        Ok(offers)
    }
}

/// The `price_breaks` list of one row: [{min_qty, unit_cost}, …] (null: none).
fn price_breaks(col: &ArrayRef, row: usize) -> Result<Vec<Tier>> {
    let Some(list) = col.as_list_opt::<i32>() else {
        bail!("`price_breaks` must be a list of {{min_qty, unit_cost}}, found {}", col.data_type());
    };
    if list.is_null(row) {
        return Ok(vec![]);
    }
    let items = list.value(row);
    let s = items.as_struct_opt().ok_or_else(|| anyhow!("`price_breaks` items must be structs {{min_qty, unit_cost}}"))?;
    let field = |name: &str| -> Result<Float64Array> {
        let c = s.column_by_name(name).ok_or_else(|| anyhow!("`price_breaks` items have no field `{name}`"))?;
        Ok(cast(c, &DataType::Float64)?.as_primitive::<Float64Type>().clone())
    };
    let (q, c) = (field("min_qty")?, field("unit_cost")?);
    Ok((0..q.len()).map(|i| Tier { min_qty: q.value(i), unit_cost: c.value(i) }).collect())
}

#[async_trait]
impl StageTask for AllocateTask {
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        self.check_inputs(inputs)?;
        Ok(vec![allocation_schema(&self.cfg.series), summary_schema()])
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let orders = self.read_orders(cx).await?;
        let offers = self.read_offers(cx).await?;
        let (supplied, unsupplied): (Vec<SkuOrder>, Vec<SkuOrder>) = orders.into_iter().partition(|o| offers.by_sku.contains_key(&o.sku));
        let problem = Problem {
            suppliers: offers.suppliers.clone(),
            needs: supplied
                .iter()
                .map(|o| Need {
                    quantity: o.locations.iter().map(|l| l.1).sum(),
                    shortage_cost: self.cfg.shortage_cost,
                    offers: offers.by_sku[&o.sku].clone(),
                })
                .collect(),
            budget: self.cfg.budget,
            max_share: self.cfg.max_share,
            lead_time_cost: self.cfg.lead_time_cost_per_day,
        };
        let limits = Limits { time_limit_s: self.cfg.time_limit.as_secs_f64(), mip_rel_gap: self.cfg.mip_gap, threads: 2 };
        let guard = self.cfg.time_limit * 2 + Duration::from_secs(30);
        let solution = cx.blocking(move |cancel, progress| guarded_solve(problem, limits, guard, cancel, progress)).await?;
        let mut explanation = explain(&solution.bends, &supplied);
        if !unsupplied.is_empty() {
            let units: f64 = unsupplied.iter().flat_map(|o| o.locations.iter().map(|l| l.1)).sum();
            let some: Vec<&str> = unsupplied.iter().take(3).map(|o| o.sku.as_str()).collect();
            explanation.push(format!(
                "{} SKU(s) have no supplier offer: {units:.0} units not ordered (e.g. {})",
                unsupplied.len(),
                some.join(", ")
            ));
        }
        if !solution.feasible() && self.cfg.on_infeasible == OnInfeasible::Fail {
            bail!("the allocation is infeasible: {}", explanation.join("; "));
        }
        let allocations = self.allocations(&solution, &supplied, &offers)?;
        let lines = allocations.num_rows();
        let summary = self.summary(&solution, supplied.len(), lines, unsupplied.len(), &explanation)?;
        let a = cx.write_output(0, cx.ctx.read_batch(allocations)?).await?;
        let s = cx.write_output(1, cx.ctx.read_batch(summary)?).await?;
        let mut warnings = vec![];
        if !explanation.is_empty() {
            warnings.push(format!("allocation: {}", explanation.join("; ")));
        }
        Ok(StageReport {
            rows_out: a.rows + s.rows,
            bytes_out: a.bytes + s.bytes,
            details: Some(
                serde_json::json!({ "status": solution.status, "objective": solution.objective, "gap": solution.gap, "seconds": solution.seconds }),
            ),
            warnings,
        })
    }
}

/// HiGHS on its own thread: the solver's time limit, plus a wall-clock guard and Ctrl-C around it.
fn guarded_solve(
    problem: Problem,
    limits: Limits,
    guard: Duration,
    cancel: &tokio_util::sync::CancellationToken,
    progress: &super::StageProgress,
) -> Result<Solution> {
    progress.set(format!("HiGHS: {} SKUs, {} suppliers", problem.needs.len(), problem.suppliers.len()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(crate::alloc::solve(&problem, limits));
    });
    let started = std::time::Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => bail!("the solver thread died"),
            Err(_) if cancel.is_cancelled() => return Err(Cancelled.into()),
            Err(_) if started.elapsed() > guard => {
                bail!("HiGHS did not stop within {} s (its time limit is {} s)", guard.as_secs(), limits.time_limit_s)
            }
            Err(_) => {}
        }
    }
}

/// What bent, one sentence per constraint family: its total and its three largest bends.
fn explain(bends: &[Bend], skus: &[SkuOrder]) -> Vec<String> {
    let one = |b: &Bend| {
        let sku = b.need.map(|n| skus[n].sku.as_str()).unwrap_or("");
        let supplier = b.supplier.as_deref().unwrap_or("");
        match b.family {
            Family::Budget => format!("budget short by {:.0}", b.amount),
            Family::Share => format!("supplier {supplier} over its max share by {:.0} of spend", b.amount),
            Family::Capacity => format!("supplier {supplier} for SKU {sku} by {:.0}", b.amount),
            Family::Demand => format!("SKU {sku} short {:.0}", b.amount),
        }
    };
    let mut out = vec![];
    for family in [Family::Budget, Family::Share, Family::Capacity, Family::Demand] {
        let mut these: Vec<&Bend> = bends.iter().filter(|b| b.family == family).collect();
        these.sort_by(|a, b| b.amount.total_cmp(&a.amount));
        let total: f64 = these.iter().map(|b| b.amount).sum();
        let top: Vec<String> = these.iter().take(3).map(|b| one(b)).collect();
        match family {
            _ if these.is_empty() => {}
            Family::Budget | Family::Share => out.extend(these.iter().map(|b| one(b))),
            Family::Capacity => out.push(format!(
                "weekly capacity exceeded at {} supplier–SKU offer(s) by {total:.0} units in total (largest: {})",
                these.len(),
                top.join("; ")
            )),
            Family::Demand => {
                out.push(format!("{} SKU(s) cannot be fully supplied: {total:.0} units short (largest: {})", these.len(), top.join("; ")))
            }
        }
    }
    out
}

impl AllocateTask {
    /// Each supplier line handed to the SKU's locations in key order; units bought beyond the
    /// order (MOQ, price breaks) go to the location with the largest order.
    fn allocations(&self, s: &Solution, skus: &[SkuOrder], offers: &Offers) -> Result<RecordBatch> {
        let n = self.cfg.series.len();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
        let day = (self.order_date - epoch).num_days() as i32;
        let (mut keys, mut sup, mut qty, mut cost, mut arrival): (Vec<Vec<String>>, Vec<String>, Vec<i64>, Vec<f64>, Vec<i32>) =
            Default::default();
        for (need, sku) in skus.iter().enumerate() {
            let mut left: Vec<f64> = sku.locations.iter().map(|l| l.1).collect();
            let largest = (0..left.len()).max_by(|&a, &b| left[a].total_cmp(&left[b])).unwrap_or(0);
            for line in s.lines.iter().filter(|l| l.need == need) {
                let offer = &offers.by_sku[&sku.sku][line.offer];
                let mut units = line.quantity;
                let mut got = vec![0.0; left.len()];
                for i in 0..left.len() {
                    let take = units.min(left[i]).max(0.0);
                    got[i] += take;
                    left[i] -= take;
                    units -= take;
                }
                got[largest] += units.max(0.0);
                for (i, q) in got.into_iter().enumerate().filter(|(_, q)| *q > 0.0) {
                    keys.push(sku.locations[i].0.clone());
                    sup.push(offers.suppliers[offer.supplier].clone());
                    qty.push(q.round() as i64);
                    cost.push(line.unit_cost);
                    arrival.push(day + offer.lead_time_days.round() as i32);
                }
            }
        }
        let mut cols: Vec<ArrayRef> =
            (0..n).map(|k| Arc::new(StringArray::from_iter_values(keys.iter().map(|key| key[k].as_str()))) as ArrayRef).collect();
        let rows = qty.len();
        let line_cost: Vec<f64> = qty.iter().zip(&cost).map(|(q, c)| *q as f64 * c).collect();
        cols.push(Arc::new(StringArray::from(sup)));
        cols.push(Arc::new(Int64Array::from(qty)));
        cols.push(Arc::new(Float64Array::from(cost)));
        cols.push(Arc::new(Float64Array::from(line_cost)));
        cols.push(Arc::new(Date32Array::from(vec![day; rows])));
        cols.push(Arc::new(Date32Array::from(arrival)));
        Ok(RecordBatch::try_new(allocation_schema(&self.cfg.series), cols)?)
    }

    fn summary(&self, s: &Solution, skus: usize, lines: usize, unsupplied: usize, explanation: &[String]) -> Result<RecordBatch> {
        let day = (self.order_date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32;
        let units: f64 = s.lines.iter().map(|l| l.quantity).sum();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(vec![day])),
            Arc::new(StringArray::from(vec![s.status.as_str()])),
            Arc::new(BooleanArray::from(vec![s.feasible() && unsupplied == 0])),
            Arc::new(Float64Array::from(vec![s.objective])),
            Arc::new(Float64Array::from(vec![s.bound])),
            Arc::new(Float64Array::from(vec![s.gap])),
            Arc::new(Float64Array::from(vec![s.purchase_cost])),
            Arc::new(Int64Array::from(vec![skus as i64])),
            Arc::new(Int64Array::from(vec![lines as i64])),
            Arc::new(Int64Array::from(vec![units as i64])),
            Arc::new(Int64Array::from(vec![unsupplied as i64])),
            Arc::new(Float64Array::from(vec![s.seconds])),
            Arc::new(StringArray::from(vec![(!explanation.is_empty()).then(|| explanation.join("; "))])),
        ];
        Ok(RecordBatch::try_new(summary_schema(), cols)?)
    }
}
