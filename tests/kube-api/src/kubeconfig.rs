//! A kubeconfig pointing at the test server: namespace `default`, no credentials over HTTP, a token (ignored)
//! over HTTPS, where it trusts the server's CA through `certificate-authority-data` as a cluster's kubeconfig does.

use base64::Engine;

pub const NAME: &str = "berth-test";

/// `server` is the URL (`http://` or `https://`); `ca_pem` the CA to trust, for HTTPS.
pub fn render(server: &str, ca_pem: Option<&str>) -> String {
    let ca = ca_pem.map_or_else(String::new, |pem| {
        let data = base64::engine::general_purpose::STANDARD.encode(pem);
        format!("    certificate-authority-data: {data}\n")
    });
    // Over HTTPS kubectl asks for a user name and password when the user has no credentials at all; a token
    // (which the server ignores, like every credential) keeps it quiet.
    let user = if ca_pem.is_some() { "{token: berth-test}" } else { "{}" };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: {server}
{ca}contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
    namespace: default
current-context: {NAME}
users:
- name: {NAME}
  user: {user}
preferences: {{}}
"
    )
}
