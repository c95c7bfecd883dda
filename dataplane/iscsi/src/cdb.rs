//! [`Cdb`]: a command descriptor block as the SCSI layer receives it, without a heap allocation for the usual
//! 16-byte case.

use std::fmt;
use std::ops::Deref;

/// The CDB of a SCSI Command PDU: the 16 bytes of the BHS CDB field (RFC 7143 §11.3.5), followed by the bytes of an
/// Extended CDB AHS when there is one (§11.2.2.3). Sixteen bytes are kept inline; only a longer CDB is boxed, so a
/// command costs no allocation on its way from the PDU to the device. Reads as a byte slice.
#[derive(Clone, PartialEq, Eq)]
pub enum Cdb {
    /// The 16 BHS bytes alone.
    Short([u8; 16]),
    /// Any other length (an extended CDB, or a test's shorter one).
    Long(Box<[u8]>),
}

impl Cdb {
    /// The BHS bytes followed by the Extended CDB AHS bytes.
    pub fn new(bhs_cdb: [u8; 16], ext: &[u8]) -> Cdb {
        if ext.is_empty() {
            return Cdb::Short(bhs_cdb);
        }
        let mut v = Vec::with_capacity(16 + ext.len());
        v.extend_from_slice(&bhs_cdb);
        v.extend_from_slice(ext);
        Cdb::Long(v.into_boxed_slice())
    }
}

impl Default for Cdb {
    /// Sixteen zero bytes (what a delivered task leaves behind when its CDB is taken).
    fn default() -> Cdb {
        Cdb::Short([0; 16])
    }
}

impl Deref for Cdb {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Cdb::Short(b) => b,
            Cdb::Long(b) => b,
        }
    }
}

impl AsRef<[u8]> for Cdb {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<&[u8]> for Cdb {
    fn from(bytes: &[u8]) -> Cdb {
        match <[u8; 16]>::try_from(bytes) {
            Ok(short) => Cdb::Short(short),
            Err(_) => Cdb::Long(bytes.into()),
        }
    }
}

impl From<Vec<u8>> for Cdb {
    fn from(bytes: Vec<u8>) -> Cdb {
        match <[u8; 16]>::try_from(bytes.as_slice()) {
            Ok(short) => Cdb::Short(short),
            Err(_) => Cdb::Long(bytes.into_boxed_slice()),
        }
    }
}

impl PartialEq<[u8]> for Cdb {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<u8>> for Cdb {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Cdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb({:02x?})", &**self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_stay_inline_and_extended_cdbs_follow_the_bhs_bytes() {
        let bhs: [u8; 16] = std::array::from_fn(|i| i as u8);
        let short = Cdb::new(bhs, &[]);
        assert!(matches!(short, Cdb::Short(_)));
        assert_eq!(&*short, &bhs[..]);
        let long = Cdb::new(bhs, &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(matches!(long, Cdb::Long(_)));
        assert_eq!(long.len(), 20);
        assert_eq!(&long[14..], &[14, 15, 0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(Cdb::from(long.to_vec()), long);
        assert_eq!(Cdb::from(&bhs[..]), short);
        let six = Cdb::from(vec![0x12, 0, 0, 0, 36, 0]);
        assert_eq!(six, vec![0x12, 0, 0, 0, 36, 0]);
        assert_eq!(six.first(), Some(&0x12));
        assert_eq!(Cdb::default(), Cdb::Short([0; 16]));
    }
}
