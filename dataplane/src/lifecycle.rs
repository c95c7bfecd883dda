//! A device's capacity changes while it is exported (SCST's `size` of a null device, `resync_size` of a file or
//! block device): the bdev takes its new size in place ([`polltgt_bdev::Bdev::resize`]; the device object, its
//! channels and its range lock stay), then the logical unit reports it and establishes 06/2A/09 CAPACITY DATA HAS
//! CHANGED for every I_T nexus (SBC-3 §4.6). The management backend (`src/live.rs`) calls
//! [`Registry::resize_device`]. Changes of a target's LUN inventory reach sessions as per-session unit attentions
//! (REPORTED LUNS DATA HAS CHANGED, INQUIRY DATA HAS CHANGED) through [`crate::live`]; a device's identity through
//! [`polltgt_scsi::LogicalUnit::set_identity`] (06/3F/03).

use polltgt_bdev::BdevError;

use crate::registry::Registry;

/// Why a resize was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("no device named {0:?}")]
    NoSuchDevice(String),
    #[error("device {device:?}: {source}")]
    Bdev {
        device: String,
        #[source]
        source: BdevError,
    },
}

impl Registry {
    /// Resizes device `name`: `None` re-reads the size of its backing file or block device, `Some(n)` sets `n`
    /// blocks where the backend has no backing store of its own (see [`polltgt_bdev::Bdev::resize`]). Returns the
    /// new number of blocks. Commands already past their range check that now reach beyond the end fail with LBA
    /// OUT OF RANGE from the bdev.
    pub fn resize_device(&self, name: &str, num_blocks: Option<u64>) -> Result<u64, ResizeError> {
        let device = self.device(name).ok_or_else(|| ResizeError::NoSuchDevice(name.to_string()))?;
        let blocks = device
            .bdev
            .resize(num_blocks)
            .map_err(|source| ResizeError::Bdev { device: name.to_string(), source })?;
        device.lu.set_capacity(blocks);
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_bdev::{Bdev, FileBdev, FileOptions, RamBdev};
    use polltgt_hugepages::RegionOptions;
    use polltgt_scsi::{Action, Command, LuConfig, NexusId, Sense, Status};
    use std::sync::Arc;

    fn read_capacity(dev: &crate::registry::Device, nexus: NexusId) -> polltgt_scsi::Response {
        let cdb = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let cmd = Command { nexus, lun: 0, cdb: &cdb, expected_len: 8, data_out: None };
        match dev.lu.execute(&cmd) {
            Action::Respond(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_resize_reports_capacity_and_raises_unit_attention() {
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        file.as_file().set_len(1 << 20).expect("size");
        let bdev = FileBdev::open("f", file.path(), 512, false, FileOptions::default()).expect("open");
        let info = bdev.info();
        let reg = Registry::new();
        let lu = LuConfig { num_blocks: info.num_blocks, ..LuConfig::default() };
        let dev = reg.add_device("f", Arc::new(bdev), lu).expect("device");
        let n = NexusId(9);
        // First contact: the POWER ON unit attention, then the capacity.
        assert_eq!(read_capacity(&dev, n).status, Status::CheckCondition);
        assert_eq!(read_capacity(&dev, n).data, [0, 0, 0x07, 0xFF, 0, 0, 2, 0]);

        file.as_file().set_len(2 << 20).expect("grow");
        assert_eq!(reg.resize_device("f", None).expect("resize"), 4096);
        let r = read_capacity(&dev, n);
        assert_eq!(r.sense, Some(Sense::capacity_data_changed().to_fixed()));
        assert_eq!(read_capacity(&dev, n).data, [0, 0, 0x0F, 0xFF, 0, 0, 2, 0]);
        assert_eq!(dev.bdev.info().num_blocks, 4096);

        // Same size again: no unit attention.
        assert_eq!(reg.resize_device("f", None).expect("resize"), 4096);
        assert_eq!(read_capacity(&dev, n).status, Status::Good);
    }

    #[test]
    fn null_resize_takes_a_block_count() {
        use polltgt_bdev::NullBdev;
        let reg = Registry::new();
        let dev = reg
            .add_device("n", Arc::new(NullBdev::new("n", 512, 64).expect("null")), LuConfig { num_blocks: 64, ..LuConfig::default() })
            .expect("device");
        let n = NexusId(4);
        assert_eq!(read_capacity(&dev, n).status, Status::CheckCondition, "power on");
        assert_eq!(reg.resize_device("n", Some(128)).expect("resize"), 128);
        assert_eq!(read_capacity(&dev, n).sense, Some(Sense::capacity_data_changed().to_fixed()));
        assert_eq!(read_capacity(&dev, n).data, [0, 0, 0, 127, 0, 0, 2, 0]);
        assert!(matches!(reg.resize_device("n", None), Err(ResizeError::Bdev { .. })));
    }

    #[test]
    fn refused_resizes_change_nothing() {
        let reg = Registry::new();
        assert!(matches!(reg.resize_device("nope", None), Err(ResizeError::NoSuchDevice(_))));
        let ram = RamBdev::new("r", 512, 64, &RegionOptions::small_pages()).expect("ram");
        let dev = reg
            .add_device("r", Arc::new(ram), LuConfig { num_blocks: 64, ..LuConfig::default() })
            .expect("device");
        assert!(matches!(reg.resize_device("r", Some(128)), Err(ResizeError::Bdev { .. })));
        assert_eq!(dev.lu.num_blocks(), 64);
    }
}
