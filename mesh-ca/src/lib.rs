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
//!   leaves and roots without a restart. Refusals are typed ([`tls::PeerRefusal`]).
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

mod ca;
mod clock;
mod cn;
mod config;
mod csr;
mod error;
mod keys;
mod leaf;
mod limit;
mod provider;
mod roots;
pub mod tls;
pub mod x509;

// One path per item: the CA, its configuration, keys, leaves and providers at the root; the
// rustls integration (`tls`) and the certificate helpers (`x509`) as namespaces of their own.
pub use ca::{
    BACKDATE, CROSS_SIGN_MIN_TTL, Ca, CaOptions, CaState, IntermediateSigner, IssuedLeaf,
    ROOT_PRUNE_GRACE, RenewOutcome, RenewReason, Role, RotateOptions, Rotation, STATE_VERSION,
    half_life_passed, write_secret_file,
};
pub use clock::Clock;
pub use cn::{ca_common_name, compact_uid};
pub use config::{
    CaConfig, ConfigError, DEFAULT_CSR_MAX_PER_SECOND, DEFAULT_INTERMEDIATE_TTL, DEFAULT_LEAF_TTL,
    DEFAULT_ROOT_TTL, INTERMEDIATE_RENEW_INTERVAL, MAX_LEAF_TTL, MIN_LEAF_TTL, go_duration,
    parse_go_duration,
};
pub use csr::{
    CsrBuildError, CsrError, LeafRequest, MAX_CSR_LEN, VerifiedCsr, intermediate_csr,
    new_leaf_request,
};
pub use error::{
    Authorize, CaError, IntermediateRejection, Refusal, SignError, SignerError, signer_error,
};
pub use keys::{
    KeyError, KeySource, KeySpec, PrivateKey, RingKeySource, SecretString, SharedKeySource,
};
pub use leaf::{
    LeafCert, LeafManager, LeafManagerOptions, LeafSigner, LocalSigner, MIN_RENEWABLE_LIFETIME,
    RETRY_WINDOW, ROOT_CHANGE_JITTER, soft_expiry_window,
};
pub use limit::CSR_LIMIT_WAIT;
pub use provider::{
    BUILTIN_PROVIDER_NAME, BuiltinFactory, BuiltinProvider, CaProvider, ProviderContext,
    ProviderError, ProviderFactory, ProviderState, RootRequest, Validity, random_serial,
};
pub use roots::{CaRoot, RootsView};
