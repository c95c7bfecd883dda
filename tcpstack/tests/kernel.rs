//! The kernel backend over loopback (IPv4 and IPv6, port 0), with std blocking sockets as the peers.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use polltgt_tcpstack::{
    Accepted, KernelBackend, KernelConn, KernelListener, RecvStatus, TcpBackend, TcpConnection,
    TcpError,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn v6() -> SocketAddr {
    "[::1]:0".parse().unwrap()
}

/// Polls `accept` until a connection shows up.
fn accept_one(listener: &mut KernelListener) -> Accepted {
    let start = Instant::now();
    loop {
        if let Some(a) = listener.accept().unwrap() {
            return a;
        }
        assert!(start.elapsed() < DEADLINE, "no connection accepted");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polls `recv` until `want` bytes arrived or the peer closed.
fn recv_exact(conn: &mut KernelConn, want: usize) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match conn.recv(&mut buf).unwrap() {
            RecvStatus::Data(n) => out.extend_from_slice(&buf[..n]),
            RecvStatus::WouldBlock => thread::sleep(Duration::from_millis(1)),
            RecvStatus::Closed => panic!("closed after {} of {want} bytes", out.len()),
        }
        assert!(start.elapsed() < DEADLINE, "timed out receiving");
    }
    out
}

/// A thread reading `total` bytes from `client` in pieces of `step`, pausing between them (a slow peer, so the
/// sender's socket fills up); joins to the bytes read.
fn slow_reader(mut client: TcpStream, total: usize, step: usize) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = vec![0u8; total];
        let mut at = 0;
        while at < total {
            let end = (at + step).min(total);
            client.read_exact(&mut got[at..end]).unwrap();
            at = end;
            thread::sleep(Duration::from_micros(200));
        }
        got
    })
}

/// Flushes until everything is written, collecting completed tags on the way.
fn flush_all(conn: &mut KernelConn, done: &mut Vec<u64>) {
    let start = Instant::now();
    while !conn.flush().unwrap() {
        conn.poll_send_complete(done);
        assert!(start.elapsed() < DEADLINE, "timed out flushing");
        thread::sleep(Duration::from_millis(1));
    }
    conn.poll_send_complete(done);
}

/// A buffer owner that counts its drops, to see when the stack releases a chain's memory.
struct Tracked {
    data: Vec<u8>,
    drops: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked(data: Vec<u8>, drops: &Arc<AtomicUsize>) -> Bytes {
    Bytes::from_owner(Tracked {
        data,
        drops: Arc::clone(drops),
    })
}

/// Byte `i` of the test stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

fn accept_and_echo(addr: SocketAddr) {
    let mut listener = KernelListener::bind(addr).unwrap();
    let bound = listener.local_addr();
    assert_ne!(bound.port(), 0);
    assert!(listener.accept().unwrap().is_none(), "nothing pending yet");

    let mut client = TcpStream::connect(bound).unwrap();
    let Accepted {
        mut conn,
        peer,
        local,
    } = accept_one(&mut listener);
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(local, bound);
    assert_eq!(conn.peer_addr(), peer);
    assert!(listener.accept().unwrap().is_none());

    let mut buf = [0u8; 64];
    assert_eq!(conn.recv(&mut buf).unwrap(), RecvStatus::WouldBlock);

    client.write_all(b"hello, target").unwrap();
    let got = recv_exact(&mut conn, 13);
    assert_eq!(got, b"hello, target");

    conn.send_chain(vec![Bytes::from_static(b"echo: "), Bytes::from(got)], 77);
    assert_eq!(conn.queued_bytes(), 19);
    let mut done = Vec::new();
    conn.poll_send_complete(&mut done);
    assert!(done.is_empty(), "nothing completes before a flush");
    flush_all(&mut conn, &mut done);
    assert_eq!(done, vec![77]);
    assert_eq!(conn.queued_bytes(), 0);

    let mut reply = [0u8; 19];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"echo: hello, target");

    let stats = conn.stats();
    assert_eq!(stats.bytes_received, 13);
    assert_eq!(stats.bytes_sent, 19);
    assert_eq!(stats.chains_queued, 1);
    assert_eq!(stats.chains_completed, 1);
}

#[test]
fn accept_and_echo_ipv4() {
    accept_and_echo(v4());
}

#[test]
fn accept_and_echo_ipv6() {
    accept_and_echo(v6());
}

#[test]
fn large_chains_to_a_slow_reader_complete_in_order_after_partial_writes() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    // 24 MiB in 12 chains of odd-sized buffers: far more than the socket buffers hold, so writes are partial,
    // also in the middle of buffers.
    let drops = Arc::new(AtomicUsize::new(0));
    let mut offset = 0usize;
    let mut total_bufs = 0usize;
    let mut chain_ends = Vec::new();
    for chain_no in 0..12u64 {
        let mut chain = Vec::new();
        let mut chain_len = 0;
        while chain_len < 2 << 20 {
            let len = 1 + (offset * 7 + 4093) % 65_521;
            chain.push(tracked(
                (offset..offset + len).map(pattern).collect(),
                &drops,
            ));
            offset += len;
            chain_len += len;
            total_bufs += 1;
        }
        chain_ends.push(offset);
        conn.send_chain(chain, 1000 + chain_no);
    }
    let total = offset;
    assert_eq!(conn.queued_bytes(), total);

    // Nobody reads yet: the socket fills up and the flush stops with data left.
    assert!(
        !conn.flush().unwrap(),
        "24 MiB cannot fit into the socket buffers"
    );
    let written = conn.stats().bytes_sent as usize;
    assert!(written > 0 && written < total);
    assert_eq!(conn.queued_bytes(), total - written);
    let mut done = Vec::new();
    conn.poll_send_complete(&mut done);
    // Exactly the chains wholly written have completed, and only their buffers were released.
    let whole = chain_ends.iter().filter(|&&end| end <= written).count();
    assert_eq!(
        done,
        (0..whole as u64).map(|i| 1000 + i).collect::<Vec<_>>()
    );
    assert!(drops.load(Ordering::SeqCst) < total_bufs);
    assert!(!conn.flush().unwrap(), "still full");

    let reader = slow_reader(client, total, 100_000);
    flush_all(&mut conn, &mut done);
    assert_eq!(done, (1000..1012).collect::<Vec<u64>>());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        total_bufs,
        "every buffer released at completion"
    );
    assert_eq!(conn.queued_bytes(), 0);
    let stats = conn.stats();
    assert_eq!(stats.bytes_sent as usize, total);
    assert_eq!(stats.chains_completed, 12);
    assert!(stats.send_stalls >= 2);

    let got = reader.join().unwrap();
    let first_bad = got.iter().enumerate().position(|(i, &b)| b != pattern(i));
    assert_eq!(first_bad, None, "stream corrupted");
}

#[test]
fn completion_reports_tags_in_queue_order_including_empty_chains() {
    let mut listener = KernelListener::bind(v6()).unwrap();
    let mut client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    let mut done = Vec::new();
    // An empty chain alone completes at the next flush.
    conn.send_chain(Vec::new(), 5);
    assert!(conn.flush().unwrap());
    conn.poll_send_complete(&mut done);
    assert_eq!(done, vec![5]);
    done.clear();

    conn.send_chain(
        vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
        ],
        42,
    );
    conn.send_chain(vec![Bytes::new()], 7);
    conn.send_chain(vec![Bytes::from_static(b"def")], 42);
    conn.send_chain(Vec::new(), u64::MAX);
    conn.send_chain(vec![Bytes::from_static(b"g")], 0);
    assert_eq!(conn.queued_bytes(), 7);
    flush_all(&mut conn, &mut done);
    assert_eq!(done, vec![42, 7, 42, u64::MAX, 0]);
    conn.poll_send_complete(&mut done);
    assert_eq!(done.len(), 5, "tags are reported once");

    let mut got = [0u8; 7];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abcdefg");
}

#[test]
fn peer_close_is_reported_as_closed_and_later_sends_fail_with_reset() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let mut client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    client.write_all(b"bye").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(recv_exact(&mut conn, 3), b"bye");
    let start = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match conn.recv(&mut buf).unwrap() {
            RecvStatus::Closed => break,
            RecvStatus::WouldBlock => thread::sleep(Duration::from_millis(1)),
            RecvStatus::Data(n) => panic!("unexpected {n} bytes"),
        }
        assert!(start.elapsed() < DEADLINE);
    }
    assert_eq!(
        conn.recv(&mut buf).unwrap(),
        RecvStatus::Closed,
        "Closed is sticky"
    );

    // Half-closed: the target can still answer.
    conn.send_chain(vec![Bytes::from_static(b"logout response")], 1);
    let mut done = Vec::new();
    flush_all(&mut conn, &mut done);
    assert_eq!(done, vec![1]);
    let mut reply = [0u8; 15];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"logout response");
    drop(client);

    // Once the peer is fully gone, writes fail: the first one draws an RST, later ones see ECONNRESET/EPIPE.
    let start = Instant::now();
    let err = loop {
        conn.send_chain(vec![Bytes::from_static(b"are you there?")], 2);
        match conn.flush() {
            Ok(_) => thread::sleep(Duration::from_millis(5)),
            Err(err) => break err,
        }
        assert!(
            start.elapsed() < DEADLINE,
            "writes to a closed peer never failed"
        );
    };
    assert!(matches!(err, TcpError::Reset), "{err:?}");
}

#[test]
fn reset_by_peer_is_an_error_on_recv() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;
    // Unread data in the client's receive queue at close makes the kernel send RST instead of FIN.
    conn.send_chain(vec![Bytes::from_static(b"unread")], 1);
    let mut done = Vec::new();
    flush_all(&mut conn, &mut done);
    thread::sleep(Duration::from_millis(20));
    drop(client);
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let err = loop {
        match conn.recv(&mut buf) {
            Ok(RecvStatus::WouldBlock) => thread::sleep(Duration::from_millis(1)),
            Ok(other) => panic!("expected a reset, got {other:?}"),
            Err(err) => break err,
        }
        assert!(start.elapsed() < DEADLINE);
    };
    assert!(matches!(err, TcpError::Reset), "{err:?}");
}

#[test]
fn shutdown_releases_queued_chains_and_closes_both_directions() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let mut client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    let drops = Arc::new(AtomicUsize::new(0));
    for tag in 0..4 {
        conn.send_chain(vec![tracked(vec![0x5a; 8 << 20], &drops)], tag);
    }
    assert!(!conn.flush().unwrap());
    let mut done = Vec::new();
    conn.poll_send_complete(&mut done);
    assert_eq!(
        done,
        Vec::<u64>::new(),
        "no 8 MiB chain fits into the socket"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 0);

    conn.shutdown();
    conn.poll_send_complete(&mut done);
    assert_eq!(done, vec![0, 1, 2, 3]);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    assert_eq!(conn.queued_bytes(), 0);
    let mut buf = [0u8; 8];
    assert_eq!(conn.recv(&mut buf).unwrap(), RecvStatus::Closed);
    conn.send_chain(vec![tracked(vec![1; 10], &drops)], 9);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
    assert!(conn.flush().unwrap());
    done.clear();
    conn.poll_send_complete(&mut done);
    assert_eq!(done, vec![9]);

    // The client sees the end of the stream after what had been written.
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match client.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
            Err(err) => panic!("{err}"),
        }
    }
}

#[test]
fn many_connections_each_get_their_own_echo() {
    const N: usize = 64;
    let mut listener = KernelListener::bind(v4()).unwrap();
    let addr = listener.local_addr();
    let mut clients: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut conns = Vec::new();
    while conns.len() < N {
        conns.push(accept_one(&mut listener).conn);
    }
    assert!(listener.accept().unwrap().is_none());

    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i:03}").as_bytes()).unwrap();
    }
    // Serve all connections from one polling loop, as a reactor does.
    let mut echoed = vec![0usize; N];
    let mut buf = [0u8; 64];
    let start = Instant::now();
    while echoed.iter().any(|&n| n < 10) {
        for (i, conn) in conns.iter_mut().enumerate() {
            if let RecvStatus::Data(n) = conn.recv(&mut buf).unwrap() {
                conn.send_chain(vec![Bytes::copy_from_slice(&buf[..n])], i as u64);
                echoed[i] += n;
            }
            conn.flush().unwrap();
        }
        assert!(start.elapsed() < DEADLINE);
    }
    let by_peer: std::collections::HashMap<SocketAddr, usize> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.peer_addr(), i))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = [0u8; 10];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, *format!("client {i:03}").as_bytes());
        assert!(by_peer.contains_key(&c.local_addr().unwrap()));
    }
    for conn in &mut conns {
        let mut done = Vec::new();
        conn.poll_send_complete(&mut done);
        assert!(!done.is_empty());
        let tag = done[0];
        assert!(
            done.iter().all(|&t| t == tag),
            "tags belong to their connection"
        );
    }
}

#[test]
fn ipv4_and_ipv6_portals_share_a_port() {
    let l4 = KernelListener::bind(v4()).unwrap();
    let port = l4.local_addr().port();
    // Without IPV6_V6ONLY the IPv6 wildcard would also claim the IPv4 port and fail with EADDRINUSE.
    let l6 = KernelListener::bind(SocketAddr::new("::".parse().unwrap(), port)).unwrap();
    assert_eq!(l6.local_addr().port(), port);

    let mut backend = KernelBackend::new();
    let a4 = backend.listen(v4()).unwrap();
    let a6 = backend
        .listen(SocketAddr::new("::1".parse().unwrap(), a4.port()))
        .unwrap();
    assert_eq!(backend.local_addrs(), vec![a4, a6]);
    assert!(backend.accept().unwrap().is_none());
    let _c4 = TcpStream::connect(a4).unwrap();
    let _c6 = TcpStream::connect(a6).unwrap();
    let mut locals = Vec::new();
    let start = Instant::now();
    while locals.len() < 2 {
        if let Some(a) = backend.accept().unwrap() {
            assert_eq!(a.conn.local_addr(), a.local);
            locals.push(a.local);
        }
        assert!(start.elapsed() < DEADLINE);
    }
    locals.sort();
    let mut want = vec![a4, a6];
    want.sort();
    assert_eq!(locals, want);
}

#[test]
fn rebinding_with_connections_in_time_wait_succeeds() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let addr = listener.local_addr();
    let mut client = TcpStream::connect(addr).unwrap();
    let mut conn = accept_one(&mut listener).conn;
    // The target closes first, so its side of the connection (on the portal port) goes to TIME_WAIT.
    conn.shutdown();
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    drop(client);
    drop(conn);
    drop(listener);
    thread::sleep(Duration::from_millis(50));
    let again = KernelListener::bind(addr).expect("SO_REUSEADDR lets the portal be bound again");
    assert_eq!(again.local_addr(), addr);
}

#[test]
fn binding_a_busy_address_names_it() {
    let listener = KernelListener::bind(v4()).unwrap();
    let addr = listener.local_addr();
    let err = KernelListener::bind(addr).unwrap_err();
    match &err {
        TcpError::Listen { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), ErrorKind::AddrInUse);
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with(&format!("cannot listen on {addr}: ")));
}

#[test]
fn generic_code_drives_the_kernel_backend_through_the_traits() {
    fn echo_once<B: TcpBackend>(backend: &mut B, addr: SocketAddr) {
        let mut client = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut accepted = loop {
            if let Some(a) = backend.accept().unwrap() {
                break a;
            }
            assert!(start.elapsed() < DEADLINE);
        };
        client.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        let start = Instant::now();
        while accepted.conn.recv(&mut buf).unwrap() != RecvStatus::Data(1) {
            assert!(start.elapsed() < DEADLINE);
        }
        accepted.conn.send_chain(vec![Bytes::from_static(b"y")], 3);
        while !accepted.conn.flush().unwrap() {}
        let mut done = Vec::new();
        accepted.conn.poll_send_complete(&mut done);
        assert_eq!(done, vec![3]);
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"y");
    }
    let mut backend = KernelBackend::new();
    let addr = backend.listen(v6()).unwrap();
    echo_once(&mut backend, addr);
}

#[test]
fn small_buffers_are_gathered_into_one_write_and_arrive_in_order() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let mut client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    // Eight responses of a 48-byte header and 4 KiB of data: 33 KiB in 16 buffers, below GATHER_MAX.
    let mut offset = 0usize;
    for tag in 0..8u64 {
        let mut chain = Vec::new();
        for len in [48usize, 4096] {
            chain.push(Bytes::from((offset..offset + len).map(pattern).collect::<Vec<u8>>()));
            offset += len;
        }
        conn.send_chain(chain, tag);
    }
    let mut done = Vec::new();
    flush_all(&mut conn, &mut done);
    assert_eq!(done, (0..8).collect::<Vec<u64>>());
    let stats = conn.stats();
    assert_eq!(stats.gathered_writes, 1, "one write(2) for the 16 buffers");
    assert_eq!(stats.bytes_copied as usize, offset);

    // One buffer alone, or more than GATHER_MAX bytes, goes out as it is.
    conn.send_chain(vec![Bytes::from((offset..offset + 100).map(pattern).collect::<Vec<u8>>())], 8);
    offset += 100;
    let big = polltgt_tcpstack::kernel::GATHER_MAX / 2 + 1;
    let chain = (0..2)
        .map(|i| Bytes::from((offset + i * big..offset + (i + 1) * big).map(pattern).collect::<Vec<u8>>()))
        .collect();
    offset += 2 * big;
    conn.send_chain(chain, 9);
    flush_all(&mut conn, &mut done);
    assert_eq!(conn.stats().gathered_writes, 1);

    let mut got = vec![0u8; offset];
    client.read_exact(&mut got).unwrap();
    let first_bad = got.iter().enumerate().position(|(i, &b)| b != pattern(i));
    assert_eq!(first_bad, None, "stream corrupted");
}

#[test]
fn gathered_writes_to_a_slow_reader_stay_in_order_across_partial_writes() {
    let mut listener = KernelListener::bind(v4()).unwrap();
    let client = TcpStream::connect(listener.local_addr()).unwrap();
    let mut conn = accept_one(&mut listener).conn;

    // 16 MiB in chains of small odd-sized buffers: every write offers at most MAX_IOV of them (well below
    // GATHER_MAX), so the gathered writes are the ones the full socket cuts short, in the middle of buffers.
    let mut offset = 0usize;
    let mut tag = 0u64;
    while offset < 16 << 20 {
        let chain = (0..4)
            .map(|i| {
                let len = 1 + (offset * 13 + i * 31) % 200;
                let b = Bytes::from((offset..offset + len).map(pattern).collect::<Vec<u8>>());
                offset += len;
                b
            })
            .collect();
        conn.send_chain(chain, tag);
        tag += 1;
    }
    let total = offset;
    assert!(!conn.flush().unwrap(), "16 MiB cannot fit into the socket buffers");
    assert!(conn.stats().gathered_writes >= 1);
    let reader = slow_reader(client, total, 200_000);
    let mut done = Vec::new();
    flush_all(&mut conn, &mut done);
    assert_eq!(done, (0..tag).collect::<Vec<u64>>());
    let stats = conn.stats();
    assert_eq!(stats.bytes_sent as usize, total);
    assert!(stats.send_stalls >= 1);
    let got = reader.join().unwrap();
    let first_bad = got.iter().enumerate().position(|(i, &b)| b != pattern(i));
    assert_eq!(first_bad, None, "stream corrupted");
}
