//! Drop transports: where warehouses put files and read results.
//!
//! Paths are always relative to the drop root and use `/`. Every implementation must make
//! `write_atomic` all-or-nothing for readers (temp name in the target folder, then rename).

pub mod known_hosts;
pub mod local;
pub mod sftp;

/// The sFTP settings of an account, with secrets read from the environment now (and kept
/// out of every log and message).
pub fn sftp_config(acct: &crate::config::Account) -> Result<sftp::SftpConfig, String> {
    use crate::config::DropLocation;
    let (DropLocation::Sftp { user, host, port, path }, Some(s)) = (&acct.drop, &acct.sftp) else {
        return Err(format!("account {} does not use an sftp:// drop", acct.name));
    };
    let env = |var: &str| std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    let auth = match (&s.key_file, &s.password_env) {
        (Some(k), _) => sftp::SftpAuth::Key {
            path: k.clone(),
            passphrase: s.key_passphrase_env.as_deref().map(env).transpose()?.map(sftp::Secret::new),
        },
        (None, Some(p)) => sftp::SftpAuth::Password(sftp::Secret::new(env(p)?)),
        (None, None) => return Err("no sFTP credentials configured".into()),
    };
    let mut cfg = sftp::SftpConfig::new(host, *port, user, path, auth, s.known_hosts.clone());
    cfg.allow_legacy_ssh_rsa = s.allow_legacy_ssh_rsa;
    cfg.op_timeout = acct.timeout.max(std::time::Duration::from_secs(10));
    cfg.max_sessions = s.max_sessions;
    Ok(cfg)
}

/// Open an sFTP drop for an account (host key verified before any credential is sent).
pub fn open_sftp(acct: &crate::config::Account) -> Result<Box<dyn Drop>, String> {
    let cfg = sftp_config(acct)?;
    sftp::SftpDrop::connect(cfg).map(|d| Box::new(d) as Box<dyn Drop>).map_err(|e| e.to_string())
}

use std::io::{self, Read};
use std::time::SystemTime;

/// One directory entry as the drop reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
    pub is_file: bool,
}

/// A place files are exchanged through. Blocking by design: sFTP (libssh2) is blocking and a
/// drop is used by one account's cycle at a time.
pub trait Drop: Send {
    /// Human-readable location for logs and messages (never contains secrets).
    fn describe(&self) -> String;
    /// Entries directly inside `dir` (not recursive, symlinks not followed). A missing `dir`
    /// yields an empty list.
    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>>;
    /// Stream a file's content.
    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + 'a>>;
    /// Write `content` to `path` so that a reader sees either nothing or the whole file.
    /// Fails with `AlreadyExists` if `path` exists (results are never overwritten).
    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()>;
    /// Move `from` to `to` on the drop; fails with `AlreadyExists` if `to` exists.
    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Metadata of one path, `None` if absent.
    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>>;
    /// Create `dir` and its parents.
    fn mkdir_all(&mut self, dir: &str) -> io::Result<()>;
    /// Remove a file (used for marker files and stale temp files).
    fn remove(&mut self, path: &str) -> io::Result<()>;
}

/// The temp names `write_atomic` uses (`.NAME.RANDOM.tmp`, both drops): hidden from every
/// poller, and recognisable so a later run can remove what a killed one left.
pub fn is_temp_of_ours(name: &str) -> bool {
    name.len() >= ".x.r.tmp".len()
        && name.starts_with('.')
        && name.ends_with(".tmp")
        && name[1..name.len() - 4].contains('.')
}

/// Why a name found on a drop is refused before anything reads it. Hostile names must never
/// reach a path join on the server or a cell in a spreadsheet.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("empty or dot name");
    }
    if name.len() > 255 {
        return Err("name longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err("name contains a path separator or '..'");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("name contains control characters");
    }
    Ok(())
}

/// Names an uploader is still writing or that are ours in flight: never taken.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || [".tmp", ".part", ".filepart"].iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_of_ours_are_recognised_and_nothing_else() {
        for ours in [".stock.csv.result.csv.a1B2c3.tmp", ".o.csv.x.tmp"] {
            assert!(is_temp_of_ours(ours), "{ours}");
        }
        for other in ["stock.csv", ".tmp", ".x.tmp", "a.b.tmp", ".hidden", ".a.b.part", ""] {
            assert!(!is_temp_of_ours(other), "{other}");
        }
    }
}
