//! Whole cycles (`engine::run_cycle`, what `run --once` does) over sFTP against both test
//! servers, compared with the same cycles over a local drop; refusals, settling, markers,
//! injected faults and hostile names at the cycle level.

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

use bridge::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use stitch_bridge::drop::sftp::{record_host_key, SftpAuth};
use stitch_bridge::engine::{exit, run_cycle, Parts, RunReport};
use support::TestServer;

/// The account lines for an sFTP drop on `srv` (key auth, trusted host key).
fn sftp_account(srv: &TestServer) -> (String, String) {
    let cfg = srv.config();
    let SftpAuth::Key { path, .. } = &cfg.auth else { unreachable!() };
    let drop = format!("sftp://{}@127.0.0.1:{}{}", cfg.user, cfg.port, cfg.root);
    let extra = format!(
        "sftp_key_file = \"{}\"\nknown_hosts = \"{}\"\nsftp_max_sessions = 4\n",
        path.display(),
        cfg.known_hosts.display()
    );
    (drop, extra)
}

fn faults(srv: &TestServer) -> &support::russh_server::Faults {
    match srv {
        TestServer::Russh(s) => &s.faults,
        TestServer::Sshd(_) => unreachable!(),
    }
}

fn one(r: &RunReport) -> &stitch_bridge::engine::AccountReport {
    &r.accounts[0]
}

/// Inventory + orders, then the warehouse's shipments, then a repeat that must change nothing.
/// Returns the drop's files, the outputs' contents and the simulator's state.
fn full_scenario(
    root: &Path,
    config: &Path,
    sim: &stitch_bridge::sim::BackgroundSim,
) -> (Vec<String>, Vec<(String, String)>, String) {
    let config = load(config);
    drop_file(root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    drop_file(root, "inbound/orders/orders.csv", ORDERS.as_bytes());
    let r1 = run_cycle(&config, &[], Parts::ALL);
    assert!(one(&r1).pending.is_empty() && one(&r1).fatal.is_empty(), "{r1:?}");
    assert!(one(&r1).orders_sent > 0, "{r1:?}");
    let ships = shipments_for(&root.join("outbound/orders"));
    drop_file(root, "inbound/shipments/ships.csv", ships.as_bytes());
    let r2 = run_cycle(&config, &[], Parts::ALL);
    assert!(one(&r2).pending.is_empty() && one(&r2).fatal.is_empty(), "{r2:?}");
    assert_eq!(one(&r2).files.len(), 1, "{r2:?}");
    let r3 = run_cycle(&config, &[], Parts::ALL);
    assert_eq!((one(&r3).write_requests, one(&r3).files.len()), (0, 0), "repeat cycle is idle: {r3:?}");
    (tree(root), outputs(root), sim_picture(sim))
}

fn local_scenario() -> (Vec<String>, Vec<(String, String)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let root = dir.path().join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = write_config(dir.path(), root.to_str().unwrap(), &sim.base_url(), "settle_seconds = 0");
    full_scenario(&root, &cfg, &sim)
}

fn full_cycle_matches_local(srv: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(srv);
    let cfg = write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}"));
    let got = full_scenario(&srv.local_root(), &cfg, &sim);
    let want = local_scenario();
    assert!(got.0.iter().any(|p| p.starts_with("archive/DATE/ships")), "{:?}", got.0);
    assert_eq!(got.0, want.0, "{}: same files on the drop", srv.name());
    assert_eq!(got.1, want.1, "{}: same result/error/outbound contents", srv.name());
    assert_eq!(got.2, want.2, "{}: same Stitch state and write counts", srv.name());
}

#[test]
fn full_cycle_russh_matches_local() {
    full_cycle_matches_local(&TestServer::russh());
}

#[test]
fn full_cycle_sshd_matches_local() {
    let Some(srv) = TestServer::sshd() else {
        return;
    };
    full_cycle_matches_local(&srv);
}

// ------------------------------------------------------------------------------------------
// refusals: the account reports the problem, the files stay where they are

fn assert_refused(srv: &TestServer, extra: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, _) = sftp_account(srv);
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}")));
    let before = tree(&srv.local_root());
    let r = run_cycle(&cfg, &[], Parts::ALL);
    let a = one(&r);
    assert_eq!(r.exit_code(), exit::ATTENTION, "{r:?}");
    let msg = a.attention.as_ref().map(|x| x.message.clone()).unwrap_or_default();
    for n in needles {
        assert!(msg.contains(n), "{}: {n:?} missing from {msg}", srv.name());
    }
    assert!(a.files.is_empty() && a.write_requests == 0, "{a:?}");
    assert_eq!(tree(&srv.local_root()), before, "drop untouched");
}

fn refusals(srv: &TestServer) {
    drop_file(&srv.local_root(), "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let cfg = srv.config();
    let SftpAuth::Key { path: key, .. } = &cfg.auth else { unreachable!() };
    let fp = stitch_bridge::drop::known_hosts::fingerprint(srv.host_key());
    let kh = |p: &Path| format!("known_hosts = \"{}\"\n", p.display());
    let key_line = |p: &Path| format!("sftp_key_file = \"{}\"\n", p.display());

    // Unknown host key: nothing recorded, nothing recorded afterwards either.
    let empty = srv.scratch().join("kh_empty");
    assert_refused(srv, &(key_line(key) + &kh(&empty)), &["not trusted", &fp, "`stitch-bridge trust wh`"]);
    assert!(!empty.exists(), "no trust on first use");

    // Changed host key.
    let changed = srv.scratch().join("kh_changed");
    let other = support::russh_server::stranger_public_blob();
    record_host_key(&changed, "127.0.0.1", srv.port(), &other).unwrap();
    assert_refused(srv, &(key_line(key) + &kh(&changed)), &["CHANGED", &fp, "`stitch-bridge trust wh --replace`"]);

    // Wrong client key.
    let stranger = support::russh_server::stranger_key(srv.scratch());
    assert_refused(srv, &(key_line(&stranger) + &kh(&cfg.known_hosts)), &["refused this key"]);
}

#[test]
fn refusals_russh() {
    let srv = TestServer::russh();
    refusals(&srv);
    // Wrong password: the message says so and never contains the password.
    let secret = "wrong-pw-9f3a";
    // Each test process sets this variable once, before any cycle reads it.
    std::env::set_var("SB_CYCLE_TEST_WRONG_PW", secret);
    let cfg = srv.config();
    let extra =
        format!("sftp_password_env = \"SB_CYCLE_TEST_WRONG_PW\"\nknown_hosts = \"{}\"\n", cfg.known_hosts.display());
    assert_refused(&srv, &extra, &["password", "refused"]);
    let dir = tempfile::tempdir().unwrap();
    let (drop, _) = sftp_account(&srv);
    let c = load(&write_config(dir.path(), &drop, "http://127.0.0.1:9", &extra));
    let r = run_cycle(&c, &[], Parts::ALL);
    assert!(!format!("{r:?}").contains(secret));
}

#[test]
fn refusals_sshd() {
    let Some(srv) = TestServer::sshd() else {
        return;
    };
    refusals(&srv);
}

/// What only a person can fix is told apart from an outage, at connect and mid-cycle: nothing
/// listening is pending (exit 4) and says so; a server that answers a reconnect during the
/// cycle with another host key (reinstalled, or an impostor) needs attention as a changed host
/// key (exit 5) at once, not as a permission problem that waits for a second run.
#[test]
fn an_unreachable_server_is_pending_and_a_key_changed_mid_cycle_needs_attention() {
    let srv = TestServer::russh();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let extra = format!("settle_seconds = 0\n{extra}");
    drop_file(&srv.local_root(), "inbound/inventory/stock.csv", INVENTORY.as_bytes());

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    std::mem::drop(free);
    let gone = drop.replace(&format!(":{}/", srv.port()), &format!(":{port}/"));
    assert_ne!(gone, drop);
    let dir = tempfile::tempdir().unwrap();
    let r = run_cycle(&load(&write_config(dir.path(), &gone, &sim.base_url(), &extra)), &[], Parts::ALL);
    assert_eq!(r.exit_code(), exit::PENDING, "{r:?}");
    let a = one(&r);
    assert!(a.attention.is_none(), "an outage is not a person's problem: {a:?}");
    assert!(a.pending.iter().any(|p| p.starts_with("drop unavailable:") && p.contains(&port.to_string())), "{a:?}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &extra));
    faults(&srv).replace_server_at_opendir("/drop/inbound/inventory");
    let r = run_cycle(&cfg, &[], Parts::ALL);
    assert!(faults(&srv).replaced(), "the server was replaced during the cycle");
    assert_eq!(r.exit_code(), exit::ATTENTION, "{r:?}");
    let a = one(&r);
    let att = a.attention.as_ref().expect("needs attention");
    assert_eq!(att.reason, stitch_bridge::engine::attention::Reason::HostKeyChanged, "{att:?}");
    assert!(att.message.contains("CHANGED") && att.message.contains("`stitch-bridge trust wh --replace`"), "{att:?}");
    assert!(a.files.is_empty() && a.write_requests == 0, "{a:?}");
    assert!(srv.local_root().join("inbound/inventory/stock.csv").exists());
    // The next run meets the new key when it connects: still the same problem.
    let r = run_cycle(&cfg, &[], Parts::ALL);
    assert_eq!(r.exit_code(), exit::ATTENTION, "{r:?}");
    assert_eq!(one(&r).attention.as_ref().map(|a| a.reason), Some(att.reason));
}

// ------------------------------------------------------------------------------------------
// settling and markers

/// A file that keeps growing is left alone until it stood still for `settle_seconds`.
fn growing_file(srv: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(srv);
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 1\n{extra}")));
    let path = srv.local_root().join("inbound/inventory/stock.csv");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (head, tail) = INVENTORY.split_at(INVENTORY.len() / 2);
    // An mtime in the future (a skewed uploader clock) never counts as old, so only our own
    // observations decide, however slow this machine is.
    let future = SystemTime::now() + Duration::from_secs(3600);
    let write = |text: &str| {
        fs::write(&path, text).unwrap();
        fs::File::options().write(true).open(&path).unwrap().set_modified(future).unwrap();
    };
    write(head);
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    assert!(one(&r).files.is_empty(), "first sight: not taken {r:?}");
    assert!(one(&r).settle_due_ms.is_some(), "a re-check is due: {r:?}");
    write(INVENTORY);
    let grown_at = Instant::now();
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    assert!(one(&r).files.is_empty(), "grew since the last poll: not taken {r:?}");
    assert!(path.exists() && tree(&srv.local_root()).iter().all(|p| !p.starts_with("results/")));
    let mut taken = None;
    assert!(wait_for(Duration::from_secs(20), || {
        let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
        if !one(&r).files.is_empty() {
            taken = Some(r);
        }
        taken.is_some()
    }));
    assert!(grown_at.elapsed() >= Duration::from_secs(1), "taken only after the settle time");
    let r = taken.unwrap();
    assert_eq!(one(&r).files[0].state, "archived", "{r:?}");
    // The whole file was read, not the half seen first.
    let result = fs::read_to_string(srv.local_root().join("results/stock.csv.result.csv")).unwrap();
    assert!(result.contains("DOOHICKEY") && !tail.is_empty(), "{result}");
}

#[test]
fn growing_file_russh() {
    growing_file(&TestServer::russh());
}

#[test]
fn growing_file_sshd() {
    let Some(srv) = TestServer::sshd() else {
        return;
    };
    growing_file(&srv);
}

#[test]
fn marker_files_russh() {
    let srv = TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let cfg = load(&write_config(
        dir.path(),
        &drop,
        &sim.base_url(),
        &format!("settle_seconds = 3600\nmarker_suffixes = [\".done\"]\n{extra}"),
    ));
    let root = srv.local_root();
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    assert!(one(&r).files.is_empty(), "no marker yet: {r:?}");
    assert!(root.join("inbound/inventory/stock.csv").exists());
    // The marker is the signal: taken at once even though settle_seconds is an hour.
    drop_file(&root, "inbound/inventory/stock.csv.done", b"");
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    assert_eq!(one(&r).files.len(), 1, "{r:?}");
    assert_eq!(one(&r).files[0].state, "archived");
    let t = tree(&root);
    assert!(
        t.contains(&"archive/DATE/stock.csv".to_string()) && t.contains(&"results/stock.csv.result.csv".to_string()),
        "{t:?}"
    );
    assert!(!t.iter().any(|p| p.ends_with(".done")), "marker removed: {t:?}");
}

// ------------------------------------------------------------------------------------------
// faults: transient failure, nothing half written, the next run completes without duplicates

/// A big valid inventory file (the seeded SKUs with long names) so reading takes several
/// SFTP READs.
fn big_inventory() -> String {
    let mut s = String::from("sku,quantity,name\n");
    for (i, sku) in ["WIDGET-RED", "WIDGET-BLUE", "GADGET-1", "CABLE-USB"].iter().enumerate() {
        s += &format!("{sku},{},{}\n", 50 + i, "n".repeat(4000));
    }
    for i in 0..40 {
        s += &format!("NEW-{i:03},{i},{}\n", "x".repeat(2000));
    }
    s
}

/// Run the inbound files once with `fault` set (expect a transient stop), then without.
/// Returns the simulator picture after recovery.
fn fault_run(fault: Option<&dyn Fn(&support::russh_server::Faults)>) -> (String, Vec<String>) {
    let srv = TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}")));
    let root = srv.local_root();
    drop_file(&root, "inbound/inventory/stock.csv", big_inventory().as_bytes());
    drop_file(&root, "inbound/orders/orders.csv", ORDERS.as_bytes());
    let inbound = Parts { inbound: true, download: false };
    if let Some(f) = fault {
        // Lay out the folders first so the fault hits file work, not set-up.
        run_cycle(&cfg, &[], Parts { inbound: false, download: false });
        f(faults(&srv));
        let r = run_cycle(&cfg, &[], inbound);
        assert_eq!(r.exit_code(), exit::PENDING, "{r:?}");
        assert!(!one(&r).pending.is_empty(), "{r:?}");
        let t = tree(&root);
        assert!(visible_temp_files(&root).is_empty(), "{t:?}");
        // Every file is either still in inbound (with no result) or finished (with its result).
        for name in ["inventory/stock.csv", "orders/orders.csv"] {
            let base = name.rsplit('/').next().unwrap();
            let in_inbound = t.contains(&format!("inbound/{name}"));
            let archived = t.contains(&format!("archive/DATE/{base}"));
            assert!(in_inbound != archived, "{name} in exactly one place: {t:?}");
            if archived {
                assert!(t.contains(&format!("results/{base}.result.csv")), "{t:?}");
            }
        }
        assert!(t.contains(&"inbound/inventory/stock.csv".to_string()), "first file unfinished: {t:?}");
        let ff = faults(&srv);
        ff.fail_rename.store(false, Ordering::SeqCst);
        ff.disk_full_after.store(0, Ordering::SeqCst);
        ff.drop_at_read.store(0, Ordering::SeqCst);
    }
    let r = run_cycle(&cfg, &[], inbound);
    assert!(one(&r).pending.is_empty() && one(&r).fatal.is_empty(), "{r:?}");
    let r = run_cycle(&cfg, &[], inbound);
    assert_eq!(one(&r).write_requests, 0, "{r:?}");
    let t = tree(&root);
    assert!(!t.iter().any(|p| p.starts_with("inbound/")), "{t:?}");
    assert!(
        t.contains(&"results/stock.csv.result.csv".to_string())
            && t.contains(&"results/orders.csv.result.csv".to_string()),
        "{t:?}"
    );
    assert!(!t.iter().any(|p| p.starts_with("rejected/")), "a transient fault never rejects a file: {t:?}");
    (sim_picture(&sim), t)
}

#[test]
fn faults_mid_transfer_recover_without_duplicates() {
    let clean = fault_run(None);
    type Inject = Box<dyn Fn(&support::russh_server::Faults)>;
    let cases: Vec<(&str, Inject)> = vec![
        (
            "drop_at_read",
            Box::new(|f: &support::russh_server::Faults| f.drop_at_read.store(f.reads() + 2, Ordering::SeqCst)),
        ),
        ("disk_full_after", Box::new(|f: &support::russh_server::Faults| f.disk_full_after.store(1, Ordering::SeqCst))),
        ("fail_rename", Box::new(|f: &support::russh_server::Faults| f.fail_rename.store(true, Ordering::SeqCst))),
    ];
    for (name, f) in cases {
        let got = fault_run(Some(f.as_ref()));
        assert_eq!(got.0, clean.0, "{name}: same Stitch state and write counts as a clean run");
        assert_eq!(got.1, clean.1, "{name}: same files on the drop as a clean run");
    }
}

/// The server goes away between a file's remote writes and its result upload.
#[test]
fn connection_dropped_mid_upload_recovers() {
    let srv = TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}")));
    let root = srv.local_root();
    drop_file(&root, "inbound/inventory/stock.csv", big_inventory().as_bytes());
    run_cycle(&cfg, &[], Parts { inbound: false, download: false });
    // Uploads fail for good (disk full) and every connection is cut when they do: the worst
    // case of a server dying mid-upload.
    let f = faults(&srv);
    f.disk_full_after.store(1, Ordering::SeqCst);
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    f.drop_connections();
    assert_eq!(r.exit_code(), exit::PENDING, "{r:?}");
    let writes_after_first = sim.counters().writes_applied;
    assert!(visible_temp_files(&root).is_empty() && root.join("inbound/inventory/stock.csv").exists());
    f.disk_full_after.store(0, Ordering::SeqCst);
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    assert!(one(&r).pending.is_empty() && one(&r).files.len() == 1, "{r:?}");
    assert_eq!(sim.counters().writes_applied, writes_after_first, "no remote write repeated");
    assert!(root.join("results/stock.csv.result.csv").exists());
}

/// The connection dies while the original is read again for its error file: that is an
/// outage (pending, nothing moved, no error file), never an error file saying the file could
/// not be read. The next run writes the real one.
#[test]
fn a_connection_lost_while_the_error_file_is_built_leaves_the_file_for_the_next_run() {
    let with_errors = format!("{INVENTORY}NOT-A-NUMBER-SKU,many\n");
    let srv = TestServer::russh();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let extra = format!("settle_seconds = 0\n{extra}");
    let root = srv.local_root();
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &extra));
    drop_file(&root, "inbound/inventory/stock.csv", with_errors.as_bytes());
    // Read three times: parsed, its widest rejected row found, its error file built.
    faults(&srv).drop_at_read_of("/drop/inbound/inventory/stock.csv", 3);
    let r = run_cycle(&cfg, &[], Parts::ALL);
    assert_eq!(r.exit_code(), exit::PENDING, "{r:?}");
    assert!(one(&r).files.is_empty(), "{r:?}");
    assert!(one(&r).pending.iter().any(|p| p.contains("inbound/inventory/stock.csv")), "names the file: {r:?}");
    assert!(root.join("inbound/inventory/stock.csv").exists(), "left for the next run");
    assert!(!root.join("errors/stock.csv.errors.csv").exists(), "no error file from a broken read");

    let r = run_cycle(&cfg, &[], Parts::ALL);
    assert_eq!(one(&r).files.len(), 1, "{r:?}");
    let errors = fs::read_to_string(root.join("errors/stock.csv.errors.csv")).unwrap();
    assert!(errors.contains("NOT-A-NUMBER-SKU") && !errors.contains("read_error"), "{errors}");
    assert!(!root.join("inbound/inventory/stock.csv").exists());
}

// ------------------------------------------------------------------------------------------
// hostile names

#[test]
fn hostile_names_rejected_russh() {
    let srv = TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let cfg = load(&write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}")));
    let root = srv.local_root();
    for n in ["bell\u{7}.csv", "new\nline.csv", "a..b.csv"] {
        drop_file(&root, &format!("inbound/inventory/{n}"), INVENTORY.as_bytes());
    }
    let r = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    let a = one(&r);
    assert_eq!(a.write_requests, 0, "nothing sent for refused names: {a:?}");
    assert_eq!(a.files.iter().filter(|f| f.state == "rejected" && f.message.contains("refused")).count(), 3, "{a:?}");
    let t = tree(&root);
    assert!(!t.iter().any(|p| p.starts_with("inbound/")), "{t:?}");
    for safe in ["bell_.csv", "new_line.csv", "a_b.csv"] {
        assert!(t.contains(&format!("rejected/{safe}")), "{safe}: {t:?}");
        let res = fs::read_to_string(root.join(format!("results/{safe}.result.csv"))).unwrap();
        assert!(res.contains("file name refused"), "{res}");
    }
    assert!(t.iter().all(|p| !p.chars().any(|c| c.is_control())), "{t:?}");
}

// ------------------------------------------------------------------------------------------
// trust

fn trust(config: &Path, account: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .arg("trust")
        .arg(account)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn trust_flow(srv: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = srv.config();
    let SftpAuth::Key { path: key, .. } = &cfg.auth else { unreachable!() };
    let kh: PathBuf = dir.path().join("kh/known_hosts");
    let drop = format!("sftp://{}@127.0.0.1:{}{}", cfg.user, cfg.port, cfg.root);
    let extra = format!("sftp_key_file = \"{}\"\nknown_hosts = \"{}\"\n", key.display(), kh.display());
    let config = write_config(dir.path(), &drop, "http://127.0.0.1:9", &extra);
    let fp = stitch_bridge::drop::known_hosts::fingerprint(srv.host_key());

    // No terminal and no --yes: shows the fingerprint, records nothing.
    let (code, out) = trust(&config, "wh", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&fp) && out.contains("ssh-ed25519") && out.contains("--yes"), "{out}");
    assert!(!kh.exists());

    let (code, out) = trust(&config, "wh", &["--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Recorded"), "{out}");
    stitch_bridge::drop::sftp::SftpDrop::connect({
        let mut c = cfg.clone();
        c.known_hosts = kh.clone();
        c
    })
    .unwrap();
    let (code, out) = trust(&config, "wh", &["--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already recorded"), "{out}");
    assert_eq!(fs::read_to_string(&kh).unwrap().lines().count(), 1);

    // A different key on file: refused loudly, file untouched; --replace swaps it.
    let other = support::russh_server::stranger_public_blob();
    fs::remove_file(&kh).unwrap();
    record_host_key(&kh, "127.0.0.1", srv.port(), &other).unwrap();
    let before = fs::read_to_string(&kh).unwrap();
    let (code, out) = trust(&config, "wh", &["--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENT") && out.contains("--replace"), "{out}");
    assert_eq!(fs::read_to_string(&kh).unwrap(), before);
    let (code, out) = trust(&config, "wh", &["--yes", "--replace"]);
    assert_eq!(code, 0, "{out}");
    let after = fs::read_to_string(&kh).unwrap();
    assert_eq!(after.lines().count(), 1, "{after}");
    assert!(!after.contains(before.split_whitespace().nth(2).unwrap()), "old key gone: {after}");
}

#[test]
fn trust_russh() {
    trust_flow(&TestServer::russh());
}

#[test]
fn trust_sshd() {
    let Some(srv) = TestServer::sshd() else {
        return;
    };
    trust_flow(&srv);
}

#[test]
fn trust_refuses_local_drops() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "drop", "http://127.0.0.1:9", "");
    let (code, out) = trust(&config, "wh", &["--yes"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not use an sftp"), "{out}");
}

// ------------------------------------------------------------------------------------------
// permission denied on archive/

/// `run --once` of the real binary; exit code and stdout + stderr.
fn run_once(config: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .args(["run", "--once"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Inventory and orders through `run --once` on the russh server. With `deny`, `archive/`
/// exists but refuses writes (SSH_FX_PERMISSION_DENIED; with `date_folder` today's folder
/// exists too, so the move's RENAME is refused rather than its MKDIR) for one run, which must
/// report it and lose nothing; the next runs, allowed again, finish. Returns the drop's files,
/// the outputs' contents and the simulator's state (with its write counts).
fn archive_denied_run(deny: bool, date_folder: bool) -> (Vec<String>, Vec<(String, String)>, String) {
    let srv = TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let (drop, extra) = sftp_account(&srv);
    let config = write_config(dir.path(), &drop, &sim.base_url(), &format!("settle_seconds = 0\n{extra}"));
    let root = srv.local_root();
    // The folders exist, as on a server where archive/ belongs to someone else.
    run_cycle(&load(&config), &[], Parts { inbound: false, download: false });
    if date_folder {
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        fs::create_dir_all(root.join("archive").join(today)).unwrap();
    }
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    drop_file(&root, "inbound/orders/orders.csv", ORDERS.as_bytes());
    if deny {
        let f = faults(&srv);
        f.deny_writes_under(Some("/drop/archive"));
        let (code, out) = run_once(&config);
        assert_eq!(code, exit::PENDING, "work left for the next run: {out}");
        assert!(
            out.contains("PENDING") && out.contains("permission denied") && out.contains("/drop/archive/"),
            "the report says the archive refused: {out}"
        );
        assert!(f.denied() > 0, "the fault was hit");
        let t = tree(&root);
        assert!(visible_temp_files(&root).is_empty(), "{t:?}");
        assert!(
            !t.iter().any(|p| stitch_bridge::drop::is_temp_of_ours(p.rsplit('/').next().unwrap())),
            "no temp file left, hidden or not: {t:?}"
        );
        assert!(!t.iter().any(|p| p.starts_with("archive/")), "nothing in archive/: {t:?}");
        assert!(!t.iter().any(|p| p.starts_with("rejected/")), "a refusal of the server never rejects a file: {t:?}");
        // Nothing lost: both files still in inbound/, unchanged; the first one's work is done
        // up to its move (its result file is written, once), the second one was not started.
        assert_eq!(fs::read(root.join("inbound/inventory/stock.csv")).unwrap(), INVENTORY.as_bytes());
        assert_eq!(fs::read(root.join("inbound/orders/orders.csv")).unwrap(), ORDERS.as_bytes());
        let results: Vec<&String> = t.iter().filter(|p| p.starts_with("results/")).collect();
        assert_eq!(results, ["results/stock.csv.result.csv"], "{t:?}");
        let writes = sim.counters().writes_applied;
        assert!(writes.values().sum::<u64>() > 0, "the inventory was applied before the move: {writes:?}");
        f.deny_writes_under(None);
    }
    let (code, out) = run_once(&config);
    assert_eq!(code, exit::OK, "{out}");
    let (code, out) = run_once(&config);
    assert_eq!(code, exit::OK, "{out}");
    assert!(out.contains("(0 writes)"), "a further run writes nothing: {out}");
    let t = tree(&root);
    assert!(!t.iter().any(|p| p.starts_with("inbound/")), "{t:?}");
    assert!(
        t.contains(&"archive/DATE/stock.csv".to_string())
            && t.contains(&"archive/DATE/orders.csv".to_string())
            && t.contains(&"results/stock.csv.result.csv".to_string())
            && t.contains(&"results/orders.csv.result.csv".to_string()),
        "{t:?}"
    );
    assert!(visible_temp_files(&root).is_empty(), "{t:?}");
    (t, outputs(&root), sim_picture(&sim))
}

#[test]
fn permission_denied_on_archive_is_reported_and_retried_russh() {
    let clean = archive_denied_run(false, false);
    for date_folder in [false, true] {
        let got = archive_denied_run(true, date_folder);
        assert_eq!(
            got.0, clean.0,
            "date folder {date_folder}: same files on the drop as a clean run (no duplicate result)"
        );
        assert_eq!(got.1, clean.1, "date folder {date_folder}: same result/error/outbound contents");
        assert_eq!(
            got.2, clean.2,
            "date folder {date_folder}: same Stitch state and write counts (nothing written twice)"
        );
    }
}
