//! PostgreSQL for the `pg_*` tests: a fresh database per test on one server per test binary.
//!
//! The server is `STITCH_BRIDGE_TEST_PG_URL` (password, if any, in
//! `STITCH_BRIDGE_TEST_PG_PASSWORD`), as `.ci/run` exports; when unset, one is started from
//! `initdb` with `postgres.sh` beside this file and stopped when the test binary exits. Without
//! either, tests print why and return early, unless `STITCH_BRIDGE_REQUIRE_PG=1` (CI), which
//! turns a missing server into a failure.
#![allow(dead_code)]

pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use stitch_bridge::ledger::LedgerLocation;

pub const PASSWORD_ENV: &str = "STITCH_BRIDGE_TEST_PG_PASSWORD";

pub struct PgServer {
    /// Without a password; it is in [`PASSWORD_ENV`] when the server wants one.
    pub url: String,
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

fn unavailable(why: &str) -> Option<PgServer> {
    if std::env::var("STITCH_BRIDGE_REQUIRE_PG").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (STITCH_BRIDGE_REQUIRE_PG=1) but unavailable: {why}");
    }
    None
}

fn start() -> Option<PgServer> {
    if let Ok(url) = std::env::var("STITCH_BRIDGE_TEST_PG_URL") {
        return Some(PgServer { url });
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
            let _ = STARTED_DIR.set(dir);
            // SAFETY: registering a plain extern "C" function with no arguments.
            unsafe { libc::atexit(stop_started_server) };
            Some(PgServer { url: String::from_utf8_lossy(&o.stdout).trim().to_string() })
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

    fn admin(&self) -> postgres::Client {
        let mut cfg: postgres::Config = self.url.parse().expect("test server URL");
        if let Ok(pw) = std::env::var(PASSWORD_ENV) {
            cfg.password(pw);
        }
        cfg.connect(postgres::NoTls).expect("connect to the test server")
    }

    /// A URL naming database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        let (base, _) = self.url.rsplit_once('/').expect("URL with a database");
        format!("{base}/{db}")
    }

    /// A new, empty database: the ledger location to use for it.
    pub fn fresh(&self) -> LedgerLocation {
        let name = format!("sbtest_{:016x}", rand::random::<u64>());
        self.admin().batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        LedgerLocation::Postgres { url: self.url_for(&name), password_env: self.password_env() }
    }

    /// A direct connection to a ledger's database, for arranging states the ledger API cannot.
    pub fn connect(&self, loc: &LedgerLocation) -> postgres::Client {
        let LedgerLocation::Postgres { url, .. } = loc else { panic!("not a PostgreSQL location") };
        let mut cfg: postgres::Config = url.parse().unwrap();
        if let Ok(pw) = std::env::var(PASSWORD_ENV) {
            cfg.password(pw);
        }
        cfg.connect(postgres::NoTls).unwrap()
    }

    /// `[ledger]` lines for a config file pointing at `loc`.
    pub fn ledger_toml(&self, loc: &LedgerLocation, lease_seconds: u64) -> String {
        let LedgerLocation::Postgres { url, password_env } = loc else { panic!("not a PostgreSQL location") };
        let pw = password_env.as_ref().map(|v| format!("password_env = \"{v}\"\n")).unwrap_or_default();
        format!("[ledger]\nurl = \"{url}\"\n{pw}lease_seconds = {lease_seconds}\n\n")
    }
}
