//! The console at ledger scale: 100,000 files and 1,000,000 result rows, on SQLite and on
//! PostgreSQL. The ledger is filled in SQL (generated rows, as the engine's own statements
//! would leave them), then `stitch-bridge ui` serves it and this program requests the files list
//! (first page, filters, a deep page, a name search) and file pages of random files over plain
//! HTTP, one request at a time, and prints p50 and p95 per page kind against the target p95 <
//! 100 ms. Every answer must be 200 and name what was asked for, so a fast error page cannot pass.
//!
//! `cargo bench --bench console`. `CONSOLE_FILES`, `CONSOLE_ROWS`, `CONSOLE_REQUESTS` change the
//! size. PostgreSQL: `STITCH_BRIDGE_TEST_PG_URL` (and its password and CA), or a throwaway
//! server started from `initdb`; without either the PostgreSQL rows say n/a.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support_pg/mod.rs"]
mod support_pg;

use common::{row, size};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 20;

/// Rows of `files` and `records` generated in the database itself (no client round trips).
fn seed_sql(files: usize, rows: usize, postgres: bool) -> String {
    // Days back from now for file `i`: 60 days of history.
    let (series_files, series_rows, day) = if postgres {
        (
            format!("generate_series(1, {files}) AS s(i)"),
            format!("generate_series(0, {} - 1) AS s(i)", rows),
            "to_char(now() - (i % 60) * interval '1 day' - (i % 86400) * interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')".to_string(),
        )
    } else {
        (
            String::new(),
            String::new(),
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 60) || ' days', '-' || (i % 86400) || ' seconds')"
                .to_string(),
        )
    };
    let kind = "CASE i % 3 WHEN 0 THEN 'inventory' WHEN 1 THEN 'orders' ELSE 'shipments' END";
    let files_select = format!(
        "SELECT i, 'acct' || (i % {ACCOUNTS}), {kind}, 'inbound/' || {kind} || '/file-' || i || '.csv', 1000 + i, 1700000000 + i,
                'sha' || i, CASE WHEN i % 11 = 0 THEN 'rejected' ELSE 'archived' END, 'moved',
                'results/file-' || i || '.csv.result.csv',
                CASE WHEN i % 5 = 0 THEN 'errors/file-' || i || '.csv.errors.csv' ELSE NULL END,
                'archive/2026-12-01/file-' || i || '.csv', (i % 11 = 0), 9, CASE WHEN i % 5 = 0 THEN 1 ELSE 0 END,
                NULL, {day}, {day}"
    );
    let per = (rows / files).max(1);
    let records_select = format!(
        "SELECT (i % {files}) + 1, (i / {files}) + 2, 'SKU-' || i,
                CASE WHEN i % 17 = 0 THEN 'rejected' ELSE 'updated' END, 'P' || i,
                CASE WHEN i % 17 = 0 THEN 'bad_integer' ELSE '' END, 'stock ' || (i % {per}) || ' (was 3)'"
    );
    let cols = "id, account, kind, path, size, mtime, sha256, state, step, result_path, errors_path, final_path, \
                reject_file, accepted, rejected, message, first_seen, updated_at";
    let rcols = "file_id, line, key, outcome, remote_id, code, message";
    if postgres {
        format!(
            "INSERT INTO files({cols}) {files_select} FROM {series_files};
             INSERT INTO records({rcols}) {records_select} FROM {series_rows};
             SELECT setval(pg_get_serial_sequence('files', 'id'), {files});
             ANALYZE;"
        )
    } else {
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {files})
             INSERT INTO files({cols}) {files_select} FROM s;
             WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {rows} - 1)
             INSERT INTO records({rcols}) {records_select} FROM s;
             ANALYZE;"
        )
    }
}

/// A config with `ACCOUNTS` local drops and the given `[ledger]` table.
fn write_config(dir: &Path, ledger_toml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/token"), "bench-token").unwrap();
    let mut text = ledger_toml.to_string();
    for a in 0..ACCOUNTS {
        std::fs::create_dir_all(dir.join(format!("drop{a}"))).unwrap();
        text.push_str(&format!(
            "\n[[account]]\nname = \"acct{a}\"\ndrop = \"drop{a}\"\nstitch_url = \"http://127.0.0.1:9\"\ntoken_file = \"secrets/token\"\n"
        ));
    }
    let path = dir.join("stitch-bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `stitch-bridge ui` on a free loopback port, once it answers.
fn start_ui(config: &Path) -> (Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .args(["--quiet", "ui", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the console");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the console did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

/// One GET; the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Requests each path in turn, `n` in all; every answer must be 200 and contain `expect(path)`.
fn timed(addr: SocketAddr, paths: &[(String, String)], n: usize) -> (Duration, Duration) {
    // One untimed pass: the first touch of each page warms caches as a person's first click does.
    for (p, _) in paths.iter().take(3) {
        get(addr, p);
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (path, expect) = &paths[i % paths.len()];
        let started = Instant::now();
        let (status, body) = get(addr, path);
        times.push(started.elapsed());
        assert_eq!(status, 200, "GET {path}: {body:.300}");
        assert!(body.contains(expect.as_str()), "GET {path} does not show {expect:?}: {body:.500}");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.95))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn measure(backend: &str, config: &Path, files: usize, rows: usize, requests: usize) {
    let (mut child, addr) = start_ui(config);
    let mut rng = common::Rng(42);
    let list: Vec<(String, String)> = vec![
        ("/files".into(), "file-".into()),
        ("/files?account=acct7".into(), "acct7".into()),
        ("/files?kind=orders".into(), "orders".into()),
        ("/files?outcome=rejected".into(), "rejected".into()),
        ("/files?account=acct3&kind=shipments&page=40".into(), "shipments".into()),
        (format!("/files?q=file-{}", files / 2 + 7), format!("file-{}", files / 2 + 7)),
        ("/files?page=2000".into(), "file-".into()),
    ];
    let pages: Vec<(String, String)> = (0..64)
        .map(|_| {
            let id = 1 + rng.next() as usize % files;
            (format!("/files/{id}"), format!("file-{id}.csv"))
        })
        .collect();
    let (l50, l95) = timed(addr, &list, requests);
    let (f50, f95) = timed(addr, &pages, requests);
    let _ = child.kill();
    let _ = child.wait();
    let what = |page: &str| format!("console: {page}, {files} files and {rows} result rows, {backend}");
    row(
        &what("files list p95"),
        &format!("{:.1} ms (p50 {:.1} ms)", ms(l95), ms(l50)),
        "target",
        &format!("{:.2}x", 100.0 / ms(l95).max(0.001)),
        "p95 < 100 ms",
        Some(ms(l95) < 100.0),
    );
    row(
        &what("file page p95"),
        &format!("{:.1} ms (p50 {:.1} ms)", ms(f95), ms(f50)),
        "target",
        &format!("{:.2}x", 100.0 / ms(f95).max(0.001)),
        "p95 < 100 ms",
        Some(ms(f95) < 100.0),
    );
}

fn main() {
    let files = size("CONSOLE_FILES", 100_000, 5_000);
    let rows = size("CONSOLE_ROWS", 1_000_000, 50_000);
    let requests = size("CONSOLE_REQUESTS", 300, 60);
    println!("console: {files} files, {rows} result rows, {requests} requests per page kind, one at a time");

    // SQLite: the ledger file made by the library (its migrations), filled in SQL.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite");
    drop(stitch_bridge::ledger::Ledger::open(&db).expect("ledger"));
    let started = Instant::now();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!("BEGIN; {} COMMIT;", seed_sql(files, rows, false))).expect("seed SQLite");
    drop(conn);
    println!("SQLite seeded in {:.1} s", started.elapsed().as_secs_f64());
    let config = write_config(dir.path(), &format!("[ledger]\npath = {:?}\n", db.display().to_string()));
    measure("SQLite", &config, files, rows, requests);

    match support_pg::server("console bench") {
        None => {
            for page in ["files list p95", "file page p95"] {
                row(
                    &format!("console: {page}, {files} files and {rows} result rows, PostgreSQL"),
                    "n/a",
                    "target",
                    "n/a",
                    "p95 < 100 ms",
                    None,
                );
            }
        }
        Some(pg) => {
            let loc = pg.fresh();
            drop(stitch_bridge::ledger::Ledger::open_at(&loc).expect("PostgreSQL ledger"));
            let started = Instant::now();
            pg.connect(&loc).batch(&seed_sql(files, rows, true));
            println!("PostgreSQL seeded in {:.1} s", started.elapsed().as_secs_f64());
            let pdir = tempfile::tempdir().unwrap();
            let config = write_config(pdir.path(), &pg.ledger_toml(&loc, 30));
            measure("PostgreSQL", &config, files, rows, requests);
        }
    }
}
