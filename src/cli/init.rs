//! `stitch-bridge init`: a commented config for a local drop, and the drop's folders.
//!
//! The defaults point at the simulator as `sim` starts without options (same address, and the
//! printed next steps export its default token), so `init`, `sim`, `test` works with no edits.

use super::Cli;
use crate::engine::exit;
use crate::sim::{DEFAULT_LISTEN, DEFAULT_TOKEN};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The drop folder to configure (created with its layout).
    #[arg(long, default_value = "drop")]
    pub drop: String,
    /// Stitch API base URL; the default is where `stitch-bridge sim` listens by default.
    #[arg(long, default_value_t = default_stitch_url())]
    pub stitch_url: String,
}

/// `sim`'s default address as a URL.
pub fn default_stitch_url() -> String {
    format!("http://{DEFAULT_LISTEN}")
}

pub fn run(cli: &Cli, args: &InitArgs) -> i32 {
    if cli.config.exists() {
        eprintln!("error: {} already exists; not overwriting it", cli.config.display());
        return exit::USAGE;
    }
    let text = crate::config::template(&args.drop, &args.stitch_url);
    if let Some(dir) = cli.config.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return exit::USAGE;
        }
    }
    // 0640: a config names tokens' and passwords' locations; `load_config` warns about looser.
    if let Err(e) = super::write_private(&cli.config, text.as_bytes(), 0o640) {
        eprintln!("error: cannot write {}: {e}", cli.config.display());
        return exit::USAGE;
    }
    let config = match super::load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for a in &config.accounts {
        if let crate::config::DropLocation::Local(root) = &a.drop {
            for d in a.drop_folders() {
                if let Err(e) = std::fs::create_dir_all(root.join(d)) {
                    eprintln!("error: cannot create {}: {e}", root.join(d).display());
                    return exit::USAGE;
                }
            }
        }
    }
    out!("{}", next_steps(cli, &args.stitch_url));
    exit::OK
}

/// What to run next, as commands that work when pasted: against the simulator when the URL is
/// a loopback `http://` address (`sim` only listens there), otherwise with the operator's token.
fn next_steps(cli: &Cli, stitch_url: &str) -> String {
    let config_arg = if cli.config == std::path::Path::new(super::DEFAULT_CONFIG) {
        String::new()
    } else {
        format!(" --config {}", shell_word(&cli.config.to_string_lossy()))
    };
    let mut out = format!("wrote {} and the drop folders\n", cli.config.display());
    let sim_listen = reqwest::Url::parse(stitch_url).ok().filter(|u| u.scheme() == "http").and_then(|u| {
        let host = u.host_str()?.to_string();
        let loopback = host == "localhost"
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback.then(|| format!("{host}:{}", u.port_or_known_default().unwrap_or(80)))
    });
    match sim_listen {
        Some(listen) => {
            let listen_arg = if listen == DEFAULT_LISTEN { String::new() } else { format!(" --listen {listen}") };
            out += &format!(
                "next, against the built-in simulator at {stitch_url}:\n  \
                 stitch-bridge sim{listen_arg} &\n  \
                 export STITCH_TOKEN={DEFAULT_TOKEN}    # the simulator's default token\n  \
                 stitch-bridge{config_arg} test\n"
            );
        }
        None => {
            out += &format!(
                "next: export STITCH_TOKEN=<your Stitch token> (or set token_file and run `stitch-bridge{config_arg} auth main`),\n\
                 then run `stitch-bridge{config_arg} test`\n"
            );
        }
    }
    out
}

/// Quote a path for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
