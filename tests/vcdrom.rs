//! The vcdrom device type on the real binary: an ISO9660 image made here served as a read-only MMC CD-ROM (libiscsi's
//! iscsi-inq and iscsi-ls see a removable MMC device; tests/tools/iscsi-mmc.c sends READ TOC, GET CONFIGURATION,
//! GET EVENT STATUS NOTIFICATION, READ DISC INFORMATION, MODE SENSE and reads the image back), and media changes
//! through the management plane (`polltgt set devices/cd/filename`): NOT READY, MEDIUM NOT PRESENT without a
//! medium, 06/28/00 after a new one, refused while an initiator prevents medium removal.

mod common;

use common::mgmt::Session;
use common::{c_tool, run_ok, Target, IQN};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A minimal ISO9660 image of `sectors` 2048-byte sectors: an empty system area, the Primary Volume Descriptor
/// (sector 16: type 1, "CD001", version 1, the volume identifier, the volume space size and the logical block size)
/// and the Volume Descriptor Set Terminator (sector 17); every later sector is filled with its LBA XOR `seed`.
fn iso(dir: &Path, name: &str, volume: &str, sectors: u32, seed: u8) -> PathBuf {
    let mut img = vec![0u8; sectors as usize * 2048];
    let pvd = &mut img[16 * 2048..17 * 2048];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..40].fill(b' ');
    pvd[40..72].fill(b' ');
    pvd[40..40 + volume.len()].copy_from_slice(volume.as_bytes());
    // Both-endian fields (ISO 9660 §7.2.3, §7.3.3).
    pvd[80..84].copy_from_slice(&sectors.to_le_bytes());
    pvd[84..88].copy_from_slice(&sectors.to_be_bytes());
    pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
    pvd[130..132].copy_from_slice(&2048u16.to_be_bytes());
    let term = &mut img[17 * 2048..18 * 2048];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    for lba in 18..sectors as usize {
        img[lba * 2048..(lba + 1) * 2048].fill(lba as u8 ^ seed);
    }
    let path = dir.join(name);
    std::fs::write(&path, img).expect("write image");
    path
}

fn target(filename: Option<&Path>) -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = filename.map(|f| format!(", filename: {}", f.display())).unwrap_or_default();
    let yaml = format!(
        "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - {{ name: cd, handler: vcdrom{file} }}\n\
         targets:\n  - name: {IQN}\n    luns:\n      - {{ lun: 0, device: cd }}\n"
    );
    Target::start_with_yaml(dir, &yaml)
}

fn mmc(t: &Target) -> Session {
    let mut s = Session::start_tool(&c_tool("iscsi-mmc"), &[&t.url(0)]);
    assert_eq!(s.next_line(), "READY");
    s
}

/// READ TOC's MSF address of `lba` as the tool prints it.
fn msf(lba: u32) -> String {
    let f = lba + 150;
    format!("{:08x}", u32::from_be_bytes([0, (f / 4500) as u8, (f / 75 % 60) as u8, (f % 75) as u8]))
}

#[test]
fn an_iso_image_is_a_cdrom() {
    let images = tempfile::tempdir().expect("tempdir");
    let a = iso(images.path(), "a.iso", "POLLTGT_A", 64, 0xA0);
    let t = target(Some(&a));
    let inq = run_ok("iscsi-inq", &[&t.url(0)], LIMIT);
    assert!(inq.contains("Peripheral Device Type:MMC") && inq.contains("Removable:1"), "{inq}");
    let ls = run_ok("iscsi-ls", &["-s", &format!("iscsi://{}", t.addr)], LIMIT);
    assert!(ls.contains("Lun:0    Type:MMC"), "{ls}");
    let mut s = mmc(&t);
    assert_eq!(s.cmd("tur"), "GOOD");
    assert_eq!(s.cmd("capacity"), "CAP 63 2048");
    assert_eq!(s.cmd("toc 0"), "TOC 1 1 1:00000000 aa:00000040");
    assert_eq!(s.cmd("toc 1"), format!("TOC 1 1 1:{} aa:{}", msf(0), msf(64)));
    assert_eq!(s.cmd("config 0 0"), "CONFIG 0008 0000* 0001* 0002* 0003* 0010* 001e*");
    assert_eq!(s.cmd("config 2 16"), "CONFIG 0008 0010*");
    assert_eq!(s.cmd("event"), "EVENT 0 2");
    assert_eq!(s.cmd("discinfo"), "DISC 0e 1 1 1");
    assert_eq!(s.cmd("caps"), "CAPS 29");
    // The image read back: its Primary Volume Descriptor and a data sector.
    assert_eq!(s.cmd("read 16"), "DATA 01 43 44 30 30 31 01 00");
    assert_eq!(s.cmd("read 40"), format!("DATA{}", format!(" {:02x}", 40 ^ 0xA0).repeat(8)));
    assert_eq!(s.cmd("read 64"), "CHECK 05 21 00");
}

#[test]
fn media_change_unit_attentions_and_prevent() {
    let images = tempfile::tempdir().expect("tempdir");
    let a = iso(images.path(), "a.iso", "POLLTGT_A", 64, 0xA0);
    let b = iso(images.path(), "b.iso", "POLLTGT_B", 128, 0xB0);
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let t = target(None);
    let mut s = mmc(&t);
    // An empty drive: NOT READY, MEDIUM NOT PRESENT; no current profile or medium features.
    assert_eq!(s.cmd("tur"), "CHECK 02 3a 00");
    assert_eq!(s.cmd("config 1 0"), "CONFIG 0000 0000* 0001* 0002* 0003*");
    assert_eq!(s.cmd("event"), "EVENT 0 0");
    // A medium arrives: NOT READY TO READY CHANGE, then ready, with a NewMedia event.
    t.cli_ok(&["set", "devices/cd/filename", a]);
    assert_eq!(s.cmd("tur"), "CHECK 06 28 00");
    assert_eq!(s.cmd("tur"), "GOOD");
    assert_eq!(s.cmd("event"), "EVENT 2 2");
    assert_eq!(s.cmd("capacity"), "CAP 63 2048");
    assert_eq!(s.cmd("read 20"), format!("DATA{}", format!(" {:02x}", 20 ^ 0xA0).repeat(8)));
    // PREVENT: neither the management plane nor START STOP UNIT takes the medium away.
    assert_eq!(s.cmd("prevent"), "GOOD");
    assert_eq!(s.cmd("caps"), "CAPS 2b");
    for value in [b, ""] {
        let out = t.cli(&["set", "devices/cd/filename", value]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("prevents medium removal"), "{err}");
    }
    assert_eq!(s.cmd("eject"), "CHECK 05 53 02");
    assert_eq!(s.cmd("read 20"), format!("DATA{}", format!(" {:02x}", 20 ^ 0xA0).repeat(8)));
    let shown = t.cli_ok(&["show", "devices/cd"]);
    assert!(shown.contains(a), "the configuration keeps the medium:\n{shown}");
    // ALLOW: the other image replaces it.
    assert_eq!(s.cmd("allow"), "GOOD");
    t.cli_ok(&["set", "devices/cd/filename", b]);
    assert_eq!(s.cmd("tur"), "CHECK 06 28 00");
    assert_eq!(s.cmd("capacity"), "CAP 127 2048");
    assert_eq!(s.cmd("read 100"), format!("DATA{}", format!(" {:02x}", 100 ^ 0xB0).repeat(8)));
    // The initiator opens and closes the tray.
    assert_eq!(s.cmd("eject"), "GOOD");
    assert_eq!(s.cmd("tur"), "CHECK 02 3a 00");
    assert_eq!(s.cmd("event"), "EVENT 3 3");
    assert_eq!(s.cmd("load"), "GOOD");
    assert_eq!(s.cmd("tur"), "GOOD");
    // Ejected from the management plane: an empty drive again.
    t.cli_ok(&["set", "devices/cd/filename", ""]);
    assert_eq!(s.cmd("tur"), "CHECK 02 3a 00");
    assert_eq!(s.cmd("event"), "EVENT 3 0");
    let shown = t.cli_ok(&["show", "devices/cd"]);
    assert!(!shown.contains(b), "{shown}");
    // A path that does not exist changes nothing.
    let missing = images.path().join("missing.iso");
    assert!(!t.cli(&["set", "devices/cd/filename", missing.to_str().expect("utf-8")]).status.success());
    assert_eq!(s.cmd("tur"), "CHECK 02 3a 00");
}
