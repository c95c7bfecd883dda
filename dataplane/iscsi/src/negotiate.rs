//! Negotiation of login keys (RFC 7143 §6.2-§6.6, §12.1, §13; RFC 7144 §2.1): the table of every key, the target's
//! answer to each key the initiator offers, the keys the target offers or declares itself, and the resulting
//! [`SessionParams`].
//!
//! The rules, per key type (§6.2.1, §6.2.2):
//! * list (HeaderDigest, DataDigest, AuthMethod, TaskReporting): the answer is the first value of the initiator's
//!   list that the target supports, `Reject` if there is none;
//! * boolean AND (ImmediateData, IFMarker, OFMarker) and OR (InitialR2T, DataPDUInOrder, DataSequenceInOrder);
//! * numerical minimum (MaxConnections, MaxBurstLength, FirstBurstLength, DefaultTime2Retain, MaxOutstandingR2T,
//!   ErrorRecoveryLevel, iSCSIProtocolLevel) and maximum (DefaultTime2Wait);
//! * declarative keys (names, aliases, SessionType, MaxRecvDataSegmentLength) take no answer.
//!
//! Unknown keys (including unknown `X-` and `X#` extension keys, §13.22) are answered `NotUnderstood`; invalid or
//! out-of-range values `Reject`; keys that do not apply `Irrelevant` (§6.2.2: the session keys in a discovery session,
//! FirstBurstLength when InitialR2T=Yes and ImmediateData=No). Offering or declaring a key twice in one login is a
//! protocol error (§6.2: "the target MUST respond with Login reject (initiator error)"). Keys that were not
//! negotiated take their RFC defaults.
//!
//! Note on the boolean rules: RFC 7143 §13.18/§13.19 give DataPDUInOrder and DataSequenceInOrder the OR function
//! (either side may require in-order data); IFMarker and OFMarker are AND (RFC 3720 §A.3.1; obsoleted by RFC 7143,
//! which lets a responder answer them `No`).

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::params::{Digest, SessionParams, SessionType, TargetParams};
use crate::text::{self, Special, TextBuilder, TextError};

/// Who may send a key (§13 "Senders").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Initiator,
    Target,
    Both,
}

/// The login stage in which a key is negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Security negotiation stage only (AuthMethod and the authentication keys, §12).
    Security,
    /// Operational negotiation (also accepted when an initiator sends it in the security stage).
    Operational,
    /// Declarations accepted in any stage.
    Any,
}

/// The reach of a key (§13 "Scope", and "Use: LO").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// SW: the value holds for the whole session.
    SessionWide,
    /// CO: the value holds for the connection it was negotiated on.
    ConnectionOnly,
    /// LO: session-wide, negotiated only on the leading connection.
    LeadingOnly,
}

/// When a key may be used (§13 "Use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// IO / LO: login only.
    LoginOnly,
    /// FFPO: full feature phase only (SendTargets).
    FullFeatureOnly,
    /// ALL: login and full feature phase.
    All,
}

/// What a declarative key carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decl {
    /// An iSCSI name (InitiatorName, TargetName).
    IscsiName,
    /// Free text (aliases, X#NodeArchitecture).
    Text,
    /// A number in a range (MaxRecvDataSegmentLength).
    Number { lo: u64, hi: u64 },
    /// Discovery or Normal.
    SessionType,
    /// A SendTargets request (full feature phase).
    SendTargets,
    /// domainname[:port][,portal-group-tag] (target only).
    TargetAddress,
    /// 16-bit binary value (target only).
    PortalGroupTag,
}

/// How a key's value is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Boolean, result is the AND of both values.
    And,
    /// Boolean, result is the OR of both values.
    Or,
    /// Number in `lo..=hi`, result is the smaller value.
    Min { lo: u64, hi: u64 },
    /// Number in `lo..=hi`, result is the larger value.
    Max { lo: u64, hi: u64 },
    /// List of values in preference order; these are the values the RFC defines.
    List(&'static [&'static str]),
    /// Declared by the sender, not answered.
    Declarative(Decl),
    /// Obsoleted by RFC 7143 (OFMarkInt, IFMarkInt): always answered `Reject`.
    Obsolete,
    /// A step of an authentication exchange (CHAP_*), handled by the security stage.
    Auth,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    pub name: &'static str,
    pub sender: Sender,
    pub phase: Phase,
    pub scope: Scope,
    pub usage: Usage,
    pub rule: Rule,
    /// The RFC default, where the key has one.
    pub default: Option<&'static str>,
    /// "Irrelevant when: SessionType=Discovery".
    pub irrelevant_in_discovery: bool,
}

/// Largest data segment length any key allows (2^24 - 1, §13.12-§13.14).
pub const MAX_SEGMENT: u64 = (1 << 24) - 1;
/// The iSCSIProtocolLevel this target implements: RFC 7143 is level 1 (RFC 7144 §2.1).
pub const PROTOCOL_LEVEL: u64 = 1;
/// The target supports one connection per session for now, whatever the configuration says.
pub const MAX_CONNECTIONS_SUPPORTED: u64 = 1;
/// Authentication methods the target can run (§12.1). Which one a login accepts depends on the target's credentials:
/// CHAP when it has incoming users, None otherwise (see `crate::login`).
pub const AUTH_METHODS: &[&str] = &["CHAP", "None"];
/// TaskReporting values the target supports (§13.23).
pub const TASK_REPORTING: &[&str] = &["RFC3720"];

const DIGESTS: &[&str] = &["CRC32C", "None"];

#[allow(clippy::too_many_arguments)]
const fn key(
    name: &'static str,
    sender: Sender,
    phase: Phase,
    scope: Scope,
    usage: Usage,
    rule: Rule,
    default: Option<&'static str>,
    irrelevant_in_discovery: bool,
) -> KeyDef {
    KeyDef {
        name,
        sender,
        phase,
        scope,
        usage,
        rule,
        default,
        irrelevant_in_discovery,
    }
}

use Phase::{Any, Operational, Security};
use Scope::{ConnectionOnly, LeadingOnly, SessionWide};
use Sender::{Both, Initiator, Target};
use Usage::{All, FullFeatureOnly, LoginOnly};

/// Every key of RFC 7143 §12.1 and §13 (plus iSCSIProtocolLevel of RFC 7144 and the obsoleted marker keys).
#[rustfmt::skip]
pub static KEYS: &[KeyDef] = &[
    // name, sender, phase, scope, use, rule, RFC default, irrelevant in discovery
    // §13.1
    key("HeaderDigest", Both, Operational, ConnectionOnly, LoginOnly, Rule::List(DIGESTS), Some("None"), false),
    key("DataDigest", Both, Operational, ConnectionOnly, LoginOnly, Rule::List(DIGESTS), Some("None"), false),
    // §13.2
    key("MaxConnections", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 1, hi: 65535 }, Some("1"), true),
    // §13.3
    key("SendTargets", Initiator, Any, SessionWide, FullFeatureOnly, Rule::Declarative(Decl::SendTargets), None, false),
    // §13.4-§13.9
    key("TargetName", Both, Any, SessionWide, All, Rule::Declarative(Decl::IscsiName), None, false),
    key("InitiatorName", Initiator, Any, SessionWide, LoginOnly, Rule::Declarative(Decl::IscsiName), None, false),
    key("TargetAlias", Target, Any, SessionWide, All, Rule::Declarative(Decl::Text), None, false),
    key("InitiatorAlias", Initiator, Any, SessionWide, All, Rule::Declarative(Decl::Text), None, false),
    key("TargetAddress", Target, Any, SessionWide, All, Rule::Declarative(Decl::TargetAddress), None, false),
    key("TargetPortalGroupTag", Target, Any, SessionWide, LoginOnly, Rule::Declarative(Decl::PortalGroupTag), None, false),
    // §13.10, §13.11
    key("InitialR2T", Both, Operational, LeadingOnly, LoginOnly, Rule::Or, Some("Yes"), true),
    key("ImmediateData", Both, Operational, LeadingOnly, LoginOnly, Rule::And, Some("Yes"), true),
    // §13.12-§13.14
    key("MaxRecvDataSegmentLength", Both, Operational, ConnectionOnly, All,
        Rule::Declarative(Decl::Number { lo: 512, hi: MAX_SEGMENT }), Some("8192"), false),
    key("MaxBurstLength", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 512, hi: MAX_SEGMENT },
        Some("262144"), true),
    key("FirstBurstLength", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 512, hi: MAX_SEGMENT },
        Some("65536"), true),
    // §13.15-§13.17
    key("DefaultTime2Wait", Both, Operational, LeadingOnly, LoginOnly, Rule::Max { lo: 0, hi: 3600 }, Some("2"), false),
    key("DefaultTime2Retain", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 0, hi: 3600 }, Some("20"), false),
    key("MaxOutstandingR2T", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 1, hi: 65535 }, Some("1"), true),
    // §13.18-§13.20
    key("DataPDUInOrder", Both, Operational, LeadingOnly, LoginOnly, Rule::Or, Some("Yes"), true),
    key("DataSequenceInOrder", Both, Operational, LeadingOnly, LoginOnly, Rule::Or, Some("Yes"), true),
    key("ErrorRecoveryLevel", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 0, hi: 2 }, Some("0"), false),
    // §13.21
    key("SessionType", Initiator, Any, LeadingOnly, LoginOnly, Rule::Declarative(Decl::SessionType), Some("Normal"), false),
    // §13.23
    key("TaskReporting", Both, Operational, LeadingOnly, LoginOnly, Rule::List(&["RFC3720", "ResponseFence", "FastAbort"]),
        Some("RFC3720"), true),
    // RFC 7144 §2.1
    key("iSCSIProtocolLevel", Both, Operational, LeadingOnly, LoginOnly, Rule::Min { lo: 0, hi: 31 }, Some("1"), false),
    // X#NodeArchitecture (RFC 4850, consolidated into RFC 7143 §13)
    key("X#NodeArchitecture", Both, Any, SessionWide, LoginOnly, Rule::Declarative(Decl::Text), None, false),
    // Marker keys (RFC 3720 §A.3), obsoleted by RFC 7143: markers are answered No, intervals Reject.
    key("OFMarker", Both, Operational, ConnectionOnly, LoginOnly, Rule::And, Some("No"), false),
    key("IFMarker", Both, Operational, ConnectionOnly, LoginOnly, Rule::And, Some("No"), false),
    key("OFMarkInt", Both, Operational, ConnectionOnly, LoginOnly, Rule::Obsolete, Some("2048"), false),
    key("IFMarkInt", Both, Operational, ConnectionOnly, LoginOnly, Rule::Obsolete, Some("2048"), false),
    // §12.1 authentication
    key("AuthMethod", Both, Security, ConnectionOnly, LoginOnly,
        Rule::List(&["KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None"]), Some("None"), false),
    // §12.1.3 CHAP
    key("CHAP_A", Both, Security, ConnectionOnly, LoginOnly, Rule::Auth, None, false),
    key("CHAP_I", Both, Security, ConnectionOnly, LoginOnly, Rule::Auth, None, false),
    key("CHAP_C", Both, Security, ConnectionOnly, LoginOnly, Rule::Auth, None, false),
    key("CHAP_N", Both, Security, ConnectionOnly, LoginOnly, Rule::Auth, None, false),
    key("CHAP_R", Both, Security, ConnectionOnly, LoginOnly, Rule::Auth, None, false),
];

/// The table row of a key (exact, case-sensitive match, §6.1).
pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// True for private (`X-`) and public (`X#`) extension keys (§13.22).
pub fn is_extension_key(name: &str) -> bool {
    name.starts_with("X-") || name.starts_with("X#")
}

/// The first value of the offered list that is in `supported` (§6.2.1). `Ok(None)`: no common value (answer
/// `Reject`); `Err`: the offer is not a well-formed list.
pub fn select_from_list<'a>(
    offer: &'a str,
    supported: &[&str],
) -> Result<Option<&'a str>, TextError> {
    Ok(text::parse_list(offer)?
        .into_iter()
        .find(|v| supported.contains(v)))
}

/// The login stages (§11.12.3 CSG/NSG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    /// Decodes a CSG/NSG field; 2 is reserved.
    pub fn from_u8(v: u8) -> Option<Stage> {
        match v {
            0 => Some(Stage::Security),
            1 => Some(Stage::Operational),
            3 => Some(Stage::FullFeature),
            _ => None,
        }
    }
}

/// Negotiation failures. Every one of them ends the login with "initiator error" (0x0200).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationError {
    #[error("key {0} offered or declared more than once in one login")]
    Renegotiation(String),
    #[error("key {0} may only be sent by the target")]
    WrongSender(String),
    #[error("key {0} is only allowed in the first login request")]
    LateDeclaration(String),
    #[error("security key {0} outside the security negotiation stage")]
    SecurityKeyOutsideSecurityStage(String),
    #[error("invalid answer {value:?} to the target's offer of {key}")]
    InvalidAnswer { key: String, value: String },
    #[error("invalid SessionType {0:?}")]
    InvalidSessionType(String),
    #[error("{key} would be {value}, which the target does not accept")]
    DigestNotAcceptable {
        key: &'static str,
        value: &'static str,
    },
    #[error("text: {0}")]
    Text(#[from] TextError),
}

/// A negotiated value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Bool(bool),
    Num(u64),
    Token(String),
}

/// The order in which the target offers keys the initiator left alone.
const OFFER_ORDER: &[&str] = &[
    "HeaderDigest",
    "DataDigest",
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "MaxConnections",
    "ErrorRecoveryLevel",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "IFMarker",
    "OFMarker",
    "TaskReporting",
    "iSCSIProtocolLevel",
];

/// The negotiation state of one login: what the initiator offered and declared, what the target answered,
/// offered and declared, and the values agreed so far.
#[derive(Debug, Clone)]
pub struct Negotiator {
    session_type: SessionType,
    target: TargetParams,
    /// Every key the initiator has sent in this login.
    seen: HashSet<String>,
    /// Target offers that await the initiator's answer, with the offered value.
    offered: HashMap<&'static str, String>,
    offers_made: bool,
    results: HashMap<&'static str, Val>,
    /// The MaxRecvDataSegmentLength the target declared, once it has.
    declared_mrdsl: Option<u32>,
    /// Values of the initiator's declarative keys, to recognise a harmless repetition.
    declared: HashMap<String, String>,
    initiator_name: Option<String>,
    initiator_alias: Option<String>,
    target_name: Option<String>,
}

impl Negotiator {
    /// A negotiation for a session of `session_type` with the target's settings (`TargetParams` of the target, or the
    /// catalog's discovery parameters).
    pub fn new(session_type: SessionType, target: TargetParams) -> Self {
        Negotiator {
            session_type,
            target,
            seen: HashSet::new(),
            offered: HashMap::new(),
            offers_made: false,
            results: HashMap::new(),
            declared_mrdsl: None,
            declared: HashMap::new(),
            initiator_name: None,
            initiator_alias: None,
            target_name: None,
        }
    }

    pub fn session_type(&self) -> SessionType {
        self.session_type
    }

    pub fn target_params(&self) -> &TargetParams {
        &self.target
    }

    /// Processes the key=value pairs of one login request (all its C-bit PDUs) and appends the target's answers to
    /// `out`. `stage` is the request's CSG; `first` is true for the first request of the login, the only one that
    /// may carry InitiatorName, TargetName and SessionType.
    ///
    /// Security-stage keys (AuthMethod, CHAP_*) are not answered here: they are returned, in order, for the
    /// authentication step of the login.
    pub fn process(
        &mut self,
        pairs: &[(String, String)],
        stage: Stage,
        first: bool,
        out: &mut TextBuilder,
    ) -> Result<Vec<(String, String)>, NegotiationError> {
        let mut security = Vec::new();
        let mut deferred = Vec::new();
        for (key, value) in pairs {
            if !self.seen.insert(key.clone()) {
                // libiscsi repeats InitiatorName, TargetName and SessionType in its first operational-stage
                // request after a security stage: a declaration repeated with the same value changes nothing and
                // is let through. Anything else sent twice is a renegotiation.
                if self.declared.get(key.as_str()) == Some(value) {
                    continue;
                }
                return Err(NegotiationError::Renegotiation(key.clone()));
            }
            let Some(def) = key_def(key) else {
                out.push_special(key, Special::NotUnderstood)?;
                continue;
            };
            if def.sender == Sender::Target {
                return Err(NegotiationError::WrongSender(key.clone()));
            }
            if !first && matches!(def.name, "InitiatorName" | "TargetName" | "SessionType") {
                return Err(NegotiationError::LateDeclaration(key.clone()));
            }
            if def.phase == Phase::Security {
                if stage != Stage::Security {
                    return Err(NegotiationError::SecurityKeyOutsideSecurityStage(
                        key.clone(),
                    ));
                }
                security.push((key.clone(), value.clone()));
                continue;
            }
            if let Some(offer) = self.offered.remove(def.name) {
                self.accept_answer(def, &offer, value)?;
                continue;
            }
            // FirstBurstLength depends on InitialR2T, ImmediateData and MaxBurstLength: answer it last.
            if def.name == "FirstBurstLength" {
                deferred.push((def, value));
                continue;
            }
            self.answer(def, value, out)?;
        }
        for (def, value) in deferred {
            self.answer(def, value, out)?;
        }
        Ok(security)
    }

    /// Appends the target's declarations that are due: MaxRecvDataSegmentLength, once per login (§13.12). Call it
    /// for responses of the operational stage.
    pub fn declare(&mut self, out: &mut TextBuilder) -> Result<(), NegotiationError> {
        if self.declared_mrdsl.is_none() {
            let v = clamp(
                u64::from(self.target.max_recv_data_segment_length),
                512,
                MAX_SEGMENT,
            );
            out.push_number("MaxRecvDataSegmentLength", v)?;
            self.declared_mrdsl = Some(v as u32);
        }
        Ok(())
    }

    /// True when the target would offer keys of its own ([`Self::make_offers`]) or still has to declare its
    /// MaxRecvDataSegmentLength: a reason to pass through the operational stage.
    pub fn wants_operational_stage(&self) -> bool {
        let mrdsl = clamp(
            u64::from(self.target.max_recv_data_segment_length),
            512,
            MAX_SEGMENT,
        );
        (self.declared_mrdsl.is_none() && mrdsl != 8192 && self.session_type == SessionType::Normal)
            || (!self.offers_made && !self.planned_offers().is_empty())
    }

    /// Offers, once per login, the keys the initiator has not touched whose RFC default differs from what the
    /// target wants (§6.2: either side may start a negotiation). In discovery sessions only the digests are offered.
    /// Returns how many keys were offered; the initiator must answer them before the login may leave the stage.
    pub fn make_offers(&mut self, out: &mut TextBuilder) -> Result<usize, NegotiationError> {
        if self.offers_made {
            return Ok(0);
        }
        self.offers_made = true;
        let planned = self.planned_offers();
        for (name, value) in &planned {
            out.push(name, value)?;
            self.offered.insert(name, value.clone());
        }
        Ok(planned.len())
    }

    /// True while target offers await an answer.
    pub fn offers_pending(&self) -> bool {
        !self.offered.is_empty()
    }

    /// Takes unanswered boolean and numerical offers as agreed at the offered value. open-iscsi adopts the values a
    /// target offers without answering them; a list offer left unanswered keeps the RFC default.
    pub fn adopt_unanswered_offers(&mut self) {
        for (name, value) in std::mem::take(&mut self.offered) {
            let Some(def) = key_def(name) else { continue };
            let val = match def.rule {
                Rule::And | Rule::Or => text::parse_bool(&value).ok().map(Val::Bool),
                Rule::Min { .. } | Rule::Max { .. } => {
                    text::parse_number(&value).ok().map(Val::Num)
                }
                _ => None,
            };
            if let Some(val) = val {
                self.results.insert(def.name, val);
            }
        }
    }

    /// The InitiatorName declared so far.
    pub fn initiator_name(&self) -> Option<&str> {
        self.initiator_name.as_deref()
    }

    /// The parameters in force after the login: negotiated values, RFC defaults for the rest. Fails when a digest
    /// ends up at a value the target does not accept (e.g. the target requires CRC32C and the initiator refused it).
    pub fn finish(&self, isid: [u8; 6], tsih: u16) -> Result<SessionParams, NegotiationError> {
        let header_digest = self.digest_result("HeaderDigest", &self.target.header_digest)?;
        let data_digest = self.digest_result("DataDigest", &self.target.data_digest)?;
        let max_burst_length = self.current_num("MaxBurstLength") as u32;
        // FirstBurstLength MUST NOT exceed MaxBurstLength (§13.14).
        let first_burst_length =
            (self.current_num("FirstBurstLength") as u32).min(max_burst_length);
        let initiator_mrdsl = self.current_num("MaxRecvDataSegmentLength");
        let xmit_cap = clamp(
            u64::from(self.target.max_xmit_data_segment_length),
            512,
            MAX_SEGMENT,
        );
        Ok(SessionParams {
            session_type: self.session_type,
            initiator_name: self.initiator_name.clone().unwrap_or_default(),
            initiator_alias: self.initiator_alias.clone(),
            target_name: match self.session_type {
                SessionType::Normal => self.target_name.clone().unwrap_or_default(),
                SessionType::Discovery => String::new(),
            },
            isid,
            tsih,
            header_digest,
            data_digest,
            initial_r2t: self.current_bool("InitialR2T"),
            immediate_data: self.current_bool("ImmediateData"),
            // Without a declaration the initiator sends at most the default 8192 bytes.
            max_recv_data_segment_length: self.declared_mrdsl.unwrap_or(8192),
            max_xmit_data_segment_length: initiator_mrdsl.min(xmit_cap) as u32,
            max_burst_length,
            first_burst_length,
            max_outstanding_r2t: self.current_num("MaxOutstandingR2T") as u32,
            data_pdu_in_order: self.current_bool("DataPDUInOrder"),
            data_sequence_in_order: self.current_bool("DataSequenceInOrder"),
            default_time2wait: self.current_num("DefaultTime2Wait") as u16,
            default_time2retain: self.current_num("DefaultTime2Retain") as u16,
            max_connections: self.current_num("MaxConnections") as u16,
            error_recovery_level: self.current_num("ErrorRecoveryLevel") as u8,
        })
    }

    fn answer(
        &mut self,
        def: &'static KeyDef,
        value: &str,
        out: &mut TextBuilder,
    ) -> Result<(), NegotiationError> {
        if def.usage == Usage::FullFeatureOnly
            || (def.irrelevant_in_discovery && self.session_type == SessionType::Discovery)
            || (def.name == "FirstBurstLength" && self.first_burst_irrelevant(false))
        {
            out.push_special(def.name, Special::Irrelevant)?;
            return Ok(());
        }
        match def.rule {
            Rule::Declarative(decl) => return self.declaration(def, decl, value, out),
            Rule::Obsolete | Rule::Auth => {
                out.push_special(def.name, Special::Reject)?;
                return Ok(());
            }
            _ => {}
        }
        match self.respond_value(def, value) {
            Some((answer, val)) => {
                out.push(def.name, &answer)?;
                self.results.insert(def.name, val);
            }
            None => out.push_special(def.name, Special::Reject)?,
        }
        Ok(())
    }

    /// The answer to an offer of a negotiated key and the resulting value; `None` answers `Reject`.
    fn respond_value(&self, def: &'static KeyDef, value: &str) -> Option<(String, Val)> {
        match def.rule {
            Rule::And | Rule::Or => {
                let offer = text::parse_bool(value).ok()?;
                let mine = self.target_bool(def.name);
                let r = if def.rule == Rule::And {
                    offer && mine
                } else {
                    offer || mine
                };
                Some((text::bool_str(r).to_string(), Val::Bool(r)))
            }
            Rule::Min { lo, hi } | Rule::Max { lo, hi } => {
                let offer = text::parse_number(value).ok()?;
                if offer < lo || offer > hi {
                    return None;
                }
                let mine = self.target_num(def);
                let mut r = if matches!(def.rule, Rule::Min { .. }) {
                    offer.min(mine)
                } else {
                    offer.max(mine)
                };
                if def.name == "FirstBurstLength" {
                    r = r.min(self.current_num("MaxBurstLength"));
                }
                Some((r.to_string(), Val::Num(r)))
            }
            Rule::List(_) => {
                let supported = self.target_list(def.name);
                let pick = select_from_list(value, &supported).ok()??;
                Some((pick.to_string(), Val::Token(pick.to_string())))
            }
            Rule::Declarative(_) | Rule::Obsolete | Rule::Auth => None,
        }
    }

    fn declaration(
        &mut self,
        def: &'static KeyDef,
        decl: Decl,
        value: &str,
        out: &mut TextBuilder,
    ) -> Result<(), NegotiationError> {
        self.declared
            .insert(def.name.to_string(), value.to_string());
        match (def.name, decl) {
            ("InitiatorName", _) => self.initiator_name = Some(value.to_string()),
            ("TargetName", _) => self.target_name = Some(value.to_string()),
            ("InitiatorAlias", _) => self.initiator_alias = Some(value.to_string()),
            ("SessionType", _) => {
                let t = parse_session_type(value)
                    .ok_or_else(|| NegotiationError::InvalidSessionType(value.into()))?;
                if t != self.session_type {
                    return Err(NegotiationError::InvalidSessionType(value.into()));
                }
            }
            (_, Decl::Number { lo, hi }) => match text::parse_number(value) {
                Ok(v) if (lo..=hi).contains(&v) => {
                    self.results.insert(def.name, Val::Num(v));
                }
                _ => out.push_special(def.name, Special::Reject)?,
            },
            _ => {}
        }
        Ok(())
    }

    fn accept_answer(
        &mut self,
        def: &'static KeyDef,
        offered: &str,
        answer: &str,
    ) -> Result<(), NegotiationError> {
        if Special::parse(answer).is_some() {
            // Reject, Irrelevant or NotUnderstood: the key keeps its default.
            return Ok(());
        }
        let invalid = || NegotiationError::InvalidAnswer {
            key: def.name.to_string(),
            value: answer.to_string(),
        };
        let val = match def.rule {
            Rule::And | Rule::Or => {
                let a = text::parse_bool(answer).map_err(|_| invalid())?;
                let o = text::parse_bool(offered).map_err(|_| invalid())?;
                // AND: an offered No can only be answered No; OR: an offered Yes only Yes.
                if (def.rule == Rule::And && !o && a) || (def.rule == Rule::Or && o && !a) {
                    return Err(invalid());
                }
                Val::Bool(a)
            }
            Rule::Min { lo, hi } | Rule::Max { lo, hi } => {
                let a = text::parse_number(answer).map_err(|_| invalid())?;
                let o = text::parse_number(offered).map_err(|_| invalid())?;
                let beyond = if matches!(def.rule, Rule::Min { .. }) {
                    a > o
                } else {
                    a < o
                };
                if a < lo || a > hi || beyond {
                    return Err(invalid());
                }
                Val::Num(a)
            }
            Rule::List(_) => {
                let offered = text::parse_list(offered).map_err(|_| invalid())?;
                if !offered.contains(&answer) {
                    return Err(invalid());
                }
                Val::Token(answer.to_string())
            }
            Rule::Declarative(_) | Rule::Obsolete | Rule::Auth => return Err(invalid()),
        };
        self.results.insert(def.name, val);
        Ok(())
    }

    /// The keys the target would offer now, with their values.
    fn planned_offers(&self) -> Vec<(&'static str, String)> {
        let mut offers = Vec::new();
        for &name in OFFER_ORDER {
            let Some(def) = key_def(name) else { continue };
            if self.seen.contains(name)
                || self.results.contains_key(name)
                || self.offered.contains_key(name)
            {
                continue;
            }
            let digest = matches!(name, "HeaderDigest" | "DataDigest");
            if self.session_type == SessionType::Discovery && !digest {
                continue;
            }
            let default = def.default.unwrap_or_default();
            let value = match def.rule {
                Rule::List(_) => {
                    let list = self.target_list(name);
                    if list.first().copied() == Some(default) {
                        continue;
                    }
                    list.join(",")
                }
                Rule::And | Rule::Or => {
                    let v = text::bool_str(self.target_bool(name));
                    if v == default {
                        continue;
                    }
                    v.to_string()
                }
                Rule::Min { .. } | Rule::Max { .. } => {
                    let mut v = self.target_num(def);
                    if name == "FirstBurstLength" {
                        if self.first_burst_irrelevant(true) {
                            continue;
                        }
                        let mbl = offers
                            .iter()
                            .find(|(n, _)| *n == "MaxBurstLength")
                            .and_then(|(_, v): &(&str, String)| text::parse_number(v).ok())
                            .unwrap_or_else(|| self.current_num("MaxBurstLength"));
                        v = v.min(mbl);
                    }
                    if v.to_string() == default {
                        continue;
                    }
                    v.to_string()
                }
                Rule::Declarative(_) | Rule::Obsolete | Rule::Auth => continue,
            };
            offers.push((name, value));
        }
        offers
    }

    /// FirstBurstLength is irrelevant when InitialR2T=Yes and ImmediateData=No (§13.14). With `planning`, the
    /// values the target is about to offer count as agreed.
    fn first_burst_irrelevant(&self, planning: bool) -> bool {
        let value = |name: &'static str| {
            if planning && !self.seen.contains(name) && !self.results.contains_key(name) {
                // Untouched: the target offers its own value where it differs from the default, so the value
                // expected either way is the target's.
                return self.target_bool(name);
            }
            self.current_bool(name)
        };
        value("InitialR2T") && !value("ImmediateData")
    }

    fn target_bool(&self, name: &str) -> bool {
        match name {
            "InitialR2T" => self.target.initial_r2t,
            "ImmediateData" => self.target.immediate_data,
            // The target keeps Data-Out PDUs and sequences in order.
            "DataPDUInOrder" | "DataSequenceInOrder" => true,
            // Markers are not supported.
            _ => false,
        }
    }

    fn target_num(&self, def: &KeyDef) -> u64 {
        let (lo, hi) = match def.rule {
            Rule::Min { lo, hi } | Rule::Max { lo, hi } => (lo, hi),
            _ => (0, u64::MAX),
        };
        let t = &self.target;
        let v = match def.name {
            "MaxConnections" => u64::from(t.max_connections).min(MAX_CONNECTIONS_SUPPORTED),
            "MaxBurstLength" => u64::from(t.max_burst_length),
            "FirstBurstLength" => u64::from(t.first_burst_length),
            "DefaultTime2Wait" => u64::from(t.default_time2wait),
            "DefaultTime2Retain" => u64::from(t.default_time2retain),
            "MaxOutstandingR2T" => u64::from(t.max_outstanding_r2t),
            "ErrorRecoveryLevel" => u64::from(t.error_recovery_level),
            "iSCSIProtocolLevel" => PROTOCOL_LEVEL,
            _ => def
                .default
                .and_then(|d| text::parse_number(d).ok())
                .unwrap_or(lo),
        };
        clamp(v, lo, hi)
    }

    fn target_list(&self, name: &str) -> Vec<&'static str> {
        match name {
            "HeaderDigest" => digest_names(&self.target.header_digest),
            "DataDigest" => digest_names(&self.target.data_digest),
            "TaskReporting" => TASK_REPORTING.to_vec(),
            "AuthMethod" => AUTH_METHODS.to_vec(),
            _ => Vec::new(),
        }
    }

    fn current_bool(&self, name: &'static str) -> bool {
        match self.results.get(name) {
            Some(Val::Bool(b)) => *b,
            _ => key_def(name).and_then(|d| d.default) == Some("Yes"),
        }
    }

    fn current_num(&self, name: &'static str) -> u64 {
        match self.results.get(name) {
            Some(Val::Num(n)) => *n,
            _ => key_def(name)
                .and_then(|d| d.default)
                .and_then(|d| text::parse_number(d).ok())
                .unwrap_or(0),
        }
    }

    fn digest_result(
        &self,
        name: &'static str,
        accepted: &[Digest],
    ) -> Result<Digest, NegotiationError> {
        let digest = match self.results.get(name) {
            Some(Val::Token(t)) if t == "CRC32C" => Digest::Crc32c,
            _ => Digest::None,
        };
        if digest_names(accepted).contains(&digest.as_str()) {
            Ok(digest)
        } else {
            Err(NegotiationError::DigestNotAcceptable {
                key: name,
                value: digest.as_str(),
            })
        }
    }
}

/// SessionType values (§13.21).
pub fn parse_session_type(value: &str) -> Option<SessionType> {
    match value {
        "Discovery" => Some(SessionType::Discovery),
        "Normal" => Some(SessionType::Normal),
        _ => None,
    }
}

/// The target's digest list, `None` alone when the configuration gives an empty list.
fn digest_names(list: &[Digest]) -> Vec<&'static str> {
    if list.is_empty() {
        return vec!["None"];
    }
    let mut names: Vec<&'static str> = Vec::with_capacity(list.len());
    for d in list {
        if !names.contains(&d.as_str()) {
            names.push(d.as_str());
        }
    }
    names
}

fn clamp(v: u64, lo: u64, hi: u64) -> u64 {
    v.max(lo).min(hi)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Offers one key to a fresh normal-session negotiator and returns the target's answer text.
    fn answer_one(target: &TargetParams, key: &str, value: &str) -> (String, Negotiator) {
        answer_one_in(SessionType::Normal, target, key, value)
    }

    fn answer_one_in(
        t: SessionType,
        target: &TargetParams,
        key: &str,
        value: &str,
    ) -> (String, Negotiator) {
        let mut n = Negotiator::new(t, target.clone());
        let mut out = TextBuilder::new();
        let sec = n
            .process(&pairs(&[(key, value)]), Stage::Operational, true, &mut out)
            .unwrap();
        assert!(sec.is_empty());
        (String::from_utf8(out.into_bytes()).unwrap(), n)
    }

    fn params(n: &Negotiator) -> SessionParams {
        n.finish([0; 6], 1).unwrap()
    }

    #[test]
    fn table_is_complete_and_unique() {
        let names = [
            "HeaderDigest",
            "DataDigest",
            "MaxConnections",
            "SendTargets",
            "TargetName",
            "InitiatorName",
            "TargetAlias",
            "InitiatorAlias",
            "TargetAddress",
            "TargetPortalGroupTag",
            "InitialR2T",
            "ImmediateData",
            "MaxRecvDataSegmentLength",
            "MaxBurstLength",
            "FirstBurstLength",
            "DefaultTime2Wait",
            "DefaultTime2Retain",
            "MaxOutstandingR2T",
            "DataPDUInOrder",
            "DataSequenceInOrder",
            "ErrorRecoveryLevel",
            "SessionType",
            "AuthMethod",
            "CHAP_A",
            "CHAP_I",
            "CHAP_C",
            "CHAP_N",
            "CHAP_R",
            "OFMarker",
            "IFMarker",
            "OFMarkInt",
            "IFMarkInt",
            "TaskReporting",
            "iSCSIProtocolLevel",
            "X#NodeArchitecture",
        ];
        for name in names {
            assert!(key_def(name).is_some(), "{name} missing");
            assert!(text::validate_key(name).is_ok());
        }
        let unique: HashSet<_> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(unique.len(), KEYS.len());
        assert_eq!(key_def("ImmediateData").unwrap().rule, Rule::And);
        assert_eq!(key_def("InitialR2T").unwrap().rule, Rule::Or);
        assert_eq!(
            key_def("DefaultTime2Wait").unwrap().rule,
            Rule::Max { lo: 0, hi: 3600 }
        );
        assert_eq!(
            key_def("MaxRecvDataSegmentLength").unwrap().scope,
            Scope::ConnectionOnly
        );
        assert_eq!(key_def("AuthMethod").unwrap().phase, Phase::Security);
        assert_eq!(key_def("TargetAlias").unwrap().sender, Sender::Target);
        assert!(key_def("headerdigest").is_none());
        assert!(
            is_extension_key("X-com.example.foo")
                && is_extension_key("X#Foo")
                && !is_extension_key("Xfoo")
        );
    }

    #[test]
    fn boolean_keys() {
        // (key, offer, target setting, answer, result)
        let cases: &[(&str, &str, bool, &str, bool)] = &[
            ("ImmediateData", "Yes", true, "Yes", true),
            ("ImmediateData", "Yes", false, "No", false),
            ("ImmediateData", "No", true, "No", false),
            ("ImmediateData", "No", false, "No", false),
            ("InitialR2T", "Yes", false, "Yes", true),
            ("InitialR2T", "No", false, "No", false),
            ("InitialR2T", "No", true, "Yes", true),
            ("InitialR2T", "Yes", true, "Yes", true),
        ];
        for &(key, offer, setting, answer, result) in cases {
            let mut t = TargetParams::default();
            if key == "ImmediateData" {
                t.immediate_data = setting;
            } else {
                t.initial_r2t = setting;
            }
            let (text, n) = answer_one(&t, key, offer);
            assert_eq!(
                text,
                format!("{key}={answer}\0"),
                "{key}={offer} setting {setting}"
            );
            let p = params(&n);
            let got = if key == "ImmediateData" {
                p.immediate_data
            } else {
                p.initial_r2t
            };
            assert_eq!(got, result, "{key}={offer} setting {setting}");
        }
        // The target keeps data in order (OR with Yes) and has no markers (AND with No).
        let t = TargetParams::default();
        for (key, offer, answer) in [
            ("DataPDUInOrder", "No", "Yes"),
            ("DataPDUInOrder", "Yes", "Yes"),
            ("DataSequenceInOrder", "No", "Yes"),
            ("IFMarker", "Yes", "No"),
            ("OFMarker", "No", "No"),
        ] {
            assert_eq!(answer_one(&t, key, offer).0, format!("{key}={answer}\0"));
        }
        let (_, n) = answer_one(&t, "DataPDUInOrder", "No");
        assert!(params(&n).data_pdu_in_order);
        // Invalid booleans are rejected and leave the default.
        for bad in ["yes", "1", "", "Irrelevant"] {
            let mut tt = TargetParams::default();
            tt.initial_r2t = false;
            let (text, n) = answer_one(&tt, "InitialR2T", bad);
            assert_eq!(text, "InitialR2T=Reject\0", "{bad:?}");
            assert!(params(&n).initial_r2t, "default Yes stays");
        }
    }

    #[test]
    fn numeric_keys() {
        let mut t = TargetParams::default();
        t.max_burst_length = 1 << 20;
        t.first_burst_length = 1 << 18;
        t.max_outstanding_r2t = 32;
        t.default_time2wait = 2;
        t.default_time2retain = 0;
        t.error_recovery_level = 0;
        t.max_connections = 8;
        // (key, offer, answer)
        let cases: &[(&str, &str, &str)] = &[
            ("MaxBurstLength", "16776192", "1048576"),
            ("MaxBurstLength", "262144", "262144"),
            ("MaxBurstLength", "0x40000", "262144"),
            ("MaxBurstLength", "511", "Reject"),
            ("MaxBurstLength", "16777216", "Reject"),
            ("MaxBurstLength", "abc", "Reject"),
            ("FirstBurstLength", "65536", "65536"),
            ("FirstBurstLength", "16776192", "262144"),
            ("MaxOutstandingR2T", "1", "1"),
            ("MaxOutstandingR2T", "64", "32"),
            ("MaxOutstandingR2T", "0", "Reject"),
            ("DefaultTime2Wait", "0", "2"),
            ("DefaultTime2Wait", "10", "10"),
            ("DefaultTime2Wait", "3601", "Reject"),
            ("DefaultTime2Retain", "20", "0"),
            ("DefaultTime2Retain", "0", "0"),
            ("ErrorRecoveryLevel", "2", "0"),
            ("ErrorRecoveryLevel", "3", "Reject"),
            // Only one connection per session for now, whatever the configuration says.
            ("MaxConnections", "4", "1"),
            ("MaxConnections", "0", "Reject"),
            ("iSCSIProtocolLevel", "2", "1"),
            ("iSCSIProtocolLevel", "0", "0"),
            ("iSCSIProtocolLevel", "32", "Reject"),
        ];
        for &(key, offer, answer) in cases {
            let (text, n) = answer_one(&t, key, offer);
            assert_eq!(text, format!("{key}={answer}\0"), "{key}={offer}");
            let p = params(&n);
            let expected: u64 = match answer {
                "Reject" => key_def(key).unwrap().default.unwrap().parse().unwrap(),
                a => a.parse().unwrap(),
            };
            let got = match key {
                "MaxBurstLength" => Some(u64::from(p.max_burst_length)),
                "MaxOutstandingR2T" => Some(u64::from(p.max_outstanding_r2t)),
                "DefaultTime2Wait" => Some(u64::from(p.default_time2wait)),
                "DefaultTime2Retain" => Some(u64::from(p.default_time2retain)),
                "ErrorRecoveryLevel" => Some(u64::from(p.error_recovery_level)),
                "MaxConnections" => Some(u64::from(p.max_connections)),
                _ => None,
            };
            if let Some(got) = got {
                assert_eq!(got, expected, "{key}={offer}");
            }
        }
    }

    #[test]
    fn first_burst_never_exceeds_max_burst() {
        let t = TargetParams::default(); // 1 MiB both
        let mut n = Negotiator::new(SessionType::Normal, t);
        let mut out = TextBuilder::new();
        // FirstBurstLength comes first in the PDU but is answered after MaxBurstLength.
        n.process(
            &pairs(&[("FirstBurstLength", "524288"), ("MaxBurstLength", "131072")]),
            Stage::Operational,
            true,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.as_bytes(),
            b"MaxBurstLength=131072\0FirstBurstLength=131072\0"
        );
        let p = params(&n);
        assert_eq!((p.max_burst_length, p.first_burst_length), (131072, 131072));

        // MaxBurstLength alone below the default FirstBurstLength: the result is capped.
        let (_, n) = answer_one(&TargetParams::default(), "MaxBurstLength", "4096");
        let p = params(&n);
        assert_eq!((p.max_burst_length, p.first_burst_length), (4096, 4096));
    }

    #[test]
    fn first_burst_irrelevant_without_unsolicited_data() {
        let mut n = Negotiator::new(SessionType::Normal, TargetParams::default());
        let mut out = TextBuilder::new();
        n.process(
            &pairs(&[
                ("FirstBurstLength", "65536"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "No"),
            ]),
            Stage::Operational,
            true,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.as_bytes(),
            b"InitialR2T=Yes\0ImmediateData=No\0FirstBurstLength=Irrelevant\0"
        );
    }

    #[test]
    fn list_keys() {
        use Digest::{Crc32c, None as NoDigest};
        // (offer, target list, answer, result)
        let cases: &[(&str, &[Digest], &str, Digest)] = &[
            ("None", &[NoDigest], "None", NoDigest),
            ("CRC32C,None", &[NoDigest], "None", NoDigest),
            ("None,CRC32C", &[Crc32c, NoDigest], "None", NoDigest),
            ("CRC32C,None", &[Crc32c, NoDigest], "CRC32C", Crc32c),
            ("CRC32C", &[Crc32c], "CRC32C", Crc32c),
            ("FOO,CRC32C", &[Crc32c], "CRC32C", Crc32c),
            ("CRC32C", &[NoDigest], "Reject", NoDigest),
            ("CRC32C,,None", &[NoDigest], "Reject", NoDigest),
        ];
        for &(offer, list, answer, result) in cases {
            let mut t = TargetParams::default();
            t.header_digest = list.to_vec();
            let (text, n) = answer_one(&t, "HeaderDigest", offer);
            assert_eq!(
                text,
                format!("HeaderDigest={answer}\0"),
                "{offer} vs {list:?}"
            );
            if result == NoDigest && !list.contains(&NoDigest) {
                assert!(n.finish([0; 6], 1).is_err());
            } else {
                assert_eq!(params(&n).header_digest, result);
            }
            let mut t = TargetParams::default();
            t.data_digest = list.to_vec();
            let (text, n) = answer_one(&t, "DataDigest", offer);
            assert_eq!(
                text,
                format!("DataDigest={answer}\0"),
                "{offer} vs {list:?}"
            );
            if result == NoDigest && !list.contains(&NoDigest) {
                assert!(n.finish([0; 6], 1).is_err());
            } else {
                assert_eq!(params(&n).data_digest, result);
            }
        }
        // A target that requires CRC32C cannot finish with the default None.
        let mut t = TargetParams::default();
        t.header_digest = vec![Crc32c];
        let (_, n) = answer_one(&t, "HeaderDigest", "None");
        assert_eq!(
            n.finish([0; 6], 1),
            Err(NegotiationError::DigestNotAcceptable {
                key: "HeaderDigest",
                value: "None"
            })
        );
        // TaskReporting: only RFC3720 semantics.
        let t = TargetParams::default();
        assert_eq!(
            answer_one(&t, "TaskReporting", "FastAbort,RFC3720").0,
            "TaskReporting=RFC3720\0"
        );
        assert_eq!(
            answer_one(&t, "TaskReporting", "ResponseFence").0,
            "TaskReporting=Reject\0"
        );
    }

    #[test]
    fn declarative_keys() {
        let t = TargetParams::default();
        // (key, value, answer text)
        let cases: &[(&str, &str, &str)] = &[
            ("MaxRecvDataSegmentLength", "262144", ""),
            (
                "MaxRecvDataSegmentLength",
                "511",
                "MaxRecvDataSegmentLength=Reject\0",
            ),
            (
                "MaxRecvDataSegmentLength",
                "16777216",
                "MaxRecvDataSegmentLength=Reject\0",
            ),
            ("InitiatorAlias", "host1", ""),
            ("X#NodeArchitecture", "ExampleOS/1.0", ""),
            ("SessionType", "Normal", ""),
        ];
        for &(key, value, answer) in cases {
            assert_eq!(answer_one(&t, key, value).0, answer, "{key}={value}");
        }
        let (_, n) = answer_one(&t, "MaxRecvDataSegmentLength", "262144");
        assert_eq!(params(&n).max_xmit_data_segment_length, 262144);
        let (_, n) = answer_one(&t, "MaxRecvDataSegmentLength", "511");
        assert_eq!(params(&n).max_xmit_data_segment_length, 8192);
        // The target's MaxXmitDataSegmentLength caps what it sends.
        let mut small = TargetParams::default();
        small.max_xmit_data_segment_length = 65536;
        let (_, n) = answer_one(&small, "MaxRecvDataSegmentLength", "262144");
        assert_eq!(params(&n).max_xmit_data_segment_length, 65536);
        let (_, n) = answer_one(&t, "InitiatorAlias", "host1");
        assert_eq!(params(&n).initiator_alias.as_deref(), Some("host1"));
    }

    #[test]
    fn special_answers() {
        let t = TargetParams::default();
        assert_eq!(
            answer_one(&t, "X-com.example.Foo", "1").0,
            "X-com.example.Foo=NotUnderstood\0"
        );
        assert_eq!(
            answer_one(&t, "X#Unknown", "1").0,
            "X#Unknown=NotUnderstood\0"
        );
        assert_eq!(answer_one(&t, "FooBar", "1").0, "FooBar=NotUnderstood\0");
        assert_eq!(
            answer_one(&t, "OFMarkInt", "2048~8192").0,
            "OFMarkInt=Reject\0"
        );
        assert_eq!(answer_one(&t, "IFMarkInt", "2048").0, "IFMarkInt=Reject\0");
        assert_eq!(
            answer_one(&t, "SendTargets", "All").0,
            "SendTargets=Irrelevant\0"
        );
        // Session keys in a discovery session.
        for (key, value) in [
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxOutstandingR2T", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("MaxConnections", "1"),
            ("TaskReporting", "RFC3720"),
        ] {
            let (text, _) = answer_one_in(SessionType::Discovery, &t, key, value);
            assert_eq!(text, format!("{key}=Irrelevant\0"));
        }
        // Keys that stay relevant in discovery.
        let (text, _) = answer_one_in(SessionType::Discovery, &t, "HeaderDigest", "None");
        assert_eq!(text, "HeaderDigest=None\0");
        let (text, _) = answer_one_in(SessionType::Discovery, &t, "DefaultTime2Wait", "2");
        assert_eq!(text, "DefaultTime2Wait=2\0");
    }

    #[test]
    fn protocol_errors() {
        let t = TargetParams::default();
        let run = |list: &[(&str, &str)], stage: Stage, first: bool| {
            let mut n = Negotiator::new(SessionType::Normal, t.clone());
            n.process(&pairs(list), stage, first, &mut TextBuilder::new())
        };
        assert_eq!(
            run(&[("TargetAlias", "x")], Stage::Operational, true),
            Err(NegotiationError::WrongSender("TargetAlias".into()))
        );
        assert_eq!(
            run(&[("TargetPortalGroupTag", "1")], Stage::Security, true),
            Err(NegotiationError::WrongSender("TargetPortalGroupTag".into()))
        );
        assert_eq!(
            run(&[("InitiatorName", "iqn.x")], Stage::Operational, false),
            Err(NegotiationError::LateDeclaration("InitiatorName".into()))
        );
        assert_eq!(
            run(&[("AuthMethod", "None")], Stage::Operational, true),
            Err(NegotiationError::SecurityKeyOutsideSecurityStage(
                "AuthMethod".into()
            ))
        );
        assert_eq!(
            run(&[("SessionType", "Discovery")], Stage::Security, true),
            Err(NegotiationError::InvalidSessionType("Discovery".into()))
        );
        // Security keys go back to the caller in the security stage.
        let mut n = Negotiator::new(SessionType::Normal, t.clone());
        let sec = n
            .process(
                &pairs(&[("AuthMethod", "CHAP,None"), ("CHAP_A", "5")]),
                Stage::Security,
                true,
                &mut TextBuilder::new(),
            )
            .unwrap();
        assert_eq!(sec, pairs(&[("AuthMethod", "CHAP,None"), ("CHAP_A", "5")]));
    }

    #[test]
    fn renegotiation_is_an_error() {
        let mut n = Negotiator::new(SessionType::Normal, TargetParams::default());
        let mut out = TextBuilder::new();
        n.process(
            &pairs(&[("MaxBurstLength", "262144"), ("X-foo", "1")]),
            Stage::Operational,
            true,
            &mut out,
        )
        .unwrap();
        for key in ["MaxBurstLength", "X-foo"] {
            let mut again = n.clone();
            assert_eq!(
                again.process(
                    &pairs(&[(key, "262144")]),
                    Stage::Operational,
                    false,
                    &mut TextBuilder::new()
                ),
                Err(NegotiationError::Renegotiation(key.into()))
            );
        }
        // Across stages too.
        let mut n = Negotiator::new(SessionType::Normal, TargetParams::default());
        n.process(
            &pairs(&[("AuthMethod", "None")]),
            Stage::Security,
            true,
            &mut TextBuilder::new(),
        )
        .unwrap();
        assert!(matches!(
            n.process(
                &pairs(&[("AuthMethod", "None")]),
                Stage::Security,
                false,
                &mut TextBuilder::new()
            ),
            Err(NegotiationError::Renegotiation(_))
        ));
    }

    #[test]
    fn identical_redeclaration_is_tolerated() {
        let mut n = Negotiator::new(SessionType::Normal, TargetParams::default());
        let first = pairs(&[
            ("InitiatorName", "iqn.a"),
            ("TargetName", "iqn.t"),
            ("SessionType", "Normal"),
        ]);
        n.process(&first, Stage::Security, true, &mut TextBuilder::new())
            .unwrap();
        let mut out = TextBuilder::new();
        n.process(&first, Stage::Operational, false, &mut out)
            .unwrap();
        assert!(out.is_empty());
        for (key, value) in [
            ("InitiatorName", "iqn.b"),
            ("TargetName", "iqn.u"),
            ("SessionType", "Discovery"),
        ] {
            let mut m = n.clone();
            assert_eq!(
                m.process(
                    &pairs(&[(key, value)]),
                    Stage::Operational,
                    false,
                    &mut TextBuilder::new()
                ),
                Err(NegotiationError::Renegotiation(key.into()))
            );
        }
    }

    #[test]
    fn boolean_answers_to_target_offers() {
        // (key, target setting that makes the target offer, answer, accepted result or None for a protocol error)
        let cases: &[(&str, bool, &str, Option<bool>)] = &[
            ("InitialR2T", false, "No", Some(false)),
            ("InitialR2T", false, "Yes", Some(true)),
            ("ImmediateData", false, "No", Some(false)),
            ("ImmediateData", false, "Yes", None),
            ("ImmediateData", false, "Reject", Some(true)),
        ];
        for &(key, setting, answer, result) in cases {
            let mut t = TargetParams::default();
            t.initial_r2t = if key == "InitialR2T" { setting } else { true };
            t.immediate_data = if key == "ImmediateData" {
                setting
            } else {
                true
            };
            let mut n = Negotiator::new(SessionType::Normal, t);
            let mut out = TextBuilder::new();
            n.make_offers(&mut out).unwrap();
            let offered = String::from_utf8(out.into_bytes()).unwrap();
            assert!(
                offered.contains(&format!("{key}={}\0", text::bool_str(setting))),
                "{offered}"
            );
            let r = n.process(
                &pairs(&[(key, answer)]),
                Stage::Operational,
                false,
                &mut TextBuilder::new(),
            );
            match result {
                None => assert!(
                    matches!(r, Err(NegotiationError::InvalidAnswer { .. })),
                    "{key}={answer}"
                ),
                Some(v) => {
                    r.unwrap();
                    let p = n.finish([0; 6], 1).unwrap();
                    let got = if key == "InitialR2T" {
                        p.initial_r2t
                    } else {
                        p.immediate_data
                    };
                    assert_eq!(got, v, "{key}={answer}");
                }
            }
        }
    }

    #[test]
    fn target_offers_and_answers() {
        let mut t = TargetParams::default();
        t.initial_r2t = false; // differs from the default Yes
        t.max_burst_length = 1 << 20; // differs from 262144
        t.first_burst_length = 1 << 20;
        t.default_time2retain = 0; // differs from 20
        t.max_outstanding_r2t = 1; // equals the default: not offered
        t.header_digest = vec![Digest::Crc32c, Digest::None];
        let mut n = Negotiator::new(SessionType::Normal, t.clone());
        // The initiator offered only ImmediateData and DefaultTime2Wait.
        n.process(
            &pairs(&[("ImmediateData", "Yes"), ("DefaultTime2Wait", "2")]),
            Stage::Operational,
            true,
            &mut TextBuilder::new(),
        )
        .unwrap();
        assert!(n.wants_operational_stage());
        let mut out = TextBuilder::new();
        assert_eq!(n.make_offers(&mut out).unwrap(), 5);
        assert_eq!(
            out.as_bytes(),
            &b"HeaderDigest=CRC32C,None\0InitialR2T=No\0MaxBurstLength=1048576\0FirstBurstLength=1048576\0\
DefaultTime2Retain=0\0"[..]
        );
        assert!(n.offers_pending());
        // Offers are made once.
        assert_eq!(n.make_offers(&mut TextBuilder::new()).unwrap(), 0);

        // Answers: within the rules.
        let mut ok = n.clone();
        let mut out = TextBuilder::new();
        ok.process(
            &pairs(&[
                ("HeaderDigest", "CRC32C"),
                ("InitialR2T", "No"),
                ("MaxBurstLength", "524288"),
                ("FirstBurstLength", "NotUnderstood"),
                ("DefaultTime2Retain", "0"),
            ]),
            Stage::Operational,
            false,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty(), "answers are not answered");
        assert!(!ok.offers_pending());
        let p = ok.finish([0; 6], 1).unwrap();
        assert_eq!(p.header_digest, Digest::Crc32c);
        assert!(!p.initial_r2t);
        assert_eq!(p.max_burst_length, 524288);
        assert_eq!(p.first_burst_length, 65536); // NotUnderstood: default
        assert_eq!(p.default_time2retain, 0);

        // Answers that break the rule of the key are protocol errors.
        for (key, bad) in [
            ("MaxBurstLength", "2097152"),
            ("InitialR2T", "Maybe"),
            ("HeaderDigest", "MD5"),
            ("DefaultTime2Retain", "x"),
        ] {
            let mut m = n.clone();
            assert!(
                matches!(
                    m.process(
                        &pairs(&[(key, bad)]),
                        Stage::Operational,
                        false,
                        &mut TextBuilder::new()
                    ),
                    Err(NegotiationError::InvalidAnswer { .. })
                ),
                "{key}={bad}"
            );
        }

        // Unanswered offers: numbers and booleans are taken as offered, lists keep the default.
        let mut adopt = n.clone();
        adopt.adopt_unanswered_offers();
        let p = adopt.finish([0; 6], 1).unwrap();
        assert!(!p.initial_r2t);
        assert_eq!(
            (
                p.max_burst_length,
                p.first_burst_length,
                p.default_time2retain
            ),
            (1 << 20, 1 << 20, 0)
        );
        assert_eq!(p.header_digest, Digest::None);
    }

    #[test]
    fn offers_respect_max_burst_and_discovery() {
        let mut t = TargetParams::default();
        t.max_burst_length = 131072;
        t.first_burst_length = 1 << 20;
        let mut n = Negotiator::new(SessionType::Normal, t.clone());
        let mut out = TextBuilder::new();
        n.make_offers(&mut out).unwrap();
        let s = String::from_utf8(out.into_bytes()).unwrap();
        assert!(
            s.contains("MaxBurstLength=131072\0FirstBurstLength=131072\0"),
            "{s}"
        );

        // ImmediateData=No with InitialR2T=Yes: no FirstBurstLength offer.
        let mut t2 = TargetParams::default();
        t2.immediate_data = false;
        t2.initial_r2t = true;
        let mut n = Negotiator::new(SessionType::Normal, t2);
        let mut out = TextBuilder::new();
        n.make_offers(&mut out).unwrap();
        let s = String::from_utf8(out.into_bytes()).unwrap();
        assert!(
            s.contains("ImmediateData=No\0") && !s.contains("FirstBurstLength"),
            "{s}"
        );

        // Discovery: digests only.
        let mut t3 = TargetParams::default();
        t3.data_digest = vec![Digest::Crc32c];
        let mut n = Negotiator::new(SessionType::Discovery, t3);
        assert!(n.wants_operational_stage());
        let mut out = TextBuilder::new();
        assert_eq!(n.make_offers(&mut out).unwrap(), 1);
        assert_eq!(out.as_bytes(), b"DataDigest=CRC32C\0");
        let n = Negotiator::new(SessionType::Discovery, TargetParams::default());
        assert!(!n.wants_operational_stage());
    }

    #[test]
    fn declarations_and_defaults() {
        let mut t = TargetParams::default();
        t.max_recv_data_segment_length = 1 << 30; // clamped to 2^24-1
        let mut n = Negotiator::new(SessionType::Normal, t);
        let mut out = TextBuilder::new();
        n.declare(&mut out).unwrap();
        n.declare(&mut out).unwrap();
        assert_eq!(out.as_bytes(), b"MaxRecvDataSegmentLength=16777215\0");
        let p = n.finish([1, 2, 3, 4, 5, 6], 7).unwrap();
        assert_eq!(p.max_recv_data_segment_length, 16777215);
        // Everything else: RFC defaults.
        assert_eq!(p.isid, [1, 2, 3, 4, 5, 6]);
        assert_eq!(p.tsih, 7);
        assert!(
            p.initial_r2t && p.immediate_data && p.data_pdu_in_order && p.data_sequence_in_order
        );
        assert_eq!((p.max_burst_length, p.first_burst_length), (262144, 65536));
        assert_eq!((p.default_time2wait, p.default_time2retain), (2, 20));
        assert_eq!(
            (
                p.max_outstanding_r2t,
                p.max_connections,
                p.error_recovery_level
            ),
            (1, 1, 0)
        );
        assert_eq!(p.max_xmit_data_segment_length, 8192);
        assert_eq!(
            (p.header_digest, p.data_digest),
            (Digest::None, Digest::None)
        );
        // Without a declaration the target receives at most 8192 bytes.
        let p = Negotiator::new(SessionType::Discovery, TargetParams::default())
            .finish([0; 6], 1)
            .unwrap();
        assert_eq!(p.max_recv_data_segment_length, 8192);
        assert_eq!(p.target_name, "");
    }
}
