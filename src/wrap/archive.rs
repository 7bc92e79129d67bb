//! The zip layer (`.zip`): an archive's members, each read as one inbound file.
//!
//! A zip's central directory, at its end, is what says which members it has; reading it needs
//! `Seek`. So the (already unwrapped, limited) stream is spooled into an anonymous temporary
//! file first ([`ZipMembers::spool`]) and the members are read out of that, one at a time;
//! memory stays flat in the archive's size.
//!
//! # Naming
//! A member's results are named after the archive and the member, with `!` between them:
//! `ARCHIVE.zip!MEMBER`, e.g. `stock.zip!east_stock.csv.result.csv`. The member part is
//! [`member_display_name`] of the name in the archive (which is untrusted: it can hold `../`,
//! absolute paths, backslashes or control characters): flat, without `/`, `\`, `!` or `..`.
//! Within one archive [`MemberInfo::display`] is unique (case-insensitively).
//!
//! # What is a member
//! Entries that are not directories. A member is *wanted* when its name ends `.csv`, `.edi` or
//! `.x12` (any case) and is not macOS metadata (`__MACOSX/`, `._name`); the others are listed
//! so the caller can report them as skipped. A wanted member we cannot read (encrypted, a
//! compression method other than stored or deflate, a symbolic link) says why in
//! [`MemberInfo::unreadable`], and [`ZipMembers::open`] refuses it with
//! [`WrapError::BadArchive`]: it is that member's rejection, the other members go on.
//!
//! # Limits
//! The spooled archive is at most `limit` bytes, and all members read from one archive together
//! at most `limit` decompressed bytes: `max_file_bytes` bounds what one inbound file can make us
//! inflate, however it is packaged (many members, or members sharing compressed data). A member
//! whose declared size does not fit what is left is refused at [`ZipMembers::open`]; one that
//! grows past it while read is refused then. A member that grows past its *own* declared size
//! is a [`WrapError::BadArchive`] (the archive contradicts itself). An archive with more than
//! [`MAX_ENTRIES`] entries, or two entries of one name, is a `BadArchive` as a whole.

use super::limit::Limited;
use super::{lift, tagged, WrapError};
use ::zip::result::ZipError;
use ::zip::{CompressionMethod, ZipArchive};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The most entries (members and directories) one archive may have; each costs memory while
/// the archive is open, so an archive of millions of tiny entries is refused before it is read.
pub const MAX_ENTRIES: usize = 10_000;

/// The longest [`member_display_name`], in bytes.
pub const DISPLAY_MAX: usize = 200;

/// Between the archive's name and the member's in a result name: `ARCHIVE.zip!MEMBER`.
pub const SEPARATOR: char = '!';

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The entry's index in the archive, for [`ZipMembers::open`].
    pub index: usize,
    /// The name as in the archive (UTF-8 or CP437 as its flag says; invalid bytes replaced).
    /// Untrusted: for messages only.
    pub name: String,
    /// A flat, safe name for result file names, unique in this archive (see the module docs).
    pub display: String,
    /// Its name ends `.csv`, `.edi` or `.x12` and it is not macOS metadata.
    pub wanted: bool,
    /// The uncompressed size the archive declares (the read is held to it).
    pub size: u64,
    /// Why it cannot be read, when it cannot.
    pub unreadable: Option<String>,
}

/// An archive spooled to a temporary file, its members read one at a time.
pub struct ZipMembers {
    archive: ZipArchive<Spool>,
    members: Vec<MemberInfo>,
    limit: u64,
    /// Decompressed bytes handed out across all members so far.
    used: u64,
}

impl std::fmt::Debug for ZipMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipMembers").field("members", &self.members).field("limit", &self.limit).finish()
    }
}

impl ZipMembers {
    /// Copies `r` (the archive, at most `limit` bytes) into an anonymous temporary file and
    /// reads its central directory. A failure of `r` comes back as it is (a drop failure stays
    /// [`WrapError::Drop`]); a failure of the temporary file is reported as `Drop` too, since it
    /// is not a verdict on the file (a full disk is an outage to retry).
    pub fn spool(r: impl Read, limit: u64) -> Result<Self, WrapError> {
        let mut file = tempfile::tempfile().map_err(|e| local(e, "create"))?;
        let mut r = Limited::new(r, limit);
        let mut buf = vec![0u8; 64 * 1024];
        let mut headers = HeaderCount::default();
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WrapError::from_io(e)),
            };
            headers.feed(&buf[..n]);
            if headers.count > MAX_ENTRIES {
                return Err(WrapError::BadArchive(format!("the zip has more than {MAX_ENTRIES} entries")));
            }
            file.write_all(&buf[..n]).map_err(|e| local(e, "write"))?;
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| local(e, "rewind"))?;
        let archive = ZipArchive::new(Spool(file)).map_err(|e| zip_error(e, "the zip is unreadable"))?;
        if archive.has_duplicate_names() {
            return Err(WrapError::BadArchive("the zip has two entries of the same name".into()));
        }
        let members = list(&archive)?;
        Ok(ZipMembers { archive, members, limit, used: 0 })
    }

    /// The archive's members (not its directories), in archive order.
    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    /// Decompressed bytes read from members so far, of the archive's `limit`.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The member at `index` ([`MemberInfo::index`]), decompressed as it is read. Refused:
    /// an unreadable member or a corrupt entry ([`WrapError::BadArchive`]), a declared size
    /// past what is left of the limit ([`WrapError::TooLarge`]). While reading: damage is
    /// `BadArchive`, growing past the limit is `TooLarge` (see [`WrapError::from_io`]).
    pub fn open(&mut self, index: usize) -> Result<Box<dyn Read + Send + '_>, WrapError> {
        let info = self
            .members
            .iter()
            .find(|m| m.index == index)
            .ok_or_else(|| WrapError::BadArchive(format!("the zip has no member {index}")))?;
        let name = info.name.clone();
        if let Some(why) = &info.unreadable {
            return Err(WrapError::BadArchive(format!("zip member {name:?} is {why}")));
        }
        if info.size > self.limit.saturating_sub(self.used) {
            return Err(WrapError::TooLarge { limit: self.limit });
        }
        let file = self.archive.by_index(index).map_err(|e| zip_error(e, &format!("zip member {name:?}")))?;
        Ok(Box::new(Member { file, used: &mut self.used, limit: self.limit, name, failed: false }))
    }
}

/// The entries' listing: display names made unique, unreadable ones told why.
fn list(archive: &ZipArchive<Spool>) -> Result<Vec<MemberInfo>, WrapError> {
    let mut members = Vec::new();
    let mut taken = Taken::default();
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(|e| zip_error(e, "the zip's directory"))?;
        if entry.is_dir() {
            continue;
        }
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(_) => String::from_utf8_lossy(entry.name_raw()).into_owned(),
        };
        let unreadable = if entry.encrypted() {
            Some("encrypted (zip passwords are not supported; OpenPGP is)".to_string())
        } else if entry.is_symlink() {
            Some("a symbolic link".to_string())
        } else if !matches!(entry.compression(), CompressionMethod::Stored | CompressionMethod::Deflated) {
            Some(format!("compressed with {}; only stored and deflate are read", entry.compression()))
        } else {
            None
        };
        members.push(MemberInfo {
            index,
            display: unique(member_display_name(&name), &mut taken),
            wanted: wanted(&name),
            size: entry.size(),
            unreadable,
            name,
        });
    }
    Ok(members)
}

/// Ends `.csv`, `.edi` or `.x12` (any case), and is not macOS's metadata beside a real file
/// (`__MACOSX/x/._stock.csv`, which would otherwise be read as a broken CSV).
fn wanted(name: &str) -> bool {
    let mut parts = name.split(['/', '\\']);
    let base = parts.next_back().unwrap_or("");
    let lower = base.to_ascii_lowercase();
    let macos = base.starts_with("._") || name.split(['/', '\\']).any(|p| p == "__MACOSX");
    !macos && [".csv", ".edi", ".x12"].iter().any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// A spooled zip whose members are unpacked once each, into anonymous temporary files of their
/// own: a member read several times (its parse, then its error file) is inflated once, and so
/// counts once against the archive's budget.
pub struct Unpacked {
    zip: ZipMembers,
    files: HashMap<usize, File>,
}

impl Unpacked {
    /// [`ZipMembers::spool`], nothing unpacked yet.
    pub fn spool(r: impl Read, limit: u64) -> Result<Self, WrapError> {
        Ok(Unpacked { zip: ZipMembers::spool(r, limit)?, files: HashMap::new() })
    }

    pub fn members(&self) -> &[MemberInfo] {
        self.zip.members()
    }

    /// Member `index` from its start: unpacked on first use ([`ZipMembers::open`]'s verdicts),
    /// a new handle on the same temporary file after that. A failure of the temporary file is
    /// [`WrapError::Drop`] (an outage to retry, not the archive's fault).
    pub fn member_file(&mut self, index: usize) -> Result<File, WrapError> {
        if !self.files.contains_key(&index) {
            let mut file = tempfile::tempfile().map_err(|e| local(e, "create"))?;
            let mut member = self.zip.open(index)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match member.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => file.write_all(&buf[..n]).map_err(|e| local(e, "write"))?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(WrapError::from_io(e)),
                }
            }
            drop(member);
            self.files.insert(index, file);
        }
        let kept =
            self.files.get(&index).ok_or_else(|| WrapError::BadArchive(format!("the zip has no member {index}")))?;
        let mut again = kept.try_clone().map_err(|e| local(e, "reopen"))?;
        again.seek(SeekFrom::Start(0)).map_err(|e| local(e, "rewind"))?;
        Ok(again)
    }
}

/// A flat name safe in a result file name, from a member's untrusted name: path components
/// (split at `/` and `\`, without empty, `.` and `..` ones) joined with `_`; control, bidi and
/// file-system-special characters (and `!`, the archive separator) as `_`; no `..`, no leading
/// or trailing dot or space (not hidden); at most [`DISPLAY_MAX`] bytes, keeping a short
/// extension. Never empty.
pub fn member_display_name(raw: &str) -> String {
    let joined =
        raw.split(['/', '\\']).filter(|p| !p.is_empty() && *p != "." && *p != "..").collect::<Vec<_>>().join("_");
    let mut s = String::with_capacity(joined.len());
    for c in joined.chars() {
        let c = if c.is_control() || is_bidi_or_invisible(c) || "!:*?\"<>|".contains(c) { '_' } else { c };
        if c == '.' && s.ends_with('.') {
            continue;
        }
        s.push(c);
    }
    let s = s.trim_matches(['.', ' ']);
    let s = if s.is_empty() { "member" } else { s };
    let (stem, ext) = split_ext(s);
    fit(stem, ext, "")
}

/// Characters that make a name display as something it is not (bidi overrides and isolates,
/// marks, zero-width ones): not in a name an operator reads.
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A name's stem and its extension (without the dot) when it is short enough to keep whole.
fn split_ext(s: &str) -> (&str, &str) {
    match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i - 1 <= 16 => (&s[..i], &s[i + 1..]),
        _ => (s, ""),
    }
}

/// `stem` + `tag` + `.ext`, the stem cut (on a character boundary) to fit [`DISPLAY_MAX`].
fn fit(stem: &str, ext: &str, tag: &str) -> String {
    let tail = if ext.is_empty() { tag.len() } else { tag.len() + 1 + ext.len() };
    let mut cut = DISPLAY_MAX.saturating_sub(tail).min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches(['.', ' ']);
    let stem = if stem.is_empty() { "member" } else { stem };
    if ext.is_empty() {
        format!("{stem}{tag}")
    } else {
        format!("{stem}{tag}.{ext}")
    }
}

/// Display names given so far in one archive (lowercase: some drops' file systems ignore case),
/// and for each name that collided the next number to try, so many members of one name (which
/// distinct raw names can flatten to) cost linear time.
#[derive(Default)]
struct Taken {
    names: HashSet<String>,
    next: HashMap<String, u64>,
}

/// `name`, or `stem-2.ext`, `stem-3.ext`…: the first not yet taken.
fn unique(name: String, taken: &mut Taken) -> String {
    let key = name.to_lowercase();
    if taken.names.insert(key.clone()) {
        return name;
    }
    let (stem, ext) = split_ext(&name);
    let mut k = taken.next.get(&key).copied().unwrap_or(2);
    loop {
        let candidate = fit(stem, ext, &format!("-{k}"));
        k += 1;
        if taken.names.insert(candidate.to_lowercase()) {
            taken.next.insert(key, k);
            return candidate;
        }
    }
}

/// Counts central directory header signatures (`PK\1\2`) in a stream fed in pieces: every entry
/// the zip reader can list starts with one, so this bounds the entries before any is parsed.
#[derive(Default)]
struct HeaderCount {
    count: usize,
    /// The last three bytes fed, for a signature split between pieces.
    tail: Vec<u8>,
}

impl HeaderCount {
    const SIG: &'static [u8] = b"PK\x01\x02";

    fn feed(&mut self, piece: &[u8]) {
        let mut seam = std::mem::take(&mut self.tail);
        seam.extend_from_slice(&piece[..piece.len().min(3)]);
        self.count += memchr::memmem::find_iter(&seam, Self::SIG).count();
        self.count += memchr::memmem::find_iter(piece, Self::SIG).count();
        let keep = if piece.len() >= 3 { &piece[piece.len() - 3..] } else { &seam[seam.len().saturating_sub(3)..] };
        self.tail = keep.to_vec();
    }
}

/// The temporary file, its failures marked as the local side's ([`WrapError::Drop`]) so the zip
/// reader's own complaints can be told from them.
struct Spool(File);

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            return match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r.map_err(|e| tagged(local(e, "read"))),
            };
        }
    }
}

impl Seek for Spool {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos).map_err(|e| tagged(local(e, "seek")))
    }
}

fn local(e: io::Error, what: &str) -> WrapError {
    WrapError::Drop(io::Error::new(e.kind(), format!("the zip's temporary file ({what}): {e}")))
}

/// A zip reader's error: the temporary file's failure as it was, the rest `BadArchive`.
fn zip_error(e: ZipError, context: &str) -> WrapError {
    match e {
        ZipError::Io(e) => lift(e, |e| WrapError::BadArchive(format!("{context}: {e}"))),
        other => WrapError::BadArchive(format!("{context}: {other}")),
    }
}

/// One member being read, charged against the archive's limit.
struct Member<'a> {
    file: ::zip::read::ZipFile<'a, Spool>,
    used: &'a mut u64,
    limit: u64,
    name: String,
    failed: bool,
}

impl Read for Member<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(WrapError::BadArchive(format!("zip member {:?} failed earlier", self.name)).into_io());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than is left, so going past the limit shows at once.
        let room = self.limit.saturating_sub(*self.used).saturating_add(1);
        let want = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
        let n = match self.file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                self.failed = true;
                let name = &self.name;
                return Err(
                    lift(e, |e| WrapError::BadArchive(format!("zip member {name:?} is corrupt: {e}"))).into_io()
                );
            }
        };
        let used = self.used.saturating_add(n as u64);
        if used > self.limit {
            self.failed = true;
            return Err(WrapError::TooLarge { limit: self.limit }.into_io());
        }
        *self.used = used;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_flat_and_safe() {
        let cases = [
            ("stock.csv", "stock.csv"),
            ("east/stock.csv", "east_stock.csv"),
            ("../../etc/passwd.csv", "etc_passwd.csv"),
            ("/abs/x.csv", "abs_x.csv"),
            ("C:\\wh\\in\\x.csv", "C__wh_in_x.csv"),
            ("a/./b/../c.csv", "a_b_c.csv"),
            (".hidden.csv", "hidden.csv"),
            ("...csv", "csv"),
            ("a..b.csv", "a.b.csv"),
            ("x\u{0}\n\u{7f}y.csv", "x___y.csv"),
            ("evil\u{202E}vsc.exe", "evil_vsc.exe"),
            ("a!b.csv", "a_b.csv"),
            ("", "member"),
            ("/", "member"),
            ("..", "member"),
            ("ström/lager.csv", "ström_lager.csv"),
        ];
        for (raw, want) in cases {
            assert_eq!(member_display_name(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn long_names_keep_their_extension_within_the_limit() {
        let raw = format!("{}.csv", "é".repeat(300));
        let d = member_display_name(&raw);
        assert!(d.len() <= DISPLAY_MAX, "{}", d.len());
        assert!(d.ends_with(".csv"), "{d}");
        let raw = "x".repeat(1000);
        assert_eq!(member_display_name(&raw).len(), DISPLAY_MAX);
    }

    #[test]
    fn unique_suffixes_before_the_extension() {
        let mut taken = Taken::default();
        assert_eq!(unique("x.csv".into(), &mut taken), "x.csv");
        assert_eq!(unique("X.csv".into(), &mut taken), "X-2.csv");
        assert_eq!(unique("x.csv".into(), &mut taken), "x-3.csv");
        let long = member_display_name(&format!("{}.csv", "a".repeat(400)));
        let again = unique(long.clone(), &mut taken);
        let third = unique(long.clone(), &mut taken);
        assert_eq!(again, long);
        assert!(third.len() <= DISPLAY_MAX && third.ends_with("-2.csv"), "{third}");
    }

    #[test]
    fn many_members_flattening_to_one_name_stay_distinct() {
        let mut taken = Taken::default();
        let raws: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("{}x.csv", "a/".repeat(i % 5 + 1))).collect();
        let mut seen = HashSet::new();
        for (i, raw) in raws.iter().enumerate() {
            let d = unique(member_display_name(raw), &mut taken);
            assert!(seen.insert(d.to_lowercase()), "{i}: {d} twice");
        }
        // Taken itself: "a_x-2.csv" exists as a raw name's display too.
        let d = unique("a_x-2.csv".to_string(), &mut taken);
        assert!(seen.insert(d.to_lowercase()), "{d}");
    }

    #[test]
    fn wanted_names() {
        for (name, want) in [
            ("stock.csv", true),
            ("in/ORDERS.EDI", true),
            ("x.X12", true),
            ("readme.txt", false),
            ("stock.csv.gz", false),
            ("__MACOSX/._stock.csv", false),
            ("dir/._stock.csv", false),
            (".csv", false),
            ("csv", false),
        ] {
            assert_eq!(wanted(name), want, "{name}");
        }
    }

    #[test]
    fn header_signatures_counted_across_pieces() {
        let mut data = Vec::new();
        for i in 0..50 {
            data.extend(std::iter::repeat_n(b'x', i % 7));
            data.extend_from_slice(HeaderCount::SIG);
        }
        for piece in [1, 2, 3, 4, 5, 64] {
            let mut h = HeaderCount::default();
            for chunk in data.chunks(piece) {
                h.feed(chunk);
            }
            assert_eq!(h.count, 50, "pieces of {piece}");
        }
    }
}
