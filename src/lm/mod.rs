//! The demand-forecasting language model, nanoGPT-style: `tokens.rs` (value tokens),
//! `model.rs` (the transformer, one file), `train.rs` (the loop), `sample.rs` (KV-cache
//! decoding), `corpus.rs` (synthetic pretraining series), `calendar.rs` (date features as covariates). Pure: no Arrow, no stages; every path into libtorch
//! goes through `device::best()` first.
pub mod calendar;
pub mod checkpoint;
pub mod corpus;
pub mod forecast;
pub mod model;
pub mod pretrain;
pub mod sample;
pub mod text;
pub mod tokens;
pub mod train;
