//! Standard output that reports write failures instead of panicking.
//!
//! Rust ignores SIGPIPE, so a closed pipe (`stitch-bridge status | head -1`) or a full device
//! (`> /dev/full`) makes writes fail, and `println!` panics on that (exit 101). Commands print
//! through [`line`] / [`Stdout`] instead; the first failure is kept, later output is dropped,
//! and [`finish`] (called once at the top of `main`) decides the exit:
//! - a closed pipe (EPIPE): the reader wanted no more; the command's own exit code, silently;
//! - anything else (ENOSPC, EIO, ...): one line on stderr and exit 2, since output the caller
//!   asked for is lost.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;

static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

fn failed_kind() -> Option<io::ErrorKind> {
    FAILED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(io::Error::kind)
}

/// Keep the first output failure for [`finish`].
pub fn record(e: io::Error) {
    let mut f = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if f.is_none() {
        *f = Some(e);
    }
}

/// Has writing to stdout failed already?
pub fn failed() -> bool {
    failed_kind().is_some()
}

/// Print formatted text (what `print!` would); after a failure, nothing more is written.
pub fn text(args: fmt::Arguments<'_>) {
    if failed() {
        return;
    }
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        record(e);
    }
}

/// Print one line (what `println!` would).
pub fn line(args: fmt::Arguments<'_>) {
    if failed() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        record(e);
    }
}

/// Flush stdout (before a prompt, and at the end).
pub fn flush() {
    if failed() {
        return;
    }
    if let Err(e) = io::stdout().lock().flush() {
        record(e);
    }
}

/// A locked stdout for streaming writers (`validate`): returns io errors like any writer and
/// records the first one for [`finish`].
pub struct Stdout {
    inner: io::StdoutLock<'static>,
}

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout { inner: io::stdout().lock() }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(kind) = failed_kind() {
            return Err(kind.into());
        }
        self.inner.write(buf).inspect_err(|e| record(io::Error::new(e.kind(), e.to_string())))
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(kind) = failed_kind() {
            return Err(kind.into());
        }
        self.inner.flush().inspect_err(|e| record(io::Error::new(e.kind(), e.to_string())))
    }
}

/// The exit code once output is done: `code` unless writing to stdout failed for another reason
/// than a closed pipe, which gets one line on stderr and exit 2.
pub fn finish(code: i32) -> i32 {
    flush();
    let err = FAILED.lock().unwrap_or_else(|e| e.into_inner()).take();
    match err {
        None => code,
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Some(e) => {
            // stderr may be gone too; then there is no one left to tell.
            let _ = writeln!(io::stderr(), "error: cannot write to standard output: {e}");
            crate::engine::exit::USAGE
        }
    }
}
