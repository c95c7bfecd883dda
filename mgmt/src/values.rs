//! Validated value types of the configuration and the serde helpers that check plain values while they are parsed.
//!
//! Every check runs inside a serde `Visitor` on the scalar itself, so a YAML error points at the offending value
//! (line and column) and names its field path. The same check functions serve [`crate::Config::validate`] for
//! configurations built in code.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use polltgt_iscsi::chap::{self, ChapUser, Secret};
use polltgt_iscsi::params::Digest;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A value that does not satisfy its syntax or range; the text says what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// The largest data segment / burst length a login may negotiate: 2^24 - 1 (RFC 7143 §13.12-§13.14).
pub const MAX_RFC_LENGTH: u64 = (1 << 24) - 1;
/// The smallest one (RFC 7143 §13.12-§13.14).
pub const MIN_RFC_LENGTH: u64 = 512;
/// iSCSI-SCST's bounds on QueuedCommands (`MIN_NR_QUEUED_CMNDS`..`MAX_NR_QUEUED_CMNDS`).
pub const MAX_QUEUED_COMMANDS: u64 = 2048;
/// LUNs addressable with the flat/peripheral single-level format (SAM-5 §4.7.7): 0..16383, SCST's limit too.
pub const MAX_LUN: u64 = 16383;
/// The port a portal address without one listens on (RFC 7143 §13.9 / IANA "iscsi-target").
pub const DEFAULT_PORT: u16 = 3260;
/// iSCSI names are at most 223 bytes (RFC 7143 §4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;
/// SCST device names are at most 64 characters (`scst_vdisk_dev.name`).
pub const MAX_DEVICE_NAME_LEN: usize = 64;
/// Reactors (pinned threads) at most; also the highest CPU number + 1 a cpu_mask may select.
pub const MAX_REACTORS: u64 = 1024;

/// `value` within `min..=max`, with the message the configuration errors use.
pub(crate) fn check_range(value: u64, min: u64, max: u64) -> Result<(), InvalidValue> {
    if value < min || value > max {
        return Err(InvalidValue(format!(
            "{value} is out of range {min}..{max}"
        )));
    }
    Ok(())
}

/// Visitor for an unsigned integer in `MIN..=MAX`, stored as `T`.
struct RangedVisitor<T, const MIN: u64, const MAX: u64>(PhantomData<T>);

impl<'de, T: TryFrom<u64>, const MIN: u64, const MAX: u64> Visitor<'de>
    for RangedVisitor<T, MIN, MAX>
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer in {MIN}..{MAX}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        check_range(v, MIN, MAX).map_err(E::custom)?;
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range {MIN}..{MAX}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::custom(format!("{v} is out of range {MIN}..{MAX}"))),
        }
    }
}

/// `deserialize_with` for an integer field that must lie in `MIN..=MAX`.
pub(crate) fn ranged<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    d.deserialize_any(RangedVisitor::<T, MIN, MAX>(PhantomData))
}

/// `deserialize_with` for an optional integer field in `MIN..=MAX` (absent: `#[serde(default)]` gives `None`).
pub(crate) fn opt_ranged<'de, D, T, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    d.deserialize_any(RangedVisitor::<T, MIN, MAX>(PhantomData))
        .map(Some)
}

/// `deserialize_with` for a flag: a YAML boolean, or as SCST writes them 1/0, Yes/No (iSCSI key values), On/Off.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct FlagVisitor;
    impl Visitor<'_> for FlagVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean (true/false, yes/no, 1/0)")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom(format!(
                    "{v} is not a boolean (true/false, yes/no, 1/0)"
                ))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::custom(format!(
                    "{v} is not a boolean (true/false, yes/no, 1/0)"
                ))),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(E::custom(format!(
                    "{v:?} is not a boolean (true/false, yes/no, 1/0)"
                ))),
            }
        }
    }
    d.deserialize_any(FlagVisitor)
}

/// `deserialize_with` for an optional flag (absent: `#[serde(default)]` gives `None`).
pub(crate) fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flag(d).map(Some)
}

/// Visitor for a string checked by `check`.
struct CheckedStr<F>(F, &'static str);

impl<'de, F, T> Visitor<'de> for CheckedStr<F>
where
    F: FnOnce(&str) -> Result<T, InvalidValue>,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// Checks an SCST device name: 1 to 64 characters out of letters, digits, `_`, `-`, `.` and `:`.
pub(crate) fn check_device_name(name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() {
        return Err(InvalidValue("a device name must not be empty".into()));
    }
    if name.len() > MAX_DEVICE_NAME_LEN {
        return Err(InvalidValue(format!(
            "device name {name:?} is longer than {MAX_DEVICE_NAME_LEN} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(InvalidValue(format!(
            "character {c:?} is not allowed in device name {name:?} (allowed: letters, digits, '_', '-', '.', ':')"
        )));
    }
    Ok(())
}

/// `deserialize_with` for device names.
pub(crate) fn device_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(CheckedStr(
        |s: &str| check_device_name(s).map(|()| s.to_owned()),
        "a device name",
    ))
}

/// Checks an INQUIRY identification string (SPC-4 §6.6.1 / §7.8): 1 to `max` printable ASCII characters.
pub(crate) fn check_inquiry_string(value: &str, max: usize) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue(
            "must not be empty (leave the key out for the default)".into(),
        ));
    }
    if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(InvalidValue(format!(
            "{value:?} contains {c:?}; only printable ASCII is allowed (SPC-4 §4.3.1)"
        )));
    }
    if value.len() > max {
        return Err(InvalidValue(format!(
            "{value:?} is {} characters long, at most {max} fit",
            value.len()
        )));
    }
    Ok(())
}

/// `deserialize_with` for an optional INQUIRY string of at most `MAX` characters.
pub(crate) fn opt_inquiry<'de, D: Deserializer<'de>, const MAX: usize>(
    d: D,
) -> Result<Option<String>, D::Error> {
    d.deserialize_str(CheckedStr(
        |s: &str| check_inquiry_string(s, MAX).map(|()| Some(s.to_owned())),
        "a printable ASCII string",
    ))
}

/// Checks a backing file path: non-empty and absolute (SCST refuses relative paths, which would depend on the
/// daemon's working directory).
pub(crate) fn check_filename(path: &std::path::Path) -> Result<(), InvalidValue> {
    if path.as_os_str().is_empty() {
        return Err(InvalidValue("must not be empty".into()));
    }
    if !path.is_absolute() {
        return Err(InvalidValue(format!(
            "{:?} is not an absolute path",
            path.display().to_string()
        )));
    }
    Ok(())
}

/// `deserialize_with` for the optional backing file.
pub(crate) fn opt_filename<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    d.deserialize_str(CheckedStr(
        |s: &str| {
            let p = PathBuf::from(s);
            check_filename(&p).map(|()| Some(p))
        },
        "an absolute path",
    ))
}

/// Parses a portal: `IPv4:port`, `[IPv6]:port`, or an address alone for port 3260.
pub fn parse_portal(text: &str) -> Result<SocketAddr, InvalidValue> {
    let t = text.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err(InvalidValue(format!(
        "{text:?} is not a portal address (expected IPv4:port or [IPv6]:port, e.g. 127.0.0.1:3260 or [::1]:3260)"
    )))
}

/// `deserialize_with` for portal addresses (serialized by `SocketAddr`'s own `Display`).
pub(crate) fn portal<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(CheckedStr(
        parse_portal,
        "a portal address such as 127.0.0.1:3260",
    ))
}

/// A size in bytes. Written as a byte count or with a K, M, G or T suffix (powers of 1024; `KiB`.. also accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

impl Size {
    /// One GiB.
    pub const GIB: Size = Size(1 << 30);

    /// A size of `bytes` bytes (at least 1).
    pub fn from_bytes(bytes: u64) -> Result<Size, InvalidValue> {
        if bytes == 0 {
            return Err(InvalidValue("a size must be greater than 0".into()));
        }
        Ok(Size(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_UNITS: [(char, u32); 4] = [('T', 40), ('G', 30), ('M', 20), ('K', 10)];

impl FromStr for Size {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Size, InvalidValue> {
        let t = text.trim();
        let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, suffix) = t.split_at(digits_end);
        let bad = || {
            InvalidValue(format!(
                "{text:?} is not a size (expected bytes, or a number with K, M, G or T, e.g. 512M or 1G)"
            ))
        };
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| InvalidValue(format!("{text:?} is too large")))?;
        let suffix = suffix.trim_start();
        let shift = if suffix.is_empty() {
            0
        } else {
            let upper = suffix.to_ascii_uppercase();
            let unit = upper
                .strip_suffix("IB")
                .or_else(|| upper.strip_suffix('B'))
                .unwrap_or(&upper);
            let mut chars = unit.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => SIZE_UNITS
                    .iter()
                    .find(|(u, _)| *u == c)
                    .map(|(_, s)| *s)
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            }
        };
        let bytes = n.checked_mul(1u64 << shift).ok_or_else(|| {
            InvalidValue(format!("{text:?} is too large (at most 2^64 - 1 bytes)"))
        })?;
        Size::from_bytes(bytes)
    }
}

impl fmt::Display for Size {
    /// The largest unit that represents the size exactly (`1G`, `1536K`), or the byte count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in SIZE_UNITS {
            let scale = 1u64 << shift;
            if self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1024 == 0 {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 1073741824, 512M or 1G")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Size::from_bytes(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!("{v} is not a size (a size must be greater than 0)"))
                    })
                    .and_then(|u| self.visit_u64(u))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// A logical block size in bytes: 512 or 4096, or as SCST also allows, 1024 or 2048.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockSize(u32);

impl BlockSize {
    pub const B512: BlockSize = BlockSize(512);
    pub const B4096: BlockSize = BlockSize(4096);

    pub fn new(bytes: u64) -> Result<BlockSize, InvalidValue> {
        match bytes {
            512 | 1024 | 2048 | 4096 => Ok(BlockSize(bytes as u32)),
            _ => Err(InvalidValue(format!(
                "{bytes} is not a supported block size (512, 1024, 2048 or 4096)"
            ))),
        }
    }

    pub fn bytes(self) -> u32 {
        self.0
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        BlockSize::B512
    }
}

impl Serialize for BlockSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for BlockSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BlockSize, D::Error> {
        struct BsVisitor;
        impl Visitor<'_> for BsVisitor {
            type Value = BlockSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a block size (512, 1024, 2048 or 4096)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BlockSize, E> {
                BlockSize::new(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BlockSize, E> {
                Err(E::custom(format!(
                    "{v} is not a supported block size (512, 1024, 2048 or 4096)"
                )))
            }
        }
        d.deserialize_any(BsVisitor)
    }
}

/// An iSCSI name (RFC 7143 §4.2.7): `iqn.yyyy-mm.reversed.domain[:anything]`, `eui.` + 16 hex digits, or `naa.` +
/// 16 or 32 hex digits.
///
/// iqn names are checked in the normalized form of RFC 3722 (stringprep, simplified to ASCII): lowercase letters,
/// digits, `-`, `.` and `:`. Names that differ only in case would be the same name to an initiator, so uppercase
/// is refused rather than silently folded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName(String);

impl TargetName {
    /// Checks the syntax and wraps the name.
    pub fn new(name: &str) -> Result<TargetName, InvalidValue> {
        check_iscsi_name(name)?;
        Ok(TargetName(name.to_owned()))
    }

    /// For names known to be valid (constants checked by a test).
    pub(crate) fn from_static(name: &'static str) -> TargetName {
        TargetName(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TargetName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TargetName, D::Error> {
        d.deserialize_str(CheckedStr(
            TargetName::new,
            "an iSCSI name such as iqn.2026-11.io.polltgt:disk1",
        ))
    }
}

fn check_iscsi_name(name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() {
        return Err(InvalidValue("an iSCSI name must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidValue(format!(
            "{} bytes long; an iSCSI name is at most {MAX_NAME_LEN} bytes (RFC 7143 §4.2.7.1)",
            name.len()
        )));
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        check_iqn(name, rest)
    } else if let Some(hex) = name.strip_prefix("eui.") {
        check_hex_name(
            name,
            hex,
            &[16],
            "eui. names carry an EUI-64: 16 hex digits (RFC 7143 §4.2.7.4)",
        )
    } else if let Some(hex) = name.strip_prefix("naa.") {
        check_hex_name(
            name,
            hex,
            &[16, 32],
            "naa. names carry an NAA identifier: 16 or 32 hex digits (RFC 7143 §4.2.7.5)",
        )
    } else {
        let lower = name.to_ascii_lowercase();
        if ["iqn.", "eui.", "naa."]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Err(InvalidValue(format!(
                "{name:?}: the type designator must be lowercase (RFC 3722 normalizes iSCSI names to lowercase)"
            )));
        }
        Err(InvalidValue(format!(
            "{name:?} must start with \"iqn.\", \"eui.\" or \"naa.\" (RFC 7143 §4.2.7.2)"
        )))
    }
}

fn check_hex_name(name: &str, hex: &str, lens: &[usize], rule: &str) -> Result<(), InvalidValue> {
    if lens.contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(InvalidValue(format!("{name:?}: {rule}")))
    }
}

fn check_iqn(name: &str, rest: &str) -> Result<(), InvalidValue> {
    if let Some(c) = name.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(InvalidValue(format!(
            "{name:?} contains uppercase {c:?}; iSCSI names are lowercase (RFC 3722 stringprep)"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return Err(InvalidValue(format!(
            "{name:?} contains {c:?}; an iSCSI name may contain a-z, 0-9, '-', '.' and ':' (RFC 3722)"
        )));
    }
    let bytes = rest.as_bytes();
    let date_ok = bytes.len() >= 8
        && bytes.iter().take(4).all(u8::is_ascii_digit)
        && bytes.get(4) == Some(&b'-')
        && bytes
            .get(5..7)
            .is_some_and(|m| m.iter().all(u8::is_ascii_digit))
        && matches!(
            rest.get(5..7).and_then(|m| m.parse::<u8>().ok()),
            Some(1..=12)
        )
        && bytes.get(7) == Some(&b'.');
    if !date_ok {
        return Err(InvalidValue(format!(
            "{name:?}: expected a date yyyy-mm and a dot after \"iqn.\" (RFC 7143 §4.2.7.3, e.g. iqn.2026-11.io.polltgt)"
        )));
    }
    let after_date = rest.get(8..).unwrap_or("");
    let authority = after_date.split(':').next().unwrap_or("");
    if authority.is_empty()
        || authority.split('.').any(|label| {
            label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    {
        return Err(InvalidValue(format!(
            "{name:?}: the naming authority after the date must be a reversed domain name such as io.polltgt (RFC 7143 §4.2.7.3)"
        )));
    }
    Ok(())
}

/// A digest preference list (RFC 7143 §13.1): `None`, `CRC32C`, or a comma-separated list such as `CRC32C,None`,
/// most preferred first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digests(Vec<Digest>);

impl Digests {
    pub fn new(list: Vec<Digest>) -> Result<Digests, InvalidValue> {
        if list.is_empty() {
            return Err(InvalidValue(
                "a digest list must not be empty (None, CRC32C or CRC32C,None)".into(),
            ));
        }
        for (i, d) in list.iter().enumerate() {
            if list.iter().take(i).any(|e| e == d) {
                return Err(InvalidValue(format!("{} is listed twice", d.as_str())));
            }
        }
        Ok(Digests(list))
    }

    /// Only `None`.
    pub fn none() -> Digests {
        Digests(vec![Digest::None])
    }

    pub fn as_slice(&self) -> &[Digest] {
        &self.0
    }
}

impl FromStr for Digests {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Digests, InvalidValue> {
        let mut list = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let d = if item.eq_ignore_ascii_case("None") {
                Digest::None
            } else if item.eq_ignore_ascii_case("CRC32C") {
                Digest::Crc32c
            } else {
                return Err(InvalidValue(format!(
                    "{item:?} is not a digest (None or CRC32C, or a list such as CRC32C,None)"
                )));
            };
            list.push(d);
        }
        Digests::new(list)
    }
}

impl fmt::Display for Digests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(d.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Digests {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digests {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digests, D::Error> {
        d.deserialize_str(CheckedStr(
            str::parse,
            "None, CRC32C or a list such as CRC32C,None",
        ))
    }
}

/// A set of CPUs as a hexadecimal mask (SPDK's `-m 0x3`): bit n selects CPU n.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuMask(Vec<usize>);

impl CpuMask {
    /// The mask selecting `cpus` (each below 1024, at least one).
    pub fn from_cpus(mut cpus: Vec<usize>) -> Result<CpuMask, InvalidValue> {
        cpus.sort_unstable();
        cpus.dedup();
        if cpus.is_empty() {
            return Err(InvalidValue(
                "a cpu_mask must select at least one CPU".into(),
            ));
        }
        if let Some(&c) = cpus.iter().find(|&&c| c as u64 >= MAX_REACTORS) {
            return Err(InvalidValue(format!(
                "CPU {c} is beyond the supported {MAX_REACTORS} CPUs"
            )));
        }
        Ok(CpuMask(cpus))
    }

    /// The selected CPUs, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }
}

impl FromStr for CpuMask {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<CpuMask, InvalidValue> {
        let t = text.trim();
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        // Linux's bitmap format, as SCST shows cpu_mask: 32-bit words of 8 hex digits separated by commas
        // ("00000001,00000003"); the first word may be shorter.
        let words: Vec<&str> = hex.split(',').collect();
        let joined;
        let hex = if words.len() > 1 {
            if words[0].is_empty() || words[1..].iter().any(|w| w.len() != 8) {
                return Err(InvalidValue(format!(
                    "{text:?} is not a hexadecimal CPU mask such as \"0x3\" or \"00000000,00000003\""
                )));
            }
            joined = words.concat();
            joined.as_str()
        } else {
            hex
        };
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(InvalidValue(format!(
                "{text:?} is not a hexadecimal CPU mask such as \"0x3\""
            )));
        }
        let hex = hex.trim_start_matches('0');
        if hex.len() as u64 > MAX_REACTORS / 4 {
            return Err(InvalidValue(format!(
                "{text:?} selects CPUs beyond the supported {MAX_REACTORS} CPUs"
            )));
        }
        let mut cpus = Vec::new();
        for (nibble_no, c) in hex.chars().rev().enumerate() {
            let nibble = c.to_digit(16).unwrap_or(0);
            for bit in 0..4 {
                if nibble & (1 << bit) != 0 {
                    cpus.push(nibble_no.saturating_mul(4).saturating_add(bit));
                }
            }
        }
        CpuMask::from_cpus(cpus).map_err(|e| InvalidValue(format!("{text:?}: {e}")))
    }
}

impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top = self.0.last().copied().unwrap_or(0);
        f.write_str("0x")?;
        for nibble_no in (0..=top / 4).rev() {
            let nibble = (0..4)
                .filter(|bit| self.0.binary_search(&(nibble_no * 4 + bit)).is_ok())
                .fold(0u32, |acc, bit| acc | (1 << bit));
            write!(f, "{nibble:x}")?;
        }
        Ok(())
    }
}

impl Serialize for CpuMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuMask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CpuMask, D::Error> {
        struct MaskVisitor;
        impl Visitor<'_> for MaskVisitor {
            type Value = CpuMask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hexadecimal CPU mask such as \"0x3\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CpuMask, E> {
                // An unquoted 0x3 reaches us as the integer 3.
                let cpus = (0..64).filter(|bit| v & (1u64 << bit) != 0).collect();
                CpuMask::from_cpus(cpus).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CpuMask, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(MaskVisitor)
    }
}

/// A CHAP account of the `IncomingUser` / `OutgoingUser` attributes (SCST's names, RFC 7143 §12.1.3): a user name and
/// its secret.
///
/// Written as `{ user: joe, secret: 12charsecret }`, or as SCST writes the attribute value, `"joe 12charsecret"`
/// (exactly two words). Written back in the first form. Secrets must be 12 to 255 bytes (RFC 7143 §9.2.1: at least
/// 96 bits); they never appear in `Debug` output or in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapAccount {
    pub user: String,
    pub secret: Secret,
}

impl ChapAccount {
    pub fn new(user: impl Into<String>, secret: impl Into<String>) -> ChapAccount {
        ChapAccount {
            user: user.into(),
            secret: Secret::from(secret.into()),
        }
    }

    /// The account as the iSCSI core takes it.
    pub fn to_chap_user(&self) -> ChapUser {
        ChapUser {
            name: self.user.clone(),
            secret: self.secret.clone(),
        }
    }
}

impl From<&ChapAccount> for ChapUser {
    fn from(a: &ChapAccount) -> ChapUser {
        a.to_chap_user()
    }
}

/// Checks a CHAP user name (1 to 255 bytes, no control characters).
pub(crate) fn check_chap_user(user: &str) -> Result<(), InvalidValue> {
    chap::check_name(user).map_err(|e| InvalidValue(e.to_string()))
}

/// Checks a CHAP secret: UTF-8 text (it is written back to the YAML file) of 12 to 255 bytes.
pub(crate) fn check_chap_secret(secret: &Secret) -> Result<(), InvalidValue> {
    if std::str::from_utf8(secret.expose()).is_err() {
        return Err(InvalidValue("the CHAP secret must be UTF-8 text".into()));
    }
    chap::check_secret(secret).map_err(|e| InvalidValue(e.to_string()))
}

const CHAP_ACCOUNT_EXPECTED: &str =
    "a CHAP account: { user: USER, secret: SECRET } or \"USER SECRET\"";

impl Serialize for ChapAccount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let secret = std::str::from_utf8(self.secret.expose()).map_err(|_| {
            S::Error::custom(format!(
                "the CHAP secret of user {:?} is not UTF-8 text",
                self.user
            ))
        })?;
        let mut st = s.serialize_struct("ChapAccount", 2)?;
        st.serialize_field("user", &self.user)?;
        st.serialize_field("secret", secret)?;
        st.end()
    }
}

/// Parses SCST's `"USER SECRET"` form. The error never quotes the text, which holds the secret.
fn parse_scst_account(text: &str) -> Result<ChapAccount, InvalidValue> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [user, secret] = words.as_slice() else {
        return Err(InvalidValue(format!(
            "expected \"USER SECRET\" (two words), found {} word{}; use {{ user: USER, secret: SECRET }} for \
             secrets with spaces",
            words.len(),
            if words.len() == 1 { "" } else { "s" }
        )));
    };
    check_chap_user(user)?;
    let secret = Secret::from(*secret);
    check_chap_secret(&secret)?;
    Ok(ChapAccount {
        user: (*user).to_owned(),
        secret,
    })
}

/// A text scalar checked by `check` while it is parsed (so that an error points at it), whose type errors never show
/// the value (it may be a secret).
struct OpaqueText(&'static str, fn(&str) -> Result<(), InvalidValue>);

impl Visitor<'_> for OpaqueText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.1)(v).map_err(E::custom)?;
        Ok(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom(format!("{} must be a string (quote it)", self.0)))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(E::custom(format!("{} must be a string (quote it)", self.0)))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(E::custom(format!("{} must be a string (quote it)", self.0)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom(format!("{} must be a string (quote it)", self.0)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom(format!("{} must not be empty", self.0)))
    }
}

/// The `secret` value.
struct SecretSeed;

impl<'de> de::DeserializeSeed<'de> for SecretSeed {
    type Value = Secret;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(OpaqueText("the CHAP secret", |s| {
            check_chap_secret(&Secret::from(s))
        }))
        .map(Secret::from)
    }
}

/// The `user` value.
struct UserSeed;

impl<'de> de::DeserializeSeed<'de> for UserSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(OpaqueText("the CHAP user name", check_chap_user))
    }
}

struct ChapAccountVisitor;

impl<'de> Visitor<'de> for ChapAccountVisitor {
    type Value = ChapAccount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CHAP_ACCOUNT_EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ChapAccount, E> {
        parse_scst_account(v).map_err(E::custom)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ChapAccount, A::Error> {
        let mut user = None;
        let mut secret = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "user" if user.is_none() => user = Some(map.next_value_seed(UserSeed)?),
                "secret" if secret.is_none() => secret = Some(map.next_value_seed(SecretSeed)?),
                "user" | "secret" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => return Err(de::Error::unknown_field(&key, &["user", "secret"])),
            }
        }
        let user = user.ok_or_else(|| de::Error::missing_field("user"))?;
        let secret = secret.ok_or_else(|| de::Error::missing_field("secret"))?;
        Ok(ChapAccount { user, secret })
    }

    // Other scalars and sequences: the default errors name the type only ("invalid type: integer, expected ..."
    // quotes integers, so those are answered here).
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<ChapAccount, E> {
        Err(E::custom(format!("expected {CHAP_ACCOUNT_EXPECTED}")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<ChapAccount, E> {
        Err(E::custom(format!("expected {CHAP_ACCOUNT_EXPECTED}")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<ChapAccount, E> {
        Err(E::custom(format!("expected {CHAP_ACCOUNT_EXPECTED}")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<ChapAccount, E> {
        Err(E::custom(format!("expected {CHAP_ACCOUNT_EXPECTED}")))
    }
}

impl<'de> Deserialize<'de> for ChapAccount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ChapAccount, D::Error> {
        d.deserialize_any(ChapAccountVisitor)
    }
}

/// `deserialize_with` for `IncomingUser`: a list of accounts, or a single one.
pub(crate) fn chap_accounts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ChapAccount>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<ChapAccount>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of CHAP accounts, or {CHAP_ACCOUNT_EXPECTED}")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<ChapAccount>, A::Error> {
            let mut out = Vec::new();
            while let Some(a) = seq.next_element::<ChapAccount>()? {
                out.push(a);
            }
            Ok(out)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<ChapAccount>, E> {
            ChapAccountVisitor.visit_str(v).map(|a| vec![a])
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Vec<ChapAccount>, A::Error> {
            ChapAccountVisitor.visit_map(map).map(|a| vec![a])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<ChapAccount>, E> {
            Ok(Vec::new())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<ChapAccount>, E> {
            ChapAccountVisitor.visit_u64(v).map(|a| vec![a])
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<ChapAccount>, E> {
            ChapAccountVisitor.visit_i64(v).map(|a| vec![a])
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<ChapAccount>, E> {
            ChapAccountVisitor.visit_f64(v).map(|a| vec![a])
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<ChapAccount>, E> {
            ChapAccountVisitor.visit_bool(v).map(|a| vec![a])
        }
    }
    d.deserialize_any(ListVisitor)
}

/// Checks an initiator name pattern of an initiator group (`allowed_portal` patterns are
/// [`polltgt_iscsi::access::PortalPattern`]s):
/// non-empty, printable, no blanks (SCST's management commands split on blanks), at most 255 characters.
pub(crate) fn check_pattern(p: &str) -> Result<(), InvalidValue> {
    if p.is_empty() || p == "!" {
        return Err(InvalidValue("a name pattern must not be empty".into()));
    }
    if p.len() > 255 {
        return Err(InvalidValue(format!("pattern {p:?} is longer than 255 characters")));
    }
    if let Some(c) = p.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '/') {
        return Err(InvalidValue(format!("character {c:?} is not allowed in pattern {p:?}")));
    }
    Ok(())
}

/// `deserialize_with` for an optional listen address (`null` or absent: none).
pub(crate) fn opt_portal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_str(CheckedStr(
        |s: &str| parse_portal(s).map(Some),
        "an address such as 127.0.0.1:9464",
    ))
}

/// `deserialize_with` for the RPC socket path: an absolute path, or `null` (or an empty string) for none.
pub(crate) fn opt_socket_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<PathBuf>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an absolute path, or null for no RPC socket")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<PathBuf>, E> {
            if v.is_empty() {
                return Ok(None);
            }
            let p = PathBuf::from(v);
            check_filename(&p).map_err(E::custom)?;
            Ok(Some(p))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<PathBuf>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<PathBuf>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_with_binary_suffixes() {
        assert_eq!("1G".parse::<Size>().unwrap().bytes(), 1 << 30);
        assert_eq!("1GiB".parse::<Size>().unwrap().bytes(), 1 << 30);
        assert_eq!("512m".parse::<Size>().unwrap().bytes(), 512 << 20);
        assert_eq!("3 T".parse::<Size>().unwrap().bytes(), 3 << 40);
        assert_eq!("4096".parse::<Size>().unwrap().bytes(), 4096);
        assert_eq!("10K".parse::<Size>().unwrap().to_string(), "10K");
        assert_eq!("1536K".parse::<Size>().unwrap().to_string(), "1536K");
        assert_eq!("2048M".parse::<Size>().unwrap().to_string(), "2G");
        assert_eq!(Size::from_bytes(1000).unwrap().to_string(), "1000");
        assert!("1.5G".parse::<Size>().is_err());
        assert!("G".parse::<Size>().is_err());
        assert!("1X".parse::<Size>().is_err());
        assert!("1KK".parse::<Size>().is_err());
        assert!("0".parse::<Size>().is_err());
        assert_eq!(
            "16777216T".parse::<Size>().unwrap_err().0,
            "\"16777216T\" is too large (at most 2^64 - 1 bytes)"
        );
    }

    #[test]
    fn iscsi_names() {
        for ok in [
            "iqn.2026-11.io.polltgt:default",
            "iqn.2006-10.net.vlnb:tgt",
            "iqn.1992-01.com.example",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
            "naa.62004567BA64678D0123456789ABCDEF",
        ] {
            TargetName::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "iqn.2026-13.io.polltgt",
            "iqn.26-11.io.polltgt",
            "iqn.2026-11",
            "iqn.2026-11.",
            "iqn.2026-11.io..polltgt",
            "iqn.2026-11.io.polltgt:Disk",
            "iqn.2026-11.io.polltgt:disk_1",
            "IQN.2026-11.io.polltgt",
            "eui.02004567A425678",
            "naa.52004567BA64678Z",
            "foo.bar",
        ] {
            assert!(TargetName::new(bad).is_err(), "{bad} accepted");
        }
        let long = format!("iqn.2026-11.io.polltgt:{}", "x".repeat(202));
        assert!(TargetName::new(&long)
            .unwrap_err()
            .0
            .contains("at most 223 bytes"));
    }

    #[test]
    fn digests_and_cpu_masks_round_trip_through_text() {
        let d: Digests = "crc32c, none".parse().unwrap();
        assert_eq!(d.as_slice(), &[Digest::Crc32c, Digest::None]);
        assert_eq!(d.to_string(), "CRC32C,None");
        assert!("None,None".parse::<Digests>().is_err());
        assert!("".parse::<Digests>().is_err());

        let m: CpuMask = "0x13".parse().unwrap();
        assert_eq!(m.cpus(), &[0, 1, 4]);
        assert_eq!(m.to_string(), "0x13");
        let wide: CpuMask = "0x80000000000000000001".parse().unwrap();
        assert_eq!(wide.cpus(), &[0, 79]);
        assert_eq!(wide.to_string(), "0x80000000000000000001");
        assert!("0x0".parse::<CpuMask>().is_err());
        assert!("0x000".parse::<CpuMask>().is_err());
        assert_eq!("0x0001".parse::<CpuMask>().unwrap().cpus(), &[0]);
        let top = format!("0x8{}", "0".repeat(255));
        assert_eq!(top.parse::<CpuMask>().unwrap().cpus(), &[1023]);
        let beyond = format!("0x1{}", "0".repeat(256));
        assert!(beyond
            .parse::<CpuMask>()
            .unwrap_err()
            .0
            .contains("beyond the supported 1024 CPUs"));
        assert!("0xg".parse::<CpuMask>().is_err());
        // SCST shows cpu_mask in Linux's bitmap format: comma-separated 32-bit words.
        assert_eq!("00000001,00000003".parse::<CpuMask>().unwrap().cpus(), &[0, 1, 32]);
        assert_eq!("3,00000000".parse::<CpuMask>().unwrap().cpus(), &[32, 33]);
        assert!("1,3".parse::<CpuMask>().is_err(), "words after the first have 8 digits");
        assert!(",00000003".parse::<CpuMask>().is_err());
    }

    #[test]
    fn portals_accept_a_missing_port() {
        assert_eq!(
            parse_portal("10.0.0.1").unwrap(),
            "10.0.0.1:3260".parse().unwrap()
        );
        assert_eq!(
            parse_portal("[fe80::1]").unwrap(),
            "[fe80::1]:3260".parse().unwrap()
        );
        assert_eq!(parse_portal("::1").unwrap(), "[::1]:3260".parse().unwrap());
        assert_eq!(
            parse_portal("[::1]:3261").unwrap(),
            "[::1]:3261".parse().unwrap()
        );
        assert!(parse_portal("localhost:3260").is_err());
        assert!(parse_portal("1.2.3.4:99999").is_err());
    }
}
