//! A tour of the Connect CA: a primary datacenter bootstraps its root, a secondary gets an
//! intermediate signed by it, and a service in the secondary gets a leaf. Everything is written
//! as PEM files so a tool mesh did not write (`openssl`) can check the certificates.
//!
//! ```text
//! cargo run --example ca_tour -- --out /tmp/ca-tour
//! ```
//!
//! Files: `root.pem` (every root), `roots.json` (the `/v1/connect/ca/roots` view),
//! `intermediate.pem` (the secondary's intermediate), `leaf.pem`, `leaf-chain.pem` (leaf then
//! intermediates, as presented in TLS), `leaf-key.pem` (mode 0600: always a new file, renamed
//! over one left by an earlier run; a symbolic link there is refused, not followed).

use std::path::{Path, PathBuf};

use mesh_ca::{Ca, CaOptions, LeafCert, Refusal, new_leaf_request};
use mesh_core::{ServiceId, SpiffeId};

/// The files the tour wrote and the commands that check them.
pub struct TourFiles {
    /// Every root, PEM.
    pub root: PathBuf,
    /// The secondary's intermediate, PEM.
    pub intermediate: PathBuf,
    /// The leaf alone, PEM.
    pub leaf: PathBuf,
    /// The leaf and its intermediates, PEM.
    pub leaf_chain: PathBuf,
    /// The leaf's key, PKCS#8 PEM.
    pub leaf_key: PathBuf,
    /// The roots view, JSON.
    pub roots_json: PathBuf,
    /// The leaf's SPIFFE ID.
    pub spiffe_id: String,
    /// `openssl` commands that verify the files.
    pub commands: Vec<String>,
}

/// Runs the tour and writes its files under `out`.
pub async fn run_tour(out: &Path) -> Result<TourFiles, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let primary = Ca::bootstrap_primary(CaOptions::new("dc1".parse()?)).await?;
    let secondary = Ca::init_secondary(CaOptions::new("dc2".parse()?), &primary).await?;

    let id: SpiffeId = ServiceId::new(
        secondary.trust_domain().clone(),
        "dc2".parse()?,
        "web".parse()?,
    )
    .into();
    let req = new_leaf_request(&id, &[])?;
    // The authorizer stands in for the ACL check (`service:write` on web).
    let allow_web = |asked: &SpiffeId| -> Result<(), Refusal> {
        match asked.as_service() {
            Some(s) if s.service().as_str() == "web" => Ok(()),
            _ => Err(Refusal::new("token may only write service web")),
        }
    };
    let issued = secondary.sign_leaf_pem(&req.csr_pem, &allow_web).await?;
    let leaf = LeafCert::new(issued, req.key);

    let roots = secondary.roots();
    let active = roots.active_root().ok_or("no active root")?;
    let files = TourFiles {
        root: out.join("root.pem"),
        intermediate: out.join("intermediate.pem"),
        leaf: out.join("leaf.pem"),
        leaf_chain: out.join("leaf-chain.pem"),
        leaf_key: out.join("leaf-key.pem"),
        roots_json: out.join("roots.json"),
        spiffe_id: leaf.spiffe_id().to_string(),
        commands: Vec::new(),
    };
    std::fs::write(&files.root, roots.roots_pem())?;
    std::fs::write(&files.roots_json, roots.to_json())?;
    std::fs::write(&files.intermediate, active.intermediate_certs.concat())?;
    std::fs::write(&files.leaf, mesh_ca::x509::cert_pem(&leaf.issued.cert))?;
    std::fs::write(&files.leaf_chain, &leaf.issued.cert_pem)?;
    // The key: a new owner-only file, never an existing one written into (it would keep its
    // mode, 0644 say) nor one reached through a symbolic link.
    mesh_ca::write_secret_file(
        &files.leaf_key,
        leaf.key().to_pkcs8_pem().expose().as_bytes(),
    )
    .map_err(|e| format!("writing the leaf key: {e}"))?;

    let p = |f: &Path| f.display().to_string();
    let commands = vec![
        format!(
            "openssl verify -CAfile {} {}",
            p(&files.root),
            p(&files.intermediate)
        ),
        format!(
            "openssl verify -CAfile {} -untrusted {} {}",
            p(&files.root),
            p(&files.intermediate),
            p(&files.leaf)
        ),
        format!("openssl x509 -in {} -noout -text", p(&files.leaf)),
        format!("openssl pkey -in {} -noout -check", p(&files.leaf_key)),
    ];
    Ok(TourFiles { commands, ..files })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out = PathBuf::from("ca-tour");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            other => {
                return Err(format!("unknown argument {other:?}; usage: ca_tour --out DIR").into());
            }
        }
    }
    let files = run_tour(&out).await?;
    println!("leaf for {} written to {}", files.spiffe_id, out.display());
    println!("check with:");
    for c in &files.commands {
        println!("  {c}");
    }
    Ok(())
}
