//! Forecasts from the language model: each series' recent history (and product text, when the
//! model reads text) becomes a context; N sample paths are decoded per series; the point and
//! the quantiles are those of the mixture of the paths' next-value distributions, step by step
//! (`sample`'s note). Batched over series.
use anyhow::{Result, bail};

use tch::Device;

use super::checkpoint::Checkpoint;
use super::model::Model;
use super::sample::{Context, SampleConfig, Summary, sample_summarised};
use super::tokens::{Encoded, decode, encode, text_prefix};
use crate::forecast::metrics::{LEVELS, WqlSums};
use crate::forecast::{QuantileForecast, Request};

#[derive(Debug, Clone, Copy)]
pub struct LmOptions {
    pub paths: i64,
    pub temperature: f64,
    pub top_k: i64,
    pub seed: i64,
    /// Series prefilled and decoded together (each with all its paths, which share its cached
    /// context); 0 = [`auto_batch`].
    pub batch: usize,
    /// Most product-text tokens put before the series.
    pub max_text: usize,
    /// Most recent values a series shows the model (also bounded by max_len − horizon):
    /// prefilling long daily histories is most of the cost. The default is the window `small`
    /// was pretrained on: longer contexts are positions it never saw.
    pub max_context: usize,
}

impl Default for LmOptions {
    fn default() -> Self {
        Self { paths: 20, temperature: 1.0, top_k: 0, seed: 0, batch: 0, max_text: 32, max_context: 256 }
    }
}

/// One series to forecast: its history (NaN = missing), optionally its text as token ids, and,
/// for a model with covariates, their features over history then horizon, row-major
/// [(history.len() + horizon) × n_covariates] (`tokens::covariate_features`; empty = unknown).
#[derive(Default)]
pub struct Input<'a> {
    pub history: &'a [f64],
    pub text: Option<&'a [i64]>,
    pub covariates: &'a [f32],
}

/// Series per batch: about 4,096 decoding rows (series × paths), so each decoding step is one
/// large matrix product rather than many small ones, and at most 32 k prefilled tokens, which
/// bounds the prefill's attention scores (64 series × 4 heads × 512² floats is 268 MB a layer).
pub fn auto_batch(paths: i64, context: usize) -> usize {
    (4096 / paths.max(1) as usize).clamp(1, 512).min((32_768 / context.max(1)).max(1))
}

/// The longest horizon the model allows (it must see at least one value of context).
pub fn max_horizon(ck: &Checkpoint) -> usize {
    (ck.model.config.max_len - 2).max(0) as usize
}

/// The token context of one series: text ids (shifted past the value vocabulary) + SEP, then the
/// most recent values that fit in `max_len - horizon`.
fn context(ck: &Checkpoint, input: &Input, req: &Request, o: &LmOptions) -> Context {
    let horizon = req.horizon;
    let cfg = &ck.model.config;
    let mut ids = text_prefix(input.text.unwrap_or_default(), o.max_text, cfg.text_vocab);
    let room = (cfg.max_len as usize).saturating_sub(horizon + ids.len()).min(o.max_context).max(1);
    let from = input.history.len().saturating_sub(room);
    let enc = encode(&input.history[from..], None);
    let n = cfg.n_covariates as usize;
    let covariates = if n > 0 && input.covariates.len() == (input.history.len() + horizon) * n {
        std::iter::repeat_n(0.0, ids.len() * n).chain(input.covariates[from * n..].iter().copied()).collect()
    } else {
        vec![]
    };
    ids.extend(enc.ids);
    Context { ids, scale: enc.scale, season: req.season, covariates }
}

/// One series' text ids (None: forecast without text).
pub type TextIds = Option<Vec<i64>>;

/// Each series' text (`texts[i]`, when given) as the model's text ids, and warnings: a model
/// without a tokenizer was never trained on text and forecasts without it; a series without
/// text is forecast without it.
pub fn text_ids(ck: &Checkpoint, texts: Option<&[Option<String>]>, n: usize) -> Result<(Vec<TextIds>, Vec<String>)> {
    let Some(texts) = texts else { return Ok((vec![None; n], vec![])) };
    if ck.tokenizer.is_none() {
        let msg = "the model has no tokenizer (it was never fine-tuned on text), so it forecasts without the text".to_string();
        return Ok((vec![None; n], vec![msg]));
    }
    let ids = texts.iter().map(|t| t.as_deref().map(|t| ck.text_ids(t)).transpose().map(Option::flatten)).collect::<Result<Vec<_>>>()?;
    let missing = ids.iter().filter(|i| i.is_none()).count();
    let warnings = if missing > 0 { vec![format!("{missing} of {n} series have no text; they are forecast without it")] } else { vec![] };
    Ok((ids, warnings))
}

/// Forecast every input; `on_batch(done)` after each batch may return false to stop (cancel).
pub fn forecast(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    on_batch: impl FnMut(usize) -> bool,
) -> Result<Vec<QuantileForecast>> {
    Ok(forecast_paths(ck, inputs, req, o, on_batch)?.into_iter().map(|(f, _)| f).collect())
}

/// [`forecast`], keeping each input's sample paths (`paths[path][step]`, clipped at zero when
/// the request is non-negative) beside its quantiles.
pub fn forecast_paths(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Vec<(QuantileForecast, Vec<Vec<f64>>)>> {
    if req.horizon > max_horizon(ck) {
        bail!("horizon {} is longer than the model allows ({} for max_len {})", req.horizon, max_horizon(ck), ck.model.config.max_len);
    }
    let sc = SampleConfig { paths: o.paths, horizon: req.horizon as i64, temperature: o.temperature, top_k: o.top_k, seed: o.seed };
    let mut out = Vec::with_capacity(inputs.len());
    let longest = (ck.model.config.max_len as usize).saturating_sub(req.horizon).min(o.max_context);
    let batch = if o.batch > 0 { o.batch } else { auto_batch(o.paths, longest) };
    let summary = Summary { levels: req.levels, nonnegative: req.nonnegative };
    for (b, chunk) in inputs.chunks(batch).enumerate() {
        let ctx: Vec<Context> = chunk.iter().map(|i| context(ck, i, req, o)).collect();
        let sc = SampleConfig { seed: sc.seed + b as i64, ..sc };
        for s in sample_summarised(&ck.model, &ctx, &sc, &summary, ck.vs.device()) {
            let (f, mut paths) = (s.forecast, s.paths);
            if req.nonnegative {
                paths.iter_mut().flatten().for_each(|v| *v = v.max(0.0));
            }
            out.push((if req.nonnegative { f.clipped() } else { f }, paths));
        }
        if !on_batch(out.len()) {
            return Err(crate::errors::Cancelled.into());
        }
    }
    Ok(out)
}

/// Sampled forecasts of each window's last `held` values from what precedes them (its text,
/// its values, and the held-out steps' known covariates), scored as `restock evaluate` scores
/// them: WQL over quantiles 0.1…0.9 (non-negative paths, as for demand). The `train` stage's
/// `score: wql` selects and registers on it. Fixed seeds give every score the same random
/// draws, so two models' scores differ by the models, not the draws.
pub fn holdout_wql(model: &Model, windows: &[Encoded], held: usize, paths: i64, device: Device) -> f64 {
    let longest = windows.iter().map(|w| w.ids.len()).max().unwrap_or(0);
    let mut sums = WqlSums::default();
    let summary = Summary { levels: &LEVELS, nonnegative: true };
    for (b, chunk) in windows.chunks(auto_batch(paths, longest)).enumerate() {
        let ctx: Vec<Context> = chunk
            .iter()
            .map(|w| Context {
                ids: w.ids[..w.ids.len() - held].to_vec(),
                scale: w.scale,
                season: w.season,
                covariates: w.covariates.clone(),
            })
            .collect();
        let cfg = SampleConfig { paths, horizon: held as i64, temperature: 1.0, top_k: 0, seed: b as i64 };
        for (w, s) in chunk.iter().zip(sample_summarised(model, &ctx, &cfg, &summary, device)) {
            let n = w.ids.len();
            let actual: Vec<f64> = (n - held..n).map(|t| if w.target[t] { decode(w.ids[t], w.scale) } else { f64::NAN }).collect();
            sums.add(&actual, &LEVELS, &s.forecast.clipped().quantiles);
        }
    }
    sums.wql()
}
