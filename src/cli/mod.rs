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
    /// Build ROOT/eval from every validation image (ROOT/val/<class>/…): by default the
    /// course's folder (bicubic 64×64, JPEG quality 75, same file names), so FID against it is
    /// the course's.
    PrepareEval {
        /// Data root holding `val/<class>/…`.
        root: std::path::PathBuf,
        /// Side of the written images.
        #[arg(long, default_value_t = diffuse::data::image_folder::PrepareEvalConfig::default().size)]
        size: usize,
        /// `jpeg`: the course's folder, byte for byte as Pillow writes it; `png`: lossless
        /// `<class>_<stem>.png` resized bilinearly like the training data (not the course's FID).
        #[arg(long, value_enum, default_value_t = diffuse::data::image_folder::EvalFormat::default())]
        format: diffuse::data::image_folder::EvalFormat,
    },
    /// Build, backend, CPU features, threads and a few-second self-check, for bug reports.
    Doctor {
        /// Worker threads [default: all cores, or RAYON_NUM_THREADS].
        #[arg(long)]
        threads: Option<usize>,
    },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Toy { cmd } => toy::run(cmd),
        Command::Image { cmd } => image::run(cmd),
        Command::PrepareEval { root, size, format } => image::prepare_eval(
            &root,
            &diffuse::data::image_folder::PrepareEvalConfig { size, format },
        ),
        Command::Fid(a) => fid::fid(&a),
        Command::Classifier { cmd } => fid::classifier(cmd),
        Command::Doctor { threads } => doctor(threads),
    }
}

/// `diffuse doctor`: the report on stdout; non-zero exit when a self-check fails.
fn doctor(threads: Option<usize>) -> Result<()> {
    set_threads(threads)?;
    let facts = diffuse::doctor::facts();
    let checks = diffuse::doctor::self_check();
    print!("{}", diffuse::doctor::report(&facts, &checks));
    if checks.iter().any(|c| !c.passed) {
        anyhow::bail!("self-check failed");
    }
    Ok(())
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

/// Optimizer flags shared by the 2D and image trainers; unset flags keep the preset's value.
#[derive(clap::Args, Clone)]
pub struct OptimArgs {
    /// Peak learning rate [2D reference: 1e-3; AFHQ reference: 2e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Linear warm-up steps [2D reference: 0; AFHQ reference: 200].
    #[arg(long)]
    warmup: Option<usize>,
    /// Learning-rate schedule after warm-up [reference: constant].
    #[arg(long, value_enum)]
    lr_schedule: Option<diffuse::train::LrSchedule>,
    /// Clip the global gradient norm, 0 = off [reference: off].
    #[arg(long, allow_negative_numbers = true)]
    grad_clip: Option<f64>,
    /// EMA decay of the weights, 0 = off [reference: off].
    #[arg(long, allow_negative_numbers = true)]
    ema: Option<f64>,
}

impl OptimArgs {
    /// Overrides the preset's optimizer settings and EMA decay with the flags that were given.
    pub fn apply(&self, o: &mut diffuse::train::OptimConfig, ema: &mut Option<f64>) {
        if let Some(v) = self.lr {
            o.lr = v;
        }
        if let Some(v) = self.warmup {
            o.warmup_steps = v;
        }
        if let Some(v) = self.lr_schedule {
            o.schedule = v;
        }
        if let Some(v) = self.grad_clip {
            o.grad_clip = (v != 0.0).then_some(v);
        }
        if let Some(v) = self.ema {
            *ema = (v != 0.0).then_some(v);
        }
    }
}
