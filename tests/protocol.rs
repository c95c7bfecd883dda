//! iSCSI protocol behaviour end to end against the real binary: digests (libiscsi and a raw-PDU initiator), digest
//! fault injection, keepalive and timeouts, logout requests on shutdown, session reinstatement across reactors,
//! MaxSessions, login redirection, portals (IPv4 and IPv6, TPGT, allowed_portal) and discovery CHAP.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::{run, run_ok, Target, IQN};
use polltgt_iscsi::wire::{Digests, Header};
use polltgt_iscsi::SerialNumber;

const LIMIT: Duration = Duration::from_secs(30);
/// Bound for waits on the target's timers (all set to a few seconds in these tests).
const TIMERS: Duration = Duration::from_secs(20);

/// One target with a 16 MiB RAM LUN on 127.0.0.1 (port chosen by the kernel); `iscsi` is the driver-level section,
/// `target_extra` more target attributes (indented by 4), `top` more top-level YAML (e.g. reactors).
fn config(top: &str, iscsi: &str, target_extra: &str) -> String {
    format!(
        "{top}portals:\n  - address: \"127.0.0.1:0\"\n{iscsi}devices:\n  - {{ name: ram0, handler: ram, size: 16M }}\n\
         targets:\n  - name: {IQN}\n    luns: [ {{ lun: 0, device: ram0 }} ]\n{target_extra}"
    )
}

fn start(top: &str, iscsi: &str, target_extra: &str) -> Target {
    Target::start_with_yaml(tempfile::tempdir().expect("tempdir"), &config(top, iscsi, target_extra))
}

fn url(t: &Target, query: &str) -> String {
    format!("iscsi://{}/{IQN}/0{query}", t.addr)
}

fn reject_reason(p: &raw::Pdu) -> Option<u8> {
    match &p.header {
        Header::Reject(r) => Some(r.reason),
        _ => None,
    }
}

// ----- digests -----

#[test]
fn header_digest_negotiated_with_libiscsi() {
    // The target's list is the set it accepts; the initiator's order decides among them (RFC 7143 §6.2.2).
    // iscsi-rw -H crc32c offers "CRC32C"; iscsi-inq offers "None,CRC32C".
    let t = start("", "", "    HeaderDigest: \"CRC32C,None\"\n    DataDigest: \"CRC32C,None\"\n");
    let tool = common::iscsi_rw();
    let u = url(&t, "");
    let w = run_ok(&tool, &["-H", "crc32c", "-q", "8", "-b", "64", "-s", "3", &u, "write", "0", "8192"], LIMIT);
    assert!(w.contains("OK"), "{w}");
    let r = run_ok(&tool, &["-H", "crc32c", "-q", "8", "-b", "64", "-s", "3", &u, "verify", "0", "8192"], LIMIT);
    assert!(r.contains("OK"), "{r}");
    assert!(t.wait_for_log("header_digest=Crc32c", LIMIT), "no CRC32C session:\n{}", t.output());
    let inq = run_ok("iscsi-inq", &[&url(&t, "")], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    assert!(t.wait_for_log("header_digest=None", LIMIT), "iscsi-inq prefers None:\n{}", t.output());
    // A target that requires CRC32C gets it from iscsi-inq too.
    let required = start("", "", "    HeaderDigest: CRC32C\n");
    let inq = run_ok("iscsi-inq", &[&url(&required, "")], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    assert!(required.wait_for_log("header_digest=Crc32c", LIMIT), "{}", required.output());
    // A target that only does None refuses an initiator insisting on CRC32C.
    let none = start("", "", "");
    let out = run(&tool, &["-H", "crc32c", &url(&none, ""), "verify", "0", "1"], LIMIT);
    assert!(!out.status.success(), "a login requiring CRC32C must fail against HeaderDigest None");
}

#[test]
fn data_and_header_digests_with_the_raw_initiator() {
    let t = start("", "", "    HeaderDigest: \"CRC32C,None\"\n    DataDigest: \"CRC32C,None\"\n");
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &["HeaderDigest=CRC32C", "DataDigest=CRC32C"]);
    assert_eq!(c.digests, Digests::BOTH);
    c.clear_unit_attention();
    // WRITE 4 blocks with immediate data, READ them back; every PDU received carries valid digests.
    let payload: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
    let (_, h) = c.scsi(&raw::write10(8, 4), 2048, false, true, true);
    c.send(h, &payload);
    let p = c.recv_until("SCSI Response", |h| matches!(h, Header::ScsiResponse(_)));
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.status == 0), "{:?}", p.header);
    assert!(p.header_digest_ok);
    let (_, h) = c.scsi(&raw::read10(8, 4), 2048, true, false, true);
    c.send(h, &[]);
    let p = c.recv_until("Data-In", |h| matches!(h, Header::DataIn(_)));
    assert!(p.header_digest_ok && p.data_digest_ok);
    assert_eq!(p.data, payload);
    // A Data-Out with a corrupted data digest: Reject "data digest error", the PDU discarded, and since ERL 0 has no
    // recovery R2T the task ends with CHECK CONDITION, ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR (RFC 7143 §7.8);
    // the data is never written and the session goes on.
    let (itt, h) = c.scsi(&raw::write10(8, 4), 2048, false, true, true);
    c.send(h, &[]);
    let p = c.recv_until("R2T", |h| matches!(h, Header::R2t(_)));
    let Header::R2t(r2t) = p.header else { unreachable!() };
    assert_eq!((r2t.buffer_offset, r2t.desired_len), (0, 2048));
    let d = c.data_out(itt, r2t.ttt, 0);
    let mut bytes = c.encode(d, &[0xee; 2048]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    c.send_raw(&bytes);
    let p = c.recv();
    assert_eq!(reject_reason(&p), Some(0x02), "{:?}", p.header);
    let p = c.recv();
    let Header::ScsiResponse(r) = &p.header else { panic!("{:?}", p.header) };
    assert_eq!((r.itt, r.status), (itt, 2));
    let sense = &p.data[2..];
    assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x0b, 0x47, 0x05));
    // The blocks still hold the first write.
    let (_, h) = c.scsi(&raw::read10(8, 4), 2048, true, false, true);
    c.send(h, &[]);
    let p = c.recv_until("Data-In", |h| matches!(h, Header::DataIn(_)));
    assert_eq!(p.data, payload, "data with a bad digest must never be acted upon");
    // A corrupted header digest: the target cannot trust the length and drops the connection without an answer.
    let itt = c.itt();
    let ping = Header::NopOut(polltgt_iscsi::wire::NopOut {
        immediate: true,
        lun: 0,
        itt,
        ttt: 0xffff_ffff,
        cmd_sn: SerialNumber(c.cmd_sn),
        exp_stat_sn: SerialNumber(c.exp_stat_sn),
    });
    let mut bytes = c.encode(ping, &[]);
    bytes[50] ^= 0x01;
    c.send_raw(&bytes);
    match c.recv_within(TIMERS) {
        Err(raw::RecvError::Closed) => {}
        other => panic!("expected the connection to close without an answer, got {other:?}"),
    }
}

#[test]
fn digest_fault_injection_hits_both_directions() {
    let t = start(
        "",
        "iscsi:\n  DEBUG_DIGEST_FAILURES: { receive: 3, send: 2 }\n",
        "    HeaderDigest: \"CRC32C,None\"\n    DataDigest: \"CRC32C,None\"\n",
    );
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &["HeaderDigest=CRC32C", "DataDigest=CRC32C"]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let itt = c.ping(b"ping");
        let p = c.recv();
        let what = match &p.header {
            Header::NopIn(n) if n.itt == itt => "nop-in",
            Header::Reject(r) if r.reason == 0x02 => "reject-digest",
            other => panic!("{other:?}"),
        };
        seen.push((what, p.header_digest_ok && p.data_digest_ok));
    }
    // Received PDU 3 is taken as a data digest error; sent PDUs 2 and 4 carry corrupted digests.
    assert_eq!(seen, vec![("nop-in", true), ("nop-in", false), ("reject-digest", true), ("nop-in", false)]);
    // libiscsi notices corrupted digests from the target: with every PDU corrupted it cannot complete a command.
    let all = start("", "iscsi:\n  DEBUG_DIGEST_FAILURES: { send: 1 }\n", "    HeaderDigest: \"CRC32C,None\"\n");
    let tool = common::iscsi_rw();
    // libiscsi drops the connection on a header digest error (and logs in again, which meets the same fate): the
    // command never completes successfully within the bound.
    let status =
        common::run_bounded(&tool, &["-H", "crc32c", &url(&all, ""), "verify", "0", "1"], Duration::from_secs(5));
    assert!(!status.is_some_and(|s| s.success()), "libiscsi accepted PDUs with corrupted header digests");
    assert!(all.wait_for_log("header_digest=Crc32c", LIMIT), "the session ran with CRC32C:\n{}", all.output());
    let ok = run_ok(&tool, &["-H", "none", &url(&all, ""), "write", "0", "1"], LIMIT);
    assert!(ok.contains("OK"), "without digests nothing is corrupted: {ok}");
}

// ----- keepalive and timeouts -----

#[test]
fn nop_in_pings_keep_an_answering_initiator_and_drop_a_silent_one() {
    let t = start("", "", "    NopInInterval: 1\n    NopInTimeout: 2\n");
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &[]);
    for _ in 0..3 {
        let p = c.recv_within(TIMERS).expect("a NOP-In ping");
        let Header::NopIn(n) = p.header else { panic!("{:?}", p.header) };
        assert_eq!(n.itt, 0xffff_ffff, "a target ping has the reserved ITT");
        assert_ne!(n.ttt, 0xffff_ffff, "and asks for an answer");
        c.answer_ping(n.ttt);
    }
    let itt = c.ping(b"still here");
    let p = c.recv_until("NOP-In echo", |h| matches!(h, Header::NopIn(n) if n.itt == itt));
    assert_eq!(p.data, b"still here");
    // Stop answering: the connection is closed after NopInTimeout.
    assert!(c.closed_within(TIMERS), "a silent initiator must be dropped");
    assert!(t.wait_for_log("NopInTimeout", LIMIT), "{}", t.output());
}

#[test]
fn rsp_timeout_closes_a_connection_that_never_sends_its_data() {
    let t = start("", "", "    NopInInterval: 0\n    RspTimeout: 2\n");
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &[]);
    let (_, h) = c.scsi(&raw::write10(0, 8), 4096, false, true, true);
    c.send(h, &[]);
    let p = c.recv();
    assert!(matches!(p.header, Header::R2t(_)), "{:?}", p.header);
    assert!(c.closed_within(TIMERS), "no Data-Out within RspTimeout must close the connection");
    assert!(t.wait_for_log("RspTimeout", LIMIT), "{}", t.output());
}

#[test]
fn login_timeout_closes_silent_and_stalled_logins_but_not_sessions() {
    let t = start("", "iscsi:\n  LoginTimeout: 2\n", "    NopInInterval: 0\n");
    let mut done = RawConn::connect(&t.addr);
    done.login(Some(IQN), &[]);
    // Connects and sends nothing.
    let mut silent = RawConn::connect(&t.addr);
    // Stops in the middle of its login: a security-stage PDU without the T bit, answered, then nothing more.
    let mut stalled = RawConn::connect(&t.addr);
    let h = stalled.login_request(0, 1, false);
    let keys = [
        format!("InitiatorName={}", raw::INITIATOR),
        format!("TargetName={IQN}"),
        "SessionType=Normal".to_string(),
        "AuthMethod=None".to_string(),
    ];
    stalled.send(h, &raw::keys(&keys.iter().map(String::as_str).collect::<Vec<_>>()));
    let p = stalled.recv();
    assert!(matches!(&p.header, Header::LoginResponse(r) if r.status_class == 0 && !r.transit), "{:?}", p.header);
    assert!(silent.closed_within(TIMERS), "a connection that never logs in is closed after LoginTimeout");
    assert!(stalled.closed_within(TIMERS), "a login that stops half way is closed after LoginTimeout");
    assert!(t.wait_for_log("login timed out", LIMIT), "{}", t.output());
    // The session that completed its login long before is not affected.
    let itt = done.ping(b"alive");
    done.recv_until("NOP-In echo", |h| matches!(h, Header::NopIn(n) if n.itt == itt));
}

// ----- logout on shutdown -----

#[test]
fn shutdown_asks_every_session_to_log_out() {
    let mut t = start("reactors: { count: 2 }\n", "", "    NopInInterval: 0\n");
    let mut polite = RawConn::connect(&t.addr);
    polite.login(Some(IQN), &[]);
    let mut rude = RawConn::connect(&t.addr);
    rude.isid[5] = 2;
    rude.login(Some(IQN), &[]);
    t.terminate();
    for c in [&mut polite, &mut rude] {
        let p = c.recv();
        let Header::AsyncMessage(a) = p.header else { panic!("expected an Async Message, got {:?}", p.header) };
        assert_eq!(a.event, 1, "AsyncEvent 1: logout requested");
        assert!(a.param3 > 0, "Parameter3: seconds to log out within");
    }
    assert_eq!(polite.logout(), 0, "the logout succeeds");
    assert!(polite.closed_within(TIMERS));
    // The initiator that ignores the request is told its connection is dropped, then dropped.
    let p = rude.recv();
    assert!(matches!(p.header, Header::AsyncMessage(ref a) if a.event == 2), "{:?}", p.header);
    assert!(rude.closed_within(TIMERS));
    let status = t.wait_exit(TIMERS).expect("polltgt must exit after the logout wait");
    assert!(status.success(), "{status:?}\n{}", t.output());
}

// ----- command window -----

/// A SCSI command with an explicit CmdSN and I bit (the raw client's own numbering is left alone).
fn command_at(c: &mut RawConn, cdb: &[u8], edtl: u32, write: bool, cmd_sn: u32, immediate: bool) -> (u32, Header) {
    let itt = c.itt();
    let mut full = [0u8; 16];
    full[..cdb.len()].copy_from_slice(cdb);
    let h = Header::ScsiCommand(polltgt_iscsi::wire::ScsiCommand {
        immediate,
        final_: true,
        read: false,
        write,
        attr: 1,
        lun: 0,
        itt,
        edtl,
        cmd_sn: SerialNumber(cmd_sn),
        exp_stat_sn: SerialNumber(c.exp_stat_sn),
        cdb: full,
        ext_cdb: Vec::new(),
        bidi_read_edtl: None,
    });
    (itt, h)
}

fn window_of(h: &Header) -> (u32, u32) {
    match h {
        Header::R2t(r) => (r.exp_cmd_sn.0, r.max_cmd_sn.0),
        Header::NopIn(n) => (n.exp_cmd_sn.0, n.max_cmd_sn.0),
        Header::ScsiResponse(r) => (r.exp_cmd_sn.0, r.max_cmd_sn.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn queued_commands_window_out_of_window_and_immediate_commands() {
    let t = start("", "", "    QueuedCommands: 4\n    InitialR2T: true\n    NopInInterval: 0\n");
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &["InitialR2T=Yes"]);
    c.clear_unit_attention();
    let base = c.cmd_sn;
    // Four writes waiting for their data fill the window: MaxCmdSN = ExpCmdSN - 1 (closed).
    let mut writes = Vec::new();
    for i in 0..4 {
        let (itt, h) = command_at(&mut c, &raw::write10(i * 8, 8), 4096, true, base + i, false);
        c.send(h, &[]);
        let p = c.recv();
        let Header::R2t(r) = &p.header else { panic!("{:?}", p.header) };
        writes.push((itt, r.ttt));
        if i == 3 {
            assert_eq!(window_of(&p.header), (base + 4, base + 3), "the window is closed");
        }
    }
    // Beyond MaxCmdSN, and a duplicate below ExpCmdSN: silently ignored (RFC 7143 §3.2.2.1).
    let (late, h) = command_at(&mut c, &[0u8; 6], 0, false, base + 4, false);
    c.send(h, &[]);
    let (dup, h) = command_at(&mut c, &[0u8; 6], 0, false, base + 1, false);
    c.send(h, &[]);
    // An immediate command is executed even with the window closed, and does not advance ExpCmdSN.
    let (imm, h) = command_at(&mut c, &[0u8; 6], 0, false, base + 4, true);
    c.send(h, &[]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == imm && r.status == 0), "{:?}", p.header);
    assert_eq!(window_of(&p.header).0, base + 4);
    let ping = c.ping(b"");
    let p = c.recv();
    assert!(
        matches!(&p.header, Header::NopIn(n) if n.itt == ping),
        "no answer to {late:#x} or {dup:#x}: {:?}",
        p.header
    );
    // One write completes: the window reopens by one.
    let (itt, ttt) = writes[0];
    let d = c.data_out(itt, ttt, 0);
    c.send(d, &[0x5a; 4096]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == itt && r.status == 0), "{:?}", p.header);
    assert_eq!(window_of(&p.header), (base + 4, base + 4));
    // The command sent too early was dropped, not queued: resent now it runs.
    let (again, h) = command_at(&mut c, &[0u8; 6], 0, false, base + 4, false);
    c.send(h, &[]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == again && r.status == 0), "{:?}", p.header);
}

// ----- task management -----

#[test]
fn task_management_functions_end_to_end() {
    // Two reactors: the two sessions run on different ones (connections are spread round robin).
    let t = start("reactors: { count: 2 }\n", "", "    NopInInterval: 0\n    InitialR2T: true\n");
    let mut a = RawConn::connect(&t.addr);
    a.login(Some(IQN), &["InitialR2T=Yes"]);
    a.clear_unit_attention();
    let mut b = RawConn::connect(&t.addr);
    b.isid[5] = 2;
    b.login(Some(IQN), &["InitialR2T=Yes"]);
    b.clear_unit_attention();
    // ABORT TASK of a write waiting for its Data-Out: the R2T state is dropped, a late Data-Out is silently
    // discarded and the aborted command never answers.
    let (itt, h) = a.scsi(&raw::write10(0, 8), 4096, false, true, true);
    let cmd_sn = a.cmd_sn - 1;
    a.send(h, &[]);
    let p = a.recv();
    let Header::R2t(r2t) = p.header else { panic!("{:?}", p.header) };
    assert_eq!(a.tmf(1, itt, cmd_sn), 0, "ABORT TASK: function complete");
    let d = a.data_out(itt, r2t.ttt, 0);
    a.send(d, &[0x77; 4096]);
    let ping = a.ping(b"after abort");
    let p = a.recv();
    assert!(
        matches!(&p.header, Header::NopIn(n) if n.itt == ping),
        "nothing may answer the aborted task: {:?}",
        p.header
    );
    // ABORT TASK of a task that does not exist (its CmdSN already used): "task does not exist".
    assert_eq!(a.tmf(1, 0x4242, 0), 1);
    assert_eq!(a.tmf(2, 0xffff_ffff, 0), 0, "ABORT TASK SET");
    assert_eq!(a.tmf(4, 0xffff_ffff, 0), 0, "CLEAR TASK SET");
    assert_eq!(a.tmf(3, 0xffff_ffff, 0), 5, "CLEAR ACA: not supported (NormACA=0, no ACA)");
    assert_eq!(a.tmf(8, 0x1, 0), 4, "TASK REASSIGN: allegiance reassignment not supported (ERL 0)");
    // LOGICAL UNIT RESET aborts the other session's tasks too, silently (TAS=0): its write waiting for data never
    // answers, its late Data-Out is dropped, and its next command sees 06/29/03 BUS DEVICE RESET FUNCTION OCCURRED.
    let (b_itt, h) = b.scsi(&raw::write10(64, 8), 4096, false, true, true);
    b.send(h, &[]);
    let p = b.recv();
    let Header::R2t(b_r2t) = p.header else { panic!("{:?}", p.header) };
    // The response comes only after every reactor aborted its sessions' tasks (no waiting for a log line here).
    assert_eq!(a.tmf(5, 0xffff_ffff, 0), 0, "LOGICAL UNIT RESET");
    let d = b.data_out(b_itt, b_r2t.ttt, 0);
    b.send(d, &[0x66; 4096]);
    let ping = b.ping(b"");
    let p = b.recv();
    assert!(
        matches!(&p.header, Header::NopIn(n) if n.itt == ping),
        "the aborted write must not answer: {:?}",
        p.header
    );
    assert_eq!(b.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    assert_eq!(b.test_unit_ready().0, 0, "a unit attention is reported once");
    assert_eq!(a.test_unit_ready(), (2, 0x06, 0x29, 0x03), "also on the nexus that asked for the reset");
    // TARGET WARM RESET: the same unit attention on every LUN of the target.
    assert_eq!(b.tmf(6, 0xffff_ffff, 0), 0, "TARGET WARM RESET");
    assert_eq!(a.test_unit_ready(), (2, 0x06, 0x29, 0x03));
    // TARGET COLD RESET: answered, then every connection to the target closes (RFC 7143 §11.5.1), the other
    // initiator's too; a new session starts with POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00).
    assert_eq!(a.tmf(7, 0xffff_ffff, 0), 0, "TARGET COLD RESET");
    assert!(a.closed_within(TIMERS), "a cold reset drops the requester's connection");
    assert!(b.closed_within(TIMERS), "and every other connection to the target");
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &[]);
    assert_eq!(c.test_unit_ready(), (2, 0x06, 0x29, 0x00));
    assert_eq!(c.test_unit_ready().0, 0);
}

// ----- sessions -----

#[test]
fn session_reinstatement_closes_the_old_session_on_another_reactor() {
    let t = start("reactors: { count: 2 }\n", "", "    NopInInterval: 0\n");
    let mut old = RawConn::connect(&t.addr);
    old.login(Some(IQN), &[]);
    // Connections are spread round robin: the next one lands on the other reactor.
    let mut new = RawConn::connect(&t.addr);
    assert_eq!(new.isid, old.isid);
    new.login(Some(IQN), &[]);
    assert!(old.closed_within(TIMERS), "the reinstated session must be closed");
    let itt = new.ping(b"x");
    new.recv_until("NOP-In", |h| matches!(h, Header::NopIn(n) if n.itt == itt));
    assert!(t.wait_for_log("session reinstatement", LIMIT), "{}", t.output());
    let log = t.output();
    assert!(log.contains("reactor=0") && log.contains("reactor=1"), "both reactors must have had a connection");
}

#[test]
fn max_sessions_refuses_more_sessions_but_not_reinstatement() {
    let t = start("", "", "    MaxSessions: 1\n    NopInInterval: 0\n");
    let mut a = RawConn::connect(&t.addr);
    a.login(Some(IQN), &[]);
    let mut b = RawConn::connect(&t.addr);
    b.isid[5] = 9;
    let (r, _) = b.try_login(raw::INITIATOR, Some(IQN), &[]);
    assert_eq!((r.status_class, r.status_detail), (3, 2), "out of resources");
    assert!(b.closed_within(TIMERS));
    // A login with a's ISID reinstates a's session: allowed.
    let mut a2 = RawConn::connect(&t.addr);
    a2.login(Some(IQN), &["DefaultTime2Wait=5", "DefaultTime2Retain=7"]);
    assert!(a.closed_within(TIMERS));
    // Logout "remove the connection for recovery" needs ERL 2: response 2 (connection recovery not supported),
    // Time2Wait 0 and Time2Retain 0 (the state is already discarded, RFC 7143 §11.15.3); the session goes on.
    let itt = a2.itt();
    let h = Header::LogoutRequest(polltgt_iscsi::wire::LogoutRequest {
        immediate: true,
        reason: 2,
        itt,
        cid: 0,
        cmd_sn: SerialNumber(a2.cmd_sn),
        exp_stat_sn: SerialNumber(a2.exp_stat_sn),
    });
    a2.send(h, &[]);
    let p = a2.recv_until("Logout Response", |h| matches!(h, Header::LogoutResponse(_)));
    assert!(
        matches!(&p.header, Header::LogoutResponse(l) if (l.response, l.time2wait, l.time2retain) == (2, 0, 0)),
        "{:?}",
        p.header
    );
    // Closing the session: the negotiated DefaultTime2Wait (the larger of 5 and the target's 2) and
    // DefaultTime2Retain (the smaller of 7 and the target's 0: at ERL 0 nothing is retained) (RFC 7143 §11.15,
    // §13.15, §13.16).
    assert_eq!(a2.logout_times(), (0, 5, 0));
    // The limit counts live sessions only.
    let mut c = RawConn::connect(&t.addr);
    c.isid[5] = 10;
    // The logged-out session may still be closing: retry for a bounded time.
    let deadline = std::time::Instant::now() + TIMERS;
    loop {
        let (r, _) = c.try_login(raw::INITIATOR, Some(IQN), &[]);
        if r.status_class == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a new session was never admitted");
        std::thread::sleep(Duration::from_millis(100));
        c = RawConn::connect(&t.addr);
        c.isid[5] = 10;
    }
}

#[test]
fn a_second_connection_to_a_session_is_refused() {
    let t = start("", "", "    NopInInterval: 0\n");
    let mut a = RawConn::connect(&t.addr);
    a.login(Some(IQN), &[]);
    let mut b = RawConn::connect(&t.addr);
    b.tsih = a.tsih;
    let (r, _) = b.try_login(raw::INITIATOR, Some(IQN), &[]);
    assert_eq!((r.status_class, r.status_detail), (2, 6), "MaxConnections=1: too many connections");
    b.tsih = a.tsih.wrapping_add(100);
    let mut b = RawConn::connect(&t.addr);
    b.tsih = a.tsih.wrapping_add(100);
    let (r, _) = b.try_login(raw::INITIATOR, Some(IQN), &[]);
    assert_eq!((r.status_class, r.status_detail), (2, 0x0a), "session does not exist");
}

// ----- redirection -----

#[test]
fn redirected_logins_are_followed_and_discovery_is_not_redirected() {
    let there = start("", "", "");
    let here = start("", "", &format!("    redirect: \"{} temp\"\n", there.addr));
    // libiscsi follows a temporary redirection (0x0101) and reaches the LUN over there.
    let inq = run_ok("iscsi-inq", &[&url(&here, "")], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    assert!(there.wait_for_log("login complete", LIMIT), "the login must have happened at the new address");
    // The raw answer: status 0x0101 with TargetAddress, before any security negotiation.
    let mut c = RawConn::connect(&here.addr);
    let (r, data) = c.try_login(raw::INITIATOR, Some(IQN), &["AuthMethod=CHAP,None"]);
    assert_eq!((r.status_class, r.status_detail), (1, 1));
    assert_eq!(raw::value(&data, "TargetAddress"), Some(there.addr.clone()));
    // Discovery sessions are not redirected.
    let ls = run_ok("iscsi-ls", &[&format!("iscsi://{}", here.addr)], LIMIT);
    assert!(ls.contains(IQN), "{ls}");
    // A permanent redirection with an IPv6 address.
    let perm = start("", "", "    redirect: \"[fd00::7]:3261 perm\"\n");
    let mut c = RawConn::connect(&perm.addr);
    let (r, data) = c.try_login(raw::INITIATOR, Some(IQN), &[]);
    assert_eq!((r.status_class, r.status_detail), (1, 2));
    assert_eq!(raw::value(&data, "TargetAddress").as_deref(), Some("[fd00::7]:3261"));
}

// ----- portals -----

#[test]
fn ipv4_and_ipv6_portals_with_tpgt_and_allowed_portal() {
    let yaml = [
        "portals:",
        "  - { address: \"127.0.0.1:0\", tpgt: 1 }",
        "  - { address: \"[::1]:0\", tpgt: 2 }",
        "devices:",
        "  - { name: ram0, handler: ram, size: 16M }",
        "  - { name: ram1, handler: ram, size: 16M }",
        "targets:",
        &format!("  - name: {IQN}"),
        "    luns: [ { lun: 0, device: ram0 } ]",
        &format!("  - name: {IQN}-v6"),
        "    luns: [ { lun: 0, device: ram1 } ]",
        "    allowed_portal: \"::1\"",
        &format!("  - name: {IQN}-nowhere"),
        "    luns: [ { lun: 0, device: ram1 } ]",
        "    allowed_portal: \"!*\"",
        "",
    ]
    .join("\n");
    let t = Target::start_with_yaml_portals(tempfile::tempdir().expect("tempdir"), &yaml, 2);
    let (v4, v6) = (t.addrs[0].clone(), t.addrs[1].clone());
    assert!(v6.starts_with("[::1]:"), "{v6}");
    // SendTargets lists the targets reachable through the portal asked on (as iSCSI-SCST's target_list_build),
    // each with the portals it is allowed on, TPGT included.
    for (portal, expected) in [
        (&v4, vec![(IQN.to_string(), vec![format!("{v4},1"), format!("{v6},2")])]),
        (
            &v6,
            vec![
                (IQN.to_string(), vec![format!("{v4},1"), format!("{v6},2")]),
                (format!("{IQN}-v6"), vec![format!("{v6},2")]),
            ],
        ),
    ] {
        let mut c = RawConn::connect(portal);
        c.login(None, &[]);
        let (_, req) = c.text_request();
        c.send(req, &raw::keys(&["SendTargets=All"]));
        let p = c.recv_until("Text Response", |h| matches!(h, Header::TextResponse(_)));
        let got = raw::pairs(&p.data);
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .flat_map(|(name, addrs)| {
                std::iter::once(("TargetName".to_string(), name))
                    .chain(addrs.into_iter().map(|a| ("TargetAddress".to_string(), a)))
            })
            .collect();
        assert_eq!(got, expected, "SendTargets through {portal}");
    }
    // libiscsi's discovery and a LUN over IPv6.
    let ls = run_ok("iscsi-ls", &[&format!("iscsi://{v6}")], LIMIT);
    assert!(ls.contains(&format!("Target:{IQN}-v6 Portal:{v6},2")), "{ls}");
    let inq = run_ok("iscsi-inq", &[&format!("iscsi://{v6}/{IQN}-v6/0")], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    // Logins through a portal the target is not allowed on: "not found"; the login response names the TPGT.
    let mut c = RawConn::connect(&v4);
    let (r, _) = c.try_login(raw::INITIATOR, Some(&format!("{IQN}-v6")), &[]);
    assert_eq!((r.status_class, r.status_detail), (2, 3));
    let mut c = RawConn::connect(&v6);
    let (r, _) = c.try_login(raw::INITIATOR, Some(&format!("{IQN}-nowhere")), &[]);
    assert_eq!((r.status_class, r.status_detail), (2, 3));
    let mut c = RawConn::connect(&v6);
    let data = c.login(Some(IQN), &[]);
    assert_eq!(raw::value(&data, "TargetPortalGroupTag").as_deref(), Some("2"));
    // A Text Request in the full feature phase of this normal session (RFC 7143 Appendix C): SendTargets with an
    // empty value names the session's own target only; "All" is for discovery sessions (Reject).
    for (value, expected) in [
        (
            "",
            vec![
                ("TargetName", IQN.to_string()),
                ("TargetAddress", format!("{v4},1")),
                ("TargetAddress", format!("{v6},2")),
            ],
        ),
        ("All", vec![("SendTargets", "Reject".to_string())]),
    ] {
        let (itt, req) = c.text_request();
        c.send(req, &raw::keys(&[&format!("SendTargets={value}")]));
        let p = c.recv_until("Text Response", |h| matches!(h, Header::TextResponse(r) if r.itt == itt));
        let expected: Vec<(String, String)> = expected.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(raw::pairs(&p.data), expected, "SendTargets={value} in a normal session");
    }
}

// ----- CHAP for discovery sessions and numbered accounts -----

#[test]
fn discovery_chap_end_to_end() {
    let t = start(
        "",
        "iscsi:\n  IncomingUser: \"disc secretsecret12\"\n  IncomingUser1: \"disc2 secretsecret34\"\n",
        "    IncomingUser2: \"joe2 secretsecret56\"\n",
    );
    for creds in ["disc%secretsecret12", "disc2%secretsecret34"] {
        let ls = run_ok("iscsi-ls", &[&format!("iscsi://{creds}@{}", t.addr)], LIMIT);
        assert!(ls.contains(IQN), "{ls}");
    }
    for bad in [String::new(), "disc%wrongsecret12@".into(), "joe2%secretsecret56@".into()] {
        let out = run("iscsi-ls", &[&format!("iscsi://{bad}{}", t.addr)], LIMIT);
        assert!(!out.status.success(), "discovery with {bad:?} must be refused");
    }
    // The numbered target account works for the normal session, the discovery account does not.
    let inq = run_ok("iscsi-inq", &[&format!("iscsi://joe2%secretsecret56@{}/{IQN}/0", t.addr)], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    let out = run("iscsi-inq", &[&format!("iscsi://disc%secretsecret12@{}/{IQN}/0", t.addr)], LIMIT);
    assert!(!out.status.success());
    let log = t.output();
    assert!(!log.contains("secretsecret"), "a secret reached the log:\n{log}");
}
