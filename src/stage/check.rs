//! `check`: data tests over the stage's inputs (typically staged outputs of upstream stages).
//!
//! Each test compiles to one SQL query that counts offending rows. `severity: error` (default)
//! fails the stage, which fails the run before anything is published (write-audit-publish);
//! `severity: warn` records the finding and lets the run go on.
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::quote_ident as q;
use super::{StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::engine;

pub struct CheckKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", tag = "test", deny_unknown_fields)]
enum TestKind {
    NotNull {
        table: String,
        columns: Vec<String>,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    Unique {
        table: String,
        columns: Vec<String>,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    AcceptedRange {
        table: String,
        column: String,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    AcceptedValues {
        table: String,
        column: String,
        values: Vec<String>,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    RowCountMin {
        table: String,
        min: i64,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    Relationships {
        table: String,
        column: String,
        to: String,
        field: String,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
    /// Every row must satisfy a SQL boolean expression.
    Expression {
        table: String,
        expr: String,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        name: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckConfig {
    tests: Vec<serde_json::Value>,
}

#[derive(Debug, Clone)]
struct CompiledTest {
    name: String,
    severity: Severity,
    /// Returns one BIGINT: the number of offending rows (or the row count for row_count_min).
    sql: String,
    /// For row_count_min the query returns the count and the test fails below this.
    min_rows: Option<i64>,
    pos: Pos,
}

#[derive(Debug)]
pub struct CheckTask {
    stage: String,
    tests: Vec<CompiledTest>,
}

#[derive(Debug, Serialize)]
struct TestResult {
    name: String,
    severity: Severity,
    passed: bool,
    /// Offending rows (or the row count, for row_count_min).
    value: i64,
}

fn compile(t: &TestKind) -> (String, Severity, String, Option<i64>) {
    let (severity, name) = t.meta();
    let (sql, min_rows) = t.query();
    (name.map_or_else(|| t.default_name(), str::to_string), severity, sql, min_rows)
}

impl TestKind {
    /// The test's severity and the name it was given, if any.
    fn meta(&self) -> (Severity, Option<&str>) {
        use TestKind::*;
        match self {
            NotNull { severity, name, .. }
            | Unique { severity, name, .. }
            | AcceptedRange { severity, name, .. }
            | AcceptedValues { severity, name, .. }
            | RowCountMin { severity, name, .. }
            | Relationships { severity, name, .. }
            | Expression { severity, name, .. } => (*severity, name.as_deref()),
        }
    }

    /// What run history and errors call a test that has no `name`.
    fn default_name(&self) -> String {
        let bound = |v: &Option<f64>| v.map_or(String::new(), |v| v.to_string());
        match self {
            TestKind::NotNull { table, columns, .. } => format!("not_null({table}: {})", columns.join(", ")),
            TestKind::Unique { table, columns, .. } => format!("unique({table}: {})", columns.join(", ")),
            TestKind::AcceptedRange { table, column, min, max, .. } => {
                format!("accepted_range({table}.{column}: {}..{})", bound(min), bound(max))
            }
            TestKind::AcceptedValues { table, column, .. } => format!("accepted_values({table}.{column})"),
            TestKind::RowCountMin { table, min, .. } => format!("row_count_min({table} >= {min})"),
            TestKind::Relationships { table, column, to, field, .. } => format!("relationships({table}.{column} -> {to}.{field})"),
            TestKind::Expression { table, expr, .. } => format!("expression({table}: {expr})"),
        }
    }

    /// The query returning one BIGINT, the offending rows; for row_count_min, the table's rows
    /// and the floor they must reach.
    fn query(&self) -> (String, Option<i64>) {
        let count = |table: &str, cond: &str| format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {cond}", q(table));
        let sql = match self {
            TestKind::NotNull { table, columns, .. } => {
                count(table, &columns.iter().map(|c| format!("{} IS NULL", q(c))).collect::<Vec<_>>().join(" OR "))
            }
            TestKind::Unique { table, columns, .. } => {
                let cols = columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
                format!(
                    "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM (SELECT {cols}, COUNT(*) AS n FROM {} GROUP BY {cols} HAVING COUNT(*) > 1)",
                    q(table)
                )
            }
            TestKind::AcceptedRange { table, column, min, max, .. } => {
                let below = min.map(|m| format!("{} < {m}", q(column)));
                let above = max.map(|m| format!("{} > {m}", q(column)));
                let conds: Vec<String> = below.into_iter().chain(above).collect();
                count(table, &if conds.is_empty() { "FALSE".into() } else { conds.join(" OR ") })
            }
            TestKind::AcceptedValues { table, column, values, .. } => {
                let list = values.iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
                count(table, &format!("{c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({list})", c = q(column)))
            }
            TestKind::RowCountMin { table, min, .. } => {
                return (format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {}", q(table)), Some(*min));
            }
            TestKind::Relationships { table, column, to, field, .. } => format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {t} AS child LEFT ANTI JOIN {p} AS parent ON child.{c} = parent.{f} WHERE child.{c} IS NOT NULL",
                t = q(table),
                p = q(to),
                c = q(column),
                f = q(field)
            ),
            TestKind::Expression { table, expr, .. } => count(table, &format!("NOT COALESCE(({expr}), FALSE)")),
        };
        (sql, None)
    }
}

impl StageKind for CheckKind {
    fn name(&self) -> &'static str {
        "check"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: CheckConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("check", 0)?;
        let mut diags = Diagnostics::default();
        if cfg.tests.is_empty() {
            diags.push(decl.error(decl.config.pos("tests"), "`tests` is empty: a check stage needs at least one test"));
        }
        let mut tests = vec![];
        for i in 0..cfg.tests.len() {
            let path = format!("tests/{i}");
            let sub = decl.config.sub(&path);
            match sub.parse::<TestKind>() {
                Ok(t) => {
                    let (name, severity, sql, min_rows) = compile(&t);
                    tests.push(CompiledTest { name, severity, sql, min_rows, pos: decl.config.pos(&path) });
                }
                Err(d) => diags.push(d.stage(decl.id)),
            }
        }
        diags.into_result(())?;
        Ok(Arc::new(CheckTask { stage: decl.id.to_string(), tests }))
    }
}

#[async_trait]
impl StageTask for CheckTask {
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        let mut diags = Diagnostics::default();
        for t in &self.tests {
            if let Err(e) = engine::plan_against(inputs, &t.sql, &[]).await {
                diags.push(
                    Diagnostic::new(t.pos.clone(), format!("test `{}` does not plan: {}", t.name, engine::explain(&e))).stage(&self.stage),
                );
            }
        }
        diags.into_result(vec![])
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let mut results = vec![];
        let mut failures = vec![];
        let mut warnings = vec![];
        for t in &self.tests {
            let batches = cx.ctx.sql_with_options(&t.sql, engine::read_only()).await?.collect().await?;
            let value = batches
                .first()
                .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().filter(|a| !a.is_empty()).map(|a| a.value(0)))
                .unwrap_or(0);
            let passed = match t.min_rows {
                Some(min) => value >= min,
                None => value == 0,
            };
            if !passed {
                let what = match t.min_rows {
                    Some(min) => format!("test `{}` failed: {value} rows, expected at least {min}", t.name),
                    None => format!("test `{}` failed: {value} offending rows", t.name),
                };
                match t.severity {
                    Severity::Error => failures.push(what),
                    Severity::Warn => warnings.push(what),
                }
            }
            results.push(TestResult { name: t.name.clone(), severity: t.severity, passed, value });
        }
        let details = serde_json::json!({ "tests": results });
        if !failures.is_empty() {
            bail!("{} data test(s) failed (severity error; nothing will be published):\n  {}", failures.len(), failures.join("\n  "));
        }
        Ok(StageReport { details: Some(details), warnings, ..Default::default() })
    }
}
