//! `restock serve`'s HTTP face: Prometheus `/metrics` and `/healthz`.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Counters and gauges the daemon updates as it goes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Runs ended, by (pipeline, status).
    pub runs: BTreeMap<(String, String), u64>,
    /// Stage wall time, by (pipeline, stage): (sum of seconds, count).
    pub stages: BTreeMap<(String, String), (f64, u64)>,
    pub queue_depth: BTreeMap<String, usize>,
    pub active_runs: BTreeMap<String, usize>,
    /// Unix seconds of the last successful run, by pipeline.
    pub last_success: BTreeMap<String, i64>,
    pub skipped: BTreeMap<String, u64>,
    /// Cron instant to run start (seconds): sum and count.
    pub start_latency: (f64, u64),
}

/// One pipeline as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineHealth {
    pub file: String,
    pub pipeline: Option<String>,
    pub next_fire: Option<String>,
    /// What is wrong with the file's current text (its last good version keeps its schedule).
    pub error: Option<String>,
    pub active_runs: usize,
    pub queued: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub draining: bool,
    pub pipelines: Vec<PipelineHealth>,
}

#[derive(Clone, Default)]
pub struct Shared {
    pub metrics: Arc<Mutex<Metrics>>,
    pub health: Arc<Mutex<Health>>,
}

impl Shared {
    pub fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set_health(&self, h: Health) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }
}

/// Serve until `stop` is cancelled; returns the bound address at once (port 0 picks one).
pub async fn serve(addr: SocketAddr, shared: Shared, stop: CancellationToken) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    Ok(bound)
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    let health = shared.health.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let code = if health.draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::to_string_pretty(&health).unwrap_or_default())
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&shared.metrics()))
}

/// Prometheus text exposition format.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let p = |pipeline: &str| format!("{{pipeline=\"{}\"}}", escape(pipeline));
    family(
        "restock_runs_total",
        "counter",
        "Runs the daemon saw end, by pipeline and status.",
        m.runs.iter().map(|((pl, st), n)| (format!("{{pipeline=\"{}\",status=\"{}\"}}", escape(pl), escape(st)), n.to_string())).collect(),
    );
    let stage_label = |pl: &str, st: &str| format!("{{pipeline=\"{}\",stage=\"{}\"}}", escape(pl), escape(st));
    family(
        "restock_stage_duration_seconds_sum",
        "counter",
        "Wall time of stages in runs the daemon started.",
        m.stages.iter().map(|((pl, st), (s, _))| (stage_label(pl, st), format!("{s:.6}"))).collect(),
    );
    family(
        "restock_stage_duration_seconds_count",
        "counter",
        "Stage executions counted in restock_stage_duration_seconds_sum.",
        m.stages.iter().map(|((pl, st), (_, n))| (stage_label(pl, st), n.to_string())).collect(),
    );
    family(
        "restock_queue_depth",
        "gauge",
        "Intervals queued behind active runs.",
        m.queue_depth.iter().map(|(k, v)| (p(k), v.to_string())).collect(),
    );
    family("restock_active_runs", "gauge", "Runs in progress.", m.active_runs.iter().map(|(k, v)| (p(k), v.to_string())).collect());
    family(
        "restock_last_success_timestamp_seconds",
        "gauge",
        "When the pipeline's last run succeeded (Unix time).",
        m.last_success.iter().map(|(k, v)| (p(k), v.to_string())).collect(),
    );
    family(
        "restock_intervals_skipped_total",
        "counter",
        "Due intervals not run because of overlap: skip.",
        m.skipped.iter().map(|(k, v)| (p(k), v.to_string())).collect(),
    );
    family(
        "restock_start_latency_seconds_sum",
        "counter",
        "Cron instant to run start.",
        vec![(String::new(), format!("{:.6}", m.start_latency.0))],
    );
    family(
        "restock_start_latency_seconds_count",
        "counter",
        "Runs counted in the sum.",
        vec![(String::new(), m.start_latency.1.to_string())],
    );
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_labelled_samples() {
        let mut m = Metrics::default();
        m.runs.insert(("nightly".into(), "succeeded".into()), 3);
        m.stages.insert(("nightly".into(), "clean".into()), (1.5, 2));
        m.last_success.insert("nightly".into(), 1_764_000_000);
        let text = render(&m);
        assert!(text.contains("# TYPE restock_runs_total counter\nrestock_runs_total{pipeline=\"nightly\",status=\"succeeded\"} 3\n"));
        assert!(text.contains("restock_stage_duration_seconds_count{pipeline=\"nightly\",stage=\"clean\"} 2"));
        assert!(text.contains("restock_last_success_timestamp_seconds{pipeline=\"nightly\"} 1764000000"));
        assert_eq!(escape("a\"b"), "a\\\"b");
    }
}
