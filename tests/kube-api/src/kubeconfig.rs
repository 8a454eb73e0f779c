//! A kubeconfig pointing at the test server: plain HTTP, no credentials, namespace `default`.

use std::net::SocketAddr;

pub const NAME: &str = "berth-test";

pub fn render(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: http://{addr}
contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
    namespace: default
current-context: {NAME}
users:
- name: {NAME}
  user: {{}}
preferences: {{}}
"
    )
}
