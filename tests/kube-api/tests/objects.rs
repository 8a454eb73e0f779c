//! Object semantics through a real `kube::Client`: CRUD with the real server's errors, paging, patch kinds, the
//! status subresource, namespaces, CRDs and discovery.

// Helpers below fail the test on any error, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::{Resource, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn create_get_list_update_delete_like_the_real_server() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let pp = PostParams::default();

    let a = cms.create(&pp, &cm("a", &[("app", "web")])).await.unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    let rv_a: u64 = a.resource_version().unwrap().parse().unwrap();
    cms.create(&pp, &cm("b", &[("app", "api")])).await.unwrap();
    assert_eq!(status(cms.create(&pp, &cm("a", &[])).await.unwrap_err()), (409, "AlreadyExists".into()));

    let mut generated = cm("", &[]);
    generated.metadata.generate_name = Some("gen-".into());
    let g = cms.create(&pp, &generated).await.unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);

    let list = cms.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(), ["a"]);
    let by_name = cms.list(&ListParams::default().fields("metadata.name=b")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    assert!(list.metadata.resource_version.unwrap().parse::<u64>().unwrap() > rv_a);
    let everywhere: Api<ConfigMap> = Api::all(f.client.clone());
    assert_eq!(everywhere.list(&ListParams::default()).await.unwrap().items.len(), 3);

    // Optimistic concurrency: the first replace wins, the stale one conflicts.
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    let stale = fresh.clone();
    let replaced = cms.replace("a", &pp, &fresh).await.unwrap();
    assert!(replaced.resource_version().unwrap().parse::<u64>().unwrap() > rv_a);
    assert_eq!(status(cms.replace("a", &pp, &stale).await.unwrap_err()), (409, "Conflict".into()));

    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(deleted.left().unwrap().name_any(), "a");
    assert_eq!(status(cms.get("a").await.unwrap_err()), (404, "NotFound".into()));

    let elsewhere: Api<ConfigMap> = Api::namespaced(f.client.clone(), "missing");
    let (code, _) = status(elsewhere.create(&pp, &cm("x", &[])).await.unwrap_err());
    assert_eq!(code, 404, "namespaces must exist");
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), &[])).await.unwrap();
    }
    let mut names = vec![];
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
}

#[tokio::test]
async fn patches_merge_strategic_json_and_apply() {
    let f = start().await;
    let svcs: Api<Service> = Api::namespaced(f.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}}))
    .unwrap();
    let created = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let ports = created.spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert!(ports.iter().all(|p| p.node_port.is_some() && p.protocol.as_deref() == Some("TCP")), "defaults");

    let pp = PatchParams::default();
    let merged = svcs.patch("web", &pp, &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}}))).await.unwrap();
    assert_eq!(merged.annotations()["a"], "1");

    // Strategic: the ports list merges by port; the other port and fields stay.
    let smp = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let s = svcs.patch("web", &pp, &Patch::Strategic(smp)).await.unwrap();
    let ports = s.spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    assert_eq!(serde_json::to_value(&ports[0].target_port).unwrap(), json!(9090));

    let ops = r#"[{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]"#;
    let (code, j) =
        raw(&f.client, "PATCH", "/api/v1/namespaces/default/services/web", "application/json-patch+json", ops).await;
    assert_eq!((code, &j["metadata"]["labels"]), (200, &json!({"x": "y"})));

    // Server-side apply creates a missing object and records its manager.
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let ssa = PatchParams::apply("berth-test").force();
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let c = cms.patch("applied", &ssa, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(c.data.unwrap()["a"], "1");
    let managers: Vec<_> =
        c.metadata.managed_fields.unwrap().iter().map(|m| (m.manager.clone(), m.operation.clone())).collect();
    assert_eq!(managers, [(Some("berth-test".into()), Some("Apply".into()))]);
    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}});
    let c = cms.patch("applied", &ssa, &Patch::Apply(&again)).await.unwrap();
    assert_eq!(c.data.unwrap().len(), 2, "apply merges into the stored object");

    // A no-op patch writes nothing: same resourceVersion.
    let before = cms.get("applied").await.unwrap().resource_version();
    let after = cms.patch("applied", &pp, &Patch::Merge(json!({"data": {"a": "1"}}))).await.unwrap().resource_version();
    assert_eq!(before, after);

    // Apply without a field manager is refused, as by the real server.
    let (code, body) = raw(
        &f.client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/applied",
        "application/apply-patch+yaml",
        "data: {}",
    )
    .await;
    assert_eq!((code, body["kind"].as_str()), (422, Some("Status")));
    let (code, _) = raw(&f.client, "PATCH", "/api/v1/namespaces/default/configmaps/applied", "text/plain", "{}").await;
    assert_eq!(code, 415);
}

#[tokio::test]
async fn status_subresource_isolates_status_from_spec() {
    let f = start().await;
    let ings: Api<Ingress> = Api::namespaced(f.client.clone(), "default");
    let ing: Ingress =
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "berth"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "ignored-on-create"}]}}}))
        .unwrap();
    let created = ings.create(&PostParams::default(), &ing).await.unwrap();
    assert!(created.status.is_none() || created.status.unwrap().load_balancer.unwrap().ingress.is_none());

    let lb = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "web.example.com"}]}}});
    let pp = PatchParams::default();
    let s = ings.patch_status("web", &pp, &Patch::Merge(&lb)).await.unwrap();
    assert_eq!(
        s.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0].hostname.as_deref(),
        Some("web.example.com")
    );

    // Status through the main resource is ignored; spec through /status is ignored.
    let both =
        json!({"spec": {"ingressClassName": "other"}, "status": {"loadBalancer": {"ingress": [{"hostname": "x"}]}}});
    let main = ings.patch("web", &pp, &Patch::Merge(&both)).await.unwrap();
    assert_eq!(main.spec.as_ref().unwrap().ingress_class_name.as_deref(), Some("other"));
    assert_eq!(
        main.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0].hostname.as_deref(),
        Some("web.example.com")
    );
    let both =
        json!({"spec": {"ingressClassName": "third"}, "status": {"loadBalancer": {"ingress": [{"hostname": "y"}]}}});
    let st = ings.patch_status("web", &pp, &Patch::Merge(&both)).await.unwrap();
    assert_eq!(st.spec.unwrap().ingress_class_name.as_deref(), Some("other"));
    assert_eq!(st.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0].hostname.as_deref(), Some("y"));

    // Server-side apply of status, as a controller's status writer does.
    let applied = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "z"}]}}});
    let st = ings.patch_status("web", &PatchParams::apply("berth").force(), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(st.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0].hostname.as_deref(), Some("z"));

    // Kinds without a status subresource have no /status.
    let (code, _) =
        raw(&f.client, "GET", "/api/v1/namespaces/default/configmaps/x/status", "application/json", "").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn leases_support_leader_election_by_optimistic_concurrency() {
    let f = start().await;
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "berth"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut by_b = held.clone();
    by_b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut by_c = held.clone();
    by_c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    leases.replace("berth", &PostParams::default(), &by_b).await.unwrap();
    assert_eq!(status(leases.replace("berth", &PostParams::default(), &by_c).await.unwrap_err()).0, 409);
    assert_eq!(leases.get("berth").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects() {
    let f = start().await;
    namespace(&f.client, "shop").await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "shop");
    cms.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    Api::<Namespace>::all(f.client.clone()).delete("shop", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cms.get("a").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_removed() {
    let f = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let mut c = cm("held", &[]);
    c.metadata.finalizers = Some(vec!["berth.dev/test".into()]);
    cms.create(&PostParams::default(), &c).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(status(cms.get("held").await.unwrap_err()).0, 404);
}

async fn create_crds(f: &Fixture) {
    let crds: Api<CustomResourceDefinition> = Api::all(f.client.clone());
    for yaml in [VIRTUAL_SERVICE_CRD, PORT_ALLOCATION_CRD] {
        let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).unwrap();
        let created = crds.create(&PostParams::default(), &crd).await.unwrap();
        let conditions = created.status.unwrap().conditions.unwrap();
        assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    }
}

#[tokio::test]
async fn crds_appear_in_discovery_and_serve_every_version() {
    for aggregated in [true, false] {
        let f = start_with(berth_kube_api::Options { aggregated_discovery: aggregated, ..fast() }).await;
        create_crds(&f).await;
        let discovery = if aggregated {
            Discovery::new(f.client.clone()).run_aggregated().await.unwrap()
        } else {
            Discovery::new(f.client.clone()).run().await.unwrap()
        };
        let group = discovery.get("networking.istio.io").expect("istio group");
        assert_eq!(group.preferred_version(), Some("v1"));
        let (vs, caps) = group.recommended_kind("VirtualService").unwrap();
        assert_eq!((vs.plural.as_str(), caps.scope.clone()), ("virtualservices", Scope::Namespaced));
        assert!(caps.subresources.iter().any(|(r, _)| r.plural.ends_with("status")) || !aggregated);
        let (pa, caps) = discovery.get("berth.dev").unwrap().recommended_kind("PortAllocation").unwrap();
        assert_eq!((pa.version.as_str(), caps.scope.clone()), ("v1alpha1", Scope::Cluster));
        assert!(discovery.get("networking.k8s.io").unwrap().recommended_kind("Ingress").is_some());
        assert!(discovery.get("").unwrap().recommended_kind("Service").is_some());

        // Created through v1, read through v1beta1: one storage, apiVersion as asked.
        let v1: Api<DynamicObject> = Api::namespaced_with(f.client.clone(), "default", &vs);
        let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "annotations": {"berth.dev/expose": "true"}}, "spec": {"hosts": ["web.example.com"]}})).unwrap();
        v1.create(&PostParams::default(), &obj).await.unwrap();
        let beta = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("networking.istio.io", "v1beta1", "VirtualService"),
            "virtualservices",
        );
        let v1beta1: Api<DynamicObject> = Api::namespaced_with(f.client.clone(), "default", &beta);
        let read = v1beta1.get("web").await.unwrap();
        assert_eq!(read.types.unwrap().api_version, "networking.istio.io/v1beta1");
        let st = v1beta1
            .patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"ok": true}})))
            .await
            .unwrap();
        assert_eq!(st.data["status"]["ok"], true);

        let pas: Api<DynamicObject> = Api::all_with(f.client.clone(), &pa);
        let alloc: DynamicObject = serde_json::from_value(json!({"apiVersion": "berth.dev/v1alpha1", "kind": "PortAllocation",
            "metadata": {"name": "default"}, "spec": {"ranges": [{"start": 31000, "end": 31010}], "host": "tcp.example.com"}})).unwrap();
        assert!(pas.create(&PostParams::default(), &alloc).await.unwrap().meta().namespace.is_none());
        // PortAllocation declares no status subresource: status is part of the object.
        let (code, _) =
            raw(&f.client, "GET", "/apis/berth.dev/v1alpha1/portallocations/default/status", "application/json", "")
                .await;
        assert_eq!(code, 404);

        // Deleting the CRD removes the resource and its objects.
        let crds: Api<CustomResourceDefinition> = Api::all(f.client.clone());
        crds.delete("portallocations.berth.dev", &DeleteParams::default()).await.unwrap();
        let (code, body) =
            raw(&f.client, "GET", "/apis/berth.dev/v1alpha1/portallocations", "application/json", "").await;
        assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
        assert!(f.api.object("berth.dev", "portallocations", "", "default").is_none());
    }
}

#[tokio::test]
async fn errors_are_status_objects() {
    let f = start().await;
    let (code, body) = raw(&f.client, "GET", "/api/v1/namespaces/default/services/nope", "application/json", "").await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["message"], "services \"nope\" not found");
    assert_eq!(body["details"], json!({"name": "nope", "kind": "services"}));
    let (code, body) = raw(&f.client, "GET", "/apis/nope.example/v1/things", "application/json", "").await;
    assert_eq!((code, body["code"].as_u64()), (404, Some(404)));
    let (code, _) =
        raw(&f.client, "POST", "/api/v1/namespaces/default/configmaps", "application/json", "{not json").await;
    assert_eq!(code, 400);
    let (code, body) = raw(&f.client, "GET", "/version", "application/json", "").await;
    assert_eq!((code, body["major"].as_str()), (200, Some("1")));
}
