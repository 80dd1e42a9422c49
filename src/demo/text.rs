//! Product catalog and review text for the demo lake: category vocabularies and templates, so the
//! text a language model reads carries real signal (category, season, quality, price tier, and a
//! product's life cycle: a limited edition sells fast after launch and fades, an everyday staple
//! builds up as shoppers come back).

pub struct Category {
    pub name: &'static str,
    pub subcategories: &'static [&'static str],
    pub nouns: &'static [&'static str],
    pub adjectives: &'static [&'static str],
    pub features: &'static [&'static str],
    /// Yearly seasonality: amplitude and day-of-year of the peak.
    pub season_amp: f64,
    pub season_peak_doy: f64,
    /// Extra uplift on Saturday/Sunday.
    pub weekend_lift: f64,
    /// Median list price.
    pub price: f64,
}

pub const CATEGORIES: &[Category] = &[
    Category {
        name: "Garden & Outdoor",
        subcategories: &["Planters", "Hoses", "Grills", "Lighting"],
        nouns: &["planter", "garden hose", "charcoal grill", "solar lantern", "patio umbrella", "hedge trimmer"],
        adjectives: &["weatherproof", "UV-resistant", "compact", "heavy-duty", "foldable"],
        features: &["rust-proof steel frame", "quick-connect fittings", "built-in drainage", "auto on at dusk"],
        season_amp: 0.75,
        season_peak_doy: 165.0,
        weekend_lift: 1.35,
        price: 39.0,
    },
    Category {
        name: "Toys & Games",
        subcategories: &["Board Games", "Building Sets", "Plush", "Puzzles"],
        nouns: &["board game", "building set", "plush bear", "1000-piece puzzle", "remote-control car"],
        adjectives: &["family", "educational", "award-winning", "classic", "glow-in-the-dark"],
        features: &["ages 8 and up", "2-6 players", "rechargeable battery", "non-toxic materials"],
        season_amp: 0.9,
        season_peak_doy: 350.0,
        weekend_lift: 1.3,
        price: 29.0,
    },
    Category {
        name: "Electronics",
        subcategories: &["Audio", "Chargers", "Smart Home", "Accessories"],
        nouns: &["wireless earbuds", "USB-C charger", "smart plug", "bluetooth speaker", "power bank"],
        adjectives: &["fast-charging", "noise-cancelling", "portable", "waterproof", "slim"],
        features: &["30-hour battery", "65 W output", "works with voice assistants", "IPX7 rated"],
        season_amp: 0.35,
        season_peak_doy: 332.0,
        weekend_lift: 1.15,
        price: 49.0,
    },
    Category {
        name: "Grocery",
        subcategories: &["Coffee", "Snacks", "Pantry", "Beverages"],
        nouns: &["ground coffee", "trail mix", "olive oil", "sparkling water 12-pack", "oat cereal"],
        adjectives: &["organic", "fair-trade", "low-sugar", "family-size", "cold-pressed"],
        features: &["resealable bag", "no artificial flavours", "gluten free", "sustainably sourced"],
        season_amp: 0.05,
        season_peak_doy: 355.0,
        weekend_lift: 1.25,
        price: 8.0,
    },
    Category {
        name: "Apparel",
        subcategories: &["Outerwear", "Basics", "Swimwear", "Footwear"],
        nouns: &["rain jacket", "cotton t-shirt", "swim shorts", "wool socks", "running shoes"],
        adjectives: &["lightweight", "breathable", "insulated", "stretch", "recycled"],
        features: &["machine washable", "reflective trim", "quick-dry fabric", "cushioned sole"],
        season_amp: 0.4,
        season_peak_doy: 300.0,
        weekend_lift: 1.4,
        price: 34.0,
    },
    Category {
        name: "Home & Kitchen",
        subcategories: &["Cookware", "Storage", "Bedding", "Cleaning"],
        nouns: &["non-stick pan", "storage box set", "duvet cover", "microfiber mop", "knife block"],
        adjectives: &["stackable", "dishwasher-safe", "premium", "space-saving", "ergonomic"],
        features: &["induction compatible", "BPA free", "lifetime warranty", "hypoallergenic fill"],
        season_amp: 0.2,
        season_peak_doy: 330.0,
        weekend_lift: 1.2,
        price: 27.0,
    },
    Category {
        name: "Sports & Fitness",
        subcategories: &["Yoga", "Cycling", "Camping", "Weights"],
        nouns: &["yoga mat", "bike light set", "2-person tent", "adjustable dumbbell", "water bottle"],
        adjectives: &["non-slip", "ultralight", "adjustable", "insulated", "durable"],
        features: &["carry strap included", "USB rechargeable", "sets up in 5 minutes", "keeps drinks cold 24 h"],
        season_amp: 0.5,
        season_peak_doy: 20.0,
        weekend_lift: 1.3,
        price: 32.0,
    },
    Category {
        name: "Beauty & Care",
        subcategories: &["Skin Care", "Hair Care", "Sun Care", "Oral Care"],
        nouns: &["face moisturizer", "shampoo", "sunscreen SPF 50", "electric toothbrush", "lip balm"],
        adjectives: &["fragrance-free", "gentle", "dermatologist-tested", "vegan", "travel-size"],
        features: &["for sensitive skin", "sulfate free", "water resistant 80 min", "2-minute timer"],
        season_amp: 0.3,
        season_peak_doy: 180.0,
        weekend_lift: 1.1,
        price: 14.0,
    },
    Category {
        name: "Pet Supplies",
        subcategories: &["Dog Food", "Cat Litter", "Toys", "Grooming"],
        nouns: &["dry dog food", "clumping cat litter", "chew toy", "grooming brush", "pet bed"],
        adjectives: &["grain-free", "odor-control", "indestructible", "orthopedic", "natural"],
        features: &["vet recommended", "dust free", "machine washable cover", "high protein"],
        season_amp: 0.05,
        season_peak_doy: 200.0,
        weekend_lift: 1.15,
        price: 22.0,
    },
    Category {
        name: "Office & School",
        subcategories: &["Notebooks", "Writing", "Backpacks", "Desk"],
        nouns: &["spiral notebook", "gel pen 10-pack", "laptop backpack", "desk organizer", "highlighter set"],
        adjectives: &["college-ruled", "smudge-proof", "padded", "minimalist", "refillable"],
        features: &["acid-free paper", "fits 15-inch laptops", "quick-dry ink", "bamboo finish"],
        season_amp: 0.7,
        season_peak_doy: 235.0,
        weekend_lift: 0.9,
        price: 12.0,
    },
];

/// How a product's demand moves after its launch, which its title and description say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lifecycle {
    /// Sells from launch as it will later.
    Steady,
    /// A launch peak that fades within weeks to a lower lasting level ("Limited Edition").
    LimitedEdition,
    /// Starts slowly and builds up over its first weeks as shoppers come back ("everyday staple").
    Staple,
}

impl Lifecycle {
    /// Demand relative to the steady product `days` after launch (negative: not yet launched).
    pub fn factor(self, days: f64) -> f64 {
        let a = days.max(0.0);
        match self {
            Lifecycle::Steady => 1.0,
            Lifecycle::LimitedEdition => 0.4 + 2.0 * (-a / 21.0).exp(),
            Lifecycle::Staple => 1.0 - 0.75 * (-a / 21.0).exp(),
        }
    }

    /// The sentence the description adds.
    fn sentence(self) -> &'static str {
        match self {
            Lifecycle::Steady => "",
            Lifecycle::LimitedEdition => " A limited edition: once it sells out, it is gone.",
            Lifecycle::Staple => " An everyday staple that shoppers come back for again and again.",
        }
    }
}

pub const BRANDS: &[&str] =
    &["Northwind", "Acme", "Bluebird", "Everly", "Summit", "Kestrel", "Oakline", "Luma", "Pioneer", "Willow & Co", "Brightside", "Granite"];
pub const COLORS: &[&str] = &["Black", "White", "Navy", "Sage", "Red", "Grey", "Sand", "Teal"];

pub fn title(brand: &str, adjective: &str, noun: &str, variant: &str, life: Lifecycle) -> String {
    let noun_cap: String = noun.split(' ').map(capitalize).collect::<Vec<_>>().join(" ");
    let (before, after) = match life {
        Lifecycle::LimitedEdition => (" Limited Edition", ""),
        Lifecycle::Staple => ("", " (Everyday Staple)"),
        Lifecycle::Steady => ("", ""),
    };
    format!("{brand}{before} {} {noun_cap}, {variant}{after}", capitalize(adjective))
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub fn description(cat: &Category, noun: &str, adjective: &str, features: [&str; 2], seasonal_hint: bool, life: Lifecycle) -> String {
    let [feature_a, feature_b] = features;
    let season = if seasonal_hint && cat.season_amp > 0.5 {
        match cat.season_peak_doy as i32 {
            0..=60 => " A New Year favourite for fresh starts.",
            61..=200 => " Built for long summer days.",
            201..=280 => " A back-to-school essential.",
            _ => " A popular holiday gift.",
        }
    } else {
        ""
    };
    format!(
        "This {adjective} {noun} from our {} range features {feature_a} and {feature_b}.{season}{} Designed for everyday use and backed by our 30-day returns policy.",
        cat.name.to_lowercase(),
        life.sentence()
    )
}

pub fn review(rating: u8, noun: &str, variant: usize) -> String {
    let good = [
        "Exactly as described, the {n} works great. Would buy again.",
        "Excellent quality for the price. My second {n} from this brand.",
        "Arrived quickly and the {n} exceeded my expectations.",
    ];
    let mid = [
        "The {n} is okay. Does the job but feels a little cheap.",
        "Decent {n}, although delivery took longer than promised.",
        "Average. The {n} works but the instructions were unclear.",
    ];
    let bad = [
        "The {n} broke after two weeks. Very disappointed.",
        "Not as pictured. Returned the {n} the same day.",
        "Poor quality, the {n} stopped working. Avoid.",
    ];
    let set = match rating {
        4..=5 => &good,
        3 => &mid,
        _ => &bad,
    };
    set[variant % set.len()].replace("{n}", noun)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limited edition peaks at launch and fades to a lower lasting level; a staple builds up
    /// to the steady level; both are the steady product's by a few months; the title says which.
    #[test]
    fn life_cycles_move_demand_after_launch_as_their_titles_say() {
        let (limited, staple) = (Lifecycle::LimitedEdition, Lifecycle::Staple);
        assert!(limited.factor(0.0) > 2.0 && limited.factor(7.0) > limited.factor(35.0) && limited.factor(365.0) < 0.5);
        assert!(staple.factor(0.0) < 0.3 && staple.factor(7.0) < staple.factor(35.0) && staple.factor(365.0) > 0.99);
        assert_eq!(Lifecycle::Steady.factor(3.0), 1.0);
        assert_eq!(limited.factor(-5.0), limited.factor(0.0), "before launch: as at launch (no rows are written then)");
        let t = |life| title("Acme", "compact", "garden hose", "Red", life);
        assert_eq!(t(Lifecycle::Steady), "Acme Compact Garden Hose, Red");
        assert_eq!(t(limited), "Acme Limited Edition Compact Garden Hose, Red");
        assert_eq!(t(staple), "Acme Compact Garden Hose, Red (Everyday Staple)");
    }
}
