//! `GET /v1/agent/connect/ca/leaf/:service` (see docs/consul-compatibility.md,
//! "Leaf signing rules"): the agent makes a key and a CSR for
//! the service's SPIFFE ID, has the datacenter sign it with the caller's token, and keeps
//! the leaf until it nears expiry or the roots change.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mesh::Secret;
use mesh::core::{ServiceId, ServiceName, SpiffeId};
use serde_json::{Value, json};

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::error::{ApiError, chain};
use super::raw::{authorizer, require_service_write};
use super::reply;
use super::util::{base64, now_unix, rfc3339};

/// How many leaves are kept (per service and token).
const MAX_CACHED: usize = 1024;

/// Issued leaves by service and token (the token as a keyed hash, never the secret).
#[derive(Default)]
pub(crate) struct LeafCache {
    leaves: Mutex<HashMap<(String, u64), Arc<Leaf>>>,
    last_index: AtomicU64,
    keys: std::collections::hash_map::RandomState,
}

/// One issued leaf, ready to answer.
pub(crate) struct Leaf {
    body: Value,
    modify_index: u64,
    root_id: String,
    valid_after: i64,
    valid_before: i64,
}

impl Leaf {
    /// When a new leaf is due: at 80% of the lifetime.
    fn renew_at(&self) -> i64 {
        self.valid_after + (self.valid_before - self.valid_after) * 4 / 5
    }

    fn usable(&self, now: i64, active_root: &str) -> bool {
        self.root_id == active_root && now < self.renew_at()
    }
}

impl LeafCache {
    /// Per service, the seconds until its soonest-expiring cached leaf expires.
    pub(crate) fn expiry_by_service(&self) -> Vec<(String, f64)> {
        let now = now_unix();
        let map = self
            .leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut soonest: HashMap<&str, i64> = HashMap::new();
        for ((service, _), leaf) in map.iter() {
            let e = soonest.entry(service.as_str()).or_insert(leaf.valid_before);
            *e = (*e).min(leaf.valid_before);
        }
        soonest
            .into_iter()
            .map(|(s, before)| (s.to_owned(), (before - now) as f64))
            .collect()
    }

    fn key(&self, service: &str, token: &str) -> (String, u64) {
        (service.to_owned(), self.keys.hash_one(token))
    }

    fn get(&self, key: &(String, u64)) -> Option<Arc<Leaf>> {
        self.leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put(&self, key: (String, u64), leaf: Arc<Leaf>) {
        let mut map = self
            .leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CACHED {
            let now = now_unix();
            map.retain(|_, l| l.renew_at() > now);
            if map.len() >= MAX_CACHED {
                map.clear();
            }
        }
        map.insert(key, leaf);
    }

    fn next_index(&self, store_index: u64) -> u64 {
        let mut prev = self.last_index.load(Ordering::Relaxed);
        loop {
            let next = store_index.max(prev + 1);
            match self
                .last_index
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

pub(crate) fn sign_error(e: mesh::Error) -> ApiError {
    match e.kind() {
        mesh::ErrorKind::Sign(se) => match se.as_ref() {
            se if se.is_invalid_request() => ApiError::bad_request(chain(se)),
            mesh::ca::SignError::PermissionDenied { .. } => ApiError::forbidden(chain(se.as_ref())),
            mesh::ca::SignError::RateLimited => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached, try again later",
            ),
            _ => ApiError::server(chain(&e)),
        },
        _ => e.into(),
    }
}

/// Issues a new leaf for `service` signed with `token`.
async fn issue(state: &ApiState, token: &Secret, service: &ServiceName) -> Result<Leaf, ApiError> {
    let dc = state.dc();
    let td = dc
        .trust_domain()
        .ok_or_else(|| ApiError::server("Connect must be enabled in order to use this endpoint"))?;
    let id: SpiffeId = ServiceId::new(td, dc.name().clone(), service.clone()).into();
    let req = mesh::ca::new_leaf_request(&id, &[])
        .map_err(|e| ApiError::server(format!("generating the leaf key failed: {}", chain(&e))))?;
    let issued = dc
        .connect_ca()
        .sign_leaf(token, &req.csr_pem)
        .await
        .map_err(sign_error)?;
    state.metrics.leaf_issued();
    let der = req.key.to_pkcs8_der();
    let key_pem = match sec1_from_pkcs8(der.secret_pkcs8_der()) {
        Some(sec1) => pem("EC PRIVATE KEY", &sec1),
        None => req.key.to_pkcs8_pem().expose().to_owned(),
    };
    let index = state.leaves.next_index(dc.store().index().0);
    let valid_after = issued.valid_after.unix_timestamp();
    let valid_before = issued.valid_before.unix_timestamp();
    let body = json!({
        "SerialNumber": issued.serial_number,
        "CertPEM": issued.cert_pem,
        "PrivateKeyPEM": key_pem,
        "Service": service.as_str(),
        "ServiceURI": id.to_string(),
        "ValidAfter": rfc3339(valid_after, 0),
        "ValidBefore": rfc3339(valid_before, 0),
        "CreateIndex": index,
        "ModifyIndex": index,
    });
    Ok(Leaf {
        body,
        modify_index: index,
        root_id: issued.root_id,
        valid_after,
        valid_before,
    })
}

/// The cached leaf if still good, else a new one; and whether it came from the cache.
async fn current(
    state: &ApiState,
    token: &Secret,
    service: &ServiceName,
) -> Result<(Arc<Leaf>, bool), ApiError> {
    let key = state.leaves.key(service.as_str(), token.expose_secret());
    let active = state.dc().connect_ca().roots()?.active_root_id.clone();
    if let Some(l) = state.leaves.get(&key)
        && l.usable(now_unix(), &active)
    {
        return Ok((l, true));
    }
    let leaf = Arc::new(issue(state, token, service).await?);
    state.leaves.put(key, leaf.clone());
    Ok((leaf, false))
}

/// `GET /v1/agent/connect/ca/leaf/:service` (`service:write` on the service). With
/// `?index=` at the current leaf's index, waits until a new leaf is due (renewal window or
/// root rotation) or `?wait=` passes.
pub(crate) async fn leaf(State(s): State<ApiState>, ctx: Ctx, Path(service): Path<String>) -> Res {
    let name: ServiceName = service
        .parse()
        .map_err(|e| ApiError::bad_request(format!("Invalid service name {service:?}: {e}")))?;
    let authz = authorizer(&s, &ctx)?;
    require_service_write(&s, &authz, name.as_str())?;
    let b = ctx.blocking(&s)?;
    let (mut leaf, mut hit) = current(&s, &ctx.token, &name).await?;
    if b.index > 0 && leaf.modify_index <= b.index {
        let _slot = blocking::permit(&s)?;
        let mut roots = s.dc().connect_ca().subscribe_roots()?;
        roots.borrow_and_update();
        let due = Duration::from_secs(leaf.renew_at().saturating_sub(now_unix()).max(0) as u64);
        tokio::select! {
            _ = roots.changed() => {}
            () = tokio::time::sleep(due.min(b.wait)) => {}
        }
        (leaf, hit) = current(&s, &ctx.token, &name).await?;
    }
    let mut resp = reply::json(&ctx, &leaf.body);
    reply::set(
        &mut resp,
        "x-consul-index",
        &leaf.modify_index.max(1).to_string(),
    );
    reply::set(&mut resp, "x-cache", if hit { "HIT" } else { "MISS" });
    Ok(resp)
}

type Res = Result<Response, ApiError>;

// ---- PKCS#8 to SEC1 ------------------------------------------------------------------------

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |a, x| (a << 8) | usize::from(*x));
        (len, &b[n..])
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The SEC1 `ECPrivateKey` (what Consul's `EC PRIVATE KEY` PEM holds) inside a PKCS#8 EC
/// key, with the curve named in it (PKCS#8 keeps the curve outside, and some readers need it
/// inside).
fn sec1_from_pkcs8(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (0x30, info, _) = tlv(pkcs8)? else {
        return None;
    };
    let (0x02, _, rest) = tlv(info)? else {
        return None;
    };
    let (0x30, alg, rest) = tlv(rest)? else {
        return None;
    };
    let (0x06, _, alg_rest) = tlv(alg)? else {
        return None;
    };
    let (0x06, curve, _) = tlv(alg_rest)? else {
        return None;
    };
    let (0x04, inner, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, ec, _) = tlv(inner)? else {
        return None;
    };
    let (0x02, version, rest) = tlv(ec)? else {
        return None;
    };
    let (0x04, private, mut rest) = tlv(rest)? else {
        return None;
    };
    let mut public = None;
    while !rest.is_empty() {
        let (tag, contents, r) = tlv(rest)?;
        if tag == 0xa1 {
            public = Some(contents);
        }
        rest = r;
    }
    let mut body = der(0x02, version);
    body.extend(der(0x04, private));
    body.extend(der(0xa0, &der(0x06, curve)));
    if let Some(p) = public {
        body.extend(der(0xa1, p));
    }
    Some(der(0x30, &body))
}

/// PEM armour with 64-column base64.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sec1_carries_the_curve() {
        let key = mesh::ca::PrivateKey::generate(mesh::ca::KeySpec::EcP256).unwrap();
        let der8 = key.to_pkcs8_der();
        let sec1 = sec1_from_pkcs8(der8.secret_pkcs8_der()).unwrap();
        // SEQUENCE { INTEGER 1, OCTET STRING (32), [0] { OID prime256v1 }, [1] {...} }
        let (tag, body, rest) = tlv(&sec1).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (_, v, body) = tlv(body).unwrap();
        assert_eq!(v, [1]);
        let (_, private, body) = tlv(body).unwrap();
        assert_eq!(private.len(), 32);
        let (tag, params, body) = tlv(body).unwrap();
        assert_eq!(tag, 0xa0);
        assert_eq!(
            params,
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        let (tag, _, _) = tlv(body).unwrap();
        assert_eq!(tag, 0xa1);
        assert!(pem("EC PRIVATE KEY", &sec1).starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(sec1_from_pkcs8(b"\x30\x03\x02\x01").is_none());
    }
}
