fn main() {
    cni::skel::run(&bandwidth::Bandwidth, "bandwidth plugin (calico-cni-rs)")
}
