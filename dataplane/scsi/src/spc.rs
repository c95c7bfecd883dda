//! SPC-4 commands every logical unit supports: TEST UNIT READY, REQUEST SENSE, INQUIRY, MODE SENSE(6)/(10), REPORT
//! SUPPORTED OPERATION CODES, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS and the REPORT LUNS fallback.

use crate::cdb::Cdb;
use crate::mode::{self, PageControl};
use crate::ops::THIN_ONLY;
use crate::sense::Sense;
use crate::{opcode, Action, Command, LogicalUnit, OpInfo, Response};

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
/// state of a sanitize operation (in progress, with its progress indication, or failed), else the NOT READY
/// condition of an ejected medium, else NO SENSE. DESC selects descriptor-format sense data.
pub(crate) fn request_sense(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let sense = if let Some(ua) = lu.nexus.observe(cmd.nexus, true) {
        ua
    } else if let Some(sanitize) = lu.sanitize.pollable_sense() {
        // SBC-3 §4.11: SANITIZE IN PROGRESS with the progress indication, or SANITIZE COMMAND FAILED.
        sanitize
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
    let pages = lu.pages();
    let data = if c.bit(1, 0) {
        pages.vpd(page).ok_or(Sense::invalid_field_in_cdb(2, None))?.to_vec()
    } else if page != 0 {
        return Err(Sense::invalid_field_in_cdb(2, None));
    } else {
        pages.standard.clone()
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
    Ok(Action::Respond(Response::good(crate::lun::report_luns_data(&[cmd.lun], cmd.cdb)?)))
}

/// Command timeouts descriptor (SPC-4 §6.35.4): DESCRIPTOR LENGTH 0Ah, no nominal or recommended timeout given.
const TIMEOUTS: [u8; 12] = [0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35), built from the command table. REPORTING OPTIONS 000b lists every
/// command; 001b reports one operation code (invalid for one that selects commands by service action), 010b one
/// operation code and service action (invalid for one that does not), 011b either. RCTD adds command timeouts
/// descriptors. Unsupported commands are reported with SUPPORT 001b.
pub(crate) fn report_supported_operation_codes(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let rctd = c.bit(2, 7);
    let options = c.u8(2) & 0x07;
    let alloc = c.u32(6) as usize;
    let all: Vec<&OpInfo> = lu.table().ops.iter().filter(|op| lu.thin || !op.has(THIN_ONLY)).collect();
    let data = if options == 0 {
        let mut descriptors = Vec::with_capacity(all.len() * 20);
        for op in &all {
            let servactv = op.service_action.is_some();
            descriptors.push(op.opcode);
            descriptors.push(0);
            descriptors.extend_from_slice(&op.service_action.unwrap_or(0).to_be_bytes());
            descriptors.push(0);
            descriptors.push((u8::from(rctd) << 1) | u8::from(servactv));
            descriptors.extend_from_slice(&u16::from(op.cdb_len).to_be_bytes());
            if rctd {
                descriptors.extend_from_slice(&TIMEOUTS);
            }
        }
        let mut d = Vec::with_capacity(4 + descriptors.len());
        d.extend_from_slice(&(descriptors.len() as u32).to_be_bytes());
        d.extend(descriptors);
        d
    } else {
        let opcode = c.u8(3);
        let sa = c.u16(4);
        let has_sa = all.iter().any(|op| op.opcode == opcode && op.service_action.is_some());
        match (options, has_sa) {
            (1, true) | (2, false) => return Err(Sense::invalid_field_in_cdb(2, Some(2))),
            (1..=3, _) => {}
            _ => return Err(Sense::invalid_field_in_cdb(2, Some(2))),
        }
        let found = all.iter().find(|op| op.opcode == opcode && (!has_sa || op.service_action == Some(sa)));
        let mut d = vec![0, if rctd { 0x80 } else { 0 }];
        match found {
            Some(op) => {
                d[1] |= 0x03; // SUPPORT: supported, conforming to the standard
                d.extend_from_slice(&(op.usage.len() as u16).to_be_bytes());
                d.extend_from_slice(op.usage);
            }
            None => {
                d[1] |= 0x01; // SUPPORT: not supported
                d.extend_from_slice(&[0, 0]);
            }
        }
        if rctd {
            d.extend_from_slice(&TIMEOUTS);
        }
        d
    };
    data_in(data, alloc)
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.41): ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL
/// UNIT RESET and TARGET RESET (iSCSI's TARGET WARM RESET), which the iSCSI layer carries; no CLEAR ACA, QUERY
/// TASK, QUERY TASK SET, QUERY ASYNCHRONOUS EVENT or I_T NEXUS RESET. REPD = 1 asks for the 16-byte extended form.
/// An ALLOCATION LENGTH below 4 is an invalid field in the CDB.
pub(crate) fn report_supported_tmfs(_lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let alloc = c.u32(6) as usize;
    if alloc < 4 {
        return Err(Sense::invalid_field_in_cdb(6, None));
    }
    // ATS, ATSS, CTSS, LURS, TRS.
    let mut d = vec![0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0];
    if c.bit(2, 7) {
        d[3] = 0x0C;
        d.resize(16, 0);
    }
    data_in(d, alloc)
}
