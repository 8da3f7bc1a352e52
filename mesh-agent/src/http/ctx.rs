//! What every handler reads from a request: the token (resolved as Consul resolves it), the
//! query parameters, `?pretty`, and the blocking-query parameters.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use mesh::Secret;

use super::ApiState;
use super::error::ApiError;
use super::util::{parse_go_duration, parse_query};

/// The anonymous token's accessor ID.
pub(crate) const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// The request context. The token is a secret: never logged, never echoed.
pub(crate) struct Ctx {
    /// The secret the request runs as (`""` = anonymous).
    pub(crate) token: Secret,
    /// Whether the request carried a real token (not anonymous): only then does a filtered
    /// list say so.
    pub(crate) token_given: bool,
    query: Vec<(String, String)>,
    /// `?pretty`.
    pub(crate) pretty: bool,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("token_given", &self.token_given)
            .field("pretty", &self.pretty)
            .finish_non_exhaustive()
    }
}

/// The parameters of a blocking query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking {
    /// `?index=` (0: answer at once).
    pub(crate) index: u64,
    /// How long to hold the query at most (`?wait=`, capped).
    pub(crate) wait: Duration,
}

impl Ctx {
    /// Builds the context from the request head.
    pub(crate) fn from_parts(parts: &Parts, state: &ApiState) -> Self {
        let query = parts.uri.query().map(parse_query).unwrap_or_default();
        let token = resolve_token(&query, &parts.headers)
            .or_else(|| state.default_token().map(str::to_owned))
            .unwrap_or_default();
        let token_given = !token.is_empty() && token != "anonymous";
        let pretty = query.iter().any(|(k, _)| k == "pretty");
        Self {
            token: Secret::new(token),
            token_given,
            query,
            pretty,
        }
    }

    /// The first value of a query parameter.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter.
    pub(crate) fn params<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a query parameter is present (with any value).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.query.iter().any(|(k, _)| k == key)
    }

    /// `?index=` and `?wait=`, Consul's way: `Invalid index`, `Invalid wait time`; a missing
    /// or zero wait is the default query time; the wait is capped.
    pub(crate) fn blocking(&self, state: &ApiState) -> Result<Blocking, ApiError> {
        let cfg = state.config();
        let index = match self.param("index") {
            None | Some("") => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Invalid index"))?,
        };
        let wait = match self.param("wait") {
            None | Some("") => Duration::ZERO,
            Some(v) => {
                parse_go_duration(v).ok_or_else(|| ApiError::bad_request("Invalid wait time"))?
            }
        };
        let wait = if wait.is_zero() {
            cfg.default_wait
        } else {
            wait
        };
        Ok(Blocking {
            index,
            wait: wait.min(cfg.max_wait),
        })
    }

    /// The consistency mode the request asked for, as `X-Consul-Effective-Consistency`
    /// names it.
    pub(crate) fn consistency(&self) -> &'static str {
        if self.has("consistent") {
            "consistent"
        } else if self.has("stale") || self.param("max_stale").is_some_and(|v| !v.is_empty()) {
            "stale"
        } else {
            "leader"
        }
    }

    /// The checks every request gets before its handler: the CE refusals of namespaces and
    /// partitions, and the conflicting consistency modes.
    pub(crate) fn check_common(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        for (param, what) in [("ns", "Namespaces"), ("partition", "Partitions")] {
            if self.param(param).is_some_and(|v| !v.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "Invalid query parameter: \"{param}\" - {what} are a Consul Enterprise feature"
                )));
            }
        }
        for (h, what) in [
            ("X-Consul-Namespace", "Namespaces"),
            ("X-Consul-Partition", "Partitions"),
        ] {
            if headers
                .get(h)
                .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty())
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid header: \"{h}\" - {what} are a Consul Enterprise feature"
                )));
            }
        }
        if self.has("stale") && self.has("consistent") {
            return Err(ApiError::bad_request(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        if self.has("cached") && self.has("consistent") {
            return Err(ApiError::bad_request(
                "Cannot specify ?cached with ?consistent, conflicting semantics.",
            ));
        }
        if let Some(v) = self.param("max_stale").filter(|v| !v.is_empty())
            && parse_go_duration(v).is_none()
        {
            return Err(ApiError::bad_request(format!(
                "Invalid max_stale value {}",
                super::error::go_quote(v)
            )));
        }
        Ok(())
    }

    /// `?filter=` is not implemented: refuse it rather than answer unfiltered.
    pub(crate) fn refuse_filter(&self) -> Result<(), ApiError> {
        match self.param("filter") {
            Some(f) if !f.trim().is_empty() => Err(ApiError::bad_request(
                "Failed to create boolean expression evaluator: filter expressions are not supported by mesh",
            )),
            _ => Ok(()),
        }
    }
}

/// Consul's order: `?token=`, then `X-Consul-Token`, then `Authorization: Bearer <t>` (scheme
/// case-insensitive, the first word after it).
fn resolve_token(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    if let Some((_, t)) = query.iter().find(|(k, v)| k == "token" && !v.is_empty()) {
        return Some(t.clone());
    }
    if let Some(t) = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_owned());
    }
    let auth = headers.get("Authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    rest.split_whitespace().next().map(str::to_owned)
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        Ok(Ctx::from_parts(parts, state))
    }
}
