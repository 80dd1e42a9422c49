//! One run of a pipeline at a time per lake: a lease object in the lake itself, so it holds for
//! every process and machine that uses the lake, whatever run history each one keeps.
//!
//! ```text
//! <root>/_restock/leases/<pipeline>/<generation>.json
//! ```
//! The lease in force is the highest generation. Taking it means creating the next generation
//! with a create-if-absent put, which the stores enforce (a local rename-if-absent, S3
//! `If-None-Match: *`, GCS and Azure preconditions), so of two processes racing exactly one wins.
//! That is only allowed once the current generation is released or expired: its holder renews
//! `expires_at` every third of the time-to-live, and a holder on this host whose process is gone
//! (SIGKILL, crash) counts as expired at once. A holder that finds a higher generation than its
//! own has lost the lease and must stop (see [`Lease::lost`]).
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Lake, object_path};

/// Time-to-live of a lease without renewal (`RESTOCK_LEASE_TTL`, e.g. `30s`, overrides it).
pub fn ttl() -> Duration {
    std::env::var("RESTOCK_LEASE_TTL").ok().and_then(|s| humantime::parse_duration(&s).ok()).unwrap_or(Duration::from_secs(30))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub pipeline: String,
    pub run_id: String,
    pub generation: u64,
    pub host: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot, from /proc), so a recycled pid is not
    /// mistaken for the holder.
    pub pid_start: Option<u64>,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
}

impl LeaseInfo {
    /// Whether the holder still holds it: not released, renewed in time, and (on this host) alive.
    pub fn is_live(&self) -> bool {
        if self.released || self.expires_at <= Utc::now() {
            return false;
        }
        // Another host's process cannot be checked from here (nor any where /proc is missing):
        // only expiry tells.
        let holder = crate::process::Holder { host: self.host.clone(), pid: self.pid, start: self.pid_start };
        holder.alive().unwrap_or(true)
    }

    /// "run R of pipeline P (pid 123 on host, since 10:02:03 UTC, renewed 4s ago)".
    pub fn describe(&self) -> String {
        let renewed = (Utc::now() - (self.expires_at - chrono::Duration::from_std(ttl()).unwrap_or_default())).num_seconds().max(0);
        format!(
            "run {} of pipeline `{}` (pid {} on {}, since {} UTC, renewed {renewed}s ago)",
            self.run_id,
            self.pipeline,
            self.pid,
            self.host,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

/// The lease is held by another live run.
#[derive(Debug, thiserror::Error)]
#[error("pipeline `{}` is already running on lake {lake}: {}. Wait for it to finish, or pass --wait 10m to queue behind it", holder.pipeline, holder.describe())]
pub struct Held {
    pub holder: LeaseInfo,
    pub lake: String,
}

fn folder(lake: &Lake, pipeline: &str) -> Result<url::Url> {
    Ok(lake.root.join(&format!("_restock/leases/{pipeline}/"))?)
}

fn gen_path(lake: &Lake, pipeline: &str, generation: u64) -> Result<object_store::path::Path> {
    object_path(&folder(lake, pipeline)?.join(&format!("{generation:010}.json"))?)
}

/// The highest generation of a pipeline's lease, if any was ever taken.
pub async fn current(lake: &Lake, pipeline: &str) -> Result<Option<LeaseInfo>> {
    let Some(generation) = highest_generation(lake, pipeline).await? else { return Ok(None) };
    read(lake, pipeline, generation).await
}

async fn highest_generation(lake: &Lake, pipeline: &str) -> Result<Option<u64>> {
    let listed = lake.list_prefix(&folder(lake, pipeline)?).await?;
    Ok(listed.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse::<u64>().ok()).max())
}

async fn read(lake: &Lake, pipeline: &str, generation: u64) -> Result<Option<LeaseInfo>> {
    lake.get_json(&gen_path(lake, pipeline, generation)?).await
}

/// Run ids holding a live lease on this lake, over every pipeline (for `restock gc`).
pub async fn live_runs(lake: &Lake) -> Result<Vec<String>> {
    let mut out = vec![];
    for pipeline in lake.subfolders(&lake.root.join("_restock/leases/")?).await? {
        if let Some(l) = current(lake, &pipeline).await?.filter(LeaseInfo::is_live) {
            out.push(l.run_id);
        }
    }
    Ok(out)
}

/// A held lease: renewed in the background until released or dropped.
pub struct Lease {
    lake: Lake,
    info: LeaseInfo,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl Lease {
    /// Take the lease of `pipeline` for `run_id`, waiting up to `wait` for a live holder to finish.
    pub async fn acquire(lake: &Lake, pipeline: &str, run_id: &str, wait: Duration) -> Result<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let highest = highest_generation(lake, pipeline).await?;
            let holder = match highest {
                Some(g) => read(lake, pipeline, g).await?,
                None => None,
            };
            if let Some(h) = holder.filter(LeaseInfo::is_live) {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Held { holder: h, lake: lake.root.to_string() }.into());
                }
                tokio::time::sleep(Duration::from_millis(500).min(wait)).await;
                continue;
            }
            let info = new_info(pipeline, run_id, highest.map_or(1, |g| g + 1));
            let path = gen_path(lake, pipeline, info.generation)?;
            if !lake.create_json(&path, &info).await.context("cannot take the run lease")? {
                continue; // another process won this generation
            }
            forget_older(lake, pipeline, info.generation).await;
            return Ok(Lease::start(lake.clone(), info));
        }
    }

    fn start(lake: Lake, info: LeaseInfo) -> Lease {
        let lease = Lease { lake, info, lost: CancellationToken::new(), stop: CancellationToken::new() };
        let (lake, mut info, lost, stop) = (lease.lake.clone(), lease.info.clone(), lease.lost.clone(), lease.stop.clone());
        tokio::spawn(async move {
            let period = ttl() / 3;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                match renew(&lake, &mut info).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.cancel();
                        return;
                    }
                    // A store hiccup: try again next period; the lease expires only after ttl.
                    Err(e) => tracing::warn!("renewing the run lease failed (will retry): {e:#}"),
                }
            }
        });
        lease
    }

    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Fires if another process took the lease (this one was presumed dead): stop the run.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Whether this lease is still the one in force (checked right before the commit point).
    pub async fn still_held(&self) -> Result<bool> {
        Ok(!self.lost.is_cancelled() && highest_generation(&self.lake, &self.info.pipeline).await? == Some(self.info.generation))
    }

    /// Give the lease up so the next run need not wait for it to expire.
    pub async fn release(self) -> Result<()> {
        self.stop.cancel();
        if !self.still_held().await? {
            return Ok(());
        }
        let mut info = self.info.clone();
        info.released = true;
        info.expires_at = Utc::now();
        self.lake.put_json(&gen_path(&self.lake, &info.pipeline, info.generation)?, &info).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn new_info(pipeline: &str, run_id: &str, generation: u64) -> LeaseInfo {
    let now = Utc::now();
    let pid = std::process::id();
    LeaseInfo {
        pipeline: pipeline.into(),
        run_id: run_id.into(),
        generation,
        host: crate::process::hostname(),
        pid,
        pid_start: crate::process::start_time(pid),
        acquired_at: now,
        expires_at: now + chrono::Duration::from_std(ttl()).unwrap_or_default(),
        released: false,
    }
}

/// Push `expires_at` out; `Ok(false)` if a newer generation exists (the lease was taken over).
async fn renew(lake: &Lake, info: &mut LeaseInfo) -> Result<bool> {
    if highest_generation(lake, &info.pipeline).await? != Some(info.generation) {
        return Ok(false);
    }
    info.expires_at = Utc::now() + chrono::Duration::from_std(ttl()).unwrap_or_default();
    lake.put_json(&gen_path(lake, &info.pipeline, info.generation)?, info).await?;
    Ok(true)
}

/// Delete generations two or more below `generation` (the one just below is kept, so a holder
/// that was presumed dead can still see that it lost). Best effort.
async fn forget_older(lake: &Lake, pipeline: &str, generation: u64) {
    let Ok(url) = folder(lake, pipeline) else { return };
    let Ok(listed) = lake.list_prefix(&url).await else { return };
    for m in listed {
        let g = m.location.filename().and_then(|f| f.strip_suffix(".json")).and_then(|g| g.parse::<u64>().ok());
        if g.is_some_and(|g| g + 1 < generation) {
            let _ = lake.store.delete(&m.location).await;
        }
    }
}
