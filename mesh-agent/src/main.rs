//! The `mesh` command.

fn main() {
    std::process::exit(mesh_agent::cli::main(std::env::args_os().collect()));
}
