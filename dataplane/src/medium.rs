//! Medium changes of a CD-ROM device (SCST `vcdrom`: writing its `filename` loads another ISO image, an empty
//! name ejects). The logical unit decides ([`polltgt_scsi::LogicalUnit::change_medium`]: refused while an I_T nexus
//! prevents medium removal) and, holding its nexus table, lets the bdev open the new image and swap it in
//! ([`polltgt_bdev::Bdev::change_medium`]); a new medium establishes 06/28/00 NOT READY TO READY CHANGE, MEDIUM MAY
//! HAVE CHANGED for every nexus. The management backend (`src/live.rs`) calls [`Registry::change_medium`].

use std::path::Path;

use polltgt_bdev::BdevError;
use polltgt_scsi::MediumChangeError;

use crate::registry::Registry;

/// Why a medium change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    #[error("no device named {0:?}")]
    NoSuchDevice(String),
    #[error("device {0:?} is not a CD-ROM (vcdrom)")]
    NotRemovable(String),
    #[error("device {0:?}: an initiator prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL)")]
    Prevented(String),
    #[error("device {device:?}: {source}")]
    Bdev {
        device: String,
        #[source]
        source: BdevError,
    },
}

impl Registry {
    /// Loads the image at `path` into CD-ROM device `name`, or ejects its medium (`None`). Returns the new number
    /// of blocks (0: no medium). Nothing changes when the image cannot be opened or removal is prevented.
    pub fn change_medium(&self, name: &str, path: Option<&Path>) -> Result<u64, MediumError> {
        let device = self.device(name).ok_or_else(|| MediumError::NoSuchDevice(name.to_string()))?;
        device.lu.change_medium(|| device.bdev.change_medium(path)).map_err(|e| match e {
            MediumChangeError::NotRemovable => MediumError::NotRemovable(name.to_string()),
            MediumChangeError::Prevented => MediumError::Prevented(name.to_string()),
            MediumChangeError::Load(source) => MediumError::Bdev { device: name.to_string(), source },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_bdev::{CdromBdev, NullBdev};
    use polltgt_scsi::{Action, Command, DeviceType, LuConfig, NexusId, Sense};
    use std::sync::Arc;

    fn tur(dev: &crate::registry::Device, nexus: NexusId) -> Option<Vec<u8>> {
        let cdb = [0u8; 6];
        match dev.lu.execute(&Command { nexus, lun: 0, cdb: &cdb, expected_len: 0, data_out: None }) {
            Action::Respond(r) => r.sense,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loads_ejects_and_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let iso = dir.path().join("a.iso");
        std::fs::write(&iso, vec![0x5A; 4 * 2048]).expect("image");
        let reg = Registry::new();
        let cd = CdromBdev::new("cd", None).expect("cd");
        let lu = LuConfig {
            block_size: 2048,
            num_blocks: 0,
            device_type: DeviceType::Cdrom,
            medium: false,
            ..LuConfig::default()
        };
        let dev = reg.add_device("cd", Arc::new(cd), lu).expect("device");
        let n = NexusId(3);
        assert_eq!(tur(&dev, n), Some(Sense::power_on_reset().to_fixed()));
        assert_eq!(tur(&dev, n), Some(Sense::medium_not_present().to_fixed()));
        assert!(matches!(
            reg.change_medium("cd", Some(&dir.path().join("missing.iso"))),
            Err(MediumError::Bdev { .. })
        ));
        assert_eq!(reg.change_medium("cd", Some(&iso)).expect("load"), 4);
        assert_eq!(dev.bdev.info().num_blocks, 4);
        assert_eq!(tur(&dev, n), Some(Sense::medium_may_have_changed().to_fixed()));
        assert_eq!(tur(&dev, n), None);
        assert_eq!(reg.change_medium("cd", None).expect("eject"), 0);
        assert_eq!(tur(&dev, n), Some(Sense::medium_not_present().to_fixed()));
        assert!(matches!(reg.change_medium("nope", None), Err(MediumError::NoSuchDevice(_))));
        let null = Arc::new(NullBdev::new("n", 512, 8).expect("null"));
        reg.add_device("n", null, LuConfig { num_blocks: 8, ..LuConfig::default() }).expect("device");
        assert!(matches!(reg.change_medium("n", None), Err(MediumError::NotRemovable(_))));
    }
}
