//! The directory source: every `*.yaml`/`*.yml` file under a path, read in path order, and re-read whole when
//! anything under the path changes.
//!
//! Reading everything again is simpler than tracking single files and copes with whatever editors do (write in
//! place, write a temporary file and rename it over the original, delete and recreate). Files and directories
//! whose names start with `.` are skipped: editors' temporary files, and the `..data` links of a mounted
//! ConfigMap, which would otherwise show every file twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Snapshot;
use crate::objects::parse_yaml;
use crate::{Diagnostic, Error, Result};

/// How long the directory must be quiet before it is read again: editors and `kubectl`-style tools make several
/// changes for one save.
const QUIET: Duration = Duration::from_millis(50);
/// Read again at least this often while changes keep coming.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Directory links can form loops; nobody nests manifests deeper than this.
const MAX_DEPTH: usize = 32;

/// Reads every object under `root` (a directory, or a single file). Fails only when `root` itself cannot be read;
/// a bad file or document becomes a diagnostic.
pub fn load(root: &Path) -> Result<Snapshot> {
    let metadata = std::fs::metadata(root).map_err(|error| Error::Read { path: root.to_path_buf(), error })?;
    let mut files = Vec::new();
    let mut snapshot = Snapshot::default();
    if metadata.is_dir() {
        // The root must be listable; problems deeper down are diagnostics.
        std::fs::read_dir(root).map_err(|error| Error::Read { path: root.to_path_buf(), error })?;
        collect(root, 0, &mut files, &mut snapshot.diagnostics);
    } else {
        files.push(root.to_path_buf());
    }
    files.sort();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let parsed = parse_yaml(&file, &text);
                snapshot.objects.extend(parsed.objects.into_iter().map(|o| (o, Some(file.clone()))));
                snapshot.diagnostics.extend(parsed.diagnostics);
            }
            Err(error) => {
                snapshot.diagnostics.push(Diagnostic::new(format!("cannot read: {error}")).file(Some(file)));
            }
        }
    }
    Ok(snapshot)
}

fn collect(dir: &Path, depth: usize, files: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            diagnostics.push(Diagnostic::new(format!("cannot read directory: {error}")).file(Some(dir.to_path_buf())));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow links: a mounted ConfigMap's files are links.
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        if metadata.is_dir() {
            if depth < MAX_DEPTH {
                collect(&path, depth + 1, files, diagnostics);
            }
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            files.push(path);
        }
    }
}

/// Watches `root` and sends a fresh [`Snapshot`] after every burst of changes, until `updates` is closed.
/// The watch is set up before this returns, so no change made after it is missed.
pub fn watch(root: PathBuf, updates: mpsc::Sender<Snapshot>) -> Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        if event.as_ref().map_or(true, is_change) {
            // The receiver is gone only when we are shutting down.
            let _ = tx.send(());
        }
    })
    .map_err(|error| Error::Watch { path: root.clone(), error })?;
    watcher.watch(&root, RecursiveMode::Recursive).map_err(|error| Error::Watch { path: root.clone(), error })?;

    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the watch
        while rx.recv().await.is_some() {
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = tokio::time::Instant::now() + QUIET;
                match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
                    Ok(Some(())) if quiet < deadline => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            let path = root.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&path)).await;
            match loaded {
                Ok(Ok(snapshot)) => {
                    debug!(root = %root.display(), objects = snapshot.objects.len(), "directory read again");
                    if updates.send(snapshot).await.is_err() {
                        return;
                    }
                }
                // Keep serving what was last read: a directory briefly missing (being replaced) is no reason to
                // drop every route.
                Ok(Err(error)) => warn!(%error, "keeping the last objects read"),
                Err(error) => warn!(%error, "reading the directory failed"),
            }
        }
    }))
}

/// Reading files makes access events; only changes matter (a close after writing is the surest sign of one).
fn is_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("berth-dir-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            // Canonical, so paths compare equal with what the watcher reports.
            TempDir(path.canonicalize().unwrap())
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: NAME\n";

    fn names(snapshot: &Snapshot) -> Vec<String> {
        snapshot.objects.iter().map(|(o, _)| o.key().name).collect()
    }

    #[test]
    fn loads_yaml_files_recursively_in_path_order_and_skips_the_rest() {
        let dir = TempDir::new();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/deeper")).unwrap();
        std::fs::create_dir_all(root.join("..data")).unwrap();
        std::fs::write(root.join("z.yaml"), NODE.replace("NAME", "z")).unwrap();
        std::fs::write(root.join("a.yml"), NODE.replace("NAME", "a")).unwrap();
        std::fs::write(root.join("b/deeper/m.yaml"), NODE.replace("NAME", "m")).unwrap();
        std::fs::write(root.join("..data/a.yaml"), NODE.replace("NAME", "hidden")).unwrap();
        std::fs::write(root.join(".a.yaml.swp"), "junk").unwrap();
        std::fs::write(root.join("notes.txt"), "junk").unwrap();
        std::fs::write(root.join("bad.yaml"), "kind: [").unwrap();
        let snapshot = load(root).unwrap();
        assert_eq!(names(&snapshot), ["a", "m", "z"]);
        assert_eq!(snapshot.objects[1].1.as_deref(), Some(root.join("b/deeper/m.yaml").as_path()));
        assert_eq!(snapshot.diagnostics.len(), 1);
        assert_eq!(snapshot.diagnostics[0].file.as_deref(), Some(root.join("bad.yaml").as_path()));
    }

    #[test]
    fn a_single_file_can_be_loaded() {
        let dir = TempDir::new();
        let file = dir.path().join("one.yaml");
        std::fs::write(&file, NODE.replace("NAME", "one")).unwrap();
        assert_eq!(names(&load(&file).unwrap()), ["one"]);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let dir = TempDir::new();
        let error = load(&dir.path().join("nope")).err().unwrap();
        assert!(error.to_string().contains("nope"), "{error}");
    }

    async fn next(rx: &mut mpsc::Receiver<Snapshot>) -> Vec<String> {
        names(&tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn watch_sends_a_snapshot_after_files_are_added_edited_renamed_and_deleted() {
        let dir = TempDir::new();
        let root = dir.path().to_path_buf();
        let (tx, mut rx) = mpsc::channel(8);
        let _task = watch(root.clone(), tx).unwrap();

        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a")).unwrap();
        assert_eq!(next(&mut rx).await, ["a"]);

        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a2")).unwrap();
        assert_eq!(next(&mut rx).await, ["a2"]);

        // An editor's save: write a temporary file, rename it into place.
        std::fs::write(root.join(".a.yaml.tmp"), NODE.replace("NAME", "a3")).unwrap();
        std::fs::rename(root.join(".a.yaml.tmp"), root.join("a.yaml")).unwrap();
        let mut seen = next(&mut rx).await;
        while seen != ["a3"] {
            seen = next(&mut rx).await;
        }

        std::fs::remove_file(root.join("a.yaml")).unwrap();
        assert!(next(&mut rx).await.is_empty());
    }
}
