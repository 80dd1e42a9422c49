//! `noop`: does nothing, succeeds. A barrier to group dependencies (`needs`) under one name,
//! and the stage the orchestration-overhead benchmark uses. With `busy: 5s` it spins a CPU core
//! for that long on a blocking thread, checking cancellation: what a training stage looks like
//! to the executor, for tests of timeouts and Ctrl-C.
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::{Cancelled, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::Diagnostics;

pub struct NoopKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopConfig {
    busy: Option<String>,
}

#[derive(Debug)]
struct NoopTask {
    busy: Option<std::time::Duration>,
}

impl StageKind for NoopKind {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: NoopConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("noop", 0)?;
        let busy = match cfg.busy.as_deref().map(humantime::parse_duration) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => return Err(decl.error(decl.config.pos("busy"), format!("`busy` is not a duration like 5s: {e}")).into()),
        };
        Ok(Arc::new(NoopTask { busy }))
    }
}

#[async_trait]
impl StageTask for NoopTask {
    async fn plan(&self, _inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        Ok(vec![])
    }
    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let Some(busy) = self.busy else { return Ok(StageReport::default()) };
        cx.blocking(move |cancel, progress| {
            let start = std::time::Instant::now();
            let mut spins = 0u64;
            while start.elapsed() < busy {
                // Pure computation between checks, as a training step would be.
                for i in 0..100_000u64 {
                    spins = std::hint::black_box(spins.wrapping_add(i));
                }
                if cancel.is_cancelled() {
                    return Err(Cancelled.into());
                }
                progress.set(format!("{:.1}s busy", start.elapsed().as_secs_f64()));
            }
            Ok(StageReport::default())
        })
        .await
    }
}
