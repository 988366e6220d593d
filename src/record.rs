//! The request record (docs/architecture.md, "The request record"): one per request, with its three clocks, every output
//! chunk's arrival time and token count, token counts with their sources, and its outcome.

use serde::{Deserialize, Serialize};

pub use crate::chunks::Chunks;
pub use crate::protocol::decode::ServerTimes;

/// Why a request failed. A fixed taxonomy so summaries can count failures by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP/TLS connection could not be made (refused, DNS, reset before a response).
    Connect,
    /// The server answered with a non-2xx HTTP status.
    HttpStatus,
    /// An error event inside a stream that started with HTTP 200.
    InBandError,
    /// An event that is not valid JSON of the expected shape, or a non-SSE response.
    Malformed,
    /// The TCP/TLS connection was not made within the connect timeout.
    TimeoutConnect,
    /// No output token within the time-to-first-token timeout of sending.
    TimeoutTtft,
    /// Silence between two reads longer than the idle timeout, once tokens flowed.
    TimeoutIdle,
    /// The whole request took longer than the total timeout.
    TimeoutTotal,
    /// The stream ended (EOF or reset) before a finish / `[DONE]`.
    Incomplete,
    /// The stream finished cleanly but carried no output token.
    EmptyOutput,
    /// The run was cancelled while this request was in flight.
    Cancelled,
    /// The worker of a distributed run that sent this request was lost (its process or
    /// node died) before its record reached the driver.
    WorkerLost,
}

impl ErrorKind {
    /// Every kind, in a fixed order (used for summary columns).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Connect,
        ErrorKind::HttpStatus,
        ErrorKind::InBandError,
        ErrorKind::Malformed,
        ErrorKind::TimeoutConnect,
        ErrorKind::TimeoutTtft,
        ErrorKind::TimeoutIdle,
        ErrorKind::TimeoutTotal,
        ErrorKind::Incomplete,
        ErrorKind::EmptyOutput,
        ErrorKind::Cancelled,
        ErrorKind::WorkerLost,
    ];

    /// The snake_case name used in files and columns.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::InBandError => "in_band_error",
            ErrorKind::Malformed => "malformed",
            ErrorKind::TimeoutConnect => "timeout_connect",
            ErrorKind::TimeoutTtft => "timeout_ttft",
            ErrorKind::TimeoutIdle => "timeout_idle",
            ErrorKind::TimeoutTotal => "timeout_total",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::EmptyOutput => "empty_output",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::WorkerLost => "worker_lost",
        }
    }
}

/// Where a token count came from, best first (docs/architecture.md, "The request record").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's final usage block (or TGI's `details`).
    ServerUsage,
    /// vLLM `continuous_usage_stats`: cumulative counts on every chunk.
    ContinuousUsage,
    /// TGI's native stream: one event per token.
    TgiTokens,
    /// The client-side tokenizer run over the text.
    Tokenizer,
    /// No count available: one token per chunk assumed (flagged, may undercount).
    OnePerChunk,
    /// Per-chunk counts estimated (tokenizer or one per chunk), then scaled so they sum to
    /// the server's usage total (exact when the total equals the number of chunks).
    UsageReconciled,
    /// Counted by the generator itself (the in-process baseline): exact.
    Model,
    /// Not known at all (no usage, no tokenizer).
    Unknown,
}

impl TokenSource {
    /// The snake_case name used in files and columns.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::ServerUsage => "server_usage",
            TokenSource::ContinuousUsage => "continuous_usage",
            TokenSource::TgiTokens => "tgi_tokens",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::OnePerChunk => "one_per_chunk",
            TokenSource::UsageReconciled => "usage_reconciled",
            TokenSource::Model => "model",
            TokenSource::Unknown => "unknown",
        }
    }
}

/// One measured request. Times are nanoseconds on [`crate::clock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Sequence number within the run (unique, in order of scheduling).
    pub id: u64,
    /// Index of the stage (batch size point) in the sweep; warm-up requests carry their
    /// stage's index too and `warmup = true`.
    pub stage: u32,
    /// The closed-loop concurrency of the stage.
    pub batch_size: u32,
    /// Warm-up requests are reported apart and never enter statistics.
    pub warmup: bool,
    /// Index of the prompt in the workload's prompt list (for a conversation's turn, the
    /// turn's index in the flattened list of every conversation's turns).
    pub prompt_index: u32,
    /// The conversation this request is a turn of: the id of its first turn's request, so
    /// unique in the run even when a stage runs a dataset's conversation more than once.
    /// `None` for single-turn requests.
    #[serde(default)]
    pub conversation: Option<u64>,
    /// The turn's index within its conversation (0 first); `None` for single-turn requests.
    #[serde(default)]
    pub turn: Option<u32>,
    /// When the workload intended to send it.
    pub t_sched: u64,
    /// When it was handed to the connection.
    pub t_sent: u64,
    /// When the response headers arrived.
    pub t_headers: Option<u64>,
    /// When the stream ended (`[DONE]`, final event, EOF or error).
    pub t_done: u64,
    /// Arrival time and token count of every event that carried output tokens, compactly
    /// stored (written to files as the arrays `chunk_times` and `chunk_tokens`).
    #[serde(flatten)]
    pub chunks: Chunks,
    /// Where `chunk_tokens` came from.
    pub chunk_token_source: TokenSource,
    /// Prompt tokens, if known.
    pub n_in: Option<u32>,
    /// Where `n_in` came from.
    pub n_in_source: TokenSource,
    /// Output tokens: server usage when given, else the sum of `chunk_tokens`.
    pub n_out: u32,
    /// Where `n_out` came from.
    pub n_out_source: TokenSource,
    /// The server's own queue, prefill and decode times of this request, where its answer
    /// said them (vLLM's per-request `metrics`, llama.cpp's `timings`); each absent
    /// otherwise.
    #[serde(default)]
    pub server_times: ServerTimes,
    /// The server's finish reason, as sent (`stop`, `length`, `eos_token`, ...).
    pub finish_reason: Option<String>,
    /// HTTP status of the response, when one arrived.
    pub http_status: Option<u16>,
    /// `None` for a successful request.
    pub error_kind: Option<ErrorKind>,
    /// Human-readable error message (never containing credentials).
    pub error: Option<String>,
}

impl RequestRecord {
    /// Whether the request succeeded.
    pub fn ok(&self) -> bool {
        self.error_kind.is_none()
    }

    /// Time of the first output token, if any.
    pub fn t_first(&self) -> Option<u64> {
        self.chunks.first_time()
    }

    /// Time of the last output token, if any.
    pub fn t_last(&self) -> Option<u64> {
        self.chunks.last_time()
    }

    /// Sum of per-chunk token counts (what was seen streaming).
    pub fn n_out_streamed(&self) -> u32 {
        self.chunks.total_tokens()
    }

    /// Bytes this record holds in memory: the struct and what it owns on the heap.
    pub fn memory_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<Self>()
            + self.chunks.heap_bytes()
            + text(&self.finish_reason)
            + text(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_token_stream_is_kept_in_under_8_bytes_per_token() {
        // One token per chunk every 10-30 ms, as a real stream at batch load.
        let mut r = crate::test_support::record(0, 0, false, None);
        let times: Vec<u64> = (0..64u64)
            .map(|i| 9_000_000_000 + i * 10_000_000 + (i * 7919 % 20) * 1_000_000)
            .collect();
        r.chunks = Chunks::from_parts(&times, &[1; 64]);
        r.finish_reason = Some("length".into());
        let per_token = r.memory_bytes() as f64 / 64.0;
        assert!(per_token <= 8.0, "{per_token} bytes per token");
        assert_eq!(
            r.chunks.heap_bytes(),
            4 * 64 - 3,
            "4 bytes per gap, 1 for the first"
        );
    }
}
