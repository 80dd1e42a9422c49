//! Forecasting by sampling: prefill each series' context once, share its keys and values
//! across its sample paths (broadcast, never copied per path), then decode the horizon one value
//! token at a time with a KV cache.
use tch::{Device, Kind, Tensor};

use super::model::{LayerCache, Model};
use super::tokens::{N_SPECIAL, PAD, decode};

#[derive(Debug, Clone, Copy)]
pub struct SampleConfig {
    pub paths: i64,
    pub horizon: i64,
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    pub top_k: i64,
    pub seed: i64,
}

/// `contexts[i]`: token ids of series i (text + SEP + values), any lengths: they are
/// left-padded with PAD and the padding masked. Returns paths[i][p][h] as values (× scales[i]).
pub fn sample(model: &Model, contexts: &[Vec<i64>], scales: &[f64], cfg: &SampleConfig, device: Device) -> Vec<Vec<Vec<f64>>> {
    tch::manual_seed(cfg.seed);
    let _guard = tch::no_grad_guard();
    let b = contexts.len() as i64;
    let t = contexts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let mut ids = vec![PAD; (b * t) as usize];
    let mut valid = vec![false; (b * t) as usize];
    for (i, c) in contexts.iter().enumerate() {
        let off = i * t as usize + (t as usize - c.len());
        ids[off..off + c.len()].copy_from_slice(c);
        valid[off..off + c.len()].iter_mut().for_each(|v| *v = true);
    }
    let ids = Tensor::from_slice(&ids).view([b, t]).to_device(device);
    let valid = Tensor::from_slice(&valid).view([b, t]).to_device(device);
    let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    let mask = causal.view([1, 1, t, t]).logical_and(&valid.view([b, 1, 1, t]));
    // A fully padded row would attend to nothing: let padding see itself.
    let mask = mask.logical_or(&Tensor::eye(t, (Kind::Bool, device)).view([1, 1, t, t]));
    let mut cache: Vec<LayerCache> = vec![];
    let logits = model.forward(&ids, 0, Some(&mask), None, Some(&mut cache)).select(1, t - 1);
    cache.iter_mut().for_each(|c| c.share(cfg.paths, &valid));
    let mut next = draw(&logits.repeat_interleave_self_int(cfg.paths, 0, None), cfg);
    let mut steps = vec![next.shallow_clone()];
    for h in 1..cfg.horizon {
        let logits = model.forward(&next.view([-1, 1]), t + h - 1, None, None, Some(&mut cache)).select(1, 0);
        next = draw(&logits, cfg);
        steps.push(next.shallow_clone());
    }
    let tokens: Vec<i64> = Vec::try_from(Tensor::stack(&steps, 1).to_device(Device::Cpu).flatten(0, -1)).expect("i64 ids");
    let (p, h) = (cfg.paths as usize, cfg.horizon as usize);
    (0..b as usize).map(|i| (0..p).map(|j| (0..h).map(|s| decode(tokens[(i * p + j) * h + s], scales[i])).collect()).collect()).collect()
}

/// One token per row from value logits [N, 4096]: temperature, top-k, never a special id.
fn draw(logits: &Tensor, cfg: &SampleConfig) -> Tensor {
    let mut l = logits.to_kind(Kind::Float) / cfg.temperature.max(1e-6);
    let _ = l.narrow(1, 0, N_SPECIAL).fill_(f64::NEG_INFINITY);
    if cfg.top_k > 0 && cfg.top_k < l.size()[1] {
        let (top, _) = l.topk(cfg.top_k, 1, true, true);
        let floor = top.narrow(1, cfg.top_k - 1, 1);
        l = l.where_self(&l.ge_tensor(&floor), &Tensor::full_like(&l, f64::NEG_INFINITY));
    }
    l.softmax(1, Kind::Float).multinomial(1, true).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;
    use crate::lm::model::Config;

    /// Decoding with the shared prefix gives the logits a plain forward pass over context +
    /// generated tokens gives, for every path.
    #[test]
    fn shared_prefix_decoding_matches_a_full_forward_pass() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = Config { d_model: 32, n_layers: 2, n_heads: 4, d_ff: 64, max_len: 64, text_vocab: 0, n_covariates: 0, tied: true };
        let model = Model::new(&vs.root(), cfg);
        let _guard = tch::no_grad_guard();
        let ctx = Tensor::from_slice(&[2100i64, 2150, 2200, 2120, 2300, 2050, 2110, 2400, 2130, 2190]).view([2, 5]);
        let paths = 3;
        let mut cache = vec![];
        let _ = model.forward(&ctx, 0, None, None, Some(&mut cache));
        let valid = Tensor::ones([2, 5], (Kind::Bool, Device::Cpu));
        cache.iter_mut().for_each(|c| c.share(paths, &valid));
        let next = Tensor::from_slice(&[2101i64, 2102, 2103, 2104, 2105, 2106]);
        let cached = model.forward(&next.view([-1, 1]), 5, None, None, Some(&mut cache)).select(1, 0);
        let full_in = Tensor::cat(&[ctx.repeat_interleave_self_int(paths, 0, None), next.view([-1, 1])], 1);
        let full = model.forward(&full_in, 0, None, None, None).select(1, 5);
        let err = f64::try_from((cached - full).abs().max()).unwrap();
        assert!(err < 1e-4, "max |difference| {err}");
    }
}
