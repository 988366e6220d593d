//! A LLaMA decoder in candle, written for static batches: left-padded prompts with a
//! padding-aware attention mask and per-row RoPE positions (candle-transformers' LLaMA has
//! neither), a contiguous pre-allocated KV cache that attention reads in place, fused
//! QKV and gate/up projections, and logits for the last position only.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::kv_cache::KvCache;
use candle_nn::Embedding;

use super::config::LlamaShape;
use super::weights::Weights;
use crate::error::{Error, Result};

/// `x @ W^T` on the flattened rows: one GEMM for the whole batch (candle_nn::Linear
/// broadcasts the weight over the batch and runs one GEMM per sequence, reading the
/// weights once per row).
#[derive(Debug, Clone)]
struct Proj {
    weight_t: Tensor,
}

impl Proj {
    fn new(weight: Tensor) -> Result<Proj> {
        Ok(Proj {
            weight_t: weight.t()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let y = x.reshape((b * t, h))?.matmul(&self.weight_t)?;
        Ok(y.reshape((b, t, ()))?)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_norm: Tensor,
    qkv: Proj,
    o: Proj,
    post_norm: Tensor,
    gate_up: Proj,
    down: Proj,
}

/// Where each row of a static batch is: its left padding, and the positions being fed.
#[derive(Debug, Clone)]
pub struct BatchPositions {
    /// Padding tokens at the start of each row.
    pub pads: Vec<usize>,
    /// Tokens already in the cache (the same for every row: the batch moves in lockstep).
    pub offset: usize,
    /// Tokens fed now.
    pub len: usize,
}

impl BatchPositions {
    fn padded(&self) -> bool {
        self.pads.iter().any(|&p| p > 0)
    }

    /// RoPE position of padded index `k` in row `i` (pads sit at 0, like transformers'
    /// `position_ids` from the attention mask).
    fn position(&self, i: usize, k: usize) -> usize {
        k.saturating_sub(self.pads[i])
    }

    /// Additive attention mask `(b, 1, len, offset + len)`, or `None` when a causal mask
    /// is not needed (one new token per row, no padding). A padding query attends to itself
    /// only, so no row of the softmax is all -inf (its output is never used).
    fn mask(&self, dtype: DType, device: &Device) -> Result<Option<Tensor>> {
        if self.len == 1 && !self.padded() {
            return Ok(None);
        }
        let b = self.pads.len();
        let total = self.offset + self.len;
        let mut m = vec![0f32; b * self.len * total];
        for (i, &pad) in self.pads.iter().enumerate() {
            for q in 0..self.len {
                let qk = self.offset + q;
                let row = &mut m[(i * self.len + q) * total..][..total];
                for (k, cell) in row.iter_mut().enumerate() {
                    let visible = k <= qk && (k >= pad || k == qk);
                    if !visible {
                        *cell = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let t = Tensor::from_vec(m, (b, 1, self.len, total), device)?;
        Ok(Some(t.to_dtype(dtype)?))
    }
}

/// The KV cache of a batch: one contiguous K and V buffer per layer, allocated for the
/// batch's whole length at the first step.
pub struct Cache {
    layers: Vec<KvCache>,
}

impl Cache {
    /// Bytes held by the cache tensors (allocated, whether filled yet or not).
    pub fn allocated_bytes(&self) -> u64 {
        let mut bytes = 0u64;
        for c in &self.layers {
            for t in [c.k_cache().all_data(), c.v_cache().all_data()]
                .into_iter()
                .flatten()
            {
                bytes += (t.elem_count() * t.dtype().size_in_bytes()) as u64;
            }
        }
        bytes
    }

    /// Tokens per row the cache holds now (padding included).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .map(|c| c.current_seq_len())
            .unwrap_or(0)
    }

    /// Nothing cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model.
pub struct Llama {
    shape: LlamaShape,
    dtype: DType,
    device: Device,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Proj,
    cos: Tensor,
    sin: Tensor,
}

impl Llama {
    /// Build from checked weights.
    pub fn new(shape: LlamaShape, mut w: Weights, dtype: DType, device: &Device) -> Result<Llama> {
        let embed_w = w.take("model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for l in 0..shape.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut t = |n: &str| w.take(&format!("{p}.{n}.weight"));
            let (q, k, v) = (
                t("self_attn.q_proj")?,
                t("self_attn.k_proj")?,
                t("self_attn.v_proj")?,
            );
            let (gate, up) = (t("mlp.gate_proj")?, t("mlp.up_proj")?);
            layers.push(Layer {
                input_norm: t("input_layernorm")?,
                qkv: Proj::new(Tensor::cat(&[&q, &k, &v], 0)?)?,
                o: Proj::new(t("self_attn.o_proj")?)?,
                post_norm: t("post_attention_layernorm")?,
                gate_up: Proj::new(Tensor::cat(&[&gate, &up], 0)?)?,
                down: Proj::new(t("mlp.down_proj")?)?,
            });
        }
        let lm_head = if shape.tie_word_embeddings {
            embed_w.clone()
        } else {
            w.take("lm_head.weight")?
        };
        let (cos, sin) = rope_tables(&shape, dtype, device)?;
        Ok(Llama {
            embed: Embedding::new(embed_w, shape.hidden_size),
            norm: w.take("model.norm.weight")?,
            lm_head: Proj::new(lm_head)?,
            layers,
            cos,
            sin,
            dtype,
            device: device.clone(),
            shape,
        })
    }

    /// The model's shape.
    pub fn shape(&self) -> &LlamaShape {
        &self.shape
    }

    /// The run dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for a batch whose rows will hold at most `max_len` tokens each.
    pub fn new_cache(&self, max_len: usize) -> Result<Cache> {
        if max_len > self.shape.max_position_embeddings {
            return Err(Error::InvalidArgument(format!(
                "{max_len} tokens per sequence exceed the model's max_position_embeddings {}",
                self.shape.max_position_embeddings
            )));
        }
        Ok(Cache {
            layers: (0..self.shape.num_hidden_layers)
                .map(|_| KvCache::new(2, max_len))
                .collect(),
        })
    }

    /// Feed `tokens` (`b × len`, u32) at `pos`, appending to `cache`. Returns logits
    /// `(b, vocab)` of the last position, or `(b, len, vocab)` when `all_logits`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        pos: &BatchPositions,
        cache: &mut Cache,
        all_logits: bool,
    ) -> Result<Tensor> {
        let (b, len) = tokens.dims2()?;
        if cache.len() != pos.offset || len != pos.len || b != pos.pads.len() {
            return Err(Error::Model(format!(
                "internal: batch positions {pos:?} do not match tokens {b}x{len} and cache {}",
                cache.len()
            )));
        }
        let (cos, sin) = self.rope_at(pos)?;
        let mask = pos.mask(self.dtype, &self.device)?;
        let mut x = self.embed.forward(tokens)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = self.block(layer, &x, &cos, &sin, mask.as_ref(), kv)?;
        }
        let x = if all_logits {
            x
        } else {
            x.narrow(1, len - 1, 1)?.contiguous()?
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.shape.rms_norm_eps as f32)?;
        let logits = self.lm_head.forward(&x)?;
        Ok(if all_logits {
            logits
        } else {
            logits.squeeze(1)?
        })
    }

    /// cos/sin for the positions fed now: one table slice when every row shares positions,
    /// else one row of positions per sequence.
    fn rope_at(&self, pos: &BatchPositions) -> Result<(Tensor, Tensor)> {
        if !pos.padded() {
            return Ok((
                self.cos.narrow(0, pos.offset, pos.len)?,
                self.sin.narrow(0, pos.offset, pos.len)?,
            ));
        }
        let b = pos.pads.len();
        let ids: Vec<u32> = (0..b)
            .flat_map(|i| (0..pos.len).map(move |q| (i, pos.offset + q)))
            .map(|(i, k)| pos.position(i, k) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, b * pos.len, &self.device)?;
        let half = self.shape.head_dim / 2;
        let cos = self
            .cos
            .index_select(&ids, 0)?
            .reshape((b, pos.len, half))?;
        let sin = self
            .sin
            .index_select(&ids, 0)?
            .reshape((b, pos.len, half))?;
        Ok((cos, sin))
    }

    fn block(
        &self,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        kv: &mut KvCache,
    ) -> Result<Tensor> {
        let s = &self.shape;
        let eps = s.rms_norm_eps as f32;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (s.num_attention_heads, s.num_key_value_heads, s.head_dim);
        let h = candle_nn::ops::rms_norm(x, &layer.input_norm, eps)?;
        let qkv = layer.qkv.forward(&h)?;
        let heads = |from: usize, n: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, from * hd, n * hd)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = candle_nn::rotary_emb::rope(&heads(0, nh)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&heads(nh, nkv)?, cos, sin)?;
        let v = heads(nh + nkv, nkv)?;
        let (k, v) = kv.append(&k, &v)?;
        let total = k.dim(2)?;
        // Grouped-query attention without copying K/V: the query heads that share a KV head
        // become extra query rows of that head.
        let rep = nh / nkv;
        let q = (q * (1.0 / (hd as f64).sqrt()))?.reshape((b, nkv, rep * t, hd))?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores
                .reshape((b, nkv, rep, t, total))?
                .broadcast_add(&mask.unsqueeze(1)?)?
                .reshape((b, nkv, rep * t, total))?;
        }
        // candle's softmax kernel accumulates half-precision inputs in f32, as transformers'
        // eager attention does by upcasting: no cast kernels needed.
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let attn = probs
            .matmul(&v)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let x = (x + layer.o.forward(&attn)?)?;
        let h = candle_nn::ops::rms_norm(&x, &layer.post_norm, eps)?;
        let gu = layer.gate_up.forward(&h)?;
        let i = s.intermediate_size;
        let act =
            (candle_nn::ops::silu(&gu.narrow(D::Minus1, 0, i)?)? * gu.narrow(D::Minus1, i, i)?)?;
        Ok((x + layer.down.forward(&act)?)?)
    }
}

/// RoPE tables `(max_positions, head_dim / 2)` as transformers computes them (f32, then
/// the run dtype).
fn rope_tables(s: &LlamaShape, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = s.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (s.rope_theta as f32).powf(2.0 * i as f32 / s.head_dim as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let n = s.max_position_embeddings;
    let t = Tensor::arange(0u32, n as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
}
