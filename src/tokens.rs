//! Client-side token counting with a HuggingFace `tokenizer.json`, used only where the
//! server reports no usage (a fallback, recorded as such: docs/architecture.md, "The request record").

use std::path::Path;

use crate::error::{Error, Result};

/// Counts tokens in text with a loaded tokenizer.
pub struct TokenCounter {
    tokenizer: tokenizers::Tokenizer,
}

impl TokenCounter {
    /// Load a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                detail: "no such file (give the path of a tokenizer.json)".into(),
            });
        }
        let tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(TokenCounter { tokenizer })
    }

    /// A prompt of exactly `n_tokens` tokens (without special tokens) made of words drawn
    /// from `words` with a seeded generator: words are added while they fit, then single
    /// short filler words top it up. `None` if no exact fit was found.
    pub fn synthetic_prompt(&self, n_tokens: u32, words: &[&str], seed: u64) -> Option<String> {
        use rand::{Rng, SeedableRng};
        if words.is_empty() {
            return None;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut text = String::new();
        let mut count = 0;
        // Grow word by word; a candidate that overshoots is skipped (a few tries).
        let mut misses = 0;
        while count < n_tokens && misses < 50 {
            let w = words[rng.random_range(0..words.len())];
            let candidate = if text.is_empty() {
                w.to_string()
            } else {
                format!("{text} {w}")
            };
            let c = self.count(&candidate);
            if c <= n_tokens {
                text = candidate;
                count = c;
                misses = 0;
            } else {
                misses += 1;
            }
        }
        for filler in [" a", " I", " 1", ".", ","] {
            while count < n_tokens {
                let candidate = format!("{text}{filler}");
                let c = self.count(&candidate);
                if c == count + 1 {
                    text = candidate;
                    count = c;
                } else {
                    break;
                }
            }
        }
        (count == n_tokens).then_some(text)
    }

    /// Number of tokens in `text`, without special tokens (BOS/EOS).
    pub fn count(&self, text: &str) -> u32 {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len() as u32)
            .unwrap_or(0)
    }
}
