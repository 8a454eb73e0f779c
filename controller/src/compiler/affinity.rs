//! Session affinity annotations: `berth.dev/session-cookie: NAME` (HTTP routes of a VirtualService or Ingress)
//! and `berth.dev/session-affinity: source-ip` (tcp routes of a VirtualService), read into the routes they apply
//! to. A bad value is the object's problem, like any other field: ignoring it would silently drop the persistence
//! the user asked for.
//!
//! Istio configures the same on a DestinationRule (`trafficPolicy.loadBalancer.consistentHash`), a kind Berth does
//! not watch; the annotations stand in for it.

use berth_table::is_cookie_name;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Problem;
use crate::objects::annotation;

pub const SESSION_COOKIE_ANNOTATION: &str = "berth.dev/session-cookie";
pub const SESSION_AFFINITY_ANNOTATION: &str = "berth.dev/session-affinity";
/// The one value of [`SESSION_AFFINITY_ANNOTATION`].
pub const SOURCE_IP: &str = "source-ip";

fn field(name: &str) -> String {
    format!("metadata.annotations[{name:?}]")
}

/// The session cookie an object's HTTP routes use, if it asks for one. `has_http` says whether it has any: the
/// annotation on an object without HTTP routes is a mistake worth reporting.
pub fn session_cookie(meta: &ObjectMeta, has_http: bool) -> Result<Option<String>, Problem> {
    let Some(name) = annotation(meta, SESSION_COOKIE_ANNOTATION) else { return Ok(None) };
    let name = name.trim();
    if !is_cookie_name(name) {
        return Err(Problem::new(
            field(SESSION_COOKIE_ANNOTATION),
            format!(
                "{name:?} is not a cookie name; use up to 64 letters, digits and !#$%&'*+-.^_`|~ (e.g. \
                 berth-session)"
            ),
        ));
    }
    if !has_http {
        return Err(Problem::new(
            field(SESSION_COOKIE_ANNOTATION),
            format!(
                "applies to http routes and this object has none; for tcp routes use {SESSION_AFFINITY_ANNOTATION}: \
                 {SOURCE_IP}"
            ),
        ));
    }
    Ok(Some(name.to_string()))
}

/// Whether a VirtualService's tcp routes keep each client IP on one endpoint. `has_tcp` says whether it has any.
pub fn source_ip_affinity(meta: &ObjectMeta, has_tcp: bool) -> Result<bool, Problem> {
    let Some(value) = annotation(meta, SESSION_AFFINITY_ANNOTATION) else { return Ok(false) };
    if value.trim() != SOURCE_IP {
        return Err(Problem::new(
            field(SESSION_AFFINITY_ANNOTATION),
            format!(
                "{value:?} is not a session affinity; the one supported is {SOURCE_IP:?} (for http routes use \
                 {SESSION_COOKIE_ANNOTATION}: NAME)"
            ),
        ));
    }
    if !has_tcp {
        return Err(Problem::new(
            field(SESSION_AFFINITY_ANNOTATION),
            format!("applies to tcp routes and this object has none; for http routes use {SESSION_COOKIE_ANNOTATION}"),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ObjectMeta { annotations: Some(annotations), ..ObjectMeta::default() }
    }

    #[test]
    fn a_session_cookie_is_a_token_on_an_object_with_http_routes() {
        assert_eq!(session_cookie(&meta(&[]), true), Ok(None));
        assert_eq!(session_cookie(&meta(&[(SESSION_COOKIE_ANNOTATION, " shop ")]), true), Ok(Some("shop".into())));
        let bad = session_cookie(&meta(&[(SESSION_COOKIE_ANNOTATION, "a b")]), true).unwrap_err();
        assert_eq!(bad.field.as_deref(), Some("metadata.annotations[\"berth.dev/session-cookie\"]"));
        assert!(bad.message.contains("\"a b\" is not a cookie name"), "{}", bad.message);
        let misplaced = session_cookie(&meta(&[(SESSION_COOKIE_ANNOTATION, "shop")]), false).unwrap_err();
        assert!(misplaced.message.contains(SESSION_AFFINITY_ANNOTATION), "{}", misplaced.message);
    }

    #[test]
    fn source_ip_is_the_one_affinity_for_tcp_routes() {
        assert_eq!(source_ip_affinity(&meta(&[]), true), Ok(false));
        assert_eq!(source_ip_affinity(&meta(&[(SESSION_AFFINITY_ANNOTATION, "source-ip")]), true), Ok(true));
        let bad = source_ip_affinity(&meta(&[(SESSION_AFFINITY_ANNOTATION, "cookie")]), true).unwrap_err();
        assert!(bad.message.contains("\"cookie\" is not a session affinity"), "{}", bad.message);
        let misplaced = source_ip_affinity(&meta(&[(SESSION_AFFINITY_ANNOTATION, "source-ip")]), false);
        assert!(misplaced.unwrap_err().message.contains("no"));
    }
}
