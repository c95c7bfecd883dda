//! Persistent reservations (SPC-4 §5.9): PERSISTENT RESERVE IN (§6.15: READ KEYS, READ RESERVATION, REPORT
//! CAPABILITIES, READ FULL STATUS) and PERSISTENT RESERVE OUT (§6.16: REGISTER, REGISTER AND IGNORE EXISTING KEY,
//! RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND MOVE) for the six reservation types, with
//! SPEC_I_PT, ALL_TG_PT and APTPL.
//!
//! The state of one logical unit lives in [`Reservations`]: the registrations (one per I_T nexus, or per initiator
//! port on every target port with ALL_TG_PT, or per initiator device with a FORMAT CODE 00b TransportID), the
//! persistent reservation, the SPC-2 reservation (`reserve.rs`), and the identity of every I_T nexus the transport
//! bound at login. Which command may run under which reservation is decided in `reserve.rs`.
//!
//! Nothing here touches storage: with APTPL set, [`LogicalUnit::reservations_to_persist`] hands the state to keep
//! across power loss to the driver as bytes (`pr_persist.rs`), and [`LogicalUnit::restore_reservations`] takes them
//! back at start. PREEMPT AND ABORT leaves the I_T nexuses whose tasks must be aborted for the driver to collect with
//! [`LogicalUnit::take_task_aborts`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cdb::Cdb;
use crate::pr_persist::{self, PrStateError, Stored};
use crate::sense::{Sense, SenseKey};
use crate::transport_id::{NexusIdentity, TargetPort, TransportId};
use crate::{Action, Command, LogicalUnit, NexusId, Response, Status};

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1, table 195).
pub(crate) mod sa_in {
    pub const READ_KEYS: u16 = 0x00;
    pub const READ_RESERVATION: u16 = 0x01;
    pub const REPORT_CAPABILITIES: u16 = 0x02;
    pub const READ_FULL_STATUS: u16 = 0x03;
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2, table 207).
pub(crate) mod sa_out {
    pub const REGISTER: u16 = 0x00;
    pub const RESERVE: u16 = 0x01;
    pub const RELEASE: u16 = 0x02;
    pub const CLEAR: u16 = 0x03;
    pub const PREEMPT: u16 = 0x04;
    pub const PREEMPT_AND_ABORT: u16 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u16 = 0x06;
    pub const REGISTER_AND_MOVE: u16 = 0x07;
}

/// LU_SCOPE, the only SCOPE value (SPC-4 §6.16.3.3).
const LU_SCOPE: u8 = 0x0;

/// Length of the basic PERSISTENT RESERVE OUT parameter list (SPC-4 §6.16.3).
const BASIC_LEN: usize = 24;

/// ALLOW COMMANDS of REPORT CAPABILITIES (SPC-4 §6.15.4, table 202): 011b, TEST UNIT READY is allowed through Write
/// Exclusive and Exclusive Access reservations, and the read-only commands of the table (MODE SENSE, READ BUFFER,
/// RECEIVE DIAGNOSTIC RESULTS, REPORT SUPPORTED OPERATION CODES, READ DEFECT DATA, ...) through Write Exclusive.
const ALLOW_COMMANDS: u8 = 0b011;

/// 06/2A/03 RESERVATIONS PREEMPTED.
pub(crate) const RESERVATIONS_PREEMPTED: Sense = Sense::new(SenseKey::UnitAttention, 0x2A, 0x03);
/// 06/2A/04 RESERVATIONS RELEASED.
pub(crate) const RESERVATIONS_RELEASED: Sense = Sense::new(SenseKey::UnitAttention, 0x2A, 0x04);
/// 06/2A/05 REGISTRATIONS PREEMPTED.
pub(crate) const REGISTRATIONS_PREEMPTED: Sense = Sense::new(SenseKey::UnitAttention, 0x2A, 0x05);
/// 05/26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
const INVALID_RELEASE: Sense = Sense::new(SenseKey::IllegalRequest, 0x26, 0x04);

/// The persistent reservation types (SPC-4 §6.15.3.4, table 199).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PrType {
    WriteExclusive = 0x1,
    ExclusiveAccess = 0x3,
    WriteExclusiveRegistrantsOnly = 0x5,
    ExclusiveAccessRegistrantsOnly = 0x6,
    WriteExclusiveAllRegistrants = 0x7,
    ExclusiveAccessAllRegistrants = 0x8,
}

impl PrType {
    /// The TYPE field value, if it names a reservation type.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x1 => PrType::WriteExclusive,
            0x3 => PrType::ExclusiveAccess,
            0x5 => PrType::WriteExclusiveRegistrantsOnly,
            0x6 => PrType::ExclusiveAccessRegistrantsOnly,
            0x7 => PrType::WriteExclusiveAllRegistrants,
            0x8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// All Registrants: every registered I_T nexus is a reservation holder.
    pub fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    /// Registrants Only or All Registrants: every registered I_T nexus has full access.
    pub fn registrants_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Registrants Only or All Registrants: releasing the reservation is announced to the registrants.
    fn announces_release(self) -> bool {
        self.registrants_access()
    }

    /// Write Exclusive flavour: others may still read.
    pub fn write_exclusive(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive | PrType::WriteExclusiveRegistrantsOnly | PrType::WriteExclusiveAllRegistrants
        )
    }
}

/// One registration: a reservation key for an I_T nexus (or a set of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// Unique for the life of the logical unit; names the reservation holder.
    pub(crate) id: u64,
    pub(crate) initiator: TransportId,
    /// `None`: every target port (ALL_TG_PT).
    pub(crate) port: Option<TargetPort>,
    pub(crate) key: u64,
}

impl Registration {
    fn covers(&self, who: &NexusIdentity) -> bool {
        self.initiator.covers(&who.initiator) && self.port.as_ref().is_none_or(|p| p.name == who.target_port.name)
    }

    fn same_place(&self, initiator: &TransportId, port: Option<&TargetPort>) -> bool {
        self.initiator == *initiator && self.port.as_ref().map(|p| &p.name) == port.map(|p| &p.name)
    }
}

/// The persistent reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub(crate) kind: PrType,
    /// The holder's registration id; `None` for the All Registrants types.
    pub(crate) holder: Option<u64>,
}

/// Why a PERSISTENT RESERVE OUT (or RESERVE) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// RESERVATION CONFLICT status.
    Conflict,
    /// CHECK CONDITION with this sense.
    Check(Sense),
}

impl From<Sense> for Refusal {
    fn from(s: Sense) -> Self {
        Refusal::Check(s)
    }
}

/// The state to keep on stable storage while APTPL is in effect (SPC-4 §5.9.4), as
/// [`LogicalUnit::reservations_to_persist`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrSnapshot {
    /// Increases with every change: of two snapshots of the same logical unit, write only the newer.
    pub seq: u64,
    /// The bytes to store; `None` when APTPL is off and any stored copy must go.
    pub data: Option<Vec<u8>>,
}

/// Reservation state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct PrState {
    pub(crate) generation: u32,
    pub(crate) aptpl: bool,
    /// In registration order (READ KEYS and READ FULL STATUS list them in this order).
    pub(crate) registrations: Vec<Registration>,
    pub(crate) reservation: Option<Reservation>,
    next_id: u64,
    /// The SPC-2 reservation holder (RESERVE(6)/(10)); released on I_T nexus loss and logical unit reset.
    pub(crate) spc2: Option<NexusId>,
    bound: HashMap<NexusId, NexusIdentity>,
    /// Target ports seen, by relative target port identifier (REGISTER AND MOVE names its target by that number).
    ports: BTreeMap<u16, TargetPort>,
    seq: u64,
    /// A stored copy may exist: keep it in step (or remove it) after every change.
    stored: bool,
    aborts: HashMap<NexusId, Vec<NexusId>>,
}

/// The reservation state behind a mutex, and a flag the command path reads without locking.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    /// A persistent or SPC-2 reservation exists: commands must be checked for conflicts. Refreshed whenever the
    /// state is unlocked.
    active: AtomicBool,
    state: Mutex<PrState>,
}

/// The state locked; unlocking refreshes [`Reservations::active`].
pub(crate) struct PrLocked<'a> {
    owner: &'a Reservations,
    st: MutexGuard<'a, PrState>,
}

impl std::ops::Deref for PrLocked<'_> {
    type Target = PrState;
    fn deref(&self) -> &PrState {
        &self.st
    }
}

impl std::ops::DerefMut for PrLocked<'_> {
    fn deref_mut(&mut self) -> &mut PrState {
        &mut self.st
    }
}

impl Drop for PrLocked<'_> {
    fn drop(&mut self) {
        let active = self.st.reservation.is_some() || self.st.spc2.is_some();
        self.owner.active.store(active, Ordering::Release);
    }
}

impl Reservations {
    /// Locks the state (a poisoned lock is recovered: every mutation completes before anything that could panic).
    pub(crate) fn lock(&self) -> PrLocked<'_> {
        PrLocked { owner: self, st: self.state.lock().unwrap_or_else(PoisonError::into_inner) }
    }

    /// Whether some reservation exists (lock-free; the command path skips the conflict check when not).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

/// Parses the TransportIDs of a SPEC_I_PT list (`list` starts at parameter list byte `base`).
fn parse_transport_ids(list: &[u8], base: usize) -> Result<Vec<TransportId>, Sense> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < list.len() {
        let (t, n) = TransportId::parse(&list[at..])
            .map_err(|e| Sense::invalid_field_in_param_list((base + at) as u16 + e.offset(), None))?;
        out.push(t);
        at += n;
    }
    Ok(out)
}

impl PrState {
    /// The identity of `nexus`: what the transport bound, or a stand-in unique to the nexus.
    pub(crate) fn identity(&self, nexus: NexusId) -> NexusIdentity {
        self.bound.get(&nexus).cloned().unwrap_or_else(|| NexusIdentity {
            initiator: TransportId::iscsi(&format!("polltgt.unbound-nexus.{}", nexus.0), None),
            target_port: TargetPort { name: String::new(), relative_id: 0 },
        })
    }

    pub(crate) fn bind(&mut self, nexus: NexusId, who: NexusIdentity) {
        self.ports.insert(who.target_port.relative_id, who.target_port.clone());
        self.bound.insert(nexus, who);
    }

    pub(crate) fn unbind(&mut self, nexus: NexusId) {
        self.bound.remove(&nexus);
        self.aborts.remove(&nexus);
        if self.spc2 == Some(nexus) {
            self.spc2 = None;
        }
    }

    /// Index of the registration of `who`.
    fn find(&self, who: &NexusIdentity) -> Option<usize> {
        self.registrations.iter().position(|r| r.covers(who))
    }

    /// Whether registration `i` holds the reservation (SPC-4 §5.9.10: every registrant for All Registrants).
    fn is_holder(&self, i: usize) -> bool {
        match self.reservation {
            Some(Reservation { kind, holder }) => kind.all_registrants() || holder == Some(self.registrations[i].id),
            None => false,
        }
    }

    /// Whether `nexus` may do anything under the persistent reservation: it holds it, or it is registered and the
    /// type lets registrants in (SPC-4 §5.9.1 tables, §6.15.3.4).
    pub(crate) fn has_access(&self, nexus: NexusId) -> bool {
        let Some(res) = self.reservation else { return true };
        match self.find(&self.identity(nexus)) {
            Some(i) => res.kind.registrants_access() || self.is_holder(i),
            None => false,
        }
    }

    /// Bound nexuses covered by registration `r`.
    fn nexuses_of(&self, r: &Registration) -> Vec<NexusId> {
        let mut v: Vec<NexusId> = self.bound.iter().filter(|(_, who)| r.covers(who)).map(|(n, _)| *n).collect();
        v.sort();
        v
    }

    /// Queues `ua` for every registered bound nexus except those with identity `except`.
    fn ua_to_registrants(&self, except: Option<&NexusIdentity>, ua: Sense, uas: &mut Vec<(NexusId, Sense)>) {
        let mut v: Vec<NexusId> = self
            .bound
            .iter()
            .filter(|(_, who)| Some(*who) != except && self.registrations.iter().any(|r| r.covers(who)))
            .map(|(n, _)| *n)
            .collect();
        v.sort();
        uas.extend(v.into_iter().map(|n| (n, ua)));
    }

    /// Registers `key` for `initiator` on `port`, or changes the key of that registration. Returns its id.
    fn upsert(&mut self, initiator: TransportId, port: Option<TargetPort>, key: u64) -> u64 {
        if let Some(r) = self.registrations.iter_mut().find(|r| r.same_place(&initiator, port.as_ref())) {
            r.key = key;
            return r.id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.registrations.push(Registration { id, initiator, port, key });
        id
    }

    /// Removes registration `i` (SPC-4 §5.9.11.3): a holder's reservation goes with it (an All Registrants one
    /// only with the last registrant), and the release of a Registrants Only reservation is announced.
    fn unregister(&mut self, i: usize, uas: &mut Vec<(NexusId, Sense)>) {
        let gone = self.registrations.remove(i);
        let Some(res) = self.reservation else { return };
        if res.kind.all_registrants() {
            if self.registrations.is_empty() {
                self.reservation = None;
            }
        } else if res.holder == Some(gone.id) {
            self.reservation = None;
            if res.kind.announces_release() {
                self.ua_to_registrants(None, RESERVATIONS_RELEASED, uas);
            }
        }
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The registration of `me`, or RESERVATION CONFLICT (SPC-4 table 208: only REGISTER and REGISTER AND IGNORE
    /// EXISTING KEY are allowed from an unregistered I_T nexus).
    fn registration_of(&self, me: &NexusIdentity) -> Result<usize, Refusal> {
        self.find(me).ok_or(Refusal::Conflict)
    }

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.9.7).
    fn register(
        &mut self,
        me: &NexusIdentity,
        p: &[u8],
        ignore: bool,
        uas: &mut Vec<(NexusId, Sense)>,
    ) -> Result<(), Refusal> {
        if p.len() < BASIC_LEN {
            return Err(Sense::parameter_list_length_error().into());
        }
        let (rk, sark) = (be64(p, 0), be64(p, 8));
        let spec_i_pt = p[20] & 0x08 != 0;
        let all_tg_pt = p[20] & 0x04 != 0;
        let aptpl = p[20] & 0x01 != 0;
        if spec_i_pt && ignore {
            // SPEC_I_PT is valid only with REGISTER (SPC-4 §6.16.3.1).
            return Err(Sense::invalid_field_in_param_list(20, Some(3)).into());
        }
        let tids = if spec_i_pt {
            if p.len() < BASIC_LEN + 4 {
                return Err(Sense::parameter_list_length_error().into());
            }
            let tlen = be32(p, 24) as usize;
            let list = p.get(28..28usize.saturating_add(tlen)).ok_or(Sense::parameter_list_length_error())?;
            Some(parse_transport_ids(list, 28)?)
        } else {
            if p.len() != BASIC_LEN {
                return Err(Sense::parameter_list_length_error().into());
            }
            None
        };
        match self.find(me) {
            None => {
                if !ignore && rk != 0 {
                    return Err(Refusal::Conflict);
                }
                if sark != 0 {
                    let port = if all_tg_pt { None } else { Some(me.target_port.clone()) };
                    for t in tids.into_iter().flatten() {
                        self.upsert(t, port.clone(), sark);
                    }
                    self.upsert(me.initiator.clone(), port, sark);
                }
            }
            Some(i) => {
                if !ignore && self.registrations[i].key != rk {
                    return Err(Refusal::Conflict);
                }
                if spec_i_pt {
                    return Err(Sense::invalid_field_in_param_list(20, Some(3)).into());
                }
                if sark == 0 {
                    self.unregister(i, uas);
                } else {
                    self.registrations[i].key = sark;
                }
            }
        }
        self.bump();
        self.aptpl = aptpl;
        Ok(())
    }

    /// Checks the parameter list length and RESERVATION KEY of RESERVE, RELEASE, CLEAR, PREEMPT; returns the
    /// index of `me`'s registration.
    fn basic(&self, me: &NexusIdentity, p: &[u8]) -> Result<usize, Refusal> {
        let i = self.registration_of(me)?;
        if p.len() != BASIC_LEN {
            return Err(Sense::parameter_list_length_error().into());
        }
        if p[20] & 0x08 != 0 {
            return Err(Sense::invalid_field_in_param_list(20, Some(3)).into());
        }
        if self.registrations[i].key != be64(p, 0) {
            return Err(Refusal::Conflict);
        }
        Ok(i)
    }

    /// SCOPE and TYPE of the CDB.
    fn scope_type(scope: u8, ty: u8) -> Result<PrType, Refusal> {
        if scope != LU_SCOPE {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
        }
        PrType::from_u8(ty).ok_or(Refusal::Check(Sense::invalid_field_in_cdb(2, Some(3))))
    }

    /// RESERVE (SPC-4 §5.9.9).
    fn reserve(&mut self, me: &NexusIdentity, p: &[u8], scope: u8, ty: u8) -> Result<(), Refusal> {
        let i = self.basic(me, p)?;
        let kind = Self::scope_type(scope, ty)?;
        match self.reservation {
            None => {
                let holder = if kind.all_registrants() { None } else { Some(self.registrations[i].id) };
                self.reservation = Some(Reservation { kind, holder });
                Ok(())
            }
            // The holder may repeat its reservation; changing the type takes PREEMPT.
            Some(res) if self.is_holder(i) && res.kind == kind => Ok(()),
            Some(_) => Err(Refusal::Conflict),
        }
    }

    /// RELEASE (SPC-4 §5.9.11.2).
    fn release(
        &mut self,
        me: &NexusIdentity,
        p: &[u8],
        scope: u8,
        ty: u8,
        uas: &mut Vec<(NexusId, Sense)>,
    ) -> Result<(), Refusal> {
        let i = self.basic(me, p)?;
        let Some(res) = self.reservation else { return Ok(()) };
        if !self.is_holder(i) {
            return Ok(());
        }
        if scope != LU_SCOPE || ty != res.kind as u8 {
            return Err(INVALID_RELEASE.into());
        }
        self.reservation = None;
        if res.kind.announces_release() {
            self.ua_to_registrants(Some(me), RESERVATIONS_RELEASED, uas);
        }
        Ok(())
    }

    /// CLEAR (SPC-4 §5.9.11.6).
    fn clear(&mut self, me: &NexusIdentity, p: &[u8], uas: &mut Vec<(NexusId, Sense)>) -> Result<(), Refusal> {
        self.basic(me, p)?;
        self.ua_to_registrants(Some(me), RESERVATIONS_PREEMPTED, uas);
        self.registrations.clear();
        self.reservation = None;
        self.bump();
        Ok(())
    }

    /// Removes the registrations with key `key` except `keep` (the preempting nexus's own), queueing REGISTRATIONS
    /// PREEMPTED for their nexuses and collecting every nexus whose tasks PREEMPT AND ABORT aborts (including the
    /// preempting one when its own key is named). Returns whether any registration had that key.
    fn remove_key(
        &mut self,
        key: u64,
        keep: u64,
        uas: &mut Vec<(NexusId, Sense)>,
        aborted: &mut Vec<NexusId>,
    ) -> bool {
        let matched: Vec<Registration> = self.registrations.iter().filter(|r| r.key == key).cloned().collect();
        for r in &matched {
            aborted.extend(self.nexuses_of(r));
            if r.id != keep {
                uas.extend(self.nexuses_of(r).into_iter().map(|n| (n, REGISTRATIONS_PREEMPTED)));
            }
        }
        self.registrations.retain(|r| r.key != key || r.id == keep);
        !matched.is_empty()
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.9.11.4, §5.9.11.5).
    #[allow(clippy::too_many_arguments)]
    fn preempt(
        &mut self,
        me: &NexusIdentity,
        p: &[u8],
        scope: u8,
        ty: u8,
        uas: &mut Vec<(NexusId, Sense)>,
        aborted: &mut Vec<NexusId>,
    ) -> Result<(), Refusal> {
        let i = self.basic(me, p)?;
        let kind = Self::scope_type(scope, ty)?;
        let sark = be64(p, 8);
        let mine = self.registrations[i].id;
        match self.reservation {
            // No reservation: remove the registrations named by the key (§5.9.11.4.4).
            None => {
                if !self.remove_key(sark, mine, uas, aborted) {
                    return Err(Refusal::Conflict);
                }
            }
            Some(res) if res.kind.all_registrants() => {
                if sark == 0 {
                    // Everybody else goes; the preempting nexus reserves with the new type (§5.9.11.4.3).
                    let others: Vec<Registration> =
                        self.registrations.iter().filter(|r| r.id != mine).cloned().collect();
                    for r in &others {
                        let ns = self.nexuses_of(r);
                        aborted.extend(ns.iter().copied());
                        uas.extend(ns.into_iter().map(|n| (n, REGISTRATIONS_PREEMPTED)));
                    }
                    self.registrations.retain(|r| r.id == mine);
                    let holder = if kind.all_registrants() { None } else { Some(mine) };
                    self.reservation = Some(Reservation { kind, holder });
                } else if !self.remove_key(sark, mine, uas, aborted) {
                    return Err(Refusal::Conflict);
                }
            }
            Some(res) => {
                let holder_key = self.registrations.iter().find(|r| Some(r.id) == res.holder).map(|r| r.key);
                if holder_key != Some(sark) {
                    if sark == 0 {
                        return Err(Sense::invalid_field_in_param_list(8, None).into());
                    }
                    if !self.remove_key(sark, mine, uas, aborted) {
                        return Err(Refusal::Conflict);
                    }
                } else {
                    self.remove_key(sark, mine, uas, aborted);
                    let holder = if kind.all_registrants() { None } else { Some(mine) };
                    self.reservation = Some(Reservation { kind, holder });
                    if res.kind != kind {
                        self.ua_to_registrants(Some(me), RESERVATIONS_RELEASED, uas);
                    }
                }
            }
        }
        self.bump();
        Ok(())
    }

    /// REGISTER AND MOVE (SPC-4 §5.9.8).
    fn register_and_move(&mut self, me: &NexusIdentity, p: &[u8]) -> Result<(), Refusal> {
        let i = self.registration_of(me)?;
        if p.len() < BASIC_LEN {
            return Err(Sense::parameter_list_length_error().into());
        }
        let (rk, sark) = (be64(p, 0), be64(p, 8));
        let unreg = p[17] & 0x02 != 0;
        let aptpl = p[17] & 0x01 != 0;
        let rtpi = u16::from_be_bytes([p[18], p[19]]);
        let tlen = be32(p, 20) as usize;
        let tid = p.get(24..24usize.saturating_add(tlen)).ok_or(Sense::parameter_list_length_error())?;
        if self.registrations[i].key != rk {
            return Err(Refusal::Conflict);
        }
        let res = match self.reservation {
            Some(res) if self.is_holder(i) && !res.kind.all_registrants() => res,
            _ => return Err(Refusal::Conflict),
        };
        if sark == 0 {
            return Err(Sense::invalid_field_in_param_list(8, None).into());
        }
        let (dest, n) =
            TransportId::parse(tid).map_err(|e| Sense::invalid_field_in_param_list(24 + e.offset(), None))?;
        if n != tid.len() {
            return Err(Sense::invalid_field_in_param_list(20, None).into());
        }
        let port = self.ports.get(&rtpi).cloned().ok_or(Sense::invalid_field_in_param_list(18, None))?;
        if dest.covers(&me.initiator) && port.name == me.target_port.name {
            return Err(Sense::invalid_field_in_param_list(24, None).into());
        }
        let mine = self.registrations[i].id;
        let id = self.upsert(dest, Some(port), sark);
        self.reservation = Some(Reservation { kind: res.kind, holder: Some(id) });
        if unreg {
            self.registrations.retain(|r| r.id != mine);
        }
        self.bump();
        self.aptpl = aptpl;
        Ok(())
    }

    fn read_keys(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(8 + 8 * self.registrations.len());
        d.extend_from_slice(&self.generation.to_be_bytes());
        d.extend_from_slice(&((8 * self.registrations.len()) as u32).to_be_bytes());
        for r in &self.registrations {
            d.extend_from_slice(&r.key.to_be_bytes());
        }
        d
    }

    fn read_reservation(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&self.generation.to_be_bytes());
        match self.reservation {
            None => d.extend_from_slice(&0u32.to_be_bytes()),
            Some(res) => {
                d.extend_from_slice(&16u32.to_be_bytes());
                let key = self.registrations.iter().find(|r| Some(r.id) == res.holder).map_or(0, |r| r.key);
                d.extend_from_slice(&key.to_be_bytes());
                d.extend_from_slice(&[0, 0, 0, 0, 0, (LU_SCOPE << 4) | res.kind as u8, 0, 0]);
            }
        }
        d
    }

    fn report_capabilities(&self) -> Vec<u8> {
        // CRH, SIP_C, ATP_C, PTPL_C; TMV, ALLOW COMMANDS, PTPL_A; the six types.
        vec![0, 8, 0x10 | 0x08 | 0x04 | 0x01, 0x80 | (ALLOW_COMMANDS << 4) | u8::from(self.aptpl), 0xEA, 0x01, 0, 0]
    }

    fn read_full_status(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, r) in self.registrations.iter().enumerate() {
            let tid = r.initiator.to_wire();
            body.extend_from_slice(&r.key.to_be_bytes());
            body.extend_from_slice(&[0, 0, 0, 0]);
            let holder = self.is_holder(i);
            body.push(u8::from(r.port.is_none()) << 1 | u8::from(holder));
            body.push(match self.reservation {
                Some(res) if holder => (LU_SCOPE << 4) | res.kind as u8,
                _ => 0,
            });
            body.extend_from_slice(&[0, 0, 0, 0]);
            body.extend_from_slice(&r.port.as_ref().map_or(0, |p| p.relative_id).to_be_bytes());
            body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
            body.extend_from_slice(&tid);
        }
        let mut d = Vec::with_capacity(8 + body.len());
        d.extend_from_slice(&self.generation.to_be_bytes());
        d.extend_from_slice(&(body.len() as u32).to_be_bytes());
        d.extend(body);
        d
    }

    fn stored_form(&self) -> Stored {
        let holder = self
            .reservation
            .map(|res| (res.kind, res.holder.and_then(|h| self.registrations.iter().position(|r| r.id == h))));
        Stored {
            generation: self.generation,
            registrations: self
                .registrations
                .iter()
                .map(|r| (r.initiator.clone(), r.port.clone(), r.key))
                .collect(),
            reservation: holder,
        }
    }

    fn restore(&mut self, s: Stored) {
        self.generation = s.generation;
        self.aptpl = true;
        self.stored = true;
        self.registrations.clear();
        let mut ids = Vec::new();
        for (initiator, port, key) in s.registrations {
            if let Some(p) = &port {
                self.ports.entry(p.relative_id).or_insert_with(|| p.clone());
            }
            ids.push(self.upsert(initiator, port, key));
        }
        self.reservation =
            s.reservation.map(|(kind, holder)| Reservation { kind, holder: holder.and_then(|h| ids.get(h).copied()) });
    }
}

/// PERSISTENT RESERVE IN (SPC-4 §6.15). The service action was validated by the command table.
pub(crate) fn persistent_reserve_in(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let st = lu.pr.lock();
    let mut data = match u16::from(c.u8(1) & 0x1F) {
        sa_in::READ_KEYS => st.read_keys(),
        sa_in::READ_RESERVATION => st.read_reservation(),
        sa_in::REPORT_CAPABILITIES => st.report_capabilities(),
        sa_in::READ_FULL_STATUS => st.read_full_status(),
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
    };
    drop(st);
    data.truncate(usize::from(c.u16(7)));
    Ok(Action::Respond(Response::good(data)))
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16). A RESERVATION CONFLICT is a response, not a sense.
pub(crate) fn persistent_reserve_out(lu: &LogicalUnit, cmd: &Command<'_>) -> Result<Action, Sense> {
    let c = Cdb(cmd.cdb);
    let sa = u16::from(c.u8(1) & 0x1F);
    let (scope, ty) = (c.u8(2) >> 4, c.u8(2) & 0x0F);
    let plen = c.u32(5) as usize;
    let data = cmd.data_out.unwrap_or(&[]);
    let p = data.get(..plen).ok_or(Sense::parameter_list_length_error())?;
    let mut uas = Vec::new();
    let mut aborted = Vec::new();
    let mut st = lu.pr.lock();
    let me = st.identity(cmd.nexus);
    let outcome = match sa {
        sa_out::REGISTER => st.register(&me, p, false, &mut uas),
        sa_out::REGISTER_AND_IGNORE_EXISTING_KEY => st.register(&me, p, true, &mut uas),
        sa_out::RESERVE => st.reserve(&me, p, scope, ty),
        sa_out::RELEASE => st.release(&me, p, scope, ty, &mut uas),
        sa_out::CLEAR => st.clear(&me, p, &mut uas),
        sa_out::PREEMPT => st.preempt(&me, p, scope, ty, &mut uas, &mut Vec::new()),
        sa_out::PREEMPT_AND_ABORT => st.preempt(&me, p, scope, ty, &mut uas, &mut aborted),
        sa_out::REGISTER_AND_MOVE => st.register_and_move(&me, p),
        _ => Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
    };
    match outcome {
        Ok(()) => {
            st.seq += 1;
            if !aborted.is_empty() {
                aborted.sort();
                aborted.dedup();
                st.aborts.insert(cmd.nexus, aborted);
            }
            if !uas.is_empty() {
                let mut table = lu.nexus.lock();
                for (n, ua) in uas {
                    table.raise(n, ua);
                }
            }
            Ok(Action::Respond(Response::good(Vec::new())))
        }
        Err(Refusal::Conflict) => Ok(Action::Respond(Response::status(Status::ReservationConflict))),
        Err(Refusal::Check(s)) => Err(s),
    }
}

impl LogicalUnit {
    /// Tells the logical unit who is at both ends of I_T nexus `nexus` (call at login, before its first command):
    /// registrations and reservations apply to it by this identity, across sessions and restarts. A nexus never
    /// bound gets an identity of its own that matches nothing else.
    pub fn bind_nexus(&self, nexus: NexusId, identity: NexusIdentity) {
        self.pr.lock().bind(nexus, identity);
    }

    /// Restores the persistent reservation state stored with APTPL (the bytes of a [`PrSnapshot`]); call before
    /// the logical unit serves commands. The current state is replaced only when the bytes are valid.
    pub fn restore_reservations(&self, data: &[u8]) -> Result<(), PrStateError> {
        let stored = pr_persist::decode(data)?;
        self.pr.lock().restore(stored);
        Ok(())
    }

    /// The persistent reservation state to keep on stable storage after a PERSISTENT RESERVE OUT (SPC-4 §5.9.4):
    /// `None` when APTPL has never been in effect (nothing is stored); otherwise a snapshot whose `data` is the
    /// state to store while APTPL is on, or `None` when APTPL is off and a stored copy must be removed.
    pub fn reservations_to_persist(&self) -> Option<PrSnapshot> {
        let mut st = self.pr.lock();
        if !st.aptpl && !st.stored {
            return None;
        }
        let data = st.aptpl.then(|| pr_persist::encode(&st.stored_form()));
        st.stored = st.aptpl;
        Some(PrSnapshot { seq: st.seq, data })
    }

    /// The I_T nexuses whose tasks on this logical unit the PREEMPT AND ABORT just completed on `by` aborts (SPC-4
    /// §5.9.11.5, SAM-5 §5.6): the driver aborts them as for CLEAR TASK SET (except the PREEMPT AND ABORT itself)
    /// before it sends that command's status. Empty after any other command.
    pub fn take_task_aborts(&self, by: NexusId) -> Vec<NexusId> {
        self.pr.lock().aborts.remove(&by).unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "pr_tests.rs"]
mod tests;
