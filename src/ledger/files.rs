//! Files taken from the drop: their settle observations, their progress through the steps of
//! processing, and each record's outcome.
//!
//! Processing one file is a sequence of steps, each recorded here only after it is durable on
//! the drop or remotely: `Taken` → `Applied` (record outcomes stored) → `ResultWritten` →
//! `ErrorsWritten` → `Moved`. A crash between any two steps leaves a row whose `step` says
//! exactly what remains, and every step is safe to redo (see `engine::file`).

use super::db::{p, Dialect, Row, RowResult};
use super::{now, Ledger, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Processing,
    Archived,
    Rejected,
}

impl FileState {
    fn as_str(self) -> &'static str {
        match self {
            FileState::Processing => "processing",
            FileState::Archived => "archived",
            FileState::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> FileState {
        match s {
            "archived" => FileState::Archived,
            "rejected" => FileState::Rejected,
            _ => FileState::Processing,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileStep {
    Taken,
    Applied,
    ResultWritten,
    ErrorsWritten,
    Moved,
}

impl FileStep {
    fn as_str(self) -> &'static str {
        match self {
            FileStep::Taken => "taken",
            FileStep::Applied => "applied",
            FileStep::ResultWritten => "result_written",
            FileStep::ErrorsWritten => "errors_written",
            FileStep::Moved => "moved",
        }
    }
    fn parse(s: &str) -> FileStep {
        match s {
            "applied" => FileStep::Applied,
            "result_written" => FileStep::ResultWritten,
            "errors_written" => FileStep::ErrorsWritten,
            "moved" => FileStep::Moved,
            _ => FileStep::Taken,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRow {
    pub id: i64,
    pub account: String,
    pub kind: String,
    pub path: String,
    pub size: i64,
    pub mtime: i64,
    pub sha256: Option<String>,
    #[serde(serialize_with = "ser_state")]
    pub state: FileState,
    #[serde(serialize_with = "ser_step")]
    pub step: FileStep,
    pub duplicate_of: Option<i64>,
    pub result_path: Option<String>,
    pub errors_path: Option<String>,
    pub final_path: Option<String>,
    /// The whole file is unusable: it goes to `rejected/`, not `archive/`.
    pub reject_file: bool,
    pub accepted: i64,
    pub rejected: i64,
    pub message: Option<String>,
    pub first_seen: String,
    pub updated_at: String,
}

fn ser_state<S: serde::Serializer>(s: &FileState, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}
fn ser_step<S: serde::Serializer>(s: &FileStep, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// One record's outcome as stored, later rendered into the result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub line: u64,
    pub key: String,
    pub outcome: String,
    pub remote_id: String,
    /// Stable reason code for rejections (empty otherwise).
    pub code: String,
    pub message: String,
}

/// When a path's current size+mtime were first seen: the settle clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub since_ms: i64,
}

pub(super) const COLS: &str = "id, account, kind, path, size, mtime, sha256, state, step, duplicate_of, result_path, \
                    errors_path, final_path, reject_file, accepted, rejected, message, first_seen, updated_at";

pub(super) fn row(r: &Row) -> RowResult<FileRow> {
    Ok(FileRow {
        id: r.int(0)?,
        account: r.text(1)?,
        kind: r.text(2)?,
        path: r.text(3)?,
        size: r.int(4)?,
        mtime: r.int(5)?,
        sha256: r.opt_text(6)?,
        state: FileState::parse(&r.text(7)?),
        step: FileStep::parse(&r.text(8)?),
        duplicate_of: r.opt_int(9)?,
        result_path: r.opt_text(10)?,
        errors_path: r.opt_text(11)?,
        final_path: r.opt_text(12)?,
        reject_file: r.flag(13)?,
        accepted: r.int(14)?,
        rejected: r.int(15)?,
        message: r.opt_text(16)?,
        first_seen: r.text(17)?,
        updated_at: r.text(18)?,
    })
}

impl Ledger {
    /// Record this poll's view of a path; returns since when it has looked exactly like this.
    pub fn observe(&self, account: &str, path: &str, size: u64, mtime_ms: i64, now_ms: i64) -> Result<Observation> {
        let prev = self.query_opt(
            "SELECT size, mtime, since_ms FROM observations WHERE account=?1 AND path=?2",
            p![account, path],
            |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?)),
        )?;
        if let Some((s, m, since)) = prev {
            if s == size as i64 && m == mtime_ms {
                return Ok(Observation { since_ms: since });
            }
        }
        self.exec(
            "INSERT INTO observations(account, path, size, mtime, since_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(account, path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, since_ms=excluded.since_ms",
            p![account, path, size as i64, mtime_ms, now_ms],
        )?;
        Ok(Observation { since_ms: now_ms })
    }

    /// When the longest-waiting file still in `inbound/` was first seen as it is now.
    pub fn oldest_waiting_ms(&self, account: &str) -> Result<Option<i64>> {
        Ok(self
            .query_opt("SELECT MIN(since_ms) FROM observations WHERE account=?1", p![account], |r| r.opt_int(0))?
            .flatten())
    }

    pub fn forget_observation(&self, account: &str, path: &str) -> Result<()> {
        self.exec("DELETE FROM observations WHERE account=?1 AND path=?2", p![account, path])?;
        Ok(())
    }

    /// The unfinished row for this path, or a new one. Resuming the same row after a crash is
    /// what lets a half-processed file continue instead of starting over as a stranger.
    pub fn take_file(&self, account: &str, kind: &str, path: &str, size: u64, mtime_ms: i64) -> Result<FileRow> {
        if let Some(f) = self.unfinished_file(account, path)? {
            return Ok(f);
        }
        let t = now();
        let id = self.query_opt(
            "INSERT INTO files(account, kind, path, size, mtime, state, step, first_seen, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'processing', 'taken', ?6, ?6) RETURNING id",
            p![account, kind, path, size as i64, mtime_ms, &t],
            |r| r.int(0),
        )?;
        let id = id.ok_or_else(|| self.err(super::db::RowError::NoRow { statement: "INSERT … RETURNING" }.into()))?;
        self.file(id).map(|f| f.expect("row just inserted"))
    }

    pub fn unfinished_file(&self, account: &str, path: &str) -> Result<Option<FileRow>> {
        self.query_opt(
            &format!(
                "SELECT {COLS} FROM files WHERE account=?1 AND path=?2 AND state='processing' ORDER BY id DESC LIMIT 1"
            ),
            p![account, path],
            row,
        )
    }

    pub fn unfinished_files(&self, account: &str) -> Result<Vec<FileRow>> {
        self.query(
            &format!("SELECT {COLS} FROM files WHERE account=?1 AND state='processing' ORDER BY id"),
            p![account],
            row,
        )
    }

    pub fn file(&self, id: i64) -> Result<Option<FileRow>> {
        self.query_opt(&format!("SELECT {COLS} FROM files WHERE id=?1"), p![id], row)
    }

    pub fn set_hash(&self, id: i64, sha256: &str, size: u64) -> Result<()> {
        self.exec(
            "UPDATE files SET sha256=?2, size=?3, updated_at=?4 WHERE id=?1",
            p![id, sha256, size as i64, now()],
        )?;
        Ok(())
    }

    /// The drop path of the latest file of this account whose error file is one of `errors_paths`
    /// (the original of a replayed error file).
    pub fn file_with_errors_file(&self, account: &str, errors_paths: &[String]) -> Result<Option<String>> {
        for p in errors_paths {
            let found = self.query_opt(
                "SELECT path FROM files WHERE account=?1 AND errors_path=?2 ORDER BY id DESC LIMIT 1",
                p![account, p],
                |r| r.text(0),
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// An earlier, finished file of this account with the same content.
    /// The latest earlier file with this content and this drop path (the same file sent again).
    pub fn processed_with_hash_and_path(
        &self,
        account: &str,
        sha256: &str,
        path: &str,
        except: i64,
    ) -> Result<Option<FileRow>> {
        self.query_opt(
            &format!(
                "SELECT {COLS} FROM files WHERE account=?1 AND sha256=?2 AND id<>?3 AND path=?4 AND state='archived'
                 AND duplicate_of IS NULL ORDER BY id DESC LIMIT 1"
            ),
            p![account, sha256, except, path],
            row,
        )
    }

    pub fn processed_with_hash(&self, account: &str, sha256: &str, except: i64) -> Result<Option<FileRow>> {
        self.query_opt(
            &format!(
                "SELECT {COLS} FROM files WHERE account=?1 AND sha256=?2 AND id<>?3 AND state='archived'
                 AND duplicate_of IS NULL ORDER BY id LIMIT 1"
            ),
            p![account, sha256, except],
            row,
        )
    }

    /// Store every record's outcome and advance to `Applied`, in one transaction: either the
    /// whole file's outcomes are known or none are.
    pub fn store_outcomes(
        &mut self,
        id: i64,
        records: &[StoredRecord],
        duplicate_of: Option<i64>,
        reject_file: bool,
        message: Option<&str>,
    ) -> Result<()> {
        self.transaction(|tx| {
            tx.exec("DELETE FROM records WHERE file_id=?1", p![id])?;
            let (mut acc, mut rej) = (0i64, 0i64);
            for r in records {
                if r.outcome == "rejected" {
                    rej += 1
                } else {
                    acc += 1
                }
                tx.exec(
                    "INSERT INTO records(file_id, line, key, outcome, remote_id, code, message) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                    // Values are bounded by the reader; this keeps a stray huge one out too.
                    p![
                        id,
                        r.line as i64,
                        crate::report::excerpt(&r.key).as_ref(),
                        &r.outcome,
                        &r.remote_id,
                        &r.code,
                        crate::report::excerpt(&r.message).as_ref()
                    ],
                )?;
            }
            tx.exec(
                "UPDATE files SET step='applied', accepted=?2, rejected=?3, duplicate_of=?4, message=?5, updated_at=?6, reject_file=?7 WHERE id=?1",
                p![id, acc, rej, duplicate_of, message, now(), reject_file],
            )?;
            Ok(())
        })
    }

    pub fn outcomes(&self, id: i64) -> Result<Vec<StoredRecord>> {
        // Insertion order breaks ties between records on one line: SQLite's implicit rowid,
        // PostgreSQL's identity column.
        let tiebreak = match self.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "id",
        };
        self.query(
            &format!("SELECT line, key, outcome, remote_id, code, message FROM records WHERE file_id=?1 ORDER BY line, {tiebreak}"),
            p![id],
            |r| {
                Ok(StoredRecord {
                    line: r.int(0)? as u64,
                    key: r.text(1)?,
                    outcome: r.text(2)?,
                    remote_id: r.text(3)?,
                    code: r.text(4)?,
                    message: r.text(5)?,
                })
            },
        )
    }

    pub fn set_step(
        &self,
        id: i64,
        step: FileStep,
        result_path: Option<&str>,
        errors_path: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE files SET step=?2, result_path=COALESCE(?3, result_path), errors_path=COALESCE(?4, errors_path), updated_at=?5 WHERE id=?1",
            p![id, step.as_str(), result_path, errors_path, now()],
        )?;
        Ok(())
    }

    /// Record where the original will be moved *before* moving it, so a crash between the two
    /// is recognised (target present, source gone) instead of looking like a lost file.
    pub fn plan_final_path(&self, id: i64, final_path: &str) -> Result<()> {
        self.exec("UPDATE files SET final_path=?2, updated_at=?3 WHERE id=?1", p![id, final_path, now()])?;
        Ok(())
    }

    pub fn finish_file(&self, id: i64, state: FileState, final_path: &str) -> Result<()> {
        self.exec(
            "UPDATE files SET state=?2, step='moved', final_path=?3, updated_at=?4 WHERE id=?1",
            p![id, state.as_str(), final_path, now()],
        )?;
        Ok(())
    }

    pub fn recent_files(&self, account: Option<&str>, limit: usize) -> Result<Vec<FileRow>> {
        self.query(
            &format!(
                "SELECT {COLS} FROM files WHERE (CAST(?1 AS TEXT) IS NULL OR account=?1) ORDER BY id DESC LIMIT ?2"
            ),
            p![account, limit as i64],
            row,
        )
    }

    /// (archived, rejected) files finished since `since` (RFC 3339).
    pub fn file_counts_since(&self, account: &str, since: &str) -> Result<(i64, i64)> {
        let r = self.query_opt(
            "SELECT COALESCE(SUM(CASE WHEN state='archived' THEN 1 ELSE 0 END),0),
                    COALESCE(SUM(CASE WHEN state='rejected' THEN 1 ELSE 0 END),0)
             FROM files WHERE account=?1 AND updated_at >= ?2",
            p![account, since],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )?;
        Ok(r.unwrap_or((0, 0)))
    }
}
