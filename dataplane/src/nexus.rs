//! The I_T nexuses of the running target: every logged-in normal session is one I_T nexus, named by a
//! [`NexusId`] for the SCSI core and described here by who is at both ends (initiator name and ISID, target name and
//! target portal group). Persistent reservations follow that identity, not the session (SPC-4 §5.9.5), so the
//! driver binds it to each logical unit of the target at login.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use polltgt_scsi::{NexusId, NexusIdentity};

/// One logged-in I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexusInfo {
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target: String,
    pub tpgt: u16,
    /// RELATIVE TARGET PORT IDENTIFIER of the target port (target, TPGT).
    pub relative_port_id: u16,
    /// The reactor that owns the session's connection.
    pub reactor: usize,
}

impl NexusInfo {
    /// The identity the SCSI core keys registrations by.
    pub fn identity(&self) -> NexusIdentity {
        NexusIdentity::iscsi(&self.initiator_name, self.isid, &self.target, self.tpgt, self.relative_port_id)
    }
}

#[derive(Debug, Default)]
struct Inner {
    nexuses: BTreeMap<NexusId, NexusInfo>,
    /// (lower-case target name, TPGT) -> relative target port identifier, from 1 in order of first login.
    ports: BTreeMap<(String, u16), u16>,
}

/// The I_T nexuses of the target. Touched at login and logout only.
#[derive(Debug, Default)]
pub struct NexusDirectory {
    inner: Mutex<Inner>,
}

impl NexusDirectory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The relative target port identifier of target port (`target`, `tpgt`), assigned on first use (SPC-4
    /// §7.8.6.6.6: non-zero, unique among the target ports).
    pub fn relative_port_id(&self, target: &str, tpgt: u16) -> u16 {
        let mut inner = self.lock();
        let next = inner.ports.len().saturating_add(1).min(usize::from(u16::MAX)) as u16;
        *inner.ports.entry((target.to_lowercase(), tpgt)).or_insert(next)
    }

    /// Records a logged-in nexus.
    pub fn insert(&self, id: NexusId, info: NexusInfo) {
        self.lock().nexuses.insert(id, info);
    }

    /// Forgets a nexus (logout, connection loss).
    pub fn remove(&self, id: NexusId) -> Option<NexusInfo> {
        self.lock().nexuses.remove(&id)
    }

    pub fn get(&self, id: NexusId) -> Option<NexusInfo> {
        self.lock().nexuses.get(&id).cloned()
    }

    /// Every logged-in nexus, by id.
    pub fn list(&self) -> Vec<(NexusId, NexusInfo)> {
        self.lock().nexuses.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_port_ids_are_stable_and_distinct() {
        let d = NexusDirectory::default();
        assert_eq!(d.relative_port_id("iqn.t", 1), 1);
        assert_eq!(d.relative_port_id("iqn.u", 1), 2);
        assert_eq!(d.relative_port_id("IQN.T", 1), 1);
        assert_eq!(d.relative_port_id("iqn.t", 2), 3);
    }

    #[test]
    fn insert_get_remove() {
        let d = NexusDirectory::default();
        let info = NexusInfo {
            initiator_name: "iqn.i".into(),
            isid: [0x80, 0, 0, 0, 0, 1],
            target: "iqn.t".into(),
            tpgt: 1,
            relative_port_id: 1,
            reactor: 0,
        };
        d.insert(NexusId(7), info.clone());
        assert_eq!(d.get(NexusId(7)), Some(info.clone()));
        assert_eq!(d.list(), vec![(NexusId(7), info.clone())]);
        assert_eq!(info.identity().initiator.port_name(), "iqn.i,i,0x800000000001");
        assert_eq!(info.identity().target_port.name, "iqn.t,t,0x0001");
        assert_eq!(d.remove(NexusId(7)), Some(info));
        assert_eq!(d.get(NexusId(7)), None);
    }
}
