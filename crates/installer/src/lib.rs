//! install-cni logic: copy binaries atomically, render the conflist template, write the kubeconfig. (in progress)
