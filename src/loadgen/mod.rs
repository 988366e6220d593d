//! Sweeps: a warm-up request, then one closed-loop stage per batch size, every record
//! streamed to disk as it completes and summarized per stage at the end.

pub mod arrival;
pub mod closed;
pub mod fdlimit;
pub mod health;
pub mod open;
pub mod progress;
pub mod prompts;
pub mod resume;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::stream::{send, Shared};
use crate::client::{build_http_client, TargetSpec};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::metrics::{summarize_stage, Cell, Pricing, Summary};
use crate::record::{ErrorKind, RequestRecord};
use crate::sink::RecordSink;
use crate::tokens::TokenCounter;
use arrival::{schedule, Arrival};
use closed::{run_stage, StageSpec};
use open::{run_open_stage, OpenStageSpec};
use progress::Progress;
use prompts::PromptOrder;

/// Default batch sizes of a sweep (the seed workflow's).
pub const DEFAULT_BATCH_SIZES: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// A whole sweep, as the Python side describes it. Unknown keys are errors: a misspelt
/// setting must never silently become its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// The target.
    pub target: TargetSpec,
    /// Concurrency points.
    #[serde(default = "default_batch_sizes")]
    pub batch_sizes: Vec<u32>,
    /// Requests per stage; `None` means `max(4 × batch size, 16)`.
    #[serde(default)]
    pub requests_per_stage: Option<u64>,
    /// Stop starting requests in a stage after this many seconds.
    #[serde(default)]
    pub stage_duration_s: Option<f64>,
    /// Output token budget per request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// The prompts to sample from.
    pub prompts: Vec<String>,
    /// Output token budget per prompt (same length as `prompts`); `max_tokens` for all
    /// when absent.
    #[serde(default)]
    pub max_tokens_per_prompt: Option<Vec<u32>>,
    /// Seed of the prompt order.
    #[serde(default)]
    pub seed: u64,
    /// Warm-up requests before the first stage (reported apart, never in statistics).
    #[serde(default = "default_warmup")]
    pub warmup_requests: u32,
    /// Optional `tokenizer.json` for counts the server does not give.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// JSONL file records are appended to as they complete.
    #[serde(default)]
    pub records_path: Option<PathBuf>,
    /// Pricing for the cost columns.
    #[serde(default)]
    pub pricing: Pricing,
    /// Open-loop stages at these request rates instead of the batch sizes.
    #[serde(default)]
    pub open_loop: Option<OpenLoop>,
    /// A warm-up wave this long at the first stage's load, after the warm-up requests
    /// (the "first wave" of a cold server), reported apart.
    #[serde(default)]
    pub warmup_s: Option<f64>,
    /// Pause this long after each stage, with nothing sent, so the server drains.
    #[serde(default)]
    pub cooldown_s: Option<f64>,
    /// Continue an interrupted run from `records_path`: keep its completed stages, run
    /// the rest.
    #[serde(default)]
    pub resume: bool,
}

/// Open-loop stages: one per rate, arrivals from the chosen process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLoop {
    /// Target request rates, per second.
    pub rates: Vec<f64>,
    /// The arrival process.
    #[serde(default)]
    pub process: Process,
    /// Shape of the gamma process (1 = Poisson).
    #[serde(default = "one")]
    pub burstiness: f64,
    /// Optional cap on requests in flight.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// End rate of a linear ramp (process "ramp": from each stage's rate to this one over
    /// the stage's duration).
    #[serde(default)]
    pub ramp_end_rate: Option<f64>,
    /// Trace replay: arrival times in seconds (process "trace"; one stage).
    #[serde(default)]
    pub trace_times_s: Option<Vec<f64>>,
    /// Request `j` sends prompt `j` (trace replay) instead of the seeded shuffle.
    #[serde(default)]
    pub in_order: bool,
}

/// The arrival process of an open-loop stage, by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// Exponential gaps.
    #[default]
    Poisson,
    /// Evenly spaced.
    Constant,
    /// Gamma gaps of shape `burstiness`.
    Gamma,
    /// A linear ramp from the stage's rate to `ramp_end_rate`.
    Ramp,
    /// Replay of `trace_times_s`.
    Trace,
}

impl Process {
    /// The processes a user picks by name; a trace is chosen by giving its times.
    pub const BY_NAME: [Process; 4] = [
        Process::Poisson,
        Process::Constant,
        Process::Gamma,
        Process::Ramp,
    ];
}

fn one() -> f64 {
    1.0
}

impl OpenLoop {
    /// The arrival process at `rate`.
    pub fn arrival(&self, rate: f64) -> Result<Arrival> {
        match self.process {
            Process::Poisson => Ok(Arrival::Poisson { rate }),
            Process::Constant => Ok(Arrival::Constant { rate }),
            Process::Gamma => Ok(Arrival::Gamma {
                rate,
                burstiness: self.burstiness,
            }),
            Process::Ramp => match self.ramp_end_rate {
                Some(end_rate) => Ok(Arrival::Ramp {
                    start_rate: rate,
                    end_rate,
                }),
                None => Err(Error::InvalidArgument(
                    "the ramp process needs ramp_end_rate".into(),
                )),
            },
            Process::Trace => match &self.trace_times_s {
                Some(times) => Ok(Arrival::Trace {
                    times_s: times.clone(),
                }),
                None => Err(Error::InvalidArgument(
                    "the trace process needs trace_times_s".into(),
                )),
            },
        }
    }
}

fn default_batch_sizes() -> Vec<u32> {
    DEFAULT_BATCH_SIZES.to_vec()
}
fn default_max_tokens() -> u32 {
    128
}
fn default_warmup() -> u32 {
    1
}

impl SweepConfig {
    /// Requests in the stage of concurrency `batch_size`.
    pub fn requests_for(&self, batch_size: u32) -> u64 {
        self.requests_per_stage
            .unwrap_or_else(|| crate::settings::default_requests_for(batch_size))
    }

    /// Check every setting, with messages a user can act on.
    pub fn validate(&self) -> Result<()> {
        self.target.validate()?;
        if let Some(o) = &self.open_loop {
            if o.rates.is_empty() || o.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
                return Err(Error::InvalidArgument(
                    "rates must be a non-empty list of positive requests per second".into(),
                ));
            }
            o.arrival(1.0)?;
            if o.max_in_flight == Some(0) {
                return Err(Error::InvalidArgument(
                    "max_in_flight must be at least 1".into(),
                ));
            }
        } else if self.batch_sizes.is_empty() || self.batch_sizes.contains(&0) {
            return Err(Error::InvalidArgument(
                "batch_sizes must be a non-empty list of positive integers".into(),
            ));
        }
        if self.prompts.is_empty() {
            return Err(Error::InvalidArgument("the prompt list is empty".into()));
        }
        if let Some(per) = &self.max_tokens_per_prompt {
            if per.len() != self.prompts.len() || per.contains(&0) {
                return Err(Error::InvalidArgument(
                    "max_tokens_per_prompt needs one positive budget per prompt".into(),
                ));
            }
        }
        if self.max_tokens == 0 {
            return Err(Error::InvalidArgument(
                "max_tokens must be at least 1".into(),
            ));
        }
        if self.requests_per_stage == Some(0) {
            return Err(Error::InvalidArgument(
                "requests_per_stage must be at least 1".into(),
            ));
        }
        for (name, v) in [("warmup_s", self.warmup_s), ("cooldown_s", self.cooldown_s)] {
            if v.is_some_and(|d| !d.is_finite() || d < 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "{name} must be a non-negative number of seconds"
                )));
            }
        }
        if let Some(d) = self.stage_duration_s {
            if !d.is_finite() || d <= 0.0 {
                return Err(Error::InvalidArgument(
                    "stage_duration_s must be a positive number of seconds".into(),
                ));
            }
        }
        let p = &self.pricing;
        if !p.usd_per_gpu_hour.is_finite() || p.usd_per_gpu_hour < 0.0 || p.n_gpus == 0 {
            return Err(Error::InvalidArgument(
                "gpu_hourly_usd must be ≥ 0 and n_gpus ≥ 1".into(),
            ));
        }
        Ok(())
    }
}

/// One stage's result.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    /// Stage index.
    pub index: u32,
    /// Concurrency (0 for an open-loop stage).
    pub batch_size: u32,
    /// Target request rate of an open-loop stage.
    pub target_rate: Option<f64>,
    /// Summary columns.
    pub summary: Summary,
    /// The stage was cut short by cancellation.
    pub interrupted: bool,
}

/// Everything a sweep produced.
#[derive(Debug, Clone, Serialize)]
pub struct SweepOutput {
    /// Every record, warm-up included, in completion order.
    pub records: Vec<RequestRecord>,
    /// One entry per stage that started.
    pub stages: Vec<StageResult>,
    /// What the server says about itself (`/v1/models`, `/version`, `/info`), null where
    /// absent.
    pub server_info: Value,
    /// Problems that did not stop the run (e.g. the record file could not be written).
    pub warnings: Vec<String>,
    /// The run was cancelled.
    pub interrupted: bool,
    /// Run clock at the start.
    pub t_start_ns: u64,
}

/// Fetch what the server says about itself, for the run manifest. Never fails.
pub async fn server_info(http: &reqwest::Client, spec: &TargetSpec) -> Value {
    let mut info = serde_json::Map::new();
    for (key, path) in [
        ("models", "/v1/models"),
        ("version", "/version"),
        ("info", "/info"),
    ] {
        let mut req = http.get(spec.root_path(path));
        if let Some(k) = &spec.api_key {
            req = req.bearer_auth(k);
        }
        let value = match tokio::time::timeout(Duration::from_secs(3), req.send()).await {
            Ok(Ok(r)) if r.status().is_success() => {
                match tokio::time::timeout(Duration::from_secs(3), r.json::<Value>()).await {
                    Ok(Ok(v)) => v,
                    _ => Value::Null,
                }
            }
            _ => Value::Null,
        };
        info.insert(key.into(), value);
    }
    Value::Object(info)
}

/// Open `n` connections before a stage (concurrent `GET /health`s, whatever they answer),
/// so its first requests do not pay for TCP set-up and the server's accepts: without it a
/// stage of 1,024 streams starts with 1,024 connects and its TTFT p99 is the accept queue.
async fn preconnect(shared: &Shared, n: u32) {
    let url = shared.spec.root_path("/health");
    let timeout = Duration::from_secs_f64(shared.spec.timeouts.connect_s.max(1.0) * 2.0);
    let one = || async {
        let mut req = shared.http.get(&url);
        if let Some(k) = &shared.spec.api_key {
            req = req.bearer_auth(k);
        }
        // Read the body so the connection goes back to the pool.
        let _ = tokio::time::timeout(timeout, async { req.send().await?.bytes().await }).await;
    };
    // A cancelled run (Ctrl-C) does not wait for slow answers.
    tokio::select! {
        _ = futures_util::future::join_all((0..n).map(|_| one())) => {}
        _ = shared.cancel.cancelled() => {}
    }
}

fn model_ids(info: &Value) -> Vec<String> {
    info["models"]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Turn a failed warm-up into an error a user can act on, or `None` if the run can go on.
fn warmup_error(spec: &TargetSpec, rec: &RequestRecord, info: &Value) -> Option<Error> {
    let url = crate::util::redact_url(&spec.endpoint());
    let msg = rec.error.clone().unwrap_or_default();
    match rec.error_kind? {
        ErrorKind::Connect => Some(Error::Unreachable {
            url,
            detail: format!(
                "{msg}. Is the server running and listening there? (tried POST {} with a \
                 streaming {:?} request)",
                crate::util::redact_url(&spec.endpoint()),
                spec.api
            ),
        }),
        ErrorKind::HttpStatus => {
            let ids = model_ids(info);
            let hint = if rec.http_status == Some(404) && !ids.is_empty() {
                if ids.contains(&spec.model) {
                    format!(
                        " (the server lists model {:?}; is the API right?)",
                        spec.model
                    )
                } else {
                    format!(
                        " (model {:?} is not served; the server lists: {})",
                        spec.model,
                        ids.join(", ")
                    )
                }
            } else {
                String::new()
            };
            Some(Error::Target(format!(
                "the warm-up request to {url} failed: {msg}{hint}"
            )))
        }
        ErrorKind::Malformed => Some(Error::Target(format!(
            "the warm-up request to {url} failed: {msg}"
        ))),
        ErrorKind::Cancelled => Some(Error::Cancelled),
        _ => None,
    }
}

/// Run a sweep. Records reach `config.records_path` as they complete; cancellation stops
/// promptly and returns what was measured with `interrupted = true`.
pub async fn run_sweep(
    config: SweepConfig,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) -> Result<SweepOutput> {
    config.validate()?;
    let counter = match &config.tokenizer {
        Some(p) => Some(Arc::new(TokenCounter::from_file(p)?)),
        None => None,
    };
    let max_batch = config.batch_sizes.iter().copied().max().unwrap_or(1) as usize;
    // Open loop: at most `max_in_flight` streams, else as many as the rate keeps busy;
    // 1,024 is checked as a floor for that unknown.
    let streams = match &config.open_loop {
        Some(o) => o.max_in_flight.map(u64::from).unwrap_or(1024),
        None => max_batch as u64,
    };
    let fd_note = fdlimit::ensure(streams)?;
    // The pool keeps every stream's connection between requests (and the pre-opened ones).
    let http = build_http_client(&config.target, (streams as usize).max(max_batch))?;
    // One entry per stage: (batch size, target rate).
    let stages_plan: Vec<(u32, Option<f64>)> = match &config.open_loop {
        Some(o) => o.rates.iter().map(|r| (0, Some(*r))).collect(),
        None => config.batch_sizes.iter().map(|b| (*b, None)).collect(),
    };
    let prior = match (&config.records_path, config.resume) {
        (Some(p), true) => {
            let expected: Vec<Option<u64>> = stages_plan
                .iter()
                .map(
                    |&(b, _)| match (&config.open_loop, config.stage_duration_s) {
                        (None, None) => Some(config.requests_for(b)),
                        (Some(_), None) => config.requests_per_stage,
                        _ => None,
                    },
                )
                .collect();
            resume::load_prior(p, &expected)?
        }
        (None, true) => {
            return Err(Error::InvalidArgument(
                "resuming needs the record file of the interrupted run (an out_dir)".into(),
            ))
        }
        _ => resume::Prior::default(),
    };
    let mut sink = match &config.records_path {
        Some(p) => Some(RecordSink::open(p)?),
        None => None,
    };
    let t_start_ns = now_ns();
    let info = server_info(&http, &config.target).await;
    let shared = Arc::new(Shared {
        http,
        spec: config.target.clone(),
        counter,
        cancel: cancel.clone(),
    });
    let workload = Arc::new(prompts::Workload {
        prompts: config.prompts.clone(),
        max_tokens: config
            .max_tokens_per_prompt
            .clone()
            .unwrap_or_else(|| vec![config.max_tokens; config.prompts.len()]),
    });
    let order = Arc::new(PromptOrder::new(workload.prompts.len(), config.seed));
    let ids = Arc::new(AtomicU64::new(prior.next_id));
    let mut records: Vec<RequestRecord> = prior.records;
    let mut stages = Vec::new();
    let mut warnings: Vec<String> = fd_note.into_iter().collect();
    if config.resume {
        warnings.push(format!(
            "resumed: kept {} completed stage(s) ({} records), dropped {} record(s) of the \
             stage that was cut short",
            prior.done.len(),
            records.len(),
            prior.dropped
        ));
    }
    if stages_plan.len() == prior.done.len() {
        // Nothing left to run: summarize what was kept.
        for (i, &(b, r)) in stages_plan.iter().enumerate() {
            let st: Vec<&RequestRecord> = records.iter().filter(|x| x.stage == i as u32).collect();
            stages.push(StageResult {
                index: i as u32,
                batch_size: b,
                target_rate: r,
                summary: summarize_stage(&st, config.pricing),
                interrupted: false,
            });
        }
        return Ok(SweepOutput {
            records,
            stages,
            server_info: info,
            warnings,
            interrupted: false,
            t_start_ns,
        });
    }

    // Warm-up: connections open, server caches warm; reported apart, never in statistics.
    for w in 0..config.warmup_requests {
        let first_bs = config.batch_sizes[0];
        let t = now_ns();
        let idx = order.index(u32::MAX, u64::from(w));
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job = workload.job(id, 0, first_bs, true, idx, t);
        let rec = send(&shared, job).await;
        if let Some(s) = sink.as_mut() {
            s.write(&rec);
        }
        let err = warmup_error(&config.target, &rec, &info);
        records.push(rec);
        if let Some(e) = err {
            return Err(e);
        }
    }

    let mut interrupted = false;
    // (stage index, batch size, rate, warm-up wave): the optional first wave runs at the
    // first stage's load and carries that stage's index, flagged as warm-up.
    let mut runs: Vec<(u32, u32, Option<f64>, bool)> = Vec::new();
    if config.warmup_s.is_some_and(|d| d > 0.0) {
        let (b, r) = stages_plan[0];
        runs.push((0, b, r, true));
    }
    runs.extend(
        stages_plan
            .iter()
            .enumerate()
            .map(|(i, &(b, r))| (i as u32, b, r, false)),
    );
    for &(index, batch_size, rate, warm) in &runs {
        if prior.done.contains(&index) {
            if !warm {
                // Completed before the interruption: summarized from its kept records.
                let st: Vec<&RequestRecord> = records.iter().filter(|x| x.stage == index).collect();
                let mut summary = summarize_stage(&st, config.pricing);
                put_health(&mut summary, None);
                stages.push(StageResult {
                    index,
                    batch_size,
                    target_rate: rate,
                    summary,
                    interrupted: false,
                });
            }
            continue;
        }
        if cancel.is_cancelled() {
            interrupted = true;
            break;
        }
        // A warm-up wave runs for its duration only; measured stages as configured.
        let (requests_cfg, duration_cfg) = if warm {
            (Some(u64::MAX), config.warmup_s)
        } else {
            (config.requests_per_stage, config.stage_duration_s)
        };
        let wanted = match rate {
            Some(r) => config
                .open_loop
                .as_ref()
                .and_then(|o| o.max_in_flight)
                .unwrap_or(u32::MAX)
                .min(r.ceil().min(1024.0) as u32),
            None => batch_size,
        };
        preconnect(&shared, wanted).await;
        progress.start_stage(index, batch_size, now_ns());
        let monitor = health::HealthMonitor::start();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stage_task = match (&config.open_loop, rate) {
            (Some(open), Some(rate)) => {
                let requests = requests_cfg.or(if duration_cfg.is_some() {
                    None
                } else {
                    // Default: ten seconds' worth, at least 16.
                    Some(((rate * 10.0).ceil() as u64).max(16))
                });
                let offsets = schedule(
                    &open.arrival(rate)?,
                    requests,
                    duration_cfg,
                    config.seed.wrapping_add(u64::from(index)),
                )?;
                tokio::spawn(run_open_stage(
                    shared.clone(),
                    workload.clone(),
                    order.clone(),
                    ids.clone(),
                    OpenStageSpec {
                        index,
                        offsets,
                        max_in_flight: open.max_in_flight,
                        warmup: warm,
                        in_order: open.in_order && !warm,
                    },
                    tx,
                    progress.clone(),
                ))
            }
            _ => tokio::spawn(run_stage(
                shared.clone(),
                workload.clone(),
                order.clone(),
                ids.clone(),
                StageSpec {
                    index,
                    batch_size,
                    requests: if warm {
                        u64::MAX
                    } else {
                        config.requests_for(batch_size)
                    },
                    duration_s: duration_cfg,
                    warmup: warm,
                },
                tx,
                progress.clone(),
            )),
        };
        let first = records.len();
        while let Some(rec) = rx.recv().await {
            if let Some(s) = sink.as_mut() {
                s.write(&rec);
            }
            records.push(rec);
        }
        if let Err(e) = stage_task.await {
            warnings.push(format!("stage {index} task ended abnormally: {e}"));
        }
        let stage_interrupted = cancel.is_cancelled();
        let client_health = monitor.finish().await;
        if warm {
            // Kept (on disk and in the records, flagged), never summarized.
            continue;
        }
        let stage_records: Vec<&RequestRecord> = records[first..].iter().collect();
        let mut summary = summarize_stage(&stage_records, config.pricing);
        // Send lag matters where a schedule sets the load (open loop); waiting for a slot
        // under a configured `max_in_flight` is the user's cap, not the client falling
        // behind, and a closed loop's first wave leaves at once by design.
        let capped = config
            .open_loop
            .as_ref()
            .is_some_and(|o| o.max_in_flight.is_some());
        let send_lag = if capped || rate.is_none() {
            f64::NAN
        } else {
            summary.f64("send_lag_p99_ms")
        };
        let problems = client_health.problems(send_lag);
        if !problems.is_empty() {
            let load = rate.map_or(format!("batch size {batch_size}"), |r| format!("{r} req/s"));
            warnings.push(format!(
                "stage {index} ({load}): measurements not trustworthy: {}",
                problems.join("; ")
            ));
        }
        put_health(&mut summary, Some((&client_health, problems)));
        stages.push(StageResult {
            index,
            batch_size,
            target_rate: rate,
            summary,
            interrupted: stage_interrupted,
        });
        if stage_interrupted {
            interrupted = true;
            break;
        }
        if let Some(c) = config.cooldown_s.filter(|c| *c > 0.0) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(c)) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
    if let Some(e) = sink.as_ref().and_then(|s| s.error()) {
        warnings.push(e.to_string());
    }
    Ok(SweepOutput {
        records,
        stages,
        server_info: info,
        warnings,
        interrupted,
        t_start_ns,
    })
}

/// The client-health columns of a stage (NaN where the stage was not watched, e.g. one
/// kept from an interrupted run).
fn put_health(summary: &mut Summary, watched: Option<(&health::ClientHealth, Vec<String>)>) {
    let (h, problems) = match watched {
        Some((h, p)) => (Some(h), Some(p)),
        None => (None, None),
    };
    let lag = h.and_then(|h| h.task_lag);
    let f = |x: Option<f64>| Cell::Num(x.unwrap_or(f64::NAN));
    summary.insert("client_task_lag_p50_ms", f(lag.map(|d| d.pct[0])));
    summary.insert("client_task_lag_p99_ms", f(lag.map(|d| d.pct[3])));
    summary.insert("client_task_lag_max_ms", f(lag.map(|d| d.max)));
    summary.insert("client_cpu_s", f(h.map(|h| h.cpu_s)));
    summary.insert("client_cpu_share", f(h.map(|h| h.cpu_share())));
    summary.insert("client_cores", Cell::Int(h.map_or(0, |h| h.cores as u64)));
    summary.insert(
        "client_trustworthy",
        Cell::Num(match &problems {
            Some(p) => f64::from(u8::from(p.is_empty())),
            None => f64::NAN,
        }),
    );
    summary.insert(
        "client_health",
        Cell::Text(problems.map_or("not watched".into(), |p| p.join("; "))),
    );
}
