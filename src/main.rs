//! The `kfsim` binary: parse arguments, run, exit with a documented code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kfsim::cli::Cli::parse();
    std::process::ExitCode::from(kfsim::cli::run(cli) as u8)
}
