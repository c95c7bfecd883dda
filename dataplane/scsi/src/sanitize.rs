//! The sanitize state of a logical unit (SBC-3 §4.11, SBC-4 §4.11 "Sanitize operations").
//!
//! A sanitize operation, once started, runs to its end whatever happens to the command that requested it: with
//! IMMED = 1 the SANITIZE command completes as soon as its CDB and parameter data are checked, with IMMED = 0 when
//! the operation ends; an ABORT TASK of that command, an ABORT TASK SET, a LOGICAL UNIT RESET, a target reset or
//! the loss of the I_T nexus end the command but not the operation. While it runs, the device server terminates
//! every command except INQUIRY, REPORT LUNS and REQUEST SENSE with 02/04/1B LOGICAL UNIT NOT READY, SANITIZE IN
//! PROGRESS, whose sense-key-specific field is the PROGRESS INDICATION (SPC-4 §4.5.2.4.4), and REQUEST SENSE
//! returns the same sense data (pollable sense data).
//!
//! An operation that fails leaves the logical unit in the sanitize failure mode: commands that access the medium
//! (any block operation but SANITIZE) end in 03/31/03 MEDIUM ERROR, SANITIZE COMMAND FAILED until a sanitize
//! operation completes without error, or, if the failed one had AUSE = 1 (unrestricted completion), until a
//! SANITIZE EXIT FAILURE MODE. After a failure with AUSE = 0 a SANITIZE with AUSE = 1 is an invalid field in the
//! CDB (SBC-4 §5.30.1).
//!
//! The phase is one atomic byte, so that the READ/WRITE path checks it with a single load; transitions happen under
//! a mutex (they are rare).

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::sense::{Sense, SenseKey, SenseKeySpecific};

/// No sanitize operation, and none failed.
const IDLE: u8 = 0;
/// A sanitize operation was handed out and has not ended.
const RUNNING: u8 = 1;
/// The last sanitize operation failed: the sanitize failure mode.
const FAILED: u8 = 2;

/// Where the logical unit is with sanitize operations, as [`crate::LogicalUnit::sanitize_phase`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizePhase {
    /// No sanitize operation runs and the last one (if any) completed without error.
    Idle,
    /// A sanitize operation runs; `progress` is the fraction done in units of 1/65536.
    Running { progress: u16 },
    /// The last sanitize operation failed; `ause`: it was requested with AUSE = 1, so EXIT FAILURE MODE may end
    /// the failure mode.
    Failed { ause: bool },
}

#[derive(Debug)]
struct Inner {
    /// The phase to go back to when the operation handed out never starts.
    before: SanitizePhase,
    /// AUSE of the running operation.
    ause: bool,
    /// The driver started the operation's I/O: from now on only its end changes the phase.
    started: bool,
    /// AUSE of the failed operation (in the failure mode).
    failed_ause: bool,
}

#[derive(Debug)]
pub(crate) struct SanitizeState {
    phase: AtomicU8,
    progress: AtomicU16,
    inner: Mutex<Inner>,
}

impl Default for SanitizeState {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(IDLE),
            progress: AtomicU16::new(0),
            inner: Mutex::new(Inner { before: SanitizePhase::Idle, ause: false, started: false, failed_ause: false }),
        }
    }
}

/// 03/31/03 MEDIUM ERROR, SANITIZE COMMAND FAILED.
pub(crate) const fn sanitize_failed() -> Sense {
    Sense::new(SenseKey::MediumError, 0x31, 0x03)
}

impl SanitizeState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The phase now.
    pub(crate) fn phase(&self) -> SanitizePhase {
        match self.phase.load(Ordering::Acquire) {
            IDLE => SanitizePhase::Idle,
            RUNNING => SanitizePhase::Running { progress: self.progress.load(Ordering::Relaxed) },
            _ => SanitizePhase::Failed { ause: self.lock().failed_ause },
        }
    }

    /// Neither running nor failed (one atomic load: the READ/WRITE path asks this).
    pub(crate) fn idle(&self) -> bool {
        self.phase.load(Ordering::Acquire) == IDLE
    }

    /// Whether an operation runs.
    pub(crate) fn running(&self) -> bool {
        self.phase.load(Ordering::Acquire) == RUNNING
    }

    /// Whether the logical unit is in the sanitize failure mode.
    pub(crate) fn failed(&self) -> bool {
        self.phase.load(Ordering::Acquire) == FAILED
    }

    /// 02/04/1B SANITIZE IN PROGRESS with the progress indication.
    pub(crate) fn in_progress_sense(&self) -> Sense {
        Sense::sanitize_in_progress().with_sks(SenseKeySpecific::Progress(self.progress.load(Ordering::Relaxed)))
    }

    /// The sense data REQUEST SENSE reports for the sanitize state, if any (pollable sense data).
    pub(crate) fn pollable_sense(&self) -> Option<Sense> {
        match self.phase.load(Ordering::Acquire) {
            RUNNING => Some(self.in_progress_sense()),
            FAILED => Some(sanitize_failed()),
            _ => None,
        }
    }

    /// A SANITIZE requesting an operation (AUSE `ause`) passed its checks: the operation is handed out and the
    /// logical unit is busy with it from now on. Refused while one runs (SANITIZE IN PROGRESS), and with AUSE = 1
    /// after an operation requested with AUSE = 0 failed (restricted completion mode).
    pub(crate) fn begin(&self, ause: bool) -> Result<(), Sense> {
        let mut inner = self.lock();
        let before = match self.phase.load(Ordering::Acquire) {
            RUNNING => return Err(self.in_progress_sense()),
            FAILED if ause && !inner.failed_ause => return Err(Sense::invalid_field_in_cdb(1, Some(5))),
            FAILED => SanitizePhase::Failed { ause: inner.failed_ause },
            _ => SanitizePhase::Idle,
        };
        inner.before = before;
        inner.ause = ause;
        inner.started = false;
        self.progress.store(0, Ordering::Relaxed);
        self.phase.store(RUNNING, Ordering::Release);
        Ok(())
    }

    /// SANITIZE EXIT FAILURE MODE: leaves a failure mode entered with AUSE = 1; after a failure with AUSE = 0 it
    /// is an invalid field in the CDB. Without a failed operation there is nothing to do.
    pub(crate) fn exit_failure_mode(&self) -> Result<(), Sense> {
        let inner = self.lock();
        match self.phase.load(Ordering::Acquire) {
            RUNNING => Err(self.in_progress_sense()),
            FAILED if !inner.failed_ause => Err(Sense::invalid_field_in_cdb(1, Some(5))),
            _ => {
                self.phase.store(IDLE, Ordering::Release);
                Ok(())
            }
        }
    }

    /// The driver started the operation's I/O.
    pub(crate) fn started(&self) {
        if self.running() {
            self.lock().started = true;
        }
    }

    /// The operation handed out ended before it started (its command was abandoned): back to the phase before.
    pub(crate) fn cancel(&self) {
        let inner = self.lock();
        if self.running() && !inner.started {
            let phase = match inner.before {
                SanitizePhase::Failed { .. } => FAILED,
                _ => IDLE,
            };
            self.phase.store(phase, Ordering::Release);
        }
    }

    /// `done` of `total` units of work are done.
    pub(crate) fn progress(&self, done: u64, total: u64) {
        let fraction = if total == 0 { 0 } else { (u128::from(done.min(total)) << 16) / u128::from(total) };
        self.progress.store(u16::try_from(fraction).unwrap_or(u16::MAX), Ordering::Relaxed);
    }

    /// The operation ended, without error (`ok`) or not.
    pub(crate) fn finish(&self, ok: bool) {
        let mut inner = self.lock();
        if !self.running() {
            return;
        }
        inner.started = false;
        if ok {
            self.phase.store(IDLE, Ordering::Release);
        } else {
            inner.failed_ause = inner.ause;
            self.phase.store(FAILED, Ordering::Release);
        }
    }
}
