//! (in progress)

/// The calico-ipam plugin (in progress).
#[derive(Debug, Default)]
pub struct CalicoIpam;
