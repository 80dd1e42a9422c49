//! Product text for synthetic series, so pretraining pairs words with demand: a launched
//! product's life cycle — a launch peak that fades (limited editions, drops), a build-up as
//! shoppers come back (staples, essentials), or steady sales — stated in one of many phrasings
//! and places (title, description, a review), amid words that say nothing about demand (brand,
//! product, colour, size). A model pretrained on these pairs learns once, at scale, to read what
//! a catalog's words say about the weeks after a launch and to ignore the rest, so a fine-tune on
//! a lake's own text starts from text embeddings that mean something.
use rand::Rng;
use rand::seq::IndexedRandom;

/// How a launched product's demand moves after its launch (step 0 = the launch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LifeCycle {
    /// Sells from launch as it will later.
    Steady,
    /// A launch peak `peak` times the lasting level above it, fading with time constant `tau` steps.
    Fading { peak: f64, tau: f64 },
    /// Starts at 1 − `depth` of its lasting level and builds up with time constant `tau` steps.
    Building { depth: f64, tau: f64 },
}

impl LifeCycle {
    /// One of the three, equally often, with random strength and pace (time constants from 3 to
    /// 60 steps: days for daily data, weeks or months for coarser).
    pub fn random(rng: &mut impl Rng) -> LifeCycle {
        let tau = rng.random_range(3f64.ln()..60f64.ln()).exp();
        match rng.random_range(0..3) {
            0 => LifeCycle::Steady,
            1 => LifeCycle::Fading { peak: rng.random_range(1.0..5.0), tau },
            _ => LifeCycle::Building { depth: rng.random_range(0.5..0.95), tau },
        }
    }

    /// Demand `t` steps after launch relative to the lasting level.
    pub fn factor(self, t: f64) -> f64 {
        match self {
            LifeCycle::Steady => 1.0,
            LifeCycle::Fading { peak, tau } => 1.0 + peak * (-t / tau).exp(),
            LifeCycle::Building { depth, tau } => 1.0 - depth * (-t / tau).exp(),
        }
    }
}

const BRANDS: &[&str] =
    &["Northfield", "Orbit", "Harbor", "Maple & Co", "Vela", "Cobalt", "Juniper", "Atlas", "Nordic Home", "Peak", "Sunny"];
const ADJECTIVES: &[&str] =
    &["Classic", "Compact", "Premium", "Organic", "Wireless", "Soft", "Large", "Slim", "Deluxe", "Eco", "Mini", "Heavy-Duty"];
const NOUNS: &[&str] = &[
    "Coffee Beans",
    "Running Shoes",
    "Desk Lamp",
    "Throw Blanket",
    "Phone Case",
    "Dog Treats",
    "Sparkling Water",
    "Face Cream",
    "Notebook",
    "Headphones",
    "Garden Hose",
    "Yoga Mat",
    "Pasta Sauce",
    "Dish Soap",
    "Board Game",
    "Scented Candle",
    "Backpack",
    "Water Bottle",
    "Toothpaste",
    "Granola",
    "Winter Jacket",
    "Sunscreen",
    "Printer Paper",
    "Chocolate Bar",
    "Light Bulbs",
];
const VARIANTS: &[&str] = &["Black", "White", "Red", "Navy", "500 g", "1 L", "Pack of 6", "Size M", "Blue", "250 ml", "Twin Pack", "Oak"];

/// How each life cycle is said: words a title puts before or after the product, and sentences
/// a description or a review may add.
fn phrases(life: LifeCycle) -> (&'static [&'static str], &'static [&'static str]) {
    match life {
        LifeCycle::Fading { .. } => (
            &[
                "Limited Edition",
                "Limited Run",
                "Special Edition",
                "Launch Exclusive",
                "Seasonal Drop",
                "Collector's Edition",
                "Limited Release",
            ],
            &[
                "A limited run: when it's gone, it's gone.",
                "Only available while stocks last.",
                "A one-time release for the launch.",
                "Grab it before it sells out.",
                "Review: bought it on launch day, everyone wanted one.",
                "Exclusive drop, not restocked.",
            ],
        ),
        LifeCycle::Building { .. } => (
            &[
                "Everyday Staple",
                "Everyday Essentials",
                "Pantry Staple",
                "Core Range",
                "Household Basics",
                "Subscribe & Save",
                "Daily Essential",
            ],
            &[
                "A staple people buy again and again.",
                "A basic you will reorder every week.",
                "Review: now a regular in my weekly shop.",
                "Made for daily use, refill after refill.",
                "Customers buy it again and again once they try it.",
            ],
        ),
        LifeCycle::Steady => {
            (&["Original", "Standard", "Classic Range"], &["A reliable choice all year round.", "Review: does the job, good value."])
        }
    }
}

/// Sentences that say nothing about demand.
const FILLER: &[&str] = &[
    "Designed for everyday use and backed by our 30-day returns policy.",
    "Review: arrived quickly, exactly as described.",
    "Made from durable materials.",
    "Review: okay for the price.",
    "Easy to clean and store.",
    "Ships in recyclable packaging.",
];

/// A product's text: a title (brand, adjective, product, variant) and one or two sentences. With
/// a life cycle, most texts state it (in the title, a sentence or both); some, as in real
/// catalogs, do not. Without one (a mature product or no launch), the words are neutral.
pub fn describe(life: Option<LifeCycle>, rng: &mut impl Rng) -> String {
    let (brand, adj, noun, variant) = (pick(BRANDS, rng), pick(ADJECTIVES, rng), pick(NOUNS, rng), pick(VARIANTS, rng));
    let stated = life.filter(|l| *l != LifeCycle::Steady || rng.random_bool(0.3)).filter(|_| rng.random_bool(0.85));
    let (in_title, in_text) = match stated {
        Some(_) => match rng.random_range(0..3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        },
        None => (false, false),
    };
    let (words, sentences) = stated.map(phrases).unwrap_or((&[], &[]));
    let mut title = match (in_title, rng.random_bool(0.5)) {
        (true, true) => format!("{brand} {} {adj} {noun}, {variant}", pick(words, rng)),
        (true, false) => format!("{brand} {adj} {noun}, {variant} ({})", pick(words, rng)),
        (false, _) => format!("{brand} {adj} {noun}, {variant}"),
    };
    if in_text {
        title = format!("{title}. {}", pick(sentences, rng));
    }
    if rng.random_bool(0.5) {
        title = format!("{title} {}", pick(FILLER, rng));
    }
    title
}

fn pick(xs: &[&'static str], rng: &mut impl Rng) -> &'static str {
    xs.choose(rng).expect("non-empty")
}

/// Texts to train the pretraining tokenizer on: many descriptions of every kind.
pub fn tokenizer_texts(n: usize, rng: &mut impl Rng) -> Vec<String> {
    (0..n).map(|_| describe(Some(LifeCycle::random(rng)).filter(|_| rng.random_bool(0.7)), rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Life cycles move demand as named, and most texts of a fading or building product say so
    /// in their words, while a product without one never gets those words.
    #[test]
    fn life_cycles_shape_demand_and_texts_state_them() {
        let fading = LifeCycle::Fading { peak: 2.0, tau: 10.0 };
        let building = LifeCycle::Building { depth: 0.8, tau: 10.0 };
        assert!((fading.factor(0.0) - 3.0).abs() < 1e-12 && (fading.factor(100.0) - 1.0).abs() < 1e-4);
        assert!((building.factor(0.0) - 0.2).abs() < 1e-12 && building.factor(5.0) < building.factor(20.0));
        assert_eq!(LifeCycle::Steady.factor(3.0), 1.0);
        let mut rng = crate::forecast::rng();
        let says = |t: &str, life: LifeCycle| phrases(life).0.iter().chain(phrases(life).1).any(|p| t.contains(p));
        let faded: Vec<String> = (0..400).map(|_| describe(Some(fading), &mut rng)).collect();
        let stated = faded.iter().filter(|t| says(t, fading)).count();
        assert!((300..400).contains(&stated), "most but not all state the life cycle: {stated}");
        assert!(faded.iter().all(|t| !says(t, building)));
        let plain: Vec<String> = (0..400).map(|_| describe(None, &mut rng)).collect();
        assert!(plain.iter().all(|t| !says(t, fading) && !says(t, building) && !says(t, LifeCycle::Steady)));
        let distinct: std::collections::BTreeSet<&String> = plain.iter().collect();
        assert!(distinct.len() > 300, "varied texts: {}", distinct.len());
        let kinds = (0..300).map(|_| std::mem::discriminant(&LifeCycle::random(&mut rng))).collect::<std::collections::HashSet<_>>();
        assert_eq!(kinds.len(), 3);
    }
}
