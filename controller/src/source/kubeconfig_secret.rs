//! Kubeconfig Secrets: the Secrets named `kubeconfig-<cluster>-<last 4 hex digits of the cluster's UUID>` that add
//! a cluster, which cluster each adds, and what their kubeconfig may hold. No I/O: [`super::remote`] watches the
//! Secrets and connects.
//!
//! A kubeconfig from a Secret is held to what a Secret can carry: inline certificates and tokens only. File
//! references (`tokenFile`, `client-certificate`, `certificate-authority`, ...) and credential plugins (`exec`,
//! `auth-provider`) are refused: anyone who may create a Secret in Berth's namespace would otherwise make the
//! controller run commands, or send its own files (its service account token) to a server of their choosing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::config::Kubeconfig;

/// The data key of a kubeconfig Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
const SECRET_PREFIX: &str = "kubeconfig-";

/// A kubeconfig Secret as the run loop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeconfigSecret {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub created: Option<Time>,
    /// The value of key `kubeconfig`; none when the Secret has no such key.
    pub kubeconfig: Option<Vec<u8>>,
}

impl KubeconfigSecret {
    pub fn from_secret(secret: &Secret) -> Option<KubeconfigSecret> {
        let name = secret.metadata.name.clone()?;
        name.starts_with(SECRET_PREFIX).then(|| KubeconfigSecret {
            namespace: secret.metadata.namespace.clone().unwrap_or_default(),
            name,
            uid: secret.metadata.uid.clone(),
            created: secret.metadata.creation_timestamp.clone(),
            kubeconfig: secret.data.as_ref().and_then(|d| d.get(KUBECONFIG_KEY)).map(|v| v.0.clone()),
        })
    }

    /// `Secret berth-system/kubeconfig-alpha-1a2b`: how diagnostics name it.
    pub fn object(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }
}

/// The cluster a Secret's name says it holds the kubeconfig of: `kubeconfig-alpha-1a2b` → `alpha`. Why not, for
/// a name that starts like one but does not fit. The cluster's name is a DNS label, so that it can lead a host
/// name (`alpha.k8s.example.com`).
pub fn cluster_name(secret: &str) -> Result<String, String> {
    let expected = "name it kubeconfig-<cluster>-<last 4 hex digits of the cluster's UUID>, e.g. kubeconfig-alpha-1a2b";
    let rest = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let Some((cluster, suffix)) = rest.rsplit_once('-') else {
        return Err(format!("no UUID suffix; {expected}"));
    };
    if suffix.len() != 4 || !suffix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{suffix:?} is not 4 lower-case hex digits; {expected}"));
    }
    let label = !cluster.is_empty()
        && cluster.len() <= 63
        && cluster.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !cluster.starts_with('-')
        && !cluster.ends_with('-');
    if !label {
        return Err(format!("{cluster:?} is not a cluster name (lower-case letters, digits and '-'); {expected}"));
    }
    Ok(cluster.to_string())
}

/// Why a kubeconfig from a Secret is refused: it refers to files or runs commands. None: it is self-contained.
pub fn refuse(kubeconfig: &Kubeconfig) -> Option<String> {
    let mut found = Vec::new();
    for named in &kubeconfig.clusters {
        if named.cluster.as_ref().is_some_and(|c| c.certificate_authority.is_some()) {
            found.push(format!("cluster {:?} has certificate-authority (use certificate-authority-data)", named.name));
        }
    }
    for named in &kubeconfig.auth_infos {
        let Some(auth) = &named.auth_info else { continue };
        let refused = [
            (auth.token_file.is_some(), "tokenFile (use token)"),
            (auth.client_certificate.is_some(), "client-certificate (use client-certificate-data)"),
            (auth.client_key.is_some(), "client-key (use client-key-data)"),
            (auth.exec.is_some(), "exec (use a service account token)"),
            (auth.auth_provider.is_some(), "auth-provider (use a service account token)"),
        ];
        for (_, what) in refused.iter().filter(|(present, _)| *present) {
            found.push(format!("user {:?} has {what}", named.name));
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "the kubeconfig refers to files or runs commands, which a kubeconfig Secret may not: {}",
            found.join("; ")
        )
    })
}

/// The cluster each kubeconfig Secret adds, and those that add none with why: a name that does not fit, or a
/// cluster another Secret names too (the oldest Secret wins, then the first by name).
pub fn wanted_clusters(
    mut secrets: Vec<KubeconfigSecret>,
) -> (BTreeMap<String, KubeconfigSecret>, Vec<(KubeconfigSecret, String)>) {
    secrets.sort_by(|a, b| (a.created.is_none(), &a.created, &a.name).cmp(&(b.created.is_none(), &b.created, &b.name)));
    let mut wanted: BTreeMap<String, KubeconfigSecret> = BTreeMap::new();
    let mut refused = Vec::new();
    for secret in secrets {
        match cluster_name(&secret.name) {
            Err(why) => refused.push((secret, why)),
            Ok(cluster) => match wanted.get(&cluster) {
                Some(first) => {
                    let why = format!("cluster {cluster} comes from {} already, which is older", first.object());
                    refused.push((secret, why));
                }
                None => {
                    wanted.insert(cluster, secret);
                }
            },
        }
    }
    refused.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    (wanted, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, created: &str) -> KubeconfigSecret {
        KubeconfigSecret {
            namespace: "berth-system".into(),
            name: name.into(),
            uid: None,
            created: Some(Time(created.parse().unwrap())),
            kubeconfig: Some(b"k".to_vec()),
        }
    }

    #[test]
    fn a_secret_name_says_which_cluster_it_adds() {
        assert_eq!(cluster_name("kubeconfig-alpha-1a2b"), Ok("alpha".to_string()));
        assert_eq!(cluster_name("kubeconfig-eu-west-1-0f9e"), Ok("eu-west-1".to_string()));
        assert!(cluster_name("kubeconfig-alpha").unwrap_err().contains("e.g. kubeconfig-alpha-1a2b"));
        assert!(cluster_name("kubeconfig-alpha-1A2B").unwrap_err().contains("hex"));
        assert!(cluster_name("kubeconfig-alpha-12345").unwrap_err().contains("hex"));
        assert!(cluster_name("kubeconfig--1a2b").unwrap_err().contains("not a cluster name"));
        assert!(cluster_name("kubeconfig-Alpha-1a2b").unwrap_err().contains("not a cluster name"));
        assert!(cluster_name("kubeconfig-alpha.x-1a2b").unwrap_err().contains("not a cluster name"));
    }

    #[test]
    fn two_secrets_for_one_cluster_leave_it_to_the_older() {
        let secrets = vec![
            secret("kubeconfig-alpha-2222", "2024-01-02T00:00:00Z"),
            secret("kubeconfig-alpha-1111", "2024-01-01T00:00:00Z"),
            secret("kubeconfig-beta-3333", "2024-01-03T00:00:00Z"),
            secret("kubeconfig-bad", "2024-01-01T00:00:00Z"),
        ];
        let (wanted, refused) = wanted_clusters(secrets);
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["alpha", "beta"]);
        assert_eq!(wanted["alpha"].name, "kubeconfig-alpha-1111");
        let refused: Vec<(&str, &str)> = refused.iter().map(|(s, why)| (s.name.as_str(), why.as_str())).collect();
        assert_eq!(refused[0].0, "kubeconfig-alpha-2222");
        assert!(refused[0].1.contains("Secret berth-system/kubeconfig-alpha-1111 already"), "{}", refused[0].1);
        assert_eq!(refused[1].0, "kubeconfig-bad");
    }

    #[test]
    fn a_kubeconfig_that_refers_to_files_or_runs_commands_is_refused() {
        let inline = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n    \
                      certificate-authority-data: Zm9v\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  \
                      context: {cluster: c, user: u}\ncurrent-context: x\n";
        assert_eq!(refuse(&Kubeconfig::from_yaml(inline).unwrap()), None);
        let files = inline
            .replace("certificate-authority-data: Zm9v", "certificate-authority: /etc/ca.pem")
            .replace("token: abc", "tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token");
        let why = refuse(&Kubeconfig::from_yaml(&files).unwrap()).unwrap();
        assert!(why.contains("certificate-authority (use") && why.contains("tokenFile"), "{why}");
        let exec = inline.replace("token: abc", "exec: {apiVersion: client.authentication.k8s.io/v1, command: sh}");
        assert!(refuse(&Kubeconfig::from_yaml(&exec).unwrap()).unwrap().contains("exec"));
    }
}
