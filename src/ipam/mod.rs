//! host-local IPAM as a library: configuration (§2.2), the on-disk store shared with the
//! reference plugin (§2.3), allocation order (§2.4), and DEL / CHECK / GC / STATUS (§2.5).
//!
//! Differences from the reference plugin, all deliberate:
//! - a second ADD for the same `(containerID, ifname)` returns the address it already
//!   holds instead of failing with "duplicate allocation is not allowed";
//! - reservations are written atomically (temporary file + hard link), and empty or
//!   garbled reservation files are reclaimed under the lock instead of leaking;
//! - the lock is held across all range sets of one ADD, so the allocation is one step;
//! - requested addresses are placed and checked while parsing, before anything is
//!   reserved;
//! - DEL and GC need only the store directory ([`StoreDir`]), so they work when the
//!   ranges no longer parse; DEL on a missing directory succeeds without creating it;
//! - GC and STATUS are implemented.

mod allocator;
mod cleanup;
mod config;
mod range;
mod store;

#[cfg(test)]
mod tests;

pub use allocator::{allocate, allocate_tracked, status};
pub use cleanup::{check, gc, release};
pub use config::{DEFAULT_DATA_DIR, HostLocal, StoreDir, parse_resolv_conf, read_resolv_conf};
pub use range::{Range, RangeSet};
pub use store::{LAST_RESERVED_PREFIX, LOCK_FILE, Owner};
