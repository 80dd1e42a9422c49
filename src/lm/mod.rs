//! The demand-forecasting language model, nanoGPT-style: `tokens.rs` (value tokens),
//! `model.rs` (the transformer, one file), `train.rs` (the loop), `sample.rs` (KV-cache
//! decoding), `corpus.rs` (synthetic pretraining series), `describe.rs` (their product text), `calendar.rs` (date features as covariates). Pure: no Arrow, no stages; every path into libtorch
//! goes through `device::best()` first.
pub mod calendar;
pub mod calibrate;
pub mod checkpoint;
pub mod corpus;
pub mod describe;
pub mod forecast;
pub mod line;
pub mod model;
pub mod pretrain;
pub mod sample;
pub mod text;
pub mod tokens;
pub mod train;

/// libtorch's random generator is one per process, and unit tests run on parallel threads: a
/// test that seeds it and checks exact draws (or trains from a seeded start) holds this lock, so
/// no other test draws from the generator in between.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
