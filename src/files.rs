//! File helpers every module uses: create folders (checking they are writable), write
//! atomically (a temporary file renamed into place, so a crash never leaves a half-written
//! file), flush to disk ([`sync_file`], [`sync_dir`]: the one place that does it), and JSON in
//! and out with errors that name the file.
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Creates the parent folder of `path` (if any) and checks it is writable.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    Ok(())
}

/// Creates `dir` (and parents) and checks that a file can be written in it.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(format!(".diffuse-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(|e| Error::io(dir, e))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// `NAME.tmpPID` beside `path`: where [`write_atomic`] stages a file.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, flushed to disk, renamed
/// into place, and the folder entry flushed. Without the flushes a power cut after the rename
/// can leave an empty or missing file although the call returned.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure_parent(path)?;
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    rename_durable(&tmp, path)
}

/// Flushes the finished file `tmp` to disk, renames it to `path` and flushes the folder entry.
/// The tail of every atomic write (here, weights files, FID statistics).
pub fn rename_durable(tmp: &Path, path: &Path) -> Result<()> {
    sync_file(tmp)?;
    fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(parent_of(path))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Paths flushed since [`record_syncs`] was called; `None` when not recording. A recording
/// layer for the tests of the call sites (which files and folders a committed state flushes).
static SYNCED: Mutex<Option<Vec<PathBuf>>> = Mutex::new(None);

fn note_sync(path: &Path) {
    if let Some(v) = SYNCED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        v.push(path.to_path_buf());
    }
}

/// Starts recording the paths [`sync_file`] and [`sync_dir`] flush (for tests); the record is
/// read by [`synced_paths`]. Recording is process-wide, so a test filters by its own folder.
#[doc(hidden)]
pub fn record_syncs() {
    SYNCED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Vec::new);
}

/// The paths flushed since [`record_syncs`], in order.
#[doc(hidden)]
pub fn synced_paths() -> Vec<PathBuf> {
    SYNCED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Flushes a file's data and metadata to disk (`fsync`).
pub fn sync_file(path: &Path) -> Result<()> {
    note_sync(path);
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Flushes a folder's entries (a file created or renamed in it) to disk. On Unix the folder is
/// opened and `fsync`ed; Windows has no such call for folders (NTFS journals its metadata, and
/// `FlushFileBuffers` needs a file handle), so there it only records the intent.
pub fn sync_dir(dir: &Path) -> Result<()> {
    note_sync(dir);
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        if dir.is_dir() {
            Ok(())
        } else {
            Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ))
        }
    }
}

/// Creates `dir` (and missing parents) durably: each new folder's entry in its parent is
/// flushed, so a committed file inside it cannot vanish with its folder after a power cut.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    // The missing folders, outermost last.
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for m in missing.iter().rev() {
        sync_dir(parent_of(m))?;
    }
    Ok(())
}

/// CSV bytes of `header` and `rows` (RFC 4180 through the `csv` crate): a field is quoted only
/// when it holds a comma, a quote or a line break, so plain tables are `a,b\n1,2\n`.
pub fn csv_bytes<R, F>(header: &[&str], rows: R) -> Vec<u8>
where
    R: IntoIterator<Item = Vec<F>>,
    F: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail; a row of another length than the header is a bug.
    w.write_record(header).expect("CSV to memory");
    for r in rows {
        w.write_record(&r).expect("CSV rows as long as the header");
    }
    w.into_inner().expect("CSV to memory")
}

/// Writes a CSV table ([`csv_bytes`]) to `path`, atomically.
pub fn write_csv_table<R, F>(path: &Path, header: &[&str], rows: R) -> Result<()>
where
    R: IntoIterator<Item = Vec<F>>,
    F: AsRef<[u8]>,
{
    write_atomic(path, &csv_bytes(header, rows))
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("config types serialise");
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_json(path, &bytes)
}

/// [`read_json`] on the bytes of a file already read; `path` is only used in messages, which
/// stay short whatever the file holds (serde quotes the offending value).
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not a valid config: {}",
                crate::error::clip(&e.to_string(), 300)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recording layer sees what `write_atomic` and `create_dir_durable` flush: the file
    /// before the rename and the folder entry after it; each new folder's entry in its parent.
    #[test]
    fn atomic_writes_and_new_folders_are_flushed() {
        let root = std::env::temp_dir().join(format!("diffuse-sync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        record_syncs();
        let file = root.join("a").join("b").join("x.json");
        create_dir_durable(file.parent().unwrap()).unwrap();
        write_atomic(&file, b"{}").unwrap();
        let mine: Vec<PathBuf> = synced_paths()
            .into_iter()
            .filter(|p| p.starts_with(&root))
            .collect();
        let tmp = tmp_path(&file);
        assert_eq!(
            mine,
            [root.clone(), root.join("a"), tmp, root.join("a").join("b"),]
        );
        assert_eq!(fs::read(&file).unwrap(), b"{}");
        let _ = fs::remove_dir_all(&root);
    }
}
