//! What Envoy gets for the objects Berth sees: one pipeline, [`reconcile`], from the index and what the controller
//! holds (ports handed out, the session key, what Kubernetes mode knows of its clusters) to the table that is
//! published, with every step after compilation in it, in this order:
//!
//! 1. the ports to keep ([`ports_to_keep`]): a follower keeps exactly those on record, a leader also those it
//!    handed out, directory mode those of its state file and its last compilation;
//! 2. [`compile`];
//! 3. the session key, in tables with session affinity ([`crate::compiler::Content::with_affinity_key`]);
//! 4. in Kubernetes mode: what missing CRDs cost ([`crds::explain_missing`]), the errors of the clusters themselves
//!    (kubeconfig Secrets), the leader's write-back plan ([`status_writer::plan`], which records every port handed
//!    out), then [`withhold_unrecorded`]: a tcp route is served only once its port is on record;
//! 5. health ([`apply_health`]): endpoints that fail their checks are left out. When only health changes, this
//!    step alone runs again on the last result, so health never touches ports or routes.
//!
//! Everything here is a function of its inputs but the health step, which starts and stops the checks of the
//! endpoints the table names. The run loop ([`crate::controller`]) does the I/O around it: logging, the state
//! file, handing the plan to the writers, publishing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_table::AffinityKey;
use tracing::debug;

use crate::Diagnostic;
use crate::compiler::{Compiled, HeldPorts, Options, compile, ports};
use crate::health::{EndpointHealth, Health};
use crate::index::Index;
use crate::objects::{Kind, annotation};
use crate::source::crds;
use crate::status_writer::{self, Write};

/// Everything the table is made from.
pub struct Inputs<'a> {
    pub index: &'a Index,
    pub options: &'a Options,
    /// The ports this process handed out last (at start: those of the state file).
    pub held: &'a HeldPorts,
    /// The secret behind session cookies.
    pub affinity_key: AffinityKey,
    /// What only Kubernetes mode has; none in directory mode.
    pub kube: Option<KubeInputs<'a>>,
}

/// What Kubernetes mode adds to the inputs.
pub struct KubeInputs<'a> {
    /// Whether this replica leads (always, without `--leader-elect`): only a leader hands out ports and writes back.
    pub leading: bool,
    /// The kinds whose CRD is not installed, by cluster ([`crate::objects::LOCAL_CLUSTER`] for the local one).
    pub missing: &'a [(&'a str, Kind)],
    /// What is wrong with the clusters themselves: errors on their kubeconfig Secrets.
    pub cluster_diagnostics: Vec<Diagnostic>,
    /// `--ingress-address`: written into the status of the Ingresses Berth serves.
    pub ingress_address: Option<&'a str>,
}

/// What one pass of the pipeline made.
#[derive(Debug)]
pub struct Reconciled {
    /// The compilation with every step but health: kept, and republished through [`apply_health`] alone when only
    /// health changes. Its assignments are every port handed out, also those withheld until recorded.
    pub compiled: Compiled,
    /// What is published: `compiled` without its unhealthy endpoints.
    pub published: Compiled,
    /// Every checked endpoint's health, published alongside.
    pub health: Vec<EndpointHealth>,
    /// The leader's write-back: what the objects must say for `compiled`. None unless leading in Kubernetes mode.
    pub writes: Option<Vec<Write>>,
    /// How long compiling the objects into a table took (for `berth_compile_seconds`).
    pub compile_time: Duration,
}

/// The pipeline: what is published for `inputs`, and what the leader writes back.
pub fn reconcile(inputs: &Inputs<'_>, health: &mut Health) -> Reconciled {
    let held = ports_to_keep(inputs);
    let compiling = Instant::now();
    let mut compiled = compile(inputs.index, inputs.options, &held);
    let compile_time = compiling.elapsed();
    compiled.content = std::mem::take(&mut compiled.content).with_affinity_key(inputs.affinity_key);
    let mut writes = None;
    if let Some(kube) = &inputs.kube {
        crds::explain_missing(kube.missing, &mut compiled);
        compiled.diagnostics.extend(kube.cluster_diagnostics.iter().cloned());
        if kube.leading {
            writes = Some(status_writer::plan(inputs.index, &compiled, kube.ingress_address));
        }
        withhold_unrecorded(&mut compiled, inputs.index);
    }
    let (published, health) = apply_health(&compiled, inputs.index, health);
    Reconciled { compiled, published, health, writes, compile_time }
}

/// The last step: `compiled` without the endpoints that fail their checks, and every checked endpoint's health.
pub fn apply_health(compiled: &Compiled, index: &Index, health: &mut Health) -> (Compiled, Vec<EndpointHealth>) {
    let mut published = compiled.clone();
    let health = health.apply(index, &mut published);
    (published, health)
}

/// The ports the compilation keeps where their objects still ask for them.
pub fn ports_to_keep(inputs: &Inputs<'_>) -> HeldPorts {
    match &inputs.kube {
        // A follower holds what is on record and nothing else: ports it handed out itself would be guesses.
        Some(kube) if !kube.leading => recorded_ports(inputs.index),
        // What is on record wins over what this process remembers.
        Some(_) => {
            let mut held = inputs.held.clone();
            held.extend(recorded_ports(inputs.index));
            held
        }
        None => inputs.held.clone(),
    }
}

/// The ports VirtualServices' `berth.dev/address` annotations record, by claim.
pub fn recorded_ports(index: &Index) -> HeldPorts {
    let mut held = HeldPorts::new();
    for entry in index.of_kind(Kind::VirtualService) {
        let Some(value) = annotation(entry.object.metadata(), ports::ADDRESS_ANNOTATION) else { continue };
        let key = entry.key();
        for (route, port) in ports::parse_address_annotation(value) {
            held.insert(format!("{key} {route}"), port);
        }
    }
    held
}

/// Leaves out of the table every tcp route whose port its object's `berth.dev/address` does not record yet.
pub fn withhold_unrecorded(compiled: &mut Compiled, index: &Index) {
    let recorded: BTreeSet<(berth_table::Source, u16)> = index
        .of_kind(Kind::VirtualService)
        .filter_map(|entry| {
            let value = annotation(entry.object.metadata(), ports::ADDRESS_ANNOTATION)?;
            let source = crate::compiler::source_of(&entry.key());
            Some(ports::parse_address_annotation(value).into_values().map(move |port| (source.clone(), port)))
        })
        .flatten()
        .collect();
    compiled.content.tcp.retain(|route| {
        let waits = !recorded.contains(&(route.source.clone(), route.port));
        if waits {
            debug!(port = route.port, object = %route.source, "tcp route waits until berth.dev/address records its port");
        }
        !waits
    });
}

#[cfg(test)]
mod tests;
