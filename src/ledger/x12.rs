//! X12 in the ledger: control numbers, what we sent, the partner's 997s about it, and the
//! partner's interchanges already taken.
//!
//! Control numbers are allocated before a file is written and committed before they are
//! returned: a crash between allocating and writing only leaves a gap, never a number used
//! twice. One upsert with `RETURNING` allocates, so two workers (or two connections to one
//! SQLite file) can never be handed the same number. Numbers are kept per account and partner
//! (`X12Config::partner_key`): ISA13, GS06 and ST02 each count up from 1 and, after
//! 999,999,999 (the largest nine-digit number), start again at 1. At one interchange a minute
//! that is nineteen centuries away; partners only require uniqueness over a few months.

use super::db::{p, ColumnProblem, Row, RowError, RowResult};
use super::{now, Ledger, LedgerError, Result};
use crate::model::UnknownWord;
use chrono::{DateTime, SecondsFormat, Utc};
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The largest ISA13, GS06 and ST02 we allocate; the next one after it is 1.
pub const MAX_CONTROL: u32 = 999_999_999;

/// The control numbers of one outbound file: its ISA13, its GS06 and a run of ST02s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X12Controls {
    pub interchange: u32,
    pub group: u32,
    pub first_set: u32,
    /// How many ST02s the run holds (as asked for).
    pub sets: u32,
}

impl X12Controls {
    /// The ST02s of the run: `first_set ..= first_set + sets - 1` (a run never wraps).
    pub fn set_controls(&self) -> RangeInclusive<u32> {
        self.first_set..=self.first_set + (self.sets - 1)
    }
}

/// What an outbound transaction set carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum X12Doc {
    /// A 940 for a fulfillment.
    Order,
    /// A 940 cancelling one.
    Cancel,
    /// A 997 we send for the partner's interchange.
    Ack,
}

impl X12Doc {
    pub const ALL: [X12Doc; 3] = [X12Doc::Order, X12Doc::Cancel, X12Doc::Ack];

    pub fn as_str(self) -> &'static str {
        match self {
            X12Doc::Order => "order",
            X12Doc::Cancel => "cancel",
            X12Doc::Ack => "ack",
        }
    }
}

impl FromStr for X12Doc {
    type Err = UnknownWord;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        X12Doc::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownWord { what: "X12 document", word: s.to_string() })
    }
}

/// What the partner's 997 said about one of our sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckStatus {
    /// AK5 `A`.
    Accepted,
    /// AK5 `E`: accepted, with errors noted.
    AcceptedWithErrors,
    /// AK5 `R`, `M`, `W`, `X`, or a code we do not know: the set was not taken.
    Rejected,
}

impl AckStatus {
    /// How it is stored: `A`, `E` or `R`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Accepted => "A",
            AckStatus::AcceptedWithErrors => "E",
            AckStatus::Rejected => "R",
        }
    }

    /// An AK501 (or AK901) code. Anything but `A` or `E` counts as rejected: a code we cannot
    /// read must bring a person, not pass as accepted.
    pub fn from_code(code: &str) -> AckStatus {
        match code.trim() {
            "A" => AckStatus::Accepted,
            "E" => AckStatus::AcceptedWithErrors,
            _ => AckStatus::Rejected,
        }
    }

    /// A set the 997 has no AK2 for takes its group's AK901: A and E as they are, P (partially
    /// accepted) as accepted, since a rejected set must be reported with its own AK2; anything
    /// else as rejected.
    fn of_unlisted_set(group_status: &str) -> AckStatus {
        match group_status.trim() {
            "P" => AckStatus::Accepted,
            other => AckStatus::from_code(other),
        }
    }

    fn parse(s: &str) -> Option<AckStatus> {
        [AckStatus::Accepted, AckStatus::AcceptedWithErrors, AckStatus::Rejected].into_iter().find(|a| a.as_str() == s)
    }
}

/// One transaction set of a file we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSet {
    /// ST02.
    pub control: u32,
    pub doc: X12Doc,
    /// The fulfillment a 940 is for (`None` for a 997).
    pub fulfillment_id: Option<String>,
}

/// A file we wrote to the partner, as [`Ledger::record_x12_sent`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X12Sent {
    /// `X12Config::partner_key`.
    pub partner: String,
    pub path: String,
    /// ISA13.
    pub interchange: u32,
    /// GS06.
    pub group: u32,
    pub sets: Vec<SentSet>,
    pub sent_at: DateTime<Utc>,
}

/// One outbound set read back, with what the partner's 997 said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDoc {
    pub partner: String,
    pub path: String,
    pub doc: X12Doc,
    pub fulfillment_id: Option<String>,
    pub interchange: u32,
    pub group: u32,
    pub set_control: u32,
    pub sent_at: DateTime<Utc>,
    /// `None` until a 997 about it arrives.
    pub ack: Option<AckStatus>,
    /// The 997 file that said so.
    pub ack_path: Option<String>,
}

/// An interchange of the partner's already taken: which file brought it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenInterchange {
    pub path: String,
    pub at: DateTime<Utc>,
}

/// Times are stored as fixed-width RFC 3339 text in UTC (milliseconds), so text order is time
/// order on both backends.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn wrong(r: &Row, i: usize, expected: &'static str, found: String) -> RowError {
    RowError::Column { column: r.name(i), problem: ColumnProblem::Type { expected, found } }
}

fn time(r: &Row, i: usize) -> RowResult<DateTime<Utc>> {
    let s = r.text(i)?;
    DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|_| wrong(r, i, "an RFC 3339 time", s))
}

fn control(r: &Row, i: usize) -> RowResult<u32> {
    let v = r.int(i)?;
    u32::try_from(v)
        .ok()
        .filter(|c| (1..=MAX_CONTROL).contains(c))
        .ok_or_else(|| wrong(r, i, "a control number", v.to_string()))
}

const DOC_COLS: &str =
    "partner, path, doc, fulfillment_id, interchange, group_control, set_control, sent_at, ack_status, ack_path";

fn outbound(r: &Row) -> RowResult<OutboundDoc> {
    let doc = r.text(2)?;
    let doc = doc.parse().map_err(|_| wrong(r, 2, "order, cancel or ack", doc))?;
    let ack = match r.opt_text(8)? {
        None => None,
        Some(a) => Some(AckStatus::parse(&a).ok_or_else(|| wrong(r, 8, "A, E or R", a))?),
    };
    Ok(OutboundDoc {
        partner: r.text(0)?,
        path: r.text(1)?,
        doc,
        fulfillment_id: r.opt_text(3)?,
        interchange: control(r, 4)?,
        group: control(r, 5)?,
        set_control: control(r, 6)?,
        sent_at: time(r, 7)?,
        ack,
        ack_path: r.opt_text(9)?,
    })
}

impl Ledger {
    /// The next ISA13 and GS06 and a run of `sets` ST02s for one file to `partner`, committed
    /// before this returns. `sets` must be 1 to [`MAX_CONTROL`]; a run that would pass
    /// [`MAX_CONTROL`] starts again at 1, so its numbers stay consecutive.
    pub fn allocate_x12_controls(&self, account: &str, partner: &str, sets: u32) -> Result<X12Controls> {
        if sets == 0 || sets > MAX_CONTROL {
            return Err(LedgerError::Config {
                at: self.at.clone(),
                message: format!("cannot allocate {sets} X12 set control numbers for one file (1 to {MAX_CONTROL})"),
            });
        }
        // The row holds the numbers last handed out. One statement reads and moves them, so
        // concurrent callers queue on the row (PostgreSQL) or the write lock (SQLite).
        let row = self.query_opt(
            "INSERT INTO x12_controls(account, partner, interchange, group_control, set_control, updated_at)
             VALUES (?1, ?2, 1, 1, ?3, ?4)
             ON CONFLICT(account, partner) DO UPDATE SET
                interchange = CASE WHEN x12_controls.interchange >= ?5 THEN 1 ELSE x12_controls.interchange + 1 END,
                group_control = CASE WHEN x12_controls.group_control >= ?5 THEN 1 ELSE x12_controls.group_control + 1 END,
                set_control = CASE WHEN x12_controls.set_control > ?5 - ?3 THEN ?3 ELSE x12_controls.set_control + ?3 END,
                updated_at = excluded.updated_at
             RETURNING interchange, group_control, set_control",
            p![account, partner, sets as i64, now(), MAX_CONTROL as i64],
            |r| Ok((control(r, 0)?, control(r, 1)?, control(r, 2)?)),
        )?;
        let (interchange, group, last_set) =
            row.ok_or_else(|| self.err(RowError::NoRow { statement: "allocate_x12_controls" }.into()))?;
        Ok(X12Controls { interchange, group, first_set: last_set - (sets - 1), sets })
    }

    /// Record a file written to the partner, one row per set, in one transaction. Recording
    /// the same file again (after a crash before the first record was known) changes nothing.
    pub fn record_x12_sent(&mut self, account: &str, sent: &X12Sent) -> Result<()> {
        let at = stamp(sent.sent_at);
        self.transaction(|tx| {
            for s in &sent.sets {
                tx.exec(
                    "INSERT INTO x12_sent(account, partner, path, doc, fulfillment_id, interchange, group_control,
                                          set_control, sent_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                    p![
                        account,
                        &sent.partner,
                        &sent.path,
                        s.doc.as_str(),
                        s.fulfillment_id.as_deref(),
                        sent.interchange as i64,
                        sent.group as i64,
                        s.control as i64,
                        &at
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The file that brought the partner's interchange `isa13` (as written in the ISA, zeros
    /// and all), if one did.
    pub fn x12_interchange_seen(&self, account: &str, partner: &str, isa13: &str) -> Result<Option<SeenInterchange>> {
        self.query_opt(
            "SELECT path, seen_at FROM x12_seen WHERE account=?1 AND partner=?2 AND interchange=?3",
            p![account, partner, isa13],
            |r| Ok(SeenInterchange { path: r.text(0)?, at: time(r, 1)? }),
        )
    }

    /// Remember that `path` brought interchange `isa13`. False when it was already marked
    /// (then the first file stays on record).
    pub fn mark_x12_interchange(&self, account: &str, partner: &str, isa13: &str, path: &str) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO x12_seen(account, partner, interchange, path, seen_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
            p![account, partner, isa13, path, now()],
        )?;
        Ok(n > 0)
    }

    /// Apply a 997 from `partner` about our group `group_control` (AK102): each of our order and
    /// cancel sets in that group takes its AK5 from `sets` (ST02, AK501), or, without an AK2,
    /// its group's AK901. Returns the sets it matched, with their new status (empty for a group
    /// we never sent). A later 997 about the same group replaces the earlier verdict.
    pub fn record_x12_ack(
        &mut self,
        account: &str,
        partner: &str,
        group_control: u32,
        group_status: &str,
        sets: &[(u32, String)],
        ack_path: &str,
    ) -> Result<Vec<OutboundDoc>> {
        let t = now();
        let select = format!(
            "SELECT {DOC_COLS}, id FROM x12_sent
             WHERE account=?1 AND partner=?2 AND group_control=?3 AND doc IN ('order', 'cancel') ORDER BY id"
        );
        self.transaction(|tx| {
            let rows = tx.query(&select, p![account, partner, group_control as i64])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut doc = outbound(r)?;
                let id = r.int(10)?;
                let status = match sets.iter().find(|(st02, _)| *st02 == doc.set_control) {
                    Some((_, ak5)) => AckStatus::from_code(ak5),
                    None => AckStatus::of_unlisted_set(group_status),
                };
                tx.exec(
                    "UPDATE x12_sent SET ack_status=?2, ack_group_status=?3, ack_path=?4, acked_at=?5 WHERE id=?1",
                    p![id, status.as_str(), group_status.trim(), ack_path, &t],
                )?;
                doc.ack = Some(status);
                doc.ack_path = Some(ack_path.to_string());
                out.push(doc);
            }
            Ok(out)
        })
    }

    /// Order and cancel sets sent before `sent_before` that no 997 has answered, oldest first.
    pub fn x12_unacknowledged(&self, account: &str, sent_before: DateTime<Utc>) -> Result<Vec<OutboundDoc>> {
        self.query(
            &format!(
                "SELECT {DOC_COLS} FROM x12_sent
                 WHERE account=?1 AND ack_status IS NULL AND dismissed_at IS NULL AND doc IN ('order', 'cancel')
                   AND sent_at < ?2
                 ORDER BY sent_at, id"
            ),
            p![account, stamp(sent_before)],
            outbound,
        )
    }

    /// The operator has looked (`resume`): the rejected sets, and those sent before
    /// `unacked_sent_before` with no 997, stop counting as problems. Returns how many.
    pub fn dismiss_x12_problems(&self, account: &str, unacked_sent_before: DateTime<Utc>) -> Result<u64> {
        self.exec(
            "UPDATE x12_sent SET dismissed_at=?3
             WHERE account=?1 AND dismissed_at IS NULL AND doc IN ('order', 'cancel')
               AND (ack_status='R' OR (ack_status IS NULL AND sent_at < ?2))",
            p![account, stamp(unacked_sent_before), now()],
        )
    }

    /// Sets the partner's 997s rejected (and not dismissed), oldest first.
    pub fn x12_rejected(&self, account: &str) -> Result<Vec<OutboundDoc>> {
        self.query(
            &format!("SELECT {DOC_COLS} FROM x12_sent WHERE account=?1 AND ack_status='R' AND dismissed_at IS NULL ORDER BY sent_at, id"),
            p![account],
            outbound,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_read_back_and_unknown_words_are_errors() {
        for d in X12Doc::ALL {
            assert_eq!(d.as_str().parse::<X12Doc>().unwrap(), d);
        }
        assert!("Order".parse::<X12Doc>().is_err());
    }

    #[test]
    fn ack_codes_other_than_accepted_reject() {
        assert_eq!(AckStatus::from_code("A"), AckStatus::Accepted);
        assert_eq!(AckStatus::from_code("E"), AckStatus::AcceptedWithErrors);
        for c in ["R", "M", "W", "X", "", "a", "Z"] {
            assert_eq!(AckStatus::from_code(c), AckStatus::Rejected, "{c:?}");
        }
        assert_eq!(AckStatus::of_unlisted_set("P"), AckStatus::Accepted);
        assert_eq!(AckStatus::of_unlisted_set("R"), AckStatus::Rejected);
    }

    #[test]
    fn a_run_at_the_top_of_the_range_starts_again_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        l.allocate_x12_controls("a", "ZZ:P", 1).unwrap();
        l.exec(
            "UPDATE x12_controls SET interchange=?1, group_control=?1, set_control=?2",
            p![MAX_CONTROL as i64, MAX_CONTROL as i64 - 1],
        )
        .unwrap();
        let c = l.allocate_x12_controls("a", "ZZ:P", 3).unwrap();
        assert_eq!((c.interchange, c.group, c.set_controls()), (1, 1, 1..=3));
        assert!(l.allocate_x12_controls("a", "ZZ:P", 0).is_err());
    }
}
