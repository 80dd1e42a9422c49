//! End-to-end runs through the CLI on a small generated demo lake.
use std::time::{Duration, Instant};

use crate::common::{Project, stage_rows, stderr};

fn delta_version(p: &Project, table: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = restock::storage::Lake::open("file://./lake", p.path()).unwrap();
        restock::storage::delta::open(&lake, table, None).await.unwrap().expect("table exists").version().unwrap() as i64
    })
}

#[test]
fn nightly_pipeline_cleans_forecasts_publishes_and_records_history() {
    let p = Project::with_demo();
    let out = p.ok(&["validate", "pipelines/nightly.yaml"]);
    let planned =
        out.lines().find_map(|l| l.split_once("planned against input schemas: ")).map(|(_, s)| s).unwrap_or_else(|| panic!("{out}"));
    for stage in ["clean_sales", "product_text", "demand_daily", "audit", "tokenizer", "forecast_baseline", "audit_forecasts"] {
        assert!(planned.split(", ").any(|s| s.trim() == stage), "{stage} not planned: {out}");
    }
    assert!(!out.contains("not schema-checked"), "every stage must be checked against real schemas:\n{out}");

    p.ok(&["run", "pipelines/nightly.yaml"]);
    // Cleaning: one row per sale, no negative quantities, no unknown SKUs.
    assert_eq!(p.query("SELECT COUNT(*) - COUNT(DISTINCT sale_id) FROM sales_clean"), vec!["0"]);
    assert_eq!(p.query("SELECT COUNT(*) FROM sales_clean WHERE quantity < 0 OR sku_id IS NULL OR unit_price IS NULL"), vec!["0"]);
    // Dense demand: 12 SKUs x 2 locations x 120 days.
    assert_eq!(p.query("SELECT COUNT(*) FROM demand_daily"), vec!["2880"]);
    assert_eq!(p.query("SELECT COUNT(*) > 0 FROM demand_daily WHERE censored"), vec!["true"]);
    // Forecasts: 24 series x 28 days, ordered quantiles, horizon starting the day after history.
    assert_eq!(p.query("SELECT COUNT(*), COUNT(DISTINCT sku_id || location_id), MIN(step), MAX(step) FROM forecasts"), vec!["672,24,1,28"]);
    assert_eq!(p.query("SELECT COUNT(*) FROM forecasts WHERE NOT (p10 <= p50 AND p50 <= p90) OR forecast < 0"), vec!["0"]);
    assert_eq!(p.query("SELECT CAST(MIN(date) AS VARCHAR) FROM forecasts"), vec!["2026-10-29"]);
    assert_eq!(p.query("SELECT COUNT(*) FROM product_text WHERE text LIKE '%|%'"), vec!["12"]);
    // The tokenizer was trained on the 12 product texts.
    assert_eq!(p.query("SELECT documents, vocab_size > 256, length(tokenizer_json) > 1000 FROM tokenizer"), vec!["12,true,true"]);

    let run_id = p.last_run_id();
    p.ok(&["run", "pipelines/lm_nightly.yaml"]);
    // The language model (pipelines/lm_nightly.yaml, on the published demand): fine-tuned from
    // the shipped checkpoint on the 24 series (120 days: the 128-value windows shrink to 96,
    // with a warning), then forecasting them, 20 paths each.
    assert_eq!(p.query("SELECT series, steps > 0, base LIKE '%models/small' FROM lm_model"), vec!["24,true,true"]);
    // It read each SKU's product text: a registered model carries the run's tokenizer.
    assert_eq!(
        p.query("SELECT (tokenizer_json IS NOT NULL AND tokenizer_json = (SELECT tokenizer_json FROM tokenizer)) OR NOT registered FROM lm_model"),
        vec!["true"]
    );
    // …and the promotion calendar's flag as a known covariate, which forecasting reads from the
    // plan, the weekend, computed from the date, and the category's demand a year earlier (none
    // in this lake's 120 days).
    assert_eq!(
        p.query(
            "SELECT strpos(config_yaml, 'n_covariates: 3') > 0 AND strpos(config_yaml, '- promo') BETWEEN 1 AND strpos(config_yaml, '- calendar.weekend') \
             AND strpos(config_yaml, '- calendar.weekend') < strpos(config_yaml, '- category_last_year') FROM lm_model"
        ),
        vec!["true"]
    );
    assert_eq!(p.query("SELECT COUNT(*) > 0 FROM demand_daily WHERE promo"), vec!["true"]);
    assert_eq!(
        p.query("SELECT COUNT(*), COUNT(DISTINCT sku_id || location_id), MIN(model), MAX(step) FROM forecasts_lm"),
        vec!["672,24,lm,28"]
    );
    assert_eq!(p.query("SELECT COUNT(*), COUNT(DISTINCT path), MIN(value) >= 0 FROM forecast_paths"), vec!["13440,20,true"]);
    let show = p.ok(&["show", &run_id]);
    for stage in ["clean_sales", "demand_daily", "product_text", "audit", "tokenizer", "forecast_baseline", "audit_forecasts"] {
        assert!(stage_rows(&show, stage).iter().any(|l| l.contains("succeeded")), "{stage} missing in:\n{show}");
    }
    assert!(show.contains("published: demand_daily v0, forecasts v0, product_text v0, sales_clean v0, tokenizer v0"), "{show}");
    // Plans as executed, with metrics. The sales feed is sorted by sale_id (`sorted_by`), so the
    // dedup aggregate streams instead of hashing every line.
    let plans = p.ok(&["show", &run_id, "--plans"]);
    let clean = plans.split("clean_sales attempt 1 plan:").nth(1).unwrap_or_else(|| panic!("no plan:\n{plans}"));
    let dedup: Vec<&str> = clean.lines().filter(|l| l.contains("AggregateExec") && l.contains("max(sales.sale_date)")).collect();
    assert_eq!(dedup.len(), 2, "partial and final aggregate:\n{clean}");
    for op in dedup {
        assert!(op.contains("ordering_mode=Sorted") && op.contains("metrics=[output_rows="), "{op}");
    }
    assert!(p.ok(&["runs"]).contains("succeeded"));

    // A second run commits version 1; version 0 stays readable (time travel).
    p.ok(&["run", "pipelines/nightly.yaml", "--param", "horizon=14"]);
    assert_eq!(delta_version(&p, "forecasts"), 1);
    assert_eq!(p.query("SELECT MAX(step) FROM forecasts"), vec!["14"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v0_rows = rt.block_on(async {
        let lake = restock::storage::Lake::open("file://./lake", p.path()).unwrap();
        let t = restock::storage::delta::open(&lake, "forecasts", Some(0)).await.unwrap().unwrap();
        t.snapshot().unwrap().log_data().num_files()
    });
    assert!(v0_rows > 0);

    // Output formats.
    let json = p.ok(&["query", "--format", "json", "SELECT sku_id, step FROM forecasts ORDER BY sku_id, location_id, step LIMIT 2"]);
    assert!(json.lines().next().unwrap().starts_with("{\"sku_id\":\"SKU-00001\",\"step\":1}"), "{json}");
    let file = p.file("out.parquet");
    p.ok(&["query", "--format", "parquet", "--output", file.to_str().unwrap(), "SELECT * FROM demand_daily"]);
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 2880);
    // Read-only: writes are refused.
    let err = p.fails(&["query", "DROP TABLE forecasts"], 1);
    assert!(err.to_lowercase().contains("not supported") || err.contains("DDL"), "{err}");
}

#[test]
fn failing_error_check_blocks_publish_and_keeps_published_versions() {
    let p = Project::with_demo();
    p.ok(&["run", "pipelines/nightly.yaml"]);
    let before = p.query("SELECT COUNT(*) FROM demand_daily");
    let yaml = std::fs::read_to_string(p.file("pipelines/nightly.yaml")).unwrap().replace(
        "{ test: row_count_min, table: demand, min: 1000 }",
        "{ test: row_count_min, table: demand, min: 1000000000, name: demand_is_huge }",
    );
    p.write("pipelines/strict.yaml", &yaml);
    let err = p.fails(&["run", "pipelines/strict.yaml"], 1);
    assert!(err.contains("demand_is_huge") && err.contains("expected at least 1000000000"), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    for t in ["demand_daily", "forecasts", "product_text", "sales_clean"] {
        assert_eq!(delta_version(&p, t), 0, "{t} must keep its published version");
    }
    assert_eq!(p.query("SELECT COUNT(*) FROM demand_daily"), before);
}

/// A project whose `convert` stage fails on the code 'x2' until `fix_convert`.
fn project_with_failing_convert(pipeline: &str) -> Project {
    let p = Project::empty();
    p.write("sql/convert.sql", "SELECT CAST(code AS INT) AS n FROM codes\n");
    p.write("p.yaml", pipeline);
    p
}

fn fix_convert(p: &Project) {
    p.write("sql/convert.sql", "SELECT CAST(regexp_replace(code, '[^0-9]', '', 'g') AS INT) AS n FROM codes\n");
}

#[test]
fn resume_reruns_only_failed_stages_and_their_dependents() {
    let p = project_with_failing_convert(
        r#"
name: resumable
stages:
  - { id: codes, kind: sql, outputs: [codes], config: { sql: "SELECT * FROM (VALUES ('1'), ('x2')) AS t(code)" } }
  - { id: other, kind: sql, outputs: [other], config: { sql: "SELECT 42 AS answer" } }
  - id: convert
    kind: sql
    inputs: { codes: codes }
    outputs: [numbers]
    config: { file: sql/convert.sql }
  - { id: total, kind: sql, inputs: { numbers: numbers }, outputs: [total], config: { sql: "SELECT CAST(SUM(n) AS BIGINT) AS s FROM numbers" } }
"#,
    );
    let err = p.fails(&["run", "p.yaml"], 1);
    assert!(err.contains("convert") && err.contains("sql/convert.sql"), "{err}");
    let run_id = p.last_run_id();
    assert!(!p.file("lake/tables/other").exists(), "a failed run publishes nothing");

    fix_convert(&p);
    let out = p.cmd(&["resume", &run_id]).env("RESTOCK_LOG", "warn").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.query("SELECT s FROM total"), vec!["3"]);
    assert_eq!(p.query("SELECT answer FROM other"), vec!["42"]);
    let show = p.ok(&["show", &run_id]);
    let attempts = |stage: &str| stage_rows(&show, stage).len();
    assert_eq!(attempts("codes"), 1, "reused, not re-run:\n{show}");
    assert_eq!(attempts("other"), 1, "reused, not re-run:\n{show}");
    assert_eq!(attempts("convert"), 2, "{show}");
    assert_eq!(attempts("total"), 2, "skipped, then run:\n{show}");
    assert!(show.contains("status succeeded"), "{show}");
    // A succeeded run cannot be resumed.
    assert!(p.fails(&["resume", &run_id], 1).contains("already succeeded"));
}

#[test]
fn gc_collects_old_failed_staging_and_resume_reruns_what_it_took() {
    let p = project_with_failing_convert(
        r#"
name: collectable
stages:
  - { id: codes, kind: sql, outputs: [codes], config: { sql: "SELECT * FROM (VALUES ('1'), ('x2')) AS t(code)" } }
  - { id: convert, kind: sql, inputs: { codes: codes }, outputs: [numbers], config: { file: sql/convert.sql } }
"#,
    );
    p.fails(&["run", "p.yaml"], 1);
    let run_id = p.last_run_id();
    let staged = p.file(&format!("lake/_staging/{run_id}/codes"));
    assert!(staged.exists(), "a failed run keeps its staging for resume");
    // Staging that no history knows, from a run id dated long ago.
    p.write("lake/_staging/20200101-000000-dead/x/part-0.parquet", "stale");

    // The default cut-off (7 days) keeps today's failed run; the stray old folder goes.
    let out = p.ok(&["gc"]);
    assert!(out.contains("20200101-000000-dead") && out.contains("unknown to this history") && !out.contains(&run_id), "{out}");
    assert!(!p.file("lake/_staging/20200101-000000-dead").exists());
    assert!(staged.exists());

    // --dry-run lists without deleting.
    let out = p.ok(&["gc", "--older-than", "0s", "--dry-run"]);
    assert!(out.contains(&run_id) && out.contains("failed") && out.contains("would delete"), "{out}");
    assert!(staged.exists());

    let out = p.ok(&["gc", "--older-than", "0s"]);
    assert!(out.contains(&run_id) && out.contains("deleted the staging of 1 run(s)"), "{out}");
    assert!(!p.file(&format!("lake/_staging/{run_id}")).exists());

    // Resuming the collected run runs the stage whose staging is gone again.
    fix_convert(&p);
    p.ok(&["resume", &run_id]);
    assert_eq!(p.query("SELECT CAST(SUM(n) AS BIGINT) FROM numbers"), vec!["3"]);
    let show = p.ok(&["show", &run_id]);
    assert_eq!(stage_rows(&show, "codes").len(), 2, "re-run, its staging was collected:\n{show}");
    // A succeeded run leaves no staging behind, so there is nothing left to collect.
    assert!(p.ok(&["gc", "--older-than", "0s"]).contains("no staging to collect"));
}

#[test]
fn sigterm_cancels_the_run_cleanly() {
    let p = Project::empty();
    p.write(
        "p.yaml",
        r#"
name: slow
stages:
  - { id: quick, kind: sql, outputs: [quick], config: { sql: "SELECT 1 AS one" } }
  - { id: slow, kind: sql, outputs: [slow], config: { sql: "SELECT SUM(value) AS s FROM generate_series(1, 100000000000)" } }
"#,
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("restock"))
        .current_dir(p.path())
        .args(["--quiet", "run", "p.yaml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the slow stage is really running (a loaded CI machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the slow stage never started");
        if let Some(id) = p.try_last_run_id() {
            let show = crate::common::stdout(&p.run(&["show", &id]));
            if stage_rows(&show, "slow").iter().any(|l| l.contains("running")) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "cancel took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(p.ok(&["runs"]).contains("cancelled"));
    assert!(!p.file("lake/tables/quick").exists(), "a cancelled run publishes nothing");
    let show = p.ok(&["show", &p.last_run_id()]);
    assert!(stage_rows(&show, "slow").iter().any(|l| l.contains("cancelled")), "{show}");
}

#[test]
fn memory_limit_makes_sorts_spill_instead_of_growing() {
    let p = Project::empty();
    p.write(
        "p.yaml",
        r#"
name: sorty
stages:
  - id: sorted
    kind: sql
    outputs: [sorted]
    config: { sql: "SELECT value, value % 7 AS k FROM generate_series(1, 3000000) ORDER BY k, value DESC" }
"#,
    );
    // 3 M rows (~50 MB of values, more with sort keys) sorted within 40 MiB: only works if the
    // sort spills to disk.
    p.ok(&["--memory-limit", "40MiB", "run", "p.yaml"]);
    assert_eq!(p.query("SELECT COUNT(*), MIN(value), MAX(value) FROM sorted"), vec!["3000000,1,3000000"]);
    let err = p.fails(&["--memory-limit", "lots", "run", "p.yaml"], 2);
    assert!(err.contains("`lots` is not a size"), "{err}");
}
