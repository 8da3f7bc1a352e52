//! What every request goes through around its handler: the CE refusals, the body limit and
//! time-out, `?dc=` forwarding, `X-Consul-Default-ACL-Policy`, the request metric; and the
//! answers for wrong methods and unknown paths.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mesh::intentions::acl::DefaultPolicy;

use super::ApiState;
use super::ctx::Ctx;
use super::error::ApiError;
use super::forward;

/// The common layer (runs inside routing, so the matched route is known).
pub(crate) async fn common(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    // The path only: the query may carry a token.
    let path = req.uri().path().to_owned();
    let mut resp = match around(&state, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // What an unmatched check answers: with ACLs off, everything is allowed whatever
    // default_policy says.
    let acl = &state.dc().config().acl;
    let policy = match acl.default_policy {
        DefaultPolicy::Deny if acl.enabled => "deny",
        _ => "allow",
    };
    resp.headers_mut().insert(
        "x-consul-default-acl-policy",
        HeaderValue::from_static(policy),
    );
    let status = resp.status().as_u16();
    // Extension methods would make the label set unbounded.
    let method_label = match method.as_str() {
        m @ ("GET" | "PUT" | "POST" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "OTHER",
    };
    state.metrics.http_request(&route, method_label, status);
    tracing::debug!(
        %method,
        path = %path,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "HTTP API request"
    );
    resp
}

async fn around(state: &ApiState, req: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::from_parts(&parts, state);
    ctx.check_common(&parts.headers)?;
    let bytes = read_body(state, &parts, body).await?;
    let dc = ctx
        .param("datacenter")
        .filter(|d| !d.is_empty())
        .or_else(|| ctx.param("dc").filter(|d| !d.is_empty()));
    if let Some(dc) = dc
        && dc != state.dc().name().as_str()
    {
        return forward::forward(state, &parts, bytes, dc).await;
    }
    if let Some(since) = state.deposed_for() {
        // No leader: what this server holds may be stale. Reads say so; writes are refused
        // before they reach the datacenter.
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(ApiError::server("No cluster leader"));
        }
        let mut resp = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        let headers = resp.headers_mut();
        headers.insert("x-consul-knownleader", HeaderValue::from_static("false"));
        if let Ok(v) = HeaderValue::from_str(&since.as_millis().to_string()) {
            headers.insert("x-consul-lastcontact", v);
        }
        return Ok(resp);
    }
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// Reads the whole body within the size limit (413) and the body time-out (408).
async fn read_body(state: &ApiState, parts: &Parts, body: Body) -> Result<Bytes, ApiError> {
    let max = state.config().max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large, max size: {max} bytes"),
        )
    };
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(body, max);
    match tokio::time::timeout(state.config().body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request body was not received in time",
        )),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "Request body read failed: {e}"
        ))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Consul's answer to a method a route does not take: 405 `method X not allowed` with
/// `Allow: OPTIONS,<methods>`; `OPTIONS` itself gets 200 and the same header.
pub(crate) fn method_not_allowed(method: &Method, allowed: &[&str]) -> Response {
    let allow = format!("OPTIONS,{}", allowed.join(","));
    let mut resp = if method == Method::OPTIONS {
        Response::new(Body::empty())
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
        .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// Consul's 404 for a path that is no endpoint.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("Invalid URL path: not a recognized HTTP API endpoint\n")
}
