//! Forecast methods through the `forecast` stage and `restock evaluate`, end to end.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};

use crate::common::{Project, stdout, write_parquet};

/// Daily series with a weekly cycle; `null_sku` gets no observed value at all.
fn demand(skus: &[&str], days: i32, null_sku: Option<&str>) -> RecordBatch {
    let (mut ids, mut dates, mut units) = (vec![], vec![], vec![]);
    for (k, sku) in skus.iter().enumerate() {
        for d in 0..days {
            ids.push(*sku);
            dates.push(20_000 + d);
            let v = 10.0 + 5.0 * k as f64 + [0.0, 1.0, 2.0, 3.0, 4.0, 8.0, 9.0][d as usize % 7] + (d % 3) as f64;
            units.push(if Some(*sku) == null_sku { None } else { Some(v) });
        }
    }
    RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("date", Arc::new(Date32Array::from(dates))),
        ("units", Arc::new(Float64Array::from(units))),
    ])
    .unwrap()
}

fn pipeline(method: &str) -> String {
    format!(
        r#"
name: fc
lake: file://./lake
stages:
  - id: forecast
    kind: forecast
    inputs: {{ demand: raw/demand/ }}
    outputs: [forecasts]
    config: {{ method: {method}, series: [sku_id], time: date, target: units, season_length: 7, horizon: 7, quantiles: [0.1, 0.5, 0.9] }}
"#
    )
}

#[test]
fn every_method_runs_as_a_stage_with_ordered_quantiles() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b"], 63, None));
    for method in ["naive", "ets", "theta", "tsb", "ensemble"] {
        p.write("p.yaml", &pipeline(method));
        p.ok(&["run", "p.yaml"]);
        let rows = p.query(
            "SELECT count(*), sum(CASE WHEN p10 <= p50 AND p50 <= p90 AND forecast >= 0 THEN 1 ELSE 0 END), min(model) FROM forecasts",
        );
        assert_eq!(rows, vec![format!("14,14,{method}")], "{method}");
    }
    // The weekly peak (days 5 and 6 of the cycle) is forecast above the trough by ETS.
    p.write("p.yaml", &pipeline("ets"));
    p.ok(&["run", "p.yaml"]);
    let peak = p.query("SELECT max(forecast) - min(forecast) FROM forecasts WHERE sku_id = 'a'");
    assert!(peak[0].parse::<f64>().unwrap() > 5.0, "{peak:?}");
}

#[test]
fn unknown_method_and_a_series_without_values_are_clear_errors() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b"], 30, Some("b")));
    p.write("p.yaml", &pipeline("etz"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("unknown forecast method `etz`") && err.contains("ets") && err.contains("p.yaml:"), "{err}");
    p.write("p.yaml", &pipeline("theta"));
    let err = p.fails(&["run", "p.yaml"], 1);
    assert!(err.contains("forecast") && err.contains("(sku_id) = (b)") && err.contains("no observed `units`"), "{err}");
}

#[test]
fn evaluate_scores_methods_and_writes_forecasts() {
    let p = Project::empty();
    let b = demand(&["a", "b", "c"], 70, None);
    let long =
        RecordBatch::try_from_iter(vec![("series_id", b.column(0).clone()), ("ts", b.column(1).clone()), ("value", b.column(2).clone())])
            .unwrap();
    write_parquet(&p, "long.parquet", long);
    let out = p.ok(&[
        "evaluate",
        "--data",
        "long.parquet",
        "--horizon",
        "7",
        "--season",
        "7",
        "--windows",
        "2",
        "--methods",
        "naive,seasonal_naive,ets,ensemble",
        "--forecasts",
        "fc.parquet",
    ]);
    assert!(out.contains("3 series, horizon 7, season 7, 2 window(s)"), "{out}");
    for m in ["naive", "seasonal_naive", "ets", "ensemble"] {
        assert!(out.lines().any(|l| l.contains(&format!(" {m} ")) && l.contains(" 6 ")), "{m} scored on 3 series × 2 windows:\n{out}");
    }
    let file = std::fs::File::open(p.file("fc.parquet")).unwrap();
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 4 * 6 * 7);

    let err = p.fails(&["evaluate", "--data", "fc.parquet", "--horizon", "7", "--season", "7"], 1);
    assert!(err.contains("fc.parquet") && err.contains("no column `value`"), "{err}");
    let out = p.run(&["evaluate", "--data", "long.parquet", "--horizon", "7", "--season", "7", "--methods", "arima"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown forecast method `arima`"), "{}", stdout(&out));
}

#[test]
fn the_language_model_forecasts_as_a_stage_and_bad_models_are_named_at_validation() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b"], 40, None));
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    let out = p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "6", "--batch", "2", "--window", "32"]);
    assert!(out.contains("6 steps, 384 tokens"), "{out}");
    let lm = |extra: &str| pipeline(&format!("lm, {extra} paths: 8"));
    p.write("p.yaml", &lm("model: model,"));
    p.ok(&["run", "p.yaml"]);
    let rows =
        p.query("SELECT count(*), sum(CASE WHEN p10 <= p50 AND p50 <= p90 AND p10 >= 0 THEN 1 ELSE 0 END), min(model) FROM forecasts");
    assert_eq!(rows, vec!["14,14,lm".to_string()]);

    p.write("p.yaml", &lm("model: nowhere,"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("p.yaml:") && err.contains("nowhere/config.yaml"), "{err}");
    p.write("p.yaml", &lm(""));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("`method: lm` needs `model:`"), "{err}");
    p.write("p.yaml", &lm("model: model,").replace("horizon: 7", "horizon: 500"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("horizon 500 is longer than the model allows (126 for max_len 128)"), "{err}");
}
