//! The error funnel: every failure becomes Consul's status and plain-text body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh::intentions::acl::{PermissionDenied, Resource, Subject};
use mesh::replication_engine::{
    DeniedKind, RemoteError, RemoteErrorKind, TransportError, WriteError,
};

/// An error answer: a status and the whole plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) text: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            text: text.into(),
        }
    }

    /// 400, an error the handler detected in the request.
    pub(crate) fn bad_request(text: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, text)
    }

    /// 403.
    pub(crate) fn forbidden(text: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, text)
    }

    /// 404.
    pub(crate) fn not_found(text: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, text)
    }

    /// 500: what Consul answers for errors raised by its server RPCs.
    pub(crate) fn server(text: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, text)
    }

    /// 403 `ACL not found`.
    pub(crate) fn acl_not_found() -> Self {
        Self::forbidden("ACL not found")
    }

    /// 403 for a refused permission, in Consul's words.
    pub(crate) fn denied(pd: &PermissionDenied) -> Self {
        Self::forbidden(denied_text(pd))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let text = if self.text.is_empty() {
            "An unexpected error occurred".to_owned()
        } else {
            self.text
        };
        let mut resp = (self.status, text).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Consul's permission-denied text (`acl/errors.go`): the permission in Consul's resource
/// words (`intention`, singular), the name it was needed on, and for the anonymous token the
/// sentence saying it was used implicitly. What decided (the rule or the default) is left to
/// the log, as Consul does.
pub(crate) fn denied_text(pd: &PermissionDenied) -> String {
    let resource = match pd.needed.resource {
        Resource::Intention => "intention",
        other => other.as_str(),
    };
    let perm = format!("{resource}:{}", pd.needed.access.as_str());
    let on = pd
        .on
        .as_deref()
        .map(|n| format!(" on {}", go_quote(n)))
        .unwrap_or_default();
    match &pd.subject {
        Subject::Anonymous => format!(
            "Permission denied: anonymous token lacks permission '{perm}'{on}. The anonymous token is used implicitly when a request does not specify a token."
        ),
        Subject::Token(id) => {
            format!("Permission denied: token with AccessorID '{id}' lacks permission '{perm}'{on}")
        }
        _ => format!("Permission denied: token lacks permission '{perm}'{on}"),
    }
}

/// Go's `%q` for the strings names are made of (printable ASCII); other characters escaped.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An error and its sources, `a: b: c` (library errors keep their detail in the chain).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain(e)
}

fn remote(r: &RemoteError) -> ApiError {
    match r.kind {
        RemoteErrorKind::Denied if r.message.contains("ACL not found") => ApiError::acl_not_found(),
        RemoteErrorKind::Denied => ApiError::forbidden(permission_text(&r.message)),
        RemoteErrorKind::InvalidRequest => ApiError::bad_request(r.message.clone()),
        RemoteErrorKind::CasConflict => ApiError::new(StatusCode::CONFLICT, r.message.clone()),
        _ => ApiError::server(r.message.clone()),
    }
}

/// A refusal text that says `Permission denied` (what Consul's clients look for).
fn permission_text(reason: &str) -> String {
    if reason.contains("Permission denied") {
        match reason.find("Permission denied") {
            Some(at) => reason[at..].to_owned(),
            None => reason.to_owned(),
        }
    } else {
        format!("Permission denied: {reason}")
    }
}

impl From<mesh::Error> for ApiError {
    fn from(e: mesh::Error) -> Self {
        // The operation is the caller's own request: the answer names only what went wrong.
        e.into_kind().into()
    }
}

impl From<mesh::ErrorKind> for ApiError {
    fn from(e: mesh::ErrorKind) -> Self {
        use mesh::ErrorKind as E;
        match &e {
            E::AclNotFound => Self::acl_not_found(),
            E::PermissionDenied(pd) => Self::denied(pd),
            E::Invalid(src) => Self::bad_request(chain(src)),
            E::NotFound(what) => Self::not_found(format!("{what} not found")),
            E::Conflict(what) => Self::new(StatusCode::CONFLICT, format!("{what} already exists")),
            E::ConnectDisabled => {
                Self::server("Connect must be enabled in order to use this endpoint")
            }
            E::Forward(WriteError::Denied(d)) => match d.kind {
                DeniedKind::Invalid => Self::bad_request(d.reason.clone()),
                _ if d.reason == "ACL not found" => Self::acl_not_found(),
                _ => Self::forbidden(permission_text(&d.reason)),
            },
            E::Forward(WriteError::Forward(TransportError::Remote(r))) => remote(r),
            E::Forward(WriteError::Local(mesh::replication_engine::StoreError::CasConflict {
                ..
            })) => Self::new(StatusCode::CONFLICT, chain(&e)),
            _ => Self::server(chain(&e)),
        }
    }
}

impl From<RemoteError> for ApiError {
    fn from(r: RemoteError) -> Self {
        remote(&r)
    }
}

impl From<mesh::replication_engine::StoreError> for ApiError {
    fn from(e: mesh::replication_engine::StoreError) -> Self {
        Self::server(chain(&e))
    }
}
