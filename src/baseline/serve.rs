//! The baseline served over HTTP: OpenAI-compatible `/v1/completions` and
//! `/v1/chat/completions` (streaming or not, usage included), on 127.0.0.1 by default.
//!
//! One scheduler thread owns the model. It takes the first waiting request, gathers what
//! else arrives within a short window, up to the maximum batch, and runs that static batch
//! to the end before taking the next one: requests that arrive meanwhile wait, which is
//! exactly the naive baseline's behaviour that vLLM and TGI's continuous batching removes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::generate::{generate, BatchRequest, Finish, SamplingParams};
use super::tokenizer::TextCodec;
use super::{Baseline, ModelSpec};
use crate::builtin_server::server_times::{Histograms, RequestTimes};
use crate::builtin_server::{error_response, sse_response};
use crate::error::{Error, Result};
use crate::protocol::{openai, push_event, Protocol, DONE_EVENT};

/// How the server batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub model: ModelSpec,
    /// Most requests in one static batch.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// After the first request of a batch, wait this long for others to join it.
    #[serde(default = "default_window")]
    pub batch_window_ms: f64,
    /// `max_tokens` when a request gives none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: usize,
}

fn default_max_batch() -> usize {
    32
}
fn default_window() -> f64 {
    2.0
}
fn default_max_tokens() -> usize {
    256
}

/// What the scheduler sends back to a request's handler.
enum Event {
    /// The request's batch started (its queue time ends here).
    Scheduled,
    Token(u32),
    Done(Finish),
    Failed(String),
}

struct Job {
    prompt: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
    sampling: SamplingParams,
    tx: mpsc::UnboundedSender<Event>,
}

struct ServerState {
    codec: Arc<TextCodec>,
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    name: String,
    info: Value,
    max_context: usize,
    default_max_tokens: usize,
    created: u64,
    next_id: AtomicU64,
    stats: Arc<Stats>,
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Stats {
    waiting: AtomicU64,
    running: AtomicU64,
    batches: AtomicU64,
    served: AtomicU64,
    generated_tokens: AtomicU64,
    kv_bytes: AtomicU64,
    /// Finished streamed requests' queue, prefill and decode times, as vLLM's histograms.
    times: Mutex<Histograms>,
}

/// A running baseline server.
pub struct BaselineServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<ServerState>,
    scheduler: Option<std::thread::JoinHandle<()>>,
}

impl BaselineServer {
    /// Load the model and listen on `host:port` (0 picks a free port). Call on a tokio
    /// runtime; the model loads on the calling thread.
    pub async fn start(config: ServeConfig, host: &str, port: u16) -> Result<BaselineServer> {
        if config.max_batch == 0 {
            return Err(Error::InvalidArgument("max_batch must be positive".into()));
        }
        let spec = config.model.clone();
        let baseline = tokio::task::spawn_blocking(move || Baseline::load(&spec))
            .await
            .map_err(|e| Error::Model(format!("model loading failed: {e}")))??;
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| Error::InvalidArgument(format!("cannot listen on {host}:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("baseline listener", e))?;
        let (job_tx, job_rx) = std_mpsc::channel::<Job>();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(ServerState {
            name: baseline.name.clone(),
            info: baseline.describe(),
            max_context: baseline.model.shape().max_position_embeddings,
            default_max_tokens: config.default_max_tokens,
            created: crate::clock::unix_anchor_ns() / 1_000_000_000,
            next_id: AtomicU64::new(0),
            stats: stats.clone(),
            jobs: Mutex::new(Some(job_tx)),
            codec: Arc::new(baseline.codec.clone()),
        });
        let window = Duration::from_secs_f64(config.batch_window_ms.max(0.0) / 1e3);
        let max_batch = config.max_batch;
        let scheduler = std::thread::Builder::new()
            .name("llmbench-baseline".into())
            .spawn(move || schedule(baseline, job_rx, max_batch, window, stats))
            .map_err(|e| Error::Model(format!("cannot start the scheduler thread: {e}")))?;
        let app = Router::new()
            .route(openai::COMPLETIONS.route(), post(completions))
            .route(openai::CHAT.route(), post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(|| async { StatusCode::OK }))
            .route("/info", get(info))
            .route("/metrics", get(metrics))
            .with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(BaselineServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            shared,
            scheduler: Some(scheduler),
        })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model name requests use.
    pub fn model(&self) -> &str {
        &self.shared.name
    }

    /// What `/info` says.
    pub fn info(&self) -> &Value {
        &self.shared.info
    }

    /// Requests finished (or abandoned by their client) so far.
    pub fn served(&self) -> u64 {
        self.shared.stats.served.load(Ordering::Relaxed)
    }

    /// Stop serving; the scheduler finishes its batch and exits.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Ok(mut jobs) = self.shared.jobs.lock() {
            jobs.take();
        }
        if let Some(t) = self.scheduler.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The scheduler loop: static batches until every sender is gone.
fn schedule(
    b: Baseline,
    rx: std_mpsc::Receiver<Job>,
    max_batch: usize,
    window: Duration,
    stats: Arc<Stats>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + window;
        while jobs.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Nothing is computed for a client that already left.
        jobs.retain(|j| !j.tx.is_closed());
        let n = jobs.len() as u64;
        stats.waiting.fetch_sub(
            n.min(stats.waiting.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if jobs.is_empty() {
            continue;
        }
        for j in &jobs {
            let _ = j.tx.send(Event::Scheduled);
        }
        stats.running.store(n, Ordering::Relaxed);
        let req = BatchRequest {
            prompts: jobs.iter().map(|j| j.prompt.clone()).collect(),
            max_new_tokens: jobs.iter().map(|j| j.max_tokens).collect(),
            ignore_eos: jobs.iter().map(|j| j.ignore_eos).collect(),
            sampling: jobs.iter().map(|j| j.sampling).collect(),
        };
        let result = generate(&b.model, &req, |produced, _t| {
            for &(i, tok) in produced {
                let _ = jobs[i].tx.send(Event::Token(tok));
            }
            stats
                .generated_tokens
                .fetch_add(produced.len() as u64, Ordering::Relaxed);
            // Stop early only when every client has gone.
            jobs.iter().any(|j| !j.tx.is_closed())
        });
        match result {
            Ok(out) => {
                stats
                    .kv_bytes
                    .store(out.kv_bytes_allocated, Ordering::Relaxed);
                for (j, row) in jobs.iter().zip(&out.rows) {
                    let _ = j.tx.send(Event::Done(row.finish));
                }
            }
            Err(e) => {
                for j in &jobs {
                    let _ = j.tx.send(Event::Failed(e.to_string()));
                }
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.served.fetch_add(n, Ordering::Relaxed);
        stats.running.store(0, Ordering::Relaxed);
    }
}

async fn models(State(st): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": st.name, "object": "model", "created": st.created, "owned_by": "llmbench",
        "root": st.name, "parent": null, "max_model_len": st.max_context, "permission": []
    }]}))
}

async fn info(State(st): State<Arc<ServerState>>) -> Json<Value> {
    Json(st.info.clone())
}

async fn metrics(State(st): State<Arc<ServerState>>) -> String {
    let s = &st.stats;
    let mut out = String::new();
    for (name, kind, help, v) in [
        (
            "llmbench_baseline_waiting",
            "gauge",
            "Requests waiting for a batch.",
            &s.waiting,
        ),
        (
            "llmbench_baseline_running",
            "gauge",
            "Requests in the running batch.",
            &s.running,
        ),
        (
            "llmbench_baseline_batches_total",
            "counter",
            "Static batches run.",
            &s.batches,
        ),
        (
            "llmbench_baseline_served_total",
            "counter",
            "Requests finished.",
            &s.served,
        ),
        (
            "llmbench_baseline_generated_tokens_total",
            "counter",
            "Output tokens.",
            &s.generated_tokens,
        ),
        (
            "llmbench_baseline_kv_cache_bytes",
            "gauge",
            "KV-cache bytes of the last batch.",
            &s.kv_bytes,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    if let Ok(times) = s.times.lock() {
        out.push_str(&times.render(&st.name));
    }
    out
}

async fn completions(State(st): State<Arc<ServerState>>, Json(body): Json<Value>) -> Response {
    handle(st, body, false).await
}

async fn chat(State(st): State<Arc<ServerState>>, Json(body): Json<Value>) -> Response {
    handle(st, body, true).await
}

/// A request, checked.
struct Request {
    prompt: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
    sampling: SamplingParams,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
    include_metrics: bool,
}

type Rejection = (StatusCode, &'static str, String);

fn bad(msg: impl Into<String>) -> Rejection {
    (StatusCode::BAD_REQUEST, "BadRequestError", msg.into())
}

/// LLaMA-2-chat's prompt format (the baseline has no template engine; documented).
fn chat_prompt(messages: &[Value]) -> std::result::Result<String, Rejection> {
    let mut system = String::new();
    let mut out = String::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => return Err(bad("every message needs a string content")),
        };
        match role {
            "system" => system = content,
            "user" => {
                let sys = if system.is_empty() {
                    String::new()
                } else {
                    format!("<<SYS>>\n{system}\n<</SYS>>\n\n")
                };
                system.clear();
                out.push_str(&format!("[INST] {sys}{} [/INST]", content.trim()));
            }
            "assistant" => out.push_str(&format!(" {} ", content.trim())),
            other => return Err(bad(format!("unsupported message role {other:?}"))),
        }
    }
    Ok(out)
}

impl Request {
    fn parse(
        st: &ServerState,
        body: &Value,
        chat: bool,
    ) -> std::result::Result<Request, Rejection> {
        // Read by the parser the scripted server uses too (`crate::protocol`).
        let served = openai::OpenAi { chat }.served_request(body).map_err(bad)?;
        if let Some(m) = served.model.filter(|m| !m.is_empty() && *m != st.name) {
            return Err((
                StatusCode::NOT_FOUND,
                "NotFoundError",
                format!(
                    "The model `{m}` does not exist. This server serves `{}`.",
                    st.name
                ),
            ));
        }
        let prompt = if chat {
            let msgs = served
                .prompt
                .as_array()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| bad("messages must be a non-empty list"))?;
            st.codec
                .encode(&chat_prompt(msgs)?)
                .map_err(|e| bad(e.to_string()))?
        } else {
            match served.prompt {
                Value::String(s) => st.codec.encode(s).map_err(|e| bad(e.to_string()))?,
                Value::Array(a) if a.iter().all(Value::is_u64) => a
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|v| v as u32)
                    .collect(),
                _ => return Err(bad("prompt must be a string or a list of token ids")),
            }
        };
        if prompt.is_empty() {
            return Err(bad("the prompt has no tokens"));
        }
        let uint = |k: &str| body.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let max_tokens = served
            .max_tokens
            .map_or(st.default_max_tokens, |n| n as usize);
        if prompt.len() + max_tokens > st.max_context {
            return Err(bad(format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the prompt, {max_tokens} for the completion).",
                st.max_context,
                prompt.len() + max_tokens,
                prompt.len()
            )));
        }
        let min_tokens = uint("min_tokens").unwrap_or(0);
        if min_tokens > 0 && min_tokens < max_tokens {
            return Err(bad(
                "min_tokens below max_tokens is not supported by the baseline; use ignore_eos or min_tokens = max_tokens",
            ));
        }
        let ignore_eos = served.ignore_eos || min_tokens >= max_tokens;
        let f = |k: &str| body.get(k).and_then(Value::as_f64);
        let sampling = SamplingParams {
            // OpenAI's default temperature is 1.
            temperature: Some(f("temperature").unwrap_or(1.0)),
            top_p: f("top_p"),
            seed: body
                .get("seed")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| st.next_id.load(Ordering::Relaxed).wrapping_mul(0x9E37_79B9)),
        };
        Ok(Request {
            prompt,
            max_tokens,
            ignore_eos,
            sampling,
            stream: served.stream,
            include_usage: served.include_usage,
            continuous_usage: served.continuous_usage,
            include_metrics: served.include_metrics,
        })
    }
}

/// Serve one chat (`chat`) or completions request.
async fn handle(st: Arc<ServerState>, body: Value, chat: bool) -> Response {
    let arrived = tokio::time::Instant::now();
    let plan = match Request::parse(&st, &body, chat) {
        Ok(p) => p,
        Err((status, kind, msg)) => return error_response(status, kind, msg),
    };
    let n = st.next_id.fetch_add(1, Ordering::Relaxed);
    let id = if chat {
        format!("chatcmpl-{n}")
    } else {
        format!("cmpl-{n}")
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job {
        prompt: plan.prompt.clone(),
        max_tokens: plan.max_tokens,
        ignore_eos: plan.ignore_eos,
        sampling: plan.sampling,
        tx,
    };
    let sent = st
        .jobs
        .lock()
        .ok()
        .and_then(|g| g.as_ref().map(|s| s.send(job).is_ok()));
    if sent != Some(true) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is shutting down".into(),
        );
    }
    st.stats.waiting.fetch_add(1, Ordering::Relaxed);
    if plan.stream {
        stream_response(st, plan, chat, id, rx, arrived)
    } else {
        full_response(st, plan, chat, id, rx).await
    }
}

fn usage(prompt: usize, out: usize) -> Value {
    openai::usage(prompt as u64, out as u64)
}

fn sse(v: &Value) -> Bytes {
    let mut out = Vec::new();
    push_event(&mut out, v);
    Bytes::from(out)
}

/// Stream one event per token whose text is complete (a token that only starts a UTF-8
/// sequence is sent with the next), then the finish, the usage (with the request's times
/// when asked, vLLM's `metrics`) and `[DONE]`.
fn stream_response(
    st: Arc<ServerState>,
    plan: Request,
    chat: bool,
    id: String,
    mut rx: mpsc::UnboundedReceiver<Event>,
    arrived: tokio::time::Instant,
) -> Response {
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let r = openai::Response {
            chat,
            id: &id,
            created: st.created,
            model: &st.name,
        };
        let mut text = st.codec.stream();
        let mut n_out = 0usize;
        let prompt = plan.prompt.len();
        // When the batch started and when each token came out of the model.
        let mut scheduled = None;
        let mut token_times = Vec::new();
        if r.chat && out_tx.send(sse(&r.role_chunk())).is_err() {
            return;
        }
        while let Some(ev) = rx.recv().await {
            let (bytes, last) = match ev {
                Event::Scheduled => {
                    scheduled = Some(tokio::time::Instant::now());
                    continue;
                }
                Event::Token(tok) => {
                    n_out += 1;
                    token_times.push(tokio::time::Instant::now());
                    let piece = match text.push(tok) {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = out_tx.send(sse(&openai::error_body(
                                &e.to_string(),
                                "InternalServerError",
                                500,
                            )));
                            return;
                        }
                    };
                    if piece.is_empty() {
                        continue;
                    }
                    let mut c = r.text_chunk(&piece, None);
                    if plan.continuous_usage {
                        c["usage"] = usage(prompt, n_out);
                    }
                    (sse(&c), false)
                }
                Event::Done(finish) => {
                    let times = request_times(arrived, scheduled, &token_times);
                    if let (Some(t), Ok(mut h)) = (&times, st.stats.times.lock()) {
                        let gaps: Vec<_> = token_times.windows(2).map(|w| w[1] - w[0]).collect();
                        h.observe(t, &gaps, prompt as u32, n_out as u32);
                    }
                    let mut c = r.finish_chunk(finish.as_str());
                    let mut b = Vec::new();
                    if plan.include_usage {
                        push_event(&mut b, &c);
                        c = r.usage_chunk(usage(prompt, n_out));
                        if let Some(t) = times.filter(|_| plan.include_metrics) {
                            c["metrics"] = openai::metrics(&t.reported(), n_out as u32);
                        }
                    } else {
                        // Usage on the final chunk, as TGI and transformers serve send it.
                        c["usage"] = usage(prompt, n_out);
                    }
                    push_event(&mut b, &c);
                    b.extend_from_slice(DONE_EVENT);
                    (Bytes::from(b), true)
                }
                Event::Failed(msg) => (
                    sse(&openai::error_body(&msg, "InternalServerError", 500)),
                    true,
                ),
            };
            if out_tx.send(bytes).is_err() || last {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        let b = rx.recv().await?;
        Some((Ok::<_, Infallible>(b), rx))
    });
    sse_response(Body::from_stream(stream))
}

/// A finished request's times: arrival, its batch's start, its first and last token.
fn request_times(
    arrived: tokio::time::Instant,
    scheduled: Option<tokio::time::Instant>,
    tokens: &[tokio::time::Instant],
) -> Option<RequestTimes> {
    Some(RequestTimes {
        arrived,
        admitted: scheduled?,
        first: *tokens.first()?,
        last: *tokens.last()?,
    })
}

async fn full_response(
    st: Arc<ServerState>,
    plan: Request,
    chat: bool,
    id: String,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Response {
    let mut tokens = Vec::new();
    let finish = loop {
        match rx.recv().await {
            Some(Event::Scheduled) => {}
            Some(Event::Token(t)) => tokens.push(t),
            Some(Event::Done(f)) => break f,
            Some(Event::Failed(m)) => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", m)
            }
            None => {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "the scheduler stopped".into(),
                )
            }
        }
    };
    let text = match st.codec.decode(&tokens) {
        Ok(t) => t,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                e.to_string(),
            )
        }
    };
    let r = openai::Response {
        chat,
        id: &id,
        created: st.created,
        model: &st.name,
    };
    let mut answer = r.full(
        &text,
        finish.as_str(),
        usage(plan.prompt.len(), tokens.len()),
    );
    answer["llmbench_token_ids"] = json!(tokens);
    Json(answer).into_response()
}
