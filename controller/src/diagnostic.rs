//! A problem with what a user wrote: which file, which object, which field, and what to do about it.
//!
//! The same text reaches the log, `berth check`, `berth routes` and `/v1/routes`, so it is built once here.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    /// `VirtualService default/website`, `IngressClass berth`; none when the object could not be read at all.
    pub object: Option<String>,
    /// The file the object came from, as reached from the source's path.
    pub file: Option<PathBuf>,
    /// The offending field's path in the object, e.g. `spec.http[0].route[0].destination.host`.
    pub field: Option<String>,
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

/// An error means the object (or part of a source) is not served; a warning reports something served anyway that
/// deserves attention (a port kept outside the current ranges). `berth check` fails on errors only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic { object: None, file: None, field: None, message: message.into(), severity: Severity::Error }
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }

    pub fn object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// Like [`Diagnostic::object`], for an object that may be unknown.
    pub fn with_object(mut self, object: Option<String>) -> Self {
        self.object = object;
        self
    }

    pub fn file(mut self, file: Option<PathBuf>) -> Self {
        self.file = file;
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// How a diagnostic travels in JSON (`/v1/routes`): its parts, plus the display text so every client shows the
/// same words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticView {
    pub object: Option<String>,
    pub file: Option<PathBuf>,
    pub field: Option<String>,
    pub message: String,
    pub text: String,
    #[serde(default)]
    pub severity: Severity,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticView {
            object: d.object.clone(),
            file: d.file.clone(),
            field: d.field.clone(),
            message: d.message.clone(),
            text: d.to_string(),
            severity: d.severity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_every_known_part_in_order() {
        let d = Diagnostic::new("service \"svc9\" not found in namespace default")
            .object("VirtualService default/website")
            .file(Some("examples/vs.yaml".into()))
            .field("spec.http[0].route[0].destination.host");
        assert_eq!(
            d.to_string(),
            "examples/vs.yaml: VirtualService default/website: spec.http[0].route[0].destination.host: \
             service \"svc9\" not found in namespace default"
        );
    }

    #[test]
    fn leaves_out_unknown_parts() {
        assert_eq!(Diagnostic::new("bad").to_string(), "bad");
        assert_eq!(Diagnostic::new("bad").file(Some("a.yaml".into())).to_string(), "a.yaml: bad");
    }

    #[test]
    fn view_carries_the_text() {
        let d = Diagnostic::new("bad").object("Ingress default/x");
        let view = DiagnosticView::from(&d);
        assert_eq!(view.text, "Ingress default/x: bad");
        assert_eq!(view.object.as_deref(), Some("Ingress default/x"));
    }
}
