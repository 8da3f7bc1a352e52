//! `mesh acl …`: policies, tokens, roles and the bootstrap, on `/v1/acl/*`.

use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::flags::{Api, Format, HttpFlags, pretty_json};
use crate::cli::{Doing, Failure, Outcome};
use mesh::client::percent_encode;

mod format;
mod policy;
mod role;
mod token;

/// `mesh acl …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Creates the first management token (once per datacenter).
    Bootstrap(BootstrapArgs),
    /// Manages ACL policies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Manages ACL tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Manages ACL roles.
    Role {
        #[command(subcommand)]
        command: role::RoleCommand,
    },
}

impl AclCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            AclCommand::Bootstrap(args) => args.run().await,
            AclCommand::Policy { command } => command.run().await,
            AclCommand::Token { command } => command.run().await,
            AclCommand::Role { command } => command.run().await,
        }
    }
}

/// `mesh acl bootstrap`.
#[derive(Debug, clap::Args)]
pub(crate) struct BootstrapArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    http: HttpFlags,
}

impl BootstrapArgs {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let token: Value = api
            .put("/v1/acl/bootstrap", &[], None)
            .await
            .doing("bootstrapping ACLs")?;
        show(&token, self.format, format::token)
    }
}

/// Prints an object the server returned: Consul's layout, or its JSON.
fn show<T: DeserializeOwned>(
    value: &Value,
    format: Format,
    pretty: impl Fn(&T) -> String,
) -> Result<Outcome, Failure> {
    match format {
        Format::Json => Ok(Outcome::ok(pretty_json(value))),
        Format::Pretty => {
            let typed: T =
                serde_json::from_value(value.clone()).doing("decoding the server's answer")?;
            Ok(Outcome::ok(pretty(&typed)))
        }
    }
}

/// The ID a partial ID names: itself when complete (36 characters) or a built-in name, else
/// the one ID of `list_path`'s objects (field `id_field`) that starts with it.
async fn id_from_partial(
    api: &Api,
    partial: &str,
    list_path: &str,
    id_field: &str,
    kind: &str,
) -> Result<String, Failure> {
    if partial.len() == 36 {
        return Ok(partial.to_owned());
    }
    let all: Vec<Value> = api
        .get(list_path, &[])
        .await
        .doing(&format!("looking up {kind} ID {partial:?}"))?;
    let mut matches = all
        .iter()
        .filter_map(|o| o.get(id_field).and_then(Value::as_str))
        .filter(|id| id.starts_with(partial));
    match (matches.next(), matches.next()) {
        (Some(id), None) => Ok(id.to_owned()),
        (None, _) => Err(Failure::new(
            format!("looking up {kind} ID {partial:?}"),
            format!("No such {kind} ID with prefix: {partial}"),
        )),
        (Some(_), Some(_)) => Err(Failure::new(
            format!("looking up {kind} ID {partial:?}"),
            format!("Partial {kind} ID is not unique: {partial}"),
        )),
    }
}

/// `/v1/acl/<kind>/<id>`.
fn object_path(kind: &str, id: &str) -> String {
    format!("/v1/acl/{kind}/{}", percent_encode(id))
}

/// `NAME[:DC1,DC2]` as a service identity.
fn service_identity(spec: &str) -> Result<Value, Failure> {
    let (name, dcs) = match spec.split_once(':') {
        Some((name, dcs)) => (
            name,
            dcs.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        None => (spec, Vec::new()),
    };
    if name.is_empty() {
        return Err(Failure::usage(format!(
            "-service-identity {spec:?}: the service name is empty"
        )));
    }
    let mut v = serde_json::json!({ "ServiceName": name });
    if !dcs.is_empty() {
        v["Datacenters"] = dcs.into();
    }
    Ok(v)
}

/// `NODE:DC` as a node identity.
fn node_identity(spec: &str) -> Result<Value, Failure> {
    match spec.split_once(':') {
        Some((node, dc)) if !node.is_empty() && !dc.is_empty() => {
            Ok(serde_json::json!({ "NodeName": node, "Datacenter": dc }))
        }
        _ => Err(Failure::usage(format!(
            "-node-identity {spec:?}: must be of the form NODE:DATACENTER"
        ))),
    }
}

/// Links by ID, then by name: `[{"ID": …}, …, {"Name": …}, …]`.
fn links(ids: &[String], names: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| serde_json::json!({ "ID": id }))
        .chain(names.iter().map(|n| serde_json::json!({ "Name": n })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_identities() {
        assert_eq!(
            service_identity("web").ok(),
            Some(serde_json::json!({"ServiceName": "web"}))
        );
        assert_eq!(
            service_identity("web:dc1, dc2").ok(),
            Some(serde_json::json!({"ServiceName": "web", "Datacenters": ["dc1", "dc2"]}))
        );
        assert!(service_identity(":dc1").is_err());
    }

    #[test]
    fn node_identities() {
        assert_eq!(
            node_identity("n1:dc1").ok(),
            Some(serde_json::json!({"NodeName": "n1", "Datacenter": "dc1"}))
        );
        assert!(node_identity("n1").is_err());
        assert!(node_identity("n1:").is_err());
    }

    #[test]
    fn links_by_id_then_name() {
        assert_eq!(
            links(&["a".into()], &["mesh-gateway".into()]),
            vec![
                serde_json::json!({"ID": "a"}),
                serde_json::json!({"Name": "mesh-gateway"})
            ]
        );
    }

    #[test]
    fn object_paths_are_escaped() {
        assert_eq!(object_path("policy", "a/b"), "/v1/acl/policy/a%2Fb");
    }
}
