//! EXTENDED COPY and RECEIVE COPY RESULTS through [`LogicalUnit::execute`]: the copy manager's checks, the segment
//! byte ranges it hands the driver, and the results it keeps per I_T nexus and list identifier.

use super::*;
use crate::xcopy::tests::list;

const N1: NexusId = NexusId(1);
const N2: NexusId = NexusId(2);
const NAA: u64 = 0x6001_4050_0000_0001;

fn lu(naa: u64) -> LogicalUnit {
    let lu = LogicalUnit::new(LuConfig { num_blocks: 1000, naa_id: naa, ..LuConfig::default() });
    for n in [N1, N2] {
        let tur = [0u8; 6];
        let _ = lu.execute(&Command { nexus: n, lun: 0, cdb: &tur, expected_len: 0, data_out: None });
    }
    lu
}

fn xcopy_cdb(len: usize) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&(len as u32).to_be_bytes());
    c
}

fn rcr_cdb(sa: u8, list_id: u8, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn xcopy(lu: &LogicalUnit, nexus: NexusId, p: &[u8]) -> Action {
    let cdb = xcopy_cdb(p.len());
    lu.execute(&Command { nexus, lun: 0, cdb: &cdb, expected_len: p.len() as u32, data_out: Some(p) })
}

fn job(a: Action) -> Box<CopyJob> {
    match a {
        Action::ExtendedCopy(j) => j,
        other => panic!("expected an EXTENDED COPY, got {other:?}"),
    }
}

fn rcr(lu: &LogicalUnit, nexus: NexusId, sa: u8, list_id: u8, alloc: u32) -> Response {
    let cdb = rcr_cdb(sa, list_id, alloc);
    match lu.execute(&Command { nexus, lun: 0, cdb: &cdb, expected_len: alloc, data_out: None }) {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn check(r: &Response, sense: Sense) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(r.sense.as_deref(), Some(&sense.to_fixed()[..]), "expected {sense:?}");
}

fn done(
    lu: &LogicalUnit,
    nexus: NexusId,
    j: &CopyJob,
    segments: usize,
    bytes: u64,
    failure: Option<CopyFailure>,
) -> Response {
    let cdb = xcopy_cdb(0);
    let cmd = Command { nexus, lun: 0, cdb: &cdb, expected_len: 0, data_out: None };
    lu.copy_done(&cmd, j, &CopyOutcome { segments, bytes, failure })
}

#[test]
fn copy_targets_segments_and_copy_status() {
    let other = lu(0x6001_4050_0000_0002);
    let lu = lu(NAA);
    let j = job(xcopy(&lu, N1, &list(7, 0, NAA, &[(0, 0, 16, 0, 100)])));
    assert!(lu.is_copy_target(&j.targets()[0]));
    assert!(!other.is_copy_target(&j.targets()[0]), "another NAA designator");
    let found = [Some(CopyTargetRef { lu: &lu, read_only: false })];
    assert_eq!(j.check_targets(&found), Ok(()));
    assert_eq!(
        j.segment(0, N1, &found),
        Ok(SegmentIo { source: 0, destination: 0, source_offset: 0, destination_offset: 100 * 512, len: 16 * 512 })
    );
    // While it runs: COPY STATUS "in progress", no failed segment details, the list identifier is taken.
    assert_eq!(rcr(&lu, N1, 0, 7, 64).data, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    check(&rcr(&lu, N1, 4, 7, 64), Sense::invalid_field_in_cdb(2, None));
    check(&respond(xcopy(&lu, N1, &list(7, 0, NAA, &[]))), Sense::operation_in_progress());
    // Another nexus has its own list identifiers.
    let j2 = job(xcopy(&lu, N2, &list(7, 0, NAA, &[])));
    check(&rcr(&lu, N2, 0, 8, 64), Sense::invalid_field_in_cdb(2, None));
    assert_eq!(done(&lu, N2, &j2, 0, 0, None).status, Status::Good);
    // Done: completed without error, one segment, 8 KiB; held until COPY STATUS returned it once.
    assert_eq!(done(&lu, N1, &j, 1, 16 * 512, None), Response::good(Vec::new()));
    assert_eq!(rcr(&lu, N1, 0, 7, 4).data, [0, 0, 0, 8], "truncated: not discarded");
    assert_eq!(rcr(&lu, N1, 0, 7, 64).data, [0, 0, 0, 8, 1, 0, 1, 0, 0, 0, 0x20, 0]);
    check(&rcr(&lu, N1, 0, 7, 64), Sense::invalid_field_in_cdb(2, None));
    check(&rcr(&lu, N1, 4, 7, 64), Sense::invalid_field_in_cdb(2, None));
}

fn respond(a: Action) -> Response {
    match a {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn segment_errors_are_copy_aborted() {
    let lu = lu(NAA);
    let rw = [Some(CopyTargetRef { lu: &lu, read_only: false })];
    let ro = [Some(CopyTargetRef { lu: &lu, read_only: true })];
    let j = job(xcopy(
        &lu,
        N1,
        &list(1, 0, NAA, &[(0, 1, 1, 0, 0), (0, 0, 2, 999, 0), (0, 0, 1, 0, 1000), (0, 0, 1, 0, 0)]),
    ));
    assert_eq!(j.segment(0, N1, &rw), Err(Sense::copy_aborted(0x00, 0x00, 0, 6)), "no target descriptor 1");
    assert_eq!(j.segment(1, N1, &rw), Err(Sense::copy_aborted(0x00, 0x00, 1, 12)), "source beyond the end");
    assert_eq!(j.segment(2, N1, &rw), Err(Sense::copy_aborted(0x00, 0x00, 2, 20)), "destination beyond the end");
    assert_eq!(j.segment(3, N1, &ro), Err(Sense::copy_aborted(0x27, 0x00, 3, 6)), "read-only destination LUN");
    assert_eq!(j.segment(3, N1, &[None]), Err(Sense::copy_aborted(0x0D, 0x02, 3, 4)), "target not found");
    assert_eq!(
        j.check_targets(&[None]),
        Err(Sense::new(SenseKey::CopyAborted, 0x0D, 0x02).with_sks(SenseKeySpecific::SegmentPointer {
            in_segment: false,
            byte: 16,
            bit: None
        }))
    );
    let small = LogicalUnit::new(LuConfig { block_size: 4096, num_blocks: 10, naa_id: NAA, ..LuConfig::default() });
    assert_eq!(
        j.check_targets(&[Some(CopyTargetRef { lu: &small, read_only: false })]),
        Err(Sense::invalid_field_in_param_list(45, None)),
        "DISK BLOCK LENGTH differs"
    );
    // The failure is reported with FAILED SEGMENT DETAILS (status and sense data) and COPY STATUS 02h.
    let failure = CopyFailure::Sense(Sense::copy_aborted(0x00, 0x00, 1, 12));
    let r = done(&lu, N1, &j, 1, 512, Some(failure));
    check(&r, Sense::copy_aborted(0x00, 0x00, 1, 12));
    let d = rcr(&lu, N1, 4, 1, 1024).data;
    assert_eq!(d.len(), 60 + 18);
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), 74);
    assert_eq!((d[56], u16::from_be_bytes([d[58], d[59]])), (0x02, 18));
    assert_eq!(&d[60..], &r.sense.unwrap()[..]);
    assert_eq!(rcr(&lu, N1, 0, 1, 64).data, [0, 0, 0, 8, 2, 0, 1, 0, 0, 0, 2, 0]);
    check(&rcr(&lu, N1, 4, 1, 1024), Sense::invalid_field_in_cdb(2, None));
    // I/O errors of copy targets are THIRD PARTY DEVICE FAILURE pointing at the source or destination index.
    let j2 = job(xcopy(&lu, N1, &list(2, 0b10, NAA, &[])));
    let io = CopyFailure::Io { segment: 0, source: false, result: IoResult::MediumError };
    check(&done(&lu, N1, &j2, 0, 0, Some(io)), Sense::copy_aborted(0x0D, 0x01, 0, 6));
    // LIST ID USAGE 10b: nothing is held after completion.
    check(&rcr(&lu, N1, 0, 2, 64), Sense::invalid_field_in_cdb(2, None));
    // A reservation of another nexus.
    let reserve6 = [0x16u8, 0, 0, 0, 0, 0];
    assert_eq!(
        lu.execute(&Command { nexus: N2, lun: 0, cdb: &reserve6, expected_len: 0, data_out: None }),
        Action::Respond(Response::good(Vec::new()))
    );
    assert_eq!(j.segment(3, N1, &rw), Err(Sense::copy_aborted(0x0D, 0x01, 3, 4)));
}

#[test]
fn results_are_per_nexus_and_go_with_it() {
    let lu = lu(NAA);
    let j = job(xcopy(&lu, N1, &list(3, 0, NAA, &[])));
    assert_eq!(done(&lu, N1, &j, 0, 0, None).status, Status::Good);
    check(&rcr(&lu, N2, 0, 3, 64), Sense::invalid_field_in_cdb(2, None));
    lu.nexus_gone(N1);
    check(&rcr(&lu, N1, 0, 3, 64), Sense::power_on_reset());
    check(&rcr(&lu, N1, 0, 3, 64), Sense::invalid_field_in_cdb(2, None));
    // LIST ID USAGE 11b takes no list identifier and holds nothing.
    let j = job(xcopy(&lu, N2, &list(0, 0b11, NAA, &[])));
    assert_eq!(done(&lu, N2, &j, 0, 0, None).status, Status::Good);
    check(&rcr(&lu, N2, 0, 0, 64), Sense::invalid_field_in_cdb(2, None));
}

#[test]
fn empty_list_and_parameter_list_length() {
    let lu = lu(NAA);
    assert_eq!(respond(xcopy(&lu, N1, &[])), Response::good(Vec::new()));
    // The CDB asks for more than the Data-Out holds.
    let cdb = xcopy_cdb(100);
    let r = respond(lu.execute(&Command { nexus: N1, lun: 0, cdb: &cdb, expected_len: 10, data_out: Some(&[0; 10]) }));
    check(&r, Sense::parameter_list_length_error());
    // LID4 and unknown RECEIVE COPY RESULTS service actions.
    let mut lid4 = xcopy_cdb(0);
    lid4[1] = 0x01;
    check(
        &respond(lu.execute(&Command { nexus: N1, lun: 0, cdb: &lid4, expected_len: 0, data_out: None })),
        Sense::invalid_field_in_cdb(1, Some(4)),
    );
    check(&rcr(&lu, N1, 0x05, 0, 64), Sense::invalid_field_in_cdb(1, Some(4)));
}

#[test]
fn operating_parameters_and_third_party_copy_page() {
    let lu = lu(NAA);
    let d = rcr(&lu, N1, 3, 0, 1024).data;
    assert_eq!(d.len(), 46);
    assert_eq!(u16::from_be_bytes([d[8], d[9]]), 16, "MAXIMUM TARGET DESCRIPTOR COUNT");
    assert_eq!(u16::from_be_bytes([d[10], d[11]]), 64, "MAXIMUM SEGMENT DESCRIPTOR COUNT");
    assert_eq!(rcr(&lu, N1, 3, 0, 10).data, d[..10]);
    let inq = [0x12u8, 1, 0x8F, 0x04, 0, 0];
    let p = respond(lu.execute(&Command { nexus: N1, lun: 0, cdb: &inq, expected_len: 1024, data_out: None })).data;
    assert_eq!(&p[..2], &[0x00, 0x8F]);
    assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len() - 4);
}

#[test]
fn random_parameter_lists_never_panic() {
    let mut state = 0x00C0_FFEE_5EED_0001u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let lu = lu(NAA);
    for _ in 0..2000 {
        // A header that often describes the list, descriptors of random bytes with a valid type code at times.
        let targets = (next() % 4) as usize;
        let segments = (next() % 4) as usize;
        let mut p = list((next() % 4) as u8, (next() % 4) as u8, NAA, &[]);
        p.truncate(16);
        p[2..4].copy_from_slice(&((targets * 32) as u16).to_be_bytes());
        p[8..12].copy_from_slice(&((segments * 28) as u32).to_be_bytes());
        for i in 0..targets * 32 + segments * 28 {
            p.push(next() as u8);
            if i % 32 == 0 && i < targets * 32 && next() % 2 == 0 {
                *p.last_mut().unwrap() = 0xE4;
            }
        }
        for k in 0..segments {
            let at = 16 + targets * 32 + k * 28;
            if next() % 2 == 0 {
                p[at] = 0x02;
                p[at + 2..at + 4].copy_from_slice(&0x18u16.to_be_bytes());
            }
        }
        if next() % 4 == 0 {
            p.truncate((next() as usize) % (p.len() + 1));
        }
        if let Action::ExtendedCopy(j) = xcopy(&lu, N1, &p) {
            let found: Vec<_> = (0..j.targets().len())
                .map(|_| (next() % 2 == 0).then_some(CopyTargetRef { lu: &lu, read_only: next() % 2 == 0 }))
                .collect();
            let _ = j.check_targets(&found);
            for i in 0..j.segment_count() + 1 {
                let _ = j.segment(i, N1, &found);
            }
            let _ = done(&lu, N1, &j, 0, 0, None);
        }
        for sa in [0u8, 1, 3, 4, 5] {
            let _ = rcr(&lu, N1, sa, (next() % 4) as u8, (next() % 100) as u32);
        }
    }
}
