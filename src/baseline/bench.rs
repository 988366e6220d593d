//! The baseline measured in process (no HTTP): one stage per batch size, each a number of
//! static batches, every row turned into the same request record the load generator
//! writes, so `summarize_stage` gives the same columns and the baseline sits in one table
//! and one plot with the served targets. Baseline-only columns (prefill time, decode rate,
//! KV-cache bytes exact and by formula, memory) are appended to each stage's summary.

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::generate::{generate, BatchOutput, BatchRequest, Finish, SamplingParams};
use super::{synchronize, Baseline, ModelSpec};
use crate::error::{Error, Result};
use crate::loadgen::prompts::PromptOrder;
use crate::loadgen::{StageResult, SweepOutput};
use crate::metrics::{summarize_stage, Cell, Pricing};
use crate::record::{Chunks, ErrorKind, RequestRecord, TokenSource};
use crate::sink::RecordSink;

/// An in-process baseline run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRun {
    pub model: ModelSpec,
    #[serde(default = "default_batch_sizes")]
    pub batch_sizes: Vec<u32>,
    /// Static batches measured per batch size.
    #[serde(default = "one")]
    pub batches_per_stage: u32,
    /// Text prompts (tokenized with the model's tokenizer) ...
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// ... or prompts as token ids ...
    #[serde(default)]
    pub prompt_ids: Option<Vec<Vec<u32>>>,
    /// ... or seeded random prompts of exactly this many tokens (BOS included).
    #[serde(default)]
    pub prompt_tokens: Option<usize>,
    #[serde(default = "default_new_tokens")]
    pub max_new_tokens: u32,
    /// Generate the whole budget past end-of-sequence (fixed output length).
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    #[serde(default)]
    pub sampling: SamplingParams,
    /// Unmeasured batches at the first batch size (CUDA kernels load lazily).
    #[serde(default = "one")]
    pub warmup_batches: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub pricing: Pricing,
    #[serde(default)]
    pub records_path: Option<PathBuf>,
}

fn default_batch_sizes() -> Vec<u32> {
    vec![1, 8, 32]
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_new_tokens() -> u32 {
    128
}

/// The prompts as token ids.
fn prompt_ids(run: &BaselineRun, b: &Baseline) -> Result<Vec<Vec<u32>>> {
    match (&run.prompts, &run.prompt_ids, run.prompt_tokens) {
        (Some(texts), None, None) => texts.iter().map(|t| b.codec.encode(t)).collect(),
        (None, Some(ids), None) => Ok(ids.clone()),
        (None, None, Some(n)) if n > 0 => {
            // Ids drawn from the ordinary vocabulary (past the specials and byte pieces).
            let vocab = b.model.shape().vocab_size as u32;
            let low = 259.min(vocab - 1);
            let bos = b.model.shape().bos_token_id;
            let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
            Ok((0..64)
                .map(|_| {
                    let mut p: Vec<u32> = bos.into_iter().collect();
                    while p.len() < n {
                        p.push(rng.random_range(low..vocab));
                    }
                    p
                })
                .collect())
        }
        _ => Err(Error::InvalidArgument(
            "give exactly one of prompts, prompt_ids or prompt_tokens (> 0)".into(),
        )),
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// GPU memory used on the model's device, read through NVML (when there is a GPU).
struct GpuMemory {
    nvml: Option<(nvml_wrapper::Nvml, u32)>,
}

impl GpuMemory {
    fn new(b: &Baseline) -> GpuMemory {
        let nvml = match b.model.device().location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => crate::telemetry::nvml::open()
                .ok()
                .map(|n| (n, gpu_id as u32)),
            _ => None,
        };
        GpuMemory { nvml }
    }

    fn used(&self) -> Option<u64> {
        let (nvml, id) = self.nvml.as_ref()?;
        nvml.device_by_index(*id)
            .ok()?
            .memory_info()
            .ok()
            .map(|m| m.used)
    }
}

/// One record per row of a batch.
fn records_of(
    out: &BatchOutput,
    prompts: &[Vec<u32>],
    idx: &[usize],
    next_id: &mut u64,
    stage: u32,
    warmup: bool,
) -> Vec<RequestRecord> {
    let b = out.rows.len() as u32;
    out.rows
        .iter()
        .zip(idx)
        .map(|(row, &pi)| {
            let id = *next_id;
            *next_id += 1;
            let empty = row.tokens.is_empty();
            let cancelled = row.finish == Finish::Cancelled;
            RequestRecord {
                id,
                stage,
                batch_size: b,
                warmup,
                prompt_index: pi as u32,
                t_sched: out.t_start,
                t_sent: out.t_start,
                t_headers: None,
                t_done: row.times.last().copied().unwrap_or(out.t_end),
                chunks: Chunks::from_parts(&row.times, &vec![1; row.tokens.len()]),
                chunk_token_source: TokenSource::Model,
                n_in: Some(prompts[pi].len() as u32),
                n_in_source: TokenSource::Model,
                n_out: row.tokens.len() as u32,
                n_out_source: TokenSource::Model,
                finish_reason: Some(row.finish.as_str().to_string()),
                http_status: None,
                error_kind: if cancelled {
                    Some(ErrorKind::Cancelled)
                } else if empty {
                    Some(ErrorKind::EmptyOutput)
                } else {
                    None
                },
                error: (empty && !cancelled)
                    .then(|| "the model produced end-of-sequence first".to_string()),
            }
        })
        .collect()
}

/// Run the in-process study. Cancellation stops at the next decode step; what was
/// measured is returned.
pub fn run(config: &BaselineRun, cancel: &CancellationToken) -> Result<SweepOutput> {
    if config.batch_sizes.is_empty() || config.batch_sizes.contains(&0) {
        return Err(Error::InvalidArgument(
            "batch sizes must be positive".into(),
        ));
    }
    let t_start_ns = crate::clock::now_ns();
    let baseline = Baseline::load(&config.model)?;
    let prompts = prompt_ids(config, &baseline)?;
    if prompts.is_empty() {
        return Err(Error::InvalidArgument("no prompts".into()));
    }
    let order = PromptOrder::new(prompts.len(), config.seed);
    let mut sink = match &config.records_path {
        Some(p) => Some(RecordSink::open(p)?),
        None => None,
    };
    let arch = baseline.model.shape().arch(baseline.model.dtype());
    let mut records: Vec<RequestRecord> = Vec::new();
    let mut stages = Vec::new();
    let mut next_id = 0u64;
    let mut interrupted = false;
    let new_tokens = config.max_new_tokens as usize;
    let batch = |b: u32, stage: u32, k: u32| -> (Vec<usize>, BatchRequest) {
        let idx: Vec<usize> = (0..u64::from(b))
            .map(|j| order.index(stage, u64::from(k) * u64::from(b) + j))
            .collect();
        let req = BatchRequest {
            prompts: idx.iter().map(|&i| prompts[i].clone()).collect(),
            max_new_tokens: vec![new_tokens; b as usize],
            ignore_eos: vec![config.ignore_eos; b as usize],
            // Each row its own sampler stream (seed + row), the same in every run.
            sampling: (0..u64::from(b))
                .map(|i| SamplingParams {
                    seed: config.sampling.seed.wrapping_add(i),
                    ..config.sampling
                })
                .collect(),
        };
        (idx, req)
    };
    let gpu = GpuMemory::new(&baseline);
    let gpu_peak: std::cell::Cell<Option<u64>> = std::cell::Cell::new(None);
    // After each batch's prefill the KV cache is allocated whole: read GPU memory then
    // (once per batch, off the decode steps).
    let generate_batch = |req: &BatchRequest| -> Result<BatchOutput> {
        let mut first = true;
        generate(&baseline.model, req, |_, _| {
            if first {
                first = false;
                if let Some(u) = gpu.used() {
                    gpu_peak.set(Some(gpu_peak.get().unwrap_or(0).max(u)));
                }
            }
            !cancel.is_cancelled()
        })
    };

    'stages: for (si, &b) in config.batch_sizes.iter().enumerate() {
        let stage = si as u32;
        if si == 0 {
            for k in 0..config.warmup_batches {
                let (idx, req) = batch(b, u32::MAX, k);
                let out = generate_batch(&req)?;
                for r in records_of(&out, &prompts, &idx, &mut next_id, stage, true) {
                    if let Some(s) = sink.as_mut() {
                        s.write(&r);
                    }
                    records.push(r);
                }
                if cancel.is_cancelled() {
                    interrupted = true;
                    break 'stages;
                }
            }
        }
        let first_measured = records.len();
        gpu_peak.set(None);
        let mut outs = Vec::new();
        for k in 0..config.batches_per_stage {
            if cancel.is_cancelled() {
                interrupted = true;
                break;
            }
            let (idx, req) = batch(b, stage, k);
            let out = generate_batch(&req)?;
            for r in records_of(&out, &prompts, &idx, &mut next_id, stage, false) {
                if let Some(s) = sink.as_mut() {
                    s.write(&r);
                }
                records.push(r);
            }
            outs.push(out);
        }
        synchronize(baseline.model.device())?;
        let stage_records: Vec<&RequestRecord> = records[first_measured..].iter().collect();
        let mut summary = summarize_stage(&stage_records, config.pricing);
        add_baseline_columns(
            &mut summary,
            &outs,
            b,
            arch.bytes_per_token(),
            gpu_peak.get(),
            config.pricing,
        );
        stages.push(StageResult {
            index: stage,
            batch_size: b,
            target_rate: None,
            summary,
            interrupted: cancel.is_cancelled(),
        });
        if cancel.is_cancelled() {
            interrupted = true;
            break;
        }
    }
    let mut warnings = Vec::new();
    if let Some(e) = sink.as_ref().and_then(|s| s.error()) {
        warnings.push(e.to_string());
    }
    Ok(SweepOutput {
        records,
        stages,
        server_info: json!({"baseline": baseline.describe()}),
        warnings,
        interrupted,
        t_start_ns,
    })
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Baseline-only columns: prefill and decode timing of the batches, KV-cache bytes from
/// the cache tensors and from the KV-cache formula (docs/architecture.md, "Metrics") (they must agree), memory.
fn add_baseline_columns(
    summary: &mut crate::metrics::Summary,
    outs: &[BatchOutput],
    b: u32,
    bytes_per_token: u64,
    gpu_peak: Option<u64>,
    pricing: Pricing,
) {
    let ms = |a: u64, z: u64| z.saturating_sub(a) as f64 / 1e6;
    let prefill = mean(outs.iter().map(|o| ms(o.t_start, o.t_prefill_done)));
    let decode_step = mean(
        outs.iter()
            .filter(|o| o.decode_steps > 0)
            .map(|o| ms(o.t_prefill_done, o.t_end) / o.decode_steps as f64),
    );
    // Decode rate: every row makes one token per step.
    let decode_tok_s = f64::from(b) * 1000.0 / decode_step;
    let batch_s = mean(outs.iter().map(|o| ms(o.t_start, o.t_end) / 1000.0));
    let total_tok_s = mean(outs.iter().map(|o| {
        let toks: usize = o.rows.iter().map(|r| r.tokens.len()).sum();
        toks as f64 / (ms(o.t_start, o.t_end) / 1000.0)
    }));
    let kv_exact = outs.iter().map(|o| o.kv_bytes_allocated).max().unwrap_or(0);
    let kv_tokens = outs.iter().map(|o| o.kv_tokens_per_row).max().unwrap_or(0) as u64;
    let kv_formula = bytes_per_token * u64::from(b) * kv_tokens;
    let gib = |x: f64| x / f64::from(1u32 << 30);
    let put = |s: &mut crate::metrics::Summary, n: &str, v: f64| s.insert(n, Cell::Num(v));
    put(summary, "prefill_ms", prefill);
    put(summary, "decode_step_ms", decode_step);
    put(summary, "decode_tok_s", decode_tok_s);
    put(summary, "batch_output_tok_s", total_tok_s);
    put(summary, "batch_s", batch_s);
    put(
        summary,
        "usd_per_1m_decode_tokens",
        pricing.usd_per_1m(decode_tok_s),
    );
    summary.insert(
        "padded_prompt_len",
        Cell::Int(outs.iter().map(|o| o.padded_len).max().unwrap_or(0) as u64),
    );
    summary.insert("kv_cache_tokens_per_row", Cell::Int(kv_tokens));
    summary.insert("kv_cache_bytes", Cell::Int(kv_exact));
    summary.insert("kv_cache_formula_bytes", Cell::Int(kv_formula));
    put(summary, "kv_cache_gib", gib(kv_exact as f64));
    if let Some(rss) = rss_bytes() {
        put(summary, "host_rss_peak_gib", gib(rss as f64));
    }
    if let Some(used) = gpu_peak {
        put(summary, "gpu_mem_used_gib", gib(used as f64));
    }
}
