//! Sense data (SPC-4 §4.5): the values a CHECK CONDITION carries, and their two wire formats.
//!
//! A [`Sense`] is a plain value (sense key, additional sense code and qualifier, optional INFORMATION field and
//! optional sense-key-specific field). [`Sense::to_fixed`] builds fixed-format sense data (SPC-4 §4.5.3, response
//! code 70h), which is what the device server returns while the D_SENSE bit of the Control mode page is zero;
//! [`Sense::to_descriptor`] builds descriptor-format sense data (SPC-4 §4.5.2, response code 72h).

/// The SENSE KEY field (SPC-4 §4.5.6, table 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    /// 0h: no specific sense key information to report.
    NoSense = 0x0,
    /// 1h: the command completed after recovery action.
    RecoveredError = 0x1,
    /// 2h: the logical unit is not accessible.
    NotReady = 0x2,
    /// 3h: non-recovered error, probably caused by a flaw in the medium.
    MediumError = 0x3,
    /// 4h: non-recoverable hardware failure.
    HardwareError = 0x4,
    /// 5h: illegal value in the CDB or in the parameter data.
    IllegalRequest = 0x5,
    /// 6h: a unit attention condition has been established.
    UnitAttention = 0x6,
    /// 7h: the operation is not permitted on this block (write protection).
    DataProtect = 0x7,
    /// 8h: blank or non-blank medium encountered where not expected.
    BlankCheck = 0x8,
    /// 9h: vendor specific.
    VendorSpecific = 0x9,
    /// Ah: EXTENDED COPY or similar command aborted.
    CopyAborted = 0xA,
    /// Bh: the device server aborted the command.
    AbortedCommand = 0xB,
    /// Dh: a buffered device reached the end of partition.
    VolumeOverflow = 0xD,
    /// Eh: the source data did not match the data read from the medium.
    Miscompare = 0xE,
    /// Fh: completed (used by some commands to report progress).
    Completed = 0xF,
}

/// The sense-key-specific field (SPC-4 §4.5.2.4.1): 3 bytes whose meaning depends on the sense key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKeySpecific {
    /// Field pointer (SPC-4 §4.5.2.4.2), for ILLEGAL REQUEST: which byte (and optionally which bit) of the CDB
    /// (`in_cdb`, the C/D bit) or of the parameter list is in error. `bit` points to the most significant bit of
    /// a multi-bit field; `None` clears BPV (the whole byte or a multi-byte field is in error).
    FieldPointer {
        /// C/D bit: `true` when the error is in the CDB, `false` when it is in the parameter data.
        in_cdb: bool,
        /// FIELD POINTER: the byte number of the field in error.
        byte: u16,
        /// BIT POINTER (0..=7) with BPV set, or `None` with BPV clear.
        bit: Option<u8>,
    },
    /// Progress indication (SPC-4 §4.5.2.4.4): fraction of the operation done, in units of 1/65536.
    Progress(u16),
    /// Segment pointer (SPC-4 §4.5.2.4.6), for COPY ABORTED: the byte (and optionally bit) in error, counted from
    /// the start of the segment descriptor being processed when `in_segment` (the SD bit) is set, else from the
    /// start of the parameter list.
    SegmentPointer {
        /// SD bit: the FIELD POINTER is relative to the segment descriptor.
        in_segment: bool,
        /// FIELD POINTER.
        byte: u16,
        /// BIT POINTER with BPV set, or `None`.
        bit: Option<u8>,
    },
}

impl SenseKeySpecific {
    /// The three wire bytes, with SKSV (bit 7 of the first byte) set.
    pub fn to_bytes(self) -> [u8; 3] {
        match self {
            SenseKeySpecific::FieldPointer { in_cdb, byte, bit } => {
                let mut b0 = 0x80;
                if in_cdb {
                    b0 |= 0x40;
                }
                if let Some(bit) = bit {
                    b0 |= 0x08 | (bit & 0x07);
                }
                let [hi, lo] = byte.to_be_bytes();
                [b0, hi, lo]
            }
            SenseKeySpecific::Progress(p) => {
                let [hi, lo] = p.to_be_bytes();
                [0x80, hi, lo]
            }
            SenseKeySpecific::SegmentPointer { in_segment, byte, bit } => {
                let mut b0 = 0x80;
                if in_segment {
                    b0 |= 0x20;
                }
                if let Some(bit) = bit {
                    b0 |= 0x08 | (bit & 0x07);
                }
                let [hi, lo] = byte.to_be_bytes();
                [b0, hi, lo]
            }
        }
    }
}

/// Sense data as a value: what a CHECK CONDITION (or REQUEST SENSE) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION field (e.g. the miscompare offset); `None` leaves VALID clear.
    pub information: Option<u64>,
    /// Sense-key-specific field; `None` leaves SKSV clear.
    pub sks: Option<SenseKeySpecific>,
    /// COMMAND-SPECIFIC INFORMATION field (e.g. the segment number of a COPY ABORTED, SPC-4 §6.4.3.2); `None`
    /// leaves it zero.
    pub command_specific: Option<u32>,
}

/// Length of the fixed-format sense data this crate emits (SPC-4 §4.5.3: ADDITIONAL SENSE LENGTH = 10).
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// A sense value with only key, ASC and ASCQ.
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Self {
        Self { key, asc, ascq, information: None, sks: None, command_specific: None }
    }

    /// Sets the INFORMATION field.
    pub const fn with_information(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// Sets the sense-key-specific field.
    pub const fn with_sks(mut self, sks: SenseKeySpecific) -> Self {
        self.sks = Some(sks);
        self
    }

    /// Sets the COMMAND-SPECIFIC INFORMATION field.
    pub const fn with_command_specific(mut self, value: u32) -> Self {
        self.command_specific = Some(value);
        self
    }

    /// The (ASC, ASCQ) pair.
    pub const fn code(&self) -> (u8, u8) {
        (self.asc, self.ascq)
    }

    /// 00/00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const fn no_sense() -> Self {
        Self::new(SenseKey::NoSense, 0x00, 0x00)
    }

    /// 05/20/00 INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x20, 0x00)
    }

    /// 05/24/00 INVALID FIELD IN CDB, with a field pointer into the CDB (C/D = 1).
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::IllegalRequest, 0x24, 0x00)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: true, byte, bit })
    }

    /// 05/26/00 INVALID FIELD IN PARAMETER LIST, with a field pointer into the parameter data (C/D = 0).
    pub const fn invalid_field_in_param_list(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x00)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: false, byte, bit })
    }

    /// 05/1A/00 PARAMETER LIST LENGTH ERROR.
    pub const fn parameter_list_length_error() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x1A, 0x00)
    }

    /// 05/21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x21, 0x00)
    }

    /// 05/25/00 LOGICAL UNIT NOT SUPPORTED.
    pub const fn lun_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x25, 0x00)
    }

    /// 05/39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const fn saving_parameters_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x39, 0x00)
    }

    /// 05/53/02 MEDIUM REMOVAL PREVENTED.
    pub const fn medium_removal_prevented() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x53, 0x02)
    }

    /// 07/27/00 WRITE PROTECTED.
    pub const fn write_protected() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x00)
    }

    /// 07/27/07 SPACE ALLOCATION FAILED WRITE PROTECT (the backing store ran out of space).
    pub const fn space_allocation_failed() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x07)
    }

    /// 07/27/02 WRITE PROTECTED, software write protected (the SWP bit of the Control mode page, SPC-4 §7.5.8).
    pub const fn software_write_protected() -> Self {
        Self::new(SenseKey::DataProtect, 0x27, 0x02)
    }

    /// 06/2A/01 MODE PARAMETERS CHANGED (another nexus changed shared mode parameters, SPC-4 §7.5.x).
    pub const fn mode_parameters_changed() -> Self {
        Self::new(SenseKey::UnitAttention, 0x2A, 0x01)
    }

    /// 06/3F/03 INQUIRY DATA HAS CHANGED.
    pub const fn inquiry_data_changed() -> Self {
        Self::new(SenseKey::UnitAttention, 0x3F, 0x03)
    }

    /// 06/3F/0E REPORTED LUNS DATA HAS CHANGED (a LUN was added to or removed from the target, SPC-4 §6.33).
    pub const fn reported_luns_changed() -> Self {
        Self::new(SenseKey::UnitAttention, 0x3F, 0x0E)
    }

    /// 05/26/02 PARAMETER VALUE INVALID, with a field pointer into the parameter list.
    pub const fn parameter_value_invalid(byte: u16, bit: Option<u8>) -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x02)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: false, byte, bit })
    }

    /// 02/3A/00 MEDIUM NOT PRESENT.
    pub const fn medium_not_present() -> Self {
        Self::new(SenseKey::NotReady, 0x3A, 0x00)
    }

    /// 02/04/1B LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
    pub const fn sanitize_in_progress() -> Self {
        Self::new(SenseKey::NotReady, 0x04, 0x1B)
    }

    /// 06/29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const fn power_on_reset() -> Self {
        Self::new(SenseKey::UnitAttention, 0x29, 0x00)
    }

    /// 06/29/03 BUS DEVICE RESET FUNCTION OCCURRED (what a LOGICAL UNIT RESET establishes, SAM-5 §6.3.3).
    pub const fn bus_device_reset() -> Self {
        Self::new(SenseKey::UnitAttention, 0x29, 0x03)
    }

    /// 06/2A/09 CAPACITY DATA HAS CHANGED.
    pub const fn capacity_data_changed() -> Self {
        Self::new(SenseKey::UnitAttention, 0x2A, 0x09)
    }

    /// 06/28/00 NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const fn medium_may_have_changed() -> Self {
        Self::new(SenseKey::UnitAttention, 0x28, 0x00)
    }

    /// 03/11/00 UNRECOVERED READ ERROR.
    pub const fn unrecovered_read_error() -> Self {
        Self::new(SenseKey::MediumError, 0x11, 0x00)
    }

    /// 03/0C/00 WRITE ERROR.
    pub const fn write_error() -> Self {
        Self::new(SenseKey::MediumError, 0x0C, 0x00)
    }

    /// 0E/1D/00 MISCOMPARE DURING VERIFY OPERATION; INFORMATION = offset of the first differing byte in the
    /// Data-Out buffer (SBC-3 VERIFY, WRITE AND VERIFY and COMPARE AND WRITE).
    pub const fn miscompare(offset: u64) -> Self {
        Self::new(SenseKey::Miscompare, 0x1D, 0x00).with_information(offset)
    }

    /// 05/00/16 OPERATION IN PROGRESS (an EXTENDED COPY with the same list identifier is still being processed for
    /// this I_T nexus, SPC-4 §6.4.1).
    pub const fn operation_in_progress() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x00, 0x16)
    }

    /// 05/26/06 TOO MANY TARGET DESCRIPTORS (EXTENDED COPY).
    pub const fn too_many_target_descriptors() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x06)
    }

    /// 05/26/07 UNSUPPORTED TARGET DESCRIPTOR TYPE CODE, pointing at the descriptor's type code.
    pub const fn unsupported_target_descriptor(byte: u16) -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x07)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: false, byte, bit: None })
    }

    /// 05/26/08 TOO MANY SEGMENT DESCRIPTORS (EXTENDED COPY).
    pub const fn too_many_segment_descriptors() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x08)
    }

    /// 05/26/09 UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE, pointing at the descriptor's type code.
    pub const fn unsupported_segment_descriptor(byte: u16) -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x09)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: false, byte, bit: None })
    }

    /// 05/26/0B INLINE DATA LENGTH EXCEEDED (EXTENDED COPY: the copy manager holds no inline data).
    pub const fn inline_data_length_exceeded() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x26, 0x0B)
    }

    /// 0A/ASC/ASCQ COPY ABORTED while processing segment descriptor `segment` (SPC-4 §6.4.3.3): the segment number
    /// in the COMMAND-SPECIFIC INFORMATION field (its low two bytes; the source and destination sense data offsets
    /// are zero) and a segment pointer to byte `byte` of that segment descriptor.
    pub const fn copy_aborted(asc: u8, ascq: u8, segment: u16, byte: u16) -> Self {
        Self::new(SenseKey::CopyAborted, asc, ascq)
            .with_command_specific(segment as u32)
            .with_sks(SenseKeySpecific::SegmentPointer { in_segment: true, byte, bit: None })
    }

    /// 04/44/00 INTERNAL TARGET FAILURE.
    pub const fn internal_target_failure() -> Self {
        Self::new(SenseKey::HardwareError, 0x44, 0x00)
    }

    /// Fixed-format sense data (SPC-4 §4.5.3), response code 70h (current error), 18 bytes.
    ///
    /// An INFORMATION value that does not fit the 4-byte field is not reported and VALID stays clear, as SPC-4
    /// requires; use [`Sense::to_descriptor`] to carry 8-byte values.
    pub fn to_fixed(&self) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = self.key as u8;
        if let Some(info) = self.information.and_then(|i| u32::try_from(i).ok()) {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        if let Some(csi) = self.command_specific {
            b[8..12].copy_from_slice(&csi.to_be_bytes());
        }
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sks {
            b[15..18].copy_from_slice(&sks.to_bytes());
        }
        b
    }

    /// Descriptor-format sense data (SPC-4 §4.5.2), response code 72h (current error), with an Information
    /// descriptor (§4.5.2.2) when INFORMATION is set, a Command-specific information descriptor (§4.5.2.3) when
    /// that field is set and a Sense key specific descriptor (§4.5.2.4) when the sense-key-specific field is set.
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 12 + 8);
        b.extend_from_slice(&[0x72, self.key as u8, self.asc, self.ascq, 0, 0, 0, 0]);
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(csi) = self.command_specific {
            b.extend_from_slice(&[0x01, 0x0A, 0x00, 0x00]);
            b.extend_from_slice(&u64::from(csi).to_be_bytes());
        }
        if let Some(sks) = self.sks {
            let [s0, s1, s2] = sks.to_bytes();
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, s0, s1, s2, 0x00]);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_plain() {
        let s = Sense::lba_out_of_range().to_fixed();
        assert_eq!(s, [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn fixed_with_field_pointer_and_bit() {
        let s = Sense::invalid_field_in_cdb(1, Some(7)).to_fixed();
        assert_eq!(s, [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xCF, 0x00, 0x01]);
        let s = Sense::invalid_field_in_cdb(258, None).to_fixed();
        assert_eq!(&s[15..18], &[0xC0, 0x01, 0x02]);
        let s = Sense::invalid_field_in_param_list(3, Some(2)).to_fixed();
        assert_eq!(&s[12..18], &[0x26, 0x00, 0, 0x8A, 0x00, 0x03]);
    }

    #[test]
    fn fixed_with_information() {
        let s = Sense::miscompare(0x1234).to_fixed();
        assert_eq!(s, [0xF0, 0, 0x0E, 0, 0, 0x12, 0x34, 10, 0, 0, 0, 0, 0x1D, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn fixed_information_too_large_clears_valid() {
        let s = Sense::miscompare(0x1_0000_0000).to_fixed();
        assert_eq!(s[0], 0x70);
        assert_eq!(&s[3..7], &[0, 0, 0, 0]);
    }

    #[test]
    fn progress_indication() {
        let s = Sense::new(SenseKey::NotReady, 0x04, 0x04).with_sks(SenseKeySpecific::Progress(0x8000));
        assert_eq!(&s.to_fixed()[15..18], &[0x80, 0x80, 0x00]);
    }

    #[test]
    fn descriptor_plain() {
        assert_eq!(Sense::power_on_reset().to_descriptor(), [0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_with_information_and_sks() {
        let s = Sense::new(SenseKey::IllegalRequest, 0x24, 0)
            .with_information(0x0102_0304_0506_0708)
            .with_sks(SenseKeySpecific::FieldPointer { in_cdb: true, byte: 2, bit: None });
        assert_eq!(
            s.to_descriptor(),
            [
                0x72, 0x05, 0x24, 0x00, 0, 0, 0, 20, // header
                0x00, 0x0A, 0x80, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, // information descriptor
                0x02, 0x06, 0x00, 0x00, 0xC0, 0x00, 0x02, 0x00, // sense key specific descriptor
            ]
        );
    }

    #[test]
    fn copy_aborted_carries_segment_number_and_segment_pointer() {
        let s = Sense::copy_aborted(0x0D, 0x02, 3, 6);
        assert_eq!(s.to_fixed(), [0x70, 0, 0x0A, 0, 0, 0, 0, 10, 0, 0, 0, 3, 0x0D, 0x02, 0, 0xA0, 0, 6]);
        assert_eq!(
            s.to_descriptor(),
            [
                0x72, 0x0A, 0x0D, 0x02, 0, 0, 0, 20, // header
                0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, // command-specific information
                0x02, 0x06, 0, 0, 0xA0, 0, 6, 0, // segment pointer
            ]
        );
    }

    #[test]
    fn codes() {
        assert_eq!(Sense::invalid_opcode().code(), (0x20, 0x00));
        assert_eq!(Sense::parameter_list_length_error().code(), (0x1A, 0x00));
        assert_eq!(Sense::write_protected().key, SenseKey::DataProtect);
        assert_eq!(Sense::medium_removal_prevented().code(), (0x53, 0x02));
        assert_eq!(Sense::capacity_data_changed().code(), (0x2A, 0x09));
        assert_eq!(Sense::bus_device_reset().code(), (0x29, 0x03));
    }
}
