//! `stitch-bridge status [ACCOUNT] [--json]`: what the ledger knows, per account.

use super::Cli;
use crate::engine::exit;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this account.
    pub account: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// How many recent files to list per account.
    #[arg(long, default_value_t = 10)]
    pub recent: usize,
}

#[derive(Serialize)]
struct AccountStatus {
    account: String,
    halted: Option<crate::ledger::Halt>,
    /// A problem only a person can fix, recorded until a cycle gets past it.
    attention: Option<crate::engine::attention::Recorded>,
    /// Why the last cycle stopped before doing anything (the drop names another ledger).
    stopped: Option<String>,
    last_cycle: Option<LastCycle>,
    files_archived_today: i64,
    files_rejected_today: i64,
    pending_intents: i64,
    fulfillments_sent: i64,
    cancellations: i64,
    recent_files: Vec<crate::ledger::FileRow>,
    /// Files seen in `inbound/` whose settle time is still running.
    waiting: Vec<crate::engine::WaitingFile>,
}

/// The last cycle as the ledger recorded it (named fields: `schemas/status.schema.json`).
#[derive(Serialize)]
struct LastCycle {
    at: String,
    outcome: String,
    summary: String,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> i32 {
    inner(cli, args).unwrap_or_else(|code| code)
}

fn inner(cli: &Cli, args: &StatusArgs) -> Result<i32, i32> {
    let config = super::load_accounts(&cli.config, args.account.as_slice())?;
    let ledger = super::open_ledger(&config)?;
    let today = chrono::Utc::now().format("%Y-%m-%dT00:00:00").to_string();
    let mut out = Vec::new();
    for a in config.accounts.iter().filter(|a| args.account.as_ref().is_none_or(|n| n == &a.name)) {
        let st = (|| -> crate::ledger::Result<AccountStatus> {
            let (archived, rejected) = ledger.file_counts_since(&a.name, &today)?;
            let (sent, cancelled) = ledger.count_sent_fulfillments(&a.name)?;
            let last_cycle =
                ledger.last_cycle(&a.name)?.map(|(at, outcome, summary)| LastCycle { at, outcome, summary });
            let stopped = last_cycle
                .as_ref()
                .filter(|c| c.outcome == crate::engine::account::LEDGER_MISMATCH)
                .map(|c| c.summary.clone());
            Ok(AccountStatus {
                account: a.name.clone(),
                halted: ledger.halted(&a.name)?,
                attention: ledger.attention(&a.name)?.filter(|r| r.announced()),
                stopped,
                last_cycle,
                files_archived_today: archived,
                files_rejected_today: rejected,
                pending_intents: ledger.count_intents(&a.name, crate::ledger::IntentState::Pending)?,
                fulfillments_sent: sent,
                cancellations: cancelled,
                recent_files: ledger.recent_files(Some(&a.name), args.recent)?,
                waiting: crate::engine::waiting_files(
                    &ledger,
                    &a.name,
                    a.settle,
                    chrono::Utc::now().timestamp_millis(),
                )?,
            })
        })();
        match st {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(exit::USAGE);
            }
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(exit::OK);
    }
    for s in &out {
        outln!("account {}", s.account);
        match &s.halted {
            Some(h) => {
                outln!("  HALTED since {} ({}): run `stitch-bridge resume {}` once fixed", h.at, h.code, s.account)
            }
            None if s.stopped.is_none() && s.attention.is_none() => outln!("  active"),
            None => {}
        }
        if let Some(att) = &s.attention {
            outln!("  NEEDS ATTENTION since {} ({}): {}", att.since, att.reason, att.message);
            for line in att.reason.what_to_do(&s.account).lines() {
                outln!("    {line}");
            }
        }
        if let Some(why) = &s.stopped {
            outln!("  STOPPED: {why}");
        }
        match &s.last_cycle {
            Some(c) => outln!("  last cycle: {} {} ({})", c.at, c.outcome, c.summary),
            None => outln!("  last cycle: never"),
        }
        outln!("  today: {} files archived, {} rejected", s.files_archived_today, s.files_rejected_today);
        outln!("  pending remote writes: {}", s.pending_intents);
        outln!("  fulfillments sent to the warehouse: {} ({} cancelled)", s.fulfillments_sent, s.cancellations);
        for w in &s.waiting {
            outln!("  waiting {}: {}", w.path, super::run::taken_in(w.settle_due_seconds));
        }
        for f in &s.recent_files {
            let state = match f.state {
                crate::ledger::FileState::Processing => "pending",
                crate::ledger::FileState::Archived => "archived",
                crate::ledger::FileState::Rejected => "rejected",
            };
            outln!("    {} {:<8} {} ({} ok, {} rejected)", f.updated_at, state, f.path, f.accepted, f.rejected);
        }
    }
    Ok(exit::OK)
}
