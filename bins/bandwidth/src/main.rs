fn main() {
    eprintln!("bandwidth: not implemented yet");
    std::process::exit(1);
}
