//! Named code values of RFC 7143 §11 (and RFC 7144 §4 for the SAM-5 task management functions).
//!
//! The Reprs keep these fields as raw `u8`s; these enums name the defined values and tell reserved ones apart
//! (`from_u8` answers `None` for them).

/// The reserved tag 0xffffffff (RFC 7143 §11.2.1.8): the ITT of a NOP-Out that wants no answer and of target PDUs
/// not tied to a task (Reject, Asynchronous Message), the TTT of unsolicited Data-Out and of PDUs needing none.
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The only iSCSI version defined: Version-max, Version-min and Version-active are 0x00 (RFC 7143 §11.12.4).
pub const ISCSI_VERSION: u8 = 0x00;

/// Login Status-Class 0: success (RFC 7143 §11.13.5).
pub const LOGIN_STATUS_CLASS_SUCCESS: u8 = 0;
/// Login Status-Class 1: redirection.
pub const LOGIN_STATUS_CLASS_REDIRECTION: u8 = 1;
/// Login Status-Class 2: initiator error (not to be retried as is).
pub const LOGIN_STATUS_CLASS_INITIATOR_ERROR: u8 = 2;
/// Login Status-Class 3: target error (may be retried).
pub const LOGIN_STATUS_CLASS_TARGET_ERROR: u8 = 3;

/// Defines a `#[repr(u8)]` enum of code values with `from_u8`, `code` and the conversions to and from `u8`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Every defined value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The variant for a code value, `None` for a reserved or unassigned one.
            pub const fn from_u8(v: u8) -> Option<$name> {
                match v {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }

            /// The code value on the wire.
            pub const fn code(self) -> u8 {
                self as u8
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v as u8
            }
        }

        impl TryFrom<u8> for $name {
            /// The unknown value.
            type Error = u8;

            fn try_from(v: u8) -> Result<$name, u8> {
                $name::from_u8(v).ok_or(v)
            }
        }
    };
}

code_enum! {
    /// Login stages, the CSG and NSG fields of Login Request/Response (RFC 7143 §11.12.3). Value 2 is reserved.
    pub enum LoginStage {
        SecurityNegotiation = 0,
        LoginOperationalNegotiation = 1,
        FullFeaturePhase = 3,
    }
}

code_enum! {
    /// The iSCSI Response byte of a SCSI Response (RFC 7143 §11.4.3). 0x80..0xff are vendor specific.
    pub enum ScsiResponseCode {
        CommandCompletedAtTarget = 0x00,
        TargetFailure = 0x01,
    }
}

code_enum! {
    /// Reject reasons (RFC 7143 §11.17.1).
    pub enum RejectReason {
        /// Data (payload) digest error; the initiator may retry.
        DataDigestError = 0x02,
        /// SNACK Reject; the initiator may retry.
        SnackReject = 0x03,
        /// Protocol error (e.g., a SNACK Request for a status that was already acknowledged).
        ProtocolError = 0x04,
        /// Command not supported.
        CommandNotSupported = 0x05,
        /// Immediate command reject: too many immediate commands.
        ImmediateCommandReject = 0x06,
        /// Task in progress.
        TaskInProgress = 0x07,
        /// Invalid data ack.
        InvalidDataAck = 0x08,
        /// Invalid PDU field.
        InvalidPduField = 0x09,
        /// Long op reject: cannot generate a Target Transfer Tag, out of resources.
        LongOpReject = 0x0a,
        /// Deprecated by RFC 7143 (was "Negotiation Reset" in RFC 3720); never to be sent.
        NegotiationReset = 0x0b,
        /// Waiting for Logout.
        WaitingForLogout = 0x0c,
    }
}

code_enum! {
    /// Task management function codes (RFC 7143 §11.5.1; 9..12 from RFC 7144 §4.1).
    pub enum TmfFunction {
        AbortTask = 1,
        AbortTaskSet = 2,
        ClearAca = 3,
        ClearTaskSet = 4,
        LogicalUnitReset = 5,
        TargetWarmReset = 6,
        TargetColdReset = 7,
        TaskReassign = 8,
        QueryTask = 9,
        QueryTaskSet = 10,
        ItNexusReset = 11,
        QueryAsyncEvent = 12,
    }
}

code_enum! {
    /// Task management function response codes (RFC 7143 §11.6.1; 7 from RFC 7144 §4.2).
    pub enum TmfResponseCode {
        FunctionComplete = 0,
        TaskDoesNotExist = 1,
        LunDoesNotExist = 2,
        TaskStillAllegiant = 3,
        TaskAllegianceReassignmentNotSupported = 4,
        FunctionNotSupported = 5,
        FunctionAuthorizationFailed = 6,
        FunctionSucceeded = 7,
        FunctionRejected = 255,
    }
}

code_enum! {
    /// AsyncEvent codes of the Asynchronous Message (RFC 7143 §11.9.1).
    pub enum AsyncEvent {
        /// A SCSI asynchronous event; the data segment carries sense data.
        ScsiAsyncEvent = 0,
        /// The target requests a logout (Parameter3: seconds to log out within).
        LogoutRequest = 1,
        /// The target will drop the connection (Parameter1: CID, Parameter2: Time2Wait, Parameter3: Time2Retain).
        ConnectionDrop = 2,
        /// The target will drop all connections of the session (Parameter2: Time2Wait, Parameter3: Time2Retain).
        SessionDrop = 3,
        /// The target requests parameter negotiation on this connection.
        NegotiationRequest = 4,
        /// All active tasks for the LU in the LUN field have been terminated.
        TaskTermination = 5,
        /// Vendor-specific event (AsyncVCode).
        VendorSpecific = 255,
    }
}

code_enum! {
    /// Logout Request reason codes (RFC 7143 §11.14.1).
    pub enum LogoutReason {
        CloseSession = 0,
        CloseConnection = 1,
        RemoveConnectionForRecovery = 2,
    }
}

code_enum! {
    /// Logout Response codes (RFC 7143 §11.15.1).
    pub enum LogoutResponseCode {
        ClosedSuccessfully = 0,
        CidNotFound = 1,
        ConnectionRecoveryNotSupported = 2,
        CleanupFailed = 3,
    }
}

code_enum! {
    /// SNACK types (RFC 7143 §11.16.1).
    pub enum SnackType {
        /// Data/R2T SNACK: requesting retransmission of one or more Data-In or R2T PDUs.
        DataR2t = 0,
        /// Status SNACK: requesting retransmission of one or more numbered responses.
        Status = 1,
        /// DataACK: positively acknowledges Data-In PDUs.
        DataAck = 2,
        /// R-Data SNACK: requesting retransmission of Data-In PDUs with possible resegmentation.
        RData = 3,
    }
}

/// Login response Status-Class/Status-Detail pairs (RFC 7143 §11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginStatus {
    /// 0x0000: login is proceeding OK.
    Success,
    /// 0x0101: the target has temporarily moved (TargetAddress in the data segment).
    TargetMovedTemporarily,
    /// 0x0102: the target has permanently moved.
    TargetMovedPermanently,
    /// 0x0200: miscellaneous initiator error.
    InitiatorError,
    /// 0x0201: the initiator could not be successfully authenticated.
    AuthenticationFailure,
    /// 0x0202: the initiator is not allowed access to the given target.
    AuthorizationFailure,
    /// 0x0203: the requested TargetName does not exist here.
    NotFound,
    /// 0x0204: the requested target has been removed.
    TargetRemoved,
    /// 0x0205: the requested iSCSI version range is not supported.
    UnsupportedVersion,
    /// 0x0206: too many connections on this session.
    TooManyConnections,
    /// 0x0207: a required parameter is missing.
    MissingParameter,
    /// 0x0208: the target does not support session spanning to this connection (address).
    CantIncludeInSession,
    /// 0x0209: the target does not support this type of session or not from this initiator.
    SessionTypeNotSupported,
    /// 0x020a: attempt to add a connection to a nonexistent session.
    SessionDoesNotExist,
    /// 0x020b: invalid request type during login.
    InvalidDuringLogin,
    /// 0x0300: target hardware or software error.
    TargetError,
    /// 0x0301: the iSCSI service or target is not currently operational.
    ServiceUnavailable,
    /// 0x0302: the target has insufficient session, connection or other resources.
    OutOfResources,
}

impl LoginStatus {
    /// Every defined pair.
    pub const ALL: [LoginStatus; 18] = [
        LoginStatus::Success,
        LoginStatus::TargetMovedTemporarily,
        LoginStatus::TargetMovedPermanently,
        LoginStatus::InitiatorError,
        LoginStatus::AuthenticationFailure,
        LoginStatus::AuthorizationFailure,
        LoginStatus::NotFound,
        LoginStatus::TargetRemoved,
        LoginStatus::UnsupportedVersion,
        LoginStatus::TooManyConnections,
        LoginStatus::MissingParameter,
        LoginStatus::CantIncludeInSession,
        LoginStatus::SessionTypeNotSupported,
        LoginStatus::SessionDoesNotExist,
        LoginStatus::InvalidDuringLogin,
        LoginStatus::TargetError,
        LoginStatus::ServiceUnavailable,
        LoginStatus::OutOfResources,
    ];

    /// `(Status-Class, Status-Detail)` as carried in bytes 36 and 37 of the Login Response.
    pub const fn pair(self) -> (u8, u8) {
        match self {
            LoginStatus::Success => (0x00, 0x00),
            LoginStatus::TargetMovedTemporarily => (0x01, 0x01),
            LoginStatus::TargetMovedPermanently => (0x01, 0x02),
            LoginStatus::InitiatorError => (0x02, 0x00),
            LoginStatus::AuthenticationFailure => (0x02, 0x01),
            LoginStatus::AuthorizationFailure => (0x02, 0x02),
            LoginStatus::NotFound => (0x02, 0x03),
            LoginStatus::TargetRemoved => (0x02, 0x04),
            LoginStatus::UnsupportedVersion => (0x02, 0x05),
            LoginStatus::TooManyConnections => (0x02, 0x06),
            LoginStatus::MissingParameter => (0x02, 0x07),
            LoginStatus::CantIncludeInSession => (0x02, 0x08),
            LoginStatus::SessionTypeNotSupported => (0x02, 0x09),
            LoginStatus::SessionDoesNotExist => (0x02, 0x0a),
            LoginStatus::InvalidDuringLogin => (0x02, 0x0b),
            LoginStatus::TargetError => (0x03, 0x00),
            LoginStatus::ServiceUnavailable => (0x03, 0x01),
            LoginStatus::OutOfResources => (0x03, 0x02),
        }
    }

    /// The Status-Class.
    /// Status-Class << 8 | Status-Detail, the way the RFC writes the codes (0x0201, ...).
    pub const fn code(self) -> u16 {
        let (class, detail) = self.pair();
        (class as u16) << 8 | detail as u16
    }

    pub const fn class(self) -> u8 {
        self.pair().0
    }

    /// The Status-Detail.
    pub const fn detail(self) -> u8 {
        self.pair().1
    }

    /// The status for a Status-Class/Status-Detail pair, `None` for an undefined pair.
    pub fn from_pair(class: u8, detail: u8) -> Option<LoginStatus> {
        LoginStatus::ALL
            .iter()
            .copied()
            .find(|s| s.pair() == (class, detail))
    }
}
