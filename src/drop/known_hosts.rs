//! Host-key verification against an OpenSSH `known_hosts` file, matched as OpenSSH matches it
//! (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): comma lists of patterns with `*` and `?`, `!`
//! negation (a negated match makes the line not match, whatever else matches), `[host]:port`
//! names for non-standard ports, hashed `|1|salt|hmac` entries, and the `@revoked` and
//! `@cert-authority` markers.
//!
//! We match ourselves rather than through libssh2 because libssh2 knows no wildcards (so a key
//! under `@revoked *` was accepted), no `@revoked`, accepts a key recorded for the bare host
//! when a non-standard port is used, and gives up on a whole file at its first bad line. A line
//! we cannot parse is skipped, as OpenSSH skips it.
//!
//! One deliberate difference: `ssh` falls back to a key recorded for the bare host when nothing
//! is recorded for `[host]:port`; we do not (a key trusted for one port's service does not vouch
//! for another's). `tests/known_hosts_ssh.rs` compares our verdicts with `ssh`'s.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a server's host key was refused. Wrapped in an `io::Error` of kind `PermissionDenied`;
/// callers can `downcast_ref` the inner error to tell the cases apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyError {
    /// No key of any kind is recorded for this host (or none of the presented type).
    Unknown { host: String, key_type: String, fingerprint: String, known_hosts: PathBuf, other_types: Vec<String> },
    /// A key of the same type is recorded and differs: possible interception.
    Changed { host: String, key_type: String, fingerprint: String, recorded: Vec<String>, known_hosts: PathBuf },
    /// The presented key is listed as `@revoked`.
    Revoked { host: String, fingerprint: String, known_hosts: PathBuf },
}

impl HostKeyError {
    /// The message with the command that fixes it for `account` (the drop itself does not know
    /// which account uses it; the engine does, so it asks for this text).
    pub fn for_account(&self, account: &str) -> String {
        self.message(account)
    }

    fn message(&self, account: &str) -> String {
        match self {
            HostKeyError::Unknown { host, key_type, fingerprint, known_hosts, other_types } => {
                let mut m = format!(
                    "host key of {host} is not trusted: the server presented {key_type} key {fingerprint}, \
                     which is not recorded in {}",
                    known_hosts.display()
                );
                if !other_types.is_empty() {
                    m.push_str(&format!(" (only {} keys are recorded for this host)", other_types.join(", ")));
                }
                m.push_str(&format!(
                    ". Confirm this fingerprint with the warehouse out of band, then run \
                     `stitch-bridge trust {account}`"
                ));
                m
            }
            HostKeyError::Changed { host, key_type, fingerprint, recorded, known_hosts } => format!(
                "WARNING: HOST KEY OF {host} HAS CHANGED. The server presented {key_type} key {fingerprint} \
                 but {} records {} for it. Someone may be intercepting the connection \
                 (man-in-the-middle), or the warehouse replaced its server key. Refusing to connect; \
                 confirm the new key with the warehouse, then run `stitch-bridge trust {account} --replace`",
                known_hosts.display(),
                recorded.join(", ")
            ),
            HostKeyError::Revoked { host, fingerprint, known_hosts } => format!(
                "host key {fingerprint} of {host} is marked @revoked in {}; refusing to connect. \
                 Ask the warehouse for its new server key; once confirmed, run `stitch-bridge trust {account}`",
                known_hosts.display()
            ),
        }
    }
}

impl fmt::Display for HostKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message("ACCOUNT"))
    }
}

impl std::error::Error for HostKeyError {}

/// OpenSSH-style fingerprint of a raw public key blob: `SHA256:` + unpadded base64.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

/// The algorithm name embedded at the start of a public key blob (`ssh-ed25519`, ...).
pub fn key_type_of(key: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let name = key.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_owned)
}

/// The name known_hosts uses for a host: bare on port 22, `[host]:port` otherwise.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Keys recorded for one host in a known_hosts file.
#[derive(Debug, Default)]
pub struct Recorded {
    pub trusted: Vec<Vec<u8>>,
    pub revoked: Vec<Vec<u8>>,
}

impl Recorded {
    /// Key types recorded for this host, in file order, without duplicates: the connection
    /// prefers these so that a host with only an RSA key on file is not refused for offering
    /// ed25519 first.
    pub fn key_types(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.trusted.iter().filter_map(|k| key_type_of(k)) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// What a line says about the key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One usable known_hosts line: marker, host field (patterns or a hashed name) and key blob.
#[derive(Debug)]
struct Entry<'a> {
    marker: Marker,
    hosts: &'a str,
    key: Vec<u8>,
}

/// Parse a line as OpenSSH's `hostkeys_foreach` does; `None` for comments, blank lines, unknown
/// markers and keys that do not decode (OpenSSH skips those too).
fn parse_entry(raw: &str) -> Option<Entry<'_>> {
    let line = raw.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (marker, rest) = match line.strip_prefix('@') {
        Some(marked) => {
            let (word, rest) = marked.split_once([' ', '\t'])?;
            let marker = match word {
                "revoked" => Marker::Revoked,
                "cert-authority" => Marker::CertAuthority,
                _ => return None,
            };
            (marker, rest)
        }
        None => (Marker::None, line),
    };
    let mut fields = rest.split_whitespace();
    let (hosts, key_type, b64) = (fields.next()?, fields.next()?, fields.next()?);
    let key = STANDARD.decode(b64).ok()?;
    // The declared type must be the blob's own, as `sshkey_read` insists.
    (key_type_of(&key).as_deref() == Some(key_type)).then_some(Entry { marker, hosts, key })
}

/// Outcome of OpenSSH's `match_pattern_list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMatch {
    No,
    Yes,
    Negated,
}

/// OpenSSH's `match_pattern_list` with lower-casing: the first negated subpattern that matches
/// wins; a subpattern of 1023 bytes or more makes the whole list fail, as there.
fn match_pattern_list(name: &str, list: &str) -> ListMatch {
    let mut positive = false;
    for sub in list.split(',') {
        let (negated, pat) = match sub.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, sub),
        };
        if pat.len() >= 1023 {
            return ListMatch::No;
        }
        if match_pattern(name.as_bytes(), pat.to_ascii_lowercase().as_bytes()) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Yes
    } else {
        ListMatch::No
    }
}

/// `*` (any run, dots included) and `?` (one byte) glob, in O(len * pattern) with the classic
/// backtrack-to-last-star walk (OpenSSH recurses, which is exponential on many stars).
fn match_pattern(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A hashed host field `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` names `name`
/// (OpenSSH's `host_hash`: the salt must be 20 bytes, the whole field must compare equal).
fn hashed_matches(field: &str, name: &str) -> bool {
    let Some((salt64, _)) = field.strip_prefix("|1|").and_then(|r| r.split_once('|')) else {
        return false;
    };
    let Ok(salt) = STANDARD.decode(salt64) else { return false };
    if salt.len() != 20 {
        return false;
    }
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.update(name.as_bytes());
    let expect = format!("|1|{}|{}", STANDARD.encode(&salt), STANDARD.encode(mac.finalize().into_bytes()));
    expect == field
}

/// Does a line's host field name `name` (already `[host]:port` when the port is not 22)?
fn hosts_match(hosts: &str, name: &str) -> bool {
    if hosts.starts_with('|') {
        hashed_matches(hosts, name)
    } else {
        match_pattern_list(name, hosts) == ListMatch::Yes
    }
}

/// Does the line name `name` itself — hashed, or a literal (wildcard-free, non-negated)
/// pattern — rather than only through a wildcard that also covers other hosts?
fn names_literally(hosts: &str, name: &str) -> bool {
    if hosts.starts_with('|') {
        return hashed_matches(hosts, name);
    }
    hosts_match(hosts, name) && hosts.split(',').any(|p| !p.contains(['*', '?', '!']) && p.eq_ignore_ascii_case(name))
}

/// The lookup name OpenSSH uses, lower-cased as ssh does with the host it is given.
fn lookup_name(host: &str, port: u16) -> String {
    host_pattern(host, port).to_ascii_lowercase()
}

fn read_known_hosts(known_hosts: &Path) -> io::Result<String> {
    match fs::File::open(known_hosts) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            Ok(s)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Read the keys recorded for `host:port`. A missing file means nothing is recorded.
/// `@cert-authority` lines are ignored: we do not accept host certificates.
pub fn recorded_keys(known_hosts: &Path, host: &str, port: u16) -> io::Result<Recorded> {
    let text = read_known_hosts(known_hosts)?;
    Ok(recorded_in(&text, &lookup_name(host, port)))
}

fn recorded_in(text: &str, name: &str) -> Recorded {
    let mut out = Recorded::default();
    for e in text.lines().filter_map(parse_entry) {
        if !hosts_match(e.hosts, name) {
            continue;
        }
        match e.marker {
            Marker::None => out.trusted.push(e.key),
            Marker::Revoked => out.revoked.push(e.key),
            Marker::CertAuthority => {}
        }
    }
    out
}

/// Accept `key` for `host:port` only if known_hosts records exactly this key. There is no
/// trust-on-first-use: an unknown key is an error naming its fingerprint.
pub fn verify_host_key(known_hosts: &Path, host: &str, port: u16, key: &[u8]) -> io::Result<()> {
    let rec = recorded_keys(known_hosts, host, port)?;
    let host_name = host_pattern(host, port);
    let fp = fingerprint(key);
    if rec.revoked.iter().any(|k| k == key) {
        return Err(refusal(HostKeyError::Revoked {
            host: host_name,
            fingerprint: fp,
            known_hosts: known_hosts.into(),
        }));
    }
    if rec.trusted.iter().any(|k| k == key) {
        return Ok(());
    }
    let key_type = key_type_of(key).unwrap_or_else(|| "unknown".into());
    let same_type: Vec<String> = rec
        .trusted
        .iter()
        .filter(|k| key_type_of(k).as_deref() == Some(key_type.as_str()))
        .map(|k| fingerprint(k))
        .collect();
    let err = if same_type.is_empty() {
        HostKeyError::Unknown {
            host: host_name,
            key_type,
            fingerprint: fp,
            known_hosts: known_hosts.into(),
            other_types: rec.key_types(),
        }
    } else {
        HostKeyError::Changed {
            host: host_name,
            key_type,
            fingerprint: fp,
            recorded: same_type,
            known_hosts: known_hosts.into(),
        }
    };
    Err(refusal(err))
}

fn refusal(e: HostKeyError) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, e)
}

/// Append `key` for `host:port` to `known_hosts` in OpenSSH format (for `stitch-bridge trust`).
/// Creates the file with mode 0600 (and its folder with 0700) if missing.
pub fn record_host_key(known_hosts: &Path, host: &str, port: u16, key: &[u8]) -> io::Result<()> {
    let key_type =
        key_type_of(key).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an SSH public key blob"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid host name {host:?}")));
    }
    if let Some(dir) = known_hosts.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut f = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(known_hosts)?;
    // Never glue our line onto a last line that lacks its newline.
    let len = f.metadata()?.len();
    let mut prefix = "";
    if len > 0 {
        use std::io::{Seek, SeekFrom};
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            prefix = "\n";
        }
    }
    let line = format!("{prefix}{} {key_type} {}\n", host_pattern(host, port), STANDARD.encode(key));
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

/// Remove the non-revoked lines recording a `key_type` key for exactly `host:port` (what
/// `trust --replace` does after a confirmed key change). Other hosts, other key types,
/// comments and `@revoked` lines stay. The file is replaced atomically, keeping mode 0600.
/// Returns how many lines were removed.
pub fn remove_host_key_type(known_hosts: &Path, host: &str, port: u16, key_type: &str) -> io::Result<usize> {
    let text = match fs::read_to_string(known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let name = lookup_name(host, port);
    let mut kept = String::with_capacity(text.len());
    let mut removed = 0;
    for raw in text.lines() {
        let matches = parse_entry(raw).is_some_and(|e| {
            e.marker == Marker::None
                && key_type_of(&e.key).as_deref() == Some(key_type)
                && names_literally(e.hosts, &name)
        });
        if matches {
            removed += 1;
        } else {
            kept.push_str(raw);
            kept.push('\n');
        }
    }
    if removed > 0 {
        let dir = known_hosts.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(kept.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(known_hosts).map_err(|e| e.error)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key blob (from `ssh-keygen`), so libssh2 accepts the lines.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIM0c1gAdyRrTHyEXoHRhlV3zhdrtEOn2O44yRcKttklR";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICIyRtdTyTmgBvW6W4SdSieOPQYhGO3NPdtr6O9ip4QQ";

    #[test]
    fn patterns_as_openssh_matches_them() {
        let m = |list: &str, name: &str| match_pattern_list(name, list);
        assert_eq!(m("*", "[127.0.0.1]:2222"), ListMatch::Yes);
        assert_eq!(m("127.0.0.?", "127.0.0.1"), ListMatch::Yes);
        assert_eq!(m("127.0.0.?", "127.0.0.10"), ListMatch::No);
        assert_eq!(m("127.0.0.?", "[127.0.0.1]:2222"), ListMatch::No);
        assert_eq!(m("*.example,!foo.example", "foo.example"), ListMatch::Negated);
        assert_eq!(m("!foo.example,*.example", "bar.example"), ListMatch::Yes);
        assert_eq!(m("*.EXAMPLE", "a.example"), ListMatch::Yes);
        assert_eq!(m("a*b*c*d", "axxbxxcxxd"), ListMatch::Yes);
        assert_eq!(m("a*b*c*d", "axxbxxcxx"), ListMatch::No);
        assert_eq!(m("**", ""), ListMatch::Yes);
        assert_eq!(m("", "x"), ListMatch::No);
        let long = "x".repeat(1023);
        assert_eq!(m(&format!("*,{long}"), "h"), ListMatch::No, "an over-long subpattern fails the list");
        // Many stars stay fast (OpenSSH's recursion would not).
        assert_eq!(m(&format!("{}b", "*a".repeat(40)), &"a".repeat(200)), ListMatch::No);
    }

    #[test]
    fn classify_unknown_changed_match_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("sub/known_hosts");
        let a = STANDARD.decode(KEY_A).unwrap();
        let b = STANDARD.decode(KEY_B).unwrap();
        assert_eq!(key_type_of(&a).as_deref(), Some("ssh-ed25519"));
        let e = verify_host_key(&kh, "h.example", 2222, &a).unwrap_err();
        assert!(e.to_string().contains(&fingerprint(&a)), "{e}");
        record_host_key(&kh, "h.example", 2222, &a).unwrap();
        verify_host_key(&kh, "h.example", 2222, &a).unwrap();
        // Recorded for port 2222 only: port 22 and another port are unknown.
        let e = verify_host_key(&kh, "h.example", 22, &a).unwrap_err();
        assert!(matches!(e.get_ref().unwrap().downcast_ref::<HostKeyError>(), Some(HostKeyError::Unknown { .. })));
        let e = verify_host_key(&kh, "h.example", 2222, &b).unwrap_err();
        match e.get_ref().unwrap().downcast_ref::<HostKeyError>() {
            Some(HostKeyError::Changed { recorded, fingerprint: fp, .. }) => {
                assert_eq!(recorded, &vec![fingerprint(&a)]);
                assert_eq!(fp, &fingerprint(&b));
            }
            other => panic!("{other:?}"),
        }
        let text = fs::read_to_string(&kh).unwrap();
        assert_eq!(text, format!("[h.example]:2222 ssh-ed25519 {KEY_A}\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&kh).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn hashed_entries_bad_lines_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let a = STANDARD.decode(KEY_A).unwrap();
        let b = STANDARD.decode(KEY_B).unwrap();
        let hashed = HASHED_LINE;
        let text = format!(
            "# comment\nbogus line\nother.example sk-ssh-ed25519@openssh.com AAAAweird\n{hashed}\n@revoked 10.0.0.9 ssh-ed25519 {KEY_B}\n10.0.0.9 ssh-ed25519 {KEY_B}\n"
        );
        fs::write(&kh, text).unwrap();
        verify_host_key(&kh, "127.0.0.1", 2222, &a).unwrap();
        assert!(verify_host_key(&kh, "127.0.0.1", 22, &a).is_err());
        let e = verify_host_key(&kh, "10.0.0.9", 22, &b).unwrap_err();
        assert!(matches!(e.get_ref().unwrap().downcast_ref::<HostKeyError>(), Some(HostKeyError::Revoked { .. })));
    }

    #[test]
    fn remove_only_that_hosts_key_type() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let text = format!(
            "# keep\n[h]:2222 ssh-ed25519 {KEY_A}\n[h]:2223 ssh-ed25519 {KEY_A}\n@revoked [h]:2222 ssh-ed25519 {KEY_B}\n{HASHED_LINE}\n"
        );
        fs::write(&kh, &text).unwrap();
        assert_eq!(remove_host_key_type(&kh, "h", 2222, "ssh-rsa").unwrap(), 0);
        assert_eq!(remove_host_key_type(&kh, "h", 2222, "ssh-ed25519").unwrap(), 1);
        assert_eq!(remove_host_key_type(&kh, "127.0.0.1", 2222, "ssh-ed25519").unwrap(), 1, "hashed line");
        let left = fs::read_to_string(&kh).unwrap();
        assert_eq!(left, format!("# keep\n[h]:2223 ssh-ed25519 {KEY_A}\n@revoked [h]:2222 ssh-ed25519 {KEY_B}\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&kh).unwrap().permissions().mode() & 0o777, 0o600);
    }

    /// `[127.0.0.1]:2222` with KEY_A, hashed by `ssh-keygen -H` (HMAC-SHA1 keyed by the salt).
    const HASHED_LINE: &str = "|1|+C0nebMNOJ06qk2wqTGvEP/MB/0=|TQ0YGLZNHguCe8R3XDWRrtsaew0= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM0c1gAdyRrTHyEXoHRhlV3zhdrtEOn2O44yRcKttklR";
}
