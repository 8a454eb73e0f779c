//! YAML text → typed objects. Each document stands alone: one that cannot be read becomes a diagnostic naming
//! the file, the document and (when YAML says) the line, and the others still load.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::port_allocation::API_VERSION as PORT_ALLOCATION_API_VERSION;
use super::virtual_service::API_VERSIONS as VS_API_VERSIONS;
use super::{Kind, Object};
use crate::Diagnostic;

/// What one file held.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub diagnostics: Vec<Diagnostic>,
}

const SUPPORTED: &str = "VirtualService (networking.istio.io/v1, v1beta1, v1alpha3), Ingress and IngressClass \
                         (networking.k8s.io/v1), Service and Node (v1), EndpointSlice (discovery.k8s.io/v1), PortAllocation \
                         (berth.dev/v1alpha1), List (v1)";

/// Parses every document of a multi-document YAML file. `file` only labels diagnostics.
pub fn parse_yaml(file: &Path, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, (first_line, document)) in split_documents(text).into_iter().enumerate() {
        let at = Context { file, document: index + 1, item: None };
        parse_document(&at, Input::Text(Document { text: &document, first_line }), &mut parsed);
    }
    parsed
}

/// One object as an API server returns it (a watch event's object, `apiVersion` and `kind` set). The same checks
/// as for files; a problem is a diagnostic naming the object and, where the decoder says, the field.
pub fn parse_value(value: &serde_json::Value) -> Result<Object, Diagnostic> {
    let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let meta = value.get("metadata");
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(serde_json::Value::as_str).filter(|v| !v.is_empty());
    let label = match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind.clone(),
    };
    let problem = |message: String| Diagnostic::new(message).object(label.clone());
    let Some(kind_of) = known_kind(&api_version, &kind) else {
        return Err(problem(format!("berth does not read {kind} of apiVersion {api_version}; it reads {SUPPORTED}")));
    };
    // Through YAML text, so that a type error names the field's path (`spec.ports[0].port: invalid type ..`).
    let yaml = serde_yaml::to_string(value).map_err(|e| problem(format!("cannot read: {e}")))?;
    let input = Input::Text(Document { text: &yaml, first_line: 1 });
    let decoded = decode(kind_of, &input).map_err(|error| {
        let message = error.to_string();
        // Lines of text made up here mean nothing to the object's author.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        problem(message)
    })?;
    let mut object = decoded;
    if field("name").is_none() {
        return Err(problem(format!("{kind}: metadata.name is missing; give it a name")));
    }
    if kind_of.namespaced() && object.metadata().namespace.as_deref().is_none_or(str::is_empty) {
        object.metadata_mut().namespace = Some("default".to_string());
    }
    Ok(object)
}

fn decode(kind: Kind, input: &Input<'_>) -> Result<Object, serde_yaml::Error> {
    match kind {
        Kind::VirtualService => input.decode().map(Object::VirtualService),
        Kind::Ingress => input.decode().map(Object::Ingress),
        Kind::IngressClass => input.decode().map(Object::IngressClass),
        Kind::Service => input.decode().map(Object::Service),
        Kind::Node => input.decode().map(Object::Node),
        Kind::EndpointSlice => input.decode().map(Object::EndpointSlice),
        Kind::PortAllocation => input.decode().map(Object::PortAllocation),
    }
}

/// Where a document sits, for messages.
struct Context<'a> {
    file: &'a Path,
    /// 1-based, as people count documents in a file.
    document: usize,
    /// The index in a `kind: List`'s `items`.
    item: Option<usize>,
}

impl Context<'_> {
    fn diagnostic(&self, object: Option<String>, message: impl std::fmt::Display) -> Diagnostic {
        let place = match self.item {
            Some(item) => format!("document {}, items[{item}]", self.document),
            None => format!("document {}", self.document),
        };
        Diagnostic::new(format!("{place}: {message}")).file(Some(self.file.to_path_buf())).with_object(object)
    }
}

/// A document as text (so errors carry lines) or, for a List's items, as an already parsed value.
enum Input<'a> {
    Text(Document<'a>),
    Value(Value),
}

impl Input<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_yaml::Error> {
        match self {
            Input::Text(document) => document.decode(),
            Input::Value(value) => serde_yaml::from_value(value.clone()),
        }
    }
}

/// One document of a file, and the file's line it starts on (1-based).
#[derive(Clone, Copy)]
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

impl Document<'_> {
    /// Decodes the document alone; when that fails, decodes it again behind as many empty lines as precede it in
    /// the file, so that YAML's line numbers are the file's. Empty lines mean nothing to YAML, so the second
    /// decode reads what the first did; doing it only for a document that fails keeps reading a file linear in
    /// its length (padding every document made it quadratic in the number of documents).
    fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_yaml::Error> {
        match serde_yaml::from_str(self.text) {
            Err(_) if self.first_line > 1 => {
                serde_yaml::from_str(&format!("{}{}", "\n".repeat(self.first_line - 1), self.text))
            }
            decoded => decoded,
        }
    }
}

fn parse_document(at: &Context<'_>, input: Input<'_>, parsed: &mut Parsed) {
    let value: Value = match input.decode() {
        Ok(value) => value,
        Err(error) => {
            parsed.diagnostics.push(at.diagnostic(None, format_args!("invalid YAML: {error}")));
            return;
        }
    };
    if value.is_null() {
        return;
    }
    let Some(map) = value.as_mapping() else {
        let message = "not a Kubernetes object: expected a mapping with apiVersion, kind and metadata";
        parsed.diagnostics.push(at.diagnostic(None, message));
        return;
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let meta = map.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty());
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).filter(|n| !n.is_empty());
    let known = known_kind(&api_version, &kind);
    // Named as the rest of Berth names it: namespaced kinds with their (possibly defaulted) namespace.
    let namespace = namespace.or(known.filter(|k| k.namespaced()).map(|_| "default"));
    let label = name.map(|name| match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    });

    if kind == "List" && api_version == "v1" {
        let items = map.get("items").and_then(Value::as_sequence).cloned().unwrap_or_default();
        for (item, value) in items.into_iter().enumerate() {
            let at = Context { item: Some(item), ..*at };
            parse_document(&at, Input::Value(value), parsed);
        }
        return;
    }

    let Some(kind_of) = known else {
        let message = if api_version.is_empty() || kind.is_empty() {
            "apiVersion and kind are required".to_string()
        } else {
            format!("berth does not read {kind} of apiVersion {api_version}; it reads {SUPPORTED}")
        };
        parsed.diagnostics.push(at.diagnostic(label, message));
        return;
    };
    let decoded = decode(kind_of, &input);
    let mut object = match decoded {
        Ok(object) => object,
        Err(error) => {
            parsed.diagnostics.push(at.diagnostic(label, error));
            return;
        }
    };
    if name.is_none() {
        parsed.diagnostics.push(at.diagnostic(None, format_args!("{kind}: metadata.name is missing; give it a name")));
        return;
    }
    if kind_of.namespaced() && object.metadata().namespace.as_deref().is_none_or(str::is_empty) {
        object.metadata_mut().namespace = Some("default".to_string());
    }
    parsed.objects.push(object);
}

fn known_kind(api_version: &str, kind: &str) -> Option<Kind> {
    Some(match (api_version, kind) {
        (v, "VirtualService") if VS_API_VERSIONS.contains(&v) => Kind::VirtualService,
        ("networking.k8s.io/v1", "Ingress") => Kind::Ingress,
        ("networking.k8s.io/v1", "IngressClass") => Kind::IngressClass,
        ("v1", "Service") => Kind::Service,
        ("v1", "Node") => Kind::Node,
        ("discovery.k8s.io/v1", "EndpointSlice") => Kind::EndpointSlice,
        (PORT_ALLOCATION_API_VERSION, "PortAllocation") => Kind::PortAllocation,
        _ => return None,
    })
}

/// Splits at `---` lines (and `...` document ends), returning each document with its first line (1-based).
///
/// Done by hand rather than by the YAML parser's document stream so that a broken document cannot take the
/// following ones down with it. A `---` at column 0 can only be a document marker: block scalars are indented.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (n, line) in text.lines().enumerate() {
        let marker = if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            Some(&line[3..])
        } else if line == "..." || line.starts_with("... ") {
            Some("")
        } else {
            None
        };
        match marker {
            Some(rest) => {
                documents.push((first_line, std::mem::take(&mut current)));
                // Content after `--- ` on the same line belongs to the new document (e.g. `--- !tag` or a scalar).
                first_line = n + 1;
                current.push_str(rest);
                current.push('\n');
            }
            None => {
                current.push_str(line);
                current.push('\n');
            }
        }
    }
    documents.push((first_line, current));
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        parse_yaml(Path::new("dir/file.yaml"), text)
    }

    fn messages(parsed: &Parsed) -> Vec<String> {
        parsed.diagnostics.iter().map(ToString::to_string).collect()
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s1\nspec:\n  ports:\n  - port: 80\n";

    #[test]
    fn reads_every_document_and_defaults_the_namespace() {
        let text = format!("{SERVICE}---\napiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
        let parsed = parse(&text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", messages(&parsed));
        let keys: Vec<String> = parsed.objects.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(keys, ["Service default/s1", "Node n1"]);
    }

    #[test]
    fn empty_documents_and_comments_are_ignored() {
        let parsed = parse(&format!("---\n# only a comment\n---\n\n---\n{SERVICE}...\n"));
        assert!(parsed.diagnostics.is_empty(), "{:?}", messages(&parsed));
        assert_eq!(parsed.objects.len(), 1);
    }

    #[test]
    fn a_broken_document_does_not_hide_the_others() {
        let text = format!("{SERVICE}---\nkind: [unclosed\n---\n{}", SERVICE.replace("s1", "s2"));
        let parsed = parse(&text);
        assert_eq!(parsed.objects.len(), 2);
        let messages = messages(&parsed);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].starts_with("dir/file.yaml: document 2: invalid YAML: "), "{messages:?}");
        assert!(messages[0].contains("line 9"), "the line counts from the top of the file: {messages:?}");
    }

    #[test]
    fn type_errors_name_the_object_field_and_line() {
        let text = format!("{SERVICE}---\n{}", SERVICE.replace("s1", "bad").replace("port: 80", "port: eighty"));
        let messages = messages(&parse(&text));
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert!(
            m.starts_with("dir/file.yaml: Service default/bad: document 2: spec.ports[0].port: invalid type"),
            "{m}"
        );
        assert!(m.contains("line 15"), "{m}");
    }

    #[test]
    fn unknown_kinds_and_versions_are_reported_with_what_is_read() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n---\n\
                    apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: old\n---\nfoo: bar\n";
        let messages = messages(&parse(text));
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("dir/file.yaml: Deployment shop/web: document 1: berth does not read"));
        assert!(messages[0].contains("networking.k8s.io/v1"));
        assert!(messages[1].contains("Ingress old: document 2: berth does not read Ingress of apiVersion extensions"));
        assert!(messages[2].ends_with("document 3: apiVersion and kind are required"), "{messages:?}");
    }

    #[test]
    fn a_missing_name_is_reported() {
        let messages = messages(&parse("apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n"));
        assert_eq!(messages, ["dir/file.yaml: document 1: Service: metadata.name is missing; give it a name"]);
    }

    #[test]
    fn a_scalar_document_is_not_an_object() {
        let messages = messages(&parse("just words\n"));
        assert_eq!(messages.len(), 1);
        assert!(messages[0].contains("not a Kubernetes object"), "{messages:?}");
    }

    #[test]
    fn lists_are_unpacked_and_their_items_reported_by_index() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n\
                    - apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n";
        let parsed = parse(text);
        assert_eq!(parsed.objects.len(), 1);
        let messages = messages(&parsed);
        assert!(messages[0].starts_with("dir/file.yaml: Pod p: document 1, items[1]: berth does not read Pod"));
    }

    #[test]
    fn reads_virtual_services_of_every_istio_version() {
        for version in VS_API_VERSIONS {
            let text = format!(
                "apiVersion: {version}\nkind: VirtualService\nmetadata:\n  name: vs\nspec:\n  hosts: [a.com]\n  \
                 http:\n  - match:\n    - uri:\n        prefix: /x\n    route:\n    - destination:\n        host: s\n"
            );
            let parsed = parse(&text);
            assert!(parsed.diagnostics.is_empty(), "{version}: {:?}", messages(&parsed));
            let Object::VirtualService(vs) = &parsed.objects[0] else { panic!("not a VirtualService") };
            assert_eq!(vs.spec.http[0].matches[0].uri.as_ref().unwrap().prefix.as_deref(), Some("/x"));
            assert_eq!(vs.metadata.namespace.as_deref(), Some("default"));
        }
    }

    #[test]
    fn api_objects_parse_like_files_and_a_bad_one_is_a_diagnostic_naming_the_field() {
        let good = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(parse_value(&good).unwrap().key().to_string(), "Service shop/s");
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "shop"}, "spec": {"ports": [{"port": "eighty"}]}});
        let error = parse_value(&bad).unwrap_err().to_string();
        assert!(error.starts_with("Service shop/s: spec.ports[0].port: invalid type"), "{error}");
        assert!(!error.contains("line"), "{error}");
    }

    #[test]
    fn splits_documents_with_their_first_lines() {
        let docs = split_documents("a: 1\n---\nb: 2\n--- \nc: 3\n");
        let lines: Vec<usize> = docs.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 2, 4]);
        assert_eq!(docs[1].1, "\nb: 2\n");
    }
}
