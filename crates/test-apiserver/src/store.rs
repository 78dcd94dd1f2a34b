//! The object store and the API semantics of each verb (what a real API server accepts,
//! rejects, and how it versions objects).
//!
//! `resourceVersion` is one global counter (like etcd's revision): every create, real update
//! and delete advances it; a write that changes nothing keeps the object's version, as the
//! real server does.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::patch;
use crate::resources::{Resource, Target};
use crate::selector::{self, Selector};
use crate::status::{self, ApiError};
use crate::util;

/// (qualified resource, namespace or "", name)
type ObjKey = (String, String, String);

/// What one request asks for, after routing.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: Target,
    pub query: HashMap<String, String>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// All stored objects.
#[derive(Default)]
pub struct ObjectStore {
    objects: BTreeMap<ObjKey, Value>,
    rv: u64,
}

type ApiResult = Result<(u16, Value), ApiError>;

fn key(r: &Resource, ns: Option<&str>, name: &str) -> ObjKey {
    let ns = if r.namespaced { ns.unwrap_or("") } else { "" };
    (r.qualified(), ns.to_string(), name.to_string())
}

fn meta_str<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Unreachable: ensured just above; keep a total function without panicking.
        _ => unreachable_meta(),
    }
}

#[allow(clippy::unreachable)]
fn unreachable_meta() -> ! {
    unreachable!("metadata was just set to an object")
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    if !v.is_object() {
        return Err(status::bad_request(
            "couldn't get version/kind; json parse error: expected an object".into(),
        ));
    }
    Ok(v)
}

/// apiVersion/kind must be present and name this resource.
fn check_type(r: &Resource, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(status::bad_request(format!(
            "Object 'Kind' is missing in '{obj}'"
        )));
    }
    if av.is_empty() {
        return Err(status::bad_request(format!(
            "Object 'apiVersion' is missing in '{obj}'"
        )));
    }
    if av != r.api_version() {
        return Err(status::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    if kind != r.kind {
        return Err(status::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            r.kind
        )));
    }
    Ok(())
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

fn validate_name(r: &Resource, name: &str) -> Result<(), ApiError> {
    let ok = if r.plural == "namespaces" {
        dns_label(name)
    } else {
        dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    Err(status::invalid(
        r,
        name,
        "metadata.name",
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ),
    ))
}

/// A label value / the name part of a qualified key: up to 63 alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric.
fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `[prefix/]name` with a DNS-subdomain prefix, as label and annotation keys must be.
fn qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_name_part(name),
        None => qualified_name_part(k),
    }
}

/// Label keys and values, and annotation keys, must be valid (422 otherwise).
fn validate_meta_maps(r: &Resource, name: &str, obj: &Value) -> Result<(), ApiError> {
    let map = |f: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for (k, v) in map("labels") {
        let value = v.as_str().unwrap_or("-");
        if !qualified_key(&k) {
            return Err(status::invalid(r, name, "metadata.labels", format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.'")));
        }
        if !(value.is_empty() || qualified_name_part(value)) {
            return Err(status::invalid(r, name, "metadata.labels", format!("Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.' (at most 63)")));
        }
    }
    for (k, v) in map("annotations") {
        if !qualified_key(&k) || !v.is_string() {
            return Err(status::invalid(r, name, "metadata.annotations", format!("Invalid value: {k:?}: annotation keys must be qualified names with string values")));
        }
    }
    Ok(())
}

/// The body's namespace must agree with the URL's; it is filled in when absent.
fn check_namespace(r: &Resource, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if !r.namespaced {
        meta_mut(obj).remove("namespace");
        return Ok(());
    }
    let url_ns = t.namespace.clone().unwrap_or_default();
    match meta_str(obj, "namespace") {
        Some(ns) if ns != url_ns => Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => {
            meta_mut(obj).insert("namespace".into(), json!(url_ns));
            Ok(())
        }
    }
}

/// Fields a client cannot change: restored from the stored object on every update.
fn keep_system_fields(new: &mut Value, old: &Value) {
    let m = meta_mut(new);
    for f in ["uid", "creationTimestamp", "name", "namespace"] {
        match old.get("metadata").and_then(|o| o.get(f)) {
            Some(v) => {
                m.insert(f.into(), v.clone());
            }
            None => {
                m.remove(f);
            }
        }
    }
}

/// Status-subresource rules: main writes keep the old status; `/status` writes keep
/// everything except status and metadata.
fn apply_subresource_rules(r: &Resource, sub: Option<&str>, new: &mut Value, old: &Value) {
    if !r.status_subresource {
        return;
    }
    let restore = |new: &mut Value, field: &str| {
        let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) else {
            return;
        };
        match o.get(field) {
            Some(v) => n.insert(field.into(), v.clone()),
            None => n.remove(field),
        };
    };
    if sub == Some("status") {
        let fields: Vec<String> = old
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .chain(new.as_object().into_iter().flat_map(|o| o.keys()))
            .filter(|k| !matches!(k.as_str(), "status" | "metadata" | "kind" | "apiVersion"))
            .cloned()
            .collect();
        for f in fields {
            restore(new, &f);
        }
    } else {
        restore(new, "status");
    }
}

/// Equal except for resourceVersion: a no-op write.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        meta_mut(&mut v).remove("resourceVersion");
        v
    };
    strip(a) == strip(b)
}

impl ObjectStore {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Dispatch one routed request.
    pub fn handle(&mut self, req: &Request<'_>) -> ApiResult {
        let t = &req.target;
        match (req.method, t.name.as_deref()) {
            ("GET", Some(name)) => self.get(t, name),
            ("GET", None) => self.list(t, &req.query),
            ("POST", None) if t.namespace.is_some() || !t.resource.namespaced => {
                self.create(t, req.body)
            }
            ("PUT", Some(name)) => self.replace(t, name, req.body),
            ("PATCH", Some(name)) => self.patch(t, name, req.content_type, req.body),
            ("DELETE", Some(name)) if t.sub.is_none() => self.delete(t, name, req.body),
            (m, _) => Err(status::method_not_allowed(m)),
        }
    }

    fn lookup(&self, t: &Target, name: &str) -> Result<&Value, ApiError> {
        let r = t.resource;
        self.objects
            .get(&key(r, t.namespace.as_deref(), name))
            .ok_or_else(|| status::not_found(r, name))
    }

    fn get(&self, t: &Target, name: &str) -> ApiResult {
        Ok((200, self.lookup(t, name)?.clone()))
    }

    fn list(&self, t: &Target, query: &HashMap<String, String>) -> ApiResult {
        let r = t.resource;
        let parse = |k: &str| {
            Selector::parse(query.get(k).map(String::as_str).unwrap_or(""))
                .map_err(status::bad_request)
        };
        let (labels, fields) = (parse("labelSelector")?, parse("fieldSelector")?);
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            // Not implemented here; fail loudly rather than answer a watch with a list.
            return Err(status::bad_request(
                "watch is not supported by test-apiserver".into(),
            ));
        }
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None | Some(Ok(0)) => usize::MAX,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(status::bad_request("invalid limit".into())),
        };
        // Continue token: the `<namespace>/<name>` of the last item returned (opaque to clients).
        let after = query.get("continue").filter(|c| !c.is_empty());
        let q = r.qualified();
        let matching: Vec<(String, &Value)> = self
            .objects
            .iter()
            .filter(|((kq, ns, _), _)| {
                *kq == q && t.namespace.as_ref().is_none_or(|want| want == ns)
            })
            .map(|((_, ns, name), v)| (format!("{ns}/{name}"), v))
            .filter(|(pos, _)| after.is_none_or(|a| pos > a))
            .filter(|(_, v)| labels.matches(|k| selector::label(v, k)))
            .filter(|(_, v)| fields.matches(|k| selector::field(v, k)))
            .collect();
        let more = matching.len() > limit;
        let page = &matching[..matching.len().min(limit)];
        let items: Vec<Value> = page
            .iter()
            .map(|(_, v)| {
                let mut v = (*v).clone();
                // Built-in lists carry no per-item type meta; CRD lists do.
                if r.is_core() {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("kind");
                        o.remove("apiVersion");
                    }
                }
                v
            })
            .collect();
        let mut meta = json!({"resourceVersion": self.rv.to_string()});
        if more {
            if let Some((pos, _)) = page.last() {
                meta["continue"] = json!(pos);
                meta["remainingItemCount"] = json!(matching.len() - page.len());
            }
        }
        Ok((
            200,
            json!({
                "kind": format!("{}List", r.kind),
                "apiVersion": r.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }

    fn create(&mut self, t: &Target, body: &[u8]) -> ApiResult {
        let r = t.resource;
        let mut obj = parse_body(body)?;
        check_type(r, &obj)?;
        check_namespace(r, t, &mut obj)?;
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) => n.to_string(),
            (None, Some(g)) => {
                let suffix = util::random_hex(3).map_err(|e| status::internal(e.to_string()))?;
                format!("{g}{}", &suffix[..5])
            }
            (None, None) => {
                return Err(status::invalid(
                    r,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required".into(),
                ))
            }
        };
        validate_name(r, &name)?;
        validate_meta_maps(r, &name, &obj)?;
        if meta_str(&obj, "resourceVersion").is_some() {
            // The real server's storage layer refuses this with a plain (500) error.
            return Err(status::internal(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        if let Some(ns) = t.namespace.as_deref().filter(|_| r.namespaced) {
            let nsr = Resource::by_type("v1", "Namespace")
                .ok_or_else(|| status::internal("no namespaces".into()))?;
            if !self.objects.contains_key(&key(nsr, None, ns)) {
                return Err(status::not_found(nsr, ns));
            }
        }
        let k = key(r, t.namespace.as_deref(), &name);
        if self.objects.contains_key(&k) {
            return Err(status::already_exists(r, &name));
        }
        let uid = util::uuid().map_err(|e| status::internal(e.to_string()))?;
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(util::now_rfc3339()));
        m.insert("resourceVersion".into(), json!(rv));
        m.remove("deletionTimestamp");
        self.objects.insert(k, obj.clone());
        Ok((201, obj))
    }

    /// Store `new` as the next version of `old` (shared by PUT and PATCH).
    fn commit(&mut self, t: &Target, name: &str, mut new: Value, old: &Value) -> ApiResult {
        let r = t.resource;
        check_type(r, &new)?;
        validate_meta_maps(r, name, &new)?;
        if let (Some(u), Some(cur)) = (meta_str(&new, "uid"), meta_str(old, "uid")) {
            if u != cur {
                return Err(status::conflict(
                    r,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {u}, UID in object meta: {cur}"
                    ),
                ));
            }
        }
        keep_system_fields(&mut new, old);
        apply_subresource_rules(r, t.sub.as_deref(), &mut new, old);
        if same_content(&new, old) {
            return Ok((200, old.clone()));
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects
            .insert(key(r, t.namespace.as_deref(), name), new.clone());
        Ok((200, new))
    }

    /// A resourceVersion in the request must equal the stored one.
    fn check_rv(r: &Resource, name: &str, new: &Value, old: &Value) -> Result<(), ApiError> {
        match meta_str(new, "resourceVersion") {
            Some(rv) if Some(rv) != meta_str(old, "resourceVersion") => {
                Err(status::conflict(r, name, status::MODIFIED))
            }
            _ => Ok(()),
        }
    }

    fn replace(&mut self, t: &Target, name: &str, body: &[u8]) -> ApiResult {
        let r = t.resource;
        let mut new = parse_body(body)?;
        check_type(r, &new)?;
        match meta_str(&new, "name") {
            Some(n) if n == name => {}
            n => {
                return Err(status::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    n.unwrap_or("")
                )))
            }
        }
        check_namespace(r, t, &mut new)?;
        let old = self.lookup(t, name)?.clone();
        if meta_str(&new, "resourceVersion").is_none() && !r.is_core() {
            // Custom resources do not allow unconditional updates.
            return Err(status::invalid(
                r,
                name,
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update".into(),
            ));
        }
        Self::check_rv(r, name, &new, &old)?;
        self.commit(t, name, new, &old)
    }

    fn patch(&mut self, t: &Target, name: &str, content_type: &str, body: &[u8]) -> ApiResult {
        let r = t.resource;
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let p: Value = serde_json::from_slice(body)
            .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
        let old = self.lookup(t, name)?.clone();
        let mut new = old.clone();
        let applied = match ct {
            "application/merge-patch+json" => {
                if !p.is_object() {
                    Err("merge patch must be a JSON object".to_string())
                } else {
                    patch::merge_patch(&mut new, &p);
                    Ok(())
                }
            }
            "application/strategic-merge-patch+json" => {
                if !r.is_core() {
                    // Custom resources have no strategic merge schema.
                    return Err(status::unsupported_media_type(ct));
                }
                patch::strategic_merge_patch(&mut new, &p)
            }
            "application/json-patch+json" => patch::json_patch(&mut new, &p),
            other => return Err(status::unsupported_media_type(other)),
        };
        applied.map_err(|e| status::invalid(r, name, "patch", e))?;
        if meta_str(&new, "name") != Some(name) {
            return Err(status::invalid(
                r,
                name,
                "metadata.name",
                "Invalid value: field is immutable".into(),
            ));
        }
        // A resourceVersion that the patch sets is a precondition.
        Self::check_rv(r, name, &new, &old)?;
        self.commit(t, name, new, &old)
    }

    fn delete(&mut self, t: &Target, name: &str, body: &[u8]) -> ApiResult {
        let r = t.resource;
        let opts = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            parse_body(body)?
        };
        let old = self.lookup(t, name)?.clone();
        let pre = opts.get("preconditions").cloned().unwrap_or(json!({}));
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let want = pre
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let have = meta_str(&old, field).unwrap_or("");
            if let Some(want) = want.filter(|w| *w != have) {
                return Err(status::conflict(
                    r,
                    name,
                    &format!("Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"),
                ));
            }
        }
        self.objects.remove(&key(r, t.namespace.as_deref(), name));
        self.rv += 1;
        Ok((200, old))
    }

    /// Insert or overwrite an object directly (test seeding); fills uid, timestamp and a
    /// fresh resourceVersion. Returns the stored object.
    pub fn seed(&mut self, mut obj: Value) -> Result<Value, String> {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let r = Resource::by_type(av, kind).ok_or_else(|| format!("unknown type {av}/{kind}"))?;
        let name = meta_str(&obj, "name")
            .ok_or("metadata.name is required")?
            .to_string();
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        if r.namespaced && ns.is_none() {
            return Err(format!("{kind} {name}: metadata.namespace is required"));
        }
        let k = key(r, ns.as_deref(), &name);
        let uid = match self.objects.get(&k).and_then(|o| meta_str(o, "uid")) {
            Some(u) => u.to_string(),
            None => util::uuid().map_err(|e| e.to_string())?,
        };
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        m.entry("uid").or_insert(json!(uid));
        m.entry("creationTimestamp")
            .or_insert(json!(util::now_rfc3339()));
        m.insert("resourceVersion".into(), json!(rv));
        self.objects.insert(k, obj.clone());
        Ok(obj)
    }

    /// Direct read by routed target (test inspection).
    pub fn peek(&self, t: &Target) -> Option<Value> {
        let name = t.name.as_deref()?;
        self.lookup(t, name).ok().cloned()
    }

    /// Direct removal by routed target (test manipulation).
    pub fn remove(&mut self, t: &Target) -> Option<Value> {
        let name = t.name.as_deref()?;
        let v = self
            .objects
            .remove(&key(t.resource, t.namespace.as_deref(), name))?;
        self.rv += 1;
        Some(v)
    }
}
