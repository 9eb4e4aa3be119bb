//! The `diffuse` binary: bad input gives a clear error and a non-zero exit, never a panic.
mod common;

use common::{diffuse, fails_with};

#[test]
fn bad_toy_arguments_are_rejected() {
    let dir = common::temp_dir("cli");
    let out = dir.join("o");
    let o = out.to_str().unwrap();
    fails_with(&["toy", "run", "--dataset", "spiral", "--out", o], "spiral");
    fails_with(&["toy", "run", "--steps", "0", "--out", o], "--steps");
    fails_with(
        &[
            "toy",
            "run",
            "--steps",
            "1",
            "--ddim-steps",
            "1001",
            "--out",
            o,
        ],
        "--ddim-steps",
    );
    fails_with(
        &[
            "toy",
            "run",
            "--steps",
            "1",
            "--ddim-steps",
            "0",
            "--out",
            o,
        ],
        "--ddim-steps",
    );
    fails_with(
        &[
            "toy",
            "sample",
            "--ckpt",
            "/nonexistent/m.safetensors",
            "--out",
            o,
        ],
        "/nonexistent/m.safetensors",
    );
    fails_with(&["toy", "run", "--lr", "-1", "--out", o], "--lr");
}

#[test]
fn sampler_flags_and_checkpoints_are_checked() {
    let dir = common::temp_dir("cli-ckpt");
    let ckpt = dir.join("m.safetensors");
    let c = ckpt.to_str().unwrap();
    let (code, _, err) = diffuse(&[
        "toy",
        "train",
        "--steps",
        "3",
        "--num-points",
        "1000",
        "-q",
        "--out",
        c,
    ]);
    assert_eq!(code, 0, "{err}");
    let csv = dir.join("s.csv");
    let s = csv.to_str().unwrap();
    fails_with(
        &["toy", "sample", "--ckpt", c, "--eta", "-0.5", "--out", s],
        "--eta",
    );
    fails_with(
        &["toy", "sample", "--ckpt", c, "--steps", "2000", "--out", s],
        "--steps",
    );
    fails_with(&["toy", "sample", "--ckpt", c, "-n", "0", "--out", s], "-n");
    // Unwritable output folder: a path below a regular file.
    let blocked = dir.join("m.json").join("x.csv");
    fails_with(
        &[
            "toy",
            "sample",
            "--ckpt",
            c,
            "--out",
            blocked.to_str().unwrap(),
        ],
        "m.json",
    );
    // A corrupt checkpoint.
    std::fs::write(&ckpt, b"garbage").unwrap();
    fails_with(&["toy", "sample", "--ckpt", c, "--out", s], "m.safetensors");
}

#[test]
fn sample_and_eval_round_trip() {
    let dir = common::temp_dir("cli-eval");
    let ckpt = dir.join("m.safetensors");
    let c = ckpt.to_str().unwrap();
    assert_eq!(
        diffuse(&[
            "toy",
            "train",
            "--steps",
            "3",
            "--num-points",
            "1000",
            "-q",
            "--out",
            c
        ])
        .0,
        0
    );
    let csv = dir.join("s.csv");
    let s = csv.to_str().unwrap();
    let (code, _, err) = diffuse(&[
        "toy", "sample", "--ckpt", c, "--steps", "5", "-n", "100", "-q", "--out", s,
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("x,y\n"));
    assert_eq!(text.lines().count(), 101);
    let (code, out, err) = diffuse(&["toy", "eval", s, "--ckpt", c, "-n", "100"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("chamfer: "), "{out}");
}

/// `--device cuda` where it cannot run: a default build names the missing feature; a
/// `--features cuda` build on a machine without the NVIDIA driver or NVRTC names what to
/// install. Either way an error about `--device`, not a panic. A bad `--precision` is refused.
#[test]
fn unavailable_gpu_and_bad_precision_are_clear_errors() {
    let dir = common::temp_dir("cli-gpu");
    let o = dir.join("o");
    let o = o.to_str().unwrap();
    let args = [
        "image", "train", "--data", "digits", "--steps", "1", "--device", "cuda", "--out", o,
    ];
    let (code, _, err) = diffuse(&args);
    if cfg!(feature = "cuda") && code == 0 {
        return; // a machine with a working GPU
    }
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("--device") && err.contains("cuda"), "{err}");
    // A device name that is not one, and an adapter that is not there: errors that say what
    // would be accepted, or what the machine has.
    fails_with(
        &["toy", "train", "--device", "gpu", "--out", o],
        "wgpu[:ADAPTER]",
    );
    let (code, _, err) = diffuse(&[
        "toy",
        "train",
        "--steps",
        "1",
        "--device",
        "vulkan:discrete:9",
        "--out",
        o,
    ]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("--device") && err.contains("vulkan"), "{err}");
    fails_with(
        &[
            "image",
            "train",
            "--data",
            "digits",
            "--precision",
            "f16",
            "--out",
            o,
        ],
        "--precision",
    );
}

/// `diffuse fid` with statistics files: a broken or mismatched `.npz` is an error naming the
/// file and the problem, before any network is loaded (so `--weights` need not exist).
#[test]
fn fid_statistics_file_errors_name_the_file() {
    let g = |n: &str| format!("{}/tests/golden/fid_npz/{n}", env!("CARGO_MANIFEST_DIR"));
    let (missing, edm, pf) = (
        g("bad_missing_sigma.npz"),
        g("edm.npz"),
        g("pytorch_fid.npz"),
    );
    fails_with(
        &["fid", &missing, &edm, "--weights", "none.pth"],
        "bad_missing_sigma.npz: not a usable FID statistics .npz: no array `sigma`",
    );
    // Valid files, but 5-d: FID compares 2048-d Inception features.
    fails_with(
        &["fid", &pf, &edm, "--weights", "none.pth"],
        "pytorch_fid.npz: holds 5-dimensional statistics",
    );
}

/// `diffuse completions` and `diffuse man` through the binary (their content is tested in
/// src/cli/completions.rs): output on stdout, exit 0, a bad shell named.
#[test]
fn completions_and_man_page_print() {
    for shell in ["bash", "zsh", "fish"] {
        let out = common::ok(&["completions", shell]);
        assert!(
            out.contains("diffuse") && out.contains("prepare-eval"),
            "{shell}"
        );
    }
    assert!(common::ok(&["man"]).contains(".TH diffuse 1"));
    fails_with(&["completions", "tcsh"], "tcsh");
}
