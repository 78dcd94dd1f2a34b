//! etcd v3 IPAM datastore. (in progress)
