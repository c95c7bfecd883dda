//! A JSON-RPC client for the target's Unix socket (what the CLI subcommands use).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// Errors of a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {source} (is polltgt serving with this RPC socket? see --socket)", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("RPC connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server sent an invalid response: {0}")]
    Protocol(String),
    /// The server answered with a JSON-RPC error.
    #[error("{message}")]
    Rpc {
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

/// A connection to the target's RPC socket.
pub struct Client {
    stream: UnixStream,
    next_id: u64,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            stream,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    /// Call `method` with named `params`; the result, or the server's error.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.stream.write_all(format!("{req}\n").as_bytes())?;
        let resp = self.read_value()?;
        if let Some(e) = resp.get("error") {
            return Err(ClientError::Rpc {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e.get("message").and_then(Value::as_str).unwrap_or("error").to_string(),
                data: e.get("data").cloned(),
            });
        }
        if resp.get("id") != Some(&json!(id)) {
            return Err(ClientError::Protocol(format!("response for another request: {resp}")));
        }
        resp.get("result")
            .cloned()
            .ok_or_else(|| ClientError::Protocol(format!("no result: {resp}")))
    }

    fn read_value(&mut self) -> Result<Value, ClientError> {
        let mut chunk = [0u8; 65536];
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            if start < self.buf.len() {
                let mut it = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
                match it.next() {
                    Some(Ok(v)) => {
                        let used = start + it.byte_offset();
                        self.buf.drain(..used);
                        return Ok(v);
                    }
                    Some(Err(e)) if !e.is_eof() => return Err(ClientError::Protocol(e.to_string())),
                    _ => {}
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Protocol("the server closed the connection".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
