//! Sweeps: a warm-up request, then one stage per batch size (closed loop) or request rate
//! (open loop), every record streamed to disk as it completes and each stage summarized
//! as it ends. `config` says what to run, `server` what is asked of the target besides
//! the measured requests, `closed`/`open` how one stage sends its load.

pub mod arrival;
pub mod closed;
mod config;
pub mod conversation;
pub mod fdlimit;
pub mod health;
pub mod open;
pub mod progress;
pub mod prompts;
pub mod resume;
mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::build_http_client;
use crate::client::stream::{send, RunContext};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::metrics::{Cell, StageStats, Summary};
use crate::record::RequestRecord;
use crate::record_file::{RecordKeeper, RecordSink};
use crate::redact::Redactor;
use crate::tokens::TokenCounter;
use arrival::schedule;
use closed::{run_stage, StageSpec};
pub use config::{OpenLoop, Process, Share, SweepConfig, DEFAULT_BATCH_SIZES};
use open::{run_open_stage, OpenStageSpec};
use progress::Progress;
use prompts::{PromptOrder, Workload};
pub use server::server_info;

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
    /// Every record, warm-up included, in completion order, when the sweep had no record
    /// file (with one, they are in the file and none is kept in memory).
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
    /// The record file's first write error (a full disk, say): the records after it are
    /// not on disk, so the caller must not report the run as saved.
    pub records_error: Option<String>,
}

/// One stage to run: its index, batch size (0 in open loop), target rate (open loop) and
/// whether it is the optional warm-up wave (run at the first stage's load, carrying its
/// index, flagged as warm-up and never summarized).
#[derive(Debug, Clone, Copy)]
struct Step {
    index: u32,
    batch_size: u32,
    rate: Option<f64>,
    warm: bool,
    /// The agreed start of a distributed stage on the run clock, once waited for.
    t0: Option<u64>,
}

/// The stages of a sweep, in order: one per rate (open loop) or batch size (closed loop).
fn stage_plan(config: &SweepConfig) -> Vec<(u32, Option<f64>)> {
    match &config.open_loop {
        Some(o) => o.rates.iter().map(|r| (0, Some(*r))).collect(),
        None => config.batch_sizes.iter().map(|b| (*b, None)).collect(),
    }
}

/// What an interrupted run left in its record file, when resuming.
fn load_prior(config: &SweepConfig, plan: &[(u32, Option<f64>)]) -> Result<resume::Prior> {
    match (&config.records_path, config.resume) {
        (Some(p), true) => {
            // A stage counts as complete with all its requests; a stage bounded by time
            // has no count to check.
            // Conversations have no count to check either (a failed turn ends its
            // conversation early).
            let expected: Vec<Option<u64>> = plan
                .iter()
                .map(
                    |&(b, _)| match (&config.open_loop, config.stage_duration_s) {
                        _ if config.conversations.is_some() => None,
                        (None, None) => Some(config.requests_for(b)),
                        (Some(_), None) => config.requests_per_stage,
                        _ => None,
                    },
                )
                .collect();
            resume::load_prior(p, &expected, || {
                StageStats::new(config.pricing, config.slo.as_ref())
            })
        }
        (None, true) => Err(Error::InvalidArgument(
            "resuming needs the record file of the interrupted run (an out_dir)".into(),
        )),
        _ => Ok(resume::Prior::default()),
    }
}

/// A sweep in progress: what every stage shares, and what it has produced so far.
struct Sweep {
    config: SweepConfig,
    shared: Arc<RunContext>,
    workload: Arc<Workload>,
    order: Arc<PromptOrder>,
    ids: Arc<AtomicU64>,
    progress: Arc<Progress>,
    keeper: RecordKeeper,
    /// The summary of the stage being run, fed as its records complete.
    current: Option<StageStats>,
    /// The summaries of stages an interrupted run completed (when resuming).
    kept: std::collections::BTreeMap<u32, StageStats>,
    stages: Vec<StageResult>,
    warnings: Vec<String>,
    /// Every secret the run sends, replaced in every text that comes back.
    redactor: Redactor,
}

impl Sweep {
    /// The summary of stage `index` from the records it kept (a stage completed before an
    /// interruption, resumed): not watched, so its client-health columns are NaN.
    fn kept_stage(&mut self, index: u32, batch_size: u32, rate: Option<f64>) -> StageResult {
        let stats = self.kept.remove(&index).unwrap_or_else(|| self.new_stats());
        let mut summary = stats.finish();
        put_health(&mut summary, None);
        StageResult {
            index,
            batch_size,
            target_rate: rate,
            summary,
            interrupted: false,
        }
    }

    /// An empty stage summary, with the SLO's columns when one is set.
    fn new_stats(&self) -> StageStats {
        StageStats::new(self.config.pricing, self.config.slo.as_ref())
    }

    /// Count a completed record in its stage's summary and hand it to the record file,
    /// with any secret the server echoed back redacted.
    fn keep(&mut self, mut rec: RequestRecord) {
        if let Some(e) = rec.error.as_mut() {
            self.redactor.in_place(e);
        }
        if let Some(r) = rec.finish_reason.as_mut() {
            self.redactor.in_place(r);
        }
        if let Some(stats) = self.current.as_mut() {
            stats.add(&rec);
        }
        self.keeper.keep(rec);
    }

    /// Warm-up requests: connections open, server caches warm; reported apart, never in
    /// statistics. A warm-up that shows the target is unusable ends the run with an error.
    async fn warm_up(&mut self, info: &Value) -> Result<()> {
        for w in 0..self.config.warmup_requests {
            let first_bs = self.config.batch_sizes[0];
            let t = now_ns();
            let idx = self.order.index(u32::MAX, u64::from(w));
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            let job = self.workload.job(id, 0, first_bs, true, idx, t);
            let rec = send(&self.shared, job).await;
            let err = server::warmup_error(&self.config.target, &rec, info);
            if err.is_none() && !rec.ok() {
                self.warnings.push(format!(
                    "the warm-up request failed ({}: {}); the run goes on",
                    rec.error_kind.map_or("error", |k| k.as_str()),
                    rec.error.as_deref().unwrap_or("no message")
                ));
            }
            self.keep(rec);
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Which of each stage's requests this client sends: `(worker, workers)` of a
    /// distributed sweep's share, `(0, 1)` (all) otherwise.
    fn part(&self) -> (u64, u64) {
        self.config.share.as_ref().map_or((0, 1), |s| {
            (u64::from(s.worker), u64::from(s.workers.max(1)))
        })
    }

    /// Requests this client keeps in flight at batch size `batch_size`: a worker's part.
    fn streams(&self, batch_size: u32) -> u32 {
        self.config.share.as_ref().map_or(batch_size, |s| s.streams)
    }

    /// Wait for a distributed stage's agreed start (the system clock's `start_at`), and
    /// return that instant on the run clock. A worker that gets here late starts at once:
    /// its lateness shows in the stage's start (closed loop) or as send lag (open loop).
    async fn wait_for_start(&self) -> Option<u64> {
        let start_at = self.config.share.as_ref()?.start_at_unix_ns?;
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let now = now_ns();
        // The instant on the run clock, even when it has passed: a late worker keeps the
        // agreed start (its requests then leave late, as send lag) instead of moving it.
        let deadline =
            (i128::from(now) + i128::from(start_at) - i128::from(unix_now)).max(0) as u64;
        // Sleep to within a timer tick, then yield until the instant (tokio's timer has
        // 1 ms granularity; the workers' starts should agree better than that).
        if deadline > now + 2_000_000 {
            tokio::time::sleep(Duration::from_nanos(deadline - now - 2_000_000)).await;
        }
        while now_ns() < deadline {
            tokio::task::yield_now().await;
        }
        Some(deadline)
    }

    /// Start one stage's load on the runtime; its records come through `tx`.
    fn spawn_stage(
        &self,
        step: Step,
        tx: mpsc::UnboundedSender<RequestRecord>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let config = &self.config;
        // A warm-up wave runs for its duration only; measured stages as configured.
        let duration_cfg = if step.warm {
            config.warmup_s
        } else {
            config.stage_duration_s
        };
        Ok(match (&config.open_loop, step.rate) {
            (Some(open), Some(rate)) => {
                let offsets = open_schedule(config, open, rate, step.index, step.warm)?;
                tokio::spawn(run_open_stage(
                    self.shared.clone(),
                    self.workload.clone(),
                    self.order.clone(),
                    self.ids.clone(),
                    OpenStageSpec {
                        index: step.index,
                        offsets,
                        max_in_flight: open.max_in_flight,
                        warmup: step.warm,
                        in_order: open.in_order && !step.warm,
                        seed: config.seed,
                        part: self.part(),
                        t0: step.t0,
                    },
                    tx,
                    self.progress.clone(),
                ))
            }
            _ => tokio::spawn(run_stage(
                self.shared.clone(),
                self.workload.clone(),
                self.order.clone(),
                self.ids.clone(),
                StageSpec {
                    index: step.index,
                    batch_size: step.batch_size,
                    streams: self.streams(step.batch_size),
                    part: self.part(),
                    requests: if step.warm {
                        u64::MAX
                    } else {
                        config.requests_for(step.batch_size)
                    },
                    duration_s: duration_cfg,
                    warmup: step.warm,
                    seed: config.seed,
                },
                tx,
                self.progress.clone(),
            )),
        })
    }

    /// Run one stage to its end (or cancellation), keep its records and, unless it is the
    /// warm-up wave, summarize it with the client's health. Returns whether it was cut
    /// short.
    async fn run_step(&mut self, step: Step) -> Result<bool> {
        let wanted = match step.rate {
            Some(rate) => open_loop_connections(
                rate,
                self.config.share.as_ref().map_or(1, |s| s.workers),
                self.config.open_loop.as_ref().and_then(|o| o.max_in_flight),
            ),
            None => self.streams(step.batch_size),
        };
        server::preconnect(&self.shared, wanted).await;
        let step = Step {
            t0: if step.warm {
                None
            } else {
                self.wait_for_start().await
            },
            ..step
        };
        self.progress
            .start_stage(step.index, step.batch_size, now_ns());
        let monitor = health::HealthMonitor::start();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stage_task = self.spawn_stage(step, tx)?;
        self.current = (!step.warm).then(|| self.new_stats());
        while let Some(rec) = rx.recv().await {
            self.keep(rec);
        }
        if let Err(e) = stage_task.await {
            self.warnings
                .push(format!("stage {} task ended abnormally: {e}", step.index));
        }
        let interrupted = self.shared.cancel.is_cancelled();
        let client_health = monitor.finish().await;
        // Every record of the stage on disk before it counts as done.
        self.keeper.flush();
        let stats = self.current.take();
        if step.warm {
            // Kept (on disk and in the records, flagged), never summarized.
            return Ok(interrupted);
        }
        let mut summary = stats.unwrap_or_else(|| self.new_stats()).finish();
        let problems = client_health.problems(self.send_lag_judged(step, &summary));
        if !problems.is_empty() {
            let load = step
                .rate
                .map_or(format!("batch size {}", step.batch_size), |r| {
                    format!("{r} req/s")
                });
            self.warnings.push(format!(
                "stage {} ({load}): measurements not trustworthy: {}",
                step.index,
                problems.join("; ")
            ));
        }
        put_health(&mut summary, Some((&client_health, problems)));
        self.stages.push(StageResult {
            index: step.index,
            batch_size: step.batch_size,
            target_rate: step.rate,
            summary,
            interrupted,
        });
        Ok(interrupted)
    }

    /// The send-lag p99 the client is judged on: only where a schedule sets the load (open
    /// loop). Waiting for a slot under a configured `max_in_flight` is the user's cap, not
    /// the client falling behind, and a closed loop's first wave leaves at once by design.
    fn send_lag_judged(&self, step: Step, summary: &Summary) -> f64 {
        let capped = self
            .config
            .open_loop
            .as_ref()
            .is_some_and(|o| o.max_in_flight.is_some());
        if capped || step.rate.is_none() {
            f64::NAN
        } else {
            summary.f64("send_lag_p99_ms")
        }
    }

    /// Pause after a stage, nothing sent, so the server drains (cut short by Ctrl-C).
    async fn cool_down(&self) {
        if let Some(c) = self.config.cooldown_s.filter(|c| *c > 0.0) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(c)) => {}
                _ = self.shared.cancel.cancelled() => {}
            }
        }
    }
}

/// The arrival offsets (ns from the stage start) of open-loop stage `index` at `rate`, or
/// of the warm-up wave at its load: the one schedule every worker of a distributed run
/// computes alike, and its driver too (`stage_schedule`).
fn open_schedule(
    config: &SweepConfig,
    open: &OpenLoop,
    rate: f64,
    index: u32,
    warm: bool,
) -> Result<Vec<u64>> {
    let (requests, duration) = if warm {
        (Some(u64::MAX), config.warmup_s)
    } else {
        (config.requests_per_stage, config.stage_duration_s)
    };
    // Default: ten seconds' worth, at least 16.
    let requests = requests.or_else(|| {
        duration
            .is_none()
            .then(|| ((rate * 10.0).ceil() as u64).max(16))
    });
    schedule(
        &open.arrival(rate)?,
        requests,
        duration,
        config.seed.wrapping_add(u64::from(index)),
    )
}

/// The arrival offsets (ns from the stage's start) of the sweep's open-loop stage
/// `stage`, exactly as the engine sends them.
pub fn stage_schedule(config: &SweepConfig, stage: u32) -> Result<Vec<u64>> {
    let open = config.open_loop.as_ref().ok_or_else(|| {
        Error::InvalidArgument("a closed-loop stage has no arrival schedule".into())
    })?;
    let rate = open.rates.get(stage as usize).copied().ok_or_else(|| {
        Error::InvalidArgument(format!("stage {stage} is not one of the sweep's stages"))
    })?;
    open_schedule(config, open, rate, stage, false)
}

/// Keep only the complete stages of an interrupted run's record file
/// (`config.records_path`, `config.resume`), rewriting it: what resuming keeps, for the
/// driver of a distributed run too.
pub fn keep_complete_stages(config: &SweepConfig) -> Result<resume::Prior> {
    load_prior(config, &stage_plan(config))
}

/// How a run reaches its target: the pooled client and, for a plain-HTTP target, the kept
/// connections its streaming requests drive themselves.
struct Connections {
    http: reqwest::Client,
    kept: Option<crate::client::kept::Pool>,
}

/// The run's connections, their pools sized for the most streams the sweep keeps, after
/// checking the process may open that many sockets (a note when the limit was raised).
fn http_pool(config: &SweepConfig) -> Result<(Connections, Option<String>)> {
    // A closed-loop stage of `n` requests never has more than `n` in flight, whatever its
    // batch size (`--batch-sizes 100000 --requests 4` needs 4 streams, not 100,000).
    let max_batch = config.batch_sizes.iter().copied().max().unwrap_or(1) as usize;
    let max_batch = config
        .requests_per_stage
        .map_or(max_batch, |n| max_batch.min(n.max(1) as usize));
    // Open loop: at most `max_in_flight` streams, else as many as the rate keeps busy;
    // 1,024 is checked as a floor for that unknown.
    let streams = match &config.open_loop {
        Some(o) => o.max_in_flight.map(u64::from).unwrap_or(1024),
        None => max_batch as u64,
    };
    let fd_note = fdlimit::ensure(streams)?;
    // The pool keeps every stream's connection between requests (and the pre-opened ones).
    let size = (streams as usize).max(max_batch);
    let http = build_http_client(&config.target, size)?;
    let kept = crate::client::kept::Pool::for_target(&config.target, size);
    Ok((Connections { http, kept }, fd_note))
}

/// The steps a worker's share runs: its one stage, or (no stage) only the warm-up wave.
fn shared_steps(steps: Vec<Step>, share: Option<&config::Share>) -> Vec<Step> {
    match share {
        None => steps,
        Some(s) => steps
            .into_iter()
            .filter(|st| match s.stage {
                Some(i) => !st.warm && st.index == i,
                None => st.warm,
            })
            .collect(),
    }
}

/// The steps of a sweep: the optional warm-up wave at the first stage's load, then one per
/// stage.
fn steps(plan: &[(u32, Option<f64>)], warmup_wave: bool) -> Vec<Step> {
    let wave = plan
        .first()
        .filter(|_| warmup_wave)
        .map(|&(batch_size, rate)| Step {
            index: 0,
            batch_size,
            rate,
            warm: true,
            t0: None,
        });
    let stages = plan
        .iter()
        .enumerate()
        .map(|(i, &(batch_size, rate))| Step {
            index: i as u32,
            batch_size,
            rate,
            warm: false,
            t0: None,
        });
    wave.into_iter().chain(stages).collect()
}

impl Sweep {
    /// Everything the stages share, with what an interrupted run kept (when resuming).
    fn new(
        config: SweepConfig,
        connections: Connections,
        cancel: CancellationToken,
        progress: Arc<Progress>,
        prior: resume::Prior,
        warnings: Vec<String>,
    ) -> Result<Sweep> {
        let counter = match &config.tokenizer {
            Some(p) => Some(Arc::new(TokenCounter::from_file(p)?)),
            None => None,
        };
        // A resumed run goes on writing the file that holds what it kept.
        let sink = match (prior.sink, &config.records_path) {
            (Some(s), _) => Some(s),
            (None, Some(p)) if config.share.is_some() => Some(RecordSink::create_with_wait(
                p,
                crate::record_file::SHARE_MAX_WAIT,
            )?),
            (None, Some(p)) => Some(RecordSink::create(p)?),
            (None, None) => None,
        };
        let conversations = config.conversations.clone().map(Arc::new);
        let workload = Arc::new(Workload {
            prompts: config.prompts.clone(),
            max_tokens: config
                .max_tokens_per_prompt
                .clone()
                .unwrap_or_else(|| vec![config.max_tokens; config.prompts.len()]),
            stage_prompts: config.stage_prompts.clone(),
            turn_offsets: conversations
                .as_ref()
                .map_or_else(Vec::new, |c| c.offsets()),
            conversations,
        });
        Ok(Sweep {
            shared: Arc::new(RunContext {
                http: connections.http,
                kept: connections.kept,
                spec: config.target.clone(),
                counter,
                cancel,
            }),
            order: Arc::new(PromptOrder::new(workload.prompts.len(), config.seed)),
            ids: Arc::new(AtomicU64::new(prior.next_id)),
            workload,
            progress,
            keeper: RecordKeeper::new(sink),
            redactor: Redactor::for_target(&config.target),
            current: None,
            kept: prior.stats,
            stages: Vec::new(),
            warnings,
            config,
        })
    }

    /// Warm up, then run every step not `done` before an interruption (those are
    /// summarized from their kept records). Returns whether the run was cut short.
    async fn run(&mut self, steps: &[Step], done: &[u32], info: &Value) -> Result<bool> {
        self.warm_up(info).await?;
        for &step in steps {
            if done.contains(&step.index) {
                if !step.warm {
                    let kept = self.kept_stage(step.index, step.batch_size, step.rate);
                    self.stages.push(kept);
                }
                continue;
            }
            if self.shared.cancel.is_cancelled() || self.run_step(step).await? {
                return Ok(true);
            }
            if !step.warm {
                self.cool_down().await;
            }
        }
        Ok(false)
    }
}

/// Run a sweep. Records reach `config.records_path` as they complete; cancellation stops
/// promptly and returns what was measured with `interrupted = true`. Every text that came
/// back from the server (records' errors, warnings, the server's description, the error
/// that ends a run) has the run's secrets redacted.
pub async fn run_sweep(
    config: SweepConfig,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) -> Result<SweepOutput> {
    let redactor = Redactor::for_target(&config.target);
    match run_sweep_unredacted(config, cancel, progress).await {
        Ok(mut out) => {
            redactor.json(&mut out.server_info);
            out.warnings.iter_mut().for_each(|w| redactor.in_place(w));
            if let Some(e) = out.records_error.as_mut() {
                redactor.in_place(e);
            }
            Ok(out)
        }
        Err(e) => Err(redactor.error(e)),
    }
}

async fn run_sweep_unredacted(
    config: SweepConfig,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) -> Result<SweepOutput> {
    config.validate()?;
    let (connections, fd_note) = http_pool(&config)?;
    let plan = stage_plan(&config);
    let prior = load_prior(&config, &plan)?;
    let mut warnings: Vec<String> = fd_note.into_iter().collect();
    if config.resume {
        warnings.push(format!(
            "resumed: kept {} completed stage(s) ({} records), dropped {} record(s) of the \
             stage that was cut short",
            prior.done.len(),
            prior.kept_records,
            prior.dropped
        ));
        warnings.extend(prior.notes.iter().cloned());
    }
    let done: Vec<u32> = prior.done.iter().copied().collect();
    let warmup_wave = config.warmup_s.is_some_and(|d| d > 0.0);
    let mut sweep = Sweep::new(config, connections, cancel, progress, prior, warnings)?;
    let t_start_ns = now_ns();
    let info = server_info(&sweep.shared.http, &sweep.config.target).await;
    let interrupted = if done.len() == plan.len() {
        // Nothing left to run: summarize what was kept.
        for (i, &(b, r)) in plan.iter().enumerate() {
            let kept = sweep.kept_stage(i as u32, b, r);
            sweep.stages.push(kept);
        }
        false
    } else {
        let steps = shared_steps(steps(&plan, warmup_wave), sweep.config.share.as_ref());
        sweep.run(&steps, &done, &info).await?
    };
    let (records, write_error) = sweep.keeper.finish();
    sweep.warnings.extend(write_error.clone());
    Ok(SweepOutput {
        records,
        stages: sweep.stages,
        server_info: info,
        warnings: sweep.warnings,
        interrupted,
        t_start_ns,
        records_error: write_error,
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

/// Connections to open before an open-loop stage: one per request a second (the most that
/// can be in flight after a second's arrivals), at most 1,024 and `max_in_flight`. A
/// worker of a distributed stage sends every n-th arrival, so it opens its share: opening
/// the whole rate's on every worker made n times too many, and opening them ate the lead
/// before the agreed start (all four workers of a CI run started 0.75 s late).
fn open_loop_connections(rate: f64, workers: u32, max_in_flight: Option<u32>) -> u32 {
    let share = (rate / f64::from(workers.max(1))).ceil().min(1024.0) as u32;
    share.min(max_in_flight.unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::open_loop_connections;

    #[test]
    fn an_open_loop_worker_opens_connections_for_its_share_of_the_rate() {
        assert_eq!(open_loop_connections(150.0, 1, None), 150);
        assert_eq!(open_loop_connections(150.0, 4, None), 38);
        assert_eq!(open_loop_connections(5000.0, 1, None), 1024);
        assert_eq!(open_loop_connections(5000.0, 8, None), 625);
        assert_eq!(open_loop_connections(150.0, 4, Some(8)), 8);
        assert_eq!(open_loop_connections(0.5, 0, None), 1);
    }
}
