//! Config entries (`proxy-defaults`, `service-defaults`).

use super::*;

impl Datacenter {
    /// Writes a config entry from Consul's JSON (`proxy-defaults.json` as the guide writes it).
    /// `proxy-defaults` needs `mesh:write` (which falls back to `operator:write`);
    /// `service-defaults` needs `service:write` on its service.
    pub async fn config_write(&self, token: &str, entry_json: &str) -> Result<ConfigEntry, Error> {
        let entry = ConfigEntry::from_json_validated(entry_json).map_err(Error::invalid)?;
        match &entry {
            ConfigEntry::ProxyDefaults(_) => self.require(token, mesh_write(), None)?,
            _ => self.require(token, service_write(), Some(entry.name()))?,
        }
        let id = authz::config_entry_id(entry.kind().as_str(), entry.name());
        let value = serde_json::from_str(&entry.to_json()).map_err(Error::invalid)?;
        self.write_global(token, tables::CONFIG_ENTRIES, &id, Value::json(value), None)
            .await?;
        Ok(entry)
    }

    /// A config entry by kind and name.
    pub async fn config_get(&self, kind: &str, name: &str) -> Result<Option<ConfigEntry>, Error> {
        let rec = self
            .inner
            .store
            .get(
                &table(tables::CONFIG_ENTRIES),
                &authz::config_entry_id(kind, name),
            )
            .await?;
        rec.and_then(|r| r.value.as_json().map(|v| v.to_string()))
            .map(|s| ConfigEntry::from_json(&s).map_err(Error::invalid))
            .transpose()
    }

    /// Every config entry of `kind` (`proxy-defaults`, `service-defaults`), by name. A stored
    /// entry that does not decode is left out and logged.
    pub async fn config_list(&self, kind: &str) -> Result<Vec<ConfigEntry>, Error> {
        let listing = self
            .inner
            .store
            .list(&table(tables::CONFIG_ENTRIES))
            .await?;
        let prefix = format!("{kind}/");
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
    }

    /// Deletes a config entry (idempotent), with the permission its write needs.
    pub async fn config_delete(&self, token: &str, kind: &str, name: &str) -> Result<(), Error> {
        match kind {
            "proxy-defaults" => self.require(token, mesh_write(), None)?,
            "service-defaults" => self.require(token, service_write(), Some(name))?,
            other => {
                return Err(Error::invalid_msg(format!(
                    "config entry kind {other:?} is not supported"
                )));
            }
        }
        self.delete_global(
            token,
            tables::CONFIG_ENTRIES,
            &authz::config_entry_id(kind, name),
        )
        .await
    }
}
