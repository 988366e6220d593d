//! Live counters of a run, readable from another thread (the Python side polls them to
//! show progress) without locking the hot path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::record::RequestRecord;

/// Counters updated as requests complete.
#[derive(Debug, Default)]
pub struct Progress {
    /// Index of the stage running now.
    pub stage: AtomicU32,
    /// Concurrency of the stage running now.
    pub batch_size: AtomicU32,
    /// Requests completed successfully in this stage.
    pub ok: AtomicU64,
    /// Requests failed in this stage.
    pub failed: AtomicU64,
    /// Output tokens received in this stage.
    pub tokens: AtomicU64,
    /// Sum of TTFTs in this stage (ns), for a running mean.
    pub ttft_sum_ns: AtomicU64,
    /// Start of this stage on the run clock.
    pub stage_start_ns: AtomicU64,
}

impl Progress {
    /// Reset the per-stage counters at the start of a stage.
    pub fn start_stage(&self, index: u32, batch_size: u32, t: u64) {
        self.stage.store(index, Ordering::Relaxed);
        self.batch_size.store(batch_size, Ordering::Relaxed);
        for c in [&self.ok, &self.failed, &self.tokens, &self.ttft_sum_ns] {
            c.store(0, Ordering::Relaxed);
        }
        self.stage_start_ns.store(t, Ordering::Relaxed);
    }

    /// Count a completed request.
    pub fn record(&self, r: &RequestRecord) {
        if r.ok() {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.tokens.fetch_add(u64::from(r.n_out), Ordering::Relaxed);
            if let Some(f) = r.t_first() {
                self.ttft_sum_ns
                    .fetch_add(f.saturating_sub(r.t_sent), Ordering::Relaxed);
            }
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
