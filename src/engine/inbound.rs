//! Inbound files: list, wait for them to settle, then take each through the recorded steps
//! `Taken → Applied → ResultWritten → ErrorsWritten → Moved`.
//!
//! Why a crash at each point is safe (every step is redone or recognised as done):
//! 1. Before `Applied`: nothing on the drop changed; the file is still in `inbound/`. Remote
//!    writes already made are in the outbox, so re-applying reuses their outcomes (`apply.rs`).
//! 2. `Applied`: outcomes are in the ledger. The result file's name is recorded *before* it is
//!    written, and it is written atomically; finding it already there means we wrote it.
//! 3. `ResultWritten`: the error file is rebuilt from the original (still in `inbound/`) and the
//!    stored outcomes, under a name likewise recorded first.
//! 4. `ErrorsWritten`: the move target is recorded first; after a crash, "source gone and
//!    target present" means the move happened.
//! 5. `Moved`: finished. A file is therefore always in exactly one of `inbound/` (work left),
//!    `archive/` or `rejected/`, with its result file once it has left `inbound/`.

use super::account::{AccountCtx, Step, Stop};
use super::settle;
use super::FileSummary;
use crate::drop::{check_name, is_ignored_name, Entry};
use crate::formats::{self, Kind, Record, Unit};
use crate::ledger::{FileRow, FileState, FileStep, StoredRecord};
use crate::reconcile::{Decision, Outcome};
use crate::report::{ErrorWriter, ResultRow, ResultWriter};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};

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

/// What one pass over a file yields.
struct Parsed {
    sha256: String,
    bytes: u64,
    accepted: Vec<Record>,
    /// Parse rejections, one per unit.
    rejected: Vec<Decision>,
    file_rejection: Option<formats::FileRejection>,
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
            cols.iter().filter_map(|&i| row.fields.get(i)).map(|s| s.trim()).find(|s| !s.is_empty()).unwrap_or("").to_string()
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
    let msg = errs.iter().map(|e| format!("line {} {}: {}", e.line, e.column, e.message)).collect::<Vec<_>>().join("; ");
    Decision::rejected(line, first.map(|e| e.code.as_str()).unwrap_or("invalid"), key, msg)
}

fn unique_name_in(existing: &HashSet<String>, name: &str) -> String {
    if !existing.contains(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (2..).map(|n| format!("{stem}~{n}{ext}")).find(|c| !existing.contains(c)).expect("unbounded")
}

fn key_of(r: &Record) -> String {
    match r {
        Record::Inventory(i) => i.sku.clone(),
        Record::Order(o) => o.order_ref.clone(),
        Record::Shipment(s) => format!(
            "{}/{}",
            s.fulfillment_id.as_deref().or(s.order_ref.as_deref()).unwrap_or(""),
            s.tracking_number
        ),
    }
}

impl AccountCtx<'_> {
    fn parse_opts(&self, kind: Kind, name: &str) -> formats::ParseOptions {
        let mut o = self.acct.parse.clone();
        o.inventory_delta = kind == Kind::Inventory && (o.inventory_delta || formats::is_delta_name(name));
        o
    }

    pub async fn inbound(&mut self, kind: Kind) -> Step<()> {
        let dir = self.acct.folders.inbound(kind).to_string();
        let mut entries = self.drop.list(&dir)?;
        entries.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        let names: HashSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        self.recover_vanished(kind, &dir, &names)?;
        let markers = self.acct.marker_suffixes.clone();
        let now_ms = settle::millis(std::time::SystemTime::now());
        for e in entries {
            if !e.is_file || is_ignored_name(&e.name) {
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
            if let Err(why) = check_name(&e.name) {
                self.refuse_name(&dir, &e, why)?;
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
            if super::watch::stopping() {
                return Ok(());
            }
            // Past the cycle's deadline no file is started; the rest waits for the next run.
            self.client.check_deadline()?;
            self.process_file(kind, &path, &e).await?;
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
    fn recover_vanished(&mut self, kind: Kind, dir: &str, present: &HashSet<String>) -> Step<()> {
        for f in self.ledger.unfinished_files(&self.acct.name)? {
            if f.kind != kind.as_str() || !f.path.starts_with(dir) {
                continue;
            }
            let name = f.path.rsplit('/').next().unwrap_or("");
            if present.contains(name) {
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

    /// A hostile or unusable name: move it aside under a safe name, with a result saying why.
    fn refuse_name(&mut self, dir: &str, e: &Entry, why: &str) -> Step<()> {
        let safe: String = e
            .name
            .chars()
            .map(|c| if c.is_control() || c == '/' || c == '\\' { '_' } else { c })
            .collect::<String>()
            .replace("..", "_");
        let safe: String = safe.chars().take(200).collect();
        tracing::warn!(account = %self.acct.name, name = ?e.name, "refused file name: {why}");
        let rejected_dir = self.acct.folders.rejected.clone();
        let existing: HashSet<String> = self.drop.list(&rejected_dir)?.into_iter().map(|x| x.name).collect();
        let target = format!("{rejected_dir}/{}", unique_name_in(&existing, &safe));
        let moved = self.drop.rename_no_replace(&format!("{dir}/{}", e.name), &target);
        let results_dir = self.acct.folders.results.clone();
        let existing: HashSet<String> = self.drop.list(&results_dir)?.into_iter().map(|x| x.name).collect();
        let rname = unique_name_in(&existing, &format!("{safe}.result.csv"));
        let mut w = ResultWriter::new(Vec::new())?;
        w.write(&ResultRow {
            line: 0,
            key: String::new(),
            outcome: Outcome::Rejected,
            remote_id: String::new(),
            message: format!("file name refused ({why}); rename the file and upload it again"),
        })?;
        let bytes = w.finish()?;
        if moved.is_ok() {
            self.drop.write_atomic(&format!("{results_dir}/{rname}"), &mut bytes.as_slice())?;
        }
        self.report.files.push(FileSummary {
            path: format!("{dir}/{safe}"),
            kind: "unknown".into(),
            state: if moved.is_ok() { "rejected".into() } else { "skipped".into() },
            message: format!("file name refused: {why}"),
            ..Default::default()
        });
        Ok(())
    }

    fn read_and_parse(&mut self, kind: Kind, path: &str, size: u64, name: &str) -> Step<Parsed> {
        let opts = self.parse_opts(kind, name);
        let reader = self.drop.open_read(path)?;
        let mut h = Hashing { inner: reader, hasher: Sha256::new(), bytes: 0 };
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut file_rejection = None;
        if size > opts.max_file_bytes {
            file_rejection = Some(formats::FileRejection {
                code: formats::ErrorCode::FileTooLarge,
                line: None,
                column: None,
                message: format!("file is {size} bytes; the limit is {} bytes", opts.max_file_bytes),
            });
            io::copy(&mut h, &mut io::sink())?;
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
            // Hash the whole content even if parsing stopped early.
            io::copy(&mut h, &mut io::sink())?;
        }
        if file_rejection.is_some() {
            accepted.clear();
            rejected.clear();
        }
        Ok(Parsed { sha256: hex::encode(h.hasher.finalize()), bytes: h.bytes, accepted, rejected, file_rejection })
    }

    async fn process_file(&mut self, kind: Kind, path: &str, e: &Entry) -> Step<()> {
        let acct = self.acct.name.clone();
        let mut row = self.ledger.take_file(&acct, kind.as_str(), path, e.size, settle::millis(e.mtime))?;
        if row.step < FileStep::Applied {
            let parsed = self.read_and_parse(kind, path, e.size, &e.name)?;
            self.ledger.set_hash(row.id, &parsed.sha256, parsed.bytes)?;
            let (decisions, dup, reject_file, message) = if let Some(r) = &parsed.file_rejection {
                let d = Decision::rejected(r.line.unwrap_or(0), r.code.as_str(), "", r.message.clone());
                (vec![d], None, true, Some(format!("file rejected: {}", r.message)))
            } else if let Some(earlier) = self.ledger.processed_with_hash(&acct, &parsed.sha256, row.id)? {
                let msg = format!(
                    "identical to {} (processed {}); not processed again",
                    earlier.path.rsplit('/').next().unwrap_or(&earlier.path),
                    earlier.updated_at
                );
                let mut ds: Vec<Decision> = parsed
                    .accepted
                    .iter()
                    .map(|r| Decision::new(record_line(r), key_of(r), Outcome::Skipped, "", &msg))
                    .collect();
                ds.extend(parsed.rejected.iter().map(|d| Decision { outcome: Outcome::Skipped, message: msg.clone(), ..d.clone() }));
                ds.sort_by_key(|d| d.line);
                (ds, Some(earlier.id), false, Some(msg))
            } else {
                let mut ds = parsed.rejected.clone();
                let delta = self.parse_opts(kind, &e.name).inventory_delta;
                ds.extend(self.apply(kind, &parsed.sha256, parsed.accepted, delta).await?);
                ds.sort_by_key(|d| d.line);
                (ds, None, false, None)
            };
            let stored: Vec<StoredRecord> = decisions
                .iter()
                .map(|d| StoredRecord {
                    line: d.line,
                    key: d.key.clone(),
                    outcome: d.outcome.as_str().to_string(),
                    remote_id: d.remote_id.clone(),
                    code: d.code.to_string(),
                    message: d.message.clone(),
                })
                .collect();
            self.ledger.store_outcomes(row.id, &stored, dup, reject_file, message.as_deref())?;
            row = self.ledger.file(row.id)?.ok_or_else(|| Stop::Fatal("ledger row vanished".into()))?;
        }
        self.finish_outputs(kind, path, row)
    }

    /// Steps 2–5: result file, error file, move. Each recognises its own earlier completion.
    fn finish_outputs(&mut self, kind: Kind, path: &str, mut row: FileRow) -> Step<()> {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let outcomes = self.ledger.outcomes(row.id)?;
        let f = self.acct.folders.clone();
        if row.step < FileStep::ResultWritten {
            let target = match &row.result_path {
                Some(p) => p.clone(),
                None => {
                    let existing: HashSet<String> = self.drop.list(&f.results)?.into_iter().map(|x| x.name).collect();
                    let p = format!("{}/{}", f.results, unique_name_in(&existing, &format!("{name}.result.csv")));
                    self.ledger.set_step(row.id, FileStep::Applied, Some(&p), None)?;
                    p
                }
            };
            let mut tmp = tempfile::tempfile()?;
            {
                let mut w = ResultWriter::new(io::BufWriter::new(&mut tmp))?;
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
            }
            tmp.rewind()?;
            match self.drop.write_atomic(&target, &mut tmp) {
                Ok(()) => {}
                // The name was recorded before writing: an existing file is our own, written
                // atomically before a crash.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
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
                        let existing: HashSet<String> = self.drop.list(&f.errors)?.into_iter().map(|x| x.name).collect();
                        let p = format!("{}/{}", f.errors, unique_name_in(&existing, &format!("{name}.errors.csv")));
                        self.ledger.set_step(row.id, FileStep::ResultWritten, None, Some(&p))?;
                        p
                    }
                };
                let mut tmp = self.render_errors(kind, path, &name, &outcomes)?;
                match self.drop.write_atomic(&target, &mut tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
                self.ledger.set_step(row.id, FileStep::ErrorsWritten, None, Some(&target))?;
                row.errors_path = Some(target);
            } else {
                self.ledger.set_step(row.id, FileStep::ErrorsWritten, None, None)?;
            }
            row.step = FileStep::ErrorsWritten;
        }
        let state = if row.reject_file { FileState::Rejected } else { FileState::Archived };
        let target = match &row.final_path {
            Some(p) => p.clone(),
            None => {
                let dir = if row.reject_file {
                    f.rejected.clone()
                } else {
                    format!("{}/{}", f.archive, chrono::Utc::now().format("%Y-%m-%d"))
                };
                let existing: HashSet<String> = self.drop.list(&dir)?.into_iter().map(|x| x.name).collect();
                let p = format!("{dir}/{}", unique_name_in(&existing, &name));
                self.ledger.plan_final_path(row.id, &p)?;
                p
            }
        };
        match self.drop.rename_no_replace(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.drop.stat(&target)?.is_some() => {}
            Err(e) => return Err(e.into()),
        }
        self.ledger.finish_file(row.id, state, &target)?;
        self.ledger.forget_observation(&self.acct.name, path)?;
        let rejected = outcomes.iter().filter(|o| o.outcome == "rejected").count() as u64;
        super::note_file_done();
        tracing::info!(
            account = %self.acct.name, file = %path, kind = kind.as_str(), state = if row.reject_file { "rejected" } else { "archived" },
            accepted = outcomes.len() as u64 - rejected, rejected, "file processed"
        );
        self.report.files.push(FileSummary {
            path: path.to_string(),
            kind: kind.as_str().to_string(),
            state: if row.reject_file { "rejected" } else { "archived" }.into(),
            accepted: outcomes.len() as u64 - rejected,
            rejected: if row.reject_file { 0 } else { rejected },
            result: row.result_path.clone(),
            errors: row.errors_path.clone(),
            message: row.message.clone().unwrap_or_default(),
        });
        Ok(())
    }

    /// Rebuild the error report from the original file and the stored outcomes: streaming, and
    /// the same after a crash as before it.
    fn render_errors(&mut self, kind: Kind, path: &str, name: &str, outcomes: &[StoredRecord]) -> Step<std::fs::File> {
        let opts = self.parse_opts(kind, name);
        let rejected_by_line: HashMap<u64, &StoredRecord> =
            outcomes.iter().filter(|o| o.outcome == "rejected").map(|o| (o.line, o)).collect();
        let mut tmp = tempfile::tempfile()?;
        {
            let reader = self.drop.open_read(path)?;
            let mut buf = io::BufWriter::new(&mut tmp);
            match formats::parse(kind, reader, &opts) {
                Err(r) => {
                    let mut w = ErrorWriter::new(&mut buf, &[])?;
                    w.write_file_error(r.line, r.column.as_deref().unwrap_or(""), r.code.as_str(), &r.message)?;
                    w.finish()?;
                }
                Ok(units) => {
                    let header = units.header().to_vec();
                    let mut w = ErrorWriter::new(&mut buf, &header)?;
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
}
