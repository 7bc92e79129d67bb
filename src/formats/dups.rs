//! Repeated keys found in bounded memory, for files too large to keep every key in a set.
//!
//! Each key's 64-bit fingerprint and line go to a buffer of at most `in_memory` entries
//! (16 bytes each). Fingerprints only nominate candidates: the caller compares the keys
//! themselves on a second pass (`resolve_duplicates`), so a rare shared fingerprint costs a
//! comparison, never a wrong rejection. A full buffer is sorted and written to a temporary file
//! as one run; at the end the runs are merged, and within each fingerprint every line after the
//! first is a repeat.
//! Sorting keeps equal fingerprints in line order, so the result does not depend on where the
//! runs were cut: it is the same as keeping all entries in memory.
//!
//! The only I/O in `formats`, and only into an anonymous temporary file the process owns.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

/// Entries kept in memory before spilling: 16 MiB of entries plus as much for sorting them.
pub const DEFAULT_IN_MEMORY: usize = 1 << 20;

/// A repeated key, found after the last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LateDuplicate {
    /// Line of the repeat (the row that is rejected).
    pub line: u64,
    /// Line where the same key first appeared.
    pub first_line: u64,
    /// The row had no other problem (it was counted as accepted when it streamed by).
    pub otherwise_valid: bool,
}

/// (fingerprint, line << 1 | otherwise-valid); sorts by fingerprint, then line.
type Entry = [u64; 2];
const ENTRY_BYTES: u64 = 16;

pub struct LateDuplicates {
    buf: Vec<Entry>,
    scratch: Vec<Entry>,
    in_memory: usize,
    /// Spilled runs: their entry counts, in file order.
    runs: Vec<u64>,
    file: Option<BufWriter<File>>,
    failed: Option<io::Error>,
}

impl LateDuplicates {
    pub fn new(in_memory: usize) -> Self {
        LateDuplicates {
            buf: Vec::new(),
            scratch: Vec::new(),
            in_memory: in_memory.max(1),
            runs: Vec::new(),
            file: None,
            failed: None,
        }
    }

    pub fn push(&mut self, fp: u128, line: u64, otherwise_valid: bool) -> io::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        if self.buf.len() >= self.in_memory {
            self.spill()?;
        }
        let line = (line.min(u64::MAX >> 1) << 1) | u64::from(otherwise_valid);
        self.buf.push([(fp >> 64) as u64 ^ fp as u64, line]);
        Ok(())
    }

    /// Remembers the first I/O failure; `finish` reports it.
    pub fn fail(&mut self, e: io::Error) {
        self.failed.get_or_insert(e);
        self.buf = Vec::new();
        self.scratch = Vec::new();
    }

    fn spill(&mut self) -> io::Result<()> {
        sort_entries(&mut self.buf, &mut self.scratch);
        if self.file.is_none() {
            self.file = Some(BufWriter::with_capacity(1 << 16, tempfile::tempfile()?));
        }
        let w = self.file.as_mut().expect("just set");
        for e in &self.buf {
            for v in e {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        self.runs.push(self.buf.len() as u64);
        self.buf.clear();
        Ok(())
    }

    /// All repeats, ordered by line.
    pub fn finish(mut self) -> io::Result<Vec<LateDuplicate>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        sort_entries(&mut self.buf, &mut self.scratch);
        self.scratch = Vec::new();
        let mut out = Vec::new();
        let mut group: Option<(u64, u64)> = None; // (fingerprint, first line)
        let mut visit = |e: Entry| {
            let line = e[1] >> 1;
            match group {
                Some((fp, first)) if fp == e[0] => {
                    out.push(LateDuplicate { line, first_line: first, otherwise_valid: e[1] & 1 == 1 })
                }
                _ => group = Some((e[0], line)),
            }
        };
        match self.file.take() {
            None => self.buf.iter().for_each(|e| visit(*e)),
            Some(w) => {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                let mut sources: Vec<RunReader> = Vec::with_capacity(self.runs.len());
                let mut offset = 0u64;
                for &n in &self.runs {
                    sources.push(RunReader::new(&file, offset, n));
                    offset += n * ENTRY_BYTES;
                }
                let mut memory = self.buf.iter().copied();
                let mut heap = BinaryHeap::new();
                for (i, s) in sources.iter_mut().enumerate() {
                    if let Some(e) = s.next()? {
                        heap.push(Reverse((e, i)));
                    }
                }
                let mem = sources.len();
                if let Some(e) = memory.next() {
                    heap.push(Reverse((e, mem)));
                }
                while let Some(Reverse((e, i))) = heap.pop() {
                    visit(e);
                    let next = if i == mem { memory.next() } else { sources[i].next()? };
                    if let Some(n) = next {
                        heap.push(Reverse((n, i)));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Reads one sorted run back from the shared temporary file (seek, then read, per refill).
struct RunReader<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> RunReader<'a> {
    fn new(file: &'a File, offset: u64, entries: u64) -> Self {
        RunReader { file, pos: offset, left: entries, buf: Vec::new(), at: 0 }
    }

    fn next(&mut self) -> io::Result<Option<Entry>> {
        if self.at + ENTRY_BYTES as usize > self.buf.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min(4096);
            self.buf.resize((n * ENTRY_BYTES) as usize, 0);
            let mut f = self.file;
            f.seek(SeekFrom::Start(self.pos))?;
            f.read_exact(&mut self.buf)?;
            self.pos += n * ENTRY_BYTES;
            self.left -= n;
            self.at = 0;
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.buf[self.at + i * 8..self.at + i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let e = [word(0), word(1)];
        self.at += ENTRY_BYTES as usize;
        Ok(Some(e))
    }
}

/// Sorts entries by (fingerprint, line). Fingerprints are uniform, so one pass distributes them
/// by their top bits into small buckets (out of place, into `scratch`), each then sorted in cache;
/// the buckets are shared between two threads (the last sort of a check comes when the reading
/// thread is done and its core idle).
fn sort_entries(v: &mut Vec<Entry>, scratch: &mut Vec<Entry>) {
    const BITS: u32 = 12;
    if v.len() < 1 << 13 {
        v.sort_unstable();
        return;
    }
    let bucket = |e: &Entry| (e[0] >> (64 - BITS)) as usize;
    let mut starts = vec![0usize; (1 << BITS) + 1];
    for e in v.iter() {
        starts[bucket(e) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    scratch.clear();
    scratch.resize(v.len(), [0; 2]);
    let mut next = starts.clone();
    for e in v.iter() {
        let b = bucket(e);
        scratch[next[b]] = *e;
        next[b] += 1;
    }
    fn sort_buckets(part: &mut [Entry], bounds: &[usize]) {
        let base = bounds[0];
        for w in bounds.windows(2) {
            part[w[0] - base..w[1] - base].sort_unstable();
        }
    }
    let mid = 1 << (BITS - 1);
    let half = starts[mid];
    let (low, high) = scratch.split_at_mut(half);
    let shared = std::thread::scope(|s| {
        let spawned =
            std::thread::Builder::new().name("sort".into()).spawn_scoped(s, || sort_buckets(high, &starts[mid..]));
        sort_buckets(low, &starts[..=mid]);
        spawned.is_ok()
    });
    if !shared {
        // No second thread to be had: the upper half is sorted here.
        sort_buckets(&mut scratch[half..], &starts[mid..]);
    }
    std::mem::swap(v, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(u128, u64)], in_memory: usize) -> Vec<LateDuplicate> {
        let mut d = LateDuplicates::new(in_memory);
        for &(fp, line) in entries {
            d.push(fp, line, line % 3 != 0).unwrap();
        }
        d.finish().unwrap()
    }

    #[test]
    fn spilled_runs_give_the_same_repeats_as_memory() {
        // 40k keys, every 7th repeated later; fingerprints spread like real ones.
        let mut entries = Vec::new();
        let mut line = 2;
        for i in 0..40_000u64 {
            let k = u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i);
            entries.push((k, line));
            line += 1;
            if i % 7 == 0 {
                entries.push((k, line + 100_000));
            }
        }
        let all = run(&entries, usize::MAX);
        assert_eq!(all.len(), 40_000 / 7 + 1);
        assert!(all.windows(2).all(|w| w[0].line < w[1].line));
        for small in [1, 2, 3, 1000, 8191, 8192, 20_000] {
            assert_eq!(run(&entries, small), all, "in_memory = {small}");
        }
        let d = all[0];
        assert_eq!((d.first_line, d.line), (2, 100_003));
    }

    #[test]
    fn three_of_a_kind_name_the_first() {
        let e = [(5u128, 2u64), (9, 3), (5, 4), (5, 9)];
        let r = run(&e, 1);
        assert_eq!(r.iter().map(|d| (d.line, d.first_line)).collect::<Vec<_>>(), [(4, 2), (9, 2)]);
        assert_eq!(r, run(&e, 100));
    }
}
