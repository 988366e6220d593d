//! TGI's native `/generate_stream`: the request body (`inputs` and `parameters`, with
//! `details` asked for), the decoder of its events (one per token, a final event carrying
//! `generated_text` and `details`, no `[DONE]`, in-band `{"error", "error_type"}` events
//! with HTTP 200) and the events the scripted server answers with.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::decode::{done, error_message, parse_event, Decoded, Usage};
use super::{push_event, Answer, Failure, Message, Protocol, RequestSettings, ServedRequest};
use crate::record::TokenSource;

/// The body of a streaming request; `extra_body` is merged into `parameters`.
pub fn request_body(
    prompt: &str,
    max_tokens: u32,
    temperature: f64,
    extra_body: &Map<String, Value>,
) -> Value {
    let mut params = Map::new();
    params.insert("max_new_tokens".into(), json!(max_tokens));
    params.insert("details".into(), json!(true));
    if temperature > 0.0 {
        params.insert("do_sample".into(), json!(true));
        params.insert("temperature".into(), json!(temperature));
    } else {
        // TGI rejects temperature 0: greedy is do_sample=false.
        params.insert("do_sample".into(), json!(false));
    }
    for (k, v) in extra_body {
        params.insert(k.clone(), v.clone());
    }
    json!({"inputs": prompt, "parameters": params, "stream": true})
}

/// One token's event; the last one carries `generated_text` (the text without a special
/// token) and, when asked for, `details`.
pub fn token_event(
    index: u32,
    id: u32,
    text: &str,
    special: bool,
    generated_text: Option<&str>,
    details: Option<Value>,
) -> Value {
    json!({"index": index, "token": {"id": id, "text": text, "logprob": -0.5, "special": special},
           "generated_text": generated_text, "details": details})
}

/// The `details` of a final event.
pub fn details(finish_reason: &str, generated_tokens: u32, input_length: u32) -> Value {
    json!({"finish_reason": finish_reason, "generated_tokens": generated_tokens, "seed": null,
           "input_length": input_length})
}

/// TGI's error shape: the body of an HTTP error, and an in-band error event.
pub fn error_body(message: &str, error_type: &str) -> Value {
    json!({"error": message, "error_type": error_type})
}

/// TGI's native `/generate_stream`.
#[derive(Debug, Clone, Copy)]
pub struct Native;

/// The one instance.
pub static NATIVE: Native = Native;

impl Protocol for Native {
    fn endpoint(&self, base: &str) -> String {
        format!("{base}{}", self.route())
    }

    fn route(&self) -> &'static str {
        "/generate_stream"
    }

    fn needs_model(&self) -> bool {
        false
    }

    fn can_force_output_len(&self) -> bool {
        false
    }

    fn request_body(
        &self,
        prompt: &str,
        _messages: Option<&[Message]>,
        max_tokens: u32,
        s: &RequestSettings,
    ) -> Value {
        // Text in, so a conversation arrives here already joined (`join_messages`).
        request_body(prompt, max_tokens, s.temperature, s.extra_body)
    }

    fn decode(&self, data: &str) -> Result<Decoded, String> {
        decode(data)
    }

    fn exact_token_source(&self) -> TokenSource {
        TokenSource::TgiTokens
    }

    fn finish_ends_stream(&self) -> bool {
        // The finish reason comes on the final event, which the decoder marks itself.
        false
    }

    fn served_request<'a>(&self, body: &'a Value) -> Result<ServedRequest<'a>, String> {
        let prompt = body
            .get("inputs")
            .ok_or_else(|| "missing field `inputs`".to_string())?;
        let params = body.get("parameters");
        let param = |k: &str| params.and_then(|p| p.get(k));
        let flag = |k: &str| param(k).and_then(Value::as_bool) == Some(true);
        Ok(ServedRequest {
            prompt,
            model: None,
            max_tokens: super::positive_u32(param("max_new_tokens"), "max_new_tokens")?,
            // /generate_stream always streams and has no stream options.
            stream: true,
            include_usage: false,
            continuous_usage: false,
            include_metrics: false,
            ignore_eos: flag("ignore_eos"),
            details: flag("details"),
        })
    }

    fn stop_reason(&self) -> &'static str {
        "eos_token"
    }

    fn push_chunk(
        &self,
        out: &mut Vec<u8>,
        a: &Answer,
        _index: u32,
        first: u32,
        k: u32,
        finish: Option<&str>,
        text: &dyn Fn(u32, u32) -> String,
    ) {
        // One event per token, whatever the chunking.
        for i in first..first + k {
            let finish = finish.filter(|_| i + 1 == first + k);
            let eos = finish == Some(self.stop_reason());
            let token = if eos { "</s>".to_string() } else { text(i, 1) };
            // generated_text holds the text without the special token.
            let n_text = if eos { a.n_out - 1 } else { a.n_out };
            let generated = finish.map(|_| text(0, n_text));
            let details = finish
                .filter(|_| a.details)
                .map(|f| details(f, a.n_out, a.n_in));
            let e = token_event(i + 1, i % 32000, &token, eos, generated.as_deref(), details);
            push_event(out, &e);
        }
    }

    fn push_trailer(&self, _out: &mut Vec<u8>, _answer: &Answer) {}

    fn error_body(&self, message: &str, failure: Failure) -> Value {
        let kind = match failure {
            Failure::Overloaded => "overloaded",
            Failure::Unavailable => "healthcheck",
            Failure::Internal => "incomplete_generation",
        };
        error_body(message, kind)
    }

    fn push_in_band_error(&self, out: &mut Vec<u8>, message: &str) {
        push_event(out, &error_body(message, "generation"));
    }

    fn push_empty_output(&self, out: &mut Vec<u8>, _answer: &Answer) {
        // An EOS-only generation: one special token, empty text.
        let mut e = token_event(1, 2, "</s>", true, Some(""), None);
        e["token"]["logprob"] = json!(-0.1);
        push_event(out, &e);
    }

    fn full(&self, _answer: &Answer, text: &str, _finish: &str) -> Value {
        json!({"generated_text": text})
    }
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(default, borrow)]
    token: Option<Token<'a>>,
    #[serde(default)]
    generated_text: Option<serde_json::Value>,
    #[serde(default)]
    details: Option<Details>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct Token<'a> {
    #[serde(default, borrow)]
    text: Cow<'a, str>,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    generated_tokens: Option<u32>,
    #[serde(default)]
    input_length: Option<u32>,
}

/// Decode one `/generate_stream` event's `data`.
pub fn decode(data: &str) -> Result<Decoded, String> {
    let Some(ev) = parse_event::<Event>(data)? else {
        return Ok(done());
    };
    let mut out = Decoded::default();
    if let Some(err) = ev.error.as_ref().filter(|v| !v.is_null()) {
        let msg = error_message(err);
        out.error = Some(match ev.error_type {
            Some(t) => format!("{t}: {msg}"),
            None => msg,
        });
        return Ok(out);
    }
    let Some(token) = ev.token else {
        return Err(format!(
            "TGI event without a token: {}",
            crate::util::truncate(data.trim(), 200)
        ));
    };
    out.exact_tokens = Some(1);
    // A special token (EOS) is a generated token but not output text.
    out.output = !token.special;
    if !token.special {
        out.text = token.text.into_owned();
    }
    if ev.generated_text.as_ref().is_some_and(|v| !v.is_null()) {
        out.final_event = true;
        match ev.details {
            Some(d) => {
                out.finish_reason = d.finish_reason.or_else(|| Some("unknown".into()));
                out.usage = Some(Usage {
                    prompt: d.input_length,
                    completion: d.generated_tokens,
                });
            }
            None => out.finish_reason = Some("unknown".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Api;

    fn decode_fixture(name: &str) -> Vec<Decoded> {
        crate::test_support::decode_fixture(Api::Tgi, name)
    }

    #[test]
    fn generate_stream_with_details() {
        let d = decode_fixture("tgi_generate_stream.sse");
        assert_eq!(d.len(), 10, "ten tokens, keep-alive dispatches nothing");
        assert!(d.iter().all(|e| e.exact_tokens == Some(1)));
        let last = d.last().expect("last");
        assert!(last.final_event);
        assert_eq!(last.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            last.usage,
            Some(Usage {
                prompt: Some(3),
                completion: Some(10)
            })
        );
        let text: String = d.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(text, " for /api/v1/projects/1");
    }

    #[test]
    fn nodetails_and_legacy_framing_give_the_same_tokens() {
        let a = decode_fixture("tgi_generate_stream_nodetails.sse");
        let b = decode_fixture("tgi_generate_stream_legacy_axum06.sse");
        let full = decode_fixture("tgi_generate_stream.sse");
        for d in [&a, &b] {
            assert_eq!(d.len(), full.len());
            assert!(d.last().expect("last").final_event);
            let text: String = d.iter().map(|e| e.text.as_str()).collect();
            let want: String = full.iter().map(|e| e.text.as_str()).collect();
            assert_eq!(text, want);
        }
        assert_eq!(a.last().expect("last").usage, None);
    }

    #[test]
    fn in_band_errors() {
        let d = decode_fixture("tgi_generate_stream_error_overloaded.sse");
        assert_eq!(
            d[0].error.as_deref(),
            Some("overloaded: Model is overloaded")
        );
        let d = decode_fixture("tgi_generate_stream_error_validation.sse");
        assert!(d[0]
            .error
            .as_deref()
            .is_some_and(|m| m.starts_with("validation: Input validation error")));
    }

    #[test]
    fn special_token_is_a_token_but_not_output() {
        let d = decode(
            r#"{"index":5,"token":{"id":2,"text":"</s>","logprob":-0.1,"special":true},"generated_text":"x","details":{"finish_reason":"eos_token","generated_tokens":5,"seed":null}}"#,
        )
        .expect("ok");
        assert!(!d.output);
        assert_eq!(d.exact_tokens, Some(1));
        assert!(d.text.is_empty());
        assert_eq!(d.finish_reason.as_deref(), Some("eos_token"));
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(decode("{\"index\":1,\"token\":").is_err());
        assert!(decode("{\"index\":1}").is_err());
    }
}
