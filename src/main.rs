//! The `diffuse` command-line program.
mod cli;

fn main() {
    diffuse::device::load_states_on_the_cpu();
    diffuse::train::install_ctrlc_handler();
    if let Err(e) = cli::run() {
        // The message, then every cause that it does not already spell out.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
