//! The ledger: one SQLite file that remembers what was seen, decided and sent.
//!
//! It is the memory that makes "nothing lost, nothing twice" possible: files by content hash,
//! each remote write as an intent recorded before the request and completed after it
//! (`outbox.rs`), fulfillments already sent to the warehouse, and account halts.
//! A ledger that cannot be opened is an error, never a silent fresh start: a new empty ledger
//! would re-send everything.

mod files;
mod migrations;
mod outbox;

pub use files::{FileRow, FileState, FileStep, Observation, StoredRecord};
pub use outbox::{Intent, IntentState};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path} is locked by another process (is another stitch-bridge running?)")]
    Locked { path: PathBuf },
    #[error("ledger {path} is damaged or not a stitch-bridge ledger: {message}. Restore it from a backup; do not delete it (a fresh ledger would send everything again)")]
    Corrupt { path: PathBuf, message: String },
    #[error("ledger {path} was written by a newer stitch-bridge (schema {found}, this build knows {known})")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("ledger {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("ledger {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

/// A halted account: why, and since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Halt {
    pub account: String,
    pub code: String,
    pub reason: String,
    pub at: String,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    /// Open (creating if absent) and migrate. The file is made 0600: it names customers' orders.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io { path: path.into(), source })?;
            }
        }
        let existed = path.exists();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, e))?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| classify(path, e))?;
        let mut ledger = Ledger { conn, path: path.to_path_buf() };
        ledger.init()?;
        Ok(ledger)
    }

    fn init(&mut self) -> Result<()> {
        let path = self.path.clone();
        // quick_check reads every page header: a damaged file is caught here, not mid-cycle.
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| classify(&path, e))?;
        if check != "ok" {
            return Err(LedgerError::Corrupt { path, message: check });
        }
        self.conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(|e| classify(&path, e))?;
        migrations::migrate(&mut self.conn).map_err(|e| match e {
            migrations::MigrateError::TooNew { found, known } => LedgerError::TooNew { path: path.clone(), found, known },
            migrations::MigrateError::Sql(e) => classify(&path, e),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| classify(&self.path, e))
    }

    // ---- halts -------------------------------------------------------------------------------

    pub fn halt(&self, account: &str, code: &str, reason: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT INTO halts(account, code, reason, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account) DO UPDATE SET code=excluded.code, reason=excluded.reason, at=excluded.at",
            (account, code, reason, now()),
        ))?;
        Ok(())
    }

    pub fn halted(&self, account: &str) -> Result<Option<Halt>> {
        self.sql(
            self.conn
                .query_row("SELECT account, code, reason, at FROM halts WHERE account = ?1", [account], |r| {
                    Ok(Halt { account: r.get(0)?, code: r.get(1)?, reason: r.get(2)?, at: r.get(3)? })
                })
                .optional(),
        )
    }

    /// Returns whether the account was halted.
    pub fn resume(&self, account: &str) -> Result<bool> {
        Ok(self.sql(self.conn.execute("DELETE FROM halts WHERE account = ?1", [account]))? > 0)
    }

    // ---- fulfillments sent to the warehouse ----------------------------------------------------

    pub fn fulfillment_sent(&self, account: &str, fulfillment_id: &str) -> Result<bool> {
        self.sql(
            self.conn
                .query_row(
                    "SELECT 1 FROM sent_fulfillments WHERE account=?1 AND fulfillment_id=?2",
                    (account, fulfillment_id),
                    |_| Ok(()),
                )
                .optional(),
        )
        .map(|o| o.is_some())
    }

    pub fn mark_fulfillment_sent(&self, account: &str, fulfillment_id: &str, order_ref: &str, file: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT OR IGNORE INTO sent_fulfillments(account, fulfillment_id, order_ref, file, sent_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, 'sent')",
            (account, fulfillment_id, order_ref, file, now()),
        ))?;
        Ok(())
    }

    /// Fulfillments sent to the warehouse whose fate (complete or cancelled) is not yet known.
    pub fn fulfillments_in_flight(&self, account: &str) -> Result<Vec<(String, String)>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT fulfillment_id, order_ref FROM sent_fulfillments WHERE account=?1 AND state='sent' ORDER BY sent_at",
        ))?;
        let rows = self.sql(st.query_map([account], |r| Ok((r.get(0)?, r.get(1)?))))?;
        self.sql(rows.collect())
    }

    /// The fulfillment sent for an order reference, for shipment files that name only the order.
    pub fn fulfillment_for_order(&self, account: &str, order_ref: &str) -> Result<Option<String>> {
        self.sql(
            self.conn
                .query_row(
                    "SELECT fulfillment_id FROM sent_fulfillments WHERE account=?1 AND order_ref=?2 ORDER BY sent_at DESC LIMIT 1",
                    (account, order_ref),
                    |r| r.get(0),
                )
                .optional(),
        )
    }

    /// `state`: `complete` or `cancelled`; `cancel_file` set once the cancel file is written.
    pub fn set_fulfillment_state(&self, account: &str, fulfillment_id: &str, state: &str, cancel_file: Option<&str>) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE sent_fulfillments SET state=?3, cancel_file=COALESCE(?4, cancel_file), closed_at=?5
             WHERE account=?1 AND fulfillment_id=?2",
            (account, fulfillment_id, state, cancel_file, now()),
        ))?;
        Ok(())
    }

    pub fn count_sent_fulfillments(&self, account: &str) -> Result<(i64, i64)> {
        self.sql(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(state='cancelled'),0) FROM sent_fulfillments WHERE account=?1",
            [account],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))
    }

    // ---- cycles and schedules ----------------------------------------------------------------

    pub fn record_cycle(&self, account: &str, started: &str, outcome: &str, summary: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT INTO cycles(account, started_at, finished_at, outcome, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            (account, started, now(), outcome, summary),
        ))?;
        Ok(())
    }

    pub fn last_cycle(&self, account: &str) -> Result<Option<(String, String, String)>> {
        self.sql(
            self.conn
                .query_row(
                    "SELECT finished_at, outcome, summary FROM cycles WHERE account=?1 ORDER BY id DESC LIMIT 1",
                    [account],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional(),
        )
    }

    /// Generic small key/value memory (e.g. when an account last pulled fulfillments).
    pub fn get_mark(&self, key: &str) -> Result<Option<String>> {
        self.sql(self.conn.query_row("SELECT value FROM marks WHERE key=?1", [key], |r| r.get(0)).optional())
    }

    pub fn set_mark(&self, key: &str, value: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "INSERT INTO marks(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        ))?;
        Ok(())
    }

    // ---- leases (one watcher per drop) ---------------------------------------------------------

    /// Take or renew a lease. Succeeds if free, expired, or already ours. A holder that dies
    /// simply stops renewing, so its lease lapses after `ttl`.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let expires = now_ms + ttl.as_millis() as i64;
        let n = self.sql(self.conn.execute(
            "INSERT INTO leases(name, holder, expires_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, expires_ms=excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4",
            (name, holder, expires, now_ms),
        ))?;
        Ok(n > 0)
    }

    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.sql(self.conn.execute("DELETE FROM leases WHERE name=?1 AND holder=?2", (name, holder)))?;
        Ok(())
    }
}

/// Map SQLite's error codes onto what an operator can act on.
fn classify(path: &Path, e: rusqlite::Error) -> LedgerError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(f, ref msg) = e {
        match f.code {
            C::DatabaseBusy | C::DatabaseLocked => return LedgerError::Locked { path: path.into() },
            C::NotADatabase | C::DatabaseCorrupt => {
                return LedgerError::Corrupt {
                    path: path.into(),
                    message: msg.clone().unwrap_or_else(|| f.to_string()),
                }
            }
            _ => {}
        }
    }
    LedgerError::Sql { path: path.into(), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.sqlite");
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        match Ledger::open(&p) {
            Err(LedgerError::Corrupt { .. }) => {}
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("a damaged ledger must not open"),
        }
        assert_eq!(std::fs::read(&p).unwrap(), vec![0x42u8; 8192], "file left untouched");
    }

    #[test]
    fn new_ledger_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sqlite");
        Ledger::open(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn lease_excludes_others_until_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        assert!(l.acquire_lease("drop:a", "w1", Duration::from_secs(60)).unwrap());
        assert!(!l.acquire_lease("drop:a", "w2", Duration::from_secs(60)).unwrap());
        assert!(l.acquire_lease("drop:a", "w1", Duration::from_secs(60)).unwrap(), "renewal");
        assert!(l.acquire_lease("drop:b", "w2", Duration::from_millis(0)).unwrap());
        // w2's lease on b has ttl 0: already expired, so w1 may take it.
        assert!(l.acquire_lease("drop:b", "w1", Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn halt_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        assert!(l.halted("a").unwrap().is_none());
        l.halt("a", "unauthorized", "401").unwrap();
        assert_eq!(l.halted("a").unwrap().unwrap().code, "unauthorized");
        assert!(l.resume("a").unwrap());
        assert!(l.halted("a").unwrap().is_none());
    }
}
