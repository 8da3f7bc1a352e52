//! The Connect CA: `mesh ca roots` (`/v1/connect/ca/roots`) and `mesh connect ca
//! get-config|set-config` (`/v1/connect/ca/configuration`).

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::flags::{HttpFlags, parse_json_or_hcl, pretty_json, read_file_arg};
use crate::cli::output::key_values;
use crate::cli::{Doing, Failure, Outcome};

/// `mesh ca …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Lists the CA's root certificates.
    Roots(RootsArgs),
}

impl CaCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            CaCommand::Roots(a) => roots(a).await,
        }
    }
}

/// `mesh ca roots [-pem]`.
#[derive(Debug, Args)]
pub(crate) struct RootsArgs {
    /// Also print each root's certificate (and intermediates) in PEM
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "BOOL", default_missing_value = "true",
          default_value = "false", value_parser = crate::cli::flags::go_bool)]
    pub(crate) pem: bool,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// `mesh connect ca …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectCaCommand {
    /// Prints the CA configuration as JSON.
    GetConfig(GetConfigArgs),
    /// Replaces the CA configuration with a file's.
    SetConfig(SetConfigArgs),
}

impl ConnectCaCommand {
    pub(crate) async fn run(self) -> Result<Outcome, Failure> {
        match self {
            ConnectCaCommand::GetConfig(a) => {
                let api = a.http.api()?;
                let config: Value = api
                    .get("/v1/connect/ca/configuration", &[])
                    .await
                    .doing("reading the CA configuration")?;
                Ok(Outcome::ok(pretty_json(&config)))
            }
            ConnectCaCommand::SetConfig(a) => {
                let text = read_file_arg(&a.config_file)?;
                let config = parse_json_or_hcl(&text, &a.config_file)?;
                let api = a.http.api()?;
                api.put_raw("/v1/connect/ca/configuration", &[], Some(config.into()))
                    .await
                    .doing("updating the CA configuration")?;
                Ok(Outcome::ok("Configuration updated!"))
            }
        }
    }
}

/// `mesh connect ca get-config`.
#[derive(Debug, Args)]
pub(crate) struct GetConfigArgs {
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// `mesh connect ca set-config -config-file FILE`.
#[derive(Debug, Args)]
pub(crate) struct SetConfigArgs {
    /// The new configuration: a JSON file ({"Provider": …, "Config": {…}}), or - for stdin
    #[arg(long = "config-file", value_name = "FILE")]
    pub(crate) config_file: String,
    #[command(flatten)]
    pub(crate) http: HttpFlags,
}

/// The roots as `/v1/connect/ca/roots` returns them.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Roots {
    #[serde(rename = "ActiveRootID")]
    active_root_id: String,
    trust_domain: String,
    roots: Option<Vec<Root>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Root {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    active: bool,
    not_before: String,
    not_after: String,
    root_cert: String,
    intermediate_certs: Option<Vec<String>>,
}

async fn roots(a: RootsArgs) -> Result<Outcome, Failure> {
    let api = a.http.api()?;
    let roots: Roots = api
        .get("/v1/connect/ca/roots", &[])
        .await
        .doing("reading the CA roots")?;
    Ok(Outcome::ok(format_roots(&roots, a.pem)))
}

fn format_roots(roots: &Roots, pem: bool) -> String {
    let mut blocks = vec![key_values(&[
        ("Trust Domain", roots.trust_domain.clone()),
        ("Active Root ID", roots.active_root_id.clone()),
    ])];
    for root in roots.roots.iter().flatten() {
        let mut block = key_values(&[
            ("ID", root.id.clone()),
            ("Name", root.name.clone()),
            ("Active", root.active.to_string()),
            ("Not Before", root.not_before.clone()),
            ("Not After", root.not_after.clone()),
            ("SHA-256 Fingerprint", sha256_fingerprint(&root.root_cert)),
        ]);
        if pem {
            block.push('\n');
            block.push_str(root.root_cert.trim_end());
            for cert in root.intermediate_certs.iter().flatten() {
                block.push('\n');
                block.push_str(cert.trim_end());
            }
        }
        blocks.push(block);
    }
    blocks.join("\n\n")
}

/// The SHA-256 fingerprint of the first certificate in `pem`, colon hex (what a secondary's
/// `tls.internal_rpc.primary_root_sha256` takes, and what `openssl x509 -fingerprint -sha256`
/// prints); empty when `pem` holds no certificate.
fn sha256_fingerprint(pem: &str) -> String {
    let Some(der) = mesh::ca::x509::certs_from_pem(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        return String::new();
    };
    ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Roots {
        serde_json::from_value(serde_json::json!({
            "ActiveRootID": "c7:bd:55", "TrustDomain": "7f42f496.consul",
            "Roots": [{
                "ID": "c7:bd:55", "Name": "Consul CA Primary Cert", "SerialNumber": 7,
                "NotBefore": "2018-05-25T21:39:23Z", "NotAfter": "2028-05-22T21:39:23Z",
                "RootCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "IntermediateCerts": null, "Active": true
            }]
        }))
        .unwrap_or_default()
    }

    #[test]
    fn roots_layout() {
        assert_eq!(
            format_roots(&sample(), false),
            "Trust Domain:    7f42f496.consul\nActive Root ID:  c7:bd:55\n\n\
             ID:                   c7:bd:55\nName:                 Consul CA Primary Cert\n\
             Active:               true\nNot Before:           2018-05-25T21:39:23Z\n\
             Not After:            2028-05-22T21:39:23Z\n\
             SHA-256 Fingerprint:  CC:F7:23:80:A6:2A:23:5F:BF:54:74:C2:A8:5F:6F:68:D0:A1:39:8F:\
             2D:AD:A1:B1:9D:F3:7E:10:D4:AE:A7:23"
        );
    }

    #[test]
    fn roots_with_pem() {
        let text = format_roots(&sample(), true);
        assert!(
            text.ends_with(
                "D4:AE:A7:23\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
            ),
            "{text}"
        );
    }
}
