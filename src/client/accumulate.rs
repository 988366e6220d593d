//! The per-request rules of `docs/architecture.md` ("one request"), apart from any I/O: which
//! events start the TTFT clock, how tokens are attributed to chunks, when a stream has
//! properly ended. [`Accumulator`] takes a response's events one by one and gives an
//! [`Outcome`]; `stream.rs` feeds it from the socket, `parse_bench` from memory, and the
//! tests from fixtures.

use std::sync::Arc;

use super::Api;
use crate::protocol::decode::{Decoded, ServerTimes, Usage};
use crate::record::{ErrorKind, TokenSource};
use crate::sse::SseEvent;
use crate::tokens::TokenCounter;

/// What the caller should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The stream is over (done, final event, or a failure); stop reading.
    Stop,
}

/// Per-request stream state: chunk times, token attribution, finish and errors.
pub struct Accumulator {
    api: Api,
    counter: Option<Arc<TokenCounter>>,
    /// Arrival times of token-bearing events.
    pub chunk_times: Vec<u64>,
    /// Tokens per token-bearing event.
    pub chunk_tokens: Vec<u32>,
    /// Exact counts (continuous usage or TGI tokens) for every chunk so far.
    exact: bool,
    /// Output text of inexactly counted chunks (kept only with a tokenizer).
    text: String,
    /// The whole answer as streamed, kept only for a conversation's next turn.
    answer: Option<String>,
    /// Cumulative count at the last recorded chunk (continuous usage).
    cum_at_last_chunk: u32,
    /// Exact tokens seen before the first output event, owed to it.
    pending_tokens: u32,
    usage: Option<Usage>,
    /// The server's own times of the request, from the last event that said them.
    server_times: ServerTimes,
    finish_reason: Option<String>,
    done: bool,
    failure: Option<(ErrorKind, String)>,
}

impl Accumulator {
    /// A fresh accumulator for one request.
    pub fn new(api: Api, counter: Option<Arc<TokenCounter>>) -> Self {
        Accumulator {
            api,
            counter,
            chunk_times: Vec::new(),
            chunk_tokens: Vec::new(),
            exact: true,
            text: String::new(),
            answer: None,
            cum_at_last_chunk: 0,
            pending_tokens: 0,
            usage: None,
            server_times: ServerTimes::default(),
            finish_reason: None,
            done: false,
            failure: None,
        }
    }

    /// Keep the answer's text as it streams (a conversation sends it back as history).
    pub fn keep_answer(&mut self) {
        self.answer = Some(String::new());
    }

    /// Take one SSE event that arrived at time `t`.
    pub fn on_event(&mut self, t: u64, event: &SseEvent) -> Flow {
        if event.invalid_utf8 {
            self.failure = Some((
                ErrorKind::Malformed,
                format!(
                    "event is not valid UTF-8: {}",
                    crate::util::truncate(&event.data, 200)
                ),
            ));
            return Flow::Stop;
        }
        let decoded = match self.api.decode(&event.data) {
            Ok(d) => d,
            Err(msg) => {
                self.failure = Some((ErrorKind::Malformed, msg));
                return Flow::Stop;
            }
        };
        if event.event_type == "error" && decoded.error.is_none() {
            self.failure = Some((
                ErrorKind::InBandError,
                format!("error event: {}", crate::util::truncate(&event.data, 300)),
            ));
            return Flow::Stop;
        }
        self.on_decoded(t, decoded)
    }

    fn on_decoded(&mut self, t: u64, d: Decoded) -> Flow {
        if let Some(msg) = d.error {
            self.failure = Some((ErrorKind::InBandError, msg));
            return Flow::Stop;
        }
        if d.done {
            self.done = true;
            return Flow::Stop;
        }
        self.attribute_tokens(t, &d);
        if let Some(a) = self.answer.as_mut() {
            a.push_str(&d.text);
        }
        if let Some(u) = d.usage {
            self.usage = Some(u);
        }
        if let Some(t) = d.server_times {
            self.server_times = t;
        }
        if d.finish_reason.is_some() {
            self.finish_reason = d.finish_reason;
        }
        if d.final_event {
            self.done = true;
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// Decide how many tokens this event carries and whether it is a chunk (docs/architecture.md, "The request record").
    fn attribute_tokens(&mut self, t: u64, d: &Decoded) {
        let exact_k = if !self.exact {
            None
        } else if let Some(c) = d.cumulative_tokens {
            Some(c.saturating_sub(self.cum_at_last_chunk))
        } else {
            d.exact_tokens
        };
        let started = !self.chunk_times.is_empty();
        match exact_k {
            Some(k) => {
                if d.output || (started && k > 0) {
                    // Tokens that arrived before the first output (no text yet) belong to it;
                    // token-bearing events after it (e.g. EOS with empty text) are chunks too.
                    let k = k + std::mem::take(&mut self.pending_tokens);
                    if k > 0 {
                        self.push_chunk(t, k);
                    }
                } else if d.exact_tokens.is_some() {
                    self.pending_tokens += k;
                }
                if let Some(c) = d.cumulative_tokens {
                    if !self.chunk_times.is_empty() {
                        self.cum_at_last_chunk = c;
                    }
                }
            }
            None if d.output => {
                // No exact count for this event: the stream is no longer exactly counted.
                if started || d.cumulative_tokens.is_none() {
                    self.exact = false;
                }
                // One token per chunk for now. With a tokenizer the output text is kept and
                // counted whole at the end (tokenizing fragments alone over-counts: a piece
                // like " the" becomes several tokens out of context), then apportioned.
                if self.counter.is_some() {
                    self.text.push_str(&d.text);
                }
                let k = 1 + std::mem::take(&mut self.pending_tokens);
                self.push_chunk(t, k);
            }
            None => {}
        }
    }

    fn push_chunk(&mut self, t: u64, k: u32) {
        self.chunk_times.push(t);
        self.chunk_tokens.push(k);
    }

    /// Record a failure found outside the event stream (I/O, timeout, cancel).
    pub fn fail(&mut self, kind: ErrorKind, msg: String) {
        if self.failure.is_none() {
            self.failure = Some((kind, msg));
        }
    }

    /// The stream ended (EOF or stop). `truncated` says a partial event was discarded.
    /// Returns the outcome fields of the record.
    pub fn finish(mut self, truncated: bool) -> Outcome {
        let usage_total = self.usage.and_then(|u| u.completion);
        let inexact = !self.exact && !self.chunk_times.is_empty();
        // Without server usage, the client tokenizer's count of the whole output is the
        // best total there is.
        let tokenizer_total = match (&self.counter, usage_total) {
            (Some(c), None) if inexact => Some(c.count(&self.text)),
            _ => None,
        };
        let chunk_source = if self.chunk_times.is_empty() {
            TokenSource::Unknown
        } else if self.exact {
            self.api.protocol().exact_token_source()
        } else if usage_total.is_some_and(|n| reconcile(&mut self.chunk_tokens, n)) {
            TokenSource::UsageReconciled
        } else if let Some(n) = tokenizer_total {
            reconcile(&mut self.chunk_tokens, n);
            TokenSource::Tokenizer
        } else {
            TokenSource::OnePerChunk
        };
        let streamed: u32 = self.chunk_tokens.iter().sum();
        let (n_out, n_out_source) = match (usage_total, tokenizer_total) {
            (Some(n), _) => (n, TokenSource::ServerUsage),
            (None, Some(n)) => (n, TokenSource::Tokenizer),
            (None, None) => (streamed, chunk_source),
        };
        let ended_properly =
            self.done || (self.api.protocol().finish_ends_stream() && self.finish_reason.is_some());
        let failure = self.failure.or_else(|| {
            if !ended_properly {
                let what = if truncated {
                    "stream ended in the middle of an event"
                } else {
                    "stream ended without a finish reason or [DONE]"
                };
                Some((ErrorKind::Incomplete, what.to_string()))
            } else if self.chunk_times.is_empty() {
                Some((
                    ErrorKind::EmptyOutput,
                    "stream finished without any output token".to_string(),
                ))
            } else {
                None
            }
        });
        Outcome {
            chunk_times: self.chunk_times,
            chunk_tokens: self.chunk_tokens,
            chunk_token_source: chunk_source,
            n_out,
            n_out_source,
            n_in_server: self.usage.and_then(|u| u.prompt),
            server_times: self.server_times,
            finish_reason: self.finish_reason,
            failure,
            answer: self.answer,
        }
    }
}

/// Scale estimated per-chunk counts so they sum to the server's `total` (largest-remainder
/// apportionment, at least one token per chunk). Returns false (counts untouched) when the
/// total is smaller than the number of chunks, which no apportionment can honour.
fn reconcile(chunk_tokens: &mut [u32], total: u32) -> bool {
    let n = chunk_tokens.len() as u64;
    let total = u64::from(total);
    if n == 0 || total < n {
        return false;
    }
    let sum: u64 = chunk_tokens.iter().map(|&k| u64::from(k)).sum();
    if sum == total {
        return true;
    }
    // Every chunk carried at least one token; share the rest by the estimates' extra part.
    let extra = total - n;
    let weights: Vec<u64> = chunk_tokens
        .iter()
        .map(|&k| u64::from(k.max(1)) - 1)
        .collect();
    let wsum: u64 = weights.iter().sum();
    let (weights, wsum) = if wsum == 0 {
        (vec![1; chunk_tokens.len()], n)
    } else {
        (weights, wsum)
    };
    let mut given = 0u64;
    let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(chunk_tokens.len());
    for (i, (k, w)) in chunk_tokens.iter_mut().zip(&weights).enumerate() {
        let share = extra * w / wsum;
        remainders.push(((extra * w) % wsum, i));
        *k = (1 + share) as u32;
        given += share;
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take((extra - given) as usize) {
        chunk_tokens[i] += 1;
    }
    true
}

/// What a finished stream produced.
#[derive(Debug)]
pub struct Outcome {
    /// Arrival times of token-bearing events.
    pub chunk_times: Vec<u64>,
    /// Tokens per event.
    pub chunk_tokens: Vec<u32>,
    /// Source of `chunk_tokens`.
    pub chunk_token_source: TokenSource,
    /// Output tokens.
    pub n_out: u32,
    /// Source of `n_out`.
    pub n_out_source: TokenSource,
    /// Prompt tokens according to the server.
    pub n_in_server: Option<u32>,
    /// The server's own times of the request, where it said them.
    pub server_times: ServerTimes,
    /// Finish reason as sent.
    pub finish_reason: Option<String>,
    /// Failure kind and message.
    pub failure: Option<(ErrorKind, String)>,
    /// The answer's text as streamed, when it was kept ([`Accumulator::keep_answer`]).
    pub answer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(api: Api, fixture: &str, counter: Option<Arc<TokenCounter>>) -> Outcome {
        let (events, truncated) = crate::test_support::fixture_events(fixture);
        let mut acc = Accumulator::new(api, counter);
        for (i, ev) in events.iter().enumerate() {
            if acc.on_event(1000 * (i as u64 + 1), ev) == Flow::Stop {
                break;
            }
        }
        acc.finish(truncated)
    }

    #[test]
    fn vllm_continuous_usage_counts_are_exact_and_match_usage() {
        for f in [
            "vllm_chat_stream_continuous_usage.sse",
            "vllm_completions_stream_continuous_usage.sse",
            "vllm_0_24_chat_stream_continuous_usage.sse",
            "vllm_0_24_completions_stream_continuous_usage.sse",
        ] {
            let api = if f.contains("chat") {
                Api::Chat
            } else {
                Api::Completions
            };
            let o = run(api, f, None);
            assert!(o.failure.is_none(), "{f}: {:?}", o.failure);
            assert_eq!(o.chunk_token_source, TokenSource::ContinuousUsage, "{f}");
            assert_eq!(o.chunk_tokens.iter().sum::<u32>(), o.n_out, "{f}");
            assert_eq!(o.n_out_source, TokenSource::ServerUsage);
            if f.starts_with("vllm_0_24") {
                // Captured with max_tokens 6: six chunks of one token each.
                assert_eq!((o.n_out, o.chunk_tokens.len()), (6, 6), "{f}");
            }
        }
    }

    #[test]
    fn role_chunk_does_not_start_ttft() {
        let o = run(Api::Chat, "vllm_chat_stream.sse", None);
        // Event 0 (t=1000) is role-only; the first chunk is event 1.
        assert_eq!(o.chunk_times[0], 2000);
        // No continuous usage: one per chunk, reconciled with the final usage chunk.
        assert_eq!(o.chunk_token_source, TokenSource::UsageReconciled);
        assert_eq!(o.chunk_tokens.iter().sum::<u32>(), o.n_out);
        let o = run(Api::Chat, "vllm_chat_stream_no_usage.sse", None);
        assert_eq!(o.chunk_token_source, TokenSource::OnePerChunk);
        assert_eq!(o.n_out_source, TokenSource::OnePerChunk);
        assert!(o.failure.is_none());
    }

    #[test]
    fn tgi_native_counts_one_token_per_event() {
        let o = run(Api::Tgi, "tgi_generate_stream.sse", None);
        assert!(o.failure.is_none());
        assert_eq!(o.chunk_tokens, vec![1; 10]);
        assert_eq!(o.n_out, 10);
        assert_eq!(o.n_in_server, Some(3));
        assert_eq!(o.chunk_token_source, TokenSource::TgiTokens);
        let o = run(Api::Tgi, "tgi_generate_stream_nodetails.sse", None);
        assert_eq!((o.n_out, o.n_out_source), (10, TokenSource::TgiTokens));
    }

    #[test]
    fn errors_and_truncation_are_classified() {
        let o = run(Api::Chat, "vllm_chat_stream_midstream_error.sse", None);
        assert_eq!(
            o.failure.as_ref().map(|f| f.0),
            Some(ErrorKind::InBandError)
        );
        assert_eq!(o.chunk_times.len(), 1, "measured chunk kept");
        let o = run(Api::Tgi, "tgi_generate_stream_error_overloaded.sse", None);
        assert_eq!(o.failure.map(|f| f.0), Some(ErrorKind::InBandError));
        let mut acc = Accumulator::new(Api::Chat, None);
        let ev = SseEvent {
            event_type: "message".into(),
            data: r#"{"choices":[{"delta":{"content":"a"}}]}"#.into(),
            last_event_id: String::new(),
            invalid_utf8: false,
        };
        acc.on_event(1, &ev);
        assert_eq!(
            acc.finish(false).failure.map(|f| f.0),
            Some(ErrorKind::Incomplete)
        );
        let mut acc = Accumulator::new(Api::Chat, None);
        let done = SseEvent {
            data: "[DONE]".into(),
            ..ev.clone()
        };
        acc.on_event(1, &done);
        assert_eq!(
            acc.finish(false).failure.map(|f| f.0),
            Some(ErrorKind::EmptyOutput)
        );
        let mut acc = Accumulator::new(Api::Chat, None);
        let bad = SseEvent {
            data: "{oops".into(),
            ..ev
        };
        assert_eq!(acc.on_event(1, &bad), Flow::Stop);
        assert_eq!(
            acc.finish(false).failure.map(|f| f.0),
            Some(ErrorKind::Malformed)
        );
    }

    #[test]
    fn transformers_serve_style_stream_without_done_is_ok() {
        // Usage inside the last content chunk, finish reason set, then EOF (no [DONE]).
        let mut acc = Accumulator::new(Api::Chat, None);
        let mk = |data: &str| SseEvent {
            event_type: "message".into(),
            data: data.into(),
            last_event_id: String::new(),
            invalid_utf8: false,
        };
        acc.on_event(10, &mk(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#));
        acc.on_event(20, &mk(r#"{"choices":[{"delta":{"content":"a b"}}]}"#));
        acc.on_event(
            30,
            &mk(r#"{"choices":[{"delta":{"content":" c"},"finish_reason":"length"}],"usage":{"prompt_tokens":4,"completion_tokens":3}}"#),
        );
        let o = acc.finish(false);
        assert!(o.failure.is_none(), "{:?}", o.failure);
        assert_eq!(o.chunk_times, vec![20, 30]);
        assert_eq!((o.n_out, o.n_out_source), (3, TokenSource::ServerUsage));
        // Usage on the last chunk only is not continuous usage: per-chunk counts are
        // estimated, then scaled to the server's total.
        assert_eq!(o.chunk_token_source, TokenSource::UsageReconciled);
        assert_eq!(o.chunk_tokens.iter().sum::<u32>(), 3);
        assert_eq!(o.n_in_server, Some(4));
    }

    #[test]
    fn reconcile_apportions_the_usage_total() {
        let mut k = vec![2, 2, 2];
        assert!(reconcile(&mut k, 3));
        assert_eq!(k, vec![1, 1, 1]);
        let mut k = vec![1, 1, 1];
        assert!(reconcile(&mut k, 6));
        assert_eq!(k, vec![2, 2, 2]);
        let mut k = vec![2, 1];
        assert!(reconcile(&mut k, 5));
        assert_eq!(k, vec![4, 1]);
        let mut k = vec![1, 3, 1, 5];
        assert!(reconcile(&mut k, 7));
        assert_eq!(k.iter().sum::<u32>(), 7);
        assert!(k.iter().all(|&x| x >= 1));
        let mut k = vec![1, 1, 1];
        assert!(
            !reconcile(&mut k, 2),
            "fewer tokens than chunks: left alone"
        );
        assert_eq!(k, vec![1, 1, 1]);
    }

    #[test]
    fn tgi_eos_special_token_is_a_chunk_after_output_but_not_before() {
        let mk = |data: &str| SseEvent {
            event_type: "message".into(),
            data: data.into(),
            last_event_id: String::new(),
            invalid_utf8: false,
        };
        let tok = |special: bool, last: bool| {
            format!(
                r#"{{"index":1,"token":{{"id":1,"text":"x","logprob":0,"special":{special}}},"generated_text":{},"details":{}}}"#,
                if last { "\"xx\"" } else { "null" },
                if last {
                    r#"{"finish_reason":"eos_token","generated_tokens":3,"input_length":2}"#
                } else {
                    "null"
                }
            )
        };
        let mut acc = Accumulator::new(Api::Tgi, None);
        acc.on_event(1, &mk(&tok(true, false)));
        acc.on_event(2, &mk(&tok(false, false)));
        acc.on_event(3, &mk(&tok(true, true)));
        let o = acc.finish(false);
        assert!(o.failure.is_none());
        assert_eq!(o.chunk_times, vec![2, 3]);
        assert_eq!(o.chunk_tokens, vec![2, 1]);
        assert_eq!(o.n_out, 3);
    }
}
