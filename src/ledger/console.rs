//! The operator console's reads (`src/ui`) and its record of actions, written once for both
//! backends. Every list is paginated (LIMIT/OFFSET over an indexed order) and asks for one row
//! more than it shows, so a page knows whether a next one exists without counting 100,000 rows.

use super::db::{p, Row, RowResult, Val};
use super::files::{row as file_row, COLS};
use super::{now, FileRow, Ledger, Result, StoredRecord};

/// What `/files` filters by; `None` (or empty) means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFilter {
    pub account: Option<String>,
    pub kind: Option<String>,
    pub state: Option<StateFilter>,
    /// First seen on or after this day (`YYYY-MM-DD`, UTC).
    pub from: Option<String>,
    /// First seen on or before this day (`YYYY-MM-DD`, UTC).
    pub to: Option<String>,
    /// A substring of the file's path.
    pub q: Option<String>,
}

/// The outcome filter: a file's state, or "finished with rejected rows".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Processing,
    Archived,
    Rejected,
    WithErrors,
}

impl StateFilter {
    pub const ALL: [StateFilter; 4] =
        [StateFilter::Processing, StateFilter::Archived, StateFilter::Rejected, StateFilter::WithErrors];

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Processing => "processing",
            StateFilter::Archived => "archived",
            StateFilter::Rejected => "rejected",
            StateFilter::WithErrors => "errors",
        }
    }

    pub fn parse(s: &str) -> Option<StateFilter> {
        StateFilter::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// One page of a list: its rows and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    fn cut(mut rows: Vec<T>, per_page: usize) -> Page<T> {
        let more = rows.len() > per_page;
        rows.truncate(per_page);
        Page { rows, more }
    }
}

/// Files and result rows first seen on one day (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    pub day: String,
    pub files: i64,
    pub rows: i64,
}

/// A fulfillment sent to the warehouse as an order file, and its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRow {
    pub account: String,
    pub fulfillment_id: String,
    pub order_ref: String,
    pub file: String,
    pub sent_at: String,
    pub state: String,
    pub cancel_file: Option<String>,
    pub closed_at: Option<String>,
}

/// A cycle as recorded, for the alert history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRow {
    pub id: i64,
    pub account: String,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: String,
    pub summary: String,
}

/// A result row found by order reference, with its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecord {
    pub file_id: i64,
    pub account: String,
    pub path: String,
    pub record: StoredRecord,
}

/// One action taken through the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleAction {
    pub id: i64,
    pub at: String,
    pub who: String,
    pub account: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// One alert as it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub at: String,
    pub account: String,
    pub event: String,
    pub text: String,
}

/// `%`, `_` and `\` in a LIKE pattern taken literally (with `ESCAPE '\'`).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn offset(page: usize, per_page: usize) -> i64 {
    (page.saturating_sub(1).saturating_mul(per_page)).min(i64::MAX as usize) as i64
}

fn sent_row(r: &Row) -> RowResult<SentRow> {
    Ok(SentRow {
        account: r.text(0)?,
        fulfillment_id: r.text(1)?,
        order_ref: r.text(2)?,
        file: r.text(3)?,
        sent_at: r.text(4)?,
        state: r.text(5)?,
        cancel_file: r.opt_text(6)?,
        closed_at: r.opt_text(7)?,
    })
}

fn stored_record(r: &Row, at: usize) -> RowResult<StoredRecord> {
    Ok(StoredRecord {
        line: r.int(at)?.max(0) as u64,
        key: r.text(at + 1)?,
        outcome: r.text(at + 2)?,
        remote_id: r.text(at + 3)?,
        code: r.text(at + 4)?,
        message: r.text(at + 5)?,
    })
}

impl Ledger {
    /// `/files`: newest first, filtered; `page` counts from 1.
    pub fn console_files(&self, f: &FileFilter, page: usize, per_page: usize) -> Result<Page<FileRow>> {
        let mut sql = format!("SELECT {COLS} FROM files WHERE 1=1");
        let mut params: Vec<Val> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, v: Val| {
            params.push(v);
            sql.push_str(&clause.replace("?", &format!("?{}", params.len())));
        };
        let set = |o: &Option<String>| o.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(a) = set(&f.account) {
            bind(&mut sql, " AND account = ?", a.into());
        }
        if let Some(k) = set(&f.kind) {
            bind(&mut sql, " AND kind = ?", k.into());
        }
        match f.state {
            None => {}
            Some(StateFilter::WithErrors) => sql.push_str(" AND rejected > 0"),
            Some(s) => bind(&mut sql, " AND state = ?", s.as_str().into()),
        }
        if let Some(d) = set(&f.from) {
            bind(&mut sql, " AND first_seen >= ?", d.into());
        }
        if let Some(d) = set(&f.to) {
            // The whole day: every timestamp of that day sorts before the day + "U" (after "T").
            bind(&mut sql, " AND first_seen < ?", format!("{d}U").into());
        }
        if let Some(q) = set(&f.q) {
            bind(
                &mut sql,
                " AND LOWER(path) LIKE ? ESCAPE '\\'",
                format!("%{}%", like_literal(&q.to_lowercase())).into(),
            );
        }
        bind(&mut sql, " ORDER BY id DESC LIMIT ?", ((per_page + 1) as i64).into());
        bind(&mut sql, " OFFSET ?", offset(page, per_page).into());
        Ok(Page::cut(self.query(&sql, &params, file_row)?, per_page))
    }

    /// A file's result rows by line; `page` counts from 1.
    pub fn console_records(&self, file_id: i64, page: usize, per_page: usize) -> Result<Page<StoredRecord>> {
        let rows = self.query(
            "SELECT line, key, outcome, remote_id, code, message FROM records WHERE file_id = ?1
             ORDER BY line LIMIT ?2 OFFSET ?3",
            p![file_id, (per_page + 1) as i64, offset(page, per_page)],
            |r| stored_record(r, 0),
        )?;
        Ok(Page::cut(rows, per_page))
    }

    /// A file's rejected rows as the ledger has them (the error file's cells aside).
    pub fn console_rejected_records(&self, file_id: i64, limit: usize) -> Result<Vec<StoredRecord>> {
        self.query(
            "SELECT line, key, outcome, remote_id, code, message FROM records
             WHERE file_id = ?1 AND outcome = 'rejected' ORDER BY line LIMIT ?2",
            p![file_id, limit as i64],
            |r| stored_record(r, 0),
        )
    }

    /// Files and rows per day first seen since `since_day` (`YYYY-MM-DD`), oldest first.
    pub fn files_per_day(&self, account: &str, since_day: &str) -> Result<Vec<DayCount>> {
        self.query(
            "SELECT SUBSTR(first_seen, 1, 10), COUNT(*), CAST(COALESCE(SUM(accepted + rejected), 0) AS BIGINT)
             FROM files WHERE account = ?1 AND first_seen >= ?2 GROUP BY SUBSTR(first_seen, 1, 10) ORDER BY 1",
            p![account, since_day],
            |r| Ok(DayCount { day: r.text(0)?, files: r.int(1)?, rows: r.int(2)? }),
        )
    }

    /// Files first seen on or after `since` (RFC 3339 prefix).
    pub fn files_seen_since(&self, account: &str, since: &str) -> Result<i64> {
        Ok(self
            .query_opt("SELECT COUNT(*) FROM files WHERE account = ?1 AND first_seen >= ?2", p![account, since], |r| {
                r.int(0)
            })?
            .unwrap_or(0))
    }

    /// The oldest file taken but not finished (its `first_seen`), beside `oldest_waiting_ms`.
    pub fn oldest_unfinished(&self, account: &str) -> Result<Option<(String, String)>> {
        self.query_opt(
            "SELECT path, first_seen FROM files WHERE account = ?1 AND state = 'processing' ORDER BY id LIMIT 1",
            p![account],
            |r| Ok((r.text(0)?, r.text(1)?)),
        )
    }

    /// The path of the file in `inbound/` that has waited longest, with since when (ms).
    pub fn oldest_observation(&self, account: &str) -> Result<Option<(String, i64)>> {
        self.query_opt(
            "SELECT path, since_ms FROM observations WHERE account = ?1 ORDER BY since_ms LIMIT 1",
            p![account],
            |r| Ok((r.text(0)?, r.int(1)?)),
        )
    }

    /// Remote writes recorded and not done (pending or failed).
    pub fn count_open_intents(&self, account: &str) -> Result<i64> {
        Ok(self
            .query_opt("SELECT COUNT(*) FROM intents WHERE account = ?1 AND state <> 'done'", p![account], |r| {
                r.int(0)
            })?
            .unwrap_or(0))
    }

    /// Outbound X12 files with no acknowledgement (and not dismissed), however recent.
    pub fn count_x12_unacked(&self, account: &str) -> Result<i64> {
        Ok(self
            .query_opt(
                "SELECT COUNT(*) FROM x12_sent WHERE account = ?1 AND ack_status IS NULL AND dismissed_at IS NULL",
                p![account],
                |r| r.int(0),
            )?
            .unwrap_or(0))
    }

    /// `/orders`: fulfillments sent to the warehouse, newest first.
    pub fn console_sent(&self, account: Option<&str>, page: usize, per_page: usize) -> Result<Page<SentRow>> {
        let cols = "account, fulfillment_id, order_ref, file, sent_at, state, cancel_file, closed_at";
        let rows = match account.filter(|a| !a.is_empty()) {
            Some(a) => self.query(
                &format!(
                    "SELECT {cols} FROM sent_fulfillments WHERE account = ?1 ORDER BY sent_at DESC LIMIT ?2 OFFSET ?3"
                ),
                p![a, (per_page + 1) as i64, offset(page, per_page)],
                sent_row,
            )?,
            None => self.query(
                &format!("SELECT {cols} FROM sent_fulfillments ORDER BY sent_at DESC LIMIT ?1 OFFSET ?2"),
                p![(per_page + 1) as i64, offset(page, per_page)],
                sent_row,
            )?,
        };
        Ok(Page::cut(rows, per_page))
    }

    /// Fulfillments sent for one order reference, every account.
    pub fn sent_for_order(&self, order_ref: &str) -> Result<Vec<SentRow>> {
        self.query(
            "SELECT account, fulfillment_id, order_ref, file, sent_at, state, cancel_file, closed_at
             FROM sent_fulfillments WHERE order_ref = ?1 ORDER BY sent_at DESC LIMIT 200",
            p![order_ref],
            sent_row,
        )
    }

    /// Result rows naming an order reference: an order's key is its reference; a shipment's key
    /// joins fulfillment, order and tracking with U+001F.
    pub fn records_for_order(&self, order_ref: &str, limit: usize) -> Result<Vec<FoundRecord>> {
        let shipment = format!("%\u{1f}{}\u{1f}%", like_literal(order_ref));
        self.query(
            "SELECT r.file_id, f.account, f.path, r.line, r.key, r.outcome, r.remote_id, r.code, r.message
             FROM records r JOIN files f ON f.id = r.file_id
             WHERE r.key = ?1 OR r.key LIKE ?2 ESCAPE '\\' ORDER BY r.file_id DESC, r.line LIMIT ?3",
            p![order_ref, shipment, limit as i64],
            |r| {
                Ok(FoundRecord {
                    file_id: r.int(0)?,
                    account: r.text(1)?,
                    path: r.text(2)?,
                    record: stored_record(r, 3)?,
                })
            },
        )
    }

    /// Cycles that did not end `ok` (halts, attention, failures), newest first: the alert
    /// history as far as the ledger holds it.
    pub fn console_cycles(&self, account: Option<&str>, page: usize, per_page: usize) -> Result<Page<CycleRow>> {
        let cols = "id, account, started_at, finished_at, outcome, summary";
        let map = |r: &Row| {
            Ok(CycleRow {
                id: r.int(0)?,
                account: r.text(1)?,
                started_at: r.text(2)?,
                finished_at: r.text(3)?,
                outcome: r.text(4)?,
                summary: r.text(5)?,
            })
        };
        let rows = match account.filter(|a| !a.is_empty()) {
            Some(a) => self.query(
                &format!(
                    "SELECT {cols} FROM cycles WHERE account = ?1 AND outcome <> 'ok' ORDER BY id DESC LIMIT ?2 OFFSET ?3"
                ),
                p![a, (per_page + 1) as i64, offset(page, per_page)],
                map,
            )?,
            None => self.query(
                &format!("SELECT {cols} FROM cycles WHERE outcome <> 'ok' ORDER BY id DESC LIMIT ?1 OFFSET ?2"),
                p![(per_page + 1) as i64, offset(page, per_page)],
                map,
            )?,
        };
        Ok(Page::cut(rows, per_page))
    }

    /// Forget one mark (a reprocess mark whose file could not be written).
    pub fn delete_mark(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM marks WHERE key = ?1", p![key])?;
        Ok(())
    }

    /// Record one console action (who: the token's label).
    pub fn record_action(&self, who: &str, account: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        self.exec(
            "INSERT INTO console_actions(at, who, account, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            p![now(), who, account, action, target, detail],
        )?;
        Ok(())
    }

    /// Remember an alert (before its hooks run; see `engine::alert::fire`).
    pub fn record_alert(&self, account: &str, event: &str, text: &str) -> Result<()> {
        self.exec(
            "INSERT INTO alerts(at, account, event, text) VALUES (?1, ?2, ?3, ?4)",
            p![now(), account, event, text],
        )?;
        Ok(())
    }

    /// Alerts raised, newest first, of one account or all; one more than `per_page` when there
    /// is a next page.
    pub fn console_alerts(&self, account: Option<&str>, page: usize, per_page: usize) -> Result<Vec<AlertRow>> {
        let row = |r: &Row| Ok(AlertRow { at: r.text(0)?, account: r.text(1)?, event: r.text(2)?, text: r.text(3)? });
        let (limit, offset) = ((per_page + 1) as i64, (page.saturating_sub(1) * per_page) as i64);
        match account {
            Some(a) => self.query(
                "SELECT at, account, event, text FROM alerts WHERE account = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
                p![a, limit, offset],
                row,
            ),
            None => self.query(
                "SELECT at, account, event, text FROM alerts ORDER BY id DESC LIMIT ?1 OFFSET ?2",
                p![limit, offset],
                row,
            ),
        }
    }

    /// The latest console actions, newest first.
    pub fn console_actions(&self, limit: usize) -> Result<Vec<ConsoleAction>> {
        self.query(
            "SELECT id, at, who, account, action, target, detail FROM console_actions ORDER BY id DESC LIMIT ?1",
            p![limit as i64],
            |r| {
                Ok(ConsoleAction {
                    id: r.int(0)?,
                    at: r.text(1)?,
                    who: r.text(2)?,
                    account: r.text(3)?,
                    action: r.text(4)?,
                    target: r.text(5)?,
                    detail: r.text(6)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_filter_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        for i in 0..5 {
            let f = l.take_file("a", "orders", &format!("inbound/orders/o{i}_100%.csv"), 10, 0).unwrap();
            l.finish_file(f.id, crate::ledger::FileState::Archived, "archive/x").unwrap();
        }
        l.take_file("b", "inventory", "inbound/inventory/s.csv", 10, 0).unwrap();
        let all = l.console_files(&FileFilter::default(), 1, 4).unwrap();
        assert_eq!((all.rows.len(), all.more), (4, true));
        assert_eq!(all.rows[0].account, "b", "newest first");
        let second = l.console_files(&FileFilter::default(), 2, 4).unwrap();
        assert_eq!((second.rows.len(), second.more), (2, false));
        let f = FileFilter { account: Some("a".into()), q: Some("O3_100%".into()), ..Default::default() };
        let one = l.console_files(&f, 1, 10).unwrap();
        assert_eq!(one.rows.len(), 1);
        assert!(one.rows[0].path.contains("o3_"));
        let f = FileFilter { q: Some("_1000".into()), ..Default::default() };
        assert!(l.console_files(&f, 1, 10).unwrap().rows.is_empty(), "_ and % are literal");
        let f = FileFilter { state: Some(StateFilter::Processing), ..Default::default() };
        assert_eq!(l.console_files(&f, 1, 10).unwrap().rows.len(), 1);
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let f = FileFilter { from: Some(today.clone()), to: Some(today), ..Default::default() };
        assert_eq!(l.console_files(&f, 1, 10).unwrap().rows.len(), 6);
        let f = FileFilter { to: Some("2000-01-01".into()), ..Default::default() };
        assert!(l.console_files(&f, 1, 10).unwrap().rows.is_empty());
    }

    #[test]
    fn actions_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        l.record_action("ops", "a", "resume", "a", "was halted").unwrap();
        let got = l.console_actions(10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].who.as_str(), got[0].action.as_str()), ("ops", "resume"));
    }
}
