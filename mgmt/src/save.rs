//! Writing the running configuration back: YAML with every attribute that differs from its default (like the
//! attributes SCST marks `[key]` and scstadmin saves), written atomically.

use std::io::Write;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::config::{
    Config, DeviceConfig, IniGroupConfig, IscsiConfig, LunConfig, MgmtConfig, ReactorsConfig, TargetConfig,
};
use crate::error::ConfigError;

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ConfigError> {
    serde_yaml_ng::to_value(v).map_err(|e| ConfigError::Serialize(e.to_string()))
}

/// Drop the keys of `value` whose value equals the one in `default`, except `keep`.
fn strip(value: &mut Value, default: &Value, keep: &[&str]) {
    let (Value::Mapping(m), Value::Mapping(d)) = (value, default) else {
        return;
    };
    let drop: Vec<Value> = m
        .iter()
        .filter(|(k, v)| {
            let name = k.as_str().unwrap_or("");
            !keep.contains(&name) && d.get(*k) == Some(*v)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in drop {
        // shift_remove keeps the order of the other keys (remove would move the last key into the gap).
        m.shift_remove(&k);
    }
}

fn strip_luns(list: Option<&mut Value>, luns: &[LunConfig]) -> Result<(), ConfigError> {
    if let Some(Value::Sequence(seq)) = list {
        for (v, l) in seq.iter_mut().zip(luns) {
            strip(v, &to_value(&LunConfig::new(l.lun, &l.device))?, &["lun", "device"]);
        }
    }
    Ok(())
}

/// The configuration as YAML, leaving out every attribute at its default. [`Config::from_yaml_str`] reads it back
/// to an equal `Config`.
pub fn minimal_yaml(c: &Config) -> Result<String, ConfigError> {
    let mut root = Mapping::new();
    if c.reactors != ReactorsConfig::default() {
        root.insert("reactors".into(), to_value(&c.reactors)?);
    }
    let defaults = Config::from_yaml_str("", "defaults")?;
    if c.portals != defaults.portals {
        root.insert("portals".into(), to_value(&c.portals)?);
    }
    if c.iscsi != IscsiConfig::default() {
        let mut v = to_value(&c.iscsi)?;
        strip(&mut v, &to_value(&IscsiConfig::default())?, &[]);
        root.insert("iscsi".into(), v);
    }
    if !c.devices.is_empty() {
        let mut list = Vec::new();
        for d in &c.devices {
            let mut v = to_value(d)?;
            strip(
                &mut v,
                &to_value(&DeviceConfig::new(&d.name, d.handler))?,
                &["name", "handler"],
            );
            list.push(v);
        }
        root.insert("devices".into(), Value::Sequence(list));
    }
    if !c.targets.is_empty() {
        let mut list = Vec::new();
        for t in &c.targets {
            let mut v = to_value(t)?;
            strip(&mut v, &to_value(&TargetConfig::new(t.name.clone()))?, &["name"]);
            if let Value::Mapping(m) = &mut v {
                strip_luns(m.get_mut("luns"), &t.luns)?;
                if let Some(Value::Sequence(groups)) = m.get_mut("ini_groups") {
                    for (gv, g) in groups.iter_mut().zip(&t.ini_groups) {
                        strip(gv, &to_value(&IniGroupConfig::new(&g.name))?, &["name"]);
                        if let Value::Mapping(gm) = gv {
                            strip_luns(gm.get_mut("luns"), &g.luns)?;
                        }
                    }
                }
            }
            list.push(v);
        }
        root.insert("targets".into(), Value::Sequence(list));
    }
    if c.mgmt != MgmtConfig::default() {
        let mut v = to_value(&c.mgmt)?;
        strip(&mut v, &to_value(&MgmtConfig::default())?, &[]);
        root.insert("mgmt".into(), v);
    }
    let body = if root.is_empty() {
        String::new()
    } else {
        serde_yaml_ng::to_string(&Value::Mapping(root)).map_err(|e| ConfigError::Serialize(e.to_string()))?
    };
    Ok(format!(
        "# polltgt configuration written by save-config: attributes at their defaults are left out.\n{body}"
    ))
}

/// Write `data` to `path` so that `path` holds either the old or the new contents, never a mix: a temporary file
/// in the same directory, fsync, rename over `path`, fsync of the directory. The file keeps the mode of the file it
/// replaces, or gets 0600 (configurations hold CHAP secrets).
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_left_out_and_the_result_reads_back_equal() {
        let text = "devices:\n  - { name: d0, handler: vdisk_nullio, size: 1G, rotational: true }\n  - { name: d1, handler: ram, size: 64M, read_only: 1, usn: abc }\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n    MaxBurstLength: 131072\n    FirstBurstLength: 65536\n    InitialR2T: No\n    luns: [ { lun: 0, device: d0 }, { lun: 3, device: d1, read_only: true } ]\n    ini_groups:\n      - name: g\n        initiators: [ \"iqn.2026-11.io.x:*\", \"!iqn.2026-11.io.y\" ]\n        luns: [ { lun: 0, device: d1 } ]\n      - name: empty\n    allowed_portal: \"127.0.0.?\"\n";
        let c = Config::from_yaml_str(text, "t.yaml").unwrap();
        let y = minimal_yaml(&c).unwrap();
        assert_eq!(Config::from_yaml_str(&y, "saved.yaml").unwrap(), c, "{y}");
        for absent in [
            "InitialR2T",
            "rotational",
            "ImmediateData",
            "blocksize",
            "QueuedCommands",
            "enabled",
            "portals",
        ] {
            assert!(!y.contains(absent), "{absent} is at its default: {y}");
        }
        for present in [
            "MaxBurstLength: 131072",
            "read_only: true",
            "usn: abc",
            "name: empty",
            "allowed_portal",
        ] {
            assert!(y.contains(present), "{present} missing: {y}");
        }
        let empty = minimal_yaml(&Config::from_yaml_str("", "e").unwrap()).unwrap();
        assert_eq!(
            Config::from_yaml_str(&empty, "e").unwrap(),
            Config::from_yaml_str("", "e").unwrap()
        );
    }

    #[test]
    fn non_default_sections_are_kept() {
        let text = "reactors: { count: 2 }\nportals: [ { address: \"0.0.0.0:3260\" } ]\niscsi: { enabled: false }\nmgmt: { rpc_socket: /tmp/x.sock, prometheus: \"127.0.0.1:9464\" }\n";
        let c = Config::from_yaml_str(text, "t.yaml").unwrap();
        let y = minimal_yaml(&c).unwrap();
        assert_eq!(Config::from_yaml_str(&y, "saved.yaml").unwrap(), c, "{y}");
        assert!(
            y.contains("enabled: false") && y.contains("count: 2") && y.contains("/tmp/x.sock"),
            "{y}"
        );
    }

    #[test]
    fn atomic_write_replaces_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("polltgt.yaml");
        write_atomically(&p, b"one\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(write_atomically(&dir.path().join("missing/x.yaml"), b"x").is_err());
    }
}
