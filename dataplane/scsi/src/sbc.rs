//! SBC-3 commands: READ/WRITE (6/10/12/16), WRITE AND VERIFY and VERIFY (10/12/16), PRE-FETCH and SYNCHRONIZE
//! CACHE (10/16), READ CAPACITY (10/16), START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL.

use std::sync::atomic::Ordering;

use crate::cdb::Cdb;
use crate::sense::Sense;
use crate::{Action, Command, LogicalUnit, Response};

fn good(data: Vec<u8>) -> Result<Action, Sense> {
    Ok(Action::Respond(Response::good(data)))
}

/// The LBA, transfer length and byte 1 flags of a block command, whatever its CDB size.
#[derive(Debug, Clone, Copy)]
struct Rw {
    lba: u64,
    blocks: u64,
    /// CDB byte 1 (RDPROTECT/WRPROTECT/VRPROTECT, DPO, FUA, BYTCHK ...); 0 for the 6-byte CDBs.
    flags: u8,
    /// Byte offset of the TRANSFER LENGTH field, for the field pointer.
    len_at: u16,
}

impl Rw {
    /// Decodes by CDB length group (SPC-4 §4.2.5.1). READ(6)/WRITE(6): a TRANSFER LENGTH of 0 means 256 blocks
    /// (SBC-3, READ (6) command).
    fn parse(c: Cdb<'_>) -> Self {
        match c.u8(0) >> 5 {
            0 => {
                let n = c.u8(4);
                Self { lba: c.lba21(), blocks: if n == 0 { 256 } else { u64::from(n) }, flags: 0, len_at: 4 }
            }
            1 | 2 => Self { lba: u64::from(c.u32(2)), blocks: u64::from(c.u16(7)), flags: c.u8(1), len_at: 7 },
            5 => Self { lba: u64::from(c.u32(2)), blocks: u64::from(c.u32(6)), flags: c.u8(1), len_at: 6 },
            _ => Self { lba: c.u64(2), blocks: u64::from(c.u32(10)), flags: c.u8(1), len_at: 10 },
        }
    }

    fn fua(&self) -> bool {
        self.flags & 0x08 != 0
    }

    /// BYTCHK (byte 1 bits 2..1) of VERIFY and WRITE AND VERIFY.
    fn bytchk(&self) -> u8 {
        (self.flags >> 1) & 0x03
    }

    /// RDPROTECT/WRPROTECT/VRPROTECT must be zero: the logical unit has no protection information (SBC-3 §4.22).
    fn check_protect(&self) -> Result<(), Sense> {
        if self.flags >> 5 != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        Ok(())
    }

    /// A TRANSFER LENGTH above MAXIMUM TRANSFER LENGTH is an invalid field in the CDB (SBC-3 §6.5.3).
    fn check_max(&self, lu: &LogicalUnit) -> Result<(), Sense> {
        let max = u64::from(lu.max_transfer_blocks);
        if max != 0 && self.blocks > max {
            return Err(Sense::invalid_field_in_cdb(self.len_at, None));
        }
        Ok(())
    }
}

/// READ (6/10/12/16). A TRANSFER LENGTH of zero transfers nothing and is not an error once the LBA is checked.
pub(crate) fn read(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Read { offset, len, fua: rw.fua() })
}

/// WRITE (6/10/12/16). DPO is accepted and ignored; FUA asks for write-through.
pub(crate) fn write(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Write { offset, len, fua: rw.fua() })
}

/// WRITE AND VERIFY (10/12/16): a write through to stable storage (`fua`), which is what the verification step
/// guarantees for a medium without its own verify; BYTCHK 00b and 01b are accepted, other values are reserved.
pub(crate) fn write_and_verify(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    if rw.bytchk() > 1 {
        return Err(Sense::invalid_field_in_cdb(1, Some(2)));
    }
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Write { offset, len, fua: true })
}

/// VERIFY (10/12/16): BYTCHK 00b verifies the medium, 01b compares it with the Data-Out buffer; 10b is reserved
/// and 11b (one block compared against every LBA) is not supported. A VERIFICATION LENGTH of zero is not an error.
pub(crate) fn verify(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    let byte_check = match rw.bytchk() {
        0 => false,
        1 => true,
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(2))),
    };
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Verify { offset, len, byte_check })
}

/// PRE-FETCH (10/16): checks the range and completes with GOOD (there is no cache of our own to load, so never
/// CONDITION MET).
pub(crate) fn pre_fetch(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    lu.byte_range(rw.lba, rw.blocks)?;
    good(Vec::new())
}

/// SYNCHRONIZE CACHE (10/16): checks the range (NUMBER OF LOGICAL BLOCKS 0 = up to the end) and flushes the bdev.
/// IMMED is honoured by completing after the flush, which the standard permits for an immediate request.
pub(crate) fn synchronize_cache(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    lu.byte_range(rw.lba, rw.blocks)?;
    Ok(Action::Flush)
}

/// RETURNED LOGICAL BLOCK ADDRESS: the last LBA (0 for an empty medium).
fn last_lba(lu: &LogicalUnit) -> u64 {
    lu.num_blocks().saturating_sub(1)
}

/// READ CAPACITY (10) (SBC-3 §5.15): last LBA (FFFFFFFFh when it does not fit, telling the initiator to use READ
/// CAPACITY (16)) and block length. PMI = 0 requires LOGICAL BLOCK ADDRESS = 0.
pub(crate) fn read_capacity_10(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if !c.bit(8, 0) && c.u32(2) != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&u32::try_from(last_lba(lu)).unwrap_or(u32::MAX).to_be_bytes());
    d.extend_from_slice(&lu.block_size.to_be_bytes());
    good(d)
}

/// READ CAPACITY (16) (SBC-3 §5.16): 32 bytes of parameter data truncated to the allocation length; no protection
/// information, one logical block per physical block, not thin provisioned.
pub(crate) fn read_capacity_16(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if !c.bit(14, 0) && c.u64(2) != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&last_lba(lu).to_be_bytes());
    d[8..12].copy_from_slice(&lu.block_size.to_be_bytes());
    d.truncate(c.u32(10) as usize);
    good(d)
}

/// START STOP UNIT (SBC-3 §5.25). A POWER CONDITION other than 0h is accepted without effect (power conditions are
/// not modelled) and LOEJ/START are then ignored. With LOEJ set a removable medium is loaded (START = 1, which
/// establishes 06/28/00 for the other nexuses) or ejected (START = 0), unless a nexus prevents removal (05/53/02);
/// a fixed medium cannot be ejected (INVALID FIELD IN CDB). Stopping without NO_FLUSH flushes the write cache.
pub(crate) fn start_stop_unit(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if c.u8(4) >> 4 != 0 {
        return good(Vec::new());
    }
    let no_flush = c.bit(4, 2);
    let loej = c.bit(4, 1);
    let start = c.bit(4, 0);
    if loej {
        if !lu.removable {
            return Err(Sense::invalid_field_in_cdb(4, Some(1)));
        }
        let mut locked = lu.nexus.lock();
        if locked.any_prevent() {
            return Err(Sense::medium_removal_prevented());
        }
        if start {
            if !lu.medium_present.swap(true, Ordering::AcqRel) {
                locked.raise_all(Sense::medium_may_have_changed(), Some(cmd.nexus));
            }
        } else {
            lu.medium_present.store(false, Ordering::Release);
        }
    }
    if !start && !no_flush && lu.write_cache {
        return Ok(Action::Flush);
    }
    good(Vec::new())
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 §5.11): PREVENT 01b makes this nexus prevent removal of a removable medium
/// until it sends PREVENT 00b, the nexus goes away or the logical unit is reset. A fixed medium accepts the command
/// without effect; PREVENT 1xb is obsolete and rejected.
pub(crate) fn prevent_allow(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let prevent = Cdb(cmd.cdb).u8(4) & 0x03;
    if prevent > 1 {
        return Err(Sense::invalid_field_in_cdb(4, Some(1)));
    }
    if lu.removable {
        lu.nexus.lock().state(cmd.nexus).prevent = prevent == 1;
    }
    good(Vec::new())
}
