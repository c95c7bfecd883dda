//! The 8-byte LUN field (SAM-5 §4.7) <-> flat LUN numbers, for REPORT LUNS and the task router.
//!
//! Single level LUN structures only:
//! * peripheral device addressing (address method 00b, bus identifier 0) for LUNs 0..=255:
//!   `00 LL 00 00 00 00 00 00`;
//! * flat space addressing (address method 01b) for LUNs 256..=16383: `01HHHHHH LL 00 00 00 00 00 00`.
//!
//! Encoding picks peripheral device addressing below 256 (what SCST, LIO and tgt report, and what initiators
//! expect for LUN 0); decoding accepts either method for any value, so `0x40 0x05 ...` is LUN 5 too.

/// Largest LUN encoded with peripheral device addressing.
pub const MAX_PERIPHERAL_LUN: u64 = 0xff;
/// Largest LUN flat space addressing can carry (14 bits).
pub const MAX_FLAT_LUN: u64 = 0x3fff;

/// Address method 00b: peripheral device addressing.
const METHOD_PERIPHERAL: u8 = 0b00;
/// Address method 01b: flat space addressing.
const METHOD_FLAT: u8 = 0b01;

/// The 8-byte LUN field (as a big-endian `u64`, the way the Reprs hold it) for a flat LUN number, or `None` above
/// [`MAX_FLAT_LUN`].
pub const fn encode_lun(lun: u64) -> Option<u64> {
    if lun <= MAX_PERIPHERAL_LUN {
        Some(lun << 48)
    } else if lun <= MAX_FLAT_LUN {
        Some(((METHOD_FLAT as u64) << 62) | (lun << 48))
    } else {
        None
    }
}

/// The flat LUN number of an 8-byte LUN field (big-endian `u64`), or `None` when the field uses an addressing this
/// target does not assign: a non-zero bus identifier, the logical unit (10b) or extended (11b) address methods, or a
/// second level (bytes 2..8 not zero). The caller answers such a LUN as a LUN that does not exist.
pub const fn decode_lun(field: u64) -> Option<u64> {
    if field & 0x0000_ffff_ffff_ffff != 0 {
        return None;
    }
    let b0 = (field >> 56) as u8;
    let b1 = (field >> 48) as u8;
    match b0 >> 6 {
        METHOD_PERIPHERAL if b0 & 0x3f == 0 => Some(b1 as u64),
        METHOD_FLAT => Some((((b0 & 0x3f) as u64) << 8) | b1 as u64),
        _ => None,
    }
}
