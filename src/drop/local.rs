//! A drop that is a folder on this machine (`file:///srv/drop` or a plain path).
//!
//! A jail: the root is opened as configured (it may be reached through links), and everything
//! below it relative to directory handles, one component at a time, with `O_NOFOLLOW`
//! (`openat`, `mkdirat`, `renameat2`, `unlinkat`). So a link planted anywhere below the root —
//! a folder, or a file swapped for one after it was listed — is never followed, however it got
//! there; the check and the use are the same system call.

use super::{changed_error, escape_error, Entry, EntryKind, Identity};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub struct LocalDrop {
    root: PathBuf,
    /// Exact mode of the files we create; `None`: 0666 less the process umask.
    file_mode: Option<u32>,
}

impl LocalDrop {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDrop { root: root.into(), file_mode: None }
    }

    /// Files this drop writes get exactly `mode` (the `file_mode` account key) instead of
    /// what the umask leaves of 0666.
    pub fn with_file_mode(mut self, mode: Option<u32>) -> Self {
        self.file_mode = mode;
        self
    }

    fn open_root(&self) -> io::Result<OwnedFd> {
        rfs::openat(CWD, &self.root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("drop root {}: {e}", self.root.display())))
    }

    /// The folder `comps` below the root, every component opened without following links.
    /// `None` if a component is missing and `create` is false; with `create`, missing folders
    /// are made (`mkdirat`, mode 0777 less the umask) and opened the same way.
    fn walk(&self, comps: &[&OsStr], create: bool) -> io::Result<Option<OwnedFd>> {
        let mut fd = self.open_root()?;
        let mut at = String::new();
        for c in comps {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(&c.to_string_lossy());
            let next = match open_dir_at(&fd, c) {
                Ok(d) => d,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&fd, *c, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(ctx(e, &at)),
                    }
                    open_dir_at(&fd, c).map_err(|e| not_a_dir(&fd, c, &at, e, create))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(not_a_dir(&fd, c, &at, e, create)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    /// The folder holding `rel`'s last component, and that component.
    fn parent<'p>(&self, rel: &'p str, create: bool) -> io::Result<(Option<OwnedFd>, &'p OsStr)> {
        let comps = components(rel)?;
        let Some((name, dirs)) = comps.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("path {rel:?} names no file")));
        };
        Ok((self.walk(dirs, create)?, name))
    }

    /// Open the regular file `rel` without following a link and without blocking on a FIFO.
    fn open_file(&self, rel: &str) -> io::Result<(File, rfs::Stat)> {
        let (dir, name) = self.parent(rel, false)?;
        let dir = dir.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{rel}: no such file")))?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(ctx(Errno::NOENT, rel)),
            // ELOOP (a link), ENXIO (a socket), and whatever else a non-file gives: say what it is.
            Err(e) => {
                return Err(match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if kind_of(&st) != EntryKind::File => not_regular(rel, kind_of(&st)),
                    _ => ctx(e, rel),
                })
            }
        };
        let st = rfs::fstat(&fd)?;
        if kind_of(&st) != EntryKind::File {
            return Err(not_regular(rel, kind_of(&st)));
        }
        Ok((File::from(fd), st))
    }

    fn open_buffered<'a>(f: File) -> Box<dyn Read + Send + 'a> {
        Box::new(io::BufReader::with_capacity(256 * 1024, f))
    }
}

fn components(rel: &str) -> io::Result<Vec<&OsStr>> {
    let p = Path::new(rel);
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("path {rel:?} is not inside the drop")))
            }
        }
    }
    Ok(out)
}

fn open_dir_at(fd: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rfs::openat(fd, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

fn ctx(e: Errno, at: &str) -> io::Error {
    let base = io::Error::from(e);
    io::Error::new(base.kind(), format!("{at}: {base}"))
}

/// Why `name` could not be opened as a folder: a link is a [`super::DropEscape`]; anything
/// else in a folder's place is `AlreadyExists` when we meant to create it (as `mkdir -p`).
fn not_a_dir(fd: &OwnedFd, name: &OsStr, at: &str, e: Errno, create: bool) -> io::Error {
    match rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).map(|st| kind_of(&st)) {
        Ok(EntryKind::Symlink) => escape_error(at),
        Ok(k) if k != EntryKind::Dir && create => {
            io::Error::new(io::ErrorKind::AlreadyExists, format!("{at} exists and is {}, not a folder", k.describe()))
        }
        _ => ctx(e, at),
    }
}

fn not_regular(rel: &str, k: EntryKind) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{rel} is {}, not a regular file; not read", k.describe()))
}

fn kind_of(st: &rfs::Stat) -> EntryKind {
    EntryKind::from_mode(st.st_mode)
}

// The field types of `struct stat` differ between architectures; on some these are no-ops.
#[allow(clippy::unnecessary_cast)]
fn entry_of(raw_name: &[u8], st: &rfs::Stat) -> Entry {
    let (secs, nanos) = (st.st_mtime as i64, st.st_mtime_nsec as u32);
    let mtime =
        u64::try_from(secs).map(|s| UNIX_EPOCH + Duration::new(s, nanos.min(999_999_999))).unwrap_or(UNIX_EPOCH);
    Entry::new(
        raw_name.to_vec(),
        st.st_size.max(0) as u64,
        mtime,
        kind_of(st),
        Identity::Inode { dev: st.st_dev as u64, ino: st.st_ino as u64 },
    )
}

/// `renameat2(RENAME_NOREPLACE)`: results and archived originals are never overwritten, and
/// the last component is never followed (a link is moved, not its target).
fn rename_at(from_dir: &OwnedFd, from: &OsStr, to_dir: &OwnedFd, to: &OsStr, what: &str) -> io::Result<()> {
    let renamed = if force_link_fallback() {
        Err(Errno::INVAL)
    } else {
        rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE)
    };
    match renamed {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) | Err(Errno::NOSYS) => rename_by_link(from_dir, from, to_dir, to, what),
        Err(e) => Err(ctx(e, what)),
    }
}

/// For filesystems without RENAME_NOREPLACE: a hard link is also atomic and no-replace (and
/// `linkat` without AT_SYMLINK_FOLLOW links a link itself), then the old name is unlinked. A
/// crash between the two leaves both names on one file; the next attempt finds the target is
/// that same file (device and inode) and finishes by unlinking the source, instead of failing
/// with `AlreadyExists` on every run. Folders cannot be hard-linked: check, then rename (a
/// narrow window, on such filesystems only).
fn rename_by_link(from_dir: &OwnedFd, from: &OsStr, to_dir: &OwnedFd, to: &OsStr, what: &str) -> io::Result<()> {
    let st = rfs::statat(from_dir, from, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ctx(e, what))?;
    if kind_of(&st) == EntryKind::Dir {
        if rfs::statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(ctx(Errno::EXIST, what));
        }
        return rfs::renameat(from_dir, from, to_dir, to).map_err(|e| ctx(e, what));
    }
    match rfs::linkat(from_dir, from, to_dir, to, AtFlags::empty()) {
        Ok(()) => {}
        // Both names looked at now, not the source's earlier stat: unlinking the source then
        // only ever removes a second name of the file the target keeps.
        Err(Errno::EXIST) if same_file(from_dir, from, to_dir, to) => {}
        Err(e) => return Err(ctx(e, what)),
    }
    rfs::unlinkat(from_dir, from, AtFlags::empty()).map_err(|e| ctx(e, what))
}

/// Do both names (links not followed) refer to one file?
fn same_file(a_dir: &OwnedFd, a: &OsStr, b_dir: &OwnedFd, b: &OsStr) -> bool {
    match (rfs::statat(a_dir, a, AtFlags::SYMLINK_NOFOLLOW), rfs::statat(b_dir, b, AtFlags::SYMLINK_NOFOLLOW)) {
        (Ok(x), Ok(y)) => (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino),
        _ => false,
    }
}

#[cfg(test)]
thread_local! {
    /// Tests take the hard-link path although the filesystems here support RENAME_NOREPLACE.
    static FORCE_LINK_FALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn force_link_fallback() -> bool {
    FORCE_LINK_FALLBACK.with(|f| f.get())
}

#[cfg(not(test))]
fn force_link_fallback() -> bool {
    false
}

impl super::IoTransport for LocalDrop {
    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }

    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        let Some(fd) = self.walk(&components(dir)?, false)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for de in rfs::Dir::read_from(&fd)? {
            let de = de?;
            let raw = de.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let st = match rfs::statat(&fd, de.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(ctx(e, dir)),
            };
            out.push(entry_of(raw, &st));
        }
        out.sort_by(|a, b| a.raw_name.cmp(&b.raw_name));
        Ok(out)
    }

    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(Self::open_buffered(self.open_file(path)?.0))
    }

    fn open_listed<'a>(&'a mut self, path: &str, listed: &Entry) -> io::Result<Box<dyn Read + Send + 'a>> {
        let (f, st) = match self.open_file(path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(changed_error(path, e.to_string())),
            Err(e) => return Err(e),
        };
        let now = entry_of(&listed.raw_name, &st);
        if now.identity != listed.identity {
            return Err(changed_error(path, "another file is behind the name now"));
        }
        Ok(Self::open_buffered(f))
    }

    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()> {
        let (dir, name) = self.parent(path, true)?;
        let dir = dir.expect("created");
        let name_str = name.to_string_lossy();
        let mode = Mode::from_raw_mode(self.file_mode.unwrap_or(0o666));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Dot prefix and .tmp suffix: every poller (ours included) skips it.
        let (tmp, fd) = loop {
            let tmp = super::temp_name(&name_str, &format!("{:08x}", rand::random::<u32>()));
            match rfs::openat(&dir, tmp.as_str(), flags, mode) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(ctx(e, path)),
            }
        };
        let res = (|| {
            if let Some(m) = self.file_mode {
                // Exactly the configured mode, whatever the umask took away.
                rfs::fchmod(&fd, Mode::from_raw_mode(m))?;
            }
            let mut f = File::from(fd);
            io::copy(content, &mut io::BufWriter::with_capacity(256 * 1024, &mut f))?;
            f.flush()?;
            f.sync_all()?;
            rename_at(&dir, OsStr::new(&tmp), &dir, name, path)
        })();
        if res.is_err() {
            let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        res?;
        let _ = rfs::fsync(&dir);
        Ok(())
    }

    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()> {
        let (fdir, fname) = self.parent(from, false)?;
        let fdir = fdir.ok_or_else(|| ctx(Errno::NOENT, from))?;
        let (tdir, tname) = self.parent(to, true)?;
        rename_at(&fdir, fname, &tdir.expect("created"), tname, &format!("rename {from} to {to}"))
    }

    fn rename_entry(&mut self, dir: &str, raw_name: &[u8], to: &str) -> io::Result<()> {
        if raw_name.is_empty() || raw_name == b"." || raw_name == b".." || raw_name.contains(&b'/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an entry name"));
        }
        let fdir = self.walk(&components(dir)?, false)?.ok_or_else(|| ctx(Errno::NOENT, dir))?;
        let (tdir, tname) = self.parent(to, true)?;
        rename_at(
            &fdir,
            OsStr::from_bytes(raw_name),
            &tdir.expect("created"),
            tname,
            &format!("move an entry of {dir} to {to}"),
        )
    }

    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>> {
        let (dir, name) = self.parent(path, false)?;
        let Some(dir) = dir else { return Ok(None) };
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(name.as_bytes(), &st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(ctx(e, path)),
        }
    }

    fn mkdir_all(&mut self, dir: &str) -> io::Result<()> {
        self.walk(&components(dir)?, true).map(|_| ())
    }

    fn remove(&mut self, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path, false)?;
        let dir = dir.ok_or_else(|| ctx(Errno::NOENT, path))?;
        rfs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| ctx(e, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::{DropError, DropErrorKind, Transport};
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn names(d: &mut LocalDrop, dir: &str) -> Vec<String> {
        d.list(dir).unwrap().into_iter().map(|e| e.name).collect()
    }

    /// Renames on this thread take the hard-link fallback while the guard lives.
    struct LinkFallback;
    impl LinkFallback {
        fn on() -> LinkFallback {
            FORCE_LINK_FALLBACK.with(|f| f.set(true));
            LinkFallback
        }
    }
    impl Drop for LinkFallback {
        fn drop(&mut self) {
            FORCE_LINK_FALLBACK.with(|f| f.set(false));
        }
    }

    #[test]
    fn link_fallback_moves_without_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let _fallback = LinkFallback::on();
        let mut d = LocalDrop::new(dir.path());
        d.write_atomic("in/a.csv", &mut &b"a"[..]).unwrap();
        d.write_atomic("in/b.csv", &mut &b"b"[..]).unwrap();
        d.write_atomic("archive/b.csv", &mut &b"other b"[..]).unwrap();
        d.rename_no_replace("in/a.csv", "archive/a.csv").unwrap();
        let e = d.rename_no_replace("in/b.csv", "archive/b.csv").unwrap_err();
        assert_eq!(e.kind, DropErrorKind::AlreadyExists, "{e}");
        assert_eq!(names(&mut d, "in"), vec!["b.csv".to_string()]);
        assert_eq!(fs::read(dir.path().join("archive/a.csv")).unwrap(), b"a");
        assert_eq!(fs::read(dir.path().join("archive/b.csv")).unwrap(), b"other b");
        assert_eq!(fs::read(dir.path().join("in/b.csv")).unwrap(), b"b");
    }

    #[test]
    fn link_fallback_finishes_a_move_a_crash_left_between_link_and_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let _fallback = LinkFallback::on();
        let mut d = LocalDrop::new(dir.path());
        d.write_atomic("in/a.csv", &mut &b"a"[..]).unwrap();
        d.mkdir_all("archive").unwrap();
        // Where a crash after `linkat` and before `unlinkat` leaves the move.
        fs::hard_link(dir.path().join("in/a.csv"), dir.path().join("archive/a.csv")).unwrap();
        d.rename_no_replace("in/a.csv", "archive/a.csv").unwrap();
        assert!(names(&mut d, "in").is_empty());
        assert_eq!(fs::read(dir.path().join("archive/a.csv")).unwrap(), b"a");
        assert_eq!(
            fs::metadata(dir.path().join("archive/a.csv")).map(|m| std::os::unix::fs::MetadataExt::nlink(&m)).unwrap(),
            1
        );
    }

    #[test]
    fn write_atomic_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalDrop::new(dir.path());
        d.write_atomic("results/a.csv", &mut &b"one"[..]).unwrap();
        let err = d.write_atomic("results/a.csv", &mut &b"two"[..]).unwrap_err();
        assert_eq!(err.kind, DropErrorKind::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("results/a.csv")).unwrap(), b"one");
        // No temp file left behind by the failed write.
        assert_eq!(names(&mut d, "results"), vec!["a.csv".to_string()]);
    }

    #[test]
    fn paths_cannot_escape_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalDrop::new(dir.path());
        assert!(d.open_read("../etc/passwd").is_err());
        assert!(d.write_atomic("/tmp/x", &mut &b""[..]).is_err());
    }

    /// A drop with `link` (a symlink to a folder outside it holding `secret.csv`).
    fn with_linked_folder(link: &str) -> (tempfile::TempDir, tempfile::TempDir, LocalDrop) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.csv"), "sku,quantity\nS,1\n").unwrap();
        let l = dir.path().join(link);
        fs::create_dir_all(l.parent().unwrap()).unwrap();
        symlink(outside.path(), &l).unwrap();
        let d = LocalDrop::new(dir.path());
        (dir, outside, d)
    }

    #[test]
    fn a_linked_folder_is_never_entered() {
        let (_dir, outside, mut d) = with_linked_folder("results");
        let escape = |e: DropError| match e.kind {
            DropErrorKind::Escape { link } => Some(link),
            _ => None,
        };
        assert_eq!(escape(d.write_atomic("results/r.csv", &mut &b"x"[..]).unwrap_err()), Some("results".into()));
        assert_eq!(escape(d.list("results").unwrap_err()), Some("results".into()));
        assert_eq!(escape(d.open_read("results/secret.csv").err().unwrap()), Some("results".into()));
        assert_eq!(escape(d.mkdir_all("results/x").unwrap_err()), Some("results".into()));
        assert_eq!(escape(d.stat("results/secret.csv").unwrap_err()), Some("results".into()));
        assert_eq!(escape(d.remove("results/secret.csv").unwrap_err()), Some("results".into()));
        fs::create_dir(_dir.path().join("in")).unwrap();
        fs::write(_dir.path().join("in/a.csv"), "a").unwrap();
        assert_eq!(escape(d.rename_no_replace("in/a.csv", "results/a.csv").unwrap_err()), Some("results".into()));
        // The link itself is an entry like any other, and can be moved as one.
        let root = d.list("").unwrap();
        assert_eq!(root.iter().find(|e| e.name == "results").map(|e| e.kind), Some(EntryKind::Symlink));
        d.rename_entry("", b"results", "rejected/results").unwrap();
        assert!(fs::symlink_metadata(_dir.path().join("rejected/results")).unwrap().file_type().is_symlink());
        let left: Vec<_> = fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("secret.csv")], "nothing planted or moved outside");
    }

    #[test]
    fn deeper_links_are_caught_too() {
        let (_dir, _outside, mut d) = with_linked_folder("archive/2024-01-01");
        fs::write(_dir.path().join("x.csv"), "a").unwrap();
        let e = d.rename_no_replace("x.csv", "archive/2024-01-01/x.csv").unwrap_err();
        assert_eq!(e.kind, DropErrorKind::Escape { link: "archive/2024-01-01".into() });
        assert_eq!(e.path, "x.csv", "the error names what was moved");
        assert!(_dir.path().join("x.csv").exists());
    }

    #[test]
    fn a_file_swapped_for_a_link_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "secret").unwrap();
        fs::create_dir(dir.path().join("in")).unwrap();
        fs::write(dir.path().join("in/a.csv"), "sku\n").unwrap();
        let mut d = LocalDrop::new(dir.path());
        let listed = d.list("in").unwrap().remove(0);
        assert_eq!(listed.kind, EntryKind::File);
        // A second name keeps the listed inode allocated, so no later file can reuse its number.
        fs::hard_link(dir.path().join("in/a.csv"), dir.path().join("kept")).unwrap();
        fs::remove_file(dir.path().join("in/a.csv")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("in/a.csv")).unwrap();
        let e = d.open_listed("in/a.csv", &listed).err().unwrap();
        assert_eq!(e.kind, DropErrorKind::Changed, "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(d.open_read("in/a.csv").is_err());
        // Swapped for another regular file: the inode differs.
        fs::write(dir.path().join("in/new"), "sku\n").unwrap();
        fs::rename(dir.path().join("in/new"), dir.path().join("in/a.csv")).unwrap();
        let e = d.open_listed("in/a.csv", &listed).err().unwrap();
        assert_eq!(e.kind, DropErrorKind::Changed, "{e}");
        let again = d.list("in").unwrap().remove(0);
        let mut s = String::new();
        d.open_listed("in/a.csv", &again).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "sku\n");
    }

    #[test]
    fn fifos_and_sockets_are_listed_as_such_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.csv");
        rustix::fs::mknodat(CWD, &fifo, rfs::FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(dir.path().join("s.csv")).unwrap();
        fs::create_dir(dir.path().join("sub.csv")).unwrap();
        let mut d = LocalDrop::new(dir.path());
        let kinds: Vec<_> = d.list("").unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("p.csv".into(), EntryKind::Fifo),
                ("s.csv".into(), EntryKind::Socket),
                ("sub.csv".into(), EntryKind::Dir)
            ]
        );
        // Would block forever if the FIFO were opened for reading without O_NONBLOCK.
        let e = d.open_read("p.csv").err().unwrap();
        assert!(e.to_string().contains("named pipe"), "{e}");
        let e = d.open_read("s.csv").err().unwrap();
        assert!(e.to_string().contains("socket"), "{e}");
    }

    #[test]
    fn non_utf8_names_are_moved_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let raw: &[u8] = b"caf\xe9.csv";
        fs::create_dir(dir.path().join("in")).unwrap();
        fs::write(dir.path().join("in").join(OsStr::from_bytes(raw)), "x").unwrap();
        let mut d = LocalDrop::new(dir.path());
        let e = d.list("in").unwrap().remove(0);
        assert_eq!((e.raw_name.as_slice(), e.name.as_str()), (raw, "caf\u{fffd}.csv"));
        d.rename_entry("in", &e.raw_name, "rejected/cafe.csv").unwrap();
        assert_eq!(fs::read(dir.path().join("rejected/cafe.csv")).unwrap(), b"x");
    }

    #[test]
    fn written_files_follow_the_umask_or_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        // Read, not set: the umask is the whole process's, and tests run in parallel.
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask =
            status.lines().find_map(|l| l.strip_prefix("Umask:")).map(|v| u32::from_str_radix(v.trim(), 8).unwrap());
        let umask = umask.expect("Umask in /proc/self/status");
        let mut d = LocalDrop::new(dir.path());
        d.write_atomic("a.csv", &mut &b"x"[..]).unwrap();
        let mode = |n: &str| fs::metadata(dir.path().join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a.csv"), 0o666 & !umask, "umask {umask:o}");
        let mut d = LocalDrop::new(dir.path()).with_file_mode(Some(0o640));
        d.write_atomic("b.csv", &mut &b"x"[..]).unwrap();
        assert_eq!(mode("b.csv"), 0o640);
    }
}
