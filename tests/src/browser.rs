//! Headless Chromium (Debian's `chromium`), for what people look at in a browser: the DOM a page renders to, and a
//! screenshot kept as a test artifact under `target/test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::paths;

/// How long one Chromium run may take, starting included (slow on a loaded machine).
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The Chromium binary: `$BERTH_CHROMIUM`, else `chromium` on the PATH. Fails the test (never skips it) when there
/// is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "chromium not found on the PATH (nor $BERTH_CHROMIUM): the status page test needs Debian's headless \
             Chromium; `make test` installs it (apt-get install chromium)"
        )
    })
}

/// `url` rendered by headless Chromium in a window of `width`×`height`: the serialized DOM after the page loaded.
pub fn dump_dom(url: &str, width: u32, height: u32) -> String {
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    run(profile.path(), width, height, &["--dump-dom".to_string(), url.to_string()])
}

/// Saves a screenshot of `url` in a `width`×`height` window to `target/test-artifacts/<name>.png`, and returns its
/// path.
pub fn screenshot(url: &str, width: u32, height: u32, name: &str) -> PathBuf {
    let dir = paths::workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    run(profile.path(), width, height, &[format!("--screenshot={}", path.display()), url.to_string()]);
    assert!(path.is_file(), "Chromium wrote no screenshot to {}", path.display());
    path
}

fn run(profile: &Path, width: u32, height: u32, args: &[String]) -> String {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", chromium().display()));
    let pid = child.id();
    // Chromium can hang on a broken page or machine: kill it after RUN_LIMIT rather than hang the suite.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(RUN_LIMIT) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().expect("wait for chromium");
    let _ = done.send(());
    let _ = watchdog.join();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
