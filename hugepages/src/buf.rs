//! `Buf`: an exclusively owned, fixed-length, mutable byte buffer; pool-backed (page aligned) or heap-backed.

use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

use crate::pool::PoolInner;
use crate::region::Region;

/// Where a `Buf`'s memory lives and where it goes back on drop.
pub(crate) enum Backing {
    /// A `Vec` of the global allocator (`Buf::from_vec`).
    Heap(Vec<u8>),
    /// One buffer of a pool size class: `ptr` points at `class_size` bytes inside a slab region of `pool`.
    Pool {
        pool: Arc<PoolInner>,
        ptr: NonNull<u8>,
        class: usize,
        slab: u32,
        index: u32,
    },
    /// A dedicated region for a request larger than the pool's largest class.
    Large {
        pool: Arc<PoolInner>,
        region: Region,
    },
}

/// An exclusively owned, mutable, fixed-length byte buffer.
///
/// Pool buffers are page aligned (what `O_DIRECT` needs) and go back to their [`crate::BufPool`] when dropped;
/// [`Buf::freeze`] turns one into a refcounted [`Bytes`] whose memory goes back when the last clone drops.
/// The contents of a fresh pool buffer are unspecified (whatever the previous user left), like `malloc`.
pub struct Buf {
    len: usize,
    backing: Backing,
}

// SAFETY: a `Buf` is the only owner of its memory (a `Vec`, a `Region`, or one pool slot that the pool hands to a
// single `Buf` at a time), so moving it to another thread moves that ownership; `PoolInner` is `Sync`.
unsafe impl Send for Buf {}
// SAFETY: `&Buf` only exposes `&[u8]` (shared reads); all mutation needs `&mut Buf`.
unsafe impl Sync for Buf {}

impl Buf {
    pub(crate) fn from_backing(len: usize, backing: Backing) -> Buf {
        Buf { len, backing }
    }

    /// A heap-backed buffer owning `v` (tests, fallbacks, data that did not come from a pool).
    pub fn from_vec(v: Vec<u8>) -> Buf {
        Buf {
            len: v.len(),
            backing: Backing::Heap(v),
        }
    }

    /// A heap-backed buffer of `len` zero bytes.
    pub fn zeroed(len: usize) -> Buf {
        Buf::from_vec(vec![0; len])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the buffer to `len` bytes; no effect if `len >= self.len()`. The memory stays allocated.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
        }
    }

    /// Whether the memory came from a [`crate::BufPool`] (a size class or a dedicated large region).
    pub fn is_pooled(&self) -> bool {
        !matches!(self.backing, Backing::Heap(_))
    }

    /// Address of the first byte (pool buffers are page aligned).
    pub fn as_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }

    /// Address of the first byte, for writing (e.g. as a DMA or `io_uring` read target).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_slice().as_mut_ptr()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.backing {
            Backing::Heap(v) => v.get(..self.len).unwrap_or_default(),
            Backing::Large { region, .. } => region.as_slice().get(..self.len).unwrap_or_default(),
            Backing::Pool { ptr, .. } => {
                // SAFETY: `ptr` points at a pool slot of `class_size >= len` bytes inside a live slab region (the
                // `Arc<PoolInner>` keeps it mapped, and a slab is only unmapped when none of its slots is in use);
                // the slot belongs to this `Buf` alone; its bytes are initialized (zero-filled mmap memory, later
                // only written with initialized bytes).
                unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.len) }
            }
        }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        match &mut self.backing {
            Backing::Heap(v) => v.get_mut(..len).unwrap_or_default(),
            Backing::Large { region, .. } => {
                region.as_mut_slice().get_mut(..len).unwrap_or_default()
            }
            Backing::Pool { ptr, .. } => {
                // SAFETY: as in `as_slice`; `&mut self` makes this the only reference to the slot.
                unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) }
            }
        }
    }

    /// Turns the buffer into a shared, immutable, refcounted [`Bytes`]; the memory goes back to the pool when the
    /// last clone (or slice) of it is dropped.
    pub fn freeze(self) -> Bytes {
        if self.is_empty() && !self.is_pooled() {
            return Bytes::new();
        }
        Bytes::from_owner(self)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Heap(_) => {}
            Backing::Pool {
                pool,
                class,
                slab,
                index,
                ptr,
            } => pool.release(*class, *slab, *index, *ptr),
            Backing::Large { pool, region } => pool.release_large(region.mapped_len()),
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for Buf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl From<Vec<u8>> for Buf {
    fn from(v: Vec<u8>) -> Buf {
        Buf::from_vec(v)
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backing {
            Backing::Heap(_) => "heap",
            Backing::Pool { .. } => "pool",
            Backing::Large { .. } => "large",
        };
        f.debug_struct("Buf")
            .field("len", &self.len)
            .field("kind", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buf_basics() {
        let mut b = Buf::from_vec(vec![1, 2, 3, 4]);
        assert_eq!(b.len(), 4);
        assert!(!b.is_pooled());
        b[0] = 9;
        b.truncate(10);
        assert_eq!(&b[..], &[9, 2, 3, 4]);
        b.truncate(2);
        assert_eq!(&b[..], &[9, 2]);
        let bytes = b.freeze();
        assert_eq!(&bytes[..], &[9, 2]);
        assert!(Buf::zeroed(0).is_empty());
        assert!(Buf::zeroed(0).freeze().is_empty());
        assert_eq!(&Buf::zeroed(3)[..], &[0, 0, 0]);
    }
}
