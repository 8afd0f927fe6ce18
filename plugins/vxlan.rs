//! vxlan: attaches a container to a VXLAN overlay (not a reference plugin; ipcni's own).
//!
//! ```json
//! {
//!   "cniVersion": "1.0.0", "name": "overlay", "type": "vxlan",
//!   "vni": 42,                          // required, 1-16777215
//!   "dev": "eth1",                      // underlay device ("master" is an alias); optional
//!   "local": "192.168.1.10",            // source address of the encapsulated packets; optional
//!   "remotes": ["192.168.1.11"],        // unicast peers (VTEPs) ...
//!   "group": "239.1.1.42",              // ... or a multicast group (needs "dev"); one of the two
//!   "dstport": 4789,                    // UDP port, default 4789
//!   "mtu": 1450,                        // default: the underlay's MTU - 50 (IPv6 underlay: - 70)
//!   "learning": true,                   // learn remote MACs from traffic, default true
//!   "bridge": "vxbr42",                 // default "vxbr<vni>"
//!   "ipam": { ... }                     // optional
//! }
//! ```
//!
//! Topology on each node: one VXLAN device `vxlan<vni>` and one bridge (`bridge`) per VNI,
//! shared by every container of that VNI on the node, and a veth per container whose
//! host end is a port of that bridge. With `remotes` the VXLAN device's flood list is
//! `bridge fdb append 00:00:00:00:00:00 dev vxlan<vni> dst PEER` per peer (head-end
//! replication: broadcast and unknown unicast go to every peer); with `group` the kernel
//! floods to the multicast group over `dev`. Without `dev` the kernel picks the underlay
//! by route at transmit time, and the default MTU assumes a 1500-byte underlay.
//!
//! ADD reuses the bridge plugin's plan (`bridge::plan_add`: the bridge if absent, the
//! veth pair, the container's addresses and routes), with the bridge MTU and the veth MTU
//! set to the overlay MTU, then adds the VXLAN device if absent (enslaved to the bridge,
//! up) and the flood entries that are missing. Shared objects are observed and changed
//! under the host locks `vxlan-<vni>` then `bridge-<bridge>` (the bridge plugin's own lock
//! for that bridge). An existing `vxlan<vni>` that is not a VXLAN device, or carries
//! another VNI or port, is a configuration error. Flood entries are only ever added: two
//! configs naming the same VNI are one overlay, and a peer removed from a config stays
//! until the device is removed. `isGateway`/`ipMasq` are not offered: every node's bridge
//! is on the same L2 segment, so a gateway address per node would be a duplicate address.
//!
//! DEL removes the container's veth (its host end goes with it) and the IPAM reservation.
//! The shared VXLAN device, its flood entries and the bridge stay, as the bridge plugin's
//! bridge does: other containers of the VNI (or of other networks naming the same VNI)
//! may be using them, keeping them makes DEL need no observation and no lock, and it
//! avoids tearing down and rebuilding the overlay (and its learned forwarding state) on
//! every pod churn of a node with a single pod. `ip link del vxlan<vni>` and the bridge
//! are the manual cleanup.

use std::net::IpAddr;

use serde::Deserialize;

use super::bridge::{self, BridgeConf};
use super::shared::{iface, sublink};
use crate::exec::observe::{self, FdbEntry, Link};
use crate::exec::{apply, undo_of};
use crate::names;
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan, Sysctl, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult};
use crate::validate;

pub struct Vxlan;

const PLUGIN: &str = "vxlan";
pub const DEFAULT_PORT: u16 = 4789;
/// The all-zero MAC: a VXLAN device's default (flood) destination.
pub const FLOOD_MAC: &str = "00:00:00:00:00:00";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    vni: Option<i64>,
    #[serde(alias = "master")]
    dev: Option<String>,
    local: Option<String>,
    group: Option<String>,
    remotes: Option<Vec<String>>,
    dstport: Option<i64>,
    mtu: Option<i64>,
    learning: Option<bool>,
    bridge: Option<String>,
}

/// The validated vxlan configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConf {
    pub vni: u32,
    pub dev: Option<String>,
    pub local: Option<IpAddr>,
    pub group: Option<IpAddr>,
    pub remotes: Vec<IpAddr>,
    pub dstport: u16,
    /// As configured; the effective MTU also depends on the underlay (`mtu_for`).
    pub mtu: Option<u32>,
    pub learning: bool,
    pub bridge: String,
    pub has_ipam: bool,
    /// The runtime's MAC request for the container interface.
    pub mac: Option<String>,
}

fn ip(s: &str, field: &str) -> Result<IpAddr, CniError> {
    s.parse().map_err(|_| CniError::config(format!("vxlan: {field} {s:?} is not an IP address")))
}

impl VxlanConf {
    fn from_raw(raw: RawConf, mac: Option<String>, has_ipam: bool) -> Result<VxlanConf, CniError> {
        let vni = match raw.vni {
            None => return Err(CniError::config("vxlan: \"vni\" is required")),
            Some(v) if (1..=16_777_215).contains(&v) => v as u32,
            Some(v) => return Err(CniError::config(format!("vxlan: \"vni\" {v} is out of range 1-16777215"))),
        };
        let dev = match raw.dev.filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => {
                validate::ifname(&d).map_err(|e| CniError::config(format!("vxlan: \"dev\": {e}")))?;
                Some(d)
            }
        };
        let local = match raw.local.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let a = ip(&s, "\"local\"")?;
                if a.is_multicast() || a.is_unspecified() {
                    return Err(CniError::config(format!("vxlan: \"local\" {a} is not a unicast address")));
                }
                Some(a)
            }
        };
        let group = match raw.group.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let a = ip(&s, "\"group\"")?;
                if !a.is_multicast() {
                    return Err(CniError::config(format!("vxlan: \"group\" {a} is not a multicast address")));
                }
                if dev.is_none() {
                    return Err(CniError::config("vxlan: a multicast \"group\" needs \"dev\" (the underlay device)"));
                }
                Some(a)
            }
        };
        let mut remotes = Vec::new();
        for (i, r) in raw.remotes.unwrap_or_default().iter().enumerate() {
            let a = ip(r, &format!("remotes[{i}]"))?;
            if a.is_multicast() || a.is_unspecified() || a.is_loopback() {
                return Err(CniError::config(format!("vxlan: remotes[{i}] {a} is not a unicast peer address")));
            }
            if Some(a) == local {
                return Err(CniError::config(format!("vxlan: remotes[{i}] {a} is the \"local\" address")));
            }
            if !remotes.contains(&a) {
                remotes.push(a);
            }
        }
        match (group.is_some(), remotes.is_empty()) {
            (true, false) => return Err(CniError::config("vxlan: give either \"group\" or \"remotes\", not both")),
            (false, true) => {
                return Err(CniError::config("vxlan: give \"remotes\" (unicast peers) or \"group\" (multicast)"));
            }
            _ => {}
        }
        let v4 = local.or(group).or(remotes.first().copied()).is_none_or(|a| a.is_ipv4());
        if local.iter().chain(group.iter()).chain(remotes.iter()).any(|a| a.is_ipv4() != v4) {
            return Err(CniError::config("vxlan: \"local\", \"group\" and \"remotes\" must all be IPv4 or all IPv6"));
        }
        let dstport = match raw.dstport {
            None | Some(0) => DEFAULT_PORT,
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => return Err(CniError::config(format!("vxlan: \"dstport\" {p} is out of range 1-65535"))),
        };
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(CniError::config(format!("vxlan: \"mtu\" {m} is out of range 68-65535"))),
        };
        let bridge = raw.bridge.filter(|b| !b.is_empty()).unwrap_or_else(|| format!("vxbr{vni}"));
        validate::ifname(&bridge).map_err(|e| CniError::config(format!("vxlan: \"bridge\": {e}")))?;
        Ok(VxlanConf {
            vni,
            dev,
            local,
            group,
            remotes,
            dstport,
            mtu,
            learning: raw.learning.unwrap_or(true),
            bridge,
            has_ipam,
            mac,
        })
    }

    pub fn from_cx(cx: &Cx) -> Result<VxlanConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let mac = sublink::requested_mac(cx, PLUGIN, None)?;
        VxlanConf::from_raw(raw, mac, cx.conf.ipam_type.is_some())
    }

    /// The shared VXLAN device of this VNI.
    pub fn device(&self) -> String {
        format!("vxlan{}", self.vni)
    }

    fn is_ipv6(&self) -> bool {
        self.local.or(self.group).or(self.remotes.first().copied()).is_some_and(|a| a.is_ipv6())
    }

    /// The overlay MTU: configured, else the underlay's minus the encapsulation (outer
    /// Ethernet 14 + IP 20/40 + UDP 8 + VXLAN 8), the underlay being 1500 when unknown.
    pub fn mtu_for(&self, underlay_mtu: Option<u32>) -> Result<u32, CniError> {
        if let Some(m) = self.mtu {
            return Ok(m);
        }
        let overhead = if self.is_ipv6() { 70 } else { 50 };
        let m = underlay_mtu.unwrap_or(1500).saturating_sub(overhead);
        if m < 68 {
            return Err(CniError::config(format!("vxlan: the underlay MTU leaves {m} for the overlay; set \"mtu\"")));
        }
        Ok(m)
    }

    /// The bridge plugin's configuration for the bridge and veth part.
    fn bridge_conf(&self, mtu: u32) -> BridgeConf {
        BridgeConf {
            bridge: self.bridge.clone(),
            mtu: Some(mtu),
            has_ipam: self.has_ipam,
            mac: self.mac.clone(),
            ..BridgeConf::default()
        }
    }
}

/// What ADD found on the host (under the locks).
#[derive(Debug, Clone, Default)]
pub struct HostState {
    pub bridge: Option<Link>,
    pub vxlan: Option<Link>,
    /// The VXLAN device's forwarding entries (when it exists).
    pub fdb: Vec<FdbEntry>,
    /// The MTU of `dev`, when configured.
    pub underlay_mtu: Option<u32>,
}

fn info_u64(l: &Link, key: &str) -> Option<u64> {
    l.linkinfo.as_ref()?.info_data.get(key)?.as_u64()
}

/// Refuses shared objects that are in the way (ADD checks this before IPAM runs, so a
/// refusal allocates nothing). Pure.
pub fn check_host(conf: &VxlanConf, state: &HostState) -> Result<(), CniError> {
    let vx = conf.device();
    conf.mtu_for(state.underlay_mtu)?;
    if let Some(b) = &state.bridge
        && b.kind() != "bridge"
    {
        return Err(CniError::config(format!("vxlan: {:?} already exists but is not a bridge", conf.bridge)));
    }
    if let Some(l) = &state.vxlan {
        if l.kind() != "vxlan" {
            return Err(CniError::config(format!("vxlan: {vx:?} already exists but is not a VXLAN device")));
        }
        if info_u64(l, "id") != Some(u64::from(conf.vni)) {
            return Err(CniError::config(format!(
                "vxlan: {vx:?} already exists with VNI {}, not {}",
                info_u64(l, "id").map_or("(unknown)".to_string(), |v| v.to_string()),
                conf.vni
            )));
        }
        if let Some(port) = info_u64(l, "port")
            && port != u64::from(conf.dstport)
        {
            return Err(CniError::config(format!(
                "vxlan: {vx:?} already exists with dstport {port}, not {}",
                conf.dstport
            )));
        }
    }
    Ok(())
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    conf: &VxlanConf,
    target: &bridge::Target,
    state: &HostState,
    ipam: Option<&CniResult>,
) -> Result<(Plan, CniResult), CniError> {
    check_host(conf, state)?;
    let host = Netns::Host;
    let vx = conf.device();
    let mtu = conf.mtu_for(state.underlay_mtu)?;
    let bridge_state = bridge::HostState { bridge: state.bridge.clone(), vlan_gateway: None };
    let (mut plan, result) = bridge::plan_add(&conf.bridge_conf(mtu), target, &bridge_state, ipam, None)?;

    let present: Vec<IpAddr> = match &state.vxlan {
        None => {
            let add = Op::LinkAdd(LinkAdd::Vxlan {
                name: vx.clone(),
                vni: conf.vni,
                mtu: Some(mtu),
                mac: None,
                local: conf.local,
                group: conf.group,
                dev: conf.dev.clone(),
                dstport: conf.dstport,
                learning: conf.learning,
            });
            plan.push(&host, add.clone()).undo(undo_of(&add).expect("link undo"));
            plan.push(&host, Op::LinkSet(LinkSet { master: Some(conf.bridge.clone()), ..LinkSet::up(&vx) }));
            plan.push(&host, Op::Sysctl(Sysctl::iface("ipv6", &vx, "accept_ra", "0"))).tolerate(Tolerate::Any);
            Vec::new()
        }
        Some(l) => {
            if l.master.as_deref() != Some(conf.bridge.as_str()) || !l.is_up() {
                plan.push(&host, Op::LinkSet(LinkSet { master: Some(conf.bridge.clone()), ..LinkSet::up(&vx) }));
            }
            state.fdb.iter().filter(|e| e.mac == FLOOD_MAC).filter_map(|e| e.dst.as_deref()?.parse().ok()).collect()
        }
    };
    for r in conf.remotes.iter().filter(|r| !present.contains(r)) {
        let add = Op::FdbAppend { dev: vx.clone(), mac: FLOOD_MAC.to_string(), dst: *r };
        plan.push(&host, add.clone()).undo(undo_of(&add).expect("fdb undo"));
    }
    Ok((plan, result))
}

fn observe_host(cx: &mut Cx, conf: &VxlanConf) -> Result<HostState, CniError> {
    let underlay_mtu = match &conf.dev {
        None => None,
        Some(d) => Some(
            observe::link_addrs(cx.obs, &Netns::Host, d)?
                .ok_or_else(|| CniError::config(format!("vxlan: \"dev\" {d:?} does not exist in the host namespace")))?
                .mtu,
        ),
    };
    let vx = conf.device();
    let vxlan = observe::link_addrs(cx.obs, &Netns::Host, &vx)?;
    let fdb = if vxlan.as_ref().is_some_and(|l| l.kind() == "vxlan") && !conf.remotes.is_empty() {
        observe::fdb(cx.obs, &Netns::Host, &vx)?.unwrap_or_default()
    } else {
        Vec::new()
    };
    let bridge = observe::link_addrs(cx.obs, &Netns::Host, &conf.bridge)?;
    Ok(HostState { bridge, vxlan, fdb, underlay_mtu })
}

impl Plugin for Vxlan {
    fn name(&self) -> &'static str {
        "vxlan"
    }
    fn about(&self) -> &'static str {
        "CNI vxlan overlay plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = VxlanConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        // Always in this order: the VNI's device, then its bridge (the bridge plugin's
        // lock for that bridge), so no two ADDs wait on each other crosswise.
        let _vni_lock = cx.lock(&format!("vxlan-{}", conf.vni))?;
        let _bridge_lock = cx.lock(&format!("bridge-{}", conf.bridge))?;
        let state = observe_host(cx, &conf)?;
        check_host(&conf, &state)?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = bridge::Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| {
            let (plan, mut result) = plan_add(&conf, &target, &state, ipam)?;
            if let Some(d) = dns.filter(|d| !d.is_empty()) {
                result.dns = d;
            }
            Ok((plan, result))
        })
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // Only the names are needed: a DEL with a config that no longer validates (or
        // whose underlay is gone) still removes the veth and releases the address.
        let network = cx.conf.require_name()?.to_string();
        let mut plan = Plan::new();
        match &cx.netns {
            NetnsState::Present(p) => {
                plan.push(&Netns::Container(p.clone()), Op::LinkDel { dev: cx.env.ifname.clone() })
                    .tolerate(Tolerate::Missing);
            }
            _ => {
                let host_veth = names::host_veth(&network, &cx.env.container_id, &cx.env.ifname);
                if observe::link_addrs(cx.obs, &Netns::Host, &host_veth)?.is_some() {
                    plan.push(&Netns::Host, Op::LinkDel { dev: host_veth }).tolerate(Tolerate::Missing);
                }
            }
        }
        let links = apply(cx.exec, &plan);
        let ipam = if cx.conf.ipam_type.is_some() { cx.ipam.del(cx.env, cx.conf) } else { Ok(()) };
        links.and(ipam)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = VxlanConf::from_cx(cx)?;
        let netns = cx.netns_path()?;
        let prev = cx.conf.prev_result.clone().ok_or_else(|| CniError::config("vxlan: CHECK requires prevResult"))?;
        if conf.has_ipam {
            cx.ipam.check(cx.env, cx.conf)?;
        }
        let vx = conf.device();
        let dev = observe::link_addrs(cx.obs, &Netns::Host, &vx)?
            .ok_or_else(|| CniError::check(format!("vxlan: {vx} is missing")))?;
        if dev.kind() != "vxlan" || info_u64(&dev, "id") != Some(u64::from(conf.vni)) {
            return Err(CniError::check(format!("vxlan: {vx} is not a VXLAN device with VNI {}", conf.vni)));
        }
        if dev.master.as_deref() != Some(conf.bridge.as_str()) || !dev.is_up() {
            return Err(CniError::check(format!("vxlan: {vx} is not up on bridge {}", conf.bridge)));
        }
        if !conf.remotes.is_empty() {
            let fdb = observe::fdb(cx.obs, &Netns::Host, &vx)?.unwrap_or_default();
            for r in &conf.remotes {
                let there =
                    fdb.iter().any(|e| e.mac == FLOOD_MAC && e.dst.as_deref().and_then(|d| d.parse().ok()) == Some(*r));
                if !there {
                    return Err(CniError::check(format!("vxlan: {vx} does not flood to peer {r}")));
                }
            }
        }
        let ifname = cx.env.ifname.clone();
        let idx = prev
            .sandbox_interface(&ifname)
            .ok_or_else(|| CniError::check(format!("vxlan: prevResult has no sandboxed interface {ifname:?}")))?;
        let want = &prev.interfaces[idx];
        if want.sandbox != netns.display().to_string() {
            return Err(CniError::check(format!(
                "vxlan: interface {ifname} is in sandbox {}, not CNI_NETNS {}",
                want.sandbox,
                netns.display()
            )));
        }
        let ctr = Netns::Container(netns.clone());
        let link = observe::link_addrs(cx.obs, &ctr, &ifname)?
            .ok_or_else(|| CniError::check(format!("vxlan: container interface {ifname} is missing")))?;
        if link.kind() != "veth" {
            return Err(CniError::check(format!("vxlan: container interface {ifname} is not a veth")));
        }
        if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&link.address) {
            return Err(CniError::check(format!(
                "vxlan: container interface {ifname} has MAC {}, expected {}",
                link.address, want.mac
            )));
        }
        let ports = observe::bridge_ports(cx.obs, &Netns::Host, &conf.bridge)?;
        if !ports.iter().any(|p| Some(p.ifindex) == link.link_index && p.kind() == "veth") {
            return Err(CniError::check(format!(
                "vxlan: no veth on bridge {} is the peer of container interface {ifname}",
                conf.bridge
            )));
        }
        let v4 = observe::routes(cx.obs, &ctr, &ifname, false)?;
        let v6 = if prev.ips.iter().any(|i| i.address.is_ipv6()) || prev.routes.iter().any(|r| r.dst.is_ipv6()) {
            observe::routes(cx.obs, &ctr, &ifname, true)?
        } else {
            Vec::new()
        };
        iface::check_configured(&link, &v4, &v6, idx, &prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: serde_json::Value) -> Result<VxlanConf, CniError> {
        let raw: RawConf = serde_json::from_value(v).map_err(|e| CniError::config(e.to_string()))?;
        VxlanConf::from_raw(raw, None, false)
    }

    #[test]
    fn defaults_and_names() {
        let c = conf(serde_json::json!({"vni": 42, "remotes": ["192.168.1.2", "192.168.1.2", "192.168.1.3"]})).unwrap();
        assert_eq!((c.device(), c.bridge.as_str(), c.dstport, c.learning), ("vxlan42".into(), "vxbr42", 4789, true));
        assert_eq!(c.remotes.len(), 2, "duplicates are dropped");
        assert_eq!(c.mtu_for(Some(9000)).unwrap(), 8950);
        assert_eq!(c.mtu_for(None).unwrap(), 1450);
        let c = conf(serde_json::json!({"vni": 16777215, "remotes": ["fd00::2"], "master": "eth1"})).unwrap();
        assert_eq!((c.device(), c.dev.as_deref()), ("vxlan16777215".into(), Some("eth1")));
        assert_eq!(c.mtu_for(Some(1500)).unwrap(), 1430);
        assert!(validate::ifname(&c.device()).is_ok() && validate::ifname(&c.bridge).is_ok());
        let c =
            conf(serde_json::json!({"vni": 7, "group": "239.1.1.7", "dev": "eth1", "mtu": 1400, "learning": false}))
                .unwrap();
        assert_eq!((c.mtu_for(Some(9000)).unwrap(), c.learning), (1400, false));
    }

    #[test]
    fn bad_configs_are_code_7() {
        for bad in [
            serde_json::json!({"remotes": ["10.0.0.1"]}),
            serde_json::json!({"vni": 0, "remotes": ["10.0.0.1"]}),
            serde_json::json!({"vni": 16777216, "remotes": ["10.0.0.1"]}),
            serde_json::json!({"vni": 1}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "group": "239.0.0.1", "dev": "e"}),
            serde_json::json!({"vni": 1, "group": "239.0.0.1"}),
            serde_json::json!({"vni": 1, "group": "10.0.0.1", "dev": "e"}),
            serde_json::json!({"vni": 1, "remotes": ["239.0.0.1"]}),
            serde_json::json!({"vni": 1, "remotes": ["not-an-ip"]}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "local": "fd00::1"}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "local": "10.0.0.1"}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "dstport": 65536}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "mtu": 67}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "bridge": "a-very-long-bridge-name"}),
            serde_json::json!({"vni": 1, "remotes": ["10.0.0.1"], "dev": "eth 1"}),
        ] {
            assert_eq!(conf(bad.clone()).unwrap_err().code, 7, "{bad}");
        }
    }
}
