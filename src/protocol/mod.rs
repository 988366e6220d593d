//! The wire protocols llmbench speaks, in one place for both sides: OpenAI-compatible chat
//! and completions (vLLM, TGI's messages API, `transformers serve`, the baseline) and TGI's
//! native `/generate_stream`. Everything that differs between them is a method of the
//! [`Protocol`] trait, with one implementation per protocol (`openai::OpenAi`,
//! `tgi::Native`): the path, the request body a client sends, the decoder of the events it
//! receives, how exact its token counts are and what ends a stream, the parser of the
//! requests the built-in servers (the scripted server in `sim`, the baseline in
//! `baseline::serve`) receive and the encoders they answer with. [`Api`] names a protocol
//! and `Api::protocol` is the one `match` on it, so a change to a format, or a new
//! protocol, is made here and both ends follow it (docs/architecture.md, "Adding a
//! protocol").
//!
//! Formats and metric names by server version: `tests/fixtures/README.md`.

pub mod decode;
pub mod openai;
pub mod tgi;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use openai::ForceLen;

use crate::record::TokenSource;

/// The request header carrying the client's record id, so a server's truth can be
/// matched to the client's record request by request.
pub const REQUEST_ID_HEADER: &str = "x-llmbench-request-id";

/// The event that ends an OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A system prompt.
    System,
    /// The user's turn.
    User,
    /// The server's answer.
    Assistant,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

/// A conversation's history as one prompt, for the APIs that take text (completions,
/// TGI): the messages' texts in order, each followed by a blank line, so every turn's
/// prompt starts with the previous turn's prompt and answer (a prefix a cache can reuse).
pub fn join_messages(messages: &[Message]) -> String {
    let mut out = String::with_capacity(messages.iter().map(|m| m.content.len() + 2).sum());
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(&m.content);
    }
    out
}

/// Which protocol a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
    /// TGI's native `POST /generate_stream`.
    Tgi,
}

impl Api {
    /// Every protocol, in the order choices are listed.
    pub const ALL: [Api; 3] = [Api::Chat, Api::Completions, Api::Tgi];

    /// What this protocol is: the one place its differences from the others are written.
    pub fn protocol(self) -> &'static dyn Protocol {
        match self {
            Api::Chat => &openai::CHAT,
            Api::Completions => &openai::COMPLETIONS,
            Api::Tgi => &tgi::NATIVE,
        }
    }

    /// Decode one SSE event's data with this protocol's decoder.
    pub fn decode(self, data: &str) -> std::result::Result<decode::Decoded, String> {
        self.protocol().decode(data)
    }
}

/// What a streaming request carries beside its prompt and output budget.
#[derive(Debug, Clone, Copy)]
pub struct RequestSettings<'a> {
    /// The model name (OpenAI APIs; TGI serves one model and takes none).
    pub model: &'a str,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f64,
    /// Ask for `stream_options.include_usage` (OpenAI).
    pub include_usage: bool,
    /// Ask for vLLM's per-chunk usage (`continuous_usage_stats`).
    pub continuous_usage: bool,
    /// Ask for the server's own times of the request (vLLM's `include_metrics`, answered
    /// when the server runs with `--enable-per-request-metrics`).
    pub include_metrics: bool,
    /// Force exactly `max_tokens` of output, the server's way.
    pub force_output_len: Option<ForceLen>,
    /// Fields merged into the body last (they win; TGI: into `parameters`).
    pub extra_body: &'a Map<String, Value>,
}

/// What a built-in server reads from a request: the one parser the scripted server and
/// the baseline share, so they cannot disagree about a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedRequest<'a> {
    /// The prompt field as sent (`messages`, `prompt` or `inputs`); present, not checked.
    pub prompt: &'a Value,
    /// The model the request names (OpenAI), None where the protocol names none.
    pub model: Option<&'a str>,
    /// The output budget (OpenAI: `max_completion_tokens`, else `max_tokens`, vLLM's rule;
    /// TGI: `parameters.max_new_tokens`), None when not given.
    pub max_tokens: Option<u32>,
    /// Stream the answer (TGI's `/generate_stream` always does).
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// vLLM's `stream_options.continuous_usage_stats` (with `include_usage`).
    pub continuous_usage: bool,
    /// vLLM's `include_metrics`: the server's times of the request on its usage chunk.
    pub include_metrics: bool,
    /// Generate the whole budget (vLLM's `ignore_eos`; TGI's `parameters.ignore_eos`).
    pub ignore_eos: bool,
    /// TGI's `parameters.details`: the final event carries counts.
    pub details: bool,
}

/// A positive integer field of a request, refused with its name otherwise.
pub(crate) fn positive_u32(v: Option<&Value>, name: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
            _ => Err(format!("{name} must be a positive integer, got {x}")),
        },
    }
}

/// What every event of one answer a built-in server streams repeats or needs.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The response id.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: &'a str,
    /// Prompt tokens.
    pub n_in: u32,
    /// Output tokens the whole answer will have.
    pub n_out: u32,
    /// Usage after the last chunk (OpenAI `include_usage`).
    pub include_usage: bool,
    /// Usage on every chunk (vLLM `continuous_usage_stats`).
    pub continuous_usage: bool,
    /// Counts on the final event (TGI `details`).
    pub details: bool,
    /// The server's own times of the request, sent after the last chunk (vLLM's `metrics`
    /// on the usage chunk) when given: only for a request that asked, and only in the
    /// trailer, when they are known.
    pub server_times: Option<decode::ServerTimes>,
}

/// The failures a built-in server reports, each in its protocol's own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429: too many requests.
    Overloaded,
    /// HTTP 503: the engine is not ready or has died.
    Unavailable,
    /// HTTP 500, or an error during generation.
    Internal,
}

impl Failure {
    /// The HTTP status a server sends it with.
    pub fn status(self) -> u16 {
        match self {
            Failure::Overloaded => 429,
            Failure::Unavailable => 503,
            Failure::Internal => 500,
        }
    }
}

/// Everything one protocol does differently, client and server side. The implementations
/// are `openai::OpenAi` (chat and completions) and `tgi::Native`; `Api::protocol` picks one.
pub trait Protocol: Sync + std::fmt::Debug {
    /// The URL requests are posted to, under `base` (no trailing slash, no query).
    fn endpoint(&self, base: &str) -> String;
    /// The path a built-in server answers this protocol on.
    fn route(&self) -> &'static str;
    /// Requests must name a model (OpenAI routes by it; TGI serves one).
    fn needs_model(&self) -> bool;
    /// The output length can be forced over HTTP (TGI ignores `ignore_eos`).
    fn can_force_output_len(&self) -> bool;
    /// The JSON body of a streaming request for `prompt` (chat: `messages`, a
    /// conversation's history, instead when given) with at most `max_tokens` output.
    fn request_body(
        &self,
        prompt: &str,
        messages: Option<&[Message]>,
        max_tokens: u32,
        settings: &RequestSettings,
    ) -> Value;
    /// Decode one SSE event's data. `Err` means the event is malformed.
    fn decode(&self, data: &str) -> Result<decode::Decoded, String>;
    /// Where per-chunk token counts came from when every event carried an exact count.
    fn exact_token_source(&self) -> TokenSource;
    /// A finish reason alone ends a stream properly (OpenAI, where `[DONE]` is optional
    /// for some servers); otherwise only the protocol's own end does (TGI's final event).
    fn finish_ends_stream(&self) -> bool;

    /// Read a request a built-in server received; `Err` is a 400's message, in the words
    /// the real servers use.
    fn served_request<'a>(&self, body: &'a Value) -> Result<ServedRequest<'a>, String>;
    /// The finish reason of an answer that ended at its end-of-sequence token.
    fn stop_reason(&self) -> &'static str;
    /// Append chunk `index` of a streamed answer, carrying tokens `first .. first + k`
    /// (`text(i, k)` is their text), ending the answer with `finish` when given.
    #[allow(clippy::too_many_arguments)]
    fn push_chunk(
        &self,
        out: &mut Vec<u8>,
        answer: &Answer,
        index: u32,
        first: u32,
        k: u32,
        finish: Option<&str>,
        text: &dyn Fn(u32, u32) -> String,
    );
    /// Append what follows the last chunk (OpenAI: the usage chunk when asked, with the
    /// answer's `server_times` as vLLM's `metrics`, and `[DONE]`; TGI: nothing, its
    /// stream has no place for them).
    fn push_trailer(&self, out: &mut Vec<u8>, answer: &Answer);
    /// The body of an error: an HTTP error's, or an in-band error event's data.
    fn error_body(&self, message: &str, failure: Failure) -> Value;
    /// Append an in-band error after HTTP 200, as the real servers send one.
    fn push_in_band_error(&self, out: &mut Vec<u8>, message: &str);
    /// Append a clean end with no output token.
    fn push_empty_output(&self, out: &mut Vec<u8>, answer: &Answer);
    /// A whole answer, for a request that did not ask to stream.
    fn full(&self, answer: &Answer, text: &str, finish: &str) -> Value;
}

/// Append one server-sent event carrying `value` as its data.
pub fn push_event(out: &mut Vec<u8>, value: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod round_trip_tests {
    //! Every protocol's encoders against its own decoder and request parser, so a new
    //! protocol in `Api::ALL` is checked without a new test.
    use super::*;
    use crate::sse::SseParser;

    fn answer(n_out: u32) -> Answer<'static> {
        Answer {
            id: "id-1",
            created: 1,
            model: "m",
            n_in: 3,
            n_out,
            include_usage: true,
            continuous_usage: false,
            details: true,
            server_times: None,
        }
    }

    fn decoded(api: Api, bytes: &[u8]) -> Vec<decode::Decoded> {
        let mut events = Vec::new();
        SseParser::default()
            .feed(bytes, &mut events)
            .expect("well-formed SSE");
        events
            .iter()
            .map(|e| api.decode(&e.data).expect("decodes"))
            .collect()
    }

    #[test]
    fn what_a_built_in_server_streams_decodes_to_its_tokens_and_finish() {
        let words = [" a", " b", " c", " d"];
        let text = |i: u32, k: u32| (i..i + k).map(|j| words[j as usize]).collect::<String>();
        for api in Api::ALL {
            let p = api.protocol();
            for finish in ["length", p.stop_reason()] {
                let a = answer(4);
                let mut out = Vec::new();
                p.push_chunk(&mut out, &a, 0, 0, 2, None, &text);
                p.push_chunk(&mut out, &a, 1, 2, 2, Some(finish), &text);
                p.push_trailer(&mut out, &a);
                let d = decoded(api, &out);
                let got: String = d.iter().map(|e| e.text.as_str()).collect();
                let eos = finish == "eos_token";
                // TGI's EOS token is a token, not text.
                assert_eq!(got, if eos { " a b c" } else { " a b c d" }, "{api:?}");
                let reasons: Vec<_> = d.iter().filter_map(|e| e.finish_reason.clone()).collect();
                assert_eq!(reasons, [finish], "{api:?}");
                let ended = d.iter().any(|e| e.done || e.final_event)
                    || (p.finish_ends_stream() && !reasons.is_empty());
                assert!(ended, "{api:?}");
                let usage = d.iter().rev().find_map(|e| e.usage).expect("usage");
                assert_eq!(usage.completion, Some(4), "{api:?}");
            }
        }
    }

    #[test]
    fn errors_and_empty_answers_decode_as_such() {
        for api in Api::ALL {
            let p = api.protocol();
            let mut out = Vec::new();
            p.push_in_band_error(&mut out, "boom");
            let d = decoded(api, &out);
            assert!(d[0].error.as_deref().is_some_and(|m| m.contains("boom")));
            let mut out = Vec::new();
            p.push_empty_output(&mut out, &answer(0));
            assert!(decoded(api, &out).iter().all(|e| !e.output), "{api:?}");
            let body = p.error_body("too many", Failure::Overloaded);
            assert!(body.to_string().contains("too many"), "{api:?}");
        }
    }

    #[test]
    fn what_a_client_sends_a_built_in_server_reads_back() {
        let extra = Map::new();
        let s = RequestSettings {
            model: "m",
            temperature: 0.0,
            include_usage: true,
            continuous_usage: true,
            include_metrics: true,
            force_output_len: None,
            extra_body: &extra,
        };
        for api in Api::ALL {
            let p = api.protocol();
            let body = p.request_body("hello there", None, 7, &s);
            let r = p.served_request(&body).expect("parses");
            assert_eq!(r.max_tokens, Some(7), "{api:?}");
            assert!(r.stream, "{api:?}");
            assert!(r.prompt.to_string().contains("hello there"), "{api:?}");
            assert_eq!(r.model.is_some(), p.needs_model(), "{api:?}");
            assert!(p.endpoint("http://h:1").ends_with(p.route()), "{api:?}");
            // Only the OpenAI routes can carry the server's times (TGI's stream has none).
            assert_eq!(r.include_metrics, api != Api::Tgi, "{api:?}");
        }
    }

    #[test]
    fn the_server_times_a_built_in_server_sends_decode_to_the_same_times() {
        let times = decode::ServerTimes {
            queue_us: Some(31_500),
            prefill_us: Some(20_250),
            decode_us: Some(7_001),
        };
        let text = |_: u32, k: u32| " a".repeat(k as usize);
        for api in Api::ALL {
            let p = api.protocol();
            let mut out = Vec::new();
            let a = answer(2);
            p.push_chunk(&mut out, &a, 0, 0, 2, Some("length"), &text);
            p.push_trailer(
                &mut out,
                &Answer {
                    server_times: Some(times),
                    ..a
                },
            );
            let got = decoded(api, &out).iter().rev().find_map(|e| e.server_times);
            assert_eq!(got, (api != Api::Tgi).then_some(times), "{api:?}");
        }
    }
}
