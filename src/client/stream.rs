//! Sending one streaming request and turning its response into a [`RequestRecord`]: the
//! HTTP exchange, the per-phase deadlines and the record's assembly. The per-event rules
//! are the [`Accumulator`]'s (`accumulate.rs`), the error text `errors.rs`'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

use super::accumulate::{Accumulator, Flow, Outcome};
use super::errors::{describe_failure, describe_reqwest_error, error_chain, read_error_body};
use super::kept::{Conn, Pool, SendError};
use super::response::Response;
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
    /// The pooled client (HTTPS targets, and the calls that are not streamed).
    pub http: reqwest::Client,
    /// Kept connections for a plain-HTTP target (`None`: requests go through `http`).
    pub kept: Option<Pool>,
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
    let body = Bytes::from(
        spec.request_body(job.prompt, job.messages, job.max_tokens)
            .to_string(),
    );
    let mut acc = Accumulator::new(spec.api, shared.counter.clone());
    if keep_answer {
        acc.keep_answer();
    }
    // A kept connection is taken (or opened) before the send time is read: connecting is
    // not the server's time to first token (a stage's connections are opened before it
    // starts), and it is bounded by the connect timeout of its own.
    let kept = match &shared.kept {
        None => None,
        Some(pool) => {
            let conn = tokio::select! {
                c = pool.checkout() => c,
                _ = shared.cancel.cancelled() => Err(SendError::Cancelled),
            };
            match conn {
                Ok(c) => Some((pool, c)),
                Err(e) => {
                    let (kind, msg) = connect_failure(e, spec);
                    acc.fail(kind, msg);
                    let t = now_ns();
                    return build_record(shared, &job, t, None, None, acc.finish(false));
                }
            }
        }
    };
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
    let mut open = None;

    // Before the headers, the first-token and total deadlines apply.
    let (headers_deadline, headers_kind) = clock.before_first_token();
    let sending = async {
        match kept {
            Some((pool, conn)) => send_kept(shared, pool, conn, &job, body).await,
            None => send_pooled(shared, &job, body, headers_kind).await,
        }
    };
    let response = tokio::select! {
        r = tokio::time::timeout_at(headers_deadline, sending) => r,
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
        Ok(Err((kind, msg))) => acc.fail(kind, msg),
        Ok(Ok(mut resp)) => {
            t_headers = Some(now_ns());
            let status = resp.status();
            http_status = Some(status.as_u16());
            let content_type = resp.content_type();
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
            open = Some(resp);
        }
    }
    let record = build_record(
        shared,
        &job,
        t_sent,
        t_headers,
        http_status,
        acc.finish(truncated),
    );
    // After the record's end time: what is left of the body only decides whether the
    // connection can be kept. A cancelled run does not wait for it.
    if let Some(resp) = open {
        if !shared.cancel.is_cancelled() {
            resp.finish().await;
        }
    }
    record
}

/// Why a request got no response head: the record's error kind and message.
type Failure = (ErrorKind, String);

/// The request's headers beside the body: JSON in, an event stream wanted, and the id a
/// server (the scripted one records truth by it) can match its logs to our record with.
fn request_headers(spec: &TargetSpec, id: u64) -> Vec<(http::HeaderName, HeaderValue)> {
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (ACCEPT, HeaderValue::from_static("text/event-stream")),
        (
            http::HeaderName::from_static(crate::protocol::REQUEST_ID_HEADER),
            HeaderValue::from(id),
        ),
    ];
    if let Some(key) = &spec.api_key {
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}")) {
            v.set_sensitive(true);
            headers.push((AUTHORIZATION, v));
        }
    }
    headers
}

/// Send on a kept connection (plain HTTP). A reused connection the server closed while it
/// was idle fails before the request is written (hyper's "canceled"); that request is
/// sent once more on a new connection, as a pooled client would.
async fn send_kept<'p>(
    shared: &RunContext,
    pool: &'p Pool,
    mut conn: Conn,
    job: &Job<'_>,
    body: Bytes,
) -> Result<Response<'p>, Failure> {
    let spec = &shared.spec;
    let request = || {
        let mut b = pool.request();
        for (name, value) in request_headers(spec, job.id) {
            b = b.header(name, value);
        }
        b.body(Full::new(body.clone()))
            .map_err(|e| (ErrorKind::Connect, format!("cannot build the request: {e}")))
    };
    let sent = match conn.send(request()?).await {
        Err(e) if e.is_canceled() && conn.reused() => {
            conn = pool.connect().await.map_err(|e| connect_failure(e, spec))?;
            conn.send(request()?).await
        }
        other => other,
    };
    match sent {
        Ok(resp) => {
            let (head, body) = resp.into_parts();
            Ok(Response::Kept {
                head,
                body,
                conn,
                pool,
                ended: false,
            })
        }
        Err(e) => Err((ErrorKind::Connect, describe_failure(spec, &error_chain(&e)))),
    }
}

/// Send through the pooled `reqwest` client (HTTPS); `headers_kind` is the timeout kind
/// that applies before the response head.
async fn send_pooled(
    shared: &RunContext,
    job: &Job<'_>,
    body: Bytes,
    headers_kind: ErrorKind,
) -> Result<Response<'static>, Failure> {
    let spec = &shared.spec;
    let mut req = shared.http.post(spec.endpoint()).body(body);
    for (name, value) in request_headers(spec, job.id) {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) => Ok(Response::Pooled { resp, ended: false }),
        Err(e) => {
            let kind = if e.is_timeout() && e.is_connect() {
                ErrorKind::TimeoutConnect
            } else if e.is_timeout() {
                headers_kind
            } else {
                ErrorKind::Connect
            };
            let msg = describe_reqwest_error(&e, spec);
            let msg = if kind == ErrorKind::TimeoutConnect {
                format!("{msg} (connect timeout {} s)", spec.timeouts.connect_s)
            } else {
                msg
            };
            Err((kind, msg))
        }
    }
}

/// The record's error for a kept connection that could not be had.
fn connect_failure(e: SendError, spec: &TargetSpec) -> Failure {
    match e {
        SendError::Connect(msg) => (ErrorKind::Connect, describe_failure(spec, &msg)),
        SendError::ConnectTimeout => (
            ErrorKind::TimeoutConnect,
            describe_failure(
                spec,
                &format!(
                    "no connection (connect timeout {} s)",
                    spec.timeouts.connect_s
                ),
            ),
        ),
        SendError::Cancelled => (ErrorKind::Cancelled, "run cancelled".into()),
    }
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
            _ => format!("{what} when the total timeout of {} s ran out", t.total_s),
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
    resp: &mut Response<'_>,
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
                    // A stream cut by the total timeout was still flowing, not stalled.
                    let what = match (started, kind) {
                        (true, ErrorKind::TimeoutTotal) => "still streaming",
                        (true, _) => "stream stalled",
                        (false, _) => "no output token",
                    };
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
                    format!("connection broke mid-stream: {e}"),
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
        server_times: outcome.server_times,
        finish_reason: outcome.finish_reason,
        http_status,
        error_kind,
        error,
    };
    (record, answer)
}
