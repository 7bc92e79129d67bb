//! Command-line entry point: parses arguments and dispatches. Each command lives in its own file.

/// `println!` to stdout without the panic on a closed pipe or a full device; see [`out`].
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::out::line(format_args!($($t)*)) };
}

/// `print!` to stdout without the panic; see [`out`].
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out::text(format_args!($($t)*)) };
}

pub mod accounts;
pub mod adopt;
pub mod auth;
pub mod demo;
pub mod generate;
pub mod init;
pub mod out;
pub mod run;
pub mod sim;
pub mod status;
pub mod test_cmd;
pub mod trust;
pub mod ui;
pub mod validate;
pub mod watch;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `--config` when neither the flag nor `STITCH_BRIDGE_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "stitch-bridge.toml";

#[derive(Parser, Debug)]
#[command(name = "stitch-bridge", version, about = "Warehouse CSV drops <-> Stitch Labs Integrations API")]
pub struct Cli {
    /// Configuration file (also taken after the command, by every command that reads it).
    #[arg(long, env = "STITCH_BRIDGE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, env = "STITCH_BRIDGE_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
    /// Only warnings and errors in the log.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check files offline (no network; a config only for `--account`) and report every problem
    /// with its location.
    Validate(validate::ValidateArgs),
    /// One full cycle for every configured account: inbound files, then order and cancel download.
    #[command(
        after_help = "Exit codes: 0 everything applied; 1 some rows rejected; 2 usage, configuration or ledger problem; \
3 an account is halted (401/403); 4 transient failures left work pending (the next run resumes it); \
5 an account needs attention (a problem only a person can fix: see `status`)."
    )]
    Run(run::RunArgs),
    /// The whole loop against a built-in simulator in a temporary drop: no set-up, loopback only.
    Demo(demo::DemoArgs),
    /// Run the Stitch Labs API simulator (loopback HTTP, fault injection) until interrupted.
    Sim(sim::SimArgs),
    /// Check an account like CartRover's Test button: drop reachable and writable, token, features.
    Test(test_cmd::TestArgs),
    /// One-time OAuth code exchange for an account; stores the token (mode 0600).
    Auth(auth::AuthArgs),
    /// Recent files, outcomes, halts and pending work, from the ledger.
    Status(status::StatusArgs),
    /// Resume an account halted after Stitch refused its credentials.
    Resume(accounts::ResumeArgs),
    /// Write a commented configuration for a local drop.
    Init(init::InitArgs),
    /// Run cycles continuously: local drops on file events, sFTP drops by polling; downloads on
    /// their own interval. One watcher per drop (lease in the ledger). SIGINT/SIGTERM stop cleanly.
    Watch(watch::WatchArgs),
    /// Show an sFTP server's host key fingerprint and, once confirmed, record it in known_hosts.
    Trust(trust::TrustArgs),
    /// Make the configured ledger serve an account's drop whose marker names another ledger (or
    /// initialise a ledger file that lost its tables). The next run sends what this ledger has no
    /// record of sending.
    Adopt(adopt::AdoptArgs),
    /// The operator console: accounts, files, errors, orders and alerts in a browser, with
    /// resume, clear, reprocess and upload (these need the `[ui] token_env` token).
    Ui(ui::UiArgs),
    /// Write a shell completion script (bash, zsh, fish) to stdout; the package ships them.
    #[command(hide = true)]
    Completions(generate::CompletionsArgs),
    /// Write the man page (or, with --dir, one page per command); the package ships them.
    #[command(hide = true)]
    Man(generate::ManArgs),
}

fn init_logging(format: LogFormat, quiet: bool, default: &str) {
    use tracing_subscriber::{filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("STITCH_BRIDGE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(if quiet { "warn" } else { default }));
    // rPGP's own debug records print secret key material: never written, whatever the filter
    // asks for (a directive could re-enable them; this cannot).
    let no_key_material = filter_fn(|m| !crate::wrap::pgp::is_rpgp_log_target(m.target()));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => {
            use std::io::IsTerminal;
            let layer = layer.with_target(false).with_ansi(std::io::stderr().is_terminal());
            tracing_subscriber::registry().with(filter).with(layer.with_filter(no_key_material)).try_init()
        }
        LogFormat::Json => {
            tracing_subscriber::registry().with(filter).with(layer.json().with_filter(no_key_material)).try_init()
        }
    };
}

/// Find a configured account or explain; exit code 2.
pub fn find_account<'a>(config: &'a crate::config::Config, name: &str) -> Result<&'a crate::config::Account, i32> {
    config.account(name).ok_or_else(|| {
        eprintln!("error: no account named {name:?} in the configuration");
        crate::engine::exit::USAGE
    })
}

/// Open the ledger or explain (locked, damaged, newer); exit code 2.
pub fn open_ledger(config: &crate::config::Config) -> Result<crate::ledger::Ledger, i32> {
    crate::ledger::Ledger::open_at(&config.ledger).map_err(|e| {
        eprintln!("error: {e}");
        crate::engine::exit::USAGE
    })
}

/// Load the configuration for a command that works on accounts (`run`, `watch`, `test`,
/// `status`): a configuration with no `[[account]]`, or a name it does not have, is a usage
/// error (exit 2) naming what is wrong, never a silent success.
pub fn load_accounts<S: AsRef<str>>(path: &std::path::Path, only: &[S]) -> Result<crate::config::Config, i32> {
    let config = load_config(path)?;
    if config.accounts.is_empty() {
        eprintln!(
            "error: {} configures no accounts; add an [[account]] table (`stitch-bridge init` writes an example)",
            path.display()
        );
        return Err(crate::engine::exit::USAGE);
    }
    for name in only {
        if config.account(name.as_ref()).is_none() {
            let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
            eprintln!(
                "error: no account named {:?} in {}; accounts: {}",
                name.as_ref(),
                path.display(),
                known.join(", ")
            );
            return Err(crate::engine::exit::USAGE);
        }
    }
    Ok(config)
}

/// Load the configuration or explain why not; exit code 2 on failure.
pub fn load_config(path: &std::path::Path) -> Result<crate::config::Config, i32> {
    match crate::config::Config::load(path) {
        Ok(c) => {
            warn_if_readable_by_others(path);
            for a in &c.accounts {
                if let crate::config::TokenSource::File(token) = &a.token {
                    warn_if_token_readable_by_others(token);
                }
            }
            Ok(c)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, crate::config::ConfigError::Read { .. }) {
                eprintln!(
                    "hint: `stitch-bridge init` writes a commented configuration; `--config FILE` picks another file"
                );
            }
            Err(crate::engine::exit::USAGE)
        }
    }
}

/// Configs name secrets' locations and sometimes hold partner details: say so if others can read it.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o004 != 0 {
            tracing::warn!("config {} is readable by every user on this machine; consider chmod 640", path.display());
        }
    }
}

/// Commands that never read the configuration: `--config` is neither offered nor accepted after
/// them (a global `--config` would suggest it changes what they do).
const WITHOUT_CONFIG: [&str; 4] = ["demo", "sim", "completions", "man"];

/// Id of the `--config` each other command takes after its name.
const COMMAND_CONFIG: &str = "command_config";

/// The clap command: `Cli`, plus `--config` on every command that reads the configuration.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| !WITHOUT_CONFIG.contains(&n.as_str()))
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |c| {
            c.arg(
                clap::Arg::new(COMMAND_CONFIG)
                    .long("config")
                    .value_name("CONFIG")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Configuration file [env: STITCH_BRIDGE_CONFIG] [default: stitch-bridge.toml]"),
            )
        });
    }
    cmd
}

fn parse_cli() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let matches = command().try_get_matches()?;
    let given = matches
        .subcommand()
        // `demo` and `sim` have no such argument: asking them is an error, not a panic.
        .and_then(|(_, sub)| sub.try_get_one::<PathBuf>(COMMAND_CONFIG).ok().flatten().cloned());
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Some(path) = given {
        cli.config = path;
    }
    Ok(cli)
}

/// A token file is the account's credential: anyone who can read it can act as the bridge, and a
/// new one cannot be had without creating a duplicate channel (see `auth`). `auth` writes 0600.
fn warn_if_token_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(md) = std::fs::metadata(path) {
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            tracing::warn!(
                "token file {} is readable by users other than its owner (mode {mode:04o}); consider chmod 600",
                path.display()
            );
        }
    }
}

/// Runs the command; output failures are mapped to the exit code here (see [`out::finish`]).
pub fn main() -> i32 {
    let code = dispatch();
    out::finish(code)
}

fn dispatch() -> i32 {
    let cli = match parse_cli() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout, which may be closed or full.
            if let Err(w) = e.print() {
                if !e.use_stderr() {
                    out::record(w);
                }
            }
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let default_level = match cli.command {
        Command::Validate(_) | Command::Completions(_) | Command::Man(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, cli.quiet, default_level);
    match &cli.command {
        Command::Validate(args) => validate::run(args, &cli.config),
        Command::Run(args) => run::run(&cli, args),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Test(args) => test_cmd::run(&cli, args),
        Command::Auth(args) => auth::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Resume(args) => accounts::resume(&cli, args),
        Command::Init(args) => init::run(&cli, args),
        Command::Watch(args) => watch::run(&cli, args),
        Command::Trust(args) => trust::run(&cli, args),
        Command::Adopt(args) => adopt::run(&cli, args),
        Command::Ui(args) => ui::run(&cli, args),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
    }
}

/// Write a file readable only by its owner (`mode`, e.g. 0600 for tokens, 0640 for configs),
/// also when it exists with a looser mode: `mode` applies only on create, so an existing file is
/// tightened before the content goes in.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)
}
