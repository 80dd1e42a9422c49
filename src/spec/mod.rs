//! The pipeline file as written: YAML -> typed, span-carrying structs. No semantics beyond shape;
//! cross-references, templates and SQL are checked by [`crate::plan`].
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Diagnostics, Pos};
pub use value::{Config, YamlValue};

/// A pipeline file, read and parsed. Keeps the exact text: run history stores it verbatim.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub path: PathBuf,
    pub text: String,
    pub doc: PipelineDoc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schedule: Option<Spanned<ScheduleSpec>>,
    /// Webhooks told of failed and succeeded runs and SLA misses.
    #[serde(default)]
    pub notify: Vec<Spanned<NotifySpec>>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<ParamSpec>>,
    /// Lake root URL; `file://./lake` when absent.
    #[serde(default)]
    pub lake: Option<Spanned<String>>,
    /// Defaults applied to every stage that does not set its own.
    #[serde(default)]
    pub defaults: StageDefaults,
    pub stages: Spanned<Vec<Spanned<StageSpec>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub cron: Spanned<String>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Intervals that ended while `restock serve` was down: all, latest (default) or none.
    #[serde(default)]
    pub catchup: crate::schedule::Catchup,
    /// A fire while `max_active_runs` runs are active: skip (default), queue or cancel_previous.
    #[serde(default)]
    pub overlap: crate::schedule::Overlap,
    #[serde(default)]
    pub max_active_runs: Option<Spanned<usize>>,
    /// Resume a run whose process died (or that a daemon shutdown interrupted). Default true.
    #[serde(default)]
    pub resume_interrupted: Option<bool>,
    /// A run not succeeded this long after its interval's end is an SLA miss (notified).
    #[serde(default)]
    pub sla: Option<Spanned<String>>,
}

/// A webhook POSTed the run summary as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub url: Spanned<String>,
    /// Events: failure, success, sla_miss (default: failure and sla_miss).
    #[serde(default)]
    pub on: Option<Vec<crate::schedule::Event>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Int,
    Float,
    String,
    Bool,
    Date,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub default: Option<Spanned<YamlValue>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDefaults {
    #[serde(default)]
    pub retries: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<InputSpec>>,
    #[serde(default)]
    pub outputs: Vec<Spanned<OutputSpec>>,
    #[serde(default)]
    pub retries: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub config: Option<Spanned<YamlValue>>,
    #[serde(default)]
    pub resources: Option<Spanned<ResourcesSpec>>,
}

/// What a stage holds while it runs besides a `--max-parallel` slot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// GPUs: the executor never runs stages needing more GPUs at once than the machine has
    /// (on a machine without one, such stages run one at a time, on the CPU).
    #[serde(default)]
    pub gpu: u32,
}

/// Retry policy: `max` extra attempts, exponential backoff from `backoff`, capped at
/// `max_backoff`, with full jitter so retries of parallel stages do not synchronise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub max: u32,
    #[serde(default)]
    pub backoff: Option<String>,
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// Where a stage input comes from, as written.
///
/// String shorthand: `table:NAME[@VERSION]` is a published Delta table; a bare identifier is the
/// output of another stage of this pipeline; anything else is a Parquet path/URL/glob (relative
/// paths are under the lake root). The map form spells the same out and adds options.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub source: InputSource,
    pub allow_empty: bool,
    /// How the files of a `path` input are laid out (empty for other inputs).
    pub layout: FileLayout,
}

/// How the Parquet files of a `path` input are laid out, as declared on the input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileLayout {
    /// Hive partition columns of a Parquet folder (`year=2025/month=01/`), typed by name.
    pub partitions: Vec<PartitionCol>,
    /// Columns each Parquet file is sorted by (ascending), outermost first. Lets DataFusion
    /// aggregate, join and window over that order by streaming instead of hashing or sorting.
    pub sorted_by: Vec<String>,
    pub missing_columns: MissingColumns,
}

/// What a file that lacks a column its sibling files have means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingColumns {
    /// An error naming the file and the column (a broken or partial export).
    #[default]
    Error,
    /// The column reads as null in that file; allowed only for nullable columns.
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputSource {
    Parquet(String),
    Table { name: String, version: Option<i64> },
    Output(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionCol {
    pub name: String,
    #[serde(rename = "type", default = "default_partition_type")]
    pub ty: String,
}

fn default_partition_type() -> String {
    "string".into()
}

impl InputSource {
    pub fn parse_shorthand(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("table:") {
            let (name, version) = match rest.split_once('@') {
                Some((n, v)) => (n, Some(v.parse::<i64>().map_err(|_| format!("bad table version `{v}` in `{s}`"))?)),
                None => (rest, None),
            };
            if !is_identifier(name) {
                return Err(format!("`{name}` is not a valid table name"));
            }
            return Ok(InputSource::Table { name: name.into(), version });
        }
        if is_identifier(s) {
            return Ok(InputSource::Output(s.into()));
        }
        Ok(InputSource::Parquet(s.into()))
    }
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputMap {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    partitions: Vec<PartitionCol>,
    #[serde(default)]
    sorted_by: Vec<String>,
    #[serde(default, deserialize_with = "missing_columns_field")]
    missing_columns: Option<MissingColumns>,
}

/// `missing_columns: null` (YAML null, or the string) or `missing_columns: error`; absent is
/// `None` (the default, an error), so a written `null` must not read as absent.
fn missing_columns_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MissingColumns>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("null") => Ok(Some(MissingColumns::Null)),
        Some("error") => Ok(Some(MissingColumns::Error)),
        Some(other) => Err(de::Error::custom(format!("`missing_columns` is `null` or `error`, not `{other}`"))),
    }
}

impl<'de> Deserialize<'de> for InputSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, `table:NAME`, an output name, or a map with `path`/`table`/`output`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<InputSpec, E> {
                let source = InputSource::parse_shorthand(s).map_err(E::custom)?;
                Ok(InputSpec { source, allow_empty: false, layout: FileLayout::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<InputSpec, A::Error> {
                let m = InputMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let source = match (m.path, m.table, m.output) {
                    (Some(p), None, None) => InputSource::Parquet(p),
                    (None, Some(t), None) => InputSource::Table { name: t, version: m.version },
                    (None, None, Some(o)) => InputSource::Output(o),
                    _ => return Err(de::Error::custom("an input needs exactly one of `path`, `table` or `output`")),
                };
                if m.version.is_some() && !matches!(source, InputSource::Table { .. }) {
                    return Err(de::Error::custom("`version` only applies to `table` inputs"));
                }
                if !matches!(source, InputSource::Parquet(_))
                    && !(m.partitions.is_empty() && m.sorted_by.is_empty() && m.missing_columns.is_none())
                {
                    return Err(de::Error::custom("`partitions`, `sorted_by` and `missing_columns` only apply to `path` inputs"));
                }
                let layout =
                    FileLayout { partitions: m.partitions, sorted_by: m.sorted_by, missing_columns: m.missing_columns.unwrap_or_default() };
                Ok(InputSpec { source, allow_empty: m.allow_empty, layout })
            }
        }
        d.deserialize_any(V)
    }
}

/// A stage output: a named table, staged during the run and (unless `publish: false`) committed
/// to the lake as a Delta table once the whole run has succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    pub publish: bool,
    pub partition_by: Vec<String>,
    pub schema_mode: SchemaMode,
}

/// What publishing does when the new data's schema differs from the published table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Refuse: a changed column type is almost always an upstream bug; analysts keep the old data.
    #[default]
    Strict,
    /// Add new columns, keep old ones.
    Merge,
    /// Replace the schema with the new one.
    Overwrite,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputMap {
    name: String,
    #[serde(default = "yes")]
    publish: bool,
    #[serde(default)]
    partition_by: Vec<String>,
    #[serde(default)]
    schema_mode: SchemaMode,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for OutputSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an output name or a map with `name`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OutputSpec, E> {
                Ok(OutputSpec { name: s.into(), publish: true, partition_by: vec![], schema_mode: SchemaMode::Strict })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OutputSpec, A::Error> {
                let m = OutputMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OutputSpec { name: m.name, publish: m.publish, partition_by: m.partition_by, schema_mode: m.schema_mode })
            }
        }
        d.deserialize_any(V)
    }
}

/// Read and parse a pipeline file. Syntax and shape errors come back with file:line:column.
pub fn load(path: &Path) -> Result<SpecFile, Diagnostics> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Diagnostic::new(Pos::file_only(path), format!("cannot read pipeline file: {e}")))?;
    parse(path, text)
}

pub fn parse(path: &Path, text: String) -> Result<SpecFile, Diagnostics> {
    let doc: PipelineDoc = serde_saphyr::from_str(&text).map_err(|e| yaml_error(path, &text, &e))?;
    Ok(SpecFile { path: path.to_path_buf(), text, doc })
}

fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> Diagnostics {
    let pos = match e.location() {
        Some(loc) if loc.line() > 0 => Pos::from_saphyr(path, &loc),
        _ => Pos::file_only(path),
    };
    let raw = e.to_string();
    // serde-saphyr appends its own "at line X column Y" and a snippet; we print the position ourselves.
    let first = raw.lines().next().unwrap_or(&raw);
    let cleaned = strip_position_suffix(first);
    let (message, help) = value::explain_serde_message(&cleaned);
    let mut d = Diagnostic::new(pos.clone(), message).help_opt(help);
    if let Some(stage) = enclosing_stage(text, pos.line) {
        d = d.stage(stage);
    }
    d.into()
}

/// The id of the stage whose YAML block contains `line`, found textually (the document did not
/// parse, so there is no tree to ask).
fn enclosing_stage(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line as usize).collect();
    let stages_at = lines.iter().position(|l| l.trim_start().starts_with("stages:"))?;
    lines[stages_at..].iter().rev().find_map(|l| {
        let t = l.trim_start().trim_start_matches('-').trim_start().trim_start_matches('{').trim_start();
        let id = t.strip_prefix("id:")?.trim();
        let id: String = id.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
        (!id.is_empty()).then_some(id)
    })
}

fn strip_position_suffix(s: &str) -> String {
    // "error: line 5 column 12: message" -> "message"
    let s = s.trim_start_matches("error: ");
    let s = match s.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        Some((pos, msg)) if pos.contains(" column ") => msg,
        _ => s,
    };
    let s = s.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable");
    let lower = s.to_ascii_lowercase();
    for marker in [" at line ", " at position ", ", line "] {
        if let Some(i) = lower.rfind(marker) {
            return s[..i].trim_end_matches([',', ':', ' ']).to_string();
        }
    }
    s.trim_start_matches("error: ").to_string()
}
