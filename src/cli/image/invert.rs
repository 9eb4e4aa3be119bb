//! `diffuse image invert`: DDIM inversion of real digits (`diffuse::image::invert`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::image::invert::InversionRow;
use diffuse::image::judge::load_digits_run;

use crate::cli::args::CommonArgs;

#[derive(Args)]
pub struct InvertArgs {
    /// Run folder (a digits run).
    #[arg(long)]
    ckpt: PathBuf,
    /// Step counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 20, 50, 100])]
    steps: Vec<usize>,
    /// Images encoded (the first N digits).
    #[arg(short = 'n', long = "num", default_value_t = 100)]
    n: usize,
    /// Output folder.
    #[arg(long, default_value = "out/image-invert")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &InvertArgs) -> Result<()> {
    let dev = a.common.device()?;
    let (model, meta) = load_digits_run(&a.ckpt, &dev)?;
    println!("steps  mean |x − decode(encode(x))|");
    diffuse::image::invert::run(
        &model,
        &meta,
        &a.steps,
        a.n,
        &a.out,
        &mut |r: &InversionRow| println!("{:>5}  {:.5}", r.steps, r.mean_abs_error),
    )?;
    println!(
        "inversion.json and interpolation.png in {}",
        a.out.display()
    );
    Ok(())
}
