//! The session table the management plane uses (dataplane `sessions` module), exercised in-process against a
//! running dataplane with real TCP connections: listing sessions with their negotiated parameters and connections,
//! force_close of one session or of a target's sessions, and logout requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, RawConn};
use polltgt_bdev::RamBdev;
use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
use polltgt_dataplane::registry::Registry;
use polltgt_dataplane::server::{PortalConfig, Server};
use polltgt_dataplane::sessions::SessionsError;
use polltgt_hugepages::{BufPool, PoolConfig, RegionOptions};
use polltgt_iscsi::params::{Digest, SessionType, TargetParams};
use polltgt_iscsi::wire::Header;
use polltgt_scsi::LuConfig;

const T1: &str = "iqn.2026-11.io.polltgt:sessions-1";
const T2: &str = "iqn.2026-11.io.polltgt:sessions-2";
const LIMIT: Duration = Duration::from_secs(20);

fn server() -> Server {
    let registry = Registry::new();
    let bdev = Arc::new(RamBdev::new("ram0", 512, 8192, &RegionOptions::default()).expect("ram bdev"));
    registry.add_device("ram0", bdev, LuConfig { num_blocks: 8192, ..LuConfig::default() }).expect("device");
    let params = TargetParams {
        header_digest: vec![Digest::Crc32c, Digest::None],
        nop_in_interval: None,
        ..TargetParams::default()
    };
    for t in [T1, T2] {
        registry.add_target(t, None, params.clone(), true).expect("target");
        registry.add_lun(t, 0, "ram0").expect("lun");
    }
    let portals = [PortalConfig { addr: "127.0.0.1:0".parse().expect("addr"), tpgt: 7 }];
    let cfg = ReactorConfig { count: 2, cpus: Vec::new(), pin: false, idle: IdleMode::default() };
    Server::start(registry, &portals, &cfg, BufPool::new(PoolConfig::default()).expect("pool")).expect("server")
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn list_and_force_close_sessions() {
    let srv = server();
    let addr = srv.portals()[0].addr.to_string();
    let sessions = srv.registry().sessions();
    let mut a = RawConn::connect(&addr);
    a.login(Some(T1), &["HeaderDigest=CRC32C", "MaxRecvDataSegmentLength=65536"]);
    let mut b = RawConn::connect(&addr);
    b.isid[5] = 2;
    b.login(Some(T1), &[]);
    let mut c = RawConn::connect(&addr);
    c.isid[5] = 3;
    c.login(Some(T2), &[]);
    let mut d = RawConn::connect(&addr);
    d.login(None, &[]);
    wait_until("four sessions", || sessions.len() == 4);

    let list = sessions.list();
    let sa = list.iter().find(|s| s.tsih == a.tsih).expect("a listed");
    assert_eq!(sa.initiator_name, raw::INITIATOR);
    assert_eq!(sa.target_name.as_deref(), Some(T1));
    assert_eq!(sa.isid, a.isid);
    assert_eq!(sa.session_type, SessionType::Normal);
    assert_eq!(sa.params.header_digest, Digest::Crc32c);
    assert_eq!(sa.params.max_xmit_data_segment_length, 65536);
    assert_eq!(sa.connections.len(), 1);
    assert_eq!(sa.connections[0].local.to_string(), addr);
    assert_eq!(sa.connections[0].tpgt, 7);
    assert!(!sa.reinstating);
    let reactors: std::collections::HashSet<usize> = list.iter().map(|s| s.connections[0].reactor).collect();
    assert_eq!(reactors.len(), 2, "connections are spread over both reactors");
    let disc = list.iter().find(|s| s.tsih == d.tsih).expect("discovery listed");
    assert_eq!((disc.session_type, disc.target_name.as_deref()), (SessionType::Discovery, None));
    assert_eq!(sessions.for_target(T1).len(), 2);
    assert_eq!(sessions.count_for(T1, None), 2);
    assert_eq!(sessions.get(c.tsih).map(|s| s.target_name), Some(Some(T2.to_string())));

    // force_close of one session: its connection is closed and it leaves the table.
    let closed = sessions.force_close(a.tsih).expect("force_close");
    assert_eq!(closed.tsih, a.tsih);
    assert!(a.closed_within(LIMIT), "force_close must close the connection");
    wait_until("a to leave the table", || !sessions.contains(a.tsih));
    assert_eq!(sessions.force_close(a.tsih), Err(SessionsError::NoSuchSession(a.tsih)));
    // The others go on.
    let itt = b.ping(b"b");
    b.recv_until("NOP-In", |h| matches!(h, Header::NopIn(n) if n.itt == itt));
    // force_close of a target's sessions.
    assert_eq!(sessions.force_close_target(T2), 1);
    assert!(c.closed_within(LIMIT));
    wait_until("c to leave the table", || sessions.for_target(T2).is_empty());
    assert_eq!(sessions.for_target(T1).len(), 1);

    // A logout request reaches the remaining normal session; the discovery session is closed.
    assert!(sessions.request_logout_all(Duration::from_secs(5)));
    let p = b.recv();
    assert!(matches!(&p.header, Header::AsyncMessage(m) if m.event == 1 && m.param3 == 5), "{:?}", p.header);
    assert!(d.closed_within(LIMIT), "discovery sessions are closed, not asked");
    assert_eq!(b.logout(), 0);
    wait_until("an empty table", || sessions.is_empty());
    srv.shutdown();
}

#[test]
fn reinstatement_marks_and_replaces_the_old_session() {
    let srv = server();
    let addr = srv.portals()[0].addr.to_string();
    let sessions = srv.registry().sessions();
    let mut old = RawConn::connect(&addr);
    old.login(Some(T1), &[]);
    wait_until("the first session", || sessions.len() == 1);
    let mut new = RawConn::connect(&addr);
    new.login(Some(T1), &[]);
    assert_ne!(old.tsih, new.tsih);
    assert!(old.closed_within(LIMIT));
    wait_until("only the new session", || sessions.list().iter().map(|s| s.tsih).collect::<Vec<_>>() == vec![new.tsih]);
    srv.shutdown();
}
