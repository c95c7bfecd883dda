//! The dataplane's one `sys` module (architecture guide, unsafe policy): the time stamp counter, and the epoll and
//! eventfd calls of a reactor's interrupt mode. Everything else in the crate is safe code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The CPU's time stamp counter, or `None` where the architecture has none we trust.
#[inline]
pub(crate) fn rdtsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a model-specific counter and has no memory effects; every x86_64 CPU implements it
        // (callers only use it after checking /proc/cpuinfo for an invariant TSC).
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// A non-blocking eventfd used to wake a sleeping reactor.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) takes two integers; a negative result is turned into an error right below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor eventfd(2) has just returned and nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// Adds one to the counter (makes the fd readable). EAGAIN (counter saturated) means it is readable anyway.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which lives across the call, to a descriptor we own.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter to zero.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`, which lives across the call, from a descriptor we own.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An epoll instance (level triggered).
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// epoll_ctl operations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ctl {
    Add,
    Modify,
    Delete,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1(2) takes an integer flag; a negative result is an error.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor epoll_create1(2) has just returned and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; 64] })
    }

    /// Registers, changes or removes interest in `fd` (`readable`/`writable`), with `data` returned by `wait`.
    pub(crate) fn ctl(&self, op: Ctl, fd: RawFd, readable: bool, writable: bool, data: u64) -> io::Result<()> {
        let mut mask = 0u32;
        if readable {
            mask |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if writable {
            mask |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events: mask, u64: data };
        let op = match op {
            Ctl::Add => libc::EPOLL_CTL_ADD,
            Ctl::Modify => libc::EPOLL_CTL_MOD,
            Ctl::Delete => libc::EPOLL_CTL_DEL,
        };
        // SAFETY: `ev` lives across the call (the kernel ignores it for DEL); the epoll descriptor is ours and `fd`
        // is a descriptor number the kernel validates.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) for events; returns how many fds are ready.
    pub(crate) fn wait(&mut self, timeout_ms: i32) -> io::Result<usize> {
        let cap = self.events.len() as i32;
        // SAFETY: the kernel writes at most `cap` events into `self.events`, a live buffer of exactly that many
        // initialised elements.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_epoll() {
        let mut ep = Epoll::new().unwrap();
        let ev = EventFd::new().unwrap();
        ep.ctl(Ctl::Add, ev.raw(), true, false, 7).unwrap();
        assert_eq!(ep.wait(0).unwrap(), 0);
        ev.signal();
        assert_eq!(ep.wait(1000).unwrap(), 1);
        ev.drain();
        assert_eq!(ep.wait(0).unwrap(), 0);
        ep.ctl(Ctl::Delete, ev.raw(), false, false, 0).unwrap();
    }
}
