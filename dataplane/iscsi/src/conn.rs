//! One iSCSI connection as a sans-I/O state machine: framing, the login phase ([`crate::login::Login`]) and then the
//! full feature phase ([`crate::session::Session`]) (RFC 7143 §4, §6, §11).
//!
//! The driver feeds received bytes with [`Connection::handle_input`] (whole PDUs are consumed from the front of its
//! buffer, a partial one stays there), sends what [`Connection::poll_transmit`] returns (each PDU as a chain of
//! `Bytes`: header (+ header digest), the data segment buffers by reference, padding (+ data digest)), executes
//! what [`Connection::poll_event`] asks for and reports back with [`Connection::complete_command`] and
//! [`Connection::complete_task_mgmt`]. Timers: [`Connection::poll_timeout`] / [`Connection::handle_timeout`].
//! Nothing here reads a clock or touches a socket.
//!
//! Framing errors and their answers:
//! * a DataSegmentLength above the MaxRecvDataSegmentLength in force (8192 during login, RFC 7143 §13.12):
//!   in the full feature phase a Reject "protocol error" with the header, the PDU's bytes are skipped and the
//!   connection goes on; during login a login failure response, then the connection closes;
//! * a header digest mismatch (§7.8, §13.1): the header and hence the PDU length cannot be trusted, so at
//!   ErrorRecoveryLevel 0 the connection closes;
//! * a data digest mismatch: Reject "data digest error" and the PDU discarded; a Data-Out's task is then terminated
//!   with CHECK CONDITION 0B/47/05 (PROTOCOL SERVICE CRC ERROR) once its data sequences end, a SCSI Command's lost
//!   immediate data closes the session (RFC 7143 §7.8; ERL 0 has no recovery R2T);
//! * an undecodable header (unknown opcode, bad AHS, invalid field): Reject with the reason the wire layer names
//!   ([`WireError::reject_reason`]); during login: "invalid request during login" and close;
//! * no completed login within the login timeout ([`LOGIN_TIMEOUT`] unless [`Connection::set_login_timeout`] says
//!   otherwise; counted from the accept, so a connection that sends nothing or stops mid-login is closed too).
//!
//! A login that fails with "authentication failure" (0x0201) is answered only after [`AUTH_FAILURE_DELAY`], during
//! which the connection ignores its input (RFC 7143 §9.2 asks targets to make guessing secrets expensive); the
//! connection then closes. [`Connection::request_logout`] asks the initiator to log out (Asynchronous Message,
//! §11.9.1 AsyncEvent 1) and closes the connection when it does not within the given time.
//!
//! Fault injection ([`DigestFaults`], like iSCSI-SCST's `DEBUG_DIGEST_FAILURES`): every Nth PDU received with a
//! digest in force is treated as if its digest had not matched, and every Nth PDU sent with a digest carries a
//! corrupted one, to exercise both sides' digest error handling.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::login::{send_targets_response, Login, LoginStep, PortalInfo, TargetCatalog, TargetInfo};
use crate::negotiate;
use crate::params::{Digest, SessionParams, SessionType};
use crate::serial::SerialNumber;
use crate::session::{
    self, CommandResult, Numbering, Placement, ScsiTask, Session, SessionEvent, TaskId, TextResponder,
};
use crate::text::{self, Special, TextBuilder};
use crate::wire::{
    self, DataDigest, DigestKind, Digests, Framing, Header, LoginResponse, Opcode, RejectReason, WireError, BHS_LEN,
};

/// How long a connection may stay in the login phase by default (the driver's `LoginTimeout`).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the answer to a login that failed authentication (0x0201) is held back.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Digest fault injection (debugging, tests): 0 disables a direction; N > 0 corrupts every Nth PDU of that direction
/// that carries a digest (the data digest when the PDU has one, else the header digest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestFaults {
    /// Treat every Nth received PDU with a digest as a digest error.
    pub receive_every: u32,
    /// Corrupt the digest of every Nth sent PDU with a digest.
    pub send_every: u32,
}

impl DigestFaults {
    /// No fault injection.
    pub const NONE: DigestFaults = DigestFaults { receive_every: 0, send_every: 0 };
}

/// MaxRecvDataSegmentLength in force during login (RFC 7143 §13.12).
const LOGIN_MAX_RECV: u32 = text::LOGIN_DATA_SEGMENT_LEN as u32;

/// Padding bytes (at most 3) appended after a data segment.
static ZEROS: [u8; 3] = [0; 3];

/// Errors of the connection layer (logged; each ends in a Reject or a closed connection, never a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    #[error("PDU of {0} bytes cannot be sent")]
    Emit(usize),
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The full feature phase ended (logout, NOP-In or Rsp timeout, cold reset, data digest error).
    Session(session::CloseReason),
    /// The login failed; its failure response is the last PDU sent.
    LoginFailed,
    /// The login did not complete within the login timeout.
    LoginTimeout,
    /// A header digest did not match.
    HeaderDigest,
    /// [`Connection::close`] was called.
    Local,
    /// A PDU could not be encoded (an internal error).
    Internal,
}

/// What the connection asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// The login completed; `target` is None for discovery sessions. (Boxed: this event is rare and large.)
    LoggedIn { params: Box<SessionParams>, target: Option<Box<TargetInfo>> },
    /// Execute this SCSI command; answer with [`Connection::complete_command`].
    Command(ScsiTask),
    /// Perform a task management function; answer with [`Connection::complete_task_mgmt`]. See
    /// [`SessionEvent::TaskMgmt`]: the tasks in `aborted` must still be completed, their results are dropped.
    TaskMgmt { itt: u32, function: u8, lun: u64, rtt: u32, ref_cmd_sn: SerialNumber, aborted: Vec<TaskId> },
    /// The connection is over: send what [`Connection::poll_transmit`] still returns, then close the socket.
    Closed { reason: CloseReason },
}

/// Where the data segment of the PDU at the front of the input goes (zero-copy receive, [`Connection::placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduPlacement {
    /// Bytes of BHS, AHS and header digest.
    pub header_len: usize,
    /// Bytes of the data segment, without padding.
    pub data_len: usize,
    /// Padding bytes after the data segment.
    pub pad_len: usize,
    pub kind: Placement,
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub pdus_received: u64,
    pub pdus_sent: u64,
    /// Data segments longer than MaxRecvDataSegmentLength and undecodable headers.
    pub framing_errors: u64,
    pub header_digest_errors: u64,
    pub data_digest_errors: u64,
    /// Logins answered "authentication failure".
    pub auth_failures: u64,
    /// Digest errors simulated by [`DigestFaults`] (received and sent).
    pub injected_digest_faults: u64,
}

/// Answers Text Requests of the full feature phase: SendTargets (§11.10.2, Appendix C) from the catalog; any other
/// key is answered `Reject` when the key exists (no renegotiation in the full feature phase) and `NotUnderstood`
/// otherwise (§6.2).
struct FfpText {
    catalog: Arc<dyn TargetCatalog>,
    portal: PortalInfo,
    initiator: String,
    target: Option<String>,
}

/// The pairs of a full-feature-phase text request, leniently: a pair whose value exceeds its key's limit (§6.1)
/// is kept with `None` (answered `key=Reject`); entries without `=`, with an invalid key name, invalid UTF-8 or no
/// terminating NUL, and repeated keys, cannot be answered and are dropped.
fn lenient_pairs(request: &[u8]) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut entries: Vec<&[u8]> = request.split(|&b| b == 0).collect();
    // What follows the last NUL is not a terminated pair.
    entries.pop();
    for entry in entries.into_iter().filter(|e| !e.is_empty()) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else { continue };
        let (Ok(key), Ok(value)) = (std::str::from_utf8(&entry[..eq]), std::str::from_utf8(&entry[eq + 1..])) else {
            continue;
        };
        if text::validate_key(key).is_err() || out.iter().any(|(k, _)| k == key) {
            tracing::debug!(key, "text request entry left unanswered");
            continue;
        }
        let value = (value.len() <= text::max_value_len(key)).then(|| value.to_string());
        out.push((key.to_string(), value));
    }
    out
}

impl TextResponder for FfpText {
    fn respond(&mut self, request: &[u8]) -> Vec<u8> {
        let mut answer = Vec::new();
        let mut others = TextBuilder::new();
        for (key, value) in lenient_pairs(request) {
            let Some(value) = value else {
                tracing::debug!(key, "text request value too long");
                if let Err(e) = others.push_special(&key, Special::Reject) {
                    tracing::debug!(error = %e, "text key left unanswered");
                }
                continue;
            };
            if key == "SendTargets" {
                answer.extend(send_targets_response(
                    &*self.catalog,
                    &self.initiator,
                    &self.portal,
                    self.target.as_deref(),
                    &value,
                ));
            } else {
                let special = if negotiate::key_def(&key).is_some() { Special::Reject } else { Special::NotUnderstood };
                if let Err(e) = others.push_special(&key, special) {
                    tracing::debug!(error = %e, "text key left unanswered");
                }
            }
        }
        answer.extend_from_slice(others.as_bytes());
        answer
    }
}

enum Phase {
    Login(Box<Login>),
    Full(Box<Session>),
}

/// One iSCSI connection (MaxConnections=1: one session). See the module documentation.
pub struct Connection {
    catalog: Arc<dyn TargetCatalog>,
    portal: PortalInfo,
    peer: SocketAddr,
    phase: Phase,
    digests: Digests,
    /// MaxRecvDataSegmentLength in force.
    max_recv: u32,
    /// Bytes of a rejected, oversized PDU still to be discarded from the input.
    skip: usize,
    /// Encoded PDUs of the connection layer (login responses), sent before the session's.
    out: VecDeque<Vec<Bytes>>,
    events: VecDeque<ConnEvent>,
    /// When the connection was accepted, and the end of its login phase.
    accepted: Instant,
    login_deadline: Instant,
    /// A failed login's answer held back until the instant (authentication failures, [`AUTH_FAILURE_DELAY`]).
    held: Option<(Instant, Vec<Bytes>)>,
    faults: DigestFaults,
    /// PDUs with a digest received / sent, for [`DigestFaults`].
    digest_rx: u64,
    digest_tx: u64,
    closed: bool,
    stats: ConnStats,
    /// Where the headers of sent PDUs are written: each header is split off as a `Bytes` sharing this block (a
    /// reference count, not an allocation per PDU); a new block is taken when one is used up.
    headers: BytesMut,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("portal", &self.portal)
            .field("full_feature", &matches!(self.phase, Phase::Full(_)))
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection from `peer` accepted on `portal`, entering the login phase.
    pub fn new(catalog: Arc<dyn TargetCatalog>, portal: PortalInfo, peer: SocketAddr, now: Instant) -> Self {
        let login = Login::new(catalog.clone(), portal);
        Connection {
            catalog,
            portal,
            peer,
            phase: Phase::Login(Box::new(login)),
            digests: Digests::NONE,
            max_recv: LOGIN_MAX_RECV,
            skip: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            accepted: now,
            login_deadline: now.checked_add(LOGIN_TIMEOUT).unwrap_or(now),
            held: None,
            faults: DigestFaults::NONE,
            digest_rx: 0,
            digest_tx: 0,
            closed: false,
            stats: ConnStats::default(),
            headers: BytesMut::new(),
        }
    }

    /// How long the login phase may last, counted from the accept (default [`LOGIN_TIMEOUT`]): a connection that has
    /// not completed its login by then is closed. No effect once the login completed.
    pub fn set_login_timeout(&mut self, timeout: Duration) {
        self.login_deadline = self.accepted.checked_add(timeout).unwrap_or(self.accepted);
    }

    /// Enables digest fault injection (see [`DigestFaults`]).
    pub fn set_digest_faults(&mut self, faults: DigestFaults) {
        self.faults = faults;
    }

    /// The portal the connection arrived on.
    pub fn portal(&self) -> PortalInfo {
        self.portal
    }

    /// Asks the initiator to log out within `within` (RFC 7143 §11.9.1, AsyncEvent 1), e.g. before a shutdown. A
    /// session that does not log out in time is told its connection is dropped (AsyncEvent 2) and closes. A
    /// discovery session or a connection still in the login phase is closed at once.
    pub fn request_logout(&mut self, within: Duration, now: Instant) {
        if self.is_closed() {
            return;
        }
        match &mut self.phase {
            Phase::Full(s) if s.params().session_type == SessionType::Normal && self.held.is_none() => {
                s.request_logout(within, now)
            }
            _ => self.close_with(CloseReason::Local),
        }
    }

    /// The initiator's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The session, once in the full feature phase.
    pub fn session(&self) -> Option<&Session> {
        match &self.phase {
            Phase::Full(s) => Some(s),
            Phase::Login(_) => None,
        }
    }

    /// Connection counters.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Consumes whole PDUs from the front of `buf` (a partial PDU stays there). Once the connection is closed the
    /// input is discarded. Never panics.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) {
        while self.handle_one(buf, now) {}
    }

    /// Consumes at most one whole PDU (or bytes of a rejected oversized PDU) from the front of `buf`. Returns
    /// false when nothing could be consumed (a partial PDU, or an empty or discarded input).
    pub fn handle_one(&mut self, buf: &mut BytesMut, now: Instant) -> bool {
        if self.is_closed() || self.held.is_some() {
            buf.clear();
            return false;
        }
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            buf.advance(n);
            self.skip -= n;
            return n > 0;
        }
        if buf.len() < BHS_LEN {
            return false;
        }
        let framing = match Framing::parse(&buf[..BHS_LEN], self.digests, self.max_recv) {
            Ok(f) => f,
            Err(WireError::DataSegmentTooLong { len, max }) => {
                self.oversized(buf, len, max, now);
                return true;
            }
            Err(e) => {
                tracing::debug!(error = %e, "unexpected framing error");
                return false;
            }
        };
        let total = framing.total_len();
        if buf.len() < total {
            return false;
        }
        let pdu = buf.split_to(total).freeze();
        self.stats.pdus_received += 1;
        self.handle_pdu(pdu, framing, now);
        true
    }

    /// Zero-copy receive: when the front of `buf` holds a complete header (BHS, AHS, header digest) of a PDU whose
    /// data segment the session lets the driver receive into its own buffer, say where it goes
    /// ([`Session::placement`]). Only in the full feature phase, without data digests (whose CRC covers bytes
    /// the session would then not see) and without digest fault injection (which counts every PDU with a digest).
    /// The driver that follows the answer removes `header_len` bytes, puts the next `data_len` bytes where `kind`
    /// says, drops `pad_len` padding bytes and calls [`Connection::handle_placed`].
    pub fn placement(&self, buf: &[u8]) -> Option<PduPlacement> {
        if self.is_closed()
            || self.held.is_some()
            || self.skip > 0
            || self.digests.data
            || self.faults.receive_every != 0
            || buf.len() < BHS_LEN
        {
            return None;
        }
        let Phase::Full(s) = &self.phase else { return None };
        let framing = Framing::parse(&buf[..BHS_LEN], self.digests, self.max_recv).ok()?;
        // Only write commands (W bit, §11.3.1) and Data-Out PDUs with data are ever placed (Session::placement):
        // the header of anything else, READ commands first of all, is not parsed twice.
        let opcode = buf[0] & Opcode::MASK;
        let write_command = opcode == Opcode::ScsiCommand as u8 && buf[1] & 0x20 != 0;
        let data_out = opcode == Opcode::DataOut as u8 && !framing.data_range().is_empty();
        if !write_command && !data_out {
            return None;
        }
        let header_len = framing.data_range().start;
        let head = buf.get(..header_len)?;
        framing.check_header_digest(head).ok()?;
        let header = Header::parse(head.get(framing.header_range())?).ok()?;
        let data_len = framing.data_range().len();
        let kind = s.placement(&header, data_len)?;
        let pad_len = framing.total_len() - framing.data_range().end;
        Some(PduPlacement { header_len, data_len, pad_len, kind })
    }

    /// Handle the PDU whose header is `header` (the `header_len` bytes [`Connection::placement`] named) and whose
    /// `data_len` data bytes the driver has placed as that answer said.
    pub fn handle_placed(&mut self, header: &[u8], data_len: usize, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.stats.pdus_received += 1;
        let Phase::Full(s) = &mut self.phase else { return };
        let bhs = header.get(..BHS_LEN).unwrap_or_default();
        let parsed = Framing::parse(bhs, self.digests, u32::MAX)
            .ok()
            .and_then(|f| header.get(f.header_range()))
            .map(Header::parse);
        match parsed {
            Some(Ok(h)) => s.handle_placed_pdu(h, bhs, data_len, now),
            _ => {
                self.stats.framing_errors += 1;
                s.reject_raw(RejectReason::ProtocolError.code(), bhs);
            }
        }
    }

    /// The next PDU to send as a chain of buffers.
    pub fn poll_transmit(&mut self) -> Option<Vec<Bytes>> {
        let mut chain = Vec::new();
        self.poll_transmit_into(&mut chain).then_some(chain)
    }

    /// [`Connection::poll_transmit`] appending the next PDU's buffers to `chain` (which the caller may reuse from
    /// PDU to PDU); false when there is nothing to send.
    pub fn poll_transmit_into(&mut self, chain: &mut Vec<Bytes>) -> bool {
        if let Some(c) = self.out.pop_front() {
            self.stats.pdus_sent += 1;
            chain.extend(c);
            return true;
        }
        loop {
            let Phase::Full(s) = &mut self.phase else { return false };
            let Some(pdu) = s.poll_pdu() else { return false };
            let start = chain.len();
            match encode_into(&pdu.header, pdu.data, self.digests, &mut self.headers, chain) {
                Ok(()) => {
                    self.stats.pdus_sent += 1;
                    if self.faults.send_every != 0 {
                        if let Some(c) = chain.get_mut(start..) {
                            self.inject_send_fault(c);
                        }
                    }
                    return true;
                }
                Err(e) => {
                    chain.truncate(start);
                    tracing::error!(error = %e, header = ?pdu.header, "PDU dropped");
                    self.close_with(CloseReason::Internal);
                }
            }
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            let Phase::Full(s) = &mut self.phase else { return None };
            let ev = s.poll_event()?;
            if let Some(ev) = self.translate(ev) {
                return Some(ev);
            }
        }
    }

    /// The SCSI layer finished task `id`.
    pub fn complete_command(&mut self, id: TaskId, result: CommandResult, now: Instant) {
        if let Phase::Full(s) = &mut self.phase {
            s.complete_command(id, result, now);
        }
    }

    /// The driver finished the task management function `itt` with `response` (§11.6.1).
    pub fn complete_task_mgmt(&mut self, itt: u32, response: u8, now: Instant) {
        if let Phase::Full(s) = &mut self.phase {
            s.complete_task_mgmt(itt, response, now);
        }
    }

    /// The earliest instant at which [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        if let Some((at, _)) = &self.held {
            return Some(*at);
        }
        match &self.phase {
            Phase::Login(_) => Some(self.login_deadline),
            Phase::Full(s) => s.poll_timeout(),
        }
    }

    /// Fire the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if let Some((at, _)) = &self.held {
            if now >= *at {
                if let Some((_, chain)) = self.held.take() {
                    self.out.push_back(chain);
                }
                self.close_with(CloseReason::LoginFailed);
            }
            return;
        }
        match &mut self.phase {
            Phase::Login(_) => {
                if now >= self.login_deadline {
                    tracing::info!(peer = %self.peer, "login timed out");
                    self.close_with(CloseReason::LoginTimeout);
                }
            }
            Phase::Full(s) => s.handle_timeout(now),
        }
    }

    /// Aborts the tasks `select(lun, id)` picks on behalf of another I_T nexus ([`Session::abort_tasks`]);
    /// nothing before the full feature phase.
    pub fn abort_tasks(&mut self, select: impl FnMut(u64, TaskId) -> bool) -> Vec<TaskId> {
        match &mut self.phase {
            Phase::Full(s) => s.abort_tasks(select),
            Phase::Login(_) => Vec::new(),
        }
    }

    /// Close the connection (management, shutdown): input is ignored from now on and a
    /// [`ConnEvent::Closed`] follows the events already queued.
    pub fn close(&mut self) {
        self.close_with(CloseReason::Local);
    }

    /// True once the connection is closed (by either layer).
    pub fn is_closed(&self) -> bool {
        self.closed || matches!(&self.phase, Phase::Full(s) if s.is_closed())
    }

    // ----- internals -----

    fn handle_pdu(&mut self, pdu: Bytes, framing: Framing, now: Instant) {
        let fault = self.receive_fault(&framing);
        let header_check = match fault {
            Some(DigestKind::Header) => Err(WireError::DigestMismatch { kind: DigestKind::Header, received: 0, computed: 1 }),
            _ => framing.check_header_digest(&pdu),
        };
        if let Err(e) = header_check {
            self.stats.header_digest_errors += 1;
            tracing::info!(peer = %self.peer, error = %e, "header digest error, closing");
            self.close_with(CloseReason::HeaderDigest);
            return;
        }
        let data_check = match fault {
            Some(DigestKind::Data) => Err(WireError::DigestMismatch { kind: DigestKind::Data, received: 0, computed: 1 }),
            _ => framing.check_data_digest(&pdu),
        };
        let data_ok = match data_check {
            Ok(()) => true,
            Err(e) => {
                self.stats.data_digest_errors += 1;
                tracing::debug!(error = %e, "data digest error");
                false
            }
        };
        let bhs = pdu.get(..BHS_LEN).unwrap_or_default();
        let header = pdu.get(framing.header_range()).map(Header::parse);
        let data = if framing.data_range().end <= pdu.len() { pdu.slice(framing.data_range()) } else { Bytes::new() };
        match &mut self.phase {
            Phase::Login(login) => {
                let (step, cid) = match header {
                    Some(Ok(Header::LoginRequest(req))) if data_ok => (login.handle(&req, &data), req.cid),
                    _ => (login.invalid_during_login(), 0),
                };
                self.login_step(step, cid, now);
            }
            Phase::Full(s) => match header {
                Some(Ok(h)) if data_ok => s.handle_pdu(h, bhs, data, now),
                Some(Ok(h)) => s.handle_data_digest_error(h, bhs, now),
                Some(Err(e)) => {
                    self.stats.framing_errors += 1;
                    tracing::debug!(error = %e, "undecodable PDU");
                    let reason = e.reject_reason().unwrap_or(RejectReason::ProtocolError);
                    s.reject_raw(reason.code(), bhs);
                }
                None => {}
            },
        }
    }

    /// A PDU announcing more data than MaxRecvDataSegmentLength.
    fn oversized(&mut self, buf: &mut BytesMut, len: u32, max: u32, now: Instant) {
        self.stats.framing_errors += 1;
        tracing::debug!(len, max, "data segment longer than MaxRecvDataSegmentLength");
        let bhs = Bytes::copy_from_slice(buf.get(..BHS_LEN).unwrap_or_default());
        match &mut self.phase {
            Phase::Full(s) => {
                s.reject_raw(RejectReason::ProtocolError.code(), &bhs);
                // Skip the whole PDU, wherever its bytes end up.
                let total = Framing::parse(&bhs, self.digests, u32::MAX).map(|f| f.total_len()).unwrap_or(BHS_LEN);
                self.skip = total;
            }
            Phase::Login(login) => {
                let step = login.invalid_during_login();
                self.login_step(step, 0, now);
            }
        }
    }

    fn login_step(&mut self, step: LoginStep, cid: u16, now: Instant) {
        match step {
            LoginStep::Respond { header, data } => self.queue_login(&header, data),
            LoginStep::Complete { header, data, params, target } => {
                let numbering = Numbering {
                    cid,
                    stat_sn: header.stat_sn.next(),
                    exp_cmd_sn: header.exp_cmd_sn,
                    max_cmd_sn: header.max_cmd_sn,
                };
                // The final Login Response goes out without digests; they apply to everything after it.
                self.queue_login(&header, data);
                let target_params = match &target {
                    Some(t) => t.params.clone(),
                    None => self.catalog.discovery_params(),
                };
                let responder = FfpText {
                    catalog: self.catalog.clone(),
                    portal: self.portal,
                    initiator: params.initiator_name.clone(),
                    target: target.as_ref().map(|t| t.name.clone()),
                };
                let session = Session::new(params.clone(), target_params, numbering, Box::new(responder), now);
                self.digests = Digests {
                    header: params.header_digest == Digest::Crc32c,
                    data: params.data_digest == Digest::Crc32c,
                };
                self.max_recv = params.max_recv_data_segment_length;
                self.phase = Phase::Full(Box::new(session));
                tracing::info!(peer = %self.peer, initiator = %params.initiator_name, "login complete");
                self.events.push_back(ConnEvent::LoggedIn { params: Box::new(params), target: target.map(Box::new) });
            }
            LoginStep::Fail { header, data } => {
                let auth_failure = u16::from(header.status_class) << 8 | u16::from(header.status_detail)
                    == crate::login::LoginStatus::AuthenticationFailure.code();
                if auth_failure {
                    self.stats.auth_failures += 1;
                    let data = if data.is_empty() { Vec::new() } else { vec![Bytes::from(data)] };
                    match encode(&Header::LoginResponse(header), data, Digests::NONE) {
                        Ok(chain) => {
                            let at = now.checked_add(AUTH_FAILURE_DELAY).unwrap_or(now);
                            self.held = Some((at, chain));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "login response dropped");
                            self.close_with(CloseReason::Internal);
                        }
                    }
                    return;
                }
                self.queue_login(&header, data);
                self.close_with(CloseReason::LoginFailed);
            }
        }
    }

    /// Whether this received PDU gets a simulated digest error, and which digest.
    fn receive_fault(&mut self, framing: &Framing) -> Option<DigestKind> {
        let kind = if self.digests.data && framing.data_len() > 0 {
            DigestKind::Data
        } else if self.digests.header {
            DigestKind::Header
        } else {
            return None;
        };
        if self.faults.receive_every == 0 {
            return None;
        }
        self.digest_rx += 1;
        if self.digest_rx % u64::from(self.faults.receive_every) != 0 {
            return None;
        }
        self.stats.injected_digest_faults += 1;
        tracing::warn!(peer = %self.peer, ?kind, "DEBUG_DIGEST_FAILURES: simulating a digest error on a received PDU");
        Some(kind)
    }

    /// Corrupts the last digest of every Nth sent PDU that has one (fault injection).
    fn inject_send_fault(&mut self, chain: &mut [Bytes]) {
        let has_data = chain.len() > 1;
        if self.faults.send_every == 0 || !(self.digests.header || (self.digests.data && has_data)) {
            return;
        }
        self.digest_tx += 1;
        if self.digest_tx % u64::from(self.faults.send_every) != 0 {
            return;
        }
        // The data digest ends the last buffer; the header digest ends the first (when the PDU has no data digest).
        let index = if self.digests.data && has_data { chain.len() - 1 } else { 0 };
        let Some(buf) = chain.get_mut(index) else { return };
        let mut bytes = buf.to_vec();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xff;
        }
        *buf = Bytes::from(bytes);
        self.stats.injected_digest_faults += 1;
        tracing::warn!(peer = %self.peer, "DEBUG_DIGEST_FAILURES: corrupted the digest of a sent PDU");
    }

    fn queue_login(&mut self, header: &LoginResponse, data: Vec<u8>) {
        let data = if data.is_empty() { Vec::new() } else { vec![Bytes::from(data)] };
        match encode(&Header::LoginResponse(header.clone()), data, Digests::NONE) {
            Ok(chain) => self.out.push_back(chain),
            Err(e) => {
                tracing::error!(error = %e, "login response dropped");
                self.close_with(CloseReason::Internal);
            }
        }
    }

    fn translate(&mut self, ev: SessionEvent) -> Option<ConnEvent> {
        match ev {
            SessionEvent::Command(t) => Some(ConnEvent::Command(t)),
            SessionEvent::TaskMgmt { itt, function, lun, rtt, ref_cmd_sn, aborted } => {
                Some(ConnEvent::TaskMgmt { itt, function, lun, rtt, ref_cmd_sn, aborted })
            }
            SessionEvent::Logout { reason } => {
                tracing::info!(peer = %self.peer, reason, "logout requested");
                None
            }
            SessionEvent::Close { reason } => {
                if self.closed {
                    return None;
                }
                self.closed = true;
                Some(ConnEvent::Closed { reason: CloseReason::Session(reason) })
            }
        }
    }

    /// Close from the connection layer: the session's pending events go first, then one Closed event.
    fn close_with(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        if let Phase::Full(s) = &mut self.phase {
            let mut pending = Vec::new();
            while let Some(ev) = s.poll_event() {
                pending.push(ev);
            }
            for ev in pending {
                if let Some(ev) = self.translate(ev) {
                    self.events.push_back(ev);
                }
            }
        }
        if !self.closed {
            self.closed = true;
            self.events.push_back(ConnEvent::Closed { reason });
        }
    }
}

/// One PDU as a chain of buffers: BHS (+ header digest), the data segment buffers, padding (+ data digest).
pub fn encode(header: &Header, data: Vec<Bytes>, digests: Digests) -> Result<Vec<Bytes>, ConnError> {
    let mut chain = Vec::with_capacity(data.len() + 2);
    encode_into(header, data, digests, &mut BytesMut::new(), &mut chain)?;
    Ok(chain)
}

/// Bytes of header block taken at a time by [`encode_into`] (about 300 BHSs).
const HEADER_BLOCK: usize = 16 * 1024;

/// [`encode`] appending to `chain`, with the header (and its digest) written into `headers` and split off it.
pub fn encode_into(
    header: &Header,
    data: Vec<Bytes>,
    digests: Digests,
    headers: &mut BytesMut,
    chain: &mut Vec<Bytes>,
) -> Result<(), ConnError> {
    let data_len: usize = data.iter().map(Bytes::len).sum();
    let dsl = u32::try_from(data_len).map_err(|_| ConnError::Emit(data_len))?;
    let head_len = header.buffer_len();
    let need = head_len + if digests.header { wire::DIGEST_LEN } else { 0 };
    if headers.capacity() < need {
        // Reclaims the block in place when every header split off it has been dropped, else takes a new one.
        headers.reserve(HEADER_BLOCK.max(need));
    }
    headers.resize(head_len, 0);
    if let Err(e) = header.emit(dsl, headers) {
        headers.clear();
        return Err(e.into());
    }
    if digests.header {
        let d = wire::header_digest(headers);
        headers.extend_from_slice(&wire::digest_to_wire(d));
    }
    chain.reserve(data.len() + 2);
    chain.push(headers.split().freeze());
    let mut digest = DataDigest::new();
    for b in data {
        if b.is_empty() {
            continue;
        }
        if digests.data {
            digest.update(&b);
        }
        chain.push(b);
    }
    let pad = &ZEROS[..wire::pad_len(data_len)];
    if digests.data && data_len > 0 {
        let mut tail = Vec::with_capacity(pad.len() + wire::DIGEST_LEN);
        tail.extend_from_slice(pad);
        tail.extend_from_slice(&wire::digest_to_wire(digest.finish_zero_padded()));
        chain.push(Bytes::from(tail));
    } else if !pad.is_empty() {
        chain.push(Bytes::from_static(pad));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::TargetInfo;
    use crate::params::TargetParams;
    use crate::wire::{DataOut, LogoutRequest, NopOut, ScsiCommand, TextRequest};

    const TARGET: &str = "iqn.2024-01.org.polltgt:disk1";
    const INITIATOR: &str = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test";

    struct TestCatalog;

    /// Default target parameters, with CRC32C digests allowed.
    fn target_params() -> TargetParams {
        TargetParams {
            header_digest: vec![Digest::None, Digest::Crc32c],
            data_digest: vec![Digest::None, Digest::Crc32c],
            ..TargetParams::default()
        }
    }

    impl TargetCatalog for TestCatalog {
        fn lookup(&self, target_name: &str, _initiator: &str, _portal: &PortalInfo) -> Option<TargetInfo> {
            (target_name == TARGET).then(|| TargetInfo { name: TARGET.into(), alias: None, params: target_params() })
        }
        fn send_targets(
            &self,
            _initiator: &str,
            _portal: &PortalInfo,
            which: Option<&str>,
        ) -> Vec<(String, Vec<String>)> {
            match which {
                None | Some(TARGET) => vec![(TARGET.into(), vec!["192.0.2.1:3260,1".into()])],
                Some(_) => Vec::new(),
            }
        }
        fn discovery_params(&self) -> TargetParams {
            TargetParams::default()
        }
        fn new_tsih(&self) -> u16 {
            0x42
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0)).collect()
    }

    fn keys(pairs: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in pairs {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    fn padded(mut v: Vec<u8>) -> Vec<u8> {
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// The initiator end: a virtual clock and the connection under test.
    struct Peer {
        c: Connection,
        now: Instant,
        t0: Instant,
    }

    impl Peer {
        fn new() -> Peer {
            Peer::with_catalog(Arc::new(TestCatalog))
        }

        fn with_catalog(catalog: Arc<dyn TargetCatalog>) -> Peer {
            let t0 = Instant::now();
            let portal =
                PortalInfo { local: "192.0.2.1:3260".parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))), tpgt: 1 };
            let peer = SocketAddr::from(([192, 0, 2, 9], 51000));
            Peer { c: Connection::new(catalog, portal, peer, t0), now: t0, t0 }
        }

        /// Feed bytes in one piece; whatever is not consumed stays in the returned buffer.
        fn feed(&mut self, bytes: &[u8]) -> BytesMut {
            let mut buf = BytesMut::from(bytes);
            self.c.handle_input(&mut buf, self.now);
            buf
        }

        /// Everything the connection has to send, concatenated.
        fn output(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            while let Some(chain) = self.c.poll_transmit() {
                for b in chain {
                    out.extend_from_slice(&b);
                }
            }
            out
        }

        /// The PDUs sent, decoded (no digests).
        fn pdus(&mut self) -> Vec<(Header, Vec<u8>)> {
            split_pdus(&self.output(), Digests::NONE)
        }

        fn events(&mut self) -> Vec<ConnEvent> {
            std::iter::from_fn(|| self.c.poll_event()).collect()
        }
    }

    fn split_pdus(mut out: &[u8], digests: Digests) -> Vec<(Header, Vec<u8>)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let f = Framing::parse(out, digests, u32::MAX).expect("framing");
            assert!(out.len() >= f.total_len(), "truncated output");
            f.check_digests(out).expect("digests");
            let h = Header::parse(&out[f.header_range()]).expect("header");
            v.push((h, out[f.data_range()].to_vec()));
            out = &out[f.total_len()..];
        }
        v
    }

    /// An initiator PDU encoded by the wire layer (for the non-golden tests).
    fn pdu(h: Header, data: &[u8], digests: Digests) -> Vec<u8> {
        let chain = encode(&h, vec![Bytes::copy_from_slice(data)], digests).expect("encode");
        chain.iter().flat_map(|b| b.iter().copied()).collect()
    }

    /// libiscsi's first (and only) login PDU when no CHAP user is set: CSG=1, NSG=3, T=1 (lib/login.c).
    fn libiscsi_login_text(header_digest: &str, data_digest: &str) -> Vec<u8> {
        keys(&[
            &format!("InitiatorName={INITIATOR}"),
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            &format!("HeaderDigest={header_digest}"),
            &format!("DataDigest={data_digest}"),
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
        ])
    }

    /// Login Request BHS written byte by byte from RFC 7143 §11.12 (independent of the wire layer's emitter).
    fn login_request_bytes(text: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0] = 0x43; // I=1, opcode 0x03
        b[1] = 0x87; // T=1, C=0, CSG=1, NSG=3
        b[2] = 0x00; // Version-max
        b[3] = 0x00; // Version-min
        b[4] = 0; // TotalAHSLength
        b[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
        b[8..14].copy_from_slice(&[0x80, 0x12, 0x34, 0x56, 0x00, 0x00]); // ISID (random format)
        b[14..16].copy_from_slice(&[0, 0]); // TSIH 0: new session
        b[16..20].copy_from_slice(&[0, 0, 0, 1]); // ITT
        b[20..22].copy_from_slice(&[0, 0]); // CID
        b[24..28].copy_from_slice(&[0, 0, 0, 1]); // CmdSN
        b[28..32].copy_from_slice(&[0, 0, 0, 0]); // ExpStatSN
        b.extend_from_slice(&padded(text.to_vec()));
        b
    }

    /// SCSI Command BHS for INQUIRY (allocation length 96), RFC 7143 §11.3.
    fn inquiry_bytes(itt: u32, cmd_sn: u32, exp_stat_sn: u32) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0] = 0x01; // SCSI Command, not immediate
        b[1] = 0xc1; // F=1, R=1, W=0, ATTR=Simple
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&96u32.to_be_bytes()); // Expected Data Transfer Length
        b[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
        b[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
        b[32..38].copy_from_slice(&[0x12, 0x00, 0x00, 0x00, 0x60, 0x00]); // CDB: INQUIRY, 96 bytes
        b
    }

    fn inquiry_data() -> Vec<u8> {
        let mut d = vec![0u8; 36];
        d[0] = 0x00; // direct access block device
        d[2] = 0x06; // SPC-4
        d[3] = 0x02; // response data format 2
        d[4] = 31; // additional length
        d[8..16].copy_from_slice(b"POLLTGT ");
        d[16..32].copy_from_slice(b"ramdisk         ");
        d[32..36].copy_from_slice(b"0001");
        d
    }

    /// The target's exact answer to [`libiscsi_login_text`] with HeaderDigest/DataDigest given.
    fn expected_login_response(header_digest: &str, data_digest: &str) -> Vec<u8> {
        let text = keys(&[
            &format!("HeaderDigest={header_digest}"),
            &format!("DataDigest={data_digest}"),
            "InitialR2T=No",
            "ImmediateData=Yes",
            "MaxBurstLength=262144",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "MaxOutstandingR2T=1",
            "ErrorRecoveryLevel=0",
            "IFMarker=No",
            "OFMarker=No",
            "MaxConnections=1",
            "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes",
            "FirstBurstLength=262144",
            "TargetPortalGroupTag=1",
            "MaxRecvDataSegmentLength=1048576",
        ]);
        let mut v = hex("23 87 00 00  00 00 00 00  80 12 34 56 00 00 00 42
             00 00 00 01  00 00 00 00  00 00 00 01  00 00 00 01
             00 00 00 20  00 00 00 00  00 00 00 00  00 00 00 00");
        v[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&padded(text));
        v
    }

    fn logged_in(p: &mut Peer, header_digest: &str, data_digest: &str) {
        let rest = p.feed(&login_request_bytes(&libiscsi_login_text(header_digest, data_digest)));
        assert!(rest.is_empty());
        let ev = p.events();
        assert!(matches!(&ev[..], [ConnEvent::LoggedIn { target: Some(t), .. }] if t.name == TARGET), "{ev:?}");
    }

    #[test]
    fn golden_libiscsi_login_and_inquiry() {
        let mut p = Peer::new();
        assert_eq!(p.c.poll_timeout(), Some(p.t0 + LOGIN_TIMEOUT));
        let rest = p.feed(&login_request_bytes(&libiscsi_login_text("None,CRC32C", "None")));
        assert!(rest.is_empty());
        assert_eq!(p.output(), expected_login_response("None", "None"));
        let ev = p.events();
        let [ConnEvent::LoggedIn { params, target: Some(t) }] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!((params.tsih, params.max_xmit_data_segment_length, t.name.as_str()), (0x42, 262144, TARGET));
        assert_eq!(p.c.poll_timeout(), Some(p.t0 + Duration::from_secs(30)), "NopInInterval replaces the login timer");

        p.feed(&inquiry_bytes(0x10, 1, 2));
        assert!(p.output().is_empty());
        let ev = p.events();
        let [ConnEvent::Command(task)] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!(task.cdb[..6], [0x12, 0, 0, 0, 0x60, 0]);
        assert_eq!((task.edtl, task.read, task.lun), (96, true, 0));
        let data = Bytes::from(inquiry_data());
        p.c.complete_command(
            task.id,
            CommandResult { status: 0, sense: None, data_in: vec![data], transfer_len: 36 },
            p.now,
        );
        let mut expected = hex("25 83 00 00  00 00 00 24  00 00 00 00  00 00 00 00
             00 00 00 10  ff ff ff ff  00 00 00 02  00 00 00 02
             00 00 00 21  00 00 00 00  00 00 00 00  00 00 00 3c");
        expected.extend_from_slice(&inquiry_data());
        assert_eq!(p.output(), expected);
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_bytes() {
        let mut p = Peer::new();
        let mut input = login_request_bytes(&libiscsi_login_text("None,CRC32C", "None"));
        input.extend_from_slice(&inquiry_bytes(0x10, 1, 2));
        let mut buf = BytesMut::new();
        for b in input {
            buf.extend_from_slice(&[b]);
            p.c.handle_input(&mut buf, p.now);
        }
        assert!(buf.is_empty());
        assert_eq!(p.output(), expected_login_response("None", "None"));
        let ev = p.events();
        assert!(matches!(&ev[..], [ConnEvent::LoggedIn { .. }, ConnEvent::Command(t)] if t.itt == 0x10), "{ev:?}");
    }

    #[test]
    fn partial_pdu_stays_in_the_buffer() {
        let mut p = Peer::new();
        let input = login_request_bytes(&libiscsi_login_text("None", "None"));
        let rest = p.feed(&input[..100]);
        assert_eq!(rest.len(), 100);
        assert!(p.output().is_empty());
    }

    #[test]
    fn digests_are_sent_and_checked_once_negotiated() {
        let mut p = Peer::new();
        let rest = p.feed(&login_request_bytes(&libiscsi_login_text("CRC32C", "CRC32C")));
        assert!(rest.is_empty());
        assert_eq!(p.output(), expected_login_response("CRC32C", "CRC32C"), "the login response has no digests");
        let ev = p.events();
        assert!(matches!(&ev[..], [ConnEvent::LoggedIn { params, .. }]
            if params.header_digest == Digest::Crc32c && params.data_digest == Digest::Crc32c));
        // The wire layer's CRC32C is the Castagnoli CRC (RFC 3720 Appendix B test vector: 32 zero bytes).
        assert_eq!(wire::crc32c(&[0u8; 32]), 0x8a91_36aa);
        let both = Digests::BOTH;
        let nop = |itt: u32| {
            Header::NopOut(NopOut {
                immediate: true,
                lun: 0,
                itt,
                ttt: wire::RESERVED_TAG,
                cmd_sn: SerialNumber(1),
                exp_stat_sn: SerialNumber(2),
            })
        };
        p.feed(&pdu(nop(7), b"ping!", both));
        let out = p.output();
        // BHS + header digest + 5 data bytes + 3 padding + data digest.
        assert_eq!(out.len(), 48 + 4 + 8 + 4);
        assert_eq!(out[48..52], wire::digest_to_wire(wire::header_digest(&out[..48])));
        assert_eq!(out[52..57], *b"ping!");
        assert_eq!(out[57..60], [0, 0, 0]);
        assert_eq!(out[60..64], wire::digest_to_wire(wire::crc32c(b"ping!\0\0\0")));
        let pdus = split_pdus(&out, both);
        assert!(matches!(&pdus[0].0, Header::NopIn(n) if n.itt == 7));
        // A corrupted data digest: Reject "data digest error", the connection goes on.
        let mut bad = pdu(nop(8), b"ping!", both);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        p.feed(&bad);
        let pdus = split_pdus(&p.output(), both);
        assert!(matches!(&pdus[0].0, Header::Reject(r) if r.reason == 0x02), "{pdus:?}");
        assert_eq!(pdus[0].1[..48], bad[..48]);
        assert!(!p.c.is_closed());
        // A corrupted header digest: the PDU length cannot be trusted, the connection closes.
        let mut bad = pdu(nop(9), b"", both);
        bad[50] ^= 0x01;
        p.feed(&bad);
        assert!(p.output().is_empty());
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::HeaderDigest }]);
        assert!(p.c.is_closed());
        assert_eq!((p.c.stats().data_digest_errors, p.c.stats().header_digest_errors), (1, 1));
    }

    #[test]
    fn data_digest_error_on_immediate_data_closes() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "CRC32C");
        let _ = p.output();
        let digests = Digests { header: false, data: true };
        let cmd = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 1,
            lun: 0,
            itt: 3,
            edtl: 512,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
            cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            ext_cdb: Vec::new(),
            bidi_read_edtl: None,
        });
        let mut bad = pdu(cmd, &[0x55; 512], digests);
        let last = bad.len() - 1;
        bad[last] ^= 0x10;
        p.feed(&bad);
        let pdus = split_pdus(&p.output(), digests);
        assert!(matches!(&pdus[0].0, Header::Reject(r) if r.reason == 0x02));
        assert_eq!(
            p.events(),
            vec![ConnEvent::Closed { reason: CloseReason::Session(session::CloseReason::DigestError) }]
        );
    }

    #[test]
    fn write_with_r2t_end_to_end() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let cmd = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 1,
            lun: 0,
            itt: 0x20,
            edtl: payload.len() as u32,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
            cdb: [0x2a; 16],
            ext_cdb: Vec::new(),
            bidi_read_edtl: None,
        });
        // Immediate data: 262144 (FirstBurstLength) would exceed nothing; send 8192 of it.
        p.feed(&pdu(cmd, &payload[..8192], Digests::NONE));
        let pdus = p.pdus();
        let [(Header::R2t(r), _)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((r.buffer_offset, r.desired_len), (8192, 262144));
        let mut stream = Vec::new();
        let mut pending = vec![r.clone()];
        while let Some(r) = pending.pop() {
            let end = (r.buffer_offset + r.desired_len) as usize;
            let mut off = r.buffer_offset as usize;
            let mut sn = 0;
            stream.clear();
            while off < end {
                let n = 65536.min(end - off);
                let d = Header::DataOut(DataOut {
                    final_: off + n == end,
                    lun: 0,
                    itt: 0x20,
                    ttt: r.ttt,
                    exp_stat_sn: SerialNumber(2),
                    data_sn: SerialNumber(sn),
                    buffer_offset: off as u32,
                });
                stream.extend_from_slice(&pdu(d, &payload[off..off + n], Digests::NONE));
                off += n;
                sn += 1;
            }
            p.feed(&stream);
            for (h, _) in p.pdus() {
                let Header::R2t(next) = h else { panic!("{h:?}") };
                pending.push(next);
            }
        }
        let ev = p.events();
        let [ConnEvent::Command(task)] = &ev[..] else { panic!("{ev:?}") };
        let got: Vec<u8> = task.data_out.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(got, payload);
    }

    #[test]
    fn discovery_session_send_targets() {
        let mut p = Peer::new();
        let text = keys(&[
            &format!("InitiatorName={INITIATOR}"),
            "SessionType=Discovery",
            "HeaderDigest=None",
            "DataDigest=None",
        ]);
        p.feed(&login_request_bytes(&text));
        let pdus = p.pdus();
        assert!(matches!(&pdus[0].0, Header::LoginResponse(l) if l.status_class == 0 && l.transit), "{pdus:?}");
        let ev = p.events();
        assert!(matches!(&ev[..], [ConnEvent::LoggedIn { target: None, .. }]), "{ev:?}");
        let req = Header::TextRequest(TextRequest {
            immediate: false,
            final_: true,
            continue_: false,
            lun: 0,
            itt: 0x31,
            ttt: wire::RESERVED_TAG,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
        });
        p.feed(&pdu(req, &keys(&["SendTargets=All", "X-vendor.Foo=1", "MaxBurstLength=4096"]), Digests::NONE));
        let pdus = p.pdus();
        let [(Header::TextResponse(t), data)] = &pdus[..] else { panic!("{pdus:?}") };
        assert!(t.final_ && t.ttt == wire::RESERVED_TAG && t.itt == 0x31);
        assert_eq!(
            data,
            &keys(&[
                &format!("TargetName={TARGET}"),
                "TargetAddress=192.0.2.1:3260,1",
                "X-vendor.Foo=NotUnderstood",
                "MaxBurstLength=Reject"
            ])
        );
        // SCSI commands are not supported in a discovery session.
        p.feed(&inquiry_bytes(0x40, 2, 3));
        let pdus = p.pdus();
        assert!(matches!(&pdus[0].0, Header::Reject(r) if r.reason == 0x05), "{pdus:?}");
    }

    #[test]
    fn login_timeout_closes() {
        let mut p = Peer::new();
        p.now = p.t0 + Duration::from_secs(29);
        p.c.handle_timeout(p.now);
        assert!(p.events().is_empty());
        p.now = p.t0 + LOGIN_TIMEOUT;
        p.c.handle_timeout(p.now);
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::LoginTimeout }]);
        assert!(p.c.is_closed() && p.c.poll_timeout().is_none());
        let rest = p.feed(&login_request_bytes(&libiscsi_login_text("None", "None")));
        assert!(rest.is_empty() && p.output().is_empty(), "input after close is discarded");
    }

    #[test]
    fn configured_login_timeout_counts_from_the_accept_and_ends_with_the_login() {
        let mut p = Peer::new();
        p.now = p.t0 + Duration::from_secs(1);
        p.c.set_login_timeout(Duration::from_secs(2));
        assert_eq!(p.c.poll_timeout(), Some(p.t0 + Duration::from_secs(2)), "from the accept, not from the setting");
        p.now = p.t0 + Duration::from_millis(1999);
        p.c.handle_timeout(p.now);
        assert!(p.events().is_empty() && !p.c.is_closed());
        p.now = p.t0 + Duration::from_secs(2);
        p.c.handle_timeout(p.now);
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::LoginTimeout }]);
        // A login that completes in time is not affected afterwards.
        let mut p = Peer::new();
        p.c.set_login_timeout(Duration::from_secs(2));
        logged_in(&mut p, "None", "None");
        p.now = p.t0 + Duration::from_secs(3);
        p.c.handle_timeout(p.now);
        assert!(!p.c.is_closed(), "the login timeout ends with the login");
    }

    #[test]
    fn non_login_pdu_during_login_fails_the_login() {
        let mut p = Peer::new();
        p.feed(&inquiry_bytes(1, 1, 0));
        let pdus = p.pdus();
        let [(Header::LoginResponse(l), _)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((l.status_class, l.status_detail), (2, 0x0b));
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::LoginFailed }]);
    }

    #[test]
    fn oversized_login_pdu_fails_the_login() {
        let mut p = Peer::new();
        let mut text = libiscsi_login_text("None", "None");
        text.resize(9000, b'x');
        p.feed(&login_request_bytes(&text));
        let pdus = p.pdus();
        assert!(matches!(&pdus[..], [(Header::LoginResponse(l), _)] if l.status_class == 2));
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::LoginFailed }]);
    }

    #[test]
    fn oversized_data_segment_in_full_feature_phase_is_rejected_and_skipped() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        // MaxRecvDataSegmentLength is 1 MiB: send a NOP-Out with 1 MiB + 4 bytes, in pieces, then a ping.
        let big = vec![0xabu8; (1 << 20) + 4];
        let nop = |itt: u32| {
            Header::NopOut(NopOut {
                immediate: true,
                lun: 0,
                itt,
                ttt: wire::RESERVED_TAG,
                cmd_sn: SerialNumber(1),
                exp_stat_sn: SerialNumber(2),
            })
        };
        let mut head = nop(1).to_vec(big.len() as u32).unwrap_or_default();
        head.extend_from_slice(&big);
        head.extend_from_slice(&pdu(nop(2), b"abcd", Digests::NONE));
        let mut buf = BytesMut::new();
        for piece in head.chunks(100_000) {
            buf.extend_from_slice(piece);
            p.c.handle_input(&mut buf, p.now);
        }
        assert!(buf.is_empty());
        let pdus = p.pdus();
        assert_eq!(pdus.len(), 2, "{pdus:?}");
        assert!(matches!(&pdus[0].0, Header::Reject(r) if r.reason == 0x04));
        assert_eq!(pdus[0].1[16..20], [0, 0, 0, 1]);
        assert!(matches!(&pdus[1].0, Header::NopIn(n) if n.itt == 2));
        assert_eq!(pdus[1].1, b"abcd");
        assert_eq!(p.c.stats().framing_errors, 1);
    }

    #[test]
    fn unknown_opcode_and_bad_field_are_rejected() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        let mut vendor = vec![0u8; 48];
        vendor[0] = 0x1c;
        vendor[16..20].copy_from_slice(&[0, 0, 0, 5]);
        p.feed(&vendor);
        // A Logout Request with a data segment: its layout has none (invalid field).
        let mut logout = Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: 0,
            itt: 6,
            cid: 0,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
        })
        .to_vec(0)
        .unwrap_or_default();
        logout[7] = 4;
        logout.extend_from_slice(b"abcd");
        p.feed(&logout);
        let pdus = p.pdus();
        let reasons: Vec<u8> = pdus
            .iter()
            .map(|(h, _)| match h {
                Header::Reject(r) => r.reason,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reasons, vec![0x05, 0x09]);
        assert_eq!(pdus[0].1, vendor);
        assert!(!p.c.is_closed());
    }

    #[test]
    fn logout_then_close() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        let logout = Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: 0,
            itt: 0x77,
            cid: 0,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
        });
        p.feed(&pdu(logout, &[], Digests::NONE));
        let pdus = p.pdus();
        assert!(
            matches!(&pdus[..], [(Header::LogoutResponse(l), _)] if l.itt == 0x77 && l.response == 0 && l.time2wait == 2)
        );
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::Session(session::CloseReason::Logout) }]);
        assert!(p.c.is_closed());
        p.c.close();
        assert!(p.events().is_empty(), "one Closed event only");
    }

    #[test]
    fn local_close() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        p.feed(&inquiry_bytes(0x10, 1, 2));
        p.c.close();
        let ev = p.events();
        assert!(matches!(&ev[..], [ConnEvent::Command(_), ConnEvent::Closed { reason: CloseReason::Local }]), "{ev:?}");
        assert!(p.c.is_closed());
        p.c.close();
        assert!(p.events().is_empty());
    }

    /// The test catalog, with a CHAP account required on the target.
    struct ChapCatalog;

    impl TargetCatalog for ChapCatalog {
        fn lookup(&self, t: &str, i: &str, p: &PortalInfo) -> Option<TargetInfo> {
            TestCatalog.lookup(t, i, p)
        }
        fn send_targets(&self, i: &str, p: &PortalInfo, w: Option<&str>) -> Vec<(String, Vec<String>)> {
            TestCatalog.send_targets(i, p, w)
        }
        fn discovery_params(&self) -> TargetParams {
            TargetParams::default()
        }
        fn new_tsih(&self) -> u16 {
            7
        }
        fn credentials(&self, _target: Option<&str>) -> crate::chap::Credentials {
            crate::chap::Credentials {
                incoming: vec![crate::chap::ChapUser::new("joe", b"secretsecret12".to_vec())],
                outgoing: None,
            }
        }
    }

    #[test]
    fn authentication_failure_is_answered_after_the_delay() {
        let mut p = Peer::with_catalog(Arc::new(ChapCatalog));
        // libiscsi without a CHAP user starts in the operational stage: the target requires CHAP, so 0x0201.
        p.feed(&login_request_bytes(&libiscsi_login_text("None", "None")));
        assert!(p.output().is_empty(), "the failure is held back");
        assert!(p.events().is_empty() && !p.c.is_closed());
        assert_eq!(p.c.poll_timeout(), Some(p.t0 + AUTH_FAILURE_DELAY));
        // Input during the delay is ignored.
        let rest = p.feed(&login_request_bytes(&libiscsi_login_text("None", "None")));
        assert!(rest.is_empty());
        p.now = p.t0 + AUTH_FAILURE_DELAY - Duration::from_millis(1);
        p.c.handle_timeout(p.now);
        assert!(p.output().is_empty() && p.events().is_empty());
        p.now = p.t0 + AUTH_FAILURE_DELAY;
        p.c.handle_timeout(p.now);
        let pdus = p.pdus();
        let [(Header::LoginResponse(l), _)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((l.status_class, l.status_detail), (2, 1));
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::LoginFailed }]);
        assert_eq!(p.c.stats().auth_failures, 1);
        assert!(p.c.poll_timeout().is_none());
    }

    #[test]
    fn other_login_failures_are_answered_at_once() {
        let mut p = Peer::new();
        // Unknown target: 0x0203 at once.
        let body = keys(&[&format!("InitiatorName={INITIATOR}"), "TargetName=iqn.2024-01.org.polltgt:nope"]);
        p.feed(&login_request_bytes(&body));
        let pdus = p.pdus();
        assert!(matches!(&pdus[..], [(Header::LoginResponse(r), _)] if (r.status_class, r.status_detail) == (2, 3)));
        assert_eq!(p.c.stats().auth_failures, 0);
    }

    fn nop(itt: u32, cmd_sn: u32) -> Header {
        Header::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: wire::RESERVED_TAG,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(2),
        })
    }

    #[test]
    fn injected_receive_faults_hit_every_nth_pdu_with_a_digest() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "CRC32C");
        let _ = p.output();
        p.c.set_digest_faults(DigestFaults { receive_every: 3, send_every: 0 });
        let digests = Digests { header: false, data: true };
        // Only PDUs carrying a digest count: data-less NOP-Outs have none with HeaderDigest=None.
        p.feed(&pdu(nop(1, 1), b"", digests));
        p.feed(&pdu(nop(2, 1), b"abcd", digests));
        p.feed(&pdu(nop(3, 1), b"abcd", digests));
        let pdus = split_pdus(&p.output(), digests);
        assert!(pdus.iter().all(|(h, _)| matches!(h, Header::NopIn(_))), "{pdus:?}");
        // The third PDU with a data digest is treated as a data digest error: Reject, the connection goes on.
        p.feed(&pdu(nop(4, 1), b"abcd", digests));
        let pdus = split_pdus(&p.output(), digests);
        assert!(matches!(&pdus[..], [(Header::Reject(r), _)] if r.reason == 0x02), "{pdus:?}");
        assert_eq!((p.c.stats().injected_digest_faults, p.c.stats().data_digest_errors), (1, 1));
        assert!(!p.c.is_closed());
    }

    #[test]
    fn injected_header_digest_fault_closes() {
        let mut p = Peer::new();
        logged_in(&mut p, "CRC32C", "None");
        let _ = p.output();
        p.c.set_digest_faults(DigestFaults { receive_every: 1, send_every: 0 });
        let digests = Digests { header: true, data: false };
        p.feed(&pdu(nop(1, 1), b"", digests));
        assert!(p.output().is_empty());
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::HeaderDigest }]);
    }

    #[test]
    fn injected_send_faults_corrupt_every_nth_digest() {
        let mut p = Peer::new();
        logged_in(&mut p, "CRC32C", "CRC32C");
        let _ = p.output();
        p.c.set_digest_faults(DigestFaults { receive_every: 0, send_every: 2 });
        let both = Digests::BOTH;
        for (itt, data) in [(1u32, &b""[..]), (2, b""), (3, b"ping"), (4, b"ping")] {
            p.feed(&pdu(nop(itt, 1), data, both));
        }
        let out = p.output();
        let mut rest = &out[..];
        let mut verdicts = Vec::new();
        while !rest.is_empty() {
            let f = Framing::parse(rest, both, u32::MAX).expect("framing");
            verdicts.push((f.check_header_digest(rest).is_ok(), f.check_data_digest(rest).is_ok()));
            rest = &rest[f.total_len()..];
        }
        // Second PDU: header digest corrupted (no data); fourth: data digest corrupted, header intact.
        assert_eq!(verdicts, vec![(true, true), (false, true), (true, true), (true, false)]);
        assert_eq!(p.c.stats().injected_digest_faults, 2);
    }

    #[test]
    fn logout_request_then_logout() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        p.c.request_logout(Duration::from_secs(10), p.now);
        let pdus = p.pdus();
        let [(Header::AsyncMessage(a), _)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((a.event, a.param3, a.stat_sn), (1, 10, SerialNumber(2)));
        assert_eq!(p.c.poll_timeout(), Some(p.now + Duration::from_secs(10)));
        // New commands are rejected "waiting for logout".
        p.feed(&inquiry_bytes(0x10, 1, 3));
        let pdus = p.pdus();
        assert!(matches!(&pdus[..], [(Header::Reject(r), _)] if r.reason == 0x0c), "{pdus:?}");
        assert!(p.events().is_empty());
        let logout = Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: 0,
            itt: 0x77,
            cid: 0,
            cmd_sn: SerialNumber(2),
            exp_stat_sn: SerialNumber(4),
        });
        p.feed(&pdu(logout, &[], Digests::NONE));
        let pdus = p.pdus();
        assert!(matches!(&pdus[..], [(Header::LogoutResponse(l), _)] if l.response == 0), "{pdus:?}");
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::Session(session::CloseReason::Logout) }]);
    }

    #[test]
    fn logout_request_not_honoured_drops_the_connection() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        p.c.request_logout(Duration::from_secs(5), p.now);
        let _ = p.pdus();
        p.now += Duration::from_secs(5);
        p.c.handle_timeout(p.now);
        let pdus = p.pdus();
        let [(Header::AsyncMessage(a), _)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((a.event, a.param1, a.param2, a.param3), (2, 0, 2, 0));
        assert_eq!(
            p.events(),
            vec![ConnEvent::Closed { reason: CloseReason::Session(session::CloseReason::LogoutTimeout) }]
        );
    }

    #[test]
    fn logout_request_during_login_closes() {
        let mut p = Peer::new();
        p.c.request_logout(Duration::from_secs(5), p.now);
        assert_eq!(p.events(), vec![ConnEvent::Closed { reason: CloseReason::Local }]);
    }

    #[test]
    fn full_feature_text_with_oversized_and_malformed_keys() {
        let mut p = Peer::new();
        logged_in(&mut p, "None", "None");
        let _ = p.output();
        let mut body = b"X-big=".to_vec();
        body.extend(std::iter::repeat_n(b'v', 9000));
        body.push(0);
        body.extend_from_slice(b"no-equals\0bad key=1\0SendTargets=\0X-big=again\0tail-without-nul");
        let req = Header::TextRequest(TextRequest {
            immediate: true,
            final_: true,
            continue_: false,
            lun: 0,
            itt: 0x44,
            ttt: wire::RESERVED_TAG,
            cmd_sn: SerialNumber(1),
            exp_stat_sn: SerialNumber(2),
        });
        p.feed(&pdu(req, &body, Digests::NONE));
        let pdus = p.pdus();
        let [(Header::TextResponse(t), data)] = &pdus[..] else { panic!("{pdus:?}") };
        assert!(t.final_ && t.itt == 0x44);
        assert_eq!(
            data,
            &keys(&[&format!("TargetName={TARGET}"), "TargetAddress=192.0.2.1:3260,1", "X-big=Reject"])
        );
        assert!(!p.c.is_closed());
    }
}
