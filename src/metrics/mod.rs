//! The metrics of docs/architecture.md ("Metrics"), computed from request records: per request (TTFT, TPOT, E2E,
//! per-token ITL samples) and per stage (distributions, throughput, concurrency, cost).

pub mod held;
pub mod slo;
pub mod stats;
pub mod streaming;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::record::{ErrorKind, RequestRecord, TokenSource};
use stats::{Dist, PERCENTILES};
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
        Self::from_times(r.t_sched, r.t_sent, r.t_first(), r.t_last(), r.n_out)
    }

    /// The same from the record's times (as the record file stores them) and `n_out`.
    pub fn from_times(
        t_sched: u64,
        t_sent: u64,
        first: Option<u64>,
        last: Option<u64>,
        n_out: u32,
    ) -> Self {
        let ms = |a: u64, b: u64| (a as f64 - b as f64) / NS_PER_MS;
        let tpot = match (first, last) {
            (Some(f), Some(l)) if n_out >= 2 => Some(ms(l, f) / f64::from(n_out - 1)),
            _ => None,
        };
        RequestMetrics {
            ttft_ms: first.map(|f| ms(f, t_sent)),
            ttft_sched_ms: first.map(|f| ms(f, t_sched)),
            send_lag_ms: ms(t_sent, t_sched),
            e2e_ms: last.map(|l| ms(l, t_sent)),
            e2e_sched_ms: last.map(|l| ms(l, t_sched)),
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

fn put_censored(map: &mut Summary, name: &str, censored: &[f64]) {
    for ((label, _), v) in CENSORED.iter().zip(censored) {
        map.insert(format!("{name}_{label}_censored_ms"), num(*v));
    }
}

/// The censored percentiles every stage reports for TTFT and E2E.
const CENSORED: [(&str, f64); 3] = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)];

fn most_common(counts: &HashMap<TokenSource, u64>) -> String {
    counts
        .iter()
        .max_by_key(|(s, c)| (**c, s.as_str()))
        .map(|(s, _)| s.as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// Smallest, largest and count of a stream of instants (for rates).
#[derive(Default)]
struct Span {
    lo: Option<u64>,
    hi: Option<u64>,
    n: u64,
}

impl Span {
    fn add(&mut self, t: u64) {
        self.lo = Some(self.lo.map_or(t, |l| l.min(t)));
        self.hi = Some(self.hi.map_or(t, |h| h.max(t)));
        self.n += 1;
    }

    /// Events per second between the first and the last (NaN with fewer than two).
    fn rate(&self) -> f64 {
        match (self.lo, self.hi) {
            (Some(a), Some(b)) if b > a && self.n > 1 => {
                (self.n - 1) as f64 / ((b - a) as f64 / NS_PER_S)
            }
            _ => f64::NAN,
        }
    }
}

fn per_request_dist() -> StreamingDist {
    StreamingDist::with_limit(streaming::EXACT_LIMIT_PER_REQUEST)
}

/// One stage's summary built one record at a time, in bounded memory: records can go to
/// disk as they complete and a stage of any length is summarized within moments of its
/// last request. Exact (numpy-identical) up to [`streaming::EXACT_LIMIT_PER_REQUEST`]
/// requests per stage, from histograms (within 0.1%) above.
pub struct StageStats {
    pricing: Pricing,
    slo: Option<slo::SloStats>,
    n_measured: u64,
    n_ok: u64,
    errors: HashMap<ErrorKind, u64>,
    done: Span,
    sched: Span,
    sent: Span,
    late_sends: u64,
    ttft: StreamingDist,
    ttft_sched: StreamingDist,
    e2e: StreamingDist,
    e2e_sched: StreamingDist,
    tpot: StreamingDist,
    send_lag: StreamingDist,
    itl: StreamingDist,
    gaps: StreamingDist,
    n_out_total: u64,
    n_in_total: u64,
    in_known: bool,
    busy_ns: u64,
    chunk_sources: HashMap<TokenSource, u64>,
    out_sources: HashMap<TokenSource, u64>,
    in_sources: HashMap<TokenSource, u64>,
    held: held::HeldTokens,
}

impl StageStats {
    /// An empty stage priced at `pricing`, with the SLO's columns when one is given.
    pub fn new(pricing: Pricing, slo: Option<&slo::Slo>) -> Self {
        StageStats {
            pricing,
            slo: slo.map(slo::SloStats::new),
            n_measured: 0,
            n_ok: 0,
            errors: HashMap::new(),
            done: Span::default(),
            sched: Span::default(),
            sent: Span::default(),
            late_sends: 0,
            ttft: per_request_dist(),
            ttft_sched: per_request_dist(),
            e2e: per_request_dist(),
            e2e_sched: per_request_dist(),
            tpot: per_request_dist(),
            send_lag: per_request_dist(),
            // Per-token and per-chunk samples can number tens of millions.
            itl: StreamingDist::default(),
            gaps: StreamingDist::default(),
            n_out_total: 0,
            n_in_total: 0,
            in_known: true,
            busy_ns: 0,
            chunk_sources: HashMap::new(),
            out_sources: HashMap::new(),
            in_sources: HashMap::new(),
            held: held::HeldTokens::default(),
        }
    }

    /// Requests counted so far (warm-up ones are not).
    pub fn len(&self) -> u64 {
        self.n_measured
    }

    /// Whether no measured request was added.
    pub fn is_empty(&self) -> bool {
        self.n_measured == 0
    }

    /// Count one record (a warm-up record is ignored).
    pub fn add(&mut self, r: &RequestRecord) {
        if r.warmup {
            return;
        }
        self.n_measured += 1;
        if let Some(k) = r.error_kind {
            *self.errors.entry(k).or_default() += 1;
        }
        self.done.add(r.t_done);
        self.sched.add(r.t_sched);
        self.sent.add(r.t_sent);
        if r.t_sent.saturating_sub(r.t_sched) > 1_000_000 {
            self.late_sends += 1;
        }
        self.busy_ns += r.t_done.saturating_sub(r.t_sent);
        self.held.add(r);
        let m = RequestMetrics::of(r);
        self.send_lag.add(m.send_lag_ms, 1);
        if let Some(s) = self.slo.as_mut() {
            s.add(r);
        }
        if !r.ok() {
            return;
        }
        self.n_ok += 1;
        let put = |d: &mut StreamingDist, v: Option<f64>| {
            if let Some(v) = v {
                d.add(v, 1);
            }
        };
        put(&mut self.ttft, m.ttft_ms);
        put(&mut self.ttft_sched, m.ttft_sched_ms);
        put(&mut self.e2e, m.e2e_ms);
        put(&mut self.e2e_sched, m.e2e_sched_ms);
        put(&mut self.tpot, m.tpot_ms);
        for_each_itl(r, |v, n| self.itl.add(v, n));
        for_each_chunk_gap(r, |v| self.gaps.add(v, 1));
        self.n_out_total += u64::from(r.n_out);
        match r.n_in {
            Some(n) => self.n_in_total += u64::from(n),
            None => self.in_known = false,
        }
        *self.chunk_sources.entry(r.chunk_token_source).or_default() += 1;
        *self.out_sources.entry(r.n_out_source).or_default() += 1;
        *self.in_sources.entry(r.n_in_source).or_default() += 1;
    }

    /// The stage's summary columns. Non-finite values are kept as such here; JSON writers
    /// turn them into null.
    pub fn finish(self) -> Summary {
        let mut m = Summary::default();
        let n_cancelled = self.errors.get(&ErrorKind::Cancelled).copied().unwrap_or(0);
        let n_ok = self.n_ok;
        let n_failed = self.n_measured - n_ok - n_cancelled;
        m.insert("n_requests", int(self.n_measured));
        m.insert("n_ok", int(n_ok));
        m.insert("n_failed", int(n_failed));
        m.insert("n_cancelled", int(n_cancelled));
        let denom = (n_ok + n_failed).max(1) as f64;
        m.insert("error_rate", num(n_failed as f64 / denom));
        for kind in ErrorKind::ALL {
            if kind != ErrorKind::Cancelled {
                let n = self.errors.get(&kind).copied().unwrap_or(0);
                m.insert(format!("errors_{}", kind.as_str()), int(n));
            }
        }
        let (t_start, t_end) = (self.sched.lo, self.done.hi);
        let duration_s = match (t_start, t_end) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / NS_PER_S,
            _ => f64::NAN,
        };
        m.insert("duration_s", num(duration_s));
        let failed = n_failed as usize;
        let (ttft, ttft_censored) = self.ttft.finish_censored(failed, &CENSORED.map(|c| c.1));
        put_dist(&mut m, "ttft", ttft);
        put_censored(&mut m, "ttft", &ttft_censored);
        put_dist(&mut m, "ttft_sched", self.ttft_sched.finish());
        m.insert("itl_exact_percentiles", int(u8::from(self.itl.is_exact())));
        put_dist(&mut m, "itl", self.itl.finish());
        put_dist(&mut m, "tpot", self.tpot.finish());
        let (e2e, e2e_censored) = self.e2e.finish_censored(failed, &CENSORED.map(|c| c.1));
        put_dist(&mut m, "e2e", e2e);
        put_censored(&mut m, "e2e", &e2e_censored);
        put_dist(&mut m, "chunk_gap", self.gaps.finish());
        put_dist(&mut m, "send_lag", self.send_lag.finish());
        put_dist(&mut m, "e2e_sched", self.e2e_sched.finish());
        // What the client delivered: the rate requests were scheduled at and really sent at,
        // and how many left more than 1 ms after their scheduled time.
        m.insert("sched_rate_req_s", num(self.sched.rate()));
        m.insert("sent_rate_req_s", num(self.sent.rate()));
        m.insert("late_sends_1ms", int(self.late_sends));

        let output_tok_s = self.n_out_total as f64 / duration_s;
        let total_tok_s = (self.n_out_total + self.n_in_total) as f64 / duration_s;
        m.insert("n_in_total", int(self.n_in_total));
        m.insert("n_out_total", int(self.n_out_total));
        m.insert(
            "n_in_mean",
            num(self.n_in_total as f64 / n_ok.max(1) as f64),
        );
        m.insert(
            "n_out_mean",
            num(self.n_out_total as f64 / n_ok.max(1) as f64),
        );
        m.insert("output_tok_s", num(output_tok_s));
        m.insert(
            "total_tok_s",
            num(if self.in_known { total_tok_s } else { f64::NAN }),
        );
        m.insert("req_s", num(n_ok as f64 / duration_s));
        m.insert(
            "achieved_concurrency",
            num(self.busy_ns as f64 / NS_PER_S / duration_s),
        );
        m.insert(
            "usd_per_1m_output_tokens",
            num(self.pricing.usd_per_1m(output_tok_s)),
        );
        m.insert(
            "usd_per_1m_total_tokens",
            num(if self.in_known {
                self.pricing.usd_per_1m(total_tok_s)
            } else {
                f64::NAN
            }),
        );
        m.insert("usd_per_gpu_hour", num(self.pricing.usd_per_gpu_hour));
        m.insert("n_gpus", int(self.pricing.n_gpus));
        m.insert(
            "chunk_token_source",
            Cell::Text(most_common(&self.chunk_sources)),
        );
        m.insert("n_out_source", Cell::Text(most_common(&self.out_sources)));
        m.insert("n_in_source", Cell::Text(most_common(&self.in_sources)));
        m.insert("t_start_ns", int(t_start.unwrap_or(0)));
        m.insert("t_end_ns", int(t_end.unwrap_or(0)));
        m.insert(
            "kv_client_est_tokens_max",
            num(self.held.max().unwrap_or(f64::NAN)),
        );
        if let Some(s) = self.slo {
            s.put_columns(&mut m, duration_s);
        }
        m
    }
}

/// Summarize one stage's measured (non-warm-up) records into named columns: the
/// [`StageStats`] of these records (for tests with records in hand; runs feed
/// `StageStats` as records complete).
#[cfg(test)]
pub fn summarize_stage(records: &[&RequestRecord], pricing: Pricing) -> Summary {
    let mut stats = StageStats::new(pricing, None);
    for r in records {
        stats.add(r);
    }
    stats.finish()
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
            conversation: None,
            turn: None,
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
            server_times: crate::record::ServerTimes::default(),
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
