//! Alert hooks: tell an operator (pager, chat, ticket) when an account halts or a file is
//! rejected, without them having to read logs. Failures of the hook are logged, never fatal:
//! the halt or rejection is already durable in the ledger and the drop.
//!
//! A hook is someone else's program on our account's thread, so it is fenced: it gets a minimal
//! environment (never the token variables the bridge itself was given) and at most
//! `alert_timeout_seconds`; then its whole process group is killed, since `sh -c` forks and a
//! pipeline's children would otherwise outlive it. The URL POST gets the same time limit.

use crate::config::AlertHook;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertEvent<'a> {
    pub account: &'a str,
    /// `halted` or `file_rejected`.
    pub event: &'a str,
    pub text: &'a str,
    pub at: String,
}

/// Why one hook did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("cannot run alert command: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("waiting for the alert command: {0}")]
    Wait(#[source] std::io::Error),
    #[error("alert command exited with {0}")]
    Failed(std::process::ExitStatus),
    #[error("alert command still running after {0:?}; killed it and its process group")]
    CommandTimedOut(Duration),
    #[error("alert URL: {0}")]
    Http(#[from] reqwest::Error),
    #[error("alert URL answered {0}")]
    Status(reqwest::StatusCode),
}

/// The only variables of our own environment a hook sees (besides `STITCH_BRIDGE_ALERT_*`).
pub const PASSED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Raise an alert: recorded in the ledger first (the console's alert history; a ledger that
/// cannot take it is logged, never a reason to keep the alert back), then every hook.
pub async fn fire(
    ledger: &crate::ledger::Ledger,
    hooks: &[AlertHook],
    timeout: Duration,
    account: &str,
    event: &str,
    text: &str,
) {
    if let Err(e) = ledger.record_alert(account, event, text) {
        tracing::warn!(account, event, "the alert was not recorded in the ledger: {e}");
    }
    let ev = AlertEvent { account, event, text, at: chrono::Utc::now().to_rfc3339() };
    for h in hooks {
        let r = match h {
            AlertHook::Command(cmd) => run_command(cmd, &ev, timeout).await,
            AlertHook::Url(url) => post(url, &ev, timeout).await,
        };
        if let Err(e) = r {
            tracing::warn!(account, event, "alert hook failed: {e}");
        }
    }
}

/// The text goes on stdin and in `STITCH_BRIDGE_ALERT_*` variables; the command runs through
/// `sh -c` so operators can write pipelines, as the leader of its own process group.
async fn run_command(cmd: &str, ev: &AlertEvent<'_>, timeout: Duration) -> Result<(), AlertError> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).env_clear();
    for k in PASSED_ENV {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        c.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    c.env("STITCH_BRIDGE_ALERT_ACCOUNT", ev.account)
        .env("STITCH_BRIDGE_ALERT_EVENT", ev.event)
        .env("STITCH_BRIDGE_ALERT_TEXT", ev.text)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(AlertError::Spawn)?;
    let pgid = child.id();
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(s) = stdin.as_mut() {
            // A hook that ignores its stdin closes the pipe: not a failure.
            let _ = s.write_all(ev.text.as_bytes()).await;
        }
        drop(stdin.take());
        child.wait().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(AlertError::Failed(status)),
        Ok(Err(e)) => Err(AlertError::Wait(e)),
        Err(_) => {
            // The leader is not reaped yet, so its pid (= the group id) cannot have been reused.
            if let Some(pgid) = pgid.and_then(|p| libc::pid_t::try_from(p).ok()) {
                // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill().await;
            Err(AlertError::CommandTimedOut(timeout))
        }
    }
}

async fn post(url: &str, ev: &AlertEvent<'_>, timeout: Duration) -> Result<(), AlertError> {
    let resp = reqwest::Client::builder().timeout(timeout).build()?.post(url).json(ev).send().await?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(AlertError::Status(resp.status()))
    }
}
