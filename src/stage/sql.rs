//! `sql`: one read-only query over the stage's inputs, written as the stage's single output.
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::{StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::engine::{self, SqlOrigin};

pub struct SqlKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlConfig {
    /// Inline SQL.
    #[serde(default)]
    sql: Option<String>,
    /// A SQL file, relative to the pipeline file.
    #[serde(default)]
    file: Option<String>,
    /// DataFusion options for this stage only, e.g. `datafusion.optimizer.join_reordering: "false"`.
    #[serde(default)]
    settings: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug)]
pub struct SqlTask {
    stage: String,
    sql: String,
    origin: SqlOrigin,
    raw: String,
    settings: Vec<(String, String)>,
}

/// Load (from file or inline), template-check and render a stage's SQL text.
/// Returns (rendered SQL, origin, raw text).
pub fn load_sql(
    decl: &StageDecl<'_>,
    inline: Option<&str>,
    file: Option<&str>,
    path: &str,
) -> Result<(String, SqlOrigin, String), Diagnostic> {
    let (raw, origin) = match (inline, file) {
        (Some(s), None) => (s.to_string(), SqlOrigin::Inline(decl.config.pos(&format!("{path}sql")))),
        (None, Some(f)) => {
            let full = decl.pipeline_dir.join(f);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                decl.error(decl.config.pos(&format!("{path}file")), format!("cannot read SQL file {}: {e}", full.display()))
            })?;
            (text, SqlOrigin::File(full))
        }
        (Some(_), Some(_)) => return Err(decl.error(decl.config.pos(path), "give either `sql` or `file`, not both")),
        (None, None) => return Err(decl.error(decl.config.pos(path), "missing `sql` (inline query) or `file` (path to a .sql file)")),
    };
    let known = decl.vars.known_names();
    let unknown = crate::template::unknown_variables(&raw, &known)
        .map_err(|e| template_diag(decl, &origin, e.line.map(|l| l as u64), &format!("template error: {}", e.message)))?;
    if let Some((name, line)) = unknown.into_iter().next() {
        let help = crate::diag::did_you_mean(&name, known.iter().map(String::as_str));
        return Err(template_diag(decl, &origin, line.map(|l| l as u64), &format!("unknown template variable `{name}`")).help_opt(help));
    }
    let sql = crate::template::render(&raw, decl.vars)
        .map_err(|e| template_diag(decl, &origin, e.line.map(|l| l as u64), &format!("template error: {}", e.message)))?;
    match engine::parse_sql(&sql) {
        Ok(()) => {}
        Err(engine::SqlProblem::Syntax(msg)) => {
            let (pos, suffix) = engine::sql_pos(&origin, &sql, &msg);
            return Err(Diagnostic::new(pos, format!("SQL syntax error: {}{suffix}", clean_parser_message(&msg))).stage(decl.id));
        }
        Err(engine::SqlProblem::NotAQuery { keyword, line, column }) => {
            let at = format!("Line: {line}, Column: {column}");
            let (pos, suffix) = engine::sql_pos(&origin, &sql, &at);
            return Err(Diagnostic::new(
                pos,
                format!("`{keyword}` is not a query: a stage runs one read-only query (SELECT, WITH or VALUES){suffix}"),
            )
            .stage(decl.id)
            .help("EXPLAIN, DDL (CREATE, DROP), DML (INSERT, UPDATE, DELETE, COPY) and SET are refused; see plans with `restock show RUN --plans`"));
        }
    }
    Ok((sql, origin, raw))
}

/// `SQL error: ParserError("Expected: X, found: Y at Line: 1, Column: 1")` -> `Expected: X, found: Y`.
fn clean_parser_message(msg: &str) -> String {
    let inner = msg.split_once("ParserError(\"").map_or(msg, |(_, rest)| rest.trim_end_matches("\")"));
    let inner = inner.rsplit_once(" at Line: ").map_or(inner, |(m, _)| m);
    inner.to_string()
}

fn template_diag(decl: &StageDecl<'_>, origin: &SqlOrigin, line: Option<u64>, msg: &str) -> Diagnostic {
    let pos = match (origin, line) {
        (SqlOrigin::File(f), Some(l)) => Pos::new(f, l, 1),
        (SqlOrigin::File(f), None) => Pos::file_only(f),
        (SqlOrigin::Inline(p), _) => p.clone(),
    };
    Diagnostic::new(pos, msg).stage(decl.id)
}

impl StageKind for SqlKind {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: SqlConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("sql", 1)?;
        let (sql, origin, raw) = load_sql(decl, cfg.sql.as_deref(), cfg.file.as_deref(), "")?;
        let settings =
            engine::check_settings(&cfg.settings).map_err(|(key, msg)| decl.error(decl.config.key_pos(&format!("settings/{key}")), msg))?;
        Ok(Arc::new(SqlTask { stage: decl.id.to_string(), sql, origin, raw, settings }))
    }
}

#[async_trait]
impl StageTask for SqlTask {
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        match engine::plan_against(inputs, &self.sql, &self.settings).await {
            Ok(plan) => Ok(vec![Arc::new(plan.schema().as_arrow().clone())]),
            Err(e) => {
                let msg = engine::explain(&e);
                let (pos, suffix) = engine::sql_pos(&self.origin, &self.sql, &msg);
                Err(Diagnostic::new(pos, format!("SQL does not plan: {msg}{suffix}")).stage(&self.stage).into())
            }
        }
    }

    fn fingerprint(&self) -> Option<String> {
        Some(self.raw.clone())
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        engine::apply_settings(&cx.ctx, &self.settings)?;
        let df = cx.ctx.sql_with_options(&self.sql, engine::read_only()).await.map_err(|e| self.runtime_error(&e))?;
        let written = cx.write_output(0, df).await.map_err(|e| match e.downcast_ref::<datafusion::error::DataFusionError>() {
            Some(df) => self.runtime_error(df),
            None => e,
        })?;
        Ok(StageReport {
            rows_out: written.rows,
            bytes_out: written.bytes,
            details: Some(serde_json::json!({ "plan": written.plan })),
            ..Default::default()
        })
    }
}

impl SqlTask {
    fn runtime_error(&self, e: &datafusion::error::DataFusionError) -> anyhow::Error {
        let msg = engine::explain(e);
        let (pos, suffix) = engine::sql_pos(&self.origin, &self.sql, &msg);
        crate::errors::Explained::new(format!("SQL failed at {pos}{suffix}: {msg}"), e).into()
    }
}
