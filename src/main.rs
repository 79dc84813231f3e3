//! The `kfsim` binary: parse arguments, run, exit with a documented code.

fn main() -> std::process::ExitCode {
    let cli = kfsim::cli::parse(std::env::args_os());
    std::process::ExitCode::from(kfsim::cli::run(cli) as u8)
}
