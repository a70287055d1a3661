//! The `vault` command-line tool: parses flags, runs a command, maps the
//! outcome to an exit code. All behaviour lives in the library.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code as i32);
}
