//! `data::jpeg` against Pillow: every file in tests/golden/jpeg/ (written by
//! bench/golden_jpeg.py: qualities 50–100, 4:4:4/4:2:2/4:2:0, baseline/progressive, optimized
//! tables, restart markers, grayscale, CMYK, Adobe RGB, odd sizes, progressive files cut short
//! so that block smoothing applies, a frame without DHT like Motion-JPEG) must decode to
//! exactly the pixels of Pillow's `Image.open(f).convert("RGB")`, stored losslessly beside it
//! as PNG.
mod common;
use common::TempDir;
use std::path::{Path, PathBuf};

use diffuse::data::image_io::load_rgb;
use diffuse::data::jpeg::decode_rgb;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg")
}

fn goldens() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_golden_matches_pillow_exactly() {
    let files = goldens();
    assert!(files.len() >= 27, "only {} goldens", files.len());
    let mut failures = Vec::new();
    for jpg in &files {
        let got = load_rgb(jpg).unwrap();
        let want = load_rgb(&jpg.with_extension("png")).unwrap();
        let name = jpg.file_name().unwrap().to_string_lossy().into_owned();
        if got.dimensions() != want.dimensions() {
            failures.push(format!(
                "{name}: size {:?} vs {:?}",
                got.dimensions(),
                want.dimensions()
            ));
            continue;
        }
        let diff: Vec<(usize, i32)> = got
            .as_raw()
            .chunks(3)
            .zip(want.as_raw().chunks(3))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (*x as i32 - *y as i32).abs())
                    .max()
                    .unwrap()
            })
            .enumerate()
            .filter(|&(_, d)| d > 0)
            .collect();
        if let Some(&(i, _)) = diff.first() {
            let max = diff.iter().map(|d| d.1).max().unwrap();
            let w = got.width() as usize;
            failures.push(format!(
                "{name}: {} pixels differ (max {max}), first at ({}, {})",
                diff.len(),
                i % w,
                i / w
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Damaged files: a clear error naming the file, never a panic.
#[test]
fn corrupt_and_truncated_jpegs_are_errors_naming_the_file() {
    let dir = TempDir::new("jpeg-corrupt");
    let base = std::fs::read(golden_dir().join("q75_420.jpg")).unwrap();
    let prog = std::fs::read(golden_dir().join("prog_420.jpg")).unwrap();
    let sof = base.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut arithmetic = base.clone();
    arithmetic[sof + 1] = 0xC9; // SOF9: arithmetic coding, handed to the fallback decoder
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half.jpg", base[..base.len() / 2].to_vec()),
        ("no_eoi_progressive.jpg", prog[..prog.len() - 40].to_vec()),
        ("headers_only.jpg", base[..sof + 20].to_vec()),
        ("soi_only.jpg", vec![0xFF, 0xD8]),
        (
            "soi_garbage.jpg",
            [&[0xFF, 0xD8, 0xFF][..], &[0x42; 64]].concat(),
        ),
        ("arithmetic.jpg", arithmetic),
    ];
    for (name, bytes) in cases {
        let p = dir.0.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let err = load_rgb(&p).expect_err(name).to_string();
        assert!(
            err.contains(name),
            "{name}: error does not name the file: {err}"
        );
        assert!(err.contains("JPEG"), "{name}: {err}");
    }
}

/// Truncations and random byte damage of every golden: decoding may fail but must not panic
/// (no out-of-bounds index, no arithmetic overflow: tests run with overflow checks).
#[test]
fn damaged_goldens_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut runs = 0;
    for f in goldens() {
        let data = std::fs::read(&f).unwrap();
        for cut in (0..data.len()).step_by(7) {
            let _ = decode_rgb(&data[..cut]);
            runs += 1;
        }
        for _ in 0..150 {
            let mut d = data.clone();
            for _ in 0..1 + rnd() % 4 {
                let p = rnd() as usize % d.len();
                d[p] = if rnd() % 2 == 0 {
                    d[p] ^ (1 << (rnd() % 8))
                } else {
                    rnd() as u8
                };
            }
            let _ = decode_rgb(&d);
            runs += 1;
        }
    }
    assert!(runs > 4000);
}
