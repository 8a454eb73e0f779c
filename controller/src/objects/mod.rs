//! The Kubernetes objects Berth reads, as typed values: k8s-openapi types, Istio's VirtualService as Berth reads
//! it, and Berth's own PortAllocation.

pub mod health_check;
mod parse;
pub mod port_allocation;
mod virtual_service;
mod virtual_service_tls;

pub use parse::{Parsed, parse_value, parse_yaml};
pub use port_allocation::{PortAllocation, PortAllocationSpec, PortRangeSpec};
pub use virtual_service::{
    Destination, HeaderOperations, Headers, HttpMatch, HttpRule, PortSelector, Retries, Rewrite, RouteDestination,
    StringMatch, TcpMatch, TcpRule, VirtualService, VirtualServiceSpec,
};
pub use virtual_service_tls::{TlsMatch, TlsRule};

use std::fmt;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The kinds Berth reads. The order is the order objects of different kinds are listed in, nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    VirtualService,
    Ingress,
    IngressClass,
    Service,
    Node,
    EndpointSlice,
    PortAllocation,
}

impl Kind {
    /// Every kind, in listing order.
    pub const ALL: [Kind; 7] = [
        Kind::VirtualService,
        Kind::Ingress,
        Kind::IngressClass,
        Kind::Service,
        Kind::Node,
        Kind::EndpointSlice,
        Kind::PortAllocation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Service => "Service",
            Kind::Node => "Node",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::PortAllocation => "PortAllocation",
        }
    }

    /// Cluster-scoped kinds have no namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::IngressClass | Kind::Node | Kind::PortAllocation)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of the cluster Berth runs in (or the top level of a directory source): empty, so that messages about
/// its objects read as they always have. Other clusters are named by their kubeconfig Secret (or subdirectory).
pub const LOCAL_CLUSTER: &str = "";

/// Whether `cluster` names the local cluster: ask this rather than whether a name is empty.
pub fn is_local(cluster: &str) -> bool {
    cluster == LOCAL_CLUSTER
}

/// What identifies an object: kind, cluster ([`LOCAL_CLUSTER`] or another's name), namespace (empty for
/// cluster-scoped kinds) and name. Kind comes first so that one kind's objects sit together in the index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// The key of an object of the local cluster.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey { kind, cluster: LOCAL_CLUSTER.to_string(), namespace: namespace.to_string(), name: name.to_string() }
    }

    /// The same object in cluster `cluster`.
    #[must_use]
    pub fn in_cluster(mut self, cluster: &str) -> Self {
        cluster.clone_into(&mut self.cluster);
        self
    }

    /// `alpha/default` for namespace `default` of cluster `alpha`, `default` in the local cluster: how the
    /// namespace is shown, and how the table's route sources name it.
    pub fn qualified_namespace(&self) -> String {
        qualified(&self.cluster, &self.namespace)
    }
}

/// `cluster/rest`, or `rest` alone for the local cluster.
pub fn qualified(cluster: &str, rest: &str) -> String {
    if is_local(cluster) { rest.to_string() } else { format!("{cluster}/{rest}") }
}

/// `VirtualService default/website`, or `Node demo-node` for a cluster-scoped kind: how messages name an object.
/// An object of another cluster is named with the cluster first: `VirtualService alpha/default/website`,
/// `Node alpha/demo-node`.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, qualified(&self.cluster, &self.name))
        } else {
            write!(f, "{} {}/{}", self.kind, self.qualified_namespace(), self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "objects sit in the index, one allocation each either way")]
pub enum Object {
    VirtualService(VirtualService),
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    Node(Node),
    EndpointSlice(EndpointSlice),
    PortAllocation(PortAllocation),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::VirtualService(_) => Kind::VirtualService,
            Object::Ingress(_) => Kind::Ingress,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Service(_) => Kind::Service,
            Object::Node(_) => Kind::Node,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::PortAllocation(_) => Kind::PortAllocation,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::VirtualService(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::PortAllocation(o) => &o.metadata,
        }
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::VirtualService(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::IngressClass(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::PortAllocation(o) => &mut o.metadata,
        }
    }

    /// The object's key in the local cluster (see [`crate::index::Entry::key`] for the cluster it came from).
    /// Parsing guarantees a name, and a namespace for namespaced kinds.
    pub fn key(&self) -> ObjectKey {
        let meta = self.metadata();
        let namespace = if self.kind().namespaced() { meta.namespace.as_deref().unwrap_or("default") } else { "" };
        ObjectKey::new(self.kind(), namespace, meta.name.as_deref().unwrap_or_default())
    }
}

/// The value of annotation `key` on an object, if set.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The value of label `key` on an object, if set.
pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_clusters_objects_are_named_with_the_cluster_first() {
        let local = ObjectKey::new(Kind::VirtualService, "default", "web");
        assert_eq!(local.to_string(), "VirtualService default/web");
        assert_eq!(local.clone().in_cluster("alpha").to_string(), "VirtualService alpha/default/web");
        assert_eq!(ObjectKey::new(Kind::Node, "", "n1").in_cluster("alpha").to_string(), "Node alpha/n1");
        assert_ne!(local.clone().in_cluster("alpha"), local, "the same name in two clusters is two objects");
    }
}
