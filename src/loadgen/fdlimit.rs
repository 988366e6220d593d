//! File descriptors: every stream in flight holds a socket, so a run at 1,024 streams
//! needs a limit above the common default soft limit of 1,024. Checked before the first
//! request: the soft limit is raised where the hard limit allows, else the run stops with
//! a message that says what to do (instead of failing requests with EMFILE mid-run).

use rlimit::Resource;

use crate::error::{Error, Result};

/// Descriptors the process needs besides the run's sockets (files, the runtime, Python).
const HEADROOM: u64 = 256;

/// Make sure `streams` sockets can be open at once. Returns a note when the soft limit
/// was raised.
pub fn ensure(streams: u64) -> Result<Option<String>> {
    let need = streams + HEADROOM;
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else {
        return Ok(None); // not a Unix with RLIMIT_NOFILE: nothing to check
    };
    if soft >= need {
        return Ok(None);
    }
    if hard >= need {
        // Raise to what is needed with room to spare, never past the hard limit.
        let target = (need * 2).min(hard);
        rlimit::setrlimit(Resource::NOFILE, target, hard).map_err(|e| {
            Error::InvalidArgument(format!("cannot raise the open-file limit: {e}"))
        })?;
        return Ok(Some(format!(
            "raised the open-file soft limit from {soft} to {target} for {streams} streams"
        )));
    }
    Err(Error::InvalidArgument(format!(
        "this run keeps up to {streams} streams open and needs about {need} file descriptors, \
         but the open-file limit is {soft} (hard limit {hard}); raise it before starting, \
         e.g. `ulimit -n {need}` in the shell or LimitNOFILE in a systemd unit"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_pass_and_impossible_ones_say_what_to_do() {
        assert_eq!(ensure(4).expect("small"), None);
        let err = ensure(u64::MAX / 4).expect_err("beyond any hard limit");
        let msg = err.to_string();
        assert!(
            msg.contains("ulimit -n") && msg.contains("hard limit"),
            "{msg}"
        );
    }
}
