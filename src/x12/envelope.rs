//! The envelope: what the ISA says (parties, control number, version), whether it comes from the
//! partner and is addressed to us, and the trailer checks (SE, GE, IEA). Pure functions over
//! segments; `inbound` sequences them.

use super::read::Segment;
use super::{Party, Separators, Version};
use crate::formats::{ErrorCode, FileRejection, RecordError};

/// What the ISA of a received interchange says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interchange {
    /// ISA05/06; `application_id` is empty (it is in each GS, not in the ISA).
    pub sender: Party,
    /// ISA07/08; `application_id` is empty.
    pub receiver: Party,
    /// ISA13.
    pub control: String,
    /// From ISA12.
    pub version: Version,
    /// ISA15: `P` production, `T` test.
    pub usage: char,
    pub separators: Separators,
    /// ISA09 (YYMMDD) and ISA10 (HHMM), as written.
    pub date: String,
    pub time: String,
    /// ISA14 = 1: the sender asks for a TA1.
    pub ack_requested: bool,
}

/// The widths of ISA01..ISA16.
const ISA_WIDTHS: [usize; 16] = [2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1];

fn envelope(line: u64, message: impl Into<String>) -> FileRejection {
    FileRejection::new(ErrorCode::X12Envelope, Some(line), message)
}

/// Reads and checks the ISA (segment 1): fixed widths, a known version, a numeric control number.
pub fn interchange(isa: &Segment, separators: Separators) -> Result<Interchange, FileRejection> {
    if isa.id() != "ISA" || isa.element_count() != 16 {
        return Err(envelope(
            1,
            format!("the ISA has {} elements, it must have 16 of fixed width", isa.element_count()),
        ));
    }
    for (i, width) in ISA_WIDTHS.iter().enumerate() {
        let got = isa.raw(i + 1).len();
        if got != *width {
            let mut r = envelope(1, format!("ISA{:02} is {got} characters, it must be {width}", i + 1));
            r.column = Some(format!("ISA-{:02}", i + 1));
            return Err(r);
        }
    }
    let version = match isa.raw(12) {
        "00401" => Version::V004010,
        "00501" => Version::V005010,
        other => {
            let mut r = envelope(1, format!("ISA12 version '{other}' is not supported (00401 or 00501)"));
            r.column = Some("ISA-12".into());
            return Err(r);
        }
    };
    let control = isa.raw(13);
    if !control.bytes().all(|b| b.is_ascii_digit()) {
        let mut r = FileRejection::new(
            ErrorCode::X12ControlNumber,
            Some(1),
            format!("ISA13 control number '{control}' must be 9 digits"),
        );
        r.column = Some("ISA-13".into());
        return Err(r);
    }
    let party = |q: usize| Party {
        qualifier: isa.raw(q).trim().to_string(),
        id: isa.raw(q + 1).trim().to_string(),
        application_id: String::new(),
    };
    Ok(Interchange {
        sender: party(5),
        receiver: party(7),
        control: control.to_string(),
        version,
        usage: isa.raw(15).chars().next().unwrap_or(' '),
        separators,
        date: isa.raw(9).to_string(),
        time: isa.raw(10).to_string(),
        ack_requested: isa.raw(14) == "1",
    })
}

/// The interchange must come from `partner` and be addressed to `us` (ISA qualifier and id;
/// ids compared trimmed, case-sensitively, as X12 ids are).
///
/// ```
/// use stitch_bridge::x12::envelope::{check_parties, Interchange};
/// use stitch_bridge::x12::{Party, Separators, Version};
/// use stitch_bridge::formats::ErrorCode;
///
/// let party = |id: &str| Party { qualifier: "ZZ".into(), id: id.into(), application_id: String::new() };
/// let i = Interchange {
///     sender: party("WAREHOUSE"), receiver: party("STITCHBRIDGE"), control: "000000001".into(),
///     version: Version::V004010, usage: 'P', separators: Separators::ours(Version::V004010),
///     date: "240315".into(), time: "1200".into(), ack_requested: false,
/// };
/// assert!(check_parties(&i, &party("WAREHOUSE"), &party("STITCHBRIDGE")).is_ok());
/// let refused = check_parties(&i, &party("OTHER3PL"), &party("STITCHBRIDGE")).unwrap_err();
/// assert_eq!(refused.code, ErrorCode::X12Partner);
/// assert!(refused.message.contains("ZZ:WAREHOUSE") && refused.message.contains("ZZ:OTHER3PL"));
/// ```
pub fn check_parties(interchange: &Interchange, partner: &Party, us: &Party) -> Result<(), FileRejection> {
    let same = |a: &Party, b: &Party| a.qualifier.trim() == b.qualifier.trim() && a.id.trim() == b.id.trim();
    let shown = |p: &Party| format!("{}:{}", p.qualifier.trim(), p.id.trim());
    let (sender, receiver) = (&interchange.sender, &interchange.receiver);
    let refuse = |column: &str, what: &str, found: &Party, expected: &Party| {
        let mut r = FileRejection::new(
            ErrorCode::X12Partner,
            Some(1),
            format!("the interchange's {what} is {}, expected {}", shown(found), shown(expected)),
        );
        r.column = Some(column.into());
        r
    };
    if !same(sender, partner) {
        return Err(refuse("ISA-06", "sender", sender, partner));
    }
    if !same(receiver, us) {
        return Err(refuse("ISA-08", "receiver", receiver, us));
    }
    Ok(())
}

/// A located envelope fault in a set or group (the error file's row).
pub(crate) fn fault(line: u64, column: &str, code: ErrorCode, message: impl Into<String>) -> RecordError {
    RecordError::new(line, column, code, message)
}

/// SE checks: SE01 counts ST..SE inclusive, SE02 repeats ST02. Returns the AK502 code and the
/// located error of the first fault.
pub(crate) fn check_se(se: &Segment, st02: &str, counted: u64) -> Option<(&'static str, RecordError)> {
    let line = se.ordinal;
    match se.element(1).map(str::parse::<u64>) {
        Some(Ok(n)) if n == counted => {}
        Some(Ok(n)) => {
            let m = format!("SE01 says {n} segments, the set has {counted} (ST to SE inclusive)");
            return Some(("4", fault(line, "SE-01", ErrorCode::X12Count, m)));
        }
        _ => {
            let m = format!("SE01 '{}' must be the number of segments of the set ({counted})", se.raw(1));
            return Some(("4", fault(line, "SE-01", ErrorCode::X12Count, m)));
        }
    }
    let se02 = se.element(2).unwrap_or("");
    if se02 != st02 {
        let m = format!("SE02 '{se02}' does not match ST02 '{st02}'");
        return Some(("3", fault(line, "SE-02", ErrorCode::X12ControlNumber, m)));
    }
    None
}

/// GE checks: GE01 counts the sets, GE02 repeats GS06. Returns the AK905 code and the error.
pub(crate) fn check_ge(ge: &Segment, gs06: &str, sets: u64) -> Option<(&'static str, RecordError)> {
    let line = ge.ordinal;
    if ge.element(1).and_then(|v| v.parse::<u64>().ok()) != Some(sets) {
        let m = format!("GE01 '{}' does not match the {sets} transaction sets of the group", ge.raw(1));
        return Some(("5", fault(line, "GE-01", ErrorCode::X12Count, m)));
    }
    let ge02 = ge.element(2).unwrap_or("");
    if ge02 != gs06 {
        let m = format!("GE02 '{ge02}' does not match GS06 '{gs06}'");
        return Some(("4", fault(line, "GE-02", ErrorCode::X12ControlNumber, m)));
    }
    None
}

/// IEA checks: IEA01 counts the groups, IEA02 repeats ISA13. A fault rejects the file.
pub(crate) fn check_iea(iea: &Segment, isa13: &str, groups: u64) -> Result<(), FileRejection> {
    let line = Some(iea.ordinal);
    if iea.element(1).and_then(|v| v.parse::<u64>().ok()) != Some(groups) {
        let m = format!("IEA01 '{}' does not match the {groups} functional groups of the interchange", iea.raw(1));
        let mut r = FileRejection::new(ErrorCode::X12Count, line, m);
        r.column = Some("IEA-01".into());
        return Err(r);
    }
    let iea02 = iea.element(2).unwrap_or("");
    if iea02 != isa13 {
        let m = format!("IEA02 '{iea02}' does not match ISA13 '{isa13}'");
        let mut r = FileRejection::new(ErrorCode::X12ControlNumber, line, m);
        r.column = Some("IEA-02".into());
        return Err(r);
    }
    Ok(())
}
