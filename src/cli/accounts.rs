//! `stitch-bridge resume ACCOUNT`.

use super::Cli;
use crate::engine::{exit, halt};

#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    /// The halted account.
    pub account: String,
}

pub fn resume(cli: &Cli, args: &ResumeArgs) -> i32 {
    resume_inner(cli, args).unwrap_or_else(|code| code)
}

fn resume_inner(cli: &Cli, args: &ResumeArgs) -> Result<i32, i32> {
    let config = super::load_config(&cli.config)?;
    let acct = super::find_account(&config, &args.account)?;
    let ledger = super::open_ledger(&config)?;
    match resume_account(acct, &ledger) {
        Ok(r) => {
            if r.dismissed > 0 {
                outln!("account {}: {} rejected or unacknowledged 940 file(s) dismissed", acct.name, r.dismissed);
            }
            if r.was_halted {
                outln!("account {} resumed; the next run processes its files", acct.name);
            } else {
                outln!("account {} was not halted", acct.name);
            }
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::USAGE)
        }
    }
}

/// What [`resume_account`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    pub was_halted: bool,
    /// Rejected or overdue X12 940s dismissed (the operator has now looked at them).
    pub dismissed: u64,
}

/// `resume`'s effect, shared with the console's Resume button: X12 problems dismissed, the
/// halt lifted, and the halt's alert file removed from the drop.
pub fn resume_account(acct: &crate::config::Account, ledger: &crate::ledger::Ledger) -> crate::ledger::Result<Resumed> {
    let mut dismissed = 0;
    if let Some(x12) = &acct.x12 {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(x12.ack_timeout).unwrap_or(chrono::Duration::hours(24));
        dismissed = ledger.dismiss_x12_problems(&acct.name, cutoff)?;
    }
    let was_halted = ledger.resume(&acct.name)?;
    if was_halted {
        if let Ok(mut d) = crate::engine::account::open_drop(acct) {
            let _ = d.remove(&halt::alert_name(&acct.name));
        }
    }
    Ok(Resumed { was_halted, dismissed })
}
