//! Request bodies decoded as Consul's Go decoder does: keys match a field exactly, then
//! case-insensitively (`name`, `NAME`, `Name`), plus the explicit snake_case aliases Consul
//! accepts; any other key is an error (`json: unknown field "<key>"`). Keys are rewritten to
//! the canonical names, so the typed decoders behind (mesh's own, or the ones here) see one
//! spelling. Opaque maps (`Meta`, `Config`) are left as written.

use serde_json::{Map, Value};

/// The shape of a JSON value, for key normalisation.
pub(crate) enum Shape {
    /// Anything; left as written.
    Any,
    /// An object with these fields.
    Obj(&'static [Field]),
    /// An array whose elements have this shape.
    List(&'static Shape),
    /// An object whose keys are free and whose values have this shape.
    Map(&'static Shape),
}

/// A field of an object shape.
pub(crate) struct Field {
    /// The canonical name (what is written out).
    pub(crate) name: &'static str,
    /// Other spellings accepted exactly (Consul's snake_case aliases).
    pub(crate) aliases: &'static [&'static str],
    /// The value's shape.
    pub(crate) shape: &'static Shape,
    /// Accepted and dropped (Consul ignores it here).
    pub(crate) ignored: bool,
}

const fn f(name: &'static str, shape: &'static Shape) -> Field {
    Field {
        name,
        aliases: &[],
        shape,
        ignored: false,
    }
}

const fn fa(name: &'static str, aliases: &'static [&'static str], shape: &'static Shape) -> Field {
    Field {
        name,
        aliases,
        shape,
        ignored: false,
    }
}

const fn ignored(name: &'static str, aliases: &'static [&'static str]) -> Field {
    Field {
        name,
        aliases,
        shape: &ANY,
        ignored: true,
    }
}

pub(crate) static ANY: Shape = Shape::Any;

/// Rewrites the keys of `v` to the canonical names of `shape`; the first unknown key is an
/// error in Go's words.
pub(crate) fn normalize(v: Value, shape: &Shape) -> Result<Value, String> {
    match (shape, v) {
        (Shape::Any, v) => Ok(v),
        (Shape::Obj(fields), Value::Object(map)) => {
            let mut out = Map::new();
            for (k, v) in map {
                let field = fields
                    .iter()
                    .find(|f| f.name == k || f.aliases.contains(&k.as_str()))
                    .or_else(|| {
                        fields.iter().find(|f| {
                            f.name.eq_ignore_ascii_case(&k)
                                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&k))
                        })
                    });
                match field {
                    Some(f) if f.ignored => {}
                    Some(f) => {
                        out.insert(f.name.to_owned(), normalize(v, f.shape)?);
                    }
                    None => return Err(unknown_field(&k)),
                }
            }
            Ok(Value::Object(out))
        }
        (Shape::List(inner), Value::Array(items)) => items
            .into_iter()
            .map(|i| normalize(i, inner))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (Shape::Map(inner), Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| normalize(v, inner).map(|v| (k, v)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        // A value of another type is left for the typed decoder to refuse.
        (_, v) => Ok(v),
    }
}

/// Go's unknown-field error, with CE's note for namespace and partition keys.
pub(crate) fn unknown_field(k: &str) -> String {
    let mut msg = format!("json: unknown field {}", super::error::go_quote(k));
    if k.eq_ignore_ascii_case("namespace") {
        msg.push_str(" - Namespaces are a Consul Enterprise feature");
    } else if k.eq_ignore_ascii_case("partition") {
        msg.push_str(" - Partitions are a Consul Enterprise feature");
    }
    msg
}

/// Parses a body as JSON (an empty body is `{}`) and normalises it to `shape`.
pub(crate) fn body(bytes: &[u8], shape: &Shape) -> Result<Value, String> {
    let v = parse(bytes)?;
    normalize(v, shape)
}

/// Decodes a body into `T` after normalising it to `shape`; errors are 400
/// `<prefix>: <error>` (`Policy decoding failed: json: unknown field "x"`).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    shape: &Shape,
    prefix: &str,
) -> Result<T, super::error::ApiError> {
    let fail = |e: String| super::error::ApiError::bad_request(format!("{prefix}: {e}"));
    let v = body(bytes, shape).map_err(fail)?;
    serde_json::from_value(v).map_err(|e| fail(e.to_string()))
}

/// Deserializes `null` as the default value (Go decodes `null` into a nil slice or zero
/// value).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// Parses a body as JSON; an empty body is `{}` (Consul decodes nothing then).
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

// ---- service definitions (agent/structs/service_definition.go and friends) -------------

static WEIGHTS: Shape = Shape::Obj(&[f("Passing", &ANY), f("Warning", &ANY)]);
static LOCALITY: Shape = Shape::Obj(&[f("Region", &ANY), f("Zone", &ANY)]);
static TAGGED: Shape = Shape::Obj(&[f("Address", &ANY), f("Port", &ANY)]);
static TAGGED_MAP: Shape = Shape::Map(&TAGGED);
static MESH_GATEWAY: Shape = Shape::Obj(&[f("Mode", &ANY)]);

static CHECK_FIELDS: &[Field] = &[
    fa("CheckID", &["ID", "check_id"], &ANY),
    f("Name", &ANY),
    f("Notes", &ANY),
    f("Status", &ANY),
    fa("ScriptArgs", &["script_args", "args"], &ANY),
    f("HTTP", &ANY),
    f("Method", &ANY),
    f("TCP", &ANY),
    f("UDP", &ANY),
    f("GRPC", &ANY),
    f("Interval", &ANY),
    f("Timeout", &ANY),
    f("TTL", &ANY),
    fa(
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
        &ANY,
    ),
    fa("AliasService", &["alias_service"], &ANY),
    fa("AliasNode", &["alias_node"], &ANY),
    fa("TLSSkipVerify", &["tls_skip_verify"], &ANY),
    fa("SuccessBeforePassing", &["success_before_passing"], &ANY),
    fa(
        "FailuresBeforeCritical",
        &["failures_before_critical"],
        &ANY,
    ),
    ignored("ServiceID", &["service_id"]),
];
static CHECK: Shape = Shape::Obj(CHECK_FIELDS);
static CHECKS: Shape = Shape::List(&CHECK);

static UPSTREAM: Shape = Shape::Obj(&[
    fa("DestinationType", &["destination_type"], &ANY),
    fa("DestinationNamespace", &["destination_namespace"], &ANY),
    fa("DestinationPartition", &["destination_partition"], &ANY),
    fa("DestinationPeer", &["destination_peer"], &ANY),
    fa("DestinationName", &["destination_name"], &ANY),
    f("Datacenter", &ANY),
    fa("LocalBindAddress", &["local_bind_address"], &ANY),
    fa("LocalBindPort", &["local_bind_port"], &ANY),
    fa("LocalBindSocketPath", &["local_bind_socket_path"], &ANY),
    fa("LocalBindSocketMode", &["local_bind_socket_mode"], &ANY),
    f("Config", &ANY),
    fa("MeshGateway", &["mesh_gateway"], &MESH_GATEWAY),
]);
static UPSTREAMS: Shape = Shape::List(&UPSTREAM);

static PROXY: Shape = Shape::Obj(&[
    fa(
        "DestinationServiceName",
        &["destination_service_name"],
        &ANY,
    ),
    fa("DestinationServiceID", &["destination_service_id"], &ANY),
    fa("LocalServiceAddress", &["local_service_address"], &ANY),
    fa("LocalServicePort", &["local_service_port"], &ANY),
    fa(
        "LocalServiceSocketPath",
        &["local_service_socket_path"],
        &ANY,
    ),
    f("Config", &ANY),
    f("Upstreams", &UPSTREAMS),
    fa("MeshGateway", &["mesh_gateway"], &MESH_GATEWAY),
]);

static CONNECT: Shape = Shape::Obj(&[
    f("Native", &ANY),
    fa("SidecarService", &["sidecar_service"], &SERVICE),
]);

/// A service definition (`PUT /v1/agent/service/register`).
pub(crate) static SERVICE: Shape = Shape::Obj(&[
    f("Kind", &ANY),
    f("ID", &ANY),
    f("Name", &ANY),
    f("Tags", &ANY),
    f("Address", &ANY),
    fa("TaggedAddresses", &["tagged_addresses"], &TAGGED_MAP),
    f("Meta", &ANY),
    f("Port", &ANY),
    fa("SocketPath", &["socket_path"], &ANY),
    fa("EnableTagOverride", &["enable_tag_override"], &ANY),
    f("Weights", &WEIGHTS),
    f("Locality", &LOCALITY),
    f("Check", &CHECK),
    f("Checks", &CHECKS),
    f("Token", &ANY),
    f("Proxy", &PROXY),
    f("Connect", &CONNECT),
]);

// ---- ACL ---------------------------------------------------------------------------------

static LINK: Shape = Shape::Obj(&[f("ID", &ANY), f("Name", &ANY)]);
static LINKS: Shape = Shape::List(&LINK);
static SERVICE_IDENTITY: Shape = Shape::Obj(&[f("ServiceName", &ANY), f("Datacenters", &ANY)]);
static NODE_IDENTITY: Shape = Shape::Obj(&[f("NodeName", &ANY), f("Datacenter", &ANY)]);
static TEMPLATED: Shape = Shape::Obj(&[f("TemplateName", &ANY), f("TemplateVariables", &ANY)]);
static SERVICE_IDENTITIES: Shape = Shape::List(&SERVICE_IDENTITY);
static NODE_IDENTITIES: Shape = Shape::List(&NODE_IDENTITY);
static TEMPLATED_LIST: Shape = Shape::List(&TEMPLATED);

/// An ACL policy (`ACLPolicy`).
pub(crate) static POLICY: Shape = Shape::Obj(&[
    f("ID", &ANY),
    f("Name", &ANY),
    f("Description", &ANY),
    f("Rules", &ANY),
    f("Datacenters", &ANY),
    f("Hash", &ANY),
    f("CreateIndex", &ANY),
    f("ModifyIndex", &ANY),
]);

/// An ACL token (`ACLToken`).
pub(crate) static TOKEN: Shape = Shape::Obj(&[
    f("AccessorID", &ANY),
    f("SecretID", &ANY),
    f("Description", &ANY),
    f("Policies", &LINKS),
    f("Roles", &LINKS),
    f("ServiceIdentities", &SERVICE_IDENTITIES),
    f("NodeIdentities", &NODE_IDENTITIES),
    f("TemplatedPolicies", &TEMPLATED_LIST),
    f("Local", &ANY),
    f("AuthMethod", &ANY),
    f("ExpirationTime", &ANY),
    f("ExpirationTTL", &ANY),
    f("CreateTime", &ANY),
    f("Hash", &ANY),
    f("CreateIndex", &ANY),
    f("ModifyIndex", &ANY),
]);

/// An ACL role (`ACLRole`).
pub(crate) static ROLE: Shape = Shape::Obj(&[
    f("ID", &ANY),
    f("Name", &ANY),
    f("Description", &ANY),
    f("Policies", &LINKS),
    f("ServiceIdentities", &SERVICE_IDENTITIES),
    f("NodeIdentities", &NODE_IDENTITIES),
    f("TemplatedPolicies", &TEMPLATED_LIST),
    f("Hash", &ANY),
    f("CreateIndex", &ANY),
    f("ModifyIndex", &ANY),
]);

// ---- Connect -----------------------------------------------------------------------------

/// `POST /v1/agent/connect/authorize`.
pub(crate) static AUTHORIZE: Shape = Shape::Obj(&[
    f("Target", &ANY),
    f("ClientCertURI", &ANY),
    f("ClientCertSerial", &ANY),
]);

/// `PUT /v1/connect/ca/configuration`.
pub(crate) static CA_CONFIG: Shape = Shape::Obj(&[
    f("Provider", &ANY),
    f("Config", &ANY),
    f("State", &ANY),
    fa(
        "ForceWithoutCrossSigning",
        &["force_without_cross_signing"],
        &ANY,
    ),
    f("CreateIndex", &ANY),
    f("ModifyIndex", &ANY),
]);

/// An intention (`structs.Intention`), as the exact and legacy endpoints take it.
pub(crate) static INTENTION: Shape = Shape::Obj(&[
    f("ID", &ANY),
    f("Description", &ANY),
    f("SourceNS", &ANY),
    f("SourceName", &ANY),
    f("DestinationNS", &ANY),
    f("DestinationName", &ANY),
    f("SourcePartition", &ANY),
    f("DestinationPartition", &ANY),
    f("SourcePeer", &ANY),
    f("SourceSamenessGroup", &ANY),
    f("SourceType", &ANY),
    f("Action", &ANY),
    f("Permissions", &ANY),
    f("JWT", &ANY),
    f("Meta", &ANY),
    f("Precedence", &ANY),
    f("CreatedAt", &ANY),
    f("UpdatedAt", &ANY),
    f("Hash", &ANY),
    f("CreateIndex", &ANY),
    f("ModifyIndex", &ANY),
]);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_case_insensitively_and_by_alias() {
        let v = json!({
            "name": "web", "ID": "web1", "enabletagoverride": true,
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
            "meta": {"someKey": "v"},
            "checks": [{"tcp": "127.0.0.1:80", "interval": "10s", "args": ["a"]}],
            "connect": {"sidecar_service": {"proxy": {"upstreams": [
                {"destination_name": "db", "datacenter": "dc2", "local_bind_port": 9191,
                 "mesh_gateway": {"mode": "local"}}]}}}
        });
        let out = normalize(v, &SERVICE).unwrap();
        assert_eq!(
            out,
            json!({
                "Name": "web", "ID": "web1", "EnableTagOverride": true,
                "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
                "Meta": {"someKey": "v"},
                "Checks": [{"TCP": "127.0.0.1:80", "Interval": "10s", "ScriptArgs": ["a"]}],
                "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
                    {"DestinationName": "db", "Datacenter": "dc2", "LocalBindPort": 9191,
                     "MeshGateway": {"Mode": "local"}}]}}}
            })
        );
    }

    #[test]
    fn unknown_keys_are_refused_in_go_words() {
        let e = normalize(json!({"Name": "x", "Bogus": 1}), &SERVICE).unwrap_err();
        assert_eq!(e, "json: unknown field \"Bogus\"");
        let e = normalize(json!({"Name": "x", "Namespace": "ns"}), &SERVICE).unwrap_err();
        assert!(
            e.ends_with("Namespaces are a Consul Enterprise feature"),
            "{e}"
        );
        let e = normalize(json!({"Connect": {"SidecarService": {"x": 1}}}), &SERVICE).unwrap_err();
        assert_eq!(e, "json: unknown field \"x\"");
    }
}
