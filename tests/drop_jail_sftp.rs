//! The drop is a jail, on the OpenSSH sFTP server: linked folders stop the account, entries
//! that are not regular files and names the bridge cannot carry through are moved aside with a
//! result, a file that changes while read waits, written files get 0644 (or `file_mode`), and
//! at the drop level a file swapped for a link after listing is not read.

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

use bridge::*;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch_bridge::drop::sftp::{SftpAuth, SftpDrop};
use stitch_bridge::drop::{DropError, DropErrorKind, EntryKind, Transport};
use support::TestServer;

const STOCK: &str = "sku,quantity\nWIDGET-RED,7\n";

/// One account on the sshd's drop; `extra` goes into the account table.
struct World {
    _srv: TestServer,
    _sim: stitch_bridge::sim::BackgroundSim,
    dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

impl World {
    fn new(extra: &str) -> Option<World> {
        let srv = TestServer::sshd()?;
        let sim = sim();
        let dir = tempfile::tempdir().unwrap();
        let cfg = srv.config();
        let SftpAuth::Key { path, .. } = &cfg.auth else { unreachable!() };
        let drop = format!("sftp://{}@127.0.0.1:{}{}", cfg.user, cfg.port, cfg.root);
        let account = format!(
            "settle_seconds = 0\nsftp_key_file = \"{}\"\nknown_hosts = \"{}\"\n{extra}",
            path.display(),
            cfg.known_hosts.display()
        );
        let config = write_config(dir.path(), &drop, &sim.base_url(), &account);
        let root = srv.local_root();
        Some(World { _srv: srv, _sim: sim, dir, config, root })
    }

    fn run(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(&self.config)
            .args(["run", "--once"])
            .env_remove("STITCH_BRIDGE_CONFIG")
            .env("STITCH_BRIDGE_LOG", "warn")
            .output()
            .unwrap()
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.p(rel))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let v = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask line");
    u32::from_str_radix(v.trim(), 8).unwrap()
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0)
        .unwrap();
}

// ------------------------------------------------------------------------------------------
// whole runs

fn linked_folder_stops_the_account(folder: &str) {
    let Some(w) = World::new("") else { return };
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.csv"), STOCK).unwrap();
    let link = w.p(folder);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(outside.path(), &link).unwrap();
    if folder != "inbound/inventory" {
        drop_file(&w.root, "inbound/inventory/stock.csv", STOCK.as_bytes());
    }
    let out = w.run();
    assert_eq!(code(&out), 5, "{folder}: needs attention: {}", text(&out));
    assert!(text(&out).contains(&format!("{folder} in the drop is a symbolic link")), "{folder}: {}", text(&out));
    assert_eq!(listing(outside.path()), vec!["secret.csv"], "{folder}: nothing planted or moved outside");
    assert!(w.names("rejected").is_empty(), "{folder}");
    if folder != "inbound/inventory" {
        assert!(w.p("inbound/inventory/stock.csv").exists(), "{folder}: the inbound file stays");
    }
}

#[test]
fn sftp_linked_results_folder() {
    linked_folder_stops_the_account("results");
}

#[test]
fn sftp_linked_errors_folder() {
    linked_folder_stops_the_account("errors");
}

#[test]
fn sftp_linked_inbound_folder() {
    linked_folder_stops_the_account("inbound/inventory");
}

#[test]
fn sftp_linked_outbound_folder() {
    linked_folder_stops_the_account("outbound/orders");
}

#[test]
fn sftp_linked_archive_date_folder() {
    linked_folder_stops_the_account(&format!("archive/{}", chrono::Utc::now().format("%Y-%m-%d")));
}

#[test]
fn sftp_entries_that_are_not_files_are_moved_aside() {
    let Some(w) = World::new("") else { return };
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.csv"), "sku,quantity\nSECRET-SKU,1\n").unwrap();
    drop_file(&w.root, "inbound/inventory/good.csv", STOCK.as_bytes());
    let inb = w.p("inbound/inventory");
    symlink(outside.path().join("secret.csv"), inb.join("link.csv")).unwrap();
    mkfifo(&inb.join("pipe.csv"));
    let _sock = std::os::unix::net::UnixListener::bind(inb.join("sock.csv")).unwrap();
    fs::create_dir(inb.join("sub")).unwrap();
    let out = w.run();
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert!(w.names("inbound/inventory").is_empty(), "{:?}", w.names("inbound/inventory"));
    assert_eq!(w.names("rejected"), vec!["link.csv", "pipe.csv", "sock.csv", "sub"]);
    assert!(fs::symlink_metadata(w.p("rejected/link.csv")).unwrap().file_type().is_symlink());
    for (name, what) in [
        ("link.csv", "a symbolic link"),
        ("pipe.csv", "a named pipe (FIFO)"),
        ("sock.csv", "a socket"),
        ("sub", "a folder"),
    ] {
        let res = fs::read_to_string(w.p(&format!("results/{name}.result.csv"))).unwrap();
        assert!(res.contains(what), "{name}: {res}");
    }
    assert_eq!(listing(outside.path()), vec!["secret.csv"]);
    let archive = w.names("archive");
    assert_eq!(archive.len(), 1);
    assert_eq!(w.names(&format!("archive/{}", archive[0])), vec!["good.csv"]);
}

#[test]
fn sftp_long_and_non_utf8_names_are_moved_aside() {
    let Some(w) = World::new("") else { return };
    let longest = format!("{}.csv", "l".repeat(235));
    let too_long = format!("{}.csv", "x".repeat(246));
    fs::create_dir_all(w.p("inbound/inventory")).unwrap();
    fs::write(w.p(&format!("inbound/inventory/{longest}")), STOCK).unwrap();
    fs::write(w.p(&format!("inbound/inventory/{too_long}")), STOCK).unwrap();
    fs::write(w.p("inbound/inventory").join(OsStr::from_bytes(b"bad-\xff.csv")), STOCK).unwrap();
    let out = w.run();
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert!(w.names("inbound/inventory").is_empty(), "{:?}", w.names("inbound/inventory"));
    let rejected = w.names("rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.contains(&"bad-\u{fffd}.csv".to_string()), "{rejected:?}");
    for n in &rejected {
        let res = fs::read_to_string(w.p(&format!("results/{n}.result.csv"))).unwrap();
        assert!(res.contains("file name refused"), "{res}");
    }
    assert!(w.p(&format!("results/{longest}.result.csv")).exists());
}

#[test]
fn sftp_a_file_growing_while_read_waits() {
    let Some(w) = World::new("") else { return };
    let path = w.p("inbound/inventory/growing.csv");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "sku,quantity\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            let mut n = 0u64;
            // A steady trickle (pacing, not synchronisation): a sleeping writer is woken
            // promptly on a busy machine, one that only yields can be starved.
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                writeln!(f, "SKU-{n},1").unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(&path).unwrap().len() < 512 {
        assert!(Instant::now() < deadline, "the writer never wrote");
        std::thread::yield_now();
    }
    let out = w.run();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(path.exists(), "still in inbound/: {}", text(&out));
    assert!(w.names("results").is_empty(), "{:?}", w.names("results"));
    // sFTP mtimes are whole seconds: a file still the same size and second could pass for
    // unchanged, so the second run starts once the mtime's second is over.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    while std::time::SystemTime::now().duration_since(mtime).unwrap_or_default() < Duration::from_secs(1) {
        std::thread::yield_now();
    }
    let out = w.run();
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert!(!path.exists(), "taken once it stood still: {}", text(&out));
}

#[test]
fn sftp_written_files_get_0644_or_file_mode() {
    for (extra, want) in [("", 0o644 & !umask()), ("file_mode = \"0660\"\n", 0o660)] {
        let Some(w) = World::new(extra) else { return };
        drop_file(&w.root, "inbound/inventory/stock.csv", b"sku,quantity\nWIDGET-RED,1\nWIDGET-BLUE,abc\n");
        let out = w.run();
        assert_eq!(code(&out), 1, "{}", text(&out));
        for f in ["results/stock.csv.result.csv", "errors/stock.csv.errors.csv"] {
            let mode = fs::metadata(w.p(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{extra:?} {f}: {mode:o}");
        }
        drop(w.dir);
    }
}

// ------------------------------------------------------------------------------------------
// the drop itself

#[test]
fn sftp_a_file_swapped_after_listing_is_not_read() {
    let Some(srv) = TestServer::sshd() else { return };
    let root = srv.local_root();
    fs::create_dir_all(root.join("in")).unwrap();
    let secret = srv.scratch().join("secret");
    fs::write(&secret, "the secret").unwrap();
    fs::write(root.join("in/a.csv"), "sku\n").unwrap();
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    let listed = d.list("in").unwrap().remove(0);
    assert_eq!(listed.kind, EntryKind::File);
    // Swapped for a link to the secret.
    fs::remove_file(root.join("in/a.csv")).unwrap();
    symlink(&secret, root.join("in/a.csv")).unwrap();
    let e = d.open_listed("in/a.csv", &listed).err().expect("not opened");
    assert_eq!(e.kind, DropErrorKind::Changed, "{e}");
    let e = d.open_read("in/a.csv").err().expect("a link is not read");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // Swapped for a FIFO: refused before the server would wait on it.
    fs::remove_file(root.join("in/a.csv")).unwrap();
    mkfifo(&root.join("in/a.csv"));
    let e = d.open_listed("in/a.csv", &listed).err().expect("not opened");
    assert_eq!(e.kind, DropErrorKind::Changed, "{e}");
    // A regular file again, as listed now: read.
    fs::remove_file(root.join("in/a.csv")).unwrap();
    fs::write(root.join("in/a.csv"), "sku\n").unwrap();
    let now = d.list("in").unwrap().remove(0);
    let mut s = String::new();
    d.open_listed("in/a.csv", &now).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "sku\n");
}

#[test]
fn sftp_linked_folders_are_refused_by_every_operation() {
    let Some(srv) = TestServer::sshd() else { return };
    let root = srv.local_root();
    fs::write(srv.scratch().join("x.csv"), "x").unwrap();
    symlink(srv.scratch(), root.join("results")).unwrap();
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    let esc = |e: DropError| match e.kind {
        DropErrorKind::Escape { link } => Some(link),
        _ => None,
    };
    assert_eq!(esc(d.list("results").unwrap_err()), Some("results".into()));
    assert_eq!(esc(d.write_atomic("results/r.csv", &mut &b"r"[..]).unwrap_err()), Some("results".into()));
    assert_eq!(esc(d.open_read("results/x.csv").err().unwrap()), Some("results".into()));
    assert_eq!(esc(d.mkdir_all("results/a/b").unwrap_err()), Some("results".into()));
    assert_eq!(esc(d.stat("results/x.csv").unwrap_err()), Some("results".into()));
    assert_eq!(esc(d.remove("results/x.csv").unwrap_err()), Some("results".into()));
    fs::write(root.join("a.csv"), "a").unwrap();
    assert_eq!(esc(d.rename_no_replace("a.csv", "results/a.csv").unwrap_err()), Some("results".into()));
    assert_eq!(
        listing(srv.scratch()).iter().filter(|n| n.ends_with(".csv")).count(),
        1,
        "{:?}",
        listing(srv.scratch())
    );
    // The link itself moves like any entry.
    d.rename_entry("", b"results", "rejected/results").unwrap();
    assert!(fs::symlink_metadata(root.join("rejected/results")).unwrap().file_type().is_symlink());
}
