//! A drop on an sFTP server, over libssh2 (`ssh2`).
//!
//! One `SftpDrop` owns at most one SSH session at a time. A process-wide cap
//! (`SftpConfig::max_sessions`, default 1) per `host:port:user` stops two cycles from opening
//! parallel sessions to a warehouse that limits them.
//!
//! Error kinds: what `io::Error::kind()` means inside this module and in the file streams it
//! hands out (see [`is_transient`]); at the [`super::Transport`] boundary each becomes a
//! [`DropError`] of the matching [`super::DropErrorKind`] (the connection kinds: `Unavailable`).
//! - `TimedOut`: the server did not answer within `op_timeout` (or `connect_timeout`).
//! - `ConnectionAborted`: the session or TCP connection died (socket errors, channel closed,
//!   SFTP "connection lost"), or the TCP connect was refused/reset.
//! - `NotFound` (SFTP no such file/path), `PermissionDenied` (SFTP permission denied / write
//!   protect, authentication refused, host key refused), `AlreadyExists` (target exists),
//!   `StorageFull` (SFTP no space / quota, SFTPv5+ servers only), `Unsupported` (no common
//!   algorithm, operation unsupported), `InvalidInput` (bad path or unusable key file).
//! - `Other`: SFTP generic failure. SFTPv3 servers (OpenSSH) report disk full this way and
//!   libssh2 does not expose the server's message, so a full disk is `Other`, not transient.

use super::known_hosts;
use super::{changed_error, escape_error, DropError, DropResult, Entry, EntryKind, Identity};
use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, RenameFlags, Session, Sftp};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// A password or passphrase. Debug and Display never show it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; only for handing to the SSH library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub enum SftpAuth {
    /// Private key file (OpenSSH or PEM format); the public key is derived from it.
    Key {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    Password(Secret),
}

#[derive(Debug, Clone)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Absolute folder on the server that drop paths are relative to.
    pub root: String,
    pub auth: SftpAuth,
    /// OpenSSH-format known_hosts file; the server key must be in it (no trust on first use).
    pub known_hosts: PathBuf,
    /// Allow the SHA-1 `ssh-rsa` host-key signature for servers that offer nothing newer.
    pub allow_legacy_ssh_rsa: bool,
    /// TCP connect plus SSH handshake and authentication, each step.
    pub connect_timeout: Duration,
    /// Longest wait for any single server reply once connected.
    pub op_timeout: Duration,
    /// SSH keepalive interval in seconds (0 = off); sent at the start of operations when due.
    pub keepalive_secs: u32,
    /// Sessions this process may hold at once to `host:port` as `user` (0 is treated as 1);
    /// `connect` waits up to `connect_timeout` for a free slot, then fails with `ResourceBusy`.
    pub max_sessions: usize,
    /// Exact mode of the files we create (`file_mode`); `None`: 0644, what a umask of 022
    /// leaves (the server applies its own umask to that).
    pub file_mode: Option<u32>,
}

impl SftpConfig {
    /// A config with the defaults: 15 s connect, 60 s per operation, 30 s keepalive, one session.
    pub fn new(host: &str, port: u16, user: &str, root: &str, auth: SftpAuth, known_hosts: PathBuf) -> Self {
        SftpConfig {
            host: host.into(),
            port,
            user: user.into(),
            root: root.into(),
            auth,
            known_hosts,
            allow_legacy_ssh_rsa: false,
            connect_timeout: Duration::from_secs(15),
            op_timeout: Duration::from_secs(60),
            keepalive_secs: 30,
            max_sessions: 1,
            file_mode: None,
        }
    }

    fn location(&self) -> String {
        format!("sftp://{}@{}{}", self.user, known_hosts::host_pattern(&self.host, self.port), self.root)
    }
}

/// True for errors worth retrying later (connection trouble), false for permanent ones.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::BrokenPipe
    )
}

// libssh2 session error codes (libssh2.h); the ssh2 crate does not re-export them.
mod rc {
    pub const SOCKET_NONE: i32 = -1;
    pub const BANNER_RECV: i32 = -2;
    pub const BANNER_SEND: i32 = -3;
    pub const INVALID_MAC: i32 = -4;
    pub const KEX_FAILURE: i32 = -5;
    pub const SOCKET_SEND: i32 = -7;
    pub const KEY_EXCHANGE_FAILURE: i32 = -8;
    pub const TIMEOUT: i32 = -9;
    pub const DECRYPT: i32 = -12;
    pub const SOCKET_DISCONNECT: i32 = -13;
    pub const PROTO: i32 = -14;
    pub const PASSWORD_EXPIRED: i32 = -15;
    pub const FILE: i32 = -16;
    pub const METHOD_NONE: i32 = -17;
    pub const AUTHENTICATION_FAILED: i32 = -18;
    pub const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub const CHANNEL_OUTOFORDER: i32 = -20;
    pub const CHANNEL_FAILURE: i32 = -21;
    pub const CHANNEL_CLOSED: i32 = -26;
    pub const CHANNEL_EOF_SENT: i32 = -27;
    pub const SOCKET_TIMEOUT: i32 = -30;
    pub const METHOD_NOT_SUPPORTED: i32 = -33;
    pub const SOCKET_RECV: i32 = -43;
    pub const BAD_SOCKET: i32 = -45;
    pub const KEYFILE_AUTH_FAILED: i32 = -48;
    pub const ALGO_UNSUPPORTED: i32 = -51;
    // SFTP status codes (SSH_FX_*).
    pub const FX_EOF: i32 = 1;
    pub const FX_NO_SUCH_FILE: i32 = 2;
    pub const FX_PERMISSION_DENIED: i32 = 3;
    pub const FX_BAD_MESSAGE: i32 = 5;
    pub const FX_NO_CONNECTION: i32 = 6;
    pub const FX_CONNECTION_LOST: i32 = 7;
    pub const FX_OP_UNSUPPORTED: i32 = 8;
    pub const FX_NO_SUCH_PATH: i32 = 10;
    pub const FX_FILE_ALREADY_EXISTS: i32 = 11;
    pub const FX_WRITE_PROTECT: i32 = 12;
    pub const FX_NO_SPACE_ON_FILESYSTEM: i32 = 14;
    pub const FX_QUOTA_EXCEEDED: i32 = 15;
}

fn kind_of(code: ErrorCode) -> io::ErrorKind {
    use io::ErrorKind as K;
    match code {
        ErrorCode::Session(c) => match c {
            rc::TIMEOUT | rc::SOCKET_TIMEOUT => K::TimedOut,
            rc::SOCKET_NONE
            | rc::BANNER_RECV
            | rc::BANNER_SEND
            | rc::INVALID_MAC
            | rc::SOCKET_SEND
            | rc::DECRYPT
            | rc::SOCKET_DISCONNECT
            | rc::PROTO
            | rc::CHANNEL_OUTOFORDER
            | rc::CHANNEL_FAILURE
            | rc::CHANNEL_CLOSED
            | rc::CHANNEL_EOF_SENT
            | rc::SOCKET_RECV
            | rc::BAD_SOCKET => K::ConnectionAborted,
            rc::AUTHENTICATION_FAILED
            | rc::PUBLICKEY_UNVERIFIED
            | rc::KEYFILE_AUTH_FAILED
            | rc::PASSWORD_EXPIRED
            | rc::METHOD_NONE => K::PermissionDenied,
            rc::FILE => K::InvalidInput,
            rc::KEX_FAILURE | rc::KEY_EXCHANGE_FAILURE | rc::ALGO_UNSUPPORTED | rc::METHOD_NOT_SUPPORTED => {
                K::Unsupported
            }
            _ => K::Other,
        },
        ErrorCode::SFTP(c) => match c {
            rc::FX_EOF => K::UnexpectedEof,
            rc::FX_NO_SUCH_FILE | rc::FX_NO_SUCH_PATH => K::NotFound,
            rc::FX_PERMISSION_DENIED | rc::FX_WRITE_PROTECT => K::PermissionDenied,
            rc::FX_BAD_MESSAGE => K::InvalidData,
            rc::FX_NO_CONNECTION | rc::FX_CONNECTION_LOST => K::ConnectionAborted,
            rc::FX_OP_UNSUPPORTED => K::Unsupported,
            rc::FX_FILE_ALREADY_EXISTS => K::AlreadyExists,
            rc::FX_NO_SPACE_ON_FILESYSTEM | rc::FX_QUOTA_EXCEEDED => K::StorageFull,
            _ => K::Other,
        },
    }
}

/// Map a libssh2 error, naming what we were doing. Never includes credentials: libssh2
/// messages do not contain them and `what` is built from paths and host names only.
fn map_err(e: &ssh2::Error, what: &str) -> io::Error {
    let kind = kind_of(e.code());
    let hint = match e.code() {
        ErrorCode::SFTP(4) => " (server reported a generic failure, e.g. disk full or quota)",
        _ => "",
    };
    io::Error::new(kind, format!("sftp: {what}: {}{hint}", e.message()))
}

const SFTP_PROTOCOL: i32 = -31;

/// Re-map an `io::Error` from ssh2's `Read`/`Write` impls. ssh2 folds session-level codes
/// (socket closed, channel closed...) into `Other`, but the session still holds the real code;
/// SFTP status errors (code SFTP_PROTOCOL at session level) were already mapped by ssh2.
fn remap_io(e: io::Error, sess: &Session, what: &str) -> io::Error {
    match ssh2::Error::last_session_error(sess) {
        Some(se)
            if se.code() != ErrorCode::Session(SFTP_PROTOCOL)
                && matches!(e.kind(), io::ErrorKind::Other | io::ErrorKind::TimedOut) =>
        {
            map_err(&se, what)
        }
        _ if e.kind() == io::ErrorKind::Other => {
            io::Error::new(e.kind(), format!("sftp: {what}: {e} (server reported a failure, e.g. disk full or quota)"))
        }
        _ => io_ctx(e, what),
    }
}

fn io_ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("sftp: {what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Session cap

type Slots = (Mutex<HashMap<String, usize>>, Condvar);

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| (Mutex::new(HashMap::new()), Condvar::new()))
}

/// A held session slot for one `host:port:user`; released on drop.
struct Permit {
    key: String,
}

impl Permit {
    fn acquire(key: String, max: usize, wait: Duration) -> io::Result<Permit> {
        let (lock, cv) = slots();
        let deadline = Instant::now() + wait;
        let mut map = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let used = map.get(&key).copied().unwrap_or(0);
            if used < max.max(1) {
                map.insert(key.clone(), used + 1);
                return Ok(Permit { key });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("sftp: {} session(s) to {key} already open in this process", max.max(1)),
                ));
            }
            map = cv.wait_timeout(map, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Permit {
    /// A slot if one is free now (for extra sessions that only make things faster).
    fn try_acquire(key: &str, max: usize) -> Option<Permit> {
        let (lock, _) = slots();
        let mut map = lock.lock().unwrap_or_else(|p| p.into_inner());
        let used = map.get(key).copied().unwrap_or(0);
        if used >= max.max(1) {
            return None;
        }
        map.insert(key.to_string(), used + 1);
        Some(Permit { key: key.to_string() })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (lock, cv) = slots();
        let mut map = lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        cv.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// Connection

const KEX: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,\
ecdh-sha2-nistp521,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,\
diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256";
/// chacha20-poly1305 first, as OpenSSH orders them, and for speed: libssh2 decrypts it a whole
/// packet per call, but AES-GCM and AES-CTR one 16-byte block per call, which made reading a
/// big file over a fast link about 1.6 times slower.
const CIPHERS: &str =
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr";
const MACS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";
const HOSTKEYS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Host-key algorithms to offer: types already recorded for the host first (so a host known
/// by its RSA key is not refused for also having ed25519), then the modern defaults.
fn hostkey_prefs(recorded_types: &[String], legacy_rsa: bool) -> String {
    let mut all: Vec<&str> = HOSTKEYS.to_vec();
    if legacy_rsa {
        all.push("ssh-rsa");
    }
    let mut out: Vec<&str> = Vec::new();
    for t in recorded_types {
        let algs: Vec<&str> = match t.as_str() {
            "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            other => vec![other],
        };
        for a in algs {
            if all.contains(&a) && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    for a in all {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.join(",")
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let what = format!("connect to {}", known_hosts::host_pattern(host, port));
    // Name resolution has no timeout in std; warehouses are normally given by stable names.
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(|e| io_ctx(e, &what))?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    // Refused/unreachable is a connection problem (transient), not a permanent one.
    let kind = match last.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::ConnectionAborted,
    };
    Err(io::Error::new(kind, format!("sftp: {what}: {last}")))
}

fn handshake(host: &str, port: u16, timeout: Duration, hostkeys: &str) -> io::Result<Session> {
    let tcp = tcp_connect(host, port, timeout)?;
    let mut sess = Session::new().map_err(|e| map_err(&e, "create session"))?;
    sess.set_timeout(millis(timeout));
    let prefs = [
        (ssh2::MethodType::Kex, KEX),
        (ssh2::MethodType::HostKey, hostkeys),
        (ssh2::MethodType::CryptCs, CIPHERS),
        (ssh2::MethodType::CryptSc, CIPHERS),
        (ssh2::MethodType::MacCs, MACS),
        (ssh2::MethodType::MacSc, MACS),
    ];
    for (t, p) in prefs {
        sess.method_pref(t, p).map_err(|e| map_err(&e, "set algorithm preferences"))?;
    }
    sess.set_tcp_stream(tcp);
    sess.handshake().map_err(|e| {
        let mut err = map_err(&e, &format!("SSH handshake with {}", known_hosts::host_pattern(host, port)));
        if err.kind() == io::ErrorKind::Unsupported {
            err = io::Error::new(
                err.kind(),
                format!("{err} (no common algorithm; only very old servers need allow_legacy_ssh_rsa)"),
            );
        }
        err
    })?;
    Ok(sess)
}

fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn host_key_of(sess: &Session) -> io::Result<(Vec<u8>, String)> {
    let (key, _) = sess
        .host_key()
        .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "sftp: server sent no host key"))?;
    let ktype = known_hosts::key_type_of(key).unwrap_or_else(|| "unknown".into());
    Ok((key.to_vec(), ktype))
}

/// Connect to `host:port` and return its host key `(blob, type, SHA256 fingerprint)` without
/// authenticating, for `stitch-bridge trust` to show and record. Offers the same algorithms
/// as `SftpDrop::connect` (plus `ssh-rsa` last, so legacy servers can be recorded at all).
pub fn probe_host_key(host: &str, port: u16, timeout: Duration) -> DropResult<(Vec<u8>, String, String)> {
    let at = |e| DropError::from_io("", e);
    let sess = handshake(host, port, timeout, &hostkey_prefs(&[], true)).map_err(at)?;
    let (key, ktype) = host_key_of(&sess).map_err(at)?;
    let _ = sess.disconnect(None, "host key probe", None);
    let fp = known_hosts::fingerprint(&key);
    Ok((key, ktype, fp))
}

pub use known_hosts::record_host_key;

/// The server refused our credentials, or our key could not be loaded: a person must act
/// (retrying sends the same credentials again). Inside the `io::Error` up to the
/// [`super::Transport`] boundary, which makes it [`super::DropErrorKind::Authentication`].
#[derive(Debug)]
pub struct AuthRefused(pub String);

impl std::fmt::Display for AuthRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthRefused {}

/// Only refusals and unusable keys are typed as [`AuthRefused`]; a connection lost during
/// authentication stays an ordinary (transient) error.
fn auth_error(kind: io::ErrorKind, message: String) -> io::Error {
    match kind {
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => io::Error::new(kind, AuthRefused(message)),
        _ => io::Error::new(kind, message),
    }
}

/// One live SSH session with its SFTP channel.
struct Conn {
    sess: Session,
    sftp: Sftp,
    /// Set when the session timed out or died; shared with open readers.
    broken: Arc<AtomicBool>,
}

impl Conn {
    fn open(cfg: &SftpConfig) -> io::Result<Conn> {
        let recorded = known_hosts::recorded_keys(&cfg.known_hosts, &cfg.host, cfg.port)?;
        let sess = handshake(
            &cfg.host,
            cfg.port,
            cfg.connect_timeout,
            &hostkey_prefs(&recorded.key_types(), cfg.allow_legacy_ssh_rsa),
        )?;
        // Verify before sending any credential: a password must never reach an impostor.
        let (key, _) = host_key_of(&sess)?;
        known_hosts::verify_host_key(&cfg.known_hosts, &cfg.host, cfg.port, &key)?;
        let who = format!("{} at {}", cfg.user, known_hosts::host_pattern(&cfg.host, cfg.port));
        match &cfg.auth {
            SftpAuth::Key { path, passphrase } => {
                sess.userauth_pubkey_file(&cfg.user, None, path, passphrase.as_ref().map(Secret::expose)).map_err(
                    |e| {
                        let base = map_err(&e, &format!("key authentication as {who} with {}", path.display()));
                        // libssh2 reports a wrong passphrase as an unsupported format; say
                        // which of the likely causes applies to this file.
                        let why = match base.kind() {
                            io::ErrorKind::InvalidInput if std::fs::File::open(path).is_err() => {
                                "cannot read the private key file"
                            }
                            io::ErrorKind::InvalidInput if passphrase.is_some() => {
                                "cannot load the private key: wrong passphrase, or a key format that is not supported"
                            }
                            io::ErrorKind::InvalidInput => {
                                "cannot load the private key: unsupported format, or the key needs a passphrase \
                                 (sftp_key_passphrase_env)"
                            }
                            io::ErrorKind::PermissionDenied => "the server refused this key",
                            _ => "",
                        };
                        auth_error(base.kind(), format!("{base}; {why}"))
                    },
                )?;
            }
            SftpAuth::Password(pw) => {
                sess.userauth_password(&cfg.user, pw.expose()).map_err(|e| {
                    let base = map_err(&e, &format!("password authentication as {who}"));
                    auth_error(base.kind(), format!("{base}; the server refused the password"))
                })?;
            }
        }
        if !sess.authenticated() {
            return Err(auth_error(io::ErrorKind::PermissionDenied, format!("sftp: {who}: not authenticated")));
        }
        sess.set_timeout(millis(cfg.op_timeout));
        sess.set_keepalive(false, cfg.keepalive_secs);
        let sftp = sess.sftp().map_err(|e| map_err(&e, "start the sftp subsystem"))?;
        Ok(Conn { sess, sftp, broken: Arc::new(AtomicBool::new(false)) })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.broken.load(Ordering::SeqCst) {
            // Closing a dead or stalled session would wait a full op_timeout per step.
            self.sess.set_timeout(50);
        } else {
            let _ = self.sess.disconnect(None, "bye", None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The drop

/// Backoff before the single reconnect an operation may do after the connection died.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);

pub struct SftpDrop {
    cfg: SftpConfig,
    conn: Option<Conn>,
    /// Folders found to be real folders (not links) by `lstat`, so each is asked about once
    /// per drop session (one cycle) rather than on every operation.
    verified: Arc<Mutex<HashSet<PathBuf>>>,
    /// Further sessions `write_many` opened (each under its own slot of the cap), kept for the
    /// drop's life so later batches of the cycle do not pay the handshake again.
    extra: Vec<(Conn, Permit)>,
    _permit: Permit,
}

impl SftpDrop {
    /// Connect now, so configuration, host-key and credential problems surface at once, as a
    /// [`DropError`] about the drop itself (path `""`). Later operations reconnect by themselves
    /// if the session has died.
    pub fn connect(cfg: SftpConfig) -> DropResult<SftpDrop> {
        Self::connect_io(cfg).map_err(|e| DropError::from_io("", e))
    }

    fn connect_io(cfg: SftpConfig) -> io::Result<SftpDrop> {
        if !cfg.root.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sftp: root {:?} must be an absolute path on the server", cfg.root),
            ));
        }
        let key = format!("{}:{}:{}", cfg.host, cfg.port, cfg.user);
        let permit = Permit::acquire(key, cfg.max_sessions, cfg.connect_timeout)?;
        let conn = Conn::open(&cfg)?;
        Ok(SftpDrop { cfg, conn: Some(conn), verified: Arc::default(), extra: Vec::new(), _permit: permit })
    }

    /// Cipher and MAC negotiated for server-to-client traffic, e.g. for benchmark notes.
    pub fn download_methods(&mut self) -> DropResult<String> {
        let c = self.conn().map_err(|e| DropError::from_io("", e))?;
        let m = |t| c.sess.methods(t).unwrap_or("?").to_string();
        Ok(format!("{} / {}", m(ssh2::MethodType::CryptSc), m(ssh2::MethodType::MacSc)))
    }

    /// Absolute server path for a drop-relative path; refuses anything leaving the root.
    fn resolve(&self, rel: &str) -> io::Result<PathBuf> {
        let p = Path::new(rel);
        if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("path {rel:?} is not inside the drop")));
        }
        let mut out = PathBuf::from(&self.cfg.root);
        for c in p.components() {
            if let Component::Normal(n) = c {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Open a regular file for reading, never through a link: its folders are checked, the
    /// file itself is `lstat`ed (a link, FIFO or anything else is refused before the server
    /// would open it), and the handle's `fstat` must match that `lstat` and `listed` (if given).
    ///
    /// SFTPv3 cannot make this airtight: OPEN follows links, so a file swapped for a link
    /// between our `lstat` and the server's open is opened; the `fstat` check then refuses it
    /// unless the link's target has the same owner, mode, size and mtime as the listed file.
    fn open_checked<'a>(&'a mut self, path: &str, listed: Option<&Entry>) -> io::Result<Box<dyn Read + Send + 'a>> {
        let p = self.resolve(path)?;
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        let what = format!("read {}", p.display());
        let file = self.retry(|c| {
            if !check_dirs(c, &root, p.parent().unwrap_or(&root), false, &verified)? {
                return Err(not_found(&p));
            }
            let st = lstat_opt(c, &p)?.ok_or_else(|| not_found(&p))?;
            let k = entry_kind(&st);
            let listed_changed = listed.is_some_and(|l| !l.unchanged_as(&entry_of(&l.raw_name, &st)));
            match (k, listed) {
                (EntryKind::File, _) if !listed_changed => {}
                (EntryKind::File, _) => {
                    return Err(changed_error(path, "size, mtime or owner differ from the listing"))
                }
                (k, Some(_)) => return Err(changed_error(path, format!("it is {} now", k.describe()))),
                (k, None) => return Err(not_regular(path, k)),
            }
            let mut file = c.sftp.open(&p).map_err(|e| map_err(&e, &what))?;
            let opened = file.stat().map_err(|e| map_err(&e, &what))?;
            if entry_kind(&opened) != EntryKind::File || !same_attrs(&st, &opened) {
                return Err(changed_error(path, "another file was opened than the one looked at"));
            }
            Ok(file)
        })?;
        let c = self.conn.as_ref().expect("connected after a successful open");
        Ok(Box::new(SftpReader::new(file, c, what)))
    }

    /// A usable connection: drops a broken one, reconnects if needed, sends a keepalive if due.
    fn conn(&mut self) -> io::Result<&Conn> {
        if self.conn.as_ref().is_some_and(|c| c.broken.load(Ordering::SeqCst)) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.cfg)?);
        }
        let c = self.conn.as_ref().expect("connection just ensured");
        if self.cfg.keepalive_secs > 0 {
            if let Err(e) = c.sess.keepalive_send() {
                c.broken.store(true, Ordering::SeqCst);
                return Err(map_err(&e, "keepalive"));
            }
        }
        Ok(c)
    }

    /// Run `op`; if the connection turns out to be dead, reconnect once after a short backoff
    /// and run it again. Timeouts are not retried (a stalled server would double the wait) but
    /// the session is discarded so the next operation starts fresh. Only for operations that
    /// are safe to repeat.
    fn retry<T>(&mut self, op: impl Fn(&Conn) -> io::Result<T>) -> io::Result<T> {
        let mut attempt = 0;
        loop {
            let res = self.conn().and_then(&op);
            match res {
                Err(e) if is_transient(&e) => {
                    if let Some(c) = &self.conn {
                        c.broken.store(true, Ordering::SeqCst);
                    }
                    self.conn = None;
                    if attempt == 0 && e.kind() != io::ErrorKind::TimedOut {
                        attempt += 1;
                        std::thread::sleep(RECONNECT_BACKOFF);
                        continue;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Run `op` once (it consumes input that cannot be replayed); a dead session is discarded.
    fn once<T>(&mut self, op: impl FnOnce(&Conn) -> io::Result<T>) -> io::Result<T> {
        let res = self.conn().and_then(op);
        if let Err(e) = &res {
            if is_transient(e) {
                if let Some(c) = &self.conn {
                    c.broken.store(true, Ordering::SeqCst);
                }
                self.conn = None;
            }
        }
        res
    }
}

impl SftpDrop {
    /// Folder, final path and temp path (`.NAME.RANDOM.tmp` beside it) for writing `path`.
    fn write_target(&self, path: &str) -> io::Result<(PathBuf, PathBuf, PathBuf)> {
        let target = self.resolve(path)?;
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&self.cfg.root));
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("path {path:?} names no file")));
        }
        // Dot prefix and .tmp suffix: every poller (ours included) skips it.
        let tmp = dir.join(super::temp_name(&name, &random_suffix()));
        Ok((dir, target, tmp))
    }

    /// Opens extra sessions (in parallel: each handshake is several round trips) until `want`
    /// are there counting the main one, as far as the process-wide cap has free slots now.
    /// One that fails to open is done without: fewer sessions are only slower.
    fn top_up_sessions(&mut self, want: usize) {
        self.extra.retain(|(c, _)| !c.broken.load(Ordering::SeqCst));
        let key = format!("{}:{}:{}", self.cfg.host, self.cfg.port, self.cfg.user);
        let missing = want.saturating_sub(1 + self.extra.len());
        let permits: Vec<Permit> =
            (0..missing).map_while(|_| Permit::try_acquire(&key, self.cfg.max_sessions)).collect();
        if permits.is_empty() {
            return;
        }
        let cfg = &self.cfg;
        let mut opened: Vec<(io::Result<Conn>, Permit)> = Vec::with_capacity(permits.len());
        let mut permits = permits.into_iter().peekable();
        while permits.peek().is_some() {
            let wave: Vec<Permit> = permits.by_ref().take(HANDSHAKES_AT_ONCE).collect();
            opened.extend(std::thread::scope(|s| {
                let hs: Vec<_> = wave.into_iter().map(|p| s.spawn(move || (Conn::open(cfg), p))).collect();
                hs.into_iter().filter_map(|h| h.join().ok()).collect::<Vec<_>>()
            }));
        }
        for (c, p) in opened {
            match c {
                Ok(c) => self.extra.push((c, p)),
                Err(e) => tracing::debug!(drop = %cfg.location(), error = %e, "extra sFTP session not opened"),
            }
        }
    }
}

/// Handshakes `top_up_sessions` runs at once: below OpenSSH's `MaxStartups` (10 by default),
/// beyond which sshd drops unauthenticated connections at random.
const HANDSHAKES_AT_ONCE: usize = 8;

/// Files per session below which `write_many` opens no further session for a batch.
const FILES_PER_SESSION: usize = 4;

/// One file of a `write_many` batch: its index in the batch and where it goes.
struct Job {
    index: usize,
    target: PathBuf,
    tmp: PathBuf,
}

/// One session's share of a `write_many` batch: takes the next file until none is left or the
/// session dies. A file whose pre-check (`lstat`) failed on a dead session had nothing written
/// yet, so it goes back to the queue for another session; one that died later in its upload
/// keeps that error (its temp name may be left behind, invisible, never its final name).
fn write_worker(
    c: &Conn,
    queue: &Mutex<VecDeque<usize>>,
    jobs: &[Job],
    files: &[(&str, &[u8])],
    mode: Option<u32>,
    done: &Mutex<Vec<(usize, io::Result<()>)>>,
) {
    let lock = |m: &Mutex<VecDeque<usize>>| m.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    if c.sess.keepalive_send().is_err() {
        c.broken.store(true, Ordering::SeqCst);
        return;
    }
    while let Some(k) = lock(queue) {
        let job = &jobs[k];
        let res = match lstat_opt(c, &job.target) {
            Ok(Some(_)) => Err(exists_err(&job.target)),
            Ok(None) => put_new(c, &job.tmp, &job.target, &mut &files[job.index].1[..], mode),
            Err(e) if is_transient(&e) => {
                c.broken.store(true, Ordering::SeqCst);
                queue.lock().unwrap_or_else(|p| p.into_inner()).push_front(k);
                return;
            }
            Err(e) => Err(e),
        };
        let transient = res.as_ref().is_err_and(is_transient);
        done.lock().unwrap_or_else(|p| p.into_inner()).push((k, res));
        if transient {
            c.broken.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// Upload to the temp name `tmp`, then rename it to `target` without replacing anything. On
/// failure the temp file is removed (best effort); a dead or stalled session cannot clean up
/// (and trying would wait another op_timeout), and the dotted .tmp name stays invisible to
/// pollers until a later run removes it.
fn put_new(c: &Conn, tmp: &Path, target: &Path, content: &mut dyn Read, mode: Option<u32>) -> io::Result<()> {
    let res = upload(c, tmp, content, mode).and_then(|()| rename_v3(c, tmp, target));
    if let Err(e) = &res {
        if !is_transient(e) {
            let _ = c.sftp.unlink(tmp);
        }
    }
    res
}

fn lstat_opt(c: &Conn, path: &Path) -> io::Result<Option<FileStat>> {
    match c.sftp.lstat(path) {
        Ok(st) => Ok(Some(st)),
        Err(e) => {
            let err = map_err(&e, &format!("lstat {}", path.display()));
            if err.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

fn entry_kind(st: &FileStat) -> EntryKind {
    st.perm.map(EntryKind::from_mode).unwrap_or(EntryKind::Other)
}

fn entry_of(raw_name: &[u8], st: &FileStat) -> Entry {
    Entry::new(
        raw_name.to_vec(),
        st.size.unwrap_or(0),
        st.mtime.map(|s| UNIX_EPOCH + Duration::from_secs(s)).unwrap_or(UNIX_EPOCH),
        entry_kind(st),
        Identity::Attrs { uid: st.uid.unwrap_or(0), gid: st.gid.unwrap_or(0), perm: st.perm.unwrap_or(0) },
    )
}

/// Drop-relative form of a server path, for messages and [`super::DropEscape`].
fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}

/// Every folder from the root down to `dir` must be a real folder: `lstat` each component
/// (once per session, remembered in `verified`) and refuse a link with
/// [`super::DropEscape`]. `Ok(false)`: one is missing (and `create` is false). With `create`,
/// missing folders are made (mode 0755, less the server's umask).
///
/// What SFTPv3 cannot guarantee: there is no `O_NOFOLLOW` and no handle-relative open, so a
/// folder the warehouse replaces with a link after we checked it is followed by the server
/// until the next session checks again. On the server the sFTP login's own permissions are
/// the limit of what can be reached that way.
fn check_dirs(c: &Conn, root: &Path, dir: &Path, create: bool, verified: &Mutex<HashSet<PathBuf>>) -> io::Result<bool> {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        if verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&cur) {
            continue;
        }
        let not_dir = |st: &FileStat| match entry_kind(st) {
            EntryKind::Symlink => escape_error(&rel_of(root, &cur)),
            k if create => io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("sftp: {} exists and is {}, not a folder", cur.display(), k.describe()),
            ),
            k => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("sftp: {} is {}, not a folder", cur.display(), k.describe()),
            ),
        };
        match lstat_opt(c, &cur)? {
            Some(st) if entry_kind(&st) == EntryKind::Dir => {}
            Some(st) => return Err(not_dir(&st)),
            None if !create => return Ok(false),
            None => {
                if let Err(e) = c.sftp.mkdir(&cur, 0o755) {
                    // Someone else may have created it meanwhile; that is fine if it is a folder.
                    match lstat_opt(c, &cur)? {
                        Some(st) if entry_kind(&st) == EntryKind::Dir => {}
                        Some(st) => return Err(not_dir(&st)),
                        None => return Err(map_err(&e, &format!("mkdir {}", cur.display()))),
                    }
                }
            }
        }
        verified.lock().unwrap_or_else(|p| p.into_inner()).insert(cur.clone());
    }
    Ok(true)
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("sftp: {}: no such file", p.display()))
}

fn not_regular(rel: &str, k: EntryKind) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{rel} is {}, not a regular file; not read", k.describe()))
}

/// Attributes an sFTP server reports that identify a file's content, for "is this still the
/// file we looked at": no inode in SFTPv3, so owner, mode, size and mtime.
fn same_attrs(a: &FileStat, b: &FileStat) -> bool {
    (a.size, a.mtime, a.uid, a.gid, a.perm) == (b.size, b.mtime, b.uid, b.gid, b.perm)
}

fn exists_err(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, format!("sftp: {} already exists", path.display()))
}

/// SFTPv3 `SSH_FXP_RENAME`, which the protocol defines to fail when the target exists.
///
/// Race reasoning: the caller's `lstat` pre-check gives a clean `AlreadyExists` in the common
/// case; the rename itself is what makes it safe, because OpenSSH implements v3 rename with
/// `link(2)` + `unlink(2)`, which atomically refuses an existing target, so a file appearing
/// between our check and our rename makes the rename fail instead of being replaced. We never
/// use `posix-rename@openssh.com`: it is `rename(2)`, which replaces. The flags omit OVERWRITE
/// (they are only sent to SFTPv5+ servers). A non-compliant server whose v3 rename replaces
/// leaves only the window between check and rename.
fn rename_v3(c: &Conn, from: &Path, to: &Path) -> io::Result<()> {
    match c.sftp.rename(from, to, Some(RenameFlags::ATOMIC | RenameFlags::NATIVE)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let err = map_err(&e, &format!("rename {} to {}", from.display(), to.display()));
            // v3 servers report "target exists" as a generic failure: look.
            if !is_transient(&err) && matches!(lstat_opt(c, to), Ok(Some(_))) {
                return Err(exists_err(to));
            }
            Err(err)
        }
    }
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Streams an SFTP file with several READ requests in flight; marks the session broken on
/// connection errors so the drop reconnects.
///
/// Throughput over a long round trip is bytes in flight per round trip. libssh2's `sftp_read`
/// keeps up to four times the buffer it is given requested ahead (in 30,000-byte READs, capped
/// at 8 MiB), topping up on every call, all on this one handle and session. So the reader asks
/// libssh2 for [`READ_FIRST`] bytes first and doubles that on every refill up to [`READ_MAX`]:
/// a small file costs a handful of READs, a big one soon has 8 MiB requested ahead (about
/// 320 MB/s over a 25 ms round trip) while this process holds at most one [`READ_MAX`] buffer
/// plus the reply libssh2 is copying from. libssh2 checks every reply against the offset it
/// expects, so a reply out of order is an error, never misplaced bytes.
///
/// Errors are sticky: once a read failed, every later read fails the same way, so a caller that
/// retries a read cannot mistake a broken transfer for a short file.
struct SftpReader {
    file: ssh2::File,
    sess: Session,
    broken: Arc<AtomicBool>,
    what: String,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Size of the next libssh2 read.
    next: usize,
    failed: Option<(io::ErrorKind, String)>,
}

/// First libssh2 read: 4 x 32 KiB = 5 READs of 30,000 bytes ahead, enough for most CSV files.
const READ_FIRST: usize = 32 * 1024;
/// Largest libssh2 read: 4 x 2 MiB = libssh2's own cap of 8 MiB requested ahead.
const READ_MAX: usize = 2 * 1024 * 1024;

impl SftpReader {
    fn new(file: ssh2::File, c: &Conn, what: String) -> SftpReader {
        SftpReader {
            file,
            sess: c.sess.clone(),
            broken: c.broken.clone(),
            what,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            next: READ_FIRST,
            failed: None,
        }
    }

    /// One libssh2 read: straight into the caller's `into` (at most [`READ_MAX`] bytes), or else
    /// `self.next` bytes into the reader's own buffer; the next read asks for twice as much.
    fn pull(&mut self, into: Option<&mut [u8]>) -> io::Result<usize> {
        let want = self.next;
        self.next = (self.next * 2).min(READ_MAX);
        let res = match into {
            Some(out) => {
                let n = out.len().min(READ_MAX);
                self.file.read(&mut out[..n])
            }
            None => {
                if self.buf.len() < want {
                    self.buf.resize(want, 0);
                }
                self.file.read(&mut self.buf[..want])
            }
        };
        res.map_err(|e| {
            let mapped = remap_io(e, &self.sess, &self.what);
            if is_transient(&mapped) {
                self.broken.store(true, Ordering::SeqCst);
            }
            self.failed = Some((mapped.kind(), mapped.to_string()));
            mapped
        })
    }
}

impl Read for SftpReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.len {
            if out.len() >= self.next {
                // The caller's buffer is big enough: no copy.
                return self.pull(Some(out));
            }
            self.len = self.pull(None)?;
            self.pos = 0;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        if self.broken.load(Ordering::SeqCst) {
            // The handle close below would otherwise wait a full op_timeout on a dead session.
            self.sess.set_timeout(50);
        }
    }
}

/// Upload chunk: libssh2 pipelines writes up to the buffer size, so big buffers matter.
const IO_BUF: usize = 256 * 1024;

impl super::IoTransport for SftpDrop {
    fn describe(&self) -> String {
        self.cfg.location()
    }

    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        let path = self.resolve(dir)?;
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        self.retry(|c| {
            if !check_dirs(c, &root, &path, false, &verified)? {
                return Ok(Vec::new());
            }
            let mut handle = match c.sftp.open_mode(&path, OpenFlags::READ, 0, OpenType::Dir) {
                Ok(h) => h,
                Err(e) => {
                    let err = map_err(&e, &format!("list {}", path.display()));
                    return if err.kind() == io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(err) };
                }
            };
            let mut out = Vec::new();
            loop {
                match handle.readdir() {
                    Ok((p, st)) => {
                        let raw = p.as_os_str().as_bytes();
                        if raw == b"." || raw == b".." {
                            continue;
                        }
                        // READDIR attributes come from lstat on OpenSSH; servers that omit
                        // the type get an explicit lstat so links are never followed.
                        let st = if st.perm.is_none() { lstat_opt(c, &path.join(&p))?.unwrap_or(st) } else { st };
                        out.push(entry_of(raw, &st));
                    }
                    // ssh2 reports the end of a listing as a FILE error ("no more files").
                    Err(e) if matches!(e.code(), ErrorCode::SFTP(rc::FX_EOF) | ErrorCode::Session(rc::FILE)) => break,
                    Err(e) => return Err(map_err(&e, &format!("list {}", path.display()))),
                }
            }
            out.sort_by(|a, b| a.raw_name.cmp(&b.raw_name));
            Ok(out)
        })
    }

    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + Send + 'a>> {
        self.open_checked(path, None)
    }

    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> io::Result<Box<dyn Read + Send + 'a>> {
        self.open_checked(path, Some(listed))
    }

    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()> {
        let (dir, target, tmp) = self.write_target(path)?;
        let root = PathBuf::from(&self.cfg.root);
        // Everything up to here is repeatable; the upload consumes `content` and is not.
        let verified = self.verified.clone();
        self.retry(|c| {
            check_dirs(c, &root, &dir, true, &verified)?;
            match lstat_opt(c, &target)? {
                Some(_) => Err(exists_err(&target)),
                None => Ok(()),
            }
        })?;
        let mode = self.cfg.file_mode;
        self.once(|c| put_new(c, &tmp, &target, content, mode))
    }

    /// Several sessions at once, each taking the next file when done with one: a small file
    /// costs about six round trips (lstat, open, write, fsync, close, rename) that one session
    /// can only make one after the other, so `n` sessions write about `n` times as many files
    /// per second over a long link. Each file is written exactly as by `write_atomic`.
    fn write_many(&mut self, files: &[(&str, &[u8])]) -> Vec<io::Result<()>> {
        let sessions = self.cfg.max_sessions.max(1).min(files.len().div_ceil(FILES_PER_SESSION));
        let one_by_one = |d: &mut SftpDrop| -> Vec<io::Result<()>> {
            files.iter().map(|(p, c)| super::IoTransport::write_atomic(d, p, &mut &c[..])).collect()
        };
        if sessions <= 1 {
            return one_by_one(self);
        }
        let mut results: Vec<Option<io::Result<()>>> = (0..files.len()).map(|_| None).collect();
        let mut jobs = Vec::with_capacity(files.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (index, (path, _)) in files.iter().enumerate() {
            match self.write_target(path) {
                Ok((dir, target, tmp)) => {
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                    jobs.push(Job { index, target, tmp });
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        let checked =
            self.retry(|c| dirs.iter().try_for_each(|d| check_dirs(c, &root, d, true, &verified).map(|_| ())));
        if checked.is_err() {
            // Each file then gets its own error as `write_atomic` reports it (typed: a link
            // in the way is an escape, not a generic failure).
            return one_by_one(self);
        }
        self.top_up_sessions(sessions);
        let conns: Vec<(Conn, Option<Permit>)> = self
            .conn
            .take()
            .map(|c| (c, None))
            .into_iter()
            .chain(self.extra.drain(..).map(|(c, p)| (c, Some(p))))
            .collect();
        let queue = Mutex::new((0..jobs.len()).collect::<VecDeque<usize>>());
        let done = Mutex::new(Vec::with_capacity(jobs.len()));
        let mode = self.cfg.file_mode;
        let back: Vec<(Conn, Option<Permit>)> = std::thread::scope(|s| {
            let workers: Vec<_> = conns
                .into_iter()
                .map(|(c, p)| {
                    let (queue, done, jobs) = (&queue, &done, &jobs);
                    s.spawn(move || {
                        write_worker(&c, queue, jobs, files, mode, done);
                        (c, p)
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        for (c, p) in back {
            // A broken session is dropped here; the next operation reconnects.
            if c.broken.load(Ordering::SeqCst) {
                continue;
            }
            match p {
                None => self.conn = Some(c),
                Some(p) => self.extra.push((c, p)),
            }
        }
        for (k, r) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
            results[jobs[k].index] = Some(r);
        }
        for j in &jobs {
            results[j.index].get_or_insert_with(|| {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("sftp: write {}: not written, every session to the server was lost", j.target.display()),
                ))
            });
        }
        results.into_iter().map(|r| r.expect("every file has a result")).collect()
    }

    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (self.resolve(from)?, self.resolve(to)?);
        let root = PathBuf::from(&self.cfg.root);
        // Repeating after a lost connection is safe: if the first attempt went through, the
        // retry reports NotFound (source gone) or AlreadyExists, never a double move.
        let verified = self.verified.clone();
        self.retry(|c| {
            if !check_dirs(c, &root, f.parent().unwrap_or(&root), false, &verified)? {
                return Err(not_found(&f));
            }
            if let Some(parent) = t.parent() {
                check_dirs(c, &root, parent, true, &verified)?;
            }
            if lstat_opt(c, &t)?.is_some() {
                return Err(exists_err(&t));
            }
            rename_v3(c, &f, &t)
        })
    }

    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> io::Result<()> {
        if raw_name.is_empty() || raw_name == b"." || raw_name == b".." || raw_name.contains(&b'/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an entry name"));
        }
        let d = self.resolve(dir)?;
        let f = d.join(std::ffi::OsStr::from_bytes(raw_name));
        let t = self.resolve(to)?;
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        // SFTP RENAME acts on the name itself: a link is moved, never its target.
        self.retry(|c| {
            if !check_dirs(c, &root, &d, false, &verified)? {
                return Err(not_found(&f));
            }
            if let Some(parent) = t.parent() {
                check_dirs(c, &root, parent, true, &verified)?;
            }
            if lstat_opt(c, &t)?.is_some() {
                return Err(exists_err(&t));
            }
            rename_v3(c, &f, &t)
        })
    }

    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>> {
        let p = self.resolve(path)?;
        let name = p.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        self.retry(|c| {
            if !check_dirs(c, &root, p.parent().unwrap_or(&root), false, &verified)? {
                return Ok(None);
            }
            Ok(lstat_opt(c, &p)?.map(|st| entry_of(&name, &st)))
        })
    }

    fn mkdir_all(&mut self, dir: &str) -> io::Result<()> {
        let p = self.resolve(dir)?;
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        self.retry(|c| check_dirs(c, &root, &p, true, &verified).map(|_| ()))
    }

    fn remove(&mut self, path: &str) -> io::Result<()> {
        let p = self.resolve(path)?;
        let root = PathBuf::from(&self.cfg.root);
        let verified = self.verified.clone();
        self.retry(|c| {
            if !check_dirs(c, &root, p.parent().unwrap_or(&root), false, &verified)? {
                return Err(not_found(&p));
            }
            c.sftp.unlink(&p).map_err(|e| map_err(&e, &format!("remove {}", p.display())))
        })
    }
}

/// Write `content` to a new file `tmp` (exclusive create), flush it to the server and close it.
fn upload(c: &Conn, tmp: &Path, content: &mut dyn Read, mode: Option<u32>) -> io::Result<()> {
    let what = format!("write {}", tmp.display());
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    let perm = mode.unwrap_or(0o644) as i32;
    let mut file = c.sftp.open_mode(tmp, flags, perm, OpenType::File).map_err(|e| map_err(&e, &what))?;
    if let Some(m) = mode {
        // The server's umask applies to the mode given at creation; set it exactly.
        let st = FileStat { size: None, uid: None, gid: None, perm: Some(m), atime: None, mtime: None };
        file.setstat(st).map_err(|e| map_err(&e, &format!("set the mode of {}", tmp.display())))?;
    }
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_ctx(e, "read the content to upload")),
        };
        if let Err(e) = file.write_all(&buf[..n]) {
            return Err(remap_io(e, &c.sess, &what));
        }
    }
    // fsync@openssh.com where offered; servers without it still get a clean close.
    if let Err(e) = file.fsync() {
        let err = map_err(&e, &what);
        if is_transient(&err) {
            return Err(err);
        }
    }
    file.close().map_err(|e| map_err(&e, &what))
}

impl fmt::Debug for SftpDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpDrop").field("cfg", &self.cfg).field("connected", &self.conn.is_some()).finish()
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<SftpDrop>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_printed() {
        let cfg = SftpConfig::new(
            "h",
            22,
            "u",
            "/r",
            SftpAuth::Key { path: "/k".into(), passphrase: Some(Secret::new("hunter2")) },
            "/kh".into(),
        );
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("***"), "{dbg}");
        let pw = SftpAuth::Password(Secret::new("pa55word"));
        assert!(!format!("{pw:?}").contains("pa55word"));
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn hostkey_prefs_put_recorded_first() {
        assert!(hostkey_prefs(&[], false).starts_with("ssh-ed25519,"));
        assert!(!hostkey_prefs(&[], false).contains("ssh-rsa,") && !hostkey_prefs(&[], false).ends_with("ssh-rsa"));
        assert!(hostkey_prefs(&[], true).ends_with(",ssh-rsa"));
        assert!(hostkey_prefs(&["ssh-rsa".into()], false).starts_with("rsa-sha2-512,rsa-sha2-256,ssh-ed25519"));
    }

    #[test]
    fn error_kinds() {
        assert_eq!(kind_of(ErrorCode::Session(rc::TIMEOUT)), io::ErrorKind::TimedOut);
        assert_eq!(kind_of(ErrorCode::Session(rc::SOCKET_RECV)), io::ErrorKind::ConnectionAborted);
        assert_eq!(kind_of(ErrorCode::SFTP(rc::FX_NO_SUCH_FILE)), io::ErrorKind::NotFound);
        assert_eq!(kind_of(ErrorCode::SFTP(4)), io::ErrorKind::Other);
        assert!(!is_transient(&io::Error::from(io::ErrorKind::NotFound)));
    }

    #[test]
    fn permits_cap_sessions() {
        let key = format!("test:{}", random_suffix());
        let a = Permit::acquire(key.clone(), 1, Duration::from_millis(1)).unwrap();
        let e = Permit::acquire(key.clone(), 1, Duration::from_millis(20)).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        std::mem::drop(a);
        Permit::acquire(key, 1, Duration::from_millis(1)).unwrap();
    }
}
