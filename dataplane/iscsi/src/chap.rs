//! CHAP authentication for the security stage of the login (RFC 7143 §12.1.3, RFC 1994), on the target side, as a
//! sans-I/O state machine.
//!
//! The exchange, as the login phase carries it in key=value pairs:
//!
//! ```text
//! I->T  AuthMethod=CHAP,None            (the login answers AuthMethod=CHAP when the target requires it)
//! I->T  CHAP_A=<A1,A2,...>              algorithms the initiator accepts
//! T->I  CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>  the strongest algorithm offered, an identifier and a random challenge
//! I->T  CHAP_N=<N> CHAP_R=<R> [CHAP_I=<I'> CHAP_C=<C'>]
//! T->I  [CHAP_N=<N'> CHAP_R=<R'>]        only when the initiator asked the target to authenticate (mutual CHAP)
//! ```
//!
//! R = H(I || secret || C) with H the algorithm's hash (RFC 1994 §4.1). The algorithm numbers are IANA's "PPP
//! Authentication Algorithms": 5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256. The target picks the strongest one the
//! initiator offers.
//!
//! Security rules (RFC 7143 §9.2.1): a secret shorter than 96 bits (12 bytes) is refused; the same secret must not
//! serve both directions (the target refuses a response that its own outgoing secret would produce); an initiator
//! that sends the target's own challenge back (reflection) fails; challenges are at most 1024 bytes (§12.1.3).
//! Responses are compared in constant time. Secrets live in [`Secret`], whose `Debug` never shows them, and no error
//! message carries one.
//!
//! The core reads no random device: challenges come from a caller-supplied [`RandomSource`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;
use thiserror::Error;

use crate::text;

/// Length of the challenges the target sends: 256 bits, at least the digest length of every algorithm.
pub const CHALLENGE_LEN: usize = 32;
/// The shortest challenge the target answers in mutual CHAP (128 bits: open-iscsi sends 16 bytes, libiscsi 32).
pub const MIN_CHALLENGE_LEN: usize = 16;
/// The longest challenge (and response) RFC 7143 §12.1.3 allows: 1024 bytes.
pub const MAX_CHALLENGE_LEN: usize = 1024;
/// The shortest secret: 96 bits (RFC 7143 §9.2.1); open-iscsi refuses shorter ones too.
pub const MIN_SECRET_LEN: usize = 12;
/// The longest secret (SCST keeps them in 256-byte buffers).
pub const MAX_SECRET_LEN: usize = 255;
/// The longest CHAP name: a text value of at most 255 bytes (RFC 7143 §6.1).
pub const MAX_NAME_LEN: usize = text::MAX_VALUE_LEN;

/// A CHAP algorithm (RFC 1994 §2, IANA "PPP Authentication Algorithms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 5: CHAP with MD5, the one RFC 7143 requires every implementation to offer.
    Md5,
    /// 6: CHAP with SHA-1.
    Sha1,
    /// 7: CHAP with SHA-256.
    Sha256,
    /// 8: CHAP with SHA3-256.
    Sha3_256,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Sha3_256,
        Algorithm::Sha256,
        Algorithm::Sha1,
        Algorithm::Md5,
    ];

    /// The CHAP_A number.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Md5 => 5,
            Algorithm::Sha1 => 6,
            Algorithm::Sha256 => 7,
            Algorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm with this CHAP_A number.
    pub fn from_code(code: u64) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| u64::from(a.code()) == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha1 => "SHA-1",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha3_256 => "SHA3-256",
        }
    }

    /// Length of a response in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 | Algorithm::Sha3_256 => 32,
        }
    }

    /// Rank for "strongest offered": higher is stronger.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 => 0,
            Algorithm::Sha1 => 1,
            Algorithm::Sha256 => 2,
            Algorithm::Sha3_256 => 3,
        }
    }

    /// The CHAP response H(id || secret || challenge) (RFC 1994 §4.1).
    pub fn response(self, id: u8, secret: &Secret, challenge: &[u8]) -> Vec<u8> {
        fn hash<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update([id]);
            h.update(secret);
            h.update(challenge);
            h.finalize().to_vec()
        }
        let secret = secret.expose();
        match self {
            Algorithm::Md5 => hash::<Md5>(id, secret, challenge),
            Algorithm::Sha1 => hash::<Sha1>(id, secret, challenge),
            Algorithm::Sha256 => hash::<Sha256>(id, secret, challenge),
            Algorithm::Sha3_256 => hash::<Sha3_256>(id, secret, challenge),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Picks the strongest algorithm of a CHAP_A list. Values the target does not know (MS-CHAP's 128, say) are
/// skipped, as list negotiation does (§6.2.1).
pub fn select_algorithm(offer: &str) -> Result<Algorithm, ChapError> {
    let items =
        text::parse_list(offer).map_err(|_| ChapError::BadAlgorithmList(offer.to_string()))?;
    items
        .into_iter()
        .filter_map(|v| text::parse_number(v).ok().and_then(Algorithm::from_code))
        .max_by_key(|a| a.strength())
        .ok_or_else(|| ChapError::NoAlgorithm(offer.to_string()))
}

/// Equality of two byte strings in time that depends on their lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A CHAP secret. `Debug` shows no part of it, equality is constant-time, and the bytes are overwritten on drop
/// (best effort: copies the allocator made on growth are out of reach).
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret itself, to compute a response or to write the configuration back.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(v: Vec<u8>) -> Secret {
        Secret(v)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// A CHAP account: a name and its secret (SCST's `IncomingUser` / `OutgoingUser` "name secret").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapUser {
    pub name: String,
    pub secret: Secret,
}

impl ChapUser {
    pub fn new(name: impl Into<String>, secret: impl Into<Secret>) -> ChapUser {
        ChapUser {
            name: name.into(),
            secret: secret.into(),
        }
    }
}

/// The CHAP accounts of a target, or of discovery sessions.
///
/// With no incoming user the target does not authenticate initiators (AuthMethod=None). With at least one, the
/// initiator must authenticate as one of them (any matching name and secret is accepted). The outgoing user is the
/// name and secret the target answers with when the initiator asks it to authenticate itself (mutual CHAP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub incoming: Vec<ChapUser>,
    pub outgoing: Option<ChapUser>,
}

impl Credentials {
    /// No accounts: no authentication.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// Whether initiators must authenticate with CHAP.
    pub fn required(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Checks every account ([`check_name`], [`check_secret`]) and that no incoming secret is the outgoing one
    /// (RFC 7143 §9.2.1).
    pub fn check(&self) -> Result<(), CredentialError> {
        for user in self.incoming.iter().chain(self.outgoing.as_ref()) {
            check_name(&user.name)?;
            check_secret(&user.secret)?;
        }
        if let Some(out) = &self.outgoing {
            if let Some(user) = self.incoming.iter().find(|u| u.secret == out.secret) {
                return Err(CredentialError::SecretInBothDirections {
                    incoming: user.name.clone(),
                    outgoing: out.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a CHAP account is not acceptable. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("a CHAP user name must not be empty")]
    EmptyName,
    #[error("the CHAP user name is {len} bytes long, at most {MAX_NAME_LEN} fit in CHAP_N")]
    NameTooLong { len: usize },
    #[error("the CHAP user name {0:?} contains a control character")]
    NameControlCharacter(String),
    #[error(
        "the CHAP secret is {len} bytes long; at least {MIN_SECRET_LEN} bytes are required (RFC 7143 §9.2.1)"
    )]
    SecretTooShort { len: usize },
    #[error("the CHAP secret is {len} bytes long; at most {MAX_SECRET_LEN} bytes are allowed")]
    SecretTooLong { len: usize },
    #[error(
        "incoming user {incoming:?} and outgoing user {outgoing:?} have the same secret; RFC 7143 §9.2.1 forbids \
         using a CHAP secret in both directions"
    )]
    SecretInBothDirections { incoming: String, outgoing: String },
}

/// A CHAP name: 1 to 255 bytes without control characters (it travels as a CHAP_N text value).
pub fn check_name(name: &str) -> Result<(), CredentialError> {
    if name.is_empty() {
        return Err(CredentialError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(CredentialError::NameTooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(CredentialError::NameControlCharacter(name.to_string()));
    }
    Ok(())
}

/// A CHAP secret: 12 to 255 bytes.
pub fn check_secret(secret: &Secret) -> Result<(), CredentialError> {
    let len = secret.len();
    if len < MIN_SECRET_LEN {
        return Err(CredentialError::SecretTooShort { len });
    }
    if len > MAX_SECRET_LEN {
        return Err(CredentialError::SecretTooLong { len });
    }
    Ok(())
}

/// No random bytes could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("no random bytes available")]
pub struct RandomUnavailable;

/// Where CHAP identifiers and challenges come from: a cryptographically secure generator supplied by the caller
/// (the driver reads the operating system's; tests use [`FixedRandom`]).
pub trait RandomSource: Send + Sync {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable>;
}

/// A deterministic [`RandomSource`] for tests: repeats its bytes in a cycle. Never use it to serve initiators.
#[derive(Debug)]
pub struct FixedRandom {
    bytes: Vec<u8>,
    pos: AtomicUsize,
}

impl FixedRandom {
    pub fn new(bytes: impl Into<Vec<u8>>) -> FixedRandom {
        FixedRandom {
            bytes: bytes.into(),
            pos: AtomicUsize::new(0),
        }
    }
}

impl RandomSource for FixedRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        if self.bytes.is_empty() {
            return Err(RandomUnavailable);
        }
        let start = self.pos.fetch_add(buf.len(), Ordering::Relaxed);
        for (i, b) in buf.iter_mut().enumerate() {
            let at = start.wrapping_add(i) % self.bytes.len();
            *b = self.bytes.get(at).copied().unwrap_or(0);
        }
        Ok(())
    }
}

/// Why a CHAP exchange failed. Every one ends the login with "authentication failure" (0x0201) except
/// [`ChapError::NoRandom`], a target error (0x0300). The messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChapError {
    #[error("CHAP_A {0:?} is not a list of values")]
    BadAlgorithmList(String),
    #[error(
        "none of the CHAP algorithms {0:?} is supported (5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256)"
    )]
    NoAlgorithm(String),
    #[error("{0} is missing")]
    MissingKey(&'static str),
    #[error("{0} is out of place at this step of the CHAP exchange")]
    OutOfOrder(&'static str),
    #[error("CHAP_I {0:?} is not a number in 0..255")]
    BadIdentifier(String),
    #[error("{0} is not a hex or base64 binary value")]
    BadBinary(&'static str),
    #[error("CHAP_R has {got} bytes, a {algorithm} response has {expected}")]
    ResponseLength {
        algorithm: Algorithm,
        expected: usize,
        got: usize,
    },
    #[error(
        "the initiator's CHAP_C has {0} bytes, outside {MIN_CHALLENGE_LEN}..={MAX_CHALLENGE_LEN}"
    )]
    ChallengeLength(usize),
    #[error("CHAP_I and CHAP_C must come together")]
    IncompleteMutual,
    #[error("no incoming user {0:?}")]
    UnknownUser(String),
    #[error("wrong CHAP response for user {0:?}")]
    WrongResponse(String),
    #[error("the initiator's secret is also the target's outgoing secret (RFC 7143 §9.2.1)")]
    SecretReused,
    #[error("the initiator sent the target's own challenge back")]
    ReflectedChallenge,
    #[error("the initiator asks the target to authenticate, but no outgoing user is configured")]
    NoOutgoingUser,
    #[error("no incoming user is configured")]
    NotConfigured,
    #[error("no random bytes for a CHAP challenge")]
    NoRandom,
}

/// The target's answer to CHAP_A: the chosen algorithm, the identifier and the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapChallenge {
    pub algorithm: Algorithm,
    pub id: u8,
    pub challenge: Vec<u8>,
}

impl ChapChallenge {
    /// CHAP_A, CHAP_I and CHAP_C as key=value pairs (the challenge as a hex-constant, which every initiator reads).
    pub fn keys(&self) -> [(&'static str, String); 3] {
        [
            ("CHAP_A", self.algorithm.code().to_string()),
            ("CHAP_I", self.id.to_string()),
            ("CHAP_C", text::encode_hex(&self.challenge)),
        ]
    }
}

/// The keys of the initiator's response step, as received (values not yet decoded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseKeys<'a> {
    /// CHAP_N: the user name.
    pub name: Option<&'a str>,
    /// CHAP_R: the response to the target's challenge.
    pub response: Option<&'a str>,
    /// CHAP_I of the initiator's own challenge (mutual CHAP).
    pub id: Option<&'a str>,
    /// CHAP_C: the initiator's own challenge (mutual CHAP).
    pub challenge: Option<&'a str>,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The incoming user the initiator proved to be.
    pub user: String,
    pub algorithm: Algorithm,
    /// For mutual CHAP: CHAP_N and CHAP_R (hex) the target answers with.
    pub target_response: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitAlgorithm,
    AwaitResponse(ChapChallenge),
    Done(Algorithm),
    Failed,
}

/// One CHAP exchange of one login, target side: [`Chap::challenge`] answers CHAP_A, [`Chap::verify`] checks
/// CHAP_N/CHAP_R and answers the initiator's own challenge. Any failure ends the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    state: State,
}

impl Default for Chap {
    fn default() -> Self {
        Chap::new()
    }
}

impl Chap {
    pub fn new() -> Chap {
        Chap {
            state: State::AwaitAlgorithm,
        }
    }

    /// True once the initiator has been authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// True while the exchange waits for the initiator's response.
    pub fn awaits_response(&self) -> bool {
        matches!(self.state, State::AwaitResponse(_))
    }

    /// The algorithm chosen, once CHAP_A has been answered.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match &self.state {
            State::AwaitResponse(c) => Some(c.algorithm),
            State::Done(a) => Some(*a),
            _ => None,
        }
    }

    /// Answers the initiator's CHAP_A list: the strongest algorithm offered, a random identifier and a random
    /// challenge of [`CHALLENGE_LEN`] bytes.
    pub fn challenge(
        &mut self,
        chap_a: &str,
        random: &dyn RandomSource,
    ) -> Result<ChapChallenge, ChapError> {
        let result = self.make_challenge(chap_a, random);
        self.state = match &result {
            Ok(c) => State::AwaitResponse(c.clone()),
            Err(_) => State::Failed,
        };
        result
    }

    fn make_challenge(
        &self,
        chap_a: &str,
        random: &dyn RandomSource,
    ) -> Result<ChapChallenge, ChapError> {
        if self.state != State::AwaitAlgorithm {
            return Err(ChapError::OutOfOrder("CHAP_A"));
        }
        let algorithm = select_algorithm(chap_a)?;
        let mut bytes = [0u8; 1 + CHALLENGE_LEN];
        random.fill(&mut bytes).map_err(|_| ChapError::NoRandom)?;
        let [id, challenge @ ..] = bytes;
        Ok(ChapChallenge {
            algorithm,
            id,
            challenge: challenge.to_vec(),
        })
    }

    /// Verifies the initiator's response against the incoming users and, for mutual CHAP, computes the target's
    /// answer with the outgoing user.
    pub fn verify(
        &mut self,
        keys: &ResponseKeys<'_>,
        credentials: &Credentials,
    ) -> Result<Authenticated, ChapError> {
        let result = match &self.state {
            State::AwaitResponse(sent) => verify(sent, keys, credentials),
            _ => Err(ChapError::OutOfOrder(if keys.name.is_some() {
                "CHAP_N"
            } else {
                "CHAP_R"
            })),
        };
        self.state = match &result {
            Ok(a) => State::Done(a.algorithm),
            Err(_) => State::Failed,
        };
        result
    }
}

fn verify(
    sent: &ChapChallenge,
    keys: &ResponseKeys<'_>,
    credentials: &Credentials,
) -> Result<Authenticated, ChapError> {
    let algorithm = sent.algorithm;
    if !credentials.required() {
        return Err(ChapError::NotConfigured);
    }
    let name = keys.name.ok_or(ChapError::MissingKey("CHAP_N"))?;
    let response = keys.response.ok_or(ChapError::MissingKey("CHAP_R"))?;
    let response = text::parse_binary(response).map_err(|_| ChapError::BadBinary("CHAP_R"))?;
    if response.len() != algorithm.digest_len() {
        return Err(ChapError::ResponseLength {
            algorithm,
            expected: algorithm.digest_len(),
            got: response.len(),
        });
    }
    // The initiator's own challenge, when it wants the target to authenticate too.
    let mutual = match (keys.id, keys.challenge) {
        (None, None) => None,
        (Some(id), Some(challenge)) => {
            let id = text::parse_number(id)
                .ok()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| ChapError::BadIdentifier(id.to_string()))?;
            let challenge =
                text::parse_binary(challenge).map_err(|_| ChapError::BadBinary("CHAP_C"))?;
            if !(MIN_CHALLENGE_LEN..=MAX_CHALLENGE_LEN).contains(&challenge.len()) {
                return Err(ChapError::ChallengeLength(challenge.len()));
            }
            // RFC 7143 §9.2.1: a responder must not answer its own challenge.
            if challenge == sent.challenge {
                return Err(ChapError::ReflectedChallenge);
            }
            Some((id, challenge))
        }
        _ => return Err(ChapError::IncompleteMutual),
    };

    // Every entry with this name is tried, so that the time taken does not tell which one matched.
    let mut known = false;
    let mut matched = false;
    for user in credentials.incoming.iter().filter(|u| u.name == name) {
        known = true;
        let expected = algorithm.response(sent.id, &user.secret, &sent.challenge);
        matched |= ct_eq(&expected, &response);
    }
    if !known {
        return Err(ChapError::UnknownUser(name.to_string()));
    }
    if !matched {
        return Err(ChapError::WrongResponse(name.to_string()));
    }
    // RFC 7143 §9.2.1: a response equal to the one the target would compute with its own (outgoing) secret means
    // one secret serves both directions.
    if let Some(out) = &credentials.outgoing {
        let own = algorithm.response(sent.id, &out.secret, &sent.challenge);
        if ct_eq(&own, &response) {
            return Err(ChapError::SecretReused);
        }
    }
    let target_response = match mutual {
        None => None,
        Some((id, challenge)) => {
            let out = credentials
                .outgoing
                .as_ref()
                .ok_or(ChapError::NoOutgoingUser)?;
            let r = algorithm.response(id, &out.secret, &challenge);
            Some((out.name.clone(), text::encode_hex(&r)))
        }
    };
    Ok(Authenticated {
        user: name.to_string(),
        algorithm,
        target_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        text::parse_binary(&format!("0x{s}")).unwrap()
    }

    /// Published hash test vectors (FIPS 180 / FIPS 202 "abc", RFC 1321 ""): a CHAP response is the hash of
    /// id || secret || challenge, so id 'a', secret "b" and challenge "c" hash "abc".
    #[test]
    fn responses_hash_id_secret_and_challenge() {
        let b = Secret::from("b");
        let cases = [
            (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Algorithm::Sha3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
        ];
        for (alg, want) in cases {
            let r = alg.response(b'a', &b, b"c");
            assert_eq!(r, hex(want), "{alg}");
            assert_eq!(r.len(), alg.digest_len());
        }
    }

    /// Known answers computed with Python's hashlib (`hashlib.new(alg, bytes([id]) + secret + challenge)`).
    #[test]
    fn known_answers() {
        let c1 = hex("00112233445566778899aabbccddeeff");
        let c2: Vec<u8> = (0..32).collect();
        let s1 = Secret::from("12charsecret");
        let s2 = Secret::from("another-secret-42");
        let cases: [(Algorithm, u8, &Secret, &[u8], &str); 8] = [
            (
                Algorithm::Md5,
                1,
                &s1,
                &c1,
                "5fa8139b80dbe5cca68e2bbc47752489",
            ),
            (
                Algorithm::Sha1,
                1,
                &s1,
                &c1,
                "ab0069d2dae8a9c18ef2447e10178033ed9f95c6",
            ),
            (
                Algorithm::Sha256,
                1,
                &s1,
                &c1,
                "b7460a1d4216f477fe335f73b9c14a7707f9ae751ebfe2a1d0705556faa5baa5",
            ),
            (
                Algorithm::Sha3_256,
                1,
                &s1,
                &c1,
                "11c18fbdc8b05ef36a098f06fa759efff59320749300d01b9efe33259128262e",
            ),
            (
                Algorithm::Md5,
                0xa7,
                &s2,
                &c2,
                "8a5f1891f0d497a384c143c2b8c605ee",
            ),
            (
                Algorithm::Sha1,
                0xa7,
                &s2,
                &c2,
                "142d5b149ad569424e4fc3d4bab6c0edaffc1ccd",
            ),
            (
                Algorithm::Sha256,
                0xa7,
                &s2,
                &c2,
                "61e3fc060928655521923f0c27b36a3ba3af073830e0dfd870a8bb134d77a81a",
            ),
            (
                Algorithm::Sha3_256,
                0xa7,
                &s2,
                &c2,
                "c1ba210d34162b3fc22dbe3bd5ef60673c5551a9107c669811580ce908f866fd",
            ),
        ];
        for (alg, id, secret, challenge, want) in cases {
            assert_eq!(alg.response(id, secret, challenge), hex(want), "{alg} {id}");
        }
    }

    #[test]
    fn algorithm_numbers_follow_iana() {
        for (code, alg) in [
            (5, Algorithm::Md5),
            (6, Algorithm::Sha1),
            (7, Algorithm::Sha256),
            (8, Algorithm::Sha3_256),
        ] {
            assert_eq!(alg.code(), code);
            assert_eq!(Algorithm::from_code(code.into()), Some(alg));
        }
        for code in [0, 4, 9, 128, 129, 256 + 5] {
            assert_eq!(Algorithm::from_code(code), None);
        }
    }

    #[test]
    fn the_strongest_offered_algorithm_wins() {
        let ok = |s: &str| select_algorithm(s).unwrap();
        assert_eq!(ok("5"), Algorithm::Md5);
        assert_eq!(ok("7,5"), Algorithm::Sha256);
        assert_eq!(ok("5,7"), Algorithm::Sha256, "strength, not order");
        assert_eq!(ok("8,7,6,5"), Algorithm::Sha3_256);
        assert_eq!(ok("5,6"), Algorithm::Sha1);
        assert_eq!(ok("128,5"), Algorithm::Md5, "unknown values are skipped");
        assert_eq!(ok("0x7,5"), Algorithm::Sha256, "numbers may be hex");
        assert_eq!(ok("x,5"), Algorithm::Md5);
        assert_eq!(
            select_algorithm("128,129"),
            Err(ChapError::NoAlgorithm("128,129".into()))
        );
        assert_eq!(
            select_algorithm("Reject"),
            Err(ChapError::NoAlgorithm("Reject".into()))
        );
        assert_eq!(
            select_algorithm("5,,7"),
            Err(ChapError::BadAlgorithmList("5,,7".into()))
        );
        assert_eq!(
            select_algorithm(""),
            Err(ChapError::BadAlgorithmList(String::new()))
        );
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(&[0x80], &[0x00]));
        assert_eq!(Secret::from("x"), Secret::from(b"x".to_vec()));
        assert_ne!(Secret::from("x"), Secret::from("y"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = "hunter2-hunter2";
        let creds = Credentials {
            incoming: vec![ChapUser::new("joe", secret)],
            outgoing: Some(ChapUser::new("tgt", "other-secret-99")),
        };
        let dbg = format!("{creds:?} {:#?}", creds.incoming[0].secret);
        assert!(!dbg.contains(secret), "{dbg}");
        assert!(!dbg.contains("other-secret-99"), "{dbg}");
        assert!(dbg.contains("joe") && dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn credential_checks() {
        let good = Credentials {
            incoming: vec![
                ChapUser::new("joe", "12charsecret"),
                ChapUser::new("joe2", "12charsecret2"),
            ],
            outgoing: Some(ChapUser::new("jim1", "12charpasswd")),
        };
        assert_eq!(good.check(), Ok(()));
        assert!(good.required());
        assert!(!Credentials::none().required());
        assert_eq!(Credentials::none().check(), Ok(()));

        let mut short = good.clone();
        short.incoming[1].secret = Secret::from("short");
        let e = short.check().unwrap_err();
        assert_eq!(e, CredentialError::SecretTooShort { len: 5 });
        assert_eq!(
            e.to_string(),
            "the CHAP secret is 5 bytes long; at least 12 bytes are required (RFC 7143 §9.2.1)"
        );
        assert!(check_secret(&Secret::from("x".repeat(12))).is_ok());
        assert_eq!(
            check_secret(&Secret::from("x".repeat(256))),
            Err(CredentialError::SecretTooLong { len: 256 })
        );

        let mut same = good.clone();
        same.outgoing = Some(ChapUser::new("jim1", "12charsecret2"));
        let e = same.check().unwrap_err();
        assert_eq!(
            e,
            CredentialError::SecretInBothDirections {
                incoming: "joe2".into(),
                outgoing: "jim1".into()
            }
        );
        assert!(!e.to_string().contains("12charsecret2"));

        assert_eq!(check_name(""), Err(CredentialError::EmptyName));
        assert_eq!(
            check_name(&"n".repeat(256)),
            Err(CredentialError::NameTooLong { len: 256 })
        );
        assert!(check_name(&"n".repeat(255)).is_ok());
        assert_eq!(
            check_name("a\0b"),
            Err(CredentialError::NameControlCharacter("a\0b".into()))
        );
    }

    #[test]
    fn fixed_random_cycles_and_an_empty_one_fails() {
        let r = FixedRandom::new(vec![1, 2, 3]);
        let mut b = [0u8; 5];
        r.fill(&mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 1, 2]);
        r.fill(&mut b[..2]).unwrap();
        assert_eq!(&b[..2], &[3, 1]);
        assert_eq!(
            FixedRandom::new(Vec::new()).fill(&mut b),
            Err(RandomUnavailable)
        );
    }

    fn creds() -> Credentials {
        Credentials {
            incoming: vec![
                ChapUser::new("joe", "12charsecret"),
                ChapUser::new("ann", "ann-secret-0001"),
            ],
            outgoing: Some(ChapUser::new("target-user", "target-secret-01")),
        }
    }

    /// Random bytes 0x40, 0x41, ...: CHAP_I 0x40 and the challenge 0x41..=0x60.
    fn random() -> FixedRandom {
        FixedRandom::new((0x40..=0x60).collect::<Vec<u8>>())
    }

    fn started(offer: &str) -> (Chap, ChapChallenge) {
        let mut chap = Chap::new();
        let c = chap.challenge(offer, &random()).unwrap();
        (chap, c)
    }

    #[test]
    fn challenge_comes_from_the_random_source() {
        let (chap, c) = started("5");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.id, 0x40);
        assert_eq!(c.challenge, (0x41..=0x60).collect::<Vec<u8>>());
        assert_eq!(c.challenge.len(), CHALLENGE_LEN);
        let keys = c.keys();
        assert_eq!(keys[0], ("CHAP_A", "5".to_string()));
        assert_eq!(keys[1], ("CHAP_I", "64".to_string()));
        assert_eq!(
            keys[2],
            (
                "CHAP_C",
                "0x4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60".to_string()
            )
        );
        assert!(chap.awaits_response() && !chap.is_done());
        assert_eq!(chap.algorithm(), Some(Algorithm::Md5));

        // Without random bytes there is no challenge.
        let mut chap = Chap::new();
        assert_eq!(
            chap.challenge("5", &FixedRandom::new(Vec::new())),
            Err(ChapError::NoRandom)
        );
        // No supported algorithm.
        let mut chap = Chap::new();
        assert!(matches!(
            chap.challenge("1,2", &random()),
            Err(ChapError::NoAlgorithm(_))
        ));
        assert!(!chap.awaits_response());
    }

    fn respond(c: &ChapChallenge, secret: &str) -> String {
        text::encode_hex(
            &c.algorithm
                .response(c.id, &Secret::from(secret), &c.challenge),
        )
    }

    #[test]
    fn one_way_success_with_any_listed_user() {
        for (user, secret) in [("joe", "12charsecret"), ("ann", "ann-secret-0001")] {
            let (mut chap, c) = started("7,5");
            let r = respond(&c, secret);
            let keys = ResponseKeys {
                name: Some(user),
                response: Some(&r),
                ..ResponseKeys::default()
            };
            let ok = chap.verify(&keys, &creds()).unwrap();
            assert_eq!(ok.user, user);
            assert_eq!(ok.algorithm, Algorithm::Sha256);
            assert_eq!(ok.target_response, None);
            assert!(chap.is_done());
            // Nothing more after success.
            assert_eq!(
                chap.verify(&keys, &creds()),
                Err(ChapError::OutOfOrder("CHAP_N"))
            );
        }
    }

    #[test]
    fn a_name_listed_twice_matches_either_secret() {
        let mut creds = creds();
        creds
            .incoming
            .push(ChapUser::new("joe", "joe-second-secret"));
        let (mut chap, c) = started("5");
        let r = respond(&c, "joe-second-secret");
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&r),
            ..ResponseKeys::default()
        };
        assert_eq!(chap.verify(&keys, &creds).unwrap().user, "joe");
    }

    #[test]
    fn base64_and_uppercase_hex_responses() {
        let (mut chap, c) = started("5");
        let r = c
            .algorithm
            .response(c.id, &Secret::from("12charsecret"), &c.challenge);
        let upper = format!("0X{}", text::encode_hex(&r)[2..].to_ascii_uppercase());
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&upper),
            ..ResponseKeys::default()
        };
        chap.verify(&keys, &creds()).unwrap();

        let (mut chap, c) = started("5");
        let r = c
            .algorithm
            .response(c.id, &Secret::from("12charsecret"), &c.challenge);
        let b64 = base64(&r);
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&b64),
            ..ResponseKeys::default()
        };
        chap.verify(&keys, &creds()).unwrap();
    }

    /// An independent base64 encoder (RFC 4648 §4) for the test.
    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::from("0b");
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[test]
    fn failures() {
        let (_, c) = started("5");
        let good = respond(&c, "12charsecret");
        let wrong = respond(&c, "not-the-secret");
        let own = text::encode_hex(&c.challenge);
        let cases: Vec<(ResponseKeys<'_>, ChapError)> = vec![
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&wrong),
                    ..ResponseKeys::default()
                },
                ChapError::WrongResponse("joe".into()),
            ),
            (
                ResponseKeys {
                    name: Some("ann"),
                    response: Some(&good),
                    ..ResponseKeys::default()
                },
                ChapError::WrongResponse("ann".into()),
            ),
            (
                ResponseKeys {
                    name: Some("bob"),
                    response: Some(&good),
                    ..ResponseKeys::default()
                },
                ChapError::UnknownUser("bob".into()),
            ),
            (
                ResponseKeys {
                    name: Some("JOE"),
                    response: Some(&good),
                    ..ResponseKeys::default()
                },
                ChapError::UnknownUser("JOE".into()),
            ),
            (
                ResponseKeys {
                    response: Some(&good),
                    ..ResponseKeys::default()
                },
                ChapError::MissingKey("CHAP_N"),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    ..ResponseKeys::default()
                },
                ChapError::MissingKey("CHAP_R"),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some("0xzz"),
                    ..ResponseKeys::default()
                },
                ChapError::BadBinary("CHAP_R"),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some("5fa8139b80dbe5cca68e2bbc47752489"),
                    ..ResponseKeys::default()
                },
                ChapError::BadBinary("CHAP_R"),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some("0x00112233"),
                    ..ResponseKeys::default()
                },
                ChapError::ResponseLength {
                    algorithm: Algorithm::Md5,
                    expected: 16,
                    got: 4,
                },
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("1"),
                    ..ResponseKeys::default()
                },
                ChapError::IncompleteMutual,
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    challenge: Some("0x00112233445566778899aabbccddeeff"),
                    ..ResponseKeys::default()
                },
                ChapError::IncompleteMutual,
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("256"),
                    challenge: Some("0x00112233445566778899aabbccddeeff"),
                },
                ChapError::BadIdentifier("256".into()),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("one"),
                    challenge: Some("0x00112233445566778899aabbccddeeff"),
                },
                ChapError::BadIdentifier("one".into()),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("1"),
                    challenge: Some("0x0011"),
                },
                ChapError::ChallengeLength(2),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("1"),
                    challenge: Some("0xg0112233445566778899aabbccddeeff"),
                },
                ChapError::BadBinary("CHAP_C"),
            ),
            (
                ResponseKeys {
                    name: Some("joe"),
                    response: Some(&good),
                    id: Some("1"),
                    challenge: Some(&own),
                },
                ChapError::ReflectedChallenge,
            ),
        ];
        for (keys, want) in cases {
            let mut chap = Chap::new();
            chap.challenge("5", &random()).unwrap();
            assert_eq!(chap.verify(&keys, &creds()), Err(want.clone()), "{keys:?}");
            assert!(!chap.is_done());
            // A failed exchange stays failed.
            assert!(chap.verify(&keys, &creds()).is_err());
        }
        // A challenge just over the limit.
        let long = text::encode_hex(&vec![7u8; MAX_CHALLENGE_LEN + 1]);
        let mut chap = Chap::new();
        chap.challenge("5", &random()).unwrap();
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&good),
            id: Some("1"),
            challenge: Some(&long),
        };
        assert_eq!(
            chap.verify(&keys, &creds()),
            Err(ChapError::ChallengeLength(MAX_CHALLENGE_LEN + 1))
        );
    }

    #[test]
    fn mutual_chap() {
        let (mut chap, c) = started("5");
        let r = respond(&c, "12charsecret");
        let ichallenge: Vec<u8> = (0..MAX_CHALLENGE_LEN).map(|i| i as u8).collect();
        let ic = text::encode_hex(&ichallenge);
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&r),
            id: Some("0x2a"),
            challenge: Some(&ic),
        };
        let ok = chap.verify(&keys, &creds()).unwrap();
        let want = Algorithm::Md5.response(42, &Secret::from("target-secret-01"), &ichallenge);
        assert_eq!(
            ok.target_response,
            Some(("target-user".to_string(), text::encode_hex(&want)))
        );

        // Without an outgoing user the target cannot answer.
        let mut no_out = creds();
        no_out.outgoing = None;
        let (mut chap, c) = started("5");
        let r = respond(&c, "12charsecret");
        let keys = ResponseKeys {
            response: Some(&r),
            ..keys
        };
        assert_eq!(chap.verify(&keys, &no_out), Err(ChapError::NoOutgoingUser));
    }

    #[test]
    fn a_secret_used_in_both_directions_fails() {
        let mut same = creds();
        same.outgoing = Some(ChapUser::new("target-user", "12charsecret"));
        let (mut chap, c) = started("8");
        let r = respond(&c, "12charsecret");
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&r),
            ..ResponseKeys::default()
        };
        assert_eq!(chap.verify(&keys, &same), Err(ChapError::SecretReused));
    }

    #[test]
    fn steps_out_of_order() {
        let mut chap = Chap::new();
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some("0x00"),
            ..ResponseKeys::default()
        };
        assert_eq!(
            chap.verify(&keys, &creds()),
            Err(ChapError::OutOfOrder("CHAP_N"))
        );
        let (mut chap, _) = started("5");
        assert_eq!(
            chap.challenge("5", &random()),
            Err(ChapError::OutOfOrder("CHAP_A"))
        );
        // Nothing configured.
        let (mut chap, c) = started("5");
        let r = respond(&c, "12charsecret");
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&r),
            ..ResponseKeys::default()
        };
        assert_eq!(
            chap.verify(&keys, &Credentials::none()),
            Err(ChapError::NotConfigured)
        );
    }

    #[test]
    fn error_messages_carry_no_secret() {
        let (mut chap, c) = started("5");
        let r = respond(&c, "12charsecret");
        let keys = ResponseKeys {
            name: Some("joe"),
            response: Some(&r),
            ..ResponseKeys::default()
        };
        let mut same = creds();
        same.outgoing = Some(ChapUser::new("t", "12charsecret"));
        let e = chap.verify(&keys, &same).unwrap_err();
        assert!(!e.to_string().contains("12charsecret"));
        assert!(!format!("{e:?} {chap:?}").contains("12charsecret"));
    }
}
