//! Server-side truth: when the scripted server actually handed each chunk of a request to
//! its connection, on the same clock as the client's records, keyed by the client's record
//! id (sent in the `x-llmbench-request-id` header).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// What the server did for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// The client's record id, when the client sent one.
    pub request_id: Option<u64>,
    /// When the handler started (request fully received and parsed).
    pub t_received: u64,
    /// The prompt as received: chat `messages`, the completions `prompt` or TGI's `inputs`.
    #[serde(default)]
    pub prompt: serde_json::Value,
    /// When each token-carrying chunk was handed to the connection.
    pub chunk_times: Vec<u64>,
    /// Tokens in each of those chunks.
    pub chunk_tokens: Vec<u32>,
}

/// The shared log of finished requests.
#[derive(Debug, Clone, Default)]
pub struct TruthLog(Arc<Mutex<Vec<TruthRecord>>>);

impl TruthLog {
    fn push(&self, r: TruthRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(r);
        }
    }

    /// Take everything logged so far.
    pub fn take(&self) -> Vec<TruthRecord> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Collects one request's truth; files it when the stream ends, however it ends.
pub struct TruthRecorder {
    log: TruthLog,
    record: TruthRecord,
}

impl TruthRecorder {
    /// Start recording a request.
    pub fn new(
        log: TruthLog,
        request_id: Option<u64>,
        t_received: u64,
        prompt: serde_json::Value,
    ) -> Self {
        TruthRecorder {
            log,
            record: TruthRecord {
                request_id,
                t_received,
                prompt,
                ..TruthRecord::default()
            },
        }
    }

    /// A chunk carrying `tokens` tokens left at `t` (trailers carry 0 and are skipped).
    pub fn chunk(&mut self, t: u64, tokens: u32) {
        if tokens > 0 {
            self.record.chunk_times.push(t);
            self.record.chunk_tokens.push(tokens);
        }
    }
}

impl Drop for TruthRecorder {
    fn drop(&mut self) {
        self.log.push(std::mem::take(&mut self.record));
    }
}
