//! Reading resources from files: YAML (one or more `---` documents) or JSON (one or more
//! objects), `kind: List` / `kind: IPPoolList` expanded into their `items`, each item decoded
//! strictly into a `projectcalico.org/v3` IPPool or IPReservation (unknown fields and wrong
//! types are errors naming the field, like calicoctl's strict decoding) and validated.

use ipam::model::{IpPool, IpReservation, API_VERSION};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CtlError, CtlResult};
use crate::reservations::ReservationDoc;
use crate::validate;

/// One resource read from input.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Pool(PoolDoc),
    Reservation(ReservationDoc),
}

impl Doc {
    /// The resource's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Doc::Pool(_) => "IPPool",
            Doc::Reservation(_) => "IPReservation",
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        match self {
            Doc::Pool(p) => &p.pool.metadata.name,
            Doc::Reservation(r) => &r.reservation.metadata.name,
        }
    }
}

const RESERVATION_SPEC_FIELDS: &[&str] = &["reservedCIDRs"];

/// One IPPool read from input.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolDoc {
    /// The pool as it will be stored (no `resourceVersion`; defaults not yet applied).
    pub pool: IpPool,
    /// `metadata.resourceVersion` from the input: when set, writes CAS against it.
    pub resource_version: Option<String>,
}

/// The IPPool spec fields of `projectcalico.org/v3` (anything else is rejected).
const SPEC_FIELDS: &[&str] = &[
    "cidr",
    "vxlanMode",
    "ipipMode",
    "natOutgoing",
    "disabled",
    "disableBGPExport",
    "blockSize",
    "nodeSelector",
    "namespaceSelector",
    "allowedUses",
    "assignmentMode",
];

const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

fn parse_err(what: &str, reason: impl ToString) -> CtlError {
    CtlError::Parse {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn json_documents(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match v? {
            // A bare JSON array of resources is accepted like a List.
            Value::Array(items) => out.extend(items),
            v => out.push(v),
        }
    }
    Ok(out)
}

fn yaml_documents(text: &str) -> Result<Vec<Value>, serde_norway::Error> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every top-level document of `text` as JSON values (nulls from empty YAML documents
/// dropped). Input that looks like JSON is read as a JSON stream first; YAML flow style
/// (`{name: x}`) also starts with `{`, so YAML is the fallback.
fn documents(text: &str, source: &str) -> CtlResult<Vec<Value>> {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return json_documents(text)
            .or_else(|json_err| yaml_documents(text).map_err(|_| parse_err(source, json_err)));
    }
    yaml_documents(text).map_err(|e| parse_err(source, e))
}

fn str_field<'a>(o: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// Expand `List` documents into their items.
fn expand(docs: Vec<Value>, source: &str) -> CtlResult<Vec<Value>> {
    let mut out = Vec::new();
    for d in docs {
        let Value::Object(o) = &d else {
            return Err(parse_err(
                source,
                format!("expected a resource object, found {d}"),
            ));
        };
        let kind = str_field(o, "kind").unwrap_or_default();
        if kind == "List" || (kind.ends_with("List") && o.contains_key("items")) {
            match o.get("items") {
                Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                Some(Value::Null) | None => {}
                Some(_) => return Err(CtlError::field("items", kind, "must be a list")),
            }
        } else {
            out.push(d);
        }
    }
    Ok(out)
}

/// Decode one resource object (strict), returning it with its input `resourceVersion`.
fn decode(v: Value, index: usize) -> CtlResult<Doc> {
    let Value::Object(mut o) = v else {
        return Err(parse_err(
            &format!("resource #{}", index + 1),
            "expected an object",
        ));
    };
    match str_field(&o, "apiVersion") {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(CtlError::field(
                "apiVersion",
                other,
                format!("must be {API_VERSION}"),
            ))
        }
        None => return Err(CtlError::field("apiVersion", "", "is required")),
    }
    let spec_fields = match str_field(&o, "kind") {
        Some("IPPool") => SPEC_FIELDS,
        Some("IPReservation") => RESERVATION_SPEC_FIELDS,
        Some(other) => {
            return Err(CtlError::UnsupportedKind {
                kind: other.to_string(),
            })
        }
        None => return Err(CtlError::field("kind", "", "is required")),
    };
    if let Some(k) = o.keys().find(|k| !TOP_FIELDS.contains(&k.as_str())) {
        return Err(CtlError::field(k, "", "unknown field"));
    }
    // status is server-owned: ignored on input.
    o.remove("status");
    if let Some(Value::Object(spec)) = o.get("spec") {
        if let Some(k) = spec.keys().find(|k| !spec_fields.contains(&k.as_str())) {
            return Err(CtlError::field(&format!("spec.{k}"), "", "unknown field"));
        }
    }
    let mut resource_version = None;
    if let Some(Value::Object(meta)) = o.get_mut("metadata") {
        resource_version = match meta.remove("resourceVersion") {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
    }
    let field_err = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        CtlError::field(&path, "", e.into_inner().to_string())
    };
    if spec_fields == RESERVATION_SPEC_FIELDS {
        let reservation: IpReservation =
            serde_path_to_error::deserialize(Value::Object(o)).map_err(field_err)?;
        validate::reservation(&reservation)?;
        return Ok(Doc::Reservation(ReservationDoc {
            reservation,
            resource_version,
        }));
    }
    let pool: IpPool = serde_path_to_error::deserialize(Value::Object(o)).map_err(field_err)?;
    validate::pool(&pool)?;
    Ok(Doc::Pool(PoolDoc {
        pool,
        resource_version,
    }))
}

/// Parse and validate every resource in `text` (`source` names the input in messages).
/// All documents are checked before anything is written, as calicoctl does.
pub fn parse_resources(text: &str, source: &str) -> CtlResult<Vec<Doc>> {
    let items = expand(documents(text, source)?, source)?;
    if items.is_empty() {
        return Err(parse_err(source, "no resources specified"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| decode(v, i))
        .collect()
}

/// [`parse_resources`] for input that must hold IPPools only.
pub fn parse_pools(text: &str, source: &str) -> CtlResult<Vec<PoolDoc>> {
    parse_resources(text, source)?
        .into_iter()
        .map(|d| match d {
            Doc::Pool(p) => Ok(p),
            other => Err(CtlError::NotAnIpPool {
                kind: other.kind().to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  allowedUses:
  - Workload
  - Tunnel
  blockSize: 24
  cidr: 10.244.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: Never
";

    #[test]
    fn yaml_json_and_lists() {
        let d = parse_pools(SEED, "seed").unwrap();
        assert_eq!(d.len(), 1);
        let p = &d[0].pool;
        assert_eq!(p.metadata.name, "default-ipv4-ippool");
        assert_eq!(p.spec.cidr, "10.244.0.0/16");
        assert_eq!(p.spec.block_size, Some(24));
        assert_eq!(p.spec.ipip_mode.as_deref(), Some("Always"));
        assert!(p.spec.nat_outgoing);

        let multi = format!("{SEED}---\n{}", SEED.replace("default-ipv4-ippool", "b"));
        assert_eq!(parse_pools(&multi, "m").unwrap().len(), 2);

        let json = r#"{"kind":"List","apiVersion":"v1","items":[
            {"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"a","resourceVersion":"42"},"spec":{"cidr":"10.1.0.0/16"}},
            {"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"b"},"spec":{"cidr":"fd00:1::/48"}}]}"#;
        let d = parse_pools(json, "j").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].resource_version.as_deref(), Some("42"));
        assert!(!d[0].pool.metadata.extra.contains_key("resourceVersion"));
        assert_eq!(d[1].pool.spec.cidr, "fd00:1::/48");

        let yaml_list = "kind: IPPoolList\napiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: x}\n  spec: {cidr: 10.2.0.0/16}\n";
        assert_eq!(
            parse_pools(yaml_list, "l").unwrap()[0].pool.metadata.name,
            "x"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = |s: &str| parse_pools(s, "in").unwrap_err().to_string();
        assert!(e(&SEED.replace("blockSize: 24", "blockSize: big")).contains("spec.blockSize"));
        assert!(e(&SEED.replace("cidr:", "cdir:")).contains("spec.cdir"));
        assert!(e(&SEED.replace("projectcalico.org/v3", "v1")).contains("apiVersion"));
        assert!(e(&SEED.replace("kind: IPPool", "kind: Node")).contains("'Node'"));
        assert!(e(&SEED.replace("10.244.0.0/16", "10.244.0.1/16")).contains("spec.cidr"));
        assert!(e("").contains("no resources"));
        assert!(e("{not json").contains("failed to parse in"));
        assert!(e("a: [unclosed").contains("failed to parse in"));
    }

    #[test]
    fn reservations_decode_strictly() {
        let r = "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata:\n  name: r1\nspec:\n  reservedCIDRs:\n  - 10.0.0.1\n  - fd00::/120\n";
        let d = parse_resources(r, "r").unwrap();
        let Doc::Reservation(rd) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(
            rd.reservation.spec.reserved_cidrs,
            ["10.0.0.1", "fd00::/120"]
        );
        let e = |s: &str| parse_resources(s, "in").unwrap_err().to_string();
        assert!(e(&r.replace("10.0.0.1", "10.0.0.300")).contains("spec.reservedCIDRs[0]"));
        assert!(e(&r.replace("reservedCIDRs", "reserved")).contains("spec.reserved"));
        assert!(e(&r.replace("r1", "R_1")).contains("metadata.name"));
    }
}
