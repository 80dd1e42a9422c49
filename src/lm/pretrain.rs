//! `restock pretrain`: train a model from scratch on the synthetic corpus (plus any long tables
//! the user names), checkpointing as it goes so a killed run resumes where it stopped.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::checkpoint::{Checkpoint, WEIGHTS};
use super::model::Config;
use super::text::TextTokenizer;
use super::tokens::{Encoded, MAX_TEXT_TOKENS, text_prefix};
use super::train::{TrainConfig, forecast_window, short_window, train, validate, window};
use super::{corpus, describe};

#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub config: Config,
    pub out: PathBuf,
    pub train: TrainConfig,
    /// Real series (from long tables) mixed into the corpus: a third of windows when given.
    pub real: Vec<Vec<f64>>,
    /// The real series' season length.
    pub real_season: usize,
    /// Save a resumable checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Start from this model folder's weights instead of a random initialisation (continued
    /// pretraining); its config must be `config`.
    pub init: Option<PathBuf>,
    /// The share (0 to 1) of whole windows that train only the positions after a random context
    /// that alone sets the scale (`train::forecast_window`); the rest train every position of a
    /// window scaled by its first three quarters (`train::window`).
    pub after_context: f64,
    /// In those after-context windows, also train the first this many positions (scaled by a
    /// context that includes their future, as a plain window's are): 0 for none.
    pub early_targets: usize,
}

/// What a pretraining run did (also written to `metrics.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub steps: usize,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// Mean training loss over the last 5 % of steps.
    pub final_train_loss: f64,
    pub validation_loss: f64,
    pub parameters: i64,
    pub device: String,
    pub resumed_from: usize,
}

#[derive(Serialize, Deserialize)]
struct ResumeState {
    step: usize,
    tokens: u64,
    seconds: f64,
}

fn resume_dir(out: &Path) -> PathBuf {
    out.join(".resume")
}

/// One training window: synthetic, or (a third of the time, when there are any) one of the real
/// series `long` enough for a whole window. With a `tokenizer`, most synthetic windows come after
/// their product text (`describe`), and half of a launched product's windows are its first days
/// (`short_window` from the launch: a few values of context, then what its life cycle does next,
/// which only the text can tell).
fn draw(o: &PretrainOptions, long: &[&Vec<f64>], tokenizer: Option<&TextTokenizer>, rng: &mut ChaCha8Rng) -> Encoded {
    let len = o.train.window;
    let honest = o.after_context > 0.0 && rng.random_bool(o.after_context.min(1.0));
    let whole = |series: &[f64], cov: &[f32], prefix: &[i64], len, season, rng: &mut ChaCha8Rng| match honest {
        true => forecast_window(series, cov, prefix, len, season, o.early_targets, rng),
        false => window(series, cov, prefix, len, season, rng),
    };
    if !long.is_empty() && rng.random_bool(1.0 / 3.0) {
        return whole(long[rng.random_range(0..long.len())], &[], &[], len, o.real_season, rng);
    }
    let slots = if o.config.covariates.is_empty() { o.config.n_covariates as usize } else { 0 };
    let s = corpus::with_covariates(len, slots, rng);
    let text = tokenizer.filter(|_| rng.random_bool(TEXT_SHARE)).map(|tk| {
        let ids = tk.encode(&describe::describe(s.life, rng)).expect("byte-level BPE encodes any text");
        text_prefix(&ids, MAX_TEXT_TOKENS, o.config.text_vocab)
    });
    let prefix = text.unwrap_or_default();
    // The prefix takes its place in the model's length: the values are shorter where both would
    // not fit.
    let len = len.min((o.config.max_len as usize).saturating_sub(prefix.len()));
    match s.life {
        Some(_) if rng.random_bool(0.5) => short_window(&s.values, &s.covariates, &prefix, len, s.season, true, rng),
        _ => whole(&s.values, &s.covariates, &prefix, len, s.season, rng),
    }
}

/// The share of synthetic windows shown with their text (the rest without: text can be missing).
const TEXT_SHARE: f64 = 0.6;

/// The tokenizer pretraining reads text with: `init`'s, or for a model that reads text and has
/// none yet, a byte-level BPE trained on descriptions (`describe::tokenizer_texts`), saved with
/// the model so its text ids keep their meaning.
fn with_pretraining_tokenizer(ck: Checkpoint, seed: u64) -> Result<Checkpoint> {
    let vocab = ck.model.config.text_vocab as usize;
    if ck.tokenizer.is_some() || vocab == 0 {
        return Ok(ck);
    }
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let texts = describe::tokenizer_texts(20_000, &mut rng);
    let tk = TextTokenizer::train(texts.iter().map(String::as_str), vocab.min(1024), 2)?;
    ck.with_tokenizer(&tk.to_json()?)
}

/// The model a fresh run starts from: `init`'s weights, or a seeded random initialisation.
fn start(o: &PretrainOptions, device: Device) -> Result<Checkpoint> {
    let Some(dir) = &o.init else { return Ok(Checkpoint::init(o.config.clone(), device, o.train.seed as i64)) };
    let ck = Checkpoint::load(dir, device)?;
    let had = &ck.model.config;
    // Covariate slots added to a model pretrained without: the rest as it was, the slots at zero.
    let ck = if *had == had.without_covariates() && o.config.without_covariates() == *had { ck.reshaped(o.config.clone()) } else { ck };
    if ck.model.config != o.config {
        anyhow::bail!("{}: its config differs from the one given ({:?} vs {:?})", dir.display(), ck.model.config, o.config);
    }
    Ok(ck)
}

/// Train; `on_step(step, loss, tokens_per_second)` may stop by returning false (the checkpoint
/// taken at the last multiple of `checkpoint_every` stays, so the next call resumes there).
pub fn pretrain(o: &PretrainOptions, device: Device, mut on_step: impl FnMut(usize, f64, f64) -> bool) -> Result<PretrainReport> {
    let resume = resume_dir(&o.out);
    let (ck, state) = match std::fs::read(resume.join("state.json")) {
        Ok(bytes) if resume.join(WEIGHTS).exists() => (Checkpoint::load(&resume, device)?, serde_json::from_slice(&bytes)?),
        _ => (with_pretraining_tokenizer(start(o, device)?, o.train.seed)?, ResumeState { step: 0, tokens: 0, seconds: 0.0 }),
    };
    let tokenizer = ck.tokenizer.clone();
    let long: Vec<&Vec<f64>> = o.real.iter().filter(|s| s.len() >= o.train.window).collect();
    let mut val_rng = crate::forecast::rng();
    let validation: Vec<_> = (0..64).map(|_| draw(o, &long, tokenizer.as_ref(), &mut val_rng)).collect();
    let started = Instant::now();
    let tokens_per_step = (o.train.batch * o.train.window) as u64;
    let mut done = state.step;
    let mut saved: Result<()> = Ok(());
    let losses = train(
        &ck.model,
        &ck.vs,
        &o.train,
        state.step,
        |rng| draw(o, &long, tokenizer.as_ref(), rng),
        |step, loss| {
            done = step + 1;
            let secs = state.seconds + started.elapsed().as_secs_f64();
            let tokens = state.tokens + tokens_per_step * (done - state.step) as u64;
            if done % o.checkpoint_every.max(1) == 0 && done < o.train.steps {
                let st = ResumeState { step: done, tokens, seconds: secs };
                saved = ck
                    .save(&resume, Kind::Float, &serde_json::json!({}))
                    .and_then(|()| Ok(std::fs::write(resume.join("state.json"), serde_json::to_vec(&st)?)?));
                if saved.is_err() {
                    return false;
                }
            }
            on_step(step, loss, tokens as f64 / secs.max(1e-9))
        },
    )?;
    saved.context("saving the resumable checkpoint")?;
    let seconds = state.seconds + started.elapsed().as_secs_f64();
    let tokens = state.tokens + tokens_per_step * (done - state.step) as u64;
    let tail = &losses[losses.len() - (losses.len() / 20).max(1).min(losses.len())..];
    let report = PretrainReport {
        steps: done,
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        final_train_loss: tail.iter().sum::<f64>() / tail.len().max(1) as f64,
        validation_loss: validate(&ck.model, &validation, o.train.batch, device).cross_entropy,
        parameters: super::model::Model::parameters(&ck.vs),
        device: format!("{device:?}"),
        resumed_from: state.step,
    };
    if done < o.train.steps {
        anyhow::bail!(crate::errors::Cancelled);
    }
    ck.save(&o.out, Kind::BFloat16, &serde_json::to_value(&report)?).with_context(|| format!("saving the model to {}", o.out.display()))?;
    let _ = std::fs::remove_dir_all(&resume);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Request;
    use crate::lm::forecast::{Input, LmOptions, forecast};
    use crate::lm::model::load_config;

    /// A model that reads text is pretrained with a tokenizer of its own, saved beside it, and
    /// most synthetic windows come after their product's text (a SEP-ended prefix that fits in
    /// `max_len` with the values).
    #[test]
    fn a_model_that_reads_text_pretrains_on_described_series() {
        let _rng = crate::lm::rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let tiny = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let config = Config { text_vocab: 400, ..tiny };
        let train = TrainConfig {
            steps: 2,
            batch: 2,
            window: 120,
            lr: 1e-3,
            warmup: 1,
            weight_decay: 0.1,
            clip: 1.0,
            seed: 3,
            covariate_lr_scale: crate::lm::train::COVARIATE_LR_SCALE,
        };
        let o = PretrainOptions {
            config,
            out: dir.path().join("m"),
            train,
            real: vec![],
            real_season: 1,
            checkpoint_every: 10,
            init: None,
            after_context: 0.0,
            early_targets: 0,
        };
        pretrain(&o, Device::Cpu, |_, _, _| true).unwrap();
        let ck = Checkpoint::load(&o.out, Device::Cpu).unwrap();
        let tk = ck.tokenizer.as_ref().expect("the pretrained model carries its tokenizer");
        assert!(tk.vocab_size() > 300 && tk.vocab_size() <= 400, "{}", tk.vocab_size());
        let mut rng = crate::forecast::rng();
        let drawn: Vec<Encoded> = (0..300).map(|_| draw(&o, &[], Some(tk), &mut rng)).collect();
        let texted = drawn.iter().filter(|e| e.ids.contains(&crate::lm::tokens::SEP)).count();
        assert!((140..220).contains(&texted), "about 60 % with text: {texted}");
        assert!(drawn.iter().all(|e| e.ids.len() <= 128), "text and values fit max_len");
        let short = drawn.iter().filter(|e| e.ids.iter().filter(|i| **i < crate::lm::tokens::SEP).count() < 120 / 4 + 15).count();
        assert!(short > 5, "launched products' first days: {short}");
    }

    /// A run stopped at step 25 resumes from its step-20 checkpoint and finishes; the saved
    /// model then forecasts, and a horizon beyond max_len is refused in words.
    #[test]
    fn pretraining_resumes_after_a_stop_and_the_model_forecasts() {
        let _rng = crate::lm::rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let config = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        let train = TrainConfig {
            steps: 30,
            batch: 4,
            window: 64,
            lr: 1e-3,
            warmup: 3,
            weight_decay: 0.1,
            clip: 1.0,
            seed: 3,
            covariate_lr_scale: crate::lm::train::COVARIATE_LR_SCALE,
        };
        let o = PretrainOptions {
            config,
            out: dir.path().join("m"),
            train,
            real: vec![vec![1.0; 100]],
            real_season: 7,
            checkpoint_every: 10,
            init: None,
            after_context: 0.5,
            early_targets: 0,
        };
        let err = pretrain(&o, Device::Cpu, |step, _, _| step < 24).unwrap_err();
        assert!(err.is::<crate::errors::Cancelled>(), "{err:#}");
        assert!(!o.out.join(WEIGHTS).exists(), "no final model from a stopped run");
        let report = pretrain(&o, Device::Cpu, |_, _, _| true).unwrap();
        assert_eq!((report.resumed_from, report.steps, report.tokens), (20, 30, 30 * 4 * 64));
        assert!(report.validation_loss.is_finite() && !resume_dir(&o.out).exists());

        // Continued pretraining starts from the saved weights, and only with the same shape.
        let wider = Config { d_ff: 256, ..o.config.clone() };
        let cont = PretrainOptions { config: wider, out: dir.path().join("m2"), init: Some(o.out.clone()), ..o.clone() };
        let err = pretrain(&cont, Device::Cpu, |_, _, _| true).unwrap_err().to_string();
        assert!(err.contains("its config differs"), "{err}");
        let cont = PretrainOptions { config: o.config.clone(), train: TrainConfig { steps: 0, ..train }, ..cont };
        pretrain(&cont, Device::Cpu, |_, _, _| true).unwrap();
        assert_eq!(
            std::fs::read(cont.out.join(WEIGHTS)).unwrap(),
            std::fs::read(o.out.join(WEIGHTS)).unwrap(),
            "zero steps from init: its weights"
        );
        // Covariate slots added to a model pretrained without: pretraining continues, filling them.
        let slotted = Config { n_covariates: 2, ..o.config.clone() };
        let cont = PretrainOptions { config: slotted, out: dir.path().join("m3"), train: TrainConfig { steps: 4, ..train }, ..cont };
        pretrain(&cont, Device::Cpu, |_, _, _| true).unwrap();
        let ck = Checkpoint::load(&cont.out, Device::Cpu).unwrap();
        assert_eq!(ck.model.config.n_covariates, 2);
        assert!(f64::try_from(ck.vs.variables()["covariates.weight"].abs().sum(Kind::Float)).unwrap() > 0.0, "the slots learned");
        let ck = Checkpoint::load(&o.out, Device::Cpu).unwrap();
        assert!(ck.vs.variables().values().all(|v| v.kind() == Kind::Float), "bf16 files load as f32 master weights");
        assert_eq!(ck.to_bytes(Kind::BFloat16).unwrap(), std::fs::read(o.out.join(WEIGHTS)).unwrap(), "in-table weights = the file");
        let history: Vec<f64> = (0..50).map(|t| (t % 7) as f64).collect();
        let levels = [0.1, 0.5, 0.9];
        let req = Request { horizon: 5, season: 7, levels: &levels, nonnegative: true };
        let inputs =
            [Input { history: &history, text: None, ..Input::default() }, Input { history: &history[..3], text: None, ..Input::default() }];
        let f = forecast(&ck, &inputs, &req, &LmOptions { paths: 8, ..Default::default() }, |_| true).unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|f| f.point.len() == 5 && f.quantiles[0].iter().zip(&f.quantiles[2]).all(|(a, b)| 0.0 <= *a && a <= b)));
        let long = Request { horizon: 200, ..req };
        let err = forecast(&ck, &inputs, &long, &LmOptions::default(), |_| true).unwrap_err().to_string();
        assert!(err.contains("horizon 200 is longer than the model allows (126 for max_len 128)"), "{err}");
        std::fs::write(o.out.join(WEIGHTS), b"not safetensors").unwrap();
        let err = format!("{:#}", Checkpoint::load(&o.out, Device::Cpu).err().unwrap());
        assert!(err.contains("model.safetensors") && err.contains("not a checkpoint"), "{err}");
    }
}
