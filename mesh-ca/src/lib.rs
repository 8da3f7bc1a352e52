//! The Connect CA of mesh: roots, intermediates, leaf certificates and the rustls
//! configurations that authenticate peers by SPIFFE ID (see docs/consul-compatibility.md, from
//! 'SPIFFE IDs' to 'CA roots list').
//!
//! * [`Ca`] is one datacenter's CA. A primary bootstraps a cluster id and a root
//!   ([`Ca::bootstrap_primary`], or [`Ca::open_primary`] to keep it across restarts); a
//!   secondary gets an intermediate signed by the primary through an [`IntermediateSigner`]
//!   ([`Ca::init_secondary`], renewed by [`Ca::renew_intermediate`]). Leaves are signed from
//!   CSRs with Consul's checks and a caller-supplied [`Authorize`] ([`Ca::sign_leaf`]); roots
//!   rotate with cross-signing ([`Ca::rotate`]); [`Ca::roots`] is the `/v1/connect/ca/roots`
//!   view; [`Ca::export_state`] / [`Ca::load`] persist everything.
//! * [`CaProvider`] is where keys live. [`BuiltinProvider`] uses rcgen and ring (EC P-256 by
//!   default, P-384, and RSA 2048/4096 from caller-supplied PKCS#8 keys, since ring cannot
//!   generate RSA keys). Bring an external CA by implementing [`CaProvider`] and
//!   [`ProviderFactory`].
//! * [`LeafManager`] keeps a holder's leaf fresh (60-90% renewal window with jitter,
//!   re-issue on root change) and publishes it on a `watch` channel.
//! * [`tls::TlsIdentity`] builds rustls server and client configs that require mesh
//!   certificates, check SPIFFE IDs and an authorizer inside the handshake, and follow new
//!   leaves and roots without a restart. Refusals are typed ([`PeerRefusal`]).
//!
//! It does not do: ACL evaluation or intentions (callers pass closures), replication between
//! datacenters (callers implement [`IntermediateSigner`] and feed roots watches), network
//! listeners (it configures rustls; sockets belong to the caller), CRLs or OCSP, and it never
//! uses a process-wide crypto provider: ring is passed explicitly everywhere.
//!
//! ```
//! use mesh_ca::{Ca, CaOptions, Refusal, new_leaf_request};
//! use mesh_core::{ServiceId, SpiffeId};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let ca = Ca::bootstrap_primary(CaOptions::new("dc1".parse()?)).await?;
//! let web: SpiffeId = ServiceId::new(ca.trust_domain().clone(), "dc1".parse()?, "web".parse()?).into();
//! let req = new_leaf_request(&web, &[])?;
//! // The authorizer stands for the ACL check (`service:write` on web).
//! let allow = |id: &SpiffeId| -> Result<(), Refusal> {
//!     if id.as_service().is_some_and(|s| s.service().as_str() == "web") { Ok(()) } else { Err(Refusal::new("no service:write")) }
//! };
//! let leaf = ca.sign_leaf_pem(&req.csr_pem, &allow).await?;
//! assert_eq!(leaf.spiffe_id, web);
//! assert_eq!(leaf.root_id, ca.roots().active_root_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod ca;
pub mod clock;
pub mod cn;
pub mod config;
pub mod csr;
pub mod error;
pub mod keys;
pub mod leaf;
mod limit;
pub mod provider;
pub mod roots;
pub mod tls;
pub mod x509;

pub use ca::{
    Ca, CaOptions, CaState, IntermediateSigner, IssuedLeaf, RenewOutcome, RenewReason, Role,
    RotateOptions, Rotation,
};
pub use clock::Clock;
pub use config::{CaConfig, ConfigError};
pub use csr::{CsrError, LeafRequest, VerifiedCsr, new_leaf_request};
pub use error::{Authorize, CaError, IntermediateRejection, Refusal, SignError, SignerError};
pub use keys::{KeyError, KeySource, KeySpec, PrivateKey, RingKeySource, SecretString};
pub use leaf::{
    LeafCert, LeafManager, LeafManagerOptions, LeafSigner, LocalSigner, soft_expiry_window,
};
pub use limit::CSR_LIMIT_WAIT;
pub use provider::{
    BuiltinFactory, BuiltinProvider, CaProvider, ProviderContext, ProviderError, ProviderFactory,
    ProviderState, RootRequest, Validity,
};
pub use roots::{CaRoot, RootsView};
pub use tls::{
    ConnectAuthorizer, ExpectedServer, PeerRefusal, TlsIdentity, TrustBundle, peer_spiffe_id,
};
