//! Kubernetes objects for tests, as the YAML a user would write, in a directory the controller watches.

use std::path::{Path, PathBuf};

use crate::Backend;

/// A directory of manifests. Writes are atomic (write aside, then rename), as editors and `kubectl`-driven
/// tools do, so the controller never reads half a file.
pub struct ManifestDir {
    pub path: PathBuf,
}

impl ManifestDir {
    pub fn new(path: &Path) -> ManifestDir {
        std::fs::create_dir_all(path).expect("create manifest dir");
        ManifestDir { path: path.to_path_buf() }
    }

    pub fn write(&self, file: &str, yaml: &str) {
        let aside = self.path.join(format!(".{file}.tmp"));
        std::fs::write(&aside, yaml).expect("write manifest");
        std::fs::rename(&aside, self.path.join(file)).expect("rename manifest");
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.path.join(file)).expect("remove manifest");
    }
}

/// A Ready node whose InternalIP is `ip`.
pub fn node(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n  - type: InternalIP\n    \
         address: {ip}\n  conditions:\n  - type: Ready\n    status: \"True\"\n"
    )
}

/// The file a test's cluster starts from: a Ready Node at 127.0.0.1 (where NodePorts point) and Berth's
/// IngressClass.
pub fn cluster() -> (&'static str, String) {
    ("cluster.yaml", format!("{}---\n{}", node("n1", "127.0.0.1"), ingress_class()))
}

/// The IngressClass that makes Ingresses Berth's.
pub fn ingress_class() -> String {
    "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: berth\nspec:\n  \
     controller: berth.dev/ingress-controller\n"
        .to_string()
}

/// A NodePort Service in `default`.
pub fn node_port_service(name: &str, port: u16, node_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  type: NodePort\n  \
         ports:\n  - name: http\n    port: {port}\n    nodePort: {node_port}\n"
    )
}

/// One NodePort Service per backend, named after it, on port 80 with the backend's port as its NodePort.
pub fn services(backends: &[&Backend]) -> (&'static str, String) {
    let services: Vec<String> = backends.iter().map(|b| node_port_service(&b.name, 80, b.addr.port())).collect();
    ("services.yaml", services.join("---\n"))
}

/// Writes [`cluster`] and [`services`] for `backends` into `dir`: the usual start of a test's objects.
pub fn write_cluster_and_services(dir: &ManifestDir, backends: &[&Backend]) {
    for (name, yaml) in [cluster(), services(backends)] {
        dir.write(name, &yaml);
    }
}

/// A Service in `default` whose backends are its pods' endpoints.
pub fn pod_service(name: &str, port: u16) -> String {
    pod_service_with(name, port, &[])
}

/// The same with more annotations, e.g. `("berth.dev/health-check-path", "/healthz")`.
pub fn pod_service_with(name: &str, port: u16, annotations: &[(&str, &str)]) -> String {
    let more: String = annotations.iter().map(|(key, value)| format!("    {key}: \"{value}\"\n")).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    \
         berth.dev/backends: pods\n{more}spec:\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {port}\n"
    )
}

/// An EndpointSlice for `service` with one ready endpoint per IP, all on `port`.
pub fn endpoint_slice(name: &str, service: &str, port: u16, ips: &[&str]) -> String {
    let endpoints: String =
        ips.iter().map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions:\n    ready: true\n")).collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  \
         labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: http\n  \
         port: {port}\nendpoints:\n{endpoints}"
    )
}

/// One Ingress rule: host, path, pathType, service, service port.
pub struct Rule<'a>(pub &'a str, pub &'a str, pub &'a str, pub &'a str, pub u16);

/// An Ingress of class `berth` in `default`.
pub fn ingress(name: &str, rules: &[Rule]) -> String {
    let mut yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         ingressClassName: berth\n  rules:\n"
    );
    for Rule(host, path, path_type, service, port) in rules {
        yaml.push_str(&format!(
            "  - host: {host}\n    http:\n      paths:\n      - path: {path}\n        pathType: {path_type}\n        \
             backend:\n          service:\n            name: {service}\n            port:\n              \
             number: {port}\n"
        ));
    }
    yaml
}

/// One VirtualService http route: match kind (`prefix` or `exact`), path, service, port.
pub struct HttpRoute<'a>(pub &'a str, pub &'a str, pub &'a str, pub u16);

/// A VirtualService in `default` annotated to be exposed.
pub fn virtual_service(name: &str, hosts: &[&str], routes: &[HttpRoute]) -> String {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{}]\n  http:\n",
        hosts.join(", ")
    );
    for HttpRoute(kind, path, service, port) in routes {
        yaml.push_str(&format!(
            "  - match:\n    - uri:\n        {kind}: {path}\n    route:\n    - destination:\n        host: {service}\n        \
             port:\n          number: {port}\n"
        ));
    }
    yaml
}

/// An exposed VirtualService routing `host` to `service`, its HTTP routes sticky by cookie `cookie`.
pub fn sticky_virtual_service(name: &str, host: &str, service: &str, port: u16, cookie: &str) -> String {
    virtual_service(name, &[host], &[HttpRoute("prefix", "/", service, port)]).replace(
        "berth.dev/expose: \"true\"\n",
        &format!("berth.dev/expose: \"true\"\n    berth.dev/session-cookie: {cookie}\n"),
    )
}

/// A VirtualService in `default` exposing one TCP route per `(service, port)`.
pub fn tcp_virtual_service(name: &str, routes: &[(&str, u16)]) -> String {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  tcp:\n"
    );
    for (service, port) in routes {
        yaml.push_str(&format!(
            "  - match:\n    - port: {port}\n    route:\n    - destination:\n        host: {service}\n        port:\n          \
             number: {port}\n"
        ));
    }
    yaml
}

/// A PortAllocation handing out `first..=last` under the public name `host`.
pub fn port_allocation(name: &str, host: &str, first: u16, last: u16) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: PortAllocation\nmetadata:\n  name: {name}\nspec:\n  host: {host}\n  \
         ranges:\n  - start: {first}\n    end: {last}\n"
    )
}

/// A VirtualService in `default`, exposed, passing TLS connections whose server name matches `sni_hosts` (each
/// within `hosts`) through to `service` port `port`.
pub fn tls_virtual_service(name: &str, hosts: &[&str], sni_hosts: &[&str], service: &str, port: u16) -> String {
    let quoted = |names: &[&str]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{}]\n  tls:\n  - match:\n    - sniHosts: [{}]\n    \
         route:\n    - destination:\n        host: {service}\n        port:\n          number: {port}\n",
        quoted(hosts),
        quoted(sni_hosts)
    )
}
