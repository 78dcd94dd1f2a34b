//! Chooses and opens the IPAM datastore (local, etcdv3, kubernetes) from plugin config or calicoctl env (in progress).
