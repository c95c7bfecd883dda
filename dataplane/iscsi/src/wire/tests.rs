//! Tests of the wire module: golden bytes written by hand from the RFC 7143 §11 layouts (one row of 4 bytes per
//! line, as the RFC draws them), round trips, truncation, AHS cases, a deterministic fuzz loop, digests (RFC 3720
//! Appendix B.4), framing arithmetic, LUNs and code values.

use super::*;
use crate::SerialNumber as S;

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/// Bytes from rows of hex pairs separated by spaces.
fn hex(rows: &[&str]) -> Vec<u8> {
    rows.iter()
        .flat_map(|row| row.split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex byte {b:?}")))
        .collect()
}

/// A hand-written PDU header with its meaning.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    header: Header,
    dsl: u32,
}

/// Parse the bytes and compare with the Repr, emit the Repr and compare with the bytes.
fn check_golden(c: &Case) {
    assert_eq!(
        Header::parse(&c.bytes).as_ref(),
        Ok(&c.header),
        "{}: parse",
        c.name
    );
    assert_eq!(
        c.header.buffer_len(),
        c.bytes.len(),
        "{}: buffer_len",
        c.name
    );
    let mut out = vec![0xa5u8; c.bytes.len() + 7];
    assert_eq!(
        c.header.emit(c.dsl, &mut out),
        Ok(c.bytes.len()),
        "{}: emit",
        c.name
    );
    assert_eq!(
        &out[..c.bytes.len()],
        &c.bytes[..],
        "{}: emitted bytes",
        c.name
    );
    assert!(
        out[c.bytes.len()..].iter().all(|&b| b == 0xa5),
        "{}: emit wrote past buffer_len",
        c.name
    );
    assert_eq!(
        c.header.to_vec(c.dsl).as_ref(),
        Ok(&c.bytes),
        "{}: to_vec",
        c.name
    );
    let p = Packet::new_checked(&c.bytes[..]).unwrap();
    assert_eq!(p.opcode(), Ok(c.header.opcode()), "{}: opcode", c.name);
    assert_eq!(
        p.data_segment_length(),
        c.dsl,
        "{}: DataSegmentLength",
        c.name
    );
    assert_eq!(p.header_len(), c.bytes.len(), "{}: header_len", c.name);
    assert_eq!(p.itt(), c.header.itt(), "{}: ITT", c.name);
    assert_eq!(p.immediate(), c.header.immediate(), "{}: I bit", c.name);
    if let Some(lun) = c.header.lun() {
        assert_eq!(p.lun(), lun, "{}: LUN", c.name);
    }
}

/// xorshift64*: deterministic pseudo-random numbers for round trips and fuzzing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn u16(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }
    fn u8(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    fn bool(&mut self) -> bool {
        self.next() >> 63 == 1
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn sn(&mut self) -> S {
        S(self.u32())
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Golden PDUs: initiator opcodes
// ---------------------------------------------------------------------------------------------------------------

fn nop_out_case() -> Case {
    Case {
        name: "NOP-Out",
        bytes: hex(&[
            "40 80 00 00", //  0: .|I|0x00, 1|reserved
            "00 00 00 05", //  4: TotalAHSLength 0, DataSegmentLength 5
            "00 01 00 00", //  8: LUN 1 (peripheral device addressing)
            "00 00 00 00", // 12
            "11 22 33 44", // 16: Initiator Task Tag
            "ff ff ff ff", // 20: Target Transfer Tag
            "00 00 00 10", // 24: CmdSN
            "00 00 00 20", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::NopOut(NopOut {
            immediate: true,
            lun: 0x0001_0000_0000_0000,
            itt: 0x1122_3344,
            ttt: RESERVED_TAG,
            cmd_sn: S(0x10),
            exp_stat_sn: S(0x20),
        }),
        dsl: 5,
    }
}

fn read10_cdb() -> [u8; 16] {
    // READ(10), LBA 0x1000, 8 blocks.
    [0x28, 0, 0, 0, 0x10, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]
}

fn scsi_command_case() -> Case {
    Case {
        name: "SCSI Command READ(10)",
        bytes: hex(&[
            "01 c1 00 00", //  0: .|.|0x01, F|R|.|..|ATTR=1 (simple)
            "00 00 00 00", //  4: TotalAHSLength 0, DataSegmentLength 0
            "00 00 00 00", //  8: LUN 0
            "00 00 00 00", // 12
            "00 00 00 01", // 16: ITT
            "00 00 10 00", // 20: Expected Data Transfer Length 4096
            "00 00 00 05", // 24: CmdSN
            "00 00 00 07", // 28: ExpStatSN
            "28 00 00 00", // 32: CDB
            "10 00 00 00", // 36
            "08 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: TaskAttr::Simple as u8,
            lun: 0,
            itt: 1,
            edtl: 4096,
            cmd_sn: S(5),
            exp_stat_sn: S(7),
            cdb: read10_cdb(),
            ext_cdb: vec![],
            bidi_read_edtl: None,
        }),
        dsl: 0,
    }
}

fn scsi_command_ahs_case() -> Case {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x7f; // variable length CDB
    cdb[7] = 0x18; // additional CDB length
    cdb[9] = 0x09;
    Case {
        name: "SCSI Command, 32-byte CDB, bidirectional",
        bytes: hex(&[
            "41 62 00 00", //  0: .|I|0x01, F=0|R|W|..|ATTR=2 (ordered)
            "07 00 02 00", //  4: TotalAHSLength 7 words, DataSegmentLength 512 (immediate data)
            "00 02 00 00", //  8: LUN 2
            "00 00 00 00", // 12
            "de ad be ef", // 16: ITT
            "00 00 10 00", // 20: Expected Data Transfer Length (write part)
            "00 00 00 2a", // 24: CmdSN
            "00 00 00 2b", // 28: ExpStatSN
            "7f 00 00 00", // 32: CDB bytes 0..15
            "00 00 00 18", // 36
            "00 09 00 00", // 40
            "00 00 00 00", // 44
            "00 11 01 00", // 48: AHSLength 17, AHSType 1 (Extended CDB), reserved
            "10 11 12 13", // 52: CDB bytes 16..31
            "14 15 16 17", // 56
            "18 19 1a 1b", // 60
            "1c 1d 1e 1f", // 64
            "00 05 02 00", // 68: AHSLength 5, AHSType 2 (Bidirectional Read EDTL), reserved
            "00 00 20 00", // 72: Bidirectional Read Expected Data Transfer Length 8192
        ]),
        header: Header::ScsiCommand(ScsiCommand {
            immediate: true,
            final_: false,
            read: true,
            write: true,
            attr: TaskAttr::Ordered as u8,
            lun: 0x0002_0000_0000_0000,
            itt: 0xdead_beef,
            edtl: 4096,
            cmd_sn: S(0x2a),
            exp_stat_sn: S(0x2b),
            cdb,
            ext_cdb: (0x10..0x20).collect(),
            bidi_read_edtl: Some(8192),
        }),
        dsl: 512,
    }
}

fn scsi_command_padded_ahs_case() -> Case {
    Case {
        name: "SCSI Command, 18-byte CDB (padded Extended CDB AHS)",
        bytes: hex(&[
            "01 80 00 00", //  0: F, ATTR 0 (untagged)
            "02 00 00 00", //  4: TotalAHSLength 2 words
            "00 00 00 00", //  8: LUN 0
            "00 00 00 00", // 12
            "00 00 00 09", // 16: ITT
            "00 00 00 00", // 20: EDTL 0
            "00 00 00 01", // 24: CmdSN
            "00 00 00 01", // 28: ExpStatSN
            "a0 00 00 00", // 32: CDB
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
            "00 03 01 00", // 48: AHSLength 3 (reserved + 2 CDB bytes), type 1
            "aa bb 00 00", // 52: CDB bytes 16, 17 and 2 bytes of padding
        ]),
        header: Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: false,
            attr: TaskAttr::Untagged as u8,
            lun: 0,
            itt: 9,
            edtl: 0,
            cmd_sn: S(1),
            exp_stat_sn: S(1),
            cdb: [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ext_cdb: vec![0xaa, 0xbb],
            bidi_read_edtl: None,
        }),
        dsl: 0,
    }
}

fn tmf_request_case() -> Case {
    Case {
        name: "Task Management Function Request",
        bytes: hex(&[
            "42 81 00 00", //  0: .|I|0x02, 1|Function 1 (ABORT TASK)
            "00 00 00 00", //  4
            "00 03 00 00", //  8: LUN 3
            "00 00 00 00", // 12
            "00 00 01 00", // 16: ITT
            "00 00 00 55", // 20: Referenced Task Tag
            "00 00 00 09", // 24: CmdSN
            "00 00 00 04", // 28: ExpStatSN
            "00 00 00 08", // 32: RefCmdSN
            "00 00 00 00", // 36: ExpDataSN
            "00 00 00 00", // 40: reserved
            "00 00 00 00", // 44
        ]),
        header: Header::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::AbortTask.code(),
            lun: 0x0003_0000_0000_0000,
            itt: 0x100,
            rtt: 0x55,
            cmd_sn: S(9),
            exp_stat_sn: S(4),
            ref_cmd_sn: S(8),
            exp_data_sn: S(0),
        }),
        dsl: 0,
    }
}

const ISID: [u8; 6] = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];

fn login_request_case() -> Case {
    Case {
        name: "Login Request",
        bytes: hex(&[
            "43 87 00 00", //  0: .|1|0x03, T|C=0|..|CSG=1|NSG=3, Version-max 0, Version-min 0
            "00 00 01 c4", //  4: DataSegmentLength 452
            "00 02 3d 00", //  8: ISID
            "00 01 00 00", // 12: ISID (cont.), TSIH 0
            "00 00 00 00", // 16: ITT
            "00 01 00 00", // 20: CID 1, reserved
            "00 00 00 01", // 24: CmdSN
            "00 00 00 00", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::LoginRequest(LoginRequest {
            transit: true,
            continue_: false,
            csg: LoginStage::LoginOperationalNegotiation.code(),
            nsg: LoginStage::FullFeaturePhase.code(),
            version_max: ISCSI_VERSION,
            version_min: ISCSI_VERSION,
            isid: ISID,
            tsih: 0,
            itt: 0,
            cid: 1,
            cmd_sn: S(1),
            exp_stat_sn: S(0),
        }),
        dsl: 452,
    }
}

fn text_request_case() -> Case {
    Case {
        name: "Text Request",
        bytes: hex(&[
            "04 80 00 00", //  0: .|.|0x04, F|C=0
            "00 00 00 10", //  4: DataSegmentLength 16
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "00 00 00 07", // 16: ITT
            "ff ff ff ff", // 20: TTT
            "00 00 00 03", // 24: CmdSN
            "00 00 00 02", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::TextRequest(TextRequest {
            immediate: false,
            final_: true,
            continue_: false,
            lun: 0,
            itt: 7,
            ttt: RESERVED_TAG,
            cmd_sn: S(3),
            exp_stat_sn: S(2),
        }),
        dsl: 16,
    }
}

fn data_out_case() -> Case {
    Case {
        name: "SCSI Data-Out",
        bytes: hex(&[
            "05 80 00 00", //  0: .|.|0x05, F
            "00 00 20 00", //  4: DataSegmentLength 8192
            "00 01 00 00", //  8: LUN 1
            "00 00 00 00", // 12
            "00 00 00 22", // 16: ITT
            "00 00 12 34", // 20: TTT
            "00 00 00 00", // 24: reserved
            "00 00 00 06", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 02", // 36: DataSN
            "00 00 20 00", // 40: Buffer Offset
            "00 00 00 00", // 44: reserved
        ]),
        header: Header::DataOut(DataOut {
            final_: true,
            lun: 0x0001_0000_0000_0000,
            itt: 0x22,
            ttt: 0x1234,
            exp_stat_sn: S(6),
            data_sn: S(2),
            buffer_offset: 0x2000,
        }),
        dsl: 8192,
    }
}

fn logout_request_case() -> Case {
    Case {
        name: "Logout Request",
        bytes: hex(&[
            "46 81 00 00", //  0: .|I|0x06, 1|Reason Code 1 (close the connection)
            "00 00 00 00", //  4
            "00 00 00 00", //  8: reserved
            "00 00 00 00", // 12
            "00 00 00 99", // 16: ITT
            "00 01 00 00", // 20: CID 1, reserved
            "00 00 10 00", // 24: CmdSN
            "00 00 20 00", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseConnection.code(),
            itt: 0x99,
            cid: 1,
            cmd_sn: S(0x1000),
            exp_stat_sn: S(0x2000),
        }),
        dsl: 0,
    }
}

fn snack_case() -> Case {
    Case {
        name: "SNACK Request",
        bytes: hex(&[
            "10 81 00 00", //  0: .|.|0x10, 1|...|Type 1 (Status)
            "00 00 00 00", //  4
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "00 00 00 77", // 16: ITT
            "ff ff ff ff", // 20: TTT / SNACK Tag
            "00 00 00 00", // 24: reserved
            "00 00 00 30", // 28: ExpStatSN
            "00 00 00 00", // 32: reserved
            "00 00 00 00", // 36: reserved
            "00 00 00 2c", // 40: BegRun
            "00 00 00 04", // 44: RunLength
        ]),
        header: Header::SnackRequest(SnackRequest {
            snack_type: SnackType::Status.code(),
            lun: 0,
            itt: 0x77,
            ttt: RESERVED_TAG,
            exp_stat_sn: S(0x30),
            beg_run: 0x2c,
            run_length: 4,
        }),
        dsl: 0,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Golden PDUs: target opcodes
// ---------------------------------------------------------------------------------------------------------------

fn nop_in_case() -> Case {
    Case {
        name: "NOP-In",
        bytes: hex(&[
            "20 80 00 00", //  0: .|.|0x20, 1|reserved
            "00 00 00 05", //  4: DataSegmentLength 5 (echoed ping data)
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "11 22 33 44", // 16: ITT
            "ff ff ff ff", // 20: TTT
            "00 00 00 21", // 24: StatSN
            "00 00 00 11", // 28: ExpCmdSN
            "00 00 00 50", // 32: MaxCmdSN
            "00 00 00 00", // 36: reserved
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::NopIn(NopIn {
            lun: 0,
            itt: 0x1122_3344,
            ttt: RESERVED_TAG,
            stat_sn: S(0x21),
            exp_cmd_sn: S(0x11),
            max_cmd_sn: S(0x50),
        }),
        dsl: 5,
    }
}

fn scsi_response_case() -> Case {
    Case {
        name: "SCSI Response (CHECK CONDITION, underflow)",
        bytes: hex(&[
            "21 82 00 02", //  0: .|.|0x21, 1|..|o|u|O|U=1|., Response 0, Status 0x02
            "00 00 00 14", //  4: DataSegmentLength 20 (SenseLength + 18 bytes of sense)
            "00 00 00 00", //  8: reserved
            "00 00 00 00", // 12
            "00 00 00 01", // 16: ITT
            "00 00 00 00", // 20: SNACK Tag
            "00 00 00 08", // 24: StatSN
            "00 00 00 06", // 28: ExpCmdSN
            "00 00 00 45", // 32: MaxCmdSN
            "00 00 00 01", // 36: ExpDataSN
            "00 00 00 00", // 40: Bidirectional Read Residual Count
            "00 00 02 00", // 44: Residual Count
        ]),
        header: Header::ScsiResponse(ScsiResponse {
            underflow: true,
            response: ScsiResponseCode::CommandCompletedAtTarget.code(),
            status: 0x02,
            itt: 1,
            stat_sn: S(8),
            exp_cmd_sn: S(6),
            max_cmd_sn: S(0x45),
            exp_data_sn: S(1),
            residual: 0x200,
            ..ScsiResponse::default()
        }),
        dsl: 20,
    }
}

fn scsi_response_all_flags_case() -> Case {
    Case {
        name: "SCSI Response (all residual flags)",
        bytes: hex(&[
            "21 9e 01 00", //  0: 1|..|o|u|O|U|., Response 1 (target failure), Status 0
            "00 00 00 00", //  4
            "00 00 00 00", //  8
            "00 00 00 00", // 12
            "00 00 00 02", // 16: ITT
            "00 00 00 03", // 20: SNACK Tag
            "00 00 00 04", // 24: StatSN
            "00 00 00 05", // 28: ExpCmdSN
            "00 00 00 06", // 32: MaxCmdSN
            "00 00 00 07", // 36: ExpDataSN
            "00 00 00 08", // 40: Bidirectional Read Residual Count
            "00 00 00 09", // 44: Residual Count
        ]),
        header: Header::ScsiResponse(ScsiResponse {
            bidi_overflow: true,
            bidi_underflow: true,
            overflow: true,
            underflow: true,
            response: ScsiResponseCode::TargetFailure.code(),
            status: 0,
            itt: 2,
            snack_tag: 3,
            stat_sn: S(4),
            exp_cmd_sn: S(5),
            max_cmd_sn: S(6),
            exp_data_sn: S(7),
            bidi_residual: 8,
            residual: 9,
        }),
        dsl: 0,
    }
}

fn tmf_response_case() -> Case {
    Case {
        name: "Task Management Function Response",
        bytes: hex(&[
            "22 80 01 00", //  0: .|.|0x22, 1|reserved, Response 1 (task does not exist)
            "00 00 00 00", //  4
            "00 00 00 00", //  8: reserved
            "00 00 00 00", // 12
            "00 00 01 00", // 16: ITT
            "00 00 00 00", // 20: reserved
            "00 00 00 05", // 24: StatSN
            "00 00 00 0a", // 28: ExpCmdSN
            "00 00 00 49", // 32: MaxCmdSN
            "00 00 00 00", // 36: reserved
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::TaskMgmtResponse(TaskMgmtResponse {
            response: TmfResponseCode::TaskDoesNotExist.code(),
            itt: 0x100,
            stat_sn: S(5),
            exp_cmd_sn: S(10),
            max_cmd_sn: S(0x49),
        }),
        dsl: 0,
    }
}

fn login_response_case() -> Case {
    Case {
        name: "Login Response",
        bytes: hex(&[
            "23 87 00 00", //  0: .|.|0x23, T|C=0|..|CSG=1|NSG=3, Version-max 0, Version-active 0
            "00 00 00 60", //  4: DataSegmentLength 96
            "00 02 3d 00", //  8: ISID
            "00 01 01 02", // 12: ISID (cont.), TSIH 0x0102
            "00 00 00 00", // 16: ITT
            "00 00 00 00", // 20: reserved
            "00 00 70 00", // 24: StatSN
            "00 00 00 01", // 28: ExpCmdSN
            "00 00 00 40", // 32: MaxCmdSN
            "00 00 00 00", // 36: Status-Class 0, Status-Detail 0, reserved
            "00 00 00 00", // 40: reserved
            "00 00 00 00", // 44
        ]),
        header: Header::LoginResponse(LoginResponse {
            transit: true,
            continue_: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_active: 0,
            isid: ISID,
            tsih: 0x0102,
            itt: 0,
            stat_sn: S(0x7000),
            exp_cmd_sn: S(1),
            max_cmd_sn: S(0x40),
            status_class: LoginStatus::Success.class(),
            status_detail: LoginStatus::Success.detail(),
        }),
        dsl: 96,
    }
}

fn login_response_failure_case() -> Case {
    Case {
        name: "Login Response (target not found)",
        bytes: hex(&[
            "23 00 00 00", //  0: T=0, CSG=0, NSG=0
            "00 00 00 00", //  4
            "00 02 3d 00", //  8: ISID
            "00 01 00 00", // 12: ISID (cont.), TSIH 0
            "00 00 00 03", // 16: ITT
            "00 00 00 00", // 20
            "00 00 00 00", // 24: StatSN
            "00 00 00 01", // 28: ExpCmdSN
            "00 00 00 01", // 32: MaxCmdSN
            "02 03 00 00", // 36: Status-Class 2 (initiator error), Status-Detail 3 (not found)
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::LoginResponse(LoginResponse {
            transit: false,
            continue_: false,
            csg: 0,
            nsg: 0,
            version_max: 0,
            version_active: 0,
            isid: ISID,
            tsih: 0,
            itt: 3,
            stat_sn: S(0),
            exp_cmd_sn: S(1),
            max_cmd_sn: S(1),
            status_class: LoginStatus::NotFound.class(),
            status_detail: LoginStatus::NotFound.detail(),
        }),
        dsl: 0,
    }
}

fn text_response_case() -> Case {
    Case {
        name: "Text Response",
        bytes: hex(&[
            "24 80 00 00", //  0: .|.|0x24, F|C=0
            "00 00 00 3a", //  4: DataSegmentLength 58
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "00 00 00 07", // 16: ITT
            "ff ff ff ff", // 20: TTT
            "00 00 00 31", // 24: StatSN
            "00 00 00 04", // 28: ExpCmdSN
            "00 00 00 43", // 32: MaxCmdSN
            "00 00 00 00", // 36: reserved
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::TextResponse(TextResponse {
            final_: true,
            continue_: false,
            lun: 0,
            itt: 7,
            ttt: RESERVED_TAG,
            stat_sn: S(0x31),
            exp_cmd_sn: S(4),
            max_cmd_sn: S(0x43),
        }),
        dsl: 58,
    }
}

fn text_response_continue_case() -> Case {
    Case {
        name: "Text Response (continued)",
        bytes: hex(&[
            "24 40 00 00", //  0: F=0|C=1
            "00 00 20 00", //  4: DataSegmentLength 8192
            "00 00 00 00", //  8
            "00 00 00 00", // 12
            "00 00 00 08", // 16: ITT
            "00 00 00 05", // 20: TTT (the initiator answers with it)
            "00 00 00 32", // 24: StatSN
            "00 00 00 05", // 28: ExpCmdSN
            "00 00 00 44", // 32: MaxCmdSN
            "00 00 00 00", // 36
            "00 00 00 00", // 40
            "00 00 00 00", // 44
        ]),
        header: Header::TextResponse(TextResponse {
            final_: false,
            continue_: true,
            lun: 0,
            itt: 8,
            ttt: 5,
            stat_sn: S(0x32),
            exp_cmd_sn: S(5),
            max_cmd_sn: S(0x44),
        }),
        dsl: 8192,
    }
}

fn data_in_status_case() -> Case {
    Case {
        name: "SCSI Data-In with status",
        bytes: hex(&[
            "25 83 00 00", //  0: .|.|0x25, F|A=0|0|0|0|O=0|U=1|S=1, reserved, Status 0 (GOOD)
            "00 00 0f 00", //  4: DataSegmentLength 3840
            "00 01 00 00", //  8: LUN 1
            "00 00 00 00", // 12
            "00 00 00 22", // 16: ITT
            "ff ff ff ff", // 20: TTT
            "00 00 00 12", // 24: StatSN
            "00 00 00 13", // 28: ExpCmdSN
            "00 00 00 52", // 32: MaxCmdSN
            "00 00 00 00", // 36: DataSN
            "00 00 00 00", // 40: Buffer Offset
            "00 00 01 00", // 44: Residual Count
        ]),
        header: Header::DataIn(DataIn {
            final_: true,
            underflow: true,
            status: Some(0),
            lun: 0x0001_0000_0000_0000,
            itt: 0x22,
            ttt: RESERVED_TAG,
            stat_sn: S(0x12),
            exp_cmd_sn: S(0x13),
            max_cmd_sn: S(0x52),
            data_sn: S(0),
            buffer_offset: 0,
            residual: 0x100,
            ..DataIn::default()
        }),
        dsl: 3840,
    }
}

fn data_in_case() -> Case {
    Case {
        name: "SCSI Data-In without status",
        bytes: hex(&[
            "25 40 00 00", //  0: F=0|A=1|...|S=0
            "00 00 10 00", //  4: DataSegmentLength 4096
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "00 00 00 22", // 16: ITT
            "ff ff ff ff", // 20: TTT
            "00 00 00 00", // 24: StatSN reserved (no S bit)
            "00 00 00 13", // 28: ExpCmdSN
            "00 00 00 52", // 32: MaxCmdSN
            "00 00 00 03", // 36: DataSN
            "00 00 30 00", // 40: Buffer Offset
            "00 00 00 00", // 44: Residual Count
        ]),
        header: Header::DataIn(DataIn {
            ack: true,
            itt: 0x22,
            ttt: RESERVED_TAG,
            exp_cmd_sn: S(0x13),
            max_cmd_sn: S(0x52),
            data_sn: S(3),
            buffer_offset: 0x3000,
            ..DataIn::default()
        }),
        dsl: 4096,
    }
}

fn logout_response_case() -> Case {
    Case {
        name: "Logout Response",
        bytes: hex(&[
            "26 80 00 00", //  0: .|.|0x26, 1|reserved, Response 0
            "00 00 00 00", //  4
            "00 00 00 00", //  8: reserved
            "00 00 00 00", // 12
            "00 00 00 99", // 16: ITT
            "00 00 00 00", // 20: reserved
            "00 00 20 00", // 24: StatSN
            "00 00 10 01", // 28: ExpCmdSN
            "00 00 10 40", // 32: MaxCmdSN
            "00 00 00 00", // 36: reserved
            "00 02 00 14", // 40: Time2Wait 2, Time2Retain 20
            "00 00 00 00", // 44: reserved
        ]),
        header: Header::LogoutResponse(LogoutResponse {
            response: LogoutResponseCode::ClosedSuccessfully.code(),
            itt: 0x99,
            stat_sn: S(0x2000),
            exp_cmd_sn: S(0x1001),
            max_cmd_sn: S(0x1040),
            time2wait: 2,
            time2retain: 20,
        }),
        dsl: 0,
    }
}

fn r2t_case() -> Case {
    Case {
        name: "R2T",
        bytes: hex(&[
            "31 80 00 00", //  0: .|.|0x31, 1|reserved
            "00 00 00 00", //  4
            "00 01 00 00", //  8: LUN 1
            "00 00 00 00", // 12
            "00 00 00 33", // 16: ITT
            "0a 0b 0c 0d", // 20: TTT
            "00 00 00 14", // 24: StatSN
            "00 00 00 15", // 28: ExpCmdSN
            "00 00 00 54", // 32: MaxCmdSN
            "00 00 00 01", // 36: R2TSN
            "00 01 00 00", // 40: Buffer Offset
            "00 04 00 00", // 44: Desired Data Transfer Length
        ]),
        header: Header::R2t(R2t {
            lun: 0x0001_0000_0000_0000,
            itt: 0x33,
            ttt: 0x0a0b_0c0d,
            stat_sn: S(0x14),
            exp_cmd_sn: S(0x15),
            max_cmd_sn: S(0x54),
            r2t_sn: S(1),
            buffer_offset: 0x1_0000,
            desired_len: 0x4_0000,
        }),
        dsl: 0,
    }
}

fn async_message_case() -> Case {
    Case {
        name: "Asynchronous Message",
        bytes: hex(&[
            "32 80 00 00", //  0: .|.|0x32, 1|reserved
            "00 00 00 00", //  4
            "00 00 00 00", //  8: LUN
            "00 00 00 00", // 12
            "ff ff ff ff", // 16: 0xffffffff
            "00 00 00 00", // 20: reserved
            "00 00 00 40", // 24: StatSN
            "00 00 00 41", // 28: ExpCmdSN
            "00 00 00 80", // 32: MaxCmdSN
            "01 00 00 01", // 36: AsyncEvent 1 (logout request), AsyncVCode 0, Parameter1 1
            "00 02 00 14", // 40: Parameter2 2, Parameter3 20
            "00 00 00 00", // 44: reserved
        ]),
        header: Header::AsyncMessage(AsyncMessage {
            lun: 0,
            stat_sn: S(0x40),
            exp_cmd_sn: S(0x41),
            max_cmd_sn: S(0x80),
            event: AsyncEvent::LogoutRequest.code(),
            vcode: 0,
            param1: 1,
            param2: 2,
            param3: 20,
        }),
        dsl: 0,
    }
}

fn reject_case() -> Case {
    Case {
        name: "Reject",
        bytes: hex(&[
            "3f 80 09 00", //  0: .|.|0x3f, 1|reserved, Reason 0x09 (invalid PDU field)
            "00 00 00 30", //  4: DataSegmentLength 48 (the rejected BHS)
            "00 00 00 00", //  8: reserved
            "00 00 00 00", // 12
            "ff ff ff ff", // 16: 0xffffffff
            "00 00 00 00", // 20: reserved
            "00 00 00 50", // 24: StatSN
            "00 00 00 51", // 28: ExpCmdSN
            "00 00 00 90", // 32: MaxCmdSN
            "00 00 00 00", // 36: DataSN/R2TSN
            "00 00 00 00", // 40: reserved
            "00 00 00 00", // 44
        ]),
        header: Header::Reject(Reject {
            reason: RejectReason::InvalidPduField.code(),
            stat_sn: S(0x50),
            exp_cmd_sn: S(0x51),
            max_cmd_sn: S(0x90),
            data_sn: S(0),
        }),
        dsl: 48,
    }
}

fn all_cases() -> Vec<Case> {
    vec![
        nop_out_case(),
        scsi_command_case(),
        scsi_command_ahs_case(),
        scsi_command_padded_ahs_case(),
        tmf_request_case(),
        login_request_case(),
        text_request_case(),
        data_out_case(),
        logout_request_case(),
        snack_case(),
        nop_in_case(),
        scsi_response_case(),
        scsi_response_all_flags_case(),
        tmf_response_case(),
        login_response_case(),
        login_response_failure_case(),
        text_response_case(),
        text_response_continue_case(),
        data_in_status_case(),
        data_in_case(),
        logout_response_case(),
        r2t_case(),
        async_message_case(),
        reject_case(),
    ]
}

#[test]
fn golden_nop_out() {
    check_golden(&nop_out_case());
}

#[test]
fn golden_scsi_command() {
    check_golden(&scsi_command_case());
    check_golden(&scsi_command_ahs_case());
    check_golden(&scsi_command_padded_ahs_case());
}

#[test]
fn golden_tmf_request() {
    check_golden(&tmf_request_case());
}

#[test]
fn golden_login_request() {
    check_golden(&login_request_case());
}

#[test]
fn golden_text_request() {
    check_golden(&text_request_case());
}

#[test]
fn golden_data_out() {
    check_golden(&data_out_case());
}

#[test]
fn golden_logout_request() {
    check_golden(&logout_request_case());
}

#[test]
fn golden_snack_request() {
    check_golden(&snack_case());
}

#[test]
fn golden_nop_in() {
    check_golden(&nop_in_case());
}

#[test]
fn golden_scsi_response() {
    check_golden(&scsi_response_case());
    check_golden(&scsi_response_all_flags_case());
}

#[test]
fn golden_tmf_response() {
    check_golden(&tmf_response_case());
}

#[test]
fn golden_login_response() {
    check_golden(&login_response_case());
    check_golden(&login_response_failure_case());
}

#[test]
fn golden_text_response() {
    check_golden(&text_response_case());
    check_golden(&text_response_continue_case());
}

#[test]
fn golden_data_in() {
    check_golden(&data_in_status_case());
    check_golden(&data_in_case());
}

#[test]
fn golden_logout_response() {
    check_golden(&logout_response_case());
}

#[test]
fn golden_r2t() {
    check_golden(&r2t_case());
}

#[test]
fn golden_async_message() {
    check_golden(&async_message_case());
}

#[test]
fn golden_reject() {
    check_golden(&reject_case());
}

#[test]
fn golden_cases_cover_every_opcode() {
    let cases = all_cases();
    for op in Opcode::ALL {
        assert!(
            cases.iter().any(|c| c.header.opcode() == op),
            "no golden case for {op:?}"
        );
    }
}

/// The SCSI Read (10) Command PDU of RFC 3720 Appendix B.4 decodes as such (and its CRC is checked below).
#[test]
fn rfc3720_read10_pdu_parses() {
    let h = Header::parse(&rfc3720_read10_pdu()).unwrap();
    let Header::ScsiCommand(c) = h else {
        panic!("not a SCSI Command: {h:?}")
    };
    assert!(c.final_ && c.read && !c.write && !c.immediate);
    assert_eq!(
        (c.itt, c.edtl, c.cmd_sn, c.exp_stat_sn),
        (0x1400_0000, 0x400, S(0x14), S(0x18))
    );
    assert_eq!(c.cdb[0], 0x28);
    assert_eq!(c.cdb[8], 0x02);
}

fn rfc3720_read10_pdu() -> Vec<u8> {
    hex(&[
        "01 c0 00 00",
        "00 00 00 00",
        "00 00 00 00",
        "00 00 00 00",
        "14 00 00 00",
        "00 00 04 00",
        "00 00 00 14",
        "00 00 00 18",
        "28 00 00 00",
        "00 00 00 00",
        "02 00 00 00",
        "00 00 00 00",
    ])
}

// ---------------------------------------------------------------------------------------------------------------
// Leniency: reserved bits and fields are ignored (RFC 7143 §11)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn reserved_bits_and_fields_are_ignored() {
    // NOP-Out: bit 0 of byte 0, the constant-1 F bit cleared, garbage in byte 1's reserved bits, bytes 2..3 and
    // 32..47.
    let c = nop_out_case();
    let mut b = c.bytes.clone();
    b[0] |= 0x80;
    b[1] = 0x15;
    b[2] = 0xab;
    b[3] = 0xcd;
    b[32..48].fill(0xee);
    assert_eq!(Header::parse(&b), Ok(c.header));

    // Target PDU (R2T) with the I bit, the bit-7 bit and garbage in byte 1 and the reserved bytes 2..3.
    let c = r2t_case();
    let mut b = c.bytes.clone();
    b[0] |= 0xc0;
    b[1] = 0x7f;
    b[2] = 0x12;
    assert_eq!(Header::parse(&b), Ok(c.header));

    // Data-Out with an I bit (not defined for it) and garbage in its reserved words 24, 32 and 44.
    let c = data_out_case();
    let mut b = c.bytes.clone();
    b[0] |= 0x40;
    b[24..28].fill(0x99);
    b[32..36].fill(0x99);
    b[44..48].fill(0x99);
    assert_eq!(Header::parse(&b), Ok(c.header));

    // SCSI Command: the two reserved bits between W and ATTR, and the reserved bytes 2..3.
    let c = scsi_command_case();
    let mut b = c.bytes.clone();
    b[1] |= 0x18;
    b[2] = 1;
    b[3] = 2;
    assert_eq!(Header::parse(&b), Ok(c.header));

    // Logout Request without the constant-1 bit of byte 1.
    let c = logout_request_case();
    let mut b = c.bytes.clone();
    b[1] &= 0x7f;
    assert_eq!(Header::parse(&b), Ok(c.header));

    // Reject: garbage in the reserved words and in the ITT that §11.17 fixes to 0xffffffff.
    let c = reject_case();
    let mut b = c.bytes.clone();
    b[8..24].fill(0x42);
    b[40..48].fill(0x42);
    assert_eq!(Header::parse(&b), Ok(c.header));
}

#[test]
fn login_request_without_i_bit_is_accepted() {
    let c = login_request_case();
    let mut b = c.bytes.clone();
    b[0] = 0x03;
    let h = Header::parse(&b).unwrap();
    assert_eq!(h, c.header);
    assert!(h.immediate(), "a login request is always immediate");
    // Emit puts the I bit back.
    assert_eq!(h.to_vec(c.dsl).unwrap()[0], 0x43);
}

#[test]
fn data_in_without_status_ignores_reserved_status_and_stat_sn() {
    let c = data_in_case();
    let mut b = c.bytes.clone();
    b[3] = 0x02; // Status byte, reserved without S
    b[24..28].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // StatSN, reserved without S
    let h = Header::parse(&b).unwrap();
    assert_eq!(h, c.header);
    assert_eq!(h.stat_sn(), None);
    // Emitting never puts a StatSN or status on a Data-In without status.
    let Header::DataIn(mut d) = h else {
        unreachable!()
    };
    d.stat_sn = S(77);
    let out = Header::DataIn(d).to_vec(c.dsl).unwrap();
    assert_eq!(out, c.bytes);
}

#[test]
fn extra_bytes_after_the_header_are_ignored() {
    for c in all_cases() {
        let mut b = c.bytes.clone();
        b.extend_from_slice(&[0x5a; 37]);
        assert_eq!(Header::parse(&b).as_ref(), Ok(&c.header), "{}", c.name);
    }
}

#[test]
fn ahs_padding_and_reserved_bytes_are_ignored() {
    let c = scsi_command_padded_ahs_case();
    let mut b = c.bytes.clone();
    b[51] = 0x77; // reserved byte of the Extended CDB AHS
    b[54] = 0x01; // padding
    b[55] = 0x02;
    assert_eq!(Header::parse(&b), Ok(c.header));

    let c = scsi_command_ahs_case();
    let mut b = c.bytes.clone();
    b[71] = 0x33; // reserved byte of the Bidirectional Read EDTL AHS
    assert_eq!(Header::parse(&b), Ok(c.header));
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn truncated_at_every_length() {
    for c in all_cases() {
        let full = c.bytes.len();
        for len in 0..full {
            let need = if len < BHS_LEN { BHS_LEN } else { full };
            assert_eq!(
                Header::parse(&c.bytes[..len]),
                Err(WireError::Truncated { need, have: len }),
                "{} cut at {len}",
                c.name
            );
            assert_eq!(
                Packet::new_checked(&c.bytes[..len]).err(),
                Some(WireError::Truncated { need, have: len })
            );
        }
    }
}

#[test]
fn unknown_opcodes_are_rejected() {
    let mut unknown = 0;
    for v in 0u8..=0x3f {
        for high in [0x00, 0x40, 0x80, 0xc0] {
            let mut b = [0u8; BHS_LEN];
            b[0] = v | high;
            match Opcode::from_u8(v) {
                Some(op) => assert_ne!(
                    Header::parse(&b).map(|h| h.opcode()),
                    Err(WireError::UnknownOpcode(v)),
                    "{op:?}"
                ),
                None => {
                    assert_eq!(Header::parse(&b), Err(WireError::UnknownOpcode(v)));
                    assert_eq!(
                        WireError::UnknownOpcode(v).reject_reason(),
                        Some(RejectReason::CommandNotSupported)
                    );
                    unknown += 1;
                }
            }
        }
    }
    assert_eq!(unknown, (64 - 18) * 4);
}

#[test]
fn data_segment_on_pdus_without_one_is_rejected() {
    for c in [
        tmf_request_case(),
        logout_request_case(),
        snack_case(),
        tmf_response_case(),
        logout_response_case(),
        r2t_case(),
    ] {
        let op = c.header.opcode();
        assert!(!op.carries_data());
        let mut b = c.bytes.clone();
        b[7] = 4;
        assert_eq!(
            Header::parse(&b),
            Err(WireError::InvalidField {
                opcode: op,
                field: "DataSegmentLength",
                value: 4
            }),
            "{}",
            c.name
        );
    }
    for op in Opcode::ALL {
        let carries = !matches!(
            op,
            Opcode::TaskMgmtRequest
                | Opcode::TaskMgmtResponse
                | Opcode::LogoutRequest
                | Opcode::LogoutResponse
                | Opcode::R2t
                | Opcode::SnackRequest
        );
        assert_eq!(op.carries_data(), carries, "{op:?}");
    }
}

#[test]
fn ahs_on_other_opcodes_is_rejected() {
    for c in all_cases() {
        if c.header.opcode() == Opcode::ScsiCommand {
            continue;
        }
        let mut b = c.bytes.clone();
        b[4] = 1;
        b.extend_from_slice(&[0x00, 0x05, 0x02, 0x00]);
        assert_eq!(
            Header::parse(&b),
            Err(WireError::BadAhs {
                offset: BHS_LEN,
                problem: AhsProblem::NotAllowed
            }),
            "{}",
            c.name
        );
    }
}

/// A SCSI Command BHS followed by the given AHS rows (TotalAHSLength from their length).
fn command_with_ahs(ahs_rows: &[&str]) -> Vec<u8> {
    let ahs = hex(ahs_rows);
    assert_eq!(ahs.len() % 4, 0);
    let mut b = scsi_command_case().bytes;
    b[4] = (ahs.len() / 4) as u8;
    b.extend_from_slice(&ahs);
    b
}

fn ahs_error(offset: usize, problem: AhsProblem) -> Result<Header, WireError> {
    Err(WireError::BadAhs { offset, problem })
}

#[test]
fn bad_ahs_is_rejected() {
    let parse = |rows: &[&str]| Header::parse(&command_with_ahs(rows));
    // Unknown AHS types, including type 0, the reserved 3..59, a non-iSCSI extension and reserved bits set.
    for t in [0u8, 3, 59, 60, 63, 0x41, 0x81, 0xff] {
        let row = format!("00 05 {t:02x} 00");
        assert_eq!(
            parse(&[&row, "00 00 00 00"]),
            ahs_error(48, AhsProblem::UnknownType(t)),
            "type {t}"
        );
    }
    // Bidirectional Read EDTL with an AHSLength other than 5.
    assert_eq!(
        parse(&["00 04 02 00", "00 00 00 00"]),
        ahs_error(
            48,
            AhsProblem::BadLength {
                ahs_type: 2,
                ahs_length: 4
            }
        )
    );
    assert_eq!(
        parse(&["00 09 02 00", "00 00 00 00", "00 00 00 00"]),
        ahs_error(
            48,
            AhsProblem::BadLength {
                ahs_type: 2,
                ahs_length: 9
            }
        )
    );
    // Extended CDB without any CDB byte.
    assert_eq!(
        parse(&["00 01 01 00"]),
        ahs_error(
            48,
            AhsProblem::BadLength {
                ahs_type: 1,
                ahs_length: 1
            }
        )
    );
    assert_eq!(
        parse(&["00 00 01 00"]),
        ahs_error(
            48,
            AhsProblem::BadLength {
                ahs_type: 1,
                ahs_length: 0
            }
        )
    );
    // AHSs running past TotalAHSLength.
    assert_eq!(
        parse(&["00 05 02 00"]),
        ahs_error(48, AhsProblem::Overrun { ahs_length: 5 })
    );
    assert_eq!(
        parse(&["ff ff 01 00", "00 00 00 00"]),
        ahs_error(48, AhsProblem::Overrun { ahs_length: 0xffff })
    );
    assert_eq!(
        parse(&["00 03 01 00", "aa bb 00 00", "00 06 01 00"]),
        ahs_error(56, AhsProblem::Overrun { ahs_length: 6 })
    );
    // The same type twice; the offset names the second one.
    assert_eq!(
        parse(&["00 05 02 00", "00 00 00 01", "00 05 02 00", "00 00 00 02"]),
        ahs_error(56, AhsProblem::Duplicate(2))
    );
    assert_eq!(
        parse(&["00 02 01 00", "aa 00 00 00", "00 02 01 00", "bb 00 00 00"]),
        ahs_error(56, AhsProblem::Duplicate(1))
    );
    // A bad AHS after a good one.
    assert_eq!(
        parse(&["00 05 02 00", "00 00 00 01", "00 05 07 00", "00 00 00 00"]),
        ahs_error(56, AhsProblem::UnknownType(7))
    );
    let e = parse(&["00 05 03 00", "00 00 00 00"]).unwrap_err();
    assert_eq!(e.reject_reason(), Some(RejectReason::ProtocolError));
}

#[test]
fn good_ahs_variants() {
    let parse = |rows: &[&str]| match Header::parse(&command_with_ahs(rows)) {
        Ok(Header::ScsiCommand(c)) => (c.ext_cdb, c.bidi_read_edtl),
        other => panic!("{other:?}"),
    };
    // Bidirectional AHS before the Extended CDB AHS: order is free.
    assert_eq!(
        parse(&["00 05 02 00", "00 01 00 00", "00 02 01 00", "99 00 00 00"]),
        (vec![0x99], Some(0x1_0000))
    );
    // Extended CDB AHSs of every padding.
    assert_eq!(parse(&["00 02 01 00", "01 00 00 00"]), (vec![1], None));
    assert_eq!(parse(&["00 03 01 00", "01 02 00 00"]), (vec![1, 2], None));
    assert_eq!(
        parse(&["00 04 01 00", "01 02 03 00"]),
        (vec![1, 2, 3], None)
    );
    assert_eq!(
        parse(&["00 05 01 00", "01 02 03 04"]),
        (vec![1, 2, 3, 4], None)
    );
    assert_eq!(
        parse(&["00 06 01 00", "01 02 03 04", "05 00 00 00"]),
        (vec![1, 2, 3, 4, 5], None)
    );
    // The largest SPC CDB (260 bytes: 244 in the AHS), and a maximal AHS area.
    let ext: Vec<u8> = (0..244).map(|i| i as u8).collect();
    let cmd = ScsiCommand {
        ext_cdb: ext.clone(),
        ..scsi_command_struct()
    };
    let b = Header::ScsiCommand(cmd.clone()).to_vec(0).unwrap();
    assert_eq!(b.len(), 48 + 248);
    assert_eq!(&b[48..52], &[0x00, 245, 0x01, 0x00]);
    assert_eq!(Header::parse(&b), Ok(Header::ScsiCommand(cmd.clone())));
    assert_eq!(cmd.full_cdb().len(), 260);
    assert_eq!(&cmd.full_cdb()[16..], &ext[..]);
}

fn scsi_command_struct() -> ScsiCommand {
    match scsi_command_case().header {
        Header::ScsiCommand(c) => c,
        _ => unreachable!(),
    }
}

#[test]
fn emit_errors() {
    let nop = nop_in_case().header;
    let mut small = [0u8; 47];
    assert_eq!(
        nop.emit(0, &mut small),
        Err(WireError::BufferTooSmall { need: 48, have: 47 })
    );
    assert_eq!(
        nop.emit(MAX_DATA_SEGMENT_LEN + 1, &mut [0u8; 48]),
        Err(WireError::DataSegmentTooLong {
            len: MAX_DATA_SEGMENT_LEN + 1,
            max: MAX_DATA_SEGMENT_LEN
        })
    );
    assert!(nop.emit(MAX_DATA_SEGMENT_LEN, &mut [0u8; 48]).is_ok());

    let with_ahs = scsi_command_ahs_case().header;
    assert_eq!(
        with_ahs.emit(0, &mut [0u8; 48]),
        Err(WireError::BufferTooSmall { need: 76, have: 48 })
    );

    // 1016 extension bytes fill TotalAHSLength = 255 exactly; one more does not fit.
    let fits = Header::ScsiCommand(ScsiCommand {
        ext_cdb: vec![7; 1016],
        ..scsi_command_struct()
    });
    let b = fits.to_vec(0).unwrap();
    assert_eq!((b.len(), b[4]), (48 + 1020, 255));
    assert_eq!(Header::parse(&b), Ok(fits));
    let too_long = Header::ScsiCommand(ScsiCommand {
        ext_cdb: vec![7; 1017],
        ..scsi_command_struct()
    });
    assert_eq!(too_long.to_vec(0), Err(WireError::AhsTooLong { len: 1024 }));
    let too_long = Header::ScsiCommand(ScsiCommand {
        ext_cdb: vec![7; 1016],
        bidi_read_edtl: Some(1),
        ..scsi_command_struct()
    });
    assert_eq!(too_long.to_vec(0), Err(WireError::AhsTooLong { len: 1028 }));
}

#[test]
fn emit_masks_bit_fields_to_their_width() {
    let cmd = Header::ScsiCommand(ScsiCommand {
        attr: 0xff,
        read: false,
        write: false,
        final_: false,
        ..scsi_command_struct()
    });
    let b = cmd.to_vec(0).unwrap();
    assert_eq!(b[1], 0x07);
    let tmf = Header::TaskMgmtRequest(TaskMgmtRequest {
        function: 0xff,
        ..match tmf_request_case().header {
            Header::TaskMgmtRequest(t) => t,
            _ => unreachable!(),
        }
    });
    assert_eq!(tmf.to_vec(0).unwrap()[1], 0xff);
    let login = Header::LoginRequest(LoginRequest {
        csg: 0xff,
        nsg: 0xfd,
        transit: false,
        continue_: true,
        ..match login_request_case().header {
            Header::LoginRequest(l) => l,
            _ => unreachable!(),
        }
    });
    assert_eq!(login.to_vec(0).unwrap()[1], 0x40 | 0x0c | 0x01);
    let snack = Header::SnackRequest(SnackRequest {
        snack_type: 0xf3,
        ..match snack_case().header {
            Header::SnackRequest(s) => s,
            _ => unreachable!(),
        }
    });
    assert_eq!(snack.to_vec(0).unwrap()[1], 0x83);
}

#[test]
fn wire_error_reject_reasons() {
    use WireError as E;
    assert_eq!(
        E::UnknownOpcode(0x1c).reject_reason(),
        Some(RejectReason::CommandNotSupported)
    );
    assert_eq!(
        E::InvalidField {
            opcode: Opcode::R2t,
            field: "x",
            value: 0
        }
        .reject_reason(),
        Some(RejectReason::InvalidPduField)
    );
    assert_eq!(
        E::BadAhs {
            offset: 48,
            problem: AhsProblem::NotAllowed
        }
        .reject_reason(),
        Some(RejectReason::ProtocolError)
    );
    assert_eq!(
        E::DataSegmentTooLong { len: 2, max: 1 }.reject_reason(),
        Some(RejectReason::ProtocolError)
    );
    assert_eq!(
        E::DigestMismatch {
            kind: DigestKind::Data,
            received: 1,
            computed: 2
        }
        .reject_reason(),
        Some(RejectReason::DataDigestError)
    );
    assert_eq!(
        E::DigestMismatch {
            kind: DigestKind::Header,
            received: 1,
            computed: 2
        }
        .reject_reason(),
        None
    );
    assert_eq!(E::Truncated { need: 48, have: 0 }.reject_reason(), None);
    assert_eq!(
        E::DigestMismatch {
            kind: DigestKind::Header,
            received: 0x1234,
            computed: 0xabcd
        }
        .to_string(),
        "header digest mismatch: received 0x00001234, computed 0x0000abcd"
    );
    assert_eq!(
        E::BadAhs {
            offset: 52,
            problem: AhsProblem::UnknownType(3)
        }
        .to_string(),
        "bad AHS at PDU offset 52: unknown AHS type 0x03"
    );
    assert_eq!(E::UnknownOpcode(0x1c).to_string(), "unknown opcode 0x1c");
}

// ---------------------------------------------------------------------------------------------------------------
// Header helpers and the Packet view
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn header_helpers() {
    let cases = all_cases();
    let get = |name: &str| &cases.iter().find(|c| c.name == name).unwrap().header;
    assert_eq!(get("Reject").itt(), RESERVED_TAG);
    assert_eq!(get("Asynchronous Message").itt(), RESERVED_TAG);
    assert_eq!(get("R2T").itt(), 0x33);
    assert!(get("NOP-Out").immediate());
    assert!(!get("SCSI Command READ(10)").immediate());
    assert!(get("Login Request").immediate());
    assert!(!get("SCSI Data-Out").immediate());
    assert_eq!(get("SCSI Command READ(10)").cmd_sn(), Some(S(5)));
    assert_eq!(get("SCSI Data-Out").cmd_sn(), None);
    assert_eq!(get("SCSI Data-Out").exp_stat_sn(), Some(S(6)));
    assert_eq!(get("SNACK Request").exp_stat_sn(), Some(S(0x30)));
    assert_eq!(get("R2T").exp_stat_sn(), None);
    assert_eq!(get("SCSI Data-In with status").stat_sn(), Some(S(0x12)));
    assert_eq!(get("SCSI Data-In without status").stat_sn(), None);
    assert_eq!(get("Reject").stat_sn(), Some(S(0x50)));
    assert_eq!(get("NOP-Out").stat_sn(), None);
    assert_eq!(get("SCSI Data-Out").ttt(), Some(0x1234));
    assert_eq!(get("Login Request").ttt(), None);
    assert_eq!(get("R2T").lun(), Some(0x0001_0000_0000_0000));
    assert_eq!(get("Logout Request").lun(), None);
    assert!(!get("SCSI Data-In without status").final_());
    assert!(get("Login Request").final_());
    assert!(get("Reject").final_());
    for c in &cases {
        assert_eq!(
            c.header.is_initiator(),
            (c.bytes[0] & 0x3f) < 0x20,
            "{}",
            c.name
        );
        assert_eq!(c.header.opcode() as u8, c.bytes[0] & 0x3f, "{}", c.name);
        assert_eq!(c.header.opcode().is_initiator(), c.header.is_initiator());
        assert_eq!(c.header.immediate(), c.bytes[0] & 0x40 != 0, "{}", c.name);
    }
    for op in Opcode::ALL {
        assert_eq!(Opcode::from_u8(op as u8), Some(op));
        assert_eq!(Opcode::try_from(u8::from(op)), Ok(op));
        assert_eq!(
            op.has_immediate_bit(),
            op.is_initiator() && !matches!(op, Opcode::DataOut | Opcode::SnackRequest)
        );
    }
    assert_eq!(Opcode::try_from(0x1c), Err(WireError::UnknownOpcode(0x1c)));
    for v in 0..8u8 {
        assert_eq!(TaskAttr::from_u8(v).map(|a| a as u8), (v < 5).then_some(v));
    }
}

#[test]
fn packet_setters_and_getters_agree() {
    let mut buf = [0u8; 56];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_opcode(Opcode::ScsiCommand);
    p.set_immediate(true);
    p.set_final(true);
    p.set_read(true);
    p.set_write(true);
    p.set_attr(4);
    p.set_total_ahs_len(2);
    p.set_data_segment_length(0x12_3456);
    p.set_lun(0x0102_0304_0506_0708);
    p.set_itt(0xa1a2_a3a4);
    p.set_expected_data_transfer_length(0xb1b2_b3b4);
    p.set_cmd_sn(S(0xc1c2_c3c4));
    p.set_exp_stat_sn(S(0xd1d2_d3d4));
    p.set_cdb(&[0xee; 16]);
    p.ahs_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(p.opcode(), Ok(Opcode::ScsiCommand));
    assert_eq!(p.opcode_raw(), 0x01);
    assert!(p.immediate() && p.final_() && p.read() && p.write());
    assert_eq!(p.attr(), 4);
    assert_eq!(p.flags(), 0xe4);
    assert_eq!(p.total_ahs_len(), 2);
    assert_eq!(p.ahs_len(), 8);
    assert_eq!(p.header_len(), 56);
    assert_eq!(p.data_segment_length(), 0x12_3456);
    assert_eq!(p.lun(), 0x0102_0304_0506_0708);
    assert_eq!(p.itt(), 0xa1a2_a3a4);
    assert_eq!(p.expected_data_transfer_length(), 0xb1b2_b3b4);
    assert_eq!(p.ttt(), 0xb1b2_b3b4, "TTT and EDTL share bytes 20..24");
    assert_eq!(p.cmd_sn(), S(0xc1c2_c3c4));
    assert_eq!(p.exp_stat_sn(), S(0xd1d2_d3d4));
    assert_eq!(p.cdb(), [0xee; 16]);
    assert_eq!(p.ahs(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    // Bit setters leave the neighbouring bits alone.
    p.set_attr(1);
    p.set_read(false);
    assert_eq!(p.flags(), 0xa1);
    p.set_final(false);
    assert_eq!(p.flags(), 0x21);
    p.set_immediate(false);
    assert_eq!(p.opcode_raw(), 0x01);
    assert!(!p.immediate());
    // DataSegmentLength is 24 bits wide and does not spill into TotalAHSLength.
    p.set_data_segment_length(0xffff_ffff);
    assert_eq!(p.data_segment_length(), MAX_DATA_SEGMENT_LEN);
    assert_eq!(p.total_ahs_len(), 2);
    assert_eq!(buf[0], 0x01);
    assert_eq!(&buf[4..8], &[2, 0xff, 0xff, 0xff]);

    // Login fields.
    let mut buf = [0u8; 48];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_opcode(Opcode::LoginResponse);
    p.set_transit(true);
    p.set_continue(false);
    p.set_csg(3);
    p.set_nsg(1);
    p.set_version_max(2);
    p.set_version_active(1);
    p.set_isid([1, 2, 3, 4, 5, 6]);
    p.set_tsih(0x7788);
    p.set_status_class(3);
    p.set_status_detail(2);
    assert!(p.transit() && !p.continue_());
    assert_eq!(
        (p.csg(), p.nsg(), p.version_max(), p.version_active()),
        (3, 1, 2, 1)
    );
    assert_eq!((p.isid(), p.tsih()), ([1, 2, 3, 4, 5, 6], 0x7788));
    assert_eq!((p.status_class(), p.status_detail()), (3, 2));
    assert_eq!(&buf[..4], &[0x23, 0x8d, 2, 1]);
    assert_eq!(&buf[8..16], &[1, 2, 3, 4, 5, 6, 0x77, 0x88]);
    assert_eq!(&buf[36..38], &[3, 2]);

    // Async Message and Logout Response halfwords.
    let mut buf = [0u8; 48];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_async_event(4);
    p.set_async_vcode(9);
    p.set_parameter1(0x1111);
    p.set_parameter2(0x2222);
    p.set_parameter3(0x3333);
    assert_eq!((p.time2wait(), p.time2retain()), (0x2222, 0x3333));
    assert_eq!(&buf[36..44], &[4, 9, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33]);
}

#[test]
fn packet_new_checked_requires_the_whole_ahs() {
    let mut b = vec![0u8; 48];
    b[4] = 3;
    assert_eq!(
        Packet::new_checked(&b[..]).err(),
        Some(WireError::Truncated { need: 60, have: 48 })
    );
    b.resize(60, 0);
    let p = Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.ahs().len(), 12);
    assert_eq!(p.bhs().len(), 48);
    assert_eq!(p.into_inner().len(), 60);
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips and fuzzing
// ---------------------------------------------------------------------------------------------------------------

fn random_header(rng: &mut Rng, op: Opcode) -> Header {
    match op {
        Opcode::NopOut => Header::NopOut(NopOut {
            immediate: rng.bool(),
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            cmd_sn: rng.sn(),
            exp_stat_sn: rng.sn(),
        }),
        Opcode::ScsiCommand => {
            let ext_len = if rng.bool() { 0 } else { 1 + rng.below(300) };
            Header::ScsiCommand(ScsiCommand {
                immediate: rng.bool(),
                final_: rng.bool(),
                read: rng.bool(),
                write: rng.bool(),
                attr: rng.u8() & 7,
                lun: rng.next(),
                itt: rng.u32(),
                edtl: rng.u32(),
                cmd_sn: rng.sn(),
                exp_stat_sn: rng.sn(),
                cdb: rng.array(),
                ext_cdb: rng.bytes(ext_len),
                bidi_read_edtl: rng.bool().then(|| rng.u32()),
            })
        }
        Opcode::TaskMgmtRequest => Header::TaskMgmtRequest(TaskMgmtRequest {
            immediate: rng.bool(),
            function: rng.u8() & 0x7f,
            lun: rng.next(),
            itt: rng.u32(),
            rtt: rng.u32(),
            cmd_sn: rng.sn(),
            exp_stat_sn: rng.sn(),
            ref_cmd_sn: rng.sn(),
            exp_data_sn: rng.sn(),
        }),
        Opcode::LoginRequest => Header::LoginRequest(LoginRequest {
            transit: rng.bool(),
            continue_: rng.bool(),
            csg: rng.u8() & 3,
            nsg: rng.u8() & 3,
            version_max: rng.u8(),
            version_min: rng.u8(),
            isid: rng.array(),
            tsih: rng.u16(),
            itt: rng.u32(),
            cid: rng.u16(),
            cmd_sn: rng.sn(),
            exp_stat_sn: rng.sn(),
        }),
        Opcode::TextRequest => Header::TextRequest(TextRequest {
            immediate: rng.bool(),
            final_: rng.bool(),
            continue_: rng.bool(),
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            cmd_sn: rng.sn(),
            exp_stat_sn: rng.sn(),
        }),
        Opcode::DataOut => Header::DataOut(DataOut {
            final_: rng.bool(),
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            exp_stat_sn: rng.sn(),
            data_sn: rng.sn(),
            buffer_offset: rng.u32(),
        }),
        Opcode::LogoutRequest => Header::LogoutRequest(LogoutRequest {
            immediate: rng.bool(),
            reason: rng.u8() & 0x7f,
            itt: rng.u32(),
            cid: rng.u16(),
            cmd_sn: rng.sn(),
            exp_stat_sn: rng.sn(),
        }),
        Opcode::SnackRequest => Header::SnackRequest(SnackRequest {
            snack_type: rng.u8() & 0x0f,
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            exp_stat_sn: rng.sn(),
            beg_run: rng.u32(),
            run_length: rng.u32(),
        }),
        Opcode::NopIn => Header::NopIn(NopIn {
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
        }),
        Opcode::ScsiResponse => Header::ScsiResponse(ScsiResponse {
            bidi_overflow: rng.bool(),
            bidi_underflow: rng.bool(),
            overflow: rng.bool(),
            underflow: rng.bool(),
            response: rng.u8(),
            status: rng.u8(),
            itt: rng.u32(),
            snack_tag: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            exp_data_sn: rng.sn(),
            bidi_residual: rng.u32(),
            residual: rng.u32(),
        }),
        Opcode::TaskMgmtResponse => Header::TaskMgmtResponse(TaskMgmtResponse {
            response: rng.u8(),
            itt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
        }),
        Opcode::LoginResponse => Header::LoginResponse(LoginResponse {
            transit: rng.bool(),
            continue_: rng.bool(),
            csg: rng.u8() & 3,
            nsg: rng.u8() & 3,
            version_max: rng.u8(),
            version_active: rng.u8(),
            isid: rng.array(),
            tsih: rng.u16(),
            itt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            status_class: rng.u8(),
            status_detail: rng.u8(),
        }),
        Opcode::TextResponse => Header::TextResponse(TextResponse {
            final_: rng.bool(),
            continue_: rng.bool(),
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
        }),
        Opcode::DataIn => {
            let status = rng.bool().then(|| rng.u8());
            Header::DataIn(DataIn {
                final_: rng.bool(),
                ack: rng.bool(),
                overflow: rng.bool(),
                underflow: rng.bool(),
                status,
                lun: rng.next(),
                itt: rng.u32(),
                ttt: rng.u32(),
                stat_sn: if status.is_some() { rng.sn() } else { S(0) },
                exp_cmd_sn: rng.sn(),
                max_cmd_sn: rng.sn(),
                data_sn: rng.sn(),
                buffer_offset: rng.u32(),
                residual: rng.u32(),
            })
        }
        Opcode::LogoutResponse => Header::LogoutResponse(LogoutResponse {
            response: rng.u8(),
            itt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            time2wait: rng.u16(),
            time2retain: rng.u16(),
        }),
        Opcode::R2t => Header::R2t(R2t {
            lun: rng.next(),
            itt: rng.u32(),
            ttt: rng.u32(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            r2t_sn: rng.sn(),
            buffer_offset: rng.u32(),
            desired_len: rng.u32(),
        }),
        Opcode::AsyncMessage => Header::AsyncMessage(AsyncMessage {
            lun: rng.next(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            event: rng.u8(),
            vcode: rng.u8(),
            param1: rng.u16(),
            param2: rng.u16(),
            param3: rng.u16(),
        }),
        Opcode::Reject => Header::Reject(Reject {
            reason: rng.u8(),
            stat_sn: rng.sn(),
            exp_cmd_sn: rng.sn(),
            max_cmd_sn: rng.sn(),
            data_sn: rng.sn(),
        }),
    }
}

#[test]
fn random_round_trips_every_opcode() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..500 {
        for op in Opcode::ALL {
            let h = random_header(&mut rng, op);
            let dsl = if op.carries_data() {
                rng.u32() & MAX_DATA_SEGMENT_LEN
            } else {
                0
            };
            let bytes = h.to_vec(dsl).unwrap();
            assert_eq!(bytes.len(), h.buffer_len());
            assert_eq!(Header::parse(&bytes).as_ref(), Ok(&h));
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(p.data_segment_length(), dsl);
            assert_eq!(p.opcode(), Ok(op));
            let f = Framing::parse(&bytes, Digests::BOTH, MAX_DATA_SEGMENT_LEN).unwrap();
            assert_eq!(f, Framing::for_header(&h, dsl, Digests::BOTH));
            assert_eq!(f.header_len(), bytes.len());
        }
    }
}

/// A pseudo-random input biased towards valid opcodes, plausible AHS chains and exact lengths, so that the fuzz loop
/// reaches every branch of the parser.
fn fuzz_input(rng: &mut Rng) -> Vec<u8> {
    if rng.below(10) == 0 {
        let len = rng.below(BHS_LEN);
        return rng.bytes(len);
    }
    let mut b = rng.bytes(BHS_LEN);
    match rng.below(8) {
        0 | 1 => b[0] = (b[0] & 0xc0) | Opcode::ScsiCommand as u8,
        7 => {}
        _ => b[0] = (b[0] & 0xc0) | Opcode::ALL[rng.below(Opcode::ALL.len())] as u8,
    }
    if rng.bool() {
        b[5..8].fill(0);
    }
    let mut ahs = Vec::new();
    if b[0] & 0x3f == Opcode::ScsiCommand as u8 && rng.below(4) != 0 {
        for _ in 0..rng.below(4) {
            let (ty, len) = match rng.below(8) {
                0 | 1 => (1u8, 2 + rng.below(40) as u16),
                2 | 3 => (2, 5),
                4 => (rng.u8(), rng.u16() % 16),
                5 => (1, rng.below(3) as u16),
                6 => (2, rng.u16() % 12),
                _ => (rng.u8() & 0x3f, rng.u16()),
            };
            ahs.extend_from_slice(&len.to_be_bytes());
            ahs.push(ty);
            let body = padded_len(3 + usize::from(len).min(64)) - 3;
            ahs.extend(rng.bytes(body));
        }
        ahs.truncate(MAX_AHS_LEN);
        ahs.truncate(ahs.len() / 4 * 4);
        b[4] = (ahs.len() / 4) as u8;
    } else if rng.below(5) == 0 {
        b[4] = rng.u8();
        ahs = rng.bytes(usize::from(b[4]) * 4);
    } else {
        b[4] = 0;
    }
    b.extend_from_slice(&ahs);
    match rng.below(6) {
        0 => {
            let cut = rng.below(b.len() + 1);
            b.truncate(cut);
        }
        1 => {
            let n = rng.below(64);
            b.extend(rng.bytes(n));
        }
        _ => {}
    }
    b
}

/// Calls every Packet accessor: none may panic after `new_checked`.
fn touch_all_accessors(p: &Packet<&[u8]>) -> u64 {
    let mut acc = u64::from(p.opcode_raw()) + u64::from(p.immediate()) + u64::from(p.final_());
    acc += u64::from(p.flags()) + p.ahs_len() as u64 + u64::from(p.data_segment_length()) + p.lun();
    acc += p.isid().iter().map(|&b| u64::from(b)).sum::<u64>() + u64::from(p.cdb()[15]);
    acc += (p.bhs().len() + p.ahs().len() + p.header_len()) as u64;
    acc += u64::from(p.transit())
        + u64::from(p.continue_())
        + u64::from(p.read())
        + u64::from(p.write());
    acc += u64::from(p.ack()) + u64::from(p.status_flag()) + u64::from(p.bidi_overflow());
    acc += u64::from(p.bidi_underflow()) + u64::from(p.overflow()) + u64::from(p.underflow());
    for v in [
        p.attr(),
        p.csg(),
        p.nsg(),
        p.function(),
        p.logout_reason(),
        p.snack_type(),
    ] {
        acc += u64::from(v);
    }
    for v in [
        p.response(),
        p.status(),
        p.reason(),
        p.version_max(),
        p.version_min(),
        p.version_active(),
    ] {
        acc += u64::from(v);
    }
    for v in [
        p.status_class(),
        p.status_detail(),
        p.async_event(),
        p.async_vcode(),
    ] {
        acc += u64::from(v);
    }
    for v in [
        p.tsih(),
        p.cid(),
        p.parameter1(),
        p.parameter2(),
        p.parameter3(),
        p.time2wait(),
        p.time2retain(),
    ] {
        acc += u64::from(v);
    }
    for v in [
        p.itt(),
        p.expected_data_transfer_length(),
        p.ttt(),
        p.rtt(),
        p.snack_tag(),
        p.buffer_offset(),
        p.bidi_residual_count(),
        p.beg_run(),
        p.residual_count(),
        p.desired_data_transfer_length(),
        p.run_length(),
    ] {
        acc += u64::from(v);
    }
    for v in [
        p.cmd_sn(),
        p.stat_sn(),
        p.exp_stat_sn(),
        p.exp_cmd_sn(),
        p.max_cmd_sn(),
        p.ref_cmd_sn(),
        p.exp_data_sn(),
        p.data_sn(),
        p.r2t_sn(),
    ] {
        acc += u64::from(v.0);
    }
    acc
}

#[test]
fn fuzz_parse_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut truncated, mut unknown, mut bad_ahs, mut invalid) = (0, 0, 0, 0, 0);
    let mut opcodes_ok = std::collections::HashSet::new();
    let mut ahs_ok = 0;
    let mut sink = 0u64;
    for _ in 0..100_000 {
        let input = fuzz_input(&mut rng);
        let framing = Framing::parse(&input, Digests::BOTH, 1 << 20);
        if let Ok(f) = framing {
            // Offsets are consistent whatever the input.
            assert!(f.header_len() <= f.data_offset() && f.data_range().end <= f.total_len());
            let _ = f.check_digests(&input);
        }
        if let Ok(p) = Packet::new_checked(&input[..]) {
            sink = sink.wrapping_add(touch_all_accessors(&p));
        }
        match Header::parse(&input) {
            Ok(h) => {
                ok += 1;
                opcodes_ok.insert(h.opcode());
                if h.ahs_len() > 0 {
                    ahs_ok += 1;
                }
                // What parses re-emits to a canonical form that parses to the same Repr.
                let dsl = Packet::new_unchecked(&input[..]).data_segment_length();
                let bytes = h.to_vec(dsl).unwrap();
                assert_eq!(Header::parse(&bytes).as_ref(), Ok(&h), "input {input:02x?}");
                sink = sink.wrapping_add(u64::from(h.itt()) + h.lun().unwrap_or(0));
                let _ = (
                    h.immediate(),
                    h.final_(),
                    h.cmd_sn(),
                    h.exp_stat_sn(),
                    h.stat_sn(),
                    h.ttt(),
                );
            }
            Err(WireError::Truncated { need, have }) => {
                assert!(need > have && have == input.len());
                truncated += 1;
            }
            Err(WireError::UnknownOpcode(v)) => {
                assert!(Opcode::from_u8(v).is_none());
                unknown += 1;
            }
            Err(WireError::BadAhs { offset, .. }) => {
                assert!(offset >= BHS_LEN && offset < input.len());
                bad_ahs += 1;
            }
            Err(WireError::InvalidField { .. }) => invalid += 1,
            Err(e) => panic!("unexpected parse error {e:?}"),
        }
    }
    // The generator reaches every outcome, every opcode and the AHS decoder.
    assert!(ok > 20_000, "ok {ok}");
    assert!(truncated > 5_000 && unknown > 1_000 && bad_ahs > 1_000 && invalid > 500);
    assert_eq!(opcodes_ok.len(), Opcode::ALL.len());
    assert!(ahs_ok > 1_000, "ahs_ok {ahs_ok}");
    assert_ne!(sink, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Digests (RFC 3720 Appendix B.4)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn rfc3720_crc32c_examples() {
    // 32 bytes of zeroes: CRC bytes on the wire aa 36 91 8a.
    assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    assert_eq!(digest_to_wire(crc32c(&[0u8; 32])), [0xaa, 0x36, 0x91, 0x8a]);
    // 32 bytes of ones: 43 ab a8 62.
    assert_eq!(
        digest_to_wire(crc32c(&[0xffu8; 32])),
        [0x43, 0xab, 0xa8, 0x62]
    );
    // 32 bytes incrementing 00..1f: 4e 79 dd 46.
    let inc: Vec<u8> = (0u8..32).collect();
    assert_eq!(digest_to_wire(crc32c(&inc)), [0x4e, 0x79, 0xdd, 0x46]);
    // 32 bytes decrementing 1f..00: 5c db 3f 11.
    let dec: Vec<u8> = (0u8..32).rev().collect();
    assert_eq!(digest_to_wire(crc32c(&dec)), [0x5c, 0xdb, 0x3f, 0x11]);
    // An iSCSI SCSI Read (10) Command PDU: 56 3a 96 d9.
    assert_eq!(
        digest_to_wire(header_digest(&rfc3720_read10_pdu())),
        [0x56, 0x3a, 0x96, 0xd9]
    );
    assert_eq!(digest_from_wire([0xaa, 0x36, 0x91, 0x8a]), 0x8a91_36aa);
}

#[test]
fn data_digest_covers_zero_padding() {
    assert_eq!(data_digest(&[]), crc32c(&[]));
    assert_eq!(data_digest(&[1, 2, 3, 4]), crc32c(&[1, 2, 3, 4]));
    assert_eq!(data_digest(&[1, 2, 3]), crc32c(&[1, 2, 3, 0]));
    assert_eq!(data_digest(&[1, 2]), crc32c(&[1, 2, 0, 0]));
    assert_eq!(
        data_digest(&[1, 2, 3, 4, 5]),
        crc32c(&[1, 2, 3, 4, 5, 0, 0, 0])
    );
    assert_ne!(data_digest(&[1, 2, 3]), crc32c(&[1, 2, 3]));

    let mut rng = Rng(42);
    for len in 0..70 {
        let data = rng.bytes(len);
        let mut d = DataDigest::new();
        let cut = rng.below(len + 1);
        d.update(&data[..cut]);
        d.update(&[]);
        d.update(&data[cut..]);
        assert_eq!(d.len(), len);
        assert_eq!(d.is_empty(), len == 0);
        assert_eq!(d.finish(), crc32c(&data));
        assert_eq!(d.finish_zero_padded(), data_digest(&data));
        let mut padded = data.clone();
        padded.resize(padded_len(len), 0);
        assert_eq!(d.finish_zero_padded(), crc32c(&padded));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn pad_arithmetic() {
    let expected = [0, 3, 2, 1, 0, 3, 2, 1, 0];
    for (n, &pad) in expected.iter().enumerate() {
        assert_eq!(pad_len(n), pad, "pad_len({n})");
        assert_eq!(padded_len(n), n + pad);
        assert_eq!(padded_len(n) % 4, 0);
    }
    assert_eq!(pad_len(8191), 1);
    assert_eq!(pad_len(MAX_DATA_SEGMENT_LEN as usize), 1);
}

#[test]
fn framing_arithmetic() {
    struct Row {
        ahs_words: u8,
        dsl: u32,
        digests: Digests,
        header_digest: Option<usize>,
        data: std::ops::Range<usize>,
        pad: usize,
        data_digest: Option<usize>,
        total: usize,
    }
    let h = Digests {
        header: true,
        data: false,
    };
    let d = Digests {
        header: false,
        data: true,
    };
    let rows = [
        Row {
            ahs_words: 0,
            dsl: 0,
            digests: Digests::NONE,
            header_digest: None,
            data: 48..48,
            pad: 0,
            data_digest: None,
            total: 48,
        },
        // No data segment: no data digest even when data digests are in force.
        Row {
            ahs_words: 0,
            dsl: 0,
            digests: Digests::BOTH,
            header_digest: Some(48),
            data: 52..52,
            pad: 0,
            data_digest: None,
            total: 52,
        },
        Row {
            ahs_words: 0,
            dsl: 0,
            digests: d,
            header_digest: None,
            data: 48..48,
            pad: 0,
            data_digest: None,
            total: 48,
        },
        Row {
            ahs_words: 0,
            dsl: 1,
            digests: Digests::NONE,
            header_digest: None,
            data: 48..49,
            pad: 3,
            data_digest: None,
            total: 52,
        },
        Row {
            ahs_words: 0,
            dsl: 2,
            digests: d,
            header_digest: None,
            data: 48..50,
            pad: 2,
            data_digest: Some(52),
            total: 56,
        },
        Row {
            ahs_words: 0,
            dsl: 5,
            digests: Digests::BOTH,
            header_digest: Some(48),
            data: 52..57,
            pad: 3,
            data_digest: Some(60),
            total: 64,
        },
        Row {
            ahs_words: 2,
            dsl: 6,
            digests: h,
            header_digest: Some(56),
            data: 60..66,
            pad: 2,
            data_digest: None,
            total: 68,
        },
        Row {
            ahs_words: 7,
            dsl: 512,
            digests: Digests::BOTH,
            header_digest: Some(76),
            data: 80..592,
            pad: 0,
            data_digest: Some(592),
            total: 596,
        },
        Row {
            ahs_words: 0,
            dsl: 8192,
            digests: d,
            header_digest: None,
            data: 48..8240,
            pad: 0,
            data_digest: Some(8240),
            total: 8244,
        },
        Row {
            ahs_words: 255,
            dsl: MAX_DATA_SEGMENT_LEN,
            digests: Digests::BOTH,
            header_digest: Some(1068),
            data: 1072..1072 + 0xff_ffff,
            pad: 1,
            data_digest: Some(1072 + 0x100_0000),
            total: 1072 + 0x100_0000 + 4,
        },
    ];
    for (i, r) in rows.iter().enumerate() {
        let mut bhs = [0u8; 48];
        bhs[4] = r.ahs_words;
        bhs[5..8].copy_from_slice(&r.dsl.to_be_bytes()[1..]);
        let f = Framing::parse(&bhs, r.digests, MAX_DATA_SEGMENT_LEN).unwrap();
        assert_eq!(f, Framing::new(r.ahs_words, r.dsl, r.digests), "row {i}");
        assert_eq!(f.digests(), r.digests);
        assert_eq!(f.ahs_len(), usize::from(r.ahs_words) * 4, "row {i}");
        assert_eq!(
            f.ahs_range(),
            48..48 + usize::from(r.ahs_words) * 4,
            "row {i}"
        );
        assert_eq!(f.header_len(), 48 + usize::from(r.ahs_words) * 4, "row {i}");
        assert_eq!(f.header_range(), 0..f.header_len(), "row {i}");
        assert_eq!(f.header_digest_offset(), r.header_digest, "row {i}");
        assert_eq!(f.data_offset(), r.data.start, "row {i}");
        assert_eq!(f.data_len(), r.dsl as usize, "row {i}");
        assert_eq!(f.data_range(), r.data, "row {i}");
        assert_eq!(f.pad_len(), r.pad, "row {i}");
        assert_eq!(
            f.padded_data_range(),
            r.data.start..r.data.end + r.pad,
            "row {i}"
        );
        assert_eq!(f.data_digest_offset(), r.data_digest, "row {i}");
        assert_eq!(f.has_data_digest(), r.data_digest.is_some(), "row {i}");
        assert_eq!(f.total_len(), r.total, "row {i}");
    }
}

#[test]
fn framing_enforces_the_maximum_data_segment_length() {
    let mut bhs = [0u8; 48];
    bhs[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193
    assert_eq!(
        Framing::parse(&bhs, Digests::NONE, 8192),
        Err(WireError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        })
    );
    assert_eq!(
        Framing::parse(&bhs, Digests::NONE, 8193).map(|f| f.data_len()),
        Ok(8193)
    );
    assert_eq!(
        Framing::parse(&bhs[..47], Digests::NONE, 8192),
        Err(WireError::Truncated { need: 48, have: 47 })
    );
    assert_eq!(
        Framing::parse(&[], Digests::NONE, 8192),
        Err(WireError::Truncated { need: 48, have: 0 })
    );
    // Values above the 24-bit field are clamped by Framing::new.
    assert_eq!(
        Framing::new(0, u32::MAX, Digests::NONE).data_len(),
        MAX_DATA_SEGMENT_LEN as usize
    );
}

/// Builds a whole PDU (header, data, padding, digests) in one buffer.
fn build_pdu(header: &Header, data: &[u8], digests: Digests) -> (Framing, Vec<u8>) {
    let f = Framing::for_header(header, data.len() as u32, digests);
    let mut pdu = vec![0xcc; f.total_len()];
    header.emit(data.len() as u32, &mut pdu).unwrap();
    pdu[f.data_range()].copy_from_slice(data);
    f.seal(&mut pdu).unwrap();
    (f, pdu)
}

#[test]
fn digests_on_a_whole_pdu() {
    let header = nop_out_case().header;
    let (f, pdu) = build_pdu(&header, b"hello", Digests::BOTH);
    assert_eq!(pdu.len(), 48 + 4 + 5 + 3 + 4);
    assert_eq!(&pdu[57..60], &[0, 0, 0], "seal zeroes the padding");
    assert_eq!(f.check_digests(&pdu), Ok(()));
    assert_eq!(&pdu[48..52], &digest_to_wire(header_digest(&pdu[..48])));
    assert_eq!(&pdu[60..64], &digest_to_wire(data_digest(b"hello")));
    // A PDU read from the wire with framing from its first bytes.
    let f2 = Framing::parse(&pdu, Digests::BOTH, 8192).unwrap();
    assert_eq!(f2, f);
    assert_eq!(Header::parse(&pdu[f2.header_range()]), Ok(header.clone()));
    assert_eq!(&pdu[f2.data_range()], b"hello");

    // Any flipped bit of the header, the data, the padding or a digest is caught by the right check.
    for i in 0..pdu.len() {
        let mut bad = pdu.clone();
        bad[i] ^= 0x10;
        let hd = f.check_header_digest(&bad);
        let dd = f.check_data_digest(&bad);
        if i < 52 {
            assert!(
                matches!(
                    hd,
                    Err(WireError::DigestMismatch {
                        kind: DigestKind::Header,
                        ..
                    })
                ),
                "byte {i}: {hd:?}"
            );
            assert_eq!(dd, Ok(()), "byte {i}");
        } else {
            assert_eq!(hd, Ok(()), "byte {i}");
            let e = dd.unwrap_err();
            assert!(
                matches!(
                    e,
                    WireError::DigestMismatch {
                        kind: DigestKind::Data,
                        ..
                    }
                ),
                "byte {i}: {e:?}"
            );
            assert_eq!(e.reject_reason(), Some(RejectReason::DataDigestError));
        }
    }
    // The received digest and the computed one are both reported.
    let mut bad = pdu.clone();
    bad[60..64].copy_from_slice(&digest_to_wire(0x1234_5678));
    assert_eq!(
        f.check_data_digest(&bad),
        Err(WireError::DigestMismatch {
            kind: DigestKind::Data,
            received: 0x1234_5678,
            computed: data_digest(b"hello")
        })
    );
    // Truncated PDUs.
    assert_eq!(
        f.check_data_digest(&pdu[..63]),
        Err(WireError::Truncated { need: 64, have: 63 })
    );
    assert_eq!(
        f.check_header_digest(&pdu[..51]),
        Err(WireError::Truncated { need: 52, have: 51 })
    );
    assert_eq!(f.check_header_digest(&pdu[..52]), Ok(()));
    let mut small = vec![0u8; 63];
    assert_eq!(
        f.seal(&mut small),
        Err(WireError::BufferTooSmall { need: 64, have: 63 })
    );
}

#[test]
fn digests_with_ahs_and_without_data() {
    // The header digest covers the AHS too.
    let header = scsi_command_ahs_case().header;
    let (f, pdu) = build_pdu(&header, &[], Digests::BOTH);
    assert_eq!(f.total_len(), 76 + 4);
    assert!(!f.has_data_digest());
    assert_eq!(&pdu[76..80], &digest_to_wire(header_digest(&pdu[..76])));
    assert_eq!(f.check_digests(&pdu), Ok(()));
    let mut bad = pdu.clone();
    bad[70] ^= 1;
    assert!(matches!(
        f.check_digests(&bad),
        Err(WireError::DigestMismatch {
            kind: DigestKind::Header,
            ..
        })
    ));
    // Only data digests in force.
    let (f, pdu) = build_pdu(
        &text_request_case().header,
        b"SendTargets=All\0",
        Digests {
            header: false,
            data: true,
        },
    );
    assert_eq!(f.total_len(), 48 + 16 + 4);
    assert_eq!(f.check_digests(&pdu), Ok(()));
    assert_eq!(
        f.check_header_digest(&pdu[..10]),
        Ok(()),
        "no header digest in force"
    );
    // No digests: checks pass on anything long enough.
    let (f, pdu) = build_pdu(&reject_case().header, &[0u8; 48], Digests::NONE);
    assert_eq!(f.total_len(), 96);
    assert_eq!(f.check_digests(&pdu), Ok(()));
}

#[test]
fn received_padding_is_covered_as_sent() {
    // A peer that put non-zero padding and digested it: the check uses the bytes as received.
    let header = nop_out_case().header;
    let f = Framing::for_header(
        &header,
        5,
        Digests {
            header: false,
            data: true,
        },
    );
    let mut pdu = vec![0u8; f.total_len()];
    header.emit(5, &mut pdu).unwrap();
    pdu[48..56].copy_from_slice(&[1, 2, 3, 4, 5, 0xaa, 0xbb, 0xcc]);
    let d = crc32c(&pdu[48..56]);
    pdu[56..60].copy_from_slice(&digest_to_wire(d));
    assert_eq!(f.check_data_digest(&pdu), Ok(()));
}

// ---------------------------------------------------------------------------------------------------------------
// LUNs (SAM-5 §4.7)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn lun_encoding() {
    assert_eq!(encode_lun(0), Some(0));
    assert_eq!(encode_lun(1), Some(0x0001_0000_0000_0000));
    assert_eq!(encode_lun(255), Some(0x00ff_0000_0000_0000));
    assert_eq!(encode_lun(256), Some(0x4100_0000_0000_0000));
    assert_eq!(encode_lun(0x1234), Some(0x5234_0000_0000_0000));
    assert_eq!(encode_lun(MAX_FLAT_LUN), Some(0x7fff_0000_0000_0000));
    assert_eq!(encode_lun(MAX_FLAT_LUN + 1), None);
    assert_eq!(encode_lun(u64::MAX), None);
    for lun in 0..=MAX_FLAT_LUN {
        let field = encode_lun(lun).unwrap();
        assert_eq!(decode_lun(field), Some(lun), "LUN {lun}");
        let method = field >> 62;
        assert_eq!(
            method,
            if lun <= MAX_PERIPHERAL_LUN { 0 } else { 1 },
            "LUN {lun}"
        );
    }
}

#[test]
fn lun_decoding() {
    assert_eq!(decode_lun(0x0005_0000_0000_0000), Some(5));
    // Flat space addressing for a small LUN is accepted too.
    assert_eq!(decode_lun(0x4005_0000_0000_0000), Some(5));
    assert_eq!(decode_lun(0x7fff_0000_0000_0000), Some(16383));
    // Peripheral device addressing with a bus identifier.
    assert_eq!(decode_lun(0x0105_0000_0000_0000), None);
    // Logical unit (10b) and extended (11b) address methods.
    assert_eq!(decode_lun(0x8005_0000_0000_0000), None);
    assert_eq!(decode_lun(0xc005_0000_0000_0000), None);
    // A second level.
    assert_eq!(decode_lun(0x0005_0001_0000_0000), None);
    assert_eq!(decode_lun(0x0000_0000_0000_0001), None);
    // The field as the Reprs hold it, from the wire.
    let r2t = r2t_case().bytes;
    let p = Packet::new_checked(&r2t[..]).unwrap();
    assert_eq!(decode_lun(p.lun()), Some(1));
}

// ---------------------------------------------------------------------------------------------------------------
// Code values
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn login_status_pairs() {
    let table: [(LoginStatus, u16); 18] = [
        (LoginStatus::Success, 0x0000),
        (LoginStatus::TargetMovedTemporarily, 0x0101),
        (LoginStatus::TargetMovedPermanently, 0x0102),
        (LoginStatus::InitiatorError, 0x0200),
        (LoginStatus::AuthenticationFailure, 0x0201),
        (LoginStatus::AuthorizationFailure, 0x0202),
        (LoginStatus::NotFound, 0x0203),
        (LoginStatus::TargetRemoved, 0x0204),
        (LoginStatus::UnsupportedVersion, 0x0205),
        (LoginStatus::TooManyConnections, 0x0206),
        (LoginStatus::MissingParameter, 0x0207),
        (LoginStatus::CantIncludeInSession, 0x0208),
        (LoginStatus::SessionTypeNotSupported, 0x0209),
        (LoginStatus::SessionDoesNotExist, 0x020a),
        (LoginStatus::InvalidDuringLogin, 0x020b),
        (LoginStatus::TargetError, 0x0300),
        (LoginStatus::ServiceUnavailable, 0x0301),
        (LoginStatus::OutOfResources, 0x0302),
    ];
    for (status, code) in table {
        let (class, detail) = ((code >> 8) as u8, code as u8);
        assert_eq!(status.pair(), (class, detail), "{status:?}");
        assert_eq!((status.class(), status.detail()), (class, detail));
        assert_eq!(LoginStatus::from_pair(class, detail), Some(status));
    }
    assert_eq!(LoginStatus::ALL.len(), table.len());
    assert_eq!(LoginStatus::from_pair(0x02, 0x0c), None);
    assert_eq!(LoginStatus::from_pair(0x04, 0x00), None);
    assert_eq!(
        LoginStatus::InitiatorError.class(),
        LOGIN_STATUS_CLASS_INITIATOR_ERROR
    );
    assert_eq!(
        LoginStatus::TargetError.class(),
        LOGIN_STATUS_CLASS_TARGET_ERROR
    );
    assert_eq!(
        LoginStatus::TargetMovedTemporarily.class(),
        LOGIN_STATUS_CLASS_REDIRECTION
    );
    assert_eq!(LoginStatus::Success.class(), LOGIN_STATUS_CLASS_SUCCESS);
}

#[test]
fn code_enums() {
    let reasons: Vec<u8> = RejectReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(reasons, (0x02..=0x0c).collect::<Vec<u8>>());
    assert_eq!(RejectReason::from_u8(0x01), None);
    assert_eq!(RejectReason::from_u8(0x0d), None);
    assert_eq!(
        RejectReason::try_from(0x09),
        Ok(RejectReason::InvalidPduField)
    );
    assert_eq!(RejectReason::try_from(0x42), Err(0x42));
    assert_eq!(u8::from(RejectReason::WaitingForLogout), 0x0c);

    let fns: Vec<u8> = TmfFunction::ALL.iter().map(|f| f.code()).collect();
    assert_eq!(fns, (1..=12).collect::<Vec<u8>>());
    assert_eq!(TmfFunction::from_u8(0), None);
    assert_eq!(TmfFunction::from_u8(13), None);
    assert_eq!(TmfFunction::from_u8(5), Some(TmfFunction::LogicalUnitReset));

    let rsps: Vec<u8> = TmfResponseCode::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(rsps, vec![0, 1, 2, 3, 4, 5, 6, 7, 255]);
    assert_eq!(TmfResponseCode::from_u8(8), None);

    let events: Vec<u8> = AsyncEvent::ALL.iter().map(|e| e.code()).collect();
    assert_eq!(events, vec![0, 1, 2, 3, 4, 5, 255]);
    assert_eq!(AsyncEvent::from_u8(6), None);

    assert_eq!(
        LogoutReason::ALL
            .iter()
            .map(|r| r.code())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(LogoutReason::from_u8(3), None);
    assert_eq!(
        LogoutResponseCode::ALL
            .iter()
            .map(|r| r.code())
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        SnackType::ALL.iter().map(|t| t.code()).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(SnackType::from_u8(4), None);
    assert_eq!(LoginStage::from_u8(2), None);
    assert_eq!(LoginStage::from_u8(3), Some(LoginStage::FullFeaturePhase));
    assert_eq!(
        ScsiResponseCode::from_u8(1),
        Some(ScsiResponseCode::TargetFailure)
    );
    assert_eq!(RESERVED_TAG, 0xffff_ffff);
    assert_eq!(ISCSI_VERSION, 0);
}
