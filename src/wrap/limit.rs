//! A size limiter over an unwrapped stream: the limit bounds what comes *out* of a wrapper, so a
//! gzip or zip bomb is refused as soon as it has grown past `max_file_bytes`, not once it has
//! been inflated in full.

use super::WrapError;
use std::io::{self, Read};

/// Passes at most `limit` bytes through; the read that would go past them fails with
/// [`WrapError::TooLarge`] (as an `io::Error`, see [`WrapError::into_io`]) and so does every
/// read after it. Inner errors pass through unchanged.
pub struct Limited<R> {
    inner: R,
    limit: u64,
    seen: u64,
    tripped: bool,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Limited { inner, limit, seen: 0, tripped: false }
    }

    /// Bytes passed through so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped {
            return Err(WrapError::TooLarge { limit: self.limit }.into_io());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than is left, so going past the limit is seen at once without
        // handing out a byte beyond it.
        let room = self.limit.saturating_sub(self.seen).saturating_add(1);
        let want = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        let seen = self.seen.saturating_add(n as u64);
        if seen > self.limit {
            self.tripped = true;
            return Err(WrapError::TooLarge { limit: self.limit }.into_io());
        }
        self.seen = seen;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(limit: u64, data: &[u8], chunk: usize) -> (Vec<u8>, Option<WrapError>) {
        let mut r = Limited::new(data, limit);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(WrapError::from_io(e))),
            }
        }
    }

    #[test]
    fn exactly_the_limit_passes_one_more_byte_fails() {
        let data = vec![7u8; 100];
        for chunk in [1, 3, 64, 4096] {
            let (out, err) = read_all(100, &data, chunk);
            assert_eq!(out.len(), 100, "chunk {chunk}");
            assert!(err.is_none(), "chunk {chunk}: {err:?}");

            let (out, err) = read_all(99, &data, chunk);
            assert!(out.len() <= 99, "never hands out a byte past the limit: {}", out.len());
            assert!(matches!(err, Some(WrapError::TooLarge { limit: 99 })), "chunk {chunk}: {err:?}");
        }
    }

    #[test]
    fn zero_limit_allows_only_empty() {
        assert!(read_all(0, b"", 16).1.is_none());
        assert!(matches!(read_all(0, b"x", 16).1, Some(WrapError::TooLarge { limit: 0 })));
    }

    #[test]
    fn stays_tripped() {
        let data = [1u8; 10];
        let mut r = Limited::new(&data[..], 4);
        let mut buf = [0u8; 16];
        let mut total = 0;
        let first_err = loop {
            match r.read(&mut buf) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert!(total <= 4);
        assert!(matches!(WrapError::from_io(first_err), WrapError::TooLarge { .. }));
        let again = r.read(&mut buf).map_err(WrapError::from_io);
        assert!(matches!(again, Err(WrapError::TooLarge { limit: 4 })), "{again:?}");
    }

    #[test]
    fn inner_errors_pass_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "lost"))
            }
        }
        let mut r = Limited::new(Broken, 10);
        let e = WrapError::from_io(r.read(&mut [0u8; 4]).unwrap_err());
        assert!(matches!(&e, WrapError::Drop(d) if d.kind() == io::ErrorKind::ConnectionReset), "{e:?}");
    }
}
