//! The iSNS client (RFC 4171) against a small iSNS server written for the tests: registration of targets, portals
//! and portal groups, discovery-domain access control for SendTargets and logins (with libiscsi's tools using
//! chosen initiator names), changes of discovery domains delivered by State Change Notifications (and by polling
//! when the server has no SCN support), Entity Status Inquiries, and deregistration at shutdown.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::isns_server::IsnsServer;
use common::{run, run_ok, Target, IQN};

const LIMIT: Duration = Duration::from_secs(30);
const INIT_A: &str = "iqn.2026-11.io.polltgt:init-a";
const INIT_B: &str = "iqn.2026-11.io.polltgt:init-b";
const INIT_C: &str = "iqn.2026-11.io.polltgt:init-c";

fn t2() -> String {
    format!("{IQN}-2")
}

fn start(isns: &IsnsServer, access_control: bool) -> Target {
    let ac = if access_control { " AccessControl" } else { "" };
    let yaml = [
        "portals:".to_string(),
        "  - { address: \"127.0.0.1:0\", tpgt: 3 }".into(),
        "iscsi:".into(),
        format!("  iSNSServer: \"{}{ac}\"", isns.addr),
        "devices:".into(),
        "  - { name: ram0, handler: ram, size: 16M }".into(),
        "targets:".into(),
        format!("  - name: {IQN}"),
        "    luns: [ { lun: 0, device: ram0 } ]".into(),
        format!("  - name: {}", t2()),
        "    luns: [ { lun: 0, device: ram0 } ]".into(),
        String::new(),
    ]
    .join("\n");
    Target::start_with_yaml(tempfile::tempdir().expect("tempdir"), &yaml)
}

fn ls(t: &Target, initiator: &str) -> String {
    run_ok("iscsi-ls", &["-i", initiator, &format!("iscsi://{}", t.addr)], LIMIT)
}

fn listed(out: &str, target: &str) -> bool {
    out.lines().any(|l| l.contains(&format!("Target:{target} ")))
}

#[test]
fn registration_access_control_and_deregistration() {
    let isns = IsnsServer::start();
    isns.set_dds(&[&[IQN, INIT_A], &[&t2(), INIT_B]]);
    let mut t = start(&isns, true);
    let port: u16 = t.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    // Both targets, the portal and the portal groups (with the TPGT) are registered, as iSCSI targets.
    isns.wait("the registration", LIMIT, |s| s.nodes.len() == 2);
    {
        let s = isns.state.lock().expect("state");
        assert!(s.nodes.values().all(|n| n.node_type == 1 && n.entity.starts_with("polltgt:")), "{s:?}");
        assert!(s.portals.contains(&(lo, port)), "{s:?}");
        assert!(s.portal_groups.contains(&(IQN.to_string(), lo, port, 3)), "{s:?}");
        assert!(s.portal_groups.contains(&(t2(), lo, port, 3)), "{s:?}");
    }
    // Access control: each initiator sees (and reaches) only the targets of its discovery domains. The target asks
    // the server for each target's domains; wait until the answers are in force.
    isns.wait("the discovery-domain queries", LIMIT, |s| {
        s.requests
            .iter()
            .filter(|(f, _)| *f == 2)
            .map(|(_, src)| src.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 2
    });
    let deadline = std::time::Instant::now() + LIMIT;
    while !(listed(&ls(&t, INIT_A), IQN) && listed(&ls(&t, INIT_B), &t2())) {
        assert!(std::time::Instant::now() < deadline, "the discovery domains never took effect");
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = ls(&t, INIT_A);
    assert!(listed(&a, IQN) && !listed(&a, &t2()), "{a}");
    let b = ls(&t, INIT_B);
    assert!(!listed(&b, IQN) && listed(&b, &t2()), "{b}");
    let c = ls(&t, INIT_C);
    assert!(!listed(&c, IQN) && !listed(&c, &t2()), "{c}");
    let inq = run_ok("iscsi-inq", &["-i", INIT_A, &t.url(0)], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    let refused = run("iscsi-inq", &["-i", INIT_B, &t.url(0)], LIMIT);
    assert!(!refused.status.success(), "an initiator outside the target's discovery domains must not log in");
    let err = String::from_utf8_lossy(&refused.stderr).into_owned() + &String::from_utf8_lossy(&refused.stdout);
    // As iSCSI-SCST answers a login outside the discovery domains (isns_scn_access_allowed): "target not found".
    assert!(err.to_lowercase().contains("not found"), "expected \"target not found\": {err}");
    // A change of discovery domains takes effect: the server notifies the target (SCN to its SCN port), which
    // answers and queries again. (With SCNs in force the target polls only every 60 s, longer than this test's
    // wait.)
    isns.wait("the SCN registrations", LIMIT, |s| s.scn_registrations.len() == 2);
    assert_eq!(isns.set_dds(&[&[IQN, INIT_A, INIT_C], &[&t2(), INIT_B]]), 1, "one SCN, to the first target");
    let deadline = std::time::Instant::now() + LIMIT;
    while !listed(&ls(&t, INIT_C), IQN) {
        assert!(std::time::Instant::now() < deadline, "the new discovery domain member never saw the target");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(t.wait_for_log("iSNS state change notification", LIMIT), "{}", t.output());
    // Shutdown deregisters both targets and the entity.
    t.terminate();
    isns.wait("the deregistration", LIMIT, |s| s.nodes.is_empty() && s.deregistered.len() >= 2);
    assert!(isns.state.lock().expect("state").entities_deregistered.iter().all(|e| e.starts_with("polltgt:")));
    assert!(t.wait_exit(LIMIT).is_some_and(|s| s.success()), "{}", t.output());
}

#[test]
fn without_access_control_everyone_sees_every_target() {
    let isns = IsnsServer::start();
    isns.set_dds(&[&[IQN, INIT_A]]);
    let t = start(&isns, false);
    isns.wait("the registration", LIMIT, |s| s.nodes.len() == 2);
    let c = ls(&t, INIT_C);
    assert!(listed(&c, IQN) && listed(&c, &t2()), "{c}");
    assert!(
        !isns.state.lock().expect("state").requests.iter().any(|(f, _)| *f == 2),
        "no discovery-domain queries without AccessControl"
    );
}

#[test]
fn an_unreachable_isns_server_fails_closed_with_access_control() {
    // Nothing listens on this port (bound then dropped): no answer ever comes, so no initiator may reach a target.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let isns = IsnsServer { addr: format!("127.0.0.1:{port}"), state: Default::default() };
    let t = start(&isns, true);
    let a = ls(&t, INIT_A);
    assert!(!listed(&a, IQN), "{a}");
    assert!(t.wait_for_log("iSNS round failed", LIMIT), "{}", t.output());
}

#[test]
fn a_target_that_becomes_unavailable_is_deregistered_at_once() {
    use polltgt_iscsi::access::PortalPattern;

    let isns = IsnsServer::start();
    // A long interval: only an explicit refresh can make the change visible within the test's wait.
    let (server, registry) = in_process(&isns, Duration::from_secs(3600), false, "polltgt:test-entity");
    isns.wait("the registration", LIMIT, |s| s.nodes.len() == 2);
    // No portal left for the second target: it goes away from the iSNS server.
    let mut nowhere = (*registry.target(&t2()).expect("target")).clone();
    nowhere.allowed_portals = vec![PortalPattern::parse("!*").expect("pattern")];
    registry.put_target(nowhere);
    server.isns().refresh();
    isns.wait("the deregistration of the second target", LIMIT, |s| {
        s.deregistered == vec![t2()] && s.nodes.keys().cloned().collect::<Vec<_>>() == vec![IQN.to_string()]
    });
    server.shutdown();
    isns.wait("the deregistration of the entity", LIMIT, |s| {
        s.nodes.is_empty() && s.entities_deregistered == vec!["polltgt:test-entity".to_string()]
    });
}

/// An in-process target with two target nodes, registered with `isns` as `entity`, polling every `interval`.
fn in_process(
    isns: &IsnsServer,
    interval: Duration,
    access_control: bool,
    entity: &str,
) -> (polltgt_dataplane::server::Server, std::sync::Arc<polltgt_dataplane::registry::Registry>) {
    use polltgt_dataplane::isns::IsnsConfig;
    use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
    use polltgt_dataplane::registry::Registry;
    use polltgt_dataplane::server::{PortalConfig, Server};
    use polltgt_iscsi::params::TargetParams;

    let registry = Registry::new();
    for t in [IQN.to_string(), t2()] {
        registry.add_target(&t, None, TargetParams::default(), true).expect("target");
    }
    let portals = [PortalConfig { addr: "127.0.0.1:0".parse().expect("addr"), tpgt: 1 }];
    let cfg = ReactorConfig { count: 1, cpus: Vec::new(), pin: false, idle: IdleMode::default() };
    let pool = polltgt_hugepages::BufPool::new(polltgt_hugepages::PoolConfig::default()).expect("pool");
    let server = Server::start(registry.clone(), &portals, &cfg, pool).expect("server");
    let isns_cfg = IsnsConfig {
        server: isns.addr.clone(),
        access_control,
        interval,
        entity_id: entity.into(),
    };
    server.start_isns(isns_cfg).expect("isns client");
    (server, registry)
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn state_change_notifications_apply_discovery_domain_changes_and_esi_is_answered() {
    let isns = IsnsServer::start();
    isns.set_dds(&[&[IQN, INIT_A], &[&t2(), INIT_B]]);
    let (server, registry) = in_process(&isns, Duration::from_secs(3600), true, "polltgt:scn-entity");
    // Every portal registers its SCN and ESI port; each target registers for SCNs about initiators (object
    // updated/added/removed, initiator and self information only), never for management-only events.
    isns.wait("the SCN registrations", LIMIT, |s| s.scn_registrations.len() == 2);
    {
        let s = isns.state.lock().expect("state");
        assert!(s.scn_registrations.values().all(|b| *b == 0x9c), "{s:?}");
        assert_eq!(s.scn_ports.get("polltgt:scn-entity").map(|p| p.len()), Some(1), "{s:?}");
        assert_eq!(s.esi_ports.get("polltgt:scn-entity"), s.scn_ports.get("polltgt:scn-entity"), "{s:?}");
    }
    let acl = registry.isns();
    wait_for("the first discovery-domain answers", || acl.allows(IQN, INIT_A) && acl.allows(&t2(), INIT_B));
    assert!(!acl.allows(IQN, INIT_C));
    // INIT_C joins the first target's domain and INIT_A leaves it: one SCN, answered, and the change applies
    // although the client would not poll for an hour.
    assert_eq!(isns.set_dds(&[&[IQN, INIT_C], &[&t2(), INIT_B]]), 1);
    assert_eq!(isns.state.lock().expect("state").scns_sent, vec![(IQN.to_string(), 0, IQN.to_string())]);
    wait_for("INIT_C to reach the first target", || acl.allows(IQN, INIT_C) && !acl.allows(IQN, INIT_A));
    assert!(acl.allows(&t2(), INIT_B), "the other target's domain is unchanged");
    // An Entity Status Inquiry is answered with success, echoing the inquiry's attributes.
    assert_eq!(isns.esi(), vec![(0, true)]);
    // A target added later is registered (refresh), registers for SCNs too, and so do the others again after
    // the replacing registration.
    registry
        .add_target(&format!("{IQN}-3"), None, polltgt_iscsi::params::TargetParams::default(), true)
        .expect("target");
    server.isns().refresh();
    isns.wait("three SCN registrations", LIMIT, |s| s.scn_registrations.len() == 3);
    assert_eq!(isns.set_dds(&[&[IQN, INIT_C], &[&t2(), INIT_B], &[&format!("{IQN}-3"), INIT_A]]), 1);
    wait_for("INIT_A to reach the third target", || acl.allows(&format!("{IQN}-3"), INIT_A));
    server.shutdown();
    isns.wait("the deregistration", LIMIT, |s| s.nodes.is_empty());
}

#[test]
fn a_server_without_scn_support_is_polled() {
    let isns = IsnsServer::start();
    isns.state.lock().expect("state").scn_unsupported = true;
    isns.set_dds(&[&[IQN, INIT_A]]);
    let (server, registry) = in_process(&isns, Duration::from_millis(200), true, "polltgt:scn-entity");
    let acl = registry.isns();
    wait_for("the first discovery-domain answers", || acl.allows(IQN, INIT_A));
    assert_eq!(isns.set_dds(&[&[IQN, INIT_B]]), 0, "nothing registered for SCNs, nothing notified");
    wait_for("the polled change", || acl.allows(IQN, INIT_B) && !acl.allows(IQN, INIT_A));
    assert!(isns.state.lock().expect("state").requests.iter().any(|(f, _)| *f == 5), "SCNReg was tried");
    server.shutdown();
}
