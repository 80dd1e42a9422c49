//! `restock query`: read-only SQL over the published tables of a lake.
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::storage::{Lake, commit, delta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// A session with every published table registered under its name.
pub async fn session(lake: &Lake) -> Result<(SessionContext, Vec<String>)> {
    let ctx = crate::engine::session();
    lake.register(&ctx);
    let tables = delta::list_tables(lake).await?;
    // The versions of the last completed publish of each table: a run that is half-way through
    // committing its tables is not seen (see storage::commit).
    let visible = commit::visible_versions(lake).await?;
    for t in &tables {
        delta::register(&ctx, lake, t, visible.get(t).copied(), t).await?;
    }
    Ok((ctx, tables))
}

pub async fn run_sql(lake: &Lake, sql: &str) -> Result<Vec<RecordBatch>> {
    let (ctx, tables) = session(lake).await?;
    let df = ctx.sql_with_options(sql, crate::engine::read_only()).await.map_err(|e| {
        let hint = if tables.is_empty() {
            " (no tables are published yet: run a pipeline first)".to_string()
        } else {
            format!(" (published tables: {})", tables.join(", "))
        };
        anyhow::anyhow!("{}{hint}", crate::engine::explain(&e))
    })?;
    Ok(df.collect().await?)
}

pub fn write(batches: &[RecordBatch], format: Format, output: Option<&Path>) -> Result<()> {
    let mut out: Box<dyn Write + Send> = match output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Box::new(std::io::stdout()),
    };
    match format {
        Format::Table => writeln!(out, "{}", datafusion::arrow::util::pretty::pretty_format_batches(batches)?)?,
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Parquet => {
            if output.is_none() {
                bail!("--format parquet needs --output FILE");
            }
            let Some(first) = batches.first() else { bail!("the query returned no batches; nothing to write") };
            let mut w = parquet::arrow::ArrowWriter::try_new(out, first.schema(), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(())
}
