//! `stitch-bridge sim`: run the simulator in the foreground until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sim::faults::{FaultConfig, FaultRates};
use crate::sim::{Seed, SimOptions, DEFAULT_LISTEN, DEFAULT_TOKEN};

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Token clients must send in the `access_token` header.
    #[arg(long, env = "STITCH_SIM_TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// Token `/_admin/*` requests must send in the `x-admin-token` header; random if not given
    /// (printed at start).
    #[arg(long, env = "STITCH_SIM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seed document (products, bundles, sales orders); used when no state file exists yet.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// State file: loaded at start if present, saved after every write and at exit.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Delay added to every API request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of a 500/502/504 answer (split evenly) per API request.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Probability of a 429 answer per API request.
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Seconds sent in `Retry-After` with 429.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Probability of closing the connection without applying or answering.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Probability of applying the request and then closing the connection without answering.
    #[arg(long, default_value_t = 0.0)]
    pub lost_answer_rate: f64,
    /// Seed of the fault RNG, for reproducible runs.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Start with Multi-warehousing / Third-Party Stock Control off (integration endpoints 403).
    #[arg(long)]
    pub integrations_disabled: bool,
}

impl SimArgs {
    pub fn options(&self) -> SimOptions {
        let fail = self.fail_rate / 3.0;
        SimOptions {
            listen: self.listen,
            token: self.token.clone(),
            admin_token: Some(self.admin_token.clone().unwrap_or_else(crate::sim::random_admin_token)),
            seed: self.seed.clone().map(Seed::File),
            state_file: self.state.clone(),
            faults: FaultConfig {
                latency_ms: self.latency_ms,
                retry_after: self.retry_after,
                seed: self.fault_seed,
                rates: FaultRates {
                    rate_limited: self.rate_limit_rate,
                    server_error: fail,
                    bad_gateway: fail,
                    gateway_timeout: fail,
                    drop: self.drop_rate,
                    lost_answer: self.lost_answer_rate,
                    lost_answer_504: 0.0,
                },
                queue: Vec::new(),
            },
            integrations_enabled: !self.integrations_disabled,
        }
    }
}

/// Exit codes: 0 after a signal, 1 when the simulator cannot start. Prints `listening on URL`
/// and then `admin token: T` on stdout.
pub fn run(args: &SimArgs) -> i32 {
    if args.admin_token.as_deref() == Some("") {
        eprintln!("sim: --admin-token must not be empty");
        return 1;
    }
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "sim: warning: listening on {}, which is not a loopback address: anyone who can reach it can \
             use the simulator and, with the admin token, read and change its tokens",
            args.listen
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sim: cannot start runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let handle = match crate::sim::start(args.options()).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("sim: {e:#}");
                return 1;
            }
        };
        crate::cli::out::line(format_args!("listening on {}", handle.base_url()));
        crate::cli::out::line(format_args!("admin token: {}", handle.admin_token()));
        crate::cli::out::flush();
        wait_for_signal().await;
        handle.shutdown().await;
        0
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
