//! Intentions: create, delete, list, and the decision the data plane enforces.

use super::*;

impl Datacenter {
    /// Creates or replaces the intention `source -> destination`. Needs `intentions:write` on
    /// the destination. Written in the primary (forwarded from a secondary) and visible here
    /// when the call returns.
    pub async fn intention_create(
        &self,
        token: &str,
        source: &str,
        destination: &str,
        action: Action,
    ) -> Result<Intention, Error> {
        let mut ixn = Intention::new(source, destination, action);
        ixn.source_type = "consul".into();
        ixn.normalize();
        ixn.validate().map_err(Error::invalid)?;
        ixn.update_precedence();
        let authz = self.authorizer(token)?;
        can_write(&authz, &ixn)?;
        let value = serde_json::to_value(&ixn).map_err(Error::invalid)?;
        self.write_global(
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
    }

    /// Deletes the intention `source -> destination` (idempotent). Needs `intentions:write`
    /// on the destination.
    pub async fn intention_delete(
        &self,
        token: &str,
        source: &str,
        destination: &str,
    ) -> Result<(), Error> {
        let ixn = Intention::new(source, destination, Action::Deny);
        let authz = self.authorizer(token)?;
        can_write(&authz, &ixn)?;
        self.delete_global(
            token,
            tables::INTENTIONS,
            &authz::intention_id(source, destination),
        )
        .await
    }

    /// The intentions the token may read.
    pub async fn intentions(&self, token: &str) -> Result<Vec<Intention>, Error> {
        let authz = self.authorizer(token)?;
        let listing = self.inner.store.list(&table(tables::INTENTIONS)).await?;
        Ok(listing
            .records
            .iter()
            .filter_map(decode::<Intention>)
            .filter(|i| can_read(&authz, i).is_ok())
            .collect())
    }

    /// Rebuilds the enforced ACL and intention views from what the store holds now. They
    /// follow the store by themselves within moments of a change; this is for a caller that
    /// wrote around the API (through [`Datacenter::replication_server`]) and must see the
    /// result at once.
    pub async fn refresh_views(&self) -> Result<(), Error> {
        self.inner.rebuild_acl().await?;
        self.inner.rebuild_intentions().await
    }

    /// The current intentions snapshot, shared with the data plane.
    pub fn shared_intentions(&self) -> Arc<SharedIntentions> {
        self.inner.intentions.clone()
    }

    /// The decision used when no intention matches: from the ACL default policy (deny when
    /// ACLs default to deny; allow when ACLs are off).
    pub fn intention_default(&self) -> IntentionDefault {
        let acl = &self.inner.config.acl;
        IntentionDefault::new(acl.enabled.then_some(acl.default_policy), None)
    }

    /// May `client` open a connection to `target`? Refuses identities of another trust domain
    /// or that are not services (stricter than Consul, which checks neither).
    pub fn authorize(&self, client: &SpiffeId, target: &ServiceName) -> Authorization {
        authorize_with(
            &self.inner.intentions,
            self.intention_default(),
            self.trust_domain().as_ref(),
            client,
            target,
        )
    }
}
