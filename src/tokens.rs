//! Client-side token counting with a HuggingFace `tokenizer.json`, used only where the
//! server reports no usage (design §3: a fallback, recorded as such).

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

    /// Number of tokens in `text`, without special tokens (BOS/EOS).
    pub fn count(&self, text: &str) -> u32 {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len() as u32)
            .unwrap_or(0)
    }
}
