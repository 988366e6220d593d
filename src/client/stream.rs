//! Sending one streaming request and turning its response into a [`RequestRecord`]: the
//! HTTP exchange, the per-phase deadlines and the record's assembly. The per-event rules
//! are the [`Accumulator`]'s (`accumulate.rs`), the error text `errors.rs`'s.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use tokio_util::sync::CancellationToken;

use super::accumulate::{Accumulator, Flow, Outcome};
use super::errors::{describe_reqwest_error, read_error_body, reqwest_chain};
use super::TargetSpec;
use crate::clock::now_ns;
use crate::record::{Chunks, ErrorKind, RequestRecord, TokenSource};
use crate::sse::{SseEvent, SseParser};
use crate::tokens::TokenCounter;

/// One request to send.
pub struct Job<'a> {
    /// Record id.
    pub id: u64,
    /// Stage index.
    pub stage: u32,
    /// Stage concurrency.
    pub batch_size: u32,
    /// Warm-up request.
    pub warmup: bool,
    /// Prompt index and text.
    pub prompt_index: u32,
    /// Prompt text (a conversation's whole history, joined, for the text APIs and the
    /// tokenizer's count).
    pub prompt: &'a str,
    /// A conversation's history as chat messages (sent instead of `prompt` on chat).
    pub messages: Option<&'a [crate::protocol::Message]>,
    /// The conversation and turn this request is (see [`RequestRecord::turn`]).
    pub turn: Option<(u64, u32)>,
    /// Output token budget.
    pub max_tokens: u32,
    /// Intended send time.
    pub t_sched: u64,
}

/// Everything a request needs that is shared by the whole run.
pub struct RunContext {
    /// The pooled client.
    pub http: reqwest::Client,
    /// The target.
    pub spec: TargetSpec,
    /// Optional client-side tokenizer.
    pub counter: Option<Arc<TokenCounter>>,
    /// Cancels in-flight requests.
    pub cancel: CancellationToken,
}

/// Send one request and measure it. Never fails: every problem becomes a failed record.
pub async fn send(shared: &RunContext, job: Job<'_>) -> RequestRecord {
    exchange(shared, job, false).await.0
}

/// Send one turn of a conversation: its record and the answer's text as streamed (what
/// the next turn sends back as the assistant's message).
pub async fn send_turn(shared: &RunContext, job: Job<'_>) -> (RequestRecord, String) {
    let (record, answer) = exchange(shared, job, true).await;
    (record, answer.unwrap_or_default())
}

/// The exchange of [`send`] and [`send_turn`]; the answer is kept when `keep_answer`.
async fn exchange(
    shared: &RunContext,
    job: Job<'_>,
    keep_answer: bool,
) -> (RequestRecord, Option<String>) {
    let spec = &shared.spec;
    let body = spec.request_body(job.prompt, job.messages, job.max_tokens);
    let mut req = shared
        .http
        .post(spec.endpoint())
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "text/event-stream")
        // Lets a server (the scripted one records truth by it) match its logs to our record.
        .header(crate::protocol::REQUEST_ID_HEADER, job.id.to_string())
        .body(body.to_string());
    if let Some(key) = &spec.api_key {
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}")) {
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
    }
    let mut acc = Accumulator::new(spec.api, shared.counter.clone());
    if keep_answer {
        acc.keep_answer();
    }
    let t = &spec.timeouts;
    let t_sent = now_ns();
    let start = tokio::time::Instant::now();
    let clock = Deadlines {
        total: start + Duration::from_secs_f64(t.total_s),
        ttft: start + Duration::from_secs_f64(t.ttft_s),
        idle: Duration::from_secs_f64(t.idle_s),
        timeouts: *t,
    };
    let mut http_status = None;
    let mut t_headers = None;
    let mut truncated = false;

    // Before the headers, the first-token and total deadlines apply.
    let (headers_deadline, headers_kind) = clock.before_first_token();
    let response = tokio::select! {
        r = tokio::time::timeout_at(headers_deadline, req.send()) => r,
        _ = shared.cancel.cancelled() => {
            acc.fail(ErrorKind::Cancelled, "run cancelled".into());
            return build_record(shared, &job, t_sent, None, None, acc.finish(false));
        }
    };
    match response {
        Err(_) => acc.fail(
            headers_kind,
            clock.message(headers_kind, "no response headers"),
        ),
        Ok(Err(e)) => {
            let kind = if e.is_timeout() && e.is_connect() {
                ErrorKind::TimeoutConnect
            } else if e.is_timeout() {
                headers_kind
            } else {
                ErrorKind::Connect
            };
            let msg = describe_reqwest_error(&e, spec);
            let msg = if kind == ErrorKind::TimeoutConnect {
                format!("{msg} (connect timeout {} s)", t.connect_s)
            } else {
                msg
            };
            acc.fail(kind, msg);
        }
        Ok(Ok(mut resp)) => {
            t_headers = Some(now_ns());
            let status = resp.status();
            http_status = Some(status.as_u16());
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !status.is_success() {
                let body = read_error_body(&mut resp).await;
                acc.fail(
                    ErrorKind::HttpStatus,
                    format!("HTTP {}: {}", status.as_u16(), body),
                );
            } else if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
                let body = read_error_body(&mut resp).await;
                acc.fail(
                    ErrorKind::Malformed,
                    format!(
                        "expected a text/event-stream response but got {content_type:?}: the \
                         server does not stream this endpoint (body starts: {body})"
                    ),
                );
            } else {
                truncated = read_stream(shared, &mut resp, &mut acc, &clock).await;
            }
        }
    }
    build_record(
        shared,
        &job,
        t_sent,
        t_headers,
        http_status,
        acc.finish(truncated),
    )
}

/// The deadlines of one request.
struct Deadlines {
    total: tokio::time::Instant,
    ttft: tokio::time::Instant,
    idle: Duration,
    timeouts: super::Timeouts,
}

impl Deadlines {
    /// The deadline before the first output token, and the kind it raises.
    fn before_first_token(&self) -> (tokio::time::Instant, ErrorKind) {
        if self.ttft < self.total {
            (self.ttft, ErrorKind::TimeoutTtft)
        } else {
            (self.total, ErrorKind::TimeoutTotal)
        }
    }

    /// The deadline for the next read once tokens flow (idle since `last_read`, or the
    /// total deadline if earlier), and the kind it raises.
    fn idle_after(&self, last_read: tokio::time::Instant) -> (tokio::time::Instant, ErrorKind) {
        let idle = last_read + self.idle;
        if idle < self.total {
            (idle, ErrorKind::TimeoutIdle)
        } else {
            (self.total, ErrorKind::TimeoutTotal)
        }
    }

    fn message(&self, kind: ErrorKind, what: &str) -> String {
        let t = &self.timeouts;
        match kind {
            ErrorKind::TimeoutTtft => {
                format!("{what} within the first-token timeout of {} s", t.ttft_s)
            }
            ErrorKind::TimeoutIdle => format!(
                "{what}: silent longer than the idle timeout of {} s",
                t.idle_s
            ),
            _ => format!("{what} within the total timeout of {} s", t.total_s),
        }
    }
}

/// Read events until the stream ends, a failure, a timeout or cancellation.
/// Returns whether a partial event was discarded at EOF.
///
/// Per read this does no timer or cancellation bookkeeping: one timer per request is armed
/// at the first-token (or total) deadline, and when it fires it checks the deadline that
/// applies then (idle since the last read, once tokens flow) and either fails the request
/// or re-arms, instead of registering a fresh timeout and cancellation waiter (two lock
/// round-trips) for every chunk.
async fn read_stream(
    shared: &RunContext,
    resp: &mut reqwest::Response,
    acc: &mut Accumulator,
    clock: &Deadlines,
) -> bool {
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = Vec::with_capacity(4);
    let cancelled = shared.cancel.cancelled();
    tokio::pin!(cancelled);
    let timer = tokio::time::sleep_until(clock.before_first_token().0);
    tokio::pin!(timer);
    let mut last_read = tokio::time::Instant::now();
    let mut started = false;
    loop {
        let next = tokio::select! {
            biased;
            r = resp.chunk() => r,
            _ = &mut cancelled => {
                acc.fail(ErrorKind::Cancelled, "run cancelled".into());
                return false;
            }
            _ = &mut timer => {
                let (deadline, kind) = if started {
                    clock.idle_after(last_read)
                } else {
                    clock.before_first_token()
                };
                if deadline <= tokio::time::Instant::now() {
                    let what = if started { "stream stalled" } else { "no output token" };
                    acc.fail(kind, clock.message(kind, what));
                    return false;
                }
                timer.as_mut().reset(deadline);
                continue;
            }
        };
        let t = now_ns();
        match next {
            Err(e) => {
                acc.fail(
                    ErrorKind::Incomplete,
                    format!("connection broke mid-stream: {}", reqwest_chain(&e)),
                );
                return false;
            }
            Ok(None) => return parser.finish(),
            Ok(Some(bytes)) => {
                last_read = tokio::time::Instant::now();
                events.clear();
                if let Err(e) = parser.feed(&bytes, &mut events) {
                    acc.fail(ErrorKind::Malformed, e.to_string());
                    return false;
                }
                for ev in &events {
                    if acc.on_event(t, ev) == Flow::Stop {
                        return false;
                    }
                }
                if !started && !acc.chunk_times.is_empty() {
                    // Tokens flow: from now on the idle deadline applies.
                    started = true;
                    timer.as_mut().reset(clock.idle_after(last_read).0);
                }
            }
        }
    }
}

fn build_record(
    shared: &RunContext,
    job: &Job<'_>,
    t_sent: u64,
    t_headers: Option<u64>,
    http_status: Option<u16>,
    mut outcome: Outcome,
) -> (RequestRecord, Option<String>) {
    let answer = outcome.answer.take();
    let t_done = now_ns();
    let (n_in, n_in_source) = match outcome.n_in_server {
        Some(n) => (Some(n), TokenSource::ServerUsage),
        None => match &shared.counter {
            Some(c) => (Some(c.count(job.prompt)), TokenSource::Tokenizer),
            None => (None, TokenSource::Unknown),
        },
    };
    let (error_kind, error) = match outcome.failure {
        Some((k, m)) => (Some(k), Some(m)),
        None => (None, None),
    };
    let record = RequestRecord {
        id: job.id,
        stage: job.stage,
        batch_size: job.batch_size,
        warmup: job.warmup,
        prompt_index: job.prompt_index,
        conversation: job.turn.map(|t| t.0),
        turn: job.turn.map(|t| t.1),
        t_sched: job.t_sched,
        t_sent,
        t_headers,
        t_done,
        chunks: Chunks::from_parts(&outcome.chunk_times, &outcome.chunk_tokens),
        chunk_token_source: outcome.chunk_token_source,
        n_in,
        n_in_source,
        n_out: outcome.n_out,
        n_out_source: outcome.n_out_source,
        finish_reason: outcome.finish_reason,
        http_status,
        error_kind,
        error,
    };
    (record, answer)
}
