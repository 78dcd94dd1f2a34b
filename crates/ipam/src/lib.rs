//! Calico block IPAM. (in progress)
