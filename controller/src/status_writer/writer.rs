//! The Kubernetes side of write-back: one task per cluster that makes the planned patches (JSON merge patches under
//! the field manager [`FIELD_MANAGER`]), skips one already made against the same resourceVersion, retries failures
//! with backoff, and records Events named per object and error.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::plan::{Note, SecretNote, Write};
use super::{EVENT_REASON, FIELD_MANAGER};
use crate::metrics::{self, WriteBack};
use crate::objects::{Kind, ObjectKey};

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The handle the run loop gives plans and notes to; the writing happens in its own task.
pub struct Writer {
    plans: watch::Sender<Vec<Write>>,
    notes: mpsc::UnboundedSender<Pending>,
    virtual_service: watch::Sender<Option<ApiResource>>,
    task: tokio::task::JoinHandle<()>,
}

/// An Event waiting to be recorded.
#[derive(Debug, Clone)]
enum Pending {
    Object(Note),
    Secret(SecretNote),
}

impl Writer {
    /// Starts the writing task, which ends when the writer is dropped.
    pub fn spawn(client: Client) -> Writer {
        let (plans, plans_rx) = watch::channel(Vec::new());
        let (notes, notes_rx) = mpsc::unbounded_channel();
        let (virtual_service, virtual_service_rx) = watch::channel(None);
        let task = tokio::spawn(write_loop(client, virtual_service_rx, plans_rx, notes_rx));
        Writer { plans, notes, virtual_service, task }
    }

    /// The resource VirtualServices are read through now (none while their CRD is not installed).
    pub fn set_virtual_service(&self, resource: Option<ApiResource>) {
        self.virtual_service.send_replace(resource);
    }

    /// Replaces the writes still to make: the latest plan is the whole truth.
    pub fn plan(&self, writes: Vec<Write>) {
        self.plans.send_if_modified(|current| {
            let changed = *current != writes;
            *current = writes;
            changed
        });
    }

    pub fn note(&self, note: Note) {
        let _ = self.notes.send(Pending::Object(note));
    }

    pub fn note_secret(&self, note: SecretNote) {
        let _ = self.notes.send(Pending::Secret(note));
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What became of one write.
enum Patched {
    Done,
    /// The object is gone: nothing to write any more.
    Gone,
    Failed(kube::Error),
}

async fn write_loop(
    client: Client,
    virtual_service: watch::Receiver<Option<ApiResource>>,
    mut plans: watch::Receiver<Vec<Write>>,
    mut notes: mpsc::UnboundedReceiver<Pending>,
) {
    // The writes made, by object: skipped when planned again against the same resourceVersion.
    let mut done: HashMap<ObjectKey, (Option<String>, Value)> = HashMap::new();
    // The Events this process wrote or found: the same error again counts on the same Event.
    let mut recorded: HashSet<String> = HashSet::new();
    let mut unsent: Vec<Pending> = Vec::new();
    let mut delay = RETRY_FIRST;
    loop {
        let writes = plans.borrow_and_update().clone();
        let vs = virtual_service.borrow().clone();
        let mut failed = false;
        for write in writes {
            let made = (write.resource_version.clone(), write.patch.clone());
            if done.get(&write.key) == Some(&made) {
                continue;
            }
            match patch(&client, vs.as_ref(), &write).await {
                Patched::Done => {
                    info!(object = %write.key, patch = %write.patch, "wrote back");
                    metrics::global().wrote_back(WriteBack::Written);
                    done.insert(write.key, made);
                }
                Patched::Gone => {
                    debug!(object = %write.key, "gone before it could be written to");
                    metrics::global().wrote_back(WriteBack::Gone);
                    done.insert(write.key, made);
                }
                Patched::Failed(error) => {
                    warn!(object = %write.key, %error, "cannot write back; trying again in {delay:?}");
                    metrics::global().wrote_back(WriteBack::Failed);
                    failed = true;
                }
            }
        }
        for note in std::mem::take(&mut unsent) {
            let subject = Subject::of(&note, vs.as_ref());
            let name = subject.event_name();
            match event(&client, &subject, recorded.contains(&name)).await {
                Ok(outcome) => {
                    debug!(object = %subject, event = %name, ?outcome, "recorded an Event");
                    metrics::global().event(true);
                    recorded.insert(name);
                }
                Err(error) => {
                    warn!(object = %subject, %error, "cannot record an Event; trying again in {delay:?}");
                    metrics::global().event(false);
                    failed = true;
                    unsent.push(note);
                }
            }
        }
        if failed {
            // Unbounded growth while the API server is away would only repeat old news.
            unsent.truncate(1000);
        } else {
            delay = RETRY_FIRST;
        }
        tokio::select! {
            changed = plans.changed() => if changed.is_err() { return },
            note = notes.recv() => match note {
                Some(note) => unsent.push(note),
                None => return,
            },
            () = tokio::time::sleep(delay), if failed => delay = (delay * 2).min(RETRY_MAX),
        }
    }
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() }
}

async fn patch(client: &Client, virtual_service: Option<&ApiResource>, write: &Write) -> Patched {
    let (namespace, name) = (&write.key.namespace, &write.key.name);
    let result = match write.key.kind {
        Kind::VirtualService => {
            let Some(resource) = virtual_service else { return Patched::Gone };
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource);
            api.patch(name, &params(), &Patch::Merge(&write.patch)).await.map(drop)
        }
        Kind::Ingress => {
            let api = Api::<Ingress>::namespaced(client.clone(), namespace);
            api.patch_status(name, &params(), &Patch::Merge(&write.patch)).await.map(drop)
        }
        _ => return Patched::Gone,
    };
    match result {
        Ok(()) => Patched::Done,
        Err(kube::Error::Api(status)) if status.code == 404 => Patched::Gone,
        Err(error) => Patched::Failed(error),
    }
}

/// What an Event is about and says.
struct Subject {
    api_version: String,
    kind: &'static str,
    namespace: String,
    name: String,
    uid: Option<String>,
    resource_version: Option<String>,
    message: String,
    reason: &'static str,
}

impl Subject {
    fn of(note: &Pending, virtual_service: Option<&ApiResource>) -> Subject {
        match note {
            Pending::Object(note) => Subject {
                api_version: match note.key.kind {
                    Kind::VirtualService => {
                        virtual_service.map_or("networking.istio.io/v1", |r| r.api_version.as_str()).to_string()
                    }
                    Kind::Service => "v1".to_string(),
                    _ => "networking.k8s.io/v1".to_string(),
                },
                kind: note.key.kind.as_str(),
                namespace: note.key.namespace.clone(),
                name: note.key.name.clone(),
                uid: note.uid.clone(),
                resource_version: note.resource_version.clone(),
                message: note.message.clone(),
                reason: note.reason,
            },
            Pending::Secret(note) => Subject {
                api_version: "v1".to_string(),
                kind: "Secret",
                namespace: note.namespace.clone(),
                name: note.name.clone(),
                uid: note.uid.clone(),
                resource_version: None,
                message: note.message.clone(),
                reason: EVENT_REASON,
            },
        }
    }

    /// The name of the Event that records this: the object's name and a hash of what identifies the error (the
    /// object's kind, namespace, name and uid, and the message). The same error on the same object always has the
    /// same Event, so a restarted controller finds the one it wrote before instead of adding another.
    fn event_name(&self) -> String {
        use sha2::Digest;
        let identity = [
            self.kind,
            &self.namespace,
            &self.name,
            self.uid.as_deref().unwrap_or_default(),
            self.reason,
            &self.message,
        ]
        .join("\n");
        let hash: String =
            sha2::Sha256::digest(identity.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        // Object names are DNS subdomains of at most 253 characters, as Event names must be: keep that.
        let suffix = format!(".berth-{hash}");
        let room = 253 - suffix.len();
        let mut name: String = self.name.chars().take(room).collect();
        while name.ends_with(['.', '-']) {
            name.pop();
        }
        format!("{name}{suffix}")
    }
}

/// `Secret berth-system/kubeconfig-alpha-1a2b`, for logs.
impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What recording a note did.
#[derive(Debug, PartialEq)]
enum Recorded {
    /// A new Event.
    Created,
    /// The Event was there already (written before a restart): left as it is.
    Found,
    /// The error came back while this process ran: the Event's count and lastTimestamp went up.
    Repeated,
    /// The namespace is gone with the object.
    Gone,
}

/// Records `subject` as an Event named by [`Subject::event_name`]: creates it, or, when it exists and this process
/// recorded it before (`again`: the error went away and came back), counts it once more. An Event this process did not
/// write is a restarted controller's own earlier record of the same error, so it is left alone.
async fn event(client: &Client, subject: &Subject, again: bool) -> Result<Recorded, kube::Error> {
    let name = subject.event_name();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(subject.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(subject.api_version.clone()),
            kind: Some(subject.kind.to_string()),
            namespace: Some(subject.namespace.clone()),
            name: Some(subject.name.clone()),
            uid: subject.uid.clone(),
            resource_version: subject.resource_version.clone(),
            ..ObjectReference::default()
        },
        type_: Some("Warning".to_string()),
        reason: Some(subject.reason.to_string()),
        message: Some(subject.message.clone()),
        source: Some(EventSource { component: Some(FIELD_MANAGER.to_string()), host: None }),
        reporting_component: Some(FIELD_MANAGER.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Event::default()
    };
    let api = Api::<Event>::namespaced(client.clone(), &subject.namespace);
    let post = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
    match api.create(&post, &event).await {
        Ok(_) => return Ok(Recorded::Created),
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Recorded::Gone),
        Err(kube::Error::Api(status)) if status.code == 409 && !again => return Ok(Recorded::Found),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error),
    }
    // Should it expire between the two calls, the error is returned and the next try creates it afresh.
    let count = api.get(&name).await?.count.unwrap_or(1);
    let patch = json!({"count": count + 1, "lastTimestamp": now});
    api.patch(&name, &params(), &Patch::Merge(&patch)).await?;
    Ok(Recorded::Repeated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_name(note: &Note) -> String {
        Subject::of(&Pending::Object(note.clone()), None).event_name()
    }

    fn note(name: &str, uid: &str, message: &str) -> Note {
        Note {
            key: ObjectKey::new(Kind::VirtualService, "shop", name),
            uid: Some(uid.into()),
            resource_version: Some("7".into()),
            message: message.into(),
            reason: EVENT_REASON,
        }
    }

    #[test]
    fn an_events_name_is_the_same_for_the_same_error_on_the_same_object() {
        let name = event_name(&note("db", "u1", "bad"));
        assert!(name.starts_with("db.berth-") && name.len() == "db.berth-".len() + 16, "{name}");
        assert_eq!(event_name(&Note { resource_version: Some("8".into()), ..note("db", "u1", "bad") }), name);
        assert_ne!(event_name(&note("db", "u1", "worse")), name, "another error");
        assert_ne!(event_name(&note("db", "u2", "bad")), name, "a re-created object");
        assert_ne!(event_name(&note("web", "u1", "bad")), name);
        let warning = Note { reason: super::super::WARNING_EVENT_REASON, ..note("db", "u1", "bad") };
        assert_ne!(event_name(&warning), name, "a warning with an error's text");
        let long = event_name(&note(&"a-".repeat(126), "u1", "bad"));
        assert!(long.len() <= 253 && !long.contains("-.berth"), "{long}");
    }
}
