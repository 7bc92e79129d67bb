//! The imperative shell: one cycle per account moves files from the drop through the pure core
//! (`formats`, `reconcile`) to Stitch and back, recording every step in the ledger.
//!
//! Each account runs on its own thread with its own runtime, ledger connection, drop session and
//! HTTP client, so one account's halt, bad files or slow server never stops or delays another.

pub mod account;
pub mod alert;
pub mod apply;
pub mod download;
pub mod halt;
pub mod inbound;
pub mod settle;
pub mod watch;

use crate::config::Config;
use serde::Serialize;

/// Files finished by this process, for progress display on a terminal.
static FILES_DONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn files_done() -> u64 {
    FILES_DONE.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn note_file_done() {
    FILES_DONE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Which flows a cycle runs. `watch` runs downloads on their own interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub inbound: bool,
    pub download: bool,
}

impl Parts {
    pub const ALL: Parts = Parts { inbound: true, download: true };
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub kind: String,
    /// `archived`, `rejected`, `pending` (left for the next run) or `skipped`.
    pub state: String,
    pub accepted: u64,
    pub rejected: u64,
    pub result: Option<String>,
    pub errors: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountReport {
    pub account: String,
    pub files: Vec<FileSummary>,
    pub orders_sent: u64,
    pub cancels_sent: u64,
    /// Set when the account is halted (now or earlier).
    pub halted: Option<String>,
    /// Transient problems that left work for the next run.
    pub pending: Vec<String>,
    /// Problems of set-up (config, ledger, token) that need an operator.
    pub fatal: Vec<String>,
    pub requests: u64,
    pub write_requests: u64,
    /// Earliest moment (ms since the epoch) a file seen but not yet settled could be taken,
    /// so `watch` can look again then instead of a whole poll interval later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_due_ms: Option<i64>,
}

impl AccountReport {
    pub fn new(account: &str) -> Self {
        AccountReport { account: account.to_string(), ..Default::default() }
    }

    pub fn rejected_records(&self) -> u64 {
        self.files.iter().map(|f| f.rejected).sum::<u64>() + self.files.iter().filter(|f| f.state == "rejected").count() as u64
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub accounts: Vec<AccountReport>,
}

/// Exit codes of `run`: part of the CLI contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const REJECTED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const HALTED: i32 = 3;
    pub const PENDING: i32 = 4;
}

impl RunReport {
    /// The most serious condition wins: set-up problems, then a halt, then work left pending,
    /// then rejected rows.
    pub fn exit_code(&self) -> i32 {
        let a = &self.accounts;
        if a.iter().any(|r| !r.fatal.is_empty()) {
            exit::USAGE
        } else if a.iter().any(|r| r.halted.is_some()) {
            exit::HALTED
        } else if a.iter().any(|r| !r.pending.is_empty()) {
            exit::PENDING
        } else if a.iter().any(|r| r.rejected_records() > 0) {
            exit::REJECTED
        } else {
            exit::OK
        }
    }
}

/// Run one cycle for the named accounts (all when `only` is empty), each on its own thread.
pub fn run_cycle(config: &Config, only: &[String], parts: Parts) -> RunReport {
    let accounts: Vec<_> = config.accounts.iter().filter(|a| only.is_empty() || only.contains(&a.name)).cloned().collect();
    let ledger_path = config.ledger_path.clone();
    let handles: Vec<_> = accounts
        .into_iter()
        .map(|acct| {
            let ledger_path = ledger_path.clone();
            let name = acct.name.clone();
            let h = std::thread::Builder::new().name(format!("account-{name}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let mut r = AccountReport::new(&acct.name);
                        r.fatal.push(format!("cannot start runtime: {e}"));
                        return r;
                    }
                };
                rt.block_on(account::cycle(&acct, &ledger_path, parts))
            });
            (name, h)
        })
        .collect();
    let mut report = RunReport::default();
    for (name, h) in handles {
        match h {
            Ok(h) => match h.join() {
                Ok(r) => report.accounts.push(r),
                Err(_) => {
                    let mut r = AccountReport::new(&name);
                    r.fatal.push("internal error: the account's cycle panicked; nothing after the last recorded step was done".into());
                    report.accounts.push(r);
                }
            },
            Err(e) => {
                let mut r = AccountReport::new(&name);
                r.fatal.push(format!("cannot start thread: {e}"));
                report.accounts.push(r);
            }
        }
    }
    report
}
