//! Known-answer tests of a worker's share of a distributed stage (`SweepConfig.share`):
//! the workers' shares, run one after another against the scripted server, send exactly
//! the single-process stage's requests (closed loop: the same prompts, each worker's
//! streams at once; open loop: the same scheduled offsets), and a share starts at its
//! agreed instant.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::loadgen::progress::Progress;
use crate::loadgen::{run_sweep, SweepConfig, SweepOutput};

fn config(url: &str, extra: Value) -> SweepConfig {
    let mut base = json!({
        "target": {"url": url, "model": "llmbench-sim", "api": "completions"},
        "batch_sizes": [1, 6],
        "requests_per_stage": 20,
        "max_tokens": 4,
        "prompts": (0..7).map(|i| format!("prompt {i}")).collect::<Vec<_>>(),
        "seed": 5,
        "warmup_requests": 0,
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::from_value(base).expect("config")
}

async fn run(c: SweepConfig) -> SweepOutput {
    run_sweep(c, CancellationToken::new(), Arc::new(Progress::default()))
        .await
        .expect("sweep")
}

/// Prompt index → how many requests sent it, per stage.
fn prompts_by_stage(out: &[&SweepOutput]) -> BTreeMap<(u32, u32), usize> {
    let mut m = BTreeMap::new();
    for o in out {
        for r in o.records.iter().filter(|r| !r.warmup) {
            *m.entry((r.stage, r.prompt_index)).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_shares_send_exactly_the_single_process_stage() {
    let server = SimServer::start(SimConfig::default(), "127.0.0.1", 0)
        .await
        .expect("start");
    let url = server.url();
    let one = run(config(&url, json!({}))).await;
    // Stage 1 (batch 6) over 4 workers: 2, 2, 1, 1 streams.
    let mut shares = Vec::new();
    for (worker, streams) in [2u32, 2, 1, 1].into_iter().enumerate() {
        let share =
            json!({"share": {"worker": worker, "workers": 4, "streams": streams, "stage": 1}});
        shares.push(run(config(&url, share)).await);
    }
    let union = prompts_by_stage(&shares.iter().collect::<Vec<_>>());
    let single: BTreeMap<_, _> = prompts_by_stage(&[&one])
        .into_iter()
        .filter(|((stage, _), _)| *stage == 1)
        .collect();
    assert_eq!(union, single);
    for (worker, out) in shares.iter().enumerate() {
        // Requests j with j % 4 == worker of the stage's 20; each record carries the
        // sweep's stage and batch size, and only the one stage ran.
        let want = (0..20).filter(|j| j % 4 == worker).count();
        assert_eq!(out.records.len(), want, "worker {worker}");
        assert!(out
            .records
            .iter()
            .all(|r| r.stage == 1 && r.batch_size == 6));
        assert_eq!(out.stages.len(), 1);
        assert_eq!(out.stages[0].index, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_shares_deal_out_the_one_schedule_from_the_agreed_start() {
    let server = SimServer::start(SimConfig::default(), "127.0.0.1", 0)
        .await
        .expect("start");
    let url = server.url();
    let open = json!({"open_loop": {"rates": [200.0, 400.0]}, "requests_per_stage": 30});
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    // The agreed instant on the run clock too, read together with the system clock (the
    // two may drift apart over a process's life; not over half a second).
    let start_mono = crate::clock::now_ns() + 500_000_000;
    let start_at = unix_now + 500_000_000;
    // Stage 1's schedule: 400 req/s from the sweep's seed plus the stage index.
    let schedule = crate::loadgen::arrival::schedule(
        &crate::loadgen::arrival::Arrival::Poisson { rate: 400.0 },
        Some(30),
        None,
        5 + 1,
    )
    .expect("schedule");
    let mut offsets = Vec::new();
    for worker in 0..3u32 {
        let mut extra = open.clone();
        extra["share"] =
            json!({"worker": worker, "workers": 3, "stage": 1, "start_at_unix_ns": start_at});
        if worker > 0 {
            // Later workers have missed the instant: they start at once and say so in
            // their send lag, never by moving the schedule.
            extra["share"]["start_at_unix_ns"] = json!(unix_now);
        }
        let out = run(config(&url, extra)).await;
        assert_eq!(out.records.len(), 10, "30 requests over 3 workers");
        let t0 = out
            .records
            .iter()
            .map(|r| r.t_sched)
            .min()
            .expect("records");
        if worker == 0 {
            // Worker 0's first request is the schedule's first: the start plus its offset.
            let late = t0 as i64 - (start_mono + schedule[0]) as i64;
            assert!(
                late.abs() < 5_000_000,
                "started {late} ns from the agreed instant"
            );
        }
        offsets.push(
            out.records
                .iter()
                .map(|r| r.t_sched - t0)
                .collect::<Vec<u64>>(),
        );
    }
    for (worker, got) in offsets.iter().enumerate() {
        let mine: Vec<u64> = schedule
            .iter()
            .enumerate()
            .filter(|(j, _)| j % 3 == worker)
            .map(|(_, o)| *o)
            .collect();
        let base = mine[0];
        let mut got = got.clone();
        got.sort_unstable();
        let want: Vec<u64> = mine.iter().map(|o| o - base).collect();
        assert_eq!(
            got, want,
            "worker {worker}: its part of the schedule, exactly"
        );
    }
}
