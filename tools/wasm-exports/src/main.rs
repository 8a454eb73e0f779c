//! `berth-wasm-exports --keep LIST IN OUT`: writes IN to OUT with only the exports LIST names (see the library).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_wasm_exports::{keep_exports, parse_list};

const USAGE: &str = "usage: berth-wasm-exports --keep LIST IN OUT\n\
    writes the WebAssembly module IN to OUT with only the exports named in LIST (one a line, # comments)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, list, input, output] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if flag != "--keep" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(list.into(), input.into(), output.into()) {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("berth-wasm-exports: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run(list: PathBuf, input: PathBuf, output: PathBuf) -> Result<String, String> {
    let list_text =
        std::fs::read_to_string(&list).map_err(|error| format!("cannot read the list {}: {error}", list.display()))?;
    let keep = parse_list(&list_text);
    let module =
        std::fs::read(&input).map_err(|error| format!("cannot read the module {}: {error}", input.display()))?;
    let trimmed = keep_exports(&module, &keep).map_err(|error| format!("{}: {error}", input.display()))?;
    std::fs::write(&output, &trimmed.module)
        .map_err(|error| format!("cannot write the module {}: {error}", output.display()))?;
    Ok(format!(
        "{}: kept {} exports named in {}, dropped {}: {}",
        output.display(),
        keep.len(),
        list.display(),
        trimmed.dropped.len(),
        trimmed.dropped.join(", ")
    ))
}
