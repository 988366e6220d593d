//! The naive baseline: a LLaMA in candle, in process, with static batching and a contiguous
//! KV cache: what "just call generate()" gets you, without wasted work. It is measured in
//! process ([`bench`]) and served over HTTP ([`serve`]) so the same load generator measures
//! it beside vLLM and TGI.

pub mod bench;
pub mod config;
pub mod generate;
pub mod memory;
pub mod model;
pub mod recorder;
pub mod serve;
pub mod tokenizer;
pub mod weights;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Result;
use config::{dtype_name, parse_device, parse_dtype, LlamaShape};
use model::Llama;
use tokenizer::TextCodec;
use weights::Weights;

/// Which model to load and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A HuggingFace LLaMA folder or a preset name (`tiny`, `llama-2-7b`, `llama-2-13b`).
    pub model: String,
    /// "float16", "bfloat16" or "float32"; default float32 on CPU, float16 on CUDA.
    #[serde(default)]
    pub dtype: Option<String>,
    /// "cpu", "cuda" or "cuda:N".
    #[serde(default = "default_device")]
    pub device: String,
    /// Seed of random preset weights.
    #[serde(default)]
    pub seed: u64,
    /// A `tokenizer.json` (default: the model folder's, or the built-in one for presets).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

fn default_device() -> String {
    "cpu".into()
}

impl ModelSpec {
    /// The model folder, or `None` for a preset name.
    pub fn folder(&self) -> Option<PathBuf> {
        let dir = PathBuf::from(&self.model);
        dir.is_dir().then_some(dir)
    }

    /// The architecture: the folder's `config.json` or the preset's.
    pub fn shape(&self) -> Result<LlamaShape> {
        match self.folder() {
            Some(dir) => LlamaShape::from_dir(&dir),
            None if self.model.contains('/') || self.model.contains('\\') => Err(
                crate::error::Error::Model(format!("model folder {} does not exist", self.model)),
            ),
            None => LlamaShape::preset(&self.model),
        }
    }

    /// The dtype asked for; by default float16 on CUDA, float32 elsewhere.
    pub fn dtype(&self) -> Result<DType> {
        match &self.dtype {
            Some(d) => parse_dtype(d),
            None if self.device.starts_with("cuda") => Ok(DType::F16),
            None => Ok(DType::F32),
        }
    }

    /// The tokenizer: the one given, the folder's `tokenizer.json`, or the built-in one.
    pub fn codec(&self, shape: &LlamaShape) -> Result<TextCodec> {
        let path = self.tokenizer.clone().or_else(|| {
            let p = self.folder()?.join("tokenizer.json");
            p.exists().then_some(p)
        });
        match path {
            Some(p) => TextCodec::from_file(&p, shape.bos_token_id),
            None => TextCodec::builtin(shape.vocab_size, shape.bos_token_id),
        }
    }
}

/// A loaded baseline: model, tokenizer and what it is.
pub struct Baseline {
    pub model: Llama,
    pub codec: TextCodec,
    /// The name requests must use (the preset name or the folder path).
    pub name: String,
    pub load_s: f64,
}

impl Baseline {
    /// Load a folder or build a preset.
    pub fn load(spec: &ModelSpec) -> Result<Baseline> {
        let t0 = std::time::Instant::now();
        let device = parse_device(&spec.device)?;
        let dtype = spec.dtype()?;
        let shape = spec.shape()?;
        let weights = match spec.folder() {
            Some(dir) => Weights::load(&dir, &shape, dtype, &device)?,
            None => Weights::random(&shape, dtype, &device, spec.seed)?,
        };
        let codec = spec.codec(&shape)?;
        let model = Llama::new(shape, weights, dtype, &device)?;
        synchronize(&device)?;
        Ok(Baseline {
            name: spec.model.clone(),
            model,
            codec,
            load_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// What the baseline is, for manifests and `/info`.
    pub fn describe(&self) -> Value {
        let mut about = describe_model(
            &self.name,
            self.model.shape(),
            self.model.dtype(),
            &self.codec.source,
        );
        about["engine"] = json!("candle");
        about["candle_version"] = json!("0.11");
        about["device"] = json!(device_name(self.model.device()));
        about["load_s"] = json!(self.load_s);
        about
    }
}

/// What any engine of the baseline runs, for manifests and `/info`: the model, its shape
/// and dtype, the tokenizer and the KV-cache formula. Each engine adds its own name,
/// version, device and load time.
pub fn describe_model(name: &str, shape: &LlamaShape, dtype: DType, tokenizer: &str) -> Value {
    let arch = shape.arch(dtype);
    json!({
        "server": "llmbench-baseline",
        "model": name,
        "shape": shape,
        "parameters": shape.parameters(),
        "dtype": dtype_name(dtype),
        "tokenizer": tokenizer,
        "kv_bytes_per_token": arch.bytes_per_token(),
        "kv_formula": arch.formula(),
        "batching": "static",
    })
}

/// "cpu" or "cuda:N".
pub fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Wait for queued device work (timings must not stop before the GPU does).
pub fn synchronize(d: &Device) -> Result<()> {
    d.synchronize()?;
    Ok(())
}
