//! The client-side KV-cache estimate of a stage (docs/architecture.md, "Metrics"): the
//! most tokens its requests held at once, where a request holds its prompt from send to
//! end plus each output chunk from the chunk's arrival. Built one record at a time in
//! bounded memory: a difference array over time bins (1 ms to start with), halved in
//! resolution whenever it would pass [`MAX_BINS`], so a stage of any length costs at most
//! 8 MiB. The maximum is read at bin ends (the state after every event in a bin), which
//! for a stage under about 17 minutes is at 1 ms resolution.

use crate::record::RequestRecord;

/// Bins kept before the resolution is halved.
pub const MAX_BINS: usize = 1 << 20;

/// The starting resolution.
const START_RES_NS: u64 = 1_000_000;

/// Tokens held over time, as changes per bin.
#[derive(Debug, Clone)]
pub struct HeldTokens {
    origin: Option<u64>,
    res_ns: u64,
    diff: Vec<i64>,
}

impl Default for HeldTokens {
    fn default() -> Self {
        HeldTokens {
            origin: None,
            res_ns: START_RES_NS,
            diff: Vec::new(),
        }
    }
}

impl HeldTokens {
    /// Count what `r` held, and when.
    pub fn add(&mut self, r: &RequestRecord) {
        let n_in = i64::from(r.n_in.unwrap_or(0));
        let mut out = 0i64;
        self.put(r.t_sent, n_in);
        for (t, k) in r.chunks.iter() {
            self.put(t, i64::from(k));
            out += i64::from(k);
        }
        self.put(r.t_done.max(r.t_sent), -(n_in + out));
    }

    fn put(&mut self, t: u64, delta: i64) {
        let origin = *self.origin.get_or_insert(t - t % self.res_ns);
        if t < origin {
            // Earlier than anything so far: start the bins earlier.
            let shift = (origin - t).div_ceil(self.res_ns) as usize;
            self.diff.splice(0..0, std::iter::repeat_n(0, shift));
            self.origin = Some(origin - shift as u64 * self.res_ns);
        }
        let mut idx = ((t - self.origin.unwrap_or(t)) / self.res_ns) as usize;
        while idx >= MAX_BINS {
            self.coarsen();
            idx = ((t - self.origin.unwrap_or(t)) / self.res_ns) as usize;
        }
        if self.diff.len() <= idx {
            self.diff.resize(idx + 1, 0);
        }
        self.diff[idx] += delta;
    }

    /// Halve the resolution: each pair of bins becomes one, which keeps the sums at the
    /// coarser bins' ends exact. Done in place (coarse bin `j` takes fine bins `2j − lead`
    /// and `2j − lead + 1`, never before `j`, so none is overwritten before it is read): no
    /// second array, so memory does not step up when it happens.
    fn coarsen(&mut self) {
        let origin = self.origin.unwrap_or(0);
        let aligned = origin - origin % (2 * self.res_ns);
        let lead = usize::from(aligned != origin);
        let n = self.diff.len();
        let merged = (n + lead).div_ceil(2);
        for j in 0..merged {
            let first = (2 * j).checked_sub(lead);
            let a = first.map_or(0, |i| self.diff[i]);
            let b = self.diff.get(2 * j + 1 - lead).copied().unwrap_or(0);
            self.diff[j] = a + b;
        }
        self.diff.truncate(merged);
        self.origin = Some(aligned);
        self.res_ns *= 2;
    }

    /// The most tokens held at once (`None` when nothing was added).
    pub fn max(&self) -> Option<f64> {
        self.origin?;
        let mut held = 0i64;
        let mut most = i64::MIN;
        for d in &self.diff {
            held += d;
            most = most.max(held);
        }
        Some(most as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Chunks;

    const MS: u64 = 1_000_000;

    fn req(sent: u64, chunks: &[(u64, u32)], done: u64, n_in: u32) -> RequestRecord {
        let mut r = crate::test_support::record(0, 0, false, None);
        r.t_sent = sent;
        r.t_sched = sent;
        r.t_done = done;
        r.n_in = Some(n_in);
        let (t, k): (Vec<u64>, Vec<u32>) = chunks.iter().copied().unzip();
        r.chunks = Chunks::from_parts(&t, &k);
        r
    }

    #[test]
    fn overlapping_requests_by_hand() {
        // A: 10 prompt tokens from 0 to 100 ms, 2 tokens at 50 ms, 3 more at 80 ms.
        // B: 5 prompt tokens from 60 to 200 ms, 4 tokens at 90 ms.
        // Peak at 90 ms: A 10 + 2 + 3, B 5 + 4 = 24.
        let mut h = HeldTokens::default();
        h.add(&req(
            1000 * MS,
            &[(1050 * MS, 2), (1080 * MS, 3)],
            1100 * MS,
            10,
        ));
        h.add(&req(1060 * MS, &[(1090 * MS, 4)], 1200 * MS, 5));
        assert_eq!(h.max(), Some(24.0));
        assert_eq!(HeldTokens::default().max(), None);
    }

    #[test]
    fn halving_keeps_the_running_sum_at_every_coarse_bin_end() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (origin, len) in [(0u64, 7usize), (MS, 8), (3 * MS, 1), (5 * MS, 33), (0, 0)] {
            let diff: Vec<i64> = (0..len).map(|_| rng.random_range(-50..50)).collect();
            let mut h = HeldTokens {
                origin: Some(origin),
                res_ns: MS,
                diff: diff.clone(),
            };
            h.coarsen();
            assert_eq!(h.res_ns, 2 * MS);
            let fine_end = |t: u64| -> i64 {
                // Sum of the fine bins that end at or before t.
                diff.iter()
                    .enumerate()
                    .filter(|(i, _)| origin + (*i as u64 + 1) * MS <= t)
                    .map(|(_, d)| d)
                    .sum()
            };
            let mut running = 0;
            for (j, d) in h.diff.iter().enumerate() {
                running += d;
                let end = h.origin.unwrap_or(0) + (j as u64 + 1) * 2 * MS;
                assert_eq!(
                    running,
                    fine_end(end),
                    "origin {origin}, {len} bins, coarse bin {j}"
                );
            }
            assert_eq!(h.diff.iter().sum::<i64>(), diff.iter().sum::<i64>());
        }
    }

    #[test]
    fn a_long_stage_stays_within_its_bins_and_keeps_the_plateau() {
        // Two hours of back-to-back requests holding 7 tokens each, two at a time.
        let mut h = HeldTokens::default();
        for i in 0..7200u64 {
            let t = 5_000 * MS + i * 1000 * MS;
            h.add(&req(t, &[(t + 10 * MS, 2)], t + 2000 * MS, 5));
        }
        assert!(h.diff.len() <= MAX_BINS && h.res_ns > START_RES_NS);
        assert_eq!(h.max(), Some(14.0));
        // An earlier record still lands in the bins.
        h.add(&req(4_000 * MS, &[], 4_500 * MS, 100));
        assert_eq!(h.max(), Some(100.0));
    }
}
