//! Crash safety of image-run checkpoints, end to end through the `diffuse` binary:
//! - a run killed (SIGKILL) after every durable action of its checkpoint writer, at both of its
//!   checkpoint steps, is finished by `--resume` to files identical byte for byte to those of
//!   the uninterrupted run;
//! - a full disk while saving (a file-size limit on the process) gives a clear error and leaves
//!   the previous checkpoint usable;
//! - two identical runs write identical checkpoint files, whether saved in the background (the
//!   default) or on the training thread (`DIFFUSE_SYNC_CHECKPOINTS=1`), and a checkpoint whose
//!   pieces do not belong together is refused by `--resume`.
//!
//! The checkpoints are written on a background thread, so the kills land on that thread while
//! the training thread is still stepping: the outcome must be the same.
mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempDir;

/// Tiny digits run: 4 steps of batch 8, checkpoints after steps 2 and 4, keeping only the newest
/// (so the writer's removal of the older one is exercised too). One thread: the same kernels in
/// every process.
fn train(out: &Path, extra: &[&str]) -> Command {
    train_seeded(out, 5, extra)
}

fn train_seeded(out: &Path, seed: u64, extra: &[&str]) -> Command {
    train_kept(out, seed, 1, extra)
}

/// The tiny run, keeping the newest `keep` checkpoints.
fn train_kept(out: &Path, seed: u64, keep: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_diffuse"));
    c.args(["image", "train", "--data", "digits", "--max-per-class", "8"])
        .args([
            "--batch-size",
            "8",
            "--steps",
            "4",
            "--checkpoint-every",
            "2",
        ])
        .args([
            "--preview-every",
            "0",
            "--keep-checkpoints",
            &keep.to_string(),
        ])
        .args(["--seed", &seed.to_string(), "--threads", "1", "-q", "--out"])
        .arg(out)
        .args(extra)
        .env_remove("DIFFUSE_CRASH_AFTER");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("the diffuse binary runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:08}"))
}

fn assert_same_files(a: &Path, b: &Path, what: &str) {
    let (fa, fb) = (common::folder_files(a), common::folder_files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "{what}: file lists differ");
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{what}: {name} differs");
    }
}

/// Names under `out` that a dead process left behind.
fn leftovers(out: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in [out.to_path_buf(), out.join("checkpoints")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(".tmp") {
                v.push(format!("{}/{n}", d.display()));
            }
        }
    }
    v
}

#[test]
fn killed_at_every_checkpoint_write_resumes_to_identical_files() {
    let root = TempDir::new("faults");
    let full = root.0.join("full");
    let o = run(train(&full, &[]));
    assert!(o.status.success(), "uninterrupted run failed: {}", text(&o));
    let want = step_dir(&full, 4);
    assert!(
        !step_dir(&full, 2).exists(),
        "--keep-checkpoints 1 keeps one"
    );

    // A second identical run writes identical files (no metadata order, ids or timestamps).
    let again = root.0.join("again");
    assert!(run(train(&again, &[])).status.success());
    assert_same_files(&step_dir(&again, 4), &want, "two identical runs");

    let mut kills = 0;
    for k in 1.. {
        let out = root.0.join(format!("k{k}"));
        let mut c = train(&out, &[]);
        c.env("DIFFUSE_CRASH_AFTER", k.to_string());
        let o = run(c);
        if o.status.success() {
            // k is past the last durable action of the run: every point has been tried.
            assert!(k > 10, "only {} kill points found", k - 1);
            break;
        }
        assert!(
            text(&o).contains("DIFFUSE_CRASH_AFTER"),
            "k = {k}: failed without the crash hook: {}",
            text(&o)
        );
        kills += 1;
        let o = run(train(&out, &["--resume"]));
        assert!(o.status.success(), "k = {k}: resume failed: {}", text(&o));
        assert_same_files(
            &step_dir(&out, 4),
            &want,
            &format!("killed after durable action {k}, then resumed"),
        );
        assert!(leftovers(&out).is_empty(), "k = {k}: {:?}", leftovers(&out));
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("{kills} kill points tried, all resumed to identical files");
}

#[test]
fn background_and_synchronous_saves_write_identical_files() {
    let root = TempDir::new("bg-sync");
    let (bg, sync) = (root.0.join("bg"), root.0.join("sync"));
    let mut c = train_kept(&bg, 5, 2, &[]);
    c.env("DIFFUSE_SYNC_CHECKPOINTS", "0");
    let o = run(c);
    assert!(o.status.success(), "background run failed: {}", text(&o));
    let mut c = train_kept(&sync, 5, 2, &[]);
    c.env("DIFFUSE_SYNC_CHECKPOINTS", "1");
    let o = run(c);
    assert!(o.status.success(), "synchronous run failed: {}", text(&o));
    for step in [2, 4] {
        assert_same_files(
            &step_dir(&bg, step),
            &step_dir(&sync, step),
            &format!("step {step}, background vs synchronous"),
        );
    }
    assert!(bg.join("loss.png").is_file());
}

#[test]
fn full_disk_while_saving_keeps_the_previous_checkpoint() {
    let root = TempDir::new("fsize");
    let full = root.0.join("full");
    assert!(run(train(&full, &[])).status.success());
    let out = root.0.join("run");
    // Stop right after the step-2 checkpoint is complete (7 durable actions: 6 files, 1 rename).
    let mut c = train(&out, &[]);
    c.env("DIFFUSE_CRASH_AFTER", "7");
    assert!(!run(c).status.success());
    assert!(step_dir(&out, 2).join("manifest.json").is_file());
    let before = common::folder_files(&step_dir(&out, 2));

    // Resume with a 64 KiB limit on any file the process writes (the weights are ~3 MB): the
    // step-4 checkpoint cannot be written. SIGXFSZ is ignored so the write fails with EFBIG
    // instead of killing the process; both settings are inherited through exec.
    let mut c = train(&out, &["--resume"]);
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run(c);
    let err = text(&o);
    assert!(!o.status.success(), "a failed save must fail the command");
    assert!(
        err.contains("model.safetensors")
            && err.contains("step 2 is unchanged")
            && err.lines().count() < 20,
        "the error names the file it could not write: {err}"
    );
    assert!(!step_dir(&out, 4).exists());
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    assert_eq!(
        common::folder_files(&step_dir(&out, 2)),
        before,
        "step 2 untouched"
    );

    // The previous checkpoint still resumes to the uninterrupted result.
    let o = run(train(&out, &["--resume"]));
    assert!(o.status.success(), "{}", text(&o));
    assert_same_files(
        &step_dir(&out, 4),
        &step_dir(&full, 4),
        "resumed after a full disk",
    );
}

#[test]
fn resume_refuses_a_mixed_checkpoint() {
    let root = TempDir::new("mixed");
    let (a, b) = (root.0.join("a"), root.0.join("b"));
    assert!(run(train(&a, &[])).status.success());
    let mut c = train_seeded(&b, 6, &[]);
    c.env("DIFFUSE_CRASH_AFTER", "7");
    let _ = run(c);
    // Weights of another run (same shapes) put into this run's checkpoint.
    std::fs::copy(
        step_dir(&a, 4).join("model.safetensors"),
        step_dir(&b, 2).join("model.safetensors"),
    )
    .unwrap();
    let o = run(train_seeded(&b, 6, &["--resume"]));
    let err = text(&o);
    assert!(!o.status.success(), "a mixed checkpoint must be refused");
    assert!(
        err.contains("step-00000002") && err.contains("model.safetensors"),
        "the error says which piece is wrong: {err}"
    );
}

/// Through the binary: a fresh run into a folder that holds another run is refused with a
/// message naming the folder and the ways out, and leaves the old run as it was; `--overwrite`
/// moves the old run aside to `OUT.old-1`, intact, and trains the new one alone.
#[test]
fn a_fresh_run_into_a_used_folder_is_refused_or_moved_aside() {
    let root = TempDir::new("clobber");
    let out = root.0.join("run");
    assert!(run(train(&out, &[])).status.success());
    let before = common::folder_files(&step_dir(&out, 4));
    let o = run(train_seeded(&out, 6, &[]));
    let err = text(&o);
    assert!(!o.status.success(), "a used folder must be refused");
    assert!(
        err.contains(&out.display().to_string())
            && err.contains("`--resume`")
            && err.contains("`--out`")
            && err.contains("`--overwrite`"),
        "{err}"
    );
    assert_eq!(common::folder_files(&step_dir(&out, 4)), before);
    let o = run(train_seeded(&out, 6, &["--overwrite"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("aside"), "{}", text(&o));
    let aside = root.0.join("run.old-1");
    assert_eq!(common::folder_files(&step_dir(&aside, 4)), before);
    assert_ne!(common::folder_files(&step_dir(&out, 4)), before);
    assert!(!out.join("train.lock").exists() && !aside.join("train.lock").exists());
}
