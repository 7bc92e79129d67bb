//! A drop that is a folder on this machine (`file:///srv/drop` or a plain path).

use super::{Drop, Entry};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub struct LocalDrop {
    root: PathBuf,
}

impl LocalDrop {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDrop { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolve a drop-relative path, refusing anything that could leave the root.
    fn resolve(&self, rel: &str) -> io::Result<PathBuf> {
        let p = Path::new(rel);
        if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {rel:?} is not inside the drop"),
            ));
        }
        Ok(self.root.join(p))
    }
}

fn entry_of(name: String, md: &fs::Metadata) -> Entry {
    Entry {
        name,
        size: md.len(),
        mtime: md.modified().unwrap_or(std::time::UNIX_EPOCH),
        is_file: md.file_type().is_file(),
    }
}

/// `rename(2)` that refuses to replace: results and archived originals are never overwritten.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())?;
    let t = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE)
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Filesystems without RENAME_NOREPLACE: a hard link is also atomic and no-replace.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(err),
    }
}

impl Drop for LocalDrop {
    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }

    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        let path = self.resolve(dir)?;
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for de in rd {
            let de = de?;
            // symlink_metadata: never follow a link out of the drop.
            let md = match fs::symlink_metadata(de.path()) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = de.file_name().to_string_lossy().into_owned();
            out.push(entry_of(name, &md));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open_read<'a>(&'a mut self, path: &str) -> io::Result<Box<dyn Read + 'a>> {
        let f = File::open(self.resolve(path)?)?;
        Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)))
    }

    fn write_atomic(&mut self, path: &str, content: &mut dyn Read) -> io::Result<()> {
        let target = self.resolve(path)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Dot prefix and .tmp suffix: every poller (ours included) skips it.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        io::copy(content, &mut io::BufWriter::with_capacity(256 * 1024, tmp.as_file_mut()))?;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_all()?;
        rename_noreplace(tmp.path(), &target)?;
        // The temp path no longer exists; keep tempfile from trying to delete it.
        let _ = tmp.into_temp_path().keep();
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn rename_no_replace(&mut self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (self.resolve(from)?, self.resolve(to)?);
        if let Some(parent) = t.parent() {
            fs::create_dir_all(parent)?;
        }
        rename_noreplace(&f, &t)
    }

    fn stat(&mut self, path: &str) -> io::Result<Option<Entry>> {
        let p = self.resolve(path)?;
        match fs::symlink_metadata(&p) {
            Ok(md) => Ok(Some(entry_of(
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                &md,
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mkdir_all(&mut self, dir: &str) -> io::Result<()> {
        fs::create_dir_all(self.resolve(dir)?)
    }

    fn remove(&mut self, path: &str) -> io::Result<()> {
        fs::remove_file(self.resolve(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalDrop::new(dir.path());
        d.write_atomic("results/a.csv", &mut &b"one"[..]).unwrap();
        let err = d.write_atomic("results/a.csv", &mut &b"two"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("results/a.csv")).unwrap(), b"one");
        // No temp file left behind by the failed write.
        let names: Vec<_> = d.list("results").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["a.csv".to_string()]);
    }

    #[test]
    fn paths_cannot_escape_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalDrop::new(dir.path());
        assert!(d.open_read("../etc/passwd").is_err());
        assert!(d.write_atomic("/tmp/x", &mut &b""[..]).is_err());
    }
}
