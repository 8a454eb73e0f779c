//! Leader election on a `coordination.k8s.io/v1` Lease: of several replicas watching the same clusters, only the
//! leader allocates ports and writes back to objects; every replica serves the table.
//!
//! [`elector`] decides; this module reads and writes the Lease and tells the rest of the controller, through a
//! `watch` channel, whether this replica leads right now. [`session_key`] gives every replica the same key for
//! session cookies.

pub mod elector;
pub mod session_key;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use elector::{Elector, LeaseRecord, Step, Timing};

/// Where the Lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

/// A running campaign.
pub struct Campaign {
    /// Whether this replica leads; changes as soon as that changes.
    pub leads: watch::Receiver<bool>,
    resign: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Campaign {
    /// Stops campaigning and, if leading, releases the Lease so another replica takes over at once instead of
    /// after a lease duration (a rolling update, a scale-down).
    pub async fn resign(self) {
        let _ = self.resign.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Starts campaigning.
pub fn spawn(client: kube::Client, config: LeaseConfig) -> Campaign {
    let (leads, receiver) = watch::channel(false);
    let (resign, resigned) = oneshot::channel();
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let elector = Elector::new(config.identity.clone(), config.timing);
    let task = tokio::spawn(campaign(api, config, elector, leads, resigned));
    Campaign { leads: receiver, resign, task }
}

async fn campaign(
    api: Api<Lease>,
    config: LeaseConfig,
    mut elector: Elector,
    leads: watch::Sender<bool>,
    mut resigned: oneshot::Receiver<()>,
) {
    let timing = elector.timing();
    let mut tick = tokio::time::interval(timing.retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut resigned => {
                leads.send_replace(false);
                if elector.leads(Instant::now()) {
                    release(&api, &config).await;
                }
                return;
            }
        }
        // An API call must not outlive the renew deadline: a leader stuck in one would keep acting on a lease that
        // may already belong to another replica.
        match tokio::time::timeout(timing.retry_period, round(&api, &config, &mut elector)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(lease = %config.name, %error, "leader election: cannot read or write the Lease"),
            Err(_) => warn!(lease = %config.name, "leader election: the API server did not answer in time"),
        }
        let now_leads = elector.leads(Instant::now());
        leads.send_if_modified(|led| {
            if *led == now_leads {
                return false;
            }
            if now_leads {
                info!(identity = %config.identity, lease = %config.name, "leading: allocating ports and writing back");
            } else {
                warn!(identity = %config.identity, lease = %config.name, "not leading: serving the table only");
            }
            *led = now_leads;
            true
        });
    }
}

/// One look at the Lease and the write it calls for.
async fn round(api: &Api<Lease>, config: &LeaseConfig, elector: &mut Elector) -> kube::Result<()> {
    let current = api.get_opt(&config.name).await?;
    let record = current.as_ref().map(|lease| LeaseRecord {
        holder: lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
    });
    let written = match elector.step(record.as_ref(), Instant::now()) {
        Step::Follow { .. } => {
            elector.lost();
            return Ok(());
        }
        Step::Create => api.create(&PostParams::default(), &held(config, None, None)).await,
        Step::Acquire { version } => {
            let transitions = current.as_ref().and_then(|l| l.spec.as_ref()?.lease_transitions).unwrap_or(0);
            api.replace(&config.name, &PostParams::default(), &held(config, Some(version), Some(transitions + 1))).await
        }
        Step::Renew { version } => {
            let mut lease = current.unwrap_or_default();
            lease.metadata.resource_version = Some(version);
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_duration_seconds = Some(duration_seconds(config.timing.lease_duration));
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
    };
    match written {
        Ok(_) => elector.wrote(Instant::now()),
        // Another replica wrote first (409 Conflict / AlreadyExists): it leads; look again next round.
        Err(kube::Error::Api(status)) if status.code == 409 => elector.lost(),
        Err(error) => return Err(error),
    }
    Ok(())
}

/// Gives the Lease up, if we still hold it: holder cleared, so the next candidate to look acquires it at once.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let released = async {
        let Some(mut lease) = api.get_opt(&config.name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        api.replace(&config.name, &PostParams::default(), &lease).await.map(|_| ())
    };
    match tokio::time::timeout(config.timing.retry_period, released).await {
        Ok(Ok(())) => info!(lease = %config.name, "released the Lease"),
        Ok(Err(error)) => warn!(lease = %config.name, %error, "cannot release the Lease; it expires on its own"),
        Err(_) => warn!(lease = %config.name, "cannot release the Lease in time; it expires on its own"),
    }
}

/// The Lease as this replica holding it, newly acquired.
fn held(config: &LeaseConfig, version: Option<String>, transitions: Option<i32>) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: version,
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(duration_seconds(config.timing.lease_duration)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: transitions.or(Some(0)),
            ..LeaseSpec::default()
        }),
    }
}

fn duration_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}
