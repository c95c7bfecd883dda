//! The protocol attributes beyond negotiation: redirect, allowed_portal, MaxSessions, numbered IncomingUser<n>,
//! iSNSServer, DEBUG_DIGEST_FAILURES and LoginTimeout — accepted forms, round trips and exact errors.

use polltgt_iscsi::access::Redirect;
use polltgt_mgmt::protocol::{DigestFaultConfig, IsnsServer};
use polltgt_mgmt::Config;

fn load(text: &str) -> Config {
    Config::from_yaml_str(text, "polltgt.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match Config::from_yaml_str(text, "polltgt.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_target(body: &str) -> String {
    format!(
        "devices:\n  - name: disk1\n    handler: ram\n    size: 1G\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n{body}"
    )
}

#[test]
fn target_access_attributes() {
    let c = load(&with_target(
        "    redirect: \"[fd00::2]:3261 perm\"\n    allowed_portal: [ \"10.170.7?.*\", \"!*\" ]\n    MaxSessions: 4\n",
    ));
    let t = &c.targets[0];
    assert_eq!(t.redirect, Some(Redirect::parse("[fd00::2]:3261 perm").unwrap()));
    assert_eq!(t.allowed_portals.iter().map(|p| p.to_string()).collect::<Vec<_>>(), vec!["10.170.7?.*", "!*"]);
    assert_eq!(t.max_sessions, 4);
    let yaml = c.to_yaml().unwrap();
    assert!(
        yaml.contains("redirect: '[fd00::2]:3261 perm'") || yaml.contains("redirect: \"[fd00::2]:3261 perm\""),
        "{yaml}"
    );
    assert_eq!(Config::from_yaml_str(&yaml, "again.yaml").unwrap(), c);
    // A single pattern, and the empty redirect of SCST ("no redirection").
    let c = load(&with_target("    redirect: \"\"\n    allowed_portal: 127.0.0.1\n"));
    assert_eq!(c.targets[0].redirect, None);
    assert_eq!(c.targets[0].allowed_portals.len(), 1);
    // Defaults: nothing set, nothing written back.
    let c = load(&with_target(""));
    assert!(c.targets[0].redirect.is_none() && c.targets[0].allowed_portals.is_empty());
    assert_eq!(c.targets[0].max_sessions, 0);
    let yaml = c.to_yaml().unwrap();
    assert!(!yaml.contains("redirect") && !yaml.contains("allowed_portal") && !yaml.contains("MaxSessions"));
}

#[test]
fn bad_target_access_attributes_name_the_value() {
    assert_eq!(
        err(&with_target("    redirect: 10.0.0.1:3260\n")),
        "polltgt.yaml:7:15: targets[0].redirect: redirect \"10.0.0.1:3260\" must be \"<ip>[:port] temp\" or \
         \"<ip>[:port] perm\" (IPv6 addresses in brackets)"
    );
    assert_eq!(
        err(&with_target("    redirect: fe80::1 temp\n")),
        "polltgt.yaml:7:15: targets[0].redirect: redirect address \"fe80::1\" is not an IPv4 address or a bracketed \
         IPv6 address, with an optional port 1..65535"
    );
    assert_eq!(
        err(&with_target("    allowed_portal: [ \"10.0.0.1\", \"host.example\" ]\n")),
        "polltgt.yaml:7:35: targets[0].allowed_portal[1]: allowed_portal pattern \"host.example\" may only contain \
         address characters and the wildcards * and ? (after an optional leading !)"
    );
    assert_eq!(
        err(&with_target("    MaxSessions: 70000\n")),
        "polltgt.yaml:7:18: targets[0].MaxSessions: 70000 is out of range 0..65535"
    );
}

#[test]
fn numbered_incoming_users() {
    let c = load(&with_target(
        "    IncomingUser: \"joe 12charsecret\"\n    IncomingUser1: \"joe2 12charsecret2\"\n    IncomingUser8: { user: joe8, secret: 12charsecret8 }\n",
    ));
    let users: Vec<String> = c.targets[0].credentials().incoming.iter().map(|u| u.name.clone()).collect();
    assert_eq!(users, vec!["joe", "joe2", "joe8"]);
    assert_eq!(Config::from_yaml_str(&c.to_yaml().unwrap(), "again.yaml").unwrap(), c);
    let c = load("iscsi:\n  IncomingUser2: \"disc 12charsecret\"\n");
    assert_eq!(c.discovery_credentials().incoming.len(), 1);
    assert!(!c.iscsi.is_empty());
    assert_eq!(
        err(&with_target("    IncomingUser: \"joe 12charsecret\"\n    IncomingUser1: \"joe 12charsecret2\"\n")),
        "polltgt.yaml:8:20: targets[0].IncomingUser1: CHAP user \"joe\" is already listed as targets[0].IncomingUser[0]"
    );
    assert_eq!(
        err(&with_target("    IncomingUser3: \"joe short\"\n")),
        "polltgt.yaml:7:20: targets[0].IncomingUser3: the CHAP secret is 5 bytes long; at least 12 bytes are \
         required (RFC 7143 §9.2.1)"
    );
    // A numbered account's secret may not be an outgoing secret either (RFC 7143 §9.2.1).
    let msg = err(&with_target("    IncomingUser4: \"joe 12charsecret\"\n    OutgoingUser: \"tgt 12charsecret\"\n"));
    assert!(msg.contains("targets[0].OutgoingUser") && msg.contains("targets[0].IncomingUser4"), "{msg}");
    assert!(!msg.contains("12charsecret"), "a secret leaked into an error: {msg}");
}

#[test]
fn driver_level_isns_and_fault_injection() {
    let c = load(
        "iscsi:\n  iSNSServer: \"192.168.1.16 AccessControl\"\n  DEBUG_DIGEST_FAILURES: { receive: 100, send: 7 }\n",
    );
    assert_eq!(c.iscsi.isns_server, Some(IsnsServer { host: "192.168.1.16".into(), port: 3205, access_control: true }));
    assert_eq!(c.iscsi.debug_digest_failures, DigestFaultConfig { receive: 100, send: 7 });
    assert_eq!(c.iscsi.debug_digest_failures.to_faults().send_every, 7);
    assert_eq!(Config::from_yaml_str(&c.to_yaml().unwrap(), "again.yaml").unwrap(), c);
    assert_eq!(
        err("iscsi:\n  iSNSServer: \"isns:99999\"\n"),
        "polltgt.yaml:2:15: iscsi.iSNSServer: \"isns:99999\" is not an iSNS server: expected \"<host or IP>[:port] \
         [AccessControl]\" (IPv6 in brackets)"
    );
    assert_eq!(
        err("iscsi:\n  DEBUG_DIGEST_FAILURES: { recieve: 1 }\n"),
        "polltgt.yaml:2:28: iscsi.DEBUG_DIGEST_FAILURES.recieve: unknown field `recieve`, expected `receive` or `send`"
    );
}

#[test]
fn driver_level_login_timeout() {
    assert_eq!(load("").iscsi.login_timeout, 30, "the default");
    let c = load("iscsi:\n  LoginTimeout: 3\n");
    assert_eq!(c.iscsi.login_timeout(), std::time::Duration::from_secs(3));
    assert_eq!(Config::from_yaml_str(&c.to_yaml().unwrap(), "again.yaml").unwrap(), c);
    assert_eq!(err("iscsi:\n  LoginTimeout: 0\n"), "polltgt.yaml:2:17: iscsi.LoginTimeout: 0 is out of range 1..3600");
    assert_eq!(
        err("iscsi:\n  LoginTimeout: 3601\n"),
        "polltgt.yaml:2:17: iscsi.LoginTimeout: 3601 is out of range 1..3600"
    );
}
