//! TGI's native `/generate_stream`: the request body (`inputs` and `parameters`, with
//! `details` asked for), the decoder of its events (one per token, a final event carrying
//! `generated_text` and `details`, no `[DONE]`, in-band `{"error", "error_type"}` events
//! with HTTP 200) and the events the scripted server answers with.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::decode::{done, error_message, parse_event, Decoded, Usage};

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
