fn main() {
    eprintln!("calico-ipam: not implemented yet");
    std::process::exit(1);
}
