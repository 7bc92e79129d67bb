//! The outbox: every remote write is an intent recorded *before* the request and completed
//! *after* the answer.
//!
//! Why a crash at any instant is safe:
//! 1. Crash before the intent is committed: nothing was sent; the next run plans afresh.
//! 2. Crash after the intent, before or during the request: the intent is `pending`. Nobody
//!    knows whether Stitch applied it, so the next run *asks Stitch* (the resolver for the
//!    intent's kind) before sending anything: found → `done`; absent → send again.
//! 3. Crash after the answer, before `done` is committed: same as 2; the resolver finds the
//!    write and records it without a second request.
//! 4. After `done`: a re-run of the same file reuses the stored outcome; no request is made.
//!
//! Keys are deterministic (derived from the record's content, not from a run or a row id), so
//! the same write planned twice, by the same file retried or by a re-dropped copy, is one
//! intent.

use super::db::{p, Row, RowError, RowResult};
use super::{now, Ledger, Result};
use crate::model::{IntentKey, IntentKind, Outcome, Payload, UnknownWord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    Pending,
    Done,
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Done => "done",
            IntentState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> std::result::Result<Self, UnknownWord> {
        match s {
            "pending" => Ok(IntentState::Pending),
            "done" => Ok(IntentState::Done),
            "failed" => Ok(IntentState::Failed),
            other => Err(UnknownWord { what: "intent state", word: other.to_string() }),
        }
    }
}

/// One recorded write, read back typed: a row this release cannot read is an error that stops
/// the run (a guess could send a write twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub key: IntentKey,
    pub payload: Payload,
    pub state: IntentState,
    pub remote_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub message: Option<String>,
    pub attempts: i64,
}

/// A write about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent {
    pub key: IntentKey,
    pub payload: Payload,
}

impl NewIntent {
    pub fn new(key: IntentKey, payload: Payload) -> Self {
        NewIntent { key, payload }
    }
}

/// How a write ended: what Stitch answered, or what reading it back found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub key: IntentKey,
    pub outcome: Outcome,
    pub remote_id: String,
    pub message: String,
}

impl Finished {
    pub fn new(key: IntentKey, outcome: Outcome, remote_id: impl Into<String>, message: impl Into<String>) -> Self {
        Finished { key, outcome, remote_id: remote_id.into(), message: message.into() }
    }
}

fn row(r: &Row) -> RowResult<Intent> {
    let key_text = r.text(0)?;
    let key: IntentKey = key_text.parse()?;
    let kind: IntentKind = r.text(1)?.parse()?;
    if kind != key.kind() {
        return Err(RowError::KindMismatch { key: key_text, kind: kind.as_str() });
    }
    let payload = Payload::from_json(kind, &key_text, &r.text(2)?)?;
    let word =
        |i: usize, source: UnknownWord| RowError::IntentWord { key: key_text.clone(), column: r.name(i), source };
    let outcome = match r.opt_text(5)? {
        Some(o) => Some(o.parse::<Outcome>().map_err(|e| word(5, e))?),
        None => None,
    };
    Ok(Intent {
        state: IntentState::parse(&r.text(3)?).map_err(|e| word(3, e))?,
        key,
        payload,
        remote_id: r.opt_text(4)?,
        outcome,
        message: r.opt_text(6)?,
        attempts: r.int(7)?,
    })
}

const COLS: &str = "key, kind, payload, state, remote_id, outcome, message, attempts";

/// Record one intent inside a caller's transaction: new → pending; failed → pending again; a
/// done intent keeps its payload and state.
pub(crate) fn upsert_intent(
    tx: &mut super::db::Tx<'_>,
    account: &str,
    intent: &NewIntent,
    t: &str,
) -> super::db::DbResult<u64> {
    let (key, kind, payload) = (intent.key.to_string(), intent.payload.kind().as_str(), intent.payload.to_json());
    tx.exec(
        "INSERT INTO intents(account, key, kind, payload, state, attempts, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 1, ?5, ?5)
         ON CONFLICT(account, key) DO UPDATE SET
            state = CASE WHEN intents.state='failed' THEN 'pending' ELSE intents.state END,
            payload = CASE WHEN intents.state='done' THEN intents.payload ELSE excluded.payload END,
            attempts = intents.attempts + CASE WHEN intents.state <> 'done' THEN 1 ELSE 0 END,
            updated_at = excluded.updated_at",
        p![account, &key, kind, &payload, t],
    )
}

impl Ledger {
    /// Record intents (one transaction, durable on commit) and return each key's current row: a
    /// key that is already `done` comes back `done`, and the caller must not send it again.
    pub fn begin_intents(&mut self, account: &str, items: &[NewIntent]) -> Result<Vec<Intent>> {
        let t = now();
        let get = format!("SELECT {COLS} FROM intents WHERE account=?1 AND key=?2");
        self.transaction(|tx| {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                upsert_intent(tx, account, item, &t)?;
                let key = item.key.to_string();
                let rows = tx.query(&get, p![account, &key])?;
                let r = rows.first().ok_or(RowError::IntentVanished { key })?;
                out.push(row(r)?);
            }
            Ok(out)
        })
    }

    pub fn intent(&self, account: &str, key: &IntentKey) -> Result<Option<Intent>> {
        let key = key.to_string();
        self.query_opt(&format!("SELECT {COLS} FROM intents WHERE account=?1 AND key=?2"), p![account, &key], row)
    }

    /// Mark intents done with what Stitch answered (or what the resolver found).
    pub fn complete_intents(&mut self, account: &str, done: &[Finished]) -> Result<()> {
        self.finish_intents(account, done, IntentState::Done)
    }

    /// Stitch refused the write for good (e.g. 422): keep the reason; a later attempt may retry.
    pub fn fail_intents(&mut self, account: &str, failed: &[Finished]) -> Result<()> {
        self.finish_intents(account, failed, IntentState::Failed)
    }

    fn finish_intents(&mut self, account: &str, items: &[Finished], state: IntentState) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let t = now();
        self.transaction(|tx| {
            for f in items {
                let key = f.key.to_string();
                tx.exec(
                    "UPDATE intents SET state=?3, outcome=?4, remote_id=?5, message=?6, updated_at=?7
                     WHERE account=?1 AND key=?2",
                    p![account, &key, state.as_str(), f.outcome.as_str(), &f.remote_id, &f.message, &t],
                )?;
            }
            Ok(())
        })
    }

    pub fn pending_intents(&self, account: &str) -> Result<Vec<Intent>> {
        self.query(
            &format!("SELECT {COLS} FROM intents WHERE account=?1 AND state='pending' ORDER BY id"),
            p![account],
            row,
        )
    }

    pub fn count_intents(&self, account: &str, state: IntentState) -> Result<i64> {
        Ok(self
            .query_opt(
                "SELECT COUNT(*) FROM intents WHERE account=?1 AND state=?2",
                p![account, state.as_str()],
                |r| r.int(0),
            )?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        (d, l)
    }

    fn ship(t: &str) -> NewIntent {
        let key = IntentKey::Shipment { fulfillment_id: "F1".into(), tracking_number: t.into() };
        NewIntent::new(key, Payload::shipment("F1", t, "abc"))
    }

    #[test]
    fn done_intent_is_never_reopened() {
        let (_d, mut l) = ledger();
        let items = vec![ship("T1")];
        let first = l.begin_intents("a", &items).unwrap();
        assert_eq!(first[0].state, IntentState::Pending);
        l.complete_intents("a", &[Finished::new(items[0].key.clone(), Outcome::Created, "S9", "")]).unwrap();
        let again = l.begin_intents("a", &items).unwrap();
        assert_eq!(again[0].state, IntentState::Done);
        assert_eq!(again[0].remote_id.as_deref(), Some("S9"));
        assert_eq!(again[0].outcome, Some(Outcome::Created));
        assert!(l.pending_intents("a").unwrap().is_empty());
    }

    #[test]
    fn pending_survives_reopen_and_failed_can_retry() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.sqlite");
        {
            let mut l = Ledger::open(&p).unwrap();
            l.begin_intents("a", &[ship("k1"), ship("k2")]).unwrap();
            l.fail_intents("a", &[Finished::new(ship("k2").key, Outcome::Rejected, "", "422")]).unwrap();
        }
        let mut l = Ledger::open(&p).unwrap();
        let pending: Vec<_> = l.pending_intents("a").unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(pending, vec![ship("k1").key]);
        assert_eq!(l.count_intents("a", IntentState::Failed).unwrap(), 1);
        let retry = l.begin_intents("a", &[ship("k2")]).unwrap();
        assert_eq!(retry[0].state, IntentState::Pending);
        assert_eq!(retry[0].attempts, 2);
    }

    /// A row this release cannot read stops the caller instead of being skipped or guessed.
    #[test]
    fn an_unreadable_row_is_an_error_naming_the_intent() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.sqlite");
        {
            let mut l = Ledger::open(&p).unwrap();
            l.begin_intents("a", &[ship("T1")]).unwrap();
        }
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute("UPDATE intents SET payload='{\"fulfillment_id\":\"F1\"}'", []).unwrap();
        drop(c);
        let l = Ledger::open(&p).unwrap();
        let e = l.pending_intents("a").unwrap_err().to_string();
        assert!(e.contains("shp:F1/T1") && e.contains("tracking_number"), "{e}");
    }

    /// A value of the wrong type or a word no release wrote names the column (and the intent).
    #[test]
    fn an_unreadable_column_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.sqlite");
        let key = ship("T1").key;
        {
            let mut l = Ledger::open(&p).unwrap();
            l.begin_intents("a", &[ship("T1")]).unwrap();
        }
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute("UPDATE intents SET state='sent'", []).unwrap();
        let l = Ledger::open(&p).unwrap();
        let e = l.intent("a", &key).unwrap_err();
        assert!(matches!(e, crate::ledger::LedgerError::Unreadable { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("intent shp:F1/T1, column state: unknown intent state \"sent\""), "{e}");
        c.execute("UPDATE intents SET state='pending', attempts='many'", []).unwrap();
        let e = l.intent("a", &key).unwrap_err().to_string();
        assert!(e.contains("column attempts: expected an integer, found Text(\"many\")"), "{e}");
    }
}
