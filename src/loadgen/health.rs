//! The client's own health during a stage, so a report can say when its numbers are the
//! client's rather than the server's: how long a ready task waits before the runtime polls
//! it (the delay every chunk timestamp suffers when the client is saturated) and how much
//! CPU the process used against the cores it may run on.
//!
//! The probe is a task that wakes every 5 ms, yields, and measures how long it took
//! to be polled again: that is the run-queue wait of any task woken at that moment, such
//! as a stream whose chunk just arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ns;
use crate::metrics::stats::Dist;
use crate::metrics::streaming::StreamingDist;

/// Task lag (p99) above which a stage's timestamps are not trustworthy, in ms.
pub const TASK_LAG_LIMIT_MS: f64 = 1.0;
/// Send lag (p99) above which the client did not send the load it was asked for, in ms.
pub const SEND_LAG_LIMIT_MS: f64 = 1.0;
/// Share of the usable cores above which the client is saturated.
pub const CPU_LIMIT: f64 = 0.9;
/// How often the probe runs: often enough for a p99 over a few seconds, rarely enough to
/// cost nothing measurable (each wake-up is a timer and a syscall).
const PROBE_PERIOD: Duration = Duration::from_millis(5);

/// What the monitor saw during one stage.
#[derive(Debug, Clone)]
pub struct ClientHealth {
    /// Run-queue wait of the probe task, in ms.
    pub task_lag: Option<Dist>,
    /// CPU time (user + system) of the whole process during the stage, in s.
    pub cpu_s: f64,
    /// Wall time of the stage, in s.
    pub wall_s: f64,
    /// Cores this process may run on.
    pub cores: usize,
}

impl ClientHealth {
    /// CPU use as a share of the usable cores (1.0 = all busy all the time).
    pub fn cpu_share(&self) -> f64 {
        self.cpu_s / (self.wall_s * self.cores as f64)
    }

    /// Why the stage's measurements are not trustworthy (empty when they are), given the
    /// stage's send lag p99 (ms; NaN when unknown).
    pub fn problems(&self, send_lag_p99_ms: f64) -> Vec<String> {
        let mut out = Vec::new();
        if send_lag_p99_ms > SEND_LAG_LIMIT_MS {
            out.push(format!(
                "send lag p99 {send_lag_p99_ms:.2} ms > {SEND_LAG_LIMIT_MS} ms: requests left \
                 later than scheduled"
            ));
        }
        if let Some(p99) = self.task_lag.map(|d| d.pct[3]) {
            if p99 > TASK_LAG_LIMIT_MS {
                out.push(format!(
                    "client task lag p99 {p99:.2} ms > {TASK_LAG_LIMIT_MS} ms: chunk times \
                     include the client's own queueing"
                ));
            }
        }
        let share = self.cpu_share();
        if share.is_finite() && share > CPU_LIMIT {
            out.push(format!(
                "client CPU {:.0}% of {} core(s): the client is saturated",
                share * 100.0,
                self.cores
            ));
        }
        out
    }
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
        }
        Err(_) => f64::NAN,
    }
}

/// A running monitor; [`HealthMonitor::finish`] stops it.
pub struct HealthMonitor {
    stop: CancellationToken,
    probe: JoinHandle<()>,
    lags: Arc<Mutex<StreamingDist>>,
    t0: u64,
    cpu0: f64,
}

impl HealthMonitor {
    /// Start monitoring (on the current runtime).
    pub fn start() -> Self {
        let stop = CancellationToken::new();
        let lags = Arc::new(Mutex::new(StreamingDist::default()));
        let probe = tokio::spawn(probe(stop.clone(), lags.clone()));
        HealthMonitor {
            stop,
            probe,
            lags,
            t0: now_ns(),
            cpu0: cpu_seconds(),
        }
    }

    /// Stop and report.
    pub async fn finish(self) -> ClientHealth {
        let wall_s = (now_ns() - self.t0) as f64 / 1e9;
        let cpu_s = cpu_seconds() - self.cpu0;
        self.stop.cancel();
        let _ = self.probe.await;
        let lags = self
            .lags
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        ClientHealth {
            task_lag: lags.finish(),
            cpu_s,
            wall_s,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

async fn probe(stop: CancellationToken, lags: Arc<Mutex<StreamingDist>>) {
    let mut tick = tokio::time::interval(PROBE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = now_ns();
        tokio::task::yield_now().await;
        let lag_ms = (now_ns() - t) as f64 / 1e6;
        if let Ok(mut d) = lags.lock() {
            d.add(lag_ms, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_idle_runtime_is_healthy_and_a_blocked_one_is_not() {
        let m = HealthMonitor::start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = m.finish().await;
        assert!(idle.task_lag.is_some_and(|d| d.n >= 10), "{idle:?}");
        assert!(idle.problems(0.0).is_empty(), "{:?}", idle.problems(0.0));

        // A task that hogs the only worker for 5 ms at a time delays every other task.
        let m = HealthMonitor::start();
        let hog = tokio::spawn(async {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(10));
                tokio::task::yield_now().await;
            }
        });
        hog.await.expect("hog task");
        let busy = m.finish().await;
        assert!(busy.task_lag.expect("probed").max >= 8.0, "{busy:?}");
        assert!(!busy.problems(0.0).is_empty());
        assert_eq!(
            idle.problems(2.5).len(),
            1,
            "late sends alone make a stage suspect"
        );
    }
}
