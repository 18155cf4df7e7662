//! The errors of loading a config: [`Diagnostic`] (a located problem in
//! the text) and [`ConfigError`] (that, or a file that cannot be read).

use std::fmt;
use std::path::PathBuf;

/// A problem in a config's text, located precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or [`super::RELOAD_REQUEST_FILE`]).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path such as `channels.A.propagatetochannels` or
    /// `channels.A.propagatetochannels[1]` (0-based index); keys that are not
    /// plain words are quoted (`channels."a.b"`). `None` for syntax errors.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The nearest valid key, for an unknown key.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; did you mean \"{hint}\"?")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read config file {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`,
        /// which would print it twice in a chain).
        cause: std::io::Error,
    },
    /// The text is not valid JSONC or does not follow the schema. Only the
    /// first problem is reported: a syntax error if there is one, else the
    /// first schema error in document order.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// The diagnostic, when the error is about the config's content.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            ConfigError::Io { .. } => None,
        }
    }
}
