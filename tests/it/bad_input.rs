//! Bad input: each case fails the run with an error naming stage, file and column, publishes
//! nothing, and leaves the previously published versions readable.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};

use crate::common::{Project, write_parquet};

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

/// A file that lacks a column its siblings have (a partial export) is an error naming the file
/// and the column, unless the input opts in with `missing_columns: null`.
#[test]
fn a_file_missing_a_column_is_refused_unless_the_input_opts_in() {
    let p = published_once(); // day=1: sku_id, quantity
    write_parquet(
        &p,
        "lake/raw/orders/day=2.parquet",
        RecordBatch::try_from_iter(vec![("sku_id", Arc::new(StringArray::from(vec!["C"])) as ArrayRef)]).unwrap(),
    );
    assert_failed_and_intact(&p, &["file ", "raw/orders/day=2.parquet", "lacks column `quantity`", "missing_columns: null"]);
    // Opting in is only for nullable columns: `quantity` is declared required here.
    let required = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
        datafusion::arrow::datatypes::Field::new("sku_id", datafusion::arrow::datatypes::DataType::Utf8, false),
        datafusion::arrow::datatypes::Field::new("quantity", datafusion::arrow::datatypes::DataType::Int32, false),
    ]));
    let batch =
        RecordBatch::try_new(required, vec![Arc::new(StringArray::from(vec!["A", "B"])), Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
    write_parquet(&p, "lake/raw/orders/day=1.parquet", batch);
    let yaml = PIPELINE.replace("{ orders: raw/orders/ }", "{ orders: { path: raw/orders/, missing_columns: null } }");
    p.write("p.yaml", &yaml.replace("    kind: sql\n", "    kind: sql\n    retries: { max: 3, backoff: 10ms }\n"));
    assert_failed_and_intact(&p, &["raw/orders/day=2.parquet", "lacks column `quantity`", "non-nullable", "not retried"]);
    // A deterministic data error is not retried, whatever `retries` says.
    let show = p.ok(&["show", &p.last_run_id()]);
    assert_eq!(crate::common::stage_rows(&show, "totals").len(), 1, "{show}");
}

/// Not bad input: writers mark a column non-nullable when a file happens to hold no nulls, and
/// a column added in a later export is absent from the earlier files when the input says
/// `missing_columns: null`. Both read as nullable.
#[test]
fn nullability_and_added_columns_may_differ_between_files() {
    let p = published_once(); // day=1: sku_id non-nullable, no `channel` column
    // `channel` is declared nullable (as most writers declare columns), though it holds no nulls.
    let batch = RecordBatch::try_from_iter_with_nullable(vec![
        ("sku_id", Arc::new(StringArray::from(vec![Some("A"), None])) as ArrayRef, true),
        ("quantity", Arc::new(Int32Array::from(vec![4, 5])), false),
        ("channel", Arc::new(StringArray::from(vec!["web", "app"])), true),
    ])
    .unwrap();
    write_parquet(&p, "lake/raw/orders/day=2.parquet", batch);
    p.write(
        "sql/totals.sql",
        "SELECT COALESCE(sku_id, '?') AS sku_id, CAST(SUM(quantity) AS BIGINT) AS units, COUNT(channel) AS n\nFROM orders\nGROUP BY 1\n",
    );
    let yaml = PIPELINE.replace("outputs: [totals]", "outputs: [{ name: totals, schema_mode: merge }]");
    p.write("p.yaml", &yaml.replace("{ orders: raw/orders/ }", "{ orders: { path: raw/orders/, missing_columns: null } }"));
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

/// Corruption inside a file's data pages (its footer intact) surfaces deep in a query; the
/// error still names the file, and it is not retried.
#[test]
fn corrupt_data_pages_name_the_file_and_are_not_retried() {
    let p = published_once();
    let ids: Vec<String> = (0..20_000).map(|i| format!("SKU-{:05}", i % 977)).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let qty: Vec<i32> = (0..20_000).map(|i| i % 13).collect();
    let batch = orders(&ids, &qty);
    let path = p.file("lake/raw/orders/day=2.parquet");
    let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 4;
    for b in &mut bytes[at..at + 512] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    p.write("p.yaml", &PIPELINE.replace("    kind: sql\n", "    kind: sql\n    retries: { max: 2, backoff: 10ms }\n"));
    assert_failed_and_intact(&p, &["raw/orders/day=2.parquet", "cannot be decoded"]);
    let show = p.ok(&["show", &p.last_run_id()]);
    assert_eq!(crate::common::stage_rows(&show, "totals").len(), 1, "one attempt only:\n{show}");
}
