//! GPU sampling through NVML (nvml-wrapper loads `libnvidia-ml.so.1` at run time, so the
//! extension imports and runs on machines without a driver).
//!
//! A dedicated OS thread samples on an absolute schedule. NVML queries are not free, and
//! not equally so: measured on an H100 (driver 580.159), memory info took about 35 µs,
//! utilisation, power, SM clock and temperature 2–4 µs each, the running-process list about
//! 210 µs, and the total-energy counter about 3.5 ms. Reading everything every millisecond
//! is therefore impossible, so the sampler reads memory used/total every `period_ms` (down
//! to 1 ms), utilisation, power, clock and temperature every `aux_period_ms`, the energy
//! counter every `energy_period_ms` and per-process memory every `process_period_ms`; rows
//! without a field carry `None` for it. It times every kind of query, so its own cost is
//! reported with its data. Timestamps are on the run clock, so samples line up with request
//! records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

use crate::clock::now_ns;
use crate::error::{Error, Result};

/// What to sample and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Sampling period in milliseconds (≥ 0.5).
    pub period_ms: f64,
    /// GPU indices to sample; empty means all.
    pub gpus: Vec<u32>,
    /// Period of the utilisation, power, energy, clock and temperature readings, ms
    /// (never shorter than `period_ms`).
    pub aux_period_ms: f64,
    /// Period of the total-energy counter reading, ms (never shorter than `period_ms`).
    pub energy_period_ms: f64,
    /// Period of the per-process memory query, ms (0: never).
    pub process_period_ms: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            period_ms: 10.0,
            gpus: Vec::new(),
            aux_period_ms: 50.0,
            energy_period_ms: 1000.0,
            process_period_ms: 200.0,
        }
    }
}

/// Names of the timed NVML queries, in `SamplerOutput::query_ns` order.
pub const QUERIES: [&str; 7] = [
    "memory",
    "utilization",
    "power",
    "energy",
    "sm_clock",
    "temperature",
    "processes",
];

/// One GPU reading. Fields NVML could not read are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpuSample {
    /// Run-clock time of the reading.
    pub t_ns: u64,
    /// GPU index.
    pub gpu: u32,
    /// Memory used, bytes.
    pub mem_used: Option<u64>,
    /// Memory total, bytes.
    pub mem_total: Option<u64>,
    /// GPU utilisation over NVML's last sample period, percent.
    pub util_gpu: Option<u32>,
    /// Memory-controller utilisation, percent.
    pub util_mem: Option<u32>,
    /// Board power draw, milliwatts.
    pub power_mw: Option<u32>,
    /// Energy since the driver loaded, millijoules.
    pub energy_mj: Option<u64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
    /// GPU temperature, °C.
    pub temp_c: Option<u32>,
}

/// One process's GPU memory at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Run-clock time.
    pub t_ns: u64,
    /// GPU index.
    pub gpu: u32,
    /// Process id.
    pub pid: u32,
    /// Memory used, bytes (None where the driver does not say).
    pub mem_used: Option<u64>,
}

/// Static facts about a sampled GPU.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    /// Index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Memory total, bytes.
    pub mem_total: u64,
}

/// What a sampling run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SamplerOutput {
    /// GPU readings, in time order.
    pub samples: Vec<GpuSample>,
    /// Per-process memory readings.
    pub processes: Vec<ProcessSample>,
    /// The GPUs sampled.
    pub gpus: Vec<GpuInfo>,
    /// Sampling rounds done.
    pub rounds: u64,
    /// Rounds that started later than one period after their due time (the reading itself
    /// took longer than the period).
    pub overruns: u64,
    /// Requested period, ns.
    pub period_ns: u64,
    /// Run clock at start and stop.
    pub t_start_ns: u64,
    /// Run clock at stop.
    pub t_stop_ns: u64,
    /// Wall time spent inside NVML calls, ns (the sampler's own cost).
    pub busy_ns: u64,
    /// Total time and count of each kind of query (see [`QUERIES`]).
    pub query_ns: [u64; 7],
    /// Number of each kind of query.
    pub query_count: [u64; 7],
    /// CPU time the sampler thread used, ns (from `/proc/thread-self/schedstat`; None
    /// where the kernel does not provide it).
    pub cpu_ns: Option<u64>,
}

/// CPU time of the calling thread in ns, from the scheduler's statistics (Linux).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Open NVML, with an error that says why it is not there.
pub fn open() -> Result<Nvml> {
    Nvml::init().map_err(|e| {
        Error::NvmlUnavailable(format!(
            "cannot use NVML ({e}): no NVIDIA driver (libnvidia-ml.so.1) on this machine, or \
             no GPU visible to this process"
        ))
    })
}

/// The GPUs NVML sees.
pub fn list_gpus(nvml: &Nvml) -> Result<Vec<GpuInfo>> {
    let n = nvml
        .device_count()
        .map_err(|e| Error::NvmlUnavailable(format!("NVML device count failed: {e}")))?;
    let mut out = Vec::new();
    for i in 0..n {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| Error::NvmlUnavailable(format!("NVML device {i}: {e}")))?;
        out.push(GpuInfo {
            index: i,
            name: d.name().unwrap_or_default(),
            uuid: d.uuid().unwrap_or_default(),
            mem_total: d.memory_info().map(|m| m.total).unwrap_or(0),
        });
    }
    Ok(out)
}

/// A running sampler thread.
pub struct GpuSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<SamplerOutput>>,
}

impl GpuSampler {
    /// Start sampling. Fails with `NvmlUnavailable` where there is no driver or GPU, and
    /// with `InvalidArgument` for a bad period or GPU index.
    pub fn start(config: SamplerConfig) -> Result<GpuSampler> {
        if !(config.period_ms.is_finite() && config.period_ms >= 0.5) {
            return Err(Error::InvalidArgument(
                "GPU sampling period must be at least 0.5 ms".into(),
            ));
        }
        let periods = [
            config.aux_period_ms,
            config.energy_period_ms,
            config.process_period_ms,
        ];
        if periods.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(Error::InvalidArgument(
                "aux_period_ms, energy_period_ms and process_period_ms must be ≥ 0".into(),
            ));
        }
        let nvml = open()?;
        let all = list_gpus(&nvml)?;
        let chosen: Vec<GpuInfo> = if config.gpus.is_empty() {
            all
        } else {
            let mut v = Vec::new();
            for g in &config.gpus {
                match all.iter().find(|i| i.index == *g) {
                    Some(info) => v.push(info.clone()),
                    None => {
                        return Err(Error::InvalidArgument(format!(
                            "GPU {g} does not exist (NVML sees {} GPUs)",
                            all.len()
                        )))
                    }
                }
            }
            v
        };
        if chosen.is_empty() {
            return Err(Error::NvmlUnavailable("NVML sees no GPU".into()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("llmbench-nvml".into())
            .spawn(move || sample_loop(nvml, chosen, config, flag))
            .map_err(|e| Error::InvalidArgument(format!("cannot start the sampler thread: {e}")))?;
        Ok(GpuSampler {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop and collect.
    pub fn stop(mut self) -> SamplerOutput {
        self.finish()
    }

    fn finish(&mut self) -> SamplerOutput {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => {
                h.thread().unpark();
                h.join().unwrap_or_default()
            }
            None => SamplerOutput::default(),
        }
    }
}

impl Drop for GpuSampler {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Time one query and account for it.
fn timed<T>(out: &mut SamplerOutput, which: usize, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    out.query_ns[which] += t.elapsed().as_nanos() as u64;
    out.query_count[which] += 1;
    v
}

fn read(
    out: &mut SamplerOutput,
    device: &nvml_wrapper::Device<'_>,
    gpu: u32,
    t_ns: u64,
    aux: bool,
    energy: bool,
) -> GpuSample {
    let mem = timed(out, 0, || device.memory_info().ok());
    let mut s = GpuSample {
        t_ns,
        gpu,
        mem_used: mem.as_ref().map(|m| m.used),
        mem_total: mem.as_ref().map(|m| m.total),
        ..GpuSample::default()
    };
    if aux {
        let util = timed(out, 1, || device.utilization_rates().ok());
        s.util_gpu = util.as_ref().map(|u| u.gpu);
        s.util_mem = util.as_ref().map(|u| u.memory);
        s.power_mw = timed(out, 2, || device.power_usage().ok());
        s.sm_clock_mhz = timed(out, 4, || device.clock_info(Clock::SM).ok());
        s.temp_c = timed(out, 5, || device.temperature(TemperatureSensor::Gpu).ok());
    }
    if energy {
        s.energy_mj = timed(out, 3, || device.total_energy_consumption().ok());
    }
    s
}

/// Whether a reading on its own cadence is due now; advances its deadline.
fn due_now(now: Instant, due: &mut Instant, period: Duration) -> bool {
    if now < *due {
        return false;
    }
    *due += period;
    if *due < now {
        *due = now + period;
    }
    true
}

fn sample_loop(
    nvml: Nvml,
    gpus: Vec<GpuInfo>,
    config: SamplerConfig,
    stop: Arc<AtomicBool>,
) -> SamplerOutput {
    let period = Duration::from_secs_f64(config.period_ms / 1e3);
    let aux_period = Duration::from_secs_f64(config.aux_period_ms.max(config.period_ms) / 1e3);
    let energy_period =
        Duration::from_secs_f64(config.energy_period_ms.max(config.period_ms) / 1e3);
    let process_period = Duration::from_secs_f64(config.process_period_ms / 1e3);
    let devices: Vec<(u32, nvml_wrapper::Device<'_>)> = gpus
        .iter()
        .filter_map(|g| nvml.device_by_index(g.index).ok().map(|d| (g.index, d)))
        .collect();
    let mut out = SamplerOutput {
        gpus: gpus.clone(),
        period_ns: period.as_nanos() as u64,
        t_start_ns: now_ns(),
        ..SamplerOutput::default()
    };
    let cpu_start = thread_cpu_ns();
    let mut due = Instant::now();
    let (mut aux_due, mut energy_due, mut process_due) = (due, due, due);
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        let t = now_ns();
        let aux = due_now(began, &mut aux_due, aux_period);
        let energy = due_now(began, &mut energy_due, energy_period);
        for (index, d) in &devices {
            let sample = read(&mut out, d, *index, t, aux, energy);
            out.samples.push(sample);
        }
        if !process_period.is_zero() && due_now(began, &mut process_due, process_period) {
            for (index, d) in &devices {
                let procs = timed(&mut out, 6, || {
                    d.running_compute_processes().unwrap_or_default()
                });
                for p in procs {
                    out.processes.push(ProcessSample {
                        t_ns: t,
                        gpu: *index,
                        pid: p.pid,
                        mem_used: match p.used_gpu_memory {
                            UsedGpuMemory::Used(b) => Some(b),
                            UsedGpuMemory::Unavailable => None,
                        },
                    });
                }
            }
        }
        out.busy_ns += began.elapsed().as_nanos() as u64;
        out.rounds += 1;
        due += period;
        let now = Instant::now();
        if now > due + period {
            // Fell a whole period behind: skip the missed rounds rather than burst.
            out.overruns += 1;
            due = now;
        }
        // park_timeout returns early on `stop` (the stopper unparks us), and may wake
        // spuriously: sleep again until the deadline.
        loop {
            let now = Instant::now();
            if now >= due || stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::park_timeout(due - now);
        }
    }
    out.t_stop_ns = now_ns();
    out.cpu_ns = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    out
}
