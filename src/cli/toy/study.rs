//! `diffuse toy study`: one model per seed and recipe (`diffuse::toy::study`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use diffuse::toy::study::{study_samplers, Study, StudyRow};
use diffuse::toy::Recipe;

use super::TrainOverrides;
use crate::cli::args::{seed_list, SeedList};

#[derive(Args)]
pub struct StudyArgs {
    /// Recipes compared (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Recipe::Reference, Recipe::Best])]
    recipes: Vec<Recipe>,
    /// Seeds: comma-separated seeds and inclusive ranges, e.g. `0-9` or `0,3,100-109`.
    #[arg(long, default_value = "0-9", value_parser = seed_list)]
    seeds: SeedList,
    #[command(flatten)]
    over: TrainOverrides,
    /// Points sampled and compared per model (against its first N training points).
    #[arg(long, default_value_t = 2048)]
    eval_points: usize,
    /// Output folder.
    #[arg(long, default_value = "out/toy-study")]
    out: PathBuf,
}

pub fn run(a: &StudyArgs) -> Result<()> {
    let dev = a.over.common.device()?;
    let study = Study {
        recipes: a
            .recipes
            .iter()
            .map(|&r| (r, a.over.config(r, 0)))
            .collect(),
        seeds: a.seeds.0.clone(),
        eval_points: a.eval_points,
        out: a.out.clone(),
        show: !a.over.common.quiet,
    };
    study.validate()?;
    let names: Vec<&str> = study_samplers().iter().map(|s| s.0).collect();
    println!(
        "{:>10} {:>6} {:>8} {}",
        "recipe",
        "seed",
        "train s",
        names.iter().map(|n| format!("{n:>13}")).collect::<String>()
    );
    let rows = study.run(&dev, &mut |r: &StudyRow| {
        println!(
            "{:>10} {:>6} {:>8.1} {}",
            r.recipe.name(),
            r.seed,
            r.train_seconds,
            r.chamfer
                .iter()
                .map(|c| format!("{c:>13.2}"))
                .collect::<String>()
        )
    })?;
    println!("\nmedian [min, max] over seeds");
    let lines = study.summarize(&rows)?;
    for (r, _) in &study.recipes {
        let mine = || lines.iter().filter(|l| l.recipe == *r);
        let count = rows.iter().filter(|x| x.recipe == *r).count();
        let mut line = format!("{:>10} ({count} seeds):", r.name());
        for l in mine().filter(|l| !l.metric.starts_with("train_time_ratio")) {
            line.push_str(&format!(
                "  {} {:.2} [{:.2}, {:.2}]",
                l.metric, l.median, l.min, l.max
            ));
        }
        println!("{line}");
    }
    for l in lines
        .iter()
        .filter(|l| l.metric.starts_with("train_time_ratio"))
    {
        println!(
            "training time {} / {}, paired by seed: median {:.3} [{:.3}, {:.3}]",
            l.recipe.name(),
            study.recipes[0].0.name(),
            l.median,
            l.min,
            l.max
        );
    }
    println!(
        "study.csv, summary.csv and the models in {}",
        a.out.display()
    );
    Ok(())
}
