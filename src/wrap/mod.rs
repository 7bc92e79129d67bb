//! Wrapped inbound files and encrypted outbound ones: OpenPGP (`.pgp`, `.gpg`, `.asc`), gzip
//! (`.gz`) and zip (`.zip`), combined in any order the name gives (`stock.csv.gz.pgp`).
//! Everything streams: a wrapper is a `Read` over the drop's stream.

pub mod error;
pub mod pgp;

pub use error::WrapError;
