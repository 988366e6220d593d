//! Text in and out of the baseline: a model folder's `tokenizer.json`, or for random-weight
//! presets a built-in LLaMA-style tokenizer (SentencePiece BPE with byte fallback, no
//! merges) so that no download is ever needed. The built-in one spells text one character
//! per token and turns the ids a random model picks into readable pieces.

use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// A tokenizer plus the BOS id the model expects in front of every prompt.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    bos: Option<u32>,
    /// Where it came from, for reports.
    pub source: String,
}

impl TextCodec {
    /// Load `path` (a `tokenizer.json`).
    pub fn from_file(path: &Path, bos: Option<u32>) -> Result<TextCodec> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(TextCodec {
            tokenizer,
            bos,
            source: path.display().to_string(),
        })
    }

    /// The built-in tokenizer for a vocabulary of `vocab_size` ids (at least 354).
    pub fn builtin(vocab_size: usize, bos: Option<u32>) -> Result<TextCodec> {
        let json = builtin_json(vocab_size)?.to_string();
        let tokenizer: Tokenizer = json
            .parse()
            .map_err(|e| Error::Model(format!("built-in tokenizer: {e}")))?;
        Ok(TextCodec {
            tokenizer,
            bos,
            source: "built-in (byte fallback)".into(),
        })
    }

    /// Prompt ids: BOS (when the model has one) then the text's tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Model(format!("tokenizing a prompt: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Whole-sequence decode (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Model(format!("decoding tokens: {e}")))
    }

    /// An incremental decoder: text appears once it is complete UTF-8 and stable.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream {
            ids: Vec::new(),
            emitted: 0,
            codec: self,
        }
    }
}

/// Incremental detokenization by prefix difference (robust to byte-fallback pieces and to
/// SentencePiece's leading-space rule, which per-token decoding gets wrong).
pub struct TextStream<'a> {
    ids: Vec<u32>,
    emitted: usize,
    codec: &'a TextCodec,
}

impl TextStream<'_> {
    /// Add a token; the new text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.codec.decode(&self.ids)?;
        // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until it completes.
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

const SPECIALS: [&str; 3] = ["<unk>", "<s>", "</s>"];
/// First id after the specials, byte pieces, "▁" and printable ASCII.
const BUILTIN_FIXED: usize = 3 + 256 + 1 + 94;

fn builtin_json(vocab_size: usize) -> Result<Value> {
    if vocab_size < BUILTIN_FIXED {
        return Err(Error::Model(format!(
            "the built-in tokenizer needs a vocabulary of at least {BUILTIN_FIXED}; give a tokenizer.json"
        )));
    }
    let mut vocab = Map::new();
    let mut add = |piece: String| {
        let id = vocab.len();
        vocab.insert(piece, json!(id));
    };
    for s in SPECIALS {
        add(s.to_string());
    }
    for b in 0..=255u8 {
        add(format!("<0x{b:02X}>"));
    }
    add("▁".to_string());
    for c in 0x21u8..=0x7E {
        add((c as char).to_string());
    }
    for id in BUILTIN_FIXED..vocab_size {
        add(format!("▁w{id}"));
    }
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_round_trips_text_and_streams_it_in_order() {
        let c = TextCodec::builtin(32000, Some(1)).expect("tokenizer");
        let text = "Hello, world! Ünïcode ✓";
        let ids = c.encode(text).expect("encode");
        assert_eq!(ids[0], 1);
        assert_eq!(c.decode(&ids[1..]).expect("decode"), text);
        // Non-ASCII characters go through byte pieces: the stream holds them back until
        // their UTF-8 sequence is complete, and the pieces add up to the whole.
        let mut s = c.stream();
        let mut out = String::new();
        for &id in &ids[1..] {
            let piece = s.push(id).expect("push");
            assert!(!piece.contains('\u{FFFD}'));
            out.push_str(&piece);
        }
        assert_eq!(out, text);
        // Ids a random model picks decode to readable pieces.
        assert_eq!(c.decode(&[20000, 20001]).expect("decode"), "w20000 w20001");
        assert!(TextCodec::builtin(100, None).is_err());
    }
}
