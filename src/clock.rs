//! The one monotonic clock every timestamp in a run is taken on.
//!
//! All times are integer nanoseconds since a process-wide anchor `Instant`, so request
//! records, server-side truth and telemetry samples taken in one process line up exactly.
//! One wall-clock anchor lets results be placed in real time afterwards.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    unix_ns: u64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_anchored_in_unix_time() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(unix_anchor_ns() > 1_600_000_000_000_000_000);
    }
}
