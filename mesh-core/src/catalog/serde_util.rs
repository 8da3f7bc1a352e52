//! Serde helpers shared by the catalog and config-entry models.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer, de};

/// Deserialises an optional string where `""` and `null` both mean "unset" (Consul's convention),
/// parsing anything else with `T::from_str`.
pub(crate) fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(de::Error::custom),
    }
}

/// Deserialises an optional string where `""` and `null` mean "unset", without further parsing.
pub(crate) fn empty_string_as_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// Serialises an optional value by its `Display` form (only called when it is `Some`).
pub(crate) fn display_opt<S, T>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Display,
{
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// `true` when a number is zero: used to skip unset numeric fields.
pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `true` when the value is `false`.
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}
