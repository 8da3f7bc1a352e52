//! CA configuration, its defaults and Consul's validation rules (see
//! docs/consul-compatibility.md, 'Connect CA configuration').

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::KeySpec;

/// One hour, the shortest leaf TTL Consul accepts.
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(3600);
/// 365 days, the longest leaf TTL Consul accepts.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often a leader checks whether its intermediate needs renewing (Consul's
/// `IntermediateCertRenewInterval`).
pub const INTERMEDIATE_RENEW_INTERVAL: Duration = Duration::from_secs(3600);
/// Default leaf TTL, 72 hours.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
/// Default intermediate TTL, 8760 hours (one year).
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(8760 * 3600);
/// Default root TTL, 87600 hours (ten years).
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(87600 * 3600);
/// Default `CSRMaxPerSecond`.
pub const DEFAULT_CSR_MAX_PER_SECOND: f64 = 50.0;

/// Why a CA configuration is refused. Messages are Consul's, word for word.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The root TTL is shorter than the intermediate TTL.
    #[error(
        "root cert TTL is set and is not greater than intermediate cert ttl. root cert ttl: {}, intermediate cert ttl: {}",
        go_duration(.root),
        go_duration(.intermediate)
    )]
    RootTtlTooShort {
        /// The root TTL.
        root: Duration,
        /// The intermediate TTL.
        intermediate: Duration,
    },
    /// The leaf TTL is below one hour.
    #[error("leaf cert TTL must be greater or equal than 1h0m0s")]
    LeafTtlTooShort,
    /// The leaf TTL is above one year.
    #[error("leaf cert TTL must be less than 8760h0m0s")]
    LeafTtlTooLong,
    /// The intermediate TTL is below three renew intervals.
    #[error("Intermediate Cert TTL must be greater or equal than 3h")]
    IntermediateTtlTooShort,
    /// The intermediate TTL is below three leaf TTLs.
    #[error("Intermediate Cert TTL must be greater or equal than 3 * LeafCertTTL (>={}).", go_duration(.min))]
    IntermediateTtlBelowLeaves {
        /// Three times the leaf TTL.
        min: Duration,
    },
    /// An EC key size other than 224, 256, 384, 521.
    #[error("EC key length must be one of (224, 256, 384, 521) bits")]
    EcKeyBits,
    /// An RSA key size other than 2048 or 4096.
    #[error("RSA key length must be 2048 or 4096 bits")]
    RsaKeyBits,
    /// A key type other than `ec` or `rsa`.
    #[error("private key type must be either 'ec' or 'rsa'")]
    KeyType,
    /// Valid for Consul but not available with the ring crypto backend (P-224, P-521).
    #[error("EC P-{0} keys are not supported by this CA (ring offers P-256 and P-384)")]
    UnsupportedCurve(u32),
    /// A duration string that does not parse.
    #[error("invalid duration {0:?}")]
    Duration(String),
    /// `CSRMaxPerSecond` is negative or not a number.
    #[error("CSRMaxPerSecond must be a non-negative number")]
    CsrRate,
}

/// The CA configuration (Consul's `CommonCAProviderConfig` plus the Consul provider's own keys).
///
/// Deserializes from Consul's JSON (`LeafCertTTL`, `IntermediateCertTTL`, `RootCertTTL`,
/// `PrivateKeyType`, `PrivateKeyBits`, `CSRMaxPerSecond`, `CSRMaxConcurrent`, `SkipValidate`,
/// `DisableCrossSigning`, durations as Go strings such as `"72h"`) and from the agent's
/// snake_case keys (`leaf_cert_ttl`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaConfig {
    /// Lifetime of leaf certificates (default 72h).
    #[serde(
        rename = "LeafCertTTL",
        alias = "leaf_cert_ttl",
        with = "go_duration_serde"
    )]
    pub leaf_cert_ttl: Duration,
    /// Lifetime of intermediate certificates (default 8760h).
    #[serde(
        rename = "IntermediateCertTTL",
        alias = "intermediate_cert_ttl",
        with = "go_duration_serde"
    )]
    pub intermediate_cert_ttl: Duration,
    /// Lifetime of root certificates (default 87600h).
    #[serde(
        rename = "RootCertTTL",
        alias = "root_cert_ttl",
        with = "go_duration_serde"
    )]
    pub root_cert_ttl: Duration,
    /// `ec` or `rsa`.
    #[serde(rename = "PrivateKeyType", alias = "private_key_type")]
    pub private_key_type: String,
    /// Key size in bits (EC: the curve size).
    #[serde(rename = "PrivateKeyBits", alias = "private_key_bits")]
    pub private_key_bits: u32,
    /// Token-bucket rate for leaf signing; 0 disables it.
    #[serde(rename = "CSRMaxPerSecond", alias = "csr_max_per_second")]
    pub csr_max_per_second: f64,
    /// Concurrent leaf signings, used only when `csr_max_per_second` is 0; 0 = unlimited.
    #[serde(rename = "CSRMaxConcurrent", alias = "csr_max_concurrent")]
    pub csr_max_concurrent: u32,
    /// Skip every check of [`CaConfig::validate`] (Consul's `SkipValidate`).
    #[serde(rename = "SkipValidate", alias = "skip_validate")]
    pub skip_validate: bool,
    /// Refuse to cross-sign a new root (Consul provider's `DisableCrossSigning`).
    #[serde(rename = "DisableCrossSigning", alias = "disable_cross_signing")]
    pub disable_cross_signing: bool,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            leaf_cert_ttl: DEFAULT_LEAF_TTL,
            intermediate_cert_ttl: DEFAULT_INTERMEDIATE_TTL,
            root_cert_ttl: DEFAULT_ROOT_TTL,
            private_key_type: "ec".to_owned(),
            private_key_bits: 256,
            csr_max_per_second: DEFAULT_CSR_MAX_PER_SECOND,
            csr_max_concurrent: 0,
            skip_validate: false,
            disable_cross_signing: false,
        }
    }
}

impl CaConfig {
    /// Consul's checks, in Consul's order; the first failure is returned. `skip_validate`
    /// skips them all. Also refused: a negative or NaN `csr_max_per_second`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.csr_max_per_second.is_finite() || self.csr_max_per_second < 0.0 {
            return Err(ConfigError::CsrRate);
        }
        if self.skip_validate {
            return Ok(());
        }
        if !self.root_cert_ttl.is_zero() && self.root_cert_ttl < self.intermediate_cert_ttl {
            return Err(ConfigError::RootTtlTooShort {
                root: self.root_cert_ttl,
                intermediate: self.intermediate_cert_ttl,
            });
        }
        if self.leaf_cert_ttl < MIN_LEAF_TTL {
            return Err(ConfigError::LeafTtlTooShort);
        }
        if self.leaf_cert_ttl > MAX_LEAF_TTL {
            return Err(ConfigError::LeafTtlTooLong);
        }
        if self.intermediate_cert_ttl < 3 * INTERMEDIATE_RENEW_INTERVAL {
            return Err(ConfigError::IntermediateTtlTooShort);
        }
        if self.intermediate_cert_ttl < 3 * self.leaf_cert_ttl {
            return Err(ConfigError::IntermediateTtlBelowLeaves {
                min: 3 * self.leaf_cert_ttl,
            });
        }
        match self.private_key_type.as_str() {
            "ec" if !matches!(self.private_key_bits, 224 | 256 | 384 | 521) => {
                Err(ConfigError::EcKeyBits)
            }
            "rsa" if !matches!(self.private_key_bits, 2048 | 4096) => Err(ConfigError::RsaKeyBits),
            "ec" | "rsa" => Ok(()),
            _ => Err(ConfigError::KeyType),
        }
    }

    /// The key kind CA keys are made of. Refuses what [`CaConfig::validate`] refuses (unless
    /// skipped) and the curves ring does not implement (P-224, P-521).
    pub fn key_spec(&self) -> Result<KeySpec, ConfigError> {
        match (self.private_key_type.as_str(), self.private_key_bits) {
            ("ec", 256) => Ok(KeySpec::EcP256),
            ("ec", 384) => Ok(KeySpec::EcP384),
            ("ec", b @ (224 | 521)) => Err(ConfigError::UnsupportedCurve(b)),
            ("ec", _) => Err(ConfigError::EcKeyBits),
            ("rsa", 2048) => Ok(KeySpec::Rsa2048),
            ("rsa", 4096) => Ok(KeySpec::Rsa4096),
            ("rsa", _) => Err(ConfigError::RsaKeyBits),
            _ => Err(ConfigError::KeyType),
        }
    }

    /// Sets the key kind (type and bits) from a [`KeySpec`].
    pub fn with_key_spec(mut self, spec: KeySpec) -> Self {
        self.private_key_type = spec.type_name().to_owned();
        self.private_key_bits = spec.bits();
        self
    }

    /// The root TTL in effect: `root_cert_ttl`, or the default when it is zero.
    pub fn effective_root_ttl(&self) -> Duration {
        if self.root_cert_ttl.is_zero() {
            DEFAULT_ROOT_TTL
        } else {
            self.root_cert_ttl
        }
    }
}

/// Formats a duration as Go's `time.Duration.String()` does (`72h0m0s`, `1m30s`, `500ms`, `0s`).
pub fn go_duration(d: &Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        push_fraction(&mut out, nanos, div);
        out.push_str(unit);
        return out;
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let sub_minute = nanos % 60_000_000_000;
    push_fraction(&mut out, sub_minute, 1_000_000_000);
    out.push('s');
    out
}

/// Writes `v / div` with Go's shortest fractional form.
fn push_fraction(out: &mut String, v: u128, div: u128) {
    let _ = write!(out, "{}", v / div);
    let frac = v % div;
    if frac != 0 {
        let width = div.ilog10() as usize;
        let digits = format!("{frac:0width$}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
}

/// Parses a Go duration string (`72h`, `1h30m`, `8760h0m0s`, `1.5h`, `500ms`). A bare `0` is
/// accepted, as in Go; negative durations are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError::Duration(s.to_owned());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = tail;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

mod go_duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::go_duration(d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(u64),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // Go's mapstructure hook is weakly typed: a number is nanoseconds.
        match Raw::deserialize(d)? {
            Raw::Text(t) => super::parse_go_duration(&t).map_err(de::Error::custom),
            Raw::Nanos(n) => Ok(Duration::from_nanos(n)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    fn h(n: u64) -> Duration {
        Duration::from_secs(n * 3600)
    }

    #[test]
    fn defaults_validate() {
        let c = CaConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.key_spec(), Ok(KeySpec::EcP256));
        assert_eq!(c.leaf_cert_ttl, h(72));
        assert_eq!(c.intermediate_cert_ttl, h(8760));
        assert_eq!(c.root_cert_ttl, h(87600));
    }

    #[test]
    fn consul_messages_exact() {
        let base = CaConfig::default();
        let cases: Vec<(CaConfig, &str)> = vec![
            (
                CaConfig {
                    root_cert_ttl: h(100),
                    ..base.clone()
                },
                "root cert TTL is set and is not greater than intermediate cert ttl. root cert ttl: 100h0m0s, intermediate cert ttl: 8760h0m0s",
            ),
            (
                CaConfig {
                    leaf_cert_ttl: Duration::from_secs(1800),
                    ..base.clone()
                },
                "leaf cert TTL must be greater or equal than 1h0m0s",
            ),
            (
                CaConfig {
                    leaf_cert_ttl: h(8761),
                    ..base.clone()
                },
                "leaf cert TTL must be less than 8760h0m0s",
            ),
            (
                CaConfig {
                    intermediate_cert_ttl: h(2),
                    leaf_cert_ttl: h(1),
                    ..base.clone()
                },
                "Intermediate Cert TTL must be greater or equal than 3h",
            ),
            (
                CaConfig {
                    intermediate_cert_ttl: h(100),
                    ..base.clone()
                },
                "Intermediate Cert TTL must be greater or equal than 3 * LeafCertTTL (>=216h0m0s).",
            ),
            (
                CaConfig {
                    private_key_bits: 512,
                    ..base.clone()
                },
                "EC key length must be one of (224, 256, 384, 521) bits",
            ),
            (
                CaConfig {
                    private_key_type: "rsa".into(),
                    private_key_bits: 1024,
                    ..base.clone()
                },
                "RSA key length must be 2048 or 4096 bits",
            ),
            (
                CaConfig {
                    private_key_type: "dsa".into(),
                    ..base.clone()
                },
                "private key type must be either 'ec' or 'rsa'",
            ),
        ];
        for (cfg, msg) in cases {
            assert_eq!(
                cfg.validate().map_err(|e| e.to_string()),
                Err(msg.to_owned())
            );
        }
    }

    #[test]
    fn skip_validate_and_unsupported_curves() {
        let c = CaConfig {
            leaf_cert_ttl: Duration::from_secs(60),
            skip_validate: true,
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let c = CaConfig {
            private_key_bits: 521,
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.key_spec(), Err(ConfigError::UnsupportedCurve(521)));
        let c = CaConfig {
            csr_max_per_second: -1.0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::CsrRate));
        let c = CaConfig::default().with_key_spec(KeySpec::Rsa4096);
        assert_eq!(c.key_spec(), Ok(KeySpec::Rsa4096));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn go_duration_format() {
        assert_eq!(go_duration(&h(72)), "72h0m0s");
        assert_eq!(go_duration(&Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(&Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(&Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(&Duration::ZERO), "0s");
        assert_eq!(go_duration(&Duration::from_secs(5)), "5s");
    }

    #[test]
    fn go_duration_parse() {
        assert_eq!(parse_go_duration("72h"), Ok(h(72)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("8760h0m0s"), Ok(h(8760)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "72", "-1h", "1x", "1.2.3h", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trip_and_aliases() {
        let c: CaConfig = serde_json::from_str(
            r#"{"LeafCertTTL":"1h","IntermediateCertTTL":"24h","RootCertTTL":"48h","CSRMaxPerSecond":0}"#,
        )
        .unwrap();
        assert_eq!(c.leaf_cert_ttl, h(1));
        assert_eq!(c.csr_max_per_second, 0.0);
        assert_eq!(c.private_key_type, "ec");
        let c2: CaConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(c, c2);
        let c3: CaConfig =
            serde_json::from_str(r#"{"leaf_cert_ttl":"2h","private_key_bits":384}"#).unwrap();
        assert_eq!(c3.leaf_cert_ttl, h(2));
        assert_eq!(c3.key_spec(), Ok(KeySpec::EcP384));
        assert!(serde_json::from_str::<CaConfig>(r#"{"LeafCertTTL":"soon"}"#).is_err());
    }
}
