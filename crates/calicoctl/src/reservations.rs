//! IPReservation resources in the datastore (etcd: `/calico/resources/v3/projectcalico.org/
//! ipreservations/<name>` with the v3 JSON; KDD: `crd.projectcalico.org/v1` IPReservation
//! objects, mapped by the store): get/list, create, apply, delete, with the v3 client's
//! semantics (create fills `uid`/`creationTimestamp`; update keeps them and is a CAS on the
//! input's `resourceVersion` when given).

use ipam::model::IpReservation;
use ipam::{Key, ListPrefix, ResourceKind, Revision, Store, StoreError};
use serde_json::Value;

use crate::error::{CtlError, CtlResult};
use crate::meta;

const KIND: &str = "IPReservation";
const RETRIES: usize = 10;

/// A reservation input document.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservationDoc {
    pub reservation: IpReservation,
    pub resource_version: Option<String>,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReservation {
    pub reservation: IpReservation,
    pub revision: Revision,
}

impl StoredReservation {
    /// With `metadata.resourceVersion`, as calicoctl shows it.
    pub fn with_resource_version(&self) -> IpReservation {
        let mut r = self.reservation.clone();
        r.metadata.extra.insert(
            "resourceVersion".into(),
            Value::String(self.revision.to_string()),
        );
        r
    }
}

fn key(name: &str) -> Key {
    Key::resource(ResourceKind::IpReservation, name)
}

fn not_found(name: &str) -> CtlError {
    CtlError::NotFound {
        kind: KIND,
        name: name.to_string(),
    }
}

fn parse_stored(kv: ipam::KvPair) -> CtlResult<StoredReservation> {
    let reservation = IpReservation::from_json(&kv.value).map_err(|e| CtlError::Parse {
        what: kv.key.path(),
        reason: e.to_string(),
    })?;
    Ok(StoredReservation {
        reservation,
        revision: kv.revision,
    })
}

/// Every reservation, by name.
pub fn list(store: &dyn Store) -> CtlResult<Vec<StoredReservation>> {
    store
        .list(&ListPrefix::Resources {
            kind: ResourceKind::IpReservation,
            namespace: None,
        })?
        .into_iter()
        .map(parse_stored)
        .collect()
}

/// One reservation by name.
pub fn get(store: &dyn Store, name: &str) -> CtlResult<StoredReservation> {
    match store.get_opt(&key(name))? {
        Some(kv) => parse_stored(kv),
        None => Err(not_found(name)),
    }
}

/// Create; `AlreadyExists` becomes calicoctl's message.
pub fn create(store: &dyn Store, doc: &ReservationDoc) -> CtlResult<()> {
    let mut r = doc.reservation.clone();
    r.metadata.uid = Some(meta::new_uid());
    r.metadata.creation_timestamp = Some(meta::now());
    match store.create(&key(&r.metadata.name), &r.to_json()) {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => Err(CtlError::AlreadyExists {
            kind: KIND,
            name: r.metadata.name.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Create or update (CAS on the input `resourceVersion` when given).
pub fn apply(store: &dyn Store, doc: &ReservationDoc) -> CtlResult<()> {
    let name = &doc.reservation.metadata.name;
    for _ in 0..RETRIES {
        let r = match store.get_opt(&key(name))? {
            None if doc.resource_version.is_some() => return Err(not_found(name)),
            None => match create(store, doc) {
                Err(CtlError::AlreadyExists { .. }) => continue,
                r => return r,
            },
            Some(kv) => {
                let old = parse_stored(kv)?;
                let rev = doc
                    .resource_version
                    .as_deref()
                    .map(Revision::new)
                    .unwrap_or_else(|| old.revision.clone());
                let mut r = doc.reservation.clone();
                r.metadata.uid = old.reservation.metadata.uid.clone();
                r.metadata.creation_timestamp = old.reservation.metadata.creation_timestamp;
                store.update(&key(name), &r.to_json(), &rev).map(|_| ())
            }
        };
        match r {
            Err(StoreError::Conflict(_)) if doc.resource_version.is_none() => continue,
            Err(StoreError::Conflict(_)) => {
                return Err(CtlError::StaleResourceVersion {
                    kind: KIND,
                    name: name.to_string(),
                    resource_version: doc.resource_version.clone().unwrap_or_default(),
                })
            }
            r => return r.map_err(CtlError::from),
        }
    }
    Err(CtlError::KeptChanging {
        kind: KIND,
        name: name.to_string(),
    })
}

/// Delete by name.
pub fn delete(store: &dyn Store, name: &str) -> CtlResult<()> {
    match store.delete(&key(name), None) {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(not_found(name)),
        Err(e) => Err(e.into()),
    }
}
