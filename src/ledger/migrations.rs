//! Versioned schema migrations, tracked in SQLite's `user_version`. Append only: a released
//! migration is never edited, because ledgers in the field have already run it.

use rusqlite::Connection;

pub enum MigrateError {
    TooNew { found: i64, known: i64 },
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        duplicate_of INTEGER REFERENCES files(id),
        result_path TEXT,
        errors_path TEXT,
        final_path TEXT,
        reject_file INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        message TEXT,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX files_by_hash ON files(account, sha256);
    CREATE INDEX files_by_path ON files(account, path, state);
    CREATE TABLE observations (
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        since_ms INTEGER NOT NULL,
        PRIMARY KEY(account, path)
    );
    CREATE TABLE records (
        file_id INTEGER NOT NULL REFERENCES files(id),
        line INTEGER NOT NULL,
        key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        remote_id TEXT NOT NULL DEFAULT '',
        code TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX records_by_file ON records(file_id, line);
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        remote_id TEXT,
        outcome TEXT,
        message TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE(account, key)
    );
    CREATE INDEX intents_pending ON intents(account, state);
    CREATE TABLE sent_fulfillments (
        account TEXT NOT NULL,
        fulfillment_id TEXT NOT NULL,
        order_ref TEXT NOT NULL,
        file TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        state TEXT NOT NULL,
        cancel_file TEXT,
        closed_at TEXT,
        PRIMARY KEY(account, fulfillment_id)
    );
    CREATE INDEX sent_by_order ON sent_fulfillments(account, order_ref);
    CREATE TABLE halts (
        account TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE cycles (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE marks (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL);
    "#,
];

pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let known = MIGRATIONS.len() as i64;
    // Several processes (or account threads) may open a new ledger at once: the version is
    // read inside an IMMEDIATE transaction, so exactly one of them applies each migration.
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(MigrateError::TooNew { found, known });
        }
        if found == known {
            tx.commit()?;
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[found as usize])?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_opens_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || crate::ledger::Ledger::open(&p).map(|_| ()).map_err(|e| e.to_string()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn migrations_are_idempotent_and_refuse_newer() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).ok().unwrap();
        migrate(&mut c).ok().unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut c), Err(MigrateError::TooNew { found: 99, .. })));
    }
}
