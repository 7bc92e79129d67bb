//! `stitch-bridge test`: like CartRover's Test button. Each check says what to do when it fails.

use super::Cli;
use crate::engine::{account, exit};
use crate::stitch::{ApiError, HaltKind};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Only this account.
    pub account: Option<String>,
}

pub fn run(cli: &Cli, args: &TestArgs) -> i32 {
    let config = match super::load_accounts(&cli.config, args.account.as_slice()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut failed = false;
    for a in config.accounts.iter().filter(|a| args.account.as_ref().is_none_or(|n| n == &a.name)) {
        outln!("account {}:", a.name);
        // Drop: reachable and writable.
        match account::open_drop(a) {
            Err(e) => {
                failed = true;
                outln!(
                    "  FAIL drop: {e}\n       check the drop setting, the server, and (sFTP) the key and known_hosts"
                );
            }
            Ok(mut d) => {
                let probe = ".stitch-bridge-test.tmp";
                let r = d.write_atomic(probe, &mut &b"test"[..]).and_then(|_| d.remove(probe));
                match r {
                    Ok(()) => outln!("  ok   drop {} is reachable and writable", d.describe()),
                    Err(e) => {
                        failed = true;
                        outln!("  FAIL drop {} is not writable: {e}\n       the bridge must write results, errors and moves there", d.describe());
                    }
                }
            }
        }
        // Token and integration features.
        let token = match account::read_token(&a.token) {
            Ok(t) => t,
            Err(e) => {
                failed = true;
                outln!("  FAIL token: {e}");
                continue;
            }
        };
        let client = match account::client_for(a, &token) {
            Ok(c) => c,
            Err(e) => {
                failed = true;
                outln!("  FAIL client: {e}");
                continue;
            }
        };
        match rt.block_on(client.probe()) {
            Ok(()) => {
                outln!("  ok   Stitch at {} accepts the token and the integration endpoints are enabled", a.stitch_url)
            }
            Err(ApiError::Halt { kind: HaltKind::Unauthorized, message, .. }) => {
                failed = true;
                outln!("  FAIL Stitch refused the token (401): {message}\n       do NOT re-authorise (it creates a duplicate channel warehouse); contact Stitch support to restore access");
            }
            Err(ApiError::Halt { kind: HaltKind::Forbidden, message, .. }) => {
                failed = true;
                outln!("  FAIL integration endpoints unavailable (403): {message}\n       enable Multi-warehousing and Third-Party Stock Control in Stitch: Settings -> General -> Feature Settings;\n       if they are missing from your plan, contact Stitch support");
            }
            Err(e) => {
                failed = true;
                outln!(
                    "  FAIL cannot talk to Stitch at {}: {e}\n       check stitch_url and the network",
                    a.stitch_url
                );
            }
        }
    }
    if failed {
        exit::USAGE
    } else {
        exit::OK
    }
}
