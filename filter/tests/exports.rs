//! Keeps `src/exports.txt` (the exports `make wasm` leaves in the module) equal to what the filter implements: a
//! callback the Context impls in `src/` override must be exported, or Envoy never calls it; any other callback must
//! not be, or Envoy enters the VM for nothing.

use std::collections::BTreeSet;

use berth_wasm_exports::parse_list;

const LIST: &str = include_str!("../src/exports.txt");

/// Exported whatever the filter overrides: the SDK's machinery and what the host needs to load the module.
const ALWAYS: &[&str] =
    &["memory", "_initialize", "malloc", "proxy_abi_version_0_2_1", "proxy_on_context_create", "proxy_on_delete"];

/// Every method of the proxy-wasm 0.2 traits, with the exports through which the SDK reaches it. A method missing
/// here fails the test, so a newer SDK's callback cannot slip through unexported.
const CALLBACKS: &[(&str, &[&str])] = &[
    // Context
    ("on_http_call_response", &["proxy_on_http_call_response"]),
    ("on_grpc_call_response", &["proxy_on_grpc_receive", "proxy_on_grpc_close"]),
    ("on_grpc_stream_initial_metadata", &["proxy_on_grpc_receive_initial_metadata"]),
    ("on_grpc_stream_message", &["proxy_on_grpc_receive"]),
    ("on_grpc_stream_trailing_metadata", &["proxy_on_grpc_receive_trailing_metadata"]),
    ("on_grpc_stream_close", &["proxy_on_grpc_close"]),
    ("on_foreign_function", &["proxy_on_foreign_function"]),
    ("on_done", &["proxy_on_done"]),
    // RootContext
    ("on_vm_start", &["proxy_on_vm_start"]),
    ("on_configure", &["proxy_on_configure"]),
    ("on_tick", &["proxy_on_tick"]),
    ("on_queue_ready", &["proxy_on_queue_ready"]),
    ("on_log", &["proxy_on_log"]),
    ("create_http_context", &["proxy_on_context_create"]),
    ("create_stream_context", &["proxy_on_context_create"]),
    ("get_type", &["proxy_on_context_create"]),
    // StreamContext
    ("on_new_connection", &["proxy_on_new_connection"]),
    ("on_downstream_data", &["proxy_on_downstream_data"]),
    ("on_downstream_close", &["proxy_on_downstream_connection_close"]),
    ("on_upstream_data", &["proxy_on_upstream_data"]),
    ("on_upstream_close", &["proxy_on_upstream_connection_close"]),
    // HttpContext
    ("on_http_request_headers", &["proxy_on_request_headers"]),
    ("on_http_request_body", &["proxy_on_request_body"]),
    ("on_http_request_trailers", &["proxy_on_request_trailers"]),
    ("on_http_response_headers", &["proxy_on_response_headers"]),
    ("on_http_response_body", &["proxy_on_response_body"]),
    ("on_http_response_trailers", &["proxy_on_response_trailers"]),
];

const TRAITS: &[&str] = &["Context", "RootContext", "HttpContext", "StreamContext"];

/// (file, method) for each method defined in an `impl <proxy-wasm trait> for ...` block under `src/`.
fn overridden() -> std::io::Result<Vec<(String, String)>> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)?;
            found.extend(methods_of_trait_impls(&text).into_iter().map(|method| (file.clone(), method)));
        }
    }
    Ok(found)
}

/// The methods of each proxy-wasm trait impl in rustfmt-formatted source: from `impl Trait for X {` to the `}` at
/// the same indentation, methods one level in.
fn methods_of_trait_impls(text: &str) -> Vec<String> {
    let mut methods = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match &open {
            None => {
                let Some(rest) = line.trim_start().strip_prefix("impl ") else { continue };
                let Some((trait_path, _)) = rest.split_once(" for ") else { continue };
                let trait_name = trait_path.rsplit("::").next().unwrap_or_default();
                if TRAITS.contains(&trait_name) && !line.ends_with("{}") {
                    open = Some(indent.to_owned());
                }
            }
            Some(impl_indent) if line == format!("{impl_indent}}}") => open = None,
            Some(impl_indent) => {
                let method = line.strip_prefix(impl_indent.as_str()).and_then(|l| l.strip_prefix("    fn "));
                if let Some(name) = method.and_then(|rest| rest.split(['(', '<']).next()) {
                    methods.push(name.to_owned());
                }
            }
        }
    }
    methods
}

fn exports_of(method: &str) -> Option<&'static [&'static str]> {
    CALLBACKS.iter().find(|(name, _)| *name == method).map(|(_, exports)| *exports)
}

#[test]
fn every_callback_the_filter_overrides_is_kept() {
    let kept: BTreeSet<&str> = parse_list(LIST).into_iter().collect();
    let overridden = overridden().unwrap();
    assert!(
        overridden.iter().any(|(file, method)| file == "root.rs" && method == "on_configure"),
        "the scan must see root.rs's on_configure: {overridden:?}"
    );
    for (file, method) in &overridden {
        let exports = exports_of(method).unwrap_or_else(|| {
            panic!("{file} overrides {method}, which CALLBACKS does not know: add it with the exports that reach it")
        });
        for export in exports {
            assert!(kept.contains(export), "{file} overrides {method}, so src/exports.txt must keep {export}");
        }
    }
}

#[test]
fn every_kept_export_is_needed() {
    let needed: BTreeSet<&str> = ALWAYS
        .iter()
        .copied()
        .chain(overridden().unwrap().iter().filter_map(|(_, method)| exports_of(method)).flatten().copied())
        .collect();
    let list = parse_list(LIST);
    for export in &list {
        assert!(
            needed.contains(export),
            "src/exports.txt keeps {export}, but no Context impl in src/ overrides a method reached through it"
        );
    }
    let unique: BTreeSet<&str> = list.iter().copied().collect();
    assert_eq!(unique.len(), list.len(), "src/exports.txt names an export twice");
}

#[test]
fn the_scan_finds_methods_in_trait_impls_only() {
    let source = "impl Context for A {}\n\
                  impl HttpContext for B {\n    fn on_http_request_body(&mut self) -> Action {\n        x\n    }\n}\n\
                  impl B {\n    fn on_log(&self) {}\n}\n\
                  mod tests {\n    impl proxy_wasm::traits::StreamContext for C {\n        fn on_upstream_data(&mut self) {}\n    }\n}\n";

    assert_eq!(methods_of_trait_impls(source), ["on_http_request_body", "on_upstream_data"]);
}
