use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polltgt_hugepages::{BufPool, PoolConfig, RegionOptions};

use super::*;
use crate::{Buf, Completion, Io, Op};

const ENGINES: [EngineChoice; 2] = [EngineChoice::IoUring, EngineChoice::Threads];

fn pool() -> BufPool {
    BufPool::new(PoolConfig {
        region: RegionOptions::small_pages(),
        ..PoolConfig::default()
    })
    .expect("pool")
}

/// A temp file of `len` bytes filled with `fill`.
fn backing(len: usize, fill: u8) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    f.write_all(&vec![fill; len]).expect("fill");
    f.flush().expect("flush");
    f
}

fn opts(engine: EngineChoice) -> FileOptions {
    FileOptions {
        engine,
        ..FileOptions::default()
    }
}

/// Polls until `n` completions arrived (10 s deadline).
fn wait(ch: &mut dyn Channel, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done = Vec::new();
    while done.len() < n {
        if ch.poll(&mut done) == 0 {
            assert!(
                Instant::now() < deadline,
                "timed out with {} of {n} completions",
                done.len()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert_eq!(done.len(), n);
    assert_eq!(ch.in_flight(), 0);
    done
}

fn run(ch: &mut dyn Channel, op: Op) -> Completion {
    ch.submit(Io { tag: 42, op });
    let mut c = wait(ch, 1);
    let c = c.pop().expect("one");
    assert_eq!(c.tag, 42);
    c
}

/// `flags:` of /proc/self/fdinfo for the bdev's fd.
fn fd_flags(dev: &FileBdev) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dev.ctx.file.as_raw_fd()))
        .expect("fdinfo");
    let line = info
        .lines()
        .find(|l| l.starts_with("flags:"))
        .expect("flags line");
    i32::from_str_radix(line.trim_start_matches("flags:").trim(), 8).expect("octal")
}

fn round_trip(path: &Path, bs: u32, engine: EngineChoice, o_direct: bool) {
    let dev = FileBdev::open(
        "f0",
        path,
        bs,
        false,
        FileOptions {
            o_direct,
            ..opts(engine)
        },
    )
    .expect("open");
    let expected = if engine == EngineChoice::Threads {
        FileEngine::Threads
    } else {
        FileEngine::IoUring
    };
    assert_eq!(dev.engine(), expected);
    assert_eq!(dev.info().kind, BdevKind::File);
    assert_eq!(dev.info().block_size, bs);
    assert_eq!(fd_flags(&dev) & libc::O_DIRECT != 0, o_direct);
    assert_eq!(fd_flags(&dev) & libc::O_ACCMODE, libc::O_RDWR);
    let p = pool();
    let mut ch = dev.open_channel().expect("channel");
    let len = 3 * bs as usize;
    let mut w = p.alloc(len).expect("buf");
    w.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 241) as u8 ^ bs as u8);
    let c = run(
        ch.as_mut(),
        Op::Write {
            offset: u64::from(bs) * 2,
            buf: w,
            fua: false,
        },
    );
    assert!(c.result.is_ok(), "{:?}", c.result);
    let written = c.buf.expect("buf back");
    let c = run(
        ch.as_mut(),
        Op::Write {
            offset: 0,
            buf: p.alloc(bs as usize).expect("buf"),
            fua: true,
        },
    );
    assert!(c.result.is_ok(), "fua: {:?}", c.result);
    assert!(run(ch.as_mut(), Op::Flush).result.is_ok());
    let c = run(
        ch.as_mut(),
        Op::Read {
            offset: u64::from(bs) * 2,
            buf: p.alloc(len).expect("buf"),
        },
    );
    assert!(c.result.is_ok(), "{:?}", c.result);
    assert_eq!(&c.buf.expect("buf")[..], &written[..]);
    // The data really is in the file.
    let mut raw = vec![0u8; len];
    std::fs::File::open(path)
        .expect("open")
        .read_exact_at(&mut raw, u64::from(bs) * 2)
        .expect("pread");
    assert_eq!(&raw[..], &written[..]);
}

#[test]
fn round_trip_both_engines_block_sizes_and_o_direct() {
    for engine in ENGINES {
        for bs in [512u32, 4096] {
            for o_direct in [false, true] {
                let f = backing(1 << 20, 0);
                round_trip(f.path(), bs, engine, o_direct);
            }
        }
    }
}

#[test]
fn auto_engine_picks_io_uring_when_available() {
    let f = backing(8192, 0);
    let dev = FileBdev::open("auto", f.path(), 512, false, FileOptions::default()).expect("open");
    let uring_ok = crate::sys::uring::probe(8).is_ok();
    assert_eq!(dev.engine() == FileEngine::IoUring, uring_ok);
    let mut ch = dev.open_channel().expect("channel");
    assert!(run(
        ch.as_mut(),
        Op::Read {
            offset: 0,
            buf: Buf::zeroed(8192)
        }
    )
    .result
    .is_ok());
}

#[test]
fn geometry_and_open_errors() {
    let f = backing(10_000, 0); // 19 whole 512-byte blocks, 2 whole 4 KiB blocks
    let dev = FileBdev::open("g", f.path(), 512, false, FileOptions::default()).expect("open");
    assert_eq!(dev.info().num_blocks, 19);
    let dev = FileBdev::open("g", f.path(), 4096, false, FileOptions::default()).expect("open");
    assert_eq!(dev.info().num_blocks, 2);
    let small = backing(100, 0);
    assert!(matches!(
        FileBdev::open("s", small.path(), 512, false, FileOptions::default()),
        Err(BdevError::InvalidConfig(_))
    ));
    assert!(matches!(
        FileBdev::open(
            "m",
            "/nonexistent/polltgt",
            512,
            false,
            FileOptions::default()
        ),
        Err(BdevError::Open { .. })
    ));
    let dir = tempfile::tempdir().expect("dir");
    assert!(FileBdev::open("d", dir.path(), 512, true, FileOptions::default()).is_err());
    assert!(matches!(
        FileBdev::open("b", f.path(), 1000, false, FileOptions::default()),
        Err(BdevError::InvalidConfig(_))
    ));
    assert!(matches!(
        FileBdev::open(
            "q",
            f.path(),
            512,
            false,
            FileOptions {
                queue_depth: 0,
                ..FileOptions::default()
            }
        ),
        Err(BdevError::InvalidConfig(_))
    ));
}

#[test]
fn out_of_range_and_misaligned_both_engines() {
    for engine in ENGINES {
        let f = backing(64 * 1024, 0x77);
        let dev = FileBdev::open("r", f.path(), 4096, false, opts(engine)).expect("open");
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 60 * 1024,
                buf: Buf::from_vec(vec![1; 8192]),
            },
        );
        assert!(matches!(
            c.result,
            Err(BdevError::OutOfRange {
                offset: 61440,
                len: 8192,
                size: 65536
            })
        ));
        assert!(
            c.buf.expect("buf").iter().all(|&b| b == 1),
            "buffer untouched"
        );
        let c = run(
            ch.as_mut(),
            Op::Write {
                offset: 512,
                buf: Buf::zeroed(4096),
                fua: false,
            },
        );
        assert!(matches!(
            c.result,
            Err(BdevError::Misaligned {
                block_size: 4096,
                ..
            })
        ));
        let c = run(
            ch.as_mut(),
            Op::Unmap {
                offset: 0,
                len: 128 * 1024,
            },
        );
        assert!(matches!(c.result, Err(BdevError::OutOfRange { .. })));
        // Nothing was written.
        let mut raw = vec![0u8; 64 * 1024];
        std::fs::File::open(f.path())
            .expect("open")
            .read_exact_at(&mut raw, 0)
            .expect("read");
        assert!(raw.iter().all(|&b| b == 0x77));
    }
}

#[test]
fn o_direct_refuses_unaligned_buffers() {
    let f = backing(64 * 1024, 0);
    let dev = FileBdev::open(
        "od",
        f.path(),
        4096,
        false,
        FileOptions {
            o_direct: true,
            ..opts(EngineChoice::Auto)
        },
    )
    .expect("open");
    let mut ch = dev.open_channel().expect("channel");
    // malloc gives 16-byte alignment, so a heap buffer is (almost surely) not 4 KiB aligned.
    let v = vec![0u8; 4096];
    let addr = v.as_ptr() as usize;
    let c = run(
        ch.as_mut(),
        Op::Write {
            offset: 0,
            buf: Buf::from_vec(v),
            fua: false,
        },
    );
    if addr % 4096 != 0 {
        assert!(matches!(
            c.result,
            Err(BdevError::BufferAlignment { align: 4096, .. })
        ));
    } else {
        assert!(c.result.is_ok());
    }
}

#[test]
fn read_only_opens_rdonly_and_refuses_writes() {
    for engine in ENGINES {
        let f = backing(16 * 1024, 0x33);
        let dev = FileBdev::open("ro", f.path(), 512, true, opts(engine)).expect("open");
        assert!(dev.info().read_only);
        assert_eq!(fd_flags(&dev) & libc::O_ACCMODE, libc::O_RDONLY);
        let mut ch = dev.open_channel().expect("channel");
        for op in [
            Op::Write {
                offset: 0,
                buf: Buf::zeroed(512),
                fua: false,
            },
            Op::Unmap {
                offset: 0,
                len: 512,
            },
            Op::WriteZeroes {
                offset: 0,
                len: 512,
            },
        ] {
            assert!(matches!(
                run(ch.as_mut(), op).result,
                Err(BdevError::ReadOnly)
            ));
        }
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 512,
                buf: Buf::zeroed(1024),
            },
        );
        assert!(c.result.is_ok());
        assert!(c.buf.expect("buf").iter().all(|&b| b == 0x33));
        assert!(run(ch.as_mut(), Op::Flush).result.is_ok());
    }
}

fn check_zeroed(path: &Path, len: usize, zero: std::ops::Range<usize>, fill: u8) {
    let mut raw = vec![0u8; len];
    std::fs::File::open(path)
        .expect("open")
        .read_exact_at(&mut raw, 0)
        .expect("read");
    for (i, &b) in raw.iter().enumerate() {
        let want = if zero.contains(&i) { 0 } else { fill };
        assert_eq!(b, want, "byte {i}");
    }
    assert_eq!(
        std::fs::metadata(path).expect("meta").len(),
        len as u64,
        "size kept"
    );
}

#[test]
fn unmap_and_write_zeroes_with_fallocate_and_fallback() {
    for (engine, fallback, o_direct) in ENGINES
        .into_iter()
        .flat_map(|e| [(e, false, false), (e, true, false), (e, true, true)])
    {
        let len = 4 << 20;
        let f = backing(len, 0xA5);
        let o = FileOptions {
            o_direct,
            ..opts(engine)
        };
        let dev = FileBdev::open("z", f.path(), 512, false, o).expect("open");
        if fallback {
            // What a filesystem without fallocate support leads to: zeros written from the shared zero region,
            // in 1 MiB steps (the 3 MiB WriteZeroes below takes several).
            dev.ctx.punch_ok.store(false, Ordering::Relaxed);
            dev.ctx.zero_range_ok.store(false, Ordering::Relaxed);
        }
        let mut ch = dev.open_channel().expect("channel");
        assert!(run(
            ch.as_mut(),
            Op::Unmap {
                offset: 512,
                len: 8192
            }
        )
        .result
        .is_ok());
        check_zeroed(f.path(), len, 512..8704, 0xA5);
        let c = run(
            ch.as_mut(),
            Op::WriteZeroes {
                offset: 1 << 20,
                len: 3 << 20,
            },
        );
        assert!(
            c.result.is_ok(),
            "{engine:?} fallback={fallback}: {:?}",
            c.result
        );
        let mut raw = vec![0u8; len];
        std::fs::File::open(f.path())
            .expect("open")
            .read_exact_at(&mut raw, 0)
            .expect("read");
        assert!(raw[8704..1 << 20].iter().all(|&b| b == 0xA5));
        assert!(raw[1 << 20..].iter().all(|&b| b == 0));
        assert!(run(ch.as_mut(), Op::Unmap { offset: 0, len: 0 })
            .result
            .is_ok());
    }
}

#[test]
fn thousand_in_flight_ios_both_engines() {
    for engine in ENGINES {
        let f = backing(4 << 20, 0);
        // A small ring so most requests wait in the backlog.
        let o = FileOptions {
            queue_depth: 16,
            ..opts(engine)
        };
        let dev = FileBdev::open("q", f.path(), 4096, false, o).expect("open");
        let p = pool();
        let mut ch = dev.open_channel().expect("channel");
        for i in 0..1000u64 {
            let mut b = p.alloc(4096).expect("buf");
            b.fill((i % 251) as u8);
            ch.submit(Io {
                tag: i,
                op: Op::Write {
                    offset: i * 4096,
                    buf: b,
                    fua: false,
                },
            });
        }
        assert_eq!(ch.in_flight(), 1000);
        let done = wait(ch.as_mut(), 1000);
        let mut tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..1000).collect::<Vec<_>>());
        assert!(done.iter().all(|c| c.result.is_ok()));
        drop(done);
        assert_eq!(p.stats().bytes_in_use, 0, "all buffers came back");
        for i in 0..1000u64 {
            ch.submit(Io {
                tag: i,
                op: Op::Read {
                    offset: i * 4096,
                    buf: p.alloc(4096).expect("buf"),
                },
            });
        }
        for c in wait(ch.as_mut(), 1000) {
            assert!(c.result.is_ok());
            assert!(
                c.buf
                    .expect("buf")
                    .iter()
                    .all(|&b| b == (c.tag % 251) as u8),
                "tag {}",
                c.tag
            );
        }
    }
}

#[test]
fn dropping_a_channel_with_io_in_flight_is_safe() {
    for engine in ENGINES {
        let f = backing(1 << 20, 0);
        let dev = FileBdev::open("drop", f.path(), 4096, false, opts(engine)).expect("open");
        let p = pool();
        let mut ch = dev.open_channel().expect("channel");
        for i in 0..64u64 {
            ch.submit(Io {
                tag: i,
                op: Op::Write {
                    offset: i * 4096,
                    buf: p.alloc(4096).expect("buf"),
                    fua: false,
                },
            });
        }
        let mut done = Vec::new();
        ch.poll(&mut done); // some are in the kernel now
        drop(ch);
        drop(done);
        // Every buffer comes back to the pool (the threads engine returns them as the workers finish).
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.stats().bytes_in_use != 0 {
            assert!(Instant::now() < deadline, "buffers leaked");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn concurrent_channels_on_one_file() {
    for engine in ENGINES {
        let f = backing(4 << 20, 0);
        let dev = Arc::new(FileBdev::open("cc", f.path(), 512, false, opts(engine)).expect("open"));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    let mut ch = dev.open_channel().expect("channel");
                    for round in 0..10u64 {
                        let fill = (t * 16 + round) as u8;
                        for k in 0..16u64 {
                            let off = (t << 20) + k * 65536;
                            ch.submit(Io {
                                tag: k,
                                op: Op::Write {
                                    offset: off,
                                    buf: Buf::from_vec(vec![fill; 65536]),
                                    fua: false,
                                },
                            });
                        }
                        assert!(wait(ch.as_mut(), 16).iter().all(|c| c.result.is_ok()));
                        let c = run(
                            ch.as_mut(),
                            Op::Read {
                                offset: t << 20,
                                buf: Buf::zeroed(1 << 20),
                            },
                        );
                        assert!(
                            c.buf.expect("buf").iter().all(|&b| b == fill),
                            "thread {t} round {round}"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }
}

/// Attaches a loop device for the test and detaches it on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let dev = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!dev.is_empty()).then(|| Loop(PathBuf::from(dev)))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn block_device_size_from_ioctl_via_loop_device() {
    let f = backing(3 << 20, 0x5C);
    let Some(lo) = Loop::attach(f.path()) else {
        eprintln!("SKIPPED block_device_size_from_ioctl_via_loop_device: no loop device (needs root and losetup)");
        return;
    };
    for engine in ENGINES {
        let dev = FileBdev::open(
            "blk",
            &lo.0,
            4096,
            false,
            FileOptions {
                o_direct: true,
                ..opts(engine)
            },
        )
        .expect("open loop device");
        let info = dev.info();
        assert_eq!(info.kind, BdevKind::BlockDevice);
        assert_eq!(info.num_blocks, (3 << 20) / 4096, "size from BLKGETSIZE64");
        let p = pool();
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 4096,
                buf: p.alloc(4096).expect("buf"),
            },
        );
        assert!(c.result.is_ok(), "{:?}", c.result);
        assert!(c.buf.expect("buf").iter().all(|&b| b == 0x5C));
        let mut w = p.alloc(4096).expect("buf");
        w.fill(0x11);
        assert!(run(
            ch.as_mut(),
            Op::Write {
                offset: 0,
                buf: w,
                fua: true
            }
        )
        .result
        .is_ok());
        let c = run(
            ch.as_mut(),
            Op::WriteZeroes {
                offset: 8192,
                len: 8192,
            },
        );
        assert!(c.result.is_ok(), "{:?}", c.result);
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 0,
                buf: p.alloc(16384).expect("buf"),
            },
        );
        let data = c.buf.expect("buf");
        assert!(data[..4096].iter().all(|&b| b == 0x11));
        assert!(data[4096..8192].iter().all(|&b| b == 0x5C));
        assert!(data[8192..].iter().all(|&b| b == 0));
        assert!(run(ch.as_mut(), Op::Flush).result.is_ok());
    }
    let size =
        crate::sys::block_device_size(&std::fs::File::open(&lo.0).expect("open")).expect("ioctl");
    assert_eq!(size, 3 << 20);
}

#[test]
fn short_transfers_are_continued_and_eof_reported() {
    for engine in ENGINES {
        let f = backing(64 * 1024, 0x42);
        let dev = FileBdev::open("eof", f.path(), 512, false, opts(engine)).expect("open");
        // Shrink the file under the bdev: a read across the new end gets a short transfer, is continued at the
        // new end, finds end-of-file and fails instead of returning stale or zero data as success.
        f.as_file().set_len(32 * 1024 + 2048).expect("truncate");
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 24 * 1024,
                buf: Buf::zeroed(16 * 1024),
            },
        );
        match &c.result {
            Err(BdevError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{engine:?}")
            }
            other => panic!("{engine:?}: expected EOF error, got {other:?}"),
        }
        let buf = c.buf.expect("buf back");
        assert!(
            buf[..10 * 1024].iter().all(|&b| b == 0x42),
            "the part before EOF was read"
        );
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 0,
                buf: Buf::zeroed(32 * 1024),
            },
        );
        assert!(c.result.is_ok());
    }
}

#[test]
fn io_uring_setup_failure_falls_back_to_threads() {
    // More SQ entries than the kernel allows (IORING_MAX_ENTRIES = 32768): io_uring_setup fails with EINVAL.
    let f = backing(64 * 1024, 0x19);
    let o = FileOptions {
        queue_depth: 1 << 20,
        ..FileOptions::default()
    };
    let dev = FileBdev::open("fb", f.path(), 512, false, o.clone()).expect("open");
    assert_eq!(dev.engine(), FileEngine::Threads);
    let mut ch = dev.open_channel().expect("channel");
    let c = run(
        ch.as_mut(),
        Op::Read {
            offset: 0,
            buf: Buf::zeroed(4096),
        },
    );
    assert!(c.result.is_ok());
    assert!(c.buf.expect("buf").iter().all(|&b| b == 0x19));
    // Forcing io_uring turns the same failure into an error.
    let forced = FileOptions {
        engine: EngineChoice::IoUring,
        ..o
    };
    assert!(matches!(
        FileBdev::open("fb", f.path(), 512, false, forced),
        Err(BdevError::Io(_))
    ));
}

fn allocation(ch: &mut dyn Channel, offset: u64, len: u64, records: usize) -> Vec<crate::Extent> {
    let c = run(
        ch,
        Op::Allocation {
            offset,
            len,
            buf: Buf::zeroed(records * crate::Extent::RECORD_LEN),
        },
    );
    assert!(c.result.is_ok(), "{:?}", c.result);
    crate::Extent::decode_all(&c.buf.expect("buffer back"))
}

#[test]
fn allocation_follows_holes_both_engines() {
    use crate::Extent;
    for engine in ENGINES {
        // 1 MiB written, then 64 KiB punched out at 256 KiB.
        let f = backing(1 << 20, 0x5A);
        let dev = FileBdev::open("a", f.path(), 4096, false, opts(engine)).expect("open");
        let mut ch = dev.open_channel().expect("channel");
        let all = allocation(ch.as_mut(), 0, 1 << 20, 8);
        assert_eq!(all, [Extent { offset: 0, len: 1 << 20, allocated: true }], "{engine:?}");
        let c = run(ch.as_mut(), Op::Unmap { offset: 256 << 10, len: 64 << 10 });
        assert!(c.result.is_ok());
        let ext = allocation(ch.as_mut(), 0, 1 << 20, 8);
        if ext.len() == 1 {
            // A file system without holes (tmpfs on old kernels, overlay): zeros were written; nothing to report.
            assert!(ext[0].allocated);
            continue;
        }
        assert_eq!(
            ext,
            [
                Extent { offset: 0, len: 256 << 10, allocated: true },
                Extent { offset: 256 << 10, len: 64 << 10, allocated: false },
                Extent { offset: 320 << 10, len: 704 << 10, allocated: true },
            ],
            "{engine:?}"
        );
        // From inside the hole, at most two runs, and only `len` bytes.
        let ext = allocation(ch.as_mut(), 260 << 10, 100 << 10, 1);
        assert_eq!(ext, [Extent { offset: 260 << 10, len: 60 << 10, allocated: false }]);
        let ext = allocation(ch.as_mut(), 260 << 10, 100 << 10, 4);
        assert_eq!(ext[1], Extent { offset: 320 << 10, len: 40 << 10, allocated: true });
        // Out of range is refused like any I/O.
        let c = run(
            ch.as_mut(),
            Op::Allocation { offset: 1 << 20, len: 4096, buf: Buf::zeroed(16) },
        );
        assert!(matches!(c.result, Err(BdevError::OutOfRange { .. })));
    }
}

#[test]
fn resize_rereads_the_file_size() {
    let f = backing(1 << 20, 0);
    let dev = FileBdev::open("r", f.path(), 4096, false, opts(EngineChoice::Threads)).expect("open");
    assert_eq!(dev.info().num_blocks, 256);
    let mut ch = dev.open_channel().expect("channel");
    let c = run(ch.as_mut(), Op::Read { offset: 1 << 20, buf: Buf::zeroed(4096) });
    assert!(matches!(c.result, Err(BdevError::OutOfRange { .. })));
    f.as_file().set_len(2 << 20).expect("grow");
    assert_eq!(dev.resize(None).expect("resize"), 512);
    assert_eq!(dev.info().num_blocks, 512);
    assert!(run(ch.as_mut(), Op::Read { offset: 1 << 20, buf: Buf::zeroed(4096) }).result.is_ok());
    f.as_file().set_len((1 << 20) + 100).expect("shrink");
    assert_eq!(dev.resize(None).expect("resize"), 256, "a partial tail block is not exposed");
    f.as_file().set_len(100).expect("shrink below one block");
    assert!(matches!(dev.resize(None), Err(BdevError::InvalidConfig(_))));
    assert_eq!(dev.info().num_blocks, 256, "a refused resize changes nothing");
    assert!(matches!(dev.resize(Some(7)), Err(BdevError::InvalidConfig(_))));
}

#[test]
fn iopoll_needs_o_direct_and_io_uring() {
    let f = backing(65536, 0);
    let bad = |o: FileOptions| matches!(FileBdev::open("p", f.path(), 512, false, o), Err(BdevError::InvalidConfig(_)));
    assert!(bad(FileOptions { iopoll: true, ..FileOptions::default() }), "iopoll without o_direct");
    assert!(bad(FileOptions { iopoll: true, o_direct: true, engine: EngineChoice::Threads, ..FileOptions::default() }));
}

/// IOPOLL on whatever the temp directory is: where the device polls, data round-trips and flush goes through the
/// auxiliary ring; where it cannot (no O_DIRECT, no poll support: EOPNOTSUPP/EINVAL), the failure comes back as a
/// completion error (the reactor is never left waiting) and the test says so.
#[test]
fn iopoll_channel_round_trip_or_clean_refusal() {
    if crate::sys::uring::probe(8).is_err() {
        eprintln!("io_uring unavailable: nothing to test");
        return;
    }
    let f = backing(1 << 20, 0);
    let o = FileOptions { iopoll: true, o_direct: true, ..FileOptions::default() };
    let dev = match FileBdev::open("p", f.path(), 4096, false, o) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot open with O_DIRECT here ({e}): nothing to test");
            return;
        }
    };
    let mut ch = match dev.open_channel() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("IOPOLL ring refused here ({e})");
            return;
        }
    };
    let p = pool();
    // Ok(true): done; Ok(false): the device refused polled I/O, cleanly.
    let outcome = |c: &Completion| -> bool {
        match &c.result {
            Ok(()) => true,
            Err(BdevError::Io(e)) => {
                assert!(matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)), "unexpected error {e}");
                assert!(c.buf.is_some(), "the buffer comes back with the error");
                eprintln!("this device does not support polled I/O ({e}); the error came back as a completion");
                false
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    let mut buf = p.alloc(8192).expect("buf");
    buf.fill(0x3c);
    let c = run(ch.as_mut(), Op::Write { offset: 4096, buf, fua: false });
    if !outcome(&c) {
        return;
    }
    let c = run(ch.as_mut(), Op::Read { offset: 4096, buf: p.alloc(8192).expect("buf") });
    if !outcome(&c) {
        return;
    }
    assert!(c.buf.expect("buf back").iter().all(|&b| b == 0x3c));
    assert!(run(ch.as_mut(), Op::Flush).result.is_ok(), "flush through the auxiliary ring");
}

/// Threads of this process whose name starts with `prefix` (/proc/self/task/*/comm).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("task dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// Waits (10 s at most) until `n` threads named `prefix` run.
fn wait_threads(prefix: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named(prefix) != n {
        assert!(Instant::now() < deadline, "{} threads {prefix}*, expected {n}", threads_named(prefix));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_thread_pool_grows_and_shrinks_while_in_use() {
    let f = backing(1 << 20, 7);
    let dev = FileBdev::open("tpool", f.path(), 4096, false, FileOptions { threads: 2, ..opts(EngineChoice::Threads) })
        .expect("open");
    assert_eq!(dev.threads(), 2);
    // Before the pool runs, the size is remembered for its start.
    assert_eq!(dev.set_threads(3).expect("set"), 3);
    let mut ch = dev.open_channel().expect("channel");
    wait_threads("bdev-tpool-io", 3);
    assert!(run(ch.as_mut(), Op::Read { offset: 0, buf: Buf::zeroed(4096) }).result.is_ok());
    dev.set_threads(6).expect("grow");
    wait_threads("bdev-tpool-io", 6);
    // I/O queued while the pool shrinks completes: surplus workers exit after the jobs queued before.
    let buf = |_| Buf::zeroed(4096);
    for (i, b) in (0..64).map(buf).enumerate() {
        ch.submit(Io { tag: i as u64, op: Op::Read { offset: (i as u64 % 256) * 4096, buf: b } });
    }
    dev.set_threads(1).expect("shrink");
    let done = wait(ch.as_mut(), 64);
    assert!(done.iter().all(|c| c.result.is_ok()));
    wait_threads("bdev-tpool-io", 1);
    assert_eq!(dev.threads(), 1);
    assert_eq!(dev.workers.lock().unwrap().as_ref().map(|w| w.count()), Some(1));
    assert!(run(ch.as_mut(), Op::Read { offset: 4096, buf: Buf::zeroed(4096) }).result.is_ok());
    assert!(matches!(dev.set_threads(0), Err(BdevError::InvalidConfig(_))));
    assert!(matches!(dev.set_threads(MAX_THREADS + 1), Err(BdevError::InvalidConfig(_))));
    assert_eq!(dev.threads(), 1, "a refused change changes nothing");
}
