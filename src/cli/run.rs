//! `stitch-bridge run --once`: one cycle for every account (cron- and timer-friendly).

use super::Cli;
use crate::engine::{self, Parts, RunReport};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// One cycle, then exit (the only mode of `run`; `watch` runs continuously).
    #[arg(long)]
    pub once: bool,
    /// Only these accounts (repeatable).
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &RunArgs) -> i32 {
    let config = match super::load_accounts(&cli.config, &args.accounts) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let progress = progress_spinner(cli.quiet, config.accounts.len());
    let report = engine::run_cycle(&config, &args.accounts, Parts::ALL);
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else if cli.quiet {
        print_problems(&report);
    } else {
        print_report(&report);
    }
    report.exit_code()
}

/// A spinner on a terminal for long runs; nothing when stderr is not a TTY or with `--quiet`.
fn progress_spinner(quiet: bool, accounts: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let b = bar.clone();
    std::thread::spawn(move || {
        while !b.is_finished() {
            b.set_message(format!("cycle over {accounts} account(s): {} files done", engine::files_done()));
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    Some(bar)
}

pub fn print_report(report: &RunReport) {
    for a in &report.accounts {
        outln!("account {}:", a.account);
        for f in &a.files {
            outln!(
                "  {:<9} {} ({}): {} accepted, {} rejected{}{}",
                f.state,
                f.path,
                f.kind,
                f.accepted,
                f.rejected,
                f.result.as_deref().map(|r| format!("; result {r}")).unwrap_or_default(),
                f.errors.as_deref().map(|r| format!("; errors {r}")).unwrap_or_default(),
            );
            if !f.message.is_empty() {
                outln!("            {}", f.message);
            }
        }
        for w in &a.waiting {
            outln!("  waiting   {}: {}", w.path, taken_in(w.settle_due_seconds));
        }
        outln!("  orders sent to the warehouse: {}, cancellations sent: {}", a.orders_sent, a.cancels_sent);
        outln!("  Stitch requests: {} ({} writes)", a.requests, a.write_requests);
        if let Some(h) = &a.halted {
            outln!("  HALTED: {h}");
        }
        if let Some(att) = &a.attention {
            outln!("  NEEDS ATTENTION ({}): {}", att.reason, att.message);
            for line in att.reason.what_to_do(&a.account).lines() {
                outln!("    {line}");
            }
        }
        for p in &a.pending {
            outln!("  PENDING (will resume next run): {p}");
        }
        if let Some(s) = &a.skipped {
            outln!("  skipped: {s}");
        }
        for p in &a.fatal {
            outln!("  ERROR: {p}");
        }
    }
}

/// When a waiting file will be taken, as `run` and `status` say it.
pub fn taken_in(seconds: u64) -> String {
    format!("settling, taken in {seconds} s")
}

/// With `--quiet`: no summary, only what a person must see, on stderr.
fn print_problems(report: &RunReport) {
    for a in &report.accounts {
        if let Some(h) = &a.halted {
            eprintln!("account {}: HALTED: {h}", a.account);
        }
        if let Some(att) = &a.attention {
            eprintln!("account {}: NEEDS ATTENTION ({}): {}", a.account, att.reason, att.message);
        }
        for p in &a.fatal {
            eprintln!("account {}: ERROR: {p}", a.account);
        }
    }
}
