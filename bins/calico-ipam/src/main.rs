fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = calico_ipam::cli::run(&args) {
        std::process::exit(code);
    }
    cni::skel::run(
        &calico_ipam::CalicoIpam,
        "Calico CNI IPAM plugin (calico-cni-rs)",
    )
}
