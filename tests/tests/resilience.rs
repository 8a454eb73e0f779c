//! Envoy keeps routing by the last good table whatever the controller does: crash, restart, or send garbage.

use std::time::Duration;

use berth_tests::fake_controller::{FakeController, table_routing};
use berth_tests::manifests::{self, Rule};
use berth_tests::{Backend, Controller, Envoy, Stack, admin, wait};

#[test]
fn envoy_keeps_routing_with_the_last_table_while_the_controller_is_down() {
    let (web, later) = (Backend::start("web"), Backend::start("later"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&web, &later]),
        ("web.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)])),
    ];
    let mut stack = Stack::start(&files);
    stack.envoy.wait_for_backend("web.example", "/", "web");

    stack.controller.kill();
    // The fetcher has noticed once its reconnects fail.
    wait::until("the fetcher to fail reaching the controller", Duration::from_secs(10), || {
        (admin::stat(stack.envoy.admin, "cluster.berth_controller.upstream_cx_connect_fail") >= 2).then_some(())
    });
    for _ in 0..20 {
        assert_eq!(stack.envoy.get("web.example", "/").header("x-backend"), Some("web"));
    }

    // A new controller on the same address, with a change made while it was down, is picked up.
    stack
        .manifests
        .write("later.yaml", &manifests::ingress("later", &[Rule("later.example", "/", "Prefix", "later", 80)]));
    stack.controller = Controller::start_on(stack.controller.addr, &stack.manifests.path, stack.work.path());
    stack.envoy.wait_for_backend("later.example", "/", "later");
    assert_eq!(stack.envoy.get("web.example", "/").header("x-backend"), Some("web"));
}

#[test]
fn a_garbage_or_truncated_table_never_replaces_the_last_good_one() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let good = table_routing(10, "web.example", first.addr);
    let fake = FakeController::start(10, good.clone());
    let work = tempfile::tempdir().unwrap();
    let envoy = Envoy::start(fake.addr, work.path());
    envoy.wait_for_backend("web.example", "/", "first");

    let truncated = good[..good.len() / 2].to_vec();
    let wrong_format =
        String::from_utf8(good.clone()).unwrap().replace("berth.table/v1", "berth.table/v0").into_bytes();
    for (bad, version) in [b"\x00\x01 not a table".to_vec(), truncated, wrong_format, Vec::new()].into_iter().zip(11..)
    {
        let at = fake.serve(version, bad);
        // Two more requests mean the fetcher received the bad body, dealt with it, and asked again.
        wait::until("the fetcher to fetch the bad table", Duration::from_secs(10), || {
            (fake.requests() >= at + 2).then_some(())
        });
        for _ in 0..5 {
            assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("first"));
        }
    }

    // The fetcher is still alive: the next good table is taken.
    fake.serve(20, table_routing(20, "web.example", second.addr));
    envoy.wait_for_backend("web.example", "/", "second");
}
