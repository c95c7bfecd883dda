//! The login phase of one connection (RFC 7143 §6.3, §11.12, §11.13), as a pure state machine: [`Login::handle`]
//! takes a decoded Login Request and its data segment and returns the Login Response to send and whether the
//! login goes on, completes (full feature phase with the negotiated [`SessionParams`]) or fails.
//!
//! The stages are security negotiation (0), operational negotiation (1) and full feature phase (3). A login may
//! start in stage 0 or, when no authentication is required, directly in stage 1 (§6.3). The target moves to the
//! next stage only when the initiator set the T bit and the target agrees: it stays in the operational stage while
//! its own offers await an answer, and answers a request to go from security straight to full feature phase with
//! NSG=1 when it has operational keys to offer or declare (§6.3, §11.12.3).
//!
//! Text that does not fit in one PDU travels with the C bit in both directions (§6.1): requests are collected
//! (each C-bit request is answered with an empty response) and parsed once complete; responses longer than
//! 8192 bytes (the MaxRecvDataSegmentLength in force during login) are sent in chunks, the initiator fetching each
//! with an empty request.
//!
//! Status codes follow §11.13.5.
//!
//! Authentication (§12.1): when the catalog's [`Credentials`] for the target (or, for discovery sessions, the
//! driver-level ones) list incoming users, AuthMethod must negotiate to CHAP and the CHAP exchange
//! ([`crate::chap`]) must succeed before the login leaves the security stage; a login that starts in the operational
//! stage, offers no CHAP, or tries to leave the security stage early fails with "authentication failure" (0x0201),
//! as iSCSI-SCST answers. Without incoming users the method is None. Every authentication failure is reported to
//! [`TargetCatalog::auth_failed`]; the challenge bytes come from [`TargetCatalog::random_source`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::chap::{Chap, ChapError, Credentials, RandomSource, ResponseKeys};
use crate::negotiate::{self, NegotiationError, Negotiator, Stage};
use crate::params::{SessionParams, SessionType, TargetParams};
use crate::serial::SerialNumber;
use crate::text::{self, TextBuilder, TextChunks, TextCollector, TextError};
use crate::wire::{LoginRequest, LoginResponse};

/// The only protocol version: draft 20 / RFC 7143 is version 0x00 (§11.12.4).
pub const ISCSI_VERSION: u8 = 0;

/// The portal a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalInfo {
    pub local: SocketAddr,
    /// Target Portal Group Tag of the portal.
    pub tpgt: u16,
}

/// A target as the catalog describes it to the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub name: String,
    pub alias: Option<String>,
    pub params: TargetParams,
}

/// Why the catalog refuses a login (for [`TargetCatalog::resolve`] and [`TargetCatalog::discovery_allowed`]), and
/// the status the login answers with (§11.13.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target exists but this initiator may not use it through this portal (0x0202).
    NotAuthorized,
    /// No such target (0x0203).
    NotFound,
    /// The target has been removed (0x0204).
    Removed,
    /// Too many connections or sessions (0x0206).
    TooManyConnections,
    /// The target is temporarily disabled (0x0301).
    ServiceUnavailable,
    /// The target lacks resources for a new session (0x0302).
    OutOfResources,
    /// Log in at another address instead (0x0101 temporarily, 0x0102 permanently); `address` is a TargetAddress
    /// value such as `"10.0.0.2:3260,1"` (§13.8).
    Redirect { address: String, permanent: bool },
}

/// The targets the login phase may reach, supplied by the target registry.
pub trait TargetCatalog: Send + Sync {
    /// The target this initiator may log in to through this portal (None: unknown, not allowed, or disabled).
    fn lookup(
        &self,
        target_name: &str,
        initiator_name: &str,
        portal: &PortalInfo,
    ) -> Option<TargetInfo>;
    /// SendTargets answers: (target name, TargetAddress values such as "127.0.0.1:3260,1" or "[::1]:3260,1").
    /// `which` is None for "All", Some(name) for one target.
    fn send_targets(
        &self,
        initiator_name: &str,
        portal: &PortalInfo,
        which: Option<&str>,
    ) -> Vec<(String, Vec<String>)>;
    /// Negotiation defaults for discovery sessions.
    fn discovery_params(&self) -> TargetParams;
    /// A new nonzero TSIH, unique among live sessions.
    fn new_tsih(&self) -> u16;
    /// Like [`Self::lookup`], saying why a login is refused. The default refuses with "not found".
    fn resolve(
        &self,
        target_name: &str,
        initiator_name: &str,
        portal: &PortalInfo,
    ) -> Result<TargetInfo, Refusal> {
        self.lookup(target_name, initiator_name, portal)
            .ok_or(Refusal::NotFound)
    }
    /// Whether this initiator may open a discovery session through this portal. The default allows it.
    fn discovery_allowed(
        &self,
        _initiator_name: &str,
        _portal: &PortalInfo,
    ) -> Result<(), Refusal> {
        Ok(())
    }
    /// The CHAP accounts of a target (`Some(name)`) or, with `None`, of discovery sessions (SCST's target and
    /// driver-level `IncomingUser`/`OutgoingUser` attributes). The default has none: no authentication.
    fn credentials(&self, _target_name: Option<&str>) -> Credentials {
        Credentials::none()
    }
    /// The source of CHAP identifiers and challenges (a CSPRNG). The default has none, and a login that needs a
    /// challenge then fails with "target error" (0x0300).
    fn random_source(&self) -> Option<&dyn RandomSource> {
        None
    }
    /// Called once for every login that fails with "authentication failure" (0x0201), to count them; the driver
    /// delays its answer. `target_name` is None for discovery sessions. The default does nothing.
    fn auth_failed(&self, _initiator_name: &str, _target_name: Option<&str>) {}
    /// Whether a new normal session of `initiator_name` with `isid` may be opened to `target_name` (called right
    /// after [`Self::resolve`], before any security negotiation): e.g. a per-target session limit. A session with
    /// the same initiator name, ISID and target replaces the existing one (session reinstatement, RFC 7143 §6.3.5)
    /// and so adds none. The default admits every session.
    fn admit_session(&self, _target_name: &str, _initiator_name: &str, _isid: [u8; 6]) -> Result<(), Refusal> {
        Ok(())
    }
    /// Whether a session with this TSIH is live (a login with a nonzero TSIH then asks for a second connection,
    /// which MaxConnections=1 refuses with "too many connections"; otherwise "session does not exist"). The
    /// default knows no sessions.
    fn session_exists(&self, _tsih: u16) -> bool {
        false
    }
}

pub use crate::wire::LoginStatus;

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoginError {
    #[error("version range {min}..={max} does not include version 0")]
    UnsupportedVersion { min: u8, max: u8 },
    #[error("invalid stage: CSG {csg}, T {transit}, NSG {nsg} while in stage {stage:?}")]
    InvalidStage {
        csg: u8,
        transit: bool,
        nsg: u8,
        stage: Stage,
    },
    #[error("C and T bits both set")]
    ContinueWithTransit,
    #[error("{0} changed within the login")]
    FieldChanged(&'static str),
    #[error("text: {0}")]
    Text(#[from] TextError),
    #[error("negotiation: {0}")]
    Negotiation(#[from] NegotiationError),
    #[error("the first login request lacks {0}")]
    MissingKey(&'static str),
    #[error("SessionType {0:?} is not supported")]
    SessionType(String),
    #[error("TSIH {0}: the session does not exist (one connection per session)")]
    SessionDoesNotExist(u16),
    #[error("TSIH {0}: the session already has its one connection (MaxConnections=1)")]
    TooManyConnections(u16),
    #[error("login to {target:?} refused: {refusal:?}")]
    Refused { target: String, refusal: Refusal },
    #[error("no acceptable authentication method in {0:?}")]
    NoAuthMethod(String),
    #[error("authentication key {0} outside an authentication exchange")]
    UnexpectedAuthKey(String),
    #[error("CHAP: {0}")]
    Chap(#[from] ChapError),
    #[error("the target requires CHAP authentication before the operational stage")]
    AuthenticationRequired,
    #[error("a request fetching the rest of a continued response carries data or the C bit")]
    BadContinuationRequest,
    #[error("a non-login PDU arrived during the login phase")]
    InvalidDuringLogin,
    #[error("the catalog returned TSIH 0")]
    NoTsih,
    #[error("the login has already ended")]
    Finished,
}

impl LoginError {
    /// The status the failure is answered with.
    pub fn status(&self) -> LoginStatus {
        match self {
            LoginError::UnsupportedVersion { .. } => LoginStatus::UnsupportedVersion,
            LoginError::MissingKey(_) => LoginStatus::MissingParameter,
            LoginError::SessionType(_) => LoginStatus::SessionTypeNotSupported,
            LoginError::SessionDoesNotExist(_) => LoginStatus::SessionDoesNotExist,
            LoginError::TooManyConnections(_) => LoginStatus::TooManyConnections,
            LoginError::NoAuthMethod(_) | LoginError::AuthenticationRequired => {
                LoginStatus::AuthenticationFailure
            }
            LoginError::Chap(ChapError::NoRandom) => LoginStatus::TargetError,
            LoginError::Chap(_) => LoginStatus::AuthenticationFailure,
            LoginError::InvalidDuringLogin => LoginStatus::InvalidDuringLogin,
            LoginError::NoTsih => LoginStatus::TargetError,
            LoginError::Refused { refusal, .. } => match refusal {
                Refusal::NotAuthorized => LoginStatus::AuthorizationFailure,
                Refusal::NotFound => LoginStatus::NotFound,
                Refusal::Removed => LoginStatus::TargetRemoved,
                Refusal::TooManyConnections => LoginStatus::TooManyConnections,
                Refusal::ServiceUnavailable => LoginStatus::ServiceUnavailable,
                Refusal::OutOfResources => LoginStatus::OutOfResources,
                Refusal::Redirect {
                    permanent: false, ..
                } => LoginStatus::TargetMovedTemporarily,
                Refusal::Redirect {
                    permanent: true, ..
                } => LoginStatus::TargetMovedPermanently,
            },
            LoginError::InvalidStage { .. }
            | LoginError::ContinueWithTransit
            | LoginError::FieldChanged(_)
            | LoginError::Text(_)
            | LoginError::Negotiation(_)
            | LoginError::UnexpectedAuthKey(_)
            | LoginError::BadContinuationRequest
            | LoginError::Finished => LoginStatus::InitiatorError,
        }
    }

    /// True for the failures answered with "authentication failure" (0x0201): no acceptable AuthMethod, a failed
    /// CHAP exchange, or an attempt to skip a required authentication.
    pub fn is_authentication_failure(&self) -> bool {
        self.status() == LoginStatus::AuthenticationFailure
    }
}

/// What to do after one Login Request.
// One step per login request: the size of `Complete` does not matter, and the connection code matches on these
// exact fields.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this response; the login goes on.
    Respond {
        header: LoginResponse,
        data: Vec<u8>,
    },
    /// Send this final response, then enter full feature phase with these parameters. Full feature phase continues
    /// with StatSN `header.stat_sn + 1`, ExpCmdSN `header.exp_cmd_sn` and MaxCmdSN `header.max_cmd_sn`; the CID is
    /// the one of the Login Requests. `target` is None for discovery sessions.
    Complete {
        header: LoginResponse,
        data: Vec<u8>,
        params: SessionParams,
        target: Option<TargetInfo>,
    },
    /// Send this response (a failure or redirection status), then close the connection.
    Fail {
        header: LoginResponse,
        data: Vec<u8>,
    },
}

/// The authentication state of the security stage (§12). With the method None the stage is complete once
/// AuthMethod is answered; a CHAP exchange is in progress from then until CHAP_N/CHAP_R have been verified, and holds
/// the transit out of the security stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No AuthMethod offered (yet).
    NotNegotiated,
    /// AuthMethod agreed; its exchange is under way.
    InProgress(&'static str),
    /// AuthMethod agreed and the exchange finished.
    Done(&'static str),
}

/// Fields that stay the same in every request of one login (§11.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    isid: [u8; 6],
    tsih: u16,
    itt: u32,
    cid: u16,
}

/// A response whose text is sent in several PDUs.
#[derive(Debug, Clone)]
struct Pending {
    chunks: TextChunks,
    csg: Stage,
    transit: bool,
    nsg: Stage,
    complete: Option<(SessionParams, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Complete,
    Failed,
}

/// The login phase of one connection.
pub struct Login {
    catalog: Arc<dyn TargetCatalog>,
    portal: PortalInfo,
    state: State,
    /// StatSN of the next response.
    stat_sn: SerialNumber,
    ids: Option<Ids>,
    /// Current stage; meaningful once `started`.
    stage: Stage,
    started: bool,
    collector: TextCollector,
    pending: Option<Pending>,
    negotiator: Option<Negotiator>,
    target: Option<TargetInfo>,
    auth: Auth,
    /// The CHAP accounts of the target or of discovery, from the catalog.
    credentials: Credentials,
    chap: Option<Chap>,
    /// The incoming user the initiator authenticated as.
    chap_user: Option<String>,
    /// The InitiatorName of the first request.
    initiator: Option<String>,
    identity_sent: bool,
    cmd_sn: SerialNumber,
    window: u32,
    failure: Option<LoginError>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("portal", &self.portal)
            .field("state", &self.state)
            .field("stage", &self.stage)
            .field("stat_sn", &self.stat_sn)
            .field("auth", &self.auth)
            .field("chap_user", &self.chap_user)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// A login on a new connection through `portal`. The first response carries StatSN 1 (see
    /// [`Self::with_initial_stat_sn`]).
    pub fn new(catalog: Arc<dyn TargetCatalog>, portal: PortalInfo) -> Self {
        Login {
            catalog,
            portal,
            state: State::Active,
            stat_sn: SerialNumber(1),
            ids: None,
            stage: Stage::Security,
            started: false,
            collector: TextCollector::default(),
            pending: None,
            negotiator: None,
            target: None,
            auth: Auth::NotNegotiated,
            credentials: Credentials::none(),
            chap: None,
            chap_user: None,
            initiator: None,
            identity_sent: false,
            cmd_sn: SerialNumber(0),
            window: 1,
            failure: None,
        }
    }

    /// Starts the connection's StatSN at `sn` instead of 1.
    pub fn with_initial_stat_sn(mut self, sn: SerialNumber) -> Self {
        self.stat_sn = sn;
        self
    }

    /// Handles one Login Request with its data segment (without padding and digest). Never panics.
    pub fn handle(&mut self, req: &LoginRequest, data: &[u8]) -> LoginStep {
        match self.step(req, data) {
            Ok(step) => step,
            Err(e) => {
                tracing::debug!(error = %e, "login failed");
                self.fail(req.isid, req.tsih, req.itt, req.csg, e)
            }
        }
    }

    /// The answer to a PDU other than a Login Request during the login phase: "invalid request type during login"
    /// (0x020b), after which the connection closes.
    pub fn invalid_during_login(&mut self) -> LoginStep {
        let (isid, tsih, itt) = self
            .ids
            .map(|i| (i.isid, i.tsih, i.itt))
            .unwrap_or(([0; 6], 0, 0));
        let csg = self.stage as u8;
        self.fail(isid, tsih, itt, csg, LoginError::InvalidDuringLogin)
    }

    /// True once the login completed or failed.
    pub fn is_finished(&self) -> bool {
        self.state != State::Active
    }

    /// Why the login failed, once it has.
    pub fn failure(&self) -> Option<&LoginError> {
        self.failure.as_ref()
    }

    /// The current stage (security until the first request has been handled).
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The authentication state.
    pub fn auth(&self) -> Auth {
        self.auth
    }

    /// The CHAP user name the initiator authenticated as, once it has.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.chap_user.as_deref()
    }

    /// Whether authentication is required and has not finished yet.
    fn auth_pending(&self) -> bool {
        self.credentials.required() && !matches!(self.auth, Auth::Done(_))
    }

    fn step(&mut self, req: &LoginRequest, data: &[u8]) -> Result<LoginStep, LoginError> {
        if self.state != State::Active {
            return Err(LoginError::Finished);
        }
        // Login requests are immediate: CmdSN does not advance, and every response expects it (§11.12.8).
        self.cmd_sn = req.cmd_sn;
        // §11.12.4: the target supports version 0 only.
        if !(req.version_min..=req.version_max).contains(&ISCSI_VERSION) {
            return Err(LoginError::UnsupportedVersion {
                min: req.version_min,
                max: req.version_max,
            });
        }
        let ids = Ids {
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            cid: req.cid,
        };
        match self.ids {
            None => {
                // TSIH 0 opens a new session; a nonzero TSIH adds a connection to an existing session, which is not
                // supported while MaxConnections is 1.
                if req.tsih != 0 {
                    if self.catalog.session_exists(req.tsih) {
                        return Err(LoginError::TooManyConnections(req.tsih));
                    }
                    return Err(LoginError::SessionDoesNotExist(req.tsih));
                }
                self.ids = Some(ids);
            }
            Some(first) => {
                let changed = if first.isid != ids.isid {
                    Some("ISID")
                } else if first.tsih != ids.tsih {
                    Some("TSIH")
                } else if first.itt != ids.itt {
                    Some("ITT")
                } else if first.cid != ids.cid {
                    Some("CID")
                } else {
                    None
                };
                if let Some(field) = changed {
                    return Err(LoginError::FieldChanged(field));
                }
            }
        }

        let invalid_stage = || LoginError::InvalidStage {
            csg: req.csg,
            transit: req.transit,
            nsg: req.nsg,
            stage: self.stage,
        };
        let csg = match Stage::from_u8(req.csg) {
            Some(s @ (Stage::Security | Stage::Operational)) => s,
            _ => return Err(invalid_stage()),
        };
        if req.transit && req.continue_ {
            return Err(LoginError::ContinueWithTransit);
        }
        let nsg = if req.transit {
            match Stage::from_u8(req.nsg) {
                Some(n) if (n as u8) > (csg as u8) => n,
                _ => return Err(invalid_stage()),
            }
        } else {
            csg
        };
        if self.started && csg != self.stage {
            return Err(invalid_stage());
        }

        // The initiator fetches the rest of a continued response with empty requests.
        if self.pending.is_some() {
            if !data.is_empty() || req.continue_ {
                return Err(LoginError::BadContinuationRequest);
            }
            return self.send_pending();
        }

        self.collector.push(data)?;
        self.started = true;
        self.stage = csg;
        if req.continue_ {
            // More text follows: acknowledge with an empty response (§11.12.2).
            let header = self.header(csg, false, csg, false, 0, LoginStatus::Success);
            return Ok(LoginStep::Respond {
                header,
                data: Vec::new(),
            });
        }
        let text = self.collector.take();
        let pairs = text::parse(&text)?;
        let first = self.negotiator.is_none();
        if first {
            self.begin(&pairs)?;
        }
        // A login may start in the operational stage only when no authentication is required (§6.3).
        if csg == Stage::Operational && self.auth_pending() {
            return Err(LoginError::AuthenticationRequired);
        }
        self.respond(&pairs, csg, req.transit, nsg, first)
    }

    /// Reads the session identity from the first complete request and looks the target up.
    fn begin(&mut self, pairs: &[(String, String)]) -> Result<(), LoginError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let initiator = get("InitiatorName")
            .filter(|v| !v.is_empty())
            .ok_or(LoginError::MissingKey("InitiatorName"))?;
        self.initiator = Some(initiator.to_string());
        let session_type = match get("SessionType") {
            None => SessionType::Normal,
            Some(v) => negotiate::parse_session_type(v)
                .ok_or_else(|| LoginError::SessionType(v.to_string()))?,
        };
        let params = match session_type {
            SessionType::Normal => {
                let name = get("TargetName")
                    .filter(|v| !v.is_empty())
                    .ok_or(LoginError::MissingKey("TargetName"))?;
                let info = self
                    .catalog
                    .resolve(name, initiator, &self.portal)
                    .map_err(|refusal| LoginError::Refused {
                        target: name.to_string(),
                        refusal,
                    })?;
                let isid = self.ids.map(|i| i.isid).unwrap_or_default();
                self.catalog
                    .admit_session(&info.name, initiator, isid)
                    .map_err(|refusal| LoginError::Refused {
                        target: name.to_string(),
                        refusal,
                    })?;
                let params = info.params.clone();
                self.credentials = self.catalog.credentials(Some(&info.name));
                self.target = Some(info);
                params
            }
            SessionType::Discovery => {
                self.catalog
                    .discovery_allowed(initiator, &self.portal)
                    .map_err(|refusal| LoginError::Refused {
                        target: String::new(),
                        refusal,
                    })?;
                self.credentials = self.catalog.credentials(None);
                self.catalog.discovery_params()
            }
        };
        self.window = params.queued_commands.clamp(1, 1 << 30);
        self.negotiator = Some(Negotiator::new(session_type, params));
        Ok(())
    }

    /// Answers one complete request and decides whether to move to the next stage.
    fn respond(
        &mut self,
        pairs: &[(String, String)],
        csg: Stage,
        transit_requested: bool,
        nsg: Stage,
        first: bool,
    ) -> Result<LoginStep, LoginError> {
        let mut out = TextBuilder::new();
        let Some(neg) = self.negotiator.as_mut() else {
            return Err(LoginError::MissingKey("InitiatorName"));
        };
        let security = neg.process(pairs, csg, first, &mut out)?;
        let session_type = neg.session_type();
        let progressed = self.authenticate(&security, &mut out)?;
        let auth_pending = self.auth_pending();
        let Some(neg) = self.negotiator.as_mut() else {
            return Err(LoginError::MissingKey("InitiatorName"));
        };

        // The first response of a normal session names the portal group and the target's alias (§13.6, §13.9).
        if !self.identity_sent && session_type == SessionType::Normal {
            self.identity_sent = true;
            if let Some(alias) = self.target.as_ref().and_then(|t| t.alias.as_deref()) {
                if let Err(e) = out.push("TargetAlias", alias) {
                    tracing::warn!(error = %e, "TargetAlias not sent");
                }
            }
            out.push_number("TargetPortalGroupTag", u64::from(self.portal.tpgt))?;
        }

        let (transit, next) = match (transit_requested, csg) {
            // Authentication holds the login in the security stage (§12.1): while the exchange advances the
            // target answers with T=0; a request to leave without finishing it fails.
            (_, Stage::Security) if auth_pending => {
                if transit_requested && !progressed {
                    return Err(LoginError::AuthenticationRequired);
                }
                (false, csg)
            }
            (false, _) => (false, csg),
            (true, Stage::Security) => {
                // Going from security straight to full feature phase skips the target's operational keys; take
                // the operational stage instead when the target has something to offer or declare.
                if nsg == Stage::FullFeature && neg.wants_operational_stage() {
                    (true, Stage::Operational)
                } else {
                    (true, nsg)
                }
            }
            (true, _) => {
                // Offers made in an earlier response and still unanswered are taken as offered.
                if neg.offers_pending() {
                    neg.adopt_unanswered_offers();
                }
                if neg.make_offers(&mut out)? > 0 {
                    (false, csg)
                } else {
                    (true, nsg)
                }
            }
        };
        if csg == Stage::Operational {
            neg.declare(&mut out)?;
        }

        let complete = if transit && next == Stage::FullFeature {
            let isid = self.ids.map(|i| i.isid).unwrap_or_default();
            let mut params = neg.finish(isid, 0)?;
            // The TSIH of a new session goes in the final response only (§11.13.3).
            let tsih = self.catalog.new_tsih();
            if tsih == 0 {
                return Err(LoginError::NoTsih);
            }
            params.tsih = tsih;
            Some((params, tsih))
        } else {
            None
        };
        self.pending = Some(Pending {
            chunks: TextChunks::new(out.into_bytes(), text::LOGIN_DATA_SEGMENT_LEN),
            csg,
            transit,
            nsg: next,
            complete,
        });
        self.send_pending()
    }

    /// Handles the security keys of one request (§12.1): AuthMethod selects the method (CHAP when the credentials
    /// list incoming users, else None); the keys of the CHAP exchange are only valid once CHAP is selected. Returns
    /// whether the exchange advanced (a method was selected, a challenge sent or a response verified).
    fn authenticate(
        &mut self,
        keys: &[(String, String)],
        out: &mut TextBuilder,
    ) -> Result<bool, LoginError> {
        let mut progressed = false;
        let mut response = ResponseKeys::default();
        let mut responded = false;
        for (key, value) in keys {
            match key.as_str() {
                "AuthMethod" => {
                    if self.auth != Auth::NotNegotiated {
                        return Err(LoginError::UnexpectedAuthKey(key.clone()));
                    }
                    let acceptable: &[&'static str] = if self.credentials.required() {
                        &["CHAP"]
                    } else {
                        &["None"]
                    };
                    let picked = negotiate::select_from_list(value, acceptable)
                        .ok()
                        .flatten();
                    let method = acceptable
                        .iter()
                        .copied()
                        .find(|m| Some(*m) == picked)
                        .ok_or_else(|| LoginError::NoAuthMethod(value.clone()))?;
                    out.push("AuthMethod", method)?;
                    if method == "CHAP" {
                        self.auth = Auth::InProgress(method);
                        self.chap = Some(Chap::new());
                        progressed = true;
                    } else {
                        // The method None needs no exchange: the security stage is complete.
                        self.auth = Auth::Done(method);
                    }
                }
                "CHAP_A" => {
                    let Some(chap) = self
                        .chap
                        .as_mut()
                        .filter(|_| self.auth == Auth::InProgress("CHAP"))
                    else {
                        return Err(LoginError::UnexpectedAuthKey(key.clone()));
                    };
                    let random = self
                        .catalog
                        .random_source()
                        .ok_or(LoginError::Chap(ChapError::NoRandom))?;
                    let challenge = chap.challenge(value, random)?;
                    for (k, v) in challenge.keys() {
                        out.push(k, &v)?;
                    }
                    progressed = true;
                }
                "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => {
                    if self.auth != Auth::InProgress("CHAP") {
                        return Err(LoginError::UnexpectedAuthKey(key.clone()));
                    }
                    let slot = match key.as_str() {
                        "CHAP_N" => &mut response.name,
                        "CHAP_R" => &mut response.response,
                        "CHAP_I" => &mut response.id,
                        _ => &mut response.challenge,
                    };
                    *slot = Some(value.as_str());
                    responded = true;
                }
                _ => return Err(LoginError::UnexpectedAuthKey(key.clone())),
            }
        }
        if responded {
            let Some(chap) = self.chap.as_mut() else {
                return Err(LoginError::Chap(ChapError::OutOfOrder("CHAP_N")));
            };
            let ok = chap.verify(&response, &self.credentials)?;
            if let Some((name, r)) = &ok.target_response {
                out.push("CHAP_N", name)?;
                out.push("CHAP_R", r)?;
            }
            tracing::info!(
                initiator = self.initiator.as_deref().unwrap_or(""),
                user = %ok.user,
                algorithm = %ok.algorithm,
                mutual = ok.target_response.is_some(),
                "CHAP authentication succeeded"
            );
            self.auth = Auth::Done("CHAP");
            self.chap_user = Some(ok.user);
            progressed = true;
        }
        Ok(progressed)
    }

    /// Sends the next chunk of the pending response.
    fn send_pending(&mut self) -> Result<LoginStep, LoginError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(LoginError::BadContinuationRequest);
        };
        let Some((chunk, more)) = pending.chunks.next_chunk() else {
            return Err(LoginError::BadContinuationRequest);
        };
        if more {
            let header = self.header(
                pending.csg,
                false,
                pending.csg,
                true,
                0,
                LoginStatus::Success,
            );
            self.pending = Some(pending);
            return Ok(LoginStep::Respond {
                header,
                data: chunk,
            });
        }
        let tsih = pending.complete.as_ref().map(|(_, t)| *t).unwrap_or(0);
        let header = self.header(
            pending.csg,
            pending.transit,
            pending.nsg,
            false,
            tsih,
            LoginStatus::Success,
        );
        if pending.transit {
            self.stage = pending.nsg;
        }
        match pending.complete {
            Some((params, _)) => {
                self.state = State::Complete;
                Ok(LoginStep::Complete {
                    header,
                    data: chunk,
                    params,
                    target: self.target.clone(),
                })
            }
            None => Ok(LoginStep::Respond {
                header,
                data: chunk,
            }),
        }
    }

    /// A success-class response header; takes the next StatSN.
    fn header(
        &mut self,
        csg: Stage,
        transit: bool,
        nsg: Stage,
        continue_: bool,
        tsih: u16,
        status: LoginStatus,
    ) -> LoginResponse {
        let ids = self.ids.unwrap_or(Ids {
            isid: [0; 6],
            tsih: 0,
            itt: 0,
            cid: 0,
        });
        let stat_sn = self.stat_sn;
        self.stat_sn = self.stat_sn.next();
        LoginResponse {
            transit,
            continue_,
            csg: csg as u8,
            nsg: if transit { nsg as u8 } else { 0 },
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            isid: ids.isid,
            tsih,
            itt: ids.itt,
            stat_sn,
            exp_cmd_sn: self.cmd_sn,
            max_cmd_sn: self.cmd_sn.add(self.window.saturating_sub(1)),
            status_class: status.class(),
            status_detail: status.detail(),
        }
    }

    fn fail(&mut self, isid: [u8; 6], tsih: u16, itt: u32, csg: u8, e: LoginError) -> LoginStep {
        let status = e.status();
        let mut data = TextBuilder::new();
        if let LoginError::Refused {
            refusal: Refusal::Redirect { address, .. },
            ..
        } = &e
        {
            // §11.13.5: a redirection carries the new TargetAddress.
            if let Err(err) = data.push("TargetAddress", address) {
                tracing::warn!(error = %err, "redirect address not sent");
            }
        }
        let stat_sn = self.stat_sn;
        self.stat_sn = self.stat_sn.next();
        let header = LoginResponse {
            transit: false,
            continue_: false,
            csg: csg & 0x3,
            nsg: 0,
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            isid,
            tsih,
            itt,
            stat_sn,
            exp_cmd_sn: self.cmd_sn,
            max_cmd_sn: self.cmd_sn.add(self.window.saturating_sub(1)),
            status_class: status.class(),
            status_detail: status.detail(),
        };
        // A request after the end changes nothing: a completed login stays complete, a failure keeps its reason.
        if self.state == State::Active {
            if e.is_authentication_failure() {
                let initiator = self.initiator.as_deref().unwrap_or("");
                let target = self.target.as_ref().map(|t| t.name.as_str());
                tracing::warn!(initiator, target, reason = %e, "login authentication failed");
                self.catalog.auth_failed(initiator, target);
            }
            self.state = State::Failed;
            self.pending = None;
            self.failure = Some(e);
        }
        LoginStep::Fail {
            header,
            data: data.into_bytes(),
        }
    }
}

/// The SendTargets text answer of a discovery session (or a normal session) in full feature phase (§11.10.2,
/// Appendix C): value "All", a target name, or empty for the session's own target.
///
/// The answer lists, for each target the catalog reports, `TargetName=<name>` followed by its `TargetAddress`
/// values. "All" is only valid in a discovery session and an empty value only in a normal session; otherwise the
/// answer is `SendTargets=Reject`. An unknown or forbidden target yields an empty answer.
pub fn send_targets_response(
    catalog: &dyn TargetCatalog,
    initiator_name: &str,
    portal: &PortalInfo,
    session_target: Option<&str>,
    value: &str,
) -> Vec<u8> {
    let which = match (value, session_target) {
        ("All", None) => None,
        ("", Some(own)) => Some(own),
        ("All", Some(_)) | ("", None) => {
            let mut out = TextBuilder::new();
            return match out.push_special("SendTargets", text::Special::Reject) {
                Ok(()) => out.into_bytes(),
                Err(_) => Vec::new(),
            };
        }
        (name, _) => Some(name),
    };
    let mut out = TextBuilder::new();
    for (name, addresses) in catalog.send_targets(initiator_name, portal, which) {
        if let Err(e) = out.push("TargetName", &name) {
            tracing::warn!(error = %e, "target left out of SendTargets");
            continue;
        }
        for address in addresses {
            if let Err(e) = out.push("TargetAddress", &address) {
                tracing::warn!(error = %e, "address left out of SendTargets");
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::chap::{ChapUser, FixedRandom};
    use crate::params::Digest;

    const TARGET: &str = "iqn.2024-01.org.polltgt:disk1";
    const TARGET2: &str = "iqn.2024-01.org.polltgt:disk2";
    const LIBISCSI: &str = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test";
    const OPEN_ISCSI: &str = "iqn.2004-10.com.ubuntu:01:6a1b2c3d4e5f";

    struct Catalog {
        targets: Vec<(TargetInfo, Vec<String>)>,
        refusal: Option<Refusal>,
        discovery_refusal: Option<Refusal>,
        discovery: TargetParams,
        next_tsih: Mutex<u16>,
        /// CHAP accounts of TARGET (TARGET2 has none) and of discovery.
        credentials: Credentials,
        discovery_credentials: Credentials,
        random: Option<FixedRandom>,
        /// (initiator, target) of every authentication failure reported.
        auth_failures: Mutex<Vec<(String, Option<String>)>>,
        /// The answer of `admit_session`, and the (target, initiator, ISID) it was asked about.
        admit: Option<Refusal>,
        admitted: Mutex<Vec<(String, String, [u8; 6])>>,
        /// A live TSIH.
        live_tsih: u16,
    }

    impl TargetCatalog for Catalog {
        fn lookup(
            &self,
            target_name: &str,
            _initiator: &str,
            _portal: &PortalInfo,
        ) -> Option<TargetInfo> {
            self.targets
                .iter()
                .find(|(t, _)| t.name == target_name)
                .map(|(t, _)| t.clone())
        }
        fn send_targets(
            &self,
            _initiator: &str,
            _portal: &PortalInfo,
            which: Option<&str>,
        ) -> Vec<(String, Vec<String>)> {
            self.targets
                .iter()
                .filter(|(t, _)| match which {
                    None => true,
                    Some(w) => w == t.name,
                })
                .map(|(t, a)| (t.name.clone(), a.clone()))
                .collect()
        }
        fn discovery_params(&self) -> TargetParams {
            self.discovery.clone()
        }
        fn new_tsih(&self) -> u16 {
            let mut t = self.next_tsih.lock().unwrap();
            let v = *t;
            *t = t.wrapping_add(1);
            v
        }
        fn resolve(
            &self,
            target: &str,
            initiator: &str,
            portal: &PortalInfo,
        ) -> Result<TargetInfo, Refusal> {
            match &self.refusal {
                Some(r) => Err(r.clone()),
                None => self
                    .lookup(target, initiator, portal)
                    .ok_or(Refusal::NotFound),
            }
        }
        fn discovery_allowed(&self, _initiator: &str, _portal: &PortalInfo) -> Result<(), Refusal> {
            match &self.discovery_refusal {
                Some(r) => Err(r.clone()),
                None => Ok(()),
            }
        }
        fn credentials(&self, target: Option<&str>) -> Credentials {
            match target {
                None => self.discovery_credentials.clone(),
                Some(TARGET) => self.credentials.clone(),
                Some(_) => Credentials::none(),
            }
        }
        fn random_source(&self) -> Option<&dyn RandomSource> {
            self.random.as_ref().map(|r| r as &dyn RandomSource)
        }
        fn auth_failed(&self, initiator: &str, target: Option<&str>) {
            self.auth_failures
                .lock()
                .unwrap()
                .push((initiator.to_string(), target.map(str::to_string)));
        }
        fn admit_session(&self, target: &str, initiator: &str, isid: [u8; 6]) -> Result<(), Refusal> {
            self.admitted
                .lock()
                .unwrap()
                .push((target.to_string(), initiator.to_string(), isid));
            match &self.admit {
                Some(r) => Err(r.clone()),
                None => Ok(()),
            }
        }
        fn session_exists(&self, tsih: u16) -> bool {
            tsih == self.live_tsih
        }
    }

    /// A catalog with only the required methods, to exercise the trait's defaults.
    struct LookupOnly;

    impl TargetCatalog for LookupOnly {
        fn lookup(&self, _t: &str, _i: &str, _p: &PortalInfo) -> Option<TargetInfo> {
            None
        }
        fn send_targets(
            &self,
            _i: &str,
            _p: &PortalInfo,
            _w: Option<&str>,
        ) -> Vec<(String, Vec<String>)> {
            Vec::new()
        }
        fn discovery_params(&self) -> TargetParams {
            TargetParams::default()
        }
        fn new_tsih(&self) -> u16 {
            1
        }
    }

    fn catalog_with(params: TargetParams) -> Catalog {
        Catalog {
            targets: vec![
                (
                    TargetInfo {
                        name: TARGET.into(),
                        alias: Some("disk one".into()),
                        params,
                    },
                    vec!["127.0.0.1:3260,1".into(), "[::1]:3260,1".into()],
                ),
                (
                    TargetInfo {
                        name: TARGET2.into(),
                        alias: None,
                        params: TargetParams::default(),
                    },
                    vec!["127.0.0.1:3260,1".into()],
                ),
            ],
            refusal: None,
            discovery_refusal: None,
            discovery: TargetParams {
                max_recv_data_segment_length: 32768,
                ..TargetParams::default()
            },
            next_tsih: Mutex::new(0x42),
            credentials: Credentials::none(),
            discovery_credentials: Credentials::none(),
            random: Some(FixedRandom::new((0x40..=0x60).collect::<Vec<u8>>())),
            auth_failures: Mutex::new(Vec::new()),
            admit: None,
            admitted: Mutex::new(Vec::new()),
            live_tsih: 0x99,
        }
    }

    fn portal() -> PortalInfo {
        PortalInfo {
            local: "127.0.0.1:3260".parse().unwrap(),
            tpgt: 1,
        }
    }

    fn login_with(c: Catalog) -> Login {
        Login::new(Arc::new(c), portal())
    }

    fn login() -> Login {
        login_with(catalog_with(TargetParams::default()))
    }

    fn req(csg: u8, transit: bool, nsg: u8) -> LoginRequest {
        LoginRequest {
            transit,
            continue_: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01],
            tsih: 0,
            itt: 0x1234,
            cid: 0,
            cmd_sn: SerialNumber(100),
            exp_stat_sn: SerialNumber(0),
        }
    }

    fn cont(csg: u8) -> LoginRequest {
        LoginRequest {
            continue_: true,
            ..req(csg, false, 0)
        }
    }

    fn text(pairs: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in pairs {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    fn kv(data: &[u8]) -> Vec<(String, String)> {
        text::parse(data).unwrap()
    }

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn status(step: &LoginStep) -> u16 {
        let h = match step {
            LoginStep::Respond { header, .. }
            | LoginStep::Complete { header, .. }
            | LoginStep::Fail { header, .. } => header,
        };
        u16::from(h.status_class) << 8 | u16::from(h.status_detail)
    }

    fn fail_code(step: &LoginStep) -> u16 {
        assert!(
            matches!(step, LoginStep::Fail { .. }),
            "expected a failure, got {step:?}"
        );
        status(step)
    }

    fn respond(step: LoginStep) -> (LoginResponse, Vec<(String, String)>) {
        match step {
            LoginStep::Respond { header, data } => (header, kv(&data)),
            other => panic!("expected Respond, got {other:?}"),
        }
    }

    fn complete(
        step: LoginStep,
    ) -> (
        LoginResponse,
        Vec<(String, String)>,
        SessionParams,
        Option<TargetInfo>,
    ) {
        match step {
            LoginStep::Complete {
                header,
                data,
                params,
                target,
            } => (header, kv(&data), params, target),
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    /// The first PDU libiscsi sends when no CHAP user is set: straight to the operational stage (lib/login.c).
    fn libiscsi_normal() -> Vec<u8> {
        text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "HeaderDigest=None,CRC32C",
            "DataDigest=None",
            "InitialR2T=No",
            "ImmediateData=Yes",
            "MaxBurstLength=262144",
            "FirstBurstLength=262144",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "MaxOutstandingR2T=1",
            "ErrorRecoveryLevel=0",
            "IFMarker=No",
            "OFMarker=No",
            "MaxConnections=1",
            "MaxRecvDataSegmentLength=262144",
            "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes",
        ])
    }

    /// open-iscsi's operational-stage keys of a normal session with the iscsid.conf defaults (usr/login.c).
    fn open_iscsi_operational() -> Vec<u8> {
        text(&[
            "HeaderDigest=None",
            "DataDigest=None",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "IFMarker=No",
            "OFMarker=No",
            "ErrorRecoveryLevel=0",
            "InitialR2T=No",
            "ImmediateData=Yes",
            "MaxBurstLength=16776192",
            "FirstBurstLength=262144",
            "MaxOutstandingR2T=1",
            "MaxConnections=1",
            "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes",
            "MaxRecvDataSegmentLength=262144",
        ])
    }

    #[test]
    fn libiscsi_normal_login_in_one_pdu() {
        let mut l = login();
        let (h, keys, p, target) = complete(l.handle(&req(1, true, 3), &libiscsi_normal()));
        assert!(h.transit && !h.continue_);
        assert_eq!((h.csg, h.nsg), (1, 3));
        assert_eq!(h.tsih, 0x42);
        assert_eq!(h.itt, 0x1234);
        assert_eq!(h.isid, [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01]);
        assert_eq!((h.version_max, h.version_active), (0, 0));
        assert_eq!(h.stat_sn, SerialNumber(1));
        assert_eq!(h.exp_cmd_sn, SerialNumber(100));
        assert_eq!(h.max_cmd_sn, SerialNumber(131)); // QueuedCommands 32
        assert_eq!((h.status_class, h.status_detail), (0, 0));
        let expect = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("TargetAlias", "disk one"),
            ("TargetPortalGroupTag", "1"),
            ("MaxRecvDataSegmentLength", "1048576"),
        ];
        assert_eq!(keys.len(), expect.len(), "{keys:?}");
        for (k, v) in expect {
            assert_eq!(get(&keys, k), Some(v), "{k}");
        }
        assert_eq!(p.session_type, SessionType::Normal);
        assert_eq!(p.initiator_name, LIBISCSI);
        assert_eq!(p.target_name, TARGET);
        assert_eq!(p.tsih, 0x42);
        assert_eq!(p.isid, h.isid);
        assert!(!p.initial_r2t && p.immediate_data);
        assert_eq!((p.max_burst_length, p.first_burst_length), (262144, 262144));
        assert_eq!(
            (
                p.max_recv_data_segment_length,
                p.max_xmit_data_segment_length
            ),
            (1 << 20, 262144)
        );
        assert_eq!(
            (p.header_digest, p.data_digest),
            (Digest::None, Digest::None)
        );
        assert_eq!(target.unwrap().name, TARGET);
        assert!(l.is_finished() && l.failure().is_none());
        // Nothing after completion.
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &[])), 0x0200);
        assert_eq!(l.failure(), None, "the completed login keeps no failure");
    }

    #[test]
    fn libiscsi_with_chap_offer_falls_back_to_none() {
        // With a CHAP user set, libiscsi offers CHAP,None in the security stage and, once in the operational
        // stage, sends InitiatorName, TargetName and SessionType again with the operational keys.
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=CHAP,None",
        ]);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert_eq!((h.transit, h.csg, h.nsg), (true, 0, 1));
        assert_eq!(get(&keys, "AuthMethod"), Some("None"));
        let (h, _, p, _) = complete(l.handle(&req(1, true, 3), &libiscsi_normal()));
        assert_eq!((h.csg, h.nsg, h.stat_sn), (1, 3, SerialNumber(2)));
        assert_eq!(p.initiator_name, LIBISCSI);
        // The same keys with other values are a renegotiation.
        let mut l = login();
        respond(l.handle(&req(0, true, 1), &sec));
        let other = text(&[&format!("InitiatorName={OPEN_ISCSI}")]);
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &other)), 0x0200);
    }

    #[test]
    fn libiscsi_discovery_login() {
        let mut l = login();
        let data = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            "SessionType=Discovery",
            "HeaderDigest=None,CRC32C",
            "DataDigest=None",
            "InitialR2T=No",
            "ImmediateData=Yes",
            "MaxBurstLength=262144",
            "FirstBurstLength=262144",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "MaxOutstandingR2T=1",
            "ErrorRecoveryLevel=0",
            "IFMarker=No",
            "OFMarker=No",
            "MaxConnections=1",
            "MaxRecvDataSegmentLength=262144",
            "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes",
        ]);
        let (h, keys, p, target) = complete(l.handle(&req(1, true, 3), &data));
        assert_eq!((h.csg, h.nsg, h.tsih), (1, 3, 0x42));
        for k in [
            "InitialR2T",
            "ImmediateData",
            "MaxBurstLength",
            "FirstBurstLength",
            "MaxOutstandingR2T",
            "MaxConnections",
            "DataPDUInOrder",
            "DataSequenceInOrder",
        ] {
            assert_eq!(get(&keys, k), Some("Irrelevant"), "{k}");
        }
        assert_eq!(get(&keys, "HeaderDigest"), Some("None"));
        assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("32768"));
        assert_eq!(get(&keys, "TargetPortalGroupTag"), None);
        assert_eq!(get(&keys, "TargetAlias"), None);
        assert_eq!(p.session_type, SessionType::Discovery);
        assert_eq!(p.target_name, "");
        assert!(target.is_none());
        // Irrelevant keys keep the RFC defaults.
        assert!(p.initial_r2t);
        assert_eq!(p.max_burst_length, 262144);
    }

    #[test]
    fn open_iscsi_normal_login() {
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "InitiatorAlias=host1",
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=None",
        ]);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert!(h.transit);
        assert_eq!(
            (h.csg, h.nsg, h.tsih, h.stat_sn),
            (0, 1, 0, SerialNumber(1))
        );
        // open-iscsi accepts only these keys in a security-stage response (get_security_text_keys).
        assert_eq!(
            keys,
            vec![
                ("AuthMethod".to_string(), "None".to_string()),
                ("TargetAlias".to_string(), "disk one".to_string()),
                ("TargetPortalGroupTag".to_string(), "1".to_string()),
            ]
        );
        assert_eq!(l.stage(), Stage::Operational);
        assert_eq!(l.auth(), Auth::Done("None"));

        let (h, keys, p, _) = complete(l.handle(&req(1, true, 3), &open_iscsi_operational()));
        assert_eq!(
            (h.csg, h.nsg, h.tsih, h.stat_sn),
            (1, 3, 0x42, SerialNumber(2))
        );
        // Every key must be one open-iscsi's get_op_params_text_keys accepts, with the values it insists on.
        let accepted = [
            "TargetAlias",
            "TargetAddress",
            "TargetPortalGroupTag",
            "InitialR2T",
            "ImmediateData",
            "MaxRecvDataSegmentLength",
            "FirstBurstLength",
            "MaxBurstLength",
            "HeaderDigest",
            "DataDigest",
            "DefaultTime2Wait",
            "DefaultTime2Retain",
            "OFMarker",
            "OFMarkInt",
            "IFMarker",
            "IFMarkInt",
            "DataPDUInOrder",
            "DataSequenceInOrder",
            "MaxOutstandingR2T",
            "MaxConnections",
            "ErrorRecoveryLevel",
        ];
        for (k, _) in &keys {
            assert!(
                accepted.contains(&k.as_str()),
                "open-iscsi would fail on {k}"
            );
        }
        assert_eq!(get(&keys, "MaxOutstandingR2T"), Some("1"));
        assert_eq!(get(&keys, "MaxConnections"), Some("1"));
        assert_eq!(get(&keys, "ErrorRecoveryLevel"), Some("0"));
        assert_eq!(get(&keys, "MaxBurstLength"), Some("1048576"));
        assert_eq!(get(&keys, "FirstBurstLength"), Some("262144"));
        assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("1048576"));
        assert_eq!(get(&keys, "TargetPortalGroupTag"), None, "sent once");
        assert_eq!(p.initiator_alias.as_deref(), Some("host1"));
        assert_eq!(
            (p.max_burst_length, p.first_burst_length),
            (1 << 20, 262144)
        );
        assert_eq!(p.default_time2retain, 0);
    }

    #[test]
    fn open_iscsi_discovery_login() {
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "InitiatorAlias=host1",
            "SessionType=Discovery",
            "AuthMethod=None",
        ]);
        // With a discovery MaxRecvDataSegmentLength other than 8192 open-iscsi goes through the operational stage.
        let mut l = login();
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert_eq!((h.csg, h.nsg, h.transit), (0, 1, true));
        assert_eq!(keys, vec![("AuthMethod".to_string(), "None".to_string())]);
        let op = text(&[
            "HeaderDigest=None",
            "DataDigest=None",
            "DefaultTime2Wait=2",
            "DefaultTime2Retain=0",
            "IFMarker=No",
            "OFMarker=No",
            "ErrorRecoveryLevel=0",
            "MaxRecvDataSegmentLength=32768",
        ]);
        let (h, keys, p, target) = complete(l.handle(&req(1, true, 3), &op));
        assert_eq!((h.csg, h.nsg), (1, 3));
        assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("32768"));
        assert_eq!(p.session_type, SessionType::Discovery);
        assert_eq!(p.max_xmit_data_segment_length, 32768);
        assert!(target.is_none());

        // Otherwise it asks to go from security straight to full feature phase, and the target agrees.
        let mut l = login();
        let (h, keys, p, _) = complete(l.handle(&req(0, true, 3), &sec));
        assert_eq!((h.csg, h.nsg, h.tsih), (0, 3, 0x42));
        assert_eq!(keys, vec![("AuthMethod".to_string(), "None".to_string())]);
        assert_eq!(p.max_recv_data_segment_length, 8192, "nothing declared");
        assert_eq!(p.max_xmit_data_segment_length, 8192);
    }

    #[test]
    fn security_straight_to_full_feature_goes_through_operational_when_needed() {
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=None",
        ]);
        let (h, _) = respond(l.handle(&req(0, true, 3), &sec));
        assert!(h.transit);
        assert_eq!(
            (h.csg, h.nsg),
            (0, 1),
            "the target declares MaxRecvDataSegmentLength first"
        );
        let (_, keys, p, _) = complete(l.handle(&req(1, true, 3), &open_iscsi_operational()));
        assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("1048576"));
        assert_eq!(p.max_recv_data_segment_length, 1 << 20);

        // A target whose settings are all RFC defaults lets the login go straight on.
        let mut t = TargetParams::default();
        t.initial_r2t = true;
        t.max_recv_data_segment_length = 8192;
        t.max_burst_length = 262144;
        t.first_burst_length = 65536;
        t.max_outstanding_r2t = 1;
        t.default_time2retain = 20;
        let mut l = login_with(catalog_with(t));
        let (h, _, _, _) = complete(l.handle(&req(0, true, 3), &sec));
        assert_eq!((h.csg, h.nsg), (0, 3));
    }

    #[test]
    fn security_stage_without_transit_stays() {
        let mut l = login();
        let first = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
        ]);
        let (h, keys) = respond(l.handle(&req(0, false, 0), &first));
        assert!(!h.transit);
        assert_eq!(h.csg, 0);
        assert_eq!(get(&keys, "TargetPortalGroupTag"), Some("1"));
        let (h, keys) = respond(l.handle(&req(0, true, 1), &text(&["AuthMethod=CHAP,None"])));
        assert_eq!((h.transit, h.nsg, h.stat_sn), (true, 1, SerialNumber(2)));
        assert_eq!(keys, vec![("AuthMethod".to_string(), "None".to_string())]);
        assert_eq!(get(&keys, "TargetPortalGroupTag"), None);
    }

    #[test]
    fn target_offers_keys_the_initiator_left_out() {
        let minimal = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
        ]);
        let mut l = login();
        let (h, keys) = respond(l.handle(&req(1, true, 3), &minimal));
        assert!(!h.transit, "the target waits for answers to its offers");
        assert_eq!(h.tsih, 0);
        assert_eq!(get(&keys, "InitialR2T"), Some("No"));
        assert_eq!(get(&keys, "MaxBurstLength"), Some("1048576"));
        assert_eq!(get(&keys, "FirstBurstLength"), Some("1048576"));
        assert_eq!(get(&keys, "DefaultTime2Retain"), Some("0"));
        assert_eq!(get(&keys, "MaxOutstandingR2T"), Some("32"));
        assert_eq!(get(&keys, "ImmediateData"), None, "Yes is the default");
        assert_eq!(get(&keys, "HeaderDigest"), None, "None is acceptable");
        assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("1048576"));

        // The initiator answers and asks again to transit.
        let answers = text(&[
            "InitialR2T=Yes",
            "MaxBurstLength=262144",
            "FirstBurstLength=65536",
            "DefaultTime2Retain=0",
            "MaxOutstandingR2T=4",
        ]);
        let (h, keys, p, _) = complete(l.handle(&req(1, true, 3), &answers));
        assert!(keys.is_empty(), "answers are not answered: {keys:?}");
        assert_eq!(h.stat_sn, SerialNumber(2));
        assert!(p.initial_r2t);
        assert_eq!(
            (
                p.max_burst_length,
                p.first_burst_length,
                p.max_outstanding_r2t
            ),
            (262144, 65536, 4)
        );

        // An initiator that ignores the offers (as open-iscsi does) gets them as offered.
        let mut l = login();
        respond(l.handle(&req(1, true, 3), &minimal));
        let (_, _, p, _) = complete(l.handle(&req(1, true, 3), &[]));
        assert!(!p.initial_r2t);
        assert_eq!(
            (
                p.max_burst_length,
                p.first_burst_length,
                p.max_outstanding_r2t
            ),
            (1 << 20, 1 << 20, 32)
        );

        // An answer outside the offer's rule fails the login.
        let mut l = login();
        respond(l.handle(&req(1, true, 3), &minimal));
        let step = l.handle(&req(1, true, 3), &text(&["MaxBurstLength=2097152"]));
        assert_eq!(fail_code(&step), 0x0200);
        assert!(matches!(
            l.failure(),
            Some(LoginError::Negotiation(
                NegotiationError::InvalidAnswer { .. }
            ))
        ));
    }

    #[test]
    fn required_digest_refused_fails() {
        let mut t = TargetParams::default();
        t.header_digest = vec![Digest::Crc32c];
        let mut l = login_with(catalog_with(t.clone()));
        let step = l.handle(&req(1, true, 3), &libiscsi_normal()); // offers None,CRC32C: CRC32C is chosen
        let (_, keys, p, _) = complete(step);
        assert_eq!(get(&keys, "HeaderDigest"), Some("CRC32C"));
        assert_eq!(p.header_digest, Digest::Crc32c);

        let mut l = login_with(catalog_with(t));
        let step = l.handle(
            &req(1, true, 3),
            &open_iscsi_first_and_op_with("HeaderDigest=None"),
        );
        assert_eq!(fail_code(&step), 0x0200);
        assert!(matches!(
            l.failure(),
            Some(LoginError::Negotiation(
                NegotiationError::DigestNotAcceptable {
                    key: "HeaderDigest",
                    ..
                }
            ))
        ));
    }

    fn open_iscsi_first_and_op_with(extra: &str) -> Vec<u8> {
        let mut v = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            extra,
        ]);
        let op = open_iscsi_operational();
        // Drop the operational copy of the key given in `extra`.
        let key = extra.split('=').next().unwrap_or_default();
        for pair in op.split(|&b| b == 0).filter(|p| !p.is_empty()) {
            if !pair.starts_with(key.as_bytes()) {
                v.extend_from_slice(pair);
                v.push(0);
            }
        }
        v
    }

    #[test]
    fn request_text_over_several_pdus() {
        let mut l = login();
        let all = libiscsi_normal();
        let (a, rest) = all.split_at(30); // cuts InitiatorName in the middle
        let (b, c) = rest.split_at(100);
        let (h, keys) = respond(l.handle(&cont(1), a));
        assert!(keys.is_empty());
        assert!(!h.transit && !h.continue_);
        assert_eq!((h.csg, h.stat_sn, h.tsih), (1, SerialNumber(1), 0));
        let (h, keys) = respond(l.handle(&cont(1), b));
        assert!(keys.is_empty());
        assert_eq!(h.stat_sn, SerialNumber(2));
        let (h, keys, p, _) = complete(l.handle(&req(1, true, 3), c));
        assert_eq!(h.stat_sn, SerialNumber(3));
        assert_eq!(get(&keys, "MaxBurstLength"), Some("262144"));
        assert_eq!(p.initiator_name, LIBISCSI);
    }

    #[test]
    fn request_text_is_bounded() {
        let mut l = login();
        let chunk = vec![b'a'; 4096];
        for _ in 0..16 {
            respond(l.handle(&cont(1), &chunk));
        }
        let step = l.handle(&cont(1), &chunk);
        assert_eq!(fail_code(&step), 0x0200);
        assert!(matches!(
            l.failure(),
            Some(LoginError::Text(TextError::TooLong { .. }))
        ));
    }

    #[test]
    fn response_text_over_several_pdus() {
        let mut l = login();
        let mut data = libiscsi_normal();
        for i in 0..300 {
            data.extend_from_slice(format!("X-com.example.key{i:04}=v\0").as_bytes());
        }
        let mut joined = Vec::new();
        let step = l.handle(&req(1, true, 3), &data);
        let LoginStep::Respond {
            header,
            data: chunk,
        } = step
        else {
            panic!("expected a continued response")
        };
        assert!(header.continue_ && !header.transit);
        assert_eq!(header.tsih, 0);
        assert!(chunk.len() <= text::LOGIN_DATA_SEGMENT_LEN);
        joined.extend_from_slice(&chunk);
        let mut sn = header.stat_sn;
        // The initiator fetches the rest with empty requests.
        let done = loop {
            match l.handle(&req(1, false, 0), &[]) {
                LoginStep::Respond { header, data } => {
                    assert!(header.continue_ && !header.transit);
                    assert!(data.len() <= text::LOGIN_DATA_SEGMENT_LEN);
                    assert_eq!(header.stat_sn, sn.next());
                    sn = header.stat_sn;
                    joined.extend_from_slice(&data);
                }
                LoginStep::Complete { header, data, .. } => {
                    assert!(header.transit && !header.continue_);
                    assert_eq!(header.tsih, 0x42);
                    assert_eq!(header.stat_sn, sn.next());
                    joined.extend_from_slice(&data);
                    break true;
                }
                LoginStep::Fail { .. } => break false,
            }
        };
        assert!(done);
        let keys = kv(&joined);
        assert_eq!(
            keys.iter().filter(|(_, v)| v == "NotUnderstood").count(),
            300
        );
        assert_eq!(get(&keys, "X-com.example.key0299"), Some("NotUnderstood"));

        // A fetch request must be empty.
        let mut l = login();
        assert!(matches!(
            l.handle(&req(1, true, 3), &data),
            LoginStep::Respond { .. }
        ));
        let step = l.handle(&req(1, false, 0), b"A=1\0");
        assert_eq!(fail_code(&step), 0x0200);
        assert_eq!(l.failure(), Some(&LoginError::BadContinuationRequest));
    }

    #[test]
    fn version_errors() {
        for (min, max) in [(1, 1), (1, 0), (2, 5)] {
            let mut l = login();
            let r = LoginRequest {
                version_min: min,
                version_max: max,
                ..req(1, true, 3)
            };
            let step = l.handle(&r, &libiscsi_normal());
            assert_eq!(fail_code(&step), 0x0205, "{min}..{max}");
            let LoginStep::Fail { header, .. } = step else {
                unreachable!()
            };
            assert_eq!((header.version_max, header.version_active), (0, 0));
            assert_eq!(header.exp_cmd_sn, SerialNumber(100));
        }
        // A range that includes 0 is fine.
        let mut l = login();
        let r = LoginRequest {
            version_min: 0,
            version_max: 3,
            ..req(1, true, 3)
        };
        complete(l.handle(&r, &libiscsi_normal()));
    }

    #[test]
    fn stage_errors() {
        let cases: &[(LoginRequest, &str)] = &[
            (req(2, false, 0), "CSG 2 is reserved"),
            (req(3, false, 0), "CSG 3 is not a login stage"),
            (req(1, true, 2), "NSG 2 is reserved"),
            (req(1, true, 1), "NSG must be after CSG"),
            (req(0, true, 0), "NSG must be after CSG"),
            (
                LoginRequest {
                    continue_: true,
                    ..req(0, true, 1)
                },
                "C with T",
            ),
        ];
        for (r, why) in cases {
            let mut l = login();
            assert_eq!(fail_code(&l.handle(r, &libiscsi_normal())), 0x0200, "{why}");
        }
        // Going back to the security stage, or staying in it after the target moved on.
        let mut l = login();
        respond(l.handle(
            &req(0, true, 1),
            &text(&[
                &format!("InitiatorName={OPEN_ISCSI}"),
                &format!("TargetName={TARGET}"),
            ]),
        ));
        assert_eq!(fail_code(&l.handle(&req(0, false, 0), &[])), 0x0200);
        // Starting in the operational stage and then sending a security-stage request.
        let mut l = login();
        let first = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
        ]);
        respond(l.handle(&req(1, false, 0), &first));
        assert_eq!(fail_code(&l.handle(&req(0, false, 0), &[])), 0x0200);
        assert!(matches!(
            l.failure(),
            Some(LoginError::InvalidStage { csg: 0, .. })
        ));
    }

    #[test]
    fn fields_stay_constant() {
        let first = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
        ]);
        let changes: &[(LoginRequest, &str)] = &[
            (
                LoginRequest {
                    isid: [9; 6],
                    ..req(1, false, 0)
                },
                "ISID",
            ),
            (
                LoginRequest {
                    itt: 7,
                    ..req(1, false, 0)
                },
                "ITT",
            ),
            (
                LoginRequest {
                    cid: 3,
                    ..req(1, false, 0)
                },
                "CID",
            ),
            (
                LoginRequest {
                    tsih: 5,
                    ..req(1, false, 0)
                },
                "TSIH",
            ),
        ];
        for (r, field) in changes {
            let mut l = login();
            respond(l.handle(&req(1, false, 0), &first));
            assert_eq!(fail_code(&l.handle(r, &[])), 0x0200);
            assert_eq!(l.failure(), Some(&LoginError::FieldChanged(field)));
        }
    }

    #[test]
    fn renegotiation_errors() {
        let first = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "MaxBurstLength=65536",
        ]);
        for again in [
            "MaxBurstLength=65536",
            "InitiatorName=iqn.x",
            "X-com.example.a=1",
        ] {
            let mut l = login();
            let mut d = first.clone();
            if again.starts_with("X-") {
                d.extend_from_slice(b"X-com.example.a=1\0");
            }
            respond(l.handle(&req(1, false, 0), &d));
            let step = l.handle(&req(1, true, 3), &text(&[again]));
            assert_eq!(fail_code(&step), 0x0200, "{again}");
            assert!(matches!(
                l.failure(),
                Some(LoginError::Negotiation(NegotiationError::Renegotiation(_)))
            ));
        }
        // SessionType after the first request.
        let mut l = login();
        respond(l.handle(&req(1, false, 0), &first));
        assert_eq!(
            fail_code(&l.handle(&req(1, true, 3), &text(&["SessionType=Normal"]))),
            0x0200
        );
        assert!(matches!(
            l.failure(),
            Some(LoginError::Negotiation(NegotiationError::LateDeclaration(
                _
            )))
        ));
        // AuthMethod twice in the security stage.
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=None",
        ]);
        respond(l.handle(&req(0, false, 0), &sec));
        assert_eq!(
            fail_code(&l.handle(&req(0, true, 1), &text(&["AuthMethod=None"]))),
            0x0200
        );
    }

    #[test]
    fn protocol_errors_in_text() {
        let base = [
            format!("InitiatorName={OPEN_ISCSI}"),
            format!("TargetName={TARGET}"),
        ];
        let cases: &[(&[u8], u8, &str)] = &[
            (b"InitiatorName=iqn.x\0NoEquals\0", 1, "malformed pair"),
            (
                b"InitiatorName=iqn.x\0InitiatorName=iqn.y\0",
                1,
                "duplicate",
            ),
            (b"InitiatorName=iqn.x", 1, "unterminated"),
        ];
        for (data, csg, why) in cases {
            let mut l = login();
            assert_eq!(
                fail_code(&l.handle(&req(*csg, false, 0), data)),
                0x0200,
                "{why}"
            );
        }
        let with = |extra: &str| text(&[&base[0], &base[1], extra]);
        for (extra, csg, why) in [
            ("TargetAlias=me", 1, "target-only key"),
            ("TargetPortalGroupTag=1", 0, "target-only key"),
            (
                "AuthMethod=None",
                1,
                "security key in the operational stage",
            ),
            ("CHAP_A=5", 0, "CHAP key without CHAP"),
        ] {
            let mut l = login();
            assert_eq!(
                fail_code(&l.handle(&req(csg, false, 0), &with(extra))),
                0x0200,
                "{why}"
            );
        }
    }

    #[test]
    fn missing_parameters_and_session_types() {
        let mut l = login();
        let step = l.handle(&req(1, true, 3), &text(&[&format!("TargetName={TARGET}")]));
        assert_eq!(fail_code(&step), 0x0207);
        assert_eq!(l.failure(), Some(&LoginError::MissingKey("InitiatorName")));

        let mut l = login();
        let step = l.handle(&req(1, true, 3), &text(&["InitiatorName="]));
        assert_eq!(fail_code(&step), 0x0207);

        let mut l = login();
        let step = l.handle(
            &req(1, true, 3),
            &text(&[&format!("InitiatorName={OPEN_ISCSI}"), "SessionType=Normal"]),
        );
        assert_eq!(fail_code(&step), 0x0207);
        assert_eq!(l.failure(), Some(&LoginError::MissingKey("TargetName")));

        let mut l = login();
        let step = l.handle(
            &req(1, true, 3),
            &text(&[&format!("InitiatorName={OPEN_ISCSI}"), "SessionType=Boot"]),
        );
        assert_eq!(fail_code(&step), 0x0209);
    }

    #[test]
    fn authentication_failure() {
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=CHAP",
        ]);
        let step = l.handle(&req(0, true, 1), &sec);
        assert_eq!(fail_code(&step), 0x0201);
        assert_eq!(l.failure(), Some(&LoginError::NoAuthMethod("CHAP".into())));
        let mut l = login();
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=SRP,KRB5",
        ]);
        assert_eq!(fail_code(&l.handle(&req(0, true, 1), &sec)), 0x0201);
    }

    #[test]
    fn catalog_refusals() {
        let cases: &[(Refusal, u16)] = &[
            (Refusal::NotAuthorized, 0x0202),
            (Refusal::NotFound, 0x0203),
            (Refusal::Removed, 0x0204),
            (Refusal::TooManyConnections, 0x0206),
            (Refusal::ServiceUnavailable, 0x0301),
            (Refusal::OutOfResources, 0x0302),
            (
                Refusal::Redirect {
                    address: "10.0.0.2:3260,1".into(),
                    permanent: false,
                },
                0x0101,
            ),
            (
                Refusal::Redirect {
                    address: "10.0.0.2:3260,1".into(),
                    permanent: true,
                },
                0x0102,
            ),
        ];
        for (refusal, code) in cases {
            let mut c = catalog_with(TargetParams::default());
            c.refusal = Some(refusal.clone());
            let mut l = login_with(c);
            let step = l.handle(&req(1, true, 3), &libiscsi_normal());
            assert_eq!(fail_code(&step), *code, "{refusal:?}");
            let LoginStep::Fail { header, data } = step else {
                unreachable!()
            };
            assert!(!header.transit);
            assert_eq!(header.tsih, 0);
            assert_eq!(header.itt, 0x1234);
            if let Refusal::Redirect { .. } = refusal {
                assert_eq!(data, b"TargetAddress=10.0.0.2:3260,1\0");
            } else {
                assert!(data.is_empty());
            }
        }
        // Unknown target with the real lookup, and through the trait's default `resolve`.
        let mut l = login();
        let d = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "TargetName=iqn.2024-01.org.polltgt:nope",
        ]);
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &d)), 0x0203);
        let mut l = Login::new(Arc::new(LookupOnly), portal());
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &d)), 0x0203);
        // Discovery refused, and allowed by the default.
        let mut c = catalog_with(TargetParams::default());
        c.discovery_refusal = Some(Refusal::NotAuthorized);
        let mut l = login_with(c);
        let d = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "SessionType=Discovery",
        ]);
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &d)), 0x0202);
        let mut l = Login::new(Arc::new(LookupOnly), portal());
        complete(l.handle(&req(1, true, 3), &d));
    }

    #[test]
    fn session_does_not_exist() {
        let mut l = login();
        let r = LoginRequest {
            tsih: 7,
            ..req(1, true, 3)
        };
        let step = l.handle(&r, &libiscsi_normal());
        assert_eq!(fail_code(&step), 0x020a);
        let LoginStep::Fail { header, .. } = step else {
            unreachable!()
        };
        assert_eq!(header.tsih, 7, "a failure echoes the initiator's TSIH");
    }

    #[test]
    fn invalid_pdu_during_login() {
        let mut l = login();
        let first = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
        ]);
        respond(l.handle(&req(0, false, 0), &first));
        let step = l.invalid_during_login();
        assert_eq!(fail_code(&step), 0x020b);
        let LoginStep::Fail { header, .. } = step else {
            unreachable!()
        };
        assert_eq!((header.itt, header.stat_sn), (0x1234, SerialNumber(2)));
        assert!(l.is_finished());
        // Even before any login request.
        let mut l = login();
        assert_eq!(fail_code(&l.invalid_during_login()), 0x020b);
    }

    #[test]
    fn target_error_when_no_tsih() {
        let c = catalog_with(TargetParams::default());
        *c.next_tsih.lock().unwrap() = 0;
        let mut l = login_with(c);
        assert_eq!(
            fail_code(&l.handle(&req(1, true, 3), &libiscsi_normal())),
            0x0300
        );
        assert_eq!(l.failure(), Some(&LoginError::NoTsih));
    }

    #[test]
    fn status_codes() {
        let all = [
            (LoginStatus::Success, 0x0000),
            (LoginStatus::TargetMovedTemporarily, 0x0101),
            (LoginStatus::TargetMovedPermanently, 0x0102),
            (LoginStatus::InitiatorError, 0x0200),
            (LoginStatus::AuthenticationFailure, 0x0201),
            (LoginStatus::AuthorizationFailure, 0x0202),
            (LoginStatus::NotFound, 0x0203),
            (LoginStatus::TargetRemoved, 0x0204),
            (LoginStatus::UnsupportedVersion, 0x0205),
            (LoginStatus::TooManyConnections, 0x0206),
            (LoginStatus::MissingParameter, 0x0207),
            (LoginStatus::CantIncludeInSession, 0x0208),
            (LoginStatus::SessionTypeNotSupported, 0x0209),
            (LoginStatus::SessionDoesNotExist, 0x020a),
            (LoginStatus::InvalidDuringLogin, 0x020b),
            (LoginStatus::TargetError, 0x0300),
            (LoginStatus::ServiceUnavailable, 0x0301),
            (LoginStatus::OutOfResources, 0x0302),
        ];
        for (s, code) in all {
            assert_eq!(s.code(), code);
            assert_eq!(u16::from(s.class()) << 8 | u16::from(s.detail()), code);
        }
    }

    #[test]
    fn stat_sn_sequence_wraps() {
        let mut l = login().with_initial_stat_sn(SerialNumber(u32::MAX));
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=None",
        ]);
        let (h, _) = respond(l.handle(&req(0, true, 1), &sec));
        assert_eq!(h.stat_sn, SerialNumber(u32::MAX));
        let (h, _, _, _) = complete(l.handle(&req(1, true, 3), &open_iscsi_operational()));
        assert_eq!(h.stat_sn, SerialNumber(0));
    }

    #[test]
    fn never_panics_on_garbage() {
        // A small deterministic generator: random headers and data, many requests per login.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: &[&[u8]] = &[
            b"InitiatorName=iqn.x\0",
            b"TargetName=iqn.2024-01.org.polltgt:disk1\0",
            b"SessionType=Discovery\0",
            b"SessionType=Normal\0",
            b"AuthMethod=None\0",
            b"CHAP_A=5\0",
            b"MaxBurstLength=0x\0",
            b"HeaderDigest=CRC32C\0",
            b"=\0",
            b"\0\0",
            b"\xff\xfe",
            b"X-a=",
            b"AuthMethod=CHAP,None\0",
            b"CHAP_A=5,7\0",
            b"CHAP_N=joe\0",
            b"CHAP_R=0x5fa8139b80dbe5cca68e2bbc47752489\0",
            b"CHAP_I=300\0",
            b"CHAP_C=0x00112233445566778899aabbccddeeff\0",
            b"CHAP_C=0b\0",
        ];
        for round in 0..2000 {
            // Every other login runs against a target that requires CHAP.
            let mut l = if round % 2 == 0 {
                login()
            } else {
                login_with(chap_catalog(true))
            };
            for _ in 0..(next() % 6 + 1) {
                let r = next();
                let q = LoginRequest {
                    transit: r & 1 != 0,
                    continue_: r & 2 != 0 && r & 0x30 == 0,
                    csg: ((r >> 2) & 3) as u8,
                    nsg: ((r >> 4) & 3) as u8,
                    version_max: if r & 0x100 != 0 { 1 } else { 0 },
                    version_min: if r & 0x200 != 0 && r & 0x400 != 0 {
                        1
                    } else {
                        0
                    },
                    isid: [0; 6],
                    tsih: if r & 0x800 != 0 && r & 0x1000 != 0 {
                        1
                    } else {
                        0
                    },
                    itt: 1,
                    cid: 0,
                    cmd_sn: SerialNumber((r >> 32) as u32),
                    exp_stat_sn: SerialNumber(0),
                };
                let mut data = Vec::new();
                for _ in 0..(next() % 5) {
                    data.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
                let step = l.handle(&q, &data);
                let h = match &step {
                    LoginStep::Respond { header, .. }
                    | LoginStep::Complete { header, .. }
                    | LoginStep::Fail { header, .. } => header,
                };
                assert!(h.csg <= 3 && h.nsg <= 3);
                if matches!(step, LoginStep::Fail { .. }) {
                    assert!(l.is_finished());
                }
            }
        }
    }

    #[test]
    fn send_targets_answers() {
        let c = catalog_with(TargetParams::default());
        let p = portal();
        let all = send_targets_response(&c, OPEN_ISCSI, &p, None, "All");
        assert_eq!(
            all,
            b"TargetName=iqn.2024-01.org.polltgt:disk1\0TargetAddress=127.0.0.1:3260,1\0TargetAddress=[::1]:3260,1\0\
TargetName=iqn.2024-01.org.polltgt:disk2\0TargetAddress=127.0.0.1:3260,1\0"
        );
        let one = send_targets_response(&c, OPEN_ISCSI, &p, None, TARGET2);
        assert_eq!(
            one,
            b"TargetName=iqn.2024-01.org.polltgt:disk2\0TargetAddress=127.0.0.1:3260,1\0"
        );
        assert!(
            send_targets_response(&c, OPEN_ISCSI, &p, None, "iqn.2024-01.org.polltgt:none")
                .is_empty()
        );
        // A normal session: empty means its own target; All is not allowed; a discovery session needs a value.
        let own = send_targets_response(&c, OPEN_ISCSI, &p, Some(TARGET), "");
        assert!(own.starts_with(b"TargetName=iqn.2024-01.org.polltgt:disk1\0"));
        assert_eq!(
            send_targets_response(&c, OPEN_ISCSI, &p, Some(TARGET), "All"),
            b"SendTargets=Reject\0"
        );
        assert_eq!(
            send_targets_response(&c, OPEN_ISCSI, &p, None, ""),
            b"SendTargets=Reject\0"
        );
        // Values that cannot be sent are left out rather than corrupting the text.
        let mut bad = catalog_with(TargetParams::default());
        bad.targets[1].1 = vec!["bad\0address".into(), "10.0.0.1:3260,1".into()];
        bad.targets[0].0.name = "n".repeat(300);
        let out = send_targets_response(&bad, OPEN_ISCSI, &p, None, "All");
        assert_eq!(
            out,
            b"TargetName=iqn.2024-01.org.polltgt:disk2\0TargetAddress=10.0.0.1:3260,1\0"
        );
    }

    // -----------------------------------------------------------------------------------------------------------
    // CHAP (§12.1.3)

    const SECRET: &str = "12charsecret";
    const OUT_SECRET: &str = "12charsecret-out";
    /// The challenge the test catalog's random source yields after CHAP_I 0x40 (64).
    const CHALLENGE_HEX: &str =
        "0x4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60";

    fn chap_catalog(outgoing: bool) -> Catalog {
        let mut c = catalog_with(TargetParams::default());
        c.credentials = Credentials {
            incoming: vec![
                ChapUser::new("joe", SECRET),
                ChapUser::new("joe2", "12charsecret2"),
            ],
            outgoing: outgoing.then(|| ChapUser::new("jim1", OUT_SECRET)),
        };
        c
    }

    fn shared(c: Catalog) -> (Login, Arc<Catalog>) {
        let c = Arc::new(c);
        (Login::new(c.clone(), portal()), c)
    }

    /// The response an initiator computes, with the hash crates directly (not through `chap::Algorithm`).
    fn initiator_response(alg: u8, id: u8, secret: &str, challenge: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let mut data = vec![id];
        data.extend_from_slice(secret.as_bytes());
        data.extend_from_slice(challenge);
        match alg {
            5 => md5::Md5::digest(&data).to_vec(),
            6 => sha1::Sha1::digest(&data).to_vec(),
            7 => sha2::Sha256::digest(&data).to_vec(),
            8 => sha3::Sha3_256::digest(&data).to_vec(),
            _ => panic!("algorithm {alg}"),
        }
    }

    /// Hex as libiscsi writes it: `0x` and upper-case digits.
    fn upper_hex(bytes: &[u8]) -> String {
        let mut s = String::from("0x");
        for b in bytes {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    fn target_challenge(keys: &[(String, String)]) -> (u8, u8, Vec<u8>) {
        let alg = get(keys, "CHAP_A").unwrap().parse().unwrap();
        let id = get(keys, "CHAP_I").unwrap().parse().unwrap();
        let c = text::parse_binary(get(keys, "CHAP_C").unwrap()).unwrap();
        (alg, id, c)
    }

    fn failures(c: &Catalog) -> Vec<(String, Option<String>)> {
        c.auth_failures.lock().unwrap().clone()
    }

    /// libiscsi with a CHAP user set (lib/login.c): AuthMethod=CHAP,None with T=1, CHAP_A=5 with T=0, then CHAP_N and
    /// CHAP_R (upper-case hex) with T=1; the operational stage repeats the names.
    #[test]
    fn libiscsi_one_way_chap() {
        let (mut l, c) = shared(chap_catalog(false));
        let sec = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=CHAP,None",
        ]);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert!(!h.transit, "libiscsi moves on only when the target sets T");
        assert_eq!((h.csg, h.nsg, h.stat_sn), (0, 0, SerialNumber(1)));
        assert_eq!(
            keys,
            vec![
                ("AuthMethod".to_string(), "CHAP".to_string()),
                ("TargetAlias".to_string(), "disk one".to_string()),
                ("TargetPortalGroupTag".to_string(), "1".to_string()),
            ]
        );
        assert_eq!(l.auth(), Auth::InProgress("CHAP"));

        let (h, keys) = respond(l.handle(&req(0, false, 1), &text(&["CHAP_A=5"])));
        assert!(!h.transit);
        assert_eq!(
            keys,
            vec![
                ("CHAP_A".to_string(), "5".to_string()),
                ("CHAP_I".to_string(), "64".to_string()),
                ("CHAP_C".to_string(), CHALLENGE_HEX.to_string()),
            ]
        );
        let (alg, id, challenge) = target_challenge(&keys);
        let r = upper_hex(&initiator_response(alg, id, SECRET, &challenge));
        let (h, keys) = respond(l.handle(
            &req(0, true, 1),
            &text(&["CHAP_N=joe", &format!("CHAP_R={r}")]),
        ));
        assert!(h.transit);
        assert_eq!((h.csg, h.nsg, h.stat_sn), (0, 1, SerialNumber(3)));
        assert!(keys.is_empty(), "{keys:?}");
        assert_eq!(l.auth(), Auth::Done("CHAP"));
        assert_eq!(l.authenticated_user(), Some("joe"));
        assert_eq!(l.stage(), Stage::Operational);

        let (h, _, p, target) = complete(l.handle(&req(1, true, 3), &libiscsi_normal()));
        assert_eq!(
            (h.csg, h.nsg, h.tsih, h.stat_sn),
            (1, 3, 0x42, SerialNumber(4))
        );
        assert_eq!(p.initiator_name, LIBISCSI);
        assert_eq!(target.unwrap().name, TARGET);
        assert!(failures(&c).is_empty());
    }

    /// libiscsi with a target user too: CHAP_I and CHAP_C (32 bytes) follow CHAP_N/CHAP_R, and libiscsi insists on
    /// CHAP_N and a 16-byte CHAP_R in hex in the response that sets T.
    #[test]
    fn libiscsi_mutual_chap() {
        let (mut l, _c) = shared(chap_catalog(true));
        let sec = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=CHAP,None",
        ]);
        respond(l.handle(&req(0, true, 1), &sec));
        let (_, keys) = respond(l.handle(&req(0, false, 1), &text(&["CHAP_A=5"])));
        let (alg, id, challenge) = target_challenge(&keys);
        let r = upper_hex(&initiator_response(alg, id, "12charsecret2", &challenge));
        let my_challenge: Vec<u8> = (0..32).map(|i| i * 7).collect();
        let (h, keys) = respond(l.handle(
            &req(0, true, 1),
            &text(&[
                "CHAP_N=joe2",
                &format!("CHAP_R={r}"),
                "CHAP_I=1",
                &format!("CHAP_C={}", upper_hex(&my_challenge)),
            ]),
        ));
        assert!(h.transit);
        assert_eq!(get(&keys, "CHAP_N"), Some("jim1"));
        let target_r = get(&keys, "CHAP_R").unwrap();
        assert_eq!(target_r.len(), 2 + 2 * 16);
        assert_eq!(
            text::parse_binary(target_r).unwrap(),
            initiator_response(5, 1, OUT_SECRET, &my_challenge)
        );
        assert_eq!(keys.len(), 2);
        assert_eq!(l.authenticated_user(), Some("joe2"));
        complete(l.handle(&req(1, true, 3), &libiscsi_normal()));
    }

    /// open-iscsi with chap_algs = SHA3-256,SHA256,SHA1,MD5: the target picks SHA3-256. One-way: AuthMethod=CHAP,None
    /// with T=1; mutual: AuthMethod=CHAP alone with T=0 (usr/auth.c).
    #[test]
    fn open_iscsi_chap_with_the_strongest_algorithm() {
        // Keys open-iscsi accepts in a security-stage response (get_security_text_keys and the auth keys).
        let accepted = [
            "AuthMethod",
            "CHAP_A",
            "CHAP_I",
            "CHAP_C",
            "CHAP_N",
            "CHAP_R",
            "TargetAlias",
            "TargetPortalGroupTag",
            "TargetAddress",
        ];
        for mutual in [false, true] {
            let (mut l, c) = shared(chap_catalog(mutual));
            let sec = text(&[
                &format!("InitiatorName={OPEN_ISCSI}"),
                "InitiatorAlias=host1",
                &format!("TargetName={TARGET}"),
                "SessionType=Normal",
                if mutual {
                    "AuthMethod=CHAP"
                } else {
                    "AuthMethod=CHAP,None"
                },
            ]);
            let (h, keys) = respond(l.handle(&req(0, !mutual, 1), &sec));
            assert!(!h.transit);
            assert_eq!(get(&keys, "AuthMethod"), Some("CHAP"));
            let (h, keys) = respond(l.handle(&req(0, false, 1), &text(&["CHAP_A=8,7,6,5"])));
            assert!(!h.transit);
            assert_eq!(get(&keys, "CHAP_A"), Some("8"));
            let (alg, id, challenge) = target_challenge(&keys);
            assert_eq!((alg, challenge.len()), (8, 32));
            let r = text::encode_hex(&initiator_response(alg, id, SECRET, &challenge));
            let mut answer = vec!["CHAP_N=joe".to_string(), format!("CHAP_R={r}")];
            let my_challenge = [0x5au8; 16];
            if mutual {
                answer.push("CHAP_I=200".into());
                answer.push(format!("CHAP_C={}", text::encode_hex(&my_challenge)));
            }
            let answer: Vec<&str> = answer.iter().map(String::as_str).collect();
            let (h, keys) = respond(l.handle(&req(0, true, 1), &text(&answer)));
            assert!(h.transit && h.nsg == 1);
            for (k, _) in &keys {
                assert!(
                    accepted.contains(&k.as_str()),
                    "open-iscsi would fail on {k}"
                );
            }
            if mutual {
                assert_eq!(get(&keys, "CHAP_N"), Some("jim1"));
                assert_eq!(
                    text::parse_binary(get(&keys, "CHAP_R").unwrap()).unwrap(),
                    initiator_response(8, 200, OUT_SECRET, &my_challenge)
                );
            } else {
                assert!(keys.is_empty());
            }
            let (_, _, p, _) = complete(l.handle(&req(1, true, 3), &open_iscsi_operational()));
            assert_eq!(p.initiator_alias.as_deref(), Some("host1"));
            assert!(failures(&c).is_empty());
        }
    }

    /// Every algorithm end to end, with CHAP_A sent in the same request as AuthMethod.
    #[test]
    fn every_algorithm_and_chap_a_with_auth_method() {
        for alg in [5u8, 6, 7, 8] {
            let (mut l, _c) = shared(chap_catalog(false));
            let sec = text(&[
                &format!("InitiatorName={OPEN_ISCSI}"),
                &format!("TargetName={TARGET}"),
                "AuthMethod=CHAP",
                &format!("CHAP_A={alg}"),
            ]);
            let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
            assert!(!h.transit);
            assert_eq!(get(&keys, "AuthMethod"), Some("CHAP"));
            let (got, id, challenge) = target_challenge(&keys);
            assert_eq!(got, alg);
            let r = initiator_response(alg, id, SECRET, &challenge);
            assert_eq!(r.len(), [16, 20, 32, 32][usize::from(alg - 5)]);
            let answer = text(&["CHAP_N=joe", &format!("CHAP_R={}", text::encode_hex(&r))]);
            let (h, _) = respond(l.handle(&req(0, true, 1), &answer));
            assert!(h.transit, "algorithm {alg}");
        }
    }

    /// The response step split over two PDUs with the C bit, with a 1024-byte initiator challenge.
    #[test]
    fn chap_response_in_continued_pdus() {
        let (mut l, _c) = shared(chap_catalog(true));
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=CHAP",
        ]);
        respond(l.handle(&req(0, false, 0), &sec));
        let (_, keys) = respond(l.handle(&req(0, false, 0), &text(&["CHAP_A=7"])));
        let (alg, id, challenge) = target_challenge(&keys);
        let r = text::encode_hex(&initiator_response(alg, id, SECRET, &challenge));
        let big: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
        let data = text(&[
            "CHAP_N=joe",
            &format!("CHAP_R={r}"),
            "CHAP_I=9",
            &format!("CHAP_C={}", text::encode_hex(&big)),
        ]);
        let (first, rest) = data.split_at(1000);
        let (h, keys) = respond(l.handle(&cont(0), first));
        assert!(keys.is_empty() && !h.transit);
        let (h, keys) = respond(l.handle(&req(0, true, 1), rest));
        assert!(h.transit);
        assert_eq!(
            text::parse_binary(get(&keys, "CHAP_R").unwrap()).unwrap(),
            initiator_response(7, 9, OUT_SECRET, &big)
        );
    }

    /// Runs AuthMethod and CHAP_A=5 on a fresh login, then sends `answer` (given the target's CHAP_R for our
    /// secret and the target's challenge in hex).
    fn chap_answer(
        catalog: Catalog,
        answer: impl Fn(&str, &str) -> Vec<String>,
    ) -> (Login, Arc<Catalog>, LoginStep) {
        let (mut l, c) = shared(catalog);
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=CHAP,None",
        ]);
        respond(l.handle(&req(0, true, 1), &sec));
        let (_, keys) = respond(l.handle(&req(0, false, 1), &text(&["CHAP_A=5"])));
        let (alg, id, challenge) = target_challenge(&keys);
        let good = text::encode_hex(&initiator_response(alg, id, SECRET, &challenge));
        let pairs = answer(&good, get(&keys, "CHAP_C").unwrap());
        let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let step = l.handle(&req(0, true, 1), &text(&pairs));
        (l, c, step)
    }

    #[test]
    fn chap_failures_answer_authentication_failure_and_are_counted() {
        let wrong = |_: &str, _: &str| -> Vec<String> {
            let r = initiator_response(5, 64, "not-the-secret", &[0x41]);
            vec![
                "CHAP_N=joe".into(),
                format!("CHAP_R={}", text::encode_hex(&r)),
            ]
        };
        type Answer = Box<dyn Fn(&str, &str) -> Vec<String>>;
        let cases: Vec<(&str, Answer, ChapError)> = vec![
            (
                "wrong secret",
                Box::new(wrong),
                ChapError::WrongResponse("joe".into()),
            ),
            (
                "another user's name",
                Box::new(|r: &str, _: &str| vec!["CHAP_N=joe2".into(), format!("CHAP_R={r}")]),
                ChapError::WrongResponse("joe2".into()),
            ),
            (
                "unknown user",
                Box::new(|r: &str, _: &str| vec!["CHAP_N=mallory".into(), format!("CHAP_R={r}")]),
                ChapError::UnknownUser("mallory".into()),
            ),
            (
                "missing CHAP_R",
                Box::new(|_: &str, _: &str| vec!["CHAP_N=joe".into()]),
                ChapError::MissingKey("CHAP_R"),
            ),
            (
                "missing CHAP_N",
                Box::new(|r: &str, _: &str| vec![format!("CHAP_R={r}")]),
                ChapError::MissingKey("CHAP_N"),
            ),
            (
                "malformed hex",
                Box::new(|_: &str, _: &str| {
                    vec![
                        "CHAP_N=joe".into(),
                        "CHAP_R=0x5fa8139b80dbe5cca68e2bbc4775248g".into(),
                    ]
                }),
                ChapError::BadBinary("CHAP_R"),
            ),
            (
                "short response",
                Box::new(|_: &str, _: &str| vec!["CHAP_N=joe".into(), "CHAP_R=0x0102".into()]),
                ChapError::ResponseLength {
                    algorithm: crate::chap::Algorithm::Md5,
                    expected: 16,
                    got: 2,
                },
            ),
            (
                "reflected challenge",
                Box::new(|r: &str, c: &str| {
                    vec![
                        "CHAP_N=joe".into(),
                        format!("CHAP_R={r}"),
                        "CHAP_I=64".into(),
                        format!("CHAP_C={c}"),
                    ]
                }),
                ChapError::ReflectedChallenge,
            ),
            (
                "mutual without an outgoing user",
                Box::new(|r: &str, _: &str| {
                    vec![
                        "CHAP_N=joe".into(),
                        format!("CHAP_R={r}"),
                        "CHAP_I=1".into(),
                        "CHAP_C=0x000102030405060708090a0b0c0d0e0f".into(),
                    ]
                }),
                ChapError::NoOutgoingUser,
            ),
            (
                "challenge too short",
                Box::new(|r: &str, _: &str| {
                    vec![
                        "CHAP_N=joe".into(),
                        format!("CHAP_R={r}"),
                        "CHAP_I=1".into(),
                        "CHAP_C=0x0001".into(),
                    ]
                }),
                ChapError::ChallengeLength(2),
            ),
        ];
        for (why, answer, want) in cases {
            let (l, c, step) = chap_answer(chap_catalog(false), answer);
            assert_eq!(fail_code(&step), 0x0201, "{why}");
            let LoginStep::Fail { data, header } = step else {
                unreachable!()
            };
            assert!(data.is_empty() && !header.transit, "{why}");
            assert_eq!(l.failure(), Some(&LoginError::Chap(want)), "{why}");
            assert!(l.failure().unwrap().is_authentication_failure());
            assert_eq!(
                failures(&c),
                vec![(OPEN_ISCSI.to_string(), Some(TARGET.to_string()))],
                "{why}"
            );
            assert_eq!(l.authenticated_user(), None);
        }

        // The same secret in both directions: the response equals the one the target's own secret gives.
        let mut c = chap_catalog(false);
        c.credentials.outgoing = Some(ChapUser::new("jim1", SECRET));
        let (l, _, step) = chap_answer(c, |r, _| vec!["CHAP_N=joe".into(), format!("CHAP_R={r}")]);
        assert_eq!(fail_code(&step), 0x0201);
        assert_eq!(
            l.failure(),
            Some(&LoginError::Chap(ChapError::SecretReused))
        );
    }

    #[test]
    fn authentication_cannot_be_skipped() {
        let names = [
            format!("InitiatorName={OPEN_ISCSI}"),
            format!("TargetName={TARGET}"),
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
            v.extend_from_slice(extra);
            text(&v)
        };

        // Straight to the operational stage (SCST answers 0201 too).
        let (mut l, c) = shared(chap_catalog(false));
        assert_eq!(
            fail_code(&l.handle(&req(1, true, 3), &libiscsi_normal())),
            0x0201
        );
        assert_eq!(l.failure(), Some(&LoginError::AuthenticationRequired));
        assert_eq!(
            failures(&c),
            vec![(LIBISCSI.to_string(), Some(TARGET.to_string()))]
        );

        // Only None offered.
        let (mut l, _) = shared(chap_catalog(false));
        let step = l.handle(&req(0, true, 1), &with(&["AuthMethod=None"]));
        assert_eq!(fail_code(&step), 0x0201);
        assert_eq!(l.failure(), Some(&LoginError::NoAuthMethod("None".into())));

        // Leaving the security stage without any AuthMethod.
        let (mut l, _) = shared(chap_catalog(false));
        assert_eq!(fail_code(&l.handle(&req(0, true, 1), &with(&[]))), 0x0201);
        assert_eq!(l.failure(), Some(&LoginError::AuthenticationRequired));
        // ... also toward full feature phase.
        let (mut l, _) = shared(chap_catalog(false));
        assert_eq!(fail_code(&l.handle(&req(0, true, 3), &with(&[]))), 0x0201);

        // Waiting in the security stage without AuthMethod is fine; AuthMethod may come later.
        let (mut l, _) = shared(chap_catalog(false));
        let (h, _) = respond(l.handle(&req(0, false, 0), &with(&[])));
        assert!(!h.transit);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &text(&["AuthMethod=CHAP,None"])));
        assert!(!h.transit);
        assert_eq!(keys, vec![("AuthMethod".to_string(), "CHAP".to_string())]);
        // Asking again to transit without CHAP_A.
        assert_eq!(fail_code(&l.handle(&req(0, true, 1), &[])), 0x0201);
        assert_eq!(l.failure(), Some(&LoginError::AuthenticationRequired));

        // After the challenge, without the response.
        let (mut l, _) = shared(chap_catalog(false));
        respond(l.handle(&req(0, true, 1), &with(&["AuthMethod=CHAP"])));
        let (h, _) = respond(l.handle(&req(0, true, 1), &text(&["CHAP_A=5"])));
        assert!(!h.transit, "T on CHAP_A is answered with T=0");
        assert_eq!(fail_code(&l.handle(&req(0, true, 3), &[])), 0x0201);

        // The response before the challenge.
        let (mut l, _) = shared(chap_catalog(false));
        respond(l.handle(&req(0, true, 1), &with(&["AuthMethod=CHAP"])));
        let step = l.handle(&req(0, true, 1), &text(&["CHAP_N=joe", "CHAP_R=0x00"]));
        assert_eq!(fail_code(&step), 0x0201);
        assert_eq!(
            l.failure(),
            Some(&LoginError::Chap(ChapError::OutOfOrder("CHAP_N")))
        );

        // No algorithm in common.
        let (mut l, _) = shared(chap_catalog(false));
        respond(l.handle(&req(0, true, 1), &with(&["AuthMethod=CHAP"])));
        let step = l.handle(&req(0, false, 1), &text(&["CHAP_A=128,129"]));
        assert_eq!(fail_code(&step), 0x0201);

        // CHAP keys of an exchange that was not selected are protocol errors, not authentication failures.
        let (mut l, c) = shared(catalog_with(TargetParams::default()));
        let step = l.handle(
            &req(0, false, 0),
            &with(&["AuthMethod=CHAP,None", "CHAP_A=5"]),
        );
        assert_eq!(fail_code(&step), 0x0200);
        assert!(failures(&c).is_empty());
    }

    #[test]
    fn targets_without_incoming_users_need_no_chap() {
        // TARGET2 has no accounts in the CHAP catalog: AuthMethod=None, and a login may start in stage 1.
        let (mut l, c) = shared(chap_catalog(true));
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET2}"),
            "AuthMethod=CHAP,None",
        ]);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert!(h.transit);
        assert_eq!(get(&keys, "AuthMethod"), Some("None"));
        let mut l = Login::new(c.clone(), portal());
        let d = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET2}"),
        ]);
        respond(l.handle(&req(1, true, 3), &d));
        // An outgoing user alone does not make CHAP required.
        let mut only_out = catalog_with(TargetParams::default());
        only_out.credentials.outgoing = Some(ChapUser::new("jim1", OUT_SECRET));
        let (mut l, _) = shared(only_out);
        let (h, keys) = respond(l.handle(&req(0, true, 1), &sec));
        assert!(h.transit);
        assert_eq!(get(&keys, "AuthMethod"), Some("None"));
    }

    #[test]
    fn discovery_with_and_without_chap() {
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "SessionType=Discovery",
            "AuthMethod=CHAP,None",
        ]);
        // Discovery accounts, and a normal target without any: discovery requires CHAP.
        let mut cat = catalog_with(TargetParams::default());
        cat.discovery = TargetParams {
            max_recv_data_segment_length: 8192,
            ..TargetParams::default()
        };
        cat.discovery_credentials = Credentials {
            incoming: vec![ChapUser::new("disc", "discovery-secret")],
            outgoing: None,
        };
        let (mut l, c) = shared(cat);
        let (h, keys) = respond(l.handle(&req(0, true, 3), &sec));
        assert!(!h.transit);
        assert_eq!(keys, vec![("AuthMethod".to_string(), "CHAP".to_string())]);
        let (_, keys) = respond(l.handle(&req(0, false, 3), &text(&["CHAP_A=5"])));
        let (alg, id, challenge) = target_challenge(&keys);
        let r = text::encode_hex(&initiator_response(alg, id, "discovery-secret", &challenge));
        // open-iscsi goes from security straight to full feature phase in discovery.
        let (h, _, p, target) = complete(l.handle(
            &req(0, true, 3),
            &text(&["CHAP_N=disc", &format!("CHAP_R={r}")]),
        ));
        assert_eq!((h.csg, h.nsg), (0, 3));
        assert_eq!(p.session_type, SessionType::Discovery);
        assert!(target.is_none());
        assert_eq!(l.authenticated_user(), Some("disc"));

        // The target's secret does not open discovery; the failure is counted with no target.
        let mut l = Login::new(c.clone(), portal());
        respond(l.handle(&req(0, true, 3), &sec));
        let (_, keys) = respond(l.handle(&req(0, false, 3), &text(&["CHAP_A=5"])));
        let (alg, id, challenge) = target_challenge(&keys);
        let r = text::encode_hex(&initiator_response(alg, id, SECRET, &challenge));
        let step = l.handle(
            &req(0, true, 3),
            &text(&["CHAP_N=disc", &format!("CHAP_R={r}")]),
        );
        assert_eq!(fail_code(&step), 0x0201);
        assert_eq!(failures(&c), vec![(OPEN_ISCSI.to_string(), None)]);
        // Discovery straight in the operational stage is refused too.
        let mut l = Login::new(c.clone(), portal());
        let d = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            "SessionType=Discovery",
        ]);
        assert_eq!(fail_code(&l.handle(&req(1, true, 3), &d)), 0x0201);

        // Normal sessions to the target without accounts still log in without CHAP.
        let mut l = Login::new(c.clone(), portal());
        let (h, keys) = respond(l.handle(
            &req(0, true, 1),
            &text(&[
                &format!("InitiatorName={OPEN_ISCSI}"),
                &format!("TargetName={TARGET}"),
                "AuthMethod=CHAP,None",
            ]),
        ));
        assert!(h.transit);
        assert_eq!(get(&keys, "AuthMethod"), Some("None"));
    }

    #[test]
    fn no_random_source_is_a_target_error() {
        let mut cat = chap_catalog(false);
        cat.random = None;
        let (mut l, c) = shared(cat);
        let sec = text(&[
            &format!("InitiatorName={OPEN_ISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=CHAP",
        ]);
        respond(l.handle(&req(0, false, 0), &sec));
        assert_eq!(
            fail_code(&l.handle(&req(0, false, 0), &text(&["CHAP_A=5"]))),
            0x0300
        );
        assert_eq!(l.failure(), Some(&LoginError::Chap(ChapError::NoRandom)));
        assert!(!l.failure().unwrap().is_authentication_failure());
        assert!(failures(&c).is_empty());
        // The trait's default has no source either.
        assert!(LookupOnly.random_source().is_none());
        assert_eq!(LookupOnly.credentials(Some(TARGET)), Credentials::none());
        LookupOnly.auth_failed(OPEN_ISCSI, None);
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let (l, _, step) = chap_answer(chap_catalog(true), |_, _| {
            let r = initiator_response(5, 64, OUT_SECRET, &[1]);
            vec![
                "CHAP_N=joe".into(),
                format!("CHAP_R={}", text::encode_hex(&r)),
            ]
        });
        assert_eq!(fail_code(&step), 0x0201);
        let shown = format!(
            "{l:?} {} {:?} {step:?}",
            l.failure().unwrap(),
            l.failure().unwrap()
        );
        for secret in [SECRET, OUT_SECRET, "12charsecret2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn admission_is_asked_before_security_and_can_refuse() {
        let mut c = catalog_with(TargetParams::default());
        c.admit = Some(Refusal::OutOfResources);
        let c = Arc::new(c);
        let mut l = Login::new(c.clone(), portal());
        let sec = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=None",
        ]);
        assert_eq!(fail_code(&l.handle(&req(0, true, 1), &sec)), 0x0302);
        let asked = c.admitted.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![(TARGET.to_string(), LIBISCSI.to_string(), [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01])]
        );
        // Discovery sessions are not subject to admission.
        let mut l = Login::new(c.clone(), portal());
        let disc = text(&[&format!("InitiatorName={LIBISCSI}"), "SessionType=Discovery"]);
        complete(l.handle(&req(1, true, 3), &disc));
        assert_eq!(c.admitted.lock().unwrap().len(), 1);
    }

    #[test]
    fn nonzero_tsih_of_a_live_session_is_too_many_connections() {
        let mut l = login();
        let mut r = req(1, true, 3);
        r.tsih = 0x99;
        assert_eq!(fail_code(&l.handle(&r, &libiscsi_normal())), 0x0206);
        let mut l = login();
        r.tsih = 0x98;
        assert_eq!(fail_code(&l.handle(&r, &libiscsi_normal())), 0x020a);
    }

    #[test]
    fn redirect_refusal_carries_the_target_address_before_security() {
        let mut c = catalog_with(TargetParams::default());
        c.refusal = Some(crate::access::Redirect::parse("[fe80::1]:3261 temp").unwrap().refusal());
        let mut l = login_with(c);
        let sec = text(&[
            &format!("InitiatorName={LIBISCSI}"),
            &format!("TargetName={TARGET}"),
            "AuthMethod=CHAP,None",
        ]);
        match l.handle(&req(0, true, 1), &sec) {
            LoginStep::Fail { header, data } => {
                assert_eq!((header.status_class, header.status_detail), (1, 1));
                assert_eq!(kv(&data), vec![("TargetAddress".to_string(), "[fe80::1]:3261".to_string())]);
            }
            other => panic!("{other:?}"),
        }
    }
}
