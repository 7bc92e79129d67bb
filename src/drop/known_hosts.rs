//! Host-key verification against an OpenSSH `known_hosts` file.
//!
//! libssh2 does the host matching (plain names, comma lists and hashed `|1|salt|hash` entries),
//! but we classify the result ourselves because `KnownHosts::check_port` also accepts a key
//! recorded for the bare host when a non-standard port is used, `read_file` gives up on the
//! whole file at the first line it cannot parse, and `@revoked` markers are not understood.
//! Wildcard patterns are not supported: such lines never match, which fails safe (refusal).

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

impl fmt::Display for HostKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKeyError::Unknown { host, key_type, fingerprint, known_hosts, other_types } => {
                write!(
                    f,
                    "host key of {host} is not trusted: the server presented {key_type} key {fingerprint}, \
                     which is not recorded in {}",
                    known_hosts.display()
                )?;
                if !other_types.is_empty() {
                    write!(f, " (only {} keys are recorded for this host)", other_types.join(", "))?;
                }
                write!(
                    f,
                    ". Confirm this fingerprint with the warehouse out of band, then run \
                     `stitch-bridge trust ACCOUNT` for the account using this drop"
                )
            }
            HostKeyError::Changed { host, key_type, fingerprint, recorded, known_hosts } => write!(
                f,
                "WARNING: HOST KEY OF {host} HAS CHANGED. The server presented {key_type} key {fingerprint} \
                 but {} records {} for it. Someone may be intercepting the connection \
                 (man-in-the-middle), or the warehouse replaced its server key. Refusing to connect; \
                 confirm the new key with the warehouse, remove the old line and run \
                 `stitch-bridge trust ACCOUNT`",
                known_hosts.display(),
                recorded.join(", ")
            ),
            HostKeyError::Revoked { host, fingerprint, known_hosts } => write!(
                f,
                "host key {fingerprint} of {host} is marked @revoked in {}; refusing to connect",
                known_hosts.display()
            ),
        }
    }
}

impl std::error::Error for HostKeyError {}

/// OpenSSH-style fingerprint of a raw public key blob: `SHA256:` + unpadded base64.
pub fn fingerprint(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let mut s = base64_encode(&digest);
    while s.ends_with('=') {
        s.pop();
    }
    format!("SHA256:{s}")
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

/// Read the keys recorded for `host:port`. A missing file means nothing is recorded.
pub fn recorded_keys(known_hosts: &Path, host: &str, port: u16) -> io::Result<Recorded> {
    let text = match fs::File::open(known_hosts) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            s
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let pattern = host_pattern(host, port);
    let session = ssh2::Session::new().map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = Recorded::default();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (revoked, rest) = match line.strip_prefix('@') {
            Some(marked) => match marked.split_once(char::is_whitespace) {
                Some(("revoked", rest)) => (true, rest.trim_start()),
                // @cert-authority and unknown markers: we do not use certificates.
                _ => continue,
            },
            None => (false, line),
        };
        let mut fields = rest.split_whitespace();
        let (Some(_hosts), Some(_ktype), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(key) = base64_decode(b64) else { continue };
        // One line at a time so an unsupported key type only skips its own line.
        let Ok(mut kh) = session.known_hosts() else { continue };
        if kh.read_str(rest, ssh2::KnownHostFileKind::OpenSSH).is_err() {
            continue;
        }
        // `check` (port -1) matches exactly `pattern`, never the bare host for another port.
        if matches!(kh.check(&pattern, &key), ssh2::CheckResult::Match) {
            if revoked {
                out.revoked.push(key);
            } else {
                out.trusted.push(key);
            }
        }
    }
    Ok(out)
}

/// Accept `key` for `host:port` only if known_hosts records exactly this key. There is no
/// trust-on-first-use: an unknown key is an error naming its fingerprint.
pub fn verify_host_key(known_hosts: &Path, host: &str, port: u16, key: &[u8]) -> io::Result<()> {
    let rec = recorded_keys(known_hosts, host, port)?;
    let host_name = host_pattern(host, port);
    let fp = fingerprint(key);
    if rec.revoked.iter().any(|k| k == key) {
        return Err(refusal(HostKeyError::Revoked { host: host_name, fingerprint: fp, known_hosts: known_hosts.into() }));
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
        HostKeyError::Changed { host: host_name, key_type, fingerprint: fp, recorded: same_type, known_hosts: known_hosts.into() }
    };
    Err(refusal(err))
}

fn refusal(e: HostKeyError) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, e)
}

/// Append `key` for `host:port` to `known_hosts` in OpenSSH format (for `stitch-bridge trust`).
/// Creates the file with mode 0600 (and its folder with 0700) if missing.
pub fn record_host_key(known_hosts: &Path, host: &str, port: u16, key: &[u8]) -> io::Result<()> {
    let key_type = key_type_of(key)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an SSH public key blob"))?;
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
    let line = format!("{prefix}{} {key_type} {}\n", host_pattern(host, port), base64_encode(key));
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
    let pattern = host_pattern(host, port);
    let session = ssh2::Session::new().map_err(|e| io::Error::other(e.to_string()))?;
    let mut kept = String::with_capacity(text.len());
    let mut removed = 0;
    for raw in text.lines() {
        let line = raw.trim();
        let matches = !line.starts_with('@') && !line.starts_with('#') && {
            let mut f = line.split_whitespace();
            match (f.next(), f.next().and(f.next()).and_then(base64_decode)) {
                (Some(_), Some(key)) if key_type_of(&key).as_deref() == Some(key_type) => {
                    let mut kh = session.known_hosts().map_err(|e| io::Error::other(e.to_string()))?;
                    kh.read_str(line, ssh2::KnownHostFileKind::OpenSSH).is_ok()
                        && matches!(kh.check(&pattern, &key), ssh2::CheckResult::Match)
                }
                _ => false,
            }
        };
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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64 (what known_hosts uses).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key blob (from `ssh-keygen`), so libssh2 accepts the lines.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIM0c1gAdyRrTHyEXoHRhlV3zhdrtEOn2O44yRcKttklR";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICIyRtdTyTmgBvW6W4SdSieOPQYhGO3NPdtr6O9ip4QQ";

    #[test]
    fn base64_roundtrip() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i: u8| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn classify_unknown_changed_match_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("sub/known_hosts");
        let a = base64_decode(KEY_A).unwrap();
        let b = base64_decode(KEY_B).unwrap();
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
        let a = base64_decode(KEY_A).unwrap();
        let b = base64_decode(KEY_B).unwrap();
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
