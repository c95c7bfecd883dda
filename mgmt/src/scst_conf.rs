//! `import-scst`: scstadmin's `scst.conf` (scst.conf(5)) to polltgt's configuration.
//!
//! The file is a tree of sections (`HANDLER`, `DEVICE`, `TARGET_DRIVER`, `TARGET`, `LUN`, `GROUP`) holding attribute
//! lines (`name value`, values with blanks in double quotes) and `INITIATOR` entries; `#` starts a comment unless
//! escaped as `\#` (per-portal initiator names contain `#`). Every attribute polltgt has is translated with the same
//! checks a YAML file gets. What polltgt does not have (other handlers and target drivers, ALUA device groups,
//! ...) is an error naming the line, or with `lenient` a warning, and the object is left out (with LUNs that
//! would map a left-out device). scstadmin semantics are kept: a target or the iSCSI driver without `enabled 1` is
//! disabled.

use crate::config::{Config, DeviceConfig, Handler, IniGroupConfig, LunConfig, TargetConfig};
use crate::manager::MgmtError;
use crate::scst::{apply_target_attribute, set_device_param, NULLIO_DEFAULT_SIZE_MB};
use crate::tree;
use crate::values::ChapAccount;

/// A problem at a line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not well-formed (unbalanced braces, a line that is neither an attribute nor a section).
    #[error("{origin}:{0}", origin = .1)]
    Syntax(Finding, String),
    /// Attributes or objects polltgt cannot represent, or invalid values; all of them, in line order.
    #[error("{}", .0.iter().map(|f| format!("{}:{f}", .1)).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<Finding>, String),
    /// The result does not pass the configuration's checks.
    #[error("{0}")]
    Invalid(String),
}

/// The import result: the configuration, and what was left out (lenient mode only).
#[derive(Debug, Clone)]
pub struct Imported {
    pub config: Config,
    pub warnings: Vec<Finding>,
}

#[derive(Debug)]
enum Item {
    Attr {
        line: usize,
        key: String,
        args: Vec<String>,
    },
    Section {
        line: usize,
        key: String,
        args: Vec<String>,
        body: Vec<Item>,
    },
}

/// Tokens of one line: words and double-quoted strings; comments removed.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some() => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    has = true;
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            '#' if !in_quotes => break,
            c if c.is_whitespace() && !in_quotes => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

fn parse(text: &str, origin: &str) -> Result<Vec<Item>, ImportError> {
    let mut stack: Vec<(usize, String, Vec<String>, Vec<Item>)> = vec![(0, String::new(), Vec::new(), Vec::new())];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut t = tokens(raw);
        if t.is_empty() {
            continue;
        }
        if t.len() == 1 && t[0] == "}" {
            if stack.len() == 1 {
                return Err(ImportError::Syntax(
                    Finding {
                        line,
                        message: "'}' without an open section".into(),
                    },
                    origin.into(),
                ));
            }
            if let Some((l, key, args, body)) = stack.pop() {
                if let Some(top) = stack.last_mut() {
                    top.3.push(Item::Section {
                        line: l,
                        key,
                        args,
                        body,
                    });
                }
            }
            continue;
        }
        let opens = t.last().is_some_and(|x| x == "{");
        if opens {
            t.pop();
        } else if let Some(last) = t.last_mut() {
            // "LUN 0 disk1{" is written without a blank by some tools.
            if last.len() > 1 && last.ends_with('{') {
                last.pop();
                let key = t.remove(0);
                stack.push((line, key, t, Vec::new()));
                continue;
            }
        }
        if t.is_empty() {
            return Err(ImportError::Syntax(
                Finding {
                    line,
                    message: "'{' without a section name".into(),
                },
                origin.into(),
            ));
        }
        let key = t.remove(0);
        if opens {
            stack.push((line, key, t, Vec::new()));
        } else if let Some(top) = stack.last_mut() {
            top.3.push(Item::Attr { line, key, args: t });
        }
    }
    if stack.len() > 1 {
        let (line, key, _, _) = &stack[stack.len() - 1];
        return Err(ImportError::Syntax(
            Finding {
                line: *line,
                message: format!("section {key} is not closed"),
            },
            origin.into(),
        ));
    }
    Ok(stack.pop().map(|s| s.3).unwrap_or_default())
}

struct Importer {
    lenient: bool,
    problems: Vec<Finding>,
    skipped_devices: Vec<String>,
    config: Config,
}

impl Importer {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Finding {
            line,
            message: message.into(),
        });
    }

    fn handler(&mut self, line: usize, name: &str, body: &[Item]) {
        let handler = match name {
            "vdisk_fileio" => Handler::VdiskFileio,
            "vdisk_blockio" => Handler::VdiskBlockio,
            "vdisk_nullio" => Handler::VdiskNullio,
            "vcdrom" => Handler::Vcdrom,
            _ => {
                self.problem(
                    line,
                    format!(
                        "handler {name} is not supported by polltgt (vdisk_fileio, vdisk_blockio, vdisk_nullio, vcdrom)"
                    ),
                );
                for item in body {
                    let (Item::Section { key, args, .. } | Item::Attr { key, args, .. }) = item;
                    if key == "DEVICE" {
                        if let Some(d) = args.first() {
                            self.skipped_devices.push(d.clone());
                        }
                    }
                }
                return;
            }
        };
        for item in body {
            match item {
                Item::Attr { line, key, args } if key == "DEVICE" && args.len() == 1 => {
                    self.device(*line, handler, &args[0], &[]);
                }
                Item::Section { line, key, args, body } if key == "DEVICE" && args.len() == 1 => {
                    self.device(*line, handler, &args[0], body);
                }
                Item::Attr { line, key, .. } | Item::Section { line, key, .. } => {
                    self.problem(*line, format!("handler attribute {key} is not supported"));
                }
            }
        }
    }

    fn device(&mut self, line: usize, handler: Handler, name: &str, body: &[Item]) {
        let mut dev = DeviceConfig::new(name, handler);
        for item in body {
            match item {
                // polltgt's I/O threads are one pool per device shared by every initiator.
                Item::Attr { key, args, .. } if key == "threads_pool_type" && args.join(" ") == "shared" => {}
                Item::Attr { line, key, .. } if key == "threads_pool_type" => self.problem(
                    *line,
                    format!("device {name}: threads_pool_type: polltgt has one I/O thread pool per device, shared by every initiator (shared)"),
                ),
                Item::Attr { line, key, args } => {
                    let value = args.join(" ");
                    if let Err(e) = set_device_param(&mut dev, key, &value) {
                        self.problem(*line, format!("device {name}: {e}"));
                    }
                }
                Item::Section { line, key, .. } => {
                    self.problem(*line, format!("unexpected section {key} in DEVICE {name}"))
                }
            }
        }
        if handler == Handler::VdiskNullio && dev.size_bytes().is_none() {
            dev.size_mb = Some(NULLIO_DEFAULT_SIZE_MB);
        }
        if self.config.device(name).is_some() {
            self.problem(line, format!("device {name} is defined twice"));
            return;
        }
        self.config.devices.push(dev);
    }

    fn driver(&mut self, line: usize, name: &str, body: &[Item]) {
        if name != "iscsi" {
            self.problem(
                line,
                format!("target driver {name} is not supported by polltgt (iscsi)"),
            );
            return;
        }
        self.config.iscsi.enabled = false;
        for item in body {
            match item {
                Item::Attr { line, key, args } => {
                    let value = args.join(" ");
                    match key.as_str() {
                        "enabled" => match tree::parse_flag(&value) {
                            Ok(v) => self.config.iscsi.enabled = v,
                            Err(e) => self.problem(*line, format!("iscsi enabled: {e}")),
                        },
                        k if k.starts_with("IncomingUser") || k == "OutgoingUser" => {
                            match serde_json::from_value::<ChapAccount>(serde_json::Value::String(value.clone())) {
                                Ok(acc) if k == "OutgoingUser" => self.config.iscsi.outgoing_user = Some(acc),
                                Ok(acc) => self.config.iscsi.incoming_users.push(acc),
                                Err(e) => self.problem(*line, format!("iscsi {k}: {e}")),
                            }
                        }
                        "iSNSServer" => match value.parse::<crate::protocol::IsnsServer>() {
                            Ok(v) => self.config.iscsi.isns_server = Some(v),
                            Err(e) => self.problem(*line, format!("iscsi iSNSServer: {e}")),
                        },
                        _ => self.problem(
                            *line,
                            format!("iscsi driver attribute {key} is not supported by polltgt"),
                        ),
                    }
                }
                Item::Section { line, key, args, body } if key == "TARGET" && args.len() == 1 => {
                    self.target(*line, &args[0], body)
                }
                Item::Section { line, key, .. } => {
                    self.problem(*line, format!("unexpected section {key} in TARGET_DRIVER iscsi"))
                }
            }
        }
    }

    fn lun(&mut self, line: usize, args: &[String], body: &[Item], owner: &str) -> Option<LunConfig> {
        let [n, dev] = args else {
            self.problem(line, format!("{owner}: expected LUN NUMBER DEVICE"));
            return None;
        };
        let Ok(num) = n.parse::<u16>() else {
            self.problem(line, format!("{owner}: {n:?} is not a LUN number"));
            return None;
        };
        if self.skipped_devices.contains(dev) {
            self.problem(line, format!("{owner}: LUN {num} maps device {dev}, which is left out"));
            return None;
        }
        let mut lun = LunConfig::new(num, dev);
        for item in body {
            match item {
                Item::Attr { line, key, args } if key == "read_only" => match tree::parse_flag(&args.join(" ")) {
                    Ok(v) => lun.read_only = v,
                    Err(e) => self.problem(*line, format!("{owner}: LUN {num} read_only: {e}")),
                },
                Item::Attr { line, key, .. } | Item::Section { line, key, .. } => self.problem(
                    *line,
                    format!("{owner}: LUN attribute {key} is not supported (read_only)"),
                ),
            }
        }
        Some(lun)
    }

    fn target(&mut self, line: usize, name: &str, body: &[Item]) {
        let tname = match crate::manager::target_name(name) {
            Ok(n) => n,
            Err(e) => {
                self.problem(line, format!("target {name}: {e}"));
                return;
            }
        };
        let mut t = TargetConfig::new(tname);
        t.enabled = false;
        for item in body {
            match item {
                Item::Attr { line, key, args } if key == "LUN" => {
                    if let Some(l) = self.lun(*line, args, &[], name) {
                        t.luns.push(l);
                    }
                }
                Item::Section { line, key, args, body } if key == "LUN" => {
                    if let Some(l) = self.lun(*line, args, body, name) {
                        t.luns.push(l);
                    }
                }
                Item::Section { line, key, args, body } if key == "GROUP" && args.len() == 1 => {
                    let mut g = IniGroupConfig::new(&args[0]);
                    let owner = format!("{name} group {}", args[0]);
                    for gi in body {
                        match gi {
                            Item::Attr { line, key, args } if key == "LUN" => {
                                if let Some(l) = self.lun(*line, args, &[], &owner) {
                                    g.luns.push(l);
                                }
                            }
                            Item::Section { line, key, args, body } if key == "LUN" => {
                                if let Some(l) = self.lun(*line, args, body, &owner) {
                                    g.luns.push(l);
                                }
                            }
                            Item::Attr { key, args, .. } if key == "INITIATOR" && args.len() == 1 => {
                                g.initiators.push(args[0].clone())
                            }
                            Item::Attr { line, key, args } if crate::tree::GROUP_WRITABLE.contains(&key.as_str()) => {
                                if let Err(e) = crate::tree::set_group_attr(&mut g, key, &args.join(" ")) {
                                    self.problem(*line, format!("{owner}: {e}"));
                                }
                            }
                            Item::Attr { line, key, .. } | Item::Section { line, key, .. } => self.problem(
                                *line,
                                format!(
                                    "{owner}: {key} is not supported (LUN, INITIATOR, {})",
                                    crate::tree::GROUP_WRITABLE.join(", ")
                                ),
                            ),
                        }
                    }
                    t.ini_groups.push(g);
                }
                Item::Attr { line, key, args } => {
                    let value = args.join(" ");
                    if let Err(e) = apply_target_attribute(&mut t, key, &value, true) {
                        self.problem(*line, format!("target {name}: {e}"));
                    }
                }
                Item::Section { line, key, .. } => {
                    self.problem(*line, format!("target {name}: unexpected section {key}"))
                }
            }
        }
        self.config.targets.push(t);
    }
}

/// Translate an scst.conf text (named `origin` in messages). Without `lenient`, anything polltgt cannot represent
/// is an error listing every such line; with it, those are left out and returned as warnings.
pub fn import(text: &str, origin: &str, lenient: bool) -> Result<Imported, ImportError> {
    let items = parse(text, origin)?;
    let mut config = Config::from_yaml_str("", origin).map_err(|e| ImportError::Invalid(e.to_string()))?;
    config.devices.clear();
    let mut im = Importer {
        lenient,
        problems: Vec::new(),
        skipped_devices: Vec::new(),
        config,
    };
    // Devices first, so LUNs can refer to them whatever the order in the file.
    for item in &items {
        if let Item::Section { line, key, args, body } = item {
            if key == "HANDLER" && args.len() == 1 {
                im.handler(*line, &args[0], body);
            }
        }
    }
    for item in &items {
        match item {
            Item::Section { key, .. } if key == "HANDLER" => {}
            Item::Section { line, key, args, body } if key == "TARGET_DRIVER" && args.len() == 1 => {
                im.driver(*line, &args[0], body)
            }
            Item::Section { line, key, .. } => im.problem(*line, format!("section {key} is not supported by polltgt")),
            Item::Attr { line, key, .. } => {
                im.problem(*line, format!("SCST attribute {key} is not supported by polltgt"))
            }
        }
    }
    im.problems.sort_by_key(|f| f.line);
    if !im.problems.is_empty() && !im.lenient {
        return Err(ImportError::Unsupported(im.problems, origin.into()));
    }
    im.config.validate().map_err(|e| ImportError::Invalid(e.to_string()))?;
    Ok(Imported {
        config: im.config,
        warnings: im.problems,
    })
}

impl From<ImportError> for MgmtError {
    fn from(e: ImportError) -> Self {
        MgmtError::invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# comment
HANDLER vdisk_fileio {
	DEVICE disk1 {
		filename /disk1
		nv_cache 1
	}
}
HANDLER vdisk_nullio {
	DEVICE nullio
}
TARGET_DRIVER iscsi {
	enabled 1
	IncomingUser "joe 12charsecret"
	TARGET iqn.2006-10.net.vlnb:tgt {
		enabled 1
		HeaderDigest CRC32C,None
		LUN 0 disk1
		LUN 26 nullio {
			read_only 1
		}
		GROUP g1 {
			LUN 0 nullio
			INITIATOR iqn.2005-03.org.open-iscsi:cacdcd2520\#10.170.77.2
			INITIATOR "iqn.1993-08.org.debian:*"   # trailing comment
		}
	}
}
"#;

    #[test]
    fn sections_attributes_luns_groups_and_escapes() {
        let im = import(SAMPLE, "scst.conf", false).unwrap();
        let c = im.config;
        assert!(im.warnings.is_empty());
        assert!(c.iscsi.enabled);
        assert_eq!(c.iscsi.incoming_users[0].user, "joe");
        assert_eq!(c.devices.len(), 2);
        assert!(c.device("disk1").unwrap().nv_cache);
        assert_eq!(c.device("nullio").unwrap().size_bytes(), Some(5 << 39));
        let t = &c.targets[0];
        assert!(t.enabled);
        assert_eq!(t.header_digest.to_string(), "CRC32C,None");
        assert_eq!(
            t.luns,
            vec![
                LunConfig::new(0, "disk1"),
                LunConfig {
                    read_only: true,
                    ..LunConfig::new(26, "nullio")
                }
            ]
        );
        assert_eq!(
            t.ini_groups[0].initiators,
            vec![
                "iqn.2005-03.org.open-iscsi:cacdcd2520#10.170.77.2",
                "iqn.1993-08.org.debian:*"
            ]
        );
        assert_eq!(t.ini_groups[0].luns, vec![LunConfig::new(0, "nullio")]);
    }

    #[test]
    fn unsupported_items_are_errors_or_warnings_with_lines() {
        let text = "HANDLER dev_disk {\n  DEVICE cd {\n    filename /x.iso\n  }\n}\nTARGET_DRIVER iscsi {\n  internal_portal \"1.2.3.4\"\n  TARGET iqn.2026-11.io.x:t {\n    LUN 0 cd\n  }\n}\n";
        let e = import(text, "s.conf", false).unwrap_err().to_string();
        assert!(e.contains("s.conf:line 1: handler dev_disk"), "{e}");
        assert!(e.contains("line 7: iscsi driver attribute internal_portal"), "{e}");
        assert!(
            e.contains("line 9:") && e.contains("device cd, which is left out"),
            "{e}"
        );
        let im = import(text, "s.conf", true).unwrap();
        assert_eq!(im.warnings.len(), 3);
        assert!(im.config.devices.is_empty() && im.config.targets[0].luns.is_empty());
        assert!(!im.config.iscsi.enabled && !im.config.targets[0].enabled);
    }

    /// Every run-time changeable device attribute SCST writes to scst.conf translates, and save-config writes it
    /// back.
    #[test]
    fn device_attributes_translate_and_round_trip() {
        let text = "HANDLER vdisk_fileio {\n DEVICE d {\n  filename /d.img\n  threads_num 8\n  threads_pool_type shared\n  \
                    nv_cache 1\n  write_through 1\n  rotational 0\n  removable 1\n  read_only 1\n  t10_vend_id ACME\n  \
                    prod_id ROCKET\n  prod_rev_lvl 0042\n  t10_dev_id dev-d\n  usn 0123\n }\n}\n";
        let c = import(text, "a.conf", false).unwrap().config;
        let d = c.device("d").unwrap();
        assert_eq!(d.threads_num, Some(8));
        assert!(d.nv_cache && d.write_through && !d.rotational && d.removable && d.read_only);
        assert_eq!(
            [&d.t10_vend_id, &d.prod_id, &d.prod_rev_lvl, &d.t10_dev_id, &d.usn].map(|v| v.as_deref()),
            [Some("ACME"), Some("ROCKET"), Some("0042"), Some("dev-d"), Some("0123")]
        );
        let yaml = crate::save::minimal_yaml(&c).unwrap();
        assert_eq!(Config::from_yaml_str(&yaml, "saved.yaml").unwrap(), c, "{yaml}");
        // SCST's per_initiator pools do not exist here; a thread count on a RAM-less null device neither.
        let e = import(&text.replace("shared", "per_initiator"), "a.conf", false).unwrap_err().to_string();
        assert!(e.contains("line 5: device d: threads_pool_type"), "{e}");
        let e = import("HANDLER vdisk_nullio {\n DEVICE n {\n  threads_num 2\n }\n}\n", "n.conf", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("threads_num applies to vdisk_fileio and vdisk_blockio"), "{e}");
    }

    /// SCST keeps `cpu_mask` on targets and security groups (Linux's bitmap format in its sysfs) and
    /// `per_sess_dedicated_tgt_threads` on groups: both translate, and save-config writes them back.
    #[test]
    fn group_and_target_placement_translate_and_round_trip() {
        let text = "HANDLER vdisk_nullio {\n DEVICE n\n}\nTARGET_DRIVER iscsi {\n TARGET iqn.2026-11.io.x:t {\n  \
                    cpu_mask 00000000,00000001\n  LUN 0 n\n  GROUP fast {\n   LUN 0 n\n   INITIATOR iqn.x:a\n   \
                    cpu_mask 6\n   per_sess_dedicated_tgt_threads 1\n  }\n  GROUP slow {\n   LUN 0 n\n  }\n }\n}\n";
        let c = import(text, "p.conf", false).unwrap().config;
        let t = &c.targets[0];
        assert_eq!(t.cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![0]));
        let fast = t.group("fast").unwrap();
        assert_eq!(fast.cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![1, 2]));
        assert_eq!(fast.per_sess_dedicated_tgt_threads, Some(true));
        let slow = t.group("slow").unwrap();
        assert_eq!((slow.cpu_mask.as_ref(), slow.per_sess_dedicated_tgt_threads), (None, None));
        let yaml = crate::save::minimal_yaml(&c).unwrap();
        assert_eq!(Config::from_yaml_str(&yaml, "saved.yaml").unwrap(), c, "{yaml}");
        let e = import(&text.replace("cpu_mask 6", "cpu_mask xyz"), "p.conf", false).unwrap_err().to_string();
        assert!(e.contains("p.conf:line 11: iqn.2026-11.io.x:t group fast:") && e.contains("cpu_mask"), "{e}");
        let e = import(&text.replace("cpu_mask 6", "io_grouping_type auto"), "p.conf", false).unwrap_err().to_string();
        assert!(e.contains("line 11:") && e.contains("io_grouping_type is not supported"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = import("HANDLER vdisk_fileio {\n  DEVICE d {\n}\n", "x.conf", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.conf:line 1: section HANDLER is not closed"), "{e}");
        let e = import("}\n", "x.conf", false).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = import(
            "HANDLER vdisk_fileio {\n DEVICE d {\n  blocksize 1000\n  filename /d\n }\n}\n",
            "x.conf",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3: device d: blocksize: 1000"), "{e}");
    }
}
