//! `stitch-bridge init`: a commented config for a local drop, and the drop's folders.

use super::Cli;
use crate::engine::exit;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The drop folder to configure (created with its layout).
    #[arg(long, default_value = "drop")]
    pub drop: String,
    /// Stitch API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub stitch_url: String,
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
            let f = &a.folders;
            for d in [&f.inbound_orders, &f.inbound_inventory, &f.inbound_shipments, &f.outbound_orders, &f.outbound_cancellations, &f.results, &f.errors, &f.archive, &f.rejected] {
                if let Err(e) = std::fs::create_dir_all(root.join(d)) {
                    eprintln!("error: cannot create {}: {e}", root.join(d).display());
                    return exit::USAGE;
                }
            }
        }
    }
    outln!("wrote {}; set STITCH_TOKEN (or token_file) and run `stitch-bridge test`", cli.config.display());
    exit::OK
}
