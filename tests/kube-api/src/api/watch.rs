//! Watch streams: newline-delimited JSON events from a resourceVersion (replayed from history), from "now" with
//! the current objects as ADDED, or as a watch-list (`sendInitialEvents`); periodic BOOKMARKs; `timeoutSeconds`;
//! 410 Gone as an ERROR event for a compacted resourceVersion; cut by the fault handle.

use super::object::present;
use super::query::Query;
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::store::{Change, ChangeType};
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Without `timeoutSeconds` the real server ends a watch after 30–60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    rt: ResourceType,
    ns: Option<String>,
    selector: Selector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|ns| crate::meta::namespace(obj) == Some(ns)) && self.selector.matches(obj)
    }

    /// The event this watch sees for a change, if any: a change that moves an object into or out of the
    /// selector is ADDED or DELETED for this watch, as the real server's watch cache does.
    fn event(&self, change: &Change) -> Option<Value> {
        if change.key != self.rt.storage_key() {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.prev.as_ref().is_some_and(|p| self.matches(p));
        let kind = match change.kind {
            ChangeType::Added if now => "ADDED",
            ChangeType::Modified if now && before => "MODIFIED",
            ChangeType::Modified if now => "ADDED",
            ChangeType::Modified if before => "DELETED",
            ChangeType::Deleted if before => "DELETED",
            _ => return None,
        };
        Some(event(kind, present(&self.rt, change.object.clone())))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event("BOOKMARK", json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata}))
    }
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

enum Start {
    /// Events after this resourceVersion.
    After(u64),
    /// The current objects as ADDED, then changes.
    Now { initial: bool },
}

pub fn watch(app: Arc<App>, rt: ResourceType, ns: Option<String>, q: &Query) -> ApiResult<Response> {
    let selector = Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|_| q.flag("sendInitialEvents"));
    let invalid = |m: &str| ApiError::new(422, "Invalid", format!("ListOptions.meta.k8s.io \"\" is invalid: {m}"));
    match (send_initial, q.get("resourceVersionMatch")) {
        (Some(true), Some("NotOlderThan")) if bookmarks => {}
        (Some(true), Some("NotOlderThan")) => {
            return Err(invalid("allowWatchBookmarks: Required value: sendInitialEvents requires bookmarks"));
        }
        (Some(true), _) => {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        _ => {}
    }
    let watch_list = send_initial == Some(true);
    let start = match q.get("resourceVersion") {
        _ if watch_list => Start::Now { initial: true },
        None | Some("0") => Start::Now { initial: send_initial != Some(false) },
        Some(rv) => {
            Start::After(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?)
        }
    };
    let timeout =
        q.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT);
    let filter = Filter { rt, ns, selector };

    let (first, rx) = app.store.subscribe(|s| {
        let rv = s.rv();
        let mut lines = vec![];
        match start {
            Start::After(from) if from < s.compacted() || from > rv => {
                let e = ApiError::gone(format!("too old resource version: {from} ({})", s.compacted()));
                return (vec![line(&event("ERROR", e.to_status()))], rv, true);
            }
            Start::After(from) => lines.extend(s.history_after(from).filter_map(|c| filter.event(c)).map(|e| line(&e))),
            Start::Now { initial: true } => lines.extend(
                s.list(&filter.rt.storage_key(), filter.ns.as_deref())
                    .filter(|(_, o)| filter.selector.matches(o))
                    .map(|(_, o)| line(&event("ADDED", present(&filter.rt, o.clone())))),
            ),
            Start::Now { initial: false } => {}
        }
        if watch_list {
            lines.push(line(&filter.bookmark(rv, true)));
        }
        (lines, rv, false)
    });
    let (lines, rv, done) = first;

    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    let cut = app.faults.cut_signal();
    let interval = app.bookmark_interval;
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if !done {
            stream(tx, rx, cut, filter, Stream { rv, timeout, bookmarks: bookmarks.then_some(interval) }).await;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .unwrap_or_default())
}

struct Stream {
    rv: u64,
    timeout: Duration,
    bookmarks: Option<Duration>,
}

async fn stream(
    tx: mpsc::Sender<Bytes>,
    mut rx: broadcast::Receiver<Arc<Change>>,
    mut cut: tokio::sync::watch::Receiver<u64>,
    filter: Filter,
    mut s: Stream,
) {
    let deadline = tokio::time::sleep(s.timeout);
    tokio::pin!(deadline);
    let period = s.bookmarks.unwrap_or(Duration::from_secs(3600));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        let out = tokio::select! {
            _ = &mut deadline => return,
            _ = cut.changed() => return,
            _ = tx.closed() => return,
            _ = ticks.tick(), if s.bookmarks.is_some() => Some(filter.bookmark(s.rv, false)),
            change = rx.recv() => match change {
                Ok(c) if c.rv <= s.rv => None,
                Ok(c) => {
                    // Every change moves the bookmark: this stream has seen everything up to it.
                    s.rv = c.rv;
                    filter.event(&c)
                }
                // Lagged or closed: end the stream; the client resumes from its last resourceVersion.
                Err(_) => return,
            },
        };
        if let Some(e) = out
            && tx.send(line(&e)).await.is_err()
        {
            return;
        }
    }
}
