//! vrf (chained, reference §3.15): puts the container interface into a VRF.
//!
//! Config: `vrfname` (required), `table` (optional; 0 or absent picks the first id ≥ 1
//! that no other VRF of the container uses).
//!
//! ADD observes the container's links, CNI_IFNAME's addresses and the routes of both
//! families, then plans, in the container:
//! 1. the VRF when it is missing: `ip link add NAME type vrf table T`, up (an existing one
//!    must be a VRF, and on the configured table when one is configured);
//! 2. `ip link set dev IF master NAME` (CNI_IFNAME must have no master yet); enslaving
//!    cycles the link, and the kernel drops its IPv6 addresses unless keep_addr_on_down;
//! 3. the IPv6 global addresses seen before, added again (an address the kernel kept is
//!    fine), then a wait for their duplicate address detection (the reference waits for
//!    their local routes in the VRF table, which appear once DAD is done);
//! 4. CNI_IFNAME's universe-scope main-table routes, seen before, replaced into table T.
//!
//! The result is prevResult. Versions 0.3.1 and later, as the reference.
//!
//! DEL: nothing to do when the netns or the VRF is gone, or the config is one ADD refuses
//! (the reference fails on it); otherwise `nomaster` when CNI_IFNAME is still in the VRF,
//! and the VRF is deleted once no other link is in it. Everything tolerates "already
//! gone" (the reference fails on a missing interface).
//! CHECK: the VRF exists and CNI_IFNAME is in it.

use serde::Deserialize;

use crate::exec::observe::{self, Link, RouteInfo};
use crate::exec::{apply, undo_of};
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan, RouteMode, RouteSpec, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Version};
use crate::validate;

pub struct Vrf;

const PLUGIN: &str = "vrf";
const MAIN: u32 = 254;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConf {
    vrfname: Option<String>,
    table: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrfConf {
    pub name: String,
    pub table: Option<u32>,
}

fn bad(msg: impl std::fmt::Display) -> CniError {
    CniError::config(format!("{PLUGIN}: {msg}"))
}

impl VrfConf {
    pub fn from_cx(cx: &Cx) -> Result<VrfConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let name = raw
            .vrfname
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("configuration is expected to have a valid vrf name (\"vrfname\")"))?;
        validate::ifname(&name).map_err(|e| bad(format!("\"vrfname\": {e}")))?;
        Ok(VrfConf { name, table: raw.table.filter(|t| *t != 0) })
    }
}

/// The routing table of a VRF link, from `ip -j -d link show`.
pub fn vrf_table(link: &Link) -> Option<u32> {
    let info = link.linkinfo.as_ref()?;
    if info.info_kind != "vrf" {
        return None;
    }
    info.info_data.get("table")?.as_u64().and_then(|t| u32::try_from(t).ok())
}

/// What ADD found in the container.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub links: Vec<Link>,
    /// CNI_IFNAME with its addresses.
    pub iface: Option<Link>,
    /// (is IPv6, route) over every table.
    pub routes: Vec<(bool, RouteInfo)>,
}

/// The ADD plan. Pure: no I/O.
pub fn plan_add(conf: &VrfConf, netns: &std::path::Path, ifname: &str, seen: &Seen) -> Result<Plan, CniError> {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut plan = Plan::new();
    let existing = seen.links.iter().find(|l| l.ifname == conf.name);
    let table = match existing {
        Some(l) => {
            let t = vrf_table(l).ok_or_else(|| bad(format!("{} exists and is not a VRF", conf.name)))?;
            if let Some(want) = conf.table
                && want != t
            {
                return Err(bad(format!("VRF {} already exists with routing table {t}, not {want}", conf.name)));
            }
            t
        }
        None => {
            let t = match conf.table {
                Some(t) => t,
                None => {
                    let used: Vec<u32> = seen.links.iter().filter_map(vrf_table).collect();
                    (1..u32::MAX)
                        .find(|t| !used.contains(t))
                        .ok_or_else(|| bad("no free routing table id for the VRF"))?
                }
            };
            let add = Op::LinkAdd(LinkAdd::Vrf { name: conf.name.clone(), table: t });
            plan.push(&ctr, add.clone()).undo(undo_of(&add).expect("link undo"));
            plan.push(&ctr, Op::LinkSet(LinkSet::up(&conf.name)));
            t
        }
    };
    let iface = seen.iface.as_ref().ok_or_else(|| bad(format!("container interface {ifname} does not exist")))?;
    if let Some(m) = iface.master.as_deref().filter(|m| !m.is_empty()) {
        return Err(bad(format!("interface {ifname} already has a master: {m}")));
    }
    plan.push(&ctr, Op::LinkSet(LinkSet { master: Some(conf.name.clone()), ..LinkSet::dev(ifname) }))
        .undo(Op::LinkNoMaster { dev: ifname.to_string() });
    let v6: Vec<_> = iface
        .addr_info
        .iter()
        .filter(|a| a.family == "inet6" && a.scope == "global")
        .filter_map(|a| a.network())
        .collect();
    for addr in &v6 {
        plan.push(&ctr, Op::AddrAdd { dev: ifname.to_string(), addr: *addr }).tolerate(Tolerate::Exists);
    }
    if !v6.is_empty() {
        plan.push(&ctr, Op::WaitDad { dev: ifname.to_string() });
    }
    for (is_v6, r) in &seen.routes {
        let universe = matches!(r.scope.as_deref(), None | Some("0"));
        if r.dev.as_deref() != Some(ifname) || r.table_id() != Some(MAIN) || !r.is_unicast() || !universe {
            continue;
        }
        let Some(dst) = r.dst_net(*is_v6) else { continue };
        let mut spec = RouteSpec::new(dst, ifname);
        spec.via = r.gateway.as_deref().and_then(|g| g.parse().ok());
        spec.src = r.prefsrc.as_deref().and_then(|g| g.parse().ok());
        spec.metric = r.metric.filter(|m| *m != 0);
        spec.table = Some(table);
        plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Replace, route: spec.clone() })
            .undo(Op::RouteDel { route: spec });
    }
    Ok(plan)
}

/// The DEL plan from the container's links. Pure.
pub fn plan_del(conf: &VrfConf, netns: &std::path::Path, ifname: &str, links: &[Link]) -> Plan {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut plan = Plan::new();
    if !links.iter().any(|l| l.ifname == conf.name && vrf_table(l).is_some()) {
        return plan;
    }
    let in_vrf = |l: &&Link| l.master.as_deref() == Some(conf.name.as_str());
    if links.iter().filter(in_vrf).any(|l| l.ifname == ifname) {
        plan.push(&ctr, Op::LinkNoMaster { dev: ifname.to_string() }).tolerate(Tolerate::Missing);
    }
    if !links.iter().filter(in_vrf).any(|l| l.ifname != ifname) {
        plan.push(&ctr, Op::LinkDel { dev: conf.name.clone() }).tolerate(Tolerate::Missing);
    }
    plan
}

fn require_prev(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf.prev_result.clone().ok_or_else(|| bad("missing prevResult from earlier plugin"))
}

impl Plugin for Vrf {
    fn name(&self) -> &'static str {
        "vrf"
    }
    fn about(&self) -> &'static str {
        "CNI vrf plugin (ipcni)"
    }
    fn versions(&self) -> &'static [Version] {
        &[Version::V031, Version::V040, Version::V100, Version::V110]
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = VrfConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        let netns = cx.netns_path()?;
        let ifname = cx.env.ifname.clone();
        let ctr = Netns::Container(netns.clone());
        let mut seen = Seen { links: observe::links(cx.obs, &ctr)?, ..Seen::default() };
        seen.iface = observe::link_addrs(cx.obs, &ctr, &ifname)?;
        for v6 in [false, true] {
            seen.routes.extend(observe::all_routes(cx.obs, &ctr, v6)?.into_iter().map(|r| (v6, r)));
        }
        apply(cx.exec, &plan_add(&conf, &netns, &ifname, &seen)?)?;
        Ok(prev)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // ADD refuses such a config before doing anything: nothing to undo.
        let conf = match VrfConf::from_cx(cx) {
            Ok(c) => c,
            Err(e) => {
                crate::exec::log(&format!("{PLUGIN}: DEL with a config ADD refuses ({e}): nothing to do"));
                return Ok(());
            }
        };
        let NetnsState::Present(netns) = cx.netns.clone() else { return Ok(()) };
        let links = observe::links(cx.obs, &Netns::Container(netns.clone()))?;
        apply(cx.exec, &plan_del(&conf, &netns, &cx.env.ifname, &links))
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = VrfConf::from_cx(cx)?;
        require_prev(cx)?;
        let netns = cx.netns_path()?;
        let links = observe::links(cx.obs, &Netns::Container(netns))?;
        let vrf = links
            .iter()
            .find(|l| l.ifname == conf.name)
            .ok_or_else(|| CniError::check(format!("{PLUGIN}: VRF {} is missing", conf.name)))?;
        let table = vrf_table(vrf).ok_or_else(|| CniError::check(format!("{PLUGIN}: {} is not a VRF", conf.name)))?;
        if let Some(want) = conf.table
            && want != table
        {
            return Err(CniError::check(format!("{PLUGIN}: VRF {} has table {table}, configured {want}", conf.name)));
        }
        let ifname = &cx.env.ifname;
        if !links.iter().any(|l| &l.ifname == ifname && l.master.as_deref() == Some(conf.name.as_str())) {
            return Err(CniError::check(format!("{PLUGIN}: {ifname} is not in VRF {}", conf.name)));
        }
        Ok(())
    }
}
