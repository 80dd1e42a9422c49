//! Product text as tokens: a byte-level BPE trained in-process with Hugging Face's `tokenizers`
//! on the catalog and review text, saved as a standard `tokenizer.json` (Python's `tokenizers`
//! reads it and gives the same ids).
use std::collections::HashSet;

use anyhow::{Result, anyhow};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer, TokenizerImpl};

/// A trained text tokenizer.
#[derive(Clone)]
pub struct TextTokenizer(Tokenizer);

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({} ids)", self.vocab_size())
    }
}

/// The id unknown bytes never need (byte-level BPE covers every byte) but which keeps id 0 fixed.
pub const UNK: &str = "<unk>";

impl TextTokenizer {
    /// Train a byte-level BPE with at most `vocab_size` ids; merges seen fewer than
    /// `min_frequency` times are not learned.
    pub fn train<'a>(texts: impl Iterator<Item = &'a str> + Send, vocab_size: usize, min_frequency: u64) -> Result<Self> {
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .initial_alphabet(alphabet)
            .special_tokens(vec![AddedToken::from(UNK, true)])
            .build();
        let mut tk: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevelDecoder> = TokenizerImpl::new(BPE::default());
        // No prefix space: decoding gives back exactly the text that was encoded.
        tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_post_processor(Some(ByteLevel::default()))
            .with_decoder(Some(ByteLevelDecoder::default()));
        tk.train(&mut trainer, texts).map_err(|e| anyhow!("training the tokenizer: {e}"))?;
        Ok(Self(tk.into()))
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.0.to_string(false).map_err(|e| anyhow!("serialising the tokenizer: {e}"))
    }

    pub fn from_json(json: &str) -> Result<Self> {
        json.parse::<Tokenizer>().map(Self).map_err(|e| anyhow!("not a tokenizer.json: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.0.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.0.encode(text, false).map_err(|e| anyhow!("tokenizing text: {e}"))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// The ids that another byte-level BPE's token `token` (its byte-level form, e.g. "ĠLimited")
    /// has in this vocabulary: the same token where this one has it, else its BPE pieces here.
    pub fn pieces(&self, token: &str) -> Result<Vec<i64>> {
        if let Some(id) = self.0.token_to_id(token) {
            return Ok(vec![id as i64]);
        }
        let tokens = tokenizers::Model::tokenize(self.0.get_model(), token).map_err(|e| anyhow!("splitting {token:?}: {e}"))?;
        Ok(tokens.iter().map(|t| t.id as i64).collect())
    }

    /// An id's token in its byte-level form.
    pub fn token(&self, id: i64) -> Option<String> {
        self.0.id_to_token(id as u32)
    }

    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.0.decode(&ids, true).map_err(|e| anyhow!("decoding ids: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_round_trips_and_reloads_from_json() {
        let _rng = crate::lm::rng_lock();
        let texts = ["Organic green tea, 20 bags", "Green tea with mint, 40 bags", "Black tea — Earl Grey, 20 bags", "Ceramic mug 350 ml"];
        let tk = TextTokenizer::train(texts.iter().copied(), 300, 2).unwrap();
        assert!(tk.vocab_size() > 256 && tk.vocab_size() <= 300, "{}", tk.vocab_size());
        let ids = tk.encode("Green tea, 20 bags — café").unwrap();
        assert_eq!(tk.decode(&ids).unwrap(), "Green tea, 20 bags — café", "byte-level: any text round-trips");
        let again = TextTokenizer::from_json(&tk.to_json().unwrap()).unwrap();
        assert_eq!(again.encode("Green tea, 20 bags — café").unwrap(), ids);
        assert!(ids.len() < "Green tea, 20 bags — café".len(), "merges learned from repeated words");
        assert!(TextTokenizer::from_json("{}").is_err());
    }
}
