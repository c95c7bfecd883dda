//! SPC-4 commands every logical unit supports: TEST UNIT READY, REQUEST SENSE, INQUIRY, MODE SENSE(6)/(10) and
//! the REPORT LUNS fallback.

use crate::cdb::Cdb;
use crate::mode::{self, PageControl};
use crate::opcode;
use crate::sense::Sense;
use crate::{Action, Command, LogicalUnit, Response};

/// Data-In truncated to the allocation length (SPC-4 §4.2.5.6).
fn data_in(mut data: Vec<u8>, alloc: usize) -> Result<Action, Sense> {
    data.truncate(alloc);
    Ok(Action::Respond(Response::good(data)))
}

/// TEST UNIT READY (SPC-4 §6.47): GOOD once unit attention and medium checks have passed.
pub(crate) fn test_unit_ready(_lu: &LogicalUnit, _cmd: &Command<'_>) -> Result<Action, Sense> {
    Ok(Action::Respond(Response::good(Vec::new())))
}

/// REQUEST SENSE (SPC-4 §6.39): returns (and clears) the oldest pending unit attention of the nexus, else the
/// NOT READY condition of an ejected medium, else NO SENSE. DESC selects descriptor-format sense data.
pub(crate) fn request_sense(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let sense = if let Some(ua) = lu.nexus.observe(cmd.nexus, true) {
        ua
    } else if !lu.medium_present() {
        Sense::medium_not_present()
    } else {
        Sense::no_sense()
    };
    let data = if c.bit(1, 0) { sense.to_descriptor() } else { sense.to_fixed() };
    data_in(data, usize::from(c.u8(4)))
}

/// INQUIRY (SPC-4 §6.6): standard data, or the VPD page PAGE CODE when EVPD is set. A PAGE CODE with EVPD clear,
/// an unsupported VPD page and the obsolete CMDDT bit are invalid fields in the CDB.
pub(crate) fn inquiry(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if c.bit(1, 1) {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let page = c.u8(2);
    let data = if c.bit(1, 0) {
        lu.pages.vpd(page).ok_or(Sense::invalid_field_in_cdb(2, None))?.to_vec()
    } else if page != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    } else {
        lu.pages.standard.clone()
    };
    data_in(data, usize::from(c.u16(3)))
}

/// MODE SENSE(6) (SPC-4 §6.11) and MODE SENSE(10) (SPC-4 §6.12): mode parameter header, block descriptor unless
/// DBD (long LBA form when LLBAA is set in MODE SENSE(10)), then the requested pages.
pub(crate) fn mode_sense(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let ten = c.u8(0) == opcode::MODE_SENSE_10;
    let dbd = c.bit(1, 3);
    let llbaa = ten && c.bit(1, 4);
    let pc = PageControl::from_cdb(c.u8(2) >> 6)?;
    let pages = mode::pages(lu, c.u8(2) & 0x3F, c.u8(3), pc)?;
    let bd = if dbd { Vec::new() } else { mode::block_descriptor(lu, llbaa, pc) };
    let dsp = mode::device_specific(lu);
    let mut data = Vec::with_capacity(8 + bd.len() + pages.len());
    if ten {
        let total = 8 + bd.len() + pages.len();
        data.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        data.extend_from_slice(&[0, dsp, u8::from(llbaa && !dbd), 0]);
        data.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let total = 4 + bd.len() + pages.len();
        data.extend_from_slice(&[(total - 1) as u8, 0, dsp, bd.len() as u8]);
    }
    data.extend(bd);
    data.extend(pages);
    let alloc = if ten { usize::from(c.u16(7)) } else { usize::from(c.u8(4)) };
    data_in(data, alloc)
}

/// REPORT LUNS addressed to a logical unit. REPORT LUNS is a target-level command and the driver is expected to
/// answer it with [`crate::report_luns`] and the target's LUN map; when it reaches a logical unit anyway, the only
/// LUN this logical unit knows is the one the command was addressed to.
pub(crate) fn report_luns(_lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    Ok(Action::Respond(crate::report_luns(&[cmd.lun], cmd.cdb)))
}
