//! The directory source: every `*.yaml`/`*.yml` file under a path, read in path order, then kept file by file:
//! after a change only the paths the watcher names are read again (a file, or a directory and everything under it).
//!
//! Going by the paths that changed copes with whatever editors do (write in place, write a temporary file and
//! rename it over the original, delete and recreate) and costs what the change costs, not what the directory
//! holds. Files and directories whose names start with `.` are skipped: editors' temporary files, and the
//! `..data` links of a mounted ConfigMap, which would otherwise show every file twice. A change under such a name
//! is therefore ignored, except when the directory holds links: a ConfigMap's files are links through `..data`,
//! which is swapped whole, so their content changes without an event of their own. Then, and whenever the
//! watcher may have missed something (its queue overflowed, or it failed), everything is read again.
//!
//! Files are kept by their path under the root, so what a path's first directory means (e.g. a cluster) can be
//! decided where the snapshot is made, without reading anything again.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Snapshot;
use crate::objects::{Parsed, parse_yaml};
use crate::{Diagnostic, Error, Result};

/// How long the directory must be quiet before it is read again: editors and `kubectl`-style tools make several
/// changes for one save, within a millisecond or two. Every change waits this long, so it is short; a writer that
/// pauses longer in the middle costs an extra update (of what the files held then), which the next one corrects.
const QUIET: Duration = Duration::from_millis(20);
/// Read again at least this often while changes keep coming.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Directory links can form loops; nobody nests manifests deeper than this.
const MAX_DEPTH: usize = 32;

/// Reads every object under `root` (a directory, or a single file). Fails only when `root` itself cannot be read;
/// a bad file or document becomes a diagnostic.
pub fn load(root: &Path) -> Result<Snapshot> {
    Ok(Tree::load(root)?.snapshot())
}

/// Everything read under a root, file by file, kept between changes.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    /// False when the root is a single file: that is read again whole on any change.
    is_dir: bool,
    /// Every manifest file, by path (as reached from the root), with what it held or why it cannot be read.
    files: BTreeMap<PathBuf, Parsed>,
    /// Directories that cannot be listed, with why.
    unlisted: BTreeMap<PathBuf, Diagnostic>,
    /// Whether any entry read is a link: then a change under a skipped name may change what a link shows.
    links: bool,
}

/// What a burst of watcher events named.
#[derive(Debug, Default)]
pub struct Changes {
    /// The watcher may have missed events: read everything again.
    pub everything: bool,
    pub paths: BTreeSet<PathBuf>,
}

impl Changes {
    fn add(&mut self, change: Change) {
        match change {
            Change::Paths(paths) => self.paths.extend(paths),
            Change::Everything => self.everything = true,
        }
    }
}

/// One watcher event, as far as reading goes.
#[derive(Debug)]
enum Change {
    Paths(Vec<PathBuf>),
    Everything,
}

/// Where a changed path lies, relative to the root.
enum Place {
    /// The root itself, or somewhere this source cannot tell apart: read everything again.
    Unknown,
    /// Under a name that starts with `.`.
    Skipped,
    /// A path this source reads, `depth` names below the root.
    Read { depth: usize },
}

impl Tree {
    /// Reads every manifest under `root`. Fails only when `root` itself cannot be read.
    pub fn load(root: &Path) -> Result<Tree> {
        let metadata = std::fs::metadata(root).map_err(|error| Error::Read { path: root.to_path_buf(), error })?;
        let mut tree = Tree {
            root: root.to_path_buf(),
            is_dir: metadata.is_dir(),
            files: BTreeMap::new(),
            unlisted: BTreeMap::new(),
            links: false,
        };
        if tree.is_dir {
            // The root must be listable; problems deeper down are diagnostics.
            std::fs::read_dir(root).map_err(|error| Error::Read { path: root.to_path_buf(), error })?;
            tree.scan(root, 0);
        } else {
            tree.read(root.to_path_buf());
        }
        Ok(tree)
    }

    /// Reads again what `changes` names. Fails, leaving the tree as it was, only when everything had to be read
    /// again and the root cannot be read.
    pub fn refresh(&mut self, changes: &Changes) -> Result<()> {
        let mut reread = Vec::new();
        let mut everything = changes.everything || !self.is_dir;
        for path in &changes.paths {
            match self.place(path) {
                Place::Read { depth } => reread.push((path, depth)),
                Place::Skipped => everything |= self.links,
                Place::Unknown => everything = true,
            }
        }
        if everything {
            *self = Tree::load(&self.root)?;
            return Ok(());
        }
        for (path, depth) in reread {
            self.forget(path);
            self.links |= std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            // Follow links, as the first read does. Gone: nothing more to do.
            let Ok(metadata) = std::fs::metadata(path) else { continue };
            if metadata.is_dir() {
                if depth <= MAX_DEPTH {
                    self.scan(path, depth);
                }
            } else if is_manifest(path) && depth <= MAX_DEPTH + 1 {
                self.read(path.to_path_buf());
            }
        }
        Ok(())
    }

    /// Everything read, files in path order.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.diagnostics.extend(self.unlisted.values().cloned());
        for (file, parsed) in &self.files {
            snapshot.objects.extend(parsed.objects.iter().map(|object| (object.clone(), Some(file.clone()))));
            snapshot.diagnostics.extend(parsed.diagnostics.iter().cloned());
        }
        snapshot
    }

    fn place(&self, path: &Path) -> Place {
        let Ok(relative) = path.strip_prefix(&self.root) else { return Place::Unknown };
        let mut depth = 0;
        for component in relative.components() {
            match component {
                Component::Normal(name) if name.to_string_lossy().starts_with('.') => return Place::Skipped,
                Component::Normal(_) => depth += 1,
                _ => return Place::Unknown,
            }
        }
        if depth == 0 { Place::Unknown } else { Place::Read { depth } }
    }

    /// Drops what was read at `path` and under it.
    fn forget(&mut self, path: &Path) {
        fn under<V>(map: &BTreeMap<PathBuf, V>, path: &Path) -> Vec<PathBuf> {
            // A path sorts right before everything under it.
            map.range::<Path, _>((Bound::Included(path), Bound::Unbounded))
                .map(|(key, _)| key)
                .take_while(|key| key.starts_with(path))
                .cloned()
                .collect()
        }
        for key in under(&self.files, path) {
            self.files.remove(&key);
        }
        for key in under(&self.unlisted, path) {
            self.unlisted.remove(&key);
        }
    }

    /// Reads every manifest in `dir`, which is `depth` names below the root, and below it.
    fn scan(&mut self, dir: &Path, depth: usize) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                let diagnostic = Diagnostic::new(format!("cannot read directory: {error}")).file(Some(dir.into()));
                self.unlisted.insert(dir.to_path_buf(), diagnostic);
                return;
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            self.links |= entry.file_type().is_ok_and(|t| t.is_symlink());
            // Follow links: a mounted ConfigMap's files are links.
            let Ok(metadata) = std::fs::metadata(&path) else { continue };
            if metadata.is_dir() {
                if depth < MAX_DEPTH {
                    self.scan(&path, depth + 1);
                }
            } else if is_manifest(&path) {
                self.read(path);
            }
        }
    }

    fn read(&mut self, file: PathBuf) {
        let parsed = match std::fs::read_to_string(&file) {
            Ok(text) => parse_yaml(&file, &text),
            Err(error) => Parsed {
                objects: Vec::new(),
                diagnostics: vec![Diagnostic::new(format!("cannot read: {error}")).file(Some(file.clone()))],
            },
        };
        self.files.insert(file, parsed);
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Watches `root`, reads it, and returns what it holds; then sends a fresh [`Snapshot`] after every burst of
/// changes, until `updates` is closed. The watch is set up before the first read, so no change is missed.
pub async fn watch(root: PathBuf, updates: mpsc::Sender<Snapshot>) -> Result<(Snapshot, tokio::task::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let change = match event {
            Ok(event) if event.need_rescan() => Change::Everything,
            Ok(event) if is_change(&event) => Change::Paths(event.paths),
            Ok(_) => return,
            Err(_) => Change::Everything,
        };
        // The receiver is gone only when we are shutting down.
        let _ = tx.send(change);
    })
    .map_err(|error| Error::Watch { path: root.clone(), error })?;
    watcher.watch(&root, RecursiveMode::Recursive).map_err(|error| Error::Watch { path: root.clone(), error })?;

    let (tree, first) = read_blocking(None, root.clone(), Changes::default()).await??;
    let mut tree = Some(tree);
    Ok((
        first,
        tokio::spawn(async move {
            let _watcher = watcher; // dropping it stops the watch
            while let Some(change) = rx.recv().await {
                let mut changes = Changes::default();
                changes.add(change);
                let deadline = tokio::time::Instant::now() + MAX_DELAY;
                loop {
                    let quiet = tokio::time::Instant::now() + QUIET;
                    match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
                        Ok(Some(change)) => {
                            changes.add(change);
                            if quiet >= deadline {
                                break;
                            }
                        }
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let paths = changes.paths.len();
                match read_blocking(tree.take(), root.clone(), changes).await {
                    Ok(Ok((read, snapshot))) => {
                        tree = Some(read);
                        debug!(root = %root.display(), paths, objects = snapshot.objects.len(), "directory read again");
                        if updates.send(snapshot).await.is_err() {
                            return;
                        }
                    }
                    // Keep serving what was last read: a directory briefly missing (being replaced) is no reason to
                    // drop every route. The next change reads everything.
                    Ok(Err(error)) => warn!(%error, "keeping the last objects read"),
                    Err(error) => warn!(%error, "reading the directory failed"),
                }
            }
        }),
    ))
}

/// Off the async threads: refreshes `tree` with `changes`, or reads everything when there is no tree.
async fn read_blocking(tree: Option<Tree>, root: PathBuf, changes: Changes) -> Result<Result<(Tree, Snapshot)>> {
    let read = tokio::task::spawn_blocking(move || {
        let tree = match tree {
            Some(mut tree) => tree.refresh(&changes).map(|()| tree),
            None => Tree::load(&root),
        }?;
        let snapshot = tree.snapshot();
        Ok((tree, snapshot))
    });
    read.await.map_err(|error| Error::Serve(std::io::Error::other(error)))
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
        let (first, _task) = watch(root.clone(), tx).await.unwrap();
        assert!(first.objects.is_empty());

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

    fn changed(paths: &[PathBuf]) -> Changes {
        Changes { everything: false, paths: paths.iter().cloned().collect() }
    }

    #[test]
    fn a_refresh_reads_again_only_the_paths_named() {
        let dir = TempDir::new();
        let root = dir.path();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a")).unwrap();
        std::fs::write(root.join("b.yaml"), NODE.replace("NAME", "b")).unwrap();
        let mut tree = Tree::load(root).unwrap();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a2")).unwrap();
        std::fs::write(root.join("b.yaml"), NODE.replace("NAME", "b2")).unwrap();
        tree.refresh(&changed(&[root.join("a.yaml")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["a2", "b"], "b.yaml was not named, so not read");
        std::fs::remove_file(root.join("a.yaml")).unwrap();
        tree.refresh(&changed(&[root.join("a.yaml"), root.join("b.yaml")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["b2"]);
        assert_eq!(names(&tree.snapshot()), names(&load(root).unwrap()));
    }

    #[test]
    fn a_named_directory_is_read_again_with_everything_under_it() {
        let dir = TempDir::new();
        let root = dir.path();
        std::fs::create_dir_all(root.join("team/deeper")).unwrap();
        std::fs::write(root.join("team/deeper/x.yaml"), NODE.replace("NAME", "x")).unwrap();
        std::fs::write(root.join("top.yaml"), NODE.replace("NAME", "top")).unwrap();
        let mut tree = Tree::load(root).unwrap();
        // A directory moved in whole: one event, for the directory.
        std::fs::create_dir_all(root.join(".staging")).unwrap();
        std::fs::write(root.join(".staging/y.yaml"), NODE.replace("NAME", "y")).unwrap();
        std::fs::rename(root.join(".staging"), root.join("other")).unwrap();
        std::fs::write(root.join("team/deeper/z.yaml"), NODE.replace("NAME", "z")).unwrap();
        tree.refresh(&changed(&[root.join("other"), root.join("team")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["y", "x", "z", "top"]);
        std::fs::remove_dir_all(root.join("team")).unwrap();
        tree.refresh(&changed(&[root.join("team")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["y", "top"]);
    }

    #[test]
    fn changes_under_skipped_names_are_ignored_unless_links_may_show_them() {
        let dir = TempDir::new();
        let root = dir.path();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a")).unwrap();
        let mut tree = Tree::load(root).unwrap();
        std::fs::write(root.join(".a.yaml.swp"), "junk").unwrap();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a2")).unwrap();
        tree.refresh(&changed(&[root.join(".a.yaml.swp")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["a"], "an editor's temporary file changes nothing");

        // A mounted ConfigMap: files are links through `..data`, which is swapped for a new directory.
        let mounted = TempDir::new();
        let root = mounted.path();
        std::fs::create_dir_all(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/m.yaml"), NODE.replace("NAME", "v1")).unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/m.yaml", root.join("m.yaml")).unwrap();
        let mut tree = Tree::load(root).unwrap();
        assert_eq!(names(&tree.snapshot()), ["v1"]);
        std::fs::create_dir_all(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/m.yaml"), NODE.replace("NAME", "v2")).unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        tree.refresh(&changed(&[root.join("..data_tmp"), root.join("..data")])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["v2"]);
    }

    #[test]
    fn everything_is_read_again_when_the_watcher_may_have_missed_events_or_names_the_root() {
        let dir = TempDir::new();
        let root = dir.path();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a")).unwrap();
        let mut tree = Tree::load(root).unwrap();
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a2")).unwrap();
        tree.refresh(&Changes { everything: true, paths: BTreeSet::new() }).unwrap();
        assert_eq!(names(&tree.snapshot()), ["a2"]);
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a3")).unwrap();
        tree.refresh(&changed(&[root.to_path_buf()])).unwrap();
        assert_eq!(names(&tree.snapshot()), ["a3"]);
        std::fs::remove_dir_all(root).unwrap();
        assert!(tree.refresh(&changed(&[root.to_path_buf()])).is_err());
        assert_eq!(names(&tree.snapshot()), ["a3"], "a failed read leaves the tree as it was");
    }

    #[tokio::test]
    async fn a_burst_of_writes_with_a_half_written_file_ends_in_a_snapshot_of_all_of_them() {
        let dir = TempDir::new();
        let root = dir.path().to_path_buf();
        let (tx, mut rx) = mpsc::channel(8);
        let (_, _task) = watch(root.clone(), tx).await.unwrap();
        // Half a file first, as a slow writer leaves it: read as it is, then again once complete.
        std::fs::write(root.join("a.yaml"), "apiVersion: v1\nkind: Node\nmeta").unwrap();
        for i in 0..20 {
            std::fs::write(root.join(format!("n{i:02}.yaml")), NODE.replace("NAME", &format!("n{i:02}"))).unwrap();
        }
        std::fs::write(root.join("a.yaml"), NODE.replace("NAME", "a")).unwrap();
        // Normally one snapshot; more when the machine is slow enough to make gaps of QUIET between the writes.
        let mut snapshot = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        while snapshot.objects.len() < 21 || !snapshot.diagnostics.is_empty() {
            snapshot = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        }
        assert_eq!(names(&snapshot)[0], "a");
    }
}
