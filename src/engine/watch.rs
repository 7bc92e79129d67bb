//! The `watch` daemon: cycles run continuously, one thread per account.
//!
//! - Inbound-only cycles run every `poll_interval` (±10 % jitter, so many bridges polling one
//!   server spread out), sooner when a local drop reports a filesystem event, and at the moment
//!   a file seen unsettled could settle. Downloads (orders, cancels) run on their own
//!   `download_interval`: an idle drop costs no Stitch calls beyond those.
//! - One watcher per drop: a lease `drop:<account>` in the ledger, renewed every ttl/3 (also
//!   while a cycle runs, together with the cycle's claim on the account, which `run` workers
//!   respect). A second watcher waits and takes over once the lease lapses, e.g. after the
//!   first was killed with SIGKILL.
//! - Shutdown ([`Watcher::stop`], on SIGINT/SIGTERM) cancels the watcher's token, which every
//!   loop and the cycle in progress hold: the cycle finishes the file in hand, then the loop
//!   releases the lease. Every step of a cycle is crash-safe, so stopping between files leaves
//!   nothing half done.

use super::{account, AccountReport, Parts};
use crate::config::{Account, Config, DropLocation};
use crate::ledger::Ledger;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Filesystem events coalesce for this long before a cycle starts (uploads come in bursts).
const EVENT_DEBOUNCE: Duration = Duration::from_millis(150);

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Accounts to watch; empty means all.
    pub accounts: Vec<String>,
    /// How long a lease lasts without renewal; a killed watcher's drop is free after this.
    pub lease_ttl: Duration,
    /// Replaces every account's `poll_seconds` (tests and diagnostics want sub-second polls).
    pub poll_override: Option<Duration>,
}

enum Wake {
    /// Something changed in a watched inbound folder.
    Files,
    Stop,
}

/// Running account loops.
pub struct Watcher {
    wakers: Vec<Sender<Wake>>,
    threads: Vec<JoinHandle<()>>,
    /// Cancelled by [`Watcher::stop`]; the loops and their cycles hold clones.
    stop: CancellationToken,
}

impl Watcher {
    /// Ask every loop to stop after the file in hand.
    pub fn stop(&self) {
        self.stop.cancel();
        for w in &self.wakers {
            let _ = w.send(Wake::Stop);
        }
    }

    /// Wait for every loop to end (they end only after [`Watcher::stop`]).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// True once every loop has ended.
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }
}

/// Start one loop per selected account.
pub fn start(config: &Config, opts: &WatchOptions) -> std::io::Result<Watcher> {
    // The same id as this process's account claims: host/pid/tag (see `Worker`).
    let holder = super::Worker::this_process(opts.lease_ttl).id;
    let mut w = Watcher { wakers: Vec::new(), threads: Vec::new(), stop: CancellationToken::new() };
    for acct in config.accounts.iter().filter(|a| opts.accounts.is_empty() || opts.accounts.contains(&a.name)) {
        let (tx, rx) = mpsc::channel();
        let mut acct = acct.clone();
        if let Some(p) = opts.poll_override {
            acct.poll_interval = p;
        }
        let lease = format!("drop:{}", acct.name);
        let lp = AccountLoop {
            acct,
            ledger_path: config.ledger.clone(),
            worker: super::Worker::this_process(opts.lease_ttl),
            lease,
            holder: holder.clone(),
            ttl: opts.lease_ttl,
            tx: tx.clone(),
            rx,
            stop: w.stop.clone(),
        };
        let name = lp.acct.name.clone();
        w.threads.push(std::thread::Builder::new().name(format!("watch-{name}")).spawn(move || lp.run())?);
        w.wakers.push(tx);
    }
    Ok(w)
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..1.1))
}

struct AccountLoop {
    acct: Account,
    ledger_path: crate::ledger::LedgerLocation,
    worker: super::Worker,
    lease: String,
    holder: String,
    ttl: Duration,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    stop: CancellationToken,
}

/// How often a waiting watcher looks at a lease held by a process on this machine, whose death
/// frees it at once (one cheap SQLite upsert per look).
const LOCAL_HOLDER_RETRY: Duration = Duration::from_millis(250);

/// What waiting ended with.
enum Waited {
    Timeout,
    Files,
    Stop,
}

impl AccountLoop {
    fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(50))
    }

    fn wait(&self, d: Duration) -> Waited {
        match self.rx.recv_timeout(d) {
            Ok(Wake::Files) => Waited::Files,
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => Waited::Stop,
            Err(RecvTimeoutError::Timeout) => Waited::Timeout,
        }
    }

    fn run(self) {
        let name = self.acct.name.clone();
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(account = %name, "cannot start a runtime: {e}; not watching this account");
                return;
            }
        };
        let mut ledger = loop {
            match Ledger::open_at(&self.ledger_path) {
                Ok(l) => break l,
                Err(e) => {
                    tracing::error!(account = %name, "{e}; retrying");
                    if let Waited::Stop = self.wait(self.acct.poll_interval) {
                        return;
                    }
                }
            }
        };
        // Kept alive for the loop's lifetime; dropping it ends the watch.
        let mut fs_watch: Option<notify::RecommendedWatcher> = None;
        'lease: loop {
            if !self.acquire(&ledger) {
                return;
            }
            // Before the first cycle, so a file arriving while it runs still wakes us.
            if fs_watch.is_none() {
                fs_watch = self.watch_folders();
            }
            tracing::info!(account = %name, holder = %self.holder, "watching the drop");
            let mut next_inbound = Instant::now();
            let mut next_download = Instant::now();
            let mut next_renew = Instant::now() + self.renew_every();
            loop {
                if self.stop.is_cancelled() {
                    break 'lease;
                }
                let now = Instant::now();
                if now >= next_inbound || now >= next_download {
                    // Renew before starting: a lapsed lease may already be someone else's.
                    match ledger.acquire_lease(&self.lease, &self.holder, self.ttl) {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(account = %name, "lost the drop's lease (this process was paused too long?); waiting to take it back");
                            continue 'lease;
                        }
                        Err(e) => {
                            tracing::warn!(account = %name, "cannot renew the lease: {e}");
                            next_inbound = now + jitter(self.acct.poll_interval);
                            continue;
                        }
                    }
                    let download = now >= next_download;
                    let parts = Parts { inbound: true, download };
                    let (report, l) = self.cycle_renewing(&rt, ledger, parts);
                    ledger = l;
                    let done = Instant::now();
                    next_renew = done + self.renew_every();
                    next_inbound = done + jitter(self.acct.poll_interval);
                    if let Some(due) = settle_instant(&report) {
                        next_inbound = next_inbound.min(due);
                    }
                    if download {
                        next_download = done + jitter(self.acct.download_interval);
                    }
                    log_cycle(&report, parts);
                    if fs_watch.is_none() {
                        fs_watch = self.watch_folders();
                    }
                    continue;
                }
                let until = next_inbound.min(next_download).min(next_renew);
                match self.wait(until.saturating_duration_since(now)) {
                    Waited::Stop => break 'lease,
                    Waited::Files => {
                        next_inbound = next_inbound.min(Instant::now() + EVENT_DEBOUNCE);
                    }
                    Waited::Timeout => {}
                }
                if Instant::now() >= next_renew {
                    next_renew = Instant::now() + self.renew_every();
                    match ledger.acquire_lease(&self.lease, &self.holder, self.ttl) {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(account = %name, "lost the drop's lease; waiting to take it back");
                            continue 'lease;
                        }
                        Err(e) => tracing::warn!(account = %name, "cannot renew the lease: {e}"),
                    }
                }
            }
        }
        drop(fs_watch);
        match ledger.release_lease(&self.lease, &self.holder) {
            Ok(()) => tracing::info!(account = %name, "stopped; lease released"),
            Err(e) => {
                tracing::warn!(account = %name, "stopped; could not release the lease (it lapses by itself): {e}")
            }
        }
    }

    /// Wait until the lease is ours. False if a stop was requested meanwhile.
    fn acquire(&self, ledger: &Ledger) -> bool {
        let name = &self.acct.name;
        let mut told = false;
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            let mut retry = self.renew_every();
            match ledger.acquire_lease(&self.lease, &self.holder, self.ttl) {
                Ok(true) => return true,
                Ok(false) => {
                    let other = ledger.lease_holder(&self.lease).ok().flatten().map(|(h, _)| h).unwrap_or_default();
                    // A holder on this machine is taken over the moment it dies: look often.
                    if ledger.dies_visibly(&other) {
                        retry = LOCAL_HOLDER_RETRY.min(self.renew_every());
                    }
                    if !told {
                        tracing::info!(
                            account = %name, holder = %other,
                            "another watcher holds this drop's lease; waiting for it to stop or for its lease to lapse"
                        );
                        told = true;
                    }
                }
                Err(e) => tracing::warn!(account = %name, "cannot take the lease: {e}"),
            }
            if let Waited::Stop = self.wait(retry) {
                return false;
            }
        }
    }

    /// Run one cycle while a helper thread keeps the lease and the account's claim fresh (a
    /// cycle can outlast the ttl).
    fn cycle_renewing(&self, rt: &tokio::runtime::Runtime, ledger: Ledger, parts: Parts) -> (AccountReport, Ledger) {
        let name = &self.acct.name;
        if let Ok(Some(h)) = ledger.halted(name) {
            tracing::warn!(account = %name, code = %h.code, since = %h.at, "account halted; skipped (run `stitch-bridge resume {name}` once fixed)");
            let mut r = AccountReport::new(name);
            r.halted = Some(h.reason);
            return (r, ledger);
        }
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let every = self.renew_every();
        let (lease, holder, ttl) = (self.lease.clone(), self.holder.clone(), self.ttl);
        let (account, worker) = (name.clone(), self.worker.clone());
        let renewer = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(every) {
                if let Err(e) = ledger.acquire_lease(&lease, &holder, ttl) {
                    tracing::warn!("cannot renew the lease {lease}: {e}");
                }
                // The cycle's claim on the account too, or a `run` worker takes the account once
                // the claim's ttl has passed. False only before the claim or after its release
                // (or when another worker holds it and this cycle is skipping the account).
                if let Err(e) = ledger.renew_account(&account, &worker.id, worker.lease_ttl) {
                    tracing::warn!(account = %account, "cannot renew the claim on the account: {e}");
                }
            }
            ledger
        });
        let report = rt.block_on(account::cycle(&self.acct, &self.ledger_path, parts, &self.worker, &self.stop));
        let _ = done_tx.send(());
        let ledger = match renewer.join() {
            Ok(l) => l,
            Err(_) => Ledger::open_at(&self.ledger_path).expect("ledger reopened after a renewer panic"),
        };
        (report, ledger)
    }

    /// Local drops: wake on changes in the inbound folders (the poll stays as a fallback for
    /// filesystems without events, e.g. network mounts).
    fn watch_folders(&self) -> Option<notify::RecommendedWatcher> {
        use notify::{EventKind, RecursiveMode, Watcher as _};
        let DropLocation::Local(root) = &self.acct.drop else {
            return None;
        };
        let tx = self.tx.clone();
        let handler = move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            // Our own listing and reading open files (Access); moving a file out is a rename
            // *from*. Neither means new work.
            let relevant = match ev.kind {
                EventKind::Create(_) => true,
                EventKind::Modify(notify::event::ModifyKind::Name(notify::event::RenameMode::From)) => false,
                EventKind::Modify(_) => true,
                _ => false,
            };
            if relevant && !ev.paths.iter().all(|p| is_ignored(p)) {
                let _ = tx.send(Wake::Files);
            }
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(account = %self.acct.name, "no filesystem events ({e}); polling every {:?}", self.acct.poll_interval);
                return None;
            }
        };
        let f = &self.acct.folders;
        let mut dirs: Vec<&str> = vec![&f.inbound_inventory, &f.inbound_orders, &f.inbound_shipments];
        if self.acct.x12.is_some() {
            dirs.push(&f.inbound_edi);
        }
        dirs.sort();
        dirs.dedup();
        if !root.is_dir() {
            // The cycle reports the missing drop; try again after it.
            return None;
        }
        for d in &dirs {
            let dir = root.join(d);
            let made = std::fs::create_dir_all(&dir);
            if let Err(e) = made.and_then(|()| w.watch(&dir, RecursiveMode::Recursive).map_err(std::io::Error::other)) {
                tracing::warn!(account = %self.acct.name, "cannot watch {d} ({e}); polling every {:?}", self.acct.poll_interval);
            }
        }
        Some(w)
    }
}

fn is_ignored(p: &Path) -> bool {
    p.file_name().map(|n| crate::drop::is_ignored_name(&n.to_string_lossy())).unwrap_or(false)
}

/// The settle deadline of the report as an `Instant` (plus a little slack for clock rounding).
fn settle_instant(r: &AccountReport) -> Option<Instant> {
    let due = r.settle_due_ms?;
    let now = super::settle::millis(SystemTime::now());
    let wait = Duration::from_millis(due.saturating_sub(now).max(0) as u64 + 50);
    Some(Instant::now() + wait)
}

fn log_cycle(r: &AccountReport, parts: Parts) {
    let a = &r.account;
    for p in &r.fatal {
        tracing::error!(account = %a, "{p}");
    }
    if !r.files.is_empty() || r.orders_sent > 0 || r.cancels_sent > 0 {
        tracing::info!(
            account = %a, files = r.files.len(), orders_sent = r.orders_sent, cancels_sent = r.cancels_sent,
            download = parts.download, requests = r.requests, "cycle done"
        );
    } else {
        tracing::debug!(account = %a, download = parts.download, requests = r.requests, "cycle done, nothing to do");
    }
}
