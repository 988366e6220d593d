//! Helpers shared by the unit tests: the protocol fixtures in `tests/fixtures/`.

use std::path::PathBuf;

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
