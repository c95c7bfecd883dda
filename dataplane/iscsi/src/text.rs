//! Key=value text segments (RFC 7143 §6.1, §6.2, §13 introduction): parsing, building, value types, reassembly of
//! requests that span several PDUs (C bit) and splitting of responses that do not fit in one PDU.
//!
//! A text segment is a sequence of `key=value` pairs, each followed by exactly one NUL byte (§6.1). Key names are at
//! most 63 bytes; values are UTF-8 and, unless a key says otherwise, at most 255 bytes (§6.1: "the maximum length of a
//! simple-value ... is 255 bytes"). iSCSI names are at most 223 bytes (§4.2.7.1). The large-binary-values of the
//! authentication keys (CHAP_C, CHAP_R, SRP_*, KRB_*, §12) may be longer; they are bounded by
//! [`MAX_LARGE_VALUE_LEN`].
//!
//! A key=value pair may start in one PDU and end in the next (§6.1); requests are therefore collected with a
//! [`TextCollector`] until the C bit is clear and parsed as a whole. Responses longer than the peer's
//! MaxRecvDataSegmentLength are cut into chunks by [`TextChunks`].

use std::collections::HashSet;

use thiserror::Error;

/// Longest key name (§6.1: "A key-name MUST NOT exceed 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest simple value unless a key allows more (§6.1).
pub const MAX_VALUE_LEN: usize = 255;
/// Longest iSCSI name (InitiatorName, TargetName; §4.2.7.1: "up to 223 bytes").
pub const MAX_NAME_LEN: usize = 223;
/// Longest encoded value of an authentication key carrying a large-binary-value (CHAP_C, CHAP_R, SRP_*, KRB_*).
/// The RFC leaves the length of these values to the authentication method; 8192 bytes holds a 4096-byte challenge
/// in hex.
pub const MAX_LARGE_VALUE_LEN: usize = 8192;
/// Largest text (all key=value pairs of one request, over all its C-bit PDUs) the target collects. §6.1 requires
/// at least 8192 bytes, and 64 KiB when authentication methods with very long items are in use.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// MaxRecvDataSegmentLength in force during the login phase: the declared values take effect only in full feature
/// phase, so login PDUs carry at most the default 8192 bytes (§13.12).
pub const LOGIN_DATA_SEGMENT_LEN: usize = 8192;

/// Errors of text parsing, building and value decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("key=value pair at byte {offset} has no '='")]
    MissingEquals { offset: usize },
    #[error("key=value pair at byte {offset} has an empty key name")]
    EmptyKey { offset: usize },
    #[error("key name of {len} bytes is longer than {MAX_KEY_LEN}")]
    KeyTooLong { len: usize },
    #[error("key name {0:?} contains a character outside letters, digits and . - + @ _ #")]
    InvalidKey(String),
    #[error("value of {key} is {len} bytes, more than the {max} allowed")]
    ValueTooLong { key: String, len: usize, max: usize },
    #[error("key=value pair at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("the last key=value pair is not terminated by a NUL byte")]
    Unterminated,
    #[error("key {0} appears more than once")]
    DuplicateKey(String),
    #[error("text of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("value of {0} contains a NUL byte")]
    NulInValue(String),
    #[error("{0:?} is not a numerical value")]
    InvalidNumber(String),
    #[error("{0:?} is not a numeric range")]
    InvalidRange(String),
    #[error("{0:?} is not Yes or No")]
    InvalidBool(String),
    #[error("{0:?} is not a list of values")]
    InvalidList(String),
    #[error("{0:?} is not a binary value")]
    InvalidBinary(String),
}

/// The largest value a key may carry, in bytes of its encoded form.
pub fn max_value_len(key: &str) -> usize {
    match key {
        "InitiatorName" | "TargetName" => MAX_NAME_LEN,
        "CHAP_C" | "CHAP_R" | "SRP_A" | "SRP_B" | "SRP_M" | "SRP_HM" | "SRP_s" | "KRB_AP_REQ"
        | "KRB_AP_REP" => MAX_LARGE_VALUE_LEN,
        _ => MAX_VALUE_LEN,
    }
}

/// Checks a key name: 1 to 63 bytes of letters, digits, `.`, `-`, `+`, `@`, `_` (§6.1 standard-label) and `#`
/// (public extension keys `X#...`, §13.22). The RFC's "begins with a capital letter" is not enforced because the
/// RFC 7144 key `iSCSIProtocolLevel` itself does not.
pub fn validate_key(key: &str) -> Result<(), TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset: 0 });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong { len: key.len() });
    }
    let ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_' | b'#'));
    if ok {
        Ok(())
    } else {
        Err(TextError::InvalidKey(key.to_string()))
    }
}

/// Parses a complete text segment into its key=value pairs, in order.
///
/// Every pair must end with a NUL byte. Empty entries (several NULs in a row, e.g. padding after the last pair)
/// are skipped. A key that appears twice is an error (§6.2: a key is negotiated once per sequence).
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    if data.len() > MAX_TEXT_LEN {
        return Err(TextError::TooLong {
            len: data.len(),
            max: MAX_TEXT_LEN,
        });
    }
    let mut pairs = Vec::new();
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(TextError::Unterminated);
        };
        let (entry, tail) = rest.split_at(nul);
        rest = tail.get(1..).unwrap_or_default();
        let start = offset;
        offset = offset.saturating_add(nul).saturating_add(1);
        if entry.is_empty() {
            continue;
        }
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            return Err(TextError::MissingEquals { offset: start });
        };
        let (key, value) = entry.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        if key.is_empty() {
            return Err(TextError::EmptyKey { offset: start });
        }
        let key = std::str::from_utf8(key).map_err(|_| TextError::InvalidUtf8 { offset: start })?;
        validate_key(key)?;
        let value =
            std::str::from_utf8(value).map_err(|_| TextError::InvalidUtf8 { offset: start })?;
        let max = max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_string(),
                len: value.len(),
                max,
            });
        }
        if !seen.insert(key) {
            return Err(TextError::DuplicateKey(key.to_string()));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// Builds a text segment: `key=value\0` pairs in the order they are pushed.
///
/// Keys may repeat (a SendTargets answer lists one TargetName per target and several TargetAddress values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextBuilder {
    buf: Vec<u8>,
}

impl TextBuilder {
    pub fn new() -> Self {
        TextBuilder::default()
    }

    /// Appends `key=value\0` after checking the key name, the value length limit of the key and that the value holds
    /// no NUL byte.
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TextError> {
        validate_key(key)?;
        if value.as_bytes().contains(&0) {
            return Err(TextError::NulInValue(key.to_string()));
        }
        let max = max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_string(),
                len: value.len(),
                max,
            });
        }
        self.buf.reserve(key.len() + value.len() + 2);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(b'=');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    /// Appends a Yes/No value.
    pub fn push_bool(&mut self, key: &str, value: bool) -> Result<(), TextError> {
        self.push(key, bool_str(value))
    }

    /// Appends a number in decimal.
    pub fn push_number(&mut self, key: &str, value: u64) -> Result<(), TextError> {
        self.push(key, &value.to_string())
    }

    /// Appends `key=Reject`, `key=Irrelevant` or `key=NotUnderstood`.
    pub fn push_special(&mut self, key: &str, value: Special) -> Result<(), TextError> {
        self.push(key, value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Collects the data segments of a request sent over several PDUs with the C bit (§6.1, §11.10.2, §11.12.2),
/// bounded to `limit` bytes in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCollector {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for TextCollector {
    fn default() -> Self {
        TextCollector::new(MAX_TEXT_LEN)
    }
}

impl TextCollector {
    pub fn new(limit: usize) -> Self {
        TextCollector {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends one PDU's data segment. On error the collected text is discarded.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.limit {
            self.buf = Vec::new();
            return Err(TextError::TooLong {
                len,
                max: self.limit,
            });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// True when no data has been collected since the last `take`.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Takes the collected text, leaving the collector empty for the next request.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Splits a response text into data segments of at most `max` bytes (the initiator's MaxRecvDataSegmentLength in
/// full feature phase, [`LOGIN_DATA_SEGMENT_LEN`] during login). Every chunk but the last is sent with the C bit set
/// (§11.11, §11.13); the initiator asks for the next one with an empty request.
///
/// Chunks end after a NUL (at a pair boundary) whenever a boundary lies in the second half of the chunk, so that
/// initiators that evaluate pairs per PDU see whole pairs; a pair longer than that is cut inside, as §6.1 allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunks {
    data: Vec<u8>,
    pos: usize,
    max: usize,
    started: bool,
}

impl TextChunks {
    /// `max` below 1 is taken as 1.
    pub fn new(data: Vec<u8>, max: usize) -> Self {
        TextChunks {
            data,
            pos: 0,
            max: max.max(1),
            started: false,
        }
    }

    /// The next chunk and whether more follow (the C bit of its PDU). An empty text yields one empty final chunk.
    /// Returns `None` once the final chunk has been handed out.
    pub fn next_chunk(&mut self) -> Option<(Vec<u8>, bool)> {
        if self.started && self.pos >= self.data.len() {
            return None;
        }
        self.started = true;
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if rest.len() <= self.max {
            self.pos = self.data.len();
            return Some((rest.to_vec(), false));
        }
        let window = rest.get(..self.max).unwrap_or(rest);
        let cut = match window.iter().rposition(|&b| b == 0) {
            Some(i) if i + 1 >= self.max / 2 => i + 1,
            _ => self.max,
        };
        let chunk = rest.get(..cut).unwrap_or(rest).to_vec();
        self.pos = self.pos.saturating_add(chunk.len());
        Some((chunk, true))
    }

    /// True when the final chunk has been handed out.
    pub fn is_done(&self) -> bool {
        self.started && self.pos >= self.data.len()
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

/// The reserved values that answer a key instead of negotiating it (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    /// The key does not apply to this session (e.g. InitialR2T in a discovery session).
    Irrelevant,
    /// The offered value is not acceptable (out of range, invalid, or no common list value).
    Reject,
    /// The key is unknown.
    NotUnderstood,
}

impl Special {
    pub fn as_str(self) -> &'static str {
        match self {
            Special::Irrelevant => "Irrelevant",
            Special::Reject => "Reject",
            Special::NotUnderstood => "NotUnderstood",
        }
    }

    /// Recognises the three reserved values.
    pub fn parse(s: &str) -> Option<Special> {
        match s {
            "Irrelevant" => Some(Special::Irrelevant),
            "Reject" => Some(Special::Reject),
            "NotUnderstood" => Some(Special::NotUnderstood),
            _ => None,
        }
    }
}

/// `Yes` or `No` (§6.1 boolean-value).
pub fn bool_str(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Parses a boolean-value: exactly `Yes` or `No` (values are case sensitive, §6.1).
pub fn parse_bool(s: &str) -> Result<bool, TextError> {
    match s {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(TextError::InvalidBool(s.to_string())),
    }
}

/// Parses a numerical-value (§6.1): a decimal-constant (a single `0`, or a digit 1-9 followed by digits) or a
/// hex-constant (`0x`/`0X` and hex digits), less than 2^64.
pub fn parse_number(s: &str) -> Result<u64, TextError> {
    let bad = || TextError::InvalidNumber(s.to_string());
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digits = hex.trim_start_matches('0');
        if digits.len() > 16 {
            return Err(bad());
        }
        if digits.is_empty() {
            return Ok(0);
        }
        return u64::from_str_radix(digits, 16).map_err(|_| bad());
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad());
    }
    s.parse::<u64>().map_err(|_| bad())
}

/// Parses a numeric-range (§6.1): two numerical-values separated by `~`, the second not lower than the first.
pub fn parse_range(s: &str) -> Result<(u64, u64), TextError> {
    let bad = || TextError::InvalidRange(s.to_string());
    let (a, b) = s.split_once('~').ok_or_else(bad)?;
    let a = parse_number(a).map_err(|_| bad())?;
    let b = parse_number(b).map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses a list-of-values (§6.1, §6.2.1): comma-separated values in order of preference, none empty.
pub fn parse_list(s: &str) -> Result<Vec<&str>, TextError> {
    let items: Vec<&str> = s.split(',').collect();
    if items.iter().any(|v| v.is_empty()) {
        return Err(TextError::InvalidList(s.to_string()));
    }
    Ok(items)
}

/// Decodes a binary-value (§6.1): a hex-constant (`0x`/`0X`; an odd number of digits has an implied leading zero)
/// or a base64-constant (`0b`/`0B`, RFC 4648 alphabet with `=` padding).
pub fn parse_binary(s: &str) -> Result<Vec<u8>, TextError> {
    let bad = || TextError::InvalidBinary(s.to_string());
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() {
            return Err(bad());
        }
        let mut nibbles = Vec::with_capacity(hex.len() + 1);
        if hex.len() % 2 == 1 {
            nibbles.push(0u8);
        }
        for b in hex.bytes() {
            let v = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(bad()),
            };
            nibbles.push(v);
        }
        return Ok(nibbles
            .chunks(2)
            .map(|p| (p.first().copied().unwrap_or(0) << 4) | p.get(1).copied().unwrap_or(0))
            .collect());
    }
    if let Some(b64) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        return decode_base64(b64).ok_or_else(bad);
    }
    Err(bad())
}

/// Encodes bytes as a hex-constant (`0x` and lower-case digits).
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let groups = bytes.len() / 4;
    for (i, group) in bytes.chunks(4).enumerate() {
        let last = i + 1 == groups;
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc = 0u32;
        for (j, &c) in group.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { val(c)? };
            acc = (acc << 6) | v;
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.push(b0);
        if pad < 2 {
            out.push(b1);
        }
        if pad < 1 {
            out.push(b2);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pairs: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in pairs {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_pairs_in_order() {
        let data = text(&[
            "InitiatorName=iqn.2004-10.org.example:a",
            "SessionType=Normal",
            "X-com.example.k=v=w",
        ]);
        let pairs = parse(&data).unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "InitiatorName".to_string(),
                    "iqn.2004-10.org.example:a".to_string()
                ),
                ("SessionType".to_string(), "Normal".to_string()),
                // Only the first '=' separates key from value.
                ("X-com.example.k".to_string(), "v=w".to_string()),
            ]
        );
    }

    #[test]
    fn empty_text_and_padding() {
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(
            parse(b"A=1\0\0\0").unwrap(),
            vec![("A".to_string(), "1".to_string())]
        );
        assert_eq!(
            parse(b"SendTargets=\0").unwrap(),
            vec![("SendTargets".to_string(), String::new())]
        );
    }

    #[test]
    fn malformed_pairs_are_errors() {
        assert_eq!(
            parse(b"NoEquals\0"),
            Err(TextError::MissingEquals { offset: 0 })
        );
        assert_eq!(parse(b"A=1\0=x\0"), Err(TextError::EmptyKey { offset: 4 }));
        assert_eq!(parse(b"A=1"), Err(TextError::Unterminated));
        assert_eq!(
            parse(b"A=1\0A=2\0"),
            Err(TextError::DuplicateKey("A".to_string()))
        );
        assert_eq!(
            parse(b"Bad Key=1\0"),
            Err(TextError::InvalidKey("Bad Key".to_string()))
        );
        assert_eq!(
            parse(b"A=\xff\xfe\0"),
            Err(TextError::InvalidUtf8 { offset: 0 })
        );
        assert_eq!(
            parse(b"\xc3=1\0"),
            Err(TextError::InvalidUtf8 { offset: 0 })
        );
    }

    #[test]
    fn key_and_value_limits() {
        let key63 = "K".repeat(63);
        let key64 = "K".repeat(64);
        assert!(parse(&text(&[&format!("{key63}=1")])).is_ok());
        assert_eq!(
            parse(&text(&[&format!("{key64}=1")])),
            Err(TextError::KeyTooLong { len: 64 })
        );

        let v255 = "v".repeat(255);
        let v256 = "v".repeat(256);
        assert!(parse(&text(&[&format!("InitiatorAlias={v255}")])).is_ok());
        assert!(matches!(
            parse(&text(&[&format!("InitiatorAlias={v256}")])),
            Err(TextError::ValueTooLong {
                max: 255,
                len: 256,
                ..
            })
        ));

        let n223 = "n".repeat(223);
        let n224 = "n".repeat(224);
        assert!(parse(&text(&[&format!("TargetName={n223}")])).is_ok());
        assert!(matches!(
            parse(&text(&[&format!("InitiatorName={n224}")])),
            Err(TextError::ValueTooLong { max: 223, .. })
        ));

        // CHAP challenges are large-binary-values.
        let chap = format!("CHAP_C=0x{}", "ab".repeat(1024));
        assert!(parse(&text(&[&chap])).is_ok());
        let chap = format!("CHAP_C=0x{}", "ab".repeat(4096));
        assert!(matches!(
            parse(&text(&[&chap])),
            Err(TextError::ValueTooLong {
                max: MAX_LARGE_VALUE_LEN,
                ..
            })
        ));
    }

    #[test]
    fn whole_text_limit() {
        let big = vec![b'a'; MAX_TEXT_LEN + 1];
        assert_eq!(
            parse(&big),
            Err(TextError::TooLong {
                len: MAX_TEXT_LEN + 1,
                max: MAX_TEXT_LEN
            })
        );
    }

    #[test]
    fn extension_and_protocol_level_keys_are_valid() {
        assert!(validate_key("X#NodeArchitecture").is_ok());
        assert!(validate_key("X-com.example.Key_1+2@x").is_ok());
        assert!(validate_key("iSCSIProtocolLevel").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("A=B").is_err());
    }

    #[test]
    fn builder_round_trips() {
        let mut b = TextBuilder::new();
        b.push("TargetName", "iqn.2004-10.org.example:t1").unwrap();
        b.push("TargetAddress", "127.0.0.1:3260,1").unwrap();
        b.push("TargetAddress", "[::1]:3260,1").unwrap();
        b.push_bool("InitialR2T", false).unwrap();
        b.push_number("MaxBurstLength", 262144).unwrap();
        b.push_special("Foo", Special::NotUnderstood).unwrap();
        assert_eq!(
            b.as_bytes(),
            b"TargetName=iqn.2004-10.org.example:t1\0TargetAddress=127.0.0.1:3260,1\0TargetAddress=[::1]:3260,1\0\
InitialR2T=No\0MaxBurstLength=262144\0Foo=NotUnderstood\0"
        );
        assert_eq!(b.len(), b.as_bytes().len());
        assert!(!b.is_empty());
    }

    #[test]
    fn builder_refuses_bad_input() {
        let mut b = TextBuilder::new();
        assert_eq!(
            b.push("A", "x\0y"),
            Err(TextError::NulInValue("A".to_string()))
        );
        assert!(b.push("Bad Key", "x").is_err());
        assert!(b.push("TargetAlias", &"a".repeat(256)).is_err());
        assert!(b.is_empty());
    }

    #[test]
    fn collector_reassembles_split_pairs() {
        let mut c = TextCollector::new(64);
        c.push(b"InitiatorNa").unwrap();
        c.push(b"me=iqn.x\0Sess").unwrap();
        c.push(b"ionType=Normal\0").unwrap();
        let all = c.take();
        assert!(c.is_empty());
        assert_eq!(
            parse(&all).unwrap(),
            vec![
                ("InitiatorName".to_string(), "iqn.x".to_string()),
                ("SessionType".to_string(), "Normal".to_string())
            ]
        );
    }

    #[test]
    fn collector_is_bounded() {
        let mut c = TextCollector::new(10);
        c.push(&[b'a'; 6]).unwrap();
        assert_eq!(
            c.push(&[b'a'; 5]),
            Err(TextError::TooLong { len: 11, max: 10 })
        );
        assert!(c.is_empty());
        assert_eq!(
            TextCollector::default()
                .push(&vec![0u8; MAX_TEXT_LEN + 1])
                .map_err(|_| ()),
            Err(())
        );
    }

    #[test]
    fn chunks_fit_and_prefer_pair_boundaries() {
        let data = text(&[
            "TargetName=iqn.a",
            "TargetAddress=10.0.0.1:3260,1",
            "TargetName=iqn.b",
        ]);
        let mut chunks = TextChunks::new(data.clone(), 48);
        let mut joined = Vec::new();
        let mut n = 0;
        while let Some((chunk, more)) = chunks.next_chunk() {
            assert!(chunk.len() <= 48);
            // Every non-final chunk ends at a pair boundary here.
            if more {
                assert_eq!(chunk.last(), Some(&0));
            }
            joined.extend_from_slice(&chunk);
            n += 1;
            if !more {
                break;
            }
        }
        assert!(chunks.is_done());
        assert_eq!(chunks.next_chunk(), None);
        assert_eq!(joined, data);
        assert_eq!(n, 2);
    }

    #[test]
    fn chunks_cut_long_pairs() {
        let data = text(&[&format!("X-a={}", "v".repeat(100))]);
        let mut chunks = TextChunks::new(data.clone(), 16);
        let mut joined = Vec::new();
        while let Some((chunk, more)) = chunks.next_chunk() {
            assert!(chunk.len() <= 16);
            joined.extend_from_slice(&chunk);
            assert_eq!(more, chunks.remaining() > 0);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn empty_text_is_one_empty_chunk() {
        let mut chunks = TextChunks::new(Vec::new(), 8192);
        assert_eq!(chunks.next_chunk(), Some((Vec::new(), false)));
        assert_eq!(chunks.next_chunk(), None);
        let mut zero = TextChunks::new(b"A=1\0".to_vec(), 0);
        assert_eq!(zero.next_chunk(), Some((b"A".to_vec(), true)));
    }

    #[test]
    fn numbers() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("8192", 8192),
            ("0x2000", 8192),
            ("0X00ff", 255),
            ("0x0", 0),
            ("18446744073709551615", u64::MAX),
            ("0xffffffffffffffff", u64::MAX),
            ("0x0000ffffffffffffffff", u64::MAX),
        ];
        for (s, v) in ok {
            assert_eq!(parse_number(s), Ok(*v), "{s}");
        }
        for s in [
            "",
            "01",
            "-1",
            "+1",
            "1.0",
            "0x",
            "0xg",
            "18446744073709551616",
            "0x10000000000000000",
            " 1",
        ] {
            assert_eq!(
                parse_number(s),
                Err(TextError::InvalidNumber(s.to_string())),
                "{s}"
            );
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("1~65535"), Ok((1, 65535)));
        assert_eq!(parse_range("0x10~0x10"), Ok((16, 16)));
        for s in ["5~4", "1~", "~1", "1", "1~2~3", "a~b"] {
            assert_eq!(
                parse_range(s),
                Err(TextError::InvalidRange(s.to_string())),
                "{s}"
            );
        }
    }

    #[test]
    fn booleans_lists_specials() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("No"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert!(parse_bool("").is_err());
        assert_eq!(bool_str(true), "Yes");
        assert_eq!(parse_list("CRC32C,None"), Ok(vec!["CRC32C", "None"]));
        assert_eq!(parse_list("None"), Ok(vec!["None"]));
        assert!(parse_list("CRC32C,").is_err());
        assert!(parse_list("").is_err());
        for s in [Special::Irrelevant, Special::Reject, Special::NotUnderstood] {
            assert_eq!(Special::parse(s.as_str()), Some(s));
        }
        assert_eq!(Special::parse("reject"), None);
    }

    #[test]
    fn binary_values() {
        assert_eq!(parse_binary("0x0102ff"), Ok(vec![1, 2, 255]));
        assert_eq!(parse_binary("0x102"), Ok(vec![1, 2]));
        assert_eq!(parse_binary("0XAB"), Ok(vec![0xab]));
        assert_eq!(parse_binary("0bAQL/"), Ok(vec![1, 2, 255]));
        assert_eq!(parse_binary("0bAQI="), Ok(vec![1, 2]));
        assert_eq!(parse_binary("0bAQ=="), Ok(vec![1]));
        assert_eq!(
            parse_binary("0baGVsbG8gd29ybGQ="),
            Ok(b"hello world".to_vec())
        );
        for s in [
            "0x",
            "0xzz",
            "0b",
            "0bAQ",
            "0bA===",
            "0bAQ==AQ==",
            "0b!!!!",
            "12",
            "",
        ] {
            assert!(parse_binary(s).is_err(), "{s}");
        }
        assert_eq!(encode_hex(&[0, 0xab, 0x10]), "0x00ab10");
        assert_eq!(parse_binary(&encode_hex(&[9, 8, 7])), Ok(vec![9, 8, 7]));
    }
}
