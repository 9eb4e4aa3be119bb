//! `diffuse image study`: one digits model per seed and recipe (`diffuse::image::study`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::image::study::{ImageRecipe, ImageStudy, ImageStudyRow};

use crate::cli::args::{seed_list, CommonArgs, SeedList};

#[derive(Args)]
pub struct StudyArgs {
    /// Recipes compared (comma-separated): `reference` (the digits preset), `best`, or TOML/JSON
    /// files of RUN/config.json keys laid over the preset (and an optional `[sample]` table of
    /// the demo's sampling), named by their file stem.
    #[arg(long, value_delimiter = ',', default_value = "reference,best")]
    recipes: Vec<String>,
    /// Seeds: comma-separated seeds and inclusive ranges, e.g. `0-4` or `0,3,100-104`.
    #[arg(long, default_value = "0-4", value_parser = seed_list)]
    seeds: SeedList,
    /// Samples per setting (w = 0 and APG w = 7.5), as the demo.
    #[arg(short = 'n', long = "num", default_value_t = 500)]
    n: usize,
    /// Output folder.
    #[arg(long, default_value = "out/image-study")]
    out: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(a: &StudyArgs) -> Result<()> {
    let dev = a.common.device()?;
    let recipes = a
        .recipes
        .iter()
        .map(|r| ImageRecipe::parse(r))
        .collect::<diffuse::Result<Vec<_>>>()?;
    let study = ImageStudy {
        recipes,
        seeds: a.seeds.0.clone(),
        n: a.n,
        out: a.out.clone(),
        show: !a.common.quiet,
    };
    study.validate()?;
    println!(
        "{:>12} {:>6} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>6}",
        "recipe", "seed", "train cpu", "acc w0", "FD w0", "acc APG", "FD APG", "floor", "FD/fl"
    );
    let rows = study.run(&dev, &mut |r: &ImageStudyRow| {
        println!(
            "{:>12} {:>6} {:>8.1} {:>7.3} {:>7.2} {:>8.3} {:>7.2} {:>8.2} {:>6.2}",
            r.recipe,
            r.seed,
            r.train_cpu_seconds,
            r.accuracy_w0,
            r.frechet_w0,
            r.accuracy_guided,
            r.frechet_guided,
            r.floor,
            r.frechet_w0 / r.floor
        )
    })?;
    println!("\nmedian [min, max] over seeds");
    for l in study.summarize(&rows)? {
        println!(
            "{:>12} {:<28} {:>10.4} [{:.4}, {:.4}] ({} seeds)",
            l.recipe, l.metric, l.median, l.min, l.max, l.count
        );
    }
    println!("tables in {}", a.out.join("study.csv").display());
    Ok(())
}
