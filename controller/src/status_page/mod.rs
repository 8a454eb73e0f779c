//! The status page at the controller's `/`: what `/v1/routes` serves, for people, in a browser.
//!
//! [`render`] is a pure function of a [`Routes`] (the very data of `/v1/routes`): sources (reachable or
//! stale), errors and warnings by object, the HTTP, TCP and TLS routes with their backends and each endpoint's
//! health, the port ranges with their use, and the table version. The page reloads itself every few seconds (a
//! meta refresh: no script), and reads on a phone (one column) as on a desktop (tables).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_table::{Backend, PathMatch, Source};
use tokio::sync::watch;

use crate::api::Routes;
use crate::diagnostic::DiagnosticView;
use crate::publish::Publication;
use crate::server::routes_view;

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 2;

const STYLE: &str = include_str!("page.css");

/// `GET /`, served alongside the API.
pub fn router(snapshots: watch::Receiver<Publication>) -> Router {
    Router::new().route("/", get(page)).with_state(snapshots)
}

async fn page(State(snapshots): State<watch::Receiver<Publication>>) -> Response {
    let snapshot = snapshots.borrow().clone();
    let (status, body) = match routes_view(&snapshot) {
        Some(view) => (StatusCode::OK, render(&view)),
        None => (StatusCode::SERVICE_UNAVAILABLE, render_waiting()),
    };
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The page for `view`.
pub fn render(view: &Routes) -> String {
    let mut html = head(&format!("Berth: table {}", view.table.version));
    let (state, class) = if view.stale { ("a source is stale", "bad") } else { ("every source reachable", "ok") };
    let errors = view.errors.len();
    let _ = write!(
        html,
        "<header><h1>Berth</h1><span>table version <code id=\"version\">{}</code></span>\
         <span class=\"{class}\" id=\"state\">{state}</span><span class=\"{}\">{errors} error{}</span></header>",
        view.table.version,
        if errors == 0 { "ok" } else { "bad" },
        if errors == 1 { "" } else { "s" },
    );
    sources(&mut html, view);
    diagnostics(&mut html, "errors", "Errors", "bad", &view.errors);
    diagnostics(&mut html, "warnings", "Warnings", "warn", &view.warnings);
    http_routes(&mut html, view);
    tcp_routes(&mut html, view);
    tls_routes(&mut html, view);
    port_ranges(&mut html, view);
    let _ = writeln!(
        html,
        "<footer><p class=\"muted\">Reloads every {REFRESH_SECONDS}s. The same data as JSON: \
         <a href=\"/v1/routes\">/v1/routes</a>; metrics: <a href=\"/metrics\">/metrics</a>.</p></footer></body></html>"
    );
    html
}

/// The page before the first table is compiled.
fn render_waiting() -> String {
    let mut html = head("Berth: starting");
    html.push_str("<header><h1>Berth</h1><span class=\"warn\">no table compiled yet</span></header></body></html>\n");
    html
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    )
}

fn sources(html: &mut String, view: &Routes) {
    if view.sources.is_empty() {
        return;
    }
    html.push_str("<section id=\"sources\"><h2>Sources</h2><ul>");
    for source in &view.sources {
        if source.stale {
            let since = source.since.as_deref().map(|s| format!(" since {}", escape(s))).unwrap_or_default();
            let error = source.error.as_deref().map(|e| format!(": {}", escape(e))).unwrap_or_default();
            let _ = write!(html, "<li class=\"bad\"><code>{}</code> stale{since}{error}</li>", escape(&source.name));
        } else {
            let _ = write!(html, "<li class=\"ok\"><code>{}</code> reachable</li>", escape(&source.name));
        }
    }
    html.push_str("</ul></section>");
}

fn diagnostics(html: &mut String, id: &str, title: &str, class: &str, list: &[DiagnosticView]) {
    if list.is_empty() {
        return;
    }
    let _ = write!(html, "<section id=\"{id}\"><h2 class=\"{class}\">{title} ({})</h2><ul>", list.len());
    for diagnostic in list {
        let object = diagnostic.object.as_deref().map(|o| format!("<b>{}</b>: ", escape(o))).unwrap_or_default();
        let field = diagnostic.field.as_deref().map(|f| format!("<code>{}</code>: ", escape(f))).unwrap_or_default();
        let file = diagnostic
            .file
            .as_ref()
            .map(|f| format!(" <span class=\"muted\">({})</span>", escape(&f.display().to_string())));
        let _ = write!(html, "<li>{object}{field}{}{}</li>", escape(&diagnostic.message), file.unwrap_or_default());
    }
    html.push_str("</ul></section>");
}

fn http_routes(html: &mut String, view: &Routes) {
    let table = &view.table;
    let _ = write!(html, "<section id=\"http\"><h2>HTTP routes ({})</h2>", table.http.len());
    if table.http.is_empty() && table.default_backend.is_none() {
        html.push_str("<p class=\"muted\">none</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th>host</th><th>path</th><th>backends</th><th>from</th></tr></thead><tbody>");
    for route in &table.http {
        let (path, kind) = match &route.path {
            PathMatch::Exact(p) => (p, "exact"),
            PathMatch::Prefix(p) => (p, "prefix"),
            PathMatch::Segments(p) => (p, "path prefix"),
        };
        let _ = write!(
            html,
            "<tr><td data-label=\"host\"><code>{}</code></td><td data-label=\"path\"><code>{}</code> \
             <span class=\"muted\">{kind}</span></td>",
            escape(&route.host),
            escape(path),
        );
        backends_and_source(html, view, &route.backends, &route.source);
    }
    if let Some(default) = &table.default_backend {
        html.push_str(
            "<tr><td data-label=\"host\" class=\"muted\">any other</td><td data-label=\"path\" class=\"muted\">\
             default backend</td>",
        );
        backends_and_source(html, view, &default.backends, &default.source);
    }
    html.push_str("</tbody></table></section>");
}

fn tcp_routes(html: &mut String, view: &Routes) {
    let table = &view.table;
    let _ = write!(html, "<section id=\"tcp\"><h2>TCP routes ({})</h2>", table.tcp.len());
    if table.tcp.is_empty() {
        html.push_str("<p class=\"muted\">none</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th>port</th><th>address</th><th>backends</th><th>from</th></tr></thead><tbody>");
    for route in &table.tcp {
        let address = view.addresses.iter().find(|a| a.port == route.port && a.route.starts_with("tcp"));
        let _ = write!(
            html,
            "<tr><td data-label=\"port\"><code>{}</code></td><td data-label=\"address\"><code>{}</code></td>",
            route.port,
            escape(address.map_or("", |a| a.address.as_str())),
        );
        backends_and_source(html, view, &route.backends, &route.source);
    }
    html.push_str("</tbody></table></section>");
}

fn tls_routes(html: &mut String, view: &Routes) {
    let table = &view.table;
    let _ = write!(html, "<section id=\"tls\"><h2>TLS passthrough routes ({})</h2>", table.tls.len());
    if table.tls.is_empty() {
        html.push_str("<p class=\"muted\">none</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th>server name</th><th>backends</th><th>from</th></tr></thead><tbody>");
    for route in &table.tls {
        let _ = write!(html, "<tr><td data-label=\"server name\"><code>{}</code></td>", escape(&route.sni));
        backends_and_source(html, view, &route.backends, &route.source);
    }
    html.push_str("</tbody></table></section>");
}

/// The backends cell (each Service with its weight and endpoints: those in the table healthy, those the health
/// checks took out shown as such) and the source cell, ending the row.
fn backends_and_source(html: &mut String, view: &Routes, backends: &[Backend], source: &Source) {
    html.push_str("<td data-label=\"backends\">");
    for backend in backends {
        let weight = if backends.len() > 1 {
            format!(" <span class=\"muted\">weight {}</span>", backend.weight)
        } else {
            String::new()
        };
        let _ = write!(html, "<div class=\"backend\"><code>{}</code>{weight} → ", escape(&backend.service));
        let out: Vec<_> = view.health.iter().filter(|h| h.service == backend.service && !h.healthy).collect();
        if backend.endpoints.is_empty() && out.is_empty() {
            html.push_str("<span class=\"bad\">no endpoint</span>");
        }
        for endpoint in &backend.endpoints {
            let _ = write!(
                html,
                "<span class=\"endpoint ok\" title=\"healthy\">✓ <code>{}</code></span>",
                endpoint.address
            );
        }
        for health in out {
            let reason = health.last_failure.as_deref().unwrap_or("failed its health check");
            let _ = write!(
                html,
                "<span class=\"endpoint bad\" title=\"{}\">✗ <code>{}</code> out of rotation</span>",
                escape(reason),
                health.address,
            );
        }
        html.push_str("</div>");
    }
    let _ = write!(html, "</td><td data-label=\"from\">{}</td></tr>", escape(&source.to_string()));
}

fn port_ranges(html: &mut String, view: &Routes) {
    if view.port_ranges.is_empty() {
        return;
    }
    html.push_str(
        "<section id=\"ports\"><h2>Port ranges</h2><table><thead><tr><th>PortAllocation</th><th>range</th>\
         <th>host</th><th>in use</th></tr></thead><tbody>",
    );
    for range in &view.port_ranges {
        let total = range.allocated + range.free;
        let percent = (range.allocated * 100).checked_div(total).unwrap_or(0);
        let _ = write!(
            html,
            "<tr><td data-label=\"PortAllocation\">{}</td><td data-label=\"range\"><code>{}</code></td>\
             <td data-label=\"host\"><code>{}</code></td><td data-label=\"in use\">{} of {total} ({} free)\
             <div class=\"bar\"><span style=\"width:{percent}%\"></span></div></td></tr>",
            escape(&range.allocation),
            range.range(),
            escape(&range.host),
            range.allocated,
            range.free,
        );
    }
    html.push_str("</tbody></table></section>");
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
