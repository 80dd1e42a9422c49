//! Weekly planning end to end: the `policy` and `allocate` stages on a small hand-made lake, the
//! bad inputs they must name, and the weekly pipeline on the demo lake.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, Int32Array, ListArray, RecordBatch, StringArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};

use crate::common::{Project, write_parquet};

/// Forecasts of 28 steps: (sku, location, p10, p50, p90) constant per day.
fn forecasts(rows: &[(&str, &str, f64, f64, f64)]) -> RecordBatch {
    let (mut sku, mut loc, mut step, mut q10, mut q50, mut q90) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for &(s, l, a, b, c) in rows {
        for t in 1..=28 {
            sku.push(s);
            loc.push(l);
            step.push(t);
            q10.push(a);
            q50.push(b);
            q90.push(c);
        }
    }
    RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(sku)) as ArrayRef),
        ("location_id", Arc::new(StringArray::from(loc))),
        ("step", Arc::new(Int32Array::from(step))),
        ("p10", Arc::new(Float64Array::from(q10))),
        ("p50", Arc::new(Float64Array::from(q50))),
        ("p90", Arc::new(Float64Array::from(q90))),
    ])
    .unwrap()
}

/// Two snapshots per SKU × location; only the later one counts.
fn inventory(rows: &[(&str, &str, i32, i32)]) -> RecordBatch {
    let (mut date, mut sku, mut loc, mut hand, mut order) = (vec![], vec![], vec![], vec![], vec![]);
    for &(s, l, h, o) in rows {
        for (d, k) in [(20_000, 1000), (20_001, 1)] {
            date.push(d);
            sku.push(s);
            loc.push(l);
            hand.push(h * k);
            order.push(o);
        }
    }
    RecordBatch::try_from_iter(vec![
        ("snapshot_date", Arc::new(Date32Array::from(date)) as ArrayRef),
        ("sku_id", Arc::new(StringArray::from(sku))),
        ("location_id", Arc::new(StringArray::from(loc))),
        ("on_hand", Arc::new(Int32Array::from(hand))),
        ("on_order", Arc::new(Int32Array::from(order))),
    ])
    .unwrap()
}

/// (supplier, sku, unit cost, lead mean, lead sd, capacity, moq, [(break qty, cost)]).
type OfferRow<'a> = (&'a str, &'a str, f64, f64, f64, i32, i32, &'a [(i32, f64)]);

fn offers(rows: &[OfferRow<'_>]) -> RecordBatch {
    let tier_fields = Fields::from(vec![Field::new("min_qty", DataType::Int32, false), Field::new("unit_cost", DataType::Float64, false)]);
    let (mut bq, mut bc, mut offsets) = (vec![], vec![], vec![0i32]);
    for r in rows {
        for &(q, c) in r.7 {
            bq.push(q);
            bc.push(c);
        }
        offsets.push(bq.len() as i32);
    }
    let tiers =
        StructArray::new(tier_fields.clone(), vec![Arc::new(Int32Array::from(bq)) as ArrayRef, Arc::new(Float64Array::from(bc))], None);
    let breaks = ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(tier_fields), false)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(tiers),
        None,
    );
    RecordBatch::try_from_iter(vec![
        ("supplier_id", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef),
        ("sku_id", Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
        ("unit_cost", Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
        ("lead_time_mean_days", Arc::new(Float64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()))),
        ("lead_time_sd_days", Arc::new(Float64Array::from(rows.iter().map(|r| r.4).collect::<Vec<_>>()))),
        ("capacity_per_week", Arc::new(Int32Array::from(rows.iter().map(|r| r.5).collect::<Vec<_>>()))),
        ("moq", Arc::new(Int32Array::from(rows.iter().map(|r| r.6).collect::<Vec<_>>()))),
        ("price_breaks", Arc::new(breaks)),
        ("reliability", Arc::new(Float64Array::from(vec![1.0; rows.len()]))),
    ])
    .unwrap()
}

fn pipeline(target: &str, budget: &str) -> String {
    format!(
        r#"
name: plan
lake: file://./lake
stages:
  - id: policy
    kind: policy
    inputs: {{ forecasts: raw/forecasts/, inventory: raw/inventory/, offers: raw/offers/ }}
    outputs: [policies]
    config: {{ series: [sku_id, location_id], review_period_days: 7, target: {target}, case_pack: 12 }}
  - id: allocate
    kind: allocate
    inputs: {{ orders: policies, offers: raw/offers/ }}
    outputs: [allocations, allocation_summary]
    config: {{ series: [sku_id, location_id]{budget} }}
"#
    )
}

/// A: 10 a day for sure at two locations; B: uncertain; C: nobody sells it.
fn lake(p: &Project, lead_sd_b: f64) {
    write_parquet(
        p,
        "lake/raw/forecasts/f.parquet",
        forecasts(&[("A", "L1", 10.0, 10.0, 10.0), ("A", "L2", 10.0, 10.0, 10.0), ("B", "L1", 2.0, 5.0, 9.0), ("C", "L1", 1.0, 1.0, 1.0)]),
    );
    write_parquet(
        p,
        "lake/raw/inventory/i.parquet",
        inventory(&[("A", "L1", 40, 20), ("A", "L2", 0, 0), ("B", "L1", 10, 0), ("C", "L1", 0, 0)]),
    );
    let rows: Vec<OfferRow<'_>> = vec![
        // A: S1 is 10 a unit, 9 from 200 units (all-unit); S2 is 9.5 with capacity 100.
        ("S1", "A", 10.0, 7.0, 0.0, 1000, 1, &[(200, 9.0)]),
        ("S2", "A", 9.5, 7.0, 0.0, 100, 1, &[]),
        ("S1", "B", 3.0, 7.0, lead_sd_b, 1000, 24, &[]),
    ];
    write_parquet(p, "lake/raw/offers/o.parquet", offers(&rows));
}

#[test]
fn policies_and_allocations_from_quantiles() {
    let p = Project::empty();
    lake(&p, 2.0);
    p.write("plan.yaml", &pipeline("{ fill_rate: 0.98 }", ""));
    let (ok, said) = p.loud(&["run", "plan.yaml"]);
    assert!(ok, "{said}");
    assert!(said.contains("no supplier offer") && said.contains("C"), "{said}");
    // A at L1: demand over R + L = 7 + 7 days at exactly 10 a day = 140. A 98 % fill rate allows
    // 2 % of a cycle's 70 units short: S = 140 − 1.4 = 138.6. Position 40 + 20 = 60 → 78.6,
    // rounded up to packs of 12 → 84. At L2: 138.6 → 144.
    let a = p.query(
        "SELECT location_id, ROUND(order_up_to, 3), inventory_position, order_qty, supplier_id FROM policies WHERE sku_id = 'A' ORDER BY 1",
    );
    // The policy takes lead time and MOQ from the cheapest offer (S2 at 9.5 before breaks).
    assert_eq!(a, vec!["L1,138.6,60.0,84.0,S2", "L2,138.6,0.0,144.0,S2"]);
    // B: uncertain demand and lead time; the order clears the MOQ of 24 in packs of 12.
    let b = p.query("SELECT order_qty >= 24, order_qty % 12 = 0, fill_rate >= 0.9799, safety_stock > 0 FROM policies WHERE sku_id = 'B'");
    assert_eq!(b, vec!["true,true,true,true"]);
    let c = p.query("SELECT order_qty, flag FROM policies WHERE sku_id = 'C'");
    assert_eq!(c, vec!["0.0,no supplier offers this SKU"]);
    // A needs 84 + 144 = 228 units: all from S1 at the 200-unit break (228 × 9 = 2052) beats
    // S2's 100 at 9.5 + 128 from S1 at 10 (2230). Each location gets its own order.
    let alloc = p.query("SELECT location_id, supplier_id, quantity, unit_cost FROM allocations WHERE sku_id = 'A' ORDER BY 1, 2");
    assert_eq!(alloc, vec!["L1,S1,84,9.0", "L2,S1,144,9.0"]);
    let summary = p.query("SELECT status, feasible, unsupplied_skus, explanation FROM allocation_summary");
    assert!(summary[0].starts_with("Optimal,true,0,"), "{summary:?}");
}

#[test]
fn an_infeasible_budget_is_explained_and_still_planned() {
    let p = Project::empty();
    lake(&p, 2.0);
    p.write("plan.yaml", &pipeline("{ cycle_service_level: 0.9 }", ", budget: 1000"));
    let (ok, said) = p.loud(&["run", "plan.yaml"]);
    assert!(ok, "{said}");
    assert!(said.contains("budget short by"), "{said}");
    let s = p.query("SELECT feasible, explanation LIKE '%budget short by%' FROM allocation_summary");
    assert_eq!(s, vec!["false,true"]);
    // With on_infeasible: fail the run stops and publishes nothing.
    let p2 = Project::empty();
    lake(&p2, 2.0);
    p2.write("plan.yaml", &pipeline("{ cycle_service_level: 0.9 }", ", budget: 1000, on_infeasible: fail"));
    let err = p2.fails(&["run", "plan.yaml"], 1);
    assert!(err.contains("allocate") && err.contains("infeasible") && err.contains("budget short by"), "{err}");
    assert!(p2.run(&["query", "SELECT * FROM policies"]).status.code() != Some(0), "nothing published");
}

#[test]
fn bad_planning_input_names_the_row_and_column() {
    let p = Project::empty();
    lake(&p, -1.0);
    p.write("plan.yaml", &pipeline("{ fill_rate: 0.98 }", ""));
    let err = p.fails(&["run", "plan.yaml"], 1);
    assert!(err.contains("policy") && err.contains("SKU B") && err.contains("S1") && err.contains("lead_time_sd_days"), "{err}");
    // A target outside (0, 1) and a forecast table without quantiles fail validation.
    p.write("plan.yaml", &pipeline("{ fill_rate: 1.2 }", ""));
    let err = p.fails(&["validate", "plan.yaml"], 2);
    assert!(err.contains("plan.yaml:") && err.contains("strictly between 0 and 1"), "{err}");
    p.write("plan.yaml", &pipeline("{ fill_rate: 0.9 }", "").replace("raw/forecasts/", "raw/inventory/"));
    let err = p.fails(&["validate", "plan.yaml"], 2);
    assert!(err.contains("input `forecasts` has no column `step`"), "{err}");
}

#[test]
fn weekly_pipeline_and_simulate_on_the_demo_lake() {
    let p = Project::with_demo();
    p.ok(&["run", "pipelines/nightly.yaml"]);
    p.ok(&["run", "pipelines/weekly_plan.yaml"]);
    // 12 SKUs × 2 locations, one policy row each; the allocation covers every positive order.
    let rows = p.query("SELECT COUNT(*), SUM(CASE WHEN order_qty > 0 THEN 1 ELSE 0 END) FROM policies");
    let ordered: i64 = rows[0].split(',').nth(1).unwrap().parse().unwrap();
    assert!(rows[0].starts_with("24,") && ordered > 0, "{rows:?}");
    let cover = p.query(
        "SELECT COUNT(*) FROM (SELECT p.sku_id, p.location_id, p.order_qty, COALESCE(SUM(a.quantity), 0) AS q FROM policies p \
         LEFT JOIN allocations a ON p.sku_id = a.sku_id AND p.location_id = a.location_id GROUP BY 1, 2, 3) WHERE q < order_qty",
    );
    let summary = p.query("SELECT feasible, explanation FROM allocation_summary");
    // Every order is covered, unless the summary says what bent.
    assert!(cover == vec!["0"] || summary[0].starts_with("false,"), "{cover:?} {summary:?}");

    let out = p.ok(&["simulate", "--weeks", "2", "--methods", "seasonal_naive,naive", "--series", "6"]);
    let totals: Vec<&str> = out.lines().filter(|l| l.contains(" all ")).collect();
    assert_eq!(totals.len(), 2, "{out}");
    assert!(totals[0].contains("seasonal_naive") && totals[0].contains("×1.000"), "{out}");
    // Fill rates are shares.
    for line in &totals {
        let cells: Vec<&str> = line.split('┆').map(str::trim).collect();
        let fill: f64 = cells[8].parse().unwrap();
        assert!((0.0..=1.0).contains(&fill), "{line}");
    }
    // The language model replays too (a tiny one, trained here for a few steps).
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "4", "--batch", "2", "--window", "32"]);
    let out = p.ok(&["simulate", "--weeks", "1", "--methods", "seasonal_naive,lm", "--model", "model", "--series", "2", "--lm-paths", "4"]);
    assert!(out.lines().any(|l| l.contains("lm") && l.contains(" all ")), "{out}");
    // A replay's ensemble is its statistical members' median, beside the LM.
    let out = p.ok(&["simulate", "--weeks", "1", "--methods", "ensemble,lm", "--model", "model", "--series", "2", "--lm-paths", "4"]);
    assert!(out.lines().any(|l| l.contains("ensemble") && l.contains(" all ")), "{out}");
    let err = p.fails(&["simulate", "--target", "fill_rate=1.5"], 1);
    assert!(err.contains("--target") && err.contains("between 0 and 1"), "{err}");
}

#[test]
fn policies_from_sample_paths() {
    let p = Project::empty();
    lake(&p, 0.0);
    // Paths for A at L1: half the paths sell 10 a day, half 20 (no quantiles could say which).
    let (mut sku, mut loc, mut path, mut step, mut value) = (vec![], vec![], vec![], vec![], vec![]);
    for k in 0..10 {
        for t in 1..=28 {
            sku.push("A");
            loc.push("L1");
            path.push(k);
            step.push(t);
            value.push(if k < 5 { 10.0 } else { 20.0 });
        }
    }
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(sku)) as ArrayRef),
        ("location_id", Arc::new(StringArray::from(loc))),
        ("path", Arc::new(Int32Array::from(path))),
        ("step", Arc::new(Int32Array::from(step))),
        ("value", Arc::new(Float64Array::from(value))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/paths/p.parquet", batch);
    let yaml = pipeline("{ cycle_service_level: 0.9 }", "")
        .replace("offers: raw/offers/ }\n    outputs: [policies]", "offers: raw/offers/, paths: raw/paths/ }\n    outputs: [policies]");
    p.write("plan.yaml", &yaml);
    p.ok(&["run", "plan.yaml"]);
    // R + L = 14 days (S2's lead time is exact): demand 140 or 280; the 0.9 quantile is 280.
    let rows = p.query("SELECT location_id, demand_source, order_up_to, demand_mean FROM policies WHERE sku_id = 'A' ORDER BY 1");
    assert_eq!(rows[0], "L1,paths,280.0,210.0");
    assert!(rows[1].starts_with("L2,\"quantiles (Gaussian AR(1) copula"), "{rows:?}");
}
