//! `diffuse report RUN`: writes `RUN/report.html` (`diffuse::report`) and prints its path.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ReportArgs {
    /// Run folder: the --out of `toy run`, `image run` or `image train`.
    run: PathBuf,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let path = diffuse::report::write(&a.run)?;
    println!("{}", path.display());
    Ok(())
}
