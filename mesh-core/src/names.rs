//! Validated names: datacenters, services, namespaces, partitions, nodes and subsets.
//!
//! Every name is one DNS label as mesh writes it into SNI names and SPIFFE IDs: 1 to
//! [`MAX_NAME_LEN`] characters from `a-z`, `0-9`, `-` and `_`, starting with a letter or digit.
//! Consul accepts upper-case service names and lower-cases them only in DNS; mesh refuses them
//! up front so that a name, its SNI and its SPIFFE ID never disagree on case.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name accepted: one DNS label (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 63;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    /// What kind of name was being parsed (`datacenter`, `service name`, ...).
    pub kind: &'static str,
    /// The rejected input, as given.
    pub value: String,
    /// Which rule it broke.
    pub reason: NameErrorReason,
}

/// The rule a rejected name broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameErrorReason {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// The name starts with `-` or `_`.
    #[error("must start with a lower-case letter or a digit")]
    BadStart,
    /// The name holds a character outside `a-z0-9-_`.
    #[error("may only hold a-z, 0-9, '-' and '_'")]
    BadChar,
}

/// Checks one label against the name rules; `kind` names it in the error.
pub(crate) fn check_label(kind: &'static str, s: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError {
            kind,
            value: s.to_owned(),
            reason,
        })
    };
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return fail(NameErrorReason::Empty);
    };
    if bytes.len() > MAX_NAME_LEN {
        return fail(NameErrorReason::TooLong);
    }
    if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
        return fail(NameErrorReason::BadStart);
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
    {
        return fail(NameErrorReason::BadChar);
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                check_label($kind, &s)?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A datacenter name, such as `primary` or `dc1`.
    Datacenter,
    "datacenter"
);
name_type!(
    /// A service name, such as `web` or `socat`.
    ServiceName,
    "service name"
);
name_type!(
    /// A namespace. Only `default` exists in mesh today, as in Consul CE.
    Namespace,
    "namespace"
);
name_type!(
    /// An admin partition. Only `default` exists in mesh today, as in Consul CE.
    Partition,
    "partition"
);
name_type!(
    /// A node (agent) name.
    NodeName,
    "node name"
);
name_type!(
    /// A service subset name, such as `v2` or `canary`.
    Subset,
    "subset"
);

/// The name of the default namespace and partition.
pub const DEFAULT: &str = "default";

impl Namespace {
    /// The `default` namespace.
    pub fn default_ns() -> Self {
        Self(DEFAULT.to_owned())
    }

    /// Whether this is the `default` namespace.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::default_ns()
    }
}

impl Partition {
    /// The `default` partition.
    pub fn default_partition() -> Self {
        Self(DEFAULT.to_owned())
    }

    /// Whether this is the `default` partition.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT
    }
}

impl Default for Partition {
    fn default() -> Self {
        Self::default_partition()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for ok in ["web", "dc1", "mesh-gateway", "upstream_socket", "0abc", "a"] {
            assert!(ServiceName::new(ok).is_ok(), "{ok}");
        }
        let max = "a".repeat(MAX_NAME_LEN);
        assert!(Datacenter::new(max).is_ok());
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        let cases = [
            ("", NameErrorReason::Empty),
            ("-web", NameErrorReason::BadStart),
            ("_web", NameErrorReason::BadStart),
            ("Web", NameErrorReason::BadStart),
            ("we.b", NameErrorReason::BadChar),
            ("web/1", NameErrorReason::BadChar),
            ("wEb", NameErrorReason::BadChar),
            ("*", NameErrorReason::BadStart),
        ];
        for (input, reason) in cases {
            let err = ServiceName::new(input).unwrap_err();
            assert_eq!(err.reason, reason, "{input:?}");
            assert_eq!(err.value, input);
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            Datacenter::new(long).unwrap_err().reason,
            NameErrorReason::TooLong
        );
    }

    #[test]
    fn error_names_the_kind() {
        let err = Datacenter::new("DC1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid datacenter \"DC1\": must start with a lower-case letter or a digit"
        );
    }

    #[test]
    fn serde_validates() {
        let ok: ServiceName = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(ok.as_str(), "web");
        assert!(serde_json::from_str::<ServiceName>("\"no way\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"web\"");
    }
}
