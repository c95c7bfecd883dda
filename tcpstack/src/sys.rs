//! The one place of this crate that calls the C library directly: creating a listening socket with options that
//! must be set before bind(2), which `std::net::TcpListener::bind` offers no hook for.
//!
//! - `SO_REUSEADDR`, so a restarted target can bind its portal while connections of the previous instance are in
//!   TIME_WAIT.
//! - `IPV6_V6ONLY` on IPv6 sockets, so `[::]:3260` and `0.0.0.0:3260` can be two portals side by side instead of the
//!   IPv6 wildcard also claiming the IPv4 port (Linux's default with `net.ipv6.bindv6only = 0`).
//! - `SOCK_NONBLOCK | SOCK_CLOEXEC` from the start.
//!
//! Also the receive into uninitialised buffer space ([`readv_split`]: no zero-filling of a receive buffer before
//! every read) and the MSG_ZEROCOPY transmit calls (`zerocopy` functions below).

use std::io;
use std::mem::{size_of, size_of_val};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::BytesMut;

/// Creates a non-blocking TCP socket for `addr`, sets the options above, binds it and starts listening.
pub(crate) fn listen_socket(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) takes only integer arguments; a negative result is turned into an error right below.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor socket(2) has just returned; nothing else owns it, so OwnedFd may close it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if addr.is_ipv6() {
        set_int_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    bind(&fd, addr)?;
    // SAFETY: listen(2) takes a descriptor we own (valid for the duration of the call) and an integer.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// setsockopt(2) with an `int` value.
fn set_int_option(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value pointer refers to `value`, which lives across the call, and the length passed is
    // exactly its size; the descriptor is owned by the caller and open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// bind(2) to an IPv4 or IPv6 socket address.
fn bind(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let rc = match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                // The octets are already in network order; keep them in memory order.
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the address pointer refers to a fully initialised sockaddr_in on the stack that outlives the
            // call, and the length passed is its size.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast::<libc::sockaddr>(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, with a fully initialised sockaddr_in6 and its size.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast::<libc::sockaddr>(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// readv(2) into `first`, then into up to `rest_max` bytes of `rest`'s spare capacity (which is reserved first);
/// bytes that land in `rest` extend its length. Returns the number of bytes read (0: end of stream).
pub(crate) fn readv_split(fd: RawFd, first: &mut [u8], rest: &mut BytesMut, rest_max: usize) -> io::Result<usize> {
    rest.reserve(rest_max);
    let spare = rest.spare_capacity_mut();
    let rest_len = spare.len().min(rest_max);
    let iov = [
        libc::iovec { iov_base: first.as_mut_ptr().cast(), iov_len: first.len() },
        libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: rest_len },
    ];
    // SAFETY: both iovecs describe writable memory we hold exclusive borrows of for the duration of the call: an
    // initialised slice, and `rest_len <= spare.len()` bytes of `rest`'s allocated spare capacity (writing
    // uninitialised capacity is fine; it is only read after `set_len` below covers exactly what the kernel wrote).
    // The raw system call, not libc's readv(): that one is a thread cancellation point and brackets every call with
    // __pthread_enable/disable_asynccancel, a few percent of a polling reactor that asks an idle socket each loop
    // (polltgt never cancels threads).
    let n = unsafe { libc::syscall(libc::SYS_readv, fd, iov.as_ptr(), 2 as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    let into_rest = n.saturating_sub(first.len()).min(rest_len);
    // SAFETY: the kernel initialised the first `into_rest` bytes of the spare capacity (readv fills the iovecs in
    // order, and `into_rest` is what went past `first`), and they are within the reserved capacity.
    unsafe { rest.set_len(rest.len() + into_rest) };
    Ok(n)
}

/// `SO_ZEROCOPY` (asm-generic/socket.h; not in the libc crate).
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel fell back to copying for this range (e.g. loopback).
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Allows MSG_ZEROCOPY sends on a TCP socket (Linux 4.14+).
pub(crate) fn enable_zerocopy(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value pointer refers to `one`, alive across the call, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&one as *const libc::c_int).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sendmsg(2) of `bufs` with MSG_ZEROCOPY: the kernel pins the pages instead of copying them, and the caller must
/// keep the memory unchanged until the send's notification arrives on the error queue.
pub(crate) fn send_zerocopy(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is a valid "no address, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI compatible with `iovec` on Unix (documented by std).
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs.len()` live iovecs describing readable memory borrowed for the call; no address
    // or control buffer is passed.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_ZEROCOPY | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads every pending MSG_ZEROCOPY notification from the socket's error queue: `f(lo, hi, copied)` for each
/// range of send ids [lo, hi] the kernel no longer needs, `copied` when it had copied the data after all.
pub(crate) fn zerocopy_notifications(fd: RawFd, mut f: impl FnMut(u32, u32, bool)) -> io::Result<()> {
    loop {
        let mut control = [0u64; 16];
        // SAFETY: an all-zero msghdr is valid; the control buffer is set right below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `msg` describes a live, writable control buffer of the size given and no data iovecs; the kernel
        // writes at most `msg_controllen` bytes of control messages.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR only walk headers inside its control
        // buffer (bounded by msg_controllen) and return null at the end.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` is non-null and points at a complete header inside `control` (see above).
            let (level, ty) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
            let recverr = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
            if recverr {
                // SAFETY: an IP(V6)_RECVERR control message carries a sock_extended_err as its data; the kernel
                // wrote the whole struct (it fits: control messages are only returned complete). read_unaligned
                // copes with the data's alignment.
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>()) };
                if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY && ee.ee_errno == 0 {
                    f(ee.ee_info, ee.ee_data, ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0);
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
}
