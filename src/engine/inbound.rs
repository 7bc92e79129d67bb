//! Inbound files: list, wait for them to settle, then take each through the recorded steps
//! `Taken → Applied → ResultWritten → ErrorsWritten → Moved`.
//!
//! Why a crash at each point is safe (every step is redone or recognised as done):
//! 1. Before `Applied`: nothing on the drop changed; the file is still in `inbound/`. Remote
//!    writes already made are in the outbox, so re-applying reuses their outcomes (`apply.rs`).
//! 2. `Applied`: outcomes are in the ledger. An X12 file's 997s come first (`x12.rs`): each
//!    under control numbers remembered before it is written, the file marked done after the
//!    last, so a retry rewrites the same 997s under the same names and finds them there. The
//!    result file's name is recorded *before* it is written, and it is written atomically;
//!    finding it already there means we wrote it.
//! 3. `ResultWritten`: the error file is rebuilt from the original (still in `inbound/`) and the
//!    stored outcomes, under a name likewise recorded first.
//! 4. `ErrorsWritten`: the move target is recorded first; after a crash, "source gone and
//!    target present" means the move happened.
//! 5. `Moved`: finished. A file is therefore always in exactly one of `inbound/` (work left),
//!    `archive/` or `rejected/`, with its result file once it has left `inbound/`.

use super::account::{AccountCtx, Step, Stop, StopError};
use super::content::Source;
use super::settle;
use super::x12_read::{read_x12, Batch};
use super::FileSummary;
use crate::drop::{
    check_name, is_ignored_name, truncate_bytes, DropError, DropErrorKind, Entry, EntryKind, MAX_NAME_BYTES,
};
use crate::formats::replay::Origins;
use crate::formats::{self, Kind, Record, Unit};
use crate::ledger::{FileRow, FileState, FileStep, StoredRecord};
use crate::reconcile::{Decision, Outcome};
use crate::report::{ErrorWriter, ResultRow, ResultWriter};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};
use std::sync::Arc;

/// Streams a file through SHA-256 while the parser reads it: one pass, flat memory.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Where inbound files come from: a kind's folder, or `inbound/edi` (X12 only; the transaction
/// sets decide the kind). Its `name` is the ledger's `kind` of the files taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox {
    Kind(Kind),
    Edi,
}

impl Inbox {
    pub fn name(self) -> &'static str {
        match self {
            Inbox::Kind(k) => k.as_str(),
            Inbox::Edi => "edi",
        }
    }

    pub fn kind(self) -> Option<Kind> {
        match self {
            Inbox::Kind(k) => Some(k),
            Inbox::Edi => None,
        }
    }
}

/// Marks of an X12 file (by ledger id): its ISA13 once read, and that its 997s are written.
fn x12_file_mark(account: &str, id: i64) -> String {
    format!("x12-file:{account}:{id}")
}
fn x12_acks_mark(account: &str, id: i64) -> String {
    format!("x12-acks-done:{account}:{id}")
}

/// Set on a replayed error file: the original it names (its result file says where each row
/// came from).
fn replay_mark(account: &str, id: i64) -> String {
    format!("replay:{account}:{id}")
}

/// Set by the console on a file it queued again (`reprocess:{account}:{path}` → the id of the
/// file it is a copy of): identical-content skipping does not apply to it.
pub fn reprocess_mark(account: &str, path: &str) -> String {
    format!("reprocess:{account}:{path}")
}

/// What one pass over a file yields.
struct Parsed {
    sha256: String,
    bytes: u64,
    /// Accepted records by kind: one batch for a CSV file, one per (kind, delta) for X12.
    batches: Vec<Batch>,
    /// The interchange's ISA13 and the partner's 997s, for an X12 file.
    x12: Option<(String, Vec<crate::x12::inbound::ReceivedAck>)>,
    /// Parse rejections, one per unit.
    rejected: Vec<Decision>,
    file_rejection: Option<formats::FileRejection>,
    /// Where each row of a replayed error file came from (`formats::replay`).
    replay: Option<super::Replayed>,
    /// Queued again by an operator (`reprocess:` mark): never a copy to skip, keys of its own.
    requeued: bool,
}

/// Where a rejected row's key is, so its result row still names the SKU, order or shipment.
/// Each inner list: the first non-empty of these columns is one part of the key.
struct KeyColumns(Vec<Vec<usize>>);

impl KeyColumns {
    fn new(kind: Kind, header: &[String], opts: &formats::ParseOptions) -> Self {
        let names: Vec<String> = header.iter().map(|h| formats::header::canonical_name(h, &opts.column_map)).collect();
        let find = |c: &str| names.iter().position(|n| n == c);
        let part = |cs: &[&str]| cs.iter().filter_map(|c| find(c)).collect::<Vec<usize>>();
        KeyColumns(match kind {
            Kind::Inventory => vec![part(&["sku"])],
            Kind::Orders => vec![part(&["order_ref"])],
            // Same shape as an accepted shipment's key: fulfillment (or order) / tracking.
            Kind::Shipments => vec![part(&["fulfillment_id", "order_ref"]), part(&["tracking_number"])],
        })
    }

    fn key(&self, u: &Unit) -> String {
        let Some(row) = u.rows.first() else { return String::new() };
        let value = |cols: &Vec<usize>| {
            cols.iter()
                .filter_map(|&i| row.fields.get(i))
                .map(|s| s.trim())
                .find(|s| !s.is_empty())
                .unwrap_or("")
                .to_string()
        };
        let parts: Vec<String> = self.0.iter().map(value).collect();
        if parts.iter().all(|p| p.is_empty()) {
            String::new()
        } else {
            parts.join("/")
        }
    }
}

fn unit_decision(u: &Unit, errs: &[formats::RecordError], key: String) -> Decision {
    let line = u.rows.first().map(|r| r.line).unwrap_or(0);
    let first = errs.first();
    let msg =
        errs.iter().map(|e| format!("line {} {}: {}", e.line, e.column, e.message)).collect::<Vec<_>>().join("; ");
    Decision::rejected(line, first.map(|e| e.code.as_str()).unwrap_or("invalid"), key, msg)
}

/// `name`, or `STEM~N.EXT` with the first free `N`; the stem is shortened where needed so
/// that no name we write exceeds [`MAX_NAME_BYTES`].
fn unique_name_in(existing: &HashSet<String>, name: &str) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i < 64 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let with = |suffix: &str| {
        let room = MAX_NAME_BYTES.saturating_sub(ext.len() + suffix.len());
        format!("{}{suffix}{ext}", truncate_bytes(stem, room))
    };
    let first = with("");
    if !existing.contains(&first) {
        return first;
    }
    (2..).map(|n| with(&format!("~{n}"))).find(|c| !existing.contains(c)).expect("unbounded")
}

impl AccountCtx<'_> {
    /// [`unique_name_in`] the entries of `dir` on the drop, listing them only when the plain
    /// name is taken: one `stat` instead of a listing that grows with the folder (over sFTP, a
    /// round trip per 100 entries, for every file of a morning's batch).
    fn unique_name_on_drop(&mut self, dir: &str, wanted: &str) -> Step<String> {
        let plain = unique_name_in(&HashSet::new(), wanted);
        let at = if dir.is_empty() { plain.clone() } else { format!("{dir}/{plain}") };
        if self.drop.stat(&at)?.is_none() {
            return Ok(plain);
        }
        let existing: HashSet<String> = self.drop.list(dir)?.into_iter().map(|x| x.name).collect();
        Ok(unique_name_in(&existing, wanted))
    }
}

/// A name for an entry the bridge moves aside unread: printable, no separators or `..`, not
/// hidden, at most 200 bytes (so its result file name fits), never empty.
fn safe_name(lossy: &str) -> String {
    let s: String = lossy
        .chars()
        .map(|c| if c.is_control() || c == '/' || c == '\\' { '_' } else { c })
        .collect::<String>()
        .replace("..", "_");
    let s = match s.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => s,
    };
    let s = truncate_bytes(&s, 200).to_string();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

impl AccountCtx<'_> {
    fn parse_opts(&self, kind: Kind, name: &str) -> formats::ParseOptions {
        let mut o = self.acct.parse.clone();
        o.inventory_delta = kind == Kind::Inventory && (o.inventory_delta || formats::is_delta_name(name));
        o
    }

    pub async fn inbound(&mut self, kind: Kind) -> Step<()> {
        self.inbound_in(Inbox::Kind(kind)).await
    }

    /// `inbound/edi`, for an account with an X12 partner.
    pub async fn inbound_edi(&mut self) -> Step<()> {
        if self.acct.x12.is_none() {
            return Ok(());
        }
        self.inbound_in(Inbox::Edi).await
    }

    async fn inbound_in(&mut self, inbox: Inbox) -> Step<()> {
        let dir = match inbox {
            Inbox::Kind(kind) => self.acct.folders.inbound(kind).to_string(),
            Inbox::Edi => self.acct.folders.inbound_edi.clone(),
        };
        // Today's archive folder is where files go last: a link there must stop the account
        // before anything is applied, not after.
        let today = format!("{}/{}", self.acct.folders.archive, chrono::Utc::now().format("%Y-%m-%d"));
        if self.drop.stat(&today)?.is_some_and(|st| st.kind == EntryKind::Symlink) {
            return Err(DropError::from_io(&today, crate::drop::escape_error(&today)).into());
        }
        let mut entries = self.drop.list(&dir)?;
        entries.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        let names: HashSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        self.recover_vanished(inbox, &dir, &names)?;
        let markers = self.acct.marker_suffixes.clone();
        let now_ms = settle::millis(std::time::SystemTime::now());
        for e in entries {
            // Dot names are never input, whatever they are (an uploader's hidden staging
            // folder is its own business): left alone, neither read nor moved.
            if e.name.starts_with('.') {
                continue;
            }
            // Links, FIFOs, sockets and folders are never read (nor followed): moved aside,
            // the entry itself, with a result saying what it was.
            if e.kind != EntryKind::File {
                let what = e.kind.describe();
                let msg = format!("{what}, not a regular file; moved aside unread (upload regular files only)");
                self.refuse_entry(&dir, &e, what, msg)?;
                continue;
            }
            if is_ignored_name(&e.name) {
                continue;
            }
            if !markers.is_empty() {
                if settle::marked_file(&e.name, &markers).is_some() {
                    continue;
                }
                if !markers.iter().any(|m| names.contains(&format!("{}{m}", e.name))) {
                    continue;
                }
            }
            let name_ok = if std::str::from_utf8(&e.raw_name).is_err() {
                Err("name is not valid UTF-8")
            } else {
                check_name(&e.name)
            };
            if let Err(why) = name_ok {
                let msg = format!("file name refused ({why}); rename the file and upload it again");
                self.refuse_entry(&dir, &e, &format!("file name refused: {why}"), msg)?;
                continue;
            }
            let path = format!("{dir}/{}", e.name);
            if markers.is_empty() {
                let obs = self.ledger.observe(&self.acct.name, &path, e.size, settle::millis(e.mtime), now_ms)?;
                let mtime_ms = settle::millis(e.mtime);
                if !settle::is_settled(now_ms, mtime_ms, obs.since_ms, self.acct.settle) {
                    tracing::debug!(account = %self.acct.name, file = %path, "waiting for the file to settle");
                    let due = obs.since_ms.min(mtime_ms) + self.acct.settle.as_millis() as i64;
                    self.report.settle_due_ms = Some(self.report.settle_due_ms.map_or(due, |d| d.min(due)));
                    continue;
                }
            }
            // A shutdown finishes the file in hand, never starts another.
            if self.stop.is_cancelled() {
                return Ok(());
            }
            // Past the cycle's deadline no file is started; the rest waits for the next run.
            self.client.check_deadline()?;
            let src = Source::file(&dir, &e.name);
            if crate::wrap::peel(&e.name).zip {
                self.process_archive(inbox, &src, &e).await?;
            } else {
                self.process_file(inbox, &src, &e).await?;
            }
            for m in &markers {
                let marker = format!("{path}{m}");
                if names.contains(&format!("{}{m}", e.name)) {
                    let _ = self.drop.remove(&marker);
                }
            }
        }
        Ok(())
    }

    /// Unfinished ledger rows whose file is no longer in `inbound/`: either our move happened
    /// just before a crash, or someone removed the file.
    fn recover_vanished(&mut self, inbox: Inbox, dir: &str, present: &HashSet<String>) -> Step<()> {
        for f in self.ledger.unfinished_files(&self.acct.name)? {
            if f.kind != inbox.name() || !f.path.starts_with(dir) {
                continue;
            }
            let name = f.path.rsplit('/').next().unwrap_or("");
            if present.contains(name) || super::content::member_of_present(name, present) {
                continue;
            }
            let moved = match &f.final_path {
                Some(t) if f.step >= FileStep::ErrorsWritten => self.drop.stat(t)?.is_some(),
                _ => false,
            };
            let state = if f.reject_file { FileState::Rejected } else { FileState::Archived };
            if moved {
                let t = f.final_path.clone().unwrap_or_default();
                self.ledger.finish_file(f.id, state, &t)?;
            } else {
                tracing::warn!(account = %self.acct.name, file = %f.path, "file disappeared from the drop before it was finished");
                self.ledger.finish_file(f.id, FileState::Rejected, "(removed from the drop by someone else)")?;
            }
        }
        Ok(())
    }

    /// An entry the bridge cannot carry through (a hostile or unusable name, or not a regular
    /// file): move the entry itself aside under a safe name, with a result saying why.
    fn refuse_entry(&mut self, dir: &str, e: &Entry, why: &str, message: String) -> Step<()> {
        let safe = safe_name(&e.name);
        tracing::warn!(account = %self.acct.name, name = ?e.name, "refused {}: {why}", e.kind.describe());
        let rejected_dir = self.acct.folders.rejected.clone();
        let existing: HashSet<String> = self.drop.list(&rejected_dir)?.into_iter().map(|x| x.name).collect();
        let target = format!("{rejected_dir}/{}", unique_name_in(&existing, &safe));
        let moved = match self.drop.rename_entry(dir, &e.raw_name, &target) {
            Err(err) if matches!(err.kind, DropErrorKind::Escape { .. }) => return Err(err.into()),
            other => other,
        };
        if let Err(err) = &moved {
            tracing::warn!(account = %self.acct.name, name = ?e.name, "could not move the refused entry aside: {err}");
        }
        let results_dir = self.acct.folders.results.clone();
        let existing: HashSet<String> = self.drop.list(&results_dir)?.into_iter().map(|x| x.name).collect();
        let rname = unique_name_in(&existing, &format!("{safe}.result.csv{}", self.results_suffix()));
        let result = ResultWriter::new(Vec::new()).and_then(|mut w| {
            w.write(&ResultRow {
                line: 0,
                key: String::new(),
                outcome: Outcome::Rejected,
                remote_id: String::new(),
                message,
            })?;
            w.finish()
        });
        let bytes = result.map_err(|err| Stop::local(format!("the result of the refused entry {dir}/{safe}"), err))?;
        let bytes = match self.acct.pgp.as_ref().filter(|p| p.encrypt_results) {
            None => bytes,
            Some(pgp) => {
                let mut out = Vec::new();
                super::content::encrypt_for(pgp, &mut bytes.as_slice(), &mut out).map_err(|err| {
                    Stop::local(format!("encrypting the result of {dir}/{safe}"), io::Error::other(err))
                })?;
                out
            }
        };
        if moved.is_ok() {
            self.drop.write_atomic(&format!("{results_dir}/{rname}"), &mut bytes.as_slice())?;
        }
        self.report.files.push(FileSummary {
            path: format!("{dir}/{safe}"),
            kind: "unknown".into(),
            state: if moved.is_ok() { "rejected".into() } else { "skipped".into() },
            message: why.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// Read and parse the listed file; `None` if it is not the file that was listed any more,
    /// or changed while it was read (size, mtime or identity differ from the listing): then
    /// nothing of it counts, whatever `settle_seconds` is, and the next run takes it when it
    /// stands still.
    fn read_and_parse(&mut self, inbox: Inbox, src: &Source, listed: &Entry) -> Step<Option<Parsed>> {
        let (size, path) = (listed.size, src.file.as_str());
        let kind = inbox.kind().unwrap_or(Kind::Inventory);
        let mut opts = self.parse_opts(kind, &src.name);
        // A copy queued again by the console is read as its original was (a `_delta.csv`
        // original stays a delta under its `~reprocess-N` name).
        let copied_from = self.ledger.get_mark(&reprocess_mark(&self.acct.name, &src.path))?;
        let requeued = copied_from.is_some();
        let original = copied_from.and_then(|id| id.parse::<i64>().ok()).map(|id| self.ledger.file(id)).transpose()?;
        if let Some(f) = original.flatten() {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
            opts.inventory_delta = kind == Kind::Inventory && (opts.inventory_delta || formats::is_delta_name(&name));
        }
        let x12_cfg = self.acct.x12.clone();
        let acct = self.acct;
        let Some(reader) = self.open_input(src, listed)? else { return Ok(None) };
        let replay = reader.replay().cloned();
        if let Some(r) = &replay {
            // A replay is read as its original was: a delta if that was one.
            opts.inventory_delta =
                kind == Kind::Inventory && (acct.parse.inventory_delta || formats::is_delta_name(r.original_name()));
        }
        let mut accepted = Vec::new();
        let mut batches = Vec::new();
        let mut x12 = None;
        let mut rejected = Vec::new();
        let mut file_rejection = None;
        // The reader borrows the drop: its scope ends before the drop is asked again.
        let (hasher, bytes) = {
            let mut h = Hashing { inner: reader, hasher: Sha256::new(), bytes: 0 };
            // The first bytes say whether this is an X12 interchange (`ISA`), in any folder.
            let mut head = Vec::with_capacity(512);
            let _ = (&mut h).take(512).read_to_end(&mut head);
            h.inner.failed(path)?;
            let is_x12 = crate::x12::is_x12(&head);
            let mut h = io::Cursor::new(head).chain(h);
            if size > opts.max_file_bytes {
                file_rejection = Some(formats::FileRejection {
                    code: formats::ErrorCode::FileTooLarge,
                    line: None,
                    column: None,
                    message: format!("file is {size} bytes; the limit is {} bytes", opts.max_file_bytes),
                });
                drain(&mut h);
            } else if is_x12 {
                let r = read_x12(&mut h, &opts, inbox.kind(), x12_cfg.as_ref());
                file_rejection = r.file_rejection;
                rejected = r.rejected;
                batches = r.batches;
                x12 = r.interchange.map(|isa13| (isa13, r.acks));
                h.get_mut().1.inner.failed(path)?;
                drain(&mut h);
            } else if inbox == Inbox::Edi {
                file_rejection = Some(formats::FileRejection::new(
                    formats::ErrorCode::X12Envelope,
                    Some(1),
                    "not an X12 interchange (it does not start with ISA); inbound/edi takes X12 files only",
                ));
                drain(&mut h);
            } else {
                match formats::parse(kind, &mut h, &opts) {
                    Err(r) => file_rejection = Some(r),
                    Ok(units) => {
                        let keys = KeyColumns::new(kind, units.header(), &opts);
                        for u in units {
                            match u {
                                Err(r) => {
                                    file_rejection = Some(r);
                                    break;
                                }
                                Ok(u) => match &u.result {
                                    Ok(rec) => accepted.push(rec.clone()),
                                    Err(errs) => rejected.push(unit_decision(&u, errs, keys.key(&u))),
                                },
                            }
                        }
                    }
                }
                h.get_mut().1.inner.failed(path)?;
                // Hash the whole content even if parsing stopped early.
                drain(&mut h);
            }
            // A CSV file is one batch, even an empty one: the planner decides what an empty
            // snapshot means (refused as a likely bad export).
            if !is_x12 && inbox != Inbox::Edi {
                let delta = opts.inventory_delta;
                batches.push(Batch { kind, delta, records: std::mem::take(&mut accepted) });
            }
            // A wrapper's verdict (wrong key, corrupt, a bomb) is the file's, whatever the
            // parser made of the content it got before that.
            let mut h = h.into_inner().1;
            h.inner.failed(path)?;
            if let Some(r) = h.inner.rejection() {
                file_rejection = Some(r);
            }
            if file_rejection.is_some() {
                batches.clear();
                rejected.clear();
                x12 = None;
            }
            (h.hasher, h.bytes)
        };
        let now = self.drop.stat(path)?;
        // A wrapped file's content is not its size on the drop; its listing still must hold.
        // A replay is read through `formats::replay`, whose bytes are not the file's either.
        let count_differs = !src.is_wrapped() && replay.is_none() && bytes != size;
        if count_differs || !now.as_ref().is_some_and(|n| n.unchanged_as(listed)) {
            tracing::info!(account = %self.acct.name, file = %path, "changed while it was read; taken when it stands still");
            return Ok(None);
        }
        Ok(Some(Parsed {
            sha256: hex::encode(hasher.finalize()),
            bytes,
            batches,
            x12,
            rejected,
            file_rejection,
            replay,
            requeued,
        }))
    }

    pub(super) async fn process_file(&mut self, inbox: Inbox, src: &Source, e: &Entry) -> Step<()> {
        let row = self.take_source(inbox, src, e)?;
        self.process_row(inbox, src, e, row).await
    }

    /// The ledger row of `src`: the unfinished one, or a new one.
    pub(super) fn take_source(&mut self, inbox: Inbox, src: &Source, e: &Entry) -> Step<FileRow> {
        Ok(self.ledger.take_file(&self.acct.name, inbox.name(), &src.path, e.size, settle::millis(e.mtime))?)
    }

    /// Steps 1–5 of `src` from where `row` stands (a zip member stops before the move: its
    /// archive moves once all its members are done).
    pub(super) async fn process_row(&mut self, inbox: Inbox, src: &Source, e: &Entry, mut row: FileRow) -> Step<()> {
        let acct = self.acct.name.clone();
        let path = src.path.as_str();
        if row.step < FileStep::Applied {
            let Some(parsed) = self.read_and_parse(inbox, src, e)? else {
                // Nothing recorded beyond "taken"; the settle clock starts again.
                self.ledger.forget_observation(&acct, &src.file)?;
                let due = settle::millis(std::time::SystemTime::now()) + self.acct.settle.as_millis() as i64;
                self.report.settle_due_ms = Some(self.report.settle_due_ms.map_or(due, |d| d.min(due)));
                return Ok(());
            };
            self.ledger.set_hash(row.id, &parsed.sha256, parsed.bytes)?;
            if let Some(r) = &parsed.replay {
                // Remembered with the file: its result file, written maybe in a later run,
                // names the original of each row.
                self.ledger.set_mark(&replay_mark(&acct, row.id), &r.original)?;
            }
            let (decisions, dup, reject_file, message) = if let Some(r) = &parsed.file_rejection {
                let d = Decision::rejected(r.line.unwrap_or(0), r.code.as_str(), "", r.message.clone());
                (vec![d], None, true, Some(format!("file rejected: {}", r.message)))
            } else if let Some(earlier) = self.sent_again(path, &parsed, row.id)? {
                let msg = format!(
                    "identical to {} (processed {}); not processed again",
                    earlier.path.rsplit('/').next().unwrap_or(&earlier.path),
                    earlier.updated_at
                );
                let mut ds: Vec<Decision> = parsed
                    .batches
                    .iter()
                    .flat_map(|b| &b.records)
                    .map(|r| Decision::new(record_line(r), crate::reconcile::record_key(r), Outcome::Skipped, "", &msg))
                    .collect();
                ds.extend(parsed.rejected.iter().map(|d| Decision {
                    outcome: Outcome::Skipped,
                    message: msg.clone(),
                    ..d.clone()
                }));
                ds.sort_by_key(|d| d.line);
                (ds, Some(earlier.id), false, Some(msg))
            } else if let Some(seen) = self.x12_seen_before(parsed.x12.as_ref(), path)? {
                // The partner sent this interchange before (same ISA13): acknowledged and applied
                // then; nothing of it is applied again and no second 997 is sent.
                let msg = format!(
                    "duplicate interchange: ISA13 {} from this partner was processed in {} ({}); not processed again",
                    parsed.x12.as_ref().map(|x| x.0.as_str()).unwrap_or(""),
                    seen.path.rsplit('/').next().unwrap_or(&seen.path),
                    seen.at.format("%Y-%m-%d %H:%M UTC")
                );
                let mut ds: Vec<Decision> = parsed
                    .batches
                    .iter()
                    .flat_map(|b| &b.records)
                    .map(|r| Decision::new(record_line(r), crate::reconcile::record_key(r), Outcome::Skipped, "", &msg))
                    .collect();
                if ds.is_empty() {
                    ds.push(Decision::new(1, "", Outcome::Skipped, "", &msg));
                }
                (ds, None, false, Some(msg))
            } else {
                // The same content under another name is new information (a second receipt of
                // 5, Wednesday's snapshot equal to Monday's): applied, with writes of its own.
                // The outbox keys of the first file with this content stay the bare hash, so a
                // crash-left intent of an older release is still found; later ones add the
                // file's id, so they never reuse an earlier file's outcome.
                let same = match self.acct.skip_identical {
                    crate::config::SkipIdentical::AnyName => None,
                    _ => self.ledger.processed_with_hash(&acct, &parsed.sha256, row.id)?,
                };
                // A copy queued again by an operator is there to be applied again: keys of its own.
                let content_key = match (&same, parsed.requeued) {
                    (None, false) => parsed.sha256.clone(),
                    _ => format!("{}.{}", parsed.sha256, row.id),
                };
                let mut ds = parsed.rejected.clone();
                if let Some((isa13, acks)) = &parsed.x12 {
                    // Remembered before anything is applied: a crash from here on finds this
                    // same file (its own path) and takes it again, never as a duplicate.
                    let partner = self.acct.x12.as_ref().map(|c| c.partner_key()).unwrap_or_default();
                    self.ledger.mark_x12_interchange(&acct, &partner, isa13, path)?;
                    self.ledger.set_mark(&x12_file_mark(&acct, row.id), isa13)?;
                    ds.extend(self.record_acks(acks, path)?);
                }
                let x12 = parsed.x12.is_some();
                for b in parsed.batches {
                    let key = if x12 { b.content_key(&content_key) } else { content_key.clone() };
                    let origins = parsed.replay.as_ref().map(|r| &*r.origins);
                    ds.extend(self.apply(b.kind, &key, b.records, b.delta, origins).await?);
                }
                let note = same.map(|earlier| {
                    format!(
                        "same content as {} (processed {}); applied again as a file of its own",
                        earlier.path.rsplit('/').next().unwrap_or(&earlier.path),
                        earlier.updated_at
                    )
                });
                if let Some(n) = &note {
                    for d in ds.iter_mut().filter(|d| d.outcome != Outcome::Rejected) {
                        d.message = if d.message.is_empty() { n.clone() } else { format!("{}; {n}", d.message) };
                    }
                }
                ds.sort_by_key(|d| d.line);
                // Nothing applied (every row refused, or the whole snapshot refused as a likely
                // bad export): the file belongs in `rejected/`, as a file-level refusal does.
                let nothing_applied = !ds.is_empty() && ds.iter().all(|d| d.outcome == Outcome::Rejected);
                let message = match (nothing_applied, note) {
                    (true, _) => Some("file rejected: nothing in it was applied (see the error file)".to_string()),
                    (false, note) => note,
                };
                (ds, None, nothing_applied, message)
            };
            self.ledger.store_outcomes(row.id, &stored(&decisions), dup, reject_file, message.as_deref())?;
            row = self.reload(row.id, path)?;
        }
        self.finish_outputs(inbox, src, row, e)
    }

    /// Ledger row `id` as it is now; gone is a fatal ledger fault (`path` names it).
    pub(super) fn reload(&self, id: i64, path: &str) -> Step<FileRow> {
        self.ledger.file(id)?.ok_or_else(|| Stop::new(StopError::RowVanished { id, path: path.to_string() }))
    }

    /// The earlier file that brought this X12 interchange, if another did.
    fn x12_seen_before(
        &self,
        x12: Option<&(String, Vec<crate::x12::inbound::ReceivedAck>)>,
        path: &str,
    ) -> Step<Option<crate::ledger::SeenInterchange>> {
        let (Some((isa13, _)), Some(cfg)) = (x12, self.acct.x12.as_ref()) else { return Ok(None) };
        Ok(self.ledger.x12_interchange_seen(&self.acct.name, &cfg.partner_key(), isa13)?.filter(|s| s.path != path))
    }

    /// Whether the file starts like an X12 interchange (for its error file: a file refused
    /// whole, such as one from an unknown partner, has no X12 mark).
    fn looks_like_x12(&mut self, src: &Source, listed: &Entry) -> Step<bool> {
        let Some(mut reader) = self.open_input(src, listed)? else { return Ok(false) };
        let mut head = Vec::with_capacity(512);
        // Only the drop's own failure stops here; a content fault (a replay's conflicting
        // rows) is the file's, and what was read still tells.
        let _ = (&mut reader).take(512).read_to_end(&mut head);
        reader.failed(src.file.as_str())?;
        Ok(crate::x12::is_x12(&head))
    }

    /// Where each row of the replayed error file `src` came from, read again (`None`: it
    /// changed since it was listed).
    fn replay_origins(&mut self, src: &Source, listed: &Entry) -> Step<Option<Arc<Origins>>> {
        let Some(mut reader) = self.open_input(src, listed)? else { return Ok(None) };
        // A content fault (a row in conflict) ends the map where it is: the rows before it are
        // the ones the file was judged by. The drop's own failure is an outage.
        let _ = io::copy(&mut reader, &mut io::sink());
        reader.failed(&src.file)?;
        Ok(Some(reader.replay().map(|r| r.origins.clone()).unwrap_or_default()))
    }

    /// The earlier file this one is a copy of, under the account's `skip_identical`: by default
    /// the same name (drop path) with the same content, i.e. the same file sent again. A file
    /// queued again by an operator (`reprocess:` mark, see the console) is never a copy: it is
    /// there to be processed again.
    fn sent_again(&self, path: &str, parsed: &Parsed, id: i64) -> Step<Option<FileRow>> {
        use crate::config::SkipIdentical as S;
        let acct = &self.acct.name;
        if parsed.requeued {
            return Ok(None);
        }
        let sha256 = parsed.sha256.as_str();
        Ok(match self.acct.skip_identical {
            S::SameName => self.ledger.processed_with_hash_and_path(acct, sha256, path, id)?,
            S::AnyName => self.ledger.processed_with_hash(acct, sha256, id)?,
            S::Never => None,
        })
    }

    /// Steps 2–5: result file, error file, move. Each recognises its own earlier completion.
    pub(super) fn finish_outputs(&mut self, inbox: Inbox, src: &Source, mut row: FileRow, listed: &Entry) -> Step<()> {
        let path = src.path.as_str();
        let name = src.name.clone();
        let outcomes = self.ledger.outcomes(row.id)?;
        let f = self.acct.folders.clone();
        // An X12 file (its ISA13 marked when it was applied): its 997s first, each once.
        let isa13 = match self.acct.x12 {
            Some(_) => self.ledger.get_mark(&x12_file_mark(&self.acct.name, row.id))?,
            None => None,
        };
        if let Some(isa13) = &isa13 {
            let done = x12_acks_mark(&self.acct.name, row.id);
            if row.step < FileStep::ErrorsWritten && self.ledger.get_mark(&done)?.is_none() {
                let Some(groups) = self.x12_groups(inbox, src, listed)? else { return Ok(()) };
                self.write_acks(row.id, isa13, &groups)?;
                self.ledger.set_mark(&done, "1")?;
            }
        }
        if row.step < FileStep::ResultWritten {
            let target = match &row.result_path {
                Some(p) => p.clone(),
                None => {
                    let wanted = format!("{name}.result.csv{}", self.results_suffix());
                    let p = format!("{}/{}", f.results, self.unique_name_on_drop(&f.results, &wanted)?);
                    self.ledger.set_step(row.id, FileStep::Applied, Some(&p), None)?;
                    p
                }
            };
            let origins = match self.ledger.get_mark(&replay_mark(&self.acct.name, row.id))? {
                Some(_) => match self.replay_origins(src, listed)? {
                    Some(o) => Some(o),
                    None => return Ok(()),
                },
                None => None,
            };
            let built = (|| -> io::Result<std::fs::File> {
                let mut tmp = tempfile::tempfile()?;
                let mut w = match origins {
                    Some(o) => ResultWriter::replay(io::BufWriter::new(&mut tmp), o)?,
                    None => ResultWriter::new(io::BufWriter::new(&mut tmp))?,
                };
                for o in &outcomes {
                    w.write(&ResultRow {
                        line: o.line,
                        key: o.key.clone(),
                        outcome: crate::reconcile::outcome_from(&o.outcome),
                        remote_id: o.remote_id.clone(),
                        message: o.message.clone(),
                    })?;
                }
                w.finish()?.flush()?;
                tmp.rewind()?;
                Ok(tmp)
            })();
            let tmp = built.map_err(|e| Stop::local(format!("the temporary result file of {path}"), e))?;
            let mut tmp = self.seal_result(tmp, path)?;
            match self.drop.write_atomic(&target, &mut tmp) {
                Ok(()) => {}
                // The name was recorded before writing: an existing file is our own, written
                // atomically before a crash.
                Err(e) if e.kind == DropErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            self.ledger.set_step(row.id, FileStep::ResultWritten, Some(&target), None)?;
            row.step = FileStep::ResultWritten;
            row.result_path = Some(target);
        }
        let any_rejected = outcomes.iter().any(|o| o.outcome == "rejected");
        if row.step < FileStep::ErrorsWritten {
            if any_rejected {
                let target = match &row.errors_path {
                    Some(p) => p.clone(),
                    None => {
                        let existing: HashSet<String> =
                            self.drop.list(&f.errors)?.into_iter().map(|x| x.name).collect();
                        let wanted = format!("{name}.errors.csv{}", self.results_suffix());
                        let p = format!("{}/{}", f.errors, unique_name_in(&existing, &wanted));
                        self.ledger.set_step(row.id, FileStep::ResultWritten, None, Some(&p))?;
                        p
                    }
                };
                let wrapper_fault = row.reject_file
                    && outcomes.iter().any(|o| {
                        let too_large = src.is_wrapped() && o.code == formats::ErrorCode::FileTooLarge.as_str();
                        o.line == 0 && (too_large || super::content::is_wrapper_code(&o.code))
                    });
                let rendered = if wrapper_fault || src.member.is_none() && crate::wrap::peel(&name).zip {
                    // Nothing readable to quote (a wrong key, a corrupt wrapper), or an archive,
                    // whose rows are its members: the rows say it all.
                    Some(
                        file_level_errors(&outcomes)
                            .map_err(|e| Stop::local(format!("the error file of {path}"), e))?,
                    )
                } else {
                    let x12 = isa13.is_some() || inbox == Inbox::Edi || self.looks_like_x12(src, listed)?;
                    match inbox.kind() {
                        Some(kind) if !x12 => self.render_errors(kind, src, listed, &outcomes)?,
                        _ => self.render_x12_errors(inbox, src, listed, &outcomes)?,
                    }
                };
                let Some(tmp) = rendered else {
                    // Left in inbound/ at this step; the next run looks at what is there then.
                    return Ok(());
                };
                let mut tmp = self.seal_result(tmp, path)?;
                match self.drop.write_atomic(&target, &mut tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind == DropErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
                self.ledger.set_step(row.id, FileStep::ErrorsWritten, None, Some(&target))?;
                row.errors_path = Some(target);
            } else {
                self.ledger.set_step(row.id, FileStep::ErrorsWritten, None, None)?;
            }
            row.step = FileStep::ErrorsWritten;
        }
        if src.member.is_some() {
            // Its archive moves, and finishes it, once every member is this far.
            return Ok(());
        }
        let name = listed.name.clone();
        let state = if row.reject_file { FileState::Rejected } else { FileState::Archived };
        let target = match &row.final_path {
            Some(p) => p.clone(),
            None => {
                let dir = if row.reject_file {
                    f.rejected.clone()
                } else {
                    format!("{}/{}", f.archive, chrono::Utc::now().format("%Y-%m-%d"))
                };
                let p = format!("{dir}/{}", self.unique_name_on_drop(&dir, &name)?);
                self.ledger.plan_final_path(row.id, &p)?;
                p
            }
        };
        self.before_move(row.id, &target)?;
        match self.drop.rename_no_replace(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind == DropErrorKind::NotFound && self.drop.stat(&target)?.is_some() => {}
            Err(e) => return Err(e.into()),
        }
        self.after_move(row.id, &target)?;
        self.ledger.finish_file(row.id, state, &target)?;
        self.ledger.forget_observation(&self.acct.name, path)?;
        let rejected = outcomes.iter().filter(|o| o.outcome == "rejected").count() as u64;
        super::note_file_done();
        tracing::info!(
            account = %self.acct.name, file = %path, kind = inbox.name(), state = if row.reject_file { "rejected" } else { "archived" },
            accepted = outcomes.len() as u64 - rejected, rejected, "file processed"
        );
        self.report.files.push(FileSummary {
            path: path.to_string(),
            kind: inbox.name().to_string(),
            state: if row.reject_file { "rejected" } else { "archived" }.into(),
            accepted: outcomes.len() as u64 - rejected,
            rejected: if row.reject_file { 0 } else { rejected },
            result: row.result_path.clone(),
            errors: row.errors_path.clone(),
            message: row.message.clone().unwrap_or_default(),
        });
        Ok(())
    }

    /// `.pgp` when result and error files go out encrypted (`pgp_encrypt_results`).
    fn results_suffix(&self) -> &'static str {
        if self.acct.pgp.as_ref().is_some_and(|p| p.encrypt_results) {
            ".pgp"
        } else {
            ""
        }
    }

    /// A result or error file as it goes on the drop: encrypted to the partner (and signed)
    /// under `pgp_encrypt_results`, into a temporary file of its own; else as it is.
    fn seal_result(&self, mut plain: std::fs::File, path: &str) -> Step<std::fs::File> {
        let Some(pgp) = self.acct.pgp.as_ref().filter(|p| p.encrypt_results) else { return Ok(plain) };
        let sealed = (|| -> io::Result<std::fs::File> {
            let mut out = tempfile::tempfile()?;
            {
                let mut w = io::BufWriter::new(&mut out);
                super::content::encrypt_for(pgp, &mut plain, &mut w).map_err(io::Error::other)?;
                w.flush()?;
            }
            out.rewind()?;
            Ok(out)
        })();
        sealed.map_err(|e| Stop::local(format!("encrypting the result of {path}"), e))
    }

    /// Rebuild the error report from the original file and the stored outcomes: streaming, and
    /// the same after a crash as before it.
    /// The original is opened as the listed file (no link followed, same identity), or not at
    /// all: `None`.
    /// The most values any rejected row has, so the error file's header names every value of a
    /// ragged row (`extra_1`, …) before the first row is written. A pass of its own: the header
    /// comes first and the file is streamed; only files with rejections pay for it. `None` when
    /// the file changed since it was listed.
    fn widest_rejected_row(
        &mut self,
        kind: Kind,
        src: &Source,
        listed: &Entry,
        opts: &formats::ParseOptions,
        rejected_by_line: &HashMap<u64, &StoredRecord>,
    ) -> Step<Option<usize>> {
        let path = src.file.as_str();
        let Some(mut reader) = self.open_input(src, listed)? else { return Ok(None) };
        let mut widest = 0;
        if let Ok(units) = formats::parse(kind, &mut reader, opts) {
            for u in units {
                let Ok(u) = u else { break };
                let first = u.rows.first().map(|r| r.line).unwrap_or(0);
                if u.result.is_err() || rejected_by_line.contains_key(&first) {
                    widest = u.rows.iter().map(|r| r.fields.len()).fold(widest, usize::max);
                }
            }
        }
        reader.failed(path)?;
        Ok(Some(widest))
    }

    fn render_errors(
        &mut self,
        kind: Kind,
        src: &Source,
        listed: &Entry,
        outcomes: &[StoredRecord],
    ) -> Step<Option<std::fs::File>> {
        let path = src.file.as_str();
        let opts = self.parse_opts(kind, &src.name);
        let rejected_by_line: HashMap<u64, &StoredRecord> =
            outcomes.iter().filter(|o| o.outcome == "rejected").map(|o| (o.line, o)).collect();
        let Some(widest) = self.widest_rejected_row(kind, src, listed, &opts, &rejected_by_line)? else {
            tracing::warn!(account = %self.acct.name, file = %path, "error file not written: the file changed since it was listed");
            return Ok(None);
        };
        let Some(mut reader) = self.open_input(src, listed)? else {
            return Ok(None);
        };
        let origins = reader.replay().map(|r| r.origins.clone());
        let built = write_error_file(kind, &mut reader, &opts, widest, &rejected_by_line, origins, &src.path);
        reader.failed(path)?;
        built.map(Some).map_err(|e| Stop::local(format!("the temporary error file of {path}"), e))
    }
}

/// The error file of `reader`'s rows (see `render_errors`), in an anonymous temporary file.
fn write_error_file(
    kind: Kind,
    reader: impl Read,
    opts: &formats::ParseOptions,
    widest: usize,
    rejected_by_line: &HashMap<u64, &StoredRecord>,
    origins: Option<Arc<Origins>>,
    path: &str,
) -> io::Result<std::fs::File> {
    let mut tmp = tempfile::tempfile()?;
    {
        let mut buf = io::BufWriter::new(&mut tmp);
        let writer = |buf, header: &[String]| match &origins {
            Some(o) => ErrorWriter::replay(buf, header, opts.delimiter, o.clone()),
            None => ErrorWriter::of_file(buf, header, opts.delimiter, path),
        };
        match formats::parse(kind, reader, opts) {
            Err(r) => {
                let mut w = writer(&mut buf, &[])?;
                w.write_file_error(r.line, r.column.as_deref().unwrap_or(""), r.code.as_str(), &r.message)?;
                w.finish()?;
            }
            Ok(units) => {
                let header = units.header().to_vec();
                let mut w = writer(&mut buf, &formats::error_file_header(&header, widest))?;
                for u in units {
                    let u = match u {
                        Ok(u) => u,
                        Err(r) => {
                            w.write_file_error(r.line, r.column.as_deref().unwrap_or(""), r.code.as_str(), &r.message)?;
                            break;
                        }
                    };
                    match &u.result {
                        Err(errs) => {
                            for e in errs {
                                let row = u.rows.iter().find(|r| r.line == e.line).or(u.rows.first());
                                if let Some(row) = row {
                                    w.write(row, e.line, &e.column, e.code.as_str(), &e.message)?;
                                }
                            }
                        }
                        Ok(_) => {
                            let line = u.rows.first().map(|r| r.line).unwrap_or(0);
                            if let Some(o) = rejected_by_line.get(&line) {
                                let code = if o.code.is_empty() { "rejected" } else { o.code.as_str() };
                                for row in &u.rows {
                                    w.write(row, row.line, "", code, &o.message)?;
                                }
                            }
                        }
                    }
                }
                // Rejections with no row of their own (e.g. a whole snapshot refused, or a
                // file-level limit) still belong in the report.
                if let Some(o) = rejected_by_line.get(&0) {
                    w.write_file_error(None, "", if o.code.is_empty() { "rejected" } else { &o.code }, &o.message)?;
                }
                w.finish()?;
            }
        }
        buf.flush()?;
    }
    tmp.rewind()?;
    Ok(tmp)
}

/// An error file of file-level rows only (line, column, code, message of each rejected
/// outcome): for a file whose content cannot be quoted, and for an archive (a row per member).
fn file_level_errors(outcomes: &[StoredRecord]) -> io::Result<std::fs::File> {
    let mut tmp = tempfile::tempfile()?;
    {
        let mut buf = io::BufWriter::new(&mut tmp);
        let mut w = ErrorWriter::new(&mut buf, &[])?;
        for o in outcomes.iter().filter(|o| o.outcome == "rejected") {
            let code = if o.code.is_empty() { "rejected" } else { o.code.as_str() };
            let line = (o.line > 0).then_some(o.line);
            w.write_file_error(line, &o.key, code, &o.message)?;
        }
        w.finish()?;
        buf.flush()?;
    }
    tmp.rewind()?;
    Ok(tmp)
}

/// Decisions as the ledger stores them.
pub(super) fn stored(decisions: &[Decision]) -> Vec<StoredRecord> {
    decisions
        .iter()
        .map(|d| StoredRecord {
            line: d.line,
            key: d.key.clone(),
            outcome: d.outcome.as_str().to_string(),
            remote_id: d.remote_id.clone(),
            code: d.code.to_string(),
            message: d.message.clone(),
        })
        .collect()
}

/// Read the rest of a stream, for its hash. A failure is kept where it happened (the drop's by
/// the input, a wrapper's as the file's rejection) and looked at after the pass, not here.
fn drain(r: &mut impl Read) {
    let _ = io::copy(r, &mut io::sink());
}

fn record_line(r: &Record) -> u64 {
    match r {
        Record::Inventory(i) => i.line,
        Record::Order(o) => o.line,
        Record::Shipment(s) => s.line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_never_reuse_an_existing_one() {
        let existing: HashSet<String> = ["a.csv".to_string(), "a~2.csv".to_string()].into();
        assert_eq!(unique_name_in(&existing, "a.csv"), "a~3.csv");
        assert_eq!(unique_name_in(&existing, "b.csv"), "b.csv");
        assert_eq!(unique_name_in(&["noext".to_string()].into(), "noext"), "noext~2");
    }

    #[test]
    fn derived_names_never_exceed_255_bytes() {
        let long = format!("{}.csv.result.csv", "é".repeat(120)); // 255 bytes
        let existing: HashSet<String> = [long.clone()].into();
        let n = unique_name_in(&existing, &long);
        assert!(n.len() <= MAX_NAME_BYTES && n.ends_with("~2.csv") && n != long, "{n}");
        assert_eq!(unique_name_in(&HashSet::new(), &"x".repeat(300)).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn safe_names_are_short_visible_and_harmless() {
        assert_eq!(safe_name("a..b/c\\d\u{7}.csv"), "a_b_c_d_.csv");
        assert_eq!(safe_name(".git"), "_git");
        assert_eq!(safe_name(""), "unnamed");
        let long = safe_name(&"€".repeat(100));
        assert!(long.len() <= 200 && long.chars().all(|c| c == '€'), "{}", long.len());
    }
}
