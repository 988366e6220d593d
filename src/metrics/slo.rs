//! Service-level objectives and goodput, per stage (the `llmbench.SLO` of the Python API).
//!
//! Two views of one set of latency limits in ms:
//! - per request: a request is *good* when it succeeded and meets every limit (for `itl`,
//!   its slowest token). `goodput_req_s` = good requests / stage duration, and
//!   `good_fraction` = good / (succeeded + failed): failures are in the denominator.
//! - per stage: the stage *meets* the SLO when, for each limit, the chosen percentile of
//!   that metric over the stage (censored: a failed request counts as +inf) is within it.

use serde::{Deserialize, Serialize};

use super::streaming::StreamingDist;
use super::{for_each_itl, num, Cell, RequestMetrics, Summary};
use crate::error::{Error, Result};
use crate::record::{ErrorKind, RequestRecord};

/// Latency limits in ms (any subset) and the percentile a stage is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Time to first token, from send.
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// Time per output token after the first.
    #[serde(default)]
    pub tpot_ms: Option<f64>,
    /// A request's slowest inter-token latency.
    #[serde(default)]
    pub itl_ms: Option<f64>,
    /// End to end, from send.
    #[serde(default)]
    pub e2e_ms: Option<f64>,
    /// Time to first token from the scheduled time (client queueing counts).
    #[serde(default)]
    pub ttft_sched_ms: Option<f64>,
    /// End to end from the scheduled time.
    #[serde(default)]
    pub e2e_sched_ms: Option<f64>,
    /// The percentile each limit is checked at over a stage, in (0, 100].
    #[serde(default = "p99")]
    pub percentile: f64,
}

fn p99() -> f64 {
    99.0
}

/// A metric an SLO can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Ttft,
    Tpot,
    Itl,
    E2e,
    TtftSched,
    E2eSched,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Tpot => "tpot",
            Metric::Itl => "itl",
            Metric::E2e => "e2e",
            Metric::TtftSched => "ttft_sched",
            Metric::E2eSched => "e2e_sched",
        }
    }

    /// The request's value, NaN where it has none (one token: no TPOT).
    fn of(self, r: &RequestRecord) -> f64 {
        let m = RequestMetrics::of(r);
        let v = match self {
            Metric::Ttft => m.ttft_ms,
            Metric::Tpot => m.tpot_ms,
            Metric::Itl => slowest_itl_ms(r),
            Metric::E2e => m.e2e_ms,
            Metric::TtftSched => m.ttft_sched_ms,
            Metric::E2eSched => m.e2e_sched_ms,
        };
        v.unwrap_or(f64::NAN)
    }
}

/// A request's slowest per-token inter-token latency (`None` with fewer than two tokens).
fn slowest_itl_ms(r: &RequestRecord) -> Option<f64> {
    let mut worst: Option<f64> = None;
    for_each_itl(r, |v, n| {
        if n > 0 {
            worst = Some(worst.map_or(v, |w| w.max(v)));
        }
    });
    worst
}

impl Slo {
    /// The limits given, in a fixed order.
    fn limits(&self) -> Vec<(Metric, f64)> {
        [
            (Metric::Ttft, self.ttft_ms),
            (Metric::Tpot, self.tpot_ms),
            (Metric::Itl, self.itl_ms),
            (Metric::E2e, self.e2e_ms),
            (Metric::TtftSched, self.ttft_sched_ms),
            (Metric::E2eSched, self.e2e_sched_ms),
        ]
        .into_iter()
        .filter_map(|(m, v)| v.map(|v| (m, v)))
        .collect()
    }

    /// Check the limits, with messages a user can act on.
    pub fn validate(&self) -> Result<()> {
        let limits = self.limits();
        if limits.is_empty() {
            return Err(Error::InvalidArgument(
                "an SLO needs at least one limit (ttft_ms, tpot_ms, ...)".into(),
            ));
        }
        if limits.iter().any(|(_, v)| !v.is_finite() || *v <= 0.0) {
            return Err(Error::InvalidArgument(
                "SLO limits must be positive numbers of ms".into(),
            ));
        }
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Err(Error::InvalidArgument(
                "the SLO percentile must be in (0, 100]".into(),
            ));
        }
        Ok(())
    }

    /// Add the SLO columns of a stage made of `records` (warm-up ones are left out) lasting
    /// `duration_s`: `slo_<metric>_p<percentile>_ms` per limit, `slo_met`, `n_good`,
    /// `good_fraction`, `goodput_req_s`. For tests with records in hand; runs feed
    /// [`SloStats`] as records complete.
    #[cfg(test)]
    pub fn put_columns(&self, summary: &mut Summary, records: &[&RequestRecord], duration_s: f64) {
        let mut stats = SloStats::new(self);
        for r in records {
            stats.add(r);
        }
        stats.put_columns(summary, duration_s);
    }
}

/// A stage's SLO columns built one record at a time, in bounded memory (the limited
/// metrics' distributions as [`StreamingDist`]s).
pub struct SloStats {
    percentile: f64,
    limits: Vec<(Metric, f64, StreamingDist)>,
    n_good: u64,
    n_failed: u64,
    n_counted: u64,
}

impl SloStats {
    /// Nothing counted yet.
    pub fn new(slo: &Slo) -> Self {
        SloStats {
            percentile: slo.percentile,
            limits: slo
                .limits()
                .into_iter()
                .map(|(m, v)| {
                    (
                        m,
                        v,
                        StreamingDist::with_limit(super::streaming::EXACT_LIMIT_PER_REQUEST),
                    )
                })
                .collect(),
            n_good: 0,
            n_failed: 0,
            n_counted: 0,
        }
    }

    /// Count one record (warm-up records are ignored). A cancelled request is neither
    /// good nor counted; a request without a limited metric's value (NaN: one token has
    /// no TPOT) is not held to that limit.
    pub fn add(&mut self, r: &RequestRecord) {
        if r.warmup {
            return;
        }
        let counted = r.ok() || r.error_kind != Some(ErrorKind::Cancelled);
        if counted {
            self.n_counted += 1;
        }
        if !r.ok() && counted {
            self.n_failed += 1;
        }
        let mut good = r.ok();
        for (metric, limit, dist) in &mut self.limits {
            let v = metric.of(r);
            good &= v.partial_cmp(limit) != Some(std::cmp::Ordering::Greater);
            if r.ok() && v.is_finite() {
                dist.add(v, 1);
            }
        }
        if good {
            self.n_good += 1;
        }
    }

    /// Add the columns to `summary`, for a stage lasting `duration_s`.
    pub fn put_columns(self, summary: &mut Summary, duration_s: f64) {
        let mut met = true;
        for (metric, limit, dist) in self.limits {
            let (_, p) = dist.finish_censored(self.n_failed as usize, &[self.percentile]);
            let p = p[0];
            summary.insert(
                format!("slo_{}_p{}_ms", metric.name(), self.percentile),
                num(p),
            );
            met &= p <= limit;
        }
        summary.insert("slo_met", Cell::Bool(met));
        summary.insert("n_good", Cell::Int(self.n_good));
        summary.insert(
            "good_fraction",
            num(if self.n_counted > 0 {
                self.n_good as f64 / self.n_counted as f64
            } else {
                f64::NAN
            }),
        );
        summary.insert(
            "goodput_req_s",
            num(if duration_s > 0.0 {
                self.n_good as f64 / duration_s
            } else {
                f64::NAN
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::Chunks;

    /// A successful two-token request whose first token came `ttft_ms` after its send.
    fn record(ttft_ms: u64) -> RequestRecord {
        let mut r = crate::test_support::record(0, 0, false, None);
        let t = ttft_ms * 1_000_000;
        (r.t_sched, r.t_sent, r.t_done) = (0, 0, t + 2);
        r.chunks = Chunks::from_parts(&[t, t + 1], &[1, 1]);
        r
    }

    fn slo(ttft: f64, percentile: f64) -> Slo {
        Slo {
            ttft_ms: Some(ttft),
            tpot_ms: None,
            itl_ms: None,
            e2e_ms: None,
            ttft_sched_ms: None,
            e2e_sched_ms: None,
            percentile,
        }
    }

    #[test]
    fn goodput_counts_failures_in_the_denominator() {
        // TTFTs 10, 50, (failed), 20 ms; a 30 ms limit at p50, over 2 s.
        let mut recs = [record(10), record(50), record(0), record(20)];
        recs[2].error_kind = Some(ErrorKind::HttpStatus);
        recs[2].chunks = Chunks::default();
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let mut s = Summary::default();
        slo(30.0, 50.0).put_columns(&mut s, &refs, 2.0);
        assert_eq!(s.get("n_good"), Some(&Cell::Int(2)));
        assert_eq!(s.f64("good_fraction"), 0.5);
        assert_eq!(s.f64("goodput_req_s"), 1.0);
        // Censored p50 of [10, 20, 50, inf] is 35 ms: the stage misses the limit.
        assert_eq!(s.f64("slo_ttft_p50_ms"), 35.0);
        assert_eq!(s.get("slo_met"), Some(&Cell::Bool(false)));
    }

    #[test]
    fn cancelled_requests_are_not_counted_and_names_format_like_python() {
        let mut recs = [record(10), record(0)];
        recs[1].error_kind = Some(ErrorKind::Cancelled);
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let mut s = Summary::default();
        slo(30.0, 99.9).put_columns(&mut s, &refs, 1.0);
        assert_eq!(s.f64("good_fraction"), 1.0);
        assert_eq!(s.f64("slo_ttft_p99.9_ms"), 10.0);
        assert_eq!(s.get("slo_met"), Some(&Cell::Bool(true)));
    }

    #[test]
    fn validation() {
        assert!(slo(1.0, 99.0).validate().is_ok());
        assert!(slo(0.0, 99.0).validate().is_err());
        assert!(slo(1.0, 0.0).validate().is_err());
        let none = Slo {
            ttft_ms: None,
            ..slo(1.0, 99.0)
        };
        assert!(none
            .validate()
            .expect_err("no limit")
            .to_string()
            .contains("at least one limit"));
    }
}
