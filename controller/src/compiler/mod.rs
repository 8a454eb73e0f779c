//! The compiler: a pure function from the index to the table's content and the problems found on the way.
//!
//! Every object is compiled on its own into routes or problems. An object with any problem contributes nothing
//! (a half-applied object is harder to reason about than an absent one). Then objects claim their routes oldest
//! first; see [`conflicts`].

mod backends;
pub mod conflicts;
mod ingress;
mod virtual_service;

pub use backends::{BACKENDS_ANNOTATION, BackendMode, PortRef, Resolver, Unresolved};
pub use ingress::{CONTROLLER, Classes};

use std::path::PathBuf;

use berth_table::{DefaultBackend, HttpRoute, Source, Table};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::Diagnostic;
use crate::index::{Entry, Index};
use crate::objects::{Kind, Object, annotation};

/// A VirtualService is served only when it asks for it.
pub const EXPOSE_ANNOTATION: &str = "berth.dev/expose";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where Services' traffic goes unless a Service says otherwise.
    pub backends: BackendMode,
}

/// What the table holds, without its version: two compilations are the same table when these are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Oldest object first; within an object, in the order it lists them.
    pub http: Vec<HttpRoute>,
    pub default_backend: Option<DefaultBackend>,
}

impl Content {
    pub fn to_table(&self, version: u64) -> Table {
        let mut table = Table::new(version);
        table.http = self.http.clone();
        table.default_backend = self.default_backend.clone();
        table
    }
}

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub content: Content,
    /// Problems reading the sources, then problems compiling, oldest object first.
    pub diagnostics: Vec<Diagnostic>,
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
}

pub fn compile(index: &Index, options: &Options) -> Compiled {
    let resolver = Resolver::new(index, options.backends);
    let classes = Classes::from_index(index);

    let mut objects: Vec<(&Entry, Result<Wants, Vec<Problem>>)> = Vec::new();
    for entry in index.of_kind(Kind::Ingress) {
        if let Object::Ingress(ingress) = &entry.object
            && classes.serves(ingress)
        {
            objects.push((entry, ingress::compile(ingress, &resolver)));
        }
    }
    for entry in index.of_kind(Kind::VirtualService) {
        if let Object::VirtualService(vs) = &entry.object
            && annotation(&vs.metadata, EXPOSE_ANNOTATION) == Some("true")
        {
            objects.push((entry, virtual_service::compile(vs, &resolver)));
        }
    }
    objects.sort_by_key(|(entry, _)| age(entry));

    let mut diagnostics: Vec<Diagnostic> = index.source_diagnostics().cloned().collect();
    let mut claimants = Vec::new();
    for (entry, result) in objects {
        let key = entry.object.key();
        match result {
            Ok(wants) => claimants.push(conflicts::Claimant { key, file: entry.file.clone(), wants }),
            Err(problems) => {
                diagnostics.extend(problems.into_iter().map(|p| to_diagnostic(&key.to_string(), &entry.file, p)))
            }
        }
    }
    let (content, conflicts) = conflicts::resolve(claimants);
    diagnostics.extend(conflicts);
    Compiled { content, diagnostics }
}

/// The order of objects: those with a `creationTimestamp` by it, then those without in the order they were first
/// seen (for the directory source: by file path, then position in the file). Ties go to the first seen.
fn age(entry: &Entry) -> (bool, Option<Time>, u64) {
    let created = entry.object.metadata().creation_timestamp.clone();
    (created.is_none(), created, entry.seen)
}

pub(crate) fn to_diagnostic(object: &str, file: &Option<PathBuf>, problem: Problem) -> Diagnostic {
    Diagnostic { object: Some(object.to_string()), file: file.clone(), field: problem.field, message: problem.message }
}

/// The table's record of which object a route came from.
pub(crate) fn source_of(kind: Kind, namespace: &str, name: &str) -> Source {
    Source { kind: kind.as_str().to_string(), namespace: namespace.to_string(), name: name.to_string() }
}

#[cfg(test)]
mod tests;
