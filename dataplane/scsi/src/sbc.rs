//! SBC-3 commands: READ/WRITE (6/10/12/16), WRITE AND VERIFY and VERIFY (10/12/16), COMPARE AND WRITE, ORWRITE,
//! WRITE ATOMIC (16), PRE-FETCH and SYNCHRONIZE CACHE (10/16), READ CAPACITY (10/16), READ DEFECT DATA (10/12),
//! SANITIZE, START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL.

use std::sync::atomic::Ordering;

use crate::cdb::Cdb;
use crate::sense::{Sense, SenseKey};
use crate::{opcode, Action, ByteCheck, Command, LogicalUnit, Response, SanitizeOp};

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

/// WRITE (6/10/12/16). DPO is accepted and ignored; FUA asks for write-through, and so does a disabled write cache
/// (WCE = 0).
pub(crate) fn write(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Write { offset, len, fua: lu.write_through(rw.fua()) })
}

/// WRITE AND VERIFY (10/12/16) (SBC-3 §5.40): BYTCHK 00b writes through to stable storage (`fua`), which is what
/// the medium verification guarantees for a medium without its own verify; BYTCHK 01b also reads the data back
/// and compares it byte by byte ([`Action::WriteVerify`]); 10b and 11b are reserved.
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
    if rw.bytchk() == 1 {
        return Ok(Action::WriteVerify { offset, len });
    }
    Ok(Action::Write { offset, len, fua: lu.write_through(true) })
}

/// VERIFY (10/12/16) (SBC-3 §5.33): BYTCHK 00b verifies the medium, 01b compares it with the Data-Out buffer, 11b
/// compares one block of Data-Out with every block of the range; 10b is reserved. A VERIFICATION LENGTH of zero is
/// not an error.
pub(crate) fn verify(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    let byte_check = match rw.bytchk() {
        0 => ByteCheck::Medium,
        1 => ByteCheck::Bytes,
        3 => ByteCheck::OneBlock,
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(2))),
    };
    rw.check_max(lu)?;
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::Verify { offset, len, byte_check })
}

/// COMPARE AND WRITE (SBC-3 §5.2): NUMBER OF LOGICAL BLOCKS (byte 13) above MAXIMUM COMPARE AND WRITE LENGTH is an
/// invalid field; zero blocks compare and write nothing. The Data-Out must be exactly twice the blocks (verify
/// data, then write data): another Expected Data Transfer Length means the CDB and the data disagree, which is an
/// invalid field in the CDB too (as LIO answers).
pub(crate) fn compare_and_write(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let flags = c.u8(1);
    if flags >> 5 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(7)));
    }
    let lba = c.u64(2);
    let blocks = u64::from(c.u8(13));
    if blocks > u64::from(lu.pages().limits.max_compare_and_write) {
        return Err(Sense::invalid_field_in_cdb(13, None));
    }
    let (offset, len) = lu.byte_range(lba, blocks)?;
    if u64::from(cmd.expected_len) != 2 * len {
        return Err(Sense::new(SenseKey::IllegalRequest, 0x24, 0x00));
    }
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::CompareAndWrite { offset, len, fua: lu.write_through(flags & 0x08 != 0) })
}

/// ORWRITE (16) (SBC-3 §5.9): ORPROTECT must be zero; the transfer is bounded like an atomic write, since the
/// read-modify-write holds the range exclusively.
pub(crate) fn orwrite(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    rw.check_protect()?;
    rw.check_max(lu)?;
    if rw.blocks > u64::from(lu.pages().limits.max_atomic) {
        return Err(Sense::invalid_field_in_cdb(rw.len_at, None));
    }
    let (offset, len) = lu.byte_range(rw.lba, rw.blocks)?;
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::OrWrite { offset, len, fua: lu.write_through(rw.fua()) })
}

/// WRITE ATOMIC (16) (SBC-4 §5.48): ATOMIC BOUNDARY (bytes 10..11) must be zero (no boundaries: MAXIMUM ATOMIC
/// BOUNDARY SIZE 0); TRANSFER LENGTH (bytes 12..13) at most MAXIMUM ATOMIC TRANSFER LENGTH and a multiple of ATOMIC
/// TRANSFER LENGTH GRANULARITY, the LBA a multiple of ATOMIC ALIGNMENT, else INVALID FIELD IN CDB (checked after
/// the range, so a write past the end is LBA OUT OF RANGE).
pub(crate) fn write_atomic(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let flags = c.u8(1);
    if flags >> 5 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(7)));
    }
    if c.u16(10) != 0 {
        return Err(Sense::invalid_field_in_cdb(10, None));
    }
    let lba = c.u64(2);
    let blocks = u64::from(c.u16(12));
    let limits = lu.pages().limits;
    if blocks > u64::from(limits.max_atomic) {
        return Err(Sense::invalid_field_in_cdb(12, None));
    }
    let (offset, len) = lu.byte_range(lba, blocks)?;
    let granule = u64::from(limits.atomic_granule.max(1));
    if blocks % granule != 0 {
        return Err(Sense::invalid_field_in_cdb(12, None));
    }
    if lba % granule != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    if len == 0 {
        return good(Vec::new());
    }
    Ok(Action::WriteAtomic { offset, len, fua: lu.write_through(flags & 0x08 != 0) })
}

/// READ DEFECT DATA (10) (SBC-3 §5.12) and (12) (SBC-3 §5.13): there are no defects. The header echoes the
/// requested lists as valid (PLISTV/GLISTV) and the requested DEFECT LIST FORMAT with a DEFECT LIST LENGTH of zero,
/// truncated to the allocation length.
pub(crate) fn read_defect_data(_lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let twelve = c.u8(0) == opcode::READ_DEFECT_DATA_12;
    let (flags_at, alloc) = if twelve { (1, c.u32(6) as usize) } else { (2, usize::from(c.u16(7))) };
    let req = c.u8(flags_at);
    let lists = req & 0x18; // REQ_PLIST, REQ_GLIST
    let format = req & 0x07;
    let d = if twelve { vec![0, lists | format, 0, 0, 0, 0, 0, 0] } else { vec![0, lists | format, 0, 0] };
    good(truncate(d, alloc))
}

/// SANITIZE (SBC-3 §5.19), by service action:
/// - OVERWRITE writes the INITIALIZATION PATTERN (1 byte to one logical block long, repeated to fill each block;
///   OWCOUNT passes, inverted between passes with INVERT; TEST must be 00b) over every logical block. The
///   PARAMETER LIST LENGTH must be the pattern length + 4.
/// - BLOCK ERASE (thin provisioned logical units) deallocates every block; PARAMETER LIST LENGTH 0.
/// - EXIT FAILURE MODE leaves the sanitize failure mode a failed operation with AUSE = 1 left the logical unit in
///   (sanitize.rs); PARAMETER LIST LENGTH 0.
///
/// CRYPTOGRAPHIC ERASE is not supported (nothing is stored encrypted). IMMED = 1 completes the command once the
/// operation started, IMMED = 0 when it ended ([`Action::Sanitize`]); either way the operation runs to its end in
/// the background, and other commands get 02/04/1B SANITIZE IN PROGRESS meanwhile. AUSE selects the unrestricted
/// completion mode. Reserved bits and bytes, a wrong PARAMETER LIST LENGTH and every error in the parameter data
/// are INVALID FIELD IN CDB, as libiscsi's sanitize tests expect.
pub(crate) fn sanitize(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    const OVERWRITE: u8 = 0x01;
    const EXIT_FAILURE_MODE: u8 = 0x1F;
    let c = Cdb(cmd.cdb);
    let immed = c.bit(1, 7);
    if c.bit(1, 6) {
        return Err(Sense::invalid_field_in_cdb(1, Some(6)));
    }
    if let Some(at) = (2..7).find(|&i| c.u8(i) != 0) {
        return Err(Sense::invalid_field_in_cdb(at as u16, None));
    }
    let ause = c.bit(1, 5);
    let sa = c.u8(1) & 0x1F;
    let list_len = usize::from(c.u16(7));
    let op = match sa {
        OVERWRITE => {
            let bad_len = Sense::invalid_field_in_cdb(7, None);
            if list_len < 5 || list_len > lu.block_size as usize + 4 {
                return Err(bad_len);
            }
            let data = cmd.data_out.unwrap_or(&[]);
            if data.len() < list_len {
                return Err(Sense::parameter_list_length_error());
            }
            let p = &data[..list_len];
            let pattern_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let passes = p[0] & 0x1F;
            if pattern_len == 0 || pattern_len > lu.block_size as usize || list_len != pattern_len + 4 {
                return Err(bad_len);
            }
            if p[0] & 0x60 != 0 || passes == 0 {
                return Err(Sense::invalid_field_in_cdb(7, None));
            }
            SanitizeOp::Overwrite { pattern: p[4..].to_vec(), invert: p[0] & 0x80 != 0, passes }
        }
        EXIT_FAILURE_MODE => {
            if list_len != 0 {
                return Err(Sense::invalid_field_in_cdb(7, None));
            }
            lu.sanitize.exit_failure_mode()?;
            return good(Vec::new());
        }
        // BLOCK ERASE: the dispatcher let it through only on a thin provisioned logical unit.
        _ => {
            if list_len != 0 {
                return Err(Sense::invalid_field_in_cdb(7, None));
            }
            SanitizeOp::BlockErase
        }
    };
    lu.sanitize.begin(ause)?;
    Ok(Action::Sanitize { op, immed })
}

fn truncate(mut d: Vec<u8>, alloc: usize) -> Vec<u8> {
    d.truncate(alloc);
    d
}

/// Bytes of Data-Out a command's CDB asks for (see [`LogicalUnit::data_out_len`]).
pub(crate) fn data_out_len(lu: &LogicalUnit, c: Cdb<'_>) -> Option<u64> {
    let bs = u64::from(lu.block_size);
    let op = c.u8(0);
    let blocks = || Rw::parse(c).blocks.saturating_mul(bs);
    Some(match op {
        opcode::WRITE_6
        | opcode::WRITE_10
        | opcode::WRITE_12
        | opcode::WRITE_16
        | opcode::WRITE_AND_VERIFY_10
        | opcode::WRITE_AND_VERIFY_12
        | opcode::WRITE_AND_VERIFY_16
        | opcode::ORWRITE_16 => blocks(),
        opcode::VERIFY_10 | opcode::VERIFY_12 | opcode::VERIFY_16 => match Rw::parse(c).bytchk() {
            1 => blocks(),
            3 => bs,
            _ => return None,
        },
        opcode::WRITE_ATOMIC_16 => u64::from(c.u16(12)).saturating_mul(bs),
        opcode::COMPARE_AND_WRITE => u64::from(c.u8(13)).saturating_mul(2 * bs),
        opcode::WRITE_SAME_10 => bs,
        opcode::WRITE_SAME_16 if c.bit(1, 0) => return None,
        opcode::WRITE_SAME_16 => bs,
        opcode::MODE_SELECT_6 => u64::from(c.u8(4)),
        opcode::MODE_SELECT_10 | opcode::UNMAP | opcode::SANITIZE => u64::from(c.u16(7)),
        // PERSISTENT RESERVE OUT (SPC-4 §6.16): PARAMETER LIST LENGTH in bytes 5..8.
        0x5F => u64::from(c.u32(5)),
        // EXTENDED COPY (SPC-4 §6.4): PARAMETER LIST LENGTH in bytes 10..13.
        0x83 => u64::from(c.u32(10)),
        _ => return None,
    })
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
/// With a non-volatile cache (`nv_cache`) there is nothing to flush: the command completes at once.
pub(crate) fn synchronize_cache(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let rw = Rw::parse(Cdb(cmd.cdb));
    lu.byte_range(rw.lba, rw.blocks)?;
    if lu.nv_cache() {
        return good(Vec::new());
    }
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
/// information, LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT from the configured physical block size with LOWEST
/// ALIGNED LOGICAL BLOCK ADDRESS 0 (LBA 0 starts a physical block), LBPME and LBPRZ when thin provisioned.
pub(crate) fn read_capacity_16(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if !c.bit(14, 0) && c.u64(2) != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    }
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&last_lba(lu).to_be_bytes());
    d[8..12].copy_from_slice(&lu.block_size.to_be_bytes());
    d[13] = lu.lbppb_exp & 0x0F; // P_I_EXPONENT 0, LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
    if lu.thin {
        d[14] = 0x80 | 0x40; // LBPME, LBPRZ
    }
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
        if !lu.removable() {
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
    if !start && !no_flush && lu.write_cache_enabled() {
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
    if lu.removable() {
        lu.nexus.lock().state(cmd.nexus).prevent = prevent == 1;
    }
    good(Vec::new())
}
