//! Calico's Kubernetes datastore (KDD) for the IPAM: [`KddStore`] implements [`ipam::Store`]
//! over Calico's CRDs in `crd.projectcalico.org/v1` (ipamblocks, blockaffinities, ipamhandles,
//! ipamconfigs, ippools, clusterinformations, ipreservations) or, with
//! [`KddStore::with_api_group`], in `projectcalico.org/v3` (the same collections, with
//! `ipamconfigurations` for the IPAM config), with Calico's object names and spec shapes, and
//! reads Calico Nodes from Kubernetes Nodes.
//!
//! Revisions are `metadata.resourceVersion`; `update` is a PUT carrying it (409 → `Conflict`),
//! `create` is a POST (409 AlreadyExists → `AlreadyExists`), `delete` with a revision sends
//! a resourceVersion precondition. Transport failures, timeouts, throttling and 5xx map to
//! `Unavailable` (CNI code 11).
//!
//! This crate owns the KDD mapping only. It must NOT contain IPAM logic (that is `ipam`), pod
//! or namespace lookups (that is `kubernetes`), or write Kubernetes Nodes (the kubelet owns
//! them). Objects Calico soft-deleted (`deleted: true`, the first half of its two-step delete)
//! read as absent, and a `get` finishes their deletion as Calico's readers do.
//!
//! Per-host affinity listings use Calico's (v3.31+) `projectcalico.org/hostname-hash` label
//! query; when it finds nothing, the affinities without labels (written by older Calico) are
//! listed, and this host's are labelled, with the query and the writes of Calico's own upgrade
//! step (`UpgradeHost`). No ADD lists every affinity of the cluster.
//!
//! The group is either chosen ([`KddStore::with_api_group`]) or, with
//! [`KddStore::with_discovered_api_group`], found as Calico's client finds it when
//! `calico_api_group` is unset: one `GET /apis` on the first call, remembered for the store's
//! life (see [`ApiGroup::from_served_groups`]).
//!
//! Not supported: pagination of very large listings, and WorkloadEndpoints/Profiles (KDD derives them from Pods and
//! Namespaces: reads find nothing, writes fail).

mod client;
mod convert;
pub mod names;

use std::path::Path;
use std::sync::OnceLock;

use ipam::keys::{IpVersion, Key, ListPrefix};
use ipam::{KvPair, Revision, Store, StoreError, StoreResult};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use serde_json::Value;

pub use client::Timeouts;
pub use convert::ApiGroup;
use convert::{from_object, object_name, to_object, Decoded, Kind};

/// See the crate docs.
pub struct KddStore {
    kube: client::Kube,
    /// Set when chosen, or once discovered.
    group: OnceLock<ApiGroup>,
}

fn to_dynamic(key: &Key, v: Value) -> StoreResult<DynamicObject> {
    serde_json::from_value(v).map_err(|e| StoreError::Other(format!("{key}: encoding object: {e}")))
}

fn dyn_to_value(o: &DynamicObject) -> StoreResult<Value> {
    serde_json::to_value(o).map_err(|e| StoreError::Other(format!("decoding object: {e}")))
}

fn revision_of(o: &DynamicObject) -> StoreResult<Revision> {
    o.metadata
        .resource_version
        .clone()
        .map(Revision::new)
        .ok_or_else(|| StoreError::Other("object without resourceVersion".into()))
}

impl KddStore {
    /// Connect using a kubeconfig file (as in Calico's `kubernetes.kubeconfig`).
    pub fn open(kubeconfig: &Path) -> StoreResult<Self> {
        Self::open_with(kubeconfig, Timeouts::default())
    }

    /// [`KddStore::open`] with explicit timeouts.
    pub fn open_with(kubeconfig: &Path, timeouts: Timeouts) -> StoreResult<Self> {
        Ok(KddStore {
            kube: client::Kube::from_kubeconfig(kubeconfig, timeouts)?,
            group: OnceLock::from(ApiGroup::default()),
        })
    }

    /// From a kubeconfig in memory (e.g. a file's with Calico's overrides applied, or the
    /// in-cluster service account); `origin` names it in errors.
    pub fn from_kubeconfig(
        kc: kube::config::Kubeconfig,
        origin: &str,
        timeouts: Timeouts,
    ) -> StoreResult<Self> {
        Ok(KddStore {
            kube: client::Kube::from_kubeconfig_value(kc, origin, timeouts)?,
            group: OnceLock::from(ApiGroup::default()),
        })
    }

    /// Use Calico's objects in `group` (`calico_api_group`; default `crd.projectcalico.org/v1`).
    pub fn with_api_group(mut self, group: ApiGroup) -> Self {
        self.group = OnceLock::from(group);
        self
    }

    /// Ask the API server which group holds Calico's objects (Calico's behaviour when
    /// `calico_api_group` is unset), once, on the first call that needs it.
    pub fn with_discovered_api_group(mut self) -> Self {
        self.group = OnceLock::new();
        self
    }

    /// The group in use, discovering it first if needed. An unreachable server is
    /// `Unavailable` (and nothing is remembered, so a later call asks again); any other
    /// discovery failure (e.g. 403) falls back to `crd.projectcalico.org/v1` as Calico does.
    fn group(&self) -> StoreResult<ApiGroup> {
        if let Some(g) = self.group.get() {
            return Ok(*g);
        }
        let client = self.kube.client.clone();
        let found = match self.kube.run("discovering Calico's API group", async {
            client.list_api_groups().await
        }) {
            Ok(list) => ApiGroup::from_served_groups(list.groups.iter().map(|g| g.name.as_str())),
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                log::warn!("{e}; using {}", ApiGroup::CrdV1.as_str());
                ApiGroup::CrdV1
            }
        };
        log::info!("Calico API group (discovered): {}", found.as_str());
        Ok(*self.group.get_or_init(|| found))
    }

    /// Bounds every later API call by `deadline` (the plugin call's overall budget): calls
    /// get at most the time left, and none starts after it.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.kube.deadline = Some(deadline);
        self
    }

    /// From a ready kube client configuration (e.g. built from `k8s_api_root`/token settings).
    pub fn from_config(config: kube::Config, timeouts: Timeouts) -> StoreResult<Self> {
        Ok(KddStore {
            kube: client::Kube::from_config(config, timeouts)?,
            group: OnceLock::from(ApiGroup::default()),
        })
    }

    fn api(&self, kind: Kind) -> StoreResult<Api<DynamicObject>> {
        Ok(Api::all_with(
            self.kube.client.clone(),
            &kind.api_resource(self.group()?),
        ))
    }

    /// Decode a fetched object into a KV pair (`None` if not a valid object of this kind).
    fn decode(kind: Kind, o: &DynamicObject) -> StoreResult<Option<(Decoded, Revision)>> {
        let v = dyn_to_value(o)?;
        match from_object(kind, &v) {
            Some(d) => Ok(Some((d, revision_of(o)?))),
            None => Ok(None),
        }
    }

    /// Second half of Calico's two-step delete for an object found marked deleted. Losing a
    /// race here is fine: someone else finished it or revived it.
    fn finish_soft_delete(&self, kind: Kind, o: &DynamicObject) {
        let Some(name) = o.metadata.name.clone() else {
            return;
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: o.metadata.resource_version.clone(),
                uid: o.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        let Ok(api) = self.api(kind) else { return };
        if let Err(e) = self
            .kube
            .run("finishing delete", async { api.delete(&name, &dp).await })
        {
            log::debug!("finishing soft delete of {name}: {e}");
        }
    }

    /// Create for a Calico Node: Nodes belong to the kubelet, so creating one succeeds only in
    /// the sense of "it already exists".
    fn create_node(&self, key: &Key) -> StoreResult<Revision> {
        match self.get(key) {
            Ok(_) => Err(StoreError::AlreadyExists(key.path())),
            Err(StoreError::NotFound(_)) => Err(StoreError::Other(format!(
                "Kubernetes Node {:?} does not exist (the Kubernetes datastore does not create Nodes)",
                object_name(key)
            ))),
            Err(e) => Err(e),
        }
    }

    /// LIST one collection and decode the live objects `prefix` matches.
    fn fetch(&self, kind: Kind, prefix: &ListPrefix, lp: &ListParams) -> StoreResult<Vec<KvPair>> {
        let api = self.api(kind)?;
        let list = self.kube.run("list", async { api.list(lp).await })?;
        let mut out = Vec::new();
        for o in &list.items {
            if let Some((d, rev)) = Self::decode(kind, o)? {
                if !d.soft_deleted && prefix.matches(&d.key) {
                    out.push(KvPair {
                        key: d.key,
                        value: d.value,
                        revision: rev,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The label selector narrowing a per-host affinity listing on the server (exact
    /// filtering happens after decoding). Cluster-wide listings use no selector, so rows
    /// written before Calico labelled affinities are never missed there.
    fn selector(prefix: &ListPrefix) -> Option<String> {
        let ListPrefix::Affinities {
            host: Some(h),
            version,
        } = prefix
        else {
            return None;
        };
        let mut sel = format!(
            "{}={},{}={}",
            names::LABEL_HOSTNAME_HASH,
            names::hostname_hash(h),
            names::LABEL_AFFINITY_TYPE,
            ipam::keys::AFFINITY_TYPE_HOST
        );
        if let Some(v) = version {
            let n = match v {
                IpVersion::V4 => 4,
                IpVersion::V6 => 6,
            };
            sel.push_str(&format!(",{}={n}", names::LABEL_IP_VERSION));
        }
        Some(sel)
    }
}

impl Store for KddStore {
    fn get(&self, key: &Key) -> StoreResult<KvPair> {
        let kind = Kind::of(key).map_err(|e| match key {
            // Derived kinds simply have no stored objects.
            Key::Resource { .. } => StoreError::NotFound(format!("{key} ({e})")),
            _ => e,
        })?;
        let name = object_name(key);
        let api = self.api(kind)?;
        let o = self
            .kube
            .run(&format!("get {name}"), async { api.get(&name).await })?;
        match Self::decode(kind, &o)? {
            Some((d, _)) if d.soft_deleted => {
                self.finish_soft_delete(kind, &o);
                Err(StoreError::NotFound(key.path()))
            }
            Some((d, rev)) if &d.key == key => Ok(KvPair {
                key: d.key,
                value: d.value,
                revision: rev,
            }),
            // A hashed/lower-cased name held another key's object: not ours.
            Some(_) => Err(StoreError::NotFound(key.path())),
            None => Err(StoreError::Other(format!(
                "{key}: object {name} is not a valid {:?}",
                kind
            ))),
        }
    }

    fn list(&self, prefix: &ListPrefix) -> StoreResult<Vec<KvPair>> {
        let kind = match prefix {
            ListPrefix::Blocks { .. } => Kind::Block,
            ListPrefix::Affinities { .. } => Kind::Affinity,
            ListPrefix::Handles => Kind::Handle,
            ListPrefix::Resources { kind, .. } | ListPrefix::NamedResources { kind, .. } => {
                match Kind::of_resource(*kind) {
                    Ok(k) => k,
                    Err(_) => return Ok(Vec::new()),
                }
            }
        };
        let mut lp = ListParams::default();
        let selector = Self::selector(prefix);
        if let Some(sel) = &selector {
            lp = lp.labels(sel);
        }
        let mut out = self.fetch(kind, prefix, &lp)?;
        if out.is_empty() && matches!(prefix, ListPrefix::Affinities { host: Some(_), .. }) {
            // Calico before v3.31 wrote affinities without the labels the query above uses.
            // Look at those only (Calico's upgrade query: rows lacking the affinity-type label;
            // in an upgraded cluster none, whatever its size), and label this host's (as
            // Calico's upgrade does) so the next listing finds them directly.
            let unlabelled =
                ListParams::default().labels(&format!("!{}", names::LABEL_AFFINITY_TYPE));
            out = self.fetch(kind, prefix, &unlabelled)?;
            for kv in &mut out {
                if let Ok(rev) = self.update(&kv.key, &kv.value, &kv.revision) {
                    kv.revision = rev;
                }
            }
        }
        out.sort_by_cached_key(|kv| kv.key.path());
        Ok(out)
    }

    fn create(&self, key: &Key, value: &str) -> StoreResult<Revision> {
        if !key.is_valid() {
            return Err(StoreError::Other(format!("invalid key {key}")));
        }
        let kind = Kind::of(key)?;
        if kind == Kind::Node {
            return self.create_node(key);
        }
        let obj = to_dynamic(key, to_object(key, value, self.group()?)?)?;
        let api = self.api(kind)?;
        let created = self.kube.run(&format!("create {key}"), async {
            api.create(&PostParams::default(), &obj).await
        })?;
        revision_of(&created)
    }

    fn update(&self, key: &Key, value: &str, revision: &Revision) -> StoreResult<Revision> {
        let kind = Kind::of(key)?;
        let mut v = to_object(key, value, self.group()?)?;
        v["metadata"]["resourceVersion"] = Value::String(revision.as_str().to_string());
        let obj = to_dynamic(key, v)?;
        let name = object_name(key);
        let api = self.api(kind)?;
        let updated = self.kube.run(&format!("update {key}"), async {
            api.replace(&name, &PostParams::default(), &obj).await
        })?;
        revision_of(&updated)
    }

    fn delete(&self, key: &Key, revision: Option<&Revision>) -> StoreResult<()> {
        let kind = Kind::of(key)?;
        if kind == Kind::Node {
            return Err(StoreError::Other(format!(
                "{key}: the Kubernetes datastore does not delete Nodes"
            )));
        }
        let name = object_name(key);
        let dp = DeleteParams {
            preconditions: revision.map(|r| Preconditions {
                resource_version: Some(r.as_str().to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let api = self.api(kind)?;
        self.kube.run(&format!("delete {key}"), async {
            api.delete(&name, &dp).await
        })?;
        Ok(())
    }
}
