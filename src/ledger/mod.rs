//! The ledger: what was seen, decided and sent, in SQLite (one file, the default) or PostgreSQL
//! (shared by several worker processes).
//!
//! It is the memory that makes "nothing lost, nothing twice" possible: files by content hash,
//! each remote write as an intent recorded before the request and completed after it
//! (`outbox.rs`), fulfillments already sent to the warehouse, and account halts.
//! A ledger that cannot be opened is an error, never a silent fresh start: a new empty ledger
//! would re-send everything. Several workers share accounts through leases ([`Ledger::claim_account`]):
//! an account is processed by at most one live worker at a time.

mod console;
mod db;
mod files;
pub mod marker;
mod migrations;
mod outbox;
mod pg_tls;
mod waiting;
mod x12;

pub use console::{AlertRow, ConsoleAction, CycleRow, DayCount, FileFilter, FoundRecord, Page, SentRow, StateFilter};
pub use db::{ColumnProblem, RowError};
pub use files::{FileRow, FileState, FileStep, Observation, StoredRecord};
pub use migrations::SCHEMA_VERSION;
pub use outbox::{Finished, Intent, IntentState, NewIntent};
pub use pg_tls::{PgTls, SslMode, TlsSetupError};
pub use waiting::Waiting;
pub use x12::{
    AckStatus, OutboundDoc, SeenInterchange, SentSet, X12Controls, X12Doc, X12Sent, MAX_CONTROL as X12_MAX_CONTROL,
};

use db::{p, Db, DbError, Dialect, Row, RowResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {at} is locked by another process (is another stitch-bridge running?)")]
    Locked { at: String },
    #[error("ledger {at} is damaged or not a stitch-bridge ledger: {message}. Restore it from a backup; do not delete it (a fresh ledger would send everything again)")]
    Corrupt { at: String, message: String },
    /// A row this release cannot read (damaged, or written by a newer release).
    #[error("ledger {at} is damaged or not a stitch-bridge ledger: {source}. Restore it from a backup; do not delete it (a fresh ledger would send everything again)")]
    Unreadable { at: String, source: RowError },
    /// The file exists but holds no schema (zero length, or tables lost with a deleted WAL): it is
    /// not a fresh install, and opening it as one would send everything again.
    #[error("ledger {at} exists but holds no ledger (it is empty or has no tables: truncated, or its -wal file was lost). Nothing was processed. Restore it from a backup; if this ledger is meant to start over, run `stitch-bridge adopt ACCOUNT` for each account (orders the lost ledger sent will be sent again)")]
    NoSchema { at: String },
    #[error("ledger {at} was written by a newer stitch-bridge (schema {found}, this build knows {known})")]
    TooNew { at: String, found: i64, known: i64 },
    #[error("ledger {at}: {source}")]
    Sql { at: String, source: rusqlite::Error },
    #[error("ledger {at}: {source}")]
    Io { at: String, source: std::io::Error },
    #[error("ledger {at}: {message}")]
    Config { at: String, message: String },
    #[error(
        "cannot reach the PostgreSQL ledger {at}: {message}. Nothing was processed; the work waits for the database"
    )]
    Unreachable { at: String, message: String },
    #[error("the PostgreSQL ledger {at} refused the credentials: {message}. Check the user in the URL and the password variable")]
    Auth { at: String, message: String },
    #[error("the PostgreSQL ledger {at}: TLS with {host} failed under sslmode = {sslmode}: {message}. Nothing was processed; check [ledger] sslmode and ssl_ca_file")]
    Tls { at: String, host: String, sslmode: &'static str, message: String },
    #[error("ledger {at}: {source}")]
    Postgres { at: String, source: tokio_postgres::Error },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// Where the ledger lives: `[ledger] path = …` or `[ledger] url = "postgres://…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    Sqlite(PathBuf),
    /// The password is never part of the config: it is read from `password_env` at connect time.
    Postgres {
        url: String,
        password_env: Option<String>,
        /// `[ledger] sslmode` and `ssl_ca_file`.
        tls: PgTls,
    },
}

impl LedgerLocation {
    /// For messages and logs: PostgreSQL URLs with any password masked.
    pub fn describe(&self) -> String {
        match self {
            LedgerLocation::Sqlite(p) => p.display().to_string(),
            LedgerLocation::Postgres { url, .. } => redact_url(url),
        }
    }
}

/// Mask a password in a URL's user info or in a `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out = format!("{}***{}", &out[..scheme_end + 3 + colon + 1], &out[scheme_end + 3 + at..]);
            }
        }
    }
    let lower = out.to_ascii_lowercase();
    if let Some(i) = lower.find("password=") {
        let v = i + "password=".len();
        let end = out[v..].find(['&', ' ']).map_or(out.len(), |e| v + e);
        out = format!("{}***{}", &out[..v], &out[end..]);
    }
    out
}

pub struct Ledger {
    db: Db,
    /// Where, for messages: a file path or a redacted URL.
    at: String,
}

/// This process's PostgreSQL pools, one per URL, password and TLS setting. Cycles open a ledger
/// per account per cycle; a pooled connection saves a TCP, TLS and SCRAM handshake each time.
static POOLS: std::sync::Mutex<Vec<(String, deadpool_postgres::Pool)>> = std::sync::Mutex::new(Vec::new());

/// A halted account: why, and since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Halt {
    pub account: String,
    pub code: String,
    pub reason: String,
    pub at: String,
}

/// A lease row: who holds a name, and until when (milliseconds since the epoch, in the
/// database's clock for PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: i64,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    /// Open (creating if absent) and migrate a SQLite ledger. The file is made 0600: it names
    /// customers' orders.
    pub fn open(path: &Path) -> Result<Ledger> {
        Ledger::open_sqlite(path, false)
    }

    /// `adopting`: the operator's `adopt` accepts an existing file without a schema (zero length
    /// or table-less) and initialises it; every other open refuses such a file with `NoSchema`.
    fn open_sqlite(path: &Path, adopting: bool) -> Result<Ledger> {
        let at = path.display().to_string();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io { at: at.clone(), source })?;
            }
        }
        if !path.exists() {
            create_sqlite(path, &at)?;
        }
        // Never SQLITE_OPEN_CREATE here: a ledger appears under its name only with its schema
        // (`create_sqlite`), so a file without one is damage, not a fresh install.
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| classify(&at, e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| classify(&at, e))?;
        let mut ledger = Ledger { db: Db::Sqlite(conn), at };
        // Switching a brand-new file to WAL can answer BUSY at once, without the busy handler,
        // while another process does the same; a short bounded retry rides that out. A ledger
        // that stays locked still fails with `Locked` after the deadline.
        let started = std::time::Instant::now();
        loop {
            match ledger.init_sqlite(adopting) {
                Err(LedgerError::Locked { .. }) if started.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r.map(|()| ledger),
            }
        }
    }

    /// Open the ledger a config names: SQLite file or PostgreSQL server.
    pub fn open_at(location: &LedgerLocation) -> Result<Ledger> {
        match location {
            LedgerLocation::Sqlite(p) => Ledger::open(p),
            LedgerLocation::Postgres { url, password_env, tls } => {
                Ledger::connect_pg(url, password_env.as_deref(), tls)
            }
        }
    }

    /// Like [`Ledger::open_at`], for `adopt`: a SQLite file without a schema is initialised
    /// (a new id) instead of refused. The operator has said this ledger is meant.
    pub fn open_adopting(location: &LedgerLocation) -> Result<Ledger> {
        match location {
            LedgerLocation::Sqlite(p) => Ledger::open_sqlite(p, true),
            LedgerLocation::Postgres { .. } => Ledger::open_at(location),
        }
    }

    fn connect_pg(url: &str, password_env: Option<&str>, tls: &PgTls) -> Result<Ledger> {
        let at = redact_url(url);
        let pool = pg_pool(&at, url, password_env, tls)?;
        let pg = db::Pg::get(&pool).map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => classify_pg_connect(&at, e, tls),
            other => LedgerError::Unreachable { at: at.clone(), message: other.to_string() },
        })?;
        // The schema is checked on every open, pooled or not: another process may have moved it.
        let ledger = Ledger { db: Db::Postgres(pg), at };
        let Db::Postgres(pg) = &ledger.db else { unreachable!() };
        pg.call(|c| async move { Ok(migrations::migrate_pg(&c).await) }).map_err(|e| ledger.err(e))?.map_err(|e| {
            match e {
                migrations::PgMigrateError::TooNew { found, known } => {
                    LedgerError::TooNew { at: ledger.at.clone(), found, known }
                }
                migrations::PgMigrateError::Sql(e) => classify_pg(&ledger.at, e, false),
            }
        })?;
        Ok(ledger)
    }

    fn init_sqlite(&mut self, adopting: bool) -> Result<()> {
        let at = self.at.clone();
        let Db::Sqlite(conn) = &mut self.db else { unreachable!("init_sqlite on a SQLite ledger") };
        // quick_check reads every page header: a damaged file is caught here, not mid-cycle.
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| classify(&at, e))?;
        if check != "ok" {
            return Err(LedgerError::Corrupt { at, message: check });
        }
        if !adopting {
            // Read through the WAL: a ledger whose schema is still only in its -wal file counts.
            let (version, objects): (i64, i64) = conn
                .query_row(
                    "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| classify(&at, e))?;
            if version == 0 && objects == 0 {
                return Err(LedgerError::NoSchema { at });
            }
        }
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(|e| classify(&at, e))?;
        migrations::migrate(conn).map_err(|e| match e {
            migrations::MigrateError::TooNew { found, known } => LedgerError::TooNew { at: at.clone(), found, known },
            migrations::MigrateError::Sql(e) => classify(&at, e),
        })
    }

    /// This ledger's random id (made with its schema); drops name it in their marker.
    pub fn id(&self) -> Result<String> {
        self.query_opt("SELECT id FROM ledger_identity WHERE singleton = 1", &[], |r| r.text(0))?.ok_or_else(|| {
            LedgerError::Corrupt { at: self.at.clone(), message: "the ledger's identity row is missing".into() }
        })
    }

    /// Whether this ledger has ever recorded work for `account` (files, intents, orders sent).
    pub fn has_history(&self, account: &str) -> Result<bool> {
        let found = self.query_opt(
            "SELECT 1 FROM files WHERE account=?1
             UNION ALL SELECT 1 FROM intents WHERE account=?1
             UNION ALL SELECT 1 FROM sent_fulfillments WHERE account=?1 LIMIT 1",
            p![account],
            |_| Ok(()),
        )?;
        Ok(found.is_some())
    }

    /// Where this ledger is, for messages (file path or redacted URL).
    pub fn location(&self) -> &str {
        &self.at
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.db.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    pub(crate) fn err(&self, e: DbError) -> LedgerError {
        match e {
            DbError::Sqlite(e) => classify(&self.at, e),
            DbError::Pg(e) => classify_pg(&self.at, e, false),
            DbError::Row(source) => LedgerError::Unreadable { at: self.at.clone(), source },
            DbError::Gone => LedgerError::Unreachable {
                at: self.at.clone(),
                message: "the statement's task ended unanswered".into(),
            },
        }
    }

    pub(crate) fn exec(&self, sql: &str, params: &[db::Val]) -> Result<u64> {
        self.db.exec(sql, params).map_err(|e| self.err(e))
    }

    pub(crate) fn query<T>(&self, sql: &str, params: &[db::Val], f: impl Fn(&Row) -> RowResult<T>) -> Result<Vec<T>> {
        let rows = self.db.query(sql, params).map_err(|e| self.err(e))?;
        rows.iter().map(|r| f(r).map_err(|e| self.err(e.into()))).collect()
    }

    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[db::Val],
        f: impl Fn(&Row) -> RowResult<T>,
    ) -> Result<Option<T>> {
        Ok(self.query(sql, params, f)?.into_iter().next())
    }

    pub(crate) fn transaction<T>(&mut self, f: impl FnOnce(&mut db::Tx<'_>) -> db::DbResult<T>) -> Result<T> {
        let r = self.db.transaction(f);
        r.map_err(|e| self.err(e))
    }

    // ---- halts -------------------------------------------------------------------------------

    pub fn halt(&self, account: &str, code: &str, reason: &str) -> Result<()> {
        self.exec(
            "INSERT INTO halts(account, code, reason, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account) DO UPDATE SET code=excluded.code, reason=excluded.reason, at=excluded.at",
            p![account, code, reason, now()],
        )?;
        Ok(())
    }

    pub fn halted(&self, account: &str) -> Result<Option<Halt>> {
        self.query_opt("SELECT account, code, reason, at FROM halts WHERE account = ?1", p![account], |r| {
            Ok(Halt { account: r.text(0)?, code: r.text(1)?, reason: r.text(2)?, at: r.text(3)? })
        })
    }

    /// Returns whether the account was halted.
    pub fn resume(&self, account: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM halts WHERE account = ?1", p![account])? > 0)
    }

    // ---- accounts that need attention ----------------------------------------------------------

    /// The recorded "needs attention" state of an account (`engine/attention.rs`).
    pub fn attention(&self, account: &str) -> Result<Option<crate::model::Recorded>> {
        use crate::model::{Reason, Recorded};
        let row = self.query_opt(
            "SELECT reason, message, since, strikes FROM attention WHERE account = ?1",
            p![account],
            |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.int(3)?)),
        )?;
        Ok(row.and_then(|(reason, message, since, strikes)| {
            // A reason this release does not know (written by a newer one) reads as none.
            Reason::parse(&reason).map(|reason| Recorded { reason, message, since, strikes: strikes.max(0) as u32 })
        }))
    }

    /// Record the state; `since` stays that of the first cycle that met this same reason.
    pub fn set_attention(&self, account: &str, reason: &str, message: &str, strikes: u32) -> Result<()> {
        self.exec(
            "INSERT INTO attention(account, reason, message, since, strikes) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(account) DO UPDATE SET
                since = CASE WHEN attention.reason = excluded.reason THEN attention.since ELSE excluded.since END,
                reason = excluded.reason, message = excluded.message, strikes = excluded.strikes",
            p![account, reason, message, now(), strikes as i64],
        )?;
        Ok(())
    }

    pub fn clear_attention(&self, account: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM attention WHERE account = ?1", p![account])? > 0)
    }

    // ---- fulfillments sent to the warehouse ----------------------------------------------------

    pub fn fulfillment_sent(&self, account: &str, fulfillment_id: &str) -> Result<bool> {
        self.query_opt(
            "SELECT 1 FROM sent_fulfillments WHERE account=?1 AND fulfillment_id=?2",
            p![account, fulfillment_id],
            |_| Ok(()),
        )
        .map(|o| o.is_some())
    }

    /// Record a batch of order files written to the warehouse, in one transaction: each
    /// fulfillment marked sent, its line items cached (mark), and its status intent recorded.
    /// Only call once the files are durably written: a crash before the commit means the next
    /// run finds the files already there and records them then.
    pub fn record_orders_sent(&mut self, account: &str, sent: &[SentOrder]) -> Result<()> {
        if sent.is_empty() {
            return Ok(());
        }
        let t = now();
        self.transaction(|tx| {
            for o in sent {
                tx.exec(
                    "INSERT INTO marks(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    p![&o.mark.0, &o.mark.1],
                )?;
                if let Some(intent) = &o.status_intent {
                    outbox::upsert_intent(tx, account, intent, &t)?;
                }
                tx.exec(
                    "INSERT INTO sent_fulfillments(account, fulfillment_id, order_ref, file, sent_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'sent') ON CONFLICT DO NOTHING",
                    p![account, &o.fulfillment_id, &o.order_ref, &o.file, &t],
                )?;
            }
            Ok(())
        })
    }

    pub fn mark_fulfillment_sent(
        &self,
        account: &str,
        fulfillment_id: &str,
        order_ref: &str,
        file: &str,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO sent_fulfillments(account, fulfillment_id, order_ref, file, sent_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, 'sent') ON CONFLICT DO NOTHING",
            p![account, fulfillment_id, order_ref, file, now()],
        )?;
        Ok(())
    }

    /// Fulfillments sent to the warehouse whose fate (complete or cancelled) is not yet known.
    pub fn fulfillments_in_flight(&self, account: &str) -> Result<Vec<(String, String)>> {
        self.query(
            "SELECT fulfillment_id, order_ref FROM sent_fulfillments WHERE account=?1 AND state='sent' ORDER BY sent_at",
            p![account],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )
    }

    /// The fulfillment sent for an order reference, for shipment files that name only the order.
    pub fn fulfillment_for_order(&self, account: &str, order_ref: &str) -> Result<Option<String>> {
        self.query_opt(
            "SELECT fulfillment_id FROM sent_fulfillments WHERE account=?1 AND order_ref=?2 ORDER BY sent_at DESC LIMIT 1",
            p![account, order_ref],
            |r| r.text(0),
        )
    }

    /// `cancel_file` is set once the cancel file is written.
    pub fn set_fulfillment_state(
        &self,
        account: &str,
        fulfillment_id: &str,
        state: crate::model::SentState,
        cancel_file: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE sent_fulfillments SET state=?3, cancel_file=COALESCE(?4, cancel_file), closed_at=?5
             WHERE account=?1 AND fulfillment_id=?2",
            p![account, fulfillment_id, state.as_str(), cancel_file, now()],
        )?;
        Ok(())
    }

    pub fn count_sent_fulfillments(&self, account: &str) -> Result<(i64, i64)> {
        let r = self.query_opt(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state='cancelled' THEN 1 ELSE 0 END),0) FROM sent_fulfillments WHERE account=?1",
            p![account],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )?;
        Ok(r.unwrap_or((0, 0)))
    }

    // ---- cycles and schedules ----------------------------------------------------------------

    pub fn record_cycle(&self, account: &str, started: &str, outcome: &str, summary: &str) -> Result<()> {
        self.exec(
            "INSERT INTO cycles(account, started_at, finished_at, outcome, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            p![account, started, now(), outcome, summary],
        )?;
        Ok(())
    }

    pub fn last_cycle(&self, account: &str) -> Result<Option<(String, String, String)>> {
        self.query_opt(
            "SELECT finished_at, outcome, summary FROM cycles WHERE account=?1 ORDER BY id DESC LIMIT 1",
            p![account],
            |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)),
        )
    }

    /// Generic small key/value memory (e.g. when an account last pulled fulfillments).
    pub fn get_mark(&self, key: &str) -> Result<Option<String>> {
        self.query_opt("SELECT value FROM marks WHERE key=?1", p![key], |r| r.text(0))
    }

    /// Set several marks in one transaction (one sync instead of one per mark).
    pub fn set_marks(&mut self, items: &[(String, String)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| {
            for (k, v) in items {
                tx.exec(
                    "INSERT INTO marks(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    p![k, v],
                )?;
            }
            Ok(())
        })
    }

    pub fn delete_marks(&mut self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| {
            for k in keys {
                tx.exec("DELETE FROM marks WHERE key=?1", p![k])?;
            }
            Ok(())
        })
    }

    pub fn set_mark(&self, key: &str, value: &str) -> Result<()> {
        self.exec(
            "INSERT INTO marks(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            p![key, value],
        )?;
        Ok(())
    }

    // ---- leases ----------------------------------------------------------------------------------

    /// The clock leases are judged by, as SQL taking parameter `?n` (bound by [`Self::lease_params`]).
    /// PostgreSQL uses its own clock, so workers on machines whose clocks disagree can never both
    /// believe they hold one lease; SQLite ledgers are local, so this machine's clock serves.
    fn lease_now(&self, n: usize) -> String {
        match self.dialect() {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)".into(),
        }
    }

    fn lease_params(&self, mut params: Vec<db::Val>) -> Vec<db::Val> {
        if self.dialect() == Dialect::Sqlite {
            params.push(db::Val::Int(chrono::Utc::now().timestamp_millis()));
        }
        params
    }

    /// Take or renew a lease in one atomic upsert. Succeeds if free, expired, or already ours. A
    /// holder that dies simply stops renewing, so its lease lapses after `ttl`.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.lease_now(4);
        // On conflict the row is locked and the WHERE re-checked against its latest version, so
        // of two workers racing for a lapsed lease exactly one update applies.
        let sql = format!(
            "INSERT INTO leases(name, holder, expires_ms) VALUES (?1, ?2, {now} + ?3)
             ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, expires_ms=excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= {now}"
        );
        let n = self.exec(&sql, &self.lease_params(p![name, holder, ttl.as_millis() as i64].to_vec()))?;
        if n > 0 {
            return Ok(true);
        }
        // A SQLite ledger is local, so a holder naming this host is a process here: if it is
        // gone (killed, crashed), its lease is taken at once instead of after the ttl, and a
        // cron run that follows a crash does not skip the account. PostgreSQL ledgers are
        // shared between machines whose host names may repeat, so there only expiry counts.
        if self.dialect() == Dialect::Sqlite {
            if let Some(old) = self.lease(name)? {
                if old.holder != holder && holder_died_here(&old.holder) {
                    let sql = format!(
                        "UPDATE leases SET holder=?3, expires_ms={} + ?4 WHERE name=?1 AND holder=?2",
                        self.lease_now(5)
                    );
                    let params =
                        self.lease_params(p![name, old.holder.as_str(), holder, ttl.as_millis() as i64].to_vec());
                    return Ok(self.exec(&sql, &params)? > 0);
                }
            }
        }
        Ok(false)
    }

    /// True when [`Self::acquire_lease`] would take `holder`'s lease the moment that process is
    /// gone (a SQLite ledger, a holder on this host), so a waiter should look often rather than
    /// once per renewal period.
    pub fn dies_visibly(&self, holder: &str) -> bool {
        self.dialect() == Dialect::Sqlite && holder_host(holder).is_some_and(|h| h == this_host())
    }

    /// Who holds a lease and until when (ms since the epoch), expired or not.
    pub fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        Ok(self.lease(name)?.map(|l| (l.holder, l.expires_ms)))
    }

    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.exec("DELETE FROM leases WHERE name=?1 AND holder=?2", p![name, holder])?;
        Ok(())
    }

    pub fn lease(&self, name: &str) -> Result<Option<Lease>> {
        self.query_opt("SELECT holder, expires_ms FROM leases WHERE name=?1", p![name], |r| {
            Ok(Lease { holder: r.text(0)?, expires_ms: r.int(1)? })
        })
    }

    /// Extend every lease `holder` still has (a worker's heartbeat); returns how many. A lease
    /// that lapsed and was taken by another worker has another holder, so it is not touched.
    pub fn renew_leases(&self, holder: &str, ttl: Duration) -> Result<u64> {
        let sql = format!("UPDATE leases SET expires_ms = {} + ?2 WHERE holder = ?1", self.lease_now(3));
        self.exec(&sql, &self.lease_params(p![holder, ttl.as_millis() as i64].to_vec()))
    }

    /// Claim an account for one worker: true if this worker may process it now. False while
    /// another live worker holds it; a dead worker's claim lapses after its `ttl`.
    pub fn claim_account(&self, account: &str, worker: &str, ttl: Duration) -> Result<bool> {
        self.acquire_lease(&account_lease(account), worker, ttl)
    }

    /// Extend this worker's claim; false if it lapsed and another worker took the account.
    pub fn renew_account(&self, account: &str, worker: &str, ttl: Duration) -> Result<bool> {
        let sql = format!("UPDATE leases SET expires_ms = {} + ?3 WHERE name = ?1 AND holder = ?2", self.lease_now(4));
        Ok(self.exec(&sql, &self.lease_params(p![account_lease(account), worker, ttl.as_millis() as i64].to_vec()))?
            > 0)
    }

    /// Give the account back at the end of a cycle, so the next worker need not wait for expiry.
    pub fn release_account(&self, account: &str, worker: &str) -> Result<()> {
        self.release_lease(&account_lease(account), worker)
    }

    /// Who holds the account's claim (possibly expired), for "skipped" reports.
    pub fn account_claim(&self, account: &str) -> Result<Option<Lease>> {
        self.lease(&account_lease(account))
    }
}

/// Make a new SQLite ledger at `path` whole before its name appears: schema and id are built in
/// a temp file beside it, which is then linked into place without replacing anything. A process
/// that finds the name therefore always finds a schema, and "exists but holds no tables" can
/// only mean damage. Losing the race to another process creating the same ledger is fine.
fn create_sqlite(path: &Path, at: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| LedgerError::Io { at: at.to_string(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{:016x}.new", rand::random::<u64>()));
    let built = (|| {
        let mut conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(at, e))?;
        // 0600 before any row goes in: the ledger names customers' orders.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        conn.execute_batch("PRAGMA synchronous=FULL;").map_err(|e| classify(at, e))?;
        migrations::migrate(&mut conn).map_err(|e| match e {
            migrations::MigrateError::TooNew { found, known } => {
                LedgerError::TooNew { at: at.to_string(), found, known }
            }
            migrations::MigrateError::Sql(e) => classify(at, e),
        })?;
        conn.close().map_err(|(_, e)| classify(at, e))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // Filesystems without hard links: a rename, checked first (a narrow race).
            Err(_) if !path.exists() => std::fs::rename(&tmp, path).map_err(io),
            Err(_) => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    built
}

/// One order file written to the warehouse, as [`Ledger::record_orders_sent`] records it.
#[derive(Debug, Clone)]
pub struct SentOrder {
    pub fulfillment_id: String,
    pub order_ref: String,
    pub file: String,
    /// (key, value) of the line-item cache mark.
    pub mark: (String, String),
    /// The "Sent to warehouse" status intent, when that status is due.
    pub status_intent: Option<NewIntent>,
}

/// True when `holder` (`HOST<sep>PID<sep>TAG`, sep `:` or `/`) names this host and a process
/// that no longer exists. A reused pid reads as alive, which only means waiting for the ttl.
fn holder_died_here(holder: &str) -> bool {
    let Some((host, pid)) = holder_parts(holder) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else { return false };
    if pid <= 0 || host != this_host() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// `HOST` and `PID` of a holder `HOST<sep>PID<sep>TAG`.
fn holder_parts(holder: &str) -> Option<(&str, &str)> {
    let mut parts = holder.rsplitn(3, [':', '/']);
    let (Some(_tag), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    Some((host, pid))
}

fn holder_host(holder: &str) -> Option<&str> {
    holder_parts(holder).map(|(h, _)| h)
}

/// This machine's host name, as lease holders spell it.
pub fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn account_lease(account: &str) -> String {
    format!("account:{account}")
}

/// Map SQLite's error codes onto what an operator can act on.
fn classify(at: &str, e: rusqlite::Error) -> LedgerError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(f, ref msg) = e {
        match f.code {
            C::DatabaseBusy | C::DatabaseLocked => return LedgerError::Locked { at: at.into() },
            C::NotADatabase | C::DatabaseCorrupt => {
                return LedgerError::Corrupt { at: at.into(), message: msg.clone().unwrap_or_else(|| f.to_string()) }
            }
            _ => {}
        }
    }
    LedgerError::Sql { at: at.into(), source: e }
}

/// The pool for this URL, password and TLS setting, made on first use. The password is read
/// from its variable on every open (a changed one gets a new pool); it is part of the key only
/// as a digest.
fn pg_pool(at: &str, url: &str, password_env: Option<&str>, tls: &PgTls) -> Result<deadpool_postgres::Pool> {
    use sha2::Digest;
    // The parser's messages name options, never their values, so they cannot leak a password.
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| LedgerError::Config { at: at.into(), message: format!("not a usable PostgreSQL URL ({e})") })?;
    let mut pw_digest = String::new();
    if let Some(var) = password_env {
        match std::env::var(var) {
            Ok(pw) if !pw.is_empty() => {
                pw_digest = hex::encode(sha2::Sha256::digest(pw.as_bytes()));
                cfg.password(pw);
            }
            _ => {
                return Err(LedgerError::Config {
                    at: at.into(),
                    message: format!(
                        "the database password is expected in environment variable {var}, which is not set"
                    ),
                })
            }
        }
    }
    let key = format!("{url}\n{password_env:?}\n{pw_digest}\n{tls:?}");
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(k, _)| *k == key) {
        return Ok(pool.clone());
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    cfg.application_name("stitch-bridge");
    // `[ledger] sslmode` decides, whatever the URL says.
    let manager_config =
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast };
    let manager = if tls.sslmode == SslMode::Disable {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        deadpool_postgres::Manager::from_config(cfg, tokio_postgres::NoTls, manager_config)
    } else {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let client = pg_tls::client_config(tls.sslmode, tls.ssl_ca_file.as_deref())
            .map_err(|e| LedgerError::Config { at: at.into(), message: e.to_string() })?;
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client);
        deadpool_postgres::Manager::from_config(cfg, connector, manager_config)
    };
    // No wait for a free connection: the pool never runs out before the server does (a process
    // opens `max_connections` + 1 at once, `watch` one per account); idle ones are trimmed.
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4096)
        .build()
        .map_err(|e| LedgerError::Config { at: at.into(), message: e.to_string() })?;
    pools.push((key, pool.clone()));
    Ok(pool)
}

/// A failed connection attempt: TLS failures name the host and the mode, everything else is
/// classified as any PostgreSQL error while connecting.
fn classify_pg_connect(at: &str, e: tokio_postgres::Error, tls: &PgTls) -> LedgerError {
    let message = error_chain(&e);
    if tls.sslmode != SslMode::Disable && message.starts_with("error performing TLS handshake") {
        let host = url_host(at);
        let message = message.trim_start_matches("error performing TLS handshake").trim_start_matches(": ");
        let message = match &tls.ssl_ca_file {
            Some(ca) if tls.sslmode == SslMode::VerifyFull => format!("{message} (CA: ssl_ca_file {})", ca.display()),
            None if tls.sslmode == SslMode::VerifyFull => format!("{message} (CA: the platform's roots)"),
            _ => message.to_string(),
        };
        return LedgerError::Tls { at: at.into(), host, sslmode: tls.sslmode.as_str(), message };
    }
    classify_pg(at, e, true)
}

/// The host (and port) of a PostgreSQL URL, for messages.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let next = s.to_string();
        if !message.ends_with(&next) {
            message = format!("{message}: {next}");
        }
        src = s.source();
    }
    message
}

/// Map PostgreSQL errors the same way: credentials, reachability, or a plain SQL failure.
fn classify_pg(at: &str, e: tokio_postgres::Error, connecting: bool) -> LedgerError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return LedgerError::Auth { at: at.into(), message: db.message().to_string() };
        }
        if connecting {
            return LedgerError::Unreachable { at: at.into(), message: db.message().to_string() };
        }
        return LedgerError::Postgres { at: at.into(), source: e };
    }
    if connecting || e.is_closed() {
        return LedgerError::Unreachable { at: at.into(), message: error_chain(&e) };
    }
    LedgerError::Postgres { at: at.into(), source: e }
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
    fn file_without_schema_is_refused_until_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sqlite");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(Ledger::open(&p), Err(LedgerError::NoSchema { .. })), "zero-length file");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "left untouched");
        let l = Ledger::open_adopting(&LedgerLocation::Sqlite(p.clone())).unwrap();
        let id = l.id().unwrap();
        drop(l);
        assert_eq!(Ledger::open(&p).unwrap().id().unwrap(), id, "initialised once, then an ordinary ledger");
    }

    #[test]
    fn new_ledger_appears_whole_with_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ledger::open(&dir.path().join("a.sqlite")).unwrap().id().unwrap();
        let b = Ledger::open(&dir.path().join("b.sqlite")).unwrap().id().unwrap();
        assert_ne!(a, b, "each ledger has its own id");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| !n.ends_with(".new")), "no temp file left: {names:?}");
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
    fn lease_of_a_dead_local_process_is_taken_at_once_a_live_ones_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = this_host();
        let hour = Duration::from_secs(3600);
        assert!(l.acquire_lease("account:a", &format!("{host}/{dead}/0a"), hour).unwrap());
        assert!(l.acquire_lease("account:a", &format!("{host}:4242:0b"), hour).unwrap(), "holder's process is gone");
        assert_eq!(l.lease("account:a").unwrap().unwrap().holder, format!("{host}:4242:0b"));
        // This test's own process is alive, and a holder on another host is never judged here.
        let me = std::process::id();
        assert!(l.acquire_lease("account:b", &format!("{host}/{me}/0c"), hour).unwrap());
        assert!(!l.acquire_lease("account:b", "other/1/0d", hour).unwrap());
        assert!(l.acquire_lease("account:c", &format!("elsewhere/{dead}/0e"), hour).unwrap());
        assert!(!l.acquire_lease("account:c", "other/1/0f", hour).unwrap());
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
