//! `mesh intention create|check|get|delete|list|match`, on `/v1/connect/intentions/*`.

use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::flags::HttpFlags;
use crate::cli::output::{columnize, key_values};
use crate::cli::{Doing, Failure, Outcome};
use mesh::client::{ClientError, path_with_query, percent_encode};

/// Exit code of `mesh intention check` when the connection would be denied.
pub(crate) const DENIED_EXIT: i32 = 2;

/// `mesh intention …`.
#[derive(Debug, Subcommand)]
pub(crate) enum IntentionCommand {
    /// Creates an intention from SRC to DST (allow unless -deny).
    Create(IntentionCreate),
    /// Says whether SRC may connect to DST: exit 0 when allowed, 2 when denied.
    Check(Pair),
    /// Shows the intention from SRC to DST (or with ID).
    Get(PairOrId),
    /// Deletes the intention from SRC to DST (or with ID).
    Delete(PairOrId),
    /// Lists every intention.
    List(IntentionList),
    /// Lists the intentions that match a source or a destination, in precedence order.
    Match(IntentionMatch),
}

impl IntentionCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            IntentionCommand::Create(a) => a.run().await,
            IntentionCommand::Check(a) => check(a).await,
            IntentionCommand::Get(a) => get(a).await,
            IntentionCommand::Delete(a) => delete(a).await,
            IntentionCommand::List(a) => list(a).await,
            IntentionCommand::Match(a) => matches(a).await,
        }
    }
}

/// `mesh intention create [-allow|-deny] [-replace] SRC DST`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").args(["allow", "deny"])))]
pub(crate) struct IntentionCreate {
    /// Allow the connection (the default)
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) allow: bool,
    /// Deny the connection
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) deny: bool,
    /// Replace an intention that exists for the pair instead of failing
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) replace: bool,
    /// A description of the intention
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// The source service (or *)
    #[arg(value_name = "SRC")]
    pub(crate) source: String,
    /// The destination service (or *)
    #[arg(value_name = "DST")]
    pub(crate) destination: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl IntentionCreate {
    async fn run(self) -> Result<Outcome, Failure> {
        let action = if self.deny { "deny" } else { "allow" };
        let shown = format!("{} => {} ({action})", self.source, self.destination);
        let doing = format!("creating intention {shown:?}");
        let api = self.http.api()?;
        let exact = exact_path(&self.source, &self.destination);
        if !self.replace {
            match api.get_raw(&exact, &[]).await {
                Ok(_) => {
                    return Err(Failure::new(
                        doing,
                        format!(
                            "Intention with source {:?} and destination {:?} already exists (use -replace)",
                            self.source, self.destination
                        ),
                    ));
                }
                Err(ClientError::Status { status: 404, .. }) => {}
                Err(e) => return Err(Failure::new(doing, e)),
            }
        }
        let mut body = json!({ "SourceType": "consul", "Action": action });
        if let Some(d) = &self.description {
            body["Description"] = d.clone().into();
        }
        api.put_raw(&exact, &[], Some(body.into()))
            .await
            .doing(&doing)?;
        Ok(Outcome::ok(format!("Created: {shown}")))
    }
}

/// `SRC DST`.
#[derive(Debug, Args)]
pub(crate) struct Pair {
    /// The source service
    #[arg(value_name = "SRC")]
    pub(crate) source: String,
    /// The destination service
    #[arg(value_name = "DST")]
    pub(crate) destination: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// `SRC DST`, or the `ID` of an intention created through the legacy API.
#[derive(Debug, Args)]
pub(crate) struct PairOrId {
    /// SRC DST, or ID
    #[arg(value_name = "SRC DST | ID", num_args = 1..=2, required = true)]
    pub(crate) names: Vec<String>,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl PairOrId {
    /// The path of the intention and how to name it.
    fn target(&self) -> Result<(String, String), Failure> {
        match self.names.as_slice() {
            [id] => Ok((
                format!("/v1/connect/intentions/{}", percent_encode(id)),
                id.clone(),
            )),
            [src, dst] => Ok((exact_path(src, dst), format!("{src} => {dst}"))),
            _ => Err(Failure::usage(
                "requires exactly one ID or a source and a destination",
            )),
        }
    }
}

/// `mesh intention list`.
#[derive(Debug, Args)]
pub(crate) struct IntentionList {
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// `mesh intention match [-source|-destination] NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("by").args(["source", "destination"])))]
pub(crate) struct IntentionMatch {
    /// Match intentions whose source is NAME
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) source: bool,
    /// Match intentions whose destination is NAME (the default)
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) destination: bool,
    /// The service name
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// An intention as the API returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Intention {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) description: String,
    #[serde(rename = "SourceNS")]
    pub(crate) source_ns: String,
    pub(crate) source_name: String,
    pub(crate) source_partition: String,
    pub(crate) source_peer: String,
    #[serde(rename = "DestinationNS")]
    pub(crate) destination_ns: String,
    pub(crate) destination_name: String,
    pub(crate) destination_partition: String,
    pub(crate) source_type: String,
    pub(crate) action: String,
    pub(crate) permissions: Option<Vec<Value>>,
    pub(crate) precedence: i64,
    pub(crate) meta: Option<BTreeMap<String, String>>,
    pub(crate) created_at: Option<String>,
}

impl Intention {
    /// `[peer:P/][partition/][ns/]name` the way Consul's CLI names a source.
    pub(crate) fn source_string(&self) -> String {
        let name = qualified(&self.source_partition, &self.source_ns, &self.source_name);
        if self.source_peer.is_empty() {
            name
        } else {
            format!("peer:{}/{name}", self.source_peer)
        }
    }

    /// `[partition/][ns/]name` of the destination.
    pub(crate) fn destination_string(&self) -> String {
        qualified(
            &self.destination_partition,
            &self.destination_ns,
            &self.destination_name,
        )
    }

    /// `web => db (allow)`, or `(2 permissions)` for L7 intentions.
    pub(crate) fn summary(&self) -> String {
        let detail = match self.permissions.as_deref().map_or(0, <[Value]>::len) {
            0 => self.action.clone(),
            1 => "1 permission".to_owned(),
            n => format!("{n} permissions"),
        };
        format!(
            "{} => {} ({detail})",
            self.source_string(),
            self.destination_string()
        )
    }
}

/// Names in the default partition and namespace print bare, as in Consul CE.
fn qualified(partition: &str, ns: &str, name: &str) -> String {
    let custom = |s: &str| !s.is_empty() && s != "default";
    match (custom(partition), custom(ns)) {
        (true, _) => format!("{partition}/{ns}/{name}"),
        (false, true) => format!("{ns}/{name}"),
        (false, false) => name.to_owned(),
    }
}

/// The exact-match path of a pair (the datacenter is added when the request is made).
fn exact_path(source: &str, destination: &str) -> String {
    path_with_query(
        "/v1/connect/intentions/exact",
        &[("source", source), ("destination", destination)],
    )
}

async fn check(a: Pair) -> Result<Outcome, Failure> {
    #[derive(Deserialize)]
    struct Check {
        #[serde(rename = "Allowed")]
        allowed: bool,
    }
    let api = a.http.api()?;
    let answer: Check = api
        .get(
            "/v1/connect/intentions/check",
            &[("source", &a.source), ("destination", &a.destination)],
        )
        .await
        .doing(&format!(
            "checking intentions for {} => {}",
            a.source, a.destination
        ))?;
    Ok(if answer.allowed {
        Outcome::ok("Allowed")
    } else {
        Outcome {
            text: "Denied".to_owned(),
            code: DENIED_EXIT,
        }
    })
}

async fn get(a: PairOrId) -> Result<Outcome, Failure> {
    let api = a.http.api()?;
    let (path, shown) = a.target()?;
    let resp = api
        .get_raw(&path, &[])
        .await
        .doing(&format!("reading intention {shown}"))?;
    let ixn: Intention = resp.json().doing(&format!("reading intention {shown}"))?;
    Ok(Outcome::ok(format_intention(&ixn)))
}

async fn delete(a: PairOrId) -> Result<Outcome, Failure> {
    let api = a.http.api()?;
    let (path, shown) = a.target()?;
    api.delete(&path, &[])
        .await
        .doing(&format!("deleting intention {shown}"))?;
    Ok(Outcome::ok("Intention deleted."))
}

async fn list(a: IntentionList) -> Result<Outcome, Failure> {
    let api = a.http.api()?;
    let all: Vec<Intention> = api
        .get("/v1/connect/intentions", &[])
        .await
        .doing("listing intentions")?;
    Ok(Outcome::ok(format_list(&all)))
}

async fn matches(a: IntentionMatch) -> Result<Outcome, Failure> {
    let by = if a.source { "source" } else { "destination" };
    let api = a.http.api()?;
    let found: BTreeMap<String, Vec<Intention>> = api
        .get(
            "/v1/connect/intentions/match",
            &[("by", by), ("name", &a.name)],
        )
        .await
        .doing(&format!("matching intentions by {by} {:?}", a.name))?;
    let lines: Vec<String> = found
        .get(&a.name)
        .map(|ixns| ixns.iter().map(Intention::summary).collect())
        .unwrap_or_default();
    Ok(Outcome::ok(lines.join("\n")))
}

/// `consul intention get`'s layout.
fn format_intention(ixn: &Intention) -> String {
    let mut pairs: Vec<(String, String)> = vec![
        ("Source".into(), ixn.source_string()),
        ("Destination".into(), ixn.destination_string()),
        ("SourceType".into(), ixn.source_type.clone()),
    ];
    if !ixn.id.is_empty() {
        pairs.push(("ID".into(), ixn.id.clone()));
    }
    if ixn.permissions.as_deref().is_none_or(<[Value]>::is_empty) {
        pairs.push(("Action".into(), ixn.action.clone()));
    }
    pairs.push(("Precedence".into(), ixn.precedence.to_string()));
    if !ixn.description.is_empty() {
        pairs.push(("Description".into(), ixn.description.clone()));
    }
    for (k, v) in ixn.meta.iter().flatten() {
        pairs.push((format!("Meta[{k}]"), v.clone()));
    }
    if let Some(at) = ixn.created_at.as_deref().filter(|a| !a.is_empty()) {
        pairs.push(("Created At".into(), at.to_owned()));
    }
    key_values(&pairs)
}

/// `consul intention list`'s table.
fn format_list(all: &[Intention]) -> String {
    let mut rows = vec![vec![
        "ID".to_owned(),
        "Source".to_owned(),
        "Action".to_owned(),
        "Destination".to_owned(),
        "Precedence".to_owned(),
    ]];
    for ixn in all {
        rows.push(vec![
            ixn.id.clone(),
            ixn.source_string(),
            ixn.action.clone(),
            ixn.destination_string(),
            ixn.precedence.to_string(),
        ]);
    }
    columnize(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_socat() -> Intention {
        serde_json::from_value(json!({
            "SourceNS": "default", "SourceName": "web", "DestinationNS": "default",
            "DestinationName": "socat", "SourceType": "consul", "Action": "allow",
            "Precedence": 9, "CreateIndex": 12, "ModifyIndex": 12
        }))
        .unwrap_or_default()
    }

    #[test]
    fn an_intention_summary_as_consul_prints_it() {
        assert_eq!(web_socat().summary(), "web => socat (allow)");
        let l7: Intention = serde_json::from_value(json!({
            "SourceName": "web", "DestinationNS": "team", "DestinationName": "api",
            "Permissions": [{}, {}]
        }))
        .unwrap_or_default();
        assert_eq!(l7.summary(), "web => team/api (2 permissions)");
    }

    #[test]
    fn get_layout() {
        assert_eq!(
            format_intention(&web_socat()),
            "Source:       web\nDestination:  socat\nSourceType:   consul\nAction:       allow\nPrecedence:   9"
        );
    }

    #[test]
    fn list_layout() {
        assert_eq!(
            format_list(&[web_socat()]),
            "ID  Source  Action  Destination  Precedence\n    web     allow   socat        9"
        );
    }

    #[test]
    fn peers_and_namespaces_in_names() {
        assert_eq!(qualified("", "default", "web"), "web");
        assert_eq!(qualified("", "", "web"), "web");
        assert_eq!(qualified("", "team", "web"), "team/web");
        assert_eq!(qualified("p", "team", "web"), "p/team/web");
        let peered: Intention =
            serde_json::from_value(json!({"SourceName": "web", "SourcePeer": "other"}))
                .unwrap_or_default();
        assert_eq!(peered.source_string(), "peer:other/web");
    }
}
