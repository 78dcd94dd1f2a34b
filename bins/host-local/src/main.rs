fn main() {
    cni::skel::run(
        &host_local::HostLocal,
        "host-local IPAM plugin (calico-cni-rs)",
    )
}
