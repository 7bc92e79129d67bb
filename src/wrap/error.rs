//! What can go wrong while taking a wrapper off: each failure is a verdict on the file (it goes
//! to `rejected/` with this code), never on the drop. A drop failure under the wrapper stays
//! the drop's (`Drop`), so a connection lost mid-download is an outage, not a bad file.

use crate::formats::ErrorCode;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The unwrapped content grew past `max_file_bytes` (a gzip or zip bomb, or a big file).
    #[error("the unwrapped content is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A corrupt or unreadable gzip or zip.
    #[error("{0}")]
    BadArchive(String),
    /// Encrypted to keys that are not ours (their ids, hex), or we have no secret key.
    #[error("{message}")]
    PgpWrongKey { key_ids: Vec<String>, message: String },
    /// Truncated or corrupt packets, a failed integrity check, or no integrity protection.
    #[error("{0}")]
    PgpCorrupt(String),
    /// A signature that does not verify, or none where one is required.
    #[error("{0}")]
    PgpBadSignature(String),
    /// The drop's own read failure under the wrapper.
    #[error("{0}")]
    Drop(io::Error),
}

impl WrapError {
    /// The stable code of the file's rejection; `None` for a drop failure.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            WrapError::TooLarge { .. } => ErrorCode::FileTooLarge,
            WrapError::BadArchive(_) => ErrorCode::BadArchive,
            WrapError::PgpWrongKey { .. } => ErrorCode::PgpWrongKey,
            WrapError::PgpCorrupt(_) => ErrorCode::PgpCorrupt,
            WrapError::PgpBadSignature(_) => ErrorCode::PgpBadSignature,
            WrapError::Drop(_) => return None,
        })
    }

    /// Carried through `io::Read` as an `io::Error`; [`WrapError::from_io`] takes it back out.
    pub fn into_io(self) -> io::Error {
        match self {
            WrapError::Drop(e) => e,
            other => io::Error::other(other),
        }
    }

    /// The wrapper failure inside an `io::Error`, or the error as the drop's.
    pub fn from_io(e: io::Error) -> WrapError {
        if !e.get_ref().is_some_and(|inner| inner.is::<WrapError>()) {
            return WrapError::Drop(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|b| b.downcast::<WrapError>()) {
            Some(Ok(w)) => *w,
            Some(Err(other)) => WrapError::Drop(io::Error::new(kind, other)),
            None => WrapError::Drop(io::Error::from(kind)),
        }
    }
}
