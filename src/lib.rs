//! restock: a batch-job orchestrator for e-commerce demand planning.
//!
//! Data flows one way: [`spec`] (YAML as written) -> [`plan`] (validated DAG, prepared stage
//! tasks) -> [`run`] (execution, retries, cancellation, publish) -> [`stage`] kinds ->
//! [`storage`] (object stores, Parquet inputs, Delta tables). [`state`] records history.
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.
pub mod alloc;
pub mod backfill;
pub mod cli;
pub mod daemon;
pub mod datasets;
pub mod demo;
pub mod device;
pub mod diag;
pub mod engine;
pub mod errors;
pub mod evaluate;
pub mod forecast;
pub mod gc;
pub mod jobs;
pub mod lm;
pub mod models;
pub mod plan;
pub mod policy;
pub mod process;
pub mod publish;
pub mod query;
pub mod run;
pub mod schedule;
pub mod simulate;
pub mod spec;
pub mod stage;
pub mod state;
pub mod storage;
pub mod template;
