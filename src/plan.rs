//! spec -> plan: everything that can be checked before a run starts.
//!
//! [`build`] resolves names, the DAG, templates, params and stage configs (no I/O but SQL files).
//! [`check_schemas`] then walks the DAG in order and plans every stage against its input schemas
//! (Parquet footers, published tables, upstream plans), so a typo in a column name fails in
//! seconds instead of after an hour of upstream work. Nothing here executes a stage.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};
use url::Url;

use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::spec::{self, Config, FileLayout, InputSource, OutputSpec, ParamType, SpecFile, YamlValue, is_identifier};
use crate::stage::{Registry, StageDecl, StageTask};
use crate::storage::{self, Lake};
use crate::template::{self, RunVars};

/// How a run is parameterised from the outside (CLI, scheduler, resume).
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub run_id: String,
    /// The run's day, when `interval` is not given: it covers [run_date, run_date + 1 day) in the
    /// schedule's time zone.
    pub run_date: NaiveDate,
    /// The exact data interval (UTC) of a scheduled or backfilled run; `run_date` is then the
    /// local date the interval starts on.
    pub interval: Option<crate::schedule::Interval>,
    /// `key=value` pairs from the command line; typed by the pipeline's param declarations.
    pub params: Vec<(String, String)>,
    pub lake_override: Option<String>,
    /// Relative lake paths resolve against this (the working directory).
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 0, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): exponential, capped, full jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.backoff.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let cap = exp.min(self.max_backoff);
        cap.mul_f64(rand::random::<f64>())
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Parquet {
        url: Url,
        layout: FileLayout,
    },
    Table {
        name: String,
        version: Option<i64>,
    },
    /// Output of stage `producer` (index into [`Plan::stages`]).
    Output {
        name: String,
        producer: usize,
    },
}

#[derive(Debug, Clone)]
pub struct PlannedInput {
    pub name: String,
    pub source: Source,
    pub allow_empty: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub id: String,
    pub kind: String,
    pub pos: Pos,
    /// Indices of stages that must succeed first (explicit `needs` plus input producers).
    pub deps: Vec<usize>,
    pub inputs: Vec<PlannedInput>,
    pub outputs: Vec<OutputSpec>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub task: Arc<dyn StageTask>,
    /// The rendered config as JSON (part of the stage's fingerprint).
    pub config_text: String,
    /// GPUs it holds while running (`resources: { gpu: N }`).
    pub gpus: u32,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub timezone: chrono_tz::Tz,
    /// The parsed expression, for computing intervals.
    pub times: crate::schedule::Schedule,
    pub catchup: crate::schedule::Catchup,
    pub overlap: crate::schedule::Overlap,
    pub max_active_runs: usize,
    pub resume_interrupted: bool,
    pub sla: Option<Duration>,
}

/// A webhook and the events it is told of.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub on: Vec<crate::schedule::Event>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub path: PathBuf,
    pub spec_text: String,
    pub spec_hash: String,
    pub lake: Lake,
    pub vars: RunVars,
    /// The run's data interval in UTC ([`RunVars`] holds it in the schedule's local time).
    pub interval: crate::schedule::Interval,
    pub schedule: Option<Schedule>,
    pub notify: Vec<Webhook>,
    /// Topological order: every stage comes after the stages it depends on.
    pub stages: Vec<PlannedStage>,
}

impl Plan {
    pub fn stage_index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }

    /// `i` and every stage that (transitively) depends on it.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        let mut out = vec![i];
        for (j, s) in self.stages.iter().enumerate().skip(i + 1) {
            if s.deps.iter().any(|d| out.contains(d)) {
                out.push(j);
            }
        }
        out
    }
}

fn pos(path: &Path, loc: &serde_saphyr::Location) -> Pos {
    Pos::from_saphyr(path, loc)
}

/// A duration as written in a pipeline (`30s`, `10m`, `2h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `30s`, `10m`, `2h`"))
}

/// Serde `deserialize_with` for a duration field of a stage's config.
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The start-time part of a run id (UTC), which `restock gc` reads back to date staging.
pub const RUN_ID_TIME_FORMAT: &str = "%Y%m%d-%H%M%S";

/// `YYYYMMDD-HHMMSS-mmmr`: the UTC start time to the millisecond (`mmm`) and a random hex digit
/// (`r`). Run ids sort by start time, which the publish's no-stale-overwrite rule relies on.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!("{}-{:03}{:x}", now.format(RUN_ID_TIME_FORMAT), now.timestamp_subsec_millis().min(999), rand::random::<u8>() % 16)
}

/// Check a pipeline and turn it into an executable plan. Every problem found is reported, not
/// just the first, each at its file:line:column.
pub fn build(spec: &SpecFile, opts: &PlanOptions, registry: &Registry) -> Result<Plan, Diagnostics> {
    let mut ck = Checker { file: spec.path.as_path(), diags: Diagnostics::default() };
    let header = ck.header(spec, opts);
    let defaults = ck.defaults(&spec.doc.defaults);
    let stages = &spec.doc.stages.value;
    if stages.is_empty() {
        ck.diags.push(Diagnostic::new(pos(ck.file, &spec.doc.stages.referenced), "`stages` is empty"));
    }
    let names = ck.names(stages);
    let mut drafts: Vec<Draft> = stages.iter().enumerate().map(|(i, s)| ck.wire(i, &s.value, &names, &header, &defaults)).collect();
    let order = ck.order(stages, &drafts);
    let pipeline_dir = ck.file.parent().map(Path::to_path_buf).unwrap_or_default();
    for (s, draft) in stages.iter().zip(&mut drafts) {
        ck.prepare(s, draft, &header.vars, &pipeline_dir, registry);
    }
    if !ck.diags.is_empty() {
        return Err(ck.diags);
    }
    Ok(assemble(spec, header, stages, drafts, &order))
}

/// The pipeline file being checked and every problem found in it so far.
struct Checker<'a> {
    file: &'a Path,
    diags: Diagnostics,
}

/// What a pipeline says above its stages, checked.
struct Header {
    name: String,
    schedule: Option<Schedule>,
    notify: Vec<Webhook>,
    interval: crate::schedule::Interval,
    vars: RunVars,
    /// `None` where the lake did not open (a diagnostic says why).
    lake: Option<Lake>,
}

/// `defaults:`, for every stage that does not set its own.
struct Defaults {
    retry: RetryPolicy,
    timeout: Option<Duration>,
}

/// Stage ids and output names, each with the index of the stage that declares it.
struct Names<'s> {
    ids: HashMap<&'s str, usize>,
    producers: HashMap<&'s str, usize>,
}

/// One stage as it is checked, in the order the file lists the stages.
struct Draft {
    /// Stages it needs or reads from, sorted.
    deps: Vec<usize>,
    inputs: Vec<PlannedInput>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    /// Set once its kind prepared it.
    task: Option<Arc<dyn StageTask>>,
    config_text: String,
}

impl Checker<'_> {
    fn header(&mut self, spec: &SpecFile, opts: &PlanOptions) -> Header {
        let (file, doc) = (self.file, &spec.doc);
        let name = doc.name.value.clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.diags.push(Diagnostic::new(
                pos(file, &doc.name.referenced),
                format!("pipeline name `{name}` may only use letters, digits, `_` and `-`"),
            ));
        }
        let schedule = doc.schedule.as_ref().and_then(|s| check_schedule(file, &s.value).map_err(|d| self.diags.push(d)).ok());
        let notify = doc.notify.iter().filter_map(|n| check_webhook(file, n).map_err(|d| self.diags.push(d)).ok()).collect();
        let params = resolve_params(spec, opts, &mut self.diags);
        let tz = schedule.as_ref().map_or(chrono_tz::UTC, |s| s.timezone);
        let interval = opts.interval.unwrap_or_else(|| crate::schedule::day(opts.run_date, tz));
        let vars = RunVars::for_interval(&opts.run_id, &name, interval, tz, params);
        let lake_str = opts
            .lake_override
            .clone()
            .or_else(|| doc.lake.as_ref().map(|l| l.value.clone()))
            .unwrap_or_else(|| storage::DEFAULT_LAKE.into());
        let lake = Lake::open(&lake_str, &opts.base_dir)
            .map_err(|e| {
                let p = doc.lake.as_ref().map_or(Pos::file_only(file), |l| pos(file, &l.referenced));
                self.diags.push(Diagnostic::new(p, format!("lake `{lake_str}`: {e:#}")));
            })
            .ok();
        Header { name, schedule, notify, interval, vars, lake }
    }

    fn defaults(&mut self, d: &spec::StageDefaults) -> Defaults {
        let retry = match &d.retries {
            Some(r) => retry_policy(self.file, r, None, &mut self.diags),
            None => RetryPolicy::default(),
        };
        Defaults { retry, timeout: d.timeout.as_ref().and_then(|t| self.duration(t, None)) }
    }

    /// A `timeout:`; `None` where it does not parse (a diagnostic says why).
    fn duration(&mut self, t: &serde_saphyr::Spanned<String>, stage: Option<&str>) -> Option<Duration> {
        parse_duration(&t.value)
            .map_err(|e| {
                let d = Diagnostic::new(pos(self.file, &t.referenced), e);
                self.diags.push(match stage {
                    Some(id) => d.stage(id),
                    None => d,
                });
            })
            .ok()
    }

    /// Pass 1: stage ids and who writes each output, each declared once.
    fn names<'s>(&mut self, stages: &'s [serde_saphyr::Spanned<spec::StageSpec>]) -> Names<'s> {
        let file = self.file;
        let mut names = Names { ids: HashMap::new(), producers: HashMap::new() };
        for (i, s) in stages.iter().enumerate() {
            let st = &s.value;
            let id = st.id.value.as_str();
            if !is_identifier(id) {
                self.diags.push(Diagnostic::new(
                    pos(file, &st.id.referenced),
                    format!("stage id `{id}` must be an identifier (letters, digits, `_`)"),
                ));
            }
            if let Some(&first) = names.ids.get(id) {
                let line = stages[first].value.id.referenced.line();
                let msg = format!("duplicate stage id `{id}` (first defined at line {line})");
                self.diags.push(Diagnostic::new(pos(file, &st.id.referenced), msg).stage(id));
            } else {
                names.ids.insert(id, i);
            }
            for o in &st.outputs {
                let out = o.value.name.as_str();
                if !is_identifier(out) {
                    self.diags
                        .push(Diagnostic::new(pos(file, &o.referenced), format!("output name `{out}` must be an identifier")).stage(id));
                }
                if let Some(&other) = names.producers.get(out) {
                    let msg = format!("output `{out}` is written by two stages: `{}` and `{id}`", stages[other].value.id.value);
                    self.diags.push(Diagnostic::new(pos(file, &o.referenced), msg).stage(id));
                } else {
                    names.producers.insert(out, i);
                }
            }
        }
        names
    }

    /// Pass 2: stage `i`'s edges, inputs, retries and timeout.
    fn wire(&mut self, i: usize, st: &spec::StageSpec, names: &Names, header: &Header, defaults: &Defaults) -> Draft {
        let id = st.id.value.as_str();
        let mut deps = vec![];
        for need in &st.needs {
            match names.ids.get(need.value.as_str()) {
                Some(&j) if j == i => {
                    self.diags.push(Diagnostic::new(pos(self.file, &need.referenced), "a stage cannot need itself").stage(id))
                }
                Some(&j) => deps.push(j),
                None => self.diags.push(
                    Diagnostic::new(pos(self.file, &need.referenced), format!("`needs` names unknown stage `{}`", need.value))
                        .stage(id)
                        .help_opt(did_you_mean(&need.value, names.ids.keys().copied())),
                ),
            }
        }
        let mut inputs = vec![];
        for (input_name, spec_in) in &st.inputs {
            if let Some(input) = self.input(i, id, input_name, spec_in, names, header) {
                if let Source::Output { producer, .. } = input.source {
                    deps.push(producer);
                }
                inputs.push(input);
            }
        }
        deps.sort_unstable();
        deps.dedup();
        let retry = match &st.retries {
            Some(r) => retry_policy(self.file, r, Some(id), &mut self.diags),
            None => defaults.retry.clone(),
        };
        let timeout = match &st.timeout {
            Some(t) => self.duration(t, Some(id)),
            None => defaults.timeout,
        };
        Draft { deps, inputs, retry, timeout, task: None, config_text: String::new() }
    }

    /// One input of stage `i` (`id`), resolved; `None` where it cannot be (a diagnostic says why).
    fn input(
        &mut self,
        i: usize,
        id: &str,
        input_name: &str,
        spec_in: &serde_saphyr::Spanned<spec::InputSpec>,
        names: &Names,
        header: &Header,
    ) -> Option<PlannedInput> {
        let p = pos(self.file, &spec_in.referenced);
        let problem = |msg: String| Diagnostic::new(p.clone(), msg).stage(id);
        if !is_identifier(input_name) {
            self.diags.push(problem(format!("input name `{input_name}` must be an identifier (it becomes a SQL table name)")));
        }
        let source = match &spec_in.value.source {
            InputSource::Output(o) => match names.producers.get(o.as_str()) {
                Some(&j) if j == i => {
                    self.diags.push(problem(format!("input `{input_name}` reads this stage's own output `{o}`")));
                    return None;
                }
                Some(&j) => Source::Output { name: o.clone(), producer: j },
                None => {
                    let help = did_you_mean(o, names.producers.keys().copied())
                        .unwrap_or_else(|| "for a published table write `table:NAME`; for files write a path such as `raw/sales/`".into());
                    self.diags.push(problem(format!("input `{input_name}` reads `{o}`, which no stage outputs")).help(help));
                    return None;
                }
            },
            InputSource::Table { name, version } => Source::Table { name: name.clone(), version: *version },
            InputSource::Parquet(path) => {
                let rendered = render_checked(path, &header.vars, &p, id).map_err(|d| self.diags.push(d)).ok()?;
                let url = header.lake.as_ref()?.resolve(&rendered);
                let url = url.map_err(|e| self.diags.push(problem(format!("input `{input_name}`: {e:#}")))).ok()?;
                Source::Parquet { url, layout: spec_in.value.layout.clone() }
            }
        };
        for part in &spec_in.value.layout.partitions {
            if let Err(e) = storage::inputs::partition_type(part) {
                self.diags.push(problem(e.to_string()));
            }
        }
        Some(PlannedInput { name: input_name.to_string(), source, allow_empty: spec_in.value.allow_empty, pos: p })
    }

    /// The stages in an order that runs each after what it depends on; where they form a cycle,
    /// a diagnostic names it (and the file's order stands in).
    fn order(&mut self, stages: &[serde_saphyr::Spanned<spec::StageSpec>], drafts: &[Draft]) -> Vec<usize> {
        let deps: Vec<Vec<usize>> = drafts.iter().map(|d| d.deps.clone()).collect();
        topo_order(&deps).unwrap_or_else(|cycle| {
            let names: Vec<&str> = cycle.iter().map(|&i| stages[i].value.id.value.as_str()).collect();
            let first = &stages[cycle[0]].value;
            self.diags.push(
                Diagnostic::new(pos(self.file, &first.id.referenced), format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]))
                    .stage(first.id.value.clone()),
            );
            (0..stages.len()).collect()
        })
    }

    /// Pass 3: the stage's kind checks its config (templates rendered, SQL parsed) and prepares
    /// its task.
    fn prepare(
        &mut self,
        s: &serde_saphyr::Spanned<spec::StageSpec>,
        draft: &mut Draft,
        vars: &RunVars,
        pipeline_dir: &Path,
        registry: &Registry,
    ) {
        let st = &s.value;
        let id = st.id.value.as_str();
        let Some(kind) = registry.get(&st.kind.value) else {
            let names: Vec<&str> = registry.names().collect();
            self.diags.push(
                Diagnostic::new(
                    pos(self.file, &st.kind.referenced),
                    format!("unknown stage kind `{}` (known kinds: {})", st.kind.value, names.join(", ")),
                )
                .stage(id)
                .help_opt(did_you_mean(&st.kind.value, names.iter().copied())),
            );
            return;
        };
        let config = match render_config(Config::new(self.file, st.config.as_ref(), s.referenced), vars, id) {
            Ok(c) => c,
            Err(d) => return self.diags.0.extend(d.0),
        };
        draft.config_text = config.value.to_string();
        let input_names: Vec<String> = draft.inputs.iter().map(|x| x.name.clone()).collect();
        let outputs: Vec<OutputSpec> = st.outputs.iter().map(|o| o.value.clone()).collect();
        let stage_pos = pos(self.file, &st.id.referenced);
        let decl = StageDecl { id, pos: &stage_pos, config: &config, inputs: &input_names, outputs: &outputs, vars, pipeline_dir };
        match kind.prepare(&decl) {
            Ok(task) => draft.task = Some(task),
            Err(d) => self.diags.0.extend(d.0),
        }
    }
}

/// The checked stages in topological `order`, their dependencies re-indexed to it, as a plan.
fn assemble(
    spec: &SpecFile,
    header: Header,
    stages: &[serde_saphyr::Spanned<spec::StageSpec>],
    drafts: Vec<Draft>,
    order: &[usize],
) -> Plan {
    let new_index: HashMap<usize, usize> = order.iter().enumerate().map(|(new, &old)| (old, new)).collect();
    let mut drafts: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
    let mut hasher = Sha256::new();
    hasher.update(spec.text.as_bytes());
    let mut planned = vec![];
    for &old in order {
        let st = &stages[old].value;
        let draft = drafts[old].take().expect("each stage once");
        let task = draft.task.expect("no diagnostics means every stage prepared");
        if let Some(fp) = task.fingerprint() {
            hasher.update(fp.as_bytes());
        }
        let mut inputs = draft.inputs;
        for inp in &mut inputs {
            if let Source::Output { producer, .. } = &mut inp.source {
                *producer = new_index[producer];
            }
        }
        let mut deps: Vec<usize> = draft.deps.iter().map(|x| new_index[x]).collect();
        deps.sort_unstable();
        planned.push(PlannedStage {
            id: st.id.value.clone(),
            kind: st.kind.value.clone(),
            pos: pos(&spec.path, &st.id.referenced),
            deps,
            inputs,
            outputs: st.outputs.iter().map(|o| o.value.clone()).collect(),
            retry: draft.retry,
            timeout: draft.timeout,
            task,
            config_text: draft.config_text,
            gpus: st.resources.as_ref().map_or(0, |r| r.value.gpu),
        });
    }
    Plan {
        name: header.name,
        path: spec.path.clone(),
        spec_text: spec.text.clone(),
        spec_hash: hex::encode(hasher.finalize()),
        lake: header.lake.expect("no diagnostics means the lake opened"),
        vars: header.vars,
        interval: header.interval,
        schedule: header.schedule,
        notify: header.notify,
        stages: planned,
    }
}

fn check_schedule(file: &Path, s: &spec::ScheduleSpec) -> Result<Schedule, Diagnostic> {
    let cron = s.cron.value.trim().to_string();
    let timezone = match &s.timezone {
        None => chrono_tz::UTC,
        Some(tz) => tz.value.parse::<chrono_tz::Tz>().map_err(|_| {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
            Diagnostic::new(pos(file, &tz.referenced), format!("unknown IANA time zone `{}`", tz.value))
                .help_opt(did_you_mean(&tz.value, names))
        })?,
    };
    let times =
        crate::schedule::Schedule::new(&cron, timezone).map_err(|e| Diagnostic::new(pos(file, &s.cron.referenced), format!("{e:#}")))?;
    let max_active_runs = match &s.max_active_runs {
        Some(m) if m.value == 0 => return Err(Diagnostic::new(pos(file, &m.referenced), "max_active_runs must be at least 1")),
        Some(m) => m.value,
        None => 1,
    };
    let sla = match &s.sla {
        None => None,
        Some(d) => Some(parse_duration(&d.value).map_err(|e| Diagnostic::new(pos(file, &d.referenced), format!("sla: {e}")))?),
    };
    Ok(Schedule {
        cron,
        timezone,
        times,
        catchup: s.catchup,
        overlap: s.overlap,
        max_active_runs,
        resume_interrupted: s.resume_interrupted.unwrap_or(true),
        sla,
    })
}

fn check_webhook(file: &Path, n: &serde_saphyr::Spanned<spec::NotifySpec>) -> Result<Webhook, Diagnostic> {
    let at = pos(file, &n.value.url.referenced);
    let url =
        url::Url::parse(&n.value.url.value).map_err(|e| Diagnostic::new(at.clone(), format!("notify url `{}`: {e}", n.value.url.value)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Diagnostic::new(at, format!("notify url `{url}`: only http and https webhooks are supported")));
    }
    let default = vec![crate::schedule::Event::Failure, crate::schedule::Event::SlaMiss];
    Ok(Webhook { url, on: n.value.on.clone().unwrap_or(default) })
}

fn retry_policy(file: &Path, r: &serde_saphyr::Spanned<spec::RetrySpec>, stage: Option<&str>, diags: &mut Diagnostics) -> RetryPolicy {
    let mut p = RetryPolicy { max_retries: r.value.max, ..RetryPolicy::default() };
    for (field, target) in [(&r.value.backoff, &mut p.backoff), (&r.value.max_backoff, &mut p.max_backoff)] {
        if let Some(s) = field {
            match parse_duration(s) {
                Ok(d) => *target = d,
                Err(e) => {
                    let mut d = Diagnostic::new(pos(file, &r.referenced), format!("retries: {e}"));
                    if let Some(st) = stage {
                        d = d.stage(st);
                    }
                    diags.push(d);
                }
            }
        }
    }
    if r.value.max > 100 {
        diags.push(Diagnostic::new(pos(file, &r.referenced), "retries.max above 100 is almost certainly a mistake"));
    }
    p
}

fn yaml_to_json(v: &YamlValue) -> serde_json::Value {
    match v {
        YamlValue::Null => serde_json::Value::Null,
        YamlValue::Bool(b) => (*b).into(),
        YamlValue::Int(i) => (*i).into(),
        YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
        YamlValue::Str(s) => s.clone().into(),
        YamlValue::Seq(_) | YamlValue::Map(_) => serde_json::Value::Null,
    }
}

/// Typed params: declared defaults, overridden by `--param k=v`.
fn resolve_params(spec: &SpecFile, opts: &PlanOptions, diags: &mut Diagnostics) -> BTreeMap<String, serde_json::Value> {
    let file = spec.path.as_path();
    let mut out = BTreeMap::new();
    for (name, p) in &spec.doc.params {
        let at = pos(file, &p.referenced);
        if template::BUILTIN_VARS.contains(&name.as_str()) {
            diags.push(Diagnostic::new(at.clone(), format!("param `{name}` would shadow the built-in template variable of that name")));
        }
        if !is_identifier(name) {
            diags.push(Diagnostic::new(at.clone(), format!("param name `{name}` must be an identifier")));
        }
        if let Some(d) = &p.value.default {
            let raw = yaml_to_json(&d.value);
            let text = match &raw {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match coerce_param(p.value.ty, &text) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(e) => diags.push(Diagnostic::new(pos(file, &d.referenced), format!("default of param `{name}`: {e}"))),
            }
        }
    }
    for (k, v) in &opts.params {
        match spec.doc.params.get(k) {
            None => {
                let names: Vec<&str> = spec.doc.params.keys().map(String::as_str).collect();
                diags.push(
                    Diagnostic::new(Pos::file_only(file), format!("--param {k}={v}: the pipeline declares no param `{k}`"))
                        .help_opt(did_you_mean(k, names.iter().copied())),
                );
            }
            Some(p) => match coerce_param(p.value.ty, v) {
                Ok(val) => {
                    out.insert(k.clone(), val);
                }
                Err(e) => diags.push(Diagnostic::new(Pos::file_only(file), format!("--param {k}={v}: {e}"))),
            },
        }
    }
    for (name, p) in &spec.doc.params {
        if !out.contains_key(name) && p.value.default.is_none() {
            diags.push(Diagnostic::new(
                pos(file, &p.referenced),
                format!("param `{name}` has no default and was not given (--param {name}=...)"),
            ));
        }
    }
    out
}

fn coerce_param(ty: ParamType, text: &str) -> Result<serde_json::Value, String> {
    let t = text.trim();
    match ty {
        ParamType::Int => t.parse::<i64>().map(Into::into).map_err(|_| format!("`{t}` is not an int")),
        ParamType::Float => {
            t.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Into::into).ok_or_else(|| format!("`{t}` is not a float"))
        }
        ParamType::Bool => t.parse::<bool>().map(Into::into).map_err(|_| format!("`{t}` is not a bool (true/false)")),
        ParamType::String => Ok(text.into()),
        ParamType::Date => {
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| d.to_string().into()).map_err(|_| format!("`{t}` is not a date (YYYY-MM-DD)"))
        }
    }
}

fn render_checked(text: &str, vars: &RunVars, at: &Pos, stage: &str) -> Result<String, Diagnostic> {
    let known = vars.known_names();
    match template::unknown_variables(text, &known) {
        Err(e) => return Err(Diagnostic::new(at.clone(), format!("template error: {}", e.message)).stage(stage)),
        Ok(unknown) => {
            if let Some((name, _)) = unknown.into_iter().next() {
                return Err(Diagnostic::new(at.clone(), format!("unknown template variable `{name}`"))
                    .stage(stage)
                    .help_opt(did_you_mean(&name, known.iter().map(String::as_str))));
            }
        }
    }
    template::render(text, vars).map_err(|e| Diagnostic::new(at.clone(), format!("template error: {}", e.message)).stage(stage))
}

/// Render every templated string in a config. A string that is a single `{{ ... }}` and renders
/// to a number or bool becomes that number or bool, so `horizon: "{{ horizon }}"` works.
fn render_config(mut config: Config, vars: &RunVars, stage: &str) -> Result<Config, Diagnostics> {
    let mut diags = Diagnostics::default();
    fn walk(v: &mut serde_json::Value, path: String, f: &mut dyn FnMut(&str, &mut serde_json::Value)) {
        match v {
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, if path.is_empty() { i.to_string() } else { format!("{path}/{i}") }, f);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    walk(item, if path.is_empty() { k.clone() } else { format!("{path}/{k}") }, f);
                }
            }
            leaf => f(&path, leaf),
        }
    }
    let positions = config.clone();
    walk(&mut config.value, String::new(), &mut |path, leaf| {
        let serde_json::Value::String(s) = leaf else { return };
        if !template::is_templated(s) {
            return;
        }
        match render_checked(s, vars, &positions.pos(path), stage) {
            Ok(rendered) => {
                let whole = s.trim().starts_with("{{") && s.trim().ends_with("}}") && s.matches("{{").count() == 1;
                *leaf = match serde_json::from_str::<serde_json::Value>(&rendered) {
                    Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) if whole => v,
                    _ => serde_json::Value::String(rendered),
                };
            }
            Err(d) => diags.push(d),
        }
    });
    diags.into_result(config)
}

/// Kahn's algorithm, stable (ties keep file order). On a cycle, returns the stages of one cycle.
fn topo_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = vec![];
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk dependencies from a stuck node until a node repeats: that loop is a cycle.
    let stuck: Vec<usize> = (0..n).filter(|i| !order.contains(i)).collect();
    let mut path = vec![stuck[0]];
    loop {
        let last = *path.last().expect("non-empty");
        let next = deps[last].iter().copied().find(|d| stuck.contains(d)).expect("a stuck node has a stuck dependency");
        if let Some(at) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[at..].to_vec();
            cycle.reverse();
            return Err(cycle);
        }
        path.push(next);
    }
}

/// What schema checking could not verify, for the user to know.
#[derive(Debug, Default)]
pub struct SchemaReport {
    pub checked: Vec<String>,
    /// Stages whose inputs have no data yet (or whose upstream could not be checked).
    pub unchecked: Vec<(String, String)>,
    /// Stages whose input files are there but broken (corrupt, a column changed type, not in
    /// the declared order): the pipeline is valid, but running it now would fail there.
    pub input_problems: Vec<(String, String)>,
}

/// Plan every stage against real input schemas, in DAG order.
pub async fn check_schemas(plan: &Plan) -> Result<SchemaReport, Diagnostics> {
    let mut schemas = SchemaSources::new(plan);
    let mut diags = Diagnostics::default();
    let mut report = SchemaReport::default();
    for stage in &plan.stages {
        let mut inputs = BTreeMap::new();
        let mut missing: Option<String> = None;
        for input in &stage.inputs {
            match schemas.of(input, &mut report.input_problems, &stage.id).await {
                Ok(s) => {
                    inputs.insert(input.name.clone(), s);
                }
                Err(why) => {
                    missing.get_or_insert(why);
                }
            }
        }
        let planned = match missing {
            Some(why) => {
                report.unchecked.push((stage.id.clone(), why));
                None
            }
            None => match stage.task.plan(&inputs).await {
                Ok(outs) => {
                    report.checked.push(stage.id.clone());
                    Some(outs)
                }
                Err(d) => {
                    diags.0.extend(d.0);
                    None
                }
            },
        };
        // An output whose stage could not be planned is unknown to the stages downstream.
        let outs = planned.map_or_else(|| vec![None; stage.outputs.len()], |outs| outs.into_iter().map(Some).collect());
        for (o, s) in stage.outputs.iter().zip(outs) {
            schemas.outputs.insert(o.name.clone(), s);
        }
    }
    diags.into_result(report)
}

/// Where [`check_schemas`] finds an input's schema: the files, the published table, or the
/// planned output of a stage upstream.
struct SchemaSources<'a> {
    plan: &'a Plan,
    ctx: SessionContext,
    /// Unpinned `table:` inputs read the last completed publish (see storage::commit).
    visible: storage::commit::Visible,
    /// Each output planned so far; `None` where its stage could not be checked.
    outputs: HashMap<String, Option<SchemaRef>>,
}

impl<'a> SchemaSources<'a> {
    fn new(plan: &'a Plan) -> Self {
        let ctx: SessionContext = crate::engine::session();
        plan.lake.register(&ctx);
        SchemaSources { plan, ctx, visible: Default::default(), outputs: HashMap::new() }
    }

    /// The input's schema, or why it cannot be checked yet. Files that are there but broken
    /// are also an input problem of `stage`.
    async fn of(&self, input: &PlannedInput, problems: &mut Vec<(String, String)>, stage: &str) -> Result<SchemaRef, String> {
        let lake = &self.plan.lake;
        match &input.source {
            Source::Parquet { url, layout } => match storage::inputs::inspect(&self.ctx, lake, url, layout, &input.name).await {
                Ok(p) => Ok(p.table_schema()),
                Err(e) if e.downcast_ref::<storage::inputs::MissingInput>().is_some() => Err(format!("{e:#}")),
                Err(e) => {
                    problems.push((stage.to_string(), format!("{e:#}")));
                    Err(format!("input `{}` is broken (see above)", input.name))
                }
            },
            Source::Table { name, version } => {
                let opened = match self.visible.version(lake, name, *version).await {
                    Ok(v) => storage::delta::open(lake, name, v).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(Some(t)) => t.snapshot().map(|s| s.snapshot().arrow_schema()).map_err(|e| format!("{e:#}")),
                    Ok(None) => Err(format!("published table `{name}` does not exist yet")),
                    Err(e) => Err(format!("{e:#}")),
                }
            }
            Source::Output { name, .. } => {
                self.outputs.get(name).cloned().flatten().ok_or_else(|| format!("upstream output `{name}` could not be checked"))
            }
        }
    }
}
