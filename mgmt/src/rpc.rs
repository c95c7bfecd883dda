//! JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over the [`Manager`]: request validation, batches,
//! notifications, and the methods, named like SPDK's (`bdev_*`, `iscsi_*`, `framework_*`, `thread_get_stats`) with
//! the configuration model's field names as parameters, plus `scst_write` for SCST's management strings verbatim.
//! Each method decodes its parameters, calls the library and encodes the result; errors carry the object and
//! attribute they are about in `error.data`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{ErrorKind, SessionInfo};
use crate::config::{DeviceConfig, Handler, LunConfig, TargetConfig};
use crate::manager::{Manager, MgmtError};
use crate::values::{BlockSize, Size};
use crate::{scst, tree};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

impl From<MgmtError> for RpcError {
    fn from(e: MgmtError) -> Self {
        RpcError {
            code: e.kind.code(),
            message: e.to_string(),
            data: Some(json!({ "kind": e.kind, "object": e.object, "attribute": e.attribute, "reason": e.message })),
        }
    }
}

/// Every method, for `rpc_get_methods`.
pub const METHODS: &[&str] = &[
    "rpc_get_methods",
    "framework_get_config",
    "framework_save_config",
    "framework_get_reactors",
    "thread_get_stats",
    "iobuf_get_stats",
    "dataplane_get_stats",
    "log_get_level",
    "log_set_level",
    "bdev_get_bdevs",
    "bdev_get_iostat",
    "bdev_create",
    "bdev_malloc_create",
    "bdev_null_create",
    "bdev_aio_create",
    "bdev_delete",
    "bdev_malloc_delete",
    "bdev_null_delete",
    "bdev_aio_delete",
    "bdev_resize",
    "bdev_null_resize",
    "bdev_rescan",
    "bdev_aio_rescan",
    "iscsi_get_options",
    "iscsi_set_options",
    "iscsi_get_portals",
    "iscsi_add_portal",
    "iscsi_delete_portal",
    "iscsi_get_portal_groups",
    "bdev_set_attribute",
    "iscsi_get_target_nodes",
    "iscsi_create_target_node",
    "iscsi_delete_target_node",
    "iscsi_target_node_set_attribute",
    "iscsi_target_node_add_lun",
    "iscsi_target_node_remove_lun",
    "iscsi_get_initiator_groups",
    "iscsi_create_initiator_group",
    "iscsi_delete_initiator_group",
    "iscsi_initiator_group_add_initiators",
    "iscsi_initiator_group_remove_initiators",
    "iscsi_initiator_group_set_attribute",
    "iscsi_get_sessions",
    "iscsi_get_connections",
    "iscsi_session_force_close",
    "object_get",
    "object_walk",
    "object_set",
    "scst_write",
    "scst_script",
];

/// Handle one parsed JSON value (a request or a batch). Returns the response to send, or None (notifications
/// only).
pub fn handle(m: &Manager, request: Value) -> Option<Value> {
    match request {
        Value::Array(batch) if batch.is_empty() => Some(error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "empty batch"),
        )),
        Value::Array(batch) => {
            let out: Vec<Value> = batch.into_iter().filter_map(|r| handle_one(m, r)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => handle_one(m, other),
    }
}

/// The response to a request that could not be parsed.
pub fn parse_error(message: &str) -> Value {
    error_response(
        Value::Null,
        RpcError::new(PARSE_ERROR, format!("parse error: {message}")),
    )
}

fn error_response(id: Value, e: RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() })
}

fn handle_one(m: &Manager, request: Value) -> Option<Value> {
    let Value::Object(mut obj) = request else {
        return Some(error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "a request must be a JSON object"),
        ));
    };
    let id = obj.remove("id");
    let id_value = match &id {
        None => Value::Null,
        Some(v @ (Value::Null | Value::String(_) | Value::Number(_))) => v.clone(),
        Some(_) => {
            return Some(error_response(
                Value::Null,
                RpcError::new(INVALID_REQUEST, "id must be a string, a number or null"),
            ))
        }
    };
    let respond = |r: Result<Value, RpcError>| -> Option<Value> {
        id.as_ref()?;
        Some(match r {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id_value, "result": result }),
            Err(e) => error_response(id_value.clone(), e),
        })
    };
    if obj.remove("jsonrpc") != Some(Value::String("2.0".into())) {
        return Some(error_response(
            id_value,
            RpcError::new(INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""),
        ));
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Some(error_response(
            id_value,
            RpcError::new(INVALID_REQUEST, "\"method\" must be a string"),
        ));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return respond(Err(RpcError::new(
                INVALID_PARAMS,
                "params must be an object of named parameters",
            )))
        }
    };
    if let Some(k) = obj.keys().next() {
        return Some(error_response(
            id_value,
            RpcError::new(INVALID_REQUEST, format!("unknown member {k:?}")),
        ));
    }
    let mut result = call(m, &method, params);
    // No secret in any answer (crate::redact).
    if let Ok(v) = result.as_mut() {
        crate::redact::json(v);
    }
    respond(result)
}

fn decode<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: {e}")))
}

fn to_json<T: serde::Serialize>(v: T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(INTERNAL_ERROR, e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Name {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptName {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameForce {
    name: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpdkBdev {
    name: String,
    num_blocks: u64,
    #[serde(default = "default_block_size")]
    block_size: u64,
    /// SPDK's `physical_block_size` (bytes; default: the block size).
    #[serde(default)]
    physical_block_size: Option<u64>,
}

fn default_block_size() -> u64 {
    512
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AioBdev {
    name: String,
    filename: PathBuf,
    #[serde(default = "default_block_size")]
    block_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    name: String,
    size: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NullResize {
    name: String,
    new_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAttr {
    name: String,
    attribute: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalAddress {
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLun {
    name: String,
    lun: u16,
    device: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveLun {
    name: String,
    lun: u16,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupAttr {
    name: String,
    group: String,
    attribute: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupInitiators {
    name: String,
    group: String,
    initiators: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sid {
    sid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Path {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathValue {
    path: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    script: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Level {
    level: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveConfig {
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetConfig {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IscsiOptions {
    #[serde(default)]
    enabled: Option<bool>,
    /// `"<host>[:port] [AccessControl]"`; `""` removes the iSNS server.
    #[serde(default, rename = "iSNSServer")]
    isns_server: Option<String>,
    /// Seconds, 1..3600.
    #[serde(default, rename = "LoginTimeout")]
    login_timeout: Option<u64>,
}

/// Text of a JSON parameter value for attribute writes (strings as they are, numbers and booleans as SCST writes
/// them).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn spdk_device(name: String, handler: Handler, block_size: u64, num_blocks: u64) -> Result<DeviceConfig, RpcError> {
    let bs = BlockSize::new(block_size)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: block_size: {e}")))?;
    let bytes = num_blocks
        .checked_mul(block_size)
        .and_then(|b| Size::from_bytes(b).ok())
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "invalid params: num_blocks: out of range"))?;
    let mut d = DeviceConfig::new(&name, handler);
    d.blocksize = bs;
    d.size = Some(bytes);
    Ok(d)
}

fn sessions(m: &Manager, name: Option<&str>) -> Result<Vec<SessionInfo>, RpcError> {
    let all = m.backend().sessions().map_err(MgmtError::from)?;
    Ok(all.into_iter().filter(|s| name.is_none_or(|n| s.target == n)).collect())
}

/// Call one method.
pub fn call(m: &Manager, method: &str, params: Value) -> Result<Value, RpcError> {
    let b = m.backend();
    match method {
        "rpc_get_methods" => {
            decode::<NoParams>(params)?;
            to_json(METHODS)
        }
        "framework_get_config" => {
            let p: GetConfig = decode(params)?;
            match p.format.as_deref() {
                None | Some("json") => to_json(crate::redact::config(&m.config())),
                Some("yaml") => Ok(Value::String(
                    crate::save::minimal_yaml(&crate::redact::config(&m.config()))
                        .map_err(|e| MgmtError::new(ErrorKind::Internal, e.to_string()))?,
                )),
                Some(f) => Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("invalid params: format {f:?} (json, yaml)"),
                )),
            }
        }
        "framework_save_config" => {
            let p: SaveConfig = decode(params)?;
            let path = m.save_config(p.path.as_deref())?;
            Ok(json!({ "path": path }))
        }
        "framework_get_reactors" => {
            decode::<NoParams>(params)?;
            Ok(json!({ "reactors": b.dataplane_stats().map_err(MgmtError::from)?.reactors }))
        }
        "thread_get_stats" => {
            decode::<NoParams>(params)?;
            let reactors = b.dataplane_stats().map_err(MgmtError::from)?.reactors;
            // SPDK reports busy/idle in ticks at tick_rate: the reactors' TSC accounting (one calibrated rate).
            let tick_rate = reactors.first().map_or(1_000_000_000, |r| r.tick_rate);
            let threads: Vec<Value> = reactors
                .into_iter()
                .map(|r| {
                    json!({
                        "name": format!("reactor_{}", r.id), "id": r.id, "core": r.core,
                        "busy": r.busy_tsc, "idle": r.idle_tsc, "busy_ns": r.busy_ns, "idle_ns": r.idle_ns,
                        "iterations": r.iterations, "messages": r.messages, "sleeps": r.sleeps,
                        "connections": r.connections, "sessions": r.sessions, "pollers": r.pollers,
                    })
                })
                .collect();
            Ok(json!({ "tick_rate": tick_rate, "threads": threads }))
        }
        "dataplane_get_stats" => {
            decode::<NoParams>(params)?;
            to_json(b.dataplane_stats().map_err(MgmtError::from)?)
        }
        "iobuf_get_stats" => {
            decode::<NoParams>(params)?;
            to_json(b.pool())
        }
        "log_get_level" => {
            decode::<NoParams>(params)?;
            Ok(json!({ "level": b.trace_level() }))
        }
        "log_set_level" => {
            let p: Level = decode(params)?;
            b.set_trace_level(&p.level)
                .map_err(|e| MgmtError::from(e).attr("trace_level"))?;
            Ok(Value::Bool(true))
        }
        "bdev_get_bdevs" => {
            let p: OptName = decode(params)?;
            let c = m.config();
            let list: Vec<Value> = c
                .devices
                .iter()
                .filter(|d| p.name.as_deref().is_none_or(|n| n == d.name))
                .map(|d| tree::device_json(m, &c, d))
                .collect();
            if let (Some(n), true) = (&p.name, list.is_empty()) {
                return Err(MgmtError::not_found("no such device")
                    .on(crate::manager::device_path(n))
                    .into());
            }
            Ok(Value::Array(list))
        }
        "bdev_get_iostat" => {
            decode::<NoParams>(params)?;
            to_json(b.lun_stats())
        }
        "bdev_create" => {
            let d: DeviceConfig = decode(params)?;
            m.add_device(d.clone())?;
            Ok(Value::String(d.name))
        }
        "bdev_malloc_create" | "bdev_null_create" => {
            let p: SpdkBdev = decode(params)?;
            let handler = if method == "bdev_malloc_create" {
                Handler::Ram
            } else {
                Handler::VdiskNullio
            };
            let mut d = spdk_device(p.name.clone(), handler, p.block_size, p.num_blocks)?;
            if let Some(pbs) = p.physical_block_size {
                let pbs = u32::try_from(pbs).map_err(|_| {
                    RpcError::new(INVALID_PARAMS, "invalid params: physical_block_size: out of range")
                })?;
                d.physical_blocksize = Some(pbs);
            }
            m.add_device(d)?;
            Ok(Value::String(p.name))
        }
        "bdev_aio_create" => {
            let p: AioBdev = decode(params)?;
            let mut d = DeviceConfig::new(&p.name, Handler::VdiskFileio);
            d.filename = Some(p.filename);
            d.blocksize = BlockSize::new(p.block_size)
                .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: block_size: {e}")))?;
            m.add_device(d)?;
            Ok(Value::String(p.name))
        }
        "bdev_delete" => {
            let p: NameForce = decode(params)?;
            m.delete_device(&p.name, p.force)?;
            Ok(Value::Bool(true))
        }
        "bdev_malloc_delete" | "bdev_null_delete" | "bdev_aio_delete" => {
            let p: Name = decode(params)?;
            m.delete_device(&p.name, false)?;
            Ok(Value::Bool(true))
        }
        "bdev_resize" => {
            let p: Resize = decode(params)?;
            let size: Size = serde_json::from_value(p.size)
                .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: size: {e}")))?;
            m.resize_device(&p.name, size)?;
            Ok(Value::Bool(true))
        }
        "bdev_null_resize" => {
            let p: NullResize = decode(params)?;
            let size = p
                .new_size
                .checked_mul(1 << 20)
                .and_then(|b| Size::from_bytes(b).ok())
                .ok_or_else(|| RpcError::new(INVALID_PARAMS, "invalid params: new_size: out of range"))?;
            m.resize_device(&p.name, size)?;
            Ok(Value::Bool(true))
        }
        "bdev_rescan" | "bdev_aio_rescan" => {
            let p: Name = decode(params)?;
            let size = m.resync_device(&p.name)?;
            Ok(json!({ "size": size }))
        }
        "iscsi_get_options" => {
            decode::<NoParams>(params)?;
            let c = m.config();
            Ok(
                json!({ "enabled": c.iscsi.enabled, "iSNSServer": c.iscsi.isns_server.as_ref().map(|s| s.to_string()), "LoginTimeout": c.iscsi.login_timeout, "portals": b.portals().into_iter().map(|(a, t)| json!({"address": a, "tpgt": t})).collect::<Vec<_>>(), "auth_failures": b.auth_failures(), "version": env!("CARGO_PKG_VERSION") }),
            )
        }
        "iscsi_set_options" => {
            let p: IscsiOptions = decode(params)?;
            let isns = match p.isns_server.as_deref().map(str::trim) {
                None => None,
                Some("") => Some(None),
                Some(v) => {
                    Some(Some(v.parse::<crate::protocol::IsnsServer>().map_err(|e| {
                        MgmtError::invalid(e.0).on("targets/iscsi").attr("iSNSServer")
                    })?))
                }
            };
            let login_timeout = match p.login_timeout {
                None => None,
                Some(n) => Some(
                    crate::tree::parse_login_timeout(&n.to_string())
                        .map_err(|e| e.on("targets/iscsi").attr("LoginTimeout"))?,
                ),
            };
            m.edit(|c| {
                if let Some(e) = p.enabled {
                    c.iscsi.enabled = e;
                }
                if let Some(t) = login_timeout {
                    c.iscsi.login_timeout = t;
                }
                if let Some(s) = isns {
                    c.iscsi.isns_server = s;
                }
                Ok(())
            })
            .map_err(|e| e.on("targets/iscsi"))?;
            Ok(Value::Bool(true))
        }
        "iscsi_get_portals" => {
            decode::<NoParams>(params)?;
            let listening = b.portals();
            let list: Vec<Value> = m
                .config()
                .portals
                .iter()
                .map(|p| json!({ "address": p.address, "tpgt": p.tpgt, "listening": listening.iter().any(|(a, _)| *a == p.address) }))
                .collect();
            Ok(Value::Array(list))
        }
        "iscsi_get_portal_groups" => {
            // SPDK's shape: one group per tag with its portals.
            decode::<NoParams>(params)?;
            let mut groups: std::collections::BTreeMap<u16, Vec<Value>> = Default::default();
            for p in m.config().portals {
                groups
                    .entry(p.tpgt)
                    .or_default()
                    .push(json!({ "host": p.address.ip().to_string(), "port": p.address.port().to_string() }));
            }
            Ok(Value::Array(groups.into_iter().map(|(tag, portals)| json!({ "tag": tag, "portals": portals })).collect()))
        }
        "iscsi_add_portal" => {
            let p: crate::config::PortalConfig = decode(params)?;
            let bound = m.add_portal(p)?;
            Ok(json!({ "address": bound }))
        }
        "iscsi_delete_portal" => {
            let p: PortalAddress = decode(params)?;
            let addr = crate::values::parse_portal(&p.address)
                .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: address: {e}")))?;
            m.remove_portal(addr)?;
            Ok(Value::Bool(true))
        }
        "bdev_set_attribute" => {
            let p: SetAttr = decode(params)?;
            tree::set(m, &format!("devices/{}/{}", p.name, p.attribute), &value_text(&p.value))?;
            Ok(Value::Bool(true))
        }
        "iscsi_get_target_nodes" => {
            let p: OptName = decode(params)?;
            let c = m.config();
            let all = sessions(m, None)?;
            let list: Vec<Value> = c
                .targets
                .iter()
                .filter(|t| p.name.as_deref().is_none_or(|n| n == t.name.as_str()))
                .map(|t| tree::target_json(m, &crate::redact::target(t), &all))
                .collect();
            if let (Some(n), true) = (&p.name, list.is_empty()) {
                return Err(MgmtError::not_found("no such target")
                    .on(crate::manager::target_path(n))
                    .into());
            }
            Ok(Value::Array(list))
        }
        "iscsi_create_target_node" => {
            let t: TargetConfig = decode(params)?;
            let name = t.name.to_string();
            m.add_target(t)?;
            Ok(Value::String(name))
        }
        "iscsi_delete_target_node" => {
            let p: NameForce = decode(params)?;
            m.delete_target(&p.name, p.force)?;
            Ok(Value::Bool(true))
        }
        "iscsi_target_node_set_attribute" => {
            let p: SetAttr = decode(params)?;
            let v = value_text(&p.value);
            m.edit_target(&p.name, |t| scst::apply_target_attribute(t, &p.attribute, &v, true))?;
            Ok(Value::Bool(true))
        }
        "iscsi_target_node_add_lun" => {
            let p: AddLun = decode(params)?;
            let lun = LunConfig {
                lun: p.lun,
                device: p.device,
                read_only: p.read_only,
            };
            m.add_lun(&p.name, p.group.as_deref(), lun, p.replace)?;
            Ok(Value::Bool(true))
        }
        "iscsi_target_node_remove_lun" => {
            let p: RemoveLun = decode(params)?;
            m.remove_lun(&p.name, p.group.as_deref(), p.lun)?;
            Ok(Value::Bool(true))
        }
        "iscsi_get_initiator_groups" => {
            let p: OptName = decode(params)?;
            let c = m.config();
            let list: Vec<Value> = c
                .targets
                .iter()
                .filter(|t| p.name.as_deref().is_none_or(|n| n == t.name.as_str()))
                .flat_map(|t| {
                    t.ini_groups
                        .iter()
                        .map(move |g| json!({ "target": t.name, "group": g }))
                })
                .collect();
            Ok(Value::Array(list))
        }
        "iscsi_create_initiator_group" => {
            let p: Group = decode(params)?;
            m.create_group(&p.name, &p.group)?;
            Ok(Value::Bool(true))
        }
        "iscsi_delete_initiator_group" => {
            let p: Group = decode(params)?;
            m.delete_group(&p.name, &p.group)?;
            Ok(Value::Bool(true))
        }
        "iscsi_initiator_group_add_initiators" | "iscsi_initiator_group_remove_initiators" => {
            let p: GroupInitiators = decode(params)?;
            let add = method.ends_with("add_initiators");
            m.edit_initiators(&p.name, &p.group, |inis, _| {
                for i in &p.initiators {
                    if add {
                        if !inis.contains(i) {
                            inis.push(i.clone());
                        }
                    } else if let Some(pos) = inis.iter().position(|x| x == i) {
                        inis.remove(pos);
                    } else {
                        return Err(MgmtError::not_found(format!("{i:?} is not in the group")));
                    }
                }
                Ok(())
            })?;
            Ok(Value::Bool(true))
        }
        "iscsi_initiator_group_set_attribute" => {
            // The group's cpu_mask / per_sess_dedicated_tgt_threads ("" or null: the target's setting).
            let p: GroupAttr = decode(params)?;
            if p.group.contains('/') || p.attribute.contains('/') {
                return Err(RpcError::new(INVALID_PARAMS, "invalid params: group and attribute are names, not paths"));
            }
            let path = format!("{}/ini_groups/{}/{}", crate::manager::target_path(&p.name), p.group, p.attribute);
            tree::set(m, &path, &value_text(&p.value))?;
            Ok(Value::Bool(true))
        }
        "iscsi_get_sessions" => {
            let p: OptName = decode(params)?;
            to_json(sessions(m, p.name.as_deref())?)
        }
        "iscsi_get_connections" => {
            decode::<NoParams>(params)?;
            to_json(b.connections().map_err(MgmtError::from)?)
        }
        "iscsi_session_force_close" => {
            let p: Sid = decode(params)?;
            m.force_close(&p.sid)?;
            Ok(Value::Bool(true))
        }
        "object_get" => {
            let p: Path = decode(params)?;
            to_json(tree::get(m, &p.path)?)
        }
        "object_walk" => {
            let p: Path = decode(params)?;
            to_json(tree::walk(m, &p.path)?)
        }
        "object_set" => {
            let p: PathValue = decode(params)?;
            tree::set(m, &p.path, &value_text(&p.value))?;
            Ok(Value::Bool(true))
        }
        "scst_write" => {
            let p: PathValue = decode(params)?;
            scst::write(m, &p.path, &value_text(&p.value))?;
            Ok(Value::Bool(true))
        }
        "scst_script" => {
            let p: Script = decode(params)?;
            let lines = scst::run_script(m, &p.script);
            if let Some(bad) = lines.iter().find(|l| l.status == "error") {
                let mut e = RpcError::new(
                    ErrorKind::Invalid.code(),
                    format!("line {}: {}", bad.line, bad.message.clone().unwrap_or_default()),
                );
                e.data = Some(json!({ "lines": lines }));
                return Err(e);
            }
            to_json(lines)
        }
        _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("method not found: {method:?}"))),
    }
}
