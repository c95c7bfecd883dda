//! Mode pages (SPC-4 §7.5, SBC-3 §6.4) and the MODE SENSE parameter data around them.
//!
//! No MODE SELECT yet, so nothing is changeable: the changeable values are all zero, the default values equal the
//! current ones, and saved values are not supported (05/39/00).

use crate::sense::Sense;
use crate::LogicalUnit;

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

/// One mode page in the requested form.
fn page(lu: &LogicalUnit, code: u8, pc: PageControl) -> Vec<u8> {
    let changeable = pc == PageControl::Changeable;
    match code {
        PAGE_CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = PAGE_CACHING;
            p[1] = 0x12;
            if !changeable && lu.write_cache {
                p[2] |= 0x04; // WCE
            }
            p
        }
        PAGE_CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_CONTROL;
            p[1] = 0x0A;
            if !changeable {
                p[2] = 0x02; // GLTSD: no log parameters are saved; D_SENSE = 0 (fixed format sense data)
                p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering), QERR 00b
                p[8..10].copy_from_slice(&0xFFFFu16.to_be_bytes()); // BUSY TIMEOUT PERIOD: unlimited
            }
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

/// DEVICE-SPECIFIC PARAMETER of the mode parameter header (SBC-3 §6.4.1): WP when read only, DPOFUA always (DPO
/// and FUA are accepted in READ, WRITE and VERIFY CDBs).
pub(crate) fn device_specific(lu: &LogicalUnit) -> u8 {
    let wp = if lu.read_only { 0x80 } else { 0 };
    wp | 0x10
}
