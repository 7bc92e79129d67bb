//! The sets we receive, mapped to `formats` records: 846 (inventory snapshot), 947 and 944
//! (inventory deltas), 945 (shipments), 850 (orders), and the partner's 997s. The mapping of
//! each element is documented in `docs/x12.md`.
//!
//! Units of acceptance: an 846 LIN loop, a 947 W19 loop and a 944 W07 loop are one inventory
//! record each; a 945 or an 850 is one record per set. Values are judged like CSV cells (the same
//! codes); those are unit errors and never make the set a syntax fault: a 997 says the syntax was
//! accepted, not the business content.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::io::Read;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

pub use super::envelope::Interchange;
use super::envelope::{self, check_ge, check_iea, check_se, fault};
use super::read::{ReadError, Segment, Segments, Tokenizer};
use super::{GroupResult, SetKind, SetResult};
use crate::formats::fields::{self, shown, FieldError};
use crate::formats::{fingerprint, LateDuplicate, LateDuplicates};
use crate::formats::{
    Address, ErrorCode, FileRejection, InventoryRecord, OrderAction, OrderItem, OrderRecord, RawRow, Record,
    RecordError, ShipmentItem, ShipmentRecord, ShippingSpeed, Unit,
};

/// Limits and settings for reading an interchange.
#[derive(Debug, Clone)]
pub struct X12Options {
    /// Zone for dates and times (X12 dates carry no offset).
    pub timezone: Tz,
    pub max_file_bytes: u64,
    /// Longest element value used by a mapping (`field_too_long` beyond).
    pub max_field_len: usize,
    /// Most segments in the file.
    pub max_rows: u64,
    /// Most segments kept for one unit (a 945 or 850 set, a LIN loop); beyond, the unit is
    /// refused with `group_too_large`.
    pub max_rows_per_group: usize,
    /// Longest segment, in bytes; a longer one rejects the file (`field_too_long`).
    pub max_segment_len: usize,
}

impl X12Options {
    /// The CSV limits, applied to segments: a row is a segment, a cell an element.
    pub fn from_parse(o: &crate::formats::ParseOptions) -> Self {
        X12Options {
            timezone: o.timezone,
            max_file_bytes: o.max_file_bytes,
            max_field_len: o.max_field_len,
            max_rows: o.max_rows,
            max_rows_per_group: o.max_rows_per_group.max(1),
            max_segment_len: o.max_field_len.saturating_mul(8).clamp(1024, 1 << 20),
        }
    }
}

impl Default for X12Options {
    fn default() -> Self {
        X12Options::from_parse(&crate::formats::ParseOptions::default())
    }
}

/// What reading an interchange yields, in file order.
// Units are most of the events: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One unit of acceptance, like CSV's `formats::Unit`: `rows` are the unit's segments
    /// (`line` = ordinal, `fields[0]` = segment id).
    Unit { set: SetKind, unit: Unit },
    /// A set ended. `result.set_code` `None` = syntax accepted; otherwise the units emitted since
    /// the previous `SetEnd` must not be applied. `errors` locate the fault for the error file
    /// (line = ordinal, column = element reference like `SE-01`, an `x12_*` code).
    SetEnd { kind: Option<SetKind>, result: SetResult, first_line: u64, last_line: u64, errors: Vec<RecordError> },
    /// A group ended (after its `SetEnd`s). `group_code` `Some` = none of its sets may be applied;
    /// `X12Units::group_errors` then locates the fault.
    GroupEnd(GroupResult),
    /// A 997 received from the partner (one per 997 set), yielded before its `SetEnd`.
    Ack(ReceivedAck),
}

/// What a partner's 997 acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAck {
    /// The 997's ST line.
    pub line: u64,
    /// AK1-01 (GS01 of the acknowledged group).
    pub group_functional_id: String,
    /// AK1-02 (GS06).
    pub group_control: String,
    /// AK9-01: A, E, P or R.
    pub group_status: String,
    /// Per AK2: (ST01, ST02, AK5-01).
    pub sets: Vec<(String, String, String)>,
}

/// Reads and checks the ISA; the rest is read as the iterator is driven.
///
/// ```
/// use stitch_bridge::x12::inbound::{read, Event, X12Options};
/// use stitch_bridge::formats::Record;
///
/// let x12 = "ISA*00*          *00*          *ZZ*WAREHOUSE      *ZZ*STITCHBRIDGE   *240315*1200*U*00401*000000001*0*P*>~\
///            GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~ST*846*0001~BIA*00*SI*INV1*20240315~\
///            LIN**SK*WIDGET-RED~QTY*33*120~SE*5*0001~GE*1*1~IEA*1*000000001~";
/// let mut units = read(x12.as_bytes(), &X12Options::default())?;
/// assert_eq!(units.interchange().sender.id, "WAREHOUSE");
/// let events: Vec<Event> = units.collect::<Result<_, _>>()?;
/// let Event::Unit { unit, .. } = &events[0] else { panic!("a unit first") };
/// let Ok(Record::Inventory(r)) = &unit.result else { panic!("accepted") };
/// assert_eq!((r.line, r.sku.as_str(), r.quantity), (5, "WIDGET-RED", 120));
/// assert!(matches!(&events[1], Event::SetEnd { result, .. } if result.set_code.is_none()));
/// assert!(matches!(&events[2], Event::GroupEnd(g) if g.status() == "A"));
/// # Ok::<(), stitch_bridge::formats::FileRejection>(())
/// ```
pub fn read<R: Read>(reader: R, opts: &X12Options) -> Result<X12Units<R>, FileRejection> {
    let (tok, isa) = Tokenizer::open(reader, opts.max_segment_len, opts.max_file_bytes).map_err(|e| rejection(e, 1))?;
    let interchange = envelope::interchange(&isa, tok.separators())?;
    Ok(X12Units::new(Segments::here(tok), interchange, opts))
}

/// Like `read`, with framing (reading, segment splitting, the UTF-8 check) on a thread of its
/// own, so that it overlaps with checking on this one: `validate`'s path, which owns its file.
/// Same events, same rejections.
///
/// ```
/// use stitch_bridge::x12::inbound::{read, read_piped, X12Options};
///
/// let x12: &'static [u8] = b"ISA*00*          *00*          *ZZ*WAREHOUSE      *ZZ*STITCHBRIDGE   *240315*1200*U*00401*000000001*0*P*>~\
///     GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~ST*846*0001~BIA*00*SI*INV1*20240315~\
///     LIN**SK*RED~QTY*33*x~SE*5*0001~GE*1*1~IEA*1*000000001~";
/// let here: Vec<_> = read(x12, &X12Options::default())?.collect();
/// let piped: Vec<_> = read_piped(x12, &X12Options::default())?.collect();
/// assert_eq!(here, piped);
/// # Ok::<(), stitch_bridge::formats::FileRejection>(())
/// ```
pub fn read_piped<R: Read + Send + 'static>(reader: R, opts: &X12Options) -> Result<X12Units<R>, FileRejection> {
    let (tok, isa) = Tokenizer::open(reader, opts.max_segment_len, opts.max_file_bytes).map_err(|e| rejection(e, 1))?;
    let interchange = envelope::interchange(&isa, tok.separators())?;
    let segments = Segments::piped(tok).map_err(|e| rejection(e, 1))?;
    Ok(X12Units::new(segments, interchange, opts))
}

impl<R> X12Units<R> {
    fn new(tok: Segments<R>, interchange: Interchange, opts: &X12Options) -> Self {
        X12Units {
            tok,
            last: 1,
            interchange,
            opts: opts.clone(),
            seg: Segment::default(),
            pool: Vec::new(),
            used: 0,
            overflow: 0,
            queue: VecDeque::new(),
            finished: false,
            ended: false,
            group: None,
            set: None,
            groups: 0,
            group_errors: Vec::new(),
            seen: Seen::Inline(HashSet::with_hasher(SEEN_HASH)),
            lean: false,
            lean_accepted: 0,
            segments: 1,
        }
    }
}

/// A repeated SKU confirmed by `resolve_duplicates`.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRepeat {
    /// The `duplicate_sku` error the usual read puts on the unit.
    pub error: RecordError,
    /// The segment the error is on (LIN, W19, W07).
    pub row: Option<RawRow>,
    /// The unit had no other problem (it streamed by as accepted).
    pub otherwise_valid: bool,
}

/// The repeats among `cands` (from `X12Units::finish` after a `check_only` read of the same
/// interchange, ordered by line): `reader` reads it again for the SKUs on those lines, which are
/// compared, so a shared fingerprint is no repeat. The same errors, on the same units, as the
/// usual read flags as it goes; ordered by line.
pub fn resolve_duplicates<R: Read>(
    reader: R,
    opts: &X12Options,
    cands: &[LateDuplicate],
) -> Result<Vec<LateRepeat>, FileRejection> {
    if cands.is_empty() {
        return Ok(Vec::new());
    }
    let lines: HashSet<u64> = cands.iter().flat_map(|d| [d.line, d.first_line]).collect();
    let mut units = read(reader, opts)?.collect_skus(lines.clone());
    let mut rows: std::collections::HashMap<u64, RawRow> = std::collections::HashMap::new();
    // A refusal ends this read where it ended the first, after every candidate.
    for ev in units.by_ref() {
        let Ok(Event::Unit { unit, .. }) = ev else { continue };
        for r in unit.rows.iter().filter(|r| lines.contains(&r.line)) {
            rows.insert(r.line, r.clone());
        }
    }
    let mut found = units.collected();
    found.sort_by_key(|c| c.error.line);
    let mut first: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for c in found {
        let line = c.error.line;
        if !first.insert(c.sku) {
            let otherwise_valid = cands.binary_search_by_key(&line, |d| d.line).is_ok_and(|i| cands[i].otherwise_valid);
            out.push(LateRepeat { row: rows.remove(&line), error: c.error, otherwise_valid });
        }
    }
    Ok(out)
}

fn rejection(e: ReadError, line: u64) -> FileRejection {
    match e {
        ReadError::Io(e) => FileRejection::new(ErrorCode::ReadError, None, format!("the file could not be read: {e}")),
        ReadError::TooLarge { limit } => FileRejection::new(
            ErrorCode::FileTooLarge,
            None,
            format!("the file is larger than the limit of {limit} bytes"),
        ),
        ReadError::SegmentTooLong { ordinal, limit } => FileRejection::new(
            ErrorCode::FieldTooLong,
            Some(ordinal),
            format!("segment {ordinal} is longer than {limit} bytes (is the segment terminator right?)"),
        ),
        ReadError::Isa(m) => FileRejection::new(ErrorCode::X12Envelope, Some(line), m),
    }
}

const SEEN_HASH: foldhash::quality::FixedState = foldhash::quality::FixedState::with_seed(0x5eed_0846);

/// How repeated inventory SKUs are found.
enum Seen {
    /// Every SKU's fingerprint in a set: a repeat is flagged on its own unit, at once.
    Inline(HashSet<u64, foldhash::quality::FixedState>),
    /// Fingerprints spooled and matched after the last unit (`check_only`), in flat memory.
    Late(LateDuplicates),
    /// A second read: the SKUs on these lines are collected, nothing is flagged.
    Collect { lines: HashSet<u64>, found: Vec<CollectedSku> },
}

/// A SKU on a line asked for by `collect_skus`, with the `duplicate_sku` error that line gets if
/// it repeats an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedSku {
    pub sku: String,
    pub error: RecordError,
}

struct GroupState {
    line: u64,
    functional_id: String,
    control: String,
    version: String,
    sets: Vec<SetResult>,
    st02s: HashSet<String>,
}

/// The loops of a set: which segment opens one, and which close it without joining it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loop {
    /// 846: LIN opens, CTT closes.
    Lin,
    /// 947: W19 opens; LX, W20, CTT close.
    W19,
    /// 944: W07 opens; LX, W14, CTT close.
    W07,
}

/// What a segment does to the loops of a set.
enum Role {
    Opens,
    Closes,
    Other,
}

impl Loop {
    /// Matched against literals, not a stored id: this runs for every body segment.
    fn role(self, id: &str) -> Role {
        match (self, id) {
            (Loop::Lin, "LIN") | (Loop::W19, "W19") | (Loop::W07, "W07") => Role::Opens,
            (Loop::Lin, "CTT") | (Loop::W19, "LX" | "W20" | "CTT") | (Loop::W07, "LX" | "W14" | "CTT") => Role::Closes,
            _ => Role::Other,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Loops of one record each (see `Loop`).
    Loops(Loop),
    /// The whole set is one record.
    Whole,
    Ack,
    /// Read for the counts only.
    Ignored,
}

struct SetState {
    kind: Option<SetKind>,
    body: Body,
    st01: String,
    st02: String,
    first_line: u64,
    /// Segments so far, ST included.
    count: u64,
    in_loop: bool,
    /// A fault found at ST: (AK502, error).
    fault: Option<(&'static str, RecordError)>,
    ack: Option<ReceivedAck>,
}

/// The events of one interchange; an `Err` rejects the whole file and ends the iteration.
pub struct X12Units<R> {
    tok: Segments<R>,
    /// Ordinal of the last segment read.
    last: u64,
    interchange: Interchange,
    opts: X12Options,
    /// The read buffer; swapped into `pool` when a unit keeps the segment.
    seg: Segment,
    pool: Vec<Segment>,
    used: usize,
    /// Segments of the current unit beyond `max_rows_per_group` (not kept).
    overflow: u64,
    queue: VecDeque<Result<Event, FileRejection>>,
    finished: bool,
    /// IEA seen.
    ended: bool,
    group: Option<GroupState>,
    set: Option<SetState>,
    groups: u64,
    group_errors: Vec<RecordError>,
    /// The SKUs of the file's inventory records (a repeat is `duplicate_sku`).
    seen: Seen,
    /// Accepted units are counted, not yielded (`check_only`).
    lean: bool,
    lean_accepted: u64,
    segments: u64,
}

impl<R> X12Units<R> {
    pub fn interchange(&self) -> &Interchange {
        &self.interchange
    }

    /// Why the last `GroupEnd` with a `group_code` was refused (GE-01, GE-02, or the missing
    /// GE), located; empty after an accepted group. Valid until the next `GroupEnd`.
    pub fn group_errors(&self) -> &[RecordError] {
        &self.group_errors
    }

    /// For checking very large files in flat memory (`validate`): repeated inventory SKUs are
    /// no longer flagged on their units but found after the last one by `finish` (at most
    /// `in_memory` entries of 16 bytes in memory, the rest in sorted runs in a temporary file),
    /// and accepted units are counted (`take_accepted`), not yielded: moving a unit through the
    /// queue cost more than checking it. Call before reading any event.
    pub fn check_only(mut self, in_memory: usize) -> Self {
        self.seen = Seen::Late(LateDuplicates::new(in_memory));
        self.lean = true;
        self
    }

    /// For a second read after `check_only`: the SKUs on `lines` (the lines `finish` named) are
    /// collected for `collected`, and no unit is flagged as a repeat.
    pub fn collect_skus(mut self, lines: HashSet<u64>) -> Self {
        self.seen = Seen::Collect { lines, found: Vec::new() };
        self
    }

    /// After the last event of a `check_only` read: the candidate repeats, ordered by line. They
    /// share a fingerprint with an earlier SKU; a second read with `collect_skus` confirms them.
    /// Fails only if the temporary file failed.
    pub fn finish(&mut self) -> std::io::Result<Vec<LateDuplicate>> {
        match std::mem::replace(&mut self.seen, Seen::Inline(HashSet::with_hasher(SEEN_HASH))) {
            Seen::Late(late) => late.finish(),
            other => {
                self.seen = other;
                Ok(Vec::new())
            }
        }
    }

    /// Accepted units counted instead of yielded since the last call (`check_only`). All of a
    /// set's are counted by the time its `SetEnd` is yielded.
    pub fn take_accepted(&mut self) -> u64 {
        std::mem::take(&mut self.lean_accepted)
    }

    /// The SKUs collected so far (see `collect_skus`), in file order.
    pub fn collected(&mut self) -> Vec<CollectedSku> {
        match &mut self.seen {
            Seen::Collect { found, .. } => std::mem::take(found),
            _ => Vec::new(),
        }
    }
}

fn envelope_error(line: u64, message: impl Into<String>) -> FileRejection {
    FileRejection::new(ErrorCode::X12Envelope, Some(line), message)
}

impl<R: Read> X12Units<R> {
    /// Reads and handles one segment, queueing what it produces.
    fn step(&mut self) -> Result<(), FileRejection> {
        let mut seg = std::mem::take(&mut self.seg);
        let r = self.step_with(&mut seg);
        self.seg = seg;
        r
    }

    fn step_with(&mut self, seg: &mut Segment) -> Result<(), FileRejection> {
        let more = self.tok.next_into(seg).map_err(|e| rejection(e, self.last))?;
        if !more {
            if self.ended {
                self.finished = true;
                return Ok(());
            }
            return Err(envelope_error(self.last, "the file ends before its IEA: it is incomplete"));
        }
        self.last = seg.ordinal;
        self.segments += 1;
        if self.segments > self.opts.max_rows {
            return Err(FileRejection::new(
                ErrorCode::TooManyRows,
                Some(seg.ordinal),
                format!("the file has more than {} segments", self.opts.max_rows),
            ));
        }
        let line = seg.ordinal;
        if self.ended {
            return Err(envelope_error(line, "there is more after the IEA: one interchange per file"));
        }
        match seg.id() {
            "ISA" => Err(envelope_error(line, "a second ISA: one interchange per file")),
            "GS" => {
                self.interrupt_set(line, "GS");
                self.interrupt_group(line, "GS");
                self.open_group(seg);
                Ok(())
            }
            "ST" => {
                self.interrupt_set(line, "ST");
                if self.group.is_none() {
                    return Err(envelope_error(line, "ST outside a functional group (no GS before it)"));
                }
                self.open_set(seg);
                Ok(())
            }
            "SE" => {
                if self.set.is_none() {
                    return Err(envelope_error(line, "SE without its ST"));
                }
                self.close_set(seg);
                Ok(())
            }
            "GE" => {
                self.interrupt_set(line, "GE");
                if self.group.is_none() {
                    return Err(envelope_error(line, "GE without its GS"));
                }
                self.close_group(Some(seg));
                Ok(())
            }
            "IEA" => {
                self.interrupt_set(line, "IEA");
                self.interrupt_group(line, "IEA");
                check_iea(seg, &self.interchange.control, self.groups)?;
                self.ended = true;
                Ok(())
            }
            "" => Err(envelope_error(line, "an empty segment (two segment terminators in a row?)")),
            _ => {
                if self.set.is_none() {
                    let m = format!("segment {} is outside a transaction set", shown(seg.id()));
                    return Err(envelope_error(line, m));
                }
                self.body_segment(seg);
                Ok(())
            }
        }
    }

    fn open_group(&mut self, gs: &Segment) {
        self.groups += 1;
        self.group = Some(GroupState {
            line: gs.ordinal,
            functional_id: gs.raw(1).trim().to_string(),
            control: gs.raw(6).trim().to_string(),
            version: gs.raw(8).trim().to_string(),
            sets: Vec::new(),
            st02s: HashSet::new(),
        });
    }

    fn open_set(&mut self, st: &Segment) {
        let st01 = st.raw(1).trim().to_string();
        let st02 = st.raw(2).trim().to_string();
        let line = st.ordinal;
        let kind = SetKind::from_st01(&st01);
        let mut fault = None;
        let body = match kind {
            Some(SetKind::Inventory846) => Body::Loops(Loop::Lin),
            Some(SetKind::Adjustment947) => Body::Loops(Loop::W19),
            Some(SetKind::Receipt944) => Body::Loops(Loop::W07),
            Some(SetKind::Shipping945 | SetKind::Order850) => Body::Whole,
            Some(SetKind::Ack997) => Body::Ack,
            Some(SetKind::Order940) | None => {
                let m =
                    format!("transaction set '{}' is not one we receive (846, 947, 944, 945, 850, 997)", shown(&st01));
                fault = Some(("1", fault_at(line, "ST-01", ErrorCode::X12UnknownSet, m)));
                Body::Ignored
            }
        };
        if let (Some(k), Some(g)) = (kind, &mut self.group) {
            if fault.is_none() && k.functional_id() != g.functional_id {
                let m = format!(
                    "a {} set belongs in a group with GS01 {}, not {}",
                    k.st01(),
                    k.functional_id(),
                    shown(&g.functional_id)
                );
                fault = Some(("6", fault_at(line, "ST-01", ErrorCode::X12UnknownSet, m)));
            }
            if !g.st02s.insert(st02.clone()) && fault.is_none() {
                let m = format!("ST02 '{}' is used twice in this group", shown(&st02));
                fault = Some(("23", fault_at(line, "ST-02", ErrorCode::X12ControlNumber, m)));
            }
        }
        let body = if fault.is_some() { Body::Ignored } else { body };
        let ack = (body == Body::Ack).then(|| ReceivedAck {
            line,
            group_functional_id: String::new(),
            group_control: String::new(),
            group_status: String::new(),
            sets: Vec::new(),
        });
        self.used = 0;
        self.overflow = 0;
        self.set = Some(SetState { kind, body, st01, st02, first_line: line, count: 1, in_loop: false, fault, ack });
    }

    /// Keeps `seg` in the current unit (bounded by `max_rows_per_group`).
    fn keep(&mut self, seg: &mut Segment) {
        if self.used >= self.opts.max_rows_per_group {
            self.overflow += 1;
            return;
        }
        if self.used == self.pool.len() {
            self.pool.push(Segment::default());
        }
        std::mem::swap(seg, &mut self.pool[self.used]);
        self.used += 1;
    }

    fn body_segment(&mut self, seg: &mut Segment) {
        let Some(set) = &mut self.set else { return };
        set.count += 1;
        match set.body {
            Body::Loops(l) => match l.role(seg.id()) {
                Role::Opens => {
                    set.in_loop = true;
                    self.close_loop();
                    self.keep(seg);
                }
                Role::Closes => {
                    set.in_loop = false;
                    self.close_loop();
                }
                Role::Other if set.in_loop => self.keep(seg),
                Role::Other => {}
            },
            Body::Whole => self.keep(seg),
            Body::Ack => {
                if let Some(ack) = &mut set.ack {
                    ack_segment(ack, seg);
                }
            }
            Body::Ignored => {}
        }
    }

    /// Ends the current unit, if any, queueing it.
    fn close_loop(&mut self) {
        if self.used == 0 {
            return;
        }
        let Some(kind) = self.set.as_ref().and_then(|s| s.kind) else {
            self.used = 0;
            return;
        };
        let segs = &self.pool[..self.used];
        let result = if self.overflow > 0 {
            let line = segs[0].ordinal;
            let m = format!(
                "this {} has more than {} segments; split it",
                if kind.kind() == Some(crate::formats::Kind::Inventory) { "loop" } else { "set" },
                self.opts.max_rows_per_group
            );
            Err(vec![RecordError::new(line, segs[0].id(), ErrorCode::GroupTooLarge, m)])
        } else {
            let mut m = Mapper { opts: &self.opts, errors: Vec::new() };
            let rec = match kind {
                SetKind::Inventory846 => m.inventory_846(segs, &mut self.seen).map(Mapped::Inventory),
                SetKind::Adjustment947 => m.adjustment_947(segs, &mut self.seen).map(Mapped::Inventory),
                SetKind::Receipt944 => m.receipt_944(segs, &mut self.seen).map(Mapped::Inventory),
                SetKind::Shipping945 => m.shipping_945(segs).map(|r| Mapped::Record(Record::Shipment(r))),
                SetKind::Order850 => m.order_850(segs).map(|r| Mapped::Record(Record::Order(r))),
                SetKind::Order940 | SetKind::Ack997 => None,
            };
            match rec {
                // Counted without building the record: nothing would read it.
                Some(_) if m.errors.is_empty() && self.lean => {
                    self.lean_accepted += 1;
                    self.used = 0;
                    self.overflow = 0;
                    return;
                }
                Some(r) if m.errors.is_empty() => Ok(r.into_record()),
                _ => {
                    if m.errors.is_empty() {
                        let m2 = "the unit could not be read".to_string();
                        m.errors.push(RecordError::new(segs[0].ordinal, segs[0].id(), ErrorCode::MissingValue, m2));
                    }
                    // In file order, as a clerk reads them.
                    m.errors.sort_by_key(|e| e.line);
                    Err(m.errors)
                }
            }
        };
        let rows = segs.iter().map(|s| RawRow { line: s.ordinal, fields: s.elements.clone() }).collect();
        self.queue.push_back(Ok(Event::Unit { set: kind, unit: Unit { rows, result } }));
        self.used = 0;
        self.overflow = 0;
    }

    fn close_set(&mut self, se: &Segment) {
        let Some(mut set) = self.set.take() else { return };
        set.count += 1;
        let fault = set.fault.take().or_else(|| check_se(se, &set.st02, set.count));
        if fault.is_none() {
            if matches!(set.body, Body::Loops(_) | Body::Whole) {
                self.set = Some(set);
                self.close_loop();
                let Some(s) = self.set.take() else { return };
                set = s;
            }
            if let Some(ack) = set.ack.take() {
                self.queue.push_back(Ok(Event::Ack(ack)));
            }
        }
        self.used = 0;
        self.end_set(set, se.ordinal, fault);
    }

    fn end_set(&mut self, set: SetState, last_line: u64, fault: Option<(&'static str, RecordError)>) {
        let (set_code, errors) = match fault {
            Some((code, e)) => (Some(code.to_string()), vec![e]),
            None => (None, Vec::new()),
        };
        let result = SetResult { id: set.st01, control: set.st02, errors: Vec::new(), set_code };
        if let Some(g) = &mut self.group {
            g.sets.push(result.clone());
        }
        self.queue.push_back(Ok(Event::SetEnd {
            kind: set.kind,
            result,
            first_line: set.first_line,
            last_line,
            errors,
        }));
    }

    /// A set still open when `what` arrives: its SE is missing.
    fn interrupt_set(&mut self, line: u64, what: &str) {
        if let Some(set) = self.set.take() {
            let m = format!("the set that starts on line {} has no SE before this {what}", set.first_line);
            let f = ("2", fault_at(line, "SE", ErrorCode::X12Envelope, m));
            self.used = 0;
            self.end_set(set, line.saturating_sub(1), Some(f));
        }
    }

    /// A group still open when `what` arrives: its GE is missing.
    fn interrupt_group(&mut self, line: u64, what: &str) {
        if self.group.is_some() {
            let first = self.group.as_ref().map_or(0, |g| g.line);
            let m = format!("the group that starts on line {first} has no GE before this {what}");
            self.finish_group(Some(("3", fault_at(line, "GE", ErrorCode::X12Envelope, m))));
        }
    }

    fn close_group(&mut self, ge: Option<&Segment>) {
        let Some(g) = &self.group else { return };
        let fault = ge.and_then(|ge| check_ge(ge, &g.control, g.sets.len() as u64));
        self.finish_group(fault);
    }

    fn finish_group(&mut self, fault: Option<(&'static str, RecordError)>) {
        let Some(g) = self.group.take() else { return };
        self.group_errors.clear();
        let group_code = fault.map(|(code, e)| {
            self.group_errors.push(e);
            code.to_string()
        });
        let result = GroupResult {
            functional_id: g.functional_id,
            control: g.control,
            version: g.version,
            sets: g.sets,
            group_code,
        };
        self.queue.push_back(Ok(Event::GroupEnd(result)));
    }
}

fn fault_at(line: u64, column: &str, code: ErrorCode, message: String) -> RecordError {
    fault(line, column, code, message)
}

fn ack_segment(ack: &mut ReceivedAck, seg: &Segment) {
    let el = |n| seg.element(n).unwrap_or("").to_string();
    match seg.id() {
        "AK1" => {
            ack.group_functional_id = el(1);
            ack.group_control = el(2);
        }
        "AK2" => ack.sets.push((el(1), el(2), String::new())),
        "AK5" => {
            if let Some(last) = ack.sets.last_mut() {
                last.2 = el(1);
            }
        }
        "AK9" => ack.group_status = el(1),
        _ => {}
    }
}

impl<R: Read> Iterator for X12Units<R> {
    type Item = Result<Event, FileRejection>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                if item.is_err() {
                    self.queue.clear();
                    self.finished = true;
                }
                return Some(item);
            }
            if self.finished {
                return None;
            }
            if let Err(e) = self.step() {
                self.queue.push_back(Err(e));
            }
        }
    }
}

/// Element reference as the error file shows it: `W12-03`.
fn col(seg: &Segment, n: usize) -> String {
    format!("{}-{n:02}", seg.id())
}

/// Which product ids are SKUs and which barcodes (see `docs/x12.md`).
fn is_sku_qualifier(q: &str) -> bool {
    matches!(q, "SK" | "VN")
}

fn is_barcode_qualifier(q: &str) -> bool {
    matches!(q, "UP" | "EN")
}

/// An inventory record as mapped, borrowing its values from the segments: a unit that is only
/// counted (`check_only`) never copies them.
struct InventoryView<'s> {
    line: u64,
    sku: &'s str,
    quantity: i64,
    name: Option<&'s str>,
    barcode: Option<&'s str>,
}

/// What a unit maps to.
// Lives for one unit on the stack: boxing the record would cost an allocation per unit.
#[allow(clippy::large_enum_variant)]
enum Mapped<'s> {
    Inventory(InventoryView<'s>),
    Record(Record),
}

impl Mapped<'_> {
    fn into_record(self) -> Record {
        match self {
            Mapped::Inventory(v) => Record::Inventory(InventoryRecord {
                line: v.line,
                sku: v.sku.to_string(),
                quantity: v.quantity,
                name: v.name.map(str::to_string),
                barcode: v.barcode.map(str::to_string),
            }),
            Mapped::Record(r) => r,
        }
    }
}

/// Reads elements into values, collecting located errors.
struct Mapper<'o> {
    opts: &'o X12Options,
    errors: Vec<RecordError>,
}

impl Mapper<'_> {
    fn push(&mut self, seg: &Segment, n: usize, (code, message): FieldError) {
        self.errors.push(RecordError::new(seg.ordinal, &col(seg, n), code, message));
    }

    /// Element `n`, checked against `max_field_len`.
    fn opt<'s>(&mut self, seg: &'s Segment, n: usize) -> Option<&'s str> {
        let v = seg.element(n)?;
        if v.len() > self.opts.max_field_len {
            let m = format!("{} is longer than {} characters", col(seg, n), self.opts.max_field_len);
            self.push(seg, n, (ErrorCode::FieldTooLong, m));
            return None;
        }
        Some(v)
    }

    fn req<'s>(&mut self, seg: &'s Segment, n: usize) -> Option<&'s str> {
        if seg.element(n).is_none() {
            let m = format!("{} is required but empty", col(seg, n));
            self.push(seg, n, (ErrorCode::MissingValue, m));
        }
        self.opt(seg, n)
    }

    /// Parses with a `formats::fields` parser; its message names the element.
    fn parse<T>(
        &mut self,
        seg: &Segment,
        n: usize,
        v: &str,
        f: impl Fn(&str, &str) -> Result<T, FieldError>,
    ) -> Option<T> {
        match f("", v) {
            Ok(t) => Some(t),
            Err(_) => {
                let e = f(&col(seg, n), v).err().unwrap_or((ErrorCode::BadChoice, String::new()));
                self.push(seg, n, e);
                None
            }
        }
    }

    fn missing(&mut self, line: u64, column: &str, message: impl Into<String>) {
        self.errors.push(RecordError::new(line, column, ErrorCode::MissingValue, message));
    }

    /// The SKU (with its element) and barcode among the (qualifier, id) pairs whose qualifiers
    /// are at `pairs`: SK before VN; UP or EN as barcode (checked).
    fn product<'s>(
        &mut self,
        seg: &'s Segment,
        pairs: impl IntoIterator<Item = usize>,
    ) -> (Option<(&'s str, usize)>, Option<&'s str>) {
        let (mut sk, mut vn, mut barcode) = (None, None, None);
        for q in pairs {
            let (Some(qual), Some(_)) = (seg.element(q), seg.element(q + 1)) else { continue };
            let Some(id) = self.opt(seg, q + 1) else { continue };
            match qual {
                "SK" if sk.is_none() => sk = Some((id, q + 1)),
                "VN" if vn.is_none() => vn = Some((id, q + 1)),
                _ if is_barcode_qualifier(qual)
                    && barcode.is_none()
                    && self.parse(seg, q + 1, id, fields::barcode).is_some() =>
                {
                    barcode = Some(id)
                }
                _ => {}
            }
        }
        (sk.or(vn), barcode)
    }

    fn duplicate(&mut self, seen: &mut Seen, seg: &Segment, n: usize, sku: &str) {
        let error = |seg: &Segment| {
            let m = format!("SKU '{}' appears more than once in this file; send one per SKU", shown(sku));
            RecordError::new(seg.ordinal, &col(seg, n), ErrorCode::DuplicateSku, m)
        };
        match seen {
            Seen::Inline(set) => {
                if !set.insert(SEEN_HASH.hash_one(sku)) {
                    self.errors.push(error(seg));
                }
            }
            // Called after every other check of the unit, so no error yet means otherwise valid.
            Seen::Late(late) => {
                if let Err(e) = late.push(fingerprint(sku), seg.ordinal, self.errors.is_empty()) {
                    late.fail(e);
                }
            }
            Seen::Collect { lines, found } => {
                if lines.contains(&seg.ordinal) {
                    found.push(CollectedSku { sku: sku.to_string(), error: error(seg) });
                }
            }
        }
    }

    fn no_sku(&mut self, seg: &Segment, n: usize) {
        let m = format!("{} has no product id qualified SK or VN (the SKU)", seg.id());
        self.missing(seg.ordinal, &col(seg, n), m);
    }

    /// 846 LIN loop: LIN product ids, QTY*33 on hand, PID*F description.
    fn inventory_846<'s>(&mut self, segs: &'s [Segment], seen: &mut Seen) -> Option<InventoryView<'s>> {
        let lin = segs.first()?;
        let (sku, barcode) = self.product(lin, (2..lin.elements.len()).step_by(2));
        if sku.is_none() {
            self.no_sku(lin, 3);
        }
        let mut quantity = None;
        let mut name = None;
        for s in &segs[1..] {
            match s.id() {
                "QTY" if quantity.is_none() && s.element(1) == Some("33") => {
                    if let Some(v) = self.req(s, 2) {
                        let q = self.parse(s, 2, v, fields::integer);
                        if let Some(q) = q.filter(|q| *q < 0) {
                            let m = format!("QTY-02 on hand cannot be negative, got {q} (send a 947 for adjustments)");
                            self.push(s, 2, (ErrorCode::NegativeQuantity, m));
                        }
                        quantity = Some(q);
                    } else {
                        quantity = Some(None);
                    }
                }
                "PID" if name.is_none() && s.element(1) == Some("F") => name = self.opt(s, 5),
                _ => {}
            }
        }
        if quantity.is_none() {
            self.missing(lin.ordinal, "QTY-02", "the LIN loop has no QTY with qualifier 33 (quantity on hand)");
        }
        let (sku, n) = sku?;
        self.duplicate(seen, lin, n, sku);
        Some(InventoryView { line: lin.ordinal, sku, quantity: quantity.flatten()?, name, barcode })
    }

    /// 947 W19: reason W19-01 decides the sign of W19-02.
    fn adjustment_947<'s>(&mut self, segs: &'s [Segment], seen: &mut Seen) -> Option<InventoryView<'s>> {
        let w19 = segs.first()?;
        let reason = self.req(w19, 1);
        let quantity = self.req(w19, 2).and_then(|v| self.parse(w19, 2, v, fields::integer));
        let barcode = self.opt(w19, 4).filter(|v| self.parse(w19, 4, v, fields::barcode).is_some());
        let (sku, _) = self.product(w19, [5, 7, 17]);
        if sku.is_none() {
            self.no_sku(w19, 6);
        }
        let sign = reason.and_then(|r| match adjustment_sign(r) {
            Some(s) => Some(s),
            None => {
                let m = format!("W19-01 adjustment reason '{}' is not one we map (see docs/x12.md)", shown(r));
                self.push(w19, 1, (ErrorCode::BadChoice, m));
                None
            }
        });
        let quantity = match (sign, quantity) {
            (Some(Sign::AsSent), Some(q)) => Some(q),
            (Some(Sign::Increase | Sign::Decrease), Some(q)) if q < 0 => {
                let m = format!(
                    "W19-02 must not be negative for reason '{}': the reason gives the direction",
                    reason.unwrap_or("")
                );
                self.push(w19, 2, (ErrorCode::NegativeQuantity, m));
                None
            }
            (Some(Sign::Increase), Some(q)) => Some(q),
            (Some(Sign::Decrease), Some(q)) => Some(-q),
            _ => None,
        };
        let (sku, n) = sku?;
        self.duplicate(seen, w19, n, sku);
        Some(InventoryView { line: w19.ordinal, sku, quantity: quantity?, name: None, barcode })
    }

    /// 944 W07: a receipt adds W07-01.
    fn receipt_944<'s>(&mut self, segs: &'s [Segment], seen: &mut Seen) -> Option<InventoryView<'s>> {
        let w07 = segs.first()?;
        let quantity = self.req(w07, 1).and_then(|v| self.parse(w07, 1, v, fields::integer));
        if let Some(q) = quantity.filter(|q| *q < 0) {
            self.push(
                w07,
                1,
                (ErrorCode::NegativeQuantity, format!("W07-01 received quantity cannot be negative, got {q}")),
            );
        }
        let barcode = self.opt(w07, 3).filter(|v| self.parse(w07, 3, v, fields::barcode).is_some());
        let (sku, _) = self.product(w07, [4, 6]);
        if sku.is_none() {
            self.no_sku(w07, 5);
        }
        let (sku, n) = sku?;
        self.duplicate(seen, w07, n, sku);
        Some(InventoryView { line: w07.ordinal, sku, quantity: quantity.filter(|q| *q >= 0)?, name: None, barcode })
    }

    fn date(&mut self, seg: &Segment, n: usize, time: Option<(&Segment, usize)>) -> Option<DateTime<FixedOffset>> {
        let d = self.req(seg, n)?;
        let t = time.and_then(|(s, k)| s.element(k));
        match x12_date(&col(seg, n), d, t, self.opts.timezone) {
            Ok(dt) => Some(dt),
            Err(e) => {
                self.push(seg, n, e);
                None
            }
        }
    }

    /// 945: W06 order and date, G62*11 ship date, W27 carrier, N9/MAN tracking, W12 lines.
    fn shipping_945(&mut self, segs: &[Segment]) -> Option<ShipmentRecord> {
        let first_line = segs.first().map_or(1, |s| s.ordinal);
        let mut order_ref = None;
        let mut w06_date = None;
        let mut g62_date = None;
        let mut carrier = None;
        let mut service = None;
        let mut tracking_n9 = None;
        let mut tracking_man = None;
        let mut weight = None;
        let mut items = Vec::new();
        let mut saw = (false, false);
        for s in segs {
            match s.id() {
                "W06" if !saw.0 => {
                    saw.0 = true;
                    order_ref = self.req(s, 2).map(str::to_string);
                    if s.element(3).is_some() {
                        w06_date = Some(s);
                    }
                }
                "G62" if g62_date.is_none() && s.element(1) == Some("11") => g62_date = Some(s),
                "W27" if !saw.1 => {
                    saw.1 = true;
                    carrier = self.req(s, 2).map(str::to_string);
                    service = self.opt(s, 3).map(str::to_string);
                }
                "N9" if tracking_n9.is_none() && matches!(s.element(1), Some("CN" | "2I")) => {
                    tracking_n9 = self.req(s, 2).map(str::to_string);
                }
                "MAN" if tracking_man.is_none() => {
                    tracking_man =
                        if s.element(4) == Some("CN") { self.req(s, 5) } else { self.req(s, 2) }.map(str::to_string);
                }
                "W03" if weight.is_none() => {
                    weight = self.opt(s, 2).and_then(|v| self.parse(s, 2, v, fields::amount));
                }
                "W12" => {
                    let qty = self.req(s, 3).and_then(|v| self.parse(s, 3, v, fields::integer));
                    let sku = match (s.element(7), self.opt(s, 8)) {
                        (Some(q), Some(id)) if is_sku_qualifier(q) => Some(id),
                        _ => {
                            let m = "W12 has no product id qualified SK or VN in W12-07/08 (the SKU)";
                            self.missing(s.ordinal, "W12-08", m);
                            None
                        }
                    };
                    match qty {
                        Some(q) if q < 0 => self.push(
                            s,
                            3,
                            (ErrorCode::NegativeQuantity, format!("W12-03 cannot be negative, got {q}")),
                        ),
                        Some(0) => {} // ordered but not shipped: not a shipped item
                        Some(q) => match (u32::try_from(q), sku) {
                            (Ok(quantity), Some(sku)) => {
                                items.push(ShipmentItem { line: s.ordinal, sku: sku.to_string(), quantity })
                            }
                            (Err(_), _) => {
                                self.push(s, 3, (ErrorCode::BadInteger, format!("W12-03 is too large, got {q}")))
                            }
                            _ => {}
                        },
                        None => {}
                    }
                }
                _ => {}
            }
        }
        if !saw.0 {
            self.missing(first_line, "W06-02", "the 945 has no W06 (the order it ships)");
        }
        if !saw.1 {
            self.missing(first_line, "W27-02", "the 945 has no W27 (the carrier)");
        }
        let shipped_at = match (g62_date, w06_date) {
            (Some(g), _) => self.date(g, 2, Some((g, 4))),
            (None, Some(w)) => self.date(w, 3, None),
            (None, None) => {
                self.missing(first_line, "W06-03", "the 945 has no ship date (W06-03 or G62*11)");
                None
            }
        };
        let tracking = tracking_n9.or(tracking_man);
        if tracking.is_none() {
            self.missing(first_line, "MAN-02", "the 945 has no tracking number (N9*CN, N9*2I or MAN)");
        }
        if items.is_empty() && self.errors.is_empty() {
            self.missing(first_line, "W12-03", "the 945 ships no items (no W12 with a quantity above 0)");
        }
        Some(ShipmentRecord {
            line: first_line,
            fulfillment_id: None,
            order_ref: Some(order_ref?),
            tracking_number: tracking?,
            carrier: carrier?,
            service,
            shipped_at: shipped_at?,
            cost: None,
            weight,
            items,
        })
    }

    /// 850: BEG order and date, CUR currency, N1*ST/N3/N4/PER ship-to, PO1 lines.
    fn order_850(&mut self, segs: &[Segment]) -> Option<OrderRecord> {
        let first_line = segs.first().map_or(1, |s| s.ordinal);
        let mut order_ref = None;
        let mut order_date = None;
        let mut saw_beg = false;
        let mut currency = None;
        let mut in_st = false;
        let mut st: Option<&Segment> = None;
        let (mut n3, mut n4, mut per) = (None, None, None);
        let mut items = Vec::new();
        for s in segs {
            match s.id() {
                "BEG" if !saw_beg => {
                    saw_beg = true;
                    order_ref = self.req(s, 3).map(str::to_string);
                    order_date = self.date(s, 5, None);
                }
                "CUR" if currency.is_none() => {
                    currency = self.req(s, 2).and_then(|v| self.parse(s, 2, v, fields::currency));
                }
                "N1" => {
                    in_st = s.element(1) == Some("ST") && st.is_none();
                    if in_st {
                        st = Some(s);
                    }
                }
                "N3" if in_st && n3.is_none() => n3 = Some(s),
                "N4" if in_st && n4.is_none() => n4 = Some(s),
                "PER" if in_st && per.is_none() => per = Some(s),
                "PO1" => {
                    in_st = false;
                    let qty = self.req(s, 2).and_then(|v| self.parse(s, 2, v, fields::positive_quantity));
                    let price = self.opt(s, 4).and_then(|v| self.parse(s, 4, v, fields::amount));
                    let (sku, _) = self.product(s, (6..s.elements.len()).step_by(2));
                    if sku.is_none() {
                        self.no_sku(s, 7);
                    }
                    if let (Some(quantity), Some((sku, _))) = (qty, sku) {
                        items.push(OrderItem { line: s.ordinal, sku: sku.to_string(), quantity, price });
                    }
                }
                _ => {}
            }
        }
        if !saw_beg {
            self.missing(first_line, "BEG-03", "the 850 has no BEG (the order number)");
        }
        let ship_to = self.address(first_line, st, n3, n4, per);
        if items.is_empty() && self.errors.is_empty() {
            self.missing(first_line, "PO1-02", "the 850 has no PO1 lines");
        }
        Some(OrderRecord {
            line: first_line,
            order_ref: order_ref?,
            action: OrderAction::Create,
            order_date: Some(order_date?),
            ship_to: Some(ship_to?),
            shipping_speed: ShippingSpeed::Standard,
            currency: currency.map(str::to_string),
            items,
        })
    }

    fn address(
        &mut self,
        line: u64,
        n1: Option<&Segment>,
        n3: Option<&Segment>,
        n4: Option<&Segment>,
        per: Option<&Segment>,
    ) -> Option<Address> {
        let Some(n1) = n1 else {
            self.missing(line, "N1-01", "the 850 has no ship-to party (N1*ST)");
            return None;
        };
        let name = self.req(n1, 2);
        let (address1, address2) = match n3 {
            Some(n3) => (self.req(n3, 1), self.opt(n3, 2)),
            None => {
                self.missing(n1.ordinal, "N3-01", "the ship-to (N1*ST) has no street address (N3)");
                (None, None)
            }
        };
        let (city, state, zip, country) = match n4 {
            Some(n4) => {
                let country = self.req(n4, 4).and_then(|v| self.parse(n4, 4, v, fields::country));
                (self.req(n4, 1), self.opt(n4, 2), self.opt(n4, 3), country)
            }
            None => {
                self.missing(n1.ordinal, "N4-01", "the ship-to (N1*ST) has no city and country (N4)");
                (None, None, None, None)
            }
        };
        let (mut phone, mut email) = (None, None);
        if let Some(per) = per {
            for q in [3, 5, 7] {
                match per.element(q) {
                    Some("TE") if phone.is_none() => phone = self.opt(per, q + 1),
                    Some("EM") if email.is_none() => email = self.opt(per, q + 1),
                    _ => {}
                }
            }
        }
        let s = |v: Option<&str>| v.map(str::to_string);
        Some(Address {
            name: name?.to_string(),
            company: None,
            address1: address1?.to_string(),
            address2: s(address2),
            city: city?.to_string(),
            state: s(state),
            zip: s(zip),
            country: country?.to_string(),
            phone: s(phone),
            email: s(email),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Increase,
    Decrease,
    /// W19-02 carries its own sign (counts and corrections).
    AsSent,
}

/// The direction of a 947 adjustment by its reason (W19-01); `None` for reasons not mapped.
fn adjustment_sign(reason: &str) -> Option<Sign> {
    match reason {
        // Stock found, returned, released or booked up.
        "51" | "52" | "53" | "54" | "55" | "56" | "88" | "CR" => Some(Sign::Increase),
        // Stock lost, damaged, held, destroyed or booked down.
        "03" | "04" | "05" | "06" | "07" | "08" | "AU" | "AV" | "AW" | "AX" | "CD" | "CS" | "UD" | "BD" => {
            Some(Sign::Decrease)
        }
        // Counts and corrections: the quantity is signed.
        "AA" | "AB" | "AH" | "AJ" | "AR" | "AY" | "BA" => Some(Sign::AsSent),
        _ => None,
    }
}

/// CCYYMMDD with an optional HHMM[SS[d..]] time, in `tz` (DST overlap: the earlier instant; a
/// time in a DST gap is refused).
fn x12_date(column: &str, date: &str, time: Option<&str>, tz: Tz) -> Result<DateTime<FixedOffset>, FieldError> {
    let bad = || (ErrorCode::BadDate, format!("{column} must be a date CCYYMMDD like 20240315, got '{}'", shown(date)));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if date.len() != 8 || !digits(date) {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    let d = NaiveDate::from_ymd_opt(num(&date[..4]) as i32, num(&date[4..6]), num(&date[6..8])).ok_or_else(bad)?;
    let t = match time {
        None => NaiveTime::MIN,
        // Byte slices of a time that is not ASCII digits would cut a character: checked first.
        Some(t) if t.len() >= 4 && t.is_ascii() && digits(&t[..4]) && (t.len() < 6 || digits(&t[4..6])) => {
            let sec = if t.len() >= 6 { num(&t[4..6]) } else { 0 };
            NaiveTime::from_hms_opt(num(&t[..2]), num(&t[2..4]), sec).ok_or_else(|| {
                (ErrorCode::BadDate, format!("{column}: the time '{}' is not a time HHMM[SS]", shown(t)))
            })?
        }
        Some(t) => {
            return Err((ErrorCode::BadDate, format!("{column}: the time '{}' is not a time HHMM[SS]", shown(t))))
        }
    };
    let naive = d.and_time(t);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(dt.fixed_offset()),
        LocalResult::Ambiguous(a, _) => Ok(a.fixed_offset()),
        LocalResult::None => Err((
            ErrorCode::BadDate,
            format!("{column} '{}' does not exist in time zone {tz} (clocks skipped it)", shown(date)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeats flagged as the usual read goes, as (error, its segment, unit otherwise valid).
    fn inline_repeats(x12: &[u8]) -> Vec<LateRepeat> {
        let mut out = Vec::new();
        for ev in read(x12, &X12Options::default()).unwrap() {
            let Ok(Event::Unit { unit, .. }) = ev else { continue };
            let Err(errors) = &unit.result else { continue };
            for e in errors.iter().filter(|e| e.code == ErrorCode::DuplicateSku) {
                out.push(LateRepeat {
                    error: e.clone(),
                    row: unit.rows.iter().find(|r| r.line == e.line).cloned(),
                    otherwise_valid: errors.len() == 1,
                });
            }
        }
        out.sort_by_key(|r| r.error.line);
        out
    }

    /// The same through `check_only` (spilling after two SKUs), `finish` and a second read.
    fn late_repeats(x12: &[u8]) -> Vec<LateRepeat> {
        let mut units = read(x12, &X12Options::default()).unwrap().check_only(2);
        let (mut yielded, mut counted) = (0, 0);
        while let Some(ev) = units.next() {
            counted += units.take_accepted();
            if let Ok(Event::Unit { unit, .. }) = ev {
                yielded += 1;
                let errors = unit.result.as_ref().expect_err("accepted units are counted, not yielded");
                assert!(errors.iter().all(|e| e.code != ErrorCode::DuplicateSku), "no repeat is flagged inline");
            }
        }
        let inline = read(x12, &X12Options::default()).unwrap().filter(|e| matches!(e, Ok(Event::Unit { .. }))).count();
        assert_eq!(yielded + counted, inline as u64, "every unit yielded or counted");
        let cands = units.finish().unwrap();
        resolve_duplicates(x12, &X12Options::default(), &cands).unwrap()
    }

    #[test]
    fn late_repeats_are_the_inline_repeats() {
        let isa = "ISA*00*          *00*          *ZZ*WAREHOUSE      *ZZ*STITCHBRIDGE   *240315*1200*U*00401*000000001*0*P*>~";
        // Repeats across sets, in a set refused for its SE count, on a unit with another error,
        // three times over, and from an 846 into a 947.
        let built = format!(
            "{isa}\nGS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~\n\
             ST*846*0001~BIA*00*SI*A*20240315~LIN**SK*A~QTY*33*1~LIN**SK*B~QTY*33*2~LIN**SK*A~QTY*33*x~SE*9*0001~\n\
             ST*846*0002~BIA*00*SI*B*20240315~LIN**SK*B~QTY*33*1~LIN**VN*A~QTY*33*4~SE*99*0002~\n\
             ST*846*0003~BIA*00*SI*C*20240315~LIN**SK*C~QTY*33*1~LIN**SK*C~QTY*33*1~SE*7*0003~GE*3*1~\n\
             GS*AW*WAREHOUSE*STITCHBRIDGE*20240315*1200*2*X*004010~ST*947*0001~W15*20240315*ADJ1~\n\
             W19*AU*1*EA**SK*C~SE*4*0001~GE*1*2~IEA*2*000000001~"
        );
        let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/x12");
        let mut files = vec![built.into_bytes()];
        for set in ["846", "947", "944"] {
            for which in ["good", "broken"] {
                files.push(std::fs::read(samples.join(format!("{set}_{which}.x12"))).unwrap());
            }
        }
        let mut flagged = 0;
        for x12 in &files {
            let inline = inline_repeats(x12);
            assert_eq!(late_repeats(x12), inline, "{}", String::from_utf8_lossy(x12));
            flagged += inline.len();
        }
        // The built file alone repeats A twice, B, C twice.
        assert!(flagged >= 5, "{flagged}");
    }

    #[test]
    fn dates() {
        let utc = chrono_tz::UTC;
        assert_eq!(x12_date("W06-03", "20240315", None, utc).unwrap().to_rfc3339(), "2024-03-15T00:00:00+00:00");
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(x12_date("G62-02", "20240316", Some("1015"), ny).unwrap().to_rfc3339(), "2024-03-16T10:15:00-04:00");
        for bad in ["2024-03-15", "20241301", "2024031", "abcdefgh"] {
            assert_eq!(x12_date("X", bad, None, utc).unwrap_err().0, ErrorCode::BadDate, "{bad}");
        }
        assert_eq!(x12_date("X", "20240315", Some("2561"), utc).unwrap_err().0, ErrorCode::BadDate);
        // 02:30 on the spring-forward night never happened in New York.
        assert_eq!(x12_date("X", "20240310", Some("0230"), ny).unwrap_err().0, ErrorCode::BadDate);
    }

    #[test]
    fn adjustment_signs() {
        assert_eq!(adjustment_sign("AU"), Some(Sign::Decrease));
        assert_eq!(adjustment_sign("55"), Some(Sign::Increase));
        assert_eq!(adjustment_sign("AA"), Some(Sign::AsSent));
        assert_eq!(adjustment_sign("ZZ"), None);
    }
}
