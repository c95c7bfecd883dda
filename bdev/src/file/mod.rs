//! `FileBdev`: a regular file or a block device, driven by io_uring or, where io_uring is unavailable, by a pool
//! of I/O threads (SCST's vdisk_fileio / vdisk_blockio, SPDK's uring and aio bdevs).
//!
//! - Size: the file's length, or `BLKGETSIZE64` for block devices; `num_blocks` is the size divided by the block
//!   size (a partial tail block is not exposed).
//! - `read_only` opens the file `O_RDONLY`; writes, unmaps and write-zeroes complete with [`BdevError::ReadOnly`].
//! - `o_direct` opens with `O_DIRECT`; buffers must then be aligned to the block size (pool buffers are page
//!   aligned) or the I/O completes with [`BdevError::BufferAlignment`].
//! - Flush is `fdatasync`; FUA writes use `RWF_DSYNC` (io_uring) or a write followed by `fdatasync` (threads).
//! - Unmap is `fallocate(PUNCH_HOLE | KEEP_SIZE)` and WriteZeroes `fallocate(ZERO_RANGE | KEEP_SIZE)`; where the
//!   filesystem or device refuses (`EOPNOTSUPP`), the range is written with zeros instead, and the bdev remembers
//!   not to try again.
//! - Allocation walks the file with `lseek(SEEK_DATA / SEEK_HOLE)`, on a worker thread for both engines (io_uring
//!   has no lseek); a block device reports everything allocated.
//! - `resize(None)` re-reads the size of the file or device (SCST's `resync_size`).

mod threads;
mod uring;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use polltgt_hugepages::{Region, RegionOptions};

use crate::{
    align_extents, check_geometry, sys, Bdev, BdevError, BdevInfo, BdevKind, Channel, Extent, Geometry,
    Op,
};

/// Most I/O threads a file bdev's pool may have.
pub const MAX_THREADS: usize = 128;

/// Size of the shared all-zero source used when `fallocate` cannot zero a range.
const ZERO_CHUNK: usize = 1 << 20;

/// Which I/O engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// io_uring when it can be set up (and supports the needed opcodes), else the thread pool.
    #[default]
    Auto,
    /// io_uring or an error.
    IoUring,
    /// The thread pool (pread/pwrite).
    Threads,
}

/// The engine a `FileBdev` ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEngine {
    /// One io_uring per channel.
    IoUring,
    /// A pool of I/O threads shared by the bdev's channels.
    Threads,
}

/// Options of [`FileBdev::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// Open with `O_DIRECT` (bypass the page cache).
    pub o_direct: bool,
    /// Engine selection.
    pub engine: EngineChoice,
    /// io_uring submission queue entries per channel.
    pub queue_depth: u32,
    /// Worker threads of the thread-pool engine.
    pub threads: usize,
    /// Override of the rotational flag (default: the device's `queue/rotational` in sysfs, false if unknown).
    pub rotational: Option<bool>,
    /// io_uring polled completions (`IORING_SETUP_IOPOLL`): the reactor polls the device's completion queue
    /// instead of taking an interrupt, for NVMe block devices with poll queues (`nvme.poll_queues=N`). Needs
    /// `o_direct` and the io_uring engine; reads and writes go to the polled ring, flush and fallocate to a second,
    /// ordinary ring of the channel. On devices without poll queues the kernel completes the I/O anyway (Linux
    /// falls back to interrupt completion) but polling then only costs CPU.
    pub iopoll: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            o_direct: false,
            engine: EngineChoice::Auto,
            queue_depth: 128,
            threads: 4,
            rotational: None,
            iopoll: false,
        }
    }
}

/// What the engines share: the open file, its geometry and the fallocate capability flags.
pub(crate) struct FileCtx {
    pub file: Arc<File>,
    /// Block size, read-only flag and buffer alignment; the size is `size`.
    pub geom: Geometry,
    /// Current size in bytes (a whole number of blocks); changed by [`Bdev::resize`].
    pub size: AtomicU64,
    /// `fallocate(PUNCH_HOLE)` has not been refused yet.
    pub punch_ok: AtomicBool,
    /// `fallocate(ZERO_RANGE)` has not been refused yet.
    pub zero_range_ok: AtomicBool,
    zeros: OnceLock<Arc<Region>>,
}

impl FileCtx {
    /// Validates `op` against the current geometry.
    pub(crate) fn check(&self, op: &Op) -> Result<(), BdevError> {
        let geom = Geometry { size: self.size.load(Ordering::Acquire), ..self.geom };
        geom.check(op)
    }

    /// Answers [`Op::Allocation`] with `lseek(SEEK_DATA / SEEK_HOLE)`: holes are deallocated. Where the file
    /// system cannot tell (an error other than "no more data"), the rest counts as allocated.
    pub(crate) fn allocation(&self, offset: u64, len: u64, buf: &mut [u8]) {
        let max = buf.len() / Extent::RECORD_LEN;
        let bs = u64::from(self.geom.block_size);
        let end = offset.saturating_add(len);
        let mut raw: Vec<Extent> = Vec::new();
        let mut pos = offset;
        // A few raw runs more than asked for: aligning can merge some.
        while pos < end && raw.len() <= max + 2 {
            let data = match sys::seek_data_hole(&self.file, pos, true) {
                Ok(Some(d)) => d.min(end),
                Ok(None) => end,
                Err(_) => {
                    raw.push(Extent { offset: pos, len: end - pos, allocated: true });
                    break;
                }
            };
            if data > pos {
                raw.push(Extent { offset: pos, len: data - pos, allocated: false });
                pos = data;
                continue;
            }
            let hole = match sys::seek_data_hole(&self.file, pos, false) {
                Ok(Some(h)) => h.min(end),
                _ => end,
            };
            // A racing write may fill the hole just found: always make progress.
            let hole = hole.max(pos.saturating_add(bs).min(end));
            raw.push(Extent { offset: pos, len: hole - pos, allocated: true });
            pos = hole;
        }
        let aligned = align_extents(&raw, bs, max);
        Extent::encode_all(&aligned, buf);
    }

    /// The shared zero source (a never-written, page-aligned region: reading it maps the kernel's zero page).
    pub(crate) fn zeros(&self) -> Result<Arc<Region>, BdevError> {
        if let Some(z) = self.zeros.get() {
            return Ok(Arc::clone(z));
        }
        let region = Arc::new(Region::with_options(
            ZERO_CHUNK,
            &RegionOptions::small_pages(),
        )?);
        Ok(Arc::clone(self.zeros.get_or_init(|| region)))
    }
}

/// A file or block device.
pub struct FileBdev {
    info: BdevInfo,
    path: PathBuf,
    ctx: Arc<FileCtx>,
    engine: FileEngine,
    choice: EngineChoice,
    queue_depth: u32,
    /// Size of the thread pool (SCST `threads_num`), changed by [`Bdev::set_threads`].
    threads: Arc<AtomicUsize>,
    iopoll: bool,
    /// The thread pool: the engine of thread channels, and where io_uring channels send Allocation queries.
    workers: Arc<Mutex<Option<threads::Workers>>>,
}

impl std::fmt::Debug for FileBdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBdev")
            .field("info", &self.info)
            .field("engine", &self.engine)
            .finish()
    }
}

impl FileBdev {
    /// Opens `path` as a bdev of `block_size`-byte blocks.
    pub fn open(
        name: impl Into<String>,
        path: impl AsRef<Path>,
        block_size: u32,
        read_only: bool,
        opts: FileOptions,
    ) -> Result<FileBdev, BdevError> {
        let path = path.as_ref();
        check_geometry(block_size, 1)?;
        if opts.iopoll && !opts.o_direct {
            return Err(BdevError::InvalidConfig("iopoll needs o_direct (polled I/O bypasses the page cache)".into()));
        }
        if opts.iopoll && opts.engine == EngineChoice::Threads {
            return Err(BdevError::InvalidConfig("iopoll needs the io_uring engine".into()));
        }
        if opts.queue_depth == 0 || opts.threads == 0 || opts.threads > MAX_THREADS {
            return Err(BdevError::InvalidConfig(
                format!("queue_depth and threads must be at least 1 (threads at most {MAX_THREADS})"),
            ));
        }
        let open_err = |source| BdevError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(if opts.o_direct { libc::O_DIRECT } else { 0 })
            .open(path)
            .map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let ft = meta.file_type();
        let (kind, size, dev) = if ft.is_block_device() {
            let size = sys::block_device_size(&file).map_err(open_err)?;
            let lbs = sys::logical_block_size(&file).map_err(open_err)?;
            if opts.o_direct && block_size < lbs {
                return Err(BdevError::InvalidConfig(format!(
                    "block size {block_size} is below the device's logical block size {lbs} (O_DIRECT)"
                )));
            }
            (BdevKind::BlockDevice, size, meta.rdev())
        } else if ft.is_file() {
            (BdevKind::File, meta.len(), meta.dev())
        } else {
            return Err(BdevError::InvalidConfig(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )));
        };
        let num_blocks = size / u64::from(block_size);
        if num_blocks == 0 {
            return Err(BdevError::InvalidConfig(format!(
                "{} ({size} bytes) is smaller than one {block_size}-byte block",
                path.display()
            )));
        }
        let rotational = opts
            .rotational
            .unwrap_or_else(|| sysfs_rotational(dev).unwrap_or(false));
        let engine = match opts.engine {
            EngineChoice::Threads => FileEngine::Threads,
            EngineChoice::IoUring => {
                sys::uring::probe(opts.queue_depth).map_err(BdevError::Io)?;
                FileEngine::IoUring
            }
            EngineChoice::Auto if opts.iopoll => {
                sys::uring::probe(opts.queue_depth).map_err(BdevError::Io)?;
                FileEngine::IoUring
            }
            EngineChoice::Auto => match sys::uring::probe(opts.queue_depth) {
                Ok(()) => FileEngine::IoUring,
                Err(e) => {
                    tracing::info!(error = %e, path = %path.display(), "io_uring unavailable; using I/O threads");
                    FileEngine::Threads
                }
            },
        };
        let info = BdevInfo {
            name: name.into(),
            block_size,
            num_blocks,
            read_only,
            kind,
            rotational,
        };
        let geom = Geometry {
            block_size,
            size: info.size_bytes(),
            read_only,
            buf_align: if opts.o_direct {
                block_size as usize
            } else {
                1
            },
        };
        let ctx = Arc::new(FileCtx {
            file: Arc::new(file),
            size: AtomicU64::new(geom.size),
            geom,
            punch_ok: AtomicBool::new(true),
            zero_range_ok: AtomicBool::new(true),
            zeros: OnceLock::new(),
        });
        Ok(FileBdev {
            info,
            path: path.to_path_buf(),
            ctx,
            engine,
            choice: opts.engine,
            queue_depth: opts.queue_depth,
            threads: Arc::new(AtomicUsize::new(opts.threads)),
            iopoll: opts.iopoll,
            workers: Arc::new(Mutex::new(None)),
        })
    }

    /// The engine channels use.
    pub fn engine(&self) -> FileEngine {
        self.engine
    }

    fn thread_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        Ok(Box::new(side_channel(
            &self.workers,
            &self.ctx,
            &self.info.name,
            self.threads.load(Ordering::Acquire),
        )?))
    }
}

/// A thread-pool channel on `ctx`, starting the pool on first use.
pub(crate) fn side_channel(
    workers: &Mutex<Option<threads::Workers>>,
    ctx: &Arc<FileCtx>,
    name: &str,
    threads: usize,
) -> Result<threads::ThreadChannel, BdevError> {
    let mut w = workers.lock().unwrap_or_else(PoisonError::into_inner);
    let workers = match &mut *w {
        Some(workers) => workers,
        None => w.insert(threads::Workers::start(name, threads)?),
    };
    Ok(threads::ThreadChannel::new(Arc::clone(ctx), workers))
}

impl Bdev for FileBdev {
    fn info(&self) -> BdevInfo {
        let mut info = self.info.clone();
        info.num_blocks = self.ctx.size.load(Ordering::Acquire) / u64::from(info.block_size);
        info
    }

    fn block_size(&self) -> u32 {
        self.info.block_size
    }

    fn resize(&self, num_blocks: Option<u64>) -> Result<u64, BdevError> {
        if num_blocks.is_some() {
            return Err(BdevError::InvalidConfig(format!(
                "{} takes its size from {}; resize it there",
                self.info.name,
                self.path.display()
            )));
        }
        let open_err = |source| BdevError::Open { path: self.path.clone(), source };
        let size = match self.info.kind {
            BdevKind::BlockDevice => sys::block_device_size(&self.ctx.file).map_err(open_err)?,
            _ => self.ctx.file.metadata().map_err(open_err)?.len(),
        };
        let bs = u64::from(self.info.block_size);
        let blocks = size / bs;
        if blocks == 0 {
            return Err(BdevError::InvalidConfig(format!(
                "{} ({size} bytes) is smaller than one {bs}-byte block",
                self.path.display()
            )));
        }
        self.ctx.size.store(blocks * bs, Ordering::Release);
        Ok(blocks)
    }

    fn threads(&self) -> usize {
        self.threads.load(Ordering::Acquire)
    }

    /// Changes the size of the thread pool: at once when it runs (new workers start, surplus workers exit after the
    /// jobs queued before), else for when it starts.
    fn set_threads(&self, threads: usize) -> Result<usize, BdevError> {
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(BdevError::InvalidConfig(format!(
                "{threads} I/O threads: between 1 and {MAX_THREADS}"
            )));
        }
        let mut w = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(workers) = w.as_mut() {
            workers.resize(threads)?;
        }
        self.threads.store(threads, Ordering::Release);
        Ok(threads)
    }

    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        match self.engine {
            FileEngine::Threads => self.thread_channel(),
            FileEngine::IoUring => {
                let side = uring::Side {
                    workers: Arc::clone(&self.workers),
                    name: self.info.name.clone(),
                    threads: Arc::clone(&self.threads),
                };
                match uring::UringChannel::new(Arc::clone(&self.ctx), self.queue_depth, self.iopoll, side) {
                    Ok(ch) => Ok(Box::new(ch)),
                    Err(e) if self.choice == EngineChoice::Auto && !self.iopoll => {
                        tracing::info!(error = %e, bdev = %self.info.name, "io_uring setup failed; channel uses I/O threads");
                        self.thread_channel()
                    }
                    Err(e) => Err(BdevError::Io(e)),
                }
            }
        }
    }
}

/// `/sys/dev/block/MAJ:MIN/queue/rotational` of a device (or of the disk holding a partition).
fn sysfs_rotational(dev: u64) -> Option<bool> {
    let (major, minor) = sys::dev_major_minor(dev);
    let base = format!("/sys/dev/block/{major}:{minor}");
    [
        format!("{base}/queue/rotational"),
        format!("{base}/../queue/rotational"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim() == "1")
}

#[cfg(test)]
mod tests;
