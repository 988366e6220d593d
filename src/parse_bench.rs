//! How many streamed tokens one client core can parse and timestamp: the scripted
//! server's exact bytes for a request fed through the same SSE parser and per-request
//! accumulator the client uses, one clock reading per read, with no socket in the way.
//! The socket's share is measured end to end by `benches/peers.py`.

use crate::client::accumulate::{Accumulator, Flow};
use crate::clock::now_ns;
use crate::protocol::Api;
use crate::sse::{SseEvent, SseParser};

/// What one run of the benchmark measured.
#[derive(Debug, Clone, Copy)]
pub struct ParseSpeed {
    /// Output tokens parsed (all requests).
    pub tokens: u64,
    /// Bytes parsed.
    pub bytes: u64,
    /// Seconds it took on this thread.
    pub seconds: f64,
}

impl ParseSpeed {
    /// Tokens per second.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

/// Parse `requests` streams of `tokens_per_request` tokens each, handing the bytes to the
/// parser in reads of `read_bytes` (a socket read's worth; 0 = one chunk per read, as
/// when tokens arrive one at a time).
pub fn parse_speed(
    api: Api,
    requests: u32,
    tokens_per_request: u32,
    read_bytes: usize,
) -> ParseSpeed {
    let stream = crate::sim::stream_bytes(api, tokens_per_request);
    // Read boundaries: fixed size, or one per event (blank line).
    let reads: Vec<&[u8]> = if read_bytes > 0 {
        stream.chunks(read_bytes).collect()
    } else {
        let mut out = Vec::new();
        let mut start = 0;
        for i in memchr::memmem::find_iter(&stream, b"\n\n") {
            out.push(&stream[start..i + 2]);
            start = i + 2;
        }
        if start < stream.len() {
            out.push(&stream[start..]);
        }
        out
    };
    let mut tokens = 0u64;
    let mut events: Vec<SseEvent> = Vec::with_capacity(4);
    let t0 = now_ns();
    for _ in 0..requests {
        let mut parser = SseParser::new();
        let mut acc = Accumulator::new(api, None);
        'read: for bytes in &reads {
            let t = now_ns();
            events.clear();
            if parser.feed(bytes, &mut events).is_err() {
                break;
            }
            for ev in &events {
                if acc.on_event(t, ev) == Flow::Stop {
                    break 'read;
                }
            }
        }
        let out = acc.finish(false);
        tokens += u64::from(out.n_out);
    }
    let seconds = (now_ns() - t0) as f64 / 1e9;
    ParseSpeed {
        tokens,
        bytes: stream.len() as u64 * u64::from(requests),
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_of_every_api_is_counted() {
        for api in [Api::Chat, Api::Completions, Api::Tgi] {
            for read in [0, 7, 4096] {
                let s = parse_speed(api, 3, 64, read);
                assert_eq!(s.tokens, 3 * 64, "{api:?} read {read}");
                assert!(s.seconds > 0.0);
            }
        }
    }
}
