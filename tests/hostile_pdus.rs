//! Malformed and hostile PDUs over a real TCP connection to the binary, each with the answer RFC 7143 calls for,
//! and the target still serving afterwards: oversized data segments, bad AHS, opcodes out of phase, over-long text
//! keys, login floods, writes beyond the transfer limit and random garbage.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::{run_ok, Target, IQN};
use polltgt_iscsi::wire::{Header, SnackRequest};
use polltgt_iscsi::SerialNumber;

const LIMIT: Duration = Duration::from_secs(30);

fn start(target_extra: &str) -> Target {
    let yaml = format!(
        "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - {{ name: ram0, handler: ram, size: 16M }}\n\
         targets:\n  - name: {IQN}\n    luns: [ {{ lun: 0, device: ram0 }} ]\n    NopInInterval: 0\n{target_extra}"
    );
    Target::start_with_yaml(tempfile::tempdir().expect("tempdir"), &yaml)
}

/// After the hostile part: the process is alive and a real initiator gets served.
fn still_serving(t: &mut Target) {
    assert!(t.alive(), "polltgt died:\n{}", t.output());
    let inq = run_ok("iscsi-inq", &[&t.url(0)], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    assert!(!t.output().contains("panicked"), "a thread panicked:\n{}", t.output());
}

fn logged_in(t: &Target) -> RawConn {
    let mut c = RawConn::connect(&t.addr);
    c.login(Some(IQN), &[]);
    c.clear_unit_attention();
    c
}

/// A 48-byte BHS with `opcode` (and flags byte 1), DataSegmentLength `dsl`, ITT and CmdSN/ExpStatSN of `c`.
fn bhs(c: &RawConn, opcode: u8, flags: u8, dsl: u32, itt: u32) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = opcode;
    b[1] = flags;
    b[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
    b[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
    b
}

fn expect_reject(c: &mut RawConn, reason: u8, sent: &[u8]) {
    let p = c.recv();
    match &p.header {
        Header::Reject(r) => {
            assert_eq!(r.reason, reason, "Reject reason");
            assert_eq!(p.data[..48], sent[..48], "a Reject carries the offending header");
        }
        other => panic!("expected a Reject ({reason:#x}), got {other:?}"),
    }
}

fn ping_works(c: &mut RawConn) {
    let itt = c.ping(b"alive?");
    let p = c.recv_until("NOP-In", |h| matches!(h, Header::NopIn(n) if n.itt == itt));
    assert_eq!(p.data, b"alive?");
}

fn login_status(c: &mut RawConn) -> (u8, u8) {
    let p = c.recv();
    match p.header {
        Header::LoginResponse(r) => (r.status_class, r.status_detail),
        other => panic!("expected a Login Response, got {other:?}"),
    }
}

#[test]
fn oversized_data_segments() {
    let mut t = start("");
    // Login phase: more than 8192 bytes in one Login PDU is a login failure, then the connection closes.
    let mut c = RawConn::connect(&t.addr);
    let h = c.login_request(1, 3, true);
    let mut text = raw::keys(&[&format!("InitiatorName={}", raw::INITIATOR), &format!("TargetName={IQN}")]);
    text.resize(9000, b'x');
    c.send(h, &text);
    assert_eq!(login_status(&mut c).0, 2, "initiator error class");
    assert!(c.closed_within(LIMIT));
    // Full feature phase: a DataSegmentLength above MaxRecvDataSegmentLength (1 MiB) is rejected at once, from the
    // header alone: nothing of its announced 16 MiB is buffered.
    let mut c = logged_in(&t);
    let itt = c.itt();
    let big = bhs(&c, 0x40, 0x80, 0x00ff_ffff, itt);
    c.send_raw(&big);
    expect_reject(&mut c, 0x04, &big);
    drop(c);
    // The same with the data actually sent: the target skips it and goes on.
    let mut c = logged_in(&t);
    let itt = c.itt();
    let mut pdu = bhs(&c, 0x40, 0x80, (1 << 20) + 4, itt);
    pdu.extend(std::iter::repeat_n(0xab, (1 << 20) + 4));
    c.send_raw(&pdu);
    expect_reject(&mut c, 0x04, &pdu);
    ping_works(&mut c);
    still_serving(&mut t);
}

#[test]
fn bad_ahs_and_unknown_or_misplaced_opcodes() {
    let mut t = start("");
    let mut c = logged_in(&t);
    // A SCSI Command whose AHS claims more bytes than TotalAHSLength holds: Reject "protocol error"; its CmdSN is
    // used up, so the next command runs.
    let itt = c.itt();
    let mut cmd = bhs(&c, 0x01, 0x80, 0, itt);
    cmd[4] = 1; // TotalAHSLength: one word
    cmd[32] = 0x00; // TEST UNIT READY
    cmd.extend_from_slice(&[0x00, 0x40, 0x01, 0x00]); // AHSLength 64, type 1 (extended CDB)
    c.cmd_sn += 1;
    c.send_raw(&cmd);
    expect_reject(&mut c, 0x04, &cmd);
    let (itt, h) = c.scsi(&[0u8; 6], 0, false, false, true);
    c.send(h, &[]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == itt && r.status == 0), "{:?}", p.header);
    // An AHS on an opcode that has none.
    let itt = c.itt();
    let mut nop = bhs(&c, 0x40, 0x80, 0, itt);
    nop[4] = 1;
    nop.extend_from_slice(&[0, 0, 0, 0]);
    c.send_raw(&nop);
    expect_reject(&mut c, 0x04, &nop);
    // Unknown and vendor opcodes: "command not supported".
    for opcode in [0x1c, 0x0f] {
        let itt = c.itt();
        let p = bhs(&c, 0x40 | opcode, 0x80, 0, itt);
        c.send_raw(&p);
        expect_reject(&mut c, 0x05, &p);
    }
    // Target opcodes sent by an initiator.
    let itt = c.itt();
    let rsp = bhs(&c, 0x21, 0x80, 0, itt);
    c.send_raw(&rsp);
    let p = c.recv();
    assert!(matches!(p.header, Header::Reject(_)), "{:?}", p.header);
    // A Login Request in the full feature phase: protocol error.
    let h = c.login_request(1, 3, true);
    let bytes = c.encode(h, &raw::keys(&["InitiatorName=iqn.x"]));
    c.send_raw(&bytes);
    expect_reject(&mut c, 0x04, &bytes);
    // SNACK at ErrorRecoveryLevel 0.
    let snack = Header::SnackRequest(SnackRequest {
        snack_type: 0,
        lun: 0,
        itt: 0x77,
        ttt: 0xffff_ffff,
        exp_stat_sn: SerialNumber(c.exp_stat_sn),
        beg_run: 0,
        run_length: 0,
    });
    let bytes = c.encode(snack, &[]);
    c.send_raw(&bytes);
    let p = c.recv();
    assert!(matches!(p.header, Header::Reject(_)), "{:?}", p.header);
    // A Data-Out for a task that does not exist: invalid PDU field.
    let d = c.data_out(0x5555, 7, 0);
    let bytes = c.encode(d, &[1, 2, 3, 4]);
    c.send_raw(&bytes);
    expect_reject(&mut c, 0x09, &bytes);
    ping_works(&mut c);
    // The login phase accepts nothing but Login Requests: "invalid request during login", then close.
    for opcode in [0x01u8, 0x04, 0x06] {
        let mut c = RawConn::connect(&t.addr);
        let first = bhs(&c, opcode, 0x80, 0, 1);
        c.send_raw(&first);
        assert_eq!(login_status(&mut c), (2, 0x0b), "opcode {opcode:#x} first");
        assert!(c.closed_within(LIMIT));
    }
    still_serving(&mut t);
}

#[test]
fn text_keys_over_8192_bytes() {
    let mut t = start("");
    // A 10000-byte value carried over two Login PDUs with the C bit: the login fails with "initiator error".
    let mut c = RawConn::connect(&t.addr);
    let mut text = raw::keys(&[&format!("InitiatorName={}", raw::INITIATOR), &format!("TargetName={IQN}")]);
    text.extend_from_slice(b"X-big=");
    text.extend(std::iter::repeat_n(b'v', 10000));
    text.push(0);
    let (first, second) = text.split_at(8000);
    let mut h = c.login_request(1, 3, false);
    if let Header::LoginRequest(r) = &mut h {
        r.continue_ = true;
    }
    c.send(h, first);
    let p = c.recv();
    assert!(matches!(&p.header, Header::LoginResponse(r) if r.status_class == 0 && !r.transit), "{:?}", p.header);
    let h = c.login_request(1, 3, true);
    c.send(h, second);
    assert_eq!(login_status(&mut c), (2, 0), "a value over its length limit");
    assert!(c.closed_within(LIMIT));
    // A key name of 100 bytes.
    let mut c = RawConn::connect(&t.addr);
    let long_key = format!("X-{}=1", "k".repeat(100));
    let h = c.login_request(1, 3, true);
    c.send(h, &raw::keys(&[&format!("InitiatorName={}", raw::INITIATOR), &long_key]));
    assert_eq!(login_status(&mut c), (2, 0));
    // In the full feature phase, an over-long value is answered key=Reject and the session goes on.
    let mut c = logged_in(&t);
    let (_, req) = c.text_request();
    let mut body = b"X-big=".to_vec();
    body.extend(std::iter::repeat_n(b'v', 9000));
    body.push(0);
    c.send(req, &body);
    let p = c.recv();
    assert!(matches!(p.header, Header::TextResponse(_)), "{:?}", p.header);
    assert_eq!(raw::pairs(&p.data), vec![("X-big".to_string(), "Reject".to_string())]);
    ping_works(&mut c);
    still_serving(&mut t);
}

#[test]
fn login_floods() {
    let mut t = start("    IncomingUser: \"joe secretsecret12\"\n");
    // One connection sending endless continued Login PDUs: the collected text is bounded (64 KiB), then the login
    // fails and the connection closes.
    let mut c = RawConn::connect(&t.addr);
    let mut failed = false;
    for i in 0..200 {
        let mut h = c.login_request(0, 1, false);
        if let Header::LoginRequest(r) = &mut h {
            r.continue_ = true;
        }
        c.send(h, &vec![b'a'; 4096]);
        match c.recv_within(LIMIT) {
            Ok(p) => match p.header {
                Header::LoginResponse(r) if r.status_class == 0 => continue,
                Header::LoginResponse(r) => {
                    assert_eq!((r.status_class, r.status_detail), (2, 0), "after {i} PDUs");
                    failed = true;
                    break;
                }
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("after {i} PDUs: {e:?}"),
        }
    }
    assert!(failed, "the login text was never bounded");
    assert!(c.closed_within(LIMIT));
    // Many connections at once: half log in correctly (CHAP required: their AuthMethod=None login fails with
    // "authentication failure" after the delay), half send garbage. Every one is answered or closed.
    let addr = t.addr.clone();
    let workers: Vec<_> = (0..48)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = RawConn::connect(&addr);
                if i % 2 == 0 {
                    c.isid[5] = i as u8;
                    let (r, _) = c.try_login(raw::INITIATOR, Some(IQN), &[]);
                    assert_eq!((r.status_class, r.status_detail), (2, 1));
                } else {
                    c.send_raw(&[0xff; 200]);
                }
                assert!(c.closed_within(LIMIT), "connection {i} was left open");
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let inq = run_ok("iscsi-inq", &[&format!("iscsi://joe%secretsecret12@{}/{IQN}/0", t.addr)], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    assert!(t.alive(), "{}", t.output());
    assert!(t.wait_for_log("login authentication failed", LIMIT));
    let _ = &mut t;
}

#[test]
fn writes_beyond_the_transfer_limit_are_refused_before_buffering() {
    let mut t = start("");
    let mut c = logged_in(&t);
    // 1 GiB WRITE(10) without data: CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB, and no R2T.
    let (itt, h) = c.scsi(&raw::write10(0, 0xffff), 1 << 30, false, true, true);
    c.send(h, &[]);
    let p = c.recv();
    let Header::ScsiResponse(r) = &p.header else { panic!("expected a SCSI Response, got {:?}", p.header) };
    assert_eq!((r.itt, r.status), (itt, 2));
    let sense = &p.data[2..];
    assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x05, 0x24, 0x00));
    // With immediate data and an unsolicited burst announced (F=0): the data is drained, then the same answer.
    let (itt, h) = c.scsi(&raw::write10(0, 0xffff), 64 << 20, false, true, false);
    c.send(h, &[0x11; 4096]);
    let d = c.data_out(itt, 0xffff_ffff, 4096);
    c.send(d, &[0x22; 4096]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == itt && r.status == 2), "{:?}", p.header);
    // A write at the limit still works.
    let (itt, h) = c.scsi(&raw::write10(0, 8), 4096, false, true, true);
    c.send(h, &[0x33; 4096]);
    let p = c.recv();
    assert!(matches!(&p.header, Header::ScsiResponse(r) if r.itt == itt && r.status == 0), "{:?}", p.header);
    still_serving(&mut t);
}

#[test]
fn random_garbage_never_kills_the_target() {
    let mut t = start("");
    // A fixed-seed generator: reproducible garbage.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..6 {
        let mut c = logged_in(&t);
        for _ in 0..200 {
            let mut pdu = vec![0u8; 48];
            for b in pdu.iter_mut() {
                *b = next() as u8;
            }
            // Mostly initiator opcodes, small data segments, sometimes an AHS.
            pdu[0] = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x1c][(next() % 8) as usize] | (pdu[0] & 0x40);
            let dsl = (next() % 600) as u32;
            pdu[5..8].copy_from_slice(&dsl.to_be_bytes()[1..]);
            pdu[4] = if next() % 5 == 0 { (next() % 4) as u8 } else { 0 };
            let extra = usize::from(pdu[4]) * 4 + raw_padded(dsl as usize);
            pdu.extend((0..extra).map(|_| next() as u8));
            c.send_raw(&pdu);
        }
        c.shutdown();
        // Whatever the target answered, it ends the connection once we stop (or keeps it: both fine); drain.
        let _ = c.closed_within(Duration::from_secs(2));
        assert!(t.alive(), "polltgt died in round {round}:\n{}", t.output());
    }
    still_serving(&mut t);
}

fn raw_padded(n: usize) -> usize {
    (n + 3) & !3
}
