//! The sFTP drop against two real SSH servers (OpenSSH sshd and an in-process russh server),
//! with the same conformance checks run against `LocalDrop` to prove identical semantics.

#[path = "support/mod.rs"]
mod support;

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use stitch_bridge::drop::known_hosts::{fingerprint, HostKeyError};
use stitch_bridge::drop::local::LocalDrop;
use stitch_bridge::drop::sftp::{is_transient, probe_host_key, record_host_key, SftpAuth, SftpDrop};
use stitch_bridge::drop::{check_name, DropError, DropErrorKind, Transport};
use support::TestServer;

// ------------------------------------------------------------------------------------------
// helpers

/// Deterministic pseudo-random content of a given length, produced lazily (no big buffers).
struct Gen {
    left: u64,
    state: u64,
}

impl Gen {
    fn new(len: u64, seed: u64) -> Gen {
        Gen { left: len, state: seed | 1 }
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn sha_of(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

fn read_all(d: &mut dyn Transport, path: &str) -> Result<Vec<u8>, DropError> {
    let mut out = Vec::new();
    d.open_read(path)?.read_to_end(&mut out).map_err(|e| DropError::from_io(path, e))?;
    Ok(out)
}

fn names(d: &mut dyn Transport, dir: &str) -> Vec<String> {
    d.list(dir).unwrap().into_iter().map(|e| e.name).collect()
}

/// Every file name under `root`, recursively (to spot stray temp files).
fn local_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for de in fs::read_dir(dir).unwrap() {
            let p = de.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

fn russh_drop() -> (TestServer, SftpDrop) {
    let srv = TestServer::russh();
    let d = SftpDrop::connect(srv.config()).unwrap();
    (srv, d)
}

fn kind_msg(r: Result<impl std::fmt::Debug, DropError>) -> (DropErrorKind, String) {
    let e = r.expect_err("expected an error");
    (e.kind.clone(), e.to_string())
}

// ------------------------------------------------------------------------------------------
// conformance: identical observable behaviour for LocalDrop and both servers

/// Exercise every Drop operation; assert the contract and return a transcript of outcomes
/// that must be identical across implementations.
fn conformance(d: &mut dyn Transport, local_root: &Path) -> Vec<String> {
    let mut t = Vec::new();
    let mut log = |s: String| t.push(s);
    let kind = |r: Result<(), DropError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind),
    };

    assert!(d.list("missing").unwrap().is_empty(), "missing dir lists empty");
    assert!(d.stat("missing/x.csv").unwrap().is_none());
    log(format!("open missing: {:?}", d.open_read("nope.csv").err().map(|e| e.kind)));

    d.write_atomic("out/a.csv", &mut &b"one"[..]).unwrap();
    let st = d.stat("out/a.csv").unwrap().expect("written file exists");
    assert_eq!((st.name.as_str(), st.size, st.is_file), ("a.csv", 3, true));
    let age = SystemTime::now().duration_since(st.mtime).unwrap_or_default();
    assert!(age < Duration::from_secs(600), "mtime is recent: {age:?}");
    assert_eq!(read_all(d, "out/a.csv").unwrap(), b"one");

    // Never overwrite, never leave the temp file behind.
    let e = d.write_atomic("out/a.csv", &mut &b"two"[..]).unwrap_err();
    assert_eq!(e.kind, DropErrorKind::AlreadyExists, "{e}");
    assert_eq!(read_all(d, "out/a.csv").unwrap(), b"one");
    assert_eq!(names(d, "out"), vec!["a.csv"]);
    assert_eq!(local_files(&local_root.join("out")), vec!["a.csv"]);

    d.write_atomic("out/empty.csv", &mut &b""[..]).unwrap();
    assert_eq!(d.stat("out/empty.csv").unwrap().unwrap().size, 0);

    d.mkdir_all("x/y/z").unwrap();
    d.mkdir_all("x/y/z").unwrap();
    d.mkdir_all("x").unwrap();
    assert!(!d.stat("x/y").unwrap().unwrap().is_file);
    let xs = d.list("x").unwrap();
    assert_eq!(xs.len(), 1);
    assert_eq!((xs[0].name.as_str(), xs[0].is_file), ("y", false));
    log(format!("mkdir over file: {}", kind(d.mkdir_all("out/a.csv"))));

    // rename creates parents, refuses an existing target, reports a missing source.
    d.rename_no_replace("out/a.csv", "archive/2024/a.csv").unwrap();
    assert!(d.stat("out/a.csv").unwrap().is_none());
    assert_eq!(read_all(d, "archive/2024/a.csv").unwrap(), b"one");
    d.write_atomic("out/b.csv", &mut &b"bee"[..]).unwrap();
    let e = d.rename_no_replace("out/b.csv", "archive/2024/a.csv").unwrap_err();
    assert_eq!(e.kind, DropErrorKind::AlreadyExists, "{e}");
    assert_eq!(read_all(d, "archive/2024/a.csv").unwrap(), b"one");
    assert_eq!(read_all(d, "out/b.csv").unwrap(), b"bee");
    log(format!("rename missing: {}", kind(d.rename_no_replace("out/none.csv", "out/none2.csv"))));

    // list: sorted, names only, sizes and kinds.
    let listing: Vec<(String, u64, bool)> =
        d.list("out").unwrap().into_iter().map(|e| (e.name, e.size, e.is_file)).collect();
    assert_eq!(listing, vec![("b.csv".into(), 3, true), ("empty.csv".into(), 0, true)]);
    let root: Vec<String> = names(d, "");
    assert_eq!(root, vec!["archive", "out", "x"]);
    log(format!("root: {root:?}"));

    d.remove("out/b.csv").unwrap();
    assert!(d.stat("out/b.csv").unwrap().is_none());
    log(format!("remove missing: {}", kind(d.remove("out/b.csv"))));

    // Paths that leave the root are refused before reaching the server.
    assert_eq!(d.open_read("../etc/passwd").err().unwrap().io().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(d.write_atomic("/tmp/x", &mut &b""[..]).unwrap_err().io().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(d.list("a/../../b").unwrap_err().io().kind(), io::ErrorKind::InvalidInput);

    assert_eq!(
        local_files(local_root),
        vec!["archive/2024/a.csv".to_string(), "out/empty.csv".to_string()],
        "nothing else on disk (no temp files)"
    );
    t
}

fn local_transcript() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    conformance(&mut LocalDrop::new(dir.path()), dir.path())
}

#[test]
fn conformance_local() {
    let t = local_transcript();
    assert_eq!(t[0], "open missing: Some(NotFound)");
    assert!(t.contains(&"remove missing: NotFound".to_string()), "{t:?}");
}

fn conformance_on(srv: &TestServer) {
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    assert!(d.describe().starts_with("sftp://"), "{}", d.describe());
    let t = conformance(&mut d, &srv.local_root());
    assert_eq!(t, local_transcript(), "{} behaves like LocalDrop", srv.name());
}

#[test]
fn conformance_russh() {
    conformance_on(&TestServer::russh());
}

#[test]
fn conformance_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    conformance_on(&srv);
}

// ------------------------------------------------------------------------------------------
// streaming

fn large_file(srv: &TestServer) {
    const LEN: u64 = 20 * 1024 * 1024;
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    let (want, _) = sha_of(Gen::new(LEN, 7)).unwrap();
    // Upload streams from a generator; download streams into a hasher.
    d.write_atomic("in/big.bin", &mut Gen::new(LEN, 7)).unwrap();
    let on_disk = sha_of(fs::File::open(srv.local_root().join("in/big.bin")).unwrap()).unwrap();
    assert_eq!(on_disk, (want.clone(), LEN));
    let started = Instant::now();
    let got = sha_of(d.open_read("in/big.bin").unwrap()).unwrap();
    assert_eq!(got, (want, LEN));
    eprintln!("{}: 20 MiB read in {:?}", srv.name(), started.elapsed());
}

#[test]
fn large_file_streams_russh() {
    large_file(&TestServer::russh());
}

#[test]
fn large_file_streams_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    large_file(&srv);
}

// ------------------------------------------------------------------------------------------
// host keys and authentication

fn host_keys(srv: &TestServer) {
    let fp = fingerprint(srv.host_key());

    // Unknown: nothing recorded.
    let mut cfg = srv.config();
    cfg.known_hosts = srv.scratch().join("empty_known_hosts");
    let e = SftpDrop::connect(cfg.clone()).unwrap_err();
    assert_eq!((e.kind.clone(), e.path.as_str()), (DropErrorKind::HostKeyUnknown, ""));
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(msg.contains("SHA256:") && msg.contains(&fp), "{msg}");
    assert!(msg.contains("stitch-bridge trust"), "{msg}");
    let inner = e.io().get_ref().and_then(|i| i.downcast_ref());
    assert!(matches!(inner, Some(HostKeyError::Unknown { .. })), "the source error is kept: {e:?}");
    assert!(!cfg.known_hosts.exists(), "no silent trust on first use");

    // Recorded for another port only: still unknown.
    record_host_key(&cfg.known_hosts, "127.0.0.1", 22, srv.host_key()).unwrap();
    assert!(SftpDrop::connect(cfg.clone()).is_err());

    // probe + record (what `stitch-bridge trust` does) makes it trusted.
    let (key, ktype, pfp) = probe_host_key("127.0.0.1", srv.port(), Duration::from_secs(10)).unwrap();
    assert_eq!((key.as_slice(), ktype.as_str(), pfp.as_str()), (srv.host_key(), "ssh-ed25519", fp.as_str()));
    record_host_key(&cfg.known_hosts, "127.0.0.1", srv.port(), &key).unwrap();
    SftpDrop::connect(cfg).unwrap();

    // Changed: another key of the same type is recorded for this host:port.
    let other_key = support::russh_server::stranger_public_blob();
    let mut cfg = srv.config();
    cfg.known_hosts = srv.scratch().join("changed_known_hosts");
    record_host_key(&cfg.known_hosts, "127.0.0.1", srv.port(), &other_key).unwrap();
    let e = SftpDrop::connect(cfg).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind, DropErrorKind::HostKeyChanged);
    assert!(msg.contains("CHANGED") && msg.contains(&fp) && msg.contains(&fingerprint(&other_key)), "{msg}");
}

#[test]
fn host_keys_russh() {
    host_keys(&TestServer::russh());
}

#[test]
fn host_keys_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    host_keys(&srv);
}

fn wrong_client_key(srv: &TestServer) {
    let mut cfg = srv.config();
    let stranger = support::russh_server::stranger_key(srv.scratch());
    cfg.auth = SftpAuth::Key { path: stranger.clone(), passphrase: None };
    let (kind, msg) = kind_msg(SftpDrop::connect(cfg.clone()));
    assert_eq!(kind, DropErrorKind::Authentication, "{msg}");
    assert!(msg.contains("refused") && msg.contains(&stranger.display().to_string()), "{msg}");

    cfg.auth = SftpAuth::Key { path: srv.scratch().join("no_such_key"), passphrase: None };
    let (kind, msg) = kind_msg(SftpDrop::connect(cfg));
    assert_eq!(kind, DropErrorKind::Authentication, "an unreadable key is not an outage: {msg}");
}

#[test]
fn wrong_client_key_russh() {
    wrong_client_key(&TestServer::russh());
}

#[test]
fn wrong_client_key_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    wrong_client_key(&srv);
}

#[test]
fn password_auth_russh() {
    let TestServer::Russh(srv) = TestServer::russh() else { unreachable!() };
    let secret = "not-the-password-4711";
    let (kind, msg) = kind_msg(SftpDrop::connect(srv.password_config(secret)));
    assert_eq!(kind, DropErrorKind::Authentication, "{msg}");
    assert!(msg.contains("password") && !msg.contains(secret), "{msg}");
    let mut d = SftpDrop::connect(srv.password_config(support::russh_server::PASSWORD)).unwrap();
    assert!(!format!("{d:?}").contains(support::russh_server::PASSWORD));
    assert!(d.list("").unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------
// names and links

fn hostile_names(srv: &TestServer) {
    let dir = srv.local_root().join("in");
    fs::create_dir_all(&dir).unwrap();
    let hostile = ["bell\u{7}.csv", "new\nline.csv", "tab\tname.csv", "a..b.csv", "back\\slash.csv"];
    for n in hostile.iter().chain(["fine.csv"].iter()) {
        fs::write(dir.join(n), b"x").unwrap();
    }
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    let listed = names(&mut d, "in");
    assert_eq!(listed.len(), hostile.len() + 1, "{listed:?}");
    for n in hostile {
        assert!(listed.iter().any(|l| l == n), "{n:?} reaches the caller: {listed:?}");
        assert!(check_name(n).is_err(), "{n:?} is refused");
    }
    assert!(check_name("fine.csv").is_ok());
}

#[test]
fn hostile_names_russh() {
    hostile_names(&TestServer::russh());
}

#[test]
fn hostile_names_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    hostile_names(&srv);
}

fn symlinks_not_followed(srv: &TestServer) {
    let dir = srv.local_root().join("in");
    fs::create_dir_all(&dir).unwrap();
    let outside = srv.scratch().join("secret.txt");
    fs::write(&outside, b"outside the drop").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.csv")).unwrap();
    std::os::unix::fs::symlink(srv.scratch(), dir.join("linkdir")).unwrap();
    fs::write(dir.join("real.csv"), b"r").unwrap();
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    let entries = d.list("in").unwrap();
    let kinds: Vec<(String, bool)> = entries.into_iter().map(|e| (e.name, e.is_file)).collect();
    assert_eq!(kinds, vec![("link.csv".into(), false), ("linkdir".into(), false), ("real.csv".into(), true)]);
    assert!(!d.stat("in/link.csv").unwrap().unwrap().is_file);
}

#[test]
fn symlinks_not_followed_russh() {
    symlinks_not_followed(&TestServer::russh());
}

#[test]
fn symlinks_not_followed_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    symlinks_not_followed(&srv);
}

// ------------------------------------------------------------------------------------------
// injected faults (in-process server)

fn faults(srv: &TestServer) -> &support::russh_server::Faults {
    match srv {
        TestServer::Russh(s) => &s.faults,
        TestServer::Sshd(_) => unreachable!(),
    }
}

#[test]
fn failing_rename_leaves_nothing_visible() {
    let (srv, mut d) = russh_drop();
    faults(&srv).fail_rename.store(true, Ordering::SeqCst);
    let e = d.write_atomic("out/r.csv", &mut &b"data"[..]).unwrap_err();
    assert_ne!(e.kind, DropErrorKind::AlreadyExists, "{e}");
    assert!(!e.is_transient(), "{e}");
    assert!(local_files(&srv.local_root()).is_empty(), "{:?}", local_files(&srv.local_root()));
    assert!(d.stat("out/r.csv").unwrap().is_none());

    fs::write(srv.local_root().join("out/src.csv"), b"s").unwrap();
    assert!(d.rename_no_replace("out/src.csv", "out/dst.csv").is_err());
    assert_eq!(local_files(&srv.local_root()), vec!["out/src.csv"]);

    faults(&srv).fail_rename.store(false, Ordering::SeqCst);
    d.write_atomic("out/r.csv", &mut &b"data"[..]).unwrap();
    assert_eq!(fs::read(srv.local_root().join("out/r.csv")).unwrap(), b"data");
}

/// A folder the login may not write (e.g. `archive/` owned by someone else): uploads, moves
/// into it and new subfolders fail with `PermissionDenied` (not transient, not "exists"),
/// leaving the source where it was and no temp file behind; allowed again, they work.
#[test]
fn permission_denied_folder_is_an_error_of_its_own() {
    let (srv, mut d) = russh_drop();
    let root = srv.local_root();
    fs::create_dir_all(root.join("archive/2024")).unwrap();
    fs::create_dir_all(root.join("in")).unwrap();
    fs::write(root.join("in/a.csv"), b"a").unwrap();
    faults(&srv).deny_writes_under(Some("/drop/archive"));
    for (what, r) in [
        ("upload", d.write_atomic("archive/2024/r.csv", &mut &b"data"[..])),
        ("move", d.rename_no_replace("in/a.csv", "archive/2024/a.csv")),
        ("move into a new folder", d.rename_no_replace("in/a.csv", "archive/2025/a.csv")),
        ("mkdir", d.mkdir_all("archive/2026")),
    ] {
        let (kind, msg) = kind_msg(r);
        assert_eq!(kind, DropErrorKind::Permission, "{what}: {msg}");
        assert!(msg.contains("permission denied") && msg.contains("/drop/archive/"), "{what}: {msg}");
    }
    assert_eq!(local_files(&root), vec!["in/a.csv"], "nothing moved, no temp file");
    assert!(faults(&srv).denied() >= 4);
    // Other folders are not affected.
    d.write_atomic("results/r.csv", &mut &b"r"[..]).unwrap();
    faults(&srv).deny_writes_under(None);
    d.rename_no_replace("in/a.csv", "archive/2024/a.csv").unwrap();
    assert_eq!(local_files(&root), vec!["archive/2024/a.csv", "results/r.csv"]);
}

#[test]
fn disk_full_is_an_error_and_leaves_no_temp() {
    let (srv, mut d) = russh_drop();
    faults(&srv).disk_full_after.store(300_000, Ordering::SeqCst);
    let e = d.write_atomic("out/full.csv", &mut Gen::new(2_000_000, 3)).unwrap_err();
    assert!(!e.is_transient(), "disk full is not a connection problem: {e:?}");
    assert!(e.to_string().contains("out/"), "{e}");
    assert!(local_files(&srv.local_root()).is_empty(), "{:?}", local_files(&srv.local_root()));
    // The session survived and works once space is back.
    faults(&srv).disk_full_after.store(0, Ordering::SeqCst);
    d.write_atomic("out/full.csv", &mut &b"ok"[..]).unwrap();
    assert_eq!(local_files(&srv.local_root()), vec!["out/full.csv"]);
}

#[test]
fn stalled_read_times_out() {
    let srv = TestServer::russh();
    let mut cfg = srv.config();
    cfg.op_timeout = Duration::from_secs(1);
    let mut d = SftpDrop::connect(cfg).unwrap();
    fs::write(srv.local_root().join("slow.csv"), vec![b'x'; 100_000]).unwrap();
    let mut r = d.open_read("slow.csv").unwrap();
    faults(&srv).stall_reads.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut buf = [0u8; 10];
    let e = r.read(&mut buf).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
    std::mem::drop(r);
    // The stalled session is discarded; the next operation reconnects.
    faults(&srv).stall_reads.store(false, Ordering::SeqCst);
    assert_eq!(read_all(&mut d, "slow.csv").unwrap().len(), 100_000);
}

#[test]
fn dropped_session_mid_download_is_transient_and_recoverable() {
    let (srv, mut d) = russh_drop();
    const LEN: u64 = 8 * 1024 * 1024;
    let (want, _) = sha_of(Gen::new(LEN, 11)).unwrap();
    io::copy(&mut Gen::new(LEN, 11), &mut fs::File::create(srv.local_root().join("big.bin")).unwrap()).unwrap();
    let f = faults(&srv);
    f.drop_at_read.store(f.reads() + 5, Ordering::SeqCst);
    let e = sha_of(d.open_read("big.bin").unwrap()).unwrap_err();
    assert!(is_transient(&e), "{:?}: {e}", e.kind());

    f.drop_at_read.store(0, Ordering::SeqCst);
    // The same drop reconnects lazily...
    assert_eq!(sha_of(d.open_read("big.bin").unwrap()).unwrap(), (want.clone(), LEN));
    // ...and a fresh connection works too.
    let mut fresh = SftpDrop::connect(srv.config()).unwrap();
    assert_eq!(sha_of(fresh.open_read("big.bin").unwrap()).unwrap(), (want, LEN));
}

#[test]
fn connection_cut_between_operations_reconnects_once() {
    let (srv, mut d) = russh_drop();
    d.write_atomic("a.csv", &mut &b"1"[..]).unwrap();
    faults(&srv).drop_connections();
    assert_eq!(names(&mut d, ""), vec!["a.csv"]);
    faults(&srv).drop_connections();
    d.write_atomic("b.csv", &mut &b"2"[..]).unwrap();
    assert_eq!(local_files(&srv.local_root()), vec!["a.csv", "b.csv"]);
}

#[test]
fn session_cap_per_host() {
    let srv = TestServer::russh();
    let mut cfg = srv.config();
    cfg.max_sessions = 1;
    cfg.connect_timeout = Duration::from_millis(300);
    let first = SftpDrop::connect(cfg.clone()).unwrap();
    let e = SftpDrop::connect(cfg.clone()).unwrap_err();
    assert_eq!(e.io().kind(), io::ErrorKind::ResourceBusy, "{e}");
    assert!(e.is_transient(), "a free session may come: {e}");
    std::mem::drop(first);
    SftpDrop::connect(cfg).unwrap();
}

// ------------------------------------------------------------------------------------------
// exact bytes through the pipelined reader

/// Read `r` to its end with read sizes cycling through `sizes`, comparing every byte with the
/// same generator that wrote the file. Returns the bytes delivered and the error that ended the
/// read, if any; a mismatch fails the test at once (wrong data is never acceptable).
fn read_compared(r: &mut dyn Read, mut want: Gen, sizes: &[usize]) -> (u64, Option<io::Error>) {
    let mut got = 0u64;
    let mut buf = vec![0u8; *sizes.iter().max().unwrap()];
    let mut expect = vec![0u8; buf.len()];
    for i in 0.. {
        let size = sizes[i % sizes.len()];
        match r.read(&mut buf[..size]) {
            Ok(0) => {
                let mut rest = [0u8; 1];
                assert_eq!(want.read(&mut rest).unwrap(), 0, "end of file after {got} bytes, too early");
                return (got, None);
            }
            Ok(n) => {
                assert!(n <= size);
                let k = want.read(&mut expect[..n]).unwrap();
                assert_eq!(k, n, "more bytes than the file has, at offset {got}");
                if buf[..n] != expect[..n] {
                    let at = (0..n).find(|&j| buf[j] != expect[j]).unwrap();
                    panic!("wrong byte at offset {}", got + at as u64);
                }
                got += n as u64;
            }
            Err(e) => return (got, Some(e)),
        }
    }
    unreachable!()
}

fn exact_multi_mib_reads(srv: &TestServer) {
    let mut d = SftpDrop::connect(srv.config()).unwrap();
    // Sizes around libssh2's 30,000-byte READs and the reader's buffer steps, and a 9 MiB one
    // that outgrows the 8 MiB libssh2 requests ahead.
    let lens: [u64; 7] = [0, 1, 29_999, 30_000, 32_768, 2 * 1024 * 1024 + 1, 9 * 1024 * 1024 + 12_345];
    for (i, len) in lens.iter().enumerate() {
        let name = format!("in/f{i}.bin");
        let local = srv.local_root().join(&name);
        fs::create_dir_all(local.parent().unwrap()).unwrap();
        io::copy(&mut Gen::new(*len, 100 + i as u64), &mut fs::File::create(&local).unwrap()).unwrap();
        // Odd small reads, a caller buffer bigger than the reader's, and read_to_end.
        for sizes in [&[1usize, 7, 4096, 65_539][..], &[3 * 1024 * 1024, 100]] {
            let (got, err) = read_compared(&mut *d.open_read(&name).unwrap(), Gen::new(*len, 100 + i as u64), sizes);
            assert!(err.is_none(), "{}: {name}: {err:?}", srv.name());
            assert_eq!(got, *len);
        }
        let mut want = Vec::new();
        Gen::new(*len, 100 + i as u64).read_to_end(&mut want).unwrap();
        assert!(read_all(&mut d, &name).unwrap() == want, "{}: {name} read_to_end", srv.name());
    }
    // A reader dropped half way (megabytes still requested ahead) leaves the session usable.
    let big = "in/f6.bin";
    let mut r = d.open_read(big).unwrap();
    let mut buf = vec![0u8; 1024 * 1024];
    r.read_exact(&mut buf).unwrap();
    std::mem::drop(r);
    let (got, err) = read_compared(&mut *d.open_read(big).unwrap(), Gen::new(lens[6], 106), &[65_536]);
    assert!(err.is_none() && got == lens[6], "{}: {err:?}", srv.name());
    assert_eq!(names(&mut d, "in").len(), lens.len());
}

#[test]
fn exact_multi_mib_reads_russh() {
    exact_multi_mib_reads(&TestServer::russh());
}

#[test]
fn exact_multi_mib_reads_sshd() {
    let Some(srv) = TestServer::sshd() else { return };
    exact_multi_mib_reads(&srv);
}

/// Reads cut short by the server end in an error, never in wrong or missing bytes that look
/// like a shorter file; the error stays (sticky), and the drop recovers afterwards.
#[test]
fn interrupted_multi_mib_reads_end_in_errors_not_wrong_data() {
    const LEN: u64 = 16 * 1024 * 1024 + 777;
    let srv = TestServer::russh();
    let mut cfg = srv.config();
    cfg.op_timeout = Duration::from_secs(1);
    let mut d = SftpDrop::connect(cfg).unwrap();
    io::copy(&mut Gen::new(LEN, 21), &mut fs::File::create(srv.local_root().join("big.bin")).unwrap()).unwrap();
    let f = faults(&srv);

    // Stalled: the server stops answering READs after the first MiB was delivered. What was
    // already answered arrives, then the read times out.
    let mut r = d.open_read("big.bin").unwrap();
    let mut want = Gen::new(LEN, 21);
    let mut first = vec![0u8; 1024 * 1024];
    r.read_exact(&mut first).unwrap();
    let mut expect = vec![0u8; first.len()];
    want.read_exact(&mut expect).unwrap();
    assert!(first == expect, "first MiB");
    f.stall_reads.store(true, Ordering::SeqCst);
    let (got, err) = read_compared(&mut r, want, &[65_536, 1000]);
    let err = err.expect("a stalled read ends in an error");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(first.len() as u64 + got < LEN, "stopped early: {got}");
    assert_eq!(r.read(&mut [0u8; 10]).unwrap_err().kind(), io::ErrorKind::TimedOut, "the error is sticky");
    std::mem::drop(r);
    f.stall_reads.store(false, Ordering::SeqCst);

    // Dropped: the server cuts the connection at a READ a few MiB into the file.
    f.drop_at_read.store(f.reads() + 100, Ordering::SeqCst);
    let mut r = d.open_read("big.bin").unwrap();
    let (got, err) = read_compared(&mut *r, Gen::new(LEN, 21), &[7, 65_536, 300_000]);
    let err = err.expect("a dropped session ends in an error");
    assert!(is_transient(&err), "{:?}: {err}", err.kind());
    assert!(got < LEN, "stopped early: {got}");
    assert!(is_transient(&r.read(&mut [0u8; 10]).unwrap_err()), "the error is sticky");
    std::mem::drop(r);
    f.drop_at_read.store(0, Ordering::SeqCst);

    // The same drop reconnects and reads the whole file exactly.
    let (got, err) = read_compared(&mut *d.open_read("big.bin").unwrap(), Gen::new(LEN, 21), &[1 << 20]);
    assert!(err.is_none() && got == LEN, "{err:?}");
}
