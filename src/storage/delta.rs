//! Published tables: Delta Lake tables under `<lake>/tables/<name>/`.
//!
//! Publishing is one Delta commit per table, tagged with the run id in the commit info, so a
//! reader (DuckDB, Polars, `restock query`) sees the old or the new version, never a mix, and
//! every version can be traced back to the run that wrote it.
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaResult;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore};
use deltalake::operations::write::SchemaMode as DeltaSchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::{Lake, store_key};
use crate::spec::SchemaMode;

pub const RUN_ID_KEY: &str = "restock.run_id";

fn builder(lake: &Lake, url: &Url) -> Result<DeltaTableBuilder> {
    register_cloud_log_stores();
    Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(lake.store.clone(), store_key(&lake.root)))
}

/// deltalake knows how to commit to `file://` and `memory://` only; its `s3`, `gcs` and `azure`
/// features add log stores for the clouds, and with them a second set of cloud SDKs (and, for
/// S3, a DynamoDB lock) in the build. restock hands deltalake the lake's own object_store
/// client (`with_storage_backend`), and deltalake's default log store commits a version with a
/// create-if-absent put (`PutMode::Create`), which S3 (`If-None-Match: *`), GCS and Azure all
/// enforce server-side: two writers racing for one version cannot both win. So the default log
/// store is all a cloud lake needs.
fn register_cloud_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = deltalake::logstore::logstore_factories();
        for scheme in super::CLOUD_SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a valid URL");
            registry.entry(url).or_insert_with(|| Arc::new(ConditionalPutLogStore));
        }
    });
}

struct ConditionalPutLogStore;

impl LogStoreFactory for ConditionalPutLogStore {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Open a published table at its latest version (or `version`); `Ok(None)` if it does not exist.
pub async fn open(lake: &Lake, name: &str, version: Option<i64>) -> Result<Option<DeltaTable>> {
    let url = lake.table_url(name);
    // Ask the store first: the Delta kernel logs an error for a table path that does not exist.
    if !has_log(lake, name).await? {
        return Ok(None);
    }
    let mut b = builder(lake, &url)?;
    if let Some(v) = version {
        b = b.with_version(v.max(0) as u64);
    }
    let mut table = b.build()?;
    let loaded = match version {
        Some(v) => table.load_version(v.max(0) as u64).await,
        None => table.load().await,
    };
    match loaded {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot open published table `{name}` at {url}")),
    }
}

/// Register a published table in a DataFusion session under `alias`. `version: None` reads the
/// latest version.
pub async fn register(ctx: &SessionContext, lake: &Lake, name: &str, version: Option<i64>, alias: &str) -> Result<()> {
    let table = open(lake, name, version)
        .await?
        .with_context(|| format!("published table `{name}` does not exist in {} (has a run published it yet?)", lake.root))?;
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    ctx.register_table(alias, provider)?;
    Ok(())
}

pub struct PublishRequest<'a> {
    pub table: &'a str,
    pub staged: &'a Url,
    pub run_id: &'a str,
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub schema_mode: SchemaMode,
    pub partition_by: &'a [String],
}

/// Commit a staged output as the new version of its table (overwrite); returns that version.
/// Not idempotent by itself: `crate::publish` first asks [`version_of_run`] whether the run
/// already committed it.
pub async fn publish(ctx: &SessionContext, lake: &Lake, req: PublishRequest<'_>) -> Result<i64> {
    let existing = open(lake, req.table, None).await?;
    let table = match existing {
        Some(t) => t,
        None => builder(lake, &lake.table_url(req.table))?.build()?,
    };
    // Delta's writer needs its own query planner; share our runtime (object stores) with it.
    let dctx = deltalake::delta_datafusion::DeltaSessionContext::with_runtime_env(ctx.runtime_env()).into_inner();
    let df = dctx
        .read_parquet(req.staged.as_str(), ParquetReadOptions::default())
        .await
        .with_context(|| format!("cannot read staged output `{}`", req.table))?;
    let plan = df.into_unoptimized_plan();
    let metadata: HashMap<String, serde_json::Value> = [
        (RUN_ID_KEY.to_string(), serde_json::json!(req.run_id)),
        ("restock.pipeline".to_string(), serde_json::json!(req.pipeline)),
        ("restock.stage".to_string(), serde_json::json!(req.stage)),
    ]
    .into();
    let mut write = table
        .write(vec![])
        .with_input_plan(plan)
        .with_session_state(Arc::new(dctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_table_name(req.table)
        .with_commit_properties(CommitProperties::default().with_metadata(metadata));
    match req.schema_mode {
        SchemaMode::Strict => {}
        SchemaMode::Merge => write = write.with_schema_mode(DeltaSchemaMode::Merge),
        SchemaMode::Overwrite => write = write.with_schema_mode(DeltaSchemaMode::Overwrite),
    }
    if !req.partition_by.is_empty() {
        write = write.with_partition_columns(req.partition_by.to_vec());
    }
    let table = write.await.map_err(|e| explain_write_error(req.table, e))?;
    Ok(table.version().unwrap_or(0) as i64)
}

/// The version of `table` whose commit carries `run_id`, searching from its latest version down
/// to `after + 1` (the version the run found when it wrote its manifest). Reads the commit files
/// themselves, so it is exact even when another writer committed after the run.
pub async fn version_of_run(lake: &Lake, table: &str, run_id: &str, after: Option<i64>, latest: i64) -> Result<Option<i64>> {
    let first = after.map_or(0, |a| a + 1);
    for v in (first..=latest).rev() {
        if commit_run_id(lake, table, v).await?.as_deref() == Some(run_id) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The run id in the commit info of version `v` of a table (`None` for other writers' commits).
pub async fn commit_run_id(lake: &Lake, table: &str, v: i64) -> Result<Option<String>> {
    let url = lake.table_url(table).join(&format!("_delta_log/{v:020}.json"))?;
    let Some(bytes) = lake.get_if_present(&super::object_path(&url)?).await? else { return Ok(None) };
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        if let Some(id) = action.get("commitInfo").and_then(|c| c.get(RUN_ID_KEY)).and_then(|v| v.as_str()) {
            return Ok(Some(id.to_string()));
        }
    }
    Ok(None)
}

/// A table's latest version and the run that wrote it; `None` if the table does not exist.
pub async fn head(lake: &Lake, table: &str) -> Result<Option<(i64, Option<String>)>> {
    let Some(t) = open(lake, table, None).await? else { return Ok(None) };
    let v = t.version().unwrap_or(0) as i64;
    Ok(Some((v, commit_run_id(lake, table, v).await?)))
}

fn explain_write_error(table: &str, e: DeltaTableError) -> anyhow::Error {
    let msg = e.to_string();
    if matches!(e, DeltaTableError::SchemaMismatch { .. }) {
        anyhow::anyhow!(
            "publishing `{table}` refused: its schema differs from the published table ({msg}). \
             If the change is intended, set `schema_mode: merge` or `overwrite` on that output."
        )
    } else if matches!(e, DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_)) {
        anyhow::anyhow!(
            "publishing `{table}` failed: another writer committed a new version of the table at the same time ({}); \
             nothing of this run is visible yet, `restock resume` finishes it",
            msg.lines().next().unwrap_or_default()
        )
    } else {
        anyhow::anyhow!("publishing `{table}` failed: {msg}")
    }
}

/// Names of all published tables (folders under `tables/` that hold a `_delta_log`).
pub async fn list_tables(lake: &Lake) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in lake.subfolders(&lake.root.join("tables/")?).await? {
        if has_log(lake, &name).await? {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `tables/<name>/_delta_log/` holds any commit (a folder without one is not a table).
async fn has_log(lake: &Lake, name: &str) -> Result<bool> {
    let log = super::object_path(&lake.table_url(name).join("_delta_log/")?)?;
    Ok(lake.store.list_with_delimiter(Some(&log)).await.map(|l| !l.objects.is_empty()).unwrap_or(false))
}

/// Refuse, before any table is committed, a staged output whose schema the publish would reject
/// (or, in `strict` mode, any column added, removed or retyped). The message names the column.
pub async fn check_compatible(ctx: &SessionContext, lake: &Lake, table: &str, staged: &Url, mode: SchemaMode) -> Result<()> {
    if mode == SchemaMode::Overwrite {
        return Ok(());
    }
    let Some(existing) = open(lake, table, None).await? else { return Ok(()) };
    let old = existing.snapshot()?.snapshot().arrow_schema();
    let new = ctx
        .read_parquet(staged.as_str(), ParquetReadOptions::default())
        .await
        .with_context(|| format!("cannot read staged output `{table}`"))?
        .schema()
        .as_arrow()
        .clone();
    let hint = "set `schema_mode: merge` (add columns) or `overwrite` on the output if the change is intended";
    for f in new.fields() {
        match old.field_with_name(f.name()) {
            Ok(o) if !super::inputs::types_compatible(o.data_type(), f.data_type()) && !numeric_widening(o.data_type(), f.data_type()) => {
                anyhow::bail!(
                    "publishing `{table}` refused: column `{}` changed type from {} to {}; the published version is kept. {hint}",
                    f.name(),
                    o.data_type(),
                    f.data_type()
                )
            }
            Ok(_) => {}
            Err(_) if mode == SchemaMode::Strict => {
                anyhow::bail!("publishing `{table}` refused: new column `{}` is not in the published table; {hint}", f.name())
            }
            Err(_) => {}
        }
    }
    if mode == SchemaMode::Strict {
        if let Some(gone) = old.fields().iter().find(|o| new.field_with_name(o.name()).is_err()) {
            anyhow::bail!("publishing `{table}` refused: column `{}` disappeared from the new data; {hint}", gone.name());
        }
    }
    Ok(())
}

/// Delta stores timestamps in microseconds; a nanosecond column from DataFusion is the same data.
fn numeric_widening(old: &datafusion::arrow::datatypes::DataType, new: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType::*;
    matches!((old, new), (Timestamp(_, a), Timestamp(_, b)) if a.is_some() == b.is_some())
}
