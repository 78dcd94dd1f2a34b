fn main() {
    eprintln!("calicoctl: not implemented yet");
    std::process::exit(1);
}
