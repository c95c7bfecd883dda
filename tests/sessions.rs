//! The session table the management plane uses (dataplane `sessions` module), exercised in-process against a
//! running dataplane with real TCP connections: listing sessions with their negotiated parameters and connections,
//! force_close of one session or of a target's sessions, logout requests, and sessions that moved to another
//! reactor after login (session placement).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, RawConn};
use polltgt_bdev::RamBdev;
use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
use polltgt_dataplane::live::Control;
use polltgt_dataplane::registry::{ReactorPolicy, Registry};
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
    let cfg = ReactorConfig { count: 2, cpus: Vec::new(), pin: false, idle: IdleMode::default() };
    server_with(&cfg, BufPool::new(PoolConfig::default()).expect("pool"))
}

fn server_with(cfg: &ReactorConfig, pool: BufPool) -> Server {
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
    Server::start(registry, &portals, cfg, pool).expect("server")
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

/// A target whose sessions must run on the reactor of CPU 1 (its cpu_mask): every session accepted on reactor 0
/// moves there right after its login. The reactor it runs on registers it, so the session table lists it there,
/// the management plane finds its run-time details, commands work, a LOGICAL UNIT RESET through another session
/// aborts its task on the reactor it moved to, reinstatement replaces it and force_close closes it.
#[test]
fn sessions_moved_after_login_are_found_where_they_run() {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("one CPU: no second reactor to move to");
        return;
    }
    let pool = BufPool::new(PoolConfig::default()).expect("pool");
    let cfg = ReactorConfig { count: 2, cpus: vec![0, 1], pin: true, idle: IdleMode::default() };
    let srv = server_with(&cfg, pool.clone());
    srv.registry().set_reactor_policy(T1, ReactorPolicy { cpus: Some(vec![1]), dedicated: false }).expect("policy");
    let addr = srv.portals()[0].addr.to_string();
    let sessions = srv.registry().sessions();
    // Round robin puts one of the two connections on reactor 0: it moves.
    let mut a = RawConn::connect(&addr);
    a.login(Some(T1), &["InitialR2T=Yes"]);
    let mut b = RawConn::connect(&addr);
    b.isid[5] = 2;
    b.login(Some(T1), &["InitialR2T=Yes"]);
    a.clear_unit_attention();
    b.clear_unit_attention();
    wait_until("two sessions", || sessions.len() == 2);
    assert!(
        sessions.list().iter().all(|s| s.connections[0].reactor == 1),
        "both sessions run on the reactor of CPU 1: {:?}",
        sessions.list()
    );
    let control = Control::new(srv.registry().clone(), srv.reactors().to_vec(), pool);
    let snaps = control.sessions().expect("session details");
    assert_eq!(snaps.len(), 2, "the run-time details of moved sessions are found");
    assert!(snaps.iter().all(|s| s.connection.reactor == 1));
    let stats = control.snapshot().expect("statistics");
    assert!(stats.reactors[1].sessions_moved_in >= 1, "{stats:?}");


    // LOGICAL UNIT RESET from a aborts b's write waiting for its Data-Out, silently, on b's (new) reactor.
    let (b_itt, h) = b.scsi(&raw::write10(64, 8), 4096, false, true, true);
    b.send(h, &[]);
    let p = b.recv();
    let Header::R2t(b_r2t) = p.header else { panic!("{:?}", p.header) };
    assert_eq!(a.tmf(5, 0xffff_ffff, 0), 0, "LOGICAL UNIT RESET");
    // The other sessions' tasks are aborted by a message to every reactor; a query of every reactor, queued after
    // it, returns once it has been handled.
    control.sessions().expect("session details");
    let d = b.data_out(b_itt, b_r2t.ttt, 0);
    b.send(d, &[0x66; 4096]);
    let ping = b.ping(b"");
    let p = b.recv();
    assert!(matches!(&p.header, Header::NopIn(n) if n.itt == ping), "the aborted write must not answer: {:?}", p.header);
    assert_eq!(b.test_unit_ready(), (2, 0x06, 0x29, 0x03));

    // Reinstatement (same initiator name and ISID) closes the moved session wherever it runs.
    let mut a2 = RawConn::connect(&addr);
    a2.login(Some(T1), &[]);
    assert!(a.closed_within(LIMIT), "the reinstated session is closed");
    wait_until("a to leave the table", || !sessions.contains(a.tsih));
    assert_eq!(sessions.get(a2.tsih).map(|s| s.connections[0].reactor), Some(1));
    // force_close reaches the reactor the session moved to.
    sessions.force_close(b.tsih).expect("force_close");
    assert!(b.closed_within(LIMIT), "force_close must close the moved session");
    wait_until("b to leave the table", || !sessions.contains(b.tsih));
    assert_eq!(a2.logout(), 0);
    wait_until("an empty table", || sessions.is_empty());
    srv.shutdown();
}
