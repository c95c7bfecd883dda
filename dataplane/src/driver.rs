//! The per-reactor driver: owns this reactor's connections and bdev channels and moves data between the TCP stack,
//! the iSCSI connection state machines, the SCSI logical units and the block devices.
//!
//! Flow of a command: bytes from the socket go into the connection's receive buffer; the iSCSI core consumes whole
//! PDUs and, once a command's data has arrived, emits it; the driver routes it to the LUN's logical unit, which either
//! answers at once (emulated commands) or asks for a block operation; the driver submits that to the device's channel
//! on this reactor with a pool buffer; the completion is turned into SCSI status by the LU and handed back to the
//! iSCSI core, whose PDUs go to the TCP stack as buffer chains (READ data by reference, never copied).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use polltgt_bdev::{Channel, Completion, Io, Op};
use polltgt_hugepages::{BufPool, PoolError};
use polltgt_iscsi::conn::{ConnEvent, Connection};
use polltgt_iscsi::login::PortalInfo;
use polltgt_iscsi::params::SessionType;
use polltgt_iscsi::session::{CommandResult, ScsiTask, TaskId};
use polltgt_iscsi::wire::{TmfFunction, TmfResponseCode};
use polltgt_scsi::{Action, Command, IoResult, NexusId, Response};
use polltgt_tcpstack::{KernelConn, RecvStatus};

use crate::placement::{Choice, SharedDirectory};
use crate::reactor::{PollStatus, Poller, WakeSet};
use crate::rx::{RxCounters, RxPath};
use crate::registry::{Device, Registry, TargetEntry};

/// Stop pulling PDUs out of a connection while this many bytes wait in the socket send queue.
const SEND_HIGH_WATER: usize = 8 << 20;
/// Receive calls per connection per poll, so one busy connection cannot starve the others.
const RECV_BUDGET: usize = 4;

/// SCSI opcode of REPORT LUNS (SPC-4 §6.33), answered at target level.
const REPORT_LUNS: u8 = 0xa0;

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

/// The session context of a logged-in normal session.
struct SessionCtx {
    target: Arc<TargetEntry>,
    nexus: NexusId,
}

/// A command waiting for its bdev I/O.
struct Pending {
    slot: usize,
    generation: u64,
    task: TaskId,
    device: Arc<Device>,
    lun: u64,
    cdb: Vec<u8>,
    edtl: u32,
    kind: PendingKind,
}

enum PendingKind {
    Read { transfer_len: u64, send: usize },
    Write { transfer_len: u64 },
    Flush,
    Verify { transfer_len: u64, compare: Option<Vec<Bytes>> },
}

/// A task management request waiting for the tasks it affects to finish.
struct PendingTmf {
    itt: u32,
    function: u8,
    lun: u64,
    waiting_for: Vec<u64>,
}

struct ConnSlot {
    generation: u64,
    tcp: KernelConn,
    iscsi: Connection,
    rx: RxPath,
    session: Option<SessionCtx>,
    /// Bdev tags of this connection's commands in flight.
    in_flight: Vec<u64>,
    tmfs: Vec<PendingTmf>,
    closing: bool,
    peer_closed: bool,
    /// The reactor placement of its normal session (counted in the directory until the connection ends).
    placed: Option<Choice>,
}

/// Everything one reactor owns.
pub struct ReactorState {
    pub id: usize,
    registry: Arc<Registry>,
    pool: BufPool,
    slots: Vec<Option<ConnSlot>>,
    free_slots: Vec<usize>,
    generation: u64,
    channels: HashMap<u64, Box<dyn Channel>>,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    completions: Vec<Completion>,
    /// Commands waiting for buffers, oldest first.
    stalled: std::collections::VecDeque<Stalled>,
    /// Set while a stalled command runs again (it may take a buffer although older ones... it is the oldest).
    retrying: bool,
    /// Transmits of at least this many bytes use MSG_ZEROCOPY (None: never).
    zerocopy_threshold: Option<usize>,
    /// All reactors, for moving sessions after login (see [`crate::placement`]).
    directory: SharedDirectory,
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
            channels: HashMap::new(),
            pending: HashMap::new(),
            next_tag: 1,
            completions: Vec::new(),
            stalled: std::collections::VecDeque::new(),
            retrying: false,
            zerocopy_threshold: None,
            directory: SharedDirectory::default(),
            stats: DriverStats::default(),
        }
    }

    /// Send transmits of at least `threshold` bytes with MSG_ZEROCOPY on connections adopted from now on.
    pub fn set_zerocopy_threshold(&mut self, threshold: Option<usize>) {
        self.zerocopy_threshold = threshold;
    }

    /// The reactor directory (set by the server once all reactors run).
    pub fn set_directory(&mut self, directory: SharedDirectory) {
        self.directory = directory;
    }

    /// Takes in a connection another reactor moved here after its login.
    fn adopt_moved(&mut self, mut slot: ConnSlot) {
        self.generation += 1;
        slot.generation = self.generation;
        match self.free_slots.pop() {
            Some(i) => self.slots[i] = Some(slot),
            None => self.slots.push(Some(slot)),
        }
        self.stats.connections_moved_in += 1;
    }

    /// Moves connection `i` to reactor `to` (right after login: nothing is in flight).
    fn move_connection(&mut self, i: usize, to: usize) {
        let Some(dir) = self.directory.get() else { return };
        let Some(target) = dir.get(to) else { return };
        let Some(slot) = self.slots[i].take() else { return };
        self.free_slots.push(i);
        target.migrations_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(from = self.id, to, "session moves to its target's reactor");
        if !target.handle.send(move |s: &mut ReactorState, _now| s.adopt_moved(slot)) {
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
        let iscsi = Connection::new(catalog, portal, peer, now);
        self.generation += 1;
        let slot = ConnSlot {
            generation: self.generation,
            tcp,
            iscsi,
            rx: RxPath::new(),
            session: None,
            in_flight: Vec::new(),
            tmfs: Vec::new(),
            closing: false,
            peer_closed: false,
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
        }
        // Events from the iSCSI core.
        while let Some(ev) = self.slots[i].as_mut().and_then(|s| s.iscsi.poll_event()) {
            busy = true;
            self.handle_event(i, ev, now);
        }
        // Transmit.
        if let Some(slot) = self.slots[i].as_mut() {
            while slot.tcp.queued_bytes() <= SEND_HIGH_WATER {
                match slot.iscsi.poll_transmit() {
                    Some(chain) => {
                        slot.tcp.send_chain(chain, 0);
                        busy = true;
                    }
                    None => break,
                }
            }
            let flushed = match slot.tcp.flush() {
                Ok(done) => done,
                Err(e) => {
                    tracing::debug!(reactor = self.id, error = %e, "send failed");
                    slot.peer_closed = true;
                    true
                }
            };
            let mut done = Vec::new();
            slot.tcp.poll_send_complete(&mut done);
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

    fn release(&mut self, i: usize) {
        if self.slots[i].is_some() {
            self.stalled.retain(|st| st.slot != i);
            self.stats.buffer_waiting = self.stalled.len() as u64;
        }
        if let Some(mut slot) = self.slots[i].take() {
            if let (Some(c), Some(dir)) = (slot.placed, self.directory.get()) {
                dir.session_ended(c.reactor, c.dedicated);
            }
            self.stats.tx.add(&slot.tcp.stats());
            slot.tcp.shutdown();
            if let Some(s) = &slot.session {
                for lun in s.target.luns.values() {
                    lun.device.lu.nexus_gone(s.nexus);
                }
            }
            self.free_slots.push(i);
            self.stats.connections_closed += 1;
            tracing::info!(reactor = self.id, "connection closed");
        }
    }

    fn handle_event(&mut self, i: usize, ev: ConnEvent, now: Instant) {
        match ev {
            ConnEvent::LoggedIn { params, target } => {
                let Some(slot) = self.slots[i].as_mut() else { return };
                if params.session_type == SessionType::Normal {
                    let entry = target.as_ref().and_then(|t| self.registry.target(&t.name));
                    match entry {
                        Some(t) => {
                            let choice = self.directory.get().map(|d| d.choose(self.id, &t.reactors));
                            slot.placed = choice;
                            slot.session = Some(SessionCtx { target: t, nexus: NexusId(self.registry.new_nexus()) });
                            if let Some(c) = choice.filter(|c| c.reactor != self.id) {
                                self.move_connection(i, c.reactor);
                                return;
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
                    "login complete"
                );
            }
            ConnEvent::Command(task) => {
                self.stats.commands += 1;
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

    fn execute(&mut self, i: usize, task: ScsiTask, now: Instant) {
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
        // A placed write's data sits in the buffer claimed for it at arrival; take it now so that whatever the LU
        // answers, the buffer leaves the connection's claims with this command.
        let mut claimed = if task.placed { self.slots[i].as_mut().and_then(|s| s.rx.take_claimed(task.itt)) } else { None };
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
        let (op, kind) = match action {
            Action::Respond(r) => {
                self.respond(i, task.id, r, now);
                return;
            }
            Action::Read { offset, len, .. } => {
                // Send at most EDTL bytes, but read whole blocks: an EDTL that is not a multiple of the block size
                // (iSCSI residual overflow, RFC 7143 §11.4.5) still gets its first EDTL bytes.
                let send = len.min(u64::from(task.edtl));
                let block = u64::from(device.bdev.info().block_size.max(1));
                let xfer = send.div_ceil(block).saturating_mul(block).min(len);
                if xfer == 0 {
                    let result =
                        CommandResult { status: 0, sense: None, data_in: Vec::new(), transfer_len: clamp32(len) };
                    self.complete(i, task.id, result, now);
                    return;
                }
                let buf = match self.alloc_for(xfer as usize) {
                    Alloc::Buf(b) => b,
                    Alloc::Wait => {
                        self.stall(i, task);
                        return;
                    }
                    Alloc::Failed(e) => {
                        tracing::warn!(error = %e, "no buffer for a READ");
                        let r = device.lu.io_done(&cmd, IoResult::Other);
                        self.respond(i, task.id, r, now);
                        return;
                    }
                };
                (Op::Read { offset, buf }, PendingKind::Read { transfer_len: len, send: send as usize })
            }
            Action::Write { offset, len, fua } => {
                let have = if task.placed { u64::from(task.edtl) } else { total_len(&task.data_out) as u64 };
                let block = u64::from(device.bdev.info().block_size.max(1));
                let xfer = len.min(have) / block * block;
                if xfer == 0 {
                    let result =
                        CommandResult { status: 0, sense: None, data_in: Vec::new(), transfer_len: clamp32(len) };
                    self.complete(i, task.id, result, now);
                    return;
                }
                let buf = if task.placed {
                    match claimed.take() {
                        Some(mut b) => {
                            b.truncate(xfer as usize);
                            b
                        }
                        None => {
                            tracing::error!(itt = task.itt, "placed write without its claimed buffer");
                            let r = device.lu.io_done(&cmd, IoResult::Other);
                            self.respond(i, task.id, r, now);
                            return;
                        }
                    }
                } else {
                    match self.alloc_for(xfer as usize) {
                        Alloc::Buf(mut b) => {
                            copy_into(&mut b, &task.data_out);
                            b
                        }
                        Alloc::Wait => {
                            self.stall(i, task);
                            return;
                        }
                        Alloc::Failed(e) => {
                            tracing::warn!(error = %e, "no buffer for a WRITE");
                            let r = device.lu.io_done(&cmd, IoResult::Other);
                            self.respond(i, task.id, r, now);
                            return;
                        }
                    }
                };
                (Op::Write { offset, buf, fua }, PendingKind::Write { transfer_len: len })
            }
            Action::Verify { offset, len, byte_check } => {
                if len == 0 {
                    let result = CommandResult { status: 0, sense: None, data_in: Vec::new(), transfer_len: 0 };
                    self.complete(i, task.id, result, now);
                    return;
                }
                let buf = match self.alloc_for(len as usize) {
                    Alloc::Buf(b) => b,
                    Alloc::Wait => {
                        self.stall(i, task);
                        return;
                    }
                    Alloc::Failed(_) => {
                        let r = device.lu.io_done(&cmd, IoResult::Other);
                        self.respond(i, task.id, r, now);
                        return;
                    }
                };
                let compare = if byte_check { Some(task.data_out.clone()) } else { None };
                let transfer_len = if byte_check { len } else { 0 };
                (Op::Read { offset, buf }, PendingKind::Verify { transfer_len, compare })
            }
            Action::Flush => (Op::Flush, PendingKind::Flush),
        };
        self.submit(i, task, device, lun, op, kind);
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

    fn submit(&mut self, i: usize, task: ScsiTask, device: Arc<Device>, lun: u64, op: Op, kind: PendingKind) {
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
                        Pending { slot: i, generation, task: task.id, device, lun, cdb: task.cdb, edtl: task.edtl, kind },
                    );
                    self.completions.push(Completion { tag, result: Err(err), buf: None });
                    return;
                }
            }
        }
        self.pending.insert(
            tag,
            Pending { slot: i, generation, task: task.id, device: device.clone(), lun, cdb: task.cdb, edtl: task.edtl, kind },
        );
        if let Some(ch) = self.channels.get_mut(&device.id) {
            ch.submit(Io { tag, op });
        }
    }

    /// Poll this reactor's bdev channels and finish the commands whose I/O completed.
    pub fn poll_bdevs(&mut self, now: Instant) -> PollStatus {
        self.pool.maintain_thread_cache();
        let mut done = std::mem::take(&mut self.completions);
        for ch in self.channels.values_mut() {
            ch.poll(&mut done);
        }
        if done.is_empty() {
            self.completions = done;
            return PollStatus::Idle;
        }
        for c in done.drain(..) {
            self.finish_io(c, now);
        }
        self.completions = done;
        PollStatus::Busy
    }

    fn finish_io(&mut self, c: Completion, now: Instant) {
        let Some(p) = self.pending.remove(&c.tag) else { return };
        let live = matches!(self.slots.get(p.slot), Some(Some(s)) if s.generation == p.generation);
        if !live {
            return;
        }
        if let Some(Some(slot)) = self.slots.get_mut(p.slot) {
            slot.in_flight.retain(|t| *t != c.tag);
        }
        let nexus = self.slots[p.slot].as_ref().and_then(|s| s.session.as_ref()).map(|s| s.nexus).unwrap_or(NexusId(0));
        let cmd = Command { nexus, lun: p.lun, cdb: &p.cdb, expected_len: p.edtl, data_out: None };
        let io = match &c.result {
            Ok(()) => IoResult::Ok,
            Err(e) => bdev_error_to_io_result(e),
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
            (PendingKind::Verify { transfer_len, compare: Some(expected) }, IoResult::Ok) => {
                let read = c.buf.as_deref().unwrap_or(&[]);
                let outcome = match first_difference(read, &expected) {
                    Some(offset) => IoResult::Miscompare { offset },
                    None => IoResult::Ok,
                };
                let r = p.device.lu.io_done(&cmd, outcome);
                CommandResult { status: r.status as u8, sense: r.sense, data_in: Vec::new(), transfer_len: clamp32(transfer_len) }
            }
            (kind, io) => {
                let transfer_len = match kind {
                    PendingKind::Read { transfer_len, .. } | PendingKind::Write { transfer_len } => transfer_len,
                    PendingKind::Verify { transfer_len, .. } => transfer_len,
                    PendingKind::Flush => 0,
                };
                let r = p.device.lu.io_done(&cmd, io);
                CommandResult { status: r.status as u8, sense: r.sense, data_in: Vec::new(), transfer_len: clamp32(transfer_len) }
            }
        };
        self.complete(p.slot, p.task, result, now);
        self.check_tmfs(p.slot, c.tag, now);
    }

    /// Task management (RFC 7143 §11.5). Tasks that already reached a device cannot be recalled: the response waits
    /// until they finish (their results are suppressed by the iSCSI core), so nothing answers after the TMF response.
    fn task_mgmt(&mut self, i: usize, itt: u32, function: u8, lun: u64, aborted: &[TaskId], now: Instant) {
        let lun_no = polltgt_iscsi::wire::decode_lun(lun);
        // Commands still waiting for buffers never reached a device: they end here, as aborted.
        if let Some(generation) = self.slots[i].as_ref().map(|s| s.generation) {
            let f = TmfFunction::from_u8(function);
            let mut ended = Vec::new();
            self.stalled.retain(|st| {
                let mine = st.slot == i && st.generation == generation;
                let hit = mine
                    && match f {
                        Some(TmfFunction::AbortTask) => aborted.contains(&st.task.id),
                        Some(TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet | TmfFunction::LogicalUnitReset) => {
                            polltgt_iscsi::wire::decode_lun(st.task.lun) == lun_no
                        }
                        Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset) => true,
                        _ => false,
                    };
                if hit {
                    ended.push(st.task.id);
                }
                !hit
            });
            self.stats.buffer_waiting = self.stalled.len() as u64;
            for id in ended {
                let result = CommandResult { status: STATUS_TASK_ABORTED, sense: None, data_in: Vec::new(), transfer_len: 0 };
                self.complete(i, id, result, now);
            }
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
        slot.tmfs.push(PendingTmf { itt, function, lun, waiting_for: affected });
        self.check_tmfs(i, 0, now);
    }

    fn check_tmfs(&mut self, i: usize, finished_tag: u64, now: Instant) {
        let Some(slot) = self.slots[i].as_mut() else { return };
        for t in &mut slot.tmfs {
            t.waiting_for.retain(|x| *x != finished_tag);
        }
        let ready: Vec<PendingTmf> = {
            let (ready, waiting): (Vec<_>, Vec<_>) = slot.tmfs.drain(..).partition(|t| t.waiting_for.is_empty());
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
            slot.iscsi.complete_task_mgmt(t.itt, response.into(), now);
            if function == Some(TmfFunction::TargetColdReset) {
                // SAM-5: a cold reset also drops the connection (RFC 7143 §11.5.1).
                slot.iscsi.close();
            }
        }
    }
}

/// SAM-5 TASK ABORTED status.
const STATUS_TASK_ABORTED: u8 = 0x40;

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

/// Offset of the first byte where `read` and the concatenation of `expected` differ.
fn first_difference(read: &[u8], expected: &[Bytes]) -> Option<u64> {
    let mut off = 0usize;
    for seg in expected {
        let end = (off + seg.len()).min(read.len());
        if let Some(p) = read[off..end].iter().zip(seg.iter()).position(|(a, b)| a != b) {
            return Some((off + p) as u64);
        }
        off = end;
        if off == read.len() {
            break;
        }
    }
    None
}

fn bdev_error_to_io_result(e: &polltgt_bdev::BdevError) -> IoResult {
    match e {
        polltgt_bdev::BdevError::OutOfRange { .. } => IoResult::OutOfRange,
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
        }
        true
    }

    /// Interrupt mode: I/O in flight on a bdev channel keeps the reactor polling (completions raise no event).
    fn bdevs_idle(&self) -> bool {
        self.completions.is_empty() && self.stalled.is_empty() && self.channels.values().all(|c| c.in_flight() == 0)
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
    fn first_difference_across_segments() {
        let exp = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"def")];
        assert_eq!(first_difference(b"abcdef", &exp), None);
        assert_eq!(first_difference(b"abcdXf", &exp), Some(4));
        assert_eq!(first_difference(b"Xbcdef", &exp), Some(0));
    }

    #[test]
    fn copy_into_gathers_segments() {
        let mut buf = [0u8; 5];
        copy_into(&mut buf, &[Bytes::from_static(b"ab"), Bytes::from_static(b"cdef")]);
        assert_eq!(&buf, b"abcde");
    }
}
