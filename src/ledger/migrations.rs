//! Versioned schema migrations: SQLite tracks the version in `user_version`, PostgreSQL in a
//! `schema_version` table. Append only: a released migration is never edited, because ledgers in
//! the field have already run it. Both lists describe the same schema, migration for migration
//! (their lengths must match), so a ledger can move between backends version by version.

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
    // 2: the ledger's identity, made once with the schema (and, for ledgers of version 1, on
    // upgrade). Drops name the ledger that serves them (`ledger/marker.rs`), so a replaced or
    // recreated ledger is recognised before it sends anything again.
    r#"
    CREATE TABLE ledger_identity (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        id TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    INSERT INTO ledger_identity(singleton, id, created_at)
        VALUES (1, lower(hex(randomblob(16))), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
    "#,
    // 3: accounts that need a person (`engine/attention.rs`): the state outlives a run so the
    // alert fires once on entering and once on clearing, however often cron runs in between.
    r#"
    CREATE TABLE attention (
        account TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        since TEXT NOT NULL,
        strikes INTEGER NOT NULL
    );
    "#,
    // 4: X12 (`ledger/x12.rs`): the control numbers last allocated per partner, the interchanges
    // and sets we sent with their 997 status, and the partner's interchanges already taken.
    // `IF NOT EXISTS`: tests rebuild older ledgers by dropping later tables and lowering the
    // version; a table left behind must not fail the upgrade.
    r#"
    CREATE TABLE IF NOT EXISTS x12_controls (
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        interchange INTEGER NOT NULL,
        group_control INTEGER NOT NULL,
        set_control INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY(account, partner)
    );
    CREATE TABLE IF NOT EXISTS x12_sent (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        path TEXT NOT NULL,
        doc TEXT NOT NULL,
        fulfillment_id TEXT,
        interchange INTEGER NOT NULL,
        group_control INTEGER NOT NULL,
        set_control INTEGER NOT NULL,
        sent_at TEXT NOT NULL,
        ack_status TEXT,
        ack_group_status TEXT,
        ack_path TEXT,
        acked_at TEXT,
        dismissed_at TEXT,
        UNIQUE(account, partner, interchange, group_control, set_control)
    );
    CREATE INDEX IF NOT EXISTS x12_sent_by_group ON x12_sent(account, partner, group_control);
    CREATE INDEX IF NOT EXISTS x12_sent_unacked ON x12_sent(account, ack_status, sent_at);
    CREATE TABLE IF NOT EXISTS x12_seen (
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        interchange TEXT NOT NULL,
        path TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY(account, partner, interchange)
    );
    "#,
    // 5: the operator console (`ledger/console.rs`): what it did, by whom, and the indexes its
    // pages need to stay fast on large ledgers (files by account and day, records by key,
    // cycles by account, fulfillments by time).
    r#"
    CREATE TABLE IF NOT EXISTS console_actions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        account TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS files_by_account_id ON files(account, id);
    CREATE INDEX IF NOT EXISTS files_by_account_seen ON files(account, first_seen);
    CREATE INDEX IF NOT EXISTS files_by_account_state ON files(account, state, id);
    CREATE INDEX IF NOT EXISTS records_by_key ON records(key);
    CREATE INDEX IF NOT EXISTS cycles_by_account ON cycles(account, id);
    CREATE INDEX IF NOT EXISTS sent_by_time ON sent_fulfillments(sent_at);
    "#,
    // 6: every alert raised (halted, attention, attention_cleared, file_rejected), recorded
    // before its hooks run: the console's alert history, whatever the hooks did with it.
    r#"
    CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        account TEXT NOT NULL,
        event TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS alerts_by_account ON alerts(account, id);
    "#,
];

/// The same schema as [`MIGRATIONS`] in PostgreSQL's types: `BIGINT` where SQLite's `INTEGER`
/// holds an `i64`, identity columns for row ids, a real boolean, and an explicit `id` on
/// `records` where SQLite orders by its implicit `rowid`.
const PG_MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE files (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime BIGINT NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        duplicate_of BIGINT REFERENCES files(id),
        result_path TEXT,
        errors_path TEXT,
        final_path TEXT,
        reject_file BOOLEAN NOT NULL DEFAULT FALSE,
        accepted BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0,
        message TEXT,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX files_by_hash ON files(account, sha256);
    CREATE INDEX files_by_path ON files(account, path, state);
    CREATE TABLE observations (
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime BIGINT NOT NULL,
        since_ms BIGINT NOT NULL,
        PRIMARY KEY(account, path)
    );
    CREATE TABLE records (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        file_id BIGINT NOT NULL REFERENCES files(id),
        line BIGINT NOT NULL,
        key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        remote_id TEXT NOT NULL DEFAULT '',
        code TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX records_by_file ON records(file_id, line);
    CREATE TABLE intents (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        account TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        remote_id TEXT,
        outcome TEXT,
        message TEXT,
        attempts BIGINT NOT NULL DEFAULT 0,
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
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        account TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE marks (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL);
    "#,
    // 2: the ledger's identity (see the SQLite list). Runs under the migration lock, so every
    // worker sharing the database sees the one id.
    r#"
    CREATE TABLE ledger_identity (
        singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
        id TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    INSERT INTO ledger_identity(singleton, id, created_at)
        VALUES (1, replace(gen_random_uuid()::text, '-', ''),
                to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
    "#,
    // 3: accounts that need a person (see the SQLite list).
    r#"
    CREATE TABLE attention (
        account TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        since TEXT NOT NULL,
        strikes BIGINT NOT NULL
    );
    "#,
    // 4: X12 (see the SQLite list).
    r#"
    CREATE TABLE IF NOT EXISTS x12_controls (
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        interchange BIGINT NOT NULL,
        group_control BIGINT NOT NULL,
        set_control BIGINT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY(account, partner)
    );
    CREATE TABLE IF NOT EXISTS x12_sent (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        path TEXT NOT NULL,
        doc TEXT NOT NULL,
        fulfillment_id TEXT,
        interchange BIGINT NOT NULL,
        group_control BIGINT NOT NULL,
        set_control BIGINT NOT NULL,
        sent_at TEXT NOT NULL,
        ack_status TEXT,
        ack_group_status TEXT,
        ack_path TEXT,
        acked_at TEXT,
        dismissed_at TEXT,
        UNIQUE(account, partner, interchange, group_control, set_control)
    );
    CREATE INDEX IF NOT EXISTS x12_sent_by_group ON x12_sent(account, partner, group_control);
    CREATE INDEX IF NOT EXISTS x12_sent_unacked ON x12_sent(account, ack_status, sent_at);
    CREATE TABLE IF NOT EXISTS x12_seen (
        account TEXT NOT NULL,
        partner TEXT NOT NULL,
        interchange TEXT NOT NULL,
        path TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY(account, partner, interchange)
    );
    "#,
    // 5: the operator console (see the SQLite list).
    r#"
    CREATE TABLE IF NOT EXISTS console_actions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        account TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS files_by_account_id ON files(account, id);
    CREATE INDEX IF NOT EXISTS files_by_account_seen ON files(account, first_seen);
    CREATE INDEX IF NOT EXISTS files_by_account_state ON files(account, state, id);
    CREATE INDEX IF NOT EXISTS records_by_key ON records(key);
    CREATE INDEX IF NOT EXISTS cycles_by_account ON cycles(account, id);
    CREATE INDEX IF NOT EXISTS sent_by_time ON sent_fulfillments(sent_at);
    "#,
    // 6: the alert history (see the SQLite list).
    r#"
    CREATE TABLE IF NOT EXISTS alerts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        account TEXT NOT NULL,
        event TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS alerts_by_account ON alerts(account, id);
    "#,
];

/// Any fixed number: it only has to be the same for every stitch-bridge process.
const PG_MIGRATION_LOCK: i64 = 0x5354_4954_4348;

/// Like [`migrate`]: concurrent first connections serialise on a transaction-scoped advisory
/// lock, so exactly one of them applies each migration.
pub async fn migrate_pg(client: &tokio_postgres::Client) -> Result<(), PgMigrateError> {
    let known = PG_MIGRATIONS.len() as i64;
    // Every cycle opens the ledger: an up-to-date schema is recognised with one read, without
    // the lock that would serialise all workers' opens (a missing table falls through).
    if let Ok(Some(row)) = client.query_opt("SELECT version FROM schema_version", &[]).await {
        let found: i64 = row.get(0);
        if found == known {
            return Ok(());
        }
        if found > known {
            return Err(PgMigrateError::TooNew { found, known });
        }
    }
    client.batch_execute("BEGIN").await?;
    let out = migrate_pg_in_tx(client, known).await;
    // A pooled connection must not go back inside a transaction, failed or not.
    let end = client.batch_execute(if out.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    out?;
    Ok(end?)
}

async fn migrate_pg_in_tx(tx: &tokio_postgres::Client, known: i64) -> Result<(), PgMigrateError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").await?;
    let found: i64 = match tx.query_opt("SELECT version FROM schema_version", &[]).await? {
        Some(r) => r.get(0),
        None => {
            tx.execute("INSERT INTO schema_version(version) VALUES (0)", &[]).await?;
            0
        }
    };
    if found > known {
        return Err(PgMigrateError::TooNew { found, known });
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)]).await?;
    }
    Ok(())
}

/// The schema version this build writes (the same on both backends).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub enum PgMigrateError {
    TooNew { found: i64, known: i64 },
    Sql(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for PgMigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgMigrateError::Sql(e)
    }
}

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
    fn both_backends_have_every_migration() {
        assert_eq!(MIGRATIONS.len(), PG_MIGRATIONS.len());
        // Same tables in each version (a cheap guard against a table added to one list only).
        let tables = |sql: &str| -> Vec<String> {
            let mut t: Vec<String> = sql
                .split("CREATE TABLE ")
                .skip(1)
                .map(|s| s.trim_start_matches("IF NOT EXISTS ").split([' ', '(']).next().unwrap().to_string())
                .collect();
            t.sort();
            t
        };
        for (a, b) in MIGRATIONS.iter().zip(PG_MIGRATIONS) {
            assert_eq!(tables(a), tables(b));
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
