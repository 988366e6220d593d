//! OpenAI-style streaming, `/v1/chat/completions` and `/v1/completions` as vLLM, TGI's
//! messages API, `transformers serve` and other compatible servers speak it: the request
//! body a client sends, the decoder of the events it gets back, and the events and error
//! bodies the built-in servers answer with (vLLM's shapes, as in `tests/fixtures/`).
//!
//! Decoding uses typed serde structs with borrowed strings (not `serde_json::Value`) to keep
//! the per-event cost low; unknown fields are ignored so new server versions keep working.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::decode::{done, error_message, ms_to_us, parse_event, Decoded, ServerTimes, Usage};
use super::{push_event, Answer, Failure, Message, Protocol, ServedRequest, DONE_EVENT};
use crate::record::TokenSource;

/// A server's way of forcing the output length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForceLen {
    /// vLLM (and SGLang): `ignore_eos: true`, `min_tokens: N`.
    Vllm,
    /// `transformers serve`: `generation_config: '{"min_new_tokens": N}'`.
    Transformers,
}

impl ForceLen {
    /// Every way, in the order choices are listed.
    pub const ALL: [ForceLen; 2] = [ForceLen::Vllm, ForceLen::Transformers];
}

/// The body of a streaming chat (`chat`: `messages`, a conversation's history, or else one
/// user message of `prompt`) or completions request (`prompt`).
pub fn request_body(
    chat: bool,
    prompt: &str,
    messages: Option<&[super::Message]>,
    max_tokens: u32,
    s: &super::RequestSettings,
) -> Value {
    let mut body = if chat {
        let messages = match messages {
            Some(m) => json!(m),
            None => json!([{"role": "user", "content": prompt}]),
        };
        json!({
            "model": s.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": s.temperature,
            "stream": true,
        })
    } else {
        json!({
            "model": s.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": s.temperature,
            "stream": true,
        })
    };
    match s.force_output_len {
        Some(ForceLen::Vllm) => {
            body["ignore_eos"] = json!(true);
            body["min_tokens"] = json!(max_tokens);
        }
        Some(ForceLen::Transformers) => {
            body["generation_config"] = json!(json!({"min_new_tokens": max_tokens}).to_string());
        }
        None => {}
    }
    if s.include_metrics {
        body["include_metrics"] = json!(true);
    }
    if s.include_usage {
        let mut opts = Map::new();
        opts.insert("include_usage".into(), json!(true));
        if s.continuous_usage {
            opts.insert("continuous_usage_stats".into(), json!(true));
        }
        body["stream_options"] = Value::Object(opts);
    }
    if let Value::Object(map) = &mut body {
        for (k, v) in s.extra_body {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

/// vLLM's per-request `metrics` object for `times` (its field names; milliseconds; its
/// `mean_itl_ms` is the decode time over the gaps between `n_out` tokens).
pub fn metrics(times: &ServerTimes, n_out: u32) -> Value {
    let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
    let decode = ms(times.decode_us);
    let gaps = n_out.saturating_sub(1);
    json!({
        "time_to_first_token_ms": ms(times.prefill_us),
        "generation_time_ms": decode,
        "queue_time_ms": ms(times.queue_us),
        "mean_itl_ms": decode.filter(|_| gaps > 0).map(|d| d / f64::from(gaps)),
    })
}

/// A usage block, in vLLM's key order.
pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion})
}

/// What every event of one response repeats: the server side's encoder.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Chat (`chat.completion.chunk` deltas) or completions (`text_completion`).
    pub chat: bool,
    /// The response id.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: &'a str,
}

impl Response<'_> {
    fn chunk_object(&self) -> &'static str {
        if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        }
    }

    fn chunk(&self, choice: Value) -> Value {
        json!({"id": self.id, "object": self.chunk_object(), "created": self.created,
               "model": self.model, "choices": [choice]})
    }

    /// The chat event that opens a vLLM stream: the assistant role, no content yet (not
    /// output: it never starts the TTFT clock). Completions have none.
    pub fn role_chunk(&self) -> Value {
        self.chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""},
                          "logprobs": null, "finish_reason": null}),
        )
    }

    /// A chunk carrying `text`, ending the choice with `finish` when given.
    pub fn text_chunk(&self, text: &str, finish: Option<&str>) -> Value {
        if self.chat {
            self.chunk(
                json!({"index": 0, "delta": {"content": text}, "logprobs": null,
                              "finish_reason": finish}),
            )
        } else {
            self.chunk(json!({"index": 0, "text": text, "logprobs": null,
                              "finish_reason": finish, "stop_reason": null}))
        }
    }

    /// A chunk that only ends the choice (chat: an empty delta; completions: no text).
    pub fn finish_chunk(&self, finish: &str) -> Value {
        if self.chat {
            self.chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}))
        } else {
            self.text_chunk("", Some(finish))
        }
    }

    /// The usage-only chunk that follows the last choice when the client asked for usage.
    pub fn usage_chunk(&self, usage: Value) -> Value {
        json!({"id": self.id, "object": self.chunk_object(), "created": self.created,
               "model": self.model, "choices": [], "usage": usage})
    }

    /// A whole answer, for a request that did not ask to stream.
    pub fn full(&self, text: &str, finish: &str, usage: Value) -> Value {
        let (object, choice) = if self.chat {
            (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                       "logprobs": null, "finish_reason": finish}),
            )
        } else {
            (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish}),
            )
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": [choice], "usage": usage})
    }
}

/// vLLM's error object (≥ 0.10.1), the body of an HTTP error and, nested in an event, an
/// in-band error after HTTP 200.
pub fn error_body(message: &str, kind: &str, code: u16) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    /// vLLM's per-request times (0.33: on the final usage chunk, asked for with
    /// `include_metrics` when the server runs with `--enable-per-request-metrics`). Read
    /// loosely (a `Value`): an odd field there must not fail a request that streamed well.
    #[serde(default)]
    metrics: Option<Value>,
    /// llama.cpp's per-request times (on its finishing chunk, always sent).
    #[serde(default)]
    timings: Option<Value>,
}

impl Chunk<'_> {
    /// The server's times on this chunk, from whichever server's block it carries.
    fn server_times(&self) -> Option<ServerTimes> {
        let field = |block: &Value, k: &str| ms_to_us(block.get(k).and_then(Value::as_f64));
        let times = match (&self.metrics, &self.timings) {
            (Some(m), _) if m.is_object() => ServerTimes {
                queue_us: field(m, "queue_time_ms"),
                prefill_us: field(m, "time_to_first_token_ms"),
                decode_us: field(m, "generation_time_ms"),
            },
            (_, Some(t)) => ServerTimes {
                queue_us: None,
                prefill_us: field(t, "prompt_ms"),
                decode_us: field(t, "predicted_ms"),
            },
            _ => return None,
        };
        times.any().then_some(times)
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// Decode one event's `data`. `Err` means the event is malformed (not JSON, or not an
/// object of the expected shape).
pub fn decode(data: &str) -> Result<Decoded, String> {
    let Some(chunk) = parse_event::<Chunk>(data)? else {
        return Ok(done());
    };
    let mut out = Decoded::default();
    if let Some(err) = chunk.error.as_ref().filter(|v| !v.is_null()) {
        out.error = Some(error_message(err));
        return Ok(out);
    }
    if chunk.object.as_deref() == Some("error") {
        out.error = Some(
            chunk
                .message
                .as_ref()
                .map(error_message)
                .unwrap_or_else(|| data.trim().to_string()),
        );
        return Ok(out);
    }
    out.server_times = chunk.server_times();
    let choices = chunk.choices.unwrap_or_default();
    for choice in &choices {
        if let Some(delta) = &choice.delta {
            for part in [&delta.content, &delta.reasoning_content, &delta.reasoning]
                .into_iter()
                .flatten()
            {
                out.text.push_str(part);
            }
            let has_tool_call =
                matches!(&delta.tool_calls, Some(serde_json::Value::Array(a)) if !a.is_empty());
            out.output |= has_tool_call;
        }
        if let Some(text) = &choice.text {
            out.text.push_str(text);
        }
        if let Some(reason) = choice.finish_reason.as_deref().filter(|r| !r.is_empty()) {
            out.finish_reason = Some(reason.to_string());
        }
    }
    out.output |= !out.text.is_empty();
    if let Some(u) = chunk.usage {
        let usage = Usage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
        };
        if !choices.is_empty() {
            out.cumulative_tokens = usage.completion;
        }
        out.usage = Some(usage);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Api;

    fn decode_fixture(name: &str) -> Vec<Decoded> {
        crate::test_support::decode_fixture(Api::Chat, name)
    }

    fn text_of(d: &[Decoded]) -> String {
        d.iter().map(|e| e.text.as_str()).collect()
    }

    #[test]
    fn vllm_chat_role_chunk_is_not_output_and_finish_chunk_text_is_kept() {
        let d = decode_fixture("vllm_chat_stream.sse");
        assert!(!d[0].output, "role-only first chunk");
        assert!(d[1].output);
        let finish: Vec<_> = d.iter().filter_map(|e| e.finish_reason.clone()).collect();
        assert_eq!(finish, ["stop"]);
        let usage = d.iter().rev().find_map(|e| e.usage).expect("usage chunk");
        assert!(usage.completion.is_some() && usage.prompt.is_some());
        assert!(d.last().expect("events").done);
        // The usage chunk has `choices: []`: final usage, not continuous.
        assert!(d.iter().all(|e| e.cumulative_tokens.is_none()));
        assert!(!text_of(&d).is_empty());
    }

    #[test]
    fn vllm_continuous_usage_gives_cumulative_counts() {
        let d = decode_fixture("vllm_chat_stream_continuous_usage.sse");
        let cum: Vec<u32> = d.iter().filter_map(|e| e.cumulative_tokens).collect();
        assert_eq!(cum[0], 0, "role chunk carries completion_tokens 0");
        assert!(cum.windows(2).all(|w| w[0] <= w[1]), "{cum:?}");
        let last = d.iter().rev().find_map(|e| e.usage).expect("usage");
        assert_eq!(last.completion, cum.last().copied());
        assert_eq!(
            d.iter()
                .filter_map(|e| e.finish_reason.as_deref())
                .next_back(),
            Some("length")
        );
    }

    #[test]
    fn vllm_0_24_captured_streams_give_six_tokens_and_one_final_usage() {
        // Captured from vLLM 0.24.0 on the GPU machine (max_tokens 6, docs/real_servers.md):
        // chat's first chunk has `prompt_text` and `prompt_token_ids` (null) at the top level,
        // choices carry `token_ids: null`, and the final usage chunk adds `system_fingerprint`.
        for (name, first_is_output) in [
            ("vllm_0_24_chat_stream_continuous_usage.sse", false),
            ("vllm_0_24_completions_stream.sse", true),
            ("vllm_0_24_completions_stream_continuous_usage.sse", true),
        ] {
            let d = decode_fixture(name);
            assert_eq!(d[0].output, first_is_output, "{name}");
            let outputs: Vec<&str> = d
                .iter()
                .filter(|e| e.output)
                .map(|e| e.text.as_str())
                .collect();
            assert_eq!(outputs.len(), 6, "{name}: {outputs:?}");
            assert_eq!(outputs.concat(), "ær især især is", "{name}");
            let finish: Vec<_> = d.iter().filter_map(|e| e.finish_reason.clone()).collect();
            assert_eq!(finish, ["length"], "{name}");
            assert!(d.last().expect("events").done, "{name}");
            if name.contains("continuous") {
                let last = d.iter().rev().find_map(|e| e.usage).expect("usage");
                assert_eq!(last.completion, Some(6), "{name}");
                let cum: Vec<u32> = d.iter().filter_map(|e| e.cumulative_tokens).collect();
                assert_eq!(cum.last(), Some(&6), "{name}: {cum:?}");
            } else {
                assert!(
                    d.iter().all(|e| e.usage.is_none()),
                    "{name}: no usage asked"
                );
            }
        }
    }

    #[test]
    fn the_server_times_of_vllm_metrics_and_llama_cpp_timings_are_read() {
        // vLLM 0.33's `metrics` on the final usage chunk; its TTFT counts from scheduling,
        // so it is the prefill. llama.cpp's `timings` on its finishing chunk: no queue.
        for (name, want) in [
            (
                "vllm_0_33_chat_stream_metrics.sse",
                ServerTimes {
                    queue_us: Some(12_750),
                    prefill_us: Some(41_250),
                    decode_us: Some(36_500),
                },
            ),
            (
                "llamacpp_chat_stream.sse",
                ServerTimes {
                    queue_us: None,
                    prefill_us: Some(18_512),
                    decode_us: Some(52_004),
                },
            ),
        ] {
            let d = decode_fixture(name);
            let times: Vec<_> = d.iter().filter_map(|e| e.server_times).collect();
            assert_eq!(times, [want], "{name}");
            assert_eq!(text_of(&d), "Deep learning is a subset of", "{name}");
        }
        // A block of nulls, negatives or non-numbers says nothing (never a made-up zero).
        let d = decode(
            r#"{"choices":[],"usage":{"completion_tokens":1},
                "metrics":{"queue_time_ms":null,"time_to_first_token_ms":-1,
                           "generation_time_ms":"soon"}}"#,
        )
        .expect("decodes");
        assert_eq!(d.server_times, None);
        assert_eq!(ms_to_us(Some(f64::NAN)), None);
        assert_eq!(ms_to_us(Some(1e12)), Some(u32::MAX));
    }

    #[test]
    fn every_openai_fixture_decodes() {
        for name in [
            "vllm_chat_stream.sse",
            "vllm_chat_stream_continuous_usage.sse",
            "vllm_chat_stream_no_usage.sse",
            "vllm_chat_stream_v0_6.sse",
            "vllm_completions_stream.sse",
            "vllm_completions_stream_continuous_usage.sse",
            "vllm_completions_stream_v0_6.sse",
            "vllm_0_24_chat_stream_continuous_usage.sse",
            "vllm_0_24_completions_stream.sse",
            "vllm_0_24_completions_stream_continuous_usage.sse",
            "vllm_0_33_chat_stream_metrics.sse",
            "llamacpp_chat_stream.sse",
            "tgi_chat_stream.sse",
            "tgi_chat_stream_no_usage.sse",
            "tgi_completions_stream.sse",
        ] {
            let d = decode_fixture(name);
            assert!(d.iter().any(|e| e.output), "{name}: no output");
            assert!(
                d.iter().all(|e| e.error.is_none()),
                "{name}: spurious error"
            );
            assert_eq!(
                d.iter().filter(|e| e.finish_reason.is_some()).count(),
                1,
                "{name}: exactly one finish"
            );
        }
    }

    #[test]
    fn completions_first_chunk_is_output_and_tgi_empty_finish_reason_is_none() {
        let d = decode_fixture("vllm_completions_stream.sse");
        assert!(d[0].output);
        assert_eq!(d[0].text, " Paris");
        let t = decode_fixture("tgi_completions_stream.sse");
        assert!(t[0].finish_reason.is_none(), "TGI sends finish_reason \"\"");
        let last = t
            .iter()
            .rev()
            .find(|e| e.finish_reason.is_some())
            .expect("fin");
        assert!(
            last.usage.is_some(),
            "TGI completions final chunk has usage"
        );
    }

    #[test]
    fn tgi_chat_every_delta_has_role_but_content_decides_output() {
        let d = decode_fixture("tgi_chat_stream.sse");
        assert!(d[0].output, "TGI's first chunk already has text");
        let fin = d
            .iter()
            .find(|e| e.finish_reason.is_some())
            .expect("finish");
        assert_eq!(fin.finish_reason.as_deref(), Some("stop"));
        assert!(!fin.output, "EOS gives content \"\"");
        assert!(d.iter().any(|e| e.usage.is_some()));
    }

    #[test]
    fn in_band_errors_of_every_shape() {
        for (name, msg) in [
            (
                "vllm_chat_stream_midstream_error.sse",
                "Internal server error",
            ),
            (
                "vllm_stream_error_legacy_le_0_10_0.sse",
                "Internal server error",
            ),
            ("tgi_chat_stream_error.sse", "Model is overloaded"),
        ] {
            let d = decode_fixture(name);
            let err = d.iter().find_map(|e| e.error.clone()).expect(name);
            assert_eq!(err, msg, "{name}");
            assert!(d.last().expect("events").done, "{name}: [DONE] follows");
        }
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        assert!(decode("{\"choices\":[{\"delta\":").is_err());
        assert!(decode("not json").is_err());
        assert!(decode("[1,2]").is_err());
        // An object with no known keys is a valid, empty event (keep-alive style).
        assert_eq!(decode("{}").expect("ok"), Decoded::default());
    }

    #[test]
    fn tool_calls_and_reasoning_count_as_output() {
        let d = decode(r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#).expect("ok");
        assert!(d.output);
        let d = decode(r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#).expect("ok");
        assert!(d.output);
        let d = decode(r#"{"choices":[{"delta":{"content":""}}]}"#).expect("ok");
        assert!(!d.output);
    }
}

/// Parse the generation fields of an OpenAI request `body` (chat or completions, whose
/// prompt is `prompt_field`): a missing prompt, a budget that is not a positive integer,
/// or `stream_options` without `stream`, is refused with vLLM's words.
fn served_request<'a>(body: &'a Value, prompt_field: &str) -> Result<ServedRequest<'a>, String> {
    let prompt = body
        .get(prompt_field)
        .ok_or_else(|| format!("missing field `{prompt_field}`"))?;
    let max_tokens =
        match super::positive_u32(body.get("max_completion_tokens"), "max_completion_tokens")? {
            Some(n) => Some(n),
            None => super::positive_u32(body.get("max_tokens"), "max_tokens")?,
        };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let opts = body.get("stream_options").filter(|o| !o.is_null());
    if opts.is_some() && !stream {
        return Err("Stream options can only be defined when `stream=True`.".into());
    }
    let flag = |k: &str| opts.and_then(|o| o.get(k)).and_then(Value::as_bool) == Some(true);
    Ok(ServedRequest {
        prompt,
        model: Some(body.get("model").and_then(Value::as_str).unwrap_or("")),
        max_tokens,
        stream,
        include_usage: flag("include_usage"),
        continuous_usage: flag("include_usage") && flag("continuous_usage_stats"),
        include_metrics: body.get("include_metrics").and_then(Value::as_bool) == Some(true),
        ignore_eos: body.get("ignore_eos").and_then(Value::as_bool) == Some(true),
        details: false,
    })
}

/// OpenAI-style streaming: chat (`chat`) or completions.
#[derive(Debug, Clone, Copy)]
pub struct OpenAi {
    /// `/v1/chat/completions` (messages, deltas) rather than `/v1/completions`.
    pub chat: bool,
}

/// `/v1/chat/completions`.
pub static CHAT: OpenAi = OpenAi { chat: true };
/// `/v1/completions`.
pub static COMPLETIONS: OpenAi = OpenAi { chat: false };

impl OpenAi {
    fn response<'a>(&self, a: &Answer<'a>) -> Response<'a> {
        Response {
            chat: self.chat,
            id: a.id,
            created: a.created,
            model: a.model,
        }
    }
}

impl Protocol for OpenAi {
    fn endpoint(&self, base: &str) -> String {
        let v1 = if base.ends_with("/v1") {
            base.to_string()
        } else {
            format!("{base}/v1")
        };
        // The route without its leading `/v1`, which the base may carry already.
        format!("{v1}{}", &self.route()[3..])
    }

    fn route(&self) -> &'static str {
        if self.chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        }
    }

    fn needs_model(&self) -> bool {
        true
    }

    fn can_force_output_len(&self) -> bool {
        true
    }

    fn request_body(
        &self,
        prompt: &str,
        messages: Option<&[Message]>,
        max_tokens: u32,
        settings: &super::RequestSettings,
    ) -> Value {
        request_body(self.chat, prompt, messages, max_tokens, settings)
    }

    fn decode(&self, data: &str) -> Result<Decoded, String> {
        decode(data)
    }

    fn exact_token_source(&self) -> TokenSource {
        TokenSource::ContinuousUsage
    }

    fn finish_ends_stream(&self) -> bool {
        true
    }

    fn served_request<'a>(&self, body: &'a Value) -> Result<ServedRequest<'a>, String> {
        served_request(body, if self.chat { "messages" } else { "prompt" })
    }

    fn stop_reason(&self) -> &'static str {
        "stop"
    }

    fn push_chunk(
        &self,
        out: &mut Vec<u8>,
        a: &Answer,
        index: u32,
        first: u32,
        k: u32,
        finish: Option<&str>,
        text: &dyn Fn(u32, u32) -> String,
    ) {
        let r = self.response(a);
        if index == 0 && self.chat {
            let mut role = r.role_chunk();
            if a.continuous_usage {
                role["usage"] = usage(u64::from(a.n_in), 0);
            }
            push_event(out, &role);
        }
        let mut c = r.text_chunk(&text(first, k), finish);
        if a.continuous_usage {
            c["usage"] = usage(u64::from(a.n_in), u64::from(first + k));
        } else if !self.chat {
            // vLLM's completions chunks carry `"usage": null`.
            c["usage"] = Value::Null;
        }
        push_event(out, &c);
    }

    fn push_trailer(&self, out: &mut Vec<u8>, a: &Answer) {
        if a.include_usage {
            let u = usage(u64::from(a.n_in), u64::from(a.n_out));
            let mut chunk = self.response(a).usage_chunk(u);
            if let Some(t) = &a.server_times {
                chunk["metrics"] = metrics(t, a.n_out);
            }
            push_event(out, &chunk);
        }
        out.extend_from_slice(DONE_EVENT);
    }

    fn error_body(&self, message: &str, failure: Failure) -> Value {
        let kind = match failure {
            Failure::Overloaded => "TooManyRequests",
            Failure::Unavailable => "ServiceUnavailable",
            Failure::Internal => "InternalServerError",
        };
        error_body(message, kind, failure.status())
    }

    fn push_in_band_error(&self, out: &mut Vec<u8>, message: &str) {
        // vLLM nests the error object in an event, then ends the stream.
        push_event(out, &self.error_body(message, Failure::Internal));
        out.extend_from_slice(DONE_EVENT);
    }

    fn push_empty_output(&self, out: &mut Vec<u8>, a: &Answer) {
        let r = self.response(a);
        if self.chat {
            push_event(out, &r.role_chunk());
        }
        push_event(out, &r.finish_chunk("stop"));
        out.extend_from_slice(DONE_EVENT);
    }

    fn full(&self, a: &Answer, text: &str, finish: &str) -> Value {
        let u = usage(u64::from(a.n_in), u64::from(a.n_out));
        self.response(a).full(text, finish, u)
    }
}

#[cfg(test)]
mod served_request_tests {
    use super::*;

    /// The request's generation fields, beside a prompt. The body is leaked so the
    /// borrowed answer outlives the call (a test's few bytes).
    fn served_request(body: &Value) -> Result<ServedRequest<'static>, String> {
        let mut body = body.clone();
        body["messages"] = json!([]);
        let body: &'static Value = Box::leak(Box::new(body));
        CHAT.served_request(body)
    }

    #[test]
    fn a_missing_prompt_is_refused_by_its_name() {
        let err = COMPLETIONS
            .served_request(&json!({"max_tokens": 5}))
            .expect_err("refused");
        assert_eq!(err, "missing field `prompt`");
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "model": "m"});
        let r = CHAT.served_request(&body).expect("parses");
        assert_eq!(r.prompt, &body["messages"]);
        assert_eq!(r.model, Some("m"));
    }

    #[test]
    fn the_newer_budget_name_wins_and_bad_values_are_refused() {
        let r =
            served_request(&json!({"max_tokens": 5, "max_completion_tokens": 9})).expect("parses");
        assert_eq!(r.max_tokens, Some(9));
        assert_eq!(
            served_request(&json!({"max_tokens": 5}))
                .expect("parses")
                .max_tokens,
            Some(5)
        );
        assert_eq!(served_request(&json!({})).expect("parses").max_tokens, None);
        assert!(served_request(&json!({"max_tokens": 0}))
            .expect_err("refused")
            .contains("max_tokens must be a positive integer"));
        assert!(served_request(&json!({"max_completion_tokens": -1})).is_err());
    }

    #[test]
    fn stream_options_need_stream_and_continuous_usage_needs_usage() {
        assert!(
            served_request(&json!({"stream_options": {"include_usage": true}}))
                .expect_err("refused")
                .contains("stream=True")
        );
        let r = served_request(&json!({"stream": true, "stream_options":
            {"continuous_usage_stats": true}}))
        .expect("parses");
        assert!(r.stream && !r.include_usage && !r.continuous_usage);
        let r = served_request(
            &json!({"stream": true, "ignore_eos": true, "stream_options":
            {"include_usage": true, "continuous_usage_stats": true}}),
        )
        .expect("parses");
        assert!(r.include_usage && r.continuous_usage && r.ignore_eos);
    }
}
