//! Make a stage's inputs visible as tables in its DataFusion session.
use anyhow::{Result, bail};
use datafusion::prelude::SessionContext;

use crate::errors::BadData;
use crate::plan::{Plan, PlannedStage, Source};
use crate::spec::FileLayout;
use crate::storage::{commit, delta, inputs};

/// What a stage was given to read.
#[derive(Debug, Default, Clone)]
pub struct InputStats {
    pub rows: u64,
    pub bytes: u64,
    /// The Parquet inputs, to find the file at fault if decoding fails later.
    pub parquet: Vec<inputs::ParquetInput>,
}

pub async fn register(ctx: &SessionContext, plan: &Plan, stage: &PlannedStage, run_id: &str) -> Result<InputStats> {
    let mut stats = InputStats::default();
    let visible = commit::Visible::default();
    for input in &stage.inputs {
        match &input.source {
            Source::Parquet { url, layout } => {
                let p = inputs::inspect(ctx, &plan.lake, url, layout, &input.name).await?;
                if p.rows == 0 && !input.allow_empty {
                    bail!(BadData(format!(
                        "input `{}` is empty: 0 rows in {} file(s) at {} (set `allow_empty: true` on the input if that is expected)",
                        input.name,
                        p.files.len(),
                        url
                    )));
                }
                stats.rows += p.rows;
                stats.bytes += p.bytes;
                inputs::register(ctx, &input.name, &p)?;
                stats.parquet.push(p);
            }
            Source::Output { name, .. } => {
                let url = plan.lake.staging_url(run_id, name);
                let p = inputs::inspect(ctx, &plan.lake, &url, &FileLayout::default(), &input.name).await?;
                stats.rows += p.rows;
                stats.bytes += p.bytes;
                inputs::register(ctx, &input.name, &p)?;
                stats.parquet.push(p);
            }
            Source::Table { name, version } => {
                // Unpinned: the version of the last completed publish, never one mid-publish.
                let version = visible.version(&plan.lake, name, *version).await?;
                delta::register(ctx, &plan.lake, name, version, &input.name).await?;
            }
        }
    }
    Ok(stats)
}
