//! CHAP authentication end to end with libiscsi (`iscsi://user%secret@host/...`, mutual CHAP with target_user and
//! target_password URL arguments).

mod common;

use common::{run, run_ok, Lun, Target, IQN};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const CHAP: &str = "    IncomingUser: \"joe secretsecret12\"\n    OutgoingUser: \"tgt targetsecret123\"\n";

fn url(t: &Target, creds: &str, query: &str) -> String {
    format!("iscsi://{creds}@{}/{IQN}/0{query}", t.addr)
}

#[test]
fn one_way_chap_accepts_the_right_secret_only() {
    let t = Target::start(&[Lun::Ram { size_mb: 16, blocksize: 512 }], CHAP);
    let ok = run_ok("iscsi-inq", &[&url(&t, "joe%secretsecret12", "")], LIMIT);
    assert!(ok.contains("DIRECT_ACCESS"), "{ok}");
    for bad in ["joe%wrongsecret12", "bob%secretsecret12"] {
        let out = run("iscsi-inq", &[&url(&t, bad, "")], LIMIT);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(err.contains("Authentication failure"), "{bad}: {err}");
    }
    let out = run("iscsi-inq", &[&t.url(0)], LIMIT);
    assert!(!out.status.success(), "a login without CHAP must be refused");
}

#[test]
fn mutual_chap_authenticates_the_target_too() {
    let t = Target::start(&[Lun::Ram { size_mb: 16, blocksize: 512 }], CHAP);
    let ok = run_ok(
        "iscsi-inq",
        &[&url(&t, "joe%secretsecret12", "?target_user=tgt&target_password=targetsecret123")],
        LIMIT,
    );
    assert!(ok.contains("DIRECT_ACCESS"), "{ok}");
    let out = run(
        "iscsi-inq",
        &[&url(&t, "joe%secretsecret12", "?target_user=tgt&target_password=notthetarget1")],
        LIMIT,
    );
    assert!(!out.status.success(), "the initiator must refuse a target that does not know the outgoing secret");
    let t_out = t.output();
    assert!(!t_out.contains("secretsecret12") && !t_out.contains("targetsecret123"), "secrets leaked to the log");
}
