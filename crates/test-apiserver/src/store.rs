//! The object store and the API semantics of each verb (what a real API server accepts,
//! rejects, and how it versions objects).
//!
//! Objects live in one [`Collection`] per resource type, so a request about one type costs
//! the same however many objects of other types are stored (as with etcd's per-resource key
//! ranges).
//!
//! `resourceVersion` is one global counter (like etcd's revision): every create, real update
//! and delete advances it; a write that changes nothing keeps the object's version, as the
//! real server does.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::collection::{Collection, ObjName};
use crate::patch;
use crate::resources::{Resource, Target};
use crate::selector::{self, Selector};
use crate::status::{self, ApiError};
use crate::util;

/// (qualified resource, (namespace or "", name))
type ObjKey = (String, ObjName);

/// What one request asks for, after routing.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: Target,
    pub query: HashMap<String, String>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// All stored objects, by qualified resource (`ipamblocks.crd.projectcalico.org`).
#[derive(Default)]
pub struct ObjectStore {
    collections: HashMap<String, Collection>,
    rv: u64,
}

type ApiResult = Result<(u16, Value), ApiError>;

fn key(r: &Resource, ns: Option<&str>, name: &str) -> ObjKey {
    let ns = if r.namespaced { ns.unwrap_or("") } else { "" };
    (r.qualified(), (ns.to_string(), name.to_string()))
}

/// A continue token is the `<namespace>/<name>` of the last item returned (opaque to clients;
/// namespaces cannot contain `/`).
fn continue_token((ns, name): &ObjName) -> String {
    format!("{ns}/{name}")
}

fn parse_continue(token: &str) -> Result<ObjName, ApiError> {
    token
        .split_once('/')
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| status::bad_request(format!("continue key is not valid: {token:?}")))
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
    fn obj(&self, k: &ObjKey) -> Option<&Value> {
        self.collections.get(&k.0)?.get(&k.1)
    }

    fn put_obj(&mut self, (resource, name): ObjKey, obj: Value) {
        self.collections
            .entry(resource)
            .or_default()
            .insert(name, obj);
    }

    fn take_obj(&mut self, k: &ObjKey) -> Option<Value> {
        self.collections.get_mut(&k.0)?.remove(&k.1)
    }

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
        self.obj(&key(r, t.namespace.as_deref(), name))
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
        let after = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_continue(c)?),
            None => None,
        };
        let none = Collection::default();
        let objects = self.collections.get(&r.qualified()).unwrap_or(&none);
        let matching: Vec<(&ObjName, &Value)> = objects
            .select(t.namespace.as_deref(), after.as_ref(), &labels)
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
                meta["continue"] = json!(continue_token(pos));
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
            if self.obj(&key(nsr, None, ns)).is_none() {
                return Err(status::not_found(nsr, ns));
            }
        }
        let k = key(r, t.namespace.as_deref(), &name);
        if self.obj(&k).is_some() {
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
        self.put_obj(k, obj.clone());
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
        self.put_obj(key(r, t.namespace.as_deref(), name), new.clone());
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
        self.take_obj(&key(r, t.namespace.as_deref(), name));
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
        let uid = match self.obj(&k).and_then(|o| meta_str(o, "uid")) {
            Some(u) => u.to_string(),
            None => util::uuid().map_err(|e| e.to_string())?,
        };
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        m.entry("uid").or_insert(json!(uid));
        m.entry("creationTimestamp")
            .or_insert(json!(util::now_rfc3339()));
        m.insert("resourceVersion".into(), json!(rv));
        self.put_obj(k, obj.clone());
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
        let v = self.take_obj(&key(t.resource, t.namespace.as_deref(), name))?;
        self.rv += 1;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::parse_path;

    fn call(s: &mut ObjectStore, method: &str, path: &str, body: &Value) -> ApiResult {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        s.handle(&Request {
            method,
            target: parse_path(path).unwrap(),
            query,
            content_type: "application/merge-patch+json",
            body: &body,
        })
    }

    fn names(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let m = &o["metadata"];
                match m["namespace"].as_str() {
                    Some(ns) => format!("{ns}/{}", m["name"].as_str().unwrap()),
                    None => m["name"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }

    fn list(s: &mut ObjectStore, path: &str) -> Vec<String> {
        let (code, v) = call(s, "GET", path, &Value::Null).unwrap();
        assert_eq!(code, 200, "{path}");
        names(&v)
    }

    const CRD: &str = "/apis/crd.projectcalico.org/v1";

    fn affinity(name: &str, labels: Value) -> Value {
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
               "metadata": {"name": name, "labels": labels}, "spec": {"state": "confirmed"}})
    }

    #[test]
    fn a_list_of_one_type_sees_only_that_type() {
        let mut s = ObjectStore::default();
        s.seed(
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                      "metadata": {"name": "pool"}, "spec": {"cidr": "10.0.0.0/16"}}),
        )
        .unwrap();
        for i in 0..300 {
            s.seed(
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMHandle",
                          "metadata": {"name": format!("h{i:03}")}, "spec": {"block": {}}}),
            )
            .unwrap();
        }
        s.seed(affinity("n1-10-0-0-0-26", json!({"host": "n1"})))
            .unwrap();
        assert_eq!(list(&mut s, &format!("{CRD}/ippools")), ["pool"]);
        let handles = list(&mut s, &format!("{CRD}/ipamhandles"));
        assert_eq!(handles.len(), 300);
        assert_eq!(
            (handles[0].as_str(), handles[299].as_str()),
            ("h000", "h299")
        );
        assert_eq!(
            list(&mut s, &format!("{CRD}/ipreservations")),
            Vec::<String>::new()
        );
        // Same plural in another group is another resource.
        assert!(list(&mut s, "/apis/projectcalico.org/v3/ippools").is_empty());
        assert_eq!(
            list(
                &mut s,
                &format!("{CRD}/blockaffinities?labelSelector=host=n1")
            ),
            ["n1-10-0-0-0-26"]
        );
        let (_, l) = call(&mut s, "GET", &format!("{CRD}/ippools"), &Value::Null).unwrap();
        assert_eq!(l["kind"], "IPPoolList");
        assert_eq!(l["metadata"]["resourceVersion"], "302");
    }

    /// Every selector form gives what checking every object gives, also after writes change,
    /// add and drop labels and after deletes (the index must follow them).
    #[test]
    fn indexed_selectors_match_a_full_scan() {
        let mut s = ObjectStore::default();
        for i in 0..40 {
            let mut labels = json!({"host": format!("n{}", i % 4), "type": "host"});
            if i % 3 == 0 {
                labels["v"] = json!("6");
            }
            if i % 5 == 0 {
                labels = json!({"host": format!("n{}", i % 4)});
            }
            s.seed(affinity(&format!("a{i:02}"), labels)).unwrap();
        }
        let selectors = [
            "",
            "host=n1",
            "host==n1,type=host",
            "host=n1,type=host,v=6",
            "host in (n1,n3),v=6",
            "host in (n9)",
            "host=n2,v!=6",
            "host=n0,!type",
            "type,host notin (n0)",
            "!v",
            "host=nobody",
            "v=6,host in (n0,n1,n2,n3)",
            "!host",
            "!host,type=host",
            "!type,host=n1",
        ];
        let check = |s: &mut ObjectStore| {
            let all: Vec<Value> = {
                let (_, v) =
                    call(s, "GET", &format!("{CRD}/blockaffinities"), &Value::Null).unwrap();
                v["items"].as_array().unwrap().clone()
            };
            for sel in selectors {
                let parsed = Selector::parse(sel).unwrap();
                let want: Vec<String> = all
                    .iter()
                    .filter(|o| parsed.matches(|k| selector::label(o, k)))
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                    .collect();
                let path = format!("{CRD}/blockaffinities?labelSelector={sel}");
                assert_eq!(list(s, &path), want, "{sel}");
            }
        };
        check(&mut s);
        assert_eq!(
            list(
                &mut s,
                &format!("{CRD}/blockaffinities?labelSelector=host=n1,type=host")
            ),
            ["a01", "a09", "a13", "a17", "a21", "a29", "a33", "a37"]
        );
        // Relabel: a09 moves to n2, a13 loses its type, a10 (no type) gains one; delete a17.
        let a09 = format!("{CRD}/blockaffinities/a09");
        let patch = json!({"metadata": {"labels": {"host": "n2"}}});
        assert_eq!(call(&mut s, "PATCH", &a09, &patch).unwrap().0, 200);
        let patch = json!({"metadata": {"labels": {"type": null}}});
        call(
            &mut s,
            "PATCH",
            &format!("{CRD}/blockaffinities/a13"),
            &patch,
        )
        .unwrap();
        let patch = json!({"metadata": {"labels": {"type": "host"}}});
        call(
            &mut s,
            "PATCH",
            &format!("{CRD}/blockaffinities/a10"),
            &patch,
        )
        .unwrap();
        call(
            &mut s,
            "DELETE",
            &format!("{CRD}/blockaffinities/a17"),
            &Value::Null,
        )
        .unwrap();
        let mut replaced = call(
            &mut s,
            "GET",
            &format!("{CRD}/blockaffinities/a21"),
            &Value::Null,
        )
        .unwrap()
        .1;
        replaced["metadata"]["labels"] = json!({"host": "n1", "type": "tunnel"});
        assert_eq!(
            call(
                &mut s,
                "PUT",
                &format!("{CRD}/blockaffinities/a21"),
                &replaced
            )
            .unwrap()
            .0,
            200
        );
        assert_eq!(
            list(
                &mut s,
                &format!("{CRD}/blockaffinities?labelSelector=host=n1,type=host")
            ),
            ["a01", "a29", "a33", "a37"]
        );
        assert_eq!(
            list(
                &mut s,
                &format!("{CRD}/blockaffinities?labelSelector=host=n2,type=host")
            ),
            ["a02", "a06", "a09", "a10", "a14", "a18", "a22", "a26", "a34", "a38"]
        );
        check(&mut s);
        // A failed write (stale resourceVersion: 409) leaves the index as it was.
        replaced["metadata"]["labels"] = json!({"host": "n3", "type": "host"});
        let e = call(
            &mut s,
            "PUT",
            &format!("{CRD}/blockaffinities/a21"),
            &replaced,
        );
        assert_eq!(e.err().map(|e| e.code), Some(409));
        assert!(list(
            &mut s,
            &format!("{CRD}/blockaffinities?labelSelector=type=tunnel")
        )
        .contains(&"a21".to_string()));
        check(&mut s);
    }

    /// `!k` finds exactly the objects without the label as labels come and go, including
    /// when every object has it (answered without looking at them) and when none has.
    #[test]
    fn absent_label_selectors_follow_writes() {
        let mut s = ObjectStore::default();
        let unlabelled = format!("{CRD}/blockaffinities?labelSelector=!type");
        assert!(list(&mut s, &unlabelled).is_empty(), "empty collection");
        for (name, labels) in [
            ("a", json!({"type": "host"})),
            ("b", json!({})),
            ("c", json!({"type": "host"})),
        ] {
            s.seed(affinity(name, labels)).unwrap();
        }
        assert_eq!(list(&mut s, &unlabelled), ["b"]);
        let label = |s: &mut ObjectStore, name: &str, labels: Value| {
            let p = json!({"metadata": {"labels": labels}});
            let path = format!("{CRD}/blockaffinities/{name}");
            assert_eq!(call(s, "PATCH", &path, &p).unwrap().0, 200);
        };
        label(&mut s, "b", json!({"type": "tunnel"}));
        assert!(list(&mut s, &unlabelled).is_empty(), "all labelled");
        label(&mut s, "a", json!({"type": null}));
        assert_eq!(list(&mut s, &unlabelled), ["a"]);
        call(
            &mut s,
            "DELETE",
            &format!("{CRD}/blockaffinities/a"),
            &Value::Null,
        )
        .unwrap();
        assert!(
            list(&mut s, &unlabelled).is_empty(),
            "the unlabelled one deleted"
        );
        s.seed(affinity("d", json!({}))).unwrap();
        assert_eq!(list(&mut s, &unlabelled), ["d"]);
        for name in ["b", "c"] {
            call(
                &mut s,
                "DELETE",
                &format!("{CRD}/blockaffinities/{name}"),
                &Value::Null,
            )
            .unwrap();
        }
        assert_eq!(list(&mut s, &unlabelled), ["d"], "none labelled");
    }

    /// Pages follow key order (namespace, then name) even where `<ns>/<name>` strings sort
    /// differently (`a-x/...` sorts before `a/...` as text), with and without an indexed
    /// selector, and never repeat or skip an object.
    #[test]
    fn continue_pages_through_namespaces_in_key_order() {
        let mut s = ObjectStore::default();
        for (ns, name, app) in [
            ("a", "p2", "web"),
            ("a", "p1", "db"),
            ("a-x", "p1", "web"),
            ("b", "p0", "web"),
            ("a-x", "p0", "web"),
        ] {
            s.seed(json!({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "namespace": ns, "labels": {"app": app}}}))
                .unwrap();
        }
        let pages = |s: &mut ObjectStore, base: &str, limit: usize| {
            let (mut out, mut token) = (Vec::new(), String::new());
            loop {
                let sep = if base.contains('?') { '&' } else { '?' };
                let path = format!("{base}{sep}limit={limit}&continue={token}");
                let (_, v) = call(s, "GET", &path, &Value::Null).unwrap();
                let page = names(&v);
                assert!(page.len() <= limit);
                out.extend(page);
                match v["metadata"]["continue"].as_str() {
                    Some(t) => token = t.to_string(),
                    None => return out,
                }
            }
        };
        let all = ["a/p1", "a/p2", "a-x/p0", "a-x/p1", "b/p0"];
        assert_eq!(list(&mut s, "/api/v1/pods"), all);
        for limit in 1..=5 {
            assert_eq!(pages(&mut s, "/api/v1/pods", limit), all, "limit {limit}");
        }
        let web = ["a/p2", "a-x/p0", "a-x/p1", "b/p0"];
        assert_eq!(pages(&mut s, "/api/v1/pods?labelSelector=app=web", 1), web);
        assert_eq!(
            pages(
                &mut s,
                "/api/v1/namespaces/a-x/pods?labelSelector=app=web",
                1
            ),
            ["a-x/p0", "a-x/p1"]
        );
        assert_eq!(
            pages(&mut s, "/api/v1/namespaces/a/pods", 1),
            ["a/p1", "a/p2"]
        );
        let (_, v) = call(&mut s, "GET", "/api/v1/pods?limit=2", &Value::Null).unwrap();
        assert_eq!(v["metadata"]["remainingItemCount"], 3);
        let bad = call(&mut s, "GET", "/api/v1/pods?continue=garbage", &Value::Null);
        assert_eq!(bad.err().map(|e| e.code), Some(400));
    }
}
