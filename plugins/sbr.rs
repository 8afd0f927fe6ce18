//! sbr (chained, reference §3.14): source-based routing for the container interface.
//!
//! Config: `table` (a fixed table id), `gateways` (at most one IPv4 and one IPv6 static
//! gateway), `addSourceHints`.
//!
//! ADD takes prevResult's addresses of CNI_IFNAME (and those with no interface index) and,
//! under a host lock keyed by the netns path (the reference locks the netns file):
//! - with `table`: `ip rule add from IP/32|/128 table T` for each address, nothing else;
//! - otherwise, after observing the container's rules and routes (both families), each
//!   address gets its own table, the first id ≥ 100 that no rule and no route uses:
//!   `ip rule add from IP table N` (no priority: the kernel places it as netlink does),
//!   a default route via the static gateway of its family or else the address's
//!   gateway, and a copy of CNI_IFNAME's main-table routes whose source or gateway lies
//!   in the address's subnet, or that have neither (but not a main default route of a
//!   static gateway's family: it would replace that one); then CNI_IFNAME's main-table
//!   routes are deleted (with `addSourceHints`: the subnet routes are replaced by ones
//!   with a `src` hint and only the non-link-scope routes are deleted).
//!
//! Every step carries its undo (rules and table routes deleted, deleted main routes put
//! back), so a failed ADD leaves the container as it was. The result is prevResult.
//!
//! DEL deletes the rules whose source is one of CNI_IFNAME's addresses (its current ones,
//! and prevResult's when the interface is already gone; with `table`, only rules to that
//! table) and, without `table`, the routes of the tables those rules used once no other
//! rule uses them (the reference leaves both to the device's removal). A gone netns, or a
//! config ADD refuses, is success (the reference fails on both). CHECK verifies the rules
//! exist.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::exec::apply;
use crate::exec::observe::{self, RouteInfo, RuleInfo};
use crate::names;
use crate::plan::{Netns, Op, Plan, RouteMode, RouteScope, RouteSpec, RuleSpec, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, IpConfig};

pub struct Sbr;

const PLUGIN: &str = "sbr";
const FIRST_TABLE: u32 = 100;
const MAIN: u32 = 254;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawConf {
    table: Option<i64>,
    gateways: Vec<String>,
    add_source_hints: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbrConf {
    pub table: Option<u32>,
    pub gw_v4: Option<IpAddr>,
    pub gw_v6: Option<IpAddr>,
    pub add_source_hints: bool,
}

fn bad(msg: impl std::fmt::Display) -> CniError {
    CniError::config(format!("{PLUGIN}: {msg}"))
}

impl SbrConf {
    pub fn from_cx(cx: &Cx) -> Result<SbrConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let table = match raw.table {
            None => None,
            Some(t) if (1..=i64::from(u32::MAX)).contains(&t) => Some(t as u32),
            Some(t) => return Err(bad(format!("\"table\" {t} is out of range 1-{}", u32::MAX))),
        };
        if raw.gateways.len() > 2 {
            return Err(bad("\"gateways\" holds at most 2 entries (one IPv4, one IPv6)"));
        }
        let mut conf = SbrConf { table, add_source_hints: raw.add_source_hints, ..SbrConf::default() };
        for g in &raw.gateways {
            let ip: IpAddr = g.parse().map_err(|_| bad(format!("invalid static gateway IP address {g:?}")))?;
            let slot = if ip.is_ipv4() { &mut conf.gw_v4 } else { &mut conf.gw_v6 };
            if let Some(old) = slot {
                return Err(bad(format!("\"gateways\" has two addresses of one family: {old} and {ip}")));
            }
            *slot = Some(ip);
        }
        Ok(conf)
    }
}

/// prevResult's addresses for `ifname`: those whose interface is it, and those with no
/// (or a dangling) interface index, as the reference.
pub fn addresses_of(prev: &CniResult, ifname: &str) -> Vec<IpConfig> {
    prev.ips
        .iter()
        .filter(|ip| match ip.interface {
            None => true,
            Some(i) => prev.interfaces.get(i).is_none_or(|iface| iface.name == ifname),
        })
        .cloned()
        .collect()
}

fn host_prefix(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix")
}

/// What ADD saw in the container (both families).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub rules: Vec<RuleInfo>,
    /// (is IPv6, route) over every table.
    pub routes: Vec<(bool, RouteInfo)>,
}

impl Seen {
    fn used_tables(&self) -> BTreeSet<u32> {
        self.rules
            .iter()
            .filter_map(RuleInfo::table_id)
            .chain(self.routes.iter().filter_map(|(_, r)| r.table_id()))
            .collect()
    }
}

fn next_free(used: &BTreeSet<u32>, from: u32) -> u32 {
    (from..).find(|t| !used.contains(t)).expect("a free table id")
}

/// A listed route as a spec on `dev`; None when it does not parse (left alone).
fn spec_of(v6: bool, r: &RouteInfo, dev: &str) -> Option<RouteSpec> {
    let mut s = RouteSpec::new(r.dst_net(v6)?, dev);
    s.via = match &r.gateway {
        None => None,
        Some(g) => Some(g.parse().ok()?),
    };
    s.src = match &r.prefsrc {
        None => None,
        Some(g) => Some(g.parse().ok()?),
    };
    s.scope = match r.scope.as_deref() {
        None | Some("0") => None,
        Some(n) => Some(RouteScope::from_number(n.parse().ok()?)?),
    };
    s.metric = r.metric.filter(|m| *m != 0);
    Some(s)
}

/// The ADD plan. Pure: no I/O.
pub fn plan_add(conf: &SbrConf, netns: &std::path::Path, ifname: &str, ips: &[IpConfig], seen: &Seen) -> Plan {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut plan = Plan::new();
    let rule_add = |plan: &mut Plan, ip: IpAddr, table: u32| {
        let rule = RuleSpec { src: host_prefix(ip), table, priority: None };
        plan.push(&ctr, Op::RuleAdd { rule: rule.clone() }).undo(Op::RuleDel { rule });
    };
    if let Some(t) = conf.table {
        for ip in ips {
            rule_add(&mut plan, ip.address.ip(), t);
        }
        return plan;
    }
    let main_routes: Vec<(bool, RouteSpec)> = seen
        .routes
        .iter()
        .filter(|(_, r)| r.dev.as_deref() == Some(ifname) && r.table_id() == Some(MAIN) && r.is_unicast())
        .filter_map(|(v6, r)| Some((*v6, spec_of(*v6, r, ifname)?)))
        .collect();
    let used = seen.used_tables();
    let mut table = next_free(&used, FIRST_TABLE);
    for ip in ips {
        rule_add(&mut plan, ip.address.ip(), table);
        let static_gw = if ip.address.is_ipv4() { conf.gw_v4 } else { conf.gw_v6 };
        let gw = static_gw.or(ip.gateway);
        if let Some(gw) = gw {
            let dst = if ip.address.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            let mut r = RouteSpec::new(dst.parse().expect("default"), ifname);
            r.via = Some(gw);
            r.table = Some(table);
            plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Add, route: r.clone() }).undo(Op::RouteDel { route: r });
        }
        for (_, r) in &main_routes {
            // A static gateway makes the table's default route: a copy of the main table's
            // default of that family would replace it.
            if static_gw.is_some() && r.dst.prefix() == 0 && r.dst.is_ipv4() == ip.address.is_ipv4() {
                continue;
            }
            let inside = |a: Option<IpAddr>| a.is_some_and(|a| ip.address.contains(a));
            if inside(r.src) || inside(r.via) || (r.src.is_none() && r.via.is_none()) {
                let copy = RouteSpec { table: Some(table), ..r.clone() };
                plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Replace, route: copy.clone() })
                    .undo(Op::RouteDel { route: copy });
            }
        }
        table = next_free(&used, table + 1);
    }
    let del = |plan: &mut Plan, r: &RouteSpec, tolerate: Tolerate| {
        let target = RouteSpec { src: None, scope: None, ..r.clone() };
        plan.push(&ctr, Op::RouteDel { route: target })
            .tolerate(tolerate)
            .undo(Op::RouteAdd { mode: RouteMode::Add, route: r.clone() });
    };
    if conf.add_source_hints {
        for ip in ips {
            let mut r = RouteSpec::new(
                IpNetwork::new(ip.address.network(), ip.address.prefix()).expect("subnet of a prefix"),
                ifname,
            );
            r.src = Some(ip.address.ip());
            r.scope = Some(RouteScope::Link);
            plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Replace, route: r }).tolerate(Tolerate::Any);
        }
        for (_, r) in main_routes.iter().filter(|(_, r)| r.scope != Some(RouteScope::Link)) {
            del(&mut plan, r, Tolerate::Any);
        }
    } else {
        for (_, r) in &main_routes {
            del(&mut plan, r, Tolerate::Nothing);
        }
    }
    plan
}

/// The DEL plan: the rules from `addrs` (to `table` when configured) and, without a
/// configured table, the routes of each table no remaining rule uses. Pure.
pub fn plan_del(conf: &SbrConf, netns: &std::path::Path, addrs: &[IpAddr], seen: &Seen) -> Plan {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut plan = Plan::new();
    let (gone, kept): (Vec<&RuleInfo>, Vec<&RuleInfo>) = seen.rules.iter().partition(|r| {
        let ours = r.src_net().is_some_and(|n| addrs.contains(&n.ip()));
        let table_ok = conf.table.is_none_or(|t| r.table_id() == Some(t));
        ours && table_ok && r.table_id().is_some()
    });
    for r in &gone {
        let rule = RuleSpec {
            src: r.src_net().expect("filtered"),
            table: r.table_id().expect("filtered"),
            priority: r.priority,
        };
        plan.push(&ctr, Op::RuleDel { rule }).tolerate(Tolerate::Missing);
    }
    if conf.table.is_none() {
        let still_used: BTreeSet<u32> = kept.iter().filter_map(|r| r.table_id()).collect();
        let freed: BTreeSet<u32> = gone
            .iter()
            .filter_map(|r| r.table_id())
            .filter(|t| *t >= FIRST_TABLE && !still_used.contains(t) && ![253, 254, 255].contains(t))
            .collect();
        for (v6, r) in &seen.routes {
            let Some(t) = r.table_id().filter(|t| freed.contains(t)) else { continue };
            let Some(dev) = r.dev.as_deref() else { continue };
            let Some(mut spec) = spec_of(*v6, r, dev) else { continue };
            spec.src = None;
            spec.scope = None;
            spec.table = Some(t);
            plan.push(&ctr, Op::RouteDel { route: spec }).tolerate(Tolerate::Missing);
        }
    }
    plan
}

fn require_prev(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf.prev_result.clone().ok_or_else(|| bad("must be called as a chained plugin: prevResult is missing"))
}

fn observe_rules(cx: &mut Cx, ctr: &Netns) -> Result<Vec<RuleInfo>, CniError> {
    let mut rules = observe::rules(cx.obs, ctr, false)?;
    rules.extend(observe::rules(cx.obs, ctr, true)?);
    Ok(rules)
}

fn observe_routes(cx: &mut Cx, ctr: &Netns) -> Result<Vec<(bool, RouteInfo)>, CniError> {
    let mut routes: Vec<(bool, RouteInfo)> =
        observe::all_routes(cx.obs, ctr, false)?.into_iter().map(|r| (false, r)).collect();
    routes.extend(observe::all_routes(cx.obs, ctr, true)?.into_iter().map(|r| (true, r)));
    Ok(routes)
}

/// One lock per container namespace: concurrent sbr runs must not pick the same table.
fn lock_name(netns: &std::path::Path) -> String {
    names::hash_with_prefix(24, "sbr-", &netns.display().to_string())
}

impl Plugin for Sbr {
    fn name(&self) -> &'static str {
        "sbr"
    }
    fn about(&self) -> &'static str {
        "CNI sbr (source-based routing) plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = SbrConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        let netns = cx.netns_path()?;
        let ifname = cx.env.ifname.clone();
        // Without addresses there is no rule to add, and the main routes must stay.
        let ips = addresses_of(&prev, &ifname);
        if ips.is_empty() {
            return Err(bad(format!("prevResult has no IP addresses for {ifname}")));
        }
        let ctr = Netns::Container(netns.clone());
        let _lock = cx.lock(&lock_name(&netns))?;
        let mut seen = Seen::default();
        if conf.table.is_none() {
            if observe::link_addrs(cx.obs, &ctr, &ifname)?.is_none() {
                return Err(bad(format!("container interface {ifname} does not exist")));
            }
            seen.rules = observe_rules(cx, &ctr)?;
            seen.routes = observe_routes(cx, &ctr)?;
        }
        apply(cx.exec, &plan_add(&conf, &netns, &ifname, &ips, &seen))?;
        Ok(prev)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // ADD refuses such a config before doing anything: nothing to undo.
        let conf = match SbrConf::from_cx(cx) {
            Ok(c) => c,
            Err(e) => {
                crate::exec::log(&format!("{PLUGIN}: DEL with a config ADD refuses ({e}): nothing to do"));
                return Ok(());
            }
        };
        let NetnsState::Present(netns) = cx.netns.clone() else { return Ok(()) };
        let ifname = cx.env.ifname.clone();
        let ctr = Netns::Container(netns.clone());
        let _lock = cx.lock(&lock_name(&netns))?;
        let mut addrs: Vec<IpAddr> = match observe::link_addrs(cx.obs, &ctr, &ifname)? {
            Some(l) => l.addr_info.iter().filter_map(|a| a.local.parse().ok()).collect(),
            None => Vec::new(),
        };
        if let Some(prev) = &cx.conf.prev_result {
            for ip in addresses_of(prev, &ifname) {
                if !addrs.contains(&ip.address.ip()) {
                    addrs.push(ip.address.ip());
                }
            }
        }
        if addrs.is_empty() {
            return Ok(());
        }
        let mut seen = Seen { rules: observe_rules(cx, &ctr)?, routes: Vec::new() };
        let plan = plan_del(&conf, &netns, &addrs, &seen);
        if conf.table.is_none() && !plan.is_empty() {
            seen.routes = observe_routes(cx, &ctr)?;
            return apply(cx.exec, &plan_del(&conf, &netns, &addrs, &seen));
        }
        apply(cx.exec, &plan)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = SbrConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        let netns = cx.netns_path()?;
        let ctr = Netns::Container(netns);
        let rules = observe_rules(cx, &ctr)?;
        for ip in addresses_of(&prev, &cx.env.ifname) {
            let want = host_prefix(ip.address.ip());
            let found = rules.iter().any(|r| {
                r.src_net() == Some(want)
                    && r.table_id().is_some()
                    && conf.table.is_none_or(|t| r.table_id() == Some(t))
            });
            if !found {
                return Err(CniError::check(format!("{PLUGIN}: no rule routes traffic from {want}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_tables_skip_every_used_id() {
        let used: BTreeSet<u32> = [100, 101, 103, 254].into_iter().collect();
        assert_eq!(next_free(&used, FIRST_TABLE), 102);
        assert_eq!(next_free(&used, 103), 104);
    }
}
