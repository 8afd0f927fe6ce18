//! ipcni's own per-attachment host state: what a plugin must know at DEL that neither the
//! kernel nor the runtime reliably tells it (host-device: a device's original name, since
//! DEL may come without prevResult and the container may have renamed the device).
//!
//! One JSON file per attachment, `<root>/<plugin>/<network>/<container id>@<ifname>.json`,
//! where `<root>` is `$IPCNI_STATE_DIR` or /var/lib/cni/ipcni. A container id cannot
//! contain `@`, so a file name splits back into (id, ifname) at its first `@`.
//!
//! Plugins stay pure: they plan `Op::StateWrite` / `Op::StateRemove` (so `--dry-run` shows
//! them and a failed ADD removes what it wrote) and read through `Observer::read_file` /
//! `Observer::list_dir`. Only the executor calls the writers below.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/cni/ipcni";

/// The state root: `IPCNI_STATE_DIR` (tests, other layouts) or /var/lib/cni/ipcni.
pub fn root() -> PathBuf {
    std::env::var_os("IPCNI_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// The directory of one plugin's attachments of one network. `network` is a validated
/// network name (no `/`).
pub fn network_dir(plugin: &str, network: &str) -> PathBuf {
    root().join(plugin).join(network)
}

/// The state file of one attachment. `id` and `ifname` are validated (no `/`).
pub fn attachment_path(plugin: &str, network: &str, id: &str, ifname: &str) -> PathBuf {
    network_dir(plugin, network).join(format!("{id}@{ifname}.json"))
}

/// (container id, ifname) from a state file name; None for anything else in the dir
/// (temp files of a write in progress, stray files).
pub fn parse_file_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".json")?;
    let (id, ifname) = stem.split_once('@')?;
    if id.is_empty() || ifname.is_empty() || id.starts_with('.') {
        return None;
    }
    Some((id.to_string(), ifname.to_string()))
}

/// Writes `contents` to `path` atomically: a temp file in the same directory, fsynced,
/// renamed over `path`, then the directory fsynced. Directories are made 0700, the
/// file 0600. A reader sees the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other(format!("{} has no directory", path.display())))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a state file. A missing file is an error of kind NotFound ("No such file or
/// directory"), which a step that tolerates "missing" accepts.
pub fn remove(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_back_into_id_and_ifname() {
        assert_eq!(parse_file_name("ctr-1@eth0.json"), Some(("ctr-1".into(), "eth0".into())));
        assert_eq!(parse_file_name("c@net@1.json"), Some(("c".into(), "net@1".into())));
        assert_eq!(parse_file_name(".c@eth0.json.tmp.42"), None);
        assert_eq!(parse_file_name("lock"), None);
        assert_eq!(parse_file_name("@eth0.json"), None);
    }

    #[test]
    fn atomic_write_replaces_and_remove_reports_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("host-device/net/c1@eth0.json");
        write_atomic(&p, r#"{"a":1}"#).unwrap();
        write_atomic(&p, r#"{"a":2}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}\n");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
        remove(&p).unwrap();
        let e = remove(&p).unwrap_err();
        assert_eq!(crate::exec::FailureKind::classify(&e.to_string()), crate::exec::FailureKind::Missing);
    }
}
