//! `mesh acl policy create|list|read|update|delete`.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use super::format::{self, Policy};
use super::{id_from_partial, object_path, show};
use crate::cli::flags::{Api, Format, HttpFlags, load_data_source};
use crate::cli::{Doing, Failure, Outcome};
use mesh::client::percent_encode;

/// The built-in management policy's ID.
const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// `mesh acl policy …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Creates a policy.
    Create(PolicyCreate),
    /// Lists the policies.
    List(PolicyList),
    /// Shows one policy.
    Read(PolicyRead),
    /// Changes a policy.
    Update(PolicyUpdate),
    /// Deletes a policy.
    Delete(PolicyDelete),
}

impl PolicyCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            PolicyCommand::Create(a) => a.run().await,
            PolicyCommand::List(a) => a.run().await,
            PolicyCommand::Read(a) => a.run().await,
            PolicyCommand::Update(a) => a.run().await,
            PolicyCommand::Delete(a) => a.run().await,
        }
    }
}

/// `mesh acl policy create -name NAME -rules RULES|@FILE|- [-description D] [-valid-datacenter DC…]`.
#[derive(Debug, Args)]
pub(crate) struct PolicyCreate {
    /// The new policy's name
    #[arg(long)]
    pub(crate) name: String,
    /// A description of the policy
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// The rules (HCL or JSON): the text, @FILE, or - for stdin
    #[arg(long, value_name = "RULES")]
    pub(crate) rules: Option<String>,
    /// A datacenter the policy is valid in (repeatable; default: all)
    #[arg(long = "valid-datacenter", value_name = "DC")]
    pub(crate) valid_datacenter: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PolicyCreate {
    async fn run(self) -> Result<Outcome, Failure> {
        let rules = match &self.rules {
            Some(r) => load_data_source(r, "rules")?,
            None => String::new(),
        };
        let api = self.http.api()?;
        let mut body = json!({
            "Name": self.name,
            "Description": self.description,
            "Rules": rules,
        });
        if !self.valid_datacenter.is_empty() {
            body["Datacenters"] = json!(self.valid_datacenter);
        }
        let created: Value = api
            .put("/v1/acl/policy", &[], Some(body.into()))
            .await
            .doing("creating policy")?;
        show(&created, self.format, format::policy)
    }
}

/// `mesh acl policy list`.
#[derive(Debug, Args)]
pub(crate) struct PolicyList {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PolicyList {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let all: Value = api
            .get("/v1/acl/policies", &[])
            .await
            .doing("listing policies")?;
        show(&all, self.format, |p: &Vec<Policy>| format::policy_list(p))
    }
}

/// `mesh acl policy read -id ID|-name NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "name"])))]
pub(crate) struct PolicyRead {
    /// The policy's ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The policy's name
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PolicyRead {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let policy = read(&api, self.id.as_deref(), self.name.as_deref()).await?;
        show(&policy, self.format, format::policy)
    }
}

/// `mesh acl policy update -id ID|-name NAME [-name NEW] [-description D] [-rules R] [-valid-datacenter DC…] [-no-merge]`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).multiple(true).args(["id", "name"])))]
pub(crate) struct PolicyUpdate {
    /// The policy's ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The policy's name: which policy without -id, its new name with -id
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The new description
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// The new rules: the text, @FILE, or - for stdin
    #[arg(long, value_name = "RULES")]
    pub(crate) rules: Option<String>,
    /// A datacenter the policy is valid in (repeatable; replaces the list)
    #[arg(long = "valid-datacenter", value_name = "DC")]
    pub(crate) valid_datacenter: Vec<String>,
    /// Replace the policy with what the flags say instead of changing only what they name
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, value_name = "BOOL",
          default_missing_value = "true", default_value = "false",
          value_parser = crate::cli::flags::go_bool)]
    pub(crate) no_merge: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PolicyUpdate {
    async fn run(self) -> Result<Outcome, Failure> {
        let rules = match &self.rules {
            Some(r) => Some(load_data_source(r, "rules")?),
            None => None,
        };
        let api = self.http.api()?;
        let (lookup_name, new_name) = match &self.id {
            Some(_) => (None, self.name.clone()),
            None => (self.name.as_deref(), None),
        };
        let current = read(&api, self.id.as_deref(), lookup_name).await?;
        let current: Policy =
            serde_json::from_value(current).doing("decoding the current policy")?;
        let keep = |now: String| if self.no_merge { String::new() } else { now };
        let mut body = json!({
            "ID": current.id,
            "Name": new_name.unwrap_or(current.name),
            "Description": self.description.clone().unwrap_or_else(|| keep(current.description)),
            "Rules": rules.unwrap_or_else(|| keep(current.rules)),
        });
        let dcs = if !self.valid_datacenter.is_empty() || self.no_merge {
            self.valid_datacenter.clone()
        } else {
            current.datacenters.unwrap_or_default()
        };
        if !dcs.is_empty() {
            body["Datacenters"] = json!(dcs);
        }
        let updated: Value = api
            .put(&object_path("policy", &current.id), &[], Some(body.into()))
            .await
            .doing("updating policy")?;
        show(&updated, self.format, format::policy)
    }
}

/// `mesh acl policy delete -id ID|-name NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "name"])))]
pub(crate) struct PolicyDelete {
    /// The policy's ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The policy's name
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PolicyDelete {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let id = match (&self.id, &self.name) {
            (Some(id), _) => policy_id(&api, id).await?,
            (None, Some(name)) => {
                let p: Policy = serde_json::from_value(read(&api, None, Some(name)).await?)
                    .doing("decoding the policy")?;
                p.id
            }
            (None, None) => return Err(Failure::usage("Must specify the -id or -name parameter")),
        };
        api.delete(&object_path("policy", &id), &[])
            .await
            .doing(&format!("deleting policy {id}"))?;
        Ok(Outcome::ok(format!("Policy {id:?} deleted successfully")))
    }
}

/// A policy by (partial) ID or by name, as the server returns it.
async fn read(api: &Api, id: Option<&str>, name: Option<&str>) -> Result<Value, Failure> {
    match (id, name) {
        (Some(id), _) => {
            let id = policy_id(api, id).await?;
            api.get(&object_path("policy", &id), &[])
                .await
                .doing(&format!("reading policy {id}"))
        }
        (None, Some(name)) => api
            .get(
                &format!("/v1/acl/policy/name/{}", percent_encode(name)),
                &[],
            )
            .await
            .doing(&format!("reading policy {name:?}")),
        (None, None) => Err(Failure::usage("Must specify the -id or -name parameter")),
    }
}

/// The full ID of a (partial) policy ID; `global-management` names the built-in policy.
async fn policy_id(api: &Api, partial: &str) -> Result<String, Failure> {
    if partial == "global-management" {
        return Ok(GLOBAL_MANAGEMENT_ID.to_owned());
    }
    id_from_partial(api, partial, "/v1/acl/policies", "ID", "policy").await
}
