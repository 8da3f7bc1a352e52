//! ACL policies, roles and tokens: create, read, update, delete.

use super::*;

/// ACL policies, roles and tokens of a [`Datacenter`]: `dc.acl()`. A cheap borrowed
/// handle; every write takes the caller's token [`Secret`].
#[derive(Clone, Copy, Debug)]
pub struct Acl<'a> {
    pub(super) dc: &'a Datacenter,
}

impl Acl<'_> {
    /// Resolves a token secret to its authorizer. The empty secret is the anonymous token.
    pub fn authorizer(&self, secret: &Secret) -> Result<Authorizer, Error> {
        self.dc.inner.authorizer(secret.expose_secret())
    }

    /// Creates a policy from rules text (HCL or JSON; several JSON objects one after another
    /// are read as their union). Needs `acl:write`. Names are unique: the policy and its name
    /// are written in one transaction that fails if the name is taken, so of two concurrent
    /// creations with one name exactly one succeeds.
    ///
    /// ```
    /// use mesh::intentions::acl::DefaultPolicy;
    /// use mesh::{Datacenter, DatacenterConfig, Secret, TokenSpec};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.enabled = true;
    /// config.acl.default_policy = DefaultPolicy::Deny;
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let management = Secret::new("a-management-secret");
    /// let acl = dc.acl();
    /// acl.policy_create(&management, "web", "", r#"service "web" { policy = "write" }"#)
    ///     .await?;
    /// let token = acl
    ///     .token_create(
    ///         &management,
    ///         TokenSpec {
    ///             policy_names: vec!["web".into()],
    ///             ..TokenSpec::default()
    ///         },
    ///     )
    ///     .await?;
    /// let web = Secret::new(token.secret_id);
    /// assert!(acl.authorizer(&web)?.service_write("web").is_allowed());
    /// assert!(!acl.authorizer(&web)?.service_write("db").is_allowed());
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn policy_create(
        &self,
        token: &Secret,
        name: &str,
        description: &str,
        rules: &str,
    ) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy create", name);
        during(op, async {
            self.policy_create_with(
                token,
                PolicySpec {
                    name: name.to_owned(),
                    description: description.to_owned(),
                    rules: rules.to_owned(),
                    datacenters: Vec::new(),
                },
            )
            .await
        })
        .await
    }

    /// Creates a policy from a [`PolicySpec`], with the datacenters it applies in. Needs
    /// `acl:write`; names are unique and follow Consul's rule (see [`PolicySpec::name`]).
    pub async fn policy_create_with(
        &self,
        token: &Secret,
        spec: PolicySpec,
    ) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy create", &spec.name);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            check_acl_name("policy", &spec.name)?;
            // Parse now so a bad policy is refused with its position, before anything is written.
            let record = PolicyRecord {
                id: ids::uuid()?,
                name: spec.name.clone(),
                description: spec.description,
                rules: spec.rules,
                datacenters: spec.datacenters,
            };
            record.to_policy()?;
            let name = &spec.name;
            let ops = vec![
                upsert_cas(
                    tables::ACL_POLICIES,
                    &record.id,
                    json(&record)?,
                    Index::ZERO,
                ),
                name_claim(tables::ACL_POLICY_NAMES, name, &record.id)?,
            ];
            self.dc
                .global_txn(token, tables::ACL_POLICIES, ops)
                .await
                .map_err(|e| conflict_as(e, format!("policy {name:?}")))?;
            tracing::info!(policy = %record.id, name, "ACL policy created");
            Ok(record)
        })
        .await
    }

    /// Creates a policy from a rules file on disk (`-rules @file`).
    pub async fn policy_create_from_file(
        &self,
        token: &Secret,
        name: &str,
        description: &str,
        path: &std::path::Path,
    ) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy create", name);
        during(op, async {
            let rules = std::fs::read_to_string(path)?;
            self.policy_create(token, name, description, &rules).await
        })
        .await
    }

    /// A policy by id, as stored.
    pub async fn policy_read(&self, id: &str) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy read", id);
        during(op, async {
            self.dc.stored(tables::ACL_POLICIES, id, "policy").await
        })
        .await
    }

    /// A policy by name, as stored.
    pub async fn policy_read_by_name(&self, name: &str) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy read", name);
        during(op, async {
            match self.dc.name_owner(tables::ACL_POLICY_NAMES, name).await? {
                Some(id) => self.policy_read(&id).await,
                None => Err(ErrorKind::NotFound(format!("policy {name:?}")).into()),
            }
        })
        .await
    }

    /// Replaces a policy's name, description and rules; its datacenters stay. Needs
    /// `acl:write`. The built-in policies cannot be changed. A new name must be free, as on
    /// creation.
    pub async fn policy_update(
        &self,
        token: &Secret,
        id: &str,
        name: &str,
        description: &str,
        rules: &str,
    ) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy update", id);
        during(op, async {
            let old = self.policy_read(id).await?;
            self.policy_update_with(
                token,
                id,
                PolicySpec {
                    name: name.to_owned(),
                    description: description.to_owned(),
                    rules: rules.to_owned(),
                    datacenters: old.datacenters,
                },
            )
            .await
        })
        .await
    }

    /// Replaces a policy's name, description, rules and datacenters. Needs `acl:write`. A new
    /// name must be free, as on creation.
    pub async fn policy_update_with(
        &self,
        token: &Secret,
        id: &str,
        spec: PolicySpec,
    ) -> Result<PolicyRecord, Error> {
        let op = Operation::new("acl policy update", id);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            check_acl_name("policy", &spec.name)?;
            let old = self.policy_read(id).await?;
            let name = spec.name.as_str();
            let record = PolicyRecord {
                id: id.to_owned(),
                name: name.to_owned(),
                description: spec.description.clone(),
                rules: spec.rules.clone(),
                datacenters: spec.datacenters.clone(),
            };
            record.to_policy()?;
            let mut ops = vec![upsert(tables::ACL_POLICIES, id, json(&record)?)];
            ops.extend(rename(tables::ACL_POLICY_NAMES, &old.name, name, id)?);
            self.dc
                .global_txn(token, tables::ACL_POLICIES, ops)
                .await
                .map_err(|e| conflict_as(e, format!("policy {name:?}")))?;
            Ok(record)
        })
        .await
    }

    /// Deletes a policy; tokens and roles that link it lose its rules at once. Needs
    /// `acl:write`. The built-in policies cannot be deleted.
    pub async fn policy_delete(&self, token: &Secret, id: &str) -> Result<(), Error> {
        let op = Operation::new("acl policy delete", id);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            let old = self.policy_read(id).await?;
            self.dc
                .delete_named(
                    token,
                    tables::ACL_POLICIES,
                    tables::ACL_POLICY_NAMES,
                    id,
                    &old.name,
                )
                .await?;
            tracing::info!(policy = %id, name = %old.name, "ACL policy deleted");
            Ok(())
        })
        .await
    }

    /// Creates a role linking policies by name. Needs `acl:write`. Names are unique, as for
    /// policies.
    pub async fn role_create(
        &self,
        token: &Secret,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        let op = Operation::new("acl role create", name);
        during(op, async {
            self.role_create_with(token, role_spec(name, policy_names, service_identities))
                .await
        })
        .await
    }

    /// Creates a role from a [`RoleSpec`]: description, policies, datacenter-limited service
    /// identities and node identities. Needs `acl:write`. Names are unique.
    pub async fn role_create_with(
        &self,
        token: &Secret,
        spec: RoleSpec,
    ) -> Result<RoleRecord, Error> {
        let op = Operation::new("acl role create", &spec.name);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            check_acl_name("role", &spec.name)?;
            let name = spec.name.clone();
            let record = self.dc.role_record(ids::uuid()?, spec)?;
            let ops = vec![
                upsert_cas(tables::ACL_ROLES, &record.id, json(&record)?, Index::ZERO),
                name_claim(tables::ACL_ROLE_NAMES, &name, &record.id)?,
            ];
            self.dc
                .global_txn(token, tables::ACL_ROLES, ops)
                .await
                .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
            Ok(record)
        })
        .await
    }

    /// A role by id, as stored.
    pub async fn role_read(&self, id: &str) -> Result<RoleRecord, Error> {
        let op = Operation::new("acl role read", id);
        during(op, async {
            self.dc.stored(tables::ACL_ROLES, id, "role").await
        })
        .await
    }

    /// Replaces a role's name, policies and service identities (its description and node
    /// identities are cleared). Needs `acl:write`.
    pub async fn role_update(
        &self,
        token: &Secret,
        id: &str,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        let op = Operation::new("acl role update", id);
        during(op, async {
            self.role_update_with(token, id, role_spec(name, policy_names, service_identities))
                .await
        })
        .await
    }

    /// Replaces a role with a [`RoleSpec`]. Needs `acl:write`. A new name must be free.
    pub async fn role_update_with(
        &self,
        token: &Secret,
        id: &str,
        spec: RoleSpec,
    ) -> Result<RoleRecord, Error> {
        let op = Operation::new("acl role update", id);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            check_acl_name("role", &spec.name)?;
            let old = self.role_read(id).await?;
            let name = spec.name.clone();
            let record = self.dc.role_record(id.to_owned(), spec)?;
            let mut ops = vec![upsert(tables::ACL_ROLES, id, json(&record)?)];
            ops.extend(rename(tables::ACL_ROLE_NAMES, &old.name, &name, id)?);
            self.dc
                .global_txn(token, tables::ACL_ROLES, ops)
                .await
                .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
            Ok(record)
        })
        .await
    }

    /// Deletes a role. Needs `acl:write`.
    pub async fn role_delete(&self, token: &Secret, id: &str) -> Result<(), Error> {
        let op = Operation::new("acl role delete", id);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            let old = self.role_read(id).await?;
            self.dc
                .delete_named(
                    token,
                    tables::ACL_ROLES,
                    tables::ACL_ROLE_NAMES,
                    id,
                    &old.name,
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Creates a token; the returned record holds its secret. Needs `acl:write`. A local token
    /// stays in this datacenter; a global one is written in the primary and replicated. A
    /// chosen accessor or secret must be a UUID not reserved for built-ins, and free (else
    /// [`ErrorKind::Conflict`]); an expiry must lie between one minute and 24 hours ahead.
    pub async fn token_create(
        &self,
        token: &Secret,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        let op = Operation::named("acl token create");
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            let accessor = match &spec.accessor_id {
                Some(a) => {
                    check_token_uuid("AccessorID", a)?;
                    if self.token_read(a).await.is_ok() {
                        return Err(ErrorKind::Conflict(format!("token AccessorID {a:?}")).into());
                    }
                    a.clone()
                }
                None => ids::uuid()?,
            };
            let secret = match &spec.secret_id {
                Some(s) => {
                    check_token_uuid("SecretID", s.expose_secret())?;
                    if self.dc.inner.acl.load().token(s.expose_secret()).is_some()
                        || self
                            .token_list()
                            .await?
                            .iter()
                            .any(|t| t.secret_id == s.expose_secret())
                    {
                        return Err(ErrorKind::Conflict("token SecretID".into()).into());
                    }
                    s.expose_secret().to_owned()
                }
                None => ids::uuid()?,
            };
            let now = crate::acl::unix_now();
            let expiration = match spec.expiration {
                Some(at) => Some(check_expiration(at, now)?),
                None => None,
            };
            let mut record = self.dc.token_record(accessor, secret, spec)?;
            record.expiration_time = expiration;
            record.create_time = Some(now);
            record.to_token()?;
            self.dc
                .store_token(token, &record, Some(Index::ZERO))
                .await
                .map_err(|e| conflict_as(e, "token AccessorID".into()))?;
            tracing::info!(accessor = %record.accessor_id, local = record.local, "ACL token created");
            Ok(record)
        })
        .await
    }

    /// Bootstraps ACLs: creates the first management token (linked to the global-management
    /// policy) and returns it, secret included. Possible once, in the primary, and only when
    /// no global token was ever written: not after `acl.tokens.initial_management` created
    /// one, nor after an earlier bootstrap, even if that token was deleted since (Consul's
    /// reset index rule; the refusal is [`ErrorKind::BootstrapNotAllowed`] with that index). A
    /// chosen `secret` must be a free UUID. No token is needed: this is how the first one
    /// is made.
    pub async fn bootstrap(&self, secret: Option<&Secret>) -> Result<TokenRecord, Error> {
        let op = Operation::named("acl bootstrap");
        during(op, async {
            if !self.dc.inner.config.acl.enabled {
                return Err(Error::invalid_msg("ACL support disabled"));
            }
            if !self.dc.inner.config.is_primary() {
                return Err(ErrorKind::PrimaryOnly("ACL bootstrap".into()).into());
            }
            let _one = self.dc.inner.bootstrap.lock().await;
            let listing = self.dc.inner.store.list(&table(tables::ACL_TOKENS)).await?;
            if listing.index != Index::ZERO || !listing.records.is_empty() {
                let reset_index = listing
                    .records
                    .iter()
                    .map(|r| r.create_index.0)
                    .min()
                    .unwrap_or(listing.index.0)
                    .max(1);
                return Err(ErrorKind::BootstrapNotAllowed { reset_index }.into());
            }
            let secret = match secret {
                Some(s) => {
                    check_token_uuid("SecretID", s.expose_secret())?;
                    if self.dc.inner.acl.load().token(s.expose_secret()).is_some() {
                        return Err(ErrorKind::Conflict("token SecretID".into()).into());
                    }
                    s.expose_secret().to_owned()
                }
                None => ids::uuid()?,
            };
            let record = TokenRecord {
                accessor_id: ids::uuid()?,
                secret_id: secret,
                description: "Bootstrap Token (Global Management)".into(),
                policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
                roles: Vec::new(),
                service_identities: Vec::new(),
                node_identities: Vec::new(),
                local: false,
                expiration_time: None,
                create_time: Some(crate::acl::unix_now()),
            };
            let op = TxnOp::Upsert {
                table: table(tables::ACL_TOKENS),
                id: record.accessor_id.clone(),
                value: json(&record)?,
                cas: Some(Index::ZERO),
            };
            // No caller authority to check (this makes the first one), but the record is decoded
            // and validated as every write is; the bootstrap rule above is the authorization.
            authz::decode(&op).map_err(refused)?;
            self.dc.inner.store.txn(vec![op]).await?;
            self.dc.inner.refresh(tables::ACL_TOKENS).await?;
            tracing::info!(accessor = %record.accessor_id, "ACL bootstrapped");
            Ok(record)
        })
        .await
    }

    /// A token by accessor id, as stored (global or local to this datacenter).
    pub async fn token_read(&self, accessor: &str) -> Result<TokenRecord, Error> {
        let op = Operation::new("acl token read", accessor);
        during(op, async {
            let global = table(tables::ACL_TOKENS);
            let local = table(tables::ACL_LOCAL_TOKENS);
            for t in [&global, &local] {
                if let Some(rec) = self.dc.inner.store.get(t, accessor).await? {
                    return decode::<TokenRecord>(&rec).ok_or_else(|| {
                        Error::from(ErrorKind::Corrupt(format!(
                            "stored token {accessor} does not decode"
                        )))
                    });
                }
            }
            Err(ErrorKind::NotFound(format!("token {accessor:?}")).into())
        })
        .await
    }

    /// Replaces a token's description, policies, roles, service and node identities; its
    /// accessor, secret, expiry, creation time and locality stay (a spec naming other ones
    /// is refused). Needs `acl:write`.
    pub async fn token_update(
        &self,
        token: &Secret,
        accessor: &str,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        let op = Operation::new("acl token update", accessor);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            let old = self.token_read(accessor).await?;
            if spec.local != old.local {
                return Err(Error::invalid_msg(
                    "a token's locality cannot change: create a new token",
                ));
            }
            if spec.accessor_id.as_deref().is_some_and(|a| a != accessor) {
                return Err(Error::invalid_msg(
                    "Token Accessor ID in URL and payload do not match",
                ));
            }
            if spec
                .secret_id
                .as_ref()
                .is_some_and(|s| s.expose_secret() != old.secret_id)
            {
                return Err(Error::invalid_msg(
                    "Changing a token's SecretID is not permitted",
                ));
            }
            if let Some(at) = spec.expiration {
                let secs = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if Some(secs) != old.expiration_time {
                    return Err(Error::invalid_msg(format!(
                        "Cannot change expiration time of {accessor}"
                    )));
                }
            }
            let mut record =
                self.dc
                    .token_record(old.accessor_id.clone(), old.secret_id.clone(), spec)?;
            record.expiration_time = old.expiration_time;
            record.create_time = old.create_time;
            self.dc.store_token(token, &record, None).await?;
            Ok(record)
        })
        .await
    }

    /// Deletes a token: its secret is refused here at once and in every other datacenter
    /// once the deletion has replicated there. Needs `acl:write`.
    pub async fn token_delete(&self, token: &Secret, accessor: &str) -> Result<(), Error> {
        let op = Operation::new("acl token delete", accessor);
        during(op, async {
            self.dc.require(token, acl_write(), None)?;
            let old = self.token_read(accessor).await?;
            if old.local {
                self.dc
                    .inner
                    .store
                    .delete(&table(tables::ACL_LOCAL_TOKENS), accessor, None)
                    .await?;
                self.dc.inner.rebuild_acl().await?;
            } else {
                self.dc
                    .delete_global(token, tables::ACL_TOKENS, accessor)
                    .await?;
            }
            tracing::info!(accessor, "ACL token deleted");
            Ok(())
        })
        .await
    }
    /// Every policy, as stored, by name. A stored policy that does not decode is left out
    /// and logged.
    pub async fn policy_list(&self) -> Result<Vec<PolicyRecord>, Error> {
        let mut all: Vec<PolicyRecord> = self.dc.stored_all(tables::ACL_POLICIES).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Every role, as stored, by name.
    pub async fn role_list(&self) -> Result<Vec<RoleRecord>, Error> {
        let mut all: Vec<RoleRecord> = self.dc.stored_all(tables::ACL_ROLES).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Every token, as stored: the global ones, then those local to this datacenter.
    pub async fn token_list(&self) -> Result<Vec<TokenRecord>, Error> {
        let mut all: Vec<TokenRecord> = self.dc.stored_all(tables::ACL_TOKENS).await?;
        all.extend(
            self.dc
                .stored_all::<TokenRecord>(tables::ACL_LOCAL_TOKENS)
                .await?,
        );
        Ok(all)
    }
}

impl Datacenter {
    fn role_record(&self, id: String, spec: RoleSpec) -> Result<RoleRecord, Error> {
        let snap = self.inner.acl.load();
        let record = RoleRecord {
            id,
            name: spec.name,
            description: spec.description,
            policies: policy_ids(&snap, spec.policy_names.iter().map(String::as_str))?,
            service_identities: spec
                .service_identities
                .into_iter()
                .map(|(service_name, datacenters)| ServiceIdentityRecord {
                    service_name,
                    datacenters,
                })
                .collect(),
            node_identities: spec
                .node_identities
                .into_iter()
                .map(|(node_name, datacenter)| NodeIdentityRecord {
                    node_name,
                    datacenter,
                })
                .collect(),
        };
        record.to_role()?;
        Ok(record)
    }

    fn token_record(
        &self,
        accessor_id: String,
        secret_id: String,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        let snap = self.inner.acl.load();
        let roles = spec
            .role_names
            .iter()
            .map(|n| {
                snap.role_by_name(n)
                    .map(|r| r.id().to_string())
                    .ok_or_else(|| ErrorKind::NotFound(format!("role {n:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let record = TokenRecord {
            accessor_id,
            secret_id,
            description: spec.description,
            policies: policy_ids(&snap, spec.policy_names.iter().map(String::as_str))?,
            roles,
            service_identities: spec
                .service_identities
                .into_iter()
                .map(|s| (s, Vec::new()))
                .chain(spec.scoped_service_identities)
                .map(|(service_name, datacenters)| ServiceIdentityRecord {
                    service_name,
                    datacenters,
                })
                .collect(),
            node_identities: spec
                .node_identities
                .into_iter()
                .map(|(node_name, datacenter)| NodeIdentityRecord {
                    node_name,
                    datacenter,
                })
                .collect(),
            local: spec.local,
            expiration_time: None,
            create_time: None,
        };
        record.to_token()?;
        Ok(record)
    }

    async fn store_token(
        &self,
        token: &Secret,
        record: &TokenRecord,
        cas: Option<Index>,
    ) -> Result<(), Error> {
        if record.local {
            let op = TxnOp::Upsert {
                table: table(tables::ACL_LOCAL_TOKENS),
                id: record.accessor_id.clone(),
                value: json(record)?,
                cas,
            };
            // The same checks a global write gets, made here: the table is local.
            authz::decode(&op).map_err(refused)?;
            self.inner.store.txn(vec![op]).await?;
            self.inner.rebuild_acl().await?;
        } else {
            self.write_global(
                token,
                tables::ACL_TOKENS,
                &record.accessor_id,
                json(record)?,
                cas,
            )
            .await?;
        }
        Ok(())
    }

    async fn stored<T: for<'de> Deserialize<'de>>(
        &self,
        t: &'static str,
        id: &str,
        what: &str,
    ) -> Result<T, Error> {
        let rec = self
            .inner
            .store
            .get(&table(t), id)
            .await?
            .ok_or_else(|| ErrorKind::NotFound(format!("{what} {id:?}")))?;
        decode(&rec).ok_or_else(|| {
            Error::from(ErrorKind::Corrupt(format!(
                "stored {what} {id} does not decode"
            )))
        })
    }

    async fn stored_all<T: for<'de> Deserialize<'de>>(
        &self,
        t: &'static str,
    ) -> Result<Vec<T>, Error> {
        let listing = self.inner.store.list(&table(t)).await?;
        Ok(listing.records.iter().filter_map(decode).collect())
    }

    /// The id that holds `name` in a unique-name index.
    async fn name_owner(&self, t: &'static str, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .inner
            .store
            .get(&table(t), name)
            .await?
            .and_then(|r| decode::<NameIndexRecord>(&r))
            .map(|r| r.id))
    }
}

fn role_spec(name: &str, policy_names: &[&str], service_identities: &[&str]) -> RoleSpec {
    RoleSpec {
        name: name.to_owned(),
        description: String::new(),
        policy_names: policy_names.iter().map(|s| (*s).to_owned()).collect(),
        service_identities: service_identities
            .iter()
            .map(|s| ((*s).to_owned(), Vec::new()))
            .collect(),
        node_identities: Vec::new(),
    }
}

/// The prefix of the IDs reserved for built-in ACL objects.
const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// Consul's check of a chosen accessor or secret ID: a UUID as go-uuid parses it (either
/// case), not reserved for built-ins.
fn check_token_uuid(what: &str, id: &str) -> Result<(), Error> {
    let uuid = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !uuid {
        return Err(Error::invalid_msg(format!(
            "Invalid Token: {what} - not a valid UUID"
        )));
    }
    if id.starts_with(RESERVED_ID_PREFIX) {
        return Err(Error::invalid_msg(format!(
            "Invalid Token: {what} - UUIDs with the prefix \"{RESERVED_ID_PREFIX}\" are reserved"
        )));
    }
    Ok(())
}

/// The shortest and longest token lifetimes Consul accepts by default.
const MIN_TOKEN_TTL: u64 = 60;
const MAX_TOKEN_TTL: u64 = 24 * 60 * 60;

/// Checks an expiry against Consul's bounds; the expiry in seconds since the epoch.
fn check_expiration(at: SystemTime, now: u64) -> Result<u64, Error> {
    let at = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if at < now {
        return Err(Error::invalid_msg(
            "ExpirationTime cannot be before CreateTime",
        ));
    }
    if at - now < MIN_TOKEN_TTL {
        return Err(Error::invalid_msg(format!(
            "ExpirationTime cannot be less than 1m0s in the future (was {}s)",
            at - now
        )));
    }
    if at - now > MAX_TOKEN_TTL {
        return Err(Error::invalid_msg(format!(
            "ExpirationTime cannot be more than 24h0m0s in the future (was {}s)",
            at - now
        )));
    }
    Ok(at)
}

/// The name-index operations of renaming `id` from `old` to `new` (none when the name stays):
/// the new name is claimed (failing if taken), the old one released, in the caller's
/// transaction.
fn rename(names: &'static str, old: &str, new: &str, id: &str) -> Result<Vec<TxnOp>, Error> {
    if old == new {
        return Ok(Vec::new());
    }
    Ok(vec![name_claim(names, new, id)?, delete(names, old)])
}

impl Datacenter {
    /// Deletes the object `id` of `objects` and, when the name index gives `name` to it, that
    /// entry too, in one transaction.
    async fn delete_named(
        &self,
        token: &Secret,
        objects: &'static str,
        names: &'static str,
        id: &str,
        name: &str,
    ) -> Result<(), Error> {
        let mut ops = vec![delete(objects, id)];
        if self.name_owner(names, name).await?.as_deref() == Some(id) {
            ops.push(delete(names, name));
        }
        self.global_txn(token, objects, ops).await.map(|_| ())
    }
}
