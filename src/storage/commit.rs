//! Run manifests: what makes a run's tables visible together.
//!
//! ```text
//! <root>/_restock/commits/<run_id>.json    the commit point: written once (create-if-absent), after
//!                                          every stage and check passed; lists each table the run
//!                                          publishes and how to commit it
//! <root>/_restock/complete/<run_id>.json   written once every table of that manifest is committed:
//!                                          the Delta version each table got
//! ```
//! A manifest without its completion is *pending*: whoever starts next on the lake rolls it
//! forward (see `crate::publish`). Readers that go through restock (`restock query`, `table:`
//! inputs) read, per table, the highest version named by a completion, so a run that is half-way
//! through its per-table Delta commits is invisible to them. This module knows the layout and the
//! documents, not how tables are committed.
use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Lake, object_path};
use crate::spec::SchemaMode;

/// One table of a run manifest: everything needed to commit it without the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCommit {
    pub table: String,
    pub stage: String,
    /// The staged output (`_staging/<run_id>/<output>/`) that becomes the new version.
    pub staged: String,
    /// The table's latest version when the manifest was written (`None`: a new table).
    pub base_version: Option<i64>,
    pub schema_mode: SchemaMode,
    pub partition_by: Vec<String>,
}

impl TableCommit {
    /// The version this commit gets when no other writer commits the table in between.
    pub fn expected_version(&self) -> i64 {
        self.base_version.map_or(0, |v| v + 1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub pipeline: String,
    pub created_at: String,
    pub tables: Vec<TableCommit>,
}

/// What became of one table of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableOutcome {
    /// The Delta version holding this run's data; `None` when a newer run's version was already
    /// there (then this run's data was not committed: see `superseded_by`).
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub run_id: String,
    pub pipeline: String,
    pub completed_at: String,
    pub tables: BTreeMap<String, TableOutcome>,
}

fn doc_path(lake: &Lake, folder: &str, run_id: &str) -> Result<object_store::path::Path> {
    object_path(&lake.root.join(&format!("_restock/{folder}/{run_id}.json"))?)
}

/// Write a document once. `Ok(false)` if it already exists (written by an earlier attempt).
async fn put_once<T: Serialize>(lake: &Lake, folder: &str, run_id: &str, doc: &T) -> Result<bool> {
    lake.create_json(&doc_path(lake, folder, run_id)?, doc).await
}

async fn get_doc<T: serde::de::DeserializeOwned>(lake: &Lake, folder: &str, run_id: &str) -> Result<Option<T>> {
    lake.get_json(&doc_path(lake, folder, run_id)?).await
}

/// Write the run manifest: the commit point. Returns the manifest in force, which is the one an
/// earlier attempt of the same run wrote if there is one (a commit point is never moved).
pub async fn write_manifest(lake: &Lake, manifest: &Manifest) -> Result<Manifest> {
    if put_once(lake, "commits", &manifest.run_id, manifest).await? {
        return Ok(manifest.clone());
    }
    read_manifest(lake, &manifest.run_id).await?.with_context(|| format!("run manifest of {} vanished", manifest.run_id))
}

pub async fn read_manifest(lake: &Lake, run_id: &str) -> Result<Option<Manifest>> {
    get_doc(lake, "commits", run_id).await
}

pub async fn write_completion(lake: &Lake, completion: &Completion) -> Result<()> {
    put_once(lake, "complete", &completion.run_id, completion).await.map(|_| ())
}

pub async fn read_completion(lake: &Lake, run_id: &str) -> Result<Option<Completion>> {
    get_doc(lake, "complete", run_id).await
}

/// Run ids that have a document in `_restock/<folder>/`.
async fn ids_in(lake: &Lake, folder: &str) -> Result<Vec<String>> {
    let url = lake.root.join(&format!("_restock/{folder}/"))?;
    let mut ids: Vec<String> = lake
        .list_prefix(&url)
        .await?
        .into_iter()
        .filter_map(|m| m.location.filename().and_then(|f| f.strip_suffix(".json")).map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Run ids with a manifest but no completion (their staging must be kept), oldest first. Two
/// listings, no reads.
pub async fn pending_ids(lake: &Lake) -> Result<Vec<String>> {
    let complete: std::collections::HashSet<String> = ids_in(lake, "complete").await?.into_iter().collect();
    Ok(ids_in(lake, "commits").await?.into_iter().filter(|id| !complete.contains(id)).collect())
}

/// Manifests past their commit point whose tables are not all committed yet, oldest first.
pub async fn pending(lake: &Lake) -> Result<Vec<Manifest>> {
    let mut out = vec![];
    for id in pending_ids(lake).await? {
        out.extend(read_manifest(lake, &id).await?);
    }
    Ok(out)
}

/// [`visible_versions`], read from the lake the first time a table asks (most stages read no
/// published table, and pay nothing).
#[derive(Debug, Default)]
pub struct Visible(tokio::sync::OnceCell<HashMap<String, i64>>);

impl Visible {
    /// The version an unpinned `table:` input reads: `pinned` if given, else the table's last
    /// completed publish (`None`: its latest version, for a table no manifest names).
    pub async fn version(&self, lake: &Lake, table: &str, pinned: Option<i64>) -> Result<Option<i64>> {
        if pinned.is_some() {
            return Ok(pinned);
        }
        Ok(self.0.get_or_try_init(|| visible_versions(lake)).await?.get(table).copied())
    }
}

/// The version of each table that readers going through restock see: the highest version a
/// completed run committed. Tables no manifest names (written before run manifests existed, or
/// by other tools) are absent: read their latest version.
pub async fn visible_versions(lake: &Lake) -> Result<HashMap<String, i64>> {
    let ids = ids_in(lake, "complete").await?;
    let completions: Vec<Option<Completion>> =
        futures::stream::iter(ids).map(|id| async move { read_completion(lake, &id).await }).buffer_unordered(16).try_collect().await?;
    let mut visible: HashMap<String, i64> = HashMap::new();
    for c in completions.into_iter().flatten() {
        for (table, outcome) in c.tables {
            if let Some(v) = outcome.version {
                let e = visible.entry(table).or_insert(v);
                *e = (*e).max(v);
            }
        }
    }
    Ok(visible)
}
