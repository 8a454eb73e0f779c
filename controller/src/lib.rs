//! Berth's controller: sources of Kubernetes objects → index → compiler → versioned table, served to Envoy.

pub mod cli;
pub mod commands;
pub mod compiler;
pub mod diagnostic;
pub mod envoy_config;
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
pub mod report;
pub mod route_changes;
pub mod server;
pub mod source;
pub mod state;
pub mod status_page;
pub mod status_writer;

pub use diagnostic::Diagnostic;
pub use error::{Error, Result};
