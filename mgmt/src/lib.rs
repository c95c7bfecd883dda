//! polltgt management: the configuration model (YAML file = RPC parameters), its validation with precise errors,
//! the embedded default configuration; the object tree and the management library over it ([`Manager`], driving the
//! running target through the [`backend::Backend`] trait the binary implements), the JSON-RPC 2.0 server and
//! client, the CLI subcommands, SCST compatibility (management strings, scst.conf import), `save-config` and
//! Prometheus metrics.
//!
//! ```
//! let config = polltgt_mgmt::Config::from_yaml_str(
//!     "devices: [ { name: disk1, handler: ram, size: 64M } ]\n\
//!      targets: [ { name: \"iqn.2026-11.io.polltgt:disk1\", luns: [ { lun: 0, device: disk1 } ] } ]\n",
//!     "example.yaml",
//! )?;
//! assert_eq!(config.targets[0].target_params().max_burst_length, 1 << 20);
//! # Ok::<(), polltgt_mgmt::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
mod locate;
pub mod manager;
pub mod metrics;
pub mod protocol;
pub mod redact;
pub mod rpc;
pub mod save;
pub mod scst;
pub mod scst_conf;
pub mod server;
pub mod tree;
pub mod values;

pub use config::{
    Config, DeviceConfig, Handler, IdlePolicy, IniGroupConfig, IscsiConfig, LunConfig, MgmtConfig, PortalConfig,
    ReactorsConfig, TargetConfig, DEFAULT_PORTAL, DEFAULT_RPC_SOCKET, DEFAULT_STATE_DIR, DEFAULT_TARGET_NAME,
};
pub use error::{ConfigError, Diagnostic, FieldPath, Segment};
pub use manager::{Manager, MgmtError};
pub use values::{BlockSize, ChapAccount, CpuMask, Digests, InvalidValue, Size, TargetName};
