//! Command-line entry point: parses arguments and dispatches. Each command lives in its own file.

pub mod validate;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "stitch-bridge", version, about = "Warehouse CSV drops <-> Stitch Labs Integrations API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check files offline (no config, no network) and report every problem with its location.
    Validate(validate::ValidateArgs),
    /// Run the Stitch Labs API simulator (loopback HTTP, fault injection) until interrupted.
    Sim(crate::sim::cli::SimArgs),
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Sim(args) => crate::sim::cli::run(&args),
    }
}
