//! Files on an account's drop, read for the console: always by a path the ledger recorded,
//! through the account's own transport (whose jail refuses escapes and links), never by a path
//! from a request.

use crate::config::{Account, Config};
use std::io::Read;

/// The most the console reads of one file (downloads and error tables).
pub const MAX_READ: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("account {0} is no longer configured")]
    NoAccount(String),
    #[error("{0}")]
    Drop(#[from] crate::drop::DropError),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
}

pub fn account<'a>(config: &'a Config, name: &str) -> Result<&'a Account, ReadError> {
    config.account(name).ok_or_else(|| ReadError::NoAccount(name.to_string()))
}

/// The whole content of `path` on the account's drop.
pub fn read(acct: &Account, path: &str) -> Result<Vec<u8>, ReadError> {
    let mut drop = crate::engine::account::open_drop(acct)?;
    let mut r = drop.open_read(path)?;
    let mut out = Vec::new();
    (&mut r)
        .take(MAX_READ + 1)
        .read_to_end(&mut out)
        .map_err(|source| ReadError::Io { path: path.to_string(), source })?;
    if out.len() as u64 > MAX_READ {
        return Err(ReadError::TooLarge { path: path.to_string(), max: MAX_READ });
    }
    Ok(out)
}

/// An error file as a table: the original header and, per error, the original cells and
/// line, column, code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorTable {
    pub header: Vec<String>,
    pub rows: Vec<ErrorRow>,
    /// Rows past the limit, not shown.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRow {
    pub cells: Vec<String>,
    pub line: String,
    pub column: String,
    pub code: String,
    pub message: String,
}

/// Names that say the file is sealed with OpenPGP (`pgp_encrypt_results`).
pub fn is_sealed(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [".pgp", ".gpg", ".asc"].iter().any(|s| p.ends_with(s))
}

/// Parse an error file (BOM, the account's delimiter, our columns `line,column,code,message`
/// last or followed by `original_file,original_line`, see `formats::replay`).
pub fn parse(bytes: &[u8], delimiter: u8, limit: usize) -> Result<ErrorTable, String> {
    use crate::formats::replay::{ORIGIN_COLUMNS, OUR_COLUMNS};
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut r = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(bytes);
    let header: Vec<String> = r.headers().map_err(|e| e.to_string())?.iter().map(str::to_string).collect();
    let n = header.len();
    let ends = |tail: &[&str]| n >= tail.len() && header[n - tail.len()..] == *tail;
    let full: Vec<&str> = OUR_COLUMNS.iter().chain(ORIGIN_COLUMNS.iter()).copied().collect();
    // Where our four columns start.
    let at = if ends(&full) {
        n - full.len()
    } else if ends(&OUR_COLUMNS) {
        n - OUR_COLUMNS.len()
    } else {
        return Err("it does not have the columns line, column, code, message after the original ones".into());
    };
    let mut rows = Vec::new();
    let mut more = false;
    for rec in r.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        if rows.len() == limit {
            more = true;
            break;
        }
        let cells: Vec<String> = rec.iter().map(str::to_string).collect();
        let cell = |i: usize| cells.get(i).cloned().unwrap_or_default();
        let (line, column, code, message) = (cell(at), cell(at + 1), cell(at + 2), cell(at + 3));
        rows.push(ErrorRow { cells: cells.iter().take(at).cloned().collect(), line, column, code, message });
    }
    Ok(ErrorTable { header: header[..at].to_vec(), rows, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_error_file_of_ours() {
        let text = "\u{feff}sku;quantity;line;column;code;message\nRED;'-5;2;quantity;negative_quantity;below zero\n";
        let t = parse(text.as_bytes(), b';', 10).unwrap();
        assert_eq!(t.header, ["sku", "quantity"]);
        assert_eq!(t.rows[0].cells, ["RED", "'-5"]);
        assert_eq!((t.rows[0].line.as_str(), t.rows[0].code.as_str()), ("2", "negative_quantity"));
        assert!(parse(b"a,b\n1,2\n", b',', 10).is_err());
        let named = "sku,quantity,line,column,code,message,original_file,original_line\nRED,x,2,quantity,bad,m,inbound/inventory/s.csv,2\n";
        let t = parse(named.as_bytes(), b',', 10).unwrap();
        assert_eq!((t.header.len(), t.rows[0].cells.len(), t.rows[0].message.as_str()), (2, 2, "m"));
    }
}
