//! `stitch-bridge trust ACCOUNT`: record an sFTP server's host key after a human compared its
//! fingerprint with the one the warehouse gave out of band. Connections never trust a key on
//! first use; this command is the only way a key gets into known_hosts.

use super::Cli;
use crate::config::DropLocation;
use crate::drop::known_hosts::{self, HostKeyError};
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

/// Exit codes of `trust`.
pub mod exit {
    /// Recorded, or already recorded.
    pub const OK: i32 = 0;
    /// Not recorded: declined, refused (changed or revoked key), or no terminal to ask on.
    pub const REFUSED: i32 = 1;
    pub const USAGE: i32 = 2;
    /// The server could not be reached.
    pub const UNREACHABLE: i32 = 4;
}

#[derive(clap::Args, Debug)]
pub struct TrustArgs {
    /// The account whose sftp:// drop's host key to record.
    pub account: String,
    /// Record without asking (only after comparing the fingerprint out of band).
    #[arg(long)]
    pub yes: bool,
    /// Replace a different key of the same type recorded for this host (after a confirmed
    /// server key change).
    #[arg(long)]
    pub replace: bool,
}

pub fn run(cli: &Cli, args: &TrustArgs) -> i32 {
    let config = match super::load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(acct) = config.account(&args.account) else {
        eprintln!("error: no account named {:?} in {}", args.account, cli.config.display());
        return exit::USAGE;
    };
    let (DropLocation::Sftp { host, port, .. }, Some(s)) = (&acct.drop, &acct.sftp) else {
        eprintln!("error: account {} does not use an sftp:// drop; there is no host key to trust", acct.name);
        return exit::USAGE;
    };
    let kh = &s.known_hosts;
    let timeout = acct.timeout.max(Duration::from_secs(10));
    let (key, ktype, fp) = match crate::drop::sftp::probe_host_key(host, *port, timeout) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: cannot fetch the host key of {}: {e}", known_hosts::host_pattern(host, *port));
            return exit::UNREACHABLE;
        }
    };
    let shown = known_hosts::host_pattern(host, *port);
    outln!("{shown} presents a {ktype} host key");
    outln!("  fingerprint: {fp}");
    let mut replace = false;
    match known_hosts::verify_host_key(kh, host, *port, &key) {
        Ok(()) => {
            outln!("This key is already recorded in {}; nothing to do.", kh.display());
            return exit::OK;
        }
        Err(e) => match e.get_ref().and_then(|i| i.downcast_ref::<HostKeyError>()) {
            Some(HostKeyError::Unknown { other_types, .. }) => {
                if !other_types.is_empty() {
                    outln!(
                        "({} also records {} key(s) for this host; they stay.)",
                        kh.display(),
                        other_types.join(", ")
                    );
                }
            }
            Some(HostKeyError::Changed { recorded, .. }) => {
                eprintln!(
                    "WARNING: {} records a DIFFERENT {ktype} key for {shown}: {}.\n\
                     The server's key changed, or someone is intercepting the connection.",
                    kh.display(),
                    recorded.join(", ")
                );
                if !args.replace {
                    eprintln!(
                        "Refusing. Confirm the new fingerprint with the warehouse, then run again with --replace."
                    );
                    return exit::REFUSED;
                }
                replace = true;
            }
            Some(HostKeyError::Revoked { .. }) => {
                eprintln!("error: this key is marked @revoked in {}; refusing to trust it", kh.display());
                return exit::REFUSED;
            }
            None => {
                eprintln!("error: cannot read {}: {e}", kh.display());
                return exit::USAGE;
            }
        },
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "Not recorded: no terminal to confirm on. Compare the fingerprint with the one the \
                 warehouse gave you, then run again with --yes."
            );
            return exit::REFUSED;
        }
        out!("Does this fingerprint match the one the warehouse gave you? Type 'yes' to record it: ");
        super::out::flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "yes" {
            outln!("Not recorded.");
            return exit::REFUSED;
        }
    }
    if replace {
        match known_hosts::remove_host_key_type(kh, host, *port, &ktype) {
            Ok(n) => outln!("Removed {n} old {ktype} line(s) for {shown}."),
            Err(e) => {
                eprintln!("error: cannot update {}: {e}", kh.display());
                return exit::USAGE;
            }
        }
    }
    match known_hosts::record_host_key(kh, host, *port, &key) {
        Ok(()) => {
            outln!("Recorded {ktype} {fp} for {shown} in {}.", kh.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", kh.display());
            exit::USAGE
        }
    }
}
