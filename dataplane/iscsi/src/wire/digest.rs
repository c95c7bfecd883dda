//! CRC32C header and data digests (RFC 7143 §13.1, §11.2; the examples of RFC 3720 Appendix B.4).
//!
//! The digest is the CRC32C (Castagnoli, generator 0x11EDC6F41, register preset to all ones, result complemented)
//! of the covered bytes: the BHS and AHS for the header digest, the data segment and its padding for the data
//! digest ("Padding bytes, when present in a segment covered by a CRC, SHOULD be set to 0 and are included in the
//! CRC", §13.1).
//!
//! Byte order on the wire: the RFC 3720 B.4 examples show 32 zero bytes followed by the digest bytes
//! `aa 36 91 8a`, i.e. the CRC value 0x8a9136aa in little-endian order. That is the order Linux (open-iscsi, LIO),
//! SCST and SPDK put on the wire; [`digest_to_wire`] and [`digest_from_wire`] do the conversion.

use super::error::{DigestKind, WireError};
use super::framing::pad_len;

/// Length of a digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// CRC32C of `data` (hardware accelerated where the CPU allows).
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// The header digest: CRC32C over the BHS followed by its AHS (pass exactly `48 + TotalAHSLength * 4` bytes).
pub fn header_digest(header: &[u8]) -> u32 {
    crc32c(header)
}

/// The data digest of a data segment: CRC32C over `data` followed by `pad_len(data.len())` zero bytes.
pub fn data_digest(data: &[u8]) -> u32 {
    let mut d = DataDigest::new();
    d.update(data);
    d.finish_zero_padded()
}

/// The 4 bytes that carry digest `value` on the wire (least significant byte first, see the module docs).
pub const fn digest_to_wire(value: u32) -> [u8; DIGEST_LEN] {
    value.to_le_bytes()
}

/// The digest value carried by 4 wire bytes.
pub const fn digest_from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// Checks the 4 digest bytes `wire` (the slice must hold at least 4 bytes) against `computed`.
pub(crate) fn check(kind: DigestKind, computed: u32, wire: &[u8]) -> Result<(), WireError> {
    let bytes: [u8; DIGEST_LEN] = wire
        .get(..DIGEST_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(WireError::Truncated {
            need: DIGEST_LEN,
            have: wire.len(),
        })?;
    let received = digest_from_wire(bytes);
    if received == computed {
        Ok(())
    } else {
        Err(WireError::DigestMismatch {
            kind,
            received,
            computed,
        })
    }
}

/// An incremental CRC32C, for a data segment held in several buffers (a scatter-gather list of `Bytes`).
///
/// ```
/// use polltgt_iscsi::wire::{data_digest, DataDigest};
/// let mut d = DataDigest::new();
/// d.update(b"hello ");
/// d.update(b"world");
/// assert_eq!(d.finish_zero_padded(), data_digest(b"hello world"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDigest {
    crc: u32,
    len: usize,
}

impl DataDigest {
    /// A digest over no bytes yet.
    pub const fn new() -> DataDigest {
        DataDigest { crc: 0, len: 0 }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.crc = ::crc32c::crc32c_append(self.crc, bytes);
        self.len = self.len.wrapping_add(bytes.len());
    }

    /// How many bytes were fed.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when no byte was fed.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The CRC32C of exactly the bytes fed (use when the padding bytes as received were fed too).
    pub const fn finish(&self) -> u32 {
        self.crc
    }

    /// The CRC32C of the bytes fed followed by the zero padding to the next multiple of 4 (use when sending).
    pub fn finish_zero_padded(&self) -> u32 {
        let pad = [0u8; 3];
        match pad.get(..pad_len(self.len)) {
            Some(p) => ::crc32c::crc32c_append(self.crc, p),
            None => self.crc,
        }
    }
}
