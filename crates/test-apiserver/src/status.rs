//! `kind: Status` failure objects, shaped and worded like the real API server's, so clients'
//! error classification (code + reason) behaves the same against this double.

use serde_json::{json, Value};

use crate::resources::Resource;

/// An API error: HTTP status code plus the Status body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> ApiError {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    ApiError { code, body }
}

fn details(r: &Resource, name: &str) -> Value {
    json!({"name": name, "group": r.group, "kind": r.plural})
}

pub fn unauthorized() -> ApiError {
    status(401, "Unauthorized", "Unauthorized".into(), None)
}

pub fn not_found(r: &Resource, name: &str) -> ApiError {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", r.qualified()),
        Some(details(r, name)),
    )
}

/// 404 for a path that names no served resource (a real server answers with a bare
/// `404 page not found` body for unknown groups; a Status is close enough for clients).
pub fn no_route(path: &str) -> ApiError {
    status(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
        None,
    )
}

pub fn already_exists(r: &Resource, name: &str) -> ApiError {
    status(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", r.qualified()),
        Some(details(r, name)),
    )
}

/// 409 Conflict: stale resourceVersion or failed precondition.
pub fn conflict(r: &Resource, name: &str, why: &str) -> ApiError {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            r.qualified()
        ),
        Some(details(r, name)),
    )
}

pub const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

pub fn bad_request(message: String) -> ApiError {
    status(400, "BadRequest", message, None)
}

/// 422 Invalid with one field cause.
pub fn invalid(r: &Resource, name: &str, field: &str, detail: String) -> ApiError {
    let mut e = status(
        422,
        "Invalid",
        format!(
            "{}.{} \"{name}\" is invalid: {field}: {detail}",
            r.kind, r.group
        )
        .replace(". \"", " \""),
        Some(details(r, name)),
    );
    e.body["details"]["causes"] =
        json!([{"reason": "FieldValueInvalid", "message": detail, "field": field}]);
    e
}

pub fn method_not_allowed(method: &str) -> ApiError {
    status(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
        None,
    )
}

pub fn unsupported_media_type(ct: &str) -> ApiError {
    status(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"),
        None,
    )
}

pub fn internal(message: String) -> ApiError {
    status(500, "InternalError", message, None)
}
