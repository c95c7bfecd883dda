//! A zero-copy view over a BHS (+ AHS), smoltcp style (RFC 7143 §11.2).
//!
//! The view is not typed by opcode: accessors that share bytes (the word at offset 20 is the Expected Data Transfer
//! Length of a SCSI Command, the Target Transfer Tag of a Data-Out, the Referenced Task Tag of a TMF Request, ...)
//! read the same bytes under their RFC names. Each accessor says which PDUs define it.

use super::error::WireError;
use super::{Opcode, SerialNumber, BHS_LEN, MAX_DATA_SEGMENT_LEN};

/// Byte offsets of the BHS fields.
pub(crate) mod field {
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const BYTE2: usize = 2;
    pub const BYTE3: usize = 3;
    pub const TOTAL_AHS_LEN: usize = 4;
    pub const DATA_SEGMENT_LEN: usize = 5;
    pub const LUN: usize = 8;
    pub const ISID: usize = 8;
    pub const TSIH: usize = 14;
    pub const ITT: usize = 16;
    pub const W20: usize = 20;
    pub const W24: usize = 24;
    pub const W28: usize = 28;
    pub const W32: usize = 32;
    pub const W36: usize = 36;
    pub const W40: usize = 40;
    pub const W44: usize = 44;
    pub const CDB: usize = 32;
    pub const B36: usize = 36;
    pub const B37: usize = 37;
    pub const H38: usize = 38;
    pub const H40: usize = 40;
    pub const H42: usize = 42;
}

/// Flag bits of bytes 0 and 1.
pub(crate) mod bits {
    pub const IMMEDIATE: u8 = 0x40;
    pub const FINAL: u8 = 0x80;
    pub const CMD_READ: u8 = 0x40;
    pub const CMD_WRITE: u8 = 0x20;
    pub const CMD_ATTR: u8 = 0x07;
    pub const CONTINUE: u8 = 0x40;
    pub const LOGIN_CSG: u8 = 0x0c;
    pub const LOGIN_NSG: u8 = 0x03;
    pub const DATA_ACK: u8 = 0x40;
    pub const DATA_STATUS: u8 = 0x01;
    pub const BIDI_OVERFLOW: u8 = 0x10;
    pub const BIDI_UNDERFLOW: u8 = 0x08;
    pub const OVERFLOW: u8 = 0x04;
    pub const UNDERFLOW: u8 = 0x02;
    pub const FUNCTION: u8 = 0x7f;
    pub const LOGOUT_REASON: u8 = 0x7f;
    pub const SNACK_TYPE: u8 = 0x0f;
}

/// A view over the Basic Header Segment and the AHSs of one PDU.
///
/// Build it with [`Packet::new_checked`] on untrusted bytes: it verifies that the buffer holds the 48-byte BHS and
/// the `TotalAHSLength * 4` bytes of AHS, after which no accessor panics. A view from [`Packet::new_unchecked`]
/// panics in accessors that read past the end of a too short buffer. The buffer may be longer (a whole PDU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Getter and setter pairs for big-endian fields of the BHS.
macro_rules! accessors {
    ($( $(#[$doc:meta])* $get:ident / $set:ident : $kind:ident @ $at:expr; )*) => {
        impl<T: AsRef<[u8]>> Packet<T> {
            $( accessors!(@get $(#[$doc])* $get, $kind, $at); )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
            $( accessors!(@set $set, $get, $kind, $at); )*
        }
    };
    (@get $(#[$doc:meta])* $get:ident, u8, $at:expr) => {
        $(#[$doc])* #[inline] pub fn $get(&self) -> u8 { self.buffer.as_ref()[$at] }
    };
    (@get $(#[$doc:meta])* $get:ident, u16, $at:expr) => {
        $(#[$doc])* #[inline] pub fn $get(&self) -> u16 { get_u16(self.buffer.as_ref(), $at) }
    };
    (@get $(#[$doc:meta])* $get:ident, u32, $at:expr) => {
        $(#[$doc])* #[inline] pub fn $get(&self) -> u32 { get_u32(self.buffer.as_ref(), $at) }
    };
    (@get $(#[$doc:meta])* $get:ident, sn, $at:expr) => {
        $(#[$doc])* #[inline] pub fn $get(&self) -> SerialNumber { SerialNumber(get_u32(self.buffer.as_ref(), $at)) }
    };
    (@set $set:ident, $get:ident, u8, $at:expr) => {
        #[doc = concat!("Sets the field read by [`Packet::", stringify!($get), "`].")]
        #[inline] pub fn $set(&mut self, v: u8) { self.buffer.as_mut()[$at] = v; }
    };
    (@set $set:ident, $get:ident, u16, $at:expr) => {
        #[doc = concat!("Sets the field read by [`Packet::", stringify!($get), "`].")]
        #[inline] pub fn $set(&mut self, v: u16) { set_u16(self.buffer.as_mut(), $at, v); }
    };
    (@set $set:ident, $get:ident, u32, $at:expr) => {
        #[doc = concat!("Sets the field read by [`Packet::", stringify!($get), "`].")]
        #[inline] pub fn $set(&mut self, v: u32) { set_u32(self.buffer.as_mut(), $at, v); }
    };
    (@set $set:ident, $get:ident, sn, $at:expr) => {
        #[doc = concat!("Sets the field read by [`Packet::", stringify!($get), "`].")]
        #[inline] pub fn $set(&mut self, v: SerialNumber) { set_u32(self.buffer.as_mut(), $at, v.0); }
    };
}

/// Getter and setter pairs for single-bit flags of byte 1.
macro_rules! flags {
    ($( $(#[$doc:meta])* $get:ident / $set:ident = $mask:expr; )*) => {
        impl<T: AsRef<[u8]>> Packet<T> {
            $( $(#[$doc])* #[inline] pub fn $get(&self) -> bool { self.buffer.as_ref()[field::FLAGS] & $mask != 0 } )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
            $(
                #[doc = concat!("Sets the flag read by [`Packet::", stringify!($get), "`].")]
                #[inline]
                pub fn $set(&mut self, on: bool) {
                    let b = &mut self.buffer.as_mut()[field::FLAGS];
                    if on { *b |= $mask } else { *b &= !$mask }
                }
            )*
        }
    };
}

/// Getter and setter pairs for multi-bit fields of byte 1.
macro_rules! bitfields {
    ($( $(#[$doc:meta])* $get:ident / $set:ident = $mask:expr, $shift:expr; )*) => {
        impl<T: AsRef<[u8]>> Packet<T> {
            $( $(#[$doc])* #[inline] pub fn $get(&self) -> u8 { (self.buffer.as_ref()[field::FLAGS] & $mask) >> $shift } )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
            $(
                #[doc = concat!("Sets the field read by [`Packet::", stringify!($get),
                    "`]; bits of `v` beyond the field's width are dropped.")]
                #[inline]
                pub fn $set(&mut self, v: u8) {
                    let b = &mut self.buffer.as_mut()[field::FLAGS];
                    *b = (*b & !$mask) | ((v << $shift) & $mask);
                }
            )*
        }
    };
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without any length check.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view over a buffer that holds at least the BHS and its AHS; [`WireError::Truncated`] otherwise.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 48-byte BHS and `TotalAHSLength * 4` bytes of AHS.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < BHS_LEN {
            return Err(WireError::Truncated {
                need: BHS_LEN,
                have,
            });
        }
        let need = self.header_len();
        if have < need {
            return Err(WireError::Truncated { need, have });
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// BHS + AHS length announced by TotalAHSLength.
    pub fn header_len(&self) -> usize {
        BHS_LEN + self.ahs_len()
    }

    /// The 48 bytes of the BHS.
    pub fn bhs(&self) -> &[u8] {
        &self.buffer.as_ref()[..BHS_LEN]
    }

    /// The AHS area (`TotalAHSLength * 4` bytes after the BHS).
    pub fn ahs(&self) -> &[u8] {
        &self.buffer.as_ref()[BHS_LEN..self.header_len()]
    }

    /// The opcode bits of byte 0 (§11.2.1.2), whether defined or not.
    pub fn opcode_raw(&self) -> u8 {
        self.buffer.as_ref()[field::OPCODE] & Opcode::MASK
    }

    /// The opcode, or [`WireError::UnknownOpcode`].
    pub fn opcode(&self) -> Result<Opcode, WireError> {
        Opcode::try_from(self.opcode_raw())
    }

    /// I bit (§11.2.1.1): immediate delivery, on initiator PDUs that define it.
    pub fn immediate(&self) -> bool {
        self.buffer.as_ref()[field::OPCODE] & bits::IMMEDIATE != 0
    }

    /// Byte 1 as a whole (F bit and opcode-specific flags).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// TotalAHSLength (§11.2.1.5), in 4-byte words.
    pub fn total_ahs_len(&self) -> u8 {
        self.buffer.as_ref()[field::TOTAL_AHS_LEN]
    }

    /// TotalAHSLength in bytes.
    pub fn ahs_len(&self) -> usize {
        usize::from(self.total_ahs_len()) * 4
    }

    /// DataSegmentLength (§11.2.1.6): payload bytes, without padding.
    pub fn data_segment_length(&self) -> u32 {
        let b = self.buffer.as_ref();
        let at = field::DATA_SEGMENT_LEN;
        u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
    }

    /// The 8-byte LUN field (§11.2.1.7; SAM-5 §4.7) as a big-endian number: SCSI Command, TMF Request (or
    /// reserved), Data-Out/In, R2T, Async Message, Text Request/Response, SNACK, NOP-Out/In.
    pub fn lun(&self) -> u64 {
        let b = self.buffer.as_ref();
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&b[field::LUN..field::LUN + 8]);
        u64::from_be_bytes(lun)
    }

    /// ISID (Login Request/Response, §11.12.5).
    pub fn isid(&self) -> [u8; 6] {
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&self.buffer.as_ref()[field::ISID..field::ISID + 6]);
        isid
    }

    /// The 16 CDB bytes of a SCSI Command (§11.3.5).
    pub fn cdb(&self) -> [u8; 16] {
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&self.buffer.as_ref()[field::CDB..field::CDB + 16]);
        cdb
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The 48 bytes of the BHS, mutable.
    pub fn bhs_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[..BHS_LEN]
    }

    /// The AHS area, mutable.
    pub fn ahs_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[BHS_LEN..end]
    }

    /// Sets the opcode bits of byte 0, keeping the I bit.
    pub fn set_opcode(&mut self, op: Opcode) {
        let b = &mut self.buffer.as_mut()[field::OPCODE];
        *b = (*b & !Opcode::MASK) | op as u8;
    }

    /// Sets the I bit.
    pub fn set_immediate(&mut self, on: bool) {
        let b = &mut self.buffer.as_mut()[field::OPCODE];
        if on {
            *b |= bits::IMMEDIATE
        } else {
            *b &= !bits::IMMEDIATE
        }
    }

    /// Sets byte 1 as a whole.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets TotalAHSLength (in 4-byte words).
    pub fn set_total_ahs_len(&mut self, words: u8) {
        self.buffer.as_mut()[field::TOTAL_AHS_LEN] = words;
    }

    /// Sets DataSegmentLength; only the low 24 bits are kept (the field's width).
    pub fn set_data_segment_length(&mut self, len: u32) {
        let v = (len & MAX_DATA_SEGMENT_LEN).to_be_bytes();
        self.buffer.as_mut()[field::DATA_SEGMENT_LEN..field::DATA_SEGMENT_LEN + 3]
            .copy_from_slice(&v[1..]);
    }

    /// Sets the 8-byte LUN field.
    pub fn set_lun(&mut self, lun: u64) {
        self.buffer.as_mut()[field::LUN..field::LUN + 8].copy_from_slice(&lun.to_be_bytes());
    }

    /// Sets the ISID.
    pub fn set_isid(&mut self, isid: [u8; 6]) {
        self.buffer.as_mut()[field::ISID..field::ISID + 6].copy_from_slice(&isid);
    }

    /// Sets the 16 CDB bytes.
    pub fn set_cdb(&mut self, cdb: &[u8; 16]) {
        self.buffer.as_mut()[field::CDB..field::CDB + 16].copy_from_slice(cdb);
    }
}

flags! {
    /// F bit (§11.2.1.3): final PDU of a sequence (SCSI Command, Data-Out/In, Text); drawn as a constant 1 on most
    /// other PDUs. Login PDUs call the same bit T, see [`Packet::transit`].
    final_ / set_final = bits::FINAL;
    /// T bit of Login Request/Response (§11.12.1): transit to the next stage.
    transit / set_transit = bits::FINAL;
    /// C bit of Login and Text Request/Response (§11.10.2, §11.12.2): the text continues in the next PDU.
    continue_ / set_continue = bits::CONTINUE;
    /// R bit of a SCSI Command (§11.3.1.1): data flows to the initiator.
    read / set_read = bits::CMD_READ;
    /// W bit of a SCSI Command (§11.3.1.2): data flows to the target.
    write / set_write = bits::CMD_WRITE;
    /// A bit of a Data-In (§11.7.2): acknowledge requested (ERL > 0).
    ack / set_ack = bits::DATA_ACK;
    /// S bit of a Data-In (§11.7.3): the PDU carries the SCSI status.
    status_flag / set_status_flag = bits::DATA_STATUS;
    /// o bit of a SCSI Response (§11.4.5): bidirectional read residual overflow.
    bidi_overflow / set_bidi_overflow = bits::BIDI_OVERFLOW;
    /// u bit of a SCSI Response (§11.4.5): bidirectional read residual underflow.
    bidi_underflow / set_bidi_underflow = bits::BIDI_UNDERFLOW;
    /// O bit of a SCSI Response or Data-In (§11.4.5, §11.7.5): residual overflow.
    overflow / set_overflow = bits::OVERFLOW;
    /// U bit of a SCSI Response or Data-In (§11.4.5, §11.7.5): residual underflow.
    underflow / set_underflow = bits::UNDERFLOW;
}

bitfields! {
    /// ATTR of a SCSI Command (§11.3.1.3), 3 bits.
    attr / set_attr = bits::CMD_ATTR, 0;
    /// CSG of Login Request/Response (§11.12.3), 2 bits.
    csg / set_csg = bits::LOGIN_CSG, 2;
    /// NSG of Login Request/Response (§11.12.3), 2 bits.
    nsg / set_nsg = bits::LOGIN_NSG, 0;
    /// Function of a TMF Request (§11.5.1), 7 bits.
    function / set_function = bits::FUNCTION, 0;
    /// Reason Code of a Logout Request (§11.14.1), 7 bits.
    logout_reason / set_logout_reason = bits::LOGOUT_REASON, 0;
    /// Type of a SNACK Request (§11.16.1), 4 bits.
    snack_type / set_snack_type = bits::SNACK_TYPE, 0;
}

accessors! {
    /// Byte 2: Response of a SCSI Response (§11.4.3), TMF Response (§11.6.1) or Logout Response (§11.15.1).
    response / set_response: u8 @ field::BYTE2;
    /// Byte 3: Status of a SCSI Response (§11.4.2) or of a Data-In with the S bit (§11.7.4).
    status / set_status: u8 @ field::BYTE3;
    /// Byte 2: Reason of a Reject (§11.17.1).
    reason / set_reason: u8 @ field::BYTE2;
    /// Byte 2: Version-max of Login Request/Response (§11.12.4, §11.13.1).
    version_max / set_version_max: u8 @ field::BYTE2;
    /// Byte 3: Version-min of a Login Request (§11.12.4).
    version_min / set_version_min: u8 @ field::BYTE3;
    /// Byte 3: Version-active of a Login Response (§11.13.2).
    version_active / set_version_active: u8 @ field::BYTE3;
    /// TSIH of Login Request/Response (§11.12.6).
    tsih / set_tsih: u16 @ field::TSIH;
    /// Initiator Task Tag (§11.2.1.8).
    itt / set_itt: u32 @ field::ITT;
    /// Expected Data Transfer Length of a SCSI Command (§11.3.4).
    expected_data_transfer_length / set_expected_data_transfer_length: u32 @ field::W20;
    /// Target Transfer Tag: Data-Out/In, R2T, Text Request/Response, NOP-Out/In, SNACK (or SNACK Tag).
    ttt / set_ttt: u32 @ field::W20;
    /// Referenced Task Tag of a TMF Request (§11.5.2).
    rtt / set_rtt: u32 @ field::W20;
    /// SNACK Tag of a SCSI Response (§11.4.6).
    snack_tag / set_snack_tag: u32 @ field::W20;
    /// CID of Login and Logout Requests (§11.12.7, §11.14.2).
    cid / set_cid: u16 @ field::W20;
    /// CmdSN of initiator PDUs (§11.3.6 and the like).
    cmd_sn / set_cmd_sn: sn @ field::W24;
    /// StatSN of target PDUs (a Data-In defines it only with the S bit).
    stat_sn / set_stat_sn: sn @ field::W24;
    /// ExpStatSN of initiator PDUs.
    exp_stat_sn / set_exp_stat_sn: sn @ field::W28;
    /// ExpCmdSN of target PDUs.
    exp_cmd_sn / set_exp_cmd_sn: sn @ field::W28;
    /// MaxCmdSN of target PDUs.
    max_cmd_sn / set_max_cmd_sn: sn @ field::W32;
    /// RefCmdSN of a TMF Request (§11.5.3).
    ref_cmd_sn / set_ref_cmd_sn: sn @ field::W32;
    /// ExpDataSN of a SCSI Response (§11.4.8) or TMF Request (§11.5.5).
    exp_data_sn / set_exp_data_sn: sn @ field::W36;
    /// DataSN of Data-Out/In (§11.7.6), or the DataSN/R2TSN of a Reject (§11.17).
    data_sn / set_data_sn: sn @ field::W36;
    /// R2TSN of an R2T (§11.8.2).
    r2t_sn / set_r2t_sn: sn @ field::W36;
    /// Buffer Offset of Data-Out/In (§11.7.7) and R2T (§11.8.4).
    buffer_offset / set_buffer_offset: u32 @ field::W40;
    /// Bidirectional Read Residual Count of a SCSI Response (§11.4.5.1).
    bidi_residual_count / set_bidi_residual_count: u32 @ field::W40;
    /// BegRun of a SNACK Request (§11.16.4).
    beg_run / set_beg_run: u32 @ field::W40;
    /// Residual Count of a SCSI Response (§11.4.5.2) or Data-In.
    residual_count / set_residual_count: u32 @ field::W44;
    /// Desired Data Transfer Length of an R2T (§11.8.5).
    desired_data_transfer_length / set_desired_data_transfer_length: u32 @ field::W44;
    /// RunLength of a SNACK Request (§11.16.5).
    run_length / set_run_length: u32 @ field::W44;
    /// Status-Class of a Login Response (§11.13.5).
    status_class / set_status_class: u8 @ field::B36;
    /// Status-Detail of a Login Response (§11.13.5).
    status_detail / set_status_detail: u8 @ field::B37;
    /// AsyncEvent of an Asynchronous Message (§11.9.1).
    async_event / set_async_event: u8 @ field::B36;
    /// AsyncVCode of an Asynchronous Message (§11.9.2).
    async_vcode / set_async_vcode: u8 @ field::B37;
    /// Parameter1 of an Asynchronous Message (§11.9.3).
    parameter1 / set_parameter1: u16 @ field::H38;
    /// Parameter2 of an Asynchronous Message.
    parameter2 / set_parameter2: u16 @ field::H40;
    /// Parameter3 of an Asynchronous Message.
    parameter3 / set_parameter3: u16 @ field::H42;
    /// Time2Wait of a Logout Response (§11.15.2).
    time2wait / set_time2wait: u16 @ field::H40;
    /// Time2Retain of a Logout Response (§11.15.3).
    time2retain / set_time2retain: u16 @ field::H42;
}
