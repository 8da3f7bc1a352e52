//! Limits on service and config-entry metadata (`Meta`), as Consul enforces them.

use std::collections::BTreeMap;

/// The most key/value pairs a `Meta` map may hold.
pub const MAX_META_PAIRS: usize = 64;
/// The longest `Meta` key, in bytes.
pub const MAX_META_KEY_LEN: usize = 128;
/// The longest `Meta` value, in bytes.
pub const MAX_META_VALUE_LEN: usize = 512;
/// The key prefix reserved for Consul's own metadata (such as `consul-wan-federation`).
pub const RESERVED_META_PREFIX: &str = "consul-";

/// A `Meta` map that breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// More than [`MAX_META_PAIRS`] pairs.
    #[error("Meta cannot contain more than {MAX_META_PAIRS} key/value pairs")]
    TooMany,
    /// An empty key.
    #[error("Meta key cannot be blank")]
    BlankKey,
    /// A key longer than [`MAX_META_KEY_LEN`].
    #[error("Meta key {0:?} is too long (limit: {MAX_META_KEY_LEN} characters)")]
    KeyTooLong(String),
    /// A key with characters outside `a-zA-Z0-9_-`.
    #[error("Meta key {0:?} contains invalid characters")]
    KeyChars(String),
    /// A key with the reserved prefix where only the agent may set it.
    #[error("Meta key {0:?}: key prefix '{RESERVED_META_PREFIX}' is reserved for internal use")]
    Reserved(String),
    /// A value longer than [`MAX_META_VALUE_LEN`].
    #[error("Meta value of key {0:?} is too long (limit: {MAX_META_VALUE_LEN} characters)")]
    ValueTooLong(String),
}

/// Checks a `Meta` map; `allow_reserved` lets `consul-` keys through (gateways use
/// `consul-wan-federation`).
pub fn validate_meta(
    meta: &BTreeMap<String, String>,
    allow_reserved: bool,
) -> Result<(), MetaError> {
    if meta.len() > MAX_META_PAIRS {
        return Err(MetaError::TooMany);
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(MetaError::BlankKey);
        }
        if k.len() > MAX_META_KEY_LEN {
            return Err(MetaError::KeyTooLong(k.clone()));
        }
        if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(MetaError::KeyChars(k.clone()));
        }
        if !allow_reserved && k.starts_with(RESERVED_META_PREFIX) {
            return Err(MetaError::Reserved(k.clone()));
        }
        if v.len() > MAX_META_VALUE_LEN {
            return Err(MetaError::ValueTooLong(k.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits() {
        assert!(validate_meta(&m(&[("foo", "bar")]), false).is_ok());
        assert_eq!(
            validate_meta(&m(&[("", "x")]), false),
            Err(MetaError::BlankKey)
        );
        assert!(matches!(
            validate_meta(&m(&[("a b", "x")]), false),
            Err(MetaError::KeyChars(_))
        ));
        assert!(matches!(
            validate_meta(&m(&[("consul-x", "1")]), false),
            Err(MetaError::Reserved(_))
        ));
        assert!(validate_meta(&m(&[("consul-wan-federation", "1")]), true).is_ok());
        let long_key = "k".repeat(MAX_META_KEY_LEN + 1);
        assert!(matches!(
            validate_meta(&m(&[(&long_key, "x")]), false),
            Err(MetaError::KeyTooLong(_))
        ));
        let long_val = "v".repeat(MAX_META_VALUE_LEN + 1);
        assert!(matches!(
            validate_meta(&m(&[("k", &long_val)]), false),
            Err(MetaError::ValueTooLong(_))
        ));
        let many: BTreeMap<String, String> = (0..=MAX_META_PAIRS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(validate_meta(&many, false), Err(MetaError::TooMany));
    }
}
