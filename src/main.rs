fn main() {
    std::process::exit(stitch_bridge::cli::main());
}
