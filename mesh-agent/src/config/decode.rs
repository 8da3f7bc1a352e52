//! From a parsed document to settings: the schema of Consul's agent configuration walked key
//! by key, what is read, what is ignored with a warning, what is refused.
//!
//! Keys are matched without regard to ASCII case, as Consul's decoder (mapstructure) does;
//! `connect.ca_config` keys are matched as Consul's CA providers do (the snake_case spelling,
//! or the CamelCase field name in any case). Service definitions are not decoded here: they
//! are kept as JSON text for `mesh::Catalog::register_json`, after a check that it
//! would accept them.

use std::collections::HashSet;
use std::path::Path;

use super::ServiceSource;
use super::error::{ConfigError, ConfigWarning, position_at, positions_at};
use super::keys::{
    ACL_KEYS, ADDRESS_KEYS, CA_KEYS, CA_OTHER_PROVIDER_KEYS, CONNECT_KEYS, ETCD_KEYS,
    HTTP_CONFIG_KEYS, PORT_KEYS, STORAGE_KEYS, TLS_KEYS, TLS_SECTION_KEYS, TOKEN_KEYS,
    TOP_DEPRECATED_IGNORED, TOP_IGNORED, TOP_USED, did_you_mean,
};
use super::settings::{Partial, TlsPartial};
use super::syntax::{Entry, Node, Value};

/// One document being decoded: its file, its text (for positions and raw service text) and
/// the warnings it raised.
pub(super) struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
    /// Whether the tree came from the JSON parser (service text can then be copied verbatim).
    json: bool,
    /// (key, byte offset, message), turned into [`ConfigWarning`]s in one scan at the end.
    warnings: Vec<(String, usize, String)>,
    warned: HashSet<String>,
}

pub(super) type R<T> = Result<T, ConfigError>;

impl<'a> Doc<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str, json: bool) -> Self {
        Self {
            path,
            text,
            json,
            warnings: Vec::new(),
            warned: HashSet::new(),
        }
    }

    /// Decodes the root object of the document into a [`Partial`], with its deprecated
    /// spellings resolved.
    pub(super) fn decode(mut self, root: &Node) -> R<(Partial, Vec<ConfigWarning>)> {
        let mut p = Partial::default();
        let Value::Map(entries) = &root.value else {
            return Err(self.invalid("", root.start, "a configuration document must be an object"));
        };
        self.top(&mut p, entries)?;
        p.resolve_deprecated();
        let offsets: Vec<usize> = self.warnings.iter().map(|w| w.1).collect();
        let positions = positions_at(self.text, &offsets);
        let warnings = self
            .warnings
            .into_iter()
            .zip(positions)
            .map(|((key, _, message), position)| ConfigWarning {
                file: self.path.to_path_buf(),
                key: Some(key),
                position: Some(position),
                message,
            })
            .collect();
        Ok((p, warnings))
    }

    // === errors and warnings ===

    pub(super) fn pos(&self, offset: usize) -> Option<super::Position> {
        Some(position_at(self.text, offset))
    }

    pub(super) fn invalid(
        &self,
        key: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::InvalidValue {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            message: message.into(),
            position: self.pos(offset),
        }
    }

    pub(super) fn wrong_type(&self, key: &str, node: &Node, expected: &str) -> ConfigError {
        self.invalid(
            key,
            node.start,
            format!("expected {expected}, found {}", node.value.kind()),
        )
    }

    fn unknown(&self, prefix: &str, e: &Entry, known: &[&str]) -> ConfigError {
        ConfigError::UnknownKey {
            path: self.path.to_path_buf(),
            key: join(prefix, &e.key),
            position: self.pos(e.at),
            did_you_mean: did_you_mean(&e.key, known).map(|k| join(prefix, k)),
        }
    }

    fn warn(&mut self, key: String, offset: usize, message: String) {
        // One warning per key and file: a file repeating an ignored key warns once.
        if self.warned.insert(key.clone()) {
            self.warnings.push((key, offset, message));
        }
    }

    fn ignored(&mut self, key: String, offset: usize, why: &str) {
        let message = if why.is_empty() {
            "a Consul setting mesh does not use: ignored".to_owned()
        } else {
            format!("a Consul setting mesh does not use ({why}): ignored")
        };
        self.warn(key, offset, message);
    }

    fn deprecated(&mut self, old: &str, new: &str, offset: usize) {
        self.warn(
            old.to_owned(),
            offset,
            format!("The '{old}' field is deprecated. Use the '{new}' field instead."),
        );
    }

    // === the schema ===

    fn top(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let v = &e.value;
            match k.as_str() {
                "datacenter" => p.datacenter = Some(self.datacenter("datacenter", v)?),
                "primary_datacenter" => {
                    p.primary_datacenter = Some(self.datacenter("primary_datacenter", v)?);
                }
                "data_dir" => p.data_dir = Some(self.path("data_dir", v)?),
                "node_name" => p.node_name = Some(self.nonempty_string("node_name", v)?),
                "server" => p.server = Some(self.bool("server", v)?),
                "bootstrap" => {
                    self.bool("bootstrap", v)?;
                }
                "bootstrap_expect" => {
                    let n = self.int("bootstrap_expect", v)?;
                    let n = u32::try_from(n).map_err(|_| {
                        self.invalid(
                            "bootstrap_expect",
                            v.start,
                            format!(
                                "bootstrap_expect cannot be {n}. Must be greater than or equal to zero"
                            ),
                        )
                    })?;
                    p.bootstrap_expect = Some(n);
                }
                "log_level" => p.log_level = Some(self.log_level(v)?),
                "bind_addr" => p.bind_addr = Some(self.ip("bind_addr", v)?),
                "client_addr" => p.client_addr = Some(self.ip("client_addr", v)?),
                "advertise_addr" => {
                    let ip = self.ip("advertise_addr", v)?;
                    if ip.is_unspecified() {
                        return Err(self.invalid(
                            "advertise_addr",
                            v.start,
                            "Advertise address cannot be 0.0.0.0, :: or [::]",
                        ));
                    }
                    p.advertise_addr = Some(ip);
                }
                "advertise_addr_wan" => {
                    let ip = self.ip("advertise_addr_wan", v)?;
                    if ip.is_unspecified() {
                        return Err(self.invalid(
                            "advertise_addr_wan",
                            v.start,
                            "Advertise WAN address cannot be 0.0.0.0, :: or [::]",
                        ));
                    }
                    p.advertise_addr_wan = Some(ip);
                }
                "addresses" => {
                    for b in self.blocks("addresses", v)? {
                        self.addresses(p, b)?;
                    }
                }
                "ports" => {
                    for b in self.blocks("ports", v)? {
                        self.ports(p, b)?;
                    }
                }
                "acl" => {
                    for b in self.blocks("acl", v)? {
                        self.acl(p, b)?;
                    }
                }
                "connect" => {
                    for b in self.blocks("connect", v)? {
                        self.connect(p, b)?;
                    }
                }
                "enable_central_service_config" => {
                    p.central_config = Some(self.bool("enable_central_service_config", v)?);
                }
                "retry_join_wan" => {
                    let list = self.addresses_list("retry_join_wan", v)?;
                    p.retry_join_wan.extend(list);
                }
                "primary_gateways" => {
                    let list = self.addresses_list("primary_gateways", v)?;
                    p.primary_gateways.extend(list);
                    p.origin_primary_gateways = Some(self.path.to_path_buf());
                }
                "tls" => {
                    for b in self.blocks("tls", v)? {
                        self.tls(p, b)?;
                    }
                }
                "storage" => {
                    for b in self.blocks("storage", v)? {
                        self.storage(p, b)?;
                    }
                }
                "service" | "services" => self.services(p, &k, v)?,
                "http_config" => {
                    for b in self.blocks("http_config", v)? {
                        self.http_config(b)?;
                    }
                }
                "limits" => {
                    for b in self.blocks("limits", v)? {
                        self.limits(p, b)?;
                    }
                }
                // Deprecated spellings of settings mesh reads.
                "acl_datacenter" => {
                    p.dep.acl_datacenter = Some(self.datacenter("acl_datacenter", v)?);
                    self.deprecated("acl_datacenter", "primary_datacenter", e.at);
                }
                "acl_default_policy" => {
                    p.dep.acl_default_policy = Some(self.policy("acl_default_policy", v)?);
                    self.deprecated("acl_default_policy", "acl.default_policy", e.at);
                }
                "acl_master_token" => {
                    p.dep.acl_master_token = Some(self.token("acl_master_token", v)?);
                    self.deprecated("acl_master_token", "acl.tokens.initial_management", e.at);
                }
                "acl_replication_token" => {
                    p.dep.acl_replication_token = Some(self.token("acl_replication_token", v)?);
                    self.deprecated("acl_replication_token", "acl.tokens.replication", e.at);
                }
                "acl_token" => {
                    p.dep.acl_token = Some(self.token("acl_token", v)?);
                    self.deprecated("acl_token", "acl.tokens.default", e.at);
                }
                "acl_agent_token" => {
                    p.dep.acl_agent_token = Some(self.token("acl_agent_token", v)?);
                    self.deprecated("acl_agent_token", "acl.tokens.agent", e.at);
                }
                "enable_acl_replication" => {
                    p.dep.enable_acl_replication = Some(self.bool("enable_acl_replication", v)?);
                    self.deprecated(
                        "enable_acl_replication",
                        "acl.enable_token_replication",
                        e.at,
                    );
                }
                "start_join_wan" => {
                    let list = self.addresses_list("start_join_wan", v)?;
                    p.dep.start_join_wan.extend(list);
                    self.deprecated("start_join_wan", "retry_join_wan", e.at);
                }
                "ca_file" | "cert_file" | "key_file" => {
                    let path = self.path(&k, v)?;
                    let slot = match k.as_str() {
                        "ca_file" => &mut p.dep.tls.ca_file,
                        "cert_file" => &mut p.dep.tls.cert_file,
                        _ => &mut p.dep.tls.key_file,
                    };
                    *slot = Some(path);
                    self.deprecated(&k, &format!("tls.defaults.{k}"), e.at);
                }
                "verify_incoming" => {
                    p.dep.tls.verify_incoming = Some(self.bool("verify_incoming", v)?);
                    self.deprecated("verify_incoming", "tls.defaults.verify_incoming", e.at);
                }
                "verify_outgoing" => {
                    p.dep.tls.verify_outgoing = Some(self.bool("verify_outgoing", v)?);
                    self.deprecated("verify_outgoing", "tls.defaults.verify_outgoing", e.at);
                }
                "verify_incoming_https" => {
                    p.dep.verify_incoming_https = Some(self.bool("verify_incoming_https", v)?);
                    self.deprecated("verify_incoming_https", "tls.https.verify_incoming", e.at);
                }
                _ => {
                    if let Some((old, new)) = TOP_DEPRECATED_IGNORED.iter().find(|(o, _)| *o == k) {
                        if *old == "acl_down_policy" {
                            self.down_policy(old, v)?;
                        }
                        self.warn(
                            (*old).to_owned(),
                            e.at,
                            format!(
                                "The '{old}' field is deprecated. Use the '{new}' field instead. \
                                 mesh does not use it: ignored"
                            ),
                        );
                    } else if let Some((name, why)) = TOP_IGNORED.iter().find(|(n, _)| *n == k) {
                        self.ignored((*name).to_owned(), e.at, why);
                    } else {
                        let known: Vec<&str> = TOP_USED
                            .iter()
                            .copied()
                            .chain(TOP_IGNORED.iter().map(|(n, _)| *n))
                            .chain(TOP_DEPRECATED_IGNORED.iter().map(|(n, _)| *n))
                            .collect();
                        return Err(self.unknown("", e, &known));
                    }
                }
            }
        }
        Ok(())
    }

    fn log_level(&self, node: &Node) -> R<String> {
        let s = self.string("log_level", node)?;
        let level = match s.trim().to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "err" | "error" => "error",
            "off" => "off",
            _ => {
                return Err(self.invalid(
                    "log_level",
                    node.start,
                    format!(
                        "Invalid log level: {s:?}. Valid log levels are: trace, debug, info, warn, error, off"
                    ),
                ));
            }
        };
        Ok(level.to_owned())
    }

    fn down_policy(&self, key: &str, node: &Node) -> R<()> {
        match self.string(key, node)?.as_str() {
            "allow" | "deny" | "extend-cache" | "async-cache" => Ok(()),
            other => Err(self.invalid(
                key,
                node.start,
                format!(
                    "{other:?} is not a down policy: use \"allow\", \"deny\", \"extend-cache\" or \"async-cache\""
                ),
            )),
        }
    }

    fn addresses(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("addresses.{k}");
            match k.as_str() {
                "http" => p.http_ip = Some(self.ip(&key, &e.value)?),
                "https" => p.https_ip = Some(self.ip(&key, &e.value)?),
                "dns" | "grpc" | "grpc_tls" => {
                    self.string(&key, &e.value)?;
                    self.ignored(key, e.at, "mesh serves neither DNS nor gRPC");
                }
                _ => return Err(self.unknown("addresses", e, ADDRESS_KEYS)),
            }
        }
        Ok(())
    }

    fn ports(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("ports.{k}");
            match k.as_str() {
                "http" => p.http_port = Some(self.port(&key, &e.value)?),
                "https" => p.https_port = Some(self.port(&key, &e.value)?),
                "server" => {
                    let n = self.port(&key, &e.value)?;
                    if n < 0 {
                        return Err(self.invalid(
                            &key,
                            e.value.start,
                            "server-port must be greater than zero (0 lets the system choose)",
                        ));
                    }
                    p.server_port = Some(n);
                }
                "dns" | "grpc" | "grpc_tls" => {
                    self.port(&key, &e.value)?;
                    self.ignored(key, e.at, "mesh serves neither DNS nor gRPC");
                }
                "serf_lan" | "serf_wan" => {
                    self.port(&key, &e.value)?;
                    self.ignored(key, e.at, "mesh does not gossip");
                }
                "sidecar_min_port" | "sidecar_max_port" | "expose_min_port" | "expose_max_port"
                | "proxy_min_port" | "proxy_max_port" => {
                    self.port(&key, &e.value)?;
                    self.ignored(key, e.at, "");
                }
                _ => return Err(self.unknown("ports", e, PORT_KEYS)),
            }
        }
        Ok(())
    }

    /// `limits`: mesh reads its own HTTP bounds; Consul's other limits are accepted and
    /// ignored with a warning.
    fn limits(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("limits.{k}");
            match k.as_str() {
                "http_max_conns" | "http_max_blocking_queries" => {
                    let n = self.int(&key, &e.value)?;
                    let n = usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        self.invalid(&key, e.value.start, format!("{key} must be at least 1"))
                    })?;
                    if k == "http_max_conns" {
                        p.http_max_conns = Some(n);
                    } else {
                        p.http_max_blocking_queries = Some(n);
                    }
                }
                _ => self.ignored(key, e.at, ""),
            }
        }
        Ok(())
    }

    fn acl(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("acl.{k}");
            let v = &e.value;
            match k.as_str() {
                "enabled" => p.acl_enabled = Some(self.bool(&key, v)?),
                "default_policy" => p.default_policy = Some(self.policy(&key, v)?),
                "enable_token_replication" => p.token_replication = Some(self.bool(&key, v)?),
                "tokens" => {
                    for b in self.blocks(&key, v)? {
                        self.tokens(p, b)?;
                    }
                }
                "down_policy" => {
                    self.down_policy(&key, v)?;
                    self.ignored(key, e.at, "mesh always answers from its last copy");
                }
                "policy_ttl" | "role_ttl" | "token_ttl" | "disabled_ttl" => {
                    self.string(&key, v)?;
                    self.ignored(key, e.at, "mesh keeps no ACL cache");
                }
                "enable_key_list_policy" | "enable_token_persistence" | "msp_disable_bootstrap" => {
                    self.bool(&key, v)?;
                    self.ignored(key, e.at, "");
                }
                _ => return Err(self.unknown("acl", e, ACL_KEYS)),
            }
        }
        Ok(())
    }

    fn tokens(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("acl.tokens.{k}");
            let v = &e.value;
            match k.as_str() {
                "initial_management" => p.initial_management = Some(self.token(&key, v)?),
                "replication" => p.replication = Some(self.token(&key, v)?),
                "agent" => p.agent = Some(self.token(&key, v)?),
                "default" => p.default_token = Some(self.token(&key, v)?),
                "master" => {
                    p.dep.tokens_master = Some(self.token(&key, v)?);
                    self.deprecated("acl.tokens.master", "acl.tokens.initial_management", e.at);
                }
                "agent_recovery" | "agent_master" | "config_file_service_registration" | "dns" => {
                    self.token(&key, v)?;
                    self.ignored(key, e.at, "");
                }
                "managed_service_provider" => self.ignored(key, e.at, "Consul Enterprise"),
                _ => return Err(self.unknown("acl.tokens", e, TOKEN_KEYS)),
            }
        }
        Ok(())
    }

    fn connect(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("connect.{k}");
            let v = &e.value;
            match k.as_str() {
                "enabled" => p.connect_enabled = Some(self.bool(&key, v)?),
                "ca_provider" => {
                    let s = self.string(&key, v)?;
                    if !(s.is_empty() || s == "consul") {
                        return Err(self.invalid(
                            &key,
                            v.start,
                            format!(
                                "{s:?} is not supported: mesh has only the built-in \"consul\" CA provider"
                            ),
                        ));
                    }
                }
                "ca_config" => {
                    for b in self.blocks(&key, v)? {
                        self.ca_config(p, b)?;
                    }
                    p.origin_ca = Some(self.path.to_path_buf());
                }
                "enable_mesh_gateway_wan_federation" => {
                    p.wan_federation = Some(self.bool(&key, v)?);
                    p.origin_wan_federation = Some(self.path.to_path_buf());
                }
                "enable_serverless_plugin" | "test_ca_leaf_root_change_spread" => {
                    self.ignored(key, e.at, "");
                }
                _ => return Err(self.unknown("connect", e, CONNECT_KEYS)),
            }
        }
        Ok(())
    }

    fn ca_config(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let v = &e.value;
            let ca_key = |list: &[(&'static str, &'static str)]| {
                list.iter()
                    .find(|(snake, camel)| e.key == *snake || e.key.eq_ignore_ascii_case(camel))
                    .map(|(snake, _)| *snake)
            };
            if let Some(name) = ca_key(CA_KEYS) {
                let key = format!("connect.ca_config.{name}");
                match name {
                    "leaf_cert_ttl" => p.ca.leaf_cert_ttl = Some(self.weak_duration(&key, v)?),
                    "intermediate_cert_ttl" => {
                        p.ca.intermediate_cert_ttl = Some(self.weak_duration(&key, v)?);
                    }
                    "root_cert_ttl" => p.ca.root_cert_ttl = Some(self.weak_duration(&key, v)?),
                    "private_key_type" => p.ca.private_key_type = Some(self.weak_string(&key, v)?),
                    "private_key_bits" => p.ca.private_key_bits = Some(self.weak_u32(&key, v)?),
                    "csr_max_per_second" => {
                        p.ca.csr_max_per_second = Some(self.weak_f64(&key, v)?);
                    }
                    "csr_max_concurrent" => {
                        p.ca.csr_max_concurrent = Some(self.weak_u32(&key, v)?);
                    }
                    "skip_validate" => p.ca.skip_validate = Some(self.weak_bool(&key, v)?),
                    "disable_cross_signing" => {
                        p.ca.disable_cross_signing = Some(self.weak_bool(&key, v)?);
                    }
                    // private_key, root_cert: a CA key brought by the operator.
                    _ => {
                        return Err(self.invalid(
                            &key,
                            v.start,
                            "bringing the CA's own key and root is not supported: mesh generates \
                             its root (leave this out, or use the CaProvider API)",
                        ));
                    }
                }
            } else if let Some(name) = ca_key(CA_OTHER_PROVIDER_KEYS) {
                self.ignored(
                    format!("connect.ca_config.{name}"),
                    e.at,
                    "a setting of another CA provider",
                );
            } else {
                let known: Vec<&str> = CA_KEYS.iter().map(|(s, _)| *s).collect();
                return Err(self.unknown("connect.ca_config", e, &known));
            }
        }
        Ok(())
    }

    fn storage(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            match e.key.to_ascii_lowercase().as_str() {
                "etcd" => {
                    for b in self.blocks("storage.etcd", &e.value)? {
                        self.etcd(p, b)?;
                    }
                }
                _ => return Err(self.unknown("storage", e, STORAGE_KEYS)),
            }
        }
        Ok(())
    }

    fn etcd(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("storage.etcd.{k}");
            let v = &e.value;
            match k.as_str() {
                "endpoints" => p.etcd.endpoints = Some(self.string_list(&key, v)?),
                "prefix" => p.etcd.prefix = Some(self.nonempty_string(&key, v)?),
                "state_key_file" => p.etcd.state_key_file = Some(self.path(&key, v)?),
                "ca_file" => p.etcd.ca_file = Some(self.path(&key, v)?),
                "cert_file" => p.etcd.cert_file = Some(self.path(&key, v)?),
                "key_file" => p.etcd.key_file = Some(self.path(&key, v)?),
                "lease_ttl" => {
                    let ttl = self.weak_duration(&key, v)?;
                    if ttl < std::time::Duration::from_secs(2) {
                        return Err(self.invalid(&key, v.start, "a lease lasts at least 2s"));
                    }
                    p.etcd.lease_ttl = Some(ttl);
                }
                _ => return Err(self.unknown("storage.etcd", e, ETCD_KEYS)),
            }
            p.etcd.origin = Some(self.path.to_path_buf());
        }
        Ok(())
    }

    fn tls(&mut self, p: &mut Partial, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("tls.{k}");
            match k.as_str() {
                "defaults" => {
                    for b in self.blocks(&key, &e.value)? {
                        self.tls_section(&mut p.tls_defaults, &key, b)?;
                    }
                }
                "https" => {
                    for b in self.blocks(&key, &e.value)? {
                        self.tls_section(&mut p.tls_https, &key, b)?;
                    }
                }
                "internal_rpc" => {
                    for b in self.blocks(&key, &e.value)? {
                        self.tls_section(&mut p.tls_internal_rpc, &key, b)?;
                    }
                }
                "grpc" => {
                    self.blocks(&key, &e.value)?;
                    self.ignored(key, e.at, "mesh serves no gRPC");
                }
                _ => return Err(self.unknown("tls", e, TLS_KEYS)),
            }
        }
        Ok(())
    }

    fn tls_section(&mut self, t: &mut TlsPartial, prefix: &str, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("{prefix}.{k}");
            let v = &e.value;
            match k.as_str() {
                "ca_file" => t.ca_file = Some(self.path(&key, v)?),
                "cert_file" => t.cert_file = Some(self.path(&key, v)?),
                "key_file" => t.key_file = Some(self.path(&key, v)?),
                "verify_incoming" => t.verify_incoming = Some(self.bool(&key, v)?),
                "verify_outgoing" => t.verify_outgoing = Some(self.bool(&key, v)?),
                "insecure_plaintext" if prefix == "tls.internal_rpc" => {
                    t.plaintext = Some(self.bool(&key, v)?);
                }
                "primary_root_sha256" if prefix == "tls.internal_rpc" => {
                    let text = self.string(&key, v)?;
                    let digest = parse_sha256(&text).ok_or_else(|| {
                        self.invalid(
                            &key,
                            v.start,
                            "a SHA-256 fingerprint: 64 hex digits, colons allowed (as `mesh ca \
                             roots` prints it)",
                        )
                    })?;
                    t.primary_root_sha256 = Some(digest);
                }
                "verify_server_hostname" if prefix == "tls.internal_rpc" => {
                    self.bool(&key, v)?;
                    self.ignored(
                        key,
                        e.at,
                        "a server is verified by its SPIFFE server identity, not a host name",
                    );
                }
                "ca_path" => {
                    self.string(&key, v)?;
                    self.ignored(key, e.at, "use ca_file");
                }
                "tls_min_version" | "tls_cipher_suites" => {
                    self.string(&key, v)?;
                    self.ignored(
                        key,
                        e.at,
                        "mesh uses rustls' safe defaults: TLS 1.2 and 1.3",
                    );
                }
                _ => return Err(self.unknown(prefix, e, TLS_SECTION_KEYS)),
            }
        }
        Ok(())
    }

    fn http_config(&mut self, entries: &[Entry]) -> R<()> {
        for e in entries {
            if e.value.value == Value::Null {
                continue;
            }
            let k = e.key.to_ascii_lowercase();
            let key = format!("http_config.{k}");
            match k.as_str() {
                // Restrictions mesh cannot enforce are refused rather than silently dropped.
                "block_endpoints" | "allow_write_http_from" => {
                    if !self.string_list(&key, &e.value)?.is_empty() {
                        return Err(self.invalid(
                            &key,
                            e.value.start,
                            "mesh cannot enforce this restriction on its HTTP API: remove it \
                             and restrict access another way (ACLs, client_addr, a firewall)",
                        ));
                    }
                }
                "response_headers" | "use_cache" | "max_header_bytes" => {
                    self.ignored(key, e.at, "");
                }
                _ => return Err(self.unknown("http_config", e, HTTP_CONFIG_KEYS)),
            }
        }
        Ok(())
    }

    /// `service { ... }` or `services [ {...}, ... ]`: each kept as `{"service": {...}}` text,
    /// after checking that `mesh::Catalog::register_json` would accept it.
    fn services(&self, p: &mut Partial, key: &str, node: &Node) -> R<()> {
        let defs: Vec<(String, &Node)> = match &node.value {
            Value::Map(_) => vec![(key.to_owned(), node)],
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("{key}[{i}]"), n))
                .collect(),
            _ => return Err(self.wrong_type(key, node, "an object (a service definition)")),
        };
        for (key, def) in defs {
            if !matches!(def.value, Value::Map(_)) {
                return Err(self.wrong_type(&key, def, "an object (a service definition)"));
            }
            let inner = if self.json {
                // The exact text written, so that nothing is lost or reinterpreted.
                self.text
                    .get(def.start..def.end)
                    .unwrap_or_default()
                    .to_owned()
            } else {
                serde_json::to_string(&to_json(def)).unwrap_or_default()
            };
            let json = format!("{{\"service\":{inner}}}");
            if let Err(source) = mesh::core::ServiceDefinition::from_json(&json)
                .and_then(|d| d.validate().map(|()| d))
            {
                return Err(ConfigError::Service {
                    path: self.path.to_path_buf(),
                    key,
                    position: self.pos(def.start),
                    source,
                });
            }
            p.services.push(ServiceSource {
                file: self.path.to_path_buf(),
                json,
            });
        }
        Ok(())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A service definition written in HCL, as JSON. Repeated keys: objects merge, other values
/// are replaced by the later one.
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Num(n) => n
            .parse::<serde_json::Number>()
            .map(J::Number)
            .unwrap_or_else(|_| J::String(n.clone())),
        Value::Str(s) => J::String(s.clone()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut m = serde_json::Map::new();
            for e in entries {
                insert_merged(&mut m, e.key.clone(), to_json(&e.value));
            }
            J::Object(m)
        }
    }
}

fn insert_merged(
    m: &mut serde_json::Map<String, serde_json::Value>,
    k: String,
    v: serde_json::Value,
) {
    match (m.get_mut(&k), v) {
        (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) => {
            for (k2, v2) in new {
                insert_merged(old, k2, v2);
            }
        }
        (_, v) => {
            m.insert(k, v);
        }
    }
}

/// A SHA-256 fingerprint in hex, with or without colons (`AB:CD:..` or `abcd..`).
pub(super) fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}
