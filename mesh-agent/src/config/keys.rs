//! The keys of Consul's agent configuration: those mesh reads, those it ignores (and why),
//! and the near-miss suggestion for a misspelled one.

/// Top-level Consul settings mesh reads.
pub(super) const TOP_USED: &[&str] = &[
    "datacenter",
    "primary_datacenter",
    "data_dir",
    "node_name",
    "server",
    "bootstrap",
    "bootstrap_expect",
    "log_level",
    "bind_addr",
    "client_addr",
    "advertise_addr",
    "advertise_addr_wan",
    "addresses",
    "ports",
    "acl",
    "connect",
    "enable_central_service_config",
    "retry_join_wan",
    "primary_gateways",
    "tls",
    "service",
    "services",
    "http_config",
    "limits",
    // mesh's own: where the datacenter's state lives.
    "storage",
    // Deprecated spellings of settings mesh reads.
    "acl_datacenter",
    "acl_default_policy",
    "acl_master_token",
    "acl_replication_token",
    "acl_token",
    "acl_agent_token",
    "enable_acl_replication",
    "start_join_wan",
    "ca_file",
    "cert_file",
    "key_file",
    "verify_incoming",
    "verify_outgoing",
    "verify_incoming_https",
];

/// Top-level Consul settings mesh accepts and ignores, each with why.
pub(super) const TOP_IGNORED: &[(&str, &str)] = &[
    ("advertise_addr_ipv4", ""),
    ("advertise_addr_ipv6", ""),
    ("advertise_addr_wan_ipv4", ""),
    ("advertise_addr_wan_ipv6", ""),
    ("advertise_reconnect_timeout", ""),
    ("alt_domain", "mesh serves no DNS"),
    ("audit", ""),
    ("auto_config", ""),
    ("auto_encrypt", ""),
    ("auto_reload_config", ""),
    ("autopilot", "mesh runs no Raft cluster"),
    ("cache", ""),
    (
        "check",
        "mesh does not run health checks from configuration files",
    ),
    ("check_output_max_size", ""),
    ("check_update_interval", ""),
    (
        "checks",
        "mesh does not run health checks from configuration files",
    ),
    ("cloud", ""),
    (
        "config_entries",
        "not applied: write config entries through the API (`mesh config write`)",
    ),
    ("default_query_time", ""),
    ("disable_anonymous_signature", ""),
    ("disable_coordinates", ""),
    ("disable_host_node_id", ""),
    ("disable_http_unprintable_char_filter", ""),
    ("disable_keyring_file", "mesh does not gossip"),
    ("disable_remote_exec", ""),
    ("disable_update_check", ""),
    ("discard_check_output", ""),
    ("discovery_max_stale", ""),
    ("dns_config", "mesh serves no DNS"),
    ("domain", "mesh serves no DNS"),
    ("enable_agent_tls_for_checks", ""),
    ("enable_debug", ""),
    ("enable_local_script_checks", ""),
    ("enable_script_checks", ""),
    ("enable_syslog", ""),
    ("encrypt", "mesh does not gossip"),
    ("encrypt_verify_incoming", "mesh does not gossip"),
    ("encrypt_verify_outgoing", "mesh does not gossip"),
    ("experiments", ""),
    ("gossip_lan", "mesh does not gossip"),
    ("gossip_wan", "mesh does not gossip"),
    ("leave_on_terminate", ""),
    ("license_path", ""),
    ("locality", ""),
    ("log_file", ""),
    ("log_json", ""),
    ("log_rotate_bytes", ""),
    ("log_rotate_duration", ""),
    ("log_rotate_max_files", ""),
    ("max_query_time", ""),
    ("node_id", ""),
    ("node_meta", ""),
    ("non_voting_server", ""),
    ("partition", ""),
    ("peering", ""),
    ("performance", ""),
    ("pid_file", ""),
    ("primary_gateways_interval", ""),
    ("protocol", ""),
    ("raft_boltdb", "mesh runs no Raft cluster"),
    ("raft_logstore", "mesh runs no Raft cluster"),
    ("raft_protocol", "mesh runs no Raft cluster"),
    ("raft_snapshot_interval", "mesh runs no Raft cluster"),
    ("raft_snapshot_threshold", "mesh runs no Raft cluster"),
    ("raft_trailing_logs", "mesh runs no Raft cluster"),
    ("read_replica", ""),
    ("reconnect_timeout", ""),
    ("reconnect_timeout_wan", ""),
    ("recursors", "mesh serves no DNS"),
    ("rejoin_after_leave", ""),
    ("reporting", ""),
    ("retry_interval", ""),
    ("retry_interval_wan", ""),
    (
        "retry_join",
        "mesh has no LAN gossip: every agent is a server of its datacenter",
    ),
    ("retry_max", ""),
    ("retry_max_wan", ""),
    ("rpc", ""),
    ("segment", ""),
    ("segments", ""),
    ("serf_lan", "mesh does not gossip"),
    ("serf_lan_allowed_cidrs", "mesh does not gossip"),
    ("serf_wan", "mesh does not gossip"),
    ("serf_wan_allowed_cidrs", "mesh does not gossip"),
    ("server_name", ""),
    ("server_rejoin_age_max", ""),
    ("session_ttl_min", ""),
    ("skip_leave_on_interrupt", ""),
    ("snapshot_agent", ""),
    ("start_join", "mesh has no LAN gossip"),
    ("syslog_facility", ""),
    ("tagged_addresses", ""),
    ("telemetry", "metrics are served at /v1/agent/metrics"),
    ("translate_wan_addrs", ""),
    ("ui", "mesh has no web UI"),
    ("ui_config", "mesh has no web UI"),
    ("ui_content_path", "mesh has no web UI"),
    ("ui_dir", "mesh has no web UI"),
    ("unix_sockets", ""),
    ("use_streaming_backend", ""),
    ("watches", ""),
    ("xds", ""),
    // Settings Consul documents as not set by users, accepted in its files all the same.
    ("acl_disabled_ttl", ""),
    ("ae_interval", ""),
    ("check_deregister_interval_min", ""),
    ("check_reap_interval", ""),
    ("consul", ""),
    ("revision", ""),
    ("segment_limit", ""),
    ("segment_name_limit", ""),
    ("sync_coordinate_interval_min", ""),
    ("sync_coordinate_rate_target", ""),
    ("version", ""),
    ("version_prerelease", ""),
    ("version_metadata", ""),
];

/// Deprecated top-level settings mesh ignores: (old, new).
pub(super) const TOP_DEPRECATED_IGNORED: &[(&str, &str)] = &[
    ("acl_agent_master_token", "acl.tokens.agent_recovery"),
    ("acl_down_policy", "acl.down_policy"),
    ("acl_ttl", "acl.token_ttl"),
    ("acl_enable_key_list_policy", "acl.enable_key_list_policy"),
    ("acl_enforce_version_8", "acl.enabled"),
    ("ca_path", "tls.defaults.ca_path"),
    ("tls_cipher_suites", "tls.defaults.tls_cipher_suites"),
    ("tls_min_version", "tls.defaults.tls_min_version"),
    ("verify_incoming_rpc", "tls.internal_rpc.verify_incoming"),
    (
        "verify_server_hostname",
        "tls.internal_rpc.verify_server_hostname",
    ),
    (
        "tls_prefer_server_cipher_suites",
        "(nothing: it is ignored)",
    ),
];

pub(super) const ACL_KEYS: &[&str] = &[
    "enabled",
    "default_policy",
    "down_policy",
    "enable_token_replication",
    "tokens",
    "policy_ttl",
    "role_ttl",
    "token_ttl",
    "disabled_ttl",
    "enable_key_list_policy",
    "enable_token_persistence",
    "msp_disable_bootstrap",
];

pub(super) const TOKEN_KEYS: &[&str] = &[
    "initial_management",
    "master",
    "replication",
    "agent",
    "default",
    "agent_recovery",
    "agent_master",
    "config_file_service_registration",
    "dns",
    "managed_service_provider",
];

pub(super) const CONNECT_KEYS: &[&str] = &[
    "enabled",
    "ca_provider",
    "ca_config",
    "enable_mesh_gateway_wan_federation",
    "enable_serverless_plugin",
    "test_ca_leaf_root_change_spread",
];

pub(super) const ADDRESS_KEYS: &[&str] = &["http", "https", "dns", "grpc", "grpc_tls"];

pub(super) const PORT_KEYS: &[&str] = &[
    "http",
    "https",
    "server",
    "dns",
    "grpc",
    "grpc_tls",
    "serf_lan",
    "serf_wan",
    "sidecar_min_port",
    "sidecar_max_port",
    "expose_min_port",
    "expose_max_port",
    "proxy_min_port",
    "proxy_max_port",
];

pub(super) const TLS_KEYS: &[&str] = &["defaults", "https", "internal_rpc", "grpc"];

pub(super) const TLS_SECTION_KEYS: &[&str] = &[
    "ca_file",
    "cert_file",
    "key_file",
    "verify_incoming",
    "verify_outgoing",
    "ca_path",
    "tls_min_version",
    "tls_cipher_suites",
];

pub(super) const HTTP_CONFIG_KEYS: &[&str] = &[
    "block_endpoints",
    "allow_write_http_from",
    "response_headers",
    "use_cache",
    "max_header_bytes",
];

/// `connect.ca_config` keys: (snake_case, Consul's field name).
pub(super) const CA_KEYS: &[(&str, &str)] = &[
    ("leaf_cert_ttl", "LeafCertTTL"),
    ("intermediate_cert_ttl", "IntermediateCertTTL"),
    ("root_cert_ttl", "RootCertTTL"),
    ("private_key_type", "PrivateKeyType"),
    ("private_key_bits", "PrivateKeyBits"),
    ("csr_max_per_second", "CSRMaxPerSecond"),
    ("csr_max_concurrent", "CSRMaxConcurrent"),
    ("skip_validate", "SkipValidate"),
    ("disable_cross_signing", "DisableCrossSigning"),
    ("private_key", "PrivateKey"),
    ("root_cert", "RootCert"),
];

/// `connect.ca_config` keys of the Vault and AWS providers: ignored with the `consul` provider,
/// as Consul does.
pub(super) const CA_OTHER_PROVIDER_KEYS: &[(&str, &str)] = &[
    ("address", "Address"),
    ("token", "Token"),
    ("root_pki_path", "RootPKIPath"),
    ("root_pki_namespace", "RootPKINamespace"),
    ("intermediate_pki_path", "IntermediatePKIPath"),
    ("intermediate_pki_namespace", "IntermediatePKINamespace"),
    ("ca_file", "CAFile"),
    ("ca_path", "CAPath"),
    ("cert_file", "CertFile"),
    ("key_file", "KeyFile"),
    ("tls_server_name", "TLSServerName"),
    ("tls_skip_verify", "TLSSkipVerify"),
    ("namespace", "Namespace"),
    ("auth_method", "AuthMethod"),
    ("existing_arn", "ExistingARN"),
    ("delete_on_exit", "DeleteOnExit"),
];

/// A known key spelled nearly like `key` (edit distance 1, or 2 for longer keys).
pub(super) fn did_you_mean<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if key.len() > 64 {
        return None;
    }
    let key = key.to_ascii_lowercase();
    let limit = if key.len() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(&key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// `storage` (mesh's own block).
pub(super) const STORAGE_KEYS: &[&str] = &["etcd"];

/// `storage.etcd`.
pub(super) const ETCD_KEYS: &[&str] = &[
    "endpoints",
    "prefix",
    "state_key_file",
    "lease_ttl",
    "ca_file",
    "cert_file",
    "key_file",
];
