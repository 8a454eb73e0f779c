//! Kubernetes `Status` error bodies, shaped as kube-rs (`ErrorResponse`) and kubectl parse them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A failed API request: becomes a `kind: Status` body with the same code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What a Status names in `details`: resource plural, API group, object name.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    /// `services "web"` or `ingresses.networking.k8s.io "web"`, as the real server words it.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} \"{}\"", self.plural, self.name)
        } else {
            format!("{}.{} \"{}\"", self.plural, self.group, self.name)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({"name": self.name, "kind": self.plural});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(s: Subject<'_>) -> Self {
        ApiError { details: Some(s.details()), ..Self::new(404, "NotFound", format!("{} not found", s.qualified())) }
    }

    pub fn already_exists(s: Subject<'_>) -> Self {
        let message = format!("{} already exists", s.qualified());
        ApiError { details: Some(s.details()), ..Self::new(409, "AlreadyExists", message) }
    }

    pub fn conflict(s: Subject<'_>) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the \
             latest version and try again",
            s.qualified()
        );
        ApiError { details: Some(s.details()), ..Self::new(409, "Conflict", message) }
    }

    pub fn invalid(s: Subject<'_>, message: impl Into<String>) -> Self {
        let message = format!("{} is invalid: {}", s.qualified(), message.into());
        ApiError { details: Some(s.details()), ..Self::new(422, "Invalid", message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unknown_resource() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unavailable() -> Self {
        Self::new(503, "ServiceUnavailable", "the server is currently unable to handle the request (paused by a test)")
    }

    /// The `Status` object itself, also used inside watch `ERROR` events.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.to_status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_the_group_qualified_resource() {
        let e = ApiError::conflict(Subject { group: "coordination.k8s.io", plural: "leases", name: "berth" });
        let s = e.to_status();
        assert_eq!(s["code"], 409);
        assert_eq!(s["reason"], "Conflict");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .starts_with("Operation cannot be fulfilled on leases.coordination.k8s.io \"berth\"")
        );
        assert_eq!(s["details"]["group"], "coordination.k8s.io");
    }
}
