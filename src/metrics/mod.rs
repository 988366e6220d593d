//! The metrics of docs/architecture.md ("Metrics"), computed from request records: per request (TTFT, TPOT, E2E,
//! per-token ITL samples) and per stage (distributions, throughput, concurrency, cost).

pub mod slo;
pub mod stats;
pub mod streaming;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::record::{ErrorKind, RequestRecord, TokenSource};
use stats::{censored_percentile, describe, Dist, PERCENTILES};
use streaming::StreamingDist;

const NS_PER_MS: f64 = 1e6;
const NS_PER_S: f64 = 1e9;

/// Per-request latencies in milliseconds (`None` where undefined).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestMetrics {
    /// `t_first_token − t_sent`.
    pub ttft_ms: Option<f64>,
    /// `t_first_token − t_sched`.
    pub ttft_sched_ms: Option<f64>,
    /// `t_sent − t_sched`.
    pub send_lag_ms: f64,
    /// `t_last_token − t_sent`.
    pub e2e_ms: Option<f64>,
    /// `t_last_token − t_sched`.
    pub e2e_sched_ms: Option<f64>,
    /// `(t_last − t_first) / (n_out − 1)` for `n_out ≥ 2`.
    pub tpot_ms: Option<f64>,
}

impl RequestMetrics {
    /// Compute a record's latencies.
    pub fn of(r: &RequestRecord) -> Self {
        let ms = |a: u64, b: u64| (a as f64 - b as f64) / NS_PER_MS;
        let first = r.t_first();
        let last = r.t_last();
        let tpot = match (first, last) {
            (Some(f), Some(l)) if r.n_out >= 2 => Some(ms(l, f) / f64::from(r.n_out - 1)),
            _ => None,
        };
        RequestMetrics {
            ttft_ms: first.map(|f| ms(f, r.t_sent)),
            ttft_sched_ms: first.map(|f| ms(f, r.t_sched)),
            send_lag_ms: ms(r.t_sent, r.t_sched),
            e2e_ms: last.map(|l| ms(l, r.t_sent)),
            e2e_sched_ms: last.map(|l| ms(l, r.t_sched)),
            tpot_ms: tpot,
        }
    }
}

/// Per-token inter-token latency samples of one request, in ms (docs/architecture.md, "Metrics"): chunk `i ≥ 2`
/// with gap `g_i` and `k_i` tokens gives `k_i` samples of `g_i / k_i`; the first chunk's
/// extra `k_1 − 1` tokens give samples of 0. So their mean equals TPOT whenever the chunk
/// counts sum to `n_out`. `add(value, count)` receives each value with its multiplicity.
pub fn for_each_itl(r: &RequestRecord, mut add: impl FnMut(f64, u64)) {
    let mut chunks = r.chunks.iter();
    let Some((mut prev, k1)) = chunks.next() else {
        return;
    };
    add(0.0, u64::from(k1.saturating_sub(1)));
    for (t, k) in chunks {
        let gap = t.wrapping_sub(prev) as i64 as f64 / NS_PER_MS;
        prev = t;
        if k > 0 {
            add(gap / f64::from(k), u64::from(k));
        }
    }
}

/// [`for_each_itl`] into a vector.
pub fn itl_samples(r: &RequestRecord, out: &mut Vec<f64>) {
    for_each_itl(r, |v, n| out.extend(std::iter::repeat_n(v, n as usize)));
}

/// Raw gaps between consecutive output events of one request, in ms.
pub fn for_each_chunk_gap(r: &RequestRecord, mut add: impl FnMut(f64)) {
    let mut prev = None;
    for (t, _) in r.chunks.iter() {
        if let Some(p) = prev {
            add(t.wrapping_sub(p) as i64 as f64 / NS_PER_MS);
        }
        prev = Some(t);
    }
}

/// Pricing used for cost columns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Price of one GPU for one hour, in USD.
    pub usd_per_gpu_hour: f64,
    /// GPUs the server uses.
    pub n_gpus: u32,
}

impl Default for Pricing {
    fn default() -> Self {
        // NVIDIA L4 on-demand, the seed workflow's figure.
        Pricing {
            usd_per_gpu_hour: 2.93,
            n_gpus: 1,
        }
    }
}

impl Pricing {
    /// USD per million tokens at `tok_s` tokens per second.
    pub fn usd_per_1m(&self, tok_s: f64) -> f64 {
        if tok_s <= 0.0 {
            return f64::INFINITY;
        }
        self.usd_per_gpu_hour * f64::from(self.n_gpus) / 3600.0 / tok_s * 1e6
    }
}

/// One summary value. Floats keep ±inf and NaN (JSON writers turn those into null).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// A count.
    Int(u64),
    /// A measurement.
    Num(f64),
    /// A label.
    Text(String),
    /// A verdict.
    Bool(bool),
}

/// A stage summary: named columns in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary(pub Vec<(String, Cell)>);

impl Summary {
    /// Append a column.
    pub fn insert(&mut self, name: impl Into<String>, cell: Cell) {
        self.0.push((name.into(), cell));
    }

    /// The value of a column.
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// A numeric column as f64 (NaN when absent or not numeric).
    pub fn f64(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(Cell::Int(i)) => *i as f64,
            Some(Cell::Num(x)) => *x,
            _ => f64::NAN,
        }
    }
}

fn int(n: impl TryInto<u64>) -> Cell {
    Cell::Int(n.try_into().unwrap_or(u64::MAX))
}

fn num(x: f64) -> Cell {
    Cell::Num(x)
}

fn put_dist(map: &mut Summary, name: &str, d: Option<Dist>) {
    let (mean, std, min, max, pct) = match d {
        Some(d) => (d.mean, d.std, d.min, d.max, d.pct),
        None => (f64::NAN, f64::NAN, f64::NAN, f64::NAN, [f64::NAN; 4]),
    };
    map.insert(format!("{name}_mean_ms"), num(mean));
    map.insert(format!("{name}_std_ms"), num(std));
    map.insert(format!("{name}_min_ms"), num(min));
    for ((label, _), v) in PERCENTILES.iter().zip(pct) {
        map.insert(format!("{name}_{label}_ms"), num(v));
    }
    map.insert(format!("{name}_max_ms"), num(max));
}

fn put_censored(map: &mut Summary, name: &str, sorted_ok: &[f64], n_failed: usize) {
    for (label, q) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        map.insert(
            format!("{name}_{label}_censored_ms"),
            num(censored_percentile(sorted_ok, n_failed, q)),
        );
    }
}

fn most_common(sources: impl Iterator<Item = TokenSource>) -> String {
    let mut counts: HashMap<TokenSource, usize> = HashMap::new();
    for s in sources {
        *counts.entry(s).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(s, c)| (*c, s.as_str()))
        .map(|(s, _)| s.as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// Summarize one stage's measured (non-warm-up) records into named columns.
///
/// Non-finite values are kept as such here; JSON writers turn them into null.
pub fn summarize_stage(records: &[&RequestRecord], pricing: Pricing) -> Summary {
    let mut m = Summary::default();
    let measured: Vec<&RequestRecord> = records.iter().copied().filter(|r| !r.warmup).collect();
    let ok: Vec<&RequestRecord> = measured.iter().copied().filter(|r| r.ok()).collect();
    let n_cancelled = measured
        .iter()
        .filter(|r| r.error_kind == Some(ErrorKind::Cancelled))
        .count();
    let n_failed = measured.len() - ok.len() - n_cancelled;

    m.insert("n_requests", int(measured.len()));
    m.insert("n_ok", int(ok.len()));
    m.insert("n_failed", int(n_failed));
    m.insert("n_cancelled", int(n_cancelled));
    let denom = (ok.len() + n_failed).max(1) as f64;
    m.insert("error_rate", num(n_failed as f64 / denom));
    for kind in ErrorKind::ALL {
        if kind == ErrorKind::Cancelled {
            continue;
        }
        let n = measured
            .iter()
            .filter(|r| r.error_kind == Some(kind))
            .count();
        m.insert(format!("errors_{}", kind.as_str()), int(n));
    }

    let t_start = measured.iter().map(|r| r.t_sched).min();
    let t_end = measured.iter().map(|r| r.t_done).max();
    let duration_s = match (t_start, t_end) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / NS_PER_S,
        _ => f64::NAN,
    };
    m.insert("duration_s", num(duration_s));

    let per: Vec<RequestMetrics> = ok.iter().map(|r| RequestMetrics::of(r)).collect();
    let collect =
        |f: fn(&RequestMetrics) -> Option<f64>| -> Vec<f64> { per.iter().filter_map(f).collect() };
    let mut ttft = collect(|p| p.ttft_ms);
    let mut ttft_sched = collect(|p| p.ttft_sched_ms);
    let mut e2e = collect(|p| p.e2e_ms);
    let mut tpot = collect(|p| p.tpot_ms);
    let mut send_lag: Vec<f64> = measured
        .iter()
        .map(|r| RequestMetrics::of(r).send_lag_ms)
        .collect();
    // Per-token and per-chunk samples can number tens of millions: streamed.
    let mut itl = StreamingDist::default();
    let mut gaps = StreamingDist::default();
    for r in &ok {
        for_each_itl(r, |v, n| itl.add(v, n));
        for_each_chunk_gap(r, |v| gaps.add(v, 1));
    }

    put_dist(&mut m, "ttft", describe(&mut ttft));
    put_censored(&mut m, "ttft", &ttft, n_failed);
    put_dist(&mut m, "ttft_sched", describe(&mut ttft_sched));
    m.insert("itl_exact_percentiles", int(u8::from(itl.is_exact())));
    put_dist(&mut m, "itl", itl.finish());
    put_dist(&mut m, "tpot", describe(&mut tpot));
    put_dist(&mut m, "e2e", describe(&mut e2e));
    put_censored(&mut m, "e2e", &e2e, n_failed);
    put_dist(&mut m, "chunk_gap", gaps.finish());
    put_dist(&mut m, "send_lag", describe(&mut send_lag));
    let mut e2e_sched = collect(|p| p.e2e_sched_ms);
    put_dist(&mut m, "e2e_sched", describe(&mut e2e_sched));
    // What the client delivered: the rate requests were scheduled at and really sent at,
    // and how many left more than 1 ms after their scheduled time.
    let rate = |times: Vec<u64>| -> f64 {
        let (lo, hi) = (times.iter().min(), times.iter().max());
        match (lo, hi) {
            (Some(a), Some(b)) if b > a && times.len() > 1 => {
                (times.len() - 1) as f64 / ((b - a) as f64 / NS_PER_S)
            }
            _ => f64::NAN,
        }
    };
    m.insert(
        "sched_rate_req_s",
        num(rate(measured.iter().map(|r| r.t_sched).collect())),
    );
    m.insert(
        "sent_rate_req_s",
        num(rate(measured.iter().map(|r| r.t_sent).collect())),
    );
    m.insert(
        "late_sends_1ms",
        int(measured
            .iter()
            .filter(|r| r.t_sent.saturating_sub(r.t_sched) > 1_000_000)
            .count()),
    );

    let n_out_total: u64 = ok.iter().map(|r| u64::from(r.n_out)).sum();
    let n_in_total: u64 = ok.iter().filter_map(|r| r.n_in).map(u64::from).sum();
    let in_known = ok.iter().all(|r| r.n_in.is_some());
    let output_tok_s = n_out_total as f64 / duration_s;
    let total_tok_s = (n_out_total + n_in_total) as f64 / duration_s;
    m.insert("n_in_total", int(n_in_total));
    m.insert("n_out_total", int(n_out_total));
    m.insert("n_in_mean", num(n_in_total as f64 / ok.len().max(1) as f64));
    m.insert(
        "n_out_mean",
        num(n_out_total as f64 / ok.len().max(1) as f64),
    );
    m.insert("output_tok_s", num(output_tok_s));
    m.insert(
        "total_tok_s",
        num(if in_known { total_tok_s } else { f64::NAN }),
    );
    m.insert("req_s", num(ok.len() as f64 / duration_s));
    let busy_ns: u64 = measured.iter().map(|r| r.t_done - r.t_sent).sum();
    m.insert(
        "achieved_concurrency",
        num(busy_ns as f64 / NS_PER_S / duration_s),
    );
    m.insert(
        "usd_per_1m_output_tokens",
        num(pricing.usd_per_1m(output_tok_s)),
    );
    m.insert(
        "usd_per_1m_total_tokens",
        num(if in_known {
            pricing.usd_per_1m(total_tok_s)
        } else {
            f64::NAN
        }),
    );
    m.insert("usd_per_gpu_hour", num(pricing.usd_per_gpu_hour));
    m.insert("n_gpus", int(pricing.n_gpus));
    m.insert(
        "chunk_token_source",
        Cell::Text(most_common(ok.iter().map(|r| r.chunk_token_source))),
    );
    m.insert(
        "n_out_source",
        Cell::Text(most_common(ok.iter().map(|r| r.n_out_source))),
    );
    m.insert(
        "n_in_source",
        Cell::Text(most_common(ok.iter().map(|r| r.n_in_source))),
    );
    m.insert("t_start_ns", int(t_start.unwrap_or(0)));
    m.insert("t_end_ns", int(t_end.unwrap_or(0)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::Chunks;

    const MS: u64 = 1_000_000;

    fn rec(t_sched: u64, t_sent: u64, chunks: &[(u64, u32)], n_out: u32) -> RequestRecord {
        RequestRecord {
            id: 0,
            stage: 0,
            batch_size: 1,
            warmup: false,
            prompt_index: 0,
            t_sched,
            t_sent,
            t_headers: Some(t_sent),
            t_done: chunks.last().map(|c| c.0).unwrap_or(t_sent) + MS,
            chunks: Chunks::from_parts(
                &chunks.iter().map(|c| c.0).collect::<Vec<_>>(),
                &chunks.iter().map(|c| c.1).collect::<Vec<_>>(),
            ),
            chunk_token_source: TokenSource::ContinuousUsage,
            n_in: Some(10),
            n_in_source: TokenSource::ServerUsage,
            n_out,
            n_out_source: TokenSource::ServerUsage,
            finish_reason: Some("length".into()),
            http_status: Some(200),
            error_kind: None,
            error: None,
        }
    }

    #[test]
    fn request_metrics_by_hand() {
        // Scheduled at 0, sent at 2 ms, chunks at 52 (2 tokens), 62 (1), 82 (2) ms: n_out 5.
        let r = rec(0, 2 * MS, &[(52 * MS, 2), (62 * MS, 1), (82 * MS, 2)], 5);
        let m = RequestMetrics::of(&r);
        assert_eq!(m.ttft_ms, Some(50.0));
        assert_eq!(m.ttft_sched_ms, Some(52.0));
        assert_eq!(m.send_lag_ms, 2.0);
        assert_eq!(m.e2e_ms, Some(80.0));
        assert_eq!(m.tpot_ms, Some(30.0 / 4.0));
        let mut itl = Vec::new();
        itl_samples(&r, &mut itl);
        assert_eq!(itl, vec![0.0, 10.0, 10.0, 10.0]);
        let mean = itl.iter().sum::<f64>() / itl.len() as f64;
        assert_eq!(Some(mean), m.tpot_ms, "mean(itl) == tpot exactly");
    }

    #[test]
    fn mean_itl_equals_tpot_for_random_chunkings() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let n_chunks = rng.random_range(1..40);
            let mut t = rng.random_range(1..100) * MS;
            let mut chunks = Vec::new();
            for _ in 0..n_chunks {
                t += rng.random_range(0..50_000_000);
                chunks.push((t, rng.random_range(1..5)));
            }
            let n_out: u32 = chunks.iter().map(|c| c.1).sum();
            let r = rec(0, 0, &chunks, n_out);
            let mut itl = Vec::new();
            itl_samples(&r, &mut itl);
            assert_eq!(itl.len() as u32, n_out - 1);
            if let Some(tpot) = RequestMetrics::of(&r).tpot_ms {
                let mean = itl.iter().sum::<f64>() / itl.len() as f64;
                assert!((mean - tpot).abs() <= 1e-9 * tpot.max(1.0), "{mean} {tpot}");
            }
        }
    }

    #[test]
    fn stage_summary_by_hand() {
        // Two ok requests and one HTTP failure over a 1 s stage.
        let a = rec(0, 0, &[(100 * MS, 1), (200 * MS, 1)], 2);
        let mut b = rec(0, 0, &[(300 * MS, 1), (400 * MS, 1), (500 * MS, 1)], 3);
        b.t_done = 1000 * MS;
        let mut c = rec(0, 0, &[], 0);
        c.error_kind = Some(ErrorKind::HttpStatus);
        let mut w = rec(0, 0, &[(MS, 1)], 1);
        w.warmup = true;
        let pricing = Pricing {
            usd_per_gpu_hour: 3.6,
            n_gpus: 2,
        };
        let s = summarize_stage(&[&a, &b, &c, &w], pricing);
        let f = |k: &str| s.f64(k);
        assert_eq!(f("n_requests"), 3.0);
        assert_eq!(f("n_ok"), 2.0);
        assert_eq!(f("n_failed"), 1.0);
        assert_eq!(f("errors_http_status"), 1.0);
        assert_eq!(f("duration_s"), 1.0);
        assert_eq!(f("output_tok_s"), 5.0);
        assert_eq!(f("total_tok_s"), 25.0);
        assert_eq!(f("req_s"), 2.0);
        assert_eq!(f("ttft_mean_ms"), 200.0);
        assert_eq!(f("ttft_p50_ms"), 200.0);
        // ttft sorted [100, 300] + one +inf: p50 = 300.
        assert_eq!(f("ttft_p50_censored_ms"), 300.0);
        assert_eq!(f("ttft_p99_censored_ms"), f64::INFINITY);
        assert_eq!(f("tpot_mean_ms"), 100.0);
        assert_eq!(f("itl_mean_ms"), 100.0);
        // Busy time: a 201 ms, b 1000 ms, c 1 ms over 1 s.
        assert!((f("achieved_concurrency") - 1.202).abs() < 1e-9);
        // 3.6 USD/h × 2 GPUs = 0.002 USD/s; at 5 tok/s -> 400 USD per 1M tokens.
        assert!((f("usd_per_1m_output_tokens") - 400.0).abs() < 1e-9);
        assert!((f("usd_per_1m_total_tokens") - 80.0).abs() < 1e-9);
    }

    #[test]
    fn default_price_is_the_l4_figure() {
        let p = Pricing::default();
        assert_eq!(p.usd_per_gpu_hour, 2.93);
        // 1000 tok/s at 2.93 USD/h: 2.93/3600/1000*1e6 = 0.8138...
        assert!((p.usd_per_1m(1000.0) - 0.813_888_888).abs() < 1e-6);
    }
}
