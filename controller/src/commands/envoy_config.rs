//! `berth envoy-config`: prints the Envoy bootstrap for the given addresses.

use crate::cli::EnvoyConfigArgs;
use crate::envoy_config::{EnvoyConfig, render};

pub fn envoy_config(args: EnvoyConfigArgs) {
    let config =
        EnvoyConfig { controller: args.controller, wasm: args.wasm, http_listen: args.http_listen, admin: args.admin };
    print!("{}", render(&config));
}
