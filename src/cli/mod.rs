//! Command-line interface: argument parsing (clap derive) and dispatch.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod fid;
mod image;
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
    /// Class-conditional image diffusion with classifier-free guidance.
    Image {
        #[command(subcommand)]
        cmd: image::ImageCommand,
    },
    /// FID (and optionally KID) between two image folders.
    Fid(fid::FidArgs),
    /// The FID feature network.
    Classifier {
        #[command(subcommand)]
        cmd: fid::ClassifierCommand,
    },
    /// Build ROOT/eval from every validation image (ROOT/val/<class>/…) at the training size.
    PrepareEval {
        /// Data root holding `val/<class>/…`.
        root: std::path::PathBuf,
        /// Side of the written images.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Toy { cmd } => toy::run(cmd),
        Command::Image { cmd } => image::run(cmd),
        Command::PrepareEval { root, size } => image::prepare_eval(&root, size),
        Command::Fid(a) => fid::fid(&a),
        Command::Classifier { cmd } => fid::classifier(cmd),
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
