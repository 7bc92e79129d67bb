//! `stitch-bridge adopt ACCOUNT`: the operator's word that the configured ledger is meant to
//! serve the account's drop, although the drop's marker names another ledger (or the ledger file
//! lost its schema). It rewrites the marker to this ledger's id; a SQLite file without a schema
//! is initialised first. What the next run does is then what this ledger's history says: orders
//! it has no record of sending are sent again.

use super::Cli;
use crate::engine::exit;
use crate::ledger::{marker, Ledger};

#[derive(clap::Args, Debug)]
pub struct AdoptArgs {
    /// The account whose drop this ledger takes over.
    pub account: String,
}

pub fn run(cli: &Cli, args: &AdoptArgs) -> i32 {
    inner(cli, args).unwrap_or_else(|code| code)
}

fn inner(cli: &Cli, args: &AdoptArgs) -> Result<i32, i32> {
    let config = super::load_config(&cli.config)?;
    let acct = super::find_account(&config, &args.account)?;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        exit::USAGE
    };
    let ledger = Ledger::open_adopting(&config.ledger).map_err(|e| fail(&e))?;
    let id = ledger.id().map_err(|e| fail(&e))?;
    let mut drop = crate::engine::account::open_drop(acct).map_err(|e| fail(&e))?;
    let before = marker::adopt(drop.as_mut(), &id)
        .map_err(|e| fail(&format!("cannot write the drop marker in {}: {e}", drop.describe())))?;
    let was = match before {
        None => "had no marker".to_string(),
        Some(None) => "had a marker this version cannot read".to_string(),
        Some(Some(old)) if old == id => "already named this ledger".to_string(),
        Some(Some(old)) => format!("named ledger {old}"),
    };
    outln!(
        "account {}: the drop {} now names ledger {id} ({}); it {was}.\n\
         The next run goes by this ledger's history: orders it has no record of sending are sent to the warehouse again.",
        acct.name,
        drop.describe(),
        ledger.location()
    );
    Ok(exit::OK)
}
