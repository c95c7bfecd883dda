//! Login and session parameters (RFC 7143 §13): the target's per-target defaults from the configuration and the
//! values a login negotiated. The negotiation rules themselves live in `crate::negotiate`.

use std::time::Duration;

/// A digest algorithm (RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    None,
    Crc32c,
}

impl Digest {
    /// The key value spelling ("None", "CRC32C").
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }
}

/// Session type (RFC 7143 §13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionType {
    Discovery,
    Normal,
}

/// Per-target negotiation defaults and limits, as the SCST README names them (its defaults in brackets).
///
/// For each negotiated key, this is the value the target offers or the bound it accepts; the negotiated result
/// follows the key's rule (min/max, AND/OR, list preference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetParams {
    /// InitialR2T [No] (OR rule: the result is Yes if either side says Yes).
    pub initial_r2t: bool,
    /// ImmediateData [Yes] (AND rule).
    pub immediate_data: bool,
    /// MaxRecvDataSegmentLength the target declares it can receive [1 MiB in SCST].
    pub max_recv_data_segment_length: u32,
    /// Upper bound for the data segments the target sends, whatever the initiator declares [1 MiB].
    pub max_xmit_data_segment_length: u32,
    /// MaxBurstLength [1 MiB] (min rule).
    pub max_burst_length: u32,
    /// FirstBurstLength [1 MiB] (min rule, and not more than MaxBurstLength).
    pub first_burst_length: u32,
    /// MaxOutstandingR2T [32] (min rule).
    pub max_outstanding_r2t: u32,
    /// HeaderDigest preference list [None].
    pub header_digest: Vec<Digest>,
    /// DataDigest preference list [None].
    pub data_digest: Vec<Digest>,
    /// DefaultTime2Wait [2] (max rule).
    pub default_time2wait: u16,
    /// DefaultTime2Retain [20 in RFC, 0 for ERL 0 targets] (min rule).
    pub default_time2retain: u16,
    /// MaxConnections [1] (min rule).
    pub max_connections: u16,
    /// ErrorRecoveryLevel the target supports [0] (min rule).
    pub error_recovery_level: u8,
    /// Maximum commands queued per session (CmdSN window) [32].
    pub queued_commands: u32,
    /// Interval between NOP-In pings on an idle connection; `None` disables them [30 s].
    pub nop_in_interval: Option<Duration>,
    /// How long a NOP-In may wait for its NOP-Out before the connection is closed [30 s].
    pub nop_in_timeout: Duration,
    /// How long a command may wait for the initiator (e.g. Data-Out after R2T) before the connection closes [90 s].
    pub rsp_timeout: Duration,
    /// The largest Expected Data Transfer Length of a write the session buffers [[`MAX_TRANSFER_LENGTH`], the
    /// logical units' Block Limits MAXIMUM TRANSFER LENGTH]. A larger write is answered CHECK CONDITION (ILLEGAL REQUEST, INVALID FIELD
    /// IN CDB) without soliciting or keeping its data.
    pub max_transfer_length: u32,
}

/// The largest transfer of one command, in bytes: the default [`TargetParams::max_transfer_length`] and what the
/// binary reports as the logical units' Block Limits MAXIMUM TRANSFER LENGTH (SBC-3 §6.6.3), so that no write the
/// Block Limits page allows is refused. 32 MiB: 65536 blocks of 512 bytes, which libiscsi's WRITE SAME tests write
/// in one WRITE(16) (they do not consult the limit).
pub const MAX_TRANSFER_LENGTH: u32 = 32 << 20;

impl Default for TargetParams {
    fn default() -> Self {
        TargetParams {
            initial_r2t: false,
            immediate_data: true,
            max_recv_data_segment_length: 1 << 20,
            max_xmit_data_segment_length: 1 << 20,
            max_burst_length: 1 << 20,
            first_burst_length: 1 << 20,
            max_outstanding_r2t: 32,
            header_digest: vec![Digest::None],
            data_digest: vec![Digest::None],
            default_time2wait: 2,
            default_time2retain: 0,
            max_connections: 1,
            error_recovery_level: 0,
            queued_commands: 32,
            nop_in_interval: Some(Duration::from_secs(30)),
            nop_in_timeout: Duration::from_secs(30),
            rsp_timeout: Duration::from_secs(90),
            max_transfer_length: MAX_TRANSFER_LENGTH,
        }
    }
}

/// The operational values in force after a successful login (RFC 7143 §13). Values the initiator did not negotiate
/// take the RFC defaults, not the target's offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// Empty for discovery sessions.
    pub target_name: String,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub header_digest: Digest,
    pub data_digest: Digest,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// Largest data segment the target accepts (what the target declared).
    pub max_recv_data_segment_length: u32,
    /// Largest data segment the target may send: the initiator's declared MaxRecvDataSegmentLength (default 8192),
    /// capped by the target's MaxXmitDataSegmentLength.
    pub max_xmit_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_connections: u16,
    pub error_recovery_level: u8,
}
