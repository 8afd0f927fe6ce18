//! bandwidth (chained, reference §3.12): token-bucket limits on a veth attachment, with
//! `tc` on the host end of the veth.
//!
//! Config: `ingressRate`/`ingressBurst`/`egressRate`/`egressBurst` (rates in bit/s, bursts
//! in bits) at the top level, or else `runtimeConfig.bandwidth` (capability `bandwidth`);
//! when any of the four top-level keys is present the top level is used, as in the
//! reference. A rate needs its burst and the reverse; 0 means no limit.
//!
//! "Ingress" is traffic into the container: the egress of the host veth, shaped by
//! `tc qdisc add dev HOSTVETH root handle 1: tbf rate R burst B limit L`. "Egress" is
//! traffic out of the container, which arrives on the host veth's ingress: an ifb device
//! `bwp<hash>` (the reference's name) is made with the host veth's MTU, the veth's ingress
//! qdisc redirects every packet to it (`u32 match u32 0 0 … action mirred egress
//! redirect`), and a tbf on the ifb shapes it. The tbf numbers follow the reference: the
//! rate and burst in bytes, and a limit of 25 ms of traffic at the rate plus the burst.
//!
//! Unlike the reference, limits the kernel cannot honour are refused up front: a rate
//! below 8 bit/s (0 bytes/s), a burst smaller than one full frame of the host veth (MTU +
//! 14: larger packets would never pass), a burst longer than tbf's 32-bit buffer can time
//! (~274 s at the rate), a limit beyond 4 GiB. The exception is a burst in
//! `runtimeConfig.bandwidth` too big for tbf: CRI runtimes have no burst to give and send
//! "unbounded" (containerd 2^32-1 bits, CRI-O 2^35-9 bits) with Kubernetes' rate
//! annotations, so such a burst is capped to the largest tbf can hold at the rate.
//!
//! The host veth is found as the reference does: the container interface's peer ifindex
//! (`ip -j` link_index), looked up in the host namespace, must be a host interface of
//! prevResult. The result is prevResult plus the ifb (its MAC is derived, set at creation).
//!
//! DEL removes the ifb (a missing one is fine) and, when prevResult still leads to the host
//! veth, the qdiscs this config put on it (best effort: the veth usually goes next).
//! CHECK compares the tbf rate, burst and latency on the veth and the ifb.

use serde::Deserialize;
use serde_json::Value;

use crate::exec::observe::{self, Link, QdiscInfo};
use crate::exec::{apply, undo_of};
use crate::names;
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan, Qdisc, QdiscParent, TcFilter, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Interface, Version};

pub struct Bandwidth;

const PLUGIN: &str = "bandwidth";
/// tbf's latency budget, as the reference: the queue holds this much traffic at the rate.
const LATENCY_US: u64 = 25_000;
/// Kernel scheduler ticks per microsecond (/proc/net/psched on every current kernel).
const TICKS_PER_US: f64 = 15.625;
/// The Ethernet header a full frame adds to the MTU.
const ETH_HLEN: u32 = 14;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Entry {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl Entry {
    fn is_zero(&self) -> bool {
        *self == Entry::default()
    }
}

/// A tbf in the kernel's units: bytes/s, bytes, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate: u64,
    pub burst: u32,
    pub limit: u32,
}

fn bad(msg: impl std::fmt::Display) -> CniError {
    CniError::config(format!("{PLUGIN}: {msg}"))
}

/// The rate and burst of one direction, validated (the reference's rules, plus what tbf
/// cannot represent); None when unlimited. With `cap_burst` (the runtime's values), a
/// burst tbf cannot time, or whose queue would pass 4 GiB, is capped instead of refused.
pub fn tbf(rate_bits: u64, burst_bits: u64, what: &str, cap_burst: bool) -> Result<Option<Tbf>, CniError> {
    match (rate_bits, burst_bits) {
        (0, 0) => return Ok(None),
        (_, 0) => return Err(bad(format!("{what}Rate is set, so {what}Burst must be set too"))),
        (0, _) => return Err(bad(format!("{what}Burst is set, so {what}Rate must be set too"))),
        _ => {}
    }
    let rate = rate_bits / 8;
    let mut burst_bytes = burst_bits / 8;
    if cap_burst && rate > 0 {
        // The longest buffer tbf's 32-bit tick count holds, less one µs for rounding, and
        // the room left in a 4 GiB queue after the latency's worth of traffic.
        let max_us = (f64::from(u32::MAX) / TICKS_PER_US) as u128 - 1;
        let timeable = max_us * u128::from(rate) / 1_000_000;
        let room = u128::from(u32::MAX).saturating_sub(u128::from(rate) * u128::from(LATENCY_US) / 1_000_000);
        burst_bytes = burst_bytes.min(timeable.min(room) as u64);
    }
    if burst_bytes >= u64::from(u32::MAX) {
        return Err(bad(format!("{what}Burst {burst_bits} bits is 4 GiB or more")));
    }
    if rate == 0 {
        return Err(bad(format!("{what}Rate {rate_bits} bit/s is below 8 bit/s (1 byte/s)")));
    }
    let burst = burst_bytes as u32;
    let buffer_ticks = (f64::from(burst) * 1e6 / rate as f64).floor() * TICKS_PER_US;
    if buffer_ticks >= f64::from(u32::MAX) {
        return Err(bad(format!(
            "{what}Burst {burst_bits} bits lasts more than {} s at {rate_bits} bit/s: tbf cannot time it",
            (f64::from(u32::MAX) / TICKS_PER_US / 1e6) as u64
        )));
    }
    let limit = (rate as u128 * u128::from(LATENCY_US) / 1_000_000) + u128::from(burst);
    let limit = u32::try_from(limit)
        .map_err(|_| bad(format!("{what}Rate {rate_bits} bit/s needs a queue of {limit} bytes, more than 4 GiB")))?;
    Ok(Some(Tbf { rate, burst, limit }))
}

/// The validated limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandwidthConf {
    pub ingress: Option<Tbf>,
    pub egress: Option<Tbf>,
}

impl BandwidthConf {
    pub fn from_cx(cx: &Cx) -> Result<BandwidthConf, CniError> {
        let raw = cx.conf.raw.as_object();
        let top_level = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"]
            .iter()
            .any(|k| raw.is_some_and(|o| o.contains_key(*k)));
        let entry: Entry = if top_level {
            cx.conf.plugin()?
        } else {
            match cx.conf.runtime_config.get("bandwidth") {
                None | Some(Value::Null) => Entry::default(),
                Some(v) => {
                    serde_json::from_value(v.clone()).map_err(|e| bad(format!("runtimeConfig.bandwidth: {e}")))?
                }
            }
        };
        if entry.is_zero() {
            return Ok(BandwidthConf::default());
        }
        // The runtime's bursts are capped; the ones written in the config are refused.
        let cap = !top_level;
        Ok(BandwidthConf {
            ingress: tbf(entry.ingress_rate, entry.ingress_burst, "ingress", cap)?,
            egress: tbf(entry.egress_rate, entry.egress_burst, "egress", cap)?,
        })
    }

    pub fn is_unlimited(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }
}

/// The reference's ifb name: `bwp` + hex(sha512(network + container id)), 15 characters.
pub fn ifb_name(network: &str, id: &str) -> String {
    names::hash_with_prefix(15, "bwp", &format!("{network}{id}"))
}

/// The host end of the container interface's veth, as prevResult names it.
pub fn host_veth<'a>(
    prev: &'a CniResult,
    ctr_link: Option<&Link>,
    host_links: &[Link],
    ifname: &str,
) -> Result<&'a Interface, CniError> {
    let ctr_link = ctr_link.ok_or_else(|| bad(format!("container interface {ifname} does not exist")))?;
    let peer = ctr_link.link_index.ok_or_else(|| bad(format!("container interface {ifname} has no veth peer")))?;
    let host = host_links
        .iter()
        .find(|l| l.ifindex == peer)
        .ok_or_else(|| bad(format!("the veth peer (ifindex {peer}) of {ifname} is not in the host namespace")))?;
    prev.interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name == host.ifname)
        .ok_or_else(|| bad(format!("the veth peer {} of {ifname} is not a host interface of prevResult", host.ifname)))
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    conf: &BandwidthConf,
    hv: &Link,
    ifb: &str,
    host_id: &str,
    prev: &CniResult,
) -> Result<(Plan, CniResult), CniError> {
    let host = Netns::Host;
    let min_burst = hv.mtu + ETH_HLEN;
    for (t, what) in [(conf.ingress, "ingress"), (conf.egress, "egress")] {
        if let Some(t) = t
            && t.burst < min_burst
        {
            return Err(bad(format!(
                "{what}Burst {} bits ({} bytes) is smaller than one full frame of {} (MTU {} + {ETH_HLEN} bytes): \
                 such packets could never pass",
                u64::from(t.burst) * 8,
                t.burst,
                hv.ifname,
                hv.mtu
            )));
        }
    }
    let tbf = |t: Tbf| Qdisc::Tbf { rate: t.rate, burst: t.burst, limit: t.limit };
    let mut plan = Plan::new();
    let mut result = prev.clone();
    let mac = names::mac(&format!("ifb\0{host_id}\0{ifb}"));
    if conf.egress.is_some() {
        let add = Op::LinkAdd(LinkAdd::Ifb {
            name: ifb.to_string(),
            mtu: Some(hv.mtu),
            mac: Some(mac.clone()),
            txqlen: Some(0),
        });
        plan.push(&host, add.clone()).undo(undo_of(&add).expect("link undo"));
        plan.push(&host, Op::LinkSet(LinkSet::up(ifb)));
        result.interfaces.push(Interface { name: ifb.to_string(), mac, ..Interface::default() });
    }
    if let Some(t) = conf.ingress {
        plan.push(&host, Op::QdiscAdd { dev: hv.ifname.clone(), qdisc: tbf(t) })
            .undo(Op::QdiscDel { dev: hv.ifname.clone(), parent: QdiscParent::Root });
    }
    if let Some(t) = conf.egress {
        // Shaping first, then the redirect into it.
        plan.push(&host, Op::QdiscAdd { dev: ifb.to_string(), qdisc: tbf(t) });
        plan.push(&host, Op::QdiscAdd { dev: hv.ifname.clone(), qdisc: Qdisc::Ingress })
            .undo(Op::QdiscDel { dev: hv.ifname.clone(), parent: QdiscParent::Ingress });
        plan.push(
            &host,
            Op::FilterAdd { dev: hv.ifname.clone(), filter: TcFilter::RedirectAll { to: ifb.to_string() } },
        );
    }
    Ok((plan, result))
}

/// The DEL plan: the qdiscs on the host veth when it is known, then the ifb.
pub fn plan_del(conf: &BandwidthConf, hv: Option<&str>, ifb: &str) -> Plan {
    let mut plan = Plan::new();
    if let Some(hv) = hv {
        if conf.ingress.is_some() {
            plan.push(&Netns::Host, Op::QdiscDel { dev: hv.to_string(), parent: QdiscParent::Root })
                .tolerate(Tolerate::Any);
        }
        if conf.egress.is_some() {
            plan.push(&Netns::Host, Op::QdiscDel { dev: hv.to_string(), parent: QdiscParent::Ingress })
                .tolerate(Tolerate::Any);
        }
    }
    plan.push(&Netns::Host, Op::LinkDel { dev: ifb.to_string() }).tolerate(Tolerate::Missing);
    plan
}

fn require_prev(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf.prev_result.clone().ok_or_else(|| bad("must be called as a chained plugin: prevResult is missing"))
}

/// Finds the host veth of the attachment: the container link, then the host's links.
fn find_host_veth(cx: &mut Cx, prev: &CniResult, netns: &std::path::Path) -> Result<Link, CniError> {
    let ifname = cx.env.ifname.clone();
    let ctr_link = observe::link_addrs(cx.obs, &Netns::Container(netns.to_path_buf()), &ifname)?;
    let host_links = observe::links(cx.obs, &Netns::Host)?;
    let hv = host_veth(prev, ctr_link.as_ref(), &host_links, &ifname)?;
    Ok(host_links.into_iter().find(|l| l.ifname == hv.name).expect("found above"))
}

fn check_tbf(qdiscs: Option<Vec<QdiscInfo>>, dev: &str, want: Tbf) -> Result<(), CniError> {
    let qdiscs = qdiscs.ok_or_else(|| CniError::check(format!("{PLUGIN}: {dev} is missing")))?;
    let q = qdiscs
        .iter()
        .find(|q| q.kind == "tbf" && q.root)
        .ok_or_else(|| CniError::check(format!("{PLUGIN}: {dev} has no root tbf qdisc")))?;
    let num = |k: &str| q.options.get(k).and_then(Value::as_u64);
    let rate = num("rate").unwrap_or(0);
    if rate != want.rate {
        return Err(CniError::check(format!(
            "{PLUGIN}: the tbf on {dev} has rate {rate} bytes/s, configured {} bytes/s",
            want.rate
        )));
    }
    // tc prints the burst and the latency back from kernel ticks: allow its rounding.
    let burst = num("burst").unwrap_or(0);
    if burst.abs_diff(u64::from(want.burst)) > (u64::from(want.burst) / 1000).max(1) {
        return Err(CniError::check(format!(
            "{PLUGIN}: the tbf on {dev} has burst {burst} bytes, configured {} bytes",
            want.burst
        )));
    }
    let lat = num("lat").unwrap_or(0);
    if lat.abs_diff(LATENCY_US) > 1000 {
        return Err(CniError::check(format!("{PLUGIN}: the tbf on {dev} has latency {lat} µs, expected {LATENCY_US}")));
    }
    Ok(())
}

impl Plugin for Bandwidth {
    fn name(&self) -> &'static str {
        "bandwidth"
    }
    fn about(&self) -> &'static str {
        "CNI bandwidth plugin (ipcni)"
    }
    fn versions(&self) -> &'static [Version] {
        &[Version::V030, Version::V031, Version::V040, Version::V100, Version::V110]
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = BandwidthConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        if conf.is_unlimited() {
            return Ok(prev);
        }
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let hv = find_host_veth(cx, &prev, &netns)?;
        let ifb = ifb_name(&network, &cx.env.container_id);
        let (plan, result) = plan_add(&conf, &hv, &ifb, cx.host_id, &prev)?;
        apply(cx.exec, &plan)?;
        Ok(result)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        let network = cx.conf.require_name()?.to_string();
        let ifb = ifb_name(&network, &cx.env.container_id);
        // Whatever else fails to parse or observe, the ifb still goes.
        let conf = BandwidthConf::from_cx(cx).unwrap_or_else(|e| {
            crate::exec::log(&format!("{PLUGIN}: DEL with an unusable config ({e}): removing the ifb only"));
            BandwidthConf::default()
        });
        let hv = match (&cx.netns, cx.conf.prev_result.clone()) {
            (NetnsState::Present(p), Some(prev)) if !conf.is_unlimited() => {
                let p = p.clone();
                match find_host_veth(cx, &prev, &p) {
                    Ok(l) => Some(l.ifname),
                    Err(e) => {
                        crate::exec::log(&format!("{PLUGIN}: leaving the host veth's qdiscs: {e}"));
                        None
                    }
                }
            }
            _ => None,
        };
        apply(cx.exec, &plan_del(&conf, hv.as_deref(), &ifb))
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = BandwidthConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let hv = find_host_veth(cx, &prev, &netns)?;
        if let Some(t) = conf.ingress {
            check_tbf(observe::qdiscs(cx.obs, &Netns::Host, &hv.ifname)?, &hv.ifname, t)?;
        }
        if let Some(t) = conf.egress {
            let ifb = ifb_name(&network, &cx.env.container_id);
            check_tbf(observe::qdiscs(cx.obs, &Netns::Host, &ifb)?, &ifb, t)?;
            let on_veth = observe::qdiscs(cx.obs, &Netns::Host, &hv.ifname)?.unwrap_or_default();
            if !on_veth.iter().any(|q| q.kind == "ingress") {
                return Err(CniError::check(format!("{PLUGIN}: {} has no ingress qdisc", hv.ifname)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_numbers_follow_the_reference_and_impossible_limits_are_refused() {
        let t = tbf(1_000_000, 160_000, "ingress", false).unwrap().unwrap();
        assert_eq!(t, Tbf { rate: 125_000, burst: 20_000, limit: 23_125 });
        assert_eq!(tbf(0, 0, "ingress", false).unwrap(), None);
        assert!(tbf(1000, 0, "ingress", false).is_err());
        assert!(tbf(0, 1000, "ingress", false).is_err());
        assert!(tbf(7, 100_000, "ingress", false).is_err());
        assert!(tbf(8, 8 * 1_000_000_000, "ingress", false).is_err(), "10^9 s of burst cannot be timed");
        assert!(tbf(1_000_000, 8 * u64::from(u32::MAX), "egress", false).is_err());
        // The runtimes' "unbounded" bursts are capped to what tbf can time and queue.
        let t = tbf(1_000_000, u64::from(u32::MAX), "ingress", true).unwrap().unwrap();
        assert_eq!(t, Tbf { rate: 125_000, burst: 34_359_738, limit: 34_362_863 });
        let t = tbf(100_000_000_000, 8 * u64::from(u32::MAX) - 1, "egress", true).unwrap().unwrap();
        assert_eq!(t.limit, u32::MAX);
    }

    #[test]
    fn ifb_name_has_the_reference_shape() {
        let n = ifb_name("net", "ctr1");
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("bwp"));
    }
}
