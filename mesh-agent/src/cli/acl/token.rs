//! `mesh acl token create|list|read|update|delete`.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Map, Value};

use super::format::{self, Token};
use super::{id_from_partial, links, node_identity, object_path, service_identity, show};
use crate::cli::flags::{Api, Format, HttpFlags, Redacted};
use crate::cli::{Doing, Failure, Outcome};

/// The anonymous token's accessor ID.
const ANONYMOUS_ID: &str = "00000000-0000-0000-0000-000000000002";

/// `mesh acl token …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Creates a token.
    Create(TokenCreate),
    /// Lists the tokens.
    List(TokenList),
    /// Shows one token.
    Read(TokenRead),
    /// Changes a token.
    Update(TokenUpdate),
    /// Deletes a token.
    Delete(TokenDelete),
}

impl TokenCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            TokenCommand::Create(a) => a.run().await,
            TokenCommand::List(a) => a.run().await,
            TokenCommand::Read(a) => a.run().await,
            TokenCommand::Update(a) => a.run().await,
            TokenCommand::Delete(a) => a.run().await,
        }
    }
}

/// What a token links to: policies, roles, identities.
#[derive(Debug, Default, Args)]
pub(crate) struct TokenLinks {
    /// ID of a policy to link (repeatable)
    #[arg(long = "policy-id", value_name = "ID")]
    pub(crate) policy_id: Vec<String>,
    /// Name of a policy to link (repeatable)
    #[arg(long = "policy-name", value_name = "NAME")]
    pub(crate) policy_name: Vec<String>,
    /// ID of a role to link (repeatable)
    #[arg(long = "role-id", value_name = "ID")]
    pub(crate) role_id: Vec<String>,
    /// Name of a role to link (repeatable)
    #[arg(long = "role-name", value_name = "NAME")]
    pub(crate) role_name: Vec<String>,
    /// A service identity, NAME or NAME:DC1,DC2 (repeatable)
    #[arg(long = "service-identity", value_name = "NAME[:DCS]")]
    pub(crate) service_identity: Vec<String>,
    /// A node identity, NODE:DC (repeatable)
    #[arg(long = "node-identity", value_name = "NODE:DC")]
    pub(crate) node_identity: Vec<String>,
}

impl TokenLinks {
    /// Sets the body members these flags name; with `append`, adds to what is there.
    fn apply(&self, body: &mut Map<String, Value>, append: bool) -> Result<(), Failure> {
        let policies = links(&self.policy_id, &self.policy_name);
        let roles = links(&self.role_id, &self.role_name);
        let services = self
            .service_identity
            .iter()
            .map(|s| service_identity(s))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = self
            .node_identity
            .iter()
            .map(|s| node_identity(s))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, add) in [
            ("Policies", policies),
            ("Roles", roles),
            ("ServiceIdentities", services),
            ("NodeIdentities", nodes),
        ] {
            if add.is_empty() {
                continue;
            }
            let mut list = if append {
                match body.remove(key) {
                    Some(Value::Array(existing)) => existing,
                    _ => Vec::new(),
                }
            } else {
                Vec::new()
            };
            list.extend(add);
            body.insert(key.to_owned(), Value::Array(list));
        }
        Ok(())
    }
}

/// `mesh acl token create -description D -policy-name P… [-role-name R…] [-service-identity S…] [-local]`.
#[derive(Debug, Args)]
pub(crate) struct TokenCreate {
    /// A description of the token
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    #[command(flatten)]
    pub(crate) links: TokenLinks,
    /// Make the token local to this datacenter (not replicated)
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) local: bool,
    /// A lifetime after which the token expires (Go duration: 1h, 30m)
    #[arg(long = "expires-ttl", value_name = "DURATION")]
    pub(crate) expires_ttl: Option<String>,
    /// The accessor ID to use instead of a generated one
    #[arg(long, value_name = "UUID")]
    pub(crate) accessor: Option<String>,
    /// The secret ID to use instead of a generated one
    #[arg(long, value_name = "UUID")]
    pub(crate) secret: Option<Redacted>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl TokenCreate {
    async fn run(self) -> Result<Outcome, Failure> {
        let mut body = Map::new();
        body.insert("Description".into(), self.description.clone().into());
        body.insert("Local".into(), self.local.into());
        self.links.apply(&mut body, false)?;
        if let Some(ttl) = &self.expires_ttl {
            body.insert("ExpirationTTL".into(), ttl.clone().into());
        }
        if let Some(a) = &self.accessor {
            body.insert("AccessorID".into(), a.clone().into());
        }
        if let Some(s) = &self.secret {
            body.insert("SecretID".into(), s.0.clone().into());
        }
        let api = self.http.api()?;
        let created: Value = api
            .put("/v1/acl/token", &[], Some(Value::Object(body).into()))
            .await
            .doing("creating token")?;
        show(&created, self.format, format::token)
    }
}

/// `mesh acl token list`.
#[derive(Debug, Args)]
pub(crate) struct TokenList {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl TokenList {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let all: Value = api
            .get("/v1/acl/tokens", &[])
            .await
            .doing("listing tokens")?;
        show(&all, self.format, |t: &Vec<Token>| format::token_list(t))
    }
}

/// `mesh acl token read -id ID|-self`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "self_"])))]
pub(crate) struct TokenRead {
    /// The token's accessor ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Read the token the request is made with
    #[arg(long = "self", id = "self_", num_args = 0..=1, require_equals = true, value_name = "BOOL",
          default_missing_value = "true", default_value = "false",
          value_parser = crate::cli::flags::go_bool)]
    pub(crate) self_: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl TokenRead {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let token: Value = match (&self.id, self.self_) {
            (_, true) => api
                .get("/v1/acl/token/self", &[])
                .await
                .doing("reading the token in use")?,
            (Some(id), false) => {
                let id = token_id(&api, id).await?;
                api.get(&object_path("token", &id), &[])
                    .await
                    .doing(&format!("reading token {id}"))?
            }
            (None, false) => return Err(Failure::usage("Must specify the -id or -self parameter")),
        };
        show(&token, self.format, format::token)
    }
}

/// `mesh acl token update -id ID [-description D] [-policy-name P…] [-append-policy-name P…] …`.
#[derive(Debug, Args)]
pub(crate) struct TokenUpdate {
    /// The token's accessor ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: String,
    /// The new description
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Links that replace the token's links of the same kind
    #[command(flatten)]
    pub(crate) links: TokenLinks,
    /// ID of a policy to add (repeatable)
    #[arg(long = "append-policy-id", value_name = "ID")]
    pub(crate) append_policy_id: Vec<String>,
    /// Name of a policy to add (repeatable)
    #[arg(long = "append-policy-name", value_name = "NAME")]
    pub(crate) append_policy_name: Vec<String>,
    /// ID of a role to add (repeatable)
    #[arg(long = "append-role-id", value_name = "ID")]
    pub(crate) append_role_id: Vec<String>,
    /// Name of a role to add (repeatable)
    #[arg(long = "append-role-name", value_name = "NAME")]
    pub(crate) append_role_name: Vec<String>,
    /// A service identity to add (repeatable)
    #[arg(long = "append-service-identity", value_name = "NAME[:DCS]")]
    pub(crate) append_service_identity: Vec<String>,
    /// A node identity to add (repeatable)
    #[arg(long = "append-node-identity", value_name = "NODE:DC")]
    pub(crate) append_node_identity: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl TokenUpdate {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let id = token_id(&api, &self.id).await?;
        let current: Value = api
            .get(&object_path("token", &id), &[])
            .await
            .doing(&format!("reading token {id}"))?;
        let Value::Object(current) = current else {
            return Err(Failure::new(
                format!("reading token {id}"),
                "the server's answer is not an object",
            ));
        };
        // What an update may carry: the token's identity and its links, not its indexes.
        let mut body: Map<String, Value> = current
            .into_iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "AccessorID"
                        | "SecretID"
                        | "Description"
                        | "Policies"
                        | "Roles"
                        | "ServiceIdentities"
                        | "NodeIdentities"
                        | "TemplatedPolicies"
                        | "Local"
                        | "ExpirationTime"
                )
            })
            .collect();
        if let Some(d) = &self.description {
            body.insert("Description".into(), d.clone().into());
        }
        self.links.apply(&mut body, false)?;
        TokenLinks {
            policy_id: self.append_policy_id.clone(),
            policy_name: self.append_policy_name.clone(),
            role_id: self.append_role_id.clone(),
            role_name: self.append_role_name.clone(),
            service_identity: self.append_service_identity.clone(),
            node_identity: self.append_node_identity.clone(),
        }
        .apply(&mut body, true)?;
        let updated: Value = api
            .put(
                &object_path("token", &id),
                &[],
                Some(Value::Object(body).into()),
            )
            .await
            .doing(&format!("updating token {id}"))?;
        show(&updated, self.format, format::token)
    }
}

/// `mesh acl token delete -id ID`.
#[derive(Debug, Args)]
pub(crate) struct TokenDelete {
    /// The token's accessor ID (a unique prefix is enough)
    #[arg(long)]
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl TokenDelete {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let id = token_id(&api, &self.id).await?;
        api.delete(&object_path("token", &id), &[])
            .await
            .doing(&format!("deleting token {id}"))?;
        Ok(Outcome::ok(format!("Token {id:?} deleted successfully")))
    }
}

/// The full accessor ID of a (partial) one; `anonymous` names the anonymous token.
async fn token_id(api: &Api, partial: &str) -> Result<String, Failure> {
    if partial == "anonymous" {
        return Ok(ANONYMOUS_ID.to_owned());
    }
    id_from_partial(api, partial, "/v1/acl/tokens", "AccessorID", "token").await
}
