//! `stitch-bridge resume ACCOUNT`.

use super::Cli;
use crate::engine::{exit, halt};
use crate::ledger::Ledger;

#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    /// The halted account.
    pub account: String,
}

pub fn resume(cli: &Cli, args: &ResumeArgs) -> i32 {
    let config = match super::load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(acct) = config.account(&args.account) else {
        eprintln!("error: no account named {:?}", args.account);
        return exit::USAGE;
    };
    let ledger = match Ledger::open(&config.ledger_path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    match ledger.resume(&acct.name) {
        Ok(true) => {
            if let Ok(mut d) = crate::engine::account::open_drop(acct) {
                let _ = d.remove(&halt::alert_name(&acct.name));
            }
            println!("account {} resumed; the next run processes its files", acct.name);
            exit::OK
        }
        Ok(false) => {
            println!("account {} was not halted", acct.name);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
