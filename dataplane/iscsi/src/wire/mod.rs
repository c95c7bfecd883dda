//! iSCSI PDU wire formats (RFC 7143 §11), smoltcp style.
//!
//! Every PDU starts with a 48-byte Basic Header Segment (BHS, §11.2.1), followed by `TotalAHSLength * 4` bytes of
//! Additional Header Segments, an optional header digest, `DataSegmentLength` bytes of data padded to a multiple of 4,
//! and an optional data digest (RFC 7143 §11.1, §11.2).
//!
//! The structs in this module are the `Repr`s: the decoded, owned meaning of one BHS (plus its AHS where the opcode
//! has one). The data segment travels beside them as `bytes::Bytes`. Fields use the RFC's names.
//! Sequence numbers are [`SerialNumber`]s.
//!
//! # Layers
//! * [`Packet`]: a zero-copy view over a BHS (+ AHS) with one accessor per RFC field and a setter for each when the
//!   buffer is mutable. [`Packet::new_checked`] fails with [`WireError::Truncated`] unless the buffer holds the BHS
//!   and the whole AHS announced by TotalAHSLength; after that no accessor panics.
//! * [`Header`]: one `Repr` per opcode.
//! * [`Framing`]: where the parts of a PDU lie on the wire, from its first 48 bytes and the negotiated digests.
//! * CRC32C digests ([`header_digest`], [`data_digest`], [`DataDigest`]), LUN encoding ([`encode_lun`],
//!   [`decode_lun`]) and the RFC's code values ([`LoginStatus`], [`RejectReason`], [`TmfFunction`], ...).
//!
//! # Receiving a PDU (what `crate::conn` does)
//! 1. Collect 48 bytes; [`Framing::parse`]`(bhs, digests, MaxRecvDataSegmentLength)` gives the total PDU length
//!    ([`Framing::total_len`]) or [`WireError::DataSegmentTooLong`].
//! 2. Collect `total_len()` bytes; [`Framing::check_header_digest`] / [`Framing::check_data_digest`] verify the
//!    digests when in force ([`WireError::DigestMismatch`]).
//! 3. [`Header::parse`]`(&pdu[framing.header_range()])` decodes the BHS + AHS; the data segment is
//!    `&pdu[framing.data_range()]`. [`WireError::reject_reason`] suggests the Reject reason for a PDU that fails.
//!
//! # Sending a PDU
//! ```
//! use polltgt_iscsi::wire::{Framing, Digests, Header, NopIn, RESERVED_TAG, BHS_LEN};
//! use polltgt_iscsi::SerialNumber;
//!
//! let nop = Header::NopIn(NopIn {
//!     lun: 0, itt: 0x1234, ttt: RESERVED_TAG,
//!     stat_sn: SerialNumber(7), exp_cmd_sn: SerialNumber(3), max_cmd_sn: SerialNumber(66),
//! });
//! let ping = b"ping!";
//! let mut bhs = vec![0u8; nop.buffer_len()];                 // 48 (+ AHS, only for a SCSI Command)
//! nop.emit(ping.len() as u32, &mut bhs).unwrap();             // writes the BHS, DataSegmentLength = 5
//! let framing = Framing::for_header(&nop, ping.len() as u32, Digests::NONE);
//! assert_eq!(framing.total_len(), BHS_LEN + 8);               // 5 data bytes + 3 bytes of padding
//! ```
//! [`Header::emit`] fails only on caller errors (buffer shorter than [`Header::buffer_len`], a data segment longer
//! than 2^24 - 1 bytes, an AHS longer than 1020 bytes); [`Header::to_vec`] allocates the buffer itself. The sender
//! appends [`digest_to_wire`]`(`[`header_digest`]`(bhs))` when header digests are in force, the data, [`pad_len`]
//! zero bytes and the data digest ([`data_digest`] or the incremental [`DataDigest`] over a chain of buffers).
//!
//! # What [`Header::parse`] checks (and what it leaves to the caller)
//! RFC 7143 §11: "Any compliant receiver MUST ignore any bit not defined and all reserved fields unless specified
//! otherwise." Parsing therefore ignores every reserved bit and byte, including the bit 0 of byte 0, the I bit of
//! opcodes that have none (Data-Out, SNACK, all target opcodes), the bit that §11 draws as a constant `1` in byte 1
//! (TMF, Logout, SNACK, NOP, R2T, ...), the I bit of a Login Request that §11.12 draws as a constant `1` (the Repr
//! has no field for it: a login request is always immediate), the StatSN of a Data-In without the S bit (decoded as 0),
//! and the padding and reserved bytes of AHSs. It rejects:
//! * fewer bytes than the BHS + AHS announce ([`WireError::Truncated`]);
//! * opcodes not defined by §11.2.1.2 ([`WireError::UnknownOpcode`]);
//! * an AHS on any opcode but SCSI Command, an AHS of unknown type (types 60..63 included), a wrong AHSLength
//!   (Bidirectional Read EDTL must be 5, Extended CDB at least 2), an AHS overrunning TotalAHSLength, and the same
//!   AHS type twice ([`WireError::BadAhs`]);
//! * a DataSegmentLength other than 0 on the PDUs whose §11 layout has no data segment: Task Management Function
//!   Request/Response, Logout Request/Response, R2T and SNACK ([`WireError::InvalidField`]).
//!
//! Coded fields (task attribute, TMF function, logout reason, SNACK type, login stages and versions, ...) are kept
//! raw in the Reprs: the RFC's answer to a reserved value depends on the PDU (a Reject, a TMF response "function not
//! supported", a login failure status), so the layer that owns that PDU decides, using the enums of this module
//! ([`TaskAttr::from_u8`], [`TmfFunction::from_u8`], ...). Likewise the ITT 0xffffffff on a PDU other than NOP-Out
//! and the cross-field rules (T and C both set on a login, F and C on a text request, R/W against the Expected Data
//! Transfer Length) are checked by the connection and login layers.

use crate::serial::SerialNumber;

mod consts;
mod digest;
mod error;
mod framing;
mod header;
mod lun;
mod packet;
#[cfg(test)]
mod tests;

pub use consts::{
    AsyncEvent, LoginStage, LoginStatus, LogoutReason, LogoutResponseCode, RejectReason,
    ScsiResponseCode, SnackType, TmfFunction, TmfResponseCode, ISCSI_VERSION,
    LOGIN_STATUS_CLASS_INITIATOR_ERROR, LOGIN_STATUS_CLASS_REDIRECTION, LOGIN_STATUS_CLASS_SUCCESS,
    LOGIN_STATUS_CLASS_TARGET_ERROR, RESERVED_TAG,
};
pub use digest::{
    crc32c, data_digest, digest_from_wire, digest_to_wire, header_digest, DataDigest, DIGEST_LEN,
};
pub use error::{AhsProblem, DigestKind, WireError};
pub use framing::{pad_len, padded_len, Digests, Framing};
pub use header::{AHS_TYPE_BIDI_READ_EDTL, AHS_TYPE_EXTENDED_CDB, MAX_AHS_LEN};
pub use lun::{decode_lun, encode_lun, MAX_FLAT_LUN, MAX_PERIPHERAL_LUN};
pub use packet::Packet;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Largest DataSegmentLength the 24-bit field can carry (RFC 7143 §11.2.1.6).
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00ff_ffff;

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

impl Opcode {
    /// The bits of byte 0 that hold the opcode (§11.2.1.2); bit 0x40 is the I bit, bit 0x80 is reserved.
    pub const MASK: u8 = 0x3f;

    /// The opcode with this 6-bit value, or `None` for an undefined one (vendor-specific opcodes included).
    pub const fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskMgmtRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::SnackRequest,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskMgmtResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::R2t,
            0x32 => Opcode::AsyncMessage,
            0x3f => Opcode::Reject,
            _ => return None,
        })
    }

    /// All defined opcodes, initiator ones first.
    pub const ALL: [Opcode; 18] = [
        Opcode::NopOut,
        Opcode::ScsiCommand,
        Opcode::TaskMgmtRequest,
        Opcode::LoginRequest,
        Opcode::TextRequest,
        Opcode::DataOut,
        Opcode::LogoutRequest,
        Opcode::SnackRequest,
        Opcode::NopIn,
        Opcode::ScsiResponse,
        Opcode::TaskMgmtResponse,
        Opcode::LoginResponse,
        Opcode::TextResponse,
        Opcode::DataIn,
        Opcode::LogoutResponse,
        Opcode::R2t,
        Opcode::AsyncMessage,
        Opcode::Reject,
    ];

    /// True for the opcodes an initiator sends (0x00..0x1f, §11.2.1.2).
    pub const fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }

    /// True when the §11 layout of this PDU has a data segment. TMF Request/Response, Logout Request/Response, R2T
    /// and SNACK have none, and [`Header::parse`] rejects them with a non-zero DataSegmentLength.
    pub const fn carries_data(self) -> bool {
        !matches!(
            self,
            Opcode::TaskMgmtRequest
                | Opcode::TaskMgmtResponse
                | Opcode::LogoutRequest
                | Opcode::LogoutResponse
                | Opcode::R2t
                | Opcode::SnackRequest
        )
    }

    /// True when the byte 0 I bit is defined for this opcode (§11.2.1.1): NOP-Out, SCSI Command, TMF Request,
    /// Login Request (always 1), Text Request and Logout Request.
    pub const fn has_immediate_bit(self) -> bool {
        matches!(
            self,
            Opcode::NopOut
                | Opcode::ScsiCommand
                | Opcode::TaskMgmtRequest
                | Opcode::LoginRequest
                | Opcode::TextRequest
                | Opcode::LogoutRequest
        )
    }
}

impl TryFrom<u8> for Opcode {
    type Error = WireError;

    fn try_from(v: u8) -> Result<Self, WireError> {
        Opcode::from_u8(v).ok_or(WireError::UnknownOpcode(v))
    }
}

impl From<Opcode> for u8 {
    fn from(op: Opcode) -> u8 {
        op as u8
    }
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

impl TaskAttr {
    /// The attribute for an ATTR value, `None` for the reserved values 5..7.
    pub const fn from_u8(v: u8) -> Option<TaskAttr> {
        Some(match v {
            0 => TaskAttr::Untagged,
            1 => TaskAttr::Simple,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            4 => TaskAttr::Aca,
            _ => return None,
        })
    }
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
