//! Drop transports: where warehouses put files and read results.
//!
//! Paths are always relative to the drop root and use `/`. Every implementation must make
//! `write_atomic` all-or-nothing for readers (temp name in the target folder, then rename).

pub mod known_hosts;
pub mod local;
pub mod sftp;

/// What went wrong on a drop, as far as deciding what to do about it goes (see
/// `engine::account::StopClass`: a changed host key needs a person, an outage does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropErrorKind {
    /// No key is recorded for the server in known_hosts.
    HostKeyUnknown,
    /// The server presented another key than the recorded one (interception, or a new server).
    HostKeyChanged,
    /// The server's key is marked `@revoked`.
    HostKeyRevoked,
    /// The server refused the credentials, or the private key could not be loaded.
    Authentication,
    /// The drop itself (its root folder) does not exist or is not a folder.
    RootMissing,
    /// A file or folder below the root is not there (removed meanwhile).
    NotFound,
    /// Not allowed to read or write there.
    Permission,
    /// The target of a no-replace write or move exists (`write_atomic`, `rename_*`).
    AlreadyExists,
    /// Unreachable, timed out, connection dropped, no free session: the next run may succeed.
    Unavailable,
    /// A link where a folder belongs (`link`, drop-relative): the bridge never follows one.
    Escape { link: String },
    /// The entry is no longer the one that was listed ([`EntryChanged`]).
    Changed,
    /// Anything else (disk full, not a regular file, a path outside the drop, ...).
    Io,
}

/// A drop operation that failed: which path (drop-relative, `""` for the drop itself), what
/// kind of failure, and the transport's own error.
#[derive(Debug)]
pub struct DropError {
    pub path: String,
    pub kind: DropErrorKind,
    /// The account whose drop this is, once known: host-key advice names it in its command.
    pub account: Option<String>,
    source: io::Error,
}

pub type DropResult<T> = Result<T, DropError>;

impl DropError {
    pub fn new(path: &str, kind: DropErrorKind, source: io::Error) -> DropError {
        DropError { path: path.to_string(), kind, account: None, source }
    }

    /// Classify a transport's `io::Error` about `path`: the typed payloads first (link,
    /// changed entry, host key, refused credentials), then the `io::ErrorKind`.
    pub fn from_io(path: &str, source: io::Error) -> DropError {
        let kind = classify_io(&source);
        DropError::new(path, kind, source)
    }

    /// The same error, told which account's drop it is on (if it was not told before).
    pub fn in_account(mut self, account: &str) -> DropError {
        self.account.get_or_insert_with(|| account.to_string());
        self
    }

    /// The transport's error, e.g. for its `io::ErrorKind`.
    pub fn io(&self) -> &io::Error {
        &self.source
    }

    /// An outage: worth trying again later, unlike everything else.
    pub fn is_transient(&self) -> bool {
        self.kind == DropErrorKind::Unavailable
    }

    fn host_key(&self) -> Option<&known_hosts::HostKeyError> {
        self.source.get_ref().and_then(|i| i.downcast_ref())
    }
}

fn classify_io(e: &io::Error) -> DropErrorKind {
    use io::ErrorKind as K;
    use known_hosts::HostKeyError as H;
    if let Some(inner) = e.get_ref() {
        if let Some(esc) = inner.downcast_ref::<DropEscape>() {
            return DropErrorKind::Escape { link: esc.path.clone() };
        }
        if inner.is::<EntryChanged>() {
            return DropErrorKind::Changed;
        }
        match inner.downcast_ref::<H>() {
            Some(H::Unknown { .. }) => return DropErrorKind::HostKeyUnknown,
            Some(H::Changed { .. }) => return DropErrorKind::HostKeyChanged,
            Some(H::Revoked { .. }) => return DropErrorKind::HostKeyRevoked,
            None => {}
        }
        if inner.is::<sftp::AuthRefused>() {
            return DropErrorKind::Authentication;
        }
    }
    match e.kind() {
        K::NotFound => DropErrorKind::NotFound,
        K::PermissionDenied => DropErrorKind::Permission,
        K::AlreadyExists => DropErrorKind::AlreadyExists,
        K::TimedOut
        | K::ConnectionAborted
        | K::ConnectionReset
        | K::ConnectionRefused
        | K::NotConnected
        | K::BrokenPipe
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::ResourceBusy => DropErrorKind::Unavailable,
        _ => DropErrorKind::Io,
    }
}

/// The transport's message, which names the path (the account is the caller's to add): a
/// host-key refusal gives its advice with this account's command, a link names the link; any
/// other message that does not mention the path gets it in front.
impl std::fmt::Display for DropError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(hk) = self.host_key() {
            return f.write_str(&hk.for_account(self.account.as_deref().unwrap_or("ACCOUNT")));
        }
        let msg = self.source.to_string();
        if self.path.is_empty() || msg.contains(&self.path) || matches!(self.kind, DropErrorKind::Escape { .. }) {
            f.write_str(&msg)
        } else {
            write!(f, "{}: {msg}", self.path)
        }
    }
}

// The transport's error is in the message already, so it is not also given as `source()`.
impl std::error::Error for DropError {}

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
/// inside a transport's `io::Error` (`io::Error::other`) up to the [`Transport`] boundary,
/// which turns it into [`DropErrorKind::Escape`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} in the drop is a symbolic link; the bridge never follows links below the drop root (replace it with a real folder)")]
pub struct DropEscape {
    /// Drop-relative path of the link.
    pub path: String,
}

/// The entry at a path is no longer the one that was listed (replaced, or swapped for a link
/// or another kind of entry): not read now; the next listing sees what is there. At the
/// boundary: [`DropErrorKind::Changed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} changed between listing and reading ({why}); not read")]
pub struct EntryChanged {
    pub path: String,
    pub why: String,
}

pub(crate) fn escape_error(path: &str) -> io::Error {
    io::Error::other(DropEscape { path: path.to_string() })
}

pub(crate) fn changed_error(path: &str, why: impl Into<String>) -> io::Error {
    io::Error::other(EntryChanged { path: path.to_string(), why: why.into() })
}

/// A place files are exchanged through (a local folder or an sFTP server). Blocking by design: sFTP (libssh2) is blocking and a
/// drop is used by one account's cycle at a time. Every failure is a [`DropError`] naming the
/// path it was about.
///
/// The drop is a jail: the root may be reached through links (it is the operator's config),
/// nothing below it ever is. A link where a folder is expected fails with
/// [`DropErrorKind::Escape`]; files are read only if they are regular files, never through a link.
pub trait Transport: Send {
    /// Human-readable location for logs and messages (never contains secrets).
    fn describe(&self) -> String;
    /// Entries directly inside `dir` (not recursive, symlinks not followed). A missing `dir`
    /// yields an empty list.
    fn list(&mut self, dir: &str) -> DropResult<Vec<Entry>>;
    /// Stream a regular file's content (a link or any other kind of entry is refused). Errors
    /// while reading the stream are the transport's `io::Error`s ([`DropError::from_io`]).
    fn open_read<'a>(&'a mut self, path: &str) -> DropResult<Box<dyn Read + Send + 'a>>;
    /// Like `open_read`, but only if what is opened is the file `listed` describes (same
    /// identity, size and mtime); otherwise [`DropErrorKind::Changed`].
    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> DropResult<Box<dyn Read + Send + 'a>>;
    /// Write `content` to `path` so that a reader sees either nothing or the whole file.
    /// Fails with [`DropErrorKind::AlreadyExists`] if `path` exists (results are never overwritten).
    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> DropResult<()>;
    /// [`Transport::write_atomic`] for each `(path, content)`, one result per file in the same
    /// order. Each file on its own is all-or-nothing and never replaces an existing one; there
    /// is no order between files, because a remote transport writes several at once (sFTP: over
    /// up to `max_sessions` sessions) so a batch costs round trips per session, not per file.
    fn write_many(&mut self, files: &[(&str, &[u8])]) -> Vec<DropResult<()>>;
    /// Move `from` to `to` on the drop; fails with [`DropErrorKind::AlreadyExists`] if `to` exists.
    fn rename_no_replace(&mut self, from: &str, to: &str) -> DropResult<()>;
    /// Move the entry named `raw_name` (exact bytes, as listed) in `dir` to `to`: the entry
    /// itself, never what a link points at; fails with [`DropErrorKind::AlreadyExists`] if `to` exists.
    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> DropResult<()>;
    /// Metadata of one path (not followed if a link), `None` if absent.
    fn stat(&mut self, path: &str) -> DropResult<Option<Entry>>;
    /// Create `dir` and its parents.
    fn mkdir_all(&mut self, dir: &str) -> DropResult<()>;
    /// Remove a file (used for marker files and stale temp files).
    fn remove(&mut self, path: &str) -> DropResult<()>;
}

/// What `local.rs` and `sftp.rs` implement: [`Transport`] in the `io::Error`s their libraries
/// (rustix, libssh2) speak, typed payloads ([`DropEscape`], [`EntryChanged`], host keys,
/// refused credentials) inside. The blanket [`Transport`] impl classifies each error once, at
/// the boundary, with the path it was about.
pub(crate) trait IoTransport: Send {
    fn describe(&self) -> String;
    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>>;
    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + Send + 'a>>;
    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> io::Result<Box<dyn Read + Send + 'a>>;
    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()>;
    /// One after the other unless the transport can do better.
    fn write_many(&mut self, files: &[(&str, &[u8])]) -> Vec<io::Result<()>> {
        files.iter().map(|(path, content)| self.write_atomic(path, &mut &content[..])).collect()
    }
    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()>;
    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> io::Result<()>;
    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>>;
    fn mkdir_all(&mut self, dir: &str) -> io::Result<()>;
    fn remove(&mut self, path: &str) -> io::Result<()>;
}

impl<T: IoTransport> Transport for T {
    fn describe(&self) -> String {
        IoTransport::describe(self)
    }
    fn list(&mut self, dir: &str) -> DropResult<Vec<Entry>> {
        IoTransport::list(self, dir).map_err(|e| DropError::from_io(dir, e))
    }
    fn open_read<'a>(&'a mut self, path: &str) -> DropResult<Box<dyn Read + Send + 'a>> {
        IoTransport::open_read(self, path).map_err(|e| DropError::from_io(path, e))
    }
    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> DropResult<Box<dyn Read + Send + 'a>> {
        IoTransport::open_listed(self, path, listed).map_err(|e| DropError::from_io(path, e))
    }
    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> DropResult<()> {
        IoTransport::write_atomic(self, path, content).map_err(|e| DropError::from_io(path, e))
    }
    fn write_many(&mut self, files: &[(&str, &[u8])]) -> Vec<DropResult<()>> {
        let results = IoTransport::write_many(self, files);
        debug_assert_eq!(results.len(), files.len());
        results.into_iter().zip(files).map(|(r, (path, _))| r.map_err(|e| DropError::from_io(path, e))).collect()
    }
    fn rename_no_replace(&mut self, from: &str, to: &str) -> DropResult<()> {
        IoTransport::rename_no_replace(self, from, to).map_err(|e| DropError::from_io(from, e))
    }
    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> DropResult<()> {
        IoTransport::rename_entry(self, dir, raw_name, to).map_err(|e| {
            let name = String::from_utf8_lossy(raw_name);
            DropError::from_io(&if dir.is_empty() { name.into_owned() } else { format!("{dir}/{name}") }, e)
        })
    }
    fn stat(&mut self, path: &str) -> DropResult<Option<Entry>> {
        IoTransport::stat(self, path).map_err(|e| DropError::from_io(path, e))
    }
    fn mkdir_all(&mut self, dir: &str) -> DropResult<()> {
        IoTransport::mkdir_all(self, dir).map_err(|e| DropError::from_io(dir, e))
    }
    fn remove(&mut self, path: &str) -> DropResult<()> {
        IoTransport::remove(self, path).map_err(|e| DropError::from_io(path, e))
    }
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
    fn typed_payloads_become_kinds_at_the_boundary() {
        let e = DropError::from_io("results/r.csv", escape_error("results"));
        assert_eq!(e.kind, DropErrorKind::Escape { link: "results".into() });
        assert!(e.to_string().starts_with("results in the drop is a symbolic link"), "the link is the path: {e}");
        let e = DropError::from_io("a", changed_error("a", "grew"));
        assert_eq!(e.kind, DropErrorKind::Changed);
        assert_eq!(e.to_string(), "a changed between listing and reading (grew); not read", "named once");
        let auth = io::Error::new(io::ErrorKind::PermissionDenied, sftp::AuthRefused("refused".into()));
        assert_eq!(DropError::from_io("", auth).kind, DropErrorKind::Authentication);
    }

    /// Each `io::ErrorKind` a transport reports, and what it means for the caller.
    #[test]
    fn io_error_kinds_classify() {
        use io::ErrorKind as K;
        let table = [
            (K::NotFound, DropErrorKind::NotFound),
            (K::PermissionDenied, DropErrorKind::Permission),
            (K::AlreadyExists, DropErrorKind::AlreadyExists),
            (K::TimedOut, DropErrorKind::Unavailable),
            (K::ConnectionAborted, DropErrorKind::Unavailable),
            (K::ConnectionRefused, DropErrorKind::Unavailable),
            (K::ConnectionReset, DropErrorKind::Unavailable),
            (K::BrokenPipe, DropErrorKind::Unavailable),
            (K::ResourceBusy, DropErrorKind::Unavailable),
            (K::StorageFull, DropErrorKind::Io),
            (K::InvalidInput, DropErrorKind::Io),
            (K::Other, DropErrorKind::Io),
        ];
        for (io_kind, want) in table {
            let e = DropError::from_io("in/a.csv", io::Error::new(io_kind, "boom"));
            assert_eq!(e.kind, want, "{io_kind:?}");
            assert_eq!(e.is_transient(), want == DropErrorKind::Unavailable);
            assert_eq!(e.to_string(), "in/a.csv: boom", "the path is named");
        }
    }

    #[test]
    fn host_key_advice_names_the_account() {
        let hk = known_hosts::HostKeyError::Revoked {
            host: "h".into(),
            fingerprint: "SHA256:x".into(),
            known_hosts: "kh".into(),
        };
        let e = DropError::from_io("", io::Error::new(io::ErrorKind::PermissionDenied, hk));
        assert_eq!(e.kind, DropErrorKind::HostKeyRevoked);
        assert!(e.to_string().contains("stitch-bridge trust ACCOUNT"), "{e}");
        let e = e.in_account("wh").in_account("other");
        assert!(e.to_string().contains("`stitch-bridge trust wh`"), "{e}");
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
