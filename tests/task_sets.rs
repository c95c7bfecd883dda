//! Task sets and resets across sessions and reactors, in-process against a running dataplane with real TCP
//! connections and a block device whose completions the test holds back ("gate"):
//! - the Control mode page reports TST 001b (a task set per I_T nexus, as iSCSI-SCST) and the task management
//!   functions behave accordingly: CLEAR TASK SET and ABORT TASK SET abort the requester's tasks only, without
//!   COMMANDS CLEARED BY ANOTHER INITIATOR for anyone;
//! - LOGICAL UNIT RESET aborts every session's tasks on the LU, and its response goes out only after the tasks of
//!   the sessions on the other reactor have really finished at the device (none of them answers afterwards);
//! - a reset that the other reactors do not acknowledge within the (here shortened) limit is answered FUNCTION
//!   REJECTED, and the aborted tasks still never answer.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, RawConn, RecvError};
use polltgt_bdev::{Bdev, BdevError, BdevInfo, Channel, Completion, Io, NullBdev};
use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
use polltgt_dataplane::registry::Registry;
use polltgt_dataplane::server::{PortalConfig, Server};
use polltgt_hugepages::{BufPool, PoolConfig};
use polltgt_iscsi::params::TargetParams;
use polltgt_iscsi::wire::{Header, TaskMgmtRequest};
use polltgt_iscsi::SerialNumber;
use polltgt_scsi::LuConfig;

const TARGET: &str = "iqn.2026-11.io.polltgt:task-sets";
const LIMIT: Duration = Duration::from_secs(20);
/// How long the test lets the target show it does not answer (an answer here would be a bug; none is the normal case).
const QUIET: Duration = Duration::from_millis(700);

/// A null device whose completions are held back while the gate is closed.
struct GateBdev {
    inner: NullBdev,
    gate: Gate,
}

/// The gate and its counters, shared by the device's channels and the test.
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<AtomicBool>,
    submitted: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
}

struct GateChannel {
    inner: Box<dyn Channel>,
    gate: Gate,
}

impl Bdev for GateBdev {
    fn info(&self) -> BdevInfo {
        self.inner.info()
    }
    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        Ok(Box::new(GateChannel { inner: self.inner.open_channel()?, gate: self.gate.clone() }))
    }
}

impl Channel for GateChannel {
    fn submit(&mut self, io: Io) {
        self.gate.submitted.fetch_add(1, Ordering::AcqRel);
        self.inner.submit(io);
    }
    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        if self.gate.closed.load(Ordering::Acquire) {
            return 0;
        }
        let n = self.inner.poll(done);
        self.gate.completed.fetch_add(n, Ordering::AcqRel);
        n
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

struct Setup {
    srv: Server,
    addr: String,
    gate: Gate,
}

impl Setup {
    fn close_gate(&self) {
        self.gate.closed.store(true, Ordering::Release);
    }

    /// Opens the gate and waits until the device completed everything held back (the driver has seen the
    /// completions by the time the connection answers anything sent afterwards).
    fn open_gate_and_drain(&self) {
        self.gate.closed.store(false, Ordering::Release);
        wait_until("the held I/Os to complete", || {
            self.gate.completed.load(Ordering::Acquire) >= self.gate.submitted.load(Ordering::Acquire)
        });
    }
}

/// `reactors` reactors, one target with LUN 0 on the gated device; InitialR2T so a write waits for its Data-Out.
fn setup(reactors: usize) -> Setup {
    let registry = Registry::new();
    let gate = Gate::default();
    let bdev = GateBdev { inner: NullBdev::new("gate0", 512, 8192).expect("null"), gate: gate.clone() };
    registry.add_device("gate0", Arc::new(bdev), LuConfig { num_blocks: 8192, ..LuConfig::default() }).expect("device");
    let params = TargetParams { initial_r2t: true, nop_in_interval: None, ..TargetParams::default() };
    registry.add_target(TARGET, None, params, true).expect("target");
    registry.add_lun(TARGET, 0, "gate0").expect("lun");
    let cfg = ReactorConfig { count: reactors, cpus: Vec::new(), pin: false, idle: IdleMode::default() };
    let pool = BufPool::new(PoolConfig::default()).expect("pool");
    let portals = [PortalConfig { addr: "127.0.0.1:0".parse().expect("addr"), tpgt: 1 }];
    let srv = Server::start(registry, &portals, &cfg, pool).expect("server");
    let addr = srv.portals()[0].addr.to_string();
    Setup { srv, addr, gate }
}

/// Two sessions of the same initiator (different ISIDs), on different reactors when there are several
/// (connections are spread round robin).
fn two_sessions(s: &Setup) -> (RawConn, RawConn) {
    let mut a = RawConn::connect(&s.addr);
    a.login(Some(TARGET), &["InitialR2T=Yes"]);
    a.clear_unit_attention();
    let mut b = RawConn::connect(&s.addr);
    b.isid[5] = 2;
    b.login(Some(TARGET), &["InitialR2T=Yes"]);
    b.clear_unit_attention();
    let list = s.srv.registry().sessions().list();
    let reactor = |tsih: u16| list.iter().find(|x| x.tsih == tsih).map(|x| x.connections[0].reactor);
    let several = s.srv.registry().reactors().len() > 1;
    assert_eq!(reactor(a.tsih) != reactor(b.tsih), several, "one session per reactor: {list:?}");
    (a, b)
}

/// A write of 8 blocks waiting for its Data-Out: (ITT, TTT of its R2T).
fn pending_write(c: &mut RawConn, lba: u32) -> (u32, u32) {
    let (itt, h) = c.scsi(&raw::write10(lba, 8), 4096, false, true, true);
    c.send(h, &[]);
    let p = c.recv();
    let Header::R2t(r) = p.header else { panic!("expected an R2T, got {:?}", p.header) };
    (itt, r.ttt)
}

fn data_out(c: &mut RawConn, itt: u32, ttt: u32) {
    let d = c.data_out(itt, ttt, 0);
    c.send(d, &[0x5a; 4096]);
}

/// Nothing answers before a ping's echo (the target answers in order on one connection).
fn nothing_before_ping(c: &mut RawConn, what: &str) {
    let ping = c.ping(b"");
    let p = c.recv();
    assert!(matches!(&p.header, Header::NopIn(n) if n.itt == ping), "{what}: {:?}", p.header);
}

/// Sends a task management request (LUN 0) without waiting for its response; returns its ITT.
fn send_tmf(c: &mut RawConn, function: u8) -> u32 {
    let itt = c.itt();
    let h = Header::TaskMgmtRequest(TaskMgmtRequest {
        immediate: true,
        function: 0x80 | function,
        lun: 0,
        itt,
        rtt: 0xffff_ffff,
        cmd_sn: SerialNumber(c.cmd_sn),
        exp_stat_sn: SerialNumber(c.exp_stat_sn),
        ref_cmd_sn: SerialNumber(0),
        exp_data_sn: SerialNumber(0),
    });
    c.send(h, &[]);
    itt
}

fn tmf_response(c: &mut RawConn, itt: u32) -> u8 {
    let p = c.recv_until("TMF Response", |h| matches!(h, Header::TaskMgmtResponse(r) if r.itt == itt));
    let Header::TaskMgmtResponse(r) = p.header else { unreachable!() };
    r.response
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A READ of 8 blocks that reaches the (closed) gate; returns its ITT.
fn read_at_the_device(s: &Setup, c: &mut RawConn) -> u32 {
    let before = s.gate.submitted.load(Ordering::Acquire);
    let (itt, h) = c.scsi(&raw::read10(0, 8), 4096, true, false, true);
    c.send(h, &[]);
    wait_until("the READ at the device", || s.gate.submitted.load(Ordering::Acquire) > before);
    itt
}

#[test]
fn clear_task_set_and_abort_task_set_act_on_the_requesting_nexus_only() {
    let s = setup(2);
    let (mut a, mut b) = two_sessions(&s);
    // MODE SENSE(6), Control mode page: TST (byte 2 of the page, bits 7..5) is 001b, TAS (byte 5 bit 6) is 0.
    let (itt, h) = a.scsi(&[0x1a, 0x08, 0x0a, 0, 255, 0], 255, true, false, true);
    a.send(h, &[]);
    let p = a.recv_until("MODE SENSE data", |h| matches!(h, Header::DataIn(d) if d.itt == itt));
    let page = &p.data[4..];
    assert_eq!(page[0] & 0x3f, 0x0a, "{:02x?}", p.data);
    assert_eq!(page[2] >> 5, 0b001, "TST: a task set per I_T nexus");
    assert_eq!(page[5] & 0x40, 0, "TAS 0");

    for function in [4u8, 2] {
        // B has a write waiting for its data, A too.
        let (b_itt, b_ttt) = pending_write(&mut b, 64);
        let (a_itt, a_ttt) = pending_write(&mut a, 0);
        assert_eq!(a.tmf(function, 0xffff_ffff, 0), 0, "CLEAR TASK SET / ABORT TASK SET ({function})");
        // A's own task is gone: its late Data-Out is dropped, nothing answers.
        data_out(&mut a, a_itt, a_ttt);
        nothing_before_ping(&mut a, "the aborted write must not answer");
        // B's task set is its own: its write goes on and succeeds.
        data_out(&mut b, b_itt, b_ttt);
        let p = b.recv_until("the write's status", |h| matches!(h, Header::ScsiResponse(r) if r.itt == b_itt));
        assert!(matches!(&p.header, Header::ScsiResponse(r) if r.status == 0), "{:?}", p.header);
        // No COMMANDS CLEARED BY ANOTHER INITIATOR (2F/00) nor anything else for either nexus.
        assert_eq!(b.test_unit_ready(), (0, 0, 0, 0));
        assert_eq!(a.test_unit_ready(), (0, 0, 0, 0));
    }
    s.srv.shutdown();
}

#[test]
fn logical_unit_reset_answers_after_the_other_reactors_tasks_are_aborted() {
    let s = setup(2);
    let (mut a, mut b) = two_sessions(&s);
    // B (the other reactor) has a READ at the device and a write waiting for data.
    s.close_gate();
    let b_read = read_at_the_device(&s, &mut b);
    let (b_write, b_ttt) = pending_write(&mut b, 64);
    let reset = send_tmf(&mut a, 5);
    // The reset cannot complete while B's READ is still at the device.
    match a.recv_within(QUIET) {
        Err(RecvError::Timeout) => {}
        other => panic!("the LOGICAL UNIT RESET answered before the other session's task was done: {other:?}"),
    }
    s.open_gate_and_drain();
    assert_eq!(tmf_response(&mut a, reset), 0, "LOGICAL UNIT RESET: function complete");
    // Neither of B's tasks answers, now or after a late Data-Out; B sees the reset's unit attention.
    data_out(&mut b, b_write, b_ttt);
    nothing_before_ping(&mut b, &format!("the aborted READ {b_read:#x} and write {b_write:#x} must not answer"));
    assert_eq!(b.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    assert_eq!(a.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    assert_eq!(b.test_unit_ready().0, 0);
    s.srv.shutdown();
}

/// On one reactor the reset's own acknowledgement is the last one: the same rules.
#[test]
fn logical_unit_reset_on_a_single_reactor() {
    let s = setup(1);
    let (mut a, mut b) = two_sessions(&s);
    // Without tasks elsewhere the reset completes at once; B sees its unit attention.
    assert_eq!(a.tmf(5, 0xffff_ffff, 0), 0, "LOGICAL UNIT RESET");
    assert_eq!(b.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    // With B's READ at the device it waits for it.
    s.close_gate();
    let b_read = read_at_the_device(&s, &mut b);
    let reset = send_tmf(&mut a, 5);
    match a.recv_within(QUIET) {
        Err(RecvError::Timeout) => {}
        other => panic!("the LOGICAL UNIT RESET answered before the other session's task was done: {other:?}"),
    }
    s.open_gate_and_drain();
    assert_eq!(tmf_response(&mut a, reset), 0);
    nothing_before_ping(&mut b, &format!("the aborted READ {b_read:#x} must not answer"));
    // TARGET WARM RESET likewise.
    assert_eq!(b.tmf(6, 0xffff_ffff, 0), 0, "TARGET WARM RESET");
    assert_eq!(a.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    s.srv.shutdown();
}

#[test]
fn a_reset_not_acknowledged_in_time_is_rejected() {
    let s = setup(2);
    let (mut a, mut b) = two_sessions(&s);
    // A short limit on every reactor (acknowledged before the test goes on).
    let (tx, rx) = std::sync::mpsc::channel();
    for h in s.srv.registry().reactors() {
        let tx = tx.clone();
        h.send(move |st, _| {
            st.set_reset_wait_limit(Duration::from_secs(1));
            let _ = tx.send(());
        });
    }
    for _ in s.srv.registry().reactors() {
        rx.recv_timeout(LIMIT).expect("reactor acknowledged");
    }
    s.close_gate();
    let b_read = read_at_the_device(&s, &mut b);
    assert_eq!(a.tmf(5, 0xffff_ffff, 0), 255, "LOGICAL UNIT RESET stuck behind a device: function rejected");
    s.open_gate_and_drain();
    nothing_before_ping(&mut b, &format!("the aborted READ {b_read:#x} must not answer"));
    assert_eq!(b.test_unit_ready(), (2, 0x06, 0x29, 0x03), "its aborts and unit attentions stand");
    s.srv.shutdown();
}
