//! `RamBdev`: a RAM disk in a [`SharedRegion`] (hugepages when available, lazily committed).
//!
//! Every channel executes its I/Os synchronously with a memory copy at submission and queues the completion for
//! `poll`. Channels of several reactors may run at once: the `SharedRegion` serializes accesses per stripe
//! (64 KiB or one hugepage) with reader/writer locks, so there is no data race; overlapping concurrent writes leave
//! block contents that are a mix of the writers' data, as on a real disk (SBC-3 does not order concurrent
//! commands). Unmap and WriteZeroes give whole pages back to the kernel (`madvise(MADV_DONTNEED)`) and zero the
//! partial ones.
//!
//! A bitmap with one bit per page of the region records which pages hold data ([`Op::Allocation`]): a write sets
//! the bits of its pages after copying (one atomic load per page when the bit is already set), a release clears
//! them before giving the pages back, both under the stripe's exclusive lock. With that order a page never reads as
//! deallocated while it holds non-zero data, whatever races with it. Reads copy only the pages whose bit is set and
//! zero-fill the others without touching their memory (as a sparse file's holes read): a page never written costs
//! no TLB or cache miss, and the bit is read under the stripe's shared lock, so a read still sees each stripe whole.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use polltgt_hugepages::{RegionOptions, SharedRegion};

use crate::{
    align_extents, check_geometry, Bdev, BdevError, BdevInfo, BdevKind, Channel, Completion, Extent,
    Geometry, Io, Op,
};

/// One bit per page of the region: set = the page may hold data.
#[derive(Debug)]
struct PageMap {
    page: usize,
    bits: Box<[AtomicU64]>,
}

impl PageMap {
    fn new(len: usize, page: usize) -> PageMap {
        let page = page.max(1);
        let pages = len.div_ceil(page);
        PageMap {
            page,
            bits: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn word_bit(&self, page: usize) -> Option<(&AtomicU64, u64)> {
        self.bits.get(page / 64).map(|w| (w, 1u64 << (page % 64)))
    }

    fn is_set(&self, page: usize) -> bool {
        self.word_bit(page)
            .is_some_and(|(w, b)| w.load(Ordering::Acquire) & b != 0)
    }

    /// Marks the pages `offset..offset+len` touches as holding data.
    fn set_range(&self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        for p in offset / self.page..=(offset + len - 1) / self.page {
            if let Some((w, b)) = self.word_bit(p) {
                if w.load(Ordering::Acquire) & b == 0 {
                    w.fetch_or(b, Ordering::AcqRel);
                }
            }
        }
    }

    /// Marks the pages lying wholly inside `offset..offset+len` as released.
    fn clear_whole(&self, offset: usize, len: usize) {
        let first = offset.div_ceil(self.page);
        let end = (offset + len) / self.page;
        for p in first..end {
            if let Some((w, b)) = self.word_bit(p) {
                w.fetch_and(!b, Ordering::AcqRel);
            }
        }
    }

    /// Runs of pages from `offset` for at most `len` bytes, as raw (page-granular, clipped) extents.
    fn runs(&self, offset: usize, len: usize, max: usize) -> Vec<Extent> {
        let end = offset + len;
        let mut out: Vec<Extent> = Vec::new();
        let mut pos = offset;
        while pos < end && out.len() <= max {
            let page = pos / self.page;
            let allocated = self.is_set(page);
            let next = ((page + 1) * self.page).min(end);
            match out.last_mut() {
                Some(last) if last.allocated == allocated => last.len += (next - pos) as u64,
                _ => out.push(Extent {
                    offset: pos as u64,
                    len: (next - pos) as u64,
                    allocated,
                }),
            }
            pos = next;
        }
        out
    }
}

/// A RAM disk.
#[derive(Debug)]
pub struct RamBdev {
    info: BdevInfo,
    mem: Arc<SharedRegion>,
    map: Arc<PageMap>,
}

impl RamBdev {
    /// Creates a RAM disk of `num_blocks` blocks of `block_size` bytes. The memory is mapped now but committed
    /// page by page as it is written (4 KiB pages use `MAP_NORESERVE`; hugepages are reserved from the hugetlb
    /// pool, see `polltgt_hugepages::Region`). Use `RegionOptions::small_pages()` to keep hugepages for buffers.
    pub fn new(
        name: impl Into<String>,
        block_size: u32,
        num_blocks: u64,
        region: &RegionOptions,
    ) -> Result<RamBdev, BdevError> {
        let size = check_geometry(block_size, num_blocks)?;
        let len = usize::try_from(size)
            .map_err(|_| BdevError::InvalidConfig(format!("{size} bytes do not fit in memory")))?;
        let mem = Arc::new(SharedRegion::with_options(len, region)?);
        let map = Arc::new(PageMap::new(len, mem.page_size()));
        let info = BdevInfo {
            name: name.into(),
            block_size,
            num_blocks,
            read_only: false,
            kind: BdevKind::Ram,
            rotational: false,
        };
        Ok(RamBdev { info, mem, map })
    }

    /// Whether the disk lives in hugepages.
    pub fn is_huge(&self) -> bool {
        self.mem.is_huge()
    }
}

impl Bdev for RamBdev {
    fn info(&self) -> BdevInfo {
        self.info.clone()
    }

    fn block_size(&self) -> u32 {
        self.info.block_size
    }

    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        Ok(Box::new(RamChannel {
            mem: Arc::clone(&self.mem),
            map: Arc::clone(&self.map),
            geom: Geometry {
                block_size: self.info.block_size,
                size: self.info.size_bytes(),
                read_only: false,
                buf_align: 1,
            },
            done: VecDeque::new(),
        }))
    }
}

struct RamChannel {
    mem: Arc<SharedRegion>,
    map: Arc<PageMap>,
    geom: Geometry,
    done: VecDeque<Completion>,
}

impl RamChannel {
    fn execute(&self, op: &mut Op) -> Result<(), BdevError> {
        self.geom.check(op)?;
        // After the check every range lies inside the region, whose length fits in usize.
        let at = |offset: u64| {
            usize::try_from(offset).map_err(|_| BdevError::InvalidConfig("offset".into()))
        };
        match op {
            // Pages never written (or released since) read as zeros without touching their memory, like the holes
            // of a sparse file.
            Op::Read { offset, buf } => self.mem.read_sparse(at(*offset)?, buf, |page| self.map.is_set(page))?,
            Op::Write { offset, buf, .. } => {
                self.mem.write_at_marked(at(*offset)?, buf, |at, n| self.map.set_range(at, n))?;
            }
            Op::Flush => {}
            Op::WriteZeroes { offset, len } | Op::Unmap { offset, len } => {
                let (offset, len) = (at(*offset)?, at(*len)?);
                self.mem.zero_range_marked(offset, len, |at, n| self.map.clear_whole(at, n))?;
            }
            Op::Allocation { offset, len, buf } => {
                let max = buf.len() / Extent::RECORD_LEN;
                let raw = self.map.runs(at(*offset)?, at(*len)?, max);
                let aligned = align_extents(&raw, u64::from(self.geom.block_size), max);
                Extent::encode_all(&aligned, buf);
            }
        }
        Ok(())
    }
}

impl Channel for RamChannel {
    fn submit(&mut self, io: Io) {
        let Io { tag, mut op } = io;
        let result = self.execute(&mut op);
        self.done.push_back(Completion::of(tag, op, result));
    }

    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        let n = self.done.len();
        done.extend(self.done.drain(..));
        n
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buf;
    use polltgt_hugepages::BufPool;

    fn ram(bs: u32, blocks: u64) -> RamBdev {
        RamBdev::new("ram0", bs, blocks, &RegionOptions::small_pages()).expect("ram")
    }

    fn run(ch: &mut dyn Channel, op: Op) -> Completion {
        ch.submit(Io { tag: 7, op });
        let mut done = Vec::new();
        assert_eq!(ch.poll(&mut done), 1);
        assert_eq!(ch.in_flight(), 0);
        done.pop().expect("completion")
    }

    #[test]
    fn write_read_round_trip_512_and_4096() {
        let pool = BufPool::with_defaults();
        for bs in [512u32, 4096] {
            let dev = ram(bs, 256);
            assert_eq!(dev.info().size_bytes(), u64::from(bs) * 256);
            assert_eq!(dev.info().kind, BdevKind::Ram);
            let mut ch = dev.open_channel().expect("channel");
            let mut w = pool.alloc(3 * bs as usize).expect("buf");
            w.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i % 253) as u8);
            let c = run(
                ch.as_mut(),
                Op::Write {
                    offset: u64::from(bs) * 5,
                    buf: w,
                    fua: true,
                },
            );
            assert_eq!(c.tag, 7);
            assert!(c.result.is_ok());
            let written = c.buf.expect("buf back");
            let c = run(
                ch.as_mut(),
                Op::Read {
                    offset: u64::from(bs) * 5,
                    buf: pool.alloc(3 * bs as usize).expect("buf"),
                },
            );
            assert!(c.result.is_ok());
            assert_eq!(&c.buf.expect("buf")[..], &written[..]);
            // Untouched blocks read as zeros.
            let c = run(
                ch.as_mut(),
                Op::Read {
                    offset: 0,
                    buf: Buf::from_vec(vec![9; bs as usize]),
                },
            );
            assert!(c.buf.expect("buf").iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn out_of_range_and_misaligned_leave_buffers_alone() {
        let dev = ram(512, 16);
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 15 * 512,
                buf: Buf::from_vec(vec![5; 1024]),
            },
        );
        assert!(matches!(
            c.result,
            Err(BdevError::OutOfRange {
                offset: 7680,
                len: 1024,
                size: 8192
            })
        ));
        assert!(
            c.buf.expect("buf back").iter().all(|&b| b == 5),
            "not touched"
        );
        let c = run(
            ch.as_mut(),
            Op::Write {
                offset: 8192,
                buf: Buf::zeroed(512),
                fua: false,
            },
        );
        assert!(matches!(c.result, Err(BdevError::OutOfRange { .. })));
        let c = run(
            ch.as_mut(),
            Op::Write {
                offset: 256,
                buf: Buf::zeroed(512),
                fua: false,
            },
        );
        assert!(matches!(c.result, Err(BdevError::Misaligned { .. })));
        let c = run(
            ch.as_mut(),
            Op::Unmap {
                offset: 0,
                len: 8193,
            },
        );
        assert!(matches!(c.result, Err(BdevError::Misaligned { .. })));
        assert!(c.buf.is_none());
        assert!(run(ch.as_mut(), Op::Flush).result.is_ok());
    }

    #[test]
    fn unmap_and_write_zeroes_zero_the_range() {
        let dev = ram(512, 1024); // 512 KiB
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Write {
                offset: 0,
                buf: Buf::from_vec(vec![0xCD; 512 * 1024]),
                fua: false,
            },
        );
        assert!(c.result.is_ok());
        // Unaligned to pages on both ends: partial pages memset, whole pages released.
        assert!(run(
            ch.as_mut(),
            Op::Unmap {
                offset: 512,
                len: 200 * 512
            }
        )
        .result
        .is_ok());
        assert!(run(
            ch.as_mut(),
            Op::WriteZeroes {
                offset: 600 * 512,
                len: 3 * 512
            }
        )
        .result
        .is_ok());
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 0,
                buf: Buf::zeroed(512 * 1024),
            },
        );
        let data = c.buf.expect("buf");
        for (blk, chunk) in data.chunks(512).enumerate() {
            let zero = (1..201).contains(&blk) || (600..603).contains(&blk);
            let want = if zero { 0 } else { 0xCD };
            assert!(chunk.iter().all(|&b| b == want), "block {blk}");
        }
    }

    #[test]
    fn thousand_in_flight_then_polled() {
        let dev = ram(4096, 2048);
        let mut ch = dev.open_channel().expect("channel");
        for i in 0..1000u64 {
            let buf = Buf::from_vec(vec![(i % 251) as u8; 4096]);
            ch.submit(Io {
                tag: i,
                op: Op::Write {
                    offset: i * 4096,
                    buf,
                    fua: false,
                },
            });
        }
        assert_eq!(ch.in_flight(), 1000);
        let mut done = Vec::new();
        assert_eq!(ch.poll(&mut done), 1000);
        let mut tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..1000).collect::<Vec<_>>());
        assert!(done.iter().all(|c| c.result.is_ok()));
        for i in 0..1000u64 {
            ch.submit(Io {
                tag: i,
                op: Op::Read {
                    offset: i * 4096,
                    buf: Buf::zeroed(4096),
                },
            });
        }
        done.clear();
        assert_eq!(ch.poll(&mut done), 1000);
        for c in done {
            assert!(c
                .buf
                .expect("buf")
                .iter()
                .all(|&b| b == (c.tag % 251) as u8));
        }
    }

    #[test]
    fn concurrent_channels_from_several_threads() {
        let dev = Arc::new(ram(512, 8193)); // 4 MiB private areas + one shared block
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    let mut ch = dev.open_channel().expect("channel");
                    let mut done = Vec::new();
                    for round in 0..20u64 {
                        // Private area of the thread: 1 MiB, written in 64 KiB I/Os and read back.
                        for k in 0..16u64 {
                            let fill = (t * 50 + round) as u8;
                            let off = (t << 20) + k * 65536;
                            let buf = Buf::from_vec(vec![fill; 65536]);
                            ch.submit(Io {
                                tag: k,
                                op: Op::Write {
                                    offset: off,
                                    buf,
                                    fua: false,
                                },
                            });
                        }
                        done.clear();
                        ch.poll(&mut done);
                        assert!(done.iter().all(|c| c.result.is_ok()));
                        ch.submit(Io {
                            tag: 99,
                            op: Op::Read {
                                offset: t << 20,
                                buf: Buf::zeroed(1 << 20),
                            },
                        });
                        done.clear();
                        ch.poll(&mut done);
                        let want = (t * 50 + round) as u8;
                        let buf = done.pop().and_then(|c| c.buf).expect("read");
                        assert!(buf.iter().all(|&b| b == want), "thread {t} round {round}");
                        // A shared block everybody overwrites: any one writer's pattern, never a torn block.
                        let buf = Buf::from_vec(vec![t as u8 + 1; 512]);
                        ch.submit(Io {
                            tag: 1,
                            op: Op::Write {
                                offset: 4 << 20,
                                buf,
                                fua: false,
                            },
                        });
                        ch.submit(Io {
                            tag: 2,
                            op: Op::Read {
                                offset: 4 << 20,
                                buf: Buf::zeroed(512),
                            },
                        });
                        done.clear();
                        ch.poll(&mut done);
                        let shared = done.pop().and_then(|c| c.buf).expect("read");
                        assert!(
                            (1..=4).contains(&shared[0]) && shared.iter().all(|&b| b == shared[0])
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn default_options_use_hugepages_when_available() {
        let dev = RamBdev::new("huge", 4096, 2048, &RegionOptions::default()).expect("8 MiB");
        let nr = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
        if nr.trim() == "0" {
            assert!(!dev.is_huge());
        }
        let mut ch = dev.open_channel().expect("channel");
        let buf = Buf::from_vec(vec![0x3C; 8 << 20]);
        assert!(run(
            ch.as_mut(),
            Op::Write {
                offset: 0,
                buf,
                fua: false
            }
        )
        .result
        .is_ok());
        // 1 MiB .. 7 MiB: with hugepages, the 2 MiB pages inside are released and the edges memset.
        assert!(run(
            ch.as_mut(),
            Op::Unmap {
                offset: 1 << 20,
                len: 6 << 20
            }
        )
        .result
        .is_ok());
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: 0,
                buf: Buf::zeroed(8 << 20),
            },
        );
        let data = c.buf.expect("buf");
        assert!(data[..1 << 20].iter().all(|&b| b == 0x3C));
        assert!(data[1 << 20..7 << 20].iter().all(|&b| b == 0));
        assert!(data[7 << 20..].iter().all(|&b| b == 0x3C));
    }

    #[test]
    fn one_gib_disk_costs_nothing_until_written() {
        let dev = RamBdev::new("big", 512, 2 << 20, &RegionOptions::small_pages()).expect("1 GiB");
        assert_eq!(dev.info().size_bytes(), 1 << 30);
        let mut ch = dev.open_channel().expect("channel");
        let c = run(
            ch.as_mut(),
            Op::Read {
                offset: (1 << 30) - 4096,
                buf: Buf::zeroed(4096),
            },
        );
        assert!(c.result.is_ok());
        assert!(matches!(
            RamBdev::new("bad", 513, 10, &RegionOptions::small_pages()),
            Err(BdevError::InvalidConfig(_))
        ));
        assert!(matches!(
            RamBdev::new("bad", 512, 0, &RegionOptions::small_pages()),
            Err(BdevError::InvalidConfig(_))
        ));
    }

    #[test]
    fn allocation_tracks_written_and_released_pages() {
        use crate::Extent;
        let dev = ram(512, 1024); // 512 KiB, 4 KiB pages
        let mut ch = dev.open_channel().expect("channel");
        let query = |ch: &mut dyn Channel, offset: u64, len: u64| {
            let c = run(ch, Op::Allocation { offset, len, buf: Buf::zeroed(8 * Extent::RECORD_LEN) });
            assert!(c.result.is_ok());
            Extent::decode_all(&c.buf.expect("buf"))
        };
        assert_eq!(
            query(ch.as_mut(), 0, 512 * 1024),
            [Extent { offset: 0, len: 512 * 1024, allocated: false }],
            "a new RAM disk holds nothing"
        );
        // One 512-byte block written: its whole page is allocated.
        assert!(run(ch.as_mut(), Op::Write { offset: 8192 + 512, buf: Buf::from_vec(vec![1; 512]), fua: false })
            .result
            .is_ok());
        assert_eq!(
            query(ch.as_mut(), 0, 512 * 1024),
            [
                Extent { offset: 0, len: 8192, allocated: false },
                Extent { offset: 8192, len: 4096, allocated: true },
                Extent { offset: 12288, len: 512 * 1024 - 12288, allocated: false },
            ]
        );
        // Releasing part of the page keeps it; releasing all of it frees it.
        assert!(run(ch.as_mut(), Op::Unmap { offset: 8192, len: 1024 }).result.is_ok());
        assert!(query(ch.as_mut(), 8192, 512)[0].allocated);
        assert!(run(ch.as_mut(), Op::Unmap { offset: 8192, len: 4096 }).result.is_ok());
        assert_eq!(query(ch.as_mut(), 0, 512 * 1024).len(), 1);
        // Reads do not allocate.
        let c = run(ch.as_mut(), Op::Read { offset: 0, buf: Buf::zeroed(4096) });
        assert!(c.result.is_ok());
        assert!(!query(ch.as_mut(), 0, 4096)[0].allocated);
    }
}
