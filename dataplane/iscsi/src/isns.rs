//! iSNS protocol (iSNSP, RFC 4171) messages a target needs, sans-I/O: the PDU header, TLV attributes, the
//! registration (DevAttrReg, with the portals' SCN and ESI ports), deregistration (DevDereg), discovery-domain query
//! (DevAttrQry) and State Change Notification registration (SCNReg) requests, the parsing of the server's responses,
//! and the messages the server sends on its own — SCN (§5.6.5.8) and ESI (§5.6.5.13) — with the client's answers
//! to them. The client that sends them over TCP lives in the dataplane.
//!
//! ```text
//! PDU:  Version (2) | Function ID (2) | PDU Length (2) | Flags (2) | Transaction ID (2) | Sequence ID (2) | payload
//! TLV:  Tag (4) | Length (4) | Value (Length bytes, a multiple of 4)
//! request payload:  Source attribute | Message Key attributes | Delimiter (tag 0, length 0) | Operating attributes
//! response payload: Status Code (4) | [Message Key attributes | Delimiter | Operating attributes]
//! ```
//! All integers are big-endian. Strings are UTF-8, NUL-terminated and padded with NULs to a multiple of 4 bytes
//! (§5.5). IP addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (§6.3.1). Decoding never panics on any input.

use std::net::{IpAddr, Ipv6Addr};

/// iSNSP version (§5.1.1).
pub const VERSION: u16 = 0x0001;
/// Length of the iSNSP header.
pub const HEADER_LEN: usize = 12;
/// Largest PDU payload: the 16-bit PDU Length field.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Function IDs (§4.1.3); responses are `request | 0x8000`.
pub mod function {
    pub const DEV_ATTR_REG: u16 = 0x0001;
    pub const DEV_ATTR_QRY: u16 = 0x0002;
    pub const DEV_GET_NEXT: u16 = 0x0003;
    pub const DEV_DEREG: u16 = 0x0004;
    pub const SCN_REG: u16 = 0x0005;
    pub const SCN_DEREG: u16 = 0x0006;
    pub const SCN_EVENT: u16 = 0x0007;
    /// State Change Notification, sent by the server to a node's SCN port.
    pub const SCN: u16 = 0x0008;
    /// Entity Status Inquiry, sent by the server to a portal's ESI port.
    pub const ESI: u16 = 0x000d;
    /// The response to a request function.
    pub const fn response(request: u16) -> u16 {
        request | 0x8000
    }
}

/// Header flags (§5.1.4).
pub mod flags {
    pub const CLIENT: u16 = 1 << 15;
    pub const SERVER: u16 = 1 << 14;
    pub const AUTH: u16 = 1 << 13;
    pub const REPLACE: u16 = 1 << 12;
    pub const LAST_PDU: u16 = 1 << 11;
    pub const FIRST_PDU: u16 = 1 << 10;
}

/// Attribute tags (§6.1).
pub mod tag {
    pub const DELIMITER: u32 = 0;
    pub const ENTITY_IDENTIFIER: u32 = 1;
    pub const ENTITY_PROTOCOL: u32 = 2;
    pub const TIMESTAMP: u32 = 4;
    pub const REGISTRATION_PERIOD: u32 = 6;
    pub const PORTAL_IP_ADDRESS: u32 = 16;
    pub const PORTAL_PORT: u32 = 17;
    pub const ESI_INTERVAL: u32 = 19;
    pub const ESI_PORT: u32 = 20;
    pub const SCN_PORT: u32 = 23;
    pub const ISCSI_NAME: u32 = 32;
    pub const ISCSI_NODE_TYPE: u32 = 33;
    pub const ISCSI_ALIAS: u32 = 34;
    pub const ISCSI_SCN_BITMAP: u32 = 35;
    pub const PG_ISCSI_NAME: u32 = 48;
    pub const PG_PORTAL_IP_ADDRESS: u32 = 49;
    pub const PG_PORTAL_PORT: u32 = 50;
    pub const PG_TAG: u32 = 51;
}

/// iSCSI Node Type bits (§6.4.2).
pub mod node_type {
    pub const TARGET: u32 = 1 << 0;
    pub const INITIATOR: u32 = 1 << 1;
    pub const CONTROL: u32 = 1 << 2;
}

/// iSCSI SCN Bitmap bits (§6.4.4; the RFC numbers bit 31 as the least significant).
pub mod scn {
    /// DD/DDS member added / removed: management SCNs only (Control Nodes).
    pub const DD_MEMBER_ADDED: u32 = 1 << 0;
    pub const DD_MEMBER_REMOVED: u32 = 1 << 1;
    pub const OBJECT_UPDATED: u32 = 1 << 2;
    pub const OBJECT_ADDED: u32 = 1 << 3;
    pub const OBJECT_REMOVED: u32 = 1 << 4;
    pub const MANAGEMENT_REGISTRATION: u32 = 1 << 5;
    pub const TARGET_AND_SELF_ONLY: u32 = 1 << 6;
    pub const INITIATOR_AND_SELF_ONLY: u32 = 1 << 7;
    /// What a target registers for: initiators (and itself) appearing, changing or going away in its discovery
    /// domains. A Storage Node may not ask for management SCNs (nor, without them, the DD member bits).
    pub const TARGET_NODE: u32 = OBJECT_UPDATED | OBJECT_ADDED | OBJECT_REMOVED | INITIATOR_AND_SELF_ONLY;
}

/// Entity Protocol value for iSCSI (§6.2.2).
pub const ENTITY_PROTOCOL_ISCSI: u32 = 2;

/// Response status codes (§5.4).
pub mod status {
    pub const SUCCESS: u32 = 0;
    pub const UNKNOWN_ERROR: u32 = 1;
    pub const MESSAGE_FORMAT_ERROR: u32 = 2;
    pub const INVALID_REGISTRATION: u32 = 3;
    pub const INVALID_QUERY: u32 = 5;
    pub const SOURCE_UNKNOWN: u32 = 6;
    pub const SOURCE_ABSENT: u32 = 7;
    pub const SOURCE_UNAUTHORIZED: u32 = 8;
    pub const NO_SUCH_ENTRY: u32 = 9;
    pub const MESSAGE_NOT_SUPPORTED: u32 = 15;
    pub const SCN_REGISTRATION_REJECTED: u32 = 17;
}

/// Errors building or decoding iSNSP PDUs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsnsError {
    #[error("iSNS PDU shorter than its header ({0} bytes)")]
    ShortHeader(usize),
    #[error("iSNS version {0:#06x} is not supported")]
    Version(u16),
    #[error("iSNS PDU announces {announced} payload bytes, {have} present")]
    Truncated { announced: usize, have: usize },
    #[error("attribute with tag {tag} claims {len} bytes, {left} left in the payload")]
    AttributeOverrun { tag: u32, len: usize, left: usize },
    #[error("attribute with tag {tag} has a length of {len}, not a multiple of 4")]
    Unaligned { tag: u32, len: usize },
    #[error("response payload has no status code")]
    NoStatus,
    #[error("message of {0} payload bytes does not fit one iSNS PDU")]
    TooLong(usize),
    #[error("string attribute {0} contains a NUL byte")]
    NulInString(u32),
    #[error("iSNS SCN without a destination iSCSI Name")]
    NoDestination,
}

/// The iSNSP header (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub function: u16,
    /// Payload length in bytes.
    pub length: u16,
    pub flags: u16,
    pub transaction: u16,
    pub sequence: u16,
}

impl Header {
    /// Parses the first 12 bytes.
    pub fn parse(buf: &[u8]) -> Result<Header, IsnsError> {
        let b = buf.get(..HEADER_LEN).ok_or(IsnsError::ShortHeader(buf.len()))?;
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let h = Header {
            version: word(0),
            function: word(2),
            length: word(4),
            flags: word(6),
            transaction: word(8),
            sequence: word(10),
        };
        if h.version != VERSION {
            return Err(IsnsError::Version(h.version));
        }
        Ok(h)
    }

    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [self.version, self.function, self.length, self.flags, self.transaction, self.sequence]
            .into_iter()
            .enumerate()
        {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

/// One TLV attribute; `value` holds the padded value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub tag: u32,
    pub value: Vec<u8>,
}

impl Attr {
    /// An attribute with no value (a delimiter, or an operating attribute asked for in a query).
    pub fn empty(tag: u32) -> Attr {
        Attr { tag, value: Vec::new() }
    }

    /// A NUL-terminated string padded to 4 bytes.
    pub fn string(tag: u32, s: &str) -> Result<Attr, IsnsError> {
        if s.as_bytes().contains(&0) {
            return Err(IsnsError::NulInString(tag));
        }
        let mut value = s.as_bytes().to_vec();
        value.push(0);
        while value.len() % 4 != 0 {
            value.push(0);
        }
        Ok(Attr { tag, value })
    }

    pub fn u32(tag: u32, v: u32) -> Attr {
        Attr { tag, value: v.to_be_bytes().to_vec() }
    }

    /// A 16-byte IP address (IPv4 as IPv4-mapped IPv6).
    pub fn ip(tag: u32, ip: IpAddr) -> Attr {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Attr { tag, value: v6.octets().to_vec() }
    }

    /// A port attribute: the 16-bit port in the low half; bit 16 clear for TCP (§6.3.2).
    pub fn port(tag: u32, port: u16) -> Attr {
        Attr::u32(tag, u32::from(port))
    }

    /// The value as a string (up to the first NUL), if UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        let end = self.value.iter().position(|&b| b == 0).unwrap_or(self.value.len());
        std::str::from_utf8(&self.value[..end]).ok()
    }

    pub fn as_u32(&self) -> Option<u32> {
        let b: [u8; 4] = self.value.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// The value as an IP address (IPv4-mapped addresses as IPv4).
    pub fn as_ip(&self) -> Option<IpAddr> {
        let b: [u8; 16] = self.value.get(..16)?.try_into().ok()?;
        let v6 = Ipv6Addr::from(b);
        Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        })
    }
}

/// Encodes a list of attributes.
pub fn encode_attrs(attrs: &[Attr], out: &mut Vec<u8>) {
    for a in attrs {
        out.extend_from_slice(&a.tag.to_be_bytes());
        out.extend_from_slice(&(a.value.len() as u32).to_be_bytes());
        out.extend_from_slice(&a.value);
    }
}

/// Decodes a sequence of attributes filling `payload` exactly.
pub fn decode_attrs(mut payload: &[u8]) -> Result<Vec<Attr>, IsnsError> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        let head = payload.get(..8).ok_or(IsnsError::AttributeOverrun { tag: 0, len: 8, left: payload.len() })?;
        let tag = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len % 4 != 0 {
            return Err(IsnsError::Unaligned { tag, len });
        }
        let rest = &payload[8..];
        let value = rest.get(..len).ok_or(IsnsError::AttributeOverrun { tag, len, left: rest.len() })?;
        out.push(Attr { tag, value: value.to_vec() });
        payload = &rest[len..];
    }
    Ok(out)
}

/// A complete one-PDU message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub function: u16,
    pub flags: u16,
    pub transaction: u16,
    pub attrs: Vec<Attr>,
}

impl Message {
    /// The PDU bytes (a client message: the CLIENT, FIRST_PDU and LAST_PDU flags are set besides `flags`).
    pub fn encode(&self) -> Result<Vec<u8>, IsnsError> {
        let mut payload = Vec::new();
        encode_attrs(&self.attrs, &mut payload);
        let length = u16::try_from(payload.len()).map_err(|_| IsnsError::TooLong(payload.len()))?;
        let header = Header {
            version: VERSION,
            function: self.function,
            length,
            flags: self.flags | flags::CLIENT | flags::FIRST_PDU | flags::LAST_PDU,
            transaction: self.transaction,
            sequence: 0,
        };
        let mut out = header.emit().to_vec();
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

/// A decoded response: header, status code and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub header: Header,
    pub status: u32,
    pub attrs: Vec<Attr>,
}

impl Response {
    /// Decodes a whole response PDU (header and payload).
    pub fn decode(pdu: &[u8]) -> Result<Response, IsnsError> {
        let header = Header::parse(pdu)?;
        let announced = usize::from(header.length);
        let payload = pdu
            .get(HEADER_LEN..HEADER_LEN + announced)
            .ok_or(IsnsError::Truncated { announced, have: pdu.len().saturating_sub(HEADER_LEN) })?;
        let st = payload.get(..4).ok_or(IsnsError::NoStatus)?;
        let status = u32::from_be_bytes([st[0], st[1], st[2], st[3]]);
        let attrs = decode_attrs(&payload[4..])?;
        Ok(Response { header, status, attrs })
    }

    /// The operating attributes: what follows the delimiter, or everything when there is none.
    pub fn operating(&self) -> &[Attr] {
        match self.attrs.iter().position(|a| a.tag == tag::DELIMITER) {
            Some(i) => &self.attrs[i + 1..],
            None => &self.attrs,
        }
    }

    /// The iSCSI names in the operating attributes of a node type query, without those whose following Node Type
    /// lacks the initiator bit.
    pub fn initiator_names(&self) -> Vec<String> {
        let mut out: Vec<(String, Option<u32>)> = Vec::new();
        for a in self.operating() {
            match a.tag {
                tag::ISCSI_NAME => {
                    if let Some(s) = a.as_str().filter(|s| !s.is_empty()) {
                        out.push((s.to_string(), None));
                    }
                }
                tag::ISCSI_NODE_TYPE => {
                    if let Some(last) = out.last_mut() {
                        last.1 = a.as_u32();
                    }
                }
                _ => {}
            }
        }
        out.into_iter().filter(|(_, t)| t.is_none_or(|t| t & node_type::INITIATOR != 0)).map(|(n, _)| n).collect()
    }
}

/// The length of the PDU at the front of `buf`, once its header is there.
pub fn pdu_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(4..6)?;
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([h[0], h[1]])))
}

/// A target node to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReg {
    pub name: String,
    pub alias: Option<String>,
    /// The portals (address, port, portal group tag) the node is reachable through.
    pub portals: Vec<(IpAddr, u16, u16)>,
}

/// DevAttrReg (§5.6.5.1) of the network entity `eid` with all its portals and target nodes and their portal groups,
/// replacing what the server held for the entity. `nodes` must not be empty (the first node is the Source). With
/// `scn_port`, every portal registers it as its SCN Port and ESI Port (TCP): where the server sends State Change
/// Notifications and Entity Status Inquiries (§6.3.4, §6.3.7; as tgt and iSCSI-SCST do, one listener for both).
pub fn dev_attr_reg(
    eid: &str,
    nodes: &[NodeReg],
    scn_port: Option<u16>,
    transaction: u16,
) -> Result<Message, IsnsError> {
    let source = nodes.first().map(|n| n.name.as_str()).unwrap_or_default();
    let mut attrs = vec![
        Attr::string(tag::ISCSI_NAME, source)?,
        Attr::string(tag::ENTITY_IDENTIFIER, eid)?,
        Attr::empty(tag::DELIMITER),
        Attr::string(tag::ENTITY_IDENTIFIER, eid)?,
        Attr::u32(tag::ENTITY_PROTOCOL, ENTITY_PROTOCOL_ISCSI),
    ];
    let mut portals: Vec<(IpAddr, u16)> = Vec::new();
    for n in nodes {
        for &(ip, port, _) in &n.portals {
            if !portals.contains(&(ip, port)) {
                portals.push((ip, port));
            }
        }
    }
    for (ip, port) in &portals {
        attrs.push(Attr::ip(tag::PORTAL_IP_ADDRESS, *ip));
        attrs.push(Attr::port(tag::PORTAL_PORT, *port));
        if let Some(scn) = scn_port {
            attrs.push(Attr::port(tag::ESI_PORT, scn));
            attrs.push(Attr::port(tag::SCN_PORT, scn));
        }
    }
    for n in nodes {
        attrs.push(Attr::string(tag::ISCSI_NAME, &n.name)?);
        attrs.push(Attr::u32(tag::ISCSI_NODE_TYPE, node_type::TARGET));
        if let Some(alias) = &n.alias {
            attrs.push(Attr::string(tag::ISCSI_ALIAS, alias)?);
        }
    }
    for n in nodes {
        for &(ip, port, tpgt) in &n.portals {
            attrs.push(Attr::string(tag::PG_ISCSI_NAME, &n.name)?);
            attrs.push(Attr::ip(tag::PG_PORTAL_IP_ADDRESS, ip));
            attrs.push(Attr::port(tag::PG_PORTAL_PORT, port));
            attrs.push(Attr::u32(tag::PG_TAG, u32::from(tpgt)));
        }
    }
    Ok(Message { function: function::DEV_ATTR_REG, flags: flags::REPLACE, transaction, attrs })
}

/// DevDereg (§5.6.5.4) of the nodes `names`, with `source` (a registered node) as the Source.
pub fn dev_dereg(source: &str, names: &[&str], transaction: u16) -> Result<Message, IsnsError> {
    let mut attrs = vec![Attr::string(tag::ISCSI_NAME, source)?, Attr::empty(tag::DELIMITER)];
    for n in names {
        attrs.push(Attr::string(tag::ISCSI_NAME, n)?);
    }
    Ok(Message { function: function::DEV_DEREG, flags: 0, transaction, attrs })
}

/// DevDereg of the whole network entity `eid` (all its nodes and portals).
pub fn dev_dereg_entity(source: &str, eid: &str, transaction: u16) -> Result<Message, IsnsError> {
    let attrs = vec![
        Attr::string(tag::ISCSI_NAME, source)?,
        Attr::empty(tag::DELIMITER),
        Attr::string(tag::ENTITY_IDENTIFIER, eid)?,
    ];
    Ok(Message { function: function::DEV_DEREG, flags: 0, transaction, attrs })
}

/// SCNReg (§5.6.5.5) for the node `name` (also the Source): the iSCSI SCN Bitmap is the only operating attribute.
pub fn scn_reg(name: &str, bitmap: u32, transaction: u16) -> Result<Message, IsnsError> {
    let attrs = vec![
        Attr::string(tag::ISCSI_NAME, name)?,
        Attr::string(tag::ISCSI_NAME, name)?,
        Attr::empty(tag::DELIMITER),
        Attr::u32(tag::ISCSI_SCN_BITMAP, bitmap),
    ];
    Ok(Message { function: function::SCN_REG, flags: 0, transaction, attrs })
}

/// A message the server sends on its own (SCN, ESI): header and attributes (no status code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub header: Header,
    pub attrs: Vec<Attr>,
}

impl Request {
    /// Decodes a whole request PDU (header and payload).
    pub fn decode(pdu: &[u8]) -> Result<Request, IsnsError> {
        let header = Header::parse(pdu)?;
        let announced = usize::from(header.length);
        let payload = pdu
            .get(HEADER_LEN..HEADER_LEN + announced)
            .ok_or(IsnsError::Truncated { announced, have: pdu.len().saturating_sub(HEADER_LEN) })?;
        Ok(Request { header, attrs: decode_attrs(payload)? })
    }

    /// An SCN's events: the destination node, then each SCN Event Bitmap with the iSCSI Name of the object it is
    /// about (§5.6.5.8: Destination Attribute, Timestamp, then bitmap + source attribute pairs).
    pub fn scn(&self) -> Result<Scn, IsnsError> {
        let mut attrs = self.attrs.iter();
        let destination = attrs
            .next()
            .filter(|a| a.tag == tag::ISCSI_NAME)
            .and_then(Attr::as_str)
            .ok_or(IsnsError::NoDestination)?
            .to_string();
        let mut events: Vec<(u32, Option<String>)> = Vec::new();
        for a in attrs {
            match a.tag {
                tag::ISCSI_SCN_BITMAP => events.push((a.as_u32().unwrap_or(0), None)),
                tag::ISCSI_NAME => {
                    if let Some(last) = events.last_mut().filter(|e| e.1.is_none()) {
                        last.1 = a.as_str().map(str::to_string);
                    }
                }
                _ => {}
            }
        }
        Ok(Scn { destination, events })
    }
}

/// A State Change Notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scn {
    /// The iSCSI Name of the node notified.
    pub destination: String,
    /// SCN Event Bitmap and the iSCSI Name of the object that changed (when the event names one).
    pub events: Vec<(u32, Option<String>)>,
}

/// The client's response PDU to a message the server sent (SCNRsp, ESIRsp): status code, then `attrs`.
pub fn response_pdu(request: &Header, status: u32, attrs: &[Attr]) -> Result<Vec<u8>, IsnsError> {
    let mut payload = status.to_be_bytes().to_vec();
    encode_attrs(attrs, &mut payload);
    let length = u16::try_from(payload.len()).map_err(|_| IsnsError::TooLong(payload.len()))?;
    let header = Header {
        version: VERSION,
        function: function::response(request.function),
        length,
        flags: flags::CLIENT | flags::FIRST_PDU | flags::LAST_PDU,
        transaction: request.transaction,
        sequence: 0,
    };
    let mut out = header.emit().to_vec();
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The answer to a message the server sent: SCNRsp with the destination attribute (§5.7.5.8), ESIRsp echoing the
/// ESI's attributes (Entity Identifier, Portal IP Address, Portal Port; §5.7.5.13), "message not supported" to
/// anything else. Returns the PDU and, for an SCN, its content.
pub fn answer_server_message(pdu: &[u8]) -> Result<(Vec<u8>, Option<Scn>), IsnsError> {
    let req = Request::decode(pdu)?;
    match req.header.function {
        function::SCN => match req.scn() {
            Ok(scn) => {
                let dest = Attr::string(tag::ISCSI_NAME, &scn.destination)?;
                Ok((response_pdu(&req.header, status::SUCCESS, &[dest])?, Some(scn)))
            }
            Err(_) => Ok((response_pdu(&req.header, status::MESSAGE_FORMAT_ERROR, &[])?, None)),
        },
        function::ESI => Ok((response_pdu(&req.header, status::SUCCESS, &req.attrs)?, None)),
        _ => Ok((response_pdu(&req.header, status::MESSAGE_NOT_SUPPORTED, &[])?, None)),
    }
}

/// DevAttrQry (§5.6.5.2) for the initiators that share a discovery domain with target `source`: Message Key iSCSI
/// Node Type = initiator; operating attributes iSCSI Name and Node Type asked for.
pub fn query_initiators(source: &str, transaction: u16) -> Result<Message, IsnsError> {
    let attrs = vec![
        Attr::string(tag::ISCSI_NAME, source)?,
        Attr::u32(tag::ISCSI_NODE_TYPE, node_type::INITIATOR),
        Attr::empty(tag::DELIMITER),
        Attr::empty(tag::ISCSI_NAME),
        Attr::empty(tag::ISCSI_NODE_TYPE),
    ];
    Ok(Message { function: function::DEV_ATTR_QRY, flags: 0, transaction, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn golden_query() {
        // Written from RFC 4171 §5.1 (header), §5.5 (TLV, NUL-terminated padded strings), §6.4.2 (node type).
        let m = query_initiators("iqn.t", 0x0102).unwrap();
        let expected = hex("0001 0002 0034 8c00 0102 0000
             00000020 00000008 69716e2e 74000000
             00000021 00000004 00000002
             00000000 00000000
             00000020 00000000
             00000021 00000000");
        assert_eq!(m.encode().unwrap(), expected);
    }

    #[test]
    fn golden_registration_and_deregistration() {
        let nodes =
            [NodeReg { name: "iqn.t".into(), alias: None, portals: vec![("127.0.0.1".parse().unwrap(), 3260, 1)] }];
        let pdu = dev_attr_reg("e1", &nodes, None, 7).unwrap().encode().unwrap();
        let mapped = "00000000 00000000 0000ffff 7f000001";
        let expected = hex(&format!(
            "0001 0001 00bc 9c00 0007 0000
             00000020 00000008 69716e2e 74000000
             00000001 00000004 65310000
             00000000 00000000
             00000001 00000004 65310000
             00000002 00000004 00000002
             00000010 00000010 {mapped}
             00000011 00000004 00000cbc
             00000020 00000008 69716e2e 74000000
             00000021 00000004 00000001
             00000030 00000008 69716e2e 74000000
             00000031 00000010 {mapped}
             00000032 00000004 00000cbc
             00000033 00000004 00000001"
        ));
        assert_eq!(pdu, expected);
        let dereg = dev_dereg("iqn.t", &["iqn.t"], 8).unwrap().encode().unwrap();
        assert_eq!(
            dereg,
            hex("0001 0004 0028 8c00 0008 0000
                 00000020 00000008 69716e2e 74000000
                 00000000 00000000
                 00000020 00000008 69716e2e 74000000")
        );
    }

    #[test]
    fn responses() {
        // DevAttrQryRsp: status 0, key echo, delimiter, two nodes (one initiator, one target).
        let mut payload = 0u32.to_be_bytes().to_vec();
        encode_attrs(
            &[
                Attr::u32(tag::ISCSI_NODE_TYPE, node_type::INITIATOR),
                Attr::empty(tag::DELIMITER),
                Attr::string(tag::ISCSI_NAME, "iqn.i1").unwrap(),
                Attr::u32(tag::ISCSI_NODE_TYPE, node_type::INITIATOR),
                Attr::string(tag::ISCSI_NAME, "iqn.t2").unwrap(),
                Attr::u32(tag::ISCSI_NODE_TYPE, node_type::TARGET),
                Attr::string(tag::ISCSI_NAME, "iqn.i2").unwrap(),
            ],
            &mut payload,
        );
        let h = Header {
            version: VERSION,
            function: function::response(function::DEV_ATTR_QRY),
            length: payload.len() as u16,
            flags: flags::SERVER | flags::FIRST_PDU | flags::LAST_PDU,
            transaction: 3,
            sequence: 0,
        };
        let mut pdu = h.emit().to_vec();
        pdu.extend_from_slice(&payload);
        assert_eq!(pdu_len(&pdu), Some(pdu.len()));
        let r = Response::decode(&pdu).unwrap();
        assert_eq!((r.status, r.header.transaction), (0, 3));
        assert_eq!(r.initiator_names(), vec!["iqn.i1", "iqn.i2"]);
        // Attribute values.
        let ip = Attr::ip(tag::PORTAL_IP_ADDRESS, "::1".parse().unwrap());
        assert_eq!(ip.as_ip(), Some("::1".parse().unwrap()));
        assert_eq!(Attr::ip(16, "10.0.0.1".parse().unwrap()).as_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(Attr::string(32, "abcd").unwrap().value, b"abcd\0\0\0\0");
        assert_eq!(Attr::string(32, "a\0b"), Err(IsnsError::NulInString(32)));
    }

    #[test]
    fn scn_registration_and_ports() {
        // SCNReg: Source, key iSCSI Name, delimiter, SCN bitmap (object updated/added/removed, initiator and self).
        let m = scn_reg("iqn.t", scn::TARGET_NODE, 9).unwrap();
        assert_eq!(
            m.encode().unwrap(),
            hex("0001 0005 0034 8c00 0009 0000
                 00000020 00000008 69716e2e 74000000
                 00000020 00000008 69716e2e 74000000
                 00000000 00000000
                 00000023 00000004 0000009c")
        );
        // With an SCN port every portal carries ESI Port and SCN Port after its IP address and port.
        let nodes =
            [NodeReg { name: "iqn.t".into(), alias: None, portals: vec![("127.0.0.1".parse().unwrap(), 3260, 1)] }];
        let m = dev_attr_reg("e1", &nodes, Some(40000), 1).unwrap();
        let tags: Vec<u32> = m.attrs.iter().map(|a| a.tag).collect();
        let at = tags.iter().position(|t| *t == tag::PORTAL_PORT).unwrap();
        assert_eq!(&tags[at..at + 3], &[tag::PORTAL_PORT, tag::ESI_PORT, tag::SCN_PORT]);
        assert_eq!(m.attrs[at + 2].as_u32(), Some(40000));
    }

    fn server_pdu(function: u16, transaction: u16, attrs: &[Attr]) -> Vec<u8> {
        let mut payload = Vec::new();
        encode_attrs(attrs, &mut payload);
        let h = Header {
            version: VERSION,
            function,
            length: payload.len() as u16,
            flags: flags::SERVER | flags::FIRST_PDU | flags::LAST_PDU,
            transaction,
            sequence: 0,
        };
        let mut pdu = h.emit().to_vec();
        pdu.extend_from_slice(&payload);
        pdu
    }

    #[test]
    fn scn_and_esi_are_answered() {
        let scn_pdu = server_pdu(
            function::SCN,
            0x77,
            &[
                Attr::string(tag::ISCSI_NAME, "iqn.t").unwrap(),
                Attr { tag: tag::TIMESTAMP, value: vec![0, 0, 0, 0, 0x60, 0, 0, 0] },
                Attr::u32(tag::ISCSI_SCN_BITMAP, scn::OBJECT_ADDED),
                Attr::string(tag::ISCSI_NAME, "iqn.i1").unwrap(),
                Attr::u32(tag::ISCSI_SCN_BITMAP, scn::OBJECT_REMOVED),
                Attr::string(tag::ISCSI_NAME, "iqn.i2").unwrap(),
            ],
        );
        let (rsp, event) = answer_server_message(&scn_pdu).unwrap();
        assert_eq!(
            event,
            Some(Scn {
                destination: "iqn.t".into(),
                events: vec![(scn::OBJECT_ADDED, Some("iqn.i1".into())), (scn::OBJECT_REMOVED, Some("iqn.i2".into()))],
            })
        );
        // SCNRsp: status 0 and the destination attribute, same transaction, client flags.
        assert_eq!(
            rsp,
            hex("0001 8008 0014 8c00 0077 0000
                 00000000
                 00000020 00000008 69716e2e 74000000")
        );
        // ESIRsp echoes the ESI's attributes.
        let esi_attrs = [
            Attr::string(tag::ENTITY_IDENTIFIER, "e1").unwrap(),
            Attr::ip(tag::PORTAL_IP_ADDRESS, "127.0.0.1".parse().unwrap()),
            Attr::port(tag::PORTAL_PORT, 3260),
        ];
        let (rsp, event) = answer_server_message(&server_pdu(function::ESI, 5, &esi_attrs)).unwrap();
        assert_eq!(event, None);
        let r = Response::decode(&rsp).unwrap();
        assert_eq!((r.header.function, r.header.transaction, r.status), (0x800d, 5, 0));
        assert_eq!(r.attrs, esi_attrs);
        // Anything else: "message not supported"; an SCN without a destination: "message format error".
        let (rsp, _) = answer_server_message(&server_pdu(function::DEV_ATTR_REG, 6, &[])).unwrap();
        assert_eq!(Response::decode(&rsp).unwrap().status, status::MESSAGE_NOT_SUPPORTED);
        let (rsp, event) = answer_server_message(&server_pdu(function::SCN, 6, &[Attr::u32(35, 8)])).unwrap();
        assert_eq!((Response::decode(&rsp).unwrap().status, event), (status::MESSAGE_FORMAT_ERROR, None));
        // Damaged PDUs are errors, never panics.
        for n in 0..scn_pdu.len() {
            let _ = answer_server_message(&scn_pdu[..n]);
            let mut m = scn_pdu.clone();
            m[n] ^= 0xa5;
            let _ = answer_server_message(&m);
        }
    }

    #[test]
    fn decoding_never_panics() {
        assert_eq!(Header::parse(&[0; 5]), Err(IsnsError::ShortHeader(5)));
        assert_eq!(Header::parse(&[0; 12]), Err(IsnsError::Version(0)));
        let mut pdu =
            Header { version: 1, function: 0x8002, length: 20, flags: 0, transaction: 0, sequence: 0 }.emit().to_vec();
        assert!(matches!(Response::decode(&pdu), Err(IsnsError::Truncated { .. })));
        pdu.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 64, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(Response::decode(&pdu), Err(IsnsError::AttributeOverrun { tag: 32, .. })));
        assert!(matches!(decode_attrs(&[0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3]), Err(IsnsError::Unaligned { .. })));
        // Every prefix and a few mutations of a valid response decode or fail cleanly.
        let mut payload = 0u32.to_be_bytes().to_vec();
        encode_attrs(&[Attr::string(32, "iqn.x").unwrap(), Attr::u32(33, 2)], &mut payload);
        let h = Header {
            version: 1,
            function: 0x8002,
            length: payload.len() as u16,
            flags: 0,
            transaction: 1,
            sequence: 0,
        };
        let mut good = h.emit().to_vec();
        good.extend_from_slice(&payload);
        for n in 0..good.len() {
            let _ = Response::decode(&good[..n]);
            for bit in 0..8 {
                let mut m = good.clone();
                m[n] ^= 1 << bit;
                let _ = Response::decode(&m);
            }
        }
        let m = Message { function: 1, flags: 0, transaction: 0, attrs: vec![Attr { tag: 1, value: vec![0; 70000] }] };
        assert!(matches!(m.encode(), Err(IsnsError::TooLong(_))));
    }
}
