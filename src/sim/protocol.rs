//! Wire formats the scripted server writes: vLLM-style OpenAI chat and completions chunks
//! (role chunk, usage on request, continuous usage, `[DONE]`) and TGI's `/generate_stream`
//! events (one per token, final event with `details`), following `tests/fixtures/`.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::faults::Fault;
use super::SimConfig;

/// Which protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/generate_stream` (and `/generate` would be the same without streaming).
    Tgi,
}

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
pub struct Plan {
    format: Format,
    /// Stream or answer once.
    pub stream: bool,
    /// Output tokens.
    pub n_out: u32,
    /// Prompt tokens (whitespace-separated words: the scripted server's tokenizer).
    n_in: u32,
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

fn count_words(v: &Value) -> u32 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u32,
        Value::Array(items) => items.iter().map(count_words).sum(),
        Value::Object(m) => m.get("content").map(count_words).unwrap_or(0),
        _ => 0,
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

impl Plan {
    /// Validate a request body and work out what it will produce.
    pub fn from_request(cfg: &SimConfig, body: &Value, format: Format) -> Result<Plan, Reject> {
        let (n_in, params, model) = match format {
            Format::Tgi => {
                let inputs = body
                    .get("inputs")
                    .ok_or_else(|| bad("missing field `inputs`"))?;
                let params = body.get("parameters").cloned().unwrap_or(json!({}));
                (count_words(inputs), params, cfg.model.clone())
            }
            Format::Chat | Format::Completions => {
                let model = body.get("model").and_then(Value::as_str).unwrap_or("");
                if model != cfg.model {
                    return Err((
                        StatusCode::NOT_FOUND,
                        "NotFoundError",
                        format!("The model `{model}` does not exist."),
                    ));
                }
                let n_in = if format == Format::Chat {
                    let msgs = body
                        .get("messages")
                        .ok_or_else(|| bad("missing field `messages`"))?;
                    count_words(msgs)
                } else {
                    count_words(
                        body.get("prompt")
                            .ok_or_else(|| bad("missing field `prompt`"))?,
                    )
                };
                (n_in, body.clone(), model.to_string())
            }
        };
        let max_tokens = match format {
            Format::Tgi => positive_u32(params.get("max_new_tokens"), "max_new_tokens")?,
            _ => {
                match positive_u32(params.get("max_completion_tokens"), "max_completion_tokens")? {
                    Some(n) => Some(n),
                    None => positive_u32(params.get("max_tokens"), "max_tokens")?,
                }
            }
        }
        .unwrap_or(cfg.default_max_tokens);
        let ignore_eos = params.get("ignore_eos").and_then(Value::as_bool) == Some(true);
        let natural = if ignore_eos { None } else { cfg.output_tokens };
        let (n_out, finish_reason) = match natural {
            Some(n) if n < max_tokens => (n.max(1), "stop"),
            _ => (max_tokens, "length"),
        };
        let finish_reason = match (format, finish_reason) {
            (Format::Tgi, "stop") => "eos_token",
            (_, r) => r,
        };
        let opts = body.get("stream_options");
        let stream = match format {
            Format::Tgi => true,
            _ => body.get("stream").and_then(Value::as_bool) == Some(true),
        };
        if opts.is_some_and(|o| !o.is_null()) && !stream {
            return Err(bad(
                "Stream options can only be defined when `stream=True`.",
            ));
        }
        let flag = |k: &str| opts.and_then(|o| o.get(k)).and_then(Value::as_bool) == Some(true);
        Ok(Plan {
            format,
            stream,
            n_out,
            n_in,
            finish_reason,
            include_usage: flag("include_usage"),
            continuous_usage: flag("include_usage") && flag("continuous_usage_stats"),
            details: params.get("details").and_then(Value::as_bool) == Some(true),
            model,
            id: format!("sim-{:016x}", rand::random::<u64>()),
            no_finish: false,
        })
    }

    fn text(first: u32, k: u32) -> String {
        (first..first + k)
            .map(|i| WORDS[i as usize % WORDS.len()])
            .collect()
    }

    fn usage(&self, completion: u32) -> Value {
        json!({"prompt_tokens": self.n_in, "total_tokens": self.n_in + completion, "completion_tokens": completion})
    }

    fn event(out: &mut Vec<u8>, v: &Value) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(v.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// The bytes of chunk `index`, carrying tokens `first .. first + k`.
    pub fn chunk_bytes(&self, created: u64, index: u32, first: u32, k: u32) -> Bytes {
        let mut out = Vec::with_capacity(256 * k as usize);
        let last = first + k == self.n_out && !self.no_finish;
        let finish = if last {
            json!(self.finish_reason)
        } else {
            Value::Null
        };
        match self.format {
            Format::Chat => {
                if index == 0 {
                    let mut role = json!({"id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]});
                    if self.continuous_usage {
                        role["usage"] = self.usage(0);
                    }
                    Self::event(&mut out, &role);
                }
                let mut c = json!({"id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model,
                    "choices": [{"index": 0, "delta": {"content": Self::text(first, k)}, "logprobs": null, "finish_reason": finish}]});
                if self.continuous_usage {
                    c["usage"] = self.usage(first + k);
                }
                Self::event(&mut out, &c);
            }
            Format::Completions => {
                let usage = if self.continuous_usage {
                    self.usage(first + k)
                } else {
                    Value::Null
                };
                let c = json!({"id": self.id, "object": "text_completion", "created": created, "model": self.model,
                    "choices": [{"index": 0, "text": Self::text(first, k), "logprobs": null, "finish_reason": finish, "stop_reason": null}],
                    "usage": usage});
                Self::event(&mut out, &c);
            }
            Format::Tgi => {
                for i in first..first + k {
                    let is_last = i + 1 == self.n_out && !self.no_finish;
                    let eos = is_last && self.finish_reason == "eos_token";
                    let text = if eos {
                        "</s>".to_string()
                    } else {
                        Self::text(i, 1)
                    };
                    let mut e = json!({"index": i + 1, "token": {"id": i % 32000, "text": text, "logprob": -0.5, "special": eos},
                        "generated_text": null, "details": null});
                    if is_last {
                        // TGI's generated_text holds the text without the special token.
                        let n_text = if eos { self.n_out - 1 } else { self.n_out };
                        e["generated_text"] = json!(Self::text(0, n_text));
                        if self.details {
                            e["details"] = json!({"finish_reason": self.finish_reason, "generated_tokens": self.n_out,
                                "seed": null, "input_length": self.n_in});
                        }
                    }
                    Self::event(&mut out, &e);
                }
            }
        }
        Bytes::from(out)
    }

    /// What follows the last chunk: usage chunk and `[DONE]` (OpenAI), nothing (TGI).
    pub fn trailer_bytes(&self, created: u64) -> Bytes {
        let mut out = Vec::new();
        if self.format == Format::Tgi {
            return Bytes::new();
        }
        if self.include_usage {
            let object = if self.format == Format::Chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let u = json!({"id": self.id, "object": object, "created": created, "model": self.model,
                "choices": [], "usage": self.usage(self.n_out)});
            Self::event(&mut out, &u);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
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
            Format::Tgi => json!({"error": msg, "error_type": tgi_kind}),
            _ => {
                json!({"error": {"message": msg, "type": kind, "param": null, "code": status.as_u16()}})
            }
        };
        (status, body)
    }

    /// An in-band error event after HTTP 200 (vLLM's nested shape then `[DONE]`; TGI's
    /// native event).
    pub fn in_band_error_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            Format::Tgi => Self::event(
                &mut out,
                &json!({"error": "Request failed during generation: CUDA out of memory", "error_type": "generation"}),
            ),
            _ => {
                Self::event(
                    &mut out,
                    &json!({"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}),
                );
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
        Bytes::from(out)
    }

    /// A clean end with no output token: the role chunk (chat) and a finish; TGI's EOS-only
    /// generation.
    pub fn empty_output_bytes(&self, created: u64) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            Format::Chat => {
                Self::event(
                    &mut out,
                    &json!({"id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]}),
                );
                Self::event(
                    &mut out,
                    &json!({"id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model,
                    "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]}),
                );
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Format::Completions => {
                Self::event(
                    &mut out,
                    &json!({"id": self.id, "object": "text_completion", "created": created, "model": self.model,
                    "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop", "stop_reason": null}]}),
                );
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Format::Tgi => Self::event(
                &mut out,
                &json!({"index": 1, "token": {"id": 2, "text": "</s>", "logprob": -0.1, "special": true},
                "generated_text": "", "details": null}),
            ),
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
        let text = Self::text(0, self.n_out);
        match self.format {
            Format::Chat => {
                json!({"id": self.id, "object": "chat.completion", "created": created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": self.finish_reason}],
                "usage": self.usage(self.n_out)})
            }
            Format::Completions => {
                json!({"id": self.id, "object": "text_completion", "created": created, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": self.finish_reason}],
                "usage": self.usage(self.n_out)})
            }
            Format::Tgi => json!({"generated_text": text}),
        }
    }
}
