//! `stitch-bridge watch`: cycles continuously until SIGINT/SIGTERM (see `engine::watch`).

use super::Cli;
use crate::engine::{self, watch::WatchOptions};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Only these accounts (repeatable).
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Lease time to live: a watcher killed without shutting down frees its drop (and its claim
    /// on the account) after this. Default: `[ledger] lease_seconds` (60).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_seconds: Option<u64>,
    /// Poll interval in milliseconds for every account, replacing `poll_seconds` (for tests and
    /// diagnostics that need sub-second polls).
    #[arg(long, env = "STITCH_BRIDGE_POLL_MS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_ms: Option<u64>,
    /// Serve Prometheus metrics on http://ADDR/metrics and a liveness check on /healthz
    /// (e.g. 127.0.0.1:9464; port 0 picks a free one, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the operator console on http://ADDR/ beside the cycles (as `stitch-bridge ui`;
    /// beyond loopback every page needs the `[ui] token_env` token).
    #[arg(long, value_name = "ADDR")]
    pub ui_listen: Option<std::net::SocketAddr>,
}

pub fn run(cli: &Cli, args: &WatchArgs) -> i32 {
    let config = match super::load_accounts(&cli.config, &args.accounts) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Signal handlers go in before any cycle starts, so a signal never kills a cycle midway.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return engine::exit::USAGE;
        }
    };
    use tokio::signal::unix::{signal, SignalKind};
    let signals = rt.block_on(async {
        Ok::<_, std::io::Error>((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?))
    });
    let (mut term, mut int) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return engine::exit::USAGE;
        }
    };
    if let Some(addr) = args.metrics_listen {
        let handle = match crate::metrics::install() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: cannot set up metrics: {e}");
                return engine::exit::USAGE;
            }
        };
        let listener = match rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen for metrics on {addr}: {e}");
                return engine::exit::USAGE;
            }
        };
        let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
        tracing::info!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
        // Served by this thread's runtime while it waits for a signal below.
        rt.spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, handle).await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        });
    }
    if let Some(addr) = args.ui_listen {
        let state = match crate::ui::State::new(config.clone(), addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot start the console: {e}");
                return engine::exit::USAGE;
            }
        };
        let listener = match rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen for the console on {addr}: {e}");
                return engine::exit::USAGE;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        crate::ui::warn_if_remote(bound);
        tracing::info!("console on http://{bound}/");
        // Like the metrics: served by this thread's runtime while it waits for a signal below;
        // the ledger and drop work of each request runs on the blocking pool.
        rt.spawn(async move {
            if let Err(e) = crate::ui::serve(listener, state).await {
                tracing::error!("console stopped: {e}");
            }
        });
    }
    let opts = WatchOptions {
        accounts: args.accounts.clone(),
        lease_ttl: args.lease_seconds.map(Duration::from_secs).unwrap_or(config.lease_ttl),
        poll_override: args.poll_ms.map(Duration::from_millis),
    };
    let watcher = match engine::watch::start(&config, &opts) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot start the watch threads: {e}");
            return engine::exit::USAGE;
        }
    };
    let name = rt.block_on(async {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    });
    tracing::info!("{name} received: finishing the file in hand, then stopping (send it again to stop at once)");
    watcher.stop();
    let forced = rt.block_on(async {
        loop {
            if watcher.finished() {
                return false;
            }
            tokio::select! {
                _ = term.recv() => return true,
                _ = int.recv() => return true,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    if forced {
        // Every step is recorded before it is done, so the next run resumes where this stopped.
        tracing::warn!("second signal: stopping now; the next run finishes what was in progress");
        return 130;
    }
    watcher.join();
    tracing::info!("stopped");
    engine::exit::OK
}
