//! Embedded local IPAM datastore. (in progress)
