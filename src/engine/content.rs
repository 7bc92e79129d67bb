//! An inbound file's content as the parsers read it: the drop's stream with its wrappers
//! (OpenPGP, gzip) taken off, or one member of a zip on the drop (`wrap`).
//!
//! Two kinds of failure come out of a wrapped stream and they mean different things: the
//! drop's own (a connection lost mid-read: an outage, the file is taken again later) and the
//! wrapper's (a wrong key, a corrupt packet, a bomb: a verdict on the file, which goes to
//! `rejected/`). [`Input`] keeps them apart; the drop's always wins, because a stream cut
//! short by the network also looks corrupt to the layers above it.

use super::account::{AccountCtx, Step, Stop};
use crate::drop::{DropError, DropErrorKind, DropResult, Entry};
use crate::formats::replay::{self, Origins, Replay};
use crate::formats::{ErrorCode, FileRejection};
use crate::wrap::{self, Layer, WrapError};
use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

/// What a ledger file reads: a file on the drop, or one member of a zip archive there.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// The ledger's path: the drop path, or `FOLDER/ARCHIVE!MEMBER` for a member.
    pub path: String,
    /// The file on the drop.
    pub file: String,
    /// What results are named after: the name with its wrappers removed (`stock.csv` for
    /// `stock.csv.gz.pgp`), `ARCHIVE.zip!MEMBER` for a member.
    pub name: String,
    /// The drop file's stream wrappers, outermost first.
    pub layers: Vec<Layer>,
    /// The member's index in the archive.
    pub member: Option<usize>,
}

impl Source {
    /// The file `name` in `dir` as it is on the drop.
    pub fn file(dir: &str, name: &str) -> Source {
        let peeled = wrap::peel(name);
        Source {
            path: format!("{dir}/{name}"),
            file: format!("{dir}/{name}"),
            name: peeled.name,
            layers: peeled.layers,
            member: None,
        }
    }

    /// Member `index` of the archive `archive`, shown as `display` (a flat, safe name).
    pub fn member(archive: &Source, index: usize, display: &str) -> Source {
        let dir = archive.file.rsplit_once('/').map_or("", |(d, _)| d);
        let file_name = archive.file.rsplit('/').next().unwrap_or(&archive.file);
        Source {
            path: format!("{dir}/{file_name}{}{display}", wrap::archive::SEPARATOR),
            file: archive.file.clone(),
            name: format!("{}{}{display}", archive.name, wrap::archive::SEPARATOR),
            layers: archive.layers.clone(),
            member: Some(index),
        }
    }

    /// Read through a wrapper: its byte count differs from the listed size by design.
    pub fn is_wrapped(&self) -> bool {
        !self.layers.is_empty() || self.member.is_some()
    }
}

/// Open a listed file for reading, or `None` (logged) when it is no longer the file that was
/// listed: every read of an inbound file (parse, widest row, error file) goes through this one
/// check, so a file swapped or changed since the listing is never read.
pub(super) fn open_unchanged<'a>(
    drop: &'a mut dyn crate::drop::Transport,
    account: &str,
    path: &str,
    listed: &Entry,
) -> DropResult<Option<Box<dyn Read + Send + 'a>>> {
    match drop.open_listed(path, listed) {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.kind == DropErrorKind::Changed => {
            tracing::warn!(account = %account, file = %path, "not read: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether `name` (a ledger file name) is a member of an archive still in the folder.
pub(super) fn member_of_present(name: &str, present: &HashSet<String>) -> bool {
    name.match_indices(wrap::archive::SEPARATOR).any(|(i, _)| present.contains(&name[..i]))
}

/// Keeps the first failure of the drop's own stream, shared with the [`Input`] above the
/// wrappers that own the stream.
struct KeepShared<R> {
    inner: R,
    slot: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for KeepShared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let told = io::Error::new(e.kind(), e.to_string());
                if let Ok(mut slot) = self.slot.lock() {
                    slot.get_or_insert(e);
                }
                Err(told)
            }
            other => other,
        }
    }
}

/// An opened source: its unwrapped content, and what went wrong on the way.
pub(super) struct Input<'a> {
    inner: Box<dyn Read + Send + 'a>,
    drop_error: Arc<Mutex<Option<io::Error>>>,
    wrap_error: Option<WrapError>,
    /// Set when the content is one of our error files dropped back (`formats::replay`).
    replay: Option<Replayed>,
}

/// A replayed error file: the original it names and, as it is read, where each row came from.
#[derive(Clone)]
pub(crate) struct Replayed {
    /// The original file (a drop path, or a bare name when the ledger does not know it).
    pub original: String,
    pub origins: Arc<Origins>,
}

impl Replayed {
    /// The original's file name, for what depends on it (a `_delta.csv` name).
    pub fn original_name(&self) -> &str {
        self.original.rsplit('/').next().unwrap_or(&self.original)
    }
}

impl Input<'_> {
    fn new<'r>(
        inner: Box<dyn Read + Send + 'r>,
        drop_error: Arc<Mutex<Option<io::Error>>>,
        wrap_error: Option<WrapError>,
    ) -> Input<'r> {
        Input { inner, drop_error, wrap_error, replay: None }
    }

    /// Whether this is a replayed error file, and of what.
    pub fn replay(&self) -> Option<&Replayed> {
        self.replay.as_ref()
    }

    /// The drop failure this pass met, if any: the pass ends as an outage, not a verdict.
    pub fn failed(&mut self, path: &str) -> DropResult<()> {
        match self.drop_error.lock().ok().and_then(|mut s| s.take()) {
            Some(e) => Err(DropError::from_io(path, e)),
            None => Ok(()),
        }
    }

    /// The wrapper's verdict on the file, if it gave one: the file's rejection.
    pub fn rejection(&mut self) -> Option<FileRejection> {
        let w = self.wrap_error.take()?;
        let code = w.code()?;
        Some(FileRejection { code, line: None, column: None, message: w.to_string() })
    }
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.wrap_error.is_some() {
            return Err(io::Error::other("the file's wrapper failed"));
        }
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let told = io::Error::new(e.kind(), e.to_string());
                match WrapError::from_io(e) {
                    WrapError::Drop(_) => {}
                    w => self.wrap_error = Some(w),
                }
                Err(told)
            }
            other => other,
        }
    }
}

/// Codes a wrapper rejects a whole file with: its error file is the one file-level row, the
/// content is never read again for it.
pub(super) fn is_wrapper_code(code: &str) -> bool {
    [ErrorCode::PgpWrongKey, ErrorCode::PgpCorrupt, ErrorCode::PgpBadSignature, ErrorCode::BadArchive]
        .iter()
        .any(|c| c.as_str() == code)
}

impl<'a> AccountCtx<'a> {
    /// Open `src` for reading as the listed file, or `None` (logged) when it is not the file
    /// that was listed any more. Every read of an inbound file goes through here.
    pub(super) fn open_input(&mut self, src: &Source, listed: &Entry) -> Step<Option<Input<'_>>> {
        let errors_dir = self.acct.folders.errors.clone();
        let delimiter = self.acct.parse.delimiter;
        let account = self.acct.name.clone();
        let input = match src.member {
            None => open_stream(self.drop.as_mut(), self.acct, src, listed)?,
            Some(i) => self.open_member(src, listed, i)?,
        };
        let ledger = &self.ledger;
        let Some(mut input) = input else { return Ok(None) };
        // The header says whether this is one of our error files dropped back.
        let mut head = Vec::with_capacity(1024);
        let mut whole = false;
        // The header, and the first rows (which name the original of a replay).
        while head.len() < replay::SNIFF_BYTES && memchr::memchr_iter(b'\n', &head).count() < 4 {
            let mut chunk = [0u8; 1024];
            match input.read(&mut chunk) {
                Ok(0) => {
                    whole = true;
                    break;
                }
                Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let shape = replay::sniff(&head);
        let first = shape.as_ref().and_then(|s| replay::first_origin(&head, whole, s));
        let rest = std::mem::replace(&mut input.inner, Box::new(io::empty()));
        let whole = Box::new(io::Cursor::new(head).chain(rest));
        match shape {
            None => input.inner = whole,
            Some(shape) => {
                let original = match first {
                    Some(named) => named,
                    None => original_of(ledger, &account, &errors_dir, &src.name)?,
                };
                let origins = Arc::new(Origins::default());
                input.inner = Box::new(Replay::new(whole, shape, delimiter, &original, origins.clone()));
                input.replay = Some(Replayed { original, origins });
            }
        }
        Ok(Some(input))
    }

    /// The drop file of `src` with its stream wrappers (OpenPGP, gzip) off.
    fn open_stream(&mut self, src: &Source, listed: &Entry) -> Step<Option<Input<'_>>> {
        open_stream(self.drop.as_mut(), self.acct, src, listed)
    }

    /// Member `index` of the zip `src`: unpacked once per listing of the archive into a
    /// temporary file of its own, read from the start by each pass over it.
    fn open_member(&mut self, src: &Source, listed: &Entry, index: usize) -> Step<Option<Input<'static>>> {
        let slot = Arc::new(Mutex::new(None));
        let refused = |w: WrapError, slot| Input::new(Box::new(io::empty()), slot, Some(w));
        let spooled = match self.spool_zip(src, listed)? {
            None => return Ok(None),
            Some(Err(w)) => return Ok(Some(refused(w, slot))),
            Some(Ok(s)) => s,
        };
        match spooled.zip.member_file(index) {
            Ok(f) => Ok(Some(Input::new(Box::new(io::BufReader::new(f)), slot, None))),
            Err(WrapError::Drop(e)) => {
                Err(Stop::local(format!("unpacking member {index} of {} to a temporary file", src.file), e))
            }
            Err(w) => Ok(Some(refused(w, slot))),
        }
    }

    /// The zip `src` as listed, spooled once (its stream wrappers off) and kept for its
    /// members; `Some(Err)` is the archive's rejection, `None` that it changed since listed.
    fn spool_zip(&mut self, src: &Source, listed: &Entry) -> Step<Option<Result<&mut Spooled, WrapError>>> {
        let cached = self.zip_spool.as_ref().is_some_and(|s| s.file == src.file && s.listed.unchanged_as(listed));
        if !cached {
            self.zip_spool = None;
            let limit = self.acct.parse.max_file_bytes;
            let whole = Source { member: None, ..src.clone() };
            let Some(mut input) = self.open_stream(&whole, listed)? else { return Ok(None) };
            let spooled = wrap::archive::Unpacked::spool(&mut input, limit);
            input.failed(&src.file)?;
            let verdict = input.wrap_error.take();
            drop(input);
            let zip = match (spooled, verdict) {
                (_, Some(w)) => return Ok(Some(Err(w))),
                (Ok(z), None) => z,
                (Err(WrapError::Drop(e)), None) => {
                    return Err(Stop::local(format!("spooling the zip {} to a temporary file", src.file), e))
                }
                (Err(w), None) => return Ok(Some(Err(w))),
            };
            self.zip_spool = Some(Spooled { file: src.file.clone(), listed: listed.clone(), zip });
        }
        Ok(self.zip_spool.as_mut().map(Ok))
    }

    /// Forget the spooled zip (its archive is done).
    pub(super) fn forget_zip(&mut self) {
        self.zip_spool = None;
    }

    /// The members of the zip `src` (after its stream wrappers): `Err` with the rejection
    /// when the archive cannot be read; `None` when the file changed since it was listed.
    pub(super) fn zip_members(
        &mut self,
        src: &Source,
        listed: &Entry,
    ) -> Step<Option<Result<Vec<wrap::archive::MemberInfo>, FileRejection>>> {
        Ok(self.spool_zip(src, listed)?.map(|r| match r {
            Ok(s) => Ok(s.zip.members().to_vec()),
            Err(w) => Err(FileRejection {
                code: w.code().unwrap_or(ErrorCode::ReadError),
                line: None,
                column: None,
                message: w.to_string(),
            }),
        }))
    }
}

/// The drop file of `src` with its stream wrappers (OpenPGP, gzip) off; borrows only the drop,
/// so the ledger stays at hand while it is read.
fn open_stream<'d>(
    drop: &'d mut dyn crate::drop::Transport,
    acct: &'d crate::config::Account,
    src: &Source,
    listed: &Entry,
) -> Step<Option<Input<'d>>> {
    let Some(raw) = open_unchanged(drop, &acct.name, &src.file, listed)? else { return Ok(None) };
    let slot = Arc::new(Mutex::new(None));
    let raw: Box<dyn Read + Send + '_> = Box::new(KeepShared { inner: raw, slot: slot.clone() });
    let limit = acct.parse.max_file_bytes;
    let pgp = acct.pgp.as_ref();
    let decrypt = |r| match pgp {
        Some(p) => p.decrypt(r),
        None => Err(crate::config::no_secret_key("the account has no pgp_secret_key_file to decrypt it")),
    };
    Ok(Some(match wrap::unwrap_stream(raw, &src.layers, &decrypt, limit) {
        Ok(inner) => Input::new(inner, slot, None),
        Err(e) => {
            let wrap_error = match e {
                WrapError::Drop(d) => {
                    if let Ok(mut s) = slot.lock() {
                        s.get_or_insert(d);
                    }
                    None
                }
                w => Some(w),
            };
            Input::new(Box::new(io::empty()), slot, wrap_error)
        }
    }))
}

/// The original file an error file named `name` was written for: the one the ledger wrote an
/// error file of that name for, else the name with our `.errors.csv` off, else `name` itself.
fn original_of(ledger: &crate::ledger::Ledger, account: &str, errors_dir: &str, name: &str) -> Step<String> {
    let candidates = [format!("{errors_dir}/{name}"), format!("{errors_dir}/{name}.pgp")];
    if let Some(path) = ledger.file_with_errors_file(account, &candidates)? {
        return Ok(path);
    }
    Ok(replay::original_name_of(name).unwrap_or(name).to_string())
}

/// A zip read once per listing of it, its members unpacked once each.
pub struct Spooled {
    file: String,
    listed: Entry,
    zip: wrap::archive::Unpacked,
}

/// Encrypt `plain` to the account's partner (signed with our key under `pgp_sign_outbound`).
pub(super) fn encrypt_for(
    pgp: &crate::config::PgpSettings,
    plain: &mut dyn Read,
    out: &mut dyn io::Write,
) -> Result<(), WrapError> {
    let Some(partner) = pgp.partner.as_deref() else {
        // Config load refuses encryption without the partner's key; kept total all the same.
        return Err(WrapError::PgpWrongKey {
            key_ids: Vec::new(),
            message: "no partner public key to encrypt to".into(),
        });
    };
    let sign_with = if pgp.sign_outbound { pgp.ours.as_deref() } else { None };
    wrap::pgp::encrypt(plain, out, partner, sign_with)
}
