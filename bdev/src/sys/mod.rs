//! The crate's system interface: block-device ioctls, `fallocate`, and the io_uring ring wrapper (`uring`).
//! With `uring`, this is the only place in the crate with `unsafe`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub(crate) mod uring;

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: device size in bytes (`linux/fs.h`).
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
))]
const BLKGETSIZE64: u32 = 0x4008_1272;
/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: device size in bytes (`linux/fs.h`).
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
)))]
const BLKGETSIZE64: u32 = 0x8008_1272;

/// Size in bytes of the block device open as `file`.
pub(crate) fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live, writable u64; the fd is
    // open for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            BLKGETSIZE64 as libc::Ioctl,
            &mut size as *mut u64,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Logical block (sector) size of the block device open as `file` (`BLKSSZGET`).
pub(crate) fn logical_block_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live, writable c_int.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::BLKSSZGET,
            &mut size as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size).map_err(|_| io::Error::other("negative logical block size"))
}

/// `fallocate(2)` on `file` with `mode` (FALLOC_FL_* flags).
pub(crate) fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: fallocate only reads its integer arguments and acts on the fd, which stays open during the call;
        // it touches no memory of this process.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Where the next data (`data = true`, `SEEK_DATA`) or hole (`SEEK_HOLE`) of `file` starts at or after `offset`.
/// `Ok(None)` when there is no data at or after `offset` (`ENXIO`); with `SEEK_HOLE` the end of the file counts as
/// a hole.
pub(crate) fn seek_data_hole(file: &File, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: lseek only reads its integer arguments and acts on the fd, which stays open during the call. The file
    // position it moves is not used by any other I/O of the crate (they are all positional: pread/pwrite, io_uring
    // with explicit offsets, fallocate).
    let rc = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(rc as u64))
}

/// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`: deallocate, reads return zeros (SBC-3 UNMAP with LBPRZ).
pub(crate) const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
/// `FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE`: zero without writing data blocks.
pub(crate) const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// Whether an `fallocate` error means "this file or device cannot do that mode" (so write zeros instead).
pub(crate) fn fallocate_unsupported(errno: i32) -> bool {
    errno == libc::EOPNOTSUPP || errno == libc::ENOSYS || errno == libc::ENOTTY
}

/// Major and minor numbers of a `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor` encoding).
pub(crate) fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_decode() {
        // glibc's makedev.
        fn makedev(major: u64, minor: u64) -> u64 {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        }
        assert_eq!(dev_major_minor(0x801), (8, 1));
        for (ma, mi) in [(8, 1), (259, 65536), (254, 3), (4095, 0xfffff)] {
            assert_eq!(dev_major_minor(makedev(ma, mi)), (ma, mi));
        }
    }

    #[test]
    fn ioctls_fail_cleanly_on_regular_files() {
        let f = tempfile::tempfile().expect("tempfile");
        assert!(block_device_size(&f).is_err());
        assert!(logical_block_size(&f).is_err());
    }

    #[test]
    fn fallocate_punches_holes() {
        use std::os::unix::fs::FileExt;
        let f = tempfile::tempfile().expect("tempfile");
        f.write_all_at(&[0xAA; 16384], 0).expect("write");
        match fallocate(&f, PUNCH_HOLE, 4096, 8192) {
            Ok(()) => {
                let mut back = [0u8; 16384];
                f.read_exact_at(&mut back, 0).expect("read");
                assert!(back[..4096].iter().all(|&b| b == 0xAA));
                assert!(back[4096..12288].iter().all(|&b| b == 0));
                assert!(back[12288..].iter().all(|&b| b == 0xAA));
                assert_eq!(f.metadata().expect("meta").len(), 16384, "KEEP_SIZE");
            }
            Err(e) => assert!(fallocate_unsupported(e.raw_os_error().unwrap_or(0)), "{e}"),
        }
        assert!(fallocate(&f, PUNCH_HOLE, u64::MAX, 1).is_err());
    }
}
