//! Hugepage-backed memory for polltgt: mmap'ed [`Region`]s (2 MiB hugepages with a 4 KiB fallback), a
//! [`SharedRegion`] that several reactor threads may read and write concurrently (RAM disks), and an SGV-style
//! [`BufPool`] handing out page-aligned [`Buf`]s in power-of-two size classes.
//!
//! All of the crate's `unsafe` lives in `region`, `shared`, `buf` and `pool`; each block states why it is sound.
//! See docs/design.md, "Data buffers".

mod buf;
mod cache;
mod pool;
mod region;
mod shared;

pub use buf::Buf;
pub use pool::{BufPool, ClassStats, PoolConfig, PoolError, PoolStats};
pub use region::{
    system_page_size, HugePolicy, Region, RegionError, RegionOptions, HUGE_PAGE_SIZE,
};
pub use shared::SharedRegion;
