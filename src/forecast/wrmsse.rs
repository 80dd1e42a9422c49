//! WRMSSE, the M5 competition's metric: RMSSE of every series of the 12-level product × store
//! hierarchy (42,840 series from 30,490 bottom ones), each scaled by its in-sample one-step MSE,
//! weighted by its share of recent revenue (each level weighs 1/12).
use std::collections::BTreeMap;

/// Key fields of a bottom series, in the order of M5's `sales_ids`.
pub const FIELDS: [&str; 6] = ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"];

/// The 12 aggregation levels as indices into [`FIELDS`] (total, state, store, category, …, id).
pub const LEVELS: [&[usize]; 12] = [&[], &[5], &[4], &[3], &[2], &[5, 3], &[5, 2], &[4, 3], &[4, 2], &[1], &[1, 5], &[0]];

/// The evaluator: which bottom series each aggregated series sums, and its actuals, scale, weight.
#[derive(Debug)]
pub struct Wrmsse {
    members: Vec<Vec<u32>>,
    actual: Vec<Vec<f64>>,
    scale: Vec<f64>,
    weight: Vec<f64>,
    bottom: usize,
    /// `level_end[l]`: one past the last aggregated series of level l.
    level_end: [usize; 12],
}

impl Wrmsse {
    /// `keys[i]`: bottom series i's six key fields. Aggregated series are ordered level by level,
    /// keys sorted within a level (pandas' groupby order); `actual`, `scale` and `weight` follow it.
    pub fn new(keys: &[[String; 6]], actual: Vec<Vec<f64>>, scale: Vec<f64>, weight: Vec<f64>) -> Result<Self, String> {
        let mut members = vec![];
        let mut level_end = [0; 12];
        for (l, level) in LEVELS.iter().enumerate() {
            let mut groups: BTreeMap<Vec<&str>, Vec<u32>> = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                groups.entry(level.iter().map(|&f| k[f].as_str()).collect()).or_default().push(i as u32);
            }
            members.extend(groups.into_values());
            level_end[l] = members.len();
        }
        if members.len() != actual.len() || members.len() != scale.len() || members.len() != weight.len() {
            return Err(format!(
                "{} aggregated series from the ids, but {} actual rows, {} scales, {} weights",
                members.len(),
                actual.len(),
                scale.len(),
                weight.len()
            ));
        }
        Ok(Self { members, actual, scale, weight, bottom: keys.len(), level_end })
    }

    /// Score bottom-level forecasts (`forecast[i][h]`, in the order of the keys).
    pub fn score(&self, forecast: &[Vec<f64>]) -> Result<f64, String> {
        Ok(self.level_scores(forecast)?.iter().sum())
    }

    /// Each level's weighted RMSSE (its share of the total: the twelve sum to the WRMSSE).
    pub fn level_scores(&self, forecast: &[Vec<f64>]) -> Result<[f64; 12], String> {
        if forecast.len() != self.bottom {
            return Err(format!("{} forecast series, the hierarchy has {}", forecast.len(), self.bottom));
        }
        let mut out = [0.0; 12];
        for (r, members) in self.members.iter().enumerate() {
            let actual = &self.actual[r];
            let mse = (0..actual.len())
                .map(|h| {
                    let f: f64 = members.iter().map(|&m| forecast[m as usize].get(h).copied().unwrap_or(0.0)).sum();
                    (actual[h] - f).powi(2)
                })
                .sum::<f64>()
                / actual.len() as f64;
            out[self.level_end.partition_point(|&end| end <= r)] += self.weight[r] * (mse / self.scale[r]).sqrt();
        }
        Ok(out)
    }

    /// The bottom series' actuals (the level-12 rows), in key order of `id`.
    pub fn bottom_actuals(&self) -> Vec<(u32, &[f64])> {
        let start = self.members.len() - self.bottom;
        self.members[start..].iter().zip(&self.actual[start..]).map(|(m, a)| (m[0], a.as_slice())).collect()
    }
}
