//! Block devices for polltgt: the [`Bdev`] / [`Channel`] traits (SPDK's bdev and io_channel) and the RAM, null and
//! file/block-device backends. See docs/design.md, "Block devices".
//!
//! A [`Bdev`] is shared by all reactors; each reactor opens its own [`Channel`], submits [`Io`]s that never block,
//! and collects [`Completion`]s from a poller. The data buffer of a READ or WRITE moves into the submission and
//! comes back in the completion, also on error. Offsets and lengths are bytes, multiples of the block size; the
//! SCSI core checks them against the capacity (SBC-3 §4.5, LBA out of range) before submitting, and every backend
//! checks again and answers [`BdevError::OutOfRange`] / [`BdevError::Misaligned`] without touching memory.
//!
//! `unsafe` is confined to the `sys` module (ioctls, `fallocate`, the io_uring submission wrapper).

use std::io;
use std::path::PathBuf;

pub use polltgt_hugepages::Buf;

mod cdrom;
mod file;
mod null;
mod ram;
mod sys;

pub use cdrom::{CdromBdev, CdromChannel, CDROM_BLOCK_SIZE};
pub use file::{EngineChoice, FileBdev, FileEngine, FileOptions};
pub use null::NullBdev;
pub use ram::RamBdev;

/// Smallest supported logical block size.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest supported logical block size.
pub const MAX_BLOCK_SIZE: u32 = 65536;

/// What kind of backend a bdev is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BdevKind {
    /// Memory (hugepages when available).
    Ram,
    /// Reads zeros, discards writes.
    Null,
    /// A regular file.
    File,
    /// A block device node.
    BlockDevice,
}

/// Static description of a bdev (what READ CAPACITY and the INQUIRY VPD pages report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BdevInfo {
    /// Name given at creation.
    pub name: String,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Number of logical blocks.
    pub num_blocks: u64,
    /// Writes are refused with [`BdevError::ReadOnly`].
    pub read_only: bool,
    /// Backend kind.
    pub kind: BdevKind,
    /// Rotational medium (SBC-3 Block Device Characteristics VPD page, MEDIUM ROTATION RATE).
    pub rotational: bool,
}

impl BdevInfo {
    /// Capacity in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks.saturating_mul(u64::from(self.block_size))
    }
}

/// Errors of the block device layer, in completions and at creation.
#[derive(Debug, thiserror::Error)]
pub enum BdevError {
    /// The range extends beyond the end of the device (SBC-3: LOGICAL BLOCK ADDRESS OUT OF RANGE).
    #[error("I/O of {len} bytes at byte {offset} is beyond the end of the device ({size} bytes)")]
    OutOfRange {
        /// Byte offset of the I/O.
        offset: u64,
        /// Byte length of the I/O.
        len: u64,
        /// Device size in bytes.
        size: u64,
    },
    /// Offset or length is not a multiple of the block size.
    #[error(
        "I/O of {len} bytes at byte {offset} is not aligned to the {block_size}-byte block size"
    )]
    Misaligned {
        /// Byte offset of the I/O.
        offset: u64,
        /// Byte length of the I/O.
        len: u64,
        /// Logical block size.
        block_size: u32,
    },
    /// An `O_DIRECT` device got a buffer whose address is not aligned (use `BufPool` buffers).
    #[error("buffer at {addr:#x} is not aligned to {align} bytes as O_DIRECT requires")]
    BufferAlignment {
        /// Buffer address.
        addr: usize,
        /// Required alignment.
        align: usize,
    },
    /// A write, unmap or write-zeroes on a read-only device (SBC-3: DATA PROTECT, WRITE PROTECTED).
    #[error("the device is read-only")]
    ReadOnly,
    /// The backing store failed (SBC-3: MEDIUM ERROR / HARDWARE ERROR).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The backing file or device could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// Path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bad creation parameters.
    #[error("invalid bdev configuration: {0}")]
    InvalidConfig(String),
    /// Mapping memory failed.
    #[error("memory: {0}")]
    Memory(#[from] polltgt_hugepages::RegionError),
}

/// A block device, shared by all reactors.
pub trait Bdev: Send + Sync {
    /// Static description.
    fn info(&self) -> BdevInfo;
    /// The block size of [`Bdev::info`], without building the whole description (the command path asks it per
    /// command).
    fn block_size(&self) -> u32 {
        self.info().block_size
    }
    /// One channel per reactor (SPDK's io_channel); never shared between threads.
    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError>;
    /// Changes the capacity (SCST's `resync_size`): `None` re-reads the size of the backing file or device, `Some`
    /// sets a new number of blocks where the backend has no backing store of its own. Returns the new number of
    /// blocks; I/Os beyond it complete with [`BdevError::OutOfRange`] from then on. Backends whose size is fixed
    /// answer [`BdevError::InvalidConfig`].
    fn resize(&self, num_blocks: Option<u64>) -> Result<u64, BdevError> {
        let _ = num_blocks;
        Err(BdevError::InvalidConfig(format!("{} cannot be resized", self.info().name)))
    }
    /// Worker threads doing the backend's I/O (SCST `threads_num`; SCST's `threads_pool_type` is `shared`: one pool
    /// for every initiator); 0 when I/O runs on the reactors (RAM, null, CD-ROM images).
    fn threads(&self) -> usize {
        0
    }
    /// Changes the number of I/O threads while the bdev is in use; returns it. Backends without threads answer
    /// [`BdevError::InvalidConfig`].
    fn set_threads(&self, threads: usize) -> Result<usize, BdevError> {
        let _ = threads;
        Err(BdevError::InvalidConfig(format!("{} does its I/O on the reactors, without I/O threads", self.info().name)))
    }
    /// Replaces a removable medium (a CD-ROM's image, SCST `vcdrom`'s `filename`) with the one at `path`, or
    /// removes it (`None`). The new medium is opened before anything changes; returns its number of blocks (0:
    /// none). Backends without a removable medium answer [`BdevError::InvalidConfig`].
    fn change_medium(&self, path: Option<&std::path::Path>) -> Result<u64, BdevError> {
        let _ = path;
        Err(BdevError::InvalidConfig(format!("{} has no removable medium", self.info().name)))
    }
}

/// A reactor's submission/completion queue pair on a bdev.
pub trait Channel: Send {
    /// Never blocks. The buffer moves into the submission and comes back in the completion.
    fn submit(&mut self, io: Io);
    /// Moves finished I/Os into `done`; returns how many. Called by a reactor poller.
    fn poll(&mut self, done: &mut Vec<Completion>) -> usize;
    /// I/Os submitted and not yet returned by `poll`.
    fn in_flight(&self) -> usize;
}

/// One I/O request; `tag` comes back in its [`Completion`].
#[derive(Debug)]
pub struct Io {
    /// Caller's identifier.
    pub tag: u64,
    /// The operation.
    pub op: Op,
}

/// Block operations (byte offsets and lengths, multiples of the block size).
#[derive(Debug)]
pub enum Op {
    /// Fill `buf.len()` bytes from byte `offset` (SBC-3 READ).
    Read {
        /// Byte offset.
        offset: u64,
        /// Destination; its length is the transfer length.
        buf: Buf,
    },
    /// Write `buf` at byte `offset` (SBC-3 WRITE); `fua` asks for it to be durable on completion (Force Unit
    /// Access).
    Write {
        /// Byte offset.
        offset: u64,
        /// Source; its length is the transfer length.
        buf: Buf,
        /// Force Unit Access.
        fua: bool,
    },
    /// Make completed writes durable (SBC-3 SYNCHRONIZE CACHE).
    Flush,
    /// Zero `len` bytes at `offset` (SBC-3 WRITE SAME with zeros).
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u64,
    },
    /// Deallocate `len` bytes at `offset` (SBC-3 UNMAP); unmapped blocks read as zeros.
    Unmap {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u64,
    },
    /// Describe which blocks from byte `offset` on (at most `len` bytes) hold allocated storage (SBC-3 GET LBA
    /// STATUS): the completion returns `buf` filled with [`Extent`] records (see [`Extent::decode_all`]), at most
    /// `buf.len() / Extent::RECORD_LEN` of them, contiguous from `offset`, block aligned. A backend that cannot
    /// tell reports everything allocated.
    Allocation {
        /// Byte offset.
        offset: u64,
        /// Most bytes to describe.
        len: u64,
        /// Receives the records.
        buf: Buf,
    },
}

/// A run of bytes with one allocation state, the answer of [`Op::Allocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset.
    pub offset: u64,
    /// Byte length (non-zero).
    pub len: u64,
    /// Backed by storage (written, or never deallocated); `false` = deallocated (reads as zeros).
    pub allocated: bool,
}

impl Extent {
    /// Bytes per record in an [`Op::Allocation`] buffer: offset and length as little-endian `u64`, bit 63 of the
    /// length set for a deallocated run. A record of length zero ends the list.
    pub const RECORD_LEN: usize = 16;

    /// Writes `extents` into `buf` (as many as fit, then a terminating zero record if there is room). Returns how
    /// many were written.
    pub fn encode_all(extents: &[Extent], buf: &mut [u8]) -> usize {
        let mut n = 0;
        for (e, rec) in extents.iter().zip(buf.chunks_exact_mut(Self::RECORD_LEN)) {
            let len = (e.len & !(1 << 63)) | if e.allocated { 0 } else { 1 << 63 };
            rec[..8].copy_from_slice(&e.offset.to_le_bytes());
            rec[8..].copy_from_slice(&len.to_le_bytes());
            n += 1;
        }
        if let Some(rec) = buf.chunks_exact_mut(Self::RECORD_LEN).nth(n) {
            rec.fill(0);
        }
        n
    }

    /// Reads the records of an [`Op::Allocation`] buffer up to the first zero-length one.
    pub fn decode_all(buf: &[u8]) -> Vec<Extent> {
        let mut out = Vec::new();
        for rec in buf.chunks_exact(Self::RECORD_LEN) {
            let mut o = [0u8; 8];
            let mut l = [0u8; 8];
            o.copy_from_slice(&rec[..8]);
            l.copy_from_slice(&rec[8..]);
            let raw = u64::from_le_bytes(l);
            let len = raw & !(1 << 63);
            if len == 0 {
                break;
            }
            out.push(Extent { offset: u64::from_le_bytes(o), len, allocated: raw >> 63 == 0 });
        }
        out
    }
}

/// Turns raw runs (in order, contiguous, any alignment) into block-aligned ones covering the same blocks: a block
/// counts as deallocated only when all of it is. At most `max` runs are kept.
pub(crate) fn align_extents(raw: &[Extent], block_size: u64, max: usize) -> Vec<Extent> {
    let bs = block_size.max(1);
    let (Some(first), Some(last)) = (raw.first(), raw.last()) else {
        return Vec::new();
    };
    let begin = first.offset / bs * bs;
    let finish = last.offset.saturating_add(last.len).div_ceil(bs).saturating_mul(bs);
    let mut holes: Vec<(u64, u64)> = Vec::new();
    for e in raw.iter().filter(|e| !e.allocated) {
        let (a, b) = (e.offset, e.offset.saturating_add(e.len));
        match holes.last_mut() {
            Some(h) if h.1 == a => h.1 = b,
            _ => holes.push((a, b)),
        }
    }
    let mut out = Vec::new();
    let mut pos = begin;
    for (a, b) in holes {
        let (a, b) = (a.div_ceil(bs).saturating_mul(bs), b / bs * bs);
        if b <= a {
            continue;
        }
        if a > pos {
            out.push(Extent { offset: pos, len: a - pos, allocated: true });
        }
        out.push(Extent { offset: a, len: b - a, allocated: false });
        pos = b;
    }
    if finish > pos {
        out.push(Extent { offset: pos, len: finish - pos, allocated: true });
    }
    out.truncate(max);
    out
}

impl Op {
    /// Byte range the operation touches (`None` for Flush).
    pub fn range(&self) -> Option<(u64, u64)> {
        match self {
            Op::Read { offset, buf } | Op::Write { offset, buf, .. } => {
                Some((*offset, buf.len() as u64))
            }
            Op::WriteZeroes { offset, len } | Op::Unmap { offset, len } => Some((*offset, *len)),
            Op::Allocation { offset, len, .. } => Some((*offset, *len)),
            Op::Flush => None,
        }
    }

    /// Whether the operation modifies the medium.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Write { .. } | Op::WriteZeroes { .. } | Op::Unmap { .. }
        )
    }

    /// Takes the data buffer out of a Read or Write.
    pub fn into_buf(self) -> Option<Buf> {
        match self {
            Op::Read { buf, .. } | Op::Write { buf, .. } | Op::Allocation { buf, .. } => Some(buf),
            _ => None,
        }
    }
}

/// A finished I/O.
#[derive(Debug)]
pub struct Completion {
    /// The submission's tag.
    pub tag: u64,
    /// Outcome.
    pub result: Result<(), BdevError>,
    /// The Read/Write/Allocation buffer, returned whatever the outcome (filled on a successful Read or
    /// Allocation).
    pub buf: Option<Buf>,
}

impl Completion {
    /// A completion that hands back the buffer of `op`, if any.
    pub fn of(tag: u64, op: Op, result: Result<(), BdevError>) -> Completion {
        Completion {
            tag,
            result,
            buf: op.into_buf(),
        }
    }
}

/// What every backend checks before touching anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub block_size: u32,
    pub size: u64,
    pub read_only: bool,
    /// Required buffer address alignment (O_DIRECT), 1 when none.
    pub buf_align: usize,
}

impl Geometry {
    /// Validates `op` against the device: read-only, block alignment, range, buffer alignment.
    pub(crate) fn check(&self, op: &Op) -> Result<(), BdevError> {
        if op.is_write() && self.read_only {
            return Err(BdevError::ReadOnly);
        }
        let Some((offset, len)) = op.range() else {
            return Ok(());
        };
        let bs = u64::from(self.block_size);
        if offset % bs != 0 || len % bs != 0 {
            return Err(BdevError::Misaligned {
                offset,
                len,
                block_size: self.block_size,
            });
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => {}
            _ => {
                return Err(BdevError::OutOfRange {
                    offset,
                    len,
                    size: self.size,
                })
            }
        }
        if let Op::Read { buf, .. } | Op::Write { buf, .. } = op {
            let addr = buf.as_ptr() as usize;
            if self.buf_align > 1 && !buf.is_empty() && addr % self.buf_align != 0 {
                return Err(BdevError::BufferAlignment {
                    addr,
                    align: self.buf_align,
                });
            }
        }
        Ok(())
    }
}

/// Checks a block size and block count; returns the size in bytes.
pub(crate) fn check_geometry(block_size: u32, num_blocks: u64) -> Result<u64, BdevError> {
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(BdevError::InvalidConfig(format!(
            "block size {block_size} is not a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
        )));
    }
    if num_blocks == 0 {
        return Err(BdevError::InvalidConfig(
            "a bdev needs at least one block".into(),
        ));
    }
    num_blocks
        .checked_mul(u64::from(block_size))
        .ok_or_else(|| {
            BdevError::InvalidConfig(format!(
                "{num_blocks} blocks of {block_size} bytes overflow"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom() -> Geometry {
        Geometry {
            block_size: 512,
            size: 512 * 8,
            read_only: false,
            buf_align: 1,
        }
    }

    #[test]
    fn range_and_alignment_checks() {
        let g = geom();
        let read = |offset, len| Op::Read {
            offset,
            buf: Buf::zeroed(len),
        };
        assert!(g.check(&read(0, 4096)).is_ok());
        assert!(g.check(&read(3584, 512)).is_ok());
        assert!(g.check(&read(4096, 0)).is_ok());
        assert!(matches!(
            g.check(&read(3584, 1024)),
            Err(BdevError::OutOfRange {
                offset: 3584,
                len: 1024,
                ..
            })
        ));
        assert!(matches!(
            g.check(&read(4096, 512)),
            Err(BdevError::OutOfRange { .. })
        ));
        assert!(matches!(
            g.check(&read(100, 512)),
            Err(BdevError::Misaligned { .. })
        ));
        assert!(matches!(
            g.check(&read(0, 100)),
            Err(BdevError::Misaligned { .. })
        ));
        let unmap = Op::Unmap {
            offset: u64::MAX - 511,
            len: 1024,
        };
        assert!(matches!(g.check(&unmap), Err(BdevError::OutOfRange { .. })));
        assert!(g.check(&Op::Flush).is_ok());
    }

    #[test]
    fn read_only_refuses_modifications() {
        let g = Geometry {
            read_only: true,
            ..geom()
        };
        assert!(matches!(
            g.check(&Op::Write {
                offset: 0,
                buf: Buf::zeroed(512),
                fua: false
            }),
            Err(BdevError::ReadOnly)
        ));
        assert!(matches!(
            g.check(&Op::Unmap {
                offset: 0,
                len: 512
            }),
            Err(BdevError::ReadOnly)
        ));
        assert!(matches!(
            g.check(&Op::WriteZeroes {
                offset: 0,
                len: 512
            }),
            Err(BdevError::ReadOnly)
        ));
        assert!(g
            .check(&Op::Read {
                offset: 0,
                buf: Buf::zeroed(512)
            })
            .is_ok());
        assert!(g.check(&Op::Flush).is_ok());
    }

    #[test]
    fn buffer_alignment_check() {
        let g = Geometry {
            buf_align: 4096,
            ..geom()
        };
        let pool = polltgt_hugepages::BufPool::with_defaults();
        let aligned = pool.alloc(512).expect("alloc");
        assert!(g
            .check(&Op::Read {
                offset: 0,
                buf: aligned
            })
            .is_ok());
        // A heap buffer is almost never page aligned; the assertion follows whatever address it got.
        let odd = vec![0u8; 512];
        let addr = odd.as_ptr() as usize;
        let buf = Buf::from_vec(odd);
        let r = g.check(&Op::Write {
            offset: 0,
            buf,
            fua: false,
        });
        if addr % 4096 != 0 {
            assert!(matches!(
                r,
                Err(BdevError::BufferAlignment { align: 4096, .. })
            ));
        } else {
            assert!(r.is_ok());
        }
    }

    #[test]
    fn geometry_validation() {
        assert_eq!(check_geometry(512, 2).expect("ok"), 1024);
        assert_eq!(check_geometry(4096, 1).expect("ok"), 4096);
        assert!(check_geometry(500, 2).is_err());
        assert!(check_geometry(256, 2).is_err());
        assert!(check_geometry(1 << 17, 2).is_err());
        assert!(check_geometry(512, 0).is_err());
        assert!(check_geometry(4096, u64::MAX / 1024).is_err());
    }

    #[test]
    fn extent_records_round_trip() {
        let ext = [
            Extent { offset: 0, len: 4096, allocated: true },
            Extent { offset: 4096, len: 1 << 40, allocated: false },
        ];
        let mut buf = vec![0xFFu8; 4 * Extent::RECORD_LEN];
        assert_eq!(Extent::encode_all(&ext, &mut buf), 2);
        assert_eq!(Extent::decode_all(&buf), ext);
        let mut small = vec![0u8; Extent::RECORD_LEN];
        assert_eq!(Extent::encode_all(&ext, &mut small), 1);
        assert_eq!(Extent::decode_all(&small), ext[..1]);
        assert_eq!(Extent::decode_all(&[]), []);
    }

    #[test]
    fn extents_align_to_blocks() {
        let e = |offset, len, allocated| Extent { offset, len, allocated };
        // A hole that does not cover whole blocks leaves them allocated.
        assert_eq!(
            align_extents(&[e(0, 1000, true), e(1000, 3000, false), e(4000, 96, true)], 1024, 8),
            [e(0, 1024, true), e(1024, 2048, false), e(3072, 1024, true)]
        );
        // Neighbouring holes together cover a block.
        assert_eq!(
            align_extents(&[e(0, 300, false), e(300, 724, false), e(1024, 1024, true)], 1024, 8),
            [e(0, 1024, false), e(1024, 1024, true)]
        );
        assert_eq!(align_extents(&[e(0, 500, false)], 1024, 8), [e(0, 1024, true)]);
        assert_eq!(align_extents(&[e(0, 4096, false), e(4096, 4096, true)], 512, 1), [e(0, 4096, false)]);
        assert_eq!(align_extents(&[], 512, 8), []);
    }
}
