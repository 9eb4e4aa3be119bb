//! A training run's checkpoint as one unit.
//!
//! Every file of a step (weights, EMA weights, optimizer state, config, resume state) is written
//! into a fresh staging folder `RUN/checkpoints/.tmp-step-NNNNNNNN-PID`, flushed to disk (each file
//! and then the folder), described by a `manifest.json` (step, config hash, size and SHA-256 of
//! every file), and only then made current by one atomic rename to
//! `RUN/checkpoints/step-NNNNNNNN`. A crash at any point leaves either the previous set or the new
//! one, never a mixture; a staging folder left by a dead process is removed by the next run.
//! The newest `step-*` folder is the current checkpoint; the last `keep` are kept.
//!
//! Readers ([`latest`], [`verify`]) check the manifest against the files, so a folder whose
//! pieces do not belong together is refused with a message that says which piece is wrong.
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{create_dir_durable, sync_dir, sync_file};
use crate::{Error, Result};

/// Folder of a run that holds its checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";
/// The file in a checkpoint folder that lists its pieces.
pub const MANIFEST: &str = "manifest.json";
const STEP_PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-";

/// What a checkpoint folder holds, written last (before the folder is made current).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this manifest.
    pub format: u32,
    /// The training step the checkpoint was taken after.
    pub step: usize,
    /// SHA-256 of the run's configuration (canonical JSON), so a checkpoint of another run
    /// configuration is recognised.
    pub config_sha256: String,
    /// The run the checkpoint belongs to: the config hash of the run's first segment (a resumed
    /// run keeps it although its config may change, e.g. more steps). A commit refuses a
    /// checkpoint folder that holds another run's checkpoints. Empty in manifests written
    /// before it existed (see [`Manifest::run`]).
    #[serde(default)]
    pub run_sha256: String,
    /// Every other file in the folder, sorted by name.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The run this checkpoint belongs to: `run_sha256`, or for a manifest written before that
    /// field existed, its config hash (such a run was never resumed with another config by a
    /// version that could record the difference).
    pub fn run(&self) -> &str {
        if self.run_sha256.is_empty() {
            &self.config_sha256
        } else {
            &self.run_sha256
        }
    }
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex(&h.finalize())))
}

/// Test-only crash hook: with `DIFFUSE_CRASH_AFTER=k` in the environment, the process kills
/// itself with SIGKILL right after the k-th durable action (a file written and flushed, a
/// rename, a removal) of the checkpoint writer, counted from the start of the process. The
/// fault-injection tests use it to stop a run at every such point; nothing else reads it.
fn fault_point(what: &str, path: &Path) {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("DIFFUSE_CRASH_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(k) = *limit {
        if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == k {
            eprintln!(
                "DIFFUSE_CRASH_AFTER={k}: killed after {what} {}",
                path.display()
            );
            // SIGKILL, as an out-of-memory kill or a power cut would: no destructor runs.
            #[cfg(unix)]
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            // Elsewhere the nearest: no destructor, no unwinding.
            #[cfg(not(unix))]
            std::process::abort();
        }
    }
}

/// The staging folder a checkpoint's pieces are written into. Each write is flushed before
/// the next starts.
pub struct Stage {
    dir: PathBuf,
}

impl Stage {
    /// The path of a piece named `name` in the staging folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `bytes` as the piece `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        let mut f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&path, e))?;
        drop(f);
        sync_file(&path)?;
        fault_point("writing", &path);
        Ok(())
    }

    /// Writes `value` as pretty JSON under `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value).expect("checkpoint types serialise");
        self.write(name, text.as_bytes())
    }

    /// Marks the piece `name`, written by another writer (e.g. a tensor store), as complete:
    /// flushes it to disk.
    pub fn written(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        sync_file(&path)?;
        fault_point("writing", &path);
        Ok(())
    }
}

fn step_dir_name(step: usize) -> String {
    format!("{STEP_PREFIX}{step:08}")
}

/// The folder of `run`'s checkpoint of `step` (`RUN/checkpoints/step-NNNNNNNN`).
pub fn step_dir(run: &Path, step: usize) -> PathBuf {
    run.join(CHECKPOINTS).join(step_dir_name(step))
}

fn parse_step(name: &str) -> Option<usize> {
    name.strip_prefix(STEP_PREFIX)?.parse().ok()
}

/// The checkpoint folders of a run, newest first.
pub fn list(run: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = run.join(CHECKPOINTS);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(parse_step) {
            out.push((step, entry.path()));
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

/// Writes one checkpoint of `run` at `step`: `write` fills the staging folder, then the
/// manifest is written and the folder made current by one rename. Keeps the newest `keep`
/// checkpoints (at least 1). On an error the staging folder is removed and the previous
/// checkpoint stays current.
///
/// `run_sha256` names the run ([`Manifest::run_sha256`]): a checkpoint folder that holds a
/// checkpoint of another run is refused before anything is written, so two runs never mix
/// (an old run's newer steps would otherwise win `latest` and prune the new run's files).
pub fn commit(
    run: &Path,
    step: usize,
    config_sha256: &str,
    run_sha256: &str,
    keep: usize,
    write: impl FnOnce(&Stage) -> Result<()>,
) -> Result<PathBuf> {
    let root = run.join(CHECKPOINTS);
    check_same_run(run, run_sha256)?;
    // The checkpoints folder's entry in the run folder (and the run folder's own, when new)
    // is flushed: a committed checkpoint must not vanish with a folder that was never on disk.
    create_dir_durable(&root)?;
    let stage = Stage {
        dir: root.join(format!(
            "{TMP_PREFIX}{}-{}",
            step_dir_name(step),
            std::process::id()
        )),
    };
    let result: Result<PathBuf> = (|| {
        if stage.dir.exists() {
            fs::remove_dir_all(&stage.dir).map_err(|e| Error::io(&stage.dir, e))?;
        }
        fs::create_dir(&stage.dir).map_err(|e| Error::io(&stage.dir, e))?;
        write(&stage)?;
        let manifest = describe(&stage.dir, step, config_sha256, run_sha256)?;
        stage.write_json(MANIFEST, &manifest)?;
        sync_dir(&stage.dir)?;
        let target = root.join(step_dir_name(step));
        if target.exists() {
            // The same step saved again (a run resumed at its last checkpoint and stopped at
            // once). A complete folder already holds that state: keep it rather than open a
            // window in which neither exists; a broken one is replaced.
            if verify(&target).is_ok() {
                fs::remove_dir_all(&stage.dir).map_err(|e| Error::io(&stage.dir, e))?;
                return Ok(target);
            }
            fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        fs::rename(&stage.dir, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(&root)?;
        fault_point("renaming to", &target);
        Ok(target)
    })();
    let target = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage.dir);
            let kept = match list(run)?.first() {
                Some((s, _)) => format!("the checkpoint of step {s} is unchanged"),
                None => "no earlier checkpoint exists".into(),
            };
            return Err(Error::Checkpoint {
                path: root.join(step_dir_name(step)),
                msg: format!("could not be saved ({kept}): {e}"),
            });
        }
    };
    // The new checkpoint is committed: an old one that cannot be removed (a permission, a
    // file held open on another system) costs disk space, not the run, so it is a warning.
    for (_, old) in list(run)?.into_iter().skip(keep.max(1)) {
        match fs::remove_dir_all(&old) {
            Ok(()) => fault_point("removing", &old),
            Err(e) => eprintln!(
                "warning: could not remove the old checkpoint {}: {e} (the new one, {}, is saved)",
                old.display(),
                target.display()
            ),
        }
    }
    Ok(target)
}

/// Refuses `run` when one of its checkpoint folders belongs to another run than `run_sha256`.
/// Only the manifests are read (a few hundred bytes each). A folder whose manifest cannot be
/// read is left to [`verify`] (it is not a checkpoint of another run, just a broken one).
fn check_same_run(run: &Path, run_sha256: &str) -> Result<()> {
    for (step, dir) in list(run)? {
        let Ok(m) = crate::files::read_json::<Manifest>(&dir.join(MANIFEST)) else {
            continue;
        };
        if m.run() != run_sha256 {
            return Err(Error::Checkpoint {
                path: dir,
                msg: format!(
                    "belongs to another run (run hash {}…, this run {}…; step {step}): nothing was written; resume that run, or train into another folder",
                    &m.run()[..12.min(m.run().len())],
                    &run_sha256[..12.min(run_sha256.len())]
                ),
            });
        }
    }
    Ok(())
}

/// Size and hash of every file in `dir` (but the manifest), sorted by name.
fn describe(dir: &Path, step: usize, config_sha256: &str, run_sha256: &str) -> Result<Manifest> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST || !entry.path().is_file() {
            continue;
        }
        let (bytes, sha256) = file_sha256(&entry.path())?;
        files.push(FileEntry {
            name,
            bytes,
            sha256,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Manifest {
        format: 1,
        step,
        config_sha256: config_sha256.into(),
        run_sha256: run_sha256.into(),
        files,
    })
}

/// Reads `dir`'s manifest and checks that every file it lists is there with its size and
/// hash, and that the folder holds the step its name says.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let bad = |msg: String| Error::Checkpoint {
        path: dir.into(),
        msg,
    };
    let mpath = dir.join(MANIFEST);
    if !mpath.is_file() {
        return Err(bad(format!(
            "has no {MANIFEST}: not a complete checkpoint (remove the folder to resume from the one before it)"
        )));
    }
    let m: Manifest = crate::files::read_json(&mpath)?;
    if let Some(step) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_step)
    {
        if step != m.step {
            return Err(bad(format!(
                "its manifest is for step {}, the folder name says {step}",
                m.step
            )));
        }
    }
    for f in &m.files {
        let p = dir.join(&f.name);
        if !p.is_file() {
            return Err(bad(format!("{} is missing", f.name)));
        }
        let (bytes, sha) = file_sha256(&p)?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(bad(format!(
                "{} does not belong to this checkpoint ({bytes} bytes, SHA-256 {}…; the manifest says {} bytes, {}…)",
                f.name,
                &sha[..12],
                f.bytes,
                &f.sha256[..12.min(f.sha256.len())]
            )));
        }
    }
    Ok(m)
}

/// The current (newest) checkpoint of `run`, verified; `None` when the run has none.
pub fn latest(run: &Path) -> Result<Option<(PathBuf, Manifest)>> {
    match list(run)?.into_iter().next() {
        None => Ok(None),
        Some((_, dir)) => {
            let m = verify(&dir)?;
            Ok(Some((dir, m)))
        }
    }
}

/// Removes staging folders (and the temporary files of [`crate::files::write_atomic`])
/// left in `run` by processes that are no longer running.
pub fn clean_orphans(run: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in [run.to_path_buf(), run.join(CHECKPOINTS)] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = orphan_pid(&name) else {
                continue;
            };
            if pid == std::process::id() || process_alive(pid) {
                continue;
            }
            let p = entry.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(|e| Error::io(&p, e))?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// The process id in a staging folder name (`.tmp-step-N-PID`) or a temporary file name
/// (`NAME.tmpPID`).
fn orphan_pid(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
        return rest.rsplit('-').next()?.parse().ok();
    }
    let (_, pid) = name.rsplit_once(".tmp")?;
    pid.parse().ok()
}

/// Whether process `pid` is running. On Unix `kill(pid, 0)`; elsewhere unknown, so `true`:
/// another process's leftovers are then kept and its lock is not taken over (the lock error
/// says how to remove it by hand).
pub(crate) fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // kill(pid, 0) checks existence without sending anything; EPERM still means "exists".
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The advisory lock file of a run folder: it holds the process id of the trainer using it.
pub const LOCK: &str = "train.lock";

/// A run folder held by this process for training: [`RunLock::acquire`] creates `RUN/train.lock`
/// (exclusively) with the process id and a token; dropping it removes the file if it still
/// holds the token. A second trainer, in another process or this one, is refused while it is
/// held; a lock whose process is no longer running (killed, crashed) is taken over.
///
/// Advisory: it keeps `diffuse` processes apart, not other programs. Two processes that find
/// the same stale lock at the same instant can both take it over (the window is one
/// remove-and-create); that needs a crash and two restarts within microseconds.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    token: String,
}

impl RunLock {
    /// Takes the lock of `run` (which must exist). Returns the lock and, when a stale lock was
    /// taken over, the process id it named (the caller says so).
    pub fn acquire(run: &Path) -> Result<(Self, Option<u32>)> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = run.join(LOCK);
        let pid = std::process::id();
        let token = format!("{pid} {}", N.fetch_add(1, Ordering::SeqCst));
        let mut stale = None;
        for _ in 0..3 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{token}\n").as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                    return Ok((Self { path, token }, stale));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            let held = fs::read_to_string(&path).unwrap_or_default();
            let holder = held
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            match holder {
                Some(p) if process_alive(p) => {
                    let who = if p == pid {
                        "another trainer in this process".to_string()
                    } else {
                        format!("process {p}")
                    };
                    return Err(Error::Checkpoint {
                        path: run.into(),
                        msg: format!(
                            "is in use by {who} (its lock file {} is held): wait for it to finish, or train into another folder; if no diffuse process is running there, remove {}",
                            path.display(),
                            path.display()
                        ),
                    });
                }
                // Dead process, or a file that is not a lock (empty: a crash between create and
                // write): stale.
                p => {
                    stale = Some(p.unwrap_or(0));
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(&path, e)),
                    }
                }
            }
        }
        Err(Error::Checkpoint {
            path: run.into(),
            msg: format!("could not take its lock file {}", path.display()),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock now (as dropping it does).
    pub fn release(self) {}
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only our own lock: one taken over by another process after we were presumed dead
        // stays.
        if fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.token) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_names() {
        assert_eq!(orphan_pid(".tmp-step-00000200-4242"), Some(4242));
        assert_eq!(orphan_pid("model.safetensors.tmp77"), Some(77));
        assert_eq!(orphan_pid("step-00000200"), None);
        assert_eq!(orphan_pid("loss.png"), None);
    }

    #[test]
    fn commit_verify_keep_and_resave() {
        let run = std::env::temp_dir().join(format!("diffuse-rc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&run);
        let save = |step: usize, body: &'static [u8]| {
            commit(&run, step, "cfg", "run-a", 2, |s| s.write("a.bin", body)).unwrap()
        };
        for step in [1, 2, 3] {
            save(step, b"x");
        }
        // The newest two are kept, newest first; each verifies.
        let steps: Vec<usize> = list(&run).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(steps, [3, 2]);
        let (dir, m) = latest(&run).unwrap().unwrap();
        assert_eq!((m.step, m.files.len()), (3, 1));
        // Saving a step again keeps the complete folder already there.
        save(3, b"y");
        assert_eq!(fs::read(dir.join("a.bin")).unwrap(), b"x");
        // A changed piece is reported by name; a staging folder of a dead process is removed.
        fs::write(dir.join("a.bin"), b"z").unwrap();
        let err = verify(&dir).unwrap_err().to_string();
        assert!(
            err.contains("a.bin") && err.contains("does not belong"),
            "{err}"
        );
        let orphan = run.join(CHECKPOINTS).join(".tmp-step-00000004-999999999");
        fs::create_dir_all(&orphan).unwrap();
        assert_eq!(clean_orphans(&run).unwrap(), vec![orphan.clone()]);
        assert!(!orphan.exists());
        // Another run's commit into this folder is refused and writes nothing.
        let err = commit(&run, 9, "cfg", "run-b", 2, |s| s.write("a.bin", b"b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to another run"), "{err}");
        assert!(!step_dir(&run, 9).exists());
        assert_eq!(list(&run).unwrap().len(), 2);
        let _ = fs::remove_dir_all(&run);
    }

    /// Recorded by the flush layer of `files`: every piece, the staging folder, the
    /// checkpoints folder after the rename, and the new `checkpoints/` entry in the run folder
    /// (the run folder's own entry in its parent is flushed too; other tests share that
    /// parent, so it is not asserted here).
    #[test]
    fn commit_flushes_every_piece_and_folder_entry() {
        let run = std::env::temp_dir().join(format!("diffuse-rcsync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&run);
        crate::files::record_syncs();
        commit(&run, 1, "cfg", "r", 1, |s| s.write("a.bin", b"x")).unwrap();
        let mine: Vec<PathBuf> = crate::files::synced_paths()
            .into_iter()
            .filter(|p| p.starts_with(&run))
            .collect();
        let root = run.join(CHECKPOINTS);
        let stage = root.join(format!(".tmp-step-00000001-{}", std::process::id()));
        assert_eq!(
            mine,
            [
                run.clone(),
                stage.join("a.bin"),
                stage.join(MANIFEST),
                stage.clone(),
                root,
            ]
        );
        let _ = fs::remove_dir_all(&run);
    }

    #[test]
    fn a_run_lock_keeps_a_second_trainer_out_and_stale_locks_are_taken_over() {
        let run = std::env::temp_dir().join(format!("diffuse-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        let (lock, stale) = RunLock::acquire(&run).unwrap();
        assert_eq!(stale, None);
        // Held by this process: refused, naming the folder and the lock file.
        let err = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(err.contains("in use") && err.contains(LOCK), "{err}");
        drop(lock);
        assert!(!run.join(LOCK).exists(), "dropping releases it");
        // A lock left by a process that is not running is taken over, and reported.
        fs::write(run.join(LOCK), "999999999 0\n").unwrap();
        let (lock, stale) = RunLock::acquire(&run).unwrap();
        assert_eq!(stale, Some(999999999));
        assert!(fs::read_to_string(lock.path())
            .unwrap()
            .starts_with(&std::process::id().to_string()));
        // A lock that another process took over meanwhile is not removed by the old holder.
        fs::write(run.join(LOCK), "1 0\n").unwrap();
        drop(lock);
        assert!(run.join(LOCK).exists());
        let _ = fs::remove_dir_all(&run);
    }
}
