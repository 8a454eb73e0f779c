//! The `berth` binary: parses the command line, sets up logging to stderr ([`berth_controller::logging`]), and runs
//! the chosen command.

use std::process::ExitCode;

use anyhow::Context;
use berth_controller::cli::{Cli, Command};
use berth_controller::commands;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    berth_controller::logging::init(cli.log_format, cli.log_level.as_deref());
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("berth: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(commands::run::run(args))?;
        }
        Command::Check(args) => return Ok(commands::check::check(args)),
        Command::Routes(args) => commands::routes::routes(args)?,
        Command::EnvoyConfig(args) => return Ok(commands::envoy_config::envoy_config(args)),
        Command::Crdgen => commands::crdgen::crdgen(),
        Command::IstioConfig(args) => return Ok(commands::istio_config::istio_config(args)),
        Command::WriteFilter(args) => return Ok(commands::write_filter::write_filter(args)),
    }
    Ok(ExitCode::SUCCESS)
}
