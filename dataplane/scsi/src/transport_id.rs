//! I_T nexus identities for reservations: iSCSI TransportIDs (SPC-4 §7.6.4.6), target ports, and the identity the
//! transport gives each I_T nexus at login.
//!
//! Persistent reservations belong to I_T nexuses, not to sessions: a registration made through one session still
//! applies when the same initiator port (iSCSI name + ISID) logs in again through the same target port (iSCSI
//! target name + target portal group tag). [`NexusIdentity`] is that identity; the driver hands it to every logical
//! unit of the target when a session logs in ([`crate::LogicalUnit::bind_nexus`]).

/// PROTOCOL IDENTIFIER of iSCSI (SPC-4 §7.6.1, table 444).
pub const PROTOCOL_ISCSI: u8 = 0x5;

/// Longest iSCSI name (RFC 7143 §4.2.7.1: 223 bytes).
pub const MAX_ISCSI_NAME: usize = 223;

/// An iSCSI initiator as a TransportID names it (SPC-4 §7.6.4.6).
///
/// With an ISID it names one initiator port (FORMAT CODE 01b, "iSCSI name,i,0xISID"); without, every port of the
/// initiator device (FORMAT CODE 00b). Names are compared case-insensitively (RFC 3722), so they are kept in lower
/// case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId {
    name: String,
    isid: Option<[u8; 6]>,
}

/// Why a TransportID in a parameter list was refused. `offset` is the byte of the TransportID (relative to its
/// start) the error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportIdError {
    #[error("TransportID shorter than its header or its ADDITIONAL LENGTH")]
    Truncated,
    #[error("PROTOCOL IDENTIFIER {0:#x} is not iSCSI")]
    Protocol(u8),
    #[error("FORMAT CODE {0} is not defined for iSCSI")]
    Format(u8),
    #[error("ADDITIONAL LENGTH {0} is not a multiple of four")]
    Length(u16),
    #[error("iSCSI NAME is empty, too long, not null-terminated or not printable")]
    Name,
    #[error("iSCSI initiator port name lacks a valid \",i,0x\" ISID")]
    Isid,
}

impl TransportIdError {
    /// Byte offset, within the TransportID, of the field in error (for the sense-key-specific field pointer).
    pub fn offset(self) -> u16 {
        match self {
            TransportIdError::Truncated | TransportIdError::Length(_) => 2,
            TransportIdError::Protocol(_) | TransportIdError::Format(_) => 0,
            TransportIdError::Name | TransportIdError::Isid => 4,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ISCSI_NAME
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != ',')
}

fn parse_isid(hex: &str) -> Option<[u8; 6]> {
    if hex.is_empty() || hex.len() > 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(hex, 16).ok()?;
    let b = v.to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl TransportId {
    /// An iSCSI initiator port (`isid` given) or initiator device (`None`). The name is lower-cased.
    pub fn iscsi(name: &str, isid: Option<[u8; 6]>) -> Self {
        Self { name: name.to_lowercase(), isid }
    }

    /// The iSCSI name (lower case).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ISID, for an initiator port.
    pub fn isid(&self) -> Option<[u8; 6]> {
        self.isid
    }

    /// Whether a registration made for `self` applies to the initiator port `port`: same name, and same ISID
    /// unless `self` names the whole initiator device.
    pub fn covers(&self, port: &TransportId) -> bool {
        self.name == port.name && (self.isid.is_none() || self.isid == port.isid)
    }

    /// The SCSI name string of the initiator port: "iSCSI name,i,0x" + 12 hex digits of ISID, or just the name.
    pub fn port_name(&self) -> String {
        match self.isid {
            Some(i) => format!(
                "{},i,0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                self.name, i[0], i[1], i[2], i[3], i[4], i[5]
            ),
            None => self.name.clone(),
        }
    }

    /// The TransportID bytes (SPC-4 table 464/465): FORMAT CODE 01b with an ISID, else 00b; the name string is
    /// null-terminated and padded with nulls so that ADDITIONAL LENGTH is a multiple of four and at least 20.
    pub fn to_wire(&self) -> Vec<u8> {
        let s = self.port_name();
        let mut len = s.len() + 1;
        len = len.max(20).div_ceil(4) * 4;
        let mut b = vec![0u8; 4 + len];
        b[0] = if self.isid.is_some() { 0x40 } else { 0x00 } | PROTOCOL_ISCSI;
        b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        b[4..4 + s.len()].copy_from_slice(s.as_bytes());
        b
    }

    /// Parses one TransportID at the start of `buf`; returns it and its length in bytes.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), TransportIdError> {
        if buf.len() < 4 {
            return Err(TransportIdError::Truncated);
        }
        let protocol = buf[0] & 0x0F;
        if protocol != PROTOCOL_ISCSI {
            return Err(TransportIdError::Protocol(protocol));
        }
        let format = buf[0] >> 6;
        if format > 1 {
            return Err(TransportIdError::Format(format));
        }
        let add = u16::from_be_bytes([buf[2], buf[3]]);
        if add % 4 != 0 {
            return Err(TransportIdError::Length(add));
        }
        let total = 4 + usize::from(add);
        let body = buf.get(4..total).ok_or(TransportIdError::Truncated)?;
        let end = body.iter().position(|&b| b == 0).ok_or(TransportIdError::Name)?;
        let s = std::str::from_utf8(&body[..end]).map_err(|_| TransportIdError::Name)?;
        let id = if format == 0 {
            if !valid_name(s) {
                return Err(TransportIdError::Name);
            }
            Self::iscsi(s, None)
        } else {
            let lower = s.to_ascii_lowercase();
            let at = lower.find(",i,0x").ok_or(TransportIdError::Isid)?;
            let name = &s[..at];
            if !valid_name(name) {
                return Err(TransportIdError::Name);
            }
            let isid = parse_isid(&s[at + 5..]).ok_or(TransportIdError::Isid)?;
            Self::iscsi(name, Some(isid))
        };
        Ok((id, total))
    }
}

/// A SCSI target port: for iSCSI, a target name and target portal group tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetPort {
    /// The SCSI name string of the port ("iSCSI target name,t,0x" + TPGT in hex), which identifies it across
    /// restarts.
    pub name: String,
    /// RELATIVE TARGET PORT IDENTIFIER (SPC-4 §7.8.6.6.6, READ FULL STATUS, REGISTER AND MOVE).
    pub relative_id: u16,
}

impl TargetPort {
    /// The target port of iSCSI target `target` in target portal group `tpgt`. Target names are case-insensitive,
    /// so the name is lower-cased.
    pub fn iscsi(target: &str, tpgt: u16, relative_id: u16) -> Self {
        Self { name: format!("{},t,0x{tpgt:04x}", target.to_lowercase()), relative_id }
    }
}

/// Who is at both ends of an I_T nexus: the initiator port and the target port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NexusIdentity {
    pub initiator: TransportId,
    pub target_port: TargetPort,
}

impl NexusIdentity {
    /// The identity of an iSCSI session: initiator name and ISID, target name and portal group.
    pub fn iscsi(initiator: &str, isid: [u8; 6], target: &str, tpgt: u16, relative_id: u16) -> Self {
        Self {
            initiator: TransportId::iscsi(initiator, Some(isid)),
            target_port: TargetPort::iscsi(target, tpgt, relative_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a];

    #[test]
    fn port_transport_id_golden_bytes() {
        let t = TransportId::iscsi("iqn.1993-08.org.Debian:01:ab", Some(ISID));
        let w = t.to_wire();
        let s = b"iqn.1993-08.org.debian:01:ab,i,0x80123456789a";
        // 45 characters + NUL = 46, padded to 48.
        assert_eq!(w.len(), 4 + 48);
        assert_eq!(&w[..4], &[0x45, 0, 0, 48]);
        assert_eq!(&w[4..4 + s.len()], s);
        assert!(w[4 + s.len()..].iter().all(|&b| b == 0));
        assert_eq!(TransportId::parse(&w), Ok((t, 52)));
    }

    #[test]
    fn device_transport_id_is_at_least_twenty_bytes_of_name() {
        let t = TransportId::iscsi("iqn.a", None);
        let w = t.to_wire();
        assert_eq!(w.len(), 24);
        assert_eq!(&w[..9], &[0x05, 0, 0, 20, b'i', b'q', b'n', b'.', b'a']);
        assert_eq!(TransportId::parse(&w), Ok((t, 24)));
    }

    #[test]
    fn parse_errors() {
        let good = TransportId::iscsi("iqn.x", Some(ISID)).to_wire();
        assert_eq!(TransportId::parse(&good[..3]), Err(TransportIdError::Truncated));
        assert_eq!(TransportId::parse(&good[..good.len() - 1]), Err(TransportIdError::Truncated));
        let mut b = good.clone();
        b[0] = 0x41;
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Protocol(1)));
        b[0] = 0x85;
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Format(2)));
        let mut b = good.clone();
        b[3] = 21;
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Length(21)));
        // No NUL terminator.
        let mut b = vec![0x05, 0, 0, 4];
        b.extend_from_slice(b"abcd");
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Name));
        // Format 01b without ISID.
        let mut b = TransportId::iscsi("iqn.x", None).to_wire();
        b[0] = 0x45;
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Isid));
        // Whitespace in a name.
        let mut b = vec![0x05, 0, 0, 8];
        b.extend_from_slice(b"a b\0\0\0\0\0");
        assert_eq!(TransportId::parse(&b), Err(TransportIdError::Name));
    }

    #[test]
    fn names_compare_case_insensitively_and_devices_cover_ports() {
        let port = TransportId::iscsi("IQN.Host", Some(ISID));
        assert_eq!(port, TransportId::iscsi("iqn.host", Some(ISID)));
        assert!(TransportId::iscsi("iqn.host", None).covers(&port));
        assert!(port.covers(&port));
        assert!(!TransportId::iscsi("iqn.host", Some([0; 6])).covers(&port));
        assert!(!TransportId::iscsi("iqn.other", None).covers(&port));
        // Mixed-case ",I,0X" separator and short ISID hex are accepted.
        let mut b = vec![0x45, 0, 0, 16];
        b.extend_from_slice(b"iqn.h,I,0X1f\0\0\0\0");
        assert_eq!(TransportId::parse(&b).map(|t| t.0), Ok(TransportId::iscsi("iqn.h", Some([0, 0, 0, 0, 0, 0x1f]))));
    }

    #[test]
    fn target_port_name() {
        assert_eq!(TargetPort::iscsi("iqn.T", 1, 3).name, "iqn.t,t,0x0001");
    }
}
