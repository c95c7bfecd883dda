//! Panic-free reads of CDB fields.
//!
//! The dispatcher checks that a CDB is at least as long as its operation code requires before a handler runs, but
//! the readers still never index out of bounds: a byte past the end reads as zero.

/// A borrowed CDB with big-endian field readers (SPC-4 §4.2: multi-byte CDB fields are big endian).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cdb<'a>(pub(crate) &'a [u8]);

impl Cdb<'_> {
    /// Byte `i`, or 0 past the end.
    pub(crate) fn u8(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// Whether bit `bit` of byte `i` is set.
    pub(crate) fn bit(&self, i: usize, bit: u8) -> bool {
        self.u8(i) & (1 << (bit & 7)) != 0
    }

    fn be<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        for (k, b) in out.iter_mut().enumerate() {
            *b = self.u8(at.saturating_add(k));
        }
        out
    }

    pub(crate) fn u16(&self, at: usize) -> u16 {
        u16::from_be_bytes(self.be(at))
    }

    pub(crate) fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.be(at))
    }

    pub(crate) fn u64(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.be(at))
    }

    /// The 21-bit LBA of READ(6)/WRITE(6) (bytes 1..=3, upper three bits of byte 1 reserved).
    pub(crate) fn lba21(&self) -> u64 {
        (u64::from(self.u8(1) & 0x1F) << 16) | (u64::from(self.u8(2)) << 8) | u64::from(self.u8(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_zero_past_end() {
        let c = Cdb(&[0x28, 0xFF, 1, 2, 3, 4, 5, 6]);
        assert_eq!(c.u8(0), 0x28);
        assert_eq!(c.u16(2), 0x0102);
        assert_eq!(c.u32(2), 0x0102_0304);
        assert_eq!(c.u32(6), 0x0506_0000);
        assert_eq!(c.u64(2), 0x0102_0304_0506_0000);
        assert_eq!(c.u8(100), 0);
        assert_eq!(c.u64(usize::MAX), 0);
        assert!(c.bit(1, 7));
        assert_eq!(c.lba21(), 0x1F_0102);
    }
}
