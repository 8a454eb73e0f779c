//! Watch semantics through kube-rs: replay from a resourceVersion, bookmarks, 410 Gone after compaction,
//! timeouts, watch-list, selector transitions, and kube-runtime watchers across cut streams and compaction.

// Helpers below fail the test on any error, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::time::Duration;

async fn next(
    stream: &mut (impl futures_util::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("stream open")
        .unwrap()
}

fn added(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(c) => c.name_any(),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_replays_history_after_a_resource_version_then_streams() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let a = cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();

    let wp = WatchParams::default().disable_bookmarks();
    let mut s = cms.watch(&wp, &a.resource_version().unwrap()).await.unwrap().boxed();
    assert_eq!(added(&next(&mut s).await), "b");
    assert!(matches!(next(&mut s).await, WatchEvent::Modified(c) if c.data.as_ref().unwrap()["k"] == "2"));
    cms.delete("b", &Default::default()).await.unwrap();
    assert!(matches!(next(&mut s).await, WatchEvent::Deleted(c) if c.name_any() == "b"));

    // From "0": the current objects as ADDED.
    let mut s = cms.watch(&wp, "0").await.unwrap().boxed();
    assert_eq!(added(&next(&mut s).await), "a");
}

#[tokio::test]
async fn bookmarks_carry_the_latest_resource_version() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let rv = cms.list_metadata(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut s = cms.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    // A change elsewhere moves the bookmark past it.
    let other: Api<ConfigMap> = Api::namespaced(f.client.clone(), "kube-system");
    let o = other.create(&PostParams::default(), &cm("elsewhere", &[])).await.unwrap();
    // Bookmarks keep coming; one soon carries the new version (an earlier one may carry the old).
    let want = o.resource_version().unwrap();
    for _ in 0..10 {
        match next(&mut s).await {
            WatchEvent::Bookmark(b) if b.metadata.resource_version == want => return,
            WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
            e => panic!("expected only bookmarks, got {e:?}"),
        }
    }
    panic!("no bookmark with resourceVersion {want}");
}

#[tokio::test]
async fn a_compacted_resource_version_is_gone() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let a = cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    f.api.compact();
    let mut s = cms.watch(&WatchParams::default(), &a.resource_version().unwrap()).await.unwrap().boxed();
    match next(&mut s).await {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        e => panic!("expected 410, got {e:?}"),
    }
    // The same over HTTP: the real server's /_test-free way a client sees it.
    let (code, _) = raw(&f.client, "POST", "/_test/compact", "application/json", "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let mut s = cms.watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0").await.unwrap().boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("the stream ends within 5 s");
    assert!(end.is_none());
}

#[tokio::test]
async fn watch_list_sends_initial_events_then_the_end_bookmark() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let mut s = cms.watch(&WatchParams::default().initial_events(), "0").await.unwrap().boxed();
    assert_eq!(added(&next(&mut s).await), "a");
    match next(&mut s).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.annotations["k8s.io/initial-events-end"], "true"),
        e => panic!("expected the initial-events-end bookmark, got {e:?}"),
    }
    // Without bookmarks a watch-list is invalid, as on the real server.
    let (code, _) = raw(
        &f.client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 422);
}

#[tokio::test]
async fn selectors_turn_changes_into_added_and_deleted() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let wp = WatchParams::default().labels("app=web").disable_bookmarks();
    let mut s = cms.watch(&wp, "0").await.unwrap().boxed();
    cms.create(&PostParams::default(), &cm("x", &[("app", "api")])).await.unwrap();
    let pp = PatchParams::default();
    cms.patch("x", &pp, &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}}))).await.unwrap();
    assert_eq!(added(&next(&mut s).await), "x");
    cms.patch("x", &pp, &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}}))).await.unwrap();
    assert!(matches!(next(&mut s).await, WatchEvent::Deleted(c) if c.name_any() == "x"));
}

/// A reflector's names, sorted.
fn names(store: &reflector::Store<ConfigMap>) -> Vec<String> {
    let mut n: Vec<String> = store.state().iter().map(|c| c.name_any()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn a_watcher_resumes_a_cut_stream_without_relisting_or_losing_events() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().page_size(1);
    let run = reflector::reflector(writer, watcher(cms.clone(), cfg)).applied_objects().for_each(|_| async {});
    let task = tokio::spawn(run);
    store.wait_until_ready().await.unwrap();
    assert_eq!(names(&store), ["a"]);
    f.api.reset_counts();

    for round in 0..3 {
        f.api.cut_watches();
        cms.create(&PostParams::default(), &cm(&format!("n{round}"), &[])).await.unwrap();
    }
    eventually("the created objects", || names(&store) == ["a", "n0", "n1", "n2"]).await;
    let counts = f.api.counts();
    assert_eq!(counts.get("list", "configmaps"), 0, "resumed from the last resourceVersion: {counts:?}");
    assert!(counts.get("watch", "configmaps") >= 2, "{counts:?}");
    task.abort();
}

#[tokio::test]
async fn a_watcher_relists_after_410_gone() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let (store, writer) = reflector::store();
    // No bookmarks: the watcher's resourceVersion stays at the last configmap event.
    let stream = watcher(cms.clone(), watcher::Config::default().disable_bookmarks()).default_backoff();
    let task = tokio::spawn(reflector::reflector(writer, stream).applied_objects().for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    eventually("b through the watch", || names(&store) == ["a", "b"]).await;
    // A change elsewhere, compaction and a cut: the watcher's resourceVersion is gone, so it must relist.
    let other: Api<ConfigMap> = Api::namespaced(f.client.clone(), "kube-system");
    other.create(&PostParams::default(), &cm("noise", &[])).await.unwrap();
    f.api.reset_counts();
    f.api.compact();
    f.api.cut_watches();
    eventually("a relist", || f.api.counts().get("list", "configmaps") >= 1).await;
    cms.delete("a", &Default::default()).await.unwrap();
    eventually("the delete after the relist", || names(&store) == ["b"]).await;
    task.abort();
}

#[tokio::test]
async fn a_streaming_list_watcher_initialises_from_watch_list() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().streaming_lists();
    let task =
        tokio::spawn(reflector::reflector(writer, watcher(cms.clone(), cfg)).applied_objects().for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();
    assert_eq!(names(&store), ["a"]);
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    eventually("b", || names(&store) == ["a", "b"]).await;
    assert_eq!(f.api.counts().get("list", "configmaps"), 0);
    task.abort();
}

#[tokio::test]
async fn raw_watch_lines_are_newline_delimited_json() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let req = axum::http::Request::builder()
        .uri("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")
        .body(Vec::new())
        .unwrap();
    let text = f.client.request_text(req).await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["apiVersion"], "v1");
    assert_eq!(lines[0]["object"]["kind"], "ConfigMap");
}
