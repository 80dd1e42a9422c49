//! The forecasting language model, in one file, top to bottom like nanoGPT: a decoder-only
//! transformer over product-text tokens, a separator, then value tokens; it predicts the next
//! value token. RMSNorm, rotary positions, SwiGLU, causal scaled-dot-product attention, a KV
//! cache for decoding. Known future covariates (calendar, price, promotion) are projected and
//! added to the value embeddings, and so is the seasonal lag (Lag-Llama's idea): each position
//! also sees the value one season before the one it predicts, so the seasonal-naive guess is an
//! input the model refines rather than a pattern it must first discover by attention.
//!
//! Vocabulary: ids [0, 4096) are value tokens (`tokens.rs`), then `SEP`, then text ids.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::tokens::N_VALUE_IDS;

/// The optimiser parameter group of the covariate projection: where it starts at zero (a
/// fine-tune adding covariates to a model without slots, pretraining) it trains faster than
/// the rest (`train::TrainConfig::covariate_lr_scale`).
pub const COVARIATE_GROUP: usize = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    /// SwiGLU hidden width.
    pub d_ff: i64,
    /// Longest sequence (text + separator + context + horizon) the model is trained for.
    pub max_len: i64,
    /// Text (BPE) vocabulary size; 0 = a model without text.
    #[serde(default)]
    pub text_vocab: i64,
    /// Covariates per step added to value embeddings (0 = none). Without `covariates` names
    /// they are slots that pretraining teaches to read any flag or level in context
    /// (`corpus::with_covariates`); a fine-tune or `evaluate --covariates` names the first ones.
    #[serde(default)]
    pub n_covariates: i64,
    /// The covariates' column names, in input order (what a fine-tune learned them from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covariates: Vec<String>,
    /// Output head shares the value-token embedding matrix.
    #[serde(default)]
    pub tied: bool,
    /// Add the projected embedding of the seasonal-lag value (`tokens::seasonal_lag`) to every
    /// position's input.
    #[serde(default)]
    pub season_lag: bool,
}

impl Config {
    pub fn vocab(&self) -> i64 {
        N_VALUE_IDS + 1 + self.text_vocab
    }

    /// The same shape without covariate inputs: what two checkpoints must share for one's
    /// weights to serve the other.
    pub fn without_covariates(&self) -> Config {
        Config { n_covariates: 0, covariates: vec![], ..self.clone() }
    }

    /// Shape errors a config can have, in words.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_len", self.max_len),
        ];
        if let Some((k, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("`{k}` must be positive, got {v}"));
        }
        if self.d_model % self.n_heads != 0 || (self.d_model / self.n_heads) % 2 != 0 {
            return Err(format!("`d_model` ({}) must split into `n_heads` ({}) heads of even width", self.d_model, self.n_heads));
        }
        if self.text_vocab < 0 || self.n_covariates < 0 {
            return Err("`text_vocab` and `n_covariates` cannot be negative".into());
        }
        if !self.covariates.is_empty() && self.covariates.len() as i64 != self.n_covariates {
            return Err(format!("`covariates` names {} columns but `n_covariates` is {}", self.covariates.len(), self.n_covariates));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
}

impl RmsNorm {
    fn new(p: nn::Path, d: i64) -> Self {
        Self { weight: p.ones("weight", &[d]) }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let norm = (x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float) + 1e-6).rsqrt();
        (x * norm).to_kind(x.kind()) * self.weight.to_kind(x.kind())
    }
}

/// A bias-free linear layer in the input's precision: f32 weights are cast (differentiably) to
/// bf16 when the model computes in bf16, so the product runs in bf16 and the gradient reaches the
/// f32 master weights — mixed precision without `tch::autocast`. A no-op cast otherwise.
fn linear(l: &nn::Linear, x: &Tensor) -> Tensor {
    x.matmul(&l.ws.to_kind(x.kind()).tr())
}

/// Keys and values of one layer, [batch, heads, time, head_dim]. After [`LayerCache::share`],
/// the prefilled context is kept once per series and the rows (its sample paths) cache only the
/// tokens they generated.
#[derive(Debug, Default)]
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    prefix: Option<Prefix>,
}

/// A series' prefilled keys and values, shared by its `paths` rows; `bias` is 0 for real keys
/// and −∞ for padding, shaped [series, 1, 1, T].
#[derive(Debug)]
struct Prefix {
    k: Tensor,
    v: Tensor,
    bias: Tensor,
    paths: i64,
}

#[derive(Debug)]
struct Block {
    norm1: RmsNorm,
    qkv: nn::Linear,
    out: nn::Linear,
    norm2: RmsNorm,
    gate_up: nn::Linear,
    down: nn::Linear,
    n_heads: i64,
}

impl LayerCache {
    /// Freeze the cached context as a prefix shared by `paths` consecutive rows per series
    /// (`valid` [series, T] marks real keys): decoding then attends to it by broadcasting
    /// instead of copying it per path.
    pub fn share(&mut self, paths: i64, valid: &Tensor) {
        let (Some(k), Some(v)) = (self.k.take(), self.v.take()) else { return };
        let (b, t) = valid.size2().expect("[series, T]");
        let bias = Tensor::zeros([b, t], (k.kind(), k.device())).masked_fill(&valid.logical_not(), f64::NEG_INFINITY).view([b, 1, 1, t]);
        self.prefix = Some(Prefix { k, v, bias, paths });
    }
}

/// Attention of rows' queries q [N, H, tq, hd] to their series' shared prefix and to their own
/// generated keys k, v [N, H, t, hd] (all in the past of every query: one token per step).
/// A series' paths are stacked as the query rows of one product with its prefix
/// ([series, H, paths·tq, ·]), so the prefix is read once per series, never broadcast into a
/// per-path copy (that copy was 20× the cost of the attention itself on the CPU).
fn shared_attention(q: &Tensor, p: &Prefix, k: &Tensor, v: &Tensor) -> Tensor {
    let (n, h, tq, hd) = q.size4().expect("[N, H, tq, hd]");
    let (b, tp, t) = (n / p.paths, p.k.size()[2], k.size()[2]);
    let rows = p.paths * tq;
    let scale = 1.0 / (hd as f64).sqrt();
    // [N, H, tq, x] ↔ [series, H, paths·tq, x]
    let by_series = |x: &Tensor, w: i64| x.view([b, p.paths, h, tq, w]).permute([0, 2, 1, 3, 4]).reshape([b, h, rows, w]);
    let by_row = |x: &Tensor, w: i64| x.view([b, h, p.paths, tq, w]).permute([0, 2, 1, 3, 4]).reshape([n, h, tq, w]);
    let qs = by_series(q, hd);
    let to_prefix = qs.matmul(&p.k.transpose(-1, -2)) * scale + &p.bias;
    let to_own = by_series(&q.matmul(&k.transpose(-1, -2)), t) * scale;
    let w = Tensor::cat(&[to_prefix, to_own], -1).softmax(-1, q.kind());
    by_row(&w.narrow(-1, 0, tp).matmul(&p.v), hd) + by_row(&w.narrow(-1, tp, t), t).matmul(v)
}

impl Block {
    fn new(p: nn::Path, c: &Config) -> Self {
        let nb = nn::LinearConfig { bias: false, ..Default::default() };
        Self {
            norm1: RmsNorm::new(&p / "norm1", c.d_model),
            qkv: nn::linear(&p / "qkv", c.d_model, 3 * c.d_model, nb),
            out: nn::linear(&p / "out", c.d_model, c.d_model, nb),
            norm2: RmsNorm::new(&p / "norm2", c.d_model),
            gate_up: nn::linear(&p / "gate_up", c.d_model, 2 * c.d_ff, nb),
            down: nn::linear(&p / "down", c.d_ff, c.d_model, nb),
            n_heads: c.n_heads,
        }
    }

    /// x: [B, T, D]; `rope` the (cos, sin) for these T positions; `mask` [B, 1, T, T_total]
    /// (true = may attend), else causal attention (`causal`, a prefill) or attention to every
    /// cached key (a decoding step).
    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), mask: Option<&Tensor>, causal: bool, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, D]");
        let hd = d / self.n_heads;
        let qkv = linear(&self.qkv, &self.norm1.forward(x)).view([b, t, 3, self.n_heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (apply_rope(&qkv.get(0), rope), apply_rope(&qkv.get(1), rope), qkv.get(2));
        let (k, v) = match cache {
            Some(c) => {
                let k = match &c.k {
                    Some(old) => Tensor::cat(&[old, &k], 2),
                    None => k,
                };
                let v = match &c.v {
                    Some(old) => Tensor::cat(&[old, &v], 2),
                    None => v,
                };
                c.k = Some(k.shallow_clone());
                c.v = Some(v.shallow_clone());
                if let Some(p) = &c.prefix {
                    return self.finish(x, &shared_attention(&q, p, &k, &v));
                }
                (k, v)
            }
            None => (k, v),
        };
        let att = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, causal && mask.is_none(), None, false);
        self.finish(x, &att)
    }

    /// Attention output [B, H, T, hd] → residual, then the SwiGLU MLP.
    fn finish(&self, x: &Tensor, att: &Tensor) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, D]");
        let x = x + linear(&self.out, &att.transpose(1, 2).contiguous().view([b, t, d]));
        let gu = linear(&self.gate_up, &self.norm2.forward(&x)).chunk(2, -1);
        &x + linear(&self.down, &(gu[0].silu() * &gu[1]))
    }
}

/// Rotary embedding: rotate channel pairs of q/k ([B, H, T, hd]) by position-dependent angles.
fn apply_rope(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Tensor {
    let half = x.size()[3] / 2;
    let (x1, x2) = (x.narrow(3, 0, half), x.narrow(3, half, half));
    Tensor::cat(&[&x1 * cos - &x2 * sin, &x1 * sin + &x2 * cos], 3)
}

/// (cos, sin) tables for positions [start, start + len), shaped [1, 1, len, hd/2].
fn rope_tables(start: i64, len: i64, hd: i64, device: Device) -> (Tensor, Tensor) {
    let inv = Tensor::arange_start_step(0, hd, 2, (Kind::Float, device)).divide_scalar(hd as f64).multiply_scalar(-(10_000f64.ln())).exp();
    let pos = Tensor::arange_start(start, start + len, (Kind::Float, device));
    let angles = pos.unsqueeze(1) * inv.unsqueeze(0);
    (angles.cos().view([1, 1, len, hd / 2]), angles.sin().view([1, 1, len, hd / 2]))
}

/// The attention mask [B, 1, T, T] of left-padded rows (`valid` [B, T] marks real tokens):
/// causal, never to padding; a padding position sees itself, so no row attends to nothing.
pub fn padded_causal_mask(valid: &Tensor) -> Tensor {
    let (b, t) = valid.size2().expect("[B, T]");
    let device = valid.device();
    let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    let mask = causal.view([1, 1, t, t]).logical_and(&valid.view([b, 1, 1, t]));
    mask.logical_or(&Tensor::eye(t, (Kind::Bool, device)).view([1, 1, t, t]))
}

/// Inputs added to the token embeddings, each [B, T, ·] like the ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    /// Known covariates [B, T, n_covariates], when the model takes them.
    pub covariates: Option<&'a Tensor>,
    /// Seasonal-lag value ids [B, T] (`tokens::seasonal_lag`), when the model takes them.
    pub lag: Option<&'a Tensor>,
}

#[derive(Debug)]
pub struct Model {
    pub config: Config,
    embed: nn::Embedding,
    covariates: Option<nn::Linear>,
    lag: Option<nn::Linear>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Option<nn::Linear>,
    /// The precision activations are computed in (None: the weights'). On CUDA, bf16 over f32
    /// master weights (training and validation; `Checkpoint::for_inference` casts the weights
    /// themselves for forecasting); on the CPU, where bf16 products are slower, the weights'.
    pub compute: Option<Kind>,
}

impl Model {
    pub fn new(vs: &nn::Path, config: Config) -> Self {
        let c = &config;
        let embed = nn::embedding(
            vs / "embed",
            c.vocab(),
            c.d_model,
            nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() },
        );
        // No bias: zero covariates ("nothing special") add nothing, as no covariates do.
        let nb = nn::LinearConfig { bias: false, ..Default::default() };
        let cov = (vs / "covariates").set_group(COVARIATE_GROUP);
        let covariates = (c.n_covariates > 0).then(|| nn::linear(&cov, c.n_covariates, c.d_model, nb));
        let lag = c.season_lag.then(|| nn::linear(vs / "lag", c.d_model, c.d_model, nb));
        let blocks = (0..c.n_layers).map(|i| Block::new(vs / "blocks" / i, c)).collect();
        let head =
            (!c.tied).then(|| nn::linear(vs / "head", c.d_model, N_VALUE_IDS, nn::LinearConfig { bias: false, ..Default::default() }));
        let compute = vs.device().is_cuda().then_some(Kind::BFloat16);
        Self { norm: RmsNorm::new(vs / "norm", c.d_model), config, embed, covariates, lag, blocks, head, compute }
    }

    /// Logits over value ids for every position: ids [B, T] → [B, T, 4096].
    /// `start` is the position of ids[:, 0] (non-zero when decoding with a cache); `mask` as in
    /// [`Block::forward`]; `extra` the inputs added to the embeddings.
    pub fn forward(
        &self,
        ids: &Tensor,
        start: i64,
        mask: Option<&Tensor>,
        extra: &Extra,
        mut cache: Option<&mut Vec<LayerCache>>,
    ) -> Tensor {
        let (_, t) = ids.size2().expect("[B, T]");
        let compute = self.compute.unwrap_or(self.embed.ws.kind());
        let mut x = self.embed.forward(ids).to_kind(compute);
        if let (Some(proj), Some(cov)) = (&self.covariates, extra.covariates) {
            let cov = cov.to_kind(x.kind());
            x = x + linear(proj, &cov);
        }
        if let (Some(proj), Some(lag)) = (&self.lag, extra.lag) {
            x = x + linear(proj, &self.embed.forward(lag).to_kind(compute));
        }
        let hd = self.config.d_model / self.config.n_heads;
        let rope = rope_tables(start, t, hd, ids.device());
        let rope = (rope.0.to_kind(x.kind()), rope.1.to_kind(x.kind()));
        if let Some(c) = cache.as_deref_mut() {
            c.resize_with(self.blocks.len(), LayerCache::default);
        }
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &rope, mask, start == 0, cache.as_deref_mut().map(|c| &mut c[i]));
        }
        let x = self.norm.forward(&x);
        match &self.head {
            Some(h) => linear(h, &x),
            None => x.matmul(&self.embed.ws.narrow(0, 0, N_VALUE_IDS).to_kind(x.kind()).tr()),
        }
    }

    pub fn parameters(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}

/// Read a model config (`models/*.yaml`), naming the file and the field on any error.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading model config {}", path.display()))?;
    let c: Config = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    c.check().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_have_the_documented_sizes_and_bad_shapes_are_named() {
        let _rng = crate::lm::rng_lock();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for (name, lo, hi) in [("tiny", 0.3e6, 1e6), ("small", 2e6, 3e6), ("base", 90e6, 110e6)] {
            let c = load_config(&dir.join(format!("{name}.yaml"))).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = Model::new(&vs.root(), c);
            let n = Model::parameters(&vs) as f64;
            assert!(n > lo && n < hi, "{name}: {n} parameters");
        }
        let bad = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
        std::fs::write(bad.path(), "d_model: 100\nn_layers: 2\nn_heads: 3\nd_ff: 64\nmax_len: 32\n").unwrap();
        let err = load_config(bad.path()).unwrap_err().to_string();
        assert!(err.contains(".yaml") && err.contains("`n_heads` (3)"), "{err}");
        std::fs::write(bad.path(), "d_model: 64\nn_layer: 2\n").unwrap();
        let err = load_config(bad.path()).unwrap_err().to_string();
        assert!(err.contains("n_layer"), "{err}");
    }

    /// The bf16 weights CUDA forecasts with give the f32 model's logits to bf16 precision, the
    /// KV-cached decoding path included (checked on the CPU: every tensor's kind must agree).
    #[test]
    fn bf16_weights_give_the_same_logits() {
        let _rng = crate::lm::rng_lock();
        let c = load_config(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml")).unwrap();
        tch::manual_seed(5);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), c);
        let ids = Tensor::randint_low(2, 4000, [2, 24], (Kind::Int64, Device::Cpu));
        let lag = Tensor::randint_low(0, 4000, [2, 24], (Kind::Int64, Device::Cpu));
        let extra = Extra { lag: Some(&lag), ..Extra::default() };
        let f32_logits = model.forward(&ids, 0, None, &extra, None);
        vs.bfloat16();
        let mut cache = vec![];
        let prefix = model.forward(&ids.narrow(1, 0, 23), 0, None, &Extra { lag: Some(&lag.narrow(1, 0, 23)), ..extra }, Some(&mut cache));
        assert_eq!(prefix.kind(), Kind::BFloat16);
        let step = model.forward(&ids.narrow(1, 23, 1), 23, None, &Extra { lag: Some(&lag.narrow(1, 23, 1)), ..extra }, Some(&mut cache));
        let diff = (step.to_kind(Kind::Float).select(1, 0) - f32_logits.select(1, 23)).abs().max().double_value(&[]);
        let scale = f32_logits.abs().max().double_value(&[]);
        assert!(diff < 0.05 * scale, "bf16 logits differ by {diff} (scale {scale})");
    }
}
