//! Command-line interface: argument parsing (clap derive) and dispatch.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod toy;

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Denoising diffusion models: train, sample (DDPM, DDIM, CFG), evaluate (Chamfer, FID)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The 2D toy-distribution workflow (swiss roll by default).
    Toy {
        #[command(subcommand)]
        cmd: toy::ToyCommand,
    },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Toy { cmd } => toy::run(cmd),
    }
}

/// Sets the number of CPU threads for rayon (and so for the flex backend) once.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            anyhow::bail!("invalid value for --threads: must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .ok();
    }
    Ok(())
}
