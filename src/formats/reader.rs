//! Streaming row reader: CSV framing, encoding checks, limits and physical line numbers.
//!
//! Reads one `ByteRecord` at a time so memory stays flat whatever the file size.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error::{ErrorCode, FileRejection, RecordError};
use super::fields::shown;
use super::header::HeaderMap;
use super::{Kind, ParseOptions, RawRow};

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
                Some(i) if i + 1 < n => {
                    self.endings = if buf[i + 1] == b'\n' { Endings::Lf } else { Endings::Cr }
                }
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

pub(crate) struct RowReader<R> {
    csv: csv::Reader<BufReader<LimitedReader<R>>>,
    record: csv::ByteRecord,
    tripped: Arc<AtomicBool>,
    pub map: HeaderMap,
    pub header: Vec<String>,
    pub warnings: Vec<RecordError>,
    max_file_bytes: u64,
    max_field_len: usize,
    max_rows: u64,
    rows: u64,
    done: bool,
}

/// Decodes a field; `None` when it is not UTF-8.
fn decode(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Blank lines (and lines of only delimiters/whitespace) carry no data and are skipped.
fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

impl<R: Read> RowReader<R> {
    /// Reads the header. Rejects the file when it is empty, the header is not UTF-8, or the
    /// header does not fit the kind.
    pub fn open(kind: Kind, input: R, opts: &ParseOptions) -> Result<Self, FileRejection> {
        let tripped = Arc::new(AtomicBool::new(false));
        let limited = LimitedReader::new(input, opts.max_file_bytes, tripped.clone());
        // Skip a UTF-8 BOM before CSV framing sees it, so a quoted first header cell still parses.
        let mut buffered = BufReader::with_capacity(64 * 1024, limited);
        let bom = match buffered.fill_buf() {
            Ok(buf) => buf.starts_with(b"\xef\xbb\xbf"),
            Err(e) => {
                let code = if tripped.load(Ordering::Relaxed) {
                    ErrorCode::FileTooLarge
                } else {
                    ErrorCode::ReadError
                };
                return Err(FileRejection::new(
                    code,
                    None,
                    format!("the file could not be read: {e}"),
                ));
            }
        };
        if bom {
            buffered.consume(3);
        }
        // Only LF ends a record: csv's own line counter miscounts CRLF and skipped blank lines, so
        // lines are derived from newline counts instead (see `line`). A CR before the LF is
        // stripped from the last field; old Mac CR-only files have their CRs read as LF
        // (`LimitedReader`).
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(opts.delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(buffered);
        let mut rr = RowReader {
            csv,
            record: csv::ByteRecord::new(),
            tripped,
            map: HeaderMap {
                kind,
                index: Vec::new(),
                field_names: Vec::new(),
            },
            header: Vec::new(),
            warnings: Vec::new(),
            max_file_bytes: opts.max_file_bytes,
            max_field_len: opts.max_field_len,
            max_rows: opts.max_rows,
            rows: 0,
            done: false,
        };
        loop {
            match rr.read_record() {
                Ok(true) if is_blank(&rr.record) => continue,
                Ok(true) => break,
                Ok(false) => {
                    return Err(FileRejection::new(
                        ErrorCode::EmptyFile,
                        None,
                        "the file is empty: it needs at least a header row",
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        let line = rr.line();
        let mut header = Vec::with_capacity(rr.record.len());
        for (i, f) in Self::fields(&rr.record).enumerate() {
            match decode(f) {
                Some(s) => header.push(s.to_string()),
                None => {
                    return Err(FileRejection::new(
                        ErrorCode::BadEncoding,
                        Some(line),
                        format!(
                            "header column {} is not valid UTF-8 text; save the file as UTF-8",
                            i + 1
                        ),
                    ))
                }
            }
        }
        let (map, warnings) = HeaderMap::build(kind, &header, opts)?;
        rr.map = map;
        rr.header = header;
        rr.warnings = warnings;
        Ok(rr)
    }

    /// Physical line where the record just read starts. Every record ends with a consumed `\n`, so
    /// the newlines seen so far, minus those inside the record's quoted fields, minus its own
    /// terminator, are exactly the lines before it (skipped blank lines included).
    fn line(&self) -> u64 {
        let seen = self.csv.position().line(); // 1 + newlines consumed
        let embedded = self.embedded_newlines();
        let computed = seen.saturating_sub(embedded).saturating_sub(1);
        // A quote left open at end of file leaves the record without a terminator; the record
        // still cannot start before the line after the previous one.
        let floor = self.record.position().map(|p| p.line()).unwrap_or(1);
        computed.max(floor).max(1)
    }

    /// Newlines inside the values of the record just read.
    fn embedded_newlines(&self) -> u64 {
        self.record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// The record's fields, with the CR of a CRLF ending removed from the last one.
    fn fields(record: &csv::ByteRecord) -> impl Iterator<Item = &[u8]> {
        let n = record.len();
        record.iter().enumerate().map(move |(i, f)| {
            if i + 1 == n {
                f.strip_suffix(b"\r").unwrap_or(f)
            } else {
                f
            }
        })
    }

    /// Reads the next CSV record into `self.record`, mapping I/O failures to a file rejection.
    fn read_record(&mut self) -> Result<bool, FileRejection> {
        let before = self.csv.position().line();
        match self.csv.read_byte_record(&mut self.record) {
            // Every record ends with a newline (`LimitedReader` supplies a last one). A record
            // whose newlines are all inside its values ended at the end of the input inside an
            // open quote: it has swallowed the rest of the file. Refuse rather than silently lose
            // those lines.
            Ok(true)
                if self.csv.position().line().saturating_sub(before)
                    == self.embedded_newlines() =>
            {
                let line = self.line();
                let swallowed = self.embedded_newlines().saturating_sub(1);
                Err(FileRejection::new(
                    ErrorCode::UnterminatedQuote,
                    Some(line),
                    format!(
                        "a quote (\") opened on this line is never closed, so the rest of the file \
                         ({swallowed} more line{}) would be read as one value; close the quote or \
                         double a quote that is part of the text (\"\")",
                        if swallowed == 1 { "" } else { "s" }
                    ),
                ))
            }
            Ok(more) => Ok(more),
            Err(e) => {
                let line = e.position().map(|p| p.line());
                if self.tripped.load(Ordering::Relaxed) {
                    Err(FileRejection::new(
                        ErrorCode::FileTooLarge,
                        line,
                        format!(
                            "the file is larger than the limit of {} bytes",
                            self.max_file_bytes
                        ),
                    ))
                } else {
                    Err(FileRejection::new(
                        ErrorCode::ReadError,
                        line,
                        format!("the file could not be read: {e}"),
                    ))
                }
            }
        }
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
        loop {
            match self.read_record() {
                Ok(true) if is_blank(&self.record) => continue,
                Ok(true) => break,
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let line = self.line();
        self.rows += 1;
        if self.rows > self.max_rows {
            self.done = true;
            return Some(Err(FileRejection::new(
                ErrorCode::TooManyRows,
                Some(line),
                format!(
                    "the file has more than {} rows; split it into smaller files",
                    self.max_rows
                ),
            )));
        }
        row.raw.line = line;
        row.errors.clear();
        let n = self.record.len();
        let fields = &mut row.raw.fields;
        fields.truncate(n);
        for (i, f) in Self::fields(&self.record).enumerate() {
            let text = decode(f);
            let slot = |fields: &mut Vec<String>, s: &str| {
                if let Some(v) = fields.get_mut(i) {
                    v.clear();
                    v.push_str(s);
                } else {
                    fields.push(s.to_owned());
                }
            };
            match text {
                Some(s) => {
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
                    slot(fields, s);
                }
                None => {
                    let name = self.map.field_name(i);
                    let lossy = String::from_utf8_lossy(f);
                    row.errors.push(RecordError::new(
                        line,
                        name,
                        ErrorCode::BadEncoding,
                        format!(
                            "{} contains bytes that are not UTF-8 text ('{}'); save the file as UTF-8",
                            if name.is_empty() { "a value" } else { name },
                            shown(&lossy)
                        ),
                    ));
                    slot(fields, &lossy);
                }
            }
        }
        if fields.len() != self.header.len() {
            row.errors.push(RecordError::new(
                line,
                "",
                ErrorCode::RaggedRow,
                format!(
                    "this row has {} values but the header has {} columns (check for an unquoted delimiter)",
                    fields.len(),
                    self.header.len()
                ),
            ));
        }
        Some(Ok(()))
    }
}

impl Row {
    /// Trimmed value of canonical column `col` (index into the kind's column table); `None` when
    /// the column is absent or the cell is blank.
    pub fn get<'a>(&'a self, map: &HeaderMap, col: usize) -> Option<&'a str> {
        let i = (*map.index.get(col)?)?;
        let v = self.raw.fields.get(i)?.trim();
        if v.is_empty() {
            None
        } else {
            Some(v)
        }
    }
}
