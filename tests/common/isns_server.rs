//! A small iSNS server (RFC 4171) for the tests, on loopback: it keeps the nodes, portals and portal groups clients
//! register, removes what they deregister, answers DevAttrQry with the initiators that share a discovery domain
//! with the query's source, and records every request. It keeps SCN registrations (SCNReg, refused like open-isns
//! for nodes without an SCN port or asking for management-only bits) and, when the test changes the discovery
//! domains, sends a State Change Notification to the SCN port of every registered node whose view changed, as a
//! server does; it can send an Entity Status Inquiry to the registered ESI ports. Its own minimal TLV code, written
//! from the RFC, so the target's encoder is checked by an independent decoder. Discovery domains are set by the
//! test.

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
    /// Per entity: the (portal IP, SCN port) and (portal IP, ESI port) pairs its portals registered.
    pub scn_ports: BTreeMap<String, BTreeSet<(IpAddr, u16)>>,
    pub esi_ports: BTreeMap<String, BTreeSet<(IpAddr, u16)>>,
    /// SCN registrations: node name -> SCN bitmap.
    pub scn_registrations: BTreeMap<String, u32>,
    /// Every SCN sent: (destination, status of the SCNRsp, destination echoed in it); status u32::MAX when no
    /// answer came.
    pub scns_sent: Vec<(String, u32, String)>,
    /// SCNReg is answered "message not supported" (a server without SCN support).
    pub scn_unsupported: bool,
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

    /// Replaces the discovery domains, then notifies (SCN) every node registered for SCNs whose set of visible
    /// nodes changed: OBJECT ADDED / OBJECT REMOVED for each node that appeared or went away, sent to the SCN port
    /// of each portal of the node's entity. Returns how many SCNs were answered with success.
    pub fn set_dds(&self, dds: &[&[&str]]) -> usize {
        let mut deliveries = Vec::new();
        {
            let mut s = self.state.lock().expect("state");
            let before: BTreeMap<String, BTreeSet<String>> =
                s.scn_registrations.keys().map(|n| (n.clone(), visible(&s.dds, n))).collect();
            s.dds = dds.iter().map(|d| d.iter().map(|n| n.to_string()).collect()).collect();
            for (node, old) in before {
                let new = visible(&s.dds, &node);
                let mut events = Vec::new();
                events.extend(new.difference(&old).map(|n| (1u32 << 3, n.clone())));
                events.extend(old.difference(&new).map(|n| (1u32 << 4, n.clone())));
                if events.is_empty() {
                    continue;
                }
                let entity = s.nodes.get(&node).map(|n| n.entity.clone()).unwrap_or_default();
                for &port in s.scn_ports.get(&entity).into_iter().flatten() {
                    deliveries.push((node.clone(), port, events.clone()));
                }
            }
        }
        let mut answered = 0;
        for (node, (ip, port), events) in deliveries {
            let (status, echoed) = send_scn(ip, port, &node, &events);
            if status == 0 {
                answered += 1;
            }
            self.state.lock().expect("state").scns_sent.push((node, status, echoed));
        }
        answered
    }

    /// Sends an Entity Status Inquiry (Entity Identifier, Portal IP Address, Portal Port) to every registered ESI
    /// port; returns, per inquiry, the ESIRsp's status and whether it echoed the inquiry's attributes.
    pub fn esi(&self) -> Vec<(u32, bool)> {
        let targets: Vec<(String, IpAddr, u16)> = {
            let s = self.state.lock().expect("state");
            s.esi_ports.iter().flat_map(|(e, ports)| ports.iter().map(move |(ip, p)| (e.clone(), *ip, *p))).collect()
        };
        let mut out = Vec::new();
        for (entity, ip, port) in targets {
            let mut attrs = Vec::new();
            push_tlv(&mut attrs, 1, &string_value(&entity));
            push_tlv(&mut attrs, 16, &ip_value(ip));
            push_tlv(&mut attrs, 17, &u32::from(port).to_be_bytes());
            match exchange(ip, port, 0x000d, &attrs) {
                Some((0x800d, status, body)) => out.push((status, body == attrs)),
                _ => out.push((u32::MAX, false)),
            }
        }
        out
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

/// The nodes sharing a discovery domain with `node`.
fn visible(dds: &[BTreeSet<String>], node: &str) -> BTreeSet<String> {
    dds.iter().filter(|dd| dd.contains(node)).flat_map(|dd| dd.iter().filter(|m| *m != node).cloned()).collect()
}

fn ip_value(ip: IpAddr) -> Vec<u8> {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    v6.octets().to_vec()
}

/// One server-initiated message on a fresh connection to `ip:port`: (response function, status, attributes).
fn exchange(ip: IpAddr, port: u16, function: u16, attrs: &[u8]) -> Option<(u16, u32, Vec<u8>)> {
    let mut conn = TcpStream::connect_timeout(&std::net::SocketAddr::new(ip, port), Duration::from_secs(5)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut pdu = Vec::new();
    for v in [1u16, function, attrs.len() as u16, 0x4000 | 0x0800 | 0x0400, 0x5c5c, 0] {
        pdu.extend_from_slice(&v.to_be_bytes());
    }
    pdu.extend_from_slice(attrs);
    conn.write_all(&pdu).ok()?;
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).ok()?;
    let word = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    if word(8) != 0x5c5c {
        return None;
    }
    let mut payload = vec![0u8; usize::from(word(4))];
    conn.read_exact(&mut payload).ok()?;
    let status = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    Some((word(2), status, payload[4..].to_vec()))
}

/// An SCN to `node` at `ip:port` (RFC 4171 §5.6.5.8: destination, timestamp, bitmap + source pairs): the SCNRsp's
/// status (u32::MAX: none) and the destination it names.
fn send_scn(ip: IpAddr, port: u16, node: &str, events: &[(u32, String)]) -> (u32, String) {
    let mut attrs = Vec::new();
    push_tlv(&mut attrs, 32, &string_value(node));
    push_tlv(&mut attrs, 4, &[0, 0, 0, 0, 0x69, 0x00, 0x00, 0x00]);
    for (bitmap, source) in events {
        push_tlv(&mut attrs, 35, &bitmap.to_be_bytes());
        push_tlv(&mut attrs, 32, &string_value(source));
    }
    match exchange(ip, port, 0x0008, &attrs) {
        Some((0x8008, status, body)) => {
            let echoed = parse_tlvs(&body).and_then(|t| t.first().filter(|t| t.tag == 32).map(Tlv::string));
            (status, echoed.unwrap_or_default())
        }
        _ => (u32::MAX, String::new()),
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
            let mut last_portal_ip: Option<IpAddr> = None;
            let mut pg: (Option<String>, Option<IpAddr>, Option<u16>) = (None, None, None);
            for t in ops {
                match t.tag {
                    1 => {
                        // A replacing registration lists every portal again, and drops the nodes' SCN
                        // registrations (the client must register again).
                        entity = t.string();
                        s.scn_ports.remove(&entity);
                        s.esi_ports.remove(&entity);
                        let nodes: Vec<String> =
                            s.nodes.values().filter(|n| n.entity == entity).map(|n| n.name.clone()).collect();
                        for n in nodes {
                            s.scn_registrations.remove(&n);
                        }
                    }
                    16 => portal_ip = t.ip(),
                    17 => {
                        if let Some(ip) = portal_ip.take() {
                            s.portals.insert((ip, t.u32() as u16));
                            last_portal_ip = Some(ip);
                        }
                    }
                    20 | 23 => {
                        if let Some(ip) = last_portal_ip {
                            let ports = if t.tag == 23 { &mut s.scn_ports } else { &mut s.esi_ports };
                            ports.entry(entity.clone()).or_default().insert((ip, t.u32() as u16));
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
        // SCNReg: key iSCSI Name, operating attribute the SCN bitmap.
        0x0005 => {
            if s.scn_unsupported {
                return (15, Vec::new());
            }
            let Some(name) = keys.first().filter(|k| k.tag == 32).map(Tlv::string) else { return (2, Vec::new()) };
            let Some(bitmap) = ops.first().filter(|o| o.tag == 35).map(Tlv::u32) else { return (2, Vec::new()) };
            let Some(node) = s.nodes.get(&name) else { return (9, Vec::new()) };
            // DD member bits only with management registration (RFC 4171 §6.4.4).
            if bitmap & 0x3 != 0 && bitmap & 0x20 == 0 {
                return (8, Vec::new());
            }
            // No SCN port on any portal of the node's entity: SCN Registration Rejected (§5.6.5.5).
            if s.scn_ports.get(&node.entity).is_none_or(|p| p.is_empty()) {
                return (17, Vec::new());
            }
            s.scn_registrations.insert(name, bitmap);
            (0, Vec::new())
        }
        // DevDereg
        0x0004 => {
            for t in ops {
                match t.tag {
                    32 => {
                        let name = t.string();
                        s.scn_registrations.remove(&name);
                        s.nodes.remove(&name);
                        s.portal_groups.retain(|pg| pg.0 != name);
                        s.deregistered.push(name);
                    }
                    1 => {
                        let eid = t.string();
                        s.scn_ports.remove(&eid);
                        s.esi_ports.remove(&eid);
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
