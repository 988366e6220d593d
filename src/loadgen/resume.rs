//! Resuming an interrupted sweep from its live record file (`requests_<target>.jsonl`):
//! stages whose records are complete are kept and summarized again; the stage that was cut
//! short is dropped and run again from its start, with the ones never started.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::record::{ErrorKind, RequestRecord};

/// Read a JSONL record file. A line that does not parse (the last one, cut by a crash or a
/// full disk) is skipped and counted, never fatal.
pub fn read_records(path: &Path) -> Result<(Vec<RequestRecord>, usize)> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut records = Vec::new();
    let mut bad = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<RequestRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((records, bad))
}

/// What an earlier, interrupted run left.
#[derive(Debug, Default)]
pub struct Prior {
    /// Records of the completed stages (their warm-up records included).
    pub records: Vec<RequestRecord>,
    /// Indices of the completed stages.
    pub done: BTreeSet<u32>,
    /// Records dropped: those of the stage that was cut short, and unreadable lines.
    pub dropped: usize,
    /// The next free record id.
    pub next_id: u64,
}

/// Work out which stages of `expected` (per stage index: the number of requests it
/// sends, `None` when bounded by time) an earlier run completed, keep their records, and
/// rewrite `path` to hold only those, so the records appended next follow them.
pub fn load_prior(path: &Path, expected: &[Option<u64>]) -> Result<Prior> {
    if !path.exists() {
        return Ok(Prior::default());
    }
    let (all, bad) = read_records(path)?;
    let next_id = all.iter().map(|r| r.id + 1).max().unwrap_or(0);
    let last_started = all.iter().filter(|r| !r.warmup).map(|r| r.stage).max();
    let mut done = BTreeSet::new();
    for (i, want) in expected.iter().enumerate() {
        let stage = i as u32;
        let measured: Vec<&RequestRecord> = all
            .iter()
            .filter(|r| r.stage == stage && !r.warmup)
            .collect();
        if measured.is_empty() {
            continue;
        }
        let cancelled = measured
            .iter()
            .any(|r| r.error_kind == Some(ErrorKind::Cancelled));
        // A later stage started only after this one ended; otherwise it must hold every
        // request it was meant to send, none of them cut by the interruption.
        let later_started = last_started.is_some_and(|l| l > stage);
        let full = want.is_some_and(|n| measured.len() as u64 == n);
        if !cancelled && (later_started || full) {
            done.insert(stage);
        }
    }
    let total = all.len();
    let records: Vec<RequestRecord> = all
        .into_iter()
        .filter(|r| done.contains(&r.stage))
        .collect();
    let dropped = bad + (total - records.len());
    rewrite(path, &records)?;
    Ok(Prior {
        records,
        done,
        dropped,
        next_id,
    })
}

/// Replace the file's contents atomically (write a sibling, then rename).
fn rewrite(path: &Path, records: &[RequestRecord]) -> Result<()> {
    let tmp = path.with_extension("jsonl.resume-tmp");
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        out.push(b'\n');
    }
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&out).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record as rec;

    #[test]
    fn complete_stages_are_kept_and_a_cut_stage_and_line_are_dropped() {
        let dir = std::env::temp_dir().join(format!("llmbench-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("requests.jsonl");
        let mut text = String::new();
        let records = [
            rec(0, 0, true, None),
            rec(1, 0, false, None),
            rec(2, 0, false, None),
            rec(3, 1, false, None),
            rec(4, 1, false, Some(ErrorKind::HttpStatus)),
            rec(5, 2, false, None),
            rec(6, 2, false, Some(ErrorKind::Cancelled)),
        ];
        for r in &records {
            text.push_str(&serde_json::to_string(r).expect("json"));
            text.push('\n');
        }
        // A crash cut the last line in half.
        text.push_str(&serde_json::to_string(&rec(7, 2, false, None)).expect("json")[..40]);
        std::fs::write(&path, text).expect("write");
        let prior = load_prior(&path, &[Some(2), Some(3), Some(4), Some(8)]).expect("prior");
        // Stage 0 is full; stage 1 is short but stage 2 started after it; stage 2 was cut.
        assert_eq!(prior.done.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            prior.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(prior.dropped, 3);
        assert_eq!(prior.next_id, 7);
        // The file now holds exactly the kept records.
        let (back, bad) = read_records(&path).expect("read");
        assert_eq!((back.len(), bad), (5, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
