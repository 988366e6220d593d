//! Static-batch generation: left-pad the prompts, one prefill, then one decode step per
//! token for the whole batch in lockstep until every row is done (rows that finish early
//! keep their slot: that is what static batching costs, and the baseline shows it).

use candle_core::{DType, Tensor, D};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

use super::model::{BatchPositions, Llama};
use crate::clock::now_ns;
use crate::error::{Error, Result};

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 or absent: greedy (argmax).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: u64,
}

impl SamplingParams {
    fn greedy(&self) -> bool {
        self.temperature.is_none_or(|t| t <= 0.0)
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// It produced its token budget.
    Length,
    /// It produced an end-of-sequence token (not counted as output).
    Stop,
    /// The caller stopped the batch (every client went away).
    Cancelled,
}

impl Finish {
    /// The OpenAI `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Stop => "stop",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// What one row produced: its tokens, each with the time its id reached the host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowOutput {
    pub tokens: Vec<u32>,
    pub times: Vec<u64>,
    pub finish: Finish,
}

/// What a batch produced and cost (also what the transformers engine hands over).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOutput {
    pub rows: Vec<RowOutput>,
    /// When generation started (before the prompts were copied to the device).
    pub t_start: u64,
    /// When the prefill's tokens reached the host.
    pub t_prefill_done: u64,
    /// When the last step ended.
    pub t_end: u64,
    /// Prompt length after left padding.
    pub padded_len: usize,
    /// Decode steps run after the prefill.
    pub decode_steps: usize,
    /// Bytes held by the KV-cache tensors.
    pub kv_bytes_allocated: u64,
    /// Tokens per row the cache was sized for.
    pub kv_tokens_per_row: usize,
}

/// A batch to generate.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRequest {
    /// Prompt token ids per row (non-empty).
    pub prompts: Vec<Vec<u32>>,
    /// Output budget per row.
    pub max_new_tokens: Vec<usize>,
    /// Per row: generate the full budget even past end-of-sequence tokens.
    pub ignore_eos: Vec<bool>,
    /// Per row: how to pick tokens.
    pub sampling: Vec<SamplingParams>,
}

/// Generate a static batch. `on_step(row_tokens)` is called after the prefill and after
/// each decode step with the `(row, token)` pairs produced by rows still running; when it
/// returns `false` the batch stops (rows still running end as `Cancelled`).
pub fn generate(
    model: &Llama,
    req: &BatchRequest,
    mut on_step: impl FnMut(&[(usize, u32)], u64) -> bool,
) -> Result<BatchOutput> {
    let b = req.prompts.len();
    if b == 0
        || req.max_new_tokens.len() != b
        || req.ignore_eos.len() != b
        || req.sampling.len() != b
    {
        return Err(Error::InvalidArgument(
            "a batch needs one or more prompts, each with a token budget, EOS rule and sampling"
                .into(),
        ));
    }
    if let Some(i) = req.prompts.iter().position(Vec::is_empty) {
        return Err(Error::InvalidArgument(format!("prompt {i} has no tokens")));
    }
    let vocab = model.shape().vocab_size as u32;
    if let Some(bad) = req.prompts.iter().flatten().find(|&&t| t >= vocab) {
        return Err(Error::InvalidArgument(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}"
        )));
    }
    let device = model.device();
    let padded_len = req.prompts.iter().map(Vec::len).max().unwrap_or(0);
    let max_new = req.max_new_tokens.iter().copied().max().unwrap_or(0).max(1);
    let kv_tokens_per_row = padded_len + max_new - 1;
    let mut cache = model.new_cache(kv_tokens_per_row)?;
    // The cache is allocated whole at the first step: say now if it cannot fit (before the
    // clock starts, so the check is never part of a measured time).
    super::memory::check_model_kv_fits(model, b, kv_tokens_per_row)?;
    let t_start = now_ns();
    let pads: Vec<usize> = req.prompts.iter().map(|p| padded_len - p.len()).collect();
    let pad_id = model.shape().eos_token_ids.first().copied().unwrap_or(0);
    let mut flat = Vec::with_capacity(b * padded_len);
    for (p, &pad) in req.prompts.iter().zip(&pads) {
        flat.extend(std::iter::repeat_n(pad_id, pad));
        flat.extend_from_slice(p);
    }
    let greedy = req.sampling.iter().all(SamplingParams::greedy);
    let mut samplers: Vec<LogitsProcessor> = req
        .sampling
        .iter()
        .map(|s| {
            let sampling = match (s.temperature, s.top_p) {
                (Some(t), Some(p)) if t > 0.0 && p < 1.0 => Sampling::TopP { p, temperature: t },
                (Some(t), _) if t > 0.0 => Sampling::All { temperature: t },
                _ => Sampling::ArgMax,
            };
            LogitsProcessor::from_sampling(s.seed, sampling)
        })
        .collect();
    let eos = &model.shape().eos_token_ids;
    let mut rows: Vec<RowOutput> = (0..b)
        .map(|i| RowOutput {
            tokens: Vec::with_capacity(req.max_new_tokens[i]),
            times: Vec::with_capacity(req.max_new_tokens[i]),
            finish: Finish::Length,
        })
        .collect();
    let mut running: Vec<bool> = req.max_new_tokens.iter().map(|&n| n > 0).collect();

    let mut input = Tensor::from_vec(flat, (b, padded_len), device)?;
    let mut pos = BatchPositions {
        pads,
        offset: 0,
        len: padded_len,
    };
    let mut t_prefill_done = 0;
    let mut decode_steps = 0;
    let mut produced = Vec::with_capacity(b);
    loop {
        let logits = model.forward(&input, &pos, &mut cache, false)?;
        let next = pick(&logits, greedy, &mut samplers)?;
        let t = now_ns();
        if pos.offset == 0 {
            t_prefill_done = t;
        } else {
            decode_steps += 1;
        }
        produced.clear();
        for (i, &tok) in next.iter().enumerate() {
            if !running[i] {
                continue;
            }
            if !req.ignore_eos[i] && eos.contains(&tok) {
                running[i] = false;
                rows[i].finish = Finish::Stop;
                continue;
            }
            rows[i].tokens.push(tok);
            rows[i].times.push(t);
            produced.push((i, tok));
            if rows[i].tokens.len() >= req.max_new_tokens[i] {
                running[i] = false;
            }
        }
        if !on_step(&produced, t) {
            for (i, r) in rows.iter_mut().enumerate() {
                if running[i] {
                    r.finish = Finish::Cancelled;
                }
            }
            break;
        }
        if !running.iter().any(|&r| r) {
            break;
        }
        pos.offset += pos.len;
        pos.len = 1;
        input = Tensor::from_vec(next, (b, 1), device)?;
    }
    Ok(BatchOutput {
        rows,
        t_start,
        t_prefill_done,
        t_end: now_ns(),
        padded_len,
        decode_steps,
        kv_bytes_allocated: cache.allocated_bytes(),
        kv_tokens_per_row,
    })
}

/// The next token of every row: one argmax on the device for greedy decoding, else the
/// logits copied to the host once and sampled per row.
fn pick(logits: &Tensor, greedy: bool, samplers: &mut [LogitsProcessor]) -> Result<Vec<u32>> {
    if greedy {
        return Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
    }
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.into_iter()
        .zip(samplers.iter_mut())
        .map(|(row, s)| {
            let n = row.len();
            let t = Tensor::from_vec(row, n, &candle_core::Device::Cpu)?;
            Ok(s.sample(&t)?)
        })
        .collect()
}
