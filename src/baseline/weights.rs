//! Where the baseline's weights come from: a HuggingFace LLaMA folder (one or more
//! `*.safetensors` shards) or seeded random weights of a shape's exact sizes (random
//! weights of the right shape cost exactly the same compute as trained ones).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::LlamaShape;
use crate::error::{Error, Result};

/// Every weight the model reads, by its HuggingFace name, with its shape.
pub fn expected(shape: &LlamaShape) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (shape.hidden_size, shape.intermediate_size, shape.vocab_size);
    let q = shape.num_attention_heads * shape.head_dim;
    let kv = shape.num_key_value_heads * shape.head_dim;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..shape.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !shape.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

/// Weights by name, already checked against the shape, in the run dtype on the device.
pub struct Weights(HashMap<String, Tensor>);

impl Weights {
    /// Take one weight out (each is used once, by the layer that owns it).
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0
            .remove(name)
            .ok_or_else(|| Error::Model(format!("weights: missing tensor {name}")))
    }

    /// Load every `*.safetensors` shard in `dir`, check names and shapes, convert to
    /// `dtype` and move to `device`.
    pub fn load(dir: &Path, shape: &LlamaShape, dtype: DType, device: &Device) -> Result<Weights> {
        let mut shards: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::Model(format!("cannot read model folder {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            let has_bin = dir.join("pytorch_model.bin").exists();
            return Err(Error::Model(format!(
                "no *.safetensors files in {}{}",
                dir.display(),
                if has_bin {
                    " (pytorch_model.bin is not supported: convert it to safetensors)"
                } else {
                    ""
                }
            )));
        }
        let mut all = HashMap::new();
        for shard in &shards {
            // Loaded on the host first: a shard read straight onto the GPU would keep its
            // original dtype there next to the converted copy.
            let tensors = candle_core::safetensors::load(shard, &Device::Cpu)
                .map_err(|e| Error::Model(format!("cannot load {}: {e}", shard.display())))?;
            all.extend(tensors);
        }
        let mut out = HashMap::new();
        for (name, dims) in expected(shape) {
            let t = all.remove(&name).ok_or_else(|| {
                Error::Model(format!(
                    "weights in {}: missing tensor {name} (is this a LLaMA checkpoint?)",
                    dir.display()
                ))
            })?;
            if t.dims() != dims.as_slice() {
                return Err(Error::Model(format!(
                    "weights in {}: {name} has shape {:?} but config.json implies {:?}",
                    dir.display(),
                    t.dims(),
                    dims
                )));
            }
            out.insert(name, t.to_dtype(dtype)?.to_device(device)?);
        }
        Ok(Weights(out))
    }

    /// Seeded random weights: N(0, 0.02) like transformers' `initializer_range`, norms at 1.
    /// On CUDA the device's generator is seeded; on the CPU a ChaCha stream is used (candle's
    /// CPU generator cannot be seeded).
    pub fn random(shape: &LlamaShape, dtype: DType, device: &Device, seed: u64) -> Result<Weights> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if device.is_cuda() {
            device.set_seed(seed)?;
        }
        let normal = Normal::new(0.0f32, 0.02).map_err(|e| Error::Model(e.to_string()))?;
        let mut out = HashMap::new();
        for (name, dims) in expected(shape) {
            let t = if dims.len() == 1 {
                Tensor::ones(dims, dtype, device)?
            } else if device.is_cuda() {
                Tensor::randn(0f32, 0.02, dims, device)?.to_dtype(dtype)?
            } else {
                let n: usize = dims.iter().product();
                let data: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
                Tensor::from_vec(data, dims, device)?.to_dtype(dtype)?
            };
            out.insert(name, t);
        }
        Ok(Weights(out))
    }
}
