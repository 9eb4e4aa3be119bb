//! `image sample` (the sample folder holds only samples; guidance methods and their flags),
//! `image cfg-sweep` and `image judge` on a tiny digits run, through the binary.
mod common;

use common::{diffuse, fails_with, ok};

use std::sync::Arc;

use burn::prelude::*;
use diffuse::data::digits::load_digits;
use diffuse::image as img;

/// A 2-step digits run with a tiny UNet.
fn tiny_run(dir: &std::path::Path) {
    let c = common::tiny_image_config(2);
    let data = Arc::new(load_digits(8).unwrap());
    img::train(&c, data, dir, false, &Device::flex().autodiff(), false).unwrap();
}

#[test]
fn sample_folder_sweep_and_judge() {
    let tmp = common::TempDir::new("cli-guidance");
    let run = tmp.0.join("run");
    tiny_run(&run);
    let r = run.to_str().unwrap();
    let samples = tmp.0.join("s");
    let s = samples.to_str().unwrap();
    // `image sample` on the run with extra flags.
    let with = |extra: &[&str]| -> Vec<String> {
        let base = [
            "image",
            "sample",
            "--ckpt",
            r,
            "-n",
            "6",
            "--sampler",
            "ddim",
            "--steps",
            "2",
        ];
        base.iter()
            .chain(extra)
            .chain(&["-q", "--out", s])
            .map(|v| v.to_string())
            .collect()
    };
    let run_ok = |extra: &[&str]| {
        let v = with(extra);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let run_fails = |extra: &[&str], needle: &str| {
        let v = with(extra);
        fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    };
    run_ok(&["--guidance", "apg", "--cfg-scale", "2"]);
    // Only the samples and their labels in the folder; the grid beside it.
    let mut names: Vec<String> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0.png",
            "1.png",
            "2.png",
            "3.png",
            "4.png",
            "5.png",
            "labels.csv"
        ]
    );
    assert!(tmp.0.join("s.grid.png").is_file());

    // Autoguidance needs its guide, and only it takes one.
    run_fails(&["--guidance", "auto", "--cfg-scale", "2"], "--guide-ckpt");
    run_fails(
        &["--guidance", "cfg", "--cfg-scale", "2", "--guide-ckpt", r],
        "--guide-ckpt",
    );
    run_ok(&["--guidance", "auto", "--cfg-scale", "2", "--guide-ckpt", r]);
    run_fails(
        &["--guidance", "rescale", "--rescale-phi", "2"],
        "--rescale-phi",
    );
    // Selective guidance: ⌈share · n⌉ images sampled again, said on stdout; its flags are
    // checked by name, and the first pass's flags need it.
    let v = with(&[
        "--guidance",
        "apg",
        "--cfg-scale",
        "2",
        "--guide-share",
        "0.3",
    ]);
    let out = ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("(2 the model was least sure of"), "{out}");
    for (flags, needle) in [
        (&["--guide-share", "1.5"][..], "--guide-share"),
        (
            &["--guide-share", "0.3", "--base-scale", "-1"][..],
            "--base-scale",
        ),
        (
            &["--guide-share", "0.3", "--base-apg-norm", "nan"][..],
            "--base-apg-norm",
        ),
        (&["--base-scale", "0.5"][..], "--guide-share"),
    ] {
        run_fails(flags, needle);
    }

    // The judge prints accuracy and the Fréchet distance with its floor.
    let out = ok(&["image", "judge", s]);
    assert!(
        out.contains("accuracy: ") && out.contains("frechet: "),
        "{out}"
    );
    // --per-image: labels.csv's rows in order, the classifier's digit for each, and a
    // recognised column that is the printed accuracy.
    let per = tmp.0.join("per-image.csv");
    let p = per.to_str().unwrap();
    let out2 = ok(&["image", "judge", s, "--per-image", p]);
    assert!(out2.starts_with(&out) && out2.contains(p), "{out2}");
    let rows: Vec<Vec<String>> = csv::Reader::from_path(&per)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let labels: Vec<Vec<String>> = csv::Reader::from_path(samples.join("labels.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), labels.len());
    let mut hits = 0;
    for (r, l) in rows.iter().zip(&labels) {
        assert_eq!(r[..2], l[..]);
        let predicted: usize = r[2].parse().unwrap();
        assert!(predicted <= 9, "{r:?}");
        assert_eq!(r[3], if r[1] == r[2] { "1" } else { "0" }, "{r:?}");
        hits += (r[3] == "1") as usize;
    }
    let shown = format!("accuracy: {:.1}%", 100.0 * hits as f64 / rows.len() as f64);
    assert!(out.contains(&shown), "{shown} in {out}");
    // A folder where the CSV should go: refused before judging, naming the flag and leaving
    // nothing beside it.
    fails_with(&["image", "judge", s, "--per-image", s], "--per-image");
    let stray = std::fs::read_dir(&tmp.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(stray, 0);

    // A 2 × 2 sweep: one CSV row per point (w = 0 shared), the plot.
    let sweep = tmp.0.join("sweep");
    let out = ok(&[
        "image",
        "cfg-sweep",
        "--ckpt",
        r,
        "--guidance",
        "cfg,auto",
        "--guide-ckpt",
        r,
        "--scales",
        "0,2",
        "-n",
        "8",
        "--steps",
        "2",
        "-q",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert!(out.contains("floor"), "{out}");
    let csv = std::fs::read_to_string(sweep.join("cfg-sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "method,w,accuracy,frechet,seconds");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[1].starts_with("cfg,0,") && lines[4].starts_with("auto,2,"),
        "{csv}"
    );
    // w = 0 is the same plain conditional model for every method.
    let tail = |l: &str| {
        l.splitn(3, ',')
            .nth(2)
            .unwrap()
            .rsplit_once(',')
            .unwrap()
            .0
            .to_string()
    };
    assert_eq!(tail(lines[1]), tail(lines[3]));
    assert!(sweep.join("cfg-sweep.png").is_file());
    fails_with(
        &[
            "image",
            "cfg-sweep",
            "--ckpt",
            r,
            "--fid-gt",
            s,
            "--out",
            sweep.to_str().unwrap(),
        ],
        "--weights",
    );
}

#[test]
fn fid_says_what_it_reads() {
    // Two PNGs in one folder and a JPEG in a subfolder: the summary counts both extensions and
    // folders before the (here missing) weights stop the run.
    let tmp = common::TempDir::new("cli-fid-inputs");
    let gen = tmp.0.join("gen");
    std::fs::create_dir_all(gen.join("sub")).unwrap();
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]));
    img.save(gen.join("0.png")).unwrap();
    img.save(gen.join("1.png")).unwrap();
    img.save(gen.join("sub/2.jpg")).unwrap();
    std::fs::write(gen.join("labels.csv"), "file,class\n").unwrap();
    let g = gen.to_str().unwrap();
    let missing = tmp.0.join("nope.ckpt");
    let (code, _, err) = diffuse(&["fid", g, g, "--weights", missing.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("3 files (1 .jpg, 2 .png) in 2 folders"),
        "{err}"
    );
    assert!(
        err.contains("nope.ckpt") && !err.contains("panicked"),
        "{err}"
    );
}
