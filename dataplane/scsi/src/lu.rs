//! The logical unit: configuration, command dispatch and unit attention / medium state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sanitize::{SanitizePhase, SanitizeState};
use std::sync::{Arc, PoisonError, RwLock};

use crate::cdb::Cdb;
use crate::lun::check_control;
use crate::mode::{ModeState, D_SENSE, SWP, WCE};
use crate::nexus::NexusTable;
use crate::ops::{lookup_in, Lookup, Table, DISK, MMC, NEEDS_MEDIUM, THIN_ONLY, UA_EXEMPT, WRITES};
use crate::sense::Sense;
use crate::{inquiry, opcode, Action, Command, IoResult, NexusId, Response, Status};

/// The configuration of a direct-access (SBC) logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// Logical block length in bytes.
    pub block_size: u32,
    /// Physical block length in bytes (SPDK's `physical_block_size`): a power of two multiple of `block_size`, at
    /// most 2^15 logical blocks. READ CAPACITY (16) reports it as LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-3
    /// §5.16.2) with LOWEST ALIGNED LOGICAL BLOCK ADDRESS 0, and the Block Limits VPD page as OPTIMAL TRANSFER LENGTH
    /// GRANULARITY (and the least OPTIMAL UNMAP GRANULARITY). 0: the same as `block_size`.
    pub physical_block_size: u32,
    /// Capacity in logical blocks.
    pub num_blocks: u64,
    /// Write protected: the WP bit of the mode parameter header, and every write fails with 07/27/00.
    pub read_only: bool,
    /// Removable medium (RMB): START STOP UNIT can eject and load it, PREVENT ALLOW MEDIUM REMOVAL applies.
    pub removable: bool,
    /// Rotating medium; `false` reports MEDIUM ROTATION RATE 1 (non-rotating) in the Block Device
    /// Characteristics VPD page.
    pub rotational: bool,
    /// Volatile write cache enabled: the default and initial WCE bit of the Caching mode page (changeable with MODE
    /// SELECT). With WCE = 0 every write is written through ([`Action::Write`] with `fua`).
    pub write_cache: bool,
    /// Non-volatile cache (SCST `nv_cache`): the bdev's cache survives power loss, so SYNCHRONIZE CACHE completes
    /// without flushing and FUA is not passed on (SBC-3 §5.26: the data are already on non-volatile media).
    pub nv_cache: bool,
    /// Thin provisioned (SCST `thin_provisioned`): logical block provisioning management (LBPME) is reported in
    /// READ CAPACITY (16) with LBPRZ (unmapped blocks read as zeros), the Logical Block Provisioning VPD page
    /// reports UNMAP and WRITE SAME (10/16) with the UNMAP bit, and GET LBA STATUS asks the bdev which blocks are
    /// deallocated. A fully provisioned logical unit rejects UNMAP and the UNMAP bit.
    pub thin_provisioned: bool,
    /// T10 VENDOR IDENTIFICATION (SCST t10_vend_id), up to 8 ASCII characters.
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (SCST prod_id), up to 16 ASCII characters.
    pub product: String,
    /// PRODUCT REVISION LEVEL, up to 4 ASCII characters.
    pub revision: String,
    /// Unit serial number (SCST usn), VPD page 80h.
    pub serial: String,
    /// Vendor specific identifier of the T10 vendor ID designator (SCST t10_dev_id), VPD page 83h.
    pub device_id: String,
    /// The 8-byte NAA identifier (NAA 2, 3, 5 or 6 format, first nibble) reported as the NAA designator of VPD page
    /// 83h; 0 leaves the designator out.
    pub naa_id: u64,
    /// MAXIMUM TRANSFER LENGTH in logical blocks (Block Limits VPD page); longer READ/WRITE/VERIFY commands fail
    /// with INVALID FIELD IN CDB. 0 = no limit.
    pub max_transfer_blocks: u32,
    /// Peripheral device type: a disk (SBC-3) or a CD-ROM (MMC; read-only, removable).
    pub device_type: crate::DeviceType,
    /// A CD-ROM starts with a medium loaded (an image in the drive); a disk always has its medium.
    pub medium: bool,
}

impl Default for LuConfig {
    fn default() -> Self {
        Self {
            block_size: 512,
            physical_block_size: 0,
            num_blocks: 0,
            read_only: false,
            removable: false,
            rotational: false,
            write_cache: true,
            nv_cache: false,
            thin_provisioned: false,
            vendor: "POLLTGT".into(),
            product: "VDISK".into(),
            revision: "0001".into(),
            serial: String::new(),
            device_id: String::new(),
            naa_id: 0,
            max_transfer_blocks: 0,
            device_type: crate::DeviceType::Disk,
            medium: true,
        }
    }
}

/// Why a [`LuConfig`] was refused by [`LogicalUnit::try_new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuConfigError {
    #[error("block size {0} is not a power of two between 512 and 65536")]
    BlockSize(u32),
    #[error("physical block size {physical} is not a power of two multiple of the block size {block_size} (at most 2^15 blocks)")]
    PhysicalBlockSize { physical: u32, block_size: u32 },
    #[error("capacity of {num_blocks} blocks of {block_size} bytes does not fit in 64-bit byte offsets")]
    Capacity { num_blocks: u64, block_size: u32 },
    #[error("{field} is {len} bytes long, at most {max} allowed")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} contains characters outside printable ASCII (20h..7Eh)")]
    NotAscii { field: &'static str },
    #[error("naa_id {0:#018x} does not start with a valid NAA nibble (2, 3, 5 or 6)")]
    Naa(u64),
}

impl LuConfig {
    /// Checks the configuration: what [`LogicalUnit::new`] would otherwise silently adjust (truncated or
    /// sanitized strings) or could not serve (block size, capacity).
    pub fn validate(&self) -> Result<(), LuConfigError> {
        if !self.block_size.is_power_of_two() || !(512..=65536).contains(&self.block_size) {
            return Err(LuConfigError::BlockSize(self.block_size));
        }
        if self.lbppb_exponent().is_none() {
            return Err(LuConfigError::PhysicalBlockSize {
                physical: self.physical_block_size,
                block_size: self.block_size,
            });
        }
        if self.num_blocks.checked_mul(u64::from(self.block_size)).is_none() {
            return Err(LuConfigError::Capacity { num_blocks: self.num_blocks, block_size: self.block_size });
        }
        for (field, value, max) in [
            ("vendor", &self.vendor, 8),
            ("product", &self.product, 16),
            ("revision", &self.revision, 4),
            ("serial", &self.serial, inquiry::MAX_SERIAL_LEN),
            ("device_id", &self.device_id, inquiry::MAX_DEVICE_ID_LEN),
        ] {
            if !value.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
                return Err(LuConfigError::NotAscii { field });
            }
            if value.len() > max {
                return Err(LuConfigError::TooLong { field, len: value.len(), max });
            }
        }
        if self.naa_id != 0 && !matches!(self.naa_id >> 60, 2 | 3 | 5 | 6) {
            return Err(LuConfigError::Naa(self.naa_id));
        }
        Ok(())
    }

    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-3 §5.16.2): log2 of physical / logical block size, at most
    /// 15 (a 4-bit field); `None` when the physical block size is not a power of two multiple of the block size.
    pub fn lbppb_exponent(&self) -> Option<u8> {
        let bs = self.block_size.max(1);
        let pbs = if self.physical_block_size == 0 { bs } else { self.physical_block_size };
        if pbs < bs || pbs % bs != 0 || !(pbs / bs).is_power_of_two() {
            return None;
        }
        let exp = (pbs / bs).trailing_zeros();
        u8::try_from(exp).ok().filter(|&e| e <= 15)
    }
}

/// A direct-access logical unit (SBC-3) with the SPC-4 commands every logical unit has. `Send + Sync`: one
/// instance serves all reactors.
#[derive(Debug)]
pub struct LogicalUnit {
    pub(crate) block_size: u32,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub(crate) lbppb_exp: u8,
    /// Write protected (device `read_only`); changed at run time by [`LogicalUnit::reconfigure`].
    pub(crate) read_only: AtomicBool,
    /// Removable medium (RMB); changed at run time by [`LogicalUnit::reconfigure`].
    pub(crate) removable: AtomicBool,
    /// Non-volatile cache: SYNCHRONIZE CACHE and FUA need no flush.
    pub(crate) nv_cache: AtomicBool,
    pub(crate) thin: bool,
    pub(crate) max_transfer_blocks: u32,
    pub(crate) num_blocks: AtomicU64,
    /// Always `true` for a non-removable medium.
    pub(crate) medium_present: AtomicBool,
    /// A medium is in the drive (CD-ROM: an image is loaded, whether or not the tray is closed); always `true` for
    /// a disk.
    pub(crate) loaded: AtomicBool,
    /// Sanitize operations (sanitize.rs): running (from when [`LogicalUnit::execute`] hands one out until
    /// [`LogicalUnit::sanitize_done`], or [`LogicalUnit::io_done`] if it never started) or failed.
    pub(crate) sanitize: SanitizeState,
    /// Current values of the changeable mode parameters (WCE, D_SENSE, SWP).
    pub(crate) mode: ModeState,
    /// INQUIRY data and VPD pages; replaced as a whole by [`LogicalUnit::set_identity`].
    pub(crate) pages: RwLock<Arc<inquiry::Pages>>,
    pub(crate) nexus: NexusTable,
    /// Persistent and SPC-2 reservations (pr.rs, reserve.rs).
    pub(crate) pr: crate::pr::Reservations,
    pub(crate) device_type: crate::DeviceType,
    /// The copy manager's results for RECEIVE COPY RESULTS (xcopy.rs).
    pub(crate) copies: crate::xcopy::CopyRecords,
}

impl LogicalUnit {
    /// Builds a logical unit. Strings that are too long are truncated and characters outside printable ASCII are
    /// replaced; call [`LuConfig::validate`] (or [`LogicalUnit::try_new`]) to refuse such a configuration instead.
    pub fn new(cfg: LuConfig) -> Self {
        let cdrom = cfg.device_type == crate::DeviceType::Cdrom;
        let medium = !cdrom || cfg.medium;
        Self {
            block_size: cfg.block_size,
            lbppb_exp: cfg.lbppb_exponent().unwrap_or(0),
            read_only: AtomicBool::new(cfg.read_only || cdrom),
            removable: AtomicBool::new(cfg.removable || cdrom),
            nv_cache: AtomicBool::new(cfg.nv_cache),
            thin: cfg.thin_provisioned,
            max_transfer_blocks: cfg.max_transfer_blocks,
            num_blocks: AtomicU64::new(cfg.num_blocks),
            medium_present: AtomicBool::new(medium),
            loaded: AtomicBool::new(medium),
            sanitize: SanitizeState::default(),
            mode: ModeState::new(if cfg.write_cache { WCE } else { 0 }),
            pages: RwLock::new(Arc::new(inquiry::Pages::new(&cfg))),
            nexus: NexusTable::new(),
            pr: crate::pr::Reservations::default(),
            device_type: cfg.device_type,
            copies: crate::xcopy::CopyRecords::default(),
        }
    }

    /// [`LuConfig::validate`], then [`LogicalUnit::new`].
    pub fn try_new(cfg: LuConfig) -> Result<Self, LuConfigError> {
        cfg.validate()?;
        Ok(Self::new(cfg))
    }

    /// Logical block length in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Logical blocks per physical block (a power of two, 1 unless a physical block size was configured).
    pub fn blocks_per_physical_block(&self) -> u32 {
        1 << self.lbppb_exp
    }

    /// Current capacity in logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Whether the (removable) medium is loaded; always `true` for a fixed medium.
    pub fn medium_present(&self) -> bool {
        self.medium_present.load(Ordering::Acquire)
    }

    /// The peripheral device type.
    pub fn device_type(&self) -> crate::DeviceType {
        self.device_type
    }

    /// Whether the logical unit is thin provisioned (LBPME).
    pub fn thin_provisioned(&self) -> bool {
        self.thin
    }

    /// Whether the logical unit is write protected (device `read_only`; a CD-ROM always is).
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Whether the medium is removable (RMB).
    pub fn removable(&self) -> bool {
        self.removable.load(Ordering::Acquire)
    }

    /// Whether the cache is non-volatile (SCST `nv_cache`): no flush is needed for SYNCHRONIZE CACHE and FUA.
    pub fn nv_cache(&self) -> bool {
        self.nv_cache.load(Ordering::Relaxed)
    }

    /// Whether the volatile write cache is enabled (the current WCE bit).
    pub fn write_cache_enabled(&self) -> bool {
        self.mode.current() & WCE != 0
    }

    /// Whether a write must reach stable storage before it completes: FUA was set (`fua`) or the volatile write
    /// cache is off (WCE = 0), unless the cache is non-volatile (`nv_cache`), where every write is stable already.
    pub fn write_through(&self, fua: bool) -> bool {
        (fua || !self.write_cache_enabled()) && !self.nv_cache()
    }

    /// Whether sense data are reported in descriptor format (the current D_SENSE bit, SPC-4 §4.5.1).
    pub fn descriptor_sense(&self) -> bool {
        self.mode.current() & D_SENSE != 0
    }

    /// CHECK CONDITION with `sense` in the format the Control mode page selects (D_SENSE).
    pub fn check_condition(&self, sense: &Sense) -> Response {
        let bytes = if self.descriptor_sense() { sense.to_descriptor() } else { sense.to_fixed() };
        Response { status: Status::CheckCondition, sense: Some(bytes), data: Vec::new() }
    }

    /// The INQUIRY data and VPD pages now in force.
    pub(crate) fn pages(&self) -> Arc<inquiry::Pages> {
        self.pages.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Decides what to do with a command: respond now, or run a block operation and then call
    /// [`LogicalUnit::io_done`]. Never panics, whatever the CDB.
    ///
    /// Order of checks: unit attention (except INQUIRY, REPORT LUNS, REQUEST SENSE), operation code and service
    /// action, CDB length and CONTROL byte (NACA), medium present, write protection, then the command's own fields.
    pub fn execute(&self, cmd: &Command<'_>) -> Action {
        match self.dispatch(cmd) {
            Ok(action) => action,
            Err(sense) => Action::Respond(self.check_condition(&sense)),
        }
    }

    /// The commands of the logical unit's device type.
    pub(crate) fn table(&self) -> &'static Table {
        match self.device_type {
            crate::DeviceType::Disk => &DISK,
            crate::DeviceType::Cdrom => &MMC,
        }
    }

    fn dispatch(&self, cmd: &Command<'_>) -> Result<Action, Sense> {
        let found = lookup_in(self.table(), cmd.cdb);
        let exempt = matches!(found, Lookup::Found(info) if info.has(UA_EXEMPT));
        if let Some(ua) = self.nexus.observe(cmd.nexus, !exempt) {
            return Err(ua);
        }
        let info = match found {
            Lookup::Found(info) if info.has(THIN_ONLY) && !self.thin => {
                return Err(match info.service_action {
                    Some(_) => Sense::invalid_field_in_cdb(1, Some(4)),
                    None => Sense::invalid_opcode(),
                })
            }
            Lookup::Found(info) => info,
            Lookup::BadOpcode => return Err(Sense::invalid_opcode()),
            Lookup::BadServiceAction => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        };
        let cdb_len = usize::from(info.cdb_len);
        if cmd.cdb.len() < cdb_len {
            return Err(Sense::invalid_field_in_cdb(0, None));
        }
        check_control(cmd.cdb, cdb_len)?;
        if let Some(conflict) = self.reservation_conflict(cmd) {
            return Ok(Action::Respond(conflict));
        }
        if info.has(NEEDS_MEDIUM) && !self.medium_present() {
            return Err(Sense::medium_not_present());
        }
        // SBC-3 §4.11 (sanitize operations): while a sanitize operation runs, only INQUIRY, REPORT LUNS and REQUEST
        // SENSE are served; the others learn how far it got.
        let sanitize_idle = self.sanitize.idle();
        if !sanitize_idle && !exempt && self.sanitize.running() {
            return Err(self.sanitize.in_progress_sense());
        }
        if info.has(WRITES) {
            if self.read_only() {
                return Err(Sense::write_protected());
            }
            if self.mode.current() & SWP != 0 {
                return Err(Sense::software_write_protected());
            }
        }
        let action = (info.handler)(self, cmd)?;
        // The sanitize failure mode: no access to the medium but by SANITIZE.
        if !sanitize_idle
            && self.sanitize.failed()
            && !matches!(action, Action::Respond(_) | Action::Sanitize { .. } | Action::Flush | Action::ExtendedCopy(_))
        {
            return Err(crate::sanitize::sanitize_failed());
        }
        Ok(action)
    }

    /// Turns the outcome of the block operation [`LogicalUnit::execute`] asked for into the command's status and
    /// sense data. For a successful [`Action::Read`] the data are the bdev buffer, not `Response::data`.
    ///
    /// Every block operation handed out must end here exactly once, also when the command is abandoned (connection
    /// gone, aborted before it started); except a sanitize operation that started ([`LogicalUnit::sanitize_started`]),
    /// which ends with [`LogicalUnit::sanitize_done`]. For a [`Action::Sanitize`] that never started this puts the
    /// logical unit back where it was before.
    pub fn io_done(&self, cmd: &Command<'_>, result: IoResult) -> Response {
        if cmd.cdb.first() == Some(&opcode::SANITIZE) {
            self.sanitize.cancel();
        }
        let writes = match lookup_in(self.table(), cmd.cdb) {
            Lookup::Found(info) => {
                info.has(WRITES)
                    || matches!(
                        info.opcode,
                        opcode::SYNCHRONIZE_CACHE_10 | opcode::SYNCHRONIZE_CACHE_16 | opcode::START_STOP_UNIT
                    )
            }
            _ => false,
        };
        let sense = match result {
            IoResult::Ok => return Response::good(Vec::new()),
            IoResult::OutOfRange => Sense::lba_out_of_range(),
            IoResult::MediumError if writes => Sense::write_error(),
            IoResult::MediumError => Sense::unrecovered_read_error(),
            IoResult::Miscompare { offset } => Sense::miscompare(offset),
            IoResult::WriteProtected => Sense::write_protected(),
            IoResult::NoSpace => Sense::space_allocation_failed(),
            IoResult::Other => Sense::internal_target_failure(),
        };
        self.check_condition(&sense)
    }

    /// Where the logical unit is with sanitize operations.
    pub fn sanitize_phase(&self) -> SanitizePhase {
        self.sanitize.phase()
    }

    /// The driver started the I/O of the sanitize operation [`LogicalUnit::execute`] handed out as
    /// [`Action::Sanitize`]: it now runs to its end, whatever happens to its command, and ends with
    /// [`LogicalUnit::sanitize_done`].
    pub fn sanitize_started(&self) {
        self.sanitize.started();
    }

    /// The running sanitize operation has done `done` of its `total` units of work (the PROGRESS INDICATION of
    /// SANITIZE IN PROGRESS, SPC-4 §4.5.2.4.4).
    pub fn sanitize_progress(&self, done: u64, total: u64) {
        self.sanitize.progress(done, total);
    }

    /// The running sanitize operation ended with `result`: the logical unit is ready again, or in the sanitize
    /// failure mode after an error (SBC-3 §4.11). Returns the status of a SANITIZE with IMMED = 0 that waited for
    /// it: GOOD, or 03/31/03 SANITIZE COMMAND FAILED.
    pub fn sanitize_done(&self, result: IoResult) -> Response {
        let ok = result == IoResult::Ok;
        self.sanitize.finish(ok);
        if ok {
            Response::good(Vec::new())
        } else {
            self.check_condition(&crate::sanitize::sanitize_failed())
        }
    }

    /// Answers a GET LBA STATUS after [`Action::GetLbaStatus`]: `extents` are the runs the bdev reported, in LBA
    /// order from the STARTING LOGICAL BLOCK ADDRESS on (SBC-3 §5.8.2); the parameter data are truncated to the
    /// allocation length. No extent at all (the bdev could not tell) reports the range as mapped.
    pub fn lba_status_done(&self, cmd: &Command<'_>, extents: &[crate::LbaExtent]) -> Response {
        let c = Cdb(cmd.cdb);
        let lba = c.u64(2);
        let alloc = c.u32(10);
        let fallback = [crate::LbaExtent {
            lba,
            blocks: self.num_blocks().saturating_sub(lba).max(1),
            status: crate::ProvisioningStatus::Mapped,
        }];
        let extents = if extents.is_empty() { &fallback[..] } else { extents };
        Response::good(crate::provisioning::lba_status_data(extents, alloc))
    }

    /// How many bytes of Data-Out the command transfers according to its CDB (the transfer length of a write, the
    /// PARAMETER LIST LENGTH of MODE SELECT, UNMAP, PERSISTENT RESERVE OUT, ...), for the transport's residual
    /// count (RFC 7143 §11.4.5). `None` for commands without Data-Out.
    pub fn data_out_len(&self, cdb: &[u8]) -> Option<u64> {
        crate::sbc::data_out_len(self, Cdb(cdb))
    }

    /// The I_T nexus is gone (session closed or reinstated): forget its unit attentions, PREVENT state, identity
    /// and SPC-2 reservation (its persistent reservation registrations stay, SPC-4 §5.9.5). A later command on the
    /// same id counts as a new nexus.
    pub fn nexus_gone(&self, nexus: NexusId) {
        self.nexus.lock().remove(nexus);
        self.reservations_nexus_gone(nexus);
        self.copies.nexus_gone(nexus);
    }

    /// Changes the capacity (the bdev was resized) and establishes 06/2A/09 CAPACITY DATA HAS CHANGED for every
    /// nexus (SBC-3 §4.6). No unit attention when the capacity stays the same.
    pub fn set_capacity(&self, num_blocks: u64) {
        let mut locked = self.nexus.lock();
        if self.num_blocks.swap(num_blocks, Ordering::AcqRel) != num_blocks {
            locked.raise_all(Sense::capacity_data_changed(), None);
        }
    }

    /// Establishes the unit attention `sense` for every I_T nexus the logical unit knows, except `except` (SAM-5
    /// §5.14): e.g. 06/3F/0E REPORTED LUNS DATA HAS CHANGED when the target's LUN map changed.
    pub fn raise_unit_attention(&self, sense: Sense, except: Option<NexusId>) {
        self.nexus.lock().raise_all(sense, except);
    }

    /// Replaces the identity strings of the INQUIRY data and VPD pages (vendor, product, revision, serial, device
    /// id, NAA id) with those of `cfg` and, when the data changed, establishes 06/3F/03 INQUIRY DATA HAS CHANGED for
    /// every nexus (SPC-4 §6.6.1). Geometry and provisioning fields of `cfg` are taken from the logical unit.
    pub fn set_identity(&self, cfg: &LuConfig) {
        let mut cfg = cfg.clone();
        cfg.block_size = self.block_size;
        cfg.physical_block_size = self.block_size << self.lbppb_exp;
        cfg.read_only = self.read_only();
        cfg.removable = self.removable();
        cfg.thin_provisioned = self.thin;
        cfg.max_transfer_blocks = self.max_transfer_blocks;
        cfg.device_type = self.device_type;
        let new = inquiry::Pages::new(&cfg);
        let mut locked = self.nexus.lock();
        let mut pages = self.pages.write().unwrap_or_else(PoisonError::into_inner);
        if **pages != new {
            *pages = Arc::new(new);
            locked.raise_all(Sense::inquiry_data_changed(), None);
        }
    }

    /// Logical unit reset (SAM-5 §6.3.3, LOGICAL UNIT RESET task management function): establishes 06/29/03 BUS
    /// DEVICE RESET FUNCTION OCCURRED for every nexus (replacing what was pending) and releases every PREVENT
    /// MEDIUM REMOVAL and the SPC-2 reservation (persistent reservations stay). Aborting the tasks is the
    /// transport's job.
    pub fn reset(&self) {
        let mut locked = self.nexus.lock();
        locked.raise_all(Sense::bus_device_reset(), None);
        locked.clear_prevent();
        drop(locked);
        self.release_spc2();
    }

    /// Checks an LBA range against the current capacity and returns it in bytes: LBA OUT OF RANGE when it ends past
    /// the capacity (SBC-3 §4.5). A zero-length range only needs `lba <= capacity`.
    pub(crate) fn byte_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), Sense> {
        let end = lba.checked_add(blocks).ok_or(Sense::lba_out_of_range())?;
        if end > self.num_blocks() {
            return Err(Sense::lba_out_of_range());
        }
        let bs = u64::from(self.block_size);
        let offset = lba.checked_mul(bs).ok_or(Sense::lba_out_of_range())?;
        let len = blocks.checked_mul(bs).ok_or(Sense::lba_out_of_range())?;
        Ok((offset, len))
    }
}
