//! Persistent reservation, SPC-2 reservation and conflict tests: CDB and parameter list bytes in, status, sense,
//! data and unit attentions out.

use super::*;
use crate::transport_id::{NexusIdentity, TransportId};
use crate::{Action, Command, LogicalUnit, LuConfig, Response, Sense, Status};

/// A: initiator iqn.a port 1 through target port 1.
const A: NexusId = NexusId(1);
/// B: initiator iqn.b through target port 1.
const B: NexusId = NexusId(2);
/// A2: the same initiator port as A, through target port 2.
const A2: NexusId = NexusId(3);
/// C: initiator iqn.c through target port 1 (never registers).
const C: NexusId = NexusId(4);
/// O: an observer that only reads the state (never registered, so never gets reservation unit attentions).
const O: NexusId = NexusId(5);

const KA: u64 = 0xAAAA_0000_0000_0001;
const KB: u64 = 0xBBBB_0000_0000_0002;
const KC: u64 = 0xCCCC_0000_0000_0003;

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const WRITE10: [u8; 10] = [0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0];

fn isid(n: u8) -> [u8; 6] {
    [0x80, 0, 0, 0, 0, n]
}

fn identity(n: NexusId) -> NexusIdentity {
    match n {
        A => NexusIdentity::iscsi("iqn.a", isid(1), "iqn.t", 1, 1),
        B => NexusIdentity::iscsi("iqn.b", isid(2), "iqn.t", 1, 1),
        A2 => NexusIdentity::iscsi("iqn.a", isid(1), "iqn.t", 2, 2),
        C => NexusIdentity::iscsi("iqn.c", isid(3), "iqn.t", 1, 1),
        _ => NexusIdentity::iscsi(&format!("iqn.n{}", n.0), isid(9), "iqn.t", 1, 1),
    }
}

/// A logical unit with A, B, A2 and C bound and their POWER ON unit attentions delivered.
fn setup() -> LogicalUnit {
    let lu = LogicalUnit::new(LuConfig { num_blocks: 100, ..LuConfig::default() });
    for n in [A, B, A2, C, O] {
        lu.bind_nexus(n, identity(n));
        assert_eq!(status(&lu, n, &TUR), Status::CheckCondition);
        assert_eq!(status(&lu, n, &TUR), Status::Good);
    }
    lu
}

fn run(lu: &LogicalUnit, n: NexusId, cdb: &[u8], data: Option<&[u8]>) -> Action {
    lu.execute(&Command { nexus: n, lun: 0, cdb, expected_len: 0, data_out: data })
}

fn response(lu: &LogicalUnit, n: NexusId, cdb: &[u8], data: Option<&[u8]>) -> Response {
    match run(lu, n, cdb, data) {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The status a command would end with: GOOD for a block operation (the driver would run it).
fn status(lu: &LogicalUnit, n: NexusId, cdb: &[u8]) -> Status {
    match run(lu, n, cdb, None) {
        Action::Respond(r) => r.status,
        _ => Status::Good,
    }
}

fn sense_of(r: &Response) -> Sense {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let s = r.sense.as_ref().expect("sense");
    let key = match s[2] & 0x0F {
        0x5 => crate::SenseKey::IllegalRequest,
        0x6 => crate::SenseKey::UnitAttention,
        k => panic!("unexpected sense key {k}"),
    };
    let mut out = Sense::new(key, s[12], s[13]);
    if s[15] & 0x80 != 0 {
        let bit = (s[15] & 0x08 != 0).then_some(s[15] & 0x07);
        out = out.with_sks(crate::SenseKeySpecific::FieldPointer {
            in_cdb: s[15] & 0x40 != 0,
            byte: u16::from_be_bytes([s[16], s[17]]),
            bit,
        });
    }
    out
}

fn param(rk: u64, sark: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[20] = flags;
    p
}

fn prout_cdb(sa: u16, ty: u8, len: usize) -> [u8; 10] {
    let l = (len as u32).to_be_bytes();
    [0x5F, sa as u8, ty, 0, 0, l[0], l[1], l[2], l[3], 0]
}

fn prout_raw(lu: &LogicalUnit, n: NexusId, sa: u16, ty: u8, p: &[u8]) -> Response {
    response(lu, n, &prout_cdb(sa, ty, p.len()), Some(p))
}

fn prout(lu: &LogicalUnit, n: NexusId, sa: u16, ty: u8, rk: u64, sark: u64, flags: u8) -> Response {
    prout_raw(lu, n, sa, ty, &param(rk, sark, flags))
}

fn ok(r: Response) {
    assert_eq!((r.status, r.sense), (Status::Good, None));
}

fn conflict(r: Response) {
    assert_eq!((r.status, r.sense), (Status::ReservationConflict, None));
}

fn register(lu: &LogicalUnit, n: NexusId, key: u64) {
    ok(prout(lu, n, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, key, 0));
}

fn reserve(lu: &LogicalUnit, n: NexusId, key: u64, ty: PrType) {
    ok(prout(lu, n, sa_out::RESERVE, ty as u8, key, 0, 0));
}

fn prin(lu: &LogicalUnit, n: NexusId, sa: u16, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    let cdb = [0x5E, sa as u8, 0, 0, 0, 0, 0, a[0], a[1], 0];
    let mut r = response(lu, n, &cdb, None);
    if n == O && r.status == Status::CheckCondition {
        // The observer's first contact with a logical unit (POWER ON).
        r = response(lu, n, &cdb, None);
    }
    assert_eq!(r.status, Status::Good, "{r:?}");
    r.data
}

fn keys(lu: &LogicalUnit) -> (u32, Vec<u64>) {
    let d = prin(lu, O, sa_in::READ_KEYS, 4096);
    let gen = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let len = u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as usize;
    assert_eq!(d.len(), 8 + len);
    (gen, d[8..].chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect())
}

/// (key, type) of the reservation, if any.
fn reservation(lu: &LogicalUnit) -> Option<(u64, u8)> {
    let d = prin(lu, O, sa_in::READ_RESERVATION, 4096);
    match u32::from_be_bytes([d[4], d[5], d[6], d[7]]) {
        0 => {
            assert_eq!(d.len(), 8);
            None
        }
        16 => {
            assert_eq!(d.len(), 24);
            assert_eq!(d[21] >> 4, 0, "LU_SCOPE");
            Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21] & 0x0F))
        }
        l => panic!("additional length {l}"),
    }
}

/// The unit attentions pending for `n`, taken through REQUEST SENSE.
fn pending_uas(lu: &LogicalUnit, n: NexusId) -> Vec<(u8, u8)> {
    let mut v = Vec::new();
    loop {
        let r = response(lu, n, &[0x03, 0, 0, 0, 18, 0], None);
        if r.data[2] & 0x0F != 0x6 {
            return v;
        }
        v.push((r.data[12], r.data[13]));
    }
}

const ALL_TYPES: [PrType; 6] = [
    PrType::WriteExclusive,
    PrType::ExclusiveAccess,
    PrType::WriteExclusiveRegistrantsOnly,
    PrType::ExclusiveAccessRegistrantsOnly,
    PrType::WriteExclusiveAllRegistrants,
    PrType::ExclusiveAccessAllRegistrants,
];

#[test]
fn register_read_keys_and_generation() {
    let lu = setup();
    assert_eq!(keys(&lu), (0, vec![]));
    // REGISTER from an unregistered nexus with a non-zero RESERVATION KEY conflicts, and changes nothing.
    conflict(prout(&lu, A, sa_out::REGISTER, 0, KA, KA, 0));
    assert_eq!(keys(&lu), (0, vec![]));
    // A zero SERVICE ACTION RESERVATION KEY from an unregistered nexus registers nothing.
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, 0, 0));
    assert_eq!(keys(&lu), (1, vec![]));
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0));
    ok(prout(&lu, B, sa_out::REGISTER, 0, 0, KB, 0));
    assert_eq!(keys(&lu), (3, vec![KA, KB]));
    // Re-registering needs the current key.
    conflict(prout(&lu, A, sa_out::REGISTER, 0, 0, KC, 0));
    conflict(prout(&lu, A, sa_out::REGISTER, 0, KB, KC, 0));
    ok(prout(&lu, A, sa_out::REGISTER, 0, KA, KC, 0));
    assert_eq!(keys(&lu), (4, vec![KC, KB]));
    // REGISTER AND IGNORE EXISTING KEY does not look at the key.
    ok(prout(&lu, A, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x1234, KA, 0));
    assert_eq!(keys(&lu), (5, vec![KA, KB]));
    // Unregister.
    ok(prout(&lu, B, sa_out::REGISTER, 0, KB, 0, 0));
    assert_eq!(keys(&lu), (6, vec![KA]));
    // READ KEYS truncated to the allocation length keeps the full ADDITIONAL LENGTH.
    register(&lu, B, KB);
    let d = prin(&lu, A, sa_in::READ_KEYS, 12);
    assert_eq!(d, [0, 0, 0, 7, 0, 0, 0, 16, 0xAA, 0xAA, 0, 0]);
}

#[test]
fn parameter_list_errors() {
    let lu = setup();
    let len_err = Sense::parameter_list_length_error();
    for len in [0usize, 23, 25, 32] {
        let p = vec![0u8; len];
        let r = prout_raw(&lu, A, sa_out::REGISTER, 0, &p);
        assert_eq!(sense_of(&r), len_err, "length {len}");
    }
    // Fewer bytes than the PARAMETER LIST LENGTH arrived.
    let p = param(0, KA, 0);
    let r = response(&lu, A, &prout_cdb(sa_out::REGISTER, 0, 24), Some(&p[..20]));
    assert_eq!(sense_of(&r), len_err);
    let r = response(&lu, A, &prout_cdb(sa_out::REGISTER, 0, 24), None);
    assert_eq!(sense_of(&r), len_err);
    // Unsupported service actions (REPLACE LOST RESERVATION and above) and PRIN beyond READ FULL STATUS.
    for sa in [8u16, 0x1F] {
        let r = prout(&lu, A, sa, 0, 0, 0, 0);
        assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(4)));
    }
    for sa in 4u8..=0x1F {
        let r = response(&lu, A, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], None);
        assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(4)));
    }
    // Service actions other than REGISTER*/REGISTER AND MOVE need 24 bytes too, once registered.
    register(&lu, A, KA);
    let r = prout_raw(&lu, A, sa_out::RESERVE, 1, &[0u8; 28]);
    assert_eq!(sense_of(&r), len_err);
    assert_eq!(keys(&lu), (1, vec![KA]));
}

#[test]
fn reserve_every_type_and_read_reservation() {
    for ty in ALL_TYPES {
        let lu = setup();
        // Unregistered nexuses cannot reserve.
        conflict(prout(&lu, A, sa_out::RESERVE, ty as u8, 0, 0, 0));
        register(&lu, A, KA);
        register(&lu, B, KB);
        // A wrong key conflicts.
        conflict(prout(&lu, A, sa_out::RESERVE, ty as u8, KB, 0, 0));
        reserve(&lu, A, KA, ty);
        let key = if ty.all_registrants() { 0 } else { KA };
        assert_eq!(reservation(&lu), Some((key, ty as u8)), "{ty:?}");
        // The holder may repeat the same reservation but not change its type.
        reserve(&lu, A, KA, ty);
        let other = if ty == PrType::WriteExclusive { PrType::ExclusiveAccess } else { PrType::WriteExclusive };
        conflict(prout(&lu, A, sa_out::RESERVE, other as u8, KA, 0, 0));
        // Another registrant: GOOD for All Registrants (it is a holder), conflict otherwise.
        let r = prout(&lu, B, sa_out::RESERVE, ty as u8, KB, 0, 0);
        if ty.all_registrants() {
            ok(r);
        } else {
            conflict(r);
        }
        // RESERVE and RELEASE do not change the generation.
        assert_eq!(keys(&lu).0, 2);
    }
}

#[test]
fn reserve_checks_scope_and_type() {
    let lu = setup();
    register(&lu, A, KA);
    for ty in [0u8, 2, 4, 9, 0xF] {
        let r = prout(&lu, A, sa_out::RESERVE, ty, KA, 0, 0);
        assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(2, Some(3)), "type {ty}");
    }
    let r = prout(&lu, A, sa_out::RESERVE, 0x11, KA, 0, 0);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(2, Some(7)));
    assert_eq!(reservation(&lu), None);
}

/// libiscsi's ProutReserve.Access* expectations: (registered reads, registered writes, unregistered reads,
/// unregistered writes) for a nexus other than the holder.
#[test]
fn access_by_type() {
    let expect = [
        (PrType::ExclusiveAccess, [false, false, false, false]),
        (PrType::WriteExclusive, [true, false, true, false]),
        (PrType::ExclusiveAccessRegistrantsOnly, [true, true, false, false]),
        (PrType::WriteExclusiveRegistrantsOnly, [true, true, true, false]),
        (PrType::ExclusiveAccessAllRegistrants, [true, true, false, false]),
        (PrType::WriteExclusiveAllRegistrants, [true, true, true, false]),
    ];
    for (ty, [rr, rw, ur, uw]) in expect {
        let lu = setup();
        register(&lu, A, KA);
        register(&lu, B, KB);
        reserve(&lu, A, KA, ty);
        let allowed = |n, cdb: &[u8]| status(&lu, n, cdb) != Status::ReservationConflict;
        assert!(allowed(A, &READ10) && allowed(A, &WRITE10), "{ty:?} holder");
        assert_eq!([allowed(B, &READ10), allowed(B, &WRITE10)], [rr, rw], "{ty:?} registered");
        assert_eq!([allowed(C, &READ10), allowed(C, &WRITE10)], [ur, uw], "{ty:?} unregistered");
        // Unregistering B leaves it with the unregistered access.
        ok(prout(&lu, B, sa_out::REGISTER, 0, KB, 0, 0));
        assert_eq!([allowed(B, &READ10), allowed(B, &WRITE10)], [ur, uw], "{ty:?} unregistered B");
    }
}

/// SPC-4 table 62 / SBC-3 table 13 per command class, for an unregistered nexus.
#[test]
fn conflicts_per_command_class() {
    // (CDB, allowed under Write Exclusive, allowed under Exclusive Access)
    let cases: Vec<(Vec<u8>, bool, bool)> = vec![
        (vec![0x12, 0, 0, 0, 36, 0], true, true),                  // INQUIRY
        (vec![0x03, 0, 0, 0, 18, 0], true, true),                  // REQUEST SENSE
        (TUR.to_vec(), true, true),                                // TEST UNIT READY
        (vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], true, true),       // READ CAPACITY(10)
        (vec![0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], true, true), // READ CAPACITY(16)
        (vec![0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], true, true),       // PERSISTENT RESERVE IN
        (vec![0x1E, 0, 0, 0, 0, 0], true, true),                   // PREVENT ALLOW, PREVENT = 0
        (vec![0x1E, 0, 0, 0, 1, 0], false, false),                 // PREVENT ALLOW, PREVENT = 1
        (vec![0x1B, 0, 0, 0, 1, 0], true, true),                   // START STOP UNIT, START
        (vec![0x1B, 0, 0, 0, 0, 0], false, false),                 // START STOP UNIT, STOP
        (vec![0x1A, 0, 0x3F, 0, 192, 0], true, false),             // MODE SENSE(6)
        (vec![0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 192, 0], true, false), // MODE SENSE(10)
        (vec![0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], true, false), // REPORT SUPPORTED OPERATION CODES
        (READ10.to_vec(), true, false),                            // READ(10)
        (vec![0x08, 0, 0, 1, 1, 0], true, false),                  // READ(6)
        (vec![0x2F, 0, 0, 0, 0, 1, 0, 0, 1, 0], true, false),      // VERIFY(10)
        (vec![0x34, 0, 0, 0, 0, 1, 0, 0, 1, 0], true, false),      // PRE-FETCH(10)
        (WRITE10.to_vec(), false, false),                          // WRITE(10)
        (vec![0x2E, 0, 0, 0, 0, 1, 0, 0, 1, 0], false, false),     // WRITE AND VERIFY(10)
        (vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], false, false),     // SYNCHRONIZE CACHE(10)
        // The SBC-3 commands of the thin provisioning / atomicity work (SBC-3 table 13, SPC-4 table 62).
        (vec![0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], false, false), // COMPARE AND WRITE
        (vec![0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0], false, false),     // WRITE SAME(10)
        (vec![0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], false, false), // WRITE SAME(16)
        (vec![0x8B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], false, false), // ORWRITE(16)
        (vec![0x9C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], false, false), // WRITE ATOMIC(16)
        (vec![0x8E, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], false, false), // WRITE AND VERIFY(16)
        (vec![0x15, 0x10, 0, 0, 0, 0], false, false),              // MODE SELECT(6)
        (vec![0x55, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], false, false),  // MODE SELECT(10)
        (vec![0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], true, false), // GET LBA STATUS
        (vec![0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], true, false), // REPORT SUPPORTED TMFS
        (vec![0x37, 0, 0x18, 0, 0, 0, 0, 0, 8, 0], true, false),   // READ DEFECT DATA(10)
        (vec![0xB7, 0x18, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], true, false), // READ DEFECT DATA(12)
    ];
    for (ty, ea) in [(PrType::WriteExclusive, false), (PrType::ExclusiveAccess, true)] {
        let lu = setup();
        register(&lu, A, KA);
        reserve(&lu, A, KA, ty);
        for (cdb, we_ok, ea_ok) in &cases {
            let allowed = if ea { *ea_ok } else { *we_ok };
            let got = status(&lu, C, cdb) != Status::ReservationConflict;
            assert_eq!(got, allowed, "{ty:?} {:02x?}", cdb);
            // The holder is never in conflict.
            assert_ne!(status(&lu, A, cdb), Status::ReservationConflict, "{ty:?} holder {:02x?}", cdb);
        }
        // SANITIZE is a write (and occupies the logical unit until its block operation ends: checked last).
        let sanitize = [0x48, 0x01, 0, 0, 0, 0, 0, 0, 8, 0];
        assert_eq!(status(&lu, C, &sanitize), Status::ReservationConflict, "{ty:?} SANITIZE");
        // Opcode checks come first: an unsupported opcode is still INVALID COMMAND OPERATION CODE.
        let r = response(&lu, C, &[0xFF, 0, 0, 0, 0, 0], None);
        assert_eq!(sense_of(&r), Sense::invalid_opcode());
        // Classification of commands other modules implement.
        for (cdb, access) in [
            (&[0x89u8][..], crate::reserve::Access::Write), // COMPARE AND WRITE
            (&[0x42], crate::reserve::Access::Write),       // UNMAP
            (&[0x93], crate::reserve::Access::Write),       // WRITE SAME(16)
            (&[0x15], crate::reserve::Access::Write),       // MODE SELECT(6)
            (&[0x9E, 0x12], crate::reserve::Access::Read),  // GET LBA STATUS
            (&[0x37], crate::reserve::Access::Read),        // READ DEFECT DATA(10)
            (&[0xA3, 0x0A], crate::reserve::Access::PrAllowed), // REPORT TARGET PORT GROUPS
            (&[0x4D], crate::reserve::Access::PrAllowed),   // LOG SENSE
            (&[0x48, 0x02], crate::reserve::Access::Write), // SANITIZE BLOCK ERASE
            (&[0xA3, 0x0C], crate::reserve::Access::Read),  // REPORT SUPPORTED OPERATION CODES
        ] {
            assert_eq!(crate::reserve::classify(cdb), access, "{cdb:02x?}");
        }
    }
}

#[test]
fn unit_attention_comes_before_conflict() {
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, B, KB, PrType::ExclusiveAccess);
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::ExclusiveAccess as u8, KA, KB, 0));
    let r = response(&lu, B, &READ10, None);
    assert_eq!(sense_of(&r), REGISTRATIONS_PREEMPTED);
    assert_eq!(status(&lu, B, &READ10), Status::ReservationConflict);
}

#[test]
fn release_rules_and_unit_attentions() {
    for ty in ALL_TYPES {
        let lu = setup();
        register(&lu, A, KA);
        register(&lu, B, KB);
        reserve(&lu, A, KA, ty);
        // Unregistered: conflict. Registered with a wrong key: conflict.
        conflict(prout(&lu, C, sa_out::RELEASE, ty as u8, 0, 0, 0));
        conflict(prout(&lu, A, sa_out::RELEASE, ty as u8, KB, 0, 0));
        if !ty.all_registrants() {
            // A registered non-holder's RELEASE is GOOD and does nothing.
            ok(prout(&lu, B, sa_out::RELEASE, ty as u8, KB, 0, 0));
            assert!(reservation(&lu).is_some());
        }
        // The holder naming another type: INVALID RELEASE OF PERSISTENT RESERVATION.
        let other = if ty == PrType::WriteExclusive { PrType::ExclusiveAccess } else { PrType::WriteExclusive };
        let r = prout(&lu, A, sa_out::RELEASE, other as u8, KA, 0, 0);
        assert_eq!(sense_of(&r), INVALID_RELEASE);
        ok(prout(&lu, A, sa_out::RELEASE, ty as u8, KA, 0, 0));
        assert_eq!(reservation(&lu), None);
        // RESERVATIONS RELEASED goes to the other registrants of Registrants Only / All Registrants types.
        let expect_b = if ty.registrants_access() { vec![(0x2A, 0x04)] } else { vec![] };
        assert_eq!(pending_uas(&lu, B), expect_b, "{ty:?}");
        assert_eq!(pending_uas(&lu, A), vec![], "{ty:?}");
        assert_eq!(pending_uas(&lu, C), vec![], "{ty:?}");
        // Releasing when not reserved is GOOD.
        ok(prout(&lu, A, sa_out::RELEASE, ty as u8, KA, 0, 0));
        assert_eq!(keys(&lu), (2, vec![KA, KB]));
    }
}

#[test]
fn unregistering_the_holder() {
    // Write Exclusive: the reservation goes, silently.
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, A, KA, PrType::WriteExclusive);
    ok(prout(&lu, A, sa_out::REGISTER, 0, KA, 0, 0));
    assert_eq!(reservation(&lu), None);
    assert_eq!(pending_uas(&lu, B), vec![]);
    // Registrants Only: the release is announced to the remaining registrants.
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, A, KA, PrType::ExclusiveAccessRegistrantsOnly);
    ok(prout(&lu, A, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, 0, 0));
    assert_eq!(reservation(&lu), None);
    assert_eq!(pending_uas(&lu, B), vec![(0x2A, 0x04)]);
    assert_eq!(pending_uas(&lu, A), vec![]);
    // All Registrants: the reservation lasts while anybody is registered.
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, A, KA, PrType::WriteExclusiveAllRegistrants);
    ok(prout(&lu, A, sa_out::REGISTER, 0, KA, 0, 0));
    assert_eq!(reservation(&lu), Some((0, PrType::WriteExclusiveAllRegistrants as u8)));
    assert_eq!(status(&lu, A, &WRITE10), Status::ReservationConflict);
    assert_eq!(status(&lu, B, &WRITE10), Status::Good);
    ok(prout(&lu, B, sa_out::REGISTER, 0, KB, 0, 0));
    assert_eq!(reservation(&lu), None);
}

#[test]
fn clear() {
    let lu = setup();
    conflict(prout(&lu, A, sa_out::CLEAR, 0, 0, 0, 0));
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, B, KB, PrType::ExclusiveAccess);
    conflict(prout(&lu, A, sa_out::CLEAR, 0, KB, 0, 0));
    ok(prout(&lu, A, sa_out::CLEAR, 0, KA, 0, 0));
    assert_eq!(keys(&lu), (3, vec![]));
    assert_eq!(reservation(&lu), None);
    assert_eq!(pending_uas(&lu, B), vec![(0x2A, 0x03)]);
    assert_eq!(pending_uas(&lu, A), vec![]);
    assert_eq!(pending_uas(&lu, C), vec![]);
    assert_eq!(status(&lu, C, &WRITE10), Status::Good);
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    // libiscsi ProutPreempt.RemoveRegistration.
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    let (gen, _) = keys(&lu);
    ok(prout(&lu, B, sa_out::PREEMPT, PrType::ExclusiveAccess as u8, KB, KA, 0));
    assert_eq!(keys(&lu), (gen + 1, vec![KB]));
    assert_eq!(reservation(&lu), None, "no reservation is created");
    assert_eq!(pending_uas(&lu, A), vec![(0x2A, 0x05)]);
    assert_eq!(pending_uas(&lu, B), vec![]);
    // A key nobody has (and zero) conflicts.
    conflict(prout(&lu, B, sa_out::PREEMPT, 1, KB, KC, 0));
    conflict(prout(&lu, B, sa_out::PREEMPT, 1, KB, 0, 0));
    // Unregistered or wrong key: conflict.
    conflict(prout(&lu, A, sa_out::PREEMPT, 1, KA, KB, 0));
    conflict(prout(&lu, B, sa_out::PREEMPT, 1, KA, KB, 0));
    assert_eq!(keys(&lu), (gen + 1, vec![KB]));
}

#[test]
fn preempt_the_holder() {
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    ok(prout(&lu, A2, sa_out::REGISTER, 0, 0, KC, 0));
    reserve(&lu, B, KB, PrType::WriteExclusive);
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::ExclusiveAccess as u8, KA, KB, 0));
    assert_eq!(reservation(&lu), Some((KA, PrType::ExclusiveAccess as u8)));
    assert_eq!(keys(&lu).1, vec![KA, KC]);
    assert_eq!(pending_uas(&lu, B), vec![(0x2A, 0x05)]);
    // The type changed: the remaining registrants learn that their reservation state changed.
    assert_eq!(pending_uas(&lu, A2), vec![(0x2A, 0x04)]);
    assert_eq!(pending_uas(&lu, A), vec![]);
    assert_eq!(status(&lu, B, &READ10), Status::ReservationConflict);
    // Preempting a non-holder's key removes only that registration.
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::ExclusiveAccess as u8, KA, KC, 0));
    assert_eq!(reservation(&lu), Some((KA, PrType::ExclusiveAccess as u8)));
    assert_eq!(keys(&lu).1, vec![KA]);
    assert_eq!(pending_uas(&lu, A2), vec![(0x2A, 0x05)]);
    // Zero SERVICE ACTION RESERVATION KEY with a reservation that is not All Registrants.
    let r = prout(&lu, A, sa_out::PREEMPT, 1, KA, 0, 0);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(8, None));
    // Preempting one's own reservation changes its type without unit attentions.
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::WriteExclusive as u8, KA, KA, 0));
    assert_eq!(reservation(&lu), Some((KA, PrType::WriteExclusive as u8)));
    assert_eq!(keys(&lu).1, vec![KA]);
    // An invalid type is refused.
    let r = prout(&lu, A, sa_out::PREEMPT, 2, KA, KA, 0);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(2, Some(3)));
}

#[test]
fn preempt_all_registrants() {
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    ok(prout(&lu, A2, sa_out::REGISTER, 0, 0, KC, 0));
    reserve(&lu, A, KA, PrType::ExclusiveAccessAllRegistrants);
    // A non-zero key removes that registration; the reservation stays.
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::WriteExclusive as u8, KA, KC, 0));
    assert_eq!(reservation(&lu), Some((0, PrType::ExclusiveAccessAllRegistrants as u8)));
    assert_eq!(pending_uas(&lu, A2), vec![(0x2A, 0x05)]);
    // Zero removes everybody else and makes the preempting nexus the holder of the new type.
    ok(prout(&lu, B, sa_out::PREEMPT, PrType::WriteExclusive as u8, KB, 0, 0));
    assert_eq!(reservation(&lu), Some((KB, PrType::WriteExclusive as u8)));
    assert_eq!(keys(&lu).1, vec![KB]);
    assert_eq!(pending_uas(&lu, A), vec![(0x2A, 0x05)]);
    assert_eq!(pending_uas(&lu, B), vec![]);
}

#[test]
fn preempt_and_abort_names_the_nexuses_to_abort() {
    let lu = setup();
    register(&lu, A, KA);
    register(&lu, B, KB);
    reserve(&lu, B, KB, PrType::ExclusiveAccess);
    ok(prout(&lu, A, sa_out::PREEMPT, PrType::ExclusiveAccess as u8, KA, KA, 0));
    assert_eq!(lu.take_task_aborts(A), vec![], "PREEMPT aborts nothing");
    ok(prout(&lu, A, sa_out::PREEMPT_AND_ABORT, PrType::ExclusiveAccess as u8, KA, KB, 0));
    assert_eq!(lu.take_task_aborts(A), vec![B]);
    assert_eq!(lu.take_task_aborts(A), vec![]);
    assert_eq!(reservation(&lu), Some((KA, PrType::ExclusiveAccess as u8)));
    // Naming one's own key aborts one's own other tasks too.
    ok(prout(&lu, A, sa_out::PREEMPT_AND_ABORT, PrType::WriteExclusive as u8, KA, KA, 0));
    assert_eq!(lu.take_task_aborts(A), vec![A]);
    // A refused PREEMPT AND ABORT aborts nothing.
    conflict(prout(&lu, A, sa_out::PREEMPT_AND_ABORT, 1, KA, KC, 0));
    assert_eq!(lu.take_task_aborts(A), vec![]);
}

fn move_param(rk: u64, sark: u64, flags: u8, rtpi: u16, tid: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[17] = flags;
    p[18..20].copy_from_slice(&rtpi.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend_from_slice(tid);
    p
}

#[test]
fn register_and_move() {
    let lu = setup();
    let b_tid = TransportId::iscsi("iqn.b", Some(isid(2))).to_wire();
    let m = sa_out::REGISTER_AND_MOVE;
    // Unregistered, or registered but not the holder: conflict.
    conflict(prout_raw(&lu, A, m, 0, &move_param(0, KB, 0, 1, &b_tid)));
    register(&lu, A, KA);
    conflict(prout_raw(&lu, A, m, 0, &move_param(KA, KB, 0, 1, &b_tid)));
    reserve(&lu, A, KA, PrType::WriteExclusive);
    conflict(prout_raw(&lu, A, m, 0, &move_param(KC, KB, 0, 1, &b_tid)));
    // Parameter errors.
    let r = prout_raw(&lu, A, m, 0, &move_param(KA, 0, 0, 1, &b_tid));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(8, None));
    let r = prout_raw(&lu, A, m, 0, &move_param(KA, KB, 0, 77, &b_tid));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(18, None));
    let a_tid = TransportId::iscsi("iqn.a", Some(isid(1))).to_wire();
    let r = prout_raw(&lu, A, m, 0, &move_param(KA, KB, 0, 1, &a_tid));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(24, None));
    let mut p = move_param(KA, KB, 0, 1, &b_tid);
    p.truncate(p.len() - 4);
    let r = prout_raw(&lu, A, m, 0, &p);
    assert_eq!(sense_of(&r), Sense::parameter_list_length_error());
    let gen = keys(&lu).0;
    // Move to B (not yet registered), keeping A registered.
    ok(prout_raw(&lu, A, m, 0, &move_param(KA, KB, 0, 1, &b_tid)));
    assert_eq!(keys(&lu), (gen + 1, vec![KA, KB]));
    assert_eq!(reservation(&lu), Some((KB, PrType::WriteExclusive as u8)));
    assert_eq!(status(&lu, B, &WRITE10), Status::Good);
    assert_eq!(status(&lu, A, &WRITE10), Status::ReservationConflict);
    // And back with UNREG: B's registration goes.
    ok(prout_raw(&lu, B, m, 0, &move_param(KB, KC, 0x02, 1, &a_tid)));
    assert_eq!(keys(&lu).1, vec![KC]);
    assert_eq!(reservation(&lu), Some((KC, PrType::WriteExclusive as u8)));
    // All Registrants reservations cannot be moved.
    let lu2 = setup();
    register(&lu2, A, KA);
    reserve(&lu2, A, KA, PrType::WriteExclusiveAllRegistrants);
    conflict(prout_raw(&lu2, A, m, 0, &move_param(KA, KB, 0, 1, &b_tid)));
}

fn spec_i_pt_param(sark: u64, tids: &[Vec<u8>]) -> Vec<u8> {
    let mut p = param(0, sark, 0x08);
    let list: Vec<u8> = tids.concat();
    p.extend_from_slice(&(list.len() as u32).to_be_bytes());
    p.extend_from_slice(&list);
    p
}

#[test]
fn spec_i_pt_registers_the_named_initiator_ports() {
    let lu = setup();
    let b = TransportId::iscsi("iqn.b", Some(isid(2))).to_wire();
    let c_device = TransportId::iscsi("IQN.C", None).to_wire();
    ok(prout_raw(&lu, A, sa_out::REGISTER, 0, &spec_i_pt_param(KA, &[b, c_device])));
    assert_eq!(keys(&lu), (1, vec![KA, KA, KA]));
    // B and C (any of its initiator ports) are registered with KA through target port 1; A2 is not.
    reserve(&lu, B, KA, PrType::ExclusiveAccessRegistrantsOnly);
    assert_eq!(status(&lu, C, &WRITE10), Status::Good);
    assert_eq!(status(&lu, A2, &READ10), Status::ReservationConflict);
    // Once registered, SPEC_I_PT is an error; REGISTER AND IGNORE never takes it.
    let mut p = spec_i_pt_param(KA, &[]);
    p[0..8].copy_from_slice(&KA.to_be_bytes());
    let r = prout_raw(&lu, A, sa_out::REGISTER, 0, &p);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(20, Some(3)));
    let r = prout(&lu, A2, sa_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KC, 0x08);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(20, Some(3)));
    // A bad TransportID is pointed at, and nothing is registered.
    let mut bad = TransportId::iscsi("iqn.x", None).to_wire();
    bad[0] = 0x04;
    let r = prout_raw(&lu, A2, sa_out::REGISTER, 0, &spec_i_pt_param(KC, &[bad]));
    assert_eq!(sense_of(&r), Sense::invalid_field_in_param_list(28, None));
    // A TransportID list longer than the parameter list.
    let mut p = spec_i_pt_param(KC, &[TransportId::iscsi("iqn.x", None).to_wire()]);
    p.truncate(p.len() - 1);
    let r = prout_raw(&lu, A2, sa_out::REGISTER, 0, &p);
    assert_eq!(sense_of(&r), Sense::parameter_list_length_error());
    assert_eq!(keys(&lu).1.len(), 3);
}

#[test]
fn all_tg_pt_registers_every_target_port() {
    let lu = setup();
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0));
    // Without ALL_TG_PT, A2 (same initiator port, other target port) is not registered.
    conflict(prout(&lu, A2, sa_out::RESERVE, 1, KA, 0, 0));
    ok(prout(&lu, A, sa_out::REGISTER, 0, KA, 0, 0));
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0x04));
    reserve(&lu, A2, KA, PrType::WriteExclusive);
    // One registration, reported with ALL_TG_PT; it holds the reservation through both ports.
    let d = prin(&lu, A, sa_in::READ_FULL_STATUS, 4096);
    assert_eq!(u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as usize, d.len() - 8);
    assert_eq!(d[8 + 12], 0x03, "ALL_TG_PT and R_HOLDER");
    assert_eq!(&d[8 + 18..8 + 20], &[0, 0]);
    assert_eq!(status(&lu, A, &WRITE10), Status::Good);
    assert_eq!(status(&lu, B, &WRITE10), Status::ReservationConflict);
}

#[test]
fn read_full_status_golden_bytes() {
    let lu = setup();
    register(&lu, B, KB);
    register(&lu, A, KA);
    reserve(&lu, A, KA, PrType::ExclusiveAccess);
    let d = prin(&lu, A, sa_in::READ_FULL_STATUS, 4096);
    let tid_b = TransportId::iscsi("iqn.b", Some(isid(2))).to_wire();
    let tid_a = TransportId::iscsi("iqn.a", Some(isid(1))).to_wire();
    let mut expect = vec![0, 0, 0, 2];
    expect.extend_from_slice(&((24 + tid_b.len() + 24 + tid_a.len()) as u32).to_be_bytes());
    expect.extend_from_slice(&KB.to_be_bytes());
    expect.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 0, 0, 1]);
    expect.extend_from_slice(&(tid_b.len() as u32).to_be_bytes());
    expect.extend_from_slice(&tid_b);
    expect.extend_from_slice(&KA.to_be_bytes());
    expect.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x03, 0, 0, 0, 0, 0, 1]);
    expect.extend_from_slice(&(tid_a.len() as u32).to_be_bytes());
    expect.extend_from_slice(&tid_a);
    assert_eq!(d, expect);
    // READ RESERVATION golden bytes.
    let d = prin(&lu, A, sa_in::READ_RESERVATION, 4096);
    let mut expect = vec![0, 0, 0, 2, 0, 0, 0, 16];
    expect.extend_from_slice(&KA.to_be_bytes());
    expect.extend_from_slice(&[0, 0, 0, 0, 0, 0x03, 0, 0]);
    assert_eq!(d, expect);
}

#[test]
fn report_capabilities() {
    let lu = setup();
    assert_eq!(prin(&lu, A, sa_in::REPORT_CAPABILITIES, 100), [0, 8, 0x1D, 0xB0, 0xEA, 0x01, 0, 0]);
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0x01));
    assert_eq!(prin(&lu, A, sa_in::REPORT_CAPABILITIES, 100), [0, 8, 0x1D, 0xB1, 0xEA, 0x01, 0, 0]);
    assert_eq!(prin(&lu, A, sa_in::REPORT_CAPABILITIES, 4), [0, 8, 0x1D, 0xB1]);
}

#[test]
fn registrations_outlive_the_nexus() {
    let lu = setup();
    register(&lu, A, KA);
    reserve(&lu, A, KA, PrType::WriteExclusive);
    lu.nexus_gone(A);
    // The same initiator port logs in again as a new nexus: still registered, still the holder.
    let again = NexusId(10);
    lu.bind_nexus(again, identity(A));
    assert_eq!(status(&lu, again, &TUR), Status::CheckCondition);
    assert_eq!(status(&lu, again, &WRITE10), Status::Good);
    assert_eq!(status(&lu, B, &WRITE10), Status::ReservationConflict);
    ok(prout(&lu, again, sa_out::RELEASE, 1, KA, 0, 0));
    assert_eq!(keys(&lu).1, vec![KA]);
}

#[test]
fn aptpl_round_trip() {
    let lu = setup();
    register(&lu, B, KB);
    assert_eq!(lu.reservations_to_persist(), None, "APTPL never set: nothing stored");
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0x01));
    ok(prout(&lu, A2, sa_out::REGISTER, 0, 0, KC, 0x05));
    reserve(&lu, A, KA, PrType::ExclusiveAccessRegistrantsOnly);
    let snap = lu.reservations_to_persist().expect("snapshot");
    let data = snap.data.expect("APTPL is on");
    let restored = LogicalUnit::new(LuConfig { num_blocks: 100, ..LuConfig::default() });
    restored.restore_reservations(&data).expect("restore");
    assert_eq!(keys(&restored), keys(&lu));
    assert_eq!(reservation(&restored), reservation(&lu));
    assert_eq!(prin(&restored, O, sa_in::READ_FULL_STATUS, 4096), prin(&lu, O, sa_in::READ_FULL_STATUS, 4096));
    assert_eq!(prin(&restored, O, sa_in::REPORT_CAPABILITIES, 8)[3] & 1, 1, "PTPL_A");
    // The restored registrations apply to the same I_T nexuses when they log in.
    for n in [A, B, C] {
        restored.bind_nexus(n, identity(n));
        let _ = status(&restored, n, &TUR);
    }
    assert_eq!(status(&restored, A, &WRITE10), Status::Good);
    assert_eq!(status(&restored, B, &WRITE10), Status::Good);
    assert_eq!(status(&restored, C, &READ10), Status::ReservationConflict);
    ok(prout(&restored, A, sa_out::RELEASE, PrType::ExclusiveAccessRegistrantsOnly as u8, KA, 0, 0));
    // Later changes produce newer snapshots; APTPL off asks for the stored copy to go.
    let s1 = restored.reservations_to_persist().expect("stored copy to keep in step");
    assert!(s1.data.is_some());
    ok(prout(&restored, A, sa_out::REGISTER, 0, KA, KA, 0x00));
    let s2 = restored.reservations_to_persist().expect("stored copy to remove");
    assert!(s2.seq > s1.seq);
    assert_eq!(s2.data, None);
    assert_eq!(restored.reservations_to_persist().map(|s| s.data), None, "removed: nothing more to do");
    // Damaged bytes are refused and change nothing.
    let before = keys(&restored);
    assert!(restored.restore_reservations(b"polltgt-persistent-reservations 1\ngeneration 1\n").is_err());
    assert_eq!(keys(&restored), before);
}

#[test]
fn spc2_reserve_release() {
    let lu = setup();
    let reserve6 = [0x16, 0, 0, 0, 0, 0];
    let release6 = [0x17, 0, 0, 0, 0, 0];
    let reserve10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let release10 = [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(status(&lu, A, &reserve6), Status::Good);
    assert_eq!(status(&lu, A, &reserve6), Status::Good, "the holder may reserve again");
    assert_eq!(status(&lu, A, &WRITE10), Status::Good);
    for cdb in [&reserve6[..], &reserve10[..], &TUR[..], &READ10[..], &WRITE10[..], &[0x1A, 0, 0x3F, 0, 192, 0][..]] {
        assert_eq!(status(&lu, B, cdb), Status::ReservationConflict, "{cdb:02x?}");
    }
    assert_eq!(status(&lu, B, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Status::ReservationConflict);
    conflict(prout(&lu, B, sa_out::REGISTER, 0, 0, KB, 0));
    assert_eq!(status(&lu, B, &[0x12, 0, 0, 0, 36, 0]), Status::Good);
    assert_eq!(status(&lu, B, &[0x03, 0, 0, 0, 18, 0]), Status::Good);
    // Another nexus's RELEASE is GOOD and does nothing.
    assert_eq!(status(&lu, B, &release6), Status::Good);
    assert_eq!(status(&lu, B, &READ10), Status::ReservationConflict);
    assert_eq!(status(&lu, A, &release10), Status::Good);
    assert_eq!(status(&lu, B, &reserve10), Status::Good);
    assert_eq!(status(&lu, A, &READ10), Status::ReservationConflict);
    // I_T nexus loss releases it.
    lu.nexus_gone(B);
    assert_eq!(status(&lu, A, &READ10), Status::Good);
    // Logical unit reset releases it.
    assert_eq!(status(&lu, A, &reserve6), Status::Good);
    lu.reset();
    let _ = pending_uas(&lu, C);
    let _ = pending_uas(&lu, A);
    assert_eq!(status(&lu, C, &READ10), Status::Good);
    // Third-party and long-ID forms and extents are not supported.
    let r = response(&lu, A, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], None);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(4)));
    let r = response(&lu, A, &[0x57, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], None);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(1)));
    let r = response(&lu, A, &[0x16, 0x01, 0, 0, 0, 0], None);
    assert_eq!(sense_of(&r), Sense::invalid_field_in_cdb(1, Some(0)));
}

#[test]
fn spc2_and_persistent_reservations_interplay() {
    let lu = setup();
    let reserve6 = [0x16, 0, 0, 0, 0, 0];
    let release6 = [0x17, 0, 0, 0, 0, 0];
    register(&lu, A, KA);
    // Registrations exist: RESERVE conflicts, RELEASE does nothing.
    assert_eq!(status(&lu, A, &reserve6), Status::ReservationConflict);
    assert_eq!(status(&lu, B, &release6), Status::Good);
    reserve(&lu, A, KA, PrType::WriteExclusive);
    // CRH: the persistent reservation holder's RESERVE is GOOD and changes nothing; others conflict.
    assert_eq!(status(&lu, A, &reserve6), Status::Good);
    assert_eq!(status(&lu, B, &reserve6), Status::ReservationConflict);
    assert_eq!(status(&lu, A, &release6), Status::Good);
    assert_eq!(reservation(&lu), Some((KA, 1)));
    assert_eq!(status(&lu, B, &READ10), Status::Good);
    // Without registrations the SPC-2 reservation blocks PERSISTENT RESERVE OUT from others.
    ok(prout(&lu, A, sa_out::CLEAR, 0, KA, 0, 0));
    assert_eq!(status(&lu, A, &reserve6), Status::Good);
    conflict(prout(&lu, B, sa_out::REGISTER, 0, 0, KB, 0));
    ok(prout(&lu, A, sa_out::REGISTER, 0, 0, KA, 0));
}

#[test]
fn unbound_nexus_gets_an_identity_of_its_own() {
    let lu = LogicalUnit::new(LuConfig { num_blocks: 100, ..LuConfig::default() });
    let (x, y) = (NexusId(50), NexusId(51));
    for n in [x, y] {
        let _ = status(&lu, n, &TUR);
    }
    ok(prout(&lu, x, sa_out::REGISTER, 0, 0, KA, 0));
    reserve(&lu, x, KA, PrType::ExclusiveAccess);
    assert_eq!(status(&lu, x, &READ10), Status::Good);
    assert_eq!(status(&lu, y, &READ10), Status::ReservationConflict);
}
