//! What one SSE event means to a benchmark, independent of the protocol that carried it.
//!
//! Each backend (`openai`, `tgi`) turns an event's `data` into a [`Decoded`]; the stream
//! accumulator (`stream.rs`) turns a sequence of them into chunk times and token counts.

/// Token counts from a usage block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: Option<u32>,
    /// Completion (output) tokens, cumulative.
    pub completion: Option<u32>,
}

/// The server's own times for one request, when its answer says them (vLLM's per-request
/// `metrics`, llama.cpp's `timings`), in microseconds: whole numbers keep the record
/// small and comparable, and a microsecond is finer than any server reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerTimes {
    /// Waiting before the engine scheduled it (vLLM `queue_time_ms`; llama.cpp has none).
    pub queue_us: Option<u32>,
    /// Scheduled to first token (vLLM `time_to_first_token_ms`, which vLLM counts from
    /// scheduling, not arrival; llama.cpp `prompt_ms`).
    pub prefill_us: Option<u32>,
    /// First token to last (vLLM `generation_time_ms`; llama.cpp `predicted_ms`).
    pub decode_us: Option<u32>,
}

impl ServerTimes {
    /// Whether the server said any of them.
    pub fn any(&self) -> bool {
        self.queue_us.is_some() || self.prefill_us.is_some() || self.decode_us.is_some()
    }
}

/// Milliseconds as a server sends them (a JSON number), in whole microseconds; None for a
/// missing, negative or non-finite value (never a made-up zero). Saturates at u32::MAX
/// (71 minutes, longer than any request's total timeout).
pub fn ms_to_us(ms: Option<f64>) -> Option<u32> {
    let ms = ms.filter(|m| m.is_finite() && *m >= 0.0)?;
    Some((ms * 1000.0).round().min(f64::from(u32::MAX)) as u32)
}

/// The benchmark-relevant content of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Output text carried (may be empty).
    pub text: String,
    /// The event carries output: non-empty text, reasoning text, a tool call, or a
    /// non-special TGI token. Only such events can start the TTFT clock.
    pub output: bool,
    /// Tokens this event carries when the protocol says so exactly (TGI: one per event).
    pub exact_tokens: Option<u32>,
    /// Cumulative output tokens so far, from a usage block on an event that also carries
    /// choices (vLLM `continuous_usage_stats`).
    pub cumulative_tokens: Option<u32>,
    /// A usage block seen on this event (the last one seen is the final usage).
    pub usage: Option<Usage>,
    /// The finish reason, when this event ends a choice.
    pub finish_reason: Option<String>,
    /// An in-band error message.
    pub error: Option<String>,
    /// The `[DONE]` sentinel.
    pub done: bool,
    /// TGI's final event (it carries `generated_text`); nothing follows it.
    pub final_event: bool,
    /// The server's own times for the request, on the event that says them.
    pub server_times: Option<ServerTimes>,
}

/// Pull a readable message out of an error payload of any known shape: a string (TGI
/// native), `{"message": ...}` (vLLM nested, TGI OpenAI routes), or the whole value.
pub fn error_message(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => match map.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

/// The first step of every decoder: `[DONE]` (`Ok(None)`; on TGI's native route only a
/// proxy or a compatible server would send it), or the event's JSON parsed as `T`, with a
/// malformed-event message that shows the start of the data.
pub fn parse_event<'a, T: serde::Deserialize<'a>>(data: &'a str) -> Result<Option<T>, String> {
    let trimmed = data.trim();
    if trimmed == "[DONE]" {
        return Ok(None);
    }
    serde_json::from_str(trimmed).map(Some).map_err(|e| {
        format!(
            "malformed event ({e}): {}",
            crate::util::truncate(trimmed, 200)
        )
    })
}

/// The decoded form of `[DONE]`.
pub fn done() -> Decoded {
    Decoded {
        done: true,
        ..Decoded::default()
    }
}
