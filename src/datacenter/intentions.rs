//! Intentions: create, delete, list, and the decision the data plane enforces.

use super::*;

/// The source or destination of an intention: every service (`*`) or one service. A name
/// that no service can have (`WEB`, `a/b`) is not representable: parsing it fails with
/// [`NameError`].
///
/// ```
/// use mesh::IntentionTarget;
///
/// let any: IntentionTarget = "*".parse()?;
/// assert_eq!(any, IntentionTarget::Any);
/// let web: IntentionTarget = "web".parse()?;
/// assert_eq!(web.as_str(), "web");
/// assert!("WEB".parse::<IntentionTarget>().is_err());
/// # Ok::<(), mesh::core::NameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntentionTarget {
    /// `*`: every service.
    Any,
    /// One service.
    Service(ServiceName),
}

impl IntentionTarget {
    /// The target as an intention writes it (`*` or the service name).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Service(s) => s.as_str(),
        }
    }
}

impl std::str::FromStr for IntentionTarget {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        if s == "*" {
            Ok(Self::Any)
        } else {
            ServiceName::new(s).map(Self::Service)
        }
    }
}

impl From<ServiceName> for IntentionTarget {
    fn from(s: ServiceName) -> Self {
        Self::Service(s)
    }
}

impl From<&ServiceName> for IntentionTarget {
    fn from(s: &ServiceName) -> Self {
        Self::Service(s.clone())
    }
}

impl std::fmt::Display for IntentionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The intentions of a [`Datacenter`]: `dc.intentions()`. A cheap borrowed handle.
#[derive(Clone, Copy, Debug)]
pub struct Intentions<'a> {
    pub(super) dc: &'a Datacenter,
}

impl Intentions<'_> {
    /// Creates or replaces the intention `source -> destination`. Needs `intentions:write` on
    /// the destination. Written in the primary (forwarded from a secondary) and visible here
    /// when the call returns.
    ///
    /// ```
    /// use mesh::intentions::intention::Action;
    /// use mesh::{Datacenter, DatacenterConfig, IntentionTarget, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.enabled = true;
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let management = Secret::new("a-management-secret");
    /// let web: IntentionTarget = "web".parse()?;
    /// dc.intentions()
    ///     .create(&management, &web, &IntentionTarget::Any, Action::Deny)
    ///     .await?;
    /// assert_eq!(dc.intentions().list(&management).await?.len(), 1);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(
        &self,
        token: &Secret,
        source: &IntentionTarget,
        destination: &IntentionTarget,
        action: Action,
    ) -> Result<Intention, Error> {
        let op = Operation::new("intention create", format!("{source} -> {destination}"));
        during(op, async {
            let (source, destination) = (source.as_str(), destination.as_str());
            let mut ixn = Intention::new(source, destination, action);
            ixn.source_type = "consul".into();
            ixn.normalize();
            ixn.validate().map_err(Error::invalid)?;
            ixn.update_precedence();
            let authz = self.dc.inner.authorizer(token.expose_secret())?;
            can_write(&authz, &ixn)?;
            let value = serde_json::to_value(&ixn).map_err(Error::invalid)?;
            self.dc
                .write_global(
                    token,
                    tables::INTENTIONS,
                    &authz::intention_id(source, destination),
                    Value::json(value),
                    None,
                )
                .await?;
            tracing::info!(
                source,
                destination,
                action = action.as_str(),
                "intention written"
            );
            Ok(ixn)
        })
        .await
    }

    /// Allows `source` to connect to `destination` (an intention with action allow): what
    /// `consul intention create -allow` does.
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let management = Secret::new("a-management-secret");
    /// dc.intentions()
    ///     .allow(&management, &"web".parse()?, &"socat".parse()?)
    ///     .await?;
    /// // An unknown token is refused, and the error names the operation.
    /// let err = dc
    ///     .intentions()
    ///     .allow(&Secret::new("unknown"), &"web".parse()?, &"api".parse()?)
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "intention create web -> api: ACL not found");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn allow(
        &self,
        token: &Secret,
        source: &IntentionTarget,
        destination: &IntentionTarget,
    ) -> Result<Intention, Error> {
        self.create(token, source, destination, Action::Allow).await
    }

    /// Denies `source` connections to `destination` (an intention with action deny).
    pub async fn deny(
        &self,
        token: &Secret,
        source: &IntentionTarget,
        destination: &IntentionTarget,
    ) -> Result<Intention, Error> {
        self.create(token, source, destination, Action::Deny).await
    }

    /// Creates or replaces a whole intention, with its description and meta (and, for the
    /// legacy by-ID API, its ID and times): the source and destination names of `intention`
    /// say which one. Needs `intentions:write` on the destination. `SourceType` defaults to
    /// `consul`; the value is normalised, validated and its precedence computed before the
    /// write, which the primary decodes and authorizes again. Written in the primary
    /// (forwarded from a secondary) and visible here when the call returns.
    pub async fn upsert(&self, token: &Secret, intention: Intention) -> Result<Intention, Error> {
        let op = Operation::new(
            "intention write",
            format!(
                "{} -> {}",
                intention.source_name, intention.destination_name
            ),
        );
        during(op, async { self.write_whole(token, None, intention).await }).await
    }

    /// As [`Intentions::upsert`], removing `replaces` (an earlier record of the same
    /// intention under other names, as the legacy by-ID update renames one) in the same
    /// transaction: either both happen or neither. Needs `intentions:write` on both
    /// destinations.
    pub async fn upsert_replacing(
        &self,
        token: &Secret,
        replaces: &Intention,
        intention: Intention,
    ) -> Result<Intention, Error> {
        let op = Operation::new(
            "intention write",
            format!(
                "{} -> {}",
                intention.source_name, intention.destination_name
            ),
        );
        during(op, async {
            self.write_whole(token, Some(replaces), intention).await
        })
        .await
    }

    async fn write_whole(
        &self,
        token: &Secret,
        replaces: Option<&Intention>,
        mut ixn: Intention,
    ) -> Result<Intention, Error> {
        if ixn.source_type.is_empty() {
            ixn.source_type = "consul".into();
        }
        ixn.normalize();
        ixn.validate().map_err(Error::invalid)?;
        ixn.update_precedence();
        let authz = self.dc.inner.authorizer(token.expose_secret())?;
        can_write(&authz, &ixn)?;
        let id = authz::intention_id(&ixn.source_name, &ixn.destination_name);
        let mut ops = Vec::new();
        if let Some(old) = replaces {
            can_write(&authz, old)?;
            let old_id = authz::intention_id(&old.source_name, &old.destination_name);
            if old_id != id {
                ops.push(delete(tables::INTENTIONS, &old_id));
            }
        }
        let value = serde_json::to_value(&ixn).map_err(Error::invalid)?;
        ops.push(upsert(tables::INTENTIONS, &id, Value::json(value)));
        self.dc.global_txn(token, tables::INTENTIONS, ops).await?;
        tracing::info!(
            source = %ixn.source_name,
            destination = %ixn.destination_name,
            action = %ixn.action,
            "intention written"
        );
        Ok(ixn)
    }

    /// Deletes the intention `source -> destination` (idempotent). Needs `intentions:write`
    /// on the destination.
    pub async fn delete(
        &self,
        token: &Secret,
        source: &IntentionTarget,
        destination: &IntentionTarget,
    ) -> Result<(), Error> {
        let op = Operation::new("intention delete", format!("{source} -> {destination}"));
        during(op, async {
            self.remove(token, source.as_str(), destination.as_str())
                .await
        })
        .await
    }

    /// Deletes the record of an intention as [`Intentions::list`] returned it, whatever names
    /// it holds: a record written before names were checked, which can never match, can
    /// still be removed (its destination fails closed until then). Needs `intentions:write`
    /// on its destination.
    pub async fn delete_stored(&self, token: &Secret, stored: &Intention) -> Result<(), Error> {
        let op = Operation::new(
            "intention delete",
            format!("{} -> {}", stored.source_name, stored.destination_name),
        );
        during(op, async {
            self.remove(token, &stored.source_name, &stored.destination_name)
                .await
        })
        .await
    }

    async fn remove(&self, token: &Secret, source: &str, destination: &str) -> Result<(), Error> {
        let ixn = Intention::new(source, destination, Action::Deny);
        let authz = self.dc.inner.authorizer(token.expose_secret())?;
        can_write(&authz, &ixn)?;
        self.dc
            .delete_global(
                token,
                tables::INTENTIONS,
                &authz::intention_id(source, destination),
            )
            .await
    }

    /// The intentions the token may read.
    pub async fn list(&self, token: &Secret) -> Result<Vec<Intention>, Error> {
        let op = Operation::named("intention list");
        during(op, async {
            let authz = self.dc.inner.authorizer(token.expose_secret())?;
            let listing = self.dc.inner.store.list(&table(tables::INTENTIONS)).await?;
            Ok(listing
                .records
                .iter()
                .filter_map(decode::<Intention>)
                .filter(|i| can_read(&authz, i).is_ok())
                .collect())
        })
        .await
    }

    /// The current intentions snapshot, shared with the data plane.
    pub fn shared(&self) -> Arc<SharedIntentions> {
        self.dc.inner.intentions.clone()
    }

    /// The enforced intention set, rebuilt first if the store moved since it was built: what
    /// an answer "as of the table's index" must reflect.
    pub async fn current_set(&self) -> Result<Arc<IntentionSet>, Error> {
        let inner = &self.dc.inner;
        let at = inner.store.table_index(&table(tables::INTENTIONS));
        if inner
            .intentions_built
            .load(std::sync::atomic::Ordering::Acquire)
            < at.0
        {
            inner.rebuild_intentions().await?;
        }
        Ok(inner.intentions.load())
    }

    /// The decision used when no intention matches: from the ACL default policy (deny when
    /// ACLs default to deny; allow when ACLs are off).
    pub fn default(&self) -> IntentionDefault {
        let acl = &self.dc.inner.config.acl;
        IntentionDefault::new(acl.enabled.then_some(acl.default_policy), None)
    }

    /// May `client` open a connection to `target`? Refuses identities of another trust domain
    /// or that are not services (stricter than Consul, which checks neither).
    pub fn authorize(&self, client: &SpiffeId, target: &ServiceName) -> Authorization {
        crate::dataplane::authorize_in_set(
            &self.dc.inner.intentions.load(),
            self.default(),
            self.dc.trust_domain().as_ref(),
            client,
            target,
        )
    }
}

impl Datacenter {
    /// Rebuilds the enforced ACL and intention views from what the store holds now. They
    /// follow the store by themselves within moments of a change; this is for a caller that
    /// wrote around the API (through [`Datacenter::replication_server`]) and must see the
    /// result at once.
    pub async fn refresh_views(&self) -> Result<(), Error> {
        self.inner.rebuild_acl().await?;
        self.inner.rebuild_intentions().await
    }
}
