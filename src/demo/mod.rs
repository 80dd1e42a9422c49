//! The demo lake: a seeded, realistic synthetic e-commerce dataset written as Parquet under
//! `<lake>/raw/`, and the main job's summary. Deterministic for a given size and seed.
//!
//! Demand per SKU x location and day is a gamma-Poisson (negative binomial) draw around
//! base level x location size x trend x life cycle x yearly season (by category) x weekday x
//! price/promo effect, zero-inflated for slow movers. A fifth of the SKUs launch during the
//! history (no rows before their launch day); how demand moves after a launch — a limited
//! edition's fading peak, a staple's build-up — is its life cycle, which its text states. An
//! (s, S) replenishment policy with random lead times drives inventory, and sales are censored
//! at the stock on hand (stockouts). Then the mess real feeds have: duplicate rows, null keys
//! and prices, negative quantities, returns and late corrections.
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use indicatif::{ProgressBar, ProgressStyle};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};
use serde::{Deserialize, Serialize};

use crate::run::RunOutcome;
use crate::storage::{Lake, object_path};
use text::{BRANDS, CATEGORIES, COLORS, Lifecycle};

#[derive(clap::Args, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DemoSize {
    /// Number of SKUs.
    #[arg(long, default_value_t = 500)]
    pub skus: usize,
    /// Number of locations (stores / fulfilment centres).
    #[arg(long, default_value_t = 10)]
    pub locations: usize,
    /// Days of history.
    #[arg(long, default_value_t = 730)]
    pub days: usize,
    /// First day of history.
    #[arg(long, default_value = "2024-11-30")]
    pub start: NaiveDate,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the generator's ground truth, `raw/truth/`: each series' daily demand rate
    /// and its parts (what a perfect forecaster would know; for benchmarks).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truth: bool,
}

impl Default for DemoSize {
    fn default() -> Self {
        Self { skus: 500, locations: 10, days: 730, start: NaiveDate::from_ymd_opt(2024, 11, 30).expect("valid"), seed: 42, truth: false }
    }
}

const MARKER: &str = "raw/_DEMO.json";
/// Bumped whenever the generator's output changes, so an old lake is regenerated, not reused.
const GENERATOR_VERSION: u32 = 5;

#[derive(Serialize, Deserialize, PartialEq)]
struct Marker {
    generator: u32,
    #[serde(flatten)]
    size: DemoSize,
}

/// Generate the raw data unless the lake already holds this exact demo.
pub async fn ensure_lake(lake: &Lake, size: &DemoSize, regenerate: bool, quiet: bool) -> Result<()> {
    let marker = object_path(&lake.root.join(MARKER)?)?;
    if !regenerate {
        if let Ok(existing) = lake.store.get(&marker).await {
            let bytes = existing.bytes().await?;
            let wanted = Marker { generator: GENERATOR_VERSION, size: size.clone() };
            if serde_json::from_slice::<Marker>(&bytes).ok().as_ref() == Some(&wanted) {
                if !quiet {
                    eprintln!("demo lake already present at {}raw/ (use --regenerate to rebuild)", lake.root);
                }
                return Ok(());
            }
        }
    }
    lake.delete_prefix(&lake.root.join("raw/")?).await?;
    let started = std::time::Instant::now();
    let stats = generate(lake, size, quiet).await?;
    let written = Marker { generator: GENERATOR_VERSION, size: size.clone() };
    lake.store.put(&marker, serde_json::to_vec_pretty(&written)?.into()).await?;
    if !quiet {
        eprintln!(
            "generated demo lake in {:.1}s: {} sales rows, {} inventory rows, {} SKUs x {} locations x {} days, {} reviews",
            started.elapsed().as_secs_f64(),
            stats.sales_rows,
            stats.inventory_rows,
            size.skus,
            size.locations,
            size.days,
            stats.reviews
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct GenStats {
    pub sales_rows: usize,
    pub inventory_rows: usize,
    pub reviews: usize,
}

struct Sku {
    id: String,
    cat: usize,
    noun: &'static str,
    brand: &'static str,
    base: f64,
    price: f64,
    elasticity: f64,
    trend: f64,
    life: Lifecycle,
    /// Launch day as an index into the history (negative: before it).
    launch: i64,
    promo_days: Vec<bool>,
    lead_time: f64,
    quality: f64,
}

#[derive(Default)]
struct SalesCols {
    sale_id: Vec<i64>,
    date: Vec<i32>,
    sku: Vec<Option<String>>,
    loc: Vec<String>,
    qty: Vec<i32>,
    price: Vec<Option<f64>>,
    promo: Vec<bool>,
    channel: Vec<&'static str>,
}

#[derive(Default)]
struct InvCols {
    date: Vec<i32>,
    sku: Vec<String>,
    loc: Vec<String>,
    on_hand: Vec<i32>,
    on_order: Vec<i32>,
}

/// The generator's ground truth per series and day (`--truth`): demand is a gamma-Poisson draw
/// with mean `rate` = `level` × `season` × `weekday` × `trend` × `promo_effect`, then zero with
/// probability `extra_zeros` (slow movers).
#[derive(Default)]
struct TruthCols {
    sku: Vec<String>,
    loc: Vec<String>,
    date: Vec<i32>,
    level: Vec<f64>,
    /// Yearly season (the category's), weekday (its weekend lift), trend (times the life cycle's
    /// factor), promotion effect.
    factors: [Vec<f64>; 4],
    rate: Vec<f64>,
    extra_zeros: Vec<f64>,
}

impl TruthCols {
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, sku: &Sku, loc: &str, day: i32, level: f64, factors: [f64; 4], rate: f64, extra_zeros: f64) {
        self.sku.push(sku.id.clone());
        self.loc.push(loc.to_string());
        self.date.push(day);
        self.level.push(level);
        self.factors.iter_mut().zip(factors).for_each(|(col, f)| col.push(f));
        self.rate.push(rate);
        self.extra_zeros.push(extra_zeros);
    }

    async fn write(self, lake: &Lake) -> Result<()> {
        let [season, weekday, trend, promo] = self.factors;
        let batch = RecordBatch::try_from_iter(vec![
            ("sku_id", Arc::new(StringArray::from(self.sku)) as ArrayRef),
            ("location_id", Arc::new(StringArray::from(self.loc))),
            ("date", Arc::new(Date32Array::from(self.date))),
            ("level", Arc::new(Float64Array::from(self.level))),
            ("season", Arc::new(Float64Array::from(season))),
            ("weekday", Arc::new(Float64Array::from(weekday))),
            ("trend", Arc::new(Float64Array::from(trend))),
            ("promo_effect", Arc::new(Float64Array::from(promo))),
            ("rate", Arc::new(Float64Array::from(self.rate))),
            ("extra_zeros", Arc::new(Float64Array::from(self.extra_zeros))),
        ])?;
        write_parquet(lake, "raw/truth/truth.parquet", batch).await
    }
}

/// Give every sale line a new id in (day, shuffled within the day) order, month partitions in
/// calendar order, and sort each partition's rows by it. Copies of a line keep sharing one id.
/// Returns the map from the provisional id (`first_id..next_id`) to the new one.
fn number_sales_in_time_order(sales: &mut BTreeMap<(i32, u32), SalesCols>, first_id: i64, next_id: i64) -> Vec<i64> {
    // A fixed bit mixer (splitmix64's finaliser) spreads one day's lines over all SKUs and
    // locations, as arrivals interleave in a real feed.
    let mix = |x: i64| {
        let mut z = (x as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut renumber = vec![0i64; (next_id - first_id) as usize];
    let mut id = first_id;
    for cols in sales.values_mut() {
        let mut order: Vec<usize> = (0..cols.sale_id.len()).collect();
        order.sort_by_key(|&i| (cols.date[i], mix(cols.sale_id[i]), cols.sale_id[i]));
        let mut last = None;
        for &i in &order {
            let old = cols.sale_id[i];
            if last != Some(old) {
                renumber[(old - first_id) as usize] = id;
                id += 1;
                last = Some(old);
            }
        }
        cols.sale_id = order.iter().map(|&i| renumber[(cols.sale_id[i] - first_id) as usize]).collect();
        cols.date = permute(&cols.date, &order);
        cols.qty = permute(&cols.qty, &order);
        cols.promo = permute(&cols.promo, &order);
        cols.channel = permute(&cols.channel, &order);
        cols.price = permute(&cols.price, &order);
        cols.sku = permute(&cols.sku, &order);
        cols.loc = permute(&cols.loc, &order);
    }
    renumber
}

fn permute<T: Clone>(values: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| values[i].clone()).collect()
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

fn props() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(256 * 1024)).build()
}

async fn write_parquet(lake: &Lake, rel: &str, batch: RecordBatch) -> Result<()> {
    write_parquet_with(lake, rel, batch, props()).await
}

/// Like `write_parquet`, for a batch already sorted by its first column: the footer says so
/// (Parquet `sorting_columns`), which lets a pipeline declare `sorted_by` on the input.
async fn write_parquet_sorted_by_first(lake: &Lake, rel: &str, batch: RecordBatch) -> Result<()> {
    let sorted = vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }];
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_sorting_columns(Some(sorted))
        .build();
    write_parquet_with(lake, rel, batch, props).await
}

async fn write_parquet_with(lake: &Lake, rel: &str, batch: RecordBatch, props: WriterProperties) -> Result<()> {
    let path: ObjPath = object_path(&lake.root.join(rel)?)?;
    let writer = object_store::buffered::BufWriter::new(lake.store.clone(), path);
    let mut w = AsyncArrowWriter::try_new(writer, batch.schema(), Some(props))?;
    w.write(&batch).await?;
    w.close().await.with_context(|| format!("writing {rel}"))?;
    Ok(())
}

pub async fn generate(lake: &Lake, size: &DemoSize, quiet: bool) -> Result<GenStats> {
    let mut rng = ChaCha8Rng::seed_from_u64(size.seed);
    let dates: Vec<NaiveDate> = (0..size.days).map(|d| size.start + chrono::Duration::days(d as i64)).collect();
    let locations = write_locations(lake, size, &mut rng).await?;
    let skus = write_catalog(lake, size, &mut rng).await?;
    write_promotions(lake, &skus, size.start, size).await?;
    write_suppliers(lake, &skus, &mut rng).await?;
    let reviews = write_reviews(lake, &skus, &dates, &mut rng).await?;

    let mut feeds = Feeds::new();
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new((size.skus * size.locations) as u64) };
    bar.set_style(ProgressStyle::with_template("generating demand {bar:30} {pos}/{len} series {eta}").expect("valid"));
    for (si, sku) in skus.iter().enumerate() {
        for (li, loc) in locations.iter().enumerate() {
            simulate_series(&mut feeds, size, &dates, sku, (si, li), loc);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut stats = feeds.write(lake, size.truth).await?;
    stats.reviews = reviews;
    Ok(stats)
}

/// A store or fulfilment centre: its id and how much more (or less) than the median it sells.
struct Location {
    id: String,
    size_factor: f64,
}

async fn write_locations(lake: &Lake, size: &DemoSize, rng: &mut ChaCha8Rng) -> Result<Vec<Location>> {
    let regions = ["North", "South", "East", "West", "Central"];
    let locations: Vec<Location> = (0..size.locations)
        .map(|i| Location { id: format!("LOC-{:02}", i + 1), size_factor: LogNormal::new(0.0, 0.45).expect("valid").sample(rng) })
        .collect();
    let fulfilment = |i: usize| i % 3 == 0;
    let batch = RecordBatch::try_from_iter(vec![
        ("location_id", Arc::new(StringArray::from_iter_values(locations.iter().map(|l| l.id.as_str()))) as ArrayRef),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..size.locations)
                    .map(|i| format!("{} {}", regions[i % regions.len()], if fulfilment(i) { "Fulfilment Centre" } else { "Store" })),
            )),
        ),
        ("region", Arc::new(StringArray::from_iter_values((0..size.locations).map(|i| regions[i % regions.len()])))),
        ("kind", Arc::new(StringArray::from_iter_values((0..size.locations).map(|i| if fulfilment(i) { "fulfilment" } else { "store" })))),
        ("size_factor", Arc::new(Float64Array::from_iter_values(locations.iter().map(|l| l.size_factor)))),
    ])?;
    write_parquet(lake, "raw/locations/locations.parquet", batch).await?;
    Ok(locations)
}

/// The catalog (`raw/catalog/`): each SKU drawn with its text, price, demand parameters and
/// promotion days.
async fn write_catalog(lake: &Lake, size: &DemoSize, rng: &mut ChaCha8Rng) -> Result<Vec<Sku>> {
    let mut skus = vec![];
    let (mut c_title, mut c_sub, mut c_desc, mut c_launch) = (vec![], vec![], vec![], vec![]);
    for i in 0..size.skus {
        let (sku, sub, title, desc) = draw_sku(size, i, rng);
        c_title.push(title);
        c_sub.push(sub);
        c_desc.push(desc);
        c_launch.push(days_since_epoch(size.start) + sku.launch as i32);
        skus.push(sku);
    }
    let catalog = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from_iter_values(skus.iter().map(|s| s.id.as_str()))) as ArrayRef),
        ("title", Arc::new(StringArray::from(c_title))),
        ("category", Arc::new(StringArray::from_iter_values(skus.iter().map(|s| CATEGORIES[s.cat].name)))),
        ("subcategory", Arc::new(StringArray::from(c_sub))),
        ("brand", Arc::new(StringArray::from_iter_values(skus.iter().map(|s| s.brand)))),
        ("description", Arc::new(StringArray::from(c_desc))),
        ("list_price", Arc::new(Float64Array::from_iter_values(skus.iter().map(|s| s.price)))),
        ("launched_on", Arc::new(Date32Array::from(c_launch))),
    ])?;
    write_parquet(lake, "raw/catalog/catalog.parquet", catalog).await?;
    Ok(skus)
}

/// SKU `i`, with its subcategory, title and description (the draws in the generator's order).
fn draw_sku(size: &DemoSize, i: usize, rng: &mut ChaCha8Rng) -> (Sku, &'static str, String, String) {
    let n_days = size.days;
    let cat_i = rng.random_range(0..CATEGORIES.len());
    let cat = &CATEGORIES[cat_i];
    let noun = cat.nouns[rng.random_range(0..cat.nouns.len())];
    let adj = cat.adjectives[rng.random_range(0..cat.adjectives.len())];
    let brand = BRANDS[rng.random_range(0..BRANDS.len())];
    let color = COLORS[rng.random_range(0..COLORS.len())];
    let fa = cat.features[rng.random_range(0..cat.features.len())];
    let fb = cat.features[rng.random_range(0..cat.features.len())];
    let price = (cat.price * LogNormal::new(0.0, 0.35).expect("valid").sample(rng) * 100.0).round() / 100.0 - 0.01;
    let base = LogNormal::new(-0.6, 1.1).expect("valid").sample(rng);
    let mut promo_days = vec![false; n_days];
    let promos = rng.random_range(2..8) * n_days / 365;
    for _ in 0..promos {
        let s = rng.random_range(0..n_days);
        promo_days[s..(s + 7).min(n_days)].iter_mut().for_each(|p| *p = true);
    }
    let (life, launch_during) = lifecycle(size, i);
    let title = text::title(brand, adj, noun, color, life);
    let sub = cat.subcategories[rng.random_range(0..cat.subcategories.len())];
    let desc = text::description(cat, noun, adj, [fa, fb], rng.random_bool(0.7), life);
    let launch = launch_during.unwrap_or_else(|| -rng.random_range(30..1500i64));
    let sku = Sku {
        id: format!("SKU-{:05}", i + 1),
        cat: cat_i,
        noun,
        brand,
        base,
        price: price.max(0.99),
        elasticity: Normal::<f64>::new(-1.6, 0.4).expect("valid").sample(rng).min(-0.3),
        trend: Normal::new(0.05, 0.2).expect("valid").sample(rng),
        life,
        launch,
        promo_days,
        lead_time: rng.random_range(3.0..21.0),
        quality: rng.random_range(2.6..4.8),
    };
    (sku, sub, title, desc)
}

/// A returned sale line.
struct Return {
    sale_id: i64,
    day: i32,
    sku: String,
    loc: String,
    qty: i32,
    reason: &'static str,
}

/// A sale line's quantity corrected later (at `at`, µs since the epoch).
struct Correction {
    sale_id: i64,
    qty: i32,
    at: i64,
}

/// The first provisional sale id; [`number_sales_in_time_order`] renumbers from it.
const FIRST_SALE_ID: i64 = 1_000_000;

/// What the demand simulation writes: sales and inventory buffered per month partition, the
/// truth, returns and corrections.
struct Feeds {
    sales: BTreeMap<(i32, u32), SalesCols>,
    inv: BTreeMap<(i32, u32), InvCols>,
    truth: TruthCols,
    returns: Vec<Return>,
    corrections: Vec<Correction>,
    next_sale_id: i64,
}

fn month_key(d: NaiveDate) -> (i32, u32) {
    (d.year(), d.month())
}

/// One SKU at one location, day by day from its launch: demand drawn around its rate, sold as
/// far as stock lasts, (s, S) replenishment with uncertain lead times, the day's stock.
fn simulate_series(feeds: &mut Feeds, size: &DemoSize, dates: &[NaiveDate], sku: &Sku, (si, li): (usize, usize), loc: &Location) {
    let mut r = ChaCha8Rng::seed_from_u64(size.seed ^ ((si as u64) << 20) ^ (li as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let level = sku.base * loc.size_factor;
    let slow = level < 0.3;
    let mut stock = Stock::new(level.max(0.02), sku.lead_time);
    for (t, &d) in dates.iter().enumerate().skip(sku.launch.max(0) as usize) {
        stock.receive(t);
        let promo = sku.promo_days[t];
        let price_ratio: f64 = if promo { 0.8 } else { 1.0 };
        let factors = demand_factors(sku, d, t, price_ratio);
        // (The generator's original order of multiplication: the same draws as before.)
        let lambda = level * factors[0] * factors[1] * factors[2] * factors[3];
        let mut demand = if lambda > 0.0 {
            let g = Gamma::new(2.0, lambda / 2.0).expect("valid").sample(&mut r);
            if g > 0.0 { Poisson::new(g).expect("valid").sample(&mut r) as i32 } else { 0 }
        } else {
            0
        };
        if slow && r.random_bool(0.35) {
            demand = 0;
        }
        let sold = demand.min(stock.on_hand);
        stock.on_hand -= sold;
        let day = days_since_epoch(d);
        if size.truth {
            feeds.truth.push(sku, &loc.id, day, level, factors, lambda, if slow { 0.35 } else { 0.0 });
        }
        let line = Line { sku, loc: &loc.id, date: d, day, promo, price: ((sku.price * price_ratio) * 100.0).round() / 100.0 };
        feeds.sell(&mut r, &line, sold);
        stock.reorder(t, &mut r);
        let ic = feeds.inv.entry(month_key(d)).or_default();
        ic.date.push(day);
        ic.sku.push(sku.id.clone());
        ic.loc.push(loc.id.clone());
        ic.on_hand.push(stock.on_hand);
        ic.on_order.push(stock.on_order());
    }
}

/// Yearly season (the category's), weekday, trend × life cycle, and the price's effect on day
/// `t` (`d`) of the history.
fn demand_factors(sku: &Sku, d: NaiveDate, t: usize, price_ratio: f64) -> [f64; 4] {
    let cat = &CATEGORIES[sku.cat];
    let doy = d.ordinal() as f64;
    let season = 1.0 + cat.season_amp * ((2.0 * std::f64::consts::PI * (doy - cat.season_peak_doy) / 365.25).cos());
    let weekday = match d.weekday().num_days_from_monday() {
        5 | 6 => cat.weekend_lift,
        4 => 1.05,
        _ => 0.95,
    };
    let trend = (1.0 + sku.trend).powf(t as f64 / 365.0) * sku.life.factor((t as i64 - sku.launch) as f64);
    [season.max(0.05), weekday, trend, price_ratio.powf(sku.elasticity)]
}

/// One series' stock under an (s, S) policy: on hand, and orders placed but not yet received.
struct Stock {
    on_hand: i32,
    /// (due day, quantity) of each open order.
    pipeline: Vec<(usize, i32)>,
    reorder_point: i32,
    order_up_to: i32,
    lead_time: f64,
}

impl Stock {
    fn new(mean_rate: f64, lead_time: f64) -> Self {
        Stock {
            on_hand: (mean_rate * 20.0).ceil() as i32 + 1,
            pipeline: vec![],
            reorder_point: (mean_rate * (lead_time + 5.0)).ceil() as i32 + 1,
            order_up_to: (mean_rate * (lead_time + 25.0)).ceil() as i32 + 2,
            lead_time,
        }
    }

    fn on_order(&self) -> i32 {
        self.pipeline.iter().map(|p| p.1).sum()
    }

    /// Receive the orders due on day `t`.
    fn receive(&mut self, t: usize) {
        let arrived: i32 = self.pipeline.iter().filter(|p| p.0 == t).map(|p| p.1).sum();
        self.on_hand += arrived;
        self.pipeline.retain(|p| p.0 != t);
    }

    /// Order up to S when the position is at or below s, with a random (occasionally
    /// disrupted) lead time.
    fn reorder(&mut self, t: usize, r: &mut ChaCha8Rng) {
        let on_order = self.on_order();
        if self.on_hand + on_order <= self.reorder_point {
            let lt = self.lead_time;
            let mut lead = Normal::new(lt, lt * 0.25).expect("valid").sample(r).round().max(1.0) as usize;
            if r.random_bool(0.05) {
                lead *= 3;
            }
            self.pipeline.push((t + lead, self.order_up_to - self.on_hand - on_order));
        }
    }
}

/// What every sale line of one series' day shares.
struct Line<'a> {
    sku: &'a Sku,
    loc: &'a str,
    date: NaiveDate,
    day: i32,
    promo: bool,
    price: f64,
}

impl Feeds {
    fn new() -> Self {
        Feeds {
            sales: BTreeMap::new(),
            inv: BTreeMap::new(),
            truth: TruthCols::default(),
            returns: vec![],
            corrections: vec![],
            next_sale_id: FIRST_SALE_ID,
        }
    }

    /// `sold` units as order lines, with the dirt of real order feeds: null keys and prices,
    /// negative quantities, re-delivered copies, returns and late corrections.
    fn sell(&mut self, r: &mut ChaCha8Rng, line: &Line, sold: i32) {
        const CHANNELS: [&str; 4] = ["web", "web", "app", "store"];
        const REASONS: [&str; 4] = ["damaged", "wrong size", "not as described", "changed mind"];
        let cols = self.sales.entry(month_key(line.date)).or_default();
        let mut left = sold;
        while left > 0 {
            let q = left.min(1 + Poisson::new(0.4).expect("valid").sample(r) as i32);
            left -= q;
            let id = self.next_sale_id;
            self.next_sale_id += 1;
            let (mut sku_id, mut qty, mut price) = (Some(line.sku.id.clone()), q, Some(line.price));
            let u: f64 = r.random();
            if u < 0.001 {
                sku_id = None;
            } else if u < 0.004 {
                price = None;
            } else if u < 0.005 {
                qty = -q;
            }
            // A re-delivered row is an exact copy.
            let copies = if r.random_bool(0.005) { 2 } else { 1 };
            let channel = CHANNELS[r.random_range(0..CHANNELS.len())];
            for _ in 0..copies {
                cols.sale_id.push(id);
                cols.date.push(line.day);
                cols.sku.push(sku_id.clone());
                cols.loc.push(line.loc.to_string());
                cols.qty.push(qty);
                cols.price.push(price);
                cols.promo.push(line.promo);
                cols.channel.push(channel);
            }
            if r.random_bool(0.03) {
                let back = r.random_range(1..=q.max(1));
                let day = line.day + r.random_range(1..30);
                let reason = REASONS[r.random_range(0..REASONS.len())];
                self.returns.push(Return { sale_id: id, day, sku: line.sku.id.clone(), loc: line.loc.to_string(), qty: back, reason });
            }
            if r.random_bool(0.003) {
                let fixed = (q + r.random_range(-1..=1)).max(0);
                let at = (line.day as i64 + r.random_range(1..6)) * 86_400_000_000 + r.random_range(0..86_400_000_000i64);
                self.corrections.push(Correction { sale_id: id, qty: fixed, at });
                if r.random_bool(0.2) {
                    self.corrections.push(Correction { sale_id: id, qty: q, at: at + 3_600_000_000 });
                }
            }
        }
    }

    /// Renumber the sale lines in time order (as order systems number orders as they arrive:
    /// each month file sorted by sale_id, the files' id ranges apart) and write every feed.
    async fn write(mut self, lake: &Lake, truth: bool) -> Result<GenStats> {
        let renumber = number_sales_in_time_order(&mut self.sales, FIRST_SALE_ID, self.next_sale_id);
        let new_id = |old: i64| renumber[(old - FIRST_SALE_ID) as usize];
        self.returns.iter_mut().for_each(|r| r.sale_id = new_id(r.sale_id));
        self.corrections.iter_mut().for_each(|c| c.sale_id = new_id(c.sale_id));
        self.corrections.sort_by_key(|c| (c.sale_id, c.at));
        let mut stats = GenStats::default();
        for ((y, m), c) in self.sales {
            stats.sales_rows += c.sale_id.len();
            write_parquet_sorted_by_first(lake, &format!("raw/sales/year={y}/month={m:02}/part-0.parquet"), c.batch()?).await?;
        }
        for ((y, m), c) in self.inv {
            stats.inventory_rows += c.date.len();
            write_parquet(lake, &format!("raw/inventory/year={y}/month={m:02}/part-0.parquet"), c.batch()?).await?;
        }
        write_returns(lake, &self.returns).await?;
        write_corrections(lake, &self.corrections).await?;
        if truth {
            self.truth.write(lake).await?;
        }
        Ok(stats)
    }
}

impl SalesCols {
    fn batch(self) -> Result<RecordBatch> {
        // The feed's schema says which columns may be null, whether or not this month has any.
        Ok(RecordBatch::try_from_iter_with_nullable(vec![
            ("sale_id", Arc::new(Int64Array::from(self.sale_id)) as ArrayRef, false),
            ("sale_date", Arc::new(Date32Array::from(self.date)), false),
            ("sku_id", Arc::new(StringArray::from(self.sku)), true),
            ("location_id", Arc::new(StringArray::from(self.loc)), false),
            ("quantity", Arc::new(Int32Array::from(self.qty)), false),
            ("unit_price", Arc::new(Float64Array::from(self.price)), true),
            ("promo", Arc::new(BooleanArray::from(self.promo)), false),
            ("channel", Arc::new(StringArray::from(self.channel)), false),
        ])?)
    }
}

impl InvCols {
    fn batch(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_from_iter(vec![
            ("snapshot_date", Arc::new(Date32Array::from(self.date)) as ArrayRef),
            ("sku_id", Arc::new(StringArray::from(self.sku))),
            ("location_id", Arc::new(StringArray::from(self.loc))),
            ("on_hand", Arc::new(Int32Array::from(self.on_hand))),
            ("on_order", Arc::new(Int32Array::from(self.on_order))),
        ])?)
    }
}

async fn write_returns(lake: &Lake, returns: &[Return]) -> Result<()> {
    let batch = RecordBatch::try_from_iter(vec![
        ("return_id", Arc::new(Int64Array::from_iter_values((0..returns.len() as i64).map(|i| 5_000_000 + i))) as ArrayRef),
        ("sale_id", Arc::new(Int64Array::from_iter_values(returns.iter().map(|r| r.sale_id)))),
        ("return_date", Arc::new(Date32Array::from_iter_values(returns.iter().map(|r| r.day)))),
        ("sku_id", Arc::new(StringArray::from_iter_values(returns.iter().map(|r| r.sku.as_str())))),
        ("location_id", Arc::new(StringArray::from_iter_values(returns.iter().map(|r| r.loc.as_str())))),
        ("quantity", Arc::new(Int32Array::from_iter_values(returns.iter().map(|r| r.qty)))),
        ("reason", Arc::new(StringArray::from_iter_values(returns.iter().map(|r| r.reason)))),
    ])?;
    write_parquet(lake, "raw/returns/returns.parquet", batch).await
}

async fn write_corrections(lake: &Lake, corrections: &[Correction]) -> Result<()> {
    let at = TimestampMicrosecondArray::from_iter_values(corrections.iter().map(|c| c.at)).with_timezone("UTC");
    let batch = RecordBatch::try_from_iter(vec![
        ("sale_id", Arc::new(Int64Array::from_iter_values(corrections.iter().map(|c| c.sale_id))) as ArrayRef),
        ("corrected_quantity", Arc::new(Int32Array::from_iter_values(corrections.iter().map(|c| c.qty)))),
        ("corrected_at", Arc::new(at)),
    ])?;
    write_parquet(lake, "raw/sales_corrections/corrections.parquet", batch).await
}

/// A SKU's life cycle, and its launch day (an index into the history) when it launches during
/// the history, as a fifth of SKUs do, at least two weeks before its end. Drawn from their own
/// seed, so every other draw of the generator stays as it was.
fn lifecycle(size: &DemoSize, sku: usize) -> (Lifecycle, Option<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(size.seed ^ 0x4C49_4645 ^ (sku as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let life = match rng.random_range(0..4) {
        0 => Lifecycle::LimitedEdition,
        1 => Lifecycle::Staple,
        _ => Lifecycle::Steady,
    };
    let during = size.days >= 28 && rng.random_bool(0.2);
    (life, during.then(|| rng.random_range(0..(size.days - 14) as i64)))
}

/// Days after the history that the promotion calendar already plans.
pub const PLANNED_DAYS: usize = 28;

/// The promotion calendar (`raw/promotions/`: sku_id, date, promo, discount): every promotion
/// day of the history — the same days the simulation lifted demand on — and the promotions
/// planned for the next [`PLANNED_DAYS`] days (drawn from their own seed, so the history is the
/// same with or without them). What a model reads as a known covariate.
async fn write_promotions(lake: &Lake, skus: &[Sku], start: NaiveDate, size: &DemoSize) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(size.seed ^ 0x5052_4f4d_4f53);
    let (mut ids, mut days) = (vec![], vec![]);
    for sku in skus {
        let mut planned = vec![false; PLANNED_DAYS];
        // About as many promotions as the history has: 2–8 weeks a year.
        if rng.random_bool(0.38) {
            let s = rng.random_range(0..PLANNED_DAYS);
            planned[s..(s + 7).min(PLANNED_DAYS)].iter_mut().for_each(|p| *p = true);
        }
        for (d, _) in sku.promo_days.iter().chain(&planned).enumerate().filter(|(_, p)| **p) {
            ids.push(sku.id.clone());
            days.push(days_since_epoch(start) + d as i32);
        }
    }
    let n = ids.len();
    let batch = RecordBatch::try_from_iter(vec![
        ("sku_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("date", Arc::new(Date32Array::from(days))),
        ("promo", Arc::new(BooleanArray::from(vec![true; n]))),
        ("discount", Arc::new(Float64Array::from(vec![0.2; n]))),
    ])?;
    write_parquet(lake, "raw/promotions/promotions.parquet", batch).await
}

async fn write_suppliers(lake: &Lake, skus: &[Sku], rng: &mut ChaCha8Rng) -> Result<()> {
    let on_time: Vec<f64> = (0..SUPPLIERS).map(|_| rng.random_range(0.75..0.99)).collect();
    write_parquet(lake, "raw/suppliers/suppliers.parquet", suppliers_batch(&on_time)?).await?;
    let mut offers = vec![];
    for sku in skus {
        let k = rng.random_range(1..=3);
        let mut chosen: Vec<usize> = vec![];
        while chosen.len() < k {
            let s = rng.random_range(0..SUPPLIERS);
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        offers.extend(chosen.into_iter().map(|s| Offer::draw(sku, s, on_time[s], rng)));
    }
    write_parquet(lake, "raw/supplier_offers/supplier_offers.parquet", offers_batch(&offers)?).await
}

const SUPPLIERS: usize = 25;

/// `suppliers`: an id, a name, a country and the on-time rate of each supplier.
fn suppliers_batch(on_time: &[f64]) -> Result<RecordBatch> {
    let prefixes = ["Pacific", "Atlas", "Harbor", "Meridian", "Crown", "Delta", "Evergreen", "Sunrise"];
    let suffixes = ["Trading", "Manufacturing", "Supply", "Industries", "Wholesale"];
    let countries = ["CN", "VN", "IN", "DE", "US", "MX", "PL", "TR"];
    let n = on_time.len();
    let names: Vec<String> = (0..n).map(|i| format!("{} {}", prefixes[i % prefixes.len()], suffixes[(i * 7) % suffixes.len()])).collect();
    Ok(RecordBatch::try_from_iter(vec![
        ("supplier_id", Arc::new(StringArray::from((0..n).map(supplier_id).collect::<Vec<_>>())) as ArrayRef),
        ("name", Arc::new(StringArray::from(names))),
        ("country", Arc::new(StringArray::from((0..n).map(|i| countries[(i * 3) % countries.len()]).collect::<Vec<_>>()))),
        ("on_time_rate", Arc::new(Float64Array::from(on_time.to_vec()))),
    ])?)
}

fn supplier_id(s: usize) -> String {
    format!("SUP-{:03}", s + 1)
}

/// One supplier's offer of one SKU: a row of `supplier_offers`.
struct Offer {
    supplier: usize,
    sku_id: String,
    unit_cost: f64,
    lead_time_mean_days: f64,
    lead_time_sd_days: f64,
    capacity_per_week: i32,
    moq: i32,
    reliability: f64,
    /// Price breaks: (min_qty, unit_cost) tiers.
    breaks: Vec<(i32, f64)>,
}

impl Offer {
    fn draw(sku: &Sku, supplier: usize, on_time: f64, rng: &mut ChaCha8Rng) -> Offer {
        let unit_cost = (sku.price * rng.random_range(0.35..0.6) * 100.0).round() / 100.0;
        let lead_time_mean_days: f64 = (sku.lead_time * rng.random_range(0.7..1.4)).round().max(2.0);
        let lead_time_sd_days = (lead_time_mean_days * rng.random_range(0.1..0.35) * 10.0).round() / 10.0;
        let capacity_per_week = ((sku.base * 70.0 * rng.random_range(2.0..5.0)).ceil() as i32).max(20);
        let moq = [1, 6, 12, 24, 48, 100][rng.random_range(0..6)];
        let reliability = (on_time + rng.random_range(-0.05..0.03)).clamp(0.5, 1.0);
        let tiers = rng.random_range(1..=3);
        let breaks = (1..=tiers).map(|t: i32| (100 * t * t, (unit_cost * (1.0 - 0.04 * f64::from(t)) * 100.0).round() / 100.0)).collect();
        let sku_id = sku.id.clone();
        Offer { supplier, sku_id, unit_cost, lead_time_mean_days, lead_time_sd_days, capacity_per_week, moq, reliability, breaks }
    }
}

/// `supplier_offers`, its price breaks a list of (min_qty, unit_cost) structs.
fn offers_batch(offers: &[Offer]) -> Result<RecordBatch> {
    let tier_fields = Fields::from(vec![Field::new("min_qty", DataType::Int32, false), Field::new("unit_cost", DataType::Float64, false)]);
    let all_breaks = || offers.iter().flat_map(|o| o.breaks.iter());
    let tiers = StructArray::new(
        tier_fields.clone(),
        vec![
            Arc::new(Int32Array::from_iter_values(all_breaks().map(|b| b.0))) as ArrayRef,
            Arc::new(Float64Array::from_iter_values(all_breaks().map(|b| b.1))),
        ],
        None,
    );
    let breaks = ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(tier_fields), false)),
        OffsetBuffer::from_lengths(offers.iter().map(|o| o.breaks.len())),
        Arc::new(tiers),
        None,
    );
    let f64s = |f: fn(&Offer) -> f64| Arc::new(Float64Array::from_iter_values(offers.iter().map(f))) as ArrayRef;
    let i32s = |f: fn(&Offer) -> i32| Arc::new(Int32Array::from_iter_values(offers.iter().map(f))) as ArrayRef;
    Ok(RecordBatch::try_from_iter(vec![
        ("supplier_id", Arc::new(StringArray::from_iter_values(offers.iter().map(|o| supplier_id(o.supplier)))) as ArrayRef),
        ("sku_id", Arc::new(StringArray::from_iter_values(offers.iter().map(|o| &o.sku_id)))),
        ("unit_cost", f64s(|o| o.unit_cost)),
        ("lead_time_mean_days", f64s(|o| o.lead_time_mean_days)),
        ("lead_time_sd_days", f64s(|o| o.lead_time_sd_days)),
        ("capacity_per_week", i32s(|o| o.capacity_per_week)),
        ("moq", i32s(|o| o.moq)),
        ("price_breaks", Arc::new(breaks)),
        ("reliability", f64s(|o| o.reliability)),
    ])?)
}

async fn write_reviews(lake: &Lake, skus: &[Sku], dates: &[NaiveDate], rng: &mut ChaCha8Rng) -> Result<usize> {
    let (mut id, mut sku_id, mut date, mut rating, mut body) = (vec![], vec![], vec![], vec![], vec![]);
    for sku in skus {
        let n = Poisson::new(2.0 + 6.0 * sku.base.min(5.0)).expect("valid").sample(rng) as usize;
        for _ in 0..n.min(80) {
            let r = (Normal::new(sku.quality, 0.9).expect("valid").sample(rng).round()).clamp(1.0, 5.0) as u8;
            id.push(9_000_000 + id.len() as i64);
            sku_id.push(sku.id.clone());
            // (After its launch: a product is reviewed once it sells.)
            date.push(days_since_epoch(dates[rng.random_range(sku.launch.max(0) as usize..dates.len())]));
            rating.push(r as i32);
            body.push(text::review(r, sku.noun, rng.random_range(0..3)));
        }
    }
    let n = id.len();
    let batch = RecordBatch::try_from_iter(vec![
        ("review_id", Arc::new(Int64Array::from(id)) as ArrayRef),
        ("sku_id", Arc::new(StringArray::from(sku_id))),
        ("review_date", Arc::new(Date32Array::from(date))),
        ("rating", Arc::new(Int32Array::from(rating))),
        ("review_text", Arc::new(StringArray::from(body))),
    ])?;
    write_parquet(lake, "raw/reviews/reviews.parquet", batch).await?;
    Ok(n)
}

/// What the main job prints at the end: published tables and a sample analyst query.
pub async fn print_summary(lake: &Lake, outcome: &RunOutcome) -> Result<()> {
    let mut tables: Vec<(String, i64)> = outcome.published.iter().map(|p| (p.table.clone(), p.version)).collect();
    let unchanged = tables.is_empty() && !outcome.stages.is_empty() && outcome.stages.iter().all(|s| s.reused);
    if unchanged {
        println!("\nNothing new to publish: every stage's inputs and config are unchanged since its last successful run");
        println!("(`--force` recomputes). The lake's tables (under {}tables/):", lake.root);
        tables = crate::storage::commit::visible_versions(lake).await?.into_iter().collect();
        tables.sort();
    } else {
        println!("\nPublished (Delta tables under {}tables/):", lake.root);
    }
    for (table, version) in &tables {
        let rows = crate::query::run_sql(lake, &format!("SELECT COUNT(*) AS n FROM {table}")).await?;
        let n =
            rows.first().map(|b| datafusion::arrow::util::display::array_value_to_string(b.column(0), 0)).transpose()?.unwrap_or_default();
        println!("  {table:<18} version {version:<4} {n:>10} rows");
    }
    // The sample query of what this pipeline makes (the weekly plan's allocations, or forecasts).
    let planned = outcome.stages.iter().any(|s| s.id == "allocate");
    let has = |t: &str| tables.iter().any(|(name, _)| name == t) && (t == "allocations") == planned;
    let sql = if has("allocations") {
        "SELECT supplier_id, COUNT(*) AS lines, SUM(quantity) AS units, ROUND(SUM(line_cost), 0) AS cost, MIN(expected_arrival) AS first_arrival \
         FROM allocations GROUP BY supplier_id ORDER BY cost DESC LIMIT 5"
    } else if has("forecasts") {
        "SELECT f.sku_id, c.title, ROUND(SUM(f.forecast), 1) AS next_28d, ROUND(SUM(f.p90), 1) AS sum_daily_p90 \
         FROM forecasts f JOIN product_text c ON f.sku_id = c.sku_id \
         GROUP BY f.sku_id, c.title ORDER BY next_28d DESC LIMIT 5"
    } else {
        ""
    };
    if !sql.is_empty() {
        println!("\nSample query: restock query \"{sql}\"");
        let batches = crate::query::run_sql(lake, sql).await?;
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    println!("Run history: restock show {}", outcome.run_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fifth of SKUs launch during the history, each at least two weeks before its end; the
    /// draws are the same every time, and a history too short for a launch has none.
    #[test]
    fn a_fifth_of_skus_launch_during_the_history() {
        let size = DemoSize::default();
        let launches: Vec<i64> = (0..2000).filter_map(|i| lifecycle(&size, i).1).collect();
        assert!((340..460).contains(&launches.len()), "{} of 2000 launch during the history", launches.len());
        assert!(launches.iter().all(|&l| (0..size.days as i64 - 14).contains(&l)));
        assert_eq!(lifecycle(&size, 7).1, lifecycle(&size, 7).1);
        let lives: Vec<Lifecycle> = (0..2000).map(|i| lifecycle(&size, i).0).collect();
        let limited = lives.iter().filter(|l| **l == Lifecycle::LimitedEdition).count();
        assert!((400..600).contains(&limited), "a quarter are limited editions: {limited}");
        let short = DemoSize { days: 20, ..DemoSize::default() };
        assert!((0..200).all(|i| lifecycle(&short, i).1.is_none()));
    }
}
