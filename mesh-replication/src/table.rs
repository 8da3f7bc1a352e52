//! Table names and the registry that says which tables leave their datacenter.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest table name accepted, in bytes.
pub const MAX_TABLE_NAME_LEN: usize = 128;

/// The name of a table: 1 to [`MAX_TABLE_NAME_LEN`] bytes of lower-case ASCII letters, digits,
/// `-`, `_` and `.`, starting with a letter or a digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName(Arc<str>);

/// Why a string is not a [`TableName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableNameError {
    /// The name is empty.
    #[error("table name is empty")]
    Empty,
    /// The name is longer than [`MAX_TABLE_NAME_LEN`].
    #[error("table name is {len} bytes long, the limit is {MAX_TABLE_NAME_LEN}")]
    TooLong {
        /// The length seen.
        len: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("table name holds {found:?} at byte {at}; allowed are a-z, 0-9, '-', '_', '.'")]
    InvalidChar {
        /// The character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts with something other than a letter or digit.
    #[error("table name must start with a letter or a digit")]
    BadStart,
}

impl TableName {
    /// Parses a table name.
    pub fn new(s: &str) -> Result<Self, TableNameError> {
        if s.is_empty() {
            return Err(TableNameError::Empty);
        }
        if s.len() > MAX_TABLE_NAME_LEN {
            return Err(TableNameError::TooLong { len: s.len() });
        }
        for (at, c) in s.char_indices() {
            let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
            if !ok {
                return Err(TableNameError::InvalidChar { found: c, at });
            }
        }
        let first = s.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(TableNameError::BadStart);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TableName {
    type Err = TableNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({:?})", &*self.0)
    }
}

/// Whether a table is replicated from the primary to every secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The primary owns the table; secondaries hold a replica and forward writes.
    Global,
    /// The table belongs to one datacenter and never leaves it (catalog, local tokens).
    Local,
}

/// The tables a datacenter knows and their [`Scope`]. Cheap to clone (shared).
///
/// A table absent from the registry is treated as [`Scope::Local`]: nothing replicates or is
/// forwarded unless it was registered as global.
#[derive(Debug, Clone, Default)]
pub struct TableRegistry {
    tables: Arc<BTreeMap<TableName, Scope>>,
}

/// A table registered twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {0} is already registered")]
pub struct DuplicateTable(pub TableName);

impl TableRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a table; refuses a name registered before.
    pub fn register(&mut self, table: TableName, scope: Scope) -> Result<(), DuplicateTable> {
        let map = Arc::make_mut(&mut self.tables);
        if map.contains_key(&table) {
            return Err(DuplicateTable(table));
        }
        map.insert(table, scope);
        Ok(())
    }

    /// Builder form of [`register`](Self::register).
    pub fn with(mut self, table: TableName, scope: Scope) -> Result<Self, DuplicateTable> {
        self.register(table, scope)?;
        Ok(self)
    }

    /// The scope of a registered table, `None` when unknown.
    pub fn scope(&self, table: &TableName) -> Option<Scope> {
        self.tables.get(table).copied()
    }

    /// Whether the table is registered as global.
    pub fn is_global(&self, table: &TableName) -> bool {
        self.scope(table) == Some(Scope::Global)
    }

    /// The global tables, in name order.
    pub fn global_tables(&self) -> impl Iterator<Item = &TableName> {
        self.tables
            .iter()
            .filter(|(_, s)| **s == Scope::Global)
            .map(|(t, _)| t)
    }

    /// Every registered table with its scope, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&TableName, Scope)> {
        self.tables.iter().map(|(t, s)| (t, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TableName::new("acl-policies").is_ok());
        assert!(TableName::new("config.entries_2").is_ok());
        assert_eq!(TableName::new(""), Err(TableNameError::Empty));
        assert_eq!(TableName::new("-x"), Err(TableNameError::BadStart));
        assert!(matches!(
            TableName::new("Acl"),
            Err(TableNameError::InvalidChar { found: 'A', at: 0 })
        ));
        assert!(matches!(
            TableName::new(&"a".repeat(129)),
            Err(TableNameError::TooLong { len: 129 })
        ));
    }

    #[test]
    fn registry_scopes() -> Result<(), Box<dyn std::error::Error>> {
        let g = TableName::new("policies")?;
        let l = TableName::new("catalog")?;
        let reg = TableRegistry::new()
            .with(g.clone(), Scope::Global)?
            .with(l.clone(), Scope::Local)?;
        assert!(reg.is_global(&g));
        assert!(!reg.is_global(&l));
        assert!(!reg.is_global(&TableName::new("unknown")?));
        assert_eq!(reg.global_tables().collect::<Vec<_>>(), vec![&g]);
        assert!(reg.clone().with(g, Scope::Local).is_err());
        Ok(())
    }
}
