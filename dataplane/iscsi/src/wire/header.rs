//! [`Header::parse`] and [`Header::emit`]: BHS (+ AHS) <-> Repr for every opcode (RFC 7143 §11.3..§11.19).

use super::error::{AhsProblem, WireError};
use super::framing::padded_len;
use super::packet::Packet;
use super::*;

/// AHSType of the Extended CDB AHS (RFC 7143 §11.2.2.3).
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// AHSType of the Bidirectional Read Expected Data Transfer Length AHS (RFC 7143 §11.2.2.4).
pub const AHS_TYPE_BIDI_READ_EDTL: u8 = 2;
/// Largest AHS area TotalAHSLength can announce (255 words).
pub const MAX_AHS_LEN: usize = 255 * 4;

/// AHSLength of the Bidirectional Read EDTL AHS: the reserved byte and the 4-byte length.
const BIDI_AHS_LENGTH: u16 = 5;
/// Bytes of the Bidirectional Read EDTL AHS on the wire.
const BIDI_AHS_WIRE_LEN: usize = 8;

/// The decoded AHSs of a SCSI Command.
struct CommandAhs {
    ext_cdb: Vec<u8>,
    bidi_read_edtl: Option<u32>,
}

/// Walks the AHS area of a SCSI Command (§11.2.2): each AHS is AHSLength (2 bytes), AHSType (1 byte) and AHSLength
/// bytes of AHS-specific data (whose first byte is reserved for both defined types), padded to 4 bytes.
fn parse_command_ahs(ahs: &[u8]) -> Result<CommandAhs, WireError> {
    let mut ext_cdb: Option<Vec<u8>> = None;
    let mut bidi_read_edtl: Option<u32> = None;
    let mut off = 0usize;
    while let Some(rest) = ahs.get(off..).filter(|r| !r.is_empty()) {
        let offset = BHS_LEN + off;
        let bad = |problem| WireError::BadAhs { offset, problem };
        // The area is a multiple of 4 bytes, so at least the 4-byte AHS head is there.
        let &[l0, l1, ahs_type, ..] = rest else {
            return Err(bad(AhsProblem::Overrun { ahs_length: 0 }));
        };
        let ahs_length = u16::from_be_bytes([l0, l1]);
        let seg_len = 3 + usize::from(ahs_length);
        let seg_padded = padded_len(seg_len);
        if seg_padded > rest.len() {
            return Err(bad(AhsProblem::Overrun { ahs_length }));
        }
        // AHS-specific bytes after the reserved byte 3.
        let specific = rest.get(4..seg_len).unwrap_or_default();
        match ahs_type {
            AHS_TYPE_EXTENDED_CDB => {
                if ahs_length < 2 {
                    return Err(bad(AhsProblem::BadLength {
                        ahs_type,
                        ahs_length,
                    }));
                }
                if ext_cdb.is_some() {
                    return Err(bad(AhsProblem::Duplicate(ahs_type)));
                }
                ext_cdb = Some(specific.to_vec());
            }
            AHS_TYPE_BIDI_READ_EDTL => {
                let len: [u8; 4] = match specific.try_into() {
                    Ok(len) if ahs_length == BIDI_AHS_LENGTH => len,
                    _ => {
                        return Err(bad(AhsProblem::BadLength {
                            ahs_type,
                            ahs_length,
                        }))
                    }
                };
                if bidi_read_edtl.is_some() {
                    return Err(bad(AhsProblem::Duplicate(ahs_type)));
                }
                bidi_read_edtl = Some(u32::from_be_bytes(len));
            }
            other => return Err(bad(AhsProblem::UnknownType(other))),
        }
        off += seg_padded;
    }
    Ok(CommandAhs {
        ext_cdb: ext_cdb.unwrap_or_default(),
        bidi_read_edtl,
    })
}

impl ScsiCommand {
    /// Bytes of AHS this command needs: an Extended CDB AHS when `ext_cdb` is not empty (4 + ext_cdb, padded),
    /// a Bidirectional Read EDTL AHS (8) when `bidi_read_edtl` is set.
    pub fn ahs_len(&self) -> usize {
        let ext = if self.ext_cdb.is_empty() {
            0
        } else {
            padded_len(4 + self.ext_cdb.len())
        };
        let bidi = if self.bidi_read_edtl.is_some() {
            BIDI_AHS_WIRE_LEN
        } else {
            0
        };
        ext + bidi
    }

    /// The whole CDB: the 16 BHS bytes followed by the Extended CDB bytes.
    pub fn full_cdb(&self) -> Vec<u8> {
        let mut cdb = Vec::with_capacity(16 + self.ext_cdb.len());
        cdb.extend_from_slice(&self.cdb);
        cdb.extend_from_slice(&self.ext_cdb);
        cdb
    }

    /// Writes the AHSs into `ahs` (exactly [`ScsiCommand::ahs_len`] bytes, zeroed): Extended CDB first, as
    /// open-iscsi orders them.
    fn emit_ahs(&self, ahs: &mut [u8]) {
        let mut off = 0;
        if !self.ext_cdb.is_empty() {
            // Fits: `Header::emit` checked that the AHS area is at most 1020 bytes.
            let ahs_length = (self.ext_cdb.len() + 1) as u16;
            ahs[off..off + 2].copy_from_slice(&ahs_length.to_be_bytes());
            ahs[off + 2] = AHS_TYPE_EXTENDED_CDB;
            ahs[off + 4..off + 4 + self.ext_cdb.len()].copy_from_slice(&self.ext_cdb);
            off += padded_len(4 + self.ext_cdb.len());
        }
        if let Some(len) = self.bidi_read_edtl {
            ahs[off..off + 2].copy_from_slice(&BIDI_AHS_LENGTH.to_be_bytes());
            ahs[off + 2] = AHS_TYPE_BIDI_READ_EDTL;
            ahs[off + 4..off + 8].copy_from_slice(&len.to_be_bytes());
        }
    }
}

impl Header {
    /// Decodes the BHS and AHS in `buf` (at least `48 + TotalAHSLength * 4` bytes; trailing bytes, such as the rest
    /// of the PDU, are ignored). Never panics. See the module docs for what is checked and what is ignored.
    pub fn parse(buf: &[u8]) -> Result<Header, WireError> {
        let p = Packet::new_checked(buf)?;
        let op = p.opcode()?;
        if !op.carries_data() && p.data_segment_length() != 0 {
            return Err(WireError::InvalidField {
                opcode: op,
                field: "DataSegmentLength",
                value: p.data_segment_length(),
            });
        }
        if op != Opcode::ScsiCommand && p.total_ahs_len() != 0 {
            return Err(WireError::BadAhs {
                offset: BHS_LEN,
                problem: AhsProblem::NotAllowed,
            });
        }
        Ok(match op {
            Opcode::NopOut => Header::NopOut(NopOut {
                immediate: p.immediate(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                cmd_sn: p.cmd_sn(),
                exp_stat_sn: p.exp_stat_sn(),
            }),
            Opcode::ScsiCommand => {
                let ahs = parse_command_ahs(p.ahs())?;
                Header::ScsiCommand(ScsiCommand {
                    immediate: p.immediate(),
                    final_: p.final_(),
                    read: p.read(),
                    write: p.write(),
                    attr: p.attr(),
                    lun: p.lun(),
                    itt: p.itt(),
                    edtl: p.expected_data_transfer_length(),
                    cmd_sn: p.cmd_sn(),
                    exp_stat_sn: p.exp_stat_sn(),
                    cdb: p.cdb(),
                    ext_cdb: ahs.ext_cdb,
                    bidi_read_edtl: ahs.bidi_read_edtl,
                })
            }
            Opcode::TaskMgmtRequest => Header::TaskMgmtRequest(TaskMgmtRequest {
                immediate: p.immediate(),
                function: p.function(),
                lun: p.lun(),
                itt: p.itt(),
                rtt: p.rtt(),
                cmd_sn: p.cmd_sn(),
                exp_stat_sn: p.exp_stat_sn(),
                ref_cmd_sn: p.ref_cmd_sn(),
                exp_data_sn: p.exp_data_sn(),
            }),
            Opcode::LoginRequest => Header::LoginRequest(LoginRequest {
                transit: p.transit(),
                continue_: p.continue_(),
                csg: p.csg(),
                nsg: p.nsg(),
                version_max: p.version_max(),
                version_min: p.version_min(),
                isid: p.isid(),
                tsih: p.tsih(),
                itt: p.itt(),
                cid: p.cid(),
                cmd_sn: p.cmd_sn(),
                exp_stat_sn: p.exp_stat_sn(),
            }),
            Opcode::TextRequest => Header::TextRequest(TextRequest {
                immediate: p.immediate(),
                final_: p.final_(),
                continue_: p.continue_(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                cmd_sn: p.cmd_sn(),
                exp_stat_sn: p.exp_stat_sn(),
            }),
            Opcode::DataOut => Header::DataOut(DataOut {
                final_: p.final_(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                exp_stat_sn: p.exp_stat_sn(),
                data_sn: p.data_sn(),
                buffer_offset: p.buffer_offset(),
            }),
            Opcode::LogoutRequest => Header::LogoutRequest(LogoutRequest {
                immediate: p.immediate(),
                reason: p.logout_reason(),
                itt: p.itt(),
                cid: p.cid(),
                cmd_sn: p.cmd_sn(),
                exp_stat_sn: p.exp_stat_sn(),
            }),
            Opcode::SnackRequest => Header::SnackRequest(SnackRequest {
                snack_type: p.snack_type(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                exp_stat_sn: p.exp_stat_sn(),
                beg_run: p.beg_run(),
                run_length: p.run_length(),
            }),
            Opcode::NopIn => Header::NopIn(NopIn {
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
            }),
            Opcode::ScsiResponse => Header::ScsiResponse(ScsiResponse {
                bidi_overflow: p.bidi_overflow(),
                bidi_underflow: p.bidi_underflow(),
                overflow: p.overflow(),
                underflow: p.underflow(),
                response: p.response(),
                status: p.status(),
                itt: p.itt(),
                snack_tag: p.snack_tag(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                exp_data_sn: p.exp_data_sn(),
                bidi_residual: p.bidi_residual_count(),
                residual: p.residual_count(),
            }),
            Opcode::TaskMgmtResponse => Header::TaskMgmtResponse(TaskMgmtResponse {
                response: p.response(),
                itt: p.itt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
            }),
            Opcode::LoginResponse => Header::LoginResponse(LoginResponse {
                transit: p.transit(),
                continue_: p.continue_(),
                csg: p.csg(),
                nsg: p.nsg(),
                version_max: p.version_max(),
                version_active: p.version_active(),
                isid: p.isid(),
                tsih: p.tsih(),
                itt: p.itt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                status_class: p.status_class(),
                status_detail: p.status_detail(),
            }),
            Opcode::TextResponse => Header::TextResponse(TextResponse {
                final_: p.final_(),
                continue_: p.continue_(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
            }),
            Opcode::DataIn => {
                let s = p.status_flag();
                Header::DataIn(DataIn {
                    final_: p.final_(),
                    ack: p.ack(),
                    overflow: p.overflow(),
                    underflow: p.underflow(),
                    status: s.then(|| p.status()),
                    lun: p.lun(),
                    itt: p.itt(),
                    ttt: p.ttt(),
                    // "StatSN or Reserved" (§11.7): reserved without the S bit.
                    stat_sn: if s { p.stat_sn() } else { SerialNumber(0) },
                    exp_cmd_sn: p.exp_cmd_sn(),
                    max_cmd_sn: p.max_cmd_sn(),
                    data_sn: p.data_sn(),
                    buffer_offset: p.buffer_offset(),
                    residual: p.residual_count(),
                })
            }
            Opcode::LogoutResponse => Header::LogoutResponse(LogoutResponse {
                response: p.response(),
                itt: p.itt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                time2wait: p.time2wait(),
                time2retain: p.time2retain(),
            }),
            Opcode::R2t => Header::R2t(R2t {
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.ttt(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                r2t_sn: p.r2t_sn(),
                buffer_offset: p.buffer_offset(),
                desired_len: p.desired_data_transfer_length(),
            }),
            Opcode::AsyncMessage => Header::AsyncMessage(AsyncMessage {
                lun: p.lun(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                event: p.async_event(),
                vcode: p.async_vcode(),
                param1: p.parameter1(),
                param2: p.parameter2(),
                param3: p.parameter3(),
            }),
            Opcode::Reject => Header::Reject(Reject {
                reason: p.reason(),
                stat_sn: p.stat_sn(),
                exp_cmd_sn: p.exp_cmd_sn(),
                max_cmd_sn: p.max_cmd_sn(),
                data_sn: p.data_sn(),
            }),
        })
    }

    /// Bytes of AHS this header carries (only a SCSI Command has any).
    pub fn ahs_len(&self) -> usize {
        match self {
            Header::ScsiCommand(c) => c.ahs_len(),
            _ => 0,
        }
    }

    /// Bytes [`Header::emit`] writes: the 48-byte BHS plus the AHS.
    pub fn buffer_len(&self) -> usize {
        BHS_LEN + self.ahs_len()
    }

    /// Writes the BHS (and AHS) into `out[..self.buffer_len()]` with DataSegmentLength `data_segment_len`, all
    /// reserved fields zero, and returns the number of bytes written.
    ///
    /// Bit fields are masked to their width (ATTR 3 bits, Function and Reason Code 7, SNACK type 4, CSG/NSG 2).
    /// F is set on the PDUs whose §11 layout draws it as a constant 1; the I bit of a Login Request is always set;
    /// the ITT of Reject and Asynchronous Message is 0xffffffff; a Data-In carries Status and StatSN only with
    /// `status: Some(_)` (S bit).
    ///
    /// Errors (all caller errors): [`WireError::BufferTooSmall`], [`WireError::DataSegmentTooLong`] above 2^24 - 1,
    /// [`WireError::AhsTooLong`] when the AHSs of a SCSI Command exceed 1020 bytes.
    pub fn emit(&self, data_segment_len: u32, out: &mut [u8]) -> Result<usize, WireError> {
        let ahs_len = self.ahs_len();
        if ahs_len > MAX_AHS_LEN {
            return Err(WireError::AhsTooLong { len: ahs_len });
        }
        if data_segment_len > MAX_DATA_SEGMENT_LEN {
            return Err(WireError::DataSegmentTooLong {
                len: data_segment_len,
                max: MAX_DATA_SEGMENT_LEN,
            });
        }
        let need = BHS_LEN + ahs_len;
        let have = out.len();
        let buf = out
            .get_mut(..need)
            .ok_or(WireError::BufferTooSmall { need, have })?;
        buf.fill(0);
        let mut p = Packet::new_unchecked(buf);
        let op = self.opcode();
        p.set_opcode(op);
        p.set_immediate(self.immediate());
        p.set_total_ahs_len((ahs_len / 4) as u8);
        p.set_data_segment_length(data_segment_len);
        match self {
            Header::NopOut(h) => {
                p.set_final(true);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
            }
            Header::ScsiCommand(h) => {
                p.set_final(h.final_);
                p.set_read(h.read);
                p.set_write(h.write);
                p.set_attr(h.attr);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_expected_data_transfer_length(h.edtl);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
                p.set_cdb(&h.cdb);
                h.emit_ahs(p.ahs_mut());
            }
            Header::TaskMgmtRequest(h) => {
                p.set_final(true);
                p.set_function(h.function);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_rtt(h.rtt);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
                p.set_ref_cmd_sn(h.ref_cmd_sn);
                p.set_exp_data_sn(h.exp_data_sn);
            }
            Header::LoginRequest(h) => {
                p.set_transit(h.transit);
                p.set_continue(h.continue_);
                p.set_csg(h.csg);
                p.set_nsg(h.nsg);
                p.set_version_max(h.version_max);
                p.set_version_min(h.version_min);
                p.set_isid(h.isid);
                p.set_tsih(h.tsih);
                p.set_itt(h.itt);
                p.set_cid(h.cid);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
            }
            Header::TextRequest(h) => {
                p.set_final(h.final_);
                p.set_continue(h.continue_);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
            }
            Header::DataOut(h) => {
                p.set_final(h.final_);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_exp_stat_sn(h.exp_stat_sn);
                p.set_data_sn(h.data_sn);
                p.set_buffer_offset(h.buffer_offset);
            }
            Header::LogoutRequest(h) => {
                p.set_final(true);
                p.set_logout_reason(h.reason);
                p.set_itt(h.itt);
                p.set_cid(h.cid);
                p.set_cmd_sn(h.cmd_sn);
                p.set_exp_stat_sn(h.exp_stat_sn);
            }
            Header::SnackRequest(h) => {
                p.set_final(true);
                p.set_snack_type(h.snack_type);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_exp_stat_sn(h.exp_stat_sn);
                p.set_beg_run(h.beg_run);
                p.set_run_length(h.run_length);
            }
            Header::NopIn(h) => {
                p.set_final(true);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
            }
            Header::ScsiResponse(h) => {
                p.set_final(true);
                p.set_bidi_overflow(h.bidi_overflow);
                p.set_bidi_underflow(h.bidi_underflow);
                p.set_overflow(h.overflow);
                p.set_underflow(h.underflow);
                p.set_response(h.response);
                p.set_status(h.status);
                p.set_itt(h.itt);
                p.set_snack_tag(h.snack_tag);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_exp_data_sn(h.exp_data_sn);
                p.set_bidi_residual_count(h.bidi_residual);
                p.set_residual_count(h.residual);
            }
            Header::TaskMgmtResponse(h) => {
                p.set_final(true);
                p.set_response(h.response);
                p.set_itt(h.itt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
            }
            Header::LoginResponse(h) => {
                p.set_transit(h.transit);
                p.set_continue(h.continue_);
                p.set_csg(h.csg);
                p.set_nsg(h.nsg);
                p.set_version_max(h.version_max);
                p.set_version_active(h.version_active);
                p.set_isid(h.isid);
                p.set_tsih(h.tsih);
                p.set_itt(h.itt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_status_class(h.status_class);
                p.set_status_detail(h.status_detail);
            }
            Header::TextResponse(h) => {
                p.set_final(h.final_);
                p.set_continue(h.continue_);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
            }
            Header::DataIn(h) => {
                p.set_final(h.final_);
                p.set_ack(h.ack);
                p.set_overflow(h.overflow);
                p.set_underflow(h.underflow);
                if let Some(status) = h.status {
                    p.set_status_flag(true);
                    p.set_status(status);
                    p.set_stat_sn(h.stat_sn);
                }
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_data_sn(h.data_sn);
                p.set_buffer_offset(h.buffer_offset);
                p.set_residual_count(h.residual);
            }
            Header::LogoutResponse(h) => {
                p.set_final(true);
                p.set_response(h.response);
                p.set_itt(h.itt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_time2wait(h.time2wait);
                p.set_time2retain(h.time2retain);
            }
            Header::R2t(h) => {
                p.set_final(true);
                p.set_lun(h.lun);
                p.set_itt(h.itt);
                p.set_ttt(h.ttt);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_r2t_sn(h.r2t_sn);
                p.set_buffer_offset(h.buffer_offset);
                p.set_desired_data_transfer_length(h.desired_len);
            }
            Header::AsyncMessage(h) => {
                p.set_final(true);
                p.set_lun(h.lun);
                p.set_itt(RESERVED_TAG);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_async_event(h.event);
                p.set_async_vcode(h.vcode);
                p.set_parameter1(h.param1);
                p.set_parameter2(h.param2);
                p.set_parameter3(h.param3);
            }
            Header::Reject(h) => {
                p.set_final(true);
                p.set_reason(h.reason);
                p.set_itt(RESERVED_TAG);
                p.set_stat_sn(h.stat_sn);
                p.set_exp_cmd_sn(h.exp_cmd_sn);
                p.set_max_cmd_sn(h.max_cmd_sn);
                p.set_data_sn(h.data_sn);
            }
        }
        Ok(need)
    }

    /// [`Header::emit`] into a new vector of [`Header::buffer_len`] bytes.
    pub fn to_vec(&self, data_segment_len: u32) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(data_segment_len, &mut v)?;
        Ok(v)
    }

    /// The opcode of this PDU.
    pub fn opcode(&self) -> Opcode {
        match self {
            Header::NopOut(_) => Opcode::NopOut,
            Header::ScsiCommand(_) => Opcode::ScsiCommand,
            Header::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
            Header::LoginRequest(_) => Opcode::LoginRequest,
            Header::TextRequest(_) => Opcode::TextRequest,
            Header::DataOut(_) => Opcode::DataOut,
            Header::LogoutRequest(_) => Opcode::LogoutRequest,
            Header::SnackRequest(_) => Opcode::SnackRequest,
            Header::NopIn(_) => Opcode::NopIn,
            Header::ScsiResponse(_) => Opcode::ScsiResponse,
            Header::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
            Header::LoginResponse(_) => Opcode::LoginResponse,
            Header::TextResponse(_) => Opcode::TextResponse,
            Header::DataIn(_) => Opcode::DataIn,
            Header::LogoutResponse(_) => Opcode::LogoutResponse,
            Header::R2t(_) => Opcode::R2t,
            Header::AsyncMessage(_) => Opcode::AsyncMessage,
            Header::Reject(_) => Opcode::Reject,
        }
    }

    /// The Initiator Task Tag; [`RESERVED_TAG`] for Reject and Asynchronous Message, which carry 0xffffffff.
    pub fn itt(&self) -> u32 {
        match self {
            Header::NopOut(h) => h.itt,
            Header::ScsiCommand(h) => h.itt,
            Header::TaskMgmtRequest(h) => h.itt,
            Header::LoginRequest(h) => h.itt,
            Header::TextRequest(h) => h.itt,
            Header::DataOut(h) => h.itt,
            Header::LogoutRequest(h) => h.itt,
            Header::SnackRequest(h) => h.itt,
            Header::NopIn(h) => h.itt,
            Header::ScsiResponse(h) => h.itt,
            Header::TaskMgmtResponse(h) => h.itt,
            Header::LoginResponse(h) => h.itt,
            Header::TextResponse(h) => h.itt,
            Header::DataIn(h) => h.itt,
            Header::LogoutResponse(h) => h.itt,
            Header::R2t(h) => h.itt,
            Header::AsyncMessage(_) | Header::Reject(_) => RESERVED_TAG,
        }
    }

    /// The I bit: immediate delivery (§3.2.2.1). Always true for a Login Request, false for PDUs without the bit.
    pub fn immediate(&self) -> bool {
        match self {
            Header::NopOut(h) => h.immediate,
            Header::ScsiCommand(h) => h.immediate,
            Header::TaskMgmtRequest(h) => h.immediate,
            Header::LoginRequest(_) => true,
            Header::TextRequest(h) => h.immediate,
            Header::LogoutRequest(h) => h.immediate,
            _ => false,
        }
    }

    /// The F bit for the PDUs where it varies (SCSI Command, Data-Out/In, Text Request/Response) or the T bit of
    /// Login PDUs; true for the others, whose §11 layout fixes it to 1.
    pub fn final_(&self) -> bool {
        match self {
            Header::ScsiCommand(h) => h.final_,
            Header::DataOut(h) => h.final_,
            Header::DataIn(h) => h.final_,
            Header::TextRequest(h) => h.final_,
            Header::TextResponse(h) => h.final_,
            Header::LoginRequest(h) => h.transit,
            Header::LoginResponse(h) => h.transit,
            _ => true,
        }
    }

    /// The LUN field, for the PDUs that carry one (possibly "or Reserved": TMF Request, Data-In, NOP, Text, SNACK,
    /// Async Message).
    pub fn lun(&self) -> Option<u64> {
        match self {
            Header::NopOut(h) => Some(h.lun),
            Header::ScsiCommand(h) => Some(h.lun),
            Header::TaskMgmtRequest(h) => Some(h.lun),
            Header::TextRequest(h) => Some(h.lun),
            Header::DataOut(h) => Some(h.lun),
            Header::SnackRequest(h) => Some(h.lun),
            Header::NopIn(h) => Some(h.lun),
            Header::TextResponse(h) => Some(h.lun),
            Header::DataIn(h) => Some(h.lun),
            Header::R2t(h) => Some(h.lun),
            Header::AsyncMessage(h) => Some(h.lun),
            _ => None,
        }
    }

    /// The Target Transfer Tag, for the PDUs that carry one.
    pub fn ttt(&self) -> Option<u32> {
        match self {
            Header::NopOut(h) => Some(h.ttt),
            Header::TextRequest(h) => Some(h.ttt),
            Header::DataOut(h) => Some(h.ttt),
            Header::SnackRequest(h) => Some(h.ttt),
            Header::NopIn(h) => Some(h.ttt),
            Header::TextResponse(h) => Some(h.ttt),
            Header::DataIn(h) => Some(h.ttt),
            Header::R2t(h) => Some(h.ttt),
            _ => None,
        }
    }

    /// CmdSN, for the initiator PDUs that carry one (all but Data-Out and SNACK).
    pub fn cmd_sn(&self) -> Option<SerialNumber> {
        match self {
            Header::NopOut(h) => Some(h.cmd_sn),
            Header::ScsiCommand(h) => Some(h.cmd_sn),
            Header::TaskMgmtRequest(h) => Some(h.cmd_sn),
            Header::LoginRequest(h) => Some(h.cmd_sn),
            Header::TextRequest(h) => Some(h.cmd_sn),
            Header::LogoutRequest(h) => Some(h.cmd_sn),
            _ => None,
        }
    }

    /// ExpStatSN, carried by every initiator PDU (reserved in a first Login Request, §11.12.8).
    pub fn exp_stat_sn(&self) -> Option<SerialNumber> {
        match self {
            Header::NopOut(h) => Some(h.exp_stat_sn),
            Header::ScsiCommand(h) => Some(h.exp_stat_sn),
            Header::TaskMgmtRequest(h) => Some(h.exp_stat_sn),
            Header::LoginRequest(h) => Some(h.exp_stat_sn),
            Header::TextRequest(h) => Some(h.exp_stat_sn),
            Header::DataOut(h) => Some(h.exp_stat_sn),
            Header::LogoutRequest(h) => Some(h.exp_stat_sn),
            Header::SnackRequest(h) => Some(h.exp_stat_sn),
            _ => None,
        }
    }

    /// StatSN of a target PDU that carries one (a Data-In only with status; R2T carries one but does not advance it).
    pub fn stat_sn(&self) -> Option<SerialNumber> {
        match self {
            Header::NopIn(h) => Some(h.stat_sn),
            Header::ScsiResponse(h) => Some(h.stat_sn),
            Header::TaskMgmtResponse(h) => Some(h.stat_sn),
            Header::LoginResponse(h) => Some(h.stat_sn),
            Header::TextResponse(h) => Some(h.stat_sn),
            Header::DataIn(h) => h.status.map(|_| h.stat_sn),
            Header::LogoutResponse(h) => Some(h.stat_sn),
            Header::R2t(h) => Some(h.stat_sn),
            Header::AsyncMessage(h) => Some(h.stat_sn),
            Header::Reject(h) => Some(h.stat_sn),
            _ => None,
        }
    }

    /// True for PDUs an initiator sends.
    pub fn is_initiator(&self) -> bool {
        self.opcode().is_initiator()
    }
}
