fn main() {
    cni::skel::run(&calico::Calico, "Calico CNI plugin (calico-cni-rs)")
}
