//! Product text for the model stages (`train`, `forecast` with `method: lm`): which input holds
//! it, matching it to each series by the series key columns the text table has (e.g. `sku_id`
//! for series keyed by `sku_id, location_id`), and the tokenizer a `tokenizer` stage published.
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};

use super::{StageCx, StageDecl, quote_ident};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};

/// `text:` in a model stage's config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// The input holding the text: the series key columns it has, and `column`.
    pub input: String,
    #[serde(default = "default_column")]
    pub column: String,
    /// `train` only: the input holding a `tokenizer` stage's output, the ids the fine-tuned model
    /// reads (a base with another tokenizer has its text embeddings carried over to it by token
    /// text, so what it learned of words keeps its meaning).
    pub tokenizer: Option<String>,
    /// Most text tokens put before a series (the same in training and forecasting).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// `train` only: the share of training windows shown without their text, so the model still
    /// forecasts series whose text is missing.
    pub dropout: Option<f64>,
}

fn default_column() -> String {
    "text".into()
}

pub fn default_max_tokens() -> usize {
    crate::lm::tokens::MAX_TEXT_TOKENS
}

impl TextConfig {
    /// The stage's inputs this config names (the text, and the tokenizer when given).
    pub fn inputs(&self) -> Vec<&String> {
        std::iter::once(&self.input).chain(&self.tokenizer).collect()
    }

    /// Declaration checks: named inputs exist, `max_tokens` and `dropout` in range; `for_train`
    /// allows `tokenizer` and `dropout`.
    pub fn check(&self, decl: &StageDecl<'_>, for_train: bool) -> Result<(), Diagnostics> {
        let mut diags = Diagnostics::default();
        for (key, name) in [("text/input", Some(&self.input)), ("text/tokenizer", self.tokenizer.as_ref())] {
            if let Some(name) = name.filter(|n| !decl.inputs.contains(n)) {
                let msg = format!("`{key}: {name}` is not one of the stage's inputs ({})", decl.inputs.join(", "));
                diags.push(decl.error(decl.config.pos(key), msg).help_opt(did_you_mean(name, decl.inputs.iter().map(String::as_str))));
            }
        }
        if !for_train && (self.tokenizer.is_some() || self.dropout.is_some()) {
            let at = if self.tokenizer.is_some() { "text/tokenizer" } else { "text/dropout" };
            diags
                .push(decl.error(decl.config.pos(at), "only for a `train` stage: forecasting uses the model's own tokenizer and all text"));
        }
        if self.max_tokens == 0 || self.max_tokens > 1024 {
            diags.push(decl.error(decl.config.pos("text/max_tokens"), "`max_tokens` must be between 1 and 1024"));
        }
        if !(0.0..1.0).contains(&self.dropout.unwrap_or(0.0)) {
            diags.push(decl.error(decl.config.pos("text/dropout"), "`dropout` must be in [0, 1)"));
        }
        diags.into_result(())
    }

    /// Planning: the text column is text and the table shares at least one series key column.
    pub fn plan(&self, inputs: &BTreeMap<String, SchemaRef>, series: &[String], at: &Pos, stage: &str) -> Result<(), Diagnostics> {
        let schema = inputs.get(&self.input).expect("planner passes every declared input");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let err = |msg: String| Diagnostics::from(Diagnostic::new(at.clone(), msg).stage(stage));
        match schema.field_with_name(&self.column) {
            Ok(f) if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {}
            Ok(f) => return Err(err(format!("text column `{}` of `{}` is {}, expected text", f.name(), self.input, f.data_type()))),
            Err(_) => {
                return Err(err(format!("no text column `{}` in input `{}` (columns: {})", self.column, self.input, names.join(", "))));
            }
        }
        if !series.iter().any(|k| names.contains(&k.as_str())) {
            let msg = format!("input `{}` has none of the series key columns ({}) to match text to series", self.input, series.join(", "));
            return Err(err(msg));
        }
        if let Some(tk) = &self.tokenizer
            && inputs.get(tk).is_none_or(|s| s.field_with_name("tokenizer_json").is_err())
        {
            return Err(err(format!("`text/tokenizer: {tk}` has no `tokenizer_json` column: it is not a `tokenizer` stage's output")));
        }
        Ok(())
    }
}

/// Each series' text (None where the text table has none), in the order `long_history` gives
/// the series: sorted by the series keys. Rows of the text table are matched on the series key
/// columns it has; several matching rows give the greatest text (a deterministic choice).
pub async fn series_texts(cx: &StageCx, demand: &str, series: &[String], time: &str, text: &TextConfig) -> Result<Vec<Option<String>>> {
    let schema = cx.ctx.table_provider(text.input.as_str()).await?.schema();
    let q = quote_ident;
    let keys: Vec<String> = series.iter().map(|k| format!("d.{}", q(k))).collect();
    let on: Vec<String> = series.iter().filter(|k| schema.field_with_name(k).is_ok()).map(|k| format!("d.{0} = t.{0}", q(k))).collect();
    let sql = format!(
        "SELECT {keys}, max(CAST(t.{col} AS VARCHAR)) FROM (SELECT DISTINCT {plain} FROM {demand} WHERE {time} IS NOT NULL) d \
         LEFT JOIN {text} t ON {on} GROUP BY {keys} ORDER BY {keys}",
        keys = keys.join(", "),
        col = q(&text.column),
        plain = series.iter().map(|k| q(k)).collect::<Vec<_>>().join(", "),
        demand = q(demand),
        time = q(time),
        text = q(&text.input),
        on = on.join(" AND "),
    );
    let b = cx.sql_batch(&sql).await.with_context(|| format!("matching the text of `{}` to the series", text.input))?;
    let col = b.column(series.len()).as_string_opt::<i32>().context("text column")?;
    Ok((0..b.num_rows()).map(|i| (!col.is_null(i)).then(|| col.value(i).to_string())).collect())
}

/// The `tokenizer.json` a `tokenizer` stage published into input `name`.
pub async fn read_tokenizer(cx: &StageCx, name: &str) -> Result<String> {
    let b = cx.sql_batch(&format!("SELECT CAST(tokenizer_json AS VARCHAR) FROM {} LIMIT 1", quote_ident(name))).await?;
    if b.num_rows() == 0 {
        bail!("tokenizer input `{name}` has no row");
    }
    Ok(b.column(0).as_string::<i32>().value(0).to_string())
}
