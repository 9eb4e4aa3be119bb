//! What a run leaves for its user: `metrics.jsonl` (every logged step once, across a kill and
//! `--resume`), progress lines when stderr is not a terminal, FID during training with the
//! best checkpoint kept, and `--config` files (same bytes as flags; unknown keys refused).
mod common;
use common::{diffuse, fails_with, ok, TempDir};
use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use diffuse::data::digits::load_digits;
use diffuse::image::metrics_log::{MetricsLog, Record};
use diffuse::image::{self as img, TrainOptions};

fn log_of(run: &Path) -> Vec<Record> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_log_has_every_step_once_across_a_kill_and_resume() {
    let data = Arc::new(load_digits(8).unwrap());
    let dev = Device::flex().autodiff();
    let mut cfg = common::tiny_image_config(5);
    cfg.checkpoint_every = 2;
    let opts = |resume: bool| TrainOptions {
        start: resume.into(),
        log_every: 1,
        ..TrainOptions::default()
    };
    let dir = common::temp_dir("log-resume");
    img::train_with(&cfg, Arc::clone(&data), &dir, &dev, opts(false)).unwrap();
    let first = log_of(&dir);
    assert_eq!(
        first.iter().map(|r| r.step).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // A kill after step 5 was logged but before its checkpoint was committed: the newest
    // checkpoint is step 4's, and the log runs ahead of it.
    let ck = diffuse::checkpoint::run::step_dir(&dir, 5);
    std::fs::remove_dir_all(&ck).unwrap();
    cfg.steps = 8;
    img::train_with(&cfg, Arc::clone(&data), &dir, &dev, opts(true)).unwrap();
    let log = log_of(&dir);
    assert_eq!(
        log.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    // Steps up to the checkpoint are kept as they were; step 5 was redone from the same state.
    assert_eq!(log[..4], first[..4]);
    assert!(
        (log[4].loss - first[4].loss).abs() < 1e-5 * first[4].loss,
        "{} vs {}",
        log[4].loss,
        first[4].loss
    );
    for r in &log {
        assert!(r.loss.is_finite() && r.lr > 0.0 && r.sec_per_step > 0.0 && r.images_per_sec > 0.0);
        assert!(r.grad_norm.is_some_and(|g| g > 0.0));
    }
    // A fresh run in the folder starts a new log; a log cut short inside a line is read up to it.
    let mut text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.push_str("{\"step\": 9, \"lo");
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    assert_eq!(
        MetricsLog::open(&dir, Some(100)).unwrap().records().len(),
        8
    );
    assert_eq!(MetricsLog::open(&dir, None).unwrap().records().len(), 0);
}

#[test]
fn piped_stderr_gets_progress_lines_and_the_loss_curve_is_drawn() {
    let dir = TempDir::new("lines");
    let out = dir.0.join("run");
    let (code, _, err) = diffuse(&[
        "image",
        "train",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--log-every",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    for s in [2, 4, 6] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("step {s}/6 loss ")))
            .unwrap_or_else(|| panic!("no progress line for step {s} in:\n{err}"));
        assert!(line.contains("it/s") && line.contains("ETA"), "{line}");
    }
    assert!(out.join("loss.png").is_file());
    assert_eq!(log_of(&out).len(), 3);
}

#[test]
fn digits_fid_during_training_is_logged_and_the_best_checkpoint_kept() {
    let dir = TempDir::new("fid-digits");
    let out = dir.0.join("run");
    let o = out.to_str().unwrap();
    ok(&[
        "image",
        "train",
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--fid-every",
        "2",
        "--fid-n",
        "20",
        "--fid-steps",
        "3",
        "--keep-best",
        "fid",
        "--out",
        o,
        "-q",
        "--threads",
        "1",
    ]);
    let log = log_of(&out);
    let evals: Vec<(usize, f64)> = log
        .iter()
        .filter_map(|r| r.eval.get("digit_fd").map(|&v| (r.step, v)))
        .collect();
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 4]);
    assert!(
        evals.iter().all(|e| e.1.is_finite() && e.1 > 0.0),
        "{evals:?}"
    );
    // RUN/best holds the better of the two, and samples like any run.
    let best = evals.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
    let listed = diffuse::checkpoint::run::list(&out.join("best")).unwrap();
    assert_eq!(listed.iter().map(|e| e.0).collect::<Vec<_>>(), [best]);
    let s = dir.0.join("s");
    ok(&[
        "image",
        "sample",
        "--ckpt",
        out.join("best").to_str().unwrap(),
        "-n",
        "2",
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--out",
        s.to_str().unwrap(),
        "-q",
    ]);
    // Flags that need an evaluation are refused without one.
    fails_with(
        &[
            "image",
            "train",
            "--keep-best",
            "fid",
            "--out",
            o,
            "--dry-run",
        ],
        "--fid-every",
    );
    fails_with(
        &[
            "image",
            "train",
            "--fid-every",
            "2",
            "--fid-ref",
            o,
            "--out",
            o,
        ],
        "reference",
    );
}

#[test]
fn folder_fid_during_training_caches_the_reference_statistics() {
    let dir = TempDir::new("fid-folder");
    let data = dir.0.join("data");
    common::two_class_folder(&data);
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inception_ref_tiny.ckpt");
    let out = dir.0.join("run");
    ok(&[
        "image",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--preset",
        "digits",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--log-every",
        "2",
        "--fid-every",
        "2",
        "--fid-n",
        "4",
        "--fid-steps",
        "2",
        "--fid-ref",
        data.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--threads",
        "1",
    ]);
    let fids: Vec<f64> = log_of(&out)
        .iter()
        .filter_map(|r| r.eval.get("fid").copied())
        .collect();
    assert_eq!(fids.len(), 2, "{fids:?}");
    assert!(fids.iter().all(|f| f.is_finite() && *f >= 0.0), "{fids:?}");
    // The reference statistics were cached once and are what `diffuse fid` computes for it.
    let cache = out.join(diffuse::image::train_eval::FID_REF_CACHE);
    assert!(cache.is_file());
    let samples = out.join(diffuse::image::train_eval::FID_SAMPLES);
    let line = ok(&[
        "fid",
        cache.to_str().unwrap(),
        samples.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
    ]);
    let last: f64 = line
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("fid: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fid line in {line}"));
    assert!(
        (last - fids[1]).abs() <= 1e-9 * fids[1].abs().max(1.0),
        "{last} vs {}",
        fids[1]
    );
}

#[test]
fn a_config_file_runs_the_same_bytes_as_flags_and_unknown_keys_are_refused() {
    let dir = TempDir::new("config");
    let flags = [
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "5",
        "--lr",
        "5e-4",
        "--xflip",
        "--checkpoint-every",
        "2",
        "--threads",
        "1",
        "-q",
    ];
    let a = dir.0.join("a");
    let b = dir.0.join("b");
    let resolved = ok(&[&["image", "train", "--dry-run"], &flags[..]].concat());
    let file = dir.0.join("run.json");
    std::fs::write(&file, &resolved).unwrap();
    ok(&[
        &["image", "train", "--out", a.to_str().unwrap()],
        &flags[..],
    ]
    .concat());
    ok(&[
        "image",
        "train",
        "--config",
        file.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--threads",
        "1",
        "-q",
    ]);
    for step in [2, 3] {
        let (da, db) = (
            diffuse::checkpoint::run::step_dir(&a, step),
            diffuse::checkpoint::run::step_dir(&b, step),
        );
        assert_eq!(
            common::folder_files(&da),
            common::folder_files(&db),
            "step {step}"
        );
    }
    assert_eq!(
        std::fs::read(a.join("config.json")).unwrap(),
        std::fs::read(b.join("config.json")).unwrap()
    );
    // The same from TOML, partial, with a flag overriding it.
    let toml = dir.0.join("run.toml");
    std::fs::write(
        &toml,
        "log_every = 3\n[train]\nsteps = 2\nbatch_size = 4\n[train.unet]\nchannels = 64\n",
    )
    .unwrap();
    let shown = ok(&[
        "image",
        "train",
        "--config",
        toml.to_str().unwrap(),
        "--steps",
        "7",
        "--dry-run",
    ]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["train"]["steps"], 7);
    assert_eq!(v["train"]["batch_size"], 4);
    assert_eq!(v["train"]["unet"]["channels"], 64);
    assert_eq!(v["log_every"], 3);
    // Unknown keys (nested or top level) and bad values name the key and the file.
    std::fs::write(&toml, "[train.unet]\nchanels = 8\n").unwrap();
    fails_with(
        &[
            "image",
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--dry-run",
        ],
        "unknown key `train.unet.chanels`",
    );
    std::fs::write(&toml, "stepz = 8\n").unwrap();
    fails_with(
        &[
            "image",
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--dry-run",
        ],
        "run.toml: unknown key `stepz`",
    );
    std::fs::write(&toml, "[train]\nsteps = \"many\"\n").unwrap();
    fails_with(
        &[
            "image",
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--dry-run",
        ],
        "train.steps",
    );
    // What the data decide cannot be contradicted by the file.
    std::fs::write(&toml, "[train.unet]\nnum_classes = 3\n").unwrap();
    fails_with(
        &[
            "image",
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--dry-run",
        ],
        "num_classes",
    );
}

#[test]
fn an_image_study_trains_judges_and_summarises_each_recipe_and_seed() {
    let dir = TempDir::new("image-study");
    let short = dir.0.join("short.toml");
    std::fs::write(&short, "[train]\nsteps = 2\nbatch_size = 8\n").unwrap();
    let longer = dir.0.join("longer.toml");
    std::fs::write(&longer, "[train]\nsteps = 4\nbatch_size = 8\n").unwrap();
    let out = dir.0.join("study");
    let recipes = format!("{},{}", short.display(), longer.display());
    ok(&[
        "image",
        "study",
        "--recipes",
        &recipes,
        "--seeds",
        "3-4",
        "-n",
        "12",
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--threads",
        "1",
    ]);
    let study = std::fs::read_to_string(out.join("study.csv")).unwrap();
    let rows: Vec<&str> = study.lines().collect();
    assert!(
        rows[0].starts_with("recipe,seed,train_cpu_seconds,"),
        "{}",
        rows[0]
    );
    // Seed 3 trains short then longer, seed 4 the other way round.
    let order: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| {
            let mut f = r.split(',');
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(
        order,
        [
            ("short", "3"),
            ("longer", "3"),
            ("longer", "4"),
            ("short", "4")
        ]
    );
    for r in &rows[1..] {
        let v: Vec<f64> = r.split(',').skip(2).map(|x| x.parse().unwrap()).collect();
        assert!(
            v[0] > 0.0 && (0.0..=1.0).contains(&v[3]) && v[4] > 0.0 && v[7] > 0.0,
            "{r}"
        );
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.contains("short,frechet_w0,"), "{summary}");
    assert!(
        summary.contains("longer,train_cpu_ratio_vs_short,"),
        "{summary}"
    );
    assert!(out.join("longer-seed4/checkpoints").is_dir());
    fails_with(
        &[
            "image",
            "study",
            "--recipes",
            "nonsense",
            "--out",
            out.to_str().unwrap(),
        ],
        "nonsense",
    );
}
