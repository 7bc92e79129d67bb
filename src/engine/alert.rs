//! Alert hooks: tell an operator (pager, chat, ticket) when an account halts or a file is
//! rejected, without them having to read logs. Failures of the hook are logged, never fatal:
//! the halt or rejection is already durable in the ledger and the drop.

use crate::config::AlertHook;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertEvent<'a> {
    pub account: &'a str,
    /// `halted` or `file_rejected`.
    pub event: &'a str,
    pub text: &'a str,
    pub at: String,
}

pub async fn fire(hooks: &[AlertHook], account: &str, event: &str, text: &str) {
    let ev = AlertEvent { account, event, text, at: chrono::Utc::now().to_rfc3339() };
    for h in hooks {
        let r = match h {
            AlertHook::Command(cmd) => run_command(cmd, &ev),
            AlertHook::Url(url) => post(url, &ev).await,
        };
        if let Err(e) = r {
            tracing::warn!(account, event, "alert hook failed: {e}");
        }
    }
}

/// The text goes on stdin and in `STITCH_BRIDGE_ALERT_*` variables; the command runs through
/// `sh -c` so operators can write pipelines.
fn run_command(cmd: &str, ev: &AlertEvent<'_>) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("STITCH_BRIDGE_ALERT_ACCOUNT", ev.account)
        .env("STITCH_BRIDGE_ALERT_EVENT", ev.event)
        .env("STITCH_BRIDGE_ALERT_TEXT", ev.text)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run alert command: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(ev.text.as_bytes());
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("alert command exited with {status}"))
    }
}

async fn post(url: &str, ev: &AlertEvent<'_>) -> Result<(), String> {
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?
        .post(url)
        .json(ev)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("alert URL answered {}", resp.status()))
    }
}
