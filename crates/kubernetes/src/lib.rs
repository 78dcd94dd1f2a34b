//! Kubernetes API access for the CNI suite, as Calico's plugins use it.
//!
//! Owns: building a client from a kubeconfig and Calico's overrides (`k8s_api_root`,
//! `k8s_auth_token`, client certificate/key, CA) with connect and per-request timeouts; the
//! few lookups the plugins make (pod, namespace, node; for `calico-ipam -upgrade` the pods on a
//! node and a node annotation); parsing Calico's pod/namespace annotations
//! (`cni.projectcalico.org/*`); recording a pod's IPs on the pod (`podIP`,
//! `podIPs`, `containerID`) and clearing them only for the container that set them.
//!
//! Must NOT: touch the network or namespaces, exec anything, or run a multi-threaded
//! runtime: every call is `block_on` on a private current-thread tokio runtime, so callers
//! stay synchronous and no tokio worker ever exists that could be moved into a netns.

pub mod annotations;
mod client;
mod error;
pub mod objects;
pub mod podip;

pub use annotations::{Annotations, IpFamilies};
pub use client::{Client, ClientOptions, InCluster};
pub use error::Error;
pub use objects::{ContainerPort, Namespace, Node, Pod};
