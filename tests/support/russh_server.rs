//! In-process SSH + SFTP server (russh + russh-sftp) for tests, with fault injection.
//!
//! Real SSH over real loopback TCP, on its own tokio runtime so blocking ssh2 clients can use
//! it from plain `#[test]`s. The client-visible filesystem is chrooted (lexically) into
//! `<tmp>/fs`; the drop root is `/drop`, i.e. `local_root()` = `<tmp>/fs/drop`.
//! Rename follows OpenSSH: `link` + `unlink` for files, so it never replaces a target.

use russh::keys::ssh_key::{private::Ed25519Keypair, LineEnding, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File as SftpFile, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch_bridge::drop::sftp::{record_host_key, Secret, SftpAuth, SftpConfig};

pub const USER: &str = "warehouse";
pub const PASSWORD: &str = "correct horse battery staple";

/// Faults the server injects; flip them from the test at any time.
#[derive(Default)]
pub struct Faults {
    /// Every RENAME fails with SSH_FX_FAILURE.
    pub fail_rename: AtomicBool,
    /// WRITEs fail with SSH_FX_FAILURE "No space left on device" once this many bytes were
    /// written in total (0 = off).
    pub disk_full_after: AtomicU64,
    /// READs are never answered.
    pub stall_reads: AtomicBool,
    /// Cut every TCP connection when the Nth READ arrives (0 = off).
    pub drop_at_read: AtomicU64,
    /// A client path (e.g. `/drop/archive`) the login may read but not write into, like a
    /// folder owned by someone else: OPEN for writing, MKDIR, RMDIR, REMOVE and RENAME of paths
    /// below it (from or into) answer SSH_FX_PERMISSION_DENIED. Set with
    /// [`Faults::deny_writes_under`].
    deny_writes: Mutex<Option<String>>,
    /// Requests refused because of `deny_writes`.
    denied: AtomicU64,
    /// A client path whose OPENDIR makes the server "replaced" (see
    /// [`Faults::replace_server_at_opendir`]).
    replace_at_opendir: Mutex<Option<String>>,
    /// New connections are answered with another host key than [`RusshServer::host_key`].
    impostor: AtomicBool,
    /// See [`Faults::drop_at_read_of`]: the client path and how many more OPENs of it to let
    /// through whole.
    drop_at_read_of: Mutex<Option<(String, u32)>>,
    reads: AtomicU64,
    written: AtomicU64,
    conns: Mutex<Vec<std::net::TcpStream>>,
}

impl Faults {
    /// Cut all open connections now (both directions), as a crashed server or a NAT would.
    pub fn drop_connections(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Number of READ requests received so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Refuse writes below the client path `dir` (`None` = off).
    pub fn deny_writes_under(&self, dir: Option<&str>) {
        *self.deny_writes.lock().unwrap() = dir.map(str::to_string);
    }

    /// When an OPENDIR of the client path `dir` arrives, the server is replaced, as by a
    /// reinstall or an impostor: every connection is cut and new ones present another host key.
    /// Once; the client's reconnect is what meets the new key.
    pub fn replace_server_at_opendir(&self, dir: &str) {
        *self.replace_at_opendir.lock().unwrap() = Some(dir.to_string());
    }

    /// Cut every connection at the first READ of the `nth` (1-based) OPEN of the client path
    /// `file` from now on, wherever the client is in its read-ahead: a transfer of that file
    /// that dies, the earlier ones complete. Once.
    pub fn drop_at_read_of(&self, file: &str, nth: u32) {
        *self.drop_at_read_of.lock().unwrap() = Some((file.to_string(), nth));
    }

    /// Whether the server was replaced ([`Faults::replace_server_at_opendir`]).
    pub fn replaced(&self) -> bool {
        self.impostor.load(Ordering::SeqCst)
    }

    /// Number of requests refused by [`Faults::deny_writes_under`] so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::SeqCst)
    }
}

struct Shared {
    fs_root: PathBuf,
    client_key: PublicKey,
    faults: Arc<Faults>,
}

pub struct RusshServer {
    dir: tempfile::TempDir,
    pub port: u16,
    pub faults: Arc<Faults>,
    /// Raw public host key blob (as sent in the SSH handshake).
    pub host_key: Vec<u8>,
    pub client_key_path: PathBuf,
    pub known_hosts: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

fn ed25519() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()))
}

/// Write an unencrypted OpenSSH private key file (what libssh2 loads) with mode 0600.
pub fn write_private_key(key: &PrivateKey, path: &Path) {
    let pem = key.to_openssh(LineEnding::LF).unwrap();
    fs::write(path, pem.as_bytes()).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A fresh ed25519 private key file that no server trusts.
pub fn stranger_key(dir: &Path) -> PathBuf {
    let p = dir.join(format!("stranger_{:x}", rand::random::<u32>()));
    write_private_key(&ed25519(), &p);
    p
}

impl RusshServer {
    pub fn start() -> RusshServer {
        let dir = tempfile::tempdir().unwrap();
        let fs_root = dir.path().join("fs");
        fs::create_dir_all(fs_root.join("drop")).unwrap();
        let host = ed25519();
        let client = ed25519();
        let client_key_path = dir.path().join("client_ed25519");
        write_private_key(&client, &client_key_path);
        let host_key = host.public_key().to_bytes().unwrap();
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared { fs_root, client_key: client.public_key().clone(), faults: faults.clone() });
        let config_with = |key: PrivateKey| {
            Arc::new(russh::server::Config {
                keys: vec![key],
                nodelay: true,
                auth_rejection_time: Duration::from_millis(5),
                auth_rejection_time_initial: Some(Duration::ZERO),
                inactivity_timeout: None,
                ..Default::default()
            })
        };
        let configs = [config_with(host), config_with(ed25519())];
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("russh-test-server")
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(accept_loop(listener, configs, shared));
        let known_hosts = dir.path().join("known_hosts");
        record_host_key(&known_hosts, "127.0.0.1", port, &host_key).unwrap();
        RusshServer { dir, port, faults, host_key, client_key_path, known_hosts, runtime: Some(runtime) }
    }

    /// Local folder that is the drop root (`/drop` on the server).
    pub fn local_root(&self) -> PathBuf {
        self.dir.path().join("fs/drop")
    }

    /// Key-authenticated config trusting this server's host key, with short timeouts.
    pub fn config(&self) -> SftpConfig {
        let mut cfg = SftpConfig::new(
            "127.0.0.1",
            self.port,
            USER,
            "/drop",
            SftpAuth::Key { path: self.client_key_path.clone(), passphrase: None },
            self.known_hosts.clone(),
        );
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.op_timeout = Duration::from_secs(10);
        cfg.max_sessions = 4;
        cfg
    }

    pub fn password_config(&self, password: &str) -> SftpConfig {
        let mut cfg = self.config();
        cfg.auth = SftpAuth::Password(Secret::new(password));
        cfg
    }

    /// A scratch folder next to the server's files (for extra known_hosts, keys...).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RusshServer {
    fn drop(&mut self) {
        self.faults.drop_connections();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `configs`: the server's own, and the one a replaced server answers with (another host key).
async fn accept_loop(listener: tokio::net::TcpListener, configs: [Arc<russh::server::Config>; 2], shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        // Keep a clone of the socket so a test can cut the connection abruptly.
        let Ok(std_stream) = stream.into_std() else { continue };
        if let Ok(clone) = std_stream.try_clone() {
            shared.faults.conns.lock().unwrap().push(clone);
        }
        let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else { continue };
        let handler = SshHandler { shared: shared.clone(), channels: HashMap::new() };
        let config = configs[usize::from(shared.faults.impostor.load(Ordering::SeqCst))].clone();
        tokio::spawn(async move {
            if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
                let _ = session.await;
            }
        });
    }
}

struct SshHandler {
    shared: Arc<Shared>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if user == USER && password == PASSWORD { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let ok = user == USER && key.public_key.key_data() == self.shared.client_key.key_data();
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => {
                session.channel_success(channel_id)?;
                let fs = SftpFs { shared: self.shared.clone(), handles: HashMap::new(), next: 0, doomed: None };
                russh_sftp::server::run(channel.into_stream(), fs).await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

enum OpenHandle {
    File(fs::File),
    Dir(Vec<SftpFile>),
}

struct SftpFs {
    shared: Arc<Shared>,
    handles: HashMap<String, OpenHandle>,
    next: u64,
    /// The handle whose first READ cuts the connections ([`Faults::drop_at_read_of`]).
    doomed: Option<String>,
}

fn status(code: StatusCode, msg: impl Into<String>) -> StatusReply {
    StatusReply::new(code).with_message(msg)
}

fn io_status(e: io::Error) -> StatusReply {
    let code = match e.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    status(code, e.to_string())
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn attrs(md: &Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(md.len()),
        uid: Some(md.uid()),
        gid: Some(md.gid()),
        permissions: Some(md.mode()),
        atime: Some(md.atime() as u32),
        mtime: Some(md.mtime() as u32),
        ..Default::default()
    }
}

impl SftpFs {
    /// Client path -> local path; `..` may not climb above the chroot.
    fn map(&self, p: &str) -> Result<PathBuf, StatusReply> {
        let mut parts: Vec<&str> = Vec::new();
        for seg in p.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(status(StatusCode::PermissionDenied, "path escapes the root"));
                    }
                }
                s => parts.push(s),
            }
        }
        let mut out = self.shared.fs_root.clone();
        out.extend(parts);
        Ok(out)
    }

    /// The `deny_writes` fault: `Err` if any of `paths` (already mapped) lies below the denied
    /// folder. Compared component by component, so `/drop/archive2` is not affected.
    fn check_writable(&self, paths: &[&Path]) -> Result<(), StatusReply> {
        let faults = &self.shared.faults;
        let Some(dir) = faults.deny_writes.lock().unwrap().clone() else { return Ok(()) };
        let denied = self.map(&dir)?;
        if paths.iter().any(|p| p.starts_with(&denied) && *p != denied) {
            faults.denied.fetch_add(1, Ordering::SeqCst);
            return Err(status(StatusCode::PermissionDenied, "Permission denied"));
        }
        Ok(())
    }

    fn add(&mut self, h: OpenHandle) -> String {
        self.next += 1;
        let name = self.next.to_string();
        self.handles.insert(name.clone(), h);
        name
    }

    fn file(&self, handle: &str) -> Result<&fs::File, StatusReply> {
        match self.handles.get(handle) {
            Some(OpenHandle::File(f)) => Ok(f),
            _ => Err(status(StatusCode::Failure, "bad handle")),
        }
    }
}

impl russh_sftp::server::Handler for SftpFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.map(&filename)?;
        let writes = OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        if pflags.intersects(writes) {
            self.check_writable(&[&path])?;
        }
        let mut o = OpenOptions::new();
        o.read(pflags.contains(OpenFlags::READ))
            .write(pflags.contains(OpenFlags::WRITE))
            .append(pflags.contains(OpenFlags::APPEND))
            .truncate(pflags.contains(OpenFlags::TRUNCATE))
            .mode(attrs.permissions.unwrap_or(0o644) & 0o7777);
        if pflags.contains(OpenFlags::CREATE) && pflags.contains(OpenFlags::EXCLUDE) {
            o.create_new(true);
        } else if pflags.contains(OpenFlags::CREATE) {
            o.create(true);
        }
        let f = o.open(&path).map_err(io_status)?;
        let handle = self.add(OpenHandle::File(f));
        let mut drop_at = self.shared.faults.drop_at_read_of.lock().unwrap();
        if let Some((_, left)) = drop_at.as_mut().filter(|(file, _)| *file == filename) {
            *left -= 1;
            if *left == 0 {
                *drop_at = None;
                self.doomed = Some(handle.clone());
            }
        }
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.handles.remove(&handle).ok_or_else(|| status(StatusCode::Failure, "bad handle"))?;
        Ok(ok(id))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let faults = self.shared.faults.clone();
        let n = faults.reads.fetch_add(1, Ordering::SeqCst) + 1;
        let drop_at = faults.drop_at_read.load(Ordering::SeqCst);
        if (drop_at != 0 && n >= drop_at) || self.doomed.as_ref() == Some(&handle) {
            faults.drop_connections();
            std::future::pending::<()>().await;
        }
        if faults.stall_reads.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let f = self.file(&handle)?;
        let mut buf = vec![0u8; len.min(256 * 1024) as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], offset + got as u64).map_err(io_status)? {
                0 => break,
                k => got += k,
            }
        }
        if got == 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        buf.truncate(got);
        Ok(Data { id, data: buf })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, Self::Error> {
        let faults = self.shared.faults.clone();
        let limit = faults.disk_full_after.load(Ordering::SeqCst);
        let before = faults.written.fetch_add(data.len() as u64, Ordering::SeqCst);
        let f = self.file(&handle)?;
        if limit != 0 && before + data.len() as u64 > limit {
            // Like a real full disk: what fitted is on disk, the rest is refused.
            let fits = limit.saturating_sub(before) as usize;
            f.write_all_at(&data[..fits], offset).map_err(io_status)?;
            return Err(status(StatusCode::Failure, "No space left on device"));
        }
        f.write_all_at(&data, offset).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let md = fs::symlink_metadata(self.map(&path)?).map_err(io_status)?;
        Ok(Attrs { id, attrs: attrs(&md) })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let md = fs::metadata(self.map(&path)?).map_err(io_status)?;
        Ok(Attrs { id, attrs: attrs(&md) })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let md = self.file(&handle)?.metadata().map_err(io_status)?;
        Ok(Attrs { id, attrs: attrs(&md) })
    }

    async fn setstat(&mut self, id: u32, _path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, _handle: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let faults = self.shared.faults.clone();
        let replace = faults.replace_at_opendir.lock().unwrap().take_if(|d| *d == path).is_some();
        if replace {
            faults.impostor.store(true, Ordering::SeqCst);
            faults.drop_connections();
            std::future::pending::<()>().await;
        }
        let dir = self.map(&path)?;
        let mut files = Vec::new();
        for de in fs::read_dir(&dir).map_err(io_status)? {
            let de = de.map_err(io_status)?;
            // lstat, like OpenSSH: a symlink is reported as a link.
            let Ok(md) = fs::symlink_metadata(de.path()) else { continue };
            files.push(SftpFile::new(de.file_name().to_string_lossy(), attrs(&md)));
        }
        Ok(Handle { id, handle: self.add(OpenHandle::Dir(files)) })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(OpenHandle::Dir(files)) if !files.is_empty() => {
                let take = files.len().min(100);
                Ok(Name { id, files: files.drain(..take).collect() })
            }
            Some(OpenHandle::Dir(_)) => Err(StatusReply::new(StatusCode::Eof)),
            _ => Err(status(StatusCode::Failure, "bad handle")),
        }
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let p = self.map(&path)?;
        self.check_writable(&[&p])?;
        fs::DirBuilder::new().mode(attrs.permissions.unwrap_or(0o755) & 0o7777).create(p).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let p = self.map(&path)?;
        self.check_writable(&[&p])?;
        fs::remove_dir(p).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let p = self.map(&filename)?;
        self.check_writable(&[&p])?;
        fs::remove_file(p).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        if self.shared.faults.fail_rename.load(Ordering::SeqCst) {
            return Err(status(StatusCode::Failure, "injected rename failure"));
        }
        let (from, to) = (self.map(&oldpath)?, self.map(&newpath)?);
        self.check_writable(&[&from, &to])?;
        let md = fs::symlink_metadata(&from).map_err(io_status)?;
        if md.is_file() {
            fs::hard_link(&from, &to).map_err(io_status)?;
            fs::remove_file(&from).map_err(io_status)?;
        } else {
            if fs::symlink_metadata(&to).is_ok() {
                return Err(status(StatusCode::Failure, "target exists"));
            }
            fs::rename(&from, &to).map_err(io_status)?;
        }
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let local = self.map(&path)?;
        let rel = local.strip_prefix(&self.shared.fs_root).unwrap_or(Path::new(""));
        Ok(Name { id, files: vec![SftpFile::dummy(format!("/{}", rel.display()))] })
    }
}

/// Public key blob of a fresh ed25519 key (a "different server" for changed-key tests).
pub fn stranger_public_blob() -> Vec<u8> {
    ed25519().public_key().to_bytes().unwrap()
}
