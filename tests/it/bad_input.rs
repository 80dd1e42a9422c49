//! Bad input: each case fails the run with an error naming stage, file and column, publishes
//! nothing, and leaves the previously published versions readable.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};

use crate::common::Project;

fn write_parquet(p: &Project, rel: &str, batch: RecordBatch) {
    let path = p.file(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn orders(ids: &[&str], qty: &[i32]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids.to_vec())) as ArrayRef),
        ("quantity", Arc::new(Int32Array::from(qty.to_vec()))),
    ])
    .unwrap()
}

const PIPELINE: &str = r#"
name: orders
stages:
  - id: totals
    kind: sql
    inputs: { orders: raw/orders/ }
    outputs: [totals]
    config: { file: sql/totals.sql }
"#;

/// A project whose `totals` table was published once from good data (2 rows).
fn published_once() -> Project {
    let p = Project::empty();
    p.write("p.yaml", PIPELINE);
    p.write("sql/totals.sql", "SELECT sku_id, CAST(SUM(quantity) AS BIGINT) AS units\nFROM orders\nGROUP BY sku_id\n");
    write_parquet(&p, "lake/raw/orders/day=1.parquet", orders(&["A", "B"], &[1, 2]));
    p.ok(&["run", "p.yaml"]);
    assert_eq!(p.query("SELECT COUNT(*) FROM totals"), vec!["2"]);
    p
}

fn assert_failed_and_intact(p: &Project, fragments: &[&str]) {
    let err = p.fails(&["run", "p.yaml"], 1);
    for f in fragments {
        assert!(err.contains(f), "missing `{f}` in:\n{err}");
    }
    assert!(err.contains("stage `totals`"), "the stage is named:\n{err}");
    let runs = p.ok(&["runs", "--limit", "1"]);
    assert!(runs.contains("failed"), "{runs}");
    // The published version is untouched.
    assert_eq!(p.query("SELECT COUNT(*), SUM(units) FROM totals"), vec!["2,3"]);
    let log = p.file("lake/tables/totals/_delta_log");
    let commits = std::fs::read_dir(log).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count();
    assert_eq!(commits, 1, "no new Delta commit");
}

#[test]
fn missing_input_files() {
    let p = published_once();
    std::fs::remove_dir_all(p.file("lake/raw/orders")).unwrap();
    assert_failed_and_intact(&p, &["input `orders`", "no Parquet files", "raw/orders"]);
}

#[test]
fn empty_input() {
    let p = published_once();
    std::fs::remove_dir_all(p.file("lake/raw/orders")).unwrap();
    write_parquet(&p, "lake/raw/orders/day=2.parquet", orders(&[], &[]));
    assert_failed_and_intact(&p, &["input `orders` is empty", "0 rows in 1 file"]);
}

#[test]
fn corrupt_parquet_file() {
    let p = published_once();
    std::fs::write(p.file("lake/raw/orders/day=2.parquet"), b"PAR1 this is not really parquet").unwrap();
    assert_failed_and_intact(&p, &["raw/orders/day=2.parquet", "not a readable Parquet file"]);
}

#[test]
fn column_changed_type() {
    let p = published_once();
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec!["C"])) as ArrayRef),
        ("quantity", Arc::new(StringArray::from(vec!["three"]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/orders/day=2.parquet", batch);
    assert_failed_and_intact(&p, &["column `quantity`", "Utf8", "Int32", "raw/orders/day=2.parquet", "changed type"]);
}

#[test]
fn sql_runtime_error() {
    let p = published_once();
    p.write("sql/totals.sql", "SELECT sku_id, CAST(SUM(CAST(sku_id AS INT)) AS BIGINT) AS units\nFROM orders\nGROUP BY sku_id\n");
    assert_failed_and_intact(&p, &["sql/totals.sql", "Cannot cast"]);
}

#[test]
fn output_schema_change_is_refused_before_any_commit() {
    let p = published_once();
    p.write("sql/totals.sql", "SELECT sku_id, CAST(SUM(quantity) AS DOUBLE) AS units\nFROM orders\nGROUP BY sku_id\n");
    let err = p.fails(&["run", "p.yaml"], 1);
    assert!(err.contains("column `units` changed type from Int64 to Float64"), "{err}");
    assert_eq!(p.query("SELECT COUNT(*), SUM(units) FROM totals"), vec!["2,3"]);
}

/// Not bad input: writers mark a column non-nullable when a file happens to hold no nulls, and
/// a column added in a later export is absent from the earlier files. Both read as nullable.
#[test]
fn nullability_and_added_columns_may_differ_between_files() {
    let p = published_once(); // day=1: sku_id non-nullable, no `channel` column
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(vec![Some("A"), None])) as ArrayRef),
        ("quantity", Arc::new(Int32Array::from(vec![4, 5]))),
        ("channel", Arc::new(StringArray::from(vec!["web", "app"]))),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/orders/day=2.parquet", batch);
    p.write(
        "sql/totals.sql",
        "SELECT COALESCE(sku_id, '?') AS sku_id, CAST(SUM(quantity) AS BIGINT) AS units, COUNT(channel) AS n\nFROM orders\nGROUP BY 1\n",
    );
    p.write("p.yaml", &PIPELINE.replace("outputs: [totals]", "outputs: [{ name: totals, schema_mode: merge }]"));
    p.ok(&["run", "p.yaml"]);
    assert_eq!(p.query("SELECT sku_id, units, n FROM totals ORDER BY sku_id"), vec!["?,5,1", "A,5,1", "B,2,0"]);
}

/// `validate` tells data that is not there yet (fine: the export may run later) from data that
/// is there but broken (a run now would fail): the first is a note, the second an error, exit 1.
#[test]
fn validate_tells_missing_input_from_broken_input() {
    let p = published_once();
    std::fs::write(p.file("lake/raw/orders/day=2.parquet"), b"PAR1 this is not really parquet").unwrap();
    let err = p.fails(&["validate", "p.yaml"], 1);
    assert!(
        err.contains("input problem in stage `totals`")
            && err.contains("raw/orders/day=2.parquet")
            && err.contains("not a readable Parquet file"),
        "{err}"
    );

    std::fs::remove_dir_all(p.file("lake/raw/orders")).unwrap();
    let out = p.ok(&["validate", "p.yaml"]);
    assert!(out.contains("not schema-checked: totals") && out.contains("no Parquet files"), "{out}");
}
