//! A built-in server's own account of each request's time (the scripted server's and the
//! baseline's), exported on `/metrics` under vLLM's histogram names (queue, prefill,
//! decode, inference, TTFT, ITL, end to end) and sent per request as vLLM's `metrics`
//! object, so the breakdown (`python/llmbench/columns/server_times.py`, per stage, and the
//! per-request columns) is tested against servers whose times are known (the scripted
//! server's are scripted). The definitions are vLLM's: queue from arrival to
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

/// Bucket bounds of the token-count histograms (vLLM's are 1, 2, 5, 10, ... up to the
/// context length; powers of two serve the same reading).
pub const BUCKETS_TOKENS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
    16384.0, 32768.0,
];

/// One histogram: counts per bucket of `bounds` (not cumulative), sum and count.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::over(BUCKETS_S)
    }
}

impl Histogram {
    fn over(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: Duration) {
        self.observe_value(v.as_secs_f64());
    }

    fn observe_value(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
    }

    /// The exposition lines of this histogram as `name` (cumulative buckets, `+Inf`).
    fn render(&self, out: &mut String, name: &str, help: &str, model: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let labels = format!("engine=\"0\",model_name=\"{model}\"");
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = self
                .bounds
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

impl RequestTimes {
    /// The times as the server reports them on the request's usage chunk (vLLM's
    /// per-request `metrics`).
    pub fn reported(&self) -> crate::protocol::decode::ServerTimes {
        let us = |d: Duration| Some(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        crate::protocol::decode::ServerTimes {
            queue_us: us(self.admitted - self.arrived),
            prefill_us: us(self.first - self.admitted),
            decode_us: us(self.last - self.first),
        }
    }
}

/// Every finished request's times and token counts, as histograms.
#[derive(Debug, Clone)]
pub struct Histograms {
    queue: Histogram,
    prefill: Histogram,
    decode: Histogram,
    inference: Histogram,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    prompt_tokens: Histogram,
    generation_tokens: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            queue: Histogram::default(),
            prefill: Histogram::default(),
            decode: Histogram::default(),
            inference: Histogram::default(),
            ttft: Histogram::default(),
            itl: Histogram::default(),
            e2e: Histogram::default(),
            prompt_tokens: Histogram::over(BUCKETS_TOKENS),
            generation_tokens: Histogram::over(BUCKETS_TOKENS),
        }
    }
}

impl Histograms {
    /// Count one finished request of `n_in` prompt and `n_out` output tokens, whose tokens
    /// after the first left `gaps` apart.
    pub fn observe(&mut self, t: &RequestTimes, gaps: &[Duration], n_in: u32, n_out: u32) {
        self.prompt_tokens.observe_value(f64::from(n_in));
        self.generation_tokens.observe_value(f64::from(n_out));
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
            (
                &self.prompt_tokens,
                "vllm:request_prompt_tokens",
                "Prompt tokens of a finished request.",
            ),
            (
                &self.generation_tokens,
                "vllm:request_generation_tokens",
                "Output tokens of a finished request.",
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
        let mut times = Histograms::default();
        let t0 = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let t = RequestTimes {
            arrived: t0,
            admitted: t0 + ms(7),
            first: t0 + ms(27),
            last: t0 + ms(57),
        };
        times.observe(&t, &[ms(10), ms(10), ms(10)], 12, 4);
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
        close("vllm:request_generation_tokens_sum", 4.0);
        close("vllm:request_generation_tokens_bucket:2", 0.0);
        close("vllm:request_generation_tokens_bucket:4", 1.0);
        close("vllm:request_prompt_tokens_count", 1.0);
    }
}
