//! Kubernetes API access for the suite: kubeconfig client, pod/namespace/node lookups, Calico annotations. (in progress)
