//! Writers for the files handed back to the warehouse: per-row results and per-error reports.
//!
//! Both write to any `std::io::Write`; the caller decides where the bytes go (and uploads them
//! atomically), so these stay pure and testable.

use std::io::{self, Write};

use std::sync::Arc;

use crate::formats::replay::{Origins, ORIGIN_COLUMNS};
use crate::formats::{human_size, RawRow};

pub use crate::model::Outcome;

/// One line of `NAME.result.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub line: u64,
    /// SKU, order_ref or shipment key.
    pub key: String,
    pub outcome: Outcome,
    pub remote_id: String,
    pub message: String,
}

fn csv_err(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Longest value written (or stored in the ledger) whole. The reader already refuses values
/// past `max_field_len` without holding them; this is the second wall, so that no value, however
/// it got here, is copied whole into a result file, an error file or the ledger.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

/// Characters kept of a value longer than [`MAX_CELL_BYTES`].
const EXCERPT_CHARS: usize = 64;

/// `cell`, or when longer than [`MAX_CELL_BYTES`] its first 64 characters and its size:
/// `AAAA…… (523 MB)`.
pub fn excerpt(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.len() <= MAX_CELL_BYTES {
        return std::borrow::Cow::Borrowed(cell);
    }
    let head: String = cell.chars().take(EXCERPT_CHARS).collect();
    std::borrow::Cow::Owned(format!("{head}… ({})", human_size(cell.len() as u64)))
}

/// Makes a cell safe to open in a spreadsheet.
///
/// Following OWASP, any cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`, so
/// it is shown as text instead of run as a formula. That includes plain negative numbers such as
/// `-5`: telling a harmless number from `-2+3+cmd|...` reliably is harder than living with a
/// visible quote in a report meant for people. Other control characters are shown as `\xNN` so
/// they cannot mangle the display (tab, LF and CR inside a cell stay, CSV quoting covers them).
pub fn neutralise(cell: &str) -> String {
    let cell = excerpt(cell);
    let cell = cell.as_ref();
    let mut out = String::with_capacity(cell.len() + 1);
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    for ch in cell.chars() {
        if ch.is_control() && !matches!(ch, '\t' | '\n' | '\r') {
            out.push_str(&format!("\\x{:02x}", u32::from(ch)));
        } else {
            out.push(ch);
        }
    }
    out
}

/// The one rule for files meant for people (result and error files): UTF-8 with a BOM, so
/// spreadsheet programs detect the encoding, and every cell through [`neutralise`]. Files meant
/// for machines (outbound order and cancel files) carry values exactly and never come here.
fn people_csv<W: Write>(mut w: W, delimiter: u8) -> io::Result<csv::Writer<W>> {
    w.write_all(b"\xef\xbb\xbf")?;
    Ok(csv::WriterBuilder::new().flexible(true).delimiter(delimiter).from_writer(w))
}

/// Writes `NAME.result.csv`: header `line,key,outcome,remote_id,message`, a file for people
/// (see [`people_csv`]): a key like `=HYPERLINK(…)` or `@SUM(A1:A2)` is shown, never run.
pub struct ResultWriter<W: Write> {
    csv: csv::Writer<W>,
    origins: Option<Arc<Origins>>,
}

impl<W: Write> ResultWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut csv = people_csv(w, b',')?;
        csv.write_record(["line", "key", "outcome", "remote_id", "message"]).map_err(csv_err)?;
        Ok(ResultWriter { csv, origins: None })
    }

    /// The result file of a replayed error file: `original_file,original_line` after the usual
    /// columns name where each row first came from.
    pub fn replay(w: W, origins: Arc<Origins>) -> io::Result<Self> {
        let mut csv = people_csv(w, b',')?;
        let mut header = vec!["line", "key", "outcome", "remote_id", "message"];
        header.extend(ORIGIN_COLUMNS);
        csv.write_record(header).map_err(csv_err)?;
        Ok(ResultWriter { csv, origins: Some(origins) })
    }

    pub fn write(&mut self, row: &ResultRow) -> io::Result<()> {
        let line = row.line.to_string();
        let mut cells = vec![
            line,
            neutralise(&row.key),
            row.outcome.as_str().to_string(),
            neutralise(&row.remote_id),
            neutralise(&row.message),
        ];
        if let Some(o) = &self.origins {
            cells.extend(origin_cells(o, row.line));
        }
        self.csv.write_record(&cells).map_err(csv_err)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

/// Writes the error report, a file for people (see [`people_csv`]): the original columns
/// followed by `line,column,code,message`, one row per (row, error), in the partner's own
/// delimiter so it opens the way their files do.
pub struct ErrorWriter<W: Write> {
    csv: csv::Writer<W>,
    width: usize,
    origin: Origin,
}

/// What the `original_file,original_line` columns of an error file say.
enum Origin {
    /// No such columns (`validate`'s error files).
    Unnamed,
    /// The rows are this file's own.
    File(String),
    /// The rows of a replay came from where these say.
    Replay(Arc<Origins>),
}

/// `original_file,original_line` of `line` of a replayed file (empty when it has none).
fn origin_cells(origins: &Origins, line: u64) -> [String; 2] {
    match origins.get(line) {
        Some(o) => [neutralise(&o.file), o.line.to_string()],
        None => [String::new(), String::new()],
    }
}

impl<W: Write> ErrorWriter<W> {
    pub fn new(w: W, original_header: &[String]) -> io::Result<Self> {
        Self::with_delimiter(w, original_header, b',')
    }

    pub fn with_delimiter(w: W, original_header: &[String], delimiter: u8) -> io::Result<Self> {
        let mut csv = people_csv(w, delimiter)?;
        let mut header: Vec<String> = original_header.iter().map(|h| neutralise(h)).collect();
        header.extend(["line", "column", "code", "message"].map(String::from));
        csv.write_record(&header).map_err(csv_err)?;
        Ok(ErrorWriter { csv, width: original_header.len(), origin: Origin::Unnamed })
    }

    /// The error file of the drop file `path`: `original_file,original_line` after our columns
    /// name it and the line, so the file can be corrected and dropped back under any name
    /// (`formats::replay`).
    pub fn of_file(w: W, original_header: &[String], delimiter: u8, path: &str) -> io::Result<Self> {
        Self::named(w, original_header, delimiter, Origin::File(path.to_string()))
    }

    /// The error file of a replayed error file: its rows name the first original, so that
    /// replaying it again still does.
    pub fn replay(w: W, original_header: &[String], delimiter: u8, origins: Arc<Origins>) -> io::Result<Self> {
        Self::named(w, original_header, delimiter, Origin::Replay(origins))
    }

    fn named(w: W, original_header: &[String], delimiter: u8, origin: Origin) -> io::Result<Self> {
        let mut csv = people_csv(w, delimiter)?;
        let mut header: Vec<String> = original_header.iter().map(|h| neutralise(h)).collect();
        header.extend(["line", "column", "code", "message"].map(String::from));
        header.extend(ORIGIN_COLUMNS.map(String::from));
        csv.write_record(&header).map_err(csv_err)?;
        Ok(ErrorWriter { csv, width: original_header.len(), origin })
    }

    fn origin_of(&self, line: Option<u64>) -> Option<[String; 2]> {
        match (&self.origin, line) {
            (Origin::Unnamed, _) => None,
            (Origin::File(f), Some(l)) if l > 0 => Some([neutralise(f), l.to_string()]),
            (Origin::File(f), _) => Some([neutralise(f), String::new()]),
            (Origin::Replay(o), Some(l)) => Some(origin_cells(o, l)),
            (Origin::Replay(_), None) => Some([String::new(), String::new()]),
        }
    }

    /// One error about `row`. The row's cells are padded or cut to the header's width so the
    /// error columns always line up (a ragged row's own message says how many values it had).
    pub fn write(&mut self, row: &RawRow, line: u64, column: &str, code: &str, message: &str) -> io::Result<()> {
        let mut cells: Vec<String> =
            (0..self.width).map(|i| row.fields.get(i).map(neutralise).unwrap_or_default()).collect();
        cells.extend([line.to_string(), neutralise(column), neutralise(code), neutralise(message)]);
        cells.extend(self.origin_of(Some(line)).into_iter().flatten());
        self.csv.write_record(&cells).map_err(csv_err)
    }

    /// An error about the file as a whole (no row to echo): data cells are left empty.
    pub fn write_file_error(&mut self, line: Option<u64>, column: &str, code: &str, message: &str) -> io::Result<()> {
        let origin = self.origin_of(line);
        let mut cells = vec![String::new(); self.width];
        cells.extend([
            line.map(|l| l.to_string()).unwrap_or_default(),
            neutralise(column),
            neutralise(code),
            neutralise(message),
        ]);
        cells.extend(origin.into_iter().flatten());
        self.csv.write_record(&cells).map_err(csv_err)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_long_values_are_written_as_an_excerpt_with_their_size() {
        let big = "A".repeat(3 << 20);
        let mut w = ResultWriter::new(Vec::new()).unwrap();
        let row = ResultRow {
            line: 2,
            key: big.clone(),
            outcome: Outcome::Rejected,
            remote_id: String::new(),
            message: big.clone(),
        };
        w.write(&row).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert!(out.len() < 1024, "{} bytes", out.len());
        assert!(out.contains(&format!("{}… (3.0 MB)", "A".repeat(64))), "{out}");
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn result_files_are_for_people_bom_and_neutral_cells() {
        let mut w = ResultWriter::new(Vec::new()).unwrap();
        for key in ["=HYPERLINK(\"http://x\")", "@SUM(A1:A2)", "+PLUS", "-12"] {
            w.write(&ResultRow {
                line: 2,
                key: key.into(),
                outcome: Outcome::Rejected,
                remote_id: "=1".into(),
                message: "=cmd".into(),
            })
            .unwrap();
        }
        let bytes = w.finish().unwrap();
        assert!(bytes.starts_with(b"\xef\xbb\xbfline,key,outcome,remote_id,message\n"));
        let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        for rec in r.records() {
            let rec = rec.unwrap();
            for cell in [&rec[1], &rec[3], &rec[4]] {
                assert!(cell.starts_with('\''), "{cell} in {text}");
            }
        }
    }

    #[test]
    fn error_files_use_the_partners_delimiter() {
        let mut w =
            ErrorWriter::with_delimiter(Vec::new(), &["sku".to_string(), "quantity".to_string()], b';').unwrap();
        w.write_file_error(Some(1), "sku", "missing_value", "a; b").unwrap();
        let text = String::from_utf8(w.finish().unwrap()[3..].to_vec()).unwrap();
        assert!(text.starts_with("sku;quantity;line;column;code;message\n"), "{text}");
        assert!(text.contains(";;1;sku;missing_value;\"a; b\""), "{text}");
    }

    #[test]
    fn neutralises_formulas_and_controls() {
        assert_eq!(neutralise("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(neutralise("-5"), "'-5");
        assert_eq!(neutralise("@x"), "'@x");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("a=b"), "a=b");
        assert_eq!(neutralise("a\u{1b}[31m"), "a\\x1b[31m");
        assert_eq!(neutralise("x\u{0}"), "x\\x00");
    }

    #[test]
    fn result_file() {
        let mut w = ResultWriter::new(Vec::new()).unwrap();
        w.write(&ResultRow {
            line: 2,
            key: "SKU,1".into(),
            outcome: Outcome::Created,
            remote_id: "p-9".into(),
            message: "=bad".into(),
        })
        .unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(out, "\u{feff}line,key,outcome,remote_id,message\n2,\"SKU,1\",created,p-9,'=bad\n");
    }
}
