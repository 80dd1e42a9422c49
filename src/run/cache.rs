//! Content-aware skipping. A stage's fingerprint is a hash of everything that decides its output:
//! its kind, its rendered config, content outside the pipeline file it reads (a SQL file's text),
//! its outputs as declared, and for each input the object listing of a Parquet path (path, size,
//! ETag or last-modified), the visible version of a published table, or the fingerprint of the
//! upstream stage that produces it. A stage whose fingerprint equals that of its last successful
//! run reuses that run's outputs instead of running.
//!
//! ```text
//! <root>/_restock/cache/<pipeline>/<stage>/entry.json     fingerprint, run id, outputs
//! <root>/_restock/cache/<pipeline>/<stage>/<output>/...   that run's staged Parquet
//! ```
//! The outputs move there from staging when a run's publish completes (staging is deleted then
//! anyway), and are copied back into a later run's staging on a hit, so downstream stages and the
//! publish see them exactly as if the stage had run.
use anyhow::{Context, Result};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::plan::{Plan, Source};
use crate::storage::{Lake, commit, object_path};

/// The last successful run of a stage, as the cache holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub fingerprint: String,
    pub run_id: String,
    pub outputs: Vec<String>,
}

fn stage_url(lake: &Lake, pipeline: &str, stage: &str) -> Result<Url> {
    Ok(lake.root.join(&format!("_restock/cache/{pipeline}/{stage}/"))?)
}

/// Every stage's fingerprint, in plan order.
pub async fn fingerprints(plan: &Plan) -> Result<Vec<String>> {
    let visible = commit::Visible::default();
    let mut out: Vec<String> = vec![];
    for stage in &plan.stages {
        let mut parts: Vec<String> = vec![
            "restock-stage-v1".into(),
            stage.kind.clone(),
            stage.config_text.clone(),
            stage.task.fingerprint().unwrap_or_default(),
            format!("{:?}", stage.outputs),
        ];
        let mut inputs: Vec<_> = stage.inputs.iter().collect();
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        for input in inputs {
            parts.push(format!("input {} allow_empty={}", input.name, input.allow_empty));
            match &input.source {
                Source::Parquet { url, layout } => {
                    parts.push(format!("parquet {url} {layout:?}"));
                    let mut objects = plan.lake.list_prefix(url).await?;
                    objects.sort_by(|a, b| a.location.cmp(&b.location));
                    for o in objects {
                        let version = o.e_tag.clone().unwrap_or_else(|| o.last_modified.to_rfc3339());
                        parts.push(format!("{} {} {version}", o.location, o.size));
                    }
                }
                Source::Table { name, version } => {
                    let v = visible.version(&plan.lake, name, *version).await?;
                    parts.push(format!("table {name} {v:?}"));
                }
                Source::Output { name, producer } => parts.push(format!("output {name} {}", out[*producer])),
            }
        }
        let mut h = Sha256::new();
        for p in &parts {
            // Length-prefixed, so no two different part lists hash alike.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        out.push(hex::encode(h.finalize()));
    }
    Ok(out)
}

/// The cache entry of each stage whose fingerprint matches, if its outputs are all still there.
pub async fn lookup(plan: &Plan, fingerprints: &[String]) -> Result<Vec<Option<Entry>>> {
    let mut hits = vec![];
    for (stage, fp) in plan.stages.iter().zip(fingerprints) {
        if !stage.task.cacheable() {
            hits.push(None);
            continue;
        }
        let url = stage_url(&plan.lake, &plan.name, &stage.id)?;
        let entry: Option<Entry> = plan.lake.get_json(&object_path(&url.join("entry.json")?)?).await?;
        let mut hit = entry.filter(|e| &e.fingerprint == fp);
        if let Some(e) = &hit {
            for o in &e.outputs {
                if !plan.lake.has_objects(&url.join(&format!("{o}/"))?).await? {
                    hit = None;
                    break;
                }
            }
        }
        hits.push(hit);
    }
    Ok(hits)
}

/// Copy a hit's outputs into this run's staging.
pub async fn restore(plan: &Plan, stage: usize, entry: &Entry) -> Result<()> {
    let s = &plan.stages[stage];
    let cache = stage_url(&plan.lake, &plan.name, &s.id)?;
    for o in &s.outputs {
        let (from, to) = (cache.join(&format!("{}/", o.name))?, plan.lake.staging_url(&plan.vars.run_id, &o.name));
        plan.lake.delete_prefix(&to).await?;
        copy_prefix(&plan.lake, &from, &to, false).await.with_context(|| format!("restoring `{}` from run {}", o.name, entry.run_id))?;
    }
    Ok(())
}

/// After a run's publish completed: move the staged outputs of the stages that ran (not those
/// restored from the cache) into the cache, replacing their previous entries.
pub async fn save(plan: &Plan, fingerprints: &[String], ran: &[bool]) -> Result<()> {
    for (i, s) in plan.stages.iter().enumerate() {
        if !ran[i] || !s.task.cacheable() {
            continue;
        }
        let cache = stage_url(&plan.lake, &plan.name, &s.id)?;
        plan.lake.delete_prefix(&cache).await?;
        for o in &s.outputs {
            let from = plan.lake.staging_url(&plan.vars.run_id, &o.name);
            copy_prefix(&plan.lake, &from, &cache.join(&format!("{}/", o.name))?, true).await?;
        }
        let entry = Entry {
            fingerprint: fingerprints[i].clone(),
            run_id: plan.vars.run_id.clone(),
            outputs: s.outputs.iter().map(|o| o.name.clone()).collect(),
        };
        plan.lake.put_json(&object_path(&cache.join("entry.json")?)?, &entry).await?;
    }
    Ok(())
}

/// Copy (or move) every object under `from` to the same relative path under `to`.
async fn copy_prefix(lake: &Lake, from: &Url, to: &Url, rename: bool) -> Result<()> {
    let (src, dst) = (object_path(from)?, object_path(to)?);
    for o in lake.list_prefix(from).await? {
        let rel: Vec<_> = o.location.prefix_match(&src).map(|parts| parts.collect()).unwrap_or_default();
        let target = rel.iter().fold(dst.clone(), |p, part| p.join(part.as_ref()));
        if rename {
            lake.store.rename(&o.location, &target).await?;
        } else {
            lake.store.copy(&o.location, &target).await?;
        }
    }
    Ok(())
}

/// Published outputs of stages the cache served whose table's latest version was written by the
/// cached run itself: publishing them again would only add an identical version.
pub async fn unchanged_tables(plan: &Plan, cache: &StageCache, ran: &[bool]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, s) in plan.stages.iter().enumerate() {
        let Some(entry) = cache.hits[i].as_ref().filter(|_| !ran[i]) else { continue };
        for o in s.outputs.iter().filter(|o| o.publish) {
            if let Ok(Some((_, Some(by)))) = crate::storage::delta::head(&plan.lake, &o.name).await {
                if by == entry.run_id {
                    out.insert(o.name.clone());
                }
            }
        }
    }
    out
}

/// What `restock show` and run history say of a stage the cache served.
pub fn reason(entry: &Entry) -> String {
    format!("skipped: inputs unchanged since run {}", entry.run_id)
}

/// What a run knows of the cache: each stage's fingerprint and the entry it may reuse.
#[derive(Debug, Clone, Default)]
pub struct StageCache {
    pub fingerprints: Vec<String>,
    pub hits: Vec<Option<Entry>>,
}
