//! Decoding of OpenAI-style streaming events: `/v1/chat/completions` and `/v1/completions`
//! as vLLM, TGI's messages API, `transformers serve` and other compatible servers send them.
//!
//! Typed serde structs with borrowed strings (not `serde_json::Value`) keep the per-event
//! cost low; unknown fields are ignored so new server versions keep working.

use std::borrow::Cow;

use serde::Deserialize;

use super::decode::{done, error_message, parse_event, Decoded, Usage};

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
    use crate::test_support::fixture_events;

    fn decode_fixture(name: &str) -> Vec<Decoded> {
        fixture_events(name)
            .0
            .iter()
            .map(|e| decode(&e.data).expect("decode"))
            .collect()
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
    fn every_openai_fixture_decodes() {
        for name in [
            "vllm_chat_stream.sse",
            "vllm_chat_stream_continuous_usage.sse",
            "vllm_chat_stream_no_usage.sse",
            "vllm_chat_stream_v0_6.sse",
            "vllm_completions_stream.sse",
            "vllm_completions_stream_continuous_usage.sse",
            "vllm_completions_stream_v0_6.sse",
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
