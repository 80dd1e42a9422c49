//! Forecasting by sampling: prefill each series' context once, share its keys and values
//! across its sample paths (broadcast, never copied per path), then decode the horizon one value
//! token at a time with a KV cache.
use tch::{Device, Kind, Tensor};

use super::model::{Extra, LayerCache, Model, padded_causal_mask};
use super::tokens::{N_SPECIAL, N_VALUE_IDS, PAD, decode, seasonal_lag};

#[derive(Debug, Clone, Copy)]
pub struct SampleConfig {
    pub paths: i64,
    pub horizon: i64,
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    pub top_k: i64,
    pub seed: i64,
}

/// One series to continue: its token ids (text + SEP + values), the scale its values were
/// divided by, its season length (for the model's seasonal-lag input) and, for a model with
/// covariates, each position's and then each horizon step's known covariates, row-major
/// [(ids.len() + horizon) × n_covariates] (empty: none known, zeros).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub ids: Vec<i64>,
    pub scale: f64,
    pub season: usize,
    pub covariates: Vec<f32>,
}

/// Every row's covariates over context + horizon, [B, t + horizon, n], left-padded like the
/// ids; None for a model without covariates.
fn covariates(contexts: &[Context], t: usize, horizon: usize, n: usize, device: Device) -> Option<Tensor> {
    if n == 0 {
        return None;
    }
    let len = t + horizon;
    let mut all = vec![0f32; contexts.len() * len * n];
    for (i, c) in contexts.iter().enumerate() {
        if c.covariates.len() == (c.ids.len() + horizon) * n {
            let end = (i + 1) * len * n;
            all[end - c.covariates.len()..end].copy_from_slice(&c.covariates);
        }
    }
    Some(Tensor::from_slice(&all).view([contexts.len() as i64, len as i64, n as i64]).to_device(device))
}

/// Contexts of any lengths are left-padded with PAD and the padding masked. Returns
/// paths[i][p][h] as values (× the context's scale).
pub fn sample(model: &Model, contexts: &[Context], cfg: &SampleConfig, device: Device) -> Vec<Vec<Vec<f64>>> {
    tch::manual_seed(cfg.seed);
    let _guard = tch::no_grad_guard();
    let b = contexts.len() as i64;
    let t = contexts.iter().map(|c| c.ids.len()).max().unwrap_or(0) as i64;
    let mut ids = vec![PAD; (b * t) as usize];
    let mut valid = vec![false; (b * t) as usize];
    let mut lag = Vec::with_capacity((b * t) as usize);
    for (i, c) in contexts.iter().enumerate() {
        let off = i * t as usize + (t as usize - c.ids.len());
        ids[off..off + c.ids.len()].copy_from_slice(&c.ids);
        valid[off..off + c.ids.len()].iter_mut().for_each(|v| *v = true);
        lag.extend(seasonal_lag(&ids[i * t as usize..(i + 1) * t as usize], c.season));
    }
    let ids = Tensor::from_slice(&ids).view([b, t]).to_device(device);
    let valid = Tensor::from_slice(&valid).view([b, t]).to_device(device);
    let lag = Tensor::from_slice(&lag).view([b, t]).to_device(device);
    let mask = padded_causal_mask(&valid);
    let mut cache: Vec<LayerCache> = vec![];
    // The input at position p reads the covariates of p + 1, the step it predicts.
    let cov = covariates(contexts, t as usize, cfg.horizon as usize, model.config.n_covariates as usize, device);
    let prefill_cov = cov.as_ref().map(|c| c.narrow(1, 1, t));
    let extra = Extra { lag: Some(&lag), covariates: prefill_cov.as_ref() };
    let logits = model.forward(&ids, 0, Some(&mask), &extra, Some(&mut cache)).select(1, t - 1);
    cache.iter_mut().for_each(|c| c.share(cfg.paths, &valid));
    let mut next = draw(&logits.repeat_interleave_self_int(cfg.paths, 0, None), cfg);
    // Every row's tokens so far (context, then what it generated): where decoding's lags come from.
    let seasons: Vec<i64> = contexts.iter().map(|c| c.season.max(1) as i64).collect();
    let seasons = Tensor::from_slice(&seasons).to_device(device).repeat_interleave_self_int(cfg.paths, 0, None);
    let mut rows = ids.repeat_interleave_self_int(cfg.paths, 0, None);
    let mut steps = vec![next.shallow_clone()];
    for h in 1..cfg.horizon {
        rows = Tensor::cat(&[rows, next.view([-1, 1])], 1);
        let lag = decoding_lag(&rows, &seasons, t + h);
        let step_cov = cov.as_ref().map(|c| c.narrow(1, t + h, 1).repeat_interleave_self_int(cfg.paths, 0, None));
        let extra = Extra { lag: Some(&lag), covariates: step_cov.as_ref() };
        let logits = model.forward(&next.view([-1, 1]), t + h - 1, None, &extra, Some(&mut cache)).select(1, 0);
        next = draw(&logits, cfg);
        steps.push(next.shallow_clone());
    }
    let tokens: Vec<i64> = Vec::try_from(Tensor::stack(&steps, 1).to_device(Device::Cpu).flatten(0, -1)).expect("i64 ids");
    let (p, h) = (cfg.paths as usize, cfg.horizon as usize);
    let value = |i: usize, j: usize, s: usize| decode(tokens[(i * p + j) * h + s], contexts[i].scale);
    (0..b as usize).map(|i| (0..p).map(|j| (0..h).map(|s| value(i, j, s)).collect()).collect()).collect()
}

/// The lag input [N, 1] of the token about to be fed, which predicts position `next`: each
/// row's token at `next − season` (as `tokens::seasonal_lag` does for whole windows).
fn decoding_lag(rows: &Tensor, seasons: &Tensor, next: i64) -> Tensor {
    let at = -seasons + next;
    let id = rows.gather(1, &at.clamp_min(0).view([-1, 1]), false);
    let is_value = id.ge(N_SPECIAL).logical_and(&id.lt(N_VALUE_IDS)).logical_and(&at.ge(0).view([-1, 1]));
    id.where_self(&is_value, &Tensor::full_like(&id, PAD))
}

/// One token per row from value logits [N, 4096]: temperature, top-k, never a special id.
fn draw(logits: &Tensor, cfg: &SampleConfig) -> Tensor {
    let mut l = logits.to_kind(Kind::Float);
    let v = l.size()[1];
    if cfg.top_k > 0 && cfg.top_k < v - N_SPECIAL {
        let (top, _) = l.narrow(1, N_SPECIAL, v - N_SPECIAL).topk(cfg.top_k, 1, true, true);
        let floor = top.narrow(1, cfg.top_k - 1, 1);
        l = l.where_self(&l.ge_tensor(&floor), &Tensor::full_like(&l, f64::NEG_INFINITY));
    }
    // Unnormalised probabilities: exp((l − max) / T) over the value ids, special ids zero.
    let max = l.narrow(1, N_SPECIAL, v - N_SPECIAL).amax([1].as_slice(), true);
    let mut p = l - max;
    if cfg.temperature != 1.0 {
        p *= 1.0 / cfg.temperature.max(1e-6);
    }
    let p = p.exp_();
    let _ = p.narrow(1, 0, N_SPECIAL).fill_(0.0);
    inverse_cdf(&p)
}

/// Ids per block of the two-level inverse CDF.
const BLOCK: i64 = 64;

/// A categorical draw per row of unnormalised probabilities `p` [N, V] by inverse CDF in two
/// levels: pick a block of [`BLOCK`] ids by the blocks' cumulative masses, then an id inside it
/// by that block's own. Exactly the categorical distribution, and cheaper than `multinomial`
/// or one cumulative sum over all V ids (both slow on the CPU); a zero-probability id is never
/// drawn (`right`: u falls in id i's interval [cdf[i−1], cdf[i]), u kept below the total).
fn inverse_cdf(p: &Tensor) -> Tensor {
    let (n, v) = p.size2().expect("[N, V] probabilities");
    let blocks = v / BLOCK;
    assert_eq!(blocks * BLOCK, v, "the vocabulary is a whole number of blocks");
    let below = |x: Tensor, total: &Tensor| x.minimum(&(total * (1.0 - 1e-6)));
    let by_block = p.view([n, blocks, BLOCK]);
    let mass = by_block.sum_dim_intlist([2].as_slice(), false, Kind::Float);
    let cdf = mass.cumsum(1, Kind::Float);
    let total = cdf.narrow(1, blocks - 1, 1);
    let u = below(Tensor::rand([n, 1], (Kind::Float, p.device())) * &total, &total);
    let block = u.searchsorted(&cdf, false, true, "right", None::<Tensor>).clamp_max(blocks - 1);
    let before = cdf.gather(1, &block, false) - mass.gather(1, &block, false);
    let inside = by_block.gather(1, &block.unsqueeze(2).expand([n, 1, BLOCK], false), false).squeeze_dim(1).cumsum(1, Kind::Float);
    let rest = below((u - before).clamp_min(0.0), &inside.narrow(1, BLOCK - 1, 1));
    let id = rest.searchsorted(&inside, false, true, "right", None::<Tensor>).clamp_max(BLOCK - 1);
    (block * BLOCK + id).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;
    use crate::lm::model::Config;

    /// Decoding with the shared prefix (and the decoding-time seasonal lags) gives the logits a
    /// plain forward pass over context + generated tokens gives, for every path.
    #[test]
    fn shared_prefix_decoding_matches_a_full_forward_pass() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = Config {
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 64,
            max_len: 64,
            text_vocab: 0,
            n_covariates: 0,
            covariates: vec![],
            tied: true,
            season_lag: true,
        };
        let model = Model::new(&vs.root(), cfg);
        let _guard = tch::no_grad_guard();
        let rows = [[2100i64, 2150, 2200, 2120, 2300], [2050, 2110, 2400, 2130, 2190]];
        let (paths, season) = (3, 2);
        let lags = |rows: &[Vec<i64>]| {
            let flat: Vec<i64> = rows.iter().flat_map(|r| seasonal_lag(r, season)).collect();
            Tensor::from_slice(&flat).view([rows.len() as i64, -1])
        };
        let ctx: Vec<Vec<i64>> = rows.iter().map(|r| r.to_vec()).collect();
        let ctx_t = Tensor::from_slice(&rows.concat()).view([2, 5]);
        let mut cache = vec![];
        let lag = lags(&ctx);
        let _ = model.forward(&ctx_t, 0, None, &Extra { lag: Some(&lag), ..Extra::default() }, Some(&mut cache));
        let valid = Tensor::ones([2, 5], (Kind::Bool, Device::Cpu));
        cache.iter_mut().for_each(|c| c.share(paths, &valid));
        let next = Tensor::from_slice(&[2101i64, 2102, 2103, 2104, 2105, 2106]);
        let full_in = Tensor::cat(&[ctx_t.repeat_interleave_self_int(paths, 0, None), next.view([-1, 1])], 1);
        let seasons = Tensor::from_slice(&[season as i64; 6]);
        let step_lag = decoding_lag(&full_in, &seasons, 6);
        let extra = Extra { lag: Some(&step_lag), ..Extra::default() };
        let cached = model.forward(&next.view([-1, 1]), 5, None, &extra, Some(&mut cache)).select(1, 0);
        let full_rows: Vec<Vec<i64>> = (0..6).map(|i| Vec::<i64>::try_from(full_in.get(i)).unwrap()).collect();
        let full_lag = lags(&full_rows);
        assert_eq!(Vec::<i64>::try_from(step_lag.view([-1])).unwrap(), Vec::<i64>::try_from(full_lag.select(1, 5)).unwrap());
        let full = model.forward(&full_in, 0, None, &Extra { lag: Some(&full_lag), ..Extra::default() }, None).select(1, 5);
        let err = f64::try_from((cached - full).abs().max()).unwrap();
        assert!(err < 1e-4, "max |difference| {err}");
    }

    /// The two-level inverse CDF draws the categorical distribution: frequencies over 200,000
    /// draws from one row match its probabilities (a chi-square test), zero-probability ids
    /// (special ids, top-k's cut) are never drawn, and a seed repeats the draws.
    #[test]
    fn draws_follow_the_distribution_and_skip_impossible_ids() {
        tch::manual_seed(11);
        let v = N_VALUE_IDS;
        let row: Vec<f32> = (0..v).map(|i| ((i * 37) % 11) as f32 * 0.7 - if i == 300 { -6.0 } else { 0.0 }).collect();
        let n = 200_000;
        let logits = Tensor::from_slice(&row).view([1, v]).expand([n, v], false);
        let cfg = SampleConfig { paths: 1, horizon: 1, temperature: 1.0, top_k: 0, seed: 0 };
        let ids = Vec::<i64>::try_from(draw(&logits, &cfg)).unwrap();
        let mut counts = vec![0f64; v as usize];
        ids.iter().for_each(|&i| counts[i as usize] += 1.0);
        assert_eq!(counts[..N_SPECIAL as usize].iter().sum::<f64>(), 0.0, "special ids are never drawn");
        let weights: Vec<f64> = row.iter().enumerate().map(|(i, l)| if i < N_SPECIAL as usize { 0.0 } else { (*l as f64).exp() }).collect();
        let total: f64 = weights.iter().sum();
        let chi2: f64 = (N_SPECIAL as usize..v as usize)
            .map(|i| {
                let expected = weights[i] / total * n as f64;
                (counts[i] - expected).powi(2) / expected
            })
            .sum();
        let dof = (v - N_SPECIAL - 1) as f64;
        assert!(chi2 < dof + 5.0 * (2.0 * dof).sqrt(), "chi-square {chi2:.0} for {dof} degrees of freedom");
        assert!((counts[300] / n as f64 - weights[300] / total).abs() < 0.01, "the likeliest id's share");

        let top = SampleConfig { top_k: 5, ..cfg };
        let ids = Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 20_000), &top)).unwrap();
        let mut allowed: Vec<usize> = (N_SPECIAL as usize..v as usize).collect();
        allowed.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
        let floor = row[allowed[4]];
        assert!(ids.iter().all(|&i| i >= N_SPECIAL && row[i as usize] >= floor), "top-k keeps only the k likeliest logits");
        tch::manual_seed(3);
        let a = Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 100), &cfg)).unwrap();
        tch::manual_seed(3);
        assert_eq!(a, Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 100), &cfg)).unwrap(), "a seed repeats the draws");
    }
}
