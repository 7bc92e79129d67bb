//! The operator console on a large ledger: 100,000 files and 1,000,000 result rows (bulk
//! inserted in one transaction), the `stitch-bridge ui` binary serving it, and `/files` (several
//! filters and pages) and `/files/{id}` requested 240 times each, one after another. Prints
//! p50/p95 per page and pass/FAIL against p95 < 100 ms, for SQLite and, when a server is at hand
//! (`STITCH_BRIDGE_TEST_PG_URL`, or `initdb` for a throwaway one), PostgreSQL.
//!
//! `cargo bench --bench console`; `BENCH_QUICK=1` for 10,000 files. `BENCH_CONSOLE_FILES` and
//! `BENCH_CONSOLE_REQUESTS` change the sizes (10 result rows per file).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support_pg/mod.rs"]
mod support_pg;

use common::{note, row};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stitch_bridge::ledger::{Ledger, LedgerLocation};

const ACCOUNTS: usize = 20;
const ROWS_PER_FILE: usize = 10;
const TARGET_MS: f64 = 100.0;

/// Files spread over the last 60 days (older ids older), 20 accounts, three kinds; one in ten
/// rejected, one in five with a rejected row and an error file; ten result rows each.
fn seed_sqlite(path: &Path, files: usize) {
    Ledger::open(path).expect("a new ledger");
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    let span = 60 * 86_400;
    tx.execute_batch(&format!(
        "INSERT INTO files(id, account, kind, path, size, mtime, sha256, state, step, result_path, errors_path,
                           final_path, accepted, rejected, first_seen, updated_at)
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {files})
         SELECT i, 'acct' || (i % {ACCOUNTS}),
                CASE i % 3 WHEN 0 THEN 'orders' WHEN 1 THEN 'inventory' ELSE 'shipments' END,
                'inbound/x/file-' || i || '.csv', 1000, 0, NULL,
                CASE WHEN i % 10 = 0 THEN 'rejected' ELSE 'archived' END, 'moved',
                'results/file-' || i || '.csv.result.csv',
                CASE WHEN i % 5 = 0 THEN 'errors/file-' || i || '.csv.errors.csv' END,
                'archive/d/file-' || i || '.csv',
                CASE WHEN i % 5 = 0 THEN {ok} ELSE {ROWS_PER_FILE} END, CASE WHEN i % 5 = 0 THEN 1 ELSE 0 END,
                strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-' || (({files} - i) * {span} / {files}) || ' seconds'),
                strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-' || (({files} - i) * {span} / {files}) || ' seconds')
         FROM s;
         INSERT INTO records(file_id, line, key, outcome, remote_id, code, message)
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {records} - 1)
         SELECT i / {ROWS_PER_FILE} + 1, i % {ROWS_PER_FILE} + 2, 'PO-' || (i / {ROWS_PER_FILE} + 1) || '-' || (i % {ROWS_PER_FILE}),
                CASE WHEN (i / {ROWS_PER_FILE} + 1) % 5 = 0 AND i % {ROWS_PER_FILE} = 9 THEN 'rejected' ELSE 'created' END,
                'R' || i, CASE WHEN (i / {ROWS_PER_FILE} + 1) % 5 = 0 AND i % {ROWS_PER_FILE} = 9 THEN 'bad_date' ELSE '' END, ''
         FROM s;",
        ok = ROWS_PER_FILE - 1,
        records = files * ROWS_PER_FILE,
    ))
    .unwrap();
    tx.commit().unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0)).unwrap();
    assert_eq!(n as usize, files * ROWS_PER_FILE, "every result row inserted");
}

fn seed_pg(pg: &support_pg::PgServer, loc: &LedgerLocation, files: usize) {
    Ledger::open_at(loc).expect("a new ledger");
    let sql = pg.connect(loc);
    let span = 60 * 86_400;
    let stamp = |i: &str| {
        format!(
            "to_char((now() AT TIME ZONE 'UTC') - (({files} - {i})::bigint * {span} / {files}) * interval '1 second', \
             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
    sql.batch(&format!(
        "BEGIN;
         INSERT INTO files(id, account, kind, path, size, mtime, sha256, state, step, result_path, errors_path,
                           final_path, accepted, rejected, first_seen, updated_at)
         SELECT i, 'acct' || (i % {ACCOUNTS}),
                CASE i % 3 WHEN 0 THEN 'orders' WHEN 1 THEN 'inventory' ELSE 'shipments' END,
                'inbound/x/file-' || i || '.csv', 1000, 0, NULL,
                CASE WHEN i % 10 = 0 THEN 'rejected' ELSE 'archived' END, 'moved',
                'results/file-' || i || '.csv.result.csv',
                CASE WHEN i % 5 = 0 THEN 'errors/file-' || i || '.csv.errors.csv' END,
                'archive/d/file-' || i || '.csv',
                CASE WHEN i % 5 = 0 THEN {ok} ELSE {ROWS_PER_FILE} END, CASE WHEN i % 5 = 0 THEN 1 ELSE 0 END,
                {seen}, {seen}
         FROM generate_series(1, {files}) AS s(i);
         SELECT setval(pg_get_serial_sequence('files', 'id'), {files});
         INSERT INTO records(file_id, line, key, outcome, remote_id, code, message)
         SELECT i / {ROWS_PER_FILE} + 1, i % {ROWS_PER_FILE} + 2, 'PO-' || (i / {ROWS_PER_FILE} + 1) || '-' || (i % {ROWS_PER_FILE}),
                CASE WHEN (i / {ROWS_PER_FILE} + 1) % 5 = 0 AND i % {ROWS_PER_FILE} = 9 THEN 'rejected' ELSE 'created' END,
                'R' || i, CASE WHEN (i / {ROWS_PER_FILE} + 1) % 5 = 0 AND i % {ROWS_PER_FILE} = 9 THEN 'bad_date' ELSE '' END, ''
         FROM generate_series(0, {records} - 1) AS s(i);
         COMMIT;
         ANALYZE;",
        ok = ROWS_PER_FILE - 1,
        records = files * ROWS_PER_FILE,
        seen = stamp("i"),
    ));
    assert_eq!(sql.int("SELECT COUNT(*) FROM records") as usize, files * ROWS_PER_FILE, "every result row inserted");
}

/// `stitch-bridge ui` on a free loopback port; killed when dropped.
struct Console {
    child: Child,
    base: String,
}

impl Console {
    fn start(config: &Path) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(config)
            .args(["--quiet", "ui", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the console starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().trim_start_matches("console on ").trim_end_matches('/').to_string();
        assert!(base.starts_with("http://"), "the console did not start: {line:?}");
        Console { child, base }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, ledger_toml: &str) -> std::path::PathBuf {
    let mut text = ledger_toml.to_string();
    for a in 0..ACCOUNTS {
        std::fs::create_dir_all(dir.join(format!("drop{a}"))).unwrap();
        text += &format!(
            "[[account]]\nname = \"acct{a}\"\ndrop = \"drop{a}\"\nstitch_url = \"http://127.0.0.1:9\"\ntoken_env = \"UNUSED_TOKEN\"\n\n"
        );
    }
    let p = dir.join("stitch-bridge.toml");
    std::fs::write(&p, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Request each path in turn (cycling) `n` times; milliseconds per request, sorted.
fn timed(client: &reqwest::Client, rt: &tokio::runtime::Runtime, base: &str, paths: &[String], n: usize) -> Vec<f64> {
    let mut ms = Vec::with_capacity(n);
    rt.block_on(async {
        for i in 0..n {
            let url = format!("{base}{}", paths[i % paths.len()]);
            let started = Instant::now();
            let r = client.get(&url).send().await.expect("request");
            let status = r.status();
            let body = r.text().await.expect("body");
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(status.is_success(), "{url}: {status}");
            assert!(body.contains("</html>"), "{url}: a whole page");
        }
    });
    ms.sort_by(f64::total_cmp);
    ms
}

fn measure(backend: &str, config: &Path, files: usize, requests: usize) {
    let started = Instant::now();
    let console = Console::start(config);
    println!("{backend}: console up in {:.1} s", started.elapsed().as_secs_f64());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let today = chrono::Utc::now().date_naive();
    let day = |ago: i64| (today - chrono::Duration::days(ago)).format("%Y-%m-%d").to_string();
    let list: Vec<String> = vec![
        "/files".into(),
        "/files?page=2".into(),
        "/files?page=50".into(),
        "/files?account=acct3".into(),
        "/files?account=acct7&kind=orders&page=3".into(),
        "/files?state=errors".into(),
        "/files?state=rejected&account=acct10".into(),
        format!("/files?from={}&to={}", day(30), day(29)),
        format!("/files?account=acct5&from={}", day(45)),
        "/files?q=file-99".into(),
        "/files?account=acct1&q=file-1".into(),
    ];
    // Ids spread over the whole range (a fixed stride), each with its result rows.
    let one: Vec<String> = (0..requests)
        .map(|i| {
            let id = (i * 7919 % files) + 1;
            if i % 4 == 3 {
                format!("/files/{id}?rpage=1")
            } else {
                format!("/files/{id}")
            }
        })
        .collect();
    // A warm-up round: the first request of each kind opens statements and pages of the file.
    timed(&client, &rt, &console.base, &list, list.len());
    let label = format!("{backend}, {files} files, {} result rows", files * ROWS_PER_FILE);
    for (page, paths) in [("/files (11 filters and pages)", &list), ("/files/{id}", &one)] {
        let ms = timed(&client, &rt, &console.base, paths, requests);
        let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
        println!(
            "{backend} {page}: {requests} requests, p50 {p50:.1} ms, p95 {p95:.1} ms, max {:.1} ms",
            ms[ms.len() - 1]
        );
        row(
            &format!("console {page}, {label}"),
            &format!("p95 {p95:.1} ms (p50 {p50:.1} ms)"),
            "—",
            "—",
            &format!("p95 < {TARGET_MS:.0} ms"),
            Some(p95 < TARGET_MS),
        );
    }
    let ms = timed(&client, &rt, &console.base, &["/".to_string()], requests.min(50));
    println!(
        "{backend} / (accounts, {ACCOUNTS}): p50 {:.1} ms, p95 {:.1} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95)
    );
}

fn main() {
    let files = common::size("BENCH_CONSOLE_FILES", 100_000, 10_000);
    let requests = common::size("BENCH_CONSOLE_REQUESTS", 240, 60);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("console: {files} files x {ROWS_PER_FILE} result rows, {requests} requests per page, {cores} cores");

    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let started = Instant::now();
    seed_sqlite(&ledger, files);
    println!("sqlite: seeded in {:.1} s", started.elapsed().as_secs_f64());
    let cfg = config(dir.path(), &format!("[ledger]\npath = {:?}\n\n", ledger.display().to_string()));
    measure("SQLite", &cfg, files, requests);

    match support_pg::server("console") {
        Some(pg) => {
            let loc = pg.fresh();
            let started = Instant::now();
            seed_pg(pg, &loc, files);
            println!("postgres: seeded in {:.1} s", started.elapsed().as_secs_f64());
            let pg_dir = tempfile::tempdir().unwrap();
            let cfg = config(pg_dir.path(), &pg.ledger_toml(&loc, 60));
            measure("PostgreSQL", &cfg, files, requests);
        }
        None => note("console bench: PostgreSQL skipped (set STITCH_BRIDGE_TEST_PG_URL, or install PostgreSQL)"),
    }
}
