//! The session key replicas share: with `--leader-elect`, every replica makes session cookies and client-address
//! hashes with the key kept in the Secret [`SECRET_NAME`] of the Lease's namespace, so a cookie one replica's
//! table issued is honoured whichever replica Envoy fetches its next table from, and across restarts.
//!
//! Whichever replica looks first and finds no Secret creates it with a fresh key; one that loses that race (409)
//! reads the winner's. The Secret is read once, at start: to change the key, delete the Secret and restart the
//! replicas. Until the key is known nothing is compiled, so a fresh replica never serves a table with a key of its
//! own; if the Secret cannot be read or made (RBAC, API server down, a malformed Secret) the replica serves with a
//! key of its own meanwhile (its sessions move once when it gets the shared key) and keeps trying.

use std::time::Duration;

use berth_table::AffinityKey;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::source::Update;
use crate::state::new_affinity_key;

/// The Secret holding the key, in the Lease's namespace.
pub const SECRET_NAME: &str = "berth-session-key";
/// The Secret's data entry: the key as 32 hex digits.
const DATA_KEY: &str = "key";

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Starts looking for the shared key in `namespace`; sends it as [`Update::SessionKey`] once known, and a key of
/// this replica's own at the first failure.
pub fn spawn(client: kube::Client, namespace: String, updates: mpsc::Sender<Update>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Secret> = Api::namespaced(client, &namespace);
        let mut delay = RETRY_FIRST;
        let mut own_key_sent = false;
        loop {
            match shared_key(&api).await {
                Ok(key) => {
                    info!(secret = %format!("{namespace}/{SECRET_NAME}"), "using the shared session key");
                    let _ = updates.send(Update::SessionKey(key)).await;
                    return;
                }
                Err(error) => warn!(
                    "the session key: {error} (Secret {namespace}/{SECRET_NAME}); this replica uses a key of its \
                     own meanwhile, so sessions move when Envoy switches replicas; trying again in {delay:?}"
                ),
            }
            if !own_key_sent {
                own_key_sent = true;
                if updates.send(Update::SessionKey(new_affinity_key())).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    })
}

/// The key of the Secret, made with a fresh key if there is none.
async fn shared_key(api: &Api<Secret>) -> Result<AffinityKey, String> {
    let read = |secret: Secret| key_of(&secret);
    if let Some(secret) = api.get_opt(SECRET_NAME).await.map_err(|e| format!("cannot read it: {e}"))? {
        return read(secret);
    }
    let key = new_affinity_key();
    match api.create(&PostParams::default(), &secret_of(key)).await {
        Ok(_) => {
            info!("made the shared session key");
            Ok(key)
        }
        // Another replica made it first: use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            read(api.get(SECRET_NAME).await.map_err(|e| format!("cannot read it: {e}"))?)
        }
        Err(e) => Err(format!("cannot create it: {e}")),
    }
}

/// The Secret holding `key`.
fn secret_of(key: AffinityKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.to_string()),
            labels: Some([("app.kubernetes.io/name".to_string(), "berth".to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some([(DATA_KEY.to_string(), ByteString(key.to_hex().into_bytes()))].into()),
        ..Secret::default()
    }
}

/// The key a Secret holds, or what is wrong with it.
fn key_of(secret: &Secret) -> Result<AffinityKey, String> {
    let value = secret.data.as_ref().and_then(|data| data.get(DATA_KEY));
    value
        .and_then(|value| std::str::from_utf8(&value.0).ok())
        .and_then(|text| AffinityKey::from_hex(text.trim()))
        .ok_or_else(|| {
            format!("data.{DATA_KEY} is not 32 hex digits; delete the Secret and restart the controller's pods")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_made_for_a_key_reads_back_as_that_key_and_a_malformed_one_says_what_to_do() {
        let key = new_affinity_key();
        let secret = secret_of(key);
        assert_eq!(secret.metadata.name.as_deref(), Some(SECRET_NAME));
        assert_eq!(key_of(&secret), Ok(key));
        let text = serde_json::to_value(&secret).unwrap();
        assert_eq!(text["data"]["key"].as_str().map(str::len), Some(44), "32 hex digits, base64: {text}");

        let mut edited = secret.clone();
        edited.data = Some([(DATA_KEY.to_string(), ByteString(b"short".to_vec()))].into());
        assert!(key_of(&edited).unwrap_err().contains("delete the Secret"));
        assert!(key_of(&Secret::default()).is_err(), "no data at all");
    }
}
