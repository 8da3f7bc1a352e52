//! Mesh-gateway modes: what `MeshGateway.Mode` means, how the effective mode of an upstream is
//! resolved from config entries and registrations, and which hop a sidecar dials for it (see
//! docs/consul-compatibility.md, 'Mesh-gateway mode resolution' and 'Upstream hops').
//!
//! Everything here is a pure function over values; the config entries themselves live in
//! [`crate::config_entry`], the registrations in [`crate::catalog`].

use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::Datacenter;

/// How a sidecar reaches an upstream in another datacenter.
///
/// Consul stores any string here and treats an unknown one like "no gateway"; mesh refuses
/// unknown modes when parsing, naming the field and the value (see
/// docs/consul-compatibility.md, 'Unknown mesh-gateway modes are refused').
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeshGatewayMode {
    /// Unset (`""`): inherit from the next layer; if nothing sets it, dial directly.
    #[default]
    Default,
    /// `none`: never use a gateway, dial the remote instances directly.
    None,
    /// `local`: dial the gateways of the proxy's own datacenter.
    Local,
    /// `remote`: dial the gateways of the target datacenter.
    Remote,
}

/// An unknown mesh-gateway mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: expected one of \"\", \"none\", \"local\" or \"remote\"")]
pub struct MeshGatewayModeError {
    /// The field that held it (`MeshGateway.Mode`, ...).
    pub field: &'static str,
    /// The rejected value.
    pub value: String,
}

impl MeshGatewayMode {
    /// The mode as Consul writes it (`""` for [`MeshGatewayMode::Default`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "",
            Self::None => "none",
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }

    /// Parses a mode; `field` names the field in the error.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, MeshGatewayModeError> {
        match s {
            "" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "local" => Ok(Self::Local),
            "remote" => Ok(Self::Remote),
            _ => Err(MeshGatewayModeError {
                field,
                value: s.to_owned(),
            }),
        }
    }

    /// Whether the mode is unset.
    pub fn is_default(self) -> bool {
        self == Self::Default
    }

    /// `self` unless it is unset, then `fallback`: one layer of the precedence chain.
    #[must_use]
    pub fn or(self, fallback: MeshGatewayMode) -> MeshGatewayMode {
        if self.is_default() { fallback } else { self }
    }
}

impl FromStr for MeshGatewayMode {
    type Err = MeshGatewayModeError;
    fn from_str(s: &str) -> Result<Self, MeshGatewayModeError> {
        Self::parse("MeshGateway.Mode", s)
    }
}

impl fmt::Display for MeshGatewayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MeshGatewayMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MeshGatewayMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// The `MeshGateway` block of a registration, upstream or config entry: `{"Mode": "local"}`.
///
/// Parsing also accepts the bare string form `"MeshGateway": "local"` that the mesh-gateway guide's
/// `proxy-defaults.json` uses; it always serialises as the object form.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshGatewayConfig {
    /// The mode.
    pub mode: MeshGatewayMode,
}

impl MeshGatewayConfig {
    /// A block with the given mode.
    pub fn new(mode: MeshGatewayMode) -> Self {
        Self { mode }
    }

    /// Whether the block sets nothing.
    pub fn is_default(&self) -> bool {
        self.mode.is_default()
    }
}

impl From<MeshGatewayMode> for MeshGatewayConfig {
    fn from(mode: MeshGatewayMode) -> Self {
        Self { mode }
    }
}

impl Serialize for MeshGatewayConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("MeshGatewayConfig", 1)?;
        st.serialize_field("Mode", &self.mode)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for MeshGatewayConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MeshGatewayConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MeshGateway object {\"Mode\": ...} or a mode string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                MeshGatewayMode::parse("MeshGateway", v)
                    .map(MeshGatewayConfig::new)
                    .map_err(E::custom)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MeshGatewayConfig::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut mode: Option<MeshGatewayMode> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "Mode" | "mode" => {
                            if mode.is_some() {
                                return Err(de::Error::duplicate_field("Mode"));
                            }
                            let s: String = map.next_value()?;
                            mode = Some(
                                MeshGatewayMode::parse("MeshGateway.Mode", &s)
                                    .map_err(de::Error::custom)?,
                            );
                        }
                        other => return Err(de::Error::unknown_field(other, &["Mode"])),
                    }
                }
                Ok(MeshGatewayConfig::new(mode.unwrap_or_default()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every layer that can set the mesh-gateway mode of one upstream, in Consul's order
/// (docs/consul-compatibility.md, 'Mesh-gateway mode resolution'): layers 1-5 are resolved by
/// the server (stage A), layer 6 by the agent (stage B). Later layers win when they are set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamModeLayers {
    /// 1. proxy-defaults `MeshGateway`.
    pub proxy_defaults: MeshGatewayMode,
    /// 2. the downstream service's service-defaults `MeshGateway`.
    pub service_defaults: MeshGatewayMode,
    /// 3. that service-defaults' `UpstreamConfig.Defaults.MeshGateway`.
    pub upstream_defaults: MeshGatewayMode,
    /// 4. the proxy registration's top-level `Proxy.MeshGateway`.
    pub proxy_registration: MeshGatewayMode,
    /// 5. that service-defaults' `UpstreamConfig.Overrides[<upstream>].MeshGateway`.
    pub upstream_override: MeshGatewayMode,
    /// 6. the mode written on the upstream in the proxy registration.
    pub upstream_registration: MeshGatewayMode,
}

impl UpstreamModeLayers {
    /// The mode stage A gives the proxy as a whole (layers 1-2): the top-level `MeshGateway`
    /// of the resolved service config.
    pub fn top_level(&self) -> MeshGatewayMode {
        self.service_defaults.or(self.proxy_defaults)
    }

    /// The mode stage A gives an upstream without an override, i.e. the wildcard (`*`) upstream
    /// (layers 1-4).
    pub fn wildcard(&self) -> MeshGatewayMode {
        self.proxy_registration
            .or(self.upstream_defaults)
            .or(self.top_level())
    }

    /// The mode stage A resolves for the named upstream on the server (layers 1-5).
    pub fn resolved(&self) -> MeshGatewayMode {
        self.upstream_override.or(self.wildcard())
    }

    /// The effective mode of the upstream after the agent's merge (layers 1-6).
    pub fn effective(&self) -> MeshGatewayMode {
        merge_upstream_mode(self.resolved(), self.upstream_registration)
    }
}

/// Stage B for one upstream: the mode written on the upstream in the local registration wins
/// if it is set, else the mode the server resolved.
pub fn merge_upstream_mode(
    resolved: MeshGatewayMode,
    local_upstream: MeshGatewayMode,
) -> MeshGatewayMode {
    local_upstream.or(resolved)
}

/// Stage B for the proxy itself: its own top-level mode if set, else the resolved top-level one.
pub fn merge_proxy_mode(
    resolved_top_level: MeshGatewayMode,
    local_proxy: MeshGatewayMode,
) -> MeshGatewayMode {
    local_proxy.or(resolved_top_level)
}

/// Stage C, the mode of one discovery-chain target: the target service's service-defaults
/// mode, else the proxy-defaults mode, replaced by the upstream's own mode when that is set.
/// External targets (service-defaults with `ExternalSNI`) never use gateways.
pub fn chain_target_mode(
    target_service_defaults: MeshGatewayMode,
    proxy_defaults: MeshGatewayMode,
    upstream_override: MeshGatewayMode,
    external: bool,
) -> MeshGatewayMode {
    if external {
        return MeshGatewayMode::Default;
    }
    upstream_override.or(target_service_defaults.or(proxy_defaults))
}

/// Which hop a sidecar dials for an upstream (see docs/consul-compatibility.md, 'Upstream hops').
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamPath {
    /// Dial the upstream's instances directly (same datacenter, or mode `none`/unset).
    Direct {
        /// The datacenter the instances live in.
        datacenter: Datacenter,
    },
    /// Dial the mesh gateways of the proxy's own datacenter (mode `local`).
    LocalGateways {
        /// The proxy's datacenter, whose gateways are dialled.
        datacenter: Datacenter,
    },
    /// Dial the mesh gateways of the target datacenter (mode `remote`), by their WAN address.
    RemoteGateways {
        /// The target datacenter, whose gateways are dialled.
        datacenter: Datacenter,
    },
}

impl UpstreamPath {
    /// The datacenter whose gateways are dialled, or `None` for a direct connection.
    pub fn gateway_datacenter(&self) -> Option<&Datacenter> {
        match self {
            Self::Direct { .. } => None,
            Self::LocalGateways { datacenter } | Self::RemoteGateways { datacenter } => {
                Some(datacenter)
            }
        }
    }
}

/// Decides the hop for an upstream in `target_dc`, seen from a proxy in `local_dc`, with the
/// effective `mode`: a target in the proxy's own datacenter is always dialled directly; so is
/// any target when the mode is `none` or unset.
pub fn upstream_path(
    local_dc: &Datacenter,
    target_dc: &Datacenter,
    mode: MeshGatewayMode,
) -> UpstreamPath {
    if local_dc == target_dc {
        return UpstreamPath::Direct {
            datacenter: target_dc.clone(),
        };
    }
    match mode {
        MeshGatewayMode::Default | MeshGatewayMode::None => UpstreamPath::Direct {
            datacenter: target_dc.clone(),
        },
        MeshGatewayMode::Local => UpstreamPath::LocalGateways {
            datacenter: local_dc.clone(),
        },
        MeshGatewayMode::Remote => UpstreamPath::RemoteGateways {
            datacenter: target_dc.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MeshGatewayMode::{Default as Unset, Local, None as NoGw, Remote};

    fn dc(s: &str) -> Datacenter {
        s.parse().unwrap()
    }

    #[test]
    fn mode_parse_and_display() {
        for m in [Unset, NoGw, Local, Remote] {
            assert_eq!(m.as_str().parse::<MeshGatewayMode>().unwrap(), m);
        }
        let err = "bogus".parse::<MeshGatewayMode>().unwrap_err();
        assert_eq!(err.field, "MeshGateway.Mode");
        assert_eq!(err.value, "bogus");
        assert!(err.to_string().contains("\"bogus\""));
        assert!("LOCAL".parse::<MeshGatewayMode>().is_err());
    }

    #[test]
    fn config_accepts_object_and_bare_string() {
        let obj: MeshGatewayConfig = serde_json::from_str(r#"{"Mode":"local"}"#).unwrap();
        let snake: MeshGatewayConfig = serde_json::from_str(r#"{"mode":"local"}"#).unwrap();
        let bare: MeshGatewayConfig = serde_json::from_str(r#""local""#).unwrap();
        let empty: MeshGatewayConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(obj.mode, Local);
        assert_eq!(snake, obj);
        assert_eq!(bare, obj);
        assert_eq!(empty.mode, Unset);
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"Mode":"local"}"#);
        let err = serde_json::from_str::<MeshGatewayConfig>(r#"{"Mode":"bogus"}"#).unwrap_err();
        assert!(
            err.to_string().contains("MeshGateway.Mode \"bogus\""),
            "{err}"
        );
        assert!(serde_json::from_str::<MeshGatewayConfig>(r#""bogus""#).is_err());
        assert!(serde_json::from_str::<MeshGatewayConfig>(r#"{"Mod":"local"}"#).is_err());
        assert!(
            serde_json::from_str::<MeshGatewayConfig>(r#"{"Mode":"local","mode":"none"}"#).is_err()
        );
        assert!(serde_json::from_str::<MeshGatewayConfig>("7").is_err());
    }

    #[test]
    fn rule_upstream_registration_beats_everything() {
        let l = UpstreamModeLayers {
            proxy_defaults: Local,
            service_defaults: Local,
            upstream_defaults: Local,
            proxy_registration: Local,
            upstream_override: Local,
            upstream_registration: NoGw,
        };
        assert_eq!(l.effective(), NoGw);
    }

    #[test]
    fn rule_service_defaults_override_beats_proxy_registration() {
        let l = UpstreamModeLayers {
            proxy_registration: Remote,
            upstream_override: Local,
            ..Default::default()
        };
        assert_eq!(l.resolved(), Local);
        assert_eq!(l.wildcard(), Remote);
    }

    #[test]
    fn rule_proxy_registration_beats_upstream_defaults() {
        let l = UpstreamModeLayers {
            upstream_defaults: NoGw,
            proxy_registration: Remote,
            ..Default::default()
        };
        assert_eq!(l.effective(), Remote);
        assert_eq!(l.top_level(), Unset);
    }

    #[test]
    fn rule_upstream_defaults_beat_service_defaults() {
        let l = UpstreamModeLayers {
            proxy_defaults: Local,
            service_defaults: NoGw,
            upstream_defaults: Remote,
            ..Default::default()
        };
        assert_eq!(l.effective(), Remote);
        assert_eq!(l.top_level(), NoGw);
    }

    #[test]
    fn rule_service_defaults_beat_proxy_defaults() {
        let l = UpstreamModeLayers {
            proxy_defaults: Local,
            service_defaults: NoGw,
            ..Default::default()
        };
        assert_eq!(l.effective(), NoGw);
    }

    #[test]
    fn rule_proxy_defaults_alone_apply() {
        let l = UpstreamModeLayers {
            proxy_defaults: Remote,
            ..Default::default()
        };
        assert_eq!(l.effective(), Remote);
        assert_eq!(UpstreamModeLayers::default().effective(), Unset);
    }

    #[test]
    fn chain_target_rules() {
        assert_eq!(chain_target_mode(Unset, Remote, Unset, false), Remote);
        assert_eq!(chain_target_mode(Local, Remote, Unset, false), Local);
        assert_eq!(chain_target_mode(Local, Remote, NoGw, false), NoGw);
        assert_eq!(chain_target_mode(Local, Remote, Remote, true), Unset);
    }

    #[test]
    fn path_same_dc_is_direct_whatever_the_mode() {
        for m in [Unset, NoGw, Local, Remote] {
            assert_eq!(
                upstream_path(&dc("dc1"), &dc("dc1"), m),
                UpstreamPath::Direct {
                    datacenter: dc("dc1")
                }
            );
        }
    }

    #[test]
    fn path_none_and_unset_are_direct() {
        for m in [Unset, NoGw] {
            let p = upstream_path(&dc("secondary"), &dc("primary"), m);
            assert_eq!(
                p,
                UpstreamPath::Direct {
                    datacenter: dc("primary")
                }
            );
            assert_eq!(p.gateway_datacenter(), None);
        }
    }

    #[test]
    fn path_local_dials_own_gateways() {
        let p = upstream_path(&dc("secondary"), &dc("primary"), Local);
        assert_eq!(p.gateway_datacenter(), Some(&dc("secondary")));
        assert!(matches!(p, UpstreamPath::LocalGateways { .. }));
    }

    #[test]
    fn path_remote_dials_target_gateways() {
        let p = upstream_path(&dc("secondary"), &dc("primary"), Remote);
        assert_eq!(p.gateway_datacenter(), Some(&dc("primary")));
        assert!(matches!(p, UpstreamPath::RemoteGateways { .. }));
    }
}
