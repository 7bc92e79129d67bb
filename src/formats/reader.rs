//! Streaming row reader: CSV framing, encoding checks, limits and physical line numbers.
//!
//! Reads one record at a time so memory stays flat whatever the file size. Framing is csv-core's,
//! driven here rather than through `csv::Reader`, whose records grow without limit: a record
//! whose value passes what `max_field_len` allows is not held, only skipped to its end and
//! reported (`field_too_long`, with line, column and a short excerpt).

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error::{ErrorCode, FileRejection, RecordError};
use super::fields::shown;
use super::header::HeaderMap;
use super::{Fields, Kind, ParseOptions, RawRow};

/// How the file ends its lines, decided by the first line break in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endings {
    /// No line break seen yet.
    Unknown,
    /// LF or CRLF: passed through (a CR before the LF is stripped from the last field).
    Lf,
    /// Old Mac files that end lines with a lone CR: every CR is read as LF.
    Cr,
}

/// Counts bytes and fails the read once `limit` is passed, so an oversized file is refused
/// while streaming rather than after it was read whole. Also supplies a final `\n` when the file
/// lacks one, so every record ends with a newline (line numbering relies on it), and turns the
/// lone-CR line breaks of old Mac files into LF.
pub(crate) struct LimitedReader<R> {
    inner: R,
    read: u64,
    limit: u64,
    tripped: Arc<AtomicBool>,
    last: u8,
    finished: bool,
    endings: Endings,
    /// A CR held back because it ended a chunk before the line endings were known.
    carry: bool,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        LimitedReader {
            inner,
            read: 0,
            limit,
            tripped,
            last: 0,
            finished: false,
            endings: Endings::Unknown,
            carry: false,
        }
    }

    /// Decides the line endings from `buf` (the bytes after any held-back CR) and translates CRs
    /// in CR mode. Returns how many bytes of `buf` may be handed out now.
    fn endings(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len();
        if self.endings == Endings::Unknown {
            match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => return n,
                Some(i) if buf[i] == b'\n' => self.endings = Endings::Lf,
                Some(i) if i + 1 < n => self.endings = if buf[i + 1] == b'\n' { Endings::Lf } else { Endings::Cr },
                Some(_) => {
                    // A CR ends the chunk: hold it back until the next byte tells.
                    self.carry = true;
                    return n - 1;
                }
            }
        }
        if self.endings == Endings::Cr {
            for b in buf.iter_mut() {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
        }
        n
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        let start = usize::from(self.carry);
        if start >= buf.len() {
            // A one-byte buffer while a CR is held back: hand the CR out alone.
            self.carry = false;
            self.endings = Endings::Lf;
            buf[0] = b'\r';
            self.last = b'\r';
            return Ok(1);
        }
        let n = self.inner.read(&mut buf[start..])?;
        if n == 0 {
            self.finished = true;
            if self.carry {
                // The file's only line break is a final lone CR.
                self.carry = false;
                buf[0] = b'\n';
                self.last = b'\n';
                return Ok(1);
            }
            if self.read > 0 && self.last != b'\n' {
                buf[0] = b'\n';
                return Ok(1);
            }
            return Ok(0);
        }
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.limit {
            self.tripped.store(true, Ordering::Relaxed);
            return Err(io::Error::other("file exceeds the size limit"));
        }
        let mut len = start + n;
        if self.carry {
            self.carry = false;
            buf[0] = b'\r';
            self.endings = if buf[1] == b'\n' { Endings::Lf } else { Endings::Cr };
            if self.endings == Endings::Cr {
                buf[0] = b'\n';
            }
            len = 1 + self.endings(&mut buf[1..len]);
        } else {
            len = self.endings(&mut buf[..len]);
        }
        if len == 0 {
            // Only a held-back CR so far: read on (never report 0 bytes before the end).
            return self.read(buf);
        }
        self.last = buf[len - 1];
        Ok(len)
    }
}

/// One framed record: its bytes and where each value ends (like `csv::ByteRecord`), filled by
/// [`Framer`] within its bounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    /// Output buffer for csv-core: only the first `ends[len - 1]` bytes are the record.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
    /// Set when the record passed a bound: the values before the offending one are kept.
    overflow: Option<Overflow>,
}

/// Where a record passed the framer's bounds, and by how much.
#[derive(Debug, Clone, Default)]
struct Overflow {
    /// Index of the value that was too long (or of the first value past `max_fields`).
    field: usize,
    /// More values than any header could explain (rather than one value too long).
    too_many_fields: bool,
    /// The row as a whole passed its bound, not this value alone.
    whole_row: bool,
    /// Start of the offending value in the record's output (csv-core counts on across calls).
    start: usize,
    /// Its length in bytes once known (it ended), else the bytes seen of it so far.
    field_bytes: u64,
    field_done: bool,
    /// The value's first bytes, for the message.
    excerpt: Vec<u8>,
    /// Newlines inside the skipped part (line numbering and the unterminated-quote check).
    newlines: u64,
}

impl Record {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len.checked_sub(1).map_or(0, |i| self.ends[i])]
    }

    pub fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.len {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(start..self.ends[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len).filter_map(move |i| self.range(i).map(|r| &self.bytes[r]))
    }
}

/// One data row, decoded, with its row-level problems (encoding, raggedness, length).
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub raw: RawRow,
    /// Problems that make the row's values untrustworthy; field parsing is skipped when non-empty.
    pub errors: Vec<RecordError>,
}

impl Row {
    pub fn line(&self) -> u64 {
        self.raw.line
    }
}

/// CSV framing: bytes to records, each with the physical line it starts on. Runs on the
/// caller's thread or, for `RowReader::open_piped`, on a thread of its own.
struct Framer<R> {
    input: BufReader<LimitedReader<R>>,
    /// Boxed: its DFA tables are large, and framers move between threads.
    core: Box<csv_core::Reader>,
    tripped: Arc<AtomicBool>,
    max_file_bytes: u64,
    /// A value longer than this in bytes has more than `max_field_len` characters.
    max_field_bytes: usize,
    /// No record keeps more bytes or values than this; the rest of it is skipped.
    max_record_bytes: usize,
    max_fields: usize,
    /// Where skipped bytes and value ends go (never grown).
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
    eof: bool,
}

/// Newlines inside the values of `record`, skipped ones included.
fn embedded_newlines(record: &Record) -> u64 {
    let s = record.as_slice();
    let skipped = record.overflow.as_ref().map_or(0, |o| o.newlines);
    // Most records have none: one vectorised scan says so.
    if memchr::memchr(b'\n', s).is_none() {
        skipped
    } else {
        memchr::memchr_iter(b'\n', s).count() as u64 + skipped
    }
}

/// Bytes of an over-long value kept for its message.
const EXCERPT_BYTES: usize = 64;

impl<R: Read> Framer<R> {
    fn new(input: BufReader<LimitedReader<R>>, tripped: Arc<AtomicBool>, opts: &ParseOptions) -> Self {
        let core = Box::new(
            csv_core::ReaderBuilder::new()
                .delimiter(opts.delimiter)
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
        );
        // A character is at most 4 bytes, and a CRLF's CR sticks to the last value.
        let max_field_bytes = opts.max_field_len.saturating_mul(4).saturating_add(1).max(1024);
        Framer {
            input,
            core,
            tripped,
            max_file_bytes: opts.max_file_bytes,
            max_field_bytes,
            // The header's bounds: wide headers are fine, huge cells are not.
            max_record_bytes: max_field_bytes.saturating_mul(64),
            max_fields: 1 << 16,
            scratch: vec![0; 64 * 1024],
            scratch_ends: vec![0; 256],
            eof: false,
        }
    }

    /// Once the header is known: room for every column at its longest (up to 16 MiB a row),
    /// and then some.
    fn bound_to(&mut self, columns: usize) {
        self.max_fields = columns.saturating_mul(2).saturating_add(64);
        let cap = (16usize << 20).max(self.max_field_bytes.saturating_mul(2));
        self.max_record_bytes = self.max_field_bytes.saturating_mul(columns.saturating_add(2)).min(cap);
    }

    /// Reads the next non-blank record into `record`; its line, or `None` at the end.
    fn next(&mut self, record: &mut Record) -> Result<Option<u64>, FileRejection> {
        loop {
            let before = self.core.line();
            let more = self.read_record(record)?;
            if !more {
                return Ok(None);
            }
            let embedded = embedded_newlines(record);
            let line = self.line(before, embedded);
            // Every record ends with a newline (`LimitedReader` supplies a last one). A record
            // whose newlines are all inside its values ended at the end of the input inside an
            // open quote: it has swallowed the rest of the file. Refuse rather than silently lose
            // those lines.
            if self.core.line().saturating_sub(before) == embedded {
                let swallowed = embedded.saturating_sub(1);
                return Err(FileRejection::new(
                    ErrorCode::UnterminatedQuote,
                    Some(line),
                    format!(
                        "a quote (\") opened on this line is never closed, so the rest of the file \
                         ({swallowed} more line{}) would be read as one value; close the quote or \
                         double a quote that is part of the text (\"\")",
                        if swallowed == 1 { "" } else { "s" }
                    ),
                ));
            }
            if record.overflow.is_some() || !is_blank(record) {
                return Ok(Some(line));
            }
        }
    }

    /// Physical line where the record just read starts. Every record ends with a consumed `\n`, so
    /// the newlines seen so far, minus those inside the record's quoted fields, minus its own
    /// terminator, are exactly the lines before it (skipped blank lines included).
    fn line(&self, before: u64, embedded: u64) -> u64 {
        let seen = self.core.line(); // 1 + newlines consumed
        let computed = seen.saturating_sub(embedded).saturating_sub(1);
        // A quote left open at end of file leaves the record without a terminator; the record
        // still cannot start before the line after the previous one.
        computed.max(before).max(1)
    }

    fn io_error(&self, e: io::Error) -> FileRejection {
        let line = Some(self.core.line());
        if self.tripped.load(Ordering::Relaxed) {
            FileRejection::new(
                ErrorCode::FileTooLarge,
                line,
                format!("the file is larger than the limit of {} bytes", self.max_file_bytes),
            )
        } else {
            FileRejection::new(ErrorCode::ReadError, line, format!("the file could not be read: {e}"))
        }
    }

    /// Reads the next CSV record (as `csv::Reader::read_byte_record` does, within bounds);
    /// `false` at the end.
    fn read_record(&mut self, rec: &mut Record) -> Result<bool, FileRejection> {
        use csv_core::ReadRecordResult as R;
        rec.len = 0;
        rec.overflow = None;
        if self.eof {
            return Ok(false);
        }
        if rec.bytes.is_empty() {
            rec.bytes.resize(1024, 0);
        }
        if rec.ends.is_empty() {
            rec.ends.resize(32, 0);
        }
        let (mut outlen, mut endlen) = (0, 0);
        loop {
            let input = match self.input.fill_buf() {
                Ok(i) => i,
                Err(e) => return Err(self.io_error(e)),
            };
            let res = match &mut rec.overflow {
                None => {
                    let (res, nin, nout, nend) =
                        self.core.read_record(input, &mut rec.bytes[outlen..], &mut rec.ends[endlen..]);
                    self.input.consume(nin);
                    outlen += nout;
                    endlen += nend;
                    res
                }
                Some(o) => {
                    let (res, nin, nout, nend) =
                        self.core.read_record(input, &mut self.scratch, &mut self.scratch_ends);
                    self.input.consume(nin);
                    o.newlines += memchr::memchr_iter(b'\n', &self.scratch[..nout]).count() as u64;
                    if !o.field_done {
                        if nend > 0 {
                            o.field_done = true;
                            o.field_bytes = self.scratch_ends[0].saturating_sub(o.start) as u64;
                        } else {
                            o.field_bytes += nout as u64;
                        }
                    }
                    if matches!(res, R::OutputFull | R::OutputEndsFull) {
                        continue;
                    }
                    res
                }
            };
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let start = if endlen == 0 { 0 } else { rec.ends[endlen - 1] };
                    if outlen - start >= self.max_field_bytes || outlen >= self.max_record_bytes {
                        let excerpt = rec.bytes[start..outlen.min(start + EXCERPT_BYTES)].to_vec();
                        let newlines = memchr::memchr_iter(b'\n', &rec.bytes[start..outlen]).count() as u64;
                        let field_bytes = (outlen - start) as u64;
                        let whole_row = outlen - start < self.max_field_bytes;
                        rec.overflow = Some(Overflow {
                            field: endlen,
                            start,
                            field_bytes,
                            excerpt,
                            newlines,
                            whole_row,
                            ..Default::default()
                        });
                    } else {
                        let n = rec.bytes.len().saturating_mul(2).min(self.max_record_bytes);
                        rec.bytes.resize(n, 0);
                    }
                }
                R::OutputEndsFull => {
                    if endlen >= self.max_fields {
                        let start = rec.ends[endlen - 1];
                        let newlines = memchr::memchr_iter(b'\n', &rec.bytes[start..outlen]).count() as u64;
                        rec.overflow = Some(Overflow {
                            field: endlen,
                            too_many_fields: true,
                            start,
                            field_done: true,
                            newlines,
                            ..Default::default()
                        });
                    } else {
                        let n = rec.ends.len().saturating_mul(2).min(self.max_fields);
                        rec.ends.resize(n, 0);
                    }
                }
                R::Record => {
                    rec.len = endlen;
                    return Ok(true);
                }
                R::End => {
                    self.eof = true;
                    return Ok(false);
                }
            }
        }
    }
}

/// Rows framed and decoded on the framing thread, handed over in batches so the two threads
/// meet once per batch rather than once per row.
#[derive(Default)]
struct Batch {
    rows: Vec<Row>,
    /// Rows in use (the rest are spare buffers kept for reuse).
    len: usize,
    /// Set on the last batch: the end of the file, or why it was rejected.
    end: Option<Result<(), FileRejection>>,
}

/// A batch is handed over at this many rows or bytes, whichever comes first; with the batches
/// in the channel and the two being filled and read, memory stays bounded by a few of them
/// whatever the file size.
const BATCH_ROWS: usize = 256;
const BATCH_BYTES: usize = 64 * 1024;
const BATCHES_IN_FLIGHT: usize = 2;

/// Turns framed records into rows: UTF-8 decoding, field length and raggedness.
struct Decoder {
    map: HeaderMap,
    columns: usize,
    max_field_len: usize,
}

impl Decoder {
    /// Fills `row` from `record` (starting on `line`), reusing its buffers.
    fn fill(&self, record: &Record, line: u64, row: &mut Row) {
        row.raw.line = line;
        row.errors.clear();
        let fields_out = &mut row.raw.fields;
        // The usual row is UTF-8 throughout: one check and one copy for all its values.
        let whole = decode(record.as_slice());
        if !whole.is_some_and(|w| fields_out.fill_from(w, record)) {
            self.decode_each(record, line, &mut row.errors, fields_out);
        }
        if let Some(o) = &record.overflow {
            // Only the values before the offending one were kept: nothing else to check.
            row.errors.push(self.overflow_error(o, line));
            return;
        }
        // A value can only be too long if the whole row is.
        if fields_out.total_len() > self.max_field_len {
            for (i, s) in fields_out.iter().enumerate() {
                if s.len() > self.max_field_len && s.chars().count() > self.max_field_len {
                    let name = self.map.field_name(i);
                    row.errors.push(RecordError::new(
                        line,
                        name,
                        ErrorCode::FieldTooLong,
                        format!(
                            "{} is longer than {} characters ({} characters)",
                            if name.is_empty() { "a value" } else { name },
                            self.max_field_len,
                            s.chars().count()
                        ),
                    ));
                }
            }
        }
        if fields_out.len() != self.columns {
            row.errors.push(RecordError::new(
                line,
                &self.map.ragged_column(fields_out.len()),
                ErrorCode::RaggedRow,
                format!(
                    "this row has {} values but the header has {} columns (check for an unquoted delimiter)",
                    fields_out.len(),
                    self.columns
                ),
            ));
        }
    }

    /// The error for a record the framer did not keep whole: a short excerpt and the size,
    /// never the value.
    fn overflow_error(&self, o: &Overflow, line: u64) -> RecordError {
        if o.too_many_fields {
            return RecordError::new(
                line,
                "",
                ErrorCode::RaggedRow,
                format!(
                    "this row has more than {} values but the header has {} columns (check for an unquoted delimiter); the rest of the row was skipped",
                    o.field, self.columns
                ),
            );
        }
        let name = self.map.field_name(o.field);
        let size = super::error::human_size(o.field_bytes);
        if o.whole_row {
            return RecordError::new(
                line,
                name,
                ErrorCode::FieldTooLong,
                format!(
                    "this row is too long: its values up to {} pass what {} values of {} characters can take; the rest of the row was skipped",
                    if name.is_empty() { "this one" } else { name },
                    self.columns,
                    self.max_field_len
                ),
            );
        }
        RecordError::new(
            line,
            name,
            ErrorCode::FieldTooLong,
            format!(
                "{} is longer than {} characters ({}{}, starting '{}'); the rest of the row was skipped",
                if name.is_empty() { "a value" } else { name },
                self.max_field_len,
                if o.field_done { "" } else { "at least " },
                size,
                shown(&String::from_utf8_lossy(&o.excerpt))
            ),
        )
    }

    /// A row with bytes that are not UTF-8: each value is checked alone, and a bad one is
    /// reported and kept with U+FFFD in place of the bad bytes.
    fn decode_each(&self, record: &Record, line: u64, errors: &mut Vec<RecordError>, out: &mut Fields) {
        out.clear();
        for (i, f) in fields(record).enumerate() {
            match decode(f) {
                Some(s) => out.push(s),
                None => {
                    let name = self.map.field_name(i);
                    let lossy = String::from_utf8_lossy(f);
                    errors.push(RecordError::new(
                        line,
                        name,
                        ErrorCode::BadEncoding,
                        format!(
                            "{} contains bytes that are not UTF-8 text ('{}'); save the file as UTF-8",
                            if name.is_empty() { "a value" } else { name },
                            shown(&lossy)
                        ),
                    ));
                    out.push(&lossy);
                }
            }
        }
    }
}

/// How many times a side of the hand-over looks again before it sleeps: a batch is usually
/// a few microseconds away, and waking a sleeping thread costs more than that (much more in a
/// virtual machine); kept short so that a thread sharing its CPU with the other side wastes
/// little of its turn. The X12 reader's framing thread hands over through the same two.
const POLLS: u32 = 256;

pub(crate) fn recv_polling<T>(rx: &std::sync::mpsc::Receiver<T>) -> Result<T, std::sync::mpsc::RecvError> {
    use std::sync::mpsc::TryRecvError;
    for _ in 0..POLLS {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
            Err(TryRecvError::Disconnected) => return Err(std::sync::mpsc::RecvError),
        }
    }
    rx.recv()
}

pub(crate) fn send_polling<T>(tx: &std::sync::mpsc::SyncSender<T>, mut v: T) -> Result<(), ()> {
    use std::sync::mpsc::TrySendError;
    for _ in 0..POLLS {
        match tx.try_send(v) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) => {
                v = back;
                std::hint::spin_loop();
            }
            Err(TrySendError::Disconnected(_)) => return Err(()),
        }
    }
    tx.send(v).map_err(|_| ())
}

/// The framing thread: frames and decodes rows into batches until the end of the file, a
/// rejection, or the reader going away (a failed send).
fn frame_batches<R: Read>(
    mut framer: Framer<R>,
    decoder: Decoder,
    full: std::sync::mpsc::SyncSender<Batch>,
    empty: std::sync::mpsc::Receiver<Batch>,
) {
    let mut record = Record::default();
    loop {
        let mut batch = empty.try_recv().unwrap_or_default();
        batch.len = 0;
        let mut bytes = 0;
        while batch.len < BATCH_ROWS && bytes < BATCH_BYTES {
            match framer.next(&mut record) {
                Ok(Some(line)) => {
                    if batch.rows.len() == batch.len {
                        batch.rows.push(Row::default());
                    }
                    decoder.fill(&record, line, &mut batch.rows[batch.len]);
                    bytes += record.as_slice().len() + 64;
                    batch.len += 1;
                }
                Ok(None) => {
                    batch.end = Some(Ok(()));
                    break;
                }
                Err(e) => {
                    batch.end = Some(Err(e));
                    break;
                }
            }
        }
        let last = batch.end.is_some();
        if send_polling(&full, batch).is_err() || last {
            return;
        }
    }
}

/// Where rows come from: framed and decoded here, or by the framing thread.
enum Source<R> {
    Here {
        framer: Box<Framer<R>>,
        record: Record,
        decoder: Decoder,
    },
    Piped {
        full: std::sync::mpsc::Receiver<Batch>,
        empty: std::sync::mpsc::SyncSender<Batch>,
        batch: Batch,
        /// Index of the next row in `batch`.
        at: usize,
    },
}

impl<R: Read> Source<R> {
    /// Fills `row` with the next row; `false` at the end.
    fn next_into(&mut self, row: &mut Row) -> Result<bool, FileRejection> {
        match self {
            Source::Here { framer, record, decoder } => match framer.next(record)? {
                Some(line) => {
                    decoder.fill(record, line, row);
                    Ok(true)
                }
                None => Ok(false),
            },
            Source::Piped { full, empty, batch, at } => loop {
                if *at < batch.len {
                    // The batch keeps the caller's old buffers for reuse.
                    std::mem::swap(row, &mut batch.rows[*at]);
                    *at += 1;
                    return Ok(true);
                }
                if let Some(end) = batch.end.take() {
                    batch.len = 0;
                    return end.map(|()| false);
                }
                let next = recv_polling(full).map_err(|_| {
                    FileRejection::new(
                        ErrorCode::ReadError,
                        None,
                        "the file could not be read: the reading thread stopped",
                    )
                })?;
                let spent = std::mem::replace(batch, next);
                // The framing thread may already be gone (it reached the end): then the buffers
                // are simply dropped.
                let _ = empty.try_send(spent);
                *at = 0;
            },
        }
    }
}

pub(crate) struct RowReader<R> {
    source: Source<R>,
    pub map: HeaderMap,
    pub header: Vec<String>,
    pub warnings: Vec<RecordError>,
    max_rows: u64,
    rows: u64,
    done: bool,
}

/// Decodes a field; `None` when it is not UTF-8.
fn decode(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Blank lines (and lines of only delimiters/whitespace) carry no data and are skipped.
fn is_blank(rec: &Record) -> bool {
    rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

/// The record's fields, with the CR of a CRLF ending removed from the last one.
fn fields(record: &Record) -> impl Iterator<Item = &[u8]> {
    let n = record.len();
    record.iter().enumerate().map(move |(i, f)| if i + 1 == n { f.strip_suffix(b"\r").unwrap_or(f) } else { f })
}

impl<R: Read> RowReader<R> {
    /// Reads the header. Rejects the file when it is empty, the header is not UTF-8, or the
    /// header does not fit the kind.
    pub fn open(kind: Kind, input: R, opts: &ParseOptions) -> Result<Self, FileRejection> {
        let (framer, decoder, header, warnings) = Self::start(kind, input, opts)?;
        let map = decoder.map.clone();
        let record = Record::default();
        let source = Source::Here { framer: Box::new(framer), record, decoder };
        Ok(Self::reading(source, map, header, warnings, opts))
    }

    /// Like `open`, but framing and decoding run on a thread of its own, overlapping with
    /// checking the rows on this one. The thread ends with the file, or once this reader is
    /// dropped (its next hand-over fails).
    pub fn open_piped(kind: Kind, input: R, opts: &ParseOptions) -> Result<Self, FileRejection>
    where
        R: Send + 'static,
    {
        // With one CPU to run on, a second thread only adds hand-overs.
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return Self::open(kind, input, opts);
        }
        let (framer, decoder, header, warnings) = Self::start(kind, input, opts)?;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT + 1);
        let map = decoder.map.clone();
        let spawned = std::thread::Builder::new()
            .name("csv-framing".into())
            .spawn(move || frame_batches(framer, decoder, full_tx, empty_rx));
        if let Err(e) = spawned {
            return Err(FileRejection::new(
                ErrorCode::ReadError,
                None,
                format!("the file could not be read: no thread to read it ({e})"),
            ));
        }
        let source = Source::Piped { full: full_rx, empty: empty_tx, batch: Batch::default(), at: 0 };
        Ok(Self::reading(source, map, header, warnings, opts))
    }

    fn reading(
        source: Source<R>,
        map: HeaderMap,
        header: Vec<String>,
        warnings: Vec<RecordError>,
        opts: &ParseOptions,
    ) -> Self {
        RowReader { source, map, header, warnings, max_rows: opts.max_rows, rows: 0, done: false }
    }

    /// Frames the header and checks it against the kind; returns the framer positioned after
    /// it, the decoder for its rows, the header and its warnings.
    #[allow(clippy::type_complexity)]
    fn start(
        kind: Kind,
        input: R,
        opts: &ParseOptions,
    ) -> Result<(Framer<R>, Decoder, Vec<String>, Vec<RecordError>), FileRejection> {
        let tripped = Arc::new(AtomicBool::new(false));
        let limited = LimitedReader::new(input, opts.max_file_bytes, tripped.clone());
        // Skip a UTF-8 BOM before CSV framing sees it, so a quoted first header cell still parses.
        let mut buffered = BufReader::with_capacity(64 * 1024, limited);
        let bom = match buffered.fill_buf() {
            Ok(buf) => {
                if let Some(rej) = super::not_csv(buf) {
                    return Err(rej);
                }
                buf.starts_with(b"\xef\xbb\xbf")
            }
            Err(e) => {
                let code = if tripped.load(Ordering::Relaxed) { ErrorCode::FileTooLarge } else { ErrorCode::ReadError };
                return Err(FileRejection::new(code, None, format!("the file could not be read: {e}")));
            }
        };
        if bom {
            buffered.consume(3);
        }
        // Only LF ends a record: lines are derived from newline counts (see `Framer::line`). A CR
        // before the LF is stripped from the last field; old Mac CR-only files have their CRs
        // read as LF (`LimitedReader`).
        let mut framer = Framer::new(buffered, tripped, opts);
        let mut record = Record::default();
        let Some(line) = framer.next(&mut record)? else {
            // Line 1, where the header belongs: the same line in every report.
            return Err(FileRejection::new(
                ErrorCode::EmptyFile,
                Some(1),
                "the file is empty: it needs at least a header row",
            ));
        };
        if let Some(o) = &record.overflow {
            return Err(FileRejection::new(
                ErrorCode::FieldTooLong,
                Some(line),
                format!(
                    "header column {} is longer than {} characters ({}); this is not a header row",
                    o.field + 1,
                    opts.max_field_len,
                    super::error::human_size(o.field_bytes)
                ),
            ));
        }
        framer.bound_to(record.len());
        let mut header = Vec::with_capacity(record.len());
        for (i, f) in fields(&record).enumerate() {
            match decode(f) {
                Some(s) => header.push(s.to_string()),
                None => {
                    return Err(FileRejection::new(
                        ErrorCode::BadEncoding,
                        Some(line),
                        format!("header column {} is not valid UTF-8 text; save the file as UTF-8", i + 1),
                    ))
                }
            }
        }
        let (map, warnings) = HeaderMap::build(kind, &header, opts)?;
        let decoder = Decoder { map, columns: header.len(), max_field_len: opts.max_field_len };
        Ok((framer, decoder, header, warnings))
    }

    /// Next non-blank data row; `Err` means the whole file is rejected and iteration ends.
    pub fn next_row(&mut self) -> Option<Result<Row, FileRejection>> {
        let mut row = Row::default();
        match self.next_row_into(&mut row)? {
            Ok(()) => Some(Ok(row)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Like `next_row`, but fills `row`, reusing its buffers (no allocation per row once warm).
    pub fn next_row_into(&mut self, row: &mut Row) -> Option<Result<(), FileRejection>> {
        if self.done {
            return None;
        }
        match self.source.next_into(row) {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.rows += 1;
        if self.rows > self.max_rows {
            self.done = true;
            return Some(Err(FileRejection::new(
                ErrorCode::TooManyRows,
                Some(row.line()),
                format!("the file has more than {} rows; split it into smaller files", self.max_rows),
            )));
        }
        Some(Ok(()))
    }
}

/// `str::trim`, skipping the search in the usual case of a value that starts and ends with a
/// visible ASCII character.
fn trim(v: &str) -> &str {
    match v.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => v,
        [only] if only.is_ascii_graphic() => v,
        _ => v.trim(),
    }
}

impl Row {
    /// Trimmed value of canonical column `col` (index into the kind's column table); `None` when
    /// the column is absent or the cell is blank.
    pub fn get<'a>(&'a self, map: &HeaderMap, col: usize) -> Option<&'a str> {
        let i = (*map.index.get(col)?)?;
        let v = trim(self.raw.fields.get(i)?);
        if v.is_empty() {
            None
        } else {
            Some(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the tests see it: line, values, error codes with their columns.
    type Seen = (u64, Vec<String>, Vec<(String, ErrorCode)>);

    /// Every row, read here and piped.
    fn rows(text: &[u8], opts: &ParseOptions) -> Vec<Seen> {
        let collect = |mut r: RowReader<std::io::Cursor<Vec<u8>>>| {
            let mut out = Vec::new();
            while let Some(row) = r.next_row() {
                let row = row.unwrap();
                let errs = row.errors.iter().map(|e| (e.column.clone(), e.code)).collect();
                out.push((row.line(), row.raw.fields.iter().map(str::to_string).collect(), errs));
            }
            out
        };
        let here = collect(RowReader::open(Kind::Inventory, std::io::Cursor::new(text.to_vec()), opts).unwrap());
        let piped = collect(RowReader::open_piped(Kind::Inventory, std::io::Cursor::new(text.to_vec()), opts).unwrap());
        assert_eq!(here, piped, "both readers agree");
        here
    }

    #[test]
    fn an_over_long_value_is_skipped_to_the_end_of_its_row_and_reported_where_it_is() {
        let opts = ParseOptions { max_field_len: 16, ..ParseOptions::default() };
        let long = "x".repeat(100_000);
        let text = format!("sku,quantity,name\nA,1,ok\nB,2,\"{long}\n{long}\"\nC,3,fine\n");
        let got = rows(text.as_bytes(), &opts);
        assert_eq!(got.len(), 3, "{:?}", got.iter().map(|r| r.0).collect::<Vec<_>>());
        assert_eq!((got[0].0, got[0].2.len()), (2, 0));
        assert_eq!(got[1].0, 3, "the row's own line");
        assert_eq!(got[1].1, vec!["B", "2"], "values before the long one are kept, the long one is not");
        assert_eq!(got[1].2, vec![("name".to_string(), ErrorCode::FieldTooLong)]);
        assert_eq!(
            (got[2].0, got[2].1.clone()),
            (5, vec!["C".to_string(), "3".into(), "fine".into()]),
            "lines count the skipped newline"
        );
    }

    #[test]
    fn too_many_values_are_skipped_as_a_ragged_row() {
        let text = format!("sku,quantity\nA,1{}\nB,2\n", ",".repeat(1_000_000));
        let got = rows(text.as_bytes(), &ParseOptions::default());
        assert_eq!(got.len(), 2);
        assert!(got[0].1.len() <= 2 * 2 + 64, "not every value is kept: {}", got[0].1.len());
        assert_eq!(got[0].2, vec![(String::new(), ErrorCode::RaggedRow)]);
        assert_eq!((got[1].0, got[1].2.len()), (3, 0));
    }

    #[test]
    fn an_over_long_header_rejects_the_file() {
        let opts = ParseOptions { max_field_len: 16, ..ParseOptions::default() };
        let text = format!("sku,{}\n", "q".repeat(1_000_000));
        match RowReader::open(Kind::Inventory, std::io::Cursor::new(text.into_bytes()), &opts) {
            Err(e) => assert_eq!(e.code, ErrorCode::FieldTooLong),
            Ok(_) => panic!("accepted"),
        }
    }
}
