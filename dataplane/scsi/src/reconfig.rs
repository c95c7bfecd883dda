//! Run-time changes of a logical unit's attributes (SCST's writable device attributes): write protection, removable
//! medium, the write cache default, the non-volatile cache flag, the rotation rate and the identity strings, each
//! with the unit attention SPC-4 calls for. Geometry (block size), thin provisioning and the device type are fixed
//! for the life of the logical unit.
//!
//! - INQUIRY data or a VPD page changed (identity strings, RMB, the Block Device Characteristics page): 06/3F/03
//!   INQUIRY DATA HAS CHANGED for every I_T nexus (SPC-4 §6.6.1).
//! - A mode parameter changed (the WP bit of the mode parameter header, WCE of the Caching page): 06/2A/01 MODE
//!   PARAMETERS CHANGED for every I_T nexus (SPC-4 §7.5.1, SBC-3 §6.4.1).
//!
//! Both may be queued by one change. `nv_cache` changes no data an initiator reads and raises nothing.
//!
//! Also here: [`mark_write_protected`], which sets the WP bit in MODE SENSE data for a LUN mapped read-only (SCST's
//! per-LUN `read_only`, which the transport applies on top of the logical unit).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crate::mode::WCE;
use crate::sense::Sense;
use crate::{inquiry, opcode, LogicalUnit, LuConfig, Response, Status};

/// What [`LogicalUnit::reconfigure`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// INQUIRY data or a VPD page changed: INQUIRY DATA HAS CHANGED was established.
    pub inquiry: bool,
    /// A mode parameter changed: MODE PARAMETERS CHANGED was established.
    pub mode: bool,
    /// The non-volatile cache flag changed.
    pub nv_cache: bool,
}

impl Reconfigured {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.inquiry || self.mode || self.nv_cache
    }
}

impl LogicalUnit {
    /// Applies the run-time changeable attributes of `cfg`: `read_only`, `removable`, `write_cache` (the WCE
    /// default and current value), `nv_cache`, `rotational` and the identity strings (vendor, product, revision,
    /// serial, device id, NAA id). Block size, capacity, thin provisioning and the device type of `cfg` are
    /// ignored. A CD-ROM stays read-only and removable. Establishes the unit attentions the change calls for (see
    /// the module documentation) and returns what changed.
    pub fn reconfigure(&self, cfg: &LuConfig) -> Reconfigured {
        let cdrom = self.device_type == crate::DeviceType::Cdrom;
        let mut out = Reconfigured::default();
        let mut locked = self.nexus.lock();
        let read_only = cfg.read_only || cdrom;
        if self.read_only.swap(read_only, Ordering::AcqRel) != read_only {
            out.mode = true;
        }
        if self.mode.set_default(WCE, cfg.write_cache) {
            out.mode = true;
        }
        if self.nv_cache.swap(cfg.nv_cache, Ordering::AcqRel) != cfg.nv_cache {
            out.nv_cache = true;
        }
        let removable = cfg.removable || cdrom;
        self.removable.store(removable, Ordering::Release);
        let mut full = cfg.clone();
        full.block_size = self.block_size;
        full.read_only = read_only;
        full.removable = removable;
        full.thin_provisioned = self.thin;
        full.max_transfer_blocks = self.max_transfer_blocks;
        full.device_type = self.device_type;
        let new = inquiry::Pages::new(&full);
        {
            let mut pages = self.pages.write().unwrap_or_else(PoisonError::into_inner);
            if **pages != new {
                *pages = Arc::new(new);
                out.inquiry = true;
            }
        }
        if out.inquiry {
            locked.raise_all(Sense::inquiry_data_changed(), None);
        }
        if out.mode {
            locked.raise_all(Sense::mode_parameters_changed(), None);
        }
        out
    }
}

/// Sets the WP bit (SBC-3 §6.4.1, DEVICE-SPECIFIC PARAMETER bit 7) in the mode parameter header of a successful
/// MODE SENSE (6) or (10) response: for a LUN mapped read-only, whose writes the transport refuses, although the
/// logical unit itself is writable. Other commands and responses are left alone.
pub fn mark_write_protected(cdb: &[u8], response: &mut Response) {
    if response.status != Status::Good {
        return;
    }
    let at = match cdb.first() {
        Some(&opcode::MODE_SENSE_6) => 2,
        Some(&opcode::MODE_SENSE_10) => 3,
        _ => return,
    };
    if let Some(b) = response.data.get_mut(at) {
        *b |= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Command, NexusId};

    fn lu(cfg: LuConfig) -> LogicalUnit {
        LogicalUnit::new(LuConfig { num_blocks: 1024, ..cfg })
    }

    fn run(lu: &LogicalUnit, nexus: NexusId, cdb: &[u8]) -> Action {
        lu.execute(&Command { nexus, lun: 0, cdb, expected_len: 4096, data_out: None })
    }

    fn respond(a: Action) -> Response {
        match a {
            Action::Respond(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Sense key, ASC, ASCQ of a CHECK CONDITION in fixed format.
    fn check(r: &Response) -> Option<(u8, u8, u8)> {
        let s = r.sense.as_ref()?;
        Some((s[2] & 0x0f, s[12], s[13]))
    }

    fn ready(lu: &LogicalUnit, n: NexusId) {
        let r = respond(run(lu, n, &[opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0]));
        assert_eq!(check(&r), Some((6, 0x29, 0)), "power on first");
    }

    fn tur(lu: &LogicalUnit, n: NexusId) -> Option<(u8, u8, u8)> {
        check(&respond(run(lu, n, &[opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0])))
    }

    const MODE_SENSE_ALL: [u8; 6] = [opcode::MODE_SENSE_6, 0, 0x3f, 0, 255, 0];

    #[test]
    fn read_only_and_write_cache_change_mode_parameters() {
        let lu = lu(LuConfig::default());
        let n = NexusId(1);
        ready(&lu, n);
        let before = respond(run(&lu, n, &MODE_SENSE_ALL));
        assert_eq!(before.data[2] & 0x80, 0);
        let changed = lu.reconfigure(&LuConfig { read_only: true, write_cache: false, ..LuConfig::default() });
        assert_eq!(changed, Reconfigured { inquiry: false, mode: true, nv_cache: false });
        assert_eq!(tur(&lu, n), Some((6, 0x2a, 0x01)), "MODE PARAMETERS CHANGED once");
        assert_eq!(tur(&lu, n), None);
        let after = respond(run(&lu, n, &MODE_SENSE_ALL));
        assert_eq!(after.data[2] & 0x80, 0x80, "WP");
        // Caching page right after the 4-byte header and the 8-byte block descriptor: WCE is bit 2 of byte 2.
        assert_eq!(after.data[4 + 8] & 0x3f, 0x08);
        assert_eq!(after.data[4 + 8 + 2] & 0x04, 0, "WCE off");
        let w = respond(run(&lu, n, &[opcode::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
        assert_eq!(check(&w), Some((7, 0x27, 0)));
        // Nothing changed: no unit attention.
        let again = lu.reconfigure(&LuConfig { read_only: true, write_cache: false, ..LuConfig::default() });
        assert!(!again.any());
        assert_eq!(tur(&lu, n), None);
        lu.reconfigure(&LuConfig::default());
        assert_eq!(tur(&lu, n), Some((6, 0x2a, 0x01)));
        assert!(matches!(run(&lu, n, &[opcode::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Action::Write { fua: false, .. }));
    }

    #[test]
    fn identity_removable_and_rotation_change_inquiry_data() {
        let lu = lu(LuConfig::default());
        let n = NexusId(2);
        ready(&lu, n);
        let changed = lu.reconfigure(&LuConfig {
            vendor: "ACME".into(),
            product: "ROCKET".into(),
            revision: "0042".into(),
            serial: "SN1".into(),
            removable: true,
            rotational: true,
            ..LuConfig::default()
        });
        assert_eq!(changed, Reconfigured { inquiry: true, mode: false, nv_cache: false });
        assert_eq!(tur(&lu, n), Some((6, 0x3f, 0x03)));
        let inq = respond(run(&lu, n, &[opcode::INQUIRY, 0, 0, 0, 96, 0]));
        assert_eq!(inq.data[1] & 0x80, 0x80, "RMB");
        assert_eq!(&inq.data[8..12], b"ACME");
        assert_eq!(&inq.data[16..22], b"ROCKET");
        assert_eq!(&inq.data[32..36], b"0042");
        // A removable medium can be ejected now (NO_FLUSH, LOEJ).
        assert!(matches!(
            run(&lu, n, &[opcode::START_STOP_UNIT, 0, 0, 0, 0x06, 0]),
            Action::Respond(Response { status: Status::Good, .. })
        ));
    }

    #[test]
    fn nv_cache_makes_synchronize_cache_and_fua_free() {
        let lu = lu(LuConfig::default());
        let n = NexusId(3);
        ready(&lu, n);
        let sync = [opcode::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let fua_write = [opcode::WRITE_10, 0x08, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(run(&lu, n, &sync), Action::Flush);
        assert!(matches!(run(&lu, n, &fua_write), Action::Write { fua: true, .. }));
        let changed = lu.reconfigure(&LuConfig { nv_cache: true, ..LuConfig::default() });
        assert_eq!(changed, Reconfigured { inquiry: false, mode: false, nv_cache: true });
        assert_eq!(tur(&lu, n), None, "no unit attention for nv_cache");
        assert_eq!(respond(run(&lu, n, &sync)).status, Status::Good);
        assert!(matches!(run(&lu, n, &fua_write), Action::Write { fua: false, .. }));
    }

    #[test]
    fn a_cdrom_stays_read_only_and_removable() {
        let lu = lu(LuConfig { device_type: crate::DeviceType::Cdrom, block_size: 2048, ..LuConfig::default() });
        lu.reconfigure(&LuConfig { read_only: false, removable: false, ..LuConfig::default() });
        assert!(lu.read_only() && lu.removable());
    }

    #[test]
    fn write_protection_is_marked_in_mode_sense_data_only() {
        let mut r6 = Response::good(vec![0x23, 0, 0x10, 8]);
        mark_write_protected(&MODE_SENSE_ALL, &mut r6);
        assert_eq!(r6.data[2], 0x90);
        let mut r10 = Response::good(vec![0, 0x26, 0, 0x10, 0, 0, 0, 8]);
        mark_write_protected(&[opcode::MODE_SENSE_10, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0], &mut r10);
        assert_eq!(r10.data[3], 0x90);
        let mut inq = Response::good(vec![0; 36]);
        mark_write_protected(&[opcode::INQUIRY, 0, 0, 0, 36, 0], &mut inq);
        assert!(inq.data.iter().all(|b| *b == 0));
        let mut short = Response::good(vec![0x23]);
        mark_write_protected(&MODE_SENSE_ALL, &mut short);
        assert_eq!(short.data, vec![0x23]);
    }
}
