//! A YAML value that remembers where every node came from.
//!
//! Stage kinds own their config schema, so the pipeline model keeps `config:` as a generic value.
//! Converting it to JSON would lose positions, so we keep a side table (path -> location) and map a
//! kind's deserialization error (via `serde_path_to_error`) back to the exact line and column.
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::diag::{Diagnostic, Pos, did_you_mean};

#[derive(Debug, Clone)]
pub enum YamlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<YamlValue>>),
    Map(Vec<(Spanned<String>, Spanned<YamlValue>)>),
}

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YamlValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<YamlValue, E> {
                Ok(YamlValue::Null)
            }
            fn visit_none<E>(self) -> Result<YamlValue, E> {
                Ok(YamlValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<YamlValue, D::Error> {
                YamlValue::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<YamlValue, E> {
                Ok(YamlValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<YamlValue, E> {
                Ok(YamlValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<YamlValue, E> {
                i64::try_from(v).map(YamlValue::Int).map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<YamlValue, E> {
                Ok(YamlValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<YamlValue, E> {
                Ok(YamlValue::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<YamlValue, E> {
                Ok(YamlValue::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<YamlValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<YamlValue>>()? {
                    items.push(item);
                }
                Ok(YamlValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YamlValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<YamlValue>>()?;
                    entries.push((key, value));
                }
                Ok(YamlValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A kind's config: JSON for serde, plus where each node sits in the pipeline file.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub value: serde_json::Value,
    /// Path ("tests/2/column") -> location of the value; "<path>#key" -> location of the key.
    locations: HashMap<String, Location>,
    root: Location,
    /// How messages name this node ("config", "config.tests.2").
    label: String,
}

impl Config {
    pub fn new(file: &Path, spanned: Option<&Spanned<YamlValue>>, stage_pos: Location) -> Self {
        let mut locations = HashMap::new();
        let (value, root) = match spanned {
            Some(s) => (to_json(&s.value, "", &mut locations), s.referenced),
            None => (serde_json::Value::Object(Default::default()), stage_pos),
        };
        locations.insert(String::new(), root);
        Self { file: file.to_path_buf(), value, locations, root, label: "config".into() }
    }

    /// The sub-tree at `path`, as a config of its own (for lists of typed items).
    pub fn sub(&self, path: &str) -> Config {
        let path = path.trim_matches('/');
        let pointer = format!("/{path}");
        let value = self.value.pointer(&pointer).cloned().unwrap_or(serde_json::Value::Null);
        let prefix = format!("{path}/");
        let mut locations: HashMap<String, Location> =
            self.locations.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|rest| (rest.to_string(), *v))).collect();
        let root = self.locations.get(path).copied().unwrap_or(self.root);
        locations.insert(String::new(), root);
        let label = format!("{}.{}", self.label, path.replace('/', "."));
        Config { file: self.file.clone(), value, locations, root, label }
    }

    /// Position of the node at `path` ("a/0/b"), or of its nearest known ancestor.
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path.trim_matches('/').to_string();
        loop {
            if let Some(loc) = self.locations.get(&p) {
                return Pos::from_saphyr(&self.file, loc);
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None if !p.is_empty() => p.clear(),
                None => return Pos::from_saphyr(&self.file, &self.root),
            }
        }
    }

    pub fn key_pos(&self, path: &str) -> Pos {
        match self.locations.get(&format!("{}#key", path.trim_matches('/'))) {
            Some(loc) => Pos::from_saphyr(&self.file, loc),
            None => self.pos(path),
        }
    }

    /// Deserialize into the kind's typed config; errors point at the offending node.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize::<_, T>(&self.value).map_err(|err| {
            let path: Vec<String> = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let path = path.join("/");
            let inner = err.into_inner().to_string();
            let (message, help) = explain_serde_message(&inner);
            let shown = if path.is_empty() { self.label.clone() } else { format!("{}.{}", self.label, path.replace('/', ".")) };
            Diagnostic::new(self.key_pos(&path), format!("{shown}: {message}")).help_opt(help)
        })
    }
}

fn to_json(v: &YamlValue, path: &str, locs: &mut HashMap<String, Location>) -> serde_json::Value {
    use serde_json::Value as J;
    let child = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}/{k}") };
    match v {
        YamlValue::Null => J::Null,
        YamlValue::Bool(b) => J::Bool(*b),
        YamlValue::Int(i) => J::from(*i),
        YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        YamlValue::Str(s) => J::String(s.clone()),
        YamlValue::Seq(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = child(&i.to_string());
                    locs.insert(p.clone(), item.referenced);
                    to_json(&item.value, &p, locs)
                })
                .collect(),
        ),
        YamlValue::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, item)| {
                    let p = child(&k.value);
                    locs.insert(p.clone(), item.referenced);
                    locs.insert(format!("{p}#key"), k.referenced);
                    (k.value.clone(), to_json(&item.value, &p, locs))
                })
                .collect(),
        ),
    }
}

/// Turn serde's "unknown field `x`, expected one of `a`, `b`" into a message plus a did-you-mean.
pub fn explain_serde_message(message: &str) -> (String, Option<String>) {
    let first_line = message.lines().next().unwrap_or(message).to_string();
    let Some(rest) = first_line.strip_prefix("unknown field `").or_else(|| first_line.strip_prefix("unknown variant `")) else {
        return (first_line, None);
    };
    let Some((word, expected)) = rest.split_once('`') else { return (first_line, None) };
    // serde writes the list as "`a`, `b`"; serde-saphyr as "a, b".
    let list = expected.trim_start_matches(',').trim().trim_start_matches("expected one of").trim_start_matches("expected").trim();
    let candidates: Vec<&str> =
        list.split([',']).flat_map(|c| c.split(" or ")).map(|c| c.trim().trim_matches('`')).filter(|c| !c.is_empty()).collect();
    let help = did_you_mean(word, candidates.iter().copied());
    let what = if first_line.starts_with("unknown field") { "unknown key" } else { "unknown value" };
    let expected_list = candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    let message =
        if expected_list.is_empty() { format!("{what} `{word}`") } else { format!("{what} `{word}` (expected one of {expected_list})") };
    (message, help)
}
