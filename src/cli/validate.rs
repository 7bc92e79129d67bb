//! `stitch-bridge validate`: offline checking of warehouse files.

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

pub fn run(_args: &ValidateArgs) -> i32 {
    2
}
