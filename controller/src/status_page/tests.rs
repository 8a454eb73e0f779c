use super::*;
use crate::Diagnostic;
use crate::api::SourceStatus;
use crate::compiler::{Assignment, Assignments, Compiled};
use crate::health::EndpointHealth;
use crate::port_ranges::PortRangeView;
use crate::publish::Publisher;

/// The view of a table with one http route (`a.example`), an error and a tcp route's address, as `/v1/routes`
/// would serve it.
fn view() -> Routes {
    let mut publisher = Publisher::new(42);
    let assignment = Assignment {
        object: "VirtualService default/db".into(),
        route: "tcp[0]".into(),
        port: 31000,
        host: Some("t.example".into()),
    };
    let compiled = Compiled {
        diagnostics: vec![
            Diagnostic::new("service \"gone\" not found <here>")
                .object("VirtualService default/broken")
                .field("spec.http[0]"),
        ],
        assignments: Assignments::from([(assignment.key(), assignment)]),
        ..crate::publish::tests::compiled(&["a.example"], &[])
    };
    publisher.publish(compiled, vec![EndpointHealth::unhealthy_example()]);
    publisher.set_sources(vec![SourceStatus {
        name: "kube (cluster alpha)".into(),
        stale: true,
        since: Some("2025-01-01T00:00:00Z".into()),
        error: Some("connection refused".into()),
    }]);
    publisher.set_port_ranges(vec![PortRangeView {
        allocation: "tcp".into(),
        host: "t.example".into(),
        start: 31000,
        end: 31009,
        allocated: 1,
        free: 9,
    }]);
    routes_view(&publisher.subscribe().borrow()).unwrap()
}

#[test]
fn shows_the_version_routes_errors_sources_and_port_ranges() {
    let html = render(&view());
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<code id=\"version\">42</code>"), "{html}");
    assert!(html.contains("<code>a.example</code>"), "{html}");
    assert!(html.contains("<b>VirtualService default/broken</b>: <code>spec.http[0]</code>"), "{html}");
    assert!(
        html.contains("kube (cluster alpha)</code> stale since 2025-01-01T00:00:00Z: connection refused"),
        "{html}"
    );
    assert!(html.contains("1 of 10 (9 free)"), "{html}");
    assert!(html.contains("<meta http-equiv=\"refresh\""), "reloads itself");
    assert!(html.contains("name=\"viewport\""), "sized for phones");
}

#[test]
fn escapes_what_users_wrote() {
    let html = render(&view());
    assert!(html.contains("not found &lt;here&gt;"), "{html}");
    assert!(!html.contains("<here>"));
}

#[test]
fn shows_endpoints_out_of_rotation_with_their_backend() {
    let mut view = view();
    let unhealthy = EndpointHealth::unhealthy_example();
    let healthy = berth_table::Endpoint { address: ([127, 0, 0, 1], 2).into() };
    let backend = Backend { service: unhealthy.service.clone(), weight: 1, endpoints: vec![healthy] };
    view.table.http[0].backends.push(backend);
    let html = render(&view);
    assert!(html.contains(&format!("✗ <code>{}</code> out of rotation", unhealthy.address)), "{html}");
    assert!(html.contains("✓ <code>127.0.0.1:2</code>"), "{html}");
}

#[test]
fn escape_covers_markup_and_quotes() {
    assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}
