//! FID math against scipy/numpy goldens, torch-style resize, and the folder pipeline's errors.
use std::path::{Path, PathBuf};

use diffuse::metrics::fid::{frechet_distance, kid, load_stats, save_stats, FeatureStats};
use diffuse::metrics::fid_pipeline::{fid_between, resize_bilinear_torch, FidMode, FidOptions};
use diffuse_testkit::det_values as det;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Same as `feature_set` in bench/torch/fid_torch.py.
fn feature_set(n: usize, d: usize, seed: u64, shift: f64) -> Vec<f64> {
    let raw = det(n * d, seed, 2.0);
    let mut x: Vec<f64> = raw.iter().map(|&v| v as f64).collect();
    for r in 0..n {
        for j in 0..d {
            x[r * d + j] += shift * j as f64 / d as f64;
        }
        for j in (1..d).step_by(2) {
            x[r * d + j] += 0.5 * x[r * d + j - 1];
        }
    }
    x
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn frechet_matches_scipy_full_rank_and_rank_deficient() {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("fid_expected.json")).unwrap())
            .unwrap();
    for name in ["full_rank", "rank_deficient"] {
        let c = &g[name];
        let (n1, n2, d) = (
            c["n1"].as_u64().unwrap() as usize,
            c["n2"].as_u64().unwrap() as usize,
            c["d"].as_u64().unwrap() as usize,
        );
        let a = FeatureStats::from_features(&feature_set(n1, d, 21, 0.0), d).unwrap();
        let b = FeatureStats::from_features(&feature_set(n2, d, 22, 0.7), d).unwrap();
        assert!(
            rel(a.mu[0], c["mu1_0"].as_f64().unwrap()) < 1e-12,
            "{name} mu"
        );
        assert!(
            rel(a.sigma[(0, 1)], c["s1_01"].as_f64().unwrap()) < 1e-10,
            "{name} sigma"
        );
        let fid = frechet_distance(&a, &b).unwrap();
        let scipy = c["scipy"].as_f64().unwrap();
        let eig = c["eig"].as_f64().unwrap();
        assert!(rel(fid, scipy) < 1e-6, "{name}: ours {fid} scipy {scipy}");
        assert!(rel(fid, eig) < 1e-7, "{name}: ours {fid} numpy-eig {eig}");
        // Without the low-rank factors (as from statistics files): the d-dimensional route.
        let (a0, b0) = (
            FeatureStats {
                factor: None,
                ..a.clone()
            },
            FeatureStats {
                factor: None,
                ..b.clone()
            },
        );
        let fid0 = frechet_distance(&a0, &b0).unwrap();
        assert!(
            rel(fid0, scipy) < 1e-6,
            "{name}: d-dim route {fid0} scipy {scipy}"
        );
    }
}

#[test]
fn identical_sets_give_zero() {
    for (n, d) in [(100, 8), (20, 64)] {
        let f = feature_set(n, d, 5, 0.3);
        let s = FeatureStats::from_features(&f, d).unwrap();
        let fid = frechet_distance(&s, &s).unwrap();
        assert!(
            fid >= 0.0 && fid < 1e-9 * s.sigma.trace(),
            "n={n} d={d}: {fid}"
        );
    }
}

#[test]
fn kid_separates_different_sets() {
    let a: Vec<f32> = feature_set(60, 16, 1, 0.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let b: Vec<f32> = feature_set(60, 16, 2, 3.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let k = kid(&a, &b, 16, 20, 30, 0).unwrap();
    let same = kid(&a, &a, 16, 20, 30, 0).unwrap();
    assert!(
        k.mean > 0.1 && same.mean.abs() < k.mean / 10.0,
        "{k:?} vs itself {same:?}"
    );
}

#[test]
fn stats_file_roundtrip() {
    let s = FeatureStats::from_features(&feature_set(30, 12, 3, 0.1), 12).unwrap();
    let p = std::env::temp_dir().join(format!("diffuse_stats_{}.bin", std::process::id()));
    save_stats(
        &p,
        &s,
        &serde_json::json!({"mode": "reference", "image_size": 256}),
    )
    .unwrap();
    let (back, meta) = load_stats(&p).unwrap();
    assert_eq!(back, FeatureStats { factor: None, ..s });
    assert_eq!(meta["mode"], "reference");
    std::fs::write(&p, b"nope").unwrap();
    assert!(load_stats(&p)
        .unwrap_err()
        .to_string()
        .contains("diffuse_stats"));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn torch_bilinear_matches_goldens() {
    for ((w, h), (ow, oh)) in [((37, 23), (64, 64)), ((90, 100), (47, 41))] {
        let src: Vec<f32> = det(3 * h * w, 9, 1.0).iter().map(|v| v + 0.5).collect();
        let want: Vec<f32> = std::fs::read(golden(&format!("interp_{w}x{h}_to_{ow}x{oh}.bin")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        for c in 0..3 {
            let got = resize_bilinear_torch(&src[c * h * w..(c + 1) * h * w], w, h, ow, oh);
            let exp = &want[c * ow * oh..(c + 1) * ow * oh];
            let max = got
                .iter()
                .zip(exp)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // torch rounds the f32 source coordinate differently (fma / evaluation order): the
            // weights differ by ~1 ulp of the coordinate, i.e. up to ~5e-6 on [0, 1] data.
            assert!(max < 1e-5, "{w}x{h}->{ow}x{oh} c{c}: {max}");
        }
    }
}

fn write_images(dir: &Path, n: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let v = det(16 * 16 * 3, seed * 100 + i as u64, 255.0);
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let k = ((y * 16 + x) * 3) as usize;
            image::Rgb([
                (v[k] + 127.5) as u8,
                (v[k + 1] + 127.5) as u8,
                (v[k + 2] + 127.5) as u8,
            ])
        });
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
}

#[test]
fn fid_between_folders_and_errors() {
    let root = std::env::temp_dir().join(format!("diffuse_fid_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (a, b) = (root.join("a"), root.join("b"));
    write_images(&a, 4, 1);
    write_images(&b.join("nested"), 3, 2);
    let stats = root.join("a.stats");
    let opts = FidOptions {
        weights: golden("inception_ref_tiny.ckpt"),
        image_size: Some(75),
        batch_size: 3,
        kid: true,
        kid_subsets: 5,
        progress: false,
        save_stats: Some(stats.clone()),
        ..Default::default()
    };
    let r = fid_between(&a, &b, &opts).unwrap();
    // PyTorch's value for the same images, network and resize (bench/torch/fid_torch.py
    // test-folders). 4 and 3 images give rank-deficient covariances, where scipy's sqrtm and
    // the eigen form already differ by 1e-7 relative; ours computes the trace in the features'
    // span.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden("fid_expected.json")).unwrap()).unwrap();
    let want = doc["folders_ref_75"]["scipy_sqrtm"].as_f64().unwrap();
    assert!(rel(r.fid, want) < 1e-4, "FID {} vs PyTorch {want}", r.fid);
    assert_eq!((r.n_gt, r.n_gen), (4, 3));
    assert!(r.kid.is_some());
    // Statistics file instead of the folder: same FID.
    let no_save = FidOptions {
        save_stats: None,
        ..opts.clone()
    };
    let r2 = fid_between(&stats, &b, &no_save).unwrap();
    assert!(rel(r2.fid, r.fid) < 1e-9, "{} vs {}", r2.fid, r.fid);
    let r0 = fid_between(&a, &a, &no_save).unwrap();
    assert!(
        r0.fid < 1e-6 * r.fid.max(1.0),
        "identical folders: {}",
        r0.fid
    );
    // Standard (pytorch-fid) mode end to end: torch-bilinear resize, patched blocks, nested .pth.
    let std_run = FidOptions {
        mode: FidMode::Standard,
        weights: golden("inception_std_tiny.pth"),
        ..no_save.clone()
    };
    let rs = fid_between(&a, &b, &std_run).unwrap();
    assert!(
        rs.fid.is_finite() && rs.fid > 0.0 && rs.kid.is_some(),
        "{rs:?}"
    );
    // Mode mismatch with a statistics file.
    let std_opts = FidOptions {
        mode: FidMode::Standard,
        ..no_save.clone()
    };
    assert!(fid_between(&stats, &b, &std_opts)
        .unwrap_err()
        .to_string()
        .contains("a.stats"));

    // `--save-stats X.npz`: NumPy's format, the same FID from it, and the same mode check.
    let npz = root.join("a.npz");
    fid_between(
        &a,
        &b,
        &FidOptions {
            save_stats: Some(npz.clone()),
            ..no_save.clone()
        },
    )
    .unwrap();
    let r3 = fid_between(&npz, &b, &no_save).unwrap();
    assert!(rel(r3.fid, r.fid) < 1e-9, "{} vs {}", r3.fid, r.fid);
    assert_eq!(r3.n_gt, 4);
    let e = fid_between(&npz, &b, &std_opts).unwrap_err().to_string();
    assert!(e.contains("a.npz") && e.contains("mode"), "{e}");
    // The same arrays as pytorch-fid writes them (only `mu` and `sigma`, no metadata): taken
    // as computed like this run, in either mode; the sample count is unknown (0).
    let (s, _) = load_stats(&npz).unwrap();
    let foreign = root.join("pytorch_fid.npz");
    write_mu_sigma_npz(&foreign, &s);
    let r4 = fid_between(&foreign, &b, &no_save).unwrap();
    assert!(rel(r4.fid, r.fid) < 1e-9, "{} vs {}", r4.fid, r.fid);
    assert_eq!(r4.n_gt, 0);
    let desc = diffuse::metrics::fid_pipeline::describe_input(&foreign).unwrap();
    assert!(
        desc.contains("NumPy .npz") && desc.contains("no mode"),
        "{desc}"
    );
    assert!(fid_between(&foreign, &b, &std_run).is_ok());
    // Statistics of another feature size cannot be compared with Inception features.
    let small = root.join("d5.npz");
    save_stats(
        &small,
        &FeatureStats::from_features(&feature_set(8, 5, 1, 0.0), 5).unwrap(),
        &serde_json::json!({}),
    )
    .unwrap();
    let e = fid_between(&small, &b, &no_save).unwrap_err().to_string();
    assert!(e.contains("d5.npz") && e.contains("5-dimensional"), "{e}");

    // Empty folder, single image, corrupt image, garbage weights.
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = fid_between(&empty, &b, &no_save).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no .png"), "{e}");
    let one = root.join("one");
    write_images(&one, 1, 3);
    let e = fid_between(&a, &one, &no_save).unwrap_err().to_string();
    assert!(e.contains("one") && e.contains("at least 2"), "{e}");
    // An unreadable image is skipped and counted (the FID of the rest is unchanged), or with
    // `strict` is an error naming it.
    std::fs::write(b.join("broken.png"), b"not a png").unwrap();
    let rb = fid_between(&a, &b, &no_save).unwrap();
    assert_eq!((rb.n_gen, rb.skipped.len()), (3, 1));
    assert!(rb.skipped[0].path.ends_with("broken.png"));
    assert!(rel(rb.fid, r.fid) < 1e-5, "{} vs {}", rb.fid, r.fid);
    let strict = FidOptions {
        strict: true,
        ..no_save.clone()
    };
    let e = fid_between(&a, &b, &strict).unwrap_err().to_string();
    assert!(e.contains("broken.png"), "{e}");
    let junk = root.join("weights.pth");
    std::fs::write(&junk, vec![7u8; 1000]).unwrap();
    let e = fid_between(
        &a,
        &a,
        &FidOptions {
            weights: junk,
            ..no_save.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("weights.pth"), "{e}");
    let e = fid_between(
        &a,
        &a,
        &FidOptions {
            image_size: Some(64),
            ..no_save
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("75"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn exactly_zero_features_both_routes_agree() {
    // Many exactly-zero feature columns (ReLU features of small inputs) and tiny sets: the
    // n-dimensional (factored) and d-dimensional routes must agree and stay finite.
    let d = 512;
    let mut f = feature_set(4, d, 1, 0.0);
    for r in 0..4 {
        for j in 0..d {
            if j % 3 != 0 {
                f[r * d + j] = 0.0;
            }
        }
    }
    let a = FeatureStats::from_features(&f, d).unwrap();
    let b = FeatureStats::from_features(&feature_set(3, d, 2, 0.5), d).unwrap();
    let fac = frechet_distance(&a, &b).unwrap();
    let (a0, b0) = (
        FeatureStats { factor: None, ..a },
        FeatureStats { factor: None, ..b },
    );
    let full = frechet_distance(&a0, &b0).unwrap();
    assert!(
        fac.is_finite() && rel(full, fac) < 1e-7,
        "factored {fac} vs d-dim {full}"
    );
}

/// An `.npz` with only `mu` and `sigma`, laid out as `np.savez` writes them (pytorch-fid and
/// EDM files carry nothing else).
fn write_mu_sigma_npz(path: &Path, s: &FeatureStats) {
    use npyz::WriterBuilder;
    let d = s.dim() as u64;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let sigma: Vec<f64> = (0..s.dim())
        .flat_map(|r| (0..s.dim()).map(move |c| (r, c)))
        .map(|rc| s.sigma[rc])
        .collect();
    for (name, shape, data) in [
        ("mu.npy", vec![d], s.mu.as_slice().to_vec()),
        ("sigma.npy", vec![d, d], sigma),
    ] {
        z.start_file(name, opts).unwrap();
        let mut w = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut z)
            .begin_nd()
            .unwrap();
        w.extend(data).unwrap();
        w.finish().unwrap();
    }
    z.finish().unwrap();
}
