//! Open-loop load: requests sent on an arrival schedule, whatever the server's state.
//!
//! A dedicated pacing thread waits for each scheduled time (sleeping until shortly before
//! it, then spinning: tokio's timer has 1 ms granularity, too coarse at thousands of
//! requests per second) and hands the request to the runtime, which sends it at once.
//! Every record keeps its `t_sched`, so any delay before sending (a busy client, or the
//! optional cap on requests in flight) is measured as send lag, never hidden. With a
//! conversation workload the schedule is of conversations' first turns; each later turn
//! follows its own think time (and the cap counts conversations in flight).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::conversation::{run_conversation, TurnContext};
use super::progress::Progress;
use super::prompts::{PromptOrder, Workload};
use crate::client::stream::{send, RunContext};
use crate::clock::now_ns;
use crate::record::RequestRecord;

/// How long before a deadline the pacer stops sleeping and spins.
const SPIN_NS: u64 = 200_000;

/// One open-loop stage.
#[derive(Debug, Clone)]
pub struct OpenStageSpec {
    /// Stage index in the sweep.
    pub index: u32,
    /// Arrival offsets (ns from the stage start), ascending.
    pub offsets: Vec<u64>,
    /// Optional cap on requests in flight (the wait for a slot is measured as send lag).
    pub max_in_flight: Option<u32>,
    /// A warm-up wave: records flagged as warm-up, kept apart from statistics.
    pub warmup: bool,
    /// Request `j` sends prompt `j` (trace replay) instead of the seeded order.
    pub in_order: bool,
    /// Seed of the conversations' think times.
    pub seed: u64,
    /// Of the schedule's requests `j`, this client sends those with `j % part.1 ==
    /// part.0` (`(0, 1)`: all of them).
    pub part: (u64, u64),
    /// The stage's start on the run clock (the schedule's zero); `None`: now, plus a short
    /// lead.
    pub t0: Option<u64>,
}

/// Wait until `deadline` (run clock, ns): sleep most of the way, spin the rest.
fn wait_until(deadline: u64, stop: &AtomicBool) {
    loop {
        let now = now_ns();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        let left = deadline - now;
        if left > SPIN_NS {
            std::thread::sleep(Duration::from_nanos((left - SPIN_NS).min(50_000_000)));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Run one open-loop stage; every record goes to `records` as it completes.
pub async fn run_open_stage(
    shared: Arc<RunContext>,
    workload: Arc<Workload>,
    order: Arc<PromptOrder>,
    ids: Arc<AtomicU64>,
    spec: OpenStageSpec,
    records: mpsc::UnboundedSender<RequestRecord>,
    progress: Arc<Progress>,
) {
    // A short lead so the first arrival is not already late when the pacer starts.
    let t0 = spec.t0.unwrap_or_else(|| now_ns() + 2_000_000);
    let part = spec.part;
    let offsets = Arc::new(spec.offsets);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
    let pacer = {
        let offsets = offsets.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("llmbench-pacer".into())
            .spawn(move || {
                for (j, off) in offsets.iter().enumerate() {
                    if j as u64 % part.1 != part.0 {
                        continue;
                    }
                    wait_until(t0 + off, &stop);
                    if stop.load(Ordering::Relaxed) || tx.send(j).is_err() {
                        break;
                    }
                }
            })
    };
    let Ok(pacer) = pacer else {
        return;
    };
    let slots = spec
        .max_in_flight
        .map(|n| Arc::new(Semaphore::new(n.max(1) as usize)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let next = tokio::select! {
            j = rx.recv() => j,
            _ = shared.cancel.cancelled() => None,
        };
        let Some(j) = next else { break };
        let shared = shared.clone();
        let workload = workload.clone();
        let order = order.clone();
        let records = records.clone();
        let progress = progress.clone();
        let slots = slots.clone();
        let ids = ids.clone();
        // Ids in schedule order; a conversation numbers its turns as it sends them.
        let id = workload
            .conversations
            .is_none()
            .then(|| ids.fetch_add(1, Ordering::Relaxed));
        let t_sched = t0 + offsets[j];
        tasks.spawn(async move {
            let _permit = match &slots {
                Some(s) => s.clone().acquire_owned().await.ok(),
                None => None,
            };
            if workload.conversations.is_some() {
                let cx = TurnContext {
                    shared: &shared,
                    workload: &workload,
                    ids: &ids,
                    stage: spec.index,
                    batch_size: 0,
                    warmup: spec.warmup,
                    seed: spec.seed,
                    records: &records,
                    progress: &progress,
                };
                let pick = workload.pick(&order, spec.index, j as u64);
                run_conversation(&cx, pick, t_sched).await;
                return;
            }
            let Some(id) = id else { return };
            let prompt_index = if spec.in_order {
                j % workload.prompts.len()
            } else {
                workload.pick(&order, spec.index, j as u64)
            };
            let job = workload.job(id, spec.index, 0, spec.warmup, prompt_index, t_sched);
            let record = send(&shared, job).await;
            progress.record(&record);
            let _ = records.send(record);
        });
        // Reap finished tasks as we go so a long stage does not hold them all.
        while tasks.try_join_next().is_some() {}
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    while tasks.join_next().await.is_some() {}
}
