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

use super::db::{p, Row, RowResult};
use super::{now, Ledger, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    Pending,
    Done,
    Failed,
}

impl IntentState {
    fn parse(s: &str) -> Self {
        match s {
            "done" => IntentState::Done,
            "failed" => IntentState::Failed,
            _ => IntentState::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub key: String,
    pub kind: String,
    pub payload: String,
    pub state: IntentState,
    pub remote_id: Option<String>,
    pub outcome: Option<String>,
    pub message: Option<String>,
    pub attempts: i64,
}

fn row(r: &Row) -> RowResult<Intent> {
    Ok(Intent {
        key: r.text(0)?,
        kind: r.text(1)?,
        payload: r.text(2)?,
        state: IntentState::parse(&r.text(3)?),
        remote_id: r.opt_text(4)?,
        outcome: r.opt_text(5)?,
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
    key: &str,
    kind: &str,
    payload: &str,
    t: &str,
) -> super::db::DbResult<u64> {
    tx.exec(
        "INSERT INTO intents(account, key, kind, payload, state, attempts, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 1, ?5, ?5)
         ON CONFLICT(account, key) DO UPDATE SET
            state = CASE WHEN intents.state='failed' THEN 'pending' ELSE intents.state END,
            payload = CASE WHEN intents.state='done' THEN intents.payload ELSE excluded.payload END,
            attempts = intents.attempts + CASE WHEN intents.state <> 'done' THEN 1 ELSE 0 END,
            updated_at = excluded.updated_at",
        p![account, key, kind, payload, t],
    )
}

impl Ledger {
    /// Record intents (one transaction, durable on commit) and return each key's current row: a
    /// key that is already `done` comes back `done`, and the caller must not send it again.
    pub fn begin_intents(&mut self, account: &str, items: &[(String, &str, String)]) -> Result<Vec<Intent>> {
        let t = now();
        let get = format!("SELECT {COLS} FROM intents WHERE account=?1 AND key=?2");
        self.transaction(|tx| {
            let mut out = Vec::with_capacity(items.len());
            for (key, kind, payload) in items {
                upsert_intent(tx, account, key, kind, payload, &t)?;
                let rows = tx.query(&get, p![account, key])?;
                let r = rows.first().ok_or_else(|| super::db::DbError::Row(format!("intent {key} vanished")))?;
                out.push(row(r).map_err(super::db::DbError::Row)?);
            }
            Ok(out)
        })
    }

    pub fn intent(&self, account: &str, key: &str) -> Result<Option<Intent>> {
        self.query_opt(&format!("SELECT {COLS} FROM intents WHERE account=?1 AND key=?2"), p![account, key], row)
    }

    /// Mark intents done with what Stitch answered (or what the resolver found).
    pub fn complete_intents(&mut self, account: &str, done: &[(String, String, String, String)]) -> Result<()> {
        self.finish_intents(account, done, "done")
    }

    /// Stitch refused the write for good (e.g. 422): keep the reason; a later attempt may retry.
    pub fn fail_intents(&mut self, account: &str, failed: &[(String, String, String, String)]) -> Result<()> {
        self.finish_intents(account, failed, "failed")
    }

    /// `items`: (key, outcome, remote_id, message).
    fn finish_intents(&mut self, account: &str, items: &[(String, String, String, String)], state: &str) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let t = now();
        self.transaction(|tx| {
            for (key, outcome, remote_id, message) in items {
                tx.exec(
                    "UPDATE intents SET state=?3, outcome=?4, remote_id=?5, message=?6, updated_at=?7
                     WHERE account=?1 AND key=?2",
                    p![account, key, state, outcome, remote_id, message, &t],
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

    pub fn count_intents(&self, account: &str, state: &str) -> Result<i64> {
        Ok(self
            .query_opt("SELECT COUNT(*) FROM intents WHERE account=?1 AND state=?2", p![account, state], |r| r.int(0))?
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

    #[test]
    fn done_intent_is_never_reopened() {
        let (_d, mut l) = ledger();
        let items = vec![("ship:F1:T1".to_string(), "shipment", "{}".to_string())];
        let first = l.begin_intents("a", &items).unwrap();
        assert_eq!(first[0].state, IntentState::Pending);
        l.complete_intents("a", &[("ship:F1:T1".into(), "created".into(), "S9".into(), "".into())]).unwrap();
        let again = l.begin_intents("a", &items).unwrap();
        assert_eq!(again[0].state, IntentState::Done);
        assert_eq!(again[0].remote_id.as_deref(), Some("S9"));
        assert!(l.pending_intents("a").unwrap().is_empty());
    }

    #[test]
    fn pending_survives_reopen_and_failed_can_retry() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.sqlite");
        {
            let mut l = Ledger::open(&p).unwrap();
            l.begin_intents("a", &[("k1".into(), "order", "{}".into()), ("k2".into(), "order", "{}".into())]).unwrap();
            l.fail_intents("a", &[("k2".into(), "rejected".into(), "".into(), "422".into())]).unwrap();
        }
        let mut l = Ledger::open(&p).unwrap();
        let pending: Vec<_> = l.pending_intents("a").unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(pending, vec!["k1"]);
        let retry = l.begin_intents("a", &[("k2".into(), "order", "{}".into())]).unwrap();
        assert_eq!(retry[0].state, IntentState::Pending);
        assert_eq!(retry[0].attempts, 2);
    }
}
