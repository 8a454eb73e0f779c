//! Service → backend: a Service port resolved to the addresses traffic is sent to.
//!
//! Node-port mode (the default) sends to the port's `nodePort` on every Ready Node, which works from outside the
//! cluster network. Pod mode sends to the ready endpoints of the Service's EndpointSlices, which needs Envoy inside
//! the cluster network. A Service picks its mode with annotation `berth.dev/backends`, else the controller's
//! `--backends` decides.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use berth_table::{Backend, Endpoint};
use k8s_openapi::api::core::v1::{Service, ServicePort};

use crate::index::Index;
use crate::objects::{Kind, Object, ObjectKey, annotation, label};

pub const BACKENDS_ANNOTATION: &str = "berth.dev/backends";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendMode {
    #[default]
    NodePort,
    Pods,
}

impl FromStr for BackendMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "node-port" => Ok(BackendMode::NodePort),
            "pods" => Ok(BackendMode::Pods),
            other => Err(format!("{other:?} is not a backend mode; use \"node-port\" or \"pods\"")),
        }
    }
}

impl fmt::Display for BackendMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendMode::NodePort => "node-port",
            BackendMode::Pods => "pods",
        })
    }
}

/// How a route names a Service's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// Why a Service port could not be resolved; the variant says which part of the reference is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No such Service.
    Service(String),
    /// The Service has no such port (or several, and none was named).
    Port(String),
    /// The Service exists but cannot be reached the way its mode asks.
    Backends(String),
}

impl Unresolved {
    pub fn message(self) -> String {
        match self {
            Unresolved::Service(m) | Unresolved::Port(m) | Unresolved::Backends(m) => m,
        }
    }
}

/// Resolves Service ports against the index, within one cluster: a route reaches the Services and Nodes of the
/// cluster its object came from, never another's.
#[derive(Clone, Copy)]
pub struct Resolver<'a> {
    index: &'a Index,
    mode: BackendMode,
    cluster: &'a str,
}

impl<'a> Resolver<'a> {
    /// A resolver for the local cluster.
    pub fn new(index: &'a Index, mode: BackendMode) -> Self {
        Resolver { index, mode, cluster: crate::objects::LOCAL_CLUSTER }
    }

    /// The same for cluster `cluster`.
    pub fn in_cluster(self, cluster: &'a str) -> Self {
        Resolver { cluster, ..self }
    }

    /// The backend for port `port` (or the only port, when `None`) of Service `namespace/name`. A Service with no
    /// endpoints is fine (the route answers 503 until it has some); a missing Service or port is an error message.
    pub fn backend(
        &self,
        namespace: &str,
        name: &str,
        port: Option<PortRef<'_>>,
        weight: u32,
    ) -> Result<Backend, Unresolved> {
        let key = ObjectKey::new(Kind::Service, namespace, name).in_cluster(self.cluster);
        let Some(Object::Service(service)) = self.index.get(&key).map(|entry| &entry.object) else {
            return Err(Unresolved::Service(format!("service {name:?} not found in namespace {namespace}")));
        };
        let port = find_port(service, namespace, name, port).map_err(Unresolved::Port)?;
        let mode = match annotation(&service.metadata, BACKENDS_ANNOTATION) {
            None => self.mode,
            Some(value) => value.parse().map_err(|error| {
                Unresolved::Backends(format!(
                    "service {namespace}/{name} has annotation {BACKENDS_ANNOTATION}: {error}"
                ))
            })?,
        };
        let endpoints = match mode {
            BackendMode::NodePort => {
                self.node_port_endpoints(service, port, namespace, name).map_err(Unresolved::Backends)?
            }
            BackendMode::Pods => self.pod_endpoints(port, namespace, name),
        };
        // `alpha/shop/web:80` for another cluster's Service: health checks and `berth routes` tell them apart.
        let service = crate::objects::qualified(self.cluster, &format!("{namespace}/{name}:{}", port.port));
        Ok(Backend { service, weight, endpoints })
    }

    fn node_port_endpoints(
        &self,
        service: &Service,
        port: &ServicePort,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Endpoint>, String> {
        let kind = service.spec.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
        let pods_hint = format!(
            "or annotate the Service {BACKENDS_ANNOTATION}: pods (or run berth with --backends pods) to send \
             traffic to pod endpoints"
        );
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            return Err(format!(
                "service {namespace}/{name} is of type {kind}, which has no node port: make it type NodePort, \
                 {pods_hint}"
            ));
        }
        let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
            return Err(format!("service {namespace}/{name} port {} has no nodePort: set one, {pods_hint}", port.port));
        };
        let mut endpoints: Vec<Endpoint> = self
            .index
            .of_kind_in(Kind::Node, self.cluster)
            .filter_map(|entry| match &entry.object {
                Object::Node(node) => node.status.as_ref(),
                _ => None,
            })
            .filter(|status| {
                let conditions = status.conditions.as_deref().unwrap_or_default();
                conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .filter_map(|status| {
                let addresses = status.addresses.as_deref().unwrap_or_default();
                let of_type = |t: &str| addresses.iter().find(|a| a.type_ == t).and_then(|a| a.address.parse().ok());
                of_type("InternalIP").or_else(|| of_type("ExternalIP"))
            })
            .map(|ip: IpAddr| Endpoint { address: SocketAddr::new(ip, node_port) })
            .collect();
        sort_and_dedup(&mut endpoints);
        Ok(endpoints)
    }

    /// Ready endpoints of the Service's EndpointSlices, on the slice port named like the Service port.
    fn pod_endpoints(&self, port: &ServicePort, namespace: &str, name: &str) -> Vec<Endpoint> {
        let port_name = port.name.as_deref().unwrap_or_default();
        let mut endpoints: Vec<Endpoint> = self
            .index
            .of_kind_in(Kind::EndpointSlice, self.cluster)
            .filter_map(|entry| match &entry.object {
                Object::EndpointSlice(slice) => Some(slice),
                _ => None,
            })
            .filter(|slice| {
                slice.metadata.namespace.as_deref() == Some(namespace)
                    && label(&slice.metadata, SERVICE_NAME_LABEL) == Some(name)
                    && matches!(slice.address_type.as_str(), "IPv4" | "IPv6")
            })
            .flat_map(|slice| {
                let target = slice
                    .ports
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok());
                let ready =
                    slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
                ready
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(move |address| Some(SocketAddr::new(address.parse().ok()?, target?)))
                    .map(|address| Endpoint { address })
            })
            .collect();
        sort_and_dedup(&mut endpoints);
        endpoints
    }
}

fn find_port<'s>(
    service: &'s Service,
    namespace: &str,
    name: &str,
    wanted: Option<PortRef<'_>>,
) -> Result<&'s ServicePort, String> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let found = match wanted {
        Some(PortRef::Number(n)) => ports.iter().find(|p| p.port == n),
        Some(PortRef::Name(wanted)) => ports.iter().find(|p| p.name.as_deref() == Some(wanted)),
        None if ports.len() == 1 => ports.first(),
        None => None,
    };
    found.ok_or_else(|| {
        let list = ports
            .iter()
            .map(|p| match &p.name {
                Some(port_name) => format!("{} ({port_name})", p.port),
                None => p.port.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if ports.is_empty() {
            return format!("service {namespace}/{name} has no ports; add one to spec.ports");
        }
        match wanted {
            Some(port) => format!("service {namespace}/{name} has no port {port}; its ports: {list}"),
            None => format!("service {namespace}/{name} has several ports ({list}); name one with port.number"),
        }
    })
}

fn sort_and_dedup(endpoints: &mut Vec<Endpoint>) {
    endpoints.sort_by_key(|e| e.address);
    endpoints.dedup();
}
