//! `mesh config write|read|list|delete`: config entries on `/v1/config`.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cli::flags::{HttpFlags, parse_json_or_hcl, pretty_json, read_file_arg};
use crate::cli::{Doing, Failure, Outcome};
use mesh::client::percent_encode;

/// `mesh config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Creates or updates a config entry from a file (JSON, or - for stdin).
    Write(ConfigWrite),
    /// Shows one config entry as JSON.
    Read(ConfigRead),
    /// Lists the names of the config entries of a kind.
    List(ConfigList),
    /// Deletes a config entry.
    Delete(ConfigDelete),
}

impl ConfigCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            ConfigCommand::Write(a) => a.run().await,
            ConfigCommand::Read(a) => a.run().await,
            ConfigCommand::List(a) => a.run().await,
            ConfigCommand::Delete(a) => a.run().await,
        }
    }
}

/// `mesh config write FILE`.
#[derive(Debug, Args)]
pub(crate) struct ConfigWrite {
    /// Write only if the entry's ModifyIndex is still the one given with -modify-index
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) cas: bool,
    /// The ModifyIndex -cas compares with (0: only if the entry does not exist)
    #[arg(long = "modify-index", value_name = "INDEX", default_value_t = 0)]
    pub(crate) modify_index: u64,
    /// The entry: a JSON file, or - for stdin
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ConfigWrite {
    async fn run(self) -> Result<Outcome, Failure> {
        let text = read_file_arg(&self.file)?;
        let entry = parse_json_or_hcl(&text, &format!("config entry {}", self.file))?;
        let (kind, name) = kind_and_name(&entry).doing(&format!("reading {}", self.file))?;
        let api = self.http.api()?;
        let index = self.modify_index.to_string();
        let params: Vec<(&str, &str)> = if self.cas {
            vec![("cas", &index)]
        } else {
            Vec::new()
        };
        let written: Value = api
            .put("/v1/config", &params, Some(entry.into()))
            .await
            .doing(&format!("writing config entry {kind}/{name}"))?;
        if written == Value::Bool(false) {
            return Err(Failure::new(
                format!("writing config entry {kind}/{name}"),
                "the entry was not updated: its ModifyIndex differs from -modify-index",
            ));
        }
        Ok(Outcome::ok(format!("Config entry written: {kind}/{name}")))
    }
}

/// `mesh config read -kind KIND -name NAME`.
#[derive(Debug, Args)]
pub(crate) struct ConfigRead {
    /// The entry's kind (proxy-defaults, service-defaults, …)
    #[arg(long)]
    pub(crate) kind: String,
    /// The entry's name
    #[arg(long)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ConfigRead {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let entry: Value = api
            .get(&entry_path(&self.kind, &self.name), &[])
            .await
            .doing(&format!("reading config entry {}/{}", self.kind, self.name))?;
        Ok(Outcome::ok(pretty_json(&entry)))
    }
}

/// `mesh config list -kind KIND`.
#[derive(Debug, Args)]
pub(crate) struct ConfigList {
    /// The kind of entries to list
    #[arg(long)]
    pub(crate) kind: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ConfigList {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let entries: Vec<Value> = api
            .get(&format!("/v1/config/{}", percent_encode(&self.kind)), &[])
            .await
            .doing(&format!("listing config entries of kind {}", self.kind))?;
        let mut names: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.get("Name").and_then(Value::as_str))
            .collect();
        names.sort_unstable();
        Ok(Outcome::ok(names.join("\n")))
    }
}

/// `mesh config delete -kind KIND -name NAME`.
#[derive(Debug, Args)]
pub(crate) struct ConfigDelete {
    /// The entry's kind
    #[arg(long)]
    pub(crate) kind: String,
    /// The entry's name
    #[arg(long)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ConfigDelete {
    async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        api.delete(&entry_path(&self.kind, &self.name), &[])
            .await
            .doing(&format!(
                "deleting config entry {}/{}",
                self.kind, self.name
            ))?;
        Ok(Outcome::ok(format!(
            "Config entry deleted: {}/{}",
            self.kind, self.name
        )))
    }
}

fn entry_path(kind: &str, name: &str) -> String {
    format!(
        "/v1/config/{}/{}",
        percent_encode(kind),
        percent_encode(name)
    )
}

/// The `Kind` and `Name` of an entry (either spelling of the keys; proxy-defaults' name
/// defaults to `global`).
fn kind_and_name(entry: &Value) -> Result<(String, String), String> {
    let field = |upper: &str, lower: &str| {
        entry
            .get(upper)
            .or_else(|| entry.get(lower))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if !entry.is_object() {
        return Err("a config entry must be a JSON object".to_owned());
    }
    let kind = field("Kind", "kind").ok_or("the entry has no Kind")?;
    let name = match field("Name", "name") {
        Some(n) => n,
        None if kind == "proxy-defaults" || kind == "mesh" => "global".to_owned(),
        None => return Err("the entry has no Name".to_owned()),
    };
    Ok((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names() {
        let guide =
            serde_json::json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": "local"});
        assert_eq!(
            kind_and_name(&guide),
            Ok(("proxy-defaults".into(), "global".into()))
        );
        let lower = serde_json::json!({"kind": "service-defaults", "name": "web"});
        assert_eq!(
            kind_and_name(&lower),
            Ok(("service-defaults".into(), "web".into()))
        );
        let unnamed = serde_json::json!({"Kind": "proxy-defaults"});
        assert_eq!(
            kind_and_name(&unnamed),
            Ok(("proxy-defaults".into(), "global".into()))
        );
        assert!(kind_and_name(&serde_json::json!({"Name": "x"})).is_err());
        assert!(kind_and_name(&serde_json::json!({"Kind": "service-defaults"})).is_err());
        assert!(kind_and_name(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn entry_paths_are_escaped() {
        assert_eq!(
            entry_path("service-defaults", "a b"),
            "/v1/config/service-defaults/a%20b"
        );
    }
}
