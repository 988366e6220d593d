//! Open-loop arrival processes: when each request of a stage is scheduled, as offsets
//! from the stage's start, generated up front from a seed (the same schedule every run,
//! and the same from Python, which calls this code).
//!
//! Absolute schedules, never relative sleeps: a client that sleeps `gap` after each send
//! drifts by its own send time on every request and under-delivers the rate.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How requests arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrival {
    /// Evenly spaced, `rate` per second.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// Poisson process: exponential gaps with mean `1 / rate`.
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// Gamma-distributed gaps with mean `1 / rate`; shape `burstiness` (1 is Poisson,
    /// smaller is burstier, larger is more regular), as in vLLM's benchmark.
    Gamma {
        /// Requests per second.
        rate: f64,
        /// Shape of the gap distribution.
        burstiness: f64,
    },
    /// Deterministic arrivals whose rate rises (or falls) linearly from `start_rate` to
    /// `end_rate` over the stage's duration.
    Ramp {
        /// Requests per second at the start.
        start_rate: f64,
        /// Requests per second at the end.
        end_rate: f64,
    },
    /// Replay: arrival times in seconds from the start of the stage.
    Trace {
        /// Arrival times, seconds.
        times_s: Vec<f64>,
    },
}

impl Arrival {
    /// The nominal rate (mean for stochastic processes, average for a ramp or trace).
    pub fn nominal_rate(&self, duration_s: Option<f64>) -> f64 {
        match self {
            Arrival::Constant { rate }
            | Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. } => *rate,
            Arrival::Ramp {
                start_rate,
                end_rate,
            } => (start_rate + end_rate) / 2.0,
            Arrival::Trace { times_s } => {
                let span = duration_s
                    .or_else(|| {
                        times_s
                            .iter()
                            .copied()
                            .fold(None, |m, t| Some(m.map_or(t, |m: f64| m.max(t))))
                    })
                    .unwrap_or(0.0);
                if span > 0.0 {
                    times_s.len() as f64 / span
                } else {
                    f64::NAN
                }
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let ok_rate = |r: f64| r.is_finite() && r > 0.0;
        let good = match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => ok_rate(*rate),
            Arrival::Gamma { rate, burstiness } => {
                ok_rate(*rate) && burstiness.is_finite() && *burstiness > 0.0
            }
            Arrival::Ramp {
                start_rate,
                end_rate,
            } => {
                start_rate.is_finite()
                    && end_rate.is_finite()
                    && *start_rate >= 0.0
                    && *end_rate >= 0.0
                    && start_rate + end_rate > 0.0
            }
            Arrival::Trace { times_s } => times_s.iter().all(|t| t.is_finite() && *t >= 0.0),
        };
        if good {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "invalid arrival process {self:?}: rates must be positive and finite"
            )))
        }
    }
}

/// Arrival offsets in ns from the stage start, ascending: at most `max_requests`, none at
/// or after `duration_s`. At least one bound is needed (a ramp needs the duration).
pub fn schedule(
    arrival: &Arrival,
    max_requests: Option<u64>,
    duration_s: Option<f64>,
    seed: u64,
) -> Result<Vec<u64>> {
    arrival.validate()?;
    if max_requests.is_none() && duration_s.is_none() && !matches!(arrival, Arrival::Trace { .. }) {
        return Err(Error::InvalidArgument(
            "an open-loop stage needs a request count or a duration".into(),
        ));
    }
    if let Some(d) = duration_s {
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::InvalidArgument(
                "stage duration must be positive".into(),
            ));
        }
    }
    let limit_n = max_requests.unwrap_or(u64::MAX);
    let limit_s = duration_s.unwrap_or(f64::INFINITY);
    let mut out: Vec<u64> = Vec::new();
    let push = |t_s: f64, out: &mut Vec<u64>| -> bool {
        if out.len() as u64 >= limit_n || t_s >= limit_s {
            return false;
        }
        out.push((t_s * 1e9).round() as u64);
        true
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match arrival {
        Arrival::Constant { rate } => {
            let mut i = 0u64;
            while push(i as f64 / rate, &mut out) {
                i += 1;
            }
        }
        Arrival::Poisson { rate } => {
            let exp = Exp::new(*rate).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let mut t = 0.0;
            while push(t, &mut out) {
                t += exp.sample(&mut rng);
            }
        }
        Arrival::Gamma { rate, burstiness } => {
            let gamma = Gamma::new(*burstiness, 1.0 / (rate * burstiness))
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let mut t = 0.0;
            while push(t, &mut out) {
                t += gamma.sample(&mut rng);
            }
        }
        Arrival::Ramp {
            start_rate,
            end_rate,
        } => {
            let d = duration_s
                .ok_or_else(|| Error::InvalidArgument("a ramp needs the stage duration".into()))?;
            // Cumulative arrivals Λ(t) = r0·t + (r1 − r0)·t²/(2d); request i arrives at
            // Λ(t) = i.
            let (r0, r1) = (*start_rate, *end_rate);
            let a = (r1 - r0) / (2.0 * d);
            let mut i = 0u64;
            loop {
                let n = i as f64;
                let t = if a.abs() < 1e-12 {
                    n / r0
                } else {
                    (-r0 + (r0 * r0 + 4.0 * a * n).max(0.0).sqrt()) / (2.0 * a)
                };
                if !t.is_finite() || !push(t, &mut out) {
                    break;
                }
                i += 1;
            }
        }
        Arrival::Trace { times_s } => {
            let mut times = times_s.clone();
            times.sort_by(f64::total_cmp);
            for t in times {
                if !push(t, &mut out) {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps_s(s: &[u64]) -> Vec<f64> {
        s.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect()
    }

    #[test]
    fn constant_rate_is_exact() {
        let s = schedule(&Arrival::Constant { rate: 200.0 }, None, Some(1.0), 0).expect("s");
        assert_eq!(s.len(), 200);
        assert!(gaps_s(&s).iter().all(|g| (g - 0.005).abs() < 1e-9));
    }

    #[test]
    fn poisson_passes_a_kolmogorov_smirnov_test_and_is_seeded() {
        let rate = 1000.0;
        let s = schedule(&Arrival::Poisson { rate }, Some(20_000), None, 42).expect("s");
        assert_eq!(
            s,
            schedule(&Arrival::Poisson { rate }, Some(20_000), None, 42).expect("s")
        );
        assert_ne!(
            s,
            schedule(&Arrival::Poisson { rate }, Some(20_000), None, 43).expect("s")
        );
        let mut g = gaps_s(&s);
        g.sort_by(f64::total_cmp);
        let n = g.len() as f64;
        // Largest distance between the empirical CDF and 1 − exp(−rate·x).
        let d = g
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let f = 1.0 - (-rate * x).exp();
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max);
        // Critical value at α = 0.01: 1.63 / √n.
        assert!(d < 1.63 / n.sqrt(), "KS D = {d}");
        let mean = g.iter().sum::<f64>() / n;
        assert!((mean - 1.0 / rate).abs() < 0.03 / rate, "mean gap {mean}");
    }

    #[test]
    fn gamma_keeps_the_mean_and_burstiness_sets_the_spread() {
        for (b, cv) in [(0.25, 2.0), (1.0, 1.0), (4.0, 0.5)] {
            let s = schedule(
                &Arrival::Gamma {
                    rate: 100.0,
                    burstiness: b,
                },
                Some(40_000),
                None,
                7,
            )
            .expect("s");
            let g = gaps_s(&s);
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let sd = (g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!((mean - 0.01).abs() < 0.0005, "b={b} mean {mean}");
            // Coefficient of variation of a gamma with shape k is 1/√k.
            assert!((sd / mean - cv).abs() < 0.08 * cv, "b={b} cv {}", sd / mean);
        }
    }

    #[test]
    fn ramp_delivers_the_average_rate_and_rises() {
        let s = schedule(
            &Arrival::Ramp {
                start_rate: 100.0,
                end_rate: 300.0,
            },
            None,
            Some(2.0),
            0,
        )
        .expect("s");
        // ∫ rate = (100 + 300) / 2 × 2 s = 400 requests.
        assert!((399..=401).contains(&s.len()), "{}", s.len());
        let g = gaps_s(&s);
        assert!(g[0] > g[g.len() - 1] * 2.5, "gaps shrink as the rate rises");
    }

    #[test]
    fn trace_is_sorted_and_cut_at_the_bounds() {
        let s = schedule(
            &Arrival::Trace {
                times_s: vec![0.5, 0.1, 0.3, 2.0],
            },
            Some(10),
            Some(1.0),
            0,
        )
        .expect("s");
        assert_eq!(s, vec![100_000_000, 300_000_000, 500_000_000]);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(schedule(&Arrival::Poisson { rate: 0.0 }, Some(1), None, 0).is_err());
        assert!(schedule(&Arrival::Poisson { rate: 10.0 }, None, None, 0).is_err());
        let ramp = Arrival::Ramp {
            start_rate: 1.0,
            end_rate: 2.0,
        };
        assert!(schedule(&ramp, Some(5), None, 0).is_err());
    }
}
