//! `restock evaluate`: rolling-origin backtests of forecast methods over a long table
//! (`series_id, ts, value`), scored by WQL, MASE and 80 % coverage, side by side with wall time.
//!
//! Reads with DataFusion, then hands plain series to `forecast/` (and, for `lm`, to `lm/`);
//! no stages, no run history.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::forecast::grid::{self, DAY};
use crate::forecast::metrics::{LEVELS, WqlSums, coverage, mase};
use crate::forecast::{ENSEMBLE_MEMBERS, Method, QuantileForecast, Request, ensemble, holdout};
use crate::lm::checkpoint::Checkpoint;
use crate::lm::forecast::{HeldOut, Input, LmOptions, Pass};

/// One series of the long table, observations in time order.
#[derive(Debug, Clone)]
pub struct Series {
    pub id: String,
    /// On `Axis::Time`, microseconds since 1970-01-01 (a date's midnight for daily and coarser
    /// data), so that hourly and finer data keep their order and their times; on
    /// `Axis::Periods`, LONG's integers as they are.
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
    pub text: Option<String>,
    /// Known covariates (`tokens::covariate_features`), row-major [values.len() × n], for a
    /// model that reads them; empty otherwise.
    pub covariates: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub horizon: usize,
    pub season: usize,
    pub windows: usize,
    /// Shows the language model's progress over its forecasts (hidden: nothing shown).
    pub progress: indicatif::ProgressBar,
}

impl Options {
    /// Options that show no progress.
    pub fn new(horizon: usize, season: usize, windows: usize) -> Options {
        Options { horizon, season, windows, progress: indicatif::ProgressBar::hidden() }
    }
}

/// One method's scores over every series and window.
#[derive(Debug, Clone)]
pub struct Score {
    pub method: String,
    pub wql: f64,
    /// Mean over series × windows of MASE of the median forecast; NaN when no series has the
    /// season + 1 values of history its in-sample seasonal-naive scale needs (or that scale is 0).
    pub mase: f64,
    /// Share of held-out points inside [q0.1, q0.9].
    pub coverage80: f64,
    pub seconds: f64,
    pub forecasts: usize,
    /// An ensemble's choice on the held-out tails ([`ensemble::Pick::kept`]).
    pub kept: Option<String>,
}

/// A forecast for one series at one rolling origin.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub series: usize,
    /// 0 = the earliest origin.
    pub window: usize,
    pub origin: usize,
    pub forecast: QuantileForecast,
}

/// How LONG's `ts` counts time, and so how forecasts write it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Dates, timestamps or date strings.
    Time,
    /// Integers (period 1, 2, 3, …): no calendar, written back as integers.
    Periods,
}

/// The series of one LONG table and how its `ts` counts time.
#[derive(Debug, Clone)]
pub struct Panel {
    pub series: Vec<Series>,
    pub axis: Axis,
    /// Times missing from series' grids, put in as missing values ([`grid`]).
    pub filled: Filled,
    /// The table's step (None: no series has two times).
    pub step: Option<grid::Step>,
}

impl Panel {
    /// The season the table's step conventionally has ([`grid::Step::season`]).
    pub fn season(&self) -> Option<usize> {
        self.step.and_then(|s| s.season(self.axis == Axis::Time))
    }
}

pub use crate::forecast::grid::Filled;

/// Read LONG (and optionally TEXT) Parquet into series, checking columns and types, with the
/// known covariate columns `covariates` of LONG (a model's; their held-out rows are the known
/// future: planned promotions, prices) or calendar features of `ts` (`calendar.weekend`, …).
pub async fn load(data: &Path, text: Option<&Path>, covariates: &[String]) -> Result<Panel> {
    let ctx = SessionContext::new();
    register(&ctx, "long", data).await?;
    let schema = ctx.table_provider("long").await?.schema();
    let [id, ts, value] = long_columns(&schema).map_err(|e| anyhow!("{}: {e}", data.display()))?;
    let sources = crate::stage::covariates::kinds(&schema, covariates, "LONG").map_err(|e| anyhow!("{}: {e}", data.display()))?;
    let axis = if schema.field_with_name(ts)?.data_type().is_integer() { Axis::Periods } else { Axis::Time };
    if axis == Axis::Periods && sources.iter().any(|s| matches!(s, crate::stage::covariates::Source::Calendar(_))) {
        bail!("{}: `ts` holds integers (periods), which have no calendar for the model's calendar covariates; give dates", data.display());
    }
    let extra = crate::stage::covariates::select_list(covariates);
    let time = match axis {
        Axis::Time => format!("arrow_cast(arrow_cast(\"{ts}\", 'Timestamp(Microsecond, None)'), 'Int64')"),
        Axis::Periods => format!("CAST(\"{ts}\" AS BIGINT)"),
    };
    let sql = format!(
        "SELECT arrow_cast(\"{id}\", 'Utf8') AS id, {time} AS time, CAST(\"{value}\" AS DOUBLE) AS v{extra} FROM long ORDER BY id, time"
    );
    let batches = ctx.sql(&sql).await?.collect().await.with_context(|| format!("reading {}", data.display()))?;
    let mut out: Vec<Series> = vec![];
    let mut raw: Vec<Vec<Vec<f64>>> = vec![];
    for b in &batches {
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().context("series_id")?;
        let ts = b.column(1).as_any().downcast_ref::<Int64Array>().context("ts")?;
        let vs = b.column(2).as_any().downcast_ref::<Float64Array>().context("value")?;
        let cols: Vec<&Float64Array> = (3..b.num_columns()).map(|c| b.column(c).as_any().downcast_ref().expect("cast to DOUBLE")).collect();
        let num = |a: &Float64Array, i: usize| if a.is_null(i) { f64::NAN } else { a.value(i) };
        for i in 0..b.num_rows() {
            if ids.is_null(i) || ts.is_null(i) {
                bail!("{}: row with a null series_id or ts", data.display());
            }
            let id = ids.value(i);
            if out.last().is_none_or(|s| s.id != id) {
                out.push(Series { id: id.to_string(), ts: vec![], values: vec![], text: None, covariates: vec![] });
                raw.push(vec![vec![]; cols.len()]);
            }
            let s = out.last_mut().expect("pushed");
            s.ts.push(ts.value(i));
            s.values.push(num(vs, i));
            raw.last_mut().expect("pushed").iter_mut().zip(&cols).for_each(|(r, c)| r.push(num(c, i)));
        }
    }
    let (filled, step) = regularise(&mut out, &mut raw, axis).map_err(|e| anyhow!("{}: {e}", data.display()))?;
    for (s, cols) in out.iter_mut().zip(raw) {
        // Days are what calendar covariates read; periods have none (refused above).
        let days: Vec<i32> = match axis {
            Axis::Time => s.ts.iter().map(|t| t.div_euclid(DAY) as i32).collect(),
            Axis::Periods => vec![],
        };
        s.covariates = crate::stage::covariates::features(&sources, &days, cols);
    }
    if let Some(text) = text {
        attach_text(&ctx, text, &mut out).await?;
    }
    Ok(Panel { series: out, axis, filled, step })
}

/// Refuses a series with two rows at one time, then puts each series on the table's grid
/// ([`grid::Step`]), its missing times (and their covariates) as missing values; the step.
fn regularise(series: &mut [Series], raw: &mut [Vec<Vec<f64>>], axis: Axis) -> Result<(Filled, Option<grid::Step>)> {
    for s in series.iter() {
        if let Some(w) = s.ts.windows(2).find(|w| w[0] == w[1]) {
            bail!("series `{}` has two rows at {} (a long table has one row per series and time)", s.id, show_time(w[0], axis));
        }
    }
    let mut filled = Filled::default();
    let Some(step) = grid::Step::of(series.iter().map(|s| &s.ts[..]), axis == Axis::Time) else { return Ok((filled, None)) };
    for (s, cols) in series.iter_mut().zip(raw) {
        let Some(times) = step.fill(&s.ts) else { continue };
        filled.series += 1;
        filled.times += times.len() - s.ts.len();
        s.values = grid::spread(&s.ts, &times, &s.values);
        cols.iter_mut().for_each(|c| *c = grid::spread(&s.ts, &times, c));
        s.ts = times;
    }
    Ok((filled, Some(step)))
}

/// A time as LONG wrote it: a date, a date and time, or a period.
fn show_time(t: i64, axis: Axis) -> String {
    match (axis, chrono::DateTime::from_timestamp_micros(t)) {
        (Axis::Time, Some(d)) if t.rem_euclid(DAY) == 0 => d.date_naive().to_string(),
        (Axis::Time, Some(d)) => d.naive_utc().to_string(),
        _ => t.to_string(),
    }
}

/// Each role's accepted column names, first found first: restock's own, then statsforecast's
/// (`unique_id, ds, y`), then AutoGluon's and GluonTS's (`item_id, timestamp, target`), so a
/// long table written for a peer is read as it is.
const LONG_COLUMNS: [(&str, [&str; 3]); 3] =
    [("series_id", ["series_id", "unique_id", "item_id"]), ("ts", ["ts", "ds", "timestamp"]), ("value", ["value", "y", "target"])];

/// LONG's series, time and value columns ([`LONG_COLUMNS`]), or which role has none.
fn long_columns(schema: &datafusion::arrow::datatypes::Schema) -> Result<[&'static str; 3]> {
    let found = LONG_COLUMNS.map(|(_, names)| names.into_iter().find(|n| schema.field_with_name(n).is_ok()));
    if let Some(k) = found.iter().position(Option::is_none) {
        let (role, names) = LONG_COLUMNS[k];
        let have: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        bail!(
            "no column `{role}` (a long table has series_id, ts, value — or statsforecast's unique_id, ds, y, or item_id, timestamp, target; none of {} is here: {})",
            names.join(", "),
            have.join(", ")
        );
    }
    Ok(found.map(|n| n.expect("checked above")))
}

/// A Parquet file (or a folder of them), or a CSV file with a header (`.csv`, `.csv.gz`, or
/// `.tsv` tab-separated), as table `name`.
async fn register(ctx: &SessionContext, name: &str, file: &Path) -> Result<()> {
    let path = file.to_str().context("data path is not UTF-8")?;
    let lower = path.to_ascii_lowercase();
    let csv = |delimiter| datafusion::prelude::CsvReadOptions::new().has_header(true).delimiter(delimiter);
    let read = if lower.ends_with(".csv") || lower.ends_with(".tsv") {
        ctx.register_csv(name, path, csv(if lower.ends_with(".tsv") { b'\t' } else { b',' }).file_extension(&path[path.len() - 4..])).await
    } else if lower.ends_with(".csv.gz") {
        let gz = csv(b',')
            .file_extension(&path[path.len() - 7..])
            .file_compression_type(datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP);
        ctx.register_csv(name, path, gz).await
    } else {
        ctx.register_parquet(name, path, ParquetReadOptions::default()).await
    };
    read.with_context(|| format!("reading {}", file.display()))
}

async fn attach_text(ctx: &SessionContext, text: &Path, series: &mut [Series]) -> Result<()> {
    register(&ctx, "text", text).await?;
    let schema = ctx.table_provider("text").await?.schema();
    let id = LONG_COLUMNS[0].1.into_iter().find(|n| schema.field_with_name(n).is_ok()).unwrap_or("series_id");
    let df = ctx
        .sql(&format!("SELECT arrow_cast(\"{id}\", 'Utf8'), arrow_cast(text, 'Utf8') FROM text"))
        .await
        .with_context(|| format!("{}: a text table has columns series_id (or unique_id, item_id), text", text.display()))?;
    let mut by_id = std::collections::HashMap::new();
    for b in df.collect().await? {
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().context("series_id")?;
        let ts = b.column(1).as_any().downcast_ref::<StringArray>().context("text")?;
        for i in 0..b.num_rows() {
            if !ids.is_null(i) && !ts.is_null(i) {
                by_id.insert(ids.value(i).to_string(), ts.value(i).to_string());
            }
        }
    }
    for s in series.iter_mut() {
        s.text = by_id.get(&s.id).cloned();
    }
    Ok(())
}

/// Rolling origins of one series: each window holds out `horizon` points, the last window the
/// series' last points. Origins that leave fewer than 3 points of history are skipped.
pub fn origins(len: usize, opts: &Options) -> Vec<(usize, usize)> {
    (0..opts.windows)
        .filter_map(|w| {
            let back = opts.horizon * (opts.windows - w);
            (len >= back + 3).then(|| (w, len - back))
        })
        .collect()
}

/// A method under test: a statistical forecaster, the language model from a checkpoint, or an
/// ensemble of them.
pub enum Candidate {
    Stat(Method),
    Lm {
        name: String,
        ck: Box<Checkpoint>,
        opts: LmOptions,
    },
    /// `ensemble` ([`ensemble`]: the median of its members, or one member alone where the
    /// held-out tails clearly say so), each member run once even when also listed.
    Ensemble(Vec<Candidate>),
}

impl Candidate {
    pub fn name(&self) -> &str {
        match self {
            Candidate::Stat(m) => m.as_str(),
            Candidate::Lm { name, .. } => name,
            Candidate::Ensemble(_) => "ensemble",
        }
    }

    /// The known covariate columns the language model among these reads (none without one).
    pub fn lm_covariates(methods: &[Candidate]) -> Vec<String> {
        methods
            .iter()
            .find_map(|m| match m {
                Candidate::Lm { ck, .. } => Some(ck.model.config.covariates.clone()),
                Candidate::Ensemble(members) => Some(Self::lm_covariates(members)).filter(|c| !c.is_empty()),
                Candidate::Stat(_) => None,
            })
            .unwrap_or_default()
    }
}

/// Every (series index, window, origin) to forecast.
fn jobs(series: &[Series], opts: &Options) -> Vec<(usize, usize, usize)> {
    series.iter().enumerate().flat_map(|(i, s)| origins(s.values.len(), opts).into_iter().map(move |(w, o)| (i, w, o))).collect()
}

/// One candidate's backtests, and for the language model its forecasts of the jobs' held-out
/// tails when an ensemble asked for them.
struct Ran {
    tests: Vec<Backtest>,
    held: Option<HeldOut>,
}

/// Forecast every (series, window) with one candidate.
pub fn backtest(series: &[Series], c: &Candidate, opts: &Options) -> Result<Vec<Backtest>> {
    Ok(run_one(series, c, opts, false)?.tests)
}

/// [`backtest`]; `held`: keep the language model's held-out forecasts (an ensemble member).
fn run_one(series: &[Series], c: &Candidate, opts: &Options, held: bool) -> Result<Ran> {
    match c {
        Candidate::Stat(m) => Ok(Ran { tests: backtest_stat(series, *m, opts), held: None }),
        Candidate::Lm { ck, opts: lm, .. } => backtest_lm(series, ck, lm, opts, held),
        Candidate::Ensemble(members) => {
            let each = members.iter().map(|m| run_one(series, m, opts, true)).collect::<Result<Vec<_>>>()?;
            let members: Vec<(&Candidate, &Ran)> = members.iter().zip(&each).collect();
            Ok(Ran { tests: ensemble_of(series, &members, opts).0, held: None })
        }
    }
}

/// An ensemble of its members' backtests ([`ensemble::combine`]): what it forecasts with is
/// chosen on the held-out tails of the jobs' histories (the language model's from its own
/// held-out pass, the statistical members forecast here), then applied job by job (a job one
/// member could not forecast is left out).
fn ensemble_of(series: &[Series], members: &[(&Candidate, &Ran)], opts: &Options) -> (Vec<Backtest>, String) {
    let jobs = jobs(series, opts);
    let h = opts.horizon;
    let sample = holdout::sample(&jobs.iter().map(|j| j.2).collect::<Vec<_>>(), h);
    let histories: Vec<&[f64]> = sample.iter().map(|&k| &series[jobs[k].0].values[..jobs[k].2]).collect();
    let at: HashMap<(usize, usize), usize> = jobs.iter().enumerate().map(|(k, &(i, w, _))| ((i, w), k)).collect();
    let req = Request { horizon: h, season: opts.season, levels: &LEVELS, nonnegative: false };
    let member = |(c, ran): &(&Candidate, &Ran)| {
        let mut all = vec![None; jobs.len()];
        ran.tests.iter().for_each(|t| all[at[&(t.series, t.window)]] = Some(t.forecast.clone()));
        let held = match (c, &ran.held) {
            (Candidate::Stat(m), _) => holdout::forecast_tails(*m, &histories, &req),
            (_, Some(lm)) => lm.for_sample(&sample),
            _ => vec![], // no held-out forecasts: the median
        };
        ensemble::Member { all, held }
    };
    let each: Vec<ensemble::Member> = members.iter().map(member).collect();
    let (pick, forecasts) = ensemble::combine(&each.iter().collect::<Vec<_>>(), &holdout::tails(&histories, h), &LEVELS);
    let kept = pick.kept(|m| members[m].0.name()).to_string();
    tracing::info!(kept, held_out = sample.len(), "ensemble: chosen on the held-out tails");
    let tests =
        jobs.iter().zip(forecasts).filter_map(|(&(series, window, origin), f)| Some(Backtest { series, window, origin, forecast: f? }));
    (tests.collect(), kept)
}

/// The language model, batched over all (series, window) contexts; libtorch uses the cores.
fn backtest_lm(series: &[Series], ck: &Checkpoint, lm: &LmOptions, opts: &Options, held: bool) -> Result<Ran> {
    let req = Request { horizon: opts.horizon, season: opts.season, levels: &LEVELS, nonnegative: false };
    let jobs = jobs(series, opts);
    let texts: Option<Vec<Option<String>>> =
        series.iter().any(|s| s.text.is_some()).then(|| series.iter().map(|s| s.text.clone()).collect());
    let (ids, warnings) = crate::lm::forecast::text_ids(ck, texts.as_deref(), series.len())?;
    warnings.iter().for_each(|w| tracing::warn!("lm: {w}"));
    let n = ck.model.config.n_covariates as usize;
    let input = |i: usize, o: usize| {
        let s = &series[i];
        let covariates = if s.covariates.len() == s.values.len() * n { &s.covariates[..(o + opts.horizon) * n] } else { &[] };
        Input { history: &s.values[..o], text: ids[i].as_deref(), covariates }
    };
    let inputs: Vec<Input> = jobs.iter().map(|&(i, _, o)| input(i, o)).collect();
    let bar = &opts.progress;
    let on_batch = |d: crate::lm::forecast::Done| {
        if bar.length() != Some(d.of as u64) || bar.position() > d.done as u64 {
            bar.reset();
            bar.set_length(d.of as u64);
        }
        bar.set_message(match d.pass {
            Pass::Calibrating => "lm: choosing trend, seasonal lag and spread on held-out values",
            Pass::Forecasting => "lm: forecasting",
        });
        bar.set_position(d.done as u64);
        true
    };
    let (forecasts, held) = if held {
        crate::lm::forecast::forecast_held(ck, &inputs, &req, lm, on_batch)?
    } else {
        (crate::lm::forecast::forecast_paths(ck, &inputs, &req, lm, on_batch)?, None)
    };
    bar.finish_and_clear();
    let tests = jobs.into_iter().zip(forecasts).map(|((i, w, o), (forecast, _))| Backtest { series: i, window: w, origin: o, forecast });
    Ok(Ran { tests: tests.collect(), held })
}

/// A statistical forecaster on all cores.
fn backtest_stat(series: &[Series], f: Method, opts: &Options) -> Vec<Backtest> {
    let req = Request { horizon: opts.horizon, season: opts.season, levels: &LEVELS, nonnegative: false };
    let jobs = jobs(series, opts);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    let chunk = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|&(i, w, o)| {
                            let fc = f.forecast(&series[i].values[..o], &req).ok()?;
                            Some(Backtest { series: i, window: w, origin: o, forecast: fc })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("forecast thread")).collect()
    })
}

/// Score backtests against the held-out actuals.
pub fn score(method: &str, series: &[Series], tests: &[Backtest], opts: &Options, seconds: f64) -> Score {
    let mut wql = WqlSums::default();
    let (mut mases, mut inside, mut total) = (vec![], 0, 0);
    let median = LEVELS.iter().position(|q| *q == 0.5).expect("0.5 is scored");
    for t in tests {
        let y = &series[t.series].values;
        let actual = &y[t.origin..t.origin + opts.horizon];
        wql.add(actual, &LEVELS, &t.forecast.quantiles);
        if let Some(m) = mase(&y[..t.origin], actual, &t.forecast.quantiles[median], opts.season) {
            mases.push(m);
        }
        let (i, n) = coverage(actual, &t.forecast.quantiles[0], &t.forecast.quantiles[LEVELS.len() - 1]);
        inside += i;
        total += n;
    }
    Score {
        method: method.to_string(),
        wql: wql.wql(),
        mase: if mases.is_empty() { f64::NAN } else { mases.iter().sum::<f64>() / mases.len() as f64 },
        coverage80: inside as f64 / total.max(1) as f64,
        seconds,
        forecasts: tests.len(),
        kept: None,
    }
}

/// Run each method, timing it, and score it.
pub fn run_methods(series: &[Series], methods: &[Candidate], opts: &Options) -> Result<Vec<(Score, Vec<Backtest>)>> {
    // Each method runs once: an ensemble reuses its listed members' backtests (and its time is
    // theirs added up, and its choice's).
    let in_ensemble: std::collections::BTreeSet<&str> = methods
        .iter()
        .flat_map(|m| match m {
            Candidate::Ensemble(members) => members.iter().map(Candidate::name).collect(),
            _ => vec![],
        })
        .collect();
    let mut done: HashMap<String, (Ran, f64)> = HashMap::new();
    let mut run = |m: &Candidate| -> Result<()> {
        if !done.contains_key(m.name()) {
            let started = Instant::now();
            let ran = run_one(series, m, opts, in_ensemble.contains(m.name()))?;
            done.insert(m.name().to_string(), (ran, started.elapsed().as_secs_f64()));
        }
        Ok(())
    };
    for m in methods {
        match m {
            Candidate::Ensemble(members) => members.iter().try_for_each(&mut run)?,
            _ => run(m)?,
        }
    }
    methods
        .iter()
        .map(|m| {
            let (tests, seconds, kept) = match m {
                Candidate::Ensemble(members) => {
                    let started = Instant::now();
                    let each: Vec<(&Candidate, &Ran)> = members.iter().map(|c| (c, &done[c.name()].0)).collect();
                    let (tests, kept) = ensemble_of(series, &each, opts);
                    // A member listed twice (counted twice in the median) ran once.
                    let ran: std::collections::BTreeSet<&str> = members.iter().map(|c| c.name()).collect();
                    (tests, ran.iter().map(|n| done[*n].1).sum::<f64>() + started.elapsed().as_secs_f64(), Some(kept))
                }
                _ => (done[m.name()].0.tests.clone(), done[m.name()].1, None),
            };
            Ok((Score { kept, ..score(m.name(), series, &tests, opts, seconds) }, tests))
        })
        .collect()
}

/// `--methods a,b,c` → candidates (`ensemble`: of `ensemble`'s members, by default ets, theta,
/// seasonal_naive and, where `--methods` names it, lm; `lm` = the model in `model_dir`, loaded
/// once onto the best device). `covariates`: the LONG columns the model reads as known
/// covariates (none: the ones it was fine-tuned on, if any).
pub fn parse_methods(
    list: &str,
    ensemble: Option<&str>,
    model_dir: &Path,
    lm: &LmOptions,
    covariates: &[String],
) -> Result<Vec<Candidate>> {
    let names = |list: &str| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let one = |name: &str| -> Result<Candidate> {
        if name == "lm" {
            let mut ck = Checkpoint::load(model_dir, crate::device::best())?;
            if !covariates.is_empty() {
                ck = ck.with_covariates(covariates).with_context(|| format!("--covariates for the model {}", model_dir.display()))?;
            }
            let ck = ck.for_inference();
            return Ok(Candidate::Lm { name: "lm".into(), ck: Box::new(ck), opts: *lm });
        }
        Method::parse(name).map(Candidate::Stat).ok_or_else(|| anyhow!(crate::forecast::unknown_method(name)))
    };
    let listed = names(list);
    let members = match ensemble {
        Some(members) => names(members),
        None => {
            let lm = listed.iter().any(|m| m == "lm").then(|| "lm".to_string());
            ENSEMBLE_MEMBERS.iter().map(|m| m.as_str().to_string()).chain(lm).collect()
        }
    };
    listed
        .iter()
        .map(|name| match name.as_str() {
            "ensemble" => {
                if members.len() < 2 || members.iter().any(|m| m == "ensemble") {
                    bail!("--ensemble names two or more methods, not `ensemble` itself (got `{}`)", members.join(","));
                }
                Ok(Candidate::Ensemble(members.iter().map(|m| one(m)).collect::<Result<_>>()?))
            }
            _ => one(name),
        })
        .collect()
}

/// Microseconds in a day.

/// How forecasts write `ts`: a date, a timestamp where any series has times within a day
/// (hourly data), or LONG's integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsColumn {
    Date,
    Timestamp,
    Integer,
}

impl TsColumn {
    fn of(panel: &Panel) -> Self {
        match panel.axis {
            Axis::Periods => TsColumn::Integer,
            Axis::Time if panel.series.iter().any(|s| s.ts.iter().any(|t| t.rem_euclid(DAY) != 0)) => TsColumn::Timestamp,
            Axis::Time => TsColumn::Date,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            TsColumn::Date => DataType::Date32,
            TsColumn::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            TsColumn::Integer => DataType::Int64,
        }
    }

    fn array(self, ts: Vec<i64>) -> ArrayRef {
        match self {
            TsColumn::Date => Arc::new(Date32Array::from(ts.iter().map(|t| t.div_euclid(DAY) as i32).collect::<Vec<_>>())),
            TsColumn::Timestamp => Arc::new(TimestampMicrosecondArray::from(ts)),
            TsColumn::Integer => Arc::new(Int64Array::from(ts)),
        }
    }
}

/// Write `method, series_id, ts, step, mean, q0.1 … q0.9` (one row per forecast step), `ts` as
/// `TsColumn` says.
pub fn write_forecasts(path: &PathBuf, panel: &Panel, results: &[(Score, Vec<Backtest>)], horizon: usize) -> Result<()> {
    let (series, ts_column) = (&panel.series, TsColumn::of(panel));
    let ts_type = ts_column.data_type();
    let mut fields = vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("series_id", DataType::Utf8, false),
        Field::new("ts", ts_type, false),
        Field::new("window", DataType::Int32, false),
        Field::new("step", DataType::Int32, false),
        Field::new("mean", DataType::Float64, false),
    ];
    fields.extend(LEVELS.iter().map(|q| Field::new(format!("q{q}"), DataType::Float64, false)));
    let schema = Arc::new(Schema::new(fields));
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
    for (score, tests) in results {
        let rows = tests.len() * horizon;
        let (mut ids, mut ts, mut win, mut step, mut mean) = (vec![], vec![], vec![], vec![], vec![]);
        let mut qs: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); LEVELS.len()];
        for t in tests {
            let s = &series[t.series];
            for h in 0..horizon {
                ids.push(s.id.as_str());
                ts.push(s.ts[t.origin + h]);
                win.push(t.window as i32);
                step.push(h as i32 + 1);
                mean.push(t.forecast.point[h]);
                qs.iter_mut().zip(&t.forecast.quantiles).for_each(|(col, q)| col.push(q[h]));
            }
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![score.method.as_str(); rows])),
            Arc::new(StringArray::from(ids)),
            ts_column.array(ts),
            Arc::new(Int32Array::from(win)),
            Arc::new(Int32Array::from(step)),
            Arc::new(Float64Array::from(mean)),
        ];
        cols.extend(qs.into_iter().map(|q| Arc::new(Float64Array::from(q)) as ArrayRef));
        writer.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Parquet file `name` in `dir` with these columns.
    fn write_parquet(dir: &Path, name: &str, columns: Vec<(&str, datafusion::arrow::array::ArrayRef)>) -> PathBuf {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let path = dir.join(name);
        let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    #[test]
    fn origins_step_back_by_horizon_and_skip_short_series() {
        let opts = Options::new(3, 1, 2);
        assert_eq!(origins(20, &opts), vec![(0, 14), (1, 17)]);
        assert_eq!(origins(8, &opts), vec![(1, 5)]);
    }

    /// MASE needs more than a season of history (its seasonal-naive scale): scored where a
    /// series has it, NaN (printed n/a) where none does — never a made-up 0.
    #[test]
    fn mase_is_missing_without_a_season_of_history() {
        let series = |n: usize| Series {
            id: "s".into(),
            ts: (0..n as i64).map(|d| d * DAY).collect(),
            values: (0..n).map(|t| (t % 3) as f64 + 1.0).collect(),
            text: None,
            covariates: vec![],
        };
        let q = |v: f64| QuantileForecast { point: vec![v; 2], quantiles: vec![vec![v; 2]; LEVELS.len()] };
        let opts = Options::new(2, 3, 1);
        let short = [series(5)];
        let bt = [Backtest { series: 0, window: 0, origin: 3, forecast: q(2.0) }];
        let s = score("m", &short, &bt, &opts, 0.0);
        assert!(s.mase.is_nan() && s.wql.is_finite(), "{s:?}");
        let long = [series(9)];
        let bt = [Backtest { series: 0, window: 0, origin: 7, forecast: q(2.0) }];
        // History 1 2 3 1 2 3 1: seasonal-naive MAE 0; the actuals 2 3 against 2: MAE 0.5 → no scale either.
        assert!(score("m", &long, &bt, &opts, 0.0).mase.is_nan());
        let rising = [Series { values: vec![1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0], ..series(9) }];
        // Seasonal differences over the history (1 2 3 2 3 4 3): all 1; actuals 4, 5 against 2: MAE 2.5.
        assert!((score("m", &rising, &bt, &opts, 0.0).mase - 2.5).abs() < 1e-12);
    }

    /// `n` series of `len` integer periods, series i's value at t `value(i, t)`.
    fn panel(n: usize, len: usize, value: impl Fn(usize, usize) -> f64) -> Vec<Series> {
        let one = |i: usize| Series {
            id: format!("s{i}"),
            ts: (0..len as i64).collect(),
            values: (0..len).map(|t| value(i, t)).collect(),
            text: None,
            covariates: vec![],
        };
        (0..n).map(one).collect()
    }

    /// `--ensemble` members' backtests combine job by job into their median (these three short
    /// series hold out too few values to choose anything else); a listed member runs once and
    /// the ensemble's time is its members'.
    #[test]
    fn an_ensemble_is_the_median_of_its_members_job_by_job() {
        let series = panel(3, 24, |i, t| 10.0 + (t % 4) as f64 + i as f64);
        let opts = Options::new(4, 4, 1);
        let lm = LmOptions::default();
        let methods = parse_methods("naive,seasonal_naive,ensemble", Some("naive,seasonal_naive,theta"), Path::new("-"), &lm, &[]).unwrap();
        let results = run_methods(&series, &methods, &opts).unwrap();
        let (naive, snaive, ens) = (&results[0], &results[1], &results[2]);
        assert_eq!(ens.0.method, "ensemble");
        let theta = backtest(&series, &Candidate::Stat(Method::Theta), &opts).unwrap();
        let want: Vec<QuantileForecast> =
            (0..3).map(|j| ensemble::median(&[&naive.1[j].forecast, &snaive.1[j].forecast, &theta[j].forecast])).collect();
        assert_eq!(ens.1.iter().map(|t| t.forecast.clone()).collect::<Vec<_>>(), want);
        assert!(ens.0.seconds >= naive.0.seconds + snaive.0.seconds, "its time is its members'");
        // A member listed twice counts twice in the median, and its time once.
        let methods = parse_methods("naive,theta,ensemble", Some("naive,theta,theta"), Path::new("-"), &lm, &[]).unwrap();
        let results = run_methods(&series, &methods, &opts).unwrap();
        let (naive, theta, ens) = (&results[0], &results[1], &results[2]);
        let points = |b: &[Backtest]| b.iter().map(|t| t.forecast.point.clone()).collect::<Vec<_>>();
        assert_eq!(points(&ens.1), points(&theta.1), "the median of naive, theta, theta is theta's");
        assert!(ens.0.seconds >= naive.0.seconds + theta.0.seconds, "{} {} {}", ens.0.seconds, naive.0.seconds, theta.0.seconds);
        let Err(err) = parse_methods("ensemble", Some("lm"), Path::new("-"), &lm, &[]) else { panic!("an ensemble of one") };
        let err = err.to_string();
        assert!(err.contains("two or more"), "{err}");
    }

    /// Where one member forecasts the held-out tails (the 4 values before each origin) clearly
    /// better than the members' median — seasonal naive on exactly repeating seasons, against
    /// naive and theta — the ensemble is that member's forecasts.
    #[test]
    fn an_ensemble_keeps_a_member_clearly_best_on_the_held_out_tails() {
        let series = panel(30, 40, |i, t| 10.0 + i as f64 + [0.0, 6.0, 2.0, 9.0][t % 4] * (1.0 + i as f64 / 10.0));
        let opts = Options::new(4, 4, 2);
        let lm = LmOptions::default();
        let methods = parse_methods("seasonal_naive,ensemble", Some("naive,theta,seasonal_naive"), Path::new("-"), &lm, &[]).unwrap();
        let results = run_methods(&series, &methods, &opts).unwrap();
        let points = |b: &[Backtest]| b.iter().map(|t| (t.series, t.window, t.forecast.point.clone())).collect::<Vec<_>>();
        assert_eq!(points(&results[1].1), points(&results[0].1), "seasonal naive alone");
        assert!(results[1].0.wql < 1e-9, "{:?}", results[1].0);
    }

    /// Calendar covariates read `ts` as dates: on integer periods they are refused, naming the
    /// file; the same rows with dates get them (a weekend flag per row).
    #[tokio::test]
    async fn calendar_covariates_need_dates_not_integer_periods() {
        use datafusion::arrow::array::{ArrayRef, Date32Array, Int64Array};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, ts: ArrayRef| {
            let value = Arc::new(Float64Array::from((0..14).map(f64::from).collect::<Vec<_>>())) as ArrayRef;
            write_parquet(
                dir.path(),
                name,
                vec![("series_id", Arc::new(StringArray::from(vec!["a"; 14])) as ArrayRef), ("ts", ts), ("value", value)],
            )
        };
        let weekend = ["calendar.weekend".to_string()];
        let periods = write("periods.parquet", Arc::new(Int64Array::from((0..14).collect::<Vec<i64>>())));
        let err = load(&periods, None, &weekend).await.unwrap_err().to_string();
        assert!(err.contains("periods.parquet") && err.contains("integers (periods)"), "{err}");
        assert_eq!(load(&periods, None, &[]).await.unwrap().axis, Axis::Periods);

        // 2024-01-01 (day 19723) was a Monday: days 5, 6, 12 and 13 are weekend days.
        let dates = write("dates.parquet", Arc::new(Date32Array::from((19723..19737).collect::<Vec<i32>>())));
        let panel = load(&dates, None, &weekend).await.unwrap();
        let flags: Vec<usize> = panel.series[0].covariates.iter().enumerate().filter(|&(_, &f)| f > 0.5).map(|(i, _)| i).collect();
        assert_eq!((panel.axis, flags), (Axis::Time, vec![5, 6, 12, 13]));
    }

    /// A long table written for statsforecast (`unique_id, ds, y`) or AutoGluon (`item_id,
    /// timestamp, target`) is read as restock's own; a table with no value column names the
    /// role and every name it looked for.
    #[tokio::test]
    async fn a_peers_long_table_is_read_as_it_is() {
        use datafusion::arrow::array::{ArrayRef, Date32Array};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, cols: [&str; 3]| {
            write_parquet(
                dir.path(),
                name,
                vec![
                    (cols[0], Arc::new(StringArray::from(vec!["b", "a", "a"])) as ArrayRef),
                    (cols[1], Arc::new(Date32Array::from(vec![19723, 19724, 19723])) as ArrayRef),
                    (cols[2], Arc::new(Float64Array::from(vec![7.0, 2.0, 1.0])) as ArrayRef),
                ],
            )
        };
        for cols in [["series_id", "ts", "value"], ["unique_id", "ds", "y"], ["item_id", "timestamp", "target"]] {
            let panel = load(&write(&format!("{}.parquet", cols[0]), cols), None, &[]).await.unwrap();
            let read: Vec<(&str, Vec<f64>)> = panel.series.iter().map(|s| (s.id.as_str(), s.values.clone())).collect();
            assert_eq!(read, vec![("a", vec![1.0, 2.0]), ("b", vec![7.0])], "{cols:?}");
        }
        let err = load(&write("bad.parquet", ["unique_id", "ds", "units"]), None, &[]).await.unwrap_err().to_string();
        assert!(
            err.contains("bad.parquet") && err.contains("no column `value`") && err.contains("value, y, target") && err.contains("units"),
            "{err}"
        );
    }

    /// A CSV long table (plain, tab-separated, or gzipped), with dates, date-times or integer
    /// periods as text, reads as the same Parquet table does; a text table may be CSV too.
    #[tokio::test]
    async fn a_csv_long_table_reads_as_parquet_does() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, body: &str| {
            let p = dir.path().join(name);
            if name.ends_with(".gz") {
                let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
                gz.write_all(body.as_bytes()).unwrap();
                gz.finish().unwrap();
            } else {
                std::fs::write(&p, body).unwrap();
            }
            p
        };
        let rows = "unique_id,ds,y\nb,2024-01-01,7\na,2024-01-02,2\na,2024-01-01,1\n";
        let hours = "item_id,timestamp,target\nb,2024-01-01 00:00:00,7\na,2024-01-01 01:00:00,2\na,2024-01-01 00:00:00,1\n";
        let periods = "series_id\tts\tvalue\nb\t1\t7\na\t2\t2\na\t1\t1\n";
        for (name, body, axis) in
            [("d.csv", rows, Axis::Time), ("d.csv.gz", rows, Axis::Time), ("h.csv", hours, Axis::Time), ("p.tsv", periods, Axis::Periods)]
        {
            let panel = load(&put(name, body), None, &[]).await.unwrap();
            let read: Vec<(&str, Vec<f64>)> = panel.series.iter().map(|s| (s.id.as_str(), s.values.clone())).collect();
            assert_eq!((read, panel.axis), (vec![("a", vec![1.0, 2.0]), ("b", vec![7.0])], axis), "{name}");
        }
        let text = put("t.csv", "unique_id,text\na,red socks\n");
        let panel = load(&put("d2.csv", rows), Some(&text), &[]).await.unwrap();
        assert_eq!(panel.series[0].text.as_deref(), Some("red socks"));
        let err = load(&put("bad.csv", "unique_id,ds\na,2024-01-01\n"), None, &[]).await.unwrap_err().to_string();
        assert!(err.contains("bad.csv") && err.contains("no column `value`"), "{err}");
    }

    /// Days missing from a daily series are put in as missing values (the season stays in
    /// phase); two rows of a series at one time are refused, naming the series and the day.
    #[tokio::test]
    async fn missing_days_are_missing_values_and_a_repeated_day_is_refused() {
        use datafusion::arrow::array::{ArrayRef, Date32Array};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rows: &[(&str, i32, f64)]| {
            write_parquet(
                dir.path(),
                name,
                vec![
                    ("series_id", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef),
                    ("ts", Arc::new(Date32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())) as ArrayRef),
                    ("value", Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())) as ArrayRef),
                ],
            )
        };
        // 2024-01-01 is day 19723; `a` misses the 3rd and 4th, `b` misses nothing.
        let mut rows: Vec<(&str, i32, f64)> = [0, 1, 4, 5, 6].iter().map(|&d| ("a", 19723 + d, d as f64)).collect();
        rows.extend((0..7).map(|d| ("b", 19723 + d, 1.0)));
        let panel = load(&write("gaps.parquet", &rows), None, &["calendar.weekend".to_string()]).await.unwrap();
        assert_eq!(panel.filled, Filled { times: 2, series: 1 });
        let a = &panel.series[0];
        assert_eq!(a.ts, (0..7).map(|d| (19723 + d) * DAY).collect::<Vec<_>>());
        let shown: Vec<f64> = a.values.iter().map(|v| if v.is_nan() { -1.0 } else { *v }).collect();
        assert_eq!(shown, [0.0, 1.0, -1.0, -1.0, 4.0, 5.0, 6.0]);
        assert_eq!(a.covariates.len(), 7, "calendar covariates for the filled days too");
        assert_eq!(panel.series[1].values, vec![1.0; 7]);

        rows.push(("b", 19725, 2.0));
        let err = load(&write("twice.parquet", &rows), None, &[]).await.unwrap_err().to_string();
        assert!(err.contains("twice.parquet") && err.contains("series `b` has two rows at 2024-01-03"), "{err}");
    }
}
