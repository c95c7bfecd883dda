//! A small raw-PDU iSCSI initiator for the protocol tests: it builds PDUs with the iSCSI core's wire module (headers,
//! framing, digests), sends exactly what a test asks for — well-formed or hostile — and decodes what the target
//! answers, including PDUs whose digests do not match. Every receive has a time limit.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use polltgt_iscsi::conn::encode;
use polltgt_iscsi::wire::{
    DataOut, Digests, Framing, Header, LoginRequest, LoginResponse, LogoutRequest, NopOut, ScsiCommand, BHS_LEN,
};
use polltgt_iscsi::SerialNumber;

/// How long a test waits for any one answer.
pub const ANSWER: Duration = Duration::from_secs(20);

/// A received PDU.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub header: Header,
    pub data: Vec<u8>,
    /// The raw bytes (BHS, AHS, digests, data, padding).
    pub raw: Vec<u8>,
    /// Whether the header and data digests in force matched.
    pub header_digest_ok: bool,
    pub data_digest_ok: bool,
}

/// What a receive ended with, when not with a PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// The target closed the connection.
    Closed,
    /// Nothing within the limit.
    Timeout,
    /// Bytes that are not a PDU.
    Garbage(String),
}

/// One TCP connection speaking raw iSCSI.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Digests in force for both directions (after a login negotiated them).
    pub digests: Digests,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    next_itt: u32,
    pub isid: [u8; 6],
    pub tsih: u16,
}

/// The initiator name the raw client logs in with by default.
pub const INITIATOR: &str = "iqn.2026-11.io.polltgt:raw-initiator";

/// Key=value text, NUL separated.
pub fn keys(pairs: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in pairs {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// Parses key=value text into pairs.
pub fn pairs(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let s = String::from_utf8_lossy(e);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The value of `key` in key=value text.
pub fn value(data: &[u8], key: &str) -> Option<String> {
    pairs(data).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

impl RawConn {
    /// Connects to `addr` ("127.0.0.1:port" or "[::1]:port").
    pub fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: Vec::new(),
            digests: Digests::NONE,
            cmd_sn: 1,
            exp_stat_sn: 0,
            next_itt: 1,
            isid: [0x80, 0x12, 0x34, 0x56, 0x00, 0x01],
            tsih: 0,
        }
    }

    /// A fresh Initiator Task Tag.
    pub fn itt(&mut self) -> u32 {
        let t = self.next_itt;
        self.next_itt += 1;
        t
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        // A target that already closed may refuse the rest; the test looks at what it answered before.
        let _ = self.stream.write_all(bytes);
    }

    /// Encodes and sends one PDU with the digests in force.
    pub fn send(&mut self, header: Header, data: &[u8]) {
        let bytes = self.encode(header, data);
        self.send_raw(&bytes);
    }

    /// One PDU encoded with the digests in force.
    pub fn encode(&self, header: Header, data: &[u8]) -> Vec<u8> {
        let data = if data.is_empty() { Vec::new() } else { vec![Bytes::copy_from_slice(data)] };
        let chain = encode(&header, data, self.digests).expect("encode");
        chain.iter().flat_map(|b| b.iter().copied()).collect()
    }

    /// Closes the sending side.
    pub fn shutdown(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next PDU, within `limit`.
    pub fn recv_within(&mut self, limit: Duration) -> Result<Pdu, RecvError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.buf.len() >= BHS_LEN {
                let f =
                    Framing::parse(&self.buf, self.digests, u32::MAX).map_err(|e| RecvError::Garbage(e.to_string()))?;
                if self.buf.len() >= f.total_len() {
                    let raw: Vec<u8> = self.buf.drain(..f.total_len()).collect();
                    let header =
                        Header::parse(&raw[f.header_range()]).map_err(|e| RecvError::Garbage(e.to_string()))?;
                    let pdu = Pdu {
                        header,
                        data: raw[f.data_range()].to_vec(),
                        header_digest_ok: f.check_header_digest(&raw).is_ok(),
                        data_digest_ok: f.check_data_digest(&raw).is_ok(),
                        raw,
                    };
                    self.track(&pdu.header);
                    return Ok(pdu);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left.min(Duration::from_millis(500)))).expect("timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return Err(RecvError::Closed),
            }
        }
    }

    /// The next PDU; panics when none comes within [`ANSWER`].
    pub fn recv(&mut self) -> Pdu {
        match self.recv_within(ANSWER) {
            Ok(p) => p,
            Err(e) => panic!("expected a PDU, got {e:?}"),
        }
    }

    /// Skips PDUs until one matches `want`; panics on close or timeout.
    pub fn recv_until(&mut self, what: &str, want: impl Fn(&Header) -> bool) -> Pdu {
        loop {
            let p = self.recv();
            if want(&p.header) {
                return p;
            }
            if let Header::NopIn(n) = &p.header {
                if n.ttt != 0xffff_ffff {
                    self.answer_ping(n.ttt);
                }
            }
            eprintln!("(skipping {:?} while waiting for {what})", p.header);
        }
    }

    /// Reads until the target closes the connection (true) or `limit` passes (false), discarding PDUs.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left) {
                Ok(_) => continue,
                Err(RecvError::Closed) | Err(RecvError::Garbage(_)) => return true,
                Err(RecvError::Timeout) => return false,
            }
        }
    }

    fn track(&mut self, h: &Header) {
        let stat_sn = match h {
            Header::ScsiResponse(x) => Some(x.stat_sn),
            Header::TaskMgmtResponse(x) => Some(x.stat_sn),
            Header::TextResponse(x) => Some(x.stat_sn),
            Header::LogoutResponse(x) => Some(x.stat_sn),
            Header::Reject(x) => Some(x.stat_sn),
            Header::AsyncMessage(x) => Some(x.stat_sn),
            Header::LoginResponse(x) => Some(x.stat_sn),
            Header::DataIn(x) if x.status.is_some() => Some(x.stat_sn),
            Header::NopIn(x) if x.itt != 0xffff_ffff => Some(x.stat_sn),
            _ => None,
        };
        if let Some(sn) = stat_sn {
            self.exp_stat_sn = sn.0.wrapping_add(1);
        }
    }

    /// A Login Request header in the operational stage going to full feature phase.
    pub fn login_request(&mut self, csg: u8, nsg: u8, transit: bool) -> Header {
        Header::LoginRequest(LoginRequest {
            transit,
            continue_: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: 0,
            cid: 0,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
        })
    }

    /// Sends one operational-stage login PDU (CSG=1, NSG=3, T=1) with libiscsi's keys plus `extra` (which override
    /// keys of the same name) and returns the response. On success the digests negotiated come into force.
    pub fn try_login(&mut self, initiator: &str, target: Option<&str>, extra: &[&str]) -> (LoginResponse, Vec<u8>) {
        let mut list: Vec<String> = vec![format!("InitiatorName={initiator}")];
        match target {
            Some(t) => list.extend([format!("TargetName={t}"), "SessionType=Normal".into()]),
            None => list.push("SessionType=Discovery".into()),
        }
        let defaults = [
            "HeaderDigest=None",
            "DataDigest=None",
            "InitialR2T=No",
            "ImmediateData=Yes",
            "MaxBurstLength=262144",
            "FirstBurstLength=262144",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "MaxOutstandingR2T=1",
            "ErrorRecoveryLevel=0",
            "IFMarker=No",
            "OFMarker=No",
            "MaxConnections=1",
            "MaxRecvDataSegmentLength=262144",
            "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes",
        ];
        for d in defaults {
            let key = d.split('=').next().unwrap_or_default();
            match extra.iter().find(|e| e.split('=').next() == Some(key)) {
                Some(e) => list.push((*e).to_string()),
                None => list.push(d.to_string()),
            }
        }
        for e in extra {
            let key = e.split('=').next().unwrap_or_default();
            if !list.iter().any(|l| l.split('=').next() == Some(key)) {
                list.push((*e).to_string());
            }
        }
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        let h = self.login_request(1, 3, true);
        self.send(h, &keys(&refs));
        let p = self.recv();
        let Header::LoginResponse(r) = p.header else { panic!("expected a Login Response, got {:?}", p.header) };
        if r.status_class == 0 && r.transit && r.nsg == 3 {
            self.tsih = r.tsih;
            self.cmd_sn = r.exp_cmd_sn.0;
            self.digests = Digests {
                header: value(&p.data, "HeaderDigest").as_deref() == Some("CRC32C"),
                data: value(&p.data, "DataDigest").as_deref() == Some("CRC32C"),
            };
        }
        (r, p.data)
    }

    /// Logs in (normal session to `target`, or discovery with None); panics unless it succeeds.
    pub fn login(&mut self, target: Option<&str>, extra: &[&str]) -> Vec<u8> {
        let (r, data) = self.try_login(INITIATOR, target, extra);
        assert_eq!(
            (r.status_class, r.status_detail, r.transit, r.nsg),
            (0, 0, true, 3),
            "login failed: {r:?} {:?}",
            pairs(&data)
        );
        data
    }

    /// A NOP-Out answering the target's ping `ttt`.
    pub fn answer_ping(&mut self, ttt: u32) {
        let h = Header::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 0xffff_ffff,
            ttt,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
        });
        self.send(h, &[]);
    }

    /// A NOP-Out ping the target must answer, with `data`.
    pub fn ping(&mut self, data: &[u8]) -> u32 {
        let itt = self.itt();
        let h = Header::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: 0xffff_ffff,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
        });
        self.send(h, data);
        itt
    }

    /// A SCSI command header for LUN 0 taking the next CmdSN.
    pub fn scsi(&mut self, cdb: &[u8], edtl: u32, read: bool, write: bool, final_: bool) -> (u32, Header) {
        let itt = self.itt();
        let mut c = [0u8; 16];
        c[..cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        let h = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_,
            read,
            write,
            attr: 1,
            lun: 0,
            itt,
            edtl,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
            cdb: c,
            ext_cdb: Vec::new(),
            bidi_read_edtl: None,
        });
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        (itt, h)
    }

    /// Sends TEST UNIT READY until it answers GOOD (consuming the unit attention a new I_T nexus starts with).
    pub fn clear_unit_attention(&mut self) {
        for _ in 0..4 {
            let (itt, h) = self.scsi(&[0u8; 6], 0, false, false, true);
            self.send(h, &[]);
            let p =
                self.recv_until("TEST UNIT READY response", |h| matches!(h, Header::ScsiResponse(r) if r.itt == itt));
            if matches!(p.header, Header::ScsiResponse(r) if r.status == 0) {
                return;
            }
        }
        panic!("TEST UNIT READY never answered GOOD");
    }

    /// Sends an immediate task management request and returns the response code (skipping other PDUs).
    pub fn tmf(&mut self, function: u8, rtt: u32, ref_cmd_sn: u32) -> u8 {
        let itt = self.itt();
        let h = Header::TaskMgmtRequest(polltgt_iscsi::wire::TaskMgmtRequest {
            immediate: true,
            function: 0x80 | function,
            lun: 0,
            itt,
            rtt,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
            ref_cmd_sn: SerialNumber(ref_cmd_sn),
            exp_data_sn: SerialNumber(0),
        });
        self.send(h, &[]);
        let p = self.recv_until("TMF Response", |h| matches!(h, Header::TaskMgmtResponse(r) if r.itt == itt));
        match p.header {
            Header::TaskMgmtResponse(r) => r.response,
            _ => unreachable!(),
        }
    }

    /// Sends TEST UNIT READY and returns (status, sense key, ASC, ASCQ).
    pub fn test_unit_ready(&mut self) -> (u8, u8, u8, u8) {
        let (itt, h) = self.scsi(&[0u8; 6], 0, false, false, true);
        self.send(h, &[]);
        let p = self.recv_until("TEST UNIT READY response", |h| matches!(h, Header::ScsiResponse(r) if r.itt == itt));
        let Header::ScsiResponse(r) = p.header else { unreachable!() };
        let sense = p.data.get(2..).unwrap_or_default();
        let at = |i: usize| sense.get(i).copied().unwrap_or(0);
        (r.status, at(2) & 0x0f, at(12), at(13))
    }

    /// Logs out (close the session) and returns the Logout Response's response code.
    /// A final Data-Out (DataSN 0) of task `itt` answering `ttt` (0xffffffff: unsolicited) at `buffer_offset`.
    pub fn data_out(&self, itt: u32, ttt: u32, buffer_offset: u32) -> Header {
        Header::DataOut(DataOut {
            final_: true,
            lun: 0,
            itt,
            ttt,
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
            data_sn: SerialNumber(0),
            buffer_offset,
        })
    }

    /// An immediate, final Text Request (RFC 7143 §11.10) with a new ITT, and that ITT.
    pub fn text_request(&mut self) -> (u32, Header) {
        let itt = self.itt();
        let h = Header::TextRequest(polltgt_iscsi::wire::TextRequest {
            immediate: true,
            final_: true,
            continue_: false,
            lun: 0,
            itt,
            ttt: 0xffff_ffff,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
        });
        (itt, h)
    }

    pub fn logout(&mut self) -> u8 {
        self.logout_times().0
    }

    /// Logs out and returns the Logout Response's (response, Time2Wait, Time2Retain).
    pub fn logout_times(&mut self) -> (u8, u16, u16) {
        let itt = self.itt();
        let h = Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: 0,
            itt,
            cid: 0,
            cmd_sn: SerialNumber(self.cmd_sn),
            exp_stat_sn: SerialNumber(self.exp_stat_sn),
        });
        self.send(h, &[]);
        let p = self.recv_until("Logout Response", |h| matches!(h, Header::LogoutResponse(_)));
        match p.header {
            Header::LogoutResponse(l) => (l.response, l.time2wait, l.time2retain),
            _ => unreachable!(),
        }
    }
}

/// WRITE(10) CDB for `blocks` 512-byte blocks at `lba`.
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x2a;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ(10) CDB.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = write10(lba, blocks);
    c[0] = 0x28;
    c
}
