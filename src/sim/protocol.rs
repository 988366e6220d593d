//! What the scripted server makes of one request: its checks (as vLLM and TGI make them)
//! and the plan of what it will stream, written with the encoders of `crate::protocol`:
//! vLLM-style chat and completions chunks (role chunk, usage on request, continuous usage,
//! `[DONE]`) and TGI's `/generate_stream` events, following `tests/fixtures/`.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::Value;

use super::faults::Fault;
use super::SimConfig;
use crate::protocol::decode::ServerTimes;
use crate::protocol::{Answer, Api, Failure, Protocol, ServedRequest};

/// The words the scripted model "generates", in turn. Each is one token.
const WORDS: [&str; 16] = [
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " a",
    " lazy",
    " dog",
    " while",
    " latency",
    " and",
    " throughput",
    " are",
    " measured",
    " here",
];

/// What one request will produce.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    protocol: &'static dyn Protocol,
    /// Stream or answer once.
    pub stream: bool,
    /// Output tokens.
    pub n_out: u32,
    /// Prompt tokens (whitespace-separated words: the scripted server's tokenizer).
    pub n_in: u32,
    /// The prompt's full blocks of `prefix_block_tokens` tokens, each hashed with every
    /// block before it (so equal hashes mean equal prefixes); empty without a prefix cache.
    pub block_hashes: Vec<u64>,
    /// Every output token is this word instead of the scripted sentence (`name_tokens`).
    pub token_word: Option<String>,
    finish_reason: &'static str,
    include_usage: bool,
    continuous_usage: bool,
    /// The request asked for the server's times (vLLM's `include_metrics`).
    pub include_metrics: bool,
    details: bool,
    model: String,
    id: String,
    /// Leave the finish out of the last chunk (the `no_finish` fault).
    pub no_finish: bool,
}

type Reject = (StatusCode, &'static str, String);

fn bad(msg: impl Into<String>) -> Reject {
    (StatusCode::BAD_REQUEST, "BadRequestError", msg.into())
}

/// The prompt's tokens (whitespace-separated words), in order: a string, a chat
/// message's `content`, or a list of either (messages are read in order).
fn prompt_words<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.extend(s.split_whitespace()),
        Value::Array(items) => items.iter().for_each(|i| prompt_words(i, out)),
        Value::Object(m) => {
            if let Some(c) = m.get("content") {
                prompt_words(c, out);
            }
        }
        _ => {}
    }
}

impl ResponsePlan {
    /// Check a request (read by `Protocol::served_request`, the parser the baseline
    /// server uses too) and work out what it will produce.
    pub fn from_request(
        cfg: &SimConfig,
        served: &ServedRequest,
        format: Api,
    ) -> Result<ResponsePlan, Reject> {
        let protocol = format.protocol();
        let model = match served.model {
            Some(m) if m != cfg.model => {
                return Err((
                    StatusCode::NOT_FOUND,
                    "NotFoundError",
                    format!("The model `{m}` does not exist."),
                ))
            }
            _ => cfg.model.clone(),
        };
        let mut words = Vec::new();
        prompt_words(served.prompt, &mut words);
        let max_tokens = served.max_tokens.unwrap_or(cfg.default_max_tokens);
        if let Some(limit) = cfg.max_model_len {
            // vLLM's check before streaming (its 400 and message, tests/fixtures).
            let n_in = words.len() as u32;
            if n_in >= limit || n_in + max_tokens > limit {
                return Err(bad(format!(
                    "'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This \
                     model's maximum context length is {limit} tokens and your request has \
                     {n_in} input tokens ({max_tokens} > {limit} - {n_in})."
                )));
            }
        }
        let natural = if served.ignore_eos {
            None
        } else {
            cfg.output_tokens
        };
        let (n_out, finish_reason) = match natural {
            Some(n) if n < max_tokens => (n.max(1), protocol.stop_reason()),
            _ => (max_tokens, "length"),
        };
        Ok(ResponsePlan {
            protocol,
            stream: served.stream,
            n_out,
            n_in: words.len() as u32,
            block_hashes: if cfg.prefix_cache_blocks > 0 {
                super::prefix_cache::block_hashes(&words, cfg.prefix_block_tokens)
            } else {
                Vec::new()
            },
            token_word: None,
            finish_reason,
            include_usage: served.include_usage,
            continuous_usage: served.continuous_usage,
            include_metrics: served.include_metrics,
            details: served.details,
            model,
            id: format!("sim-{:016x}", rand::random::<u64>()),
            no_finish: false,
        })
    }

    fn text(&self, first: u32, k: u32) -> String {
        match &self.token_word {
            Some(w) => w.repeat(k as usize),
            None => (first..first + k)
                .map(|i| WORDS[i as usize % WORDS.len()])
                .collect(),
        }
    }

    /// What every event of this answer repeats, for the protocol's encoders.
    fn answer(&self, created: u64) -> Answer<'_> {
        Answer {
            id: &self.id,
            created,
            model: &self.model,
            n_in: self.n_in,
            n_out: self.n_out,
            include_usage: self.include_usage,
            continuous_usage: self.continuous_usage,
            details: self.details,
            server_times: None,
        }
    }

    /// The bytes of chunk `index`, carrying tokens `first .. first + k`.
    pub fn chunk_bytes(&self, created: u64, index: u32, first: u32, k: u32) -> Bytes {
        let mut out = Vec::with_capacity(256 * k as usize);
        let last = first + k == self.n_out && !self.no_finish;
        let finish = last.then_some(self.finish_reason);
        let text = |i, k| self.text(i, k);
        self.protocol.push_chunk(
            &mut out,
            &self.answer(created),
            index,
            first,
            k,
            finish,
            &text,
        );
        Bytes::from(out)
    }

    /// What follows the last chunk: usage chunk and `[DONE]` (OpenAI), nothing (TGI).
    /// The server's `times` ride on the usage chunk when the request asked for them.
    pub fn trailer_bytes(&self, created: u64, times: Option<ServerTimes>) -> Bytes {
        let mut out = Vec::new();
        let answer = Answer {
            server_times: times.filter(|_| self.include_metrics),
            ..self.answer(created)
        };
        self.protocol.push_trailer(&mut out, &answer);
        Bytes::from(out)
    }

    /// Status and body of an HTTP-error fault, in the shapes vLLM (≥ 0.10.1) and TGI send.
    pub fn http_fault(&self, fault: Fault) -> (StatusCode, Value) {
        let (failure, msg) = match fault {
            Fault::Http429 => (Failure::Overloaded, "Model is overloaded"),
            Fault::Http503 => (Failure::Unavailable, "The engine is not ready or has died"),
            _ => (Failure::Internal, "Internal server error"),
        };
        let status =
            StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, self.protocol.error_body(msg, failure))
    }

    /// An in-band error event after HTTP 200 (vLLM's nested shape then `[DONE]`; TGI's
    /// native event).
    pub fn in_band_error_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.protocol.push_in_band_error(
            &mut out,
            "Request failed during generation: CUDA out of memory",
        );
        Bytes::from(out)
    }

    /// A clean end with no output token: the role chunk (chat) and a finish; TGI's EOS-only
    /// generation.
    pub fn empty_output_bytes(&self, created: u64) -> Bytes {
        let mut out = Vec::new();
        self.protocol
            .push_empty_output(&mut out, &self.answer(created));
        Bytes::from(out)
    }

    /// An event that is not valid JSON (cut off mid-object).
    pub fn malformed_bytes(&self) -> Bytes {
        Bytes::from_static(b"data: {\"choices\": [{\"index\": 0, \"text\": \"cut\n\n")
    }

    /// An event whose text carries bytes that are not UTF-8.
    pub fn invalid_utf8_bytes(&self) -> Bytes {
        let mut out = b"data: {\"choices\": [{\"index\": 0, \"text\": \"".to_vec();
        out.extend_from_slice(&[0xFF, 0xFE, 0xC3]);
        out.extend_from_slice(b"\", \"finish_reason\": null}]}\n\n");
        Bytes::from(out)
    }

    /// One line of 6 MiB (past the client's 4 MiB limit on a line or event).
    pub fn huge_line_bytes(&self) -> Bytes {
        let mut out = b"data: ".to_vec();
        out.resize(6 * 1024 * 1024, b'x');
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    /// A non-streaming answer.
    pub fn full_response(&self, created: u64) -> Value {
        let text = self.text(0, self.n_out);
        self.protocol
            .full(&self.answer(created), &text, self.finish_reason)
    }
}
