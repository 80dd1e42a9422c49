//! Run history: what ran, with which exact pipeline text, and how each stage attempt went.
//!
//! The executor talks to [`StateStore`] only; SQLite is the embedded default and a server-backed
//! store (Postgres) plugs in behind the same trait. This module knows nothing about DataFusion.
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStore;

pub const DEFAULT_STATE: &str = "sqlite://.restock/state.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Past its commit point (the run manifest is in the lake) but not every table is committed
    /// yet: readers still see the previous versions; `resume` (or the next run on the lake)
    /// rolls it forward.
    PublishIncomplete,
    /// The process running it died (its heartbeat stopped) or a daemon shut down before it
    /// finished; `restock resume` continues it, and `restock serve` does when the pipeline's
    /// `schedule.resume_interrupted` says so.
    Interrupted,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `restock run` (or `demo`).
    Manual,
    /// `restock serve`, at the end of the run's interval.
    Scheduled,
    /// `restock backfill`.
    Backfill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Not run because a stage it depends on failed.
    Skipped,
    /// Not run: its fingerprint equals that of its last successful run, whose outputs it reused.
    Unchanged,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str { match self { $(Self::$v => $s),* } }
            pub fn parse(s: &str) -> Result<Self> {
                match s { $($s => Ok(Self::$v),)* other => bail!("unknown status `{other}` in state store") }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
str_enum!(RunStatus {
    Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled",
    PublishIncomplete => "publish_incomplete", Interrupted => "interrupted",
});
str_enum!(Trigger { Manual => "manual", Scheduled => "scheduled", Backfill => "backfill" });
str_enum!(AttemptStatus {
    Running => "running", Succeeded => "succeeded", Failed => "failed", TimedOut => "timed_out",
    Cancelled => "cancelled", Skipped => "skipped", Unchanged => "unchanged",
});

impl AttemptStatus {
    /// Whether a resume may reuse this stage's staged outputs.
    pub fn is_reusable(self) -> bool {
        matches!(self, AttemptStatus::Succeeded | AttemptStatus::Unchanged)
    }
}

/// What a run is: fixed when it is created.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub pipeline: String,
    pub pipeline_path: String,
    /// The exact pipeline YAML that ran.
    pub spec_text: String,
    /// sha256 of the YAML plus the SQL files it references.
    pub spec_hash: String,
    pub params_json: String,
    pub run_date: String,
    pub interval_start: String,
    pub interval_end: String,
    /// The same interval in UTC (absent in runs recorded before schedules existed).
    pub interval: Option<crate::schedule::Interval>,
    pub trigger: Trigger,
    pub lake: String,
}

/// A run as recorded: its description plus how it went.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub info: RunInfo,
    pub status: RunStatus,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The process running it and when it last said it was alive (while `running`).
    pub heartbeat: Option<Heartbeat>,
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub holder: crate::process::Holder,
    pub at: DateTime<Utc>,
}

/// How often a running run's process records that it is alive (`RESTOCK_HEARTBEAT`, e.g. `1s`).
pub fn heartbeat_every() -> std::time::Duration {
    std::env::var("RESTOCK_HEARTBEAT").ok().and_then(|s| humantime::parse_duration(&s).ok()).unwrap_or(std::time::Duration::from_secs(5))
}

impl RunRecord {
    /// Why a `running` run is in fact dead: its process on this host is gone, or (elsewhere) its
    /// heartbeat is older than six beats. `None` while it looks alive, or for a finished run.
    pub fn dead_because(&self, now: DateTime<Utc>) -> Option<String> {
        if self.status != RunStatus::Running {
            return None;
        }
        let Some(hb) = &self.heartbeat else {
            // Recorded by a restock without heartbeats: only its age can tell.
            let quiet = now - self.started_at;
            return (quiet > chrono::Duration::days(1)).then(|| "it has no heartbeat and started over a day ago".to_string());
        };
        let limit = chrono::Duration::from_std(heartbeat_every() * 6).unwrap_or_default();
        match hb.holder.alive() {
            Some(false) => Some(format!("its process {} on {} is gone", hb.holder.pid, hb.holder.host)),
            Some(true) => None,
            None if now - hb.at > limit => {
                Some(format!("its process {} on {} last reported {} s ago", hb.holder.pid, hb.holder.host, (now - hb.at).num_seconds()))
            }
            None => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AttemptMetrics {
    pub rows_in: Option<u64>,
    pub rows_out: Option<u64>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    /// Kind-specific detail (check results, forecast stats) as JSON.
    pub details: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub run_id: String,
    pub stage_id: String,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub error: Option<String>,
    pub metrics: AttemptMetrics,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl AttemptRecord {
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|f| (f - self.started_at).num_milliseconds())
    }
}

#[derive(Debug, Clone)]
pub struct Publication {
    pub run_id: String,
    pub table: String,
    pub version: i64,
    pub published_at: DateTime<Utc>,
}

pub trait StateStore: Send + Sync {
    /// Record a new `running` run, with this process as its holder and a first heartbeat.
    fn create_run(&self, run: &RunInfo) -> Result<()>;
    fn set_run_status(&self, run_id: &str, status: RunStatus, error: Option<&str>) -> Result<()>;
    /// Record that `holder` is running the run, now.
    fn heartbeat(&self, run_id: &str, holder: &crate::process::Holder) -> Result<()>;
    /// Runs with this status, oldest first.
    fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRecord>>;
    /// Every run of a pipeline that has a UTC interval, oldest interval first.
    fn interval_runs(&self, pipeline: &str) -> Result<Vec<RunRecord>>;
    fn start_attempt(&self, run_id: &str, stage_id: &str) -> Result<u32>;
    fn finish_attempt(
        &self,
        run_id: &str,
        stage_id: &str,
        attempt: u32,
        status: AttemptStatus,
        error: Option<&str>,
        metrics: &AttemptMetrics,
    ) -> Result<()>;
    fn record_skip(&self, run_id: &str, stage_id: &str, reason: &str) -> Result<()>;
    fn record_publication(&self, run_id: &str, table: &str, version: i64) -> Result<()>;
    fn list_runs(&self, limit: usize, pipeline: Option<&str>) -> Result<Vec<RunRecord>>;
    /// A run by full id or unique prefix.
    fn get_run(&self, id_or_prefix: &str) -> Result<RunRecord>;
    fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>>;
    fn publications(&self, run_id: &str) -> Result<Vec<Publication>>;
}

/// How a command uses run history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `run`, `resume`, `gc`: records runs.
    ReadWrite,
    /// `runs`, `show`: never writes, so works on a read-only database (or none yet).
    ReadOnly,
}

/// Open the state store named by a URL: `sqlite://PATH` (relative to `base_dir`) or a bare path.
pub fn open(url: &str, base_dir: &Path, access: Access) -> Result<Arc<dyn StateStore>> {
    let path = if let Some(path) = url.strip_prefix("sqlite://") {
        let p = Path::new(path);
        if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("state store `{url}`: Postgres is not supported yet; use sqlite://PATH");
    } else if url.contains("://") {
        bail!("state store `{url}`: unsupported scheme (use sqlite://PATH)");
    } else {
        base_dir.join(url)
    };
    Ok(Arc::new(match access {
        Access::ReadWrite => SqliteStore::open(&path)?,
        Access::ReadOnly => SqliteStore::open_read_only(&path)?,
    }))
}
