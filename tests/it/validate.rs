//! The broken-pipeline corpus: every file under tests/pipelines/broken/ must be rejected with
//! exit code 2 and a message that names the place (file:line:column) and, where there is one,
//! the stage.
use std::path::Path;

use crate::common::{Project, REPO, stderr};

/// (file, extra CLI args, fragments the error must contain)
const CASES: &[(&str, &[&str], &[&str])] = &[
    ("01-malformed-yaml.yaml", &[], &["01-malformed-yaml.yaml:5:12:", "unclosed bracket"]),
    ("02-unknown-top-level-key.yaml", &[], &["02-unknown-top-level-key.yaml:2:1:", "unknown key `stagess`", "did you mean `stages`?"]),
    ("03-unknown-stage-key.yaml", &[], &["03-unknown-stage-key.yaml:7:5:", "stage `b`", "unknown key `nedds`", "did you mean `needs`?"]),
    ("04-unknown-kind.yaml", &[], &["04-unknown-kind.yaml:4:11:", "stage `a`", "unknown stage kind `sqll`", "did you mean `sql`?"]),
    (
        "05-needs-unknown-stage.yaml",
        &[],
        &["05-needs-unknown-stage.yaml:7:13:", "stage `load`", "unknown stage `extrct`", "did you mean `extract`?"],
    ),
    ("06-cycle.yaml", &[], &["06-cycle.yaml:", "dependency cycle: ", "a -> b", "b -> c"]),
    ("07-self-need.yaml", &[], &["07-self-need.yaml:5:13:", "stage `a`", "cannot need itself"]),
    (
        "08-output-written-twice.yaml",
        &[],
        &["08-output-written-twice.yaml:9:15:", "stage `b`", "output `daily` is written by two stages: `a` and `b`"],
    ),
    (
        "09-input-unknown-output.yaml",
        &[],
        &["09-input-unknown-output.yaml:10:10:", "stage `b`", "`demand_dayly`, which no stage outputs", "did you mean `demand_daily`?"],
    ),
    (
        "10-sql-syntax-inline.yaml",
        &[],
        &["10-sql-syntax-inline.yaml:7:12:", "stage `a`", "SQL syntax error", "SELEC", "(line 1, column 1 of the SQL)"],
    ),
    ("11-sql-syntax-in-file.yaml", &[], &["sql/syntax_error.sql:4:32:", "stage `a`", "SQL syntax error"]),
    ("12-sql-unknown-column.yaml", &[], &["sql/unknown_column.sql:3:8:", "stage `daily`", "No field named quantityy", "sales.quantity"]),
    (
        "13-unknown-template-variable-in-sql.yaml",
        &[],
        &["13-unknown-template-variable-in-sql.yaml:7:12:", "stage `a`", "unknown template variable `run_dat`", "did you mean `run_date`?"],
    ),
    (
        "14-unknown-template-variable-in-path.yaml",
        &[],
        &["14-unknown-template-variable-in-path.yaml:8:14:", "stage `a`", "unknown template variable `regoin`", "did you mean `region`?"],
    ),
    (
        "15-duplicate-stage-id.yaml",
        &[],
        &["15-duplicate-stage-id.yaml:5:9:", "stage `a`", "duplicate stage id `a` (first defined at line 3)"],
    ),
    ("16-bad-cron.yaml", &[], &["16-bad-cron.yaml:3:9:", "invalid cron expression `0 25 * * *`"]),
    (
        "17-bad-timezone.yaml",
        &[],
        &["17-bad-timezone.yaml:4:13:", "unknown IANA time zone `Europe/Berln`", "did you mean `Europe/Berlin`?"],
    ),
    ("18-bad-timeout.yaml", &[], &["18-bad-timeout.yaml:5:14:", "stage `a`", "`ten minutes` is not a duration"]),
    (
        "19-unknown-sql-config-key.yaml",
        &[],
        &["19-unknown-sql-config-key.yaml:7:7:", "stage `a`", "unknown key `sqll`", "did you mean `sql`?"],
    ),
    (
        "20-unknown-check-test.yaml",
        &[],
        &["20-unknown-check-test.yaml:13:13:", "stage `audit`", "config.tests.1.test: unknown value `not_nul`", "did you mean `not_null`?"],
    ),
    (
        "21-forecast-unknown-column.yaml",
        &[],
        &["21-forecast-unknown-column.yaml:15:15:", "stage `fc`", "column `unitz` not in input `demand`", "did you mean `units`?"],
    ),
    (
        "22-param-default-wrong-type.yaml",
        &[],
        &["22-param-default-wrong-type.yaml:3:34:", "default of param `horizon`: `four weeks` is not an int"],
    ),
    ("23-missing-kind.yaml", &[], &["23-missing-kind.yaml:4:5:", "stage `a`", "missing field `kind`"]),
    ("24-empty-stages.yaml", &[], &["24-empty-stages.yaml:2:9:", "`stages` is empty"]),
    (
        "25-check-unknown-table.yaml",
        &[],
        &["25-check-unknown-table.yaml:12:11:", "stage `audit`", "not_null(orders: id)", "table 'datafusion.public.orders' not found"],
    ),
    ("26-stage-id-not-identifier.yaml", &[], &["26-stage-id-not-identifier.yaml:3:9:", "stage id `clean-sales` must be an identifier"]),
    ("27-duplicate-yaml-key.yaml", &[], &["27-duplicate-yaml-key.yaml:5:5:", "stage `a`", "duplicate mapping key: kind"]),
    ("28-forecast-bad-quantile.yaml", &[], &["28-forecast-bad-quantile.yaml:17:24:", "stage `fc`", "quantile level 1.5"]),
    (
        "29-sql-stage-without-output.yaml",
        &[],
        &["29-sql-stage-without-output.yaml:3:9:", "stage `a`", "exactly 1 output(s), this one declares 0"],
    ),
    (
        "30-unknown-param-on-cli.yaml",
        &["--param", "horizn=7"],
        &["30-unknown-param-on-cli.yaml: error", "--param horizn=7: the pipeline declares no param `horizn`", "did you mean `horizon`?"],
    ),
    (
        "31-unknown-datafusion-setting.yaml",
        &[],
        &[
            "31-unknown-datafusion-setting.yaml:9:9:",
            "stage `a`",
            "setting `datafusion.optimizer.join_reorderin`",
            "not found on OptimizerOptions",
        ],
    ),
    (
        "32-sorted-by-on-an-upstream-output.yaml",
        &[],
        &[
            "32-sorted-by-on-an-upstream-output.yaml:10:10:",
            "stage `b`",
            "`partitions`, `sorted_by` and `missing_columns` only apply to `path` inputs",
        ],
    ),
    (
        "33-explain-in-a-sql-stage.yaml",
        &[],
        &["33-explain-in-a-sql-stage.yaml:8:9:", "stage `a`", "`EXPLAIN` is not a query", "(line 2, column 1 of the SQL)"],
    ),
    (
        "34-ddl-in-a-sql-stage.yaml",
        &[],
        &["34-ddl-in-a-sql-stage.yaml:6:", "stage `make`", "`CREATE` is not a query", "(line 1, column 1 of the SQL)"],
    ),
];

#[test]
fn every_broken_pipeline_is_rejected_with_a_located_message() {
    let corpus = Path::new(REPO).join("tests/pipelines/broken");
    let on_disk =
        std::fs::read_dir(&corpus).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "yaml")).count();
    assert_eq!(on_disk, CASES.len(), "every corpus file has a case");
    assert!(CASES.len() >= 20);
    let p = Project::empty();
    let mut failures = vec![];
    for (file, extra, fragments) in CASES {
        let mut args = vec!["validate", file];
        args.extend_from_slice(extra);
        let out = p.cmd(&args).current_dir(&corpus).output().unwrap();
        let err = stderr(&out);
        if out.status.code() != Some(2) {
            failures.push(format!("{file}: exit {:?}, expected 2\n{err}", out.status.code()));
            continue;
        }
        for f in *fragments {
            if !err.contains(f) {
                failures.push(format!("{file}: missing `{f}` in:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_validates_before_doing_anything() {
    let corpus = Path::new(REPO).join("tests/pipelines/broken");
    let p = Project::empty();
    let out =
        p.cmd(&["run", "06-cycle.yaml"]).current_dir(&corpus).env("RESTOCK_STATE", p.file("state.db").to_str().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("dependency cycle"));
    // No run was recorded.
    let runs = p.cmd(&["runs"]).env("RESTOCK_STATE", p.file("state.db").to_str().unwrap()).output().unwrap();
    assert!(crate::common::stdout(&runs).contains("no runs yet"));
}
