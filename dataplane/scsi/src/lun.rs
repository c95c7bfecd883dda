//! Target-level commands: REPORT LUNS (SPC-4 §6.33), the answer for a LUN that has no logical unit, and the
//! SAM-5 §4.7 LUN encoding shared with the iSCSI layer.

use crate::cdb::Cdb;
use crate::sense::Sense;
use crate::{opcode, Response};

/// Encodes a LUN number as the 8-byte SAM-5 LUN structure (§4.7) used in REPORT LUNS data and in the iSCSI LUN
/// field: peripheral device addressing below 256, flat space addressing below 16384, extended flat space
/// addressing (4 bytes) below 2^24, long extended flat space addressing (6 bytes) below 2^40. Larger numbers are
/// not representable as a single-level LUN and give `None`.
pub fn encode_lun(lun: u64) -> Option<[u8; 8]> {
    let b = lun.to_be_bytes();
    let mut out = [0u8; 8];
    if lun < 0x100 {
        out[1] = b[7];
    } else if lun < 0x4000 {
        out[0] = 0x40 | b[6];
        out[1] = b[7];
    } else if lun < 1 << 24 {
        out[0] = 0xD2;
        out[1..4].copy_from_slice(&b[5..8]);
    } else if lun < 1 << 40 {
        out[0] = 0xE2;
        out[1..6].copy_from_slice(&b[3..8]);
    } else {
        return None;
    }
    Some(out)
}

/// Decodes an 8-byte SAM-5 LUN structure produced by [`encode_lun`] back to the LUN number. Hierarchical
/// (multi-level) LUNs, logical unit addressing and well-known LUNs give `None`.
pub fn decode_lun(raw: [u8; 8]) -> Option<u64> {
    let tail_zero = |from: usize| raw.iter().skip(from).all(|&b| b == 0);
    match raw[0] >> 6 {
        // Peripheral device addressing with bus identifier 0.
        0b00 if raw[0] == 0 && tail_zero(2) => Some(u64::from(raw[1])),
        // Flat space addressing.
        0b01 if tail_zero(2) => Some((u64::from(raw[0] & 0x3F) << 8) | u64::from(raw[1])),
        0b11 if raw[0] == 0xD2 && tail_zero(4) => {
            Some(raw[1..4].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        }
        0b11 if raw[0] == 0xE2 && tail_zero(6) => {
            Some(raw[1..6].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        }
        _ => None,
    }
}

/// [`encode_lun`] as the big-endian `u64` the iSCSI PDU parsers keep the LUN field in.
pub fn lun_to_raw(lun: u64) -> Option<u64> {
    encode_lun(lun).map(u64::from_be_bytes)
}

/// [`decode_lun`] from the big-endian `u64` the iSCSI PDU parsers keep the LUN field in.
pub fn lun_from_raw(raw: u64) -> Option<u64> {
    decode_lun(raw.to_be_bytes())
}

/// Checks the CONTROL byte (at `cdb_len - 1`): NACA = 1 asks for ACA, which is not supported (SAM-5 §5.9), so it
/// is an invalid field in the CDB.
pub(crate) fn check_control(cdb: &[u8], cdb_len: usize) -> Result<(), Sense> {
    let at = cdb_len.saturating_sub(1);
    if Cdb(cdb).bit(at, 2) {
        return Err(Sense::invalid_field_in_cdb(at as u16, Some(2)));
    }
    Ok(())
}

/// REPORT LUNS (SPC-4 §6.33) for a target whose logical units have the LUN numbers `luns` (reported in the given
/// order; numbers [`encode_lun`] cannot represent are left out). SELECT REPORT 00h and 02h list them all, 01h
/// lists the (absent) well-known logical units; other values and an ALLOCATION LENGTH below 16 are invalid fields
/// in the CDB. The data are truncated to the allocation length.
pub fn report_luns(luns: &[u64], cdb: &[u8]) -> Response {
    match report_luns_data(luns, cdb) {
        Ok(data) => Response::good(data),
        Err(sense) => Response::check_condition(&sense),
    }
}

pub(crate) fn report_luns_data(luns: &[u64], cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    const CDB_LEN: usize = 12;
    if cdb.len() < CDB_LEN {
        return Err(Sense::invalid_field_in_cdb(0, None));
    }
    check_control(cdb, CDB_LEN)?;
    let c = Cdb(cdb);
    let alloc = c.u32(6) as usize;
    if alloc < 16 {
        return Err(Sense::invalid_field_in_cdb(6, None));
    }
    let entries: Vec<[u8; 8]> = match c.u8(2) {
        0x00 | 0x02 => luns.iter().filter_map(|&l| encode_lun(l)).collect(),
        0x01 => Vec::new(),
        _ => return Err(Sense::invalid_field_in_cdb(2, None)),
    };
    let list_len = u32::try_from(entries.len().saturating_mul(8)).unwrap_or(u32::MAX);
    let mut data = Vec::with_capacity(8 + entries.len() * 8);
    data.extend_from_slice(&list_len.to_be_bytes());
    data.extend_from_slice(&[0; 4]);
    for e in &entries {
        data.extend_from_slice(e);
    }
    data.truncate(alloc);
    Ok(data)
}

/// The answer for a command addressed to a LUN that has no logical unit (SPC-4 §4.6.4 / §6.6.2):
/// INQUIRY returns data with PERIPHERAL QUALIFIER 011b and device type 1Fh (for EVPD = 1 only the Supported VPD
/// Pages page exists); REQUEST SENSE returns sense data 05/25/00 LOGICAL UNIT NOT SUPPORTED with GOOD status; every
/// other command ends in CHECK CONDITION 05/25/00.
pub fn missing_lun(cdb: &[u8]) -> Response {
    match cdb.first().copied() {
        Some(opcode::INQUIRY) => match missing_lun_inquiry(cdb) {
            Ok(data) => Response::good(data),
            Err(sense) => Response::check_condition(&sense),
        },
        Some(opcode::REQUEST_SENSE) => {
            if let Err(sense) = check_control(cdb, 6) {
                return Response::check_condition(&sense);
            }
            let c = Cdb(cdb);
            let sense = Sense::lun_not_supported();
            let mut data = if c.bit(1, 0) { sense.to_descriptor() } else { sense.to_fixed() };
            data.truncate(usize::from(c.u8(4)));
            Response::good(data)
        }
        _ => Response::check_condition(&Sense::lun_not_supported()),
    }
}

fn missing_lun_inquiry(cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    check_control(cdb, 6)?;
    let c = Cdb(cdb);
    if c.bit(1, 1) {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let evpd = c.bit(1, 0);
    let page = c.u8(2);
    let mut data = match (evpd, page) {
        (false, 0) => {
            let mut d = vec![0u8; 36];
            d[0] = 0x7F;
            d[2] = 0x06;
            d[3] = 0x02;
            d[4] = 31;
            d[8..36].fill(b' ');
            d
        }
        (true, 0x00) => vec![0x7F, 0x00, 0x00, 0x01, 0x00],
        _ => return Err(Sense::invalid_field_in_cdb(2, None)),
    };
    data.truncate(usize::from(c.u16(3)));
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn lun_encoding_roundtrip() {
        for lun in [0u64, 1, 255, 256, 0x3FFF, 0x4000, 0xFF_FFFF, 0x100_0000, (1 << 40) - 1] {
            let raw = encode_lun(lun).unwrap();
            assert_eq!(decode_lun(raw), Some(lun), "lun {lun:#x}");
            assert_eq!(lun_from_raw(lun_to_raw(lun).unwrap()), Some(lun));
        }
        assert_eq!(encode_lun(1 << 40), None);
        assert_eq!(encode_lun(5), Some([0, 5, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(0x123), Some([0x41, 0x23, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(0x12345), Some([0xD2, 0x01, 0x23, 0x45, 0, 0, 0, 0]));
        assert_eq!(lun_to_raw(1), Some(0x0001_0000_0000_0000));
    }

    #[test]
    fn lun_decoding_rejects_other_forms() {
        // Two-level hierarchical LUN.
        assert_eq!(decode_lun([0, 1, 0, 2, 0, 0, 0, 0]), None);
        // Peripheral addressing with a non-zero bus identifier.
        assert_eq!(decode_lun([0x01, 1, 0, 0, 0, 0, 0, 0]), None);
        // Logical unit addressing.
        assert_eq!(decode_lun([0x80, 1, 0, 0, 0, 0, 0, 0]), None);
        // REPORT LUNS well-known LUN.
        assert_eq!(decode_lun([0xC1, 0x01, 0, 0, 0, 0, 0, 0]), None);
    }

    fn rl_cdb(select: u8, alloc: u32) -> [u8; 12] {
        let a = alloc.to_be_bytes();
        [0xA0, 0, select, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
    }

    #[test]
    fn report_luns_lists_entries() {
        let r = report_luns(&[0, 1, 300], &rl_cdb(0, 4096));
        assert_eq!(r.status, Status::Good);
        assert_eq!(r.sense, None);
        assert_eq!(
            r.data,
            [
                0, 0, 0, 24, 0, 0, 0, 0, //
                0, 0, 0, 0, 0, 0, 0, 0, //
                0, 1, 0, 0, 0, 0, 0, 0, //
                0x41, 0x2C, 0, 0, 0, 0, 0, 0,
            ]
        );
        assert_eq!(report_luns(&[0, 1, 300], &rl_cdb(2, 4096)).data, r.data);
    }

    #[test]
    fn report_luns_truncates_to_allocation_length() {
        let r = report_luns(&[0, 1, 2], &rl_cdb(0, 16));
        assert_eq!(r.data, [0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn report_luns_well_known_only_is_empty() {
        let r = report_luns(&[0, 1], &rl_cdb(1, 64));
        assert_eq!(r.data, [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn report_luns_errors() {
        let r = report_luns(&[0], &rl_cdb(0, 15));
        assert_eq!(r.status, Status::CheckCondition);
        assert_eq!(r.sense.unwrap(), Sense::invalid_field_in_cdb(6, None).to_fixed());
        let r = report_luns(&[0], &rl_cdb(0x10, 64));
        assert_eq!(r.sense.unwrap(), Sense::invalid_field_in_cdb(2, None).to_fixed());
        let mut cdb = rl_cdb(0, 64);
        cdb[11] = 0x04;
        let r = report_luns(&[0], &cdb);
        assert_eq!(r.sense.unwrap(), Sense::invalid_field_in_cdb(11, Some(2)).to_fixed());
        let r = report_luns(&[0], &[0xA0, 0, 0]);
        assert_eq!(r.status, Status::CheckCondition);
    }

    #[test]
    fn missing_lun_inquiry_standard() {
        let r = missing_lun(&[0x12, 0, 0, 0, 96, 0]);
        assert_eq!(r.status, Status::Good);
        assert_eq!(r.data.len(), 36);
        assert_eq!(&r.data[..5], &[0x7F, 0, 6, 2, 31]);
        let r = missing_lun(&[0x12, 0, 0, 0, 1, 0]);
        assert_eq!(r.data, [0x7F]);
    }

    #[test]
    fn missing_lun_inquiry_vpd_and_errors() {
        let r = missing_lun(&[0x12, 1, 0, 0, 255, 0]);
        assert_eq!(r.data, [0x7F, 0, 0, 1, 0]);
        let r = missing_lun(&[0x12, 1, 0x80, 0, 255, 0]);
        assert_eq!(r.sense.unwrap(), Sense::invalid_field_in_cdb(2, None).to_fixed());
        let r = missing_lun(&[0x12, 0, 0x80, 0, 255, 0]);
        assert_eq!(r.sense.unwrap(), Sense::invalid_field_in_cdb(2, None).to_fixed());
    }

    #[test]
    fn missing_lun_request_sense_and_others() {
        let r = missing_lun(&[0x03, 0, 0, 0, 252, 0]);
        assert_eq!(r.status, Status::Good);
        assert_eq!(r.data, Sense::lun_not_supported().to_fixed());
        let r = missing_lun(&[0x03, 1, 0, 0, 252, 0]);
        assert_eq!(r.data, [0x72, 0x05, 0x25, 0x00, 0, 0, 0, 0]);
        let r = missing_lun(&[0x03, 0, 0, 0, 8, 0]);
        assert_eq!(r.data.len(), 8);
        for cdb in [&[0x00u8, 0, 0, 0, 0, 0][..], &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]] {
            let r = missing_lun(cdb);
            assert_eq!(r.status, Status::CheckCondition);
            assert_eq!(r.sense.unwrap(), Sense::lun_not_supported().to_fixed());
            assert!(r.data.is_empty());
        }
    }
}
