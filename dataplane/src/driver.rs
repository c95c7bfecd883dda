//! The per-reactor driver: owns this reactor's connections and bdev channels and moves data between the TCP stack,
//! the iSCSI connection state machines, the SCSI logical units and the block devices.
//!
//! Flow of a command: bytes from the socket go into the connection's receive buffer; the iSCSI core consumes whole
//! PDUs and, once a command's data has arrived, emits it; the driver routes it to the LUN's logical unit, which either
//! answers at once (emulated commands) or asks for a block operation; the driver submits that to the device's channel
//! on this reactor with a pool buffer; the completion is turned into SCSI status by the LU and handed back to the
//! iSCSI core, whose PDUs go to the TCP stack as buffer chains (READ data by reference, never copied).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use polltgt_bdev::{Channel, Completion, Io, Op};
use polltgt_hugepages::{BufPool, PoolError};
use polltgt_iscsi::conn::{ConnEvent, Connection};
use polltgt_iscsi::login::PortalInfo;
use polltgt_iscsi::params::{SessionParams, SessionType};
use polltgt_iscsi::session::{CommandResult, ScsiTask, TaskId};
use polltgt_iscsi::wire::{TmfFunction, TmfResponseCode};
use polltgt_scsi::{Action, Command, IoResult, NexusId, Response, Sense};
use polltgt_tcpstack::{KernelConn, RecvStatus};
// Integer keys (bdev tags, device ids) on the command path: FxHash, not SipHash.
use rustc_hash::FxHashMap as HashMap;

use crate::placement::Choice;
use crate::reactor::{PollStatus, Poller, WakeSet};
use crate::rx::{RxCounters, RxPath};
use crate::registry::{Device, Registry, TargetEntry};
use crate::sessions::{ConnRef, ConnectionInfo, SessionInfo};

mod reservations;

mod blockops;

mod xcopy;

mod sanitize;

mod tmf;

pub use tmf::RESET_WAIT_LIMIT;

use blockops::{BlockOp, Hold, LocalLock, Parked};

/// Stop pulling PDUs out of a connection while this many bytes wait in the socket send queue.
const SEND_HIGH_WATER: usize = 8 << 20;
/// Receive calls per connection per poll, so one busy connection cannot starve the others.
const RECV_BUDGET: usize = 4;

/// SCSI opcode of REPORT LUNS (SPC-4 §6.33), answered at target level.
const REPORT_LUNS: u8 = 0xa0;
/// INQUIRY and REQUEST SENSE: reported without delivering a unit attention (SAM-5 §5.14).
const INQUIRY: u8 = 0x12;
const REQUEST_SENSE: u8 = 0x03;
/// REPORTED LUNS DATA HAS CHANGED (SPC-4, ASC/ASCQ 3F/0E).
pub(crate) const REPORTED_LUNS_CHANGED: (u8, u8) = (0x3f, 0x0e);

/// Per-reactor counters.
#[derive(Debug, Default, Clone)]
pub struct DriverStats {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// READ data handed to the transport as references to the pool buffers the bdev filled (never copied).
    pub read_bytes_by_reference: u64,
    /// Zero-copy receive of write data (see [`crate::rx`]).
    pub rx: RxCounters,
    /// Connections moved here after login (target cpu_mask, dedicated reactors).
    pub connections_moved_in: u64,
    /// Transmit counters of the connections (closed ones accumulated; [`ReactorState::snapshot`] adds live ones).
    pub tx: TxCounters,
    /// Commands that waited for pool buffers (back-pressure at the pool's cap), and those waiting now.
    pub buffer_waits: u64,
    pub buffer_waiting: u64,
}

/// Transmit counters summed over connections (from `polltgt_tcpstack::ConnStats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxCounters {
    pub bytes_zerocopy: u64,
    pub bytes_copied: u64,
    pub zerocopy_notifications: u64,
    pub zerocopy_copied: u64,
    pub zerocopy_fallbacks: u64,
}

impl TxCounters {
    fn add(&mut self, s: &polltgt_tcpstack::ConnStats) {
        self.bytes_zerocopy += s.bytes_zerocopy;
        self.bytes_copied += s.bytes_copied;
        self.zerocopy_notifications += s.zerocopy_notifications;
        self.zerocopy_copied += s.zerocopy_copied;
        self.zerocopy_fallbacks += s.zerocopy_fallbacks;
    }
}

/// A command waiting for a pool buffer (back-pressure): it runs again when buffers come back.
struct Stalled {
    slot: usize,
    generation: u64,
    task: ScsiTask,
}

/// I/O counters of one session (SCST's session `commands`, read/write command and byte counts).
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionCounters {
    pub commands: u64,
    pub read_commands: u64,
    pub write_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Commands answered with a status other than GOOD.
    pub errors: u64,
}

/// The session context of a logged-in normal session.
pub(crate) struct SessionCtx {
    /// The session's view of its target (LUN set of its initiator group); replaced when the target changes.
    pub(crate) target: Arc<TargetEntry>,
    pub(crate) nexus: NexusId,
    pub(crate) params: Box<SessionParams>,
    pub(crate) counters: SessionCounters,
    /// Unit attentions established for this I_T nexus by target-level changes, oldest first: for any LUN (None,
    /// REPORTED LUNS DATA HAS CHANGED) or one LUN (INQUIRY DATA HAS CHANGED after a replace).
    pub(crate) pending_ua: VecDeque<(Option<u64>, Sense)>,
}

/// A command waiting for its bdev I/O.
struct Pending {
    slot: usize,
    generation: u64,
    task: TaskId,
    device: Arc<Device>,
    lun: u64,
    cdb: polltgt_iscsi::Cdb,
    edtl: u32,
    kind: PendingKind,
    /// What the command holds in the device's range lock.
    hold: Hold,
    /// The task was aborted on behalf of another I_T nexus (PREEMPT AND ABORT, a reset): a multi-step operation
    /// stops after its current step.
    aborted: bool,
}

/// What a finished block command counts as.
#[derive(Clone, Copy)]
enum IoClass {
    Read,
    Write,
    Other,
}

enum PendingKind {
    Read { transfer_len: u64, send: usize },
    Write { transfer_len: u64 },
    Flush,
    /// A multi-step operation (blockops).
    Ops(Box<BlockOp>),
    /// An EXTENDED COPY (xcopy.rs).
    Copy(Box<xcopy::CopyOp>),
}

/// A task management request waiting for the tasks it affects to finish.
struct PendingTmf {
    itt: u32,
    function: u8,
    lun: u64,
    waiting_for: Vec<u64>,
    /// A reset waiting for every reactor to abort the other sessions' tasks (tmf.rs), with its deadline.
    reset: Option<(Arc<tmf::ResetJoin>, Instant)>,
    /// The deadline passed first: answered FUNCTION REJECTED.
    rejected: bool,
}

pub(crate) struct ConnSlot {
    generation: u64,
    tcp: KernelConn,
    pub(crate) iscsi: Connection,
    rx: RxPath,
    pub(crate) session: Option<SessionCtx>,
    /// The portal address the connection arrived on, and the initiator's address.
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    /// Bdev tags of this connection's commands in flight.
    pub(crate) in_flight: Vec<u64>,
    tmfs: Vec<PendingTmf>,
    pub(crate) closing: bool,
    peer_closed: bool,
    /// Target portal group tag of the portal the connection arrived on.
    tpgt: u16,
    /// TSIH under which the session is registered in the session table.
    tsih: Option<u16>,
    /// The reactor placement of its normal session (counted in the directory until the connection ends).
    placed: Option<Choice>,
}

/// Everything one reactor owns.
pub struct ReactorState {
    pub id: usize,
    pub(crate) registry: Arc<Registry>,
    pool: BufPool,
    pub(crate) slots: Vec<Option<ConnSlot>>,
    free_slots: Vec<usize>,
    generation: u64,
    pub(crate) channels: HashMap<u64, Box<dyn Channel>>,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    completions: Vec<Completion>,
    /// PREEMPT AND ABORTs waiting for aborted tasks' bdev I/O (reservations.rs).
    preempt_waits: Vec<reservations::PreemptWait>,
    /// This reactor's state in the range locks of the devices it did I/O on.
    locks: HashMap<u64, LocalLock>,
    /// Commands waiting for their range.
    parked: Vec<Parked>,
    /// Commands waiting for buffers, oldest first.
    stalled: VecDeque<Stalled>,
    /// Set while a stalled command runs again (it may take a buffer although older ones... it is the oldest).
    retrying: bool,
    /// Transmits of at least this many bytes use MSG_ZEROCOPY (None: never).
    zerocopy_threshold: Option<usize>,
    /// EXTENDED COPYs waiting for the range of their next step.
    copy_waits: Vec<xcopy::CopyWait>,
    /// One PDU's buffers on their way from a connection to its socket (reused: no vector per PDU).
    tx_chain: Vec<Bytes>,
    tx_done: Vec<u64>,
    /// Sanitize operations in flight, by the tag of their I/O (sanitize.rs).
    sanitizes: HashMap<u64, sanitize::SanitizeRun>,
    /// Resets waiting for aborted tasks' bdev I/O (tmf.rs).
    resets: tmf::Resets,
    pub stats: DriverStats,
}

impl ReactorState {
    pub fn new(id: usize, registry: Arc<Registry>, pool: BufPool) -> ReactorState {
        ReactorState {
            id,
            registry,
            pool,
            slots: Vec::new(),
            free_slots: Vec::new(),
            generation: 0,
            channels: HashMap::default(),
            pending: HashMap::default(),
            next_tag: 1,
            completions: Vec::new(),
            preempt_waits: Vec::new(),
            locks: HashMap::default(),
            parked: Vec::new(),
            stalled: VecDeque::new(),
            retrying: false,
            zerocopy_threshold: None,
            copy_waits: Vec::new(),
            tx_chain: Vec::new(),
            tx_done: Vec::new(),
            sanitizes: HashMap::default(),
            resets: tmf::Resets::default(),
            stats: DriverStats::default(),
        }
    }

    /// Send transmits of at least `threshold` bytes with MSG_ZEROCOPY on connections adopted from now on.
    pub fn set_zerocopy_threshold(&mut self, threshold: Option<usize>) {
        self.zerocopy_threshold = threshold;
    }

    /// Takes in a connection another reactor moved here right after its login, and sets its session up here.
    fn adopt_moved(
        &mut self,
        mut slot: ConnSlot,
        params: Box<SessionParams>,
        target: Option<Box<polltgt_iscsi::login::TargetInfo>>,
    ) {
        self.generation += 1;
        slot.generation = self.generation;
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.stats.connections_moved_in += 1;
        self.logged_in(i, &params, target.as_deref());
    }

    /// Moves connection `i` to reactor `to` right after its login (nothing is in flight, no command can have
    /// arrived: the login response has not been sent yet). The session is set up by the reactor it moves to.
    fn move_connection(
        &mut self,
        i: usize,
        to: usize,
        params: Box<SessionParams>,
        target: Option<Box<polltgt_iscsi::login::TargetInfo>>,
    ) {
        let Some(dir) = self.registry.placement() else { return };
        let Some(dest) = dir.get(to) else { return };
        let Some(slot) = self.slots[i].take() else { return };
        self.free_slots.push(i);
        dest.migrations_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(from = self.id, to, "session moves to its target's reactor");
        if !dest.handle.send(move |s: &mut ReactorState, _now| s.adopt_moved(slot, params, target)) {
            tracing::warn!(to, "reactor stopped; connection dropped");
        }
    }

    /// The counters, with the live connections' transmit counters added.
    pub fn snapshot(&self) -> DriverStats {
        let mut s = self.stats.clone();
        for slot in self.slots.iter().flatten() {
            s.tx.add(&slot.tcp.stats());
        }
        s.buffer_waiting = self.stalled.len() as u64;
        s
    }

    /// Number of open connections on this reactor.
    pub fn connections(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Adopt a freshly accepted connection.
    pub fn adopt(&mut self, mut tcp: KernelConn, local: std::net::SocketAddr, peer: std::net::SocketAddr, now: Instant) {
        if self.zerocopy_threshold.is_some() {
            tcp.set_zerocopy(self.zerocopy_threshold);
        }
        let tpgt = self
            .registry
            .portals()
            .iter()
            .find(|p| p.addr.port() == local.port() && (p.addr.ip().is_unspecified() || p.addr.ip() == local.ip()))
            .map(|p| p.tpgt)
            .unwrap_or(1);
        let portal = PortalInfo { local, tpgt };
        let catalog: Arc<dyn polltgt_iscsi::login::TargetCatalog> = self.registry.clone();
        let mut iscsi = Connection::new(catalog, portal, peer, now);
        iscsi.set_digest_faults(self.registry.digest_faults());
        iscsi.set_login_timeout(self.registry.login_timeout());
        self.generation += 1;
        let slot = ConnSlot {
            generation: self.generation,
            tcp,
            iscsi,
            rx: RxPath::new(),
            session: None,
            local,
            peer,
            in_flight: Vec::new(),
            tmfs: Vec::new(),
            closing: false,
            peer_closed: false,
            tpgt,
            tsih: None,
            placed: None,
        };
        match self.free_slots.pop() {
            Some(i) => self.slots[i] = Some(slot),
            None => self.slots.push(Some(slot)),
        }
        self.stats.connections_accepted += 1;
        tracing::info!(reactor = self.id, %peer, %local, "connection accepted");
    }

    /// Poll every connection: receive, run the iSCSI core, execute commands, transmit, timers.
    pub fn poll_connections(&mut self, now: Instant) -> PollStatus {
        let mut status = PollStatus::Idle;
        for i in 0..self.slots.len() {
            if self.slots[i].is_none() {
                continue;
            }
            if self.poll_connection(i, now) == PollStatus::Busy {
                status = PollStatus::Busy;
            }
        }
        status
    }

    fn poll_connection(&mut self, i: usize, now: Instant) -> PollStatus {
        let mut busy = false;
        // Receive.
        if let Some(slot) = self.slots[i].as_mut() {
            if !slot.closing && !slot.peer_closed {
                let rxc = &mut self.stats.rx;
                for _ in 0..RECV_BUDGET {
                    if slot.tcp.queued_bytes() > SEND_HIGH_WATER {
                        break;
                    }
                    let (r, full) = slot.rx.read(&mut slot.tcp, rxc);
                    match r {
                        Ok(RecvStatus::Data(_)) => {
                            busy = true;
                            slot.rx.process(&mut slot.iscsi, &self.pool, rxc, now);
                            if !full {
                                break;
                            }
                        }
                        Ok(RecvStatus::WouldBlock) => break,
                        Ok(RecvStatus::Closed) | Err(_) => {
                            slot.peer_closed = true;
                            busy = true;
                            break;
                        }
                    }
                }
            }
            // Timers.
            if let Some(t) = slot.iscsi.poll_timeout() {
                if t <= now {
                    slot.iscsi.handle_timeout(now);
                    busy = true;
                }
            }
            if !slot.tmfs.is_empty() && self.reset_deadline(i).is_some_and(|d| d <= now) {
                self.expire_resets(i, now);
                busy = true;
            }
        }
        // Events from the iSCSI core.
        while let Some(ev) = self.slots[i].as_mut().and_then(|s| s.iscsi.poll_event()) {
            busy = true;
            self.handle_event(i, ev, now);
        }
        // Transmit.
        let (sent, flushed) = self.transmit(i);
        busy |= sent;
        if let Some(slot) = self.slots[i].as_mut() {
            if slot.peer_closed || slot.iscsi.is_closed() {
                slot.closing = true;
            }
            if slot.closing && (flushed || slot.peer_closed) && slot.in_flight.is_empty() {
                self.release(i);
                busy = true;
            }
        }
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }

    /// Moves connection `i`'s PDUs to its socket and flushes it. Returns whether PDUs were queued and whether the
    /// socket's send queue is empty.
    fn transmit(&mut self, i: usize) -> (bool, bool) {
        let Some(slot) = self.slots[i].as_mut() else { return (false, true) };
        let mut busy = false;
        let chain = &mut self.tx_chain;
        while slot.tcp.queued_bytes() <= SEND_HIGH_WATER && slot.iscsi.poll_transmit_into(chain) {
            slot.tcp.send_from(chain, 0);
            busy = true;
        }
        let queued = slot.tcp.queued_bytes();
        let flushed = match slot.tcp.flush() {
            Ok(done) => {
                // Writing what an earlier turn left queued (the socket was full) is work too.
                busy |= slot.tcp.queued_bytes() < queued;
                done
            }
            Err(e) => {
                tracing::debug!(reactor = self.id, error = %e, "send failed");
                slot.peer_closed = true;
                true
            }
        };
        // Transmit completions carry no work for the driver (tags 0): collected only so the stack drops them.
        self.tx_done.clear();
        slot.tcp.poll_send_complete(&mut self.tx_done);
        (busy, flushed)
    }

    /// Sends the responses of the commands that just completed at once, not at the connection poller's next turn
    /// (which first asks the socket for more input: a system call of latency at queue depth 1).
    fn transmit_completed(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|s| !s.peer_closed && !s.closing) {
                self.transmit(i);
            }
        }
    }

    fn release(&mut self, i: usize) {
        if self.slots[i].is_some() {
            self.stalled.retain(|st| st.slot != i);
            self.stats.buffer_waiting = self.stalled.len() as u64;
        }
        if let Some(mut slot) = self.slots[i].take() {
            if let (Some(c), Some(dir)) = (slot.placed, self.registry.placement()) {
                dir.session_ended(c.reactor, c.dedicated);
            }
            self.stats.tx.add(&slot.tcp.stats());
            slot.tcp.shutdown();
            if let Some(tsih) = slot.tsih {
                let conn = ConnRef { reactor: self.id, slot: i, generation: slot.generation };
                self.registry.sessions().unregister(tsih, conn);
            }
            if let Some(s) = &slot.session {
                for lun in s.target.luns.values() {
                    lun.device.lu.nexus_gone(s.nexus);
                }
                self.registry.nexuses().remove(s.nexus);
            }
            self.free_slots.push(i);
            self.stats.connections_closed += 1;
            tracing::info!(reactor = self.id, "connection closed");
        }
    }

    fn handle_event(&mut self, i: usize, ev: ConnEvent, now: Instant) {
        match ev {
            ConnEvent::LoggedIn { params, target } => {
                // Session placement (crate::placement): a normal session may belong on another reactor. The whole
                // connection moves there before anything else happens (its login response is still queued in it),
                // and the reactor that keeps it sets the session up: nexus, session table entry, LUN view.
                if params.session_type == SessionType::Normal {
                    // The initiator's group may have its own cpu_mask / per_sess_dedicated_tgt_threads.
                    let portal_ip = self.slots[i].as_ref().map(|s| s.local.ip());
                    let policy = target
                        .as_ref()
                        .and_then(|t| self.registry.target(&t.name))
                        .zip(portal_ip)
                        .map(|(t, ip)| t.reactor_policy_for(&params.initiator_name, ip));
                    if let (Some(policy), Some(dir)) = (policy, self.registry.placement()) {
                        let choice = dir.choose(self.id, &policy);
                        if let Some(slot) = self.slots[i].as_mut() {
                            slot.placed = Some(choice);
                        }
                        if choice.reactor != self.id {
                            self.move_connection(i, choice.reactor, params, target);
                            return;
                        }
                    }
                }
                self.logged_in(i, &params, target.as_deref());
            }
            ConnEvent::Command(task) => {
                self.stats.commands += 1;
                if let Some(s) = self.slots[i].as_mut().and_then(|s| s.session.as_mut()) {
                    s.counters.commands += 1;
                }
                self.execute(i, task, now);
            }
            ConnEvent::TaskMgmt { itt, function, lun, aborted, .. } => self.task_mgmt(i, itt, function, lun, &aborted, now),
            ConnEvent::Closed { .. } => {
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.closing = true;
                }
            }
        }
    }

    /// A session completed its login on slot `i` and stays on this reactor: name its I_T nexus, take its view of
    /// the target, enter it in the session table.
    fn logged_in(&mut self, i: usize, params: &SessionParams, target: Option<&polltgt_iscsi::login::TargetInfo>) {
        let Some(slot) = self.slots[i].as_mut() else { return };
        if params.session_type == SessionType::Normal {
            let entry =
                target.and_then(|t| self.registry.session_view(&t.name, &params.initiator_name, slot.local.ip()));
            match entry {
                Some(t) => {
                    let tpgt = slot.tpgt;
                    let ctx = self.nexus_login(params, t, tpgt);
                    if let Some(slot) = self.slots[i].as_mut() {
                        slot.session = Some(ctx);
                    }
                }
                None => slot.iscsi.close(),
            }
        }
        tracing::info!(
            reactor = self.id,
            initiator = %params.initiator_name,
            target = %params.target_name,
            session_type = ?params.session_type,
            tsih = params.tsih,
            header_digest = ?params.header_digest,
            data_digest = ?params.data_digest,
            "login complete"
        );
        self.register_session(i, params);
    }

    /// Enters a freshly logged-in session in the session table and closes the sessions it reinstates (RFC 7143
    /// §6.3.5), wherever they live.
    fn register_session(&mut self, i: usize, params: &SessionParams) {
        let Some(slot) = self.slots[i].as_mut() else { return };
        if slot.iscsi.is_closed() {
            return;
        }
        let portal = slot.iscsi.portal();
        let info = SessionInfo {
            tsih: params.tsih,
            isid: params.isid,
            initiator_name: params.initiator_name.clone(),
            initiator_alias: params.initiator_alias.clone(),
            target_name: (params.session_type == SessionType::Normal).then(|| params.target_name.clone()),
            session_type: params.session_type,
            params: params.clone(),
            connections: vec![ConnectionInfo {
                cid: slot.iscsi.session().map_or(0, |s| s.cid()),
                peer: slot.iscsi.peer(),
                local: portal.local,
                tpgt: portal.tpgt,
                reactor: self.id,
            }],
            reinstating: false,
        };
        slot.tsih = Some(params.tsih);
        let conn = ConnRef { reactor: self.id, slot: i, generation: slot.generation };
        for old in self.registry.sessions().register(info, conn) {
            if old.reactor == self.id {
                self.close_conn(old.slot, old.generation);
            } else if let Err(e) = self.registry.sessions().close_conn(old) {
                tracing::warn!(error = %e, "cannot close the reinstated session");
            }
        }
    }

    /// Closes the connection in `slot` if it is still the one of `generation` (management, reinstatement).
    pub(crate) fn close_conn(&mut self, slot: usize, generation: u64) {
        if let Some(Some(s)) = self.slots.get_mut(slot) {
            if s.generation == generation {
                s.iscsi.close();
            }
        }
    }

    /// Asks every connection of this reactor to log out within `within` (shutdown).
    pub(crate) fn request_logout_all(&mut self, within: std::time::Duration, now: Instant) {
        for s in self.slots.iter_mut().flatten() {
            s.iscsi.request_logout(within, now);
        }
    }

    fn complete(&mut self, i: usize, task: TaskId, result: CommandResult, now: Instant) {
        if let Some(slot) = self.slots[i].as_mut() {
            slot.iscsi.complete_command(task, result, now);
        }
    }

    fn respond(&mut self, i: usize, task: TaskId, r: Response, now: Instant) {
        let transfer_len = r.data.len() as u32;
        let result = CommandResult {
            status: r.status as u8,
            sense: r.sense,
            data_in: if r.data.is_empty() { Vec::new() } else { vec![Bytes::from(r.data)] },
            transfer_len,
        };
        self.complete(i, task, result, now);
    }

    fn execute(&mut self, i: usize, mut task: ScsiTask, now: Instant) {
        // A placed write's data sits in the buffer claimed for it at arrival (crate::rx); take it now so that
        // whatever the command ends with, the buffer leaves the connection's claims with it.
        let claimed = if task.placed { self.slots[i].as_mut().and_then(|s| s.rx.take_claimed(task.itt)) } else { None };
        let Some(slot) = self.slots[i].as_ref() else { return };
        let Some(session) = slot.session.as_ref() else {
            // Commands before a normal-session login never reach here; discovery sessions carry no LUNs.
            let r = polltgt_scsi::missing_lun(&task.cdb);
            self.respond(i, task.id, r, now);
            return;
        };
        let lun = polltgt_iscsi::wire::decode_lun(task.lun);
        let opcode = task.cdb.first().copied().unwrap_or(0);
        if opcode == REPORT_LUNS {
            let r = polltgt_scsi::report_luns(&session.target.lun_numbers(), &task.cdb);
            // Like SCST, REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED: the initiator now knows.
            if let Some(s) = self.slots[i].as_mut().and_then(|s| s.session.as_mut()) {
                s.pending_ua.retain(|(_, ua)| ua.code() != REPORTED_LUNS_CHANGED);
            }
            self.respond(i, task.id, r, now);
            return;
        }
        let Some(entry) = lun.and_then(|l| session.target.luns.get(&l)) else {
            let r = polltgt_scsi::missing_lun(&task.cdb);
            self.respond(i, task.id, r, now);
            return;
        };
        let device = entry.device.clone();
        let nexus = session.nexus;
        let lun = entry.lun;
        let lun_read_only = entry.read_only;
        if let Some(r) = self.take_session_ua(i, lun, opcode, &task.cdb) {
            self.respond(i, task.id, r, now);
            return;
        }
        // Parameter lists (MODE SELECT, ...) are small and usually one segment; WRITE data is not read by the LU.
        let param: Option<Vec<u8>> = if task.data_out.len() > 1 && total_len(&task.data_out) <= 64 * 1024 {
            Some(task.data_out.iter().flat_map(|b| b.iter().copied()).collect())
        } else {
            None
        };
        let data_out: Option<&[u8]> = match (&param, task.data_out.first()) {
            (Some(p), _) => Some(p.as_slice()),
            (None, Some(b)) if task.data_out.len() == 1 => Some(b.as_ref()),
            _ => None,
        };
        let cmd = Command { nexus, lun, cdb: &task.cdb, expected_len: task.edtl, data_out };
        let action = device.lu.execute(&cmd);
        // A plain WRITE hands the claimed buffer itself to the bdev; every other command that reads its Data-Out
        // (WRITE AND VERIFY with BYTCHK, ...) gets the placed data as its Data-Out segment, by reference.
        let claimed = match (claimed, &action) {
            (Some(b), Action::Write { .. }) => Some(b),
            (Some(mut b), _) => {
                b.truncate(task.edtl as usize);
                task.data_out = vec![b.freeze()];
                task.placed = false;
                None
            }
            (None, _) => None,
        };
        match action {
            Action::Respond(r) if opcode == reservations::PERSISTENT_RESERVE_OUT => {
                let result = command_result(&device, &task.cdb, r);
                self.prout_done(i, task.id, &device, nexus, result, now);
            }
            // A LUN mapped read-only (SCST's per-LUN read_only): nothing reaches the medium.
            a if lun_read_only && a.writes_medium() => {
                blockops::abandon(&device, lun, &task.cdb);
                self.respond(i, task.id, Response::check_condition(&Sense::write_protected()), now);
            }
            // ... and MODE SENSE shows it write protected (WP, SBC-3 §6.4.1).
            Action::Respond(mut r) if lun_read_only => {
                polltgt_scsi::mark_write_protected(&task.cdb, &mut r);
                self.begin(i, task, device, lun, Action::Respond(r), claimed, now)
            }
            a => self.begin(i, task, device, lun, a, claimed, now),
        }
    }

    /// Runs the action of a command once it holds its range (`hold`, see blockops).
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        i: usize,
        task: ScsiTask,
        device: Arc<Device>,
        lun: u64,
        action: Action,
        claimed: Option<polltgt_hugepages::Buf>,
        hold: Hold,
        now: Instant,
    ) {
        let nexus = self.slots[i].as_ref().and_then(|s| s.session.as_ref()).map(|s| s.nexus).unwrap_or(NexusId(0));
        let cmd = Command { nexus, lun, cdb: &task.cdb, expected_len: task.edtl, data_out: None };
        let (op, kind) = match action {
            Action::Respond(r) => {
                self.release_hold(&device, hold);
                let result = command_result(&device, &task.cdb, r);
                self.complete(i, task.id, result, now);
                return;
            }
            Action::Read { offset, len, .. } => {
                // Send at most EDTL bytes, but read whole blocks: an EDTL that is not a multiple of the block size
                // (iSCSI residual overflow, RFC 7143 §11.4.5) still gets its first EDTL bytes.
                let send = len.min(u64::from(task.edtl));
                let block = u64::from(device.bdev.block_size().max(1));
                let xfer = send.div_ceil(block).saturating_mul(block).min(len);
                if xfer == 0 {
                    self.release_hold(&device, hold);
                    let result =
                        CommandResult { status: 0, sense: None, data_in: Vec::new(), transfer_len: clamp32(len) };
                    self.complete(i, task.id, result, now);
                    return;
                }
                let buf = match self.alloc_for(xfer as usize) {
                    Alloc::Buf(b) => b,
                    Alloc::Wait => {
                        // Back-pressure: the command runs again from the start when buffers come back.
                        self.release_hold(&device, hold);
                        self.stall(i, task);
                        return;
                    }
                    Alloc::Failed(e) => {
                        tracing::warn!(error = %e, "no buffer for a READ");
                        self.release_hold(&device, hold);
                        let r = device.lu.io_done(&cmd, IoResult::Other);
                        self.respond(i, task.id, r, now);
                        return;
                    }
                };
                (Op::Read { offset, buf }, PendingKind::Read { transfer_len: len, send: send as usize })
            }
            Action::Write { offset, len, fua } => {
                let have = if task.placed { u64::from(task.edtl) } else { total_len(&task.data_out) as u64 };
                let block = u64::from(device.bdev.block_size().max(1));
                let xfer = len.min(have) / block * block;
                if xfer == 0 {
                    self.release_hold(&device, hold);
                    let result =
                        CommandResult { status: 0, sense: None, data_in: Vec::new(), transfer_len: clamp32(len) };
                    self.complete(i, task.id, result, now);
                    return;
                }
                let buf = match claimed {
                    Some(mut b) => {
                        b.truncate(xfer as usize);
                        b
                    }
                    None if task.placed => {
                        tracing::error!(itt = task.itt, "placed write without its claimed buffer");
                        self.release_hold(&device, hold);
                        let r = device.lu.io_done(&cmd, IoResult::Other);
                        self.respond(i, task.id, r, now);
                        return;
                    }
                    None => match self.alloc_for(xfer as usize) {
                        Alloc::Buf(mut b) => {
                            copy_into(&mut b, &task.data_out);
                            b
                        }
                        Alloc::Wait => {
                            self.release_hold(&device, hold);
                            self.stall(i, task);
                            return;
                        }
                        Alloc::Failed(e) => {
                            tracing::warn!(error = %e, "no buffer for a WRITE");
                            self.release_hold(&device, hold);
                            let r = device.lu.io_done(&cmd, IoResult::Other);
                            self.respond(i, task.id, r, now);
                            return;
                        }
                    },
                };
                (Op::Write { offset, buf, fua }, PendingKind::Write { transfer_len: len })
            }
            Action::Flush => (Op::Flush, PendingKind::Flush),
            Action::ExtendedCopy(job) => return self.start_copy(i, task, device, lun, job, hold, now),
            Action::Sanitize { op, immed } => return self.start_sanitize(i, task, device, lun, op, immed, hold, now),
            other => return self.start_ops(i, task, device, lun, other, hold, now),
        };
        self.submit(i, task, device, lun, op, kind, hold);
    }

    /// A pool buffer for a command, or `Wait` (back-pressure) when the pool is at its cap or older commands are
    /// already waiting: the command waits in the driver and runs again when buffers come back; nothing fails.
    /// Only a request larger than the whole cap fails.
    fn alloc_for(&mut self, len: usize) -> Alloc {
        if !self.retrying && !self.stalled.is_empty() {
            return Alloc::Wait;
        }
        match self.pool.alloc(len) {
            Ok(b) => Alloc::Buf(b),
            Err(e @ PoolError::Exhausted { .. }) => {
                let class = self.pool.class_sizes().iter().copied().find(|&c| c >= len).unwrap_or(len);
                if self.pool.config().max_bytes.is_some_and(|cap| class > cap) {
                    Alloc::Failed(e)
                } else {
                    Alloc::Wait
                }
            }
            Err(e) => Alloc::Failed(e),
        }
    }

    fn stall(&mut self, i: usize, task: ScsiTask) {
        let Some(slot) = self.slots[i].as_ref() else { return };
        if !self.retrying {
            self.stats.buffer_waits += 1;
            tracing::debug!(reactor = self.id, itt = task.itt, "command waits for pool buffers");
        }
        self.stalled.push_back(Stalled { slot: i, generation: slot.generation, task });
        self.stats.buffer_waiting = self.stalled.len() as u64;
    }

    /// Run waiting commands again, oldest first, until one has to wait again.
    pub fn poll_stalled(&mut self, now: Instant) -> PollStatus {
        let mut status = PollStatus::Idle;
        while let Some(st) = self.stalled.pop_front() {
            let live = matches!(self.slots.get(st.slot), Some(Some(s)) if s.generation == st.generation);
            if !live {
                continue;
            }
            let before = self.stalled.len();
            self.retrying = true;
            self.execute(st.slot, st.task, now);
            self.retrying = false;
            if self.stalled.len() > before {
                // It had to wait again: back to the head of the queue.
                if let Some(again) = self.stalled.pop_back() {
                    self.stalled.push_front(again);
                }
                break;
            }
            status = PollStatus::Busy;
        }
        self.stats.buffer_waiting = self.stalled.len() as u64;
        status
    }

    /// Commands waiting for buffers now.
    pub fn stalled(&self) -> usize {
        self.stalled.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(&mut self, i: usize, task: ScsiTask, device: Arc<Device>, lun: u64, op: Op, kind: PendingKind, hold: Hold) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let Some(slot) = self.slots[i].as_mut() else { return };
        slot.in_flight.push(tag);
        let generation = slot.generation;
        if let std::collections::hash_map::Entry::Vacant(e) = self.channels.entry(device.id) {
            match device.bdev.open_channel() {
                Ok(ch) => {
                    e.insert(ch);
                }
                Err(err) => {
                    tracing::error!(device = %device.name, error = %err, "cannot open a bdev channel");
                    // Complete as a device failure without touching the device.
                    self.pending.insert(
                        tag,
                        Pending {
                            slot: i,
                            generation,
                            task: task.id,
                            device,
                            lun,
                            cdb: task.cdb,
                            edtl: task.edtl,
                            kind,
                            hold,
                            aborted: false,
                        },
                    );
                    self.completions.push(Completion { tag, result: Err(err), buf: None });
                    return;
                }
            }
        }
        let device_id = device.id;
        // `device` moves into the entry (an Arc clone and drop would be two atomic read-modify-writes per command).
        self.pending.insert(
            tag,
            Pending {
                slot: i,
                generation,
                task: task.id,
                device,
                lun,
                cdb: task.cdb,
                edtl: task.edtl,
                kind,
                hold,
                aborted: false,
            },
        );
        if let Some(ch) = self.channels.get_mut(&device_id) {
            ch.submit(Io { tag, op });
        }
    }

    /// Poll this reactor's bdev channels and finish the commands whose I/O completed.
    pub fn poll_bdevs(&mut self, now: Instant) -> PollStatus {
        self.pool.maintain_thread_cache();
        self.poll_copy_waits(now);
        let mut done = std::mem::take(&mut self.completions);
        for ch in self.channels.values_mut() {
            ch.poll(&mut done);
        }
        if done.is_empty() {
            self.completions = done;
            return self.poll_locks(now);
        }
        for c in done.drain(..) {
            self.finish_io(c, now);
        }
        self.completions = done;
        self.poll_locks(now);
        self.transmit_completed();
        PollStatus::Busy
    }

    fn finish_io(&mut self, c: Completion, now: Instant) {
        if let Some(run) = self.sanitizes.remove(&c.tag) {
            // A sanitize operation belongs to no connection (sanitize.rs).
            return self.sanitize_step(run, Some(c), now);
        }
        let Some(p) = self.pending.remove(&c.tag) else { return };
        if matches!(p.kind, PendingKind::Copy(_)) {
            // An EXTENDED COPY step; the copy looks after its connection's state itself.
            return self.copy_io_done(c.tag, p, c, now);
        }
        let live = matches!(self.slots.get(p.slot), Some(Some(s)) if s.generation == p.generation);
        if !live {
            self.release_hold(&p.device, p.hold);
            blockops::abandon(&p.device, p.lun, &p.cdb);
            self.preempt_io_done(c.tag, now);
            self.reset_io_done(c.tag, now);
            return;
        }
        if matches!(p.kind, PendingKind::Ops(_)) {
            // A multi-step operation is finished (for PREEMPT AND ABORT too) only after its last step.
            return self.step_ops(c.tag, p, c, now);
        }
        self.preempt_io_done(c.tag, now);
        self.reset_io_done(c.tag, now);
        self.release_hold(&p.device, p.hold);
        if let Some(Some(slot)) = self.slots.get_mut(p.slot) {
            slot.in_flight.retain(|t| *t != c.tag);
        }
        let nexus = self.slots[p.slot].as_ref().and_then(|s| s.session.as_ref()).map(|s| s.nexus).unwrap_or(NexusId(0));
        let cmd = Command { nexus, lun: p.lun, cdb: &p.cdb, expected_len: p.edtl, data_out: None };
        let io = match &c.result {
            Ok(()) => IoResult::Ok,
            Err(e) => bdev_error_to_io_result(e),
        };
        let class = match &p.kind {
            PendingKind::Read { .. } => IoClass::Read,
            PendingKind::Write { .. } => IoClass::Write,
            _ => IoClass::Other,
        };
        let result = match (p.kind, io) {
            (PendingKind::Read { transfer_len, send }, IoResult::Ok) => {
                let by_ref = c.buf.as_ref().is_some_and(|b| b.is_pooled());
                let data = c
                    .buf
                    .map(|b| {
                        let bytes = b.freeze();
                        if bytes.len() > send {
                            bytes.slice(..send)
                        } else {
                            bytes
                        }
                    })
                    .into_iter()
                    .collect::<Vec<_>>();
                self.stats.bytes_read += total_len(&data) as u64;
                if by_ref {
                    self.stats.read_bytes_by_reference += total_len(&data) as u64;
                }
                let r = p.device.lu.io_done(&cmd, IoResult::Ok);
                CommandResult { status: r.status as u8, sense: r.sense, data_in: data, transfer_len: clamp32(transfer_len) }
            }
            (PendingKind::Write { transfer_len }, IoResult::Ok) => {
                self.stats.bytes_written += transfer_len;
                let r = p.device.lu.io_done(&cmd, IoResult::Ok);
                CommandResult { status: r.status as u8, sense: r.sense, data_in: Vec::new(), transfer_len: clamp32(transfer_len) }
            }
            (kind, io) => {
                let transfer_len = match kind {
                    PendingKind::Read { transfer_len, .. } | PendingKind::Write { transfer_len } => transfer_len,
                    PendingKind::Flush | PendingKind::Ops(_) | PendingKind::Copy(_) => 0,
                };
                let r = p.device.lu.io_done(&cmd, io);
                CommandResult { status: r.status as u8, sense: r.sense, data_in: Vec::new(), transfer_len: clamp32(transfer_len) }
            }
        };
        self.count_io(p.slot, p.lun, class, &result);
        self.complete(p.slot, p.task, result, now);
        self.check_tmfs(p.slot, c.tag, now);
    }

    /// A unit attention this session has pending for `lun` (SAM-5 §5.14), as the response to the command, if the
    /// command is not exempt: INQUIRY passes, REQUEST SENSE returns it as sense data with GOOD status (SPC-4
    /// §6.39), anything else ends in CHECK CONDITION. Delivering it removes it.
    fn take_session_ua(&mut self, i: usize, lun: u64, opcode: u8, cdb: &[u8]) -> Option<Response> {
        if opcode == INQUIRY {
            return None;
        }
        let s = self.slots.get_mut(i)?.as_mut()?.session.as_mut()?;
        let pos = s.pending_ua.iter().position(|(l, _)| l.is_none_or(|l| l == lun))?;
        let (_, ua) = s.pending_ua.remove(pos)?;
        if opcode == REQUEST_SENSE {
            let mut data = ua.to_fixed();
            data.truncate(usize::from(cdb.get(4).copied().unwrap_or(0)));
            return Some(Response::good(data));
        }
        Some(Response::check_condition(&ua))
    }

    /// Session and LUN counters of a finished block command.
    fn count_io(&mut self, i: usize, lun: u64, class: IoClass, result: &CommandResult) {
        let Some(s) = self.slots.get_mut(i).and_then(|s| s.as_mut()).and_then(|s| s.session.as_mut()) else { return };
        // Borrowed, not cloned: an Arc clone and drop would be two more atomic read-modify-writes per command.
        let stats = s.target.luns.get(&lun).map(|l| &*l.stats);
        let ordering = std::sync::atomic::Ordering::Relaxed;
        if result.status != 0 {
            s.counters.errors += 1;
            if let Some(st) = &stats {
                st.errors.fetch_add(1, ordering);
            }
            return;
        }
        let read = total_len(&result.data_in) as u64;
        let written = u64::from(result.transfer_len);
        match class {
            IoClass::Read => {
                s.counters.read_commands += 1;
                s.counters.read_bytes += read;
                if let Some(st) = &stats {
                    st.read_commands.fetch_add(1, ordering);
                    st.read_bytes.fetch_add(read, ordering);
                }
            }
            IoClass::Write => {
                s.counters.write_commands += 1;
                s.counters.write_bytes += written;
                if let Some(st) = &stats {
                    st.write_commands.fetch_add(1, ordering);
                    st.write_bytes.fetch_add(written, ordering);
                }
            }
            IoClass::Other => {
                if let Some(st) = &stats {
                    st.other_commands.fetch_add(1, ordering);
                }
            }
        }
    }

    /// Task management (RFC 7143 §11.5). Tasks that already reached a device cannot be recalled: the response waits
    /// until they finish (their results are suppressed by the iSCSI core), so nothing answers after the TMF response.
    fn task_mgmt(&mut self, i: usize, itt: u32, function: u8, lun: u64, aborted: &[TaskId], now: Instant) {
        let lun_no = polltgt_iscsi::wire::decode_lun(lun);
        // Commands still waiting for their range or for pool buffers never reached a device: they are simply
        // taken away.
        match TmfFunction::from_u8(function) {
            Some(TmfFunction::AbortTask) => self.abort_waiting(i, now, |t, _| aborted.contains(&t.id)),
            Some(TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet | TmfFunction::LogicalUnitReset) => {
                self.abort_waiting(i, now, |_, l| l.is_some() && l == lun_no)
            }
            Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset) => self.abort_waiting(i, now, |_, _| true),
            _ => {}
        }
        let Some(slot) = self.slots[i].as_mut() else { return };
        let affected: Vec<u64> = match TmfFunction::from_u8(function) {
            Some(TmfFunction::AbortTask) => self
                .pending
                .iter()
                .filter(|(_, p)| p.slot == i && p.generation == slot.generation && aborted.contains(&p.task))
                .map(|(t, _)| *t)
                .collect(),
            Some(TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet | TmfFunction::LogicalUnitReset) => self
                .pending
                .iter()
                .filter(|(_, p)| p.slot == i && p.generation == slot.generation && Some(p.lun) == lun_no)
                .map(|(t, _)| *t)
                .collect(),
            Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset) => slot.in_flight.clone(),
            _ => Vec::new(),
        };
        // Resets also abort the tasks other I_T nexuses have on the logical units concerned (SAM-5 §7.6, §7.7), on
        // every reactor; the response waits for all of them (tmf.rs). ABORT TASK SET and CLEAR TASK SET act on
        // this session's task set only: the Control mode page reports TST 001b, a task set per I_T nexus.
        const _: () = assert!(polltgt_scsi::TST_PER_NEXUS == 0b001);
        let devices: Vec<u64> = match (TmfFunction::from_u8(function), slot.session.as_ref()) {
            (Some(TmfFunction::LogicalUnitReset), Some(s)) => {
                lun_no.and_then(|l| s.target.luns.get(&l)).map(|e| vec![e.device.id]).unwrap_or_default()
            }
            (Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset), Some(s)) => {
                s.target.luns.values().map(|e| e.device.id).collect()
            }
            _ => Vec::new(),
        };
        slot.tmfs.push(PendingTmf { itt, function, lun, waiting_for: affected, reset: None, rejected: false });
        if !devices.is_empty() {
            self.start_reset(i, devices, now);
        }
        self.check_tmfs(i, 0, now);
    }

    /// Tasks `held` of connection `i` were aborted on behalf of another I_T nexus: those still waiting for their
    /// range are taken away, multi-step operations stop after their current step. Returns the bdev tags still in
    /// flight for them.
    pub(super) fn mark_aborted(&mut self, i: usize, generation: u64, held: &[TaskId], now: Instant) -> Vec<u64> {
        self.abort_waiting(i, now, |t, _| held.contains(&t.id));
        let mut tags = Vec::new();
        for (tag, p) in self.pending.iter_mut() {
            if p.slot == i && p.generation == generation && held.contains(&p.task) {
                p.aborted = true;
                tags.push(*tag);
            }
        }
        tags
    }

    /// Commands of connection `i` that never reached a device (waiting for their range in a lock, or for pool
    /// buffers) and that `pred(task, lun)` selects are taken away: they end with TASK ABORTED, which the iSCSI
    /// layer drops for an aborted task.
    fn abort_waiting(&mut self, i: usize, now: Instant, pred: impl Fn(&ScsiTask, Option<u64>) -> bool) {
        self.abort_parked(i, now, |t, l| pred(t, Some(l)));
        self.release_sanitize_waiters(i, now, &pred);
        let Some(generation) = self.slots[i].as_ref().map(|s| s.generation) else { return };
        let mut ended = Vec::new();
        self.stalled.retain(|st| {
            let hit = st.slot == i
                && st.generation == generation
                && pred(&st.task, polltgt_iscsi::wire::decode_lun(st.task.lun));
            if hit {
                ended.push(st.task.id);
            }
            !hit
        });
        self.stats.buffer_waiting = self.stalled.len() as u64;
        for id in ended {
            let result = CommandResult { status: blockops::TASK_ABORTED, sense: None, data_in: Vec::new(), transfer_len: 0 };
            self.complete(i, id, result, now);
        }
    }

    fn check_tmfs(&mut self, i: usize, finished_tag: u64, now: Instant) {
        let Some(slot) = self.slots[i].as_mut() else { return };
        if slot.tmfs.is_empty() {
            return;
        }
        for t in &mut slot.tmfs {
            t.waiting_for.retain(|x| *x != finished_tag);
        }
        let ready: Vec<PendingTmf> = {
            let (ready, waiting): (Vec<_>, Vec<_>) = slot.tmfs.drain(..).partition(|t| t.waiting_for.is_empty() && t.reset.is_none());
            slot.tmfs = waiting;
            ready
        };
        for t in ready {
            let session = slot.session.as_ref();
            let function = TmfFunction::from_u8(t.function);
            let response = match function {
                Some(TmfFunction::AbortTask | TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet) => {
                    TmfResponseCode::FunctionComplete
                }
                Some(TmfFunction::LogicalUnitReset) => {
                    let lun_no = polltgt_iscsi::wire::decode_lun(t.lun);
                    match session.and_then(|s| lun_no.and_then(|l| s.target.luns.get(&l))) {
                        Some(entry) => {
                            entry.device.lu.reset();
                            TmfResponseCode::FunctionComplete
                        }
                        None => TmfResponseCode::LunDoesNotExist,
                    }
                }
                Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset) => {
                    if let Some(s) = session {
                        for entry in s.target.luns.values() {
                            entry.device.lu.reset();
                        }
                    }
                    TmfResponseCode::FunctionComplete
                }
                Some(TmfFunction::TaskReassign) => TmfResponseCode::TaskAllegianceReassignmentNotSupported,
                _ => TmfResponseCode::FunctionNotSupported,
            };
            // A reset whose acknowledgements did not all come in time: its aborts and unit attentions stand, but
            // the initiator learns it did not complete (tmf.rs).
            let response = if t.rejected { TmfResponseCode::FunctionRejected } else { response };
            slot.iscsi.complete_task_mgmt(t.itt, response.into(), now);
            if function == Some(TmfFunction::TargetColdReset) {
                // RFC 7143 §11.5.1: after a cold reset the target closes all of its TCP connections to all
                // initiators (every session of the target node), this one once its response is out.
                slot.iscsi.close();
                if let Some(s) = session {
                    let me = ConnRef { reactor: self.id, slot: i, generation: slot.generation };
                    for conn in self.registry.sessions().target_connections(&s.target.name) {
                        if conn != me {
                            let _ = self.registry.sessions().close_conn(conn);
                        }
                    }
                }
            }
        }
    }
}

/// The command result of an emulated command's response. A data-out command that succeeded transferred what its
/// CDB asked for (residuals, RFC 7143 §11.4.5).
fn command_result(device: &Device, cdb: &[u8], r: Response) -> CommandResult {
    let out = if r.status == polltgt_scsi::Status::Good && r.data.is_empty() { device.lu.data_out_len(cdb) } else { None };
    let transfer_len = out.map_or(r.data.len() as u32, clamp32);
    CommandResult {
        status: r.status as u8,
        sense: r.sense,
        data_in: if r.data.is_empty() { Vec::new() } else { vec![Bytes::from(r.data)] },
        transfer_len,
    }
}

/// What [`ReactorState::alloc_for`] found.
enum Alloc {
    Buf(polltgt_hugepages::Buf),
    Wait,
    Failed(PoolError),
}

fn total_len(segs: &[Bytes]) -> usize {
    segs.iter().map(|b| b.len()).sum()
}

fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn copy_into(buf: &mut [u8], segs: &[Bytes]) {
    let mut off = 0;
    for s in segs {
        let n = s.len().min(buf.len() - off);
        buf[off..off + n].copy_from_slice(&s[..n]);
        off += n;
        if off == buf.len() {
            break;
        }
    }
}

fn bdev_error_to_io_result(e: &polltgt_bdev::BdevError) -> IoResult {
    match e {
        polltgt_bdev::BdevError::OutOfRange { .. } => IoResult::OutOfRange,
        // A sparse file or thin device that cannot allocate (SBC-3 §4.7.3.7: SPACE ALLOCATION FAILED WRITE PROTECT).
        polltgt_bdev::BdevError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => IoResult::NoSpace,
        polltgt_bdev::BdevError::Io(_) => IoResult::MediumError,
        polltgt_bdev::BdevError::ReadOnly => IoResult::WriteProtected,
        _ => IoResult::Other,
    }
}

impl ReactorState {
    /// Interrupt mode: each connection's socket (readable while it may receive, writable while bytes wait to be
    /// sent) and its earliest iSCSI timer. A connection that is closing keeps the reactor awake until released.
    fn prepare_sleep(&mut self, wake: &mut WakeSet) -> bool {
        for slot in self.slots.iter().flatten() {
            if slot.closing {
                return false;
            }
            let queued = slot.tcp.queued_bytes();
            let readable = !slot.peer_closed && queued <= SEND_HIGH_WATER;
            wake.add_fd(slot.tcp.as_raw_fd(), slot.generation, readable, queued > 0);
            if let Some(t) = slot.iscsi.poll_timeout() {
                wake.wake_at(t);
            }
            for t in &slot.tmfs {
                if let Some((_, deadline)) = t.reset {
                    wake.wake_at(deadline);
                }
            }
        }
        true
    }

    /// Interrupt mode: I/O in flight on a bdev channel keeps the reactor polling (completions raise no event), so
    /// do commands waiting for buffers or for a range lock.
    fn bdevs_idle(&mut self) -> bool {
        self.completions.is_empty()
            && self.stalled.is_empty()
            && self.channels.values().all(|c| c.in_flight() == 0)
            && self.locks_may_sleep()
    }
}

/// Poller: connections (receive, protocol, transmit, timers).
pub struct ConnPoller;

impl Poller<ReactorState> for ConnPoller {
    fn name(&self) -> &str {
        "iscsi_conn"
    }
    fn poll(&mut self, state: &mut ReactorState, now: Instant) -> PollStatus {
        state.poll_connections(now)
    }
    fn prepare_sleep(&mut self, state: &mut ReactorState, _now: Instant, wake: &mut WakeSet) -> bool {
        state.prepare_sleep(wake)
    }
}

/// Poller: bdev completions.
pub struct BdevPoller;

impl Poller<ReactorState> for BdevPoller {
    fn name(&self) -> &str {
        "bdev_completions"
    }
    fn poll(&mut self, state: &mut ReactorState, now: Instant) -> PollStatus {
        let done = state.poll_bdevs(now);
        if state.stalled.is_empty() {
            done
        } else {
            done.or(state.poll_stalled(now))
        }
    }
    fn prepare_sleep(&mut self, state: &mut ReactorState, _now: Instant, _wake: &mut WakeSet) -> bool {
        state.bdevs_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdev_errors_map_to_scsi_outcomes() {
        use polltgt_bdev::BdevError;
        let io = |errno| BdevError::Io(std::io::Error::from_raw_os_error(errno));
        assert_eq!(bdev_error_to_io_result(&io(libc::ENOSPC)), IoResult::NoSpace);
        assert_eq!(bdev_error_to_io_result(&io(libc::EIO)), IoResult::MediumError);
        assert_eq!(bdev_error_to_io_result(&BdevError::ReadOnly), IoResult::WriteProtected);
        assert_eq!(bdev_error_to_io_result(&BdevError::OutOfRange { offset: 0, len: 1, size: 0 }), IoResult::OutOfRange);
    }

    #[test]
    fn copy_into_gathers_segments() {
        let mut buf = [0u8; 5];
        copy_into(&mut buf, &[Bytes::from_static(b"ab"), Bytes::from_static(b"cdef")]);
        assert_eq!(&buf, b"abcde");
    }
}
