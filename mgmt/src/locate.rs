//! Finding the line and column of a field path in a YAML text, for errors found after parsing (duplicates,
//! references, cross-field rules).
//!
//! The YAML parser knows the position of every node, but reports it only with an error. So the text is parsed once
//! more with a visitor that walks the path and fails at its end (or at the deepest node of the path that exists);
//! the parser attaches that node's position to the failure.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{FieldPath, Segment};

/// The 1-based line and column of the value at `path` in `text`, or of the deepest node of `path` that exists.
pub(crate) fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe {
        rest: path.segments(),
    })
    .deserialize(de)
    {
        Ok(()) => None,
        Err(err) => err.location().map(|l| (l.line(), l.column())),
    }
}

/// The error every probe ends with; only its position matters.
#[derive(Debug)]
struct Found;

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("located")
    }
}

/// Walks `rest` from the node it is given.
struct Probe<'a> {
    rest: &'a [Segment],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node of a field path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), deeper)) = self.rest.split_first() else {
            // The path ends here (or wants an index of a mapping): this mapping is the node.
            return Err(de::Error::custom(Found));
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0 == *want {
                return map.next_value_seed(Probe { rest: deeper });
            }
            map.next_value::<IgnoredAny>()?;
        }
        // Key absent: the mapping is the deepest node of the path.
        Err(de::Error::custom(Found))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), deeper)) = self.rest.split_first() else {
            return Err(de::Error::custom(Found));
        };
        let mut index = 0;
        loop {
            if index == *want {
                return match seq.next_element_seed(Probe { rest: deeper })? {
                    Some(()) => Ok(()),
                    None => Err(de::Error::custom(Found)),
                };
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(Found));
            }
            index += 1;
        }
    }

    // Every scalar (and null) ends the walk: the default `visit_*` methods fail, at the scalar's position.
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
devices:
  - name: disk1
    handler: ram
  - name: disk2
    handler: vdisk_fileio
targets:
  - name: iqn.2026-11.io.polltgt:a
    luns: [ { lun: 0, device: disk1 }, { lun: 1, device: nope } ]
";

    fn at(path: FieldPath) -> Option<(usize, usize)> {
        locate(TEXT, &path)
    }

    #[test]
    fn finds_values_keys_and_the_deepest_existing_node() {
        let root = FieldPath::root();
        assert_eq!(at(root.key("devices").index(1).key("name")), Some((4, 11)));
        assert_eq!(
            at(root.key("devices").index(1).key("handler")),
            Some((5, 14))
        );
        // Missing field: the mapping that lacks it (its first key).
        assert_eq!(
            at(root.key("devices").index(1).key("filename")),
            Some((4, 5))
        );
        // Flow style.
        assert_eq!(
            at(root
                .key("targets")
                .index(0)
                .key("luns")
                .index(1)
                .key("device")),
            Some((8, 58))
        );
        // Index past the end: the sequence.
        assert_eq!(at(root.key("devices").index(5)), Some((2, 3)));
        assert_eq!(at(root.key("targets").index(0).key("name")), Some((7, 11)));
    }
}
