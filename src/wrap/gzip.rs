//! The gzip layer (`.gz`): multi-member gzip (what `cat a.gz b.gz` and parallel compressors
//! write), decompressed as it is read.
//!
//! A corrupt, truncated or empty stream, or trailing bytes that are not another gzip member, is
//! [`WrapError::BadArchive`]. An error from the stream underneath (the drop, or a wrapper below,
//! such as OpenPGP's) comes out as that error, never as `BadArchive`.

use super::{lift, Underneath, WrapError};
use flate2::read::MultiGzDecoder;
use std::io::{self, Read};

/// Decompresses `input`; errors come out as [`WrapError::into_io`] gives them.
pub fn decoder<'a>(input: Box<dyn Read + Send + 'a>) -> Box<dyn Read + Send + 'a> {
    Box::new(Gunzip { inner: MultiGzDecoder::new(Underneath::new(input)), failed: false })
}

struct Gunzip<R: Read> {
    inner: MultiGzDecoder<Underneath<R>>,
    /// The decoder's state after an error is unspecified: later reads repeat a plain failure.
    failed: bool,
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(WrapError::BadArchive("the gzip stream failed earlier".into()).into_io());
        }
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() && self.inner.get_ref().bytes() == 0 => {
                self.failed = true;
                Err(WrapError::BadArchive("the gzip stream is empty".into()).into_io())
            }
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed = true;
                Err(lift(e, |e| {
                    WrapError::BadArchive(if e.kind() == io::ErrorKind::UnexpectedEof {
                        "the gzip stream is truncated".to_string()
                    } else {
                        format!("the gzip stream is corrupt: {e}")
                    })
                })
                .into_io())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(bytes: Vec<u8>) -> Result<Vec<u8>, WrapError> {
        let mut out = Vec::new();
        decoder(Box::new(io::Cursor::new(bytes))).read_to_end(&mut out).map_err(WrapError::from_io)?;
        Ok(out)
    }

    #[test]
    fn round_trip_and_multi_member() {
        assert_eq!(gunzip(gz(b"sku,qty\nA,1\n")).unwrap(), b"sku,qty\nA,1\n");
        let mut two = gz(b"sku,qty\n");
        two.extend(gz(b"A,1\n"));
        assert_eq!(gunzip(two).unwrap(), b"sku,qty\nA,1\n");
        assert_eq!(gunzip(gz(b"")).unwrap(), b"", "an empty member is an empty file");
    }

    #[test]
    fn interrupted_reads_are_retried() {
        /// Every other read is interrupted (a signal), as a drop's may be.
        struct Jumpy(io::Cursor<Vec<u8>>, bool);
        impl Read for Jumpy {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(3);
                self.0.read(&mut buf[..n])
            }
        }
        let body = b"sku,qty\nA,1\n".repeat(30);
        let mut out = Vec::new();
        decoder(Box::new(Jumpy(io::Cursor::new(gz(&body)), false))).read_to_end(&mut out).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn damage_is_bad_archive() {
        let good = gz(&b"sku,qty\nA,1\n".repeat(50));
        let truncated = good[..good.len() / 2].to_vec();
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        let mut bad_crc = good.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 1;
        let mut garbage_after = good.clone();
        garbage_after.extend_from_slice(b"not gzip");
        for (what, bytes) in [
            ("truncated", truncated),
            ("flipped", flipped),
            ("crc", bad_crc),
            ("garbage", garbage_after),
            ("not gzip", b"sku,qty\nA,1\n".to_vec()),
            ("empty", Vec::new()),
        ] {
            match gunzip(bytes) {
                Err(WrapError::BadArchive(m)) => assert!(m.contains("gzip"), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
