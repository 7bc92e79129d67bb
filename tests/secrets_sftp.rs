//! Secrets over sFTP never leak: an account whose drop is reached with a password
//! (`sftp_password_env`, russh server) and one reached with a passphrase-protected ed25519 key
//! (`sftp_key_file` + `sftp_key_passphrase_env`, russh server and OpenSSH `sshd`) run the real
//! binary with debug logging — good runs, then a run with a wrong password or passphrase —
//! plus `status`, `status --json`, `test` and `--help`. Neither the password, the passphrase,
//! the wrong ones nor the Stitch token may appear in any output, drop file, ledger byte (and
//! its `-wal`), or anything else the bridge wrote; the wrong-credential run fails, naming the
//! account and what was refused.

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

use bridge::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use stitch_bridge::drop::sftp::SftpAuth;
use support::TestServer;

const PASSWORD_ENV: &str = "SB_SECRETS_SFTP_PASSWORD";
const PASSPHRASE_ENV: &str = "SB_SECRETS_SFTP_PASSPHRASE";
const PASSPHRASE: &str = "PASSPHRASE-k7Qx2mVb-4410";
const WRONG_PASSWORD: &str = "WRONG-PASSWORD-r8Tn3c-9921";
const WRONG_PASSPHRASE: &str = "WRONG-PASSPHRASE-w4Lp9z-7302";

/// Every secret of these tests, as bytes to look for.
fn secrets() -> [&'static str; 5] {
    [support::russh_server::PASSWORD, PASSPHRASE, WRONG_PASSWORD, WRONG_PASSPHRASE, TOKEN]
}

/// `srv`'s trusted client key, copied to `dir` and encrypted with [`PASSPHRASE`]: by
/// `ssh-keygen -p` when OpenSSH is installed (what an operator would do), otherwise with the
/// ssh-key crate (same OpenSSH format: bcrypt-pbkdf, aes256-ctr).
fn encrypted_key(srv: &TestServer, dir: &Path) -> PathBuf {
    let SftpAuth::Key { path: plain, .. } = srv.config().auth else { unreachable!() };
    let out = dir.join("client_ed25519_with_passphrase");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let keygen = std::env::split_paths(&path).map(|d| d.join("ssh-keygen")).find(|p| p.is_file());
    match keygen {
        Some(kg) => {
            fs::copy(&plain, &out).unwrap();
            let st = Command::new(kg)
                .args(["-q", "-p", "-P", "", "-N", PASSPHRASE, "-f"])
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "ssh-keygen -p failed");
        }
        None => {
            use russh::keys::ssh_key::{Cipher, Kdf, PrivateKey};
            let key = PrivateKey::read_openssh_file(&plain).unwrap();
            let kdf = Kdf::Bcrypt { salt: rand::random::<[u8; 16]>().to_vec(), rounds: 16 };
            let enc = key.encrypt_with(Cipher::Aes256Ctr, kdf, rand::random(), PASSPHRASE).unwrap();
            support::russh_server::write_private_key(&enc, &out);
        }
    }
    let key = russh::keys::ssh_key::PrivateKey::read_openssh_file(&out).unwrap();
    assert!(key.is_encrypted(), "the key file needs the passphrase");
    out
}

enum Cred {
    Password,
    KeyWithPassphrase(PathBuf),
}

/// One installation (config, token file, ledger) whose only account "wh" uses `srv`'s drop.
struct Install {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Install {
    fn new(srv: &TestServer, sim_url: &str, cred: &Cred) -> Install {
        let dir = tempfile::tempdir().unwrap();
        let cfg = srv.config();
        let auth = match cred {
            Cred::Password => format!("sftp_password_env = \"{PASSWORD_ENV}\"\n"),
            Cred::KeyWithPassphrase(key) => {
                format!("sftp_key_file = \"{}\"\nsftp_key_passphrase_env = \"{PASSPHRASE_ENV}\"\n", key.display())
            }
        };
        let drop = format!("sftp://{}@127.0.0.1:{}{}", cfg.user, cfg.port, cfg.root);
        let extra = format!("settle_seconds = 0\n{auth}known_hosts = \"{}\"\n", cfg.known_hosts.display());
        let config = write_config(dir.path(), &drop, sim_url, &extra);
        Install { dir, config }
    }

    /// Run the binary with debug logging and `secret` in the credential's variable.
    fn run(&self, args: &[&str], cred: &Cred, secret: &str) -> (Option<i32>, String) {
        let var = match cred {
            Cred::Password => PASSWORD_ENV,
            Cred::KeyWithPassphrase(_) => PASSPHRASE_ENV,
        };
        let out = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("STITCH_BRIDGE_LOG", "debug")
            .env(var, secret)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }

    /// Every file the bridge keeps next to its config (ledger, `-wal`, `-shm`...), except the
    /// token file, which holds the token by design.
    fn files(&self) -> Vec<PathBuf> {
        let token = self.dir.path().join("secrets/token");
        every_file(self.dir.path()).into_iter().filter(|p| *p != token).collect()
    }
}

fn every_file(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Totals over all scenarios, for the summary line.
#[derive(Default)]
struct Scanned {
    outputs: usize,
    files: usize,
    bytes: usize,
}

/// Good runs, a wrong-credential run, status, test and help for one account on `srv`; then
/// every output and file is searched for every secret.
fn scenario(srv: &TestServer, cred: Cred, what: &str, total: &mut Scanned) {
    let sim = sim();
    let inst = Install::new(srv, &sim.base_url(), &cred);
    let (right, wrong) = match cred {
        Cred::Password => (support::russh_server::PASSWORD, WRONG_PASSWORD),
        Cred::KeyWithPassphrase(_) => (PASSPHRASE, WRONG_PASSPHRASE),
    };
    let root = srv.local_root();
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    drop_file(&root, "inbound/orders/orders.csv", ORDERS.as_bytes());
    let mut outputs: Vec<(String, String)> = Vec::new();

    for args in
        [&["run", "--once"][..], &["run", "--once", "--json"], &["status"], &["status", "--json"], &["test", "wh"]]
    {
        let (code, out) = inst.run(args, &cred, right);
        assert_eq!(code, Some(0), "{what}: `{}` with the right secret: {out}", args.join(" "));
        outputs.push((args.join(" "), out));
    }
    let t = tree(&root);
    assert!(
        t.contains(&"archive/DATE/stock.csv".to_string()) && t.contains(&"results/orders.csv.result.csv".to_string()),
        "{what}: the good run did its work over sFTP: {t:?}"
    );
    assert!(t.iter().any(|p| p.starts_with("outbound/orders/")), "{what}: orders were downloaded: {t:?}");

    // The wrong secret: refused with a message naming the account and the credential, work
    // left alone for the next run, and the failure recorded (so `status` shows it).
    drop_file(&root, "inbound/orders/later.csv", ORDERS.replace("PO-", "LATER-").as_bytes());
    let (code, out) = inst.run(&["run", "--once"], &cred, wrong);
    assert_eq!(code, Some(stitch_bridge::engine::exit::ATTENTION), "{what}: wrong secret needs a person: {out}");
    let needles: &[&str] = match cred {
        Cred::Password => {
            &["account wh", "NEEDS ATTENTION (sftp_auth)", "password authentication as", "refused the password"]
        }
        Cred::KeyWithPassphrase(_) => {
            &["account wh", "NEEDS ATTENTION (sftp_auth)", "key authentication as", "wrong passphrase"]
        }
    };
    for n in needles {
        assert!(out.contains(n), "{what}: wrong secret: {n:?} missing from:\n{out}");
    }
    outputs.push(("run --once (wrong secret)".into(), out));
    assert!(root.join("inbound/orders/later.csv").exists(), "{what}: the file waits for the next run");
    for args in [&["run", "--once", "--json"][..], &["status"], &["status", "--json"], &["test", "wh"]] {
        let (_, out) = inst.run(args, &cred, wrong);
        if args[0] == "test" {
            assert!(out.contains("FAIL drop"), "{what}: `test` reports the refused drop: {out}");
        }
        outputs.push((format!("{} (wrong secret)", args.join(" ")), out));
    }

    // Help of every subcommand, with the secrets in the environment.
    for sub in ["", "validate", "run", "demo", "sim", "test", "auth", "status", "resume", "init", "watch", "trust"] {
        let mut args: Vec<&str> = sub.split_whitespace().collect();
        args.push("--help");
        let (code, out) = inst.run(&args, &cred, right);
        assert_eq!(code, Some(0), "{sub} --help: {out}");
        outputs.push((format!("{sub} --help"), out));
    }

    for (cmd, out) in &outputs {
        for s in secrets() {
            assert!(!out.contains(s), "{what}: secret {s:?} leaked in the output of `{cmd}`:\n{out}");
        }
    }
    let mut files = every_file(&root);
    files.extend(inst.files());
    assert!(files.iter().any(|f| f.ends_with("state/ledger.sqlite")), "{what}: the ledger is scanned: {files:?}");
    for f in &files {
        let bytes = fs::read(f).unwrap();
        total.bytes += bytes.len();
        for s in secrets() {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{what}: secret {s:?} found in {}",
                f.display()
            );
        }
    }
    total.outputs += outputs.len();
    total.files += files.len();
}

#[test]
fn sftp_passwords_and_passphrases_never_leak() {
    let mut total = Scanned::default();
    let mut ran = Vec::new();
    {
        let srv = TestServer::russh();
        scenario(&srv, Cred::Password, "russh, password", &mut total);
        ran.push("russh password");
    }
    {
        let srv = TestServer::russh();
        let key = encrypted_key(&srv, srv.scratch());
        scenario(&srv, Cred::KeyWithPassphrase(key), "russh, key with passphrase", &mut total);
        ran.push("russh key+passphrase");
    }
    if let Some(srv) = TestServer::sshd() {
        let key = encrypted_key(&srv, srv.scratch());
        scenario(&srv, Cred::KeyWithPassphrase(key), "sshd, key with passphrase", &mut total);
        ran.push("sshd key+passphrase");
    }
    println!(
        "secrets-summary: sftp scenarios={:?} outputs={} files={} bytes_scanned={} secrets={}",
        ran,
        total.outputs,
        total.files,
        total.bytes,
        secrets().len()
    );
}
