//! The management library: one lock-protected [`Config`] (the persistent attributes of the object tree) in front of a
//! [`Backend`] (the running target). Every change is made on a copy of the configuration, validated with the same
//! rules a configuration file gets, applied to the running target, and only then committed; a change the target
//! refuses leaves both as they were. RPC handlers and SCST command strings are thin layers over these methods.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::{Backend, BackendError, ErrorKind};
use crate::config::{Config, DeviceConfig, Handler, IniGroupConfig, LunConfig, PortalConfig, TargetConfig};
use crate::values::{Size, TargetName};

/// A management error: what went wrong, on which object (an object-tree path such as
/// `targets/iscsi/iqn...:tgt/luns/3`) and which attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MgmtError {
    pub kind: ErrorKind,
    pub object: Option<String>,
    pub attribute: Option<String>,
    pub message: String,
}

impl std::fmt::Display for MgmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(a) = &self.attribute {
            write!(f, "{a}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl MgmtError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        MgmtError {
            kind,
            object: None,
            attribute: None,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Attach the object the error is about (kept if one is set already).
    pub fn on(mut self, object: impl Into<String>) -> Self {
        if self.object.is_none() {
            self.object = Some(object.into());
        }
        self
    }

    /// Attach the attribute the error is about.
    pub fn attr(mut self, attribute: impl Into<String>) -> Self {
        if self.attribute.is_none() {
            self.attribute = Some(attribute.into());
        }
        self
    }
}

impl From<BackendError> for MgmtError {
    fn from(e: BackendError) -> Self {
        MgmtError::new(e.kind, e.message)
    }
}

/// Object-tree paths of the objects errors name.
pub fn device_path(name: &str) -> String {
    format!("devices/{name}")
}

pub fn target_path(name: &str) -> String {
    format!("targets/iscsi/{name}")
}

pub fn luns_path(target: &str, group: Option<&str>) -> String {
    match group {
        Some(g) => format!("targets/iscsi/{target}/ini_groups/{g}/luns"),
        None => format!("targets/iscsi/{target}/luns"),
    }
}

/// The management library. Cheap to share (`Arc<Manager>`); changes are serialized by an internal lock.
pub struct Manager {
    config: Mutex<Config>,
    backend: Arc<dyn Backend>,
    /// The file the target was started from: `save_config` without a path writes there.
    config_path: Option<PathBuf>,
}

impl Manager {
    /// A manager for a target already built from `config`.
    pub fn new(config: Config, backend: Arc<dyn Backend>, config_path: Option<PathBuf>) -> Manager {
        Manager {
            config: Mutex::new(config),
            backend,
            config_path,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The running configuration.
    pub fn config(&self) -> Config {
        self.lock().clone()
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Change the configuration with `f`, then validate, apply and commit (see the module documentation).
    pub fn edit<T>(&self, f: impl FnOnce(&mut Config) -> Result<T, MgmtError>) -> Result<T, MgmtError> {
        let mut guard = self.lock();
        let mut new = guard.clone();
        let out = f(&mut new)?;
        new.validate().map_err(|e| match e.diagnostic() {
            Some(d) => {
                let (object, attribute) = tree_location(&new, &d.path);
                let mut err = MgmtError::invalid(d.message.clone()).on(object);
                if let Some(a) = attribute {
                    err = err.attr(a);
                }
                err
            }
            None => MgmtError::invalid(e.to_string()),
        })?;
        self.apply(&guard, &mut new)?;
        *guard = new;
        Ok(out)
    }

    /// Bring the running target from `old` to `new`: portals, devices (so LUNs can map them), targets, then what
    /// was removed. A portal added with port 0 is recorded in `new` with the port the kernel chose.
    fn apply(&self, old: &Config, new: &mut Config) -> Result<(), MgmtError> {
        let b = &self.backend;
        fixed_at_start(old, new)?;
        self.apply_portals(old, new)?;
        for d in &new.devices {
            match old.device(&d.name) {
                None => b
                    .create_device(d)
                    .map_err(|e| MgmtError::from(e).on(device_path(&d.name)))?,
                Some(o) if o != d => {
                    let mut fixed = o.clone();
                    fixed.size = d.size;
                    fixed.size_mb = d.size_mb;
                    if d.handler == Handler::Vcdrom {
                        fixed.filename = d.filename.clone();
                    }
                    copy_live_device_attrs(&mut fixed, d);
                    if let Some(attr) = first_difference(&fixed, d) {
                        return Err(MgmtError::new(
                            ErrorKind::Unsupported,
                            format!(
                                "set when the device is created and fixed afterwards (live: size, size_mb, {}, and a \
                                 vcdrom's filename); delete the device and add it again to change it",
                                LIVE_DEVICE_ATTRS.join(", ")
                            ),
                        )
                        .on(device_path(&d.name))
                        .attr(attr));
                    }
                    if d.handler == Handler::Vcdrom && d.filename != o.filename {
                        b.change_medium(d)
                            .map_err(|e| MgmtError::from(e).on(device_path(&d.name)).attr("filename"))?;
                    }
                    let mut live_old = o.clone();
                    copy_live_device_attrs(&mut live_old, d);
                    if live_old != *o {
                        b.update_device(o, d).map_err(|e| {
                            let e = MgmtError::from(e).on(device_path(&d.name));
                            match first_difference(o, &live_old) {
                                Some(attr) => e.attr(attr),
                                None => e,
                            }
                        })?;
                    }
                    if d.size_bytes() != o.size_bytes() {
                        let size = d.size_bytes();
                        b.resize_device(d, size)
                            .map_err(|e| MgmtError::from(e).on(device_path(&d.name)))?;
                    }
                }
                Some(_) => {}
            }
        }
        for t in &new.targets {
            if old.target(t.name.as_str()) != Some(t) {
                b.apply_target(t)
                    .map_err(|e| MgmtError::from(e).on(target_path(t.name.as_str())))?;
            }
        }
        for t in &old.targets {
            if new.target(t.name.as_str()).is_none() {
                b.delete_target(t.name.as_str())
                    .map_err(|e| MgmtError::from(e).on(target_path(t.name.as_str())))?;
            }
        }
        for d in &old.devices {
            if new.device(&d.name).is_none() {
                b.delete_device(&d.name)
                    .map_err(|e| MgmtError::from(e).on(device_path(&d.name)))?;
            }
        }
        if old.iscsi != new.iscsi {
            b.apply_driver(&new.iscsi)
                .map_err(|e| MgmtError::from(e).on("targets/iscsi"))?;
        }
        Ok(())
    }

    /// Portals removed from `new` stop listening (their connections are closed), portals added start; a portal's
    /// tpgt is fixed while it exists.
    fn apply_portals(&self, old: &Config, new: &mut Config) -> Result<(), MgmtError> {
        let here = |a: std::net::SocketAddr| format!("{PORTALS_PATH}/{a}");
        for n in &new.portals {
            if let Some(o) = old.portals.iter().find(|o| o.address == n.address) {
                if o.tpgt != n.tpgt {
                    return Err(MgmtError::new(
                        ErrorKind::Unsupported,
                        "the tpgt of a portal is fixed while it listens; delete the portal and add it again",
                    )
                    .on(here(n.address))
                    .attr("tpgt"));
                }
            }
        }
        for o in &old.portals {
            if !new.portals.iter().any(|n| n.address == o.address) {
                self.backend
                    .remove_portal(o.address)
                    .map_err(|e| MgmtError::from(e).on(here(o.address)))?;
            }
        }
        for n in new.portals.iter_mut() {
            if !old.portals.iter().any(|o| o.address == n.address) {
                let bound = self
                    .backend
                    .add_portal(n)
                    .map_err(|e| MgmtError::from(e).on(here(n.address)))?;
                n.address = bound;
            }
        }
        Ok(())
    }

    // ---- devices -------------------------------------------------------------------------------------------

    /// Create a device (SCST `add_device`; `bdev_create`).
    pub fn add_device(&self, dev: DeviceConfig) -> Result<(), MgmtError> {
        let path = device_path(&dev.name);
        self.edit(|c| {
            if c.device(&dev.name).is_some() {
                return Err(MgmtError::new(
                    ErrorKind::Exists,
                    "a device of this name exists already",
                ));
            }
            c.devices.push(dev);
            Ok(())
        })
        .map_err(|e| e.on(path))
    }

    /// Delete a device (SCST `del_device`). A device mapped as a LUN is refused unless `force`, which unmaps it
    /// everywhere first (sessions get REPORTED LUNS DATA HAS CHANGED).
    pub fn delete_device(&self, name: &str, force: bool) -> Result<(), MgmtError> {
        self.edit(|c| {
            if c.device(name).is_none() {
                return Err(MgmtError::not_found("no such device"));
            }
            let users = device_users(c, name);
            if !users.is_empty() && !force {
                return Err(MgmtError::new(
                    ErrorKind::Busy,
                    format!(
                        "the device is in use by {}; remove those LUNs first, or force",
                        users.join(", ")
                    ),
                ));
            }
            for t in &mut c.targets {
                t.luns.retain(|l| l.device != name);
                for g in &mut t.ini_groups {
                    g.luns.retain(|l| l.device != name);
                }
            }
            c.devices.retain(|d| d.name != name);
            Ok(())
        })
        .map_err(|e| e.on(device_path(name)))
    }

    /// Resize a device to `size` (SCST `size`/`size_mb`; SPDK `bdev_*_resize`). Sessions get CAPACITY DATA HAS
    /// CHANGED.
    pub fn resize_device(&self, name: &str, size: Size) -> Result<(), MgmtError> {
        self.edit(|c| {
            let d = c
                .devices
                .iter_mut()
                .find(|d| d.name == name)
                .ok_or_else(|| MgmtError::not_found("no such device"))?;
            d.size = Some(size);
            d.size_mb = None;
            Ok(())
        })
        .map_err(|e| e.on(device_path(name)))
    }

    /// Set one attribute of a device from text (SCST: write the device's sysfs attribute). The attributes of
    /// [`LIVE_DEVICE_ATTRS`] change at once, with the unit attentions they call for; an empty value returns an
    /// identity string or `threads_num` to its default. Others are refused, naming the attribute.
    pub fn set_device_attr(&self, name: &str, attr: &str, value: &str) -> Result<(), MgmtError> {
        self.edit(|c| {
            let d = c
                .devices
                .iter_mut()
                .find(|d| d.name == name)
                .ok_or_else(|| MgmtError::not_found("no such device"))?;
            crate::scst::set_device_param(d, attr, value)
        })
        .map_err(|e| e.on(device_path(name)).attr(attr))
    }

    // ---- portals -------------------------------------------------------------------------------------------

    /// Start listening on a portal (`iscsi_add_portal`; port 0: the kernel picks one). Returns the address bound.
    pub fn add_portal(&self, portal: PortalConfig) -> Result<std::net::SocketAddr, MgmtError> {
        let here = format!("{PORTALS_PATH}/{}", portal.address);
        let wanted = portal.address;
        self.edit(|c| {
            if wanted.port() != 0 && c.portals.iter().any(|p| p.address == wanted) {
                return Err(MgmtError::new(ErrorKind::Exists, "a portal listens on this address already"));
            }
            c.portals.push(portal);
            Ok(c.portals.len() - 1)
        })
        .map(|i| self.lock().portals.get(i).map_or(wanted, |p| p.address))
        .map_err(|e| e.on(here))
    }

    /// Stop listening on a portal and close the connections that came through it (`iscsi_delete_portal`).
    pub fn remove_portal(&self, address: std::net::SocketAddr) -> Result<(), MgmtError> {
        self.edit(|c| {
            let before = c.portals.len();
            c.portals.retain(|p| p.address != address);
            if c.portals.len() == before {
                return Err(MgmtError::not_found("no portal listens on this address"));
            }
            if c.portals.is_empty() {
                return Err(MgmtError::new(
                    ErrorKind::Busy,
                    "the last portal cannot be removed (the target would be unreachable); add another one first",
                ));
            }
            Ok(())
        })
        .map_err(|e| e.on(format!("{PORTALS_PATH}/{address}")))
    }

    /// Change the medium of a `vcdrom` device (SCST: write its `filename`; `None`, an empty name, ejects).
    pub fn change_medium(&self, name: &str, filename: Option<PathBuf>) -> Result<(), MgmtError> {
        self.edit(|c| {
            let d = c
                .devices
                .iter_mut()
                .find(|d| d.name == name)
                .ok_or_else(|| MgmtError::not_found("no such device"))?;
            if d.handler != Handler::Vcdrom {
                return Err(MgmtError::new(
                    ErrorKind::Unsupported,
                    "the medium of a vcdrom device changes at run time; other devices keep their filename",
                ));
            }
            d.filename = filename;
            Ok(())
        })
        .map_err(|e| e.on(device_path(name)).attr("filename"))
    }

    /// Re-read the size of a file or block device (SCST `resync_size`). Returns the new size in bytes.
    pub fn resync_device(&self, name: &str) -> Result<u64, MgmtError> {
        let guard = self.lock();
        let d = guard
            .device(name)
            .ok_or_else(|| MgmtError::not_found("no such device").on(device_path(name)))?;
        if !d.handler.needs_filename() {
            return Err(MgmtError::new(
                ErrorKind::Unsupported,
                "resync_size applies to vdisk_fileio and vdisk_blockio",
            )
            .on(device_path(name))
            .attr("resync_size"));
        }
        if d.size.is_some() || d.size_mb.is_some() {
            return Err(MgmtError::new(
                ErrorKind::Unsupported,
                "the device has a configured size; set size instead of resyncing",
            )
            .on(device_path(name))
            .attr("resync_size"));
        }
        self.backend
            .resize_device(d, None)
            .map_err(|e| MgmtError::from(e).on(device_path(name)))
    }

    // ---- targets -------------------------------------------------------------------------------------------

    /// Create a target (SCST `add_target`; `iscsi_create_target_node`).
    pub fn add_target(&self, t: TargetConfig) -> Result<(), MgmtError> {
        let path = target_path(t.name.as_str());
        self.edit(|c| {
            if c.target(t.name.as_str()).is_some() {
                return Err(MgmtError::new(
                    ErrorKind::Exists,
                    "a target of this name exists already",
                ));
            }
            c.targets.push(t);
            Ok(())
        })
        .map_err(|e| e.on(path))
    }

    /// Delete a target (SCST `del_target`). A target with sessions is refused unless `force`, which closes them.
    pub fn delete_target(&self, name: &str, force: bool) -> Result<(), MgmtError> {
        if !force {
            let n = self.backend.sessions()?.iter().filter(|s| s.target == name).count();
            if n > 0 {
                return Err(MgmtError::new(
                    ErrorKind::Busy,
                    format!("the target has {n} session(s); close them first, or force"),
                )
                .on(target_path(name)));
            }
        }
        self.edit(|c| {
            let before = c.targets.len();
            c.targets.retain(|t| t.name.as_str() != name);
            if c.targets.len() == before {
                return Err(MgmtError::not_found("no such target"));
            }
            Ok(())
        })
        .map_err(|e| e.on(target_path(name)))
    }

    /// Change one target with `f` (attributes, CHAP, ACL); the target must exist.
    pub fn edit_target<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut TargetConfig) -> Result<T, MgmtError>,
    ) -> Result<T, MgmtError> {
        self.edit(|c| {
            let t = c
                .targets
                .iter_mut()
                .find(|t| t.name.as_str() == name)
                .ok_or_else(|| MgmtError::not_found("no such target"))?;
            f(t)
        })
        .map_err(|e| e.on(target_path(name)))
    }

    /// The LUN list of a target's default set (`group` None) or of one of its groups.
    fn with_luns<T>(
        &self,
        target: &str,
        group: Option<&str>,
        f: impl FnOnce(&mut Vec<LunConfig>) -> Result<T, MgmtError>,
    ) -> Result<T, MgmtError> {
        let here = luns_path(target, group);
        self.edit_target(target, |t| match group {
            None => f(&mut t.luns).map_err(|e| e.on(here)),
            Some(g) => {
                let grp = t
                    .ini_groups
                    .iter_mut()
                    .find(|x| x.name == g)
                    .ok_or_else(|| MgmtError::not_found(format!("no initiator group {g:?}")))?;
                f(&mut grp.luns).map_err(|e| e.on(here))
            }
        })
    }

    /// Map a device as a LUN (SCST `add DEV LUN [read_only=1]`); with `replace`, an existing LUN is re-pointed
    /// (SCST `replace`: sessions get INQUIRY DATA HAS CHANGED) instead of refused.
    pub fn add_lun(&self, target: &str, group: Option<&str>, lun: LunConfig, replace: bool) -> Result<(), MgmtError> {
        self.with_luns(target, group, |luns| {
            match luns.iter_mut().find(|l| l.lun == lun.lun) {
                Some(existing) if replace => *existing = lun,
                Some(_) => {
                    return Err(MgmtError::new(
                        ErrorKind::Exists,
                        format!("LUN {} exists already (use replace)", lun.lun),
                    ))
                }
                None => luns.push(lun),
            }
            luns.sort_by_key(|l| l.lun);
            Ok(())
        })
    }

    /// Unmap a LUN (SCST `del LUN`). Sessions get REPORTED LUNS DATA HAS CHANGED.
    pub fn remove_lun(&self, target: &str, group: Option<&str>, lun: u16) -> Result<(), MgmtError> {
        self.with_luns(target, group, |luns| {
            let before = luns.len();
            luns.retain(|l| l.lun != lun);
            if luns.len() == before {
                return Err(MgmtError::not_found(format!("no LUN {lun}")));
            }
            Ok(())
        })
    }

    /// Unmap every LUN of the set (SCST `clear`).
    pub fn clear_luns(&self, target: &str, group: Option<&str>) -> Result<(), MgmtError> {
        self.with_luns(target, group, |luns| {
            luns.clear();
            Ok(())
        })
    }

    /// Create an initiator group (SCST `ini_groups/mgmt create NAME`).
    pub fn create_group(&self, target: &str, name: &str) -> Result<(), MgmtError> {
        self.edit_target(target, |t| {
            if t.group(name).is_some() {
                return Err(MgmtError::new(
                    ErrorKind::Exists,
                    format!("initiator group {name:?} exists already"),
                ));
            }
            t.ini_groups.push(IniGroupConfig::new(name));
            Ok(())
        })
    }

    /// Delete an initiator group (SCST `del NAME`); its sessions fall back to the default LUN set.
    pub fn delete_group(&self, target: &str, name: &str) -> Result<(), MgmtError> {
        self.edit_target(target, |t| {
            let before = t.ini_groups.len();
            t.ini_groups.retain(|g| g.name != name);
            if t.ini_groups.len() == before {
                return Err(MgmtError::not_found(format!("no initiator group {name:?}")));
            }
            Ok(())
        })
    }

    /// Change the initiator patterns of a group with `f`.
    pub fn edit_initiators(
        &self,
        target: &str,
        group: &str,
        f: impl FnOnce(&mut Vec<String>, &mut Vec<IniGroupConfig>) -> Result<(), MgmtError>,
    ) -> Result<(), MgmtError> {
        self.edit_target(target, |t| {
            let i = t
                .ini_groups
                .iter()
                .position(|g| g.name == group)
                .ok_or_else(|| MgmtError::not_found(format!("no initiator group {group:?}")))?;
            let mut inis = std::mem::take(&mut t.ini_groups[i].initiators);
            let r = f(&mut inis, &mut t.ini_groups);
            t.ini_groups[i].initiators = inis;
            r.map_err(|e| e.on(format!("{}/ini_groups/{group}/initiators", target_path(target))))
        })
    }

    /// Add an initiator name pattern to a group (SCST `initiators/mgmt add NAME`).
    pub fn add_initiator(&self, target: &str, group: &str, pattern: &str) -> Result<(), MgmtError> {
        self.edit_initiators(target, group, |inis, _| {
            if inis.iter().any(|p| p == pattern) {
                return Err(MgmtError::new(
                    ErrorKind::Exists,
                    format!("{pattern:?} is in the group already"),
                ));
            }
            inis.push(pattern.to_string());
            Ok(())
        })
    }

    /// Remove an initiator name pattern (SCST `del NAME`).
    pub fn remove_initiator(&self, target: &str, group: &str, pattern: &str) -> Result<(), MgmtError> {
        self.edit_initiators(target, group, |inis, _| {
            let before = inis.len();
            inis.retain(|p| p != pattern);
            if inis.len() == before {
                return Err(MgmtError::not_found(format!("{pattern:?} is not in the group")));
            }
            Ok(())
        })
    }

    /// Move an initiator name pattern to another group of the same target (SCST `move NAME DEST`).
    pub fn move_initiator(&self, target: &str, group: &str, pattern: &str, dest: &str) -> Result<(), MgmtError> {
        self.edit_initiators(target, group, |inis, groups| {
            let before = inis.len();
            inis.retain(|p| p != pattern);
            if inis.len() == before {
                return Err(MgmtError::not_found(format!("{pattern:?} is not in the group")));
            }
            let d = groups
                .iter_mut()
                .find(|g| g.name == dest)
                .ok_or_else(|| MgmtError::not_found(format!("no initiator group {dest:?}")))?;
            if !d.initiators.iter().any(|p| p == pattern) {
                d.initiators.push(pattern.to_string());
            }
            Ok(())
        })
    }

    /// Remove every initiator pattern of a group (SCST `clear`).
    pub fn clear_initiators(&self, target: &str, group: &str) -> Result<(), MgmtError> {
        self.edit_initiators(target, group, |inis, _| {
            inis.clear();
            Ok(())
        })
    }

    // ---- sessions and persistence --------------------------------------------------------------------------

    /// Close one session by SCST sid (hexadecimal, with or without 0x).
    pub fn force_close(&self, sid: &str) -> Result<(), MgmtError> {
        let v = parse_sid(sid)?;
        Ok(self.backend.force_close(v)?)
    }

    /// The running configuration as YAML with every attribute at its default left out.
    pub fn config_yaml(&self) -> Result<String, MgmtError> {
        crate::save::minimal_yaml(&self.lock()).map_err(|e| MgmtError::new(ErrorKind::Internal, e.to_string()))
    }

    /// Write the running configuration to `path` (or to the file the target was started from) atomically; returns
    /// the path written.
    pub fn save_config(&self, path: Option<&Path>) -> Result<PathBuf, MgmtError> {
        let path = match path.or(self.config_path.as_deref()) {
            Some(p) => p.to_path_buf(),
            None => {
                return Err(MgmtError::invalid(
                    "the target was started without a configuration file; give the file to write",
                ))
            }
        };
        let yaml = self.config_yaml()?;
        crate::save::write_atomically(&path, yaml.as_bytes())
            .map_err(|e| MgmtError::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// The object-tree directory of the portals (a polltgt addition: SCST's iscsi-scstd takes its portals from its
/// command line).
pub const PORTALS_PATH: &str = "targets/iscsi/portals";

/// Device attributes that change while the device exists (besides size, size_mb and a vcdrom's filename).
pub const LIVE_DEVICE_ATTRS: [&str; 11] = [
    "read_only",
    "nv_cache",
    "write_through",
    "rotational",
    "removable",
    "t10_vend_id",
    "prod_id",
    "prod_rev_lvl",
    "t10_dev_id",
    "usn",
    "threads_num",
];

/// Copy the attributes of [`LIVE_DEVICE_ATTRS`] from `from` to `to`.
fn copy_live_device_attrs(to: &mut DeviceConfig, from: &DeviceConfig) {
    to.read_only = from.read_only;
    to.nv_cache = from.nv_cache;
    to.write_through = from.write_through;
    to.rotational = from.rotational;
    to.removable = from.removable;
    to.t10_vend_id = from.t10_vend_id.clone();
    to.prod_id = from.prod_id.clone();
    to.prod_rev_lvl = from.prod_rev_lvl.clone();
    to.t10_dev_id = from.t10_dev_id.clone();
    to.usn = from.usn.clone();
    to.threads_num = from.threads_num;
}

/// The name of the first attribute in which `a` and `b` differ (configuration field names, SCST's).
fn first_difference<T: serde::Serialize>(a: &T, b: &T) -> Option<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Some("?".to_string());
    };
    a.keys()
        .chain(b.keys())
        .find(|k| a.get(*k) != b.get(*k))
        .cloned()
}

/// What only a restart changes: the reactors (threads, CPUs, idle policy, zero-copy threshold, buffer pool cap),
/// the state directory and the management interfaces. Refused naming the attribute.
fn fixed_at_start(old: &Config, new: &Config) -> Result<(), MgmtError> {
    let restart = |object: &str, attr: String| {
        let e = MgmtError::new(
            ErrorKind::Unsupported,
            "takes effect at the next start (the reactor threads, the buffer pool and the management sockets are \
             set up once); edit the configuration file and restart",
        );
        let e = if object.is_empty() { e } else { e.on(object.to_string()) };
        e.attr(attr)
    };
    if old.reactors != new.reactors {
        let attr = first_difference(&old.reactors, &new.reactors).unwrap_or_else(|| "reactors".into());
        return Err(restart("reactors", attr));
    }
    if old.mgmt != new.mgmt {
        let attr = first_difference(&old.mgmt, &new.mgmt).unwrap_or_else(|| "mgmt".into());
        return Err(restart("mgmt", attr));
    }
    if old.state_dir != new.state_dir {
        return Err(restart("", "state_dir".into()));
    }
    Ok(())
}

/// The object-tree path and attribute of a configuration field path (`targets[0].luns[1].device` ->
/// `targets/iscsi/NAME/luns/LUN`, `device`).
pub fn tree_location(c: &Config, path: &crate::error::FieldPath) -> (String, Option<String>) {
    use crate::error::Segment;
    let seg = path.segments();
    let key = |i: usize| match seg.get(i) {
        Some(Segment::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    let idx = |i: usize| match seg.get(i) {
        Some(Segment::Index(n)) => Some(*n),
        _ => None,
    };
    let last_key = match seg.last() {
        Some(Segment::Key(k)) => Some(k.clone()),
        _ => None,
    };
    match (key(0), idx(1)) {
        (Some("devices"), Some(i)) => {
            if let Some(d) = c.devices.get(i) {
                return (device_path(&d.name), last_key.filter(|_| seg.len() > 2));
            }
        }
        (Some("targets"), Some(i)) => {
            if let Some(t) = c.targets.get(i) {
                let mut obj = target_path(t.name.as_str());
                let mut attr = last_key.clone().filter(|_| seg.len() == 3);
                if let (Some("luns"), Some(j)) = (key(2), idx(3)) {
                    if let Some(l) = t.luns.get(j) {
                        obj = format!("{}/{}", luns_path(t.name.as_str(), None), l.lun);
                        attr = key(4).map(str::to_string);
                    }
                }
                if let (Some("ini_groups"), Some(j)) = (key(2), idx(3)) {
                    if let Some(g) = t.ini_groups.get(j) {
                        obj = format!("{obj}/ini_groups/{}", g.name);
                        attr = None;
                        match (key(4), idx(5)) {
                            (Some("luns"), Some(k)) => {
                                if let Some(l) = g.luns.get(k) {
                                    obj = format!("{}/{}", luns_path(t.name.as_str(), Some(&g.name)), l.lun);
                                    attr = key(6).map(str::to_string);
                                }
                            }
                            (Some("initiators"), _) => obj.push_str("/initiators"),
                            (Some(k), None) => attr = Some(k.to_string()),
                            _ => {}
                        }
                    }
                }
                return (obj, attr);
            }
        }
        (Some("iscsi"), _) => return ("targets/iscsi".to_string(), key(1).map(str::to_string)),
        _ => {}
    }
    (path.to_string(), None)
}

/// Where a device is mapped, as object paths.
pub fn device_users(c: &Config, device: &str) -> Vec<String> {
    let mut users = Vec::new();
    for t in &c.targets {
        for l in t.luns.iter().filter(|l| l.device == device) {
            users.push(format!("{}/{}", luns_path(t.name.as_str(), None), l.lun));
        }
        for g in &t.ini_groups {
            for l in g.luns.iter().filter(|l| l.device == device) {
                users.push(format!("{}/{}", luns_path(t.name.as_str(), Some(&g.name)), l.lun));
            }
        }
    }
    users
}

/// An SCST sid: hexadecimal, with or without a 0x prefix.
pub fn parse_sid(sid: &str) -> Result<u64, MgmtError> {
    let t = sid.trim();
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u64::from_str_radix(hex, 16).map_err(|_| MgmtError::invalid(format!("{sid:?} is not a session id (hexadecimal)")))
}

/// A target name from text, with the configuration's check.
pub fn target_name(name: &str) -> Result<TargetName, MgmtError> {
    TargetName::new(name).map_err(|e| MgmtError::invalid(e.0))
}
