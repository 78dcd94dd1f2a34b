fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = calico::cli::run(&args) {
        std::process::exit(code);
    }
    cni::skel::run(&calico::Calico, "Calico CNI plugin (calico-cni-rs)")
}
