//! Mode pages (SPC-4 §7.5, SBC-3 §6.4), the MODE SENSE parameter data around them, and MODE SELECT.
//!
//! Task sets: the Control mode page reports TST 001b, one task set per I_T nexus, as iSCSI-SCST does (its vdisk
//! default `SCST_TST_1_SEP_TASK_SETS`), and TAS 0: ABORT TASK SET and CLEAR TASK SET act on the requesting
//! nexus's tasks only, a LOGICAL UNIT RESET or a target reset aborts every nexus's tasks without a status for those
//! of the others and establishes 06/29/03 for all of them (SAM-5 §5.6, §7). TST is not changeable.
//!
//! The mode parameters are shared by every I_T nexus (SPC-4 allows either with TST 001b; SCST shares them), so a
//! MODE SELECT that changes them establishes 06/2A/01 MODE PARAMETERS CHANGED for the other nexuses (SPC-4
//! §7.5.x, "Mode parameters"). Changeable: WCE of the Caching page (SBC-3 §6.4.5; SCST's `write_through`), D_SENSE
//! and SWP of the Control page (SPC-4 §7.5.8). Saved values are not implemented: MODE SENSE with PC 11b answers
//! 05/39/00 SAVING PARAMETERS NOT SUPPORTED and MODE SELECT with SP = 1 is an invalid field in the CDB, as in
//! SCST. The current values live in one atomic byte so the READ/WRITE path reads them without a lock.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::cdb::Cdb;
use crate::sense::Sense;
use crate::{opcode, Action, Command, LogicalUnit, Response};

/// Caching mode page (SBC-3 §6.4.5).
pub(crate) const PAGE_CACHING: u8 = 0x08;
/// Control mode page (SPC-4 §7.5.8).
pub(crate) const PAGE_CONTROL: u8 = 0x0A;
/// Informational Exceptions Control mode page (SPC-4 §7.5.11).
pub(crate) const PAGE_INFO_EXCEPTIONS: u8 = 0x1C;
/// Return all pages.
pub(crate) const PAGE_ALL: u8 = 0x3F;

/// Pages in the order MODE SENSE returns them for "all pages".
const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFO_EXCEPTIONS];

/// Current-value bit: WCE (Caching page byte 2 bit 2).
pub(crate) const WCE: u8 = 1 << 0;
/// Current-value bit: D_SENSE (Control page byte 2 bit 2): descriptor format sense data.
pub(crate) const D_SENSE: u8 = 1 << 1;
/// Current-value bit: SWP (Control page byte 4 bit 3): software write protect.
pub(crate) const SWP: u8 = 1 << 2;

/// The TASK SET TYPE field of the Control mode page: 001b, a separate task set for every I_T nexus (SPC-4
/// §7.5.8 Table 458). The driver's task management acts accordingly (see the module documentation).
pub const TST_PER_NEXUS: u8 = 0b001;

/// The current values of the changeable mode parameters, and their defaults (which the device attributes set:
/// WCE from `write_through`, changed at run time by [`LogicalUnit::reconfigure`]).
#[derive(Debug)]
pub(crate) struct ModeState {
    bits: AtomicU8,
    default: AtomicU8,
}

impl ModeState {
    pub(crate) fn new(default: u8) -> Self {
        Self { bits: AtomicU8::new(default), default: AtomicU8::new(default) }
    }

    /// The current bits (one relaxed load; the bits are independent flags).
    pub(crate) fn current(&self) -> u8 {
        self.bits.load(Ordering::Relaxed)
    }

    pub(crate) fn default_bits(&self) -> u8 {
        self.default.load(Ordering::Relaxed)
    }

    /// Replaces the current bits; returns the previous ones.
    pub(crate) fn set(&self, bits: u8) -> u8 {
        self.bits.swap(bits, Ordering::AcqRel)
    }

    /// Sets `bit` in both the default and the current values to `on` (a device attribute changed by the
    /// administrator overrides what MODE SELECT chose). Returns whether the current value changed.
    pub(crate) fn set_default(&self, bit: u8, on: bool) -> bool {
        let apply = |v: u8| if on { v | bit } else { v & !bit };
        let _ = self.default.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(apply(v)));
        let old = self.bits.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(apply(v)));
        let old = old.unwrap_or_else(|v| v);
        apply(old) != old
    }
}

/// The PAGE CONTROL field of MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    Changeable,
    Default,
}

impl PageControl {
    /// Decodes PC (CDB byte 2 bits 7..6). Saved values (11b) are not supported.
    pub(crate) fn from_cdb(pc: u8) -> Result<Self, Sense> {
        match pc & 0x03 {
            0 => Ok(Self::Current),
            1 => Ok(Self::Changeable),
            2 => Ok(Self::Default),
            _ => Err(Sense::saving_parameters_not_supported()),
        }
    }
}

/// One mode page built from the value bits `bits` (current or default values).
fn page_with(code: u8, bits: u8) -> Vec<u8> {
    match code {
        PAGE_CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = PAGE_CACHING;
            p[1] = 0x12;
            if bits & WCE != 0 {
                p[2] |= 0x04;
            }
            p
        }
        PAGE_CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_CONTROL;
            p[1] = 0x0A;
            // TST 001b (task set per I_T nexus, SPC-4 §7.5.8), GLTSD: no log parameters are saved.
            p[2] = TST_PER_NEXUS << 5 | 0x02;
            if bits & D_SENSE != 0 {
                p[2] |= 0x04;
            }
            p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering), QERR 00b
            if bits & SWP != 0 {
                p[4] |= 0x08;
            }
            p[8..10].copy_from_slice(&0xFFFFu16.to_be_bytes()); // BUSY TIMEOUT PERIOD: unlimited
            p
        }
        _ => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_INFO_EXCEPTIONS;
            p[1] = 0x0A; // all zero: MRIE 0h, no informational exception reporting
            p
        }
    }
}

/// The changeable-values mask of a page: a one bit for every bit MODE SELECT may change.
fn changeable(code: u8) -> Vec<u8> {
    let mut p = page_with(code, 0);
    p[2..].fill(0);
    match code {
        PAGE_CACHING => p[2] = 0x04,
        PAGE_CONTROL => {
            p[2] = 0x04;
            p[4] = 0x08;
        }
        _ => {}
    }
    p
}

/// One mode page in the requested form.
fn page(lu: &LogicalUnit, code: u8, pc: PageControl) -> Vec<u8> {
    match pc {
        PageControl::Current => page_with(code, lu.mode.current()),
        PageControl::Default => page_with(code, lu.mode.default_bits()),
        PageControl::Changeable => changeable(code),
    }
}

/// The mode pages selected by PAGE CODE / SUBPAGE CODE, or INVALID FIELD IN CDB.
pub(crate) fn pages(lu: &LogicalUnit, code: u8, subpage: u8, pc: PageControl) -> Result<Vec<u8>, Sense> {
    // Only subpage 00h exists; FFh asks for all subpages of the page(s), which is the same here.
    if subpage != 0x00 && subpage != 0xFF {
        return Err(Sense::invalid_field_in_cdb(3, None));
    }
    if code == PAGE_ALL {
        return Ok(PAGES.iter().flat_map(|&c| page(lu, c, pc)).collect());
    }
    if PAGES.contains(&code) {
        Ok(page(lu, code, pc))
    } else {
        Err(Sense::invalid_field_in_cdb(2, Some(5)))
    }
}

/// The block descriptor: short (8 bytes, SBC-3 §6.4.2) or long (16 bytes, LONGLBA). The changeable form is all
/// zero: neither the capacity nor the block length can be changed.
pub(crate) fn block_descriptor(lu: &LogicalUnit, long: bool, pc: PageControl) -> Vec<u8> {
    let (blocks, bs) = if pc == PageControl::Changeable {
        (0, 0)
    } else if lu.medium_present() {
        (lu.num_blocks(), lu.block_size)
    } else {
        (0, lu.block_size)
    };
    if long {
        let mut d = vec![0u8; 16];
        d[0..8].copy_from_slice(&blocks.to_be_bytes());
        d[12..16].copy_from_slice(&bs.to_be_bytes());
        d
    } else {
        let mut d = vec![0u8; 8];
        d[0..4].copy_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
        d[5..8].copy_from_slice(&bs.to_be_bytes()[1..4]);
        d
    }
}

/// DEVICE-SPECIFIC PARAMETER of the mode parameter header (SBC-3 §6.4.1): WP when the logical unit is write
/// protected (read only or SWP), DPOFUA always (DPO and FUA are accepted in READ, WRITE and VERIFY CDBs).
pub(crate) fn device_specific(lu: &LogicalUnit) -> u8 {
    let wp = if lu.read_only() || lu.mode.current() & SWP != 0 { 0x80 } else { 0 };
    wp | 0x10
}

/// MODE SELECT(6) (SPC-4 §6.9) and MODE SELECT(10) (SPC-4 §6.10). The parameter list is the mode parameter header,
/// an optional block descriptor (which must repeat the current block length; a NUMBER OF LOGICAL BLOCKS other
/// than zero must repeat the capacity) and mode pages. Every page is checked before anything is applied: a bit
/// that is not changeable must keep its current value (INVALID FIELD IN PARAMETER LIST pointing at it), a page
/// must have its own length, and a list that ends inside a header, descriptor or page is a PARAMETER LIST LENGTH
/// ERROR. PF = 0 with pages and SP = 1 are invalid fields in the CDB.
pub(crate) fn mode_select(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let ten = c.u8(0) == opcode::MODE_SELECT_10;
    let pf = c.bit(1, 4);
    if c.bit(1, 0) {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    let list_len = if ten { usize::from(c.u16(7)) } else { usize::from(c.u8(4)) };
    if list_len == 0 {
        return Ok(Action::Respond(Response::good(Vec::new())));
    }
    let data = cmd.data_out.unwrap_or(&[]);
    if data.len() < list_len {
        return Err(Sense::parameter_list_length_error());
    }
    let list = &data[..list_len];
    let header_len = if ten { 8 } else { 4 };
    if list.len() < header_len {
        return Err(Sense::parameter_list_length_error());
    }
    let (medium_type, bd_len, long) = if ten {
        (list[2], usize::from(u16::from_be_bytes([list[6], list[7]])), list[4] & 0x01 != 0)
    } else {
        (list[1], usize::from(list[3]), false)
    };
    let medium_at = if ten { 2 } else { 1 };
    if medium_type != 0 {
        return Err(Sense::invalid_field_in_param_list(medium_at, None));
    }
    let bd_at = header_len;
    let expected_bd = if long { 16 } else { 8 };
    if bd_len != 0 && bd_len != expected_bd {
        return Err(Sense::invalid_field_in_param_list(if ten { 6 } else { 3 }, None));
    }
    if list.len() < bd_at + bd_len {
        return Err(Sense::parameter_list_length_error());
    }
    if bd_len != 0 {
        check_block_descriptor(lu, &list[bd_at..bd_at + bd_len], bd_at, long)?;
    }
    let mut at = bd_at + bd_len;
    if at < list.len() && !pf {
        return Err(Sense::invalid_field_in_cdb(1, Some(4)));
    }
    let current = lu.mode.current();
    let mut bits = current;
    while at < list.len() {
        if list.len() < at + 2 {
            return Err(Sense::parameter_list_length_error());
        }
        let code = list[at] & 0x3F;
        let spf = list[at] & 0x40 != 0;
        if spf || !PAGES.contains(&code) {
            return Err(Sense::invalid_field_in_param_list(field(at), Some(5)));
        }
        let ours = page_with(code, current);
        if usize::from(list[at + 1]) != ours.len() - 2 {
            return Err(Sense::invalid_field_in_param_list(field(at + 1), None));
        }
        if list.len() < at + ours.len() {
            return Err(Sense::parameter_list_length_error());
        }
        let theirs = &list[at..at + ours.len()];
        let mask = changeable(code);
        for j in 2..ours.len() {
            let bad = (theirs[j] ^ ours[j]) & !mask[j];
            if bad != 0 {
                return Err(Sense::invalid_field_in_param_list(field(at + j), Some(7 - bad.leading_zeros() as u8)));
            }
        }
        match code {
            PAGE_CACHING => set_bit(&mut bits, WCE, theirs[2] & 0x04 != 0),
            PAGE_CONTROL => {
                set_bit(&mut bits, D_SENSE, theirs[2] & 0x04 != 0);
                set_bit(&mut bits, SWP, theirs[4] & 0x08 != 0);
            }
            _ => {}
        }
        at += ours.len();
    }
    if bits != current {
        let mut locked = lu.nexus.lock();
        if lu.mode.set(bits) != bits {
            locked.raise_all(Sense::mode_parameters_changed(), Some(cmd.nexus));
        }
    }
    Ok(Action::Respond(Response::good(Vec::new())))
}

fn field(at: usize) -> u16 {
    u16::try_from(at).unwrap_or(u16::MAX)
}

fn set_bit(bits: &mut u8, bit: u8, on: bool) {
    if on {
        *bits |= bit;
    } else {
        *bits &= !bit;
    }
}

/// A block descriptor in MODE SELECT data: the block length cannot change; NUMBER OF LOGICAL BLOCKS is zero (no
/// change) or the current capacity.
fn check_block_descriptor(lu: &LogicalUnit, bd: &[u8], at: usize, long: bool) -> Result<(), Sense> {
    let (blocks, len_at, bs) = if long {
        let blocks = bd[0..8].iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        (blocks, 12, u32::from_be_bytes([bd[12], bd[13], bd[14], bd[15]]))
    } else {
        let blocks = u64::from(u32::from_be_bytes([bd[0], bd[1], bd[2], bd[3]]));
        (blocks, 5, u32::from_be_bytes([0, bd[5], bd[6], bd[7]]))
    };
    let capacity = if long { lu.num_blocks() } else { lu.num_blocks().min(u64::from(u32::MAX)) };
    if blocks != 0 && blocks != capacity {
        return Err(Sense::invalid_field_in_param_list(field(at), None));
    }
    if bs != lu.block_size {
        return Err(Sense::invalid_field_in_param_list(field(at + len_at), None));
    }
    Ok(())
}
