//! Berth's Kubernetes API test server: plain HTTP (or HTTPS with `tls`) on loopback, objects as JSON, faithful to the conventions
//! kube-rs (clients, watchers, leases) and kubectl rely on, with fault injection for tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let api = berth_kube_api::KubeApi::start(berth_kube_api::Options::default()).await?;
//! api.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! api.cut_watches();
//! # Ok(()) }
//! ```

mod api;
mod discovery;
mod faults;
mod kubeconfig;
mod meta;
mod openapi;
mod patch;
mod protobuf;
mod registry;
mod selector;
mod server;
mod status;
mod store;
mod tls;

pub use faults::{Access, Counts};
pub use server::{KubeApi, Options};
pub use status::ApiError;
pub use store::{Snapshot, load as load_state, save as save_state};
pub use tls::TlsOptions;
