//! The full feature phase of a session on one connection (RFC 7143 §3.2, §4.2, §11), sans-I/O.
//!
//! Scope: MaxConnections=1, ErrorRecoveryLevel 0, DataPDUInOrder=Yes and DataSequenceInOrder=Yes (the target offers
//! Yes for both and both keys follow the OR rule, so the result is always Yes).
//!
//! The [`Session`] works at the level of the decoded PDU headers of [`crate::wire`] plus `bytes::Bytes` data
//! segments. Its driver (`crate::conn`, or a test) feeds it received PDUs with [`Session::handle_pdu`], completed
//! SCSI commands with [`Session::complete_command`] and task management results with
//! [`Session::complete_task_mgmt`], and takes out PDUs to send ([`Session::poll_pdu`]) and events for the SCSI layer
//! ([`Session::poll_event`]). Time only enters through the `now` arguments; timers are reported by
//! [`Session::poll_timeout`] and fired by [`Session::handle_timeout`].
//!
//! What it implements:
//! * command numbering (§3.2.2.1, §4.2.2.1): the CmdSN window `[ExpCmdSN, MaxCmdSN]`, with MaxCmdSN =
//!   ExpCmdSN + QueuedCommands - (commands in progress) - 1, never announced smaller than before; out-of-window and
//!   duplicate non-immediate commands are silently ignored; non-immediate requests are executed in CmdSN order
//!   (later ones wait until gaps fill); immediate requests are executed at once;
//! * StatSN (§4.2.2.2): advanced by every status-carrying PDU (SCSI Response, Data-In with S bit, Task Management
//!   Response, Text Response, Logout Response, Reject, NOP-In answering a NOP-Out ping); R2T, Data-In without status
//!   and NOP-In pings carry the next StatSN without advancing it; ExpStatSN acknowledgements are tracked;
//! * writes (§4.2.5.2, §11.7, §11.8): immediate data, unsolicited Data-Out up to FirstBurstLength when
//!   InitialR2T=No, then R2Ts (each at most MaxBurstLength, at most MaxOutstandingR2T outstanding per task, R2TSN per
//!   task, a session-unique Target Transfer Tag each); every Data-Out is checked (TTT, LUN, DataSN, buffer offset,
//!   length, F bit); a violation is answered with a Reject (§11.17) and the task is terminated with CHECK CONDITION
//!   once the initiator has finished the data sequences it had started;
//! * reads (§11.7): Data-In PDUs of at most MaxXmitDataSegmentLength bytes, the F bit at the end of every
//!   MaxBurstLength sequence, DataSN and buffer offsets, status phase-collapsed into the last Data-In (S bit) for
//!   GOOD status without sense, otherwise a SCSI Response (with sense data, §11.4.7); residual overflow/underflow
//!   (§11.4.5) from the command's transfer length against the Expected Data Transfer Length;
//! * NOP-Out/NOP-In (§11.18, §11.19) both ways, NopInInterval/NopInTimeout and RspTimeout;
//! * Text Requests in the full feature phase (§11.10, §11.11) with C-bit multi-PDU requests and TTT continuation of
//!   long answers;
//! * task management (§11.5, §11.6), with aborted tasks silenced and their R2T state cleaned up;
//! * logout (§11.14, §11.15); Reject (§11.17) for SNACK at ERL 0, out-of-phase and unknown opcodes.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::time::Instant;

use bytes::Bytes;

use crate::cdb::Cdb;
use crate::params::{SessionParams, SessionType, TargetParams};
use crate::serial::SerialNumber;
use crate::wire::{
    DataIn, DataOut, Header, LogoutRequest, LogoutResponse, NopIn, NopOut, R2t, Reject, ScsiCommand, ScsiResponse,
    TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse,
};

/// The reserved tag value 0xffffffff (ITT/TTT "not present", RFC 7143 §11.2.1).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// SCSI status GOOD (SAM-5).
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION (SAM-5).
pub const STATUS_CHECK_CONDITION: u8 = 0x02;

/// Most immediate SCSI commands in progress at once; more are answered with Reject reason
/// "Immediate command reject - too many immediate commands" (RFC 7143 §11.17.1).
pub const MAX_IMMEDIATE_TASKS: usize = 16;
/// Largest multi-PDU (C bit) text request the session reassembles (RFC 7143 §6.6 lets targets bound it).
pub const MAX_TEXT_REQUEST: usize = 64 * 1024;
/// How many aborted ITTs are remembered to drop late Data-Out PDUs for them silently.
const ABORTED_ITT_MEMORY: usize = 1024;

/// Reject reason codes (RFC 7143 §11.17.1).
pub mod reject_reason {
    /// Data (payload) digest error.
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    /// SNACK Reject.
    pub const SNACK_REJECT: u8 = 0x03;
    /// Protocol Error.
    pub const PROTOCOL_ERROR: u8 = 0x04;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    /// Immediate command reject - too many immediate commands.
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    /// Task in progress.
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    /// Invalid PDU field (bad ITT/TTT, buffer offset, LUN qualifying a TTT, sequence numbers).
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    /// Long op reject - cannot generate a Target Transfer Tag.
    pub const LONG_OP_REJECT: u8 = 0x0a;
    /// Waiting for Logout.
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Task management function codes (RFC 7143 §11.5.1) and response codes (§11.6.1).
pub mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;

    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const FUNCTION_NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    pub const FUNCTION_REJECTED: u8 = 255;
}

/// Logout reason codes (RFC 7143 §11.14.1) and response codes (§11.15.1).
pub mod logout {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_FOR_RECOVERY: u8 = 2;

    pub const CLOSED: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
    pub const CLEANUP_FAILED: u8 = 3;
}

/// A protocol violation by the initiator, and the Reject reason (RFC 7143 §11.17.1) it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    DataSegmentTooLong { len: usize, max: u32 },
    #[error("the reserved ITT 0xffffffff on a request that needs a task tag")]
    ReservedItt,
    #[error("ITT {0:#x} is already used by a task in progress")]
    IttInUse(u32),
    #[error("bidirectional commands are not supported")]
    Bidirectional,
    #[error("SCSI commands and task management are not supported in a discovery session")]
    DiscoverySession,
    #[error("data segment on a SCSI command without the W bit")]
    DataWithoutWrite,
    #[error("immediate data while ImmediateData=No")]
    ImmediateDataNotAllowed,
    #[error("immediate data of {len} bytes exceeds the limit of {limit} bytes (EDTL or FirstBurstLength)")]
    ImmediateDataTooLong { len: usize, limit: u32 },
    #[error("unsolicited Data-Out announced (F=0) while InitialR2T=Yes or with no unsolicited data left to send")]
    UnsolicitedNotAllowed,
    #[error("too many immediate commands in progress")]
    TooManyImmediate,
    #[error("unexpected unsolicited Data-Out for ITT {0:#x}")]
    UnexpectedUnsolicited(u32),
    #[error("Data-Out for unknown ITT {0:#x}")]
    UnknownTask(u32),
    #[error("Data-Out with unknown TTT {ttt:#x} for ITT {itt:#x}")]
    UnknownTtt { itt: u32, ttt: u32 },
    #[error("Data-Out LUN does not match the task's LUN")]
    LunMismatch,
    #[error("DataSN {got} where {expected} was expected")]
    DataSn { got: u32, expected: u32 },
    #[error("buffer offset {got} where {expected} was expected")]
    BufferOffset { got: u32, expected: u32 },
    #[error("Data-Out carries more data than the sequence allows")]
    TooMuchData,
    #[error("F bit does not mark the end of the data sequence")]
    FinalBit,
    #[error("data digest error")]
    DataDigest,
    #[error("NOP-Out with ITT 0xffffffff without the I bit")]
    NopOutNotImmediate,
    #[error("Text Request with unknown TTT {0:#x}")]
    TextTtt(u32),
    #[error("text request longer than {MAX_TEXT_REQUEST} bytes")]
    TextTooLong,
    #[error("Login Request in the full feature phase")]
    LoginInFullFeature,
    #[error("SNACK at ErrorRecoveryLevel 0")]
    Snack,
    #[error("opcode not supported from an initiator")]
    UnsupportedOpcode,
    #[error("request after a Logout Request")]
    AfterLogout,
    #[error("invalid logout reason code {0}")]
    LogoutReason(u8),
    #[error("new request after the target asked for a logout")]
    WaitingForLogout,
    #[error("write data for ITT {0:#x} arrived outside the driver's receive buffer")]
    PlacementMismatch(u32),
}

impl SessionError {
    /// The Reject reason code for this violation (RFC 7143 §11.17.1).
    pub fn reject_reason(&self) -> u8 {
        use reject_reason::*;
        match self {
            SessionError::DataDigest => DATA_DIGEST_ERROR,
            SessionError::DataSegmentTooLong { .. }
            | SessionError::DataWithoutWrite
            | SessionError::ImmediateDataNotAllowed
            | SessionError::UnsolicitedNotAllowed
            | SessionError::UnexpectedUnsolicited(_)
            | SessionError::FinalBit
            | SessionError::NopOutNotImmediate
            | SessionError::TextTooLong
            | SessionError::LoginInFullFeature
            | SessionError::Snack
            | SessionError::AfterLogout
            | SessionError::PlacementMismatch(_) => PROTOCOL_ERROR,
            SessionError::Bidirectional | SessionError::DiscoverySession | SessionError::UnsupportedOpcode => {
                COMMAND_NOT_SUPPORTED
            }
            SessionError::TooManyImmediate => IMMEDIATE_COMMAND_REJECT,
            SessionError::WaitingForLogout => WAITING_FOR_LOGOUT,
            SessionError::ReservedItt
            | SessionError::IttInUse(_)
            | SessionError::ImmediateDataTooLong { .. }
            | SessionError::UnknownTask(_)
            | SessionError::UnknownTtt { .. }
            | SessionError::LunMismatch
            | SessionError::DataSn { .. }
            | SessionError::BufferOffset { .. }
            | SessionError::TooMuchData
            | SessionError::TextTtt(_)
            | SessionError::LogoutReason(_) => INVALID_PDU_FIELD,
        }
    }

    /// The sense data (fixed format, SPC-4 §4.5.3) a write task terminated by this Data-Out violation completes
    /// with: ABORTED COMMAND with the matching SPC-4 additional sense code.
    fn data_out_sense(&self) -> Vec<u8> {
        const ABORTED_COMMAND: u8 = 0x0b;
        let (asc, ascq) = match self {
            // WRITE ERROR - UNEXPECTED UNSOLICITED DATA
            SessionError::UnexpectedUnsolicited(_) => (0x0c, 0x0c),
            // INVALID TARGET PORT TRANSFER TAG RECEIVED
            SessionError::UnknownTtt { .. } => (0x4b, 0x01),
            // TOO MUCH WRITE DATA
            SessionError::TooMuchData => (0x4b, 0x02),
            // DATA OFFSET ERROR
            SessionError::BufferOffset { .. } => (0x4b, 0x05),
            // PROTOCOL SERVICE CRC ERROR
            SessionError::DataDigest => (0x47, 0x05),
            // DATA PHASE ERROR
            _ => (0x4b, 0x00),
        };
        fixed_sense(ABORTED_COMMAND, asc, ascq)
    }
}

/// Sense key ILLEGAL REQUEST (SPC-4 §4.5.6).
const ILLEGAL_REQUEST: u8 = 0x05;

/// Fixed-format sense data (SPC-4 §4.5.3), 18 bytes, current error.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0f;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

/// The opaque id of a SCSI task handed to the driver; unique within a session and never reused. The session
/// numbers its tasks in the upper 32 bits and keeps the task's Initiator Task Tag in the lower ones, so a completion
/// finds its task with one lookup by ITT (a later task reusing the ITT has another number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

impl TaskId {
    fn new(seq: u64, itt: u32) -> TaskId {
        TaskId((seq << 32) | u64::from(itt))
    }

    /// The Initiator Task Tag of the task.
    fn itt(self) -> u32 {
        self.0 as u32
    }
}

/// A SCSI command ready for the SCSI layer: all its write data has arrived and its CmdSN turn has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiTask {
    pub id: TaskId,
    /// Initiator Task Tag (for logs; the driver uses `id`).
    pub itt: u32,
    /// The raw 8-byte LUN field as on the wire (SAM-5 §4.7).
    pub lun: u64,
    /// The CDB: the 16 BHS bytes followed by any Extended CDB AHS bytes.
    pub cdb: Cdb,
    /// Expected Data Transfer Length.
    pub edtl: u32,
    pub read: bool,
    pub write: bool,
    /// Task attribute (§11.3.1 ATTR).
    pub attr: u8,
    pub immediate: bool,
    /// The whole write payload (EDTL bytes for writes) in offset order, as received; empty for non-writes and
    /// for placed writes.
    pub data_out: Vec<Bytes>,
    /// The write data was received by the driver straight into its own buffer for this ITT (zero-copy receive,
    /// see [`Session::placement`]); `data_out` is then empty.
    pub placed: bool,
}

/// Where the data segment of a received PDU may go when the driver receives it into its own buffer instead of
/// handing the bytes to the session (zero-copy receive). See [`Session::placement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A SCSI Command with the W bit: the driver may claim the task's write data by allocating an `edtl`-byte buffer
    /// for `itt` and receiving the immediate data (if any) at offset 0.
    Command { itt: u32, edtl: u32, opcode: u8 },
    /// Data-Out for a claimed task that the session will accept: `len` bytes at `offset` of the task's buffer.
    DataOut { itt: u32, offset: u32, len: u32 },
}

/// A received data segment: bytes, or a length the driver has placed in its own buffer.
#[derive(Debug)]
enum Payload {
    Bytes(Bytes),
    Placed(usize),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Placed(n) => *n,
        }
    }
}

/// The SCSI layer's result for a command, given to [`Session::complete_command`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandResult {
    /// SCSI status (SAM-5).
    pub status: u8,
    /// Sense data, sent in a SCSI Response with a 2-byte SenseLength (RFC 7143 §11.4.7).
    pub sense: Option<Vec<u8>>,
    /// Read data in offset order (a scatter-gather list); at most EDTL bytes of it are sent.
    pub data_in: Vec<Bytes>,
    /// Bytes the command wanted to transfer (its read or write length), compared with EDTL for the residual.
    pub transfer_len: u32,
}

/// A PDU to send: its header and its data segment as a scatter-gather list. ExpCmdSN and MaxCmdSN are filled in
/// by [`Session::poll_pdu`]; digests and padding are the framing's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPdu {
    pub header: Header,
    pub data: Vec<Bytes>,
}

impl OutPdu {
    /// Length of the data segment (without padding).
    pub fn data_len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// The data segment copied into one buffer (tests, logs).
    pub fn data_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.data_len());
        for b in &self.data {
            v.extend_from_slice(b);
        }
        v
    }
}

/// Why the session ended. After a [`SessionEvent::Close`] the session ignores further input; the driver sends
/// what [`Session::poll_pdu`] still returns and then closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A Logout Request was answered.
    Logout,
    /// A NOP-In ping was not answered within NopInTimeout.
    NopInTimeout,
    /// The initiator stopped sending expected Data-Out for longer than RspTimeout.
    RspTimeout,
    /// TARGET COLD RESET was answered (RFC 7143 §11.6.1: the target then closes its connections).
    TargetColdReset,
    /// A data digest error, from which ErrorRecoveryLevel 0 cannot recover (RFC 7143 §7.1.4.1).
    DigestError,
    /// The initiator did not log out within the time an Asynchronous Message asked (RFC 7143 §11.9.1).
    LogoutTimeout,
}

/// What the session asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Execute this SCSI command and call [`Session::complete_command`] with its result.
    Command(ScsiTask),
    /// Perform a task management function (RFC 7143 §11.5) and call [`Session::complete_task_mgmt`] with the
    /// response code (§11.6.1). The session has already dropped the tasks in `aborted` (they will never answer);
    /// the driver cancels them where it can and still completes each of them (the results are dropped).
    TaskMgmt { itt: u32, function: u8, lun: u64, rtt: u32, ref_cmd_sn: SerialNumber, aborted: Vec<TaskId> },
    /// The initiator logs out (reason 0 close the session, 1 close the connection); the Logout Response follows
    /// once the tasks in progress are done.
    Logout { reason: u8 },
    /// The session is over.
    Close { reason: CloseReason },
}

/// Answers a complete text request in the full feature phase (e.g. `SendTargets=All`); the connection supplies it.
pub trait TextResponder {
    /// `request` is the reassembled key=value text (NUL separated); the answer is the response text.
    fn respond(&mut self, request: &[u8]) -> Vec<u8>;
}

/// The sequence numbers the login phase ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    /// The connection's CID (for Logout reason 1/2 checks).
    pub cid: u16,
    /// The next StatSN to send (one after the final Login Response's StatSN).
    pub stat_sn: SerialNumber,
    /// ExpCmdSN after login (the final Login Request's CmdSN; login requests are immediate).
    pub exp_cmd_sn: SerialNumber,
    /// The MaxCmdSN the final Login Response announced; the session never announces less.
    pub max_cmd_sn: SerialNumber,
}

/// Counters of the session's exceptional paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Rejects sent.
    pub rejects: u64,
    /// Non-immediate commands outside the CmdSN window or duplicates, silently ignored (RFC 7143 §3.2.2.1).
    pub ignored_commands: u64,
    /// ExpStatSN values that acknowledged StatSNs not yet sent (or went backwards).
    pub bad_exp_stat_sn: u64,
    /// Data-Out PDUs dropped for aborted or already terminated tasks.
    pub dropped_data_out: u64,
    /// Driver results dropped because their task had been aborted.
    pub dropped_results: u64,
    /// NOP-Out answers whose TTT matched no outstanding ping.
    pub stray_nop_out: u64,
    /// Writes refused because their Expected Data Transfer Length exceeded the target's limit.
    pub refused_transfers: u64,
}

/// An unsolicited Data-Out sequence still open.
#[derive(Debug)]
struct Unsolicited {
    next_offset: u32,
    /// min(FirstBurstLength, EDTL).
    end: u32,
    next_data_sn: u32,
}

/// An outstanding R2T and the Data-Out sequence answering it.
#[derive(Debug)]
struct R2tSeq {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    next_data_sn: u32,
}

#[derive(Debug)]
struct WriteState {
    /// The driver receives this task's data into its own buffer ([`Placement`]); `pieces` stays empty.
    placed: bool,
    /// Received data segments with their buffer offsets.
    pieces: Vec<(u32, Bytes)>,
    unsolicited: Option<Unsolicited>,
    /// `None` while the unsolicited sequence is open; then the first offset not yet solicited by an R2T.
    solicit_from: Option<u32>,
    r2ts: Vec<R2tSeq>,
    next_r2t_sn: u32,
}

#[derive(Debug)]
struct Task {
    id: TaskId,
    itt: u32,
    lun: u64,
    cmd_sn: SerialNumber,
    immediate: bool,
    cdb: Cdb,
    edtl: u32,
    read: bool,
    write: bool,
    attr: u8,
    /// Its CmdSN turn has come (always true for immediate commands).
    released: bool,
    /// The Command event has been emitted.
    delivered: bool,
    /// It occupies one of the QueuedCommands slots (non-immediate and released).
    slot: bool,
    write_state: Option<WriteState>,
    /// Terminated by a Data-Out violation: answer CHECK CONDITION with this sense once the data sequences end.
    failed: Option<Vec<u8>>,
    /// RspTimeout deadline while Data-Out is expected.
    deadline: Option<Instant>,
}

/// A non-immediate request waiting for its CmdSN turn.
#[derive(Debug)]
enum Ordered {
    Scsi(TaskId),
    /// A CmdSN that was received but needs no execution (rejected command, aborted task).
    Consumed,
    Tmf(TaskMgmtRequest),
    Text(TextRequest, Bytes, Bytes),
    Logout(LogoutRequest, Bytes),
    Nop(NopOut, Bytes),
}

/// A text exchange in progress (RFC 7143 §11.10).
#[derive(Debug)]
struct TextState {
    itt: u32,
    /// The TTT the next Text Request must carry (RESERVED_TAG before the target has answered).
    ttt: u32,
    lun: u64,
    request: Vec<u8>,
    /// The rest of a long answer not yet sent.
    response: Option<Bytes>,
}

/// A NOP-In ping waiting for its NOP-Out.
#[derive(Debug, Clone, Copy)]
struct Ping {
    ttt: u32,
    deadline: Instant,
}

/// The full feature phase of one session on one connection. See the module documentation.
pub struct Session {
    params: SessionParams,
    target: TargetParams,
    cid: u16,
    /// The next StatSN to assign.
    stat_sn: SerialNumber,
    /// The initiator's latest valid ExpStatSN.
    acked_stat_sn: SerialNumber,
    exp_cmd_sn: SerialNumber,
    /// The largest MaxCmdSN announced so far.
    max_cmd_sn_announced: SerialNumber,
    /// Released non-immediate tasks not finished yet (including aborted ones still at the driver).
    slots_used: u32,
    tasks: HashMap<u32, Task>,
    next_task_id: u64,
    /// Aborted tasks still at the driver, with whether they hold a slot.
    aborted_in_driver: HashMap<TaskId, bool>,
    aborted_itts: VecDeque<u32>,
    pending: HashMap<u32, Ordered>,
    /// Task management functions at the driver: ITT -> function.
    tmfs: HashMap<u32, u8>,
    /// TMF responses held until the initiator acknowledges StatSN up to the mark (RFC 7143 §11.6.1).
    held_tmf: Vec<(SerialNumber, TaskMgmtResponse)>,
    text: Option<TextState>,
    responder: Box<dyn TextResponder + Send>,
    ping: Option<Ping>,
    last_rx: Instant,
    next_ttt: u32,
    /// ITT of the Logout Request being processed.
    logout: Option<u32>,
    /// The target asked for a logout (AsyncEvent 1) and waits until then.
    logout_requested: Option<Instant>,
    closed: bool,
    out: VecDeque<OutPdu>,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("stat_sn", &self.stat_sn)
            .field("exp_cmd_sn", &self.exp_cmd_sn)
            .field("max_cmd_sn", &self.max_cmd_sn_announced)
            .field("tasks", &self.tasks.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session entering the full feature phase with the negotiated `params`, the target's limits and timers in
    /// `target`, and the numbers the login ended with.
    pub fn new(
        params: SessionParams,
        target: TargetParams,
        numbering: Numbering,
        text: Box<dyn TextResponder + Send>,
        now: Instant,
    ) -> Self {
        Session {
            params,
            target,
            cid: numbering.cid,
            stat_sn: numbering.stat_sn,
            acked_stat_sn: numbering.stat_sn,
            exp_cmd_sn: numbering.exp_cmd_sn,
            max_cmd_sn_announced: numbering.max_cmd_sn,
            slots_used: 0,
            tasks: HashMap::default(),
            next_task_id: 1,
            aborted_in_driver: HashMap::default(),
            aborted_itts: VecDeque::new(),
            pending: HashMap::default(),
            tmfs: HashMap::default(),
            held_tmf: Vec::new(),
            text: None,
            responder: text,
            ping: None,
            last_rx: now,
            next_ttt: 1,
            logout: None,
            logout_requested: None,
            closed: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// The connection ID (CID) the initiator gave the connection at login (RFC 7143 §11.12.6).
    pub fn cid(&self) -> u16 {
        self.cid
    }

    /// Asks the initiator to log out within `within` (RFC 7143 §11.9.1, AsyncEvent 1, Parameter3 in seconds). New
    /// commands are rejected with "Waiting for Logout" from then on; without a Logout Request by the deadline the
    /// target announces the connection drop (AsyncEvent 2) and closes ([`CloseReason::LogoutTimeout`]).
    pub fn request_logout(&mut self, within: std::time::Duration, now: Instant) {
        if self.closed || self.logout_requested.is_some() || self.logout.is_some() {
            return;
        }
        self.logout_requested = Some(now.checked_add(within).unwrap_or(now));
        let secs = u16::try_from(within.as_secs()).unwrap_or(u16::MAX);
        self.push_async(crate::wire::AsyncEvent::LogoutRequest.code(), 0, 0, secs);
    }

    /// The next StatSN the session will assign.
    pub fn stat_sn(&self) -> SerialNumber {
        self.stat_sn
    }

    /// The next expected CmdSN.
    pub fn exp_cmd_sn(&self) -> SerialNumber {
        self.exp_cmd_sn
    }

    /// The current MaxCmdSN (what the next PDU will announce).
    pub fn max_cmd_sn(&self) -> SerialNumber {
        let window = self.target.queued_commands.clamp(1, 1 << 30);
        let free = window.saturating_sub(self.slots_used);
        let computed = SerialNumber(self.exp_cmd_sn.0.wrapping_add(free).wrapping_sub(1));
        if computed > self.max_cmd_sn_announced {
            computed
        } else {
            self.max_cmd_sn_announced
        }
    }

    /// Counters of exceptional paths.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// SCSI tasks the session knows (receiving data, waiting for their CmdSN turn, or at the driver).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// True once a [`SessionEvent::Close`] has been queued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Handle one received PDU. `bhs` is its raw 48-byte Basic Header Segment, echoed in a Reject.
    pub fn handle_pdu(&mut self, header: Header, bhs: &[u8], data: Bytes, now: Instant) {
        if self.closed {
            return;
        }
        self.last_rx = now;
        if let Some(exp) = exp_stat_sn_of(&header) {
            self.acknowledge(exp);
        }
        match header {
            Header::ScsiCommand(c) => self.on_scsi_command(c, bhs, Payload::Bytes(data), now),
            Header::DataOut(d) => self.on_data_out(d, bhs, Payload::Bytes(data), now),
            Header::NopOut(n) => self.on_nop_out(n, bhs, data, now),
            Header::TaskMgmtRequest(t) => self.on_tmf(t, bhs, now),
            Header::TextRequest(t) => self.on_text(t, bhs, data, now),
            Header::LogoutRequest(l) => self.on_logout(l, bhs, now),
            Header::SnackRequest(_) => self.reject(SessionError::Snack, bhs),
            Header::LoginRequest(_) => self.reject(SessionError::LoginInFullFeature, bhs),
            _ => self.reject(SessionError::UnsupportedOpcode, bhs),
        }
        self.release_held_tmf();
    }

    /// Where the data segment of a PDU with `header` and a `data_len`-byte data segment may be received directly
    /// (zero-copy receive), or None when the PDU must go through [`Session::handle_pdu`] with its bytes. Answers
    /// Some only for PDUs the session will accept as they are: a write command that passes every check, and
    /// Data-Out that fits an open sequence of a claimed task. The driver that follows the answer must then call
    /// [`Session::handle_placed_pdu`] for the PDU; every Data-Out for a claimed task that is not placed is refused.
    pub fn placement(&self, header: &Header, data_len: usize) -> Option<Placement> {
        if self.closed {
            return None;
        }
        match header {
            Header::ScsiCommand(c) if c.write => {
                if !c.immediate && !self.cmd_sn_acceptable(c.cmd_sn) {
                    return None;
                }
                // A write above the transfer limit is refused and its data drained, never kept.
                if c.edtl > self.target.max_transfer_length {
                    return None;
                }
                self.validate_command(c, data_len).ok()?;
                Some(Placement::Command { itt: c.itt, edtl: c.edtl, opcode: c.cdb[0] })
            }
            Header::DataOut(d) if data_len > 0 => {
                let task = self.tasks.get(&d.itt)?;
                let ws = task.write_state.as_ref()?;
                if !ws.placed || task.failed.is_some() || task.delivered {
                    return None;
                }
                check_data_out(task, d, data_len, self.params.max_recv_data_segment_length).ok()?;
                Some(Placement::DataOut { itt: d.itt, offset: d.buffer_offset, len: data_len as u32 })
            }
            _ => None,
        }
    }

    /// Whether the task `itt` is a claimed write ([`Placement::Command`]) the session still knows (receiving data,
    /// waiting for its CmdSN turn, or delivered and not yet completed). A claimed buffer whose task is gone
    /// (terminated by a violation, aborted) can be dropped.
    pub fn has_placed_write(&self, itt: u32) -> bool {
        self.tasks.get(&itt).is_some_and(|t| t.write_state.as_ref().is_some_and(|w| w.placed))
    }

    /// Handle a PDU whose `data_len`-byte data segment the driver has placed in its buffer for the task, as
    /// [`Session::placement`] answered for it just before.
    pub fn handle_placed_pdu(&mut self, header: Header, bhs: &[u8], data_len: usize, now: Instant) {
        if self.closed {
            return;
        }
        match header {
            Header::ScsiCommand(c) => {
                self.last_rx = now;
                self.acknowledge(c.exp_stat_sn);
                self.on_scsi_command(c, bhs, Payload::Placed(data_len), now);
                self.release_held_tmf();
            }
            Header::DataOut(d) => {
                self.last_rx = now;
                self.acknowledge(d.exp_stat_sn);
                self.on_data_out(d, bhs, Payload::Placed(data_len), now);
                self.release_held_tmf();
            }
            other => self.handle_pdu(other, bhs, Bytes::new(), now),
        }
    }

    /// Handle a PDU whose data digest did not match (its header digest, if any, did): RFC 7143 §7.8. The PDU is
    /// discarded and rejected with reason "Data (payload) digest error". Then:
    /// * a Data-Out: at ErrorRecoveryLevel 0 no recovery R2T is possible, so the task is terminated with CHECK
    ///   CONDITION, ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR (47/05) once the initiator has ended all its data
    ///   sequences (§7.8 option b); none of its data reaches the SCSI layer; the session goes on;
    /// * a SCSI Command with immediate data: the command is lost and ERL 0 cannot have it retried, so the error is
    ///   escalated to session recovery (§7.8 allows it): the session closes;
    /// * any other PDU: nothing more.
    pub fn handle_data_digest_error(&mut self, header: Header, bhs: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        self.last_rx = now;
        self.reject(SessionError::DataDigest, bhs);
        match header {
            Header::DataOut(d) => {
                let terminating = match self.tasks.get_mut(&d.itt) {
                    Some(task) if task.write_state.is_some() && !task.delivered => {
                        if task.failed.is_none() {
                            task.failed = Some(SessionError::DataDigest.data_out_sense());
                        }
                        true
                    }
                    _ => false,
                };
                if terminating {
                    // The header is sound: it still ends (F bit) and advances the sequence; its data is dropped.
                    self.on_data_out(d, bhs, Payload::Bytes(Bytes::new()), now);
                }
            }
            Header::ScsiCommand(_) => self.close(CloseReason::DigestError),
            _ => {}
        }
    }

    /// Send a Reject with `reason` for a PDU the connection could not even decode (unknown opcode, bad AHS). A
    /// non-immediate request whose CmdSN is readable (SCSI Command, NOP-Out, Task Management, Text, Logout) still
    /// uses up its CmdSN when it lies in the window, so the commands after it are not held back by a gap forever
    /// (RFC 7143 §3.2.2.1: a rejected command's CmdSN is consumed).
    pub fn reject_raw(&mut self, reason: u8, bhs: &[u8]) {
        if self.closed {
            return;
        }
        self.stats.rejects += 1;
        self.push_reject(reason, bhs);
        if let (Some(&b0), Some(sn)) = (bhs.first(), bhs.get(24..28)) {
            let opcode = b0 & 0x3f;
            let immediate = b0 & 0x40 != 0;
            if !immediate && matches!(opcode, 0x00..=0x04 | 0x06) && opcode != 0x03 {
                let cmd_sn = SerialNumber(u32::from_be_bytes([sn[0], sn[1], sn[2], sn[3]]));
                if self.cmd_sn_acceptable(cmd_sn) {
                    self.consume(cmd_sn);
                }
            }
        }
    }

    /// The next PDU to send, with ExpCmdSN and MaxCmdSN filled in.
    pub fn poll_pdu(&mut self) -> Option<OutPdu> {
        let mut pdu = self.out.pop_front()?;
        let exp = self.exp_cmd_sn;
        let max = self.max_cmd_sn();
        self.max_cmd_sn_announced = max;
        match &mut pdu.header {
            Header::ScsiResponse(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::TaskMgmtResponse(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::DataIn(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::R2t(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::AsyncMessage(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::TextResponse(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::LogoutResponse(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::Reject(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::NopIn(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            Header::LoginResponse(h) => (h.exp_cmd_sn, h.max_cmd_sn) = (exp, max),
            _ => {}
        }
        Some(pdu)
    }

    /// True when [`Session::poll_pdu`] has something.
    pub fn has_pdu(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Whether task `id` was aborted while the driver had it (and whether it held a command slot), forgetting it.
    fn take_aborted_in_driver(&mut self, id: TaskId) -> Option<bool> {
        if self.aborted_in_driver.is_empty() {
            return None;
        }
        self.aborted_in_driver.remove(&id)
    }

    /// The SCSI layer finished task `id`. Results of aborted tasks are dropped.
    pub fn complete_command(&mut self, id: TaskId, result: CommandResult, _now: Instant) {
        if let Some(slot) = self.take_aborted_in_driver(id) {
            if slot {
                self.release_slot();
            }
            self.stats.dropped_results += 1;
            self.check_logout();
            return;
        }
        if self.closed {
            return;
        }
        // One lookup by ITT; the id tells the task apart from a later one reusing the ITT.
        let task = match self.tasks.entry(id.itt()) {
            Entry::Occupied(e) if e.get().id == id && e.get().delivered => e.remove(),
            Entry::Occupied(e) if e.get().id == id => {
                tracing::warn!(?id, "completion for a task not yet delivered ignored");
                return;
            }
            _ => {
                tracing::debug!(?id, "completion for an unknown task dropped");
                return;
            }
        };
        if task.slot {
            self.release_slot();
        }
        self.send_result(&task, result);
        self.check_logout();
    }

    /// The driver finished the task management function with Initiator Task Tag `itt`; `response` is the
    /// §11.6.1 response code.
    pub fn complete_task_mgmt(&mut self, itt: u32, response: u8, now: Instant) {
        let Some(function) = self.tmfs.remove(&itt) else {
            tracing::debug!(itt, "task management completion for an unknown ITT dropped");
            return;
        };
        if self.closed {
            return;
        }
        let rsp = TaskMgmtResponse {
            response,
            itt,
            stat_sn: SerialNumber(0),
            exp_cmd_sn: SerialNumber(0),
            max_cmd_sn: SerialNumber(0),
        };
        // §11.6.1: the ABORT TASK SET / CLEAR TASK SET response only after the initiator acknowledged every
        // status sent before it.
        if matches!(function, tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET) && self.acked_stat_sn != self.stat_sn {
            self.held_tmf.push((self.stat_sn, rsp));
            self.send_ping(now);
        } else {
            self.push_tmf_response(rsp);
        }
        if function == tmf::TARGET_COLD_RESET {
            self.close(CloseReason::TargetColdReset);
        }
        self.check_logout();
    }

    /// Aborts, on behalf of another I_T nexus, every task `select(lun, id)` picks (`lun` is the raw LUN field): a
    /// PERSISTENT RESERVE OUT with PREEMPT AND ABORT (SPC-4 §5.9.11.5) aborts the preempted nexuses' tasks as CLEAR
    /// TASK SET would (SAM-5 §7.6). With TAS = 0 (Control mode page) they end without a response. Returns the ids
    /// of those the driver holds: it must still complete them, and their results are dropped.
    ///
    /// Also used for a LOGICAL UNIT RESET or TARGET WARM/COLD RESET requested through another I_T nexus (SAM-5
    /// §7.6, §7.7 with TAS=0: no status for the aborted tasks; the unit attention the reset establishes tells the
    /// initiator).
    pub fn abort_tasks(&mut self, mut select: impl FnMut(u64, TaskId) -> bool) -> Vec<TaskId> {
        if self.closed {
            return Vec::new();
        }
        let itts: Vec<u32> = self.tasks.values().filter(|t| select(t.lun, t.id)).map(|t| t.itt).collect();
        let held = itts.into_iter().filter_map(|itt| self.abort_task(itt)).collect();
        self.advance_now();
        self.check_logout();
        held
    }

    /// The earliest instant at which [`Session::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut consider = |i: Instant| t = Some(t.map_or(i, |c| c.min(i)));
        match self.ping {
            Some(p) => consider(p.deadline),
            None => {
                if let Some(iv) = self.target.nop_in_interval {
                    if let Some(i) = self.last_rx.checked_add(iv) {
                        consider(i);
                    }
                }
            }
        }
        for task in self.tasks.values() {
            if let Some(d) = task.deadline {
                consider(d);
            }
        }
        if let Some(d) = self.logout_requested {
            if self.logout.is_none() {
                consider(d);
            }
        }
        t
    }

    /// Fire the timers due at `now`: NopInTimeout and RspTimeout close the session, an idle connection gets a
    /// NOP-In ping.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(p) = self.ping {
            if now >= p.deadline {
                tracing::info!("NOP-In ping not answered within NopInTimeout, closing");
                self.close(CloseReason::NopInTimeout);
                return;
            }
        }
        if self.tasks.values().any(|t| t.deadline.is_some_and(|d| now >= d)) {
            tracing::info!("initiator sent no Data-Out within RspTimeout, closing");
            self.close(CloseReason::RspTimeout);
            return;
        }
        if self.logout.is_none() && self.logout_requested.is_some_and(|d| now >= d) {
            tracing::info!("initiator did not log out when asked, dropping the connection");
            // §11.9.1 AsyncEvent 2: Parameter1 the CID, Parameter2 Time2Wait, Parameter3 Time2Retain.
            let (cid, wait, retain) = (self.cid, self.params.default_time2wait, self.params.default_time2retain);
            self.push_async(crate::wire::AsyncEvent::ConnectionDrop.code(), cid, wait, retain);
            self.close(CloseReason::LogoutTimeout);
            return;
        }
        if self.ping.is_none() {
            if let Some(iv) = self.target.nop_in_interval {
                if self.last_rx.checked_add(iv).is_some_and(|i| now >= i) {
                    self.send_ping(now);
                }
            }
        }
    }

    // ----- receive paths -----

    fn on_scsi_command(&mut self, c: ScsiCommand, bhs: &[u8], data: Payload, now: Instant) {
        if !c.immediate && !self.cmd_sn_acceptable(c.cmd_sn) {
            self.stats.ignored_commands += 1;
            return;
        }
        if let Err(e) = self.validate_command(&c, data.len()) {
            self.reject(e, bhs);
            if !c.immediate {
                self.consume(c.cmd_sn);
            }
            return;
        }
        let id = TaskId::new(self.next_task_id, c.itt);
        self.next_task_id += 1;
        // The usual case: the command's CmdSN turn has come and nothing waits in `pending` (RFC 7143 §3.2.2.1).
        let in_turn = !c.immediate && c.cmd_sn == self.exp_cmd_sn && self.pending.is_empty();
        let cdb = Cdb::new(c.cdb, &c.ext_cdb);
        // A write larger than the target accepts is refused before any of its data is kept or solicited: the
        // initiator's unsolicited data is drained and dropped, then CHECK CONDITION (SBC-3 §6.6.4: a TRANSFER
        // LENGTH above MAXIMUM TRANSFER LENGTH is an INVALID FIELD IN CDB).
        let too_long = c.write && c.edtl > self.target.max_transfer_length;
        if too_long {
            tracing::debug!(itt = c.itt, edtl = c.edtl, max = self.target.max_transfer_length, "write too long");
            self.stats.refused_transfers += 1;
        }
        let data = if too_long { Payload::Bytes(Bytes::new()) } else { data };
        let write_state = c.write.then(|| {
            let imm = data.len() as u32;
            let unsolicited = (!c.final_).then(|| Unsolicited {
                next_offset: imm,
                end: self.params.first_burst_length.min(c.edtl),
                next_data_sn: 0,
            });
            WriteState {
                placed: matches!(data, Payload::Placed(_)),
                pieces: match data {
                    Payload::Bytes(b) if !b.is_empty() => vec![(0, b)],
                    _ => Vec::new(),
                },
                solicit_from: if unsolicited.is_some() { None } else { Some(imm) },
                unsolicited,
                r2ts: Vec::new(),
                next_r2t_sn: 0,
            }
        });
        let task = Task {
            id,
            itt: c.itt,
            lun: c.lun,
            cmd_sn: c.cmd_sn,
            immediate: c.immediate,
            cdb,
            edtl: c.edtl,
            read: c.read,
            write: c.write,
            attr: c.attr,
            released: c.immediate || in_turn,
            delivered: false,
            slot: in_turn,
            write_state,
            failed: too_long.then(|| fixed_sense(ILLEGAL_REQUEST, 0x24, 0x00)),
            deadline: None,
        };
        self.tasks.insert(c.itt, task);
        self.forget_aborted(c.itt);
        if in_turn {
            // What `advance` would do with it at once, without the round trip through `pending`.
            self.exp_cmd_sn = self.exp_cmd_sn.next();
            self.slots_used += 1;
        } else if !c.immediate {
            self.pending.insert(c.cmd_sn.0, Ordered::Scsi(id));
        }
        self.progress(c.itt, now);
        if !c.immediate && !in_turn {
            self.advance(now);
        }
    }

    fn validate_command(&self, c: &ScsiCommand, data_len: usize) -> Result<(), SessionError> {
        if self.logout.is_some() {
            return Err(SessionError::AfterLogout);
        }
        if self.logout_requested.is_some() {
            return Err(SessionError::WaitingForLogout);
        }
        if self.params.session_type == SessionType::Discovery {
            return Err(SessionError::DiscoverySession);
        }
        if c.itt == RESERVED_TAG {
            return Err(SessionError::ReservedItt);
        }
        if self.tasks.contains_key(&c.itt) || self.tmfs.contains_key(&c.itt) {
            return Err(SessionError::IttInUse(c.itt));
        }
        if (c.read && c.write) || c.bidi_read_edtl.is_some() {
            return Err(SessionError::Bidirectional);
        }
        let max = self.params.max_recv_data_segment_length;
        if data_len > max as usize {
            return Err(SessionError::DataSegmentTooLong { len: data_len, max });
        }
        if data_len > 0 {
            if !c.write {
                return Err(SessionError::DataWithoutWrite);
            }
            if !self.params.immediate_data {
                return Err(SessionError::ImmediateDataNotAllowed);
            }
            let limit = c.edtl.min(self.params.first_burst_length);
            if data_len > limit as usize {
                return Err(SessionError::ImmediateDataTooLong { len: data_len, limit });
            }
        }
        if c.write && !c.final_ {
            let end = self.params.first_burst_length.min(c.edtl);
            if self.params.initial_r2t || data_len >= end as usize {
                return Err(SessionError::UnsolicitedNotAllowed);
            }
        }
        if c.immediate && self.tasks.values().filter(|t| t.immediate).count() >= MAX_IMMEDIATE_TASKS {
            return Err(SessionError::TooManyImmediate);
        }
        Ok(())
    }

    fn on_data_out(&mut self, d: DataOut, bhs: &[u8], data: Payload, now: Instant) {
        let Some(mut task) = self.tasks.remove(&d.itt) else {
            if self.aborted_itts.contains(&d.itt) {
                self.stats.dropped_data_out += 1;
            } else {
                self.reject(SessionError::UnknownTask(d.itt), bhs);
            }
            return;
        };
        let was_failed = task.failed.is_some();
        let max_recv = self.params.max_recv_data_segment_length;
        let result = accept_data_out(&mut task, &d, data, max_recv);
        if was_failed {
            self.stats.dropped_data_out += 1;
        }
        if task.write_state.is_some() && !task.delivered {
            task.deadline = self.target_rsp_deadline(now);
        }
        let itt = task.itt;
        if let Err(e) = result {
            if task.write_state.is_some() && !task.delivered && task.failed.is_none() {
                task.failed = Some(e.data_out_sense());
            }
            self.tasks.insert(itt, task);
            self.reject(e, bhs);
        } else {
            self.tasks.insert(itt, task);
        }
        self.progress(itt, now);
    }

    fn on_nop_out(&mut self, n: NopOut, bhs: &[u8], data: Bytes, now: Instant) {
        if n.itt == RESERVED_TAG && !n.immediate {
            self.reject(SessionError::NopOutNotImmediate, bhs);
            return;
        }
        let max = self.params.max_recv_data_segment_length;
        if data.len() > max as usize {
            self.reject(SessionError::DataSegmentTooLong { len: data.len(), max }, bhs);
            if !n.immediate {
                self.consume_if_acceptable(n.cmd_sn);
            }
            return;
        }
        if n.immediate {
            self.exec_nop(n, data, now);
        } else if self.cmd_sn_acceptable(n.cmd_sn) {
            self.pending.insert(n.cmd_sn.0, Ordered::Nop(n, data));
            self.advance(now);
        } else {
            self.stats.ignored_commands += 1;
        }
    }

    fn exec_nop(&mut self, n: NopOut, data: Bytes, _now: Instant) {
        if n.ttt != RESERVED_TAG {
            match self.ping {
                Some(p) if p.ttt == n.ttt => self.ping = None,
                _ => self.stats.stray_nop_out += 1,
            }
        }
        if n.itt != RESERVED_TAG {
            // §11.19: a NOP-In answering a ping echoes its data and advances StatSN.
            let len = data.len().min(self.max_xmit() as usize);
            let stat_sn = self.alloc_stat_sn();
            let payload = if len == 0 { Vec::new() } else { vec![data.slice(..len)] };
            self.push(
                Header::NopIn(NopIn {
                    lun: 0,
                    itt: n.itt,
                    ttt: RESERVED_TAG,
                    stat_sn,
                    exp_cmd_sn: SerialNumber(0),
                    max_cmd_sn: SerialNumber(0),
                }),
                payload,
            );
        }
    }

    fn on_tmf(&mut self, t: TaskMgmtRequest, bhs: &[u8], now: Instant) {
        if !t.immediate && !self.cmd_sn_acceptable(t.cmd_sn) {
            self.stats.ignored_commands += 1;
            return;
        }
        let err = if self.logout.is_some() {
            Some(SessionError::AfterLogout)
        } else if self.params.session_type == SessionType::Discovery {
            Some(SessionError::DiscoverySession)
        } else if t.itt == RESERVED_TAG {
            Some(SessionError::ReservedItt)
        } else if self.tmfs.contains_key(&t.itt) || self.tasks.contains_key(&t.itt) {
            Some(SessionError::IttInUse(t.itt))
        } else if t.immediate && self.tmfs.len() >= MAX_IMMEDIATE_TASKS {
            Some(SessionError::TooManyImmediate)
        } else {
            None
        };
        if let Some(e) = err {
            self.reject(e, bhs);
            if !t.immediate {
                self.consume(t.cmd_sn);
            }
            return;
        }
        if t.immediate {
            self.exec_tmf(t, now);
        } else {
            self.pending.insert(t.cmd_sn.0, Ordered::Tmf(t));
            self.advance(now);
        }
    }

    fn exec_tmf(&mut self, t: TaskMgmtRequest, now: Instant) {
        let function = t.function & 0x7f;
        let respond = |s: &mut Session, response: u8| {
            s.push_tmf_response(TaskMgmtResponse {
                response,
                itt: t.itt,
                stat_sn: SerialNumber(0),
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
            })
        };
        let aborted = match function {
            tmf::ABORT_TASK => {
                let found = self.tasks.get(&t.rtt).is_some_and(|task| task.lun == t.lun);
                if found {
                    match self.abort_task(t.rtt) {
                        Some(id) => vec![id],
                        None => {
                            // The task never reached the SCSI layer: nothing for the driver to do.
                            respond(self, tmf::FUNCTION_COMPLETE);
                            return;
                        }
                    }
                } else {
                    // §11.6.1 ABORT TASK b) and c).
                    let max = self.max_cmd_sn();
                    if t.ref_cmd_sn.in_window(self.exp_cmd_sn, max) && t.ref_cmd_sn < t.cmd_sn {
                        self.pending.entry(t.ref_cmd_sn.0).or_insert(Ordered::Consumed);
                        respond(self, tmf::FUNCTION_COMPLETE);
                        self.advance(now);
                    } else {
                        respond(self, tmf::TASK_DOES_NOT_EXIST);
                    }
                    return;
                }
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET | tmf::LOGICAL_UNIT_RESET => {
                let itts: Vec<u32> = self.tasks.values().filter(|x| x.lun == t.lun).map(|x| x.itt).collect();
                itts.into_iter().filter_map(|itt| self.abort_task(itt)).collect()
            }
            tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => {
                let itts: Vec<u32> = self.tasks.keys().copied().collect();
                itts.into_iter().filter_map(|itt| self.abort_task(itt)).collect()
            }
            tmf::CLEAR_ACA => Vec::new(),
            tmf::TASK_REASSIGN => {
                // Allegiance reassignment needs ErrorRecoveryLevel 2.
                respond(self, tmf::REASSIGNMENT_NOT_SUPPORTED);
                return;
            }
            _ => {
                respond(self, tmf::FUNCTION_NOT_SUPPORTED);
                return;
            }
        };
        self.tmfs.insert(t.itt, function);
        self.events.push_back(SessionEvent::TaskMgmt {
            itt: t.itt,
            function,
            lun: t.lun,
            rtt: t.rtt,
            ref_cmd_sn: t.ref_cmd_sn,
            aborted,
        });
    }

    fn on_text(&mut self, t: TextRequest, bhs: &[u8], data: Bytes, now: Instant) {
        if !t.immediate && !self.cmd_sn_acceptable(t.cmd_sn) {
            self.stats.ignored_commands += 1;
            return;
        }
        let max = self.params.max_recv_data_segment_length;
        let err = if self.logout.is_some() {
            Some(SessionError::AfterLogout)
        } else if t.itt == RESERVED_TAG {
            Some(SessionError::ReservedItt)
        } else if data.len() > max as usize {
            Some(SessionError::DataSegmentTooLong { len: data.len(), max })
        } else {
            None
        };
        if let Some(e) = err {
            self.reject(e, bhs);
            if !t.immediate {
                self.consume(t.cmd_sn);
            }
            return;
        }
        if t.immediate {
            self.exec_text(t, data, bhs);
        } else {
            let bhs = Bytes::copy_from_slice(bhs);
            self.pending.insert(t.cmd_sn.0, Ordered::Text(t, data, bhs));
            self.advance(now);
        }
    }

    fn exec_text(&mut self, t: TextRequest, data: Bytes, bhs: &[u8]) {
        if t.ttt == RESERVED_TAG {
            // A new exchange (a request with the reserved TTT also resets one in progress).
            self.text =
                Some(TextState { itt: t.itt, ttt: RESERVED_TAG, lun: t.lun, request: Vec::new(), response: None });
        } else if !self.text.as_ref().is_some_and(|s| s.itt == t.itt && s.ttt == t.ttt) {
            self.reject(SessionError::TextTtt(t.ttt), bhs);
            return;
        }
        let Some(mut state) = self.text.take() else {
            return;
        };
        if let Some(rest) = state.response.take() {
            // Continuation of a long answer: the request carries no text of its own.
            self.send_text_chunk(state, rest, t.final_);
            return;
        }
        if state.request.len() + data.len() > MAX_TEXT_REQUEST {
            self.reject(SessionError::TextTooLong, bhs);
            return;
        }
        state.request.extend_from_slice(&data);
        if t.continue_ {
            // §11.10.2: more request text follows; ask for it with an empty response.
            let ttt = self.alloc_ttt();
            state.ttt = ttt;
            let lun = state.lun;
            self.text = Some(state);
            self.push_text_response(t.itt, lun, ttt, false, false, Vec::new());
            return;
        }
        let request = std::mem::take(&mut state.request);
        let answer = Bytes::from(self.responder.respond(&request));
        self.send_text_chunk(state, answer, t.final_);
    }

    fn send_text_chunk(&mut self, mut state: TextState, answer: Bytes, final_request: bool) {
        let max = self.max_xmit() as usize;
        let (chunk, rest) =
            if answer.len() > max { (answer.slice(..max), Some(answer.slice(max..))) } else { (answer, None) };
        let data = if chunk.is_empty() { Vec::new() } else { vec![chunk] };
        let itt = state.itt;
        let lun = state.lun;
        if rest.is_some() {
            // §11.11.2: C=1, F=0 and a TTT the initiator returns to get the rest.
            let ttt = self.alloc_ttt();
            state.ttt = ttt;
            state.response = rest;
            self.text = Some(state);
            self.push_text_response(itt, lun, ttt, false, true, data);
        } else if final_request {
            self.text = None;
            self.push_text_response(itt, 0, RESERVED_TAG, true, false, data);
        } else {
            // The initiator said more requests follow (F=0): answer with F=0 and a TTT (§11.11.1).
            let ttt = self.alloc_ttt();
            state.ttt = ttt;
            self.text = Some(state);
            self.push_text_response(itt, lun, ttt, false, false, data);
        }
    }

    fn on_logout(&mut self, l: LogoutRequest, bhs: &[u8], now: Instant) {
        if !l.immediate && !self.cmd_sn_acceptable(l.cmd_sn) {
            self.stats.ignored_commands += 1;
            return;
        }
        if l.itt == RESERVED_TAG || self.logout.is_some() {
            let e = if l.itt == RESERVED_TAG { SessionError::ReservedItt } else { SessionError::AfterLogout };
            self.reject(e, bhs);
            if !l.immediate {
                self.consume(l.cmd_sn);
            }
            return;
        }
        if l.immediate {
            self.exec_logout(l, bhs);
        } else {
            self.pending.insert(l.cmd_sn.0, Ordered::Logout(l, Bytes::copy_from_slice(bhs)));
            self.advance(now);
        }
    }

    fn exec_logout(&mut self, l: LogoutRequest, bhs: &[u8]) {
        let reason = l.reason & 0x7f;
        match reason {
            logout::CLOSE_SESSION | logout::CLOSE_CONNECTION => {
                if reason == logout::CLOSE_CONNECTION && l.cid != self.cid {
                    self.push_logout_response(l.itt, logout::CID_NOT_FOUND);
                    return;
                }
                self.logout = Some(l.itt);
                self.text = None;
                // Tasks that never reached the SCSI layer are terminated; those at the driver finish first.
                let undelivered: Vec<u32> = self.tasks.values().filter(|t| !t.delivered).map(|t| t.itt).collect();
                for itt in undelivered {
                    self.abort_task(itt);
                }
                self.events.push_back(SessionEvent::Logout { reason });
                self.check_logout();
            }
            logout::REMOVE_FOR_RECOVERY => {
                // Connection recovery needs ErrorRecoveryLevel 2.
                self.push_logout_response(l.itt, logout::RECOVERY_NOT_SUPPORTED);
            }
            other => self.reject(SessionError::LogoutReason(other), bhs),
        }
    }

    // ----- command ordering -----

    fn cmd_sn_acceptable(&self, cmd_sn: SerialNumber) -> bool {
        cmd_sn.in_window(self.exp_cmd_sn, self.max_cmd_sn()) && !self.pending.contains_key(&cmd_sn.0)
    }

    /// A rejected non-immediate request still uses up its CmdSN (if it was in the window).
    fn consume(&mut self, cmd_sn: SerialNumber) {
        self.pending.insert(cmd_sn.0, Ordered::Consumed);
        self.advance_now();
    }

    fn consume_if_acceptable(&mut self, cmd_sn: SerialNumber) {
        if self.cmd_sn_acceptable(cmd_sn) {
            self.consume(cmd_sn);
        } else {
            self.stats.ignored_commands += 1;
        }
    }

    fn advance_now(&mut self) {
        let now = self.last_rx;
        self.advance(now);
    }

    /// Execute the requests whose CmdSN turn has come.
    fn advance(&mut self, now: Instant) {
        while let Some(item) = self.pending.remove(&self.exp_cmd_sn.0) {
            self.exp_cmd_sn = self.exp_cmd_sn.next();
            match item {
                Ordered::Consumed => {}
                Ordered::Scsi(id) => {
                    let itt = id.itt();
                    let Some(task) = self.tasks.get_mut(&itt).filter(|t| t.id == id) else { continue };
                    task.released = true;
                    task.slot = true;
                    self.slots_used += 1;
                    self.progress(itt, now);
                }
                Ordered::Tmf(t) => self.exec_tmf(t, now),
                Ordered::Text(t, data, bhs) => self.exec_text(t, data, &bhs),
                Ordered::Logout(l, bhs) => self.exec_logout(l, &bhs),
                Ordered::Nop(n, data) => self.exec_nop(n, data, now),
            }
            if self.closed {
                break;
            }
        }
    }

    fn release_slot(&mut self) {
        self.slots_used = self.slots_used.saturating_sub(1);
    }

    // ----- task progress -----

    /// Move task `itt` on: solicit write data, deliver it to the SCSI layer, or terminate it after a violation.
    fn progress(&mut self, itt: u32, now: Instant) {
        // In place when nothing is owed or to be solicited (reads, writes whose data has all arrived): the task
        // only waits for its CmdSN turn or is delivered; moving it out of the table and back costs more.
        {
            let Some(task) = self.tasks.get_mut(&itt) else {
                return;
            };
            let settled = task.failed.is_none()
                && task.write_state.as_ref().is_none_or(|ws| {
                    ws.unsolicited.is_none() && ws.r2ts.is_empty() && ws.solicit_from == Some(task.edtl)
                });
            if settled {
                if task.write_state.is_some() {
                    task.deadline = None;
                }
                if task.released && !task.delivered {
                    self.events.push_back(SessionEvent::Command(deliver(itt, task)));
                }
                return;
            }
        }
        let Some(mut task) = self.tasks.remove(&itt) else {
            return;
        };
        if let Some(sense) = task.failed.clone() {
            let open = task.write_state.as_ref().is_some_and(|w| w.unsolicited.is_some() || !w.r2ts.is_empty());
            if open {
                // The initiator still owes the end of a data sequence; RspTimeout bounds the wait.
                if task.deadline.is_none() {
                    task.deadline = self.target_rsp_deadline(now);
                }
                self.tasks.insert(itt, task);
                return;
            }
            // §11.17: the terminated task answers CHECK CONDITION once its data sequences have ended.
            if task.slot {
                self.release_slot();
            }
            if !task.released {
                self.pending.insert(task.cmd_sn.0, Ordered::Consumed);
            }
            self.push_scsi_response(&task, STATUS_CHECK_CONDITION, Some(sense), None, 0);
            self.check_logout();
            return;
        }
        let mut complete = true;
        if let Some(ws) = task.write_state.as_mut() {
            let max_out = self.params.max_outstanding_r2t.max(1) as usize;
            let mbl = self.params.max_burst_length.max(1);
            let mut r2ts = Vec::new();
            if ws.unsolicited.is_none() {
                while ws.r2ts.len() < max_out {
                    let Some(from) = ws.solicit_from else { break };
                    if from >= task.edtl {
                        break;
                    }
                    let len = mbl.min(task.edtl - from);
                    let ttt = self.alloc_ttt();
                    ws.r2ts.push(R2tSeq { ttt, offset: from, len, received: 0, next_data_sn: 0 });
                    ws.solicit_from = Some(from + len);
                    r2ts.push(R2t {
                        lun: task.lun,
                        itt,
                        ttt,
                        stat_sn: self.stat_sn,
                        exp_cmd_sn: SerialNumber(0),
                        max_cmd_sn: SerialNumber(0),
                        r2t_sn: SerialNumber(ws.next_r2t_sn),
                        buffer_offset: from,
                        desired_len: len,
                    });
                    ws.next_r2t_sn = ws.next_r2t_sn.wrapping_add(1);
                }
            }
            let waiting = ws.unsolicited.is_some() || !ws.r2ts.is_empty();
            complete = !waiting && ws.solicit_from == Some(task.edtl);
            if waiting {
                if !r2ts.is_empty() || task.deadline.is_none() {
                    task.deadline = self.target_rsp_deadline(now);
                }
            } else {
                task.deadline = None;
            }
            for r in r2ts {
                self.push(Header::R2t(r), Vec::new());
            }
        }
        if complete && task.released && !task.delivered {
            self.events.push_back(SessionEvent::Command(deliver(itt, &mut task)));
        }
        self.tasks.insert(itt, task);
    }

    /// Drop task `itt` (a TMF or logout terminated it). Returns its id when the driver has it (and must still
    /// complete it).
    fn abort_task(&mut self, itt: u32) -> Option<TaskId> {
        let task = self.tasks.remove(&itt)?;
        if !task.released {
            self.pending.insert(task.cmd_sn.0, Ordered::Consumed);
        }
        self.aborted_itts.push_back(itt);
        if self.aborted_itts.len() > ABORTED_ITT_MEMORY {
            self.aborted_itts.pop_front();
        }
        if task.delivered {
            self.aborted_in_driver.insert(task.id, task.slot);
            Some(task.id)
        } else {
            if task.slot {
                self.release_slot();
            }
            None
        }
    }

    fn forget_aborted(&mut self, itt: u32) {
        self.aborted_itts.retain(|&x| x != itt);
    }

    fn check_logout(&mut self) {
        let Some(itt) = self.logout else { return };
        if self.closed || !self.tasks.is_empty() || !self.tmfs.is_empty() {
            return;
        }
        self.push_logout_response(itt, logout::CLOSED);
        self.close(CloseReason::Logout);
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(SessionEvent::Close { reason });
        }
    }

    // ----- status and acknowledgement -----

    fn acknowledge(&mut self, exp_stat_sn: SerialNumber) {
        if exp_stat_sn.in_window(self.acked_stat_sn, self.stat_sn) {
            self.acked_stat_sn = exp_stat_sn;
        } else {
            self.stats.bad_exp_stat_sn += 1;
            tracing::debug!(%exp_stat_sn, acked = %self.acked_stat_sn, next = %self.stat_sn, "ExpStatSN out of range");
        }
    }

    fn release_held_tmf(&mut self) {
        if self.held_tmf.is_empty() || self.closed {
            return;
        }
        let acked = self.acked_stat_sn;
        let held = std::mem::take(&mut self.held_tmf);
        for (mark, rsp) in held {
            if acked.in_window(mark, self.stat_sn) {
                self.push_tmf_response(rsp);
            } else {
                self.held_tmf.push((mark, rsp));
            }
        }
    }

    fn send_ping(&mut self, now: Instant) {
        if self.ping.is_some() || self.closed {
            return;
        }
        let ttt = self.alloc_ttt();
        let deadline = now.checked_add(self.target.nop_in_timeout).unwrap_or(now);
        self.ping = Some(Ping { ttt, deadline });
        // §11.19: a ping carries the next StatSN without advancing it.
        self.push(
            Header::NopIn(NopIn {
                lun: 0,
                itt: RESERVED_TAG,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
            }),
            Vec::new(),
        );
    }

    fn send_result(&mut self, task: &Task, mut result: CommandResult) {
        let edtl = task.edtl;
        let residual = Residual::of(result.transfer_len, edtl);
        let good = result.status == STATUS_GOOD && result.sense.is_none();
        let mut data_sn: u32 = 0;
        if task.read {
            let avail: u64 = result.data_in.iter().map(|b| b.len() as u64).sum();
            let send_len = avail.min(u64::from(edtl)) as u32;
            let mxd = self.max_xmit();
            let mbl = self.params.max_burst_length.max(1);
            // The common case, one buffer that fits one Data-In PDU: its list goes out as it is.
            let single = result.data_in.len() == 1 && avail == u64::from(send_len) && send_len <= mxd.min(mbl);
            let mut whole = if single { Some(std::mem::take(&mut result.data_in)) } else { None };
            let mut cursor = SgCursor::new(&result.data_in);
            let mut offset: u32 = 0;
            while offset < send_len {
                let burst_end = (offset / mbl).saturating_add(1).saturating_mul(mbl).min(send_len);
                let len = mxd.min(burst_end - offset);
                let end = offset + len;
                let collapse = end == send_len && good;
                let chunk = match whole.take() {
                    Some(list) => list,
                    None => cursor.take(len as usize),
                };
                let stat_sn = if collapse { self.alloc_stat_sn() } else { SerialNumber(0) };
                self.push(
                    Header::DataIn(DataIn {
                        final_: end == burst_end,
                        ack: false,
                        overflow: collapse && residual.overflow,
                        underflow: collapse && residual.underflow,
                        status: collapse.then_some(result.status),
                        lun: 0,
                        itt: task.itt,
                        ttt: RESERVED_TAG,
                        stat_sn,
                        exp_cmd_sn: SerialNumber(0),
                        max_cmd_sn: SerialNumber(0),
                        data_sn: SerialNumber(data_sn),
                        buffer_offset: offset,
                        residual: if collapse { residual.count } else { 0 },
                    }),
                    chunk,
                );
                data_sn = data_sn.wrapping_add(1);
                offset = end;
                if collapse {
                    return;
                }
            }
        }
        self.push_scsi_response(task, result.status, result.sense, Some(residual), data_sn);
    }

    fn push_scsi_response(
        &mut self,
        task: &Task,
        status: u8,
        sense: Option<Vec<u8>>,
        residual: Option<Residual>,
        data_sn: u32,
    ) {
        let residual = residual.unwrap_or_default();
        let mut data = Vec::new();
        if let Some(sense) = sense {
            // §11.4.7: SenseLength (2 bytes) and the sense data, within the initiator's MaxRecvDataSegmentLength.
            let max = (self.max_xmit() as usize).saturating_sub(2).min(usize::from(u16::MAX));
            let len = sense.len().min(max);
            let mut seg = Vec::with_capacity(2 + len);
            seg.extend_from_slice(&(len as u16).to_be_bytes());
            seg.extend_from_slice(&sense[..len]);
            data.push(Bytes::from(seg));
        }
        let stat_sn = self.alloc_stat_sn();
        self.push(
            Header::ScsiResponse(ScsiResponse {
                bidi_overflow: false,
                bidi_underflow: false,
                overflow: residual.overflow,
                underflow: residual.underflow,
                response: 0,
                status,
                itt: task.itt,
                snack_tag: 0,
                stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
                exp_data_sn: SerialNumber(data_sn),
                bidi_residual: 0,
                residual: residual.count,
            }),
            data,
        );
    }

    fn push_tmf_response(&mut self, mut rsp: TaskMgmtResponse) {
        rsp.stat_sn = self.alloc_stat_sn();
        self.push(Header::TaskMgmtResponse(rsp), Vec::new());
    }

    fn push_text_response(&mut self, itt: u32, lun: u64, ttt: u32, final_: bool, continue_: bool, data: Vec<Bytes>) {
        let stat_sn = self.alloc_stat_sn();
        self.push(
            Header::TextResponse(TextResponse {
                final_,
                continue_,
                lun: if ttt == RESERVED_TAG { 0 } else { lun },
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
            }),
            data,
        );
    }

    fn push_logout_response(&mut self, itt: u32, response: u8) {
        let stat_sn = self.alloc_stat_sn();
        let (time2wait, time2retain) = if response == logout::CLOSED {
            (self.params.default_time2wait, self.params.default_time2retain)
        } else {
            (0, 0)
        };
        self.push(
            Header::LogoutResponse(LogoutResponse {
                response,
                itt,
                stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
                time2wait,
                time2retain,
            }),
            Vec::new(),
        );
    }

    fn reject(&mut self, e: SessionError, bhs: &[u8]) {
        tracing::debug!(error = %e, "rejecting PDU");
        self.stats.rejects += 1;
        self.push_reject(e.reject_reason(), bhs);
    }

    fn push_reject(&mut self, reason: u8, bhs: &[u8]) {
        let header = &bhs[..bhs.len().min(crate::wire::BHS_LEN)];
        let stat_sn = self.alloc_stat_sn();
        self.push(
            Header::Reject(Reject {
                reason,
                stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
                data_sn: SerialNumber(0),
            }),
            vec![Bytes::copy_from_slice(header)],
        );
    }

    /// An Asynchronous Message (§11.9); it carries and advances StatSN like any response.
    fn push_async(&mut self, event: u8, param1: u16, param2: u16, param3: u16) {
        let stat_sn = self.alloc_stat_sn();
        self.push(
            Header::AsyncMessage(crate::wire::AsyncMessage {
                lun: 0,
                stat_sn,
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
                event,
                vcode: 0,
                param1,
                param2,
                param3,
            }),
            Vec::new(),
        );
    }

    fn push(&mut self, header: Header, data: Vec<Bytes>) {
        self.out.push_back(OutPdu { header, data });
    }

    fn alloc_stat_sn(&mut self) -> SerialNumber {
        let s = self.stat_sn;
        self.stat_sn = s.next();
        s
    }

    fn alloc_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 0;
        }
        t
    }

    /// The largest data segment we may send, never below the RFC minimum of 512.
    fn max_xmit(&self) -> u32 {
        self.params.max_xmit_data_segment_length.max(512)
    }

    fn target_rsp_deadline(&self, now: Instant) -> Option<Instant> {
        Some(now.checked_add(self.target.rsp_timeout).unwrap_or(now))
    }
}

/// Marks `task` delivered and builds the command for the SCSI layer: its data in offset order, its CDB (which the
/// task needs no more).
fn deliver(itt: u32, task: &mut Task) -> ScsiTask {
    task.delivered = true;
    let data_out = match task.write_state.as_mut() {
        Some(ws) => {
            let mut pieces = std::mem::take(&mut ws.pieces);
            pieces.sort_by_key(|(off, _)| *off);
            pieces.into_iter().map(|(_, b)| b).collect()
        }
        None => Vec::new(),
    };
    ScsiTask {
        id: task.id,
        itt,
        lun: task.lun,
        cdb: std::mem::take(&mut task.cdb),
        edtl: task.edtl,
        read: task.read,
        write: task.write,
        attr: task.attr,
        immediate: task.immediate,
        data_out,
        placed: task.write_state.as_ref().is_some_and(|w| w.placed),
    }
}

/// Residual overflow/underflow (RFC 7143 §11.4.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Residual {
    overflow: bool,
    underflow: bool,
    count: u32,
}

impl Residual {
    fn of(transfer_len: u32, edtl: u32) -> Residual {
        match transfer_len.cmp(&edtl) {
            std::cmp::Ordering::Greater => Residual { overflow: true, underflow: false, count: transfer_len - edtl },
            std::cmp::Ordering::Less => Residual { overflow: false, underflow: true, count: edtl - transfer_len },
            std::cmp::Ordering::Equal => Residual::default(),
        }
    }
}

/// Walks a scatter-gather list handing out zero-copy slices.
struct SgCursor<'a> {
    bufs: &'a [Bytes],
    index: usize,
    pos: usize,
}

impl<'a> SgCursor<'a> {
    fn new(bufs: &'a [Bytes]) -> Self {
        SgCursor { bufs, index: 0, pos: 0 }
    }

    /// The next `n` bytes (fewer if the list ends) as slices of the underlying buffers.
    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while n > 0 {
            let Some(buf) = self.bufs.get(self.index) else { break };
            let avail = buf.len().saturating_sub(self.pos);
            if avail == 0 {
                self.index += 1;
                self.pos = 0;
                continue;
            }
            let t = avail.min(n);
            out.push(buf.slice(self.pos..self.pos + t));
            self.pos += t;
            n -= t;
        }
        out
    }
}

/// Check one Data-Out against the task's open sequences and store its data (RFC 7143 §11.7).
fn accept_data_out(task: &mut Task, d: &DataOut, data: Payload, max_recv: u32) -> Result<(), SessionError> {
    let itt = task.itt;
    let failed = task.failed.is_some();
    let task_lun = task.lun;
    let Some(ws) = task.write_state.as_mut() else {
        return Err(if d.ttt == RESERVED_TAG {
            SessionError::UnexpectedUnsolicited(itt)
        } else {
            SessionError::UnknownTtt { itt, ttt: d.ttt }
        });
    };
    let len = data.len();
    // Placed data for a task whose data the session collects, or bytes for a task the driver claimed: the data
    // went somewhere the other side does not look.
    let mismatch = match &data {
        Payload::Placed(_) => !ws.placed,
        Payload::Bytes(b) => ws.placed && !b.is_empty(),
    };
    let data = match data {
        Payload::Bytes(b) => b,
        Payload::Placed(_) => Bytes::new(),
    };
    if d.ttt == RESERVED_TAG {
        let Some(seq) = ws.unsolicited.as_mut() else {
            return if failed { Ok(()) } else { Err(SessionError::UnexpectedUnsolicited(itt)) };
        };
        let check = if failed {
            Ok(())
        } else if mismatch {
            Err(SessionError::PlacementMismatch(itt))
        } else {
            check_sequence(d, len, max_recv, (seq.next_data_sn, seq.next_offset, seq.end), true)
        };
        if check.is_ok() && !failed {
            seq.next_data_sn = seq.next_data_sn.wrapping_add(1);
            seq.next_offset += len as u32;
            if !data.is_empty() {
                ws.pieces.push((d.buffer_offset, data));
            }
        }
        if d.final_ {
            // §11.7.1: F ends the unsolicited sequence; what it left out is solicited by R2T.
            ws.solicit_from = Some(seq.next_offset);
            ws.unsolicited = None;
        }
        check
    } else {
        let Some(pos) = ws.r2ts.iter().position(|r| r.ttt == d.ttt) else {
            return if failed { Ok(()) } else { Err(SessionError::UnknownTtt { itt, ttt: d.ttt }) };
        };
        let seq = &mut ws.r2ts[pos];
        let check = if failed {
            Ok(())
        } else if mismatch {
            Err(SessionError::PlacementMismatch(itt))
        } else if d.lun != task_lun {
            Err(SessionError::LunMismatch)
        } else {
            let expected = seq.offset + seq.received;
            check_sequence(d, len, max_recv, (seq.next_data_sn, expected, seq.offset + seq.len), false)
        };
        if check.is_ok() && !failed {
            seq.next_data_sn = seq.next_data_sn.wrapping_add(1);
            seq.received += len as u32;
            if !data.is_empty() {
                ws.pieces.push((d.buffer_offset, data));
            }
        }
        if d.final_ {
            ws.r2ts.remove(pos);
        }
        check
    }
}

/// The checks [`accept_data_out`] makes for a task that is not failed, without changing anything.
fn check_data_out(task: &Task, d: &DataOut, len: usize, max_recv: u32) -> Result<(), SessionError> {
    let itt = task.itt;
    let Some(ws) = task.write_state.as_ref() else {
        return Err(SessionError::UnexpectedUnsolicited(itt));
    };
    if d.ttt == RESERVED_TAG {
        let seq = ws.unsolicited.as_ref().ok_or(SessionError::UnexpectedUnsolicited(itt))?;
        check_sequence(d, len, max_recv, (seq.next_data_sn, seq.next_offset, seq.end), true)
    } else {
        let seq = ws.r2ts.iter().find(|r| r.ttt == d.ttt).ok_or(SessionError::UnknownTtt { itt, ttt: d.ttt })?;
        if d.lun != task.lun {
            return Err(SessionError::LunMismatch);
        }
        check_sequence(d, len, max_recv, (seq.next_data_sn, seq.offset + seq.received, seq.offset + seq.len), false)
    }
}

/// The checks shared by unsolicited and solicited Data-Out: segment length, DataSN, in-order buffer offset,
/// sequence bounds, and the F bit exactly on the PDU that ends the sequence. `(expected_sn, expected_offset, end)`
/// describe the sequence; `short_ok` lets the F bit end it early (an unsolicited sequence may stop before
/// FirstBurstLength; an R2T's sequence must deliver the whole desired length).
fn check_sequence(
    d: &DataOut,
    len: usize,
    max_recv: u32,
    (expected_sn, expected_offset, end): (u32, u32, u32),
    short_ok: bool,
) -> Result<(), SessionError> {
    if len > max_recv as usize {
        return Err(SessionError::DataSegmentTooLong { len, max: max_recv });
    }
    if d.data_sn.0 != expected_sn {
        return Err(SessionError::DataSn { got: d.data_sn.0, expected: expected_sn });
    }
    if d.buffer_offset != expected_offset {
        return Err(SessionError::BufferOffset { got: d.buffer_offset, expected: expected_offset });
    }
    let new_end = u64::from(expected_offset) + len as u64;
    if new_end > u64::from(end) {
        return Err(SessionError::TooMuchData);
    }
    if (new_end == u64::from(end)) != d.final_ && !(short_ok && d.final_) {
        return Err(SessionError::FinalBit);
    }
    Ok(())
}

fn exp_stat_sn_of(h: &Header) -> Option<SerialNumber> {
    Some(match h {
        Header::ScsiCommand(x) => x.exp_stat_sn,
        Header::DataOut(x) => x.exp_stat_sn,
        Header::NopOut(x) => x.exp_stat_sn,
        Header::TaskMgmtRequest(x) => x.exp_stat_sn,
        Header::TextRequest(x) => x.exp_stat_sn,
        Header::LogoutRequest(x) => x.exp_stat_sn,
        Header::SnackRequest(x) => x.exp_stat_sn,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Digest;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const LUN: u64 = 0x0001_0000_0000_0000;

    /// A responder that records requests and answers with a fixed text.
    struct Canned {
        answer: Vec<u8>,
        seen: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl TextResponder for Canned {
        fn respond(&mut self, request: &[u8]) -> Vec<u8> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.to_vec());
            }
            self.answer.clone()
        }
    }

    fn session_params() -> SessionParams {
        SessionParams {
            session_type: SessionType::Normal,
            initiator_name: "iqn.2024-01.test:init".into(),
            initiator_alias: None,
            target_name: "iqn.2024-01.test:tgt".into(),
            isid: [0x40, 0, 0, 1, 0, 0],
            tsih: 1,
            header_digest: Digest::None,
            data_digest: Digest::None,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
            max_burst_length: 65536,
            first_burst_length: 16384,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 0,
            max_connections: 1,
            error_recovery_level: 0,
        }
    }

    fn target_params() -> TargetParams {
        TargetParams {
            queued_commands: 8,
            nop_in_interval: Some(Duration::from_secs(5)),
            nop_in_timeout: Duration::from_secs(3),
            rsp_timeout: Duration::from_secs(20),
            ..TargetParams::default()
        }
    }

    /// The initiator side of a scenario: a virtual clock, CmdSN and ExpStatSN bookkeeping, and invariant checks
    /// on everything the session sends.
    struct H {
        s: Session,
        t0: Instant,
        now: Instant,
        /// ExpStatSN the initiator acknowledges with (one after the last status received).
        exp_stat_sn: SerialNumber,
        /// The StatSN the next status PDU must carry.
        next_stat_sn: SerialNumber,
        last_max_cmd_sn: SerialNumber,
        max_xmit: usize,
        text_seen: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    const START_STAT_SN: u32 = 100;
    const START_CMD_SN: u32 = 1;

    impl H {
        fn new(sp: SessionParams, tp: TargetParams) -> H {
            H::with(sp, tp, START_CMD_SN, b"TargetName=iqn.2024-01.test:tgt\0".to_vec())
        }

        fn default() -> H {
            H::new(session_params(), target_params())
        }

        fn with(sp: SessionParams, tp: TargetParams, cmd_sn: u32, answer: Vec<u8>) -> H {
            let t0 = Instant::now();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let max_xmit = sp.max_xmit_data_segment_length as usize;
            let q = tp.queued_commands;
            let numbering = Numbering {
                cid: 7,
                stat_sn: SerialNumber(START_STAT_SN),
                exp_cmd_sn: SerialNumber(cmd_sn),
                max_cmd_sn: SerialNumber(cmd_sn.wrapping_add(q).wrapping_sub(1)),
            };
            let s = Session::new(sp, tp, numbering, Box::new(Canned { answer, seen: seen.clone() }), t0);
            H {
                s,
                t0,
                now: t0,
                exp_stat_sn: SerialNumber(START_STAT_SN),
                next_stat_sn: SerialNumber(START_STAT_SN),
                last_max_cmd_sn: numbering.max_cmd_sn,
                max_xmit,
                text_seen: seen,
            }
        }

        fn advance(&mut self, secs: u64) {
            self.now += Duration::from_secs(secs);
        }

        fn send(&mut self, mut h: Header, data: &[u8]) {
            set_exp_stat_sn(&mut h, self.exp_stat_sn);
            let bhs = fake_bhs(&h);
            self.s.handle_pdu(h, &bhs, Bytes::copy_from_slice(data), self.now);
        }

        /// Deliver a PDU the way a zero-copy driver does: ask where its data goes, then hand in the header only.
        fn send_placed(&mut self, mut h: Header, len: usize) -> Option<Placement> {
            set_exp_stat_sn(&mut h, self.exp_stat_sn);
            let p = self.s.placement(&h, len);
            if p.is_some() {
                let bhs = fake_bhs(&h);
                self.s.handle_placed_pdu(h, &bhs, len, self.now);
            }
            p
        }

        /// Everything the session has to send, checked against the numbering invariants.
        fn pdus(&mut self) -> Vec<OutPdu> {
            let mut v = Vec::new();
            while let Some(p) = self.s.poll_pdu() {
                assert!(p.data_len() <= self.max_xmit, "data segment larger than MaxXmitDataSegmentLength");
                let (stat_sn, advances) = stat_sn_of(&p.header);
                if let Some(sn) = stat_sn {
                    assert_eq!(sn, self.next_stat_sn, "StatSN of {:?}", p.header);
                    if advances {
                        self.next_stat_sn = sn.next();
                        self.exp_stat_sn = sn.next();
                    }
                }
                if let Some((exp, max)) = cmd_sns_of(&p.header) {
                    assert_eq!(exp, self.s.exp_cmd_sn());
                    assert!(max >= self.last_max_cmd_sn, "MaxCmdSN went backwards");
                    self.last_max_cmd_sn = max;
                }
                v.push(p);
            }
            v
        }

        fn events(&mut self) -> Vec<SessionEvent> {
            std::iter::from_fn(|| self.s.poll_event()).collect()
        }

        fn commands(&mut self) -> Vec<ScsiTask> {
            self.events()
                .into_iter()
                .map(|e| match e {
                    SessionEvent::Command(t) => t,
                    other => panic!("expected a command, got {other:?}"),
                })
                .collect()
        }

        fn one_command(&mut self) -> ScsiTask {
            let mut c = self.commands();
            assert_eq!(c.len(), 1, "expected exactly one command");
            c.remove(0)
        }

        fn complete(&mut self, id: TaskId, result: CommandResult) {
            self.s.complete_command(id, result, self.now);
        }

        fn timeout(&mut self) {
            self.s.handle_timeout(self.now);
        }
    }

    fn set_exp_stat_sn(h: &mut Header, v: SerialNumber) {
        match h {
            Header::ScsiCommand(x) => x.exp_stat_sn = v,
            Header::DataOut(x) => x.exp_stat_sn = v,
            Header::NopOut(x) => x.exp_stat_sn = v,
            Header::TaskMgmtRequest(x) => x.exp_stat_sn = v,
            Header::TextRequest(x) => x.exp_stat_sn = v,
            Header::LogoutRequest(x) => x.exp_stat_sn = v,
            Header::SnackRequest(x) => x.exp_stat_sn = v,
            _ => {}
        }
    }

    /// (StatSN field if meaningful, whether the PDU advances StatSN).
    fn stat_sn_of(h: &Header) -> (Option<SerialNumber>, bool) {
        match h {
            Header::ScsiResponse(x) => (Some(x.stat_sn), true),
            Header::TaskMgmtResponse(x) => (Some(x.stat_sn), true),
            Header::TextResponse(x) => (Some(x.stat_sn), true),
            Header::LogoutResponse(x) => (Some(x.stat_sn), true),
            Header::Reject(x) => (Some(x.stat_sn), true),
            Header::DataIn(x) => (x.status.map(|_| x.stat_sn), x.status.is_some()),
            Header::NopIn(x) => (Some(x.stat_sn), x.itt != RESERVED_TAG),
            Header::R2t(x) => (Some(x.stat_sn), false),
            _ => (None, false),
        }
    }

    fn cmd_sns_of(h: &Header) -> Option<(SerialNumber, SerialNumber)> {
        match h {
            Header::ScsiResponse(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::TaskMgmtResponse(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::TextResponse(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::LogoutResponse(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::Reject(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::DataIn(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::NopIn(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            Header::R2t(x) => Some((x.exp_cmd_sn, x.max_cmd_sn)),
            _ => None,
        }
    }

    /// A stand-in BHS: opcode byte and ITT at their RFC positions, so Reject echoes can be recognised.
    fn fake_bhs(h: &Header) -> [u8; 48] {
        let (op, itt) = match h {
            Header::NopOut(x) => (0x00, x.itt),
            Header::ScsiCommand(x) => (0x01, x.itt),
            Header::TaskMgmtRequest(x) => (0x02, x.itt),
            Header::LoginRequest(x) => (0x03, x.itt),
            Header::TextRequest(x) => (0x04, x.itt),
            Header::DataOut(x) => (0x05, x.itt),
            Header::LogoutRequest(x) => (0x06, x.itt),
            Header::SnackRequest(x) => (0x10, x.itt),
            Header::NopIn(x) => (0x20, x.itt),
            _ => (0x3e, 0),
        };
        let mut b = [0u8; 48];
        b[0] = op;
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b
    }

    fn scsi(itt: u32, cmd_sn: u32, edtl: u32) -> ScsiCommand {
        ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: false,
            attr: 1,
            lun: LUN,
            itt,
            edtl,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(0),
            cdb: [0; 16],
            ext_cdb: Vec::new(),
            bidi_read_edtl: None,
        }
    }

    fn read_cmd(itt: u32, cmd_sn: u32, edtl: u32) -> Header {
        let mut c = scsi(itt, cmd_sn, edtl);
        c.read = true;
        c.cdb[0] = 0x28;
        Header::ScsiCommand(c)
    }

    fn write_cmd(itt: u32, cmd_sn: u32, edtl: u32, final_: bool) -> Header {
        let mut c = scsi(itt, cmd_sn, edtl);
        c.write = true;
        c.final_ = final_;
        c.cdb[0] = 0x2a;
        Header::ScsiCommand(c)
    }

    fn immediate(mut h: Header) -> Header {
        if let Header::ScsiCommand(c) = &mut h {
            c.immediate = true;
        }
        h
    }

    fn data_out(itt: u32, ttt: u32, data_sn: u32, offset: u32, final_: bool) -> Header {
        Header::DataOut(DataOut {
            final_,
            lun: LUN,
            itt,
            ttt,
            exp_stat_sn: SerialNumber(0),
            data_sn: SerialNumber(data_sn),
            buffer_offset: offset,
        })
    }

    fn nop_out(itt: u32, ttt: u32, cmd_sn: u32, immediate: bool) -> Header {
        Header::NopOut(NopOut {
            immediate,
            lun: 0,
            itt,
            ttt,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(0),
        })
    }

    fn tmf_req(itt: u32, function: u8, rtt: u32, cmd_sn: u32, ref_cmd_sn: u32) -> Header {
        Header::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function,
            lun: LUN,
            itt,
            rtt,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(0),
            ref_cmd_sn: SerialNumber(ref_cmd_sn),
            exp_data_sn: SerialNumber(0),
        })
    }

    fn text_req(itt: u32, ttt: u32, cmd_sn: u32, final_: bool, continue_: bool) -> Header {
        Header::TextRequest(TextRequest {
            immediate: false,
            final_,
            continue_,
            lun: 0,
            itt,
            ttt,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(0),
        })
    }

    fn logout_req(itt: u32, reason: u8, cid: u16, cmd_sn: u32) -> Header {
        Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason,
            itt,
            cid,
            cmd_sn: SerialNumber(cmd_sn),
            exp_stat_sn: SerialNumber(0),
        })
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn concat(bufs: &[Bytes]) -> Vec<u8> {
        bufs.iter().flat_map(|b| b.iter().copied()).collect()
    }

    fn good(transfer_len: u32, data: Vec<Bytes>) -> CommandResult {
        CommandResult { status: STATUS_GOOD, sense: None, data_in: data, transfer_len }
    }

    fn as_reject(p: &OutPdu) -> (u8, Vec<u8>) {
        match &p.header {
            Header::Reject(r) => (r.reason, p.data_bytes()),
            other => panic!("expected a Reject, got {other:?}"),
        }
    }

    fn as_r2t(p: &OutPdu) -> R2t {
        match &p.header {
            Header::R2t(r) => r.clone(),
            other => panic!("expected an R2T, got {other:?}"),
        }
    }

    fn as_response(p: &OutPdu) -> ScsiResponse {
        match &p.header {
            Header::ScsiResponse(r) => r.clone(),
            other => panic!("expected a SCSI Response, got {other:?}"),
        }
    }

    fn as_tmf_response(p: &OutPdu) -> TaskMgmtResponse {
        match &p.header {
            Header::TaskMgmtResponse(r) => r.clone(),
            other => panic!("expected a TMF Response, got {other:?}"),
        }
    }

    fn as_text(p: &OutPdu) -> TextResponse {
        match &p.header {
            Header::TextResponse(r) => r.clone(),
            other => panic!("expected a Text Response, got {other:?}"),
        }
    }

    fn sense_of(p: &OutPdu) -> Vec<u8> {
        let d = p.data_bytes();
        assert!(d.len() >= 2);
        let n = usize::from(u16::from_be_bytes([d[0], d[1]]));
        assert_eq!(d.len(), 2 + n, "SenseLength must match the data segment");
        d[2..].to_vec()
    }

    // ----- reads -----

    /// Runs one read and checks every Data-In/Response field against an independent model.
    fn check_read(mxd: u32, mbl: u32, data_len: usize, edtl: u32, transfer_len: u32, split: usize) {
        let mut sp = session_params();
        sp.max_xmit_data_segment_length = mxd;
        sp.max_burst_length = mbl;
        let mut h = H::new(sp, target_params());
        h.send(read_cmd(0x10, 1, edtl), &[]);
        assert!(h.pdus().is_empty());
        let task = h.one_command();
        assert!(task.read && !task.write && task.edtl == edtl && task.lun == LUN && task.cdb[0] == 0x28);
        let payload = pattern(data_len, 3);
        // Hand the data over as an SG list of `split`-byte buffers to exercise PDU boundaries across buffers.
        let sg: Vec<Bytes> = payload.chunks(split.max(1)).map(Bytes::copy_from_slice).collect();
        let stat_before = h.next_stat_sn;
        h.complete(task.id, good(transfer_len, sg));
        let pdus = h.pdus();
        let sent = data_len.min(edtl as usize);
        let mut got = Vec::new();
        let mut expected_offset = 0usize;
        let mut last_status = None;
        for (i, p) in pdus.iter().enumerate() {
            match &p.header {
                Header::DataIn(d) => {
                    assert_eq!(d.itt, 0x10);
                    assert_eq!(d.ttt, RESERVED_TAG);
                    assert_eq!(d.data_sn, SerialNumber(i as u32));
                    assert_eq!(d.buffer_offset as usize, expected_offset);
                    assert!(p.data_len() > 0 && p.data_len() <= mxd as usize);
                    let end = expected_offset + p.data_len();
                    // No PDU crosses a MaxBurstLength boundary; F marks the end of each burst and of the data.
                    assert_eq!(expected_offset / mbl as usize, (end - 1) / mbl as usize, "PDU crosses a burst");
                    assert_eq!(d.final_, end % mbl as usize == 0 || end == sent, "F bit at {end}");
                    expected_offset = end;
                    got.extend_from_slice(&p.data_bytes());
                    if d.status.is_some() {
                        assert_eq!(i, pdus.len() - 1, "status only on the last PDU");
                        last_status = Some((d.overflow, d.underflow, d.residual));
                    }
                }
                Header::ScsiResponse(r) => {
                    assert_eq!(i, pdus.len() - 1);
                    assert_eq!(r.exp_data_sn, SerialNumber(i as u32));
                    last_status = Some((r.overflow, r.underflow, r.residual));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, payload[..sent]);
        let (o, u, r) = last_status.expect("status sent");
        let (eo, eu, er) = match transfer_len.cmp(&edtl) {
            std::cmp::Ordering::Greater => (true, false, transfer_len - edtl),
            std::cmp::Ordering::Less => (false, true, edtl - transfer_len),
            std::cmp::Ordering::Equal => (false, false, 0),
        };
        assert_eq!((o, u, r), (eo, eu, er), "residual for transfer {transfer_len} edtl {edtl}");
        // Phase collapse whenever there was data: exactly one status PDU.
        if sent > 0 {
            assert!(matches!(pdus.last().map(|p| &p.header), Some(Header::DataIn(d)) if d.status == Some(0)));
        }
        assert_eq!(h.next_stat_sn, stat_before.next(), "one status advances StatSN once");
        assert_eq!(h.s.task_count(), 0);
    }

    #[test]
    fn reads_of_many_sizes() {
        for &(mxd, mbl) in &[(512u32, 512u32), (8192, 65536), (8192, 1024), (4096, 10000), (1000, 3000)] {
            for &len in &[0usize, 1, 511, 512, 513, 1000, 4096, 8191, 8192, 8193, 65536, 100_000] {
                for &split in &[len.max(1), 700, 4096] {
                    let len32 = len as u32;
                    // Exact, underflow (EDTL larger), overflow (EDTL smaller, data cut at EDTL).
                    check_read(mxd, mbl, len, len32, len32, split);
                    check_read(mxd, mbl, len, len32 + 100, len32, split);
                    if len > 10 {
                        check_read(mxd, mbl, len, len32 - 10, len32, split);
                    }
                }
            }
        }
    }

    #[test]
    fn read_with_check_condition_sends_data_then_response_with_sense() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 20000), &[]);
        let task = h.one_command();
        let sense = fixed_sense(0x03, 0x11, 0x00);
        let data = Bytes::from(pattern(10000, 1));
        let result = CommandResult {
            status: STATUS_CHECK_CONDITION,
            sense: Some(sense.clone()),
            data_in: vec![data.clone()],
            transfer_len: 10000,
        };
        h.complete(task.id, result);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 3);
        for p in &pdus[..2] {
            let Header::DataIn(d) = &p.header else { panic!("{p:?}") };
            assert!(d.status.is_none());
        }
        let Header::DataIn(d) = &pdus[1].header else { unreachable!() };
        assert!(d.final_, "last Data-In ends the sequence");
        let r = as_response(&pdus[2]);
        assert_eq!(r.status, STATUS_CHECK_CONDITION);
        assert_eq!(r.response, 0);
        assert!(r.underflow && !r.overflow);
        assert_eq!(r.residual, 10000);
        assert_eq!(r.exp_data_sn, SerialNumber(2));
        assert_eq!(sense_of(&pdus[2]), sense);
    }

    #[test]
    fn good_status_with_sense_is_not_phase_collapsed() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 512), &[]);
        let task = h.one_command();
        let sense = fixed_sense(0x01, 0x17, 0x00);
        let result = CommandResult {
            status: STATUS_GOOD,
            sense: Some(sense.clone()),
            data_in: vec![Bytes::from(vec![7u8; 512])],
            transfer_len: 512,
        };
        h.complete(task.id, result);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 2);
        let Header::DataIn(d) = &pdus[0].header else { panic!() };
        assert!(d.status.is_none() && d.final_);
        assert_eq!(sense_of(&pdus[1]), sense);
    }

    #[test]
    fn non_data_command_gets_plain_response() {
        let mut h = H::default();
        h.send(Header::ScsiCommand(scsi(9, 1, 0)), &[]);
        let task = h.one_command();
        // Data offered for a command without the R bit is never sent.
        h.complete(task.id, good(0, vec![Bytes::from_static(b"junk")]));
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1);
        let r = as_response(&pdus[0]);
        assert_eq!((r.itt, r.status, r.overflow, r.underflow, r.residual), (9, 0, false, false, 0));
        assert!(pdus[0].data.is_empty());
    }

    // ----- writes -----

    fn write_params(initial_r2t: bool, max_outstanding_r2t: u32) -> SessionParams {
        let mut sp = session_params();
        sp.initial_r2t = initial_r2t;
        sp.max_outstanding_r2t = max_outstanding_r2t;
        sp.max_recv_data_segment_length = 4096;
        sp.first_burst_length = 16384;
        sp.max_burst_length = 8192;
        sp
    }

    /// Answer every R2T in the queue with Data-Out PDUs of at most `pdu` bytes; returns the R2Ts seen.
    fn answer_r2ts(h: &mut H, itt: u32, payload: &[u8], pdu: usize, pdus: Vec<OutPdu>) -> Vec<R2t> {
        let mut r2ts = Vec::new();
        for p in pdus {
            let r = as_r2t(&p);
            assert_eq!(r.itt, itt);
            assert_eq!(r.lun, LUN);
            let start = r.buffer_offset as usize;
            let end = start + r.desired_len as usize;
            let mut off = start;
            let mut sn = 0;
            while off < end {
                let n = pdu.min(end - off);
                h.send(data_out(itt, r.ttt, sn, off as u32, off + n == end), &payload[off..off + n]);
                off += n;
                sn += 1;
            }
            r2ts.push(r);
        }
        r2ts
    }

    #[test]
    fn placed_write_with_immediate_and_solicited_data() {
        let mut h = H::new(write_params(false, 1), target_params());
        let cmd = immediate(write_cmd(0x31, 1, 12288, false));
        let Some(Placement::Command { itt: 0x31, edtl: 12288, .. }) = h.send_placed(cmd, 4096) else {
            panic!("write command not offered for placement")
        };
        // Unsolicited Data-Out at the right offset is placed; one at a wrong offset is not offered.
        assert_eq!(h.s.placement(&data_out(0x31, RESERVED_TAG, 0, 8192, true), 4096), None);
        let p = h.send_placed(data_out(0x31, RESERVED_TAG, 0, 4096, true), 4096);
        assert_eq!(p, Some(Placement::DataOut { itt: 0x31, offset: 4096, len: 4096 }));
        let pdus = h.pdus();
        let r = as_r2t(&pdus[0]);
        assert_eq!((r.buffer_offset, r.desired_len), (8192, 4096));
        let p = h.send_placed(data_out(0x31, r.ttt, 0, 8192, true), 4096);
        assert_eq!(p, Some(Placement::DataOut { itt: 0x31, offset: 8192, len: 4096 }));
        let task = h.one_command();
        assert!(task.placed && task.data_out.is_empty());
        assert_eq!(task.edtl, 12288);
    }

    #[test]
    fn bytes_for_a_placed_task_terminate_it() {
        let mut h = H::new(write_params(true, 1), target_params());
        assert!(h.send_placed(write_cmd(0x32, 1, 4096, true), 0).is_some());
        let r = as_r2t(&h.pdus()[0]);
        // The driver ignored the placement answer and handed in bytes: the data went nowhere the driver knows.
        h.send(data_out(0x32, r.ttt, 0, 0, true), &[1u8; 4096]);
        assert!(h.commands().is_empty(), "the task is not executed");
        let pdus = h.pdus();
        assert!(pdus.iter().any(|p| matches!(p.header, Header::Reject(_))));
        let rsp = pdus.iter().find(|p| matches!(p.header, Header::ScsiResponse(_))).expect("response");
        assert_eq!(as_response(rsp).status, STATUS_CHECK_CONDITION);
    }

    #[test]
    fn write_with_immediate_data_only() {
        let mut h = H::new(write_params(true, 1), target_params());
        let payload = pattern(3000, 5);
        h.send(write_cmd(1, 1, 3000, true), &payload);
        assert!(h.pdus().is_empty(), "no R2T when immediate data covers EDTL");
        let task = h.one_command();
        assert!(task.write && !task.read);
        assert_eq!(concat(&task.data_out), payload);
        h.complete(task.id, good(3000, vec![]));
        let r = as_response(&h.pdus()[0]);
        assert_eq!((r.status, r.underflow, r.overflow), (0, false, false));
    }

    #[test]
    fn write_with_immediate_unsolicited_and_solicited_data() {
        // InitialR2T=No: immediate 4096 + unsolicited Data-Out up to FirstBurstLength 16384, then R2Ts.
        let mut h = H::new(write_params(false, 2), target_params());
        let total = 40000usize;
        let payload = pattern(total, 9);
        h.send(write_cmd(0x22, 1, total as u32, false), &payload[..4096]);
        assert!(h.pdus().is_empty(), "R2Ts wait for the unsolicited sequence");
        // Unsolicited Data-Out: offsets 4096..16384, DataSN from 0, F on the last.
        let mut off = 4096;
        let mut sn = 0;
        while off < 16384 {
            let n = 4096.min(16384 - off);
            h.send(data_out(0x22, RESERVED_TAG, sn, off as u32, off + n == 16384), &payload[off..off + n]);
            off += n;
            sn += 1;
        }
        assert!(h.events().is_empty());
        // Remaining 23616 bytes in MaxBurstLength (8192) R2Ts, two outstanding at a time.
        let first = h.pdus();
        assert_eq!(first.len(), 2);
        let mut r2ts = answer_r2ts(&mut h, 0x22, &payload, 4096, first);
        let rest = h.pdus();
        assert_eq!(rest.len(), 1);
        r2ts.extend(answer_r2ts(&mut h, 0x22, &payload, 4096, rest));
        let expected: Vec<(u32, u32, u32)> = vec![(0, 16384, 8192), (1, 24576, 8192), (2, 32768, 40000 - 32768)];
        let got: Vec<(u32, u32, u32)> = r2ts.iter().map(|r| (r.r2t_sn.0, r.buffer_offset, r.desired_len)).collect();
        assert_eq!(got, expected);
        let ttts: std::collections::HashSet<u32> = r2ts.iter().map(|r| r.ttt).collect();
        assert_eq!(ttts.len(), 3, "TTTs are unique");
        assert!(!ttts.contains(&RESERVED_TAG));
        let task = h.one_command();
        assert_eq!(concat(&task.data_out), payload);
        h.complete(task.id, good(total as u32, vec![]));
        assert_eq!(as_response(&h.pdus()[0]).status, 0);
        assert_eq!(h.s.stats().rejects, 0);
    }

    #[test]
    fn r2t_sequences_with_one_outstanding() {
        let mut h = H::new(write_params(true, 1), target_params());
        let total = 30000usize;
        let payload = pattern(total, 1);
        h.send(write_cmd(5, 1, total as u32, true), &payload[..1000]);
        let mut all = Vec::new();
        loop {
            let pdus = h.pdus();
            if pdus.is_empty() {
                break;
            }
            assert_eq!(pdus.len(), 1, "MaxOutstandingR2T=1");
            all.extend(answer_r2ts(&mut h, 5, &payload, 1500, pdus));
        }
        let got: Vec<(u32, u32, u32)> = all.iter().map(|r| (r.r2t_sn.0, r.buffer_offset, r.desired_len)).collect();
        assert_eq!(got, vec![(0, 1000, 8192), (1, 9192, 8192), (2, 17384, 8192), (3, 25576, 4424)]);
        let task = h.one_command();
        assert_eq!(concat(&task.data_out), payload);
    }

    #[test]
    fn r2t_sequences_with_many_outstanding_answered_interleaved() {
        let mut h = H::new(write_params(true, 4), target_params());
        let total = 4 * 8192usize;
        let payload = pattern(total, 2);
        h.send(write_cmd(6, 1, total as u32, true), &[]);
        let r2ts: Vec<R2t> = h.pdus().iter().map(as_r2t).collect();
        assert_eq!(r2ts.len(), 4);
        // Answer the four sequences interleaved PDU by PDU.
        for half in 0..2u32 {
            for r in &r2ts {
                let off = r.buffer_offset + half * 4096;
                let o = off as usize;
                h.send(data_out(6, r.ttt, half, off, half == 1), &payload[o..o + 4096]);
            }
        }
        assert!(h.pdus().is_empty());
        let task = h.one_command();
        assert_eq!(concat(&task.data_out), payload);
    }

    #[test]
    fn short_unsolicited_sequence_is_completed_by_r2t() {
        let mut h = H::new(write_params(false, 1), target_params());
        let payload = pattern(20000, 4);
        h.send(write_cmd(8, 1, 20000, false), &[]);
        // The initiator stops the unsolicited sequence at 4096 (below FirstBurstLength).
        h.send(data_out(8, RESERVED_TAG, 0, 0, true), &payload[..4096]);
        let r = as_r2t(&h.pdus()[0]);
        assert_eq!((r.buffer_offset, r.desired_len), (4096, 8192));
        let mut pdus = vec![OutPdu { header: Header::R2t(r), data: vec![] }];
        while !pdus.is_empty() {
            answer_r2ts(&mut h, 8, &payload, 4096, pdus);
            pdus = h.pdus();
        }
        assert_eq!(concat(&h.one_command().data_out), payload);
    }

    #[test]
    fn write_waits_for_cmdsn_order_but_receives_data() {
        let mut h = H::new(write_params(true, 1), target_params());
        let payload = pattern(5000, 6);
        // CmdSN 2 arrives before CmdSN 1: its R2T goes out, but it is delivered only after CmdSN 1.
        h.send(write_cmd(2, 2, 5000, true), &[]);
        let pdus = h.pdus();
        answer_r2ts(&mut h, 2, &payload, 4096, pdus);
        assert!(h.events().is_empty());
        h.send(read_cmd(1, 1, 512), &[]);
        let order: Vec<u32> = h.commands().iter().map(|t| t.itt).collect();
        assert_eq!(order, vec![1, 2]);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(3));
    }

    // ----- command numbering -----

    #[test]
    fn out_of_order_cmdsn_is_delivered_in_order() {
        let mut h = H::default();
        for &sn in &[3u32, 5, 2, 4] {
            h.send(read_cmd(sn * 10, sn, 512), &[]);
            assert!(h.events().is_empty(), "held until CmdSN 1 arrives");
        }
        h.send(read_cmd(10, 1, 512), &[]);
        let order: Vec<u32> = h.commands().iter().map(|t| t.itt).collect();
        assert_eq!(order, vec![10, 20, 30, 40, 50]);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(6));
    }

    #[test]
    fn a_completion_is_matched_by_task_not_only_by_itt() {
        let mut h = H::default();
        h.send(read_cmd(7, 1, 512), &[]);
        let first = h.commands()[0].id;
        h.complete(first, good(512, vec![Bytes::from(vec![1u8; 512])]));
        assert_eq!(h.pdus().len(), 1);
        // ITT 7 is free again and names a new task; a late or forged completion of the first one must not answer it.
        h.send(read_cmd(7, 2, 512), &[]);
        let second = h.commands()[0].id;
        assert_ne!(first, second);
        h.complete(first, good(512, vec![Bytes::from(vec![2u8; 512])]));
        h.complete(TaskId(second.0 ^ (1 << 40)), good(512, vec![Bytes::from(vec![3u8; 512])]));
        assert!(h.pdus().is_empty(), "completions of other tasks dropped");
        h.complete(second, good(512, vec![Bytes::from(vec![4u8; 512])]));
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].data, vec![Bytes::from(vec![4u8; 512])]);
    }

    #[test]
    fn duplicates_and_out_of_window_commands_are_silently_ignored() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 512), &[]);
        assert_eq!(h.commands().len(), 1);
        h.send(read_cmd(2, 1, 512), &[]); // duplicate CmdSN, already executed
        h.send(read_cmd(3, 100, 512), &[]); // beyond MaxCmdSN
        h.send(read_cmd(4, 0, 512), &[]); // before ExpCmdSN
        h.send(read_cmd(5, 3, 512), &[]);
        h.send(read_cmd(6, 3, 512), &[]); // duplicate of a held command
        assert!(h.events().is_empty());
        assert!(h.pdus().is_empty(), "no answer at all");
        assert_eq!(h.s.stats().ignored_commands, 4);
        h.send(read_cmd(7, 2, 512), &[]);
        let order: Vec<u32> = h.commands().iter().map(|t| t.itt).collect();
        assert_eq!(order, vec![7, 5]);
    }

    #[test]
    fn window_closes_when_queue_is_full_and_reopens() {
        let mut tp = target_params();
        tp.queued_commands = 2;
        let mut h = H::new(session_params(), tp);
        h.send(read_cmd(1, 1, 0), &[]);
        h.send(read_cmd(2, 2, 0), &[]);
        let tasks = h.commands();
        assert_eq!(tasks.len(), 2);
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(2), "MaxCmdSN = ExpCmdSN - 1: window closed");
        h.send(read_cmd(3, 3, 0), &[]);
        assert!(h.events().is_empty(), "out of window");
        h.complete(tasks[0].id, good(0, vec![]));
        let r = as_response(&h.pdus()[0]);
        assert_eq!((r.exp_cmd_sn, r.max_cmd_sn), (SerialNumber(3), SerialNumber(3)));
        h.send(read_cmd(3, 3, 0), &[]);
        assert_eq!(h.commands().len(), 1);
    }

    #[test]
    fn max_cmd_sn_never_shrinks_below_announced() {
        let mut tp = target_params();
        tp.queued_commands = 1;
        // Login announced a window of 8 though the target queues 1.
        let mut h = H::with(session_params(), tp, 1, Vec::new());
        h.s.max_cmd_sn_announced = SerialNumber(8);
        for sn in 1..=3 {
            h.send(read_cmd(sn, sn, 0), &[]);
        }
        assert_eq!(h.commands().len(), 3, "commands inside the announced window are accepted");
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(8));
    }

    #[test]
    fn cmdsn_wraps_around() {
        let mut h = H::with(session_params(), target_params(), u32::MAX - 1, Vec::new());
        h.send(read_cmd(3, 0, 0), &[]);
        h.send(read_cmd(1, u32::MAX - 1, 0), &[]);
        h.send(read_cmd(2, u32::MAX, 0), &[]);
        let order: Vec<u32> = h.commands().iter().map(|t| t.itt).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(1));
    }

    #[test]
    fn immediate_commands_bypass_ordering_and_do_not_advance_cmdsn() {
        let mut h = H::default();
        h.send(read_cmd(2, 2, 0), &[]); // held: CmdSN 1 missing
        h.send(immediate(read_cmd(9, 1, 0)), &[]);
        let t = h.one_command();
        assert!(t.immediate && t.itt == 9);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(1));
        h.complete(t.id, good(0, vec![]));
        assert_eq!(as_response(&h.pdus()[0]).itt, 9);
        // Too many immediate commands at once.
        for i in 0..MAX_IMMEDIATE_TASKS as u32 {
            h.send(immediate(read_cmd(100 + i, 1, 0)), &[]);
        }
        assert_eq!(h.commands().len(), MAX_IMMEDIATE_TASKS);
        h.send(immediate(read_cmd(999, 1, 0)), &[]);
        let pdus = h.pdus();
        let (reason, bhs) = as_reject(&pdus[0]);
        assert_eq!(reason, reject_reason::IMMEDIATE_COMMAND_REJECT);
        assert_eq!(&bhs[16..20], &999u32.to_be_bytes());
    }

    #[test]
    fn exp_stat_sn_beyond_sent_statuses_is_counted() {
        let mut h = H::default();
        h.exp_stat_sn = SerialNumber(START_STAT_SN + 50);
        h.send(nop_out(RESERVED_TAG, RESERVED_TAG, 1, true), &[]);
        assert_eq!(h.s.stats().bad_exp_stat_sn, 1);
        h.exp_stat_sn = SerialNumber(START_STAT_SN);
        h.send(nop_out(RESERVED_TAG, RESERVED_TAG, 1, true), &[]);
        assert_eq!(h.s.stats().bad_exp_stat_sn, 1);
    }

    // ----- NOP -----

    #[test]
    fn nop_out_ping_is_echoed_and_advances_statsn() {
        let mut h = H::default();
        h.send(nop_out(0x77, RESERVED_TAG, 1, true), b"hello ping");
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1);
        let Header::NopIn(n) = &pdus[0].header else { panic!() };
        assert_eq!((n.itt, n.ttt, n.stat_sn), (0x77, RESERVED_TAG, SerialNumber(START_STAT_SN)));
        assert_eq!(pdus[0].data_bytes(), b"hello ping");
        // Non-immediate ping consumes a CmdSN.
        h.send(nop_out(0x78, RESERVED_TAG, 1, false), &[]);
        assert_eq!(h.pdus().len(), 1);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(2));
        // ITT 0xffffffff: no answer.
        h.send(nop_out(RESERVED_TAG, RESERVED_TAG, 2, true), b"x");
        assert!(h.pdus().is_empty());
        // ITT 0xffffffff without the I bit is a protocol error.
        h.send(nop_out(RESERVED_TAG, RESERVED_TAG, 2, false), &[]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::PROTOCOL_ERROR);
    }

    #[test]
    fn nop_in_echo_is_bounded_by_max_xmit() {
        let mut sp = session_params();
        sp.max_xmit_data_segment_length = 1024;
        let mut h = H::new(sp, target_params());
        let data = pattern(4000, 0);
        h.send(nop_out(1, RESERVED_TAG, 1, true), &data);
        let pdus = h.pdus();
        assert_eq!(pdus[0].data_bytes(), data[..1024]);
    }

    #[test]
    fn nop_in_ping_on_idle_connection_answered() {
        let mut h = H::default();
        assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(5)));
        h.advance(4);
        h.timeout();
        assert!(h.pdus().is_empty(), "not idle long enough");
        h.advance(1);
        h.timeout();
        let pdus = h.pdus();
        let Header::NopIn(n) = &pdus[0].header else { panic!() };
        assert_eq!(n.itt, RESERVED_TAG);
        assert_ne!(n.ttt, RESERVED_TAG);
        assert_eq!(n.stat_sn, SerialNumber(START_STAT_SN), "a ping does not advance StatSN");
        assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(3)));
        let ttt = n.ttt;
        h.advance(2);
        h.send(nop_out(RESERVED_TAG, ttt, 1, true), &[]);
        assert!(h.pdus().is_empty());
        h.advance(2);
        h.timeout();
        assert!(h.events().is_empty(), "the answered ping does not close");
        assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(3)));
    }

    #[test]
    fn nop_in_timeout_closes() {
        let mut h = H::default();
        h.advance(5);
        h.timeout();
        assert_eq!(h.pdus().len(), 1);
        h.advance(2);
        // A NOP-Out with a wrong TTT does not answer the ping.
        h.send(nop_out(RESERVED_TAG, 0x1234_5678, 1, true), &[]);
        h.advance(1);
        h.timeout();
        assert_eq!(h.events(), vec![SessionEvent::Close { reason: CloseReason::NopInTimeout }]);
        assert!(h.s.is_closed());
        assert_eq!(h.s.stats().stray_nop_out, 1);
        h.send(read_cmd(1, 1, 0), &[]);
        assert!(h.events().is_empty(), "closed sessions ignore input");
    }

    #[test]
    fn rsp_timeout_when_data_out_stops() {
        let mut tp = target_params();
        tp.nop_in_interval = None;
        let mut h = H::new(write_params(true, 1), tp);
        h.send(write_cmd(1, 1, 8192, true), &[]);
        let r = as_r2t(&h.pdus()[0]);
        assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(20)));
        h.advance(15);
        h.send(data_out(1, r.ttt, 0, 0, false), &[0u8; 4096]);
        h.advance(15);
        h.timeout();
        assert!(h.events().is_empty(), "Data-Out re-arms the timer");
        h.advance(5);
        h.timeout();
        assert_eq!(h.events(), vec![SessionEvent::Close { reason: CloseReason::RspTimeout }]);
    }

    // ----- task management -----

    #[test]
    fn abort_task_cleans_up_r2t_state_and_drops_late_data() {
        let mut h = H::new(write_params(true, 1), target_params());
        h.send(write_cmd(0x50, 1, 8192, true), &[]);
        let r = as_r2t(&h.pdus()[0]);
        h.send(tmf_req(0x51, tmf::ABORT_TASK, 0x50, 2, 1), &[]);
        let pdus = h.pdus();
        let rsp = as_tmf_response(&pdus[0]);
        assert_eq!((rsp.itt, rsp.response), (0x51, tmf::FUNCTION_COMPLETE));
        assert_eq!(h.s.task_count(), 0);
        assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(5)), "no RspTimeout left");
        // The initiator still answers the R2T: silently dropped.
        h.send(data_out(0x50, r.ttt, 0, 0, true), &[0u8; 4096]);
        assert!(h.pdus().is_empty());
        assert!(h.events().is_empty());
        assert_eq!(h.s.stats().dropped_data_out, 1);
        // The slot came back: MaxCmdSN = ExpCmdSN + 8 - 1.
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(2 + 7));
    }

    #[test]
    fn abort_of_delivered_task_suppresses_its_response() {
        let mut tp = target_params();
        tp.queued_commands = 1;
        let mut h = H::new(session_params(), tp);
        h.send(read_cmd(0x60, 1, 4096), &[]);
        let task = h.one_command();
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(1));
        h.send(tmf_req(0x61, tmf::ABORT_TASK, 0x60, 2, 1), &[]);
        let ev = h.events();
        assert_eq!(
            ev,
            vec![SessionEvent::TaskMgmt {
                itt: 0x61,
                function: tmf::ABORT_TASK,
                lun: LUN,
                rtt: 0x60,
                ref_cmd_sn: SerialNumber(1),
                aborted: vec![task.id]
            }]
        );
        assert!(h.pdus().is_empty(), "response waits for the driver");
        h.s.complete_task_mgmt(0x61, tmf::FUNCTION_COMPLETE, h.now);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, 0);
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(1), "the aborted task holds its slot until the driver is done");
        h.complete(task.id, good(4096, vec![Bytes::from(vec![0u8; 4096])]));
        assert!(h.pdus().is_empty(), "an aborted task never answers");
        assert_eq!(h.s.stats().dropped_results, 1);
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(2));
    }

    #[test]
    fn abort_task_for_unknown_task_follows_ref_cmd_sn() {
        let mut h = H::default();
        // RefCmdSN 1 in the window and before the TMF's CmdSN 2: the CmdSN counts as received.
        h.send(tmf_req(0x70, tmf::ABORT_TASK, 0x99, 2, 1), &[]);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, tmf::FUNCTION_COMPLETE);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(2));
        // If the aborted command shows up late it is a duplicate.
        h.send(read_cmd(0x99, 1, 0), &[]);
        assert!(h.events().is_empty());
        // RefCmdSN outside the window: task does not exist.
        h.send(tmf_req(0x71, tmf::ABORT_TASK, 0x98, 2, 500), &[]);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, tmf::TASK_DOES_NOT_EXIST);
    }

    #[test]
    fn abort_task_set_response_waits_for_status_acknowledgement() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 0), &[]);
        h.send(read_cmd(2, 2, 0), &[]);
        let tasks = h.commands();
        h.complete(tasks[0].id, good(0, vec![]));
        let _ = h.pdus();
        // The initiator has not acknowledged that response yet.
        h.exp_stat_sn = SerialNumber(START_STAT_SN);
        h.send(tmf_req(0x80, tmf::ABORT_TASK_SET, 0, 3, 0), &[]);
        let ev = h.events();
        let SessionEvent::TaskMgmt { aborted, .. } = &ev[0] else { panic!() };
        assert_eq!(aborted, &vec![tasks[1].id]);
        h.s.complete_task_mgmt(0x80, tmf::FUNCTION_COMPLETE, h.now);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1, "only a NOP-In to solicit ExpStatSN");
        let Header::NopIn(ping) = &pdus[0].header else { panic!() };
        h.exp_stat_sn = SerialNumber(START_STAT_SN + 1);
        h.send(nop_out(RESERVED_TAG, ping.ttt, 3, true), &[]);
        let rsp = as_tmf_response(&h.pdus()[0]);
        assert_eq!((rsp.itt, rsp.response), (0x80, 0));
        h.complete(tasks[1].id, good(0, vec![]));
        assert!(h.pdus().is_empty());
    }

    #[test]
    fn lun_reset_aborts_only_that_lun() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 0), &[]);
        let mut other = scsi(2, 2, 0);
        other.lun = 0;
        h.send(Header::ScsiCommand(other), &[]);
        let tasks = h.commands();
        h.send(tmf_req(0x90, tmf::LOGICAL_UNIT_RESET, 0, 3, 0), &[]);
        let ev = h.events();
        let SessionEvent::TaskMgmt { aborted, function, .. } = &ev[0] else { panic!() };
        assert_eq!((aborted.clone(), *function), (vec![tasks[0].id], tmf::LOGICAL_UNIT_RESET));
        h.s.complete_task_mgmt(0x90, 0, h.now);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, 0);
        h.complete(tasks[1].id, good(0, vec![]));
        assert_eq!(as_response(&h.pdus()[0]).itt, 2);
    }

    #[test]
    fn abort_tasks_on_behalf_of_another_nexus() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 0), &[]);
        let mut other = scsi(2, 2, 0);
        other.lun = 0;
        h.send(Header::ScsiCommand(other), &[]);
        h.send(read_cmd(3, 3, 0), &[]);
        let tasks = h.commands();
        // Not yet delivered: CmdSN 5 waits for 4, and is aborted without reaching the driver.
        h.send(read_cmd(5, 5, 0), &[]);
        assert!(h.events().is_empty());
        let keep = tasks[2].id;
        let held = h.s.abort_tasks(|lun, id| lun == LUN && id != keep);
        assert_eq!(held, vec![tasks[0].id]);
        assert!(h.pdus().is_empty(), "aborted tasks never answer");
        h.complete(tasks[0].id, good(0, vec![]));
        h.complete(tasks[1].id, good(0, vec![]));
        h.complete(tasks[2].id, good(0, vec![]));
        let itts: Vec<u32> = h.pdus().iter().map(|p| as_response(p).itt).collect();
        assert_eq!(itts, vec![2, 3]);
        assert_eq!(h.s.stats().dropped_results, 1);
        // The aborted CmdSN 5 no longer blocks: CmdSN 4 and 6 run.
        h.send(read_cmd(4, 4, 0), &[]);
        h.send(read_cmd(6, 6, 0), &[]);
        let itts: Vec<u32> = h.commands().iter().map(|t| t.itt).collect();
        assert_eq!(itts, vec![4, 6]);
    }

    #[test]
    fn task_reassign_unknown_function_and_cold_reset() {
        let mut h = H::default();
        h.send(tmf_req(1, tmf::TASK_REASSIGN, 5, 1, 0), &[]);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, tmf::REASSIGNMENT_NOT_SUPPORTED);
        h.send(tmf_req(2, 14, 0, 1, 0), &[]);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, tmf::FUNCTION_NOT_SUPPORTED);
        assert!(h.events().is_empty());
        h.send(tmf_req(3, tmf::TARGET_COLD_RESET, 0, 1, 0), &[]);
        assert!(matches!(h.events()[0], SessionEvent::TaskMgmt { function: tmf::TARGET_COLD_RESET, .. }));
        h.s.complete_task_mgmt(3, 0, h.now);
        assert_eq!(as_tmf_response(&h.pdus()[0]).response, 0);
        assert_eq!(h.events(), vec![SessionEvent::Close { reason: CloseReason::TargetColdReset }]);
    }

    #[test]
    fn immediate_tmfs_waiting_for_the_driver_are_bounded() {
        let mut h = H::default();
        for i in 0..MAX_IMMEDIATE_TASKS as u32 {
            h.send(tmf_req(10 + i, tmf::CLEAR_ACA, 0, 1, 0), &[]);
        }
        assert_eq!(h.events().len(), MAX_IMMEDIATE_TASKS);
        h.send(tmf_req(500, tmf::CLEAR_ACA, 0, 1, 0), &[]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::IMMEDIATE_COMMAND_REJECT);
        h.s.complete_task_mgmt(10, 0, h.now);
        assert_eq!(as_tmf_response(&h.pdus()[0]).itt, 10);
        h.send(tmf_req(500, tmf::CLEAR_ACA, 0, 1, 0), &[]);
        assert_eq!(h.events().len(), 1);
    }

    // ----- logout -----

    #[test]
    fn logout_waits_for_tasks_then_closes() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 0), &[]);
        let task = h.one_command();
        h.send(write_cmd(2, 2, 8192, true), &[]); // waiting for data: terminated by the logout
        let _ = h.pdus();
        h.send(logout_req(3, logout::CLOSE_SESSION, 0, 3), &[]);
        assert_eq!(h.events(), vec![SessionEvent::Logout { reason: 0 }]);
        assert!(h.pdus().is_empty());
        // New requests after the logout are protocol errors.
        h.send(read_cmd(4, 3, 0), &[]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::PROTOCOL_ERROR);
        h.complete(task.id, good(0, vec![]));
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 2);
        assert_eq!(as_response(&pdus[0]).itt, 1);
        let Header::LogoutResponse(l) = &pdus[1].header else { panic!() };
        assert_eq!((l.itt, l.response, l.time2wait, l.time2retain), (3, 0, 2, 0));
        assert_eq!(h.events(), vec![SessionEvent::Close { reason: CloseReason::Logout }]);
    }

    #[test]
    fn logout_for_recovery_and_wrong_cid() {
        let mut h = H::default();
        h.send(logout_req(1, logout::REMOVE_FOR_RECOVERY, 7, 1), &[]);
        let Header::LogoutResponse(l) = &h.pdus()[0].header else { panic!() };
        assert_eq!(l.response, logout::RECOVERY_NOT_SUPPORTED);
        h.send(logout_req(2, logout::CLOSE_CONNECTION, 8, 1), &[]);
        let Header::LogoutResponse(l) = &h.pdus()[0].header else { panic!() };
        assert_eq!(l.response, logout::CID_NOT_FOUND);
        assert!(h.events().is_empty() && !h.s.is_closed());
        h.send(logout_req(3, logout::CLOSE_CONNECTION, 7, 1), &[]);
        let Header::LogoutResponse(l) = &h.pdus()[0].header else { panic!() };
        assert_eq!(l.response, logout::CLOSED);
        assert!(h.s.is_closed());
    }

    // ----- text -----

    #[test]
    fn text_request_single_pdu() {
        let mut h = H::default();
        h.send(text_req(0x40, RESERVED_TAG, 1, true, false), b"SendTargets=All\0");
        let pdus = h.pdus();
        let t = as_text(&pdus[0]);
        assert!(t.final_ && !t.continue_);
        assert_eq!((t.itt, t.ttt), (0x40, RESERVED_TAG));
        assert_eq!(pdus[0].data_bytes(), b"TargetName=iqn.2024-01.test:tgt\0");
        assert_eq!(h.text_seen.lock().map(|v| v.clone()).unwrap_or_default(), vec![b"SendTargets=All\0".to_vec()]);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(2));
    }

    #[test]
    fn text_response_continuation_and_multi_pdu_request() {
        let mut sp = session_params();
        sp.max_xmit_data_segment_length = 1000;
        sp.max_recv_data_segment_length = 512;
        let answer = pattern(2500, 7);
        let mut h = H::with(sp, target_params(), 1, answer.clone());
        // Request in two PDUs (C bit).
        let req = pattern(700, 1);
        h.send(text_req(5, RESERVED_TAG, 1, false, true), &req[..500]);
        let t = as_text(&h.pdus()[0]);
        assert!(!t.final_ && !t.continue_ && t.ttt != RESERVED_TAG);
        h.send(text_req(5, t.ttt, 2, true, false), &req[500..]);
        // Answer of 2500 bytes in chunks of 1000 with C=1 and a fresh TTT each time.
        let mut got = Vec::new();
        let mut cmd_sn = 3;
        loop {
            let pdus = h.pdus();
            assert_eq!(pdus.len(), 1);
            let t = as_text(&pdus[0]);
            got.extend_from_slice(&pdus[0].data_bytes());
            if t.final_ {
                assert!(!t.continue_ && t.ttt == RESERVED_TAG);
                break;
            }
            assert!(t.continue_ && t.ttt != RESERVED_TAG);
            h.send(text_req(5, t.ttt, cmd_sn, true, false), &[]);
            cmd_sn += 1;
        }
        assert_eq!(got, answer);
        assert_eq!(h.text_seen.lock().map(|v| v.clone()).unwrap_or_default(), vec![req]);
        // A continuation with a stale TTT is rejected.
        h.send(text_req(5, 0x4242, cmd_sn, true, false), &[]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::INVALID_PDU_FIELD);
    }

    // ----- protocol violations -----

    #[test]
    fn snack_login_and_target_opcodes_are_rejected_with_the_bhs() {
        let mut h = H::default();
        h.send(
            Header::SnackRequest(crate::wire::SnackRequest {
                snack_type: 0,
                lun: 0,
                itt: 0x11,
                ttt: RESERVED_TAG,
                exp_stat_sn: SerialNumber(0),
                beg_run: 0,
                run_length: 0,
            }),
            &[],
        );
        let (reason, bhs) = as_reject(&h.pdus()[0]);
        assert_eq!(reason, reject_reason::PROTOCOL_ERROR);
        assert_eq!(bhs.len(), 48);
        assert_eq!(bhs[0], 0x10);
        assert_eq!(&bhs[16..20], &0x11u32.to_be_bytes());
        h.send(
            Header::LoginRequest(crate::wire::LoginRequest {
                transit: true,
                continue_: false,
                csg: 1,
                nsg: 3,
                version_max: 0,
                version_min: 0,
                isid: [0; 6],
                tsih: 1,
                itt: 0x12,
                cid: 7,
                cmd_sn: SerialNumber(1),
                exp_stat_sn: SerialNumber(0),
            }),
            &[],
        );
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::PROTOCOL_ERROR);
        h.send(
            Header::NopIn(NopIn {
                lun: 0,
                itt: 1,
                ttt: RESERVED_TAG,
                stat_sn: SerialNumber(0),
                exp_cmd_sn: SerialNumber(0),
                max_cmd_sn: SerialNumber(0),
            }),
            &[],
        );
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::COMMAND_NOT_SUPPORTED);
        h.s.reject_raw(reject_reason::COMMAND_NOT_SUPPORTED, &[0x1c; 48]);
        let (reason, bhs) = as_reject(&h.pdus()[0]);
        assert_eq!((reason, bhs[0]), (reject_reason::COMMAND_NOT_SUPPORTED, 0x1c));
        assert_eq!(h.s.stats().rejects, 4);
        assert!(!h.s.is_closed(), "the session continues");
    }

    /// Each malformed SCSI command gets its Reject, consumes its CmdSN, and the next command runs.
    #[test]
    fn malformed_commands_are_rejected_and_consume_their_cmdsn() {
        let cases: Vec<(SessionParams, Header, usize, u8)> = {
            let mut no_imm = write_params(true, 1);
            no_imm.immediate_data = false;
            let mut discovery = session_params();
            discovery.session_type = SessionType::Discovery;
            let mut bidi = scsi(1, 1, 512);
            bidi.read = true;
            bidi.write = true;
            let mut reserved = scsi(RESERVED_TAG, 1, 0);
            reserved.read = true;
            vec![
                (no_imm, write_cmd(1, 1, 4096, true), 100, reject_reason::PROTOCOL_ERROR),
                (write_params(true, 1), write_cmd(1, 1, 100, true), 200, reject_reason::INVALID_PDU_FIELD),
                (write_params(true, 1), write_cmd(1, 1, 20000, true), 4096 + 4, reject_reason::PROTOCOL_ERROR),
                (write_params(false, 1), write_cmd(1, 1, 40000, true), 0, 0),
                (write_params(true, 1), write_cmd(1, 1, 40000, false), 0, reject_reason::PROTOCOL_ERROR),
                (write_params(true, 1), read_cmd(1, 1, 4096), 10, reject_reason::PROTOCOL_ERROR),
                (discovery, read_cmd(1, 1, 4096), 0, reject_reason::COMMAND_NOT_SUPPORTED),
                (session_params(), Header::ScsiCommand(bidi), 0, reject_reason::COMMAND_NOT_SUPPORTED),
                (session_params(), Header::ScsiCommand(reserved), 0, reject_reason::INVALID_PDU_FIELD),
            ]
        };
        for (i, (sp, cmd, data_len, reason)) in cases.into_iter().enumerate() {
            let mut sp = sp;
            sp.first_burst_length = 16384;
            let mut h = H::new(sp, target_params());
            h.send(cmd, &pattern(data_len, 0));
            let pdus = h.pdus();
            if reason == 0 {
                // Control case: a valid command (InitialR2T=No, F=1: no unsolicited Data-Out follows).
                assert!(h.s.stats().rejects == 0, "case {i}");
                continue;
            }
            assert_eq!(pdus.len(), 1, "case {i}: {pdus:?}");
            assert_eq!(as_reject(&pdus[0]).0, reason, "case {i}");
            assert!(h.events().is_empty(), "case {i}");
            assert_eq!(h.s.exp_cmd_sn(), SerialNumber(2), "case {i}: CmdSN consumed");
            assert_eq!(h.s.task_count(), 0);
        }
    }

    #[test]
    fn duplicate_itt_is_rejected() {
        let mut h = H::default();
        h.send(read_cmd(1, 1, 0), &[]);
        h.send(read_cmd(1, 2, 0), &[]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::INVALID_PDU_FIELD);
        assert_eq!(h.commands().len(), 1);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(3));
    }

    /// A write whose Data-Out breaks a rule: Reject with the reason, then CHECK CONDITION with the sense once the
    /// initiator has closed its open sequences; never a Command event.
    fn data_out_violation(
        sp: SessionParams,
        bad: impl Fn(&R2t) -> (Header, usize),
        reason: u8,
        asc: (u8, u8),
        then_close: bool,
    ) {
        let mut h = H::new(sp, target_params());
        h.send(write_cmd(0x33, 1, 8192, true), &[]);
        let r = as_r2t(&h.pdus()[0]);
        let (hdr, len) = bad(&r);
        h.send(hdr, &pattern(len, 0));
        let mut pdus = h.pdus();
        assert_eq!(pdus.len(), if then_close { 1 } else { 2 }, "{pdus:?}");
        let (got, bhs) = as_reject(&pdus.remove(0));
        assert_eq!(got, reason);
        assert_eq!(bhs[0], 0x05);
        if then_close {
            // The R2T's sequence is still open: no status until the initiator finishes it with F=1.
            assert!(h.s.task_count() == 1);
            h.send(data_out(0x33, r.ttt, 1, 4096, true), &pattern(4096, 0));
            pdus = h.pdus();
        }
        assert_eq!(pdus.len(), 1, "{pdus:?}");
        let rsp = as_response(&pdus[0]);
        assert_eq!(rsp.status, STATUS_CHECK_CONDITION);
        let sense = sense_of(&pdus[0]);
        assert_eq!((sense[2], sense[12], sense[13]), (0x0b, asc.0, asc.1));
        assert!(h.events().is_empty(), "the task never reaches the SCSI layer");
        assert_eq!(h.s.task_count(), 0);
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(2 + 7), "slot released");
    }

    #[test]
    fn data_out_violations() {
        let sp = || write_params(true, 1);
        // Wrong TTT.
        data_out_violation(
            sp(),
            |_| (data_out(0x33, 0xdead, 0, 0, false), 4096),
            reject_reason::INVALID_PDU_FIELD,
            (0x4b, 0x01),
            true,
        );
        // Wrong buffer offset.
        data_out_violation(
            sp(),
            |r| (data_out(0x33, r.ttt, 0, 512, false), 4096),
            reject_reason::INVALID_PDU_FIELD,
            (0x4b, 0x05),
            true,
        );
        // Wrong DataSN.
        data_out_violation(
            sp(),
            |r| (data_out(0x33, r.ttt, 3, 0, false), 4096),
            reject_reason::INVALID_PDU_FIELD,
            (0x4b, 0x00),
            true,
        );
        // F bit before the end of the R2T's sequence (closes the sequence).
        data_out_violation(
            sp(),
            |r| (data_out(0x33, r.ttt, 0, 0, true), 4096),
            reject_reason::PROTOCOL_ERROR,
            (0x4b, 0x00),
            false,
        );
        // More data than the R2T asked for.
        let mut big = sp();
        big.max_recv_data_segment_length = 16384;
        data_out_violation(
            big,
            |r| (data_out(0x33, r.ttt, 0, 0, true), 8192 + 512),
            reject_reason::INVALID_PDU_FIELD,
            (0x4b, 0x02),
            false,
        );
        // Segment larger than MaxRecvDataSegmentLength.
        data_out_violation(
            sp(),
            |r| (data_out(0x33, r.ttt, 0, 0, true), 8192),
            reject_reason::PROTOCOL_ERROR,
            (0x4b, 0x00),
            false,
        );
        // Unsolicited data while InitialR2T=Yes (the R2T's sequence is then answered normally).
        data_out_violation(
            sp(),
            |_| (data_out(0x33, RESERVED_TAG, 0, 0, true), 1024),
            reject_reason::PROTOCOL_ERROR,
            (0x0c, 0x0c),
            true,
        );
        // LUN of a solicited Data-Out differs from the command's.
        data_out_violation(
            sp(),
            |r| {
                let mut d = data_out(0x33, r.ttt, 0, 0, false);
                if let Header::DataOut(x) = &mut d {
                    x.lun = 5;
                }
                (d, 4096)
            },
            reject_reason::INVALID_PDU_FIELD,
            (0x4b, 0x00),
            true,
        );
    }

    #[test]
    fn unsolicited_sequence_missing_f_bit() {
        let mut h = H::new(write_params(false, 1), target_params());
        h.send(write_cmd(1, 1, 20000, false), &[]);
        let mut off = 0u32;
        for sn in 0..4 {
            // Reaches FirstBurstLength (16384) on the fourth PDU without F.
            h.send(data_out(1, RESERVED_TAG, sn, off, false), &[0u8; 4096]);
            off += 4096;
        }
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1);
        assert_eq!(as_reject(&pdus[0]).0, reject_reason::PROTOCOL_ERROR);
        // The unsolicited sequence is still open; the F bit finally closes it and the task ends.
        h.send(data_out(1, RESERVED_TAG, 4, off, true), &[]);
        let rsp = as_response(&h.pdus()[0]);
        assert_eq!(rsp.status, STATUS_CHECK_CONDITION);
        assert!(h.events().is_empty());
    }

    #[test]
    fn data_out_for_unknown_task_and_for_read_task() {
        let mut h = H::default();
        h.send(data_out(0x999, RESERVED_TAG, 0, 0, true), &[1, 2, 3, 4]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::INVALID_PDU_FIELD);
        h.send(read_cmd(1, 1, 512), &[]);
        let task = h.one_command();
        h.send(data_out(1, RESERVED_TAG, 0, 0, true), &[1, 2, 3, 4]);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::PROTOCOL_ERROR);
        // The read task itself is unaffected.
        h.complete(task.id, good(512, vec![Bytes::from(vec![0u8; 512])]));
        let pdus = h.pdus();
        assert!(matches!(&pdus[0].header, Header::DataIn(d) if d.status == Some(0)));
    }

    #[test]
    fn data_digest_error_on_data_out_terminates_the_task() {
        let mut sp = write_params(true, 1);
        sp.max_burst_length = 4096;
        let mut h = H::new(sp, target_params());
        h.send(write_cmd(1, 1, 8192, true), &[]);
        let r = as_r2t(&h.pdus()[0]);
        assert_eq!((r.buffer_offset, r.desired_len), (0, 4096));
        // The first Data-Out of the sequence has a bad data digest: Reject, nothing else yet (the sequence is open).
        let hdr = data_out(1, r.ttt, 0, 0, false);
        let bhs = fake_bhs(&hdr);
        h.s.handle_data_digest_error(hdr, &bhs, h.now);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1);
        assert_eq!(as_reject(&pdus[0]).0, reject_reason::DATA_DIGEST_ERROR);
        // The sequence ends (F bit): CHECK CONDITION 0B/47/05, no further R2T, no command for the SCSI layer.
        h.send(data_out(1, r.ttt, 1, 2048, true), &[0u8; 2048]);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1, "{pdus:?}");
        assert_eq!(as_response(&pdus[0]).status, STATUS_CHECK_CONDITION);
        let sense = sense_of(&pdus[0]);
        assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x0b, 0x47, 0x05));
        assert!(h.events().is_empty());
        assert!(!h.s.is_closed());
        assert_eq!(h.s.task_count(), 0);
        // A digest error on a SCSI Command's immediate data escalates to session recovery.
        let mut h = H::new(write_params(false, 1), target_params());
        let hdr = write_cmd(1, 1, 512, true);
        let bhs = fake_bhs(&hdr);
        h.s.handle_data_digest_error(hdr, &bhs, h.now);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::DATA_DIGEST_ERROR);
        assert_eq!(h.events(), vec![SessionEvent::Close { reason: CloseReason::DigestError }]);
        // A digest error on a NOP-Out is only rejected.
        let mut h = H::default();
        let hdr = nop_out(1, RESERVED_TAG, 1, true);
        let bhs = fake_bhs(&hdr);
        h.s.handle_data_digest_error(hdr, &bhs, h.now);
        assert_eq!(as_reject(&h.pdus()[0]).0, reject_reason::DATA_DIGEST_ERROR);
        assert!(!h.s.is_closed());
    }

    #[test]
    fn sense_is_truncated_to_the_initiators_segment_limit() {
        let mut sp = session_params();
        sp.max_xmit_data_segment_length = 512;
        let mut h = H::new(sp, target_params());
        h.send(read_cmd(1, 1, 0), &[]);
        let task = h.one_command();
        let result = CommandResult { status: 2, sense: Some(vec![0x70; 600]), data_in: vec![], transfer_len: 0 };
        h.complete(task.id, result);
        let pdus = h.pdus();
        assert_eq!(pdus[0].data_len(), 512);
        assert_eq!(sense_of(&pdus[0]).len(), 510);
    }

    #[test]
    fn write_longer_than_the_target_accepts_is_refused_before_buffering() {
        let mut tp = target_params();
        tp.max_transfer_length = 65536;
        let mut h = H::new(write_params(false, 1), tp);
        // 1 MiB write with 4 KiB of immediate data and an unsolicited burst announced (F=0).
        h.send(write_cmd(1, 1, 1 << 20, false), &[0x11; 4096]);
        assert!(h.pdus().is_empty(), "no R2T for a refused write");
        assert!(h.events().is_empty(), "never reaches the SCSI layer");
        assert_eq!(h.s.stats().refused_transfers, 1);
        // The unsolicited data is drained and dropped; the response follows the F bit.
        h.send(data_out(1, RESERVED_TAG, 0, 4096, false), &[0x22; 4096]);
        assert!(h.pdus().is_empty());
        h.send(data_out(1, RESERVED_TAG, 1, 8192, true), &[0x33; 4096]);
        let pdus = h.pdus();
        assert_eq!(pdus.len(), 1, "{pdus:?}");
        let r = as_response(&pdus[0]);
        assert_eq!(r.status, STATUS_CHECK_CONDITION);
        let sense = sense_of(&pdus[0]);
        assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (ILLEGAL_REQUEST, 0x24, 0x00));
        assert!(h.events().is_empty());
        assert_eq!(h.s.task_count(), 0);
        // The CmdSN was consumed: the next command runs.
        h.send(write_cmd(2, 2, 4096, true), &[0x44; 4096]);
        let task = h.one_command();
        assert_eq!(task.data_out.concat(), vec![0x44; 4096]);
    }

    #[test]
    fn refused_write_with_no_data_pending_answers_at_once_and_a_stalled_one_times_out() {
        let mut tp = target_params();
        tp.max_transfer_length = 8192;
        let mut h = H::new(write_params(true, 1), tp.clone());
        h.send(write_cmd(1, 1, 8193, true), &[]);
        let pdus = h.pdus();
        assert_eq!(as_response(&pdus[0]).status, STATUS_CHECK_CONDITION);
        // InitialR2T=No: an announced unsolicited burst that never ends runs into RspTimeout.
        let mut h = H::new(write_params(false, 1), tp);
        h.send(write_cmd(1, 1, 1 << 20, false), &[]);
        assert!(h.pdus().is_empty());
        assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(5)), "NopInInterval first");
        h.send(nop_out(RESERVED_TAG, RESERVED_TAG, 2, true), &[]);
        assert!(h.s.poll_timeout().is_some_and(|t| t <= h.t0 + Duration::from_secs(20)));
        h.advance(20);
        h.timeout();
        assert!(matches!(h.events()[..], [SessionEvent::Close { reason: CloseReason::RspTimeout }]));
    }

    #[test]
    fn undecodable_command_still_consumes_its_cmd_sn() {
        let mut h = H::default();
        // A SCSI Command with CmdSN 1 that the wire layer could not decode (e.g. a bad AHS): rejected raw.
        let mut bhs = [0u8; 48];
        bhs[0] = 0x01;
        bhs[16..20].copy_from_slice(&9u32.to_be_bytes());
        bhs[24..28].copy_from_slice(&1u32.to_be_bytes());
        h.s.reject_raw(0x04, &bhs);
        let pdus = h.pdus();
        assert_eq!(as_reject(&pdus[0]).0, 0x04);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(2), "the rejected command's CmdSN is used up");
        // The next command is not held back by a gap.
        h.send(read_cmd(2, 2, 512), &[]);
        assert_eq!(h.one_command().itt, 2);
        // Immediate PDUs and Data-Out carry no CmdSN to consume.
        bhs[0] = 0x41;
        bhs[24..28].copy_from_slice(&3u32.to_be_bytes());
        h.s.reject_raw(0x04, &bhs);
        bhs[0] = 0x05;
        h.s.reject_raw(0x04, &bhs);
        assert_eq!(h.s.exp_cmd_sn(), SerialNumber(3));
    }

    #[test]
    fn reset_from_another_nexus_aborts_silently() {
        let mut h = H::new(write_params(true, 1), target_params());
        // A read at the driver, a write waiting for its Data-Out, a command on another LUN.
        h.send(read_cmd(1, 1, 512), &[]);
        let read = h.one_command();
        h.send(write_cmd(2, 2, 4096, true), &[]);
        let r2t = as_r2t(&h.pdus()[0]);
        let mut other = scsi(3, 3, 0);
        other.lun = 0x0002_0000_0000_0000;
        other.cdb[0] = 0x00;
        h.send(Header::ScsiCommand(other), &[]);
        let tur = h.one_command();
        let held = h.s.abort_tasks(|lun, _| crate::wire::decode_lun(lun) == Some(1));
        assert_eq!(held, vec![read.id], "LUN 1 (0x0001...) only; the write is not at the driver");
        // No status for the aborted tasks, ever; their late data is dropped without a Reject.
        h.complete(read.id, good(512, vec![Bytes::from(vec![1u8; 512])]));
        h.send(data_out(2, r2t.ttt, 0, 0, true), &[0u8; 4096]);
        assert!(h.pdus().is_empty());
        assert_eq!(h.s.stats().dropped_data_out, 1);
        // The other LUN's task is untouched; the window slots come back.
        h.complete(tur.id, good(0, Vec::new()));
        assert_eq!(as_response(&h.pdus()[0]).itt, 3);
        assert_eq!(h.s.task_count(), 0);
        assert_eq!(h.s.max_cmd_sn(), SerialNumber(4 + 8 - 1));
        // Everything.
        h.send(read_cmd(4, 4, 512), &[]);
        let last = h.one_command();
        assert_eq!(h.s.abort_tasks(|_, _| true), vec![last.id]);
    }
}
