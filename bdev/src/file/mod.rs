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

mod threads;
mod uring;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use polltgt_hugepages::{Region, RegionOptions};

use crate::{check_geometry, sys, Bdev, BdevError, BdevInfo, BdevKind, Channel, Geometry};

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
    pub geom: Geometry,
    /// `fallocate(PUNCH_HOLE)` has not been refused yet.
    pub punch_ok: AtomicBool,
    /// `fallocate(ZERO_RANGE)` has not been refused yet.
    pub zero_range_ok: AtomicBool,
    zeros: OnceLock<Arc<Region>>,
}

impl FileCtx {
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
    ctx: Arc<FileCtx>,
    engine: FileEngine,
    choice: EngineChoice,
    queue_depth: u32,
    threads: usize,
    iopoll: bool,
    workers: Mutex<Option<threads::Workers>>,
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
        if opts.queue_depth == 0 || opts.threads == 0 {
            return Err(BdevError::InvalidConfig(
                "queue_depth and threads must be at least 1".into(),
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
            geom,
            punch_ok: AtomicBool::new(true),
            zero_range_ok: AtomicBool::new(true),
            zeros: OnceLock::new(),
        });
        Ok(FileBdev {
            info,
            ctx,
            engine,
            choice: opts.engine,
            queue_depth: opts.queue_depth,
            threads: opts.threads,
            iopoll: opts.iopoll,
            workers: Mutex::new(None),
        })
    }

    /// The engine channels use.
    pub fn engine(&self) -> FileEngine {
        self.engine
    }

    fn thread_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        let mut w = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let workers = match &mut *w {
            Some(workers) => workers,
            None => w.insert(threads::Workers::start(&self.info.name, self.threads)?),
        };
        Ok(Box::new(threads::ThreadChannel::new(
            Arc::clone(&self.ctx),
            workers,
        )))
    }
}

impl Bdev for FileBdev {
    fn info(&self) -> BdevInfo {
        self.info.clone()
    }

    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        match self.engine {
            FileEngine::Threads => self.thread_channel(),
            FileEngine::IoUring => {
                match uring::UringChannel::new(Arc::clone(&self.ctx), self.queue_depth, self.iopoll) {
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
