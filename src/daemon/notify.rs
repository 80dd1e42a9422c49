//! Webhooks: the run summary POSTed as JSON on failure, success or SLA miss, retried with
//! exponential backoff on a task of its own, so a slow or dead receiver never holds up a run.
use std::time::Duration;

use serde::Serialize;

use crate::plan::Webhook;
use crate::schedule::{Event, Interval};

/// What a webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub event: Event,
    pub pipeline: String,
    pub run_id: Option<String>,
    pub status: String,
    pub trigger: String,
    pub interval_start: String,
    pub interval_end: String,
    pub error: Option<String>,
    pub stages: Vec<StageSummary>,
    pub published: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub id: String,
    pub status: String,
    pub seconds: f64,
    pub attempts: u32,
}

impl Summary {
    pub fn new(event: Event, pipeline: &str, interval: Interval) -> Self {
        let utc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Self {
            event,
            pipeline: pipeline.into(),
            run_id: None,
            status: String::new(),
            trigger: "scheduled".into(),
            interval_start: utc(interval.start),
            interval_end: utc(interval.end),
            error: None,
            stages: vec![],
            published: vec![],
        }
    }

    pub fn with_outcome(mut self, o: &crate::run::RunOutcome) -> Self {
        self.run_id = Some(o.run_id.clone());
        self.status = o.status.to_string();
        self.error = o.error.clone();
        self.stages = o
            .stages
            .iter()
            .map(|s| StageSummary {
                id: s.id.clone(),
                status: s.status.to_string(),
                seconds: s.duration.as_secs_f64(),
                attempts: s.attempts,
            })
            .collect();
        self.published = o.published.iter().map(|p| format!("{} v{}", p.table, p.version)).collect();
        self
    }
}

/// First retry delay (`RESTOCK_NOTIFY_BACKOFF`, e.g. `50ms` in tests); it doubles each time.
fn backoff() -> Duration {
    std::env::var("RESTOCK_NOTIFY_BACKOFF").ok().and_then(|s| humantime::parse_duration(&s).ok()).unwrap_or(Duration::from_secs(2))
}

const ATTEMPTS: u32 = 6;

/// Send `summary` to every hook that asked for its event, each on a task of its own.
pub fn send(hooks: &[Webhook], summary: Summary) {
    for hook in hooks.iter().filter(|h| h.on.contains(&summary.event)) {
        let (url, body) = (hook.url.clone(), serde_json::to_vec(&summary).unwrap_or_default());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build();
            let Ok(client) = client else { return };
            let mut delay = backoff();
            for attempt in 1..=ATTEMPTS {
                let sent = client.post(url.clone()).header("content-type", "application/json").body(body.clone()).send().await;
                let why = match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => format!("HTTP {}", r.status()),
                    Err(e) => e.to_string(),
                };
                if attempt == ATTEMPTS {
                    tracing::warn!(url = %url, "webhook gave up after {ATTEMPTS} attempts: {why}");
                    return;
                }
                tracing::info!(url = %url, attempt, "webhook failed ({why}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        });
    }
}
