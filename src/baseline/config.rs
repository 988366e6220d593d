//! What the baseline model is: a LLaMA architecture from a HuggingFace `config.json` or a
//! named preset, and the dtype and device it runs in.

use std::path::Path;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::telemetry::kv::ModelArch;

/// A LLaMA-family decoder's shape (the fields of HuggingFace's `LlamaConfig` that matter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaShape {
    /// A label: the preset name or the model folder.
    pub name: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// The presets: public configs of the models named, and `tiny`, which runs fast on two CPU
/// cores (GQA on purpose, so the grouped path is exercised everywhere).
pub const PRESET_NAMES: [&str; 3] = ["tiny", "llama-2-7b", "llama-2-13b"];

impl LlamaShape {
    /// A named preset.
    pub fn preset(name: &str) -> Result<LlamaShape> {
        let (hidden, inter, layers, heads, kv, vocab) = match name.to_ascii_lowercase().as_str() {
            "tiny" => (256, 688, 4, 8, 4, 32000),
            "llama-2-7b" => (4096, 11008, 32, 32, 32, 32000),
            "llama-2-13b" => (5120, 13824, 40, 40, 40, 32000),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown baseline preset {name:?}; known: {}, or a HuggingFace LLaMA folder",
                    PRESET_NAMES.join(", ")
                )))
            }
        };
        Ok(LlamaShape {
            name: name.to_ascii_lowercase(),
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: hidden / heads,
            vocab_size: vocab,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        })
    }

    /// From a HuggingFace `config.json`. Anything this LLaMA implementation would compute
    /// differently from transformers is refused rather than silently run.
    pub fn from_config(config: &Value, name: &str) -> Result<LlamaShape> {
        let bad = |msg: String| Error::Model(format!("{name}/config.json: {msg}"));
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if model_type != "llama" {
            return Err(bad(format!(
                "model_type {model_type:?} is not supported; the baseline runs LLaMA (\"llama\") models"
            )));
        }
        if config.get("rope_scaling").is_some_and(|v| !v.is_null()) {
            return Err(bad("rope_scaling is not supported (plain RoPE only)".into()));
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if config.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(bad(format!("{flag}=true is not supported")));
            }
        }
        if let Some(act) = config.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(bad(format!(
                    "hidden_act {act:?} is not supported (silu only)"
                )));
            }
        }
        let get = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let need = |k: &str| get(k).ok_or_else(|| bad(format!("missing {k}")));
        let hidden = need("hidden_size")?;
        let heads = need("num_attention_heads")?;
        let kv = get("num_key_value_heads").unwrap_or(heads);
        if heads == 0 || kv == 0 || heads % kv != 0 {
            return Err(bad(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
            )));
        }
        let head_dim = match get("head_dim") {
            Some(d) => d,
            None if hidden % heads == 0 => hidden / heads,
            None => {
                return Err(bad(
                    "hidden_size is not a multiple of num_attention_heads".into()
                ))
            }
        };
        let ids = |k: &str| -> Vec<u32> {
            match config.get(k) {
                Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_u64().map(|v| v as u32))
                    .collect(),
                _ => Vec::new(),
            }
        };
        Ok(LlamaShape {
            name: name.to_string(),
            hidden_size: hidden,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            vocab_size: need("vocab_size")?,
            max_position_embeddings: get("max_position_embeddings").unwrap_or(4096),
            rms_norm_eps: config
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta: config
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            tie_word_embeddings: config
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
        })
    }

    /// Read `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<LlamaShape> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", path.display())))?;
        LlamaShape::from_config(&value, &dir.display().to_string())
    }

    /// The KV-cache view of this shape at `dtype` (the formula of docs/architecture.md,
    /// "Metrics").
    pub fn arch(&self, dtype: DType) -> ModelArch {
        ModelArch {
            name: self.name.clone(),
            layers: self.num_hidden_layers as u32,
            kv_heads: self.num_key_value_heads as u32,
            head_dim: self.head_dim as u32,
            dtype_bytes: dtype.size_in_bytes() as u32,
        }
    }

    /// Parameters, for reports (embeddings and head counted once each; tied counts one).
    pub fn parameters(&self) -> u64 {
        let (h, i, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        let layer = h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + head + h + layer * self.num_hidden_layers as u64
    }
}

/// "float16"/"fp16", "bfloat16"/"bf16", "float32"/"fp32".
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "float16" | "fp16" | "f16" | "half" => Ok(DType::F16),
        "bfloat16" | "bf16" => Ok(DType::BF16),
        "float32" | "fp32" | "f32" | "float" => Ok(DType::F32),
        other => Err(Error::InvalidArgument(format!(
            "unknown dtype {other:?}; use float16, bfloat16 or float32"
        ))),
    }
}

/// The dtype's name as transformers spells it.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
        _ => "other",
    }
}

/// "cpu", "cuda" or "cuda:N".
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.as_str() {
        "cuda" => Some(0),
        _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()),
    };
    match ordinal {
        Some(i) if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(i)?),
        Some(_) => Err(Error::Model(
            "this build of llmbench has no CUDA support; build it with `make build-cuda` \
             (cargo feature `cuda`)"
                .into(),
        )),
        None => Err(Error::InvalidArgument(format!(
            "unknown device {s:?}; use cpu, cuda or cuda:N"
        ))),
    }
}
