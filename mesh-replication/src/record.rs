//! Records, their values and content hashes, and transaction operations.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use mesh_core::Index;
use ring::digest;

use crate::table::TableName;

/// The longest record id accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// The value of a record: opaque bytes or a JSON document. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Opaque bytes, replicated untouched.
    Bytes(Bytes),
    /// A JSON document; its hash does not depend on the order of object keys.
    Json(Arc<serde_json::Value>),
}

impl Value {
    /// A JSON value.
    pub fn json(v: serde_json::Value) -> Self {
        Self::Json(Arc::new(v))
    }

    /// A bytes value.
    pub fn bytes(b: impl Into<Bytes>) -> Self {
        Self::Bytes(b.into())
    }

    /// The JSON document, if this is one.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Json(v) => Some(v),
            Self::Bytes(_) => None,
        }
    }

    /// The bytes, if this is a bytes value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            Self::Json(_) => None,
        }
    }

    /// The content hash of this value.
    pub fn content_hash(&self) -> ContentHash {
        let mut ctx = digest::Context::new(&digest::SHA256);
        match self {
            Self::Bytes(b) => {
                ctx.update(b"b");
                ctx.update(b);
            }
            Self::Json(v) => {
                ctx.update(b"j");
                hash_json(&mut ctx, v);
            }
        }
        let d = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        ContentHash(out)
    }

    /// A rough size in bytes, used to cut replication batches.
    pub fn estimated_size(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Json(v) => estimate_json(v),
        }
    }
}

/// Values may hold secrets (token secret IDs, keys): `Debug` shows their kind, size and hash
/// prefix, never their content.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes, {:?})", b.len(), self.content_hash()),
            Self::Json(_) => write!(
                f,
                "Json(~{} bytes, {:?})",
                self.estimated_size(),
                self.content_hash()
            ),
        }
    }
}

/// SHA-256 over a record's value (canonical form for JSON: object keys sorted).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// One record of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's id, unique in its table.
    pub id: String,
    /// Its value.
    pub value: Value,
    /// The index of the write that created it.
    pub create_index: Index,
    /// The index of the last write that changed it.
    pub modify_index: Index,
    /// The hash of `value`.
    pub hash: ContentHash,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Create or replace a record.
    Upsert {
        /// The table.
        table: TableName,
        /// The record id.
        id: String,
        /// The new value.
        value: Value,
        /// Check-and-set: `Some(Index::ZERO)` = only if absent; `Some(i)` = only if the record
        /// exists with modify index `i`; `None` = unconditional.
        cas: Option<Index>,
    },
    /// Remove a record (removing an absent record without `cas` is not an error).
    Delete {
        /// The table.
        table: TableName,
        /// The record id.
        id: String,
        /// Check-and-set: `Some(i)` = only if the record exists with modify index `i`.
        cas: Option<Index>,
    },
}

impl TxnOp {
    /// The table this operation writes.
    pub fn table(&self) -> &TableName {
        match self {
            Self::Upsert { table, .. } | Self::Delete { table, .. } => table,
        }
    }

    /// The record id this operation writes.
    pub fn id(&self) -> &str {
        match self {
            Self::Upsert { id, .. } | Self::Delete { id, .. } => id,
        }
    }
}

/// Checks a record id: 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub fn validate_id(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong { len: id.len() });
    }
    if id.chars().any(char::is_control) {
        return Err(InvalidId::ControlChar);
    }
    Ok(())
}

/// Why a record id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The id is empty.
    #[error("record id is empty")]
    Empty,
    /// The id is too long.
    #[error("record id is {len} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong {
        /// The length seen.
        len: usize,
    },
    /// The id holds a control character.
    #[error("record id holds a control character")]
    ControlChar,
}

fn hash_json(ctx: &mut digest::Context, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => ctx.update(b"n"),
        J::Bool(b) => ctx.update(if *b { b"t" } else { b"f" }),
        J::Number(n) => {
            let s = n.to_string();
            ctx.update(b"#");
            ctx.update(&(s.len() as u64).to_be_bytes());
            ctx.update(s.as_bytes());
        }
        J::String(s) => {
            ctx.update(b"s");
            ctx.update(&(s.len() as u64).to_be_bytes());
            ctx.update(s.as_bytes());
        }
        J::Array(a) => {
            ctx.update(b"[");
            ctx.update(&(a.len() as u64).to_be_bytes());
            for x in a {
                hash_json(ctx, x);
            }
        }
        J::Object(m) => {
            ctx.update(b"{");
            ctx.update(&(m.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                ctx.update(&(k.len() as u64).to_be_bytes());
                ctx.update(k.as_bytes());
                if let Some(x) = m.get(k) {
                    hash_json(ctx, x);
                }
            }
        }
    }
}

fn estimate_json(v: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    match v {
        J::Null | J::Bool(_) => 5,
        J::Number(_) => 12,
        J::String(s) => s.len() + 2,
        J::Array(a) => 2 + a.iter().map(estimate_json).sum::<usize>(),
        J::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 4 + estimate_json(x))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_hash_ignores_key_order() -> Result<(), serde_json::Error> {
        let a = Value::json(serde_json::from_str(r#"{"a":1,"b":[true,null,"x"]}"#)?);
        let b = Value::json(serde_json::from_str(r#"{"b":[true,null,"x"],"a":1}"#)?);
        let c = Value::json(serde_json::from_str(r#"{"b":[true,null,"x"],"a":2}"#)?);
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        Ok(())
    }

    #[test]
    fn bytes_and_json_hash_apart() {
        let a = Value::bytes(&b"\"x\""[..]);
        let b = Value::json(serde_json::Value::String("x".into()));
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn debug_hides_content() {
        let v = Value::json(serde_json::json!({"SecretID": "00000000-dead-beef"}));
        assert!(!format!("{v:?}").contains("dead-beef"));
        let b = Value::bytes(&b"hunter2"[..]);
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn ids() {
        assert!(validate_id("a").is_ok());
        assert_eq!(validate_id(""), Err(InvalidId::Empty));
        assert_eq!(validate_id("a\nb"), Err(InvalidId::ControlChar));
        assert!(matches!(
            validate_id(&"x".repeat(513)),
            Err(InvalidId::TooLong { len: 513 })
        ));
    }
}
