//! Carrying out a route's [`RoutePolicy`] (VirtualService `rewrite`, `timeout`, `retries`, `headers`): request
//! edits before Envoy's router sees the request, response edits as the response passes.
//!
//! Built once per table for the routes that have a policy; a route without one has none, and a request on it makes
//! no call here. Timeouts and retries are the router's own request headers, set like any other header: the HTTP
//! listener drops a client's copies before the filter runs (see [`berth_table::RoutePolicy`]), so what the router
//! reads is the route's. Routing goes through one `ORIGINAL_DST` cluster whose destination is already set, so a
//! rewritten `:path` or `:authority` needs no new route pick.

use berth_table::{HeaderEdits, RoutePolicy};

use crate::host::{Edit, Host, Side};

/// One route's edits, in the order they are made.
#[derive(Debug, PartialEq, Eq)]
pub struct PreparedPolicy {
    /// `rewrite.uri`: the replacement of the matched part of the path.
    pub rewrite_uri: Option<String>,
    /// Request headers to set: `:authority` (`rewrite.authority`), the router's timeout and retry headers, then
    /// the route's own `headers.request.set`.
    request_set: Vec<(String, String)>,
    request_add: Vec<(String, String)>,
    request_remove: Vec<String>,
    response: HeaderEdits,
}

impl PreparedPolicy {
    pub fn new(policy: &RoutePolicy) -> PreparedPolicy {
        let mut request_set = Vec::new();
        if let Some(authority) = &policy.rewrite_authority {
            request_set.push((":authority".to_string(), authority.clone()));
        }
        request_set.extend(policy.router_headers().into_iter().map(|(name, value)| (name.to_string(), value)));
        request_set.extend(policy.request_headers.set.iter().cloned());
        PreparedPolicy {
            rewrite_uri: policy.rewrite_uri.clone(),
            request_set,
            request_add: policy.request_headers.add.clone(),
            request_remove: policy.request_headers.remove.clone(),
            response: policy.response_headers.clone(),
        }
    }

    /// Edits the request: `path` is the rewritten `:path`, when the route rewrites it. Every edit is tried; the
    /// first failure is returned.
    pub fn apply_to_request(&self, host: &impl Host, path: Option<&str>) -> Result<(), String> {
        let path = path.map(|path| (":path".to_string(), path.to_string()));
        let edits = path.iter().chain(&self.request_set).map(|(name, value)| (Edit::Set, name, value.as_str()));
        let edits = edits
            .chain(self.request_add.iter().map(|(name, value)| (Edit::Add, name, value.as_str())))
            .chain(self.request_remove.iter().map(|name| (Edit::Remove, name, "")));
        apply(host, Side::Request, edits)
    }

    /// Edits the response; false when the route has no response edits.
    pub fn edits_response(&self) -> bool {
        !self.response.is_empty()
    }

    pub fn apply_to_response(&self, host: &impl Host) -> Result<(), String> {
        let HeaderEdits { set, add, remove } = &self.response;
        let edits = set.iter().map(|(name, value)| (Edit::Set, name, value.as_str()));
        let edits = edits
            .chain(add.iter().map(|(name, value)| (Edit::Add, name, value.as_str())))
            .chain(remove.iter().map(|name| (Edit::Remove, name, "")));
        apply(host, Side::Response, edits)
    }
}

fn apply<'a>(
    host: &impl Host,
    side: Side,
    edits: impl Iterator<Item = (Edit, &'a String, &'a str)>,
) -> Result<(), String> {
    let mut first_failure = Ok(());
    for (edit, name, value) in edits {
        if let Err(status) = host.edit_header(side, edit, name, value)
            && first_failure.is_ok()
        {
            first_failure = Err(format!("cannot {edit:?} {side:?} header {name}: {status}"));
        }
    }
    first_failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use berth_table::{Retries, TIMEOUT_HEADER};

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.into(), value.into())
    }

    #[test]
    fn request_edits_come_in_order_path_authority_router_headers_then_the_routes_own() {
        let policy = RoutePolicy {
            rewrite_uri: Some("/v2".into()),
            rewrite_authority: Some("internal.svc".into()),
            timeout_ms: Some(3000),
            retries: Some(Retries { attempts: 2, retry_on: "5xx".into(), ..Retries::default() }),
            request_headers: HeaderEdits {
                set: vec![pair("x-env", "prod")],
                add: vec![pair("x-trace", "berth")],
                remove: vec!["x-debug".into()],
            },
            response_headers: HeaderEdits::default(),
        };
        let prepared = PreparedPolicy::new(&policy);
        assert!(!prepared.edits_response());
        let host = FakeHost::default();
        prepared.apply_to_request(&host, Some("/v2/x")).unwrap();
        let edits: Vec<(Edit, String, String)> = host
            .header_edits
            .borrow()
            .iter()
            .map(|(side, edit, n, v)| {
                assert_eq!(*side, Side::Request);
                (*edit, n.clone(), v.clone())
            })
            .collect();
        let set = |n: &str, v: &str| (Edit::Set, n.to_string(), v.to_string());
        assert_eq!(
            edits,
            [
                set(":path", "/v2/x"),
                set(":authority", "internal.svc"),
                set(TIMEOUT_HEADER, "3000"),
                set("x-envoy-max-retries", "2"),
                set("x-envoy-retry-on", "5xx"),
                set("x-env", "prod"),
                (Edit::Add, "x-trace".into(), "berth".into()),
                (Edit::Remove, "x-debug".into(), String::new()),
            ]
        );
    }

    #[test]
    fn response_edits_set_add_and_remove() {
        let policy = RoutePolicy {
            response_headers: HeaderEdits {
                set: vec![pair("cache-control", "no-store")],
                add: vec![pair("x-served-by", "berth")],
                remove: vec!["server".into()],
            },
            ..RoutePolicy::default()
        };
        let prepared = PreparedPolicy::new(&policy);
        assert!(prepared.edits_response());
        let host = FakeHost::default();
        prepared.apply_to_request(&host, None).unwrap();
        assert!(host.header_edits.borrow().is_empty(), "no request edits, no calls");
        prepared.apply_to_response(&host).unwrap();
        let sides: Vec<Side> = host.header_edits.borrow().iter().map(|e| e.0).collect();
        assert_eq!(sides, [Side::Response; 3]);
    }
}
