//! Access control as iSCSI-SCST does it: initiator groups (SCST "security groups", `ini_groups`) with name patterns,
//! the per-portal ACL mode, `allowed_portal` filters, iSNS discovery domains and login redirection. This module is
//! the one place that decides what an initiator sees in SendTargets and whether its login to a target goes on.
//!
//! - An initiator is looked up in the target's groups in order; the first group with a matching initiator pattern
//!   is its group, and the group's LUN set *replaces* the target's default LUN set for it. When no group matches, the
//!   default set applies (SCST README, "Access and devices visibility management").
//! - An initiator whose LUN set is empty does not see the target at all: SendTargets leaves it out and logins are
//!   refused (iSCSI-SCST README, "Advanced initiators access control": "If an SCST security group doesn't have any
//!   LUNs, all the initiator, which should be assigned to it, will not see this target").
//! - With `per_portal_acl`, the name matched against the patterns is `initiator#portal_ip`, the portal being the
//!   target address the initiator connected to, so a pattern such as `iqn...:host1#10.0.0.2` or `iqn...:host1*`
//!   selects portals too.
//! - Patterns are DOS-style ([`polltgt_iscsi::access::wildcmp`], the one matcher): `*` matches any run of
//!   characters, `?` any one character, comparison ignores ASCII case (as SCST's `wildcmp`), and a leading `!`
//!   inverts the pattern.
//! - `allowed_portal` patterns ([`polltgt_iscsi::access::PortalPattern`], the same matcher) restrict the portal addresses a target is
//!   reachable and reported on; with none, every portal is allowed.
//! - With iSNS access control ([`crate::isns`]) only initiators sharing a discovery domain with the target see it.
//! - As iSCSI-SCST's iscsid does (`login_start`, `target_list_build`): a target the initiator may not reach through
//!   the portal it connected to is left out of SendTargets, and a login to it is answered "target not found"
//!   (0x0203), before any `redirect` (0x0101/0x0102) is considered; SendTargets lists, for a target it shows, the
//!   portals the initiator may reach it through.

use std::net::{IpAddr, SocketAddr};

use polltgt_iscsi::access::portal_ip_text;
use polltgt_iscsi::login::Refusal;

use crate::isns::IsnsAcl;
use crate::registry::{Portal, TargetEntry};

/// Whether `name` matches the SCST pattern `pattern` (`*`, `?`, leading `!`; ASCII case-insensitive).
pub use polltgt_iscsi::access::wildcmp as pattern_matches;

/// The name an initiator is known by for access control: its iSCSI name, or `name#portal_ip` in per-portal mode
/// (iSCSI-SCST's `iscsi_make_full_initiator_name`). IPv6 portal addresses are written without brackets.
pub fn acl_name(initiator: &str, portal_ip: IpAddr, per_portal_acl: bool) -> String {
    if per_portal_acl {
        format!("{initiator}#{}", portal_ip_text(portal_ip))
    } else {
        initiator.to_string()
    }
}

/// Whether a portal address passes a target's `allowed_portal` patterns (no patterns: every portal).
pub use polltgt_iscsi::access::portal_allowed;

/// The index of the first group (in order) one of whose patterns matches `name`.
pub fn select_group<'a, I, P>(groups: I, name: &str) -> Option<usize>
where
    I: IntoIterator<Item = P>,
    P: IntoIterator<Item = &'a String>,
{
    groups
        .into_iter()
        .position(|patterns| patterns.into_iter().any(|p| pattern_matches(p, name)))
}

/// Why `initiator` may not reach `target` through a portal with address `portal_ip` (None: it may): the target
/// disabled, the portal outside `allowed_portal`, an empty LUN set for the initiator, or iSNS access control.
/// iSCSI-SCST answers all of them "target not found" (0x0203).
pub(crate) fn access_refusal(
    target: &TargetEntry,
    initiator: &str,
    portal_ip: IpAddr,
    isns: &IsnsAcl,
) -> Option<Refusal> {
    let reachable = target.enabled && target.visible_to(initiator, portal_ip) && isns.allows(&target.name, initiator);
    (!reachable).then_some(Refusal::NotFound)
}

/// Why a normal-session login of `initiator` to `target` through `portal_ip` is refused: access control first,
/// then redirection (iSCSI-SCST's order; both before security negotiation).
pub(crate) fn login_refusal(
    target: &TargetEntry,
    initiator: &str,
    portal_ip: IpAddr,
    isns: &IsnsAcl,
) -> Option<Refusal> {
    access_refusal(target, initiator, portal_ip, isns).or_else(|| target.redirect.as_ref().map(|r| r.refusal()))
}

/// The SendTargets answer for `initiator` connected through `local` (RFC 7143 Appendix C): every target (or only
/// `which`) it may reach through that portal, each with the TargetAddress values (`ip:port,tpgt`, IPv6 in brackets)
/// of the portals it may reach it through; a wildcard portal is reported with the address the initiator reached.
pub(crate) fn send_targets<'a>(
    targets: impl IntoIterator<Item = &'a TargetEntry>,
    portals: &[Portal],
    initiator: &str,
    local: &SocketAddr,
    which: Option<&str>,
    isns: &IsnsAcl,
) -> Vec<(String, Vec<String>)> {
    targets
        .into_iter()
        .filter(|t| which.is_none_or(|w| w == t.name))
        .filter(|t| access_refusal(t, initiator, local.ip(), isns).is_none())
        .map(|t| (t.name.clone(), target_addresses(t, portals, initiator, local, isns)))
        .collect()
}

/// The TargetAddress values of `target` for `initiator`: the portals it may reach the target through.
fn target_addresses(
    target: &TargetEntry,
    portals: &[Portal],
    initiator: &str,
    local: &SocketAddr,
    isns: &IsnsAcl,
) -> Vec<String> {
    portals
        .iter()
        .filter_map(|p| {
            let ip = if p.addr.ip().is_unspecified() {
                local.ip()
            } else {
                p.addr.ip()
            };
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            access_refusal(target, initiator, ip, isns)
                .is_none()
                .then(|| format!("{},{}", SocketAddr::new(ip, p.addr.port()), p.tpgt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_iscsi::access::PortalPattern;

    #[test]
    fn dos_patterns_as_the_scst_readme_describes() {
        // SCST README: "blah.xxx" matches "bl?h.*"; "ah.xxx" matches "!bl?h.*".
        assert!(pattern_matches("bl?h.*", "blah.xxx"));
        assert!(pattern_matches("!bl?h.*", "ah.xxx"));
        assert!(!pattern_matches("!bl?h.*", "blah.xxx"));
        // iSCSI-SCST README: "10.170.77.2" matches "10.170.7?.*"; "10.170.67.2" matches "!10.170.7?.*".
        assert!(pattern_matches("10.170.7?.*", "10.170.77.2"));
        assert!(pattern_matches("!10.170.7?.*", "10.170.67.2"));
        assert!(pattern_matches("10.170.7?.2", "10.170.75.2"));
        assert!(!pattern_matches("10.170.7?.2", "10.170.7.2"));
        assert!(!pattern_matches("!*", "anything"));
        assert!(pattern_matches("*", ""));
    }

    #[test]
    fn literal_names_match_exactly_but_ignore_ascii_case() {
        let n = "iqn.2005-03.org.open-iscsi:cacdcd2520";
        assert!(pattern_matches(n, n));
        assert!(pattern_matches("IQN.2005-03.ORG.open-iscsi:CACDCD2520", n));
        assert!(!pattern_matches(n, "iqn.2005-03.org.open-iscsi:cacdcd252"));
        assert!(!pattern_matches("iqn.2005-03.org.open-iscsi:cacdcd252", n));
        assert!(!pattern_matches("", n));
        assert!(pattern_matches("", ""));
    }

    #[test]
    fn stars_backtrack_and_combine_with_question_marks() {
        assert!(pattern_matches("21:*:e0:?b:83:*", "21:00:00:e0:8b:83:44:12"));
        assert!(!pattern_matches("21:*:e0:?b:83:*", "21:00:00:e0:8c:83:44:12"));
        assert!(pattern_matches("*a*b*c", "xxaxxbxxbxc"));
        assert!(!pattern_matches("*a*b*c", "xxaxxbxxbx"));
        assert!(pattern_matches("a**", "a"));
        assert!(pattern_matches("?*", "x"));
        assert!(!pattern_matches("?*", ""));
        // A long hostile pattern finishes (no exponential backtracking).
        let pat = "*a".repeat(30) + "b";
        assert!(!pattern_matches(&pat, &"a".repeat(200)));
    }

    #[test]
    fn per_portal_names_and_blocking_patterns() {
        let ip: IpAddr = "10.170.77.2".parse().unwrap();
        let name = acl_name("iqn.2005-03.org.vlnb:cacdcd2520", ip, true);
        assert_eq!(name, "iqn.2005-03.org.vlnb:cacdcd2520#10.170.77.2");
        assert!(pattern_matches("iqn.2005-03.org.vlnb:cacdcd2520#10.170.77.2", &name));
        assert!(pattern_matches("iqn.2005-03.org.vlnb:cacdcd2520*", &name));
        assert!(!pattern_matches("iqn.2005-03.org.vlnb:cacdcd2520#10.170.75.2", &name));
        assert_eq!(acl_name("iqn.x", ip, false), "iqn.x");
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(acl_name("iqn.x", v6, true), "iqn.x#::1");
    }

    fn patterns(ps: &[&str]) -> Vec<PortalPattern> {
        ps.iter().map(|p| PortalPattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn allowed_portals_filter_addresses() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(portal_allowed(&[], ip("10.0.0.1")));
        let one = patterns(&["10.170.77.2"]);
        assert!(portal_allowed(&one, ip("10.170.77.2")));
        assert!(!portal_allowed(&one, ip("10.170.75.2")));
        let two = patterns(&["10.170.77.2", "10.170.75.2"]);
        assert!(portal_allowed(&two, ip("10.170.75.2")));
        let wild = patterns(&["10.170.7?.2"]);
        assert!(portal_allowed(&wild, ip("10.170.71.2")) && !portal_allowed(&wild, ip("10.170.81.2")));
        assert!(!portal_allowed(&patterns(&["!*"]), ip("127.0.0.1")));
    }

    #[test]
    fn the_first_matching_group_wins() {
        let groups: Vec<Vec<String>> = vec![
            vec!["iqn.2026-11.io.a:*".into()],
            vec!["!iqn.2026-11.io.good*".into()],
            vec!["iqn.2026-11.io.a:one".into()],
        ];
        assert_eq!(select_group(&groups, "iqn.2026-11.io.a:one"), Some(0));
        assert_eq!(select_group(&groups, "iqn.2026-11.io.bad:x"), Some(1));
        assert_eq!(select_group(&groups, "iqn.2026-11.io.good:x"), None);
        let none: Vec<Vec<String>> = Vec::new();
        assert_eq!(select_group(&none, "x"), None);
    }

    mod filtering {
        use super::super::*;
        use crate::registry::{LunEntry, Registry};
        use polltgt_iscsi::access::{PortalPattern, Redirect};
        use polltgt_iscsi::params::TargetParams;
        use std::sync::Arc;

        /// An enabled target with one LUN (a target without LUNs is visible to nobody).
        fn target() -> TargetEntry {
            let r = Registry::new();
            let bdev = Arc::new(polltgt_bdev::NullBdev::new("d0", 512, 1024).unwrap());
            r.add_device(
                "d0",
                bdev,
                polltgt_scsi::LuConfig {
                    num_blocks: 1024,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut t = TargetEntry::new("iqn.2026-11.io.polltgt:t", None, TargetParams::default(), true);
            t.luns.insert(0, LunEntry::new(0, r.device("d0").unwrap(), false));
            t
        }

        fn portals() -> Vec<Portal> {
            vec![
                Portal {
                    addr: "10.0.0.1:3260".parse().unwrap(),
                    tpgt: 1,
                },
                Portal {
                    addr: "[fd00::1]:3261".parse().unwrap(),
                    tpgt: 2,
                },
                Portal {
                    addr: "0.0.0.0:3262".parse().unwrap(),
                    tpgt: 3,
                },
            ]
        }

        fn with_portals(ps: &[&str]) -> TargetEntry {
            TargetEntry {
                allowed_portals: ps.iter().map(|p| PortalPattern::parse(p).unwrap()).collect(),
                ..target()
            }
        }

        const INI: &str = "iqn.2026-11.io.x:i";

        #[test]
        fn addresses_follow_allowed_portal() {
            let isns = IsnsAcl::default();
            let local: SocketAddr = "192.168.1.5:3262".parse().unwrap();
            assert_eq!(
                target_addresses(&target(), &portals(), INI, &local, &isns),
                vec!["10.0.0.1:3260,1", "[fd00::1]:3261,2", "192.168.1.5:3262,3"]
            );
            let only_v6 = with_portals(&["fd00::*"]);
            assert_eq!(
                target_addresses(&only_v6, &portals(), INI, &local, &isns),
                vec!["[fd00::1]:3261,2"]
            );
            let not_10 = with_portals(&["!10.*"]);
            assert_eq!(
                target_addresses(&not_10, &portals(), INI, &local, &isns),
                vec!["[fd00::1]:3261,2", "192.168.1.5:3262,3"]
            );
            assert!(target_addresses(&with_portals(&["!*"]), &portals(), INI, &local, &isns).is_empty());
        }

        #[test]
        fn send_targets_lists_only_targets_reachable_through_the_asking_portal() {
            let isns = IsnsAcl::default();
            let only_v6 = TargetEntry {
                name: "iqn.2026-11.io.polltgt:v6".into(),
                ..with_portals(&["fd00::*"])
            };
            let all = target();
            let v4: SocketAddr = "10.0.0.1:3260".parse().unwrap();
            let v6: SocketAddr = "[fd00::1]:3261".parse().unwrap();
            let names = |local: &SocketAddr| -> Vec<String> {
                send_targets([&all, &only_v6], &portals(), INI, local, None, &isns)
                    .into_iter()
                    .map(|t| t.0)
                    .collect()
            };
            assert_eq!(names(&v4), vec![all.name.clone()]);
            assert_eq!(names(&v6), vec![all.name.clone(), only_v6.name.clone()]);
            // iSNS access control hides the target from initiators outside its discovery domains.
            isns.set_enabled(true);
            isns.set_visible(&all.name, [INI.to_string()]);
            assert_eq!(names(&v6), vec![all.name.clone()]);
            assert!(send_targets([&all], &portals(), "iqn.2026-11.io.x:other", &v4, None, &isns).is_empty());
        }

        #[test]
        fn login_refusals_in_order() {
            let isns = IsnsAcl::default();
            let ip: IpAddr = "10.0.0.1".parse().unwrap();
            assert_eq!(login_refusal(&target(), INI, ip, &isns), None);
            let blocked = with_portals(&["10.0.0.2"]);
            assert_eq!(login_refusal(&blocked, INI, ip, &isns), Some(Refusal::NotFound));
            let redirect = Some(Redirect::parse("10.0.0.9:3260 perm").unwrap());
            // Access control before redirection, as iSCSI-SCST's login_start checks.
            let blocked_redirected = TargetEntry {
                redirect: redirect.clone(),
                ..blocked
            };
            assert_eq!(
                login_refusal(&blocked_redirected, INI, ip, &isns),
                Some(Refusal::NotFound)
            );
            let redirected = TargetEntry { redirect, ..target() };
            assert_eq!(
                login_refusal(&redirected, INI, ip, &isns),
                Some(Refusal::Redirect {
                    address: "10.0.0.9:3260".into(),
                    permanent: true
                })
            );
            let disabled = TargetEntry {
                enabled: false,
                ..target()
            };
            assert_eq!(login_refusal(&disabled, INI, ip, &isns), Some(Refusal::NotFound));
        }
    }
}
