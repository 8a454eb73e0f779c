//! `berth check PATH`: load and compile offline, print the routes and every problem. Exit 0 when there is no
//! problem, 1 when there is any, 2 when PATH cannot be read.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::compiler::{Compiled, Options, compile};
use crate::index::Index;
use crate::source::dir;
use crate::{Result, report};

pub fn check(args: CheckArgs) -> ExitCode {
    let compiled = match compile_path(&args.path, &Options { backends: args.backends }) {
        Ok(compiled) => compiled,
        Err(error) => {
            eprintln!("berth check: {error}");
            return ExitCode::from(2);
        }
    };
    let errors: Vec<String> = compiled.diagnostics.iter().map(ToString::to_string).collect();
    print!("{}", report::render(&compiled.content.to_table(0), None, &errors));
    if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// What `berth run --source dir:PATH` would serve first.
pub fn compile_path(path: &Path, options: &Options) -> Result<Compiled> {
    let snapshot = dir::load(path)?;
    let mut index = Index::new();
    index.reset(&format!("dir:{}", path.display()), snapshot.objects, snapshot.diagnostics);
    Ok(compile(&index, options))
}
