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
        self.dc.require(token, acl_write(), None)?;
        check_acl_name("policy", name)?;
        // Parse now so a bad policy is refused with its position, before anything is written.
        let record = PolicyRecord {
            id: ids::uuid()?,
            name: name.to_owned(),
            description: description.to_owned(),
            rules: rules.to_owned(),
            datacenters: Vec::new(),
        };
        record.to_policy()?;
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
    }

    /// Creates a policy from a rules file on disk (`-rules @file`).
    pub async fn policy_create_from_file(
        &self,
        token: &Secret,
        name: &str,
        description: &str,
        path: &std::path::Path,
    ) -> Result<PolicyRecord, Error> {
        let rules = std::fs::read_to_string(path)?;
        self.policy_create(token, name, description, &rules).await
    }

    /// A policy by id, as stored.
    pub async fn policy_read(&self, id: &str) -> Result<PolicyRecord, Error> {
        self.dc.stored(tables::ACL_POLICIES, id, "policy").await
    }

    /// A policy by name, as stored.
    pub async fn policy_read_by_name(&self, name: &str) -> Result<PolicyRecord, Error> {
        match self.dc.name_owner(tables::ACL_POLICY_NAMES, name).await? {
            Some(id) => self.policy_read(&id).await,
            None => Err(Error::NotFound(format!("policy {name:?}"))),
        }
    }

    /// Replaces a policy's name, description and rules. Needs `acl:write`. The built-in
    /// policies cannot be changed. A new name must be free, as on creation.
    pub async fn policy_update(
        &self,
        token: &Secret,
        id: &str,
        name: &str,
        description: &str,
        rules: &str,
    ) -> Result<PolicyRecord, Error> {
        self.dc.require(token, acl_write(), None)?;
        check_acl_name("policy", name)?;
        let old = self.policy_read(id).await?;
        let record = PolicyRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            rules: rules.to_owned(),
            datacenters: old.datacenters.clone(),
        };
        record.to_policy()?;
        let mut ops = vec![upsert(tables::ACL_POLICIES, id, json(&record)?)];
        if old.name != name {
            ops.push(name_claim(tables::ACL_POLICY_NAMES, name, id)?);
            ops.push(delete(tables::ACL_POLICY_NAMES, &old.name));
        }
        self.dc
            .global_txn(token, tables::ACL_POLICIES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("policy {name:?}")))?;
        Ok(record)
    }

    /// Deletes a policy; tokens and roles that link it lose its rules at once. Needs
    /// `acl:write`. The built-in policies cannot be deleted.
    pub async fn policy_delete(&self, token: &Secret, id: &str) -> Result<(), Error> {
        self.dc.require(token, acl_write(), None)?;
        let old = self.policy_read(id).await?;
        let mut ops = vec![delete(tables::ACL_POLICIES, id)];
        if self
            .dc
            .name_owner(tables::ACL_POLICY_NAMES, &old.name)
            .await?
            == Some(id.to_owned())
        {
            ops.push(delete(tables::ACL_POLICY_NAMES, &old.name));
        }
        self.dc.global_txn(token, tables::ACL_POLICIES, ops).await?;
        tracing::info!(policy = %id, name = %old.name, "ACL policy deleted");
        Ok(())
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
        self.dc.require(token, acl_write(), None)?;
        check_acl_name("role", name)?;
        let record = self
            .dc
            .role_record(ids::uuid()?, name, policy_names, service_identities)?;
        let ops = vec![
            upsert_cas(tables::ACL_ROLES, &record.id, json(&record)?, Index::ZERO),
            name_claim(tables::ACL_ROLE_NAMES, name, &record.id)?,
        ];
        self.dc
            .global_txn(token, tables::ACL_ROLES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
        Ok(record)
    }

    /// A role by id, as stored.
    pub async fn role_read(&self, id: &str) -> Result<RoleRecord, Error> {
        self.dc.stored(tables::ACL_ROLES, id, "role").await
    }

    /// Replaces a role's name, policies and service identities. Needs `acl:write`.
    pub async fn role_update(
        &self,
        token: &Secret,
        id: &str,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        self.dc.require(token, acl_write(), None)?;
        check_acl_name("role", name)?;
        let old = self.role_read(id).await?;
        let record = self
            .dc
            .role_record(id.to_owned(), name, policy_names, service_identities)?;
        let mut ops = vec![upsert(tables::ACL_ROLES, id, json(&record)?)];
        if old.name != name {
            ops.push(name_claim(tables::ACL_ROLE_NAMES, name, id)?);
            ops.push(delete(tables::ACL_ROLE_NAMES, &old.name));
        }
        self.dc
            .global_txn(token, tables::ACL_ROLES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
        Ok(record)
    }

    /// Deletes a role. Needs `acl:write`.
    pub async fn role_delete(&self, token: &Secret, id: &str) -> Result<(), Error> {
        self.dc.require(token, acl_write(), None)?;
        let old = self.role_read(id).await?;
        let mut ops = vec![delete(tables::ACL_ROLES, id)];
        if self
            .dc
            .name_owner(tables::ACL_ROLE_NAMES, &old.name)
            .await?
            == Some(id.to_owned())
        {
            ops.push(delete(tables::ACL_ROLE_NAMES, &old.name));
        }
        self.dc.global_txn(token, tables::ACL_ROLES, ops).await?;
        Ok(())
    }

    /// Creates a token; the returned record holds its secret. Needs `acl:write`. A local token
    /// stays in this datacenter; a global one is written in the primary and replicated.
    pub async fn token_create(
        &self,
        token: &Secret,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        self.dc.require(token, acl_write(), None)?;
        let record = self.dc.token_record(ids::uuid()?, ids::uuid()?, spec)?;
        self.dc
            .store_token(token, &record, Some(Index::ZERO))
            .await?;
        tracing::info!(accessor = %record.accessor_id, local = record.local, "ACL token created");
        Ok(record)
    }

    /// A token by accessor id, as stored (global or local to this datacenter).
    pub async fn token_read(&self, accessor: &str) -> Result<TokenRecord, Error> {
        let global = table(tables::ACL_TOKENS);
        let local = table(tables::ACL_LOCAL_TOKENS);
        for t in [&global, &local] {
            if let Some(rec) = self.dc.inner.store.get(t, accessor).await? {
                return decode::<TokenRecord>(&rec).ok_or_else(|| {
                    Error::invalid_msg(format!("stored token {accessor} does not decode"))
                });
            }
        }
        Err(Error::NotFound(format!("token {accessor:?}")))
    }

    /// Replaces a token's description, policies, roles and service identities; its secret and
    /// its locality stay. Needs `acl:write`.
    pub async fn token_update(
        &self,
        token: &Secret,
        accessor: &str,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        self.dc.require(token, acl_write(), None)?;
        let old = self.token_read(accessor).await?;
        if spec.local != old.local {
            return Err(Error::invalid_msg(
                "a token's locality cannot change: create a new token",
            ));
        }
        let mut record =
            self.dc
                .token_record(old.accessor_id.clone(), old.secret_id.clone(), spec)?;
        record.expiration_time = old.expiration_time;
        self.dc.store_token(token, &record, None).await?;
        Ok(record)
    }

    /// Deletes a token: its secret is refused here at once and in every other datacenter
    /// once the deletion has replicated there. Needs `acl:write`.
    pub async fn token_delete(&self, token: &Secret, accessor: &str) -> Result<(), Error> {
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
    fn role_record(
        &self,
        id: String,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        let snap = self.inner.acl.load();
        let record = RoleRecord {
            id,
            name: name.to_owned(),
            description: String::new(),
            policies: policy_ids(&snap, policy_names.iter().copied())?,
            service_identities: service_identities
                .iter()
                .map(|s| ServiceIdentityRecord {
                    service_name: (*s).to_owned(),
                    datacenters: Vec::new(),
                })
                .collect(),
            node_identities: Vec::new(),
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
                    .ok_or_else(|| Error::NotFound(format!("role {n:?}")))
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
                .iter()
                .map(|s| ServiceIdentityRecord {
                    service_name: s.clone(),
                    datacenters: Vec::new(),
                })
                .collect(),
            node_identities: Vec::new(),
            local: spec.local,
            expiration_time: None,
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
            .ok_or_else(|| Error::NotFound(format!("{what} {id:?}")))?;
        decode(&rec)
            .ok_or_else(|| Error::invalid_msg(format!("stored {what} {id} does not decode")))
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
