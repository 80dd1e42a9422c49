//! Forecasting by sampling: prefill each series' context once, share its keys and values
//! across its sample paths, then decode the horizon one value token at a time with a KV cache.
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
    let mut valid = Tensor::from_slice(&valid).view([b, t]).to_device(device);
    let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    let mask = causal.view([1, 1, t, t]).logical_and(&valid.view([b, 1, 1, t]));
    // A fully padded row would attend to nothing: let padding see itself.
    let mask = mask.logical_or(&Tensor::eye(t, (Kind::Bool, device)).view([1, 1, t, t]));
    let mut cache: Vec<LayerCache> = vec![];
    let logits = model.forward(&ids, 0, Some(&mask), None, Some(&mut cache)).select(1, t - 1);
    cache.iter_mut().for_each(|c| c.repeat(cfg.paths));
    valid = valid.repeat_interleave_self_int(cfg.paths, 0, None);
    let mut next = draw(&logits.repeat_interleave_self_int(cfg.paths, 0, None), cfg);
    let mut steps = vec![next.shallow_clone()];
    for h in 1..cfg.horizon {
        valid = Tensor::cat(&[&valid, &Tensor::ones([b * cfg.paths, 1], (Kind::Bool, device))], 1);
        let mask = valid.view([b * cfg.paths, 1, 1, -1]);
        let logits = model.forward(&next.view([-1, 1]), t + h - 1, Some(&mask), None, Some(&mut cache)).select(1, 0);
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
