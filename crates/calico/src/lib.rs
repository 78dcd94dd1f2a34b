//! The calico CNI plugin. (in progress)
