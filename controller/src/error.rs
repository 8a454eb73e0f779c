//! The controller library's one error type: failures of the controller itself, never of a user's object
//! (those are [`crate::Diagnostic`]s and never stop anything).

use std::net::SocketAddr;
use std::path::PathBuf;

// Each message carries its cause inline, so it reads as one sentence wherever it is printed.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {error}; check that the path exists and is readable")]
    Read { path: PathBuf, error: std::io::Error },

    #[error("cannot watch {path} for changes: {error}")]
    Watch { path: PathBuf, error: notify::Error },

    #[error("cannot listen on {addr}: {error}; is another process using it?")]
    Bind { addr: SocketAddr, error: std::io::Error },

    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),

    #[error("cannot reach the controller at {url}: {error}; is `berth run` running and listening there?")]
    Fetch { url: String, error: Box<ureq::Error> },

    #[error("the controller at {url} answered something unexpected: {reason}")]
    BadResponse { url: String, reason: String },

    #[error("invalid --source {value:?}: {reason}")]
    SourceArg { value: String, reason: String },

    #[error(
        "cannot read the state file {path}: {error}; berth stops rather than hand out every port anew: \
         fix the file's permissions, or move it away to start with no allocations (every tcp route then gets a new \
         port)"
    )]
    StateRead { path: PathBuf, error: std::io::Error },

    #[error(
        "the state file {path} is not valid: {reason}; berth stops rather than hand out every port \
         anew: repair it (JSON like {{\"ports\": {{\"VirtualService default/db tcp[0]\": 31000}}}}), or move it \
         away to start with no allocations (every tcp route then gets a new port)"
    )]
    StateCorrupt { path: PathBuf, reason: String },

    #[error("Kubernetes: {reason}")]
    Kube { reason: String },

    #[error("cannot write the state file {path}: {error}; check that its directory exists and is writable")]
    StateWrite { path: PathBuf, error: std::io::Error },
}
