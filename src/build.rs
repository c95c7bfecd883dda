//! Turns a validated configuration into running objects: bdevs, logical units, targets, portals and reactors.

use std::sync::Arc;

use anyhow::Context;
use polltgt_bdev::{Bdev, CdromBdev, FileBdev, FileOptions, NullBdev, RamBdev};
use polltgt_dataplane::isns::IsnsConfig;
use polltgt_dataplane::reactor::{IdleMode, ReactorConfig};
use polltgt_dataplane::registry::{Portal, Registry};
use polltgt_dataplane::server::{PortalConfig, Server, ServerOptions};
use polltgt_hugepages::{BufPool, PoolConfig, RegionOptions};
use polltgt_mgmt::{Config, DeviceConfig, Handler, IdlePolicy};
use polltgt_scsi::LuConfig;

/// Largest READ/WRITE a command may transfer (Block Limits VPD MAXIMUM TRANSFER LENGTH): bounds the buffer one
/// command can take from the pool. The iSCSI layer refuses longer writes before buffering them: one limit.
const MAX_TRANSFER_BYTES: u32 = polltgt_iscsi::params::MAX_TRANSFER_LENGTH;

/// Build every device and target of `cfg` and start serving. Returns the server and its data buffer pool.
pub fn start(cfg: &Config) -> anyhow::Result<(Server, BufPool)> {
    let registry = Registry::new();
    for d in &cfg.devices {
        let bdev = open_bdev(d).with_context(|| format!("device {:?}", d.name))?;
        let lu = lu_config(d, bdev.as_ref());
        registry.add_device(&d.name, bdev, lu)?;
    }
    for t in &cfg.targets {
        // LUN maps, CHAP, initiator groups and ACL attributes, as the management layer builds them at run time.
        let entry = crate::live::target_entry(&registry, t).with_context(|| format!("target {}", t.name))?;
        registry.put_target(entry);
    }
    registry.set_discovery_credentials(cfg.discovery_credentials());
    restore_reservations(&registry, &cfg.state_dir)?;
    registry.set_driver_enabled(cfg.iscsi.enabled);
    registry.set_digest_faults(cfg.iscsi.debug_digest_failures.to_faults());
    registry.set_login_timeout(cfg.iscsi.login_timeout());
    let portals: Vec<PortalConfig> =
        cfg.portals.iter().map(|p| PortalConfig { addr: p.address, tpgt: p.tpgt }).collect();
    let reactor_cfg = ReactorConfig {
        count: cfg.reactors.reactor_count(),
        cpus: cfg.reactors.cpu_mask.as_ref().map(|m| m.cpus().to_vec()).unwrap_or_default(),
        pin: true,
        idle: match cfg.reactors.idle {
            Some(IdlePolicy::Poll) => IdleMode::Poll,
            Some(IdlePolicy::Interrupt) | None => IdleMode::interrupt(),
        },
    };
    let pool_cfg = PoolConfig {
        max_bytes: cfg.reactors.buffer_pool_max.map(|s| s.bytes() as usize),
        ..PoolConfig::default()
    };
    let pool = BufPool::new(pool_cfg)?;
    let options = ServerOptions {
        zerocopy_threshold: cfg.reactors.zerocopy_threshold.map(|s| s.bytes() as usize),
    };
    let server = Server::start_with(registry, &portals, &reactor_cfg, pool.clone(), &options)?;
    if let Some(isns) = &cfg.iscsi.isns_server {
        server.start_isns(isns_config(isns, server.portals())).context("starting the iSNS client")?;
    }
    Ok((server, pool))
}

/// How often the iSNS client checks registrations and discovery domains.
const ISNS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The iSNS client's settings (at start and when the management plane changes `iSNSServer`): the configured
/// server, and an Entity Identifier unique per host and portal.
pub(crate) fn isns_config(isns: &polltgt_mgmt::protocol::IsnsServer, portals: &[Portal]) -> IsnsConfig {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let portal = portals.first().map(|p| p.addr.to_string()).unwrap_or_default();
    IsnsConfig {
        server: isns.address(),
        access_control: isns.access_control,
        interval: ISNS_INTERVAL,
        entity_id: format!("polltgt:{host}:{portal}"),
    }
}

/// Persistent reservations made with APTPL live under `state_dir`; bring back what a previous run stored.
fn restore_reservations(registry: &Registry, state_dir: &std::path::Path) -> anyhow::Result<()> {
    registry.set_state_dir(state_dir);
    if let Some(store) = registry.pr_store() {
        polltgt_dataplane::pr_store::restore_all(registry, &store).context("restoring persistent reservations")?;
    }
    Ok(())
}

pub(crate) fn open_bdev(d: &DeviceConfig) -> anyhow::Result<Arc<dyn Bdev>> {
    let block_size = d.blocksize.bytes();
    let blocks = |bytes: u64| bytes / u64::from(block_size);
    Ok(match d.handler {
        Handler::Ram => {
            let size = d.size_bytes().context("size is required")?;
            Arc::new(RamBdev::new(&d.name, block_size, blocks(size), &RegionOptions::default())?)
        }
        Handler::VdiskNullio => {
            let size = d.size_bytes().context("size is required")?;
            Arc::new(NullBdev::new(&d.name, block_size, blocks(size))?)
        }
        Handler::VdiskFileio | Handler::VdiskBlockio => {
            let path = d.filename.as_ref().context("filename is required")?;
            let opts = FileOptions {
                o_direct: d.o_direct || d.iopoll,
                iopoll: d.iopoll,
                rotational: Some(d.rotational),
                threads: d.threads_num.map_or(FileOptions::default().threads, |n| n as usize),
                ..FileOptions::default()
            };
            Arc::new(
                FileBdev::open(&d.name, path, block_size, d.read_only, opts)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )
        }
        Handler::Vcdrom => Arc::new(CdromBdev::new(&d.name, d.filename.as_deref()).with_context(|| {
            format!("cannot open {}", d.filename.as_deref().unwrap_or(std::path::Path::new("")).display())
        })?),
    })
}

/// The SCSI identity of a device: configured values, or defaults derived from the name like SCST does.
pub(crate) fn lu_config(d: &DeviceConfig, bdev: &dyn Bdev) -> LuConfig {
    let info = bdev.info();
    // NAA 3 (locally assigned, SPC-4 §7.8.6.6.2): the designator stays the same across restarts.
    let hash = name_hash(&d.name);
    let naa_id = (0x3 << 60) | (hash & 0x0fff_ffff_ffff_ffff);
    LuConfig {
        block_size: info.block_size,
        physical_block_size: d.physical_blocksize.unwrap_or(0),
        num_blocks: info.num_blocks,
        read_only: d.read_only,
        removable: d.removable,
        rotational: d.rotational,
        write_cache: !d.write_through,
        nv_cache: d.nv_cache,
        thin_provisioned: d.thin_provisioned,
        vendor: d.t10_vend_id.clone().unwrap_or_else(|| "POLLTGT".to_string()),
        product: d.prod_id.clone().unwrap_or_else(|| d.name.chars().take(16).collect()),
        revision: d.prod_rev_lvl.clone().unwrap_or_else(|| "0100".to_string()),
        serial: d.usn.clone().unwrap_or_else(|| format!("{:08x}", hash as u32)),
        device_id: d.t10_dev_id.clone().unwrap_or_else(|| d.name.clone()),
        naa_id,
        max_transfer_blocks: (MAX_TRANSFER_BYTES / info.block_size.max(1)),
        // A vcdrom is a read-only, removable MMC device whose medium may be absent (no filename).
        device_type: if d.handler == Handler::Vcdrom {
            polltgt_scsi::DeviceType::Cdrom
        } else {
            polltgt_scsi::DeviceType::Disk
        },
        medium: d.handler != Handler::Vcdrom || d.filename.is_some(),
    }
}

/// A stable 64-bit identifier from a device name (FNV-1a), so NAA designators and serial numbers survive restarts.
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
