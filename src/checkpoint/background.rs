//! Checkpoints off the training thread.
//!
//! Saving a checkpoint used to stop training for as long as it took to serialise the weights,
//! the EMA weights and the optimizer moments, hash them (SHA-256), flush them to disk and commit
//! the folder: ~12 s at the AFHQ size on a CPU, as long as ~200 steps at GPU speed. Now the
//! training thread only reads what must be saved back to the host (a copy, so the next steps
//! may update the tensors in place) and hands it to a [`Writer`], which does the rest on a
//! thread of its own while training continues.
//!
//! The rules that keep this as safe as the synchronous save:
//! - at most one save is in flight: the next save first waits for the previous one (that wait,
//!   with the snapshot itself, is the training thread's "stall");
//! - an error of a background save is never lost: it is returned by the next save, or by
//!   [`Writer::wait`] at the end of the run (which the run calls before it returns, so the last
//!   checkpoint is complete and committed when training returns);
//! - the writer does exactly what the synchronous save does, in the same order (staging folder,
//!   manifest, one rename, pruning after the commit), so the files and the crash-safety
//!   argument of [`super::run`] are unchanged.
//!
//! `DIFFUSE_SYNC_CHECKPOINTS=1` writes every checkpoint on the training thread instead (the
//! same code, run in place), for comparisons and for file systems where a second writer hurts.
//! `DIFFUSE_CHECKPOINT_TIMES=1` prints, per checkpoint, the training thread's stall and the
//! writer's time, to measure both.
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::{Error, Result};

/// Whether the environment asks for synchronous checkpoints (`DIFFUSE_SYNC_CHECKPOINTS=1`).
pub fn sync_requested() -> bool {
    env_flag("DIFFUSE_SYNC_CHECKPOINTS")
}

/// Whether checkpoint timings are to be printed (`DIFFUSE_CHECKPOINT_TIMES=1`).
pub fn times_requested() -> bool {
    env_flag("DIFFUSE_CHECKPOINT_TIMES")
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A save in flight.
struct Pending {
    /// The checkpoint folder it commits (named in a panic's message).
    target: PathBuf,
    handle: JoinHandle<Result<()>>,
}

/// Runs checkpoint saves one at a time, each on a thread of its own (or in place when
/// synchronous). Dropping it waits for the save in flight; its error, if any, is printed then,
/// as nothing is left to return it to: call [`Writer::wait`] to get it.
pub struct Writer {
    background: bool,
    pending: Option<Pending>,
}

impl Writer {
    /// A writer that saves in the background when `background` is set, in place otherwise.
    pub fn new(background: bool) -> Self {
        Self {
            background,
            pending: None,
        }
    }

    /// A background writer, unless `DIFFUSE_SYNC_CHECKPOINTS=1` asks for synchronous saves.
    pub fn from_env() -> Self {
        Self::new(!sync_requested())
    }

    /// Whether saves run on a thread of their own.
    pub fn is_background(&self) -> bool {
        self.background
    }

    /// Whether a save is in flight.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the save in flight, if any, and returns its result.
    pub fn wait(&mut self) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        match p.handle.join() {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".into());
                Err(Error::Checkpoint {
                    path: p.target,
                    msg: format!("the checkpoint writer stopped with a panic: {what}"),
                })
            }
        }
    }

    /// Runs `save`, which writes and commits the checkpoint folder `target`, after the save in
    /// flight has finished: on a new thread (this returns at once), or here when synchronous.
    /// Returns the error of the previous save, if it failed (then `save` is not started), or
    /// of `save` itself when synchronous.
    pub fn submit(
        &mut self,
        target: PathBuf,
        save: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.wait()?;
        if !self.background {
            return save();
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let timed = move || {
            let t = Instant::now();
            let r = save();
            if times_requested() {
                eprintln!(
                    "checkpoint {name}: written in {:.3} s on the writer thread",
                    t.elapsed().as_secs_f64()
                );
            }
            r
        };
        let handle = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(timed)
            .map_err(|e| Error::Checkpoint {
                path: target.clone(),
                msg: format!("could not start the checkpoint writer thread: {e}"),
            })?;
        self.pending = Some(Pending { target, handle });
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            eprintln!("error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_save_at_a_time_and_errors_are_kept() {
        let mut w = Writer::new(true);
        let order = Arc::new(AtomicUsize::new(0));
        // The second save starts only after the first has finished.
        let o = Arc::clone(&order);
        w.submit("a".into(), move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(o.fetch_add(1, Ordering::SeqCst), 0);
            Ok(())
        })
        .unwrap();
        let o = Arc::clone(&order);
        w.submit("b".into(), move || {
            assert_eq!(o.fetch_add(1, Ordering::SeqCst), 1);
            Err(Error::invalid("disk", "full"))
        })
        .unwrap();
        // The failed save is reported by the next call, which does not run its own save.
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let err = w
            .submit("c".into(), move || {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(order.load(Ordering::SeqCst), 2);
        assert!(!w.busy());
        w.wait().unwrap();
    }

    #[test]
    fn a_panicking_save_is_an_error_naming_its_folder() {
        let mut w = Writer::new(true);
        w.submit("run/checkpoints/step-00000007".into(), || panic!("boom"))
            .unwrap();
        let err = w.wait().unwrap_err().to_string();
        assert!(
            err.contains("step-00000007") && err.contains("boom"),
            "{err}"
        );
    }

    #[test]
    fn synchronous_saves_run_in_place() {
        let mut w = Writer::new(false);
        let err = w
            .submit("x".into(), || Err(Error::invalid("disk", "full")))
            .unwrap_err();
        assert!(err.to_string().contains("full"));
        assert!(!w.busy());
    }
}
