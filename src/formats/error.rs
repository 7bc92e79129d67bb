//! Error codes and located errors. Codes are stable strings: warehouses and scripts match on them.

use serde::Serialize;
use std::fmt;

/// Every problem the parsers report. `as_str` values are part of the public contract: never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A required column is absent from the header (file rejected).
    MissingColumn,
    /// Two header cells map to the same canonical column (file rejected).
    DuplicateColumn,
    MissingValue,
    BadInteger,
    BadDecimal,
    NegativeQuantity,
    ZeroQuantity,
    /// A price, cost or weight below zero.
    NegativeAmount,
    BadDate,
    BadCountry,
    BadCurrency,
    BadBarcode,
    /// A value outside a fixed list (shipping_speed, action).
    BadChoice,
    DuplicateSku,
    InconsistentOrderHeader,
    InconsistentShipmentHeader,
    OrderNotContiguous,
    ShipmentNotContiguous,
    /// An order or shipment with more rows than `max_rows_per_group`.
    GroupTooLarge,
    /// A row that is fine by itself but belongs to an order/shipment with a bad row.
    GroupRejected,
    FieldTooLong,
    BadEncoding,
    RaggedRow,
    /// Warning only: a header column the kind does not use.
    UnknownColumn,
    FileTooLarge,
    TooManyRows,
    EmptyFile,
    /// The input could not be read (file rejected).
    ReadError,
    /// A quote opened and never closed: the rest of the file would be one value (file rejected).
    UnterminatedQuote,
    /// The header is split by another delimiter than the one configured (file rejected).
    WrongDelimiter,
    /// The file is a spreadsheet or other zip archive, not CSV text (file rejected).
    NotCsv,
    /// X12: the envelope is malformed (ISA not 106 characters, a trailer missing, a segment
    /// outside a set, an unsupported version).
    X12Envelope,
    /// X12: SE01, GE01 or IEA01 does not match what it counts.
    X12Count,
    /// X12: a trailer's control number differs from its header's (SE02/ST02, GE02/GS06,
    /// IEA02/ISA13), or ST02 repeats within a group.
    X12ControlNumber,
    /// X12: a transaction set we do not read (ST01), or its GS01 does not fit it.
    X12UnknownSet,
    /// X12: the ISA's sender or receiver is not the configured partner or us.
    X12Partner,
    /// OpenPGP: the file is encrypted to a key that is not the account's (the message names the
    /// key ids it was encrypted to), or the account has no secret key configured.
    PgpWrongKey,
    /// OpenPGP: a truncated or corrupt packet stream, a failed integrity check (MDC), or a
    /// message without integrity protection (refused: it could be altered unnoticed).
    PgpCorrupt,
    /// OpenPGP: a signature that does not verify, or none from the partner's key where one is
    /// required (`pgp_require_signature`).
    PgpBadSignature,
    /// A corrupt or unreadable gzip or zip wrapper.
    BadArchive,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 40] = [
        ErrorCode::MissingColumn,
        ErrorCode::DuplicateColumn,
        ErrorCode::MissingValue,
        ErrorCode::BadInteger,
        ErrorCode::BadDecimal,
        ErrorCode::NegativeQuantity,
        ErrorCode::ZeroQuantity,
        ErrorCode::NegativeAmount,
        ErrorCode::BadDate,
        ErrorCode::BadCountry,
        ErrorCode::BadCurrency,
        ErrorCode::BadBarcode,
        ErrorCode::BadChoice,
        ErrorCode::DuplicateSku,
        ErrorCode::InconsistentOrderHeader,
        ErrorCode::InconsistentShipmentHeader,
        ErrorCode::OrderNotContiguous,
        ErrorCode::ShipmentNotContiguous,
        ErrorCode::GroupTooLarge,
        ErrorCode::GroupRejected,
        ErrorCode::FieldTooLong,
        ErrorCode::BadEncoding,
        ErrorCode::RaggedRow,
        ErrorCode::UnknownColumn,
        ErrorCode::FileTooLarge,
        ErrorCode::TooManyRows,
        ErrorCode::EmptyFile,
        ErrorCode::ReadError,
        ErrorCode::UnterminatedQuote,
        ErrorCode::WrongDelimiter,
        ErrorCode::NotCsv,
        ErrorCode::X12Envelope,
        ErrorCode::X12Count,
        ErrorCode::X12ControlNumber,
        ErrorCode::X12UnknownSet,
        ErrorCode::X12Partner,
        ErrorCode::PgpWrongKey,
        ErrorCode::PgpCorrupt,
        ErrorCode::PgpBadSignature,
        ErrorCode::BadArchive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingColumn => "missing_column",
            ErrorCode::DuplicateColumn => "duplicate_column",
            ErrorCode::MissingValue => "missing_value",
            ErrorCode::BadInteger => "bad_integer",
            ErrorCode::BadDecimal => "bad_decimal",
            ErrorCode::NegativeQuantity => "negative_quantity",
            ErrorCode::ZeroQuantity => "zero_quantity",
            ErrorCode::NegativeAmount => "negative_amount",
            ErrorCode::BadDate => "bad_date",
            ErrorCode::BadCountry => "bad_country",
            ErrorCode::BadCurrency => "bad_currency",
            ErrorCode::BadBarcode => "bad_barcode",
            ErrorCode::BadChoice => "bad_choice",
            ErrorCode::DuplicateSku => "duplicate_sku",
            ErrorCode::InconsistentOrderHeader => "inconsistent_order_header",
            ErrorCode::InconsistentShipmentHeader => "inconsistent_shipment_header",
            ErrorCode::OrderNotContiguous => "order_not_contiguous",
            ErrorCode::ShipmentNotContiguous => "shipment_not_contiguous",
            ErrorCode::GroupTooLarge => "group_too_large",
            ErrorCode::GroupRejected => "group_rejected",
            ErrorCode::FieldTooLong => "field_too_long",
            ErrorCode::BadEncoding => "bad_encoding",
            ErrorCode::RaggedRow => "ragged_row",
            ErrorCode::UnknownColumn => "unknown_column",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::TooManyRows => "too_many_rows",
            ErrorCode::EmptyFile => "empty_file",
            ErrorCode::ReadError => "read_error",
            ErrorCode::UnterminatedQuote => "unterminated_quote",
            ErrorCode::WrongDelimiter => "wrong_delimiter",
            ErrorCode::NotCsv => "not_csv",
            ErrorCode::X12Envelope => "x12_envelope",
            ErrorCode::X12Count => "x12_count",
            ErrorCode::X12ControlNumber => "x12_control_number",
            ErrorCode::X12UnknownSet => "x12_unknown_set",
            ErrorCode::X12Partner => "x12_partner",
            ErrorCode::PgpWrongKey => "pgp_wrong_key",
            ErrorCode::PgpCorrupt => "pgp_corrupt",
            ErrorCode::PgpBadSignature => "pgp_bad_signature",
            ErrorCode::BadArchive => "bad_archive",
        }
    }

    /// Warnings are reported but never reject anything.
    pub fn is_warning(self) -> bool {
        self == ErrorCode::UnknownColumn
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole file is refused: nothing in it may be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRejection {
    pub code: ErrorCode,
    /// 1-based physical line, when the problem has one.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

impl FileRejection {
    pub(crate) fn new(code: ErrorCode, line: Option<u64>, message: impl Into<String>) -> Self {
        FileRejection { code, line, column: None, message: message.into() }
    }
}

impl fmt::Display for FileRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(col) = &self.column {
            write!(f, "{col}: ")?;
        }
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for FileRejection {}

/// A problem with one row. `column` is the canonical column name for known columns, the original
/// header name for others, and empty when the problem concerns the whole row (e.g. `ragged_row`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    /// 1-based physical line where the record starts (the header is line 1).
    pub line: u64,
    pub column: String,
    pub code: ErrorCode,
    pub message: String,
}

impl RecordError {
    pub(crate) fn new(line: u64, column: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        RecordError { line, column: column.to_string(), code, message: message.into() }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}: {}", self.line, self.column, self.code, self.message)
    }
}

/// `1536` → `1.5 KB`: sizes of over-long values in messages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}
