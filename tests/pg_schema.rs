//! The SQLite and PostgreSQL migration lists build the same schema: a fresh ledger of each,
//! compared table by table and column by column (name, type class, nullability, primary key).

#[path = "support_pg/mod.rs"]
mod support_pg;

use std::collections::BTreeMap;
use stitch_bridge::ledger::Ledger;

/// Per table, per column: (type class, nullable, part of the primary key).
type Schema = BTreeMap<String, BTreeMap<String, (&'static str, bool, bool)>>;

/// What each backend's type means for the ledger's values. SQLite has no boolean: a flag is an
/// INTEGER there and a BOOLEAN on PostgreSQL, read back as the same `Val`.
fn class(ty: &str) -> &'static str {
    match ty.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => "integer",
        "boolean" => "integer (flag)",
        "text" => "text",
        other => panic!("a type the ledger does not use: {other}"),
    }
}

fn sqlite_schema(path: &std::path::Path) -> Schema {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut tables =
        c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").unwrap();
    let names: Vec<String> = tables.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut out = Schema::new();
    for t in names {
        let mut st = c.prepare(&format!("SELECT name, type, \"notnull\", pk FROM pragma_table_info('{t}')")).unwrap();
        let cols = st
            .query_map([], |r| {
                let (name, ty, notnull, pk): (String, String, bool, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                Ok((name, ty, notnull, pk > 0))
            })
            .unwrap()
            .map(Result::unwrap)
            .map(|(name, ty, notnull, pk)| {
                // Flags are INTEGER with a 0/1 default; the ledger binds them as booleans.
                let class = if ty == "INTEGER" && is_flag(&t, &name) { "integer (flag)" } else { class(&ty) };
                // A primary key column is never NULL (SQLite only says so for INTEGER PRIMARY KEY).
                (name, (class, !notnull && !pk, pk))
            })
            .collect();
        out.insert(t, cols);
    }
    out
}

/// The SQLite columns holding booleans (PostgreSQL says so in its type).
fn is_flag(table: &str, column: &str) -> bool {
    (table, column) == ("files", "reject_file")
}

fn pg_schema(pg: &support_pg::PgServer, loc: &stitch_bridge::ledger::LedgerLocation) -> Schema {
    let sql = pg.connect(loc);
    let rows = sql.rows(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable = 'YES',
                EXISTS (SELECT 1 FROM information_schema.table_constraints tc
                        JOIN information_schema.key_column_usage k
                          ON k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name
                        WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public'
                          AND tc.table_name = c.table_name AND k.column_name = c.column_name)
         FROM information_schema.columns c WHERE c.table_schema = 'public'",
    );
    let mut out = Schema::new();
    for r in rows {
        let (t, name, ty, nullable, pk): (String, String, String, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        out.entry(t).or_default().insert(name, (class(&ty), nullable, pk));
    }
    out
}

#[test]
fn sqlite_and_postgres_ledgers_have_the_same_columns() {
    let Some(pg) = support_pg::server("sqlite_and_postgres_ledgers_have_the_same_columns") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    drop(Ledger::open(&path).unwrap());
    let loc = pg.fresh();
    drop(Ledger::open_at(&loc).unwrap());
    let sqlite = sqlite_schema(&path);
    let mut postgres = pg_schema(pg, &loc);

    // The two deliberate differences, named so that any other one fails: PostgreSQL keeps the
    // version in a table (SQLite in `user_version`), and gives `records` the explicit `id` that
    // SQLite's implicit `rowid` is.
    let version = postgres.remove("schema_version").expect("PostgreSQL's schema_version table");
    assert_eq!(version.len(), 1);
    let records = postgres.get_mut("records").expect("records");
    assert_eq!(records.remove("id"), Some(("integer", false, true)), "records.id stands for SQLite's rowid");

    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "the same tables on both backends"
    );
    for (table, cols) in &sqlite {
        let pg_cols = &postgres[table];
        assert_eq!(
            cols.keys().collect::<Vec<_>>(),
            pg_cols.keys().collect::<Vec<_>>(),
            "{table}: the same columns on both backends"
        );
        for (col, sqlite_col) in cols {
            assert_eq!(
                sqlite_col, &pg_cols[col],
                "{table}.{col}: (type class, nullable, primary key) SQLite vs PostgreSQL"
            );
        }
    }
    assert!(sqlite.len() >= 10 && sqlite.values().all(|c| !c.is_empty()), "the comparison saw the schema: {sqlite:?}");
}
