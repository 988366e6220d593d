//! Distribution statistics: mean, std, min, percentiles, max, and censored percentiles in
//! which each failed request counts as +inf (so failures never vanish from a latency figure).
//!
//! Percentiles use linear interpolation between closest ranks (numpy's default, so figures
//! can be checked with `numpy.percentile`); std is the population std (numpy's `ddof=0`).

/// Percentiles every distribution reports.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0)];

/// Summary of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dist {
    /// Sample size.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// 50th, 90th, 95th, 99th percentiles.
    pub pct: [f64; 4],
    /// Largest value.
    pub max: f64,
}

/// Percentile `q` (0..=100) of an ascending, non-empty slice, numpy "linear" method.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let pos = (q / 100.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    if lo == hi {
        return sorted[lo];
    }
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Percentile of the ok values plus `n_failed` values of +inf (same interpolation).
pub fn censored_percentile(sorted_ok: &[f64], n_failed: usize, q: f64) -> f64 {
    let n = sorted_ok.len() + n_failed;
    if n == 0 {
        return f64::NAN;
    }
    let value = |i: usize| sorted_ok.get(i).copied().unwrap_or(f64::INFINITY);
    let pos = (q / 100.0) * (n - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if lo == hi {
        return value(lo);
    }
    let (a, b) = (value(lo), value(hi));
    if b.is_infinite() {
        return f64::INFINITY;
    }
    a + (b - a) * (pos - lo as f64)
}

/// Describe a sample (sorted in place). `None` when empty.
pub fn describe(values: &mut [f64]) -> Option<Dist> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    let mut pct = [0.0; 4];
    for (slot, (_, q)) in pct.iter_mut().zip(PERCENTILES) {
        *slot = percentile_sorted(values, q);
    }
    Some(Dist {
        n,
        mean,
        std: var.sqrt(),
        min: values[0],
        pct,
        max: values[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [50, 90, 95, 99]) = [2.5, 3.7, 3.85, 3.97]
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        let d = describe(&mut v).expect("non-empty");
        let want = [2.5, 3.7, 3.85, 3.97];
        for (got, want) in d.pct.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!((d.min, d.max, d.mean), (1.0, 4.0, 2.5));
        // numpy.std([1,2,3,4]) = 1.118033988749895
        assert!((d.std - 1.118_033_988_749_895).abs() < 1e-12);
        assert_eq!(describe(&mut []), None);
    }

    #[test]
    fn censored_percentiles_count_failures_as_infinite() {
        let ok = [1.0, 2.0, 3.0];
        // [1, 2, 3, inf]: p50 = 2.5, p90 -> inf (interpolates towards inf).
        assert_eq!(censored_percentile(&ok, 1, 50.0), 2.5);
        assert_eq!(censored_percentile(&ok, 1, 90.0), f64::INFINITY);
        // No failures: same as the plain percentile.
        assert_eq!(censored_percentile(&ok, 0, 50.0), 2.0);
        assert_eq!(
            censored_percentile(&ok, 0, 99.0),
            percentile_sorted(&ok, 99.0)
        );
        // All failed.
        assert_eq!(censored_percentile(&[], 3, 50.0), f64::INFINITY);
        // [1, 2, 3, 4, inf, inf]: p20 -> pos 1.0 -> 2.0; p50 -> pos 2.5 -> 3.5
        let ok = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(censored_percentile(&ok, 2, 20.0), 2.0);
        assert_eq!(censored_percentile(&ok, 2, 50.0), 3.5);
    }
}
