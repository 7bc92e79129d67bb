//! Halting an account on 401/403. Re-authorising would create a duplicate channel warehouse in
//! Stitch, so the bridge never does it by itself: it stops the account, leaves every file where
//! it is, records the halt, and tells the operator exactly what to do.

use crate::drop::{DropResult, Transport};
use crate::stitch::HaltKind;

pub fn alert_name(account: &str) -> String {
    format!("ALERT-{account}.txt")
}

pub fn halt_code(kind: HaltKind) -> &'static str {
    match kind {
        HaltKind::Unauthorized => "unauthorized",
        HaltKind::Forbidden => "forbidden",
    }
}

/// The operator-facing explanation; also the ledger's halt reason.
pub fn alert_text(account: &str, kind: HaltKind, status: u16, message: &str) -> String {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (what, fix) = match kind {
        HaltKind::Unauthorized => (
            "Stitch refused the access token (it is wrong or was revoked).",
            "  - Contact Stitch support (and your integrator) to find out why the token was revoked and\n    have API access restored for the existing integration.",
        ),
        HaltKind::Forbidden => (
            "Stitch refused access to the Integrations API for this account.",
            "  - In Stitch, enable Multi-warehousing and Third-Party Stock Control:\n    Settings -> General -> Feature Settings. If you do not see those options, your plan may\n    not include them: contact Stitch support.\n  - If both are enabled, ask Stitch support to confirm the account has Integrations API access.",
        ),
    };
    format!(
        "stitch-bridge HALTED account \"{account}\" at {at}\n\n\
         Stitch answered {status}: {message}\n{what}\n\n\
         Nothing more will be sent for this account until an operator resumes it. Every file in\n\
         this drop was left untouched and will be processed after resuming.\n\n\
         What to do:\n{fix}\n\
         \x20 - Do NOT re-authenticate (stitch-bridge auth) and do not remove the integration in Stitch:\n\
         \x20   every authorisation creates a NEW custom channel and warehouse, duplicating stock and orders.\n\
         \x20 - When it is fixed, run:  stitch-bridge resume {account}\n"
    )
}

/// Best effort: the halt is already in the ledger; an unwritable drop must not hide it, so the
/// caller also logs it.
pub fn write_alert(drop: &mut dyn Transport, account: &str, text: &str) -> DropResult<()> {
    let name = alert_name(account);
    if drop.stat(&name)?.is_some() {
        drop.remove(&name)?;
    }
    drop.write_atomic(&name, &mut text.as_bytes())
}
