//! CD-ROM logical unit tests (MMC-5): CDB bytes in, exact responses out; medium changes, the tray and PREVENT.

use super::*;

const N1: NexusId = NexusId(1);
const N2: NexusId = NexusId(2);

fn cdrom(blocks: u64) -> LogicalUnit {
    let lu = LogicalUnit::new(LuConfig {
        block_size: 2048,
        num_blocks: blocks,
        device_type: DeviceType::Cdrom,
        medium: blocks > 0,
        naa_id: 0x6001_4050_0000_00CD,
        ..LuConfig::default()
    });
    for n in [N1, N2] {
        let r = exec_on(&lu, n, &[0x03, 0, 0, 0, 18, 0]);
        assert_eq!(r.status, Status::Good, "REQUEST SENSE clears POWER ON");
    }
    lu
}

fn exec_on(lu: &LogicalUnit, nexus: NexusId, cdb: &[u8]) -> Response {
    match lu.execute(&Command { nexus, lun: 0, cdb, expected_len: 0, data_out: None }) {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn exec(lu: &LogicalUnit, cdb: &[u8]) -> Response {
    exec_on(lu, N1, cdb)
}

fn good(r: Response) -> Vec<u8> {
    assert_eq!(r.status, Status::Good, "{r:?}");
    r.data
}

fn check(r: Response, sense: Sense) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(r.sense.as_deref(), Some(&sense.to_fixed()[..]), "expected {sense:?}");
}

fn cdb10(op: u8, b1: u8, b2: u8, b6: u8, alloc: u16) -> [u8; 10] {
    let a = alloc.to_be_bytes();
    [op, b1, b2, 0, 0, 0, b6, a[0], a[1], 0]
}

const TUR: [u8; 6] = [0; 6];

#[test]
fn inquiry_reports_a_removable_cdrom() {
    let lu = cdrom(100);
    let d = good(exec(&lu, &[0x12, 0, 0, 0, 96, 0]));
    assert_eq!(&d[..3], &[0x05, 0x80, 0x06]);
    assert_eq!(d[5] & 0x08, 0, "no EXTENDED COPY");
    assert_eq!(&d[58..66], &[0x00, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x02, 0xA0]);
    assert_eq!(good(exec(&lu, &[0x12, 1, 0, 0, 255, 0])), [0x05, 0x00, 0, 3, 0x00, 0x80, 0x83]);
    check(exec(&lu, &[0x12, 1, 0xB0, 0, 255, 0]), Sense::invalid_field_in_cdb(2, None));
    // Writing is not a CD-ROM command.
    check(exec(&lu, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Sense::invalid_opcode());
}

#[test]
fn capacity_reads_and_no_medium() {
    let lu = cdrom(100);
    assert_eq!(good(exec(&lu, &TUR)), Vec::<u8>::new());
    assert_eq!(good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0, 0, 0, 99, 0, 0, 0x08, 0]);
    let read10 = [0x28, 0, 0, 0, 0, 10, 0, 0, 2, 0];
    let a = lu.execute(&Command { nexus: N1, lun: 0, cdb: &read10, expected_len: 4096, data_out: None });
    assert_eq!(a, Action::Read { offset: 10 * 2048, len: 4096, fua: false });
    let read12 = [0xA8, 0, 0, 0, 0, 99, 0, 0, 0, 2, 0, 0];
    check(exec(&lu, &read12), Sense::lba_out_of_range());
    let empty = cdrom(0);
    check(exec(&empty, &TUR), Sense::medium_not_present());
    check(exec(&empty, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Sense::medium_not_present());
    check(exec(&empty, &cdb10(0x43, 0, 0, 0, 100)), Sense::medium_not_present());
    check(exec(&empty, &cdb10(0x51, 0, 0, 0, 100)), Sense::medium_not_present());
    assert_eq!(good(exec(&empty, &[0x03, 0, 0, 0, 18, 0])), Sense::medium_not_present().to_fixed());
}

#[test]
fn read_toc_formats_and_addresses() {
    let lu = cdrom(4503);
    let lead_out = [0, 0x14, 0xAA, 0, 0, 0, 0x11, 0x97];
    let track1 = [0, 0x14, 1, 0, 0, 0, 0, 0];
    let mut expect = vec![0, 18, 1, 1];
    expect.extend_from_slice(&track1);
    expect.extend_from_slice(&lead_out);
    assert_eq!(good(exec(&lu, &cdb10(0x43, 0, 0, 0, 100))), expect);
    assert_eq!(good(exec(&lu, &cdb10(0x43, 0, 0, 1, 100))), expect);
    assert_eq!(good(exec(&lu, &cdb10(0x43, 0, 0, 0, 12))), expect[..12]);
    assert_eq!(good(exec(&lu, &cdb10(0x43, 0, 0, 0xAA, 100))), [&[0, 10, 1, 1][..], &lead_out].concat());
    // MSF: track 1 at 00:02:00, the lead-out at 01:02:03.
    let msf = good(exec(&lu, &cdb10(0x43, 0x02, 0, 0, 100)));
    assert_eq!(&msf[8..12], &[0, 0, 2, 0]);
    assert_eq!(&msf[16..20], &[0, 1, 2, 3]);
    check(exec(&lu, &cdb10(0x43, 0, 0, 2, 100)), Sense::invalid_field_in_cdb(6, None));
    // Session information: one session, its first track at LBA 0.
    assert_eq!(good(exec(&lu, &cdb10(0x43, 0, 1, 0, 100))), [&[0, 10, 1, 1][..], &track1].concat());
    check(exec(&lu, &cdb10(0x43, 0, 2, 0, 100)), Sense::invalid_field_in_cdb(2, Some(3)));
}

/// Feature codes of GET CONFIGURATION data, with their current bits.
fn features(d: &[u8]) -> Vec<(u16, bool)> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 4 <= d.len() {
        out.push((u16::from_be_bytes([d[at], d[at + 1]]), d[at + 2] & 1 == 1));
        at += 4 + usize::from(d[at + 3]);
    }
    out
}

#[test]
fn get_configuration_profiles_and_features() {
    let lu = cdrom(100);
    let d = good(exec(&lu, &cdb10(0x46, 0, 0, 0, 1024)));
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize, d.len() - 4);
    assert_eq!(&d[6..8], &[0x00, 0x08], "current profile CD-ROM");
    let all = [(0x0000, true), (0x0001, true), (0x0002, true), (0x0003, true), (0x0010, true), (0x001E, true)];
    assert_eq!(features(&d), all);
    // The profile list: CD-ROM, current.
    assert_eq!(&d[8..16], &[0, 0, 0x03, 4, 0x00, 0x08, 0x01, 0]);
    // Random Readable: 2048-byte blocks.
    let rt2 = good(exec(&lu, &[0x46, 0x02, 0x00, 0x10, 0, 0, 0, 0x04, 0x00, 0]));
    assert_eq!(&rt2[8..20], &[0, 0x10, 0x01, 8, 0, 0, 0x08, 0, 0, 1, 0, 0]);
    // Without a medium: no current profile, the medium features are not current; RT 01b leaves them out.
    let empty = cdrom(0);
    let d = good(exec(&empty, &cdb10(0x46, 0, 0, 0, 1024)));
    assert_eq!(&d[6..8], &[0, 0]);
    assert_eq!(features(&d)[4..], [(0x0010, false), (0x001E, false)]);
    let d = good(exec(&empty, &cdb10(0x46, 1, 0, 0, 1024)));
    assert_eq!(features(&d).len(), 4);
    check(exec(&lu, &cdb10(0x46, 3, 0, 0, 1024)), Sense::invalid_field_in_cdb(1, Some(1)));
    assert_eq!(good(exec(&lu, &cdb10(0x46, 0, 0, 0, 8))).len(), 8);
}

#[test]
fn disc_information_and_capabilities_page() {
    let lu = cdrom(100);
    let d = good(exec(&lu, &cdb10(0x51, 0, 0, 0, 100)));
    assert_eq!(d.len(), 34);
    assert_eq!(&d[..9], &[0, 32, 0x0E, 1, 1, 1, 1, 0, 0]);
    check(exec(&lu, &cdb10(0x51, 1, 0, 0, 100)), Sense::invalid_field_in_cdb(1, Some(2)));
    // MODE SENSE(10) of page 2Ah: no block descriptor; tray, eject, lock.
    let d = good(exec(&lu, &cdb10(0x5A, 0, 0x2A, 0, 255)));
    assert_eq!(&d[..8], &[0, 28, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&d[8..10], &[0x2A, 0x14]);
    assert_eq!(d[8 + 6], 0x29);
    assert_eq!(good(exec(&lu, &[0x1A, 0, 0x3F, 0, 255, 0])), [&[25u8, 0, 0, 0][..], &d[8..]].concat());
    check(exec(&lu, &cdb10(0x5A, 0, 0x08, 0, 255)), Sense::invalid_field_in_cdb(2, Some(5)));
    // Lock State follows PREVENT.
    good(exec(&lu, &[0x1E, 0, 0, 0, 1, 0]));
    assert_eq!(good(exec(&lu, &cdb10(0x5A, 0, 0x2A, 0, 255)))[8 + 6], 0x2B);
}

/// GET EVENT STATUS NOTIFICATION, media class: (event, media status).
fn media_event(lu: &LogicalUnit, nexus: NexusId) -> (u8, u8) {
    let d = good(exec_on(lu, nexus, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0]));
    assert_eq!(&d[..4], &[0, 6, 0x04, 0x10]);
    (d[4], d[5])
}

#[test]
fn media_changes_unit_attentions_and_events() {
    let lu = cdrom(100);
    assert_eq!(media_event(&lu, N1), (0, 0x02));
    check(exec(&lu, &[0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8, 0]), Sense::invalid_field_in_cdb(1, Some(0)));
    assert_eq!(good(exec(&lu, &[0x4A, 1, 0, 0, 0x02, 0, 0, 0, 8, 0])), [0, 2, 0x80, 0x10], "no media class asked");
    // PREVENT from N2: the management plane cannot change the medium, START STOP UNIT cannot eject it.
    good(exec_on(&lu, N2, &[0x1E, 0, 0, 0, 1, 0]));
    assert_eq!(lu.change_medium(|| Ok::<u64, ()>(50)), Err(MediumChangeError::Prevented));
    assert_eq!(lu.num_blocks(), 100, "nothing changed");
    check(exec(&lu, &[0x1B, 0, 0, 0, 0x02, 0]), Sense::medium_removal_prevented());
    good(exec_on(&lu, N2, &[0x1E, 0, 0, 0, 0, 0]));
    // A failed load changes nothing either.
    assert_eq!(lu.change_medium(|| Err::<u64, &str>("no such file")), Err(MediumChangeError::Load("no such file")));
    assert!(lu.medium_present());
    // Eject: NOT READY, MEDIUM NOT PRESENT; no unit attention; MediaRemoval once per nexus.
    assert_eq!(lu.change_medium(|| Ok::<u64, ()>(0)), Ok(0));
    check(exec(&lu, &TUR), Sense::medium_not_present());
    assert_eq!(media_event(&lu, N1), (0x03, 0x00));
    assert_eq!(media_event(&lu, N1), (0x00, 0x00));
    // Load another medium: 06/28/00 for every nexus, then ready with its capacity.
    assert_eq!(lu.change_medium(|| Ok::<u64, ()>(50)), Ok(50));
    for n in [N1, N2] {
        check(exec_on(&lu, n, &TUR), Sense::medium_may_have_changed());
        assert_eq!(good(exec_on(&lu, n, &TUR)), Vec::<u8>::new());
    }
    assert_eq!(good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]))[..4], [0, 0, 0, 49]);
    assert_eq!(media_event(&lu, N2), (0x02, 0x02));
    // A disk has no removable medium.
    let disk = LogicalUnit::new(LuConfig { num_blocks: 8, ..LuConfig::default() });
    assert_eq!(disk.change_medium(|| Ok::<u64, ()>(8)), Err(MediumChangeError::NotRemovable));
}

#[test]
fn start_stop_unit_opens_and_closes_the_tray() {
    let lu = cdrom(100);
    good(exec(&lu, &[0x1B, 0, 0, 0, 0x02, 0]));
    check(exec(&lu, &TUR), Sense::medium_not_present());
    assert_eq!(media_event(&lu, N2), (0x03, 0x03), "removed, tray open, disc still in it");
    good(exec(&lu, &[0x1B, 0, 0, 0, 0x03, 0]));
    assert_eq!(good(exec(&lu, &TUR)), Vec::<u8>::new());
    check(exec_on(&lu, N2, &TUR), Sense::medium_may_have_changed());
    // Closing the tray of an empty drive leaves it not ready.
    let empty = cdrom(0);
    good(exec(&empty, &[0x1B, 0, 0, 0, 0x03, 0]));
    check(exec(&empty, &TUR), Sense::medium_not_present());
}

#[test]
fn random_cdbs_never_panic() {
    let mut state = 0xC0_DEC0_FFEE_D00Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for blocks in [0, 1, 4503] {
        let lu = cdrom(blocks);
        for op in [0x00u8, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x43, 0x46, 0x4A, 0x51, 0x5A, 0xA3, 0xA8] {
            for _ in 0..300 {
                let mut c = [0u8; 16];
                c.iter_mut().for_each(|b| *b = next() as u8);
                c[0] = op;
                if next() % 2 == 0 {
                    c.iter_mut().skip(5).for_each(|b| *b &= !0x04);
                }
                let nexus = NexusId(next() % 3);
                let _ = lu.execute(&Command { nexus, lun: 0, cdb: &c, expected_len: 512, data_out: None });
            }
        }
    }
}
