//! Tests of the SBC-3 / SPC-4 commands beyond READ and WRITE: mode parameters (MODE SELECT, D_SENSE, SWP, WCE),
//! logical block provisioning (WRITE SAME, UNMAP, GET LBA STATUS), COMPARE AND WRITE, ORWRITE, WRITE ATOMIC,
//! VERIFY BYTCHK 11b, READ DEFECT DATA, SANITIZE, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS, and the unit
//! attentions of LUN inventory and identity changes. CDB bytes in, exact action or response bytes out.

use super::*;

const N1: NexusId = NexusId(1);
const N2: NexusId = NexusId(2);

fn cfg() -> LuConfig {
    LuConfig { num_blocks: 1000, serial: "SN0001".into(), ..LuConfig::default() }
}

fn thin() -> LuConfig {
    LuConfig { thin_provisioned: true, ..cfg() }
}

fn run(lu: &LogicalUnit, nexus: NexusId, cdb: &[u8], expected_len: u32, data_out: Option<&[u8]>) -> Action {
    lu.execute(&Command { nexus, lun: 0, cdb, expected_len, data_out })
}

fn exec(lu: &LogicalUnit, cdb: &[u8]) -> Action {
    run(lu, N1, cdb, 0, None)
}

fn respond(a: Action) -> Response {
    match a {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn good(a: Action) -> Vec<u8> {
    let r = respond(a);
    assert_eq!(r.status, Status::Good, "{r:?}");
    assert_eq!(r.sense, None);
    r.data
}

fn check(a: Action, sense: Sense) {
    let r = respond(a);
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(r.sense.as_deref(), Some(&sense.to_fixed()[..]), "expected {sense:?}");
}

/// Both nexuses have seen their POWER ON unit attention.
fn ready(cfg: LuConfig) -> LogicalUnit {
    let lu = LogicalUnit::new(cfg);
    for n in [N1, N2] {
        check(run(&lu, n, &TUR, 0, None), Sense::power_on_reset());
        good(run(&lu, n, &TUR, 0, None));
    }
    lu
}

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

fn cdb16(op: u8, flags: u8, lba: u64, n: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

fn cdb10(op: u8, flags: u8, lba: u32, n: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let t = n.to_be_bytes();
    [op, flags, l[0], l[1], l[2], l[3], 0, t[0], t[1], 0]
}

fn mode_sense6(pc: u8, page: u8) -> [u8; 6] {
    [0x1A, 0x08, (pc << 6) | page, 0, 255, 0]
}

fn mode_select6(pf: bool, sp: bool, len: u8) -> [u8; 6] {
    [0x15, (u8::from(pf) << 4) | u8::from(sp), 0, 0, len, 0]
}

/// The current Control or Caching page, read with MODE SENSE(6), DBD.
fn page(lu: &LogicalUnit, code: u8) -> Vec<u8> {
    good(exec(lu, &mode_sense6(0, code)))[4..].to_vec()
}

/// MODE SELECT(6) parameter list: a 4-byte header without block descriptor, then `page`.
fn select_list(page: &[u8]) -> Vec<u8> {
    let mut l = vec![0, 0, 0, 0];
    l.extend_from_slice(page);
    l
}

fn select(lu: &LogicalUnit, nexus: NexusId, list: &[u8]) -> Action {
    run(lu, nexus, &mode_select6(true, false, list.len() as u8), list.len() as u32, Some(list))
}

// ---------------------------------------------------------------------------------------------------------------
// MODE SELECT and the changeable mode parameters

#[test]
fn mode_select_wce_changes_writes_and_tells_other_nexuses() {
    let lu = ready(cfg());
    let mut caching = page(&lu, 0x08);
    assert_eq!(caching[2] & 0x04, 0x04, "WCE by default");
    caching[2] &= !0x04;
    good(select(&lu, N1, &select_list(&caching)));
    assert!(!lu.write_cache_enabled());
    assert_eq!(page(&lu, 0x08)[2] & 0x04, 0);
    // The default values keep WCE.
    assert_eq!(good(exec(&lu, &mode_sense6(2, 0x08)))[4 + 2] & 0x04, 0x04);
    // Every write is written through now.
    assert_eq!(exec(&lu, &cdb10(0x2A, 0, 0, 1)), Action::Write { offset: 0, len: 512, fua: true });
    // The other nexus hears of it once; the one that changed it does not.
    check(run(&lu, N2, &TUR, 0, None), Sense::mode_parameters_changed());
    good(run(&lu, N2, &TUR, 0, None));
    good(exec(&lu, &TUR));
    // Selecting the same values again changes nothing and raises nothing.
    good(select(&lu, N1, &select_list(&caching)));
    good(run(&lu, N2, &TUR, 0, None));
    caching[2] |= 0x04;
    good(select(&lu, N1, &select_list(&caching)));
    assert_eq!(exec(&lu, &cdb10(0x2A, 0, 0, 1)), Action::Write { offset: 0, len: 512, fua: false });
}

#[test]
fn mode_select_refuses_unchangeable_bits_with_a_pointer() {
    let lu = ready(cfg());
    let mut control = page(&lu, 0x0A);
    control[3] ^= 0x10; // QUEUE ALGORITHM MODIFIER
    let r = respond(select(&lu, N1, &select_list(&control)));
    assert_eq!(r.sense, Some(Sense::invalid_field_in_param_list(4 + 3, Some(4)).to_fixed()));
    let mut caching = page(&lu, 0x08);
    caching[12] = 1;
    check(select(&lu, N1, &select_list(&caching)), Sense::invalid_field_in_param_list(4 + 12, Some(0)));
    // Wrong page length, unknown page, subpage format.
    let mut short = page(&lu, 0x0A);
    short[1] = 9;
    check(select(&lu, N1, &select_list(&short)), Sense::invalid_field_in_param_list(5, None));
    check(select(&lu, N1, &select_list(&[0x19, 2, 0, 0])), Sense::invalid_field_in_param_list(4, Some(5)));
    check(select(&lu, N1, &select_list(&[0x4A, 0, 0, 10])), Sense::invalid_field_in_param_list(4, Some(5)));
    // Nothing was applied by any refused list, nor by a list whose second page is bad.
    let mut two = page(&lu, 0x08);
    two[2] &= !0x04;
    two.extend_from_slice(&control);
    check(select(&lu, N1, &select_list(&two)), Sense::invalid_field_in_param_list(4 + 20 + 3, Some(4)));
    assert!(lu.write_cache_enabled());
    good(run(&lu, N2, &TUR, 0, None));
}

#[test]
fn mode_select_cdb_and_length_errors() {
    let lu = ready(cfg());
    let list = select_list(&page(&lu, 0x0A));
    let n = list.len() as u8;
    check(run(&lu, N1, &mode_select6(true, true, n), u32::from(n), Some(&list)), Sense::invalid_field_in_cdb(1, Some(0)));
    check(run(&lu, N1, &mode_select6(false, false, n), u32::from(n), Some(&list)), Sense::invalid_field_in_cdb(1, Some(4)));
    // PF = 0 with only a header is fine; so is an empty list.
    good(run(&lu, N1, &mode_select6(false, false, 4), 4, Some(&[0, 0, 0, 0])));
    good(run(&lu, N1, &mode_select6(true, false, 0), 0, None));
    // The list is shorter than the CDB says, ends inside the header or inside a page.
    check(run(&lu, N1, &mode_select6(true, false, n), 3, Some(&list[..3])), Sense::parameter_list_length_error());
    check(run(&lu, N1, &mode_select6(true, false, 3), 3, Some(&list[..3])), Sense::parameter_list_length_error());
    check(run(&lu, N1, &mode_select6(true, false, 10), 10, Some(&list[..10])), Sense::parameter_list_length_error());
    // MEDIUM TYPE must be zero.
    let mut bad = list.clone();
    bad[1] = 1;
    check(select(&lu, N1, &bad), Sense::invalid_field_in_param_list(1, None));
}

#[test]
fn mode_select_block_descriptors_short_and_long() {
    let lu = ready(cfg());
    let control = page(&lu, 0x0A);
    // MODE SELECT(6) with a short block descriptor repeating the block length.
    let mut l = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00];
    l.extend_from_slice(&control);
    good(select(&lu, N1, &l));
    l[7] = 0xE8;
    l[6] = 0x03; // 1000 blocks: the capacity
    good(select(&lu, N1, &l));
    l[7] = 0xE9;
    check(select(&lu, N1, &l), Sense::invalid_field_in_param_list(4, None));
    l[6] = 0;
    l[7] = 0;
    l[10] = 0x10; // 4096-byte blocks: cannot change
    check(select(&lu, N1, &l), Sense::invalid_field_in_param_list(9, None));
    // MODE SELECT(10) with LONGLBA and a 16-byte descriptor, D_SENSE on.
    let mut control = control.clone();
    control[2] |= 0x04;
    let mut l = vec![0, 0, 0, 0, 0x01, 0, 0, 16];
    l.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    l.extend_from_slice(&control);
    let c = [0x55, 0x10, 0, 0, 0, 0, 0, 0, l.len() as u8, 0];
    good(run(&lu, N1, &c, l.len() as u32, Some(&l)));
    assert!(lu.descriptor_sense());
    // A descriptor length that fits neither form.
    l[7] = 12;
    let r = respond(run(&lu, N1, &c, l.len() as u32, Some(&l)));
    assert_eq!(r.sense, Some(Sense::invalid_field_in_param_list(6, None).to_descriptor()));
}

#[test]
fn d_sense_selects_descriptor_format_everywhere() {
    let lu = ready(cfg());
    let mut control = page(&lu, 0x0A);
    control[2] |= 0x04;
    good(select(&lu, N1, &select_list(&control)));
    assert_eq!(page(&lu, 0x0A)[2] & 0x04, 0x04);
    // A CDB error, a unit attention and an I/O outcome all come in descriptor format.
    let r = respond(exec(&lu, &cdb10(0x28, 0, 1000, 1)));
    assert_eq!(r.sense, Some(Sense::lba_out_of_range().to_descriptor()));
    let r = respond(run(&lu, N2, &TUR, 0, None));
    assert_eq!(r.sense, Some(Sense::mode_parameters_changed().to_descriptor()));
    let cmd = Command { nexus: N1, lun: 0, cdb: &cdb10(0x2F, 0x02, 0, 1), expected_len: 512, data_out: None };
    let r = lu.io_done(&cmd, IoResult::Miscompare { offset: 0x1_0000_0000 });
    let mut expect = vec![0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12, 0x00, 0x0A, 0x80, 0x00];
    expect.extend_from_slice(&0x1_0000_0000u64.to_be_bytes());
    assert_eq!(r.sense, Some(expect), "an 8-byte INFORMATION fits the descriptor");
    control[2] &= !0x04;
    good(select(&lu, N1, &select_list(&control)));
    check(exec(&lu, &cdb10(0x28, 0, 1000, 1)), Sense::lba_out_of_range());
}

#[test]
fn software_write_protect_refuses_every_write() {
    let lu = ready(thin());
    let mut control = page(&lu, 0x0A);
    control[4] |= 0x08;
    good(select(&lu, N1, &select_list(&control)));
    assert_eq!(good(exec(&lu, &mode_sense6(0, 0x0A)))[2] & 0x80, 0x80, "WP in the mode parameter header");
    assert_eq!(exec(&lu, &cdb10(0x28, 0, 0, 1)), Action::Read { offset: 0, len: 512, fua: false });
    let swp = Sense::software_write_protected();
    check(exec(&lu, &cdb10(0x2A, 0, 0, 1)), swp);
    check(exec(&lu, &cdb10(0x2E, 0, 0, 1)), swp);
    check(run(&lu, N1, &cdb10(0x41, 0, 0, 1), 512, None), swp);
    check(run(&lu, N1, &cdb16(0x89, 0, 0, 1 << 8), 1024, None), swp);
    check(exec(&lu, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]), swp);
    // MODE SELECT itself is not a write: SWP can be cleared again.
    control[4] &= !0x08;
    good(select(&lu, N1, &select_list(&control)));
    assert!(matches!(exec(&lu, &cdb10(0x2A, 0, 0, 1)), Action::Write { .. }));
}

// ---------------------------------------------------------------------------------------------------------------
// WRITE SAME, UNMAP, GET LBA STATUS

fn ws10(flags: u8, lba: u32, n: u16) -> [u8; 10] {
    cdb10(0x41, flags, lba, n)
}

#[test]
fn write_same_actions() {
    let lu = ready(thin());
    let ws = |c: &[u8], edtl| run(&lu, N1, c, edtl, None);
    let write = |offset, len, unmap, ndob| Action::WriteSame { offset, len, unmap, ndob, fua: false };
    assert_eq!(ws(&ws10(0, 1, 8), 512), write(512, 4096, false, false));
    assert_eq!(ws(&ws10(0x08, 1, 8), 512), write(512, 4096, true, false));
    assert_eq!(ws(&cdb16(0x93, 0x08, 990, 10), 512), write(990 * 512, 5120, true, false));
    // NDOB: no Data-Out at all.
    assert_eq!(ws(&cdb16(0x93, 0x01, 0, 2), 0), write(0, 1024, false, true));
    // Zero blocks: up to the end of the medium (WSNZ = 0).
    assert_eq!(ws(&ws10(0, 900, 0), 512), write(900 * 512, 100 * 512, false, false));
    assert_eq!(ws(&cdb16(0x93, 0x08, 0, 0), 512), write(0, 1000 * 512, true, false));
    // Out of range, including zero blocks at and past the end.
    check(ws(&ws10(0, 999, 2), 512), Sense::lba_out_of_range());
    check(ws(&ws10(0, 1000, 0), 512), Sense::lba_out_of_range());
    check(ws(&cdb16(0x93, 0, u64::MAX, 0), 512), Sense::lba_out_of_range());
    // ANCHOR (no anchored state), protection, a Data-Out that is not one block.
    check(ws(&ws10(0x18, 0, 1), 512), Sense::invalid_field_in_cdb(1, Some(4)));
    check(ws(&ws10(0x10, 0, 1), 512), Sense::invalid_field_in_cdb(1, Some(4)));
    check(ws(&ws10(0x20, 0, 1), 512), Sense::invalid_field_in_cdb(1, Some(7)));
    for edtl in [0, 256, 1024] {
        check(ws(&ws10(0x08, 0, 1), edtl), Sense::new(SenseKey::IllegalRequest, 0x24, 0));
    }
    // A fully provisioned logical unit writes, but refuses the UNMAP bit.
    let lu = ready(cfg());
    assert!(matches!(run(&lu, N1, &ws10(0, 0, 1), 512, None), Action::WriteSame { unmap: false, .. }));
    check(run(&lu, N1, &ws10(0x08, 0, 1), 512, None), Sense::invalid_field_in_cdb(1, Some(3)));
    // With the write cache off the replicated writes are written through.
    let lu = ready(LuConfig { write_cache: false, ..thin() });
    assert_eq!(run(&lu, N1, &ws10(0, 0, 1), 512, None), Action::WriteSame { offset: 0, len: 512, unmap: false, ndob: false, fua: true });
}

fn unmap_cdb(len: u16) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

fn unmap_list(descriptors: &[(u64, u32)]) -> Vec<u8> {
    let n = descriptors.len() * 16;
    let mut l = Vec::new();
    l.extend_from_slice(&((n + 6) as u16).to_be_bytes());
    l.extend_from_slice(&(n as u16).to_be_bytes());
    l.extend_from_slice(&[0; 4]);
    for &(lba, blocks) in descriptors {
        l.extend_from_slice(&lba.to_be_bytes());
        l.extend_from_slice(&blocks.to_be_bytes());
        l.extend_from_slice(&[0; 4]);
    }
    l
}

fn unmap(lu: &LogicalUnit, list: &[u8]) -> Action {
    run(lu, N1, &unmap_cdb(list.len() as u16), list.len() as u32, Some(list))
}

#[test]
fn unmap_descriptors_become_byte_ranges() {
    let lu = ready(thin());
    assert_eq!(
        unmap(&lu, &unmap_list(&[(0, 1), (10, 0), (998, 2)])),
        Action::Unmap { ranges: vec![(0, 512), (998 * 512, 1024)] }
    );
    // Only zero-length descriptors, or none: nothing to do.
    good(unmap(&lu, &unmap_list(&[(5, 0)])));
    good(unmap(&lu, &unmap_list(&[])));
    good(run(&lu, N1, &unmap_cdb(0), 0, None));
    // An incomplete last descriptor is ignored.
    let mut l = unmap_list(&[(1, 1), (2, 1)]);
    l.truncate(8 + 16 + 10);
    assert_eq!(unmap(&lu, &l), Action::Unmap { ranges: vec![(512, 512)] });
}

#[test]
fn unmap_errors() {
    let lu = ready(thin());
    check(unmap(&lu, &unmap_list(&[(0, 1), (999, 2)])), Sense::lba_out_of_range());
    check(unmap(&lu, &unmap_list(&[(u64::MAX, 1)])), Sense::lba_out_of_range());
    check(run(&lu, N1, &unmap_cdb(7), 7, Some(&[0; 7])), Sense::parameter_list_length_error());
    let l = unmap_list(&[(0, 1)]);
    check(run(&lu, N1, &unmap_cdb(24), 20, Some(&l[..20])), Sense::parameter_list_length_error());
    let mut c = unmap_cdb(24);
    c[1] = 1; // ANCHOR
    check(run(&lu, N1, &c, 24, Some(&l)), Sense::invalid_field_in_cdb(1, Some(0)));
    // The largest parameter list: 4095 descriptors.
    let many: Vec<(u64, u32)> = (0..4095).map(|i| (i % 1000, 1)).collect();
    let big = unmap_list(&many);
    assert_eq!(big.len(), 65528);
    match unmap(&lu, &big) {
        Action::Unmap { ranges } => assert_eq!(ranges.len(), 4095),
        other => panic!("{other:?}"),
    }
    // A fully provisioned logical unit has no UNMAP.
    let lu = ready(cfg());
    check(unmap(&lu, &unmap_list(&[(0, 1)])), Sense::invalid_opcode());
}

fn get_lba_status(lba: u64, alloc: u32) -> [u8; 16] {
    let mut c = cdb16(0x9E, 0x12, lba, alloc);
    c[1] = 0x12;
    c
}

#[test]
fn get_lba_status_thick_and_thin() {
    // Fully provisioned: answered at once, everything mapped.
    let lu = ready(cfg());
    let d = good(exec(&lu, &get_lba_status(10, 64)));
    assert_eq!(d, [0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0x03, 0xDE, 0, 0, 0, 0]);
    assert_eq!(good(exec(&lu, &get_lba_status(10, 4))), [0, 0, 0, 20]);
    check(exec(&lu, &get_lba_status(1000, 64)), Sense::lba_out_of_range());
    // Thin: the bdev is asked, as many runs as fit in the allocation length.
    let lu = ready(thin());
    assert_eq!(exec(&lu, &get_lba_status(10, 8 + 3 * 16)), Action::GetLbaStatus { offset: 5120, len: 990 * 512, max_extents: 3 });
    assert_eq!(exec(&lu, &get_lba_status(0, 0)), Action::GetLbaStatus { offset: 0, len: 512_000, max_extents: 1 });
    let c = get_lba_status(10, 40);
    let cmd = Command { nexus: N1, lun: 0, cdb: &c, expected_len: 40, data_out: None };
    let extents = [
        LbaExtent { lba: 10, blocks: 6, status: ProvisioningStatus::Mapped },
        LbaExtent { lba: 16, blocks: 984, status: ProvisioningStatus::Deallocated },
    ];
    let r = lu.lba_status_done(&cmd, &extents);
    assert_eq!(r.status, Status::Good);
    let mut expect = vec![0, 0, 0, 36, 0, 0, 0, 0];
    expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 6, 0, 0, 0, 0]);
    expect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0x03, 0xD8, 1, 0, 0, 0]);
    assert_eq!(r.data, expect[..40], "truncated to the allocation length, PARAMETER DATA LENGTH untouched");
    // No answer from the bdev: mapped.
    let r = lu.lba_status_done(&cmd, &[]);
    assert_eq!(&r.data[8..24], &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0x03, 0xDE, 0, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------------------------
// COMPARE AND WRITE, ORWRITE, WRITE ATOMIC, VERIFY BYTCHK 11b

fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write() {
    let lu = ready(cfg());
    assert_eq!(run(&lu, N1, &caw(2, 3), 3072, None), Action::CompareAndWrite { offset: 1024, len: 1536, fua: false });
    let mut c = caw(2, 3);
    c[1] = 0x08; // FUA
    assert_eq!(run(&lu, N1, &c, 3072, None), Action::CompareAndWrite { offset: 1024, len: 1536, fua: true });
    // 255 blocks is the maximum (one byte); the data must be exactly twice the blocks.
    assert!(matches!(run(&lu, N1, &caw(0, 255), 255 * 1024, None), Action::CompareAndWrite { .. }));
    check(run(&lu, N1, &caw(0, 3), 2048, None), Sense::new(SenseKey::IllegalRequest, 0x24, 0));
    check(run(&lu, N1, &caw(0, 1), 4096, None), Sense::new(SenseKey::IllegalRequest, 0x24, 0));
    check(run(&lu, N1, &caw(0, 0), 512, None), Sense::new(SenseKey::IllegalRequest, 0x24, 0));
    good(run(&lu, N1, &caw(0, 0), 0, None));
    check(run(&lu, N1, &caw(999, 2), 2048, None), Sense::lba_out_of_range());
    c[1] = 0x20;
    check(run(&lu, N1, &c, 3072, None), Sense::invalid_field_in_cdb(1, Some(7)));
    // 64 KiB blocks: at most 1 MiB compared at once.
    let lu = ready(LuConfig { block_size: 65536, ..cfg() });
    check(run(&lu, N1, &caw(0, 17), 17 * 131072, None), Sense::invalid_field_in_cdb(13, None));
    assert_eq!(good(exec(&lu, &[0x12, 1, 0xB0, 0, 64, 0]))[5], 16);
    // A miscompare reports the offset in the verify data.
    let lu = ready(cfg());
    let c = caw(0, 1);
    let cmd = Command { nexus: N1, lun: 0, cdb: &c, expected_len: 1024, data_out: None };
    let r = lu.io_done(&cmd, IoResult::Miscompare { offset: 485 });
    assert_eq!(r.sense, Some(Sense::miscompare(485).to_fixed()));
    assert_eq!(lu.io_done(&cmd, IoResult::MediumError).sense, Some(Sense::write_error().to_fixed()));
}

#[test]
fn orwrite_and_write_atomic() {
    let lu = ready(cfg());
    assert_eq!(exec(&lu, &cdb16(0x8B, 0, 4, 2)), Action::OrWrite { offset: 2048, len: 1024, fua: false });
    assert_eq!(exec(&lu, &cdb16(0x8B, 0x08, 4, 2)), Action::OrWrite { offset: 2048, len: 1024, fua: true });
    good(exec(&lu, &cdb16(0x8B, 0, 4, 0)));
    check(exec(&lu, &cdb16(0x8B, 0x20, 4, 2)), Sense::invalid_field_in_cdb(1, Some(7)));
    check(exec(&lu, &cdb16(0x8B, 0, 999, 2)), Sense::lba_out_of_range());

    // WRITE ATOMIC (16): TRANSFER LENGTH in bytes 12..13; 4 KiB alignment and granularity with 512-byte blocks.
    let atomic = |lba: u64, n: u16| {
        let mut c = cdb16(0x9C, 0, lba, 0);
        c[12..14].copy_from_slice(&n.to_be_bytes());
        c
    };
    assert_eq!(exec(&lu, &atomic(8, 16)), Action::WriteAtomic { offset: 4096, len: 8192, fua: false });
    good(exec(&lu, &atomic(8, 0)));
    check(exec(&lu, &atomic(4, 8)), Sense::invalid_field_in_cdb(2, None));
    check(exec(&lu, &atomic(8, 4)), Sense::invalid_field_in_cdb(12, None));
    check(exec(&lu, &atomic(1000 - 4, 8)), Sense::lba_out_of_range());
    check(exec(&lu, &atomic(u64::MAX - 7, 8)), Sense::lba_out_of_range());
    let mut c = atomic(0, 8);
    c[11] = 1; // ATOMIC BOUNDARY
    check(exec(&lu, &c), Sense::invalid_field_in_cdb(10, None));
    let lu = ready(LuConfig { max_transfer_blocks: 64, ..cfg() });
    check(exec(&lu, &atomic(0, 72)), Sense::invalid_field_in_cdb(12, None));
    assert!(matches!(exec(&lu, &atomic(0, 64)), Action::WriteAtomic { .. }));
}

#[test]
fn verify_one_block_and_write_and_verify() {
    let lu = ready(cfg());
    assert_eq!(
        exec(&lu, &cdb10(0x2F, 0x06, 3, 5)),
        Action::Verify { offset: 1536, len: 2560, byte_check: ByteCheck::OneBlock }
    );
    assert_eq!(exec(&lu, &cdb10(0x2E, 0x02, 3, 5)), Action::WriteVerify { offset: 1536, len: 2560 });
}

// ---------------------------------------------------------------------------------------------------------------
// READ DEFECT DATA, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS

#[test]
fn read_defect_data_is_empty() {
    let lu = ready(cfg());
    // (10): REQ_PLIST, REQ_GLIST, format 101b (physical sector).
    assert_eq!(good(exec(&lu, &[0x37, 0, 0x1D, 0, 0, 0, 0, 0, 255, 0])), [0, 0x1D, 0, 0]);
    assert_eq!(good(exec(&lu, &[0x37, 0, 0x08, 0, 0, 0, 0, 0, 2, 0])), [0, 0x08]);
    let d = good(exec(&lu, &[0xB7, 0x14, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]));
    assert_eq!(d, [0, 0x14, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn report_supported_task_management_functions() {
    let lu = ready(cfg());
    let c = |repd: bool, alloc: u32| {
        let a = alloc.to_be_bytes();
        [0xA3, 0x0D, u8::from(repd) << 7, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
    };
    assert_eq!(good(exec(&lu, &c(false, 255))), [0xDA, 0, 0, 0]);
    let d = good(exec(&lu, &c(true, 255)));
    assert_eq!(d.len(), 16);
    assert_eq!(&d[..4], &[0xDA, 0, 0, 0x0C]);
    assert_eq!(good(exec(&lu, &c(true, 4))).len(), 4);
    check(exec(&lu, &c(false, 3)), Sense::invalid_field_in_cdb(6, None));
}

// ---------------------------------------------------------------------------------------------------------------
// SANITIZE

fn sanitize_cdb(sa: u8, len: u16) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x48, sa, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

fn overwrite(pattern: &[u8], count: u8) -> Vec<u8> {
    let mut p = vec![count, 0];
    p.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    p.extend_from_slice(pattern);
    p
}

fn progress(p: u16) -> Sense {
    Sense::sanitize_in_progress().with_sks(SenseKeySpecific::Progress(p))
}

fn request_sense_data(lu: &LogicalUnit, nexus: NexusId) -> Vec<u8> {
    good(run(lu, nexus, &[0x03, 0, 0, 0, 252, 0], 252, None))
}

#[test]
fn sanitize_overwrite_runs_alone() {
    let lu = ready(cfg());
    let p = overwrite(&[0xAA; 512], 0x82);
    let c = sanitize_cdb(0x01, p.len() as u16);
    assert_eq!(
        run(&lu, N1, &c, p.len() as u32, Some(&p)),
        Action::Sanitize { op: SanitizeOp::Overwrite { pattern: vec![0xAA; 512], invert: true, passes: 2 }, immed: false }
    );
    lu.sanitize_started();
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Running { progress: 0 });
    // While it runs, the other nexus gets SANITIZE IN PROGRESS with the progress indication, except for INQUIRY,
    // REPORT LUNS and REQUEST SENSE.
    check(run(&lu, N2, &TUR, 0, None), progress(0));
    lu.sanitize_progress(1, 4);
    check(run(&lu, N2, &TUR, 0, None), progress(0x4000));
    check(run(&lu, N2, &cdb10(0x28, 0, 0, 1), 512, None), progress(0x4000));
    check(run(&lu, N2, &c, p.len() as u32, Some(&p)), progress(0x4000));
    check(run(&lu, N2, &[0x1B, 0, 0, 0, 1, 0], 0, None), progress(0x4000));
    good(run(&lu, N2, &[0x12, 0, 0, 0, 36, 0], 36, None));
    // REQUEST SENSE polls it: NOT READY, 04/1B, SKSV with the PROGRESS INDICATION (fixed and descriptor format).
    let sense = request_sense_data(&lu, N2);
    assert_eq!((sense[2], sense[12], sense[13]), (0x02, 0x04, 0x1B));
    assert_eq!(&sense[15..18], &[0x80, 0x40, 0x00]);
    let desc = good(run(&lu, N2, &[0x03, 1, 0, 0, 252, 0], 252, None));
    assert_eq!(&desc[..4], &[0x72, 0x02, 0x04, 0x1B]);
    assert_eq!(&desc[8..16], &[0x02, 0x06, 0, 0, 0x80, 0x40, 0x00, 0]);
    // A reset and the loss of the nexus do not stop it; a stray io_done of the command (it was abandoned after
    // the operation started) does not either.
    lu.reset();
    lu.nexus_gone(N1);
    let _ = lu.io_done(&Command { nexus: N1, lun: 0, cdb: &c, expected_len: 0, data_out: None }, IoResult::Other);
    lu.sanitize_progress(4, 4);
    check(run(&lu, N2, &TUR, 0, None), Sense::bus_device_reset());
    check(run(&lu, N2, &TUR, 0, None), progress(0xFFFF));
    assert_eq!(lu.sanitize_done(IoResult::Ok).status, Status::Good);
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Idle);
    good(run(&lu, N2, &TUR, 0, None));
    assert_eq!(request_sense_data(&lu, N2)[2], 0, "NO SENSE");
}

#[test]
fn sanitize_immed_and_a_command_abandoned_before_it_started() {
    let lu = ready(thin());
    let mut c = sanitize_cdb(0x02, 0);
    c[1] |= 0x80;
    assert_eq!(exec(&lu, &c), Action::Sanitize { op: SanitizeOp::BlockErase, immed: true });
    check(run(&lu, N2, &TUR, 0, None), progress(0));
    // Abandoned before its I/O started (the connection went away while it waited for the range lock).
    let _ = lu.io_done(&Command { nexus: N1, lun: 0, cdb: &c, expected_len: 0, data_out: None }, IoResult::Other);
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Idle);
    good(run(&lu, N2, &TUR, 0, None));
}

#[test]
fn sanitize_failure_mode_and_exit() {
    let lu = ready(thin());
    let read = cdb10(0x28, 0, 0, 1);
    let exit = sanitize_cdb(0x1F, 0);
    let erase = |ause: bool| {
        let mut c = sanitize_cdb(0x02, 0);
        if ause {
            c[1] |= 0x20;
        }
        c
    };
    let failed = Sense::new(SenseKey::MediumError, 0x31, 0x03);
    // Unrestricted completion (AUSE = 1): the operation fails, EXIT FAILURE MODE leaves the failure mode.
    assert!(matches!(exec(&lu, &erase(true)), Action::Sanitize { .. }));
    lu.sanitize_started();
    let r = lu.sanitize_done(IoResult::MediumError);
    assert_eq!(r.sense.as_deref(), Some(&failed.to_fixed()[..]), "the waiting SANITIZE fails");
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Failed { ause: true });
    check(run(&lu, N2, &read, 512, None), failed);
    check(run(&lu, N2, &cdb10(0x2A, 0, 0, 1), 512, None), failed);
    // Commands that do not access the medium still work; REQUEST SENSE reports the failure.
    good(run(&lu, N2, &TUR, 0, None));
    good(run(&lu, N2, &[0x12, 0, 0, 0, 36, 0], 36, None));
    let sense = request_sense_data(&lu, N2);
    assert_eq!((sense[2], sense[12], sense[13]), (0x03, 0x31, 0x03));
    good(exec(&lu, &exit));
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Idle);
    assert!(matches!(run(&lu, N2, &read, 512, None), Action::Read { .. }));
    // Restricted completion (AUSE = 0): EXIT FAILURE MODE and a new SANITIZE with AUSE = 1 are refused; only a
    // sanitize operation that completes without error ends the failure mode.
    assert!(matches!(exec(&lu, &erase(false)), Action::Sanitize { .. }));
    lu.sanitize_started();
    let _ = lu.sanitize_done(IoResult::Other);
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Failed { ause: false });
    check(exec(&lu, &exit), Sense::invalid_field_in_cdb(1, Some(5)));
    check(exec(&lu, &erase(true)), Sense::invalid_field_in_cdb(1, Some(5)));
    // A new operation abandoned before it started leaves the failure mode as it was.
    let c = erase(false);
    assert!(matches!(exec(&lu, &c), Action::Sanitize { .. }));
    let _ = lu.io_done(&Command { nexus: N1, lun: 0, cdb: &c, expected_len: 0, data_out: None }, IoResult::Other);
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Failed { ause: false });
    assert!(matches!(exec(&lu, &c), Action::Sanitize { .. }));
    lu.sanitize_started();
    assert_eq!(lu.sanitize_done(IoResult::Ok).status, Status::Good);
    assert_eq!(lu.sanitize_phase(), SanitizePhase::Idle);
    assert!(matches!(run(&lu, N2, &read, 512, None), Action::Read { .. }));
    // Without a failed operation EXIT FAILURE MODE has nothing to do.
    good(exec(&lu, &exit));
}

#[test]
fn sanitize_errors_are_invalid_fields_in_the_cdb() {
    let lu = ready(thin());
    let bad = |sa: u8, len: u16, data: &[u8]| check(run(&lu, N1, &sanitize_cdb(sa, len), u32::from(len), Some(data)), Sense::invalid_field_in_cdb(7, None));
    let p = overwrite(&[1, 2, 3, 4], 1);
    for len in 0..5 {
        bad(0x01, len, &p);
    }
    bad(0x01, 513 + 4, &[0; 520]); // longer than a block + 4
    bad(0x01, 8, &overwrite(&[1, 2, 3, 4], 0)); // OWCOUNT 0
    bad(0x01, 8, &{
        let mut q = overwrite(&[1, 2, 3, 4], 1);
        q[3] = 0; // pattern length 0
        q
    });
    bad(0x01, 6, &overwrite(&[1, 2, 3, 4], 1)); // length not pattern + 4
    bad(0x02, 8, &[0; 8]); // BLOCK ERASE takes no parameters
    bad(0x1F, 8, &[0; 8]); // nor does EXIT FAILURE MODE
    // Reserved bits and bytes, crypto erase.
    let mut c = sanitize_cdb(0x02, 0);
    c[1] |= 0x40;
    check(exec(&lu, &c), Sense::invalid_field_in_cdb(1, Some(6)));
    for i in 2..7 {
        let mut c = sanitize_cdb(0x02, 0);
        c[i] = 1;
        check(exec(&lu, &c), Sense::invalid_field_in_cdb(i as u16, None));
    }
    check(exec(&lu, &sanitize_cdb(0x03, 0)), Sense::invalid_field_in_cdb(1, Some(4)));
    good(exec(&lu, &sanitize_cdb(0x1F, 0)));
    assert_eq!(exec(&lu, &sanitize_cdb(0x22, 0)), Action::Sanitize { op: SanitizeOp::BlockErase, immed: false }, "AUSE accepted");
    // Block erase needs thin provisioning.
    let lu = ready(cfg());
    check(exec(&lu, &sanitize_cdb(0x02, 0)), Sense::invalid_field_in_cdb(1, Some(4)));
    // Read-only logical units cannot be sanitized.
    let lu = ready(LuConfig { read_only: true, ..thin() });
    check(exec(&lu, &sanitize_cdb(0x02, 0)), Sense::write_protected());
}

#[test]
fn block_erase_needs_thin_provisioning_and_sets_wabereq() {
    let lu = ready(thin());
    assert_eq!(good(exec(&lu, &[0x12, 1, 0xB1, 0, 64, 0]))[7], 0x40);
    let lu = ready(cfg());
    assert_eq!(good(exec(&lu, &[0x12, 1, 0xB1, 0, 64, 0]))[7], 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Data-Out lengths, unit attentions of inventory and identity

#[test]
fn data_out_lengths_for_residuals() {
    let lu = ready(cfg());
    assert_eq!(lu.data_out_len(&cdb10(0x2A, 0, 0, 3)), Some(1536));
    assert_eq!(lu.data_out_len(&cdb10(0x28, 0, 0, 3)), None);
    assert_eq!(lu.data_out_len(&cdb10(0x2F, 0x00, 0, 3)), None);
    assert_eq!(lu.data_out_len(&cdb10(0x2F, 0x02, 0, 3)), Some(1536));
    assert_eq!(lu.data_out_len(&cdb10(0x2F, 0x06, 0, 3)), Some(512));
    assert_eq!(lu.data_out_len(&ws10(0, 0, 100)), Some(512));
    assert_eq!(lu.data_out_len(&cdb16(0x93, 0x01, 0, 100)), None);
    assert_eq!(lu.data_out_len(&caw(0, 4)), Some(4096));
    assert_eq!(lu.data_out_len(&mode_select6(true, false, 28)), Some(28));
    assert_eq!(lu.data_out_len(&unmap_cdb(40)), Some(40));
    assert_eq!(lu.data_out_len(&[0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0]), Some(24));
    assert_eq!(lu.data_out_len(&TUR), None);
}

#[test]
fn reported_luns_and_inquiry_data_changes() {
    let lu = ready(cfg());
    lu.raise_unit_attention(Sense::reported_luns_changed(), Some(N2));
    check(exec(&lu, &TUR), Sense::reported_luns_changed());
    good(run(&lu, N2, &TUR, 0, None));
    // The same identity: nothing changes.
    lu.set_identity(&cfg());
    good(exec(&lu, &TUR));
    lu.set_identity(&LuConfig { product: "NEWNAME".into(), ..cfg() });
    for n in [N1, N2] {
        check(run(&lu, n, &TUR, 0, None), Sense::inquiry_data_changed());
    }
    let d = good(exec(&lu, &[0x12, 0, 0, 0, 36, 0]));
    assert_eq!(&d[16..23], b"NEWNAME");
    // Geometry and provisioning stay what they are.
    lu.set_identity(&LuConfig { block_size: 4096, thin_provisioned: true, ..cfg() });
    assert_eq!(good(exec(&lu, &[0x12, 1, 0xB2, 0, 8, 0]))[5], 0);
}

#[test]
fn thin_rsoc_reports_unmap_and_sanitize_service_actions() {
    let lu = ready(thin());
    let d = good(exec(&lu, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]));
    let descriptors: Vec<&[u8]> = d[4..].chunks(8).collect();
    assert!(descriptors.contains(&&[0x42, 0, 0, 0, 0, 0x00, 0, 10][..]));
    for sa in [0x01u8, 0x02, 0x1F] {
        assert!(descriptors.contains(&&[0x48, 0, 0, sa, 0, 0x01, 0, 10][..]), "SANITIZE {sa:#x}");
    }
    assert!(!descriptors.iter().any(|d| d[0] == 0x48 && d[3] == 0x03), "no CRYPTOGRAPHIC ERASE");
    // One command with its usage data.
    let d = good(exec(&lu, &[0xA3, 0x0C, 0x01, 0x93, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]));
    assert_eq!(&d[..6], &[0, 0x03, 0, 16, 0x93, 0xF9]);
}

#[test]
fn random_cdbs_and_parameter_lists_never_panic() {
    let mut state = 0x0DDB_1A5E_5BAD_5EEDu64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for cfg in [cfg(), thin(), LuConfig { block_size: 4096, removable: true, ..thin() }] {
        let lu = LogicalUnit::new(cfg);
        for op in [0x15u8, 0x55, 0x41, 0x93, 0x42, 0x48, 0x89, 0x8B, 0x9C, 0x9E, 0xA3, 0x37, 0xB7, 0x2E, 0x2F] {
            for _ in 0..300 {
                let mut c = [0u8; 16];
                c.iter_mut().for_each(|b| *b = next() as u8);
                c[0] = op;
                // Keep the CONTROL byte valid half of the time so the handlers run.
                if next() % 2 == 0 {
                    c.iter_mut().skip(5).for_each(|b| *b &= !0x04);
                }
                let len = (next() % 600) as usize;
                let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let edtl = (next() % 2048) as u32;
                let a = run(&lu, N1, &c, edtl, Some(&data));
                let cmd = Command { nexus: N1, lun: 0, cdb: &c, expected_len: edtl, data_out: Some(&data) };
                let _ = lu.io_done(&cmd, IoResult::Ok);
                let _ = lu.lba_status_done(&cmd, &[]);
                let _ = lu.data_out_len(&c);
                drop(a);
            }
        }
    }
}
