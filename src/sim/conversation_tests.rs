//! Known-answer tests of conversations: the history each turn carries (against a server
//! whose every token names its request), think times, and the scripted prefix cache's hit
//! counts and per-turn TTFT.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::loadgen::progress::Progress;
use crate::loadgen::{run_sweep, SweepConfig};
use crate::record::RequestRecord;

fn conversations(n: usize, turns: usize, words: usize, max_tokens: u32) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|c| {
            let turns: Vec<String> = (0..turns)
                .map(|k| {
                    (0..words)
                        .map(|w| format!("c{c}t{k}w{w}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            json!({"turns": turns, "max_tokens": vec![max_tokens; turns.len()]})
        })
        .collect();
    json!({"items": items, "think_time_s": 0.02})
}

fn config(url: &str, api: Api, batch: u32, convs: Value) -> SweepConfig {
    serde_json::from_value(json!({
        "target": {"url": url, "model": "llmbench-sim", "api": api},
        "batch_sizes": [batch],
        "requests_per_stage": convs["items"].as_array().map_or(0, Vec::len),
        "prompts": ["warm up"],
        "warmup_requests": 0,
        "conversations": convs,
        "seed": 3,
    }))
    .expect("config")
}

/// Run a sweep; its output and the server's truth by request id.
async fn sweep(
    server: &SimServer,
    config: SweepConfig,
) -> (crate::loadgen::SweepOutput, BTreeMap<u64, TruthRecord>) {
    let out = run_sweep(
        config,
        CancellationToken::new(),
        Arc::new(Progress::default()),
    )
    .await
    .expect("sweep");
    let truth = server
        .take_truth()
        .into_iter()
        .map(|t| (t.request_id.expect("id"), t))
        .collect();
    (out, truth)
}

/// The stage's records grouped by conversation, each in turn order.
fn by_conversation(records: &[RequestRecord]) -> BTreeMap<u64, Vec<&RequestRecord>> {
    let mut out: BTreeMap<u64, Vec<&RequestRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.warmup) {
        out.entry(r.conversation.expect("a turn"))
            .or_default()
            .push(r);
    }
    for turns in out.values_mut() {
        turns.sort_by_key(|r| r.turn);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_turn_carries_the_answers_the_server_streamed_in_order() {
    let cfg = SimConfig {
        ttft_ms: 5.0,
        itl_ms: 1.0,
        name_tokens: true,
        record_truth: true,
        ..SimConfig::default()
    };
    let server = SimServer::start(cfg, "127.0.0.1", 0).await.expect("start");
    for api in [Api::Chat, Api::Completions, Api::Tgi] {
        let (out, truth) = sweep(
            &server,
            config(&server.url(), api, 2, conversations(3, 3, 4, 5)),
        )
        .await;
        let convs = by_conversation(&out.records);
        assert_eq!(convs.len(), 3, "{api:?}: three conversations");
        for turns in convs.values() {
            assert_eq!(turns.len(), 3, "{api:?}: every turn sent");
            for (k, r) in turns.iter().enumerate() {
                assert!(r.ok(), "{api:?}: {:?}", r.error);
                assert_eq!(r.turn, Some(k as u32));
                assert_eq!(r.conversation, Some(turns[0].id), "the first turn's id");
                // The answers of the earlier turns, as this server streamed them: every
                // token names the request that produced it.
                let answers: Vec<String> = turns[..k]
                    .iter()
                    .map(|p| format!(" r{}", p.id).repeat(5))
                    .collect();
                let sent = &truth[&r.id].prompt;
                match api {
                    Api::Chat => {
                        let msgs = sent.as_array().expect("messages");
                        assert_eq!(msgs.len(), 2 * k + 1, "{api:?}: user, answer, …, user");
                        for (j, a) in answers.iter().enumerate() {
                            assert_eq!(msgs[2 * j + 1]["role"], "assistant");
                            assert_eq!(msgs[2 * j + 1]["content"], a.as_str());
                        }
                    }
                    _ => {
                        let text = sent.as_str().expect("one prompt");
                        let mut at = 0;
                        for a in &answers {
                            let found = text[at..].find(a.as_str()).expect("answer in order");
                            at += found + a.len();
                        }
                        assert_eq!(text.matches(" r").count(), 5 * k, "no other answer");
                    }
                }
                if k > 0 {
                    let prev = turns[k - 1];
                    assert!(
                        r.t_sent >= prev.t_done + 20_000_000,
                        "{api:?}: turn {k} sent before the previous end plus 20 ms think"
                    );
                }
            }
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_hits_and_per_turn_ttft_match_the_script() {
    // One conversation at a time, so each turn finds exactly the previous turn's blocks.
    let (ttft, per_token, block) = (200.0, 2.0, 4u32);
    let cfg = SimConfig {
        ttft_ms: ttft,
        itl_ms: 1.0,
        prefill_ms_per_token: per_token,
        prefix_cache_blocks: 10_000,
        prefix_block_tokens: block,
        record_truth: true,
        ..SimConfig::default()
    };
    let server = SimServer::start(cfg, "127.0.0.1", 0).await.expect("start");
    let config = config(&server.url(), Api::Chat, 1, conversations(2, 4, 10, 6));
    let (out, truth) = sweep(&server, config).await;
    let (mut queries, mut hits) = (0u64, 0u64);
    for turns in by_conversation(&out.records).values() {
        assert_eq!(turns.len(), 4);
        let mut prev_in = 0u32;
        for r in turns {
            let n_in = r.n_in.expect("usage");
            let cached = prev_in / block * block;
            queries += u64::from(n_in);
            hits += u64::from(cached);
            let want = ttft + per_token * f64::from(n_in - cached);
            // The server's TTFT (receipt to first chunk) is the script's: never early, and
            // late by at most 1% plus the 1 ms tick its timer rounds sleeps up to and the
            // debug build's handling of a growing history on a busy 2-core machine (about
            // 2.5 ms here; the release build's end-to-end check is in the Python tests).
            let t = &truth[&r.id];
            let served = (t.chunk_times[0] - t.t_received) as f64 / 1e6;
            assert!(
                served >= want - 0.2 && served <= want * 1.01 + 4.0,
                "turn {:?}: served TTFT {served:.2} ms, script {want} ms",
                r.turn
            );
            let got = (r.t_first().expect("a token") - r.t_sent) as f64 / 1e6;
            assert!(
                got >= served && got <= served + 5.0,
                "turn {:?}: measured TTFT {got:.2} ms, served {served:.2} ms",
                r.turn
            );
            prev_in = n_in;
        }
    }
    let counters = server
        .state
        .prefix
        .as_ref()
        .map(|p| {
            let c = p.lock().expect("lock");
            (c.queries, c.hits)
        })
        .expect("a prefix cache");
    assert_eq!(counters, (queries, hits));
    server.shutdown().await;
}
