//! The iSNS client (RFC 4171) against a small iSNS server written for the tests: registration of targets, portals
//! and portal groups, discovery-domain access control for SendTargets and logins (with libiscsi's tools using
//! chosen initiator names), changes of discovery domains, and deregistration at shutdown.

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
    // A change of discovery domains takes effect.
    isns.set_dds(&[&[IQN, INIT_A, INIT_C], &[&t2(), INIT_B]]);
    let deadline = std::time::Instant::now() + LIMIT;
    while !listed(&ls(&t, INIT_C), IQN) {
        assert!(std::time::Instant::now() < deadline, "the new discovery domain member never saw the target");
        std::thread::sleep(Duration::from_millis(200));
    }
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
    use polltgt_dataplane::isns::IsnsConfig;
    use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
    use polltgt_dataplane::registry::Registry;
    use polltgt_dataplane::server::{PortalConfig, Server};
    use polltgt_iscsi::access::PortalPattern;
    use polltgt_iscsi::params::TargetParams;

    let isns = IsnsServer::start();
    let registry = Registry::new();
    for t in [IQN.to_string(), t2()] {
        registry.add_target(&t, None, TargetParams::default(), true).expect("target");
    }
    let portals = [PortalConfig { addr: "127.0.0.1:0".parse().expect("addr"), tpgt: 1 }];
    let cfg = ReactorConfig { count: 1, cpus: Vec::new(), pin: false, idle: IdleMode::default() };
    let pool = polltgt_hugepages::BufPool::new(polltgt_hugepages::PoolConfig::default()).expect("pool");
    let server = Server::start(registry.clone(), &portals, &cfg, pool).expect("server");
    // A long interval: only an explicit refresh can make the change visible within the test's wait.
    let isns_cfg = IsnsConfig {
        server: isns.addr.clone(),
        access_control: false,
        interval: Duration::from_secs(3600),
        entity_id: "polltgt:test-entity".into(),
    };
    server.start_isns(isns_cfg).expect("isns client");
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
