//! The two SQL backends behind one small interface, so every ledger method is written once.
//!
//! PostgreSQL goes through `tokio-postgres`, pooled by `deadpool-postgres`, on one small runtime
//! of the ledger's own ([`run`]). The ledger's API stays synchronous: each statement is spawned
//! onto that runtime and the calling thread waits for its answer on a plain channel. That works
//! from inside the account cycles' own runtimes too, where a nested `block_on` would panic; the
//! caller's thread blocks for the statement, as it does on SQLite.
//!
//! SQL is written in SQLite's dialect with numbered placeholders (`?1`), which PostgreSQL
//! accepts once they are renamed `$1`; the few statements that differ (DDL, clocks, `rowid`)
//! branch on [`Dialect`]. Values cross the boundary as [`Val`] and come back as [`Row`]s, which
//! keeps the per-row mapping code shared too. Prepared statements are cached per connection on
//! both sides (deadpool's statement cache lives with the pooled connection): the engine issues
//! the same few statements thousands of times per cycle.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use tokio_postgres::types::{IsNull, ToSql, Type};

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
pub(crate) struct Row {
    /// The statement's column names, shared by its rows, for errors that name the column.
    names: Arc<[String]>,
    vals: Vec<Val>,
}

/// What is wrong with one column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnProblem {
    Missing,
    Null,
    /// Another type than the reader expects (`found` is the value, shown as stored).
    Type {
        expected: &'static str,
        found: String,
    },
}

impl std::fmt::Display for ColumnProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnProblem::Missing => f.write_str("missing"),
            ColumnProblem::Null => f.write_str("unexpected NULL"),
            ColumnProblem::Type { expected, found } => write!(f, "expected {expected}, found {found}"),
        }
    }
}

/// A row this release cannot read: a column that is absent, NULL or of another type, or a value
/// no release wrote. The ledger reports it as damage (`LedgerError::Unreadable`): a guess could
/// send a write twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("column {column}: {problem}")]
    Column { column: String, problem: ColumnProblem },
    #[error("intent {key}, column {column}: {source}")]
    IntentWord { key: String, column: String, source: crate::model::UnknownWord },
    #[error(transparent)]
    Content(#[from] crate::model::ContentError),
    #[error("intent {key} is recorded as a {kind} write")]
    KindMismatch { key: String, kind: &'static str },
    #[error("intent {key} vanished")]
    IntentVanished { key: String },
    #[error("{statement} gave no row")]
    NoRow { statement: &'static str },
}

pub(crate) type RowResult<T> = std::result::Result<T, RowError>;

impl Row {
    /// Column `i`'s name (its number if the statement named fewer columns).
    pub fn name(&self, i: usize) -> String {
        self.names.get(i).cloned().unwrap_or_else(|| i.to_string())
    }
    fn problem(&self, i: usize, problem: ColumnProblem) -> RowError {
        RowError::Column { column: self.name(i), problem }
    }
    fn at(&self, i: usize) -> RowResult<&Val> {
        self.vals.get(i).ok_or_else(|| self.problem(i, ColumnProblem::Missing))
    }
    fn wrong(&self, i: usize, expected: &'static str, found: &Val) -> RowError {
        self.problem(i, ColumnProblem::Type { expected, found: format!("{found:?}") })
    }
    pub fn opt_int(&self, i: usize) -> RowResult<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Bool(b) => Ok(Some(*b as i64)),
            other => Err(self.wrong(i, "an integer", other)),
        }
    }
    pub fn int(&self, i: usize) -> RowResult<i64> {
        self.opt_int(i)?.ok_or_else(|| self.problem(i, ColumnProblem::Null))
    }
    pub fn opt_text(&self, i: usize) -> RowResult<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(s) => Ok(Some(s.clone())),
            other => Err(self.wrong(i, "text", other)),
        }
    }
    pub fn text(&self, i: usize) -> RowResult<String> {
        self.opt_text(i)?.ok_or_else(|| self.problem(i, ColumnProblem::Null))
    }
    pub fn flag(&self, i: usize) -> RowResult<bool> {
        Ok(self.int(i)? != 0)
    }
}

#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Pg(tokio_postgres::Error),
    Row(RowError),
    /// The statement's task on the ledger's runtime ended without an answer (it panicked).
    Gone,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}
impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Pg(e)
    }
}
impl From<RowError> for DbError {
    fn from(e: RowError) -> Self {
        DbError::Row(e)
    }
}

pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

/// The runtime every PostgreSQL connection of this process lives on: two worker threads are
/// plenty for a ledger whose callers wait for each statement.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ledger-pg")
            .enable_all()
            .build()
            .expect("start the ledger's PostgreSQL runtime")
    })
}

/// Run `fut` on the ledger's runtime and wait for it on this thread. Never `block_on`: the
/// caller may itself be on a runtime's thread (an account's cycle).
pub(crate) fn run<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> DbResult<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| DbError::Gone)
}

/// Idle connections above this many are closed when a ledger is dropped (a process uses
/// `max_connections` + 1 at once, and `watch` one per account).
const MAX_IDLE: usize = 64;

/// One pooled PostgreSQL connection, returned to its pool when dropped.
pub(crate) struct Pg {
    conn: Option<Arc<deadpool_postgres::Object>>,
    pool: deadpool_postgres::Pool,
    /// Between `BEGIN` and its `COMMIT`/`ROLLBACK`: such a connection is closed, never pooled.
    in_tx: AtomicBool,
}

impl Pg {
    /// A connection from `pool`, made now if none is idle.
    pub fn get(pool: &deadpool_postgres::Pool) -> std::result::Result<Pg, deadpool_postgres::PoolError> {
        let p = pool.clone();
        let obj = run(async move { p.get().await }).map_err(|_| deadpool_postgres::PoolError::Closed)??;
        Ok(Pg { conn: Some(Arc::new(obj)), pool: pool.clone(), in_tx: AtomicBool::new(false) })
    }

    fn conn(&self) -> DbResult<Arc<deadpool_postgres::Object>> {
        self.conn.clone().ok_or(DbError::Gone)
    }

    /// Run `f` with the connection on the ledger's runtime and wait for its answer.
    pub fn call<T, F, Fut>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<deadpool_postgres::Object>) -> Fut,
        Fut: Future<Output = DbResult<T>> + Send + 'static,
    {
        run(f(self.conn()?))?
    }

    fn exec(&self, sql: &str, params: &[Val]) -> DbResult<u64> {
        let (sql, params) = (to_pg(sql), params.to_vec());
        self.call(|c| async move {
            let st = c.prepare_cached(&sql).await?;
            Ok(c.execute(&st, &pg_params(&params)).await?)
        })
    }

    fn query(&self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        let (sql, params) = (to_pg(sql), params.to_vec());
        self.call(|c| async move {
            let st = c.prepare_cached(&sql).await?;
            pg_rows(c.query(&st, &pg_params(&params)).await?)
        })
    }

    pub fn batch(&self, sql: &'static str) -> DbResult<()> {
        self.call(|c| async move { Ok(c.batch_execute(sql).await?) })
    }

    fn begin(&self) -> DbResult<()> {
        self.in_tx.store(true, Ordering::SeqCst);
        self.batch("BEGIN")
    }

    fn end(&self, sql: &'static str) -> DbResult<()> {
        self.batch(sql)?;
        self.in_tx.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Statements in flight hold no clone once `call` has returned.
        let Ok(obj) = Arc::try_unwrap(conn) else { return };
        if self.in_tx.load(Ordering::SeqCst) {
            // Left inside a transaction (a panic between BEGIN and COMMIT): close it.
            drop(deadpool_postgres::Object::take(obj));
            return;
        }
        drop(obj);
        if self.pool.status().available > MAX_IDLE {
            let mut keep = MAX_IDLE;
            self.pool.retain(|_, _| {
                let kept = keep > 0;
                keep = keep.saturating_sub(1);
                kept
            });
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
                pg.begin()?;
                match f(&mut Tx::Postgres(pg)) {
                    Ok(out) => {
                        pg.end("COMMIT")?;
                        Ok(out)
                    }
                    Err(e) => {
                        let _ = pg.end("ROLLBACK");
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
    let names: Arc<[String]> = st.column_names().map(String::from).collect();
    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(match r.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Real(f) => {
                    let found = format!("real {f}");
                    let problem = ColumnProblem::Type { expected: "an integer or text", found };
                    return Err(RowError::Column { column: names[i].clone(), problem }.into());
                }
            });
        }
        out.push(Row { names: names.clone(), vals });
    }
    Ok(out)
}

// ---- PostgreSQL --------------------------------------------------------------------------------

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
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

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
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

fn pg_params(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn pg_rows(rows: Vec<tokio_postgres::Row>) -> DbResult<Vec<Row>> {
    let mut out = Vec::with_capacity(rows.len());
    let Some(first) = rows.first() else { return Ok(out) };
    let names: Arc<[String]> = first.columns().iter().map(|c| c.name().to_string()).collect();
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
                let problem =
                    ColumnProblem::Type { expected: "an integer, boolean or text type", found: format!("type {ty}") };
                return Err(RowError::Column { column: col.name().to_string(), problem }.into());
            };
            vals.push(v.unwrap_or(Val::Null));
        }
        out.push(Row { names: names.clone(), vals });
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
