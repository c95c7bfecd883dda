//! Configuration errors: what is wrong, where (file, line, column) and in which field (path).

use std::fmt;
use std::io;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key, as written in the YAML (`MaxBurstLength`, `luns`).
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path to a value in the configuration, displayed like `targets[0].luns[1].device`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path made of its first `len` segments.
    pub(crate) fn truncated(&self, len: usize) -> FieldPath {
        FieldPath(self.0.iter().take(len).cloned().collect())
    }

    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> FieldPath {
        use serde_path_to_error::Segment as S;
        FieldPath(
            path.iter()
                .map(|s| match s {
                    S::Seq { index } => Segment::Index(*index),
                    S::Map { key } => Segment::Key(key.clone()),
                    S::Enum { variant } => Segment::Key(variant.clone()),
                    S::Unknown => Segment::Key("?".to_owned()),
                })
                .collect(),
        )
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A located configuration error. Displays as `origin:line:column: path: message`, leaving out what is unknown
/// (`origin: path: message` for a configuration built in code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or the name given to [`crate::Config::from_yaml_str`]).
    pub origin: String,
    /// 1-based line and column of the offending value (or of its nearest enclosing node when the value is
    /// missing), when known.
    pub location: Option<(usize, usize)>,
    /// The field the error is about; root for document-level errors.
    pub path: FieldPath,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded, validated or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read the configuration: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    /// The YAML is malformed, or a value is invalid.
    #[error("{0}")]
    Invalid(Diagnostic),
    /// The configuration could not be rendered as YAML.
    #[error("cannot write the configuration as YAML: {0}")]
    Serialize(String),
}

impl ConfigError {
    /// The diagnostic of an [`ConfigError::Invalid`] error.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            _ => None,
        }
    }
}
