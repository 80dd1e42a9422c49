//! The integration suite: one test binary, so libtorch and DataFusion link once.
mod bad_input;
mod common;
mod device;
mod executor;
mod faults;
mod forecasting;
mod parquet_inputs;
mod pipelines;
mod planning;
mod publish;
mod real_data;
mod s3_lake;
mod scheduling;
mod state_db;
mod validate;
