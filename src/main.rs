//! The `diffuse` command-line program.
mod cli;

fn main() {
    diffuse::train::install_ctrlc_handler();
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
