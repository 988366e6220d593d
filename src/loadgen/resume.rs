//! Resuming an interrupted sweep from its record file (`requests_<target>.arrows`, or the
//! `.jsonl` of earlier versions): stages whose records are complete are kept and
//! summarized again; the stage that was cut short is dropped and run again from its
//! start, with the ones never started. Records are read one batch at a time, so resuming
//! a long run takes no more memory than running it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::metrics::StageStats;
use crate::record::{ErrorKind, RequestRecord};
use crate::record_file::{for_each_record, read_jsonl, RecordSink};

/// What an earlier, interrupted run left.
#[derive(Default)]
pub struct Prior {
    /// Indices of the completed stages.
    pub done: BTreeSet<u32>,
    /// The completed stages' summaries, rebuilt from their records.
    pub stats: BTreeMap<u32, StageStats>,
    /// Records kept (those of the completed stages, warm-up included).
    pub kept_records: u64,
    /// Records dropped: those of the stage that was cut short.
    pub dropped: u64,
    /// What was unreadable (a cut tail, bad lines), one line each.
    pub notes: Vec<String>,
    /// The next free record id.
    pub next_id: u64,
    /// The record file, rewritten to hold only the kept records and open for the rest.
    pub sink: Option<RecordSink>,
}

/// Per stage: measured records seen and whether one was cancelled.
#[derive(Default)]
struct Scan {
    measured: BTreeMap<u32, (u64, bool)>,
    last_started: Option<u32>,
    next_id: u64,
    total: u64,
}

impl Scan {
    fn add(&mut self, r: &RequestRecord) {
        self.total += 1;
        self.next_id = self.next_id.max(r.id + 1);
        if r.warmup {
            return;
        }
        self.last_started = Some(self.last_started.map_or(r.stage, |l| l.max(r.stage)));
        let e = self.measured.entry(r.stage).or_default();
        e.0 += 1;
        e.1 |= r.error_kind == Some(ErrorKind::Cancelled);
    }

    /// The stages of `expected` (per stage index: the number of requests it sends,
    /// `None` when bounded by time) that ended before the interruption.
    fn done(&self, expected: &[Option<u64>]) -> BTreeSet<u32> {
        let mut done = BTreeSet::new();
        for (i, want) in expected.iter().enumerate() {
            let stage = i as u32;
            let Some(&(n, cancelled)) = self.measured.get(&stage) else {
                continue;
            };
            // A later stage started only after this one ended; otherwise it must hold
            // every request it was meant to send, none of them cut by the interruption.
            let later_started = self.last_started.is_some_and(|l| l > stage);
            let full = want.is_some_and(|w| n == w);
            if !cancelled && (later_started || full) {
                done.insert(stage);
            }
        }
        done
    }
}

/// The record file of earlier versions beside `path` (`requests_<target>.jsonl`).
fn legacy_path(path: &Path) -> PathBuf {
    path.with_extension("jsonl")
}

/// Read what an earlier run left at `path` (or in its JSON-lines predecessor), work out
/// which stages of `expected` it completed, rebuild their summaries with `new_stats`, and
/// rewrite `path` to hold only their records, open for the records that follow.
pub fn load_prior(
    path: &Path,
    expected: &[Option<u64>],
    new_stats: impl Fn() -> StageStats,
) -> Result<Prior> {
    let legacy = legacy_path(path);
    let from_legacy = !path.exists() && legacy.exists();
    if !path.exists() && !from_legacy {
        return Ok(Prior::default());
    }
    let mut prior = Prior::default();
    let mut scan = Scan::default();
    // Two passes over the file: which stages are whole, then copy theirs.
    let legacy_records = if from_legacy {
        let (records, bad) = read_jsonl(&legacy)?;
        if bad > 0 {
            prior.notes.push(format!(
                "{}: skipped {bad} unreadable line(s)",
                legacy.display()
            ));
        }
        records.iter().for_each(|r| scan.add(r));
        Some(records)
    } else {
        let read = for_each_record(path, |r| scan.add(&r))?;
        prior.notes.extend(read.note);
        None
    };
    prior.done = scan.done(expected);
    prior.next_id = scan.next_id;
    let tmp = path.with_extension("arrows.resume-tmp");
    let sink = RecordSink::create(&tmp)?;
    let mut copy = |r: RequestRecord| {
        if prior.done.contains(&r.stage) {
            prior
                .stats
                .entry(r.stage)
                .or_insert_with(&new_stats)
                .add(&r);
            prior.kept_records += 1;
            sink.write(r);
        }
    };
    match legacy_records {
        Some(records) => records.into_iter().for_each(&mut copy),
        None => {
            for_each_record(path, &mut copy)?;
        }
    }
    prior.dropped = scan.total - prior.kept_records;
    sink.flush();
    let mut sink = sink;
    sink.rename_to(path)?;
    prior.sink = Some(sink);
    Ok(prior)
}

/// Every stage's summary from the records in `path` (warm-up records are not counted):
/// how a distributed run's driver summarizes the records its workers sent, on the common
/// time base it wrote them in. Returns the note of a cut tail too.
pub fn stage_summaries(
    path: &Path,
    new_stats: impl Fn() -> StageStats,
) -> Result<(BTreeMap<u32, StageStats>, Option<String>)> {
    let mut stats: BTreeMap<u32, StageStats> = BTreeMap::new();
    let read = for_each_record(path, |r| {
        if !r.warmup {
            stats.entry(r.stage).or_insert_with(&new_stats).add(&r);
        }
    })?;
    Ok((stats, read.note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Pricing;
    use crate::record_file::read_records;
    use crate::test_support::record as rec;

    fn stats() -> StageStats {
        StageStats::new(Pricing::default(), None)
    }

    fn prior_records() -> Vec<RequestRecord> {
        vec![
            rec(0, 0, true, None),
            rec(1, 0, false, None),
            rec(2, 0, false, None),
            rec(3, 1, false, None),
            rec(4, 1, false, Some(ErrorKind::HttpStatus)),
            rec(5, 2, false, None),
            rec(6, 2, false, Some(ErrorKind::Cancelled)),
        ]
    }

    fn check(prior: &Prior, path: &Path) {
        // Stage 0 is full; stage 1 is short but stage 2 started after it; stage 2 was cut.
        assert_eq!(prior.done.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(prior.kept_records, 5);
        assert_eq!(prior.next_id, 7);
        assert_eq!(prior.stats[&0].len(), 2, "warm-up records are not counted");
        assert_eq!(prior.stats[&1].len(), 2);
        // The file now holds exactly the kept records (once the sink has written them).
        let (back, read) = read_records(path).expect("read");
        assert_eq!(
            back.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(read.dropped_bytes, 0);
    }

    #[test]
    fn stage_summaries_count_every_measured_record_of_each_stage() {
        let dir = crate::test_support::temp_dir("summaries");
        let path = dir.join("requests.arrows");
        let mut sink = RecordSink::create(&path).expect("sink");
        prior_records().into_iter().for_each(|r| sink.write(r));
        sink.close();
        let (stats, note) = stage_summaries(&path, stats).expect("summaries");
        assert!(note.is_none());
        let n: Vec<(u32, u64)> = stats.iter().map(|(k, v)| (*k, v.len())).collect();
        assert_eq!(
            n,
            vec![(0, 2), (1, 2), (2, 2)],
            "warm-up records are not counted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn complete_stages_are_kept_and_a_cut_stage_is_dropped() {
        let dir = crate::test_support::temp_dir("resume");
        let path = dir.join("requests.arrows");
        let mut sink = RecordSink::create(&path).expect("sink");
        prior_records().into_iter().for_each(|r| sink.write(r));
        sink.close();
        let prior = load_prior(&path, &[Some(2), Some(3), Some(4), Some(8)], stats).expect("prior");
        assert_eq!(prior.dropped, 2);
        check(&prior, &path);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_json_lines_file_of_earlier_versions_is_read_and_a_cut_line_dropped() {
        let dir = crate::test_support::temp_dir("resume-jsonl");
        let path = dir.join("requests.arrows");
        let mut text = String::new();
        for r in prior_records() {
            text.push_str(&serde_json::to_string(&r).expect("json"));
            text.push('\n');
        }
        // A crash cut the last line in half.
        text.push_str(&serde_json::to_string(&rec(7, 2, false, None)).expect("json")[..40]);
        std::fs::write(legacy_path(&path), text).expect("write");
        let prior = load_prior(&path, &[Some(2), Some(3), Some(4), Some(8)], stats).expect("prior");
        assert_eq!(prior.dropped, 2);
        assert_eq!(prior.notes.len(), 1, "{:?}", prior.notes);
        check(&prior, &path);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
