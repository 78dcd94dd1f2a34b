//! The calico-ipam CNI plugin. (in progress)
