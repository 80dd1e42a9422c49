//! `forecast`: per-series probabilistic forecasts from a long table (series keys, date, target).
//!
//! The statistical methods (`forecast::Method`), the language model (`lm`), and an `ensemble`
//! of them (`forecast::ensemble`).
use std::collections::BTreeMap;

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use chrono::{Months, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use serde::Deserialize;

use super::text::{TextConfig, series_texts};
use super::{Cancelled, StageCx, StageDecl, StageKind, StageProgress, StageReport, StageTask};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::forecast::grid::{self, DAY, Filled};
use crate::forecast::metrics::LEVELS;
use crate::forecast::{
    ENSEMBLE_MEMBERS, Method, QuantileForecast, Request, ensemble, holdout, method_names, quantile_column, unknown_method,
};
use crate::lm::checkpoint::{Checkpoint, Source};
use crate::lm::forecast::{HeldOut, Input, LagSeasons, LmOptions, Pass, PathForecasts};

pub struct ForecastKind;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum Freq {
    #[default]
    Day,
    Week,
    Month,
}

impl Freq {
    /// The grid a series' rows lie on.
    fn grid(self) -> grid::Step {
        match self {
            Freq::Day => grid::Step::Fixed(DAY),
            Freq::Week => grid::Step::Fixed(7 * DAY),
            Freq::Month => grid::Step::Months(1),
        }
    }

    /// The season a `season_length` left out is.
    fn season(self) -> usize {
        self.grid().season(true).expect("a day, a week and a month have seasons")
    }

    fn step(self, d: NaiveDate, n: u32) -> NaiveDate {
        match self {
            Freq::Day => d + chrono::Duration::days(n as i64),
            Freq::Week => d + chrono::Duration::days(7 * n as i64),
            Freq::Month => d.checked_add_months(Months::new(n)).unwrap_or(d),
        }
    }
}

fn default_quantiles() -> Vec<f64> {
    vec![0.1, 0.5, 0.9]
}
fn yes() -> bool {
    true
}

/// A config value that is a count or a word (`lag_seasons: 3` or `lag_seasons: auto`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum CountOrWord {
    Count(i64),
    Word(String),
}

impl CountOrWord {
    fn text(&self) -> String {
        match self {
            CountOrWord::Count(n) => n.to_string(),
            CountOrWord::Word(w) => w.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastConfig {
    /// naive, seasonal_naive, ets, theta, croston, sba, tsb, lm or ensemble.
    method: String,
    /// An `ensemble`'s members (`lm` may be one; default: ets, theta, seasonal_naive, and lm
    /// where `model` or `model_input` is given): their median, or one member alone where it
    /// forecast the series' held-out tails clearly better (`forecast::ensemble`).
    #[serde(default)]
    members: Vec<String>,
    /// Columns that identify a series (e.g. sku_id, location_id).
    series: Vec<String>,
    /// A DATE column.
    time: String,
    /// The numeric column to forecast.
    target: String,
    horizon: u32,
    /// Default: `freq`'s season (7 daily, 52 weekly, 12 monthly).
    #[serde(default)]
    season_length: Option<usize>,
    #[serde(default = "default_quantiles")]
    quantiles: Vec<f64>,
    #[serde(default)]
    freq: Freq,
    /// Demand cannot be negative: clip forecasts at zero.
    #[serde(default = "yes")]
    nonnegative: bool,
    /// `lm` only: the model folder (config.yaml + model.safetensors), relative to the pipeline file.
    model: Option<String>,
    /// `lm` only, instead of `model`: the input holding a `train` stage's output (the model this
    /// run fine-tuned, or the latest published one).
    model_input: Option<String>,
    /// `lm` only: sample paths per series, sampling temperature, top-k (0 = all), seed.
    #[serde(default = "default_paths")]
    paths: i64,
    #[serde(default = "default_temperature")]
    temperature: f64,
    #[serde(default)]
    top_k: i64,
    #[serde(default)]
    seed: i64,
    /// `lm` only: most recent values each series shows the model (default: all that fit).
    context: Option<usize>,
    /// `lm` only: context lengths the paths are split across (`context`, half, a quarter, …),
    /// their forecasts averaged quantile by quantile (default 2, or 1 with a single path).
    contexts: Option<usize>,
    /// `lm` only: takes a straight line out of a context (and puts its continuation back on
    /// the forecast) when its residuals' mean |r| is at most this share of the values' mean |x|;
    /// 0 = never (default `lm::forecast::DETREND`, 0.02).
    detrend: Option<f64>,
    /// `lm` only: the trend taken out of a context and put back on the forecast where no clean
    /// line describes it: `drift`, `growth` (in logs, positive series), `differences` (the
    /// steps), `season` (the season, by classical decomposition), `off`, or `auto` (the
    /// default: whichever forecasts the series' own last `horizon` values best).
    trend: Option<String>,
    /// `lm` only: standard errors a drift or growth must be from zero to be taken out (0 =
    /// never; default 2).
    drift: Option<f64>,
    /// `lm` only: seasons the forecast's seasonal-lag input averages, as the season's shape at
    /// the last season's level (default 1: the last season's value, as the model was trained).
    lag_seasons: Option<CountOrWord>,
    /// `lm` only: narrows each forecast's spread around its median by the factor that best
    /// forecasts the series' own last `horizon` values (`lm::calibrate`; default true).
    calibrate: Option<bool>,
    /// `lm` only: product text to condition on, for a model fine-tuned with text (one with a
    /// tokenizer); other models forecast without it.
    #[serde(default)]
    text: Option<TextConfig>,
    /// `lm` only: the input holding planned covariates for the horizon (series keys, the time
    /// column, and the model's covariate columns: promotions, prices). A model with covariates
    /// reads their history from the demand input; without a plan the horizon reads none.
    future: Option<String>,
    /// `lm` only: the demand input's columns a model pretrained with covariate slots reads as
    /// known covariates, zero-shot (a fine-tuned model reads the ones it learned without this);
    /// `calendar.weekend`, `calendar.days`, … are features of the date (`lm::calendar`).
    #[serde(default)]
    covariates: Vec<String>,
}

fn default_paths() -> i64 {
    20
}
fn default_temperature() -> f64 {
    1.0
}

/// What the stage runs: a statistical method, the language model, or an ensemble of them.
#[derive(Debug, Clone)]
enum StageMethod {
    Stat(Method),
    Lm(LmMethod),
    /// [`ensemble`] over the members, in the config's order; `lm` is the model an `Lm` member
    /// reads.
    Ensemble {
        members: Vec<Member>,
        lm: Option<LmMethod>,
    },
}

/// The language model and how it forecasts.
#[derive(Debug, Clone)]
struct LmMethod {
    model: LmModel,
    opts: LmOptions,
}

/// One member of an ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Stat(Method),
    Lm,
}

/// Where the language model comes from: known when planning, or an input table shaped like a
/// `train` stage's output, read when the stage runs.
#[derive(Debug, Clone)]
enum LmModel {
    Known(Source),
    Input(String),
}

impl LmModel {
    fn load(&self) -> Result<Checkpoint> {
        match self {
            LmModel::Known(source) => source.load(),
            LmModel::Input(name) => bail!("the model in input `{name}` was not read"),
        }
    }
}

impl StageMethod {
    fn name(&self) -> &'static str {
        match self {
            StageMethod::Stat(m) => m.as_str(),
            StageMethod::Lm(_) => "lm",
            StageMethod::Ensemble { .. } => "ensemble",
        }
    }

    /// The language model this method reads, if any.
    fn lm(&self) -> Option<&LmMethod> {
        match self {
            StageMethod::Lm(lm) | StageMethod::Ensemble { lm: Some(lm), .. } => Some(lm),
            StageMethod::Stat(_) | StageMethod::Ensemble { lm: None, .. } => None,
        }
    }

    fn lm_mut(&mut self) -> Option<&mut LmMethod> {
        match self {
            StageMethod::Lm(lm) | StageMethod::Ensemble { lm: Some(lm), .. } => Some(lm),
            StageMethod::Stat(_) | StageMethod::Ensemble { lm: None, .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct ForecastTask {
    stage: String,
    input: String,
    cfg: ForecastConfig,
    method: StageMethod,
    pos: BTreeMap<&'static str, Pos>,
    /// A second output holds the sample paths (keys…, time, step, path, value).
    paths: bool,
}

/// `method: lm`: its sampling options, and a model folder that holds a readable config and
/// weights and allows the horizon (or `model_input` naming an input, whose model is checked when
/// the stage runs).
fn lm_method(decl: &StageDecl<'_>, cfg: &ForecastConfig) -> Result<LmMethod, Diagnostics> {
    let opts = lm_options(decl, cfg)?;
    Ok(LmMethod { model: lm_model(decl, cfg)?, opts })
}

/// The stage's `paths`, `contexts`, `trend`, … as the LM's options, each checked.
fn lm_options(decl: &StageDecl<'_>, cfg: &ForecastConfig) -> Result<LmOptions, Diagnostics> {
    if cfg.paths < 1 || cfg.temperature <= 0.0 || cfg.top_k < 0 {
        return Err(decl.error(decl.config.pos("paths"), "`paths` must be ≥ 1, `temperature` > 0 and `top_k` ≥ 0").into());
    }
    let d = LmOptions::default();
    let max_context = cfg.context.unwrap_or(d.max_context).max(1);
    let max_text = cfg.text.as_ref().map_or(d.max_text, |t| t.max_tokens);
    let contexts = cfg.contexts.unwrap_or(d.contexts.min(cfg.paths as usize));
    if contexts < 1 || contexts as i64 > cfg.paths {
        return Err(decl
            .error(decl.config.pos("contexts"), "`contexts` must be ≥ 1 and at most `paths` (each length draws its own paths)")
            .into());
    }
    let detrend = cfg.detrend.unwrap_or(d.detrend);
    let lag_seasons = match &cfg.lag_seasons {
        None => d.lag_seasons,
        Some(given) => LagSeasons::parse(&given.text()).ok_or_else(|| {
            decl.error(decl.config.pos("lag_seasons"), "`lag_seasons` must be `auto` or ≥ 1 (1 = the last season's value)")
        })?,
    };
    if !(detrend >= 0.0 && detrend.is_finite()) {
        return Err(decl.error(decl.config.pos("detrend"), "`detrend` must be a share ≥ 0 (0 = never take a line out)").into());
    }
    let trend = match cfg.trend.as_deref() {
        None => d.trend,
        Some(name) => crate::lm::line::Trend::parse(name).ok_or_else(|| {
            decl.error(
                decl.config.pos("trend"),
                format!("`trend` is `{name}`; it must be one of {}", crate::lm::line::Trend::NAMES.join(", ")),
            )
        })?,
    };
    let drift = cfg.drift.unwrap_or(d.drift);
    if !(drift >= 0.0 && drift.is_finite()) {
        return Err(decl.error(decl.config.pos("drift"), "`drift` must be a number of standard errors ≥ 0 (0 = never)").into());
    }
    Ok(LmOptions {
        detrend,
        trend,
        drift,
        lag_seasons,
        calibrate: cfg.calibrate.unwrap_or(d.calibrate),
        paths: cfg.paths,
        temperature: cfg.temperature,
        top_k: cfg.top_k,
        seed: cfg.seed,
        max_context,
        max_text,
        contexts,
        ..d
    })
}

/// `model:` (a folder, checked now) or `model_input:` (an input of the stage).
fn lm_model(decl: &StageDecl<'_>, cfg: &ForecastConfig) -> Result<LmModel, Diagnostics> {
    let model = match (&cfg.model, &cfg.model_input) {
        (Some(_), Some(_)) => return Err(decl.error(decl.config.pos("model_input"), "give `model` or `model_input`, not both").into()),
        (None, Some(name)) if decl.inputs.contains(name) => return Ok(LmModel::Input(name.clone())),
        (None, Some(name)) => {
            let msg =
                format!("`model_input: {name}` must name one of the stage's inputs (the demand and the model), got {:?}", decl.inputs);
            return Err(decl.error(decl.config.pos("model_input"), msg).into());
        }
        (Some(model), None) => model,
        (None, None) => {
            let msg = "`method: lm` needs `model:` (a folder made by `restock pretrain`) or `model_input:` (a `train` stage's output)";
            return Err(decl.error(decl.config.pos("method"), msg).into());
        }
    };
    let dir = decl.pipeline_dir.join(model);
    let config = crate::lm::model::load_config(&dir.join(crate::lm::checkpoint::CONFIG))
        .map_err(|e| decl.error(decl.config.pos("model"), format!("{e:#}")))?;
    let weights = dir.join(crate::lm::checkpoint::WEIGHTS);
    if !weights.is_file() {
        return Err(decl
            .error(decl.config.pos("model"), format!("{}: no such checkpoint (train one with `restock pretrain`)", weights.display()))
            .into());
    }
    let max = (config.max_len - 2).max(0);
    if cfg.horizon as i64 > max {
        return Err(decl
            .error(
                decl.config.pos("horizon"),
                format!("horizon {} is longer than the model allows ({max} for max_len {})", cfg.horizon, config.max_len),
            )
            .into());
    }
    Ok(LmModel::Known(Source::Folder(dir)))
}

/// `method` (and `members`) → what to run, or a diagnostic naming the bad name.
fn method(decl: &StageDecl<'_>, cfg: &ForecastConfig) -> Result<StageMethod, Diagnostics> {
    let parse = |name: &str, at: &str| -> Result<Member, Diagnostics> {
        match name {
            "lm" => Ok(Member::Lm),
            _ => Method::parse(name)
                .map(Member::Stat)
                .ok_or_else(|| decl.error(decl.config.pos(at), unknown_method(name)).help_opt(did_you_mean(name, method_names())).into()),
        }
    };
    let members: Vec<Member> = match cfg.method.as_str() {
        "ensemble" if cfg.members.is_empty() => {
            // The model joins the default members where the stage names one.
            let lm = (cfg.model.is_some() || cfg.model_input.is_some()).then_some(Member::Lm);
            ENSEMBLE_MEMBERS.into_iter().map(Member::Stat).chain(lm).collect()
        }
        "ensemble" => {
            let each = cfg.members.iter().enumerate().map(|(i, m)| match m.as_str() {
                "ensemble" => Err(decl.error(decl.config.pos(&format!("members/{i}")), "an ensemble cannot be its own member").into()),
                _ => parse(m, &format!("members/{i}")),
            });
            each.collect::<Result<_, Diagnostics>>()?
        }
        _ if !cfg.members.is_empty() => {
            return Err(decl.error(decl.config.pos("members"), "`members` is only for `method: ensemble`").into());
        }
        name => match parse(name, "method")? {
            Member::Lm => return Ok(StageMethod::Lm(lm_method(decl, cfg)?)),
            Member::Stat(m) => {
                no_lm_keys(decl, cfg)?;
                return Ok(StageMethod::Stat(m));
            }
        },
    };
    let lm = match members.contains(&Member::Lm) {
        true => Some(lm_method(decl, cfg)?),
        false => {
            no_lm_keys(decl, cfg)?;
            None
        }
    };
    Ok(StageMethod::Ensemble { members, lm })
}

/// Keys only the language model reads are refused where no model forecasts.
fn no_lm_keys(decl: &StageDecl<'_>, cfg: &ForecastConfig) -> Result<(), Diagnostics> {
    let lm_only = [
        ("model", cfg.model.is_some()),
        ("model_input", cfg.model_input.is_some()),
        ("text", cfg.text.is_some()),
        ("future", cfg.future.is_some()),
        ("covariates", !cfg.covariates.is_empty()),
    ];
    match lm_only.iter().find(|(_, given)| *given) {
        Some((at, _)) => {
            let msg = format!("`{at}` is only for `method: lm` (or an ensemble with `lm` among its members)");
            Err(decl.error(decl.config.pos(at), msg).into())
        }
        None => Ok(()),
    }
}

impl StageKind for ForecastKind {
    fn name(&self) -> &'static str {
        "forecast"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: ForecastConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        if decl.outputs.len() != 2 {
            decl.expect_outputs("forecast", 1)?;
        }
        let mut diags = Diagnostics::default();
        if decl.outputs.len() == 2 && cfg.method != "lm" {
            diags.push(decl.error(
                decl.pos.clone(),
                "a second output (sample paths) needs `method: lm`; for statistical methods the `policy` stage draws paths from the quantiles",
            ));
        }
        let extra: Vec<&String> =
            cfg.model_input.iter().chain(cfg.text.as_ref().map(TextConfig::inputs).unwrap_or_default()).chain(&cfg.future).collect();
        if let Some(f) = cfg.future.as_ref().filter(|f| !decl.inputs.contains(f)) {
            let msg = format!("`future: {f}` is not one of the stage's inputs ({})", decl.inputs.join(", "));
            diags.push(decl.error(decl.config.pos("future"), msg).help_opt(did_you_mean(f, decl.inputs.iter().map(String::as_str))));
        }
        if let Err(d) = decl.expect_inputs("forecast", 1 + extra.len()) {
            diags.push(d);
        }
        if let Some(Err(d)) = cfg.text.as_ref().map(|t| t.check(decl, false)) {
            diags.0.extend(d.0);
        }
        if cfg.horizon == 0 || cfg.horizon > 10_000 {
            diags.push(decl.error(decl.config.pos("horizon"), "`horizon` must be between 1 and 10000"));
        }
        if cfg.season_length == Some(0) {
            diags.push(decl.error(decl.config.pos("season_length"), "`season_length` must be at least 1"));
        }
        if cfg.series.is_empty() {
            diags.push(decl.error(decl.config.pos("series"), "`series` needs at least one key column"));
        }
        for (i, q) in cfg.quantiles.iter().enumerate() {
            if !(*q > 0.0 && *q < 1.0) {
                diags.push(
                    decl.error(decl.config.pos(&format!("quantiles/{i}")), format!("quantile level {q} is not strictly between 0 and 1")),
                );
            }
        }
        diags.into_result(())?;
        let method = method(decl, &cfg)?;
        let pos = ["series", "time", "target", "model_input", "text", "future", "covariates"]
            .into_iter()
            .map(|k| (k, decl.config.pos(k)))
            .collect();
        let paths = decl.outputs.len() == 2;
        let input = decl.inputs.iter().find(|i| !extra.contains(i)).expect("one input besides the model and text").clone();
        Ok(Arc::new(ForecastTask { stage: decl.id.into(), input, cfg, method, pos, paths }))
    }
}

impl ForecastTask {
    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, Diagnostics> {
        let mut diags = Diagnostics::default();
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let mut lookup = |col: &str, which: &'static str| -> Option<Field> {
            match input.field_with_name(col) {
                Ok(f) => Some(f.clone()),
                Err(_) => {
                    diags.push(
                        Diagnostic::new(
                            self.pos[which].clone(),
                            format!("column `{col}` not in input `{}` (columns: {})", self.input, names.join(", ")),
                        )
                        .stage(&self.stage)
                        .help_opt(did_you_mean(col, names.iter().copied())),
                    );
                    None
                }
            }
        };
        let series: Vec<Option<Field>> = self.cfg.series.iter().map(|c| lookup(c, "series")).collect();
        let time = lookup(&self.cfg.time, "time");
        let target = lookup(&self.cfg.target, "target");
        if let Some(t) = &time {
            if t.data_type() != &DataType::Date32 {
                diags.push(
                    Diagnostic::new(self.pos["time"].clone(), format!("time column `{}` is {}, expected DATE", t.name(), t.data_type()))
                        .stage(&self.stage),
                );
            }
        }
        if let Some(t) = &target {
            if !t.data_type().is_numeric() {
                diags.push(
                    Diagnostic::new(
                        self.pos["target"].clone(),
                        format!("target column `{}` is {}, expected a number", t.name(), t.data_type()),
                    )
                    .stage(&self.stage),
                );
            }
        }
        diags.into_result(())?;
        let mut fields: Vec<Field> = series.into_iter().flatten().collect();
        fields.push(Field::new(&self.cfg.time, DataType::Date32, false));
        fields.push(Field::new("step", DataType::Int32, false));
        fields.push(Field::new("forecast", DataType::Float64, false));
        for q in &self.cfg.quantiles {
            fields.push(Field::new(quantile_column(*q), DataType::Float64, false));
        }
        fields.push(Field::new("model", DataType::Utf8, false));
        Ok(Arc::new(Schema::new(fields)))
    }
}

#[async_trait]
impl StageTask for ForecastTask {
    fn fingerprint(&self) -> Option<String> {
        match self.method.lm() {
            Some(LmMethod { model: LmModel::Known(Source::Folder(dir)), .. }) => Some(crate::lm::checkpoint::version_stamp(dir)),
            _ => None,
        }
    }

    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        if let Some(LmMethod { model: LmModel::Input(name), .. }) = self.method.lm() {
            let model = inputs.get(name).expect("planner passes every declared input");
            if model.field_with_name("weights").is_err() || model.field_with_name("config_yaml").is_err() {
                let msg = format!("`model_input: {name}` has no `weights` and `config_yaml` columns: it is not a `train` stage's output");
                return Err(Diagnostic::new(self.pos["model_input"].clone(), msg).stage(&self.stage).into());
            }
        }
        if let Some(text) = &self.cfg.text {
            text.plan(inputs, &self.cfg.series, &self.pos["text"], &self.stage)?;
        }
        if let Some(future) = &self.cfg.future {
            let schema = inputs.get(future).expect("planner passes every declared input");
            let has = |c: &String| schema.field_with_name(c).is_ok();
            if !has(&self.cfg.time) || !self.cfg.series.iter().any(has) {
                let (t, keys) = (&self.cfg.time, self.cfg.series.join(", "));
                let msg = format!("the `future` input `{future}` needs `{t}` and at least one series key column ({keys})");
                return Err(Diagnostic::new(self.pos["future"].clone(), msg).stage(&self.stage).into());
            }
        }
        let schema = inputs.get(&self.input).expect("planner passes every declared input");
        super::covariates::kinds(schema, &self.cfg.covariates, &self.input)
            .map_err(|msg| Diagnostic::new(self.pos["covariates"].clone(), msg).stage(&self.stage))?;
        let out = self.output_schema(schema)?;
        Ok(if self.paths { vec![out.clone(), paths_schema(&out, self.cfg.series.len())] } else { vec![out] })
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let input_schema = cx.ctx.table_provider(self.input.as_str()).await?.schema();
        let out_schema = self.output_schema(&input_schema).map_err(|d| anyhow::anyhow!("{d}"))?;
        let mut method = self.method.clone();
        if let Some(lm) = method.lm_mut()
            && let LmModel::Input(name) = &lm.model
        {
            lm.model = read_model(cx, name).await?;
        }
        let covariates = self.covariates(cx, &input_schema, &method).await?;
        let names = covariates.as_ref().map_or(&[][..], |c| &c.names[..]);
        let all = long_history(cx, &self.input, &self.cfg.series, &self.cfg.time, &self.cfg.target, names).await?;
        let rows_in = all.num_rows() as u64;
        let texts = match &self.cfg.text {
            Some(t) => Some(series_texts(cx, &self.input, &self.cfg.series, &self.cfg.time, t).await?),
            None => None,
        };
        let (cfg, want_paths) = (self.cfg.clone(), self.paths);
        let job = move |cancel: &_, progress: &_| {
            let data = History { all: &all, texts: texts.as_deref(), covariates: covariates.as_ref() };
            forecast_all(&data, &cfg, &method, out_schema, want_paths, &Progress { cancel, progress })
        };
        let Made { batch, paths, series: n_series, warnings, kept } = cx.blocking(job).await?;
        let mut written = cx.write_output(0, cx.ctx.read_batch(batch)?).await?;
        if let Some(paths) = paths {
            let w = cx.write_output(1, cx.ctx.read_batch(paths)?).await?;
            (written.rows, written.bytes) = (written.rows + w.rows, written.bytes + w.bytes);
        }
        Ok(StageReport {
            rows_out: written.rows,
            bytes_out: written.bytes,
            details: Some(serde_json::json!({
                "series": n_series, "history_rows": rows_in, "method": self.method.name(), "horizon": self.cfg.horizon, "kept": kept,
            })),
            warnings: warnings.into_iter().map(|w| format!("{}: {w}", self.stage)).collect(),
        })
    }
}

/// The model in input `name` (a `train` stage's output: one row with `config_yaml` and `weights`).
async fn read_model(cx: &StageCx, name: &str) -> Result<LmModel> {
    let has_tokenizer = cx.ctx.table_provider(name).await?.schema().field_with_name("tokenizer_json").is_ok();
    let tokenizer = if has_tokenizer { "CAST(tokenizer_json AS VARCHAR)" } else { "CAST(NULL AS VARCHAR)" };
    let b = cx.sql_batch(&format!("SELECT config_yaml, weights, {tokenizer} FROM {} LIMIT 1", super::quote_ident(name))).await?;
    if b.num_rows() == 0 {
        bail!("model input `{name}` has no row");
    }
    let config = b.column(0).as_string_opt::<i32>().context("`config_yaml` is not text")?.value(0).to_string();
    let weights = b.column(1).as_binary_opt::<i32>().context("`weights` is not binary")?.value(0).to_vec();
    let tk = b.column(2).as_string::<i32>();
    let tokenizer = (!tk.is_null(0)).then(|| tk.value(0).to_string());
    Ok(LmModel::Known(Source::Row { name: format!("input {name}"), config, weights: Arc::new(weights), tokenizer }))
}

/// A model's known covariates as this stage reads them: names, whether each is a flag, the
/// `future:` plan, and what to warn about.
struct Covariates {
    names: Vec<String>,
    sources: Vec<super::covariates::Source>,
    /// The plan, and the positions among the series keys of the key columns it has.
    future: Option<(RecordBatch, Vec<usize>)>,
    warnings: Vec<String>,
}

/// What `forecast_all` forecasts from: a [`long_history`] batch (its covariate columns last),
/// each series' text, the covariates.
struct History<'a> {
    all: &'a RecordBatch,
    texts: Option<&'a [Option<String>]>,
    covariates: Option<&'a Covariates>,
}

impl ForecastTask {
    /// The covariates the stage's model reads (None for other methods and models without).
    async fn covariates(&self, cx: &StageCx, demand: &Schema, method: &StageMethod) -> Result<Option<Covariates>> {
        let Some(LmMethod { model: LmModel::Known(source), .. }) = method.lm() else { return Ok(None) };
        let learned = source.config()?.covariates;
        let named = &self.cfg.covariates;
        if !learned.is_empty() && !named.is_empty() && learned != *named {
            bail!("the model {} reads the covariates [{}], not `covariates: [{}]`", source.name(), learned.join(", "), named.join(", "));
        }
        let names = if learned.is_empty() { named.clone() } else { learned };
        if names.is_empty() {
            let warnings = self.cfg.future.iter().map(|f| format!("the model reads no covariates, so `future: {f}` is unused")).collect();
            return Ok(Some(Covariates { names, sources: vec![], future: None, warnings }));
        }
        let sources = super::covariates::kinds(demand, &names, &self.input)
            .map_err(|e| anyhow!("the model {} reads known covariates: {e}", source.name()))?;
        let columns = super::covariates::column_names(&names);
        let (future, warnings) = match &self.cfg.future {
            Some(f) if columns.is_empty() => {
                (None, vec![format!("the model reads only calendar covariates, computed from the dates, so `future: {f}` is unused")])
            }
            Some(f) => (Some(super::covariates::read_future(cx, f, &self.cfg.series, &self.cfg.time, &columns).await?), vec![]),
            None if columns.is_empty() => (None, vec![]),
            None => {
                let msg =
                    format!("the model reads the covariates [{}]; with no `future:` input the horizon reads none", columns.join(", "));
                (None, vec![msg])
            }
        };
        Ok(Some(Covariates { names, sources, future, warnings }))
    }
}

/// Each series' covariate features over its history then horizon (a step without a planned
/// row reads none; calendar features are computed from the step's date). Empty when the model
/// reads none.
fn horizon_covariates(h: &History, bounds: &[(usize, usize)], cfg: &ForecastConfig, last: &[NaiveDate]) -> Vec<Vec<f32>> {
    let Some(c) = h.covariates.filter(|c| !c.names.is_empty()) else { return vec![vec![]; bounds.len()] };
    let n_keys = cfg.series.len();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let dates: Vec<Vec<i32>> =
        last.iter().map(|&l| (1..=cfg.horizon).map(|s| (cfg.freq.step(l, s) - epoch).num_days() as i32).collect()).collect();
    let n = super::covariates::columns(&c.sources);
    let planned = match &c.future {
        Some((f, present)) => {
            let keys: Vec<String> = bounds.iter().map(|&(s, _)| super::covariates::key_of(h.all, present, s)).collect();
            super::covariates::horizon_values(f, present.len(), &keys, &dates, n)
        }
        None => dates.iter().map(|d| vec![vec![f64::NAN; n]; d.len()]).collect(),
    };
    let horizon = super::covariates::Horizon { dates: &dates, planned: &planned };
    super::covariates::series_features(h.all, bounds, n_keys + 2, &c.sources, Some(&horizon))
}

/// Forecast every series of `h.all` (keys…, DATE, DOUBLE, covariates…, sorted by keys then
/// date): the CPU-bound part, run on a blocking thread.
fn forecast_all(
    h: &History,
    cfg: &ForecastConfig,
    method: &StageMethod,
    out_schema: SchemaRef,
    want_paths: bool,
    p: &Progress,
) -> Result<Made> {
    let Dense { batch: dense, bounds, filled, .. } = densify(h.all, &cfg.series, Some(cfg.freq.grid()))?;
    let h = &History { all: &dense, ..*h };
    let (all, texts) = (h.all, h.texts);
    let n_keys = cfg.series.len();
    let key_cols: Vec<ArrayRef> = all.columns()[..n_keys].to_vec();
    let dates = all.column(n_keys).as_any().downcast_ref::<Date32Array>().expect("time column is DATE (checked)");
    let histories = histories(all, n_keys, &bounds);
    if let Some(k) = histories.iter().position(|h| !h.iter().any(|v| v.is_finite())) {
        let key: Vec<String> =
            key_cols.iter().map(|c| datafusion::arrow::util::display::array_value_to_string(c, bounds[k].0).unwrap_or_default()).collect();
        bail!("series ({}) = ({}) has no observed `{}` value: nothing to forecast from", cfg.series.join(", "), key.join(", "), cfg.target);
    }
    let req = Request {
        horizon: cfg.horizon as usize,
        season: cfg.season_length.unwrap_or(cfg.freq.season()),
        levels: &cfg.quantiles,
        nonnegative: cfg.nonnegative,
    };
    if texts.is_some_and(|t| t.len() != histories.len()) {
        bail!("matching text to series: the series and their text rows differ in number (null series keys?)");
    }
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let last: Vec<NaiveDate> = bounds.iter().map(|&(_, end)| epoch + chrono::Duration::days(dates.value(end - 1) as i64)).collect();
    let covariates = horizon_covariates(h, &bounds, cfg, &last);
    let mut warnings: Vec<String> = h.covariates.iter().flat_map(|c| c.warnings.iter().cloned()).collect();
    warnings.extend(filled_warning(filled, "`freq`"));
    let names = h.covariates.map_or(&[][..], |c| &c.names[..]);
    let series = Series { histories: &histories, texts, covariates: &covariates, covariate_names: names };
    let Forecasts { each: forecasts, paths, warnings: more, kept } = forecasts(method, &series, &req, want_paths, p)?;
    warnings.extend(more);
    let mut out = Rows { qs: vec![vec![]; cfg.quantiles.len()], ..Rows::default() };
    for ((&(start, _), f), &last) in bounds.iter().zip(&forecasts).zip(&last) {
        for h in 0..req.horizon {
            out.take_idx.push(start as u32);
            out.dates.push((cfg.freq.step(last, h as u32 + 1) - epoch).num_days() as i32);
            out.steps.push(h as i32 + 1);
            out.point.push(f.point[h]);
            for (k, qv) in f.quantiles.iter().enumerate() {
                out.qs[k].push(qv[h]);
            }
        }
    }
    let paths = match paths {
        Some(p) => Some(paths_batch(&key_cols, &out, &p, paths_schema(&out_schema, n_keys))?),
        None => None,
    };
    Ok(Made { batch: out.into_batch(&key_cols, out_schema, method.name())?, paths, series: bounds.len() as u64, warnings, kept })
}

/// What [`forecast_all`] made: the output batch, the sample paths' batch when asked (method
/// `lm`), the number of series, the warnings, and what an ensemble kept.
struct Made {
    batch: RecordBatch,
    paths: Option<RecordBatch>,
    series: u64,
    warnings: Vec<String>,
    kept: Option<&'static str>,
}

/// The sample-paths output: keys…, time, step, path, value.
fn paths_schema(forecasts: &Schema, n_keys: usize) -> SchemaRef {
    let mut fields: Vec<Field> = forecasts.fields().iter().take(n_keys + 2).map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("path", DataType::Int32, false));
    fields.push(Field::new("value", DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

/// One row per (series, step, path), from the forecast rows (one per series and step, in order).
fn paths_batch(key_cols: &[ArrayRef], rows: &Rows, paths: &[Vec<Vec<f64>>], schema: SchemaRef) -> Result<RecordBatch> {
    let (mut take_idx, mut dates, mut steps, mut path_no, mut values) = (vec![], vec![], vec![], vec![], vec![]);
    let horizon = rows.steps.len() / paths.len().max(1);
    for (s, series) in paths.iter().enumerate() {
        for h in 0..horizon {
            let r = s * horizon + h;
            for (p, path) in series.iter().enumerate() {
                take_idx.push(rows.take_idx[r]);
                dates.push(rows.dates[r]);
                steps.push(rows.steps[r]);
                path_no.push(p as i32);
                values.push(path[h]);
            }
        }
    }
    let idx = UInt32Array::from(take_idx);
    let mut columns: Vec<ArrayRef> = vec![];
    for (i, col) in key_cols.iter().enumerate() {
        columns.push(cast(&take(col.as_ref(), &idx, None)?, schema.field(i).data_type())?);
    }
    columns.push(Arc::new(Date32Array::from(dates)));
    columns.push(Arc::new(Int32Array::from(steps)));
    columns.push(Arc::new(Int32Array::from(path_no)));
    columns.push(Arc::new(Float64Array::from(values)));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Keys…, DATE, the target as DOUBLE, then the `covariates` columns as DOUBLE, sorted by keys
/// then date: a long table read for a model.
pub(crate) async fn long_history(
    cx: &StageCx,
    input: &str,
    series: &[String],
    time: &str,
    target: &str,
    covariates: &[String],
) -> Result<RecordBatch> {
    let q = super::quote_ident;
    let keys = series.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let (t, y, extra) = (q(time), q(target), super::covariates::select_list(covariates));
    let sql = format!("SELECT {keys}, {t}, CAST({y} AS DOUBLE) AS y{extra} FROM {} WHERE {t} IS NOT NULL ORDER BY {keys}, {t}", q(input));
    let df = cx.ctx.sql(&sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let all = concat_batches(&schema, &df.collect().await?)?;
    if all.num_rows() == 0 {
        bail!("input `{input}` has no rows");
    }
    Ok(all)
}

/// A [`long_history`] batch with a row — target and covariates null, so read as missing — for
/// each date a series skips on `step` between its first row and its last (None: the batch's
/// own median step, [`grid::Step::of`]), its series' row ranges (as [`series_bounds`] would
/// find them, without reading the keys again) and how many rows it put in. Two rows of a series at one
/// date are refused, naming the series (`keys`) and the date, and so are rows a longer `freq`
/// apart than `step` (weekly rows under `freq: day` would be read as six missing days in seven).
pub(crate) fn densify(all: &RecordBatch, keys: &[String], step: Option<grid::Step>) -> Result<Dense> {
    let n_keys = keys.len();
    let bounds = series_bounds(all, n_keys)?;
    let dates = all.column(n_keys).as_any().downcast_ref::<Date32Array>().context("time column is DATE")?;
    let times: Vec<Vec<i64>> = bounds.iter().map(|&(s, e)| (s..e).map(|i| dates.value(i) as i64 * DAY).collect()).collect();
    for (ts, &(s, _)) in times.iter().zip(&bounds) {
        if let Some(k) = ts.windows(2).position(|w| w[0] == w[1]) {
            let key: Vec<String> = all.columns()[..n_keys]
                .iter()
                .map(|c| datafusion::arrow::util::display::array_value_to_string(c, s).unwrap_or_default())
                .collect();
            let day = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + chrono::Duration::days(ts[k] / DAY);
            bail!("series ({}) = ({}) has two rows at {day}: one row per series and date", keys.join(", "), key.join(", "));
        }
    }
    let own = grid::Step::of(times.iter().map(|t| &t[..]), true);
    let another_freq = |s: grid::Step| s == Freq::Week.grid() || matches!(s, grid::Step::Months(_));
    if let (Some(given), Some(own)) = (step, own)
        && another_freq(own)
        && 2 * own.span() > 3 * given.span()
    {
        bail!(
            "the input's rows are {} apart (the median), but `freq` says {}: set `freq` to the rows' step (day, week, month)",
            own.describe(),
            given.describe()
        );
    }
    let Some(step) = step.or(own) else { return Ok(Dense { batch: all.clone(), bounds, filled: Filled::default(), step: None }) };
    let (mut rows, mut keep, mut days, mut filled) = (vec![], vec![], vec![], Filled::default());
    let mut dense_bounds = Vec::with_capacity(bounds.len());
    for (ts, &(s, e)) in times.iter().zip(&bounds) {
        let start = rows.len();
        match step.fill(ts) {
            None => {
                rows.extend((s..e).map(|i| i as u32));
                keep.extend((s..e).map(|i| Some(i as u32)));
                days.extend((s..e).map(|i| dates.value(i)));
            }
            Some(full) => {
                (filled.times, filled.series) = (filled.times + full.len() - ts.len(), filled.series + 1);
                let mut at = (s..e).zip(ts).peekable();
                for t in full {
                    let row = at.next_if(|(_, r)| **r == t).map(|(i, _)| i as u32);
                    (rows.push(row.unwrap_or(s as u32)), keep.push(row), days.push((t / DAY) as i32));
                }
            }
        }
        dense_bounds.push((start, rows.len()));
    }
    if filled.times == 0 {
        return Ok(Dense { batch: all.clone(), bounds, filled, step: Some(step) });
    }
    let (rows, keep) = (UInt32Array::from(rows), UInt32Array::from(keep));
    let mut columns: Vec<ArrayRef> = all.columns()[..n_keys].iter().map(|c| take(c, &rows, None)).collect::<Result<_, _>>()?;
    columns.push(Arc::new(Date32Array::from(days)));
    for c in &all.columns()[n_keys + 1..] {
        columns.push(take(c, &keep, None)?);
    }
    let schema = all.schema();
    let fields: Vec<Field> =
        schema.fields().iter().enumerate().map(|(i, f)| f.as_ref().clone().with_nullable(f.is_nullable() || i > n_keys)).collect();
    Ok(Dense { batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?, bounds: dense_bounds, filled, step: Some(step) })
}

/// What [`densify`] gives: the batch with its skipped dates put in, each series' row range in
/// it, and how many rows it put in.
#[derive(Debug)]
pub(crate) struct Dense {
    pub batch: RecordBatch,
    pub bounds: Vec<(usize, usize)>,
    pub filled: Filled,
    /// The grid the rows were put on: the one given, else the rows' own (None: no series has two).
    pub step: Option<grid::Step>,
}

/// The warning for dates a [`densify`] put in.
pub(crate) fn filled_warning(filled: Filled, step: &str) -> Option<String> {
    (filled.times > 0).then(|| {
        format!(
            "{} missing dates in {} series read as missing values (each series on its {step} from its first row to its last; \
             write the rows to the input, as 0 or a value, to say otherwise)",
            filled.times, filled.series
        )
    })
}

/// Row ranges of each series in a [`long_history`] batch, and each series' values (NaN = null).
#[cfg(test)]
pub(crate) fn split_series(all: &RecordBatch, n_keys: usize) -> Result<(Vec<(usize, usize)>, Vec<Vec<f64>>)> {
    let bounds = series_bounds(all, n_keys)?;
    let histories = histories(all, n_keys, &bounds);
    Ok((bounds, histories))
}

/// Row ranges of each series in a [`long_history`] batch.
fn series_bounds(all: &RecordBatch, n_keys: usize) -> Result<Vec<(usize, usize)>> {
    let key_cols: Vec<ArrayRef> = all.columns()[..n_keys].to_vec();
    let converter = RowConverter::new(key_cols.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let key_rows = converter.convert_columns(&key_cols)?;
    let mut bounds: Vec<(usize, usize)> = vec![];
    for i in 0..all.num_rows() {
        match bounds.last_mut() {
            Some((start, end)) if key_rows.row(*start) == key_rows.row(i) => *end = i + 1,
            _ => bounds.push((i, i + 1)),
        }
    }
    Ok(bounds)
}

/// Each series' values (NaN = null) over its row range `bounds`.
pub(crate) fn histories(all: &RecordBatch, n_keys: usize, bounds: &[(usize, usize)]) -> Vec<Vec<f64>> {
    let values = all.column(n_keys + 1).as_any().downcast_ref::<Float64Array>().expect("target cast to DOUBLE");
    bounds.iter().map(|&(s, e)| (s..e).map(|i| if values.is_null(i) { f64::NAN } else { values.value(i) }).collect()).collect()
}

/// What [`forecasts`] made: one forecast per series, their sample paths when asked (`lm`),
/// warnings, and for an ensemble what it kept ([`ensemble::Pick`]: "median" or a member).
#[derive(Default)]
struct Forecasts {
    each: Vec<QuantileForecast>,
    paths: Option<Vec<Vec<Vec<f64>>>>,
    warnings: Vec<String>,
    kept: Option<&'static str>,
}

/// The series `forecasts` runs over: values, text, covariate features (history + horizon).
struct Series<'a> {
    histories: &'a [Vec<f64>],
    texts: Option<&'a [Option<String>]>,
    covariates: &'a [Vec<f32>],
    /// The covariates' names: the model's own, or those a model with slots is given.
    covariate_names: &'a [String],
}

/// How a forecast pass stops and shows itself.
struct Progress<'a> {
    cancel: &'a tokio_util::sync::CancellationToken,
    progress: &'a StageProgress,
}

/// One forecast per history (each has an observed value).
fn forecasts(method: &StageMethod, series: &Series, req: &Request, want_paths: bool, p: &Progress) -> Result<Forecasts> {
    match method {
        StageMethod::Stat(m) => Ok(Forecasts { each: stat_all(*m, series.histories, req, p)?, ..Forecasts::default() }),
        StageMethod::Lm(lm) => {
            let (both, _, warnings) = lm_all(lm, series, req, false, p)?;
            let (each, paths): (Vec<QuantileForecast>, Vec<Vec<Vec<f64>>>) = both.into_iter().unzip();
            Ok(Forecasts { each, paths: want_paths.then_some(paths), warnings, kept: None })
        }
        StageMethod::Ensemble { members, lm } => ensemble_all(members, lm.as_ref(), series, req, p),
    }
}

/// A statistical method over every history, checking cancellation and reporting series/s.
fn stat_all(m: Method, histories: &[Vec<f64>], req: &Request, p: &Progress) -> Result<Vec<QuantileForecast>> {
    use rayon::prelude::*;
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(histories.len());
    // Chunks across the cores, cancellation and progress between them.
    for chunk in histories.chunks(STAT_CHUNK) {
        if p.cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let done = out.len();
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        p.progress.set(format!("{}: {done}/{} series · {rate:.0}/s", m.as_str(), histories.len()));
        let part: Vec<Option<QuantileForecast>> = chunk.par_iter().map(|h| m.forecast(h, req).ok()).collect();
        for f in part {
            out.push(f.context("no observed value")?);
        }
    }
    Ok(out)
}

/// Series a statistical method forecasts across the cores between two checks for cancellation.
const STAT_CHUNK: usize = 256;

/// The language model over every series (`held`: and its held-out tails' forecasts, for an
/// ensemble), with its warnings.
fn lm_all(
    lm: &LmMethod,
    series: &Series,
    req: &Request,
    held: bool,
    p: &Progress,
) -> Result<(PathForecasts, Option<HeldOut>, Vec<String>)> {
    let histories = series.histories;
    let ck = lm.model.load()?;
    let ck = if series.covariate_names.is_empty() { ck } else { ck.with_covariates(series.covariate_names)? };
    let ck = ck.for_inference();
    let (ids, warnings) = crate::lm::forecast::text_ids(&ck, series.texts, histories.len())?;
    let inputs: Vec<Input> = (0..histories.len())
        .map(|i| Input { history: &histories[i], text: ids[i].as_deref(), covariates: &series.covariates[i] })
        .collect();
    let mut pass_started = (Pass::Calibrating, std::time::Instant::now());
    let on_batch = |d: crate::lm::forecast::Done| {
        if d.pass != pass_started.0 {
            pass_started = (d.pass, std::time::Instant::now());
        }
        let rate = d.done as f64 / pass_started.1.elapsed().as_secs_f64().max(1e-3);
        p.progress.set(match d.pass {
            Pass::Calibrating => format!("lm: choosing trend, lag and spread: {}/{} held-out forecasts · {rate:.0}/s", d.done, d.of),
            Pass::Forecasting => format!("lm: {}/{} series · {rate:.0}/s", d.done, d.of),
        });
        !p.cancel.is_cancelled()
    };
    let (both, held) = match held {
        true => crate::lm::forecast::forecast_held(&ck, &inputs, req, &lm.opts, on_batch)?,
        false => (crate::lm::forecast::forecast_paths(&ck, &inputs, req, &lm.opts, on_batch)?, None),
    };
    Ok((both, held, warnings))
}

/// Each distinct member over every series and over the held-out sample's tails, then
/// [`ensemble::combine`]: the members' median, or one member alone where the held-out tails
/// clearly say so.
fn ensemble_all(members: &[Member], lm: Option<&LmMethod>, series: &Series, req: &Request, p: &Progress) -> Result<Forecasts> {
    let (histories, h) = (series.histories, req.horizon);
    let sample = holdout::sample(&histories.iter().map(Vec::len).collect::<Vec<_>>(), h);
    let sampled: Vec<&[f64]> = sample.iter().map(|&i| histories[i].as_slice()).collect();
    let held_req = Request { levels: &LEVELS, ..*req };
    let mut warnings = vec![];
    let mut ran: Vec<(Member, ensemble::Member)> = vec![];
    for &m in members {
        if ran.iter().any(|(r, _)| *r == m) {
            continue;
        }
        let one = match m {
            Member::Stat(method) => {
                let all = stat_all(method, histories, req, p)?.into_iter().map(Some).collect();
                ensemble::Member { all, held: holdout::forecast_tails(method, &sampled, &held_req) }
            }
            Member::Lm => {
                let (both, held, w) = lm_all(lm.context("an `lm` member needs the model")?, series, req, true, p)?;
                warnings.extend(w);
                let held = held.map_or(vec![], |held| held.for_sample(&sample));
                ensemble::Member { all: both.into_iter().map(|(f, _)| Some(f)).collect(), held }
            }
        };
        ran.push((m, one));
    }
    let refs: Vec<&ensemble::Member> =
        members.iter().map(|m| ran.iter().find(|(r, _)| r == m).map(|(_, one)| one).expect("every member ran")).collect();
    let (pick, each) = ensemble::combine(&refs, &holdout::tails(&sampled, h), &LEVELS);
    let kept = pick.kept(|k| match members[k] {
        Member::Stat(m) => m.as_str(),
        Member::Lm => "lm",
    });
    tracing::info!(kept, held_out = sample.len(), "ensemble: chosen on the held-out tails");
    let each = each.into_iter().collect::<Option<Vec<_>>>().context("an ensemble member left a series without a forecast")?;
    Ok(Forecasts { each, paths: None, warnings, kept: Some(kept) })
}

/// Output rows as they accumulate, one entry per (series, step).
#[derive(Default)]
struct Rows {
    take_idx: Vec<u32>,
    dates: Vec<i32>,
    steps: Vec<i32>,
    point: Vec<f64>,
    qs: Vec<Vec<f64>>,
}

impl Rows {
    fn into_batch(self, key_cols: &[ArrayRef], schema: SchemaRef, model: &str) -> Result<RecordBatch> {
        let idx = UInt32Array::from(self.take_idx);
        let mut columns: Vec<ArrayRef> = vec![];
        for (i, col) in key_cols.iter().enumerate() {
            let taken = take(col.as_ref(), &idx, None)?;
            columns.push(cast(&taken, schema.field(i).data_type())?);
        }
        let len = idx.len();
        columns.push(Arc::new(Date32Array::from(self.dates)));
        columns.push(Arc::new(Int32Array::from(self.steps)));
        columns.push(Arc::new(Float64Array::from(self.point)));
        for q in self.qs {
            columns.push(Arc::new(Float64Array::from(q)));
        }
        columns.push(Arc::new(StringArray::from(vec![model; len])));
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[(&str, i32, Option<f64>)]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("sku", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef),
            ("date", Arc::new(Date32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())) as ArrayRef),
            ("y", Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())) as ArrayRef),
            ("promo", Arc::new(Float64Array::from(rows.iter().map(|r| r.2.map(|_| 1.0)).collect::<Vec<_>>())) as ArrayRef),
        ])
        .unwrap()
    }

    /// Days a series skips become rows with a null target and null covariates (keys and date
    /// filled in); a series with none is left as it is; a repeated date is refused by name.
    #[test]
    fn skipped_days_become_missing_rows_and_a_repeated_day_is_refused() {
        let keys = ["sku".to_string()];
        let all = batch(&[("a", 10, Some(1.0)), ("a", 11, Some(2.0)), ("a", 14, Some(5.0)), ("b", 10, Some(7.0)), ("b", 11, Some(8.0))]);
        let Dense { batch: dense, bounds: dense_bounds, filled, .. } = densify(&all, &keys, Some(Freq::Day.grid())).unwrap();
        assert_eq!(filled, Filled { times: 2, series: 1 });
        let (bounds, histories) = split_series(&dense, 1).unwrap();
        assert_eq!(bounds, vec![(0, 5), (5, 7)]);
        assert_eq!(dense_bounds, bounds, "the ranges densify gives are the batch's own");
        let shown: Vec<f64> = histories[0].iter().map(|v| if v.is_nan() { -1.0 } else { *v }).collect();
        assert_eq!(shown, [1.0, 2.0, -1.0, -1.0, 5.0]);
        assert_eq!(histories[1], [7.0, 8.0]);
        let dates = dense.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(dates.values().to_vec(), [10, 11, 12, 13, 14, 10, 11]);
        let sku = dense.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert!((0..5).all(|i| sku.value(i) == "a"), "filled rows keep their series' keys");
        assert!(dense.column(3).is_null(2) && dense.column(3).is_null(3) && !dense.column(3).is_null(4), "covariates null where filled");
        let warning = filled_warning(filled, "`freq`").unwrap();
        assert!(warning.starts_with("2 missing dates in 1 series read as missing values"), "{warning}");

        let weekly = densify(&batch(&[("a", 3, Some(1.0)), ("a", 10, Some(2.0))]), &keys, Some(Freq::Week.grid())).unwrap();
        let none = weekly.filled;
        assert_eq!((weekly.batch.num_rows(), none, filled_warning(none, ""), weekly.bounds), (2, Filled::default(), None, vec![(0, 2)]));
        let inferred = densify(&batch(&[("a", 0, Some(1.0)), ("a", 7, Some(2.0)), ("a", 21, Some(4.0))]), &keys, None).unwrap();
        assert_eq!(
            (inferred.batch.num_rows(), inferred.filled),
            (4, Filled { times: 1, series: 1 }),
            "the batch's own median step: a week"
        );

        let weeks = batch(&[("a", 0, Some(1.0)), ("a", 7, Some(2.0)), ("a", 14, Some(4.0))]);
        let err = densify(&weeks, &keys, Some(Freq::Day.grid())).unwrap_err().to_string();
        let sparse = batch(&[("a", 0, Some(1.0)), ("a", 3, Some(2.0)), ("a", 6, Some(4.0))]);
        assert_eq!(
            densify(&sparse, &keys, Some(Freq::Day.grid())).unwrap().filled,
            Filled { times: 4, series: 1 },
            "sparse daily rows: filled"
        );
        assert!(err.contains("rows are 7 days apart (the median), but `freq` says 1 day"), "{err}");

        let twice = batch(&[("a", 10, Some(1.0)), ("b", 10, Some(1.0)), ("b", 10, Some(2.0))]);
        let err = densify(&twice, &keys, None).unwrap_err().to_string();
        assert!(err.contains("series (sku) = (b) has two rows at 1970-01-11"), "{err}");
    }
}
