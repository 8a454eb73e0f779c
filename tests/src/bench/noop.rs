//! The floor's bootstraps: a native one (see [`super::routes`]) with the no-op filter (tools/noop-filter) in front of
//! Envoy's own routing, configured as Berth's filter is (the same filter settings and runtime, taken from Berth's
//! rendered bootstrap), in a VM of its own.

use std::path::Path;

use serde_json::{Value, json};

/// Which of Berth's filters the no-op stands in for.
#[derive(Debug, Clone, Copy)]
pub enum Layer {
    /// The HTTP filter, before the router.
    Http,
    /// The network filter, before `tcp_proxy`.
    Tcp,
}

impl Layer {
    /// Berth's listener, its wasm filter's name, and the plugin configuration that makes the no-op this kind.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Layer::Http => ("berth_http", "envoy.filters.http.wasm", "http"),
            Layer::Tcp => ("berth_tcp", "envoy.filters.network.wasm", "tcp"),
        }
    }
}

/// `native_yaml` (a native bootstrap of one listener) with the no-op module `wasm` inserted first in its filters,
/// configured like Berth's filter of the same `layer` in `berth_yaml` (Berth's rendered bootstrap).
pub fn with_noop_filter(native_yaml: &str, berth_yaml: &str, layer: Layer, wasm: &Path) -> anyhow::Result<String> {
    let (listener, filter_name, role) = layer.names();
    let mut berth: Value = serde_yaml::from_str(berth_yaml)?;
    let listeners = berth["static_resources"]["listeners"].as_array_mut();
    let berths = listeners
        .and_then(|all| all.iter_mut().find(|l| l["name"] == listener))
        .ok_or_else(|| anyhow::anyhow!("Berth's bootstrap has no {listener} listener"))?;
    let mut noop = filters(berths, layer)?
        .iter()
        .find(|f| f["name"] == filter_name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("Berth's {listener} listener has no {filter_name}"))?;
    let config = &mut noop["typed_config"]["config"];
    config["name"] = json!(format!("noop_{role}"));
    config["root_id"] = json!(format!("noop_{role}"));
    config["configuration"]["value"] = json!(role);
    config["vm_config"]["vm_id"] = json!("noop");
    config["vm_config"]["code"] = json!({ "local": { "filename": wasm.display().to_string() } });

    let mut native: Value = serde_yaml::from_str(native_yaml)?;
    let listener = native["static_resources"]["listeners"]
        .get_mut(0)
        .ok_or_else(|| anyhow::anyhow!("the native bootstrap has no listener"))?;
    filters(listener, layer)?.insert(0, noop);
    Ok(serde_yaml::to_string(&native)?)
}

/// A listener's filters of `layer`: the connection manager's HTTP filters, or the network filters.
fn filters(listener: &mut Value, layer: Layer) -> anyhow::Result<&mut Vec<Value>> {
    let network = &mut listener["filter_chains"][0]["filters"];
    let list = match layer {
        Layer::Http => &mut network[0]["typed_config"]["http_filters"],
        Layer::Tcp => network,
    };
    list.as_array_mut().ok_or_else(|| anyhow::anyhow!("a listener without {layer:?} filters"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::routes::{addr, native_bootstrap, native_tcp_bootstrap, rendered_bootstrap};

    /// The no-op comes first, configured like Berth's filter but in its own VM with its own module and role; the
    /// native routing follows. (Envoy itself checks these bootstraps when `make bench` starts them: its validation
    /// runs the module's configuration, and `make test` does not build the no-op module.)
    #[test]
    fn the_noop_filter_goes_first_configured_like_berths() {
        let work = tempfile::tempdir().unwrap();
        let rendered = rendered_bootstrap(work.path());
        let native = native_bootstrap(&rendered, &berth_table::Table::new(1), addr(8081), addr(9902)).unwrap();
        let tcp = native_tcp_bootstrap(&rendered, addr(31001), addr(7), addr(9903)).unwrap();
        let wasm = Path::new("/x/noop_filter.wasm");
        for (layer, native, role, next) in [
            (Layer::Http, native, "http", "envoy.filters.http.router"),
            (Layer::Tcp, tcp, "tcp", "envoy.filters.network.tcp_proxy"),
        ] {
            let mut bootstrap: Value =
                serde_yaml::from_str(&with_noop_filter(&native, &rendered, layer, wasm).unwrap()).unwrap();
            let list = filters(&mut bootstrap["static_resources"]["listeners"][0], layer).unwrap();
            assert_eq!(list.len(), 2, "{list:?}");
            assert_eq!(list[1]["name"], next);
            let config = &list[0]["typed_config"]["config"];
            assert_eq!(config["configuration"]["value"], role);
            assert_eq!(config["root_id"], format!("noop_{role}"));
            assert_eq!(config["failure_policy"], "FAIL_RELOAD", "Berth's settings");
            assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
            assert_eq!(config["vm_config"]["vm_id"], "noop");
            assert_eq!(config["vm_config"]["code"]["local"]["filename"], "/x/noop_filter.wasm");
        }
    }
}
