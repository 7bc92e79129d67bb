//! A real GnuPG in a temporary home: key generation, export, encryption and decryption through
//! the `gpg` binary, non-interactively (`--batch --pinentry-mode loopback --passphrase`).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The passphrase of every protected key in the home.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Whether `gpg` runs here. Without it the tests skip with a note, unless
/// `STITCH_BRIDGE_REQUIRE_GPG=1` (CI) makes them fail.
pub fn gpg_available() -> bool {
    let found = Command::new("gpg").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return true;
    }
    if std::env::var("STITCH_BRIDGE_REQUIRE_GPG").as_deref() == Ok("1") {
        panic!("gpg is not installed and STITCH_BRIDGE_REQUIRE_GPG=1");
    }
    // Straight to stderr, past the test harness's capture, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: gpg (GnuPG) is not installed; set STITCH_BRIDGE_REQUIRE_GPG=1 to fail instead"
    );
    false
}

/// A GnuPG home of its own; its agent is stopped when dropped.
pub struct Gpg {
    home: tempfile::TempDir,
}

/// A key made in the home: its fingerprint and the long ids of its subkeys by usage.
#[derive(Debug, Clone)]
pub struct Key {
    pub fpr: String,
    /// The primary's long key id (upper-case hex, as gpg prints it).
    pub id: String,
    /// Long ids of the encryption subkeys.
    pub encrypt_ids: Vec<String>,
}

impl Gpg {
    /// A home whose agent protects secret keys with the smallest S2K count: unlocking a key
    /// with gpg's calibrated default (~65M iterations) takes seconds in an unoptimised test
    /// build, and we unlock at every load and every file.
    pub fn new() -> Gpg {
        Self::with_agent_conf("allow-loopback-pinentry\ns2k-count 65536\n")
    }

    /// A home with gpg's default key protection, as a partner's or operator's gpg exports it.
    pub fn with_default_protection() -> Gpg {
        Self::with_agent_conf("allow-loopback-pinentry\n")
    }

    fn with_agent_conf(conf: &str) -> Gpg {
        // A short path: the agent's socket lives in the home and socket paths are limited.
        let home = tempfile::Builder::new().prefix("g").tempdir_in(std::env::temp_dir()).expect("gpg home");
        let g = Gpg { home };
        std::fs::write(g.home.path().join("gpg-agent.conf"), conf).expect("agent conf");
        g
    }

    /// The S2K iteration counts protecting the secret keys in an export, as gpg lists them.
    pub fn protect_counts(&self, export: &[u8]) -> Vec<u64> {
        self.list_packets(export)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("protect count: "))
            .filter_map(|c| c.split_whitespace().next()?.parse().ok())
            .collect()
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn command(&self, passphrase: &str) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", passphrase])
            .args(["--trust-model", "always", "--keyid-format", "long"]);
        c
    }

    /// Runs gpg with `args` (and `stdin`), whatever the outcome.
    pub fn run_with(&self, passphrase: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(passphrase)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gpg");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            // gpg may stop reading early (an error); a broken pipe is then expected.
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait for gpg");
        writer.join().expect("stdin writer");
        out
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_with(PASSPHRASE, args, stdin)
    }

    /// Runs gpg and insists on success; its stdout.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "gpg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// A new key: `primary` algorithm and usage, then subkeys (algorithm, usage); `expire` as
    /// gpg takes it (`never`, `1y`); `extra` options before the command (`--faked-system-time`).
    pub fn generate(
        &self,
        uid: &str,
        primary: (&str, &str),
        subkeys: &[(&str, &str)],
        expire: &str,
        extra: &[&str],
    ) -> Key {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--quick-gen-key", uid, primary.0, primary.1, expire]);
        self.ok(&args, b"");
        let fpr = self.fingerprint(uid);
        for (alg, usage) in subkeys {
            let mut args: Vec<&str> = extra.to_vec();
            args.extend(["--quick-add-key", &fpr, alg, usage, expire]);
            self.ok(&args, b"");
        }
        self.key(&fpr)
    }

    /// The RSA-3072 key gpg makes by default, with its encryption subkey.
    pub fn rsa(&self, uid: &str) -> Key {
        self.generate(uid, ("rsa3072", "sign,cert"), &[("rsa3072", "encr")], "never", &[])
    }

    /// Curve25519: an ed25519 primary and a cv25519 encryption subkey.
    pub fn curve25519(&self, uid: &str) -> Key {
        self.generate(uid, ("ed25519", "sign,cert"), &[("cv25519", "encr")], "never", &[])
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = self.ok(&["--with-colons", "--list-keys", &format!("={uid}")], b"");
        let text = String::from_utf8_lossy(&out);
        let fpr = text.lines().find(|l| l.starts_with("fpr:")).expect("fingerprint line");
        fpr.split(':').nth(9).expect("fingerprint field").to_string()
    }

    /// The key's ids as gpg lists them (`--with-colons`: field 5 is the long id, 12 the usage).
    pub fn key(&self, fpr: &str) -> Key {
        let out = self.ok(&["--with-colons", "--list-keys", fpr], b"");
        let text = String::from_utf8_lossy(&out);
        let mut id = String::new();
        let mut encrypt_ids = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            match f[0] {
                "pub" => id = f[4].to_string(),
                "sub" if f[11].contains('e') => encrypt_ids.push(f[4].to_string()),
                _ => {}
            }
        }
        Key { fpr: fpr.to_string(), id, encrypt_ids }
    }

    pub fn export_public(&self, fpr: &str, armor: bool) -> Vec<u8> {
        let mut args = vec!["--export-options", "export-minimal"];
        if armor {
            args.push("--armor");
        }
        args.extend(["--export", fpr]);
        self.ok(&args, b"")
    }

    pub fn export_secret(&self, fpr: &str, armor: bool) -> Vec<u8> {
        let mut args = Vec::new();
        if armor {
            args.push("--armor");
        }
        args.extend(["--export-secret-keys", fpr]);
        self.ok(&args, b"")
    }

    /// Revokes the key with the revocation certificate gpg wrote at generation (it is stored with
    /// a `:` before the armour line so that it cannot be imported by accident).
    pub fn revoke(&self, fpr: &str) {
        let cert = self.home.path().join("openpgp-revocs.d").join(format!("{fpr}.rev"));
        let text = std::fs::read_to_string(&cert).expect("revocation certificate");
        let text = text.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----");
        self.ok(&["--import"], text.as_bytes());
    }

    /// `gpg --decrypt` of `msg`: (plaintext, status lines, success).
    pub fn decrypt(&self, msg: &[u8]) -> (Vec<u8>, String, bool) {
        let out = self.run(&["--status-fd", "2", "--decrypt"], msg);
        (out.stdout, String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
    }

    /// The packets of a message as `gpg --list-packets` shows them.
    pub fn list_packets(&self, msg: &[u8]) -> String {
        let out = self.run(&["--list-packets"], msg);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn version(&self) -> String {
        let out = self.ok(&["--version"], b"");
        String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
    }

    /// A file in the home (key exports for the code under test to load).
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, bytes).expect("write file");
        p
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Stop the agent this home started (by its home, nothing else).
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
