//! The table of supported commands: operation code, service action, CDB length, attributes, CDB usage data and
//! handler. One function per command; adding a command is adding a row. The same table answers REPORT SUPPORTED
//! OPERATION CODES (SPC-4 §6.35) through [`commands`].

use crate::sense::Sense;
use crate::pr::{sa_in, sa_out};
use crate::xcopy::{
    self, SA_COPY_STATUS, SA_EXTENDED_COPY_LID1, SA_FAILED_SEGMENT_DETAILS, SA_OPERATING_PARAMETERS, SA_RECEIVE_DATA,
};
use crate::{mmc, mode, pr, provisioning, reserve, sbc, spc, Action, Command, LogicalUnit};

/// Operation codes (SPC-4 / SBC-3).
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const SANITIZE: u8 = 0x48;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    /// THIRD-PARTY COPY OUT: EXTENDED COPY (LID1) (SPC-4 §6.4).
    pub const EXTENDED_COPY: u8 = 0x83;
    /// THIRD-PARTY COPY IN: RECEIVE COPY RESULTS (SPC-4 §6.18).
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
    /// MMC-5 (CD-ROM).
    pub const READ_TOC_PMA_ATIP: u8 = 0x43;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
    pub const READ_DISC_INFORMATION: u8 = 0x51;

    /// SERVICE ACTION IN (16) service action READ CAPACITY (16).
    pub const SA_READ_CAPACITY_16: u16 = 0x10;
    /// SERVICE ACTION IN (16) service action GET LBA STATUS.
    pub const SA_GET_LBA_STATUS: u16 = 0x12;
    /// MAINTENANCE IN service action REPORT SUPPORTED OPERATION CODES.
    pub const SA_REPORT_SUPPORTED_OPERATION_CODES: u16 = 0x0C;
    /// MAINTENANCE IN service action REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    pub const SA_REPORT_SUPPORTED_TMFS: u16 = 0x0D;
    /// SANITIZE service action OVERWRITE.
    pub const SA_SANITIZE_OVERWRITE: u16 = 0x01;
    /// SANITIZE service action BLOCK ERASE.
    pub const SA_SANITIZE_BLOCK_ERASE: u16 = 0x02;
    /// SANITIZE service action EXIT FAILURE MODE.
    pub const SA_SANITIZE_EXIT_FAILURE_MODE: u16 = 0x1F;
}

/// Reported without delivering a pending unit attention (SAM-5 §5.14: INQUIRY, REPORT LUNS, REQUEST SENSE).
pub(crate) const UA_EXEMPT: u8 = 1 << 0;
/// Needs the medium: fails with 02/3A/00 MEDIUM NOT PRESENT while a removable medium is ejected.
pub(crate) const NEEDS_MEDIUM: u8 = 1 << 1;
/// Modifies the medium: fails with 07/27/00 WRITE PROTECTED on a read-only logical unit and 07/27/02 while the SWP
/// bit of the Control mode page is set.
pub(crate) const WRITES: u8 = 1 << 2;
/// Only a thin provisioned logical unit supports the command (UNMAP, SANITIZE BLOCK ERASE): 05/20/00 (05/24/00 at
/// the SERVICE ACTION field for a service action) elsewhere, and not reported by REPORT SUPPORTED OPERATION CODES.
pub(crate) const THIN_ONLY: u8 = 1 << 3;

pub(crate) type Handler = fn(&LogicalUnit, &Command<'_>) -> Result<Action, Sense>;

/// One supported command.
#[derive(Clone, Copy)]
pub struct OpInfo {
    /// OPERATION CODE.
    pub opcode: u8,
    /// SERVICE ACTION (CDB byte 1 bits 4..0) for operation codes that select a command by service action.
    pub service_action: Option<u16>,
    /// CDB length in bytes; the CONTROL byte is the last one.
    pub cdb_len: u8,
    /// Command name as in the standards.
    pub name: &'static str,
    /// CDB USAGE DATA (SPC-4 §6.35.3): byte 0 is the operation code, then a mask of the CDB bits the device
    /// server evaluates.
    pub usage: &'static [u8],
    pub(crate) flags: u8,
    pub(crate) handler: Handler,
}

impl std::fmt::Debug for OpInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpInfo")
            .field("opcode", &self.opcode)
            .field("service_action", &self.service_action)
            .field("cdb_len", &self.cdb_len)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OpInfo {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

macro_rules! op {
    ($opcode:expr, $sa:expr, $name:literal, $flags:expr, $handler:path, [$($u:expr),* $(,)?]) => {
        OpInfo {
            opcode: $opcode,
            service_action: $sa,
            cdb_len: [$($u),*].len() as u8,
            name: $name,
            usage: &[$($u),*],
            flags: $flags,
            handler: $handler,
        }
    };
}

use opcode::*;

/// Control byte usage: NACA is evaluated (and rejected).
const CTL: u8 = 0x04;
/// READ/WRITE byte 1: RDPROTECT/WRPROTECT, DPO, FUA, (RARC,) FUA_NV.
const RW1: u8 = 0xFA;
/// VERIFY / WRITE AND VERIFY byte 1: VRPROTECT/WRPROTECT, DPO, BYTCHK.
const V1: u8 = 0xF6;
/// WRITE AND VERIFY byte 1: WRPROTECT, DPO, BYTCHK (01b only; the upper bit of the field is reserved).
const WV1: u8 = 0xF2;
/// WRITE SAME byte 1: WRPROTECT, ANCHOR, UNMAP (and NDOB for the 16-byte CDB).
const WS1: u8 = 0xF8;
/// COMPARE AND WRITE / WRITE ATOMIC / ORWRITE byte 1: protection field, DPO, FUA.
const CW1: u8 = 0xF8;
const MEDIUM_WRITE: u8 = NEEDS_MEDIUM | WRITES;
const FF: u8 = 0xFF;
const GRP: u8 = 0x1F;

/// Sorted by operation code (then service action); rows sharing an operation code are contiguous.
const OPS_TABLE: [OpInfo; 65] = [
    op!(TEST_UNIT_READY, None, "TEST UNIT READY", NEEDS_MEDIUM, spc::test_unit_ready, [TEST_UNIT_READY, 0, 0, 0, 0, CTL]),
    op!(REQUEST_SENSE, None, "REQUEST SENSE", UA_EXEMPT, spc::request_sense, [REQUEST_SENSE, 0x01, 0, 0, FF, CTL]),
    op!(READ_6, None, "READ(6)", NEEDS_MEDIUM, sbc::read, [READ_6, 0x1F, FF, FF, FF, CTL]),
    op!(WRITE_6, None, "WRITE(6)", NEEDS_MEDIUM | WRITES, sbc::write, [WRITE_6, 0x1F, FF, FF, FF, CTL]),
    op!(INQUIRY, None, "INQUIRY", UA_EXEMPT, spc::inquiry, [INQUIRY, 0x03, FF, FF, FF, CTL]),
    op!(MODE_SELECT_6, None, "MODE SELECT(6)", 0, mode::mode_select, [MODE_SELECT_6, 0x11, 0, 0, FF, CTL]),
    op!(RESERVE_6, None, "RESERVE(6)", 0, reserve::reserve, [RESERVE_6, 0x01, 0, 0, 0, CTL]),
    op!(RELEASE_6, None, "RELEASE(6)", 0, reserve::release, [RELEASE_6, 0x01, 0, 0, 0, CTL]),
    op!(MODE_SENSE_6, None, "MODE SENSE(6)", 0, spc::mode_sense, [MODE_SENSE_6, 0x08, FF, FF, FF, CTL]),
    op!(START_STOP_UNIT, None, "START STOP UNIT", 0, sbc::start_stop_unit, [START_STOP_UNIT, 0x01, 0, 0x0F, 0xF7, CTL]),
    op!(PREVENT_ALLOW_MEDIUM_REMOVAL, None, "PREVENT ALLOW MEDIUM REMOVAL", 0, sbc::prevent_allow,
        [PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0x03, CTL]),
    op!(READ_CAPACITY_10, None, "READ CAPACITY(10)", NEEDS_MEDIUM, sbc::read_capacity_10,
        [READ_CAPACITY_10, 0, FF, FF, FF, FF, 0, 0, 0x01, CTL]),
    op!(READ_10, None, "READ(10)", NEEDS_MEDIUM, sbc::read, [READ_10, RW1, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(WRITE_10, None, "WRITE(10)", NEEDS_MEDIUM | WRITES, sbc::write, [WRITE_10, RW1, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(WRITE_AND_VERIFY_10, None, "WRITE AND VERIFY(10)", NEEDS_MEDIUM | WRITES, sbc::write_and_verify,
        [WRITE_AND_VERIFY_10, WV1, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(VERIFY_10, None, "VERIFY(10)", NEEDS_MEDIUM, sbc::verify, [VERIFY_10, V1, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(PRE_FETCH_10, None, "PRE-FETCH(10)", NEEDS_MEDIUM, sbc::pre_fetch,
        [PRE_FETCH_10, 0x02, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(SYNCHRONIZE_CACHE_10, None, "SYNCHRONIZE CACHE(10)", NEEDS_MEDIUM, sbc::synchronize_cache,
        [SYNCHRONIZE_CACHE_10, 0x06, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(READ_DEFECT_DATA_10, None, "READ DEFECT DATA(10)", NEEDS_MEDIUM, sbc::read_defect_data,
        [READ_DEFECT_DATA_10, 0, 0x1F, 0, 0, 0, 0, FF, FF, CTL]),
    op!(WRITE_SAME_10, None, "WRITE SAME(10)", MEDIUM_WRITE, provisioning::write_same,
        [WRITE_SAME_10, WS1, FF, FF, FF, FF, GRP, FF, FF, CTL]),
    op!(UNMAP, None, "UNMAP", MEDIUM_WRITE | THIN_ONLY, provisioning::unmap, [UNMAP, 0x01, 0, 0, 0, 0, GRP, FF, FF, CTL]),
    op!(SANITIZE, Some(SA_SANITIZE_OVERWRITE), "SANITIZE OVERWRITE", MEDIUM_WRITE, sbc::sanitize,
        [SANITIZE, 0x9F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(SANITIZE, Some(SA_SANITIZE_BLOCK_ERASE), "SANITIZE BLOCK ERASE", MEDIUM_WRITE | THIN_ONLY, sbc::sanitize,
        [SANITIZE, 0x9F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(SANITIZE, Some(SA_SANITIZE_EXIT_FAILURE_MODE), "SANITIZE EXIT FAILURE MODE", NEEDS_MEDIUM, sbc::sanitize,
        [SANITIZE, 0x9F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(MODE_SELECT_10, None, "MODE SELECT(10)", 0, mode::mode_select,
        [MODE_SELECT_10, 0x11, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(RESERVE_10, None, "RESERVE(10)", 0, reserve::reserve, [RESERVE_10, 0x12, 0, 0, 0, 0, 0, 0, 0, CTL]),
    op!(RELEASE_10, None, "RELEASE(10)", 0, reserve::release, [RELEASE_10, 0x12, 0, 0, 0, 0, 0, 0, 0, CTL]),
    op!(MODE_SENSE_10, None, "MODE SENSE(10)", 0, spc::mode_sense, [MODE_SENSE_10, 0x18, FF, FF, 0, 0, 0, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_IN, Some(sa_in::READ_KEYS), "PERSISTENT RESERVE IN", 0, pr::persistent_reserve_in,
        [PERSISTENT_RESERVE_IN, 0x1F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_IN, Some(sa_in::READ_RESERVATION), "PERSISTENT RESERVE IN", 0, pr::persistent_reserve_in,
        [PERSISTENT_RESERVE_IN, 0x1F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_IN, Some(sa_in::REPORT_CAPABILITIES), "PERSISTENT RESERVE IN", 0, pr::persistent_reserve_in,
        [PERSISTENT_RESERVE_IN, 0x1F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_IN, Some(sa_in::READ_FULL_STATUS), "PERSISTENT RESERVE IN", 0, pr::persistent_reserve_in,
        [PERSISTENT_RESERVE_IN, 0x1F, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::REGISTER), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::RESERVE), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::RELEASE), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::CLEAR), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::PREEMPT), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::PREEMPT_AND_ABORT), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::REGISTER_AND_IGNORE_EXISTING_KEY), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(PERSISTENT_RESERVE_OUT, Some(sa_out::REGISTER_AND_MOVE), "PERSISTENT RESERVE OUT", 0, pr::persistent_reserve_out,
        [PERSISTENT_RESERVE_OUT, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL]),
    op!(EXTENDED_COPY, Some(SA_EXTENDED_COPY_LID1), "EXTENDED COPY(LID1)", 0, xcopy::extended_copy,
        [EXTENDED_COPY, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(RECEIVE_COPY_RESULTS, Some(SA_COPY_STATUS), "RECEIVE COPY STATUS(LID1)", 0, xcopy::receive_copy_results,
        [RECEIVE_COPY_RESULTS, 0x1F, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(RECEIVE_COPY_RESULTS, Some(SA_RECEIVE_DATA), "RECEIVE COPY DATA(LID1)", 0, xcopy::receive_copy_results,
        [RECEIVE_COPY_RESULTS, 0x1F, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(RECEIVE_COPY_RESULTS, Some(SA_OPERATING_PARAMETERS), "RECEIVE COPY OPERATING PARAMETERS", 0,
        xcopy::receive_copy_results, [RECEIVE_COPY_RESULTS, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(RECEIVE_COPY_RESULTS, Some(SA_FAILED_SEGMENT_DETAILS), "RECEIVE COPY FAILURE DETAILS(LID1)", 0,
        xcopy::receive_copy_results, [RECEIVE_COPY_RESULTS, 0x1F, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(READ_16, None, "READ(16)", NEEDS_MEDIUM, sbc::read,
        [READ_16, RW1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(COMPARE_AND_WRITE, None, "COMPARE AND WRITE", MEDIUM_WRITE, sbc::compare_and_write,
        [COMPARE_AND_WRITE, CW1, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, GRP, CTL]),
    op!(WRITE_16, None, "WRITE(16)", NEEDS_MEDIUM | WRITES, sbc::write,
        [WRITE_16, RW1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(ORWRITE_16, None, "ORWRITE(16)", MEDIUM_WRITE, sbc::orwrite,
        [ORWRITE_16, RW1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(WRITE_AND_VERIFY_16, None, "WRITE AND VERIFY(16)", NEEDS_MEDIUM | WRITES, sbc::write_and_verify,
        [WRITE_AND_VERIFY_16, WV1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(VERIFY_16, None, "VERIFY(16)", NEEDS_MEDIUM, sbc::verify,
        [VERIFY_16, V1, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(PRE_FETCH_16, None, "PRE-FETCH(16)", NEEDS_MEDIUM, sbc::pre_fetch,
        [PRE_FETCH_16, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(SYNCHRONIZE_CACHE_16, None, "SYNCHRONIZE CACHE(16)", NEEDS_MEDIUM, sbc::synchronize_cache,
        [SYNCHRONIZE_CACHE_16, 0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(WRITE_SAME_16, None, "WRITE SAME(16)", MEDIUM_WRITE, provisioning::write_same,
        [WRITE_SAME_16, WS1 | 0x01, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(WRITE_ATOMIC_16, None, "WRITE ATOMIC(16)", MEDIUM_WRITE, sbc::write_atomic,
        [WRITE_ATOMIC_16, CW1, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, FF, FF, GRP, CTL]),
    op!(SERVICE_ACTION_IN_16, Some(SA_READ_CAPACITY_16), "READ CAPACITY(16)", NEEDS_MEDIUM, sbc::read_capacity_16,
        [SERVICE_ACTION_IN_16, 0x1F, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, CTL]),
    op!(SERVICE_ACTION_IN_16, Some(SA_GET_LBA_STATUS), "GET LBA STATUS", NEEDS_MEDIUM, provisioning::get_lba_status,
        [SERVICE_ACTION_IN_16, 0x1F, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, CTL]),
    op!(REPORT_LUNS, None, "REPORT LUNS", UA_EXEMPT, spc::report_luns, [REPORT_LUNS, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(MAINTENANCE_IN, Some(SA_REPORT_SUPPORTED_OPERATION_CODES), "REPORT SUPPORTED OPERATION CODES", 0,
        spc::report_supported_operation_codes, [MAINTENANCE_IN, 0x1F, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, CTL]),
    op!(MAINTENANCE_IN, Some(SA_REPORT_SUPPORTED_TMFS), "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", 0,
        spc::report_supported_tmfs, [MAINTENANCE_IN, 0x1F, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(READ_12, None, "READ(12)", NEEDS_MEDIUM, sbc::read, [READ_12, RW1, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(WRITE_12, None, "WRITE(12)", NEEDS_MEDIUM | WRITES, sbc::write,
        [WRITE_12, RW1, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(WRITE_AND_VERIFY_12, None, "WRITE AND VERIFY(12)", NEEDS_MEDIUM | WRITES, sbc::write_and_verify,
        [WRITE_AND_VERIFY_12, WV1, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(VERIFY_12, None, "VERIFY(12)", NEEDS_MEDIUM, sbc::verify, [VERIFY_12, V1, FF, FF, FF, FF, FF, FF, FF, FF, GRP, CTL]),
    op!(READ_DEFECT_DATA_12, None, "READ DEFECT DATA(12)", NEEDS_MEDIUM, sbc::read_defect_data,
        [READ_DEFECT_DATA_12, 0x1F, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
];

static OPS: [OpInfo; OPS_TABLE.len()] = OPS_TABLE;

/// The commands of a CD-ROM (MMC-5), sorted like `OPS_TABLE`.
const MMC_TABLE: [OpInfo; 17] = [
    op!(TEST_UNIT_READY, None, "TEST UNIT READY", NEEDS_MEDIUM, spc::test_unit_ready, [TEST_UNIT_READY, 0, 0, 0, 0, CTL]),
    op!(REQUEST_SENSE, None, "REQUEST SENSE", UA_EXEMPT, spc::request_sense, [REQUEST_SENSE, 0x01, 0, 0, FF, CTL]),
    op!(INQUIRY, None, "INQUIRY", UA_EXEMPT, spc::inquiry, [INQUIRY, 0x03, FF, FF, FF, CTL]),
    op!(MODE_SENSE_6, None, "MODE SENSE(6)", 0, mmc::mode_sense, [MODE_SENSE_6, 0x08, FF, FF, FF, CTL]),
    op!(START_STOP_UNIT, None, "START STOP UNIT", 0, mmc::start_stop_unit, [START_STOP_UNIT, 0x01, 0, 0, 0xF3, CTL]),
    op!(PREVENT_ALLOW_MEDIUM_REMOVAL, None, "PREVENT ALLOW MEDIUM REMOVAL", 0, sbc::prevent_allow,
        [PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0x03, CTL]),
    op!(READ_CAPACITY_10, None, "READ CAPACITY", NEEDS_MEDIUM, sbc::read_capacity_10,
        [READ_CAPACITY_10, 0, FF, FF, FF, FF, 0, 0, 0x01, CTL]),
    op!(READ_10, None, "READ(10)", NEEDS_MEDIUM, sbc::read, [READ_10, 0x18, FF, FF, FF, FF, 0, FF, FF, CTL]),
    op!(READ_TOC_PMA_ATIP, None, "READ TOC/PMA/ATIP", NEEDS_MEDIUM, mmc::read_toc,
        [READ_TOC_PMA_ATIP, 0x02, 0x0F, 0, 0, 0, FF, FF, FF, CTL]),
    // GET CONFIGURATION and GET EVENT STATUS NOTIFICATION report no unit attention (MMC-5 §4.1.6.1).
    op!(GET_CONFIGURATION, None, "GET CONFIGURATION", UA_EXEMPT, mmc::get_configuration,
        [GET_CONFIGURATION, 0x03, FF, FF, 0, 0, 0, FF, FF, CTL]),
    op!(GET_EVENT_STATUS_NOTIFICATION, None, "GET EVENT STATUS NOTIFICATION", UA_EXEMPT, mmc::get_event_status,
        [GET_EVENT_STATUS_NOTIFICATION, 0x01, 0, 0, FF, 0, 0, FF, FF, CTL]),
    op!(READ_DISC_INFORMATION, None, "READ DISC INFORMATION", NEEDS_MEDIUM, mmc::read_disc_information,
        [READ_DISC_INFORMATION, 0x07, 0, 0, 0, 0, 0, FF, FF, CTL]),
    op!(MODE_SENSE_10, None, "MODE SENSE(10)", 0, mmc::mode_sense, [MODE_SENSE_10, 0x08, FF, FF, 0, 0, 0, FF, FF, CTL]),
    op!(REPORT_LUNS, None, "REPORT LUNS", UA_EXEMPT, spc::report_luns, [REPORT_LUNS, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(MAINTENANCE_IN, Some(SA_REPORT_SUPPORTED_OPERATION_CODES), "REPORT SUPPORTED OPERATION CODES", 0,
        spc::report_supported_operation_codes, [MAINTENANCE_IN, 0x1F, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, CTL]),
    op!(MAINTENANCE_IN, Some(SA_REPORT_SUPPORTED_TMFS), "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", 0,
        spc::report_supported_tmfs, [MAINTENANCE_IN, 0x1F, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, CTL]),
    op!(READ_12, None, "READ(12)", NEEDS_MEDIUM, sbc::read, [READ_12, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, CTL]),
];

static MMC_OPS: [OpInfo; MMC_TABLE.len()] = MMC_TABLE;

const NONE: u8 = u8::MAX;

/// Operation code -> index of its first row in `table`, or `NONE`.
const fn build_index(table: &[OpInfo]) -> [u8; 256] {
    let mut idx = [NONE; 256];
    let mut i = table.len();
    while i > 0 {
        i -= 1;
        idx[table[i].opcode as usize] = i as u8;
    }
    idx
}

const INDEX: [u8; 256] = build_index(&OPS_TABLE);
const MMC_INDEX: [u8; 256] = build_index(&MMC_TABLE);

/// A command table with its operation code index.
pub(crate) struct Table {
    pub(crate) ops: &'static [OpInfo],
    index: &'static [u8; 256],
}

/// The commands of a direct access block device.
pub(crate) static DISK: Table = Table { ops: &OPS, index: &INDEX };
/// The commands of a CD-ROM.
pub(crate) static MMC: Table = Table { ops: &MMC_OPS, index: &MMC_INDEX };

/// Every supported command of a direct access block device, in operation code order (for REPORT SUPPORTED
/// OPERATION CODES).
pub fn commands() -> &'static [OpInfo] {
    &OPS
}

/// The result of looking a CDB up in the table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    Found(&'static OpInfo),
    /// Unsupported operation code: 05/20/00.
    BadOpcode,
    /// Supported operation code, unsupported service action: 05/24/00 pointing at the SERVICE ACTION field.
    BadServiceAction,
}

#[cfg(test)]
pub(crate) fn lookup(cdb: &[u8]) -> Lookup {
    lookup_in(&DISK, cdb)
}

pub(crate) fn lookup_in(table: &Table, cdb: &[u8]) -> Lookup {
    let Some(&opcode) = cdb.first() else {
        return Lookup::BadOpcode;
    };
    let first = table.index[usize::from(opcode)];
    if first == NONE {
        return Lookup::BadOpcode;
    }
    let sa = u16::from(cdb.get(1).copied().unwrap_or(0) & 0x1F);
    for info in table.ops.iter().skip(usize::from(first)).take_while(|i| i.opcode == opcode) {
        match info.service_action {
            None => return Lookup::Found(info),
            Some(s) if s == sa => return Lookup::Found(info),
            Some(_) => {}
        }
    }
    Lookup::BadServiceAction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for ops in [&OPS[..], &MMC_OPS[..]] {
            check_table(ops);
        }
    }

    fn check_table(ops: &[OpInfo]) {
        for w in ops.windows(2) {
            assert!(
                (w[0].opcode, w[0].service_action) < (w[1].opcode, w[1].service_action),
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for op in ops {
            assert_eq!(op.usage.first(), Some(&op.opcode), "{}", op.name);
            assert!(matches!(op.cdb_len, 6 | 10 | 12 | 16), "{}", op.name);
            // Every CDB's control byte evaluates NACA.
            assert_eq!(op.usage.last(), Some(&CTL), "{}", op.name);
            // A row with a service action never shares its opcode with a row without one.
            let same: Vec<_> = ops.iter().filter(|o| o.opcode == op.opcode).collect();
            assert!(same.iter().all(|o| o.service_action.is_some() == op.service_action.is_some()));
        }
        // The operation code length group (SPC-4 §4.2.5.1) matches the CDB length.
        for op in ops {
            let expect = match op.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                _ => 0,
            };
            assert_eq!(op.cdb_len, expect, "{}", op.name);
        }
    }

    #[test]
    fn lookup_finds_commands_and_service_actions() {
        assert!(matches!(lookup(&[0x28; 10]), Lookup::Found(i) if i.name == "READ(10)"));
        assert!(matches!(lookup(&[0x9E, 0x10]), Lookup::Found(i) if i.name == "READ CAPACITY(16)"));
        assert!(matches!(lookup(&[0x9E, 0xF0]), Lookup::Found(i) if i.name == "READ CAPACITY(16)"));
        assert!(matches!(lookup(&[0x9E, 0x12]), Lookup::Found(i) if i.name == "GET LBA STATUS"));
        assert!(matches!(lookup(&[0x9E, 0x13]), Lookup::BadServiceAction));
        assert!(matches!(lookup(&[0xA3, 0x0C]), Lookup::Found(i) if i.name == "REPORT SUPPORTED OPERATION CODES"));
        assert!(matches!(lookup(&[0xA3, 0x05]), Lookup::BadServiceAction));
        assert!(matches!(lookup(&[0xFF]), Lookup::BadOpcode));
        assert!(matches!(lookup(&[]), Lookup::BadOpcode));
        assert!(matches!(lookup(&[0x9E]), Lookup::BadServiceAction));
        for op in commands() {
            let mut cdb = [0u8; 16];
            cdb[0] = op.opcode;
            if let Some(sa) = op.service_action {
                cdb[1] = sa as u8;
            }
            assert!(matches!(lookup(&cdb), Lookup::Found(i) if i.name == op.name));
        }
    }
}
