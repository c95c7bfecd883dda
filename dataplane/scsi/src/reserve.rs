//! SPC-2 reservations (RESERVE(6)/(10), RELEASE(6)/(10); SPC-2 §7.21-7.24) and the reservation conflict check every
//! command goes through (SPC-4 §5.9.1 table 62 "SPC commands that are allowed in the presence of various
//! reservations", SBC-3 §4.18 table 13 for the block commands, SPC-2 §5.5.1 for RESERVE/RELEASE).
//!
//! An SPC-2 reservation belongs to one I_T nexus and ends with it (I_T nexus loss, logical unit reset). It coexists
//! with persistent reservations as SPC-4 §5.9.3 requires with CRH = 1: while any registration exists, RESERVE
//! succeeds only for an I_T nexus with full access under the persistent reservation and RELEASE does nothing.

use crate::cdb::Cdb;
use crate::opcode;
use crate::sense::Sense;
use crate::{Action, Command, LogicalUnit, NexusId, Response, Status};

/// How a command fares under reservations held by another I_T nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Never conflicts: INQUIRY, REQUEST SENSE, REPORT LUNS, PREVENT ALLOW MEDIUM REMOVAL with PREVENT = 0.
    Always,
    /// Allowed under every persistent reservation, conflicts with an SPC-2 reservation: TEST UNIT READY, READ
    /// CAPACITY, PERSISTENT RESERVE IN, LOG SENSE, REPORT TARGET PORT GROUPS, START STOP UNIT starting the unit, ...
    PrAllowed,
    /// Reads: allowed under the Write Exclusive types, conflict under Exclusive Access and SPC-2 reservations.
    Read,
    /// Everything that changes the medium or the logical unit (and every command not listed): conflict.
    Write,
    /// PERSISTENT RESERVE OUT: its service actions decide (SPC-4 table 208); conflict under an SPC-2 reservation.
    PrOut,
    /// RESERVE and RELEASE: decided by their handlers.
    Reserve,
}

/// The access class of a CDB (at least one byte long).
pub(crate) fn classify(cdb: &[u8]) -> Access {
    let c = Cdb(cdb);
    let sa = c.u8(1) & 0x1F;
    match c.u8(0) {
        opcode::INQUIRY | opcode::REQUEST_SENSE | opcode::REPORT_LUNS => Access::Always,
        opcode::PREVENT_ALLOW_MEDIUM_REMOVAL if c.u8(4) & 0x03 == 0 => Access::Always,
        opcode::RESERVE_6 | opcode::RELEASE_6 | opcode::RESERVE_10 | opcode::RELEASE_10 => Access::Reserve,
        opcode::PERSISTENT_RESERVE_OUT => Access::PrOut,
        // PERSISTENT RESERVE IN, TEST UNIT READY, READ CAPACITY(10), LOG SENSE.
        opcode::PERSISTENT_RESERVE_IN | opcode::TEST_UNIT_READY | opcode::READ_CAPACITY_10 | 0x4D => Access::PrAllowed,
        opcode::SERVICE_ACTION_IN_16 if u16::from(sa) == opcode::SA_READ_CAPACITY_16 => Access::PrAllowed,
        // GET LBA STATUS, READ LONG(16), REPORT REFERRALS.
        opcode::SERVICE_ACTION_IN_16 => Access::Read,
        // MAINTENANCE IN: REPORT IDENTIFYING INFORMATION, REPORT TARGET PORT GROUPS, REPORT ALIASES, REPORT
        // PRIORITY, REPORT TIMESTAMP are always allowed; REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT
        // FUNCTIONS are reads.
        opcode::MAINTENANCE_IN if matches!(sa, 0x05 | 0x0A | 0x0B | 0x0E | 0x0F) => Access::PrAllowed,
        opcode::MAINTENANCE_IN => Access::Read,
        // READ MEDIA SERIAL NUMBER.
        0xAB if sa == 0x01 => Access::PrAllowed,
        // START STOP UNIT with START = 1 and POWER CONDITION = 0 (SBC-3 table 13).
        opcode::START_STOP_UNIT if c.u8(4) & 0xF1 == 0x01 => Access::PrAllowed,
        opcode::READ_6
        | opcode::READ_10
        | opcode::READ_12
        | opcode::READ_16
        | opcode::VERIFY_10
        | opcode::VERIFY_12
        | opcode::VERIFY_16
        | opcode::PRE_FETCH_10
        | opcode::PRE_FETCH_16
        | opcode::MODE_SENSE_6
        | opcode::MODE_SENSE_10
        // READ DEFECT DATA(10)/(12), READ LONG(10), READ BUFFER, RECEIVE DIAGNOSTIC RESULTS, RECEIVE COPY
        // RESULTS, READ ATTRIBUTE.
        | 0x37
        | 0xB7
        | 0x3E
        | 0x3C
        | 0x1C
        | 0x84
        | 0x8C
        // MMC reads of a CD-ROM: READ TOC, GET CONFIGURATION, GET EVENT STATUS NOTIFICATION, READ DISC
        // INFORMATION, READ TRACK INFORMATION, READ DISC STRUCTURE, READ CD.
        | 0x43
        | 0x46
        | 0x4A
        | 0x51
        | 0x52
        | 0xAD
        | 0xBE => Access::Read,
        _ => Access::Write,
    }
}

impl LogicalUnit {
    /// RESERVATION CONFLICT for `cmd` if a reservation held by another I_T nexus forbids it. Lock-free while the
    /// logical unit is not reserved.
    pub(crate) fn reservation_conflict(&self, cmd: &Command<'_>) -> Option<Response> {
        if !self.pr.active() {
            return None;
        }
        let access = classify(cmd.cdb);
        let st = self.pr.lock();
        let conflict = match st.spc2 {
            Some(holder) if holder != cmd.nexus => !matches!(access, Access::Always | Access::Reserve),
            _ => match (access, st.reservation) {
                (_, None) | (Access::Always | Access::PrAllowed | Access::PrOut | Access::Reserve, _) => false,
                (Access::Read, Some(res)) => !res.kind.write_exclusive() && !st.has_access(cmd.nexus),
                (Access::Write, Some(_)) => !st.has_access(cmd.nexus),
            },
        };
        conflict.then(|| Response::status(Status::ReservationConflict))
    }

    /// Releases the SPC-2 reservation (logical unit reset, SPC-2 §5.5.1).
    pub(crate) fn release_spc2(&self) {
        self.pr.lock().spc2 = None;
    }

    /// Forgets I_T nexus `nexus` for reservations: its SPC-2 reservation ends; its registrations stay.
    pub(crate) fn reservations_nexus_gone(&self, nexus: NexusId) {
        self.pr.lock().unbind(nexus);
    }
}

fn conflict() -> Result<Action, Sense> {
    Ok(Action::Respond(Response::status(Status::ReservationConflict)))
}

fn good() -> Result<Action, Sense> {
    Ok(Action::Respond(Response::good(Vec::new())))
}

/// Third-party and long-ID forms are not supported (SPC-2 §7.21.2, §7.22.2): INVALID FIELD IN CDB; RESERVE(6)'s
/// obsolete extent reservations likewise.
fn check_cdb(c: &Cdb<'_>) -> Result<(), Sense> {
    if c.u8(0) == opcode::RESERVE_10 || c.u8(0) == opcode::RELEASE_10 {
        if c.bit(1, 4) {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        if c.bit(1, 1) {
            return Err(Sense::invalid_field_in_cdb(1, Some(1)));
        }
    } else if c.bit(1, 0) {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    Ok(())
}

/// RESERVE(6) / RESERVE(10): reserve the logical unit for this I_T nexus (again, if it already holds it).
pub(crate) fn reserve(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    check_cdb(&Cdb(cmd.cdb))?;
    let mut st = lu.pr.lock();
    if !st.registrations.is_empty() {
        // SPC-4 §5.9.3 with CRH = 1: only a nexus with full access under the persistent reservation.
        return if st.reservation.is_some() && st.has_access(cmd.nexus) { good() } else { conflict() };
    }
    match st.spc2 {
        Some(holder) if holder != cmd.nexus => conflict(),
        _ => {
            st.spc2 = Some(cmd.nexus);
            good()
        }
    }
}

/// RELEASE(6) / RELEASE(10): release this I_T nexus's reservation; GOOD and nothing else otherwise.
pub(crate) fn release(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    check_cdb(&Cdb(cmd.cdb))?;
    let mut st = lu.pr.lock();
    if st.registrations.is_empty() && st.spc2 == Some(cmd.nexus) {
        st.spc2 = None;
    }
    good()
}
