//! `diffuse prepare-eval ROOT`: the course's FID folder `ROOT/eval` from every validation image.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::data::image_folder::{prepare_eval, EvalFormat, PrepareEvalConfig};

#[derive(Args)]
pub struct PrepareEvalArgs {
    /// Data root holding `val/<class>/…`.
    root: PathBuf,
    /// Side of the written images.
    #[arg(long, default_value_t = PrepareEvalConfig::default().size)]
    size: usize,
    /// `jpeg`: the course's folder, byte for byte as Pillow writes it; `png`: lossless
    /// `<class>_<stem>.png` resized bilinearly like the training data (not the course's FID).
    #[arg(long, value_enum, default_value_t = EvalFormat::default())]
    format: EvalFormat,
    /// Fail on the first unreadable image instead of skipping it with a warning.
    #[arg(long)]
    strict: bool,
}

pub fn run(a: &PrepareEvalArgs) -> Result<()> {
    let cfg = PrepareEvalConfig {
        size: a.size,
        format: a.format,
        strict: a.strict,
    };
    let report = prepare_eval(&a.root, &cfg)?;
    for s in &report.skipped {
        eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
    }
    let what = match cfg.format {
        EvalFormat::Jpeg => "bicubic, JPEG q75: the course's folder",
        EvalFormat::Png => "bilinear, lossless PNG",
    };
    println!(
        "wrote {} images ({s}×{s}, {what}) to {}; skipped {} unreadable{}",
        report.written,
        report.out_dir.display(),
        report.skipped.len(),
        if report.skipped.is_empty() {
            ""
        } else {
            " (listed above; --strict makes them an error)"
        },
        s = cfg.size
    );
    Ok(())
}
