//! RFC 1982 serial number arithmetic for CmdSN, StatSN, DataSN, R2TSN and ExpCmdSN (RFC 7143 §4.2.2.1 and §3.2.2.1
//! "all sequence numbers are compared using serial arithmetic").

use std::cmp::Ordering;
use std::fmt;

/// A 32-bit sequence number compared with RFC 1982 serial arithmetic (SERIAL_BITS = 32).
///
/// `a < b` iff `(a < b and b - a < 2^31) or (a > b and a - b > 2^31)`. Two numbers exactly 2^31 apart are
/// incomparable: `partial_cmp` answers `None` for them, so every `<`/`>` between them is false.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SerialNumber(pub u32);

impl SerialNumber {
    /// `self + n` modulo 2^32. RFC 1982 §3.1 allows additions of at most 2^31 - 1.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, n: u32) -> SerialNumber {
        debug_assert!(n < 1 << 31, "RFC 1982 serial addition out of range");
        SerialNumber(self.0.wrapping_add(n))
    }

    /// The next number (`self + 1`).
    pub fn next(self) -> SerialNumber {
        SerialNumber(self.0.wrapping_add(1))
    }

    /// `self - 1`, modulo 2^32.
    pub fn prev(self) -> SerialNumber {
        SerialNumber(self.0.wrapping_sub(1))
    }

    /// Distance from `earlier` to `self` going forward, modulo 2^32.
    pub fn distance_from(self, earlier: SerialNumber) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// True when `self` lies in the closed window `[lo, hi]` in serial order. A window whose `hi` is before `lo`
    /// (such as MaxCmdSN = ExpCmdSN - 1, RFC 7143 §4.2.2.1 "queue full") is empty.
    pub fn in_window(self, lo: SerialNumber, hi: SerialNumber) -> bool {
        let span = hi.distance_from(lo);
        span < 1 << 31 && self.distance_from(lo) <= span
    }
}

impl PartialOrd for SerialNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let (a, b) = (self.0, other.0);
        if a == b {
            return Some(Ordering::Equal);
        }
        let d = b.wrapping_sub(a);
        match d.cmp(&(1u32 << 31)) {
            Ordering::Less => Some(Ordering::Less),
            Ordering::Greater => Some(Ordering::Greater),
            Ordering::Equal => None,
        }
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SN({})", self.0)
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for SerialNumber {
    fn from(v: u32) -> Self {
        SerialNumber(v)
    }
}

#[cfg(test)]
mod tests {
    use super::SerialNumber as S;

    #[test]
    fn ordinary_order() {
        assert!(S(1) < S(2));
        assert!(S(2) > S(1));
        assert!(S(5) <= S(5));
    }

    #[test]
    fn wraps_around() {
        assert!(S(u32::MAX) < S(0));
        assert!(S(0) > S(u32::MAX));
        assert!(S(0xffff_fff0) < S(0x10));
        assert_eq!(S(u32::MAX).next(), S(0));
        assert_eq!(S(0).prev(), S(u32::MAX));
    }

    #[test]
    fn half_way_is_incomparable() {
        let a = S(0);
        let b = S(1 << 31);
        assert_eq!(a.partial_cmp(&b), None);
        assert!(!a.lt(&b) && !a.gt(&b) && a != b);
    }

    #[test]
    fn window() {
        assert!(S(10).in_window(S(10), S(12)));
        assert!(S(12).in_window(S(10), S(12)));
        assert!(!S(13).in_window(S(10), S(12)));
        assert!(!S(9).in_window(S(10), S(12)));
        assert!(S(1).in_window(S(u32::MAX - 1), S(3)));
        // Empty window (MaxCmdSN = ExpCmdSN - 1) contains nothing.
        assert!(!S(10).in_window(S(10), S(9)));
        assert!(!S(9).in_window(S(10), S(9)));
    }
}
