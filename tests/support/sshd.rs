//! OpenSSH `sshd` as an unprivileged-style test server: own host key, client key and config in a
//! temp folder, listening on a free loopback port, killed on drop.
//!
//! Without `sshd`/`ssh-keygen` the server is skipped (with a printed reason) unless
//! `STITCH_BRIDGE_REQUIRE_SSHD=1`, which turns a missing sshd into a test failure.

use base64::Engine as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stitch_bridge::drop::sftp::{SftpAuth, SftpConfig};

pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    pub client_key_path: PathBuf,
    pub known_hosts: PathBuf,
    /// Raw public host key blob.
    pub host_key: Vec<u8>,
    log: Arc<Mutex<Vec<String>>>,
}

fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

fn keygen(keygen: &Path, path: &Path) {
    let st = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// Public key blob from a `.pub` file (`type base64 comment`).
fn pub_blob(pub_file: &Path) -> Vec<u8> {
    let text = fs::read_to_string(pub_file).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD.decode(b64).expect("a .pub file holds base64")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Sshd {
    /// Start a server, or `None` (after printing why) when OpenSSH is not installed.
    pub fn start() -> Option<Sshd> {
        let sbin = ["/usr/sbin", "/usr/local/sbin", "/sbin"];
        let (Some(sshd), Some(kg)) = (find_program("sshd", &sbin), find_program("ssh-keygen", &sbin)) else {
            if std::env::var("STITCH_BRIDGE_REQUIRE_SSHD").as_deref() == Ok("1") {
                panic!("sshd or ssh-keygen not found and STITCH_BRIDGE_REQUIRE_SSHD=1");
            }
            eprintln!("skipping OpenSSH sshd variant: sshd or ssh-keygen not found (install openssh-server)");
            return None;
        };
        // A free port can be taken between probe and bind; try a few.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&sshd, &kg) {
                Ok(s) => return Some(s),
                Err(e) => {
                    // sshd started as root wants its privilege-separation folder (normally made
                    // by the package's service unit); create exactly the one it names.
                    let marker = "Missing privilege separation directory: ";
                    if let Some(dir) = e.lines().find_map(|l| l.split(marker).nth(1)) {
                        let _ = fs::create_dir_all(dir.trim());
                    }
                    last = e;
                }
            }
        }
        panic!("sshd did not start: {last}");
    }

    fn try_start(sshd: &Path, kg: &Path) -> Result<Sshd, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("drop")).unwrap();
        keygen(kg, &d.join("host_ed25519"));
        keygen(kg, &d.join("client_ed25519"));
        fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = d.join("sshd_config");
        fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                host = d.join("host_ed25519").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // sshd refuses relative paths to itself; it is found by absolute path above.
        let mut child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn sshd: {e}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            // Keep draining stderr for the server's lifetime so it never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let ready = line.contains("Server listening on");
                log2.lock().unwrap().push(line);
                if ready {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => break,
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        return Err(format!("sshd exited ({st}): {}", log.lock().unwrap().join("\n")));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("sshd not ready: {}", log.lock().unwrap().join("\n")));
                    }
                }
            }
        }
        let known_hosts = d.join("known_hosts");
        let host_key = pub_blob(&d.join("host_ed25519.pub"));
        stitch_bridge::drop::sftp::record_host_key(&known_hosts, "127.0.0.1", port, &host_key).unwrap();
        Ok(Sshd {
            client_key_path: d.join("client_ed25519"),
            known_hosts,
            host_key,
            port,
            user: current_user(),
            child,
            log,
            dir,
        })
    }

    /// Local folder that is the drop root (sshd is not chrooted: same absolute path remotely).
    pub fn local_root(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> SftpConfig {
        let mut cfg = SftpConfig::new(
            "127.0.0.1",
            self.port,
            &self.user,
            self.local_root().to_str().unwrap(),
            SftpAuth::Key { path: self.client_key_path.clone(), passphrase: None },
            self.known_hosts.clone(),
        );
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.op_timeout = Duration::from_secs(10);
        cfg.max_sessions = 4;
        cfg
    }

    /// sshd's stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
