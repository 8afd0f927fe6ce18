fn main() {
    std::process::exit(ipcni::cli::main());
}
