fn main() {
    eprintln!("host-local: not implemented yet");
    std::process::exit(1);
}
