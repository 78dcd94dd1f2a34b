//! The objects of one resource type, stored as a real API server's etcd keys them
//! (`/registry/<resource>/<namespace>/<name>`): a LIST, GET or write of one type never touches
//! another type's objects, however many there are.
//!
//! Label selectors are answered from an index of `key=value` pairs when the selector has an
//! equality or `in` term (Calico's per-host BlockAffinity query is one): only the objects
//! carrying the pair are looked at. A `!key` term when every object carries `key` (Calico's
//! query for affinities not yet labelled, in an upgraded cluster) matches nothing at once. The index only narrows the candidates; every candidate is
//! still checked against the whole selector, so results are exactly those of a full scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde_json::Value;

use crate::selector::Selector;

/// (namespace or "" for cluster-scoped, name): the order LIST returns objects in.
pub type ObjName = (String, String);

/// One resource type's objects and their label index.
#[derive(Default)]
pub struct Collection {
    objects: BTreeMap<ObjName, Value>,
    /// `(label key, label value)` → objects carrying that label.
    by_label: HashMap<(String, String), BTreeSet<ObjName>>,
    /// Label key → how many objects carry it.
    key_count: HashMap<String, usize>,
}

fn labels_of(obj: &Value) -> impl Iterator<Item = (&String, &str)> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k, v.as_str()?)))
}

/// Where a LIST starts: the namespace's first key, or just after the continue position,
/// whichever comes later.
fn start(ns: Option<&str>, after: Option<&ObjName>) -> Bound<ObjName> {
    let ns_start = ns.map(|n| (n.to_string(), String::new()));
    match (ns_start, after) {
        (None, None) => Bound::Unbounded,
        (Some(s), None) => Bound::Included(s),
        (None, Some(a)) => Bound::Excluded(a.clone()),
        (Some(s), Some(a)) if *a < s => Bound::Included(s),
        (Some(_), Some(a)) => Bound::Excluded(a.clone()),
    }
}

impl Collection {
    pub fn get(&self, k: &ObjName) -> Option<&Value> {
        self.objects.get(k)
    }

    /// Store `obj` under `k` (replacing any previous version), keeping the index in step.
    pub fn insert(&mut self, k: ObjName, obj: Value) {
        if let Some(old) = self.objects.remove(&k) {
            self.unindex(&k, &old);
        }
        for (lk, lv) in labels_of(&obj) {
            *self.key_count.entry(lk.clone()).or_default() += 1;
            self.by_label
                .entry((lk.clone(), lv.to_string()))
                .or_default()
                .insert(k.clone());
        }
        self.objects.insert(k, obj);
    }

    pub fn remove(&mut self, k: &ObjName) -> Option<Value> {
        let old = self.objects.remove(k)?;
        self.unindex(k, &old);
        Some(old)
    }

    fn unindex(&mut self, k: &ObjName, old: &Value) {
        for (lk, lv) in labels_of(old) {
            if let Some(n) = self.key_count.get_mut(lk) {
                *n -= 1;
                if *n == 0 {
                    self.key_count.remove(lk);
                }
            }
            let pair = (lk.clone(), lv.to_string());
            if let Some(set) = self.by_label.get_mut(&pair) {
                set.remove(k);
                if set.is_empty() {
                    self.by_label.remove(&pair);
                }
            }
        }
    }

    /// The objects of namespace `ns` (all namespaces if `None`) after position `after`, in key
    /// order, that match `labels`.
    pub fn select<'a>(
        &'a self,
        ns: Option<&'a str>,
        after: Option<&ObjName>,
        labels: &'a Selector,
    ) -> Box<dyn Iterator<Item = (&'a ObjName, &'a Value)> + 'a> {
        let from = start(ns, after);
        let in_ns = move |k: &&ObjName| ns.is_none_or(|n| k.0 == n);
        let matches = |v: &Value| labels.matches(|k| crate::selector::label(v, k));
        let Some(names) = self.narrowest(labels) else {
            return Box::new(
                self.objects
                    .range((from, Bound::Unbounded))
                    .take_while(move |(k, _)| in_ns(k))
                    .filter(move |(_, v)| matches(v)),
            );
        };
        let before_start = move |k: &&ObjName| match &from {
            Bound::Unbounded => false,
            Bound::Included(s) => *k < s,
            Bound::Excluded(s) => *k <= s,
        };
        Box::new(
            names
                .into_iter()
                .skip_while(before_start)
                .take_while(in_ns)
                .filter_map(|k| self.objects.get_key_value(k))
                .filter(move |(_, v)| matches(v)),
        )
    }

    /// The smallest candidate set the index gives for the selector's `k=v` / `k in (...)`
    /// terms (an object matching the selector must be in each of them), or none at all for a
    /// `!k` term every object fails; `None` when the index cannot narrow the selector.
    fn narrowest(&self, labels: &Selector) -> Option<BTreeSet<&ObjName>> {
        let everyone_has = |k: &str| self.key_count.get(k).copied() == Some(self.objects.len());
        if labels.absent_keys().any(everyone_has) {
            return Some(BTreeSet::new());
        }
        let mut best: Option<(usize, Vec<&BTreeSet<ObjName>>)> = None;
        for (key, values) in labels.required_values() {
            // A pair no object carries contributes nothing (and costs nothing).
            let sets: Vec<&BTreeSet<ObjName>> = values
                .iter()
                .filter_map(|v| self.by_label.get(&(key.to_string(), v.to_string())))
                .collect();
            let size = sets.iter().map(|s| s.len()).sum();
            if best.as_ref().is_none_or(|(b, _)| size < *b) {
                best = Some((size, sets));
            }
        }
        Some(best?.1.into_iter().flatten().collect())
    }
}
