//! Calico's Kubernetes CRD datastore (crd.projectcalico.org/v1) behind ipam::Store. (in progress)
