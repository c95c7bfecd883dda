//! The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4 and §6.18, the SPC-3 style
//! parameter list), and the Third-party Copy VPD page (SPC-4 §7.8.17).
//!
//! The logical unit an EXTENDED COPY is addressed to is the copy manager. It supports identification descriptor
//! target descriptors (E4h: a copy target named by a designator of its Device Identification VPD page) and
//! block device to block device segment descriptors (02h). The work is split three ways:
//! - [`LogicalUnit::execute`] parses and checks the parameter list (everything that can be told from the list
//!   alone is answered ILLEGAL REQUEST) and hands out [`Action::ExtendedCopy`] with a [`CopyJob`];
//! - the driver finds the copy targets among the logical units the I_T nexus reaches ([`LogicalUnit::
//!   is_copy_target`]), asks [`CopyJob::segment`] for each segment's byte ranges (errors found while processing a
//!   segment are COPY ABORTED, with the segment number and a segment pointer) and moves the data with bdev reads
//!   and writes;
//! - [`LogicalUnit::copy_done`] turns the outcome into the command's status and keeps what RECEIVE COPY RESULTS
//!   reports for the list identifier (LIST ID USAGE 00b), per I_T nexus.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cdb::Cdb;
use crate::sense::{Sense, SenseKey};
use crate::{Action, Command, IoResult, LogicalUnit, NexusId, Response};

/// MAXIMUM TARGET DESCRIPTOR COUNT (RECEIVE COPY RESULTS, OPERATING PARAMETERS).
pub const MAX_TARGET_DESCRIPTORS: usize = 16;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub const MAX_SEGMENT_DESCRIPTORS: usize = 64;
/// Length of a target descriptor with a 32-byte format (E0h..E9h).
const TARGET_DESCRIPTOR_LEN: usize = 32;
/// Length of a block device to block device segment descriptor.
const B2B_LEN: usize = 28;
/// MAXIMUM DESCRIPTOR LIST LENGTH: the target and segment descriptor lists of the largest list accepted.
pub const MAX_DESCRIPTOR_LIST_LENGTH: usize =
    MAX_TARGET_DESCRIPTORS * TARGET_DESCRIPTOR_LEN + MAX_SEGMENT_DESCRIPTORS * B2B_LEN;
/// Length of the parameter list header.
const HEADER_LEN: usize = 16;
/// Identification descriptor target descriptor.
const IDENTIFICATION_DESCRIPTOR: u8 = 0xE4;
/// Block device to block device segment descriptor.
const BLOCK_TO_BLOCK: u8 = 0x02;
/// Results kept per I_T nexus (held status of finished copies and copies in progress); the oldest finished one is
/// discarded to make room, which SPC-4 permits ("the copy manager requires the resources").
const MAX_RECORDS_PER_NEXUS: usize = 16;

/// EXTENDED COPY (LID1) service action of THIRD-PARTY COPY OUT (83h).
pub(crate) const SA_EXTENDED_COPY_LID1: u16 = 0x00;
/// RECEIVE COPY RESULTS service actions of THIRD-PARTY COPY IN (84h).
pub(crate) const SA_COPY_STATUS: u16 = 0x00;
pub(crate) const SA_RECEIVE_DATA: u16 = 0x01;
pub(crate) const SA_OPERATING_PARAMETERS: u16 = 0x03;
pub(crate) const SA_FAILED_SEGMENT_DETAILS: u16 = 0x04;

/// A copy target of an EXTENDED COPY parameter list: an identification descriptor target descriptor (SPC-4
/// §6.4.5.2.3 / SPC-3 §7.2.6.2). The LU ID TYPE and NUL fields of SPC-3 are obsolete in SPC-4, which the logical
/// unit claims (INQUIRY VERSION 06h), and are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    /// CODE SET of the designator.
    pub code_set: u8,
    /// Byte 1 of the designation descriptor: ASSOCIATION and DESIGNATOR TYPE (PIV cleared).
    pub kind: u8,
    /// The DESIGNATOR.
    pub designator: Vec<u8>,
    /// DISK BLOCK LENGTH of the device type specific parameters.
    pub block_size: u32,
    /// Offset of the descriptor in the parameter list.
    offset: usize,
}

/// A block device to block device segment descriptor (SPC-4 §6.4.6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockToBlock {
    source: u16,
    destination: u16,
    /// DC: BLOCK DEVICE NUMBER OF BLOCKS counts destination blocks (else source blocks).
    dc: bool,
    blocks: u16,
    source_lba: u64,
    destination_lba: u64,
}

/// A parsed EXTENDED COPY parameter list, for the driver to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// LIST IDENTIFIER, `None` with LIST ID USAGE 11b (no list identifier).
    list_id: Option<u8>,
    /// LIST ID USAGE 00b: keep the results for RECEIVE COPY RESULTS after completion.
    hold: bool,
    targets: Vec<CopyTarget>,
    segments: Vec<BlockToBlock>,
}

/// A copy target the driver found for a target descriptor: the logical unit, and whether the LUN it is mapped as
/// is read-only.
#[derive(Debug, Clone, Copy)]
pub struct CopyTargetRef<'a> {
    pub lu: &'a LogicalUnit,
    pub read_only: bool,
}

/// The byte ranges of one segment: read `len` bytes at `source_offset` of target `source`, write them at
/// `destination_offset` of target `destination` (indexes into [`CopyJob::targets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentIo {
    pub source: usize,
    pub destination: usize,
    pub source_offset: u64,
    pub destination_offset: u64,
    pub len: u64,
}

/// How an EXTENDED COPY ended, for [`LogicalUnit::copy_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    /// Segment descriptors processed completely.
    pub segments: usize,
    /// Bytes written to copy targets.
    pub bytes: u64,
    /// Why the copy stopped before its last segment, if it did.
    pub failure: Option<CopyFailure>,
}

/// Why an EXTENDED COPY stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFailure {
    /// A copy target was not found ([`CopyJob::check_targets`]) or a segment could not be processed
    /// ([`CopyJob::segment`]): the sense data they returned.
    Sense(Sense),
    /// A read from the source (`source` set) or a write to the destination of segment `segment` failed.
    Io { segment: usize, source: bool, result: IoResult },
}

impl CopyJob {
    /// The target descriptors, in parameter list order.
    pub fn targets(&self) -> &[CopyTarget] {
        &self.targets
    }

    /// Number of segment descriptors.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Checks the copy targets the driver found (`found[i]` for target descriptor `i`, `None` for one that names
    /// no logical unit the I_T nexus reaches). A designator that names no such logical unit is 0A/0D/02 COPY
    /// TARGET DEVICE NOT REACHABLE; a DISK BLOCK LENGTH other than the logical unit's is an invalid field in the
    /// parameter list.
    pub fn check_targets(&self, found: &[Option<CopyTargetRef<'_>>]) -> Result<(), Sense> {
        for (i, t) in self.targets.iter().enumerate() {
            match found.get(i).copied().flatten() {
                None => {
                    return Err(Sense::new(SenseKey::CopyAborted, 0x0D, 0x02).with_sks(
                        crate::SenseKeySpecific::SegmentPointer { in_segment: false, byte: field(t.offset), bit: None },
                    ))
                }
                Some(r) if r.lu.block_size() != t.block_size => {
                    return Err(Sense::invalid_field_in_param_list(field(t.offset + 29), None))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The byte ranges of segment `i`, checked against the copy targets as they are now (SPC-4 §6.4.3.3: errors
    /// found while processing a segment descriptor are COPY ABORTED, with the segment number and a segment
    /// pointer): a target index beyond the target descriptor list (00/00), an unreachable target (0D/02),
    /// a transfer that is not a whole number of blocks of both targets (00/00), a range beyond the end of a
    /// target (00/00 pointing at the LBA), a medium that is not there (0D/02), a destination that is write
    /// protected (27/00), a reservation of another I_T nexus (0D/01 THIRD PARTY DEVICE FAILURE).
    pub fn segment(&self, i: usize, nexus: NexusId, found: &[Option<CopyTargetRef<'_>>]) -> Result<SegmentIo, Sense> {
        let seg = self.segments.get(i).ok_or(Sense::internal_target_failure())?;
        let n = u16::try_from(i).unwrap_or(u16::MAX);
        let abort = |asc, ascq, byte| Sense::copy_aborted(asc, ascq, n, byte);
        let target = |index: u16, at: u16| -> Result<CopyTargetRef<'_>, Sense> {
            self.targets.get(usize::from(index)).ok_or(abort(0x00, 0x00, at))?;
            found.get(usize::from(index)).copied().flatten().ok_or(abort(0x0D, 0x02, at))
        };
        let src = target(seg.source, 4)?;
        let dst = target(seg.destination, 6)?;
        let (sbs, dbs) = (u64::from(src.lu.block_size()), u64::from(dst.lu.block_size()));
        let len = u64::from(seg.blocks) * if seg.dc { dbs } else { sbs };
        if len % sbs != 0 || len % dbs != 0 {
            return Err(abort(0x00, 0x00, 10));
        }
        let range = |lu: &LogicalUnit, lba: u64, bs: u64, at: u16| -> Result<u64, Sense> {
            let end = lba.checked_add(len / bs).ok_or(abort(0x00, 0x00, at))?;
            if end > lu.num_blocks() {
                return Err(abort(0x00, 0x00, at));
            }
            Ok(lba * bs)
        };
        let source_offset = range(src.lu, seg.source_lba, sbs, 12)?;
        let destination_offset = range(dst.lu, seg.destination_lba, dbs, 20)?;
        for (r, at, write) in [(src, 4, false), (dst, 6, true)] {
            r.lu.copy_target_access(nexus, write, r.read_only).map_err(|(asc, ascq)| abort(asc, ascq, at))?;
        }
        Ok(SegmentIo {
            source: usize::from(seg.source),
            destination: usize::from(seg.destination),
            source_offset,
            destination_offset,
            len,
        })
    }
}

fn field(at: usize) -> u16 {
    u16::try_from(at).unwrap_or(u16::MAX)
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn be64(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Parses and checks an EXTENDED COPY parameter list (SPC-4 §6.4.3.2: errors found before any segment is
/// processed are ILLEGAL REQUEST). `Ok(None)`: an empty list, nothing to do. The checks, in order: the header fits
/// (PARAMETER LIST LENGTH ERROR), LIST ID USAGE, no inline data (INLINE DATA LENGTH EXCEEDED), the descriptor
/// lists fit the list exactly and within MAXIMUM DESCRIPTOR LIST LENGTH (PARAMETER LIST LENGTH ERROR), then the
/// target descriptors (count, type code, fields) and the segment descriptors (count, type code, length).
pub(crate) fn parse(p: &[u8]) -> Result<Option<CopyJob>, Sense> {
    if p.is_empty() {
        return Ok(None);
    }
    if p.len() < HEADER_LEN {
        return Err(Sense::parameter_list_length_error());
    }
    let list_id = p[0];
    let usage = (p[1] >> 3) & 0x03;
    let (list_id, hold) = match usage {
        0b00 => (Some(list_id), true),
        0b10 => (Some(list_id), false),
        0b11 if list_id == 0 => (None, false),
        0b11 => return Err(Sense::invalid_field_in_param_list(0, None)),
        _ => return Err(Sense::invalid_field_in_param_list(1, Some(4))),
    };
    let tgt_len = usize::from(be16(p, 2));
    let seg_len = be32(p, 8) as usize;
    if be32(p, 12) != 0 {
        return Err(Sense::inline_data_length_exceeded());
    }
    let lists = tgt_len.checked_add(seg_len).ok_or(Sense::parameter_list_length_error())?;
    if HEADER_LEN + lists != p.len() || lists > MAX_DESCRIPTOR_LIST_LENGTH {
        return Err(Sense::parameter_list_length_error());
    }
    if tgt_len % TARGET_DESCRIPTOR_LEN != 0 {
        return Err(Sense::invalid_field_in_param_list(2, None));
    }
    if tgt_len / TARGET_DESCRIPTOR_LEN > MAX_TARGET_DESCRIPTORS {
        return Err(Sense::too_many_target_descriptors());
    }
    let mut targets = Vec::with_capacity(tgt_len / TARGET_DESCRIPTOR_LEN);
    for off in (HEADER_LEN..HEADER_LEN + tgt_len).step_by(TARGET_DESCRIPTOR_LEN) {
        targets.push(target_descriptor(&p[off..off + TARGET_DESCRIPTOR_LEN], off)?);
    }
    let mut segments = Vec::new();
    let mut off = HEADER_LEN + tgt_len;
    while off < p.len() {
        if segments.len() == MAX_SEGMENT_DESCRIPTORS {
            return Err(Sense::too_many_segment_descriptors());
        }
        if p.len() - off < 4 {
            return Err(Sense::parameter_list_length_error());
        }
        if p[off] != BLOCK_TO_BLOCK {
            return Err(Sense::unsupported_segment_descriptor(field(off)));
        }
        let len = 4 + usize::from(be16(p, off + 2));
        if len != B2B_LEN {
            return Err(Sense::invalid_field_in_param_list(field(off + 2), None));
        }
        if p.len() - off < len {
            return Err(Sense::parameter_list_length_error());
        }
        let d = &p[off..off + len];
        segments.push(BlockToBlock {
            source: be16(d, 4),
            destination: be16(d, 6),
            dc: d[1] & 0x02 != 0,
            blocks: be16(d, 10),
            source_lba: be64(d, 12),
            destination_lba: be64(d, 20),
        });
        off += len;
    }
    Ok(Some(CopyJob { list_id, hold, targets, segments }))
}

/// One 32-byte target descriptor at parameter list offset `off`.
fn target_descriptor(d: &[u8], off: usize) -> Result<CopyTarget, Sense> {
    if d[0] != IDENTIFICATION_DESCRIPTOR {
        return Err(Sense::unsupported_target_descriptor(field(off)));
    }
    // Byte 1 bits 7..5 (LU ID TYPE and NUL of SPC-3) are obsolete in SPC-4 and ignored. Block devices (peripheral device type 00h) are the only copy targets.
    if d[1] & 0x1F != 0 {
        return Err(Sense::invalid_field_in_param_list(field(off + 1), Some(4)));
    }
    let len = usize::from(d[7]);
    if len > 20 {
        return Err(Sense::invalid_field_in_param_list(field(off + 7), None));
    }
    Ok(CopyTarget {
        code_set: d[4] & 0x0F,
        kind: d[5] & 0x3F,
        designator: d[8..8 + len].to_vec(),
        block_size: u32::from_be_bytes([0, d[29], d[30], d[31]]),
        offset: off,
    })
}

/// What RECEIVE COPY RESULTS reports for one list identifier of one I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    InProgress,
    Done(Done),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Done {
    /// Held until COPY STATUS returned it.
    status: Option<CopyStatus>,
    /// Held until FAILED SEGMENT DETAILS returned it: the EXTENDED COPY's status and sense data.
    failure: Option<(u8, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyStatus {
    ok: bool,
    segments: u16,
    bytes: u64,
}

/// The copy manager's results, per (I_T nexus, list identifier), in completion order per nexus.
#[derive(Debug, Default)]
pub(crate) struct CopyRecords {
    inner: Mutex<HashMap<NexusId, Vec<(u8, Record)>>>,
}

impl CopyRecords {
    fn lock(&self) -> MutexGuard<'_, HashMap<NexusId, Vec<(u8, Record)>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new EXTENDED COPY with `list_id` starts: OPERATION IN PROGRESS if one with the same list identifier is
    /// still running for the nexus; results held under it are discarded (SPC-4 §6.18.1).
    fn start(&self, nexus: NexusId, list_id: u8) -> Result<(), Sense> {
        let mut all = self.lock();
        let list = all.entry(nexus).or_default();
        if list.iter().any(|(id, r)| *id == list_id && *r == Record::InProgress) {
            return Err(Sense::operation_in_progress());
        }
        list.retain(|(id, _)| *id != list_id);
        if list.len() >= MAX_RECORDS_PER_NEXUS {
            if let Some(pos) = list.iter().position(|(_, r)| *r != Record::InProgress) {
                list.remove(pos);
            }
        }
        list.push((list_id, Record::InProgress));
        Ok(())
    }

    fn finish(&self, nexus: NexusId, list_id: u8, done: Option<Done>) {
        let mut all = self.lock();
        let Some(list) = all.get_mut(&nexus) else { return };
        list.retain(|(id, _)| *id != list_id);
        if let Some(d) = done {
            list.push((list_id, Record::Done(d)));
        }
        if list.is_empty() {
            all.remove(&nexus);
        }
    }

    pub(crate) fn nexus_gone(&self, nexus: NexusId) {
        self.lock().remove(&nexus);
    }
}

/// TRANSFER COUNT and TRANSFER COUNT UNITS for `bytes` (SPC-4 table 158: 00h bytes, 01h KiB, 02h MiB, ...): the
/// smallest unit in which the count fits the 4-byte field.
fn transfer_count(bytes: u64) -> (u8, u32) {
    let mut units = 0u8;
    let mut count = bytes;
    while count > u64::from(u32::MAX) {
        count >>= 10;
        units += 1;
    }
    (units, count as u32)
}

impl LogicalUnit {
    /// Whether `t` names this logical unit: a logical-unit designator of its Device Identification VPD page with
    /// the same code set, association, designator type and designator (block devices only).
    pub fn is_copy_target(&self, t: &CopyTarget) -> bool {
        if self.device_type != crate::DeviceType::Disk {
            return false;
        }
        let pages = self.pages();
        let Some(page) = pages.vpd(0x83) else { return false };
        let mut d = page.get(4..).unwrap_or(&[]);
        while d.len() >= 4 {
            let len = usize::from(d[3]);
            let Some(id) = d.get(4..4 + len) else { break };
            if d[0] & 0x0F == t.code_set && d[1] & 0x3F == t.kind && id == t.designator.as_slice() {
                return true;
            }
            d = &d[4 + len..];
        }
        false
    }

    /// Whether the copy manager may read (`write` false) or write this logical unit for `nexus` now; the ASC and
    /// ASCQ of the COPY ABORTED otherwise. `lun_read_only`: the LUN it is reached through is mapped read-only.
    pub(crate) fn copy_target_access(&self, nexus: NexusId, write: bool, lun_read_only: bool) -> Result<(), (u8, u8)> {
        if !self.medium_present() || !self.sanitize.idle() {
            return Err((0x0D, 0x02));
        }
        if write && (lun_read_only || self.read_only() || self.mode.current() & crate::mode::SWP != 0) {
            return Err((0x27, 0x00));
        }
        let cdb: &[u8] = if write { &[crate::opcode::WRITE_16; 16] } else { &[crate::opcode::READ_16; 16] };
        let probe = Command { nexus, lun: 0, cdb, expected_len: 0, data_out: None };
        if self.reservation_conflict(&probe).is_some() {
            return Err((0x0D, 0x01));
        }
        Ok(())
    }

    /// Ends an EXTENDED COPY handed out as [`Action::ExtendedCopy`] (call it exactly once, also when the command
    /// is abandoned): keeps the results for RECEIVE COPY RESULTS (LIST ID USAGE 00b) and returns the command's
    /// status. A failure is COPY ABORTED (or the ILLEGAL REQUEST of a target check); a read or write error of a
    /// copy target is 0A/0D/01 THIRD PARTY DEVICE FAILURE.
    pub fn copy_done(&self, cmd: &Command<'_>, job: &CopyJob, outcome: &CopyOutcome) -> Response {
        let response = match &outcome.failure {
            None => Response::good(Vec::new()),
            Some(CopyFailure::Sense(s)) => self.check_condition(s),
            Some(CopyFailure::Io { segment, source, .. }) => {
                let n = u16::try_from(*segment).unwrap_or(u16::MAX);
                self.check_condition(&Sense::copy_aborted(0x0D, 0x01, n, if *source { 4 } else { 6 }))
            }
        };
        if let Some(id) = job.list_id {
            let done = job.hold.then(|| Done {
                status: Some(CopyStatus {
                    ok: outcome.failure.is_none(),
                    segments: u16::try_from(outcome.segments).unwrap_or(u16::MAX),
                    bytes: outcome.bytes,
                }),
                failure: response.sense.clone().map(|s| (response.status as u8, s)),
            });
            self.copies.finish(cmd.nexus, id, done);
        }
        response
    }
}

/// EXTENDED COPY (LID1) (SPC-4 §6.4): parses the parameter list and hands the copy to the driver.
pub(crate) fn extended_copy(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let list_len = c.u32(10) as usize;
    let data = cmd.data_out.unwrap_or(&[]);
    if data.len() < list_len {
        return Err(Sense::parameter_list_length_error());
    }
    let Some(job) = parse(&data[..list_len])? else {
        return Ok(Action::Respond(Response::good(Vec::new())));
    };
    if let Some(id) = job.list_id {
        lu.copies.start(cmd.nexus, id)?;
    }
    Ok(Action::ExtendedCopy(Box::new(job)))
}

/// RECEIVE COPY RESULTS (SPC-4 §6.18, the LID1 service actions of THIRD-PARTY COPY IN).
pub(crate) fn receive_copy_results(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let sa = u16::from(c.u8(1) & 0x1F);
    let list_id = c.u8(2);
    let alloc = c.u32(10) as usize;
    if sa == SA_OPERATING_PARAMETERS {
        return Ok(Action::Respond(Response::good(truncated(operating_parameters(), alloc))));
    }
    let unknown = Sense::invalid_field_in_cdb(2, None);
    let mut all = lu.copies.lock();
    let list = all.get_mut(&cmd.nexus).ok_or(unknown)?;
    let pos = list.iter().position(|(id, _)| *id == list_id).ok_or(unknown)?;
    let data = match (&mut list[pos].1, sa) {
        (Record::InProgress, SA_COPY_STATUS) => copy_status(None),
        // RECEIVE DATA and FAILED SEGMENT DETAILS of a copy still running are invalid (SPC-4 §6.18.3, §6.18.5).
        (Record::InProgress, _) => return Err(unknown),
        (Record::Done(d), SA_COPY_STATUS) => {
            let s = d.status.ok_or(unknown)?;
            let data = copy_status(Some(s));
            if alloc >= data.len() {
                d.status = None;
            }
            data
        }
        // No segment descriptor held data for the application client.
        (Record::Done(_), SA_RECEIVE_DATA) => vec![0; 4],
        (Record::Done(d), _) => {
            let data = failed_segment_details(d.failure.as_ref());
            if alloc == 0 || alloc >= data.len() {
                d.failure = None;
            }
            data
        }
    };
    if let Record::Done(Done { status: None, failure: None }) = list[pos].1 {
        list.remove(pos);
    }
    Ok(Action::Respond(Response::good(truncated(data, alloc))))
}

fn truncated(mut d: Vec<u8>, alloc: usize) -> Vec<u8> {
    d.truncate(alloc);
    d
}

/// COPY STATUS parameter data (SPC-4 §6.18.2): COPY MANAGER STATUS 00h (in progress), 01h (completed without
/// error) or 02h (completed with error); HDD = 0 (no held data was discarded).
fn copy_status(s: Option<CopyStatus>) -> Vec<u8> {
    let (status, segments, bytes) = match s {
        None => (0x00, 0, 0),
        Some(s) => (if s.ok { 0x01 } else { 0x02 }, s.segments, s.bytes),
    };
    let (units, count) = transfer_count(bytes);
    let mut d = vec![0u8; 12];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    d[4] = status;
    d[5..7].copy_from_slice(&segments.to_be_bytes());
    d[7] = units;
    d[8..12].copy_from_slice(&count.to_be_bytes());
    d
}

/// FAILED SEGMENT DETAILS parameter data (SPC-4 §6.18.5): the status and sense data of a failed EXTENDED COPY;
/// AVAILABLE DATA 0 when it did not fail.
fn failed_segment_details(failure: Option<&(u8, Vec<u8>)>) -> Vec<u8> {
    let Some((status, sense)) = failure else {
        return vec![0; 4];
    };
    let mut d = vec![0u8; 60];
    d[56] = *status;
    d[58..60].copy_from_slice(&(sense.len() as u16).to_be_bytes());
    d.extend_from_slice(sense);
    let available = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&available.to_be_bytes());
    d
}

/// OPERATING PARAMETERS parameter data (SPC-4 §6.18.4): SNLID (LIST ID USAGE 11b is supported), the descriptor
/// limits, no inline or held data, and the implemented descriptor type codes.
fn operating_parameters() -> Vec<u8> {
    let codes = [BLOCK_TO_BLOCK, IDENTIFICATION_DESCRIPTOR];
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID
    d[8..10].copy_from_slice(&(MAX_TARGET_DESCRIPTORS as u16).to_be_bytes());
    d[10..12].copy_from_slice(&(MAX_SEGMENT_DESCRIPTORS as u16).to_be_bytes());
    d[12..16].copy_from_slice(&(MAX_DESCRIPTOR_LIST_LENGTH as u32).to_be_bytes());
    d[16..20].copy_from_slice(&u32::MAX.to_be_bytes()); // MAXIMUM SEGMENT LENGTH: segments are copied in chunks
                                                        // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0.
    d[34..36].copy_from_slice(&(MAX_RECORDS_PER_NEXUS as u16).to_be_bytes()); // TOTAL CONCURRENT COPIES
    d[36] = MAX_RECORDS_PER_NEXUS as u8; // MAXIMUM CONCURRENT COPIES
    d[37] = 9; // DATA SEGMENT GRANULARITY: 512 bytes (log2)
    d[38] = 9; // INLINE DATA GRANULARITY
    d[39] = 9; // HELD DATA GRANULARITY
    d[43] = codes.len() as u8;
    d.extend_from_slice(&codes);
    let available = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&available.to_be_bytes());
    d
}

/// The Third-party Copy VPD page (SPC-4 §7.8.17) payload: Supported Commands (0001h: EXTENDED COPY (LID1) and
/// the RECEIVE COPY RESULTS service actions), Parameter Data (0008h: the LID1 limits) and Supported Descriptors
/// (0009h) third-party copy descriptors, each padded to a multiple of four bytes.
pub(crate) fn third_party_copy_vpd_payload() -> Vec<u8> {
    let mut out = Vec::new();
    let mut descriptor = |kind: u16, body: Vec<u8>| {
        let mut b = body;
        while (b.len() + 4) % 4 != 0 {
            b.push(0);
        }
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend(b);
    };
    let mut commands = vec![0x83, 1, SA_EXTENDED_COPY_LID1 as u8];
    commands.extend_from_slice(&[
        0x84,
        4,
        SA_COPY_STATUS as u8,
        SA_RECEIVE_DATA as u8,
        SA_OPERATING_PARAMETERS as u8,
        SA_FAILED_SEGMENT_DETAILS as u8,
    ]);
    let mut supported = vec![commands.len() as u8];
    supported.extend(commands);
    descriptor(0x0001, supported);
    let mut params = vec![0u8; 28];
    params[4..6].copy_from_slice(&(MAX_TARGET_DESCRIPTORS as u16).to_be_bytes());
    params[6..8].copy_from_slice(&(MAX_SEGMENT_DESCRIPTORS as u16).to_be_bytes());
    params[8..12].copy_from_slice(&(MAX_DESCRIPTOR_LIST_LENGTH as u32).to_be_bytes());
    descriptor(0x0008, params);
    descriptor(0x0009, vec![2, BLOCK_TO_BLOCK, IDENTIFICATION_DESCRIPTOR]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Header + one identification target descriptor naming NAA `naa` (512-byte blocks) + B2B segments
    /// `(source index, destination index, blocks, source LBA, destination LBA)`; shared with tests_xcopy.rs.
    pub(crate) fn list(list_id: u8, usage: u8, naa: u64, segments: &[(u16, u16, u16, u64, u64)]) -> Vec<u8> {
        let mut p = vec![0u8; 16];
        p[0] = list_id;
        p[1] = usage << 3;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[8..12].copy_from_slice(&((segments.len() * 28) as u32).to_be_bytes());
        let mut t = vec![0u8; 32];
        t[0] = 0xE4;
        t[4] = 0x01;
        t[5] = 0x03;
        t[7] = 8;
        t[8..16].copy_from_slice(&naa.to_be_bytes());
        t[29..32].copy_from_slice(&[0, 0x02, 0x00]);
        p.extend(t);
        for &(src, dst, blocks, slba, dlba) in segments {
            let mut s = vec![0u8; 28];
            s[0] = 0x02;
            s[2..4].copy_from_slice(&0x18u16.to_be_bytes());
            s[4..6].copy_from_slice(&src.to_be_bytes());
            s[6..8].copy_from_slice(&dst.to_be_bytes());
            s[10..12].copy_from_slice(&blocks.to_be_bytes());
            s[12..20].copy_from_slice(&slba.to_be_bytes());
            s[20..28].copy_from_slice(&dlba.to_be_bytes());
            p.extend(s);
        }
        p
    }

    #[test]
    fn parses_a_block_to_block_list() {
        let p = list(7, 0, 0x6001_0000_0000_0001, &[(0, 0, 16, 0, 100)]);
        let job = parse(&p).unwrap().unwrap();
        assert_eq!(job.list_id, Some(7));
        assert!(job.hold);
        assert_eq!(job.targets.len(), 1);
        assert_eq!(job.targets[0].designator, 0x6001_0000_0000_0001u64.to_be_bytes());
        assert_eq!((job.targets[0].code_set, job.targets[0].kind, job.targets[0].block_size), (1, 3, 512));
        assert_eq!(
            job.segments,
            [BlockToBlock { source: 0, destination: 0, dc: false, blocks: 16, source_lba: 0, destination_lba: 100 }]
        );
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn header_and_list_errors() {
        let good = list(1, 0, 1, &[(0, 0, 1, 0, 1)]);
        // Truncated descriptors, trailing bytes, a short header.
        for len in [good.len() - 1, 16 + 31, 10] {
            assert_eq!(parse(&good[..len]), Err(Sense::parameter_list_length_error()), "{len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(parse(&longer), Err(Sense::parameter_list_length_error()));
        // LIST ID USAGE 01b, and 11b with a list identifier.
        let mut p = good.clone();
        p[1] = 0x08;
        assert_eq!(parse(&p), Err(Sense::invalid_field_in_param_list(1, Some(4))));
        p[1] = 0x18;
        assert_eq!(parse(&p), Err(Sense::invalid_field_in_param_list(0, None)));
        p[0] = 0;
        assert_eq!(parse(&p).unwrap().unwrap().list_id, None);
        // Inline data.
        let mut p = good.clone();
        p[15] = 4;
        assert_eq!(parse(&p), Err(Sense::inline_data_length_exceeded()));
    }

    #[test]
    fn descriptor_limits_and_types() {
        let one = list(1, 0, 1, &[(0, 0, 1, 0, 1)]);
        let target = one[16..48].to_vec();
        let segment = one[48..76].to_vec();
        let build = |targets: usize, segments: usize| {
            let mut p = one[..16].to_vec();
            p[2..4].copy_from_slice(&((targets * 32) as u16).to_be_bytes());
            p[8..12].copy_from_slice(&((segments * 28) as u32).to_be_bytes());
            for _ in 0..targets {
                p.extend_from_slice(&target);
            }
            for _ in 0..segments {
                p.extend_from_slice(&segment);
            }
            p
        };
        assert!(parse(&build(MAX_TARGET_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS)).is_ok());
        assert_eq!(parse(&build(MAX_TARGET_DESCRIPTORS + 1, 1)), Err(Sense::too_many_target_descriptors()));
        assert_eq!(parse(&build(1, MAX_SEGMENT_DESCRIPTORS + 1)), Err(Sense::too_many_segment_descriptors()));
        // Both over their limits: the list itself is too long, which is checked first.
        assert_eq!(
            parse(&build(MAX_TARGET_DESCRIPTORS + 1, MAX_SEGMENT_DESCRIPTORS + 1)),
            Err(Sense::parameter_list_length_error())
        );
        let mut p = one.clone();
        p[16] = 0xE0;
        assert_eq!(parse(&p), Err(Sense::unsupported_target_descriptor(16)));
        let mut p = one.clone();
        p[48] = 0x03;
        assert_eq!(parse(&p), Err(Sense::unsupported_segment_descriptor(48)));
        let mut p = one.clone();
        p[17] = 0x05; // a CD-ROM copy target
        assert_eq!(parse(&p), Err(Sense::invalid_field_in_param_list(17, Some(4))));
        // LU ID TYPE and NUL (obsolete in SPC-4) are ignored.
        let mut p = one.clone();
        p[17] = 0xA0;
        assert_eq!(parse(&p).unwrap().unwrap().targets, parse(&one).unwrap().unwrap().targets);
        let mut p = one;
        p[51] = 0x14;
        assert_eq!(parse(&p), Err(Sense::invalid_field_in_param_list(50, None)));
    }

    #[test]
    fn transfer_count_units() {
        assert_eq!(transfer_count(0), (0, 0));
        assert_eq!(transfer_count(1 << 20), (0, 1 << 20));
        assert_eq!(transfer_count(u64::from(u32::MAX) + 1), (1, 1 << 22));
        assert_eq!(transfer_count(u64::MAX), (4, (u64::MAX >> 40) as u32));
    }

    #[test]
    fn operating_parameters_layout() {
        let d = operating_parameters();
        assert_eq!(be32(&d, 0) as usize, d.len() - 4);
        assert_eq!(usize::from(be16(&d, 8)), MAX_TARGET_DESCRIPTORS);
        assert_eq!(usize::from(be16(&d, 10)), MAX_SEGMENT_DESCRIPTORS);
        assert_eq!(be32(&d, 12) as usize, MAX_DESCRIPTOR_LIST_LENGTH);
        assert_eq!(&d[43..], &[2, 0x02, 0xE4]);
    }

    #[test]
    fn third_party_copy_descriptors_are_padded() {
        let p = third_party_copy_vpd_payload();
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < p.len() {
            kinds.push(be16(&p, at));
            let len = usize::from(be16(&p, at + 2));
            assert_eq!((len + 4) % 4, 0);
            at += 4 + len;
        }
        assert_eq!(at, p.len());
        assert_eq!(kinds, [0x0001, 0x0008, 0x0009]);
        // Supported Commands: 83h/00h and 84h with four service actions.
        assert_eq!(&p[4..15], &[9, 0x83, 1, 0x00, 0x84, 4, 0x00, 0x01, 0x03, 0x04, 0]);
    }
}
