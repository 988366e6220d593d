//! The one monotonic clock every timestamp in a run is taken on.
//!
//! All times are integer nanoseconds since a process-wide anchor `Instant`, so request
//! records, server-side truth and telemetry samples taken in one process line up exactly.
//! One wall-clock anchor lets results be placed in real time afterwards, and one reading
//! of the machine's `CLOCK_MONOTONIC` at the same moment lets times of two processes (a
//! client and a scripted server in another process) be compared on the machine's clock.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    unix_ns: u64,
    monotonic_ns: u64,
}

fn machine_monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        // `Instant` is CLOCK_MONOTONIC on Linux: read it between two machine readings and
        // take their midpoint (off by half their gap, well under a microsecond).
        let before = machine_monotonic_ns();
        let instant = Instant::now();
        let after = machine_monotonic_ns();
        let monotonic_ns = before + (after - before) / 2;
        Anchor {
            instant,
            unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            monotonic_ns,
        }
    })
}

/// Nanoseconds since the process anchor on the monotonic clock.
#[inline]
pub fn now_ns() -> u64 {
    anchor().instant.elapsed().as_nanos() as u64
}

/// Unix time in nanoseconds of the monotonic clock's zero: `unix = UNIX_ANCHOR + t`.
pub fn unix_anchor_ns() -> u64 {
    anchor().unix_ns
}

/// The machine's `CLOCK_MONOTONIC` in nanoseconds at this process's zero: `machine = this + t`
/// (what Python's `time.monotonic_ns()` reads).
pub fn monotonic_anchor_ns() -> u64 {
    anchor().monotonic_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_anchored_in_unix_time() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(unix_anchor_ns() > 1_600_000_000_000_000_000);
        // Our clock plus the anchor is the machine's monotonic clock.
        let ours = monotonic_anchor_ns() + now_ns();
        let machine = machine_monotonic_ns();
        assert!(machine.abs_diff(ours) < 1_000_000, "{machine} vs {ours}");
    }
}
