//! `tokenizer`: trains a byte-level BPE on a text column (product titles, categories,
//! descriptions, review text) and publishes it as a one-row table holding the standard
//! `tokenizer.json`, so it is versioned and published with the run like every output, and the
//! model stages read the exact tokenizer of the run that trained them.
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use super::{StageCx, StageDecl, StageKind, StageReport, StageTask};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::lm::text::TextTokenizer;

pub struct TokenizerKind;

fn default_column() -> String {
    "text".into()
}
fn default_vocab() -> usize {
    4096
}
fn default_min_frequency() -> u64 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizerConfig {
    /// The text column of the input.
    #[serde(default = "default_column")]
    column: String,
    /// Most ids, the 256 byte symbols and `<unk>` included.
    #[serde(default = "default_vocab")]
    vocab_size: usize,
    /// Merges seen fewer times than this are not learned.
    #[serde(default = "default_min_frequency")]
    min_frequency: u64,
}

#[derive(Debug)]
struct TokenizerTask {
    stage: String,
    input: String,
    cfg: TokenizerConfig,
    column_pos: Pos,
}

impl StageKind for TokenizerKind {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn prepare(&self, decl: &StageDecl<'_>) -> Result<Arc<dyn StageTask>, Diagnostics> {
        let cfg: TokenizerConfig = decl.config.parse().map_err(|d| d.stage(decl.id))?;
        decl.expect_outputs("tokenizer", 1)?;
        decl.expect_inputs("tokenizer", 1)?;
        if !(260..=1_000_000).contains(&cfg.vocab_size) {
            return Err(decl
                .error(decl.config.pos("vocab_size"), "`vocab_size` must be between 260 and 1000000 (256 byte symbols come first)")
                .into());
        }
        let column_pos = decl.config.pos("column");
        Ok(Arc::new(TokenizerTask { stage: decl.id.into(), input: decl.inputs[0].clone(), cfg, column_pos }))
    }
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("vocab_size", DataType::Int64, false),
        Field::new("min_frequency", DataType::Int64, false),
        Field::new("documents", DataType::Int64, false),
        Field::new("tokenizer_json", DataType::Utf8, false),
    ]))
}

#[async_trait]
impl StageTask for TokenizerTask {
    async fn plan(&self, inputs: &BTreeMap<String, SchemaRef>) -> Result<Vec<SchemaRef>, Diagnostics> {
        let schema = inputs.get(&self.input).expect("planner passes every declared input");
        match schema.field_with_name(&self.cfg.column) {
            Ok(f) if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => Ok(vec![output_schema()]),
            Ok(f) => Err(Diagnostic::new(self.column_pos.clone(), format!("column `{}` is {}, expected text", f.name(), f.data_type()))
                .stage(&self.stage)
                .into()),
            Err(_) => {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let msg = format!("column `{}` not in input `{}` (columns: {})", self.cfg.column, self.input, names.join(", "));
                Err(Diagnostic::new(self.column_pos.clone(), msg)
                    .stage(&self.stage)
                    .help_opt(did_you_mean(&self.cfg.column, names.iter().copied()))
                    .into())
            }
        }
    }

    async fn run(&self, cx: &StageCx) -> Result<StageReport> {
        let col = super::quote_ident(&self.cfg.column);
        let sql = format!("SELECT {col} FROM {} WHERE {col} IS NOT NULL", super::quote_ident(&self.input));
        let mut texts: Vec<String> = vec![];
        for batch in cx.ctx.sql(&sql).await?.collect().await? {
            let utf8 = cast(batch.column(0), &DataType::Utf8)?;
            let a = utf8.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
            texts.extend((0..a.len()).map(|i| a.value(i).to_string()));
        }
        if texts.is_empty() {
            bail!("input `{}` has no non-null `{}` text to train a tokenizer on", self.input, self.cfg.column);
        }
        let cfg = self.cfg.clone();
        let documents = texts.len() as i64;
        let (json, vocab) = cx
            .blocking(move |_, progress| {
                progress.set(format!("training BPE on {documents} texts"));
                let tk = TextTokenizer::train(texts.iter().map(String::as_str), cfg.vocab_size, cfg.min_frequency)?;
                Ok((tk.to_json()?, tk.vocab_size() as i64))
            })
            .await?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![vocab])),
            Arc::new(Int64Array::from(vec![self.cfg.min_frequency as i64])),
            Arc::new(Int64Array::from(vec![documents])),
            Arc::new(StringArray::from(vec![json])),
        ];
        let df = cx.ctx.read_batch(RecordBatch::try_new(output_schema(), columns)?)?;
        let written = cx.write_output(0, df).await?;
        Ok(StageReport {
            rows_out: written.rows,
            bytes_out: written.bytes,
            details: Some(serde_json::json!({ "documents": documents, "vocab_size": vocab })),
            warnings: vec![],
        })
    }
}
