//! Where the parts of a PDU lie on the wire (RFC 7143 §11.1, §11.2).
//!
//! ```text
//! 0                48             header_len   data_offset              data_digest_offset   total_len
//! | BHS            | AHS (TAL*4)  | HDigest?  | data (DSL) | pad (0..3) | DDigest?            |
//! ```
//! The header digest, when in force, follows the AHS on every PDU. The data digest, when in force, follows the
//! padded data segment only when there is one (DataSegmentLength > 0), as open-iscsi, LIO, SCST and SPDK frame it.

use std::ops::Range;

use super::digest::{self, DIGEST_LEN};
use super::error::{DigestKind, WireError};
use super::packet::Packet;
use super::{Header, BHS_LEN, MAX_DATA_SEGMENT_LEN};

/// Number of padding bytes after a segment of `n` bytes to reach a multiple of 4 (0..=3, RFC 7143 §11.1).
pub const fn pad_len(n: usize) -> usize {
    n.wrapping_neg() & 3
}

/// `n` rounded up to a multiple of 4.
pub const fn padded_len(n: usize) -> usize {
    n + pad_len(n)
}

/// Which digests are in force on a connection (negotiated HeaderDigest/DataDigest, RFC 7143 §13.1; never during
/// login: "this digest MUST be used for every PDU in the Full Feature Phase").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

impl Digests {
    /// No digests (login phase, or HeaderDigest=None, DataDigest=None).
    pub const NONE: Digests = Digests {
        header: false,
        data: false,
    };
    /// Both CRC32C digests.
    pub const BOTH: Digests = Digests {
        header: true,
        data: true,
    };
}

/// The lengths and offsets of one PDU on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Framing {
    ahs_len: usize,
    data_len: usize,
    digests: Digests,
}

impl Framing {
    /// Framing of a received PDU from (at least) its first 48 bytes.
    ///
    /// Fails with [`WireError::Truncated`] when `bhs` holds fewer than 48 bytes and with
    /// [`WireError::DataSegmentTooLong`] when DataSegmentLength exceeds `max_data_segment_len` (the
    /// MaxRecvDataSegmentLength this side declared; 8192 during login, RFC 7143 §13.12). The opcode is not
    /// looked at: [`Header::parse`] judges it once the header is complete.
    pub fn parse(
        bhs: &[u8],
        digests: Digests,
        max_data_segment_len: u32,
    ) -> Result<Framing, WireError> {
        let head = bhs.get(..BHS_LEN).ok_or(WireError::Truncated {
            need: BHS_LEN,
            have: bhs.len(),
        })?;
        let p = Packet::new_unchecked(head);
        let dsl = p.data_segment_length();
        if dsl > max_data_segment_len {
            return Err(WireError::DataSegmentTooLong {
                len: dsl,
                max: max_data_segment_len,
            });
        }
        Ok(Framing::new(p.total_ahs_len(), dsl, digests))
    }

    /// Framing from the two length fields (TotalAHSLength in 4-byte words, DataSegmentLength in bytes; values
    /// above 2^24 - 1 are clamped to the field's width).
    pub const fn new(total_ahs_len: u8, data_segment_len: u32, digests: Digests) -> Framing {
        let dsl = if data_segment_len > MAX_DATA_SEGMENT_LEN {
            MAX_DATA_SEGMENT_LEN
        } else {
            data_segment_len
        };
        Framing {
            ahs_len: total_ahs_len as usize * 4,
            data_len: dsl as usize,
            digests,
        }
    }

    /// Framing of a PDU about to be sent with `header` and a data segment of `data_segment_len` bytes.
    pub fn for_header(header: &Header, data_segment_len: u32, digests: Digests) -> Framing {
        let words = (header.ahs_len() / 4).min(255) as u8;
        Framing::new(words, data_segment_len, digests)
    }

    /// The digests this framing assumes.
    pub const fn digests(&self) -> Digests {
        self.digests
    }

    /// Length of the AHS area (TotalAHSLength * 4).
    pub const fn ahs_len(&self) -> usize {
        self.ahs_len
    }

    /// DataSegmentLength: the data bytes, without padding.
    pub const fn data_len(&self) -> usize {
        self.data_len
    }

    /// Padding after the data segment (0..=3).
    pub const fn pad_len(&self) -> usize {
        pad_len(self.data_len)
    }

    /// BHS + AHS: what [`Header::parse`] wants and what the header digest covers.
    pub const fn header_len(&self) -> usize {
        BHS_LEN + self.ahs_len
    }

    /// `0..header_len()`.
    pub const fn header_range(&self) -> Range<usize> {
        0..self.header_len()
    }

    /// The AHS area.
    pub const fn ahs_range(&self) -> Range<usize> {
        BHS_LEN..self.header_len()
    }

    /// Offset of the header digest, when header digests are in force.
    pub const fn header_digest_offset(&self) -> Option<usize> {
        if self.digests.header {
            Some(self.header_len())
        } else {
            None
        }
    }

    /// Offset of the data segment (also where it would start when there is none).
    pub const fn data_offset(&self) -> usize {
        self.header_len() + if self.digests.header { DIGEST_LEN } else { 0 }
    }

    /// The data bytes, without padding.
    pub const fn data_range(&self) -> Range<usize> {
        self.data_offset()..self.data_offset() + self.data_len
    }

    /// The data bytes and their padding: what the data digest covers.
    pub const fn padded_data_range(&self) -> Range<usize> {
        self.data_offset()..self.data_offset() + padded_len(self.data_len)
    }

    /// Whether this PDU carries a data digest (data digests in force and a non-empty data segment).
    pub const fn has_data_digest(&self) -> bool {
        self.digests.data && self.data_len > 0
    }

    /// Offset of the data digest, when the PDU carries one.
    pub const fn data_digest_offset(&self) -> Option<usize> {
        if self.has_data_digest() {
            Some(self.data_offset() + padded_len(self.data_len))
        } else {
            None
        }
    }

    /// Length of the whole PDU on the wire.
    pub const fn total_len(&self) -> usize {
        self.data_offset()
            + padded_len(self.data_len)
            + if self.has_data_digest() {
                DIGEST_LEN
            } else {
                0
            }
    }

    /// Checks the header digest of a PDU whose first [`Framing::data_offset`] bytes are in `pdu`. Succeeds when
    /// header digests are not in force.
    pub fn check_header_digest(&self, pdu: &[u8]) -> Result<(), WireError> {
        let Some(at) = self.header_digest_offset() else {
            return Ok(());
        };
        let need = at + DIGEST_LEN;
        let header = pdu.get(..at).ok_or(WireError::Truncated {
            need,
            have: pdu.len(),
        })?;
        let wire = pdu.get(at..need).ok_or(WireError::Truncated {
            need,
            have: pdu.len(),
        })?;
        digest::check(DigestKind::Header, digest::header_digest(header), wire)
    }

    /// Checks the data digest of a complete PDU in `pdu`: the CRC covers the data and the padding bytes as
    /// received. Succeeds when the PDU carries no data digest.
    pub fn check_data_digest(&self, pdu: &[u8]) -> Result<(), WireError> {
        let Some(at) = self.data_digest_offset() else {
            return Ok(());
        };
        let need = at + DIGEST_LEN;
        let covered = pdu
            .get(self.padded_data_range())
            .ok_or(WireError::Truncated {
                need,
                have: pdu.len(),
            })?;
        let wire = pdu.get(at..need).ok_or(WireError::Truncated {
            need,
            have: pdu.len(),
        })?;
        digest::check(DigestKind::Data, digest::crc32c(covered), wire)
    }

    /// Checks both digests of a complete PDU.
    pub fn check_digests(&self, pdu: &[u8]) -> Result<(), WireError> {
        self.check_header_digest(pdu)?;
        self.check_data_digest(pdu)
    }

    /// Completes a PDU assembled in one buffer of at least [`Framing::total_len`] bytes whose header and data are in
    /// place: zeroes the padding and writes the digests in force.
    pub fn seal(&self, pdu: &mut [u8]) -> Result<(), WireError> {
        let total = self.total_len();
        let have = pdu.len();
        let pdu = pdu
            .get_mut(..total)
            .ok_or(WireError::BufferTooSmall { need: total, have })?;
        let data_end = self.data_range().end;
        if let Some(pad) = pdu.get_mut(data_end..data_end + self.pad_len()) {
            pad.fill(0);
        }
        if let Some(at) = self.header_digest_offset() {
            let d =
                digest::digest_to_wire(digest::header_digest(pdu.get(..at).unwrap_or_default()));
            if let Some(w) = pdu.get_mut(at..at + DIGEST_LEN) {
                w.copy_from_slice(&d);
            }
        }
        if let Some(at) = self.data_digest_offset() {
            let d = digest::digest_to_wire(digest::crc32c(
                pdu.get(self.padded_data_range()).unwrap_or_default(),
            ));
            if let Some(w) = pdu.get_mut(at..at + DIGEST_LEN) {
                w.copy_from_slice(&d);
            }
        }
        Ok(())
    }
}
