//! `iscsi-batch`: a lock-step iSCSI load generator for reproducible per-command costs (bench/profile.sh).
//!
//! It logs in (no authentication, no digests, ImmediateData=Yes, InitialR2T=No), then repeats: write a batch of
//! `--qd` READ(10) or WRITE(10) commands of `--bs` bytes (writes carry their data as immediate data) to the socket
//! in one write(2), and read until every one of them has its status. The target therefore sees the same pattern in
//! every run, whatever the machine's load: a batch arrives at once and is answered at once, so instruction counts
//! per command measured on the target (callgrind) compare across builds. Its PDUs are built here byte by byte from
//! RFC 7143 §11, not with polltgt's own encoder.
//!
//! `iscsi-batch [--qd 32] [--bs 4096] [--op read|write] [--seconds 10] [--idle-first 0] HOST:PORT TARGET_IQN`
//! prints "commands N seconds S iops I" at the end. `--idle-first SECS` keeps the logged-in session idle that long
//! before the load (bench/profile.sh measures an idle iteration's instructions then).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Commands per batch (queue depth).
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Bytes per command (a multiple of 512).
    #[arg(long, default_value_t = 4096)]
    bs: u32,
    /// read or write.
    #[arg(long, default_value = "read")]
    op: String,
    /// How long to run the load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds to keep the session idle after login, before the load.
    #[arg(long, default_value_t = 0)]
    idle_first: u64,
    /// LBAs (512-byte blocks) the commands are spread over.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    lba_range: u64,
    /// host:port of the portal.
    portal: String,
    /// Target name.
    target: String,
}

const BHS: usize = 48;
const INITIATOR: &str = "iqn.2026-11.io.polltgt:iscsi-batch";
const RESERVED: u32 = 0xffff_ffff;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_dsl(b: &mut [u8], len: usize) {
    b[5] = (len >> 16) as u8;
    b[6] = (len >> 8) as u8;
    b[7] = len as u8;
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// One received PDU: its BHS and data segment.
struct Pdu {
    bhs: [u8; BHS],
    data: Vec<u8>,
}

struct Conn {
    sock: TcpStream,
    rbuf: Vec<u8>,
    start: usize,
    cmd_sn: u32,
    exp_stat_sn: u32,
    max_cmd_sn: u32,
}

impl Conn {
    /// The next whole PDU, reading as needed.
    fn next_pdu(&mut self) -> Result<Pdu> {
        loop {
            let have = &self.rbuf[self.start..];
            if have.len() >= BHS {
                let ahs = usize::from(have[4]) * 4;
                let dsl = (usize::from(have[5]) << 16) | (usize::from(have[6]) << 8) | usize::from(have[7]);
                let total = BHS + ahs + pad4(dsl);
                if have.len() >= total {
                    let mut bhs = [0u8; BHS];
                    bhs.copy_from_slice(&have[..BHS]);
                    let data = have[BHS + ahs..BHS + ahs + dsl].to_vec();
                    self.start += total;
                    return Ok(Pdu { bhs, data });
                }
            }
            if self.start > 0 {
                self.rbuf.drain(..self.start);
                self.start = 0;
            }
            let old = self.rbuf.len();
            self.rbuf.resize(old + 256 * 1024, 0);
            let n = self.sock.read(&mut self.rbuf[old..])?;
            self.rbuf.truncate(old + n);
            if n == 0 {
                bail!("the target closed the connection");
            }
        }
    }

    /// One login request/response round. Returns the response.
    fn login_step(&mut self, csg: u8, nsg: u8, tsih: u16, keys: &[(&str, String)]) -> Result<Pdu> {
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}").as_bytes());
            text.push(0);
        }
        let mut pdu = vec![0u8; BHS + pad4(text.len())];
        pdu[0] = 0x43; // Login Request, immediate
        pdu[1] = 0x80 | (csg << 2) | nsg; // T
        put_dsl(&mut pdu, text.len());
        pdu[8..14].copy_from_slice(&[0x80, 0, 0, 0x12, 0x34, 0x56]); // ISID: random qualifier format
        pdu[14..16].copy_from_slice(&tsih.to_be_bytes());
        put32(&mut pdu, 16, 0); // ITT
        put32(&mut pdu, 24, self.cmd_sn);
        put32(&mut pdu, 28, self.exp_stat_sn);
        pdu[BHS..BHS + text.len()].copy_from_slice(&text);
        self.sock.write_all(&pdu)?;
        let rsp = self.next_pdu()?;
        if rsp.bhs[0] & 0x3f != 0x23 {
            bail!("expected a Login Response, got opcode {:#x}", rsp.bhs[0] & 0x3f);
        }
        if rsp.bhs[36] != 0 {
            bail!("login failed: status {:#04x}{:02x}", rsp.bhs[36], rsp.bhs[37]);
        }
        self.exp_stat_sn = be32(&rsp.bhs, 24).wrapping_add(1);
        self.max_cmd_sn = be32(&rsp.bhs, 32);
        Ok(rsp)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.bs == 0 || args.bs % 512 != 0 {
        bail!("--bs must be a positive multiple of 512");
    }
    let write = match args.op.as_str() {
        "read" => false,
        "write" => true,
        o => bail!("--op {o}: read or write"),
    };
    let sock = TcpStream::connect(&args.portal).with_context(|| format!("connect {}", args.portal))?;
    sock.set_nodelay(true)?;
    let mut c = Conn { sock, rbuf: Vec::new(), start: 0, cmd_sn: 1, exp_stat_sn: 0, max_cmd_sn: 1 };
    // Security stage (no authentication), then the operational stage into the full feature phase.
    let first = c.login_step(
        0,
        1,
        0,
        &[
            ("InitiatorName", INITIATOR.to_string()),
            ("TargetName", args.target.clone()),
            ("SessionType", "Normal".to_string()),
            ("AuthMethod", "None".to_string()),
        ],
    )?;
    let tsih = u16::from_be_bytes([first.bhs[14], first.bhs[15]]);
    let burst = (args.bs.max(262_144)).to_string();
    let mut rsp = first;
    // The target may stay in the security stage for a round; go on until it moves to operational.
    let mut rounds = 0;
    while rsp.bhs[1] & 0x80 == 0 || rsp.bhs[1] & 0x03 != 1 {
        rounds += 1;
        if rounds > 4 {
            bail!("the target did not leave the security stage");
        }
        rsp = c.login_step(0, 1, tsih, &[])?;
    }
    let mut op_keys = vec![
        ("HeaderDigest", "None".to_string()),
        ("DataDigest", "None".to_string()),
        ("MaxRecvDataSegmentLength", "262144".to_string()),
        ("ImmediateData", "Yes".to_string()),
        ("InitialR2T", "No".to_string()),
        ("FirstBurstLength", burst.clone()),
        ("MaxBurstLength", burst),
    ];
    loop {
        rsp = c.login_step(1, 3, tsih, &op_keys)?;
        if rsp.bhs[1] & 0x80 != 0 && rsp.bhs[1] & 0x03 == 3 {
            break;
        }
        op_keys.clear();
        rounds += 1;
        if rounds > 8 {
            bail!("the target did not enter the full feature phase");
        }
    }
    let _ = rsp.data;
    // TEST UNIT READY until GOOD: the first command of a new I_T nexus gets the power-on unit attention.
    let mut itt: u32 = 1;
    let mut ready = false;
    for _ in 0..4 {
        let mut h = [0u8; BHS];
        h[0] = 0x01;
        h[1] = 0x81; // F, SIMPLE, no data
        put32(&mut h, 16, itt);
        put32(&mut h, 24, c.cmd_sn);
        put32(&mut h, 28, c.exp_stat_sn);
        itt += 1;
        c.cmd_sn = c.cmd_sn.wrapping_add(1);
        c.sock.write_all(&h)?;
        let pdu = loop {
            let p = c.next_pdu()?;
            if p.bhs[0] & 0x3f == 0x21 {
                break p;
            }
        };
        c.exp_stat_sn = be32(&pdu.bhs, 24).wrapping_add(1);
        c.max_cmd_sn = be32(&pdu.bhs, 32);
        if pdu.bhs[3] == 0 {
            ready = true;
            break;
        }
    }
    if !ready {
        bail!("TEST UNIT READY did not succeed");
    }
    // Immediate data must fit the target's MaxRecvDataSegmentLength; 4 KiB..256 KiB do with polltgt's defaults.
    std::thread::sleep(Duration::from_secs(args.idle_first));

    let blocks = args.bs / 512;
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    let payload = vec![0x5au8; if write { args.bs as usize } else { 0 }];
    let mut batch = Vec::new();
    let start = Instant::now();
    let mut done: u64 = 0;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        // The CmdSN window bounds a batch.
        let window = c.max_cmd_sn.wrapping_sub(c.cmd_sn).wrapping_add(1);
        let n = args.qd.min(window.max(1));
        batch.clear();
        for _ in 0..n {
            lcg = lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let lba = ((lcg >> 16) % (args.lba_range.saturating_sub(u64::from(blocks)).max(1))) as u32 / blocks * blocks;
            let at = batch.len();
            batch.resize(at + BHS, 0);
            let h = &mut batch[at..at + BHS];
            h[0] = 0x01; // SCSI Command
            h[1] = 0x80 | if write { 0x20 } else { 0x40 } | 0x01; // F, W or R, SIMPLE
            put_dsl(h, payload.len());
            put32(h, 16, itt);
            put32(h, 20, args.bs);
            put32(h, 24, c.cmd_sn);
            put32(h, 28, c.exp_stat_sn);
            h[32] = if write { 0x2a } else { 0x28 };
            h[34..38].copy_from_slice(&lba.to_be_bytes());
            h[39..41].copy_from_slice(&(blocks as u16).to_be_bytes());
            batch.extend_from_slice(&payload);
            itt = itt.wrapping_add(1);
            c.cmd_sn = c.cmd_sn.wrapping_add(1);
        }
        c.sock.write_all(&batch)?;
        let mut statuses = 0;
        while statuses < n {
            let pdu = c.next_pdu()?;
            let opcode = pdu.bhs[0] & 0x3f;
            let status = match opcode {
                0x25 if pdu.bhs[1] & 0x01 != 0 => Some(pdu.bhs[3]), // Data-In with S
                0x21 => Some(pdu.bhs[3]),                            // SCSI Response
                0x25 => None,
                0x20 => {
                    // NOP-In: a ping (TTT set) gets its NOP-Out.
                    let ttt = be32(&pdu.bhs, 20);
                    if ttt != RESERVED {
                        let mut out = [0u8; BHS];
                        out[0] = 0x40;
                        out[1] = 0x80;
                        out[8..16].copy_from_slice(&pdu.bhs[8..16]);
                        put32(&mut out, 16, RESERVED);
                        put32(&mut out, 20, ttt);
                        put32(&mut out, 24, c.cmd_sn);
                        put32(&mut out, 28, c.exp_stat_sn);
                        c.sock.write_all(&out)?;
                    }
                    None
                }
                o => bail!("unexpected PDU opcode {o:#x}"),
            };
            if let Some(st) = status {
                if st != 0 {
                    bail!("command failed with SCSI status {st:#x}");
                }
                statuses += 1;
                c.exp_stat_sn = be32(&pdu.bhs, 24).wrapping_add(1);
                c.max_cmd_sn = be32(&pdu.bhs, 32);
            }
        }
        done += u64::from(n);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("commands {done} seconds {secs:.3} iops {:.0}", done as f64 / secs);
    Ok(())
}
