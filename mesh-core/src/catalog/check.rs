//! Health-check definitions attached to registrations, and Go-style durations (`"10s"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::serde_util::{display_opt, empty_as_none, empty_string_as_none, is_false, is_zero};

/// A duration written the way Consul (Go) writes it: `10s`, `1m30s`, `500ms`, `1.5h`.
///
/// Parsing accepts Go's units (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`) and fractions; negative
/// durations are refused. `Display` writes the shortest exact form in one unit (`90s`, `500ms`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub struct DurationError(pub String);

impl GoDuration {
    /// A duration of whole seconds.
    pub fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    /// Whether the duration is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let err = || DurationError(s.to_owned());
        let body = s.strip_prefix('+').unwrap_or(s);
        if body == "0" {
            return Ok(Self::default());
        }
        if body.is_empty() {
            return Err(err());
        }
        let mut rest = body;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .ok_or_else(err)?;
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_ns: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(err()),
            };
            let (int, frac) = num.split_once('.').unwrap_or((num, ""));
            if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
                return Err(err());
            }
            let mut value: u128 = 0;
            for b in int.bytes() {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u128::from(b - b'0')))
                    .ok_or_else(err)?;
            }
            let mut part = value.checked_mul(unit_ns).ok_or_else(err)?;
            // Fraction digits past nanosecond precision cannot change the result; 20 is plenty.
            let mut scale = unit_ns;
            for b in frac.bytes().take(20) {
                scale /= 10;
                part += u128::from(b - b'0') * scale;
            }
            total = total.checked_add(part).ok_or_else(err)?;
            rest = tail;
        }
        let nanos = u64::try_from(total).map_err(|_| err())?;
        Ok(Self(Duration::from_nanos(nanos)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            f.write_str("0s")
        } else if ns.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", ns / 1_000_000_000)
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// A health check in a registration (`Check` or one of `Checks`). mesh keeps the definition;
/// running checks is the agent's business.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDefinition {
    /// The check ID, unset when empty.
    #[serde(
        rename = "CheckID",
        alias = "ID",
        alias = "id",
        alias = "check_id",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// The check name.
    #[serde(
        rename = "Name",
        alias = "name",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// Free-form notes.
    #[serde(
        rename = "Notes",
        alias = "notes",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub notes: Option<String>,
    /// The initial status.
    #[serde(
        rename = "Status",
        alias = "status",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    /// A script check's command and arguments.
    #[serde(
        rename = "ScriptArgs",
        alias = "script_args",
        alias = "args",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub script_args: Vec<String>,
    /// An HTTP check's URL.
    #[serde(
        rename = "HTTP",
        alias = "http",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub http: Option<String>,
    /// An HTTP check's method.
    #[serde(
        rename = "Method",
        alias = "method",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub method: Option<String>,
    /// A TCP check's `host:port`.
    #[serde(
        rename = "TCP",
        alias = "tcp",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp: Option<String>,
    /// A UDP check's `host:port`.
    #[serde(
        rename = "UDP",
        alias = "udp",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub udp: Option<String>,
    /// A gRPC check's endpoint.
    #[serde(
        rename = "GRPC",
        alias = "grpc",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub grpc: Option<String>,
    /// The run interval of script, HTTP, TCP, UDP and gRPC checks.
    #[serde(
        rename = "Interval",
        alias = "interval",
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<GoDuration>,
    /// The time-out of one run.
    #[serde(
        rename = "Timeout",
        alias = "timeout",
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<GoDuration>,
    /// A TTL check's time to live.
    #[serde(
        rename = "TTL",
        alias = "ttl",
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<GoDuration>,
    /// Deregister the service after the check has been critical this long.
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        alias = "deregister_critical_service_after",
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// An alias check's service ID.
    #[serde(
        rename = "AliasService",
        alias = "alias_service",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub alias_service: Option<String>,
    /// An alias check's node.
    #[serde(
        rename = "AliasNode",
        alias = "alias_node",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub alias_node: Option<String>,
    /// Skip TLS verification in HTTP/gRPC checks.
    #[serde(
        rename = "TLSSkipVerify",
        alias = "tls_skip_verify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub tls_skip_verify: bool,
    /// Consecutive passes before the check turns passing.
    #[serde(
        rename = "SuccessBeforePassing",
        alias = "success_before_passing",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub success_before_passing: u32,
    /// Consecutive failures before the check turns critical.
    #[serde(
        rename = "FailuresBeforeCritical",
        alias = "failures_before_critical",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub failures_before_critical: u32,
}

/// A check definition that breaks one of Consul's rules (`CheckType.Validate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Both an interval and a TTL.
    #[error("Interval and TTL cannot both be specified")]
    IntervalAndTtl,
    /// A script, HTTP, TCP, UDP or gRPC check without an interval.
    #[error("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")]
    IntervalRequired,
    /// An alias check with a TTL.
    #[error("TTL must be not be set for Alias checks")]
    AliasWithTtl,
    /// An alias check with an interval.
    #[error("Interval cannot be set for Alias checks")]
    AliasWithInterval,
    /// No check type at all.
    #[error("one of Script, HTTP, TCP, UDP, gRPC, alias or TTL must be specified")]
    NoType,
}

impl CheckDefinition {
    /// Whether the check runs on an interval (script, HTTP, TCP, UDP, gRPC).
    pub fn is_interval_check(&self) -> bool {
        !self.script_args.is_empty()
            || self.http.is_some()
            || self.tcp.is_some()
            || self.udp.is_some()
            || self.grpc.is_some()
    }

    /// Whether the check is an alias check.
    pub fn is_alias(&self) -> bool {
        self.alias_service.is_some() || self.alias_node.is_some()
    }

    /// Checks the definition against Consul's rules, in Consul's order.
    pub fn validate(&self) -> Result<(), CheckError> {
        let interval = self.interval.is_some_and(|d| !d.is_zero());
        let ttl = self.ttl.is_some_and(|d| !d.is_zero());
        if interval && ttl {
            return Err(CheckError::IntervalAndTtl);
        }
        if self.is_interval_check() && !interval {
            return Err(CheckError::IntervalRequired);
        }
        if self.is_alias() {
            if ttl {
                return Err(CheckError::AliasWithTtl);
            }
            if interval {
                return Err(CheckError::AliasWithInterval);
            }
        }
        if !self.is_interval_check() && !self.is_alias() && !ttl {
            return Err(CheckError::NoType);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<GoDuration>().map(|d| d.0);
        assert_eq!(d("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(d("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(d("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(d("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(d("3us").unwrap(), Duration::from_micros(3));
        assert_eq!(d("0").unwrap(), Duration::ZERO);
        assert_eq!(d(".5s").unwrap(), Duration::from_millis(500));
        for bad in [
            "",
            "10",
            "s",
            "-1s",
            "1x",
            "1..5s",
            ".s",
            "99999999999999999999h",
            "1s2",
        ] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
        for s in ["999s", "1500ms", "7us", "3ns", "0s"] {
            assert_eq!(s.parse::<GoDuration>().unwrap().to_string(), s);
        }
        assert_eq!("1m30s".parse::<GoDuration>().unwrap().to_string(), "90s");
    }

    #[test]
    fn check_rules() {
        let tcp = CheckDefinition {
            tcp: Some("foo".into()),
            ..Default::default()
        };
        assert_eq!(tcp.validate(), Err(CheckError::IntervalRequired));
        let ok = CheckDefinition {
            interval: Some(GoDuration::from_secs(10)),
            ..tcp.clone()
        };
        assert_eq!(ok.validate(), Ok(()));
        let both = CheckDefinition {
            ttl: Some(GoDuration::from_secs(1)),
            ..ok
        };
        assert_eq!(both.validate(), Err(CheckError::IntervalAndTtl));
        let alias = CheckDefinition {
            alias_service: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(alias.validate(), Ok(()));
        let alias_ttl = CheckDefinition {
            ttl: Some(GoDuration::from_secs(1)),
            ..alias
        };
        assert_eq!(alias_ttl.validate(), Err(CheckError::AliasWithTtl));
        assert_eq!(
            CheckDefinition::default().validate(),
            Err(CheckError::NoType)
        );
    }

    #[test]
    fn check_serde_both_cases() {
        let c: CheckDefinition =
            serde_json::from_str(r#"{"ScriptArgs":["sleep","1"],"Interval":"999s"}"#).unwrap();
        let s: CheckDefinition =
            serde_json::from_str(r#"{"args":["sleep","1"],"interval":"999s"}"#).unwrap();
        assert_eq!(c, s);
        assert_eq!(c.interval, Some(GoDuration::from_secs(999)));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"ScriptArgs":["sleep","1"],"Interval":"999s"}"#);
        assert!(serde_json::from_str::<CheckDefinition>(r#"{"Bogus":1}"#).is_err());
    }
}
