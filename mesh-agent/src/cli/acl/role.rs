//! `mesh acl role create|list|read|delete`.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Map, Value};

use super::format::{self, Role};
use super::{id_from_partial, links, node_identity, object_path, service_identity, show};
use crate::cli::flags::{Api, Format, HttpFlags};
use crate::cli::{Doing, Failure, Outcome};
use mesh::client::percent_encode;

/// `mesh acl role …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// Creates a role.
    Create(RoleCreate),
    /// Lists the roles.
    List(RoleList),
    /// Shows one role.
    Read(RoleWhich),
    /// Deletes a role.
    Delete(RoleWhich),
}

impl RoleCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            RoleCommand::Create(a) => a.run().await,
            RoleCommand::List(a) => a.run().await,
            RoleCommand::Read(a) => {
                let api = a.http.api()?;
                let role = read(&api, a.id.as_deref(), a.name.as_deref()).await?;
                show(&role, a.format, format::role)
            }
            RoleCommand::Delete(a) => {
                let api = a.http.api()?;
                let role: Role =
                    serde_json::from_value(read(&api, a.id.as_deref(), a.name.as_deref()).await?)
                        .doing("decoding the role")?;
                api.delete(&object_path("role", &role.id), &[])
                    .await
                    .doing(&format!("deleting role {}", role.id))?;
                Ok(Outcome::ok(format!(
                    "Role {:?} deleted successfully",
                    role.id
                )))
            }
        }
    }
}

/// `mesh acl role create -name NAME [-description D] [-policy-name P…] [-service-identity S…]`.
#[derive(Debug, Args)]
pub(crate) struct RoleCreate {
    /// The new role's name
    #[arg(long)]
    pub(crate) name: String,
    /// A description of the role
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// ID of a policy to link (repeatable)
    #[arg(long = "policy-id", value_name = "ID")]
    pub(crate) policy_id: Vec<String>,
    /// Name of a policy to link (repeatable)
    #[arg(long = "policy-name", value_name = "NAME")]
    pub(crate) policy_name: Vec<String>,
    /// A service identity, NAME or NAME:DC1,DC2 (repeatable)
    #[arg(long = "service-identity", value_name = "NAME[:DCS]")]
    pub(crate) service_identity: Vec<String>,
    /// A node identity, NODE:DC (repeatable)
    #[arg(long = "node-identity", value_name = "NODE:DC")]
    pub(crate) node_identity: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl RoleCreate {
    async fn run(self) -> Result<Outcome, Failure> {
        let mut body = Map::new();
        body.insert("Name".into(), self.name.clone().into());
        body.insert("Description".into(), self.description.clone().into());
        let policies = links(&self.policy_id, &self.policy_name);
        if !policies.is_empty() {
            body.insert("Policies".into(), policies.into());
        }
        let services = self
            .service_identity
            .iter()
            .map(|s| service_identity(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !services.is_empty() {
            body.insert("ServiceIdentities".into(), services.into());
        }
        let nodes = self
            .node_identity
            .iter()
            .map(|s| node_identity(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !nodes.is_empty() {
            body.insert("NodeIdentities".into(), nodes.into());
        }
        let api = self.http.api()?;
        let created: Value = api
            .put("/v1/acl/role", &[], Some(Value::Object(body).into()))
            .await
            .doing("creating role")?;
        show(&created, self.format, format::role)
    }
}

/// `mesh acl role list`.
#[derive(Debug, Args)]
pub(crate) struct RoleList {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl RoleList {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let all: Value = api.get("/v1/acl/roles", &[]).await.doing("listing roles")?;
        show(&all, self.format, |r: &Vec<Role>| format::role_list(r))
    }
}

/// `-id ID|-name NAME` for `mesh acl role read` and `delete`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "name"])))]
pub(crate) struct RoleWhich {
    /// The role's ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The role's name
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// A role by (partial) ID or by name, as the server returns it.
async fn read(api: &Api, id: Option<&str>, name: Option<&str>) -> Result<Value, Failure> {
    match (id, name) {
        (Some(id), _) => {
            let id = id_from_partial(api, id, "/v1/acl/roles", "ID", "role").await?;
            api.get(&object_path("role", &id), &[])
                .await
                .doing(&format!("reading role {id}"))
        }
        (None, Some(name)) => api
            .get(&format!("/v1/acl/role/name/{}", percent_encode(name)), &[])
            .await
            .doing(&format!("reading role {name:?}")),
        (None, None) => Err(Failure::usage("Must specify the -id or -name parameter")),
    }
}
