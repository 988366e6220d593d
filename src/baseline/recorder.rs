//! The baseline study's bookkeeping, whichever engine generates: which prompts each static
//! batch gets, every row turned into the load generator's request record (written to disk
//! as soon as its batch ends), and each stage's summary with the baseline-only columns.
//! Candle's run ([`super::bench`]) and the transformers engine (driven from Python through
//! `_core.BaselineStudy`) both go through it, so the two engines' columns come from the same
//! code and compare like for like.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::bench::BaselineRun;
use super::config::LlamaShape;
use super::generate::{BatchOutput, BatchRequest, Finish, SamplingParams};
use super::tokenizer::TextCodec;
use crate::error::{Error, Result};
use crate::loadgen::prompts::PromptOrder;
use crate::loadgen::{StageResult, SweepOutput};
use crate::metrics::{Cell, Pricing, StageStats, Summary};
use crate::record::{Chunks, ErrorKind, RequestRecord, ServerTimes, TokenSource};
use crate::record_file::{RecordKeeper, RecordSink};

/// The stage index warm-up batches draw their prompts under (no measured stage has it).
pub const WARMUP_STAGE: u32 = u32::MAX;

/// The prompts as token ids: text through the model's tokenizer, ids as given, or seeded
/// random prompts of exactly `prompt_tokens` tokens (BOS included).
pub fn prompt_ids(
    run: &BaselineRun,
    shape: &LlamaShape,
    codec: &TextCodec,
) -> Result<Vec<Vec<u32>>> {
    let prompts = match (&run.prompts, &run.prompt_ids, run.prompt_tokens) {
        (Some(texts), None, None) => texts
            .iter()
            .map(|t| codec.encode(t))
            .collect::<Result<Vec<_>>>()?,
        (None, Some(ids), None) => ids.clone(),
        (None, None, Some(n)) if n > 0 => {
            // Ids drawn from the ordinary vocabulary (past the specials and byte pieces).
            let vocab = shape.vocab_size as u32;
            let low = 259.min(vocab - 1);
            let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
            (0..64)
                .map(|_| {
                    let mut p: Vec<u32> = shape.bos_token_id.into_iter().collect();
                    while p.len() < n {
                        p.push(rng.random_range(low..vocab));
                    }
                    p
                })
                .collect()
        }
        _ => {
            return Err(Error::InvalidArgument(
                "give exactly one of prompts, prompt_ids or prompt_tokens (> 0)".into(),
            ))
        }
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(Error::InvalidArgument(
            "no prompts, or an empty prompt".into(),
        ));
    }
    Ok(prompts)
}

/// Records and summaries of one in-process study.
pub struct StudyRecorder {
    run: BaselineRun,
    prompts: Vec<Vec<u32>>,
    order: PromptOrder,
    bytes_per_token: u64,
    keeper: RecordKeeper,
    /// The current measured stage's summary, fed as its batches end.
    current: StageStats,
    stages: Vec<StageResult>,
    next_id: u64,
    /// The current stage's measured batches.
    stage_batches: Vec<BatchOutput>,
    /// Peak GPU memory used during the current stage, when the engine can read it.
    gpu_peak: Option<u64>,
    t_start_ns: u64,
}

impl StudyRecorder {
    /// Check the run's settings and open its record file (before any model time is spent).
    pub fn new(
        run: &BaselineRun,
        prompts: Vec<Vec<u32>>,
        bytes_per_token: u64,
        t_start_ns: u64,
    ) -> Result<StudyRecorder> {
        if run.batch_sizes.is_empty() || run.batch_sizes.contains(&0) {
            return Err(Error::InvalidArgument(
                "batch sizes must be positive".into(),
            ));
        }
        let sink = run
            .records_path
            .as_deref()
            .map(RecordSink::create)
            .transpose()?;
        Ok(StudyRecorder {
            order: PromptOrder::new(prompts.len(), run.seed),
            run: run.clone(),
            prompts,
            bytes_per_token,
            keeper: RecordKeeper::new(sink),
            current: StageStats::new(run.pricing, None),
            stages: Vec::new(),
            next_id: 0,
            stage_batches: Vec::new(),
            gpu_peak: None,
            t_start_ns,
        })
    }

    /// The run's settings.
    pub fn run(&self) -> &BaselineRun {
        &self.run
    }

    /// Batch `k` of size `b` in `stage` ([`WARMUP_STAGE`] for warm-up): which prompts
    /// (their indices) and what to generate. Each row samples from its own stream (seed +
    /// row), the same in every run and in both engines.
    pub fn batch(&self, b: u32, stage: u32, k: u32) -> (Vec<usize>, BatchRequest) {
        let idx: Vec<usize> = (0..u64::from(b))
            .map(|j| self.order.index(stage, u64::from(k) * u64::from(b) + j))
            .collect();
        let n = b as usize;
        let req = BatchRequest {
            prompts: idx.iter().map(|&i| self.prompts[i].clone()).collect(),
            max_new_tokens: vec![self.run.max_new_tokens as usize; n],
            ignore_eos: vec![self.run.ignore_eos; n],
            sampling: (0..u64::from(b))
                .map(|i| SamplingParams {
                    seed: self.run.sampling.seed.wrapping_add(i),
                    ..self.run.sampling
                })
                .collect(),
        };
        (idx, req)
    }

    /// Start a measured stage: what follows counts towards its summary.
    pub fn begin_stage(&mut self) {
        self.current = StageStats::new(self.run.pricing, None);
        self.stage_batches.clear();
        self.gpu_peak = None;
    }

    /// GPU memory in use, read while a batch held its KV cache.
    pub fn gpu_used(&mut self, bytes: u64) {
        self.gpu_peak = Some(self.gpu_peak.unwrap_or(0).max(bytes));
    }

    /// A finished batch: its rows become records, on disk at once.
    pub fn record(&mut self, out: BatchOutput, idx: &[usize], stage: u32, warmup: bool) {
        for r in records_of(&out, &self.prompts, idx, &mut self.next_id, stage, warmup) {
            if !warmup {
                self.current.add(&r);
            }
            self.keeper.keep(r);
        }
        if !warmup {
            self.stage_batches.push(out);
        }
    }

    /// Close a measured stage of batch size `b`: its summary, with the baseline columns.
    pub fn end_stage(&mut self, stage: u32, b: u32, interrupted: bool) {
        // Every record of the stage on disk before it counts as done.
        self.keeper.flush();
        let stats = std::mem::replace(&mut self.current, StageStats::new(self.run.pricing, None));
        let mut summary = stats.finish();
        add_baseline_columns(
            &mut summary,
            &self.stage_batches,
            b,
            self.bytes_per_token,
            self.gpu_peak,
            self.run.pricing,
        );
        self.stages.push(StageResult {
            index: stage,
            batch_size: b,
            target_rate: None,
            summary,
            interrupted,
        });
    }

    /// Everything measured, as the load generator's output (`server_info` describes the
    /// engine).
    pub fn finish(self, server_info: Value, interrupted: bool) -> SweepOutput {
        let (records, write_error) = self.keeper.finish();
        SweepOutput {
            records,
            stages: self.stages,
            server_info,
            warnings: write_error.iter().cloned().collect(),
            interrupted,
            t_start_ns: self.t_start_ns,
            records_error: write_error,
        }
    }
}

/// The peak resident set of this process (the engine runs in it).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
                conversation: None,
                turn: None,
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
                // The generator's own times: no queue in process (the batch starts when
                // its requests are sent), prefill to the first token, decode after it.
                server_times: ServerTimes {
                    queue_us: Some(0),
                    prefill_us: row.times.first().map(|&t| us_between(out.t_start, t)),
                    decode_us: row
                        .times
                        .first()
                        .zip(row.times.last())
                        .map(|(&a, &b)| us_between(a, b)),
                },
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

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Baseline-only columns: prefill and decode timing of the batches, KV-cache bytes from
/// the cache tensors and from the KV-cache formula (docs/architecture.md, "Metrics") (they
/// must agree), memory.
fn add_baseline_columns(
    summary: &mut Summary,
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
    let put = |s: &mut Summary, n: &str, v: f64| s.insert(n, Cell::Num(v));
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

/// Microseconds from `a` to `b` (ns on one clock), saturating.
fn us_between(a: u64, b: u64) -> u32 {
    u32::try_from(b.saturating_sub(a) / 1000).unwrap_or(u32::MAX)
}
