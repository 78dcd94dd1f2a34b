fn main() {
    cni::skel::run(&loopback::Loopback, "loopback plugin (calico-cni-rs)")
}
