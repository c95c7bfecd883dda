//! `SharedRegion`: a [`Region`] that many threads read and write concurrently through `&self`, as a RAM disk
//! shared by the channels of several reactors needs.
//!
//! Soundness design (striped locks): the region is cut into stripes of `max(64 KiB, page size)` bytes, a power of
//! two, and stripe `s` is guarded by lock `s % locks.len()`. Every byte access happens while the lock of the
//! byte's stripe is held: shared for `read_at`, exclusive for `write_at` and `zero_range` (a kernel page release is
//! a write of zeros). An operation spanning several stripes handles them one after the other and holds one lock at
//! a time, so no lock order can deadlock. Consequently there is never an unsynchronized read/write or write/write
//! pair on the same byte, i.e. no data race in the Rust memory model, whatever the callers do.
//!
//! What callers see is the behaviour of a real disk: each stripe-sized piece of an I/O is atomic, but an I/O that
//! spans stripes is not atomic as a whole, so two overlapping concurrent writes can leave a mix of both in the
//! overlapped blocks (SBC-3 gives no ordering between concurrent commands either). Because stripes are at least a
//! page and are page aligned, `zero_range` can release whole pages under a single stripe lock.

use std::sync::{PoisonError, RwLock};

use crate::region::{Region, RegionError, RegionOptions};

const MIN_STRIPE: usize = 64 * 1024;
const MAX_LOCKS: usize = 4096;

/// A [`Region`] shared between threads, with range accessors that copy in and out under striped locks.
pub struct SharedRegion {
    region: Region,
    stripe_shift: u32,
    locks: Box<[RwLock<()>]>,
}

impl std::fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("region", &self.region)
            .field("stripe_size", &self.stripe_size())
            .field("locks", &self.locks.len())
            .finish()
    }
}

impl SharedRegion {
    /// Wraps `region` (its memory is accessed only through the locked accessors from now on).
    pub fn new(region: Region) -> SharedRegion {
        let stripe = MIN_STRIPE.max(region.page_size()).next_power_of_two();
        let stripes = region.len().div_ceil(stripe);
        let nlocks = stripes.clamp(1, MAX_LOCKS);
        let locks = (0..nlocks).map(|_| RwLock::new(())).collect();
        SharedRegion {
            region,
            stripe_shift: stripe.trailing_zeros(),
            locks,
        }
    }

    /// Maps a new region of `len` bytes (lazily committed, see [`Region`]) and wraps it.
    pub fn with_options(len: usize, opts: &RegionOptions) -> Result<SharedRegion, RegionError> {
        Ok(SharedRegion::new(Region::with_options(len, opts)?))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }

    /// Whether the memory is hugepage backed.
    pub fn is_huge(&self) -> bool {
        self.region.is_huge()
    }

    /// Page size of the underlying region.
    pub fn page_size(&self) -> usize {
        self.region.page_size()
    }

    /// Bytes covered by one lock stripe.
    pub fn stripe_size(&self) -> usize {
        1 << self.stripe_shift
    }

    /// Splits `[offset, offset+len)` at stripe boundaries and calls `f(lock, piece_offset, piece_len, done)` for
    /// each piece in order, `done` being the bytes of the range before the piece.
    fn pieces(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&RwLock<()>, usize, usize, usize),
    ) {
        let stripe = self.stripe_size();
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let stripe_idx = pos >> self.stripe_shift;
            let piece_end = ((stripe_idx + 1) * stripe).min(end);
            let lock = &self.locks[stripe_idx % self.locks.len()];
            f(lock, pos, piece_end - pos, pos - offset);
            pos = piece_end;
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), RegionError> {
        self.read_sparse(offset, dst, |_| true)
    }

    /// [`SharedRegion::read_at`] for a sparse user of the region that knows which pages hold data: the bytes of
    /// every page `p` (index in units of [`SharedRegion::page_size`]) for which `holds_data(p)` is false are written
    /// as zeros without reading the region's memory (a page never written is the kernel's zero page or, with
    /// hugepages, memory cleared at the first touch: either way zeros, at the price of a TLB miss or a cache miss
    /// per page when copied). `holds_data` is asked under the stripe's shared lock, so a caller that changes its
    /// answer only under the exclusive lock ([`SharedRegion::write_at_marked`], [`SharedRegion::zero_range_marked`])
    /// sees each stripe-sized piece whole, as with `read_at`.
    pub fn read_sparse(&self, offset: usize, dst: &mut [u8], holds_data: impl Fn(usize) -> bool) -> Result<(), RegionError> {
        self.region.check(offset, dst.len())?;
        let base = self.region.as_ptr();
        let page = self.page_size();
        self.pieces(offset, dst.len(), |lock, at, n, done| {
            let _guard = lock.read().unwrap_or_else(PoisonError::into_inner);
            let mut pos = at;
            while pos < at + n {
                let next = ((pos / page + 1) * page).min(at + n);
                let from = done + (pos - at);
                let out = &mut dst[from..from + (next - pos)];
                if holds_data(pos / page) {
                    // SAFETY: `pos..next` is inside the region (checked above) and `out` is a distinct `&mut`
                    // borrow of the same length (`SharedRegion` never hands out references into its memory, so they
                    // cannot overlap); the stripe's shared lock excludes concurrent writers of these bytes (module
                    // docs).
                    unsafe { std::ptr::copy_nonoverlapping(base.add(pos), out.as_mut_ptr(), out.len()) };
                } else {
                    out.fill(0);
                }
                pos = next;
            }
        });
        Ok(())
    }

    /// [`SharedRegion::write_at`] calling `mark(piece_offset, piece_len)` after copying each stripe-sized piece,
    /// still under the piece's exclusive lock (to record that the pages hold data, see
    /// [`SharedRegion::read_sparse`]).
    pub fn write_at_marked(&self, offset: usize, src: &[u8], mut mark: impl FnMut(usize, usize)) -> Result<(), RegionError> {
        self.region.check(offset, src.len())?;
        let base = self.region.as_ptr();
        self.pieces(offset, src.len(), |lock, at, n, done| {
            let _guard = lock.write().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: `at..at+n` is inside the region (checked above) and `done..done+n` inside `src`; the stripe's
            // exclusive lock excludes every other access to these bytes; `src` is a shared borrow of memory outside
            // the region's locked accessors (`SharedRegion` never hands out references into its memory), so the
            // ranges cannot overlap.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(done), base.add(at), n) };
            mark(at, n);
        });
        Ok(())
    }

    /// Copies `src` into the region starting at `offset`.
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<(), RegionError> {
        self.write_at_marked(offset, src, |_, _| {})
    }

    /// Zeroes `len` bytes at `offset`, releasing whole pages to the kernel. Returns the bytes released.
    pub fn zero_range(&self, offset: usize, len: usize) -> Result<usize, RegionError> {
        self.zero_range_marked(offset, len, |_, _| {})
    }

    /// [`SharedRegion::zero_range`] calling `mark(piece_offset, piece_len)` under each stripe-sized piece's
    /// exclusive lock before zeroing it (to record that its whole pages no longer hold data).
    pub fn zero_range_marked(&self, offset: usize, len: usize, mut mark: impl FnMut(usize, usize)) -> Result<usize, RegionError> {
        self.region.check(offset, len)?;
        let mut released = 0;
        self.pieces(offset, len, |lock, at, n, _| {
            let _guard = lock.write().unwrap_or_else(PoisonError::into_inner);
            mark(at, n);
            // SAFETY: in bounds (checked above); the exclusive stripe lock gives this thread sole access to the
            // piece, which lies within one stripe, and stripes are page aligned so any page released lies inside it.
            released += unsafe { self.region.discard_unchecked(at, n) };
        });
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn small(len: usize) -> SharedRegion {
        SharedRegion::with_options(len, &RegionOptions::small_pages()).expect("map")
    }

    #[test]
    fn write_read_across_stripes() {
        let r = small(1 << 20);
        let stripe = r.stripe_size();
        let data: Vec<u8> = (0..3 * stripe).map(|i| (i % 251) as u8).collect();
        r.write_at(stripe / 2, &data).expect("write");
        let mut back = vec![0u8; data.len()];
        r.read_at(stripe / 2, &mut back).expect("read");
        assert_eq!(back, data);
        let mut head = vec![1u8; stripe / 2];
        r.read_at(0, &mut head).expect("read");
        assert!(head.iter().all(|&b| b == 0));
    }

    #[test]
    fn out_of_range_is_refused_without_access() {
        let r = small(128 * 1024);
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            r.read_at(128 * 1024 - 4095, &mut buf),
            Err(RegionError::OutOfRange { .. })
        ));
        assert!(matches!(
            r.write_at(usize::MAX - 10, &buf),
            Err(RegionError::OutOfRange { .. })
        ));
        assert!(matches!(
            r.zero_range(1, 128 * 1024),
            Err(RegionError::OutOfRange { .. })
        ));
        r.read_at(128 * 1024 - 4096, &mut buf).expect("last 4 KiB");
        r.read_at(128 * 1024, &mut [])
            .expect("empty read at the end");
    }

    #[test]
    fn zero_range_releases_pages_and_zeroes() {
        let r = small(1 << 20);
        r.write_at(0, &vec![0xEE; 1 << 20]).expect("write");
        let released = r.zero_range(512, (1 << 20) - 1024).expect("zero");
        assert!(released >= (1 << 20) - 2 * r.page_size());
        let mut back = vec![0u8; 1 << 20];
        r.read_at(0, &mut back).expect("read");
        assert!(back[..512].iter().all(|&b| b == 0xEE));
        assert!(back[512..(1 << 20) - 512].iter().all(|&b| b == 0));
        assert!(back[(1 << 20) - 512..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn sparse_reads_zero_the_pages_said_empty_and_copy_the_others() {
        let r = small(1 << 20);
        let page = r.page_size();
        let stripe = r.stripe_size();
        // Data everywhere, but only the odd pages are said to hold it: the even ones must read as zeros, which
        // shows they were not read at all.
        let data: Vec<u8> = (0..4 * stripe).map(|i| (i % 251) as u8 | 1).collect();
        r.write_at(0, &data).expect("write");
        let from = page / 2;
        let mut back = vec![7u8; 2 * stripe + page];
        r.read_sparse(from, &mut back, |p| p % 2 == 1).expect("read");
        for (i, &b) in back.iter().enumerate() {
            let at = from + i;
            let want = if (at / page) % 2 == 1 { data[at] } else { 0 };
            assert_eq!(b, want, "byte {at}");
        }
        let mut beyond = vec![0u8; 2];
        assert!(r.read_sparse(r.len() - 1, &mut beyond, |_| true).is_err());
    }

    #[test]
    fn marked_writes_and_releases_report_every_piece() {
        let r = small(1 << 20);
        let stripe = r.stripe_size();
        let mut pieces = Vec::new();
        let data = vec![3u8; 2 * stripe];
        r.write_at_marked(stripe / 2, &data, |at, n| pieces.push((at, n))).expect("write");
        assert_eq!(pieces, vec![(stripe / 2, stripe / 2), (stripe, stripe), (2 * stripe, stripe / 2)]);
        pieces.clear();
        r.zero_range_marked(stripe, stripe + 10, |at, n| pieces.push((at, n))).expect("zero");
        assert_eq!(pieces, vec![(stripe, stripe), (2 * stripe, 10)]);
        let mut back = vec![9u8; 2 * stripe];
        r.read_at(stripe / 2, &mut back).expect("read");
        assert!(back[..stripe / 2].iter().all(|&b| b == 3));
        assert!(back[stripe / 2..stripe / 2 + stripe + 10].iter().all(|&b| b == 0));
        assert!(back[stripe / 2 + stripe + 10..].iter().all(|&b| b == 3));
    }

    #[test]
    fn concurrent_disjoint_writers_and_readers() {
        let r = Arc::new(small(4 << 20));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    let base = usize::from(t) << 20;
                    for round in 0..50u8 {
                        let fill = t.wrapping_mul(64).wrapping_add(round);
                        r.write_at(base, &vec![fill; 1 << 20]).expect("write");
                        let mut back = vec![0u8; 1 << 20];
                        r.read_at(base, &mut back).expect("read");
                        assert!(back.iter().all(|&b| b == fill), "thread {t} round {round}");
                        // Reads of another thread's quarter may see old or new data, never a torn 512-byte block
                        // inside one stripe.
                        let other = ((usize::from(t) + 1) % 4) << 20;
                        let mut peek = vec![0u8; 512];
                        r.read_at(other, &mut peek).expect("read other");
                        assert!(peek.iter().all(|&b| b == peek[0]));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }
}
