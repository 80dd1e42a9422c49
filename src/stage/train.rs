//! `train`: nightly fine-tuning of the forecasting model on the run's demand table. Starts from
//! a model folder (`base:`), trains on windows of the run's series, and compares validation
//! loss (each series' most recent window) before and after. The result is published as a
//! one-row table holding the weights, so a model becomes visible only when the run publishes,
//! with every other output, and never from a failed or cancelled run. A fine-tune that does
//! not beat its base publishes the base weights with `registered = false` and says why.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::Rng;
use serde::Deserialize;
use tch::Kind;

use super::forecast::{long_history, split_series};
use super::{Cancelled, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::Diagnostics;
use crate::lm::checkpoint::Checkpoint;
use crate::lm::tokens::{Encoded, encode_with_scale, scale_of};
use crate::lm::train::{EarlyStopping, TrainConfig, Verdict, eval_loss, train};

pub struct TrainKind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainStageConfig {
    series: Vec<String>,
    time: String,
    target: String,
    /// The model folder to start from (relative to the pipeline file) while the output table
    /// has no published version; after that, each run fine-tunes the latest published version.
    base: String,
    /// Start from `base` even when a published version exists.
    #[serde(default)]
    restart: bool,
    #[serde(default = "default_steps")]
    steps: usize,
    #[serde(default = "default_batch")]
    batch: usize,
    /// Values per training window; the last quarter of each series' final window is held out.
    #[serde(default = "default_window")]
    window: usize,
    /// Season length of the series (7 for daily data): the model's seasonal-lag input.
    #[serde(default = "default_season")]
    season_length: usize,
    #[serde(default = "default_lr")]
    lr: f64,
    #[serde(default)]
    seed: u64,
    /// Score validation every this many steps (0: only at the end) and keep the best weights…
    #[serde(default = "default_eval_every")]
    eval_every: usize,
    /// …stopping after this many scores in a row without improvement.
    #[serde(default = "default_patience")]
    patience: usize,
}

fn default_eval_every() -> usize {
    25
}
fn default_patience() -> usize {
    3
}
fn default_season() -> usize {
    7
}
fn default_steps() -> usize {
    200
}
fn default_batch() -> usize {
    8
}
fn default_window() -> usize {
    128
}
fn default_lr() -> f64 {
    3e-4
}

#[derive(Debug)]
struct TrainTask {
    stage: String,
    input: String,
    base: PathBuf,
    cfg: TrainStageConfig,
}

impl StageKind for TrainKind {
    fn name(&self) -> &'static str {
        "train"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: TrainStageConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("train", 1)?;
        decl.expect_inputs("train", 1)?;
        let base = decl.pipeline_dir.join(&cfg.base);
        let config = crate::lm::model::load_config(&base.join(crate::lm::checkpoint::CONFIG))
            .map_err(|e| decl.error(decl.config.pos("base"), format!("{e:#}")))?;
        if cfg.window < 8
            || cfg.window as i64 > config.max_len
            || cfg.steps == 0
            || cfg.batch == 0
            || cfg.lr <= 0.0
            || cfg.season_length == 0
        {
            let msg = format!("need 8 ≤ window ≤ max_len ({}), steps ≥ 1, batch ≥ 1, lr > 0, season_length ≥ 1", config.max_len);
            return Err(decl.error(decl.config.pos("window"), msg).into());
        }
        Ok(Arc::new(TrainTask { stage: decl.id.into(), input: decl.inputs[0].clone(), base, cfg }))
    }
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("base", DataType::Utf8, false),
        Field::new("registered", DataType::Boolean, false),
        Field::new("base_validation_loss", DataType::Float64, false),
        Field::new("validation_loss", DataType::Float64, false),
        Field::new("steps", DataType::Int64, false),
        Field::new("series", DataType::Int64, false),
        Field::new("config_yaml", DataType::Utf8, false),
        Field::new("weights", DataType::Binary, false),
        Field::new("best_step", DataType::Int64, false),
    ]))
}

/// Most series whose last window scores validation (evenly spread over the series): each score
/// is a forward pass over all of them, taken several times a run.
const MAX_VALIDATION: usize = 512;

/// Training and validation windows: validation = the last window of long-enough series (up to
/// [`MAX_VALIDATION`] of them; its last quarter is what the loss scores); training windows end
/// before that quarter.
fn windows(histories: &[Vec<f64>], len: usize, season: usize) -> (Vec<&[f64]>, Vec<Encoded>) {
    let held = len / 4;
    let long: Vec<&Vec<f64>> = histories.iter().filter(|h| h.len() >= len + held).collect();
    let train = long.iter().map(|h| &h[..h.len() - held]).collect();
    let stride = long.len().div_ceil(MAX_VALIDATION).max(1);
    let valid = long
        .iter()
        .step_by(stride)
        .map(|h| {
            let w = &h[h.len() - len..];
            encode_with_scale(w, None, scale_of(&w[..len - held])).with_season(season)
        })
        .collect();
    (train, valid)
}

#[async_trait]
impl StageTask for TrainTask {
    fn fingerprint(&self) -> Option<String> {
        Some(crate::lm::checkpoint::version_stamp(&self.base))
    }

    async fn plan(&self, _inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        Ok(vec![output_schema()])
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let all = long_history(cx, &self.input, &self.cfg.series, &self.cfg.time, &self.cfg.target).await?;
        let (_, histories) = split_series(&all, self.cfg.series.len())?;
        let table = &cx.outputs[0].0;
        let base = match crate::models::latest(&cx.lake, table).await? {
            Some((version, config, weights)) if !self.cfg.restart => {
                Base::Published { name: format!("{table}@v{version}"), config, weights }
            }
            _ => Base::Folder(self.base.clone()),
        };
        let (cfg, stage) = (self.cfg.clone(), self.stage.clone());
        let (row, warnings) = cx.blocking(move |cancel, progress| fine_tune(&histories, &cfg, &base, &stage, cancel, progress)).await?;
        let df = cx.ctx.read_batch(row)?;
        let written = cx.write_output(0, df).await?;
        Ok(StageReport { rows_out: written.rows, bytes_out: written.bytes, details: None, warnings })
    }
}

/// What a run fine-tunes: the latest published version of the output table, or (before the
/// first publish, or with `restart`) the `base` folder.
enum Base {
    Published { name: String, config: String, weights: Vec<u8> },
    Folder(PathBuf),
}

impl Base {
    fn load(&self) -> Result<Checkpoint> {
        match self {
            Base::Published { name, config, weights } => Checkpoint::from_parts(config, weights, crate::device::best())
                .with_context(|| format!("loading the published model {name}")),
            Base::Folder(dir) => Checkpoint::load(dir, crate::device::best()),
        }
    }

    fn name(&self) -> String {
        match self {
            Base::Published { name, .. } => name.clone(),
            Base::Folder(dir) => dir.display().to_string(),
        }
    }
}

/// The CPU/GPU part: load the base, score it, train, score again, build the output row.
fn fine_tune(
    histories: &[Vec<f64>],
    cfg: &TrainStageConfig,
    base: &Base,
    stage: &str,
    cancel: &tokio_util::sync::CancellationToken,
    progress: &super::StageProgress,
) -> Result<(RecordBatch, Vec<String>)> {
    let ck = base.load()?;
    let device = ck.vs.device();
    // Short histories (a young lake, a new store) shrink the window instead of failing the night.
    let longest = histories.iter().map(Vec::len).max().unwrap_or(0);
    let window = cfg.window.min(longest * 4 / 5);
    if window < 16 {
        bail!("no series has the 20 values a window of 16 plus its held-out quarter needs (the longest has {longest})");
    }
    let mut warnings = vec![];
    if window < cfg.window {
        warnings
            .push(format!("{stage}: the longest series has {longest} values, so training windows are {window} instead of {}", cfg.window));
    }
    let (series, valid) = windows(histories, window, cfg.season_length);
    let base_loss = eval_loss(&ck.model, &valid, cfg.batch, device);
    let base_bytes = ck.to_bytes(Kind::BFloat16)?;
    let tc = TrainConfig {
        steps: cfg.steps,
        batch: cfg.batch,
        window,
        lr: cfg.lr,
        warmup: (cfg.steps / 10).max(1),
        weight_decay: 0.1,
        clip: 1.0,
        seed: cfg.seed,
    };
    let draw = |rng: &mut rand_chacha::ChaCha8Rng| {
        crate::lm::train::window(series[rng.random_range(0..series.len())], window, cfg.season_length, rng)
    };
    let mut es = EarlyStopping::new(cfg.eval_every, cfg.patience);
    let mut best_bytes: Option<Vec<u8>> = None;
    let mut ran = 0;
    train(&ck.model, &ck.vs, &tc, 0, draw, |step, loss| {
        ran = step + 1;
        let mut status = format!("step {}/{} · loss {loss:.3}", step + 1, cfg.steps);
        if es.due(step) {
            let v = eval_loss(&ck.model, &valid, cfg.batch, device);
            match es.record(step, v) {
                Verdict::Improved => best_bytes = ck.to_bytes(Kind::BFloat16).ok(),
                Verdict::Stop => return false,
                Verdict::Worse => {}
            }
            status.push_str(&format!(" · validation {v:.3}"));
        }
        progress.set(status);
        !cancel.is_cancelled()
    })?;
    if cancel.is_cancelled() {
        return Err(Cancelled.into());
    }
    // The last weights, unless an earlier validation score was better.
    let last = eval_loss(&ck.model, &valid, cfg.batch, device);
    let (loss, best_step, tuned) = match (es.best, best_bytes) {
        (Some((step, best)), Some(bytes)) if best < last => (best, step + 1, bytes),
        _ => (last, ran, ck.to_bytes(Kind::BFloat16)?),
    };
    let registered = loss <= base_loss;
    if !registered {
        warnings.push(format!("{stage}: fine-tuning made validation loss worse ({loss:.4} > {base_loss:.4}); the base model is kept"));
    }
    let weights = if registered { tuned } else { base_bytes };
    let config_yaml = serde_saphyr::to_string(&ck.model.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![base.name()])),
        Arc::new(BooleanArray::from(vec![registered])),
        Arc::new(Float64Array::from(vec![base_loss])),
        Arc::new(Float64Array::from(vec![loss])),
        Arc::new(Int64Array::from(vec![ran as i64])),
        Arc::new(Int64Array::from(vec![series.len() as i64])),
        Arc::new(StringArray::from(vec![config_yaml])),
        Arc::new(BinaryArray::from(vec![weights.as_slice()])),
        Arc::new(Int64Array::from(vec![if registered { best_step as i64 } else { 0 }])),
    ];
    Ok((RecordBatch::try_new(output_schema(), columns)?, warnings))
}
