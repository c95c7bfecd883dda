//! Harness for the management tests: the target's RPC socket (raw JSON-RPC and the `polltgt` CLI), and long-lived
//! libiscsi sessions driven line by line (tests/tools/iscsi-session.c).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{run, Target};

/// Time limit of one CLI call, RPC call or session command.
pub const LIMIT: Duration = Duration::from_secs(30);

impl Target {
    /// The target's RPC socket (the harness passes `--rpc-socket` in the test's directory).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("rpc.sock")
    }

    /// Run `polltgt --socket SOCKET ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let socket = self.socket();
        let mut all = vec!["--socket", socket.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        run(env!("CARGO_BIN_EXE_polltgt"), &all, LIMIT)
    }

    /// Run the CLI and require success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "polltgt {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Call a JSON-RPC method: Ok(result) or Err(error object).
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let mut c = RawRpc::connect(&self.socket());
        let resp = c.request(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        match resp.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(resp["result"].clone()),
        }
    }

    /// Call a JSON-RPC method that must succeed.
    pub fn rpc_ok(&self, method: &str, params: Value) -> Value {
        self.rpc(method, params.clone())
            .unwrap_or_else(|e| panic!("{method} {params} failed: {e}"))
    }
}

/// A raw connection to the RPC socket.
pub struct RawRpc {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl RawRpc {
    pub fn connect(path: &Path) -> RawRpc {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream.set_read_timeout(Some(LIMIT)).expect("timeout");
        RawRpc {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the RPC socket");
    }

    /// The next JSON value from the server, or None when it closed the connection.
    pub fn read(&mut self) -> Option<Value> {
        let mut chunk = [0u8; 65536];
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            if start < self.buf.len() {
                let mut it = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
                if let Some(Ok(v)) = it.next() {
                    let used = start + it.byte_offset();
                    self.buf.drain(..used);
                    return Some(v);
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading the RPC socket: {e}"),
            }
        }
    }

    pub fn request(&mut self, req: &Value) -> Value {
        self.send_raw(format!("{req}\n").as_bytes());
        self.read().expect("a response")
    }
}

/// Build tests/tools/iscsi-session.c against libiscsi (once per test binary) and return its path.
pub fn session_tool() -> PathBuf {
    super::c_tool("iscsi-session")
}

/// A libiscsi session kept open by iscsi-session; killed when dropped.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Session {
    /// Log in to `url` as `initiator`; panics if the login fails.
    pub fn open(url: &str, initiator: &str) -> Session {
        let mut s = Session::start(url, initiator);
        let first = s.next_line();
        assert_eq!(first, "READY", "login of {initiator} to {url} failed");
        s
    }

    /// Start the tool; the first line is "READY" or "LOGIN FAILED ...".
    pub fn start(url: &str, initiator: &str) -> Session {
        Session::start_tool(&session_tool(), &["-i", initiator, url])
    }

    /// Start another line-driven tool with the same protocol (tests/tools/iscsi-mmc.c).
    pub fn start_tool(tool: &Path, args: &[&str]) -> Session {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start iscsi-session");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            lines: rx,
        }
    }

    pub fn next_line(&mut self) -> String {
        self.lines.recv_timeout(LIMIT).unwrap_or_else(|_| "EOF".to_string())
    }

    /// Run one command and return its answer line ("EOF" if the tool exited).
    pub fn cmd(&mut self, line: &str) -> String {
        if let Some(stdin) = self.stdin.as_mut() {
            if stdin
                .write_all(format!("{line}\n").as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return "EOF".to_string();
            }
        }
        self.next_line()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
