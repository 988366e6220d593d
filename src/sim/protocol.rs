//! What the scripted server makes of one request: its checks (as vLLM and TGI make them)
//! and the plan of what it will stream, written with the encoders of `crate::protocol`:
//! vLLM-style chat and completions chunks (role chunk, usage on request, continuous usage,
//! `[DONE]`) and TGI's `/generate_stream` events, following `tests/fixtures/`.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::faults::Fault;
use super::SimConfig;
use crate::protocol::{openai, push_event, tgi, Api, DONE_EVENT};

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
    format: Api,
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

fn positive_u32(v: Option<&Value>, name: &str) -> Result<Option<u32>, Reject> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
            _ => Err(bad(format!("{name} must be a positive integer, got {x}"))),
        },
    }
}

impl ResponsePlan {
    /// Validate a request body and work out what it will produce.
    pub fn from_request(
        cfg: &SimConfig,
        body: &Value,
        format: Api,
    ) -> Result<ResponsePlan, Reject> {
        let mut words = Vec::new();
        let (params, model) = match format {
            Api::Tgi => {
                let inputs = body
                    .get("inputs")
                    .ok_or_else(|| bad("missing field `inputs`"))?;
                let params = body.get("parameters").cloned().unwrap_or(json!({}));
                prompt_words(inputs, &mut words);
                (params, cfg.model.clone())
            }
            Api::Chat | Api::Completions => {
                let model = body.get("model").and_then(Value::as_str).unwrap_or("");
                if model != cfg.model {
                    return Err((
                        StatusCode::NOT_FOUND,
                        "NotFoundError",
                        format!("The model `{model}` does not exist."),
                    ));
                }
                let prompt = if format == Api::Chat {
                    body.get("messages")
                        .ok_or_else(|| bad("missing field `messages`"))?
                } else {
                    body.get("prompt")
                        .ok_or_else(|| bad("missing field `prompt`"))?
                };
                prompt_words(prompt, &mut words);
                (body.clone(), model.to_string())
            }
        };
        // OpenAI requests are read by the parser the baseline server uses too.
        let served = match format {
            Api::Tgi => None,
            _ => Some(openai::served_request(body).map_err(bad)?),
        };
        let max_tokens = match &served {
            None => positive_u32(params.get("max_new_tokens"), "max_new_tokens")?,
            Some(r) => r.max_tokens,
        }
        .unwrap_or(cfg.default_max_tokens);
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
        let ignore_eos = match &served {
            Some(r) => r.ignore_eos,
            None => params.get("ignore_eos").and_then(Value::as_bool) == Some(true),
        };
        let natural = if ignore_eos { None } else { cfg.output_tokens };
        let (n_out, finish_reason) = match natural {
            Some(n) if n < max_tokens => (n.max(1), "stop"),
            _ => (max_tokens, "length"),
        };
        let finish_reason = match (format, finish_reason) {
            (Api::Tgi, "stop") => "eos_token",
            (_, r) => r,
        };
        // TGI's /generate_stream always streams and has no stream options.
        let stream = served.is_none_or(|r| r.stream);
        Ok(ResponsePlan {
            format,
            stream,
            n_out,
            n_in: words.len() as u32,
            block_hashes: if cfg.prefix_cache_blocks > 0 {
                super::prefix_cache::block_hashes(&words, cfg.prefix_block_tokens)
            } else {
                Vec::new()
            },
            token_word: None,
            finish_reason,
            include_usage: served.is_some_and(|r| r.include_usage),
            continuous_usage: served.is_some_and(|r| r.continuous_usage),
            details: params.get("details").and_then(Value::as_bool) == Some(true),
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

    fn usage(&self, completion: u32) -> Value {
        openai::usage(u64::from(self.n_in), u64::from(completion))
    }

    /// The OpenAI encoder of this response.
    fn response(&self, created: u64) -> openai::Response<'_> {
        openai::Response {
            chat: self.format == Api::Chat,
            id: &self.id,
            created,
            model: &self.model,
        }
    }

    /// The bytes of chunk `index`, carrying tokens `first .. first + k`.
    pub fn chunk_bytes(&self, created: u64, index: u32, first: u32, k: u32) -> Bytes {
        let mut out = Vec::with_capacity(256 * k as usize);
        let last = first + k == self.n_out && !self.no_finish;
        let finish = last.then_some(self.finish_reason);
        match self.format {
            Api::Chat | Api::Completions => {
                let r = self.response(created);
                if index == 0 && self.format == Api::Chat {
                    let mut role = r.role_chunk();
                    if self.continuous_usage {
                        role["usage"] = self.usage(0);
                    }
                    push_event(&mut out, &role);
                }
                let mut c = r.text_chunk(&self.text(first, k), finish);
                if self.continuous_usage {
                    c["usage"] = self.usage(first + k);
                } else if self.format == Api::Completions {
                    c["usage"] = Value::Null;
                }
                push_event(&mut out, &c);
            }
            Api::Tgi => {
                for i in first..first + k {
                    let is_last = i + 1 == self.n_out && !self.no_finish;
                    let eos = is_last && self.finish_reason == "eos_token";
                    let text = if eos {
                        "</s>".to_string()
                    } else {
                        self.text(i, 1)
                    };
                    // TGI's generated_text holds the text without the special token.
                    let n_text = if eos { self.n_out - 1 } else { self.n_out };
                    let generated = is_last.then(|| self.text(0, n_text));
                    let details = (is_last && self.details)
                        .then(|| tgi::details(self.finish_reason, self.n_out, self.n_in));
                    let e = tgi::token_event(
                        i + 1,
                        i % 32000,
                        &text,
                        eos,
                        generated.as_deref(),
                        details,
                    );
                    push_event(&mut out, &e);
                }
            }
        }
        Bytes::from(out)
    }

    /// What follows the last chunk: usage chunk and `[DONE]` (OpenAI), nothing (TGI).
    pub fn trailer_bytes(&self, created: u64) -> Bytes {
        let mut out = Vec::new();
        if self.format == Api::Tgi {
            return Bytes::new();
        }
        if self.include_usage {
            push_event(
                &mut out,
                &self.response(created).usage_chunk(self.usage(self.n_out)),
            );
        }
        out.extend_from_slice(DONE_EVENT);
        Bytes::from(out)
    }

    /// Status and body of an HTTP-error fault, in the shapes vLLM (≥ 0.10.1) and TGI send.
    pub fn http_fault(&self, fault: Fault) -> (StatusCode, Value) {
        let (status, msg, kind, tgi_kind) = match fault {
            Fault::Http429 => (
                StatusCode::TOO_MANY_REQUESTS,
                "Model is overloaded",
                "TooManyRequests",
                "overloaded",
            ),
            Fault::Http503 => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The engine is not ready or has died",
                "ServiceUnavailable",
                "healthcheck",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                "InternalServerError",
                "incomplete_generation",
            ),
        };
        let body = match self.format {
            Api::Tgi => tgi::error_body(msg, tgi_kind),
            _ => openai::error_body(msg, kind, status.as_u16()),
        };
        (status, body)
    }

    /// An in-band error event after HTTP 200 (vLLM's nested shape then `[DONE]`; TGI's
    /// native event).
    pub fn in_band_error_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            Api::Tgi => push_event(
                &mut out,
                &tgi::error_body(
                    "Request failed during generation: CUDA out of memory",
                    "generation",
                ),
            ),
            _ => {
                push_event(
                    &mut out,
                    &openai::error_body("Internal server error", "InternalServerError", 500),
                );
                out.extend_from_slice(DONE_EVENT);
            }
        }
        Bytes::from(out)
    }

    /// A clean end with no output token: the role chunk (chat) and a finish; TGI's EOS-only
    /// generation.
    pub fn empty_output_bytes(&self, created: u64) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            Api::Chat | Api::Completions => {
                let r = self.response(created);
                if self.format == Api::Chat {
                    push_event(&mut out, &r.role_chunk());
                }
                push_event(&mut out, &r.finish_chunk("stop"));
                out.extend_from_slice(DONE_EVENT);
            }
            Api::Tgi => {
                let mut e = tgi::token_event(1, 2, "</s>", true, Some(""), None);
                e["token"]["logprob"] = json!(-0.1);
                push_event(&mut out, &e);
            }
        }
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
        match self.format {
            Api::Tgi => json!({"generated_text": text}),
            _ => self
                .response(created)
                .full(&text, self.finish_reason, self.usage(self.n_out)),
        }
    }
}
