//! Zip archives on the drop. Each member whose name ends `.csv`, `.edi` or `.x12` is a file of
//! its own in the ledger (`FOLDER/ARCHIVE.zip!MEMBER`, `!` being `wrap::archive::SEPARATOR`),
//! with its own result and error files (`ARCHIVE.zip!MEMBER.result.csv`); other members are
//! named in the archive's result file and skipped. The archive itself gets a result file with
//! a row per member and moves once, after its last member.
//!
//! Why a crash at each point is safe:
//! 1. A member's ledger row is remembered under the archive's row (a mark) right after it is
//!    taken, before anything of it is applied: a retry finds the same row and resumes its steps
//!    (the outbox makes re-applying reuse earlier outcomes), never takes it twice.
//! 2. A member stops at `ErrorsWritten`; the archive's outcomes (one per member) are stored only
//!    once every member is that far, so until then a retry walks the members again and skips
//!    the finished ones.
//! 3. The move: the archive's target is planned for the archive and every member first, then
//!    the rename, then the rows are finished. A crash after the rename finds the archive gone
//!    and its target present, for the archive and each member alike (`recover_vanished`).

use super::account::{AccountCtx, Step};
use super::content::Source;
use super::inbound::Inbox;
use crate::drop::Entry;
use crate::ledger::{FileStep, StoredRecord};
use crate::reconcile::{Decision, Outcome};

/// The member rows of archive row `archive_id`, comma-separated ids in member order.
fn members_mark(account: &str, archive_id: i64) -> String {
    format!("zip-members:{account}:{archive_id}")
}

/// The ledger row of member `index` of archive row `archive_id`.
fn member_mark(account: &str, archive_id: i64, index: usize) -> String {
    format!("zip-member:{account}:{archive_id}:{index}")
}

/// One row of the archive's result: what became of a member.
fn member_decision(line: u64, member: &str, outcomes: &[StoredRecord], rejected_whole: bool, result: &str) -> Decision {
    let count = |o: &str| outcomes.iter().filter(|r| r.outcome == o).count();
    let (created, updated, unchanged, rejected, skipped) =
        (count("created"), count("updated"), count("unchanged"), count("rejected"), count("skipped"));
    let counts = format!(
        "{} rows: {created} created, {updated} updated, {unchanged} unchanged, {rejected} rejected, {skipped} skipped; see {result}",
        outcomes.len()
    );
    if rejected_whole {
        let why = outcomes.iter().find(|o| o.outcome == "rejected").map(|o| o.message.as_str()).unwrap_or("");
        return Decision::rejected(line, "rejected", member, format!("member rejected: {why}; see {result}"));
    }
    let outcome = if created + updated > 0 {
        Outcome::Updated
    } else if unchanged > 0 {
        Outcome::Unchanged
    } else {
        Outcome::Skipped
    };
    Decision::new(line, member, outcome, "", counts)
}

impl AccountCtx<'_> {
    /// A zip on the drop: its members one by one, then the archive's own result and move.
    pub(super) async fn process_archive(&mut self, inbox: Inbox, src: &Source, e: &Entry) -> Step<()> {
        let acct = self.acct.name.clone();
        let mut row = self.take_source(inbox, src, e)?;
        if row.step < FileStep::Applied {
            let Some(listing) = self.zip_members(src, e)? else {
                self.ledger.forget_observation(&acct, &src.file)?;
                return Ok(());
            };
            let (decisions, reject_file, message) = match listing {
                Err(r) => {
                    let d = Decision::rejected(0, r.code.as_str(), "", r.message.clone());
                    (vec![d], true, Some(format!("file rejected: {}", r.message)))
                }
                Ok(members) => {
                    let mut ds = Vec::new();
                    let mut ids: Vec<String> = self.member_rows(row.id)?.iter().map(i64::to_string).collect();
                    let mut applied_any = false;
                    for m in &members {
                        let line = m.index as u64 + 1;
                        if !m.wanted {
                            let why = m.unreadable.clone().unwrap_or_else(|| "not a .csv, .edi or .x12 file".into());
                            ds.push(Decision::new(line, &m.name, Outcome::Skipped, "", format!("skipped: {why}")));
                            continue;
                        }
                        let display = m.display.clone();
                        let msrc = Source::member(src, m.index, &display);
                        let mark = member_mark(&acct, row.id, m.index);
                        let known = match self.ledger.get_mark(&mark)? {
                            Some(id) => match id.parse::<i64>() {
                                Ok(id) => self.ledger.file(id)?,
                                Err(_) => None,
                            },
                            None => None,
                        };
                        let mrow = match known {
                            Some(r) => r,
                            None => {
                                let r = self.take_source(inbox, &msrc, e)?;
                                ids.push(r.id.to_string());
                                self.ledger.set_marks(&[
                                    (mark, r.id.to_string()),
                                    (members_mark(&acct, row.id), ids.join(",")),
                                ])?;
                                r
                            }
                        };
                        if !ids.contains(&mrow.id.to_string()) {
                            ids.push(mrow.id.to_string());
                        }
                        let id = mrow.id;
                        if mrow.step < FileStep::ErrorsWritten {
                            self.process_row(inbox, &msrc, e, mrow).await?;
                        }
                        let mrow = self.reload(id, &msrc.path)?;
                        if mrow.step < FileStep::ErrorsWritten {
                            // The archive changed while a member was read: all of it waits.
                            return Ok(());
                        }
                        let outcomes = self.ledger.outcomes(id)?;
                        let result = mrow.result_path.clone().unwrap_or_default();
                        let d = member_decision(line, &m.name, &outcomes, mrow.reject_file, &result);
                        applied_any |= !mrow.reject_file;
                        ds.push(d);
                    }
                    let message =
                        (!applied_any).then(|| "file rejected: nothing in the archive was applied".to_string());
                    (ds, !applied_any, message)
                }
            };
            self.ledger.store_outcomes(
                row.id,
                &super::inbound::stored(&decisions),
                None,
                reject_file,
                message.as_deref(),
            )?;
            row = self.reload(row.id, &src.path)?;
        }
        let finished = self.finish_outputs(inbox, src, row, e);
        self.forget_zip();
        finished
    }

    /// The member rows of an archive row (none for any other file).
    fn member_rows(&self, archive_id: i64) -> Step<Vec<i64>> {
        let Some(ids) = self.ledger.get_mark(&members_mark(&self.acct.name, archive_id))? else {
            return Ok(Vec::new());
        };
        Ok(ids.split(',').filter_map(|i| i.parse().ok()).collect())
    }

    /// Before a file moves to `target`: an archive's members are planned to go with it.
    pub(super) fn before_move(&mut self, id: i64, target: &str) -> Step<()> {
        for m in self.member_rows(id)? {
            self.ledger.plan_final_path(m, target)?;
        }
        Ok(())
    }

    /// After a file moved to `target`: an archive's members are finished with it.
    pub(super) fn after_move(&mut self, id: i64, target: &str) -> Step<()> {
        for m in self.member_rows(id)? {
            let Some(f) = self.ledger.file(m)? else { continue };
            if f.state != crate::ledger::FileState::Processing {
                continue;
            }
            let state =
                if f.reject_file { crate::ledger::FileState::Rejected } else { crate::ledger::FileState::Archived };
            self.ledger.finish_file(m, state, target)?;
            self.ledger.forget_observation(&self.acct.name, &f.path)?;
            let outcomes = self.ledger.outcomes(m)?;
            let rejected = outcomes.iter().filter(|o| o.outcome == "rejected").count() as u64;
            self.report.files.push(super::FileSummary {
                path: f.path.clone(),
                kind: f.kind.clone(),
                state: if f.reject_file { "rejected" } else { "archived" }.into(),
                accepted: outcomes.len() as u64 - rejected,
                rejected: if f.reject_file { 0 } else { rejected },
                result: f.result_path.clone(),
                errors: f.errors_path.clone(),
                message: f.message.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}
