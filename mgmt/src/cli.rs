//! The management subcommands of the `polltgt` binary: tables and attribute views over the JSON-RPC client, plus
//! `import-scst`, which works on files alone.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use crate::backend::{ConnectionInfo, ReactorInfo, SessionInfo};
use crate::client::{Client, ClientError};
use crate::config::{Config, DeviceConfig};
use crate::tree::{Entry, Node};

/// Management subcommands (they talk to a running target through its RPC socket, except `import-scst`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List objects as a table.
    List {
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Show an object of the tree with its attributes (SCST sysfs paths: targets/iscsi/NAME, devices/NAME, ...).
    /// `*` marks attributes that differ from their default (SCST's [key]).
    Show {
        /// Object path; empty for the root.
        #[arg(default_value = "")]
        path: String,
    },
    /// Set an attribute: `polltgt set targets/iscsi/NAME/MaxBurstLength 131072`, `polltgt set devices/d1/size 2G`.
    Set { path: String, value: String },
    /// Run one SCST management string verbatim: `polltgt scst /sys/kernel/scst_tgt/targets/iscsi/mgmt "add_target
    /// iqn.2006-10.net.vlnb:tgt"` (a path ending in `mgmt` runs a command, any other path sets an attribute).
    Scst { path: String, value: String },
    /// Run an SCST configuration script (its `echo ... >/sys/kernel/scst_tgt/...` lines, in order).
    ScstScript { file: PathBuf },
    /// Close a session, by sid (see `list sessions`).
    ForceClose { sid: String },
    /// Write the running configuration as YAML (only attributes that differ from their defaults), atomically: to
    /// the file the target was started from, or to FILE.
    SaveConfig {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Convert an scst.conf (scstadmin format) to polltgt YAML (to stdout, or to --output).
    ImportScst {
        file: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Leave out what polltgt cannot represent (with a warning per line) instead of failing.
        #[arg(long)]
        lenient: bool,
    },
    /// Call a JSON-RPC method with named parameters given as a JSON object; prints the result as JSON.
    Rpc {
        method: String,
        #[arg(default_value = "{}")]
        params: String,
    },
}

/// What `list` shows.
#[derive(Debug, Subcommand)]
pub enum ListWhat {
    Targets,
    Devices,
    Sessions {
        /// Only this target's sessions.
        #[arg(long)]
        target: Option<String>,
    },
    Groups {
        #[arg(long)]
        target: Option<String>,
    },
    Luns {
        #[arg(long)]
        target: Option<String>,
    },
    Connections,
    Reactors,
    /// Listening portals (add and remove them with `polltgt rpc iscsi_add_portal` / `iscsi_delete_portal`, or the
    /// SCST-style `targets/iscsi/portals/mgmt` commands).
    Portals,
}

/// A CLI failure: the message to print and the exit status.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError(e.to_string())
    }
}

/// Render rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn human(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError(format!("unexpected answer from the target: {e}")))
}

/// Run one management subcommand against the socket `socket`; returns what to print.
pub fn run(cmd: Command, socket: &Path) -> Result<String, CliError> {
    if let Command::ImportScst { file, output, lenient } = &cmd {
        return import_scst(file, output.as_deref(), *lenient);
    }
    let mut c = Client::connect(socket)?;
    match cmd {
        Command::List { what } => list(&mut c, what),
        Command::Show { path } => {
            let e: Entry = decode(c.call("object_get", json!({ "path": path }))?)?;
            Ok(match e {
                Entry::Directory(n) => show_node(&n),
                Entry::Attribute { attribute, .. } => {
                    format!("{}{}\n", attribute.value, if attribute.key { "\n[key]" } else { "" })
                }
            })
        }
        Command::Set { path, value } => {
            c.call("object_set", json!({ "path": path, "value": value }))?;
            Ok(String::new())
        }
        Command::Scst { path, value } => {
            c.call("scst_write", json!({ "path": path, "value": value }))?;
            Ok(String::new())
        }
        Command::ScstScript { file } => {
            let script = std::fs::read_to_string(&file).map_err(|e| CliError(format!("{}: {e}", file.display())))?;
            match c.call("scst_script", json!({ "script": script })) {
                Ok(v) => {
                    let lines: Vec<crate::scst::ScriptLine> = decode(v)?;
                    let applied = lines.iter().filter(|l| l.status == "ok").count();
                    Ok(format!(
                        "{}: {applied} line(s) applied, {} skipped\n",
                        file.display(),
                        lines.len() - applied
                    ))
                }
                Err(ClientError::Rpc { message, .. }) => Err(CliError(format!("{}:{message}", file.display()))),
                Err(e) => Err(e.into()),
            }
        }
        Command::ForceClose { sid } => {
            c.call("iscsi_session_force_close", json!({ "sid": sid }))?;
            Ok(String::new())
        }
        Command::SaveConfig { output } => {
            let path = match output {
                Some(p) => Some(std::path::absolute(&p).map_err(|e| CliError(format!("{}: {e}", p.display())))?),
                None => None,
            };
            let r = c.call("framework_save_config", json!({ "path": path }))?;
            Ok(format!(
                "saved {}\n",
                r.get("path").and_then(Value::as_str).unwrap_or("")
            ))
        }
        Command::Rpc { method, params } => {
            let p: Value = serde_json::from_str(&params).map_err(|e| CliError(format!("params: {e}")))?;
            let r = c.call(&method, p)?;
            Ok(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n")
        }
        Command::ImportScst { .. } => Ok(String::new()),
    }
}

fn show_node(n: &Node) -> String {
    let mut out = format!("{}\n", if n.path.is_empty() { "/" } else { &n.path });
    let rows: Vec<Vec<String>> = n
        .attributes
        .iter()
        .map(|a| {
            vec![
                format!("{}{}", if a.key { "*" } else { " " }, a.name),
                a.value.clone(),
                if a.writable { "rw".into() } else { "ro".into() },
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&[" ATTRIBUTE", "VALUE", "MODE"], &rows));
    }
    for ch in &n.children {
        out.push_str(&format!("  {ch}/\n"));
    }
    out
}

fn list(c: &mut Client, what: ListWhat) -> Result<String, CliError> {
    match what {
        ListWhat::Portals => {
            let ps: Vec<Value> = decode(c.call("iscsi_get_portals", json!({}))?)?;
            let rows = ps
                .iter()
                .map(|p| {
                    vec![
                        p["address"].as_str().unwrap_or("").to_string(),
                        p["tpgt"].to_string(),
                        if p["listening"].as_bool().unwrap_or(false) { "yes".into() } else { "no".into() },
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(&["ADDRESS", "TPGT", "LISTENING"], &rows))
        }
        ListWhat::Targets => {
            let targets: Vec<Value> = decode(c.call("iscsi_get_target_nodes", json!({}))?)?;
            let rows = targets
                .iter()
                .map(|t| {
                    let count = |k: &str| t.get(k).and_then(Value::as_array).map_or(0, Vec::len).to_string();
                    vec![
                        t["name"].as_str().unwrap_or("").to_string(),
                        if t["enabled"].as_bool().unwrap_or(false) {
                            "1".into()
                        } else {
                            "0".into()
                        },
                        t["tid"].to_string(),
                        count("luns"),
                        count("ini_groups"),
                        t["sessions"].to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(&["NAME", "ENABLED", "TID", "LUNS", "GROUPS", "SESSIONS"], &rows))
        }
        ListWhat::Devices => {
            let devs: Vec<Value> = decode(c.call("bdev_get_bdevs", json!({}))?)?;
            let mut rows = Vec::new();
            for mut v in devs {
                let exported = v.get("exported").and_then(Value::as_array).map_or(0, Vec::len);
                let size = v.pointer("/state/size").and_then(Value::as_u64).unwrap_or(0);
                if let Some(o) = v.as_object_mut() {
                    o.remove("exported");
                    o.remove("state");
                }
                let d: DeviceConfig = decode(v)?;
                rows.push(vec![
                    d.name.clone(),
                    d.handler.as_str().to_string(),
                    human(size),
                    d.blocksize.bytes().to_string(),
                    d.filename
                        .map(|f| f.display().to_string())
                        .unwrap_or_else(|| "-".into()),
                    exported.to_string(),
                ]);
            }
            Ok(table(
                &["NAME", "HANDLER", "SIZE", "BLOCKSIZE", "FILENAME", "EXPORTED"],
                &rows,
            ))
        }
        ListWhat::Sessions { target } => {
            let ss: Vec<SessionInfo> = decode(c.call("iscsi_get_sessions", json!({ "name": target }))?)?;
            let rows = ss
                .iter()
                .map(|s| {
                    vec![
                        s.target.clone(),
                        s.initiator_name.clone(),
                        s.sid.clone(),
                        s.group.clone().unwrap_or_else(|| "-".into()),
                        s.luns.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                        s.connections.first().map(|c| c.ip.to_string()).unwrap_or_default(),
                        s.commands.to_string(),
                        s.active_commands.to_string(),
                        (s.read_bytes >> 10).to_string(),
                        (s.write_bytes >> 10).to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(
                &[
                    "TARGET",
                    "INITIATOR",
                    "SID",
                    "GROUP",
                    "LUNS",
                    "IP",
                    "COMMANDS",
                    "ACTIVE",
                    "READ_KB",
                    "WRITE_KB",
                ],
                &rows,
            ))
        }
        ListWhat::Groups { target } => {
            let gs: Vec<Value> = decode(c.call("iscsi_get_initiator_groups", json!({ "name": target }))?)?;
            let rows = gs
                .iter()
                .map(|g| {
                    let luns = g["group"]["luns"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|x| format!("{}={}", x["lun"], x["device"].as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    let inis = g["group"]["initiators"]
                        .as_array()
                        .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    // The group's own placement settings; "-": the target's applies.
                    let cpu_mask = g["group"]["cpu_mask"].as_str().unwrap_or("-").to_string();
                    let dedicated = match g["group"]["per_sess_dedicated_tgt_threads"].as_bool() {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    };
                    vec![
                        g["target"].as_str().unwrap_or("").to_string(),
                        g["group"]["name"].as_str().unwrap_or("").to_string(),
                        if inis.is_empty() { "-".into() } else { inis },
                        if luns.is_empty() { "-".into() } else { luns },
                        cpu_mask,
                        dedicated.to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(&["TARGET", "GROUP", "INITIATORS", "LUNS", "CPU_MASK", "DEDICATED"], &rows))
        }
        ListWhat::Luns { target } => {
            let cfg: Config = decode(c.call("framework_get_config", json!({}))?)?;
            let stats: Vec<crate::backend::LunStatsInfo> = decode(c.call("bdev_get_iostat", json!({}))?)?;
            let mut rows = Vec::new();
            for t in cfg
                .targets
                .iter()
                .filter(|t| target.as_deref().is_none_or(|n| n == t.name.as_str()))
            {
                let sets = std::iter::once((None, &t.luns))
                    .chain(t.ini_groups.iter().map(|g| (Some(g.name.clone()), &g.luns)));
                for (group, luns) in sets {
                    for l in luns {
                        let st = stats
                            .iter()
                            .find(|s| s.target == t.name.as_str() && s.group == group && s.lun == u64::from(l.lun));
                        rows.push(vec![
                            t.name.to_string(),
                            group.clone().unwrap_or_else(|| "-".into()),
                            l.lun.to_string(),
                            l.device.clone(),
                            if l.read_only { "1".into() } else { "0".into() },
                            st.map_or(0, |s| s.read_commands).to_string(),
                            st.map_or(0, |s| s.write_commands).to_string(),
                        ]);
                    }
                }
            }
            Ok(table(
                &["TARGET", "GROUP", "LUN", "DEVICE", "READ_ONLY", "READS", "WRITES"],
                &rows,
            ))
        }
        ListWhat::Connections => {
            let cs: Vec<ConnectionInfo> = decode(c.call("iscsi_get_connections", json!({}))?)?;
            let rows = cs
                .iter()
                .map(|x| {
                    vec![
                        x.reactor.to_string(),
                        x.ip.to_string(),
                        x.portal.to_string(),
                        x.state.clone(),
                        x.session_type.clone().unwrap_or_else(|| "-".into()),
                        x.initiator_name.clone().unwrap_or_else(|| "-".into()),
                        x.target_name.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(
                &["REACTOR", "IP", "PORTAL", "STATE", "TYPE", "INITIATOR", "TARGET"],
                &rows,
            ))
        }
        ListWhat::Reactors => {
            let r = c.call("framework_get_reactors", json!({}))?;
            let rs: Vec<ReactorInfo> = decode(r["reactors"].clone())?;
            let rows = rs
                .iter()
                .map(|r| {
                    let total = (r.busy_ns + r.idle_ns).max(1);
                    vec![
                        r.id.to_string(),
                        r.tid.to_string(),
                        r.core.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                        format!("{:.1}", 100.0 * r.busy_ns as f64 / total as f64),
                        r.connections.to_string(),
                        r.datapath.commands.to_string(),
                        r.pollers
                            .iter()
                            .map(|p| format!("{}={}/{}", p.name, p.busy_runs, p.runs))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(table(
                &[
                    "REACTOR",
                    "TID",
                    "CORE",
                    "BUSY%",
                    "CONNECTIONS",
                    "COMMANDS",
                    "POLLERS(busy/runs)",
                ],
                &rows,
            ))
        }
    }
}

fn import_scst(file: &Path, output: Option<&Path>, lenient: bool) -> Result<String, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| CliError(format!("{}: {e}", file.display())))?;
    let origin = file.display().to_string();
    let im = crate::scst_conf::import(&text, &origin, lenient).map_err(|e| CliError(e.to_string()))?;
    for w in &im.warnings {
        eprintln!("polltgt: {origin}:{w} (left out)");
    }
    let yaml = crate::save::minimal_yaml(&im.config).map_err(|e| CliError(e.to_string()))?;
    let yaml = format!("# imported from {origin} by polltgt import-scst\n{yaml}");
    match output {
        Some(out) => {
            crate::save::write_atomically(out, yaml.as_bytes())
                .map_err(|e| CliError(format!("{}: {e}", out.display())))?;
            Ok(String::new())
        }
        None => Ok(yaml),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
        assert_eq!(human(1 << 30), "1G");
        assert_eq!(human(1536 << 10), "1536K");
        assert_eq!(human(1000), "1000");
    }
}
