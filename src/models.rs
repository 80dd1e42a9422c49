//! `restock models`: the model registry is the lake's published model tables. A `train` stage
//! publishes one row per run (config, bf16 weights, validation losses, `registered`) as a new
//! Delta version of its output table, so a table's versions are the model's versions, written
//! by runs that passed every check. This lists them and exports one as a model folder
//! (config.yaml, model.safetensors, metrics.json, and tokenizer.json for a model that reads text) that `method: lm` and `--init` read.
use std::path::Path;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::storage::{Lake, commit, delta};

/// One published version of a model table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelVersion {
    pub table: String,
    pub version: i64,
    pub run_id: Option<String>,
    pub registered: bool,
    pub base: String,
    pub base_validation_loss: f64,
    pub validation_loss: f64,
    pub steps: i64,
    pub series: i64,
}

/// Published tables shaped like a `train` stage's output (`weights` and `validation_loss`).
async fn model_tables(lake: &Lake) -> Result<Vec<String>> {
    let mut out = vec![];
    for t in delta::list_tables(lake).await? {
        let Some(table) = delta::open(lake, &t, None).await? else { continue };
        let schema = table.snapshot()?.snapshot().arrow_schema();
        let binary = |n: &str| {
            schema
                .field_with_name(n)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Binary | DataType::LargeBinary | DataType::BinaryView))
        };
        if binary("weights") && schema.field_with_name("validation_loss").is_ok() {
            out.push(t);
        }
    }
    Ok(out)
}

/// One version's row (`SELECT … FROM m`), with the weights, config and tokenizer (NULL when the
/// model reads no text, or its table predates tokenizers) when `with_weights`.
async fn read_version(lake: &Lake, table: &str, version: i64, with_weights: bool) -> Result<RecordBatch> {
    let ctx = crate::engine::session();
    lake.register(&ctx);
    delta::register(&ctx, lake, table, Some(version), "m").await?;
    let has_tokenizer = ctx.table_provider("m").await?.schema().field_with_name("tokenizer_json").is_ok();
    let weights = match (with_weights, has_tokenizer) {
        (false, _) => "",
        (true, true) => ", weights, config_yaml, CAST(tokenizer_json AS VARCHAR)",
        (true, false) => ", weights, config_yaml, CAST(NULL AS VARCHAR)",
    };
    let sql = format!(
        "SELECT registered, base, CAST(base_validation_loss AS DOUBLE), CAST(validation_loss AS DOUBLE), CAST(steps AS BIGINT), CAST(series AS BIGINT){weights} FROM m LIMIT 1"
    );
    let batch = crate::engine::collect_plain(ctx.sql(&sql).await?).await?;
    if batch.num_rows() == 0 {
        bail!("version {version} of `{table}` has no row");
    }
    Ok(batch)
}

/// Every visible version of every model table (or of `only`), oldest first.
pub async fn list(lake: &Lake, only: Option<&str>) -> Result<Vec<ModelVersion>> {
    let visible = commit::visible_versions(lake).await?;
    let mut out = vec![];
    for table in model_tables(lake).await?.into_iter().filter(|t| only.is_none_or(|o| o == t)) {
        let Some(latest) = latest_version(lake, &table, &visible).await? else { continue };
        for version in 0..=latest {
            let b = read_version(lake, &table, version, false).await?;
            out.push(ModelVersion {
                table: table.clone(),
                version,
                run_id: delta::commit_run_id(lake, &table, version).await?,
                registered: b.column(0).as_boolean().value(0),
                base: b.column(1).as_string::<i32>().value(0).to_string(),
                base_validation_loss: b.column(2).as_primitive::<Float64Type>().value(0),
                validation_loss: b.column(3).as_primitive::<Float64Type>().value(0),
                steps: b.column(4).as_primitive::<Int64Type>().value(0),
                series: b.column(5).as_primitive::<Int64Type>().value(0),
            });
        }
    }
    Ok(out)
}

/// A table's latest visible version (the committed one, else the Delta head), None if never written.
async fn latest_version(lake: &Lake, table: &str, visible: &std::collections::HashMap<String, i64>) -> Result<Option<i64>> {
    Ok(match visible.get(table) {
        Some(v) => Some(*v),
        None => delta::head(lake, table).await?.map(|h| h.0),
    })
}

/// What a model version is made of.
pub struct ModelParts {
    pub config: String,
    pub weights: Vec<u8>,
    /// `tokenizer.json` text, for a model trained on product text.
    pub tokenizer: Option<String>,
}

/// The config text, weights and tokenizer of one version.
async fn parts(lake: &Lake, table: &str, version: i64) -> Result<ModelParts> {
    let b = read_version(lake, table, version, true).await?;
    let weights = b.column(6).as_binary_opt::<i32>().context("`weights` is not a binary column")?.value(0).to_vec();
    let tokenizer = b.column(8).as_string::<i32>();
    let tokenizer = (!tokenizer.is_null(0)).then(|| tokenizer.value(0).to_string());
    Ok(ModelParts { config: b.column(7).as_string::<i32>().value(0).to_string(), weights, tokenizer })
}

/// A model table's latest visible version and its parts, or None when the table was never
/// published. A `train` stage fine-tunes from it.
pub async fn latest(lake: &Lake, table: &str) -> Result<Option<(i64, ModelParts)>> {
    let visible = commit::visible_versions(lake).await?;
    let Some(version) = latest_version(lake, table, &visible).await? else { return Ok(None) };
    Ok(Some((version, parts(lake, table, version).await?)))
}

/// Write version `version` (default: the latest visible) of model table `table` as a model folder.
pub async fn export(lake: &Lake, table: &str, version: Option<i64>, out: &Path) -> Result<ModelVersion> {
    let versions = list(lake, Some(table)).await?;
    if versions.is_empty() {
        bail!("no published model table `{table}` in {} (a `train` stage publishes one)", lake.root);
    }
    let chosen = match version {
        Some(v) => versions.iter().find(|m| m.version == v).with_context(|| format!("`{table}` has no version {v}"))?,
        None => versions.last().expect("not empty"),
    };
    let p = parts(lake, table, chosen.version).await?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join(crate::lm::checkpoint::WEIGHTS), p.weights)?;
    std::fs::write(out.join(crate::lm::checkpoint::CONFIG), p.config)?;
    // A version without text removes the tokenizer an earlier export into `out` left: beside
    // these weights it would be read, with text embeddings they never trained.
    let tokenizer_path = out.join(crate::lm::checkpoint::TOKENIZER);
    match p.tokenizer {
        Some(tokenizer) => std::fs::write(&tokenizer_path, tokenizer)?,
        None if tokenizer_path.exists() => std::fs::remove_file(&tokenizer_path)?,
        None => {}
    }
    std::fs::write(out.join(crate::lm::checkpoint::METRICS), serde_json::to_vec_pretty(chosen)?)?;
    Ok(chosen.clone())
}
