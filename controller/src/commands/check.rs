//! `berth check PATH`: load and compile offline, print the routes, the addresses and every problem. Exit 0 when
//! there is no error (warnings allowed), 1 when there is any, 2 when PATH or the state file cannot be read.

use std::path::Path;
use std::process::ExitCode;

use crate::api::Address;
use crate::cli::CheckArgs;
use crate::compiler::{Compiled, HeldPorts, Options, compile};
use crate::health;
use crate::index::Index;
use crate::objects::health_check::DEFAULT_INTERVAL;
use crate::source::dir;
use crate::source::dir_clusters::Splitter;
use crate::{Result, report, state};

pub fn check(args: CheckArgs) -> ExitCode {
    let held = match args.state.as_deref().map(|path| state::load(path).map(|state| state.ports)).transpose() {
        Ok(held) => held.unwrap_or_default(),
        Err(error) => {
            eprintln!("berth check: {error}");
            return ExitCode::from(2);
        }
    };
    let options = Options { backends: args.backends, tls_port: args.tls_port, ..Options::default() };
    let compiled = match compile_path(&args.path, &options, &held) {
        Ok(compiled) => compiled,
        Err(error) => {
            eprintln!("berth check: {error}");
            return ExitCode::from(2);
        }
    };
    let (warnings, errors): (Vec<_>, Vec<_>) = compiled.diagnostics.iter().partition(|d| d.is_warning());
    let errors: Vec<String> = errors.into_iter().map(ToString::to_string).collect();
    let warnings: Vec<String> = warnings.into_iter().map(ToString::to_string).collect();
    let addresses: Vec<Address> =
        compiled.assignments.values().chain(&compiled.tls_addresses).filter_map(Address::of).collect();
    print!("{}", report::render(&compiled.content.to_table(0), None, &addresses, &errors, &warnings, &[]));
    if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// What `berth run --source dir:PATH` would serve first, given the ports held before.
pub fn compile_path(path: &Path, options: &Options, held: &HeldPorts) -> Result<Compiled> {
    let snapshot = dir::load(path)?;
    let mut index = Index::new();
    for (source, snapshot) in Splitter::new(path, &format!("dir:{}", path.display())).split(snapshot) {
        index.reset(source, snapshot.objects, snapshot.diagnostics);
    }
    let mut compiled = compile(&index, options, held);
    // As `berth run` reports them; checking itself needs a running controller.
    compiled.diagnostics.extend(health::annotation_diagnostics(&index, DEFAULT_INTERVAL));
    Ok(compiled)
}
