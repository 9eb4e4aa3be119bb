//! The command-line program: argument parsing (clap derive) and dispatch, one file (and one
//! `Args` struct) per subcommand, flags shared by several in [`args`]. Handlers parse, call
//! the library and print; the work itself is in the library, where tests can call it.
use anyhow::Result;
use clap::{Parser, Subcommand};

pub mod args;
mod bench;
mod classifier;
mod completions;
mod fid;
mod image;
mod prepare_eval;
mod report;
mod toy;

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        "\n`diffuse doctor` prints the build, CPU features, threads and a self-check for bug reports"
    ),
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
        // Boxed: the training flags make it far larger than the other commands.
        #[command(subcommand)]
        cmd: Box<image::ImageCommand>,
    },
    /// FID (and optionally KID) between two image folders or statistics files (.npz).
    Fid(fid::FidArgs),
    /// The FID feature network.
    Classifier {
        #[command(subcommand)]
        cmd: classifier::ClassifierCommand,
    },
    /// Build ROOT/eval from every validation image (ROOT/val/<class>/…): by default the
    /// course's folder (bicubic 64×64, JPEG quality 75, same file names), so FID against it is
    /// the course's.
    PrepareEval(prepare_eval::PrepareEvalArgs),
    /// Timings and checks for comparing devices and frameworks (bench/gpu_verdict.sh).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCommand,
    },
    /// Shell completions for bash, zsh, fish, elvish or PowerShell, on stdout.
    Completions(completions::CompletionsArgs),
    /// The manual page (roff) on stdout, or one page per command with --out DIR.
    Man(completions::ManArgs),
    /// One self-contained HTML page of a run folder (RUN/report.html): config, loss curve,
    /// samples, metrics, timings and the machine; prints its path.
    Report(report::ReportArgs),
    /// Build, backend, CPU features, threads and a few-second self-check, for bug reports.
    Doctor {
        /// Worker threads [default: all cores, or RAYON_NUM_THREADS].
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Parses the command line and runs the command; library errors come back with the flags
/// that set the fields they name.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Toy { cmd } => toy::run(cmd),
        Command::Image { cmd } => image::run(*cmd),
        Command::PrepareEval(a) => prepare_eval::run(&a),
        Command::Fid(a) => fid::run(&a),
        Command::Classifier { cmd } => classifier::run(cmd),
        Command::Bench { cmd } => bench::run(cmd),
        Command::Completions(a) => completions::completions(&a),
        Command::Man(a) => completions::man(&a),
        Command::Report(a) => report::run(&a),
        Command::Doctor { threads } => doctor(threads),
    };
    r.map_err(|e| args::to_flags(e, &[]))
}

/// `diffuse doctor`: the report on stdout; non-zero exit when a self-check fails.
fn doctor(threads: Option<usize>) -> Result<()> {
    args::set_threads(threads)?;
    let facts = diffuse::doctor::facts();
    let checks = diffuse::doctor::self_check();
    print!("{}", diffuse::doctor::report(&facts, &checks));
    if checks.iter().any(|c| !c.passed) {
        anyhow::bail!("self-check failed");
    }
    Ok(())
}
