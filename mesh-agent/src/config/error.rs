//! Why a configuration cannot be used, and what was ignored while reading it.

use std::fmt;
use std::path::PathBuf;

/// A place in a configuration file: 1-based line, and 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters (not bytes).
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a configuration cannot be used. Every variant that comes from one file names it; the
/// message never holds the value of a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_FILE_SIZE`](super::MAX_FILE_SIZE).
    #[error(
        "{}: {size} bytes is more than a configuration file may hold ({max} bytes)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least; reading stops past the limit).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A file is not well-formed HCL or JSON (or not UTF-8).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Blocks, objects or lists nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("{}:{line}:{column}: nested deeper than {max} levels", path.display())]
    TooDeep {
        /// The file.
        path: PathBuf,
        /// 1-based line of the opening that goes too deep.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The limit.
        max: usize,
    },
    /// A key that is not a Consul agent setting (often a misspelling). Known Consul settings
    /// that mesh does not use are not errors: they are ignored with a [`ConfigWarning`].
    #[error(
        "{}: unknown configuration key {key:?}{}",
        at(path, position),
        did_you_mean.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default()
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The full key, such as `acl.tokens.replicaton`.
        key: String,
        /// Where the key is written (HCL and JSON files both report it).
        position: Option<Position>,
        /// A known key at the same level that is spelled nearly the same.
        did_you_mean: Option<String>,
    },
    /// A setting whose value has the wrong type or is refused.
    #[error("{}: {key}: {message}", at(path, position))]
    InvalidValue {
        /// The file (for a rule across settings: the last file that set `key`).
        path: PathBuf,
        /// The full key, such as `ports.http`.
        key: String,
        /// What is wrong. Never holds the value of a token.
        message: String,
        /// Where the value is written, when the check is made on one file.
        position: Option<Position>,
    },
    /// A service definition (`service` or `services`) that mesh would refuse to register.
    #[error("{}: {key}: invalid service definition: {source}", at(path, position))]
    Service {
        /// The file.
        path: PathBuf,
        /// `service` or `services[i]`.
        key: String,
        /// Where the definition starts.
        position: Option<Position>,
        /// Why it is refused.
        source: mesh::core::RegistrationError,
    },
    /// `connect.ca_config` breaks one of Consul's CA rules.
    #[error("{}: connect.ca_config: {source}", path.display())]
    Ca {
        /// The last file that set a `connect.ca_config` key.
        path: PathBuf,
        /// The rule broken (Consul's message).
        source: mesh::ca::ConfigError,
    },
    /// A setting that must be present, given the others, is not.
    #[error("{key} is required: {reason}")]
    Missing {
        /// The full key, such as `tls.defaults.key_file`.
        key: String,
        /// Which other setting requires it.
        reason: String,
    },
}

/// `file:line:column`, or `file` when the position is unknown.
fn at(path: &std::path::Path, position: &Option<Position>) -> String {
    match position {
        Some(p) => format!("{}:{p}", path.display()),
        None => path.display().to_string(),
    }
}

/// A setting that was read but has no effect in mesh (a Consul setting mesh does not use, a
/// deprecated spelling, a skipped file). [`AgentConfig::load`](super::AgentConfig::load) logs
/// each one at `warn` level and keeps them in
/// [`AgentConfig::warnings`](super::AgentConfig::warnings). Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file it was found in.
    pub file: PathBuf,
    /// The full key, when the warning is about one.
    pub key: Option<String>,
    /// Where the key is written.
    pub position: Option<Position>,
    /// What happens to it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&at(&self.file, &self.position))?;
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The position of byte `offset` in `text`. One scan of the text: call it only for an error.
pub(super) fn position_at(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

/// The positions of many offsets in one scan of `text` (for warnings, which may be many).
pub(super) fn positions_at(text: &str, offsets: &[usize]) -> Vec<Position> {
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_by_key(|&i| offsets[i]);
    let mut out = vec![Position { line: 1, column: 1 }; offsets.len()];
    let (mut line, mut column) = (1usize, 1usize);
    let mut chars = text.char_indices().peekable();
    for i in order {
        let target = offsets[i].min(text.len());
        while let Some(&(idx, c)) = chars.peek() {
            // A character counts once the target is at or past its end (an offset inside a
            // character is its start, as in `position_at`).
            if idx + c.len_utf8() > target {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
            chars.next();
        }
        out[i] = Position { line, column };
    }
    out
}
