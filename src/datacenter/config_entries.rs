//! Config entries (`proxy-defaults`, `service-defaults`).

use super::*;

/// The config entries of a [`Datacenter`] (`proxy-defaults`, `service-defaults`):
/// `dc.config_entries()`. A cheap borrowed handle.
#[derive(Clone, Copy, Debug)]
pub struct ConfigEntries<'a> {
    pub(super) dc: &'a Datacenter,
}

impl ConfigEntries<'_> {
    /// Writes a config entry. `proxy-defaults` needs `mesh:write` (which falls back to
    /// `operator:write`); `service-defaults` needs `service:write` on its service. The entry
    /// is normalised and validated as Consul's JSON would be.
    pub async fn write(&self, token: &Secret, entry: &ConfigEntry) -> Result<ConfigEntry, Error> {
        let op = Operation::new(
            "config entry write",
            format!("{}/{}", entry.kind(), entry.name()),
        );
        during(op, async { self.write_json(token, &entry.to_json()).await }).await
    }

    /// A config entry given as JSON, validated, authorized for `token` (`proxy-defaults`
    /// needs `mesh:write`, the others `service:write` on their name), with its record id and
    /// the value to store.
    fn checked_entry(
        &self,
        token: &Secret,
        entry_json: &str,
    ) -> Result<(ConfigEntry, String, serde_json::Value), Error> {
        let entry = ConfigEntry::from_json_validated(entry_json).map_err(Error::invalid)?;
        match &entry {
            ConfigEntry::ProxyDefaults(_) => self.dc.require(token, mesh_write(), None)?,
            _ => self
                .dc
                .require(token, service_write(), Some(entry.name()))?,
        }
        let id = authz::config_entry_id(entry.kind().as_str(), entry.name());
        let value = serde_json::from_str(&entry.to_json())
            .map_err(|e| ErrorKind::Corrupt(format!("a config entry does not encode: {e}")))?;
        Ok((entry, id, value))
    }

    /// Writes a config entry from Consul's JSON (`proxy-defaults.json` as the guide writes
    /// it, `config write file.json`), with the permissions of [`ConfigEntries::write`].
    ///
    /// ```
    /// use mesh::core::{ConfigEntry, ConfigEntryKind};
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.enabled = true;
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let management = Secret::new("a-management-secret");
    /// let entries = dc.config_entries();
    /// let json = r#"{"Kind": "proxy-defaults", "Name": "global",
    ///                "MeshGateway": {"Mode": "local"}}"#;
    /// entries.write_json(&management, json).await?;
    /// let Some(ConfigEntry::ProxyDefaults(pd)) =
    ///     entries.get(ConfigEntryKind::ProxyDefaults, "global").await?
    /// else {
    ///     panic!("written above")
    /// };
    /// // The typed path writes the same entry back.
    /// entries.write(&management, &ConfigEntry::ProxyDefaults(pd)).await?;
    /// assert_eq!(entries.list(ConfigEntryKind::ProxyDefaults).await?.len(), 1);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write_json(&self, token: &Secret, entry_json: &str) -> Result<ConfigEntry, Error> {
        let op = Operation::named("config entry write");
        during(op, async {
            let (entry, id, value) = self.checked_entry(token, entry_json)?;
            self.dc
                .write_global(token, tables::CONFIG_ENTRIES, &id, Value::json(value), None)
                .await?;
            Ok(entry)
        })
        .await
    }

    /// Writes a config entry given as JSON text if the stored one is still at `cas` (its
    /// modify index as this datacenter answers it; `Index::ZERO`: only if there is none):
    /// Consul's `?cas=`. `Ok(false)` when the entry changed meanwhile; nothing is written
    /// then. Needs what [`Self::write_json`] needs. Written in the primary (forwarded from a
    /// secondary); in the primary the check is made in the write's transaction, in a
    /// secondary against its copy first (see the note on indexes below).
    ///
    /// A secondary's copies carry its own indexes, not the primary's, so after its own check
    /// it sends a creation-only write as such and any other unconditionally: a change made
    /// in the primary that has not replicated yet can be overwritten.
    pub async fn write_json_cas(
        &self,
        token: &Secret,
        entry_json: &str,
        cas: Index,
    ) -> Result<bool, Error> {
        let op = Operation::named("config entry write");
        during(op, async {
            let (_, id, value) = self.checked_entry(token, entry_json)?;
            let Some(cas) = self.primary_cas(&id, cas).await? else {
                return Ok(false);
            };
            match self
                .dc
                .write_global(token, tables::CONFIG_ENTRIES, &id, Value::json(value), cas)
                .await
                .map_err(|e| conflict_as(e, id.clone()))
            {
                Ok(_) => Ok(true),
                Err(e) if matches!(e.kind(), ErrorKind::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Deletes a config entry if it is still at `cas` (its modify index): Consul's delete
    /// with `?cas=`. `Ok(false)` when it changed meanwhile (or is gone). Needs what
    /// [`Self::delete`] needs.
    pub async fn delete_cas(
        &self,
        token: &Secret,
        kind: ConfigEntryKind,
        name: &str,
        cas: Index,
    ) -> Result<bool, Error> {
        let op = Operation::new("config entry delete", format!("{kind}/{name}"));
        during(op, async {
            self.require_delete(token, &kind, name)?;
            let id = authz::config_entry_id(kind.as_str(), name);
            if cas == Index::ZERO {
                return Ok(false);
            }
            let Some(cas) = self.primary_cas(&id, cas).await? else {
                return Ok(false);
            };
            let op = TxnOp::Delete {
                table: table(tables::CONFIG_ENTRIES),
                id: id.clone(),
                cas,
            };
            match self
                .dc
                .global_txn(token, tables::CONFIG_ENTRIES, vec![op])
                .await
                .map_err(|e| conflict_as(e, id))
            {
                Ok(_) => Ok(true),
                Err(e) if matches!(e.kind(), ErrorKind::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The check-and-set a write sends to the primary for `cas`, an index this datacenter
    /// answered, or `None` when the entry here is not at `cas` (the write loses at once). In
    /// the primary it is `cas` itself, checked in the write's transaction. A secondary's
    /// copies carry its own indexes, not the primary's: it checks `cas` against its copy,
    /// then sends a creation-only write as such (`Index::ZERO` means the same everywhere)
    /// and any other unconditionally, so a change made in the primary that has not
    /// replicated yet can be overwritten (Consul's secondaries compare their own index with
    /// the primary's, which fails whenever the indexes differ).
    async fn primary_cas(&self, id: &str, cas: Index) -> Result<Option<Option<Index>>, Error> {
        if self.dc.is_primary() {
            return Ok(Some(Some(cas)));
        }
        let current = self
            .dc
            .inner
            .store
            .get(&table(tables::CONFIG_ENTRIES), id)
            .await?;
        Ok(match (current, cas) {
            (None, Index::ZERO) => Some(Some(Index::ZERO)),
            (Some(r), c) if c != Index::ZERO && r.modify_index == c => Some(None),
            _ => None,
        })
    }

    fn require_delete(
        &self,
        token: &Secret,
        kind: &ConfigEntryKind,
        name: &str,
    ) -> Result<(), Error> {
        match kind {
            ConfigEntryKind::ProxyDefaults => self.dc.require(token, mesh_write(), None),
            ConfigEntryKind::ServiceDefaults => self.dc.require(token, service_write(), Some(name)),
            other => Err(Error::invalid_msg(format!(
                "config entry kind {:?} is not supported",
                other.as_str()
            ))),
        }
    }

    /// A config entry by kind and name.
    pub async fn get(
        &self,
        kind: ConfigEntryKind,
        name: &str,
    ) -> Result<Option<ConfigEntry>, Error> {
        let op = Operation::new("config entry read", format!("{kind}/{name}"));
        during(op, async {
            let rec = self
                .dc
                .inner
                .store
                .get(
                    &table(tables::CONFIG_ENTRIES),
                    &authz::config_entry_id(kind.as_str(), name),
                )
                .await?;
            rec.and_then(|r| r.value.as_json().map(|v| v.to_string()))
                .map(|s| {
                    ConfigEntry::from_json(&s).map_err(|e| {
                        Error::from(ErrorKind::Corrupt(format!(
                            "stored config entry {kind}/{name}: {e}"
                        )))
                    })
                })
                .transpose()
        })
        .await
    }

    /// Every config entry of `kind` (`proxy-defaults`, `service-defaults`), by name. A stored
    /// entry that does not decode is left out and logged.
    pub async fn list(&self, kind: ConfigEntryKind) -> Result<Vec<ConfigEntry>, Error> {
        let op = Operation::new("config entry list", kind);
        during(op, async {
            let listing = self
                .dc
                .inner
                .store
                .list(&table(tables::CONFIG_ENTRIES))
                .await?;
            let prefix = format!("{}/", kind.as_str());
            Ok(listing
                .records
                .iter()
                .filter(|r| r.id.starts_with(&prefix))
                .filter_map(|r| {
                    let v = r.value.as_json()?;
                    match ConfigEntry::deserialize(v) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            tracing::warn!(id = %r.id, error = %e, "stored config entry left out");
                            None
                        }
                    }
                })
                .collect())
        })
        .await
    }

    /// Deletes a config entry (idempotent), with the permission its write needs.
    pub async fn delete(
        &self,
        token: &Secret,
        kind: ConfigEntryKind,
        name: &str,
    ) -> Result<(), Error> {
        let op = Operation::new("config entry delete", format!("{kind}/{name}"));
        during(op, async {
            self.require_delete(token, &kind, name)?;
            self.dc
                .delete_global(
                    token,
                    tables::CONFIG_ENTRIES,
                    &authz::config_entry_id(kind.as_str(), name),
                )
                .await
        })
        .await
    }
}
