//! ANSI X12 beside CSV: the envelope, the inbound sets (846, 947, 944, 945, 850, 997) and the
//! outbound ones (940, 997). Pure, like `formats`: bytes in, records and located errors out;
//! bytes out from plain values. The engine decides what is read and written, and the ledger
//! allocates control numbers before anything is written.
//!
//! Shared vocabulary lives here; each concern has its own file:
//! - `read.rs`: the tokenizer (separators from the ISA, segments with their ordinal).
//! - `envelope.rs`: ISA/GS/ST checks (counts, control numbers, partner ids).
//! - `inbound.rs`: the sets we receive mapped to `formats` records, one `Unit` each.
//! - `write.rs`: rendering the 940 and 997 we send.

pub mod envelope;
pub mod inbound;
pub mod read;
pub mod write;

use serde::{Deserialize, Serialize};

/// The four separators of an interchange, read from its ISA (never assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    /// ISA byte 4.
    pub element: u8,
    /// ISA16.
    pub component: u8,
    /// The byte after ISA16.
    pub segment: u8,
    /// ISA11 in 00501 (`None` in 00401, where ISA11 is the standards id `U`).
    pub repetition: Option<u8>,
}

impl Separators {
    /// What we write: `*`, `>`, `~`, and `^` for repetitions in 005010.
    pub fn ours(version: Version) -> Separators {
        Separators {
            element: b'*',
            component: b'>',
            segment: b'~',
            repetition: matches!(version, Version::V005010).then_some(b'^'),
        }
    }
}

/// The X12 versions we read and write (GS08 `004010` / `005010`; ISA12 `00401` / `00501`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Version {
    #[default]
    #[serde(rename = "004010")]
    V004010,
    #[serde(rename = "005010")]
    V005010,
}

impl Version {
    /// GS08.
    pub fn gs08(self) -> &'static str {
        match self {
            Version::V004010 => "004010",
            Version::V005010 => "005010",
        }
    }
    /// ISA12.
    pub fn isa12(self) -> &'static str {
        match self {
            Version::V004010 => "00401",
            Version::V005010 => "00501",
        }
    }
}

/// One side of an interchange: ISA05/06 (or 07/08) and GS02 (or GS03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// ISA05/ISA07, e.g. `ZZ`.
    pub qualifier: String,
    /// ISA06/ISA08, trimmed (the ISA pads it to 15 characters).
    pub id: String,
    /// GS02/GS03.
    pub application_id: String,
}

/// The transaction sets we know, with their GS01 functional identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetKind {
    /// 846 inventory inquiry/advice: an inventory snapshot.
    Inventory846,
    /// 947 warehouse inventory adjustment advice: inventory deltas.
    Adjustment947,
    /// 944 warehouse stock transfer receipt advice: inventory deltas (receipts).
    Receipt944,
    /// 945 warehouse shipping advice: shipments.
    Shipping945,
    /// 850 purchase order: orders.
    Order850,
    /// 940 warehouse shipping order (we send it).
    Order940,
    /// 997 functional acknowledgment (both ways).
    Ack997,
}

impl SetKind {
    pub const ALL: [SetKind; 7] = [
        SetKind::Inventory846,
        SetKind::Adjustment947,
        SetKind::Receipt944,
        SetKind::Shipping945,
        SetKind::Order850,
        SetKind::Order940,
        SetKind::Ack997,
    ];

    /// ST01.
    pub fn st01(self) -> &'static str {
        match self {
            SetKind::Inventory846 => "846",
            SetKind::Adjustment947 => "947",
            SetKind::Receipt944 => "944",
            SetKind::Shipping945 => "945",
            SetKind::Order850 => "850",
            SetKind::Order940 => "940",
            SetKind::Ack997 => "997",
        }
    }

    /// GS01.
    pub fn functional_id(self) -> &'static str {
        match self {
            SetKind::Inventory846 => "IB",
            SetKind::Adjustment947 => "AW",
            SetKind::Receipt944 => "RE",
            SetKind::Shipping945 => "SW",
            SetKind::Order850 => "PO",
            SetKind::Order940 => "OW",
            SetKind::Ack997 => "FA",
        }
    }

    pub fn from_st01(st01: &str) -> Option<SetKind> {
        SetKind::ALL.into_iter().find(|k| k.st01() == st01)
    }

    /// The CSV kind whose records the set carries (`None` for 940 and 997, which are not records).
    pub fn kind(self) -> Option<crate::formats::Kind> {
        use crate::formats::Kind;
        match self {
            SetKind::Inventory846 | SetKind::Adjustment947 | SetKind::Receipt944 => Some(Kind::Inventory),
            SetKind::Shipping945 => Some(Kind::Shipments),
            SetKind::Order850 => Some(Kind::Orders),
            SetKind::Order940 | SetKind::Ack997 => None,
        }
    }

    /// Sets whose quantities are adjustments, not on-hand counts.
    pub fn is_delta(self) -> bool {
        matches!(self, SetKind::Adjustment947 | SetKind::Receipt944)
    }
}

/// Is this the start of an X12 interchange? The first non-blank bytes, after an optional BOM,
/// are `ISA`.
pub fn is_x12(first_bytes: &[u8]) -> bool {
    let b = first_bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first_bytes);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    b[start..].starts_with(b"ISA")
}

/// A syntax fault inside a transaction set, in the terms a 997 reports it (AK3 and AK4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// AK301: the segment id (`W12`).
    pub segment_id: String,
    /// AK302: the segment's position in the set, ST = 1.
    pub position_in_set: u32,
    /// AK304: the segment syntax error code (1 unrecognised segment, 2 unexpected, 3 mandatory
    /// missing, 5 too many occurrences, 8 segment has data element errors, …).
    pub segment_code: String,
    /// AK401 and AK403/AK404: the element position (1-based), its error code (1 mandatory
    /// missing, 4 too short, 5 too long, 6 invalid character, 7 invalid code value, 8 invalid
    /// date, …) and the bad value, when an element is at fault.
    pub element: Option<ElementError>,
    /// The segment's ordinal in the file (ISA = 1), for the error file.
    pub line: u64,
    /// Human text for the error file.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementError {
    pub position: u32,
    pub code: String,
    pub value: Option<String>,
}

/// What a 997 says about one received set (AK2 + AK3/AK4 + AK5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetResult {
    /// ST01.
    pub id: String,
    /// ST02.
    pub control: String,
    /// Empty: accepted (AK5*A). Otherwise rejected (AK5*R) with these details.
    pub errors: Vec<SyntaxError>,
    /// AK502 when the set as a whole is at fault (X12 element 718: 1 not supported, 2 SE
    /// missing, 3 SE02 differs from ST02, 4 SE01 wrong count, 6 invalid ST01, 23 ST02 not unique).
    pub set_code: Option<String>,
}

impl SetResult {
    /// AK5*A: no segment at fault and no fault of the set as a whole.
    pub fn accepted(&self) -> bool {
        self.errors.is_empty() && self.set_code.is_none()
    }
}

/// What a 997 says about one received functional group (AK1 + sets + AK9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    /// GS01.
    pub functional_id: String,
    /// GS06.
    pub control: String,
    /// GS08, so the 997 answers in the partner's version.
    pub version: String,
    pub sets: Vec<SetResult>,
    /// AK905 when the group itself is at fault (5 GE01 wrong count, 4 control number mismatch, …).
    pub group_code: Option<String>,
}

impl GroupResult {
    /// AK901: A when every set is accepted, R when none is, P when some are.
    pub fn status(&self) -> &'static str {
        let accepted = self.sets.iter().filter(|s| s.accepted()).count();
        if self.group_code.is_some() || accepted == 0 {
            "R"
        } else if accepted == self.sets.len() {
            "A"
        } else {
            "P"
        }
    }
}

/// The AK403 code of a value error that is X12 syntax — the element is missing, not a number,
/// not a date, too long, not one of its codes — or `None` for an error of meaning (a negative
/// stock, a wrong check digit, an unknown country, a repeated SKU), which the 997 accepts and the
/// error file reports. A set with a syntax error is rejected whole (AK5 R), as the standard has it.
pub fn element_syntax_code(code: crate::formats::ErrorCode) -> Option<&'static str> {
    use crate::formats::ErrorCode as C;
    match code {
        C::MissingValue => Some("1"),
        C::BadInteger | C::BadDecimal => Some("6"),
        C::FieldTooLong => Some("5"),
        C::BadChoice => Some("7"),
        C::BadDate => Some("8"),
        _ => None,
    }
}

/// A unit's located error as the 997 reports it (AK3 and AK4), when it is syntax: `column` is
/// the element reference (`W12-03`), `set_start` the ordinal of the set's ST.
pub fn syntax_error_of(e: &crate::formats::RecordError, set_start: u64) -> Option<SyntaxError> {
    let element_code = element_syntax_code(e.code)?;
    let (segment_id, position) = match e.column.split_once('-') {
        Some((id, n)) => (id.to_string(), n.parse::<u32>().ok()),
        None => (e.column.clone(), None),
    };
    Some(SyntaxError {
        segment_id,
        position_in_set: u32::try_from(e.line.saturating_sub(set_start) + 1).unwrap_or(u32::MAX),
        segment_code: "8".into(),
        element: position.map(|position| ElementError { position, code: element_code.into(), value: None }),
        line: e.line,
        message: e.message.clone(),
    })
}
