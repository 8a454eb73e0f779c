//! `berth istio-config`: prints the Istio EnvoyFilter for the module at `--wasm` (read only for its sha256).

use std::process::ExitCode;

use crate::cli::IstioConfigArgs;
use crate::istio_config::{IstioConfig, render};
use crate::server::FilterModule;

/// Exit 2 when the module cannot be read or the ports collide.
pub fn istio_config(args: IstioConfigArgs) -> ExitCode {
    let module = match FilterModule::load(&args.wasm) {
        Ok(module) => module,
        Err(error) => {
            eprintln!("berth: {error}");
            return ExitCode::from(2);
        }
    };
    let config = IstioConfig {
        controller: args.controller_service,
        wasm_sha256: module.sha256,
        http_port: args.http_port,
        tcp_ports: args.tcp_ports,
        tls_port: args.tls_port,
        selector: args.gateway_selector,
        namespace: args.namespace,
        edge: args.edge.settings(crate::envoy_edge::DEFAULT_MAX_DOWNSTREAM_CONNECTIONS),
        allow_istio_ports: args.allow_istio_ports,
    };
    if let Err(problem) = config.check() {
        eprintln!("berth: {problem}");
        return ExitCode::from(2);
    }
    print!("{}", render(&config));
    ExitCode::SUCCESS
}
