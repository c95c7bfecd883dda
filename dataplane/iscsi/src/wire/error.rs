//! The one error type of the wire module.

use std::fmt;

use super::{Opcode, RejectReason};

/// Which digest failed (RFC 7143 §13.1 HeaderDigest / DataDigest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestKind {
    /// The CRC32C over the BHS and AHS.
    Header,
    /// The CRC32C over the data segment and its padding.
    Data,
}

impl fmt::Display for DigestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestKind::Header => "header",
            DigestKind::Data => "data",
        })
    }
}

/// What is wrong with an Additional Header Segment (RFC 7143 §11.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AhsProblem {
    /// TotalAHSLength is not 0 on an opcode for which no AHS is defined (only SCSI Command has AHSs).
    NotAllowed,
    /// The AHS, padded to 4 bytes, runs past the end of the TotalAHSLength area.
    Overrun { ahs_length: u16 },
    /// An AHSLength that does not fit the AHS type (Bidirectional Read EDTL: 5; Extended CDB: at least 2).
    BadLength { ahs_type: u8, ahs_length: u16 },
    /// An AHSType other than 1 (Extended CDB) and 2 (Bidirectional Read EDTL), reserved bits included.
    UnknownType(u8),
    /// The same AHS type appears twice.
    Duplicate(u8),
}

impl fmt::Display for AhsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AhsProblem::NotAllowed => f.write_str("no AHS is defined for this opcode"),
            AhsProblem::Overrun { ahs_length } => {
                write!(f, "AHSLength {ahs_length} runs past TotalAHSLength")
            }
            AhsProblem::BadLength {
                ahs_type,
                ahs_length,
            } => {
                write!(
                    f,
                    "AHSLength {ahs_length} is invalid for AHS type {ahs_type}"
                )
            }
            AhsProblem::UnknownType(t) => write!(f, "unknown AHS type {t:#04x}"),
            AhsProblem::Duplicate(t) => write!(f, "AHS type {t} appears twice"),
        }
    }
}

/// Errors of PDU parsing, framing, digest checking and emitting.
///
/// The variants are fine-grained enough for the connection to pick the RFC's answer; [`WireError::reject_reason`]
/// gives the Reject reason RFC 7143 §11.17.1 calls for, where a Reject is the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the BHS (48) or than the BHS + AHS (or, for digest checks, the whole PDU) need.
    /// Not a protocol error when reading from a stream: wait for `need` bytes.
    #[error("PDU truncated: {need} bytes needed, {have} available")]
    Truncated { need: usize, have: usize },
    /// An opcode that RFC 7143 §11.2.1.2 does not define (vendor-specific opcodes 0x1c..0x1e included).
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// A malformed or unexpected AHS; `offset` is the byte offset of the AHS from the start of the PDU.
    #[error("bad AHS at PDU offset {offset}: {problem}")]
    BadAhs { offset: usize, problem: AhsProblem },
    /// A field holds a value the RFC forbids for this opcode.
    #[error("invalid {field} {value:#x} in {opcode:?} PDU")]
    InvalidField {
        opcode: Opcode,
        field: &'static str,
        value: u32,
    },
    /// DataSegmentLength exceeds the limit in force (MaxRecvDataSegmentLength, RFC 7143 §13.12), or, when
    /// emitting, the 24-bit field.
    #[error("data segment of {len} bytes exceeds the maximum of {max}")]
    DataSegmentTooLong { len: u32, max: u32 },
    /// A CRC32C digest does not match (RFC 7143 §7.8: data digest errors are answered with a Reject, header digest
    /// errors by discarding the PDU or dropping the connection).
    #[error("{kind} digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    DigestMismatch {
        kind: DigestKind,
        received: u32,
        computed: u32,
    },
    /// Emitting: the output buffer is shorter than [`super::Header::buffer_len`].
    #[error("output buffer of {have} bytes too small, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    /// Emitting: the AHSs of a SCSI Command do not fit TotalAHSLength (at most 1020 bytes).
    #[error("AHS of {len} bytes does not fit TotalAHSLength (max {max})", max = super::MAX_AHS_LEN)]
    AhsTooLong { len: usize },
}

impl WireError {
    /// The Reject reason (RFC 7143 §11.17.1) for a received PDU that failed with this error, when the RFC answer is
    /// a Reject carrying the offending header:
    /// * unknown opcode: Command not supported (0x05), as iSCSI-SCST and IET answer;
    /// * invalid field: Invalid PDU field (0x09);
    /// * bad AHS or a data segment longer than MaxRecvDataSegmentLength: Protocol Error (0x04);
    /// * data digest mismatch: Data (payload) Digest Error (0x02, RFC 7143 §7.8).
    ///
    /// `None` for a header digest mismatch (the header cannot be trusted: discard the PDU or drop the connection,
    /// §7.8), for truncated input (wait for more bytes) and for the emit-side errors.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            WireError::UnknownOpcode(_) => Some(RejectReason::CommandNotSupported),
            WireError::InvalidField { .. } => Some(RejectReason::InvalidPduField),
            WireError::BadAhs { .. } | WireError::DataSegmentTooLong { .. } => {
                Some(RejectReason::ProtocolError)
            }
            WireError::DigestMismatch {
                kind: DigestKind::Data,
                ..
            } => Some(RejectReason::DataDigestError),
            WireError::DigestMismatch {
                kind: DigestKind::Header,
                ..
            }
            | WireError::Truncated { .. }
            | WireError::BufferTooSmall { .. }
            | WireError::AhsTooLong { .. } => None,
        }
    }
}
