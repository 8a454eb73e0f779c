//! Berth's controller: sources of Kubernetes objects → index → compiler → versioned table, served to Envoy.

pub mod envoy_config;
