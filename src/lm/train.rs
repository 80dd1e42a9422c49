//! The training loop: AdamW, linear warmup then cosine decay, gradient clipping, a fixed seed,
//! next-value-token cross-entropy on the positions that may be targets.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::model::{COVARIATE_GROUP, Extra, Model, padded_causal_mask};

/// How much faster than the rest a covariate projection that starts at zero learns (in
/// pretraining, and in a fine-tune that adds covariates to a model without slots for them): at
/// the base rate, a few hundred steps of noisy daily demand barely move it (a demo fine-tune
/// left its weights under 0.02). A pretrained projection learns at the base rate.
pub const COVARIATE_LR_SCALE: f64 = 10.0;
use super::tokens::{Encoded, N_SPECIAL, N_VALUE_IDS, PAD, bin_width, encode_with_scale, scale_of, seasonal_lag};

#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    /// Values per training window (context + the part predicted).
    pub window: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub clip: f64,
    pub seed: u64,
    /// The covariate projection's learning rate as a multiple of `lr`: [`COVARIATE_LR_SCALE`]
    /// where it starts at zero, 1 where it was pretrained.
    pub covariate_lr_scale: f64,
}

/// Learning rate at `step`: linear warmup to `lr`, then cosine down to a tenth of it.
pub fn lr_at(step: usize, c: &TrainConfig) -> f64 {
    if step < c.warmup {
        return c.lr * (step + 1) as f64 / c.warmup as f64;
    }
    let progress = (step - c.warmup) as f64 / (c.steps - c.warmup).max(1) as f64;
    c.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()))
}

/// A random window of one series with season length `season`, scaled by the mean |x| of its
/// first three quarters (the part that plays the context) and tokenised, after `prefix` (its
/// product text, `tokens::text_prefix`; empty for none). `covariates`: the series' known
/// covariates, row-major [series.len() × n] (`tokens::covariate_features`), or empty.
pub fn window(series: &[f64], covariates: &[f32], prefix: &[i64], len: usize, season: usize, rng: &mut impl Rng) -> Encoded {
    cut(series, covariates, prefix, len, None, season, rng)
}

/// A random window scaled as a forecast is scaled: by a context of random length (an eighth to
/// seven eighths of the window), with only the positions after it as targets — and its first
/// `early` positions (0 for none). In a `window`, the early targets are scaled by a mean that
/// their own future sets, which teaches a pull towards that mean that a forecast (scaled by its
/// past alone) must not have; kept for a few first values, that pull is the shrinkage a short
/// noisy history needs (a week-old SKU's).
pub fn forecast_window(
    series: &[f64],
    covariates: &[f32],
    prefix: &[i64],
    len: usize,
    season: usize,
    early: usize,
    rng: &mut impl Rng,
) -> Encoded {
    let n = len.min(series.len());
    let context = rng.random_range((n / 8).max(1)..=(n * 7 / 8).max(1));
    let mut enc = cut(series, covariates, &[], len, Some(context), season, rng);
    enc.target.iter_mut().take(context).skip(early).for_each(|t| *t = false);
    enc.after(prefix)
}

/// A new SKU's window: 3 to 14 values of context (drawn at random), the only part the scale
/// comes from, as a new SKU's forecast scales by its first days; then a quarter of `len`
/// after them. What its text and covariates say matters most here, where history says little.
/// `from_start`: the window starts at the series' first value (a launched product's first
/// days, how demand moves after a launch); otherwise anywhere.
pub fn short_window(
    series: &[f64],
    covariates: &[f32],
    prefix: &[i64],
    len: usize,
    season: usize,
    from_start: bool,
    rng: &mut impl Rng,
) -> Encoded {
    let context = rng.random_range(3..=14);
    let len = context + len / 4;
    let (series, covariates) = match from_start {
        true => {
            let end = len.min(series.len());
            let n = covariates.len() / series.len().max(1);
            (&series[..end], &covariates[..end * n])
        }
        false => (series, covariates),
    };
    cut(series, covariates, prefix, len, Some(context), season, rng)
}

/// A random `len`-value window (fewer if the series is shorter) scaled by its first `context`
/// values (three quarters of it when None).
fn cut(
    series: &[f64],
    covariates: &[f32],
    prefix: &[i64],
    len: usize,
    context: Option<usize>,
    season: usize,
    rng: &mut impl Rng,
) -> Encoded {
    let len = len.min(series.len());
    let start = rng.random_range(0..=series.len() - len);
    let w = &series[start..start + len];
    let context = context.unwrap_or(len * 3 / 4).clamp(1, len.max(1));
    let enc = encode_with_scale(w, None, scale_of(&w[..context])).with_season(season);
    let n = covariates.len() / series.len().max(1);
    let enc = if n > 0 { enc.with_covariates(covariates[start * n..(start + len) * n].to_vec(), n) } else { enc };
    enc.after(prefix)
}

/// Windows stacked as tensors [B, T], shorter ones left-padded (as decoding pads contexts):
/// value ids, whether each is a target, each position's seasonal-lag id, which positions are
/// real when any row is padded, and each position's own covariates [B, T, n] when the windows
/// have them.
pub struct Batch {
    pub ids: Tensor,
    pub target: Tensor,
    pub lag: Tensor,
    pub valid: Option<Tensor>,
    pub covariates: Option<Tensor>,
}

/// Mean cross-entropy of predicting ids[:, t] from ids[:, ..t] where `target[:, t]`.
pub fn loss(model: &Model, b: &Batch) -> Tensor {
    let p = predict(model, b);
    cross_entropy_sum(&p) / p.is_target.to_kind(Kind::Float).sum(Kind::Float).clamp_min(1.0)
}

/// Cross-entropy summed over the targets (every other position is labelled −100, ignored).
fn cross_entropy_sum(p: &Predicted) -> Tensor {
    p.logits.cross_entropy_loss::<Tensor>(&p.labels, None, Reduction::Sum, -100, 0.0)
}

/// Every position's next-value logits [B·(T−1), 4096], what it should predict (−100 where
/// nothing) and whether it is a target. The input at t reads the covariates of t + 1, the
/// step it predicts (known in advance: a promotion).
struct Predicted {
    logits: Tensor,
    labels: Tensor,
    is_target: Tensor,
}

fn predict(model: &Model, b: &Batch) -> Predicted {
    let t = b.ids.size()[1];
    let lag = b.lag.narrow(1, 0, t - 1);
    let cov = b.covariates.as_ref().map(|c| c.narrow(1, 1, t - 1));
    let extra = Extra { lag: Some(&lag), covariates: cov.as_ref() };
    let mask = b.valid.as_ref().map(|v| padded_causal_mask(&v.narrow(1, 0, t - 1)));
    let logits = model.forward(&b.ids.narrow(1, 0, t - 1), 0, mask.as_ref(), &extra, None);
    let is_target = b.target.narrow(1, 1, t - 1);
    // Text, the separator and padding are never targets (and lie outside the value head).
    let labels = b.ids.narrow(1, 1, t - 1).masked_fill(&is_target.logical_not(), -100);
    // The loss in f32 whatever the model computes in (bf16 on CUDA).
    Predicted { logits: logits.flatten(0, 1).to_kind(Kind::Float), labels: labels.flatten(0, 1), is_target: is_target.flatten(0, 1) }
}

/// Sum over targets of the CRPS of each predicted distribution over value bins, in units of the
/// series' scale: bin width × Σ_j (F_j − 1[j ≥ target])², F the predicted CDF over the bins (the
/// special ids dropped, as sampling drops them). Unlike cross-entropy it rewards mass near the
/// truth, not only on its exact bin.
fn crps_sum(p: &Predicted) -> f64 {
    let at = p.is_target.nonzero().squeeze_dim(1);
    let n_bins = N_VALUE_IDS - N_SPECIAL;
    let cdf = p.logits.index_select(0, &at).narrow(1, N_SPECIAL, n_bins).softmax(1, Kind::Float).cumsum(1, Kind::Float);
    let y = p.labels.index_select(0, &at) - N_SPECIAL;
    let bins = Tensor::arange(n_bins, (Kind::Int64, cdf.device()));
    let above = bins.unsqueeze(0).ge_tensor(&y.unsqueeze(1)).to_kind(Kind::Float);
    (cdf - above).square().sum(Kind::Float).double_value(&[]) * bin_width()
}

/// Stack encoded windows, left-padding the shorter ones with PAD (never a target, masked, no
/// covariates).
pub fn batch(windows: &[Encoded], device: Device) -> Batch {
    let n = windows.len() as i64;
    let t = windows.iter().map(|w| w.ids.len()).max().unwrap_or(0);
    let n_cov = windows.iter().map(|w| w.n_cov).max().unwrap_or(0);
    let (mut ids, mut target, mut valid, mut lag, mut cov) = (vec![], vec![], vec![], vec![], vec![]);
    for w in windows {
        let pad = t - w.ids.len();
        let row: Vec<i64> = std::iter::repeat_n(PAD, pad).chain(w.ids.iter().copied()).collect();
        lag.extend(seasonal_lag(&row, w.season));
        ids.extend(row);
        target.extend(std::iter::repeat_n(false, pad).chain(w.target.iter().copied()));
        valid.extend((0..t).map(|i| i >= pad));
        if n_cov > 0 {
            let own = if w.n_cov == n_cov { &w.covariates[..] } else { &[] };
            cov.extend(std::iter::repeat_n(0.0, (t - own.len() / n_cov) * n_cov).chain(own.iter().copied()));
        }
    }
    let tensor = |t: Tensor| t.view([n, -1]).to_device(device);
    let padded = windows.iter().any(|w| w.ids.len() < t);
    Batch {
        ids: tensor(Tensor::from_slice(&ids)),
        target: tensor(Tensor::from_slice(&target)),
        lag: tensor(Tensor::from_slice(&lag)),
        valid: padded.then(|| tensor(Tensor::from_slice(&valid))),
        covariates: (n_cov > 0).then(|| Tensor::from_slice(&cov).view([n, t as i64, n_cov as i64]).to_device(device)),
    }
}

/// Train steps `start..c.steps` on windows drawn by `draw` (seeded by the seed and `start`, so
/// a resumed run is as reproducible as a whole one); `on_step(step, loss)` after each step may
/// stop training by returning false (cancellation). Returns the loss of every step taken.
pub fn train(
    model: &Model,
    vs: &nn::VarStore,
    c: &TrainConfig,
    start: usize,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> Encoded,
    mut on_step: impl FnMut(usize, f64) -> bool,
) -> anyhow::Result<Vec<f64>> {
    tch::manual_seed(c.seed as i64 + start as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed.wrapping_add(start as u64));
    let mut opt = nn::AdamW { beta1: 0.9, beta2: 0.95, wd: c.weight_decay, eps: 1e-8, amsgrad: false }.build(vs, c.lr)?;
    let mut losses = Vec::with_capacity(c.steps.saturating_sub(start));
    let mut windows: Vec<Encoded> = (0..c.batch).map(|_| draw(&mut rng)).collect();
    for step in start..c.steps {
        opt.set_lr(lr_at(step, c));
        if model.config.n_covariates > 0 {
            opt.set_lr_group(COVARIATE_GROUP, lr_at(step, c) * c.covariate_lr_scale);
        }
        let l = loss(model, &batch(&windows, vs.device()));
        step_clipped(&mut opt, &l, c.clip);
        // The next batch is drawn on the CPU while a GPU still computes this step (the same
        // draws, in the same order, as drawing it at the top of the next step).
        if step + 1 < c.steps {
            windows = (0..c.batch).map(|_| draw(&mut rng)).collect();
        }
        losses.push(l.double_value(&[]));
        if !on_step(step, losses[losses.len() - 1]) {
            break;
        }
    }
    Ok(losses)
}

/// Backward, the gradient's global norm clipped to `max`, and an AdamW step, with no read back to
/// the host: the clip factor min(1, max / norm) stays on the device. (tch's
/// `backward_step_clip_norm` reads the norm back, which stalls a GPU once a step.) The same
/// arithmetic: the norm in f32, the factor in f64, applied in the gradients' precision.
fn step_clipped(opt: &mut nn::Optimizer, loss: &Tensor, max: f64) {
    opt.zero_grad();
    loss.backward();
    tch::no_grad(|| {
        let grads: Vec<Tensor> = opt.trainable_variables().iter().map(|v| v.grad()).filter(|g| g.defined()).collect();
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm().to_kind(Kind::Double);
        // `max` filled on the device: a host scalar copied there would wait for the backward pass.
        let factor = (total.full_like(max) / (total + 1e-6)).clamp_max(1.0);
        for mut g in grads {
            let _ = g.g_mul_(&factor);
        }
    });
    opt.step();
}

/// Validation-based early stopping: score every `every` steps, remember the best, and stop
/// after `patience` scores in a row without improvement. Serialisable, so a resumed training
/// run keeps its record.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EarlyStopping {
    pub every: usize,
    pub patience: usize,
    /// (step, validation loss) of the best score so far.
    pub best: Option<(usize, f64)>,
    worse: usize,
}

/// What one validation score means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Improved,
    Worse,
    Stop,
}

impl EarlyStopping {
    pub fn new(every: usize, patience: usize) -> Self {
        Self { every, patience, ..Self::default() }
    }

    /// Whether step `step` (0-based) ends with a validation score.
    pub fn due(&self, step: usize) -> bool {
        self.every > 0 && (step + 1) % self.every == 0
    }

    pub fn record(&mut self, step: usize, loss: f64) -> Verdict {
        if self.best.is_none_or(|(_, best)| loss < best) {
            self.best = Some((step, loss));
            self.worse = 0;
            return Verdict::Improved;
        }
        self.worse += 1;
        if self.worse >= self.patience.max(1) { Verdict::Stop } else { Verdict::Worse }
    }
}

/// How well a model predicts fixed validation windows' next values (teacher-forced): mean
/// cross-entropy (what training minimises) and mean CRPS per target (how good the
/// distributions are as forecasts: what model selection uses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    pub cross_entropy: f64,
    pub crps: f64,
}

/// Score validation windows, `batch_size` at a time, without gradients.
pub fn validate(model: &Model, windows: &[Encoded], batch_size: usize, device: tch::Device) -> Validation {
    let _guard = tch::no_grad_guard();
    let (mut ce, mut crps, mut n) = (0.0, 0.0, 0.0);
    for w in windows.chunks(batch_size.max(1)) {
        let p = predict(model, &batch(w, device));
        let targets = p.is_target.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
        ce += cross_entropy_sum(&p).double_value(&[]);
        crps += crps_sum(&p);
        n += targets;
    }
    Validation { cross_entropy: ce / n.max(1.0), crps: crps / n.max(1.0) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn early_stopping_keeps_the_best_and_stops_after_patience() {
        let mut es = super::EarlyStopping::new(10, 2);
        assert!(!es.due(0) && es.due(9) && es.due(19));
        use super::Verdict::*;
        let verdicts: Vec<_> =
            [(9, 3.0), (19, 2.5), (29, 2.6), (39, 2.4), (49, 2.45), (59, 2.5)].iter().map(|&(s, l)| es.record(s, l)).collect();
        assert_eq!(verdicts, vec![Improved, Improved, Worse, Improved, Worse, Stop]);
        assert_eq!(es.best, Some((39, 2.4)));
    }

    /// A short training run's settings: batch 16, lr 3e-3, warmup 10.
    fn quick(steps: usize, window: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            steps,
            batch: 16,
            window,
            lr: 3e-3,
            warmup: 10,
            weight_decay: 0.01,
            clip: 1.0,
            seed,
            covariate_lr_scale: COVARIATE_LR_SCALE,
        }
    }

    /// CRPS in units of the scale: a certain forecast on the right bin scores 0, one `k` bins
    /// off scores k bin widths (cross-entropy calls every miss equally wrong), and an even split
    /// over the right bin and the one 2 above scores 2 × (½)² = ½ a width.
    #[test]
    fn crps_rewards_mass_near_the_truth() {
        let _rng = crate::lm::rng_lock();
        let target = 2100i64;
        let score = |mass: &[(i64, f64)]| {
            let mut logits = vec![-1e4f32; N_VALUE_IDS as usize];
            mass.iter().for_each(|&(id, p)| logits[id as usize] = p.ln() as f32);
            let p = Predicted {
                logits: Tensor::from_slice(&logits).view([1, -1]),
                labels: Tensor::from_slice(&[target]),
                is_target: Tensor::from_slice(&[true]),
            };
            crps_sum(&p) / bin_width()
        };
        assert!(score(&[(target, 1.0)]).abs() < 1e-3);
        assert!((score(&[(target + 1, 1.0)]) - 1.0).abs() < 1e-3);
        assert!((score(&[(target - 10, 1.0)]) - 10.0).abs() < 1e-3);
        assert!((score(&[(target, 0.5), (target + 2, 0.5)]) - 0.5).abs() < 1e-3);
    }

    /// A new SKU's window holds 3 to 14 values of context then a quarter window, and its scale
    /// is the mean of that context alone (on 1, 2, 3, …: its first value + (context − 1) / 2);
    /// a launched product's starts at its first value.
    #[test]
    fn a_short_window_is_scaled_by_its_first_days_only() {
        let series: Vec<f64> = (1..=200).map(f64::from).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut contexts = std::collections::BTreeSet::new();
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let w = short_window(&series, &[], &[], 128, 7, false, &mut rng);
            let context = w.ids.len() - 32;
            assert!((3..=14).contains(&context), "{context}");
            let first = w.scale - (context as f64 - 1.0) / 2.0;
            assert!(first.fract() == 0.0 && first >= 1.0 && first + w.ids.len() as f64 - 1.0 <= 200.0, "{first}");
            assert!((crate::lm::tokens::decode(w.ids[0], w.scale) - first).abs() <= bin_width() * w.scale);
            contexts.insert(context);
            firsts.insert(first as i64);
        }
        assert_eq!(contexts.len(), 12, "every context length from 3 to 14 is drawn");
        assert!(firsts.len() > 50, "windows start anywhere: {} starts", firsts.len());
        // A launched product's short windows start at its first day (here: 1, 2, 3, …).
        for _ in 0..20 {
            let w = short_window(&series, &[1.0; 200], &[], 128, 7, true, &mut rng);
            let context = w.ids.len() - 32;
            assert_eq!(w.scale, (context as f64 + 1.0) / 2.0, "the mean of 1..={context}");
            assert_eq!(w.covariates.len(), w.ids.len(), "its covariates are cut with it");
        }
    }

    /// A forecast window's scale is the mean of its context alone, and only the values after
    /// that context are targets; contexts run from an eighth to seven eighths of the window.
    #[test]
    fn a_forecast_window_trains_only_after_the_context_that_scales_it() {
        let series: Vec<f64> = (1..=400).map(f64::from).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut contexts = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let w = forecast_window(&series, &[], &[7, 8], 128, 7, 0, &mut rng);
            assert_eq!(w.ids.len(), 130);
            assert!(w.target[..2].iter().all(|t| !t), "the prefix is never a target");
            let context = w.target[2..].iter().position(|&t| t).expect("targets after the context");
            assert!(w.target[2 + context..].iter().all(|&t| t), "every value after the context is a target");
            assert!((16..=112).contains(&context), "{context}");
            // On 1, 2, 3, …: the mean of `context` values from `first` is first + (context − 1) / 2.
            let first = w.scale - (context as f64 - 1.0) / 2.0;
            assert!(first.fract() == 0.0 && first >= 1.0 && first + 127.0 <= 400.0, "scaled by its context: {}", w.scale);
            assert!((crate::lm::tokens::decode(w.ids[2], w.scale) - first).abs() <= bin_width() * w.scale);
            contexts.insert(context);
        }
        assert!(contexts.len() > 60, "context lengths vary: {}", contexts.len());
        // With `early`, the first values are targets too, and still nothing else of the context.
        for _ in 0..100 {
            let w = forecast_window(&series, &[], &[], 128, 7, 10, &mut rng);
            assert!(w.target[..10].iter().all(|&t| t), "the first 10 values are targets");
            let context = 10 + w.target[10..].iter().position(|&t| t).expect("targets after the context");
            assert!((16..=112).contains(&context) && w.target[context..].iter().all(|&t| t), "{context}");
        }
    }

    use super::*;
    use crate::lm::forecast::holdout_wql;
    use crate::lm::model::Config;
    use crate::lm::sample::{Context, SampleConfig, sample};
    use crate::lm::tokens::encode;

    fn tiny() -> Config {
        Config {
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            d_ff: 128,
            max_len: 64,
            text_vocab: 0,
            n_covariates: 0,
            covariates: vec![],
            tied: false,
            season_lag: true,
        }
    }

    /// The clip computed on the device steps exactly as tch's (which reads the norm back), and
    /// the clip engages: an unclipped step moves the weights further.
    #[test]
    fn clipping_on_the_device_steps_as_tch_clips() {
        // Each run reseeds torch's global generator: no other test may draw between.
        let _rng = crate::lm::rng_lock();
        let run = |ours: bool, max: f64| {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root(), 8, 4, Default::default());
            let before = lin.ws.copy();
            let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
            let x = Tensor::randn([16, 8], (Kind::Float, Device::Cpu)) * 10.0;
            let loss = x.apply(&lin).square().mean(Kind::Float);
            if ours {
                step_clipped(&mut opt, &loss, max)
            } else {
                opt.backward_step_clip_norm(&loss, max)
            }
            (lin.ws.copy() - before).abs().max().double_value(&[])
        };
        let (ours, theirs, free) = (run(true, 0.5), run(false, 0.5), run(true, 1e9));
        assert!((ours - theirs).abs() <= 1e-7 * theirs, "ours {ours} vs tch {theirs}");
        assert!(ours < 0.5 * free, "clipped step {ours} vs unclipped {free}");
        assert!((free - run(false, 1e9)).abs() <= 1e-7 * free, "no clip: the same step");
    }

    /// Mixed precision, as on CUDA: activations and products in bf16, the loss in f32, the
    /// gradient reaching f32 master weights that AdamW steps. The run learns as the f32 one does.
    #[test]
    fn bf16_compute_trains_f32_master_weights() {
        let _rng = crate::lm::rng_lock();
        let pattern = [3.0, 5.0, 8.0, 12.0, 9.0, 4.0, 2.0];
        let series: Vec<f64> = (0..200).map(|t| pattern[t % 7]).collect();
        let cfg = quick(60, 42, 3);
        let run = |compute: Option<Kind>| {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut model = Model::new(&vs.root(), tiny());
            model.compute = compute;
            let losses = train(&model, &vs, &cfg, 0, |rng| window(&series, &[], &[], cfg.window, 7, rng), |_, _| true).unwrap();
            let ids = Tensor::from_slice(&[2100i64, 2200, 2300]).view([1, 3]);
            let kind = model.forward(&ids, 0, None, &Extra::default(), None).kind();
            assert!(vs.variables().values().all(|v| v.kind() == Kind::Float), "master weights stay f32");
            let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
            (mean(&losses[..5]), mean(&losses[losses.len() - 5..]), kind)
        };
        let (first, last, kind) = run(Some(Kind::BFloat16));
        assert_eq!(kind, Kind::BFloat16, "logits computed in bf16");
        assert!(last < 0.5 * first, "bf16 loss {first:.3} -> {last:.3}");
        let (_, f32_last, f32_kind) = run(None);
        assert_eq!(f32_kind, Kind::Float);
        assert!((last - f32_last).abs() < 0.25 * f32_last.max(0.5), "bf16 {last:.3} against f32 {f32_last:.3}");
    }

    /// The tiny model learns one weekly pattern: loss falls, and its sampled median forecast
    /// beats the naive forecast. Sampling with a fixed seed is reproducible; save → load gives
    /// identical logits.
    #[test]
    fn tiny_model_overfits_a_seasonal_series() {
        let _rng = crate::lm::rng_lock();
        let device = crate::device::best();
        let pattern = [3.0, 5.0, 8.0, 12.0, 9.0, 4.0, 2.0];
        let series: Vec<f64> = (0..400).map(|t| pattern[t % 7] * (1.0 + 0.05 * ((t * 37 % 11) as f64 - 5.0) / 5.0)).collect();
        let vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root(), tiny());
        assert!(Model::parameters(&vs) < 1_000_000, "tiny is under 1 M parameters");
        let cfg = quick(150, 42, 7);
        let losses = train(&model, &vs, &cfg, 0, |rng| window(&series, &[], &[], cfg.window, 7, rng), |_, _| true).unwrap();
        let first = losses[..10].iter().sum::<f64>() / 10.0;
        let last = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
        assert!(last < 0.5 * first, "loss {first:.3} -> {last:.3}");

        let history = &series[..365];
        let actual = &series[365..372];
        let enc = encode(&history[history.len() - 35..], None);
        let sc = SampleConfig { paths: 20, horizon: 7, temperature: 1.0, top_k: 50, seed: 1, lag_seasons: 1 };
        let ctx = [Context { ids: enc.ids.clone(), scale: enc.scale, season: 7, ..Context::default() }];
        let paths = sample(&model, &ctx, &sc, device);
        let median: Vec<f64> = (0..7)
            .map(|h| {
                let mut v: Vec<f64> = paths[0].iter().map(|p| p[h]).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            })
            .collect();
        let mae = |f: &[f64]| f.iter().zip(actual).map(|(a, b)| (a - b).abs()).sum::<f64>() / 7.0;
        let naive = vec![history[history.len() - 1]; 7];
        assert!(mae(&median) < mae(&naive), "lm {median:?} vs naive {naive:?}, actual {actual:?}");
        assert_eq!(paths, sample(&model, &ctx, &sc, device), "fixed seed, same paths");
        // Model selection's score: the trained model's sampled forecasts of held-out weeks are
        // far better than an untrained one's, and the same on a second call (fixed seeds).
        let held: Vec<Encoded> = (0..4).map(|i| encode(&series[300 + i * 7..342 + i * 7], None).with_season(7)).collect();
        let untrained = Model::new(&nn::VarStore::new(device).root(), tiny());
        let (trained_wql, untrained_wql) = (holdout_wql(&model, &held, 7, 8, device), holdout_wql(&untrained, &held, 7, 8, device));
        assert!(trained_wql < 0.5 * untrained_wql, "held-out WQL {trained_wql:.3} trained, {untrained_wql:.3} untrained");
        assert_eq!(trained_wql, holdout_wql(&model, &held, 7, 8, device));

        let file = tempfile::NamedTempFile::with_suffix(".safetensors").unwrap();
        vs.save(file.path()).unwrap();
        let mut vs2 = nn::VarStore::new(device);
        let model2 = Model::new(&vs2.root(), tiny());
        vs2.load(file.path()).unwrap();
        let ids = Tensor::from_slice(&enc.ids).view([1, -1]).to_device(device);
        let lag = Tensor::from_slice(&seasonal_lag(&enc.ids, 7)).view([1, -1]).to_device(device);
        let extra = Extra { lag: Some(&lag), ..Extra::default() };
        let a = model.forward(&ids, 0, None, &extra, None);
        let b = model2.forward(&ids, 0, None, &extra, None);
        assert_eq!(f64::try_from((a - b).abs().max()).unwrap(), 0.0);
    }

    /// Text conditioning end to end: two products with the same values in different weekly
    /// orders, told apart only by their text. After training on text-prefixed windows of both
    /// (text dropped from some, so rows are padded and masked), each product's windows score
    /// better after its own text than after the other's, and a padded batch scores the same
    /// windows as unpadded ones.
    #[test]
    fn tiny_model_learns_which_text_goes_with_which_pattern() {
        let _rng = crate::lm::rng_lock();
        use crate::lm::tokens::text_prefix;
        let device = crate::device::best();
        let shapes = [[2.0, 9.0, 2.0, 4.0, 6.0, 3.0, 5.0], [6.0, 3.0, 5.0, 2.0, 9.0, 4.0, 2.0]];
        let series: Vec<Vec<f64>> = shapes.iter().map(|p| (0..200).map(|t| p[t % 7]).collect()).collect();
        let texts = [text_prefix(&[3, 4, 5], 8, 16), text_prefix(&[11, 12], 8, 16)];
        let vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root(), Config { text_vocab: 16, ..tiny() });
        let cfg = quick(200, 6, 3);
        let draw = |rng: &mut ChaCha8Rng| {
            let i = rng.random_range(0..2);
            let text: &[i64] = if rng.random_bool(0.8) { &texts[i] } else { &[] };
            window(&series[i], &[], text, cfg.window, 7, rng)
        };
        train(&model, &vs, &cfg, 0, draw, |_, _| true).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let plain: Vec<Vec<Encoded>> =
            (0..2).map(|i| (0..32).map(|_| window(&series[i], &[], &[], cfg.window, 7, &mut rng)).collect()).collect();
        let with = |i: usize, text: usize| plain[i].iter().map(|w| w.clone().after(&texts[text])).collect::<Vec<_>>();
        for i in 0..2 {
            let own = validate(&model, &with(i, i), 32, device).cross_entropy;
            let other = validate(&model, &with(i, 1 - i), 32, device).cross_entropy;
            assert!(own < 0.5 * other, "product {i}: loss {own:.3} after its own text, {other:.3} after the other's");
        }
        let mixed: Vec<Encoded> = with(0, 0).into_iter().take(4).chain(with(1, 1).into_iter().take(4)).collect();
        let apart = (validate(&model, &mixed[..4], 4, device).cross_entropy + validate(&model, &mixed[4..], 4, device).cross_entropy) / 2.0;
        let together = validate(&model, &mixed, 8, device).cross_entropy;
        assert!(batch(&mixed, device).valid.is_some(), "texts of different lengths pad the batch");
        assert!((apart - together).abs() < 1e-4, "padding is masked: {apart} vs {together}");
    }

    /// Known covariates end to end: demand triples on promotion days, which come at random.
    /// A model without covariates gains them at zero (identical logits); after training it
    /// scores windows better with the flags than with them zeroed, and its forecast rises on
    /// the horizon's promotion days only.
    #[test]
    fn tiny_model_learns_what_a_promotion_flag_does() {
        let _rng = crate::lm::rng_lock();
        use crate::lm::checkpoint::Checkpoint;
        use crate::lm::tokens::{CovariateColumn, covariate_features};
        let device = crate::device::best();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let promo: Vec<f64> = (0..600).map(|_| if rng.random_bool(0.2) { 1.0 } else { 0.0 }).collect();
        let series: Vec<f64> = promo.iter().map(|p| 4.0 * (1.0 + 2.0 * p) + rng.random_range(-0.5..0.5)).collect();
        let cov = covariate_features(&[CovariateColumn { flag: true, values: &promo }]);

        let plain = Checkpoint::init(tiny(), device, 1);
        let ids = Tensor::from_slice(&encode(&series[..20], None).ids).view([1, -1]).to_device(device);
        let before = plain.model.forward(&ids, 0, None, &Extra::default(), None);
        let ck = plain.with_covariates(&["promo".to_string()]).unwrap();
        let ones = Tensor::ones([1, 20, 1], (Kind::Float, device));
        let after = ck.model.forward(&ids, 0, None, &Extra { covariates: Some(&ones), ..Extra::default() }, None);
        assert_eq!(f64::try_from((before - after).abs().max()).unwrap(), 0.0, "new covariates start at zero");
        assert!(ck.with_covariates(&["price".to_string()]).is_err(), "other names are refused");
        // As a fine-tune does: the base gains the covariate at zero, then learns it.
        let ck = Checkpoint::init(tiny(), device, 1).with_covariates(&["promo".to_string()]).unwrap();

        let cfg = quick(200, 48, 5);
        train(&ck.model, &ck.vs, &cfg, 0, |rng| window(&series[..500], &cov[..500], &[], cfg.window, 1, rng), |_, _| true).unwrap();
        let held: Vec<Encoded> = (0..8).map(|i| window(&series[500 + i * 6..], &cov[500 + i * 6..], &[], 48, 1, &mut rng)).collect();
        let zeroed: Vec<Encoded> = held.iter().map(|w| w.clone().with_covariates(vec![0.0; w.ids.len()], 1)).collect();
        let (with, without) = (validate(&ck.model, &held, 8, device).cross_entropy, validate(&ck.model, &zeroed, 8, device).cross_entropy);
        assert!(with < without - 0.5, "loss {with:.3} with the flags, {without:.3} without");

        let enc = encode(&series[452..500], None);
        let flags: Vec<f32> = (0..55).map(|t| if t == 50 || t == 53 { 1.0 } else { 0.0 }).collect();
        let ctx = [Context { ids: enc.ids, scale: enc.scale, season: 1, covariates: [&cov[452..500], &flags[48..]].concat() }];
        let sc = SampleConfig { paths: 40, horizon: 7, temperature: 1.0, top_k: 0, seed: 2, lag_seasons: 1 };
        let paths = sample(&ck.model, &ctx, &sc, device);
        let mean = |h: usize| paths[0].iter().map(|p| p[h]).sum::<f64>() / 40.0;
        let (on, off) = ((mean(2) + mean(5)) / 2.0, (mean(0) + mean(1) + mean(3) + mean(4) + mean(6)) / 5.0);
        assert!(on > 2.0 * off, "forecast {on:.2} on promotion days, {off:.2} off");
    }

    /// A model pretrained with unnamed covariate slots reads named covariates in its first
    /// slots with the weights it learned, zero-initialised where names outnumber slots; once
    /// named, other names are refused; pretraining fills its slots from the corpus.
    #[test]
    fn named_covariates_take_a_pretrained_models_slots() {
        let _rng = crate::lm::rng_lock();
        use crate::lm::checkpoint::Checkpoint;
        let device = crate::device::best();
        let slots = Checkpoint::init(Config { n_covariates: 3, ..tiny() }, device, 1);
        let learned = slots.vs.variables()["covariates.weight"].copy();
        assert!(f64::try_from(learned.abs().sum(Kind::Float)).unwrap() > 0.0);
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = slots.with_covariates(&names(&["promo"])).unwrap();
        assert_eq!((one.model.config.n_covariates, one.model.config.covariates.clone()), (1, names(&["promo"])));
        let w = one.vs.variables()["covariates.weight"].copy();
        assert!(w.equal(&learned.narrow(1, 0, 1)), "the first slot's weights");
        let two = one.with_covariates(&names(&["promo", "calendar.weekend"])).unwrap();
        let w2 = two.vs.variables()["covariates.weight"].copy();
        assert_eq!(two.model.config.n_covariates, 2, "a named model takes more names after its own");
        assert!(w2.narrow(1, 0, 1).equal(&w) && f64::try_from(w2.narrow(1, 1, 1).abs().sum(Kind::Float)).unwrap() == 0.0);
        assert!(two.with_covariates(&names(&["price"])).is_err(), "a named model keeps its names");
        let slots = Checkpoint::init(Config { n_covariates: 2, ..tiny() }, device, 1);
        let learned = slots.vs.variables()["covariates.weight"].copy();
        let more = slots.with_covariates(&names(&["a", "b", "c"])).unwrap();
        let w = more.vs.variables()["covariates.weight"].copy();
        assert!(w.narrow(1, 0, 2).equal(&learned) && f64::try_from(w.narrow(1, 2, 1).abs().sum(Kind::Float)).unwrap() == 0.0);

        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let windows: Vec<Encoded> = (0..40)
            .map(|_| {
                let s = crate::lm::corpus::with_covariates(64, 3, &mut rng);
                window(&s.values, &s.covariates, &[], 64, s.season, &mut rng)
            })
            .collect();
        assert!(windows.iter().all(|w| w.n_cov == 3) && windows.iter().any(|w| w.covariates.iter().any(|f| *f != 0.0)));
        assert_eq!(batch(&windows, device).covariates.unwrap().size(), [40, 64, 3]);
    }

    /// A soup averages every weight two checkpoints share; covariate slots only the first has
    /// stay its own; checkpoints of other shapes are refused.
    #[test]
    fn averaging_two_checkpoints_mixes_the_weights_they_share() {
        let _rng = crate::lm::rng_lock();
        use crate::lm::checkpoint::Checkpoint;
        let device = crate::device::best();
        let (a, b) = (Checkpoint::init(Config { n_covariates: 2, ..tiny() }, device, 1), Checkpoint::init(tiny(), device, 2));
        let copies =
            |ck: &Checkpoint| ck.vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect::<std::collections::HashMap<_, _>>();
        let (va, vb) = (copies(&a), copies(&b));
        let soup = a.averaged(&b, 0.25).unwrap();
        let vs = soup.vs.variables();
        let want = &va["head.weight"] * 0.75 + &vb["head.weight"] * 0.25;
        assert!(f64::try_from((&vs["head.weight"] - want).abs().max()).unwrap() < 1e-6);
        assert!(vs["covariates.weight"].equal(&va["covariates.weight"]), "the first's own slots");
        let wide = Checkpoint::init(Config { d_ff: 256, ..tiny() }, device, 3);
        let Err(err) = soup.averaged(&wide, 0.5) else { panic!("checkpoints of two shapes averaged") };
        assert!(err.to_string().contains("differ in shape"), "{err}");
    }
}
