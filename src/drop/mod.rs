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
    cfg.file_mode = acct.file_mode;
    Ok(cfg)
}

/// Why a drop could not be opened. The kind says whether a person must act (host key,
/// credentials, missing folder) or the next run may simply succeed (unavailable).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpenError {
    pub kind: OpenErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenErrorKind {
    HostKeyUnknown,
    HostKeyChanged,
    HostKeyRevoked,
    Authentication,
    NotFound,
    /// Unreachable, timed out, dropped, or set-up that the next run may find (an unset
    /// environment variable is reported the same way as before).
    Unavailable,
}

/// Open an sFTP drop for an account (host key verified before any credential is sent).
pub fn open_sftp(acct: &crate::config::Account) -> Result<Box<dyn Transport>, OpenError> {
    let unavailable = |message: String| OpenError { kind: OpenErrorKind::Unavailable, message };
    let cfg = sftp_config(acct).map_err(unavailable)?;
    sftp::SftpDrop::connect(cfg).map(|d| Box::new(d) as Box<dyn Transport>).map_err(|e| {
        use known_hosts::HostKeyError as H;
        let inner = e.get_ref();
        if let Some(hk) = inner.and_then(|i| i.downcast_ref::<H>()) {
            let kind = match hk {
                H::Unknown { .. } => OpenErrorKind::HostKeyUnknown,
                H::Changed { .. } => OpenErrorKind::HostKeyChanged,
                H::Revoked { .. } => OpenErrorKind::HostKeyRevoked,
            };
            // The advice names this account and the flag that works (`--replace` for a change).
            return OpenError { kind, message: hk.for_account(&acct.name) };
        }
        if inner.is_some_and(|i| i.is::<sftp::AuthRefused>()) {
            return OpenError { kind: OpenErrorKind::Authentication, message: e.to_string() };
        }
        unavailable(e.to_string())
    })
}

use std::io::{self, Read};
use std::time::SystemTime;

/// What a directory entry is, as seen without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl EntryKind {
    /// For result files and messages: what the warehouse put there.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::File => "a regular file",
            EntryKind::Dir => "a folder",
            EntryKind::Symlink => "a symbolic link",
            EntryKind::Fifo => "a named pipe (FIFO)",
            EntryKind::Socket => "a socket",
            EntryKind::Device => "a device",
            EntryKind::Other => "an entry of unknown type",
        }
    }

    /// From the `S_IFMT` bits of a mode (`st_mode`, SFTP permissions).
    pub fn from_mode(mode: u32) -> EntryKind {
        match mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o010000 => EntryKind::Fifo,
            0o140000 => EntryKind::Socket,
            0o020000 | 0o060000 => EntryKind::Device,
            _ => EntryKind::Other,
        }
    }

    pub fn of(ft: &std::fs::FileType) -> EntryKind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else if ft.is_block_device() || ft.is_char_device() {
            EntryKind::Device
        } else {
            EntryKind::Other
        }
    }
}

/// Which file is behind a name, as far as the transport can tell: a local drop knows the
/// inode; SFTPv3 has no inode, so the owner and permission bits are the best it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Identity {
    #[default]
    Unknown,
    Inode {
        dev: u64,
        ino: u64,
    },
    Attrs {
        uid: u32,
        gid: u32,
        perm: u32,
    },
}

/// One directory entry as the drop reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name for messages and paths; lossy when `raw_name` is not UTF-8.
    pub name: String,
    /// The name exactly as the drop has it, so even a name the bridge cannot carry through can
    /// be moved aside.
    pub raw_name: Vec<u8>,
    pub size: u64,
    pub mtime: SystemTime,
    /// `kind == EntryKind::File`.
    pub is_file: bool,
    pub kind: EntryKind,
    pub identity: Identity,
}

impl Entry {
    pub fn new(raw_name: Vec<u8>, size: u64, mtime: SystemTime, kind: EntryKind, identity: Identity) -> Entry {
        Entry {
            name: String::from_utf8_lossy(&raw_name).into_owned(),
            raw_name,
            size,
            mtime,
            is_file: kind == EntryKind::File,
            kind,
            identity,
        }
    }

    /// Same file, same content as far as metadata tells (size, mtime, identity): what a read
    /// must still find afterwards for its bytes to count.
    pub fn unchanged_as(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime == other.mtime
            && self.identity == other.identity
    }
}

/// A link (or a non-folder in a folder's place that is a link) somewhere below the drop root:
/// the bridge never follows one, and a person must replace it with a real folder. Carried
/// inside an `io::Error` (`io::Error::other`) so callers can tell it from transport trouble.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} in the drop is a symbolic link; the bridge never follows links below the drop root (replace it with a real folder)")]
pub struct DropEscape {
    /// Drop-relative path of the link.
    pub path: String,
}

/// The entry at a path is no longer the one that was listed (replaced, or swapped for a link
/// or another kind of entry): not read now; the next listing sees what is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} changed between listing and reading ({why}); not read")]
pub struct EntryChanged {
    pub path: String,
    pub why: String,
}

pub fn escape_error(path: &str) -> io::Error {
    io::Error::other(DropEscape { path: path.to_string() })
}

pub fn changed_error(path: &str, why: impl Into<String>) -> io::Error {
    io::Error::other(EntryChanged { path: path.to_string(), why: why.into() })
}

/// The drop escape inside `e`, if that is what `e` is.
pub fn as_escape(e: &io::Error) -> Option<&DropEscape> {
    e.get_ref().and_then(|i| i.downcast_ref::<DropEscape>())
}

pub fn as_changed(e: &io::Error) -> Option<&EntryChanged> {
    e.get_ref().and_then(|i| i.downcast_ref::<EntryChanged>())
}

/// A place files are exchanged through (a local folder or an sFTP server). Blocking by design: sFTP (libssh2) is blocking and a
/// drop is used by one account's cycle at a time.
///
/// The drop is a jail: the root may be reached through links (it is the operator's config),
/// nothing below it ever is. A link where a folder is expected fails with [`DropEscape`];
/// files are read only if they are regular files, never through a link.
pub trait Transport: Send {
    /// Human-readable location for logs and messages (never contains secrets).
    fn describe(&self) -> String;
    /// Entries directly inside `dir` (not recursive, symlinks not followed). A missing `dir`
    /// yields an empty list.
    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>>;
    /// Stream a regular file's content (a link or any other kind of entry is refused).
    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + 'a>>;
    /// Like `open_read`, but only if what is opened is the file `listed` describes (same
    /// identity, size and mtime); otherwise [`EntryChanged`].
    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> io::Result<Box<dyn Read + 'a>>;
    /// Write `content` to `path` so that a reader sees either nothing or the whole file.
    /// Fails with `AlreadyExists` if `path` exists (results are never overwritten).
    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()>;
    /// Move `from` to `to` on the drop; fails with `AlreadyExists` if `to` exists.
    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Move the entry named `raw_name` (exact bytes, as listed) in `dir` to `to`: the entry
    /// itself, never what a link points at; fails with `AlreadyExists` if `to` exists.
    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> io::Result<()>;
    /// Metadata of one path (not followed if a link), `None` if absent.
    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>>;
    /// Create `dir` and its parents.
    fn mkdir_all(&mut self, dir: &str) -> io::Result<()>;
    /// Remove a file (used for marker files and stale temp files).
    fn remove(&mut self, path: &str) -> io::Result<()>;
}

/// Longest name any file system we write to accepts (one path component).
pub const MAX_NAME_BYTES: usize = 255;

/// Longest inbound name the bridge carries through: `NAME.errors~NNNN.csv` still fits in
/// [`MAX_NAME_BYTES`]. Longer names are moved aside under a shorter one.
pub const MAX_CARRIED_NAME: usize = MAX_NAME_BYTES - ".errors.csv".len() - "~9999".len();

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The temp name `write_atomic` uses for `name`: `.NAME.RANDOM.tmp`, with `NAME` shortened
/// so the whole stays within [`MAX_NAME_BYTES`].
pub fn temp_name(name: &str, random: &str) -> String {
    let room = MAX_NAME_BYTES - ".".len() - ".".len() - random.len() - ".tmp".len();
    format!(".{}.{random}.tmp", truncate_bytes(name, room))
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
    if name.len() > MAX_CARRIED_NAME {
        return Err("name longer than 239 bytes (the result and error file names would not fit)");
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
    name.starts_with('.') || [".tmp", ".part", ".filepart"].iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_fit_and_are_recognised() {
        let long = "é".repeat(127) + ".csv"; // 258 bytes
        let t = temp_name(&long, "0123456789abcdef");
        assert!(t.len() <= MAX_NAME_BYTES, "{}", t.len());
        assert!(is_temp_of_ours(&t) && is_ignored_name(&t));
        assert_eq!(temp_name("a.csv", "r"), ".a.csv.r.tmp");
        assert_eq!(truncate_bytes("aé", 2), "a");
    }

    #[test]
    fn carried_names_leave_room_for_derived_names() {
        assert_eq!(MAX_CARRIED_NAME, 239);
        assert!(check_name(&"a".repeat(239)).is_ok());
        assert!(check_name(&"a".repeat(240)).is_err());
        assert_eq!(EntryKind::from_mode(0o120777), EntryKind::Symlink);
        assert_eq!(EntryKind::from_mode(0o010644), EntryKind::Fifo);
        assert_eq!(EntryKind::from_mode(0o140755), EntryKind::Socket);
    }

    #[test]
    fn typed_errors_survive_io_error() {
        let e = escape_error("results");
        assert_eq!(as_escape(&e).map(|x| x.path.as_str()), Some("results"));
        assert!(e.to_string().contains("results in the drop is a symbolic link"), "{e}");
        assert!(as_changed(&e).is_none());
        assert!(as_changed(&changed_error("a", "grew")).is_some());
    }

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
