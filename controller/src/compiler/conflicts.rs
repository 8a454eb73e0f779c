//! Conflicts: when two objects claim the same host and path, the same tls server name, or both bring a default
//! backend, the older one keeps it and the younger one is left out entirely, with a diagnostic naming the winner.
//! Objects of every cluster claim from the same table, so the winner may be another cluster's object: it is named
//! with its cluster (`VirtualService alpha/default/web`). Server names the operator reserved (each cluster's API
//! server under `--api-domain`) are claimed before any object.
//!
//! "Same path" means the same kind of match on the same string: `prefix /a` and `exact /a` are different routes
//! and the matcher's precedence decides between them. Likewise `a.example.com` and `*.example.com` are different
//! server names. Repeats within one object are not conflicts: the first
//! one listed is kept, as a first-match router would.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_table::{HttpRoute, TlsRoute};

use super::{Content, Problem, Wants, to_diagnostic};
use crate::Diagnostic;
use crate::objects::ObjectKey;

/// An object whose routes all resolved, waiting to claim them.
#[derive(Debug, Clone)]
pub struct Claimant {
    pub key: ObjectKey,
    pub file: Option<PathBuf>,
    pub wants: Wants,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Claim {
    /// Host, the kind of path match (as shown to people), and the path.
    Http {
        host: String,
        path: String,
    },
    DefaultBackend,
    /// A tls server name (or `*.domain` pattern).
    Tls {
        sni: String,
    },
}

/// A tls route the operator set up, which no object can take: the route and who it is, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub route: TlsRoute,
    /// `the API server of cluster alpha (--api-domain k8s.example.com)`.
    pub owner: String,
}

/// Who holds a claim.
enum Owner {
    Object(ObjectKey),
    Reserved(String),
}

/// Claims routes for `claimants`, given oldest first, after the `reserved` ones; returns the table content and one
/// diagnostic per lost claim.
pub fn resolve(reserved: Vec<Reserved>, claimants: Vec<Claimant>) -> (Content, Vec<Diagnostic>) {
    let mut owners: HashMap<Claim, Owner> = HashMap::new();
    let mut content = Content::default();
    let mut diagnostics = Vec::new();
    for Reserved { route, owner } in reserved {
        let claim = Claim::Tls { sni: route.sni.clone() };
        if let std::collections::hash_map::Entry::Vacant(vacant) = owners.entry(claim) {
            vacant.insert(Owner::Reserved(owner));
            content.tls.push(route);
        }
    }
    for Claimant { key, file, wants } in claimants {
        let mut claims: Vec<(Claim, &str)> = Vec::new();
        for wanted in &wants.http {
            let claim = claim_of(&wanted.route);
            if !claims.iter().any(|(c, _)| *c == claim) {
                claims.push((claim, &wanted.field));
            }
        }
        if let Some((field, _)) = &wants.default_backend {
            claims.push((Claim::DefaultBackend, field));
        }
        for wanted in &wants.tls {
            let claim = Claim::Tls { sni: wanted.route.sni.clone() };
            if !claims.iter().any(|(c, _)| *c == claim) {
                claims.push((claim, &wanted.field));
            }
        }

        let lost: Vec<Problem> = claims
            .iter()
            .filter_map(|(claim, field)| {
                let winner = owners.get(claim)?;
                let what = match claim {
                    Claim::Http { host, path } => format!("host {host} path {path}"),
                    Claim::DefaultBackend => "the default backend".to_string(),
                    Claim::Tls { sni } => format!("tls server name {sni}"),
                };
                let message = match winner {
                    Owner::Reserved(owner) => format!(
                        "{what} is already routed to {owner}, which comes before any object; this object is not \
                         served until it no longer asks for {what}"
                    ),
                    Owner::Object(winner) => format!(
                        "{what} is already routed by {winner}, which is older; this object is not served until the \
                         conflict is removed from one of them"
                    ),
                };
                Some(Problem::new(*field, message))
            })
            .collect();
        if !lost.is_empty() {
            diagnostics.extend(lost.into_iter().map(|p| to_diagnostic(&key.to_string(), &file, p)));
            continue;
        }

        let mut taken = Vec::new();
        for wanted in wants.http {
            let claim = claim_of(&wanted.route);
            if !taken.contains(&claim) {
                taken.push(claim);
                content.http.push(wanted.route);
            }
        }
        if let Some((_, default)) = wants.default_backend {
            taken.push(Claim::DefaultBackend);
            content.default_backend = Some(default);
        }
        // Tcp routes cannot conflict: allocation gave each its own port.
        content.tcp.extend(wants.tcp);
        for wanted in wants.tls {
            let claim = Claim::Tls { sni: wanted.route.sni.clone() };
            if !taken.contains(&claim) {
                taken.push(claim);
                content.tls.push(wanted.route);
            }
        }
        for claim in taken {
            owners.insert(claim, Owner::Object(key.clone()));
        }
    }
    (content, diagnostics)
}

fn claim_of(route: &HttpRoute) -> Claim {
    Claim::Http { host: route.host.clone(), path: route.path.to_string() }
}
