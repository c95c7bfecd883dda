//! Target access attributes with a syntax of their own, as iSCSI-SCST names them: `allowed_portal` patterns (which
//! portals a target is reachable and discoverable on) and `redirect` (login redirection, RFC 7143 §11.13.5 status
//! class 1 with a TargetAddress, §13.8).
//!
//! Both are parsed once (configuration, management) into values the target registry consults at login and
//! discovery. Nothing here does I/O.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::login::Refusal;

/// The port of an address given without one (IANA "iscsi-target", RFC 7143 §13.8).
pub const DEFAULT_PORT: u16 = 3260;

/// Longest pattern accepted (an IPv6 address with wildcards fits easily).
const MAX_PATTERN_LEN: usize = 128;

/// Errors of the access attribute syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("an allowed_portal pattern must not be empty")]
    EmptyPattern,
    #[error("allowed_portal pattern {0:?} is longer than {MAX_PATTERN_LEN} characters")]
    PatternTooLong(String),
    #[error("allowed_portal pattern {0:?} may only contain address characters and the wildcards * and ? (after an optional leading !)")]
    PatternCharacters(String),
    #[error("redirect {0:?} must be \"<ip>[:port] temp\" or \"<ip>[:port] perm\" (IPv6 addresses in brackets)")]
    RedirectSyntax(String),
    #[error(
        "redirect address {0:?} is not an IPv4 address or a bracketed IPv6 address, with an optional port 1..65535"
    )]
    RedirectAddress(String),
}

/// One `allowed_portal` pattern: a DOS-style wildcard pattern over the textual IP address of a portal (`*` any run
/// of characters, `?` one character), inverted by a leading `!` (iSCSI-SCST README, "Advanced initiators access
/// control"). IPv6 addresses are matched in their canonical compressed form without brackets, IPv4-mapped IPv6
/// addresses as IPv4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortalPattern {
    negate: bool,
    glob: String,
}

impl PortalPattern {
    /// Parses a pattern such as `10.170.77.2`, `10.170.7?.*`, `!*` or `fe80::*`.
    pub fn parse(text: &str) -> Result<PortalPattern, AccessError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AccessError::EmptyPattern);
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(AccessError::PatternTooLong(text.to_string()));
        }
        let (negate, glob) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let ok =
            !glob.is_empty() && glob.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*' | '?' | '%'));
        if !ok {
            return Err(AccessError::PatternCharacters(text.to_string()));
        }
        Ok(PortalPattern { negate, glob: glob.to_ascii_lowercase() })
    }

    /// Whether the pattern is inverted (`!`).
    pub fn is_negated(&self) -> bool {
        self.negate
    }

    /// Whether `ip` matches the pattern (the `!` applied).
    pub fn matches(&self, ip: IpAddr) -> bool {
        glob_match(self.glob.as_bytes(), portal_ip_text(ip).as_bytes()) != self.negate
    }
}

impl fmt::Display for PortalPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negate {
            f.write_str("!")?;
        }
        f.write_str(&self.glob)
    }
}

impl FromStr for PortalPattern {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, AccessError> {
        PortalPattern::parse(s)
    }
}

/// Whether a target with these `allowed_portal` patterns is available on a portal with address `ip`: always when
/// there are no patterns, otherwise when at least one pattern matches.
pub fn portal_allowed(patterns: &[PortalPattern], ip: IpAddr) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(ip))
}

/// The text patterns are matched against: IPv4 dotted quad, IPv6 compressed without brackets, IPv4-mapped IPv6 as
/// IPv4.
pub fn portal_ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// SCST's `wildcmp`, the one pattern matcher of the target's access control (initiator name patterns of initiator
/// groups, `allowed_portal`): `*` matches any run of characters, `?` any one character, comparison ignores ASCII
/// case, and a leading `!` inverts the result (SCST README, "Access and devices visibility management").
pub fn wildcmp(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(rest) => !glob_match(rest.as_bytes(), name.as_bytes()),
        None => glob_match(pattern.as_bytes(), name.as_bytes()),
    }
}

/// `*` and `?` wildcard matching ignoring ASCII case, iterative with one backtrack point (linear in practice, never
/// recursive, so a hostile pattern cannot exhaust the stack).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// A login redirection (iSCSI-SCST's `redirect` target attribute): normal-session logins to the target are answered
/// "target moved temporarily" (0x0101) or "permanently" (0x0102) with this TargetAddress before any security
/// negotiation; discovery sessions are not redirected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// The address to log in at instead.
    pub addr: SocketAddr,
    /// 0x0102 (perm) rather than 0x0101 (temp).
    pub permanent: bool,
}

impl Redirect {
    /// Parses `"<ip>[:port] temp|perm"`; IPv6 addresses in brackets (`"[fe80::1]:3260 perm"`). Without a port,
    /// 3260.
    pub fn parse(text: &str) -> Result<Redirect, AccessError> {
        let mut words = text.split_whitespace();
        let (Some(addr), Some(kind), None) = (words.next(), words.next(), words.next()) else {
            return Err(AccessError::RedirectSyntax(text.to_string()));
        };
        let permanent = match kind.to_ascii_lowercase().as_str() {
            "temp" => false,
            "perm" => true,
            _ => return Err(AccessError::RedirectSyntax(text.to_string())),
        };
        let addr = parse_address(addr).ok_or_else(|| AccessError::RedirectAddress(addr.to_string()))?;
        Ok(Redirect { addr, permanent })
    }

    /// The TargetAddress value sent with the redirection (§13.8: `domainname[:port]`, IPv6 in brackets).
    pub fn target_address(&self) -> String {
        self.addr.to_string()
    }

    /// The refusal the login answers with.
    pub fn refusal(&self) -> Refusal {
        Refusal::Redirect { address: self.target_address(), permanent: self.permanent }
    }
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.addr, if self.permanent { "perm" } else { "temp" })
    }
}

impl FromStr for Redirect {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, AccessError> {
        Redirect::parse(s)
    }
}

/// `a.b.c.d`, `a.b.c.d:port`, `[v6]` or `[v6]:port`; the port 1..65535, 3260 when absent.
fn parse_address(text: &str) -> Option<SocketAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => parse_port(p.strip_prefix(':')?)?,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    let (ip, port) = match text.split_once(':') {
        Some((ip, p)) => (ip, parse_port(p)?),
        None => (text, DEFAULT_PORT),
    };
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn scst_readme_examples() {
        // "10.170.77.2" will match "10.170.7?.*"; "10.170.67.2" will match "!10.170.7?.*".
        let p = PortalPattern::parse("10.170.7?.*").unwrap();
        assert!(p.matches(ip("10.170.77.2")));
        assert!(!p.matches(ip("10.170.67.2")));
        let n = PortalPattern::parse("!10.170.7?.*").unwrap();
        assert!(n.matches(ip("10.170.67.2")));
        assert!(!n.matches(ip("10.170.77.2")));
        let none = PortalPattern::parse("!*").unwrap();
        assert!(!none.matches(ip("127.0.0.1")) && !none.matches(ip("::1")));
        let exact = PortalPattern::parse("10.170.77.2").unwrap();
        assert!(exact.matches(ip("10.170.77.2")) && !exact.matches(ip("10.170.77.20")));
    }

    #[test]
    fn several_patterns_allow_when_any_matches() {
        let ps: Vec<PortalPattern> =
            ["10.170.77.2", "10.170.75.2"].iter().map(|s| PortalPattern::parse(s).unwrap()).collect();
        assert!(portal_allowed(&ps, ip("10.170.75.2")));
        assert!(!portal_allowed(&ps, ip("10.170.76.2")));
        assert!(portal_allowed(&[], ip("192.0.2.1")), "no pattern: every portal");
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let p = PortalPattern::parse("FE80::*").unwrap();
        assert!(p.matches(ip("fe80::1")));
        assert!(!p.matches(ip("::1")));
        let v4 = PortalPattern::parse("127.0.0.1").unwrap();
        assert!(v4.matches(ip("::ffff:127.0.0.1")), "IPv4-mapped addresses match as IPv4");
        assert!(PortalPattern::parse("::1").unwrap().matches(ip("::1")));
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"**?", b"x"));
        assert!(!glob_match(b"?", b""));
        assert!(glob_match(b"1*1", b"1.2.1.1"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(PortalPattern::parse(" "), Err(AccessError::EmptyPattern));
        assert!(matches!(PortalPattern::parse("!"), Err(AccessError::PatternCharacters(_))));
        assert!(matches!(PortalPattern::parse("host.example"), Err(AccessError::PatternCharacters(_))));
        assert!(matches!(PortalPattern::parse("10.0.0.1 x"), Err(AccessError::PatternCharacters(_))));
        assert!(matches!(PortalPattern::parse(&"1".repeat(200)), Err(AccessError::PatternTooLong(_))));
        assert_eq!(PortalPattern::parse("!10.*").unwrap().to_string(), "!10.*");
    }

    #[test]
    fn redirects() {
        let r = Redirect::parse("10.170.77.2:32600 temp").unwrap();
        assert_eq!((r.target_address().as_str(), r.permanent), ("10.170.77.2:32600", false));
        assert_eq!(r.refusal(), Refusal::Redirect { address: "10.170.77.2:32600".into(), permanent: false });
        let r = Redirect::parse("[fe80::1]:3261 PERM").unwrap();
        assert_eq!((r.target_address().as_str(), r.permanent), ("[fe80::1]:3261", true));
        let r = Redirect::parse("192.0.2.7 perm").unwrap();
        assert_eq!(r.target_address(), "192.0.2.7:3260");
        assert_eq!(r.to_string(), "192.0.2.7:3260 perm");
        assert_eq!(Redirect::parse(&r.to_string()).unwrap(), r);
        for bad in ["10.0.0.1", "10.0.0.1:3260 later", "10.0.0.1 temp extra", "", "temp"] {
            assert!(matches!(Redirect::parse(bad), Err(AccessError::RedirectSyntax(_))), "{bad}");
        }
        for bad in
            ["fe80::1 temp", "[fe80::1 temp", "10.0.0.1:0 temp", "10.0.0.1:99999 temp", "host:3260 temp", "[::1]x temp"]
        {
            assert!(matches!(Redirect::parse(bad), Err(AccessError::RedirectAddress(_))), "{bad}");
        }
    }
}
