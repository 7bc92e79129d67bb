//! The imperative shell: one cycle per account moves files from the drop through the pure core
//! (`formats`, `reconcile`) to Stitch and back, recording every step in the ledger.
//!
//! Each account runs on its own thread with its own runtime, ledger connection, drop session and
//! HTTP client, so one account's halt, bad files or slow server never stops or delays another.

pub mod account;
pub mod alert;
pub mod apply;
mod archive;
pub mod attention;
mod content;
pub(crate) use content::Replayed;
pub(crate) use content::Spooled as ZipSpool;
pub mod download;
mod fanout;
pub mod halt;
pub mod inbound;
mod marks;
mod open;
pub mod settle;
pub mod watch;
mod x12;
mod x12_read;

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
    /// A problem only a person can fix (host key, credentials, drop folder, redirect): the
    /// "needs attention" state, kept in the ledger until a cycle gets past it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<attention::Attention>,
    /// Not cycled by this worker because another live worker holds the account (not an error).
    pub skipped: Option<String>,
    pub requests: u64,
    pub write_requests: u64,
    /// Earliest moment (ms since the epoch) a file seen but not yet settled could be taken,
    /// so `watch` can look again then instead of a whole poll interval later. Internal: the
    /// JSON carries the relative [`Self::settle_due_seconds`].
    #[serde(skip)]
    pub settle_due_ms: Option<i64>,
    /// Seconds from the end of the cycle until the first waiting file can be taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_due_seconds: Option<u64>,
    /// Files seen but not yet settled, as the ledger's settle observations have them.
    pub waiting: Vec<WaitingFile>,
}

/// A file in `inbound/` whose settle time is still running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WaitingFile {
    pub path: String,
    /// Seconds until it is taken, if it stays unchanged (0: at the next cycle).
    pub settle_due_seconds: u64,
}

/// The waiting files of `account` at `now_ms`, from the ledger's observations.
pub fn waiting_files(
    ledger: &crate::ledger::Ledger,
    account: &str,
    settle: std::time::Duration,
    now_ms: i64,
) -> crate::ledger::Result<Vec<WaitingFile>> {
    Ok(ledger
        .waiting_files(account)?
        .into_iter()
        .map(|w| WaitingFile {
            settle_due_seconds: settle::seconds_until(settle::due_ms(w.mtime_ms, w.since_ms, settle), now_ms),
            path: w.path,
        })
        .collect())
}

impl AccountReport {
    pub fn new(account: &str) -> Self {
        AccountReport { account: account.to_string(), ..Default::default() }
    }

    pub fn rejected_records(&self) -> u64 {
        self.files.iter().map(|f| f.rejected).sum::<u64>()
            + self.files.iter().filter(|f| f.state == "rejected").count() as u64
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
    /// An account needs a person (see `engine::attention`).
    pub const ATTENTION: i32 = 5;
}

impl RunReport {
    /// The most serious condition wins: set-up problems, then a halt, then an account that
    /// needs attention, then work left pending, then rejected rows.
    pub fn exit_code(&self) -> i32 {
        let a = &self.accounts;
        if a.iter().any(|r| !r.fatal.is_empty()) {
            exit::USAGE
        } else if a.iter().any(|r| r.halted.is_some()) {
            exit::HALTED
        } else if a.iter().any(|r| r.attention.is_some()) {
            exit::ATTENTION
        } else if a.iter().any(|r| !r.pending.is_empty()) {
            exit::PENDING
        } else if a.iter().any(|r| r.rejected_records() > 0) {
            exit::REJECTED
        } else {
            exit::OK
        }
    }
}

/// One processing worker: its identity in account claims and how long a claim lasts unrenewed.
/// Several workers (processes, or threads in tests and benches) share accounts through one
/// ledger; each account is cycled by at most one of them at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub id: String,
    pub lease_ttl: std::time::Duration,
}

impl Worker {
    /// This process. The id names host and pid for operators, plus a random tag so a restarted
    /// process that reuses a pid is a new worker and does not inherit a dead one's claims.
    pub fn this_process(lease_ttl: std::time::Duration) -> Worker {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let id = ID.get_or_init(|| {
            format!("{}/{}/{:08x}", crate::ledger::this_host(), std::process::id(), rand::random::<u32>())
        });
        Worker { id: id.clone(), lease_ttl }
    }
}

/// Run one cycle for the named accounts (all when `only` is empty) as this process's worker.
pub fn run_cycle(config: &Config, only: &[String], parts: Parts) -> RunReport {
    run_cycle_as(config, only, parts, &Worker::this_process(config.lease_ttl))
}

/// Run one cycle as `worker`: accounts on at most `config.max_connections` threads, each with its
/// own runtime and ledger connection; accounts another live worker holds are reported skipped.
/// While the cycle runs, a heartbeat renews this worker's claims every third of their ttl, so a
/// long cycle keeps its accounts and a killed one loses them within one ttl.
pub fn run_cycle_as(config: &Config, only: &[String], parts: Parts, worker: &Worker) -> RunReport {
    use std::sync::{Arc, Mutex};
    let accounts: Vec<_> =
        config.accounts.iter().filter(|a| only.is_empty() || only.contains(&a.name)).cloned().collect();
    let n = accounts.len();
    if n == 0 {
        return RunReport::default();
    }
    let slots = config.max_connections.unwrap_or(n).clamp(1, n);
    // Workers start at different accounts, so they spread over the accounts instead of queuing
    // behind each other's claims in the same order.
    let start = rand::random::<u32>() as usize % n;
    let queue: Arc<Mutex<std::collections::VecDeque<(usize, crate::config::Account)>>> =
        Arc::new(Mutex::new(accounts.into_iter().enumerate().cycle().skip(start).take(n).collect()));
    let results: Arc<Mutex<Vec<Option<AccountReport>>>> = Arc::new(Mutex::new(vec![None; n]));
    let (stop_heartbeat, heartbeat) = start_heartbeat(config.ledger.clone(), worker.clone());
    // A `run` cycle is never asked to stop early (a signal ends the process; every step is
    // recorded before it is done).
    let never = tokio_util::sync::CancellationToken::new();
    let threads: Vec<_> = (0..slots)
        .filter_map(|i| {
            let (queue, results, ledger, worker, never) =
                (queue.clone(), results.clone(), config.ledger.clone(), worker.clone(), never.clone());
            let spawned = std::thread::Builder::new().name(format!("accounts-{i}")).spawn(move || loop {
                let Some((idx, acct)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { break };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt.block_on(account::cycle(&acct, &ledger, parts, &worker, &never)),
                        Err(e) => {
                            let mut r = AccountReport::new(&acct.name);
                            r.fatal.push(format!("cannot start runtime: {e}"));
                            r
                        }
                    }
                }))
                .unwrap_or_else(|_| {
                    let mut r = AccountReport::new(&acct.name);
                    r.fatal.push(
                        "internal error: the account's cycle panicked; nothing after the last recorded step was done"
                            .into(),
                    );
                    r
                });
                results.lock().unwrap_or_else(|e| e.into_inner())[idx] = Some(r);
            });
            match spawned {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!("cannot start an account thread: {e}");
                    None
                }
            }
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    drop(stop_heartbeat);
    if let Some(h) = heartbeat {
        let _ = h.join();
    }
    let names: Vec<String> =
        config.accounts.iter().filter(|a| only.is_empty() || only.contains(&a.name)).map(|a| a.name.clone()).collect();
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let accounts = results
        .into_iter()
        .zip(names)
        .map(|(r, name)| {
            r.unwrap_or_else(|| {
                let mut r = AccountReport::new(&name);
                r.fatal.push("cannot start a thread for this account".into());
                r
            })
        })
        .collect();
    RunReport { accounts }
}

/// The heartbeat thread; it stops when the returned sender is dropped.
fn start_heartbeat(
    location: crate::ledger::LedgerLocation,
    worker: Worker,
) -> (std::sync::mpsc::Sender<()>, Option<std::thread::JoinHandle<()>>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let every = (worker.lease_ttl / 3).max(std::time::Duration::from_millis(100));
    let h = std::thread::Builder::new().name("lease-heartbeat".into()).spawn(move || {
        let mut ledger = None;
        // A timer, not synchronisation: wake every `every` until the cycle ends.
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            if ledger.is_none() {
                ledger = crate::ledger::Ledger::open_at(&location)
                    .map_err(|e| tracing::warn!("lease heartbeat cannot open the ledger: {e}"))
                    .ok();
            }
            if let Some(l) = &ledger {
                if let Err(e) = l.renew_leases(&worker.id, worker.lease_ttl) {
                    tracing::warn!("lease heartbeat: {e}");
                    ledger = None;
                }
            }
        }
    });
    (tx, h.ok())
}
