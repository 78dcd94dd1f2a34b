fn main() {
    cni::skel::run(&portmap::Portmap, "portmap plugin (calico-cni-rs)")
}
