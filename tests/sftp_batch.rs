//! `Transport::write_many` over several sFTP sessions against OpenSSH `sshd`: exact bytes, no
//! temp file ever visible under a final name, nothing existing replaced, and a link cut in the
//! middle of a batch (a relay in this test that drops every connection) leaves nothing
//! half-written; the next batch, and the next order download, complete without duplicates.
//!
//! Needs `sshd` (skipped with a message without it, unless `STITCH_BRIDGE_REQUIRE_SSHD=1`).

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use stitch_bridge::drop::sftp::{record_host_key, SftpAuth, SftpDrop};
use stitch_bridge::drop::{is_temp_of_ours, DropErrorKind, Transport};
use stitch_bridge::engine::{run_cycle, Parts};
use stitch_bridge::sim::{self, Seed, SimOptions};
use support::TestServer;

/// A loopback relay to `target` that delays every chunk by `delay` each way (so a batch takes
/// long enough to be cut in the middle) and can be cut: every relayed connection is shut down
/// at once and new ones are dropped on arrival, until `heal`.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: u16, delay: Duration) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, l2) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { break };
                if c2.load(Ordering::SeqCst) {
                    continue; // dropped: the link is down
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                {
                    let mut live = l2.lock().unwrap();
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    pipe(from, to, delay);
                }
            }
        });
        Relay { port, cut, live }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One direction of a relayed connection: each chunk is delivered `delay` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            // Pacing the link, not synchronising the test.
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn sshd_or_skip(test: &str) -> Option<TestServer> {
    let srv = TestServer::sshd();
    if srv.is_none() {
        eprintln!("{test}: skipped, OpenSSH sshd not installed");
    }
    srv
}

/// Names and contents in `dir` that are not dot files, and the dot files.
fn listing(dir: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut dots = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            dots.push(name);
        } else if let Ok(bytes) = fs::read(dir.join(&name)) {
            files.insert(name, bytes);
        }
    }
    (files, dots)
}

/// Distinct contents of varied sizes: empty, small, and one larger than one upload chunk.
fn batch(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let len = match i {
                0 => 0,
                3 => 600 * 1024,
                _ => 40 + i * 37,
            };
            let bytes: Vec<u8> = (0..len).map(|k| b"0123456789abcdef,\n"[(k * 7 + i) % 18]).collect();
            (format!("out/order_{i:03}.csv"), bytes)
        })
        .collect()
}

fn refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect()
}

fn sessions_accepted(srv: &TestServer) -> usize {
    match srv {
        TestServer::Sshd(s) => s.log().lines().filter(|l| l.contains("Accepted publickey")).count(),
        TestServer::Russh(_) => unreachable!(),
    }
}

#[test]
fn batch_writes_exact_bytes_over_several_sessions_and_replaces_nothing() {
    let Some(srv) = sshd_or_skip("batch_writes_exact_bytes_over_several_sessions_and_replaces_nothing") else {
        return;
    };
    let root = srv.local_root();
    let out = root.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("order_007.csv"), b"theirs").unwrap();
    let files = batch(80);
    let want: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, b)| {
            (
                p.trim_start_matches("out/").to_string(),
                if p.ends_with("_007.csv") { b"theirs".to_vec() } else { b.clone() },
            )
        })
        .collect();

    // A reader watching the folder throughout: any name it sees must hold the whole file.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, out, want) = (stop.clone(), out.clone(), want.clone());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            let mut looks = 0;
            while !stop.load(Ordering::SeqCst) {
                let (seen, _) = listing(&out);
                for (name, bytes) in seen {
                    if want.get(&name) != Some(&bytes) {
                        bad.push(format!("{name}: {} bytes", bytes.len()));
                    }
                }
                looks += 1;
            }
            (bad, looks)
        })
    };
    let before = sessions_accepted(&srv);
    let mut cfg = srv.config();
    cfg.max_sessions = 4;
    let mut d = SftpDrop::connect(cfg.clone()).unwrap();
    let results = d.write_many(&refs(&files));
    stop.store(true, Ordering::SeqCst);
    let (bad, looks) = watcher.join().unwrap();
    assert!(bad.is_empty(), "a final name showed partial or foreign content: {bad:?}");
    assert!(looks > 1, "the watcher looked during the batch");

    assert_eq!(results.len(), files.len());
    for (i, r) in results.iter().enumerate() {
        match r {
            Err(e) if i == 7 => assert_eq!(e.kind, DropErrorKind::AlreadyExists, "{e}"),
            Err(e) => panic!("file {i}: {e}"),
            Ok(()) => assert_ne!(i, 7, "an existing file was reported written"),
        }
    }
    let (got, dots) = listing(&out);
    assert_eq!(got, want, "exact bytes, the existing file untouched");
    assert!(dots.is_empty(), "temp files left: {dots:?}");
    let opened = sessions_accepted(&srv) - before;
    assert!((2..=4).contains(&opened), "several sessions, within max_sessions = 4: {opened}\n{}", srv_log(&srv));

    // The same names again, other bytes: nothing is replaced, over the sessions kept open.
    let again: Vec<(String, Vec<u8>)> = files.iter().map(|(p, _)| (p.clone(), b"second".to_vec())).collect();
    let results = d.write_many(&refs(&again));
    assert!(results.iter().all(|r| r.as_ref().is_err_and(|e| e.kind == DropErrorKind::AlreadyExists)), "{results:?}");
    assert_eq!(listing(&out), (want, vec![]));
    assert_eq!(sessions_accepted(&srv) - before, opened, "the second batch reused the sessions");
}

fn srv_log(srv: &TestServer) -> String {
    match srv {
        TestServer::Sshd(s) => s.log(),
        TestServer::Russh(_) => String::new(),
    }
}

#[test]
fn a_link_cut_mid_batch_leaves_nothing_half_written_and_the_next_batch_completes() {
    let Some(srv) = sshd_or_skip("a_link_cut_mid_batch_leaves_nothing_half_written_and_the_next_batch_completes")
    else {
        return;
    };
    let root = srv.local_root();
    let out = root.join("out");
    let relay = Relay::start(srv.port(), Duration::from_millis(2));
    let mut cfg = srv.config();
    record_host_key(&cfg.known_hosts, "127.0.0.1", relay.port, srv.host_key()).unwrap();
    let direct = cfg.clone();
    cfg.port = relay.port;
    cfg.max_sessions = 4;
    cfg.op_timeout = Duration::from_secs(5);
    let files = batch(240);
    let want: BTreeMap<String, Vec<u8>> =
        files.iter().map(|(p, b)| (p.trim_start_matches("out/").to_string(), b.clone())).collect();

    let mut d = SftpDrop::connect(cfg).unwrap();
    let cutter = {
        let out = out.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if fs::read_dir(&out).map(|r| r.count()).unwrap_or(0) >= 30 {
                    relay.cut();
                    return relay;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("the batch never got 30 files in");
        })
    };
    let results = d.write_many(&refs(&files));
    let relay = cutter.join().unwrap();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(ok > 0 && !failed.is_empty(), "cut in the middle: {ok} written, {} failed", failed.len());
    assert!(failed.iter().all(|e| e.kind == DropErrorKind::Unavailable), "an outage, for the next run: {failed:?}");

    // Whatever has its final name is whole; the rest is at most a hidden temp file of ours.
    let (got, dots) = listing(&out);
    for (name, bytes) in &got {
        assert_eq!(Some(bytes), want.get(name), "{name} is under its final name but not whole");
    }
    for (i, r) in results.iter().enumerate() {
        if r.is_ok() {
            assert!(got.contains_key(files[i].0.trim_start_matches("out/")), "file {i} reported written");
        }
    }
    assert!(dots.iter().all(|n| is_temp_of_ours(n)), "only our hidden temp names: {dots:?}");

    // The link is back: the same batch again writes what is missing and replaces nothing.
    relay.heal();
    let mut d2 = SftpDrop::connect(direct).unwrap();
    let results = d2.write_many(&refs(&files));
    for r in &results {
        assert!(r.as_ref().is_ok() || r.as_ref().is_err_and(|e| e.kind == DropErrorKind::AlreadyExists), "{r:?}");
    }
    let already = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(already, got.len(), "exactly the files already there are left alone");
    let (got, _) = listing(&out);
    assert_eq!(got, want, "every file once, exact bytes");
}

/// The order download over a link that is cut while its order files are written: the run ends
/// with the drop unavailable, the next run sends the rest, and every fulfillment has exactly
/// one order file and one record (a third run sends nothing).
#[test]
fn an_order_download_cut_mid_batch_completes_on_the_next_run_without_duplicates() {
    let Some(srv) = sshd_or_skip("an_order_download_cut_mid_batch_completes_on_the_next_run_without_duplicates") else {
        return;
    };
    let n = 150;
    let products: Vec<_> =
        (0..10).map(|i| json!({"sku": format!("BAT-{i:02}"), "name": format!("Item {i}"), "stock": 1000})).collect();
    let orders: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "local_id": format!("W{i:04}"), "po_num": format!("W{i:04}"), "order_date": "2024-05-01T09:30:00Z",
                "total": "10.00", "currency_iso": "USD", "shipping_speed": "Standard",
                "line_items": [{"sku": format!("BAT-{:02}", i % 10), "quantity": "1", "price": "10.00"}],
                "shipping_address": {"contact": format!("Customer {i}"), "street1": "1 Main St", "city": "Portland",
                                     "state": "OR", "zip": "97201", "country_iso": "US"}
            })
        })
        .collect();
    let sim = sim::start_in_background(SimOptions {
        token: bridge::TOKEN.into(),
        seed: Some(Seed::Json(json!({ "products": products, "sales_orders": orders }))),
        ..Default::default()
    })
    .unwrap();
    let relay = Relay::start(srv.port(), Duration::from_millis(2));
    let cfg = srv.config();
    record_host_key(&cfg.known_hosts, "127.0.0.1", relay.port, srv.host_key()).unwrap();
    let SftpAuth::Key { path: key, .. } = &cfg.auth else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let config = bridge::write_config(
        dir.path(),
        &format!("sftp://{}@127.0.0.1:{}{}", cfg.user, relay.port, cfg.root),
        &sim.base_url(),
        &format!(
            "sftp_key_file = \"{}\"\nknown_hosts = \"{}\"\nsftp_max_sessions = 4\n",
            key.display(),
            cfg.known_hosts.display()
        ),
    );
    let config = bridge::load(&config);
    let orders_dir = srv.local_root().join("outbound/orders");

    let cutter = {
        let orders_dir = orders_dir.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                if fs::read_dir(&orders_dir).map(|r| r.count()).unwrap_or(0) >= 20 {
                    relay.cut();
                    return relay;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("the download never got 20 order files in");
        })
    };
    let r1 = run_cycle(&config, &[], Parts { inbound: false, download: true });
    let relay = cutter.join().unwrap();
    let a1 = &r1.accounts[0];
    assert!(a1.orders_sent < n as u64, "cut before the end: {a1:?}");
    assert!(!a1.pending.is_empty() || !a1.fatal.is_empty(), "the outage is reported: {a1:?}");
    let (got, dots) = listing(&orders_dir);
    assert!(dots.iter().all(|d| is_temp_of_ours(d)), "{dots:?}");
    for (name, bytes) in &got {
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.lines().count() >= 2 && text.ends_with('\n'), "{name} is whole: {text:?}");
    }

    relay.heal();
    let r2 = run_cycle(&config, &[], Parts { inbound: false, download: true });
    let a2 = &r2.accounts[0];
    assert!(a2.pending.is_empty() && a2.fatal.is_empty(), "{a2:?}");
    assert_eq!(a1.orders_sent + a2.orders_sent, n as u64, "every fulfillment recorded once: {a1:?} {a2:?}");
    let (got, _) = listing(&orders_dir);
    assert_eq!(got.len(), n, "one order file per fulfillment: {:?}", got.keys().collect::<Vec<_>>());
    let r3 = run_cycle(&config, &[], Parts { inbound: false, download: true });
    assert_eq!(r3.accounts[0].orders_sent, 0, "nothing sent twice: {:?}", r3.accounts[0]);
    assert_eq!(listing(&orders_dir).0.len(), n);
}
