//! The state file (`berth run --state FILE`): in directory mode, the record of which port each tcp route holds,
//! so a restart hands out nothing anew, and the secret behind session cookies, so a restart keeps every session
//! where it is. The user's YAML is never written to.
//!
//! JSON, `{"ports": {"VirtualService default/db tcp[0]": 31000}, "affinity_key": "<32 hex digits>"}`. A missing
//! file is an empty state (the first start); a file that cannot be read or parsed stops the controller, since
//! starting empty would move every port.
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed over the old file, so a
//! crash leaves either the old state or the new one, never half of one. The file is written mode 0600: it holds
//! the session-cookie key.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_table::AffinityKey;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the state file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Made once, on the first start that needs it (see [`new_affinity_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_key: Option<AffinityKey>,
}

/// What `path` records; an empty state when it does not exist.
pub fn load(path: &Path) -> Result<State> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(error) => return Err(Error::StateRead { path: path.to_path_buf(), error }),
    };
    let corrupt = |reason: String| Error::StateCorrupt { path: path.to_path_buf(), reason };
    // Bytes that are not text are damage, not a permissions problem: said as such.
    let text = String::from_utf8(bytes).map_err(|error| corrupt(format!("it is not UTF-8 text ({error})")))?;
    let state: State = serde_json::from_str(&text).map_err(|error| corrupt(error.to_string()))?;
    if let Some((key, _)) = state.ports.iter().find(|(_, port)| **port == 0) {
        return Err(corrupt(format!("{key:?} holds port 0")));
    }
    Ok(state)
}

/// A fresh random affinity key, from the operating system's random source. Where `/dev/urandom` cannot be read,
/// from the standard library's randomly keyed hasher, which the operating system seeds once per process.
pub fn new_affinity_key() -> AffinityKey {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes));
    if read.is_err() {
        use std::hash::{BuildHasher, RandomState};
        let (low, high) = (RandomState::new().hash_one(0u8), RandomState::new().hash_one(1u8));
        bytes[..8].copy_from_slice(&low.to_le_bytes());
        bytes[8..].copy_from_slice(&high.to_le_bytes());
    }
    AffinityKey::from_bytes(bytes)
}

/// Replaces `path` with `state`, atomically.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let failed = |error: std::io::Error| Error::StateWrite { path: path.to_path_buf(), error };
    let mut text = serde_json::to_string_pretty(state).map_err(std::io::Error::other).map_err(failed)?;
    text.push('\n');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".to_string());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        // Readable by the controller alone: the file holds the key behind session cookies.
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
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
    use crate::compiler::HeldPorts;

    fn held(ports: HeldPorts) -> State {
        State { ports, affinity_key: None }
    }

    #[test]
    fn the_file_is_private_and_bytes_that_are_not_text_are_called_corrupt() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &State::default()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, b"{\"ports\": {\"\xff\": 31000}}").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("is not valid: it is not UTF-8 text"), "{error}");
        assert!(!error.contains("permissions"), "{error}");
    }

    #[test]
    fn the_affinity_key_is_kept_and_files_without_one_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"ports\": {\"a tcp[0]\": 31000}}").unwrap();
        assert_eq!(load(&path).unwrap().affinity_key, None, "a state file from before session affinity");
        let key = new_affinity_key();
        let state = State { ports: HeldPorts::from([("a tcp[0]".into(), 31000)]), affinity_key: Some(key) };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        assert_ne!(new_affinity_key(), key, "every new key is another");
        std::fs::write(&path, "{\"ports\": {}, \"affinity_key\": \"short\"}").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("affinity_key"));
    }

    #[test]
    fn a_missing_file_is_empty_and_a_saved_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), State::default());
        let ports = HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31000), ("b tcp[1]".into(), 31001)]);
        save(&path, &held(ports.clone())).unwrap();
        assert_eq!(load(&path).unwrap().ports, ports);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"ports\": {"), "{text}");
        assert!(text.contains("\"VirtualService default/db tcp[0]\": 31000"), "{text}");
    }

    #[test]
    fn saving_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &held(HeldPorts::from([("a tcp[0]".into(), 1)]))).unwrap();
        save(&path, &held(HeldPorts::from([("b tcp[0]".into(), 2)]))).unwrap();
        assert_eq!(load(&path).unwrap().ports, HeldPorts::from([("b tcp[0]".into(), 2)]), "a freed port is gone");
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &held(HeldPorts::from([("a tcp[0]".into(), 1)]))).unwrap();
        // A directory where the temporary file would go makes the write fail before the rename.
        std::fs::create_dir(dir.path().join(format!(".state.json.{}.tmp", std::process::id()))).unwrap();
        let error = save(&path, &held(HeldPorts::from([("b tcp[0]".into(), 2)]))).unwrap_err();
        assert!(error.to_string().contains("state.json"), "{error}");
        assert_eq!(load(&path).unwrap().ports, HeldPorts::from([("a tcp[0]".into(), 1)]));
    }

    #[test]
    fn a_file_in_the_current_directory_can_be_saved() {
        // `--state state.json` has an empty parent; the temporary file then goes to `.`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        save(&path, &State::default()).unwrap();
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
