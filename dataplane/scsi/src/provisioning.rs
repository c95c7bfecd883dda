//! Logical block provisioning (SBC-3 §4.7): WRITE SAME (10/16) with and without the UNMAP bit, UNMAP and GET LBA
//! STATUS.
//!
//! A thin provisioned logical unit (LBPME = 1) deallocates blocks on UNMAP and on WRITE SAME with UNMAP = 1, and
//! reads deallocated blocks as zeros (LBPRZ = 1). There is no anchored state (ANC_SUP = 0), so ANCHOR = 1 is an
//! invalid field. A fully provisioned logical unit supports WRITE SAME and GET LBA STATUS (every block mapped) but
//! not UNMAP, and rejects the UNMAP bit, as its Logical Block Provisioning VPD page says (LBPU = LBPWS = LBPWS10 = 0).

use crate::cdb::Cdb;
use crate::inquiry::MAX_UNMAP_DESCRIPTORS;
use crate::sense::{Sense, SenseKey};
use crate::{opcode, Action, Command, LogicalUnit, Response};

/// The PROVISIONING STATUS of a run of logical blocks (SBC-3 §5.8.2, table 35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningStatus {
    /// 0h: mapped (or unknown).
    Mapped,
    /// 1h: deallocated.
    Deallocated,
    /// 2h: anchored.
    Anchored,
}

/// A run of logical blocks with one provisioning status, as the driver learned it from the bdev.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaExtent {
    /// First logical block.
    pub lba: u64,
    /// Number of logical blocks (at least one).
    pub blocks: u64,
    /// Their status.
    pub status: ProvisioningStatus,
}

/// Most descriptors one GET LBA STATUS returns.
const MAX_LBA_STATUS_DESCRIPTORS: u32 = 256;

/// WRITE SAME (10) (SBC-3 §5.42) and WRITE SAME (16) (SBC-3 §5.43). Byte 1: WRPROTECT (7..5), ANCHOR (4), UNMAP
/// (3), NDOB (0, WRITE SAME (16) only, SBC-4: no Data-Out, the block is all zeros). A NUMBER OF LOGICAL BLOCKS of
/// zero writes from the LBA to the end of the medium (WSNZ = 0, no MAXIMUM WRITE SAME LENGTH). The UNMAP bit on a
/// fully provisioned logical unit, and ANCHOR (no anchored state), are invalid fields in the CDB.
pub(crate) fn write_same(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let sixteen = c.u8(0) == opcode::WRITE_SAME_16;
    let flags = c.u8(1);
    if flags >> 5 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(7)));
    }
    let anchor = flags & 0x10 != 0;
    let unmap = flags & 0x08 != 0;
    let ndob = sixteen && flags & 0x01 != 0;
    if anchor {
        return Err(Sense::invalid_field_in_cdb(1, Some(4)));
    }
    if unmap && !lu.thin {
        return Err(Sense::invalid_field_in_cdb(1, Some(3)));
    }
    let (lba, blocks) = if sixteen { (c.u64(2), u64::from(c.u32(10))) } else { (u64::from(c.u32(2)), u64::from(c.u16(7))) };
    let capacity = lu.num_blocks();
    if lba > capacity || (blocks == 0 && lba == capacity) {
        return Err(Sense::lba_out_of_range());
    }
    let blocks = if blocks == 0 { capacity - lba } else { blocks };
    let (offset, len) = lu.byte_range(lba, blocks)?;
    if !ndob && cmd.expected_len != lu.block_size {
        // The Data-Out Buffer is exactly one logical block (SBC-3 §5.42): a transfer of any other size cannot carry
        // what the CDB describes (what LIO and SCST answer too).
        return Err(Sense::new(SenseKey::IllegalRequest, 0x24, 0x00));
    }
    Ok(Action::WriteSame { offset, len, unmap, ndob, fua: lu.write_through(false) })
}

/// UNMAP (SBC-3 §5.28): the parameter list is an 8-byte header (UNMAP DATA LENGTH, UNMAP BLOCK DESCRIPTOR DATA
/// LENGTH) and 16-byte block descriptors (LBA, NUMBER OF LOGICAL BLOCKS). A PARAMETER LIST LENGTH of zero is not
/// an error; one between 1 and 7, or a Data-Out shorter than it, is a PARAMETER LIST LENGTH ERROR; descriptors
/// are taken as far as both the descriptor data length and the parameter list reach (an incomplete last one is
/// ignored); more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT is an INVALID FIELD IN PARAMETER LIST; a
/// descriptor that reaches past the capacity is LBA OUT OF RANGE (and nothing is unmapped). ANCHOR is an invalid
/// field (no anchored state). A fully provisioned logical unit does not support the command.
pub(crate) fn unmap(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if !lu.thin {
        return Err(Sense::invalid_opcode());
    }
    if c.bit(1, 0) {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    let list_len = usize::from(c.u16(7));
    if list_len == 0 {
        return Ok(Action::Respond(Response::good(Vec::new())));
    }
    if list_len < 8 {
        return Err(Sense::parameter_list_length_error());
    }
    let data = cmd.data_out.unwrap_or(&[]);
    if data.len() < list_len {
        return Err(Sense::parameter_list_length_error());
    }
    let list = &data[..list_len];
    let desc_len = usize::from(u16::from_be_bytes([list[2], list[3]])).min(list_len - 8);
    let count = desc_len / 16;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_field_in_param_list(2, None));
    }
    let mut ranges = Vec::with_capacity(count);
    for d in list[8..8 + count * 16].chunks_exact(16) {
        let lba = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let blocks = u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
        let (offset, len) = lu.byte_range(lba, blocks)?;
        if len != 0 {
            ranges.push((offset, len));
        }
    }
    if ranges.is_empty() {
        return Ok(Action::Respond(Response::good(Vec::new())));
    }
    Ok(Action::Unmap { ranges })
}

/// GET LBA STATUS (SBC-3 §5.7, SERVICE ACTION IN (16) service action 12h): STARTING LOGICAL BLOCK ADDRESS past the
/// last LBA is LBA OUT OF RANGE. A fully provisioned logical unit answers at once (every block mapped); a thin one
/// asks the bdev ([`Action::GetLbaStatus`]) and answers through [`LogicalUnit::lba_status_done`].
pub(crate) fn get_lba_status(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let lba = c.u64(2);
    let alloc = c.u32(10);
    let capacity = lu.num_blocks();
    if lba >= capacity {
        return Err(Sense::lba_out_of_range());
    }
    if !lu.thin {
        let extent = LbaExtent { lba, blocks: capacity - lba, status: ProvisioningStatus::Mapped };
        return Ok(Action::Respond(Response::good(lba_status_data(&[extent], alloc))));
    }
    let max_extents = (alloc.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let (offset, len) = lu.byte_range(lba, capacity - lba)?;
    Ok(Action::GetLbaStatus { offset, len, max_extents })
}

/// The GET LBA STATUS parameter data (SBC-3 §5.8.2): PARAMETER DATA LENGTH, then one 16-byte descriptor per extent
/// (a run longer than 2^32 - 1 blocks is split), truncated to the allocation length.
pub(crate) fn lba_status_data(extents: &[LbaExtent], alloc: u32) -> Vec<u8> {
    let mut descriptors: Vec<u8> = Vec::new();
    for e in extents {
        let mut lba = e.lba;
        let mut left = e.blocks;
        while left > 0 && descriptors.len() < (MAX_LBA_STATUS_DESCRIPTORS as usize) * 16 {
            let n = left.min(u64::from(u32::MAX));
            descriptors.extend_from_slice(&lba.to_be_bytes());
            descriptors.extend_from_slice(&(n as u32).to_be_bytes());
            descriptors.push(match e.status {
                ProvisioningStatus::Mapped => 0,
                ProvisioningStatus::Deallocated => 1,
                ProvisioningStatus::Anchored => 2,
            });
            descriptors.extend_from_slice(&[0, 0, 0]);
            lba = lba.saturating_add(n);
            left -= n;
        }
    }
    let mut d = Vec::with_capacity(8 + descriptors.len());
    d.extend_from_slice(&((4 + descriptors.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    d.extend(descriptors);
    d.truncate(alloc as usize);
    d
}
