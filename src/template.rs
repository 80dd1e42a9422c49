//! `{{ ... }}` templating for pipeline strings and SQL files (minijinja, strict undefined).
//!
//! Strict mode turns a typo such as `{{ run_dat }}` into an error instead of an empty string,
//! and validation checks every template's variables up front, before anything runs.
use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use minijinja::{Environment, UndefinedBehavior, Value};

/// Values a run exposes to templates. Params are exposed at top level (`{{ horizon }}`) and
/// under `params` (`{{ params.horizon }}`).
#[derive(Debug, Clone)]
pub struct RunVars {
    pub run_id: String,
    pub pipeline: String,
    pub run_date: NaiveDate,
    pub interval_start: NaiveDateTime,
    pub interval_end: NaiveDateTime,
    pub params: BTreeMap<String, serde_json::Value>,
}

pub const BUILTIN_VARS: &[&str] = &["run_id", "pipeline", "run_date", "interval_start", "interval_end", "params"];

impl RunVars {
    /// The variables of a run over `interval` (UTC), shown in `tz`'s wall-clock time; `run_date`
    /// is the local date the interval starts on.
    pub fn for_interval(
        run_id: &str,
        pipeline: &str,
        interval: crate::schedule::Interval,
        tz: chrono_tz::Tz,
        params: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        let (start, end) = (crate::schedule::local(interval.start, tz), crate::schedule::local(interval.end, tz));
        Self { run_id: run_id.into(), pipeline: pipeline.into(), run_date: start.date(), interval_start: start, interval_end: end, params }
    }

    pub fn known_names(&self) -> Vec<String> {
        BUILTIN_VARS.iter().map(|s| s.to_string()).chain(self.params.keys().cloned()).collect()
    }

    fn context(&self) -> Value {
        let mut ctx: BTreeMap<String, Value> = self.params.iter().map(|(k, v)| (k.clone(), Value::from_serialize(v))).collect();
        ctx.insert("params".into(), Value::from_serialize(&self.params));
        ctx.insert("run_id".into(), Value::from(self.run_id.clone()));
        ctx.insert("pipeline".into(), Value::from(self.pipeline.clone()));
        ctx.insert("run_date".into(), Value::from(self.run_date.format("%Y-%m-%d").to_string()));
        ctx.insert("interval_start".into(), Value::from(self.interval_start.format("%Y-%m-%dT%H:%M:%S").to_string()));
        ctx.insert("interval_end".into(), Value::from(self.interval_end.format("%Y-%m-%dT%H:%M:%S").to_string()));
        Value::from(ctx)
    }
}

/// A template problem, with the byte offset of the offending text when known.
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub message: String,
    pub line: Option<usize>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // `{{ interval_end | date }}`: the calendar date part of a timestamp variable.
    env.add_filter("date", |s: String| s.chars().take(10).collect::<String>());
    env
}

/// Whether a string contains template syntax at all (most do not; skip the engine for those).
pub fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Variables used by `source` that `vars` does not define.
pub fn unknown_variables(source: &str, known: &[String]) -> Result<Vec<(String, Option<usize>)>, TemplateError> {
    if !is_templated(source) {
        return Ok(vec![]);
    }
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(to_error)?;
    let mut unknown: Vec<String> = tmpl.undeclared_variables(false).into_iter().filter(|v| !known.iter().any(|k| k == v)).collect();
    unknown.sort();
    Ok(unknown
        .into_iter()
        .map(|name| {
            let line = find_use_line(source, &name);
            (name, line)
        })
        .collect())
}

/// Render `source` with the run's variables.
pub fn render(source: &str, vars: &RunVars) -> Result<String, TemplateError> {
    if !is_templated(source) {
        return Ok(source.to_string());
    }
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(to_error)?;
    tmpl.render(vars.context()).map_err(to_error)
}

fn to_error(e: minijinja::Error) -> TemplateError {
    TemplateError { message: e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind())), line: e.line() }
}

/// 1-based line of the first `{{`/`{%` block mentioning `name`.
fn find_use_line(source: &str, name: &str) -> Option<usize> {
    source
        .lines()
        .position(|line| {
            line.match_indices("{{").chain(line.match_indices("{%")).any(|(i, _)| {
                let rest = &line[i..];
                let end = rest.find("}}").or_else(|| rest.find("%}")).unwrap_or(rest.len());
                rest[..end].split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == name)
            })
        })
        .map(|i| i + 1)
}
