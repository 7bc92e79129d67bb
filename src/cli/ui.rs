//! `stitch-bridge ui [--listen ADDR]`: the operator console (see `ui`) until SIGINT/SIGTERM.

use super::Cli;
use crate::engine::exit;
use std::net::SocketAddr;

/// Where the console listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8760";

#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// Address to serve the console on. Beyond loopback every page needs the console token
    /// (`[ui] token_env`); port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

pub fn run(cli: &Cli, args: &UiArgs) -> i32 {
    let config = match super::load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return exit::USAGE;
        }
    };
    let state = match crate::ui::State::new(config, args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return exit::USAGE;
            }
        };
        let bound = listener.local_addr().unwrap_or(args.listen);
        crate::ui::warn_if_remote(bound);
        outln!("console on http://{bound}/");
        super::out::flush();
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: cannot install signal handlers: {e}");
                return exit::USAGE;
            }
        };
        tokio::select! {
            r = crate::ui::serve(listener, state) => match r {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: the console stopped: {e}");
                    exit::USAGE
                }
            },
            _ = term.recv() => exit::OK,
            _ = int.recv() => exit::OK,
        }
    })
}
