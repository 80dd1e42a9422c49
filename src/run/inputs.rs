//! Make a stage's inputs visible as tables in its DataFusion session.
use anyhow::{Result, bail};
use datafusion::prelude::SessionContext;

use crate::plan::{Plan, PlannedStage, Source};
use crate::storage::{delta, inputs};

#[derive(Debug, Default, Clone, Copy)]
pub struct InputStats {
    pub rows: u64,
    pub bytes: u64,
}

pub async fn register(ctx: &SessionContext, plan: &Plan, stage: &PlannedStage, run_id: &str) -> Result<InputStats> {
    let mut stats = InputStats::default();
    for input in &stage.inputs {
        match &input.source {
            Source::Parquet { url, partitions, sorted_by } => {
                let p = inputs::inspect(ctx, &plan.lake, url, partitions, sorted_by, &input.name).await?;
                if p.rows == 0 && !input.allow_empty {
                    bail!(
                        "input `{}` is empty: 0 rows in {} file(s) at {} (set `allow_empty: true` on the input if that is expected)",
                        input.name,
                        p.files.len(),
                        url
                    );
                }
                stats.rows += p.rows;
                stats.bytes += p.bytes;
                inputs::register(ctx, &input.name, &p)?;
            }
            Source::Output { name, .. } => {
                let url = plan.lake.staging_url(run_id, name);
                let p = inputs::inspect(ctx, &plan.lake, &url, &[], &[], &input.name).await?;
                stats.rows += p.rows;
                stats.bytes += p.bytes;
                inputs::register(ctx, &input.name, &p)?;
            }
            Source::Table { name, version } => {
                delta::register(ctx, &plan.lake, name, *version, &input.name).await?;
            }
        }
    }
    Ok(stats)
}
