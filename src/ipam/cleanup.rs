//! DEL, CHECK and GC: they need only the store directory (§2.5).

use std::collections::HashSet;

use crate::ipam::config::StoreDir;
use crate::ipam::store::{self, Owner};
use crate::spec::{Attachment, CniError};

/// DEL: releases every reservation held by `(container_id, ifname)`; if there is none,
/// those held by `container_id` alone (files of old reference versions). Succeeds when
/// nothing matched or the directory does not exist; creates nothing in that case.
pub fn release(store: &StoreDir, container_id: &str, ifname: &str) -> Result<(), CniError> {
    let dir = store.path();
    if !dir.is_dir() {
        return Ok(());
    }
    let _lock = store::lock(dir)?;
    let walk = store::walk(dir)?;
    let id = container_id.trim();
    let mut matched: Vec<_> = walk.reservations.iter().filter(|r| r.owner.is(id, ifname)).collect();
    if matched.is_empty() {
        matched = walk.reservations.iter().filter(|r| r.owner.is_legacy(id)).collect();
    }
    for r in matched {
        store::remove(dir, &r.name)?;
    }
    Ok(())
}

/// CHECK: code 101 unless a reservation for `(container_id, ifname)` exists (a legacy
/// file holding `container_id` alone counts, as in the reference).
pub fn check(store: &StoreDir, container_id: &str, ifname: &str) -> Result<(), CniError> {
    let dir = store.path();
    let walk = store::walk(dir)?;
    let id = container_id.trim();
    if walk.reservations.iter().any(|r| r.owner.is(id, ifname) || r.owner.is_legacy(id)) {
        return Ok(());
    }
    Err(CniError::check(format!(
        "host-local: no IP address reserved for container {container_id} interface {ifname} in {}",
        dir.display()
    )))
}

/// GC: under the lock, removes every reservation whose `(containerID, ifname)` is not in
/// `valid`. A legacy id-only file is kept when its id appears in `valid` with any
/// ifname. Torn (empty or garbled) reservation files and leftover temporary files are
/// removed; `lock`, `last_reserved_ip.*` and unknown names are left alone. An empty
/// `valid` removes every reservation. A missing directory is fine.
pub fn gc(store: &StoreDir, valid: &[Attachment]) -> Result<(), CniError> {
    let dir = store.path();
    if !dir.is_dir() {
        return Ok(());
    }
    let _lock = store::lock(dir)?;
    let walk = store::walk(dir)?;
    let attachments: HashSet<(&str, &str)> = valid.iter().map(|a| (a.container_id.trim(), a.ifname.as_str())).collect();
    let ids: HashSet<&str> = valid.iter().map(|a| a.container_id.trim()).collect();
    let mut first_err = None;
    let stale = walk.reservations.iter().filter(|r| match &r.owner {
        Owner::Attachment { id, ifname } => !attachments.contains(&(id.as_str(), ifname.as_str())),
        Owner::Legacy { id } => !ids.contains(id.as_str()),
        Owner::Torn => true,
    });
    for name in stale.map(|r| &r.name).chain(walk.tmp.iter()) {
        if let Err(e) = store::remove(dir, name) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
