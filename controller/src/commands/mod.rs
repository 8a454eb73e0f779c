//! One module per subcommand; each takes its parsed arguments and does the I/O around the pure core.

pub mod check;
pub mod crdgen;
pub mod envoy_config;
pub mod istio_config;
pub mod routes;
pub mod run;
pub mod write_filter;
