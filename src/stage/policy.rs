//! `policy`: inventory policies per SKU × location from the forecasts, the latest inventory
//! snapshot and the supplier offers (a thin adapter over [`crate::policy`]).
//!
//! Inputs, by name: `forecasts` (keys, `step`, quantile columns `p10`, `p50`, …), `inventory`
//! (keys, `snapshot_date`, `on_hand`, `on_order`), `offers` (`supplier_id`, the SKU key,
//! `unit_cost`, `lead_time_mean_days`, `lead_time_sd_days`, `moq`) and, optionally, `paths`
//! (keys, `path`, `step`, `value`: the forecaster's sample paths, used instead of quantiles).
//! Each SKU's lead time, MOQ and unit cost come from its cheapest offer; `allocate` then splits
//! the order across all its offers.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Deserialize;

use super::quote_ident as quote;
use super::{Cancelled, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::policy::interval::{draw_paths, interval_demand};
use crate::policy::{EoqCosts, LeadTime, Ordering, Paths, Target, compute};

pub struct PolicyKind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum TargetConfig {
    /// S at the critical ratio shortage / (shortage + holding), costs per unit.
    Newsvendor {
        shortage_cost: f64,
        holding_cost: f64,
    },
    CycleServiceLevel(f64),
    FillRate(f64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyConfig {
    /// Key columns of a SKU × location in `forecasts`, `inventory` (and `paths`).
    series: Vec<String>,
    /// The key column that names the SKU in `offers` (default: the first of `series`).
    sku: Option<String>,
    #[serde(default = "default_review")]
    review_period_days: f64,
    target: TargetConfig,
    /// Fixed cost per order: with it, the table gets an EOQ.
    order_cost: Option<f64>,
    /// Holding cost per year as a fraction of unit cost (for the EOQ).
    #[serde(default = "default_holding_rate")]
    holding_rate_per_year: f64,
    /// Orders are whole case packs.
    #[serde(default = "default_pack")]
    case_pack: f64,
    /// Raise each SKU-location's order to its offer's MOQ. Off when an `allocate` stage applies
    /// each supplier's MOQ to the SKU's order summed over locations.
    #[serde(default = "yes")]
    apply_moq: bool,
    /// Paths drawn per series when the forecast only has quantiles.
    #[serde(default = "default_paths")]
    paths: usize,
    /// Correlation of consecutive days' latent normals when drawing paths from quantiles
    /// (0: independent days, 1: comonotone).
    #[serde(default = "default_dependence")]
    dependence: f64,
    /// Lead-time draws per path.
    #[serde(default = "default_draws")]
    draws_per_path: usize,
    #[serde(default)]
    seed: u64,
}

fn yes() -> bool {
    true
}
fn default_review() -> f64 {
    7.0
}
fn default_holding_rate() -> f64 {
    0.25
}
fn default_pack() -> f64 {
    1.0
}
fn default_paths() -> usize {
    200
}
fn default_dependence() -> f64 {
    0.5
}
fn default_draws() -> usize {
    4
}

const INPUTS: [&str; 3] = ["forecasts", "inventory", "offers"];
const OFFER_COLUMNS: [&str; 5] = ["supplier_id", "unit_cost", "lead_time_mean_days", "lead_time_sd_days", "moq"];

#[derive(Debug)]
struct PolicyTask {
    stage: String,
    pos: Pos,
    cfg: PolicyConfig,
    target: Target,
    has_paths: bool,
}

impl StageKind for PolicyKind {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: PolicyConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("policy", 1)?;
        let mut diags = Diagnostics::default();
        for name in INPUTS {
            if !decl.inputs.iter().any(|i| i == name) {
                diags.push(decl.error(
                    decl.pos.clone(),
                    format!("a `policy` stage needs an input named `{name}` (inputs: forecasts, inventory, offers, optional paths)"),
                ));
            }
        }
        for name in decl.inputs.iter().filter(|i| !INPUTS.contains(&i.as_str()) && *i != "paths") {
            diags.push(
                decl.error(
                    decl.pos.clone(),
                    format!("input `{name}` is not one a `policy` stage reads (forecasts, inventory, offers, paths)"),
                )
                .help_opt(did_you_mean(name, INPUTS.into_iter().chain(["paths"]))),
            );
        }
        let target = match cfg.target {
            TargetConfig::Newsvendor { shortage_cost, holding_cost } => Target::Costs { shortage: shortage_cost, holding: holding_cost },
            TargetConfig::CycleServiceLevel(a) => Target::CycleService(a),
            TargetConfig::FillRate(b) => Target::FillRate(b),
        };
        if let Err(e) = target.check() {
            diags.push(decl.error(decl.config.pos("target"), e));
        }
        let checks: [(&str, bool, &str); 5] = [
            ("review_period_days", cfg.review_period_days > 0.0, "must be positive"),
            ("case_pack", cfg.case_pack >= 1.0, "must be at least 1"),
            ("paths", cfg.paths >= 10, "must be at least 10"),
            ("dependence", (0.0..=1.0).contains(&cfg.dependence), "must lie in [0, 1]"),
            ("draws_per_path", cfg.draws_per_path >= 1, "must be at least 1"),
        ];
        for (field, ok, why) in checks {
            if !ok {
                diags.push(decl.error(decl.config.pos(field), format!("`{field}` {why}")));
            }
        }
        if cfg.series.is_empty() {
            diags.push(decl.error(decl.config.pos("series"), "`series` needs at least one key column"));
        }
        diags.into_result(())?;
        let has_paths = decl.inputs.iter().any(|i| i == "paths");
        Ok(Arc::new(PolicyTask { stage: decl.id.into(), pos: decl.pos.clone(), cfg, target, has_paths }))
    }
}

impl PolicyTask {
    fn sku(&self) -> &str {
        self.cfg.sku.as_deref().unwrap_or(&self.cfg.series[0])
    }

    /// Every column the inputs must have, or a diagnostic naming input and column.
    fn check_inputs(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::default();
        let series: Vec<&str> = self.cfg.series.iter().map(String::as_str).collect();
        let mut need = |input: &str, cols: Vec<&str>| {
            for d in super::missing_columns(&self.stage, &self.pos, inputs, input, &cols) {
                diags.push(d);
            }
        };
        need("forecasts", [series.clone(), vec!["step"]].concat());
        need("inventory", [series.clone(), vec!["snapshot_date", "on_hand", "on_order"]].concat());
        need("offers", [vec![self.sku()], OFFER_COLUMNS.to_vec()].concat());
        need("paths", [series.clone(), vec!["path", "step", "value"]].concat());
        if let Some(f) = inputs.get("forecasts") {
            if quantile_columns(f).len() < 2 && !self.has_paths {
                diags.push(
                    Diagnostic::new(
                        self.pos.clone(),
                        "input `forecasts` needs at least two quantile columns (p10, p50, p90, …) or a `paths` input",
                    )
                    .stage(&self.stage),
                );
            }
        }
        diags.into_result(())
    }
}

/// Quantile columns `pNN` / `pNN_M` of a forecast table with their levels, ascending.
fn quantile_columns(schema: &Schema) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = schema
        .fields()
        .iter()
        .filter_map(|f| {
            let pct: f64 = f.name().strip_prefix('p')?.replace('_', ".").parse().ok()?;
            (pct > 0.0 && pct < 100.0 && f.data_type().is_numeric()).then(|| (f.name().clone(), pct / 100.0))
        })
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

fn output_schema(series: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = series.iter().map(|s| Field::new(s, DataType::Utf8, false)).collect();
    fields.push(Field::new("supplier_id", DataType::Utf8, true));
    for name in ["unit_cost", "lead_time_mean_days", "lead_time_sd_days"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new("review_period_days", DataType::Float64, false));
    for name in ["demand_mean", "demand_sd", "demand_p50", "demand_p90", "demand_p99"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new("target", DataType::Utf8, false));
    fields.push(Field::new("target_value", DataType::Float64, false));
    for name in ["shortage_cost", "holding_cost", "order_cost"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    for name in ["order_up_to", "safety_stock", "reorder_point", "cycle_service", "fill_rate", "eoq"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    for name in ["on_hand", "on_order", "inventory_position", "case_pack", "moq", "order_qty"] {
        fields.push(Field::new(name, DataType::Float64, false));
    }
    fields.push(Field::new("demand_source", DataType::Utf8, false));
    fields.push(Field::new("flag", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// One SKU × location as read from the inputs.
struct Item {
    key: Vec<String>,
    /// Per step, the forecast's quantiles at the levels of `quantile_columns`.
    quantiles: Vec<Vec<f64>>,
    paths: Option<Paths>,
}

/// The cheapest offer for a SKU.
#[derive(Debug, Clone)]
struct Offer {
    supplier: String,
    unit_cost: f64,
    lead: LeadTime,
    moq: f64,
}

/// What the blocking part needs.
struct Inputs {
    items: Vec<Item>,
    levels: Vec<f64>,
    stock: HashMap<Vec<String>, (f64, f64)>,
    offers: HashMap<String, Offer>,
}

/// One output row.
struct Row {
    key: Vec<String>,
    offer: Option<Offer>,
    policy: Option<crate::policy::Policy>,
    on_hand: f64,
    on_order: f64,
    source: String,
    flags: Vec<String>,
}

fn strings(b: &RecordBatch, i: usize, row: usize) -> String {
    b.column(i).as_string::<i32>().value(row).to_string()
}

fn num(b: &RecordBatch, i: usize, row: usize) -> Option<f64> {
    let c = b.column(i).as_primitive::<Float64Type>();
    (!c.is_null(row)).then(|| c.value(row))
}

impl PolicyTask {
    fn keys_sql(&self) -> String {
        self.cfg.series.iter().map(|k| format!("CAST({} AS VARCHAR)", quote(k))).collect::<Vec<_>>().join(", ")
    }

    async fn read_items(&self, cx: &StageCx, levels: &[(String, f64)]) -> Result<Vec<Item>> {
        let n = self.cfg.series.len();
        let qs: String = levels.iter().map(|(c, _)| format!(", CAST({} AS DOUBLE)", quote(c))).collect();
        let order: Vec<String> = (1..=n + 1).map(|i| i.to_string()).collect();
        let b = cx
            .sql_batch(&format!("SELECT {}, CAST(step AS BIGINT){qs} FROM forecasts ORDER BY {}", self.keys_sql(), order.join(", ")))
            .await?;
        let mut items: Vec<Item> = vec![];
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..n).map(|i| strings(&b, i, r)).collect();
            let q: Vec<f64> = (0..levels.len()).map(|k| num(&b, n + 1 + k, r).unwrap_or(f64::NAN)).collect();
            if q.iter().any(|v| v.is_nan()) {
                bail!(
                    "forecast for ({}) = ({}) step {} has a null quantile",
                    self.cfg.series.join(", "),
                    key.join(", "),
                    b.column(n).as_primitive::<Int64Type>().value(r)
                );
            }
            match items.last_mut() {
                Some(it) if it.key == key => it.quantiles.push(q),
                _ => items.push(Item { key, quantiles: vec![q], paths: None }),
            }
        }
        if self.has_paths {
            let mut paths = self.read_paths(cx).await?;
            for it in &mut items {
                it.paths = paths.remove(&it.key);
            }
        }
        Ok(items)
    }

    async fn read_paths(&self, cx: &StageCx) -> Result<HashMap<Vec<String>, Paths>> {
        let n = self.cfg.series.len();
        let order: Vec<String> = (1..=n + 2).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {}, CAST(path AS BIGINT), CAST(step AS BIGINT), CAST(value AS DOUBLE) FROM paths ORDER BY {}",
            self.keys_sql(),
            order.join(", ")
        );
        let b = cx.sql_batch(&sql).await?;
        let mut out: HashMap<Vec<String>, (Vec<f64>, i64)> = HashMap::new();
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..n).map(|i| strings(&b, i, r)).collect();
            let entry = out.entry(key).or_default();
            entry.0.push(num(&b, n + 2, r).unwrap_or(0.0).max(0.0));
            entry.1 = entry.1.max(b.column(n + 1).as_primitive::<Int64Type>().value(r));
        }
        Ok(out.into_iter().map(|(k, (values, horizon))| (k, Paths { values, horizon: horizon.max(1) as usize })).collect())
    }

    async fn read_stock(&self, cx: &StageCx) -> Result<HashMap<Vec<String>, (f64, f64)>> {
        let n = self.cfg.series.len();
        let keys = self.cfg.series.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {}, CAST(on_hand AS DOUBLE), CAST(on_order AS DOUBLE) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY snapshot_date DESC) AS rn__ FROM inventory) WHERE rn__ = 1",
            self.keys_sql()
        );
        let b = cx.sql_batch(&sql).await?;
        Ok((0..b.num_rows())
            .map(|r| ((0..n).map(|i| strings(&b, i, r)).collect(), (num(&b, n, r).unwrap_or(0.0), num(&b, n + 1, r).unwrap_or(0.0))))
            .collect())
    }

    /// Each SKU's cheapest offer; a negative or missing lead time is an error naming the row.
    async fn read_offers(&self, cx: &StageCx) -> Result<HashMap<String, Offer>> {
        let sql = format!(
            "SELECT CAST({} AS VARCHAR), CAST(supplier_id AS VARCHAR), CAST(unit_cost AS DOUBLE), CAST(lead_time_mean_days AS DOUBLE), CAST(lead_time_sd_days AS DOUBLE), CAST(moq AS DOUBLE) FROM offers ORDER BY 1, 3, 2",
            quote(self.sku())
        );
        let b = cx.sql_batch(&sql).await?;
        let mut out = HashMap::new();
        for r in 0..b.num_rows() {
            let (sku, supplier) = (strings(&b, 0, r), strings(&b, 1, r));
            for (col, i) in [("lead_time_mean_days", 3), ("lead_time_sd_days", 4)] {
                match num(&b, i, r) {
                    Some(v) if v >= 0.0 => {}
                    v => bail!(
                        "input `offers`: SKU {sku} from supplier {supplier} has {} `{col}`",
                        v.map_or("a missing".to_string(), |v| format!("a negative ({v})"))
                    ),
                }
            }
            let offer = Offer {
                supplier,
                unit_cost: num(&b, 2, r).unwrap_or(0.0),
                lead: LeadTime { mean: num(&b, 3, r).unwrap_or(0.0), sd: num(&b, 4, r).unwrap_or(0.0) },
                moq: num(&b, 5, r).unwrap_or(0.0),
            };
            out.entry(sku).or_insert(offer);
        }
        Ok(out)
    }
}

#[async_trait]
impl StageTask for PolicyTask {
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        self.check_inputs(inputs)?;
        Ok(vec![output_schema(&self.cfg.series)])
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let schema = cx.ctx.table_provider("forecasts").await?.schema();
        let levels = quantile_columns(&schema);
        let inputs = Inputs {
            items: self.read_items(cx, &levels).await?,
            levels: levels.iter().map(|l| l.1).collect(),
            stock: self.read_stock(cx).await?,
            offers: self.read_offers(cx).await?,
        };
        let (cfg, target, sku_at) = (self.cfg.clone(), self.target, self.cfg.series.iter().position(|s| s == self.sku()));
        let rows = cx
            .blocking(move |cancel, progress| {
                progress.set(format!("{} SKU-locations", inputs.items.len()));
                policies(&inputs, &cfg, target, sku_at.unwrap_or(0), cancel)
            })
            .await?;
        let no_supplier: Vec<&str> = rows.iter().filter(|r| r.offer.is_none()).map(|r| r.key[sku_at.unwrap_or(0)].as_str()).collect();
        let mut warnings = vec![];
        if !no_supplier.is_empty() {
            warnings.push(format!(
                "{} SKU-location(s) have no supplier offer and get no order (flag = 'no supplier offers this SKU'), e.g. {}",
                no_supplier.len(),
                no_supplier.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ));
        }
        let n = rows.len();
        let batch = into_batch(rows, &self.cfg, self.target)?;
        let written = cx.write_output(0, cx.ctx.read_batch(batch)?).await?;
        Ok(StageReport {
            rows_out: written.rows,
            bytes_out: written.bytes,
            details: Some(serde_json::json!({ "sku_locations": n, "target": self.target.kind(), "target_value": self.target.value() })),
            warnings,
        })
    }
}

/// The CPU-bound part: every SKU × location in parallel, each with its own seeded generator.
fn policies(
    inputs: &Inputs,
    cfg: &PolicyConfig,
    target: Target,
    sku_at: usize,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<Row>> {
    let eoq = cfg.order_cost.map(|order_cost| EoqCosts { order_cost, holding_rate_per_year: cfg.holding_rate_per_year });
    inputs
        .items
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            if cancel.is_cancelled() {
                return Err(Cancelled.into());
            }
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut row = Row::new(item, inputs.offers.get(&item.key[sku_at]).cloned(), inputs.stock.get(&item.key));
            let paths = demand_paths(item, inputs, cfg, target, &mut row, &mut rng);
            let Some(offer) = &row.offer else {
                row.flags.push("no supplier offers this SKU".into());
                return Ok(row);
            };
            let demand = interval_demand(&paths, cfg.review_period_days, offer.lead, cfg.draws_per_path, &mut rng);
            // Draws in the lead-time tail often pass the horizon (their last week repeats); flag
            // the rows where even the mean protection interval does.
            if demand.extrapolated && cfg.review_period_days + offer.lead.mean > paths.horizon as f64 {
                row.flags.push(format!(
                    "review period + mean lead time passes the forecast's {} steps: its last week is repeated",
                    paths.horizon
                ));
            }
            let moq = if cfg.apply_moq { offer.moq } else { 0.0 };
            let ordering =
                Ordering { inventory_position: row.on_hand + row.on_order, case_pack: cfg.case_pack, moq, unit_cost: offer.unit_cost };
            row.policy = Some(compute(&demand, target, &ordering, eoq));
            Ok(row)
        })
        .collect()
}

impl Row {
    /// A row with no policy yet; a missing inventory snapshot is a position of 0, flagged.
    fn new(item: &Item, offer: Option<Offer>, stock: Option<&(f64, f64)>) -> Row {
        let mut row = Row { key: item.key.clone(), offer, policy: None, on_hand: 0.0, on_order: 0.0, source: String::new(), flags: vec![] };
        match stock {
            Some(&(on_hand, on_order)) if !on_hand.is_nan() => (row.on_hand, row.on_order) = (on_hand, on_order),
            _ => row.flags.push("no inventory snapshot: position taken as 0".into()),
        }
        row
    }
}

/// The item's sample paths, or paths drawn from its quantiles; `row` says which (and flags a
/// target beyond the quantiles' levels).
fn demand_paths<'a>(
    item: &'a Item,
    inputs: &Inputs,
    cfg: &PolicyConfig,
    target: Target,
    row: &mut Row,
    rng: &mut ChaCha8Rng,
) -> std::borrow::Cow<'a, Paths> {
    if let Some(p) = &item.paths {
        row.source = "paths".into();
        return std::borrow::Cow::Borrowed(p);
    }
    let (lowest, highest) = (inputs.levels[0], inputs.levels[inputs.levels.len() - 1]);
    row.source = format!("quantiles (Gaussian AR(1) copula, rho {})", cfg.dependence);
    if let Some(r) = target.ratio().filter(|r| *r > highest || *r < lowest) {
        row.flags.push(format!(
            "target quantile {r:.3} lies beyond the forecast's levels [{lowest}, {highest}]: S rests on the extrapolated tail"
        ));
    }
    std::borrow::Cow::Owned(draw_paths(&inputs.levels, &item.quantiles, cfg.paths, cfg.dependence, true, rng))
}

fn into_batch(rows: Vec<Row>, cfg: &PolicyConfig, target: Target) -> Result<RecordBatch> {
    let schema = output_schema(&cfg.series);
    let mut cols: Vec<ArrayRef> = vec![];
    for k in 0..cfg.series.len() {
        cols.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key[k].as_str()))));
    }
    cols.push(Arc::new(StringArray::from_iter(rows.iter().map(|r| r.offer.as_ref().map(|o| o.supplier.as_str())))));
    let offer_f = |f: fn(&Offer) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.offer.as_ref().map(f)))) };
    cols.push(offer_f(|o| o.unit_cost));
    cols.push(offer_f(|o| o.lead.mean));
    cols.push(offer_f(|o| o.lead.sd));
    cols.push(Arc::new(Float64Array::from(vec![cfg.review_period_days; rows.len()])));
    type P = crate::policy::Policy;
    let pol =
        |f: fn(&P) -> Option<f64>| -> ArrayRef { Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.policy.as_ref().and_then(f)))) };
    cols.push(pol(|p| Some(p.demand_mean)));
    cols.push(pol(|p| Some(p.demand_sd)));
    cols.push(pol(|p| Some(p.demand_quantiles[0])));
    cols.push(pol(|p| Some(p.demand_quantiles[1])));
    cols.push(pol(|p| Some(p.demand_quantiles[2])));
    cols.push(Arc::new(StringArray::from(vec![target.kind(); rows.len()])));
    cols.push(Arc::new(Float64Array::from(vec![target.value(); rows.len()])));
    let (shortage, holding) = match target {
        Target::Costs { shortage, holding } => (Some(shortage), Some(holding)),
        _ => (None, None),
    };
    for v in [shortage, holding, cfg.order_cost] {
        cols.push(Arc::new(Float64Array::from(vec![v; rows.len()])));
    }
    cols.push(pol(|p| Some(p.order_up_to)));
    cols.push(pol(|p| Some(p.safety_stock)));
    cols.push(pol(|p| Some(p.reorder_point)));
    cols.push(pol(|p| Some(p.cycle_service)));
    cols.push(pol(|p| Some(p.fill_rate)));
    cols.push(pol(|p| p.eoq));
    let plain = |f: &dyn Fn(&Row) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) };
    cols.push(plain(&|r| r.on_hand));
    cols.push(plain(&|r| r.on_order));
    cols.push(plain(&|r| r.on_hand + r.on_order));
    cols.push(plain(&|_| cfg.case_pack));
    cols.push(plain(&|r| r.offer.as_ref().filter(|_| cfg.apply_moq).map_or(0.0, |o| o.moq)));
    cols.push(plain(&|r| r.policy.as_ref().map_or(0.0, |p| p.order_qty)));
    cols.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.source.as_str()))));
    cols.push(Arc::new(StringArray::from_iter(rows.iter().map(|r| (!r.flags.is_empty()).then(|| r.flags.join("; "))))));
    Ok(RecordBatch::try_new(schema, cols)?)
}
