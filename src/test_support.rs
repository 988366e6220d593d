//! Helpers shared by the unit tests: the protocol fixtures in `tests/fixtures/`.

use std::path::PathBuf;

use crate::record::{Chunks, ErrorKind, RequestRecord, TokenSource};
use crate::sse::{SseEvent, SseParser};

/// The fixtures folder.
pub fn fixtures_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's bytes.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).expect("fixture")
}

/// A fixture's text.
pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture_bytes(name)).expect("UTF-8 fixture")
}

/// The SSE events of a `.sse` fixture (parsed whole), and whether a partial event was
/// left at the end.
pub fn fixture_events(name: &str) -> (Vec<SseEvent>, bool) {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    p.feed(&fixture_bytes(name), &mut events).expect("parse");
    let truncated = p.finish();
    (events, truncated)
}

/// Every event of a fixture, decoded with `api`'s decoder (which must accept each).
pub fn decode_fixture(
    api: crate::protocol::Api,
    name: &str,
) -> Vec<crate::protocol::decode::Decoded> {
    fixture_events(name)
        .0
        .iter()
        .map(|e| api.decode(&e.data).expect("decode"))
        .collect()
}

/// A small successful record (two one-token chunks), in `stage`, failed with `kind` if
/// given: for tests of what stores, reads and sorts records.
pub fn record(id: u64, stage: u32, warmup: bool, kind: Option<ErrorKind>) -> RequestRecord {
    RequestRecord {
        id,
        stage,
        batch_size: 1,
        warmup,
        prompt_index: 0,
        conversation: None,
        turn: None,
        t_sched: 1,
        t_sent: 1,
        t_headers: Some(2),
        t_done: 3,
        chunks: Chunks::from_parts(&[2, 3], &[1, 1]),
        chunk_token_source: TokenSource::ServerUsage,
        n_in: Some(4),
        n_in_source: TokenSource::ServerUsage,
        n_out: 2,
        n_out_source: TokenSource::ServerUsage,
        server_times: crate::record::ServerTimes::default(),
        finish_reason: Some("length".into()),
        http_status: Some(200),
        error_kind: kind,
        error: None,
    }
}

/// A fresh, empty folder for one test (`name` keeps tests apart; the process id keeps runs
/// apart).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmbench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
