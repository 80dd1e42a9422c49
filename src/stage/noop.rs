//! `noop`: does nothing, succeeds. A barrier to group dependencies (`needs`) under one name,
//! and the stage the orchestration-overhead benchmark uses.
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::{StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::Diagnostics;

pub struct NoopKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoopConfig {}

#[derive(Debug)]
struct NoopTask;

impl StageKind for NoopKind {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let _: NoopConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("noop", 0)?;
        Ok(Arc::new(NoopTask))
    }
}

#[async_trait]
impl StageTask for NoopTask {
    async fn plan(&self, _inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        Ok(vec![])
    }
    async fn run(&self, _cx: &StageCx) -> Result<StageReport> {
        Ok(StageReport::default())
    }
}
