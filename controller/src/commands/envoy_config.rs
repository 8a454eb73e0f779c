//! `berth envoy-config`: writes the Envoy bootstrap and Berth's listeners and clusters (LDS and CDS files) for the
//! given addresses, TCP ports and TLS port.

use std::process::ExitCode;

use crate::cli::EnvoyConfigArgs;
use crate::envoy_config::{BOOTSTRAP_FILE, EnvoyConfig, render, write_files};

/// Exit 2 for a configuration Envoy would accept and then fail to bind, or when the files cannot be written.
pub fn envoy_config(args: EnvoyConfigArgs) -> ExitCode {
    let config_dir = match args.config_dir.clone().map_or_else(|| std::path::absolute(&args.out_dir), Ok) {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("berth: cannot make --out-dir {} absolute: {error}", args.out_dir.display());
            return ExitCode::from(2);
        }
    };
    let config = EnvoyConfig {
        controller: args.controller,
        wasm: args.wasm,
        http_listen: args.http_listen,
        admin: args.admin,
        tcp_ports: args.tcp_ports,
        tls_port: args.tls_port,
        edge: args.edge.settings(args.max_downstream_connections),
        config_dir,
    };
    // Envoy itself would accept the config and fail only when binding; say so before anything is written.
    if let Err(problem) = config.check() {
        eprintln!("berth: {problem}");
        return ExitCode::from(2);
    }
    let rendered = render(&config);
    if let Err(error) = write_files(&rendered, &args.out_dir) {
        eprintln!("berth: cannot write the Envoy config into {}: {error}", args.out_dir.display());
        return ExitCode::from(2);
    }
    let files: Vec<String> =
        rendered.files().iter().map(|(name, _)| args.out_dir.join(name).display().to_string()).collect();
    println!("wrote {}", files.join(", "));
    println!("run: envoy -c {}", config.config_dir.join(BOOTSTRAP_FILE).display());
    ExitCode::SUCCESS
}
