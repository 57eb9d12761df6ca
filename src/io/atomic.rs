//! Atomic file writes: write a temporary file in the same folder, fsync, rename. A killed process
//! leaves either the old file or the new one, never half of one.
use super::{ReadError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` that [`commit`] renames to it.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Makes the complete file `tmp` durable and renames it to `path`.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| ReadError::io(tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| ReadError::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the rename itself; not all file systems support fsync on a directory.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| ReadError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ReadError::io(&tmp, e))?;
    drop(f);
    commit(&tmp, path)
}
