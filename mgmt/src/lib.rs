//! polltgt management: the configuration model (YAML file = RPC parameters), its validation with precise errors,
//! and the embedded default configuration.
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

pub mod config;
pub mod error;
mod locate;
pub mod values;

pub use config::{
    Config, DeviceConfig, Handler, IdlePolicy, IscsiConfig, LunConfig, PortalConfig, ReactorsConfig,
    TargetConfig, DEFAULT_PORTAL, DEFAULT_TARGET_NAME,
};
pub use error::{ConfigError, Diagnostic, FieldPath, Segment};
pub use values::{BlockSize, ChapAccount, CpuMask, Digests, InvalidValue, Size, TargetName};
