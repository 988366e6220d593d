//! KV-cache arithmetic (docs/architecture.md, "Metrics"): bytes per token from a model's architecture, and the
//! servers' own KV figures turned into tokens and bytes.
//!
//! bytes/token = 2 (K and V) × layers × kv_heads × head_dim × dtype bytes; LLaMA-2-7B in
//! FP16: 2 × 32 × 32 × 128 × 2 = 524,288 B = 512 KiB.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// What the KV cache of a decoder-only transformer depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArch {
    /// A label (preset name or the config's `_name_or_path`/`model_type`).
    pub name: String,
    /// Transformer layers.
    pub layers: u32,
    /// Key/value heads (fewer than attention heads under GQA/MQA).
    pub kv_heads: u32,
    /// Dimension of one head.
    pub head_dim: u32,
    /// Bytes per cached element (2 for FP16/BF16, 1 for FP8, 4 for FP32).
    pub dtype_bytes: u32,
}

/// Architecture presets (public configs of the models named).
pub const PRESETS: &[(&str, u32, u32, u32)] = &[
    // name, layers, kv_heads, head_dim
    ("llama-2-7b", 32, 32, 128),
    ("llama-2-13b", 40, 40, 128),
    ("llama-2-70b", 80, 8, 128),
    ("llama-3-8b", 32, 8, 128),
    ("llama-3-70b", 80, 8, 128),
    ("mistral-7b", 32, 8, 128),
];

impl ModelArch {
    /// Bytes of KV cache per token.
    pub fn bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * u64::from(self.dtype_bytes)
    }

    /// The formula with this model's numbers, for reports.
    pub fn formula(&self) -> String {
        format!(
            "2 × {} layers × {} kv_heads × {} head_dim × {} B = {} B/token",
            self.layers,
            self.kv_heads,
            self.head_dim,
            self.dtype_bytes,
            self.bytes_per_token()
        )
    }

    /// A named preset (FP16 unless `dtype_bytes` says otherwise).
    pub fn preset(name: &str, dtype_bytes: u32) -> Result<ModelArch> {
        let key = name.to_ascii_lowercase();
        PRESETS
            .iter()
            .find(|p| p.0 == key)
            .map(|&(n, layers, kv_heads, head_dim)| ModelArch {
                name: n.to_string(),
                layers,
                kv_heads,
                head_dim,
                dtype_bytes,
            })
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                Error::InvalidArgument(format!(
                    "unknown model preset {name:?}; known: {}, or give a config.json",
                    names.join(", ")
                ))
            })
    }

    /// From a HuggingFace `config.json` value. `dtype_bytes` overrides the config's dtype
    /// (the KV cache dtype can differ from the weights', e.g. FP8 KV).
    pub fn from_config(config: &Value, dtype_bytes: Option<u32>) -> Result<ModelArch> {
        // Multimodal configs nest the language model's settings.
        let c = config.get("text_config").unwrap_or(config);
        let get = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let layers = get("num_hidden_layers")
            .ok_or_else(|| Error::InvalidArgument("config.json has no num_hidden_layers".into()))?;
        let heads = get("num_attention_heads").ok_or_else(|| {
            Error::InvalidArgument("config.json has no num_attention_heads".into())
        })?;
        let kv_heads = get("num_key_value_heads").unwrap_or(heads);
        let head_dim = match get("head_dim") {
            Some(d) => d,
            None => {
                let hidden = get("hidden_size").ok_or_else(|| {
                    Error::InvalidArgument(
                        "config.json has neither head_dim nor hidden_size".into(),
                    )
                })?;
                if heads == 0 || hidden % heads != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
                    )));
                }
                hidden / heads
            }
        };
        let dtype = c
            .get("torch_dtype")
            .or_else(|| c.get("dtype"))
            .or_else(|| config.get("torch_dtype"))
            .and_then(Value::as_str)
            .unwrap_or("float16");
        let from_config = match dtype {
            "float32" => 4,
            "float8_e4m3fn" | "float8_e5m2" => 1,
            _ => 2,
        };
        let name = config
            .get("_name_or_path")
            .or_else(|| config.get("model_type"))
            .and_then(Value::as_str)
            .unwrap_or("config.json")
            .to_string();
        Ok(ModelArch {
            name,
            layers,
            kv_heads,
            head_dim,
            dtype_bytes: dtype_bytes.unwrap_or(from_config),
        })
    }
}

/// Tokens of KV cache in use on vLLM: usage fraction × blocks × tokens per block.
pub fn vllm_kv_tokens(usage_fraction: f64, num_gpu_blocks: u64, block_size: u64) -> f64 {
    usage_fraction * (num_gpu_blocks * block_size) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llama_2_7b_fp16_is_512_kib_per_token() {
        let a = ModelArch::preset("llama-2-7b", 2).expect("preset");
        assert_eq!(a.bytes_per_token(), 524_288);
        assert_eq!(a.bytes_per_token(), 512 * 1024);
        assert!(a.formula().ends_with("= 524288 B/token"));
        // A 4,096-token context: 2 GiB.
        assert_eq!(a.bytes_per_token() * 4096, 2 * 1024 * 1024 * 1024);
    }

    #[test]
    fn from_hf_config_matches_the_preset_and_handles_gqa() {
        // meta-llama/Llama-2-7b-chat-hf config.json (the fields that matter).
        let cfg = json!({"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
                         "num_key_value_heads": 32, "torch_dtype": "float16", "model_type": "llama"});
        let a = ModelArch::from_config(&cfg, None).expect("arch");
        assert_eq!(a.bytes_per_token(), 524_288);
        // Llama-3-8B: GQA with 8 KV heads -> 2 × 32 × 8 × 128 × 2 = 131,072 B.
        let cfg = json!({"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
                         "num_key_value_heads": 8, "torch_dtype": "bfloat16"});
        assert_eq!(
            ModelArch::from_config(&cfg, None)
                .expect("arch")
                .bytes_per_token(),
            131_072
        );
        // FP8 KV cache override halves it.
        assert_eq!(
            ModelArch::from_config(&cfg, Some(1))
                .expect("arch")
                .bytes_per_token(),
            65_536
        );
        assert!(ModelArch::from_config(&json!({"hidden_size": 8}), None).is_err());
        assert!(ModelArch::preset("gpt-5", 2).is_err());
    }

    #[test]
    fn vllm_usage_to_tokens_and_bytes() {
        // The V1 fixture's cache_config_info: 27,153 blocks of 16 tokens. At 25% usage:
        // 0.25 × 434,448 = 108,612 tokens; × 512 KiB = 53.03 GiB for LLaMA-2-7B FP16.
        let tokens = vllm_kv_tokens(0.25, 27_153, 16);
        assert_eq!(tokens, 108_612.0);
        let bytes = tokens * 524_288.0;
        assert!((bytes / (1u64 << 30) as f64 - 53.033_203_125).abs() < 1e-9);
    }
}
