//! The two SQL backends behind one small interface, so every ledger method is written once.
//!
//! The synchronous `postgres` client drives its own async runtime and panics inside another
//! one, and every account's cycle runs inside a tokio runtime; so each PostgreSQL connection
//! lives on its own thread and the ledger sends it one job per statement.
//!
//! SQL is written in SQLite's dialect with numbered placeholders (`?1`), which PostgreSQL
//! accepts once they are renamed `$1`; the few statements that differ (DDL, clocks, `rowid`)
//! branch on [`Dialect`]. Values cross the boundary as [`Val`] and come back as [`Row`]s, which
//! keeps the per-row mapping code shared too. Prepared statements are cached per connection on
//! both sides: the engine issues the same few statements thousands of times per cycle.

use std::collections::HashMap;
use std::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// `p![a, b]` → `&[Val]`.
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::ledger::db::Val::from($v)),*][..] };
}
pub(crate) use p;

/// One result row; getters fail (rather than guess) when a column has an unexpected type.
pub(crate) struct Row(Vec<Val>);

pub(crate) type RowResult<T> = std::result::Result<T, String>;

impl Row {
    fn at(&self, i: usize) -> RowResult<&Val> {
        self.0.get(i).ok_or_else(|| format!("column {i} missing"))
    }
    pub fn opt_int(&self, i: usize) -> RowResult<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Bool(b) => Ok(Some(*b as i64)),
            other => Err(format!("column {i}: expected an integer, found {other:?}")),
        }
    }
    pub fn int(&self, i: usize) -> RowResult<i64> {
        self.opt_int(i)?.ok_or_else(|| format!("column {i}: unexpected NULL"))
    }
    pub fn opt_text(&self, i: usize) -> RowResult<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(s) => Ok(Some(s.clone())),
            other => Err(format!("column {i}: expected text, found {other:?}")),
        }
    }
    pub fn text(&self, i: usize) -> RowResult<String> {
        self.opt_text(i)?.ok_or_else(|| format!("column {i}: unexpected NULL"))
    }
    pub fn flag(&self, i: usize) -> RowResult<bool> {
        Ok(self.int(i)? != 0)
    }
}

#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Pg(postgres::Error),
    Row(String),
    /// The connection's thread is gone (it panicked); the ledger must be reopened.
    Gone,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}
impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Pg(e)
    }
}

pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

/// What the connection thread owns.
pub(crate) struct PgConn {
    pub client: postgres::Client,
    stmts: HashMap<String, postgres::Statement>,
}

type Job = Box<dyn FnOnce(&mut PgConn) + Send>;

/// A PostgreSQL connection on its own thread; dropping the handle closes it.
pub(crate) struct Pg {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pg {
    /// Connect on a new thread; returns once connected (or not).
    pub fn connect(cfg: postgres::Config) -> std::result::Result<Pg, postgres::Error> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<std::result::Result<(), postgres::Error>>(1);
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ledger-pg".into())
            .spawn(move || {
                let mut conn = match cfg.connect(postgres::NoTls) {
                    Ok(client) => PgConn { client, stmts: HashMap::new() },
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                for job in rx {
                    job(&mut conn);
                }
            })
            .expect("spawn the ledger's connection thread");
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Pg { jobs: Some(jobs), thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => panic!("the ledger's connection thread ended while connecting"),
        }
    }

    /// Run `f` on the connection's thread and wait for its answer.
    pub fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut PgConn) -> T + Send + 'static) -> DbResult<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs.as_ref().ok_or(DbError::Gone)?.send(job).map_err(|_| DbError::Gone)?;
        rx.recv().map_err(|_| DbError::Gone)
    }

    /// Move the connection out, leaving an empty handle whose drop does nothing.
    pub fn take(&mut self) -> Pg {
        Pg { jobs: self.jobs.take(), thread: self.thread.take() }
    }

    /// Still usable: connected and not inside a transaction.
    pub fn healthy(&self) -> bool {
        self.call(|c| !c.client.is_closed() && c.client.is_valid(std::time::Duration::from_secs(2)).is_ok())
            .unwrap_or(false)
    }

    fn exec(&self, sql: &str, params: &[Val]) -> DbResult<u64> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |c| pg_exec(&mut c.client, &mut c.stmts, &sql, &params))?
    }

    fn query(&self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |c| pg_query(&mut c.client, &mut c.stmts, &sql, &params))?
    }

    fn batch(&self, sql: &'static str) -> DbResult<()> {
        Ok(self.call(move |c| c.client.batch_execute(sql))??)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection.
pub(crate) enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Pg),
}

/// An open transaction on either backend.
pub(crate) enum Tx<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    /// Between the `BEGIN` and `COMMIT` sent by [`Db::transaction`].
    Postgres(&'a Pg),
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn exec(&self, sql: &str, params: &[Val]) -> DbResult<u64> {
        match self {
            Db::Sqlite(c) => sqlite_exec(c, sql, params),
            Db::Postgres(pg) => pg.exec(sql, params),
        }
    }

    pub fn query(&self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        match self {
            Db::Sqlite(c) => sqlite_query(c, sql, params),
            Db::Postgres(pg) => pg.query(sql, params),
        }
    }

    /// Run `f` in one transaction: committed if it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> DbResult<T>) -> DbResult<T> {
        match self {
            Db::Sqlite(c) => {
                let mut tx = Tx::Sqlite(c.transaction()?);
                let out = f(&mut tx)?;
                if let Tx::Sqlite(t) = tx {
                    t.commit()?;
                }
                Ok(out)
            }
            Db::Postgres(pg) => {
                pg.batch("BEGIN")?;
                match f(&mut Tx::Postgres(pg)) {
                    Ok(out) => {
                        pg.batch("COMMIT")?;
                        Ok(out)
                    }
                    Err(e) => {
                        let _ = pg.batch("ROLLBACK");
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Tx<'_> {
    pub fn exec(&mut self, sql: &str, params: &[Val]) -> DbResult<u64> {
        match self {
            Tx::Sqlite(t) => sqlite_exec(t, sql, params),
            Tx::Postgres(pg) => pg.exec(sql, params),
        }
    }

    pub fn query(&mut self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        match self {
            Tx::Sqlite(t) => sqlite_query(t, sql, params),
            Tx::Postgres(pg) => pg.query(sql, params),
        }
    }
}

// ---- SQLite ------------------------------------------------------------------------------------

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn sqlite_exec(c: &rusqlite::Connection, sql: &str, params: &[Val]) -> DbResult<u64> {
    let mut st = c.prepare_cached(sql)?;
    Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
}

fn sqlite_query(c: &rusqlite::Connection, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
    use rusqlite::types::ValueRef;
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(match r.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Real(f) => return Err(DbError::Row(format!("column {i}: unexpected real {f}"))),
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

// ---- PostgreSQL --------------------------------------------------------------------------------

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, ToSql, Type};
        // Checked per value, not per Rust type: a text value bound to a bigint would otherwise
        // be sent as raw bytes.
        let ok = match self {
            Val::Null => return Ok(IsNull::Yes),
            Val::Int(_) => <i64 as ToSql>::accepts(ty) || *ty == Type::INT4,
            Val::Text(_) => <String as ToSql>::accepts(ty),
            Val::Bool(_) => <bool as ToSql>::accepts(ty),
        };
        if !ok {
            return Err(format!("cannot bind {self:?} to a {ty} parameter").into());
        }
        match self {
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Text(s) => s.to_sql(ty, out),
            Val::Bool(b) => b.to_sql(ty, out),
            Val::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?1` → `$1`. Our SQL has no `?` inside string literals.
pub(crate) fn to_pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_stmt(
    c: &mut impl postgres::GenericClient,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> DbResult<postgres::Statement> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = c.prepare(&to_pg(sql))?;
    stmts.insert(sql.to_string(), s.clone());
    Ok(s)
}

fn pg_params(params: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect()
}

fn pg_exec(
    c: &mut impl postgres::GenericClient,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
    params: &[Val],
) -> DbResult<u64> {
    let st = pg_stmt(c, stmts, sql)?;
    Ok(c.execute(&st, &pg_params(params))?)
}

fn pg_query(
    c: &mut impl postgres::GenericClient,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
    params: &[Val],
) -> DbResult<Vec<Row>> {
    use postgres::types::Type;
    let st = pg_stmt(c, stmts, sql)?;
    let rows = c.query(&st, &pg_params(params))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut vals = Vec::with_capacity(r.len());
        for (i, col) in r.columns().iter().enumerate() {
            let ty = col.type_();
            let v = if *ty == Type::INT8 {
                r.try_get::<_, Option<i64>>(i)?.map(Val::Int)
            } else if *ty == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into()))
            } else if *ty == Type::INT2 {
                r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into()))
            } else if *ty == Type::BOOL {
                r.try_get::<_, Option<bool>>(i)?.map(Val::Bool)
            } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
                r.try_get::<_, Option<String>>(i)?.map(Val::Text)
            } else {
                return Err(DbError::Row(format!("column {} has unexpected type {ty}", col.name())));
            };
            vals.push(v.unwrap_or(Val::Null));
        }
        out.push(Row(vals));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_renumbered_for_postgres() {
        assert_eq!(super::to_pg("a=?1 AND b=?12 OR c IS NULL"), "a=$1 AND b=$12 OR c IS NULL");
    }
}
