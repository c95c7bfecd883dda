//! Values of the iSCSI protocol attributes beyond negotiation (iSCSI-SCST names): `redirect`, `allowed_portal`,
//! `iSNSServer` and the `DEBUG_DIGEST_FAILURES` fault injection, with the serde helpers that check them while they
//! are parsed (so errors carry the line and column of the value).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use polltgt_iscsi::access::{PortalPattern, Redirect};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::values::InvalidValue;

/// The iSNS port (RFC 4171 §6.2, IANA "isns").
pub const ISNS_DEFAULT_PORT: u16 = 3205;

/// `deserialize_with` for `redirect`: `"<ip>[:port] temp|perm"` (IPv6 in brackets); an empty string is no
/// redirection, as in SCST.
pub(crate) fn redirect<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Redirect>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<Redirect>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("\"<ip>[:port] temp\" or \"<ip>[:port] perm\" (IPv6 addresses in brackets), or \"\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Redirect>, E> {
            if v.trim().is_empty() {
                return Ok(None);
            }
            Redirect::parse(v).map(Some).map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<Redirect>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `serialize_with` for `redirect`.
pub(crate) fn serialize_redirect<S: Serializer>(r: &Option<Redirect>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_str(""),
    }
}

/// `deserialize_with` for `allowed_portal`: one pattern or a list (`"10.170.7?.*"`, `"!*"`).
pub(crate) fn portal_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortalPattern>, D::Error> {
    struct One;
    impl Visitor<'_> for One {
        type Value = PortalPattern;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an allowed_portal pattern such as \"10.170.77.2\", \"10.170.7?.*\" or \"!*\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<PortalPattern, E> {
            PortalPattern::parse(v).map_err(E::custom)
        }
    }
    struct Pattern(PortalPattern);
    impl<'de> Deserialize<'de> for Pattern {
        fn deserialize<D2: Deserializer<'de>>(d: D2) -> Result<Pattern, D2::Error> {
            d.deserialize_str(One).map(Pattern)
        }
    }
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<PortalPattern>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an allowed_portal pattern or a list of them")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<PortalPattern>, E> {
            One.visit_str(v).map(|p| vec![p])
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PortalPattern>, A::Error> {
            let mut out = Vec::new();
            while let Some(Pattern(p)) = seq.next_element::<Pattern>()? {
                out.push(p);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<PortalPattern>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(List)
}

/// `serialize_with` for `allowed_portal`.
pub(crate) fn serialize_portal_patterns<S: Serializer>(v: &[PortalPattern], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for p in v {
        seq.serialize_element(&p.to_string())?;
    }
    seq.end()
}

/// The driver-level `iSNSServer` attribute: `"<host>[:port] [AccessControl]"` — the iSNS server to register the
/// targets and portals with (port 3205 by default), and whether its discovery domains control which initiators see
/// and reach the targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsnsServer {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub access_control: bool,
}

impl IsnsServer {
    /// `host:port` for connecting (IPv6 in brackets).
    pub fn address(&self) -> String {
        match self.host.parse::<Ipv6Addr>() {
            Ok(v6) => SocketAddr::new(IpAddr::V6(v6), self.port).to_string(),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Display for IsnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())?;
        if self.access_control {
            f.write_str(" AccessControl")?;
        }
        Ok(())
    }
}

impl FromStr for IsnsServer {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<IsnsServer, InvalidValue> {
        let bad = || {
            InvalidValue(format!(
                "{text:?} is not an iSNS server: expected \"<host or IP>[:port] [AccessControl]\" (IPv6 in brackets)"
            ))
        };
        let mut words = text.split_whitespace();
        let addr = words.next().ok_or_else(bad)?;
        let access_control = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("AccessControl") => true,
            Some(_) => return Err(bad()),
        };
        if words.next().is_some() {
            return Err(bad());
        }
        let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            ip.parse::<Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => ISNS_DEFAULT_PORT,
                p => p.strip_prefix(':').and_then(parse_port).ok_or_else(bad)?,
            };
            (ip.to_string(), port)
        } else {
            match addr.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p).ok_or_else(bad)?),
                None => (addr.to_string(), ISNS_DEFAULT_PORT),
            }
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !host_ok {
            return Err(bad());
        }
        Ok(IsnsServer { host, port, access_control })
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|p| *p != 0)
}

impl Serialize for IsnsServer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for IsnsServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IsnsServer, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsnsServer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"<host>[:port] [AccessControl]\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsnsServer, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Digest fault injection (`DEBUG_DIGEST_FAILURES`, after iSCSI-SCST's CONFIG_SCST_ISCSI_DEBUG_DIGEST_FAILURES):
/// every `receive`-th PDU received with a digest is treated as a digest error, every `send`-th PDU sent with a
/// digest gets a corrupted one; 0 (the default) disables a direction. For testing initiators and the target's
/// error handling, never for production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestFaultConfig {
    #[serde(default, deserialize_with = "crate::values::ranged::<_, u32, 0, 4294967295>")]
    pub receive: u32,
    #[serde(default, deserialize_with = "crate::values::ranged::<_, u32, 0, 4294967295>")]
    pub send: u32,
}

impl DigestFaultConfig {
    pub fn is_off(&self) -> bool {
        self.receive == 0 && self.send == 0
    }

    /// The iSCSI core's setting.
    pub fn to_faults(self) -> polltgt_iscsi::conn::DigestFaults {
        polltgt_iscsi::conn::DigestFaults { receive_every: self.receive, send_every: self.send }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isns_server_values() {
        let s: IsnsServer = "192.168.1.16 AccessControl".parse().unwrap();
        assert_eq!(s, IsnsServer { host: "192.168.1.16".into(), port: 3205, access_control: true });
        assert_eq!(s.to_string(), "192.168.1.16:3205 AccessControl");
        let s: IsnsServer = "isns.example.com:3206".parse().unwrap();
        assert_eq!((s.host.as_str(), s.port, s.access_control), ("isns.example.com", 3206, false));
        let s: IsnsServer = "[fd00::5]:4000 accesscontrol".parse().unwrap();
        assert_eq!((s.address().as_str(), s.access_control), ("[fd00::5]:4000", true));
        assert_eq!(s.to_string().parse::<IsnsServer>().unwrap(), s);
        for bad in ["", "host:0", "host:x", "a b", "1.2.3.4 AccessControl extra", "[fd00::5", "ho st", "h_st"] {
            assert!(bad.parse::<IsnsServer>().is_err(), "{bad:?}");
        }
    }
}
