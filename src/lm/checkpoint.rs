//! A model on disk: a folder with `config.yaml` (the shape), `model.safetensors` (bf16 weights),
//! `metrics.json` (how it was trained) and, for a model fine-tuned on product text,
//! `tokenizer.json` (the tokenizer its text ids come from). Loading names the file at fault.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use tch::nn::VarStore;
use tch::{Device, Kind};

use super::model::{Config, Model, load_config};
use super::text::TextTokenizer;

pub const CONFIG: &str = "config.yaml";
pub const WEIGHTS: &str = "model.safetensors";
pub const METRICS: &str = "metrics.json";
pub const TOKENIZER: &str = "tokenizer.json";

/// Which version of a model folder this is, cheaply: the size and modification time of its
/// config and weights (what a stage's fingerprint folds in, so new weights rerun the stage).
pub fn version_stamp(dir: &std::path::Path) -> String {
    [CONFIG, WEIGHTS, TOKENIZER]
        .iter()
        .map(|f| match std::fs::metadata(dir.join(f)) {
            Ok(m) => {
                let modified = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos());
                format!("{f}:{}:{}", m.len(), modified.unwrap_or(0))
            }
            Err(_) => format!("{f}:missing"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where a model comes from: a model folder, or a model table's row (config text and
/// safetensors bytes) read from the lake.
#[derive(Debug, Clone)]
pub enum Source {
    Folder(PathBuf),
    /// `name` says which in messages, e.g. `lm_model@v3`.
    Row {
        name: String,
        config: String,
        weights: Arc<Vec<u8>>,
        tokenizer: Option<String>,
    },
}

impl Source {
    /// Load onto the best device, naming the source on failure.
    pub fn load(&self) -> Result<Checkpoint> {
        match self {
            Source::Folder(dir) => Checkpoint::load(dir, crate::device::best()),
            Source::Row { name, config, weights, tokenizer } => {
                Checkpoint::from_parts(config, weights, tokenizer.as_deref(), crate::device::best())
                    .with_context(|| format!("loading the model {name}"))
            }
        }
    }

    /// The model's config alone, without loading weights (what a stage must read before the
    /// model runs: its covariates).
    pub fn config(&self) -> Result<Config> {
        match self {
            Source::Folder(dir) => load_config(&dir.join(CONFIG)),
            Source::Row { name, config, .. } => {
                let c: Config = serde_saphyr::from_str(config).map_err(|e| anyhow!("the model {name}'s config: {e}"))?;
                c.check().map_err(|e| anyhow!("the model {name}'s config: {e}"))?;
                Ok(c)
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Folder(dir) => dir.display().to_string(),
            Source::Row { name, .. } => name.clone(),
        }
    }
}

pub struct Checkpoint {
    pub vs: VarStore,
    pub model: Model,
    /// The tokenizer the model's text ids come from: present once it was trained on text.
    pub tokenizer: Option<TextTokenizer>,
}

impl Checkpoint {
    /// A freshly initialised model (seeded) on `device`.
    pub fn init(config: Config, device: Device, seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = VarStore::new(device);
        let model = Model::new(&vs.root(), config);
        Self { vs, model, tokenizer: None }
    }

    /// Give the model its text tokenizer (`tokenizer.json` text), refusing one with more ids
    /// than the model has text embeddings.
    pub fn with_tokenizer(mut self, json: &str) -> Result<Self> {
        let tk = TextTokenizer::from_json(json)?;
        if tk.vocab_size() as i64 > self.model.config.text_vocab {
            return Err(anyhow!(
                "the tokenizer has {} ids but the model reads at most {} (`text_vocab`): train the tokenizer with `vocab_size: {}` or less",
                tk.vocab_size(),
                self.model.config.text_vocab,
                self.model.config.text_vocab
            ));
        }
        self.tokenizer = Some(tk);
        Ok(self)
    }

    /// The model reading text through the tokenizer `json` instead of its own, its text
    /// embeddings carried over by the tokens' text: a new id's embedding is the old one where
    /// both vocabularies have the token, else the mean of the old embeddings of its pieces in the
    /// old vocabulary. So what pretraining taught of "Limited Edition" survives a lake's own
    /// tokenizer. Without a tokenizer before, it is [`Self::with_tokenizer`]. Also returns how
    /// many new ids were a whole old token, of how many.
    pub fn with_transferred_tokenizer(self, json: &str) -> Result<(Self, (usize, usize))> {
        let Some(old) = self.tokenizer.clone() else { return Ok((self.with_tokenizer(json)?, (0, 0))) };
        let ck = self.with_tokenizer(json)?;
        let new = ck.tokenizer.as_ref().expect("just set");
        let embed = ck.vs.variables().remove("embed.weight").expect("the model has token embeddings");
        let first = super::tokens::FIRST_TEXT;
        let before = embed.narrow(0, first, ck.model.config.text_vocab).copy();
        let mut whole = 0;
        let n = new.vocab_size();
        tch::no_grad(|| -> Result<()> {
            for id in 0..n as i64 {
                let Some(token) = new.token(id) else { continue };
                let pieces = old.pieces(&token)?;
                whole += usize::from(pieces.len() == 1);
                if !pieces.is_empty() {
                    let rows = tch::Tensor::from_slice(&pieces).to_device(before.device());
                    let mut row = embed.get(first + id);
                    row.copy_(&before.index_select(0, &rows).mean_dim(0, false, before.kind()));
                }
            }
            Ok(())
        })?;
        Ok((ck, (whole, n)))
    }

    /// The model reading the known covariates `names` (column names, in order). A model
    /// pretrained with unnamed covariate slots reads them in its first slots, as pretrained
    /// (slots beyond them are dropped; names beyond the slots get new inputs at zero); a model
    /// without covariates gains a projection for them at zero, so it forecasts exactly as before
    /// until it is trained; a model fine-tuned on named covariates must be given the same names,
    /// or those names then more (the new ones also start at zero: last night's model learns a
    /// covariate added to the pipeline today).
    pub fn with_covariates(self, names: &[String]) -> Result<Self> {
        let c = &self.model.config;
        if c.covariates == names {
            return Ok(self);
        }
        if !c.covariates.is_empty() && !names.starts_with(&c.covariates) {
            return Err(anyhow!("the model reads the covariates [{}], not [{}]", c.covariates.join(", "), names.join(", ")));
        }
        let config = Config { n_covariates: names.len() as i64, covariates: names.to_vec(), ..c.clone() };
        Ok(self.reshaped(config))
    }

    /// This model under another `config` of the same shape but for its covariate inputs:
    /// every weight copied, the covariate projection's first columns from the old one, new
    /// columns at zero.
    pub fn reshaped(self, config: Config) -> Self {
        let ck = Self::init(config, self.vs.device(), 0);
        let old = self.vs.variables();
        tch::no_grad(|| {
            for (name, mut var) in ck.vs.variables() {
                let _ = var.zero_();
                match old.get(&name) {
                    Some(v) if v.size() == var.size() => var.copy_(v),
                    Some(v) if name.starts_with("covariates.") => {
                        let k = v.size()[1].min(var.size()[1]);
                        var.narrow(1, 0, k).copy_(&v.narrow(1, 0, k));
                    }
                    _ => {}
                }
            }
        });
        Self { tokenizer: self.tokenizer, ..ck }
    }

    /// The weight average (1 − `weight`)·self + `weight`·`other` of two checkpoints of one
    /// shape, a "model soup": every weight both have is averaged; weights only self has (covariate
    /// slots `other` lacks) stay self's, and so do self's text embeddings when `other` has no
    /// tokenizer (its text rows were never trained: averaging them in would blur what self read).
    /// Two models with different tokenizers are refused: their text ids mean different words.
    /// Its config and tokenizer are self's.
    pub fn averaged(self, other: &Checkpoint, weight: f64) -> Result<Self> {
        let (a, b) = (&self.model.config, &other.model.config);
        if a.without_covariates() != b.without_covariates() {
            return Err(anyhow!("the two models differ in shape ({a:?} vs {b:?}), so their weights cannot be averaged"));
        }
        let (mine, theirs_tk) = (self.tokenizer_json()?, other.tokenizer_json()?);
        if mine.is_some() && theirs_tk.is_some() && mine != theirs_tk {
            return Err(anyhow!("the two models read text through different tokenizers, so their text embeddings cannot be averaged"));
        }
        // Rows of the token embeddings to average: all, or the value ids and SEP only.
        let rows = if mine.is_some() && theirs_tk.is_none() { super::tokens::FIRST_TEXT } else { a.vocab() };
        let theirs = other.vs.variables();
        tch::no_grad(|| {
            for (name, var) in self.vs.variables() {
                if let Some(v) = theirs.get(&name).filter(|v| v.size() == var.size()) {
                    let (mut var, v) = if name == "embed.weight" {
                        (var.narrow(0, 0, rows), v.narrow(0, 0, rows))
                    } else {
                        (var.shallow_clone(), v.shallow_clone())
                    };
                    let mixed = &var * (1.0 - weight) + v.to_device(var.device()) * weight;
                    var.copy_(&mixed);
                }
            }
        });
        Ok(self)
    }

    /// A series' product text as the model's text ids; None when the model reads no text.
    pub fn text_ids(&self, text: &str) -> Result<Option<Vec<i64>>> {
        self.tokenizer.as_ref().map(|tk| tk.encode(text)).transpose()
    }

    /// The tokenizer's `tokenizer.json` text, if the model has one.
    pub fn tokenizer_json(&self) -> Result<Option<String>> {
        self.tokenizer.as_ref().map(TextTokenizer::to_json).transpose()
    }

    /// Load `dir/config.yaml` and `dir/model.safetensors` onto `device`, as f32.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config = load_config(&dir.join(CONFIG))?;
        let mut ck = Self::init(config, device, 0);
        let weights = dir.join(WEIGHTS);
        if !weights.exists() {
            return Err(anyhow!("{}: no such checkpoint (train one with `restock pretrain`)", weights.display()));
        }
        ck.vs.load(&weights).map_err(|e| anyhow!("{}: not a checkpoint of this config ({e})", weights.display()))?;
        // tch's `load` takes the file's precision: f32 master weights again, or fine-tuning would
        // step bf16 weights (AdamW's small updates lost) and CPUs without bf16 units would crawl.
        ck.vs.float();
        let tokenizer = dir.join(TOKENIZER);
        if tokenizer.exists() {
            let json = std::fs::read_to_string(&tokenizer).with_context(|| format!("reading {}", tokenizer.display()))?;
            ck = ck.with_tokenizer(&json).with_context(|| tokenizer.display().to_string())?;
        }
        Ok(ck)
    }

    /// Write config, weights (as `kind`: bf16 to ship, f32 to resume training without losing
    /// precision) and metrics into `dir` (created if needed). The weights go to a temporary name
    /// first, so a kill never leaves a half-written checkpoint.
    pub fn save(&self, dir: &Path, kind: Kind, metrics: &serde_json::Value) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = serde_saphyr::to_string(&self.model.config).map_err(|e| anyhow!("{e}"))?;
        std::fs::write(dir.join(CONFIG), config).with_context(|| format!("writing {}", dir.join(CONFIG).display()))?;
        let named: Vec<(String, tch::Tensor)> =
            self.vs.variables().into_iter().map(|(k, v)| (k, v.to_kind(kind).to_device(Device::Cpu))).collect();
        let tmp = dir.join(format!(".{WEIGHTS}.tmp"));
        tch::Tensor::write_safetensors(&named, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(WEIGHTS))?;
        std::fs::write(dir.join(METRICS), serde_json::to_vec_pretty(metrics)?)?;
        if let Some(json) = self.tokenizer_json()? {
            std::fs::write(dir.join(TOKENIZER), json)?;
        }
        Ok(())
    }
}

impl Checkpoint {
    /// A checkpoint from a model table's row: its `config.yaml` text and safetensors bytes
    /// (through a private temporary folder, which libtorch's loader needs).
    pub fn from_parts(config_yaml: &str, weights: &[u8], tokenizer: Option<&str>, device: Device) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("restock-model-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let loaded = std::fs::write(dir.join(CONFIG), config_yaml)
            .and_then(|()| std::fs::write(dir.join(WEIGHTS), weights))
            .and_then(|()| tokenizer.map_or(Ok(()), |json| std::fs::write(dir.join(TOKENIZER), json)))
            .map_err(anyhow::Error::from)
            .and_then(|()| Self::load(&dir, device));
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    /// Ready for forecasting: bf16 weights on CUDA (tensor cores, half the memory traffic),
    /// f32 on the CPU, where bf16 matrix products are slower. Explicit bf16 rather than
    /// autocast; RMSNorm statistics and sampling stay in f32.
    pub fn for_inference(mut self) -> Self {
        if self.vs.device().is_cuda() {
            self.vs.bfloat16();
        }
        self
    }

    /// The weights as safetensors bytes (as `kind`): how a trained model travels inside a table.
    pub fn to_bytes(&self, kind: Kind) -> Result<Vec<u8>> {
        let tmp = std::env::temp_dir().join(format!("restock-{}.safetensors", uuid::Uuid::now_v7()));
        let named: Vec<(String, tch::Tensor)> =
            self.vs.variables().into_iter().map(|(k, v)| (k, v.to_kind(kind).to_device(Device::Cpu))).collect();
        tch::Tensor::write_safetensors(&named, &tmp)?;
        let bytes = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        Ok(bytes?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::tokens::SEP;

    /// A new tokenizer's ids get the old model's text embeddings by token text: a token both
    /// vocabularies have keeps its row exactly, one the old lacks gets the mean of its pieces'.
    #[test]
    fn text_embeddings_follow_a_new_tokenizer_by_token_text() {
        let _rng = crate::lm::rng_lock();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml");
        let config = Config { text_vocab: 300, ..load_config(&path).unwrap() };
        let old = TextTokenizer::train(["Limited Edition mug", "Limited Edition tea", "Everyday Staple tea"].into_iter(), 290, 1).unwrap();
        let new = TextTokenizer::train(["Limited Edition hose", "Limited Edition hose", "Garden Limited"].into_iter(), 290, 1).unwrap();
        let ck = Checkpoint::init(config, Device::Cpu, 0).with_tokenizer(&old.to_json().unwrap()).unwrap();
        let row = |ck: &Checkpoint, id: i64| ck.vs.variables()["embed.weight"].get(SEP + 1 + id).copy();
        let (ck_new, (whole, n)) = ck.with_transferred_tokenizer(&new.to_json().unwrap()).unwrap();
        let was = Checkpoint::init(ck_new.model.config.clone(), Device::Cpu, 0).with_tokenizer(&old.to_json().unwrap()).unwrap();
        assert_eq!(n, new.vocab_size());
        assert!(whole > 256 && whole < n, "bytes and shared words are whole tokens of the old: {whole} of {n}");
        let shared = new.encode(" Edition").unwrap();
        assert_eq!(shared.len(), 1);
        assert_eq!(old.pieces(&new.token(shared[0]).unwrap()).unwrap(), old.encode(" Edition").unwrap());
        let before = row(&was, old.encode(" Edition").unwrap()[0]);
        assert!(row(&ck_new, shared[0]).allclose(&before, 0.0, 0.0, false), "a shared token keeps its embedding");
        let hose = new.encode(" hose").unwrap();
        let pieces = old.pieces(&new.token(hose[0]).unwrap()).unwrap();
        assert!(hose.len() == 1 && pieces.len() > 1, "{hose:?} {pieces:?}");
        let mean = tch::Tensor::stack(&pieces.iter().map(|p| row(&was, *p)).collect::<Vec<_>>(), 0).mean_dim(0, false, Kind::Float);
        assert!(row(&ck_new, hose[0]).allclose(&mean, 1e-6, 1e-7, false), "a new word: the mean of its pieces");
        assert_eq!(ck_new.tokenizer_json().unwrap().unwrap(), new.to_json().unwrap());
    }

    /// A soup with a model that never read text keeps the text embeddings of the one that did,
    /// averaging the rest; two tokenizers are refused.
    #[test]
    fn a_soup_keeps_the_text_embeddings_only_one_model_trained() {
        let _rng = crate::lm::rng_lock();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny.yaml");
        let config = Config { text_vocab: 300, ..load_config(&path).unwrap() };
        let tk = TextTokenizer::train(["Limited Edition mug", "Everyday Staple tea"].into_iter(), 280, 1).unwrap();
        let embed = |ck: &Checkpoint| ck.vs.variables()["embed.weight"].copy();
        let a = Checkpoint::init(config.clone(), Device::Cpu, 1).with_tokenizer(&tk.to_json().unwrap()).unwrap();
        let b = Checkpoint::init(config.clone(), Device::Cpu, 2);
        let (ea, eb) = (embed(&a), embed(&b));
        let soup = embed(&a.averaged(&b, 0.5).unwrap());
        let values = SEP + 1;
        assert!(soup.narrow(0, 0, values).allclose(&((ea.narrow(0, 0, values) + eb.narrow(0, 0, values)) * 0.5), 1e-6, 1e-7, false));
        assert!(soup.narrow(0, values, 300).equal(&ea.narrow(0, values, 300)), "the text rows stay the reader's");
        let other = TextTokenizer::train(["Garden hose", "Garden chair"].into_iter(), 270, 1).unwrap();
        let c = Checkpoint::init(config.clone(), Device::Cpu, 3).with_tokenizer(&other.to_json().unwrap()).unwrap();
        let d = Checkpoint::init(config, Device::Cpu, 4).with_tokenizer(&tk.to_json().unwrap()).unwrap();
        let err = d.averaged(&c, 0.5).err().unwrap().to_string();
        assert!(err.contains("different tokenizers"), "{err}");
    }
}
