//! Building answers: compact or `?pretty` JSON, the empty 200, and the query-metadata
//! headers.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use super::ctx::Ctx;

/// 200 with a JSON body (4-space indented with a trailing newline under `?pretty`).
pub(crate) fn json<T: Serialize + ?Sized>(ctx: &Ctx, value: &T) -> Response {
    json_status(ctx, StatusCode::OK, value)
}

/// A JSON body with a status.
pub(crate) fn json_status<T: Serialize + ?Sized>(
    ctx: &Ctx,
    status: StatusCode,
    value: &T,
) -> Response {
    let body = if ctx.pretty {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        match value.serialize(&mut ser) {
            Ok(()) => {
                buf.push(b'\n');
                buf
            }
            Err(_) => b"null".to_vec(),
        }
    } else {
        serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// 200 with an empty body (what Consul answers for handlers that return nothing).
pub(crate) fn empty() -> Response {
    Response::new(Body::empty())
}

/// A body of some other content type.
pub(crate) fn raw(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Sets a header (values that are not valid header text are skipped).
pub(crate) fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// The query metadata of a read: `X-Consul-Index` (never 0), `X-Consul-KnownLeader: true`,
/// `X-Consul-LastContact: 0` (this server is its datacenter's leader).
pub(crate) fn meta(mut resp: Response, index: u64) -> Response {
    set(&mut resp, "x-consul-index", &index.max(1).to_string());
    set(&mut resp, "x-consul-knownleader", "true");
    set(&mut resp, "x-consul-lastcontact", "0");
    resp
}

/// [`meta`] plus `X-Consul-Effective-Consistency`.
pub(crate) fn meta_consistency(resp: Response, index: u64, ctx: &Ctx) -> Response {
    let mut resp = meta(resp, index);
    set(
        &mut resp,
        "x-consul-effective-consistency",
        ctx.consistency(),
    );
    resp
}

/// `X-Consul-Results-Filtered-By-ACLs: true` when something was hidden from a request that
/// carried a real token.
pub(crate) fn filtered(mut resp: Response, ctx: &Ctx, hidden: bool) -> Response {
    if hidden && ctx.token_given {
        set(&mut resp, "x-consul-results-filtered-by-acls", "true");
    }
    resp
}
