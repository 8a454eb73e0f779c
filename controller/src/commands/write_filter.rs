//! `berth write-filter DEST`: copies the filter module the image ships to DEST, for an init container that hands
//! it to a stock Envoy container (`envoy/deploy`): the image has no shell and no `cp`.

use std::process::ExitCode;

use crate::cli::WriteFilterArgs;

/// Exit 2 when the module cannot be read or written.
pub fn write_filter(args: WriteFilterArgs) -> ExitCode {
    // Written next to DEST and renamed, so Envoy never reads half a module.
    let partial = args.dest.with_extension("partial");
    let copied = std::fs::copy(&args.wasm, &partial).and_then(|_| std::fs::rename(&partial, &args.dest));
    match copied {
        Ok(()) => {
            println!("berth: wrote {} to {}", args.wasm.display(), args.dest.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "berth: cannot copy the filter module {} to {}: {error}; check that the first exists (--wasm) and \
                 the second's directory is writable",
                args.wasm.display(),
                args.dest.display()
            );
            ExitCode::from(2)
        }
    }
}
