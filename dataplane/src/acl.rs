//! Access control as iSCSI-SCST does it: initiator groups (SCST "security groups", `ini_groups`) with name patterns,
//! the per-portal ACL mode, and `allowed_portal` filters.
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
//! - Patterns are DOS-style: `*` matches any run of characters, `?` any one character, comparison ignores ASCII case
//!   (as SCST's `wildcmp`), and a leading `!` inverts the pattern.
//! - `allowed_portal` patterns (the same syntax) restrict the portal addresses a target is reachable and reported on;
//!   with none, every portal is allowed.

use std::net::IpAddr;

/// Whether `name` matches the SCST pattern `pattern` (`*`, `?`, leading `!`; ASCII case-insensitive).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(rest) => !glob(rest.as_bytes(), name.as_bytes()),
        None => glob(pattern.as_bytes(), name.as_bytes()),
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice, never recursive, so a hostile
/// pattern cannot exhaust the stack.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The name an initiator is known by for access control: its iSCSI name, or `name#portal_ip` in per-portal mode
/// (iSCSI-SCST's `iscsi_make_full_initiator_name`). IPv6 portal addresses are written without brackets.
pub fn acl_name(initiator: &str, portal_ip: IpAddr, per_portal_acl: bool) -> String {
    if per_portal_acl {
        format!("{initiator}#{portal_ip}")
    } else {
        initiator.to_string()
    }
}

/// Whether a portal address passes a target's `allowed_portal` patterns (no patterns: every portal).
pub fn portal_allowed(patterns: &[String], portal_ip: IpAddr) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let ip = portal_ip.to_string();
    patterns.iter().any(|p| pattern_matches(p, &ip))
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn allowed_portals_filter_addresses() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(portal_allowed(&[], ip("10.0.0.1")));
        let one = vec!["10.170.77.2".to_string()];
        assert!(portal_allowed(&one, ip("10.170.77.2")));
        assert!(!portal_allowed(&one, ip("10.170.75.2")));
        let two = vec!["10.170.77.2".to_string(), "10.170.75.2".to_string()];
        assert!(portal_allowed(&two, ip("10.170.75.2")));
        let wild = vec!["10.170.7?.2".to_string()];
        assert!(portal_allowed(&wild, ip("10.170.71.2")) && !portal_allowed(&wild, ip("10.170.81.2")));
        assert!(!portal_allowed(&["!*".to_string()], ip("127.0.0.1")));
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
}
