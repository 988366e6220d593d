//! What a sweep is asked to do (`SweepConfig`, as the Python side sends it) and the checks
//! every setting passes before any load is sent. Defaults live here, on the fields; the
//! Python API and the command line read them through `crate::settings`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::arrival::Arrival;
use super::conversation::Conversations;
use crate::client::TargetSpec;
use crate::error::{Error, Result};
use crate::metrics::slo::Slo;
use crate::metrics::Pricing;

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
    /// Per stage, the indices of the prompts it draws from (a sweep over input lengths:
    /// one list per stage); every prompt in every stage when absent.
    #[serde(default)]
    pub stage_prompts: Option<Vec<Vec<u32>>>,
    /// Multi-turn conversations instead of single prompts (`prompts` then only serves
    /// the warm-up requests); a stage's requests count conversations.
    #[serde(default)]
    pub conversations: Option<Conversations>,
    /// Seed of the prompt order (and of exponential think times).
    #[serde(default)]
    pub seed: u64,
    /// Warm-up requests before the first stage (reported apart, never in statistics).
    #[serde(default = "default_warmup")]
    pub warmup_requests: u32,
    /// Optional `tokenizer.json` for counts the server does not give.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The record file (Arrow IPC stream) records are appended to as they complete.
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
    /// Latency limits: adds the SLO and goodput columns to every stage.
    #[serde(default)]
    pub slo: Option<Slo>,
    /// This run is one worker's share of a distributed sweep (docs/distributed.md): one
    /// stage of the driver's plan, or only the warm-up.
    #[serde(default)]
    pub share: Option<Share>,
}

/// One worker's share of a distributed sweep. The config keeps the whole plan (batch
/// sizes, rates, prompts), so seeds, prompt orders, schedules and the records' stage and
/// batch size are the sweep's; the worker sends the requests `j` of the stage with
/// `j % workers == worker`, so the workers' union is exactly the single-process stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// This worker's place among the stage's workers.
    pub worker: u32,
    /// Workers sharing the stage.
    pub workers: u32,
    /// Closed loop: this worker's requests in flight (its part of the batch size).
    #[serde(default)]
    pub streams: u32,
    /// The stage to run; `None` runs only the warm-up (requests and wave).
    #[serde(default)]
    pub stage: Option<u32>,
    /// Start the stage at this instant of the system clock (ns since the Unix epoch), so
    /// every worker starts together; a late start is measured, never hidden.
    #[serde(default)]
    pub start_at_unix_ns: Option<u64>,
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
        self.validate_workload()?;
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
        if let Some(slo) = &self.slo {
            slo.validate()?;
        }
        if let Some(share) = &self.share {
            self.validate_share(share)?;
        }
        let p = &self.pricing;
        if !p.usd_per_gpu_hour.is_finite() || p.usd_per_gpu_hour < 0.0 || p.n_gpus == 0 {
            return Err(Error::InvalidArgument(
                "gpu_hourly_usd must be ≥ 0 and n_gpus ≥ 1".into(),
            ));
        }
        Ok(())
    }

    /// The number of stages the sweep plans.
    pub fn n_stages(&self) -> usize {
        match &self.open_loop {
            Some(o) => o.rates.len(),
            None => self.batch_sizes.len(),
        }
    }

    /// Checks of a worker's share: a real place among the workers, a stage of the plan,
    /// streams in closed loop, and no resuming (the driver resumes a distributed run).
    fn validate_share(&self, share: &Share) -> Result<()> {
        if share.workers == 0 || share.worker >= share.workers {
            return Err(Error::InvalidArgument(format!(
                "share: worker {} of {} workers",
                share.worker, share.workers
            )));
        }
        if share.stage.is_some_and(|s| s as usize >= self.n_stages()) {
            return Err(Error::InvalidArgument(format!(
                "share: stage {:?} is not one of the plan's {} stages",
                share.stage,
                self.n_stages()
            )));
        }
        if self.open_loop.is_none() && share.streams == 0 {
            return Err(Error::InvalidArgument(
                "share: a closed-loop worker needs at least one stream".into(),
            ));
        }
        if self.resume {
            return Err(Error::InvalidArgument(
                "share: a worker does not resume; the driver of a distributed run does".into(),
            ));
        }
        Ok(())
    }

    /// Checks of the conversations and the per-stage prompt lists.
    fn validate_workload(&self) -> Result<()> {
        if let Some(per) = &self.stage_prompts {
            let n = self.prompts.len() as u32;
            if per.len() != self.n_stages() {
                return Err(Error::InvalidArgument(format!(
                    "stage_prompts needs one prompt list per stage ({} stages, {} lists)",
                    self.n_stages(),
                    per.len()
                )));
            }
            if per
                .iter()
                .any(|p| p.is_empty() || p.iter().any(|&i| i >= n))
            {
                return Err(Error::InvalidArgument(
                    "every stage_prompts list must be non-empty, with indices into the prompts"
                        .into(),
                ));
            }
        }
        if let Some(c) = &self.conversations {
            c.validate()?;
            if self.stage_prompts.is_some() {
                return Err(Error::InvalidArgument(
                    "a sweep over input lengths sends single prompts, not conversations".into(),
                ));
            }
            if self.open_loop.as_ref().is_some_and(|o| o.in_order) {
                return Err(Error::InvalidArgument(
                    "a trace replays single requests, not conversations".into(),
                ));
            }
        }
        Ok(())
    }
}
