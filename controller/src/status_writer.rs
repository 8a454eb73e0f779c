//! Write-back in Kubernetes mode: what Berth decided, written onto the objects users edit.
//!
//! - Every VirtualService: `berth.dev/address` (the address(es) of its tcp and tls routes, as
//!   [`tls::address_annotation`] writes them) and `berth.dev/error` (its errors, one per line: the field and what to
//!   do), each removed when it no longer applies (fixed, not exposed any more, no tcp or tls route).
//! - Every Ingress Berth serves, with `--ingress-address`: `status.loadBalancer.ingress` (through `/status`).
//! - With `--ingress-address`, every Ingress Berth served before but serves no more (its class changed, Berth's
//!   IngressClass is gone): the address Berth wrote is cleared (an address another controller wrote stays).
//! - A core/v1 Event (type Warning, reason `BerthError`) for every error that appears on a VirtualService, an
//!   Ingress or a Service (a malformed health check annotation), named after the object and the error
//!   (`Subject::event_name`): a restarted controller finds the Event it wrote before and adds none; an error that
//!   goes away and comes back raises that Event's `count`. Likewise on a kubeconfig Secret whose cluster cannot be
//!   used or whose API server stops answering.
//!
//! There is one writer per cluster, with that cluster's client: what Berth decides about another cluster's objects
//! is written to that cluster's API server.
//!
//! Writes are JSON merge patches under the field manager `berth`. A merge patch, not server-side apply: removing
//! an annotation must work whoever last set it (a user's `kubectl apply` of an exported manifest takes over the
//! field, and apply would then never remove it), and a merge patch cannot re-create an object deleted meanwhile.
//!
//! The run loop plans ([`plan`]) by comparing what it wants with what the watched object already holds, so a
//! steady state writes nothing; the writer also skips a write it already made against the same resourceVersion
//! (the watch has not brought the result back yet). Failed writes are retried with backoff; the table is published
//! without waiting for any of this, except that a tcp route is served only once its port is recorded on the
//! object (see [`crate::commands::run`]).

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

use crate::Diagnostic;
use crate::compiler::ports::ADDRESS_ANNOTATION;
use crate::compiler::tls;
use crate::compiler::{Classes, Compiled, EXPOSE_ANNOTATION};
use crate::index::Index;
use crate::metrics::{self, WriteBack};
use crate::objects::{Kind, Object, ObjectKey, annotation};

/// The annotation that says why an exposed VirtualService is not (fully) served.
pub const ERROR_ANNOTATION: &str = "berth.dev/error";
/// Berth's field manager for every write.
pub const FIELD_MANAGER: &str = "berth";
/// The reason of Berth's Events.
pub const EVENT_REASON: &str = "BerthError";

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// One patch to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The object: a VirtualService (annotations) or an Ingress (its status).
    pub key: ObjectKey,
    /// The resourceVersion the patch was planned against.
    pub resource_version: Option<String>,
    /// The JSON merge patch.
    pub patch: Value,
}

/// An Event to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub key: ObjectKey,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub message: String,
}

/// An Event to create on a Secret (a cluster's kubeconfig, in the controller's namespace).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretNote {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub message: String,
}

/// The writes that make the objects in `index` (of every cluster: each write's key names its cluster) say what
/// `compiled` decided; none when they already do.
pub fn plan(index: &Index, compiled: &Compiled, ingress_address: Option<&str>) -> Vec<Write> {
    let mut writes = Vec::new();
    for entry in index.of_kind(Kind::VirtualService) {
        let Object::VirtualService(vs) = &entry.object else { continue };
        let key = entry.key();
        let object = key.to_string();
        let exposed = annotation(&vs.metadata, EXPOSE_ANNOTATION) == Some("true");
        let (address, error) = if exposed {
            let mine: Vec<_> = compiled.assignments.values().filter(|a| a.object == object).collect();
            let tls: Vec<_> = compiled.tls_addresses.iter().filter(|a| a.object == object).collect();
            let address = tls::address_annotation(mine, tls);
            (address, error_text(&compiled.diagnostics, &object))
        } else {
            (None, None)
        };
        let has = |name: &str| annotation(&vs.metadata, name).map(str::to_string);
        if has(ADDRESS_ANNOTATION) != address || has(ERROR_ANNOTATION) != error {
            writes.push(Write {
                key,
                resource_version: vs.metadata.resource_version.clone(),
                patch: json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: address, ERROR_ANNOTATION: error}}}),
            });
        }
    }
    if let Some(address) = ingress_address {
        let ours = if address.parse::<std::net::IpAddr>().is_ok() {
            json!([{"ip": address}])
        } else {
            json!([{"hostname": address}])
        };
        let mut classes: HashMap<&str, Classes> = HashMap::new();
        for entry in index.of_kind(Kind::Ingress) {
            let Object::Ingress(ingress) = &entry.object else { continue };
            let classes = classes.entry(entry.cluster()).or_insert_with(|| Classes::from_index(index, entry.cluster()));
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|list| serde_json::to_value(list).unwrap_or_default())
                .unwrap_or_else(|| json!([]));
            // An Ingress Berth does not serve (any more: its class changed, or Berth's IngressClass is gone) must
            // not keep pointing clients at Berth; an address some other controller wrote is left alone.
            let wanted = if classes.serves(ingress) {
                ours.clone()
            } else if current == ours {
                Value::Null
            } else {
                continue;
            };
            if current != wanted {
                writes.push(Write {
                    key: entry.key(),
                    resource_version: ingress.metadata.resource_version.clone(),
                    patch: json!({"status": {"loadBalancer": {"ingress": wanted}}}),
                });
            }
        }
    }
    writes
}

/// `berth.dev/error`'s text for `object`: each error's field and message, one per line; none without errors.
fn error_text(diagnostics: &[Diagnostic], object: &str) -> Option<String> {
    let lines: Vec<String> = diagnostics
        .iter()
        .filter(|d| !d.is_warning() && d.object.as_deref() == Some(object))
        .map(|d| Diagnostic { object: None, file: None, ..d.clone() }.to_string())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The Events for errors that just appeared on VirtualServices, Ingresses and Services in `index`.
pub fn notes(index: &Index, new_diagnostics: &[Diagnostic]) -> Vec<Note> {
    let mut notes = Vec::new();
    for diagnostic in new_diagnostics.iter().filter(|d| !d.is_warning()) {
        let Some(object) = &diagnostic.object else { continue };
        let Some(entry) = [Kind::VirtualService, Kind::Ingress, Kind::Service]
            .into_iter()
            .flat_map(|kind| index.of_kind(kind))
            .find(|entry| entry.key().to_string() == *object)
        else {
            continue;
        };
        let meta = entry.object.metadata();
        notes.push(Note {
            key: entry.key(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            message: Diagnostic { object: None, file: None, ..diagnostic.clone() }.to_string(),
        });
    }
    notes
}

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

/// The outcome of one write.
enum Outcome {
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
                Outcome::Done => {
                    info!(object = %write.key, patch = %write.patch, "wrote back");
                    metrics::global().wrote_back(WriteBack::Written);
                    done.insert(write.key, made);
                }
                Outcome::Gone => {
                    debug!(object = %write.key, "gone before it could be written to");
                    metrics::global().wrote_back(WriteBack::Gone);
                    done.insert(write.key, made);
                }
                Outcome::Failed(error) => {
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

async fn patch(client: &Client, virtual_service: Option<&ApiResource>, write: &Write) -> Outcome {
    let (namespace, name) = (&write.key.namespace, &write.key.name);
    let result = match write.key.kind {
        Kind::VirtualService => {
            let Some(resource) = virtual_service else { return Outcome::Gone };
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource);
            api.patch(name, &params(), &Patch::Merge(&write.patch)).await.map(drop)
        }
        Kind::Ingress => {
            let api = Api::<Ingress>::namespaced(client.clone(), namespace);
            api.patch_status(name, &params(), &Patch::Merge(&write.patch)).await.map(drop)
        }
        _ => return Outcome::Gone,
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(kube::Error::Api(status)) if status.code == 404 => Outcome::Gone,
        Err(error) => Outcome::Failed(error),
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
            },
            Pending::Secret(note) => Subject {
                api_version: "v1".to_string(),
                kind: "Secret",
                namespace: note.namespace.clone(),
                name: note.name.clone(),
                uid: note.uid.clone(),
                resource_version: None,
                message: note.message.clone(),
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
            EVENT_REASON,
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
        reason: Some(EVENT_REASON.to_string()),
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
    use crate::compiler::{Assignment, Assignments};

    fn event_name(note: &Note) -> String {
        Subject::of(&Pending::Object(note.clone()), None).event_name()
    }
    use crate::objects::VirtualService;
    use std::collections::BTreeMap;

    fn vs(name: &str, annotations: &[(&str, &str)]) -> Object {
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Object::VirtualService(VirtualService {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some(name.into()),
                resource_version: Some("7".into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..VirtualService::default()
        })
    }

    fn compiled(assigned: &[(&str, u16)], errors: &[(&str, &str)]) -> Compiled {
        let assignments: Assignments = assigned
            .iter()
            .map(|(object, port)| {
                let a = Assignment {
                    object: object.to_string(),
                    route: "tcp[0]".into(),
                    port: *port,
                    host: Some("tcp.example.com".into()),
                };
                (a.key(), a)
            })
            .collect();
        let diagnostics =
            errors.iter().map(|(object, message)| Diagnostic::new(*message).object(*object).field("spec")).collect();
        Compiled { assignments, diagnostics, ..Compiled::default() }
    }

    #[test]
    fn writes_the_address_and_the_error_only_where_they_differ() {
        let mut index = Index::new();
        index.apply("kube:VirtualService", vs("db", &[(EXPOSE_ANNOTATION, "true")]), None).unwrap();
        let done = vs("ok", &[(EXPOSE_ANNOTATION, "true"), (ADDRESS_ANNOTATION, "tcp.example.com:31001")]);
        index.apply("kube:VirtualService", done, None).unwrap();
        let hidden = vs("hidden", &[(ERROR_ANNOTATION, "old")]);
        index.apply("kube:VirtualService", hidden, None).unwrap();
        let compiled = compiled(
            &[("VirtualService shop/db", 31000), ("VirtualService shop/ok", 31001)],
            &[("VirtualService shop/db", "service \"x\" does not exist; create it")],
        );
        let writes = plan(&index, &compiled, None);
        let by_name: BTreeMap<&str, &Value> = writes.iter().map(|w| (w.key.name.as_str(), &w.patch)).collect();
        assert_eq!(by_name.len(), 2, "{writes:?}");
        assert_eq!(
            *by_name["db"],
            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: "tcp.example.com:31000",
                ERROR_ANNOTATION: "spec: service \"x\" does not exist; create it"}}})
        );
        assert_eq!(
            *by_name["hidden"],
            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: null, ERROR_ANNOTATION: null}}}),
            "a VirtualService no longer exposed loses Berth's annotations"
        );
        assert_eq!(writes[0].resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn notes_name_the_object_and_skip_warnings_and_unknown_objects() {
        let mut index = Index::new();
        index.apply("kube:VirtualService", vs("db", &[]), None).unwrap();
        let new = [
            Diagnostic::new("bad").object("VirtualService shop/db").field("spec.tcp[0]"),
            Diagnostic::new("meh").object("VirtualService shop/db").warning(),
            Diagnostic::new("bad").object("VirtualService shop/gone"),
        ];
        let notes = notes(&index, &new);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].message, "spec.tcp[0]: bad");
        assert_eq!(notes[0].key.to_string(), "VirtualService shop/db");
    }

    #[test]
    fn a_services_errors_are_noted_on_the_service() {
        let mut index = Index::new();
        let service: Object = serde_json::from_value(json!({"metadata": {"namespace": "shop", "name": "web"}}))
            .map(Object::Service)
            .unwrap();
        index.apply("kube:Service", service, None).unwrap();
        let field = "metadata.annotations[\"berth.dev/health-check-interval\"]";
        let notes = notes(&index, &[Diagnostic::new("bad").object("Service shop/web").field(field)]);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].key.to_string(), "Service shop/web");
        assert_eq!(notes[0].message, format!("{field}: bad"));
    }

    fn ingress(name: &str, class: &str, ip: Option<&str>) -> Object {
        let status = ip.map_or_else(|| json!({}), |ip| json!({"loadBalancer": {"ingress": [{"ip": ip}]}}));
        Object::Ingress(
            serde_json::from_value(json!({
                "metadata": {"namespace": "shop", "name": name, "resourceVersion": "3"},
                "spec": {"ingressClassName": class},
                "status": status,
            }))
            .unwrap(),
        )
    }

    fn berth_class() -> Object {
        Object::IngressClass(
            serde_json::from_value(json!({
                "metadata": {"name": "berth"},
                "spec": {"controller": "berth.dev/ingress-controller"},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_ingress_berth_does_not_serve_loses_only_berths_own_address() {
        let mut index = Index::new();
        index.apply("kube:IngressClass", berth_class(), None).unwrap();
        for object in [
            ingress("new", "berth", None),
            ingress("done", "berth", Some("10.0.0.1")),
            ingress("left", "other", Some("10.0.0.1")),
            ingress("theirs", "other", Some("10.9.9.9")),
            ingress("never", "other", None),
        ] {
            index.apply("kube:Ingress", object, None).unwrap();
        }
        let writes = plan(&index, &Compiled::default(), Some("10.0.0.1"));
        let by_name: BTreeMap<&str, &Value> = writes.iter().map(|w| (w.key.name.as_str(), &w.patch)).collect();
        assert_eq!(by_name.len(), 2, "{writes:?}");
        assert_eq!(*by_name["new"], json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}));
        assert_eq!(*by_name["left"], json!({"status": {"loadBalancer": {"ingress": null}}}));
        assert!(plan(&index, &Compiled::default(), None).is_empty(), "without --ingress-address status is left alone");
    }

    fn note(name: &str, uid: &str, message: &str) -> Note {
        Note {
            key: ObjectKey::new(Kind::VirtualService, "shop", name),
            uid: Some(uid.into()),
            resource_version: Some("7".into()),
            message: message.into(),
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
        let long = event_name(&note(&"a-".repeat(126), "u1", "bad"));
        assert!(long.len() <= 253 && !long.contains("-.berth"), "{long}");
    }
}
