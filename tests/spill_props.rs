//! Property tests of the sink spill's on-disk format (`flowsentry::sink::spill`), the one
//! parser of data flowsentry itself wrote: records come back in order and byte for byte
//! across reopen, whatever their sizes, the read/commit interleaving and the segment size;
//! a segment cut at any byte (a crash mid-write) recovers exactly the records before the
//! cut; and arbitrary bytes in segment or cursor files never panic `open` or `read` and
//! never yield more records than the files could hold; a flipped byte inside a record's
//! payload loses that record only, reported, never sent.

use flowsentry::sink::spill::Spill;
use flowsentry::sink::{EventKind, Record};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn record(seq: u64, key_len: usize, line_len: usize) -> Record {
    let kind = EventKind::from_code((seq % 6) as u8);
    Record {
        seq,
        kind,
        key: format!("s/{}", "k".repeat(key_len)).into(),
        line: format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(line_len))
            .into_bytes()
            .into(),
    }
}

fn same(a: &Record, b: &Record) -> bool {
    a.seq == b.seq && a.kind == b.kind && a.key == b.key && a.line == b.line
}

/// Reads everything left, `batch` at a time, committing after each batch.
fn drain(s: &mut Spill, batch: usize) -> Vec<Arc<Record>> {
    let mut all = Vec::new();
    loop {
        let mut b = Vec::new();
        s.read(batch.max(1), &mut b).expect("read");
        if b.is_empty() {
            return all;
        }
        if let Some((_, p)) = b.last() {
            s.commit(*p);
        }
        all.extend(b.into_iter().map(|(r, _)| r));
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// The records of `sizes` (key length, line length), seq 1, 2, ...
fn records(sizes: &[(usize, usize)]) -> Vec<Record> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(k, l))| record(i as u64 + 1, k, l))
        .collect()
}

/// Writes `recs` into one segment of a fresh spill in `dir` (a large cap) and closes it.
fn one_segment(dir: &Path, recs: &[Record]) -> PathBuf {
    {
        let (mut s, _) = Spill::open(dir, 1 << 30).expect("open");
        for r in recs {
            s.append(r).expect("append");
        }
        s.sync().expect("sync");
    }
    let segs = segments(dir);
    assert_eq!(segs.len(), 1, "one segment");
    segs[0].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Appends, partial reads with commits, close, reopen: the undelivered records come
    /// back once each, in order, byte for byte.
    #[test]
    fn round_trip_across_reopen(
        sizes in proptest::collection::vec((0usize..40, 0usize..3000), 1..120),
        delivered_frac in 0.0f64..1.0,
        batch in 1usize..17,
        cap_kib in 16u64..512,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = records(&sizes);
        let mut stored = Vec::new();
        {
            let (mut s, _) = Spill::open(dir.path(), cap_kib << 10).expect("open");
            for r in &recs {
                if s.append(r).is_ok() {
                    stored.push(r.seq);
                }
            }
            prop_assert!(s.take_loss().is_none());
            let n_deliver = (stored.len() as f64 * delivered_frac) as usize;
            let mut done = 0;
            while done < n_deliver {
                let mut b = Vec::new();
                s.read(batch.min(n_deliver - done), &mut b).expect("read");
                prop_assert!(!b.is_empty());
                for (i, (r, _)) in b.iter().enumerate() {
                    prop_assert_eq!(r.seq, stored[done + i]);
                }
                done += b.len();
                if let Some((_, p)) = b.last() {
                    s.commit(*p);
                }
            }
            stored.drain(..done);
            s.sync().expect("sync");
        }
        let (mut s, rec) = Spill::open(dir.path(), cap_kib << 10).expect("reopen");
        prop_assert_eq!(rec.records, stored.len() as u64);
        prop_assert_eq!(rec.damaged_bytes, 0);
        let got = drain(&mut s, batch);
        prop_assert_eq!(got.len(), stored.len());
        for (g, want) in got.iter().zip(&stored) {
            let orig = &recs[(*want - 1) as usize];
            prop_assert!(same(g, orig), "record seq {} differs", want);
        }
        prop_assert_eq!(s.pending(), 0);
        prop_assert!(segments(dir.path()).is_empty());
    }

    /// A segment cut at any byte keeps exactly the records before the cut.
    #[test]
    fn a_cut_at_any_byte_keeps_the_records_before_it(
        sizes in proptest::collection::vec((0usize..20, 0usize..500), 1..40),
        cut_frac in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = records(&sizes);
        let seg = one_segment(dir.path(), &recs);
        let len = std::fs::metadata(&seg).expect("meta").len();
        let cut = (len as f64 * cut_frac) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open segment")
            .set_len(cut)
            .expect("truncate");
        // Record i ends at 8 + sum of the encoded sizes up to i.
        let mut end = 8u64;
        let mut whole = 0usize;
        for r in &recs {
            end += 4 + 4 + 8 + 1 + 2 + r.key.len() as u64 + r.line.len() as u64;
            if end <= cut {
                whole += 1;
            }
        }
        let (mut s, rec) = Spill::open(dir.path(), 1 << 30).expect("reopen");
        prop_assert_eq!(rec.records, whole as u64);
        let got = drain(&mut s, 7);
        prop_assert_eq!(got.len(), whole);
        for (g, r) in got.iter().zip(&recs) {
            prop_assert!(same(g, r));
        }
    }

    /// Arbitrary segment and cursor files: open and read never panic, and never return
    /// more records than the bytes could encode (19 bytes of fixed header each).
    #[test]
    fn garbage_files_never_panic(
        files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..4),
        magic in any::<bool>(),
        cursor in proptest::option::of((any::<u64>(), 0u64..700)),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut total = 0u64;
        for (i, body) in files.iter().enumerate() {
            let mut data = Vec::new();
            if magic {
                data.extend_from_slice(b"FSSPILL1");
            }
            data.extend_from_slice(body);
            total += data.len() as u64;
            std::fs::write(dir.path().join(format!("{:020}.seg", (1u64 << 40) + i as u64)), &data)
                .expect("write segment");
        }
        if let Some((id, off)) = cursor {
            std::fs::write(dir.path().join("cursor"), format!("{id} {off}\n")).expect("cursor");
        }
        if let Ok((mut s, rec)) = Spill::open(dir.path(), 1 << 30) {
            prop_assert!(rec.records * 19 <= total);
            let mut got = 0u64;
            loop {
                let mut b = Vec::new();
                if s.read(5, &mut b).is_err() || b.is_empty() {
                    break;
                }
                got += b.len() as u64;
                if let Some((_, p)) = b.last() {
                    s.commit(*p);
                }
            }
            prop_assert!(got <= rec.records);
        }
    }

    /// A byte flipped inside one record's payload: that record is skipped and reported,
    /// every other record comes back intact and in order.
    #[test]
    fn a_flipped_byte_loses_only_its_record(
        sizes in proptest::collection::vec((0usize..20, 0usize..300), 2..40),
        victim_frac in 0.0f64..1.0,
        at_frac in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = records(&sizes);
        let seg = one_segment(dir.path(), &recs);
        let mut data = std::fs::read(&seg).expect("read segment");
        let victim = ((recs.len() as f64 * victim_frac) as usize).min(recs.len() - 1);
        let mut off = 8usize;
        for r in &recs[..victim] {
            off += 4 + 4 + 8 + 1 + 2 + r.key.len() + r.line.len();
        }
        let v = &recs[victim];
        let payload = 8 + 1 + 2 + v.key.len() + v.line.len();
        let at = off + 8 + ((payload as f64 * at_frac) as usize).min(payload - 1);
        data[at] ^= 0x5a;
        std::fs::write(&seg, &data).expect("write segment");
        let (mut s, rec) = Spill::open(dir.path(), 1 << 30).expect("reopen");
        prop_assert_eq!(rec.corrupt_records, 1);
        let got = drain(&mut s, 5);
        let want: Vec<&Record> = recs.iter().filter(|r| r.seq != v.seq).collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            prop_assert!(same(g, w));
        }
        let loss = s.take_loss();
        prop_assert_eq!(loss.map(|l| l.0), Some(1));
        prop_assert_eq!(s.pending(), 0);
    }
}
