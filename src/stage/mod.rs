//! Stage kinds: plug-ins behind one trait, found by name in a [`Registry`].
//!
//! A kind turns a stage's YAML config into a [`StageTask`] (at validation time, so config errors
//! surface before anything runs). A task can (1) tell its output schemas from its input schemas
//! without touching data, which lets validation plan SQL through the whole DAG, and (2) run.
//! Tasks see their inputs as tables already registered in a DataFusion session and write their
//! outputs to the staging URLs they are given: they never publish and never touch run history.
pub mod allocate;
pub mod check;
pub mod covariates;
pub mod forecast;
pub mod noop;
pub mod policy;
pub mod sql;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod wait_for;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::collect;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::spec::{Config, OutputSpec};
use crate::template::RunVars;

/// What a kind sees of a stage when preparing it.
pub struct StageDecl<'a> {
    pub id: &'a str,
    pub pos: &'a Pos,
    pub config: &'a Config,
    /// Input names, in the order written.
    pub inputs: &'a [String],
    pub outputs: &'a [OutputSpec],
    pub vars: &'a RunVars,
    /// Folder of the pipeline file: relative file references (SQL files) resolve against it.
    pub pipeline_dir: &'a Path,
}

impl StageDecl<'_> {
    pub fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(pos, message).stage(self.id)
    }

    /// Kinds that read exactly N inputs say so here.
    pub fn expect_inputs(&self, kind: &str, n: usize) -> Result<(), Diagnostic> {
        if self.inputs.len() == n {
            return Ok(());
        }
        Err(self.error(self.pos.clone(), format!("a `{kind}` stage reads exactly {n} input(s), this one declares {}", self.inputs.len())))
    }

    /// Kinds that produce exactly N outputs say so here.
    pub fn expect_outputs(&self, kind: &str, n: usize) -> Result<(), Diagnostic> {
        if self.outputs.len() == n {
            return Ok(());
        }
        Err(self.error(self.pos.clone(), format!("a `{kind}` stage has exactly {n} output(s), this one declares {}", self.outputs.len())))
    }
}

pub trait StageKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics>;
}

#[async_trait]
pub trait StageTask: Send + Sync + Debug {
    /// Output schemas (one per declared output) from input schemas, without reading data.
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics>;
    async fn run(&self, cx: &StageCx) -> Result<StageReport>;
    /// Content outside the pipeline file that defines this stage (e.g. a SQL file's text),
    /// folded into the run's spec hash.
    fn fingerprint(&self) -> Option<String> {
        None
    }
    /// Whether the stage takes one of the run's `--max-parallel` slots while it runs (a sensor,
    /// which only waits, does not).
    fn holds_slot(&self) -> bool {
        true
    }
    /// Whether an unchanged fingerprint may replace running the stage with its last outputs
    /// (a sensor, whose job is to look now, may not).
    fn cacheable(&self) -> bool {
        true
    }
}

/// Everything a running task may use.
pub struct StageCx {
    pub stage_id: String,
    /// Inputs are registered here under their input names.
    pub ctx: SessionContext,
    /// Staging URL of each declared output, in declaration order.
    pub outputs: Vec<(String, Url)>,
    /// The run's lake (for kinds that look at objects directly, like `wait_for`).
    pub lake: crate::storage::Lake,
    /// Cancelled on timeout, Ctrl-C or SIGTERM; CPU-bound tasks poll it.
    pub cancel: CancellationToken,
    /// The stage's line in the run's display: long stages report steps, loss, rates here.
    pub progress: StageProgress,
    /// Where a long stage keeps resumable checkpoints.
    pub scratch: Scratch,
}

/// A stage's scratch folder (`_staging/<run>/.scratch/<stage>/`): it outlives a failed or killed
/// attempt, so the run's next attempt or `restock resume` can continue long work from the last
/// checkpoint; it goes with the run's staging. Its methods block: call them from
/// [`StageCx::blocking`] work.
#[derive(Clone)]
pub struct Scratch {
    lake: crate::storage::Lake,
    url: url::Url,
    rt: tokio::runtime::Handle,
}

impl Scratch {
    pub fn new(lake: crate::storage::Lake, url: url::Url) -> Self {
        Self { lake, url, rt: tokio::runtime::Handle::current() }
    }

    fn path(&self, name: &str) -> Result<object_store::path::Path> {
        crate::storage::object_path(&self.url.join(name)?)
    }

    /// An object's bytes, `None` if absent.
    pub fn get(&self, name: &str) -> Result<Option<bytes::Bytes>> {
        let path = self.path(name)?;
        self.rt.block_on(self.lake.get_if_present(&path))
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(name)?;
        self.rt.block_on(self.lake.put_bytes(&path, bytes))
    }

    /// Delete one object (absent is fine).
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        self.rt.block_on(self.lake.delete_object(&path))
    }

    /// Delete everything in the folder.
    pub fn clear(&self) -> Result<()> {
        self.rt.block_on(self.lake.delete_prefix(&self.url))
    }
}

/// A long stage's live status line (a spinner message on a terminal; nothing in logs).
#[derive(Clone, Default)]
pub struct StageProgress {
    bar: Option<indicatif::ProgressBar>,
    prefix: String,
}

impl StageProgress {
    pub fn new(bar: indicatif::ProgressBar, stage_id: &str) -> Self {
        Self { bar: Some(bar), prefix: stage_id.to_string() }
    }

    /// Replace the status shown after the stage's name, e.g. "step 120/800 · loss 2.31 · 4.1k tok/s".
    pub fn set(&self, status: impl AsRef<str>) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} · {}", self.prefix, status.as_ref()));
        }
    }
}

pub use crate::errors::Cancelled;

#[derive(Debug, Default, Clone)]
pub struct StageReport {
    pub rows_out: u64,
    pub bytes_out: u64,
    /// Kind-specific detail for run history (JSON).
    pub details: Option<serde_json::Value>,
    /// Non-fatal findings (e.g. `warn` data tests) shown to the user.
    pub warnings: Vec<String>,
}

/// What writing one staged output did.
#[derive(Debug, Clone)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    /// DataFusion's physical plan as executed, with each operator's metrics (rows, time,
    /// memory, spills): what `EXPLAIN ANALYZE` prints. Shown by `restock show RUN --plans`.
    pub plan: String,
}

impl StageCx {
    /// Run CPU- or GPU-bound work on a blocking thread, off the async runtime, so a stage's
    /// `timeout:` and Ctrl-C can fire while it computes. The work gets the stage's cancellation
    /// token and its progress line; it checks the token between steps and returns [`Cancelled`]
    /// when it fires. A panic inside (libtorch errors reach Rust as panics) is re-raised here,
    /// where the executor turns it into a failed attempt.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&CancellationToken, &StageProgress) -> Result<T> + Send + 'static,
    {
        let (cancel, progress) = (self.cancel.clone(), self.progress.clone());
        match tokio::task::spawn_blocking(move || work(&cancel, &progress)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(anyhow::anyhow!("stage work was aborted: {e}")),
        }
    }

    /// Run a query over the inputs and return its rows as one batch, with string columns as
    /// plain `Utf8` (Parquet reads them as views): what a kind converts into plain data.
    pub async fn sql_batch(&self, sql: &str) -> Result<datafusion::arrow::array::RecordBatch> {
        crate::engine::collect_plain(self.ctx.sql(sql).await?).await
    }

    /// Write a DataFrame as the staged Parquet of output `index`.
    pub async fn write_output(&self, index: usize, df: DataFrame) -> Result<Written> {
        let (name, url) = &self.outputs[index];
        // What `DataFrame::write_parquet` does, keeping hold of the physical plan for its metrics.
        let (state, plan) = df.into_parts();
        let copy = LogicalPlanBuilder::copy_to(
            plan,
            url.to_string(),
            format_as_file_type(Arc::new(ParquetFormatFactory::new())),
            Default::default(),
            vec![],
        )?
        .build()?;
        let physical = state.create_physical_plan(&copy).await.with_context(|| format!("writing output `{name}`"))?;
        let batches = collect(physical.clone(), state.task_ctx()).await.with_context(|| format!("writing output `{name}`"))?;
        let rows = batches
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>())
            .map(|a| a.iter().flatten().sum::<u64>())
            .sum();
        let bytes = staged_bytes(&self.ctx, url).await.unwrap_or(0);
        let plan = DisplayableExecutionPlan::with_metrics(physical.as_ref()).indent(true).to_string();
        Ok(Written { rows, bytes, plan })
    }
}

async fn staged_bytes(ctx: &SessionContext, url: &Url) -> Result<u64> {
    use futures::TryStreamExt;
    let store = ctx
        .runtime_env()
        .object_store(datafusion::datasource::object_store::ObjectStoreUrl::parse(crate::storage::store_key(url).as_str())?)?;
    let prefix = crate::storage::object_path(url)?;
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    Ok(metas.iter().map(|m| m.size).sum())
}

/// A SQL identifier, quoted (`"col"`, inner quotes doubled), for queries kinds build.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A diagnostic for each of `cols` that input `input` lacks, naming the stage, the input and its
/// columns (nothing when the stage declares no such input).
pub fn missing_columns(stage: &str, pos: &Pos, inputs: &BTreeMap<String, SchemaRef>, input: &str, cols: &[&str]) -> Vec<Diagnostic> {
    let Some(schema) = inputs.get(input) else { return vec![] };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    cols.iter()
        .filter(|c| !names.contains(c))
        .map(|c| {
            Diagnostic::new(pos.clone(), format!("input `{input}` has no column `{c}` (columns: {})", names.join(", ")))
                .stage(stage)
                .help_opt(crate::diag::did_you_mean(c, names.iter().copied()))
        })
        .collect()
}

/// The set of stage kinds a pipeline may use.
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn StageKind>>,
}

impl Registry {
    pub fn empty() -> Self {
        Self { kinds: BTreeMap::new() }
    }

    /// The kinds shipped with restock.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register(Arc::new(sql::SqlKind));
        r.register(Arc::new(allocate::AllocateKind));
        r.register(Arc::new(check::CheckKind));
        r.register(Arc::new(forecast::ForecastKind));
        r.register(Arc::new(noop::NoopKind));
        r.register(Arc::new(policy::PolicyKind));
        r.register(Arc::new(tokenizer::TokenizerKind));
        r.register(Arc::new(train::TrainKind));
        r.register(Arc::new(wait_for::WaitForKind));
        r
    }

    pub fn register(&mut self, kind: Arc<dyn StageKind>) {
        self.kinds.insert(kind.name(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StageKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}
