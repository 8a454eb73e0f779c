//! The compiler: a pure function from the index (and the ports handed out before) to the table's content, the
//! ports handed out now, and the problems found on the way.
//!
//! First the tcp routes of exposed VirtualServices get their ports; see [`ports`]. Then every object is compiled
//! on its own into routes or problems (VirtualServices' tls routes in [`tls`]). An object with any problem
//! contributes nothing (a half-applied object is harder to reason about than an absent one). Then objects claim
//! their routes oldest first; see [`conflicts`].
//!
//! Objects of every cluster compile into one table: each resolves Services, Nodes and IngressClasses within its
//! own cluster, and claims hosts, server names and ports against every other cluster's objects, oldest first.
//! Each remote cluster's API server becomes a tls route with `--api-domain` ([`api_servers`]).

pub mod affinity;
pub mod api_servers;
mod backends;
pub mod conflicts;
mod host_name;
mod ingress;
pub mod ports;
mod route_policy;
pub mod tls;
mod virtual_service;

pub use backends::{BACKENDS_ANNOTATION, BackendMode, PortRef, Resolver, Unresolved};
pub use ingress::{CONTROLLER, Classes};
pub use ports::{Assignment, Assignments, HeldPorts};

use std::path::PathBuf;

use berth_table::{AffinityKey, DefaultBackend, HttpRoute, Source, Table, TcpRoute, TlsRoute};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::Diagnostic;
use crate::index::{Entry, Index};
use crate::objects::{Kind, Object, annotation};

/// A VirtualService is served only when it asks for it.
pub const EXPOSE_ANNOTATION: &str = "berth.dev/expose";

#[derive(Debug, Clone)]
pub struct Options {
    /// Where Services' traffic goes unless a Service says otherwise.
    pub backends: BackendMode,
    /// The port clients reach TLS passthrough routes at: written into their addresses, and the only `port` a tls
    /// match may name.
    pub tls_port: u16,
    /// With `--api-domain`: the domain under which each remote cluster's API server is reached, and where those
    /// API servers are.
    pub api_servers: api_servers::ApiServers,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backends: BackendMode::default(),
            tls_port: tls::DEFAULT_TLS_PORT,
            api_servers: api_servers::ApiServers::default(),
        }
    }
}

/// What the table holds, without its version: two compilations are the same table when these are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Oldest object first; within an object, in the order it lists them.
    pub http: Vec<HttpRoute>,
    pub default_backend: Option<DefaultBackend>,
    /// Oldest object first; within an object, in the order it lists them. Ports are distinct.
    pub tcp: Vec<TcpRoute>,
    /// The controller's secret for session affinity, set by [`Content::with_affinity_key`].
    pub affinity_key: Option<AffinityKey>,
    /// Oldest object first; within an object, in the order it lists them. Server names are distinct.
    pub tls: Vec<TlsRoute>,
}

impl Content {
    pub fn to_table(&self, version: u64) -> Table {
        let mut table = Table::new(version);
        table.http = self.http.clone();
        table.default_backend = self.default_backend.clone();
        table.tcp = self.tcp.clone();
        table.affinity_key = self.affinity_key;
        table.tls = self.tls.clone();
        table
    }

    /// Adds the key the filter makes session cookies and client hashes with, when a route has affinity: tables
    /// without any stay as they were. The key is the controller's, not the objects', so compilation leaves it out.
    pub fn with_affinity_key(mut self, key: AffinityKey) -> Self {
        let sticky =
            self.http.iter().any(|r| r.session_cookie.is_some()) || self.tcp.iter().any(|r| r.source_ip_affinity);
        self.affinity_key = sticky.then_some(key);
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub content: Content,
    /// Problems reading the sources, then problems of PortAllocations and ports, then problems compiling, oldest
    /// object first.
    pub diagnostics: Vec<Diagnostic>,
    /// Every port handed out, also to objects not served at the moment (a port stays with its object while the
    /// object asks for it). The run loop feeds [`ports::held_ports`] of this to the next compilation and writes it
    /// back: to the state file in directory mode (never into the user's YAML), to the objects in Kubernetes mode.
    pub assignments: Assignments,
    /// Where clients reach the tls routes served (`a.example.com:443`), labelled `tls[i]` like tcp ports are
    /// `tcp[i]`. Nothing is held for them: they follow from the objects alone.
    pub tls_addresses: Vec<Assignment>,
}

/// One thing wrong with one object: the field (a path from the object's root) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { field: Some(field.into()), message: message.into() }
    }
}

/// A route an object asks for, with the field it came from (for conflict messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub field: String,
    pub route: HttpRoute,
}

/// Everything one object asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    pub http: Vec<Wanted>,
    pub default_backend: Option<(String, DefaultBackend)>,
    /// Tcp routes, on the ports allocated to them.
    pub tcp: Vec<TcpRoute>,
    /// Tls routes, by server name.
    pub tls: Vec<tls::WantedTls>,
}

/// Compiles `index`; `held` is what the previous compilation handed out ([`ports::held_ports`] of its
/// assignments, or what was written back before a restart).
pub fn compile(index: &Index, options: &Options, held: &HeldPorts) -> Compiled {
    let resolver = Resolver::new(index, options.backends);
    let mut classes: std::collections::BTreeMap<&str, Classes> = std::collections::BTreeMap::new();

    let mut entries: Vec<&Entry> = Vec::new();
    for entry in index.of_kind(Kind::Ingress) {
        let classes = classes.entry(entry.cluster()).or_insert_with(|| Classes::from_index(index, entry.cluster()));
        if let Object::Ingress(ingress) = &entry.object
            && classes.serves(ingress)
        {
            entries.push(entry);
        }
    }
    let mut diagnostics: Vec<Diagnostic> = index.source_diagnostics().cloned().collect();
    for entry in index.of_kind(Kind::VirtualService) {
        let Object::VirtualService(vs) = &entry.object else { continue };
        match annotation(&vs.metadata, EXPOSE_ANNOTATION) {
            Some("true") => entries.push(entry),
            None | Some("false") => {}
            Some(other) => diagnostics.push(unclear_expose(&entry.key().to_string(), &entry.file, other)),
        }
    }
    entries.sort_by_key(|entry| age(entry));

    let requests: Vec<ports::Request> = entries
        .iter()
        .filter_map(|entry| match &entry.object {
            Object::VirtualService(vs) if !vs.spec.tcp.is_empty() => {
                Some(ports::Request { object: entry.key(), routes: vs.spec.tcp.len() })
            }
            _ => None,
        })
        .collect();
    let mut allocated = ports::allocate(index, &requests, held);

    diagnostics.append(&mut allocated.diagnostics);
    let mut claimants = Vec::new();
    for entry in entries {
        let key = entry.key();
        let resolver = resolver.in_cluster(entry.cluster());
        let mut warnings = Vec::new();
        let compiled = match &entry.object {
            Object::Ingress(ingress) => ingress::compile(ingress, &key, &resolver),
            Object::VirtualService(vs) => with_tls(
                virtual_service::compile(vs, &key, &resolver, &allocated, &mut warnings),
                tls::compile(vs, &key, &resolver, options.tls_port),
            ),
            _ => continue,
        };
        diagnostics.extend(
            warnings.into_iter().map(|problem| to_diagnostic(&key.to_string(), &entry.file, problem).warning()),
        );
        let result = match (compiled, allocated.problems.remove(&key)) {
            (Ok(wants), None) => Ok(wants),
            (Ok(_), Some(short)) => Err(short),
            (Err(mut problems), Some(short)) => {
                problems.extend(short);
                Err(problems)
            }
            (Err(problems), None) => Err(problems),
        };
        match result {
            Ok(wants) => claimants.push(conflicts::Claimant { key, file: entry.file.clone(), wants }),
            Err(problems) => {
                diagnostics.extend(problems.into_iter().map(|p| to_diagnostic(&key.to_string(), &entry.file, p)))
            }
        }
    }
    let tls_addresses = tls::addresses(&claimants, options.tls_port);
    let (content, conflicts) = conflicts::resolve(options.api_servers.routes(), claimants);
    diagnostics.extend(conflicts);
    let tls_addresses = tls::served(tls_addresses, &content);
    Compiled { content, diagnostics, assignments: allocated.assignments, tls_addresses }
}

/// An object's http and tcp routes with its tls routes, or every problem of either.
fn with_tls(
    wants: Result<Wants, Vec<Problem>>,
    tls: Result<Vec<tls::WantedTls>, Vec<Problem>>,
) -> Result<Wants, Vec<Problem>> {
    match (wants, tls) {
        (Ok(wants), Ok(tls)) => Ok(Wants { tls, ..wants }),
        (Ok(_), Err(problems)) | (Err(problems), Ok(_)) => Err(problems),
        (Err(mut problems), Err(more)) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// The warning for a VirtualService whose `berth.dev/expose` is neither `"true"` nor `"false"` (`True`, `yes`):
/// it is not exposed, as before, but no longer without a word.
fn unclear_expose(object: &str, file: &Option<PathBuf>, value: &str) -> Diagnostic {
    let message = format!(
        "{value:?} is neither \"true\" nor \"false\", so the VirtualService is not exposed; write \"true\" (lower \
         case) to expose it"
    );
    to_diagnostic(object, file, Problem::new(format!("metadata.annotations[\"{EXPOSE_ANNOTATION}\"]"), message))
        .warning()
}

/// The order of objects: those with a `creationTimestamp` by it, then those without in the order they were first
/// seen (for the directory source: by file path, then position in the file). Objects created in the same second
/// go by key (the local cluster's first, then by cluster, namespace and name), so that every replica, and every
/// restart, picks the same winner whatever order the watches delivered them in.
fn age(entry: &Entry) -> (bool, Option<Time>, u64, crate::objects::ObjectKey) {
    let created = entry.object.metadata().creation_timestamp.clone();
    let seen = if created.is_some() { 0 } else { entry.seen };
    (created.is_none(), created, seen, entry.key())
}

pub(crate) fn to_diagnostic(object: &str, file: &Option<PathBuf>, problem: Problem) -> Diagnostic {
    let diagnostic = Diagnostic::new(problem.message).object(object).file(file.clone());
    match problem.field {
        Some(field) => diagnostic.field(field),
        None => diagnostic,
    }
}

/// The table's record of which object a route came from. The namespace of another cluster's object is
/// `cluster/namespace`, so the route reads `VirtualService alpha/default/web` like the object's key.
pub fn source_of(key: &crate::objects::ObjectKey) -> Source {
    Source { kind: key.kind.as_str().to_string(), namespace: key.qualified_namespace(), name: key.name.clone() }
}

#[cfg(test)]
mod tests;
