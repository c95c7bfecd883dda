//! A CD-ROM logical unit (MMC-5; SCST `vcdrom`): a read-only medium of 2048-byte blocks in a tray.
//!
//! The commands specific to CD/DVD devices: READ TOC/PMA/ATIP (§6.26), GET CONFIGURATION (§6.6), GET EVENT STATUS
//! NOTIFICATION (§6.7, polled, media class), READ DISC INFORMATION (§6.22), MODE SENSE with the MM Capabilities
//! and Mechanical Status page (2Ah), and START STOP UNIT that opens and closes the tray. READ (10)/(12), READ
//! CAPACITY, TEST UNIT READY, REQUEST SENSE, INQUIRY (peripheral device type 05h), PREVENT ALLOW MEDIUM REMOVAL and
//! REPORT LUNS are the SPC/SBC handlers.
//!
//! The medium state: `loaded` (an image is in the drive) and `medium_present` (loaded and the tray closed: the
//! logical unit is ready). A medium change from the management plane ([`LogicalUnit::change_medium`]) is refused
//! while a nexus prevents removal; loading a medium establishes 06/28/00 NOT READY TO READY CHANGE, MEDIUM MAY HAVE
//! CHANGED for every nexus, and GET EVENT STATUS NOTIFICATION reports NewMedia or MediaRemoval once per nexus.

use std::sync::atomic::Ordering;

use crate::cdb::Cdb;
use crate::mode::PageControl;
use crate::sense::Sense;
use crate::{opcode, Action, Command, LogicalUnit, Response};

/// MMC profile CD-ROM (MMC-5 table 88).
const PROFILE_CD_ROM: u16 = 0x0008;
/// MM Capabilities and Mechanical Status mode page (MMC-3 §6.3.11; in MMC-5 an obsolete but widely read page).
const PAGE_CAPABILITIES: u8 = 0x2A;

/// Media event codes of GET EVENT STATUS NOTIFICATION (MMC-5 table 154).
pub(crate) const EVENT_NEW_MEDIA: u8 = 0x02;
pub(crate) const EVENT_MEDIA_REMOVAL: u8 = 0x03;

/// Why [`LogicalUnit::change_medium`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediumChangeError<E> {
    /// The logical unit is not a CD-ROM.
    #[error("the logical unit has no removable medium")]
    NotRemovable,
    /// An I_T nexus prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL).
    #[error("medium removal is prevented by an initiator (PREVENT ALLOW MEDIUM REMOVAL)")]
    Prevented,
    /// The new medium could not be loaded; nothing changed.
    #[error("{0}")]
    Load(E),
}

fn good(data: Vec<u8>, alloc: usize) -> Result<Action, Sense> {
    let mut data = data;
    data.truncate(alloc);
    Ok(Action::Respond(Response::good(data)))
}

impl LogicalUnit {
    /// Whether an image is in the drive (CD-ROM); a disk's medium is always there.
    pub fn medium_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Replaces or removes the medium of a CD-ROM (SCST `vcdrom` `filename`): `change` swaps the image in the bdev
    /// and returns its number of blocks (0: no medium). Refused, with nothing changed, while a nexus prevents
    /// medium removal and a medium is loaded. Loading establishes 06/28/00 NOT READY TO READY CHANGE, MEDIUM MAY
    /// HAVE CHANGED for every nexus; the tray ends up closed.
    pub fn change_medium<E>(&self, change: impl FnOnce() -> Result<u64, E>) -> Result<u64, MediumChangeError<E>> {
        if self.device_type != crate::DeviceType::Cdrom {
            return Err(MediumChangeError::NotRemovable);
        }
        let mut locked = self.nexus.lock();
        if self.medium_loaded() && locked.any_prevent() {
            return Err(MediumChangeError::Prevented);
        }
        let blocks = change().map_err(MediumChangeError::Load)?;
        let was_loaded = self.loaded.swap(false, Ordering::AcqRel);
        self.medium_present.store(false, Ordering::Release);
        if was_loaded {
            locked.media_event_all(EVENT_MEDIA_REMOVAL);
        }
        if blocks > 0 {
            self.num_blocks.store(blocks, Ordering::Release);
            self.loaded.store(true, Ordering::Release);
            self.medium_present.store(true, Ordering::Release);
            locked.raise_all(Sense::medium_may_have_changed(), None);
            locked.media_event_all(EVENT_NEW_MEDIA);
        } else {
            self.num_blocks.store(0, Ordering::Release);
        }
        Ok(blocks)
    }

    /// Whether the tray is open (an image is loaded but START STOP UNIT ejected it).
    fn tray_open(&self) -> bool {
        self.medium_loaded() && !self.medium_present()
    }
}

/// START STOP UNIT on a CD-ROM (MMC-5 §6.40): LOEJ with START = 0 opens the tray (05/53/02 MEDIUM REMOVAL PREVENTED
/// while a nexus prevents it), with START = 1 closes it; a loaded medium then becomes ready again, with 06/28/00 for
/// the other nexuses. A power condition other than 0h is accepted without effect.
pub(crate) fn start_stop_unit(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if c.u8(4) >> 4 != 0 || !c.bit(4, 1) {
        return good(Vec::new(), 0);
    }
    let mut locked = lu.nexus.lock();
    if c.bit(4, 0) {
        if lu.medium_loaded() && !lu.medium_present.swap(true, Ordering::AcqRel) {
            locked.raise_all(Sense::medium_may_have_changed(), Some(cmd.nexus));
            locked.media_event_all(EVENT_NEW_MEDIA);
        }
    } else {
        if locked.any_prevent() {
            return Err(Sense::medium_removal_prevented());
        }
        if lu.medium_present.swap(false, Ordering::AcqRel) {
            locked.media_event_all(EVENT_MEDIA_REMOVAL);
        }
    }
    good(Vec::new(), 0)
}

/// An address as READ TOC reports it: a logical block address, or with MSF a (0, minute, second, frame) time
/// counting the 150-frame (2 s) pregap (MMC-5 §6.26.3.2).
fn address(lba: u64, msf: bool) -> [u8; 4] {
    if !msf {
        return u32::try_from(lba).unwrap_or(u32::MAX).to_be_bytes();
    }
    let f = lba + 150;
    let (m, s, fr) = (f / (60 * 75), (f / 75) % 60, f % 75);
    [0, u8::try_from(m).unwrap_or(u8::MAX), s as u8, fr as u8]
}

/// A TOC track descriptor: ADR 1 (Q sub-channel position), CONTROL 4 (data track, recorded uninterrupted).
fn track_descriptor(track: u8, start: [u8; 4]) -> [u8; 8] {
    [0, 0x14, track, 0, start[0], start[1], start[2], start[3]]
}

/// READ TOC/PMA/ATIP (MMC-5 §6.26): format 0000b (TOC: track 1 from LBA 0 and the lead-out, AAh, at the
/// capacity; TRACK/SESSION NUMBER selects the first descriptor, 0 or 1 for track 1, AAh for the lead-out only) and
/// 0001b (session information: one complete session). MSF reports times. Other formats are invalid fields.
pub(crate) fn read_toc(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let msf = c.bit(1, 1);
    let format = c.u8(2) & 0x0F;
    let track = c.u8(6);
    let alloc = usize::from(c.u16(7));
    let mut d = vec![0, 0, 1, 1];
    match format {
        0 => {
            match track {
                0 | 1 => d.extend_from_slice(&track_descriptor(1, address(0, msf))),
                0xAA => {}
                _ => return Err(Sense::invalid_field_in_cdb(6, None)),
            }
            d.extend_from_slice(&track_descriptor(0xAA, address(lu.num_blocks(), msf)));
        }
        1 => d.extend_from_slice(&track_descriptor(1, address(0, msf))),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(3))),
    }
    let len = (d.len() - 2) as u16;
    d[0..2].copy_from_slice(&len.to_be_bytes());
    good(d, alloc)
}

/// A feature descriptor (MMC-5 §5.3): code, version, persistent and current bits, additional data.
fn feature(code: u16, version: u8, persistent: bool, current: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + data.len());
    f.extend_from_slice(&code.to_be_bytes());
    f.push((version << 2) | (u8::from(persistent) << 1) | u8::from(current));
    f.push(data.len() as u8);
    f.extend_from_slice(data);
    f
}

/// GET CONFIGURATION (MMC-5 §6.6): the CD-ROM profile (current while a medium is ready) and the features Profile
/// List, Core (SCSI family interface), Morphing, Removable Medium (tray, eject, lock), Random Readable (2048-byte
/// blocks) and CD Read. RT 00b: every feature from STARTING FEATURE NUMBER on; 01b: the current ones; 10b: that one
/// feature; 11b is invalid.
pub(crate) fn get_configuration(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let rt = c.u8(1) & 0x03;
    let start = c.u16(2);
    let alloc = usize::from(c.u16(7));
    if rt == 3 {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let ready = lu.medium_present();
    let profile = if ready { PROFILE_CD_ROM } else { 0 };
    let mut profiles = PROFILE_CD_ROM.to_be_bytes().to_vec();
    profiles.extend_from_slice(&[u8::from(ready), 0]);
    let mut random = lu.block_size.to_be_bytes().to_vec();
    random.extend_from_slice(&[0, 1, 0, 0]);
    let features: [(u16, bool, Vec<u8>); 6] = [
        (0x0000, true, feature(0x0000, 0, true, true, &profiles)),
        (0x0001, true, feature(0x0001, 1, true, true, &[0, 0, 0, 1, 0, 0, 0, 0])),
        (0x0002, true, feature(0x0002, 1, true, true, &[0, 0, 0, 0])),
        // Loading mechanism 001b (tray), Eject, Lock.
        (0x0003, true, feature(0x0003, 0, true, true, &[0x29, 0, 0, 0])),
        (0x0010, ready, feature(0x0010, 0, false, ready, &random)),
        (0x001E, ready, feature(0x001E, 1, false, ready, &[0, 0, 0, 0])),
    ];
    let mut d = vec![0u8; 8];
    d[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, current, f) in features {
        let wanted = match rt {
            0 => code >= start,
            1 => code >= start && current,
            _ => code == start,
        };
        if wanted {
            d.extend(f);
        }
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    good(d, alloc)
}

/// GET EVENT STATUS NOTIFICATION (MMC-5 §6.7), polled only (IMMED/POLLED = 0 is an invalid field: asynchronous
/// notification is not supported). The media event class is supported: the nexus's last media event (NewMedia,
/// MediaRemoval, reported once) with Media Present and Door or Tray Open. A request without the media class
/// answers "no event available" (NEA).
pub(crate) fn get_event_status(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if !c.bit(1, 0) {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    let request = c.u8(4);
    let alloc = usize::from(c.u16(7));
    const MEDIA: u8 = 1 << 4;
    if request & MEDIA == 0 {
        return good(vec![0, 2, 0x80, MEDIA], alloc);
    }
    let event = std::mem::take(&mut lu.nexus.lock().state(cmd.nexus).media_event);
    let status = (u8::from(lu.medium_loaded()) << 1) | u8::from(lu.tray_open());
    good(vec![0, 6, 0x04, MEDIA, event, status, 0, 0], alloc)
}

/// READ DISC INFORMATION (MMC-5 §6.22), DATA TYPE 000b (standard disc information): a finalized disc with one
/// complete session of one track, not erasable, disc type CD-ROM.
pub(crate) fn read_disc_information(_lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    if c.u8(1) & 0x07 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(2)));
    }
    let mut d = vec![0u8; 34];
    d[0..2].copy_from_slice(&32u16.to_be_bytes());
    d[2] = 0x0E; // last session complete (11b), disc complete (10b)
    d[3] = 1; // first track on disc
    d[4] = 1; // number of sessions
    d[5] = 1; // first track in last session
    d[6] = 1; // last track in last session
    d[8] = 0x00; // disc type: CD-DA or CD-ROM
    d[16..20].copy_from_slice(&u32::MAX.to_be_bytes()); // last session lead-in start: none (finalized)
    d[20..24].copy_from_slice(&u32::MAX.to_be_bytes()); // last possible lead-out start: none
    good(d, usize::from(c.u16(7)))
}

/// The MM Capabilities and Mechanical Status page: reads CD-ROM, no writing or audio, a tray that ejects, with
/// Lock (PREVENT supported) and Lock State (a nexus prevents removal now).
fn capabilities_page(lu: &LogicalUnit, pc: PageControl) -> Vec<u8> {
    let mut p = vec![0u8; 22];
    p[0] = PAGE_CAPABILITIES;
    p[1] = 0x14;
    if pc == PageControl::Changeable {
        return p;
    }
    let locked = lu.nexus.lock().any_prevent();
    p[6] = 0x20 | 0x08 | 0x01 | (u8::from(locked) << 1);
    p
}

/// MODE SENSE (6)/(10) of a CD-ROM: no block descriptor (MMC), the capabilities page (2Ah, also for all pages,
/// 3Fh); other pages are invalid fields. Saved values are not supported (05/39/00).
pub(crate) fn mode_sense(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let ten = c.u8(0) == opcode::MODE_SENSE_10;
    let pc = PageControl::from_cdb(c.u8(2) >> 6)?;
    let code = c.u8(2) & 0x3F;
    let subpage = c.u8(3);
    if subpage != 0x00 && subpage != 0xFF {
        return Err(Sense::invalid_field_in_cdb(3, None));
    }
    if code != PAGE_CAPABILITIES && code != crate::mode::PAGE_ALL {
        return Err(Sense::invalid_field_in_cdb(2, Some(5)));
    }
    let page = capabilities_page(lu, pc);
    let mut d = Vec::with_capacity(8 + page.len());
    if ten {
        d.extend_from_slice(&((6 + page.len()) as u16).to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    } else {
        d.extend_from_slice(&[(3 + page.len()) as u8, 0, 0, 0]);
    }
    d.extend(page);
    let alloc = if ten { usize::from(c.u16(7)) } else { usize::from(c.u8(4)) };
    good(d, alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msf_addresses_count_the_pregap() {
        assert_eq!(address(0, true), [0, 0, 2, 0]);
        assert_eq!(address(0, false), [0, 0, 0, 0]);
        // 1 minute 2 seconds 3 frames: (62 * 75 + 3) - 150 = 4503.
        assert_eq!(address(4503, true), [0, 1, 2, 3]);
        assert_eq!(address(4503, false), [0, 0, 0x11, 0x97]);
    }
}
