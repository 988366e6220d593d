//! The built-in scripted server: speaks the OpenAI (vLLM-style) and TGI streaming
//! protocols with configured timings, so it is both the default target (no GPU, no
//! download) and the known-answer oracle of the tests.
//!
//! Timing model, like a batching server: up to `max_batch` requests run at once, the rest
//! wait in a FIFO queue. A running request's first token comes `ttft_ms +
//! ttft_per_running_ms × (running − 1)` after admission, each further token `itl_ms +
//! itl_per_running_ms × (running − 1)` after the previous one, `running` counted when the
//! token is scheduled. Tokens leave in chunks of `tokens_per_chunk`: a chunk is sent when its
//! first token is due, so chunk `j` leaves at `t_first + j × tokens_per_chunk × itl`.
//! Deadlines are absolute (never relative sleeps), so errors do not accumulate. With
//! `ttft_jitter` / `itl_jitter` each TTFT and gap is multiplied by a seeded log-normal
//! factor of median 1: noise with a known answer, for the tests of intervals and A/B.
//!
//! Prefill: with `prefill_ms_per_token` each request's TTFT grows by that much per prompt
//! token it must compute; with a prefix cache (`prefix_cache_blocks`, see
//! `prefix_cache.rs`) the tokens of its cached prefix cost nothing, and `/metrics` exports
//! vLLM V1's prefix-cache counters, so a conversation's later turns show the effect with a
//! known answer.

pub mod faults;
mod prefix_cache;
mod protocol;
mod truth;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::builtin_server::server_times::{Histograms, RequestTimes};
use crate::builtin_server::{error_response, sse_response};
use crate::error::{Error, Result};
use crate::protocol::Api;
use faults::{ConnHandle, Fault, KillableListener};
use protocol::ResponsePlan;
pub use truth::TruthRecord;
use truth::{TruthLog, TruthRecorder};

pub use crate::protocol::REQUEST_ID_HEADER;

/// `GET` this path to take (and clear) the truth records collected so far: JSON
/// `{"monotonic_anchor_ns": …, "records": [TruthRecord…]}`, times on this process's clock
/// (add the anchor for the machine's `CLOCK_MONOTONIC`). How a client in another process
/// is checked against the truth.
pub const TRUTH_PATH: &str = "/llmbench/truth";

/// How the scripted server behaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The served model name (requests for another name get HTTP 404, as on vLLM).
    pub model: String,
    /// Time to first token of a request running alone, in ms.
    pub ttft_ms: f64,
    /// Extra TTFT per other running request, in ms.
    pub ttft_per_running_ms: f64,
    /// Inter-token latency of a request running alone, in ms.
    pub itl_ms: f64,
    /// Extra ITL per other running request, in ms.
    pub itl_per_running_ms: f64,
    /// Tokens per streamed event (OpenAI APIs; TGI always sends one event per token, but
    /// writes a chunk's events together).
    pub tokens_per_chunk: u32,
    /// Natural output length (the request stops with EOS after this many tokens unless
    /// `max_tokens` is smaller or the request sets `ignore_eos`); `None`: always
    /// `max_tokens`.
    pub output_tokens: Option<u32>,
    /// Requests that run at once; more wait in a queue.
    pub max_batch: u32,
    /// `max_tokens` when a request gives none (vLLM's completions default).
    pub default_max_tokens: u32,
    /// Keep, per request, the time each chunk was handed to the connection (the truth a
    /// client's measurements are checked against). Off by default: it costs memory.
    pub record_truth: bool,
    /// Inject a fault into this fraction of requests (seeded by `fault_seed` and the
    /// request's arrival number), cycling through `faults`. Requests can also ask for a
    /// fault themselves (`llmbench-fault:<name>` in the prompt, see [`faults`]).
    pub fault_rate: f64,
    /// The faults injected by rate.
    pub faults: Vec<Fault>,
    /// Seed of the fault draw.
    pub fault_seed: u64,
    /// How long a stall or a slow first byte lasts, in ms.
    pub fault_delay_ms: f64,
    /// Run-to-run noise of a real server, with a known answer: each request's TTFT is
    /// multiplied by `exp(σ·Z)`, Z standard normal (a log-normal factor whose median is
    /// exactly 1, so the true TTFT median stays `ttft_ms`); 0 is no noise.
    pub ttft_jitter: f64,
    /// The same for every inter-token gap (each chunk draws its own factor).
    pub itl_jitter: f64,
    /// Seed of the noise: request `n` (in arrival order) draws from `(jitter_seed, n)`.
    pub jitter_seed: u64,
    /// Extra TTFT per prompt token not found in the prefix cache, in ms (prefill cost).
    pub prefill_ms_per_token: f64,
    /// Prefix cache capacity in blocks; 0: no prefix cache.
    pub prefix_cache_blocks: u32,
    /// Tokens per prefix-cache block (vLLM's default block size is 16).
    pub prefix_block_tokens: u32,
    /// Every output token is ` r<request id>` (the client's record id when it sends one):
    /// a server whose answers name their request, for the tests of conversation history.
    pub name_tokens: bool,
    /// The context length: a request whose prompt plus `max_tokens` exceeds it gets
    /// vLLM's HTTP 400; `None`: no limit.
    pub max_model_len: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "llmbench-sim".into(),
            ttft_ms: 50.0,
            ttft_per_running_ms: 0.0,
            itl_ms: 10.0,
            itl_per_running_ms: 0.0,
            tokens_per_chunk: 1,
            output_tokens: None,
            max_batch: 256,
            default_max_tokens: 16,
            record_truth: false,
            fault_rate: 0.0,
            faults: Vec::new(),
            fault_seed: 0,
            fault_delay_ms: 60_000.0,
            ttft_jitter: 0.0,
            itl_jitter: 0.0,
            jitter_seed: 0,
            prefill_ms_per_token: 0.0,
            prefix_cache_blocks: 0,
            prefix_block_tokens: 16,
            name_tokens: false,
            max_model_len: None,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<()> {
        let times = [
            self.ttft_ms,
            self.ttft_per_running_ms,
            self.itl_ms,
            self.itl_per_running_ms,
            self.fault_delay_ms,
            self.ttft_jitter,
            self.itl_jitter,
            self.prefill_ms_per_token,
        ];
        if times.iter().any(|t| !t.is_finite() || *t < 0.0) {
            return Err(Error::InvalidArgument(
                "sim timings and jitters must be finite and ≥ 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.fault_rate)
            || (self.fault_rate > 0.0 && self.faults.is_empty())
        {
            return Err(Error::InvalidArgument(
                "fault_rate must be within [0, 1], with a non-empty list of faults".into(),
            ));
        }
        if self.tokens_per_chunk == 0
            || self.max_batch == 0
            || self.default_max_tokens == 0
            || self.prefix_block_tokens == 0
        {
            return Err(Error::InvalidArgument(
                "tokens_per_chunk, max_batch, default_max_tokens and prefix_block_tokens \
                 must be ≥ 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Live state shared by the handlers.
struct SimState {
    config: SimConfig,
    slots: Semaphore,
    running: AtomicU32,
    waiting: AtomicU32,
    served: AtomicU64,
    /// Requests received (numbers the rate-based fault draw).
    received: AtomicU64,
    created: u64,
    truth: TruthLog,
    /// The prefix cache, when configured.
    prefix: Option<std::sync::Mutex<prefix_cache::PrefixCache>>,
    /// Finished requests' queue, prefill and decode times (`/metrics`).
    times: std::sync::Mutex<Histograms>,
}

/// Decrements the running count when a stream ends, however it ends.
struct RunningGuard(Arc<SimState>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running scripted server. Dropping it (or [`SimServer::shutdown`]) stops it.
pub struct SimServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    state: Arc<SimState>,
}

impl SimServer {
    /// Start on `host:port` (port 0 picks a free port). Must be called on a tokio runtime.
    pub async fn start(config: SimConfig, host: &str, port: u16) -> Result<SimServer> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| Error::InvalidArgument(format!("cannot listen on {host}:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("sim listener", e))?;
        let prefix = (config.prefix_cache_blocks > 0).then(|| {
            std::sync::Mutex::new(prefix_cache::PrefixCache::new(
                config.prefix_cache_blocks,
                config.prefix_block_tokens,
            ))
        });
        let state = Arc::new(SimState {
            slots: Semaphore::new(config.max_batch as usize),
            config,
            running: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            served: AtomicU64::new(0),
            received: AtomicU64::new(0),
            created: crate::clock::unix_anchor_ns() / 1_000_000_000,
            truth: TruthLog::default(),
            prefix,
            times: std::sync::Mutex::default(),
        });
        // Every protocol on its own route, answered by the one handler.
        let app = Api::ALL
            .into_iter()
            .fold(Router::new(), |app, api| {
                app.route(
                    api.protocol().route(),
                    post(
                        move |State(st): State<Arc<SimState>>,
                              ConnectInfo(conn): ConnectInfo<ConnHandle>,
                              headers: HeaderMap,
                              Json(body): Json<Value>| async move {
                            handle(st, conn, &headers, body, api).await
                        },
                    ),
                )
            })
            .route("/v1/models", get(models))
            .route("/health", get(|| async { StatusCode::OK }))
            .route(
                "/version",
                get(|| async { Json(json!({"version": env!("CARGO_PKG_VERSION")})) }),
            )
            .route("/info", get(info))
            .route("/metrics", get(metrics))
            .route(TRUTH_PATH, get(take_truth))
            .with_state(state.clone());
        // Connections that handlers can reset (faults); TCP_NODELAY is set on accept.
        let listener = KillableListener(listener);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<ConnHandle>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        });
        Ok(SimServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            state,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served to completion or disconnect so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Take the truth records collected so far (empty unless `record_truth` is on).
    pub fn take_truth(&self) -> Vec<TruthRecord> {
        self.state.truth.take()
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// Stop accepting and close open streams (their generators end when they notice).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Graceful shutdown would wait for every open stream; a benchmark's server
            // should stop now.
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn models(State(st): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": st.config.model, "object": "model", "created": st.created,
        "owned_by": "llmbench", "root": st.config.model, "parent": null,
        "max_model_len": st.config.max_model_len.unwrap_or(1_000_000), "permission": []
    }]}))
}

async fn info(State(st): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({
        "model_id": st.config.model,
        "router": "llmbench-sim",
        "version": env!("CARGO_PKG_VERSION"),
        "max_concurrent_requests": st.config.max_batch,
        "sim_config": st.config,
    }))
}

async fn metrics(State(st): State<Arc<SimState>>) -> String {
    let prefix = st
        .prefix
        .as_ref()
        .and_then(|p| p.lock().ok().map(|c| (c.queries, c.hits)))
        .map_or_else(String::new, |(q, h)| {
            format!(
                "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of \
                 number of queried tokens.\n# TYPE vllm:prefix_cache_queries_total counter\n\
                 vllm:prefix_cache_queries_total{{engine=\"0\",model_name=\"{m}\"}} {q}\n\
                 # HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number \
                 of cached tokens.\n# TYPE vllm:prefix_cache_hits_total counter\n\
                 vllm:prefix_cache_hits_total{{engine=\"0\",model_name=\"{m}\"}} {h}\n",
                m = st.config.model
            )
        });
    let times = st
        .times
        .lock()
        .map(|t| t.render(&st.config.model))
        .unwrap_or_default();
    prefix
        + &times
        + &format!(
        "# HELP llmbench_sim_running Requests running.\n# TYPE llmbench_sim_running gauge\n\
         llmbench_sim_running {}\n# HELP llmbench_sim_waiting Requests queued.\n\
         # TYPE llmbench_sim_waiting gauge\nllmbench_sim_waiting {}\n\
         # HELP llmbench_sim_served_total Requests served.\n# TYPE llmbench_sim_served_total counter\n\
         llmbench_sim_served_total {}\n",
        st.running.load(Ordering::Relaxed),
        st.waiting.load(Ordering::Relaxed),
        st.served.load(Ordering::Relaxed)
    )
}

async fn handle(
    st: Arc<SimState>,
    conn: ConnHandle,
    headers: &HeaderMap,
    body: Value,
    format: Api,
) -> Response {
    let t_received = crate::clock::now_ns();
    let arrived = tokio::time::Instant::now();
    let n = st.received.fetch_add(1, Ordering::Relaxed);
    let fault = match faults::requested(headers, &body) {
        Ok(Some(f)) => Some(f),
        Ok(None) => faults::by_rate(
            n,
            st.config.fault_rate,
            &st.config.faults,
            st.config.fault_seed,
        ),
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, "BadRequestError", msg),
    };
    let served = match format.protocol().served_request(&body) {
        Ok(r) => r,
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, "BadRequestError", msg),
    };
    let mut plan = match ResponsePlan::from_request(&st.config, &served, format) {
        Ok(p) => p,
        Err((status, kind, msg)) => return error_response(status, kind, msg),
    };
    plan.no_finish = fault == Some(Fault::NoFinish);
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if st.config.name_tokens {
        plan.token_word = Some(format!(" r{}", request_id.unwrap_or(n)));
    }
    match fault {
        Some(Fault::ResetBeforeHeaders) => {
            // The response is never written: the connection fails on its first write and
            // closes with a reset.
            conn.switch.kill();
            st.served.fetch_add(1, Ordering::Relaxed);
            return StatusCode::OK.into_response();
        }
        Some(f @ (Fault::Http429 | Fault::Http500 | Fault::Http503)) => {
            st.served.fetch_add(1, Ordering::Relaxed);
            let (status, body) = plan.http_fault(f);
            return (status, Json(body)).into_response();
        }
        Some(Fault::NonSse) => {
            st.served.fetch_add(1, Ordering::Relaxed);
            return Json(plan.full_response(st.created)).into_response();
        }
        Some(Fault::SlowFirstByte) => tokio::time::sleep(ms(st.config.fault_delay_ms)).await,
        _ => {}
    }
    if !plan.stream {
        return non_streaming(st, plan).await;
    }
    let recorder = st.config.record_truth.then(|| {
        TruthRecorder::new(
            st.truth.clone(),
            request_id,
            t_received,
            served.prompt.clone(),
        )
    });
    let (tx, rx) = mpsc::channel::<Piece>(64);
    let answer = Handoff {
        plan: plan.clone(),
        created: st.created,
        arrived,
        first: None,
        last: None,
    };
    tokio::spawn(produce(st, plan, tx, fault, conn, n, arrived));
    // Each chunk is stamped as it is handed to hyper, which writes it to the socket in the
    // same poll: the truth is when it left, not when the schedule meant it to. The
    // request's own times (vLLM's `metrics` on the usage chunk) are taken from the same
    // stamps, so they agree with the truth log.
    let stream = futures_util::stream::unfold(
        (rx, recorder, answer),
        |(mut rx, mut rec, mut answer)| async move {
            let (mut bytes, tokens, trailer) = rx.recv().await?;
            if tokens > 0 {
                let now = tokio::time::Instant::now();
                answer.first.get_or_insert(now);
                answer.last = Some(now);
            }
            if let Some(admitted) = trailer {
                bytes = answer.trailer(admitted);
            }
            if let Some(r) = rec.as_mut() {
                r.chunk(crate::clock::now_ns(), tokens);
            }
            Some((Ok::<_, Infallible>(bytes), (rx, rec, answer)))
        },
    );
    sse_response(Body::from_stream(stream))
}

/// What `produce` hands the handler: bytes to write and the output tokens they carry;
/// or, with the instant the request was admitted, the cue to write its trailer.
type Piece = (Bytes, u32, Option<tokio::time::Instant>);

/// What the handler knows of one streamed answer, to write its trailer with the times
/// its chunks reached the connection.
struct Handoff {
    plan: ResponsePlan,
    created: u64,
    arrived: tokio::time::Instant,
    first: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
}

impl Handoff {
    /// The trailer (usage chunk, with the request's times when it asked, and `[DONE]`).
    fn trailer(&self, admitted: tokio::time::Instant) -> Bytes {
        let times = self.first.zip(self.last).map(|(first, last)| {
            RequestTimes {
                arrived: self.arrived,
                admitted,
                first,
                last,
            }
            .reported()
        });
        self.plan.trailer_bytes(self.created, times)
    }
}

async fn take_truth(State(st): State<Arc<SimState>>) -> Response {
    if !st.config.record_truth {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            "truth recording is off: start the server with record_truth (--record-truth 1)".into(),
        );
    }
    Json(json!({
        "monotonic_anchor_ns": crate::clock::monotonic_anchor_ns(),
        "records": st.truth.take(),
    }))
    .into_response()
}

/// The exact bytes the scripted server streams for one request of `n_tokens` tokens (one
/// per chunk) on `api`, usage included: the input of the client's parse benchmark.
pub fn stream_bytes(api: Api, n_tokens: u32) -> Vec<u8> {
    let cfg = SimConfig::default();
    let body = api.protocol().request_body(
        "hi",
        None,
        n_tokens,
        &crate::protocol::RequestSettings {
            model: &cfg.model,
            temperature: 0.0,
            include_usage: true,
            continuous_usage: false,
            include_metrics: false,
            force_output_len: None,
            extra_body: &serde_json::Map::new(),
        },
    );
    let Ok(served) = api.protocol().served_request(&body) else {
        return Vec::new();
    };
    let Ok(plan) = ResponsePlan::from_request(&cfg, &served, api) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..plan.n_out {
        out.extend_from_slice(&plan.chunk_bytes(0, i, i, 1));
    }
    out.extend_from_slice(&plan.trailer_bytes(0, None));
    out
}

/// Wait for a batch slot, then return the guard and the admission time.
async fn admit(st: &Arc<SimState>) -> Option<(tokio::sync::SemaphorePermit<'_>, RunningGuard)> {
    st.waiting.fetch_add(1, Ordering::SeqCst);
    let permit = st.slots.acquire().await.ok();
    st.waiting.fetch_sub(1, Ordering::SeqCst);
    let permit = permit?;
    st.running.fetch_add(1, Ordering::SeqCst);
    Some((permit, RunningGuard(st.clone())))
}

fn extra_ms(per: f64, running: u32) -> f64 {
    per * f64::from(running.saturating_sub(1))
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1e3)
}

/// Generate one stream on its absolute schedule; stops when the client goes away. A
/// stream fault changes what is sent after the first two tokens.
async fn produce(
    st: Arc<SimState>,
    plan: ResponsePlan,
    tx: mpsc::Sender<Piece>,
    fault: Option<Fault>,
    conn: ConnHandle,
    arrival: u64,
    arrived: tokio::time::Instant,
) {
    let Some((_permit, _guard)) = admit(&st).await else {
        return;
    };
    let _served = ServedGuard(st.clone());
    let cfg = &st.config;
    let mut noise = Jitter::new(cfg.jitter_seed, arrival);
    let admitted = tokio::time::Instant::now();
    let running = st.running.load(Ordering::SeqCst);
    let ttft = cfg.ttft_ms + extra_ms(cfg.ttft_per_running_ms, running) + prefill_ms(&st, &plan);
    let mut due = admitted + ms(ttft * noise.factor(cfg.ttft_jitter));
    if fault == Some(Fault::EmptyOutput) {
        tokio::time::sleep_until(due).await;
        let _ = tx
            .send((plan.empty_output_bytes(st.created), 0, None))
            .await;
        return;
    }
    let mut sent = 0u32;
    let mut chunk_index = 0u32;
    // When each chunk left, for the server's own times.
    let mut left: Vec<tokio::time::Instant> = Vec::new();
    while sent < plan.n_out {
        tokio::time::sleep_until(due).await;
        if sent >= 2.min(plan.n_out - 1) {
            let cut = match fault {
                Some(Fault::ResetMidStream) => {
                    conn.switch.kill();
                    // Something to write, so the connection notices now.
                    Some(Bytes::from_static(b": reset\n\n"))
                }
                Some(Fault::InBandError) => Some(plan.in_band_error_bytes()),
                Some(Fault::MalformedJson) => Some(plan.malformed_bytes()),
                Some(Fault::InvalidUtf8) => Some(plan.invalid_utf8_bytes()),
                Some(Fault::HugeLine) => Some(plan.huge_line_bytes()),
                _ => None,
            };
            if let Some(bytes) = cut {
                let _ = tx.send((bytes, 0, None)).await;
                return;
            }
            if fault == Some(Fault::StallMidStream) && sent == 2.min(plan.n_out - 1) {
                tokio::time::sleep(ms(cfg.fault_delay_ms)).await;
                due = tokio::time::Instant::now();
            }
        }
        let k = cfg.tokens_per_chunk.min(plan.n_out - sent);
        let bytes = plan.chunk_bytes(st.created, chunk_index, sent, k);
        let delivered = if fault == Some(Fault::SplitWrites) {
            send_split(&tx, bytes, k).await
        } else {
            tx.send((bytes, k, None)).await.is_ok()
        };
        if !delivered {
            return; // client went away
        }
        left.push(tokio::time::Instant::now());
        sent += k;
        chunk_index += 1;
        let running = st.running.load(Ordering::SeqCst);
        let itl = cfg.itl_ms + extra_ms(cfg.itl_per_running_ms, running);
        due += ms(itl * f64::from(k) * noise.factor(cfg.itl_jitter));
    }
    if fault == Some(Fault::NoFinish) {
        return;
    }
    // A request the server finished (as vLLM counts them: the faults that cut a stream
    // returned above): its times go on its usage chunk and into the histograms.
    let (Some(first), Some(last)) = (left.first(), left.last()) else {
        let _ = tx
            .send((plan.trailer_bytes(st.created, None), 0, None))
            .await;
        return;
    };
    let t = RequestTimes {
        arrived,
        admitted,
        first: *first,
        last: *last,
    };
    // The handler writes the trailer: its times are when the chunks reached the
    // connection, the moments the truth log records.
    let _ = tx.send((Bytes::new(), 0, Some(admitted))).await;
    let gaps: Vec<_> = left.windows(2).map(|w| w[1] - w[0]).collect();
    if let Ok(mut times) = st.times.lock() {
        times.observe(&t, &gaps, plan.n_in, plan.n_out);
    }
}

/// The prefill cost of a request just admitted: `prefill_ms_per_token` for every prompt
/// token its cached prefix does not cover (the prefix cache is looked up, and the prompt's
/// blocks cached, here: at admission, as a scheduler would).
fn prefill_ms(st: &SimState, plan: &ResponsePlan) -> f64 {
    let cached = st
        .prefix
        .as_ref()
        .and_then(|p| p.lock().ok())
        .map_or(0, |mut c| c.admit(&plan.block_hashes, plan.n_in));
    st.config.prefill_ms_per_token * f64::from(plan.n_in.saturating_sub(cached))
}

/// One request's seeded noise draws (see `SimConfig::ttft_jitter`).
struct Jitter(rand_chacha::ChaCha8Rng);

impl Jitter {
    fn new(seed: u64, arrival: u64) -> Self {
        use rand::SeedableRng;
        // Distinct, reproducible streams per request, whatever order they finish in.
        let mixed = seed ^ arrival.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Jitter(rand_chacha::ChaCha8Rng::seed_from_u64(mixed))
    }

    /// `exp(σ·Z)`: a log-normal factor with median 1 (exactly 1 when σ is 0).
    fn factor(&mut self, sigma: f64) -> f64 {
        use rand::Rng;
        if sigma == 0.0 {
            return 1.0;
        }
        let z: f64 = self.0.sample(rand_distr::StandardNormal);
        (sigma * z).exp()
    }
}

/// Counts a stream as served however it ends.
struct ServedGuard(Arc<SimState>);

impl Drop for ServedGuard {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Send a chunk three bytes at a time, each its own write (the tokens ride on the last).
async fn send_split(tx: &mpsc::Sender<Piece>, bytes: Bytes, k: u32) -> bool {
    let n = bytes.len();
    for start in (0..n).step_by(3) {
        let end = (start + 3).min(n);
        let tokens = if end == n { k } else { 0 };
        if tx
            .send((bytes.slice(start..end), tokens, None))
            .await
            .is_err()
        {
            return false;
        }
        tokio::task::yield_now().await;
    }
    true
}

async fn non_streaming(st: Arc<SimState>, plan: ResponsePlan) -> Response {
    let Some((_permit, _guard)) = admit(&st).await else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "shutting down".into(),
        );
    };
    let cfg = &st.config;
    let running = st.running.load(Ordering::SeqCst);
    let total = cfg.ttft_ms
        + extra_ms(cfg.ttft_per_running_ms, running)
        + prefill_ms(&st, &plan)
        + f64::from(plan.n_out.saturating_sub(1))
            * (cfg.itl_ms + extra_ms(cfg.itl_per_running_ms, running));
    tokio::time::sleep(ms(total)).await;
    st.served.fetch_add(1, Ordering::Relaxed);
    Json(plan.full_response(st.created)).into_response()
}

#[cfg(test)]
mod conversation_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod tests;
