//! The host boundary: the few Envoy calls the filter makes, behind a trait so the fetch and routing logic run in
//! native unit tests against a fake.
//!
//! [`Envoy`] implements it with `proxy_wasm::hostcalls`, never with the SDK's `Context` helpers: those `unwrap`
//! host results, and some (`get_http_request_header`) panic on a header value that is not UTF-8, which a client
//! controls. A panic kills the VM for every request it serves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType};

/// The Envoy calls Berth's logic makes. Methods that only make sense in one kind of context (an HTTP call
/// response, a request) act on whatever context Envoy is currently calling into.
pub trait Host {
    /// A shared-data value of this VM id, or `None` when the key is unset.
    fn shared_data(&self, key: &str) -> Option<Vec<u8>>;
    fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// A shared-data value with its CAS (compare-and-swap) token; the token is `None` when the key is unset.
    fn shared_data_cas(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` only if the key's CAS token is still `cas` (`None`: unconditionally).
    fn set_shared_data_cas(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasError>;
    /// Milliseconds since the epoch (only differences matter).
    fn now_ms(&self) -> u64;
    /// Starts a GET to `cluster`; the answer arrives in `on_http_call_response` with the returned token.
    fn dispatch_get(&self, cluster: &str, authority: &str, path: &str, timeout: Duration) -> Result<u32, String>;
    /// A header of the HTTP call response being handled (`:status` included).
    fn call_response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// The first `size` bytes of the HTTP call response body being handled.
    fn call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// A request header of the current HTTP stream, as bytes (`:authority` and `:path` included).
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Calls the `set_envoy_filter_state` foreign function with already encoded arguments.
    fn set_filter_state(&self, encoded_arguments: &[u8]) -> Result<(), String>;
    /// Answers the current request locally.
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &str) -> Result<(), String>;
    /// Adds a header to the response of the current HTTP stream (in `on_http_response_headers`).
    fn add_response_header(&self, name: &str, value: &str) -> Result<(), String>;
    /// Edits a header of the current HTTP stream's request or response (`set` replaces every value, `add`
    /// appends one, `remove` drops every value).
    fn edit_header(&self, side: Side, edit: Edit, name: &str, value: &str) -> Result<(), String>;
    /// A property of the current stream or connection (`destination.port`), in Envoy's serialization.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Closes the current downstream connection (a network filter's).
    fn close_downstream(&self) -> Result<(), String>;
    /// Defines (or finds) a counter of this VM; the id is valid for every context of the VM.
    fn define_counter(&self, name: &str) -> Result<u32, String>;
    fn increment_counter(&self, id: u32) -> Result<(), String>;
}

/// Which headers of an HTTP stream [`Host::edit_header`] edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// What [`Host::edit_header`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Set,
    Add,
    Remove,
}

/// Why a conditional shared-data write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasError {
    /// Another VM wrote the key since it was read: read again and retry.
    Mismatch,
    Other(String),
}

/// The real host: Envoy, through the proxy-wasm ABI.
pub struct Envoy;

impl Host for Envoy {
    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key).ok().and_then(|(value, _cas)| value)
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), String> {
        hostcalls::set_shared_data(key, Some(value), None).map_err(|status| format!("{status:?}"))
    }

    fn shared_data_cas(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data_cas(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            proxy_wasm::types::Status::CasMismatch => CasError::Mismatch,
            other => CasError::Other(format!("{other:?}")),
        })
    }

    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn dispatch_get(&self, cluster: &str, authority: &str, path: &str, timeout: Duration) -> Result<u32, String> {
        let headers =
            vec![(":method", "GET"), (":path", path), (":authority", authority), ("accept", "application/json")];
        hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout).map_err(|status| format!("{status:?}"))
    }

    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).ok().flatten()
    }

    fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).ok().flatten()
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn set_filter_state(&self, encoded_arguments: &[u8]) -> Result<(), String> {
        hostcalls::call_foreign_function("set_envoy_filter_state", Some(encoded_arguments))
            .map(|_| ())
            .map_err(|status| format!("{status:?}"))
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &str) -> Result<(), String> {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body.as_bytes()))
            .map_err(|status| format!("{status:?}"))
    }

    fn add_response_header(&self, name: &str, value: &str) -> Result<(), String> {
        hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value).map_err(|status| format!("{status:?}"))
    }

    fn edit_header(&self, side: Side, edit: Edit, name: &str, value: &str) -> Result<(), String> {
        let map = match side {
            Side::Request => MapType::HttpRequestHeaders,
            Side::Response => MapType::HttpResponseHeaders,
        };
        match edit {
            Edit::Set => hostcalls::set_map_value(map, name, Some(value)),
            Edit::Add => hostcalls::add_map_value(map, name, value),
            Edit::Remove => hostcalls::remove_map_value(map, name),
        }
        .map_err(|status| format!("{status:?}"))
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn close_downstream(&self) -> Result<(), String> {
        hostcalls::close_downstream().map_err(|status| format!("{status:?}"))
    }

    fn define_counter(&self, name: &str) -> Result<u32, String> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(|status| format!("{status:?}"))
    }

    fn increment_counter(&self, id: u32) -> Result<(), String> {
        hostcalls::increment_metric(id, 1).map_err(|status| format!("{status:?}"))
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory host for unit tests: shared data in a map, calls and replies recorded.

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::time::Duration;

    use super::{CasError, Edit, Host, Side};

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Dispatched {
        pub cluster: String,
        pub authority: String,
        pub path: String,
        pub timeout: Duration,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub status: u32,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    #[derive(Default)]
    pub struct FakeHost {
        pub shared: RefCell<HashMap<String, Vec<u8>>>,
        /// CAS tokens by key, bumped by every write.
        pub cas: RefCell<HashMap<String, u32>>,
        /// How many of the next conditional writes fail as if another VM had written first (and then does).
        pub cas_conflicts: Cell<u32>,
        /// Every `set_shared_data`, in order.
        pub writes: RefCell<Vec<String>>,
        /// Every `shared_data` read, in order.
        pub reads: RefCell<Vec<String>>,
        pub now: Cell<u64>,
        pub dispatched: RefCell<Vec<Dispatched>>,
        pub dispatch_fails: Cell<bool>,
        pub next_token: Cell<u32>,
        pub response_headers: RefCell<HashMap<String, Vec<u8>>>,
        pub response_body: RefCell<Vec<u8>>,
        pub request_headers: RefCell<HashMap<String, Vec<u8>>>,
        /// Every `request_header` read, in order.
        pub header_reads: RefCell<Vec<String>>,
        pub filter_state: RefCell<Vec<Vec<u8>>>,
        pub filter_state_fails: Cell<bool>,
        pub replies: RefCell<Vec<Reply>>,
        /// Every response header added, in order.
        pub response_headers_added: RefCell<Vec<(String, String)>>,
        /// Every header edit, in order: side, edit, name, value.
        pub header_edits: RefCell<Vec<(Side, Edit, String, String)>>,
        /// Properties by dotted path (`destination.port`).
        pub properties: RefCell<HashMap<String, Vec<u8>>>,
        /// Every `property` read, dotted, in order.
        pub property_reads: RefCell<Vec<String>>,
        pub closed: Cell<u32>,
        /// Counters by id (their index here), with their names.
        pub counters: RefCell<Vec<(String, u64)>>,
    }

    impl FakeHost {
        pub fn respond(&self, status: &str, body: &[u8]) {
            let mut headers = self.response_headers.borrow_mut();
            headers.clear();
            headers.insert(":status".into(), status.as_bytes().to_vec());
            *self.response_body.borrow_mut() = body.to_vec();
        }

        pub fn request(&self, authority: &str, path: &str) {
            let mut headers = self.request_headers.borrow_mut();
            headers.clear();
            headers.insert(":authority".into(), authority.as_bytes().to_vec());
            headers.insert(":path".into(), path.as_bytes().to_vec());
        }

        pub fn shared_str(&self, key: &str) -> Option<String> {
            self.shared.borrow().get(key).map(|v| String::from_utf8_lossy(v).into_owned())
        }

        pub fn put_shared(&self, key: &str, value: &[u8]) {
            self.shared.borrow_mut().insert(key.into(), value.to_vec());
            *self.cas.borrow_mut().entry(key.into()).or_insert(0) += 1;
        }

        /// A new connection's context: Envoy serializes `destination.port` as an 8-byte little-endian integer.
        pub fn connect_to(&self, port: u16) {
            let mut properties = self.properties.borrow_mut();
            properties.clear();
            properties.insert("destination.port".into(), i64::from(port).to_le_bytes().to_vec());
        }

        pub fn counter(&self, name: &str) -> u64 {
            self.counters.borrow().iter().find(|(n, _)| n == name).map_or(0, |(_, value)| *value)
        }
    }

    impl Host for FakeHost {
        fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
            self.reads.borrow_mut().push(key.into());
            self.shared.borrow().get(key).cloned()
        }

        fn set_shared_data(&self, key: &str, value: &[u8]) -> Result<(), String> {
            self.writes.borrow_mut().push(key.into());
            self.put_shared(key, value);
            Ok(())
        }

        fn shared_data_cas(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            (self.shared_data(key), self.cas.borrow().get(key).copied())
        }

        fn set_shared_data_cas(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasError> {
            if self.cas_conflicts.get() > 0 {
                self.cas_conflicts.set(self.cas_conflicts.get() - 1);
                // Another VM's write: the same value under a new token.
                let current = self.shared.borrow().get(key).cloned().unwrap_or_default();
                self.put_shared(key, &current);
                return Err(CasError::Mismatch);
            }
            if cas.is_some() && cas != self.cas.borrow().get(key).copied() {
                return Err(CasError::Mismatch);
            }
            self.set_shared_data(key, value).map_err(CasError::Other)
        }

        fn now_ms(&self) -> u64 {
            self.now.get()
        }

        fn dispatch_get(&self, cluster: &str, authority: &str, path: &str, timeout: Duration) -> Result<u32, String> {
            if self.dispatch_fails.get() {
                return Err("BadArgument".into());
            }
            self.dispatched.borrow_mut().push(Dispatched {
                cluster: cluster.into(),
                authority: authority.into(),
                path: path.into(),
                timeout,
            });
            self.next_token.set(self.next_token.get() + 1);
            Ok(self.next_token.get())
        }

        fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
            self.response_headers.borrow().get(name).cloned()
        }

        fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
            let body = self.response_body.borrow();
            Some(body[..size.min(body.len())].to_vec())
        }

        fn request_header(&self, name: &str) -> Option<Vec<u8>> {
            self.header_reads.borrow_mut().push(name.into());
            self.request_headers.borrow().get(name).cloned()
        }

        fn set_filter_state(&self, encoded_arguments: &[u8]) -> Result<(), String> {
            if self.filter_state_fails.get() {
                return Err("NotFound".into());
            }
            self.filter_state.borrow_mut().push(encoded_arguments.to_vec());
            Ok(())
        }

        fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &str) -> Result<(), String> {
            self.replies.borrow_mut().push(Reply {
                status,
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body: body.into(),
            });
            Ok(())
        }

        fn add_response_header(&self, name: &str, value: &str) -> Result<(), String> {
            self.response_headers_added.borrow_mut().push((name.into(), value.into()));
            Ok(())
        }

        fn edit_header(&self, side: Side, edit: Edit, name: &str, value: &str) -> Result<(), String> {
            self.header_edits.borrow_mut().push((side, edit, name.into(), value.into()));
            if side == Side::Request {
                let mut headers = self.request_headers.borrow_mut();
                match edit {
                    Edit::Set | Edit::Add => headers.insert(name.into(), value.as_bytes().to_vec()),
                    Edit::Remove => headers.remove(name),
                };
            }
            Ok(())
        }

        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            let dotted = path.join(".");
            self.property_reads.borrow_mut().push(dotted.clone());
            self.properties.borrow().get(&dotted).cloned()
        }

        fn close_downstream(&self) -> Result<(), String> {
            self.closed.set(self.closed.get() + 1);
            Ok(())
        }

        fn define_counter(&self, name: &str) -> Result<u32, String> {
            let mut counters = self.counters.borrow_mut();
            let id = match counters.iter().position(|(n, _)| n == name) {
                Some(id) => id,
                None => {
                    counters.push((name.into(), 0));
                    counters.len() - 1
                }
            };
            u32::try_from(id).map_err(|e| e.to_string())
        }

        fn increment_counter(&self, id: u32) -> Result<(), String> {
            let mut counters = self.counters.borrow_mut();
            let counter = counters.get_mut(id as usize).ok_or("NotFound")?;
            counter.1 += 1;
            Ok(())
        }
    }
}
