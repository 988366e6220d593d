//! The wire protocols llmbench speaks, in one place for both sides: OpenAI-compatible chat
//! and completions (vLLM, TGI's messages API, `transformers serve`, the baseline) and TGI's
//! native `/generate_stream`. Each protocol module holds the request body a client sends,
//! the decoder of the events it receives, and the encoder the built-in servers (the
//! scripted server in `sim`, the baseline in `baseline::serve`) answer with, so a change to
//! a format is made once and both ends follow it.
//!
//! Formats and metric names by server version: `tests/fixtures/README.md`.

pub mod decode;
pub mod openai;
pub mod tgi;

use serde::{Deserialize, Serialize};

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

    /// Decode one SSE event's data with this protocol's decoder.
    pub fn decode(self, data: &str) -> std::result::Result<decode::Decoded, String> {
        match self {
            Api::Chat | Api::Completions => openai::decode(data),
            Api::Tgi => tgi::decode(data),
        }
    }
}

/// Append one server-sent event carrying `value` as its data.
pub fn push_event(out: &mut Vec<u8>, value: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
