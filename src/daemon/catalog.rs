//! The pipeline files `restock serve` watches: each file's last good version, and what is wrong
//! with its current text when it is broken (the last good version keeps its schedule).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plan::{self, PlanOptions, Webhook};
use crate::stage::Registry;

/// A pipeline file as last read.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub text: String,
    pub schedule: Option<plan::Schedule>,
    pub notify: Vec<Webhook>,
}

/// What changed in the folder since the previous scan.
#[derive(Debug)]
pub enum Change {
    /// New or changed, and valid.
    Loaded(PathBuf, Box<Loaded>),
    /// New or changed, and invalid: the message names file:line:column.
    Broken(PathBuf, String),
    /// Deleted (or no longer readable).
    Removed(PathBuf),
}

/// Content hashes of the files seen, so a scan reports only what changed.
#[derive(Debug, Default)]
pub struct Catalog {
    seen: BTreeMap<PathBuf, String>,
}

impl Catalog {
    /// Compare the folder with the previous scan.
    pub fn scan(&mut self, dir: &Path, opts: &PlanOptions) -> Vec<Change> {
        let mut changes = vec![];
        let files = pipeline_files(dir);
        for gone in self.seen.keys().filter(|f| !files.contains(f)).cloned().collect::<Vec<_>>() {
            self.seen.remove(&gone);
            changes.push(Change::Removed(gone));
        }
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            if self.seen.get(&file) == Some(&hash) {
                continue;
            }
            self.seen.insert(file.clone(), hash);
            changes.push(match load(&file, text, opts) {
                Ok(l) => Change::Loaded(file, Box::new(l)),
                Err(why) => Change::Broken(file, why),
            });
        }
        changes
    }
}

/// `*.yaml` and `*.yml` directly in `dir`, sorted.
fn pipeline_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Parse and plan a pipeline (without reading its inputs) to learn its schedule.
pub fn load(file: &Path, text: String, opts: &PlanOptions) -> Result<Loaded, String> {
    let spec = crate::spec::parse(file, text.clone()).map_err(|d| d.to_string())?;
    let plan = plan::build(&spec, opts, &Registry::builtin()).map_err(|d| d.to_string())?;
    Ok(Loaded { name: plan.name, text, schedule: plan.schedule, notify: plan.notify })
}
