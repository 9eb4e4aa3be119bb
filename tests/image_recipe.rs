//! The image recipes: `image run` trains and samples `best` by default, `--recipe reference`
//! is the digits preset exactly as before (pinned value by value), the levers are flags and
//! config keys, and a study recipe file may set the demo's sampling.
mod common;
use common::{diffuse, fails_with, TempDir};

use diffuse::image::{DemoSampling, ImageTrainConfig, Preset, Recipe, RunFile};
use diffuse::objective::{LossWeighting, Objective, TimestepSampling};
use diffuse::sampling::Selective;
use diffuse::schedule::BetaSchedule;
use diffuse::train::LrSchedule;

fn resolved(args: &[&str]) -> (RunFile, String) {
    let (code, out, err) = diffuse(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    (serde_json::from_str(&out).unwrap(), err)
}

#[test]
fn the_reference_digits_recipe_is_pinned() {
    // The digits preset as the study's `reference` measured it (BENCHMARKS.md, image recipe):
    // a change here changes every reference number there.
    let c = Preset::Digits.with_recipe(Recipe::Reference);
    assert_eq!(c, ImageTrainConfig::digits());
    assert_eq!(
        (c.unet.channels, &c.unet.channel_mult, c.unet.num_res_blocks),
        (32, &vec![1, 2], 1)
    );
    assert_eq!((c.unet.attn_levels.clone(), c.unet.dropout), (vec![1], 0.1));
    assert_eq!(
        (c.batch_size, c.steps, c.ema_decay),
        (64, 1500, Some(0.995))
    );
    assert_eq!(
        (c.optim.lr, c.optim.warmup_steps, c.optim.schedule),
        (1e-3, 100, LrSchedule::Cosine)
    );
    assert_eq!((c.optim.min_lr_frac, c.optim.grad_clip), (0.05, Some(1.0)));
    assert_eq!(c.schedule.kind, BetaSchedule::Linear);
    assert_eq!((c.schedule.beta_start, c.schedule.beta_end), (1e-4, 0.02));
    assert!(c.objective.is_reference());
    assert_eq!(c.p_uncond, 0.1);
    let s = DemoSampling::of(Recipe::Reference);
    assert_eq!((s.steps, s.eta, s.apg_norm), (50, 0.0, 0.01875));
    assert_eq!(
        (s.apg_interval, s.apg_feedback, s.selective),
        (None, None, None)
    );
    // The reference objective is left out of saved configs (their hashes are unchanged).
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("objective"), "{json}");
}

#[test]
fn image_run_trains_and_samples_the_best_recipe_unless_told_otherwise() {
    let (best, err) = resolved(&["image", "run", "--dry-run", "-q"]);
    assert_eq!(best.train, Preset::Digits.with_recipe(Recipe::Best));
    assert_ne!(best.train, ImageTrainConfig::digits());
    let s = DemoSampling::of(Recipe::Best);
    assert_eq!(s.selective, Some(Selective::default()));
    assert_eq!((s.apg_norm, s.apg_feedback), (0.005, None));
    assert!(
        err.contains("recipe best")
            && err.contains(&format!("η={}", s.eta))
            && err.contains(&format!("r = {}", s.apg_norm))
            && err.contains(
                "selective: every image first at w = 0.5 (r = 0.01), then the 5 % the model is least sure of"
            ),
        "{err}"
    );
    // Selective guidance is one flag away from off, and its settings are checked with the flag
    // named; feedback guidance, the previous default, is one flag away from on.
    let (_, err) = resolved(&["image", "run", "--dry-run", "--guide-share", "0"]);
    assert!(
        err.contains("recipe best") && !err.contains("selective"),
        "{err}"
    );
    for (flags, needle) in [
        (
            &["--guide-share", "0.1", "--base-scale", "1"][..],
            "first at w = 1 (r = 0.01), then the 10 %",
        ),
        (
            &["--guide-share", "0", "--apg-feedback", "0.9"],
            "feedback π = 0.9, τ = 0.25",
        ),
    ] {
        let (_, err) = resolved(&[&["image", "run", "--dry-run"], flags].concat());
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    for (flag, value) in [
        ("--apg-feedback", "1.5"),
        ("--apg-feedback-temperature", "0"),
        ("--guide-share", "-0.5"),
        ("--base-apg-norm", "-1"),
    ] {
        let args = [
            "image",
            "run",
            "--dry-run",
            "--apg-feedback",
            "0.9",
            flag,
            value,
        ];
        let (code, _, err) = diffuse(&args);
        assert!(code != 0 && err.contains(flag), "{flag} {value}: {err}");
    }
    let (reference, err) = resolved(&["image", "run", "--dry-run", "--recipe", "reference"]);
    assert_eq!(reference.train, ImageTrainConfig::digits());
    assert!(err.contains("samples with ddim-50,"), "{err}");
    // `image train` keeps the preset unless asked; `--recipe best` is the demo's recipe.
    let (train, _) = resolved(&["image", "train", "--dry-run"]);
    assert_eq!(train.train, ImageTrainConfig::digits());
    let (train_best, _) = resolved(&["image", "train", "--dry-run", "--recipe", "best"]);
    assert_eq!(train_best.train, best.train);
    // The same levers for AFHQ: the reference protocol by default.
    let afhq = Preset::Afhq.with_recipe(Recipe::Best);
    assert_eq!(
        Preset::Afhq.with_recipe(Recipe::Reference),
        ImageTrainConfig::reference()
    );
    assert_eq!(
        afhq.schedule.kind,
        Preset::Digits.with_recipe(Recipe::Best).schedule.kind
    );
    assert_eq!(afhq.unet, ImageTrainConfig::reference().unet);
}

#[test]
fn each_lever_is_a_flag_and_a_config_key() {
    let (f, _) = resolved(&[
        "image",
        "train",
        "--dry-run",
        "--schedule",
        "cosine",
        "--timesteps",
        "log-normal",
        "--timestep-mean",
        "-0.5",
        "--min-snr-gamma",
        "5",
        "--dropout",
        "0",
    ]);
    assert_eq!(f.train.schedule.kind, BetaSchedule::Cosine);
    assert_eq!(
        f.train.objective,
        Objective {
            timesteps: TimestepSampling::LogNormal {
                mean: -0.5,
                std: 1.2
            },
            weighting: LossWeighting::MinSnr { gamma: 5.0 },
        }
    );
    assert_eq!(f.train.unet.dropout, 0.0);
    // The printed config, fed back, is the same run.
    let dir = TempDir::new("recipe-keys");
    let file = dir.0.join("run.json");
    std::fs::write(&file, f.to_json()).unwrap();
    let (g, _) = resolved(&[
        "image",
        "train",
        "--dry-run",
        "--config",
        file.to_str().unwrap(),
    ]);
    assert_eq!(g, f);
    // Bad values name the key.
    let bad = dir.0.join("bad.toml");
    for (text, key) in [
        (
            "[train.objective.weighting]\nkind = \"min-snr\"\ngamma = -1.0\n",
            "train.objective.weighting",
        ),
        (
            "[train.objective.timesteps]\nkind = \"lognormal\"\n",
            "train.objective.timesteps",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let cfg = bad.to_str().unwrap();
        fails_with(&["image", "train", "--dry-run", "--config", cfg], key);
    }
    fails_with(
        &[
            "image",
            "train",
            "--dry-run",
            "--timesteps",
            "uniform",
            "--timestep-std",
            "2",
        ],
        "--timestep-std",
    );
}

#[test]
fn a_study_recipe_file_sets_the_demo_sampling_and_bad_keys_are_refused() {
    use diffuse::image::study::ImageRecipe;
    let dir = TempDir::new("recipe-sample");
    let file = dir.0.join("stochastic.toml");
    std::fs::write(
        &file,
        "[train.optim]\nlr = 2e-3\n[sample]\neta = 1.0\napg_norm = 0.004\n\
         [sample.apg_feedback]\npi = 0.8\ntemperature = 0.5\n\
         [sample.selective]\nshare = 0.1\nbase_w = 1.0\nbase_apg_norm = 0.02\n",
    )
    .unwrap();
    let r = ImageRecipe::parse(file.to_str().unwrap()).unwrap();
    assert_eq!(r.name, "stochastic");
    assert_eq!(r.config.optim.lr, 2e-3);
    assert_eq!(
        (r.sampling.eta, r.sampling.apg_norm, r.sampling.steps),
        (1.0, 0.004, 50)
    );
    assert_eq!(r.sampling.guided().apg.norm_threshold, 0.004);
    let f = r.sampling.guided().apg.feedback.unwrap();
    assert_eq!((f.pi, f.temperature), (0.8, 0.5));
    let sel = r.sampling.selective.unwrap();
    assert_eq!((sel.share, sel.base_w, sel.base_apg_norm), (0.1, 1.0, 0.02));
    std::fs::write(&file, "[sample]\netta = 1.0\n").unwrap();
    let e = ImageRecipe::parse(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("etta") && e.contains("stochastic.toml"), "{e}");
    std::fs::write(&file, "[sample]\nsteps = 5000\n").unwrap();
    let e = ImageRecipe::parse(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[sample]") && e.contains("5000"), "{e}");
    std::fs::write(
        &file,
        "[sample.selective]\nshare = 2.0\nbase_w = 0.5\nbase_apg_norm = 0.01\n",
    )
    .unwrap();
    let e = ImageRecipe::parse(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[sample]") && e.contains("selective.share"),
        "{e}"
    );
    let best = ImageRecipe::parse("best").unwrap();
    assert_eq!(
        (best.config, best.sampling),
        (
            Preset::Digits.with_recipe(Recipe::Best),
            DemoSampling::of(Recipe::Best)
        )
    );
}
