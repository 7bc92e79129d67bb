//! `stitch-bridge watch` as a process: file events, SIGTERM mid-cycle, one watcher per drop.

#[path = "support/bridge.rs"]
mod bridge;

use bridge::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stitch_bridge::sim::faults::FaultConfig;

/// A running `watch` with its stderr collected line by line.
struct Watch {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(config: &Path, extra: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(config)
            .arg("watch")
            .args(extra)
            .env("STITCH_BRIDGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (err, l) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Watch { child, log }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn wait_log(&mut self, needle: &str, limit: Duration) {
        let ok = wait_for(limit, || self.logged(needle));
        assert!(ok, "{needle:?} not logged within {limit:?}:\n{}", self.log_text());
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Exit code, waiting at most `limit`.
    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        let done = wait_for(limit, || match self.child.try_wait().unwrap() {
            Some(st) => {
                code = st.code();
                true
            }
            None => false,
        });
        assert!(done, "watch did not exit within {limit:?}:\n{}", self.log_text());
        code
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settle at once, poll and download rarely: only file events (or the test) drive cycles.
const EVENT_DRIVEN: &str = "settle_seconds = 0\npoll_seconds = 600\ndownload_interval_seconds = 600";

fn setup(dir: &Path, sim_url: &str, extra: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = write_config(dir, root.to_str().unwrap(), sim_url, extra);
    (root, cfg)
}

#[test]
fn dropped_file_processed_within_two_seconds_then_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // Long polls: only the filesystem event can explain a fast pick-up.
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    let mut w = Watch::start(&cfg, &["--lease-seconds", "5"]);
    w.wait_log("watching the drop", Duration::from_secs(20));
    // Folders are watched before the first cycle starts, so no need to wait for it.
    assert!(root.join("inbound/inventory").is_dir());
    let requests_before = sim.counters().requests.values().sum::<u64>();
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let dropped = Instant::now();
    let result = root.join("results/stock.csv.result.csv");
    // Processed means moved too: the result is written a ledger commit or two before the move.
    let archived = || tree(&root).contains(&"archive/DATE/stock.csv".to_string());
    let fast = wait_for(Duration::from_secs(2), || result.exists() && archived());
    assert!(fast, "not processed within 2 s:\n{}", w.log_text());
    eprintln!("processed {:?} after the drop", dropped.elapsed());
    assert!(tree(&root).contains(&"archive/DATE/stock.csv".to_string()));
    assert!(sim.counters().requests.values().sum::<u64>() > requests_before);
    w.wait_log("file processed", Duration::from_secs(5));
    w.signal(libc::SIGTERM);
    assert_eq!(w.exit_code(Duration::from_secs(20)), Some(0), "{}", w.log_text());
    assert!(w.logged("lease released"), "{}", w.log_text());
}

#[test]
fn sigterm_mid_cycle_leaves_a_consistent_drop_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    // Slow Stitch answers so the signal lands while files are being worked on.
    let sim = sim_with(FaultConfig { latency_ms: 150, ..Default::default() });
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    let names: Vec<String> = (0..5).map(|i| format!("stock_{i}.csv")).collect();
    for (i, n) in names.iter().enumerate() {
        // Different quantities: not duplicates of one another.
        let text = INVENTORY.replace(",120,", &format!(",{},", 100 + i));
        drop_file(&root, &format!("inbound/inventory/{n}"), text.as_bytes());
    }
    let mut w = Watch::start(&cfg, &["--lease-seconds", "5"]);
    assert!(
        wait_for(Duration::from_secs(30), || fs::read_dir(root.join("results"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)),
        "no file finished:\n{}",
        w.log_text()
    );
    w.signal(libc::SIGTERM);
    assert_eq!(w.exit_code(Duration::from_secs(30)), Some(0), "{}", w.log_text());
    let t = tree(&root);
    let mut left = 0;
    for n in &names {
        let inbound = t.contains(&format!("inbound/inventory/{n}"));
        let archived = t.contains(&format!("archive/DATE/{n}"));
        let result = t.contains(&format!("results/{n}.result.csv"));
        assert!(inbound != archived, "{n} in exactly one place: {t:?}");
        assert_eq!(archived, result, "{n}: a result exactly when archived: {t:?}");
        left += inbound as usize;
    }
    assert!(left > 0, "stopped between files, not after all of them: {t:?}");
    assert!(visible_temp_files(&root).is_empty(), "{t:?}");
    let ledger = stitch_bridge::ledger::Ledger::open(&dir.path().join("state/ledger.sqlite")).unwrap();
    assert!(ledger.unfinished_files("wh").unwrap().is_empty(), "no file left half-way in the ledger");
    assert!(ledger.lease_holder("drop:wh").unwrap().is_none(), "lease released");
    // The rest is taken by the next run, without redoing the finished ones.
    let r = stitch_bridge::engine::run_cycle(&load(&cfg), &[], stitch_bridge::engine::Parts::ALL);
    assert_eq!(r.accounts[0].files.len(), left, "{r:?}");
    assert!(!tree(&root).iter().any(|p| p.starts_with("inbound/")));
}

#[test]
fn second_watcher_waits_and_takes_over_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    let lease = ["--lease-seconds", "2"];
    let mut first = Watch::start(&cfg, &lease);
    first.wait_log("watching the drop", Duration::from_secs(20));
    let mut second = Watch::start(&cfg, &lease);
    second.wait_log("another watcher holds this drop's lease", Duration::from_secs(20));
    // While the first lives (it renews every ttl/3), the second keeps waiting.
    drop_file(&root, "inbound/inventory/a.csv", INVENTORY.as_bytes());
    assert!(
        wait_for(Duration::from_secs(10), || root.join("results/a.csv.result.csv").exists()),
        "{}",
        first.log_text()
    );
    assert!(!second.logged("watching the drop"), "{}", second.log_text());
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    first.exit_code(Duration::from_secs(10));
    second.wait_log("watching the drop", Duration::from_secs(15));
    eprintln!("took over {:?} after SIGKILL", killed.elapsed());
    // The second now does the work.
    let text = INVENTORY.replace(",120,", ",121,");
    drop_file(&root, "inbound/inventory/b.csv", text.as_bytes());
    assert!(
        wait_for(Duration::from_secs(10), || root.join("results/b.csv.result.csv").exists()),
        "{}",
        second.log_text()
    );
    second.signal(libc::SIGTERM);
    assert_eq!(second.exit_code(Duration::from_secs(20)), Some(0), "{}", second.log_text());
}

/// README: a second watcher takes over "at once" when the first was a process on this machine
/// that died. With the default-sized lease (renewed every ttl/3) that must not mean a retry
/// interval of many seconds.
#[test]
fn dead_local_watchers_lease_is_taken_over_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (_root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    let lease = ["--lease-seconds", "60"];
    let mut first = Watch::start(&cfg, &lease);
    first.wait_log("watching the drop", Duration::from_secs(20));
    let mut second = Watch::start(&cfg, &lease);
    second.wait_log("another watcher holds this drop's lease", Duration::from_secs(20));
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    // Reaped, as its supervisor (systemd, a shell) would.
    first.exit_code(Duration::from_secs(10));
    second.wait_log("watching the drop", Duration::from_secs(30));
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(2), "took over {took:?} after SIGKILL:\n{}", second.log_text());
}

/// A watch cycle that outlasts `lease_seconds` keeps its claim on the account (renewed while it
/// runs, like the drop's lease): a `run` worker meanwhile skips the account, and nothing is
/// written twice.
#[test]
fn a_watch_cycle_longer_than_the_lease_keeps_the_account_from_run_workers() {
    use stitch_bridge::sim::faults::{FaultKind, QueuedFault};
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    // The cycle's stock write is held by the simulator for four leases: the cycle sits inside
    // it while the test looks.
    let hold = QueuedFault {
        fault: FaultKind::Latency,
        ms: Some(4 * ttl.as_millis() as u64),
        method: Some("POST".into()),
        path_prefix: Some(stitch_bridge::stitch::wire::PRODUCTS.into()),
        retry_after: None,
    };
    let sim = sim_with(FaultConfig { queue: vec![hold], ..Default::default() });
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let mut w = Watch::start(&cfg, &["--lease-seconds", &ttl.as_secs().to_string()]);
    let held = || sim.counters().faults_injected.get("latency").copied() == Some(1);
    assert!(wait_for(Duration::from_secs(30), held), "the write never reached the simulator:\n{}", w.log_text());
    let ledger = stitch_bridge::ledger::Ledger::open(&dir.path().join("state/ledger.sqlite")).unwrap();
    let claim = ledger.account_claim("wh").unwrap().expect("the cycle holds the account");
    // Past the expiry the claim had when the write went out: only renewal keeps it now.
    let now_ms = || chrono::Utc::now().timestamp_millis();
    assert!(wait_for(ttl * 2, || now_ms() > claim.expires_ms + 200));
    assert!(!root.join("results/stock.csv.result.csv").exists(), "the watch cycle is still inside the held write");

    let worker = stitch_bridge::engine::Worker { id: "run-worker".into(), lease_ttl: ttl };
    let r = stitch_bridge::engine::run_cycle_as(&load(&cfg), &[], stitch_bridge::engine::Parts::ALL, &worker);
    let a = &r.accounts[0];
    assert!(a.skipped.as_deref().is_some_and(|s| s.contains(&claim.holder)), "{a:?}\n{}", w.log_text());
    assert!(a.files.is_empty() && a.requests == 0, "{a:?}");

    let result = root.join("results/stock.csv.result.csv");
    let archived = || tree(&root).contains(&"archive/DATE/stock.csv".to_string());
    assert!(wait_for(Duration::from_secs(30), || result.exists() && archived()), "{}", w.log_text());
    // The sample's SKUs fit one upsert: the held one is the only one sent.
    let upserts = sim.counters().requests.get(&format!("POST {}", stitch_bridge::stitch::wire::PRODUCTS)).copied();
    assert_eq!(upserts, Some(1), "{:?}", sim.counters());
    w.signal(libc::SIGTERM);
    assert_eq!(w.exit_code(Duration::from_secs(20)), Some(0), "{}", w.log_text());
    assert!(!w.logged("cannot renew"), "{}", w.log_text());
}

#[test]
fn halted_account_is_skipped_and_others_continue() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    // A second account on its own drop, halted in the ledger.
    let other = dir.path().join("drop2");
    fs::create_dir_all(&other).unwrap();
    let mut text = fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "\n[[account]]\nname = \"halted\"\ndrop = \"{}\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/token\"\nsettle_seconds = 0\n",
        other.display(),
        sim.base_url()
    );
    fs::write(&cfg, text).unwrap();
    let ledger = stitch_bridge::ledger::Ledger::open(&dir.path().join("state/ledger.sqlite")).unwrap();
    ledger.halt("halted", "unauthorized", "401 from Stitch").unwrap();
    drop(ledger);
    drop_file(&other, "inbound/inventory/x.csv", INVENTORY.as_bytes());
    let mut w = Watch::start(&cfg, &["--lease-seconds", "5"]);
    w.wait_log("account halted; skipped", Duration::from_secs(20));
    drop_file(&root, "inbound/inventory/a.csv", INVENTORY.as_bytes());
    assert!(wait_for(Duration::from_secs(10), || root.join("results/a.csv.result.csv").exists()), "{}", w.log_text());
    assert!(other.join("inbound/inventory/x.csv").exists(), "halted account's files untouched");
    w.signal(libc::SIGINT);
    assert_eq!(w.exit_code(Duration::from_secs(20)), Some(0), "{}", w.log_text());
}

/// The address `watch --metrics-listen 127.0.0.1:0` logged that it serves on.
fn metrics_addr(w: &Watch) -> String {
    let log = w.log_text();
    let at = log.find("metrics on http://").unwrap() + "metrics on http://".len();
    log[at..].split('/').next().unwrap().to_string()
}

/// GET over plain HTTP/1.0 (the server closes after answering): status line and body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn metrics_endpoint_counts_files_requests_and_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (root, cfg) = setup(dir.path(), &sim.base_url(), EVENT_DRIVEN);
    let mut w = Watch::start(&cfg, &["--metrics-listen", "127.0.0.1:0"]);
    w.wait_log("metrics on http://", Duration::from_secs(20));
    let addr = metrics_addr(&w);
    let (status, body) = http_get(&addr, "/healthz");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    w.wait_log("watching the drop", Duration::from_secs(20));
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let result = root.join("results/stock.csv.result.csv");
    assert!(wait_for(Duration::from_secs(10), || result.exists()), "{}", w.log_text());
    // The counters are recorded when the cycle ends, just after the result file is written.
    let mut text = String::new();
    let seen = wait_for(Duration::from_secs(10), || {
        text = http_get(&addr, "/metrics").1;
        text.contains("stitch_bridge_files_total{")
    });
    assert!(seen, "{text}");
    let line = |name: &str| {
        text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{text}")).to_string()
    };
    let files = line("stitch_bridge_files_total{");
    assert!(
        files.contains("account=\"wh\"") && files.contains("kind=\"inventory\"") && files.ends_with(" 1"),
        "{files}"
    );
    assert!(line("stitch_bridge_api_requests_total{").contains("endpoint=\""), "{text}");
    assert!(text.contains("stitch_bridge_cycle_duration_seconds_bucket"), "{text}");
    assert!(line("stitch_bridge_account_halted{").ends_with(" 0"), "{text}");
    w.signal(libc::SIGTERM);
    assert_eq!(w.exit_code(Duration::from_secs(20)), Some(0), "{}", w.log_text());
}

/// A problem only a person can fix turns `/healthz` to 503 naming the account and its reason,
/// sets `stitch_bridge_account_attention`, and fires the alert hook once however many cycles
/// meet it; once fixed, `/healthz` is 200 again and the hook hears that once.
#[test]
fn an_account_that_needs_attention_turns_healthz_503_and_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let events = dir.path().join("events.txt");
    let extra = format!(
        "settle_seconds = 0\npoll_seconds = 1\ndownload_interval_seconds = 600\nalert_command = \"echo $STITCH_BRIDGE_ALERT_EVENT >> '{}'\"\n",
        events.display()
    );
    let (root, cfg) = setup(dir.path(), &sim.base_url(), &extra);
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.join("inbound/inventory")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("results")).unwrap();
    let mut w = Watch::start(&cfg, &["--metrics-listen", "127.0.0.1:0"]);
    w.wait_log("metrics on http://", Duration::from_secs(20));
    let addr = metrics_addr(&w);
    let (mut status, mut body) = (String::new(), String::new());
    let unhealthy = wait_for(Duration::from_secs(20), || {
        (status, body) = http_get(&addr, "/healthz");
        status.contains("503")
    });
    assert!(unhealthy, "{status} {body}\n{}", w.log_text());
    assert!(body.contains("wh: needs attention: drop_symlink"), "{body}");
    let metrics = http_get(&addr, "/metrics").1;
    assert!(
        metrics.lines().any(|l| l.starts_with("stitch_bridge_account_attention{")
            && l.contains("reason=\"drop_symlink\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    // Several more cycles (one a second) meet the same problem: the hook heard it once.
    let cycles_before = w.log_text().matches("needs attention").count();
    assert!(
        wait_for(Duration::from_secs(20), || w.log_text().matches("needs attention").count() >= cycles_before + 2),
        "{}",
        w.log_text()
    );
    assert_eq!(fs::read_to_string(&events).unwrap_or_default().lines().collect::<Vec<_>>(), vec!["attention"]);
    // Fixed by a person: the link replaced by a real folder.
    fs::remove_file(root.join("results")).unwrap();
    fs::create_dir(root.join("results")).unwrap();
    let healthy = wait_for(Duration::from_secs(20), || {
        (status, body) = http_get(&addr, "/healthz");
        status.contains("200")
    });
    assert!(healthy, "{status} {body}\n{}", w.log_text());
    assert_eq!(body.trim(), "ok");
    assert!(wait_for(Duration::from_secs(10), || fs::read_to_string(&events).unwrap_or_default().lines().count() == 2));
    assert_eq!(
        fs::read_to_string(&events).unwrap().lines().collect::<Vec<_>>(),
        vec!["attention", "attention_cleared"]
    );
    w.signal(libc::SIGTERM);
    assert_eq!(w.exit_code(Duration::from_secs(20)), Some(0), "{}", w.log_text());
}
