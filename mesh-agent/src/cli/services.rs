//! `mesh services register|deregister`: service definitions on the agent
//! (`/v1/agent/service/register`, `/v1/agent/service/deregister/:id`).

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::cli::flags::{HttpFlags, parse_json_or_hcl, read_file_arg};
use crate::cli::{Doing, Failure, Outcome};
use crate::config::{AgentConfig, Format};
use mesh::client::percent_encode;

/// `mesh services …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// Registers services from definition files (as the agent's service files: a "service"
    /// object or a "services" list), or one service from flags.
    Register(ServicesRegister),
    /// Deregisters services by ID, or those a definition file names.
    Deregister(ServicesDeregister),
}

impl ServicesCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            ServicesCommand::Register(a) => a.run().await,
            ServicesCommand::Deregister(a) => a.run().await,
        }
    }
}

/// `mesh services register FILE…` or `mesh services register -name NAME [-id] [-address] [-port] [-tag…] [-meta k=v…]`.
#[derive(Debug, Args)]
pub(crate) struct ServicesRegister {
    /// The service's name (without a file)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The service's ID (default: its name)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The service's address (default: the node's)
    #[arg(long)]
    pub(crate) address: Option<String>,
    /// The service's port
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// A tag (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub(crate) tags: Vec<String>,
    /// Metadata KEY=VALUE (repeatable)
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub(crate) meta: Vec<String>,
    /// Service definition files (JSON), - for stdin
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<String>,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ServicesRegister {
    async fn run(self) -> Result<Outcome, Failure> {
        let definitions = if self.files.is_empty() {
            vec![self.definition_from_flags()?]
        } else {
            if self.name.is_some() || self.id.is_some() || self.port.is_some() {
                return Err(Failure::usage(
                    "flags that describe a service cannot be used with definition files",
                ));
            }
            let mut all = Vec::new();
            for file in &self.files {
                all.extend(definitions_in(file)?);
            }
            all
        };
        let api = self.http.api()?;
        let mut lines = Vec::new();
        for def in definitions {
            let name = field(&def, &["name", "Name"]).unwrap_or_default();
            api.put_raw("/v1/agent/service/register", &[], Some(def.into()))
                .await
                .doing(&format!("registering service {name:?}"))?;
            lines.push(format!("Registered service: {name}"));
        }
        Ok(Outcome::ok(lines.join("\n")))
    }

    fn definition_from_flags(&self) -> Result<Value, Failure> {
        let Some(name) = &self.name else {
            return Err(Failure::usage(
                "Must specify a service definition file or the -name parameter",
            ));
        };
        let mut def = Map::new();
        def.insert("Name".into(), name.clone().into());
        if let Some(id) = &self.id {
            def.insert("ID".into(), id.clone().into());
        }
        if let Some(a) = &self.address {
            def.insert("Address".into(), a.clone().into());
        }
        if let Some(p) = self.port {
            def.insert("Port".into(), p.into());
        }
        if !self.tags.is_empty() {
            def.insert("Tags".into(), self.tags.clone().into());
        }
        if !self.meta.is_empty() {
            let mut meta = Map::new();
            for kv in &self.meta {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    Failure::usage(format!("-meta {kv:?}: must be of the form KEY=VALUE"))
                })?;
                meta.insert(k.to_owned(), v.into());
            }
            def.insert("Meta".into(), meta.into());
        }
        Ok(Value::Object(def))
    }
}

/// `mesh services deregister -id ID` or `mesh services deregister FILE…`.
#[derive(Debug, Args)]
pub(crate) struct ServicesDeregister {
    /// The ID of the service to deregister
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Service definition files naming the services to deregister
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<String>,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ServicesDeregister {
    async fn run(self) -> Result<Outcome, Failure> {
        let ids = match (&self.id, self.files.is_empty()) {
            (Some(id), true) => vec![id.clone()],
            (None, false) => {
                let mut ids = Vec::new();
                for file in &self.files {
                    for def in definitions_in(file)? {
                        let id = field(&def, &["id", "ID", "Id"])
                            .or_else(|| field(&def, &["name", "Name"]))
                            .ok_or_else(|| {
                                Failure::new(
                                    format!("reading {file}"),
                                    "a service definition has neither an ID nor a name",
                                )
                            })?;
                        ids.push(id);
                    }
                }
                ids
            }
            (Some(_), false) => {
                return Err(Failure::usage("-id cannot be used with definition files"));
            }
            (None, true) => {
                return Err(Failure::usage(
                    "Must specify the -id parameter or a service definition file",
                ));
            }
        };
        let api = self.http.api()?;
        let mut lines = Vec::new();
        for id in ids {
            api.put_raw(
                &format!("/v1/agent/service/deregister/{}", percent_encode(&id)),
                &[],
                None,
            )
            .await
            .doing(&format!("deregistering service {id:?}"))?;
            lines.push(format!("Deregistered service: {id}"));
        }
        Ok(Outcome::ok(lines.join("\n")))
    }
}

/// The service definitions in a file: its `service` object (or list) and its `services` list.
/// A file that is not JSON is read as HCL by the agent's own configuration reader, as
/// `mesh agent` reads service files.
fn definitions_in(file: &str) -> Result<Vec<Value>, Failure> {
    let text = read_file_arg(file)?;
    let doing = format!("reading {file}");
    if serde_json::from_str::<Value>(&text).is_ok() || text.trim_start().starts_with('{') {
        let doc = parse_json_or_hcl(&text, file)?;
        return definitions(doc).doing(&doing);
    }
    let config = AgentConfig::from_str(&text, Format::Hcl, Path::new(file)).doing(&doing)?;
    let mut out = Vec::new();
    for source in &config.services {
        let doc: Value = serde_json::from_str(&source.json).doing(&doing)?;
        out.extend(definitions(doc).doing(&doing)?);
    }
    if out.is_empty() {
        return Err(Failure::new(
            doing,
            "no service definition (a \"service\" or \"services\" key)",
        ));
    }
    Ok(out)
}

fn definitions(doc: Value) -> Result<Vec<Value>, String> {
    let Value::Object(mut top) = doc else {
        return Err("a service definition file must hold a JSON object".to_owned());
    };
    let mut out = Vec::new();
    for key in ["service", "Service", "services", "Services"] {
        match top.remove(key) {
            None => {}
            Some(Value::Object(def)) => out.push(Value::Object(def)),
            Some(Value::Array(defs)) => {
                for def in defs {
                    if !def.is_object() {
                        return Err(format!("{key:?} holds something that is not an object"));
                    }
                    out.push(def);
                }
            }
            Some(_) => return Err(format!("{key:?} must be an object or a list of objects")),
        }
    }
    if out.is_empty() {
        return Err("no service definition (a \"service\" or \"services\" key)".to_owned());
    }
    Ok(out)
}

fn field(def: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| def.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_socat_file_is_one_definition() {
        let socat = serde_json::json!({"service": {
            "name": "socat", "port": 8181, "token": "t",
            "connect": {"sidecar_service": {}}
        }});
        let defs = definitions(socat).unwrap_or_default();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0]["name"], "socat");
        assert_eq!(
            defs[0]["connect"],
            serde_json::json!({"sidecar_service": {}})
        );
    }

    #[test]
    fn services_lists_and_mixed_files() {
        let doc = serde_json::json!({
            "service": {"name": "a"},
            "services": [{"name": "b"}, {"Name": "c", "ID": "c1"}]
        });
        let defs = definitions(doc).unwrap_or_default();
        assert_eq!(defs.len(), 3);
        assert_eq!(field(&defs[2], &["id", "ID"]).as_deref(), Some("c1"));
    }

    #[test]
    fn hcl_service_files_are_read_as_the_agent_reads_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("web.hcl");
        std::fs::write(
            &file,
            "service {\n  name = \"web\"\n  port = 8080\n  connect { sidecar_service {} }\n}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let defs =
            definitions_in(&file.to_string_lossy()).unwrap_or_else(|f| panic!("{}", f.message()));
        assert_eq!(defs.len(), 1);
        assert_eq!(field(&defs[0], &["name", "Name"]).as_deref(), Some("web"));
        assert_eq!(defs[0]["port"], 8080);
        let bad = dir.path().join("bad.hcl");
        std::fs::write(&bad, "service {").unwrap_or_else(|e| panic!("{e}"));
        let err = definitions_in(&bad.to_string_lossy())
            .err()
            .map(|f| f.message())
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("Error reading {}: ", bad.display())),
            "{err}"
        );
    }

    #[test]
    fn files_without_services_are_refused() {
        assert!(definitions(serde_json::json!({"check": {}})).is_err());
        assert!(definitions(serde_json::json!([])).is_err());
        assert!(definitions(serde_json::json!({"services": [1]})).is_err());
        assert!(definitions(serde_json::json!({"service": "web"})).is_err());
    }
}
