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
    // The X12 partner's rejections and overdue acknowledgements the operator has now looked at.
    if let Some(x12) = &acct.x12 {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(x12.ack_timeout).unwrap_or(chrono::Duration::hours(24));
        match ledger.dismiss_x12_problems(&acct.name, cutoff) {
            Ok(0) => {}
            Ok(n) => outln!("account {}: {n} rejected or unacknowledged 940 file(s) dismissed", acct.name),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(exit::USAGE);
            }
        }
    }
    Ok(match ledger.resume(&acct.name) {
        Ok(true) => {
            if let Ok(mut d) = crate::engine::account::open_drop(acct) {
                let _ = d.remove(&halt::alert_name(&acct.name));
            }
            outln!("account {} resumed; the next run processes its files", acct.name);
            exit::OK
        }
        Ok(false) => {
            outln!("account {} was not halted", acct.name);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    })
}
