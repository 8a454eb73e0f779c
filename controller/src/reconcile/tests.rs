//! The pipeline's steps, each asserted on what is published for a handful of objects: no cluster, no process.

use std::path::Path;
use std::time::Duration;

use berth_table::AffinityKey;

use super::*;
use crate::compiler::HeldPorts;
use crate::objects::parse_yaml;

fn key() -> AffinityKey {
    AffinityKey::from_bytes([7; 16])
}

/// A Node at 127.0.0.1, a PortAllocation of 31000-31010, and a NodePort Service `default/echo` (node port
/// `node_port`, health checks as `check_annotations` say) behind a VirtualService with one tcp route, exposed, with
/// `vs_annotations` besides.
fn objects(node_port: u16, check_annotations: &str, vs_annotations: &str) -> Index {
    let text = format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: node}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}]
  conditions: [{{type: Ready, status: "True"}}]
---
apiVersion: berth.dev/v1alpha1
kind: PortAllocation
metadata: {{name: tcp}}
spec:
  host: localhost
  ranges: [{{start: 31000, end: 31010}}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations: {{{check_annotations}}}
spec:
  type: NodePort
  ports: [{{name: tcp, port: 7, nodePort: {node_port}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
  namespace: default
  annotations: {{berth.dev/expose: "true", {vs_annotations}}}
spec:
  hosts: [echo.default.svc.cluster.local]
  tcp:
    - match: [{{port: 7}}]
      route: [{{destination: {{host: echo, port: {{number: 7}}}}}}]
"#
    );
    let parsed = parse_yaml(Path::new("objects.yaml"), &text);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mut index = Index::new();
    index.reset("test", parsed.objects.into_iter().map(|o| (o, None)).collect(), Vec::new());
    index
}

/// The objects, not health-checked.
fn unchecked(vs_annotations: &str) -> Index {
    objects(30007, r#"berth.dev/health-check: none"#, vs_annotations)
}

fn health() -> Health {
    Health::new(Duration::from_secs(60), 0).0
}

fn dir_mode<'a>(index: &'a Index, options: &'a Options, held: &'a HeldPorts) -> Inputs<'a> {
    Inputs { index, options, held, affinity_key: key(), kube: None }
}

fn kube_mode<'a>(index: &'a Index, options: &'a Options, held: &'a HeldPorts, leading: bool) -> Inputs<'a> {
    let kube = KubeInputs { leading, missing: &[], cluster_diagnostics: Vec::new(), ingress_address: None };
    Inputs { kube: Some(kube), ..dir_mode(index, options, held) }
}

fn tcp_ports(compiled: &Compiled) -> Vec<u16> {
    compiled.content.tcp.iter().map(|route| route.port).collect()
}

#[test]
fn directory_mode_serves_every_port_handed_out_and_keeps_those_held() {
    let (index, options) = (unchecked(""), Options::default());
    let held = HeldPorts::from([("VirtualService default/echo tcp[0]".to_string(), 31004)]);
    let reconciled = reconcile(&dir_mode(&index, &options, &held), &mut health());
    assert_eq!(tcp_ports(&reconciled.published), [31004], "the state file's port is kept");
    assert_eq!(reconciled.writes, None, "directory mode writes nothing back");
}

#[test]
fn a_follower_keeps_exactly_the_ports_on_record_and_a_leader_adds_its_own() {
    let index = unchecked(r#"berth.dev/address: "localhost:31002""#);
    let options = Options::default();
    let held = HeldPorts::from([("VirtualService default/other tcp[0]".to_string(), 31005)]);
    let recorded = HeldPorts::from([("VirtualService default/echo tcp[0]".to_string(), 31002)]);
    assert_eq!(ports_to_keep(&kube_mode(&index, &options, &held, false)), recorded);
    let mut both = recorded.clone();
    both.extend(held.clone());
    assert_eq!(ports_to_keep(&kube_mode(&index, &options, &held, true)), both);
    assert_eq!(ports_to_keep(&dir_mode(&index, &options, &held)), held);
}

#[test]
fn the_session_key_goes_into_tables_with_affinity_only() {
    let (options, held) = (Options::default(), HeldPorts::new());
    let plain = unchecked("");
    let reconciled = reconcile(&dir_mode(&plain, &options, &held), &mut health());
    assert_eq!(reconciled.published.content.affinity_key, None);
    let sticky = unchecked(r#"berth.dev/session-affinity: source-ip"#);
    let reconciled = reconcile(&dir_mode(&sticky, &options, &held), &mut health());
    assert_eq!(reconciled.published.content.affinity_key, Some(key()));
    assert!(reconciled.published.content.tcp.iter().all(|route| route.source_ip_affinity));
}

#[test]
fn missing_crds_are_explained_in_kubernetes_mode() {
    let (index, options, held) = (unchecked(""), Options::default(), HeldPorts::new());
    let missing = [("", Kind::PortAllocation)];
    let mut inputs = kube_mode(&index, &options, &held, true);
    if let Some(kube) = &mut inputs.kube {
        kube.missing = &missing;
    }
    let reconciled = reconcile(&inputs, &mut health());
    let explained = |compiled: &Compiled| {
        compiled.diagnostics.iter().any(|d| d.is_warning() && d.message.contains("portallocations.berth.dev"))
    };
    assert!(explained(&reconciled.compiled) && explained(&reconciled.published));
    let reconciled = reconcile(&kube_mode(&index, &options, &held, true), &mut health());
    assert!(!explained(&reconciled.published), "with every CRD installed there is nothing to explain");
}

#[test]
fn the_clusters_own_errors_are_published_and_written_back() {
    let (index, options, held) = (unchecked(""), Options::default(), HeldPorts::new());
    let broken = Diagnostic::new("cluster alpha cannot be watched: refused").object("Secret berth/kubeconfig-alpha");
    let mut inputs = kube_mode(&index, &options, &held, true);
    if let Some(kube) = &mut inputs.kube {
        kube.cluster_diagnostics = vec![broken.clone()];
    }
    let reconciled = reconcile(&inputs, &mut health());
    assert!(reconciled.published.diagnostics.contains(&broken), "{:?}", reconciled.published.diagnostics);
}

#[test]
fn a_tcp_route_is_served_once_its_port_is_on_record_and_the_leader_writes_it() {
    let (options, held) = (Options::default(), HeldPorts::new());
    let unrecorded = unchecked("");
    let reconciled = reconcile(&kube_mode(&unrecorded, &options, &held, true), &mut health());
    assert_eq!(tcp_ports(&reconciled.published), [] as [u16; 0], "withheld until berth.dev/address records it");
    assert_eq!(reconciled.compiled.assignments.values().map(|a| a.port).collect::<Vec<_>>(), [31000]);
    let writes = reconciled.writes.unwrap_or_default();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].patch["metadata"]["annotations"]["berth.dev/address"], "localhost:31000");

    let follower = reconcile(&kube_mode(&unrecorded, &options, &held, false), &mut health());
    assert_eq!(follower.writes, None, "a follower writes nothing back");

    let recorded = unchecked(r#"berth.dev/address: "localhost:31000""#);
    let reconciled = reconcile(&kube_mode(&recorded, &options, &held, true), &mut health());
    assert_eq!(tcp_ports(&reconciled.published), [31000]);
    assert_eq!(reconciled.writes, Some(Vec::new()), "the object already says it all");
}

#[tokio::test]
async fn an_endpoint_that_fails_its_checks_is_left_out_and_only_health_is_applied_again() {
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port();
    let index = objects(closed, r#"berth.dev/health-check-unhealthy-threshold: "1""#, "");
    let (options, held) = (Options::default(), HeldPorts::new());
    // Panic routing off: with it, a route's only endpoint would stay in rotation however its checks go.
    let (mut health, mut results) = Health::new(Duration::from_secs(60), 0);
    let reconciled = reconcile(&dir_mode(&index, &options, &held), &mut health);
    let endpoints = |compiled: &Compiled| compiled.content.tcp[0].backends[0].endpoints.len();
    assert_eq!(endpoints(&reconciled.published), 1, "healthy until a check says otherwise");
    assert_eq!(reconciled.health.len(), 1, "{:?}", reconciled.health);

    // An endpoint never seen up leaves on its second failure in a row, retried within seconds of the first.
    let left = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let failed = results.recv().await.unwrap();
            assert!(matches!(failed.outcome, crate::health::book::Outcome::Failed(_)), "{failed:?}");
            if health.record(failed) && endpoints(&apply_health(&reconciled.compiled, &index, &mut health).0) == 0 {
                break;
            }
        }
    });
    assert!(left.await.is_ok(), "the endpoint never left the rotation");
    let (published, shown) = apply_health(&reconciled.compiled, &index, &mut health);
    assert_eq!(endpoints(&published), 0, "left out of what is published");
    assert_eq!(endpoints(&reconciled.compiled), 1, "the compilation itself keeps it, for when it returns");
    assert_eq!(published.assignments, reconciled.compiled.assignments, "health never touches ports");
    assert!(!shown[0].healthy, "{shown:?}");
}
