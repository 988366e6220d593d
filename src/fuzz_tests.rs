//! Property-based fuzzing (proptest) of everything that reads bytes from a server: the SSE
//! parser and every event decoder, through the per-request accumulator, seeded with the
//! protocol fixtures and mutated. No input may panic, split points must not change what is
//! parsed, and memory stays bounded by the parser's limit.
//!
//! CI runs the default number of cases; `scripts/fuzz.sh` runs them for longer
//! (`PROPTEST_CASES`).

use proptest::prelude::*;

use crate::client::accumulate::{Accumulator, Flow};
use crate::protocol::Api;
use crate::sse::{SseError, SseEvent, SseParser};
use crate::test_support::fixtures_dir;

/// The fixture streams, the seeds of the mutations.
fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sse"))
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect();
    out.sort();
    out
}

/// Parse `bytes` fed in pieces cut at `cuts` (positions, any order).
fn parse_in_pieces(
    bytes: &[u8],
    cuts: &[usize],
    limit: usize,
) -> (Result<Vec<SseEvent>, SseError>, bool) {
    let mut p = SseParser::with_limit(limit);
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        if let Err(e) = p.feed(&bytes[w[0]..w[1]], &mut out) {
            return (Err(e), false);
        }
    }
    let truncated = p.finish();
    (Ok(out), truncated)
}

/// A fixture with random edits: bytes replaced, inserted (CR, LF, ':', '{', high bytes)
/// and removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..24),
    )
        .prop_map(move |(i, edits)| {
            let mut b = seeds[i].clone();
            for (pos, op, byte) in edits {
                let at = if b.is_empty() { 0 } else { pos % b.len() };
                let special =
                    [b'\r', b'\n', b':', b'{', b'"', 0xC3, 0xFF, b' '][usize::from(byte) % 8];
                match op {
                    0 if !b.is_empty() => b[at] = byte,
                    1 => b.insert(at, special),
                    2 if !b.is_empty() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, byte),
                }
            }
            b
        })
}

fn run_accumulator(api: Api, events: &[SseEvent]) {
    let mut acc = Accumulator::new(api, None);
    for (i, ev) in events.iter().enumerate() {
        if acc.on_event(i as u64 + 1, ev) == Flow::Stop {
            break;
        }
    }
    let out = acc.finish(false);
    // Whatever happened, the record is self-consistent.
    assert_eq!(out.chunk_times.len(), out.chunk_tokens.len());
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_sse_split_points_do_not_change_events(bytes in prop::collection::vec(any::<u8>(), 0..2048),
                                                  cuts in prop::collection::vec(any::<usize>(), 0..16)) {
        let (whole, t1) = parse_in_pieces(&bytes, &[], usize::MAX);
        let (pieces, t2) = parse_in_pieces(&bytes, &cuts, usize::MAX);
        prop_assert_eq!(whole.expect("no limit"), pieces.expect("no limit"));
        prop_assert_eq!(t1, t2);
    }

    #[test]
    fn fuzz_sse_memory_is_bounded_by_the_limit(len in 0usize..20_000, cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        // One line that never ends: past the limit it must be an error, never growth.
        let bytes = vec![b'a'; len];
        let (r, _) = parse_in_pieces(&bytes, &cuts, 4096);
        if len > 4096 + 16 {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn fuzz_mutated_fixtures_through_every_decoder(bytes in mutated(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let (events, _) = parse_in_pieces(&bytes, &cuts, 1 << 20);
        if let Ok(events) = events {
            for api in [Api::Chat, Api::Completions, Api::Tgi] {
                for ev in &events {
                    let _ = api.decode(&ev.data);
                }
                run_accumulator(api, &events);
            }
        }
    }

    #[test]
    fn fuzz_decoders_on_arbitrary_json(data in r#"[\{\}\[\]":,a-z0-9 .\-]{0,200}"#) {
        for api in [Api::Chat, Api::Completions, Api::Tgi] {
            let _ = api.decode(&data);
        }
    }

    #[test]
    fn fuzz_decoders_on_json_shaped_like_events(
        text in prop::option::of(".{0,20}"),
        finish in prop::option::of("[a-z_]{0,10}"),
        n in prop::option::of(any::<i64>()),
        special in any::<bool>(),
        nest in 0usize..3,
    ) {
        // Right keys, wrong types and values: numbers where strings go, negative counts.
        let vals = [
            serde_json::json!({"choices": [{"delta": {"content": text}, "text": text, "finish_reason": finish}],
                               "usage": {"completion_tokens": n, "prompt_tokens": n}}),
            serde_json::json!({"token": {"id": n, "text": text, "special": special}, "generated_text": text,
                               "details": {"generated_tokens": n, "finish_reason": finish}}),
            serde_json::json!({"error": text, "error_type": finish}),
            serde_json::json!({"choices": n, "usage": text, "object": finish}),
        ];
        for v in &vals {
            let mut data = v.to_string();
            for _ in 0..nest {
                data = format!("[{data}]");
            }
            for api in [Api::Chat, Api::Completions, Api::Tgi] {
                let _ = api.decode(&data);
            }
        }
    }
}
