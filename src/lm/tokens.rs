//! Value tokens, the Chronos scheme (Ansari et al. 2024): a series is mean-scaled, then each
//! value falls in one of 4093 uniform bins on [-15, 15]. Ids 0 and 1 are PAD and EOS, so a value
//! vocabulary has 4096 ids. Missing values become PAD and are never targets; censored
//! (stockout) observations are inputs but not targets, since the demand behind them is unknown.

pub const PAD: i64 = 0;
pub const EOS: i64 = 1;
pub const N_SPECIAL: i64 = 2;
pub const N_VALUE_IDS: i64 = 4096;
/// The separator between product text and the series; text id `i` is token `SEP + 1 + i`.
pub const SEP: i64 = N_VALUE_IDS;
/// The token of text id 0: the value ids and SEP come before it.
pub const FIRST_TEXT: i64 = SEP + 1;
const N_CENTRES: usize = (N_VALUE_IDS - N_SPECIAL - 1) as usize;
const LOW: f64 = -15.0;
const HIGH: f64 = 15.0;

/// One series in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    /// Whether position t may be a training target (observed and not censored).
    pub target: Vec<bool>,
    pub scale: f64,
    /// Season length the model's seasonal-lag input uses (1 = the previous value).
    pub season: usize,
    /// Known covariates of each position's own step, row-major [ids.len() × n_cov]
    /// ([`covariate_features`]); empty when `n_cov` is 0. Prefix positions hold zeros.
    pub covariates: Vec<f32>,
    pub n_cov: usize,
}

/// The distance between neighbouring bin centres, in units of the series' scale.
pub fn bin_width() -> f64 {
    (HIGH - LOW) / (N_CENTRES - 1) as f64
}

fn centre(i: usize) -> f64 {
    LOW + i as f64 * bin_width()
}

/// Mean |x| over the observed values (1 when that is 0 or nothing is observed).
pub fn scale_of(context: &[f64]) -> f64 {
    let obs: Vec<f64> = context.iter().copied().filter(|v| v.is_finite()).collect();
    let s = obs.iter().map(|v| v.abs()).sum::<f64>() / obs.len().max(1) as f64;
    if s > 0.0 && s.is_finite() { s } else { 1.0 }
}

/// Id of one scaled value: the number of bin edges ≤ x (torch.bucketize, right=True) + 2.
pub fn value_id(scaled: f64) -> i64 {
    // Edges: -1e20, the midpoints between centres, +1e20. Edge j (1 ≤ j < N_CENTRES) sits at
    // LOW + (j - 0.5)·step; count those ≤ x in closed form, then the -1e20 edge.
    let j = ((scaled - LOW) / bin_width() + 0.5).floor();
    let inner = j.clamp(0.0, (N_CENTRES - 1) as f64) as i64;
    1 + inner + N_SPECIAL
}

/// Encode a context with `scale` from its observed values. `censored[t]` marks stockout days.
pub fn encode(context: &[f64], censored: Option<&[bool]>) -> Encoded {
    encode_with_scale(context, censored, scale_of(context))
}

/// Encode with a given scale (the forecast horizon reuses the context's).
pub fn encode_with_scale(values: &[f64], censored: Option<&[bool]>, scale: f64) -> Encoded {
    let ids = values.iter().map(|v| if v.is_finite() { value_id(v / scale) } else { PAD }).collect();
    let target = values.iter().enumerate().map(|(t, v)| v.is_finite() && !censored.is_some_and(|c| c[t])).collect();
    Encoded { ids, target, scale, season: 1, covariates: vec![], n_cov: 0 }
}

impl Encoded {
    pub fn with_season(self, season: usize) -> Self {
        Self { season: season.max(1), ..self }
    }

    /// With each position's known covariates (row-major [ids.len() × n], `covariate_features`).
    pub fn with_covariates(self, covariates: Vec<f32>, n: usize) -> Self {
        assert_eq!(covariates.len(), self.ids.len() * n, "one row of covariates per position");
        Self { covariates, n_cov: n, ..self }
    }

    /// The same values after a prefix (`text_prefix`), which is never a target and has no
    /// covariates (zeros).
    pub fn after(self, prefix: &[i64]) -> Self {
        if prefix.is_empty() {
            return self;
        }
        let ids = prefix.iter().chain(&self.ids).copied().collect();
        let target = std::iter::repeat_n(false, prefix.len()).chain(self.target).collect();
        let covariates = std::iter::repeat_n(0.0, prefix.len() * self.n_cov).chain(self.covariates).collect();
        Self { ids, target, covariates, ..self }
    }
}

/// One known covariate of a series, step by step (NaN = unknown): a flag (a BOOLEAN column,
/// 1/0), or a level such as a price.
#[derive(Debug, Clone, Copy)]
pub struct CovariateColumn<'a> {
    pub flag: bool,
    pub values: &'a [f64],
}

/// Known covariates as model inputs, row-major [steps × columns]: a flag as 0/1; a level as
/// ln(x / the series' median positive value), clamped to ±4, so a price cut reads the same on a
/// cheap item and a dear one. Unknown (and non-positive levels) → 0, which is also what a
/// model reads where no covariates are given: "nothing special".
pub fn covariate_features(columns: &[CovariateColumn]) -> Vec<f32> {
    let steps = columns.first().map_or(0, |c| c.values.len());
    let mut out = vec![0.0f32; steps * columns.len()];
    for (j, c) in columns.iter().enumerate() {
        assert_eq!(c.values.len(), steps, "covariate columns of one series have one length");
        let mut positive: Vec<f64> = c.values.iter().copied().filter(|v| v.is_finite() && *v > 0.0).collect();
        positive.sort_by(f64::total_cmp);
        let median = positive.get(positive.len() / 2).copied();
        for (t, &v) in c.values.iter().enumerate() {
            let x = match (c.flag, median) {
                (true, _) if v.is_finite() => v.clamp(0.0, 1.0),
                (false, Some(m)) if v.is_finite() && v > 0.0 => (v / m).ln().clamp(-4.0, 4.0),
                _ => 0.0,
            };
            out[t * columns.len() + j] = x as f32;
        }
    }
    out
}

/// Most text tokens put before a series, unless a stage's `text: { max_tokens }` says otherwise
/// (the same in pretraining, fine-tuning and forecasting).
pub const MAX_TEXT_TOKENS: usize = 32;

/// The text part of a sequence: the first `max_text` text ids shifted past the value vocabulary
/// (ids beyond `text_vocab` clamped to its last), then SEP. Empty without text or for a model
/// that reads none (`text_vocab` 0).
pub fn text_prefix(text: &[i64], max_text: usize, text_vocab: i64) -> Vec<i64> {
    if text.is_empty() || text_vocab <= 0 || max_text == 0 {
        return vec![];
    }
    let mut ids: Vec<i64> = text.iter().take(max_text).map(|t| FIRST_TEXT + t.clamp(&0, &(text_vocab - 1))).collect();
    ids.push(SEP);
    ids
}

/// The seasonal-lag input of every position: the model at position p predicts ids[p + 1], and
/// is shown ids[p + 1 − m], the value one season before its target (the seasonal-naive guess);
/// PAD where that lies before the start or is not a value id (text, the separator).
pub fn seasonal_lag(ids: &[i64], m: usize) -> Vec<i64> {
    let m = m.max(1);
    (0..ids.len()).map(|p| if p + 1 >= m { lag_id(ids[p + 1 - m]) } else { PAD }).collect()
}

/// A token as a lag input: value ids as they are, anything else PAD.
pub fn lag_id(id: i64) -> i64 {
    if (N_SPECIAL..N_VALUE_IDS).contains(&id) { id } else { PAD }
}

/// A value id back to a value: its bin centre times the scale (special ids decode to 0).
pub fn decode(id: i64, scale: f64) -> f64 {
    if id < N_SPECIAL {
        return 0.0;
    }
    let i = (id - N_SPECIAL - 1).clamp(0, N_CENTRES as i64 - 1) as usize;
    centre(i) * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_vector_and_round_trips() {
        let e = encode(&[1.0, 2.0, 3.0, 4.0], None);
        assert_eq!(e.scale, 2.5);
        assert_eq!(e.ids, vec![2104, 2158, 2213, 2267]);
        for (id, v) in e.ids.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert!((decode(*id, e.scale) - v).abs() <= bin_width() * e.scale / 2.0 + 1e-12);
        }
        assert_eq!(value_id(-1e9), N_SPECIAL + 1, "below the range: first bin");
        assert_eq!(value_id(1e9), N_VALUE_IDS - 1, "above the range: last bin");
        assert_eq!(decode(value_id(0.0), 7.0), 0.0, "zero stays exactly zero");
    }

    #[test]
    fn missing_values_are_pad_and_censored_days_are_not_targets() {
        let e = encode(&[2.0, f64::NAN, 0.0, 4.0], Some(&[false, false, true, false]));
        assert_eq!(e.scale, 2.0, "mean |x| over observed values only");
        assert_eq!(e.ids[1], PAD);
        assert_eq!(e.target, vec![true, false, false, true]);
        assert_eq!(encode(&[0.0, 0.0], None).scale, 1.0);
    }

    #[test]
    fn the_seasonal_lag_shows_the_value_one_season_before_the_target() {
        let ids = [5000, 4096, 10, 11, 12, 13, 14];
        assert_eq!(seasonal_lag(&ids, 3), vec![PAD, PAD, PAD, PAD, 10, 11, 12]);
        assert_eq!(seasonal_lag(&ids, 1), vec![PAD, PAD, 10, 11, 12, 13, 14], "m = 1: the input itself");
        assert_eq!(seasonal_lag(&ids[..2], 12), vec![PAD, PAD]);
    }

    #[test]
    fn text_comes_first_shifted_past_the_values_and_is_never_a_target() {
        let prefix = text_prefix(&[0, 7, 9000, 3], 3, 100);
        assert_eq!(prefix, vec![SEP + 1, SEP + 8, SEP + 100, SEP], "first 3 ids, clamped to the vocabulary, then SEP");
        assert!(text_prefix(&[1, 2], 48, 0).is_empty(), "a model without text reads none");
        assert!(text_prefix(&[], 48, 100).is_empty());
        let e = encode(&[1.0, 2.0], None).after(&prefix);
        assert_eq!(e.ids.len(), 6);
        assert_eq!(e.target, vec![false, false, false, false, true, true]);
        assert_eq!(seasonal_lag(&e.ids, 1)[..4], [PAD; 4], "text is never a lag");
    }

    #[test]
    fn covariates_are_flags_or_log_ratios_to_the_series_median() {
        let promo = [0.0, 1.0, f64::NAN, 1.0];
        let price = [10.0, 8.0, 10.0, 0.0];
        let cols = [CovariateColumn { flag: true, values: &promo }, CovariateColumn { flag: false, values: &price }];
        let f = covariate_features(&cols);
        let cut = (0.8f64).ln() as f32;
        assert_eq!(f, vec![0.0, 0.0, 1.0, cut, 0.0, 0.0, 1.0, 0.0], "row-major; unknown and non-positive → 0");
        let e = encode(&[1.0, 2.0], None).with_covariates(vec![1.0, 2.0, 3.0, 4.0], 2).after(&[SEP]);
        assert_eq!(e.covariates, vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0], "the prefix reads no covariates");
    }
}
