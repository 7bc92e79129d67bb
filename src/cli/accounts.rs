//! `stitch-bridge resume ACCOUNT`.

use super::Cli;
use crate::engine::exit;

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
    match crate::ui::resume_account(acct, &ledger) {
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
