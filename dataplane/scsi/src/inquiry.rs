//! INQUIRY data (SPC-4 §6.6.2) and the vital product data pages (SPC-4 §7.8, SBC-3 §6.5), built once per
//! logical unit: they only depend on the configuration.

use crate::lu::LuConfig;

/// Longest unit serial number kept (VPD page 80h).
pub(crate) const MAX_SERIAL_LEN: usize = 250;
/// Longest T10 vendor specific identifier kept: the designator length is one byte, 8 of which are the vendor.
pub(crate) const MAX_DEVICE_ID_LEN: usize = 255 - 8;

/// VPD pages served by a disk, in ascending order (the Supported VPD Pages page lists them).
pub(crate) const SUPPORTED_VPD: [u8; 7] = [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];
/// VPD pages served by a CD-ROM (no block device pages, no copy manager).
const SUPPORTED_VPD_CDROM: [u8; 3] = [0x00, 0x80, 0x83];

/// Bytes a COMPARE AND WRITE, WRITE ATOMIC or ORWRITE may cover: what the range lock holds exclusively at once.
const MAX_ATOMIC_BYTES: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: what fits in the largest UNMAP parameter list (65535 bytes, 8-byte header,
/// 16-byte descriptors).
pub(crate) const MAX_UNMAP_DESCRIPTORS: u32 = (65535 - 8) / 16;
/// The granule (bytes) that deallocation, atomic writes and transfers are best aligned to: a memory page and the
/// block of the usual file systems.
const GRANULE: u32 = 4096;

/// The limits a logical unit advertises in the Block Limits VPD page and enforces (SBC-3 §6.6.3, SBC-4 §6.6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// MAXIMUM TRANSFER LENGTH (0 = none).
    pub(crate) max_transfer: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH (one byte in the page).
    pub(crate) max_compare_and_write: u8,
    /// MAXIMUM ATOMIC TRANSFER LENGTH (WRITE ATOMIC and ORWRITE).
    pub(crate) max_atomic: u32,
    /// ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY, in logical blocks.
    pub(crate) atomic_granule: u32,
    /// OPTIMAL UNMAP GRANULARITY, in logical blocks (thin provisioning only).
    pub(crate) unmap_granule: u32,
    /// Logical blocks per physical block: OPTIMAL TRANSFER LENGTH GRANULARITY when above 1.
    pub(crate) per_physical: u32,
}

impl Limits {
    pub(crate) fn new(cfg: &LuConfig) -> Self {
        let bs = cfg.block_size.max(1);
        let cap = |blocks: u32| if cfg.max_transfer_blocks == 0 { blocks } else { blocks.min(cfg.max_transfer_blocks) };
        let atomic = cap((MAX_ATOMIC_BYTES / bs).max(1));
        let per_physical = 1u32 << cfg.lbppb_exponent().unwrap_or(0);
        Self {
            max_transfer: cfg.max_transfer_blocks,
            max_compare_and_write: u8::try_from(atomic.min(255)).unwrap_or(255),
            max_atomic: atomic,
            atomic_granule: (GRANULE / bs).max(1),
            unmap_granule: (GRANULE / bs).max(per_physical),
            per_physical,
        }
    }
}

/// Version descriptors (SPC-4 table 148): SAM-5, iSCSI (no version claimed), SPC-4, SBC-3 (no version claimed).
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];
/// A CD-ROM's: SAM-5, iSCSI, SPC-4, MMC-5 (no version claimed).
const VERSION_DESCRIPTORS_CDROM: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x02A0];

/// Peripheral qualifier 000b and the peripheral device type: 00h (direct access block device) or 05h (CD/DVD).
fn peripheral(cfg: &LuConfig) -> u8 {
    match cfg.device_type {
        crate::DeviceType::Disk => 0x00,
        crate::DeviceType::Cdrom => 0x05,
    }
}

/// The configuration's strings made safe for the wire: printable ASCII only (others become `_`).
fn ascii(s: &str, max: usize) -> Vec<u8> {
    s.bytes().take(max).map(|b| if (0x20..=0x7E).contains(&b) { b } else { b'_' }).collect()
}

/// A fixed-width, left-aligned, space-padded ASCII field (SPC-4 §4.4.1).
fn padded(s: &str, width: usize) -> Vec<u8> {
    let mut v = ascii(s, width);
    v.resize(width, b' ');
    v
}

/// A VPD page: header (peripheral byte, page code, 2-byte page length) and payload.
fn vpd(cfg: &LuConfig, page: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.push(peripheral(cfg));
    v.push(page);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A designation descriptor (SPC-4 §7.8.6.1): protocol identifier 0, PIV 0.
fn designator(code_set: u8, association: u8, kind: u8, id: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + id.len());
    v.push(code_set & 0x0F);
    v.push(((association & 0x03) << 4) | (kind & 0x0F));
    v.push(0);
    v.push(id.len() as u8);
    v.extend_from_slice(id);
    v
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pages {
    pub(crate) standard: Vec<u8>,
    supported: Vec<u8>,
    serial: Vec<u8>,
    device_id: Vec<u8>,
    block_limits: Vec<u8>,
    characteristics: Vec<u8>,
    provisioning: Vec<u8>,
    third_party_copy: Vec<u8>,
    /// The pages `vpd` serves.
    list: &'static [u8],
    pub(crate) limits: Limits,
}

impl Pages {
    pub(crate) fn new(cfg: &LuConfig) -> Self {
        let limits = Limits::new(cfg);
        let list: &'static [u8] = match cfg.device_type {
            crate::DeviceType::Disk => &SUPPORTED_VPD,
            crate::DeviceType::Cdrom => &SUPPORTED_VPD_CDROM,
        };
        Self {
            standard: standard(cfg),
            supported: vpd(cfg, 0x00, list),
            serial: serial(cfg),
            device_id: device_identification(cfg),
            block_limits: block_limits(cfg, &limits),
            characteristics: characteristics(cfg),
            provisioning: provisioning(cfg),
            third_party_copy: vpd(cfg, 0x8F, &crate::xcopy::third_party_copy_vpd_payload()),
            list,
            limits,
        }
    }

    /// The VPD page `page`, or `None` when it is not supported.
    pub(crate) fn vpd(&self, page: u8) -> Option<&[u8]> {
        if !self.list.contains(&page) {
            return None;
        }
        Some(match page {
            0x00 => &self.supported,
            0x80 => &self.serial,
            0x83 => &self.device_id,
            0x8F => &self.third_party_copy,
            0xB0 => &self.block_limits,
            0xB1 => &self.characteristics,
            0xB2 => &self.provisioning,
            _ => return None,
        })
    }
}

/// Standard INQUIRY data, 96 bytes (SPC-4 §6.6.2).
fn standard(cfg: &LuConfig) -> Vec<u8> {
    let cdrom = cfg.device_type == crate::DeviceType::Cdrom;
    let mut d = vec![0u8; 96];
    d[0] = peripheral(cfg);
    d[1] = if cfg.removable || cdrom { 0x80 } else { 0 }; // RMB
    d[2] = 0x06; // VERSION: SPC-4
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = (d.len() - 5) as u8; // ADDITIONAL LENGTH
    if !cdrom {
        d[5] = 0x08; // 3PC: EXTENDED COPY is supported
    }
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(&padded(&cfg.vendor, 8));
    d[16..32].copy_from_slice(&padded(&cfg.product, 16));
    d[32..36].copy_from_slice(&padded(&cfg.revision, 4));
    let versions = if cdrom { &VERSION_DESCRIPTORS_CDROM } else { &VERSION_DESCRIPTORS };
    for (i, v) in versions.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// Unit Serial Number VPD page (SPC-4 §7.8.15). An empty serial number is reported as ASCII spaces, as the
/// standard asks when no serial number is available.
fn serial(cfg: &LuConfig) -> Vec<u8> {
    let mut s = ascii(&cfg.serial, MAX_SERIAL_LEN);
    if s.is_empty() {
        s = vec![b' '; 8];
    }
    vpd(cfg, 0x80, &s)
}

/// Device Identification VPD page (SPC-4 §7.8.6): the NAA designator (binary, associated with the logical unit)
/// when `naa_id` is set, and a T10 vendor ID based designator (ASCII): T10 VENDOR IDENTIFICATION followed by the
/// device id (or, when that is empty, the serial number, or else the product identification).
fn device_identification(cfg: &LuConfig) -> Vec<u8> {
    let mut payload = Vec::new();
    if cfg.naa_id != 0 {
        payload.extend(designator(0x1, 0, 0x3, &cfg.naa_id.to_be_bytes()));
    }
    let mut t10 = padded(&cfg.vendor, 8);
    let specific = if !cfg.device_id.is_empty() {
        ascii(&cfg.device_id, MAX_DEVICE_ID_LEN)
    } else if !cfg.serial.is_empty() {
        ascii(&cfg.serial, MAX_DEVICE_ID_LEN)
    } else {
        padded(&cfg.product, 16)
    };
    t10.extend(specific);
    payload.extend(designator(0x2, 0, 0x1, &t10));
    vpd(cfg, 0x83, &payload)
}

/// Block Limits VPD page (SBC-3 §6.6.3 with the SBC-4 atomic fields), page length 3Ch. WSNZ = 0 (a WRITE SAME of
/// zero blocks reaches the end of the medium) and MAXIMUM WRITE SAME LENGTH 0 (no limit). The UNMAP fields are
/// zero on a fully provisioned logical unit, which has no UNMAP (SBC-3 requires that). With more than one logical
/// block per physical block, OPTIMAL TRANSFER LENGTH GRANULARITY is the physical block (transfers of other
/// multiples may need read-modify-write), and OPTIMAL UNMAP GRANULARITY is at least one physical block.
fn block_limits(cfg: &LuConfig, l: &Limits) -> Vec<u8> {
    let mut p = vec![0u8; 0x3C];
    // Offsets below are page offsets minus the 4-byte header.
    let mut put = |at: usize, v: &[u8]| p[at - 4..at - 4 + v.len()].copy_from_slice(v);
    put(5, &[l.max_compare_and_write]); // MAXIMUM COMPARE AND WRITE LENGTH
    if l.per_physical > 1 {
        put(6, &u16::try_from(l.per_physical).unwrap_or(u16::MAX).to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    }
    put(8, &l.max_transfer.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    if cfg.thin_provisioned {
        put(20, &u32::MAX.to_be_bytes()); // MAXIMUM UNMAP LBA COUNT: no limit
        put(24, &MAX_UNMAP_DESCRIPTORS.to_be_bytes()); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
        put(28, &l.unmap_granule.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    }
    put(44, &l.max_atomic.to_be_bytes()); // MAXIMUM ATOMIC TRANSFER LENGTH
    put(48, &l.atomic_granule.to_be_bytes()); // ATOMIC ALIGNMENT
    put(52, &l.atomic_granule.to_be_bytes()); // ATOMIC TRANSFER LENGTH GRANULARITY
    vpd(cfg, 0xB0, &p)
}

/// Logical Block Provisioning VPD page (SBC-3 §6.6.4), page length 4. Thin provisioned: LBPU (UNMAP), LBPWS and
/// LBPWS10 (WRITE SAME (16)/(10) with the UNMAP bit), LBPRZ (deallocated blocks read as zeros), PROVISIONING TYPE
/// 010b (thin); no anchored state (ANC_SUP = 0), no provisioning group descriptor. Fully provisioned: all zero.
fn provisioning(cfg: &LuConfig) -> Vec<u8> {
    let mut p = [0u8; 4];
    if cfg.thin_provisioned {
        p[1] = 0x80 | 0x40 | 0x20 | 0x04;
        p[2] = 0x02;
    }
    vpd(cfg, 0xB2, &p)
}

/// Block Device Characteristics VPD page (SBC-3 §6.5.2), page length 3Ch: MEDIUM ROTATION RATE 1 for a
/// non-rotating medium, 0 (not reported) otherwise; WABEREQ when SANITIZE BLOCK ERASE is supported.
fn characteristics(cfg: &LuConfig) -> Vec<u8> {
    let mut p = vec![0u8; 0x3C];
    if !cfg.rotational {
        p[0..2].copy_from_slice(&1u16.to_be_bytes());
    }
    if cfg.thin_provisioned {
        // WABEREQ 01b (SBC-4 §6.6.2): after SANITIZE BLOCK ERASE, reads succeed (deallocated blocks read as zeros).
        p[7 - 4] = 0x40;
    }
    vpd(cfg, 0xB1, &p)
}
