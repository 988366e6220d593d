//! A distribution built one sample at a time with bounded memory: exact (every value kept,
//! numpy-identical percentiles) up to [`EXACT_LIMIT`] samples, then folded into an HDR
//! histogram (3 significant digits, so a percentile is within 0.1% of the exact one) while
//! count, mean, std, min and max stay exact. Per-token ITL samples of a million-request
//! stage would otherwise need 8 bytes per streamed token just to be sorted.

use hdrhistogram::Histogram;

use super::stats::{censored_percentile, describe, Dist, PERCENTILES};

/// Samples kept whole before switching to the histogram (32 MiB of `f64`): per-token ITL
/// and chunk gaps.
pub const EXACT_LIMIT: usize = 1 << 22;

/// The same for per-request latencies (8 MiB of `f64` each; a stage keeps about eight of
/// them), so a stage of any length holds its summary in bounded memory.
pub const EXACT_LIMIT_PER_REQUEST: usize = 1 << 20;

/// Histogram resolution: 1 ns over values up to an hour.
const SIGFIG: u8 = 3;
const MAX_NS: u64 = 3_600_000_000_000;

/// Sample sink; [`StreamingDist::finish`] gives the [`Dist`].
pub struct StreamingDist {
    exact: Vec<f64>,
    limit: usize,
    hist: Option<Histogram<u64>>,
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for StreamingDist {
    fn default() -> Self {
        Self::with_limit(EXACT_LIMIT)
    }
}

impl StreamingDist {
    /// A sink that stays exact up to `limit` samples.
    pub fn with_limit(limit: usize) -> Self {
        StreamingDist {
            exact: Vec::new(),
            limit,
            hist: None,
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Whether percentiles will be exact.
    pub fn is_exact(&self) -> bool {
        self.hist.is_none()
    }

    /// Samples so far.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Add `count` samples of value `v` (milliseconds).
    pub fn add(&mut self, v: f64, count: u64) {
        if count == 0 {
            return;
        }
        // Weighted Welford update: exact mean and variance whatever the sample count.
        let n_new = self.n + count;
        let delta = v - self.mean;
        self.mean += delta * count as f64 / n_new as f64;
        self.m2 += delta * (v - self.mean) * count as f64;
        self.n = n_new;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        match &mut self.hist {
            Some(h) => record(h, v, count),
            None => {
                self.exact.extend(std::iter::repeat_n(
                    v,
                    count.min(usize::MAX as u64) as usize,
                ));
                if self.exact.len() > self.limit {
                    let mut h = Histogram::<u64>::new_with_bounds(1, MAX_NS, SIGFIG)
                        .expect("static histogram bounds are valid");
                    for &x in &self.exact {
                        record(&mut h, x, 1);
                    }
                    self.exact = Vec::new();
                    self.hist = Some(h);
                }
            }
        }
    }

    /// The distribution (`None` when empty) and, for each `q` of `censored_q`, the
    /// percentile over these samples plus `n_failed` samples of +inf
    /// ([`super::stats::censored_percentile`]; from the histogram above the limit).
    pub fn finish_censored(
        mut self,
        n_failed: usize,
        censored_q: &[f64],
    ) -> (Option<Dist>, Vec<f64>) {
        if self.hist.is_none() {
            self.exact.sort_by(f64::total_cmp);
            let censored = censored_q
                .iter()
                .map(|&q| censored_percentile(&self.exact, n_failed, q))
                .collect();
            return (self.finish(), censored);
        }
        let n_ok = self.n as f64;
        let censored = censored_q
            .iter()
            .map(|&q| {
                // The rank among all (ok and failed) as a rank among the ok values; a rank
                // that reaches the failures is +inf, as in the exact case.
                let pos = q / 100.0 * (n_ok + n_failed as f64 - 1.0);
                match &self.hist {
                    Some(h) if pos.ceil() < n_ok => {
                        let q_ok = if n_ok > 1.0 { pos / (n_ok - 1.0) } else { 0.0 };
                        h.median_equivalent(h.value_at_quantile(q_ok.clamp(0.0, 1.0))) as f64 / 1e6
                    }
                    _ => f64::INFINITY,
                }
            })
            .collect();
        (self.finish(), censored)
    }

    /// The distribution (`None` when empty).
    pub fn finish(mut self) -> Option<Dist> {
        let Some(h) = &self.hist else {
            return describe(&mut self.exact);
        };
        let mut pct = [0.0; 4];
        for (slot, (_, q)) in pct.iter_mut().zip(PERCENTILES) {
            // The bucket's median value: the histogram's best estimate of the sample.
            *slot = h.median_equivalent(h.value_at_quantile(q / 100.0)) as f64 / 1e6;
        }
        Some(Dist {
            n: self.n as usize,
            mean: self.mean,
            std: (self.m2 / self.n as f64).max(0.0).sqrt(),
            min: self.min,
            pct,
            max: self.max,
        })
    }
}

fn record(h: &mut Histogram<u64>, v_ms: f64, count: u64) {
    let ns = (v_ms * 1e6).round().clamp(1.0, MAX_NS as f64) as u64;
    h.saturating_record_n(ns, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_the_limit_and_within_a_tenth_of_a_percent_above() {
        let values: Vec<f64> = (0..20_000)
            .map(|i| 5.0 + (i % 997) as f64 * 0.037)
            .collect();
        let mut small = StreamingDist::with_limit(1 << 20);
        let mut big = StreamingDist::with_limit(1000);
        for &v in &values {
            small.add(v, 1);
            big.add(v, 1);
        }
        assert!(small.is_exact() && !big.is_exact());
        let exact = describe(&mut values.clone()).expect("non-empty");
        assert_eq!(small.finish().expect("non-empty"), exact);
        let approx = big.finish().expect("non-empty");
        assert_eq!(approx.n, exact.n);
        assert!((approx.mean - exact.mean).abs() < 1e-9);
        assert!((approx.std - exact.std).abs() < 1e-9);
        assert_eq!((approx.min, approx.max), (exact.min, exact.max));
        for (a, e) in approx.pct.iter().zip(exact.pct) {
            assert!((a - e).abs() <= e * 1e-3, "{a} vs {e}");
        }
    }

    #[test]
    fn weighted_samples_equal_repeated_ones() {
        let mut w = StreamingDist::default();
        let mut r = StreamingDist::default();
        w.add(4.0, 3);
        w.add(1.0, 1);
        for v in [4.0, 4.0, 4.0, 1.0] {
            r.add(v, 1);
        }
        assert_eq!(w.finish(), r.finish());
        assert_eq!(StreamingDist::default().finish(), None);
    }
}
