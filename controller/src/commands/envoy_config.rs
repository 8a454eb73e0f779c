//! `berth envoy-config`: prints the Envoy bootstrap for the given addresses, TCP ports and TLS port.

use std::process::ExitCode;

use crate::cli::EnvoyConfigArgs;
use crate::envoy_config::{EnvoyConfig, render};

/// Exit 2 for a configuration Envoy would accept and then fail to bind.
pub fn envoy_config(args: EnvoyConfigArgs) -> ExitCode {
    let config = EnvoyConfig {
        controller: args.controller,
        wasm: args.wasm,
        http_listen: args.http_listen,
        admin: args.admin,
        tcp_ports: args.tcp_ports,
        tls_port: args.tls_port,
        edge: args.edge.settings(args.max_downstream_connections),
    };
    // Envoy itself would accept the bootstrap and fail only when binding; say so before anything is printed.
    if let Err(problem) = config.check() {
        eprintln!("berth: {problem}");
        return ExitCode::from(2);
    }
    print!("{}", render(&config));
    ExitCode::SUCCESS
}
