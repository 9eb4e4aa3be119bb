//! `diffuse image export`: a run's network for the course's PyTorch code (or as plain weights).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::checkpoint::export::{export, ExportFormat};

#[derive(Args)]
pub struct ExportArgs {
    /// Run folder, checkpoint folder or model.safetensors.
    #[arg(long)]
    ckpt: PathBuf,
    /// course: unet.safetensors (the course's UNet state-dict keys) + unet.json (its
    /// constructor arguments); safetensors: our model.safetensors + model.json; diffusers:
    /// refused with the reason (the architectures differ, README "Export").
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Export the EMA weights (the run must have them) instead of the raw ones.
    #[arg(long)]
    ema: bool,
}

pub fn run(a: &ExportArgs) -> Result<()> {
    let done = export(&a.ckpt, a.format, &a.out, a.ema)?;
    for f in &done.files {
        println!("wrote {}", f.display());
    }
    println!(
        "exported the {} weights of {}",
        if done.ema { "EMA" } else { "raw" },
        a.ckpt.display()
    );
    Ok(())
}
