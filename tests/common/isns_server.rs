//! A small iSNS server (RFC 4171) for the tests, on loopback: it keeps the nodes, portals and portal groups clients
//! register, removes what they deregister, answers DevAttrQry with the initiators that share a discovery domain
//! with the query's source, and records every request. Its own minimal TLV code, written from the RFC, so the
//! target's encoder is checked by an independent decoder. Discovery domains are set by the test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registered storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub node_type: u32,
    pub entity: String,
}

/// A registered portal group: (node name, IP, port, tag).
pub type PortalGroup = (String, IpAddr, u16, u32);

#[derive(Debug, Default)]
pub struct State {
    pub nodes: BTreeMap<String, Node>,
    pub portals: BTreeSet<(IpAddr, u16)>,
    pub portal_groups: BTreeSet<PortalGroup>,
    /// Discovery domains: sets of iSCSI names.
    pub dds: Vec<BTreeSet<String>>,
    /// (function ID, source name) of every request, in order.
    pub requests: Vec<(u16, String)>,
    /// Names deregistered, in order.
    pub deregistered: Vec<String>,
    /// Entities deregistered.
    pub entities_deregistered: Vec<String>,
}

pub struct IsnsServer {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

struct Tlv {
    tag: u32,
    value: Vec<u8>,
}

impl Tlv {
    fn string(&self) -> String {
        let end = self.value.iter().position(|&b| b == 0).unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }
    fn u32(&self) -> u32 {
        self.value.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
    }
    fn ip(&self) -> Option<IpAddr> {
        let b: [u8; 16] = self.value.get(..16)?.try_into().ok()?;
        let v6 = Ipv6Addr::from(b);
        Some(v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)))
    }
}

fn parse_tlvs(mut p: &[u8]) -> Option<Vec<Tlv>> {
    let mut out = Vec::new();
    while !p.is_empty() {
        if p.len() < 8 {
            return None;
        }
        let tag = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        let len = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
        let value = p.get(8..8 + len)?.to_vec();
        out.push(Tlv { tag, value });
        p = &p[8 + len..];
    }
    Some(out)
}

fn push_tlv(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn string_value(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

impl IsnsServer {
    /// Listens on 127.0.0.1 (port chosen by the kernel) and serves every connection on its own thread until the
    /// test process ends.
    pub fn start() -> IsnsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind iSNS");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        IsnsServer { addr, state }
    }

    /// Replaces the discovery domains.
    pub fn set_dds(&self, dds: &[&[&str]]) {
        let mut s = self.state.lock().expect("state");
        s.dds = dds.iter().map(|d| d.iter().map(|n| n.to_string()).collect()).collect();
    }

    /// Waits up to `limit` for `cond` on the state.
    pub fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = self.state.lock().expect("state");
                if cond(&s) {
                    return;
                }
                if Instant::now() >= deadline {
                    panic!("iSNS server: timed out waiting for {what}; state: {s:#?}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut head = [0u8; 12];
        if conn.read_exact(&mut head).is_err() {
            return;
        }
        let word = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
        let (version, function, length, transaction) = (word(0), word(2), usize::from(word(4)), word(8));
        let mut payload = vec![0u8; length];
        if conn.read_exact(&mut payload).is_err() {
            return;
        }
        let (status, body) = if version != 1 {
            (4u32, Vec::new())
        } else {
            match parse_tlvs(&payload) {
                Some(tlvs) => handle(function, &tlvs, &mut state.lock().expect("state")),
                None => (2, Vec::new()),
            }
        };
        let mut rsp_payload = status.to_be_bytes().to_vec();
        rsp_payload.extend_from_slice(&body);
        let mut rsp = Vec::new();
        for v in [1u16, function | 0x8000, rsp_payload.len() as u16, 0x4000 | 0x0800 | 0x0400, transaction, 0] {
            rsp.extend_from_slice(&v.to_be_bytes());
        }
        rsp.extend_from_slice(&rsp_payload);
        if conn.write_all(&rsp).is_err() {
            return;
        }
    }
}

/// One request: (status, response attributes).
fn handle(function: u16, tlvs: &[Tlv], s: &mut State) -> (u32, Vec<u8>) {
    let source = tlvs.first().filter(|t| t.tag == 32).map(Tlv::string).unwrap_or_default();
    s.requests.push((function, source.clone()));
    let delim = tlvs.iter().position(|t| t.tag == 0);
    let (keys, ops) = match delim {
        Some(i) => (&tlvs[1..i], &tlvs[i + 1..]),
        None => (&tlvs[1.min(tlvs.len())..], &tlvs[tlvs.len()..]),
    };
    match function {
        // DevAttrReg
        0x0001 => {
            let mut entity = String::new();
            let mut current_node: Option<String> = None;
            let mut portal_ip: Option<IpAddr> = None;
            let mut pg: (Option<String>, Option<IpAddr>, Option<u16>) = (None, None, None);
            for t in ops {
                match t.tag {
                    1 => entity = t.string(),
                    16 => portal_ip = t.ip(),
                    17 => {
                        if let Some(ip) = portal_ip.take() {
                            s.portals.insert((ip, t.u32() as u16));
                        }
                    }
                    32 => {
                        let name = t.string();
                        s.nodes.insert(name.clone(), Node { name: name.clone(), node_type: 0, entity: entity.clone() });
                        current_node = Some(name);
                    }
                    33 => {
                        if let Some(n) = current_node.as_ref().and_then(|n| s.nodes.get_mut(n)) {
                            n.node_type = t.u32();
                        }
                    }
                    48 => pg.0 = Some(t.string()),
                    49 => pg.1 = t.ip(),
                    50 => pg.2 = Some(t.u32() as u16),
                    51 => {
                        if let (Some(name), Some(ip), Some(port)) = pg.clone() {
                            s.portal_groups.insert((name, ip, port, t.u32()));
                        }
                        pg = (None, None, None);
                    }
                    _ => {}
                }
            }
            if s.nodes.is_empty() || entity.is_empty() {
                return (3, Vec::new());
            }
            let mut body = Vec::new();
            for k in keys {
                push_tlv(&mut body, k.tag, &k.value);
            }
            (0, body)
        }
        // DevAttrQry: the initiators sharing a discovery domain with the source.
        0x0002 => {
            if !s.nodes.contains_key(&source) {
                return (6, Vec::new());
            }
            let mut visible = BTreeSet::new();
            for dd in s.dds.iter().filter(|dd| dd.contains(&source)) {
                for member in dd.iter().filter(|m| **m != source) {
                    visible.insert(member.clone());
                }
            }
            let mut body = Vec::new();
            for k in keys {
                push_tlv(&mut body, k.tag, &k.value);
            }
            push_tlv(&mut body, 0, &[]);
            for name in visible {
                push_tlv(&mut body, 32, &string_value(&name));
                push_tlv(&mut body, 33, &2u32.to_be_bytes());
            }
            (0, body)
        }
        // DevDereg
        0x0004 => {
            for t in ops {
                match t.tag {
                    32 => {
                        let name = t.string();
                        s.nodes.remove(&name);
                        s.portal_groups.retain(|pg| pg.0 != name);
                        s.deregistered.push(name);
                    }
                    1 => {
                        let eid = t.string();
                        s.nodes.retain(|_, n| n.entity != eid);
                        s.entities_deregistered.push(eid);
                    }
                    _ => {}
                }
            }
            (0, Vec::new())
        }
        _ => (15, Vec::new()),
    }
}
