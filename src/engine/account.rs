//! One account's cycle: open its ledger, claim the account, open drop and client; refuse if halted; resolve writes a
//! crash left uncertain; take inbound files in the order inventory → orders → shipments; then
//! send new fulfillments and cancellations to the warehouse.

use super::{halt, AccountReport, Parts, Worker};
use crate::config::{Account, DropLocation, TokenSource};
use crate::drop::{local::LocalDrop, Drop};
use crate::formats::Kind;
use crate::ledger::{Ledger, LedgerError, LedgerLocation};
use crate::stitch::{ApiError, ClientOptions, HaltKind, StitchClient};

/// Why a cycle stopped early.
#[derive(Debug)]
pub enum Stop {
    /// 401/403: halt the account.
    Halt { kind: HaltKind, status: u16, message: String },
    /// Stitch or the drop is unavailable: the work stays for the next run.
    Pending(String),
    /// Needs an operator (ledger unusable, secrets missing).
    Fatal(String),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Halt { kind, status, message } => Stop::Halt { kind, status, message },
            other => Stop::Pending(other.to_string()),
        }
    }
}

impl From<LedgerError> for Stop {
    fn from(e: LedgerError) -> Self {
        Stop::Fatal(e.to_string())
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Pending(format!("drop: {e}"))
    }
}

pub type Step<T> = Result<T, Stop>;

/// Everything one account's cycle works with.
pub struct AccountCtx<'a> {
    pub acct: &'a Account,
    pub ledger: Ledger,
    pub drop: Box<dyn Drop>,
    pub client: StitchClient,
    pub report: AccountReport,
    /// Open fulfillments, fetched at most once per cycle.
    pub open_cache: Option<Vec<crate::stitch::wire::Fulfillment>>,
}

/// Read the Stitch token; never logged.
pub fn read_token(src: &TokenSource) -> Result<String, String> {
    match src {
        TokenSource::Env(var) => match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            Ok(_) => Err(format!("the Stitch token is expected in environment variable {var}, which is set but empty")),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("the Stitch token is expected in environment variable {var}, which is not valid UTF-8"))
            }
            Err(std::env::VarError::NotPresent) => {
                Err(format!("the Stitch token is expected in environment variable {var}, which is not set"))
            }
        },
        TokenSource::File(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            Ok(_) => Err(format!("token file {} is empty", p.display())),
            Err(e) => Err(format!("cannot read token file {}: {e}", p.display())),
        },
    }
}

/// Open the account's drop. sFTP connections verify the host key before anything else.
pub fn open_drop(acct: &Account) -> Result<Box<dyn Drop>, String> {
    match &acct.drop {
        DropLocation::Local(p) => {
            if !p.is_dir() {
                return Err(format!("drop folder {} does not exist or is not a folder", p.display()));
            }
            Ok(Box::new(LocalDrop::new(p)))
        }
        DropLocation::Sftp { .. } => crate::drop::open_sftp(acct),
    }
}

pub fn client_for(acct: &Account, token: &str) -> Result<StitchClient, ApiError> {
    let mut o = ClientOptions::new(&acct.stitch_url);
    o.timeout = acct.timeout;
    o.concurrency = acct.concurrency;
    o.requests_per_second = acct.requests_per_second;
    o.max_retries = acct.max_retries;
    o.backoff_base = acct.backoff;
    StitchClient::new(o, token)
}

/// One cycle of one account as `worker`: claim the account, run, release it. An account that
/// another live worker holds is skipped (reported, not an error); it is that worker's to finish.
pub async fn cycle(acct: &Account, location: &LedgerLocation, parts: Parts, worker: &Worker) -> AccountReport {
    let mut report = AccountReport::new(&acct.name);
    let ledger = match Ledger::open_at(location) {
        Ok(l) => l,
        Err(e) => {
            report.fatal.push(e.to_string());
            return report;
        }
    };
    match ledger.claim_account(&acct.name, &worker.id, worker.lease_ttl) {
        Ok(true) => {}
        Ok(false) => {
            let holder = ledger.account_claim(&acct.name).ok().flatten().map(|l| l.holder).unwrap_or_default();
            tracing::info!(account = %acct.name, holder = %holder, "skipped: another worker holds the account");
            report.skipped = Some(format!("another worker ({holder}) is processing this account"));
            return report;
        }
        Err(e) => {
            report.fatal.push(e.to_string());
            return report;
        }
    }
    let (report, ledger) = claimed(acct, ledger, parts, report).await;
    if let Err(e) = ledger.release_account(&acct.name, &worker.id) {
        // Harmless: the claim lapses after its ttl.
        tracing::warn!(account = %acct.name, "could not release the account's claim: {e}");
    }
    report
}

async fn claimed(acct: &Account, ledger: Ledger, parts: Parts, mut report: AccountReport) -> (AccountReport, Ledger) {
    let started = crate::ledger::now();
    let clock = std::time::Instant::now();
    match ledger.halted(&acct.name) {
        Ok(Some(h)) => {
            report.halted = Some(format!(
                "halted since {} ({}); fix the cause, then run `stitch-bridge resume {}`",
                h.at, h.code, acct.name
            ));
            return (report, ledger);
        }
        Ok(None) => {}
        Err(e) => {
            report.fatal.push(e.to_string());
            return (report, ledger);
        }
    }
    let token = match read_token(&acct.token) {
        Ok(t) => t,
        Err(e) => {
            report.fatal.push(e);
            return (report, ledger);
        }
    };
    let client = match client_for(acct, &token) {
        Ok(c) => c,
        Err(e) => {
            report.fatal.push(e.to_string());
            return (report, ledger);
        }
    };
    let drop = match open_drop(acct) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(account = %acct.name, "drop unavailable: {e}");
            report.pending.push(format!("drop unavailable: {e}"));
            let _ = ledger.record_cycle(&acct.name, &started, "pending", &e);
            return (report, ledger);
        }
    };
    let mut cx = AccountCtx { acct, ledger, drop, client, report, open_cache: None };
    let result = cx.run(parts).await;
    cx.report.requests = cx.client.stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    cx.report.write_requests = cx.client.stats.write_requests.load(std::sync::atomic::Ordering::Relaxed);
    let outcome = match result {
        Ok(()) => "ok".to_string(),
        Err(Stop::Halt { kind, status, message }) => {
            let text = halt::alert_text(&acct.name, kind, status, &message);
            tracing::error!(account = %acct.name, status, "account halted: {message}");
            if let Err(e) = cx.ledger.halt(&acct.name, halt::halt_code(kind), &text) {
                cx.report.fatal.push(e.to_string());
            }
            if let Err(e) = halt::write_alert(cx.drop.as_mut(), &acct.name, &text) {
                tracing::error!(account = %acct.name, "could not write the alert file: {e}");
            }
            cx.report.halted = Some(format!("Stitch answered {status}: {message}. See {} in the drop.", halt::alert_name(&acct.name)));
            super::alert::fire(&acct.alerts, &acct.name, "halted", &text).await;
            "halted".to_string()
        }
        Err(Stop::Pending(why)) => {
            tracing::warn!(account = %acct.name, "work left for the next run: {why}");
            cx.report.pending.push(why);
            "pending".to_string()
        }
        Err(Stop::Fatal(why)) => {
            tracing::error!(account = %acct.name, "{why}");
            cx.report.fatal.push(why);
            "fatal".to_string()
        }
    };
    for f in cx.report.files.iter().filter(|f| f.state == "rejected") {
        let text = format!("file {} was rejected: {}", f.path, f.message);
        super::alert::fire(&acct.alerts, &acct.name, "file_rejected", &text).await;
    }
    let summary = format!(
        "{} files, {} orders sent, {} cancels sent",
        cx.report.files.len(),
        cx.report.orders_sent,
        cx.report.cancels_sent
    );
    let _ = cx.ledger.record_cycle(&acct.name, &started, &outcome, &summary);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let oldest = cx.ledger.oldest_waiting_ms(&acct.name).ok().flatten().map(|ms| (now_ms - ms).max(0) as f64 / 1000.0);
    crate::metrics::record_cycle(&cx.report, clock.elapsed().as_secs_f64(), oldest);
    (cx.report, cx.ledger)
}

impl AccountCtx<'_> {
    async fn run(&mut self, parts: Parts) -> Step<()> {
        self.ensure_layout()?;
        self.sweep_temp_files();
        self.resolve_pending().await?;
        if parts.inbound {
            for kind in [Kind::Inventory, Kind::Orders, Kind::Shipments] {
                self.inbound(kind).await?;
            }
        }
        if parts.download && !super::watch::stopping() {
            self.download_orders().await?;
            self.download_cancels().await?;
        }
        Ok(())
    }

    fn ensure_layout(&mut self) -> Step<()> {
        let f = &self.acct.folders;
        for dir in [
            &f.inbound_orders,
            &f.inbound_inventory,
            &f.inbound_shipments,
            &f.outbound_orders,
            &f.outbound_cancellations,
            &f.results,
            &f.errors,
            &f.archive,
            &f.rejected,
        ] {
            self.drop.mkdir_all(dir)?;
        }
        Ok(())
    }

    /// Remove temp files a killed run left in the folders only the bridge writes. Safe: this
    /// worker holds the account's claim, so no other bridge process is writing there now, and
    /// the warehouse's own folders (`inbound/`) are never touched. Failures only cost a log line.
    fn sweep_temp_files(&mut self) {
        let f = &self.acct.folders;
        for dir in [&f.outbound_orders, &f.outbound_cancellations, &f.results, &f.errors] {
            let Ok(entries) = self.drop.list(dir) else { continue };
            for e in entries.iter().filter(|e| crate::drop::is_temp_of_ours(&e.name)) {
                let path = format!("{dir}/{}", e.name);
                match self.drop.remove(&path) {
                    Ok(()) => tracing::info!(account = %self.acct.name, file = %path, "removed a temp file left by an interrupted run"),
                    Err(err) => tracing::warn!(account = %self.acct.name, file = %path, "cannot remove a stale temp file: {err}"),
                }
            }
        }
    }

    pub async fn open_fulfillments(&mut self) -> Step<&[crate::stitch::wire::Fulfillment]> {
        if self.open_cache.is_none() {
            self.open_cache = Some(self.client.list_open_fulfillments().await?);
        }
        Ok(self.open_cache.as_deref().unwrap_or_default())
    }
}
