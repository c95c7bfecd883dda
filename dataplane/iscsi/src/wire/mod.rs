//! iSCSI PDU wire formats (RFC 7143 §11), smoltcp style.
//!
//! Every PDU starts with a 48-byte Basic Header Segment (BHS, §11.2.1), followed by `TotalAHSLength * 4` bytes of
//! Additional Header Segments, an optional header digest, `DataSegmentLength` bytes of data padded to a multiple of 4,
//! and an optional data digest.
//!
//! The structs in this module are the `Repr`s: the decoded, owned meaning of one BHS (plus its AHS where the opcode
//! has one). The data segment travels beside them as `bytes::Bytes`. Fields use the RFC's names.
//! Sequence numbers are [`SerialNumber`]s.
//!
//! Contract used by the connection state machine (`crate::conn`):
//! * [`Header::parse`] decodes a BHS (+ AHS) and never panics on any input;
//! * [`Header::emit`] writes the 48-byte BHS for a target-sent PDU given its data segment length;
//! * [`Framing`] tells how long a whole PDU is from its first 48 bytes and the negotiated digests.

use crate::serial::SerialNumber;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Operation codes (RFC 7143 §11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    // Initiator opcodes
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    SnackRequest = 0x10,
    // Target opcodes
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

/// SCSI task attributes (RFC 7143 §11.3.1 ATTR field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskAttr {
    Untagged = 0,
    Simple = 1,
    Ordered = 2,
    HeadOfQueue = 3,
    Aca = 4,
}

/// SCSI Command (§11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    /// Raw ATTR value; values 5..7 are reserved and kept as read (the SCSI layer rejects them).
    pub attr: u8,
    /// The raw 8-byte LUN field (SAM-5 §4.7), big endian as on the wire.
    pub lun: u64,
    pub itt: u32,
    /// Expected Data Transfer Length.
    pub edtl: u32,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
    /// The first 16 CDB bytes from the BHS.
    pub cdb: [u8; 16],
    /// Additional CDB bytes from an Extended CDB AHS (type 1, §11.2.2.3), for CDBs longer than 16 bytes.
    pub ext_cdb: Vec<u8>,
    /// Bidirectional Read Expected Data Transfer Length AHS (type 2, §11.2.2.4), when present.
    pub bidi_read_edtl: Option<u32>,
}

/// SCSI Response (§11.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// o bit: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u bit: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O bit: residual overflow.
    pub overflow: bool,
    /// U bit: residual underflow.
    pub underflow: bool,
    /// iSCSI Response code (§11.4.3): 0x00 Command Completed at Target, 0x01 Target Failure.
    pub response: u8,
    /// SCSI status (SAM), valid when `response == 0`.
    pub status: u8,
    pub itt: u32,
    pub snack_tag: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    pub exp_data_sn: SerialNumber,
    pub bidi_residual: u32,
    pub residual: u32,
}

/// Task Management Function Request (§11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    /// Function code (§11.5.1): 1 ABORT TASK ... 8 TASK REASSIGN.
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    /// Referenced Task Tag.
    pub rtt: u32,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
    pub ref_cmd_sn: SerialNumber,
    pub exp_data_sn: SerialNumber,
}

/// Task Management Function Response (§11.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    /// Response code (§11.6.1): 0 function complete, 1 task does not exist, 2 LUN does not exist, 3 task still
    /// allegiant, 4 task allegiance reassignment not supported, 5 function not supported, 6 authorization failed,
    /// 255 function rejected.
    pub response: u8,
    pub itt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
}

/// SCSI Data-Out (§11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff for unsolicited data, else the TTT of the R2T answered.
    pub ttt: u32,
    pub exp_stat_sn: SerialNumber,
    pub data_sn: SerialNumber,
    pub buffer_offset: u32,
}

/// SCSI Data-In (§11.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_: bool,
    /// A bit (acknowledge, ERL > 0 only).
    pub ack: bool,
    /// O bit (only with `status`).
    pub overflow: bool,
    /// U bit (only with `status`).
    pub underflow: bool,
    /// S bit set and the SCSI status carried (phase collapse, §11.7.4).
    pub status: Option<u8>,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    /// Present on the wire only when `status` is `Some` (otherwise reserved, emitted as 0).
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    pub data_sn: SerialNumber,
    pub buffer_offset: u32,
    pub residual: u32,
}

/// Ready To Transfer (§11.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    pub r2t_sn: SerialNumber,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

/// Asynchronous Message (§11.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncMessage {
    pub lun: u64,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    /// AsyncEvent (§11.9.1): 0 SCSI async event, 1 logout request, 2 connection drop, 3 session drop,
    /// 4 negotiation request, 5 task termination, 255 vendor specific.
    pub event: u8,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
}

/// Text Request (§11.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
}

/// Text Response (§11.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponse {
    pub final_: bool,
    pub continue_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
}

/// Login Request (§11.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// T bit.
    pub transit: bool,
    /// C bit.
    pub continue_: bool,
    /// Current Stage: 0 security negotiation, 1 login operational negotiation, 3 full feature phase.
    pub csg: u8,
    /// Next Stage (meaningful only with `transit`).
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
}

/// Login Response (§11.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub continue_: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    /// Status-Class (§11.13.5): 0 success, 1 redirection, 2 initiator error, 3 target error.
    pub status_class: u8,
    pub status_detail: u8,
}

/// Logout Request (§11.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    /// Reason code (§11.14.1): 0 close the session, 1 close the connection, 2 remove the connection for recovery.
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
}

/// Logout Response (§11.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    /// 0 closed successfully, 1 CID not found, 2 recovery not supported, 3 cleanup failed.
    pub response: u8,
    pub itt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    pub time2wait: u16,
    pub time2retain: u16,
}

/// SNACK Request (§11.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnackRequest {
    /// Type (§11.16.1): 0 Data/R2T, 1 Status, 2 DataACK, 3 R-Data.
    pub snack_type: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: SerialNumber,
    pub beg_run: u32,
    pub run_length: u32,
}

/// Reject (§11.17). The data segment carries the complete header of the rejected PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Reason (§11.17.1): 0x02 data (payload) digest error, 0x03 SNACK reject, 0x04 protocol error,
    /// 0x05 command not supported, 0x06 immediate command reject, 0x07 task in progress, 0x08 invalid data ACK,
    /// 0x09 invalid PDU field, 0x0a long op reject, 0x0b negotiation reset, 0x0c waiting for logout.
    pub reason: u8,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
    /// DataSN/R2TSN, or 0.
    pub data_sn: SerialNumber,
}

/// NOP-Out (§11.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    /// 0xffffffff when the NOP-Out answers a NOP-In and wants no answer itself.
    pub itt: u32,
    /// 0xffffffff when initiated by the initiator, else the TTT of the NOP-In answered.
    pub ttt: u32,
    pub cmd_sn: SerialNumber,
    pub exp_stat_sn: SerialNumber,
}

/// NOP-In (§11.19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: SerialNumber,
    pub exp_cmd_sn: SerialNumber,
    pub max_cmd_sn: SerialNumber,
}

/// A decoded BHS (and AHS), one variant per opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    SnackRequest(SnackRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
}
