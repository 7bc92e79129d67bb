//! PostgreSQL for the `pg_*` tests: a fresh database per test on one server per test binary.
//!
//! The server is `STITCH_BRIDGE_TEST_PG_URL` (password, if any, in
//! `STITCH_BRIDGE_TEST_PG_PASSWORD`; its TLS CA in `STITCH_BRIDGE_TEST_PG_CA`), as `.ci/run`
//! exports; when unset, one is started from `initdb` with `postgres.sh` beside this file and
//! stopped when the test binary exits. Ledgers reach it with `sslmode = "verify-full"` against
//! that CA, as an operator's would. Without
//! either, tests print why and return early, unless `STITCH_BRIDGE_REQUIRE_PG=1` (CI), which
//! turns a missing server into a failure.
#![allow(dead_code)]

pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use stitch_bridge::ledger::{LedgerLocation, PgTls, SslMode};

pub const PASSWORD_ENV: &str = "STITCH_BRIDGE_TEST_PG_PASSWORD";
pub const CA_ENV: &str = "STITCH_BRIDGE_TEST_PG_CA";

pub struct PgServer {
    /// Without a password; it is in [`PASSWORD_ENV`] when the server wants one.
    pub url: String,
    /// The CA that signed the server's certificate (`postgres.sh` makes `tls/ca.crt`).
    pub ca: PathBuf,
}

/// A server of the tests' own, stopped and removed when dropped (for set-ups the shared server
/// cannot give, such as one without TLS).
pub struct OwnServer {
    pub url: String,
    dir: PathBuf,
}

impl OwnServer {
    /// `ssl`: whether the server offers TLS. `None` when no server could be started.
    pub fn start(ssl: bool) -> Option<OwnServer> {
        let dir = tempfile::Builder::new().prefix("sb-pg-").tempdir().ok()?.keep();
        let out = std::process::Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .env_remove(PASSWORD_ENV)
            .env("STITCH_BRIDGE_TEST_PG_SSL", if ssl { "on" } else { "off" })
            .output()
            .ok()?;
        let server = OwnServer { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir };
        if !out.status.success() {
            drop(server);
            return unavailable(&format!("postgres.sh: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Some(server)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
static STARTED_DIR: OnceLock<PathBuf> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support_pg/postgres.sh")
}

extern "C" fn stop_started_server() {
    if let Some(dir) = STARTED_DIR.get() {
        let _ = std::process::Command::new("bash").arg(script()).arg("stop").arg(dir).status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("STITCH_BRIDGE_REQUIRE_PG").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (STITCH_BRIDGE_REQUIRE_PG=1) but unavailable: {why}");
    }
    None
}

fn start() -> Option<PgServer> {
    if let Ok(url) = std::env::var("STITCH_BRIDGE_TEST_PG_URL") {
        let Ok(ca) = std::env::var(CA_ENV) else {
            return unavailable(
                "STITCH_BRIDGE_TEST_PG_URL is set without STITCH_BRIDGE_TEST_PG_CA (the server's TLS CA)",
            );
        };
        return Some(PgServer { url, ca: ca.into() });
    }
    // Under the system temp folder itself: as root the server runs as `postgres`, which must
    // be able to reach its data folder.
    let dir = match tempfile::Builder::new().prefix("sb-pg-").tempdir() {
        Ok(d) => d.keep(),
        Err(e) => return unavailable(&format!("no temp folder: {e}")),
    };
    let out = std::process::Command::new("bash").arg(script()).arg("start").arg(&dir).env_remove(PASSWORD_ENV).output();
    match out {
        Ok(o) if o.status.success() => {
            let ca = dir.join("tls/ca.crt");
            let _ = STARTED_DIR.set(dir);
            // SAFETY: registering a plain extern "C" function with no arguments.
            unsafe { libc::atexit(stop_started_server) };
            Some(PgServer { url: String::from_utf8_lossy(&o.stdout).trim().to_string(), ca })
        }
        Ok(o) => {
            let _ = std::fs::remove_dir_all(&dir);
            unavailable(&format!(
                "STITCH_BRIDGE_TEST_PG_URL is unset and no server could be started: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => unavailable(&format!("cannot run bash: {e}")),
    }
}

/// The shared server, or `None` after printing why the calling test is skipped.
pub fn server(test: &str) -> Option<&'static PgServer> {
    let s = SERVER.get_or_init(start).as_ref();
    if s.is_none() {
        println!(
            "skipped {test}: no PostgreSQL (set STITCH_BRIDGE_TEST_PG_URL, or install PostgreSQL so initdb is found)"
        );
    }
    s
}

impl PgServer {
    fn password_env(&self) -> Option<String> {
        std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()).map(|_| PASSWORD_ENV.to_string())
    }

    fn admin(&self) -> Sql {
        Sql::connect(&self.url)
    }

    /// A URL naming database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        let (base, _) = self.url.rsplit_once('/').expect("URL with a database");
        format!("{base}/{db}")
    }

    /// Verify-full against the server's own CA: what the tests' ledgers use.
    pub fn tls(&self) -> PgTls {
        PgTls { sslmode: SslMode::VerifyFull, ssl_ca_file: Some(self.ca.clone()) }
    }

    /// A new, empty database: the ledger location to use for it.
    pub fn fresh(&self) -> LedgerLocation {
        let name = format!("sbtest_{:016x}", rand::random::<u64>());
        self.admin().batch(&format!("CREATE DATABASE {name}"));
        LedgerLocation::Postgres { url: self.url_for(&name), password_env: self.password_env(), tls: self.tls() }
    }

    /// A direct connection to a ledger's database, for arranging states the ledger API cannot.
    pub fn connect(&self, loc: &LedgerLocation) -> Sql {
        let LedgerLocation::Postgres { url, .. } = loc else { panic!("not a PostgreSQL location") };
        Sql::connect(url)
    }

    /// `[ledger]` lines for a config file pointing at `loc`.
    pub fn ledger_toml(&self, loc: &LedgerLocation, lease_seconds: u64) -> String {
        let LedgerLocation::Postgres { url, password_env, tls } = loc else { panic!("not a PostgreSQL location") };
        let pw = password_env.as_ref().map(|v| format!("password_env = \"{v}\"\n")).unwrap_or_default();
        let ca = tls
            .ssl_ca_file
            .as_ref()
            .map(|f| format!("ssl_ca_file = {:?}\n", f.display().to_string()))
            .unwrap_or_default();
        format!(
            "[ledger]\nurl = \"{url}\"\n{pw}sslmode = \"{}\"\n{ca}lease_seconds = {lease_seconds}\n\n",
            tls.sslmode.as_str()
        )
    }
}

/// A plain (unencrypted, loopback) SQL connection for arranging and inspecting test databases,
/// driven on a runtime of its own: tests call it from ordinary threads.
pub struct Sql {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Sql {
    fn connect(url: &str) -> Sql {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut cfg: tokio_postgres::Config = url.parse().expect("test server URL");
        if let Ok(pw) = std::env::var(PASSWORD_ENV) {
            cfg.password(pw);
        }
        let client = rt.block_on(async {
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect to the test server");
            tokio::spawn(conn);
            client
        });
        Sql { rt, client }
    }

    pub fn batch(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.rt.block_on(self.client.query(sql, &[])).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn int(&self, sql: &str) -> i64 {
        self.rows(sql)[0].get(0)
    }
}
