//! The flags every API command takes (`-http-addr`, `-token`, `-token-file`, `-ca-file`,
//! `-datacenter`), the agent they lead to, and small parsers shared by the commands.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::cli::{Doing, Failure};
use mesh::client::{Body, Client, ClientConfig, ClientError, Response, path_with_query};

/// How to reach the agent, as Consul's commands take it. Flags win over `CONSUL_HTTP_ADDR`,
/// `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE` and `CONSUL_CACERT`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct HttpFlags {
    /// The agent's HTTP address: host:port, http://…, https://… or unix://… [env:
    /// CONSUL_HTTP_ADDR; default 127.0.0.1:8500]
    #[arg(long = "http-addr", value_name = "ADDRESS")]
    pub(crate) http_addr: Option<String>,
    /// ACL token for the request [env: CONSUL_HTTP_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<Redacted>,
    /// File holding the ACL token [env: CONSUL_HTTP_TOKEN_FILE]
    #[arg(long = "token-file", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the agent's HTTPS certificate [env: CONSUL_CACERT]
    #[arg(long = "ca-file", value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// The datacenter to query (default: the agent's own)
    #[arg(long, value_name = "DC")]
    pub(crate) datacenter: Option<String>,
}

impl HttpFlags {
    /// The client configuration: the environment's, with these flags on top.
    pub(crate) fn client_config(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, ClientError> {
        let mut config = ClientConfig::from_lookup(env)?;
        if let Some(addr) = &self.http_addr {
            config.addr = addr.clone();
        }
        if let Some(token) = &self.token {
            config.token = Some(token.0.clone());
        } else if let Some(file) = &self.token_file {
            config.token = mesh::client::read_token_file(file)?;
        }
        if let Some(ca) = &self.ca_file {
            config.ca_file = Some(ca.clone());
        }
        Ok(config)
    }

    /// The agent these flags lead to.
    pub(crate) fn api(&self) -> Result<Api, Failure> {
        let config = self
            .client_config(|name| std::env::var(name).ok())
            .doing("configuring the HTTP client")?;
        let client = Client::new(config).doing("configuring the HTTP client")?;
        Ok(Api {
            client,
            datacenter: self.datacenter.clone().filter(|d| !d.is_empty()),
        })
    }
}

/// A client and the datacenter every request names.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: Client,
    datacenter: Option<String>,
}

impl Api {
    /// `path` with `params` and `dc=` (when a datacenter was chosen).
    pub(crate) fn path(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(dc) = &self.datacenter {
            all.push(("dc", dc));
        }
        path_with_query(path, &all)
    }

    /// `GET`, decoded as JSON.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        self.client.get_json(&self.path(path, params)).await
    }

    /// `GET`, the raw answer.
    pub(crate) async fn get_raw(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        self.client.get(&self.path(path, params)).await
    }

    /// `PUT`, the answer decoded as JSON.
    pub(crate) async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Body>,
    ) -> Result<T, ClientError> {
        self.client.put_json(&self.path(path, params), body).await
    }

    /// `PUT`, the raw answer.
    pub(crate) async fn put_raw(
        &self,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Body>,
    ) -> Result<Response, ClientError> {
        self.client.put(&self.path(path, params), body).await
    }

    /// `DELETE`, the raw answer.
    pub(crate) async fn delete(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        self.client.delete(&self.path(path, params)).await
    }
}

/// A secret given on the command line (`-token`, `-secret`): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Redacted(pub(crate) String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How a command prints objects: Consul's `-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Consul's human-readable layout.
    #[default]
    Pretty,
    /// The API's JSON, indented.
    Json,
}

/// A Go boolean flag value (`-local`, `-local=true`, `-local=false`), as `strconv.ParseBool`.
pub(crate) fn go_bool(s: &str) -> Result<bool, String> {
    mesh::client::parse_bool(s).ok_or_else(|| format!("{s:?} is not a boolean"))
}

/// Consul's data-source arguments: `@path` reads a file, `-` reads stdin, anything else is
/// the value itself.
pub(crate) fn load_data_source(value: &str, what: &str) -> Result<String, Failure> {
    if let Some(path) = value.strip_prefix('@') {
        std::fs::read_to_string(path).doing(&format!("reading {what} from {path}"))
    } else if value == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .doing(&format!("reading {what} from stdin"))?;
        Ok(s)
    } else {
        Ok(value.to_owned())
    }
}

/// A file argument's content: the file, or stdin for `-`.
pub(crate) fn read_file_arg(path: &str) -> Result<String, Failure> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .doing("reading stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).doing(&format!("reading {path}"))
    }
}

/// JSON indented by four spaces, as Consul's commands print it.
pub(crate) fn pretty_json(value: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serialising a Value into a Vec cannot fail: no I/O, keys are strings.
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A document that is JSON, or HCL when it does not parse as JSON (config entries and
/// service definitions are written in either).
pub(crate) fn parse_json_or_hcl(text: &str, what: &str) -> Result<serde_json::Value, Failure> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let looks_like_json = text.trim_start().starts_with(['{', '[']);
            if looks_like_json {
                return Err(Failure::new(format!("parsing {what}"), json_err));
            }
            Err(Failure::new(
                format!("parsing {what}"),
                format!(
                    "not JSON ({json_err}); HCL is not supported by this build: write it as JSON"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let flags = HttpFlags {
            http_addr: Some("10.0.0.1:8500".into()),
            token: Some(Redacted("flag-token".into())),
            ..HttpFlags::default()
        };
        let c = flags
            .client_config(env(&[
                ("CONSUL_HTTP_ADDR", "127.0.0.9:1"),
                ("CONSUL_HTTP_TOKEN", "env-token"),
                ("CONSUL_CACERT", "/ca.pem"),
            ]))
            .unwrap_or_default();
        assert_eq!(c.addr, "10.0.0.1:8500");
        assert_eq!(c.token.as_deref(), Some("flag-token"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn the_environment_fills_what_flags_leave() {
        let c = HttpFlags::default()
            .client_config(env(&[
                ("CONSUL_HTTP_ADDR", "127.0.0.9:1"),
                ("CONSUL_HTTP_TOKEN", "env-token"),
            ]))
            .unwrap_or_default();
        assert_eq!(c.addr, "127.0.0.9:1");
        assert_eq!(c.token.as_deref(), Some("env-token"));
    }

    #[test]
    fn a_token_file_flag_beats_the_token_variable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("t");
        std::fs::write(&file, "  file-token\n").unwrap_or_else(|e| panic!("{e}"));
        let flags = HttpFlags {
            token_file: Some(file),
            ..HttpFlags::default()
        };
        let c = flags
            .client_config(env(&[("CONSUL_HTTP_TOKEN", "env-token")]))
            .unwrap_or_default();
        assert_eq!(c.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn a_missing_token_file_is_an_error_naming_it() {
        let flags = HttpFlags {
            token_file: Some("/nonexistent/token".into()),
            ..HttpFlags::default()
        };
        let err = flags
            .client_config(env(&[]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn the_datacenter_becomes_dc() {
        let api = HttpFlags {
            http_addr: Some("127.0.0.1:1".into()),
            datacenter: Some("secondary".into()),
            ..HttpFlags::default()
        }
        .api()
        .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(
            api.path("/v1/acl/policies", &[]),
            "/v1/acl/policies?dc=secondary"
        );
        assert_eq!(
            api.path("/v1/connect/intentions/check", &[("source", "web")]),
            "/v1/connect/intentions/check?source=web&dc=secondary"
        );
    }

    #[test]
    fn redacted_values_do_not_debug_print() {
        let flags = HttpFlags {
            token: Some(Redacted("s3cr3t".into())),
            ..HttpFlags::default()
        };
        assert!(!format!("{flags:?}").contains("s3cr3t"));
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        assert!(go_bool("yes").is_err());
    }

    #[test]
    fn data_sources() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("rules.hcl");
        std::fs::write(&file, "acl = \"read\"").unwrap_or_else(|e| panic!("{e}"));
        let arg = format!("@{}", file.display());
        assert_eq!(
            load_data_source(&arg, "rules").unwrap_or_default(),
            "acl = \"read\""
        );
        assert_eq!(
            load_data_source("acl = \"write\"", "rules").unwrap_or_default(),
            "acl = \"write\""
        );
        let missing = load_data_source("@/nonexistent/rules", "rules")
            .err()
            .map(|f| f.message())
            .unwrap_or_default();
        assert!(
            missing.starts_with("Error reading rules from /nonexistent/rules: "),
            "{missing}"
        );
    }

    #[test]
    fn json_is_indented_by_four_spaces() {
        let v = serde_json::json!({"Config": {"protocol": "http"}});
        assert_eq!(
            pretty_json(&v),
            "{\n    \"Config\": {\n        \"protocol\": \"http\"\n    }\n}"
        );
    }

    #[test]
    fn documents_that_are_not_json() {
        assert!(parse_json_or_hcl("{\"a\": 1}", "x").is_ok());
        let bad = parse_json_or_hcl("{\"a\": ", "config entry")
            .err()
            .map(|f| f.message())
            .unwrap_or_default();
        assert!(bad.starts_with("Error parsing config entry: "), "{bad}");
    }
}
