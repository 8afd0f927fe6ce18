//! The on-disk store, byte-compatible with the reference host-local plugin (§2.3):
//!
//! - `<dataDir>/<network>/`, mode 0755;
//! - one file per reserved address, named by its text form (`10.1.0.2`, `fd00::2`),
//!   mode 0600, holding `<containerID>\r\n<ifname>` with no trailing newline (old
//!   reference versions wrote only `<containerID>`);
//! - `last_reserved_ip.<rangeSetIndex>`, the text of the last address reserved in a set;
//! - `lock`, an empty file locked with flock(2) around every change.
//!
//! Unlike the reference, a reservation is never visible half-written: its content is
//! written to a temporary file first (`.tmp-<pid>-<n>-<random>`, which never parses as
//! an address), then hard-linked to the address name, which fails if the name exists
//! (the O_EXCL of the reference). Files that are empty or garbled anyway (from a power
//! loss before the page cache reached the disk, or from the reference plugin's
//! non-atomic writes) are "torn": under the lock they are reclaimable. That is also why
//! nothing is fsynced (as in the reference): a power loss ends every container, and what
//! it can leave, an empty reservation, is reclaimed; a sync would cost every ADD ≈ 0.4 ms.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::spec::CniError;

pub const LOCK_FILE: &str = "lock";
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
pub const TMP_PREFIX: &str = ".tmp-";

/// Reservation files larger than this are not ours: treated as garbled.
const MAX_RESERVATION_BYTES: u64 = 4096;

/// Who holds a reserved address, from the content of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `<id>\r\n<ifname>`.
    Attachment { id: String, ifname: String },
    /// `<id>` alone, as written by old reference versions.
    Legacy { id: String },
    /// Empty, whitespace only, not UTF-8, containing NUL bytes or oversized: a torn
    /// write. Reclaimable under the lock.
    Torn,
}

impl Owner {
    /// Parses file content the way the reference compares it: whitespace trimmed.
    pub fn parse(bytes: &[u8]) -> Owner {
        if bytes.len() as u64 > MAX_RESERVATION_BYTES {
            return Owner::Torn;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Owner::Torn;
        };
        let text = text.trim();
        if text.is_empty() || text.contains('\0') {
            return Owner::Torn;
        }
        match text.split_once("\r\n") {
            Some((id, ifname)) => Owner::Attachment { id: id.to_string(), ifname: ifname.to_string() },
            None => Owner::Legacy { id: text.to_string() },
        }
    }

    pub fn is(&self, id: &str, ifname: &str) -> bool {
        matches!(self, Owner::Attachment { id: i, ifname: n } if i == id && n == ifname)
    }

    pub fn is_legacy(&self, id: &str) -> bool {
        matches!(self, Owner::Legacy { id: i } if i == id)
    }
}

/// The content of a reservation file.
pub fn content(id: &str, ifname: &str) -> String {
    format!("{}\r\n{ifname}", id.trim())
}

/// One reservation file found by a walk.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The file name (normally the canonical text of `ip`).
    pub name: OsString,
    pub ip: IpAddr,
    pub owner: Owner,
}

/// What a walk of the store directory found.
#[derive(Debug, Default)]
pub struct Walk {
    pub reservations: Vec<Reservation>,
    /// Leftover temporary files.
    pub tmp: Vec<OsString>,
}

impl Walk {
    /// The addresses held by reservations that are not torn.
    pub fn live(&self) -> HashSet<IpAddr> {
        self.reservations.iter().filter(|r| r.owner != Owner::Torn).map(|r| r.ip).collect()
    }
}

pub fn io_err(what: &str, path: &Path, e: &io::Error) -> CniError {
    CniError::io(format!("host-local: {what} {}: {e}", path.display()))
}

/// Creates the store directory (and its parents), mode 0755.
pub fn create_dir(dir: &Path) -> Result<(), CniError> {
    DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| io_err("creating", dir, &e))
}

/// Takes the exclusive flock on `<dir>/lock`, creating the file; dropping the returned
/// file releases the lock. Blocks until the lock is free.
pub fn lock(dir: &Path) -> Result<File, CniError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| io_err("opening", &path, &e))?;
    file.lock().map_err(|e| io_err("locking", &path, &e))?;
    Ok(file)
}

fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Lists the reservations (regular files whose name parses as an address) and leftover
/// temporary files. Everything else (`lock`, `last_reserved_ip.*`, unknown names,
/// directories, symlinks) is left out. A missing directory is an empty store.
pub fn walk(dir: &Path) -> Result<Walk, CniError> {
    let mut out = Walk::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("reading", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("reading", dir, &e))?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if text.starts_with(TMP_PREFIX) {
            out.tmp.push(name);
            continue;
        }
        let Ok(ip) = text.parse::<IpAddr>() else {
            continue;
        };
        match entry.file_type() {
            Ok(t) if t.is_file() => {}
            _ => continue,
        }
        let path = entry.path();
        let owner = match read_limited(&path, MAX_RESERVATION_BYTES) {
            Ok(bytes) => Owner::parse(&bytes),
            // Removed between the listing and the read: nothing to see.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &path, &e)),
        };
        out.reservations.push(Reservation { name, ip, owner });
    }
    Ok(out)
}

/// Removes `<dir>/<name>`; an already missing file is fine.
pub fn remove(dir: &Path, name: &std::ffi::OsStr) -> Result<(), CniError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", &path, &e)),
    }
}

fn tmp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS once per thread, then varied per instance.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    format!("{TMP_PREFIX}{}-{n}-{:016x}", std::process::id(), h.finish())
}

/// A temporary file in the store directory, removed when dropped.
pub struct TmpFile {
    pub path: PathBuf,
}

impl TmpFile {
    /// Creates it holding `content`.
    pub fn create(dir: &Path, content: &[u8]) -> Result<TmpFile, CniError> {
        let mut attempts = 0;
        loop {
            let path = dir.join(tmp_name());
            let file =
                OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_CLOEXEC).open(&path);
            let mut file = match file {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(io_err("creating", &path, &e)),
            };
            let tmp = TmpFile { path };
            file.write_all(content).map_err(|e| io_err("writing", &tmp.path, &e))?;
            return Ok(tmp);
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates `<dir>/<ip>` holding the content of `tmp`. Returns false if the name is
/// already taken. On filesystems without hard links it falls back to an exclusive create
/// followed by a write (what the reference does), removing the file if the write fails.
pub fn reserve(dir: &Path, ip: IpAddr, tmp: &TmpFile, content: &[u8]) -> Result<bool, CniError> {
    let path = dir.join(ip.to_string());
    let err = match fs::hard_link(&tmp.path, &path) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => e,
    };
    let no_links = err.kind() == io::ErrorKind::Unsupported
        || matches!(err.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK));
    if !no_links {
        return Err(io_err("linking", &path, &err));
    }
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_CLOEXEC).open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err("creating", &path, &e)),
    };
    if let Err(e) = file.write_all(content) {
        let _ = fs::remove_file(&path);
        return Err(io_err("writing", &path, &e));
    }
    Ok(true)
}

/// The address in `last_reserved_ip.<idx>`, if the file exists and parses.
pub fn last_reserved(dir: &Path, idx: usize) -> Option<IpAddr> {
    let bytes = read_limited(&dir.join(format!("{LAST_RESERVED_PREFIX}{idx}")), 256).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// Rewrites `last_reserved_ip.<idx>` atomically (temporary file + rename).
pub fn set_last_reserved(dir: &Path, idx: usize, ip: IpAddr) -> Result<(), CniError> {
    let tmp = TmpFile::create(dir, ip.to_string().as_bytes())?;
    let path = dir.join(format!("{LAST_RESERVED_PREFIX}{idx}"));
    fs::rename(&tmp.path, &path).map_err(|e| io_err("renaming to", &path, &e))
}
