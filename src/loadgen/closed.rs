//! Closed-loop load: N requests in flight (the seed workflow's "batch size"). Each of N
//! workers sends its next request as soon as its previous one ends; `t_sched` is the moment
//! the slot freed, so client-side delay before sending shows up as send lag. With a
//! conversation workload the N workers are N conversations in flight: each runs a whole
//! conversation, then starts the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::conversation::{run_conversation, TurnContext};
use super::progress::Progress;
use super::prompts::{PromptOrder, Workload};
use crate::client::stream::{send, RunContext};
use crate::clock::now_ns;
use crate::record::RequestRecord;

/// One closed-loop stage.
#[derive(Debug, Clone, Copy)]
pub struct StageSpec {
    /// Stage index in the sweep.
    pub index: u32,
    /// The stage's batch size (what its records carry).
    pub batch_size: u32,
    /// Requests this client keeps in flight: the batch size, or a worker's part of it.
    pub streams: u32,
    /// Of the stage's requests `j`, this client sends those with `j % part.1 == part.0`
    /// (`(0, 1)`: all of them).
    pub part: (u64, u64),
    /// Requests to send in the stage (stop starting new ones after this many); with a
    /// conversation workload, conversations.
    pub requests: u64,
    /// Stop starting new requests after this many seconds (if set).
    pub duration_s: Option<f64>,
    /// A warm-up wave: records flagged as warm-up, kept apart from statistics.
    pub warmup: bool,
    /// Seed of the conversations' think times.
    pub seed: u64,
}

/// Run one stage; every record is sent to `records` as it completes.
pub async fn run_stage(
    shared: Arc<RunContext>,
    workload: Arc<Workload>,
    order: Arc<PromptOrder>,
    ids: Arc<AtomicU64>,
    spec: StageSpec,
    records: mpsc::UnboundedSender<RequestRecord>,
    progress: Arc<Progress>,
) {
    let started = now_ns();
    let stop_at = spec.duration_s.map(|d| started + (d.max(0.0) * 1e9) as u64);
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.streams.max(1) {
        let shared = shared.clone();
        let workload = workload.clone();
        let order = order.clone();
        let ids = ids.clone();
        let issued = issued.clone();
        let records = records.clone();
        let progress = progress.clone();
        workers.spawn(async move {
            let mut t_sched = started;
            loop {
                if shared.cancel.is_cancelled() || stop_at.is_some_and(|s| now_ns() >= s) {
                    break;
                }
                let j = spec.part.0 + spec.part.1 * issued.fetch_add(1, Ordering::Relaxed);
                if j >= spec.requests {
                    break;
                }
                let pick = workload.pick(&order, spec.index, j);
                if workload.conversations.is_some() {
                    let cx = TurnContext {
                        shared: &shared,
                        workload: &workload,
                        ids: &ids,
                        stage: spec.index,
                        batch_size: spec.batch_size,
                        warmup: spec.warmup,
                        seed: spec.seed,
                        records: &records,
                        progress: &progress,
                    };
                    if !run_conversation(&cx, pick, t_sched).await {
                        break;
                    }
                    t_sched = now_ns();
                    continue;
                }
                let prompt_index = pick;
                let job = workload.job(
                    ids.fetch_add(1, Ordering::Relaxed),
                    spec.index,
                    spec.batch_size,
                    spec.warmup,
                    prompt_index,
                    t_sched,
                );
                let record = send(&shared, job).await;
                t_sched = now_ns();
                progress.record(&record);
                if records.send(record).is_err() {
                    break;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}
