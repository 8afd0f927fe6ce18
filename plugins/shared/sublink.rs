//! One link in the container, made on a master device (macvlan, ipvlan, vlan) or on its
//! own (dummy): finding and observing the master, the temporary name, the
//! create-and-rename plan, addresses, DEL and CHECK.
//!
//! Undo and namespaces: a link created from the host straight into the container
//! (`ip link add … netns PATH`) is not on the host side, so the create step's undo
//! (`ip link del TMP`) runs in the container (`undo_in`); the rename then carries
//! `ip link del IFNAME` there. Whatever step fails after the create, the link is removed
//! in the right namespace under the name it has at that moment. (The undo used to ride
//! on the best-effort sysctl after the create; when that step was the one to fail, as
//! the kernel fault-injection test made it, the temporary link stayed behind.)

use std::path::Path;

use serde::Deserialize;

use super::iface;
use crate::exec::observe::{self, Link, Query};
use crate::exec::{apply, undo_of};
use crate::names;
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan, Sysctl, Tolerate};
use crate::skel::{Cx, NetnsState};
use crate::spec::{CniError, CniResult, Dns, Interface};
use crate::validate;

/// The identity of one attachment as ADD sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub network: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a Path,
    pub host_id: &'a str,
}

/// What ADD found out about the master device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    pub mac: String,
}

impl Master {
    pub fn from_link(link: &Link) -> Master {
        Master { name: link.ifname.clone(), ifindex: link.ifindex, mtu: link.mtu, mac: link.address.clone() }
    }
}

/// Where the master lives: the host, or the container with `linkInContainer`.
pub fn master_ns(link_in_container: bool, netns: &Path) -> Netns {
    if link_in_container { Netns::Container(netns.to_path_buf()) } else { Netns::Host }
}

/// A configured master name: empty means unset; anything else must be a plain name.
pub fn master_name(plugin: &str, raw: Option<String>) -> Result<Option<String>, CniError> {
    match raw.filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => {
            validate::ifname(&m).map_err(|e| CniError::config(format!("{plugin}: \"master\": {e}")))?;
            Ok(Some(m))
        }
    }
}

/// The device of the first default route in `ns`, IPv4 first, then IPv6 (the
/// reference's default master). Routes without a device (multipath, unreachable) are
/// skipped.
pub fn default_route_dev(obs: &mut dyn observe::Observer, ns: &Netns, plugin: &str) -> Result<String, CniError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        dev: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
    }
    for argv in [&["ip", "-j", "route", "show", "default"][..], &["ip", "-j", "-6", "route", "show", "default"][..]] {
        let q = Query { ns: ns.clone(), argv: argv.iter().map(|s| s.to_string()).collect() };
        let Some(out) = obs.query(&q)? else { continue };
        let routes: Vec<R> = serde_json::from_str(&out)
            .map_err(|e| CniError::new(crate::spec::code::COMMAND_FAILED, format!("{}: {e}", q.key())))?;
        let dev = routes
            .into_iter()
            .filter(|r| r.kind.as_deref().is_none_or(|k| k == "unicast"))
            .find_map(|r| r.dev.filter(|d| validate::ifname(d).is_ok()));
        if let Some(dev) = dev {
            return Ok(dev);
        }
    }
    let place = if *ns == Netns::Host { "the host namespace" } else { "the container namespace" };
    Err(CniError::config(format!("{plugin}: no \"master\" given and no default route interface found in {place}")))
}

/// Observes the master; a missing master is a configuration error.
pub fn observe_master(
    obs: &mut dyn observe::Observer,
    ns: &Netns,
    name: &str,
    plugin: &str,
) -> Result<Master, CniError> {
    let link = observe::link_addrs(obs, ns, name)?.ok_or_else(|| {
        let place = if *ns == Netns::Host { "the host namespace" } else { "the container namespace" };
        CniError::config(format!("{plugin}: master {name:?} does not exist in {place}"))
    })?;
    Ok(Master::from_link(&link))
}

/// `mtu`: unset or 0 keeps the master's; otherwise 68 up to the master's MTU.
pub fn mtu(plugin: &str, raw: Option<i64>, master: &Master) -> Result<Option<u32>, CniError> {
    match raw {
        None | Some(0) => Ok(None),
        Some(m) if (68..=i64::from(master.mtu)).contains(&m) => Ok(Some(m as u32)),
        Some(m) => Err(CniError::config(format!(
            "{plugin}: invalid MTU {m}, must be 0 (the master's) or 68 to the MTU of master {:?} ({})",
            master.name, master.mtu
        ))),
    }
}

/// `mtu` before the master is known (its lower bound and type only).
pub fn mtu_shape(plugin: &str, raw: Option<i64>) -> Result<(), CniError> {
    match raw {
        None | Some(0) => Ok(()),
        Some(m) if m >= 68 => Ok(()),
        Some(m) => Err(CniError::config(format!("{plugin}: invalid MTU {m}, must be 0 or at least 68"))),
    }
}

/// The MAC asked for: the config's `mac`, then CNI_ARGS `MAC`, `args.cni.mac` and
/// `runtimeConfig.mac`; the last one given wins, and each must be a unicast MAC.
pub fn requested_mac(cx: &Cx, plugin: &str, config_mac: Option<&str>) -> Result<Option<String>, CniError> {
    let mut candidates = Vec::new();
    if let Some(m) = config_mac.filter(|m| !m.is_empty()) {
        candidates.push(("\"mac\"", m.to_string()));
    }
    if let Some(m) = cx.env.args.get("MAC").filter(|m| !m.is_empty()) {
        candidates.push(("CNI_ARGS MAC", m.to_string()));
    }
    if let Some(m) = cx.conf.args_cni("mac").and_then(|v| v.as_str()).filter(|m| !m.is_empty()) {
        candidates.push(("args.cni.mac", m.to_string()));
    }
    if let Some(m) = cx.conf.runtime_config.get("mac").and_then(|v| v.as_str()).filter(|m| !m.is_empty()) {
        candidates.push(("runtimeConfig.mac", m.to_string()));
    }
    let mut mac = None;
    for (field, m) in candidates {
        mac = Some(names::parse_mac(&m).map_err(|e| CniError::config(format!("{plugin}: {field}: {e}")))?);
    }
    Ok(mac)
}

/// The temporary name a link has between its creation and its rename in the container:
/// derived from the attachment, so DEL can remove one left behind by an interrupted ADD.
pub fn temp_name(kind: &str, network: &str, id: &str, ifname: &str) -> String {
    names::hash_with_prefix(15, "tmp", &format!("{kind}\0{network}\0{id}\0{ifname}"))
}

/// A derived MAC for a link of `kind` in the attachment (stable per host and names).
pub fn derived_mac(kind: &str, t: &Target) -> String {
    names::mac(&format!("{kind}\0{}\0{}\0{}\0{}", t.host_id, t.network, t.id, t.ifname))
}

/// Creates `link` (its name is the temporary one) and renames it to `ifname` in the
/// container. `in_container` says the create step itself runs in the container (the
/// master lives there); otherwise it runs on the host with the link's `netns` set.
/// See the module comment for where each undo runs.
pub fn plan_create_and_rename(plan: &mut Plan, link: LinkAdd, in_container: bool, netns: &Path, ifname: &str) {
    let ctr = Netns::Container(netns.to_path_buf());
    let tmp = link.name().to_string();
    let add = Op::LinkAdd(link);
    let undo = undo_of(&add).expect("link undo");
    plan.push(if in_container { &ctr } else { &Netns::Host }, add).undo_in(&ctr, undo);
    // Gratuitous ARP / unsolicited NA when the link comes up with addresses. The
    // settings follow the device through the rename.
    plan.push(&ctr, Op::Sysctl(Sysctl::iface("ipv4", &tmp, "arp_notify", "1"))).tolerate(Tolerate::Any);
    plan.push(&ctr, Op::Sysctl(Sysctl::iface("ipv6", &tmp, "ndisc_notify", "1"))).tolerate(Tolerate::Any);
    plan.push(&ctr, Op::LinkSet(LinkSet { name: Some(ifname.to_string()), ..LinkSet::dev(&tmp) }))
        .undo(Op::LinkDel { dev: ifname.to_string() });
}

/// Addresses, link up and routes for the container link (interface 0 of the result),
/// or just link up for an L2-only link. Returns the result with `iface` as its only
/// interface. `dns` is the config's, which wins over the IPAM answer's when given.
pub fn plan_addresses(
    plan: &mut Plan,
    plugin: &str,
    netns: &Path,
    ifname: &str,
    iface: Interface,
    ips: Option<&CniResult>,
    dns: Option<&Dns>,
) -> Result<CniResult, CniError> {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut result = CniResult { interfaces: vec![iface], ..CniResult::default() };
    match ips {
        Some(ipam) => {
            if ipam.ips.is_empty() {
                return Err(CniError::config(format!("{plugin}: IPAM plugin returned missing IP config")));
            }
            result.ips = ipam.ips.clone();
            result.routes = ipam.routes.clone();
            result.dns = ipam.dns.clone();
            for ip in &mut result.ips {
                ip.interface = Some(0);
            }
            iface::plan_configure(plan, &ctr, ifname, 0, &result, true)?;
        }
        None => {
            plan.push(&ctr, Op::LinkSet(LinkSet::up(ifname)));
        }
    }
    if let Some(d) = dns.filter(|d| !d.is_empty()) {
        result.dns = d.clone();
    }
    Ok(result)
}

/// Runs an ADD: IPAM ADD when `has_ipam`, then the plan made from its answer; when
/// planning or applying fails, the plan's completed steps are undone (by `apply`) and
/// the reservation is released.
pub fn run_add(
    cx: &mut Cx,
    has_ipam: bool,
    plan_add: impl FnOnce(Option<&CniResult>) -> Result<(Plan, CniResult), CniError>,
) -> Result<CniResult, CniError> {
    let ipam = if has_ipam { Some(cx.ipam.add(cx.env, cx.conf)?) } else { None };
    let outcome = plan_add(ipam.as_ref()).and_then(|(plan, result)| {
        apply(cx.exec, &plan)?;
        Ok(result)
    });
    if outcome.is_err()
        && has_ipam
        && let Err(e) = cx.ipam.del(cx.env, cx.conf)
    {
        crate::exec::log(&format!("releasing the address after a failed ADD: {e}"));
    }
    outcome
}

/// DEL: the container link (and a temporary one an interrupted ADD left) when the
/// namespace is there, then the IPAM reservation whatever happened before. Needs
/// nothing but the names: no master, no plugin keys.
pub fn run_del(cx: &mut Cx, temp: Option<String>) -> Result<(), CniError> {
    let mut plan = Plan::new();
    if let NetnsState::Present(p) = &cx.netns {
        let ctr = Netns::Container(p.clone());
        plan.push(&ctr, Op::LinkDel { dev: cx.env.ifname.clone() }).tolerate(Tolerate::Missing);
        if let Some(t) = temp {
            plan.push(&ctr, Op::LinkDel { dev: t }).tolerate(Tolerate::Missing);
        }
    }
    let links = apply(cx.exec, &plan);
    let ipam = if cx.conf.ipam_type.is_some() { cx.ipam.del(cx.env, cx.conf) } else { Ok(()) };
    links.and(ipam)
}

/// The container link as CHECK sees it: the link, plus the name of its lower device
/// when that is in the same namespace (`ip -j` gives `link` then, `link_index` across
/// namespaces).
#[derive(Debug, Clone)]
pub struct Observed {
    pub link: Link,
    pub lower_name: Option<String>,
}

impl Observed {
    pub fn info(&self, key: &str) -> Option<&serde_json::Value> {
        self.link.linkinfo.as_ref()?.info_data.get(key)
    }
}

fn observe_container_link(
    obs: &mut dyn observe::Observer,
    ns: &Netns,
    dev: &str,
) -> Result<Option<Observed>, CniError> {
    #[derive(Deserialize)]
    struct Lower {
        #[serde(default)]
        link: Option<String>,
    }
    let q = Query { ns: ns.clone(), argv: ["ip", "-j", "-d", "addr", "show", "dev", dev].map(String::from).to_vec() };
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let bad = |e: serde_json::Error| {
        CniError::new(crate::spec::code::COMMAND_FAILED, format!("{}: unexpected `ip -j` output: {e}", q.key()))
    };
    let links: Vec<Link> = serde_json::from_str(&out).map_err(bad)?;
    let lowers: Vec<Lower> = serde_json::from_str(&out).map_err(bad)?;
    Ok(links.into_iter().zip(lowers).next().map(|(link, lower)| Observed { link, lower_name: lower.link }))
}

/// What CHECK expects of the master, when the plugin has one.
pub struct ExpectMaster<'a> {
    pub name: &'a str,
    pub in_container: bool,
}

/// CHECK: prevResult names the container link in CNI_NETNS; the link is there, of
/// `kind`, with the prevResult's MAC, on the expected master, passing `verify`, with
/// every address and route of the prevResult; IPAM agrees.
pub fn run_check(
    cx: &mut Cx,
    plugin: &str,
    kind: &str,
    master: Option<ExpectMaster>,
    verify: impl FnOnce(&Observed) -> Result<(), CniError>,
) -> Result<(), CniError> {
    let netns = cx.netns_path()?;
    let prev =
        cx.conf.prev_result.clone().ok_or_else(|| CniError::config(format!("{plugin}: CHECK requires prevResult")))?;
    if cx.conf.ipam_type.is_some() {
        cx.ipam.check(cx.env, cx.conf)?;
    }
    let ifname = cx.env.ifname.clone();
    let idx = prev
        .sandbox_interface(&ifname)
        .ok_or_else(|| CniError::check(format!("{plugin}: prevResult has no sandboxed interface {ifname:?}")))?;
    let want = &prev.interfaces[idx];
    if want.sandbox != netns.display().to_string() {
        return Err(CniError::check(format!(
            "{plugin}: interface {ifname} is in sandbox {}, not CNI_NETNS {}",
            want.sandbox,
            netns.display()
        )));
    }
    let ctr = Netns::Container(netns.clone());
    let seen = observe_container_link(cx.obs, &ctr, &ifname)?
        .ok_or_else(|| CniError::check(format!("{plugin}: container interface {ifname} is missing")))?;
    if seen.link.kind() != kind {
        return Err(CniError::check(format!(
            "{plugin}: container interface {ifname} is a {:?}, not a {kind}",
            seen.link.kind()
        )));
    }
    if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&seen.link.address) {
        return Err(CniError::check(format!(
            "{plugin}: container interface {ifname} has MAC {}, expected {}",
            seen.link.address, want.mac
        )));
    }
    if let Some(m) = master {
        let mns = master_ns(m.in_container, &netns);
        let lower = observe_master(cx.obs, &mns, m.name, plugin)?;
        let on_it = if m.in_container {
            seen.lower_name.as_deref().map(|n| n == lower.name).or(seen.link.link_index.map(|i| i == lower.ifindex))
        } else {
            seen.link.link_index.map(|i| i == lower.ifindex)
        };
        if on_it == Some(false) {
            return Err(CniError::check(format!("{plugin}: container interface {ifname} is not on master {}", m.name)));
        }
    }
    verify(&seen)?;
    let v4 = observe::routes(cx.obs, &ctr, &ifname, false)?;
    let v6 = if prev.ips.iter().any(|i| i.address.is_ipv6()) || prev.routes.iter().any(|r| r.dst.is_ipv6()) {
        observe::routes(cx.obs, &ctr, &ifname, true)?
    } else {
        Vec::new()
    };
    iface::check_configured(&seen.link, &v4, &v6, idx, &prev)
}

/// A string in the link's `info_data` equals `want`.
pub fn check_info_str(seen: &Observed, plugin: &str, key: &str, want: &str) -> Result<(), CniError> {
    match seen.info(key).and_then(|v| v.as_str()) {
        Some(got) if got == want => Ok(()),
        got => Err(CniError::check(format!(
            "{plugin}: container interface {} has {key} {}, expected {want}",
            seen.link.ifname,
            got.unwrap_or("(none)")
        ))),
    }
}
