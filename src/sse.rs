//! Incremental Server-Sent Events parser following the WHATWG HTML rules (§9.2.5–9.2.6).
//!
//! Bytes arrive in arbitrary slices (TCP reads, HTTP chunks); events are dispatched only when
//! their terminating blank line has arrived. Lines are split on raw CR/LF bytes, which never
//! occur inside a multi-byte UTF-8 sequence, so a character split across reads is decoded
//! whole once its line is complete. Invalid UTF-8 is replaced with U+FFFD, as browsers do,
//! and the event says so (`invalid_utf8`), so a client can treat it as malformed.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `"message"` when none was given.
    pub event_type: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen so far in the stream (WHATWG semantics: it persists).
    pub last_event_id: String,
    /// Some of the data was not valid UTF-8 (replaced with U+FFFD).
    pub invalid_utf8: bool,
}

/// Errors the parser can raise: only resource limits, since every byte sequence is valid SSE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line or event grew past the configured limit (protects memory from a
    /// misbehaving server that never sends a line end).
    #[error("SSE line or event larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Default cap on one line or one event's data: far above any real LLM event (a whole
/// 32k-token completion in one event is about 200 KB), low enough that 1,024 streams
/// cannot hold more than 4 GiB between them.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The incremental parser. Feed it bytes with [`SseParser::feed`]; call [`SseParser::finish`]
/// at end of stream.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    data: String,
    event_type: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    /// The previous slice ended in CR: a leading LF in the next slice belongs to it.
    skip_lf: bool,
    /// Still looking at the first bytes of the stream for a BOM.
    at_start: bool,
    /// Anything but dispatched events was seen since the last dispatch (for `finish`).
    pending: bool,
    /// The event being built had invalid UTF-8 in its data.
    invalid_utf8: bool,
    max_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default size limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses lines or events longer than `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            skip_lf: false,
            at_start: true,
            pending: false,
            invalid_utf8: false,
            max_bytes,
        }
    }

    /// The last `retry:` value seen, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Feed the next slice of the stream; complete events are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.at_start {
            // The BOM may itself be split across slices: hold back a prefix of it.
            self.line.extend_from_slice(bytes);
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return Ok(());
            }
            self.at_start = false;
            let held = std::mem::take(&mut self.line);
            let rest = held.strip_prefix(BOM).unwrap_or(&held);
            return self.feed_body(rest, out);
        }
        if self.skip_lf {
            if let Some((&b'\n', rest)) = bytes.split_first() {
                bytes = rest;
            }
            if !bytes.is_empty() {
                self.skip_lf = false;
            }
        }
        self.feed_body(bytes, out)
    }

    fn feed_body(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        while let Some(pos) = memchr::memchr2(b'\r', b'\n', rest) {
            let ending = rest[pos];
            let line_part = &rest[..pos];
            let mut consumed = pos + 1;
            if ending == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => consumed += 1,
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.process_line(line_part, out)?;
            } else {
                self.line.extend_from_slice(line_part);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out)?;
                self.line = line;
                self.line.clear();
            }
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            self.line.extend_from_slice(rest);
            self.pending = true;
            if self.line.len() > self.max_bytes {
                return Err(SseError::TooLarge {
                    limit: self.max_bytes,
                });
            }
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        self.pending = true;
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                match std::str::from_utf8(value) {
                    Ok(text) => self.data.push_str(text),
                    Err(_) => {
                        self.invalid_utf8 = true;
                        self.data.push_str(&String::from_utf8_lossy(value));
                    }
                }
                self.data.push('\n');
                if self.data.len() > self.max_bytes {
                    return Err(SseError::TooLarge {
                        limit: self.max_bytes,
                    });
                }
            }
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => {
                self.last_event_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.pending = false;
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(SseEvent {
            event_type,
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
            invalid_utf8: std::mem::take(&mut self.invalid_utf8),
        });
    }

    /// End of stream. An event without its terminating blank line is discarded, as the
    /// standard says; the return value tells whether anything was discarded (a truncated
    /// stream), so callers can report it.
    pub fn finish(&mut self) -> bool {
        let truncated = self.pending || !self.line.is_empty() || !self.data.is_empty();
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.pending = false;
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixtures_dir;
    use rand::{Rng, SeedableRng};

    fn parse_all(bytes: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(bytes, &mut out).expect("feed");
        p.finish();
        out
    }

    fn parse_split(bytes: &[u8], rng: &mut impl Rng, max_slice: usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let n = rng.random_range(1..=max_slice).min(bytes.len() - i);
            p.feed(&bytes[i..i + n], &mut out).expect("feed");
            i += n;
        }
        p.finish();
        out
    }

    #[test]
    fn edge_cases_match_whatwg_expectation() {
        let bytes = std::fs::read(fixtures_dir().join("sse_edge_cases.sse")).expect("fixture");
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixtures_dir().join("sse_edge_cases.expected.json")).expect("fixture"),
        )
        .expect("json");
        let got = parse_all(&bytes);
        let want: Vec<SseEvent> = expected
            .as_array()
            .expect("array")
            .iter()
            .map(|e| SseEvent {
                event_type: e["type"].as_str().expect("type").to_string(),
                data: e["data"].as_str().expect("data").to_string(),
                last_event_id: e["lastEventId"].as_str().expect("id").to_string(),
                invalid_utf8: false,
            })
            .collect();
        assert_eq!(got, want);
        let mut p = SseParser::new();
        p.feed(&bytes, &mut Vec::new()).expect("feed");
        assert_eq!(p.retry_ms(), Some(1500));
        assert!(
            p.finish(),
            "the unterminated last event is reported as discarded"
        );
    }

    #[test]
    fn every_fixture_survives_random_resplits() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut n_files = 0;
        for entry in std::fs::read_dir(fixtures_dir()).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("sse") {
                continue;
            }
            n_files += 1;
            let bytes = std::fs::read(&path).expect("read");
            let whole = parse_all(&bytes);
            assert!(!whole.is_empty(), "{path:?} gave no events");
            for round in 0..200 {
                let max_slice = [1, 2, 3, 7, 64][round % 5];
                assert_eq!(
                    parse_split(&bytes, &mut rng, max_slice),
                    whole,
                    "{path:?} split at most {max_slice}"
                );
            }
        }
        assert!(
            n_files >= 15,
            "expected the fixture set, found {n_files} files"
        );
    }

    #[test]
    fn crlf_split_between_slices_is_one_line_end() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out).expect("feed");
        p.feed(b"\n\r", &mut out).expect("feed");
        p.feed(b"\ndata: b\r\r", &mut out).expect("feed");
        let data: Vec<_> = out.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a", "b"]);
    }

    #[test]
    fn utf8_split_inside_a_character_is_decoded_whole() {
        let text = "data: {\"t\":\"日本語 ✓ 😀\"}\n\n".as_bytes();
        for cut in 0..text.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(&text[..cut], &mut out).expect("feed");
            p.feed(&text[cut..], &mut out).expect("feed");
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].data, "{\"t\":\"日本語 ✓ 😀\"}");
        }
    }

    #[test]
    fn bom_split_across_slices_is_stripped_once() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n" {
            p.feed(&[*b], &mut out).expect("feed");
        }
        // Only the first BOM is stripped: the second makes the field name "\u{FEFF}data",
        // an unknown field, so nothing is dispatched.
        assert!(out.is_empty());
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in b"\xEF\xBB\xBFdata: x\n\n" {
            p.feed(&[*b], &mut out).expect("feed");
        }
        assert_eq!(out[0].data, "x");
    }

    #[test]
    fn keepalives_and_comments_dispatch_nothing() {
        assert!(parse_all(b":\n\n: ping\n\n:\r\n\r\n").is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged_on_its_event_only() {
        let out = parse_all(b"data: \xff\xfe ok\n\ndata: fine \xc3\xa9\n\n");
        assert_eq!(out[0].data, "\u{FFFD}\u{FFFD} ok");
        assert!(out[0].invalid_utf8);
        assert_eq!(out[1].data, "fine \u{e9}");
        assert!(!out[1].invalid_utf8);
    }

    #[test]
    fn oversized_line_is_an_error_not_unbounded_memory() {
        let mut p = SseParser::with_limit(1024);
        let chunk = vec![b'a'; 600];
        let mut out = Vec::new();
        p.feed(b"data: ", &mut out).expect("feed");
        p.feed(&chunk, &mut out).expect("first slice fits");
        assert_eq!(
            p.feed(&chunk, &mut out),
            Err(SseError::TooLarge { limit: 1024 })
        );
    }
}
