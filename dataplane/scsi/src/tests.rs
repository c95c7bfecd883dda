//! Logical unit tests: CDB bytes in, exact [`Action`] or exact response bytes (status, sense, data) out.

use super::*;

const N1: NexusId = NexusId(1);
const N2: NexusId = NexusId(2);
const NAA: u64 = 0x6001_4050_0000_0001;

fn cfg() -> LuConfig {
    LuConfig {
        num_blocks: 1000,
        serial: "SN0001".into(),
        device_id: "disk0".into(),
        naa_id: NAA,
        ..LuConfig::default()
    }
}

fn cmd(nexus: NexusId, cdb: &[u8]) -> Command<'_> {
    Command { nexus, lun: 0, cdb, expected_len: 0, data_out: None }
}

fn exec_on(lu: &LogicalUnit, nexus: NexusId, cdb: &[u8]) -> Action {
    lu.execute(&cmd(nexus, cdb))
}

fn exec(lu: &LogicalUnit, cdb: &[u8]) -> Action {
    exec_on(lu, N1, cdb)
}

fn respond(a: Action) -> Response {
    match a {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// A logical unit whose POWER ON unit attention for `N1` has been delivered.
fn ready(cfg: LuConfig) -> LogicalUnit {
    let lu = LogicalUnit::new(cfg);
    assert_check(exec(&lu, &TUR), Sense::power_on_reset());
    assert_good(exec(&lu, &TUR));
    lu
}

fn assert_check(a: Action, sense: Sense) {
    let r = respond(a);
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(r.sense.as_deref(), Some(&sense.to_fixed()[..]), "expected {sense:?}");
    assert!(r.data.is_empty());
}

fn assert_good(a: Action) -> Vec<u8> {
    let r = respond(a);
    assert_eq!(r.status, Status::Good, "{r:?}");
    assert_eq!(r.sense, None);
    r.data
}

const TUR: [u8; 6] = [0x00, 0, 0, 0, 0, 0];

fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [0x12, u8::from(evpd), page, a[0], a[1], 0]
}

fn rw10(op: u8, flags: u8, lba: u32, n: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let t = n.to_be_bytes();
    [op, flags, l[0], l[1], l[2], l[3], 0, t[0], t[1], 0]
}

fn rw12(op: u8, flags: u8, lba: u32, n: u32) -> [u8; 12] {
    let l = lba.to_be_bytes();
    let t = n.to_be_bytes();
    [op, flags, l[0], l[1], l[2], l[3], t[0], t[1], t[2], t[3], 0, 0]
}

fn rw16(op: u8, flags: u8, lba: u64, n: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

fn rw6(op: u8, lba: u32, n: u8) -> [u8; 6] {
    let l = lba.to_be_bytes();
    [op, l[1] & 0x1F, l[2], l[3], n, 0]
}

fn mode_sense6(dbd: bool, pc: u8, page: u8, subpage: u8, alloc: u8) -> [u8; 6] {
    [0x1A, if dbd { 0x08 } else { 0 }, (pc << 6) | page, subpage, alloc, 0]
}

fn mode_sense10(llbaa: bool, dbd: bool, pc: u8, page: u8, alloc: u16) -> [u8; 10] {
    let a = alloc.to_be_bytes();
    let b1 = (if llbaa { 0x10 } else { 0 }) | if dbd { 0x08 } else { 0 };
    [0x5A, b1, (pc << 6) | page, 0, 0, 0, 0, a[0], a[1], 0]
}

fn ssu(immed: bool, pc: u8, no_flush: bool, loej: bool, start: bool) -> [u8; 6] {
    let b4 = (pc << 4) | (u8::from(no_flush) << 2) | (u8::from(loej) << 1) | u8::from(start);
    [0x1B, u8::from(immed), 0, 0, b4, 0]
}

fn request_sense(desc: bool, alloc: u8) -> [u8; 6] {
    [0x03, u8::from(desc), 0, 0, alloc, 0]
}

// ---------------------------------------------------------------------------------------------------------------
// Unit attentions

#[test]
fn new_nexus_gets_power_on_then_good() {
    let lu = LogicalUnit::new(cfg());
    assert_check(exec(&lu, &TUR), Sense::power_on_reset());
    assert_good(exec(&lu, &TUR));
    assert_good(exec(&lu, &TUR));
}

#[test]
fn ua_is_per_nexus() {
    let lu = ready(cfg());
    assert_check(exec_on(&lu, N2, &rw10(0x28, 0, 0, 1)), Sense::power_on_reset());
    assert_eq!(exec_on(&lu, N2, &rw10(0x28, 0, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
    assert_eq!(exec(&lu, &rw10(0x28, 0, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
}

#[test]
fn inquiry_report_luns_request_sense_do_not_report_ua() {
    let lu = LogicalUnit::new(cfg());
    assert_eq!(assert_good(exec(&lu, &inquiry(false, 0, 96))).len(), 96);
    let rl = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];
    assert_eq!(assert_good(exec(&lu, &rl)), [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Still pending: the first other command reports it.
    assert_check(exec(&lu, &TUR), Sense::power_on_reset());
    assert_good(exec(&lu, &TUR));
}

#[test]
fn request_sense_returns_and_clears_ua() {
    let lu = LogicalUnit::new(cfg());
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 252))), Sense::power_on_reset().to_fixed());
    assert_good(exec(&lu, &TUR));
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 252))), Sense::no_sense().to_fixed());
    // Descriptor format on request.
    assert_check(exec_on(&lu, N2, &TUR), Sense::power_on_reset());
    lu.set_capacity(2000);
    assert_eq!(assert_good(exec_on(&lu, N2, &request_sense(true, 252))), [0x72, 0x06, 0x2A, 0x09, 0, 0, 0, 0]);
    assert_eq!(assert_good(exec_on(&lu, N2, &request_sense(true, 252))), [0x72, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn request_sense_allocation_length() {
    let lu = ready(cfg());
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 0))), Vec::<u8>::new());
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 8))), Sense::no_sense().to_fixed()[..8]);
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 255))).len(), FIXED_SENSE_LEN);
}

#[test]
fn ua_precedes_opcode_and_field_checks() {
    let lu = LogicalUnit::new(cfg());
    assert_check(exec(&lu, &[0xFF, 0, 0, 0, 0, 0]), Sense::power_on_reset());
    assert_check(exec(&lu, &[0xFF, 0, 0, 0, 0, 0]), Sense::invalid_opcode());
}

#[test]
fn capacity_change_raises_ua_for_every_nexus() {
    let lu = ready(cfg());
    assert_check(exec_on(&lu, N2, &TUR), Sense::power_on_reset());
    lu.set_capacity(1000);
    assert_good(exec(&lu, &TUR));
    lu.set_capacity(5000);
    assert_eq!(lu.num_blocks(), 5000);
    let rc10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_check(exec(&lu, &rc10), Sense::capacity_data_changed());
    assert_eq!(assert_good(exec(&lu, &rc10)), [0, 0, 0x13, 0x87, 0, 0, 2, 0]);
    assert_check(exec_on(&lu, N2, &rw10(0x28, 0, 4999, 1)), Sense::capacity_data_changed());
    assert_eq!(exec_on(&lu, N2, &rw10(0x28, 0, 4999, 1)), Action::Read { offset: 4999 * 512, len: 512, fua: false });
}

#[test]
fn capacity_change_before_first_contact_reports_power_on_only() {
    let lu = LogicalUnit::new(cfg());
    lu.set_capacity(10);
    assert_check(exec(&lu, &TUR), Sense::power_on_reset());
    assert_good(exec(&lu, &TUR));
}

#[test]
fn reset_raises_bus_device_reset_replacing_pending() {
    let lu = ready(cfg());
    exec_on(&lu, N2, &inquiry(false, 0, 36)); // registers N2 with POWER ON pending
    lu.set_capacity(10);
    lu.reset();
    assert_check(exec(&lu, &TUR), Sense::bus_device_reset());
    assert_good(exec(&lu, &TUR));
    assert_check(exec_on(&lu, N2, &TUR), Sense::bus_device_reset());
    assert_good(exec_on(&lu, N2, &TUR));
}

#[test]
fn several_uas_are_reported_in_order() {
    let removable = LuConfig { removable: true, ..cfg() };
    let lu = ready(removable);
    assert_good(exec_on(&lu, N2, &request_sense(false, 18)));
    assert_good(exec_on(&lu, N2, &ssu(false, 0, true, true, false)));
    assert_good(exec_on(&lu, N2, &ssu(false, 0, false, true, true)));
    lu.set_capacity(2000);
    assert_check(exec(&lu, &TUR), Sense::medium_may_have_changed());
    assert_check(exec(&lu, &TUR), Sense::capacity_data_changed());
    assert_good(exec(&lu, &TUR));
    // The nexus that loaded the medium only sees the capacity change.
    assert_check(exec_on(&lu, N2, &TUR), Sense::capacity_data_changed());
    assert_good(exec_on(&lu, N2, &TUR));
}

#[test]
fn nexus_gone_forgets_state() {
    let lu = ready(cfg());
    lu.nexus_gone(N1);
    assert_check(exec(&lu, &TUR), Sense::power_on_reset());
    assert_good(exec(&lu, &TUR));
    lu.nexus_gone(NexusId(99)); // unknown: nothing happens
    assert_good(exec(&lu, &TUR));
}

#[test]
fn concurrent_nexuses_each_get_exactly_one_power_on() {
    let lu = std::sync::Arc::new(LogicalUnit::new(cfg()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let lu = lu.clone();
            std::thread::spawn(move || {
                let mut uas = 0;
                for i in 0..2000u64 {
                    let nexus = NexusId(t * 100 + i % 20);
                    match lu.execute(&cmd(nexus, &rw10(0x28, 0, 1, 1))) {
                        Action::Read { offset: 512, len: 512, fua: false } => {}
                        Action::Respond(r) => {
                            assert_eq!(r.sense, Some(Sense::power_on_reset().to_fixed()));
                            uas += 1;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                uas
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 80);
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch errors

#[test]
fn unsupported_opcodes() {
    let lu = ready(cfg());
    // FORMAT UNIT, UNMAP (fully provisioned), REPORT... (A4h), vendor specific.
    for op in [0x04u8, 0x42, 0xA4, 0x7F, 0xFF] {
        assert_check(exec(&lu, &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Sense::invalid_opcode());
    }
    assert_check(exec(&lu, &[]), Sense::invalid_opcode());
}

#[test]
fn unsupported_service_action_points_at_service_action_field() {
    let lu = ready(cfg());
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x13;
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(1, Some(4)));
    c[0] = 0xA3;
    c[1] = 0x0A; // REPORT TARGET PORT GROUPS: not yet
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(1, Some(4)));
}

#[test]
fn naca_is_rejected() {
    let lu = ready(cfg());
    assert_check(exec(&lu, &[0x00, 0, 0, 0, 0, 0x04]), Sense::invalid_field_in_cdb(5, Some(2)));
    let mut c = rw10(0x28, 0, 0, 1);
    c[9] = 0x04;
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(9, Some(2)));
    let mut c = rw16(0x8A, 0, 0, 1);
    c[15] = 0x04;
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(15, Some(2)));
    let mut c = inquiry(false, 0, 36);
    c[5] = 0x04;
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(5, Some(2)));
    // Vendor-specific control bits are ignored; a 16-byte iSCSI CDB for a 10-byte command ignores byte 10+.
    let mut c = [0u8; 16];
    c[..10].copy_from_slice(&rw10(0x28, 0, 0, 1));
    c[9] = 0xC0;
    c[15] = 0x04;
    assert_eq!(exec(&lu, &c), Action::Read { offset: 0, len: 512, fua: false });
}

#[test]
fn short_cdb_is_an_invalid_field() {
    let lu = ready(cfg());
    assert_check(exec(&lu, &[0x28, 0, 0, 0]), Sense::invalid_field_in_cdb(0, None));
}

#[test]
fn report_luns_through_a_logical_unit_lists_that_lun() {
    let lu = ready(cfg());
    let c = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];
    let r = respond(lu.execute(&Command { lun: 3, ..cmd(N1, &c) }));
    assert_eq!(r.data, [0, 0, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------------------------
// INQUIRY

fn expected_standard(rmb: bool) -> Vec<u8> {
    let mut d = vec![0u8; 96];
    d[1] = if rmb { 0x80 } else { 0 };
    d[2] = 0x06;
    d[3] = 0x12;
    d[4] = 91;
    d[5] = 0x08;
    d[7] = 0x02;
    d[8..16].copy_from_slice(b"POLLTGT ");
    d[16..32].copy_from_slice(b"VDISK           ");
    d[32..36].copy_from_slice(b"0001");
    d[58..66].copy_from_slice(&[0x00, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xC0]);
    d
}

#[test]
fn inquiry_standard_data() {
    let lu = ready(cfg());
    assert_eq!(assert_good(exec(&lu, &inquiry(false, 0, 260))), expected_standard(false));
    let lu = ready(LuConfig { removable: true, ..cfg() });
    assert_eq!(assert_good(exec(&lu, &inquiry(false, 0, 260))), expected_standard(true));
}

#[test]
fn inquiry_allocation_length() {
    let lu = ready(cfg());
    let full = expected_standard(false);
    for alloc in 0..=300u16 {
        let d = assert_good(exec(&lu, &inquiry(false, 0, alloc)));
        assert_eq!(d, full[..usize::from(alloc).min(96)], "alloc {alloc}");
    }
    let d = assert_good(exec(&lu, &inquiry(true, 0x83, 10)));
    assert_eq!(d.len(), 10);
}

#[test]
fn inquiry_invalid_fields() {
    let lu = ready(cfg());
    assert_check(exec(&lu, &inquiry(false, 1, 255)), Sense::invalid_field_in_cdb(2, None));
    assert_check(exec(&lu, &inquiry(false, 0x83, 255)), Sense::invalid_field_in_cdb(2, None));
    assert_check(exec(&lu, &inquiry(true, 0xB3, 255)), Sense::invalid_field_in_cdb(2, None));
    assert_check(exec(&lu, &[0x12, 0x02, 0, 0, 255, 0]), Sense::invalid_field_in_cdb(1, Some(1)));
}

#[test]
fn inquiry_strings_are_padded_truncated_and_sanitized() {
    let lu = ready(LuConfig {
        vendor: "ABCDEFGHIJ".into(),
        product: "p\u{e9}".into(),
        revision: "1".into(),
        ..cfg()
    });
    let d = assert_good(exec(&lu, &inquiry(false, 0, 96)));
    assert_eq!(&d[8..16], b"ABCDEFGH");
    assert_eq!(&d[16..32], b"p__             ");
    assert_eq!(&d[32..36], b"1   ");
}

#[test]
fn vpd_supported_pages_and_every_listed_page_is_readable() {
    let lu = ready(cfg());
    let d = assert_good(exec(&lu, &inquiry(true, 0, 255)));
    assert_eq!(d, [0, 0, 0, 7, 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]);
    for &page in &d[4..] {
        let p = assert_good(exec(&lu, &inquiry(true, page, 255)));
        assert_eq!(p[1], page);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])) + 4, p.len());
    }
}

#[test]
fn vpd_unit_serial_number() {
    let lu = ready(cfg());
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0x80, 255))), b"\x00\x80\x00\x06SN0001");
    let lu = ready(LuConfig { serial: String::new(), ..cfg() });
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0x80, 255))), b"\x00\x80\x00\x08        ");
}

#[test]
fn vpd_device_identification() {
    let lu = ready(cfg());
    let mut expect = vec![0x00, 0x83, 0x00, 12 + 17];
    expect.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
    expect.extend_from_slice(&NAA.to_be_bytes());
    expect.extend_from_slice(&[0x02, 0x01, 0x00, 13]);
    expect.extend_from_slice(b"POLLTGT disk0");
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0x83, 255))), expect);

    // No NAA designator without naa_id; the T10 designator falls back to the serial number, then the product.
    let lu = ready(LuConfig { naa_id: 0, device_id: String::new(), ..cfg() });
    let mut expect = vec![0x00, 0x83, 0x00, 18, 0x02, 0x01, 0x00, 14];
    expect.extend_from_slice(b"POLLTGT SN0001");
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0x83, 255))), expect);
    let lu = ready(LuConfig { naa_id: 0, device_id: String::new(), serial: String::new(), ..cfg() });
    let mut expect = vec![0x00, 0x83, 0x00, 28, 0x02, 0x01, 0x00, 24];
    expect.extend_from_slice(b"POLLTGT VDISK           ");
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0x83, 255))), expect);
}

#[test]
fn vpd_block_limits() {
    let lu = ready(LuConfig { max_transfer_blocks: 0x800, ..cfg() });
    let d = assert_good(exec(&lu, &inquiry(true, 0xB0, 64)));
    assert_eq!(d.len(), 64);
    assert_eq!(&d[..4], &[0, 0xB0, 0, 0x3C]);
    assert_eq!(d[4], 0, "WSNZ = 0");
    assert_eq!(d[5], 255, "MAXIMUM COMPARE AND WRITE LENGTH");
    assert_eq!(&d[8..12], &[0, 0, 0x08, 0]);
    assert!(d[20..44].iter().all(|&b| b == 0), "fully provisioned: no UNMAP limits; no WRITE SAME limit");
    assert_eq!(&d[44..48], &0x800u32.to_be_bytes(), "MAXIMUM ATOMIC TRANSFER LENGTH within MAXIMUM TRANSFER LENGTH");
    assert_eq!(&d[48..56], &[0, 0, 0, 8, 0, 0, 0, 8], "atomic alignment and granularity: 4 KiB");
    // Thin provisioned: the UNMAP fields.
    let lu = ready(LuConfig { thin_provisioned: true, block_size: 4096, ..cfg() });
    let d = assert_good(exec(&lu, &inquiry(true, 0xB0, 64)));
    assert_eq!(d[5], 255);
    assert_eq!(&d[8..12], &[0; 4], "no MAXIMUM TRANSFER LENGTH");
    assert_eq!(&d[20..24], &[0xFF; 4], "MAXIMUM UNMAP LBA COUNT: no limit");
    assert_eq!(&d[24..28], &4095u32.to_be_bytes(), "MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT");
    assert_eq!(&d[28..32], &1u32.to_be_bytes(), "OPTIMAL UNMAP GRANULARITY");
    assert_eq!(&d[36..44], &[0; 8], "MAXIMUM WRITE SAME LENGTH: no limit");
    assert_eq!(&d[44..56], &[0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
}

#[test]
fn vpd_logical_block_provisioning() {
    let lu = ready(cfg());
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0xB2, 255))), [0, 0xB2, 0, 4, 0, 0, 0, 0]);
    let lu = ready(LuConfig { thin_provisioned: true, ..cfg() });
    // LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type 010b (thin).
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0xB2, 255))), [0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
    assert_eq!(assert_good(exec(&lu, &inquiry(true, 0xB2, 6))), [0, 0xB2, 0, 4, 0, 0xE4]);
}

#[test]
fn vpd_block_device_characteristics() {
    let lu = ready(cfg());
    let d = assert_good(exec(&lu, &inquiry(true, 0xB1, 255)));
    assert_eq!(d.len(), 64);
    assert_eq!(&d[..6], &[0, 0xB1, 0, 0x3C, 0, 1]);
    let lu = ready(LuConfig { rotational: true, ..cfg() });
    let d = assert_good(exec(&lu, &inquiry(true, 0xB1, 255)));
    assert_eq!(&d[4..6], &[0, 0]);
}

// ---------------------------------------------------------------------------------------------------------------
// READ CAPACITY

#[test]
fn read_capacity_10() {
    let lu = ready(cfg());
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0, 0, 0x03, 0xE7, 0, 0, 0x02, 0]);
    // PMI = 0 requires LBA 0; PMI = 1 accepts any LBA.
    assert_check(exec(&lu, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Sense::invalid_field_in_cdb(2, None));
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0])), [0, 0, 0x03, 0xE7, 0, 0, 0x02, 0]);
}

#[test]
fn read_capacity_10_beyond_2tib_and_4k_blocks() {
    // 2^32 blocks: the last LBA FFFFFFFFh still fits.
    let lu = ready(LuConfig { num_blocks: 1 << 32, ..cfg() });
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
    // 3 TiB of 512-byte blocks: the last LBA does not fit, FFFFFFFFh tells the initiator to use READ CAPACITY (16).
    let lu = ready(LuConfig { num_blocks: 3 << 31, ..cfg() });
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
    // The same 3 TiB in 4096-byte blocks fits.
    let lu = ready(LuConfig { num_blocks: 3 << 28, block_size: 4096, ..cfg() });
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0x2F, 0xFF, 0xFF, 0xFF, 0, 0, 0x10, 0]);
}

fn rc16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn read_capacity_16() {
    let lu = ready(LuConfig { num_blocks: 3 << 31, ..cfg() });
    let mut expect = vec![0u8; 32];
    expect[0..8].copy_from_slice(&((3u64 << 31) - 1).to_be_bytes());
    expect[8..12].copy_from_slice(&512u32.to_be_bytes());
    assert_eq!(assert_good(exec(&lu, &rc16(32))), expect);
    assert_eq!(assert_good(exec(&lu, &rc16(4096))), expect);
    for alloc in 0..32 {
        assert_eq!(assert_good(exec(&lu, &rc16(alloc))), expect[..alloc as usize], "alloc {alloc}");
    }
    let mut c = rc16(32);
    c[9] = 1;
    assert_check(exec(&lu, &c), Sense::invalid_field_in_cdb(2, None));
    c[14] = 1; // PMI
    assert_eq!(assert_good(exec(&lu, &c)), expect);
}

#[test]
fn read_capacity_16_thin_provisioning() {
    let lu = ready(LuConfig { thin_provisioned: true, ..cfg() });
    let d = assert_good(exec(&lu, &rc16(32)));
    assert_eq!(d[13], 0, "one logical block per physical block");
    assert_eq!(d[14], 0xC0, "LBPME and LBPRZ");
    assert_eq!(assert_good(exec(&lu, &rc16(14))).len(), 14);
}

#[test]
fn read_capacity_16_4k_blocks() {
    let lu = ready(LuConfig { num_blocks: 256, block_size: 4096, ..cfg() });
    let d = assert_good(exec(&lu, &rc16(32)));
    assert_eq!(&d[..12], &[0, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0, 0x10, 0]);
    assert!(d[12..].iter().all(|&b| b == 0), "no protection, no thin provisioning, LBPPBE 0");
}

#[test]
fn physical_block_size_in_read_capacity_16_and_block_limits() {
    // 512-byte logical blocks in 4096-byte physical blocks: LBPPBE 3, LOWEST ALIGNED LBA 0.
    let lu = ready(LuConfig { physical_block_size: 4096, thin_provisioned: true, ..cfg() });
    assert_eq!(lu.blocks_per_physical_block(), 8);
    let d = assert_good(exec(&lu, &rc16(32)));
    assert_eq!(&d[8..12], &512u32.to_be_bytes());
    assert_eq!(d[13], 3, "LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT");
    assert_eq!((d[14], d[15]), (0xC0, 0), "LBPME, LBPRZ; LOWEST ALIGNED LOGICAL BLOCK ADDRESS 0");
    let bl = assert_good(exec(&lu, &inquiry(true, 0xB0, 64)));
    assert_eq!(&bl[6..8], &8u16.to_be_bytes(), "OPTIMAL TRANSFER LENGTH GRANULARITY: one physical block");
    assert_eq!(&bl[28..32], &8u32.to_be_bytes(), "OPTIMAL UNMAP GRANULARITY");
    // A physical block larger than the 4 KiB unmap granule raises the unmap granularity with it.
    let lu = ready(LuConfig { physical_block_size: 16384, thin_provisioned: true, ..cfg() });
    assert_eq!(assert_good(exec(&lu, &rc16(32)))[13], 5);
    let bl = assert_good(exec(&lu, &inquiry(true, 0xB0, 64)));
    assert_eq!((&bl[6..8], &bl[28..32]), (&32u16.to_be_bytes()[..], &32u32.to_be_bytes()[..]));
    // The physical block is the logical block: nothing reported (0 or the block size configured).
    for physical in [0, 512] {
        let lu = ready(LuConfig { physical_block_size: physical, ..cfg() });
        assert_eq!(assert_good(exec(&lu, &rc16(32)))[13], 0);
        assert_eq!(&assert_good(exec(&lu, &inquiry(true, 0xB0, 64)))[6..8], &[0, 0]);
    }
}

#[test]
fn physical_block_size_is_validated() {
    let ok = |physical: u32, block_size: u32| LuConfig { physical_block_size: physical, block_size, ..cfg() }.validate();
    assert_eq!(ok(4096, 512), Ok(()));
    assert_eq!(ok(0, 4096), Ok(()));
    assert_eq!(ok(512 << 15, 512), Ok(()));
    for (physical, block_size) in [(256, 512), (1536, 512), (3000, 512), (512 << 16, 512), (2048, 4096)] {
        assert_eq!(
            ok(physical, block_size),
            Err(LuConfigError::PhysicalBlockSize { physical, block_size }),
            "{physical}/{block_size}"
        );
    }
    assert!(LogicalUnit::try_new(LuConfig { physical_block_size: 1000, ..cfg() }).is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// READ / WRITE

#[test]
fn read_all_sizes() {
    let lu = ready(cfg());
    let expect = Action::Read { offset: 10 * 512, len: 3 * 512, fua: false };
    assert_eq!(exec(&lu, &rw6(0x08, 10, 3)), expect);
    assert_eq!(exec(&lu, &rw10(0x28, 0, 10, 3)), expect);
    assert_eq!(exec(&lu, &rw12(0xA8, 0, 10, 3)), expect);
    assert_eq!(exec(&lu, &rw16(0x88, 0, 10, 3)), expect);
}

#[test]
fn write_all_sizes() {
    let lu = ready(cfg());
    let expect = Action::Write { offset: 999 * 512, len: 512, fua: false };
    assert_eq!(exec(&lu, &rw6(0x0A, 999, 1)), expect);
    assert_eq!(exec(&lu, &rw10(0x2A, 0, 999, 1)), expect);
    assert_eq!(exec(&lu, &rw12(0xAA, 0, 999, 1)), expect);
    assert_eq!(exec(&lu, &rw16(0x8A, 0, 999, 1)), expect);
}

#[test]
fn read6_write6_zero_means_256_blocks_and_21_bit_lba() {
    let lu = ready(LuConfig { num_blocks: 0x20_0000, ..cfg() });
    assert_eq!(exec(&lu, &rw6(0x08, 0, 0)), Action::Read { offset: 0, len: 256 * 512, fua: false });
    assert_eq!(exec(&lu, &rw6(0x0A, 0, 0)), Action::Write { offset: 0, len: 256 * 512, fua: false });
    assert_eq!(exec(&lu, &rw6(0x08, 0x1F_FFFF, 1)), Action::Read { offset: 0x1F_FFFF * 512, len: 512, fua: false });
    // The three reserved bits of byte 1 are not part of the LBA.
    assert_eq!(exec(&lu, &[0x08, 0xE0, 0, 1, 1, 0]), Action::Read { offset: 512, len: 512, fua: false });
    // 256 blocks ending exactly at the end are fine, one more is not.
    assert_eq!(
        exec(&lu, &rw6(0x08, 0x20_0000 - 256, 0)),
        Action::Read { offset: (0x20_0000 - 256) * 512, len: 256 * 512, fua: false }
    );
    assert_check(exec(&lu, &rw6(0x08, 0x20_0000 - 255, 0)), Sense::lba_out_of_range());
}

#[test]
fn dpo_and_fua() {
    let lu = ready(cfg());
    assert_eq!(exec(&lu, &rw10(0x28, 0x10, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
    assert_eq!(exec(&lu, &rw10(0x28, 0x08, 0, 1)), Action::Read { offset: 0, len: 512, fua: true });
    assert_eq!(exec(&lu, &rw10(0x28, 0x18, 0, 1)), Action::Read { offset: 0, len: 512, fua: true });
    assert_eq!(exec(&lu, &rw12(0xAA, 0x18, 0, 1)), Action::Write { offset: 0, len: 512, fua: true });
    assert_eq!(exec(&lu, &rw16(0x8A, 0x08, 0, 1)), Action::Write { offset: 0, len: 512, fua: true });
    // FUA_NV and RARC are accepted and ignored.
    assert_eq!(exec(&lu, &rw10(0x28, 0x06, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
    // The group number is ignored.
    let mut c = rw10(0x2A, 0, 0, 1);
    c[6] = 0x1F;
    assert_eq!(exec(&lu, &c), Action::Write { offset: 0, len: 512, fua: false });
}

#[test]
fn rdprotect_wrprotect_without_protection_information() {
    let lu = ready(cfg());
    for p in 1..8u8 {
        let flags = p << 5;
        let e = Sense::invalid_field_in_cdb(1, Some(7));
        assert_check(exec(&lu, &rw10(0x28, flags, 0, 1)), e);
        assert_check(exec(&lu, &rw12(0xA8, flags, 0, 1)), e);
        assert_check(exec(&lu, &rw16(0x88, flags, 0, 1)), e);
        assert_check(exec(&lu, &rw10(0x2A, flags, 0, 1)), e);
        assert_check(exec(&lu, &rw12(0xAA, flags, 0, 1)), e);
        assert_check(exec(&lu, &rw16(0x8A, flags, 0, 1)), e);
    }
}

#[test]
fn beyond_end_of_lun() {
    let lu = ready(cfg()); // 1000 blocks
    for n in 1..=256u16 {
        for op in [0x28u8, 0x2A] {
            assert_check(exec(&lu, &rw10(op, 0, 1001 - u32::from(n), n)), Sense::lba_out_of_range());
            assert_check(exec(&lu, &rw10(op, 0, 0x8000_0000, n)), Sense::lba_out_of_range());
            assert_check(exec(&lu, &rw10(op, 0, u32::MAX, n)), Sense::lba_out_of_range());
        }
        if n >= 2 {
            assert_check(exec(&lu, &rw10(0x28, 0, 999, n)), Sense::lba_out_of_range());
        }
        assert_check(exec(&lu, &rw16(0x88, 0, 1 << 63, u32::from(n))), Sense::lba_out_of_range());
        assert_check(exec(&lu, &rw16(0x88, 0, u64::MAX, u32::from(n))), Sense::lba_out_of_range());
        assert_check(exec(&lu, &rw12(0xA8, 0, u32::MAX, u32::from(n))), Sense::lba_out_of_range());
    }
    // The last block itself is fine.
    assert_eq!(exec(&lu, &rw10(0x28, 0, 999, 1)), Action::Read { offset: 999 * 512, len: 512, fua: false });
}

#[test]
fn zero_blocks() {
    let lu = ready(cfg()); // 1000 blocks
    for op in [0x28u8, 0x2A, 0x2E, 0x2F] {
        assert_good(exec(&lu, &rw10(op, 0, 0, 0)));
        assert_good(exec(&lu, &rw10(op, 0, 1000, 0)));
        assert_check(exec(&lu, &rw10(op, 0, 1001, 0)), Sense::lba_out_of_range());
        assert_check(exec(&lu, &rw10(op, 0, 0x8000_0000, 0)), Sense::lba_out_of_range());
        assert_check(exec(&lu, &rw10(op, 0, u32::MAX, 0)), Sense::lba_out_of_range());
    }
    for op in [0x88u8, 0x8A, 0x8E, 0x8F] {
        assert_good(exec(&lu, &rw16(op, 0, 0, 0)));
        assert_check(exec(&lu, &rw16(op, 0, u64::MAX, 0)), Sense::lba_out_of_range());
    }
    for op in [0xA8u8, 0xAA, 0xAE, 0xAF] {
        assert_good(exec(&lu, &rw12(op, 0, 0, 0)));
        assert_check(exec(&lu, &rw12(op, 0, 1001, 0)), Sense::lba_out_of_range());
    }
}

#[test]
fn four_k_blocks() {
    let lu = ready(LuConfig { block_size: 4096, num_blocks: 1 << 30, ..cfg() });
    assert_eq!(
        exec(&lu, &rw16(0x88, 0, (1 << 30) - 2, 2)),
        Action::Read { offset: ((1u64 << 30) - 2) * 4096, len: 8192, fua: false }
    );
    assert_eq!(exec(&lu, &rw6(0x0A, 1, 0)), Action::Write { offset: 4096, len: 256 * 4096, fua: false });
    assert_eq!(
        exec(&lu, &rw12(0xAF, 0x02, 7, 0x10000)),
        Action::Verify { offset: 7 * 4096, len: 0x10000 * 4096, byte_check: ByteCheck::Bytes }
    );
    let d = assert_good(exec(&lu, &mode_sense6(false, 0, 0x08, 0, 255)));
    assert_eq!(&d[4..12], &[0x40, 0, 0, 0, 0, 0, 0x10, 0]);
}

#[test]
fn maximum_transfer_length() {
    let lu = ready(LuConfig { max_transfer_blocks: 128, ..cfg() });
    assert_eq!(exec(&lu, &rw10(0x28, 0, 0, 128)), Action::Read { offset: 0, len: 128 * 512, fua: false });
    assert_check(exec(&lu, &rw10(0x28, 0, 0, 129)), Sense::invalid_field_in_cdb(7, None));
    assert_check(exec(&lu, &rw12(0xAA, 0, 0, 129)), Sense::invalid_field_in_cdb(6, None));
    assert_check(exec(&lu, &rw16(0x8F, 0, 0, 129)), Sense::invalid_field_in_cdb(10, None));
    assert_check(exec(&lu, &rw6(0x08, 0, 0)), Sense::invalid_field_in_cdb(4, None));
}

#[test]
fn read_only_logical_unit() {
    let lu = ready(LuConfig { read_only: true, ..cfg() });
    for c in [
        &rw6(0x0A, 0, 1)[..],
        &rw10(0x2A, 0, 0, 1),
        &rw12(0xAA, 0, 0, 1),
        &rw16(0x8A, 0, 0, 1),
        &rw10(0x2E, 0, 0, 1),
        &rw12(0xAE, 0, 0, 1),
        &rw16(0x8E, 0, 0, 1),
    ] {
        assert_check(exec(&lu, c), Sense::write_protected());
    }
    assert_eq!(exec(&lu, &rw10(0x28, 0, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
    assert_eq!(exec(&lu, &rw10(0x2F, 0, 0, 1)), Action::Verify { offset: 0, len: 512, byte_check: ByteCheck::Medium });
    assert_eq!(exec(&lu, &rw10(0x35, 0, 0, 0)), Action::Flush);
    // MODE SENSE reports WP.
    let d = assert_good(exec(&lu, &mode_sense6(true, 0, 0x3F, 0, 255)));
    assert_eq!(d[2], 0x90);
}

// ---------------------------------------------------------------------------------------------------------------
// WRITE AND VERIFY, VERIFY, PRE-FETCH, SYNCHRONIZE CACHE

#[test]
fn write_and_verify() {
    let lu = ready(cfg());
    let expect = Action::Write { offset: 512, len: 1024, fua: true };
    assert_eq!(exec(&lu, &rw10(0x2E, 0, 1, 2)), expect);
    assert_eq!(exec(&lu, &rw12(0xAE, 0x10, 1, 2)), expect); // DPO
    // BYTCHK 1: write, read back, compare.
    assert_eq!(exec(&lu, &rw16(0x8E, 0x02, 1, 2)), Action::WriteVerify { offset: 512, len: 1024 });
    assert_check(exec(&lu, &rw10(0x2E, 0x04, 1, 2)), Sense::invalid_field_in_cdb(1, Some(2)));
    assert_check(exec(&lu, &rw10(0x2E, 0x06, 1, 2)), Sense::invalid_field_in_cdb(1, Some(2)));
    assert_check(exec(&lu, &rw10(0x2E, 0x20, 1, 2)), Sense::invalid_field_in_cdb(1, Some(7)));
    assert_check(exec(&lu, &rw16(0x8E, 0, 999, 2)), Sense::lba_out_of_range());
}

#[test]
fn verify() {
    let lu = ready(cfg());
    let v = |byte_check| Action::Verify { offset: 2048, len: 2048, byte_check };
    assert_eq!(exec(&lu, &rw10(0x2F, 0, 4, 4)), v(ByteCheck::Medium));
    assert_eq!(exec(&lu, &rw10(0x2F, 0x02, 4, 4)), v(ByteCheck::Bytes));
    assert_eq!(exec(&lu, &rw12(0xAF, 0x12, 4, 4)), v(ByteCheck::Bytes));
    assert_eq!(exec(&lu, &rw16(0x8F, 0x10, 4, 4)), v(ByteCheck::Medium));
    assert_eq!(exec(&lu, &rw16(0x8F, 0x06, 4, 4)), v(ByteCheck::OneBlock));
    assert_check(exec(&lu, &rw10(0x2F, 0x04, 4, 4)), Sense::invalid_field_in_cdb(1, Some(2)));
    for p in 1..8u8 {
        assert_check(exec(&lu, &rw10(0x2F, (p << 5) | 0x02, 0, 1)), Sense::invalid_field_in_cdb(1, Some(7)));
    }
    assert_check(exec(&lu, &rw16(0x8F, 0x02, 1000, 1)), Sense::lba_out_of_range());
    assert_good(exec(&lu, &rw10(0x2F, 0x02, 0, 0)));
}

#[test]
fn pre_fetch() {
    let lu = ready(cfg());
    let mut c = rw10(0x34, 0x02, 0, 1); // IMMED
    c[6] = 3; // group
    assert_good(exec(&lu, &c));
    assert_good(exec(&lu, &rw16(0x90, 0, 999, 1)));
    assert_good(exec(&lu, &rw10(0x34, 0, 1000, 0)));
    assert_check(exec(&lu, &rw10(0x34, 0, 1000, 1)), Sense::lba_out_of_range());
    assert_check(exec(&lu, &rw16(0x90, 0, 1001, 0)), Sense::lba_out_of_range());
    assert_check(exec(&lu, &rw16(0x90, 0, u64::MAX, 1)), Sense::lba_out_of_range());
}

#[test]
fn synchronize_cache() {
    let lu = ready(cfg());
    assert_eq!(exec(&lu, &rw10(0x35, 0, 0, 0)), Action::Flush);
    assert_eq!(exec(&lu, &rw10(0x35, 0x02, 10, 990)), Action::Flush);
    assert_eq!(exec(&lu, &rw16(0x91, 0x06, 999, 1)), Action::Flush);
    assert_check(exec(&lu, &rw10(0x35, 0, 10, 991)), Sense::lba_out_of_range());
    assert_check(exec(&lu, &rw16(0x91, 0, 1001, 0)), Sense::lba_out_of_range());
}

// ---------------------------------------------------------------------------------------------------------------
// MODE SENSE

fn caching(wce: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x08;
    p[1] = 0x12;
    p[2] = if wce { 0x04 } else { 0 };
    p
}

fn control() -> Vec<u8> {
    // TST 001b (a task set per I_T nexus), GLTSD; QUEUE ALGORITHM MODIFIER 1; TAS 0; BUSY TIMEOUT PERIOD unlimited.
    vec![0x0A, 0x0A, 0x22, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]
}

fn info_exceptions() -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x1C;
    p[1] = 0x0A;
    p
}

#[test]
fn mode_sense6_all_pages() {
    let lu = ready(cfg());
    let mut expect = vec![4 + 8 + 20 + 12 + 12 - 1, 0, 0x10, 8];
    expect.extend_from_slice(&[0, 0, 0x03, 0xE8, 0, 0, 0x02, 0x00]);
    expect.extend(caching(true));
    expect.extend(control());
    expect.extend(info_exceptions());
    assert_eq!(assert_good(exec(&lu, &mode_sense6(false, 0, 0x3F, 0, 255))), expect);
    assert_eq!(assert_good(exec(&lu, &mode_sense6(false, 0, 0x3F, 0xFF, 255))), expect);
    assert_eq!(assert_good(exec(&lu, &mode_sense6(false, 2, 0x3F, 0, 255))), expect, "default = current");
    // Allocation length: truncated, header unchanged.
    for alloc in 0..=255u8 {
        let d = assert_good(exec(&lu, &mode_sense6(false, 0, 0x3F, 0, alloc)));
        assert_eq!(d, expect[..usize::from(alloc).min(expect.len())], "alloc {alloc}");
    }
}

#[test]
fn mode_sense6_single_pages_and_dbd() {
    let lu = ready(LuConfig { write_cache: false, ..cfg() });
    let mut expect = vec![3 + 20, 0, 0x10, 0];
    expect.extend(caching(false));
    assert_eq!(assert_good(exec(&lu, &mode_sense6(true, 0, 0x08, 0, 255))), expect);
    let mut expect = vec![3 + 12, 0, 0x10, 0];
    expect.extend(control());
    assert_eq!(assert_good(exec(&lu, &mode_sense6(true, 0, 0x0A, 0, 255))), expect);
    let mut expect = vec![3 + 12, 0, 0x10, 0];
    expect.extend(info_exceptions());
    assert_eq!(assert_good(exec(&lu, &mode_sense6(true, 0, 0x1C, 0, 255))), expect);
}

#[test]
fn mode_sense_changeable_values() {
    let lu = ready(cfg());
    let d = assert_good(exec(&lu, &mode_sense6(false, 1, 0x3F, 0, 255)));
    let mut expect = vec![4 + 8 + 44 - 1, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0, 0];
    // Caching: WCE.
    expect.extend_from_slice(&[0x08, 0x12, 0x04]);
    expect.extend([0; 17]);
    // Control: D_SENSE, SWP.
    expect.extend_from_slice(&[0x0A, 0x0A, 0x04, 0, 0x08]);
    expect.extend([0; 7]);
    expect.extend_from_slice(&[0x1C, 0x0A]);
    expect.extend([0; 10]);
    assert_eq!(d, expect);
}

#[test]
fn mode_sense_errors() {
    let lu = ready(cfg());
    assert_check(exec(&lu, &mode_sense6(false, 3, 0x3F, 0, 255)), Sense::saving_parameters_not_supported());
    assert_check(exec(&lu, &mode_sense6(false, 0, 0x19, 0, 255)), Sense::invalid_field_in_cdb(2, Some(5)));
    assert_check(exec(&lu, &mode_sense6(false, 0, 0x00, 0, 255)), Sense::invalid_field_in_cdb(2, Some(5)));
    assert_check(exec(&lu, &mode_sense6(false, 0, 0x0A, 0x01, 255)), Sense::invalid_field_in_cdb(3, None));
    assert_check(exec(&lu, &mode_sense10(false, false, 3, 0x08, 255)), Sense::saving_parameters_not_supported());
}

#[test]
fn mode_sense10_short_and_long_descriptors() {
    let lu = ready(LuConfig { num_blocks: 0x1_0000_0002, ..cfg() });
    let mut expect = vec![0, 8 + 8 + 12 - 2, 0, 0x10, 0, 0, 0, 8];
    expect.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x02, 0x00]);
    expect.extend(control());
    assert_eq!(assert_good(exec(&lu, &mode_sense10(false, false, 0, 0x0A, 1024))), expect);

    let mut expect = vec![0, 8 + 16 + 12 - 2, 0, 0x10, 1, 0, 0, 16];
    expect.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    expect.extend(control());
    assert_eq!(assert_good(exec(&lu, &mode_sense10(true, false, 0, 0x0A, 1024))), expect);
    assert_eq!(assert_good(exec(&lu, &mode_sense10(true, false, 0, 0x0A, 10))), expect[..10]);

    let mut expect = vec![0, 6 + 44, 0, 0x10, 0, 0, 0, 0];
    expect.extend(caching(true));
    expect.extend(control());
    expect.extend(info_exceptions());
    assert_eq!(assert_good(exec(&lu, &mode_sense10(true, true, 0, 0x3F, 1024))), expect);
}

// ---------------------------------------------------------------------------------------------------------------
// START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL

#[test]
fn start_stop_fixed_medium() {
    let lu = ready(cfg());
    assert_check(exec(&lu, &ssu(true, 0, false, true, false)), Sense::invalid_field_in_cdb(4, Some(1)));
    assert_check(exec(&lu, &ssu(false, 0, false, true, true)), Sense::invalid_field_in_cdb(4, Some(1)));
    // Stopping flushes the write cache unless NO_FLUSH; starting does nothing.
    assert_eq!(exec(&lu, &ssu(false, 0, false, false, false)), Action::Flush);
    assert_good(exec(&lu, &ssu(false, 0, true, false, false)));
    assert_good(exec(&lu, &ssu(true, 0, false, false, true)));
    assert_eq!(lu.io_done(&cmd(N1, &ssu(false, 0, false, false, false)), IoResult::Ok), Response::good(vec![]));
    let lu = ready(LuConfig { write_cache: false, ..cfg() });
    assert_good(exec(&lu, &ssu(false, 0, false, false, false)));
    assert_good(exec(&lu, &TUR));
}

#[test]
fn start_stop_power_conditions_do_not_eject() {
    let lu = ready(LuConfig { removable: true, ..cfg() });
    for pc in 1..16u8 {
        assert_good(exec(&lu, &ssu(true, pc, false, true, false)));
        assert_good(exec(&lu, &TUR));
    }
}

#[test]
fn eject_and_load_removable_medium() {
    let lu = ready(LuConfig { removable: true, ..cfg() });
    assert_good(exec_on(&lu, N2, &inquiry(false, 0, 36)));
    assert_check(exec_on(&lu, N2, &TUR), Sense::power_on_reset());
    assert_eq!(exec(&lu, &ssu(true, 0, false, true, false)), Action::Flush);
    assert!(!lu.medium_present());
    for c in [
        &TUR[..],
        &rw10(0x28, 0, 0, 1),
        &rw12(0xA8, 0, 0, 1),
        &rw16(0x88, 0, 0, 1),
        &rw10(0x2A, 0, 0, 1),
        &rw10(0x2E, 0, 0, 1),
        &rw10(0x2F, 0x02, 0, 1),
        &rw16(0x8F, 0, 0, 1),
        &rw10(0x34, 0, 0, 1),
        &rw16(0x90, 0, 0, 1),
        &rw10(0x35, 0, 0, 1),
        &rw16(0x91, 0, 0, 1),
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &rc16(32),
    ] {
        assert_check(exec(&lu, c), Sense::medium_not_present());
    }
    // Not medium commands still work; REQUEST SENSE reports the NOT READY condition.
    assert_good(exec(&lu, &inquiry(false, 0, 36)));
    let d = assert_good(exec(&lu, &mode_sense6(false, 0, 0x08, 0, 255)));
    assert_eq!(&d[4..12], &[0, 0, 0, 0, 0, 0, 0x02, 0]);
    assert_eq!(assert_good(exec(&lu, &request_sense(false, 18))), Sense::medium_not_present().to_fixed());
    // Load: the other nexus is told the medium may have changed, the loader is not.
    assert_good(exec(&lu, &ssu(false, 0, false, true, true)));
    assert!(lu.medium_present());
    assert_good(exec(&lu, &TUR));
    assert_check(exec_on(&lu, N2, &TUR), Sense::medium_may_have_changed());
    assert_good(exec_on(&lu, N2, &TUR));
    // Loading a loaded medium changes nothing.
    assert_good(exec(&lu, &ssu(false, 0, false, true, true)));
    assert_good(exec_on(&lu, N2, &TUR));
}

#[test]
fn prevent_medium_removal() {
    let lu = ready(LuConfig { removable: true, ..cfg() });
    let prevent = |p: u8| [0x1E, 0, 0, 0, p, 0];
    assert_good(exec(&lu, &prevent(1)));
    assert_check(exec(&lu, &ssu(false, 0, false, true, false)), Sense::medium_removal_prevented());
    assert_good(exec(&lu, &TUR));
    assert_good(exec(&lu, &prevent(0)));
    assert_eq!(exec(&lu, &ssu(false, 0, false, true, false)), Action::Flush);
    assert_check(exec(&lu, &TUR), Sense::medium_not_present());
    assert_good(exec(&lu, &prevent(1)));
    assert_check(exec(&lu, &ssu(false, 0, false, true, true)), Sense::medium_removal_prevented());
    assert_good(exec(&lu, &prevent(0)));
    assert_good(exec(&lu, &ssu(false, 0, false, true, true)));

    // Another nexus's PREVENT counts; it ends with the nexus or a reset.
    assert_check(exec_on(&lu, N2, &prevent(1)), Sense::power_on_reset());
    assert_good(exec_on(&lu, N2, &prevent(1)));
    assert_check(exec(&lu, &ssu(false, 0, true, true, false)), Sense::medium_removal_prevented());
    lu.nexus_gone(N2);
    assert_good(exec(&lu, &ssu(false, 0, true, true, false)));
    assert_good(exec(&lu, &ssu(false, 0, true, true, true)));
    assert_good(exec(&lu, &prevent(1)));
    lu.reset();
    assert_check(exec(&lu, &TUR), Sense::bus_device_reset());
    assert_good(exec(&lu, &ssu(false, 0, true, true, false)));

    assert_check(exec(&lu, &prevent(2)), Sense::invalid_field_in_cdb(4, Some(1)));
    assert_check(exec(&lu, &prevent(3)), Sense::invalid_field_in_cdb(4, Some(1)));
}

#[test]
fn prevent_on_fixed_medium_is_accepted_without_effect() {
    let lu = ready(cfg());
    assert_good(exec(&lu, &[0x1E, 0, 0, 0, 1, 0]));
    assert_eq!(exec(&lu, &ssu(false, 0, false, false, false)), Action::Flush);
}

// ---------------------------------------------------------------------------------------------------------------
// io_done

#[test]
fn io_done_maps_results() {
    let lu = ready(cfg());
    let read = rw10(0x28, 0, 0, 1);
    let write = rw16(0x8A, 0, 0, 1);
    let sync = rw10(0x35, 0, 0, 0);
    let verify = rw10(0x2F, 0x02, 0, 1);
    let done = |c: &[u8], r| lu.io_done(&cmd(N1, c), r);
    assert_eq!(done(&read, IoResult::Ok), Response::good(Vec::new()));
    assert_eq!(done(&write, IoResult::Ok), Response::good(Vec::new()));
    assert_eq!(done(&read, IoResult::OutOfRange), Response::check_condition(&Sense::lba_out_of_range()));
    assert_eq!(done(&read, IoResult::MediumError), Response::check_condition(&Sense::unrecovered_read_error()));
    assert_eq!(done(&verify, IoResult::MediumError), Response::check_condition(&Sense::unrecovered_read_error()));
    assert_eq!(done(&write, IoResult::MediumError), Response::check_condition(&Sense::write_error()));
    assert_eq!(done(&sync, IoResult::MediumError), Response::check_condition(&Sense::write_error()));
    assert_eq!(done(&write, IoResult::WriteProtected), Response::check_condition(&Sense::write_protected()));
    assert_eq!(done(&write, IoResult::NoSpace), Response::check_condition(&Sense::space_allocation_failed()));
    assert_eq!(done(&write, IoResult::Other), Response::check_condition(&Sense::internal_target_failure()));
    let r = done(&verify, IoResult::Miscompare { offset: 700 });
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(
        r.sense.unwrap(),
        [0xF0, 0, 0x0E, 0, 0, 0x02, 0xBC, 10, 0, 0, 0, 0, 0x1D, 0x00, 0, 0, 0, 0]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Construction

#[test]
fn logical_unit_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LogicalUnit>();
}

#[test]
fn config_validation() {
    assert_eq!(LogicalUnit::try_new(cfg()).map(|lu| lu.block_size()).ok(), Some(512));
    let bad = |c: LuConfig| LogicalUnit::try_new(c).err();
    assert_eq!(bad(LuConfig { block_size: 0, ..cfg() }), Some(LuConfigError::BlockSize(0)));
    assert_eq!(bad(LuConfig { block_size: 520, ..cfg() }), Some(LuConfigError::BlockSize(520)));
    assert_eq!(bad(LuConfig { block_size: 1 << 17, ..cfg() }), Some(LuConfigError::BlockSize(1 << 17)));
    assert_eq!(
        bad(LuConfig { num_blocks: u64::MAX / 256, ..cfg() }),
        Some(LuConfigError::Capacity { num_blocks: u64::MAX / 256, block_size: 512 })
    );
    assert_eq!(
        bad(LuConfig { vendor: "123456789".into(), ..cfg() }),
        Some(LuConfigError::TooLong { field: "vendor", len: 9, max: 8 })
    );
    assert_eq!(bad(LuConfig { serial: "a\tb".into(), ..cfg() }), Some(LuConfigError::NotAscii { field: "serial" }));
    assert_eq!(bad(LuConfig { naa_id: 0x1234, ..cfg() }), Some(LuConfigError::Naa(0x1234)));
    assert!(LuConfig::default().validate().is_ok());
}

#[test]
fn degenerate_configs_do_not_panic() {
    // `new` accepts anything; every computation is checked.
    let lu = ready(LuConfig { block_size: 0, num_blocks: 0, ..cfg() });
    assert_good(exec(&lu, &rw10(0x28, 0, 0, 0)));
    assert_check(exec(&lu, &rw10(0x28, 0, 0, 1)), Sense::lba_out_of_range());
    assert_eq!(assert_good(exec(&lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])), [0; 8]);
    let lu = ready(LuConfig { block_size: u32::MAX, num_blocks: u64::MAX, ..cfg() });
    assert_check(exec(&lu, &rw16(0x88, 0, u64::MAX - 10, 1)), Sense::lba_out_of_range());
    assert_good(exec(&lu, &mode_sense10(true, false, 0, 0x3F, 1024)));
}

#[test]
fn every_cdb_of_every_opcode_is_handled_without_panic() {
    let lu = ready(LuConfig { removable: true, max_transfer_blocks: 64, ..cfg() });
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for op in 0..=255u8 {
        for _ in 0..64 {
            let mut c = [0u8; 16];
            for b in c.iter_mut() {
                *b = next() as u8;
            }
            c[0] = op;
            let len = (next() % 17) as usize;
            let _ = exec(&lu, &c[..len]);
            let _ = lu.io_done(&cmd(N1, &c[..len]), IoResult::MediumError);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// REPORT SUPPORTED OPERATION CODES

fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let s = sa.to_be_bytes();
    let a = alloc.to_be_bytes();
    [0xA3, 0x0C, (u8::from(rctd) << 7) | options, opcode, s[0], s[1], a[0], a[1], a[2], a[3], 0, 0]
}

#[test]
fn rsoc_all_commands() {
    let lu = ready(cfg());
    let d = assert_good(exec(&lu, &rsoc(false, 0, 0, 0, 65535)));
    // UNMAP and SANITIZE BLOCK ERASE are only reported by a thin provisioned logical unit.
    let n = commands().iter().filter(|op| !op.has(crate::ops::THIN_ONLY)).count();
    assert_eq!(n, commands().len() - 2);
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 1, 0x42, 0, 65535))), [0, 0x01, 0, 0]);
    assert_eq!(d.len(), 4 + 8 * n);
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize, 8 * n);
    let descriptors: Vec<&[u8]> = d[4..].chunks(8).collect();
    assert_eq!(descriptors[0], [0x00, 0, 0, 0, 0, 0x00, 0, 6]); // TEST UNIT READY
    assert!(descriptors.contains(&&[0x28, 0, 0, 0, 0, 0x00, 0, 10][..])); // READ(10)
    assert!(descriptors.contains(&&[0x9E, 0, 0, 0x10, 0, 0x01, 0, 16][..])); // READ CAPACITY(16): SERVACTV
    assert!(descriptors.contains(&&[0xA3, 0, 0, 0x0C, 0, 0x01, 0, 12][..]));
    // With RCTD every descriptor carries a 12-byte timeouts descriptor and CTDP.
    let d = assert_good(exec(&lu, &rsoc(true, 0, 0, 0, 65535)));
    assert_eq!(d.len(), 4 + 20 * n);
    for desc in d[4..].chunks(20) {
        assert_eq!(desc[5] & 0x02, 0x02);
        assert_eq!(&desc[8..10], &[0, 0x0A]);
    }
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 0, 0, 0, 6))).len(), 6);
}

#[test]
fn rsoc_one_command() {
    let lu = ready(cfg());
    assert_eq!(
        assert_good(exec(&lu, &rsoc(false, 1, 0x28, 0, 65535))),
        [0, 0x03, 0, 10, 0x28, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x04]
    );
    let d = assert_good(exec(&lu, &rsoc(false, 1, 0x2F, 0, 65535)));
    assert_eq!(d[5] & 0x10, 0x10, "VERIFY(10) evaluates DPO");
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 1, 0x04, 0, 65535))), [0, 0x01, 0, 0]);
    // Service action commands need options 010b.
    assert_check(exec(&lu, &rsoc(false, 1, 0x9E, 0x10, 65535)), Sense::invalid_field_in_cdb(2, Some(2)));
    let d = assert_good(exec(&lu, &rsoc(false, 2, 0x9E, 0x10, 65535)));
    assert_eq!(&d[..5], &[0, 0x03, 0, 16, 0x9E]);
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 2, 0x9E, 0x13, 65535))), [0, 0x01, 0, 0]);
    assert_check(exec(&lu, &rsoc(false, 2, 0x28, 0, 65535)), Sense::invalid_field_in_cdb(2, Some(2)));
    // 011b takes either; RCTD appends the timeouts descriptor.
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 3, 0x9E, 0x10, 65535)))[..2], [0, 0x03]);
    let d = assert_good(exec(&lu, &rsoc(true, 3, 0x00, 0, 65535)));
    assert_eq!(d, [0, 0x83, 0, 6, 0, 0, 0, 0, 0, 0x04, 0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_check(exec(&lu, &rsoc(false, 4, 0x28, 0, 65535)), Sense::invalid_field_in_cdb(2, Some(2)));
    assert_eq!(assert_good(exec(&lu, &rsoc(false, 1, 0x28, 0, 3))), [0, 0x03, 0]);
}
