//! The agent and its datacenter: `mesh members`, `mesh reload`, `mesh leave`,
//! `mesh operator raft list-peers`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::cli::flags::HttpFlags;
use crate::cli::output::columnize;
use crate::cli::{Doing, Failure, Outcome};

/// `mesh members [-wan]`.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    /// List the WAN members (the servers of every datacenter)
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) wan: bool,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl MembersArgs {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        let params: &[(&str, &str)] = if self.wan { &[("wan", "1")] } else { &[] };
        let mut members: Vec<Member> = api
            .get("/v1/agent/members", params)
            .await
            .doing("retrieving members")?;
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Outcome::ok(format_members(&members)))
    }
}

/// `mesh reload`.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl ReloadArgs {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        api.put_raw("/v1/agent/reload", &[], None)
            .await
            .doing("reloading")?;
        Ok(Outcome::ok("Configuration reload triggered"))
    }
}

/// `mesh leave`.
#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

impl LeaveArgs {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        let api = self.http.api()?;
        api.put_raw("/v1/agent/leave", &[], None)
            .await
            .doing("leaving cluster")?;
        Ok(Outcome::ok("Graceful leave complete"))
    }
}

/// `mesh operator …`.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// The datacenter's Raft servers.
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
}

impl OperatorCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            OperatorCommand::Raft {
                command: RaftCommand::ListPeers(a),
            } => list_peers(a).await,
        }
    }
}

/// `mesh operator raft …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// Lists the servers of the datacenter and which one leads.
    ListPeers(ListPeersArgs),
}

/// `mesh operator raft list-peers`.
#[derive(Debug, Args)]
pub(crate) struct ListPeersArgs {
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// A member as `/v1/agent/members` returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) port: u16,
    pub(crate) tags: Option<BTreeMap<String, String>>,
    pub(crate) status: i64,
}

/// `consul members`'s table.
fn format_members(members: &[Member]) -> String {
    let mut rows = vec![
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for m in members {
        let empty = BTreeMap::new();
        let tags = m.tags.as_ref().unwrap_or(&empty);
        let tag = |k: &str| tags.get(k).cloned().unwrap_or_default();
        let status = match m.status {
            0 => "none",
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "unknown",
        };
        let (kind, segment) = match tags.get("role").map(String::as_str) {
            Some("consul") => ("server", "<all>".to_owned()),
            Some("node") => (
                "client",
                tags.get("segment")
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "<default>".to_owned()),
            ),
            _ => ("unknown", String::new()),
        };
        let build = tag("build");
        let build = build.split(':').next().unwrap_or_default().to_owned();
        let partition = tags
            .get("ap")
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        let addr = if m.addr.contains(':') {
            format!("[{}]:{}", m.addr, m.port)
        } else {
            format!("{}:{}", m.addr, m.port)
        };
        rows.push(vec![
            m.name.clone(),
            addr,
            status.to_owned(),
            kind.to_owned(),
            build,
            tag("vsn"),
            tag("dc"),
            partition,
            segment,
        ]);
    }
    columnize(&rows)
}

/// `consul operator raft list-peers`, from `/v1/operator/raft/configuration`; a server
/// without that endpoint (or a token without `operator:read`) gets the table from
/// `/v1/status/peers` and `/v1/status/leader`, which need no ACL.
async fn list_peers(a: ListPeersArgs) -> Result<Outcome, Failure> {
    let api = a.http.api()?;
    match api
        .get::<RaftConfiguration>("/v1/operator/raft/configuration", &[])
        .await
    {
        Ok(config) => Ok(Outcome::ok(format_raft(&config))),
        Err(e) if matches!(e.status(), Some(403..=405)) => {
            let peers: Option<Vec<String>> = api
                .get("/v1/status/peers", &[])
                .await
                .doing("retrieving raft peers")?;
            let leader: String = api
                .get("/v1/status/leader", &[])
                .await
                .doing("retrieving the raft leader")?;
            Ok(Outcome::ok(format_peers(
                &peers.unwrap_or_default(),
                &leader,
            )))
        }
        Err(e) => Err(Failure::new("retrieving raft configuration", e)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct RaftConfiguration {
    servers: Option<Vec<RaftServer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: String,
    voter: bool,
    last_index: u64,
}

fn format_raft(config: &RaftConfiguration) -> String {
    let servers = config.servers.as_deref().unwrap_or_default();
    let leader_index = servers
        .iter()
        .find(|s| s.leader)
        .map_or(0, |s| s.last_index);
    let mut rows = vec![
        [
            "Node",
            "ID",
            "Address",
            "State",
            "Voter",
            "RaftProtocol",
            "Commit Index",
            "Trails Leader By",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in servers {
        let trails = if s.leader {
            "-".to_owned()
        } else {
            format!("{} commits", leader_index.saturating_sub(s.last_index))
        };
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_owned(),
            s.voter.to_string(),
            s.protocol_version.clone(),
            s.last_index.to_string(),
            trails,
        ]);
    }
    columnize(&rows)
}

fn format_peers(peers: &[String], leader: &str) -> String {
    let mut rows = vec![vec![
        "Address".to_owned(),
        "State".to_owned(),
        "Voter".to_owned(),
    ]];
    for p in peers {
        let state = if p == leader { "leader" } else { "follower" };
        rows.push(vec![p.clone(), state.to_owned(), "true".to_owned()]);
    }
    columnize(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_as_consul_prints_them() {
        let members: Vec<Member> = serde_json::from_value(serde_json::json!([{
            "Name": "primary-server-1", "Addr": "127.0.0.1", "Port": 8301,
            "Tags": {"role": "consul", "dc": "primary", "build": "0.1.0:abc", "vsn": "2"},
            "Status": 1
        }]))
        .unwrap_or_default();
        assert_eq!(
            format_members(&members),
            "Node              Address         Status  Type    Build  Protocol  DC       Partition  Segment\n\
             primary-server-1  127.0.0.1:8301  alive   server  0.1.0  2         primary  default    <all>"
        );
    }

    #[test]
    fn raft_configuration_table() {
        let config: RaftConfiguration = serde_json::from_value(serde_json::json!({
            "Servers": [
                {"ID": "a", "Node": "s1", "Address": "10.0.0.1:8300", "Leader": true,
                 "ProtocolVersion": "3", "Voter": true, "LastIndex": 10},
                {"ID": "b", "Node": "s2", "Address": "10.0.0.2:8300", "Leader": false,
                 "ProtocolVersion": "3", "Voter": true, "LastIndex": 8}
            ], "Index": 10
        }))
        .unwrap_or_default();
        assert_eq!(
            format_raft(&config),
            "Node  ID  Address        State     Voter  RaftProtocol  Commit Index  Trails Leader By\n\
             s1    a   10.0.0.1:8300  leader    true   3             10            -\n\
             s2    b   10.0.0.2:8300  follower  true   3             8             2 commits"
        );
    }

    #[test]
    fn peers_table() {
        assert_eq!(
            format_peers(&["127.0.0.1:8300".into()], "127.0.0.1:8300"),
            "Address         State   Voter\n127.0.0.1:8300  leader  true"
        );
        assert_eq!(format_peers(&[], ""), "Address  State  Voter");
    }
}
