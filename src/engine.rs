//! DataFusion sessions and SQL helpers shared by every stage kind and by `restock query`.
use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::diag::{Pos, line_col};

static MEMORY_LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Cap the memory DataFusion operators may hold (per session); sorts and aggregations spill to
/// disk beyond it. Set once, from `--memory-limit` / `RESTOCK_MEMORY_LIMIT`.
pub fn set_memory_limit(bytes: usize) {
    let _ = MEMORY_LIMIT.set(bytes);
}

/// Parse `512MB`, `1.5GiB`, `2G`, `1073741824`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a size (e.g. 512MB, 2GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    Ok((n * mult) as usize)
}

/// A session configured for restock's batch work.
pub fn session() -> SessionContext {
    // Any DataFusion option can be tuned from the environment (DATAFUSION_EXECUTION_BATCH_SIZE=…).
    let mut config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = config.options_mut();
    // Footer statistics prune row groups; page indexes prune pages.
    opts.execution.parquet.pruning = true;
    opts.execution.parquet.enable_page_index = true;
    // Filters evaluated while decoding, so skipped rows are never materialized.
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    match MEMORY_LIMIT.get() {
        Some(&limit) => {
            // Fair spill pool: spilling operators (sorts, aggregations) share what the
            // non-spilling ones (hash-join build sides) leave, instead of first-come-first-served.
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_pool(std::sync::Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(limit)))
                .build_arc()
                .expect("a memory-limited runtime builds");
            SessionContext::new_with_config_rt(config, runtime)
        }
        None => SessionContext::new_with_config(config),
    }
}

/// Stage SQL and `restock query` may only read.
/// A query's rows as one batch with string and binary columns as plain `Utf8` / `Binary`
/// (Parquet reads them as views): what code that turns tables into plain data reads.
pub async fn collect_plain(df: datafusion::prelude::DataFrame) -> anyhow::Result<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batch = datafusion::arrow::compute::concat_batches(&schema, &df.collect().await?)?;
    let plain = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    };
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(plain(f.data_type()))).collect();
    let columns = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(datafusion::arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

pub fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Plan `sql` against empty tables of the given schemas: catches unknown tables, columns,
/// functions and type errors without reading any data.
pub async fn plan_against(
    inputs: &BTreeMap<String, SchemaRef>,
    sql: &str,
    settings: &[(String, String)],
) -> Result<LogicalPlan, DataFusionError> {
    let ctx = session();
    apply_settings(&ctx, settings)?;
    for (name, schema) in inputs {
        ctx.register_table(name.as_str(), Arc::new(MemTable::try_new(schema.clone(), vec![vec![]])?))?;
    }
    let plan = ctx.state().create_logical_plan(sql).await?;
    read_only().verify_plan(&plan)?;
    Ok(plan)
}

/// Validate per-stage DataFusion options; returns (key, value) strings or (key, error).
pub fn check_settings(settings: &BTreeMap<String, serde_json::Value>) -> Result<Vec<(String, String)>, (String, String)> {
    let mut probe = datafusion::config::ConfigOptions::default();
    settings
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            probe.set(k, &value).map_err(|e| (k.clone(), format!("setting `{k}`: {}", explain(&e))))?;
            Ok((k.clone(), value))
        })
        .collect()
}

pub fn apply_settings(ctx: &SessionContext, settings: &[(String, String)]) -> Result<(), DataFusionError> {
    if settings.is_empty() {
        return Ok(());
    }
    let state = ctx.state_ref();
    let mut state = state.write();
    for (k, v) in settings {
        state.config_mut().options_mut().set(k, v)?;
    }
    Ok(())
}

/// Why a stage's SQL text cannot run, found without schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlProblem {
    /// A parse error (or not exactly one statement); [`sql_pos`] finds the position in the message.
    Syntax(String),
    /// A statement that is not a query (EXPLAIN, DDL, DML, SET, COPY): stages only read.
    NotAQuery { keyword: String, line: u64, column: u64 },
}

/// Syntax check alone (no schemas needed): exactly one statement, and a query.
pub fn parse_sql(sql: &str) -> Result<(), SqlProblem> {
    use datafusion::sql::parser::{DFParser, Statement};
    use datafusion::sql::sqlparser::ast::Statement as Ast;
    let statements = DFParser::parse_sql(sql).map_err(|e| SqlProblem::Syntax(e.to_string()))?;
    match statements.len() {
        0 => return Err(SqlProblem::Syntax("the SQL is empty".into())),
        1 => {}
        _ => return Err(SqlProblem::Syntax("a stage runs one SQL statement; found several (split them into stages)".into())),
    }
    if matches!(&statements[0], Statement::Statement(s) if matches!(s.as_ref(), Ast::Query(_))) {
        return Ok(());
    }
    // Position of the statement's first word (comments and blank lines skipped).
    let body = skip_comments(sql);
    let start = sql.len() - body.len();
    let keyword: String = body.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase();
    let (line, column) = line_col(sql, start);
    Err(SqlProblem::NotAQuery { keyword, line, column })
}

/// `sql` from its first character that is neither whitespace nor inside a `--` or `/* */` comment.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        let t = sql.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = t.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return t;
        }
    }
}

/// "... at Line: 3, Column: 17" from sqlparser messages.
fn parser_position(msg: &str) -> Option<(u64, u64)> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// Best-effort position in `sql` of the name a DataFusion error complains about.
pub fn locate_error(sql: &str, msg: &str) -> Option<(u64, u64)> {
    if let Some(p) = parser_position(msg) {
        return Some(p);
    }
    let name = ["No field named ", "table '", "Invalid function '", "column '", "not found: "].iter().find_map(|marker| {
        let i = msg.find(marker)?;
        let rest = &msg[i + marker.len()..];
        let word: String =
            rest.trim_start_matches(['"', '\'', '`']).chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
        let word = word.trim_end_matches('.').rsplit('.').next()?.to_string();
        (!word.is_empty()).then_some(word)
    })?;
    find_word(sql, &name).map(|off| line_col(sql, off))
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let w = word.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    lower.match_indices(&w).map(|(i, _)| i).find(|&i| {
        let before_ok = i == 0 || !is_ident(bytes[i - 1]);
        let after = i + w.len();
        before_ok && (after >= bytes.len() || !is_ident(bytes[after]))
    })
}

/// A DataFusion error for users: the message and its detail lines (e.g. the top memory
/// consumers of a resources-exhausted error), without backtraces.
pub fn explain(e: &DataFusionError) -> String {
    let s = e.to_string();
    let lines: Vec<&str> = s.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).take(8).collect();
    lines.join("\n    ")
}

/// Position to report for a SQL problem: inside the SQL file when it came from one.
pub fn sql_pos(origin: &SqlOrigin, sql: &str, msg: &str) -> (Pos, String) {
    match (origin, locate_error(sql, msg)) {
        (SqlOrigin::File(path), Some((l, c))) => (Pos::new(path, l, c), String::new()),
        (SqlOrigin::File(path), None) => (Pos::file_only(path), String::new()),
        (SqlOrigin::Inline(pos), Some((l, c))) => (pos.clone(), format!(" (line {l}, column {c} of the SQL)")),
        (SqlOrigin::Inline(pos), None) => (pos.clone(), String::new()),
    }
}

/// Where a SQL text came from, for error positions.
#[derive(Debug, Clone)]
pub enum SqlOrigin {
    File(std::path::PathBuf),
    Inline(Pos),
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes(" 2 g "), Ok(2 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
