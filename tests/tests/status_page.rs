//! The controller's status page, rendered by headless Chromium: what a person sees a moment after a change.

use std::time::Duration;

use berth_tests::manifests::{self, HttpRoute, ManifestDir, Rule};
use berth_tests::{Backend, Controller, browser, wait};

#[test]
fn the_status_page_shows_a_route_added_a_moment_before_and_an_error_on_a_broken_object() {
    let web = Backend::start("web");
    let work = tempfile::tempdir().unwrap();
    let dir = ManifestDir::new(&work.path().join("manifests"));
    manifests::write_cluster_and_services(&dir, &[&web]);
    dir.write("shop.yaml", &manifests::ingress("shop", &[Rule("shop.example", "/", "Prefix", "web", 80)]));
    let controller = Controller::start(&dir.path, work.path());
    let url = format!("{}/", controller.url());

    // A route added and an object broken just now: the page shows both as soon as the controller has them.
    dir.write("added.yaml", &manifests::ingress("added", &[Rule("added.example", "/cart", "Prefix", "web", 80)]));
    let broken = manifests::virtual_service("broken", &["broken.example"], &[HttpRoute("prefix", "/", "missing", 80)]);
    dir.write("broken.yaml", &broken);
    wait::until("the new route and the error in /v1/routes", Duration::from_secs(10), || {
        let routes = controller.routes();
        let added = routes["table"]["http"].as_array()?.iter().any(|r| r["host"] == "added.example");
        let broken = controller.errors().iter().any(|e| e.contains("VirtualService default/broken"));
        (added && broken).then_some(())
    });
    let version = controller.routes()["table"]["version"].as_u64().unwrap();

    let dom = browser::dump_dom(&url, 1280, 900);
    let section = |id: &str| -> String {
        let start = dom.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
        let end = dom[start..].find("</section>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_string()
    };
    let http = section("http");
    assert!(http.contains("<code>added.example</code>") && http.contains("<code>/cart</code>"), "{http}");
    assert!(http.contains("Ingress default/added"), "the route names its object: {http}");
    assert!(http.contains(&format!("✓ <code>{}</code>", web.addr)), "its endpoint, healthy: {http}");
    let errors = section("errors");
    assert!(errors.contains("<b>VirtualService default/broken</b>"), "{errors}");
    assert!(errors.contains("missing"), "the error says what is wrong: {errors}");
    assert!(dom.contains(&format!("<code id=\"version\">{version}</code>")), "the table version: {dom}");
    assert!(dom.contains("http-equiv=\"refresh\""), "the page reloads itself");

    // Screenshots for people to look at, phone-sized and desktop-sized.
    for (name, width, height) in [("status-page-phone", 390, 844), ("status-page-desktop", 1280, 900)] {
        let path = browser::screenshot(&url, width, height, name);
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "{} is not a screenshot", path.display());
    }
}
