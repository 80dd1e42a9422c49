//! Known covariates for the model stages (`train`, `forecast` with `method: lm`): columns of the
//! demand table the model reads step by step — a promotion flag, a price — and, for forecasting,
//! their planned values over the horizon from a `future:` input. BOOLEAN columns are flags;
//! numeric ones are levels (`lm::tokens::covariate_features` turns both into model inputs).
//! Names starting `calendar.` are features of each step's date (`lm::calendar`), computed here
//! for history and horizon alike.
use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, Date32Array, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::array_value_to_string;

use super::{StageCx, quote_ident};
use crate::lm::calendar::Feature;
use crate::lm::tokens::{CovariateColumn, covariate_features};

/// Where a covariate comes from: a column of the demand table (a flag when BOOLEAN, else a
/// level), or a calendar feature of each step's date (`calendar.*`, known for any horizon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Column { flag: bool },
    Calendar(Feature),
}

/// Each covariate's source, checking that a column exists in `schema` as BOOLEAN or a number;
/// an error in words naming the column otherwise.
pub fn kinds(schema: &Schema, names: &[String], input: &str) -> Result<Vec<Source>, String> {
    names
        .iter()
        .map(|c| match (Feature::parse(c), schema.field_with_name(c)) {
            (Some(f), _) => f.map(Source::Calendar).map_err(|e| {
                let known = crate::lm::calendar::names();
                let hint = crate::diag::did_you_mean(c, known.iter().map(String::as_str));
                match hint {
                    Some(h) => format!("{e}: {h}"),
                    None => e,
                }
            }),
            (None, Ok(f)) if f.data_type() == &DataType::Boolean => Ok(Source::Column { flag: true }),
            (None, Ok(f)) if f.data_type().is_numeric() => Ok(Source::Column { flag: false }),
            (None, Ok(f)) => {
                Err(format!("covariate column `{c}` of `{input}` is {}, expected BOOLEAN (a flag) or a number", f.data_type()))
            }
            (None, Err(_)) => {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let hint = match crate::diag::did_you_mean(c, have.iter().copied()) {
                    Some(h) => format!(": {h}"),
                    None => format!("; calendar covariates are named {}weekend, {0}days, …", crate::lm::calendar::PREFIX),
                };
                Err(format!("no covariate column `{c}` in input `{input}` (columns: {}){hint}", have.join(", ")))
            }
        })
        .collect()
}

/// The covariates that are columns (not calendar features): what a table must hold.
pub fn column_names(names: &[String]) -> Vec<String> {
    names.iter().filter(|n| Feature::parse(n).is_none()).cloned().collect()
}

/// `CAST(col AS DOUBLE)` for each covariate column (calendar features are left out),
/// comma-led: what `long_history` appends.
pub fn select_list(names: &[String]) -> String {
    column_names(names).iter().map(|c| format!(", CAST({} AS DOUBLE)", quote_ident(c))).collect()
}

/// Column `col` of `b` over rows `rows` as numbers (NaN = null).
fn numbers(b: &RecordBatch, col: usize, rows: std::ops::Range<usize>) -> Vec<f64> {
    let a = b.column(col).as_any().downcast_ref::<Float64Array>().expect("covariates are cast to DOUBLE");
    rows.map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }).collect()
}

/// A forecast horizon's covariates: per series, its steps' dates (days since the epoch) and,
/// per step, each covariate column's planned value (NaN = not planned).
pub struct Horizon<'a> {
    pub dates: &'a [Vec<i32>],
    pub planned: &'a [Vec<Vec<f64>>],
}

/// Each series' covariate features over its own rows of a `long_history` batch (keys, then
/// the DATE at `first - 2`, the target, then from `first` on the covariate columns in
/// `sources` order), and, when `horizon` is given, then over its horizon.
pub fn series_features(
    all: &RecordBatch,
    bounds: &[(usize, usize)],
    first: usize,
    sources: &[Source],
    horizon: Option<&Horizon>,
) -> Vec<Vec<f32>> {
    let days = all.column(first - 2).as_any().downcast_ref::<Date32Array>().expect("time cast to DATE");
    bounds
        .iter()
        .enumerate()
        .map(|(k, &(s, e))| {
            let mut dates: Vec<i32> = (s..e).map(|i| days.value(i)).collect();
            dates.extend(horizon.map_or(&[][..], |h| &h.dates[k][..]));
            let planned = horizon.map_or(&[][..], |h| &h.planned[k][..]);
            let columns = (0..columns(sources)).map(|j| {
                let mut v = numbers(all, first + j, s..e);
                v.extend(planned.iter().map(|step| step[j]));
                v
            });
            features(sources, &dates, columns.collect())
        })
        .collect()
}

/// How many of `sources` are columns.
pub fn columns(sources: &[Source]) -> usize {
    sources.iter().filter(|s| matches!(s, Source::Column { .. })).count()
}

/// One series' covariate features (`covariate_features`, in `sources` order) at `dates`, from
/// the values of its covariate columns there (`columns`, in order) and its calendar features.
pub fn features(sources: &[Source], dates: &[i32], columns: Vec<Vec<f64>>) -> Vec<f32> {
    let mut columns = columns.into_iter();
    let raw: Vec<(bool, Vec<f64>)> = sources
        .iter()
        .map(|src| match *src {
            Source::Calendar(f) => (f.is_flag(), f.values(dates)),
            Source::Column { flag } => (flag, columns.next().expect("one value column per column source")),
        })
        .collect();
    let cols: Vec<CovariateColumn> = raw.iter().map(|(flag, v)| CovariateColumn { flag: *flag, values: v }).collect();
    covariate_features(&cols)
}

/// The `future:` input's planned covariates: the series key columns it has (their positions
/// among `series`; a plan per SKU serves every location), DATE, the covariate columns `names`
/// as DOUBLE (`column_names`: calendar features need no plan).
pub async fn read_future(cx: &StageCx, input: &str, series: &[String], time: &str, names: &[String]) -> Result<(RecordBatch, Vec<usize>)> {
    let schema = cx.ctx.table_provider(input).await?.schema();
    let present: Vec<usize> = (0..series.len()).filter(|&i| schema.field_with_name(&series[i]).is_ok()).collect();
    if present.is_empty() || schema.field_with_name(time).is_err() {
        bail!("the `future` input `{input}` needs `{time}` and at least one series key column ({})", series.join(", "));
    }
    kinds(&schema, names, input).map_err(anyhow::Error::msg)?;
    let q = quote_ident;
    let keys = present.iter().map(|&i| q(&series[i])).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {keys}, CAST({t} AS DATE){cols} FROM {i} WHERE {t} IS NOT NULL",
        t = q(time),
        cols = select_list(names),
        i = q(input)
    );
    let b = cx.sql_batch(&sql).await.with_context(|| format!("reading the planned covariates of `{input}`"))?;
    Ok((b, present))
}

/// A row's key over columns `cols` of `b`, as text (how history and `future` rows are matched).
pub fn key_of(b: &RecordBatch, cols: &[usize], row: usize) -> String {
    cols.iter().map(|&c| array_value_to_string(b.column(c), row).unwrap_or_default()).collect::<Vec<_>>().join("\u{1f}")
}

/// Planned covariates per series and horizon step (`dates[k][h]`, days since the epoch) from a
/// [`read_future`] batch with `n_keys` key columns, for series keyed `keys[k]` (over the same
/// columns); NaN where nothing is planned (read as none: no promotion, the usual price).
pub fn horizon_values(future: &RecordBatch, n_keys: usize, keys: &[String], dates: &[Vec<i32>], n: usize) -> Vec<Vec<Vec<f64>>> {
    let days = future.column(n_keys).as_any().downcast_ref::<Date32Array>().expect("cast to DATE");
    let cols: Vec<usize> = (0..n_keys).collect();
    let mut planned: HashMap<(String, i32), Vec<f64>> = HashMap::with_capacity(future.num_rows());
    for i in 0..future.num_rows() {
        let values = (0..n).map(|j| numbers(future, n_keys + 1 + j, i..i + 1)[0]).collect();
        planned.insert((key_of(future, &cols, i), days.value(i)), values);
    }
    let none = vec![f64::NAN; n];
    keys.iter().zip(dates).map(|(key, ds)| ds.iter().map(|d| planned.get(&(key.clone(), *d)).unwrap_or(&none).clone()).collect()).collect()
}
