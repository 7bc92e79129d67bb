//! `stitch-bridge completions SHELL` and `stitch-bridge man`: shell completions and man pages,
//! generated from the clap definitions so they never drift from `--help`. Hidden commands: the
//! Debian package build (`packaging/build-deb`) runs them and ships the output.

use clap::CommandFactory;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (to stdout).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write stitch-bridge.1 and one page per command (stitch-bridge-run.1, …) into this folder
    /// instead of the main page to stdout.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> i32 {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "stitch-bridge", &mut out);
    write_stdout(&out)
}

pub fn man(args: &ManArgs) -> i32 {
    let cmd = super::Cli::command();
    match &args.dir {
        Some(dir) => {
            let written = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir));
            match written {
                Ok(()) => crate::engine::exit::OK,
                Err(e) => {
                    eprintln!("error: cannot write man pages into {}: {e}", dir.display());
                    crate::engine::exit::USAGE
                }
            }
        }
        None => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => write_stdout(&out),
                Err(e) => {
                    eprintln!("error: {e}");
                    crate::engine::exit::USAGE
                }
            }
        }
    }
}

/// A closed pipe (`| head`) is not an error worth a panic.
fn write_stdout(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => crate::engine::exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => crate::engine::exit::OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            crate::engine::exit::USAGE
        }
    }
}
