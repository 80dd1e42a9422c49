//! Parquet inputs: `sorted_by` (DataFusion streams over the declared order, and a file whose
//! footer contradicts the declaration is refused by name) and the footer cache.
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use restock::storage::{Lake, inputs};

use crate::common::Project;

/// Write ids as one Parquet file with row groups of 100 rows; `record_sorted` sets the footer's
/// `sorting_columns`.
fn write_ids(p: &Project, rel: &str, ids: Vec<i64>, record_sorted: bool) {
    let path = p.file(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let amounts: Vec<i64> = ids.iter().map(|i| i % 7).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("sale_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("amount", Arc::new(Int64Array::from(amounts))),
    ])
    .unwrap();
    let mut props = WriterProperties::builder().set_max_row_group_row_count(Some(100));
    if record_sorted {
        props = props.set_sorting_columns(Some(vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }]));
    }
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props.build())).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// EXPLAIN of a GROUP BY over the input at `lake/raw/sales/`, registered with `sorted_by`.
async fn explain_group_by(p: &Project, sorted_by: &[&str]) -> anyhow::Result<String> {
    let lake = Lake::open("file://./lake", p.path())?;
    let ctx = restock::engine::session();
    lake.register(&ctx);
    let url = lake.resolve("raw/sales/")?;
    let sorted_by: Vec<String> = sorted_by.iter().map(|s| s.to_string()).collect();
    let layout = restock::spec::FileLayout { sorted_by, ..Default::default() };
    let input = inputs::inspect(&ctx, &lake, &url, &layout, "sales").await?;
    inputs::register(&ctx, "sales", &input)?;
    let sql = "SELECT sale_id, SUM(amount) AS amount FROM sales GROUP BY sale_id";
    let batches = ctx.sql(&format!("EXPLAIN {sql}")).await?.collect().await?;
    let plan = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    // The answer must not depend on the plan: one row per id, duplicates folded.
    let rows: usize = ctx.sql(sql).await?.collect().await?.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 600);
    Ok(plan)
}

#[tokio::test]
async fn declared_order_lets_group_by_stream() {
    let p = Project::empty();
    // Two files with non-overlapping id ranges, each sorted; every id appears twice in a row
    // (re-delivered copies). Neither footer records the order: only the declaration does.
    let ids = |from: i64| (from..from + 300).flat_map(|i| [i, i]).collect::<Vec<_>>();
    write_ids(&p, "lake/raw/sales/month=01.parquet", ids(0), false);
    write_ids(&p, "lake/raw/sales/month=02.parquet", ids(300), false);

    let hashed = explain_group_by(&p, &[]).await.unwrap();
    assert!(!hashed.contains("ordering_mode=Sorted"), "without a declaration the aggregate hashes:\n{hashed}");
    let streamed = explain_group_by(&p, &["sale_id"]).await.unwrap();
    assert!(streamed.contains("ordering_mode=Sorted"), "with `sorted_by` the aggregate streams:\n{streamed}");

    // Files whose footers record the order (Parquet `sorting_columns`) need no declaration.
    let p = Project::empty();
    write_ids(&p, "lake/raw/sales/month=01.parquet", ids(0), true);
    write_ids(&p, "lake/raw/sales/month=02.parquet", ids(300), true);
    let recorded = explain_group_by(&p, &[]).await.unwrap();
    assert!(recorded.contains("ordering_mode=Sorted"), "the footers' order is used:\n{recorded}");
}

#[tokio::test]
async fn footer_that_contradicts_the_declaration_is_refused() {
    let p = Project::empty();
    // Row groups of 100 rows: the second group's ids start below where the first ends.
    let mut ids: Vec<i64> = (100..200).collect();
    ids.extend(0..100);
    write_ids(&p, "lake/raw/sales/month=01.parquet", ids, false);
    let err = explain_group_by(&p, &["sale_id"]).await.unwrap_err().to_string();
    assert!(err.contains("month=01.parquet") && err.contains("not sorted by [sale_id]") && err.contains("row group 1"), "{err}");

    // A footer that records another order.
    let p = Project::empty();
    write_ids(&p, "lake/raw/sales/month=01.parquet", (0..600).collect(), true);
    let err = explain_group_by(&p, &["amount"]).await.unwrap_err().to_string();
    assert!(err.contains("records that it is sorted by [sale_id]"), "{err}");

    // A column the files do not have.
    let err = explain_group_by(&p, &["order_id"]).await.unwrap_err().to_string();
    assert!(err.contains("no column `order_id`"), "{err}");
}

#[tokio::test]
async fn footers_are_read_once_and_never_stale() {
    let p = Project::empty();
    write_ids(&p, "lake/raw/sales/month=01.parquet", (0..10).collect(), false);
    write_ids(&p, "lake/raw/sales/month=02.parquet", (10..20).collect(), false);
    let lake = Lake::open("file://./lake", p.path()).unwrap();
    let ctx = restock::engine::session();
    let url = lake.resolve("raw/sales/").unwrap();
    let first = inputs::inspect(&ctx, &lake, &url, &Default::default(), "sales").await.unwrap();
    assert_eq!((first.rows, lake.footers.len()), (20, 2));
    inputs::inspect(&ctx, &lake, &url, &Default::default(), "sales").await.unwrap();
    assert_eq!(lake.footers.len(), 2, "the second look reads no footer again");

    // A file rewritten in place is a new file: its new footer is read (by the next stage's
    // session; a session caches its own listings).
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_ids(&p, "lake/raw/sales/month=02.parquet", (10..40).collect(), false);
    let ctx = restock::engine::session();
    let again = inputs::inspect(&ctx, &lake, &url, &Default::default(), "sales").await.unwrap();
    assert_eq!(again.rows, 40);
}
