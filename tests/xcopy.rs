//! EXTENDED COPY between LUNs of one target (SPC-4 §6.4) on the real binary, driven by libiscsi
//! (tests/tools/iscsi-xcopy.c): data copied in several segments and chunks, between file and RAM LUNs and across
//! block sizes, read back with tests/tools/iscsi-rw.c; COPY ABORTED for a range beyond the end, a LUN of another
//! target and a read-only LUN, with RECEIVE COPY RESULTS reporting the status and the failed segment details.

mod common;

use common::{c_tool, iscsi_rw, run, run_ok, Target, IQN};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn target() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f1.img");
    std::fs::File::create(&file).and_then(|f| f.set_len(64 << 20)).expect("backing file");
    let yaml = format!(
        "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n\
         \x20 - {{ name: r0, handler: ram, size: 64M }}\n\
         \x20 - {{ name: f1, handler: vdisk_fileio, filename: {} }}\n\
         \x20 - {{ name: r4k, handler: ram, size: 64M, blocksize: 4096 }}\n\
         \x20 - {{ name: ro, handler: ram, size: 16M }}\n\
         \x20 - {{ name: elsewhere, handler: ram, size: 16M }}\n\
         targets:\n  - name: {IQN}\n    luns:\n\
         \x20     - {{ lun: 0, device: r0 }}\n\
         \x20     - {{ lun: 1, device: f1 }}\n\
         \x20     - {{ lun: 2, device: r4k }}\n\
         \x20     - {{ lun: 3, device: ro, read_only: true }}\n\
         \x20 - name: iqn.2026-11.io.polltgt:other\n    luns:\n\
         \x20     - {{ lun: 0, device: elsewhere }}\n",
        file.display()
    );
    Target::start_with_yaml(dir, &yaml)
}

#[test]
fn copies_between_luns_in_segments_and_chunks() {
    let t = target();
    let (rw, xcopy) = (iscsi_rw(), c_tool("iscsi-xcopy"));
    run_ok(&rw, &["-s", "7", &t.url(0), "write", "0", "8192"], LIMIT);
    // RAM LUN 0 -> file LUN 1 at another LBA, through LUN 0's copy manager: three segments of 3000 blocks at most,
    // each copied in 1 MiB chunks.
    let out = run_ok(&xcopy, &["-s", "3000", &t.url(0), "0", "1", "0", "100000", "8192"], LIMIT);
    assert_eq!(out, "xcopy GOOD\nstatus 1 segments 3 bytes 4194304\n");
    // File LUN 1 -> the 4096-byte-block LUN 2 at LBA 0, through LUN 2's copy manager; the pattern of iscsi-rw
    // depends on the byte offset, so reading LUN 2 back checks both copies.
    let out = run_ok(&xcopy, &[&t.url(2), "1", "2", "100000", "0", "8192"], LIMIT);
    assert_eq!(out, "xcopy GOOD\nstatus 1 segments 1 bytes 4194304\n");
    run_ok(&rw, &["-s", "7", &t.url(2), "verify", "0", "1024"], LIMIT);
    // Nothing beyond the copied range was written.
    let out = run(&rw, &["-s", "7", &t.url(2), "verify", "1024", "1"], LIMIT);
    assert!(!out.status.success(), "LUN 2 past the copy holds the pattern");
}

#[test]
fn failures_are_copy_aborted_with_failed_segment_details() {
    let t = target();
    let xcopy = c_tool("iscsi-xcopy");
    let failed = |args: &[&str]| {
        let out = run(&xcopy, args, LIMIT);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The destination range ends past the end of LUN 1 (131072 blocks): the second segment is aborted, after the
    // first was copied.
    let out = failed(&["-s", "100", &t.url(0), "0", "1", "0", "130972", "200"]);
    assert_eq!(out, "xcopy CHECK_CONDITION 0A/00/00 segment 1\nstatus 2 segments 1 bytes 51200\nfailed 2 18\n");
    // A LUN of another target is not a copy target of this I_T nexus.
    let other = format!("iscsi://{}/iqn.2026-11.io.polltgt:other/0", t.addr);
    let out = failed(&[&t.url(0), "0", &other, "0", "0", "8"]);
    assert_eq!(out, "xcopy CHECK_CONDITION 0A/0D/02 segment 0\nstatus 2 segments 0 bytes 0\nfailed 2 18\n");
    // LUN 3 is mapped read-only: WRITE PROTECTED, reading from it is fine.
    let out = failed(&[&t.url(0), "0", "3", "0", "0", "8"]);
    assert_eq!(out, "xcopy CHECK_CONDITION 0A/27/00 segment 0\nstatus 2 segments 0 bytes 0\nfailed 2 18\n");
    let out = run_ok(&xcopy, &[&t.url(0), "3", "0", "0", "0", "8"], LIMIT);
    assert_eq!(out, "xcopy GOOD\nstatus 1 segments 1 bytes 4096\n");
}

/// ABORT TASK stops a running copy after the I/O in flight: the TMF is answered while the copy is far from its end
/// (16 GiB between two null devices), and COPY STATUS then reports it ended with an error, having written less.
#[test]
fn abort_task_stops_a_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n\
         \x20 - {{ name: n0, handler: vdisk_nullio, size: 16G, blocksize: 4096 }}\n\
         \x20 - {{ name: n1, handler: vdisk_nullio, size: 16G, blocksize: 4096 }}\n\
         targets:\n  - name: {IQN}\n    luns:\n\
         \x20     - {{ lun: 0, device: n0 }}\n\
         \x20     - {{ lun: 1, device: n1 }}\n"
    );
    let mut t = Target::start_with_yaml(dir, &yaml);
    let blocks = 64 * 65535u64;
    let out = run_ok(c_tool("iscsi-xcopy"), &["-a", &t.url(0), "0", "1", "0", "0", &blocks.to_string()], LIMIT);
    let status = out.strip_prefix("abort OK\nstatus 2 segments ").unwrap_or_else(|| panic!("{out:?}"));
    let bytes: u64 = status.trim().rsplit(' ').next().and_then(|b| b.parse().ok()).expect("bytes");
    assert!(bytes < blocks * 4096, "{out:?}");
    assert!(t.alive());
}
