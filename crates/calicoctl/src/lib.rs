//! Admin commands of calicoctl (datastore init, ippools, ipam show/check/release) over the ipam crate. (in progress)
