//! The I/O-free SCSI target core of polltgt (SAM-5, SPC-4, SBC-3).
//!
//! A [`LogicalUnit`] turns a CDB into either an immediate [`Response`] (emulated commands, and every error as a
//! CHECK CONDITION with sense data) or a block operation for the driver to run against a bdev ([`Action::Read`],
//! [`Action::Write`], [`Action::Verify`], [`Action::Flush`]); the driver reports the outcome back through
//! [`LogicalUnit::io_done`] and sends the resulting status. Nothing here touches devices, sockets, clocks or
//! threads. Target-level commands that do not belong to one logical unit are the free functions [`report_luns`] and
//! [`missing_lun`].
//!
//! Unit attention conditions (SAM-5 §5.14) are tracked per I_T nexus ([`NexusId`]): a nexus the logical unit has
//! not seen before first gets 06/29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED. The READ/WRITE path of
//! [`LogicalUnit::execute`] takes no lock: capacity and medium state are atomics, and the per-nexus table is only
//! locked on first contact or when some unit attention is pending.
#![forbid(unsafe_code)]

mod cdb;
mod inquiry;
mod lu;
mod lun;
mod mmc;
mod mode;
mod nexus;
mod ops;
mod pr;
mod pr_persist;
mod provisioning;
mod reconfig;
mod reserve;
mod sanitize;
mod sbc;
mod sense;
mod spc;
mod transport_id;
mod xcopy;

pub use lu::{LogicalUnit, LuConfig, LuConfigError};
pub use mmc::MediumChangeError;
pub use mode::TST_PER_NEXUS;
pub use provisioning::{LbaExtent, ProvisioningStatus};
pub use reconfig::{mark_write_protected, Reconfigured};
pub use sanitize::SanitizePhase;
pub use lun::{decode_lun, encode_lun, lun_from_raw, lun_to_raw, missing_lun, report_luns};
pub use ops::{commands, opcode, OpInfo};
pub use pr::{PrSnapshot, PrType};
pub use pr_persist::PrStateError;
pub use sense::{Sense, SenseKey, SenseKeySpecific, FIXED_SENSE_LEN};
pub use transport_id::{NexusIdentity, TargetPort, TransportId, TransportIdError};
pub use xcopy::{CopyFailure, CopyJob, CopyOutcome, CopyTarget, CopyTargetRef, SegmentIo};

/// The peripheral device type of a logical unit (SPC-4 §6.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceType {
    /// 00h: direct access block device (SBC-3).
    #[default]
    Disk,
    /// 05h: CD/DVD device (MMC), read-only with a removable medium.
    Cdrom,
}

/// One I_T nexus (for iSCSI: one session), named by the driver. A logical unit keeps unit attentions and the
/// PREVENT MEDIUM REMOVAL state per nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NexusId(pub u64);

/// A SCSI command as the transport delivers it.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// The I_T nexus the command arrived on.
    pub nexus: NexusId,
    /// The LUN number it was addressed to (already decoded from the SAM-5 LUN structure).
    pub lun: u64,
    /// The CDB. May be longer than the command's CDB length (iSCSI carries 16 bytes); the extra bytes are ignored.
    pub cdb: &'a [u8],
    /// The initiator's Expected Data Transfer Length. Residuals are the transport's job; kept for commands whose
    /// semantics depend on it.
    pub expected_len: u32,
    /// A parameter list sent with the command (MODE SELECT, PERSISTENT RESERVE OUT, UNMAP, ...), not WRITE data.
    pub data_out: Option<&'a [u8]>,
}

/// What the driver has to do with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Emulated (or rejected): complete now with this response.
    Respond(Response),
    /// Read `len` bytes at byte `offset` from the bdev and send them as Data-In. `fua`: FUA was set (read from the
    /// medium, not a cache). Then call [`LogicalUnit::io_done`].
    Read { offset: u64, len: u64, fua: bool },
    /// Write `len` bytes of the command's Data-Out to the bdev at byte `offset`; `fua`: write through to stable
    /// storage before completing. Then call [`LogicalUnit::io_done`].
    Write { offset: u64, len: u64, fua: bool },
    /// Verify `len` bytes at `offset` (VERIFY, SBC-3 §5.33), then call [`LogicalUnit::io_done`].
    Verify { offset: u64, len: u64, byte_check: ByteCheck },
    /// Flush the bdev's volatile cache, then call [`LogicalUnit::io_done`].
    Flush,
    /// WRITE AND VERIFY with BYTCHK = 1 (SBC-3 §5.40): write the `len` bytes of Data-Out at `offset` through to
    /// stable storage, read them back and compare; a difference is [`IoResult::Miscompare`].
    WriteVerify { offset: u64, len: u64 },
    /// WRITE SAME (SBC-3 §5.41/5.42): `len` bytes at `offset` get the one logical block of Data-Out (all zeros when
    /// `ndob`, no Data-Out then), or are deallocated when `unmap` (thin provisioned logical unit, UNMAP bit set;
    /// unmapped blocks read as zeros, LBPRZ = 1). `fua`: write through.
    WriteSame { offset: u64, len: u64, unmap: bool, ndob: bool, fua: bool },
    /// UNMAP (SBC-3 §5.28): deallocate each `(offset, len)` byte range, in order; they are within the capacity and
    /// not empty.
    Unmap { ranges: Vec<(u64, u64)> },
    /// GET LBA STATUS (SBC-3 §5.7): find the provisioning status of the bytes from `offset` on (at most `len`),
    /// as at most `max_extents` runs, and answer with [`LogicalUnit::lba_status_done`].
    GetLbaStatus { offset: u64, len: u64, max_extents: u32 },
    /// COMPARE AND WRITE (SBC-3 §5.2): the Data-Out holds `len` bytes of verify data followed by `len` bytes of write
    /// data. Atomically with respect to every other command on the range: read `len` bytes at `offset`, compare
    /// with the verify data ([`IoResult::Miscompare`] with the offset of the first differing byte, nothing
    /// written), else write the write data (`fua`: write through).
    CompareAndWrite { offset: u64, len: u64, fua: bool },
    /// ORWRITE (SBC-3 §5.9): atomically read `len` bytes at `offset`, OR the Data-Out into them and write the result.
    OrWrite { offset: u64, len: u64, fua: bool },
    /// WRITE ATOMIC (SBC-4 §5.48): write the Data-Out like [`Action::Write`], but atomically with respect to every
    /// other command on the range.
    WriteAtomic { offset: u64, len: u64, fua: bool },
    /// SANITIZE (SBC-3 §5.19): the logical unit is busy with the sanitize operation `op` from now on. Take the
    /// whole medium, call [`LogicalUnit::sanitize_started`], run it to its end whatever happens to the command
    /// (reporting [`LogicalUnit::sanitize_progress`]) and end it with [`LogicalUnit::sanitize_done`]. With `immed`
    /// the command completes with GOOD once the operation started; otherwise with what `sanitize_done` returns. A
    /// command abandoned before the operation started ends with [`LogicalUnit::io_done`] as usual.
    Sanitize { op: SanitizeOp, immed: bool },
    /// EXTENDED COPY (SPC-4 §6.4): find the copy targets ([`LogicalUnit::is_copy_target`], [`CopyJob::
    /// check_targets`]), copy every segment ([`CopyJob::segment`]) with reads and writes of the copy targets'
    /// bdevs, then call [`LogicalUnit::copy_done`] (not `io_done`).
    ExtendedCopy(Box<CopyJob>),
}

impl Action {
    /// Whether the block operation changes the medium (a LUN mapped read-only refuses it with 07/27/00).
    pub fn writes_medium(&self) -> bool {
        match self {
            // EXTENDED COPY writes its destination copy targets, which it checks itself (CopyJob::segment).
            Action::Respond(_)
            | Action::Read { .. }
            | Action::Verify { .. }
            | Action::Flush
            | Action::GetLbaStatus { .. }
            | Action::ExtendedCopy(_) => false,
            Action::Write { .. }
            | Action::WriteVerify { .. }
            | Action::WriteSame { .. }
            | Action::Unmap { .. }
            | Action::CompareAndWrite { .. }
            | Action::OrWrite { .. }
            | Action::WriteAtomic { .. }
            | Action::Sanitize { .. } => true,
        }
    }
}

/// What VERIFY compares (its BYTCHK field, SBC-3 table 116).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteCheck {
    /// BYTCHK 00b: check that the range is readable (a read whose data are discarded); no Data-Out.
    Medium,
    /// BYTCHK 01b: compare `len` bytes of Data-Out with the medium; report the first difference as
    /// [`IoResult::Miscompare`].
    Bytes,
    /// BYTCHK 11b: compare one logical block of Data-Out with every logical block of the range; the miscompare
    /// offset is counted from the start of the range.
    OneBlock,
}

/// The operation of a SANITIZE command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanitizeOp {
    /// OVERWRITE: write `pattern` (repeated, at most one block long; inverted between passes when `invert`)
    /// over the whole medium, `passes` times.
    Overwrite { pattern: Vec<u8>, invert: bool, passes: u8 },
    /// BLOCK ERASE: deallocate every logical block (a thin provisioned logical unit).
    BlockErase,
}

/// The outcome of a block operation, as the driver reports it to [`LogicalUnit::io_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoResult {
    /// Done.
    Ok,
    /// The bdev refused the range (the capacity shrank under the command).
    OutOfRange,
    /// The medium failed (EIO): unrecovered read error or write error.
    MediumError,
    /// BYTCHK verification found a difference at byte `offset` of the Data-Out buffer.
    Miscompare { offset: u64 },
    /// The bdev refused to write (read-only backing store).
    WriteProtected,
    /// The backing store ran out of space (ENOSPC on a sparse file or thin device).
    NoSpace,
    /// Any other failure.
    Other,
}

/// The final answer for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// SCSI status.
    pub status: Status,
    /// Sense data (with CHECK CONDITION).
    pub sense: Option<Vec<u8>>,
    /// Data-In for emulated commands (already truncated to the allocation length). Empty for [`Action::Read`]:
    /// its data are the bdev buffer.
    pub data: Vec<u8>,
}

impl Response {
    /// GOOD status with Data-In `data`.
    pub fn good(data: Vec<u8>) -> Self {
        Self { status: Status::Good, sense: None, data }
    }

    /// CHECK CONDITION with fixed-format sense data (the Control mode page reports D_SENSE = 0).
    pub fn check_condition(sense: &Sense) -> Self {
        Self { status: Status::CheckCondition, sense: Some(sense.to_fixed()), data: Vec::new() }
    }

    /// A status without sense data or Data-In (BUSY, TASK SET FULL, RESERVATION CONFLICT, ...).
    pub fn status(status: Status) -> Self {
        Self { status, sense: None, data: Vec::new() }
    }
}

/// SCSI status codes (SAM-5 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    AcaActive = 0x30,
    TaskAborted = 0x40,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mmc;
#[cfg(test)]
mod tests_sbc;
#[cfg(test)]
mod tests_xcopy;
