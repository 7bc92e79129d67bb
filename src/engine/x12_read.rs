//! Reading an X12 interchange into what the inbound steps apply: batches of records by kind,
//! located rejections, the partner's 997s and the groups our 997s answer. Pure over a reader.

use crate::config::X12Config;
use crate::formats::{self, ErrorCode, FileRejection, Kind, Record, RecordError};
use crate::reconcile::Decision;
use crate::x12::inbound::{self as x12in, Event, ReceivedAck};
use crate::x12::{GroupResult, SetKind};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// Records of one kind accepted from a file, applied together.
pub(super) struct Batch {
    pub kind: Kind,
    pub delta: bool,
    pub records: Vec<Record>,
}

impl Batch {
    /// The outbox content key of this batch: the file's, plus what tells its batches apart (a
    /// snapshot and a delta of the same SKU in one interchange are two writes).
    pub fn content_key(&self, file_key: &str) -> String {
        format!("{file_key}.x12-{}{}", self.kind.as_str(), if self.delta { "-delta" } else { "" })
    }
}

/// What reading an interchange gives the inbound steps.
#[derive(Default)]
pub(super) struct X12Read {
    pub batches: Vec<Batch>,
    pub rejected: Vec<Decision>,
    pub file_rejection: Option<FileRejection>,
    /// ISA13 as written, when the envelope was read.
    pub interchange: Option<String>,
    pub acks: Vec<ReceivedAck>,
    /// The functional groups a 997 answers (never a group of 997s).
    pub groups: Vec<GroupResult>,
    /// Every located problem, for the error file (line = segment ordinal, column = element).
    pub errors: Vec<RecordError>,
}

/// Where an X12 file arrived: a kind's folder (its sets must carry that kind), or `inbound/edi`.
pub(super) fn folder_allows(folder: Option<Kind>, set: SetKind) -> bool {
    match (folder, set.kind()) {
        (None, _) => true,
        // A 997 answers what we sent; it may come back through any inbound folder.
        (Some(_), None) => set == SetKind::Ack997,
        (Some(k), Some(of_set)) => k == of_set,
    }
}

fn set_name(set: SetKind) -> String {
    match set.kind() {
        Some(k) => format!("{} ({})", set.st01(), k.as_str()),
        None => set.st01().to_string(),
    }
}

/// Read an interchange into batches and located rejections. Pure over `reader`: the partner
/// check, set-by-set acceptance (a set with a syntax fault, or in a group with one, applies
/// nothing), and repeated SKUs within a batch (refused like a CSV file's).
pub(super) fn read_x12<R: Read>(
    reader: R,
    opts: &formats::ParseOptions,
    folder: Option<Kind>,
    cfg: Option<&X12Config>,
) -> X12Read {
    let mut out = X12Read::default();
    let mut units = match x12in::read(reader, &x12in::X12Options::from_parse(opts)) {
        Ok(u) => u,
        Err(r) => {
            out.file_rejection = Some(r);
            return out;
        }
    };
    let found = units.interchange().clone();
    let party = |p: &crate::x12::Party| format!("{}:{}", p.qualifier, p.id);
    match cfg {
        None => {
            out.file_rejection = Some(FileRejection::new(
                ErrorCode::X12Partner,
                Some(1),
                format!(
                    "an X12 interchange from {} to {}, but this account has no X12 partner: configure [account.x12]",
                    party(&found.sender),
                    party(&found.receiver)
                ),
            ));
            return out;
        }
        Some(c) => {
            if let Err(r) = crate::x12::envelope::check_parties(&found, &c.partner(), &c.us()) {
                out.file_rejection = Some(r);
                return out;
            }
        }
    }
    out.interchange = Some(found.control.clone());
    // Units of the set being read, then of the group once their set is accepted.
    let mut in_set: Vec<(SetKind, formats::Unit)> = Vec::new();
    let mut acks_in_set: Vec<ReceivedAck> = Vec::new();
    let mut in_group: Vec<(SetKind, formats::Unit)> = Vec::new();
    let mut acks_in_group: Vec<ReceivedAck> = Vec::new();
    let mut accepted: Vec<(SetKind, formats::Unit)> = Vec::new();
    let mut syntax_by_set: HashMap<String, Vec<crate::x12::SyntaxError>> = HashMap::new();
    loop {
        let ev = match units.next() {
            None => break,
            Some(Err(r)) => {
                out.file_rejection = Some(r);
                return X12Read {
                    file_rejection: out.file_rejection,
                    interchange: out.interchange,
                    ..X12Read::default()
                };
            }
            Some(Ok(ev)) => ev,
        };
        match ev {
            Event::Unit { set, unit } => in_set.push((set, unit)),
            Event::Ack(a) => acks_in_set.push(a),
            Event::SetEnd { kind, result, first_line, errors, .. } => {
                // A unit's value error that is X12 syntax rejects its whole set (AK5 R in our
                // 997, with AK3/AK4 naming segment and element); errors of meaning do not.
                let unit_errors: Vec<RecordError> =
                    in_set.iter().filter_map(|(_, u)| u.result.as_ref().err()).flatten().cloned().collect();
                let unit_syntax: Vec<crate::x12::SyntaxError> =
                    unit_errors.iter().filter_map(|e| crate::x12::syntax_error_of(e, first_line)).collect();
                let syntax_ok = result.set_code.is_none() && result.errors.is_empty() && unit_syntax.is_empty();
                let misplaced = kind.filter(|k| !folder_allows(folder, *k));
                if syntax_ok && misplaced.is_none() {
                    in_group.append(&mut in_set);
                    acks_in_group.append(&mut acks_in_set);
                    continue;
                }
                let (code, why) = match (misplaced, errors.first()) {
                    (Some(k), _) if syntax_ok => {
                        let here = folder.map(|f| f.as_str()).unwrap_or("edi");
                        let msg = format!(
                            "a {} set in inbound/{here}: put it in inbound/{} or inbound/edi",
                            set_name(k),
                            k.kind().map(|x| x.as_str()).unwrap_or("edi")
                        );
                        out.errors.push(RecordError {
                            line: first_line,
                            column: "ST-01".into(),
                            code: ErrorCode::X12UnknownSet,
                            message: msg.clone(),
                        });
                        (ErrorCode::X12UnknownSet, msg)
                    }
                    (_, Some(e)) => (e.code, format!("transaction set {} rejected: {}", result.control, e.message)),
                    (_, None) => match unit_syntax.first() {
                        Some(e) => (
                            unit_errors
                                .iter()
                                .find(|u| u.line == e.line)
                                .map(|u| u.code)
                                .unwrap_or(ErrorCode::X12Envelope),
                            format!("transaction set {} rejected: {}", result.control, e.message),
                        ),
                        None => (ErrorCode::X12Envelope, format!("transaction set {} rejected", result.control)),
                    },
                };
                out.errors.extend(errors.iter().cloned());
                out.errors.extend(unit_errors);
                if !unit_syntax.is_empty() {
                    syntax_by_set.insert(result.control.clone(), unit_syntax);
                }
                if in_set.is_empty() {
                    out.rejected.push(Decision::rejected(first_line, code.as_str(), "", why.clone()));
                }
                for (_, u) in in_set.drain(..) {
                    out.rejected.push(unit_rejected(&u, code, &why));
                }
                acks_in_set.clear();
            }
            Event::GroupEnd(mut g) => {
                for s in &mut g.sets {
                    if let Some(errs) = syntax_by_set.remove(&s.control) {
                        s.errors.extend(errs);
                        // AK502 5: one or more segments in error.
                        s.set_code.get_or_insert_with(|| "5".to_string());
                    }
                }
                syntax_by_set.clear();
                if g.group_code.is_some() {
                    let errs = units.group_errors().to_vec();
                    let why = errs.first().map(|e| e.message.clone()).unwrap_or_else(|| "group rejected".into());
                    let code = errs.first().map(|e| e.code).unwrap_or(ErrorCode::X12Envelope);
                    for (_, u) in in_group.drain(..) {
                        out.rejected.push(unit_rejected(
                            &u,
                            code,
                            &format!("functional group {} rejected: {why}", g.control),
                        ));
                    }
                    if let Some(e) = errs.first() {
                        out.rejected.push(Decision::rejected(e.line, code.as_str(), "", e.message.clone()));
                    }
                    out.errors.extend(errs);
                    acks_in_group.clear();
                } else {
                    accepted.append(&mut in_group);
                    out.acks.append(&mut acks_in_group);
                }
                if g.functional_id != SetKind::Ack997.functional_id() {
                    out.groups.push(g);
                }
            }
        }
    }
    // Batches by (kind, delta), in file order; a SKU twice in one batch is refused the second
    // time, as in a CSV file.
    let mut batches: BTreeMap<(u8, bool), (Kind, Vec<Record>)> = BTreeMap::new();
    let mut skus: HashMap<(bool, String), u64> = HashMap::new();
    for (set, u) in accepted {
        let Some(kind) = set.kind() else { continue };
        match u.result {
            Err(errs) => {
                out.errors.extend(errs.iter().cloned());
                let first = errs.first();
                let msg =
                    errs.iter().map(|e| format!("{} {}: {}", e.column, set.st01(), e.message)).collect::<Vec<_>>();
                let line = u.rows.first().map(|r| r.line).unwrap_or(0);
                out.rejected.push(Decision::rejected(
                    line,
                    first.map(|e| e.code.as_str()).unwrap_or("invalid"),
                    "",
                    msg.join("; "),
                ));
            }
            Ok(rec) => {
                if let Record::Inventory(i) = &rec {
                    if let Some(earlier) = skus.insert((set.is_delta(), i.sku.clone()), i.line) {
                        let msg = format!("SKU {} is already in line {earlier} of this interchange", i.sku);
                        out.errors.push(RecordError {
                            line: i.line,
                            column: String::new(),
                            code: ErrorCode::DuplicateSku,
                            message: msg.clone(),
                        });
                        out.rejected.push(Decision::rejected(i.line, ErrorCode::DuplicateSku.as_str(), &i.sku, msg));
                        skus.insert((set.is_delta(), i.sku.clone()), earlier);
                        continue;
                    }
                }
                let order = match kind {
                    Kind::Inventory => 0,
                    Kind::Orders => 1,
                    Kind::Shipments => 2,
                };
                batches.entry((order, set.is_delta())).or_insert_with(|| (kind, Vec::new())).1.push(rec);
            }
        }
    }
    out.batches = batches.into_iter().map(|((_, delta), (kind, records))| Batch { kind, delta, records }).collect();
    out
}

fn unit_rejected(u: &formats::Unit, code: ErrorCode, why: &str) -> Decision {
    let line = u.rows.first().map(|r| r.line).unwrap_or(0);
    let key = match &u.result {
        Ok(r) => crate::reconcile::record_key(r),
        Err(_) => String::new(),
    };
    Decision::rejected(line, code.as_str(), key, why.to_string())
}
