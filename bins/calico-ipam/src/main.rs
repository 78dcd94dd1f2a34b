fn main() {
    cni::skel::run(
        &calico_ipam::CalicoIpam,
        "Calico CNI IPAM plugin (calico-cni-rs)",
    )
}
