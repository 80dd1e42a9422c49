//! Forecast methods through the `forecast` stage and `restock evaluate`, end to end.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray};

use crate::common::{Project, stderr, stdout, write_parquet};

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
    // An ensemble keeps one member alone where it forecast the held-out tails (each series'
    // last week, from what precedes it) clearly better than the members' median: seasonal naive
    // over naive on these weekly cycles, 8 series × 7 held-out days. `restock show` says so.
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b", "c", "d", "e", "f", "g", "h"], 63, None));
    p.write("p.yaml", &pipeline("ensemble, members: [naive, seasonal_naive]"));
    p.ok(&["run", "p.yaml"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    assert!(show.contains("the ensemble forecast with `seasonal_naive` alone (chosen on the held-out tails)"), "{show}");
    let alone = p.query("SELECT sku_id, step, forecast, p10, p90 FROM forecasts ORDER BY 1, 2");
    p.write("p.yaml", &pipeline("seasonal_naive"));
    p.ok(&["run", "p.yaml"]);
    assert_eq!(p.query("SELECT sku_id, step, forecast, p10, p90 FROM forecasts ORDER BY 1, 2"), alone);
    // With one series there are too few held-out values (7) to choose by: the median.
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a"], 63, None));
    p.write("p.yaml", &pipeline("ensemble, members: [naive, seasonal_naive]"));
    p.ok(&["run", "p.yaml"]);
    assert!(p.ok(&["show", &p.last_run_id()]).contains("the ensemble forecast with the median of its members"));
    p.invalid("p.yaml", &pipeline("ensemble, members: [ets, ensemble]"), "an ensemble cannot be its own member");
    p.invalid("p.yaml", &pipeline("ensemble, members: [ets, thta]"), "unknown forecast method `thta`");
    p.invalid("p.yaml", &pipeline("ets, members: [ets, theta]"), "`members` is only for `method: ensemble`");
    let msg = "`model` is only for `method: lm` (or an ensemble with `lm` among its members)";
    p.invalid("p.yaml", &pipeline("ensemble, members: [ets, theta], model: m"), msg);
    // The weekly peak (days 5 and 6 of the cycle) is forecast above the trough by ETS.
    p.write("p.yaml", &pipeline("ets"));
    p.ok(&["run", "p.yaml"]);
    let peak = p.query("SELECT max(forecast) - min(forecast) FROM forecasts WHERE sku_id = 'a'");
    assert!(peak[0].parse::<f64>().unwrap() > 5.0, "{peak:?}");
}

/// A day a series skips is a missing value, not a day the series leaps over: the weekly cycle
/// stays in phase (seasonal naive repeats the last week) and the run warns with the count. Two
/// rows of a series at one date fail the run, naming the series and the date.
#[test]
fn a_skipped_day_is_a_missing_value_and_a_repeated_day_an_error() {
    use datafusion::arrow::compute::filter_record_batch;
    let p = Project::empty();
    let full = demand(&["a"], 63, None);
    let skip = BooleanArray::from((0..63).map(|d| d != 58 && d != 59).collect::<Vec<_>>());
    write_parquet(&p, "lake/raw/demand/part-0.parquet", filter_record_batch(&full, &skip).unwrap());
    p.write("p.yaml", &pipeline("seasonal_naive"));
    let (ok, out) = p.loud(&["run", "p.yaml"]);
    assert!(ok && out.contains("2 missing dates in 1 series read as missing values"), "{out}");
    // Day 63 + h repeats day 56 + h, the same day of the cycle (read as consecutive, the last
    // seven values would be days 54–57 and 60–62); the two skipped days have no value to repeat.
    let units = full.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    let got: Vec<f64> = p.query("SELECT forecast FROM forecasts ORDER BY date").iter().map(|v| v.parse().unwrap()).collect();
    for h in [0, 1, 4, 5, 6] {
        assert_eq!(got[h], units.value(56 + h), "step {}: {got:?}", h + 1);
    }

    let twice = datafusion::arrow::compute::concat_batches(&full.schema(), &[full.slice(0, 63), full.slice(20, 1)]).unwrap();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", twice);
    let err = p.fails(&["run", "p.yaml"], 1);
    assert!(err.contains("series (sku_id) = (a) has two rows at 2024-10-24"), "{err}");
}

/// Without `season_length`, `freq: month` reads a year's season: seasonal naive repeats the
/// last twelve months (a season of 7 would repeat months 6–12 of the last year).
#[test]
fn a_forecast_without_season_length_takes_its_freqs_season() {
    let p = Project::empty();
    let months: Vec<i32> = (0..36)
        .map(|m| {
            (chrono::NaiveDate::from_ymd_opt(2021 + m / 12, (m % 12) as u32 + 1, 1).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days() as i32
        })
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["a"; 36])) as ArrayRef),
        ("date", Arc::new(Date32Array::from(months))),
        ("units", Arc::new(Float64Array::from((0..36).map(|m| (m % 12 + 1) as f64).collect::<Vec<_>>()))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", batch);
    let yaml = pipeline("seasonal_naive").replace("season_length: 7, horizon: 7", "freq: month, horizon: 12");
    p.write("p.yaml", &yaml);
    p.ok(&["run", "p.yaml"]);
    let got: Vec<String> = p.query("SELECT CAST(forecast AS INT) FROM forecasts ORDER BY date");
    assert_eq!(got, (1..=12).map(|m| m.to_string()).collect::<Vec<_>>());
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
    // 6 held-out tails of 7 values: too few to choose a member by.
    assert!(out.contains("ensemble: forecast with the median of its members (chosen on the held-out tails)"), "{out}");
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
    for bad in ["--detrend=-0.1", "--drift=-1", "--temperature=0", "--top-k=-1", "--lag-seasons=0"] {
        let err = p.fails(&["evaluate", "--data", "long.parquet", "--horizon", "7", "--season", "7", "--methods", "lm", bad], 1);
        assert!(
            err.contains("--temperature must be > 0, --top-k ≥ 0, --detrend a share ≥ 0") && err.contains("--lag-seasons `auto` or ≥ 1"),
            "{bad:?}: {err}"
        );
    }
    let err =
        p.fails(&["evaluate", "--data", "long.parquet", "--horizon", "7", "--season", "7", "--methods", "lm", "--trend", "linear"], 2);
    assert!(err.contains("invalid value 'linear' for '--trend") && err.contains("growth"), "{err}");
}

/// `lm` lifts a series with values below zero above zero before the model reads it (the model
/// was pretrained on values ≥ 0, and pulls such a series towards zero); `--no-lift` reads it
/// as it is, and scores worse.
#[test]
fn evaluate_lifts_values_below_zero_unless_told_not_to() {
    use datafusion::arrow::array::Int64Array;
    let p = Project::empty();
    let n = 64;
    let value = |t: usize| -40.0 + 10.0 * (t % 4) as f64 + [0.4, -0.3, 0.1][t % 3];
    let long = RecordBatch::try_from_iter(vec![
        ("series_id", Arc::new(StringArray::from(vec!["a"; n])) as ArrayRef),
        ("ts", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef),
        ("value", Arc::new(Float64Array::from((0..n).map(value).collect::<Vec<_>>())) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&p, "long.parquet", long);
    let wql = |extra: &[&str]| -> f64 {
        let small = format!("{}/models/small", crate::common::REPO);
        let ev = ["evaluate", "--data", "long.parquet", "--horizon", "8", "--season", "4", "--methods", "lm", "--model", &small];
        let args = [&ev[..], extra].concat();
        let out = p.ok(&args);
        let line = out.lines().find(|l| l.contains(" lm ")).unwrap_or_else(|| panic!("no lm row:\n{out}"));
        line.split('┆').nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no WQL in {line}"))
    };
    let (lifted, as_is) = (wql(&[]), wql(&["--no-lift"]));
    assert!(lifted < 0.7 * as_is, "lifted {lifted} against read as it is {as_is}");
}

/// Series that grow by a share a step: `lm` takes the growth out before the model reads them
/// (which damps it) and puts it back on the forecast; the default `--trend auto` picks growth
/// in its backtest of the series' own last values, and says so at `RESTOCK_LOG=restock=info`.
#[test]
fn evaluate_auto_takes_a_compounding_growth_out_of_the_context() {
    use datafusion::arrow::array::Int64Array;
    let p = Project::empty();
    let (series, n) = (10, 30);
    let value = |s: usize, t: usize| {
        (20.0 + 7.0 * s as f64) * (1.06 + 0.004 * s as f64).powi(t as i32) * (1.0 + 0.02 * [0.5, -1.0, 0.3, 0.8, -0.6][(t + s) % 5])
    };
    let ids: Vec<String> = (0..series * n).map(|i| format!("s{}", i / n)).collect();
    let long = RecordBatch::try_from_iter(vec![
        ("series_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("ts", Arc::new(Int64Array::from((0..series * n).map(|i| (i % n) as i64).collect::<Vec<_>>())) as ArrayRef),
        ("value", Arc::new(Float64Array::from((0..series * n).map(|i| value(i / n, i % n)).collect::<Vec<_>>())) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&p, "long.parquet", long);
    let small = format!("{}/models/small", crate::common::REPO);
    let run = |trend: &str| -> (f64, String) {
        let ev = [
            "evaluate",
            "--data",
            "long.parquet",
            "--horizon",
            "6",
            "--season",
            "1",
            "--methods",
            "lm",
            "--model",
            &small,
            "--trend",
            trend,
        ];
        let out = p.cmd(&ev).env("RESTOCK_LOG", "restock=info").output().expect("run restock");
        assert!(out.status.success(), "{}", stderr(&out));
        let table = stdout(&out);
        let line = table.lines().find(|l| l.contains(" lm ")).unwrap_or_else(|| panic!("no lm row:\n{table}"));
        (line.split('┆').nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no WQL in {line}")), stderr(&out))
    };
    let ((auto, log), (off, _)) = (run("auto"), run("off"));
    assert!(log.contains("trend=\"growth\""), "auto picks growth: {log}");
    assert!(auto < 0.6 * off, "growth taken out {auto} against read as it is {off}");
}

/// Hourly rows in any order are read in time order (not by their date alone), forecasts keep
/// their times, and a series too short for a window is named as not scored; integer periods
/// are read in order and written back as integers.
#[test]
fn evaluate_reads_hourly_or_integer_times_in_order_and_counts_series_too_short() {
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    let p = Project::empty();
    let hour = 3_600_000_000i64;
    let start = 1_704_067_200_000_000i64; // 2024-01-01T00:00
    // Series `a`: its value is its hour, 72 hours written backwards; `b`: 5 hours.
    let rows: Vec<(&str, i64)> = (0..72).rev().map(|h| ("a", h)).chain((0..5).map(|h| ("b", h))).collect();
    // Writes LONG with this `ts` column, evaluates `naive`, and returns its stdout and forecasts.
    let evaluate = |name: &str, ts: ArrayRef| {
        let batch = RecordBatch::try_from_iter(vec![
            ("series_id", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef),
            ("ts", ts),
            ("value", Arc::new(Float64Array::from(rows.iter().map(|r| r.1 as f64).collect::<Vec<_>>())) as ArrayRef),
        ])
        .unwrap();
        write_parquet(&p, &format!("{name}.parquet"), batch);
        let (data, fc) = (format!("{name}.parquet"), format!("{name}_fc.parquet"));
        let out = p.ok(&["evaluate", "--data", &data, "--horizon", "4", "--season", "24", "--methods", "naive", "--forecasts", &fc]);
        let file = std::fs::File::open(p.file(&fc)).unwrap();
        let b =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
        let mean = b.column_by_name("mean").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(mean.iter().all(|m| m == Some(67.0)), "{name}: the naive forecast is hour 67's value: {mean:?}");
        (out, b)
    };

    let times = TimestampMicrosecondArray::from(rows.iter().map(|r| start + r.1 * hour).collect::<Vec<_>>());
    let (out, b) = evaluate("hourly", Arc::new(times));
    assert!(out.contains("1 of 2 series not scored: shorter than the 7 values"), "{out}");
    let ts = b.column_by_name("ts").unwrap().as_any().downcast_ref::<TimestampMicrosecondArray>().expect("hourly times");
    assert_eq!(ts.values().to_vec(), (68..72).map(|h| start + h * hour).collect::<Vec<_>>());

    // The same rows with `ts` as integer periods 0…71.
    let (_, b) = evaluate("periods", Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())));
    let ts = b.column_by_name("ts").unwrap().as_any().downcast_ref::<Int64Array>().expect("integer periods");
    assert_eq!(ts.values().to_vec(), (68..72).collect::<Vec<i64>>());

    // Without --season, hourly rows get a day's 24 steps; integer periods have no season to take.
    let out = p.ok(&["evaluate", "--data", "hourly.parquet", "--horizon", "4", "--methods", "naive"]);
    assert!(out.contains("horizon 4, season 24,"), "{out}");
    let err = p.fails(&["evaluate", "--data", "periods.parquet", "--horizon", "4", "--methods", "naive"], 1);
    assert!(err.contains("periods.parquet: give --season") && err.contains("integer periods"), "{err}");
}

#[test]
fn the_language_model_forecasts_as_a_stage_and_bad_models_are_named_at_validation() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b"], 40, None));
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    let out = p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "6", "--batch", "2", "--window", "32"]);
    assert!(out.contains("6 steps, 384 tokens"), "{out}");
    let err = p.fails(&["pretrain", "--config", &tiny, "--out", "m2", "--after-context", "1.5"], 2);
    assert!(err.contains("`1.5` is not a share from 0 to 1"), "{err}");
    let err = p.fails(&["models", "average", "model", "model", "--out", "soup", "--weight", "2"], 2);
    assert!(err.contains("`2` is not a share from 0 to 1"), "{err}");
    let lm = |extra: &str| pipeline(&format!("lm, {extra} paths: 8"));
    p.write("p.yaml", &lm("model: model, context: 16,"));
    p.ok(&["run", "p.yaml"]);
    let rows =
        p.query("SELECT count(*), sum(CASE WHEN p10 <= p50 AND p50 <= p90 AND p10 >= 0 THEN 1 ELSE 0 END), min(model) FROM forecasts");
    assert_eq!(rows, vec!["14,14,lm".to_string()]);
    // The model as an ensemble's member reads the stage's `lm` keys; `lm` among the default
    // members where the stage names a model. A member needs the model it reads.
    for members in ["members: [lm, ets, seasonal_naive],", ""] {
        p.write("p.yaml", &pipeline(&format!("ensemble, {members} model: model, context: 16, paths: 8")));
        p.ok(&["run", "p.yaml"]);
        let rows =
            p.query("SELECT count(*), sum(CASE WHEN p10 <= p50 AND p50 <= p90 AND p10 >= 0 THEN 1 ELSE 0 END), min(model) FROM forecasts");
        assert_eq!(rows, vec!["14,14,ensemble".to_string()], "{members}");
        assert!(p.ok(&["show", &p.last_run_id()]).contains("the ensemble forecast with the median"), "two series: too few held out");
    }
    p.write("p.yaml", &pipeline("ensemble, members: [lm, ets], paths: 8"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("`method: lm` needs `model:`"), "{err}");
    // A second output keeps the sample paths: 2 series × 7 steps × 8 paths, non-negative, and
    // their per-step quantiles are the published ones.
    p.write("p.yaml", &lm("model: model, context: 16,").replace("outputs: [forecasts]", "outputs: [forecasts, forecast_paths]"));
    p.ok(&["run", "p.yaml"]);
    let rows = p.query("SELECT count(*), count(DISTINCT path), min(value) >= 0, max(step) FROM forecast_paths");
    assert_eq!(rows, vec!["112,8,true,7".to_string()]);
    let medians = p.query(
        "SELECT count(*) FROM (SELECT sku_id, step, approx_percentile_cont(value, 0.5) AS m FROM forecast_paths GROUP BY 1, 2) q \
         JOIN forecasts f USING (sku_id, step) WHERE q.m < f.p10 OR q.m > f.p90",
    );
    assert_eq!(medians, vec!["0".to_string()]);
    p.write("p.yaml", &pipeline("ets").replace("outputs: [forecasts]", "outputs: [forecasts, forecast_paths]"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("second output (sample paths) needs `method: lm`"), "{err}");
    // Paths split across more context lengths than there are paths: refused, naming the key.
    // So are no seasons to average and a negative share; each error names the file and key.
    let refused = |extra: &str, msg: &str| {
        p.write("p.yaml", &lm(&format!("model: model, context: 16, {extra}")));
        let err = p.fails(&["validate", "p.yaml"], 2);
        assert!(err.contains("p.yaml:") && err.contains(msg), "{err}");
    };
    refused("contexts: 9,", "`contexts` must be ≥ 1 and at most `paths`");
    refused("lag_seasons: 0,", "`lag_seasons` must be `auto` or ≥ 1");
    refused("lag_seasons: many,", "`lag_seasons` must be `auto` or ≥ 1");
    for fine in ["lag_seasons: 3,", "lag_seasons: auto, trend: growth, drift: 3,"] {
        p.write("p.yaml", &lm(&format!("model: model, context: 16, {fine}")));
        p.ok(&["validate", "p.yaml"]);
    }
    refused("detrend: -0.1,", "`detrend` must be a share ≥ 0");
    refused("trend: linear,", "`trend` is `linear`; it must be one of auto, off, drift, growth, differences, season");
    refused("drift: -1,", "`drift` must be a number of standard errors ≥ 0");
    // The model's own spread, not narrowed by a factor learnt from the series' own last week.
    p.write("p.yaml", &lm("model: model, context: 16, calibrate: false,"));
    p.ok(&["run", "p.yaml"]);
    let rows = p.query("SELECT count(*), sum(CASE WHEN p10 <= p50 AND p50 <= p90 AND p10 >= 0 THEN 1 ELSE 0 END) FROM forecasts");
    assert_eq!(rows, vec!["14,14".to_string()]);
    // …but by default a single path reads a single context, as before there were two.
    p.write("p.yaml", &lm("model: model, context: 16,").replace("paths: 8", "paths: 1"));
    p.ok(&["validate", "p.yaml"]);

    // Nightly fine-tuning: the result is published as a table, registered or not by validation.
    let train = |base: &str| {
        format!(
            "name: ft\nlake: file://./lake\nstages:\n  - {{ id: ft, kind: train, inputs: {{ demand: raw/demand/ }}, outputs: [lm_model], config: {{ series: [sku_id], time: date, target: units, base: {base}, steps: 5, batch: 2, window: 16 }} }}\n"
        )
    };
    // (Scored by sampled forecasts' WQL here; CRPS, the default, everywhere else.)
    p.write("ft.yaml", &train("model").replace("steps: 5,", "steps: 5, score: wql,"));
    p.ok(&["run", "ft.yaml"]);
    let rows = p.query("SELECT series, steps, base_validation_loss > 0, validation_loss > 0, weights IS NOT NULL, (validation_loss <= base_validation_loss) = registered, base LIKE '%model' FROM lm_model");
    assert_eq!(rows, vec!["2,5,true,true,true,true,true".to_string()]);
    // Early stopping: validation every step, patience 1, a learning rate that diverges: training
    // stops one step after its best score (the best step is kept when it registers), long
    // before its 30 steps.
    p.write("ft.yaml", &train("model").replace("steps: 5,", "steps: 30, eval_every: 1, patience: 1, lr: 1.0,"));
    p.ok(&["run", "ft.yaml"]);
    let rows = p.query("SELECT steps < 10, registered = (best_step = steps - 1), base FROM lm_model");
    assert_eq!(rows, vec!["true,true,lm_model@v0".to_string()], "the second run fine-tunes the published version and stops early");
    let steps = p.query("SELECT steps FROM lm_model").remove(0);
    // The registry: both published versions with their losses; the latest exported as a folder
    // that `method: lm` forecasts with.
    let listed = p.ok(&["models"]);
    let versions: Vec<&str> = listed.lines().filter(|l| l.contains("lm_model")).collect();
    assert_eq!(versions.len(), 2, "{listed}");
    assert!(versions[1].contains("┆ 1 ") && versions[1].contains(&format!("┆ {steps} ")), "{listed}");
    // (Into a folder an earlier export of a text model left: a version without text takes its
    // tokenizer away, or the folder would read text with embeddings never trained on it.)
    p.write("exported/tokenizer.json", "{}");
    let out = p.ok(&["models", "export", "lm_model", "--out", "exported"]);
    assert!(out.contains("lm_model version 1"), "{out}");
    assert!(!p.file("exported/tokenizer.json").exists(), "a stale tokenizer.json stays beside weights without text");
    p.write("p.yaml", &lm("model: exported, context: 16,"));
    p.ok(&["run", "p.yaml"]);
    let err = p.fails(&["models", "export", "lm_model", "--version", "7", "--out", "x"], 1);
    assert!(err.contains("no version 7"), "{err}");
    // One run fine-tunes and forecasts with what it just trained (`model_input`: the staged
    // table); `restart: true` starts from the folder again.
    let forecast_with = |input: &str| {
        format!(
            "  - {{ id: fc, kind: forecast, inputs: {{ demand: raw/demand/, model: lm_model }}, outputs: [forecasts_lm], config: {{ method: lm, model_input: {input}, series: [sku_id], time: date, target: units, horizon: 7, paths: 4, context: 16 }} }}\n"
        )
    };
    // (With half its windows cut to a new SKU's first days.)
    let both = train("model").replace("steps: 5,", "steps: 3, restart: true, short_windows: 0.5,") + &forecast_with("model");
    p.write("ft.yaml", &both);
    p.ok(&["run", "ft.yaml"]);
    assert_eq!(p.query("SELECT count(*), min(model) FROM forecasts_lm"), vec!["14,lm".to_string()]);
    assert_eq!(p.query("SELECT steps, base LIKE '%model' FROM lm_model"), vec!["3,true".to_string()]);
    p.write("ft.yaml", &(train("model") + &forecast_with("nope")));
    let err = p.fails(&["validate", "ft.yaml"], 2);
    assert!(err.contains("ft.yaml:") && err.contains("`model_input: nope` must name one of the stage's inputs"), "{err}");
    p.write("ft.yaml", &(train("model") + &forecast_with("demand")));
    let err = p.fails(&["validate", "ft.yaml"], 2);
    assert!(err.contains("`model_input: demand` has no `weights` and `config_yaml` columns"), "{err}");
    p.write("ft.yaml", &train("model").replace("steps: 5,", "steps: 5, short_windows: 1.5,"));
    let err = p.fails(&["validate", "ft.yaml"], 2);
    assert!(
        err.contains("ft.yaml:4:") && err.contains("`short_windows` is a share of the training windows, from 0 to 1; got 1.5"),
        "{err}"
    );
    p.write("ft.yaml", &train("nowhere"));
    let err = p.fails(&["validate", "ft.yaml"], 2);
    assert!(err.contains("ft.yaml:") && err.contains("nowhere/config.yaml"), "{err}");

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

/// The tokenizer stage publishes a tokenizer.json that Python's `tokenizers` (PyPI) reads and
/// encodes to the same ids as restock.
#[test]
fn tokenizer_stage_publishes_a_tokenizer_python_reads_identically() {
    let p = Project::empty();
    let texts: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "{} tea, {} bags — {} flavour, rated {}/5",
                ["Green", "Black", "Oolong"][i % 3],
                10 + i % 4 * 10,
                ["mint", "lemon", "café"][i % 3],
                i % 5 + 1
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(vec![("text", Arc::new(StringArray::from(texts)) as ArrayRef)]).unwrap();
    write_parquet(&p, "lake/raw/products/part-0.parquet", batch);
    p.write(
        "p.yaml",
        "name: tok\nlake: file://./lake\nstages:\n  - { id: tok, kind: tokenizer, inputs: { products: raw/products/ }, outputs: [tokenizer], config: { vocab_size: 300 } }\n",
    );
    p.ok(&["run", "p.yaml"]);
    let out = p.ok(&["query", "--format", "json", "SELECT vocab_size, documents, tokenizer_json FROM tokenizer"]);
    let parsed: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let row = if parsed.is_array() { &parsed[0] } else { &parsed };
    assert_eq!(row["documents"], 200);
    let json = row["tokenizer_json"].as_str().unwrap();
    std::fs::write(p.file("tokenizer.json"), json).unwrap();
    let sample = "Green tea, 20 bags — café flavour, rated 4/5 and something new: ünïcode";
    let tk = restock::lm::text::TextTokenizer::from_json(json).unwrap();
    let ours = tk.encode(sample).unwrap();
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys, tokenizers; t = tokenizers.Tokenizer.from_file(sys.argv[1]); print(t.encode(sys.argv[2], add_special_tokens=False).ids)"])
        .arg(p.file("tokenizer.json"))
        .arg(sample)
        .output()
        .expect("python3 with tokenizers (scripts/test installs it)");
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), format!("{ours:?}"));
    let seen = "Green tea, 20 bags — mint flavour, rated 4/5";
    let n = tk.encode(seen).unwrap().len();
    assert!(n < seen.len() / 3, "merges learned from the catalog: {n} ids for {} bytes", seen.len());

    p.write("p.yaml", &std::fs::read_to_string(p.file("p.yaml")).unwrap().replace("vocab_size: 300", "column: title"));
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("column `title` not in input `products`") && err.contains("p.yaml:"), "{err}");
}

/// Product text end to end: a tokenizer stage, a fine-tune that reads each SKU's text (taking
/// the tokenizer, which the published model then carries and exports, from a base pretrained with
/// a tokenizer of its own), and a forecast that reads
/// it again; a series without text is forecast without it, with a warning. Bad text settings are
/// named at validation.
#[test]
fn a_fine_tune_reads_product_text_and_its_forecasts_do_too() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b", "c"], 60, None));
    let products = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["a", "b", "zz"])) as ArrayRef),
        ("text", Arc::new(StringArray::from(vec!["Green tea, 20 bags | Grocery > Tea", "Garden hose 25 m | Garden", "Mug"])) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/products/part-0.parquet", products);
    let tiny = std::fs::read_to_string(format!("{}/models/tiny.yaml", crate::common::REPO)).unwrap();
    p.write("tiny_text.yaml", &tiny.replace("text_vocab: 0", "text_vocab: 300"));
    p.ok(&["pretrain", "--config", "tiny_text.yaml", "--out", "model", "--steps", "4", "--batch", "2", "--window", "32"]);
    let pipeline = |text: &str, fc_text: &str| {
        format!(
            r#"name: ft
lake: file://./lake
stages:
  - {{ id: tok, kind: tokenizer, inputs: {{ products: raw/products/ }}, outputs: [tokenizer], config: {{ vocab_size: 280, min_frequency: 1 }} }}
  - id: ft
    kind: train
    inputs: {{ demand: raw/demand/, products: raw/products/, tokenizer: tokenizer }}
    outputs: [lm_model]
    config: {{ series: [sku_id], time: date, target: units, base: model, steps: 30, lr: 0.003, batch: 2, window: 16, text: {{ {text} }} }}
  - id: fc
    kind: forecast
    inputs: {{ demand: raw/demand/, model: lm_model, products: raw/products/ }}
    outputs: [forecasts_lm]
    config: {{ method: lm, model_input: model, series: [sku_id], time: date, target: units, horizon: 7, paths: 4, context: 16, text: {{ {fc_text} }} }}
"#
        )
    };
    p.write("ft.yaml", &pipeline("input: products, tokenizer: tokenizer, max_tokens: 8", "input: products, max_tokens: 8"));
    let (ok, out) = p.loud(&["run", "ft.yaml"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 of 3 series have no text; they train without it"), "{out}");
    assert_eq!(p.query("SELECT count(*) FROM forecasts_lm"), vec!["21".to_string()]);
    // Pretraining gave the base a tokenizer of its own (`lm::describe`'s texts); the fine-tune
    // reads the stage's, its text embeddings carried over, registered or kept.
    assert!(out.contains("reads tonight's tokenizer, its text embeddings carried over by token text"), "{out}");
    let rows = p.query("SELECT tokenizer_json = (SELECT tokenizer_json FROM tokenizer), registered FROM lm_model");
    assert!(rows == vec!["true,true".to_string()] || rows == vec!["true,false".to_string()], "{rows:?}");
    // Either model reads text, so the forecast says which series it has none for.
    let registered = rows[0].ends_with("true");
    assert!(out.contains("1 of 3 series have no text; they are forecast without it"), "{out}");
    if registered {
        p.ok(&["models", "export", "lm_model", "--out", "exported"]);
        let json = std::fs::read_to_string(p.file("exported/tokenizer.json")).unwrap();
        assert!(restock::lm::text::TextTokenizer::from_json(&json).unwrap().vocab_size() <= 280);
    }

    // A tokenizer with more ids than the model has text embeddings is refused, naming both.
    p.write("narrow.yaml", &tiny.replace("text_vocab: 0", "text_vocab: 260"));
    p.ok(&["pretrain", "--config", "narrow.yaml", "--out", "narrow", "--steps", "2", "--batch", "2", "--window", "32"]);
    p.write(
        "ft.yaml",
        &pipeline("input: products, tokenizer: tokenizer", "input: products").replace("base: model,", "base: narrow, restart: true,"),
    );
    let (ok, out) = p.loud(&["run", "ft.yaml"]);
    assert!(!ok && out.contains("the tokenizer has") && out.contains("at most 260 (`text_vocab`)"), "{out}");
    // Validation names the bad setting: a missing input, a column that is not there, a tokenizer
    // input that is not a tokenizer, tokenizer options on a forecast, text for a statistical method.
    for (text, fc_text, expected) in [
        ("input: nope, tokenizer: tokenizer", "input: products", "`text/input: nope` is not one of the stage's inputs"),
        ("input: products, column: title, tokenizer: tokenizer", "input: products", "no text column `title` in input `products`"),
        ("input: products, tokenizer: products", "input: products", "`text/tokenizer: products` has no `tokenizer_json` column"),
        ("input: products, tokenizer: tokenizer", "input: products, dropout: 0.5", "only for a `train` stage"),
    ] {
        p.invalid("ft.yaml", &pipeline(text, fc_text), expected);
    }
    p.write(
        "p.yaml",
        &pipeline("input: products", "input: products")
            .replace("method: lm, model_input: model,", "method: ets,")
            .replace("model: lm_model, products", "products"),
    );
    let err = p.fails(&["validate", "p.yaml"], 2);
    assert!(err.contains("`text` is only for `method: lm`"), "{err}");
}

/// A fine-tune of `model` on raw/demand/ (one series per `sku_id`, 300 steps) with `cov`
/// appended to its config, then a 5-step forecast with the model it trained (`future` appended;
/// one naming `plan` adds the input raw/plan/).
fn covariates_pipeline(cov: &str, future: &str) -> String {
    let plan = if future.contains("plan") { ", plan: raw/plan/" } else { "" };
    format!(
        r#"name: ft
lake: file://./lake
stages:
  - id: ft
    kind: train
    inputs: {{ demand: raw/demand/ }}
    outputs: [lm_model]
    config: {{ series: [sku_id], time: date, target: units, base: model, steps: 300, batch: 8, window: 36, lr: 3e-3, season_length: 1, eval_every: 0{cov} }}
  - id: fc
    kind: forecast
    inputs: {{ demand: raw/demand/, model: lm_model{plan} }}
    outputs: [forecasts_lm]
    config: {{ method: lm, model_input: model, series: [sku_id], time: date, target: units, horizon: 5, season_length: 1, paths: 50, context: 27, quantiles: [0.5]{future} }}
"#
    )
}

/// SKU `sku`'s point forecasts in `forecasts_lm`, by step.
fn lm_forecasts(p: &Project, sku: &str) -> Vec<f64> {
    let rows = p.query(&format!("SELECT step, forecast FROM forecasts_lm WHERE sku_id = '{sku}' ORDER BY step"));
    rows.iter().map(|r| r.split(',').nth(1).unwrap().parse().unwrap()).collect()
}

/// Known covariates end to end: a fine-tune reading a promotion flag gains it (the model's
/// config names it), the forecast reads its history from the demand and the horizon's from a
/// `future:` plan keyed by SKU, and its forecast rises on the planned promotion day only. Bad
/// settings are named at validation; a model with covariates needs them wherever it runs.
#[test]
fn a_fine_tune_learns_a_promotion_flag_and_forecasts_read_the_plan() {
    let p = Project::empty();
    let days = 140;
    // Promotion days at random (a fixed LCG), so no calendar pattern stands in for the flag.
    let mut state = 7u64;
    let mut flip = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % 6 == 0
    };
    let random_days: Vec<bool> = (0..140).map(|_| flip()).collect();
    let promo = |d: i32| random_days[d as usize];
    let (mut ids, mut dates, mut units, mut flags) = (vec![], vec![], vec![], vec![]);
    for (k, sku) in ["a", "b"].iter().enumerate() {
        for d in 0..days {
            ids.push(*sku);
            dates.push(20_000 + d);
            units.push((8.0 + 2.0 * k as f64 + (d % 2) as f64) * if promo(d) { 3.0 } else { 1.0 });
            flags.push(promo(d));
        }
    }
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("date", Arc::new(Date32Array::from(dates))),
        ("units", Arc::new(Float64Array::from(units))),
        ("promo", Arc::new(BooleanArray::from(flags))),
        ("label", Arc::new(StringArray::from(vec!["x"; 2 * days as usize]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", batch);
    // The plan: SKU a is on promotion on the third day after the history.
    let plan = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("date", Arc::new(Date32Array::from(vec![20_000 + days + 2]))),
        ("promo", Arc::new(BooleanArray::from(vec![true]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/plan/part-0.parquet", plan);
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "2", "--batch", "2", "--window", "32"]);
    let pipeline = covariates_pipeline;
    p.write("ft.yaml", &pipeline(", covariates: [promo]", ", future: plan"));
    let (ok, out) = p.loud(&["run", "ft.yaml"]);
    assert!(ok, "{out}");
    assert!(!out.contains("the horizon reads none"), "{out}");
    let config = p.query("SELECT config_yaml FROM lm_model").join("\n");
    assert!(config.contains("n_covariates: 1") && config.contains("- promo"), "{config}");
    let fc = lm_forecasts(&p, "a");
    let off = (fc[0] + fc[1] + fc[3] + fc[4]) / 4.0;
    assert!(fc[2] > 1.5 * off, "the planned promotion day lifts the forecast: {fc:?}");

    // Without a plan the horizon reads no promotion, and the run says so.
    p.write("fc.yaml", &pipeline(", covariates: [promo]", "").replace("steps: 300", "steps: 2"));
    let (ok, out) = p.loud(&["run", "fc.yaml"]);
    assert!(ok && out.contains("reads the covariates [promo]; with no `future:` input the horizon reads none"), "{out}");
    // The published model reads `promo`: a fine-tune that does not list it is refused.
    p.write("ft.yaml", &pipeline("", ", future: plan").replace("steps: 300", "steps: 2"));
    let (ok, out) = p.loud(&["run", "ft.yaml"]);
    assert!(!ok && out.contains("reads the covariates [promo], not []"), "{out}");
    for (cov, future, expected) in [
        (", covariates: [nope]", "", "no covariate column `nope` in input `demand`"),
        (", covariates: [label]", "", "covariate column `label` of `demand` is Utf8, expected BOOLEAN (a flag) or a number"),
        ("", ", future: nope", "`future: nope` is not one of the stage's inputs"),
        ("", ", future: demand2", "not one of the stage's inputs"),
    ] {
        p.invalid("bad.yaml", &pipeline(cov, future), expected);
    }
    let ets = pipeline("", ", future: plan").replace("method: lm, model_input: model,", "method: ets,").replace(" model: lm_model,", "");
    p.invalid("bad.yaml", &ets, "`future` is only for `method: lm`");
    let ets =
        pipeline("", "").replace("method: lm, model_input: model,", "method: ets,").replace("quantiles: [0.5]", "covariates: [promo]");
    p.invalid("bad.yaml", &ets.replace(", model: lm_model", ""), "`covariates` is only for `method: lm`");

    // A model pretrained with covariate slots reads the columns the stage names, zero-shot; the
    // fine-tuned model reads only the ones it learned.
    p.write("slots.yaml", &std::fs::read_to_string(&tiny).unwrap().replace("season_lag: true", "season_lag: true\nn_covariates: 2"));
    p.ok(&["pretrain", "--config", "slots.yaml", "--out", "slots", "--steps", "2", "--batch", "2", "--window", "32"]);
    let zero_shot = |model: &str, cov: &str| {
        format!(
            "name: zs\nlake: file://./lake\nstages:\n  - {{ id: fc, kind: forecast, inputs: {{ demand: raw/demand/, plan: raw/plan/ }}, outputs: [forecasts_zs], config: {{ method: lm, model: {model}, series: [sku_id], time: date, target: units, horizon: 5, season_length: 1, paths: 4, future: plan{cov} }} }}\n"
        )
    };
    p.write("zs.yaml", &zero_shot("slots", ", covariates: [promo]"));
    let (ok, out) = p.loud(&["run", "zs.yaml"]);
    assert!(ok && !out.contains("reads no covariates"), "{out}");
    p.write("zs.yaml", &zero_shot("slots", ", covariates: [calendar.weekend]"));
    let (ok, out) = p.loud(&["run", "zs.yaml"]);
    assert!(ok && out.contains("reads only calendar covariates, computed from the dates, so `future: plan` is unused"), "{out}");
    p.write("zs.yaml", &zero_shot("slots", ""));
    let (ok, out) = p.loud(&["run", "zs.yaml"]);
    assert!(ok && out.contains("the model reads no covariates, so `future: plan` is unused"), "{out}");
    p.ok(&["models", "export", "lm_model", "--out", "tuned"]);
    p.write("zs.yaml", &zero_shot("tuned", ", covariates: [units]"));
    let (ok, out) = p.loud(&["run", "zs.yaml"]);
    assert!(!ok && out.contains("reads the covariates [promo], not `covariates: [units]`"), "{out}");
}

/// A calendar covariate (`calendar.month_end`) comes from the date: no column, no plan. A
/// fine-tune learns that the last three days of a month sell four times as much — too far apart
/// for the context to show it — and the forecast lifts exactly the month-end steps.
#[test]
fn a_calendar_covariate_needs_no_column_and_no_plan() {
    let p = Project::empty();
    // 2024-11-07 … 2025-03-26 (140 days): the horizon, 27–31 March, ends the month on steps 3–5.
    let (first, days) = (20_034, 140);
    let month_end = |d: i32| {
        let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(d as i64);
        (date + chrono::Duration::days(3)).format("%d").to_string().parse::<u32>().unwrap() <= 3
    };
    let table = |names: [&str; 3], days: i32| {
        let (mut ids, mut dates, mut units) = (vec![], vec![], vec![]);
        for (k, sku) in ["a", "b"].iter().enumerate() {
            for d in first..first + days {
                ids.push(*sku);
                dates.push(d);
                units.push((8.0 + 2.0 * k as f64 + (d % 2) as f64) * if month_end(d) { 4.0 } else { 1.0 });
            }
        }
        RecordBatch::try_from_iter(vec![
            (names[0], Arc::new(StringArray::from(ids)) as ArrayRef),
            (names[1], Arc::new(Date32Array::from(dates))),
            (names[2], Arc::new(Float64Array::from(units))),
        ])
        .unwrap()
    };
    write_parquet(&p, "lake/raw/demand/part-0.parquet", table(["sku_id", "date", "units"], days));
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "2", "--batch", "2", "--window", "32"]);
    let pipeline = |cov: &str| covariates_pipeline(&format!(", covariates: [{cov}]"), "");
    p.write("cal.yaml", &pipeline("calendar.month_end"));
    let (ok, out) = p.loud(&["run", "cal.yaml"]);
    assert!(ok && !out.contains("the horizon reads none"), "{out}");
    let config = p.query("SELECT config_yaml FROM lm_model").join("\n");
    assert!(config.contains("- calendar.month_end"), "{config}");
    let fc = lm_forecasts(&p, "a");
    let (before, after) = ((fc[0] + fc[1]) / 2.0, (fc[2] + fc[3] + fc[4]) / 3.0);
    assert!(after > 1.8 * before, "the month's last three days lift the forecast: {fc:?}");
    p.invalid("bad.yaml", &pipeline("calendar.holiday"), "unknown calendar covariate `calendar.holiday` (known: calendar.weekend");
    let forecast_reads = covariates_pipeline("", ", covariates: [calendar.weekday]");
    p.invalid("bad.yaml", &forecast_reads, "unknown calendar covariate `calendar.weekday` (known: calendar.weekend");
    p.invalid("bad.yaml", &forecast_reads, "did you mean `calendar.weekdays`?");

    // `restock evaluate` computes the fine-tuned model's calendar covariate from `ts`: held out,
    // 27–31 March, three of them month-end days, which a naive forecast cannot see coming.
    write_parquet(&p, "long.parquet", table(["series_id", "ts", "value"], days + 5));
    p.ok(&["models", "export", "lm_model", "--out", "tuned"]);
    let ev = ["evaluate", "--data", "long.parquet", "--horizon", "5", "--season", "1", "--paths", "50", "--context", "27"];
    let out = p.ok(&[&ev[..], &["--methods", "naive,lm", "--model", "tuned"]].concat());
    let wql = |m: &str| -> f64 {
        let row = out.lines().find(|l| l.contains(&format!(" {m} "))).unwrap_or_else(|| panic!("no {m} row:\n{out}"));
        row.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).nth(1).unwrap().parse().unwrap()
    };
    assert!(wql("lm") < 0.6 * wql("naive"), "the model reads the month's end:\n{out}");
    let err = p.fails(&[&ev[..], &["--methods", "lm", "--model", "model", "--covariates", "calendar.holiday"]].concat(), 1);
    assert!(err.contains("long.parquet: unknown calendar covariate `calendar.holiday`"), "{err}");
}

/// The LM pipeline's yearly-season covariate (sql/category_last_year.sql, joined by
/// sql/lm_demand.sql and sql/lm_plan.sql as `pipelines/lm_nightly.yaml` does): a category's
/// demand 364 days earlier, pooled over its SKUs and averaged over the 15 days around that date,
/// on the history and on the plan a year past it; none before a year of history. Stockout days'
/// units are masked.
#[test]
fn category_last_year_carries_a_categorys_season_a_year_ahead() {
    let p = Project::with_pipelines();
    // 500 days from 2024-10-04; garden SKUs a and b sell 10 a day on days 80–120, 1 otherwise;
    // toy SKU c sells 3 every day, but ran out of stock on day 450. One promotion of a, planned
    // the day after the history.
    let (first, days) = (20_000, 500);
    let (mut ids, mut dates, mut units) = (vec![], vec![], vec![]);
    for sku in ["a", "b", "c"] {
        for d in 0..days {
            ids.push(sku);
            dates.push(first + d);
            units.push(if sku == "c" {
                3.0
            } else if (80..=120).contains(&d) {
                10.0
            } else {
                1.0
            });
        }
    }
    let demand = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("location_id", Arc::new(StringArray::from(vec!["x"; 3 * days as usize]))),
        ("date", Arc::new(Date32Array::from(dates))),
        ("units", Arc::new(Float64Array::from(units))),
        ("promo", Arc::new(BooleanArray::from(vec![false; 3 * days as usize]))),
        ("censored", Arc::new(BooleanArray::from((0..3 * days).map(|i| i == 2 * days + 450).collect::<Vec<_>>()))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand);
    let products = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef),
        ("category", Arc::new(StringArray::from(vec!["Garden", "Garden", "Toys"]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/products/part-0.parquet", products);
    let promotions = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("date", Arc::new(Date32Array::from(vec![first + days]))),
        ("promo", Arc::new(BooleanArray::from(vec![true]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/promotions/part-0.parquet", promotions);
    let sql = |id: &str, inputs: &str| {
        format!(
            "  - {{ id: {id}, kind: sql, inputs: {{ demand: raw/demand/, products: raw/products/{inputs} }}, outputs: [{id}], config: {{ file: ../sql/{id}.sql }} }}\n"
        )
    };
    let season = ", season: category_last_year";
    p.write(
        "pipelines/season.yaml",
        &format!(
            "name: season\nlake: file://./lake\nstages:\n{}{}{}",
            sql("category_last_year", ""),
            sql("lm_demand", season),
            sql("lm_plan", &format!("{season}, promotions: raw/promotions/"))
        ),
    );
    p.ok(&["run", "pipelines/season.yaml"]);
    let at = |table: &str, sku: &str, day: i32| {
        let q = format!(
            "SELECT category_last_year FROM {table} WHERE sku_id = '{sku}' AND date = DATE '1970-01-01' + INTERVAL '{}' DAY",
            first + day
        );
        p.query(&q).join(",")
    };
    // A year after the garden peak's middle (days 93–107 all at 10, two SKUs): 20 a day.
    assert_eq!(at("lm_demand", "a", 100 + 364), "20.0");
    assert_eq!(at("lm_demand", "b", 100 + 364), "20.0", "every SKU of the category reads the same");
    // Its edge: days 113–127, 8 of them at 20 and 7 at 2.
    let edge: f64 = at("lm_demand", "a", 120 + 364).parse().unwrap();
    assert!((edge - (8.0 * 20.0 + 7.0 * 2.0) / 15.0).abs() < 1e-9, "{edge}");
    assert_eq!(at("lm_demand", "c", 100 + 364), "3.0", "the toy category is flat");
    let unknown =
        format!("SELECT MAX(date) = DATE '1970-01-01' + INTERVAL '{}' DAY FROM lm_demand WHERE category_last_year IS NULL", first + 363);
    assert_eq!(p.query(&unknown), vec!["true"], "none before a year of history");
    assert_eq!(p.query("SELECT COUNT(*), COUNT(category_last_year) FROM lm_demand"), vec![format!("{},{}", 3 * days, 3 * (days - 364))]);
    // The stockout day's sales are not demand: masked (NULL), the others kept.
    let masked = format!("SELECT sku_id, date = DATE '1970-01-01' + INTERVAL '{}' DAY FROM lm_demand WHERE units IS NULL", first + 450);
    assert_eq!(p.query(&masked), vec!["c,true"]);
    // The plan: the days after the history, a year ahead of the history's last days, per SKU.
    assert_eq!(p.query("SELECT COUNT(*), MIN(date) = DATE '1970-01-01' + INTERVAL '20500' DAY FROM lm_plan"), vec!["1092,true"]);
    assert_eq!(at("lm_plan", "a", 80 + 365 + 364), "2.0", "a year after day 445: the garden's off season");
    assert_eq!(
        p.query("SELECT sku_id, CAST(date AS VARCHAR) FROM lm_plan WHERE promo"),
        vec!["a,2026-02-16"],
        "the plan keeps the promotion calendar's day"
    );
}

/// A fine-tune killed mid-training continues from its last checkpoint (the run's scratch folder)
/// on `restock resume`, and the finished run leaves no checkpoint behind.
#[test]
fn a_killed_fine_tune_resumes_from_its_checkpoint() {
    let p = Project::empty();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", demand(&["a", "b"], 40, None));
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "1", "--batch", "2", "--window", "32"]);
    p.write(
        "ft.yaml",
        "name: ft\nlake: file://./lake\nstages:\n  - { id: ft, kind: train, inputs: { demand: raw/demand/ }, outputs: [lm_model], config: { series: [sku_id], time: date, target: units, base: model, steps: 600, batch: 2, window: 16, eval_every: 0, checkpoint_every: 5 } }\n",
    );
    let mut child = p.std_cmd(&["run", "ft.yaml"]).spawn().unwrap();
    let checkpoint_step = || -> Option<u64> {
        let staging = std::fs::read_dir(p.file("lake/_staging")).ok()?;
        staging.flatten().find_map(|run| {
            let text = std::fs::read(run.path().join(".scratch/ft/state.json")).ok()?;
            serde_json::from_slice::<serde_json::Value>(&text).ok()?["step"].as_u64()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while checkpoint_step().is_none() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training finished before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = p.last_run_id();
    let (ok, out) = p.loud(&["resume", &id]);
    assert!(ok, "{out}");
    let step: u64 = out
        .split("saved at step ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("resume did not continue from a checkpoint:\n{out}"));
    assert!(step >= 5 && step < 600 && step % 5 == 0, "{out}");
    assert_eq!(p.query("SELECT steps, registered IS NOT NULL FROM lm_model"), vec!["600,true".to_string()]);
    assert!(!p.file(&format!("lake/_staging/{id}")).exists(), "the run's staging, checkpoint included, is gone after publish");
}

/// A fine-tune that trains for new SKUs (`short_windows`) holds one launched product in eight
/// out of training and scores forecasts from its first days apart: `restock show` prints the
/// base's score and the fine-tune's. Without launched products there is no such line.
#[test]
fn a_fine_tune_for_new_skus_scores_held_out_launches_apart() {
    let p = Project::empty();
    // One SKU sold from the first day, eight launched on day 20.
    let (mut ids, mut dates, mut units) = (vec![], vec![], vec![]);
    for (k, sku) in ["old", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"].iter().enumerate() {
        for d in if k == 0 { 0..60 } else { 20..60 } {
            ids.push(*sku);
            dates.push(20_000 + d);
            units.push(5.0 + k as f64 + (d % 7) as f64 + if k > 0 { 30.0 / (1.0 + (d - 20) as f64) } else { 0.0 });
        }
    }
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("date", Arc::new(Date32Array::from(dates))),
        ("units", Arc::new(Float64Array::from(units))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/demand/part-0.parquet", batch);
    let tiny = format!("{}/models/tiny.yaml", crate::common::REPO);
    p.ok(&["pretrain", "--config", &tiny, "--out", "model", "--steps", "1", "--batch", "2", "--window", "32"]);
    let ft = |short: &str| {
        format!(
            "name: ft\nlake: file://./lake\nstages:\n  - {{ id: ft, kind: train, inputs: {{ demand: raw/demand/ }}, outputs: [lm_model], config: {{ series: [sku_id], time: date, target: units, base: model, steps: 3, batch: 2, window: 16, restart: true{short} }} }}\n"
        )
    };
    p.write("ft.yaml", &ft(", short_windows: 0.5"));
    p.ok(&["run", "ft.yaml"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    let line = show.lines().find(|l| l.contains("new SKUs")).unwrap_or_else(|| panic!("{show}"));
    assert!(line.starts_with("ft attempt 1: new SKUs (the first days of 1 launched series held out of training): validation "), "{line}");
    let words: Vec<&str> = line.split("validation ").nth(1).unwrap().split_whitespace().collect();
    assert_eq!((words.len(), words[1], words[2]), (4, "(base)", "→"), "{line}");
    let scores: Vec<f64> = [words[0], words[3]].iter().map(|w| w.parse().unwrap()).collect();
    assert!(scores.iter().all(|s| s.is_finite() && *s > 0.0), "{line}");
    assert_eq!(p.query("SELECT series FROM lm_model"), vec!["8".to_string()], "9 series, less the one held out");
    p.write("ft.yaml", &ft(""));
    p.ok(&["run", "ft.yaml"]);
    assert!(!p.ok(&["show", &p.last_run_id()]).contains("new SKUs"), "no short windows, nothing held out");
    assert_eq!(p.query("SELECT series FROM lm_model"), vec!["9".to_string()]);
}
