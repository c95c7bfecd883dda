//! The stored form of persistent reservations kept across power loss with APTPL (SPC-4 §5.9.4): a small,
//! line-oriented text that the driver writes to disk and hands back at start.
//!
//! ```text
//! polltgt-persistent-reservations 1
//! generation 7
//! registration 0x00000000000000ab iqn.1993-08.org.debian:01:host 0x23d000000001 iqn.2026-11.io.polltgt:t,t,0x0001 1
//! registration 0x00000000000000cd iqn.other - * 0
//! reservation 1 0
//! end
//! ```
//! A registration line carries the key, the initiator name, the ISID (`-` for a whole initiator device), the target
//! port name (`*` for every target port, ALL_TG_PT) and its relative target port identifier. The reservation line
//! carries the TYPE and the holder's registration index (`-` for All Registrants). Names are percent-encoded
//! outside printable ASCII and for `%`; the `end` line catches truncated files.

use crate::pr::PrType;
use crate::transport_id::{TargetPort, TransportId, MAX_ISCSI_NAME};

const MAGIC: &str = "polltgt-persistent-reservations";
const VERSION: &str = "1";

/// What is kept: generation, registrations (initiator, target port or all, key) and the reservation (type and
/// holder index, `None` for All Registrants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) generation: u32,
    pub(crate) registrations: Vec<(TransportId, Option<TargetPort>, u64)>,
    pub(crate) reservation: Option<(PrType, Option<usize>)>,
}

/// Stored persistent reservation state that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("persistent reservation state, line {line}: {reason}")]
pub struct PrStateError {
    /// 1-based line number (0: the whole text).
    pub line: usize,
    pub reason: String,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7E).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The text of `s`.
pub(crate) fn encode(s: &Stored) -> Vec<u8> {
    let mut t = format!("{MAGIC} {VERSION}\ngeneration {}\n", s.generation);
    for (initiator, port, key) in &s.registrations {
        let isid = match initiator.isid() {
            Some(i) => format!("0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", i[0], i[1], i[2], i[3], i[4], i[5]),
            None => "-".into(),
        };
        let (pname, rtpi) = match port {
            Some(p) => (escape(&p.name), p.relative_id),
            None => ("*".into(), 0),
        };
        t.push_str(&format!("registration 0x{key:016x} {} {isid} {pname} {rtpi}\n", escape(initiator.name())));
    }
    if let Some((kind, holder)) = s.reservation {
        let h = holder.map_or_else(|| "-".to_string(), |h| h.to_string());
        t.push_str(&format!("reservation {} {h}\n", kind as u8));
    }
    t.push_str("end\n");
    t.into_bytes()
}

fn hex_u64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Parses the text made by [`encode`]; every malformed line is an error naming it.
pub(crate) fn decode(data: &[u8]) -> Result<Stored, PrStateError> {
    let err = |line: usize, reason: &str| PrStateError { line, reason: reason.to_string() };
    let text = std::str::from_utf8(data).map_err(|_| err(0, "not UTF-8 text"))?;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, l)) if l == format!("{MAGIC} {VERSION}") => {}
        Some((_, l)) if l.starts_with(MAGIC) => return Err(err(1, "unsupported version")),
        _ => return Err(err(1, "not a polltgt persistent reservation file")),
    }
    let mut s = Stored { generation: 0, registrations: Vec::new(), reservation: None };
    let mut ended = false;
    for (n, line) in lines {
        if ended {
            return Err(err(n, "text after \"end\""));
        }
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["generation", g] => s.generation = g.parse().map_err(|_| err(n, "bad generation"))?,
            ["registration", key, name, isid, port, rtpi] => {
                let key = hex_u64(key).filter(|k| *k != 0).ok_or_else(|| err(n, "bad reservation key"))?;
                let name = unescape(name)
                    .filter(|x| !x.is_empty() && x.len() <= MAX_ISCSI_NAME)
                    .ok_or_else(|| err(n, "bad initiator name"))?;
                let isid = match *isid {
                    "-" => None,
                    x => {
                        let v = hex_u64(x).filter(|v| *v >> 48 == 0).ok_or_else(|| err(n, "bad ISID"))?;
                        let b = v.to_be_bytes();
                        Some([b[2], b[3], b[4], b[5], b[6], b[7]])
                    }
                };
                let rtpi: u16 = rtpi.parse().map_err(|_| err(n, "bad relative target port identifier"))?;
                let port = match *port {
                    "*" => None,
                    x => Some(TargetPort {
                        name: unescape(x).filter(|x| !x.is_empty()).ok_or_else(|| err(n, "bad target port name"))?,
                        relative_id: rtpi,
                    }),
                };
                s.registrations.push((TransportId::iscsi(&name, isid), port, key));
            }
            ["reservation", kind, holder] => {
                let kind = kind
                    .parse::<u8>()
                    .ok()
                    .and_then(PrType::from_u8)
                    .ok_or_else(|| err(n, "bad reservation type"))?;
                let holder = match *holder {
                    "-" => None,
                    h => Some(h.parse::<usize>().map_err(|_| err(n, "bad holder index"))?),
                };
                if kind.all_registrants() != holder.is_none() {
                    return Err(err(n, "holder does not fit the reservation type"));
                }
                if holder.is_some_and(|h| h >= s.registrations.len()) {
                    return Err(err(n, "holder is not a registration"));
                }
                if s.registrations.is_empty() {
                    return Err(err(n, "reservation without registrations"));
                }
                s.reservation = Some((kind, holder));
            }
            ["end"] => ended = true,
            _ => return Err(err(n, "unknown line")),
        }
    }
    if !ended {
        return Err(err(0, "truncated (no \"end\" line)"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stored {
        Stored {
            generation: 7,
            registrations: vec![
                (
                    TransportId::iscsi("iqn.host", Some([0x23, 0xd0, 0, 0, 0, 1])),
                    Some(TargetPort { name: "iqn.t,t,0x0001".into(), relative_id: 1 }),
                    0xab,
                ),
                (TransportId::iscsi("iqn.odd name%", None), None, 0xcd),
            ],
            reservation: Some((PrType::WriteExclusive, Some(0))),
        }
    }

    #[test]
    fn round_trip_and_golden_text() {
        let s = sample();
        let text = encode(&s);
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "polltgt-persistent-reservations 1\ngeneration 7\n\
             registration 0x00000000000000ab iqn.host 0x23d000000001 iqn.t,t,0x0001 1\n\
             registration 0x00000000000000cd iqn.odd%20name%25 - * 0\n\
             reservation 1 0\nend\n"
        );
        assert_eq!(decode(&text), Ok(s));
        let ar = Stored { reservation: Some((PrType::ExclusiveAccessAllRegistrants, None)), ..sample() };
        assert_eq!(decode(&encode(&ar)), Ok(ar));
    }

    #[test]
    fn refuses_damaged_text_naming_the_line() {
        let good = String::from_utf8(encode(&sample())).unwrap();
        let truncated = &good[..good.len() - 4];
        assert_eq!(decode(truncated.as_bytes()).unwrap_err().line, 0);
        assert_eq!(decode(b"hello\n").unwrap_err().line, 1);
        assert_eq!(decode(b"polltgt-persistent-reservations 2\nend\n").unwrap_err().reason, "unsupported version");
        for (bad, line) in [
            (good.replace("generation 7", "generation x"), 2),
            (good.replace("0x00000000000000ab", "0x0000000000000000"), 3),
            (good.replace("0x23d000000001", "0x123456789abcdef"), 3),
            (good.replace(" 1\nregistration", " 70000\nregistration"), 3),
            (good.replace("reservation 1 0", "reservation 2 0"), 5),
            (good.replace("reservation 1 0", "reservation 1 9"), 5),
            (good.replace("reservation 1 0", "reservation 7 0"), 5),
            (good.replace("end\n", "end\nmore\n"), 7),
            (good.replace("generation 7", "bogus"), 2),
        ] {
            let e = decode(bad.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{bad}: {e}");
        }
        assert_eq!(decode(&[0xff, 0xfe]).unwrap_err().line, 0);
    }
}
