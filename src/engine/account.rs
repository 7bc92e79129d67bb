//! One account's cycle: open its ledger, claim the account, open drop and client; refuse if halted; resolve writes a
//! crash left uncertain; take inbound files in the order inventory → orders → shipments; then
//! send new fulfillments and cancellations to the warehouse.

use super::{halt, AccountReport, Parts, Worker};
use crate::config::{Account, DropLocation, TokenSource};
use crate::drop::{local::LocalDrop, DropError, DropErrorKind, Transport};
use crate::formats::Kind;
use crate::ledger::{Ledger, LedgerError, LedgerLocation};
use crate::stitch::{ApiError, ClientOptions, Deadline, HaltKind, StitchClient};
use tokio_util::sync::CancellationToken;

/// What a stop means for the account: what the report says, the exit code, the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopClass {
    /// An outage (Stitch or the drop unreachable, a timeout, the cycle's deadline): the work
    /// stays for the next run (exit 4).
    Transient,
    /// Only a person can fix it (`engine/attention.rs`): exit 5, alert once. A permission
    /// error counts only when it persists (`Reason::strikes`).
    NeedsPerson(Reason),
    /// Stitch refused the credentials (401/403): the account is halted until `resume` (exit 3).
    Halt,
    /// The ledger or the set-up is unusable; an operator must act (exit 2).
    Fatal,
    /// The drop is served by another ledger (its marker names another id): nothing was done.
    /// Exit 2 like `Fatal`, until `stitch-bridge adopt ACCOUNT`.
    LedgerMismatch,
}

/// What stopped a cycle: the error itself, kept whole.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("drop: {0}")]
    Drop(#[from] DropError),
    /// A temporary file on this machine (result and error files are built in one first).
    #[error("{what}: {source}")]
    Local { what: String, source: std::io::Error },
    #[error(transparent)]
    ForeignLedger(#[from] ForeignLedger),
    /// The ledger lost the row of a file this cycle is working on.
    #[error("ledger row {id} of {path} vanished")]
    RowVanished { id: i64, path: String },
}

/// The drop's marker names another ledger than this one (see `ledger/marker.rs`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the drop {drop} is served by another ledger: its marker {marker} names {theirs}, but this ledger ({location}) is {ours}. \
     Nothing was done: a replaced or recreated ledger would send orders the other one already sent. \
     Point this account at the ledger that serves the drop, or, if this ledger is meant to take over, \
     run `stitch-bridge adopt {account}`",
    marker = crate::ledger::marker::MARKER_NAME,
    theirs = .theirs.as_ref().map_or_else(|| "no ledger id this version can read".to_string(), |t| format!("ledger {t}"))
)]
pub struct ForeignLedger {
    pub account: String,
    /// `Transport::describe` of the drop.
    pub drop: String,
    /// The id the marker names, `None` if it is not one of ours.
    pub theirs: Option<String>,
    pub ours: String,
    /// Where this ledger is.
    pub location: String,
}

/// Why a cycle stopped early: its class (what to do about it) and its source error (boxed:
/// every step's `Result` carries a `Stop`).
#[derive(Debug)]
pub struct Stop {
    account: Option<String>,
    class: StopClass,
    source: Box<StopError>,
}

impl Stop {
    pub fn new(source: impl Into<StopError>) -> Stop {
        let source = source.into();
        Stop { account: None, class: classify(&source), source: Box::new(source) }
    }

    /// A failure of a temporary file on this machine, `what` saying which.
    pub fn local(what: impl Into<String>, source: std::io::Error) -> Stop {
        Stop::new(StopError::Local { what: what.into(), source })
    }

    /// The same stop, told whose cycle it ended (its display then starts with the account).
    pub fn in_account(mut self, account: &str) -> Stop {
        if let StopError::Drop(e) = &mut *self.source {
            e.account.get_or_insert_with(|| account.to_string());
        }
        self.account.get_or_insert_with(|| account.to_string());
        self
    }

    pub fn class(&self) -> StopClass {
        self.class
    }

    pub fn source(&self) -> &StopError {
        &self.source
    }

    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// What the account's report says: the error, naming its path (the report names the account).
    pub fn message(&self) -> String {
        self.source.to_string()
    }

    /// Stitch's refusal, for a stop of class [`StopClass::Halt`].
    pub fn halt(&self) -> Option<(HaltKind, u16, &str)> {
        match &*self.source {
            StopError::Api(ApiError::Halt { kind, status, message }) => Some((*kind, *status, message.as_str())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.account {
            Some(a) => write!(f, "account {a}: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for Stop {}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::new(e)
    }
}

impl From<LedgerError> for Stop {
    fn from(e: LedgerError) -> Self {
        Stop::new(e)
    }
}

impl From<DropError> for Stop {
    fn from(e: DropError) -> Self {
        Stop::new(e)
    }
}

impl From<ForeignLedger> for Stop {
    fn from(e: ForeignLedger) -> Self {
        Stop::new(e)
    }
}

/// The class of a stop: a pure function of its source error.
pub fn classify(e: &StopError) -> StopClass {
    match e {
        StopError::Api(e) => api_class(e),
        StopError::Drop(e) => drop_class(&e.kind),
        StopError::Ledger(_) | StopError::RowVanished { .. } => StopClass::Fatal,
        StopError::ForeignLedger(_) => StopClass::LedgerMismatch,
        StopError::Local { .. } => StopClass::Transient,
    }
}

/// What a drop failure means. Opening the drop and every later operation (an sFTP reconnect
/// verifies the host key and sends the credentials again) go by the same table.
pub fn drop_class(kind: &DropErrorKind) -> StopClass {
    use DropErrorKind as K;
    match kind {
        K::HostKeyUnknown => StopClass::NeedsPerson(Reason::HostKeyUnknown),
        K::HostKeyChanged => StopClass::NeedsPerson(Reason::HostKeyChanged),
        K::HostKeyRevoked => StopClass::NeedsPerson(Reason::HostKeyRevoked),
        K::Authentication => StopClass::NeedsPerson(Reason::SftpAuth),
        K::RootMissing => StopClass::NeedsPerson(Reason::DropMissing),
        K::Escape { .. } => StopClass::NeedsPerson(Reason::DropSymlink),
        K::Permission => StopClass::NeedsPerson(Reason::Permission),
        // A file gone or changed meanwhile, a name taken, an outage, a full disk: the next run
        // looks again.
        K::NotFound | K::AlreadyExists | K::Unavailable | K::Changed | K::Io => StopClass::Transient,
    }
}

/// What a Stitch failure means.
pub fn api_class(e: &ApiError) -> StopClass {
    match e {
        ApiError::Halt { .. } => StopClass::Halt,
        // A redirecting URL must be corrected by a person; retrying cannot help.
        ApiError::Redirect { .. } => StopClass::NeedsPerson(Reason::StitchRedirect),
        ApiError::InvalidToken => StopClass::Fatal,
        ApiError::Rejected { .. }
        | ApiError::Transient(_)
        | ApiError::Uncertain(_)
        | ApiError::Protocol(_)
        | ApiError::Unconfirmed(_)
        | ApiError::TooLarge { .. }
        | ApiError::Deadline { .. } => StopClass::Transient,
    }
}

pub type Step<T> = Result<T, Stop>;

use super::attention::{self, Attention, Reason, Transition};

/// Everything one account's cycle works with.
pub struct AccountCtx<'a> {
    pub acct: &'a Account,
    pub ledger: Ledger,
    pub drop: Box<dyn Transport>,
    pub client: StitchClient,
    pub report: AccountReport,
    /// Open fulfillments, fetched at most once per cycle.
    pub open_cache: Option<Vec<crate::stitch::wire::Fulfillment>>,
    /// Cancelled when the process is shutting down (`watch`): no file or download is started.
    pub stop: CancellationToken,
    /// The zip archive being taken, spooled once for all its members (`content.rs`).
    pub(super) zip_spool: Option<crate::engine::ZipSpool>,
}

/// Why the Stitch token could not be had. Never carries the token itself.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Stitch token is expected in environment variable {0}, which is not set")]
    EnvUnset(String),
    #[error("the Stitch token is expected in environment variable {0}, which is set but empty")]
    EnvEmpty(String),
    #[error("the Stitch token is expected in environment variable {0}, which is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("token file {} is empty", .0.display())]
    FileEmpty(std::path::PathBuf),
    #[error("cannot read token file {}: {source}", path.display())]
    FileRead { path: std::path::PathBuf, source: std::io::Error },
    /// Sending it would fail on every request (and a newline could smuggle in a header).
    #[error("the Stitch token from {from} contains a character an HTTP header cannot carry (a line break, a control character or a non-ASCII character); correct it there")]
    NotAHeader { from: String },
}

/// Read the Stitch token; never logged. Surrounding whitespace (a file's final newline) is
/// dropped; anything a header cannot carry is refused here, before any request.
pub fn read_token(src: &TokenSource) -> Result<String, TokenError> {
    let (token, from) = match src {
        TokenSource::Env(var) => match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), format!("environment variable {var}")),
            Ok(_) => return Err(TokenError::EnvEmpty(var.clone())),
            Err(std::env::VarError::NotUnicode(_)) => return Err(TokenError::EnvNotUnicode(var.clone())),
            Err(std::env::VarError::NotPresent) => return Err(TokenError::EnvUnset(var.clone())),
        },
        TokenSource::File(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), format!("token file {}", p.display())),
            Ok(_) => return Err(TokenError::FileEmpty(p.clone())),
            Err(source) => return Err(TokenError::FileRead { path: p.clone(), source }),
        },
    };
    if reqwest::header::HeaderValue::from_str(&token).is_err() {
        return Err(TokenError::NotAHeader { from });
    }
    Ok(token)
}

/// Open the account's drop. sFTP connections verify the host key before anything else.
pub fn open_drop(acct: &Account) -> Result<Box<dyn Transport>, DropError> {
    match &acct.drop {
        DropLocation::Local(p) => {
            if !p.is_dir() {
                let why = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("drop folder {} does not exist or is not a folder", p.display()),
                );
                return Err(DropError::new("", DropErrorKind::RootMissing, why).in_account(&acct.name));
            }
            Ok(Box::new(LocalDrop::new(p).with_file_mode(acct.file_mode)))
        }
        DropLocation::Sftp { .. } => super::open::open_sftp(acct),
    }
}

pub fn client_for(acct: &Account, token: &str) -> Result<StitchClient, ApiError> {
    let mut o = ClientOptions::new(&acct.stitch_url);
    o.timeout = acct.timeout;
    o.concurrency = acct.concurrency;
    o.requests_per_second = acct.requests_per_second;
    o.max_retries = acct.max_retries;
    o.backoff_base = acct.backoff;
    o.max_retry_wait = acct.max_retry_wait;
    o.max_response_bytes = acct.max_response_bytes;
    // The cycle starts when its client is made.
    o.deadline = Some(Deadline::after(acct.max_cycle));
    StitchClient::new(o, token)
}

/// One cycle of one account as `worker`: claim the account, run, release it. An account that
/// another live worker holds is skipped (reported, not an error); it is that worker's to finish.
/// Once `stop` is cancelled the cycle finishes the file in hand and starts nothing more.
pub async fn cycle(
    acct: &Account,
    location: &LedgerLocation,
    parts: Parts,
    worker: &Worker,
    stop: &CancellationToken,
) -> AccountReport {
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
    let (report, ledger) = claimed(acct, location, ledger, parts, report, stop).await;
    if let Err(e) = ledger.release_account(&acct.name, &worker.id) {
        // Harmless: the claim lapses after its ttl.
        tracing::warn!(account = %acct.name, "could not release the account's claim: {e}");
    }
    report
}

async fn claimed(
    acct: &Account,
    location: &LedgerLocation,
    ledger: Ledger,
    parts: Parts,
    mut report: AccountReport,
    stop: &CancellationToken,
) -> (AccountReport, Ledger) {
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
            report.fatal.push(format!("account {}: {e}", acct.name));
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
            let outcome = match drop_class(&e.kind) {
                StopClass::NeedsPerson(reason) => {
                    let a = Attention::new(reason, format!("drop: {e}"));
                    settle_attention(acct, location, &ledger, None, &mut report, Some(a), false).await
                }
                _ => {
                    tracing::warn!(account = %acct.name, "drop unavailable: {e}");
                    report.pending.push(format!("drop unavailable: {e}"));
                    "pending"
                }
            };
            if let Err(le) = ledger.record_cycle(&acct.name, &started, outcome, &e.to_string()) {
                report.fatal.push(format!("recording the cycle of account {}: {le}", acct.name));
            }
            record_metrics(&report, clock.elapsed().as_secs_f64(), None);
            return (report, ledger);
        }
    };
    let mut cx =
        AccountCtx { acct, ledger, drop, client, report, open_cache: None, stop: stop.clone(), zip_spool: None };
    let result = cx.run(parts).await.map_err(|s| s.in_account(&acct.name));
    cx.report.requests = cx.client.stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    cx.report.write_requests = cx.client.stats.write_requests.load(std::sync::atomic::Ordering::Relaxed);
    // A stop for a foreign ledger (or one that needs attention) is recorded with its reason,
    // which `status` shows.
    let mut stopped_why: Option<String> = None;
    // The drop opened: problems of opening it are over, whatever happens next; anything else
    // is known to be over only when the whole cycle ran.
    let opened_past = |r: Reason| {
        matches!(
            r,
            Reason::HostKeyUnknown
                | Reason::HostKeyChanged
                | Reason::HostKeyRevoked
                | Reason::SftpAuth
                | Reason::DropMissing
        )
    };
    // A ledger that cannot say whether the account needs attention is a broken ledger: the run
    // stops (fatal), it never guesses "no".
    let recorded = match cx.ledger.attention(&acct.name) {
        Ok(r) => r,
        Err(e) => {
            cx.report.fatal.push(format!("the ledger's attention state of account {}: {e}", acct.name));
            return (cx.report, cx.ledger);
        }
    };
    let cleared = result.is_ok() || recorded.as_ref().is_some_and(|r| opened_past(r.reason));
    let (result, met) = match result {
        Err(stop) => match stop.class() {
            StopClass::NeedsPerson(reason) => (Ok(()), Some(Attention::new(reason, stop.message()))),
            _ => (Err(stop), None),
        },
        // A cycle that ran may still leave a person something to look at: 940s the X12
        // partner rejected or never acknowledged (the account goes on working).
        Ok(()) => match cx.x12_attention() {
            Ok(a) => (Ok(()), a),
            Err(stop) => (Err(stop.in_account(&acct.name)), None),
        },
    };
    let stopped_by_attention = met.is_some();
    if met.is_some() || recorded.is_some() {
        let o =
            settle_attention(acct, location, &cx.ledger, Some(cx.drop.as_mut()), &mut cx.report, met, cleared).await;
        if stopped_by_attention {
            stopped_why =
                Some(cx.report.attention.as_ref().map(|a| a.message.clone()).unwrap_or_else(|| o.to_string()));
        }
    }
    let outcome = match result {
        Ok(()) if stopped_by_attention => {
            if cx.report.attention.is_some() { "attention" } else { "pending" }.to_string()
        }
        Ok(()) => "ok".to_string(),
        Err(stop) => match stop.class() {
            StopClass::LedgerMismatch => {
                let why = stop.message();
                tracing::error!(account = %acct.name, "{why}");
                cx.report.fatal.push(why.clone());
                stopped_why = Some(why);
                LEDGER_MISMATCH.to_string()
            }
            StopClass::Halt => {
                let Some((kind, status, message)) = stop.halt() else {
                    unreachable!("`classify` gives Halt to Stitch's refusals only")
                };
                let text = halt::alert_text(&acct.name, kind, status, message);
                tracing::error!(account = %acct.name, status, "account halted: {message}");
                if let Err(e) = cx.ledger.halt(&acct.name, halt::halt_code(kind), &text) {
                    cx.report.fatal.push(e.to_string());
                }
                if let Err(e) = halt::write_alert(cx.drop.as_mut(), &acct.name, &text) {
                    tracing::error!(account = %acct.name, "could not write the alert file: {e}");
                }
                cx.report.halted = Some(format!(
                    "Stitch answered {status}: {message}. See {} in the drop.",
                    halt::alert_name(&acct.name)
                ));
                super::alert::fire(&cx.ledger, &acct.alerts, acct.alert_timeout, &acct.name, "halted", &text).await;
                "halted".to_string()
            }
            StopClass::Transient => {
                let why = stop.message();
                tracing::warn!(account = %acct.name, "work left for the next run: {why}");
                cx.report.pending.push(why);
                "pending".to_string()
            }
            StopClass::Fatal => {
                let why = stop.message();
                tracing::error!(account = %acct.name, "{why}");
                cx.report.fatal.push(why);
                "fatal".to_string()
            }
            // Taken out above; kept for the compiler.
            StopClass::NeedsPerson(reason) => {
                cx.report.attention = Some(Attention::new(reason, stop.message()));
                "attention".to_string()
            }
        },
    };
    for f in cx.report.files.iter().filter(|f| f.state == "rejected") {
        let text = format!("file {} was rejected: {}", f.path, f.message);
        super::alert::fire(&cx.ledger, &acct.alerts, acct.alert_timeout, &acct.name, "file_rejected", &text).await;
    }
    let summary = stopped_why.unwrap_or_else(|| {
        format!(
            "{} files, {} orders sent, {} cancels sent",
            cx.report.files.len(),
            cx.report.orders_sent,
            cx.report.cancels_sent
        )
    });
    if let Err(e) = cx.ledger.record_cycle(&acct.name, &started, &outcome, &summary) {
        cx.report.fatal.push(format!("recording the cycle of account {}: {e}", acct.name));
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    cx.report.settle_due_seconds = cx.report.settle_due_ms.map(|d| super::settle::seconds_until(d, now_ms));
    cx.report.waiting = super::waiting_files(&cx.ledger, &acct.name, acct.settle, now_ms).unwrap_or_default();
    let oldest = cx.ledger.oldest_waiting_ms(&acct.name).ok().flatten().map(|ms| (now_ms - ms).max(0) as f64 / 1000.0);
    record_metrics(&cx.report, clock.elapsed().as_secs_f64(), oldest);
    (cx.report, cx.ledger)
}

/// Hand the cycle's report to `metrics` as the plain values it counts.
fn record_metrics(report: &AccountReport, seconds: f64, oldest_waiting_secs: Option<f64>) {
    let files = report
        .files
        .iter()
        .map(|f| crate::metrics::FileDone {
            kind: &f.kind,
            outcome: &f.state,
            accepted: f.accepted,
            rejected: f.rejected,
        })
        .collect();
    crate::metrics::record_cycle(&crate::metrics::CycleDone {
        account: &report.account,
        files,
        orders_sent: report.orders_sent,
        cancels_sent: report.cancels_sent,
        halted: report.halted.as_deref(),
        attention: report.attention.as_ref().map(|a| a.reason.as_str()),
        seconds,
        oldest_waiting_secs,
    });
}

/// The outcome recorded for a cycle stopped by [`StopClass::LedgerMismatch`].
pub const LEDGER_MISMATCH: &str = "ledger_mismatch";

/// Record what this cycle means for the account's "needs attention" state, announce entering
/// and clearing once each, and fill the report. Returns the cycle's outcome word. `drop` is the
/// open drop (for `ALERT-<account>.txt`), `None` when opening it was the problem: then the alert
/// file goes beside a SQLite ledger, the one place the operator's machine surely has.
async fn settle_attention(
    acct: &Account,
    location: &LedgerLocation,
    ledger: &Ledger,
    mut drop: Option<&mut dyn Transport>,
    report: &mut AccountReport,
    met: Option<Attention>,
    cleared: bool,
) -> &'static str {
    let name = &acct.name;
    let recorded = match ledger.attention(name) {
        Ok(r) => r,
        Err(e) => {
            report.fatal.push(e.to_string());
            return "fatal";
        }
    };
    let record = |a: &Attention, strikes: u32| {
        if let Err(e) = ledger.set_attention(name, a.reason.as_str(), &a.message, strikes) {
            tracing::error!(account = %name, "cannot record that the account needs attention: {e}");
        }
    };
    let beside_ledger = || match location {
        LedgerLocation::Sqlite(p) => p.parent().map(|d| d.join(halt::alert_name(name))),
        _ => None,
    };
    let outcome = match attention::transition(recorded.as_ref(), met.as_ref(), cleared) {
        Transition::Quiet => "ok",
        Transition::Strike { strikes } => {
            let a = met.expect("a strike has a problem");
            record(&a, strikes);
            tracing::warn!(account = %name, reason = %a.reason, "work left for the next run: {}", a.message);
            report.pending.push(format!("{} (again next run: the account will need attention)", a.message));
            "pending"
        }
        Transition::Enter { strikes } | Transition::Still { strikes } => {
            let a = met.expect("entering or staying has a problem");
            let entering = recorded.as_ref().is_none_or(|r| r.reason != a.reason || !r.announced());
            record(&a, strikes);
            let since = ledger.attention(name).ok().flatten().map(|r| r.since).unwrap_or_else(crate::ledger::now);
            let text = attention::alert_text(name, &a, &since);
            tracing::error!(account = %name, reason = %a.reason, "account needs attention: {}", a.message);
            // The alert file is (re)written every time: whoever removed it still needs to know.
            let written = match &mut drop {
                Some(d) => halt::write_alert(&mut **d, name, &text).map_err(|e| e.to_string()),
                None => match beside_ledger() {
                    Some(path) => std::fs::write(&path, text.as_bytes()).map_err(|e| e.to_string()),
                    None => Ok(()),
                },
            };
            if let Err(e) = written {
                tracing::error!(account = %name, "could not write the alert file: {e}");
            }
            if entering {
                super::alert::fire(ledger, &acct.alerts, acct.alert_timeout, name, "attention", &text).await;
            }
            report.attention = Some(a);
            "attention"
        }
        Transition::Clear { was, announced } => {
            if let Err(e) = ledger.clear_attention(name) {
                report.fatal.push(e.to_string());
                return "fatal";
            }
            if announced {
                tracing::info!(account = %name, reason = %was, "account no longer needs attention");
                if let Some(d) = &mut drop {
                    if matches!(d.stat(&halt::alert_name(name)), Ok(Some(_))) {
                        let _ = d.remove(&halt::alert_name(name));
                    }
                }
                if let Some(p) = beside_ledger() {
                    let _ = std::fs::remove_file(p);
                }
                let text = format!("stitch-bridge: account \"{name}\" no longer needs attention ({was} was fixed); processing resumed.\n");
                super::alert::fire(ledger, &acct.alerts, acct.alert_timeout, name, "attention_cleared", &text).await;
            }
            "ok"
        }
    };
    let reason = report.attention.as_ref().map(|a| a.reason.as_str());
    crate::metrics::record_attention(name, reason, &Reason::ALL.map(Reason::as_str));
    outcome
}

impl AccountCtx<'_> {
    async fn run(&mut self, parts: Parts) -> Step<()> {
        // Before any drop write, move or remote write: is this the drop's ledger?
        self.check_marker()?;
        self.ensure_layout()?;
        self.sweep_temp_files();
        self.resolve_pending().await?;
        if parts.inbound {
            for kind in [Kind::Inventory, Kind::Orders, Kind::Shipments] {
                self.inbound(kind).await?;
            }
            self.inbound_edi().await?;
        }
        if parts.download && !self.stop.is_cancelled() {
            self.client.check_deadline()?;
            self.download_orders().await?;
            self.download_cancels().await?;
        }
        Ok(())
    }

    /// Compare the drop's marker with this ledger's id; write it on a drop that has none (fresh
    /// install, or an upgrade from a release without markers: no operator action either way).
    fn check_marker(&mut self) -> Step<()> {
        use crate::ledger::marker::{self, Marker};
        let ours = self.ledger.id()?;
        match marker::check(self.drop.as_mut(), &ours)? {
            Marker::Ours => Ok(()),
            Marker::Written => {
                let history = self.ledger.has_history(&self.acct.name)?;
                tracing::info!(
                    account = %self.acct.name,
                    ledger_id = %ours,
                    "drop marker {} written ({})",
                    marker::MARKER_NAME,
                    if history { "a ledger with history, from a release without markers" } else { "first cycle of this ledger" }
                );
                Ok(())
            }
            Marker::Foreign(theirs) => Err(ForeignLedger {
                account: self.acct.name.clone(),
                drop: self.drop.describe(),
                theirs,
                ours,
                location: self.ledger.location().to_string(),
            }
            .into()),
        }
    }

    fn ensure_layout(&mut self) -> Step<()> {
        let dirs: Vec<String> = self.acct.drop_folders().into_iter().map(str::to_string).collect();
        for dir in &dirs {
            self.drop.mkdir_all(dir)?;
        }
        Ok(())
    }

    /// Remove temp files a killed run left in the folders only the bridge writes. Safe: this
    /// worker holds the account's claim, so no other bridge process is writing there now, and
    /// the warehouse's own folders (`inbound/`) are never touched. Failures only cost a log line.
    fn sweep_temp_files(&mut self) {
        let f = &self.acct.folders;
        for dir in [&f.outbound_orders, &f.outbound_cancellations, &f.outbound_acks, &f.results, &f.errors] {
            let Ok(entries) = self.drop.list(dir) else { continue };
            for e in entries.iter().filter(|e| crate::drop::is_temp_of_ours(&e.name)) {
                let path = format!("{dir}/{}", e.name);
                match self.drop.remove(&path) {
                    Ok(()) => {
                        tracing::info!(account = %self.acct.name, file = %path, "removed a temp file left by an interrupted run")
                    }
                    Err(err) => {
                        tracing::warn!(account = %self.acct.name, file = %path, "cannot remove a stale temp file: {err}")
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::HaltKind;
    use std::io;

    fn drop_err(kind: DropErrorKind) -> DropError {
        DropError::new("inbound/orders/o.csv", kind, io::Error::other("boom"))
    }

    /// Every kind of drop failure and what it means for the account: the table behind "a
    /// changed host key is told apart from an outage".
    #[test]
    fn drop_failures_classify() {
        use DropErrorKind as K;
        use StopClass::*;
        let table = [
            (K::HostKeyUnknown, NeedsPerson(Reason::HostKeyUnknown)),
            (K::HostKeyChanged, NeedsPerson(Reason::HostKeyChanged)),
            (K::HostKeyRevoked, NeedsPerson(Reason::HostKeyRevoked)),
            (K::Authentication, NeedsPerson(Reason::SftpAuth)),
            (K::RootMissing, NeedsPerson(Reason::DropMissing)),
            (K::Escape { link: "results".into() }, NeedsPerson(Reason::DropSymlink)),
            (K::Permission, NeedsPerson(Reason::Permission)),
            (K::NotFound, Transient),
            (K::AlreadyExists, Transient),
            (K::Unavailable, Transient),
            (K::Changed, Transient),
            (K::Io, Transient),
        ];
        for (kind, want) in table {
            assert_eq!(drop_class(&kind), want, "{kind:?}");
            assert_eq!(Stop::from(drop_err(kind.clone())).class(), want, "{kind:?} through Stop");
        }
    }

    #[test]
    fn stitch_failures_classify() {
        use StopClass::*;
        let s = || "x".to_string();
        let table = [
            (ApiError::Halt { kind: HaltKind::Unauthorized, status: 401, message: s() }, Halt),
            (ApiError::Halt { kind: HaltKind::Forbidden, status: 403, message: s() }, Halt),
            (ApiError::Redirect { status: 301, location: s() }, NeedsPerson(Reason::StitchRedirect)),
            (ApiError::InvalidToken, Fatal),
            (ApiError::Rejected { status: 422, code: s(), message: s() }, Transient),
            (ApiError::Transient(s()), Transient),
            (ApiError::Uncertain(s()), Transient),
            (ApiError::Protocol(s()), Transient),
            (ApiError::Unconfirmed(s()), Transient),
            (ApiError::TooLarge { what: s(), limit: 1 }, Transient),
            (ApiError::Deadline { seconds: 1 }, Transient),
        ];
        for (e, want) in table {
            let shown = e.to_string();
            assert_eq!(api_class(&e), want, "{shown}");
            assert_eq!(Stop::from(e).class(), want, "{shown} through Stop");
        }
    }

    #[test]
    fn other_sources_classify_and_every_stop_names_its_account_and_path() {
        let ledger = LedgerError::Locked { at: "l.sqlite".into() };
        assert_eq!(Stop::from(ledger).class(), StopClass::Fatal);
        let gone = Stop::new(StopError::RowVanished { id: 7, path: "inbound/orders/o.csv".into() });
        assert_eq!(gone.class(), StopClass::Fatal);
        let foreign = ForeignLedger {
            account: "wh".into(),
            drop: "local folder d".into(),
            theirs: None,
            ours: "b".into(),
            location: "l.sqlite".into(),
        };
        let foreign = Stop::from(foreign);
        assert_eq!(foreign.class(), StopClass::LedgerMismatch);
        assert!(foreign.message().contains("no ledger id this version can read"), "{}", foreign.message());
        assert!(foreign.message().contains("`stitch-bridge adopt wh`"), "{}", foreign.message());
        let tmp = Stop::local("the temporary result file of inbound/orders/o.csv", io::Error::other("disk full"));
        assert_eq!(tmp.class(), StopClass::Transient);

        let stop = Stop::from(drop_err(DropErrorKind::Unavailable));
        assert_eq!((stop.account(), stop.message().as_str()), (None, "drop: inbound/orders/o.csv: boom"));
        let stop = stop.in_account("wh");
        assert_eq!(stop.to_string(), "account wh: drop: inbound/orders/o.csv: boom");
        assert_eq!(stop.message(), "drop: inbound/orders/o.csv: boom", "the report names the account itself");
        assert!(matches!(stop.source(), StopError::Drop(e) if e.account.as_deref() == Some("wh")));
        let halt = Stop::from(ApiError::Halt { kind: HaltKind::Forbidden, status: 403, message: "no".into() });
        assert_eq!(halt.halt(), Some((HaltKind::Forbidden, 403, "no")));
        assert_eq!(tmp.halt(), None);
    }
}
