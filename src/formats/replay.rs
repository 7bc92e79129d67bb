//! Fix-and-replay: one of our error files, corrected in a spreadsheet and dropped back into an
//! inbound folder, read as the partner's own file again.
//!
//! An error file is the original columns followed by ours (`line,column,code,message`, and on
//! an error file of a replay `original_file,original_line` after them), one row per (row,
//! error), every cell neutralised against formulas (`report::neutralise`). A spreadsheet's
//! re-save changes the framing, not the data: a BOM or none, CRLF, `;` or tab as the delimiter
//! in some locales, other quoting. [`sniff`] recognises such a file by its header whatever the
//! delimiter; [`Replay`] turns it back into a plain file of the account's own framing, so every
//! later step (header mapping, validation, reconciliation, the new error file) is the one every
//! file goes through:
//!
//! - our columns are dropped, formula-neutralised cells get their value back;
//! - the copies of a row (one per error) become one row; copies that now differ are refused,
//!   since which one the clerk meant cannot be told;
//! - rows with no data (a file-level error's row, a spreadsheet's empty line) are dropped;
//! - each row is written on the physical line it has in the dropped file (blank lines fill the
//!   gaps, and readers skip them), so line numbers in results are the clerk's own, and
//!   [`Origins`] maps each line to the original file and line it came from.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

/// Our columns after the original ones, in every error file.
pub const OUR_COLUMNS: [&str; 4] = ["line", "column", "code", "message"];
/// Added after [`OUR_COLUMNS`] in the result and error files of a replay.
pub const ORIGIN_COLUMNS: [&str; 2] = ["original_file", "original_line"];

/// Delimiters a spreadsheet may re-save with.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Most bytes looked at for the header.
pub const SNIFF_BYTES: usize = 16 * 1024;

/// How a dropped error file is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub delimiter: u8,
    /// Original columns (before ours), `extra_N` columns of ragged rows included.
    pub width: usize,
    /// Whether `original_file,original_line` follow our columns.
    pub has_origin: bool,
}

/// The shape of an error file of ours whose first bytes are `head`, or `None` for any other
/// file. `head` must hold the whole header line (up to [`SNIFF_BYTES`]).
pub fn sniff(head: &[u8]) -> Option<Shape> {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = &head[..end];
    DELIMITERS.into_iter().find_map(|d| {
        let mut r = csv::ReaderBuilder::new().has_headers(false).delimiter(d).flexible(true).from_reader(line);
        let rec = r.byte_records().next()?.ok()?;
        let cells: Vec<String> = rec.iter().map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase()).collect();
        let ends_with = |tail: &[&str]| cells.len() >= tail.len() && cells[cells.len() - tail.len()..] == *tail;
        let full: Vec<&str> = OUR_COLUMNS.iter().chain(ORIGIN_COLUMNS.iter()).copied().collect();
        let (ours, has_origin) = if ends_with(&full) {
            (full.len(), true)
        } else if ends_with(&OUR_COLUMNS) {
            (OUR_COLUMNS.len(), false)
        } else {
            return None;
        };
        // At least one original column: a file of only our columns is not a replay.
        (cells.len() > ours).then(|| Shape { delimiter: d, width: cells.len() - ours, has_origin })
    })
}

/// The original file the first data row in `head` names (`original_file`), when `head` holds
/// that whole row (`whole`: `head` is the whole file): what decides how the replay is read (a
/// `_delta.csv` original is a delta).
pub fn first_origin(head: &[u8], whole: bool, shape: &Shape) -> Option<String> {
    if !shape.has_origin {
        return None;
    }
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let mut r =
        csv::ReaderBuilder::new().has_headers(false).delimiter(shape.delimiter).flexible(true).from_reader(head);
    let mut rec = csv::ByteRecord::new();
    let mut read = 0;
    while r.read_byte_record(&mut rec).ok()? {
        read += 1;
        // A record that ends where `head` ends may be cut off.
        let complete = whole || (r.position().byte() as usize) < head.len();
        if read >= 2 && complete {
            let cell = rec.get(shape.width + OUR_COLUMNS.len())?;
            let name = String::from_utf8_lossy(cell).trim().to_string();
            if !name.is_empty() && rec.iter().take(shape.width).any(|c| !c.iter().all(u8::is_ascii_whitespace)) {
                return Some(name);
            }
        }
    }
    None
}

/// A cell as it was before [`crate::report::neutralise`] guarded it: `'=SUM(A1)` → `=SUM(A1)`.
/// Only the quote we add is removed (one before `=`, `+`, `-`, `@`, tab or CR).
pub fn restore(cell: &[u8]) -> &[u8] {
    match cell {
        [b'\'', b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r', ..] => &cell[1..],
        _ => cell,
    }
}

/// Where a replayed row came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The original file (a drop path), when known.
    pub file: Arc<str>,
    /// Its line there.
    pub line: u64,
}

/// Line in the dropped file → where the row came from; filled as [`Replay`] reads.
#[derive(Debug, Default)]
pub struct Origins {
    by_line: Mutex<HashMap<u64, Origin>>,
}

impl Origins {
    pub fn get(&self, line: u64) -> Option<Origin> {
        self.by_line.lock().ok()?.get(&line).cloned()
    }

    /// Every known line, in order.
    pub fn all(&self) -> Vec<(u64, Origin)> {
        let mut v: Vec<(u64, Origin)> =
            self.by_line.lock().map(|m| m.iter().map(|(k, o)| (*k, o.clone())).collect()).unwrap_or_default();
        v.sort_by_key(|(l, _)| *l);
        v
    }

    fn insert(&self, line: u64, o: Origin) {
        if let Ok(mut m) = self.by_line.lock() {
            m.insert(line, o);
        }
    }
}

/// A dropped error file read back as a plain file in `delimiter` (see the module docs).
pub struct Replay<R: Read> {
    records: csv::Reader<Breaks<R>>,
    shape: Shape,
    /// The account's delimiter, written.
    delimiter: u8,
    /// Bytes of `out` not yet handed to the reader.
    pending: Vec<u8>,
    at: usize,
    /// Physical line the next output byte is on.
    out_line: u64,
    default_file: Arc<str>,
    origins: Arc<Origins>,
    /// Original line → (line in this file, hash of its data cells), for copies of a row.
    seen: HashMap<(Arc<str>, u64), (u64, u64)>,
    /// Index of the trailing `extra_N` columns, dropped when empty.
    extra_from: usize,
    record: csv::ByteRecord,
    header_done: bool,
    finished: bool,
}

impl<R: Read> Replay<R> {
    /// `default_file` names the original of rows that do not say theirs (an error file of a
    /// first pass names its original in the ledger, not in its rows).
    pub fn new(inner: R, shape: Shape, delimiter: u8, default_file: &str, origins: Arc<Origins>) -> Self {
        let records = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(shape.delimiter)
            .flexible(true)
            .from_reader(Breaks { inner, offset: 0, seen: VecDeque::new(), lines: 1 });
        Replay {
            records,
            extra_from: shape.width,
            shape,
            delimiter,
            pending: Vec::new(),
            at: 0,
            out_line: 1,
            default_file: Arc::from(default_file),
            origins,
            seen: HashMap::new(),
            record: csv::ByteRecord::new(),
            header_done: false,
            finished: false,
        }
    }

    /// The next output bytes into `pending`; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            if self.finished {
                return Ok(false);
            }
            let more = self.records.read_byte_record(&mut self.record).map_err(csv_io)?;
            if !more {
                self.finished = true;
                return Ok(false);
            }
            let start = self.record.position().map_or(0, |p| p.byte());
            let line = self.records.get_mut().line_at(start);
            if !self.header_done {
                self.header_done = true;
                let header = self.record.clone();
                let w = self.shape.width;
                // `extra_N` columns name the surplus values of ragged rows: not the partner's.
                self.extra_from = (0..w).rev().take_while(|&i| header.get(i).is_some_and(is_extra)).last().unwrap_or(w);
                let cells: Vec<&[u8]> = (0..self.extra_from).map(|i| restore(header.get(i).unwrap_or(b""))).collect();
                self.emit(line, &cells)?;
                return Ok(true);
            }
            let mut cells: Vec<&[u8]> = (0..self.shape.width).map(|i| self.record.get(i).unwrap_or(b"")).collect();
            // Trailing extra cells stay only when the clerk left a value in them (the row is
            // still ragged and says so again).
            while cells.len() > self.extra_from && cells.last().is_some_and(|c| c.iter().all(u8::is_ascii_whitespace)) {
                cells.pop();
            }
            if cells.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
                continue;
            }
            let cells: Vec<Vec<u8>> = cells.into_iter().map(|c| restore(c).to_vec()).collect();
            let ours =
                |i: usize| self.record.get(self.shape.width + i).map(|c| String::from_utf8_lossy(c).trim().to_string());
            let own_line = ours(0).and_then(|l| l.parse::<u64>().ok());
            let (file, orig_line) = if self.shape.has_origin {
                let f = ours(4).filter(|f| !f.is_empty());
                let l = ours(5).and_then(|l| l.parse::<u64>().ok());
                (f.map(Arc::from).unwrap_or_else(|| self.default_file.clone()), l.or(own_line))
            } else {
                (self.default_file.clone(), own_line)
            };
            let digest = data_hash(&cells);
            if let Some(orig) = orig_line {
                match self.seen.get(&(file.clone(), orig)) {
                    Some((_, d)) if *d == digest => continue,
                    Some((first, _)) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            ReplayConflict { first: *first, again: line, original_line: orig },
                        ))
                    }
                    None => {
                        self.seen.insert((file.clone(), orig), (line, digest));
                    }
                }
                self.origins.insert(line, Origin { file, line: orig });
            }
            let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
            self.emit(line, &refs)?;
            return Ok(true);
        }
    }

    /// Writes `cells` as a record starting on physical line `line` (or the next free one).
    fn emit(&mut self, line: u64, cells: &[&[u8]]) -> io::Result<()> {
        self.pending.clear();
        self.at = 0;
        while self.out_line < line {
            self.pending.push(b'\n');
            self.out_line += 1;
        }
        let start = self.pending.len();
        let mut w = csv::WriterBuilder::new().delimiter(self.delimiter).flexible(true).from_writer(&mut self.pending);
        w.write_record(cells).map_err(csv_io)?;
        w.flush()?;
        drop(w);
        self.out_line += memchr::memchr_iter(b'\n', &self.pending[start..]).count() as u64;
        Ok(())
    }
}

impl<R: Read> Read for Replay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.pending.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The line breaks read so far, so a record's byte offset gives its physical line as the
/// clerk's file has it (csv's own count is one short after a CRLF).
struct Breaks<R> {
    inner: R,
    offset: u64,
    /// Offsets of CR and LF bytes not yet behind a record start, and which it was.
    seen: VecDeque<(u64, u8)>,
    /// Physical line of the bytes before the front of `seen`.
    lines: u64,
}

impl<R> Breaks<R> {
    /// Physical line of a record starting at byte `start` (the end of the previous record's
    /// terminator, a CRLF's LF or the whole CRLF, may come first).
    fn line_at(&mut self, start: u64) -> u64 {
        while self.seen.front().is_some_and(|(at, _)| *at < start) {
            if let Some((_, b'\n')) = self.seen.pop_front() {
                self.lines += 1;
            }
        }
        match (self.seen.front().copied(), self.seen.get(1).copied()) {
            (Some((at, b'\n')), _) if at == start => {
                self.seen.pop_front();
                self.lines += 1;
            }
            (Some((at, b'\r')), Some((next, b'\n'))) if at == start && next == start + 1 => {
                self.seen.pop_front();
                self.seen.pop_front();
                self.lines += 1;
            }
            _ => {}
        }
        self.lines
    }
}

impl<R: Read> Read for Breaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr2_iter(b'\r', b'\n', &buf[..n]) {
            self.seen.push_back((self.offset + i as u64, buf[i]));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Two copies of one original row that no longer agree.
#[derive(Debug, thiserror::Error)]
#[error(
    "line {original_line} of the original file appears on line {first} and again on line {again} with \
     different values; keep one copy of the row (an error file repeats a row once per error) and replay it"
)]
pub struct ReplayConflict {
    pub first: u64,
    pub again: u64,
    pub original_line: u64,
}

fn is_extra(cell: &[u8]) -> bool {
    let s = String::from_utf8_lossy(cell);
    let s = s.trim();
    s.strip_prefix("extra_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn data_hash(cells: &[Vec<u8>]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(7).build_hasher();
    for c in cells {
        c.hash(&mut h);
    }
    h.finish()
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

/// The original file named in the ledger-less way: the error file's own name with the
/// `.errors.csv` we add (and a `~N` a spreadsheet or we added) taken off.
///
/// ```
/// use stitch_bridge::formats::replay::original_name_of;
/// assert_eq!(original_name_of("stock.csv.errors.csv"), Some("stock.csv"));
/// assert_eq!(original_name_of("stock.csv.errors~2.csv"), Some("stock.csv"));
/// assert_eq!(original_name_of("fixed.csv"), None);
/// ```
pub fn original_name_of(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".csv")?;
    let stem = match stem.rsplit_once('~') {
        Some((s, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => s,
        _ => stem,
    };
    stem.strip_suffix(".errors").filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(input: &str, default: &str) -> (String, Vec<(u64, Origin)>) {
        let shape = sniff(input.as_bytes()).expect("an error file");
        let origins = Arc::new(Origins::default());
        let mut out = String::new();
        Replay::new(input.as_bytes(), shape, b',', default, origins.clone()).read_to_string(&mut out).unwrap();
        (out, origins.all())
    }

    #[test]
    fn sniffs_our_header_in_any_delimiter_and_nothing_else() {
        let s = sniff(b"\xef\xbb\xbfsku,quantity,line,column,code,message\n2,3\n").unwrap();
        assert_eq!(s, Shape { delimiter: b',', width: 2, has_origin: false });
        let s = sniff(b"sku;quantity;line;column;code;message;original_file;original_line\r\n").unwrap();
        assert_eq!(s, Shape { delimiter: b';', width: 2, has_origin: true });
        assert_eq!(sniff(b"\"sku\"\t\"qty\"\t\"line\"\t\"column\"\t\"code\"\t\"message\"").unwrap().delimiter, b'\t');
        assert_eq!(sniff(b"sku,quantity\nA,1\n"), None);
        assert_eq!(sniff(b"line,column,code,message\n"), None);
        assert_eq!(sniff(b"ISA*00*"), None);
    }

    #[test]
    fn restores_cells_dedupes_copies_and_keeps_lines() {
        let input = "\u{feff}sku;quantity;line;column;code;message\r\n\
                     '-A;5;2;quantity;bad;x\r\n\
                     '-A;5;2;sku;bad;y\r\n\
                     ;;;;file_error;whole file\r\n\
                     B;'=1+1;7;quantity;bad;z\r\n";
        let (out, origins) = replay(input, "inbound/inventory/stock.csv");
        assert_eq!(out, "sku,quantity\n-A,5\n\n\nB,=1+1\n");
        let lines: Vec<(u64, u64)> = origins.iter().map(|(l, o)| (*l, o.line)).collect();
        assert_eq!(lines, [(2, 2), (5, 7)]);
        assert_eq!(&*origins[0].1.file, "inbound/inventory/stock.csv");
    }

    #[test]
    fn an_error_file_of_a_replay_names_the_first_original() {
        let input = "sku,quantity,line,column,code,message,original_file,original_line\n\
                     A,x,2,quantity,bad,m,inbound/inventory/monday.csv,41\n";
        let (out, origins) = replay(input, "inbound/inventory/stock.csv.errors.csv");
        assert_eq!(out, "sku,quantity\nA,x\n");
        assert_eq!(origins, [(2, Origin { file: Arc::from("inbound/inventory/monday.csv"), line: 41 })]);
    }

    #[test]
    fn the_first_row_names_the_original() {
        let input = b"sku,quantity,line,column,code,message,original_file,original_line\n,,,,whole,m,,\nA,x,3,q,c,m,inbound/inventory/m_delta.csv,3\nB";
        let shape = sniff(input).unwrap();
        assert_eq!(first_origin(input, false, &shape).as_deref(), Some("inbound/inventory/m_delta.csv"));
        let cut = b"sku,quantity,line,column,code,message,original_file,original_line\nA,x,3,q,c,m,inbound/inv";
        assert_eq!(first_origin(cut, false, &shape), None);
        assert_eq!(first_origin(&cut[..cut.len() - 4], true, &shape).as_deref(), Some("inbound"));
    }

    #[test]
    fn differing_copies_of_a_row_are_refused() {
        let input = "sku,quantity,line,column,code,message\nA,1,2,a,b,c\nA,2,2,a,b,c\n";
        let shape = sniff(input.as_bytes()).unwrap();
        let mut out = String::new();
        let err = Replay::new(input.as_bytes(), shape, b',', "f", Arc::default()).read_to_string(&mut out).unwrap_err();
        assert!(err.to_string().contains("line 2 of the original file appears on line 2 and again on line 3"), "{err}");
    }

    #[test]
    fn extra_columns_are_dropped_unless_filled() {
        let input = "sku,quantity,extra_1,line,column,code,message\nA,1,,2,,ragged,m\nB,2,oops,3,,ragged,m\n";
        let (out, _) = replay(input, "f");
        assert_eq!(out, "sku,quantity\nA,1\nB,2,oops\n");
    }

    #[test]
    fn quoted_cells_with_newlines_keep_the_line_count() {
        let input = "sku,name,line,column,code,message\r\nA,\"two\r\nlines\",2,q,c,m\r\nB,x,4,q,c,m\r\n";
        let (out, origins) = replay(input, "f");
        assert_eq!(out, "sku,name\nA,\"two\r\nlines\"\nB,x\n");
        assert_eq!(origins.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 4]);
    }
}
