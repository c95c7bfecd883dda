//! Per-target access policy (iSCSI-SCST's `redirect`, `allowed_portal` and `MaxSessions` target attributes) and
//! the checks the registry's [`TargetCatalog`](polltgt_iscsi::login::TargetCatalog) answers with.
//!
//! * `redirect`: normal-session logins are answered 0x0101/0x0102 with the configured TargetAddress before any
//!   security negotiation; discovery sessions are not redirected (RFC 7143 §11.13.5, §13.8).
//! * `allowed_portal`: a target is reachable (logins) and discoverable (SendTargets) only through portals whose IP
//!   address matches one of its patterns; without patterns, through every portal.
//! * `MaxSessions`: at most this many normal sessions per target (0: no limit); a login beyond it is answered
//!   "out of resources" (0x0302). A reinstating login replaces a session and so does not count.
//! * iSNS access control ([`crate::isns`]): with `AccessControl`, only initiators sharing a discovery domain with
//!   the target see it in SendTargets and may log in (0x0202 otherwise).

use std::net::{IpAddr, SocketAddr};

use polltgt_iscsi::access::{portal_allowed, PortalPattern, Redirect};
use polltgt_iscsi::login::{PortalInfo, Refusal};

use crate::registry::{Portal, TargetEntry};

/// The access attributes of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetAccess {
    /// Redirect normal-session logins elsewhere.
    pub redirect: Option<Redirect>,
    /// Portals (by IP address pattern) the target is available on; empty: all.
    pub allowed_portals: Vec<PortalPattern>,
    /// Most normal sessions at once; 0: unlimited.
    pub max_sessions: u32,
}

impl TargetAccess {
    /// Whether the target is available through a portal with address `ip`.
    pub fn portal_allowed(&self, ip: IpAddr) -> bool {
        portal_allowed(&self.allowed_portals, ip)
    }
}

/// Why a normal-session login to `target` through `portal` is refused, in the order iSCSI-SCST checks: redirection
/// first (before security), then the portal.
pub(crate) fn login_refusal(target: &TargetEntry, portal: &PortalInfo) -> Option<Refusal> {
    if let Some(r) = &target.access.redirect {
        return Some(r.refusal());
    }
    if !target.access.portal_allowed(portal.local.ip()) {
        return Some(Refusal::NotFound);
    }
    None
}

/// The TargetAddress values (`ip:port,tpgt`, IPv6 in brackets) a target announces in SendTargets to a connection
/// that arrived on `local`: every portal its `allowed_portal` patterns accept, a wildcard portal reported with the
/// address the initiator reached.
pub(crate) fn target_addresses(target: &TargetEntry, portals: &[Portal], local: &SocketAddr) -> Vec<String> {
    portals
        .iter()
        .filter_map(|p| {
            let ip = if p.addr.ip().is_unspecified() { local.ip() } else { p.addr.ip() };
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            target.access.portal_allowed(ip).then(|| format!("{},{}", SocketAddr::new(ip, p.addr.port()), p.tpgt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_iscsi::chap::Credentials;
    use polltgt_iscsi::params::TargetParams;
    use std::collections::BTreeMap;

    fn target(access: TargetAccess) -> TargetEntry {
        TargetEntry {
            name: "iqn.2026-11.io.polltgt:t".into(),
            alias: None,
            enabled: true,
            params: TargetParams::default(),
            luns: BTreeMap::new(),
            credentials: Credentials::none(),
            access,
        }
    }

    fn portals() -> Vec<Portal> {
        vec![
            Portal { addr: "10.0.0.1:3260".parse().unwrap(), tpgt: 1 },
            Portal { addr: "[fd00::1]:3261".parse().unwrap(), tpgt: 2 },
            Portal { addr: "0.0.0.0:3262".parse().unwrap(), tpgt: 3 },
        ]
    }

    fn patterns(ps: &[&str]) -> Vec<PortalPattern> {
        ps.iter().map(|p| PortalPattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn addresses_follow_allowed_portal() {
        let local: SocketAddr = "192.168.1.5:3262".parse().unwrap();
        let all = target(TargetAccess::default());
        assert_eq!(
            target_addresses(&all, &portals(), &local),
            vec!["10.0.0.1:3260,1", "[fd00::1]:3261,2", "192.168.1.5:3262,3"]
        );
        let only_v6 = target(TargetAccess { allowed_portals: patterns(&["fd00::*"]), ..Default::default() });
        assert_eq!(target_addresses(&only_v6, &portals(), &local), vec!["[fd00::1]:3261,2"]);
        let not_10 = target(TargetAccess { allowed_portals: patterns(&["!10.*"]), ..Default::default() });
        assert_eq!(target_addresses(&not_10, &portals(), &local), vec!["[fd00::1]:3261,2", "192.168.1.5:3262,3"]);
        let none = target(TargetAccess { allowed_portals: patterns(&["!*"]), ..Default::default() });
        assert!(target_addresses(&none, &portals(), &local).is_empty());
    }

    #[test]
    fn login_refusals_in_order() {
        let portal = PortalInfo { local: "10.0.0.1:3260".parse().unwrap(), tpgt: 1 };
        assert_eq!(login_refusal(&target(TargetAccess::default()), &portal), None);
        let blocked = target(TargetAccess { allowed_portals: patterns(&["10.0.0.2"]), ..Default::default() });
        assert_eq!(login_refusal(&blocked, &portal), Some(Refusal::NotFound));
        let redirected = target(TargetAccess {
            redirect: Some(Redirect::parse("10.0.0.9:3260 perm").unwrap()),
            allowed_portals: patterns(&["10.0.0.2"]),
            max_sessions: 0,
        });
        assert_eq!(
            login_refusal(&redirected, &portal),
            Some(Refusal::Redirect { address: "10.0.0.9:3260".into(), permanent: true })
        );
    }
}
