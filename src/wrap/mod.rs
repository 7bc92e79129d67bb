//! Wrapped inbound files and encrypted outbound ones: OpenPGP (`.pgp`, `.gpg`, `.asc`), gzip
//! (`.gz`) and zip (`.zip`), combined in any order the name gives (`stock.csv.gz.pgp`).
//! Everything streams: a wrapper is a `Read` over the drop's stream.
//!
//! The caller's path for one inbound file:
//! 1. [`peel`] the name: the stream layers (outermost first), the inner name, and whether that
//!    inner name is a zip.
//! 2. [`unwrap_stream`] over the drop's stream: each layer taken off in turn, each followed by a
//!    [`limit::Limited`] of `max_file_bytes`, so the size limit applies to what every layer
//!    *produces* (a gzip inside OpenPGP, or OpenPGP's own compression, is bounded too).
//! 3. Not a zip: the result is the file's content. A zip: [`archive::ZipMembers::spool`] it and
//!    take its members one by one (names `ARCHIVE.zip!MEMBER`, see [`archive`]).
//!
//! Errors travel through `io::Read` as [`WrapError::into_io`] makes them; the caller takes them
//! back out with [`WrapError::from_io`]. A failure of the drop itself stays
//! [`WrapError::Drop`] through every layer, so a lost connection is an outage, not a bad file.

pub mod archive;
pub mod gzip;
pub mod limit;

pub mod error;
pub mod pgp;

pub use error::WrapError;

use std::io::{self, Read};

/// One stream layer a name ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// `.pgp`, `.gpg` or `.asc`: decrypted by the caller's OpenPGP callback.
    Pgp,
    /// `.gz`.
    Gzip,
}

impl Layer {
    /// For messages: "OpenPGP", "gzip".
    pub fn label(self) -> &'static str {
        match self {
            Layer::Pgp => "OpenPGP",
            Layer::Gzip => "gzip",
        }
    }
}

/// A name with its wrappers taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    /// The inner name, wrappers removed: `stock.csv.gz.pgp` gives `stock.csv`.
    pub name: String,
    /// The stream layers, outermost (last suffix) first: `stock.csv.gz.pgp` gives `[Pgp, Gzip]`.
    pub layers: Vec<Layer>,
    /// The inner name ends `.zip`: its members follow ([`archive::ZipMembers`]).
    pub zip: bool,
}

/// More layers than any real file has; past it a name is refused rather than stacking decoders
/// (each holds its own buffers) for a name like `x.gz.gz.gz…`.
pub const MAX_LAYERS: usize = 8;

/// Takes `.pgp`/`.gpg`/`.asc` and `.gz` suffixes (any case) off the end, outermost first. A
/// suffix that is the whole name (`.gz`) is not a wrapper: there is nothing inside it.
pub fn peel(name: &str) -> Peeled {
    let mut rest = name;
    let mut layers = Vec::new();
    loop {
        let (cut, layer) = if [".pgp", ".gpg", ".asc"].iter().any(|s| ends_with_ci(rest, s)) {
            (4, Layer::Pgp)
        } else if ends_with_ci(rest, ".gz") {
            (3, Layer::Gzip)
        } else {
            break;
        };
        if rest.len() == cut {
            break;
        }
        // The suffix is ASCII, so the cut is on a character boundary.
        rest = &rest[..rest.len() - cut];
        layers.push(layer);
    }
    Peeled { name: rest.to_string(), layers, zip: rest.len() > 4 && ends_with_ci(rest, ".zip") }
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// The OpenPGP layer, supplied by the caller (it holds the keys): takes the encrypted stream,
/// gives the decrypted one.
pub type PgpLayer<'a, 'f> = &'f dyn Fn(Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, WrapError>;

/// Takes `layers` (outermost first, as [`peel`] gives them) off `input`, each followed by a
/// limit of `limit` bytes out. No layers: `input` comes back as it is (the caller's own limit
/// applies). Errors found while setting up (the OpenPGP callback's) come back here; those found
/// while reading come out of the returned reader (see [`WrapError::from_io`]).
pub fn unwrap_stream<'a>(
    input: Box<dyn Read + Send + 'a>,
    layers: &[Layer],
    pgp: PgpLayer<'a, '_>,
    limit: u64,
) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
    if layers.len() > MAX_LAYERS {
        return Err(WrapError::BadArchive(format!(
            "the name has {} wrappers; at most {MAX_LAYERS} are taken off",
            layers.len()
        )));
    }
    let mut r = input;
    for layer in layers {
        let inner = match layer {
            Layer::Pgp => pgp(r)?,
            Layer::Gzip => gzip::decoder(r),
        };
        r = Box::new(limit::Limited::new(inner, limit));
    }
    Ok(r)
}

/// The stream under a decoder: counts what it gives, and marks each of its errors as carrying a
/// [`WrapError`] (the drop's own as [`WrapError::Drop`]), so the decoder's own failures can be
/// told from them afterwards ([`lift`]).
pub(crate) struct Underneath<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Underneath<R> {
    pub(crate) fn new(inner: R) -> Self {
        Underneath { inner, bytes: 0 }
    }

    /// Bytes read from underneath so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// An error out of a decoder over an [`Underneath`] (or another tagged stream): one from
/// underneath as it was, the decoder's own as `own` says.
pub(crate) fn lift(e: io::Error, own: impl FnOnce(io::Error) -> WrapError) -> WrapError {
    if carries_wrap_error(&e) {
        WrapError::from_io(e)
    } else {
        own(e)
    }
}

impl<R: Read> Read for Underneath<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            return match self.inner.read(buf) {
                Ok(n) => {
                    self.bytes += n as u64;
                    Ok(n)
                }
                // Retried here: a decoder may take any error as final (flate2 does while it
                // reads a gzip header).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if carries_wrap_error(&e) => Err(e),
                Err(e) => Err(tagged(WrapError::Drop(e))),
            };
        }
    }
}

/// As an `io::Error` that always carries the `WrapError` (a `Drop` one too, unlike
/// [`WrapError::into_io`]), for a stream under a decoder whose own errors must be told apart.
/// A drop error keeps its kind.
pub(crate) fn tagged(w: WrapError) -> io::Error {
    let kind = match &w {
        WrapError::Drop(e) => e.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, w)
}

fn carries_wrap_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<WrapError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Layer::{Gzip, Pgp};

    #[test]
    fn peel_table() {
        let cases: &[(&str, &str, &[Layer], bool)] = &[
            ("a.csv", "a.csv", &[], false),
            ("stock.csv.gz", "stock.csv", &[Gzip], false),
            ("stock.csv.gz.pgp", "stock.csv", &[Pgp, Gzip], false),
            ("stock.csv.pgp.gz", "stock.csv", &[Gzip, Pgp], false),
            ("x.csv.gz.gz", "x.csv", &[Gzip, Gzip], false),
            ("x.zip.pgp", "x.zip", &[Pgp], true),
            ("x.zip", "x.zip", &[], true),
            ("X.ZIP.GPG", "X.ZIP", &[Pgp], true),
            ("Stock.CSV.Gz.Asc", "Stock.CSV", &[Pgp, Gzip], false),
            ("orders.edi.gpg", "orders.edi", &[Pgp], false),
            ("a.zip.gz", "a.zip", &[Gzip], true),
            ("notes.txt", "notes.txt", &[], false),
            (".gz", ".gz", &[], false),
            ("x.gz.pgp", "x", &[Pgp, Gzip], false),
            (".gz.pgp", ".gz", &[Pgp], false),
            (".zip", ".zip", &[], false),
            ("a.tgz", "a.tgz", &[], false),
            ("a.csv.gzip", "a.csv.gzip", &[], false),
            ("a.pgp.csv", "a.pgp.csv", &[], false),
            ("ström.csv.gz", "ström.csv", &[Gzip], false),
            ("", "", &[], false),
        ];
        for (input, name, layers, zip) in cases {
            let p = peel(input);
            assert_eq!(p, Peeled { name: name.to_string(), layers: layers.to_vec(), zip: *zip }, "{input}");
        }
    }

    fn no_pgp<'a>(_: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
        Err(WrapError::PgpWrongKey { key_ids: vec![], message: "no keys in this test".into() })
    }

    #[test]
    fn no_layers_is_the_input() {
        let mut r = unwrap_stream(Box::new(&b"sku,qty\n"[..]), &[], &no_pgp, 0).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"sku,qty\n");
    }

    #[test]
    fn too_many_layers_refused() {
        let layers = vec![Gzip; MAX_LAYERS + 1];
        let r = unwrap_stream(Box::new(&b""[..]), &layers, &no_pgp, 10);
        assert!(matches!(r, Err(WrapError::BadArchive(_))));
    }

    #[test]
    fn pgp_setup_error_comes_back() {
        let r = unwrap_stream(Box::new(&b""[..]), &[Pgp], &no_pgp, 10);
        assert!(matches!(r, Err(WrapError::PgpWrongKey { .. })));
    }
}
