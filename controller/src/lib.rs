//! Berth's controller: sources of Kubernetes objects → index → reconcile (compiler and every step after it) →
//! versioned table, served to Envoy. ARCHITECTURE.md at the repository root maps the modules.

pub mod api;
pub mod cli;
pub mod clusters;
pub mod commands;
pub mod compiler;
pub mod controller;
pub mod diagnostic;
pub mod envoy_config;
pub mod envoy_edge;
pub mod error;
pub mod health;
pub mod index;
pub mod istio_config;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod objects;
pub mod port_ranges;
pub mod publish;
pub mod reconcile;
pub mod report;
pub mod route_changes;
pub mod serve;
pub mod server;
pub mod service_addr;
pub mod source;
pub mod state;
pub mod status_page;
pub mod status_writer;

pub use diagnostic::Diagnostic;
pub use error::{Error, Result};
