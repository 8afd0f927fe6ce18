//! The plugins. Each is pure planning over the traits in `skel::Cx`: it observes through
//! `cx.obs`, changes the system only through `cx.exec`, and allocates through `cx.ipam`.

pub mod bandwidth;
pub mod bridge;
pub mod dummy;
pub mod firewall;
pub mod host_device;
pub mod host_local;
pub mod ipvlan;
pub mod loopback;
pub mod macvlan;
pub mod portmap;
pub mod ptp;
pub mod sbr;
pub mod shared;
pub mod static_ipam;
pub mod tap;
pub mod tuning;
pub mod vlan;
pub mod vrf;
pub mod vxlan;

use crate::delegate::BuiltinIpam;
use crate::skel::Plugin;

/// Every plugin ipcni provides, by the name a runtime execs.
pub fn all() -> &'static [&'static dyn Plugin] {
    &[
        &bridge::Bridge,
        &dummy::Dummy,
        &ipvlan::Ipvlan,
        &macvlan::Macvlan,
        &vlan::Vlan,
        &host_local::HostLocalPlugin,
        &loopback::Loopback,
        &ptp::Ptp,
        &static_ipam::StaticIpam,
        &tap::Tap,
        &host_device::HostDevice,
        &vxlan::Vxlan,
        &tuning::Tuning,
        &bandwidth::Bandwidth,
        &sbr::Sbr,
        &vrf::Vrf,
        &portmap::Portmap,
        &firewall::Firewall,
    ]
}

pub fn lookup(name: &str) -> Option<&'static dyn Plugin> {
    all().iter().copied().find(|p| p.name() == name)
}

/// IPAM types that can run in-process when delegated to.
pub fn builtin_ipam(name: &str) -> Option<&'static dyn BuiltinIpam> {
    match name {
        "host-local" => Some(&host_local::HostLocalPlugin),
        "static" => Some(&static_ipam::StaticIpam),
        _ => None,
    }
}
