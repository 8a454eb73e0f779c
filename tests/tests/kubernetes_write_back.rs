//! What Berth writes onto cluster objects, over time: one Event per error however often the controller restarts
//! (on the VirtualService, Ingress or Service that has it),
//! the Ingress address taken back when Berth stops serving an Ingress, and the ClusterRole and Role of
//! `controller/deploy` granting exactly the requests the controller makes.

use std::time::Duration;

use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::manifests::{self, HttpRoute, Rule, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::{Controller, paths, wait};
use serde_json::Value;

fn ingress_ip(kubectl: &Kubectl, name: &str) -> String {
    kubectl.jsonpath(&["ingress", name], "{.status.loadBalancer.ingress[0].ip}")
}

#[test]
fn an_error_keeps_one_event_across_restarts_and_the_rbac_grants_exactly_what_is_used() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    let range = wait::free_port_range(2);
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            manifests::ingress_class(),
            port_allocation("tcp", "tcp.example.com", range.0, range.1),
            node_port_service("web", 80, 30080),
            node_port_service("db", 5432, 30432),
            tcp_virtual_service("db", &[("db", 5432)]),
            manifests::ingress("shop", &[Rule("shop.example.com", "/", "Prefix", "web", 80)]),
            manifests::virtual_service("broken", &["broken.example.com"], &[HttpRoute("prefix", "/", "missing", 80)]),
            manifests::pod_service_with("checked", 80, &[("berth.dev/health-check-interval", "often")]),
        ]
        .join("---\n"),
    );
    // As deployed: leader election through a Lease in berth-system (the restarted container keeps its pod's name,
    // so it renews the Lease at once), Ingress addresses written.
    kubectl.ok(&["create", "namespace", "berth-system"]);
    let args = [
        "--ingress-address=127.0.0.1",
        "--leader-elect",
        "--leader-elect-namespace=berth-system",
        "--leader-elect-identity=berth-0",
    ]
    .map(String::from);
    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &args);
    let first = wait::until("an Event for broken", Duration::from_secs(10), || {
        kubectl.events_about("broken").into_iter().find(|e| e.reason == "BerthError")
    });
    assert!(first.message.contains("missing") && first.count == 1, "{first:?}");
    let checked = wait::until("an Event for the Service with a malformed annotation", Duration::from_secs(10), || {
        kubectl.events_about("checked").into_iter().find(|e| e.reason == "BerthError")
    });
    assert!(checked.message.contains("health-check-interval\"]: \"often\" is not a duration"), "{checked:?}");
    kubectl.wait_address("db");
    wait::until("the Ingress's address", Duration::from_secs(10), || {
        (ingress_ip(&kubectl, "shop") == "127.0.0.1").then_some(())
    });

    // The error goes and comes back: the same Event, counted again.
    kubectl.apply(&node_port_service("missing", 80, 30081));
    wait::until("berth.dev/error removed", Duration::from_secs(10), || {
        kubectl.annotation(&["virtualservice", "broken"], "berth.dev/error").is_empty().then_some(())
    });
    kubectl.ok(&["delete", "service", "missing"]);
    wait::until("the Event counted twice", Duration::from_secs(10), || {
        let events = kubectl.events_about("broken");
        (events.len() == 1 && events[0].count == 2).then_some(())
    });

    // A restart with the same error: the new controller finds the Event (it tries to create it, and is told it
    // exists) and adds none.
    let creates = api.count("create events");
    drop(controller);
    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &args);
    wait::until("the restarted controller to record the error", Duration::from_secs(10), || {
        (api.count("create events") > creates).then_some(())
    });
    assert!(controller.errors().iter().any(|e| e.contains("missing")), "the error is still there");
    let events = kubectl.events_about("broken");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].name.as_str(), events[0].count), (first.name.as_str(), 2), "{events:?}");

    check_rbac(&api.access());
}

/// One grant of an RBAC rule: the namespace it holds in (none: a ClusterRole's, everywhere), verb, API group,
/// resource, and the one name it is limited to (none: any).
type Grant = (Option<String>, String, String, String, Option<String>);

/// The grants of the rules of `kind` (ClusterRole or Role) in one of `controller/deploy`'s files.
fn grants(file: &str, kind: &str) -> Vec<Grant> {
    let text = std::fs::read_to_string(paths::workspace().join("controller/deploy").join(file)).expect("read");
    let role = text
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).expect("YAML"))
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind} in {file}"));
    let namespace = role["metadata"]["namespace"].as_str().map(str::to_string);
    let list = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap_or_default().to_string()).collect()
    };
    let mut granted = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        let names: Vec<Option<String>> = match list(&rule["resourceNames"]) {
            names if names.is_empty() => vec![None],
            names => names.into_iter().map(Some).collect(),
        };
        for verb in list(&rule["verbs"]) {
            for group in list(&rule["apiGroups"]) {
                for resource in list(&rule["resources"]) {
                    for name in &names {
                        granted.push((namespace.clone(), verb.clone(), group.clone(), resource.clone(), name.clone()));
                    }
                }
            }
        }
    }
    granted
}

/// Every request the controller made (`User-Agent: berth/...`) is granted by the ClusterRole or (in its own
/// namespace) the Role of `controller/deploy`, and everything they grant was requested: the manifests hold only
/// what the controller uses.
fn check_rbac(access: &[Value]) {
    let mut granted = grants("clusterrole.yaml", "ClusterRole");
    granted.extend(grants("role.yaml", "Role"));
    let used: Vec<Grant> = access
        .iter()
        .filter(|a| a["agent"].as_str().is_some_and(|agent| agent.starts_with("berth/")))
        .map(|a| {
            let text = |key: &str| a[key].as_str().unwrap_or_default().to_string();
            let optional = |key: &str| a[key].as_str().map(str::to_string);
            (optional("namespace"), text("verb"), text("group"), text("resource"), optional("name"))
        })
        .collect();
    assert!(!used.is_empty(), "no request of berth's was recorded: {access:?}");
    let allows = |(scope, verb, group, resource, limited): &Grant, (ns, v, g, r, name): &Grant| {
        (scope.is_none() || scope == ns)
            && verb == v
            && group == g
            && resource == r
            && (limited.is_none() || limited == name)
    };
    let refused: Vec<&Grant> = used.iter().filter(|u| !granted.iter().any(|g| allows(g, u))).collect();
    assert!(refused.is_empty(), "controller/deploy does not grant these requests of the controller: {refused:?}");
    let unused: Vec<&Grant> = granted.iter().filter(|g| !used.iter().any(|u| allows(g, u))).collect();
    assert!(unused.is_empty(), "controller/deploy grants what the controller never does: {unused:?}");
}

#[test]
fn an_ingress_berth_no_longer_serves_loses_the_address_berth_wrote() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    let other_class = |yaml: String| yaml.replace("ingressClassName: berth", "ingressClassName: other");
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            manifests::ingress_class(),
            node_port_service("web", 80, 30080),
            manifests::ingress("moves", &[Rule("moves.example.com", "/", "Prefix", "web", 80)]),
            manifests::ingress("stays", &[Rule("stays.example.com", "/", "Prefix", "web", 80)]),
            other_class(manifests::ingress("theirs", &[Rule("theirs.example.com", "/", "Prefix", "web", 80)])),
        ]
        .join("---\n"),
    );
    // Another controller's Ingress, with the address that controller wrote.
    let status = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.9"}]}}}"#;
    kubectl.ok(&["patch", "ingress", "theirs", "--subresource=status", "--type=merge", "-p", status]);

    let _controller = Controller::start_kube(&api.kubeconfig, work.path(), &["--ingress-address=127.0.0.1".into()]);
    for name in ["moves", "stays"] {
        wait::until(&format!("{name}'s address"), Duration::from_secs(10), || {
            (ingress_ip(&kubectl, name) == "127.0.0.1").then_some(())
        });
    }

    // Its class changes: the address Berth wrote goes.
    kubectl.ok(&["patch", "ingress", "moves", "--type=merge", "-p", r#"{"spec":{"ingressClassName":"other"}}"#]);
    wait::until("moves' address cleared", Duration::from_secs(10), || {
        ingress_ip(&kubectl, "moves").is_empty().then_some(())
    });
    assert_eq!(ingress_ip(&kubectl, "stays"), "127.0.0.1");

    // Berth's IngressClass goes: so do the addresses of the Ingresses it made Berth's.
    kubectl.ok(&["delete", "ingressclass", "berth"]);
    wait::until("stays' address cleared", Duration::from_secs(10), || {
        ingress_ip(&kubectl, "stays").is_empty().then_some(())
    });
    assert_eq!(ingress_ip(&kubectl, "theirs"), "127.0.0.9", "another controller's address is left alone");
}

#[test]
fn a_route_field_berth_ignores_and_an_unclear_expose_value_are_warned_about_on_the_object() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    let mirrored = manifests::virtual_service("mirrored", &["m.example.com"], &[HttpRoute("prefix", "/", "web", 80)])
        .replace("    route:\n", "    mirror: {host: shadow}\n    route:\n");
    let unclear = manifests::virtual_service("unclear", &["u.example.com"], &[HttpRoute("prefix", "/", "web", 80)])
        .replace("berth.dev/expose: \"true\"", "berth.dev/expose: \"True\"");
    kubectl.apply(
        &[manifests::node("n1", "127.0.0.1"), node_port_service("web", 80, 30080), mirrored, unclear].join("---\n"),
    );
    let _controller = Controller::start_kube(&api.kubeconfig, work.path(), &[]);
    for (name, says) in [
        ("mirrored", "spec.http[0].mirror: not supported by berth and ignored"),
        ("unclear", "\"True\" is neither \"true\" nor \"false\", so the VirtualService is not exposed"),
    ] {
        let warning = wait::until("the berth.dev/warning annotation", Duration::from_secs(10), || {
            let text = kubectl.annotation(&["virtualservice", name], "berth.dev/warning");
            (!text.is_empty()).then_some(text)
        });
        assert!(warning.contains(says), "{name}: {warning}");
        assert!(kubectl.annotation(&["virtualservice", name], "berth.dev/error").is_empty(), "a warning only");
        let event = wait::until("a BerthWarning Event", Duration::from_secs(10), || {
            kubectl.events_about(name).into_iter().find(|e| e.reason == "BerthWarning")
        });
        assert!(event.message.contains(says), "{event:?}");
    }
}
