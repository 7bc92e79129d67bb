//! X12 in the shell: what the inbound steps do differently for an interchange (reading it into
//! the same batches of records as a CSV file, its error file, the 997 per functional group), the
//! control numbers of what we send, and the partner's 997s that answer our 940s.
//!
//! Crash safety of what we send: the control numbers of a file are allocated in the ledger
//! (committed) and remembered under a mark named for the file's purpose *before* the file is
//! written; a retry after a crash finds the mark and writes the same bytes under the same name,
//! where "already there" means "ours". A crash between the allocation and the mark only leaves a
//! gap in the series: a number is never handed out twice.

use super::account::{AccountCtx, Step, Stop};
use super::x12_read::read_x12;
use crate::formats::{self, ErrorCode};
use crate::ledger::{SentSet, X12Doc, X12Sent};
use crate::reconcile::{Decision, Outcome};
use crate::x12::inbound::{self as x12in, ReceivedAck};
use crate::x12::write::Envelope;
use crate::x12::GroupResult;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;

/// What a mark remembers of an outbound file's envelope.
#[derive(Serialize, Deserialize)]
struct Memo {
    interchange: u32,
    group: u32,
    first_set: u32,
    at: DateTime<FixedOffset>,
}

impl AccountCtx<'_> {
    /// The envelope of an outbound file, allocated once per `memo` (see the module comment).
    pub(super) fn x12_envelope(&mut self, memo: &str, partner_version: Option<crate::x12::Version>) -> Step<Envelope> {
        let cfg = self
            .acct
            .x12
            .clone()
            .ok_or_else(|| Stop::local("X12 envelope", std::io::Error::other("no [account.x12]")))?;
        let m = match self.ledger.get_mark(memo)?.and_then(|v| serde_json::from_str::<Memo>(&v).ok()) {
            Some(m) => m,
            None => {
                let c = self.ledger.allocate_x12_controls(&self.acct.name, &cfg.partner_key(), 1)?;
                let m = Memo {
                    interchange: c.interchange,
                    group: c.group,
                    first_set: c.first_set,
                    at: Utc::now().fixed_offset(),
                };
                let text = serde_json::to_string(&m)
                    .map_err(|e| Stop::local("X12 control numbers", std::io::Error::other(e)))?;
                self.ledger.set_mark(memo, &text)?;
                m
            }
        };
        Ok(Envelope {
            sender: cfg.us(),
            receiver: cfg.partner(),
            version: partner_version.unwrap_or(cfg.version),
            usage: cfg.usage.isa15().chars().next().unwrap_or('P'),
            interchange_control: m.interchange,
            group_control: m.group,
            set_control: m.first_set,
            at: m.at,
        })
    }

    /// Record a file we wrote to the partner (idempotent).
    pub(super) fn x12_sent(&mut self, path: &str, env: &Envelope, doc: X12Doc, fulfillment: Option<&str>) -> Step<()> {
        let Some(cfg) = self.acct.x12.as_ref() else { return Ok(()) };
        let sent = X12Sent {
            partner: cfg.partner_key(),
            path: path.to_string(),
            interchange: env.interchange_control,
            group: env.group_control,
            sets: vec![SentSet { control: env.set_control, doc, fulfillment_id: fulfillment.map(str::to_string) }],
            sent_at: Utc::now(),
        };
        self.ledger.record_x12_sent(&self.acct.name, &sent)?;
        Ok(())
    }

    /// One 997 per functional group of an inbound file, each written once (marks keyed by the
    /// file's ledger id and the group's place in it).
    pub(super) fn write_acks(&mut self, file_id: i64, isa13: &str, groups: &[GroupResult]) -> Step<()> {
        for (i, g) in groups.iter().enumerate() {
            let memo = format!("x12-ack:{}:{file_id}:{i}", self.acct.name);
            let version = match g.version.trim() {
                v if v.starts_with("00501") => Some(crate::x12::Version::V005010),
                v if v.starts_with("00401") => Some(crate::x12::Version::V004010),
                _ => None,
            };
            let env = self.x12_envelope(&memo, version)?;
            let name = format!(
                "997_{}_{}.edi",
                crate::reconcile::download::safe_name(isa13.trim()),
                crate::reconcile::download::safe_name(g.control.trim())
            );
            let path = format!("{}/{name}", self.acct.folders.outbound_acks);
            let bytes = crate::x12::write::ack_997(&env, g);
            let path = self.write_once(&path, &bytes)?;
            self.x12_sent(&path, &env, X12Doc::Ack, None)?;
            tracing::info!(account = %self.acct.name, file = %path, group = %g.control, status = g.status(), "997 sent");
        }
        Ok(())
    }

    /// The partner's 997s: each answers one of our groups; the result rows name our files.
    pub(super) fn record_acks(&mut self, acks: &[ReceivedAck], path: &str) -> Step<Vec<Decision>> {
        let Some(cfg) = self.acct.x12.clone() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for a in acks {
            // Only our 940s (GS01 OW) are ever acknowledged; a 997 about another group type is
            // not about anything we sent.
            if a.group_functional_id.trim() != crate::x12::SetKind::Order940.functional_id() {
                out.push(Decision::new(
                    a.line,
                    format!("GS01 {}", a.group_functional_id.trim()),
                    Outcome::Skipped,
                    "",
                    format!("acknowledges a {} group; only our 940s (OW) are tracked", a.group_functional_id.trim()),
                ));
                continue;
            }
            let Ok(group) = a.group_control.trim().parse::<u32>() else {
                out.push(Decision::rejected(
                    a.line,
                    ErrorCode::X12ControlNumber.as_str(),
                    a.group_control.clone(),
                    format!("AK1-02 {:?} is not a group control number of ours", a.group_control),
                ));
                continue;
            };
            let sets: Vec<(u32, String)> =
                a.sets.iter().filter_map(|(_, st02, ak5)| st02.trim().parse().ok().map(|n| (n, ak5.clone()))).collect();
            let docs =
                self.ledger.record_x12_ack(&self.acct.name, &cfg.partner_key(), group, &a.group_status, &sets, path)?;
            if docs.is_empty() {
                out.push(Decision::new(
                    a.line,
                    format!("GS06 {group}"),
                    Outcome::Skipped,
                    "",
                    format!("acknowledges group {group}, which this account never sent"),
                ));
            }
            for d in docs {
                let file = d.path.rsplit('/').next().unwrap_or(&d.path).to_string();
                let status = d.ack.map(|s| s.as_str()).unwrap_or("?");
                let verdict = if status == "R" { "REJECTED by the partner" } else { "accepted by the partner" };
                out.push(Decision::new(
                    a.line,
                    file.clone(),
                    Outcome::Updated,
                    "",
                    format!("{file}: {verdict} (AK5 {status})"),
                ));
            }
        }
        Ok(out)
    }

    /// Our 940s the partner rejected or has not acknowledged within `ack_hours`: a person must
    /// look (the account needs attention, the files named).
    pub(super) fn x12_attention(&self) -> Step<Option<crate::engine::attention::Attention>> {
        use crate::model::Reason;
        let Some(cfg) = self.acct.x12.as_ref() else { return Ok(None) };
        let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let rejected = self.ledger.x12_rejected(&self.acct.name)?;
        if !rejected.is_empty() {
            let files: Vec<String> = rejected.iter().map(|d| name(&d.path)).collect();
            let msg = format!(
                "the partner's 997 rejected {} of our 940 files: {}",
                files.len(),
                files.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
            );
            return Ok(Some(crate::engine::attention::Attention::new(Reason::X12Rejected, msg)));
        }
        let cutoff = Utc::now() - chrono::Duration::from_std(cfg.ack_timeout).unwrap_or(chrono::Duration::hours(24));
        let late = self.ledger.x12_unacknowledged(&self.acct.name, cutoff)?;
        if !late.is_empty() {
            let files: Vec<String> = late.iter().map(|d| name(&d.path)).collect();
            let msg = format!(
                "{} of our 940 files have no 997 from the partner after {} hours: {}",
                files.len(),
                cfg.ack_timeout.as_secs() / 3600,
                files.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
            );
            return Ok(Some(crate::engine::attention::Attention::new(Reason::X12Unacknowledged, msg)));
        }
        Ok(None)
    }
}

impl AccountCtx<'_> {
    /// The functional groups of an inbound X12 file, read again (for its 997s after a crash, or
    /// in the step that writes them). `None` when the file changed since it was listed.
    pub(super) fn x12_groups(
        &mut self,
        inbox: super::inbound::Inbox,
        src: &super::content::Source,
        listed: &crate::drop::Entry,
    ) -> Step<Option<Vec<GroupResult>>> {
        let opts = self.acct.parse.clone();
        let cfg = self.acct.x12.clone();
        let path = src.file.as_str();
        let Some(mut reader) = self.open_input(src, listed)? else {
            return Ok(None);
        };
        let r = read_x12(&mut reader, &opts, inbox.kind(), cfg.as_ref());
        reader.failed(path)?;
        Ok(Some(if r.file_rejection.is_some() { Vec::new() } else { r.groups }))
    }

    /// The error file of an X12 file: one row per located problem (line = the segment's ordinal,
    /// column = the element reference) and per record Stitch refused, with the segment's text.
    pub(super) fn render_x12_errors(
        &mut self,
        inbox: super::inbound::Inbox,
        src: &super::content::Source,
        listed: &crate::drop::Entry,
        outcomes: &[crate::ledger::StoredRecord],
    ) -> Step<Option<std::fs::File>> {
        let opts = self.acct.parse.clone();
        let cfg = self.acct.x12.clone();
        let path = src.file.as_str();
        let Some(mut reader) = self.open_input(src, listed)? else {
            return Ok(None);
        };
        let r = read_x12(&mut reader, &opts, inbox.kind(), cfg.as_ref());
        reader.failed(path)?;
        drop(reader);
        // (line, column, code, message), in line order.
        let mut rows: Vec<(u64, String, String, String)> = Vec::new();
        if let Some(f) = &r.file_rejection {
            rows.push((
                f.line.unwrap_or(0),
                f.column.clone().unwrap_or_default(),
                f.code.as_str().into(),
                f.message.clone(),
            ));
        } else {
            let mut located: std::collections::HashSet<u64> = std::collections::HashSet::new();
            for e in &r.errors {
                located.insert(e.line);
                rows.push((e.line, e.column.clone(), e.code.as_str().into(), e.message.clone()));
            }
            for o in outcomes.iter().filter(|o| o.outcome == "rejected" && !located.contains(&o.line)) {
                let code = if o.code.is_empty() { "rejected".to_string() } else { o.code.clone() };
                rows.push((o.line, String::new(), code, o.message.clone()));
            }
        }
        rows.sort_by_key(|r| r.0);
        let wanted: std::collections::HashSet<u64> = rows.iter().map(|r| r.0).collect();
        let Some(mut reader) = self.open_input(src, listed)? else {
            return Ok(None);
        };
        let texts = segment_texts(&mut reader, &opts, &wanted);
        reader.failed(path)?;
        let built = (|| -> std::io::Result<std::fs::File> {
            use std::io::{Seek, Write};
            let mut tmp = tempfile::tempfile()?;
            {
                let mut buf = std::io::BufWriter::new(&mut tmp);
                let mut w = crate::report::ErrorWriter::new(&mut buf, &["segment".to_string()])?;
                for (line, column, code, message) in &rows {
                    let mut row = formats::RawRow { line: *line, ..Default::default() };
                    row.fields.push(texts.get(line).map(String::as_str).unwrap_or(""));
                    w.write(&row, *line, column, code, message)?;
                }
                w.finish()?;
                buf.flush()?;
            }
            tmp.rewind()?;
            Ok(tmp)
        })();
        built.map(Some).map_err(|e| Stop::local(format!("the temporary error file of {path}"), e))
    }
}

/// The text of the segments at `wanted` ordinals, elements joined by the file's own separator.
fn segment_texts<R: Read>(
    reader: R,
    opts: &formats::ParseOptions,
    wanted: &std::collections::HashSet<u64>,
) -> HashMap<u64, String> {
    use crate::x12::read::{Segment, Tokenizer};
    let mut out = HashMap::new();
    let x = x12in::X12Options::from_parse(opts);
    let Ok((mut t, isa)) = Tokenizer::open(reader, x.max_segment_len, x.max_file_bytes) else { return out };
    let sep = (t.separators().element as char).to_string();
    // ISA02 and ISA04 (authorization and security information) can carry a password: never
    // echoed into a file.
    fn masked(isa: bool, i: usize, v: &str) -> &str {
        if isa && (i == 2 || i == 4) && !v.trim().is_empty() {
            "**********"
        } else {
            v
        }
    }
    let text = |s: &Segment| {
        let isa = s.id() == "ISA";
        s.elements.iter().enumerate().map(|(i, v)| masked(isa, i, v)).collect::<Vec<_>>().join(&sep)
    };
    if wanted.contains(&isa.ordinal) {
        out.insert(isa.ordinal, text(&isa));
    }
    let mut seg = Segment::default();
    while out.len() < wanted.len() {
        match t.next_into(&mut seg) {
            Ok(true) if wanted.contains(&seg.ordinal) => {
                out.insert(seg.ordinal, text(&seg));
            }
            Ok(true) => {}
            _ => break,
        }
    }
    out
}
