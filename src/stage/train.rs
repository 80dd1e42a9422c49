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
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::forecast::{Dense, densify, filled_warning, histories, long_history};
use super::text::{TextConfig, read_tokenizer, series_texts};
use super::{Cancelled, Scratch, StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::Diagnostics;
use crate::lm::checkpoint::{Checkpoint, Source};
use crate::lm::forecast::holdout_wql;
use crate::lm::model::Model;
use crate::lm::tokens::{Encoded, encode_with_scale, scale_of, text_prefix};
use crate::lm::train::{EarlyStopping, TrainConfig, Verdict, train, validate};

pub struct TrainKind;

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Season length of the series: the model's seasonal-lag input. Default: the input rows'
    /// median step's (7 daily, 52 weekly, 12 monthly; `grid::Step::season`).
    #[serde(default)]
    season_length: Option<usize>,
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
    /// Save a resumable checkpoint in the run's scratch folder every this many steps: a killed
    /// or failed attempt continues from it (`restock resume`, or the stage's next retry).
    #[serde(default = "default_checkpoint_every")]
    checkpoint_every: usize,
    /// Product text to condition on (the model learns what its words say about demand).
    #[serde(default)]
    text: Option<TextConfig>,
    /// Known covariates: columns of the demand input the model reads step by step (BOOLEAN =
    /// a flag such as `promo`; numbers = a level such as a price). A base without covariates
    /// gains them, starting at zero; forecasting then reads them, and a `future:` input's plan.
    /// `calendar.weekend`, `calendar.days`, … are features of the date (`lm::calendar`).
    #[serde(default)]
    covariates: Vec<String>,
    /// What early stopping and registration compare models on.
    #[serde(default)]
    score: Score,
    /// The share of training windows cut to a new SKU's first days (3 to 14 values of context,
    /// then a quarter window predicted; `lm::train::short_window`), so the model learns to
    /// forecast from little history, leaning on the product's text and covariates. When some
    /// series start after the table's first day (products launched during the history), short
    /// windows are their first days after launch, a real new SKU's, however short the series;
    /// then one in eight launched products (with 14 days and a quarter window after launch) is
    /// held out of training, and validation also scores forecasts from their first 3, 7 or 14
    /// days: registration judges new SKUs too, and their score apart is in the run's details
    /// (a warning when it got worse).
    #[serde(default)]
    short_windows: f64,
}

/// A model's validation score, over the held-out quarter of each validation window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Score {
    /// The teacher-forced CRPS of each next-value distribution: one forward pass. On the demo
    /// lake it follows `wql`'s ranking of a fine-tune's checkpoints more closely than
    /// cross-entropy does (BENCHMARKS.md).
    #[default]
    Crps,
    /// The WQL of 16 sampled forecast paths of the whole quarter from the values before it, what
    /// `restock evaluate` reports: ~25 s per score for 512 series on 2 cores.
    Wql,
}

fn default_checkpoint_every() -> usize {
    50
}

fn default_eval_every() -> usize {
    25
}
fn default_patience() -> usize {
    3
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
    text_pos: crate::diag::Pos,
    covariates_pos: crate::diag::Pos,
}

impl StageKind for TrainKind {
    fn name(&self) -> &'static str {
        "train"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: TrainStageConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("train", 1)?;
        let text_inputs = cfg.text.as_ref().map(TextConfig::inputs).unwrap_or_default();
        decl.expect_inputs("train", 1 + text_inputs.len())?;
        if let Some(text) = &cfg.text {
            text.check(decl, true)?;
        }
        let base = decl.pipeline_dir.join(&cfg.base);
        let config = crate::lm::model::load_config(&base.join(crate::lm::checkpoint::CONFIG))
            .map_err(|e| decl.error(decl.config.pos("base"), format!("{e:#}")))?;
        if cfg.window < 8
            || cfg.window as i64 > config.max_len
            || cfg.steps == 0
            || cfg.batch == 0
            || cfg.lr <= 0.0
            || cfg.season_length == Some(0)
        {
            let msg = format!("need 8 ≤ window ≤ max_len ({}), steps ≥ 1, batch ≥ 1, lr > 0, season_length ≥ 1", config.max_len);
            return Err(decl.error(decl.config.pos("window"), msg).into());
        }
        if !(0.0..=1.0).contains(&cfg.short_windows) {
            let msg = format!("`short_windows` is a share of the training windows, from 0 to 1; got {}", cfg.short_windows);
            return Err(decl.error(decl.config.pos("short_windows"), msg).into());
        }
        if cfg.text.is_some() && config.text_vocab == 0 {
            return Err(decl
                .error(decl.config.pos("text"), format!("the base model {} reads no text (`text_vocab: 0`)", base.display()))
                .into());
        }
        let input = decl.inputs.iter().find(|i| !text_inputs.contains(i)).expect("one input besides the text").clone();
        let (text_pos, covariates_pos) = (decl.config.pos("text"), decl.config.pos("covariates"));
        Ok(Arc::new(TrainTask { stage: decl.id.into(), input, base, text_pos, covariates_pos, cfg }))
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
        Field::new("tokenizer_json", DataType::Utf8, true),
    ]))
}

/// Most series whose last window scores validation (evenly spread over the series): each score
/// is a forward pass over all of them, taken several times a run.
const MAX_VALIDATION: usize = 512;

/// One series as training draws from it: its values before the held-out part, their known
/// covariates (row-major, empty without), and its text prefix (`tokens::text_prefix`; empty
/// without text).
#[derive(Clone, Copy)]
struct TrainSeries<'a> {
    values: &'a [f64],
    covariates: &'a [f32],
    prefix: &'a [i64],
}

impl<'a> TrainSeries<'a> {
    /// Series `i` of `data`, whole.
    fn of(data: &'a Data, prefixes: &'a [Vec<i64>], i: usize) -> Self {
        TrainSeries { values: &data.histories[i], covariates: data.covariates.get(i).map_or(&[], |c| c), prefix: &prefixes[i] }
    }

    /// Its first `end` values and their covariates (`n` per value).
    fn until(self, end: usize, n: usize) -> Self {
        TrainSeries { values: &self.values[..end], covariates: &self.covariates[..(end * n).min(self.covariates.len())], ..self }
    }
}

/// Training and validation windows: validation = the last window of long-enough series (up to
/// [`MAX_VALIDATION`] of them; its last quarter is what the loss scores), and the first days of
/// the launched products `held` out ([`held_launches`]), after each series' prefix when
/// `with_text`; training windows end before that quarter and leave the held-out launches out.
fn windows<'a>(
    data: &'a Data,
    prefixes: &'a [Vec<i64>],
    len: usize,
    season: usize,
    with_text: bool,
    held: &Held,
) -> (Vec<TrainSeries<'a>>, Vec<Encoded>) {
    let q = held_out(len);
    let n = data.n_covariates();
    let series = |i: usize| TrainSeries::of(data, prefixes, i);
    let long: Vec<usize> = (0..data.histories.len()).filter(|&i| data.histories[i].len() >= len + q).collect();
    let train = long.iter().filter(|&&i| !held.has(i)).map(|&i| series(i).until(data.histories[i].len() - q, n)).collect();
    let stride = long.len().div_ceil(MAX_VALIDATION).max(1);
    let window = |s: &TrainSeries, from, context| scored_window(s, from, context, q, season, n, with_text);
    let mut valid: Vec<Encoded> =
        long.iter().step_by(stride).map(|&i| window(&series(i), data.histories[i].len() - len, len - q)).collect();
    // A held-out launch: its first 3, 7 or 14 days, then the quarter after them.
    let cold = held.series().map(series);
    valid.extend(cold.zip(COLD_CONTEXTS.iter().cycle()).map(|(s, &context)| window(&s, 0, context)));
    (train, valid)
}

/// The validation window of `s` that starts at `from`: `context` values (the scale is theirs
/// alone), then `held` scored ones. Only those are scored: the rest is context training has
/// seen (or a new SKU's first days), and scoring it rewards fitting the history, not
/// forecasting (a long fine-tune's validation loss kept falling while its forecasts got worse).
fn scored_window(s: &TrainSeries, from: usize, context: usize, held: usize, season: usize, n: usize, with_text: bool) -> Encoded {
    let end = from + context + held;
    let w = &s.values[from..end];
    let mut enc = encode_with_scale(w, None, scale_of(&w[..context])).with_season(season);
    enc.target[..context].iter_mut().for_each(|t| *t = false);
    let enc = if n > 0 { enc.with_covariates(s.covariates[from * n..end * n].to_vec(), n) } else { enc };
    if with_text { enc.after(s.prefix) } else { enc }
}

/// The days of history a held-out launch's validation window starts from (a new SKU's first
/// days, as `short_windows` trains on 3 to 14).
const COLD_CONTEXTS: [usize; 3] = [3, 7, 14];

/// One in this many launched products is held out of a fine-tune that trains for new SKUs.
const COLD_EVERY: usize = 8;

/// Most held-out launches.
const MAX_COLD_VALIDATION: usize = 256;

/// The launched products a fine-tune that trains for new SKUs (`short_windows` > 0) holds out,
/// so that early stopping and registration also score forecasts of SKUs it never saw from
/// their first days: every [`COLD_EVERY`]th launched series with 14 days and a held-out quarter
/// (none when fewer), up to [`MAX_COLD_VALIDATION`]. Nothing of them is trained on.
fn held_launches(data: &Data, len: usize, short_windows: f64) -> Held {
    let mut held = vec![false; data.histories.len()];
    if short_windows > 0.0 {
        let need = COLD_CONTEXTS[COLD_CONTEXTS.len() - 1] + held_out(len);
        let eligible = (0..data.histories.len()).filter(|&i| data.is_launched(i) && data.histories[i].len() >= need);
        eligible.skip(COLD_EVERY - 1).step_by(COLD_EVERY).take(MAX_COLD_VALIDATION).for_each(|i| held[i] = true);
    }
    Held(held)
}

/// The launched products a fine-tune holds out of training ([`held_launches`]), by series
/// index; `Held::default()` holds none.
#[derive(Debug, Default)]
struct Held(Vec<bool>);

impl Held {
    /// Whether series `i` is held out.
    fn has(&self, i: usize) -> bool {
        self.0.get(i).copied().unwrap_or(false)
    }

    /// The held-out series' indices, in order.
    fn series(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len()).filter(|&i| self.0[i])
    }

    fn count(&self) -> usize {
        self.series().count()
    }
}

/// The series of products launched during the history ([`launched`]) that a new SKU's short
/// window (`short_windows`) can start at the launch of: those with at least 3 values and a
/// quarter window, each ending before its validation window's held-out quarter when it has one,
/// but for the launches `held` out for validation.
fn launches<'a>(data: &'a Data, prefixes: &'a [Vec<i64>], len: usize, held: &Held) -> Vec<TrainSeries<'a>> {
    let n = data.n_covariates();
    (0..data.histories.len())
        .filter(|&i| data.is_launched(i) && !held.has(i) && data.histories[i].len() >= 3 + len / 4)
        .map(|i| {
            let s = TrainSeries::of(data, prefixes, i);
            let held = if s.values.len() >= len + held_out(len) { held_out(len) } else { 0 };
            s.until(s.values.len() - held, n)
        })
        .collect()
}

/// The part of a validation window that is held out: its last quarter.
fn held_out(window: usize) -> usize {
    window / 4
}

impl Score {
    fn name(self) -> &'static str {
        match self {
            Score::Crps => "CRPS",
            Score::Wql => "WQL",
        }
    }
}

/// Sample paths per validation series for `score: wql`.
const VALIDATION_PATHS: i64 = 16;

/// A model's validation score as `cfg.score` says; the teacher-forced cross-entropy, CRPS and,
/// when computed, the sampled WQL are logged (`RESTOCK_LOG=restock=info`).
fn score(model: &Model, valid: &[Encoded], cfg: &TrainStageConfig, window: usize, device: Device, what: &str) -> f64 {
    let v = validate(model, valid, cfg.batch, device);
    if cfg.score == Score::Crps {
        tracing::info!(cross_entropy = v.cross_entropy, crps = v.crps, "{what}");
        return v.crps;
    }
    let wql = holdout_wql(model, valid, held_out(window), VALIDATION_PATHS, device);
    tracing::info!(cross_entropy = v.cross_entropy, crps = v.crps, wql, "{what}");
    wql
}

/// The series' product text, when the stage conditions on it.
struct SeriesText {
    /// Per series, in the batch's order (`densify`'s row ranges).
    texts: Vec<Option<String>>,
    /// The tokenizer input's `tokenizer.json`, for a base model without a tokenizer.
    tokenizer: Option<String>,
    config: TextConfig,
}

/// What a fine-tune trains on: each series' values, known covariates (row-major
/// [values × covariates]; empty without), text, and which series start after the table's first
/// day (launched during it: [`launched`]; empty = none).
struct Data {
    histories: Vec<Vec<f64>>,
    /// `season_length`, or the rows' step's season.
    season: usize,
    covariates: Vec<Vec<f32>>,
    names: Vec<String>,
    text: Option<SeriesText>,
    launched: Vec<bool>,
}

/// Per series of a [`long_history`] batch (row ranges `bounds`), whether its first time is later
/// than the earliest series' first: a product launched during the history, whose first days
/// are its launch.
fn launched(all: &RecordBatch, bounds: &[(usize, usize)], n_keys: usize) -> Result<Vec<bool>> {
    use datafusion::arrow::array::UInt64Array;
    use datafusion::arrow::row::{RowConverter, SortField};
    // Only each series' first time is compared: those rows alone are converted.
    let starts = UInt64Array::from_iter_values(bounds.iter().map(|&(start, _)| start as u64));
    let first = datafusion::arrow::compute::take(all.column(n_keys), &starts, None)?;
    let rows = RowConverter::new(vec![SortField::new(first.data_type().clone())])?.convert_columns(&[first])?;
    let earliest = rows.iter().min();
    Ok(rows.iter().map(|f| Some(f) > earliest).collect())
}

impl Data {
    fn n_covariates(&self) -> usize {
        self.names.len()
    }

    /// Whether series `i` is of a product launched during the history ([`launched`]).
    fn is_launched(&self, i: usize) -> bool {
        self.launched.get(i).copied().unwrap_or(false)
    }
}

/// Each series' text prefix as `ck` reads it (empty where a series has no text), and how many
/// series have none.
fn prefixes(ck: &Checkpoint, data: &Data) -> Result<(Vec<Vec<i64>>, usize)> {
    let Some(t) = &data.text else { return Ok((vec![vec![]; data.histories.len()], 0)) };
    let mut out = Vec::with_capacity(t.texts.len());
    for text in &t.texts {
        let ids = match text {
            Some(text) => ck.text_ids(text)?.unwrap_or_default(),
            None => vec![],
        };
        out.push(text_prefix(&ids, t.config.max_tokens, ck.model.config.text_vocab));
    }
    let missing = out.iter().filter(|p| p.is_empty()).count();
    Ok((out, missing))
}

#[async_trait]
impl StageTask for TrainTask {
    fn fingerprint(&self) -> Option<String> {
        Some(crate::lm::checkpoint::version_stamp(&self.base))
    }

    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        if let Some(text) = &self.cfg.text {
            text.plan(inputs, &self.cfg.series, &self.text_pos, &self.stage)?;
        }
        let demand = inputs.get(&self.input).expect("planner passes every declared input");
        super::covariates::kinds(demand, &self.cfg.covariates, &self.input)
            .map_err(|msg| crate::diag::Diagnostic::new(self.covariates_pos.clone(), msg).stage(&self.stage))?;
        Ok(vec![output_schema()])
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let names = &self.cfg.covariates;
        let all = long_history(cx, &self.input, &self.cfg.series, &self.cfg.time, &self.cfg.target, names).await?;
        let Dense { batch: all, bounds, filled, step } = densify(&all, &self.cfg.series, None)?;
        let season = match (self.cfg.season_length, step.and_then(|s| s.season(true))) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => bail!(
                "set `season_length`: the input rows' median step ({}) has no conventional season",
                step.map_or("none: no series has two rows".to_string(), |s| s.describe())
            ),
        };
        let histories = histories(&all, self.cfg.series.len(), &bounds);
        let schema = cx.ctx.table_provider(self.input.as_str()).await?.schema();
        let sources = super::covariates::kinds(&schema, names, &self.input).map_err(anyhow::Error::msg)?;
        let covariates = super::covariates::series_features(&all, &bounds, self.cfg.series.len() + 2, &sources, None);
        let text = match &self.cfg.text {
            Some(t) => Some(SeriesText {
                texts: series_texts(cx, &self.input, &self.cfg.series, &self.cfg.time, t).await?,
                tokenizer: match &t.tokenizer {
                    Some(name) => Some(read_tokenizer(cx, name).await?),
                    None => None,
                },
                config: t.clone(),
            }),
            None => None,
        };
        if text.as_ref().is_some_and(|t| t.texts.len() != histories.len()) {
            bail!("matching text to series: the series and their text rows differ in number (null series keys?)");
        }
        let table = &cx.outputs[0].0;
        let base = match crate::models::latest(&cx.lake, table).await? {
            Some((version, p)) if !self.cfg.restart => {
                Source::Row { name: format!("{table}@v{version}"), config: p.config, weights: Arc::new(p.weights), tokenizer: p.tokenizer }
            }
            _ => Source::Folder(self.base.clone()),
        };
        let (cfg, stage, scratch) = (self.cfg.clone(), self.stage.clone(), cx.scratch.clone());
        let launched = launched(&all, &bounds, self.cfg.series.len())?;
        let data = Data { histories, season, covariates, names: names.clone(), text, launched };
        let run =
            move |cancel: &_, progress: &_| fine_tune(&data, &cfg, &base, &Job { stage: &stage, cancel, progress, scratch: &scratch });
        let tuned = cx.blocking(run).await?;
        let written = cx.write_output(0, cx.ctx.read_batch(tuned.row)?).await?;
        let details = serde_json::json!({ "resumed_from": tuned.resumed_from, "new_skus": tuned.new_skus });
        let mut warnings = tuned.warnings;
        warnings.extend(filled_warning(filled, "rows' median step").map(|w| format!("{}: {w}", self.stage)));
        Ok(StageReport { rows_out: written.rows, bytes_out: written.bytes, details: Some(details), warnings })
    }
}

/// What the blocking part of a run needs besides the data: names, cancellation, display and
/// the scratch folder its checkpoints go to.
struct Job<'a> {
    stage: &'a str,
    cancel: &'a tokio_util::sync::CancellationToken,
    progress: &'a super::StageProgress,
    scratch: &'a Scratch,
}

/// A fine-tune's result: the output row, its warnings, and the step it resumed from (0: none).
struct Tuned {
    row: RecordBatch,
    warnings: Vec<String>,
    resumed_from: usize,
    new_skus: Option<NewSkus>,
}

/// The new-SKU part of validation, scored apart ([`held_launches`]): how many launched products
/// were held out, and the base's and the fine-tuned model's score on their first days.
#[derive(Debug, Clone, Copy, Serialize)]
struct NewSkus {
    held_out: usize,
    base: f64,
    tuned: f64,
}

/// A resumable checkpoint's record (`state.json` in the scratch folder), naming the weights
/// objects beside it. Weights objects carry their step in the name and `state.json` is written
/// last, so a kill at any moment leaves a consistent checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainState {
    /// What the training is (base, config, data size): another training's checkpoint is ignored.
    key: String,
    step: usize,
    weights: String,
    /// The best-scoring weights so far (bf16), when early stopping has a best.
    best: Option<String>,
    early: EarlyStopping,
}

const STATE: &str = "state.json";

/// Where training stands, besides the weights: steps done, early stopping, the best weights
/// so far (their object name and bf16 bytes).
struct Record {
    step: usize,
    early: EarlyStopping,
    best: Option<(String, Vec<u8>)>,
}

/// The checkpoint to continue from, if the scratch folder holds one of this same training.
fn resume_point(scratch: &Scratch, key: &str, config_yaml: &str, tokenizer: Option<&str>) -> Result<Option<(Checkpoint, Record)>> {
    let Some(bytes) = scratch.get(STATE)? else { return Ok(None) };
    let Ok(state) = serde_json::from_slice::<TrainState>(&bytes) else { return Ok(None) };
    if state.key != key {
        return Ok(None);
    }
    let weights = scratch.get(&state.weights)?.with_context(|| format!("the checkpoint's {} is missing", state.weights))?;
    let ck = Checkpoint::from_parts(config_yaml, &weights, tokenizer, crate::device::best()).context("loading the resumable checkpoint")?;
    let best = match state.best {
        Some(name) => Some((name.clone(), scratch.get(&name)?.with_context(|| format!("the checkpoint's {name} is missing"))?.to_vec())),
        None => None,
    };
    Ok(Some((ck, Record { step: state.step, early: state.early, best })))
}

/// Write a checkpoint at `r.step`: weights first, `state.json` last, then drop the older files.
fn save_checkpoint(scratch: &Scratch, key: &str, ck: &Checkpoint, r: &Record, old: Option<TrainState>) -> Result<TrainState> {
    let weights = format!("weights-{}.safetensors", r.step);
    scratch.put(&weights, ck.to_bytes(Kind::Float)?)?;
    let best = r.best.as_ref().map(|(name, _)| name.clone());
    if let Some((name, bytes)) = &r.best
        && old.as_ref().and_then(|o| o.best.as_ref()) != Some(name)
    {
        scratch.put(name, bytes.clone())?;
    }
    let state = TrainState { key: key.to_string(), step: r.step, weights, best, early: r.early.clone() };
    scratch.put(STATE, serde_json::to_vec(&state)?)?;
    if let Some(old) = old {
        scratch.delete(&old.weights)?;
        if let Some(b) = old.best.filter(|b| Some(b) != state.best.as_ref()) {
            scratch.delete(&b)?;
        }
    }
    Ok(state)
}

/// Train from `rec.step` to the configured steps, scoring validation for early stopping and
/// saving a resumable checkpoint every `checkpoint_every` steps.
fn train_resumably(ck: &Checkpoint, rec: &mut Record, data: &Windows, cfg: &TrainStageConfig, key: &str, job: &Job) -> Result<()> {
    let Windows { series, launches, valid, window, season, dropout, covariate_lr_scale } = *data;
    let device = ck.vs.device();
    let tc = TrainConfig {
        steps: cfg.steps,
        batch: cfg.batch,
        window,
        lr: cfg.lr,
        warmup: (cfg.steps / 10).max(1),
        weight_decay: 0.1,
        clip: 1.0,
        seed: cfg.seed,
        covariate_lr_scale,
    };
    // A short window is a new SKU's first days: a launched product's launch when there are any.
    let draw = |rng: &mut rand_chacha::ChaCha8Rng| {
        let short = cfg.short_windows > 0.0 && rng.random_bool(cfg.short_windows);
        let from_launch = short && !launches.is_empty();
        let pool = if from_launch { launches } else { series };
        let s = pool[rng.random_range(0..pool.len())];
        let prefix = if dropout > 0.0 && rng.random_bool(dropout) { &[] } else { s.prefix };
        let (values, covariates) = (s.values, s.covariates);
        match short {
            true => crate::lm::train::short_window(values, covariates, prefix, window, season, from_launch, rng),
            false => crate::lm::train::window(values, covariates, prefix, window, season, rng),
        }
    };
    let mut saved: Result<Option<TrainState>> = Ok(None);
    train(&ck.model, &ck.vs, &tc, rec.step, draw, |step, loss| {
        rec.step = step + 1;
        let mut status = format!("step {}/{} · loss {loss:.3}", step + 1, cfg.steps);
        if rec.early.due(step) {
            let v = score(&ck.model, valid, cfg, window, device, &format!("{}: validation at step {}", job.stage, step + 1));
            match rec.early.record(step, v) {
                Verdict::Improved => rec.best = ck.to_bytes(Kind::BFloat16).ok().map(|b| (format!("best-{}.safetensors", step + 1), b)),
                Verdict::Stop => return false,
                Verdict::Worse => {}
            }
            status.push_str(&format!(" · validation {v:.3}"));
        }
        if rec.step % cfg.checkpoint_every.max(1) == 0 && rec.step < cfg.steps {
            let old = saved.as_mut().ok().and_then(Option::take);
            saved = save_checkpoint(job.scratch, key, ck, rec, old).map(Some);
            if saved.is_err() {
                return false;
            }
        }
        job.progress.set(status);
        !job.cancel.is_cancelled()
    })?;
    saved.context("saving the resumable checkpoint")?;
    if job.cancel.is_cancelled() {
        return Err(Cancelled.into());
    }
    Ok(())
}

/// What training draws from: the series' training parts, the validation windows, the length,
/// the share of windows drawn without their text.
struct Windows<'a> {
    series: &'a [TrainSeries<'a>],
    /// Launched products' series, which short windows are cut from when there are any.
    launches: &'a [TrainSeries<'a>],
    valid: &'a [Encoded],
    window: usize,
    season: usize,
    dropout: f64,
    /// The covariate projection's learning rate over the rest's (`TrainConfig`).
    covariate_lr_scale: f64,
}

/// The output row's contents.
struct Outcome {
    base: String,
    registered: bool,
    base_loss: f64,
    loss: f64,
    steps: usize,
    series: usize,
    config_yaml: String,
    weights: Vec<u8>,
    best_step: usize,
    tokenizer: Option<String>,
}

fn output_row(o: &Outcome) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![o.base.as_str()])),
        Arc::new(BooleanArray::from(vec![o.registered])),
        Arc::new(Float64Array::from(vec![o.base_loss])),
        Arc::new(Float64Array::from(vec![o.loss])),
        Arc::new(Int64Array::from(vec![o.steps as i64])),
        Arc::new(Int64Array::from(vec![o.series as i64])),
        Arc::new(StringArray::from(vec![o.config_yaml.as_str()])),
        Arc::new(BinaryArray::from(vec![o.weights.as_slice()])),
        Arc::new(Int64Array::from(vec![o.best_step as i64])),
        Arc::new(StringArray::from(vec![o.tokenizer.as_deref()])),
    ];
    Ok(RecordBatch::try_new(output_schema(), columns)?)
}

/// The base as this fine-tune trains it: with text and a tokenizer input, it reads that
/// tokenizer's ids — a base without a tokenizer takes it as it is, a base with another carries
/// its text embeddings over to it by the tokens' text (`Checkpoint::with_transferred_tokenizer`:
/// what the shipped model learned of words in pretraining, or last night's model of this lake's,
/// survives a new tokenizer); without a tokenizer input, the base's own. `had`: the base's own
/// tokenizer (its JSON), as the caller read it.
fn with_text_tokenizer(ck: Checkpoint, had: Option<&str>, data: &Data, base: &Source, stage: &str) -> Result<(Checkpoint, Vec<String>)> {
    let Some(t) = &data.text else { return Ok((ck, vec![])) };
    let Some(json) = t.tokenizer.as_deref() else {
        if had.is_none() {
            bail!(
                "{stage}: the base model {} has no tokenizer: set `text: {{ tokenizer: … }}` to a `tokenizer` stage's output",
                base.name()
            );
        }
        return Ok((ck, vec![]));
    };
    if had == Some(json) {
        return Ok((ck, vec![]));
    }
    let (ck, (whole, n)) = ck.with_transferred_tokenizer(json).with_context(|| format!("{stage}: the tokenizer input"))?;
    let note = format!(
        "{stage}: {} reads tonight's tokenizer, its text embeddings carried over by token text ({whole} of {n} ids are tokens it had)",
        base.name()
    );
    Ok((ck, if had.is_some() { vec![note] } else { vec![] }))
}

/// The base as a fine-tune starts from: its checkpoint reading the tokenizer input's ids
/// (`with_text_tokenizer`) and the data's covariates, its own tokenizer (JSON, `None` without),
/// the covariate projection's learning-rate scale, each series' text prefix, and the warnings.
struct Prepared {
    ck: Checkpoint,
    own_tokenizer: Option<String>,
    covariate_lr_scale: f64,
    prefixes: Vec<Vec<i64>>,
    warnings: Vec<String>,
}

fn prepare(data: &Data, base: &Source, stage: &str) -> Result<Prepared> {
    let ck = base.load()?;
    let own_tokenizer = ck.tokenizer_json()?;
    let (ck, mut warnings) = with_text_tokenizer(ck, own_tokenizer.as_deref(), data, base, stage)?;
    // Covariates beyond the base's inputs start at zero and learn faster; pretrained ones do not.
    let fresh = data.names.len() as i64 > ck.model.config.n_covariates;
    let covariate_lr_scale = if fresh { crate::lm::train::COVARIATE_LR_SCALE } else { 1.0 };
    let ck = ck
        .with_covariates(&data.names)
        .with_context(|| format!("{stage}: the base model {}: list its covariates in `covariates:` (or `restart: true`)", base.name()))?;
    let (prefixes, missing) = prefixes(&ck, data)?;
    if missing > 0 {
        warnings.push(format!("{stage}: {missing} of {} series have no text; they train without it", prefixes.len()));
    }
    Ok(Prepared { ck, own_tokenizer, covariate_lr_scale, prefixes, warnings })
}

/// The training window: the configured one, shrunk on short histories (a young lake, a new
/// store) instead of failing the night, with a warning.
fn training_window(data: &Data, cfg: &TrainStageConfig, stage: &str, warnings: &mut Vec<String>) -> Result<usize> {
    let longest = data.histories.iter().map(Vec::len).max().unwrap_or(0);
    let window = cfg.window.min(longest * 4 / 5);
    if window < 16 {
        bail!("no series has the 20 values a window of 16 plus its held-out quarter needs (the longest has {longest})");
    }
    if window < cfg.window {
        warnings
            .push(format!("{stage}: the longest series has {longest} values, so training windows are {window} instead of {}", cfg.window));
    }
    Ok(window)
}

/// What scores a model on validation windows: the stage's config, the window and the device.
struct Scorer<'a> {
    cfg: &'a TrainStageConfig,
    window: usize,
    device: Device,
    stage: &'a str,
}

impl Scorer<'_> {
    fn score(&self, model: &Model, valid: &[Encoded], what: &str) -> f64 {
        score(model, valid, self.cfg, self.window, self.device, &format!("{}: {what}", self.stage))
    }

    /// The new-SKU part of validation alone: the held-out launches' windows, last in `valid`
    /// ([`windows`]).
    fn new_skus(&self, model: &Model, valid: &[Encoded], held: &Held) -> f64 {
        let cold = held.count();
        self.score(model, &valid[valid.len() - cold..], &format!("validation of the first days of {cold} launched series held out"))
    }
}

/// The CPU/GPU part: load the base, score it, train (from the last checkpoint when an earlier
/// attempt left one), score again, build the output row. With text, the base reads the
/// tokenizer input's ids (`with_text_tokenizer`); it is scored with text only if it had a
/// tokenizer of its own (else its text embeddings are untrained), the fine-tuned model with text.
fn fine_tune(data: &Data, cfg: &TrainStageConfig, base: &Source, job: &Job) -> Result<Tuned> {
    let Prepared { ck: base_ck, own_tokenizer, covariate_lr_scale, prefixes, mut warnings } = prepare(data, base, job.stage)?;
    let window = training_window(data, cfg, job.stage, &mut warnings)?;
    let scorer = Scorer { cfg, window, device: base_ck.vs.device(), stage: job.stage };
    let with_text = data.text.is_some();
    let held = held_launches(data, window, cfg.short_windows);
    let (series, valid) = windows(data, &prefixes, window, data.season, with_text, &held);
    let base_valid = match own_tokenizer.is_some() || !with_text {
        true => valid.clone(),
        false => windows(data, &prefixes, window, data.season, false, &held).1,
    };
    let base_loss = scorer.score(&base_ck.model, &base_valid, "the base's validation");
    let base_new = (held.count() > 0).then(|| scorer.new_skus(&base_ck.model, &base_valid, &held));
    let base_bytes = base_ck.to_bytes(Kind::BFloat16)?;
    let config_yaml = serde_saphyr::to_string(&base_ck.model.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tokenizer = base_ck.tokenizer_json()?;
    let launches = launches(data, &prefixes, window, &held);
    let key = format!("{} · {} series · window {window} · {}", base.name(), series.len(), serde_json::to_string(cfg)?);
    let (ck, mut rec) = match resume_point(job.scratch, &key, &config_yaml, tokenizer.as_deref())? {
        Some(resumed) => resumed,
        None => (base_ck, Record { step: 0, early: EarlyStopping::new(cfg.eval_every, cfg.patience), best: None }),
    };
    let resumed_from = rec.step;
    if resumed_from > 0 {
        warnings.push(format!("{}: resumed from the checkpoint an earlier attempt saved at step {resumed_from}", job.stage));
    }
    let dropout = data.text.as_ref().and_then(|t| t.config.dropout).unwrap_or(DEFAULT_TEXT_DROPOUT);
    let windows = Windows { series: &series, launches: &launches, valid: &valid, window, season: data.season, dropout, covariate_lr_scale };
    train_resumably(&ck, &mut rec, &windows, cfg, &key, job)?;
    let (loss, best_step, tuned) = chosen_weights(&scorer, &ck, &mut rec, &valid)?;
    let registered = loss <= base_loss;
    // The new SKUs scored with the weights as registered (bf16), like everything after tonight.
    let new_skus = base_new
        .map(|base| {
            let chosen = Checkpoint::from_parts(&config_yaml, &tuned, tokenizer.as_deref(), scorer.device)?;
            anyhow::Ok(NewSkus { held_out: held.count(), base, tuned: scorer.new_skus(&chosen.model, &valid, &held) })
        })
        .transpose()?;
    warnings.extend(verdict(job.stage, cfg.score, registered, (loss, base_loss), new_skus));
    // The base kept: its weights as scored, with the tokenizer their text embeddings now follow
    // (none where it had none: it forecasts without text, as before).
    let (weights, tokenizer) = match registered {
        true => (tuned, tokenizer),
        false => (base_bytes, own_tokenizer.and(tokenizer)),
    };
    let row = output_row(&Outcome {
        base: base.name(),
        registered,
        base_loss,
        loss,
        steps: rec.step,
        series: series.len(),
        config_yaml,
        weights,
        best_step: if registered { best_step } else { 0 },
        tokenizer,
    })?;
    job.scratch.clear().context("clearing the resumable checkpoint")?;
    Ok(Tuned { row, warnings, resumed_from, new_skus })
}

/// The weights a fine-tune ends with, their validation loss and step: the last, unless an
/// earlier validation score was better.
fn chosen_weights(scorer: &Scorer, ck: &Checkpoint, rec: &mut Record, valid: &[Encoded]) -> Result<(f64, usize, Vec<u8>)> {
    let last = scorer.score(&ck.model, valid, "the last weights' validation");
    Ok(match (rec.early.best, rec.best.take()) {
        (Some((step, best)), Some((_, bytes))) if best < last => (best, step + 1, bytes),
        _ => (last, rec.step, ck.to_bytes(Kind::BFloat16)?),
    })
}

/// The warnings a fine-tune's outcome gives: the base kept (its `loss` worse than the base's),
/// or a registered fine-tune that forecasts the held-out new SKUs worse than the base.
fn verdict(stage: &str, score: Score, registered: bool, (loss, base_loss): (f64, f64), new_skus: Option<NewSkus>) -> Vec<String> {
    let score = score.name();
    let mut warnings = vec![];
    if let Some(n) = new_skus.filter(|n| registered && n.tuned > n.base) {
        warnings.push(format!(
            "{stage}: the fine-tune forecasts new SKUs worse — validation {score} on the first days of {} launched series held out of training {:.4} > the base's {:.4} — though better overall, so it is registered",
            n.held_out, n.tuned, n.base
        ));
    }
    if !registered {
        warnings.push(format!(
            "{stage}: fine-tuning made the held-out forecasts worse (validation {score} {loss:.4} > {base_loss:.4}); the base model is kept"
        ));
    }
    warnings
}

/// The share of training windows drawn without their text when `text: dropout` is not set.
const DEFAULT_TEXT_DROPOUT: f64 = 0.2;

#[cfg(test)]
mod tests {
    use super::*;

    /// Validation scores only each window's held-out quarter (training saw the rest), with the
    /// scale taken from the part before it, and training windows end before that quarter.
    #[test]
    fn validation_windows_score_only_the_held_out_quarter() {
        let histories = vec![(0..200).map(f64::from).collect::<Vec<f64>>(), vec![1.0; 30]];
        let data = Data { histories, season: 7, covariates: vec![], names: vec![], text: None, launched: vec![] };
        let prefixes = vec![vec![], vec![]];
        let (train, valid) = windows(&data, &prefixes, 40, 7, false, &Held::default());
        assert_eq!((train.len(), valid.len()), (1, 1), "the 30-value series is too short for 40 + 10");
        assert_eq!(train[0].values.len(), 190, "training ends before the held-out 10");
        let v = &valid[0];
        assert_eq!(v.target.iter().filter(|t| **t).count(), 10);
        assert!(v.target[30..].iter().all(|t| *t) && !v.target[..30].iter().any(|t| *t));
        assert_eq!(v.scale, scale_of(&(160..190).map(f64::from).collect::<Vec<_>>()));
    }

    /// A series that starts after the table's first day is a product launched during it. Short
    /// windows start at launches, so any launched series long enough for a short window is one
    /// (ending before its validation window's held-out quarter when it has one); others are not.
    #[test]
    fn launched_series_start_after_the_tables_first_day() {
        use datafusion::arrow::array::Date32Array;
        let batch = RecordBatch::try_from_iter(vec![
            ("sku", Arc::new(StringArray::from(vec!["a", "a", "a", "b", "b", "c"])) as ArrayRef),
            ("date", Arc::new(Date32Array::from(vec![10, 11, 12, 11, 12, 10])) as ArrayRef),
            ("y", Arc::new(Float64Array::from(vec![1.0; 6])) as ArrayRef),
        ])
        .unwrap();
        let (bounds, _) = crate::stage::forecast::split_series(&batch, 1).unwrap();
        assert_eq!(launched(&batch, &bounds, 1).unwrap(), vec![false, true, false]);
        let histories = vec![(0..200).map(f64::from).collect::<Vec<f64>>(), vec![1.0; 30], vec![1.0; 12], vec![1.0; 300]];
        let data = Data { histories, season: 7, covariates: vec![], names: vec![], text: None, launched: vec![true, true, true, false] };
        let lengths: Vec<usize> = launches(&data, &vec![vec![]; 4], 40, &Held::default()).iter().map(|s| s.values.len()).collect();
        assert_eq!(lengths, vec![190, 30], "12 values are fewer than 3 + a quarter window; the 300 were never launched");
    }

    /// A fine-tune that trains for new SKUs holds every eighth launched product (with 14 days
    /// and a quarter window) out of training: validation scores the quarter after its first
    /// 3, 7 or 14 days, scaled by those days alone; no window, long or short, trains on it.
    #[test]
    fn held_out_launches_are_validated_from_their_first_days_only() {
        // Ten launched series (the 2nd and 7th too short to hold out), then one never launched.
        let mut histories: Vec<Vec<f64>> = (0..10).map(|i| (0..100).map(|t| f64::from(t + 1000 * i)).collect()).collect();
        histories[1].truncate(20);
        histories[6].truncate(20);
        histories.push(vec![1.0; 100]);
        let launched = [vec![true; 10], vec![false]].concat();
        let data = Data { histories, season: 7, covariates: vec![], names: vec![], text: None, launched };
        assert_eq!(held_launches(&data, 40, 0.0).count(), 0, "only a fine-tune with short windows holds launches out");
        let held = held_launches(&data, 40, 0.5);
        assert_eq!(held.series().collect::<Vec<_>>(), vec![9], "the 8th of the eight eligible");
        let prefixes = vec![vec![]; 11];
        let (train, valid) = windows(&data, &prefixes, 40, 7, false, &held);
        let first = |v: &[f64]| v[0];
        assert_eq!(train.len(), 8, "9 long series, less the held-out one");
        assert!(train.iter().all(|s| first(s.values) != 9000.0), "nothing of the held-out launch is trained on");
        assert!(launches(&data, &prefixes, 40, &held).iter().all(|s| first(s.values) != 9000.0));
        let cold = valid.last().unwrap();
        assert_eq!(valid.len(), 10, "9 long windows and the held-out launch's first days");
        assert_eq!(cold.ids.len(), 3 + 10, "its first 3 days, then a quarter of the window");
        assert!(cold.target[3..].iter().all(|t| *t) && !cold.target[..3].iter().any(|t| *t));
        assert_eq!(cold.scale, scale_of(&[9000.0, 9001.0, 9002.0]));
    }
}
