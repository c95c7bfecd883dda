//! The JSON-RPC server on a Unix socket, and the optional Prometheus HTTP listener.
//!
//! The socket is created with mode 0600 without a window in which others could connect: it is bound under a
//! temporary name in the same directory, its mode set, then renamed into place. A path held by a live server is
//! refused; a stale socket left by a crashed process is replaced; a path that is not a socket is never removed.
//!
//! Framing: JSON values back to back on the stream (SPDK's framing; newline-separated requests as written by `socat`
//! or `nc` work too). Each response is one JSON value followed by a newline. Malformed JSON gets a -32700 parse
//! error and the connection is closed (there is no way to find the next request in it); a request larger than
//! [`MAX_REQUEST`] likewise. Every request is handled under `catch_unwind`: nothing a client sends can take the
//! target down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::manager::Manager;
use crate::rpc;

/// Largest request accepted (bytes of one JSON value).
pub const MAX_REQUEST: usize = 4 << 20;
/// Clients served at once; more are answered with an error and closed.
const MAX_CLIENTS: usize = 32;

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{}: another process is serving this socket (set mgmt.rpc_socket or --rpc-socket)", .0.display())]
    InUse(PathBuf),
    #[error("{}: exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A running JSON-RPC server; stopped (and its socket removed) by [`RpcServer::shutdown`] or when dropped.
pub struct RpcServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Bind `path` as a 0600 Unix socket (see the module documentation).
fn bind_private(path: &Path) -> Result<UnixListener, ServerError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket(path.to_path_buf()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err(&tmp))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(ServerError::Io {
            path: path.to_path_buf(),
            source: e,
        });
    }
    Ok(listener)
}

impl RpcServer {
    /// Serve `manager` on the Unix socket `path`.
    pub fn start(path: &Path, manager: Arc<Manager>) -> Result<RpcServer, ServerError> {
        let listener = bind_private(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let clients = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                        clients.fetch_sub(1, Ordering::AcqRel);
                        let e = rpc::parse_error("too many clients");
                        let _ = conn.write_all(format!("{e}\n").as_bytes());
                        continue;
                    }
                    let (m, stop3, clients2) = (manager.clone(), stop2.clone(), clients.clone());
                    let spawned = std::thread::Builder::new().name("rpc-client".into()).spawn(move || {
                        serve_client(&m, conn, &stop3);
                        clients2.fetch_sub(1, Ordering::AcqRel);
                    });
                    if spawned.is_err() {
                        clients.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .map_err(io_err(path))?;
        tracing::info!(socket = %path.display(), "JSON-RPC server listening");
        Ok(RpcServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting, remove the socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

/// Handle one parsed value, turning a panic into an internal error.
fn handle_safely(m: &Manager, v: Value) -> Option<Value> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rpc::handle(m, v))) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("an RPC handler panicked");
            Some(
                serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": rpc::INTERNAL_ERROR, "message": "internal error" } }),
            )
        }
    }
}

enum Next {
    Value(Value, usize),
    NeedMore,
    Bad(String),
}

/// The first complete JSON value in `buf`, if any.
fn next_value(buf: &[u8]) -> Next {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(buf.len());
    if start == buf.len() {
        return Next::NeedMore;
    }
    let mut it = serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<Value>();
    match it.next() {
        Some(Ok(v)) => Next::Value(v, start + it.byte_offset()),
        Some(Err(e)) if e.is_eof() => Next::NeedMore,
        Some(Err(e)) => Next::Bad(e.to_string()),
        None => Next::NeedMore,
    }
}

fn serve_client(m: &Manager, mut conn: UnixStream, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete request already buffered.
        loop {
            match next_value(&buf) {
                Next::Value(v, used) => {
                    buf.drain(..used);
                    if let Some(resp) = handle_safely(m, v) {
                        if conn.write_all(format!("{resp}\n").as_bytes()).is_err() {
                            return;
                        }
                    }
                }
                Next::NeedMore => break,
                Next::Bad(msg) => {
                    let _ = conn.write_all(format!("{}\n", rpc::parse_error(&msg)).as_bytes());
                    return;
                }
            }
        }
        if buf.len() > MAX_REQUEST {
            let _ = conn.write_all(format!("{}\n", rpc::parse_error("request too large")).as_bytes());
            return;
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    let _ = conn
                        .write_all(format!("{}\n", rpc::parse_error("incomplete request at end of stream")).as_bytes());
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A running Prometheus listener (`GET /metrics`).
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, manager: Arc<Manager>) -> Result<MetricsServer, ServerError> {
        let listener = TcpListener::bind(addr).map_err(|source| ServerError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        serve_http(&manager, conn);
                    }
                }
            })
            .map_err(|source| ServerError::Listen { addr, source })?;
        tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address bound (port 0 replaced by the kernel's choice).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

fn serve_http(m: &Manager, mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut chunk = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let (status, ctype, body) = match (method, target.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::metrics::render(m)))
                .unwrap_or_default();
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found; try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn
        .write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_finds_whole_values_and_waits_for_partial_ones() {
        match next_value(b"  {\"a\":1} {\"b\"") {
            Next::Value(v, used) => {
                assert_eq!(v, serde_json::json!({"a": 1}));
                assert_eq!(used, 9);
            }
            _ => panic!("expected a value"),
        }
        assert!(matches!(next_value(b"{\"b\""), Next::NeedMore));
        assert!(matches!(next_value(b"   \n"), Next::NeedMore));
        assert!(matches!(next_value(b"{]"), Next::Bad(_)));
        assert!(matches!(next_value(b"nul"), Next::NeedMore));
        assert!(matches!(next_value(b"x"), Next::Bad(_)));
    }

    #[test]
    fn a_regular_file_is_never_replaced_by_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpc.sock");
        std::fs::write(&p, b"precious").unwrap();
        assert!(matches!(bind_private(&p), Err(ServerError::NotASocket(_))));
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    }

    #[test]
    fn the_socket_is_private_and_a_live_one_is_not_stolen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpc.sock");
        let l = bind_private(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind_private(&p), Err(ServerError::InUse(_))));
        drop(l);
        // Stale (nobody listening): replaced.
        let _l2 = bind_private(&p).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary socket left"
        );
    }
}
