//! Forecasts from the language model: each series' recent history (and product text, when the
//! model reads text) becomes a context; N sample paths are decoded per series; the point and
//! the quantiles are those of the mixture of the paths' next-value distributions, step by step
//! (`sample`'s note). Batched over series.
use anyhow::{Result, bail};

use tch::Device;

use rand_chacha::ChaCha8Rng;

use super::calibrate;
use super::checkpoint::Checkpoint;
use super::line::{Rules, Season, Taken, Trend};
use super::model::Model;
use super::sample::{Context, SampleConfig, Sampled, Summary, sample_summarised};
use super::tokens::{Encoded, decode, encode, text_prefix};
use crate::forecast::holdout;
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
    /// Context lengths the paths are split across: `max_context`, half of it, a quarter, …
    /// (`contexts` lengths). Each length's paths give their own mixture forecast; a series'
    /// forecast is their average, quantile by quantile, weighted by paths (a forecast
    /// combination over how much history the model reads: a long context sees the season, a
    /// short one adapts to a recent change of level). 1 = the one context; the default 2 was
    /// better than 1 on aus_retail, PBS (two windows each) and the demo lake (BENCHMARKS.md).
    pub contexts: usize,
    /// Takes a straight line out of a context before the model reads it, and puts the line's
    /// continuation back on the forecast, when the line leaves residuals whose mean |r| is at
    /// most this share of the values' mean |x| ([`super::line::Line`]); 0 = never. The default,
    /// [`DETREND`], takes it out only where what it leaves is within about three of the value
    /// tokens' bins (0.0073 of the scale each), too fine for the model to read.
    pub detrend: f64,
    /// Which trend a context has taken out before the model reads it, where no clean line
    /// ([`Self::detrend`]) describes it, and put back on the forecast: `Drift`, the mean of its
    /// seasonal differences per step, as a line through its last value
    /// ([`super::line::Line::drift`]); `Growth`, the same in logs for a positive context, as a
    /// factor ([`super::line::Growth`]); `Differences`, its steps, walked on from its last value
    /// ([`super::line::Differences`]); `Season`, its season by classical decomposition, then a
    /// drift ([`super::line::Season`]); `Off`; or `Auto` (the default): whichever of the five
    /// (`Season` only for a season of at least [`super::line::Season::SHORTEST`] steps)
    /// forecasts the run's own series' last `horizon` values best from what precedes them (the
    /// calibration pass, run once per choice). The model reads what is left at its own level:
    /// it pulls a forecast back towards a context's level, so a trend it reads is damped.
    pub trend: Trend,
    /// Standard errors a drift or growth must be from zero (its mean difference's t-statistic)
    /// to be taken out; 0 = never.
    pub drift: f64,
    /// Seasons the forecast's seasonal-lag input averages, as the season's shape at the last
    /// season's level (`sample::season_shape_lag`); 1 = the last season's value, as the model
    /// was trained. 3 copies one noisy season less: hourly −11 % MASE, PBS −8 % WQL, and the
    /// demo lake's daily counts +0.7 % (BENCHMARKS.md, "Hourly: the LM copies the last season"),
    /// so `Auto` (the default) backtests [`LagSeasons::CHOICES`] after the trend, in order,
    /// moving to the next only while it is [`LAG_CLEARLY`] better than the last on the run's
    /// own held-out values.
    pub lag_seasons: LagSeasons,
    /// Lifts a context with values below zero above zero before the model reads it, and takes
    /// the lift off its forecast ([`super::line::lift`]): the model was pretrained on values ≥ 0
    /// and pulls a negative series towards zero (quarterly series around zero: 1.38 → 1.07
    /// MASE). false = reads them as they are. Contexts ≥ 0, all demand, are never lifted.
    pub lift: bool,
    /// Narrows each forecast's distance from its median by the factor (0.5–1) that best
    /// forecasts the run's own series' last `horizon` values from what precedes them
    /// ([`super::calibrate`]): one more forecast pass over up to 512 series. false = the
    /// model's own spread. Measured: aus_retail −3 % WQL, hourly −10 %, weekly counts −1 %,
    /// and no change on PBS, the demo lake (zero-shot and fine-tuned) and the trend, yearly and
    /// quarterly sets, so on by default.
    pub calibrate: bool,
}

impl Default for LmOptions {
    fn default() -> Self {
        Self {
            paths: 20,
            temperature: 1.0,
            top_k: 0,
            seed: 0,
            batch: 0,
            max_text: super::tokens::MAX_TEXT_TOKENS,
            max_context: 256,
            contexts: 2,
            detrend: DETREND,
            trend: Trend::Auto,
            drift: DRIFT,
            lag_seasons: LagSeasons::Auto,
            lift: true,
            calibrate: true,
        }
    }
}

/// [`LmOptions::detrend`]'s default: clean trends (1 % noise) of 10–100 points went from 1.4–1.9×
/// naive's MASE to 0.4–0.9× with it, and no series of aus_retail or PBS is detrended at it
/// (from 0.04 some aus_retail series are, and lose: BENCHMARKS.md, "Straight lines out of the context").
pub const DETREND: f64 = 0.02;

/// How many seasons the forecast's seasonal-lag input averages ([`LmOptions::lag_seasons`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagSeasons {
    /// The last of [`LagSeasons::CHOICES`] that, tried in order, each clearly forecast the
    /// run's own held-out values better than the one before.
    Auto,
    /// That many (≥ 1).
    Fixed(usize),
}

impl LagSeasons {
    /// What `Auto` chooses between: the last season's value, as trained, then three and eight
    /// seasons' shape (hourly MASE 1.16 → 1.04 → 0.98; BENCHMARKS.md).
    pub const CHOICES: [usize; 3] = [1, 3, 8];

    /// `auto` or a count ≥ 1.
    pub fn parse(s: &str) -> Option<LagSeasons> {
        match s {
            "auto" => Some(LagSeasons::Auto),
            n => n.parse().ok().filter(|n| *n >= 1).map(LagSeasons::Fixed),
        }
    }

    fn choices(self) -> Vec<usize> {
        match self {
            LagSeasons::Auto => Self::CHOICES.to_vec(),
            LagSeasons::Fixed(k) => vec![k],
        }
    }

    /// The count a forecast pass uses: `Auto` reads as 1 where nothing chose.
    fn count(self) -> usize {
        match self {
            LagSeasons::Auto => 1,
            LagSeasons::Fixed(k) => k,
        }
    }
}

/// [`LmOptions::drift`]'s default: two standard errors (about 95 % two-sided).
pub const DRIFT: f64 = 2.0;

/// One series to forecast: its history (NaN = missing), optionally its text as token ids, and,
/// for a model with covariates, their features over history then horizon, row-major
/// [(history.len() + horizon) × n_covariates] (`tokens::covariate_features`; empty = unknown).
#[derive(Default)]
pub struct Input<'a> {
    pub history: &'a [f64],
    pub text: Option<&'a [i64]>,
    pub covariates: &'a [f32],
}

/// Series per batch. On the CPU, about 4,096 decoding rows (series × paths), so each decoding
/// step is one large matrix product rather than many small ones, and at most 32 k prefilled
/// tokens, which bounds the prefill's attention scores (64 series × 4 heads × 512² floats is
/// 268 MB a layer). A GPU launches the same kernels per step whatever the batch, so it takes 8×
/// the rows and 32× the tokens (its attention does not hold the scores; the prefill's logits,
/// 1 M tokens × 4,096 in bf16, are the largest tensor: 8.6 GB).
pub fn auto_batch(paths: i64, context: usize, device: Device) -> usize {
    let (rows, tokens, most) = if device.is_cuda() { (32_768, 1 << 20, 4096) } else { (4096, 32_768, 512) };
    (rows / paths.max(1) as usize).clamp(1, most).min((tokens / context.max(1)).max(1))
}

/// The longest horizon the model allows (it must see at least one value of context).
pub fn max_horizon(ck: &Checkpoint) -> usize {
    (ck.model.config.max_len - 2).max(0) as usize
}

/// The token context of one series: text ids (shifted past the value vocabulary) + SEP, then the
/// most recent values that fit in `max_len - horizon`, less what [`Taken::of`] takes out of
/// them (the line through them when `o.detrend` takes it, or the lift of values below zero),
/// which is returned beside the context.
fn context(ck: &Checkpoint, input: &Input, req: &Request, o: &LmOptions, max_context: usize) -> (Context, Option<Taken>) {
    let horizon = req.horizon;
    let cfg = &ck.model.config;
    let mut ids = text_prefix(input.text.unwrap_or_default(), o.max_text, cfg.text_vocab);
    let room = (cfg.max_len as usize).saturating_sub(horizon + ids.len()).min(max_context).max(1);
    let from = input.history.len().saturating_sub(room);
    let values = &input.history[from..];
    let taken = Taken::of(values, &Rules { detrend: o.detrend, trend: o.trend, drift: o.drift, season: req.season, lift: o.lift });
    let enc = match &taken {
        Some(t) => encode(&t.rest(values), None),
        None => encode(values, None),
    };
    let n = cfg.n_covariates as usize;
    let covariates = if n > 0 && input.covariates.len() == (input.history.len() + horizon) * n {
        std::iter::repeat_n(0.0, ids.len() * n).chain(input.covariates[from * n..].iter().copied()).collect()
    } else {
        vec![]
    };
    ids.extend(enc.ids);
    (Context { ids, scale: enc.scale, season: req.season, covariates }, taken)
}

/// Samples each context; those with something taken out are sampled apart, summarised without
/// clipping at zero (residuals are below zero half the time; a lifted forecast is clipped only
/// once the lift is back, where the request asks), and get it back.
fn sample_taken(ck: &Checkpoint, prepared: Vec<(Context, Option<Taken>)>, sc: &SampleConfig, summary: &Summary) -> Vec<Sampled> {
    let n = prepared.len();
    let (lined, plain): (Vec<_>, Vec<_>) = prepared.into_iter().enumerate().partition(|(_, (_, taken))| taken.is_some());
    let mut out: Vec<Option<Sampled>> = (0..n).map(|_| None).collect();
    let residual = Summary { nonnegative: false, ..*summary };
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(sc.seed as u64);
    for (group, summary) in [(plain, summary), (lined, &residual)] {
        if group.is_empty() {
            continue;
        }
        let (index, prepared): (Vec<usize>, Vec<(Context, Option<Taken>)>) = group.into_iter().unzip();
        let (ctx, taken): (Vec<Context>, Vec<Option<Taken>>) = prepared.into_iter().unzip();
        let sampled = sample_summarised(&ck.model, &ctx, sc, summary, ck.vs.device());
        for ((i, taken), mut s) in index.into_iter().zip(taken).zip(sampled) {
            if let Some(taken) = taken {
                taken.restore(&mut s, &mut rng);
            }
            out[i] = Some(s);
        }
    }
    out.into_iter().map(|s| s.expect("every context sampled")).collect()
}

/// One series' text ids (None: forecast without text).
pub type TextIds = Option<Vec<i64>>;

/// Each series' text (`texts[i]`, when given) as the model's text ids, and warnings: a model
/// without a tokenizer was never trained on text and forecasts without it; a series without
/// text is forecast without it.
pub fn text_ids(ck: &Checkpoint, texts: Option<&[Option<String>]>, n: usize) -> Result<(Vec<TextIds>, Vec<String>)> {
    let Some(texts) = texts else { return Ok((vec![None; n], vec![])) };
    if ck.tokenizer.is_none() {
        let msg = "the model has no tokenizer (it was never trained on text), so it forecasts without the text".to_string();
        return Ok((vec![None; n], vec![msg]));
    }
    let ids = texts.iter().map(|t| t.as_deref().map(|t| ck.text_ids(t)).transpose().map(Option::flatten)).collect::<Result<Vec<_>>>()?;
    let missing = ids.iter().filter(|i| i.is_none()).count();
    let warnings = if missing > 0 { vec![format!("{missing} of {n} series have no text; they are forecast without it")] } else { vec![] };
    Ok((ids, warnings))
}

/// Which pass a forecast is in: a held-out pass over some of the series (once per trend and
/// seasonal-lag choice left open: [`LmOptions::trend`], [`LmOptions::lag_seasons`]) chooses
/// them and learns the spread factor ([`LmOptions::calibrate`]) before the forecast itself;
/// its `done` and `of` count held-out forecasts over every candidate it may try (it stops
/// early where a longer seasonal lag is not clearly better).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Calibrating,
    Forecasting,
}

/// Progress, after each batch: `done` of the pass's `of` series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub pass: Pass,
    pub done: usize,
    pub of: usize,
}

/// Forecast every input; `on_batch` after each batch of either pass may return false to stop (cancel).
pub fn forecast(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    on_batch: impl FnMut(Done) -> bool,
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
    on_batch: impl FnMut(Done) -> bool,
) -> Result<Vec<(QuantileForecast, Vec<Vec<f64>>)>> {
    Ok(run(ck, inputs, req, o, on_batch, false)?.0)
}

/// The held-out tails' forecasts a run chose its options and spread by, with those choices
/// applied (at [`LEVELS`], clipped at zero when the request is non-negative): which inputs, by
/// index ([`holdout::sample`]), and each one's forecast of its last `horizon` values.
pub struct HeldOut {
    pub index: Vec<usize>,
    pub forecasts: Vec<QuantileForecast>,
}

impl HeldOut {
    /// The forecasts as an ensemble member's held-out ones for `sample` (the caller's
    /// [`holdout::sample`] of the same inputs, so the same indices); none if they differ.
    pub fn for_sample(&self, sample: &[usize]) -> Vec<Option<QuantileForecast>> {
        if self.index != sample {
            return vec![];
        }
        self.forecasts.iter().cloned().map(Some).collect()
    }
}

/// [`forecast_paths`], and the held-out tails' forecasts (an ensemble's pick reads them; None
/// with too few held-out values to choose by). The held-out pass runs even where no choice is
/// left to it.
pub fn forecast_held(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    on_batch: impl FnMut(Done) -> bool,
) -> Result<(PathForecasts, Option<HeldOut>)> {
    run(ck, inputs, req, o, on_batch, true)
}

/// Each input's forecast and its sample paths.
pub type PathForecasts = Vec<(QuantileForecast, Vec<Vec<f64>>)>;

/// The held-out pass (skipped when it has nothing to choose and no `held` is asked), then the
/// forecasts with what it chose.
fn run(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    mut on_batch: impl FnMut(Done) -> bool,
    held: bool,
) -> Result<(PathForecasts, Option<HeldOut>)> {
    let of = inputs.len();
    let fixed = o.trend != Trend::Auto && o.lag_seasons != LagSeasons::Auto;
    if !o.calibrate && fixed && !held {
        let out = sampled_forecasts(ck, inputs, req, o, |done| on_batch(Done { pass: Pass::Forecasting, done, of }))?;
        return Ok((out, None));
    }
    let (chosen, k, held) = backtest(ck, inputs, req, o, &mut on_batch)?;
    let o = &chosen;
    // The median, which the factor scales around, is forecast beside the levels asked for.
    let median = req.levels.iter().position(|l| *l == 0.5);
    let levels: Vec<f64> = req.levels.iter().copied().chain(median.is_none().then_some(0.5)).collect();
    let mut out = sampled_forecasts(ck, inputs, &Request { levels: &levels, ..*req }, o, |done| {
        on_batch(Done { pass: Pass::Forecasting, done, of })
    })?;
    for (f, paths) in &mut out {
        calibrate::scale(f, paths, median.unwrap_or(levels.len() - 1), k);
        if median.is_none() {
            f.quantiles.pop();
        }
        if req.nonnegative {
            *f = std::mem::take(f).clipped();
            paths.iter_mut().flatten().for_each(|v| *v = v.max(0.0));
        }
    }
    Ok((out, held))
}

/// Each input's last `horizon` values forecast from what precedes them (every k-th input, at
/// most [`holdout::MAX_SERIES`], with at least [`holdout::MIN_CONTEXT`] values before
/// those), once per choice left open: each candidate trend (`o.trend` `Auto`: off, drift,
/// growth, differences, season) at the first seasonal-lag count, then the best of them at each further count
/// (`o.lag_seasons` `Auto`) while each is [`LAG_CLEARLY`] better, series by series, than the
/// last. Returns the options whose forecasts lose least at their [`calibrate::best`] spread
/// factor — the trained lag count unless a longer one was clearly better — every choice fixed,
/// that factor, and those forecasts at it. With too few held-out values to learn from: drift,
/// one season's lag (or what was asked), factor 1 and no forecasts.
fn backtest(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    mut on_batch: impl FnMut(Done) -> bool,
) -> Result<(LmOptions, f64, Option<HeldOut>)> {
    let (index, inputs, actual) = held_out(ck, inputs, req.horizon);
    // A season too short to test reads as a drift: no pass of its own.
    let candidate = |t: &&Trend| **t != Trend::Season || req.season >= Season::SHORTEST;
    let trends = if o.trend == Trend::Auto { Trend::CANDIDATES.iter().filter(candidate).copied().collect() } else { vec![o.trend] };
    // A season of one step has no shape to average: every count reads the last value.
    let lags = if req.season > 1 { o.lag_seasons.choices() } else { vec![o.lag_seasons.count()] };
    let (per, passes) = (inputs.len(), trends.len() + lags.len() - 1);
    let backtest = Request { levels: &LEVELS, ..*req };
    let mut pass = 0;
    let mut score = |options: LmOptions| -> Result<Option<Scored>> {
        let forecasts = sampled_forecasts(ck, &inputs, &backtest, &options, |done| {
            on_batch(Done { pass: Pass::Calibrating, done: pass * per + done, of: passes * per })
        })?;
        pass += 1;
        let held: Vec<calibrate::Held> =
            actual.iter().zip(forecasts).map(|(actual, (forecast, _))| calibrate::Held { actual, forecast }).collect();
        let scored = calibrate::best(&held, &LEVELS, 4).map(|(k, _)| Scored {
            options,
            k: if o.calibrate { k } else { 1.0 },
            each: calibrate::losses(&held, &LEVELS, 4, k),
            forecasts: held.into_iter().map(|h| h.forecast).collect(),
        });
        let (trend, lag_seasons) = (options.trend.as_str(), options.lag_seasons.count());
        tracing::debug!(trend, lag_seasons, loss = scored.as_ref().map(Scored::loss), "lm backtest candidate");
        Ok(scored)
    };
    let fix = |trend: Trend, lag: usize| LmOptions { trend, lag_seasons: LagSeasons::Fixed(lag), ..*o };
    let mut best: Option<Scored> = None;
    for &trend in &trends {
        let Some(s) = score(fix(trend, lags[0]))? else { continue };
        let t = best.as_ref().map(|b| holdout::paired_t(&b.each, &s.each));
        tracing::debug!(trend = trend.as_str(), t, "lm backtest: against the best trend so far");
        if best.as_ref().is_none_or(|b| s.loss() < b.loss()) {
            best = Some(s);
        }
    }
    // A longer seasonal lag than the one the model was trained with (only `Auto` tries one)
    // must be clearly better than the last; the first that is not ends the search.
    for &lag in &lags[1..] {
        let Some(b) = &best else { break };
        let Some(s) = score(fix(b.options.trend, lag))? else { continue };
        tracing::debug!(lag_seasons = lag, t = holdout::paired_t(&b.each, &s.each), "lm backtest: how clearly it beats the trained lag");
        if !holdout::clearly_less(&b.each, &s.each, LAG_CLEARLY) {
            break;
        }
        best = Some(s);
    }
    let fallback = fix(if trends.len() == 1 { trends[0] } else { Trend::Drift }, lags[0]);
    let Some(b) = best else { return Ok((fallback, 1.0, None)) };
    let (trend, lag_seasons) = (b.options.trend.as_str(), b.options.lag_seasons.count());
    tracing::info!(trend, lag_seasons, spread = b.k, series = per, "lm backtest on the held-out tails");
    let forecasts = b
        .forecasts
        .into_iter()
        .map(|mut f| {
            calibrate::scale(&mut f, &mut [], 4, b.k);
            f
        })
        .collect();
    Ok((b.options, b.k, Some(HeldOut { index, forecasts })))
}

/// One candidate's backtest: its options, best spread factor, and each held-out series' pinball
/// loss at that factor.
struct Scored {
    options: LmOptions,
    k: f64,
    each: Vec<f64>,
    /// The held-out forecasts, as sampled (at [`LEVELS`]).
    forecasts: Vec<QuantileForecast>,
}

impl Scored {
    fn loss(&self) -> f64 {
        self.each.iter().sum()
    }
}

/// How clearly (standard errors of the paired per-series differences) another seasonal-lag
/// count must beat the one the model was trained with for [`LagSeasons::Auto`] to choose it.
pub const LAG_CLEARLY: f64 = 2.0;

/// The inputs' last `horizon` values held out ([`holdout::sample`]): those inputs, by index,
/// cut before them (covariates too), and the values held out.
fn held_out<'a>(ck: &Checkpoint, inputs: &[Input<'a>], h: usize) -> (Vec<usize>, Vec<Input<'a>>, Vec<&'a [f64]>) {
    let n = ck.model.config.n_covariates as usize;
    let index = holdout::sample(&inputs.iter().map(|i| i.history.len()).collect::<Vec<_>>(), h);
    let (cut, actual) = index
        .iter()
        .map(|&k| {
            let i = &inputs[k];
            let cut = i.history.len() - h;
            let covariates = if i.covariates.len() == (i.history.len() + h) * n { &i.covariates[..i.history.len() * n] } else { &[] };
            (Input { history: &i.history[..cut], text: i.text, covariates }, &i.history[cut..])
        })
        .unzip();
    (index, cut, actual)
}

/// The model's forecasts, each with its sample paths.
fn sampled_forecasts(
    ck: &Checkpoint,
    inputs: &[Input],
    req: &Request,
    o: &LmOptions,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Vec<(QuantileForecast, Vec<Vec<f64>>)>> {
    if req.horizon > max_horizon(ck) {
        bail!("horizon {} is longer than the model allows ({} for max_len {})", req.horizon, max_horizon(ck), ck.model.config.max_len);
    }
    let mut out = Vec::with_capacity(inputs.len());
    let longest = (ck.model.config.max_len as usize).saturating_sub(req.horizon).min(read(o.max_context, req.season));
    let batch = if o.batch > 0 { o.batch } else { auto_batch(o.paths, longest, ck.vs.device()) };
    let groups = context_groups(o);
    let summary = Summary { levels: req.levels, nonnegative: req.nonnegative };
    for (b, chunk) in inputs.chunks(batch).enumerate() {
        let mut combined: Vec<Combined> = (0..chunk.len()).map(|_| Combined::default()).collect();
        for (g, &(max_context, paths)) in groups.iter().enumerate() {
            let max_context = read(max_context, req.season);
            let prepared: Vec<(Context, Option<Taken>)> = chunk.iter().map(|i| context(ck, i, req, o, max_context)).collect();
            let seed = o.seed + (b * groups.len() + g) as i64;
            let sc = SampleConfig {
                paths,
                horizon: req.horizon as i64,
                temperature: o.temperature,
                top_k: o.top_k,
                seed,
                lag_seasons: o.lag_seasons.count() as i64,
            };
            for (c, mut s) in combined.iter_mut().zip(sample_taken(ck, prepared, &sc, &summary)) {
                if req.nonnegative {
                    s.forecast = s.forecast.clipped();
                    s.paths.iter_mut().flatten().for_each(|v| *v = v.max(0.0));
                }
                c.add(s, paths as f64 / o.paths as f64);
            }
        }
        out.extend(combined.into_iter().map(|c| (c.forecast, c.paths)));
        if !on_batch(out.len()) {
            return Err(crate::errors::Cancelled.into());
        }
    }
    Ok(out)
}

/// Seasons every context reads where the model has room, however short `max_context` is: with
/// fewer (a day of quarter-hours is 96 steps) the model cannot tell the season from the noise
/// (the 15-minute loads of `benches/lm_unseen.sh`: WQL 0.125 reading 2⅔ days, 0.065 reading 4).
pub const SEASONS_READ: usize = 4;

/// The most values a context of `max_context` reads for a season of `season` steps.
fn read(max_context: usize, season: usize) -> usize {
    max_context.max(SEASONS_READ * season)
}

/// Each context length's (most values read, paths): `max_context`, halved `contexts − 1`
/// times (at least one value), the paths split as evenly as the count allows (each length at
/// least one path, so there are never more lengths than paths).
fn context_groups(o: &LmOptions) -> Vec<(usize, i64)> {
    let n = o.contexts.clamp(1, o.paths.max(1) as usize);
    let (share, extra) = (o.paths / n as i64, o.paths % n as i64);
    (0..n).map(|g| ((o.max_context >> g).max(1), share + i64::from((g as i64) < extra))).collect()
}

/// A series' forecast combined over context lengths: each length's point and quantiles
/// weighted by its share of the paths, and all the paths.
#[derive(Default)]
struct Combined {
    forecast: QuantileForecast,
    paths: Vec<Vec<f64>>,
}

impl Combined {
    fn add(&mut self, s: Sampled, weight: f64) {
        let f = &mut self.forecast;
        if f.point.is_empty() {
            f.point = vec![0.0; s.forecast.point.len()];
            f.quantiles = s.forecast.quantiles.iter().map(|q| vec![0.0; q.len()]).collect();
        }
        f.point.iter_mut().zip(&s.forecast.point).for_each(|(a, v)| *a += weight * v);
        for (qa, qs) in f.quantiles.iter_mut().zip(&s.forecast.quantiles) {
            qa.iter_mut().zip(qs).for_each(|(a, v)| *a += weight * v);
        }
        self.paths.extend(s.paths);
    }
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
    for (b, chunk) in windows.chunks(auto_batch(paths, longest, device)).enumerate() {
        let ctx: Vec<Context> = chunk
            .iter()
            .map(|w| Context {
                ids: w.ids[..w.ids.len() - held].to_vec(),
                scale: w.scale,
                season: w.season,
                covariates: w.covariates.clone(),
            })
            .collect();
        let cfg = SampleConfig { paths, horizon: held as i64, temperature: 1.0, top_k: 0, seed: b as i64, lag_seasons: 1 };
        for (w, s) in chunk.iter().zip(sample_summarised(model, &ctx, &cfg, &summary, device)) {
            let n = w.ids.len();
            let actual: Vec<f64> = (n - held..n).map(|t| if w.target[t] { decode(w.ids[t], w.scale) } else { f64::NAN }).collect();
            sums.add(&actual, &LEVELS, &s.forecast.clipped().quantiles);
        }
    }
    sums.wql()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::line::{Line, lift};
    use crate::lm::model::load_config;

    #[test]
    fn paths_split_across_halved_contexts() {
        let o = LmOptions { paths: 20, max_context: 256, contexts: 3, ..Default::default() };
        assert_eq!(context_groups(&o), vec![(256, 7), (128, 7), (64, 6)]);
        let few = LmOptions { paths: 2, max_context: 3, contexts: 4, ..Default::default() };
        assert_eq!(context_groups(&few), vec![(3, 1), (1, 1)], "never more lengths than paths, never an empty context");
        assert_eq!(context_groups(&LmOptions::default()), vec![(256, 10), (128, 10)]);
        assert_eq!(context_groups(&LmOptions { contexts: 1, ..Default::default() }), vec![(256, 20)]);
    }

    /// A context reads four seasons where the model has room, whatever `max_context` says: a
    /// day of quarter-hours (96 steps) is read as 384 values by both context lengths, a week of
    /// days as before. The model's room (max_len less the horizon) still bounds it.
    #[test]
    fn a_long_season_is_read_four_times() {
        assert_eq!((read(256, 96), read(128, 96), read(256, 7), read(128, 52)), (384, 384, 256, 208));
        let _rng = crate::lm::rng_lock();
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let ck = Checkpoint::init(config, Device::Cpu, 5);
        let history: Vec<f64> = (0..400).map(|t| 10.0 + (t % 24) as f64).collect();
        let o = LmOptions { max_context: 16, ..Default::default() };
        let req = Request { horizon: 8, season: 24, levels: &[0.5], nonnegative: true };
        let (ctx, _) = context(&ck, &Input { history: &history, ..Input::default() }, &req, &o, read(16, 24));
        assert_eq!(ctx.ids.len(), 96, "four seasons of 24, not 16 values");
        let long = Request { season: 40, ..req };
        let (ctx, _) = context(&ck, &Input { history: &history, ..Input::default() }, &long, &o, read(16, 40));
        assert_eq!(ctx.ids.len(), 128 - 8, "at most what the tiny model's max_len leaves beside the horizon");
    }

    /// A detrended forecast is the forecast of what the line leaves (same draws, not clipped at
    /// zero: residuals) with the line's continuation added: the mean exactly, each quantile's
    /// distance from the mean widened by the line's own error, each path plus a line.
    #[test]
    fn a_detrended_forecast_is_the_residuals_forecast_plus_the_line() {
        let _rng = crate::lm::rng_lock();
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let ck = Checkpoint::init(config, Device::Cpu, 5);
        let history: Vec<f64> = (0..40).map(|t| 50.0 + 0.5 * t as f64 + 0.2 * (t % 3) as f64).collect();
        let line = Line::fit(&history, DETREND).expect("a trend with a small wiggle");
        let levels = [0.1, 0.5, 0.9];
        let o = LmOptions { paths: 4, contexts: 1, max_context: 64, ..Default::default() };
        let req = Request { horizon: 5, season: 1, levels: &levels, nonnegative: true };
        let (f, paths) = forecast_paths(&ck, &[Input { history: &history, ..Input::default() }], &req, &o, |_| true).unwrap().remove(0);
        let residuals = line.residuals(&history);
        let plain = LmOptions { detrend: 0.0, lift: false, ..o };
        let free = Request { nonnegative: false, ..req };
        let (g, gpaths) =
            forecast_paths(&ck, &[Input { history: &residuals, ..Input::default() }], &free, &plain, |_| true).unwrap().remove(0);
        for h in 0..5 {
            let (x, at) = ((h + 1) as f64, line.at((h + 1) as f64));
            assert!((f.point[h] - g.point[h] - at).abs() < 1e-9, "step {h}: {} {}", f.point[h], g.point[h]);
            for (fq, gq) in f.quantiles.iter().zip(&g.quantiles) {
                assert!((fq[h] - f.point[h] - (gq[h] - g.point[h]) * line.widening(x)).abs() < 1e-9, "step {h}");
            }
        }
        assert_eq!(paths.len(), 4);
        for (p, q) in paths.iter().zip(&gpaths) {
            let e: Vec<f64> = (0..5).map(|h| p[h] - q[h] - line.at((h + 1) as f64)).collect();
            assert!(e.windows(3).all(|w| (w[2] - 2.0 * w[1] + w[0]).abs() < 1e-9), "each path's error is a line: {e:?}");
        }
        assert!(f.point.iter().all(|v| *v > 40.0), "the line carries the level: {:?}", f.point);
    }

    /// A series below zero is read lifted above it: its forecast is the lifted series' own
    /// forecast (same draws) less the lift, clipped at zero only where the request asks.
    #[test]
    fn a_series_below_zero_is_forecast_lifted_above_it() {
        let _rng = crate::lm::rng_lock();
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let ck = Checkpoint::init(config, Device::Cpu, 5);
        let history: Vec<f64> = (0..40).map(|t| -30.0 + 10.0 * (t % 4) as f64).collect();
        let c = lift(&history).expect("below zero");
        assert_eq!(c, -60.0);
        let lifted: Vec<f64> = history.iter().map(|v| v - c).collect();
        let levels = [0.1, 0.5, 0.9];
        let o = LmOptions { paths: 4, contexts: 1, max_context: 64, ..Default::default() };
        let req = Request { horizon: 5, season: 4, levels: &levels, nonnegative: false };
        let run = |h: &[f64], o: &LmOptions, req: &Request| {
            forecast_paths(&ck, &[Input { history: h, ..Input::default() }], req, o, |_| true).unwrap().remove(0)
        };
        let ((f, paths), (g, gpaths)) = (run(&history, &o, &req), run(&lifted, &o, &req));
        let near = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - (b + c)).abs() < 1e-9);
        assert!(near(&f.point, &g.point), "{:?} {:?}", f.point, g.point);
        assert!(f.quantiles.iter().zip(&g.quantiles).all(|(a, b)| near(a, b)));
        assert!(paths.iter().zip(&gpaths).all(|(a, b)| near(a, b)) && paths.len() == 4);
        assert!(f.point.iter().any(|v| *v < 0.0), "the forecast is back below zero: {:?}", f.point);
        let (unlifted, _) = run(&history, &LmOptions { lift: false, ..o }, &req);
        assert_ne!(unlifted.point, f.point, "read as it is");
        let (demand, demand_paths) = run(&history, &o, &Request { nonnegative: true, ..req });
        assert!(demand.point.iter().chain(demand_paths.iter().flatten()).all(|v| *v >= 0.0), "clipped after the lift is back");
    }

    /// An untrained `tiny` model (seed 3) and eight 40-day weekly series at different levels.
    fn untrained_and_weekly() -> (Checkpoint, Vec<Vec<f64>>) {
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let histories = (0..8).map(|k| (0..40).map(|t| (5 + k + t % 7) as f64).collect()).collect();
        (Checkpoint::init(config, Device::Cpu, 3), histories)
    }

    /// An ensemble's LM member: the same forecasts, and the held-out pass's forecasts of the
    /// sample's tails (at `LEVELS`, calibrated as the real ones are) — even where the pass has
    /// nothing to choose.
    #[test]
    fn the_held_out_forecasts_come_with_the_forecasts() {
        let _rng = crate::lm::rng_lock();
        let (ck, histories) = untrained_and_weekly();
        let inputs: Vec<Input> = histories.iter().map(|h| Input { history: h, ..Input::default() }).collect();
        let req = Request { horizon: 7, season: 7, levels: &[0.5], nonnegative: true };
        let o = LmOptions { paths: 4, contexts: 1, max_context: 32, ..Default::default() };
        let (both, held) = forecast_held(&ck, &inputs, &req, &o, |_| true).unwrap();
        assert_eq!(both, forecast_paths(&ck, &inputs, &req, &o, |_| true).unwrap());
        let held = held.expect("56 held-out values are enough");
        assert_eq!(held.index, holdout::sample(&[40; 8], 7));
        assert_eq!(held.forecasts.len(), 8);
        assert!(held.forecasts.iter().all(|f| f.quantiles.len() == LEVELS.len() && f.quantiles.iter().all(|q| q.len() == 7)));
        let fixed = LmOptions { calibrate: false, trend: Trend::Off, lag_seasons: LagSeasons::Fixed(1), ..o };
        let (_, held) = forecast_held(&ck, &inputs, &req, &fixed, |_| true).unwrap();
        assert_eq!(held.map(|h| h.forecasts.len()), Some(8), "held out even with nothing to choose");
    }

    /// Calibrated forecasts are the model's own (same draws) with every quantile, the point and
    /// every path moved towards the median by one factor of `calibrate::FACTORS`, learnt from the
    /// series' own last `horizon` values; levels without 0.5 come back as asked.
    #[test]
    fn a_calibrated_forecast_is_the_models_own_narrowed_around_its_median() {
        let _rng = crate::lm::rng_lock();
        let (ck, histories) = untrained_and_weekly();
        let inputs: Vec<Input> = histories.iter().map(|h| Input { history: h, ..Input::default() }).collect();
        let levels = [0.1, 0.5, 0.9];
        let req = Request { horizon: 7, season: 7, levels: &levels, nonnegative: false };
        let o = LmOptions { paths: 4, contexts: 1, max_context: 32, ..Default::default() };
        assert!(o.calibrate, "on by default");
        let plain = forecast_paths(&ck, &inputs, &req, &LmOptions { calibrate: false, ..o }, |_| true).unwrap();
        let calibrated = forecast_paths(&ck, &inputs, &req, &LmOptions { calibrate: true, ..o }, |_| true).unwrap();
        let (f, g) = (&plain[0].0, &calibrated[0].0);
        let k = (g.quantiles[2][0] - g.quantiles[1][0]) / (f.quantiles[2][0] - f.quantiles[1][0]);
        assert!(calibrate::FACTORS.iter().any(|c| (c - k).abs() < 1e-9), "one factor of the grid: {k}");
        assert!(k < 1.0, "an untrained model's spread is too wide for these series: {k}");
        let near = |a: f64, m: f64, b: f64| (a - (m + k * (b - m))).abs() < 1e-9;
        for ((f, fp), (g, gp)) in plain.iter().zip(&calibrated) {
            for t in 0..7 {
                let m = f.quantiles[1][t];
                assert!(g.quantiles.iter().zip(&f.quantiles).all(|(gq, fq)| near(gq[t], m, fq[t])), "step {t}");
                assert!(near(g.point[t], m, f.point[t]) && fp.iter().zip(gp).all(|(a, b)| near(b[t], m, a[t])));
            }
        }
        let no_median = Request { levels: &[0.1, 0.9], ..req };
        let asked = forecast_paths(&ck, &inputs, &no_median, &LmOptions { calibrate: true, ..o }, |_| true).unwrap();
        assert_eq!(
            asked[0].0.quantiles,
            vec![g.quantiles[0].clone(), g.quantiles[2].clone()],
            "the median forecast beside them, not returned"
        );
    }

    /// Two context lengths: each draws its share of the paths from its own context (and seed),
    /// and the forecast is the paths-weighted average of the two lengths' own forecasts.
    #[test]
    fn a_context_ensemble_averages_each_lengths_forecast() {
        let _rng = crate::lm::rng_lock();
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let ck = Checkpoint::init(config, Device::Cpu, 11);
        let history: Vec<f64> = (0..90).map(|t| (t % 7) as f64 + if t > 60 { 20.0 } else { 0.0 }).collect();
        let levels = [0.1, 0.5, 0.9];
        let req = Request { horizon: 4, season: 7, levels: &levels, nonnegative: true };
        let inputs = [Input { history: &history, ..Input::default() }];
        let run = |o: LmOptions| forecast_paths(&ck, &inputs, &req, &o, |_| true).unwrap().remove(0);
        let (both, paths) = run(LmOptions { paths: 6, max_context: 64, contexts: 2, ..Default::default() });
        assert_eq!(paths.len(), 6);
        let (long, long_paths) = run(LmOptions { paths: 3, max_context: 64, contexts: 1, ..Default::default() });
        let (short, short_paths) = run(LmOptions { paths: 3, max_context: 32, contexts: 1, seed: 1, ..Default::default() });
        assert_eq!(paths, [long_paths, short_paths].concat(), "each length's own draws");
        for (k, q) in both.quantiles.iter().enumerate() {
            for (h, v) in q.iter().enumerate() {
                assert!((v - 0.5 * (long.quantiles[k][h] + short.quantiles[k][h])).abs() < 1e-9, "level {k} step {h}");
            }
        }
        assert!(both.point.iter().zip(long.point.iter().zip(&short.point)).all(|(b, (l, s))| (b - 0.5 * (l + s)).abs() < 1e-9));
        assert_ne!(long.quantiles, short.quantiles, "the two lengths read different histories");
    }
}
