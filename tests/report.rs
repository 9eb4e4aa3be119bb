//! `RUN/report.html` from synthetic run folders: every image is inlined byte for byte, values
//! from the run's JSON cannot inject markup, a missing file omits its section, an unreadable
//! one becomes a note instead of a broken image, and a folder that is not a run is an error
//! naming it. (`tests/report_browser.rs` renders reports of real runs in a browser.)
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::TempDir;
use diffuse::report;

fn png(path: &Path, w: u32, h: u32, shade: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([shade, (x * 9) as u8, (y * 7) as u8])
    })
    .save(path)
    .unwrap();
}

/// The `src` of every `<img>`, in page order.
fn image_sources(html: &str) -> Vec<String> {
    html.split("<img ")
        .skip(1)
        .map(|tag| {
            let start = tag.find("src=\"").expect("img without src") + 5;
            let len = tag[start..].find('"').unwrap();
            tag[start..start + len].to_string()
        })
        .collect()
}

/// Base64 decoding written independently of the encoder under test.
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| val(c))
            .collect();
        let mut n = 0u32;
        for (i, v) in data.iter().enumerate() {
            n |= (*v as u32) << (18 - 6 * i);
        }
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

const HOSTILE: &str = "<script>alert(1)</script>\"'&";

/// What `toy run` leaves, with a config value that tries to inject markup.
fn toy_run(dir: &Path) {
    let metrics = serde_json::json!({
        "cd_ddpm": 154.30594962066945,
        "cd_ddim": 150.180562131788,
        "samplers": {"ddpm": "ddpm-1000", "ddim": "ddim-50, leading spacing"},
        "config": {"dataset": HOSTILE, "steps": 300, "net": {"dims": [2, 128, 2]}},
        "final_loss": 0.38,
        "sample_seconds": {"ddim": 0.02, "ddpm": 0.37},
        "train_seconds": 0.8,
        "total_seconds": 1.46,
        "train_path": "fused CPU step",
    });
    fs::write(dir.join("metrics.json"), metrics.to_string()).unwrap();
    for (i, name) in [
        "samples_ddpm.png",
        "samples_ddim.png",
        "q_xt.png",
        "loss.png",
    ]
    .iter()
    .enumerate()
    {
        png(&dir.join(name), 20 + i as u32, 10, i as u8 * 40);
    }
}

#[test]
fn toy_report_inlines_every_image_and_escapes_values() {
    let dir = TempDir::new("report-toy");
    toy_run(&dir.0);
    let path = report::write(&dir.0).unwrap();
    assert_eq!(path, dir.0.join("report.html"));
    let html = fs::read_to_string(&path).unwrap();

    let sources = image_sources(&html);
    assert_eq!(sources.len(), 4, "four figures");
    let files: Vec<Vec<u8>> = [
        "samples_ddpm.png",
        "samples_ddim.png",
        "q_xt.png",
        "loss.png",
    ]
    .iter()
    .map(|n| fs::read(dir.0.join(n)).unwrap())
    .collect();
    for (src, want) in sources.iter().zip(&files) {
        let b64 = src
            .strip_prefix("data:image/png;base64,")
            .unwrap_or_else(|| panic!("not an inline PNG: {}", &src[..40.min(src.len())]));
        assert_eq!(&unbase64(b64), want, "inlined bytes differ from the file");
    }
    // Self-contained: nothing fetched, nothing run.
    let lower = html.to_lowercase();
    for banned in ["<script", "http://", "https://", "<link", "@import", "url("] {
        assert!(!lower.contains(banned), "the page contains {banned:?}");
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "the config value is shown, escaped"
    );
    for text in [
        "154.31",
        "150.18",
        "ddim-50, leading spacing",
        "net.dims",
        "[2,128,2]",
    ] {
        assert!(html.contains(text), "no {text:?} in the report");
    }
    for id in ["results", "training", "timings", "config", "machine"] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "no {id}");
    }
    assert!(!html.contains("id=\"notes\""), "nothing to note");
}

#[test]
fn missing_files_omit_their_sections() {
    let dir = TempDir::new("report-missing");
    toy_run(&dir.0);
    fs::remove_file(dir.0.join("q_xt.png")).unwrap();
    fs::remove_file(dir.0.join("loss.png")).unwrap();
    let html = report::render(&dir.0).unwrap();
    assert_eq!(image_sources(&html).len(), 2);
    assert!(!html.contains("q(x_t)"));
    assert!(
        !html.contains("<section id=\"training\">"),
        "no loss, no log"
    );
    assert!(html.contains("154.31"));

    // Only a config: the report still renders, with what there is.
    let bare = TempDir::new("report-bare");
    fs::write(bare.0.join("config.json"), r#"{"train": {"steps": 7}}"#).unwrap();
    let html = report::render(&bare.0).unwrap();
    assert!(image_sources(&html).is_empty());
    assert!(html.contains("train.steps") && html.contains("image training run"));
    assert!(!html.contains("<section id=\"results\">"));
}

#[test]
fn unreadable_files_become_notes_not_broken_images() {
    let dir = TempDir::new("report-bad");
    toy_run(&dir.0);
    let good = fs::read(dir.0.join("samples_ddpm.png")).unwrap();
    fs::write(dir.0.join("samples_ddpm.png"), &good[..good.len() / 2]).unwrap();
    fs::write(dir.0.join("loss.png"), b"GIF89a not a png").unwrap();
    fs::write(dir.0.join("metrics.json"), b"{\"cd_ddpm\": 1.0,").unwrap();
    fs::write(
        dir.0.join("metrics.jsonl"),
        "{\"step\": 2, \"loss\": 0.5}\nnot json\n",
    )
    .unwrap();
    let html = report::render(&dir.0).unwrap();
    // samples_ddim.png and q_xt.png only.
    assert_eq!(image_sources(&html).len(), 2);
    let notes = &html[html
        .find("<section id=\"notes\">")
        .expect("a notes section")..];
    for name in [
        "samples_ddpm.png is left out: not a readable PNG",
        "loss.png is left out",
        "metrics.json is not valid JSON",
        "metrics.jsonl: 1 line(s)",
    ] {
        assert!(notes.contains(name), "no note {name:?} in {notes}");
    }
}

#[test]
fn digits_report_has_metrics_per_scale_grids_previews_and_sweep() {
    let dir = TempDir::new("report-digits");
    let d = &dir.0;
    let metrics = serde_json::json!({
        "accuracy_guided": 0.92, "accuracy_w0": 0.69,
        "classifier_holdout_accuracy": 0.972,
        "frechet_floor": {"at_n": 22.22, "halves": 3.37, "n": 100},
        "frechet_guided": 58.359, "frechet_w0": 74.93,
        "guidance": "apg",
        // Class 2 was never asked for: its accuracy is NaN, null in JSON.
        "per_class_guided": {"0": 1.0, "1": 0.5, "2": null},
        "per_class_w0": {"0": 0.25, "1": 0.75, "2": null},
        "sample_seconds_guided": 1.8, "sample_seconds_w0": 0.9,
        "sampler": "ddim-10", "total_seconds": 55.2, "train_seconds": 50.1,
        "w_guided": 7.5, "w_w0": 0.0
    });
    fs::write(d.join("metrics.json"), metrics.to_string()).unwrap();
    fs::write(
        d.join("config.json"),
        r#"{"train": {"steps": 200, "unet": {"channel_mult": [1, 2]}}}"#,
    )
    .unwrap();
    let mut log = String::new();
    for (step, fd) in [(100, 80.0), (200, 60.5), (300, 70.0)] {
        log.push_str(&format!(
            "{{\"step\":{step},\"loss\":0.1,\"lr\":0.001,\"sec_per_step\":0.25,\"images_per_sec\":256,\"digit_fd\":{fd},\"fid_seconds\":1.5}}\n"
        ));
    }
    fs::write(d.join("metrics.jsonl"), log).unwrap();
    png(&d.join("grid_guided.png"), 30, 30, 200);
    png(&d.join("grid_w0.png"), 30, 30, 10);
    png(&d.join("loss.png"), 40, 20, 0);
    for s in [100, 200, 300] {
        png(&d.join(format!("preview/step-{s:06}.png")), 16, 16, 90);
    }
    fs::create_dir_all(d.join("cfg-sweep")).unwrap();
    fs::write(
        d.join("cfg-sweep/cfg-sweep.json"),
        r#"{"sampler": "ddim-50", "n": 200, "seed": 0, "frechet_floor": {"n": 200, "at_n": 9.0, "halves": 3.0},
            "points": [{"method": "cfg", "w": 0.0, "accuracy": 0.7, "distance": 70.25, "seconds": 3.0},
                       {"method": "apg", "w": 7.5, "accuracy": 0.95, "distance": 41.5, "seconds": 3.1}]}"#,
    )
    .unwrap();
    png(&d.join("cfg-sweep/cfg-sweep.png"), 50, 40, 120);

    let html = report::render(d).unwrap();
    assert!(html.contains("digits run"));
    for id in [
        "results",
        "grids",
        "eval",
        "cfg-sweep",
        "training",
        "timings",
        "config",
        "machine",
    ] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "no {id}");
    }
    for text in [
        "<td>cfg w = 0</td><td>69.0%</td><td>74.93</td>",
        "<td>apg w = 7.5</td><td>92.0%</td><td>58.359</td>",
        "Best digit_fd: 60.5 at step 200",
        "<td>apg</td><td>7.5</td><td>95.0%</td><td>41.5</td>",
        "step 300",
        "<td>1</td><td>75.0%</td><td>50.0%</td>",
        "<td>2</td><td>—</td><td>—</td>",
        "train.unet.channel_mult",
    ] {
        assert!(html.contains(text), "no {text:?} in the report");
    }
    // Grids at w = 0 first; 2 grids + loss + 3 previews + the sweep's plot.
    assert!(html.find("cfg w = 0 (a row per class)") < html.find("apg w = 7.5 (a row per class)"));
    assert_eq!(image_sources(&html).len(), 7);
}

#[test]
fn a_folder_that_is_not_a_run_is_an_error_naming_it() {
    let empty = TempDir::new("report-empty");
    let err = report::write(&empty.0).unwrap_err().to_string();
    assert!(
        err.contains(&empty.0.display().to_string()) && err.contains("not a run folder"),
        "{err}"
    );
    assert!(!empty.0.join("report.html").exists());
    let missing = empty.0.join("nope");
    let err = report::write(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    let file = empty.0.join("metrics.json.txt");
    fs::write(&file, "{}").unwrap();
    let err = report::write(&file).unwrap_err().to_string();
    assert!(err.contains("is a file"), "{err}");

    // The command: a clear message and a failing exit status, no panic.
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["report".as_ref(), empty.0.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not a run folder") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn the_machine_is_the_one_the_run_recorded() {
    let dir = TempDir::new("report-machine");
    toy_run(&dir.0);
    let html = report::render(&dir.0).unwrap();
    assert!(html.contains("the machine that wrote this report"));
    let path = report::write_after_run(&dir.0, "toy run").unwrap();
    assert!(dir.0.join("machine.json").exists());
    let html = fs::read_to_string(path).unwrap();
    assert!(html.contains("recorded by diffuse toy run"), "{html}");
    for label in ["<td>os</td>", "<td>cpu</td>", "<td>threads</td>"] {
        assert!(html.contains(label), "no {label}");
    }

    // The command rebuilds it and prints the path.
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["report".as_ref(), dir.0.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.0.join("report.html").display().to_string()
    );
    let again = fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert!(again.contains("recorded by diffuse toy run"));
}
