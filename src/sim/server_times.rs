//! The scripted server's own account of each request's time, exported on `/metrics` under
//! vLLM's histogram names (queue, prefill, decode, inference, TTFT, ITL, end to end), so
//! the per-stage breakdown (`python/llmbench/columns/server_times.py`) is tested against a
//! server whose times are scripted. The definitions are vLLM's: queue from arrival to
//! admission, prefill from admission to the first token, decode from the first token to
//! the last, inference the two together. A token's time is when its chunk is handed to
//! the connection.

use std::fmt::Write as _;
use std::time::Duration;

/// Bucket bounds in seconds: finer than vLLM's (its queue histogram starts at 0.3 s)
/// because the scripted server's times are milliseconds.
pub const BUCKETS_S: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One histogram: counts per bucket (not cumulative), sum and count.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS_S.len() + 1],
            sum: 0.0,
        }
    }
}

impl Histogram {
    fn observe(&mut self, v: Duration) {
        let s = v.as_secs_f64();
        let i = BUCKETS_S.partition_point(|b| *b < s);
        self.counts[i] += 1;
        self.sum += s;
    }

    /// The exposition lines of this histogram as `name` (cumulative buckets, `+Inf`).
    fn render(&self, out: &mut String, name: &str, help: &str, model: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let labels = format!("engine=\"0\",model_name=\"{model}\"");
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_S
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// When one request reached each point, on one clock.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimes {
    /// The request arrived (its handler started).
    pub arrived: tokio::time::Instant,
    /// It got a batch slot.
    pub admitted: tokio::time::Instant,
    /// Its first token left.
    pub first: tokio::time::Instant,
    /// Its last token left.
    pub last: tokio::time::Instant,
}

/// Every finished request's times.
#[derive(Debug, Clone, Default)]
pub struct ServerTimes {
    queue: Histogram,
    prefill: Histogram,
    decode: Histogram,
    inference: Histogram,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

impl ServerTimes {
    /// Count one finished request, whose tokens after the first left `gaps` apart.
    pub fn observe(&mut self, t: &RequestTimes, gaps: &[Duration]) {
        self.queue.observe(t.admitted - t.arrived);
        self.prefill.observe(t.first - t.admitted);
        self.decode.observe(t.last - t.first);
        self.inference.observe(t.last - t.admitted);
        self.ttft.observe(t.first - t.arrived);
        self.e2e.observe(t.last - t.arrived);
        for g in gaps {
            self.itl.observe(*g);
        }
    }

    /// The `/metrics` text of every histogram.
    pub fn render(&self, model: &str) -> String {
        let mut out = String::new();
        for (h, name, help) in [
            (
                &self.queue,
                "vllm:request_queue_time_seconds",
                "Time waiting for a slot.",
            ),
            (
                &self.prefill,
                "vllm:request_prefill_time_seconds",
                "Admission to first token.",
            ),
            (
                &self.decode,
                "vllm:request_decode_time_seconds",
                "First token to last.",
            ),
            (
                &self.inference,
                "vllm:request_inference_time_seconds",
                "Admission to last token.",
            ),
            (
                &self.ttft,
                "vllm:time_to_first_token_seconds",
                "Arrival to first token.",
            ),
            (
                &self.itl,
                "vllm:inter_token_latency_seconds",
                "Between a request's chunks.",
            ),
            (
                &self.e2e,
                "vllm:e2e_request_latency_seconds",
                "Arrival to last token.",
            ),
        ] {
            h.render(&mut out, name, help, model);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::prom::{parse, reduce};

    #[test]
    fn what_is_observed_reads_back_through_the_scraper() {
        let mut times = ServerTimes::default();
        let t0 = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let t = RequestTimes {
            arrived: t0,
            admitted: t0 + ms(7),
            first: t0 + ms(27),
            last: t0 + ms(57),
        };
        times.observe(&t, &[ms(10), ms(10), ms(10)]);
        let (v, _) = reduce(&parse(&times.render("m")));
        let close = |k: &str, want: f64| {
            let got = v[k];
            assert!((got - want).abs() < 1e-9, "{k}: {got} != {want}");
        };
        close("vllm:request_queue_time_seconds_sum", 0.007);
        close("vllm:request_prefill_time_seconds_sum", 0.020);
        close("vllm:request_decode_time_seconds_sum", 0.030);
        close("vllm:time_to_first_token_seconds_sum", 0.027);
        close("vllm:e2e_request_latency_seconds_sum", 0.057);
        close("vllm:inter_token_latency_seconds_count", 3.0);
        // 7 ms falls in (5 ms, 10 ms]: cumulative buckets below it are 0, from it 1.
        close("vllm:request_queue_time_seconds_bucket:0.005", 0.0);
        close("vllm:request_queue_time_seconds_bucket:0.01", 1.0);
        close("vllm:request_queue_time_seconds_bucket:+Inf", 1.0);
    }
}
