//! Fault injection and restarts: pause/resume, request counts (through the handle and `/_test`), and a server
//! restarted on the same port — in-process and as the binary with `--state` — keeping objects and versions.

// Helpers below fail the test on any error, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_kube_api::{KubeApi, Options};
use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn pause_answers_503_until_resume() {
    let f = start().await;
    let client = client_without_retries(&f.kubeconfig).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    f.api.pause();
    assert_eq!(status(cms.list(&Default::default()).await.unwrap_err()).0, 503);
    f.api.resume();
    cms.list(&Default::default()).await.unwrap();
    // The same through HTTP; /_test keeps answering while paused.
    assert_eq!(raw(&client, "POST", "/_test/pause", "", "").await.0, 200);
    assert_eq!(raw(&client, "GET", "/api", "", "").await.0, 503);
    assert_eq!(raw(&client, "POST", "/_test/resume", "", "").await.0, 200);
    assert_eq!(raw(&client, "GET", "/api", "", "").await.0, 200);
}

#[tokio::test]
async fn counts_tell_whether_anything_was_written() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    f.api.reset_counts();
    cms.get("a").await.unwrap();
    cms.list(&Default::default()).await.unwrap();
    let counts = f.api.counts();
    assert_eq!((counts.get("get", "configmaps"), counts.get("list", "configmaps"), counts.writes()), (1, 1, 0));
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "y"}}))).await.unwrap();
    assert_eq!(f.api.counts().writes_to("configmaps"), 1);
    let (code, body) = raw(&f.client, "GET", "/_test/counts", "", "").await;
    assert_eq!((code, &body["patch configmaps"]), (200, &json!(1)));
    raw(&f.client, "DELETE", "/_test/counts", "", "").await;
    assert_eq!(f.api.counts().writes(), 0);
}

#[tokio::test]
async fn a_restarted_server_keeps_objects_versions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let f = start_with(Options { state_file: Some(state.clone()), ..fast() }).await;
    let addr = f.api.addr();
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let a = cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let rv_a = a.resource_version().unwrap();
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    let common::Fixture { api, client, .. } = f;
    api.shutdown().await;

    let again = KubeApi::start(Options { listen: addr, state_file: Some(state), ..fast() }).await.unwrap();
    assert_eq!(cms.get("a").await.unwrap().resource_version().unwrap(), rv_a);
    let c = cms.create(&PostParams::default(), &cm("c", &[])).await.unwrap();
    assert!(c.resource_version().unwrap().parse::<u64>().unwrap() > rv_a.parse::<u64>().unwrap());
    // A client resuming a watch from before the restart gets what it missed.
    let mut s = cms.watch(&WatchParams::default().disable_bookmarks(), &rv_a).await.unwrap().boxed();
    let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(next, WatchEvent::Added(o) if o.name_any() == "b"));
    drop((again, client));
}

/// Starts the binary and returns it with its URL (from its first stdout line).
async fn spawn_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth-kube-api"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let url = line.strip_prefix("listening on ").expect("the readiness line").to_string();
    (child, url)
}

#[tokio::test]
async fn the_binary_serves_a_kubeconfig_and_survives_a_kill_with_its_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, state) = (dir.path().join("kubeconfig"), dir.path().join("state.json"));
    let manifest = dir.path().join("seed.yaml");
    std::fs::write(
        &manifest,
        format!("{VIRTUAL_SERVICE_CRD}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n"),
    )
    .unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--kubeconfig-out",
        kubeconfig.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--load",
        manifest.to_str().unwrap(),
    ];
    let (mut child, url) = spawn_binary(&args).await;
    let client = client_for(&kubeconfig).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let a = cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    child.kill().await.unwrap();

    let listen = url.trim_start_matches("http://");
    let (_child, _) = spawn_binary(&["--listen", listen, "--state", state.to_str().unwrap()]).await;
    let client = client_for(&kubeconfig).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    assert_eq!(cms.get("a").await.unwrap().resource_version(), a.resource_version());
    let (code, _) = raw(&client, "GET", "/apis/networking.istio.io/v1/virtualservices", "", "").await;
    assert_eq!(code, 200, "the CRD loaded at first start is still served");
}
