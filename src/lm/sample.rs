//! Forecasting by sampling: prefill each series' context once, share its keys and values
//! across its sample paths (broadcast, never copied per path), then decode the horizon one value
//! token at a time with a KV cache.
//!
//! Each step's forecast distribution is the mixture of every path's next-value distribution,
//! not the empirical distribution of the paths' draws (Rao–Blackwellisation): the same paths
//! and the same expectation, without the draws' own noise. At step 1 it is the model's exact
//! predictive distribution; 20 paths give quantiles that sample quantiles need hundreds for.
use tch::{Device, Kind, Tensor};

use super::model::{Extra, LayerCache, Model, padded_causal_mask};
use super::tokens::{N_SPECIAL, N_VALUE_IDS, PAD, decode, seasonal_lag};
use crate::forecast::QuantileForecast;

#[derive(Debug, Clone, Copy)]
pub struct SampleConfig {
    pub paths: i64,
    pub horizon: i64,
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    pub top_k: i64,
    pub seed: i64,
    /// Seasons the seasonal-lag input of the steps after the first averages
    /// ([`season_shape_lag`]); the first step, the prefill's last position, reads the last
    /// season's value as every context position does (averaging it too cost aus_retail 5 %).
    /// 1 = the last season's value throughout, as in training.
    pub lag_seasons: i64,
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

/// What each step's predictive distribution is summarised by: the quantile levels, and whether
/// values below zero count as zero (demand), for the mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary<'a> {
    pub levels: &'a [f64],
    pub nonnegative: bool,
}

/// One series' sampled forecast: its paths `paths[p][h]` (values × the context's scale), and
/// per step the mean and the `Summary::levels` quantiles of the mixture of the paths'
/// next-value distributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub paths: Vec<Vec<f64>>,
    pub forecast: QuantileForecast,
}

/// Every row's covariates over context + horizon, [B, t + horizon, n], left-padded like the
/// ids; None for a model without covariates, or when no row has any (all zero: the projection
/// has no bias, so they would add nothing — a model's unused pretrained slots).
fn covariates(contexts: &[Context], t: usize, horizon: usize, n: usize, device: Device) -> Option<Tensor> {
    if n == 0 || contexts.iter().all(|c| c.covariates.is_empty()) {
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
    sample_summarised(model, contexts, cfg, &Summary::default(), device).into_iter().map(|s| s.paths).collect()
}

/// [`sample`], with each series' forecast summarised step by step (see the module's note).
pub fn sample_summarised(model: &Model, contexts: &[Context], cfg: &SampleConfig, summary: &Summary, device: Device) -> Vec<Sampled> {
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
    let mixture = Mixture::new(summary, cfg.paths, device);
    let (mut next, p) = draw(&logits.repeat_interleave_self_int(cfg.paths, 0, None), cfg);
    let mut marginals = vec![mixture.summarise(&p)];
    // Every row's tokens so far (context, then what it generated): where decoding's lags come from.
    let seasons: Vec<i64> = contexts.iter().map(|c| c.season.max(1) as i64).collect();
    let seasons = Tensor::from_slice(&seasons).to_device(device).repeat_interleave_self_int(cfg.paths, 0, None);
    let mut rows = ids.repeat_interleave_self_int(cfg.paths, 0, None);
    let mut steps = vec![next.shallow_clone()];
    for h in 1..cfg.horizon {
        rows = Tensor::cat(&[rows, next.view([-1, 1])], 1);
        let lag = decoding_lag(&rows, &seasons, t + h, cfg.lag_seasons);
        let step_cov = cov.as_ref().map(|c| c.narrow(1, t + h, 1).repeat_interleave_self_int(cfg.paths, 0, None));
        let extra = Extra { lag: Some(&lag), covariates: step_cov.as_ref() };
        let logits = model.forward(&next.view([-1, 1]), t + h - 1, None, &extra, Some(&mut cache)).select(1, 0);
        let (drawn, p) = draw(&logits, cfg);
        next = drawn;
        marginals.push(mixture.summarise(&p));
        steps.push(next.shallow_clone());
    }
    let tokens: Vec<i64> = Vec::try_from(Tensor::stack(&steps, 1).to_device(Device::Cpu).flatten(0, -1)).expect("i64 ids");
    let (p, h) = (cfg.paths as usize, cfg.horizon as usize);
    let value = |i: usize, j: usize, s: usize| decode(tokens[(i * p + j) * h + s], contexts[i].scale);
    let forecasts = mixture.forecasts(&marginals, contexts);
    let paths = (0..b as usize).map(|i| (0..p).map(|j| (0..h).map(|s| value(i, j, s)).collect()).collect());
    paths.zip(forecasts).map(|(paths, forecast)| Sampled { paths, forecast }).collect()
}

/// Summarises a decoding step's drawing distributions [series × paths, V] into each series'
/// mixture mean [series] and quantile ids [series, levels].
struct Mixture {
    paths: i64,
    levels: Tensor,
    n_levels: usize,
    /// Every id's value in units of the scale (0 for special ids; clipped at 0 for demand).
    values: Tensor,
}

impl Mixture {
    fn new(summary: &Summary, paths: i64, device: Device) -> Self {
        let values: Vec<f32> =
            (0..N_VALUE_IDS).map(|id| decode(id, 1.0)).map(|v| if summary.nonnegative { v.max(0.0) } else { v } as f32).collect();
        let levels: Vec<f32> = summary.levels.iter().map(|&q| q as f32).collect();
        Self {
            paths,
            levels: Tensor::from_slice(&levels).to_device(device),
            n_levels: levels.len(),
            values: Tensor::from_slice(&values).to_device(device),
        }
    }

    /// `p`: unnormalised probabilities [series × paths, V]. The quantile id at level q is the
    /// first id whose mixture CDF reaches q.
    fn summarise(&self, p: &Tensor) -> (Tensor, Tensor) {
        let (n, v) = p.size2().expect("[N, V] probabilities");
        let series = n / self.paths;
        let norm = p / p.sum_dim_intlist([1].as_slice(), true, Kind::Float);
        let mix = norm.view([series, self.paths, v]).mean_dim([1].as_slice(), false, Kind::Float);
        let mean = (&mix * &self.values).sum_dim_intlist([1].as_slice(), false, Kind::Float);
        if self.n_levels == 0 {
            return (mean, Tensor::zeros([series, 0], (Kind::Int64, p.device())));
        }
        let cdf = mix.cumsum(1, Kind::Float);
        let q = self.levels.view([1, -1]).expand([series, self.n_levels as i64], false).contiguous();
        (mean, q.searchsorted(&cdf, false, false, "left", None::<Tensor>).clamp_max(v - 1))
    }

    /// Each series' forecast from the steps' summaries, × its scale.
    fn forecasts(&self, steps: &[(Tensor, Tensor)], contexts: &[Context]) -> Vec<QuantileForecast> {
        let (h, l) = (steps.len(), self.n_levels);
        let means: Vec<f32> =
            Vec::try_from(Tensor::stack(&steps.iter().map(|s| &s.0).collect::<Vec<_>>(), 1).to_device(Device::Cpu).flatten(0, -1))
                .expect("f32 means");
        let ids: Vec<i64> =
            Vec::try_from(Tensor::stack(&steps.iter().map(|s| &s.1).collect::<Vec<_>>(), 1).to_device(Device::Cpu).flatten(0, -1))
                .expect("i64 ids");
        contexts
            .iter()
            .enumerate()
            .map(|(i, c)| QuantileForecast {
                point: (0..h).map(|s| means[i * h + s] as f64 * c.scale).collect(),
                quantiles: (0..l).map(|k| (0..h).map(|s| decode(ids[(i * h + s) * l + k], c.scale)).collect()).collect(),
            })
            .collect()
    }
}

/// The lag input [N, 1] of the token about to be fed, which predicts position `next`: each
/// row's token at `next − season` (as `tokens::seasonal_lag` does for whole windows).
fn decoding_lag(rows: &Tensor, seasons: &Tensor, next: i64, average: i64) -> Tensor {
    let at = (-seasons + next).view([-1, 1]);
    let id = rows.gather(1, &at.clamp_min(0), false);
    let is_value = value_tokens(&id).logical_and(&at.ge(0));
    let id = if average > 1 {
        let (shape, has_level) = season_shape_lag(rows, seasons, next, average);
        shape.where_self(&has_level, &id)
    } else {
        id
    };
    id.where_self(&is_value, &Tensor::full_like(&id, PAD))
}

/// Where `ids` hold value tokens (not PAD, EOS, SEP or text): the tensor form of `tokens::lag_id`'s test.
fn value_tokens(ids: &Tensor) -> Tensor {
    ids.ge(N_SPECIAL).logical_and(&ids.lt(N_VALUE_IDS))
}

/// The seasonal lag of `next` as the season's average shape at the last season's level: the
/// level of the season ending one season back (the trailing mean of its `season` tokens) plus
/// the mean, over the last `average` seasons, of that phase's token less its own season's
/// level. Ids are uniform bins, so means of ids are means of scaled values. A row whose earlier
/// seasons are not all there averages those that are; also returns, per row, whether it had a
/// level and a season to average (where not, the caller keeps the plain lag).
fn season_shape_lag(rows: &Tensor, seasons: &Tensor, next: i64, average: i64) -> (Tensor, Tensor) {
    let valid = value_tokens(rows).to_kind(Kind::Double);
    let zero = Tensor::zeros([rows.size()[0], 1], (Kind::Double, rows.device()));
    let sums = Tensor::cat(&[&zero, &(rows.to_kind(Kind::Double) * &valid).cumsum(1, Kind::Double)], 1);
    let counts = Tensor::cat(&[&zero, &valid.cumsum(1, Kind::Double)], 1);
    let m = seasons.view([-1, 1]);
    // The trailing mean of the season ending at `end`, and whether that season is all in the row.
    let level = |end: &Tensor| {
        let (hi, lo) = ((end + 1).clamp_min(0), (end - &m + 1).clamp_min(0));
        let n = counts.gather(1, &hi, false) - counts.gather(1, &lo, false);
        let sum = sums.gather(1, &hi, false) - sums.gather(1, &lo, false);
        (sum / n.clamp_min(1.0), n.gt(0.0).logical_and(&(end - &m + 1).ge(0)))
    };
    let (base, base_ok) = level(&(-&m + next));
    let (mut shape, mut n) = (Tensor::zeros_like(&base), Tensor::zeros_like(&base));
    for k in 1..=average {
        let at = -(&m * k) + next;
        let id = rows.gather(1, &at.clamp_min(0), false);
        let (lvl, ok) = level(&at);
        let used = value_tokens(&id).logical_and(&ok).to_kind(Kind::Double);
        shape += (id.to_kind(Kind::Double) - lvl) * &used;
        n += used;
    }
    let lag = (base + shape / n.clamp_min(1.0)).round().clamp(N_SPECIAL as f64, (N_VALUE_IDS - 1) as f64).to_kind(Kind::Int64);
    (lag, base_ok.logical_and(&n.gt(0.0)))
}

/// One token per row from value logits [N, 4096]: temperature, top-k, never a special id.
/// Also returns the unnormalised probabilities it drew from.
fn draw(logits: &Tensor, cfg: &SampleConfig) -> (Tensor, Tensor) {
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
    (inverse_cdf(&p), p)
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

    /// The averaged lag: the last season's level plus the phase's mean shape over the seasons
    /// asked for (each less its own season's level); the plain lag where there is no level yet.
    #[test]
    fn an_averaged_seasonal_lag_is_the_seasons_shape_at_the_last_level() {
        // Season 2, a level rising 2 a season and a +10 phase; the token at 3 is 4 too high.
        let row = [2010i64, 2020, 2012, 2026, 2014, 2024, 2016];
        let rows = Tensor::from_slice(&row).view([1, 7]);
        let seasons = Tensor::from_slice(&[2i64]);
        let lag = |next: i64, k: i64| i64::try_from(decoding_lag(&rows, &seasons, next, k).view([-1])).unwrap();
        assert_eq!(lag(7, 1), 2024, "one season: the token a season back");
        // Levels: (2014 + 2024) / 2 = 2019 one season back; shapes 2024 − 2019, 2026 − 2019,
        // 2020 − 2015 → 5.667: 2019 + 5.667 rounds to 2025.
        assert_eq!(lag(7, 3), 2025);
        assert_eq!(lag(7, 2), 2025, "(5 + 7) / 2 = 6 on 2019");
        assert_eq!(lag(7, 9), 2025, "seasons not in the row are left out");
        assert_eq!(lag(2, 3), 2010, "no full season before the lag: the plain lag");
        let padded = Tensor::from_slice(&[PAD, 2020, 2012]).view([1, 3]);
        assert_eq!(i64::try_from(decoding_lag(&padded, &seasons, 3, 3).view([-1])).unwrap(), 2020);
    }

    /// Decoding with the shared prefix (and the decoding-time seasonal lags) gives the logits a
    /// plain forward pass over context + generated tokens gives, for every path.
    #[test]
    fn shared_prefix_decoding_matches_a_full_forward_pass() {
        let _rng = crate::lm::rng_lock();
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
        let step_lag = decoding_lag(&full_in, &seasons, 6, 1);
        let extra = Extra { lag: Some(&step_lag), ..Extra::default() };
        let cached = model.forward(&next.view([-1, 1]), 5, None, &extra, Some(&mut cache)).select(1, 0);
        let full_rows: Vec<Vec<i64>> = (0..6).map(|i| Vec::<i64>::try_from(full_in.get(i)).unwrap()).collect();
        let full_lag = lags(&full_rows);
        assert_eq!(Vec::<i64>::try_from(step_lag.view([-1])).unwrap(), Vec::<i64>::try_from(full_lag.select(1, 5)).unwrap());
        let full = model.forward(&full_in, 0, None, &Extra { lag: Some(&full_lag), ..Extra::default() }, None).select(1, 5);
        let err = f64::try_from((cached - full).abs().max()).unwrap();
        assert!(err < 1e-4, "max |difference| {err}");
    }

    /// A step's forecast is the mixture of its rows' distributions: two paths of one series, one
    /// sure of id a and one of id b, give quantiles at a up to the median and at b above it,
    /// and the mean of the two values (a value below zero counting as zero for demand).
    #[test]
    fn a_step_summarises_the_mixture_of_the_paths_distributions() {
        let levels = [0.1, 0.5, 0.6, 0.9];
        let (a, b, negative) = (2300i64, 2500i64, 100i64);
        let mut rows = vec![0f32; 3 * 2 * N_VALUE_IDS as usize];
        for (row, id) in [a, b, negative, b, a, a].iter().enumerate() {
            rows[row * N_VALUE_IDS as usize + *id as usize] = 2.0; // unnormalised
        }
        let p = Tensor::from_slice(&rows).view([6, N_VALUE_IDS]);
        let m = Mixture::new(&Summary { levels: &levels, nonnegative: true }, 2, Device::Cpu);
        let (mean, ids) = m.summarise(&p);
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), [a, a, b, b, negative, negative, b, b, a, a, a, a]);
        let mean = Vec::<f32>::try_from(mean).unwrap();
        let want = [(decode(a, 1.0) + decode(b, 1.0)) / 2.0, decode(b, 1.0) / 2.0, decode(a, 1.0)];
        assert!(decode(negative, 1.0) < 0.0);
        mean.iter().zip(want).for_each(|(got, want)| assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}"));
        let f = m.forecasts(
            &[m.summarise(&p)],
            &[
                Context { scale: 2.0, ..Context::default() },
                Context { scale: 1.0, ..Context::default() },
                Context { scale: 1.0, ..Context::default() },
            ],
        );
        assert_eq!(f[0].quantiles[3][0], decode(b, 2.0), "× the series' scale");
    }

    /// At the first step every path has the model's own predictive distribution, so the
    /// forecast's quantiles there are that distribution's exactly, however many paths.
    #[test]
    fn the_first_step_is_the_models_exact_predictive_distribution() {
        let _rng = crate::lm::rng_lock();
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = Config {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_ff: 64,
            max_len: 32,
            text_vocab: 0,
            n_covariates: 0,
            covariates: vec![],
            tied: true,
            season_lag: false,
        };
        let model = Model::new(&vs.root(), cfg);
        let ids = vec![2100i64, 2150, 2200, 2120, 2300];
        let levels: Vec<f64> = (1..10).map(|k| k as f64 / 10.0).collect();
        let logits =
            model.forward(&Tensor::from_slice(&ids).view([1, 5]), 0, None, &Extra::default(), None).select(1, 4).to_kind(Kind::Float);
        let probs: Vec<f64> =
            Vec::<f32>::try_from(logits.narrow(1, N_SPECIAL, N_VALUE_IDS - N_SPECIAL).softmax(-1, Kind::Float).flatten(0, -1))
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect();
        let exact: Vec<f64> = levels
            .iter()
            .map(|&q| {
                let mut cdf = 0.0;
                let i = probs
                    .iter()
                    .position(|p| {
                        cdf += p;
                        cdf >= q
                    })
                    .unwrap();
                decode(i as i64 + N_SPECIAL, 3.0)
            })
            .collect();
        let ctx = [Context { ids, scale: 3.0, season: 1, covariates: vec![] }];
        for paths in [1, 7] {
            let sc = SampleConfig { paths, horizon: 2, temperature: 1.0, top_k: 0, seed: 1, lag_seasons: 1 };
            let s = sample_summarised(&model, &ctx, &sc, &Summary { levels: &levels, nonnegative: false }, Device::Cpu);
            let got: Vec<f64> = s[0].forecast.quantiles.iter().map(|q| q[0]).collect();
            // A CDF that sums to within float rounding of a level may cross it one id apart.
            got.iter()
                .zip(&exact)
                .for_each(|(g, e)| assert!((g - e).abs() <= 3.0 * super::super::tokens::bin_width() + 1e-9, "{got:?} vs {exact:?}"));
            assert_eq!(s[0].paths.len(), paths as usize);
        }
    }

    /// The two-level inverse CDF draws the categorical distribution: frequencies over 200,000
    /// draws from one row match its probabilities (a chi-square test), zero-probability ids
    /// (special ids, top-k's cut) are never drawn, and a seed repeats the draws.
    #[test]
    fn draws_follow_the_distribution_and_skip_impossible_ids() {
        let _rng = crate::lm::rng_lock();
        tch::manual_seed(11);
        let v = N_VALUE_IDS;
        let row: Vec<f32> = (0..v).map(|i| ((i * 37) % 11) as f32 * 0.7 - if i == 300 { -6.0 } else { 0.0 }).collect();
        let n = 200_000;
        let logits = Tensor::from_slice(&row).view([1, v]).expand([n, v], false);
        let cfg = SampleConfig { paths: 1, horizon: 1, temperature: 1.0, top_k: 0, seed: 0, lag_seasons: 1 };
        let ids = Vec::<i64>::try_from(draw(&logits, &cfg).0).unwrap();
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
        let ids = Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 20_000), &top).0).unwrap();
        let mut allowed: Vec<usize> = (N_SPECIAL as usize..v as usize).collect();
        allowed.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
        let floor = row[allowed[4]];
        assert!(ids.iter().all(|&i| i >= N_SPECIAL && row[i as usize] >= floor), "top-k keeps only the k likeliest logits");
        tch::manual_seed(3);
        let a = Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 100), &cfg).0).unwrap();
        tch::manual_seed(3);
        assert_eq!(a, Vec::<i64>::try_from(draw(&logits.narrow(0, 0, 100), &cfg).0).unwrap(), "a seed repeats the draws");
    }
}
