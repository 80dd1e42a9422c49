//! The lake: one root URL on any object store, and the fixed layout restock keeps under it.
//!
//! ```text
//! <root>/raw/...                         source data (the demo writes here)
//! <root>/tables/<name>/                  published Delta tables (what analysts query)
//! <root>/_staging/<run_id>/<output>/     a run's outputs before publish (write-audit-publish)
//! <root>/_restock/commits/<run_id>.json  run manifests: the commit point of a publish (`commit.rs`)
//! <root>/_restock/complete/<run_id>.json ... and their completions
//! <root>/_restock/leases/<pipeline>/     one run of a pipeline at a time (`lease.rs`)
//! ```
//! This module may not know about stages or runs beyond those path conventions.
pub mod commit;
pub mod delta;
pub mod faults;
pub mod inputs;
pub mod lease;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, bail};
use datafusion::prelude::SessionContext;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

pub const DEFAULT_LAKE: &str = "file://./lake";

#[derive(Clone, Debug)]
pub struct Lake {
    /// Always ends with `/`.
    pub root: Url,
    /// Store for the root's scheme and authority; object paths are the URL's path.
    pub store: Arc<dyn ObjectStore>,
    /// Parquet footers already read by this process (validation, then the run, read the same
    /// files), keyed by file identity.
    pub footers: Arc<inputs::FooterCache>,
}

/// One in-memory store per process, so `memory://` lakes are shared by all stages of a run
/// (used by tests and dry runs).
fn memory_store() -> Arc<dyn ObjectStore> {
    static MEM: OnceLock<Arc<InMemory>> = OnceLock::new();
    MEM.get_or_init(|| Arc::new(InMemory::new())).clone()
}

/// Parse a lake or input location. Accepts URLs (`s3://b/p`, `file:///abs`), the relative form
/// `file://./lake`, and plain paths; relative paths resolve against `base_dir`.
pub fn parse_location(s: &str, base_dir: &Path) -> Result<Url> {
    let local = if let Some(rest) = s.strip_prefix("file://") {
        if rest.starts_with('/') { None } else { Some(rest) }
    } else if s.contains("://") {
        None
    } else {
        Some(s)
    };
    match local {
        Some(rel) => {
            let p = Path::new(rel);
            let abs = if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
            let abs = normalize(&abs);
            let mut url = Url::from_file_path(&abs).map_err(|_| anyhow::anyhow!("not a usable path: {}", abs.display()))?;
            if rel.ends_with('/') && !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            Ok(url)
        }
        None => Url::parse(s).with_context(|| format!("`{s}` is not a valid URL")),
    }
}

/// Lexically remove `.` and `..` (the path may not exist yet, so no canonicalize).
fn normalize(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// An object store for a URL's scheme and authority. Cloud credentials come from the usual
/// environment variables (AWS_*, GOOGLE_*, AZURE_*), as with every object_store-based tool.
/// URL schemes of the cloud object stores a lake may live in.
pub const CLOUD_SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

pub fn store_for(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    faults::wrap(plain_store_for(url)?)
}

fn plain_store_for(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    Ok(match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => memory_store(),
        "s3" | "s3a" => Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str()).build()?),
        "gs" => Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).build()?),
        "az" | "abfs" | "abfss" | "azure" => {
            Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str()).build()?)
        }
        other => bail!("unsupported storage scheme `{other}://` (supported: file, memory, s3, gs, az)"),
    })
}

/// `scheme://authority/` — the key DataFusion's object store registry uses.
pub fn store_key(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_path("/");
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// Object path of a URL within its store (percent-decoded, no leading slash).
pub fn object_path(url: &Url) -> Result<ObjPath> {
    Ok(ObjPath::from_url_path(url.path())?)
}

impl Lake {
    pub fn open(location: &str, base_dir: &Path) -> Result<Self> {
        let mut root = parse_location(location, base_dir)?;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let store = store_for(&root)?;
        Ok(Self { root, store, footers: Arc::default() })
    }

    /// Resolve a location written in a pipeline: relative paths are under the lake root.
    pub fn resolve(&self, location: &str) -> Result<Url> {
        if location.contains("://") {
            return parse_location(location, Path::new("/"));
        }
        self.root.join(location.trim_start_matches('/')).with_context(|| format!("bad path `{location}`"))
    }

    pub fn table_url(&self, name: &str) -> Url {
        self.root.join(&format!("tables/{name}/")).expect("table names are identifiers")
    }

    pub fn staging_url(&self, run_id: &str, output: &str) -> Url {
        self.root.join(&format!("_staging/{run_id}/{output}/")).expect("ids are url-safe")
    }

    /// A stage's scratch folder in its run's staging: kept across the stage's attempts and the
    /// run's resumes, deleted with the run's staging. `.` keeps it apart from output names.
    pub fn scratch_url(&self, run_id: &str, stage: &str) -> Url {
        self.root.join(&format!("_staging/{run_id}/.scratch/{stage}/")).expect("ids are url-safe")
    }

    pub fn run_staging_url(&self, run_id: &str) -> Url {
        self.root.join(&format!("_staging/{run_id}/")).expect("ids are url-safe")
    }

    /// Make this lake's store (and the store of any other URL it reads) known to DataFusion.
    pub fn register(&self, ctx: &SessionContext) {
        ctx.runtime_env().register_object_store(&store_key(&self.root), self.store.clone());
    }

    /// The store holding `url`: the lake's own, or a store for a foreign URL.
    pub fn store_of(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if store_key(url) == store_key(&self.root) { Ok(self.store.clone()) } else { store_for(url) }
    }

    /// Register the store for a foreign URL (an input outside the lake root).
    pub fn register_url(&self, ctx: &SessionContext, url: &Url) -> Result<()> {
        if store_key(url) == store_key(&self.root) {
            return Ok(());
        }
        ctx.runtime_env().register_object_store(&store_key(url), store_for(url)?);
        Ok(())
    }

    /// An object's bytes; `None` if there is no such object.
    pub async fn get_if_present(&self, path: &ObjPath) -> Result<Option<bytes::Bytes>> {
        use object_store::ObjectStoreExt;
        match self.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.with_context(|| format!("cannot read {path}"))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {path}")),
        }
    }

    /// A JSON document restock keeps in the lake (manifests, leases); `None` if absent.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &ObjPath) -> Result<Option<T>> {
        let Some(bytes) = self.get_if_present(path).await? else { return Ok(None) };
        Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{path} is not a valid restock document"))?))
    }

    /// Write a JSON document unless one exists there: `Ok(false)` if it did. The stores enforce
    /// this (a local create-if-absent, S3 `If-None-Match: *`, GCS and Azure preconditions), so
    /// of two writers exactly one gets `true`.
    pub async fn create_json<T: serde::Serialize>(&self, path: &ObjPath, doc: &T) -> Result<bool> {
        let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        match self.store.put_opts(path, serde_json::to_vec_pretty(doc)?.into(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot write {path}")),
        }
    }

    /// Write (or replace) an object.
    pub async fn put_bytes(&self, path: &ObjPath, bytes: Vec<u8>) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.store.put(path, bytes.into()).await.with_context(|| format!("cannot write {path}"))?;
        Ok(())
    }

    /// Delete one object; an absent one is fine.
    pub async fn delete_object(&self, path: &ObjPath) -> Result<()> {
        use object_store::ObjectStoreExt;
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete {path}")),
        }
    }

    /// Write (or replace) a JSON document.
    pub async fn put_json<T: serde::Serialize>(&self, path: &ObjPath, doc: &T) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.store.put(path, serde_json::to_vec_pretty(doc)?.into()).await.with_context(|| format!("cannot write {path}"))?;
        Ok(())
    }

    /// Whether any object exists under a URL prefix.
    pub async fn has_objects(&self, url: &Url) -> Result<bool> {
        use futures::StreamExt;
        let prefix = object_path(url)?;
        match self.store.list(Some(&prefix)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
            Some(Err(e)) => Err(e).with_context(|| format!("cannot list {url}")),
        }
    }

    /// Whether an object exists at exactly this URL.
    pub async fn exists(&self, url: &Url) -> Result<bool> {
        use object_store::ObjectStoreExt;
        let store = self.store_of(url)?;
        match store.head(&object_path(url)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot read {url}")),
        }
    }

    /// Delete everything under a URL prefix (staging clean-up). Missing prefixes are fine.
    pub async fn delete_prefix(&self, url: &Url) -> Result<()> {
        let listed = self.list_prefix(url).await?;
        self.delete_listed(url, &listed).await
    }

    /// Names of the folders directly under a URL prefix (none if the prefix does not exist).
    pub async fn subfolders(&self, url: &Url) -> Result<Vec<String>> {
        let prefix = object_path(url)?;
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("cannot list {url}")),
        };
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    /// The objects under a URL prefix.
    pub async fn list_prefix(&self, url: &Url) -> Result<Vec<ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = object_path(url)?;
        self.store_of(url)?.list(Some(&prefix)).try_collect().await.with_context(|| format!("cannot list {url}"))
    }

    /// Delete objects listed under the prefix `url` (and, on a local disk, the emptied folders).
    pub async fn delete_listed(&self, url: &Url, listed: &[ObjectMeta]) -> Result<()> {
        use futures::TryStreamExt;
        let locations: Vec<object_store::Result<ObjPath>> = listed.iter().map(|m| Ok(m.location.clone())).collect();
        let locations = futures::stream::iter(locations).boxed();
        self.store.delete_stream(locations).try_collect::<Vec<_>>().await.with_context(|| format!("cannot clean {url}"))?;
        if url.scheme() == "file" {
            if let Ok(dir) = url.to_file_path() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }
}

use futures::StreamExt as _;
