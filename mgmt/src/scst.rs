//! SCST's management command strings, verbatim: what a script writes to a sysfs `mgmt` file, and plain attribute
//! writes, over the same [`Manager`] calls the JSON-RPC methods use. A line of an SCST script such as
//!
//! ```text
//! echo "add disk1 0" >/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt/luns/mgmt
//! ```
//!
//! is `write(m, "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt/luns/mgmt", "add disk1 0")`, and
//! [`run_script`] runs such scripts line by line.

use serde_json::Value;

use crate::backend::ErrorKind;
use polltgt_iscsi::access::PortalPattern;

use crate::config::{ChapAccountsMut, DeviceConfig, Handler, LunConfig, TargetConfig};
use crate::manager::{luns_path, target_name, Manager, MgmtError};
use crate::tree::{self, segments, HANDLERS};
use crate::values::ChapAccount;

/// SCST's default size of a vdisk_nullio device created without one (`VDISK_NULLIO_SIZE`, 2.5 TiB).
pub const NULLIO_DEFAULT_SIZE_MB: u64 = 5 << 19;

/// Write `value` to `path`: a management command when the path ends in `mgmt`, an attribute value otherwise.
pub fn write(m: &Manager, path: &str, value: &str) -> Result<(), MgmtError> {
    let seg = segments(path);
    match seg.split_last() {
        Some((&"mgmt", dir)) => execute(m, &dir.join("/"), value),
        _ => tree::set(m, path, value),
    }
}

/// `name=value; name=value` parameters of `add_device`, `add`, `replace` and `add_target`.
pub fn parse_params(text: &str) -> Result<Vec<(String, String)>, MgmtError> {
    let mut out = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| MgmtError::invalid(format!("{part:?} is not name=value")))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Parse an attribute value the way a configuration file would read it.
fn scalar(text: &str) -> Value {
    serde_yaml_ng::from_str::<Value>(text.trim()).unwrap_or_else(|_| Value::String(text.trim().to_string()))
}

/// A device configuration from SCST `add_device` parameters, with the configuration's checks. A vdisk_nullio
/// device without a size gets SCST's default.
pub fn device_from_params(
    name: &str,
    handler: Handler,
    params: &[(String, String)],
) -> Result<DeviceConfig, MgmtError> {
    let mut dev = DeviceConfig::new(name, handler);
    for (k, v) in params {
        set_device_param(&mut dev, k, v)?;
    }
    if handler == Handler::VdiskNullio && dev.size_bytes().is_none() {
        dev.size_mb = Some(NULLIO_DEFAULT_SIZE_MB);
    }
    Ok(dev)
}

/// Set one creation attribute of a device from text (`filename`, `blocksize`, `nv_cache`, ...).
pub fn set_device_param(dev: &mut DeviceConfig, k: &str, v: &str) -> Result<(), MgmtError> {
    let mut obj = serde_json::to_value(&*dev).map_err(|e| MgmtError::new(ErrorKind::Internal, e.to_string()))?;
    let identity = matches!(k, "t10_vend_id" | "prod_id" | "prod_rev_lvl" | "t10_dev_id" | "usn");
    let value = match k {
        // An empty identity string or threads_num: back to the default (the key left out).
        _ if (identity || k == "threads_num") && v.trim().is_empty() => None,
        // Paths and identity strings stay text even when they look like numbers.
        "filename" => Some(Value::String(v.to_string())),
        _ if identity => Some(Value::String(v.to_string())),
        _ => Some(scalar(v)),
    };
    if let Some(o) = obj.as_object_mut() {
        match value {
            Some(value) => o.insert(k.to_string(), value),
            None => o.remove(k),
        };
    }
    *dev = serde_json::from_value(obj).map_err(|e| MgmtError::invalid(e.to_string()).attr(k))?;
    Ok(())
}

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

/// Everything after the first `n` words of `cmd`.
fn after_words(cmd: &str, n: usize) -> &str {
    let mut rest = cmd.trim_start();
    for _ in 0..n {
        rest = rest.trim_start();
        match rest.find(char::is_whitespace) {
            Some(i) => rest = &rest[i..],
            None => return "",
        }
    }
    rest.trim()
}

fn usage(dir: &str, expected: &str) -> MgmtError {
    MgmtError::invalid(format!("expected: {expected}")).on(format!("{dir}/mgmt"))
}

/// Run one management command written to the `mgmt` file of directory `dir`.
pub fn execute(m: &Manager, dir: &str, cmd: &str) -> Result<(), MgmtError> {
    let seg = segments(dir);
    let w = words(cmd);
    let Some(&verb) = w.first() else {
        return Err(MgmtError::invalid("empty command").on(format!("{}/mgmt", seg.join("/"))));
    };
    let here = seg.join("/");
    match seg.as_slice() {
        ["handlers", h] => {
            let handler = HANDLERS
                .iter()
                .copied()
                .find(|x| x.as_str() == *h)
                .ok_or_else(|| {
                    MgmtError::not_found(format!(
                        "handler {h} is not supported by polltgt (no SCSI pass-through or user-space handlers); \
                         handlers: {}",
                        HANDLERS.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                    .on(here.clone())
                })?;
            match (verb, w.get(1)) {
                ("add_device", Some(name)) => {
                    let params = parse_params(after_words(cmd, 2))?;
                    let dev =
                        device_from_params(name, handler, &params).map_err(|e| e.on(format!("devices/{name}")))?;
                    m.add_device(dev)
                }
                ("del_device", Some(name)) => m.delete_device(name, false),
                _ => Err(usage(&here, "add_device NAME [attribute=value; ...] | del_device NAME")),
            }
        }
        ["targets", "iscsi"] => driver_command(m, cmd, &w, &here),
        ["targets", "iscsi", "portals"] => portals_command(m, cmd, &w, &here),
        ["targets", "iscsi", t, "luns"] => luns_command(m, t, None, cmd, &w, &here),
        ["targets", "iscsi", t, "ini_groups", g, "luns"] => luns_command(m, t, Some(g), cmd, &w, &here),
        ["targets", "iscsi", t, "ini_groups"] => match (verb, w.get(1), w.len()) {
            ("create", Some(g), 2) => m.create_group(t, g),
            ("del", Some(g), 2) => m.delete_group(t, g),
            _ => Err(usage(&here, "create GROUP | del GROUP")),
        },
        ["targets", "iscsi", t, "ini_groups", g, "initiators"] => match (verb, w.get(1), w.get(2), w.len()) {
            ("add", Some(n), None, 2) => m.add_initiator(t, g, n),
            ("del", Some(n), None, 2) => m.remove_initiator(t, g, n),
            ("move", Some(n), Some(dest), 3) => m.move_initiator(t, g, n, dest),
            ("clear", None, None, 1) => m.clear_initiators(t, g),
            _ => Err(usage(&here, "add NAME | del NAME | move NAME GROUP | clear")),
        },
        _ => Err(MgmtError::not_found("no mgmt file here").on(here)),
    }
}

/// `targets/iscsi/portals/mgmt`: `add ADDRESS[:PORT] [tpgt=N]` starts listening (port 0: any free port),
/// `del ADDRESS[:PORT]` stops and closes the connections that came through the portal.
fn portals_command(m: &Manager, cmd: &str, w: &[&str], here: &str) -> Result<(), MgmtError> {
    let expected = "add ADDRESS[:PORT] [tpgt=N] | del ADDRESS[:PORT]";
    let addr = |s: &str| {
        crate::values::parse_portal(s).map_err(|e| MgmtError::invalid(e.0).on(here.to_string()))
    };
    match (w.first().copied(), w.get(1).copied()) {
        (Some("add"), Some(a)) => {
            let mut p = crate::config::PortalConfig::new(addr(a)?);
            for (k, v) in parse_params(after_words(cmd, 2))? {
                match k.as_str() {
                    "tpgt" => {
                        p.tpgt = v.parse().map_err(|_| {
                            MgmtError::invalid(format!("{v:?} is not a portal group tag (0..65535)")).attr("tpgt")
                        })?
                    }
                    _ => return Err(MgmtError::invalid(format!("unknown portal parameter {k:?} (tpgt)")).on(here.to_string())),
                }
            }
            m.add_portal(p).map(drop)
        }
        (Some("del"), Some(a)) if w.len() == 2 => m.remove_portal(addr(a)?),
        _ => Err(usage(here, expected)),
    }
}

fn luns_command(m: &Manager, t: &str, g: Option<&str>, cmd: &str, w: &[&str], here: &str) -> Result<(), MgmtError> {
    let expected = "add DEVICE LUN [read_only=1] | replace DEVICE LUN [read_only=1] | del LUN | clear";
    let lun_no = |s: &str| -> Result<u16, MgmtError> {
        s.parse::<u16>()
            .map_err(|_| MgmtError::invalid(format!("{s:?} is not a LUN number")).on(luns_path(t, g)))
    };
    match (w.first().copied(), w.len()) {
        (Some(verb @ ("add" | "replace")), n) if n >= 3 => {
            let mut lun = LunConfig::new(lun_no(w[2])?, w[1]);
            for (k, v) in parse_params(after_words(cmd, 3))? {
                match k.as_str() {
                    "read_only" => lun.read_only = tree::parse_flag(&v).map_err(|e| e.attr("read_only"))?,
                    _ => {
                        return Err(
                            MgmtError::invalid(format!("unknown LUN parameter {k:?} (read_only)")).on(luns_path(t, g))
                        )
                    }
                }
            }
            m.add_lun(t, g, lun, verb == "replace")
        }
        (Some("del"), 2) => m.remove_lun(t, g, lun_no(w[1])?),
        (Some("clear"), 1) => m.clear_luns(t, g),
        _ => Err(usage(here, expected)),
    }
}

/// IncomingUser / IncomingUser1 / ... / OutgoingUser as SCST names them.
/// The number of a numbered `IncomingUser<n>` attribute (1..8), if it is one.
fn chap_slot(name: &str) -> Option<usize> {
    name.strip_prefix("IncomingUser")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=crate::config::NUMBERED_USERS).contains(n))
}

fn chap_kind(name: &str) -> Option<bool> {
    if name == "OutgoingUser" {
        Some(false)
    } else if name
        .strip_prefix("IncomingUser")
        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    {
        Some(true)
    } else {
        None
    }
}

fn account(text: &str) -> Result<ChapAccount, MgmtError> {
    serde_json::from_value::<ChapAccount>(Value::String(text.to_string()))
        .map_err(|e| MgmtError::invalid(e.to_string()))
}

fn driver_command(m: &Manager, cmd: &str, w: &[&str], here: &str) -> Result<(), MgmtError> {
    let expected = "add_target NAME | del_target NAME | add_attribute ATTR VALUE | del_attribute ATTR VALUE | \
                    add_target_attribute TARGET ATTR VALUE | del_target_attribute TARGET ATTR VALUE";
    match (w.first().copied(), w.get(1).copied()) {
        (Some("add_target"), Some(name)) => {
            let mut t = TargetConfig::new(target_name(name).map_err(|e| e.on(format!("targets/iscsi/{name}")))?);
            // SCST creates targets disabled: `echo 1 >.../enabled` enables them.
            t.enabled = false;
            for (k, v) in parse_params(after_words(cmd, 2))? {
                apply_target_attribute(&mut t, &k, &v, true)?;
            }
            m.add_target(t)
        }
        (Some("del_target"), Some(name)) if w.len() == 2 => m.delete_target(name, false),
        (Some(verb @ ("add_attribute" | "del_attribute")), Some(attr)) => {
            let value = after_words(cmd, 2);
            let incoming = chap_kind(attr).ok_or_else(|| {
                MgmtError::new(ErrorKind::Unsupported, "driver attributes: IncomingUser, OutgoingUser")
                    .attr(attr.to_string())
                    .on(here.to_string())
            })?;
            let acc = account(value).map_err(|e| e.attr(attr.to_string()).on(here.to_string()))?;
            m.edit(|c| chap_edit(c.iscsi.chap_accounts_mut(), incoming, chap_slot(attr), acc, verb == "add_attribute"))
                .map_err(|e| e.attr(attr.to_string()).on(here.to_string()))
        }
        (Some(verb @ ("add_target_attribute" | "del_target_attribute")), Some(t)) if w.len() >= 4 => {
            let attr = w[2];
            let value = after_words(cmd, 3);
            m.edit_target(t, |tc| {
                apply_target_attribute(tc, attr, value, verb == "add_target_attribute")
            })
            .map_err(|e| e.attr(attr.to_string()))
        }
        _ => Err(usage(here, expected)),
    }
}

/// Add or delete a CHAP account. An incoming account is found by user name in the `IncomingUser` list and in the
/// numbered `IncomingUser1`.. attributes; an added one goes to the list (replacing the user's old account).
fn chap_edit(
    accounts: ChapAccountsMut<'_>,
    is_incoming: bool,
    slot: Option<usize>,
    acc: ChapAccount,
    add: bool,
) -> Result<(), MgmtError> {
    let ChapAccountsMut {
        incoming,
        mut numbered,
        outgoing,
    } = accounts;
    match (is_incoming, add) {
        (true, _) => {
            let before = incoming.len();
            incoming.retain(|a| a.user != acc.user);
            let mut found = incoming.len() != before;
            for n in numbered.iter_mut() {
                if n.as_ref().is_some_and(|a| a.user == acc.user) {
                    **n = None;
                    found = true;
                }
            }
            if add {
                // Adding an account for a user already listed replaces its secret, as writing IncomingUserN would.
                // A numbered name (IncomingUser1..8) is that attribute, as in SCST's sysfs listing.
                match slot.and_then(|n| n.checked_sub(1)).and_then(|i| numbered.into_iter().nth(i)) {
                    Some(n) => *n = Some(acc),
                    None => incoming.push(acc),
                }
            } else if !found {
                return Err(MgmtError::not_found(format!("no IncomingUser {:?}", acc.user)));
            }
        }
        (false, true) => *outgoing = Some(acc),
        (false, false) => {
            if outgoing.take().is_none() {
                return Err(MgmtError::not_found("no OutgoingUser"));
            }
        }
    }
    Ok(())
}

/// `add_target_attribute` / `del_target_attribute` (and `add_target NAME attr=value`): CHAP accounts,
/// `allowed_portal` patterns, or a plain attribute.
pub fn apply_target_attribute(t: &mut TargetConfig, attr: &str, value: &str, add: bool) -> Result<(), MgmtError> {
    if let Some(incoming) = chap_kind(attr) {
        let acc = account(value).map_err(|e| e.attr(attr.to_string()))?;
        return chap_edit(t.chap_accounts_mut(), incoming, chap_slot(attr), acc, add)
            .map_err(|e| e.attr(attr.to_string()));
    }
    if attr == "allowed_portal"
        || (attr.starts_with("allowed_portal") && attr[14..].chars().all(|c| c.is_ascii_digit()))
    {
        let v = PortalPattern::parse(value).map_err(|e| MgmtError::invalid(e.to_string()).attr(attr.to_string()))?;
        if add {
            if !t.allowed_portals.contains(&v) {
                t.allowed_portals.push(v);
            }
        } else {
            let before = t.allowed_portals.len();
            t.allowed_portals.retain(|p| *p != v);
            if t.allowed_portals.len() == before {
                return Err(
                    MgmtError::not_found(format!("no allowed_portal {:?}", v.to_string())).attr(attr.to_string())
                );
            }
        }
        return Ok(());
    }
    if add && (tree::TARGET_PARAMS.contains(&attr) || tree::TARGET_WRITABLE.contains(&attr)) {
        return tree::set_target_attr(t, attr, value);
    }
    Err(MgmtError::new(
        ErrorKind::Unsupported,
        "target attributes added this way: IncomingUser, OutgoingUser, allowed_portal",
    )
    .attr(attr.to_string()))
}

/// The outcome of one script line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScriptLine {
    pub line: usize,
    pub text: String,
    /// "ok", "skipped" (not an `echo ... >/sys/kernel/scst_tgt/...` line) or "error".
    pub status: String,
    pub message: Option<String>,
}

/// Split `echo "VALUE" >PATH` into (value, path).
pub fn parse_echo(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("echo")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let (value, after) = if let Some(q @ ('"' | '\'')) = rest.chars().next() {
        let end = rest[1..].find(q)? + 1;
        (rest[1..end].to_string(), &rest[end + 1..])
    } else {
        let gt = rest.find('>')?;
        (rest[..gt].trim().to_string(), &rest[gt..])
    };
    let path = after.trim_start().strip_prefix('>')?.trim();
    if path.is_empty() {
        return None;
    }
    Some((value, path.to_string()))
}

/// Run an SCST configuration script: every `echo VALUE >/sys/kernel/scst_tgt/PATH` line is applied in order;
/// other lines (`modprobe`, `service`, comments) are skipped. Stops at the first error.
pub fn run_script(m: &Manager, text: &str) -> Vec<ScriptLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (status, message) = match parse_echo(line) {
            Some((value, path)) if path.starts_with(tree::SYSFS_ROOT) => match write(m, &path, &value) {
                Ok(()) => ("ok", None),
                Err(e) => ("error", Some(e.to_string())),
            },
            _ => ("skipped", None),
        };
        let failed = status == "error";
        out.push(ScriptLine {
            line: i + 1,
            text: line.to_string(),
            status: status.to_string(),
            message,
        });
        if failed {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_echo_lines() {
        assert_eq!(
            parse_params("filename=/disk1; nv_cache=1").unwrap(),
            vec![
                ("filename".to_string(), "/disk1".to_string()),
                ("nv_cache".to_string(), "1".to_string())
            ]
        );
        assert!(parse_params("filename").is_err());
        assert_eq!(
            parse_echo(
                r#"echo "add_device disk1 filename=/disk1; nv_cache=1" >/sys/kernel/scst_tgt/handlers/vdisk_fileio/mgmt"#
            ),
            Some((
                "add_device disk1 filename=/disk1; nv_cache=1".into(),
                "/sys/kernel/scst_tgt/handlers/vdisk_fileio/mgmt".into()
            ))
        );
        assert_eq!(
            parse_echo("echo 1 >/sys/kernel/scst_tgt/targets/iscsi/enabled"),
            Some(("1".into(), "/sys/kernel/scst_tgt/targets/iscsi/enabled".into()))
        );
        assert_eq!(
            parse_echo("echo 'add_target_attribute iqn.2006-10.net.vlnb:tgt allowed_portal 10.170.7?.2' >/sys/kernel/scst_tgt/targets/iscsi/mgmt"),
            Some(("add_target_attribute iqn.2006-10.net.vlnb:tgt allowed_portal 10.170.7?.2".into(), "/sys/kernel/scst_tgt/targets/iscsi/mgmt".into()))
        );
        assert_eq!(parse_echo("modprobe scst"), None);
        assert_eq!(parse_echo("echoes x >y"), None);
        assert_eq!(
            after_words("add_device  disk1 filename=/a; nv_cache=1", 2),
            "filename=/a; nv_cache=1"
        );
        assert_eq!(after_words("del 3", 2), "");
    }

    #[test]
    fn add_device_parameters_become_a_checked_device() {
        let d = device_from_params(
            "disk2",
            Handler::VdiskFileio,
            &parse_params("filename=/disk2; blocksize=4096; nv_cache=1; physical_blocksize=16384").unwrap(),
        )
        .unwrap();
        assert_eq!(d.filename.as_deref(), Some(std::path::Path::new("/disk2")));
        assert_eq!(d.blocksize.bytes(), 4096);
        assert_eq!(d.physical_blocksize, Some(16384));
        assert!(d.nv_cache);
        let n = device_from_params("nullio", Handler::VdiskNullio, &[]).unwrap();
        assert_eq!(n.size_bytes(), Some(5 << 39));
        let e = device_from_params("x", Handler::VdiskFileio, &parse_params("blocksize=1000").unwrap()).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("blocksize"));
        assert!(e.message.contains("1000"), "{e}");
        let e = device_from_params("x", Handler::VdiskFileio, &parse_params("filesize=1").unwrap()).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let t = device_from_params("x", Handler::VdiskFileio, &parse_params("thin_provisioned=1").unwrap()).unwrap();
        assert!(t.thin_provisioned);
        let e = device_from_params("x", Handler::VdiskFileio, &parse_params("thin_provisioned=2").unwrap()).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("thin_provisioned"));
    }

    #[test]
    fn target_attributes_from_the_readme() {
        let mut t = TargetConfig::new(target_name("iqn.2006-10.net.vlnb:tgt1").unwrap());
        apply_target_attribute(&mut t, "IncomingUser1", "joe2 12charsecret2", true).unwrap();
        apply_target_attribute(&mut t, "IncomingUser", "joe 12charsecret", true).unwrap();
        apply_target_attribute(&mut t, "OutgoingUser", "jim1 12charpasswd", true).unwrap();
        apply_target_attribute(&mut t, "allowed_portal", "10.170.7?.2", true).unwrap();
        apply_target_attribute(&mut t, "MaxBurstLength", "131072", true).unwrap();
        apply_target_attribute(&mut t, "HeaderDigest", "CRC32C,None", true).unwrap();
        apply_target_attribute(&mut t, "InitialR2T", "No", true).unwrap();
        // IncomingUser1 is the numbered attribute, as SCST lists it; the credentials hold both accounts.
        assert_eq!(t.incoming_users.len(), 1);
        assert_eq!(t.incoming_user1.as_ref().map(|a| a.user.as_str()), Some("joe2"));
        assert_eq!(t.credentials().incoming.len(), 2);
        assert_eq!(t.outgoing_user.as_ref().map(|a| a.user.as_str()), Some("jim1"));
        assert_eq!(
            t.allowed_portals.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            vec!["10.170.7?.2"]
        );
        assert_eq!(t.max_burst_length, 131072);
        assert_eq!(t.header_digest.to_string(), "CRC32C,None");
        apply_target_attribute(&mut t, "IncomingUser", "joe 12charsecret", false).unwrap();
        assert_eq!(t.incoming_users.len(), 0);
        apply_target_attribute(&mut t, "IncomingUser1", "joe2 12charsecret2", false).unwrap();
        assert_eq!(t.credentials().incoming.len(), 0);
        assert!(apply_target_attribute(&mut t, "allowed_portal", "1.2.3.4", false).is_err());
        assert!(apply_target_attribute(&mut t, "MaxBurstLength", "100", true).is_err());
        // redirect and MaxSessions are plain target attributes (scst.conf lines, sysfs files).
        apply_target_attribute(&mut t, "redirect", "10.0.0.1 temp", true).unwrap();
        assert_eq!(
            t.redirect.as_ref().map(|r| r.to_string()),
            Some("10.0.0.1:3260 temp".to_string())
        );
        apply_target_attribute(&mut t, "MaxSessions", "4", true).unwrap();
        assert_eq!(t.max_sessions, 4);
        assert!(apply_target_attribute(&mut t, "redirect", "10.0.0.1", true).is_err());
        assert!(apply_target_attribute(&mut t, "MaxSessions", "70000", true).is_err());
        assert!(apply_target_attribute(&mut t, "allowed_portal", "host.example", true).is_err());
        assert!(apply_target_attribute(&mut t, "no_such_attribute", "1", true).is_err());
    }
}
