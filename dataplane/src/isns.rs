//! iSNS (RFC 4171) client side of the target: registration of targets and portals with the configured iSNS server,
//! and iSNS access control (the server's discovery domains decide which initiators see and reach a target).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// iSNS access control (iSCSI-SCST's `iSNSServer ... AccessControl`): when enabled, a target is visible in
/// SendTargets and accepts logins only from initiators the iSNS server places in one of its discovery domains.
/// Until the server has answered for a target, no initiator may reach it (fail closed).
#[derive(Debug, Default)]
pub struct IsnsAcl {
    enabled: AtomicBool,
    /// Target name -> initiator names (lower case) sharing a discovery domain with it.
    visible: RwLock<HashMap<String, HashSet<String>>>,
}

impl IsnsAcl {
    /// Whether `initiator` may see and log in to `target`.
    pub fn allows(&self, target: &str, initiator: &str) -> bool {
        if !self.enabled.load(Ordering::Acquire) {
            return true;
        }
        let visible = self.visible.read().unwrap_or_else(|p| p.into_inner());
        visible.get(target).is_some_and(|s| s.contains(&initiator.to_ascii_lowercase()))
    }

    /// Whether access control is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Turns access control on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// The initiators the server reports in a discovery domain with `target`.
    pub fn set_visible(&self, target: &str, initiators: impl IntoIterator<Item = String>) {
        let set: HashSet<String> = initiators.into_iter().map(|i| i.to_ascii_lowercase()).collect();
        self.visible.write().unwrap_or_else(|p| p.into_inner()).insert(target.to_string(), set);
    }

    /// Forgets what the server said about `target`.
    pub fn forget(&self, target: &str) {
        self.visible.write().unwrap_or_else(|p| p.into_inner()).remove(target);
    }
}
