//! The state file (`berth run --state FILE`): in directory mode, the record of which port each tcp route holds,
//! so a restart hands out nothing anew. The user's YAML is never written to.
//!
//! JSON, `{"ports": {"VirtualService default/db tcp[0]": 31000}}`. A missing file is an empty state (the first
//! start); a file that cannot be read or parsed stops the controller, since starting empty would move every port.
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed over the old file, so a
//! crash leaves either the old state or the new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compiler::HeldPorts;
use crate::{Error, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    ports: BTreeMap<String, u16>,
}

/// The ports recorded in `path`; none when it does not exist.
pub fn load(path: &Path) -> Result<HeldPorts> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HeldPorts::new()),
        Err(error) => return Err(Error::StateRead { path: path.to_path_buf(), error }),
    };
    let corrupt = |reason: String| Error::StateCorrupt { path: path.to_path_buf(), reason };
    let state: StateFile = serde_json::from_str(&text).map_err(|error| corrupt(error.to_string()))?;
    if let Some((key, _)) = state.ports.iter().find(|(_, port)| **port == 0) {
        return Err(corrupt(format!("{key:?} holds port 0")));
    }
    Ok(state.ports)
}

/// Replaces `path` with `ports`, atomically.
pub fn save(path: &Path, ports: &HeldPorts) -> Result<()> {
    let failed = |error: std::io::Error| Error::StateWrite { path: path.to_path_buf(), error };
    let mut text = serde_json::to_string_pretty(&StateFile { ports: ports.clone() })
        .map_err(std::io::Error::other)
        .map_err(failed)?;
    text.push('\n');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".to_string());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself is durable once the directory is synced; not every file system allows that.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_empty_and_a_saved_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_empty());
        let ports = HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31000), ("b tcp[1]".into(), 31001)]);
        save(&path, &ports).unwrap();
        assert_eq!(load(&path).unwrap(), ports);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"ports\": {"), "{text}");
        assert!(text.contains("\"VirtualService default/db tcp[0]\": 31000"), "{text}");
    }

    #[test]
    fn saving_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &HeldPorts::from([("a tcp[0]".into(), 1)])).unwrap();
        save(&path, &HeldPorts::from([("b tcp[0]".into(), 2)])).unwrap();
        assert_eq!(load(&path).unwrap(), HeldPorts::from([("b tcp[0]".into(), 2)]), "a freed port is gone");
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &HeldPorts::from([("a tcp[0]".into(), 1)])).unwrap();
        // A directory where the temporary file would go makes the write fail before the rename.
        std::fs::create_dir(dir.path().join(format!(".state.json.{}.tmp", std::process::id()))).unwrap();
        let error = save(&path, &HeldPorts::from([("b tcp[0]".into(), 2)])).unwrap_err();
        assert!(error.to_string().contains("state.json"), "{error}");
        assert_eq!(load(&path).unwrap(), HeldPorts::from([("a tcp[0]".into(), 1)]));
    }

    #[test]
    fn a_file_in_the_current_directory_can_be_saved() {
        // `--state state.json` has an empty parent; the temporary file then goes to `.`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        save(&path, &HeldPorts::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"ports\": {}\n}\n");
    }

    #[test]
    fn corrupt_and_unreadable_files_are_errors_that_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for text in ["{\"ports\": {\"a\": 70000}}", "not json", "{\"ports\": {\"a\": 0}}", "{\"ports\": [1]}"] {
            std::fs::write(&path, text).unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(error.contains("state.json") && error.contains("move it away"), "{text}: {error}");
        }
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the state file"), "{error}");
    }
}
