//! The broken-pipeline corpus: every file under tests/pipelines/broken/ must be rejected with
//! exit code 2 and a message that names the place (file:line:column) and, where there is one,
//! the stage.
use std::path::Path;

use crate::common::{Project, REPO, stderr};

/// (file, extra CLI args, fragments the error must contain)
const CASES: &[(&str, &[&str], &[&str])] = &[
    ("01-malformed-yaml.yaml", &[], &[]),
    ("02-unknown-top-level-key.yaml", &[], &[]),
    ("03-unknown-stage-key.yaml", &[], &[]),
    ("04-unknown-kind.yaml", &[], &[]),
    ("05-needs-unknown-stage.yaml", &[], &[]),
    ("06-cycle.yaml", &[], &[]),
    ("07-self-need.yaml", &[], &[]),
    ("08-output-written-twice.yaml", &[], &[]),
    ("09-input-unknown-output.yaml", &[], &[]),
    ("10-sql-syntax-inline.yaml", &[], &[]),
    ("11-sql-syntax-in-file.yaml", &[], &[]),
    ("12-sql-unknown-column.yaml", &[], &[]),
    ("13-unknown-template-variable-in-sql.yaml", &[], &[]),
    ("14-unknown-template-variable-in-path.yaml", &[], &[]),
    ("15-duplicate-stage-id.yaml", &[], &[]),
    ("16-bad-cron.yaml", &[], &[]),
    ("17-bad-timezone.yaml", &[], &[]),
    ("18-bad-timeout.yaml", &[], &[]),
    ("19-unknown-sql-config-key.yaml", &[], &[]),
    ("20-unknown-check-test.yaml", &[], &[]),
    ("21-forecast-unknown-column.yaml", &[], &[]),
    ("22-param-default-wrong-type.yaml", &[], &[]),
    ("23-missing-kind.yaml", &[], &[]),
    ("24-empty-stages.yaml", &[], &[]),
    ("25-check-unknown-table.yaml", &[], &[]),
    ("26-stage-id-not-identifier.yaml", &[], &[]),
    ("27-duplicate-yaml-key.yaml", &[], &[]),
    ("28-forecast-bad-quantile.yaml", &[], &[]),
    ("29-sql-stage-without-output.yaml", &[], &[]),
    ("30-unknown-param-on-cli.yaml", &["--param", "horizn=7"], &[]),
];

#[test]
fn every_broken_pipeline_is_rejected_with_a_located_message() {
    let corpus = Path::new(REPO).join("tests/pipelines/broken");
    let on_disk = std::fs::read_dir(&corpus).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "yaml")).count();
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
    let out = p.cmd(&["run", "06-cycle.yaml"]).current_dir(&corpus).env("RESTOCK_STATE", p.file("state.db").to_str().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("dependency cycle"));
    // No run was recorded.
    let runs = p.cmd(&["runs"]).env("RESTOCK_STATE", p.file("state.db").to_str().unwrap()).output().unwrap();
    assert!(crate::common::stdout(&runs).contains("no runs yet"));
}
