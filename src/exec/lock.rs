//! Host-wide locks around shared host objects (a bridge, its address, firewall chains).

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use crate::spec::CniError;

/// Where lock files live; `IPCNI_LOCK_DIR` moves them (tests, read-only /run).
pub fn lock_dir() -> PathBuf {
    std::env::var_os("IPCNI_LOCK_DIR").map_or_else(|| PathBuf::from("/run/ipcni/locks"), PathBuf::from)
}

/// An exclusive flock held until dropped.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Locks `<lock dir>/<name>.lock`, waiting for other holders. `name` is a validated
    /// identifier (a bridge or network name).
    pub fn acquire(name: &str) -> Result<HostLock, CniError> {
        let dir = lock_dir();
        std::fs::create_dir_all(&dir).map_err(|e| CniError::io(format!("lock dir {}: {e}", dir.display())))?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CniError::io(format!("lock {}: {e}", path.display())))?;
        file.lock().map_err(|e| CniError::try_again(format!("lock {}: {e}", path.display())))?;
        Ok(HostLock { _file: file })
    }
}
