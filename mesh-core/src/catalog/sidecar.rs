//! From a `connect.sidecar_service` stanza to the sidecar proxy's own registration
//! (see docs/consul-compatibility.md, 'Sidecar registration defaults'): defaults, port
//! allocation and default checks.

use std::collections::BTreeSet;

use super::{
    CheckDefinition, CheckError, GoDuration, Host, HostPort, MetaError, ProxyConfig,
    ServiceDefinition, ServiceInstanceId, ServiceInstanceIdError, ServiceKind, TokenSecret,
    validate_meta,
};
use crate::names::{NameError, ServiceName};

/// Appended to the parent's ID and name to name its sidecar.
pub const SIDECAR_SUFFIX: &str = "-sidecar-proxy";
/// The lowest port the agent hands out to sidecars by default.
pub const DEFAULT_SIDECAR_MIN_PORT: u16 = 21000;
/// The highest port the agent hands out to sidecars by default (inclusive).
pub const DEFAULT_SIDECAR_MAX_PORT: u16 = 21255;

/// A `sidecar_service` stanza that cannot become a sidecar registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// The parent registration has no name.
    #[error("Missing service name")]
    ParentName,
    /// The stanza sets an ID.
    #[error("A SidecarService cannot specify an ID as this is managed by the agent")]
    SidecarId,
    /// The stanza has its own `sidecar_service`.
    #[error("A SidecarService cannot have a nested SidecarService")]
    Nested,
    /// The stanza asks for a kind other than a connect proxy.
    #[error("a SidecarService must be a connect-proxy, not {0:?}")]
    Kind(ServiceKind),
    /// `<parent ID>-sidecar-proxy` is not a valid ID (too long).
    #[error("cannot derive the sidecar's ID")]
    Id(#[source] ServiceInstanceIdError),
    /// `<parent name>-sidecar-proxy` is not a valid name (too long).
    #[error("cannot derive the sidecar's name")]
    Name(#[source] NameError),
    /// The sidecar's metadata breaks a limit or uses a reserved key.
    #[error("invalid sidecar metadata")]
    Meta(#[source] MetaError),
    /// A check of the stanza breaks a rule.
    #[error("invalid sidecar check {index}")]
    Check {
        /// Index of the check (`Check` first, then `Checks`).
        index: usize,
        /// The broken rule.
        #[source]
        source: CheckError,
    },
}

/// The sidecar port could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarPortError {
    /// Automatic ports are switched off (range `0..=0`).
    #[error("no port provided for sidecar_service and auto-assignment disabled in config")]
    Disabled,
    /// Every port of the range is taken.
    #[error(
        "no port provided for sidecar_service and none left in the configured range [{min}, {max}]"
    )]
    Exhausted {
        /// The range's first port.
        min: u16,
        /// The range's last port.
        max: u16,
    },
    /// `min > max`, or a range starting at port 0.
    #[error("invalid sidecar port range [{min}, {max}]")]
    InvalidRange {
        /// The range's first port.
        min: u16,
        /// The range's last port.
        max: u16,
    },
}

/// The inclusive range sidecar ports are picked from (`sidecar_min_port`, `sidecar_max_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SidecarPortRange {
    min: u16,
    max: u16,
}

impl Default for SidecarPortRange {
    /// `21000..=21255`.
    fn default() -> Self {
        Self {
            min: DEFAULT_SIDECAR_MIN_PORT,
            max: DEFAULT_SIDECAR_MAX_PORT,
        }
    }
}

impl SidecarPortRange {
    /// A range `min..=max`; `0, 0` switches automatic ports off.
    pub fn new(min: u16, max: u16) -> Result<Self, SidecarPortError> {
        if (min, max) != (0, 0) && (min == 0 || min > max) {
            return Err(SidecarPortError::InvalidRange { min, max });
        }
        Ok(Self { min, max })
    }

    /// No automatic ports.
    pub fn disabled() -> Self {
        Self { min: 0, max: 0 }
    }

    /// Whether automatic ports are off.
    pub fn is_disabled(&self) -> bool {
        self.min == 0
    }

    /// The first port.
    pub fn min(&self) -> u16 {
        self.min
    }

    /// The last port (inclusive).
    pub fn max(&self) -> u16 {
        self.max
    }

    /// Picks the port of sidecar `sidecar_id` given the services already registered on the
    /// agent as `(ID, port)` pairs: the port `sidecar_id` already has, if it is registered with
    /// one; else the lowest port of the range no registered service uses.
    pub fn allocate<'a>(
        &self,
        sidecar_id: &ServiceInstanceId,
        registered: impl IntoIterator<Item = (&'a str, u16)>,
    ) -> Result<u16, SidecarPortError> {
        if self.is_disabled() {
            return Err(SidecarPortError::Disabled);
        }
        let mut used = BTreeSet::new();
        for (id, port) in registered {
            if id == sidecar_id.as_str() && port != 0 {
                return Ok(port);
            }
            used.insert(port);
        }
        (self.min..=self.max)
            .find(|p| !used.contains(p))
            .ok_or(SidecarPortError::Exhausted {
                min: self.min,
                max: self.max,
            })
    }
}

/// A sidecar registration derived from its parent: the proxy's service definition (no token,
/// no checks inside), the checks to register with it, and the token to register it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    id: ServiceInstanceId,
    service: ServiceDefinition,
    checks: Vec<CheckDefinition>,
    token: Option<TokenSecret>,
}

impl Sidecar {
    /// The sidecar's ID, `<parent ID>-sidecar-proxy`.
    pub fn id(&self) -> &ServiceInstanceId {
        &self.id
    }

    /// The sidecar's registration (kind `connect-proxy`).
    pub fn service(&self) -> &ServiceDefinition {
        &self.service
    }

    /// The checks to register: the stanza's own, or the defaults once
    /// [`Sidecar::ensure_default_checks`] ran.
    pub fn checks(&self) -> &[CheckDefinition] {
        &self.checks
    }

    /// The token: the stanza's own, else the parent registration's.
    pub fn token(&self) -> Option<&TokenSecret> {
        self.token.as_ref()
    }

    /// Gives a port to a sidecar that has none (see [`SidecarPortRange::allocate`]) and returns
    /// the sidecar's port.
    pub fn assign_port<'a>(
        &mut self,
        range: &SidecarPortRange,
        registered: impl IntoIterator<Item = (&'a str, u16)>,
    ) -> Result<u16, SidecarPortError> {
        if self.service.port == 0 {
            self.service.port = range.allocate(&self.id, registered)?;
        }
        Ok(self.service.port)
    }

    /// Adds the default checks ([`sidecar_default_checks`]) when the stanza defined none.
    pub fn ensure_default_checks(&mut self) {
        if self.checks.is_empty() {
            let local = self
                .service
                .proxy
                .as_ref()
                .and_then(|p| p.local_service_address.as_ref());
            self.checks = sidecar_default_checks(
                &self.id,
                self.service.address.as_ref(),
                local,
                self.service.port,
            );
        }
    }

    /// The registration, checks and token.
    pub fn into_parts(self) -> (ServiceDefinition, Vec<CheckDefinition>, Option<TokenSecret>) {
        (self.service, self.checks, self.token)
    }
}

/// Builds the sidecar of `parent` from its `connect.sidecar_service` stanza, or `None` when it
/// has none. `token` is the token the parent is being registered with.
///
/// Defaults: ID `<parent ID>-sidecar-proxy`, kind `connect-proxy`, name
/// `<parent name>-sidecar-proxy`, address the parent's; destination service name and ID the
/// parent's; the local application at the parent's socket path, else at `127.0.0.1` and the
/// parent's port; tags, meta and locality copied from the parent only when the stanza has none;
/// the stanza's token, else `token`. The port is left as given (0 = choose one later with
/// [`Sidecar::assign_port`]); upstream types default to `service` as they are parsed.
pub fn sidecar_from_service(
    parent: &ServiceDefinition,
    token: Option<&TokenSecret>,
) -> Result<Option<Sidecar>, SidecarError> {
    let Some(stanza) = parent.sidecar_service() else {
        return Ok(None);
    };
    if stanza.id.is_some() {
        return Err(SidecarError::SidecarId);
    }
    if stanza.sidecar_service().is_some() {
        return Err(SidecarError::Nested);
    }
    if !matches!(
        stanza.kind,
        ServiceKind::Typical | ServiceKind::ConnectProxy
    ) {
        return Err(SidecarError::Kind(stanza.kind));
    }
    let parent_name = parent.name.clone().ok_or(SidecarError::ParentName)?;
    let parent_id = parent
        .instance_id()
        .unwrap_or_else(|| ServiceInstanceId::from(parent_name.clone()));
    let id =
        ServiceInstanceId::new(format!("{parent_id}{SIDECAR_SUFFIX}")).map_err(SidecarError::Id)?;

    let mut s = stanza.clone();
    s.kind = ServiceKind::ConnectProxy;
    s.id = Some(id.clone());
    if s.name.is_none() {
        s.name = Some(
            ServiceName::new(format!("{parent_name}{SIDECAR_SUFFIX}"))
                .map_err(SidecarError::Name)?,
        );
    }
    if s.address.is_none() {
        s.address = parent.address.clone();
    }
    if s.tags.is_empty() {
        s.tags = parent.tags.clone();
    }
    if s.meta.is_empty() {
        s.meta = parent.meta.clone();
    }
    if s.locality.is_none() {
        s.locality = parent.locality.clone();
    }
    validate_meta(&s.meta, false).map_err(SidecarError::Meta)?;

    let proxy = s.proxy.get_or_insert_with(ProxyConfig::default);
    if proxy.destination_service_name.is_none() {
        proxy.destination_service_name = Some(parent_name);
    }
    if proxy.destination_service_id.is_none() {
        proxy.destination_service_id = Some(parent_id);
    }
    if proxy.local_service_socket_path.is_none()
        && (proxy.local_service_address.is_none() || proxy.local_service_port == 0)
    {
        if let Some(sock) = &parent.socket_path {
            proxy.local_service_socket_path = Some(sock.clone());
        } else {
            if proxy.local_service_address.is_none() {
                proxy.local_service_address = Some(Host::localhost());
            }
            if proxy.local_service_port == 0 {
                proxy.local_service_port = parent.port;
            }
        }
    }

    let token = s.token.take().or_else(|| token.cloned());
    let mut checks: Vec<CheckDefinition> = s.check.take().into_iter().collect();
    checks.append(&mut s.checks);
    for (index, c) in checks.iter().enumerate() {
        c.validate()
            .map_err(|source| SidecarError::Check { index, source })?;
    }
    Ok(Some(Sidecar {
        id,
        service: s,
        checks,
        token,
    }))
}

/// The checks a sidecar gets when it defines none: a TCP check `Connect Sidecar Listening` on
/// `<address>:<port>` every 10 s (the sidecar's address, else the local service address, else
/// `127.0.0.1`) and an alias check `Connect Sidecar Aliasing <parent ID>` on the parent (the
/// sidecar ID without one trailing `-sidecar-proxy`).
pub fn sidecar_default_checks(
    sidecar_id: &ServiceInstanceId,
    address: Option<&Host>,
    local_service_address: Option<&Host>,
    port: u16,
) -> Vec<CheckDefinition> {
    let host = address
        .or(local_service_address)
        .cloned()
        .unwrap_or_else(Host::localhost);
    let id = sidecar_id.as_str();
    let parent = id.strip_suffix(SIDECAR_SUFFIX).unwrap_or(id);
    vec![
        CheckDefinition {
            name: Some("Connect Sidecar Listening".to_owned()),
            tcp: Some(HostPort::new(host, port).to_string()),
            interval: Some(GoDuration::from_secs(10)),
            ..CheckDefinition::default()
        },
        CheckDefinition {
            name: Some(format!("Connect Sidecar Aliasing {parent}")),
            alias_service: Some(parent.to_owned()),
            ..CheckDefinition::default()
        },
    ]
}
