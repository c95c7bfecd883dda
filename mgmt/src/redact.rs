//! CHAP secrets never leave the target through the management plane's answers: the object tree shows an account
//! as `USER <hidden secret>`, and `framework_get_config`, `iscsi_get_target_nodes` and every other RPC result carry
//! [`HIDDEN_SECRET`] where a secret would be (issue 4: "no secret ever in a log line or RPC output"; iSCSI-SCST's
//! sysfs shows them, polltgt does not). Secrets go in — configuration files, RPC parameters, SCST management
//! strings — and are written back only by `save-config`, into the configuration file, never into an answer.

use serde_json::Value;

use crate::config::{ChapAccountsMut, Config, TargetConfig};
use crate::values::ChapAccount;

/// What an answer shows instead of a secret. Long enough to pass the secret checks, so a redacted configuration
/// still decodes (the CLI reads `framework_get_config`); it is never a real account's secret in an answer.
pub const HIDDEN_SECRET: &str = "<hidden secret>";

/// `config` with every CHAP secret replaced by [`HIDDEN_SECRET`].
pub fn config(config: &Config) -> Config {
    let mut c = config.clone();
    accounts(c.iscsi.chap_accounts_mut());
    for t in &mut c.targets {
        accounts(t.chap_accounts_mut());
    }
    c
}

/// `target` with every CHAP secret replaced by [`HIDDEN_SECRET`].
pub fn target(target: &TargetConfig) -> TargetConfig {
    let mut t = target.clone();
    accounts(t.chap_accounts_mut());
    t
}

/// Replaces, anywhere in `v`, the value of every `secret` member by [`HIDDEN_SECRET`]: the last line of defence
/// for RPC results.
pub fn json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, member) in map.iter_mut() {
                if k == "secret" && member.is_string() {
                    *member = Value::String(HIDDEN_SECRET.to_string());
                } else {
                    json(member);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(json),
        _ => {}
    }
}

/// An account as the object tree shows it: the user name and [`HIDDEN_SECRET`].
pub fn account_text(user: &str) -> String {
    format!("{user} {HIDDEN_SECRET}")
}

fn accounts(a: ChapAccountsMut<'_>) {
    let hide = |acc: &mut ChapAccount| *acc = ChapAccount::new(acc.user.clone(), HIDDEN_SECRET);
    a.incoming.iter_mut().for_each(hide);
    a.numbered.into_iter().flatten().for_each(hide);
    if let Some(o) = a.outgoing.as_mut() {
        hide(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_everywhere() {
        let c = Config::from_yaml_str(
            "iscsi:\n  IncomingUser: \"disc 12charsecretA\"\n  OutgoingUser: \"dout 12charsecretB\"\n\
             targets:\n  - name: iqn.2026-11.io.polltgt:a\n    IncomingUser: [ \"joe 12charsecretC\" ]\n\
             \x20   IncomingUser3: \"jim 12charsecretD\"\n    OutgoingUser: \"tgt 12charsecretE\"\n",
            "t.yaml",
        )
        .unwrap();
        let hidden = config(&c);
        let yaml = crate::save::minimal_yaml(&hidden).unwrap();
        let text = format!("{yaml}{}", serde_json::to_string(&hidden).unwrap());
        assert!(!text.contains("12charsecret"), "{text}");
        assert!(text.contains("jim") && text.contains(HIDDEN_SECRET), "{text}");
        // A redacted configuration still decodes (the CLI reads it); the accounts keep their names and places.
        let again: Config = serde_json::from_str(&serde_json::to_string(&hidden).unwrap()).unwrap();
        assert_eq!(again.targets[0].incoming_user3.as_ref().map(|a| a.user.as_str()), Some("jim"));
        let t = target(&c.targets[0]);
        assert!(!serde_json::to_string(&t).unwrap().contains("12charsecret"));
        // The JSON net.
        let mut v = serde_json::json!({ "a": [ { "user": "x", "secret": "12charsecretF" } ], "secret": 5 });
        json(&mut v);
        assert_eq!(v["a"][0]["secret"], HIDDEN_SECRET);
        assert_eq!(v["secret"], 5, "only text members are secrets");
        assert_eq!(account_text("joe"), "joe <hidden secret>");
    }
}
