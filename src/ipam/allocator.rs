//! ADD and STATUS: the allocation order of §2.4, under the store lock.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ipnetwork::IpNetwork;

use crate::ipam::config::HostLocal;
use crate::ipam::range::{Range, RangeSet};
use crate::ipam::store::{self, Owner, TmpFile, Walk};
use crate::spec::{CniError, CniResult, IpConfig, code};
use crate::validate;

/// One ADD in progress: the directory listing taken under the lock, indexed, and what
/// this call reserved so far (released again if a later range set fails).
struct Alloc<'a> {
    dir: &'a Path,
    /// Addresses held by a reservation that is not torn.
    live: HashSet<IpAddr>,
    /// Torn reservation files, by address: reclaimable.
    torn: HashMap<IpAddr, Vec<OsString>>,
    /// Addresses held by this attachment, lowest first.
    mine: Vec<IpAddr>,
    /// The reservation content, ready to be linked; None on a dry run.
    tmp: Option<TmpFile>,
    content: String,
    created: Vec<IpAddr>,
}

fn ip_config(ip: IpAddr, r: &Range) -> Result<IpConfig, CniError> {
    let address = IpNetwork::new(ip, r.prefix())
        .map_err(|e| CniError::internal(format!("host-local: {ip}/{}: {e}", r.prefix())))?;
    Ok(IpConfig { address, gateway: Some(r.gateway), interface: None })
}

impl<'a> Alloc<'a> {
    fn new(dir: &'a Path, walk: Walk, id: &str, ifname: &str, tmp: Option<TmpFile>, content: String) -> Self {
        let mut alloc = Alloc {
            dir,
            live: HashSet::new(),
            torn: HashMap::new(),
            mine: Vec::new(),
            tmp,
            content,
            created: Vec::new(),
        };
        for r in walk.reservations {
            if r.owner == Owner::Torn {
                alloc.torn.entry(r.ip).or_default().push(r.name);
            } else {
                alloc.live.insert(r.ip);
                if r.owner.is(id, ifname) {
                    alloc.mine.push(r.ip);
                }
            }
        }
        alloc.mine.sort();
        alloc
    }

    /// Tries to take `ip`: false if a live reservation holds it. Torn files for it are
    /// reclaimed. On a dry run nothing is written: a free (or torn) address is simply
    /// reported as the one that would be taken.
    fn take(&mut self, ip: IpAddr) -> Result<bool, CniError> {
        if self.live.contains(&ip) {
            return Ok(false);
        }
        let Some(tmp) = &self.tmp else {
            return Ok(true);
        };
        for name in self.torn.remove(&ip).unwrap_or_default() {
            store::remove(self.dir, &name)?;
        }
        self.live.insert(ip);
        if !store::reserve(self.dir, ip, tmp, self.content.as_bytes())? {
            // Appeared since the listing (a writer that ignores the lock): not ours.
            return Ok(false);
        }
        self.created.push(ip);
        self.mine.push(ip);
        Ok(true)
    }

    /// Best effort: the file only steers the round robin, so failing to write it does
    /// not fail an allocation that succeeded.
    fn note_last(&self, idx: usize, ip: IpAddr) {
        if self.tmp.is_some() {
            let _ = store::set_last_reserved(self.dir, idx, ip);
        }
    }

    fn in_set(&mut self, idx: usize, set: &RangeSet, requested: Option<IpAddr>) -> Result<IpConfig, CniError> {
        if let Some(ip) = requested {
            let r = set.range_for(ip).ok_or_else(|| {
                CniError::internal(format!("host-local: requested IP {ip} is not in range set {}", set.label))
            })?;
            if !self.mine.contains(&ip) {
                if !self.take(ip)? {
                    return Err(CniError::new(
                        code::POOL_EXHAUSTED,
                        format!("requested IP address {ip} is not available in range set {set} ({})", set.label),
                    ));
                }
                self.note_last(idx, ip);
            }
            return ip_config(ip, r);
        }
        // A second ADD for the same attachment gets the address it already holds.
        if let Some((ip, r)) = self.mine.iter().find_map(|&ip| Some((ip, set.range_for(ip)?))) {
            return ip_config(ip, r);
        }
        let last = store::last_reserved(self.dir, idx);
        match set.walk(last, |ip, _| self.take(ip))? {
            Some((ip, r)) => {
                self.note_last(idx, ip);
                ip_config(ip, r)
            }
            None => Err(CniError::new(code::POOL_EXHAUSTED, format!("no IP addresses available in range set: {set}"))),
        }
    }

    fn rollback(&mut self) {
        for ip in self.created.drain(..) {
            let _ = store::remove(self.dir, ip.to_string().as_ref());
        }
    }
}

/// ADD: one address per range set, for the attachment `(container_id, ifname)`.
///
/// The result has `ips` (`interface` unset, `gateway` set), the configured routes and
/// the DNS of resolvConf. The lock is held across all range sets, so the allocation is
/// one step; if a range set fails, what this call reserved is released. An attachment
/// that already holds an address in a range set gets that address again.
///
/// With `dry_run` the address that would be given is computed, but nothing is written
/// (no reservation, no `last_reserved_ip`, no directory); the lock is taken if the
/// directory exists.
pub fn allocate(hl: &HostLocal, container_id: &str, ifname: &str, dry_run: bool) -> Result<CniResult, CniError> {
    allocate_tracked(hl, container_id, ifname, dry_run).map(|(r, _)| r)
}

/// [`allocate`], also saying whether this call reserved anything new (false when the
/// attachment already held its addresses): a caller that fails later must release only
/// what it reserved, never a live attachment's addresses.
pub fn allocate_tracked(
    hl: &HostLocal,
    container_id: &str,
    ifname: &str,
    dry_run: bool,
) -> Result<(CniResult, bool), CniError> {
    validate::container_id(container_id).map_err(|e| CniError::invalid_env(format!("CNI_CONTAINERID: {e}")))?;
    validate::ifname(ifname).map_err(|e| CniError::invalid_env(format!("CNI_IFNAME: {e}")))?;
    let dir = hl.store.path();
    let exists = dir.is_dir();
    if !exists && !dry_run {
        store::create_dir(dir)?;
    }
    let _lock = if exists || !dry_run { Some(store::lock(dir)?) } else { None };
    let content = store::content(container_id, ifname);
    let tmp = if dry_run { None } else { Some(TmpFile::create(dir, content.as_bytes())?) };
    let mut alloc = Alloc::new(dir, store::walk(dir)?, container_id, ifname, tmp, content);
    let mut ips = Vec::with_capacity(hl.range_sets.len());
    for (idx, set) in hl.range_sets.iter().enumerate() {
        let requested = hl.requested.get(idx).copied().flatten();
        match alloc.in_set(idx, set, requested) {
            Ok(ip) => ips.push(ip),
            Err(e) => {
                alloc.rollback();
                return Err(e);
            }
        }
    }
    let fresh = !alloc.created.is_empty();
    Ok((CniResult { interfaces: Vec::new(), ips, routes: hl.routes.clone(), dns: hl.dns.clone() }, fresh))
}

fn not_available(msg: String) -> CniError {
    CniError::new(code::PLUGIN_NOT_AVAILABLE, msg)
}

/// The store directory, or the nearest existing parent that ADD would create it in,
/// must be a writable directory.
fn check_writable(dir: &Path) -> Result<(), CniError> {
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    if !existing.is_dir() {
        return Err(not_available(format!("host-local: ipam.dataDir: {} is not a directory", existing.display())));
    }
    let c = CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| not_available(format!("host-local: ipam.dataDir: {} contains a NUL byte", existing.display())))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(not_available(format!("host-local: ipam.dataDir: {} is not writable: {e}", existing.display())));
    }
    Ok(())
}

/// STATUS: code 50 when the data dir is not writable or a range set has no free
/// address (torn reservation files count as free: ADD reclaims them).
pub fn status(hl: &HostLocal) -> Result<(), CniError> {
    let dir = hl.store.path();
    check_writable(dir)?;
    let live = store::walk(dir).map_err(|e| not_available(e.msg))?.live();
    for set in &hl.range_sets {
        let free = set.walk(None, |ip, _| Ok::<_, CniError>(!live.contains(&ip)))?;
        if free.is_none() {
            return Err(not_available(format!(
                "host-local: no IP addresses available in range set {} ({set})",
                set.label
            )));
        }
    }
    Ok(())
}
