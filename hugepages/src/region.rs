//! `Region`: one mmap'ed memory area, backed by 2 MiB hugepages when the system has them.
//!
//! Anonymous regions are tried with `MAP_HUGETLB | MAP_HUGE_2MB` first. When that fails (no hugepages configured,
//! `vm.nr_hugepages = 0`, or too few free ones) and the policy allows it, the region falls back to ordinary 4 KiB
//! anonymous pages mapped with `MAP_NORESERVE`, and the first fallback in the process is logged with
//! `tracing::info!`. A region can instead be mapped from a file created (and immediately unlinked) in a directory,
//! normally a hugetlbfs mount, which is how DPDK/SPDK get hugepages of a chosen size.
//!
//! Commit behaviour: 4 KiB regions use `MAP_NORESERVE`, so a 1 GiB region costs no memory (and no overcommit
//! accounting) until its pages are touched. Hugetlb regions are deliberately mapped *without* `MAP_NORESERVE`: the
//! kernel then reserves the huge pages at `mmap` time, so a shortage shows up as an `mmap` error (and the 4 KiB
//! fallback) instead of a `SIGBUS` at first touch. The reservation takes pages from the hugetlb pool that the
//! administrator already set aside; the pages themselves are still only faulted in when touched.
//!
//! All `unsafe` of this module is the `mmap`/`munmap`/`madvise`/`fallocate`/`fstatfs` calls and the slice views.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Size of the hugepages tried for anonymous regions (x86-64 / arm64 default hugepage size).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// `HUGETLBFS_MAGIC` from `linux/magic.h`, the `f_type` of a hugetlbfs mount.
const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;

static FALLBACK_LOGGED: Once = Once::new();
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether a region should use hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePolicy {
    /// Try 2 MiB hugepages, fall back to 4 KiB pages (logged once per process).
    #[default]
    Prefer,
    /// Hugepages or an error ([`RegionError::HugeUnavailable`]).
    Require,
    /// Ordinary pages only.
    Never,
}

/// How to map a [`Region`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionOptions {
    /// Hugepage policy for anonymous regions (with `hugetlbfs_path`, only `Require` matters: it refuses a file
    /// that is not on hugetlbfs).
    pub huge: HugePolicy,
    /// Map a file instead of anonymous memory, normally on a hugetlbfs mount such as `/dev/hugepages` (the page
    /// size is then the mount's). A directory: a fresh file is created in it and unlinked at once, so the memory
    /// lives exactly as long as the region. A file path: that file is opened (created if missing, grown to the
    /// region size if shorter), locked with `flock` so no second region maps it, and kept, so its contents outlive
    /// the process (a RAM disk that survives a restart). Works on any filesystem with shared mappings (tmpfs,
    /// ext4), in which case the region is not huge.
    pub hugetlbfs_path: Option<PathBuf>,
}

impl RegionOptions {
    /// Options for ordinary 4 KiB pages only.
    pub fn small_pages() -> Self {
        RegionOptions {
            huge: HugePolicy::Never,
            hugetlbfs_path: None,
        }
    }
}

/// Errors of region mapping and access.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// A region of zero bytes was requested.
    #[error("a region must not be empty")]
    Empty,
    /// The length rounded up to the page size does not fit in `usize`.
    #[error("region length {0} is too large")]
    TooLarge(usize),
    /// `HugePolicy::Require` and the hugetlb mapping failed.
    #[error("2 MiB hugepages required but unavailable: {0}")]
    HugeUnavailable(#[source] io::Error),
    /// `mmap` failed.
    #[error("mmap of {len} bytes failed: {source}")]
    Map {
        /// Bytes requested from `mmap`.
        len: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating, locking or sizing the backing file failed.
    #[error("backing file {}: {source}", path.display())]
    File {
        /// The path given in [`RegionOptions::hugetlbfs_path`].
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An access outside the region.
    #[error("range {offset}+{len} is outside the region of {size} bytes")]
    OutOfRange {
        /// Start of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Length of the region.
        size: usize,
    },
}

/// An mmap'ed memory area owned exclusively by this value; unmapped on drop.
///
/// The memory starts zero-filled (anonymous or fresh-file mapping), so every byte is always initialized.
pub struct Region {
    ptr: NonNull<u8>,
    /// Length asked for; the slice accessors cover exactly this.
    len: usize,
    /// Length actually mapped (`len` rounded up to `page_size`).
    map_len: usize,
    page_size: usize,
    huge: bool,
    /// The backing file for file mappings (kept for `fallocate` on discard).
    file: Option<File>,
}

// SAFETY: `Region` owns its mapping exclusively (no other value refers to it) and has no thread-affine state; the
// mapping stays valid wherever the owner moves, and munmap may run on any thread.
unsafe impl Send for Region {}
// SAFETY: through `&Region` the memory is only exposed as `&[u8]` (shared reads) or as a raw pointer whose users
// must uphold their own synchronization (see `SharedRegion`); no `&self` method writes to the memory.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("page_size", &self.page_size)
            .field("huge", &self.huge)
            .field("file_backed", &self.file.is_some())
            .finish()
    }
}

/// The system's base page size.
pub fn system_page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

fn round_up(len: usize, align: usize) -> Result<usize, RegionError> {
    len.checked_next_multiple_of(align)
        .ok_or(RegionError::TooLarge(len))
}

/// One `mmap` call; returns the mapping or the OS error.
fn mmap_raw(len: usize, prot: i32, flags: i32, fd: i32) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping at an address chosen by the kernel (addr = NULL) cannot alias any existing Rust
    // object; the arguments are plain integers and the result is checked against MAP_FAILED.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

impl Region {
    /// Maps `len` bytes with the default options (hugepages preferred, 4 KiB fallback).
    pub fn new(len: usize) -> Result<Region, RegionError> {
        Region::with_options(len, &RegionOptions::default())
    }

    /// Maps `len` bytes as `opts` asks.
    pub fn with_options(len: usize, opts: &RegionOptions) -> Result<Region, RegionError> {
        if len == 0 {
            return Err(RegionError::Empty);
        }
        if let Some(dir) = &opts.hugetlbfs_path {
            let region = Region::map_file(len, dir)?;
            if opts.huge == HugePolicy::Require && !region.huge {
                return Err(RegionError::HugeUnavailable(io::Error::other(format!(
                    "{} is not a hugetlbfs mount",
                    dir.display()
                ))));
            }
            return Ok(region);
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        if opts.huge != HugePolicy::Never {
            let map_len = round_up(len, HUGE_PAGE_SIZE)?;
            // No MAP_NORESERVE here: see the module documentation (reservation turns a shortage into an mmap error
            // instead of a SIGBUS on first touch).
            let flags =
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB;
            match mmap_raw(map_len, prot, flags, -1) {
                Ok(ptr) => {
                    return Ok(Region {
                        ptr,
                        len,
                        map_len,
                        page_size: HUGE_PAGE_SIZE,
                        huge: true,
                        file: None,
                    });
                }
                Err(e) if opts.huge == HugePolicy::Require => {
                    return Err(RegionError::HugeUnavailable(e))
                }
                Err(e) => {
                    FALLBACK_LOGGED.call_once(|| {
                        tracing::info!(
                            error = %e,
                            "2 MiB hugepages unavailable (see vm.nr_hugepages); using 4 KiB pages for buffers and RAM disks"
                        );
                    });
                }
            }
        }
        let page_size = system_page_size();
        let map_len = round_up(len, page_size)?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let ptr = mmap_raw(map_len, prot, flags, -1).map_err(|source| RegionError::Map {
            len: map_len,
            source,
        })?;
        Ok(Region {
            ptr,
            len,
            map_len,
            page_size,
            huge: false,
            file: None,
        })
    }

    fn map_file(len: usize, path: &Path) -> Result<Region, RegionError> {
        let file_err = |source: io::Error| RegionError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = if path.is_dir() {
            let name = format!(
                "polltgt-{}-{}",
                std::process::id(),
                FILE_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let tmp = path.join(name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(file_err)?;
            // The mapping keeps the memory; the name is not needed (and must not outlive a crash).
            std::fs::remove_file(&tmp).map_err(file_err)?;
            file
        } else {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(file_err)?;
            // One mapping per named file: two regions over the same pages would let two owners write the same
            // memory without a common lock.
            // SAFETY: flock only acts on the fd, which is open for the duration of the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Err(file_err(io::Error::last_os_error()));
            }
            file
        };

        // SAFETY: `statfs` is plain old data; all-zero bytes are a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open for the duration of the call and `st` is a valid, writable statfs.
        let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
        if rc != 0 {
            return Err(file_err(io::Error::last_os_error()));
        }
        let huge = (st.f_type as u64 & 0xffff_ffff) == HUGETLBFS_MAGIC;
        let page_size = if huge && st.f_bsize > 0 {
            st.f_bsize as usize
        } else {
            system_page_size()
        };
        let map_len = round_up(len, page_size)?;
        let current = file.metadata().map_err(file_err)?.len();
        if current < map_len as u64 {
            file.set_len(map_len as u64).map_err(file_err)?;
        }
        let ptr = mmap_raw(
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
        )
        .map_err(|source| RegionError::Map {
            len: map_len,
            source,
        })?;
        Ok(Region {
            ptr,
            len,
            map_len,
            page_size,
            huge,
            file: Some(file),
        })
    }

    /// Start of the region (page aligned). Writing through it is the caller's responsibility.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (as requested; the mapping itself is rounded up to [`Region::page_size`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty regions cannot be created.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes actually mapped: [`Region::len`] rounded up to [`Region::page_size`].
    pub fn mapped_len(&self) -> usize {
        self.map_len
    }

    /// Whether the region is backed by hugepages (anonymous `MAP_HUGETLB` or a hugetlbfs file).
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Page size of the mapping (2 MiB for huge anonymous regions, 4 KiB otherwise).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The whole region as a byte slice.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping covers `map_len >= len` readable bytes for as long as `self` lives; the bytes are
        // initialized (zero-filled by the kernel, then only ever written with initialized values); `&self` excludes
        // `&mut` access through the safe API, and raw-pointer writers (`SharedRegion`) never hand out this slice.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole region as a mutable byte slice.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees this is the only live reference to the memory.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Zeroes `len` bytes at `offset`, giving whole pages back to the kernel (`madvise(MADV_DONTNEED)` for
    /// anonymous memory, `fallocate(PUNCH_HOLE)` for file mappings) and `memset`ting partial ones. Returns the
    /// number of bytes released to the kernel.
    pub fn discard(&mut self, offset: usize, len: usize) -> Result<usize, RegionError> {
        self.check(offset, len)?;
        // SAFETY: the range was checked to be inside the region, and `&mut self` gives exclusive access.
        Ok(unsafe { self.discard_unchecked(offset, len) })
    }

    /// Checks that `offset..offset+len` lies inside the region.
    pub(crate) fn check(&self, offset: usize, len: usize) -> Result<(), RegionError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(RegionError::OutOfRange {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Zeroes a range, releasing whole pages. Returns the bytes released.
    ///
    /// # Safety
    /// `offset..offset+len` must lie inside the region, and no other thread may access those bytes during the call
    /// (the caller holds `&mut self`, or the write locks that cover the range in `SharedRegion`).
    pub(crate) unsafe fn discard_unchecked(&self, offset: usize, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let end = offset + len;
        let ps = self.page_size;
        // Whole pages inside [offset, end).
        let first = offset.next_multiple_of(ps);
        let last = end - end % ps;
        let mut released = 0;
        if first < last && self.release_pages(first, last - first) {
            released = last - first;
            // SAFETY: caller's contract; both partial ranges are inside [offset, end).
            unsafe {
                self.zero_unchecked(offset, first - offset);
                self.zero_unchecked(last, end - last);
            }
        } else {
            // SAFETY: caller's contract.
            unsafe { self.zero_unchecked(offset, len) };
        }
        released
    }

    /// Gives page-aligned `[offset, offset+len)` back to the kernel; the range reads as zeros afterwards.
    /// Returns false (nothing changed) when the kernel refuses.
    fn release_pages(&self, offset: usize, len: usize) -> bool {
        if let Some(file) = &self.file {
            // SAFETY: fallocate on an fd we own; the range is inside the file (map_len bytes long). It changes the
            // file (and hence the shared mapping) only within the range the caller has exclusive access to.
            let rc = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            rc == 0
        } else {
            // SAFETY: the range is page aligned and inside our private anonymous mapping; MADV_DONTNEED replaces it
            // with zero-fill-on-demand pages, which is a write of zeros to memory the caller accesses exclusively.
            let rc = unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(offset).cast(),
                    len,
                    libc::MADV_DONTNEED,
                )
            };
            rc == 0
        }
    }

    /// # Safety
    /// Same contract as `discard_unchecked`.
    unsafe fn zero_unchecked(&self, offset: usize, len: usize) {
        if len > 0 {
            // SAFETY: in bounds and exclusively accessed per the caller's contract.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) };
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`map_len` are exactly what mmap returned; no reference into the mapping can outlive `self`
        // (slices borrow `self`, `Buf`s and `SharedRegion` own their `Region`).
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), len = self.map_len, "munmap failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_region_is_zeroed_writable_and_page_aligned() {
        let mut r = Region::new(10_000).expect("map");
        assert_eq!(r.len(), 10_000);
        assert!(!r.is_empty());
        assert_eq!(r.as_ptr() as usize % r.page_size(), 0);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        r.as_mut_slice()[9_999] = 7;
        assert_eq!(r.as_slice()[9_999], 7);
    }

    #[test]
    fn empty_region_is_refused() {
        assert!(matches!(Region::new(0), Err(RegionError::Empty)));
    }

    #[test]
    fn huge_fallback_gives_small_pages_when_no_hugepages() {
        // With vm.nr_hugepages = 0 (CI) the Prefer policy must fall back; with hugepages it must be huge.
        let r = Region::new(4 << 20).expect("map");
        let nr = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
        if nr.trim() == "0" {
            assert!(!r.is_huge());
            assert_eq!(r.page_size(), system_page_size());
            assert!(matches!(
                Region::with_options(
                    4 << 20,
                    &RegionOptions {
                        huge: HugePolicy::Require,
                        hugetlbfs_path: None
                    }
                ),
                Err(RegionError::HugeUnavailable(_))
            ));
        }
        if r.is_huge() {
            assert_eq!(r.page_size(), HUGE_PAGE_SIZE);
            assert_eq!(r.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
        }
        let small = Region::with_options(4 << 20, &RegionOptions::small_pages()).expect("map");
        assert!(!small.is_huge());
    }

    #[test]
    fn large_noreserve_region_maps_without_committing() {
        // 64 GiB of address space would fail with strict commit accounting without MAP_NORESERVE.
        let r = Region::with_options(64 << 30, &RegionOptions::small_pages()).expect("map 64 GiB");
        assert_eq!(r.len(), 64 << 30);
        assert_eq!(r.as_slice()[(64 << 30) - 1], 0);
    }

    #[test]
    fn discard_zeroes_whole_and_partial_pages() {
        let mut r = Region::with_options(64 * 1024, &RegionOptions::small_pages()).expect("map");
        let ps = r.page_size();
        r.as_mut_slice().fill(0xAB);
        // From the middle of page 1 to the middle of page 5: pages 2..5 released, halves memset.
        let released = r.discard(ps + ps / 2, 4 * ps).expect("discard");
        assert_eq!(released, 3 * ps);
        let s = r.as_slice();
        assert!(s[..ps + ps / 2].iter().all(|&b| b == 0xAB));
        assert!(s[ps + ps / 2..5 * ps + ps / 2].iter().all(|&b| b == 0));
        assert!(s[5 * ps + ps / 2..].iter().all(|&b| b == 0xAB));
        assert!(matches!(
            r.discard(60 * 1024, 8 * 1024),
            Err(RegionError::OutOfRange { .. })
        ));
    }

    #[test]
    fn discard_on_default_region_huge_or_not() {
        // Exercises MADV_DONTNEED on a hugetlb mapping when the machine has hugepages.
        let mut r = Region::new(4 << 20).expect("map");
        r.as_mut_slice().fill(0x11);
        let released = r.discard(0, 3 << 20).expect("discard");
        assert!(released == 3 << 20 || (r.is_huge() && released <= 2 << 20));
        assert!(r.as_slice()[..3 << 20].iter().all(|&b| b == 0));
        assert!(r.as_slice()[3 << 20..].iter().all(|&b| b == 0x11));
    }

    #[test]
    fn named_file_region_persists_and_is_exclusive() {
        let dir = std::env::temp_dir().join(format!("polltgt-region-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("ramdisk");
        let opts = RegionOptions {
            huge: HugePolicy::Prefer,
            hugetlbfs_path: Some(path.clone()),
        };
        {
            let mut r = Region::with_options(8192, &opts).expect("map");
            r.as_mut_slice()[100] = 42;
            // A second region over the same file is refused (flock).
            assert!(matches!(
                Region::with_options(8192, &opts),
                Err(RegionError::File { .. })
            ));
        }
        // The contents outlive the region; the file is reused.
        let r = Region::with_options(8192, &opts).expect("map again");
        assert_eq!(r.as_slice()[100], 42);
        assert!(matches!(
            Region::with_options(
                8192,
                &RegionOptions {
                    huge: HugePolicy::Require,
                    hugetlbfs_path: Some(dir.join("other")),
                }
            ),
            Err(RegionError::HugeUnavailable(_))
        ));
        drop(r);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Counts `tracing` events on the current thread.
    struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for Counter {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn fallback_is_logged_at_most_once() {
        let count = |f: &dyn Fn() -> Region| {
            let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let r = tracing::subscriber::with_default(Counter(n.clone()), f);
            (r, n.load(Ordering::Relaxed))
        };
        let map = || Region::new(1 << 21).expect("map");
        // The first fallback of the process may happen on this thread (one line) or another test's (none here).
        let (r, n) = count(&|| {
            let _a = map();
            map()
        });
        if r.is_huge() {
            assert_eq!(n, 0, "no fallback, no log line");
            return;
        }
        assert!(n <= 1, "{n} fallback lines");
        assert!(FALLBACK_LOGGED.is_completed());
        // From now on, fallbacks are silent.
        let (_, n) = count(&|| {
            let _a = map();
            map()
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn file_backed_region_maps_and_discards() {
        let dir = std::env::temp_dir();
        let opts = RegionOptions {
            huge: HugePolicy::Prefer,
            hugetlbfs_path: Some(dir.clone()),
        };
        let mut r = Region::with_options(3 * 4096 + 1, &opts).expect("map file");
        assert_eq!(r.len(), 3 * 4096 + 1);
        r.as_mut_slice().fill(1);
        let ps = r.page_size();
        let released = r.discard(0, 2 * ps).expect("discard");
        assert_eq!(released, 2 * ps);
        assert!(r.as_slice()[..2 * ps].iter().all(|&b| b == 0));
        assert!(r.as_slice()[2 * ps..].iter().all(|&b| b == 1));
        // The backing file was unlinked right away.
        let leftover = std::fs::read_dir(&dir)
            .expect("readdir")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("polltgt-{}-", std::process::id()))
            });
        assert!(!leftover);
    }
}
