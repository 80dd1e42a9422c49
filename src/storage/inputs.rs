//! Pre-flight of Parquet inputs: list the files, read every footer, and check the schemas agree.
//!
//! DataFusion would also fail on a corrupt file or a type conflict, but its message names neither
//! the file nor, always, the column. Reading footers is cheap (a few KB per file) and turns those
//! failures into errors a person can act on. It also gives row counts for run history.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::logical_expr::SortExpr;
use datafusion::prelude::SessionContext;
use datafusion::prelude::col;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use url::Url;

use super::Lake;
use crate::errors::BadData;
use crate::spec::{FileLayout, MissingColumns, PartitionCol};

/// Footers read by this process, keyed by (path, size, last modified, e-tag): a file rewritten
/// in place gets a new key, so a stale footer is never used. Bounded: cleared when full.
#[derive(Debug, Default)]
pub struct FooterCache(Mutex<HashMap<(String, u64, i64, Option<String>), Arc<ParquetMetaData>>>);

impl FooterCache {
    const MAX_FILES: usize = 20_000;

    /// Footers held.
    pub fn len(&self) -> usize {
        self.0.lock().expect("footer cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(meta: &ObjectMeta) -> (String, u64, i64, Option<String>) {
        (meta.location.to_string(), meta.size, meta.last_modified.timestamp_nanos_opt().unwrap_or_default(), meta.e_tag.clone())
    }

    async fn get_or_read(&self, store: &dyn ObjectStore, meta: &ObjectMeta) -> Result<Arc<ParquetMetaData>> {
        let key = Self::key(meta);
        if let Some(md) = self.0.lock().expect("footer cache lock").get(&key) {
            return Ok(md.clone());
        }
        let md = Arc::new(read_footer(store, meta).await?);
        let mut map = self.0.lock().expect("footer cache lock");
        if map.len() >= Self::MAX_FILES {
            map.clear();
        }
        map.insert(key, md.clone());
        Ok(md)
    }
}

/// An input with no files (yet): at validation time that may just mean the export has not run,
/// unlike a file that is there but unreadable or inconsistent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MissingInput(String);

/// A Parquet input after pre-flight.
#[derive(Debug, Clone)]
pub struct ParquetInput {
    pub url: Url,
    pub files: Vec<ObjectMeta>,
    /// File schema merged over all files (partition columns not included).
    pub schema: SchemaRef,
    pub partitions: Vec<(String, DataType)>,
    /// Declared sort order of every file (checked against the footers), outermost first.
    pub sorted_by: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

impl ParquetInput {
    /// Schema as queries see it: file columns plus partition columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<_> = self.schema.fields().iter().cloned().collect();
        for (name, ty) in &self.partitions {
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(name, ty.clone(), true)));
        }
        Arc::new(Schema::new(fields))
    }
}

pub fn partition_type(p: &PartitionCol) -> Result<DataType> {
    Ok(match p.ty.as_str() {
        "string" => DataType::Utf8,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "date" => DataType::Date32,
        other => bail!("partition column `{}`: unknown type `{other}` (use string, int, bigint or date)", p.name),
    })
}

/// A folder (trailing `/`) or a single file or glob. Folders are read recursively.
pub fn listing_url(url: &Url) -> Result<ListingTableUrl> {
    Ok(ListingTableUrl::parse(url.as_str())?)
}

/// A Parquet file's listing, its footer's schema and its row count.
type Footer = (ObjectMeta, SchemaRef, u64);

/// List, read footers, check schema agreement. `what` names the input in messages.
pub async fn inspect(ctx: &SessionContext, lake: &Lake, url: &Url, layout: &FileLayout, what: &str) -> Result<ParquetInput> {
    lake.register_url(ctx, url)?;
    let store = lake.store_of(url)?;
    let files = list_files(ctx, store.as_ref(), url, what).await?;
    let footers = read_footers(lake, &store, &files, &layout.sorted_by, what).await?;
    let fields = check_missing_columns(merge_columns(&footers, what)?, &footers, layout.missing_columns, what)?;
    let schema = Arc::new(Schema::new(fields));
    let partitions = layout.partitions.iter().map(|p| Ok((p.name.clone(), partition_type(p)?))).collect::<Result<Vec<_>>>()?;
    for (name, _) in &partitions {
        if schema.field_with_name(name).is_ok() {
            bail!("input `{what}`: partition column `{name}` is also a column inside the files");
        }
    }
    let rows = footers.iter().map(|f| f.2).sum();
    let bytes = files.iter().map(|f| f.size).sum();
    Ok(ParquetInput { url: url.clone(), files, schema, partitions, sorted_by: layout.sorted_by.to_vec(), rows, bytes })
}

/// The input's Parquet files in path order; a missing input where there are none.
async fn list_files(ctx: &SessionContext, store: &dyn ObjectStore, url: &Url, what: &str) -> Result<Vec<ObjectMeta>> {
    let cannot_list = |e: datafusion::error::DataFusionError| anyhow!("input `{what}` ({url}): cannot list files: {e}");
    let state = ctx.state();
    let mut files: Vec<ObjectMeta> =
        listing_url(url)?.list_all_files(&state, store, ".parquet").await.map_err(cannot_list)?.try_collect().await.map_err(cannot_list)?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    if files.is_empty() {
        return Err(MissingInput(format!(
            "input `{what}`: no Parquet files at {url} (missing input; check the path and that the upstream export ran)"
        ))
        .into());
    }
    Ok(files)
}

/// Every file's footer (16 at a time, cached by the lake), each readable and sorted as
/// `sorted_by` declares; in path order.
async fn read_footers(
    lake: &Lake,
    store: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    sorted_by: &[String],
    what: &str,
) -> Result<Vec<Footer>> {
    let mut footers: Vec<Footer> = futures::stream::iter(files.iter().cloned())
        .map(|meta| {
            let store = store.clone();
            let footers = lake.footers.clone();
            async move {
                let unreadable = |e: anyhow::Error| {
                    bad(format!("input `{what}`: file {} is not a readable Parquet file (corrupt or truncated?): {e}", meta.location))
                };
                let md = footers.get_or_read(store.as_ref(), &meta).await.map_err(unreadable)?;
                let fm = md.file_metadata();
                let schema = parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
                    .map_err(|e| unreadable(e.into()))?;
                if let Err(why) = check_sorted(&md, sorted_by) {
                    return Err(bad(format!(
                        "input `{what}`: file {} is not sorted by [{}] as `sorted_by` declares: {why}",
                        meta.location,
                        sorted_by.join(", ")
                    )));
                }
                let rows = fm.num_rows().max(0) as u64;
                Ok::<_, anyhow::Error>((meta, Arc::new(schema), rows))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    footers.sort_by(|a, b| a.0.location.cmp(&b.0.location));
    Ok(footers)
}

/// The files' columns merged, each with the first file that has it. Every column must have one
/// type across all files: a column that changed type in a new export is the classic
/// silent-corruption bug of nightly pipelines.
fn merge_columns(footers: &[Footer], what: &str) -> Result<Vec<(Arc<datafusion::arrow::datatypes::Field>, String)>> {
    let (first_meta, first_schema, _) = &footers[0];
    let mut merged: Vec<(Arc<datafusion::arrow::datatypes::Field>, String)> =
        first_schema.fields().iter().map(|f| (f.clone(), first_meta.location.to_string())).collect();
    for (meta, schema, _) in &footers[1..] {
        for field in schema.fields() {
            match merged.iter_mut().find(|(f, _)| f.name() == field.name()) {
                Some((seen, seen_in)) if !types_compatible(seen.data_type(), field.data_type()) => {
                    return Err(bad(format!(
                        "input `{what}`: column `{}` is {} in {} but {} in {} (a column changed type)",
                        field.name(),
                        field.data_type(),
                        meta.location,
                        seen.data_type(),
                        seen_in
                    )));
                }
                // Writers mark a column non-nullable when a file happens to hold no nulls; the
                // table is nullable if any file says so, or reading the other files fails.
                Some((seen, _)) if field.is_nullable() && !seen.is_nullable() => {
                    *seen = Arc::new(seen.as_ref().clone().with_nullable(true));
                }
                Some(_) => {}
                None => merged.push((field.clone(), meta.location.to_string())),
            }
        }
    }
    Ok(merged)
}

fn bad(msg: String) -> anyhow::Error {
    BadData(msg).into()
}

/// A column some files lack: an error naming the file and the column, unless the input says
/// `missing_columns: null` and the column is nullable, when it reads as null in those files.
fn check_missing_columns(
    merged: Vec<(Arc<datafusion::arrow::datatypes::Field>, String)>,
    footers: &[Footer],
    policy: MissingColumns,
    what: &str,
) -> Result<Vec<Arc<datafusion::arrow::datatypes::Field>>> {
    let mut fields = Vec::with_capacity(merged.len());
    for (f, seen_in) in merged {
        let Some((lacking, _, _)) = footers.iter().find(|(_, s, _)| s.field_with_name(f.name()).is_err()) else {
            fields.push(f);
            continue;
        };
        let lacks = footers.iter().filter(|(_, s, _)| s.field_with_name(f.name()).is_err()).count();
        let others = if lacks > 1 { format!(" (and {} other file(s))", lacks - 1) } else { String::new() };
        match policy {
            MissingColumns::Null if f.is_nullable() => fields.push(Arc::new(f.as_ref().clone().with_nullable(true))),
            MissingColumns::Null => {
                return Err(bad(format!(
                    "input `{what}`: file {}{others} lacks column `{}`, which is non-nullable in {seen_in}; \
                     `missing_columns: null` only fills nullable columns",
                    lacking.location,
                    f.name()
                )));
            }
            MissingColumns::Error => {
                return Err(bad(format!(
                    "input `{what}`: file {}{others} lacks column `{}`, which {seen_in} has (a partial or broken export?). \
                     If files without it are expected, set `missing_columns: null` on the input to read it as null there",
                    lacking.location,
                    f.name()
                )));
            }
        }
    }
    Ok(fields)
}

/// Does a file's footer bear out a declared ascending sort order? Parquet records the order a
/// writer sorted by (`sorting_columns`, per row group); where a writer left it out, the
/// row groups' min/max statistics of the leading column must at least not contradict it.
/// DataFusion itself checks the order across files from the same statistics.
fn check_sorted(md: &ParquetMetaData, sorted_by: &[String]) -> std::result::Result<(), String> {
    if sorted_by.is_empty() {
        return Ok(());
    }
    let descr = md.file_metadata().schema_descr();
    let mut leaves = vec![];
    for name in sorted_by {
        match descr.columns().iter().position(|c| c.path().parts() == [name.clone()]) {
            Some(i) => leaves.push(i),
            None => return Err(format!("it has no column `{name}`")),
        }
    }
    let mut previous_max: Option<Statistics> = None;
    for (g, rg) in md.row_groups().iter().enumerate() {
        if let Some(recorded) = rg.sorting_columns() {
            let agrees = recorded.len() >= leaves.len()
                && recorded.iter().zip(&leaves).all(|(r, &leaf)| r.column_idx as usize == leaf && !r.descending);
            if !agrees {
                let said: Vec<String> = recorded
                    .iter()
                    .map(|r| {
                        let name = descr.columns().get(r.column_idx as usize).map(|c| c.name().to_string()).unwrap_or_default();
                        if r.descending { format!("{name} DESC") } else { name }
                    })
                    .collect();
                return Err(format!("row group {g} records that it is sorted by [{}]", said.join(", ")));
            }
            continue;
        }
        let Some(stats) = rg.column(leaves[0]).statistics() else { continue };
        if let Some(prev) = &previous_max {
            if stats_less(stats, prev) {
                return Err(format!(
                    "row group {g} starts below where row group {} ends (min/max statistics of `{}`)",
                    g - 1,
                    sorted_by[0]
                ));
            }
        }
        previous_max = Some(stats.clone());
    }
    Ok(())
}

/// Is `next`'s minimum below `prev`'s maximum? False where the statistics do not say.
fn stats_less(next: &Statistics, prev: &Statistics) -> bool {
    match (next, prev) {
        (Statistics::Int32(n), Statistics::Int32(p)) => matches!((n.min_opt(), p.max_opt()), (Some(a), Some(b)) if a < b),
        (Statistics::Int64(n), Statistics::Int64(p)) => matches!((n.min_opt(), p.max_opt()), (Some(a), Some(b)) if a < b),
        (Statistics::Float(n), Statistics::Float(p)) => matches!((n.min_opt(), p.max_opt()), (Some(a), Some(b)) if a < b),
        (Statistics::Double(n), Statistics::Double(p)) => matches!((n.min_opt(), p.max_opt()), (Some(a), Some(b)) if a < b),
        (Statistics::ByteArray(n), Statistics::ByteArray(p)) => {
            matches!((n.min_opt(), p.max_opt()), (Some(a), Some(b)) if a.data() < b.data())
        }
        _ => false,
    }
}

/// After a query failed while decoding Parquet, find the input file at fault: decode every
/// file fully (only on that failure path) and return a message naming the first that fails.
pub async fn find_corrupt_file(lake: &Lake, inputs: &[ParquetInput]) -> Option<String> {
    for input in inputs {
        let store = lake.store_of(&input.url).ok()?;
        for meta in &input.files {
            if let Err(e) = decode_all(store.clone(), meta).await {
                return Some(format!("file {} cannot be decoded (corrupt data pages?): {e}", meta.location));
            }
        }
    }
    None
}

async fn decode_all(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<()> {
    let bytes = store.get(&meta.location).await?.bytes().await?;
    // CPU-bound: off the async runtime.
    tokio::task::spawn_blocking(move || -> Result<()> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            batch?;
        }
        Ok(())
    })
    .await?
}

/// A Parquet footer: two small range reads, no data pages.
async fn read_footer(store: &dyn ObjectStore, meta: &ObjectMeta) -> Result<ParquetMetaData> {
    let size = meta.size;
    if size < 12 {
        bail!("{size} bytes is too small for Parquet");
    }
    let tail = store.get_range(&meta.location, size - 8..size).await?;
    if &tail[4..8] != b"PAR1" {
        bail!("no Parquet magic bytes at the end of the file");
    }
    let len = u32::from_le_bytes(tail[0..4].try_into().expect("4 bytes")) as u64;
    if len + 8 > size {
        bail!("footer length {len} exceeds the file size {size}");
    }
    let footer = store.get_range(&meta.location, size - 8 - len..size - 8).await?;
    Ok(ParquetMetaDataReader::decode_metadata(&footer)?)
}

pub fn types_compatible(a: &DataType, b: &DataType) -> bool {
    // Nullability differences are not type changes; dictionary vs plain strings (or bytes) and
    // their large and view layouts are the same data.
    let norm = |t: &DataType| match t {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    norm(a) == norm(b)
}

/// Register a pre-flighted input as a table (partition pruning and predicate pushdown come from
/// DataFusion's listing table over Parquet).
pub fn register(ctx: &SessionContext, name: &str, input: &ParquetInput) -> Result<()> {
    let sort_order: Vec<SortExpr> = input.sorted_by.iter().map(|c| col(c).sort(true, false)).collect();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(input.partitions.clone())
        .with_file_sort_order(if sort_order.is_empty() { vec![] } else { vec![sort_order] });
    let config = ListingTableConfig::new(listing_url(&input.url)?).with_listing_options(options).with_schema(input.schema.clone());
    let table = ListingTable::try_new(config)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}
