//! Measurements for BENCHMARKS.md (not a test):
//!   fid_bench throughput WEIGHTS [BATCHES]   feature-extraction images/s, 256×256, batch 32
//!   fid_bench folders WEIGHTS GT GEN         fid_between with default reference options
//!   fid_bench jpeg DIR [REPS]                 JPEG decode images/s (this thread only):
//!                                             src/data/jpeg vs the jpeg-decoder crate
use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use diffuse::metrics::fid_pipeline::{fid_between, FidOptions};
use diffuse::nn::inception::InceptionKind;
use diffuse::nn::inception_load::load_inception;
use diffuse_testkit::det_values as det;

fn main() -> diffuse::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("throughput") => {
            let dev = Device::flex();
            let net = load_inception(Path::new(&args[2]), InceptionKind::Torchvision, &dev)?;
            let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
            let x = Tensor::<4>::from_data(
                TensorData::new(det(32 * 3 * 256 * 256, 5, 2.0), [32, 3, 256, 256]),
                &dev,
            );
            let run = || {
                let f = net.features(x.clone());
                let _ = f.into_data();
            };
            run();
            let mut ts = Vec::new();
            for _ in 0..n {
                let t0 = Instant::now();
                run();
                ts.push(t0.elapsed().as_secs_f64());
            }
            let mut s = ts.clone();
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let med = s[s.len() / 2];
            println!(
                "burn flex RAYON_NUM_THREADS={:?} batch 32 @256: median {med:.3} s/batch -> {:.2} images/s (times {ts:.3?})",
                std::env::var("RAYON_NUM_THREADS").ok(),
                32.0 / med
            );
        }
        Some("folders") => {
            let opts = FidOptions {
                weights: args[2].clone().into(),
                progress: false,
                kid: true,
                ..Default::default()
            };
            let r = fid_between(Path::new(&args[3]), Path::new(&args[4]), &opts)?;
            println!(
                "rust FID {:.9}  KID {:?}  [{} vs {} images, features {:.1} s, {:.2} images/s]",
                r.fid, r.kid, r.n_gt, r.n_gen, r.feature_seconds, r.images_per_second
            );
        }
        Some("jpeg") => {
            let dir = Path::new(&args[2]);
            let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            let files: Vec<Vec<u8>> = diffuse::data::image_io::list_images(dir)?
                .iter()
                .map(|p| std::fs::read(p).map_err(|e| diffuse::Error::io(p, e)))
                .collect::<diffuse::Result<_>>()?;
            let n = (reps * files.len()) as f64;
            for round in 0..2 {
                let t0 = Instant::now();
                for _ in 0..reps {
                    for f in &files {
                        let px = diffuse_jpeg::decode_rgb(f)
                            .map_err(|e| diffuse::Error::bad_file(dir, e.to_string()))?;
                        std::hint::black_box(px);
                    }
                }
                let ours = n / t0.elapsed().as_secs_f64();
                let t0 = Instant::now();
                for _ in 0..reps {
                    for f in &files {
                        let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(f));
                        std::hint::black_box(d.decode().map_err(|e| {
                            diffuse::Error::bad_file(dir, e.to_string())
                        })?);
                    }
                }
                let theirs = n / t0.elapsed().as_secs_f64();
                println!(
                    "round {round}: src/data/jpeg {ours:.1} images/s, jpeg-decoder {theirs:.1} images/s ({} files x {reps})",
                    files.len()
                );
            }
        }
        _ => eprintln!(
            "usage: fid_bench throughput WEIGHTS [BATCHES] | folders WEIGHTS GT GEN | jpeg DIR [REPS]"
        ),
    }
    Ok(())
}
