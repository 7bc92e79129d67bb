//! sFTP throughput (issue 4): our `SftpDrop` against OpenSSH's own `sftp -b` client, same run,
//! same server: OpenSSH `sshd` started as the current user with its own keys and config.
//!
//! - one 200 MB file: `SftpDrop::open_read` streamed into a sink with 256 KiB reads, vs
//!   `sftp -b` `get FILE /dev/null`; both timed from connect to the last byte, best of two;
//! - 2,000 small files: list the folder, read every file, vs `sftp -b` `ls -l` + `get dir/*`
//!   (which writes them into a local folder), best of two;
//! - the 200 MB file over a link with 25 ms added RTT: a network namespace pair (veth) with
//!   `netem delay 12.5ms` on both ends and sshd inside the namespace, created and deleted here.
//!   Where netem (or `ip netns`) is not available, a userspace relay on loopback adds 12.5 ms in
//!   each direction instead, and the row says so. Best of two as well. Over that link a
//!   prototype (several sessions reading ranges concurrently, this file only) is kept for
//!   comparison with the product's single-session reader.
//!
//! `cargo bench --bench sftp [-- --quick]`; sizes: `BENCH_BIG_MB`, `BENCH_SMALL_FILES`.
//! `BENCH_SFTP_SWEEP=1` also times plain libssh2 reads of the big file over the delayed link
//! with several read sizes (libssh2 requests up to 4x the read size ahead), printed as lines.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{find_program, mb, note, row, Rng};
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use stitch_bridge::drop::sftp::{SftpAuth, SftpConfig, SftpDrop};
use stitch_bridge::drop::Transport as _;

const READ_BUF: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// OpenSSH sshd as the current user (after tests/support/sshd.rs)

struct Sshd {
    child: Child,
    host: String,
    port: u16,
    user: String,
    key: PathBuf,
    known_hosts: PathBuf,
    host_key: Vec<u8>,
}

fn keygen(kg: &Path, path: &Path) {
    let st = Command::new(kg)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Sshd {
    /// Starts sshd listening on `host` (inside `netns` when given); keys and config under `dir`.
    fn start(dir: &Path, host: &str, netns: Option<&str>) -> Result<Sshd, String> {
        let sbin = ["/usr/sbin", "/usr/local/sbin", "/sbin"];
        let (Some(sshd), Some(kg)) = (find_program("sshd", &sbin), find_program("ssh-keygen", &sbin)) else {
            return Err("sshd or ssh-keygen not found (install openssh-server)".into());
        };
        let mut last = String::new();
        for attempt in 0..5 {
            let d = dir.join(format!("sshd-{}-{attempt}", netns.unwrap_or("lo")));
            fs::create_dir_all(&d).unwrap();
            keygen(&kg, &d.join("host_ed25519"));
            keygen(&kg, &d.join("client_ed25519"));
            fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let cfg = d.join("sshd_config");
            fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress {host}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\nUsePAM no\n\
                     StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                     PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel INFO\n",
                    hk = d.join("host_ed25519").display(),
                    pid = d.join("sshd.pid").display(),
                    ak = d.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns]).arg(&sshd);
                    c
                }
                None => Command::new(&sshd),
            };
            let mut child = cmd
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut log = Vec::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Server listening on") {
                        let _ = tx.send(Ok(()));
                    }
                    if log.len() < 50 {
                        log.push(line);
                        let _ = tx.send(Err(log.join("\n")));
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_secs(15);
            let ready = loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(())) => break true,
                    Ok(Err(log)) => last = log,
                    Err(_) => {}
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() > deadline {
                    break false;
                }
            };
            if !ready {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(dir) = last.split("Missing privilege separation directory: ").nth(1) {
                    let _ = fs::create_dir_all(dir.lines().next().unwrap_or("").trim());
                }
                continue;
            }
            let text = fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
            let host_key = STANDARD.decode(text.split_whitespace().nth(1).unwrap()).unwrap();
            let known_hosts = d.join("known_hosts");
            stitch_bridge::drop::sftp::record_host_key(&known_hosts, host, port, &host_key).unwrap();
            return Ok(Sshd {
                child,
                host: host.into(),
                port,
                user: current_user(),
                key: d.join("client_ed25519"),
                known_hosts,
                host_key,
            });
        }
        Err(format!("sshd did not start: {last}"))
    }

    fn config(&self, root: &Path) -> SftpConfig {
        let mut cfg = SftpConfig::new(
            &self.host,
            self.port,
            &self.user,
            root.to_str().unwrap(),
            SftpAuth::Key { path: self.key.clone(), passphrase: None },
            self.known_hosts.clone(),
        );
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.op_timeout = Duration::from_secs(60);
        cfg.max_sessions = 16;
        cfg
    }

    /// OpenSSH `sftp -b` with this batch; returns the wall time.
    fn openssh(&self, batch: &Path, port: u16, host: &str) -> Duration {
        let t = Instant::now();
        let out = Command::new("sftp")
            .arg("-q")
            .arg("-b")
            .arg(batch)
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "CheckHostIP=no", "-P"])
            .arg(port.to_string())
            .arg(format!("{}@{host}", self.user))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .expect("run sftp");
        let wall = t.elapsed();
        assert!(out.status.success(), "sftp -b failed: {}", String::from_utf8_lossy(&out.stderr));
        wall
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Our client

fn ours_big(cfg: SftpConfig, name: &str, expect: u64) -> Duration {
    let t = Instant::now();
    let mut d = SftpDrop::connect(cfg).expect("connect");
    let mut r = d.open_read(name).expect("open");
    let mut buf = vec![0u8; READ_BUF];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    let wall = t.elapsed();
    assert_eq!(n, expect, "whole file read");
    wall
}

fn ours_small(cfg: SftpConfig, dir: &str, files: usize) -> Duration {
    let t = Instant::now();
    let mut d = SftpDrop::connect(cfg).expect("connect");
    let entries = d.list(dir).expect("list");
    assert_eq!(entries.len(), files);
    let mut buf = Vec::with_capacity(8192);
    for e in &entries {
        buf.clear();
        d.open_read(&format!("{dir}/{}", e.name)).expect("open").read_to_end(&mut buf).expect("read");
        assert!(!buf.is_empty());
    }
    t.elapsed()
}

/// Prototype (bench only): `ways` sessions, each reading its own range of the file with 256 KiB
/// reads, concurrently, so `ways` × 1 MiB (libssh2 reads 4 × 256 KiB ahead) are in flight.
fn pipelined_big(s: &Sshd, connect: (&str, u16), path: &Path, size: u64, ways: u64) -> Duration {
    let t = Instant::now();
    let chunk = size.div_ceil(ways);
    let threads: Vec<_> = (0..ways)
        .map(|i| {
            let (host, port, user, key, host_key, path) = (
                connect.0.to_string(),
                connect.1,
                s.user.clone(),
                s.key.clone(),
                s.host_key.clone(),
                path.to_path_buf(),
            );
            std::thread::spawn(move || {
                let tcp = TcpStream::connect((host.as_str(), port)).unwrap();
                tcp.set_nodelay(true).unwrap();
                let mut sess = ssh2::Session::new().unwrap();
                sess.set_tcp_stream(tcp);
                sess.handshake().unwrap();
                assert_eq!(sess.host_key().map(|k| k.0.to_vec()), Some(host_key), "host key");
                sess.userauth_pubkey_file(&user, None, &key, None).unwrap();
                let sftp = sess.sftp().unwrap();
                let mut f = sftp.open(&path).unwrap();
                let (start, end) = (i * chunk, ((i + 1) * chunk).min(size));
                f.seek(SeekFrom::Start(start)).unwrap();
                let mut buf = vec![0u8; READ_BUF];
                let mut at = start;
                while at < end {
                    let want = ((end - at) as usize).min(READ_BUF);
                    let k = f.read(&mut buf[..want]).unwrap();
                    assert!(k > 0, "early end of file");
                    at += k as u64;
                }
                at - start
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, size);
    t.elapsed()
}

/// Cipher and MAC each client negotiates with this server (they explain CPU-bound gaps); ours is
/// what `SftpDrop` itself negotiates (its own algorithm preferences).
fn ciphers(s: &Sshd, root: &Path) -> (String, String) {
    let ours =
        SftpDrop::connect(s.config(root)).and_then(|mut d| d.download_methods()).unwrap_or_else(|e| format!("? ({e})"));
    let out = Command::new("ssh")
        .args(["-v", "-i"])
        .arg(&s.key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
        .args(["-p", &s.port.to_string()])
        .arg(format!("{}@{}", s.user, s.host))
        .arg("true")
        .stdin(Stdio::null())
        .output();
    let theirs = out
        .ok()
        .and_then(|o| {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            err.lines().find_map(|l| {
                l.split("kex: server->client cipher: ")
                    .nth(1)
                    .and_then(|c| c.split_whitespace().next())
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| "?".into());
    (ours, theirs)
}

/// Plain libssh2 (one session, one handle, blocking) reading the whole file with `buf`-sized
/// reads: how much its own read-ahead (up to 4 x `buf`, at most 8 MiB) gives over this link.
fn libssh2_read(s: &Sshd, connect: (&str, u16), path: &Path, size: u64, buf: usize) -> Duration {
    let t = Instant::now();
    let tcp = TcpStream::connect(connect).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut sess = ssh2::Session::new().unwrap();
    sess.set_tcp_stream(tcp);
    sess.handshake().unwrap();
    assert_eq!(sess.host_key().map(|k| k.0.to_vec()), Some(s.host_key.clone()), "host key");
    sess.userauth_pubkey_file(&s.user, None, &s.key, None).unwrap();
    let sftp = sess.sftp().unwrap();
    let mut f = sftp.open(path).unwrap();
    let mut b = vec![0u8; buf];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut b).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    assert_eq!(n, size);
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// A link with added delay

/// A namespace pair with netem on both veth ends; deleted on drop.
struct NetemLink {
    ns: String,
}

impl NetemLink {
    const HOST_IP: &'static str = "10.213.77.1";
    const NS_IP: &'static str = "10.213.77.2";

    fn create(delay_ms_each_way: f64) -> Result<NetemLink, String> {
        if find_program("ip", &["/usr/sbin", "/sbin"]).is_none()
            || find_program("tc", &["/usr/sbin", "/sbin"]).is_none()
        {
            return Err("`ip`/`tc` not installed".into());
        }
        let id = std::process::id() % 100_000;
        let link = NetemLink { ns: format!("sbbench{id}") };
        let (a, b) = (format!("sbb{id}a"), format!("sbb{id}b"));
        let delay = format!("{delay_ms_each_way}ms");
        let ns = link.ns.clone();
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &ns],
            vec!["ip", "link", "add", &a, "type", "veth", "peer", "name", &b],
            vec!["ip", "link", "set", &b, "netns", &ns],
            vec!["ip", "addr", "add", "10.213.77.1/30", "dev", &a],
            vec!["ip", "link", "set", &a, "up"],
            vec!["ip", "netns", "exec", &ns, "ip", "addr", "add", "10.213.77.2/30", "dev", &b],
            vec!["ip", "netns", "exec", &ns, "ip", "link", "set", &b, "up"],
            vec!["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
            vec!["tc", "qdisc", "add", "dev", &a, "root", "netem", "delay", &delay],
            vec!["ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &b, "root", "netem", "delay", &delay],
        ];
        for s in steps {
            let out = Command::new(s[0]).args(&s[1..]).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
                let _ = Command::new("ip").args(["link", "del", &a]).stderr(Stdio::null()).status();
                return Err(format!("`{}` failed: {why}", s.join(" ")));
            }
        }
        Ok(link)
    }
}

impl Drop for NetemLink {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the peer.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).stderr(Stdio::null()).status();
    }
}

/// Userspace fallback: a loopback TCP relay that delivers every chunk `delay` after it was read,
/// in each direction. It buffers without limit, like a link with plenty of bandwidth.
fn delay_relay(target: u16, delay: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
                let mut from = from;
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                let mut to = to;
                std::thread::spawn(move || {
                    while let Ok((due, bytes)) = rx.recv() {
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        if to.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------

fn write_big(path: &Path, size: u64) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut rng = Rng(99);
    let mut left = size;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for c in block.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes()[..c.len()]);
        }
        let n = (left as usize).min(block.len());
        w.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

fn ratio_row(what: &str, ours: Duration, theirs: Duration, unit: &str, amount: f64, target: f64) {
    let (o, t) = (amount / ours.as_secs_f64(), amount / theirs.as_secs_f64());
    let r = o / t;
    row(
        what,
        &format!("{o:.1} {unit} ({:.2} s)", ours.as_secs_f64()),
        &format!("sftp -b {t:.1} {unit} ({:.2} s)", theirs.as_secs_f64()),
        &format!("{r:.2}x"),
        &format!(">= {target}x"),
        Some(r >= target),
    );
}

fn main() {
    let big_mb = common::size("BENCH_BIG_MB", 200, 20) as u64;
    let small_files = common::size("BENCH_SMALL_FILES", 2000, 200);
    if find_program("sftp", &[]).is_none() {
        row("sftp", "n/a", "n/a", "n/a", "-", None);
        note("sftp bench skipped: OpenSSH `sftp` client not installed");
        return;
    }
    let tmp = tempfile::Builder::new().prefix("bench-sftp-").tempdir().unwrap();
    let root = tmp.path().join("drop");
    fs::create_dir_all(root.join("small")).unwrap();
    let size = big_mb * 1_000_000;
    write_big(&root.join("big.bin"), size);
    let mut rng = Rng(5);
    for i in 0..small_files {
        let lines = 20 + rng.below(60);
        let mut text = String::from("sku,quantity\n");
        for j in 0..lines {
            text.push_str(&format!("SKU-{i:05}-{j:03},{}\n", rng.below(1000)));
        }
        fs::write(root.join(format!("small/stock_{i:05}.csv")), text).unwrap();
    }
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let batch_big = tmp.path().join("big.batch");
    fs::write(&batch_big, format!("get {} /dev/null\n", root.join("big.bin").display())).unwrap();
    let batch_small = tmp.path().join("small.batch");
    fs::write(&batch_small, format!("ls -l {0}/small\nget {0}/small/* {1}/\n", root.display(), out.display())).unwrap();

    let s = match Sshd::start(tmp.path(), "127.0.0.1", None) {
        Ok(s) => s,
        Err(e) => {
            row("sftp", "n/a", "n/a", "n/a", "-", None);
            note(&format!("sftp bench skipped: {e}"));
            return;
        }
    };
    println!("sftp: OpenSSH sshd on 127.0.0.1:{}, {big_mb} MB file, {small_files} small files", s.port);
    let (c_ours, c_theirs) = ciphers(&s, &root);
    println!("  negotiated server->client: ours (libssh2) {c_ours}; OpenSSH sftp {c_theirs}");

    // BENCH_SFTP_ONLY=wan: only the rows over the delayed link that time whole cycles.
    let only_wan = std::env::var("BENCH_SFTP_ONLY").as_deref() == Ok("wan");
    if !only_wan {
        // One big file, loopback: each side twice, alternating, best of two (the machine is shared;
        // the first read also warms the page cache for both).
        let mut ours = Duration::MAX;
        let mut theirs = Duration::MAX;
        for _ in 0..2 {
            ours = ours.min(ours_big(s.config(&root), "big.bin", size));
            theirs = theirs.min(s.openssh(&batch_big, s.port, "127.0.0.1"));
        }
        println!("  big file: ours {:.2} s, sftp -b {:.2} s", ours.as_secs_f64(), theirs.as_secs_f64());
        ratio_row(&format!("sftp: one {big_mb} MB file, loopback"), ours, theirs, "MB/s", big_mb as f64, 0.9);
        if ours > theirs.mul_f64(1.0 / 0.9) {
            note(&format!("loopback big file is CPU-bound; ciphers negotiated server->client: ours (libssh2) {c_ours}, OpenSSH sftp {c_theirs}"));
        }

        // Many small files.
        let mut ours = Duration::MAX;
        let mut theirs = Duration::MAX;
        for _ in 0..2 {
            theirs = theirs.min(s.openssh(&batch_small, s.port, "127.0.0.1"));
            ours = ours.min(ours_small(s.config(&root), "small", small_files));
        }
        println!("  small files: ours {:.2} s, sftp -b {:.2} s", ours.as_secs_f64(), theirs.as_secs_f64());
        ratio_row(
            &format!("sftp: {small_files} small files (list + read), loopback"),
            ours,
            theirs,
            "files/s",
            small_files as f64,
            1.5,
        );
    }

    // 25 ms RTT: netem on a namespace pair, else the userspace relay.
    let one_way = 12.5;
    let (label, server, host, port, _link) = match NetemLink::create(one_way) {
        Ok(link) => match Sshd::start(tmp.path(), NetemLink::NS_IP, Some(&link.ns)) {
            Ok(srv) => {
                let p = srv.port;
                ("netns + netem", Some(srv), NetemLink::NS_IP.to_string(), p, Some(link))
            }
            Err(e) => {
                note(&format!("sshd inside the namespace did not start ({e}); using the userspace delay relay"));
                (
                    "userspace delay relay",
                    None,
                    "127.0.0.1".to_string(),
                    delay_relay(s.port, Duration::from_micros(12_500)),
                    None,
                )
            }
        },
        Err(e) => {
            note(&format!("25 ms RTT row: netem link not available ({e}); the delay comes from a userspace relay on loopback adding 12.5 ms each way"));
            (
                "userspace delay relay",
                None,
                "127.0.0.1".to_string(),
                delay_relay(s.port, Duration::from_micros(12_500)),
                None,
            )
        }
    };
    let srv = server.as_ref().unwrap_or(&s);
    let _ = NetemLink::HOST_IP;
    // Through the relay the server is reached on the relay's port; host keys are per host:port.
    if server.is_none() {
        stitch_bridge::drop::sftp::record_host_key(&srv.known_hosts, &host, port, &srv.host_key).unwrap();
    }
    let wan = Wan { srv, host: host.clone(), port, label };
    wan_order_files(&wan, tmp.path());
    wan_inbound(&wan, tmp.path());
    wan_list(&wan, tmp.path());
    if only_wan {
        return;
    }
    let mut cfg = srv.config(&root);
    cfg.host = host.clone();
    cfg.port = port;
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for _ in 0..2 {
        theirs = theirs.min(srv.openssh(&batch_big, port, &host));
        ours = ours.min(ours_big(cfg.clone(), "big.bin", size));
    }
    println!(
        "  big file, 25 ms RTT ({label}): ours {:.2} s, sftp -b {:.2} s",
        ours.as_secs_f64(),
        theirs.as_secs_f64()
    );
    ratio_row(&format!("sftp: one {big_mb} MB file, 25 ms RTT ({label})"), ours, theirs, "MB/s", big_mb as f64, 0.8);
    if std::env::var("BENCH_SFTP_SWEEP").as_deref() == Ok("1") {
        for kib in [32usize, 256, 1024, 2048, 4096] {
            let d = libssh2_read(srv, (&host, port), &root.join("big.bin"), size, kib * 1024);
            println!(
                "  sweep, 25 ms RTT, plain libssh2 reads of {kib} KiB: {:.1} MB/s ({:.2} s)",
                mb(size) / d.as_secs_f64(),
                d.as_secs_f64()
            );
        }
    }
    let ways = 8;
    let piped = pipelined_big(srv, (&host, port), &root.join("big.bin"), size, ways);
    println!("  big file, 25 ms RTT, prototype {ways} sessions x ranged reads: {:.2} s", piped.as_secs_f64());
    let (p, t) = (mb(size) / piped.as_secs_f64(), mb(size) / theirs.as_secs_f64());
    row(
        &format!("sftp: same, prototype {ways} ranged reads in flight (bench only)"),
        &format!("{p:.1} MB/s ({:.2} s)", piped.as_secs_f64()),
        &format!("sftp -b {t:.1} MB/s"),
        &format!("{:.2}x", p / t),
        ">= 0.8x",
        Some(p / t >= 0.8),
    );
}

// ---------------------------------------------------------------------------------------------
// Whole cycles over the delayed link (issue 16)

/// Where the 25 ms RTT rows reach the server: through the relay (or netem) at `host:port`.
struct Wan<'a> {
    srv: &'a Sshd,
    host: String,
    port: u16,
    label: &'a str,
}

const WAN_SESSIONS: usize = 8;

/// A simulator seeded with `n` one-line orders (one open fulfillment each).
fn sim_with_orders(n: usize) -> stitch_bridge::sim::BackgroundSim {
    use serde_json::json;
    let products: Vec<_> = (0..100)
        .map(|i| json!({"sku": format!("WAN-{i:03}"), "name": format!("Item {i}"), "stock": 1_000_000}))
        .collect();
    let orders: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "local_id": format!("W{i:06}"), "po_num": format!("W{i:06}"), "order_date": "2024-05-01T09:30:00Z",
                "total": "10.00", "currency_iso": "USD", "shipping_speed": "Standard",
                "line_items": [{"sku": format!("WAN-{:03}", i % 100), "quantity": "1", "price": "10.00"}],
                "shipping_address": {"contact": format!("Customer {i}"), "street1": "1 Main St", "city": "Portland",
                                     "state": "OR", "zip": "97201", "country_iso": "US"}
            })
        })
        .collect();
    stitch_bridge::sim::start_in_background(stitch_bridge::sim::SimOptions {
        token: "bench-token".into(),
        seed: Some(stitch_bridge::sim::Seed::Json(json!({ "products": products, "sales_orders": orders }))),
        ..Default::default()
    })
    .expect("start simulator")
}

/// A config with one sFTP account whose drop is `root` on the server, reached through `wan`.
fn wan_config(dir: &Path, wan: &Wan, root: &Path, sim_url: &str) -> PathBuf {
    fs::create_dir_all(dir.join("secrets")).unwrap();
    fs::write(dir.join("secrets/bench.token"), "bench-token").unwrap();
    let text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"bench\"\n\
         drop = \"sftp://{user}@{host}:{port}{root}\"\nsftp_key_file = \"{key}\"\nknown_hosts = \"{kh}\"\n\
         sftp_max_sessions = {WAN_SESSIONS}\nstitch_url = \"{sim_url}\"\ntoken_file = \"secrets/bench.token\"\n\
         settle_seconds = 0\nconcurrency = 8\n",
        user = wan.srv.user,
        host = wan.host,
        port = wan.port,
        root = root.display(),
        key = wan.srv.key.display(),
        kh = wan.srv.known_hosts.display(),
    );
    let p = dir.join("stitch-bridge.toml");
    fs::write(&p, text).unwrap();
    p
}

fn assert_clean(report: &stitch_bridge::engine::RunReport, what: &str) {
    for a in &report.accounts {
        assert!(a.halted.is_none() && a.pending.is_empty() && a.fatal.is_empty(), "{what}: {a:?}");
    }
}

/// Regular files directly in `dir`, sorted (dot files, i.e. temp names, left out).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| !n.starts_with('.'));
    v.sort();
    v
}

/// `sftp: N order files written, 25 ms RTT`: the order download of a `run --once` (download
/// half: open fulfillments, line items, order files, "Sent to warehouse"), against `sftp -b`
/// putting the same files into a folder in one session.
fn wan_order_files(wan: &Wan, tmp: &Path) {
    use stitch_bridge::engine::{run_cycle, Parts};
    let n = common::size("BENCH_ORDER_FILES", 2000, 200);
    let sim = sim_with_orders(n);
    let dir = tmp.join("wan-orders");
    let root = dir.join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = stitch_bridge::config::Config::load(&wan_config(&dir, wan, &root, &sim.base_url())).unwrap();
    let t = Instant::now();
    let report = run_cycle(&cfg, &[], Parts { inbound: false, download: true });
    let ours = t.elapsed();
    assert_clean(&report, "order download");
    let sent: u64 = report.accounts.iter().map(|a| a.orders_sent).sum();
    let written = names_in(&root.join("outbound/orders"));
    assert_eq!((sent as usize, written.len()), (n, n), "every order file written once");
    // Theirs: the same files, put into an empty folder.
    let local = dir.join("local");
    fs::create_dir_all(&local).unwrap();
    for name in &written {
        fs::copy(root.join("outbound/orders").join(name), local.join(name)).unwrap();
    }
    let remote = dir.join("theirs");
    fs::create_dir_all(&remote).unwrap();
    let batch = dir.join("put.batch");
    fs::write(&batch, format!("put {}/* {}/\n", local.display(), remote.display())).unwrap();
    let theirs = wan.srv.openssh(&batch, wan.port, &wan.host);
    assert_eq!(names_in(&remote).len(), n, "sftp -b put every file");
    let c = sim.counters();
    let requests: u64 = c.requests.values().sum();
    // The same download into a local drop: what the Stitch requests, rendering and ledger cost
    // without any sFTP round trip.
    let local_sim = sim_with_orders(n);
    let ldir = tmp.join("wan-orders-local");
    fs::create_dir_all(ldir.join("secrets")).unwrap();
    fs::create_dir_all(ldir.join("drop")).unwrap();
    fs::write(ldir.join("secrets/bench.token"), "bench-token").unwrap();
    fs::write(
        ldir.join("stitch-bridge.toml"),
        format!(
            "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"bench\"\ndrop = \"drop\"\n\
             stitch_url = \"{}\"\ntoken_file = \"secrets/bench.token\"\nsettle_seconds = 0\nconcurrency = 8\n",
            local_sim.base_url()
        ),
    )
    .unwrap();
    let lcfg = stitch_bridge::config::Config::load(&ldir.join("stitch-bridge.toml")).unwrap();
    let t = Instant::now();
    assert_clean(&run_cycle(&lcfg, &[], Parts { inbound: false, download: true }), "local download");
    let local = t.elapsed();
    println!(
        "  order files, 25 ms RTT ({}): ours {:.2} s for {n} files ({requests} Stitch requests, no Stitch latency, up to {WAN_SESSIONS} sessions; the same download into a local drop {:.2} s), sftp -b put {:.2} s",
        wan.label,
        ours.as_secs_f64(),
        local.as_secs_f64(),
        theirs.as_secs_f64()
    );
    ratio_row(&format!("sftp: {n} order files written, 25 ms RTT"), ours, theirs, "files/s", n as f64, 3.0);
}

/// Files below `dir`, any depth (dot files left out).
fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                usize::from(!e.file_name().to_string_lossy().starts_with('.'))
            }
        })
        .sum()
}

/// One shipment file per order file in `orders` (every line shipped), into `into`.
fn shipment_files(orders: &Path, into: &Path) -> Vec<String> {
    fs::create_dir_all(into).unwrap();
    let mut names = Vec::new();
    for (i, name) in names_in(orders).iter().enumerate() {
        let mut r = csv::Reader::from_path(orders.join(name)).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |c: &str| h.iter().position(|x| x == c).unwrap();
        let (fi, oi, si, qi) = (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "fulfillment_id",
            "order_ref",
            "sku",
            "quantity",
            "shipped_at",
            "carrier",
            "service",
            "tracking_number",
        ])
        .unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let tracking = format!("1ZWAN{}", &rec[fi]);
            w.write_record([
                &rec[fi],
                &rec[oi],
                &rec[si],
                &rec[qi],
                "2024-05-02T10:00:00Z",
                "UPS",
                "Ground",
                &tracking,
            ])
            .unwrap();
        }
        let file = format!("ship_{i:05}.csv");
        fs::write(into.join(&file), w.into_inner().unwrap()).unwrap();
        names.push(file);
    }
    names
}

/// `sftp: N inbound files end to end, 25 ms RTT`: the inbound half of a `run --once` over N
/// small shipment files (list, read, apply against the simulator at 20 ms latency, result file,
/// archive move), against `sftp -b` doing only get, put (a result file) and rename per file.
fn wan_inbound(wan: &Wan, tmp: &Path) {
    use stitch_bridge::engine::{run_cycle, Parts};
    let n = common::size("BENCH_WAN_INBOUND", 500, 50);
    let latency = 20;
    let sim = sim_with_orders(n);
    let dir = tmp.join("wan-inbound");
    let root = dir.join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = stitch_bridge::config::Config::load(&wan_config(&dir, wan, &root, &sim.base_url())).unwrap();
    // Setup (not timed): the order files the shipments answer.
    let down = run_cycle(&cfg, &[], Parts { inbound: false, download: true });
    assert_clean(&down, "setup download");
    let names = shipment_files(&root.join("outbound/orders"), &dir.join("ships"));
    assert_eq!(names.len(), n);
    for name in &names {
        fs::copy(dir.join("ships").join(name), root.join("inbound/shipments").join(name)).unwrap();
    }
    let faults = format!("{{\"latency_ms\": {latency}}}");
    assert_eq!(common::http_post_json(sim.addr(), "/_admin/faults", sim.admin_token(), &faults).unwrap(), 200);
    assert_eq!(common::http_post_json(sim.addr(), "/_admin/reset-counters", sim.admin_token(), "").unwrap(), 204);
    let t = Instant::now();
    let report = run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    let ours = t.elapsed();
    assert_clean(&report, "inbound cycle");
    assert_eq!(count_files(&root.join("archive")), n, "every file archived");
    assert_eq!(count_files(&root.join("results")), n, "every file has its result");
    let requests: u64 = sim.counters().requests.values().sum();
    // Theirs: get, put a result file of the same kind, rename into the archive.
    let remote = dir.join("theirs");
    for d in ["inbound", "results", "archive"] {
        fs::create_dir_all(remote.join(d)).unwrap();
    }
    let result = names_in(&root.join("results")).into_iter().next().unwrap();
    fs::copy(root.join("results").join(&result), dir.join("result.csv")).unwrap();
    let got = dir.join("got");
    fs::create_dir_all(&got).unwrap();
    let mut batch = String::new();
    for name in &names {
        fs::copy(dir.join("ships").join(name), remote.join("inbound").join(name)).unwrap();
        let (r, l) = (remote.display(), dir.display());
        batch += &format!(
            "get {r}/inbound/{name} {g}/{name}\nput {l}/result.csv {r}/results/{name}.result.csv\nrename {r}/inbound/{name} {r}/archive/{name}\n",
            g = got.display()
        );
    }
    fs::write(dir.join("inbound.batch"), batch).unwrap();
    let theirs = wan.srv.openssh(&dir.join("inbound.batch"), wan.port, &wan.host);
    assert_eq!(names_in(&remote.join("archive")).len(), n);
    println!(
        "  inbound, 25 ms RTT ({}): ours {:.2} s for {n} shipment files ({requests} Stitch requests at {latency} ms), sftp -b get+put+rename {:.2} s",
        wan.label,
        ours.as_secs_f64(),
        theirs.as_secs_f64()
    );
    ratio_row(&format!("sftp: {n} inbound files end to end, 25 ms RTT"), ours, theirs, "files/s", n as f64, 2.0);
}

/// `sftp: list N files, 25 ms RTT`: `SftpDrop::list` of a folder of N entries against `sftp -b
/// ls -1`; then a `run --once` (the release binary) over that folder as inventory files, stopped
/// once the first result file is there: its peak RSS until then and when that result came.
fn wan_list(wan: &Wan, tmp: &Path) {
    let n = common::size("BENCH_WAN_LIST", 100_000, 10_000);
    let dir = tmp.join("wan-list");
    let root = dir.join("drop");
    let folder = root.join("inbound/inventory");
    fs::create_dir_all(&folder).unwrap();
    for i in 0..n {
        fs::write(folder.join(format!("stock_{i:06}.csv")), format!("sku,quantity\nSKU-{i:06},1\n")).unwrap();
    }
    let mut cfg = wan.srv.config(&root);
    cfg.host = wan.host.clone();
    cfg.port = wan.port;
    let t = Instant::now();
    let mut d = SftpDrop::connect(cfg).expect("connect");
    let listed = d.list("inbound/inventory").expect("list");
    let ours = t.elapsed();
    drop(d);
    assert_eq!(listed.len(), n);
    let batch = dir.join("ls.batch");
    fs::write(&batch, format!("ls -1 {}\n", folder.display())).unwrap();
    let theirs = wan.srv.openssh(&batch, wan.port, &wan.host);
    println!(
        "  list, 25 ms RTT ({}): ours {:.2} s for {n} entries, sftp -b ls -1 {:.2} s",
        wan.label,
        ours.as_secs_f64(),
        theirs.as_secs_f64()
    );
    let k = if n.is_multiple_of(1000) { format!("{}k", n / 1000) } else { n.to_string() };
    ratio_row(&format!("sftp: list {k} files, 25 ms RTT"), ours, theirs, "entries/s", n as f64, 1.0);

    // run --once over the folder, stopped after its first result.
    let sim = sim_with_orders(1);
    let config = wan_config(&dir, wan, &root, &sim.base_url());
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(&config)
        .args(["--quiet", "run", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start run --once");
    let limit = Duration::from_secs(180);
    let first = loop {
        if count_files(&root.join("results")) > 0 {
            break Some(started.elapsed());
        }
        if started.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = child.id() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status: libc::c_int = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    std::mem::forget(child);
    let rss = ru.ru_maxrss as u64 * 1024;
    let first_s = first.map_or(f64::INFINITY, |d| d.as_secs_f64());
    println!(
        "  run --once over {n} entries: first result after {}, peak RSS {:.1} MiB until then",
        first.map_or(format!("more than {} s", limit.as_secs()), |d| format!("{:.2} s", d.as_secs_f64())),
        common::mib(rss)
    );
    let ok_first = first_s <= 10.0 || first_s < ours.as_secs_f64();
    row(
        &format!("sftp: list {k} files, 25 ms RTT: run --once, first result and peak RSS"),
        &format!("first result {first_s:.1} s, peak RSS {:.1} MiB", common::mib(rss)),
        &format!("listing alone {:.1} s", ours.as_secs_f64()),
        "-",
        "first result < listing or <= 10 s; RSS < 128 MiB",
        Some(ok_first && rss < 128 * 1024 * 1024),
    );
}
