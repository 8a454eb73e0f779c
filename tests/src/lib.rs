//! The harness behind Berth's end-to-end tests and `make run`: real processes (the `berth` binary, stock Envoy
//! with the built filter) and loopback backends, started in order, awaited on their readiness signals, and
//! stopped on drop — also when a test fails.

pub mod admin;
pub mod backend;
pub mod browser;
pub mod client;
pub mod controller;
pub mod envoy;
pub mod examples;
pub mod fake_controller;
pub mod held_backend;
pub mod kube;
pub mod load;
pub mod manifests;
pub mod metrics;
pub mod open_files;
pub mod paths;
pub mod process;
pub mod stack;
pub mod table_check;
pub mod tcp_backend;
pub mod tcp_client;
pub mod tls_backend;
pub mod tls_client;
pub mod wait;

pub use backend::Backend;
pub use client::Response;
pub use controller::Controller;
pub use envoy::Envoy;
pub use held_backend::HeldBackend;
pub use stack::Stack;
pub use tcp_backend::TcpBackend;
pub use tls_backend::{TestCa, TlsBackend};
