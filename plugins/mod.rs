//! The plugins. Each is pure planning over the traits in `skel::Cx`: it observes through
//! `cx.obs`, changes the system only through `cx.exec`, and allocates through `cx.ipam`.

pub mod bridge;
pub mod host_local;
pub mod loopback;
pub mod shared;

use crate::delegate::BuiltinIpam;
use crate::skel::Plugin;

/// Every plugin ipcni provides, by the name a runtime execs.
pub fn all() -> &'static [&'static dyn Plugin] {
    &[&bridge::Bridge, &host_local::HostLocalPlugin, &loopback::Loopback]
}

pub fn lookup(name: &str) -> Option<&'static dyn Plugin> {
    all().iter().copied().find(|p| p.name() == name)
}

/// IPAM types that can run in-process when delegated to.
pub fn builtin_ipam(name: &str) -> Option<&'static dyn BuiltinIpam> {
    match name {
        "host-local" => Some(&host_local::HostLocalPlugin),
        _ => None,
    }
}
